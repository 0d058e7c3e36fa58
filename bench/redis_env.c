/*
 * redis_env.c - the Redis deployments `preset redis` compares, started by the bench on free
 * loopback ports and stopped after it: a server speaking TLS (a throwaway self-signed
 * certificate made by the openssl CLI in a temporary directory) and a Redis Cluster of three
 * masters (redis-cli --cluster create). The plain server is bench_redis_start's. A start that
 * cannot happen says why ("skipped: ..."), and the preset notes it.
 */
#include "bench_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OPENSSL_BIN "/usr/bin/openssl"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Sends one inline command to 127.0.0.1:port and reads what comes within timeout_ms into out
 * (NUL-terminated). 0 when something came. */
static int ask(int port, const char *cmd, char *out, size_t size, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    size_t n = 0;
    out[0] = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd)) {
        struct pollfd pf = {fd, POLLIN, 0};
        while (n + 1 < size && poll(&pf, 1, timeout_ms) == 1) {
            ssize_t r = read(fd, out + n, size - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            out[n] = 0;
            if (n >= 2 && !memcmp(out + n - 2, "\r\n", 2))
                break;
        }
    }
    if (fd >= 0)
        close(fd);
    return n ? 0 : -1;
}

/* Polls until the answer to cmd holds want, bounded by timeout_ms. */
static int wait_answer(int port, const char *cmd, const char *want, int timeout_ms)
{
    int64_t deadline = cp_mono_ns() + (int64_t)timeout_ms * 1000000;
    char buf[4096];
    while (cp_mono_ns() < deadline && !atomic_load(&bench_interrupted)) {
        if (ask(port, cmd, buf, sizeof buf, 500) == 0 && strstr(buf, want))
            return 0;
        sleep_ms(20);
    }
    return -1;
}

/* Runs a helper program to its end, bounded by timeout_ms. 0 when it exited with 0. */
static int run_wait(const char *const *argv, int timeout_ms)
{
    pid_t pid = bench_spawn(argv, NULL, -1, -1);
    if (pid < 0)
        return -1;
    int64_t deadline = cp_mono_ns() + (int64_t)timeout_ms * 1000000;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            bench_child_untrack(pid);
            return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
        }
        if (r < 0 || cp_mono_ns() > deadline || atomic_load(&bench_interrupted)) {
            bench_child_stop(pid, 1000);
            return -1;
        }
        sleep_ms(10);
    }
}

static int make_dir(struct bench_redis_deploy *d)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(d->dir, sizeof d->dir, "%s/cpbench-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(d->dir)) {
        d->dir[0] = 0;
        return -1;
    }
    return 0;
}

static pid_t start_node(const char *const *argv, int port, int timeout_ms)
{
    pid_t pid = bench_spawn(argv, NULL, -1, -1);
    if (pid < 0)
        return -1;
    if (wait_answer(port, "PING\r\n", "+PONG", timeout_ms) != 0) {
        bench_child_stop(pid, 1000);
        return -1;
    }
    return pid;
}

int bench_redis_tls_start(const char *bin, struct bench_redis_deploy *d, char *why, size_t wsize)
{
    memset(d, 0, sizeof *d);
    if (access(bin, X_OK) != 0 || access(OPENSSL_BIN, X_OK) != 0) {
        snprintf(why, wsize, "skipped: %s not found", access(bin, X_OK) != 0 ? bin : OPENSSL_BIN);
        return -1;
    }
    if (make_dir(d) != 0) {
        snprintf(why, wsize, "skipped: no temporary directory");
        return -1;
    }
    char key[160], cert[160];
    snprintf(key, sizeof key, "%s/key.pem", d->dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", d->dir);
    const char *gen[] = {OPENSSL_BIN,
                         "req",
                         "-x509",
                         "-newkey",
                         "ec",
                         "-pkeyopt",
                         "ec_paramgen_curve:prime256v1",
                         "-nodes",
                         "-keyout",
                         key,
                         "-out",
                         cert,
                         "-days",
                         "1",
                         "-subj",
                         "/CN=localhost",
                         "-addext",
                         "subjectAltName=IP:127.0.0.1,DNS:localhost",
                         NULL};
    if (run_wait(gen, 20000) != 0) {
        snprintf(why, wsize, "skipped: openssl could not make a certificate");
        bench_redis_deploy_stop(d);
        return -1;
    }
    int plain = 0, tls = 0;
    char p1[16], p2[16];
    const char *argv[] = {bin,         "--port",
                          p1,          "--tls-port",
                          p2,          "--tls-cert-file",
                          cert,        "--tls-key-file",
                          key,         "--tls-ca-cert-file",
                          cert,        "--tls-auth-clients",
                          "no",        "--bind",
                          "127.0.0.1", "--save",
                          "",          "--appendonly",
                          "no",        "--daemonize",
                          "no",        "--dir",
                          d->dir,      NULL};
    /* ready when the plain port answers; the runs use the TLS one. A free port can be taken
     * by another process before redis-server binds it (tests run side by side): new ports,
     * up to three times */
    d->nodes[0].pid = -1;
    for (int attempt = 0; attempt < 3 && d->nodes[0].pid < 0; attempt++) {
        plain = bench_free_port();
        tls = bench_free_port();
        snprintf(p1, sizeof p1, "%d", plain);
        snprintf(p2, sizeof p2, "%d", tls);
        d->nodes[0].pid = start_node(argv, plain, 10000);
    }
    if (d->nodes[0].pid < 0) {
        snprintf(why, wsize, "skipped: %s with --tls-port did not start (built without TLS?)", bin);
        bench_redis_deploy_stop(d);
        return -1;
    }
    d->nodes[0].port = tls;
    d->n = 1;
    snprintf(d->url, sizeof d->url, "rediss://127.0.0.1:%d", tls);
    return 0;
}

/* A free port whose cluster bus port (port + 10000) is free and in range too. */
static int cluster_port(void)
{
    for (int i = 0; i < 200; i++) {
        int p = bench_free_port();
        if (p <= 0 || p + 10000 > 65535)
            continue;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)(p + 10000)),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return p;
    }
    return -1;
}

