/*
 * core.c - `preset core`: what the event-driven core gives, in one run, ratios side by side.
 * One plugin process, launched as Grafana launches it, one channel, calls from the async
 * client (grpc_async.c: two threads, a completion queue each, any number of calls in flight);
 * with --before, an older build's plugin runs the same cells too (but the largest burst):
 *
 *   bursts   N distinct misses at once on a slow upstream (64 and 512 on 1 s, 5,000 on 2 s):
 *            wall time of the whole burst against one upstream latency, every answer counted,
 *            the plugin's threads and RSS sampled from /proc/PID/status during the burst, and
 *            its threads at rest; the simulator counts the answers it held at once
 *   forward  uncached CallResource (cache off), 1 KiB, 8 calls in flight, against a bare gRPC
 *            round trip of the same answer bytes (bare_server.c, in this process and in a
 *            child process)
 *   hit      a memory hit through CallResource, 1 KiB, 1 and 8 in flight, against the same
 *
 * The loops run in rounds in which every target (plugin, bare servers, plugin before) takes its
 * turn, so that the load of a shared machine falls on them alike; a cell pools its rounds.
 * and the goals the core was built for, each with its figure and whether it was met. The
 * results go into the document as "core" (text tables and the HTML page are drawn from it).
 */
#include "bench_int.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define CLIENT_THREADS 2
#define SAMPLE_MS 5
#define BURST_MAX_CONNECTIONS 10000 /* the data source's cap, above the largest burst */
#define BEFORE_MAX_BURST 1024       /* bursts the plugin before (--before) runs */
#define FD_MARGIN 512               /* descriptors beyond one per call, for either process */
#define BODY_BYTES 1024
#define MAX_NAMES 48
#define MAX_TASKS 512 /* threads of the plugin read per snapshot */
/* closed loops: rounds of a short loop per target (warm-up, then the measured part) */
#define ROUNDS_FULL 4
#define ROUNDS_QUICK 2
#define ROUND_WARMUP_S 0.1
#define ROUND_S_FULL 0.5
#define ROUND_S_QUICK 0.2

/* The goals, as the core's issue states them. */
#define GOAL_WALL_RATIO 1.3
#define GOAL_MAX_THREADS 24
#define GOAL_FORWARD_RATIO 0.4

struct burst_spec {
    unsigned calls;
    int latency_ms;
};
static const struct burst_spec bursts_full[] = {{64, 1000}, {512, 1000}, {5000, 2000}};
static const struct burst_spec bursts_quick[] = {{16, 200}, {64, 200}, {256, 400}};
#define NBURSTS 3

static double r3(double v)
{
    return round(v * 1000) / 1000;
}

static double mib(long kib)
{
    return kib < 0 ? -1 : r3((double)kib / 1024);
}

/* ---- the plugin's threads and memory ------------------------------------------------------ */

/* Threads and VmRSS (KiB) of pid; -1 when unknown. */
static void proc_sample(pid_t pid, long *threads, long *rss_kib)
{
    char path[64], line[256];
    *threads = *rss_kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "Threads:", 8))
            *threads = strtol(line + 8, NULL, 10);
        else if (!strncmp(line, "VmRSS:", 6))
            *rss_kib = strtol(line + 6, NULL, 10);
    }
    fclose(f);
}

/* CPU time (user + system) of pid in µs, -1 when unknown. */
static int64_t proc_cpu_us(pid_t pid)
{
    int64_t ns = bench_proc_cpu_ns(pid);
    return ns < 0 ? -1 : ns / 1000;
}

/* CPU time of this process (client threads, simulator, in-process bare server) in µs. */
static int64_t self_cpu_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

struct tname {
    char name[20];
    unsigned n;
};

static int tname_cmp(const void *a, const void *b)
{
    const struct tname *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return strcmp(x->name, y->name);
}

/* "name xN, ..." of pid's threads by their comm, most frequent first. Returns how many are
 * named as the main thread: the plugin's own (gRPC names its threads, the plugin does not),
 * -1 when unknown. */
static long thread_names(pid_t pid, char *out, size_t size)
{
    char path[64], main_name[20] = "";
    struct tname names[MAX_NAMES];
    size_t nn = 0;
    out[0] = 0;
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char cpath[300], name[20] = "?";
        snprintf(cpath, sizeof cpath, "/proc/%d/task/%s/comm", (int)pid, e->d_name);
        FILE *f = fopen(cpath, "r");
        if (f) {
            if (fgets(name, sizeof name, f))
                name[strcspn(name, "\n")] = 0;
            fclose(f);
        }
        if (atoi(e->d_name) == (int)pid)
            snprintf(main_name, sizeof main_name, "%s", name);
        size_t i = 0;
        while (i < nn && strcmp(names[i].name, name))
            i++;
        if (i == nn && nn < MAX_NAMES) {
            snprintf(names[nn].name, sizeof names[nn].name, "%s", name);
            names[nn++].n = 0;
        }
        if (i < nn)
            names[i].n++;
    }
    closedir(d);
    long own = 0;
    for (size_t i = 0; i < nn; i++)
        if (!strcmp(names[i].name, main_name))
            own = names[i].n;
    qsort(names, nn, sizeof *names, tname_cmp);
    size_t at = 0;
    for (size_t i = 0; i < nn && at + 1 < size; i++) {
        int w = snprintf(out + at, size - at, "%s%s x%u", i ? ", " : "", names[i].name, names[i].n);
        if (w < 0)
            break;
        at += (size_t)w;
    }
    return own;
}

/* CPU time of each of pid's threads: tid, name, µs. Returns how many (at most cap). */
struct tcpu {
    int tid;
    char name[20];
    int64_t us;
    int order; /* among the threads of the same name, by tid (creation order) */
};

static size_t task_cpu(pid_t pid, struct tcpu *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    long hz = sysconf(_SC_CLK_TCK);
    while (n < cap && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char spath[300], buf[1024];
        snprintf(spath, sizeof spath, "/proc/%d/task/%s/stat", (int)pid, e->d_name);
        FILE *f = fopen(spath, "r");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        unsigned long long ut, st;
        if (!open || !close || close < open || hz <= 0 ||
            sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) !=
                2)
            continue;
        out[n].tid = atoi(e->d_name);
        snprintf(out[n].name, sizeof out[n].name, "%.*s", (int)(close - open - 1), open + 1);
        out[n].us = (int64_t)((ut + st) * 1000000ull / (unsigned long long)hz);
        n++;
    }
    closedir(d);
    return n;
}

static int tcpu_cmp(const void *a, const void *b)
{
    const struct tcpu *x = a, *y = b;
    return x->us < y->us ? 1 : x->us > y->us ? -1 : x->tid - y->tid;
}

