/*
 * metrics.c - Prometheus text exposition of every metric the process keeps. Metric names live
 * only here: a static table of families, each with its help text and a function that writes
 * its samples from the owners' counters (pipeline counters, live instances, the process).
 * Every family always prints its # HELP and # TYPE lines, even before its first sample.
 */
#include "plugin_int.h"

#include "cache.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Figures gathered once per scrape, before any family is written. */
struct snapshot {
    uint64_t entries, bytes;
    int running, queued; /* upstream transfers, and of those waiting for a connection */
};

struct family {
    const char *name;
    const char *type;
    const char *help;
    int (*collect)(struct cp_buf *b, const char *name, const struct snapshot *snap);
};

static uint64_t ld(_Atomic uint64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }

static int cache_requests(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    static const char *const kinds[] = {"resource", "query"};
    static const char *const results[] = {"hit", "miss", "stale", "bypass", "revalidated"};
    int rc = 0;
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 5; r++)
            rc |= cp_buf_addf(b, "%s{kind=\"%s\",result=\"%s\"} %llu\n", name, kinds[k],
                              results[r], (unsigned long long)ld(&plugin_g.ctr.cache[k][r]));
    return rc;
}

static void add_usage(void *ctx, struct plugin_instance *in)
{
    struct snapshot *u = ctx;
    uint64_t e = 0, b = 0;
    int r = 0, q = 0;
    proxy_cache_usage(in->px, &e, &b);
    proxy_upstream_usage(in->px, &r, &q);
    u->entries += e;
    u->bytes += b;
    u->running += r;
    u->queued += q;
}

static int cache_entries(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)snap->entries);
}

static int cache_bytes(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)snap->bytes);
}

static int evictions(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.ctr.evictions));
}

static int coalesced(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.ctr.coalesced));
}

static int query_pieces(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s{result=\"hit\"} %llu\n%s{result=\"fetched\"} %llu\n", name,
                       (unsigned long long)ld(&plugin_g.ctr.pieces[0]), name,
                       (unsigned long long)ld(&plugin_g.ctr.pieces[1]));
}

static int live_gauge(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s{what=\"streams\"} %lld\n%s{what=\"subscribers\"} %lld\n", name,
                       (long long)atomic_load(&plugin_g.ctr.live_streams), name,
                       (long long)atomic_load(&plugin_g.ctr.live_subscribers));
}

static int live_polls(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s{result=\"started\"} %llu\n%s{result=\"skipped\"} %llu\n", name,
                       (unsigned long long)ld(&plugin_g.ctr.live_polls), name,
                       (unsigned long long)ld(&plugin_g.ctr.live_skipped));
}

static int live_frames(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.ctr.live_frames));
}

static int coalesced_waiting(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.ctr.waiting));
}

static int upstream_requests(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    static const char *const classes[] = {"error", "1xx", "2xx", "3xx", "4xx", "5xx"};
    int rc = 0;
    for (int i = 0; i < 6; i++)
        rc |= cp_buf_addf(b, "%s{status=\"%s\"} %llu\n", name, classes[i],
                          (unsigned long long)ld(&plugin_g.ctr.upstream[i]));
    return rc;
}

static int upstream_duration(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct cp_hist *h = &plugin_g.ctr.upstream_duration;
    uint64_t cum = 0;
    int rc = 0;
    for (int i = 0; i < CP_HIST_NBOUNDS; i++) {
        cum += ld(&h->bucket[i]);
        rc |= cp_buf_addf(b, "%s_bucket{le=\"%g\"} %llu\n", name, cp_hist_bounds[i],
                          (unsigned long long)cum);
    }
    cum += ld(&h->bucket[CP_HIST_NBOUNDS]);
    rc |= cp_buf_addf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    rc |= cp_buf_addf(b, "%s_sum %.9f\n", name, (double)ld(&h->sum_ns) / 1e9);
    rc |= cp_buf_addf(b, "%s_count %llu\n", name, (unsigned long long)ld(&h->count));
    return rc;
}

static int authz_decisions(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s{effect=\"allow\"} %llu\n%s{effect=\"deny\"} %llu\n", name,
                       (unsigned long long)ld(&plugin_g.ctr.authz[1]), name,
                       (unsigned long long)ld(&plugin_g.ctr.authz[0]));
}

static int redis_errors(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.ctr.redis_errors));
}

static int redis_redirects(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct cache_redis_stats st;
    cache_redis_stats(&st);
    return cp_buf_addf(b, "%s{type=\"moved\"} %llu\n%s{type=\"ask\"} %llu\n", name,
                       (unsigned long long)st.moved, name, (unsigned long long)st.ask);
}

