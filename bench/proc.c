/*
 * proc.c - the processes and signals of cachingproxy-bench: children it starts (the plugin,
 * redis-server, the bare server) with a pid table, and the one thread that takes SIGINT and
 * SIGTERM. An interrupt sets bench_interrupted, which every loop checks, so the run ends with
 * its normal cleanup and a partial report; should that overrun, the signal thread kills the
 * children itself and exits.
 */
#include <dirent.h>
#include "bench_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 8
#define INTERRUPT_GRACE_MS 8000

extern char **environ;

/* Set by the signal thread, read by every loop; the pid table lets the signal thread kill the
 * children when cleanup overruns. Both are process-wide by nature (a signal is). */
_Atomic int bench_interrupted;
static _Atomic pid_t children[MAX_CHILDREN];
static _Atomic int cleanup_done;

void bench_cleanup_done(void)
{
    atomic_store(&cleanup_done, 1);
}

void bench_child_track(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t zero = 0;
        if (atomic_compare_exchange_strong(&children[i], &zero, pid))
            return;
    }
}

void bench_child_untrack(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t p = pid;
        if (atomic_compare_exchange_strong(&children[i], &p, 0))
            return;
    }
}

pid_t bench_spawn(const char *const *argv, const char *const *envp, int out_fd, int err_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0)
            bench_child_track(pid);
        return pid;
    }
    /* child of a threaded process: async-signal-safe calls only, then exec */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setpgid(0, 0); /* a terminal's Ctrl-C reaches the bench alone; it stops the children */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int dn = open("/dev/null", O_RDWR);
    dup2(dn, 0);
    dup2(out_fd >= 0 ? out_fd : dn, 1);
    dup2(err_fd >= 0 ? err_fd : dn, 2);
    execve(argv[0], (char *const *)argv, envp ? (char *const *)envp : environ);
    _exit(127);
}

int bench_child_stop(pid_t pid, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    int st = 0;
    kill(pid, timeout_ms > 0 ? SIGTERM : SIGKILL);
    int64_t deadline = cp_mono_ns() + (int64_t)timeout_ms * 1000000;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && cp_mono_ns() < deadline) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        w = waitpid(pid, &st, 0);
    }
    bench_child_untrack(pid);
    return w == pid ? st : -1;
}

struct sig_args {
    sigset_t set;
    int quiet; /* the bare server child: being stopped is its normal end */
};

static void *signal_main(void *arg)
{
    struct sig_args *sa = arg;
    int sig = 0;
    if (sigwait(&sa->set, &sig) != 0)
        return NULL;
    atomic_store(&bench_interrupted, 1);
    static const char msg[] = "\nbench: interrupted; stopping children\n";
    if (!sa->quiet && write(2, msg, sizeof msg - 1) < 0) {
        /* nothing to do: stderr is gone */
    }
    for (int waited = 0; waited < INTERRUPT_GRACE_MS && !atomic_load(&cleanup_done); waited += 50) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&cleanup_done))
        return NULL;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t p = atomic_load(&children[i]);
        if (p > 0) {
            kill(p, SIGKILL);
            waitpid(p, NULL, 0);
        }
    }
    _exit(130);
}

int bench_signals_start(int quiet)
{
    static struct sig_args sa;
    sigemptyset(&sa.set);
    sigaddset(&sa.set, SIGINT);
    sigaddset(&sa.set, SIGTERM);
    sa.quiet = quiet;
    pthread_sigmask(SIG_BLOCK, &sa.set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t th;
    if (pthread_create(&th, NULL, signal_main, &sa) != 0)
        return -1;
    pthread_detach(th);
    return 0;
}

/* ---- limits ------------------------------------------------------------------------------------
 */

long bench_fd_limit_raise(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rlim_t w = (rlim_t)want;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= w)
        return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < w) {
        struct rlimit up = {w, w}; /* root (CAP_SYS_RESOURCE) may raise the hard limit */
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return want;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > w ? w : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

/* ---- redis-server ---------------------------------------------------------------------------- */

int bench_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* PING until +PONG, bounded by timeout_ms. */
static int redis_ready(int port, int timeout_ms)
{
    int64_t deadline = cp_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (cp_mono_ns() < deadline && !atomic_load(&bench_interrupted)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            write(fd, "PING\r\n", 6) == 6) {
            struct pollfd pf = {fd, POLLIN, 0};
            char buf[16] = {0};
            if (poll(&pf, 1, 500) == 1 && read(fd, buf, sizeof buf - 1) > 0 &&
                !strncmp(buf, "+PONG", 5)) {
                close(fd);
                return 0;
            }
        }
        if (fd >= 0)
            close(fd);
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int bench_redis_start(const char *bin, struct bench_redis *r, char *why, size_t wsize)
{
    r->pid = -1;
    r->port = 0;
    if (access(bin, X_OK) != 0) {
        snprintf(why, wsize, "skipped: %s not found", bin);
        return -1;
    }
    r->port = bench_free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    const char *argv[] = {bin, "--port",       port, "--bind",      "127.0.0.1", "--save",
                          "",  "--appendonly", "no", "--daemonize", "no",        NULL};
    r->pid = bench_spawn(argv, NULL, -1, -1);
    if (r->pid < 0) {
        snprintf(why, wsize, "skipped: cannot start %s", bin);
        return -1;
    }
    if (redis_ready(r->port, 5000) != 0) {
        bench_child_stop(r->pid, 1000);
        r->pid = -1;
        snprintf(why, wsize, "skipped: %s did not answer PING on port %d within 5 s", bin, r->port);
        return -1;
    }
    return 0;
}

void bench_redis_stop(struct bench_redis *r)
{
    if (r->pid > 0)
        bench_child_stop(r->pid, BENCH_STOP_TIMEOUT_MS);
    r->pid = -1;
}

/* CPU time (user + system, ns) a process has used so far; -1 when /proc cannot tell. */
int64_t bench_proc_cpu_ns(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    long hz = sysconf(_SC_CLK_TCK);
    if (!p || hz <= 0 ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (int64_t)((ut + st) * (1000000000ull / (unsigned long long)hz));
}

/* CPU time (user + system, ns) and context switches (voluntary + involuntary, over every
 * thread) a process has used so far; -1 when /proc cannot tell. */
int bench_proc_usage(pid_t pid, int64_t *cpu_ns, uint64_t *switches)
{
    char path[64];
    if ((*cpu_ns = bench_proc_cpu_ns(pid)) < 0)
        return -1;
    *switches = 0;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sp[320], line[256];
        snprintf(sp, sizeof sp, "/proc/%d/task/%s/status", (int)pid, e->d_name);
        FILE *t = fopen(sp, "r");
        if (!t)
            continue;
        while (fgets(line, sizeof line, t)) {
            unsigned long long v;
            if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
                *switches += v;
        }
        fclose(t);
    }
    closedir(d);
    return 0;
}