/* The threads that used CPU between two task_cpu snapshots, most first:
 * [{tid,name,order,main,ms}]; order numbers the threads of one name in creation order (tids
 * grow), the main thread (tid = pid) being 0. */
static json_t *cpu_by_thread(pid_t pid, const struct tcpu *a, size_t na, struct tcpu *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++) {
        b[i].order = 0;
        for (size_t k = 0; k < nb; k++)
            if (b[k].tid < b[i].tid && !strcmp(b[k].name, b[i].name))
                b[i].order++;
    }
    for (size_t i = 0; i < nb; i++)
        for (size_t k = 0; k < na; k++)
            if (a[k].tid == b[i].tid) {
                b[i].us -= a[k].us;
                break;
            }
    qsort(b, nb, sizeof *b, tcpu_cmp);
    json_t *arr = json_array();
    for (size_t i = 0; i < nb && i < 8 && b[i].us > 0; i++)
        json_array_append_new(arr,
                              json_pack("{s:i,s:s,s:i,s:b,s:f}", "tid", b[i].tid, "name", b[i].name,
                                        "order", b[i].order, "main", b[i].tid == (int)pid, "ms",
                                        r3((double)b[i].us / 1000)));
    return arr;
}

/* Samples the plugin every SAMPLE_MS while a burst runs; keeps the peaks (all threads, the
 * plugin's own, RSS) and the names of the threads at the peak. */
struct sampler {
    pid_t pid;
    pthread_t th;
    int started;
    _Atomic int stop;
    long threads_max, own_max, rss_max_kib;
    char names[512], now[512];
};