static int redis_failovers(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct cache_redis_stats st;
    cache_redis_stats(&st);
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)st.failovers);
}

static int redis_unsealable(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct cache_redis_stats st;
    cache_redis_stats(&st);
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)st.unsealable);
}

struct node_sample {
    struct cp_buf *b;
    const char *name;
    int rc;
};

static void node_sample(void *ctx, const char *node, uint64_t errors)
{
    struct node_sample *ns = ctx;
    ns->rc |= cp_buf_addf(ns->b, "%s{node=\"", ns->name);
    for (const char *c = node; *c; c++) /* label value escapes: a unix socket path */
        ns->rc |= *c == '\\' || *c == '"' ? cp_buf_addf(ns->b, "\\%c", *c)
                  : *c == '\n'             ? cp_buf_addstr(ns->b, "\\n")
                                            : cp_buf_add(ns->b, c, 1);
    ns->rc |= cp_buf_addf(ns->b, "\"} %llu\n", (unsigned long long)errors);
}

static int redis_node_errors(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct node_sample ns = {b, name, 0};
    cache_redis_node_errors(node_sample, &ns);
    return ns.rc;
}

static int plugin_errors(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.ctr.errors));
}

static int instances(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %zu\n", name, plugin_instance_count());
}

static int grpc_calls(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)ld(&plugin_g.rpc_calls));
}

static int workers(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct {
        const char *pool;
        struct cp_pool *p;
    } pools[] = {{"cpu", plugin_g.cpu}, {"io", plugin_g.io}};
    int rc = 0;
    for (size_t i = 0; i < 2; i++) {
        unsigned threads = 0, busy = 0, queued = 0;
        if (pools[i].p)
            cp_pool_stats(pools[i].p, &threads, &busy, &queued);
        rc |= cp_buf_addf(b, "%s{pool=\"%s\",state=\"busy\"} %u\n%s{pool=\"%s\",state=\"idle\"} "
                             "%u\n%s{pool=\"%s\",state=\"queued\"} %u\n",
                          name, pools[i].pool, busy, name, pools[i].pool, threads - busy, name,
                          pools[i].pool, queued);
    }
    return rc;
}

static int upstream_inflight(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    return cp_buf_addf(b, "%s{state=\"running\"} %d\n%s{state=\"queued\"} %d\n", name,
                       snap->running - snap->queued, name, snap->queued);
}

static int access_lines(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    uint64_t lines, dropped;
    plugin_access_log_stats(plugin_g.access, &lines, &dropped);
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)lines);
}

static int access_dropped(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    uint64_t lines, dropped;
    plugin_access_log_stats(plugin_g.access, &lines, &dropped);
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)dropped);
}

/* ---- process metrics (Linux /proc) ------------------------------------------------------- */

static int read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return CP_ENOTFOUND;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = 0;
    return 0;
}

static int resident_memory(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    char buf[256];
    unsigned long long size = 0, rss = 0;
    if (read_file("/proc/self/statm", buf, sizeof buf) == 0)
        sscanf(buf, "%llu %llu", &size, &rss);
    return cp_buf_addf(b, "%s %llu\n", name, rss * (unsigned long long)sysconf(_SC_PAGESIZE));
}

static int virtual_memory(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    char buf[256];
    unsigned long long size = 0;
    if (read_file("/proc/self/statm", buf, sizeof buf) == 0)
        sscanf(buf, "%llu", &size);
    return cp_buf_addf(b, "%s %llu\n", name, size * (unsigned long long)sysconf(_SC_PAGESIZE));
}

static int cpu_seconds(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return cp_buf_addf(b, "%s %.6f\n", name, s);
}

static int open_fds(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
        n = n ? n - 1 : 0; /* the directory stream itself */
    }
    return cp_buf_addf(b, "%s %u\n", name, n);
}

static int max_fds(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    return cp_buf_addf(b, "%s %llu\n", name, (unsigned long long)rl.rlim_cur);
}

static int start_time(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    return cp_buf_addf(b, "%s %.3f\n", name, (double)plugin_g.start_unix_ms / 1000.0);
}

static int threads(struct cp_buf *b, const char *name, const struct snapshot *snap)
{
    (void)snap;
    char buf[4096];
    unsigned n = 0;
    if (read_file("/proc/self/status", buf, sizeof buf) == 0) {
        const char *t = strstr(buf, "Threads:");
        if (t)
            n = (unsigned)strtoul(t + 8, NULL, 10);
    }
    return cp_buf_addf(b, "%s %u\n", name, n);
}

