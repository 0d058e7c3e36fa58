/*
 * bench_startup.c - how fast the plugin is ready and how small it sits idle.
 *
 * Launches the executable N times the way go-plugin does (Grafana's environment, stdout and
 * stderr pipes), measures the time from fork to the handshake line on stdout, then, after the
 * plugin has been idle for a moment, its resident memory (VmRSS) and thread count; stops it
 * with SIGTERM and checks it exits. Prints median, p90 and max.
 *
 *   cachingproxy-bench-startup [--runs N] [--idle-ms MS] [--json] [path/to/gpx_cachingproxy]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static long status_field(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl)) {
            v = strtol(line + fl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* One launch; fills the time to the handshake line, RSS (KiB) and threads. */
static int run_once(const char *exe, int idle_ms, double *startup, long *rss, long *threads)
{
    int out[2], err[2];
    if (pipe(out) || pipe(err))
        return -1;
    char *envp[] = {"grafana_plugin_type=datasource", "PLUGIN_MIN_PORT=10000",
                    "PLUGIN_MAX_PORT=25000", "PLUGIN_PROTOCOL_VERSIONS=2",
                    "CACHINGPROXY_LOG_LEVEL=warn", NULL};
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execle(exe, exe, (char *)NULL, envp);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    char line[512];
    size_t n = 0;
    int ok = 0;
    while (n < sizeof line - 1) {
        struct pollfd p = {out[0], POLLIN, 0};
        if (poll(&p, 1, 10000) <= 0)
            break;
        ssize_t r = read(out[0], line + n, 1);
        if (r <= 0)
            break;
        if (line[n++] == '\n') {
            ok = 1;
            break;
        }
    }
    *startup = now_ms() - t0;
    line[n] = 0;
    if (ok && strncmp(line, "1|2|", 4) != 0)
        ok = 0;
    if (ok) {
        struct timespec idle = {idle_ms / 1000, (idle_ms % 1000) * 1000000L};
        nanosleep(&idle, NULL);
        *rss = status_field(pid, "VmRSS:");
        *threads = status_field(pid, "Threads:");
    }
    kill(pid, SIGTERM);
    /* drain stderr so the plugin never blocks on a full pipe while stopping */
    char buf[4096];
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    int status = 0;
    double deadline = now_ms() + 5000;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        while (read(err[0], buf, sizeof buf) > 0)
            ;
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ok = 0;
            break;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    close(out[0]);
    close(err[0]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    int runs = 20, idle_ms = 500, json = 0;
    const char *exe = "build/gpx_cachingproxy";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--idle-ms") && i + 1 < argc)
            idle_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else
            exe = argv[i];
    }
    if (runs < 1)
        runs = 1;
    double *st = calloc((size_t)runs, sizeof *st), *rs = calloc((size_t)runs, sizeof *rs);
    long threads = 0;
    for (int i = 0; i < runs; i++) {
        long rss = 0;
        if (run_once(exe, idle_ms, &st[i], &rss, &threads) != 0) {
            fprintf(stderr, "run %d failed (no handshake line, or no clean exit)\n", i + 1);
            return 1;
        }
        rs[i] = (double)rss / 1024.0;
    }
    qsort(st, (size_t)runs, sizeof *st, cmp_double);
    qsort(rs, (size_t)runs, sizeof *rs, cmp_double);
    int p90 = (runs * 9 + 9) / 10 - 1;
    if (json)
        printf("{\"runs\":%d,\"startup_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"max\":%.2f},"
               "\"idle_rss_mib\":{\"p50\":%.2f,\"max\":%.2f},\"threads\":%ld}\n",
               runs, st[runs / 2], st[p90], st[runs - 1], rs[runs / 2], rs[runs - 1], threads);
    else
        printf("startup to handshake line (%d runs): p50 %.2f ms, p90 %.2f ms, max %.2f ms "
               "(target < 20 ms)\n"
               "idle RSS after %d ms: p50 %.2f MiB, max %.2f MiB (target < 16 MiB); threads %ld\n",
               runs, st[runs / 2], st[p90], st[runs - 1], idle_ms, rs[runs / 2], rs[runs - 1],
               threads);
    free(st);
    free(rs);
    return 0;
}