int bench_redis_cluster_start(const char *bin, const char *cli, struct bench_redis_deploy *d,
                              char *why, size_t wsize)
{
    memset(d, 0, sizeof *d);
    if (access(bin, X_OK) != 0 || access(cli, X_OK) != 0) {
        snprintf(why, wsize, "skipped: %s not found", access(bin, X_OK) != 0 ? bin : cli);
        return -1;
    }
    if (make_dir(d) != 0) {
        snprintf(why, wsize, "skipped: no temporary directory");
        return -1;
    }
    char addr[3][32];
    for (size_t i = 0; i < 3; i++) {
        int port = 0;
        char p[16], conf[200];
        const char *argv[] = {bin,         "--port",
                              p,           "--cluster-enabled",
                              "yes",       "--cluster-config-file",
                              conf,        "--cluster-node-timeout",
                              "2000",      "--bind",
                              "127.0.0.1", "--save",
                              "",          "--appendonly",
                              "no",        "--daemonize",
                              "no",        "--dir",
                              d->dir,      NULL};
        d->nodes[i].pid = -1;
        for (int attempt = 0; attempt < 3 && d->nodes[i].pid < 0; attempt++) {
            /* new ports when another process took the free one first */
            port = cluster_port();
            snprintf(p, sizeof p, "%d", port);
            snprintf(conf, sizeof conf, "%s/nodes-%d.conf", d->dir, port);
            snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", port);
            d->nodes[i].pid = start_node(argv, port, 10000);
        }
        if (d->nodes[i].pid < 0) {
            snprintf(why, wsize, "skipped: cluster node %s did not start", addr[i]);
            bench_redis_deploy_stop(d);
            return -1;
        }
        d->nodes[i].port = port;
        d->n = i + 1;
    }
    const char *create[] = {cli,     "--cluster",          "create", addr[0],         addr[1],
                            addr[2], "--cluster-replicas", "0",      "--cluster-yes", NULL};
    if (run_wait(create, 30000) != 0) {
        snprintf(why, wsize, "skipped: redis-cli --cluster create failed");
        bench_redis_deploy_stop(d);
        return -1;
    }
    for (size_t i = 0; i < 3; i++)
        if (wait_answer(d->nodes[i].port, "CLUSTER INFO\r\n", "cluster_state:ok", 10000) != 0) {
            snprintf(why, wsize, "skipped: the cluster did not become ok within 10 s");
            bench_redis_deploy_stop(d);
            return -1;
        }
    snprintf(d->url, sizeof d->url, "redis-cluster://%s,%s,%s", addr[0], addr[1], addr[2]);
    return 0;
}

void bench_redis_deploy_stop(struct bench_redis_deploy *d)
{
    for (size_t i = 0; i < d->n; i++) {
        if (d->nodes[i].pid > 0)
            bench_child_stop(d->nodes[i].pid, BENCH_STOP_TIMEOUT_MS);
        d->nodes[i].pid = -1;
    }
    d->n = 0;
    if (d->dir[0]) {
        DIR *dir = opendir(d->dir);
        struct dirent *e;
        while (dir && (e = readdir(dir))) {
            if (e->d_name[0] == '.')
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", d->dir, e->d_name);
            unlink(path);
        }
        if (dir)
            closedir(dir);
        rmdir(d->dir);
        d->dir[0] = 0;
    }
}