static const struct family families[] = {
    {"cachingproxy_cache_requests_total", "counter",
     "Cache lookups by kind (resource, query) and result (hit, miss, stale, bypass), one per "
     "client request or query.",
     cache_requests},
    {"cachingproxy_cache_entries", "gauge", "Entries held by the caches of live data sources.",
     cache_entries},
    {"cachingproxy_cache_bytes", "gauge", "Bytes held by the memory caches of live data sources.",
     cache_bytes},
    {"cachingproxy_cache_evictions_total", "counter",
     "Entries evicted from memory caches to stay within their byte budget.", evictions},
    {"cachingproxy_coalesced_requests_total", "counter",
     "Requests answered by another request's upstream call (in process or via Redis).",
     coalesced},
    {"cachingproxy_query_pieces_total", "counter",
     "Pieces of split queries by where they came from: hit (the cache) or fetched.",
     query_pieces},
    {"cachingproxy_live_active", "gauge",
     "Live streams: pollers running (streams) and subscribers attached to them.", live_gauge},
    {"cachingproxy_live_polls_total", "counter",
     "Polls of live streams: started, or skipped because the last one was still running.",
     live_polls},
    {"cachingproxy_live_frames_total", "counter", "Frames sent to live stream subscribers.",
     live_frames},
    {"cachingproxy_coalesced_waiting", "gauge",
     "Requests waiting now for an identical upstream call in flight.", coalesced_waiting},
    {"cachingproxy_upstream_requests_total", "counter",
     "Upstream requests by status class; error = no HTTP answer.", upstream_requests},
    {"cachingproxy_upstream_duration_seconds", "histogram", "Upstream request duration.",
     upstream_duration},
    {"cachingproxy_authz_decisions_total", "counter", "Authorization decisions by effect.",
     authz_decisions},
    {"cachingproxy_redis_errors_total", "counter",
     "Redis failures (the call then went to the upstream).", redis_errors},
    {"cachingproxy_redis_redirects_total", "counter",
     "Redis Cluster redirections followed by type: moved (the slot map changed), ask (a slot "
     "being migrated).",
     redis_redirects},
    {"cachingproxy_redis_failovers_total", "counter",
     "Redis master changes seen: a Sentinel failover, or a failed cluster node's slots served "
     "by another master.",
     redis_failovers},
    {"cachingproxy_redis_node_errors_total", "counter",
     "Redis failures by node (connections, timeouts, error answers).", redis_node_errors},
    {"cachingproxy_redis_decrypt_failures_total", "counter",
     "Encrypted Redis entries that failed to decrypt or authenticate (each a miss, then "
     "deleted).",
     redis_unsealable},
    {"cachingproxy_plugin_errors_total", "counter", "Error answers made by the plugin itself.",
     plugin_errors},
    {"cachingproxy_instances", "gauge", "Live data source instances.", instances},
    {"cachingproxy_grpc_calls_total", "counter", "gRPC calls received.", grpc_calls},
    {"cachingproxy_workers", "gauge", "Pool threads (cpu: frames and modules, io: Redis) by "
     "state, and jobs waiting.", workers},
    {"cachingproxy_upstream_inflight", "gauge",
     "Upstream transfers of live data sources: running, or queued for a connection "
     "(maxConnections reached, or connecting).", upstream_inflight},
    {"cachingproxy_access_log_lines_total", "counter",
     "Lines written to the access log (CACHINGPROXY_ACCESS_LOG).", access_lines},
    {"cachingproxy_access_log_dropped_total", "counter",
     "Access log lines lost: its queue was full or a write failed.", access_dropped},
    {"process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
     resident_memory},
    {"process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", virtual_memory},
    {"process_cpu_seconds_total", "counter", "Total user and system CPU time in seconds.",
     cpu_seconds},
    {"process_open_fds", "gauge", "Number of open file descriptors.", open_fds},
    {"process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds},
    {"process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.",
     start_time},
    {"process_threads", "gauge", "Number of OS threads.", threads},
};

int plugin_metrics_render(struct cp_buf *out)
{
    struct snapshot snap = {0};
    plugin_instance_each(add_usage, &snap);
    int rc = 0;
    for (size_t i = 0; i < sizeof families / sizeof families[0] && !rc; i++) {
        rc = cp_buf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", families[i].name, families[i].help,
                         families[i].name, families[i].type);
        if (!rc)
            rc = families[i].collect(out, families[i].name, &snap);
    }
    return rc ? CP_ENOMEM : 0;
}