static void *sampler_main(void *arg)
{
    struct sampler *s = arg;
    for (;;) {
        int last = atomic_load(&s->stop);
        long th, rss;
        proc_sample(s->pid, &th, &rss);
        long own = thread_names(s->pid, s->now, sizeof s->now);
        if (own > s->own_max)
            s->own_max = own;
        if (th > s->threads_max) {
            s->threads_max = th;
            memcpy(s->names, s->now, sizeof s->names);
        }
        if (rss > s->rss_max_kib)
            s->rss_max_kib = rss;
        if (last)
            break;
        struct timespec ts = {0, SAMPLE_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void sampler_start(struct sampler *s, pid_t pid)
{
    memset(s, 0, sizeof *s);
    s->pid = pid;
    s->threads_max = s->own_max = s->rss_max_kib = -1;
    s->started = pthread_create(&s->th, NULL, sampler_main, s) == 0;
}

/* Stops it after one last sample. */
static void sampler_stop(struct sampler *s)
{
    atomic_store(&s->stop, 1);
    if (s->started)
        pthread_join(s->th, NULL);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static json_t *by_cache_json(const uint64_t *by)
{
    json_t *o = json_object();
    for (int i = 0; i < BENCH_CACHE_N; i++)
        json_object_set_new(o, bench_cache_name((enum bench_cache)i),
                            json_integer((json_int_t)by[i]));
    return o;
}

static void say(const struct bench_core_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void say(const struct bench_core_opts *o, const char *fmt, ...)
{
    if (!o->progress)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: core: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* One checked call through a fresh completion queue; keep: the first message is returned
 * (caller frees it with pluginv2__call_resource_response__free_unpacked). */
static int call_once(struct bench_chan *chan, const struct bench_ds *ds, const char *url,
                     const char *want_xcache, Pluginv2__CallResourceResponse **keep,
                     struct cp_err *err)
{
    struct bench_caller k;
    if (bench_caller_init(&k, chan) != 0)
        return cp_err_set(err, CP_ENOMEM, "cannot create a completion queue");
    size_t len;
    uint8_t *req = bench_pack_resource(ds, url, &len);
    struct bench_res r;
    int rc = req ? bench_call_resource(&k, req, len, keep != NULL, &r, err)
                 : cp_err_set(err, CP_ENOMEM, "out of memory");
    free(req);
    bench_caller_dispose(&k);
    if (!rc && r.code != 200)
        rc = cp_err_set(err, CP_EUPSTREAM, "GET %s: HTTP %d (want 200)", url, r.code);
    if (!rc && want_xcache && strcmp(r.xcache, want_xcache))
        rc = cp_err_set(err, CP_EUPSTREAM, "GET %s: X-Cache %s (want %s)", url,
                        r.xcache[0] ? r.xcache : "(none)", want_xcache);
    if (keep) {
        *keep = rc ? NULL : r.first;
        if (rc && r.first)
            pluginv2__call_resource_response__free_unpacked(r.first, NULL);
    }
    return rc;
}

/* ---- bursts -------------------------------------------------------------------------------------
 */

static int run_burst(const struct bench_core_opts *o, struct bench_plugin *p,
                     const struct bench_ds *ds, const char *label, unsigned idx,
                     const struct burst_spec *b, json_t **out, struct cp_err *err)
{
    uint8_t **reqs = calloc(b->calls, sizeof *reqs);
    size_t *lens = calloc(b->calls, sizeof *lens);
    struct bench_acall *res = calloc(b->calls, sizeof *res);
    int64_t *lat = calloc(b->calls, sizeof *lat);
    struct tcpu *tc0 = NULL, *tc1 = NULL; /* the plugin's threads' CPU before and after */
    int rc = reqs && lens && res && lat ? 0 : cp_err_set(err, CP_ENOMEM, "out of memory");
    for (unsigned i = 0; !rc && i < b->calls; i++) {
        char url[160];
        snprintf(url, sizeof url, "proxy/data?size=%d&delay_ms=%d&id=b%u-%u-%s", BODY_BYTES,
                 b->latency_ms, idx, i, strcmp(label, "plugin") ? "before" : "now");
        if (!(reqs[i] = bench_pack_resource(ds, url, &lens[i])))
            rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    if (rc)
        goto out;
    say(o, "%s: burst of %u distinct misses, upstream %d ms", label, b->calls, b->latency_ms);
    struct bench_aload l = {.chan = &p->chan,
                            .reqs = (const uint8_t *const *)reqs,
                            .lens = lens,
                            .nreqs = b->calls,
                            .threads = CLIENT_THREADS,
                            .timeout_ms = b->latency_ms + BENCH_CALL_TIMEOUT_MS};
    long th0, rss0;
    proc_sample(p->pid, &th0, &rss0);
    struct bench_sim_counts s0, s1;
    bench_sim_reset_peak(o->sim);
    bench_sim_counts(o->sim, &s0);
    struct sampler smp;
    tc0 = calloc(MAX_TASKS, sizeof *tc0);
    tc1 = calloc(MAX_TASKS, sizeof *tc1);
    size_t ntc0 = tc0 ? task_cpu(p->pid, tc0, MAX_TASKS) : 0;
    int64_t cpu0 = proc_cpu_us(p->pid), self0 = self_cpu_us();
    sampler_start(&smp, p->pid);
    rc = bench_async_burst(&l, res, err);
    sampler_stop(&smp);
    int64_t cpu1 = proc_cpu_us(p->pid), self1 = self_cpu_us();
    size_t ntc1 = tc1 ? task_cpu(p->pid, tc1, MAX_TASKS) : 0;
    bench_sim_counts(o->sim, &s1);
    if (rc)
        goto out;
    int64_t first_start = INT64_MAX, last_start = 0, last_end = 0;
    uint64_t ok = 0, http_errors = 0, failed = 0, by[BENCH_CACHE_N] = {0};
    size_t nlat = 0;
    char first_error[160] = "";
    for (unsigned i = 0; i < b->calls; i++) {
        const struct bench_acall *c = &res[i];
        if (c->start_ns < first_start)
            first_start = c->start_ns;
        if (c->start_ns > last_start)
            last_start = c->start_ns;
        if (c->end_ns > last_end)
            last_end = c->end_ns;
        if (c->grpc_status != 0) {
            failed++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "gRPC status %d", c->grpc_status);
            continue;
        }
        if (c->code == 200 && c->bytes == BODY_BYTES) {
            ok++;
        } else {
            http_errors++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "HTTP %d, %zu bytes", c->code, c->bytes);
        }
        by[c->cache]++;
        lat[nlat++] = c->end_ns - c->start_ns;
    }
    qsort(lat, nlat, sizeof *lat, cmp_i64);
    double wall_ms = (double)(last_end - first_start) / 1e6;
    json_t *j = json_pack(
        "{s:s,s:i,s:i,s:f,s:f,s:f,s:I,s:I,s:I,s:o,s:{s:f,s:f,s:f},s:i,s:i,s:s,s:f,s:f,"
        "s:{s:I,s:I,s:I,s:I}}",
        "plugin", label, "calls", (int)b->calls, "upstreamLatencyMs", b->latency_ms, "wallMs",
        r3(wall_ms), "wallOverLatency", r3(wall_ms / b->latency_ms), "startSpreadMs",
        r3((double)(last_start - first_start) / 1e6), "answered", (json_int_t)ok, "httpErrors",
        (json_int_t)http_errors, "failed", (json_int_t)failed, "byCache", by_cache_json(by),
        "latencyMs", "p50", r3((double)bench_percentile(lat, nlat, 50) / 1e6), "p99",
        r3((double)bench_percentile(lat, nlat, 99) / 1e6), "max",
        r3(nlat ? (double)lat[nlat - 1] / 1e6 : 0), "threadsBefore", (int)th0, "threadsPeak",
        (int)smp.threads_max, "threadsAtPeak", smp.names, "rssBeforeMiB", mib(rss0), "rssPeakMiB",
        mib(smp.rss_max_kib), "upstream", "requests",
        (json_int_t)(s1.data_requests - s0.data_requests), "connsOpened",
        (json_int_t)(s1.conns_opened - s0.conns_opened), "connsPeakOpen", (json_int_t)s1.conns_peak,
        "heldAtOnce", (json_int_t)s1.delayed_peak);
    json_object_set_new(j, "ownThreadsPeak", json_integer(smp.own_max));
    if (cpu0 >= 0 && cpu1 >= 0)
        json_object_set_new(j, "pluginCpuMs", json_real(r3((double)(cpu1 - cpu0) / 1000)));
    if (self0 >= 0 && self1 >= 0)
        json_object_set_new(j, "benchCpuMs", json_real(r3((double)(self1 - self0) / 1000)));
    if (ntc1)
        json_object_set_new(j, "pluginCpuByThread", cpu_by_thread(p->pid, tc0, ntc0, tc1, ntc1));
    if (s1.first_delayed_ns) {
        /* when the requests reached the upstream, from the first call's start */
        json_t *up = json_object_get(j, "upstream");
        json_object_set_new(up, "firstArrivalMs",
                            json_real(r3((double)(s1.first_delayed_ns - first_start) / 1e6)));
        json_object_set_new(up, "lastArrivalMs",
                            json_real(r3((double)(s1.last_delayed_ns - first_start) / 1e6)));
    }
    if (first_error[0])
        json_object_set_new(j, "firstError", json_string(first_error));
    *out = j;
    say(o, "  %llu of %u answered in %.0f ms, %ld threads at most", (unsigned long long)ok,
        b->calls, wall_ms, smp.threads_max);
out:
    free(tc0);
    free(tc1);
    for (unsigned i = 0; reqs && i < b->calls; i++)
        free(reqs[i]);
    free(reqs);
    free(lens);
    free(res);
    free(lat);
    return rc;
}

/* ---- closed loops, the targets taking turns ----------------------------------------------------
 */

/* Who answers a loop: a plugin or a bare server, on its own channel. */
struct target {
    const char *label; /* "plugin", "bare in-process", "bare child process", "plugin before" */
    struct bench_chan *chan;
    pid_t server; /* the answering process, for its CPU time; -1: this one */
};

/* One cell (a target at one number in flight), its rounds added up. */
struct cell {
    const struct target *t;
    unsigned inflight;
    int64_t *ns; /* latencies of every round's window */
    size_t n;
    uint64_t ok, http_errors, failed, answered_all;
    uint64_t by_cache[BENCH_CACHE_N];
    double secs;
    int64_t server_cpu_us, bench_cpu_us; /* -1 unknown */
    char first_error[160];
};

/* One round of a cell: a short closed loop, added to the cell. */
static int cell_round(const struct bench_core_opts *o, struct cell *c, const uint8_t *req,
                      size_t len, struct cp_err *err)
{
    const uint8_t *reqs[1] = {req};
    size_t lens[1] = {len};
    struct bench_aload l = {.chan = c->t->chan,
                            .reqs = reqs,
                            .lens = lens,
                            .nreqs = 1,
                            .threads = CLIENT_THREADS,
                            .timeout_ms = BENCH_CALL_TIMEOUT_MS,
                            .inflight = c->inflight,
                            .warmup_s = ROUND_WARMUP_S,
                            .duration_s = o->quick ? ROUND_S_QUICK : ROUND_S_FULL,
                            .keep_samples = 1};
    struct bench_aloop_result r;
    int64_t s0 = c->t->server > 0 ? proc_cpu_us(c->t->server) : -1, b0 = self_cpu_us();
    int rc = bench_async_loop(&l, &r, err);
    int64_t s1 = c->t->server > 0 ? proc_cpu_us(c->t->server) : -1, b1 = self_cpu_us();
    if (rc)
        return rc;
    int64_t *nn = realloc(c->ns, (c->n + r.nsamples + 1) * sizeof *nn);
    if (!nn) {
        free(r.samples);
        return cp_err_set(err, CP_ENOMEM, "out of memory for samples");
    }
    c->ns = nn;
    if (r.nsamples)
        memcpy(c->ns + c->n, r.samples, r.nsamples * sizeof *nn);
    c->n += r.nsamples;
    free(r.samples);
    c->ok += r.ok;
    c->http_errors += r.http_errors;
    c->failed += r.failed;
    c->answered_all += r.answered_all;
    for (int k = 0; k < BENCH_CACHE_N; k++)
        c->by_cache[k] += r.by_cache[k];
    c->secs += r.st.secs;
    c->server_cpu_us =
        s0 >= 0 && s1 >= 0 && c->server_cpu_us >= 0 ? c->server_cpu_us + (s1 - s0) : -1;
    c->bench_cpu_us = b0 >= 0 && b1 >= 0 && c->bench_cpu_us >= 0 ? c->bench_cpu_us + (b1 - b0) : -1;
    if (!c->first_error[0] && r.first_error[0])
        snprintf(c->first_error, sizeof c->first_error, "%s", r.first_error);
    return 0;
}

static json_t *cell_json(struct cell *c, const char *group, const char *want_xcache, int rounds)
{
    qsort(c->ns, c->n, sizeof *c->ns, cmp_i64);
    uint64_t expected = want_xcache ? c->by_cache[bench_cache_parse(want_xcache)] : 0;
    json_t *j = json_pack("{s:s,s:s,s:i,s:i,s:i,s:I,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:I,s:o}", "group",
                          group, "target", c->t->label, "inFlight", (int)c->inflight, "bodyBytes",
                          BODY_BYTES, "rounds", rounds, "calls", (json_int_t)c->n, "seconds",
                          r3(c->secs), "callsPerS", r3(c->secs > 0 ? (double)c->n / c->secs : 0),
                          "p50Ms", r3((double)bench_percentile(c->ns, c->n, 50) / 1e6), "p99Ms",
                          r3((double)bench_percentile(c->ns, c->n, 99) / 1e6), "maxMs",
                          r3(c->n ? (double)c->ns[c->n - 1] / 1e6 : 0), "ok", (json_int_t)c->ok,
                          "httpErrors", (json_int_t)c->http_errors, "failed", (json_int_t)c->failed,
                          "byCache", by_cache_json(c->by_cache));
    if (want_xcache) {
        json_object_set_new(j, "xcacheExpected", json_string(want_xcache));
        json_object_set_new(j, "xcacheShare",
                            json_real(c->n ? r3((double)expected / (double)c->n) : 0));
    }
    /* CPU per answered call over every round, warm-ups too (the CPU clocks cannot split them) */
    double per = c->answered_all ? (double)c->answered_all : 1;
    if (c->t->server > 0 && c->server_cpu_us >= 0)
        json_object_set_new(j, "serverCpuUsPerCall", json_real(r3((double)c->server_cpu_us / per)));
    if (c->bench_cpu_us >= 0)
        json_object_set_new(j, "benchCpuUsPerCall", json_real(r3((double)c->bench_cpu_us / per)));
    if (c->first_error[0])
        json_object_set_new(j, "firstError", json_string(c->first_error));
    return j;
}

/* A group of loop cells: one data source and URL, the answer the bare servers repeat. */
struct group {
    const char *name; /* "forwarding", "memoryHit" */
    const struct bench_ds *ds;
    const char *url, *want_xcache;
    const unsigned *inflight;
    size_t ninf;
    uint8_t *msg; /* the plugin's answer, packed; the bare servers send it */
    size_t mlen;
};

/* Warms the group's key in a plugin (the first call fills the cache or just warms the
 * instance; the second is the answer every measured call gets); keep: g->msg receives it. */
static int group_warm(struct bench_plugin *p, struct group *g, int keep, struct cp_err *err)
{
    Pluginv2__CallResourceResponse *answer = NULL;
    int rc = call_once(&p->chan, g->ds, g->url, NULL, NULL, err);
    if (!rc)
        rc = call_once(&p->chan, g->ds, g->url, g->want_xcache, keep ? &answer : NULL, err);
    if (rc || !keep)
        return rc;
    g->mlen = pluginv2__call_resource_response__get_packed_size(answer);
    if ((g->msg = malloc(g->mlen ? g->mlen : 1)))
        pluginv2__call_resource_response__pack(answer, g->msg);
    pluginv2__call_resource_response__free_unpacked(answer, NULL);
    return g->msg ? 0 : cp_err_set(err, CP_ENOMEM, "out of memory");
}

/* The group's cells against every target: rounds in which each target takes its turn at
 * each number in flight, the first target moving on by one each round, so that the load of a
 * shared machine falls on all of them alike. The cells go into loops in target order. */
static int group_loops(const struct bench_core_opts *o, const struct group *g,
                       const struct target *targets, size_t nt, json_t *loops, struct cp_err *err)
{
    int rounds = o->quick ? ROUNDS_QUICK : ROUNDS_FULL;
    size_t len = 0;
    uint8_t *req = bench_pack_resource(g->ds, g->url, &len);
    struct cell *cells = calloc(nt * g->ninf, sizeof *cells);
    int rc = req && cells ? 0 : cp_err_set(err, CP_ENOMEM, "out of memory");
    for (size_t k = 0; !rc && k < nt * g->ninf; k++)
        cells[k] = (struct cell){.t = &targets[k / g->ninf], .inflight = g->inflight[k % g->ninf]};
    say(o, "%s: %d rounds of %zu targets", g->name, rounds, nt);
    for (int r = 0; r < rounds && !rc && !atomic_load(&bench_interrupted); r++)
        for (size_t i = 0; i < g->ninf && !rc; i++)
            for (size_t k = 0; k < nt && !rc; k++)
                rc = cell_round(o, &cells[((k + (size_t)r) % nt) * g->ninf + i], req, len, err);
    for (size_t k = 0; !rc && k < nt * g->ninf; k++)
        json_array_append_new(loops, cell_json(&cells[k], g->name, g->want_xcache, rounds));
    for (size_t k = 0; cells && k < nt * g->ninf; k++)
        free(cells[k].ns);
    free(cells);
    free(req);
    return rc;
}

/* ---- plugin processes --------------------------------------------------------------------------
 */

/* A plugin under test: "plugin", or "plugin before" (--before). */
struct plug {
    const char *label, *exe;
    struct bench_plugin p;
    int up;
    long th_start, rss_start, th_ready, rss_ready, th_after, rss_after;
    char names_ready[512];
};

/* Starts it and measures it at rest: just started, then after one call. */
static int plug_start(const struct bench_core_opts *o, struct plug *pl,
                      const struct bench_ds *burst_ds, struct cp_err *err)
{
    say(o, "%s: %s", pl->label, pl->exe);
    pl->th_ready = pl->rss_ready = pl->th_after = pl->rss_after = -1;
    int rc = bench_plugin_start(&pl->p, pl->exe, NULL, err);
    if (rc)
        return rc;
    pl->up = 1;
    proc_sample(pl->p.pid, &pl->th_start, &pl->rss_start);
    rc = call_once(&pl->p.chan, burst_ds, "proxy/data?size=1024&delay_ms=0&id=warm", "MISS", NULL,
                   err);
    if (!rc) {
        struct timespec ts = {0, 200000000L}; /* let the first call's work settle */
        nanosleep(&ts, NULL);
        proc_sample(pl->p.pid, &pl->th_ready, &pl->rss_ready);
        thread_names(pl->p.pid, pl->names_ready, sizeof pl->names_ready);
    }
    return rc;
}

static int plug_bursts(const struct bench_core_opts *o, struct plug *pl,
                       const struct bench_ds *burst_ds, const struct burst_spec *bs, size_t nb,
                       json_t *bursts, struct cp_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < nb && !rc && !atomic_load(&bench_interrupted); i++) {
        json_t *jb = NULL;
        rc = run_burst(o, &pl->p, burst_ds, pl->label, (unsigned)i, &bs[i], &jb, err);
        if (!rc)
            json_array_append_new(bursts, jb);
    }
    proc_sample(pl->p.pid, &pl->th_after, &pl->rss_after);
    return rc;
}

/* Stops it; pj receives "threads" and "plugin" (RSS, clean exit). */
static void plug_stop(struct plug *pl, json_t *pj)
{
    if (!pl->up)
        return;
    long rss_end = bench_plugin_rss_kib(&pl->p);
    int clean = bench_plugin_stop(&pl->p) == 0;
    pl->up = 0;
    json_object_set_new(pj, "threads",
                        json_pack("{s:i,s:i,s:s,s:i}", "afterStart", (int)pl->th_start, "ready",
                                  (int)pl->th_ready, "readyNames", pl->names_ready, "afterBursts",
                                  (int)pl->th_after));
    json_object_set_new(pj, "plugin",
                        json_pack("{s:s,s:f,s:f,s:f,s:f,s:b}", "exe", pl->exe, "rssAfterStartMiB",
                                  mib(pl->rss_start), "rssReadyMiB", mib(pl->rss_ready),
                                  "rssAfterBurstsMiB", mib(pl->rss_after), "rssEndMiB",
                                  mib(rss_end), "cleanExit", clean));
}

/* The bare servers for a group's answer: in this process and in a child process. */
struct bares {
    struct bench_bare *in;
    pid_t child;
    char file[300];
    struct bench_chan in_chan, child_chan;
};

/* b starts as {.child = -1}; bares_stop undoes whatever part started. */
static int bares_start(const struct group *g, struct bares *b, struct cp_err *err)
{
    char target[400];
    int rc = bench_bare_start(g->msg, g->mlen, &b->in, target, sizeof target, err);
    if (!rc)
        rc = bench_chan_open(&b->in_chan, target, err);
    if (!rc && (b->child = bench_bare_child_start(g->msg, g->mlen, target, sizeof target, b->file,
                                                  sizeof b->file, err)) <= 0)
        rc = err && err->code ? err->code : CP_EINTERNAL;
    if (!rc)
        rc = bench_chan_open(&b->child_chan, target, err);
    return rc;
}

static void bares_stop(struct bares *b)
{
    bench_chan_close(&b->in_chan);
    bench_chan_close(&b->child_chan);
    if (b->child > 0) {
        bench_child_stop(b->child, BENCH_STOP_TIMEOUT_MS);
        unlink(b->file);
    }
    b->child = -1;
    bench_bare_stop(b->in); /* NULL-safe */
    b->in = NULL;
}

/* ---- goals
 * --------------------------------------------------------------------------------------- */

static json_t *find_loop(json_t *loops, const char *group, const char *target, int inflight)
{
    size_t i;
    json_t *c;
    json_array_foreach(loops, i, c)
    {
        if (!strcmp(json_string_value(json_object_get(c, "group")), group) &&
            !strcmp(json_string_value(json_object_get(c, "target")), target) &&
            json_integer_value(json_object_get(c, "inFlight")) == inflight)
            return c;
    }
    return NULL;
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

/* met: 1 yes, 0 no, -1 not judged (null in the document). */
static void goal(json_t *goals, const char *what, const char *figure, const char *target, int met)
{
    json_array_append_new(goals,
                          json_pack("{s:s,s:s,s:s,s:o}", "goal", what, "figure", figure, "target",
                                    target, "met", met < 0 ? json_null() : json_boolean(met)));
}

/* A plugin's figure over the faster of the two bare servers (the stricter ratio). */
static double over_bare(json_t *loops, const char *group, const char *target, int inflight,
                        const char *k, int lower)
{
    json_t *pl = find_loop(loops, group, target, inflight);
    json_t *b1 = find_loop(loops, group, "bare in-process", inflight);
    json_t *b2 = find_loop(loops, group, "bare child process", inflight);
    if (!pl || !b1 || !b2)
        return -1;
    double a = num(b1, k), b = num(b2, k);
    double best = lower ? (a < b ? a : b) : (a > b ? a : b);
    return best > 0 ? num(pl, k) / best : -1;
}

static void add_goals(json_t *core)
{
    json_t *goals = json_array();
    json_t *all_bursts = json_object_get(core, "bursts");
    json_t *loops = json_object_get(core, "loops");
    char fig[256], tgt[128];
    /* the bursts of the plugin measured (not the build before) */
    json_t *bursts = json_array();
    size_t k;
    json_t *x;
    json_array_foreach(all_bursts, k, x)
    {
        if (!strcmp(json_string_value(json_object_get(x, "plugin")), "plugin"))
            json_array_append(bursts, x);
    }
    size_t nb = json_array_size(bursts);
    json_t *mid = nb >= 2 ? json_array_get(bursts, 1) : NULL;
    json_t *big = nb >= 3 ? json_array_get(bursts, 2) : NULL;
    if (mid) {
        double r = num(mid, "wallOverLatency");
        snprintf(fig, sizeof fig, "%.0f ms for %lld calls: %.2fx", num(mid, "wallMs"),
                 (long long)json_integer_value(json_object_get(mid, "calls")), r);
        snprintf(tgt, sizeof tgt, "at most %.1fx", GOAL_WALL_RATIO);
        goal(goals, "burst of distinct misses: wall time / one upstream latency", fig, tgt,
             r > 0 && r <= GOAL_WALL_RATIO);
    }
    long tmax = -1, omin = -1, omax = -1;
    size_t i;
    json_t *b;
    int at = 0;
    json_array_foreach(bursts, i, b)
    {
        long t = (long)json_integer_value(json_object_get(b, "threadsPeak"));
        long own = (long)json_integer_value(json_object_get(b, "ownThreadsPeak"));
        at += snprintf(fig + at, sizeof fig - (size_t)at, "%s%lld calls: %ld (own %ld)",
                       i ? ", " : "", (long long)json_integer_value(json_object_get(b, "calls")), t,
                       own);
        if (t > tmax)
            tmax = t;
        if (omin < 0 || own < omin)
            omin = own;
        if (own > omax)
            omax = own;
        if (at >= (int)sizeof fig)
            at = (int)sizeof fig - 1;
    }
    if (nb) {
        snprintf(tgt, sizeof tgt, "at most %d; own threads the same at every concurrency",
                 GOAL_MAX_THREADS);
        goal(goals, "plugin threads at the peak of each burst (gRPC's included)", fig, tgt,
             tmax <= GOAL_MAX_THREADS && omax == omin);
    }
    if (big) {
        json_int_t calls = json_integer_value(json_object_get(big, "calls"));
        json_int_t ok = json_integer_value(json_object_get(big, "answered"));
        snprintf(fig, sizeof fig, "%lld of %lld; %lld threads, %.1f MiB at the peak", (long long)ok,
                 (long long)calls,
                 (long long)json_integer_value(json_object_get(big, "threadsPeak")),
                 num(big, "rssPeakMiB"));
        char what[96];
        snprintf(what, sizeof what, "%lld slow calls at once: all answered", (long long)calls);
        goal(goals, what, fig, "all", ok == calls);
    }
    double fr = over_bare(loops, "forwarding", "plugin", 8, "callsPerS", 0);
    double frb = over_bare(loops, "forwarding", "plugin before", 8, "callsPerS", 0);
    if (fr >= 0) {
        at = snprintf(fig, sizeof fig, "%.0f calls/s: %.2fx",
                      num(find_loop(loops, "forwarding", "plugin", 8), "callsPerS"), fr);
        if (frb >= 0)
            snprintf(fig + at, sizeof fig - (size_t)at, " (before: %.0f calls/s, %.2fx)",
                     num(find_loop(loops, "forwarding", "plugin before", 8), "callsPerS"), frb);
        snprintf(tgt, sizeof tgt, "at least %.1fx", GOAL_FORWARD_RATIO);
        goal(goals, "uncached forwarding, 8 in flight: calls/s / bare round trip (the faster)", fig,
             tgt, fr >= GOAL_FORWARD_RATIO);
    }
    /* "no slower than before": judged only against the build before, measured in this run */
    json_t *hn = find_loop(loops, "memoryHit", "plugin", 1);
    json_t *hb = find_loop(loops, "memoryHit", "plugin before", 1);
    double hr = over_bare(loops, "memoryHit", "plugin", 1, "p50Ms", 1);
    if (hn) {
        at = snprintf(fig, sizeof fig, "p50 %.3f ms, %.0f calls/s (%.2fx the bare p50)",
                      num(hn, "p50Ms"), num(hn, "callsPerS"), hr);
        if (hb)
            snprintf(fig + at, sizeof fig - (size_t)at,
                     "; before: %.3f ms, %.0f calls/s (now / before: p50 %.2fx, calls/s %.2fx)",
                     num(hb, "p50Ms"), num(hb, "callsPerS"),
                     num(hb, "p50Ms") > 0 ? num(hn, "p50Ms") / num(hb, "p50Ms") : 0,
                     num(hb, "callsPerS") > 0 ? num(hn, "callsPerS") / num(hb, "callsPerS") : 0);
        goal(goals, "memory hit, 1 in flight: no slower than before", fig,
             hb ? "p50 at most the build before's" : "run with --before to judge",
             hb ? num(hn, "p50Ms") <= num(hb, "p50Ms") : -1);
    }
    json_decref(bursts);
    json_object_set_new(core, "goals", goals);
}

/* ---- the preset -------------------------------------------------------------------------------
 */

int bench_core_run(const struct bench_core_opts *o, json_t *doc, struct cp_err *err)
{
    const struct burst_spec *specs = o->quick ? bursts_quick : bursts_full;
    struct burst_spec bs[NBURSTS];
    memcpy(bs, specs, sizeof bs);
    json_t *core = json_object();
    /* one descriptor per call in the plugin (its upstream socket) and in this process (the
     * simulator's side); the limit was raised at start, children inherit it */
    long fds = bench_fd_limit_raise(bs[NBURSTS - 1].calls + FD_MARGIN);
    if (fds > 0 && fds < (long)bs[NBURSTS - 1].calls + FD_MARGIN) {
        unsigned fit = fds > 2 * FD_MARGIN ? (unsigned)(fds - FD_MARGIN) : FD_MARGIN;
        bench_doc_note(doc,
                       "core: the largest burst is %u calls, not %u: RLIMIT_NOFILE is %ld here "
                       "(raise it with ulimit -n)",
                       fit, bs[NBURSTS - 1].calls, fds);
        bs[NBURSTS - 1].calls = fit;
    }
    int rounds = o->quick ? ROUNDS_QUICK : ROUNDS_FULL;
    double round_s = o->quick ? ROUND_S_QUICK : ROUND_S_FULL;
    json_object_set_new(core, "settings",
                        json_pack("{s:b,s:i,s:I,s:i,s:i,s:f,s:f}", "quick", o->quick,
                                  "clientThreads", CLIENT_THREADS, "fdLimit", (json_int_t)fds,
                                  "maxConnections", BURST_MAX_CONNECTIONS, "rounds", rounds,
                                  "roundWarmupS", ROUND_WARMUP_S, "roundS", round_s));
    json_t *bursts = json_array(), *loops = json_array();
    json_object_set_new(core, "bursts", bursts);
    json_object_set_new(core, "loops", loops);
    json_object_set_new(doc, "core", core);

    char jd_burst[128];
    snprintf(jd_burst, sizeof jd_burst,
             "{\"maxConnections\":%d,\"cache\":{\"backend\":\"memory\"}}", BURST_MAX_CONNECTIONS);
    struct bench_ds ds_burst = {11,         "core-misses", "core (distinct misses)",
                                o->sim_url, jd_burst,      o->updated_ms};
    struct bench_ds ds_off = {12,
                              "core-forward",
                              "core (cache off)",
                              o->sim_url,
                              "{\"cache\":{\"backend\":\"off\"}}",
                              o->updated_ms};
    struct bench_ds ds_mem = {13,
                              "core-hit",
                              "core (memory)",
                              o->sim_url,
                              "{\"cache\":{\"backend\":\"memory\"}}",
                              o->updated_ms};
    static const unsigned fwd_inflight[] = {8};
    static const unsigned hit_inflight[] = {1, 8};
    struct group groups[2] = {{"forwarding", &ds_off, "proxy/data?size=1024&delay_ms=0", "BYPASS",
                               fwd_inflight, 1, NULL, 0},
                              {"memoryHit", &ds_mem, "proxy/data?size=1024&delay_ms=0&id=hot",
                               "HIT", hit_inflight, 2, NULL, 0}};
    struct plug now = {.label = "plugin", .exe = o->exe};
    struct plug before = {.label = "plugin before", .exe = o->before_exe};
    size_t nplugs = o->before_exe ? 2 : 1;
    struct plug *plugs[2] = {&now, &before};

    /* the bursts, each plugin alone */
    int rc = plug_start(o, &now, &ds_burst, err);
    if (!rc)
        rc = plug_bursts(o, &now, &ds_burst, bs, NBURSTS, bursts, err);
    if (!rc && nplugs > 1 && !atomic_load(&bench_interrupted)) {
        /* a pool of worker threads answers at most its size at once: the largest burst would
         * outlast its calls' deadline, so the build before runs the smaller ones only */
        size_t nb = 0;
        while (nb < NBURSTS && bs[nb].calls <= BEFORE_MAX_BURST)
            nb++;
        if (nb < NBURSTS)
            bench_doc_note(doc,
                           "core: the plugin before ran the bursts of up to %d calls only (a "
                           "pool of worker threads would hold the larger one past its deadline)",
                           BEFORE_MAX_BURST);
        rc = plug_start(o, &before, &ds_burst, err);
        if (!rc)
            rc = plug_bursts(o, &before, &ds_burst, bs, nb, bursts, err);
    }
    /* the loops: every target takes its turn in each round */
    for (size_t gi = 0; gi < 2 && !rc && !atomic_load(&bench_interrupted); gi++) {
        struct group *g = &groups[gi];
        struct bares b = {.child = -1};
        for (size_t k = 0; k < nplugs && !rc; k++)
            rc = group_warm(&plugs[k]->p, g, k == 0, err);
        if (!rc)
            rc = bares_start(g, &b, err);
        if (!rc) {
            struct target targets[4] = {{"plugin", &now.p.chan, now.p.pid},
                                        {"bare in-process", &b.in_chan, -1},
                                        {"bare child process", &b.child_chan, b.child},
                                        {"plugin before", &before.p.chan, before.p.pid}};
            rc = group_loops(o, g, targets, 3 + (nplugs - 1), loops, err);
        }
        bares_stop(&b);
    }
    plug_stop(&now, core);
    if (before.up) {
        json_t *bj = json_object();
        json_object_set_new(core, "before", bj);
        plug_stop(&before, bj);
    }
    for (size_t i = 0; i < 2; i++)
        free(groups[i].msg);
    if (!rc)
        add_goals(core);
    return rc;
}

/* ---- text
 * ----------------------------------------------------------------------------------------- */

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* The two rows of a plugin at rest. */
static void rest_rows(struct bench_table *t, json_t *pj, const char *suffix)
{
    json_t *th = json_object_get(pj, "threads"), *pl = json_object_get(pj, "plugin");
    if (!th)
        return;
    char l1[64], l2[64], a[32], b[32], r1[32], r2[32];
    snprintf(l1, sizeof l1, "at rest, started%s", suffix);
    snprintf(l2, sizeof l2, "at rest, after a call%s", suffix);
    snprintf(a, sizeof a, "%lld", (long long)json_integer_value(json_object_get(th, "afterStart")));
    snprintf(b, sizeof b, "%lld", (long long)json_integer_value(json_object_get(th, "ready")));
    snprintf(r1, sizeof r1, "%.1f", num(pl, "rssAfterStartMiB"));
    snprintf(r2, sizeof r2, "%.1f", num(pl, "rssReadyMiB"));
    const char *row1[13] = {l1, "-", "-", "-", "-", "-", "-", "-", a, r1, "-", "-", "-"};
    const char *row2[13] = {l2, "-", "-", "-", "-", "-", "-", "-", b, r2, "-", "-", "-"};
    bench_table_row(t, row1);
    bench_table_row(t, row2);
}

static void core_bursts_print(json_t *core, FILE *f)
{
    static const char *const cols[] = {
        "calls",     "upstream", "answered", "wall",    "wall/upstream",         "start spread",
        "p50",       "max",      "threads",  "RSS MiB", "upstream held at once", "conns opened",
        "plugin CPU"};
    struct bench_table *t = bench_table_new(
        "core: N distinct misses at once on a slow upstream; one channel, 2 client threads; ms",
        cols, 13);
    json_t *before = json_object_get(core, "before");
    rest_rows(t, core, "");
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(core, "bursts"), i, b)
    {
        char c[13][48];
        json_t *lat = json_object_get(b, "latencyMs"), *up = json_object_get(b, "upstream");
        int is_before = !!strcmp(str(b, "plugin"), "plugin");
        if (is_before && i &&
            !strcmp(str(json_array_get(json_object_get(core, "bursts"), i - 1), "plugin"),
                    "plugin"))
            rest_rows(t, before, ", before");
        snprintf(c[0], 48, "%lld%s", (long long)json_integer_value(json_object_get(b, "calls")),
                 is_before ? ", before" : "");
        snprintf(c[1], 48, "%lld",
                 (long long)json_integer_value(json_object_get(b, "upstreamLatencyMs")));
        snprintf(c[2], 48, "%lld", (long long)json_integer_value(json_object_get(b, "answered")));
        bench_fmt_ms(c[3], 48, num(b, "wallMs"));
        snprintf(c[4], 48, "%.2fx", num(b, "wallOverLatency"));
        bench_fmt_ms(c[5], 48, num(b, "startSpreadMs"));
        bench_fmt_ms(c[6], 48, num(lat, "p50"));
        bench_fmt_ms(c[7], 48, num(lat, "max"));
        snprintf(c[8], 48, "%lld, own %lld (%lld before)",
                 (long long)json_integer_value(json_object_get(b, "threadsPeak")),
                 (long long)json_integer_value(json_object_get(b, "ownThreadsPeak")),
                 (long long)json_integer_value(json_object_get(b, "threadsBefore")));
        snprintf(c[9], 48, "%.1f (%.1f before)", num(b, "rssPeakMiB"), num(b, "rssBeforeMiB"));
        snprintf(c[10], 48, "%lld",
                 (long long)json_integer_value(json_object_get(up, "heldAtOnce")));
        snprintf(c[11], 48, "%lld",
                 (long long)json_integer_value(json_object_get(up, "connsOpened")));
        snprintf(c[12], 48, "%.0f ms (bench %.0f)", num(b, "pluginCpuMs"), num(b, "benchCpuMs"));
        const char *row[13];
        for (int k = 0; k < 13; k++)
            row[k] = c[k];
        bench_table_row(t, row);
        json_int_t failed = json_integer_value(json_object_get(b, "failed")) +
                            json_integer_value(json_object_get(b, "httpErrors"));
        if (failed)
            bench_table_note(t, "%s calls: %lld not answered with 200 and %d bytes (first: %s)",
                             c[0], (long long)failed, BODY_BYTES, str(b, "firstError"));
        if (json_object_get(up, "lastArrivalMs"))
            bench_table_note(t,
                             "%s calls: the upstream received them %.0f to %.0f ms after the "
                             "first call started",
                             c[0], num(up, "firstArrivalMs"), num(up, "lastArrivalMs"));
        bench_table_note(t, "%s calls, threads at the peak: %s", c[0], str(b, "threadsAtPeak"));
        json_t *bt = json_object_get(b, "pluginCpuByThread");
        if (json_array_size(bt)) {
            char line[400];
            int at = 0;
            size_t k;
            json_t *x;
            json_array_foreach(bt, k, x)
            {
                if (at >= (int)sizeof line)
                    break;
                at += snprintf(line + at, sizeof line - (size_t)at, "%s%s #%lld %.0f ms",
                               k ? ", " : "", str(x, "name"),
                               (long long)json_integer_value(json_object_get(x, "order")),
                               num(x, "ms"));
            }
            bench_table_note(t,
                             "%s calls, plugin CPU by thread (#0 main, then in creation "
                             "order): %s",
                             c[0], line);
        }
    }
    json_t *th = json_object_get(core, "threads");
    if (th)
        bench_table_note(t, "threads at rest after a call: %s", str(th, "readyNames"));
    if (before) {
        bench_table_note(t, "before = %s", str(json_object_get(before, "plugin"), "exe"));
        bench_table_note(t, "threads at rest after a call, before: %s",
                         str(json_object_get(before, "threads"), "readyNames"));
    }
    bench_table_note(
        t, "wall = first call started to last answer; threads, RSS: the plugin's "
           "peak, sampled every 5 ms from /proc (the figure in brackets: just "
           "before the burst); own threads: named as the main thread (the "
           "plugin's; gRPC names its own); upstream held at once: answers the simulator held "
           "back for their delay at the same time; plugin CPU: user + system time "
           "over the burst");
    bench_table_print(t, f);
    bench_table_free(t);
}

static void core_loops_print(json_t *core, FILE *f)
{
    if (!json_array_size(json_object_get(core, "loops")))
        return;
    static const char *const cols[] = {
        "case",    "target",     "in flight",      "p50",        "p99",      "calls/s",
        "X-Cache", "p50 / bare", "calls/s / bare", "server CPU", "bench CPU"};
    struct bench_table *t = bench_table_new(
        "core: 1 KiB answers on one channel, closed loops taking turns; latency ms; / bare: over "
        "the faster bare server",
        cols, 11);
    json_t *loops = json_object_get(core, "loops");
    size_t i;
    json_t *c;
    json_array_foreach(loops, i, c)
    {
        char s[11][48];
        const char *group = str(c, "group");
        int inflight = (int)json_integer_value(json_object_get(c, "inFlight"));
        snprintf(s[0], 48, "%s",
                 !strcmp(group, "forwarding") ? "uncached forwarding" : "memory hit");
        snprintf(s[1], 48, "%s", str(c, "target"));
        snprintf(s[2], 48, "%d", inflight);
        bench_fmt_ms(s[3], 48, num(c, "p50Ms"));
        bench_fmt_ms(s[4], 48, num(c, "p99Ms"));
        bench_fmt_rate(s[5], 48, num(c, "callsPerS"));
        if (json_object_get(c, "xcacheShare"))
            snprintf(s[6], 48, "%.1f%% %s", num(c, "xcacheShare") * 100, str(c, "xcacheExpected"));
        else
            snprintf(s[6], 48, "-");
        snprintf(s[7], 48, "-");
        snprintf(s[8], 48, "-");
        if (!strncmp(str(c, "target"), "plugin", 6)) {
            double p = over_bare(loops, group, str(c, "target"), inflight, "p50Ms", 1);
            double r = over_bare(loops, group, str(c, "target"), inflight, "callsPerS", 0);
            if (p >= 0)
                snprintf(s[7], 48, "%.2fx", p);
            if (r >= 0)
                snprintf(s[8], 48, "%.2fx", r);
        }
        snprintf(s[9], 48, "-");
        if (json_object_get(c, "serverCpuUsPerCall"))
            snprintf(s[9], 48, "%.1f us", num(c, "serverCpuUsPerCall"));
        snprintf(s[10], 48, "%.1f us", num(c, "benchCpuUsPerCall"));
        const char *row[11];
        for (int k = 0; k < 11; k++)
            row[k] = s[k];
        bench_table_row(t, row);
        json_int_t bad = json_integer_value(json_object_get(c, "failed")) +
                         json_integer_value(json_object_get(c, "httpErrors"));
        if (bad)
            bench_table_note(t, "%s, %s, %d in flight: %lld calls not answered with 200 (%s)", s[0],
                             s[1], inflight, (long long)bad, str(c, "firstError"));
    }
    bench_table_note(t, "bare = a gRPC core server answering the plugin's own answer bytes "
                        "(same client, same channel settings), in this process and in a child "
                        "process like the plugin");
    json_t *st = json_object_get(core, "settings");
    bench_table_note(t,
                     "each cell: %lld rounds of %.1f s (after %.1f s of warm-up), every target "
                     "taking its turn in each round",
                     (long long)json_integer_value(json_object_get(st, "rounds")),
                     num(st, "roundS"), num(st, "roundWarmupS"));
    bench_table_note(t, "CPU = user + system time per answered call over the rounds: server = the "
                        "plugin or the bare child; bench = this process (client threads, upstream "
                        "simulator, the in-process bare server)");
    bench_table_print(t, f);
    bench_table_free(t);
}

static void core_goals_print(json_t *core, FILE *f)
{
    json_t *goals = json_object_get(core, "goals");
    if (!json_array_size(goals))
        return;
    static const char *const cols[] = {"goal", "figure", "target", "met"};
    struct bench_table *t = bench_table_new("core: goals", cols, 4);
    size_t i;
    json_t *g;
    json_array_foreach(goals, i, g)
    {
        const char *row[4] = {str(g, "goal"), str(g, "figure"), str(g, "target"),
                              json_is_null(json_object_get(g, "met"))   ? "-"
                              : json_is_true(json_object_get(g, "met")) ? "yes"
                                                                        : "NO"};
        bench_table_row(t, row);
    }
    json_t *pl = json_object_get(json_object_get(core, "plugin"), "cleanExit");
    if (pl)
        bench_table_note(t, "plugin exit %s", json_is_true(pl) ? "clean" : "NOT clean");
    bench_table_print(t, f);
    bench_table_free(t);
}

void bench_core_print(json_t *doc, FILE *f)
{
    json_t *core = json_object_get(doc, "core");
    if (!core)
        return;
    core_bursts_print(core, f);
    core_loops_print(core, f);
    core_goals_print(core, f);
}
