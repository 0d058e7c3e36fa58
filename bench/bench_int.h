/*
 * bench_int.h - cross-file internals of cachingproxy-bench: children and signals (proc.c),
 * the plugin process and its gRPC channel (grpc_client.c), the in-process bare gRPC server
 * used as a baseline (bare_server.c), the upstream simulator (upstream_sim.c), the latency
 * cells and scenarios (bench.c), the tables / JSON output (report.c); statistics and the Zipf
 * sampler (stats.c), CSV traces (trace.c), a refreshing dashboard on a virtual clock
 * (dashboard.c), the what-if simulation (whatif.c), the modes' drivers (driver.c,
 * driver_grpc.c, driver_http.c), workloads (workload.c), run reports (runreport.c), the HTML
 * page (html.c), presets and the command line of the newer modes (modes.c), many calls in
 * flight from a few threads (grpc_async.c) and the core preset (core.c).
 *
 * Errors: functions return 0 or a negative CP_E* code with detail in a caller's cp_err.
 */
#ifndef CP_BENCH_INT_H
#define CP_BENCH_INT_H

#include <grpc/grpc.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "backend.pb-c.h"
#include "config.h"

/* Every call and every wait of the bench is bounded by these. */
#define BENCH_CALL_TIMEOUT_MS 10000
#define BENCH_START_TIMEOUT_MS 10000
#define BENCH_STOP_TIMEOUT_MS 3000

/* ---- interruption and child bookkeeping (proc.c) ----------------------------------------- */

/* Set once SIGINT/SIGTERM arrived; loops stop at their next call. */
extern _Atomic int bench_interrupted;
/* Blocks SIGINT and SIGTERM in the calling thread (call before any other thread exists) and
 * takes them in one thread with sigwait. quiet: no message (the bare server child). -1 when
 * the thread cannot start. */
int bench_signals_start(int quiet);
/* Tells the signal thread that cleanup is over, so an interrupt no longer kills children. */
void bench_cleanup_done(void);
/* Records / forgets a child pid so an interrupt that overruns cleanup can still kill it. */
void bench_child_track(pid_t pid);
void bench_child_untrack(pid_t pid);
/* fork() + exec of argv with envp (NULL: inherit), signals unblocked, PDEATHSIG set, stdout
 * and stderr to out_fd / err_fd (-1: /dev/null). Returns the pid or -1. */
pid_t bench_spawn(const char *const *argv, const char *const *envp, int out_fd, int err_fd);
/* SIGTERM, wait up to timeout_ms, then SIGKILL; reaps. Returns the wait status or -1. */
int bench_child_stop(pid_t pid, int timeout_ms);
/* CPU time (user + system, ns) and context switches (voluntary and not, over every thread)
 * a process has used so far. -1 when /proc cannot tell. */
int64_t bench_proc_cpu_ns(pid_t pid);
int bench_proc_usage(pid_t pid, int64_t *cpu_ns, uint64_t *switches);
/* Raises this process's RLIMIT_NOFILE soft limit towards want (and the hard limit too when
 * privileged); children such as the plugin inherit it. Returns the soft limit now in force. */
long bench_fd_limit_raise(long want);
/* What the modes ask for: thousands of calls at once, a descriptor each in the plugin and in
 * the simulator. */
#define BENCH_FD_WANT 32768
/* A free TCP port on 127.0.0.1 (bound then released), -1 on failure. */
int bench_free_port(void);

/* redis-server on a free loopback port, no persistence; pid -1 when absent. */
struct bench_redis {
    pid_t pid;
    int port;
};
/* Starts bin and waits (5 s at most) for PONG. -1 with a reason in why ("skipped: ...") when
 * it is missing or does not answer. */
int bench_redis_start(const char *bin, struct bench_redis *r, char *why, size_t wsize);
void bench_redis_stop(struct bench_redis *r);

/* A Redis deployment of `preset redis` (redis_env.c): its servers, a temporary directory
 * (certificate, cluster configuration) and the redisUrl that reaches it. */
struct bench_redis_deploy {
    struct bench_redis nodes[3];
    size_t n;
    char dir[128];
    char url[256];
};
/* One server speaking TLS (a self-signed certificate for 127.0.0.1 made by the openssl CLI).
 * -1 with "skipped: ..." in why. */
int bench_redis_tls_start(const char *bin, struct bench_redis_deploy *d, char *why, size_t wsize);
/* Three masters joined by `cli --cluster create`. -1 with "skipped: ..." in why. */
int bench_redis_cluster_start(const char *bin, const char *cli, struct bench_redis_deploy *d,
                              char *why, size_t wsize);
/* Stops the servers and removes the directory. */
void bench_redis_deploy_stop(struct bench_redis_deploy *d);

/* ---- statistics and distributions (stats.c) ---------------------------------------------- */

/* splitmix64: the bench's generator (seedable, one word of state, good enough for loads). */
static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double bench_rand_unit(uint64_t *state)
{
    return (double)(bench_rand(state) >> 11) * 0x1.0p-53;
}

/* Nearest-rank percentile (0 < p <= 100) of n sorted samples: the smallest sample with at
 * least p % of all samples at or below it. 0 when n is 0. */
int64_t bench_percentile(const int64_t *sorted, size_t n, double p);

/* Latency histogram: bucket i counts samples in (bound[i-1], bound[i]] ms, 1-2-5 bounds from
 * 0.01 ms to 100 s; the last bucket also takes everything above. */
#define BENCH_HIST_BUCKETS 22
const double *bench_hist_bounds_ms(void);
void bench_hist_fill(const int64_t *sorted_ns, size_t n, uint64_t counts[BENCH_HIST_BUCKETS]);

/* Zipf(s) over ranks 0..n-1: P(k) proportional to 1/(k+1)^s (rank 0 the most popular;
 * s = 0 uniform). Exact inverse-CDF sampling: n doubles of memory. */
#define BENCH_ZIPF_MAX 10000000ull
struct bench_zipf {
    uint64_t n;
    double s;
    double *cdf;
};
/* CP_EINVAL (n 0 or above BENCH_ZIPF_MAX, s outside 0..10), CP_ENOMEM. */
int bench_zipf_init(struct bench_zipf *z, uint64_t n, double s);
uint64_t bench_zipf_draw(const struct bench_zipf *z, uint64_t *rng);
/* Probability of rank k. */
double bench_zipf_prob(const struct bench_zipf *z, uint64_t k);
void bench_zipf_dispose(struct bench_zipf *z);

/* The simulator's latency: fixed a; uniform in [a, b]; lognormal of median a and p99 b (ms). */
#define BENCH_MAX_LATENCY_MS 60000
enum bench_dist_kind { BENCH_DIST_FIXED, BENCH_DIST_UNIFORM, BENCH_DIST_LOGNORMAL };
struct bench_dist {
    enum bench_dist_kind kind;
    double a, b;
    char text[64]; /* as given */
};
/* "20ms", "5ms..50ms", "lognormal:20ms:200ms" (durations as in the settings). CP_EINVAL. */
int bench_latency_parse(const char *spec, struct bench_dist *d, struct cp_err *err);
/* One draw in ms, capped at BENCH_MAX_LATENCY_MS. */
double bench_dist_draw(const struct bench_dist *d, uint64_t *rng);
/* "4KiB" or "1KiB..64KiB" into lo..hi bytes (at most BENCH_MAX_PAYLOAD). CP_EINVAL. */
#define BENCH_MAX_PAYLOAD (64ull << 20)
int bench_size_parse(const char *spec, uint64_t *lo, uint64_t *hi, struct cp_err *err);

/* ---- CSV traces (trace.c) ------------------------------------------------------------------ */

/* One recorded request; strings are interned in the trace (borrowed until bench_trace_free). */
struct bench_trace_rec {
    int64_t ts_ms;
    size_t seq; /* line order, for a stable sort */
    const char *user, *role, *method, *path;
};
struct bench_strings;
struct bench_trace {
    struct bench_trace_rec *recs; /* sorted by ts_ms, ties in line order */
    size_t n;
    uint64_t ignored; /* an unfinished last line that did not parse */
    struct bench_strings *strings;
};

/* What one line holds; pointers into the line (or static role names). */
struct bench_trace_fields {
    int64_t ts_ms;
    const char *user, *role, *method, *path; /* role canonical ("Viewer"), method upper case */
};
enum { BENCH_LINE_BLANK = 0, BENCH_LINE_HEADER = 1, BENCH_LINE_RECORD = 2 };
/* Parses line[0..len) (no newline; a trailing CR is dropped; the line is modified). Returns a
 * BENCH_LINE_* kind, or CP_EINVAL with the fault in why. */
int bench_trace_parse_line(char *line, size_t len, struct bench_trace_fields *f, char *why,
                           size_t wsize);
/* Reads a whole trace ("-": stdin). A bad line fails with CP_EINVAL and "NAME:LINE: fault". */
int bench_trace_read(FILE *in, const char *name, struct bench_trace **out, struct cp_err *err);
int bench_trace_load(const char *path, struct bench_trace **out, struct cp_err *err);
void bench_trace_free(struct bench_trace *t); /* NULL-safe */
/* The format the parser reads. */
void bench_trace_write_header(FILE *f);
void bench_trace_write(FILE *f, int64_t ts_ms, const char *user, const char *role,
                       const char *method, const char *path);

/* ---- a refreshing dashboard on a virtual clock (dashboard.c) ------------------------------- */

/* `users` users keep a dashboard of `panels` panels open, each refreshing every refresh_ms
 * from a phase of its own, over the virtual window [start_ms, start_ms + span_ms). */
struct bench_dashboard {
    uint32_t users, panels;
    int64_t refresh_ms, start_ms, span_ms;
    uint64_t seed;
};
/* Its queries as a trace: at each refresh one QUERY per panel, user "userNNNN" (Viewer), path
 * "/q/panelP?from=${__from}&to=${__to}", the record's time being the dashboard's now. A new
 * trace in *out (bench_trace_free). CP_EINVAL (a zero count or span), CP_ENOMEM. */
int bench_dashboard_trace(const struct bench_dashboard *d, struct bench_trace **out,
                          struct cp_err *err);
/* Where a split run's virtual window starts for a wall clock at wall_ms: 10 minutes past the
 * hour before the current one, so between 50 and 110 minutes in the past. */
int64_t bench_split_start(int64_t wall_ms);
/* The splitStableAfter (ms) that makes the plugin, testing a piece's end against its wall
 * clock, call stable what ended stable_ms before the virtual clock at start_ms. */
int64_t bench_split_stable_after(int64_t wall_ms, int64_t start_ms, int64_t stable_ms);

/* ---- what-if simulation: `sim` (whatif.c) ------------------------------------------------- */

/* A trace reduced to what cache policies see: a dense key per request and its time. */
#define BENCH_WHATIF_BYPASS UINT32_MAX /* a request that is never cached */
struct bench_whatif {
    size_t n;
    uint32_t *key;  /* per request; BENCH_WHATIF_BYPASS: per-user scope without a user */
    int64_t *ts_ms; /* non-decreasing */
    size_t *next;   /* next request of the same key, n when none */
    uint32_t nkeys;
};
/* Keys are method + path (+ user when scope_user). CP_ENOMEM. */
int bench_whatif_prepare(const struct bench_trace *t, int scope_user, struct bench_whatif *w,
                         struct cp_err *err);
/* From arrays (keys below 2^32 - 1 or BENCH_WHATIF_BYPASS; times non-decreasing). */
int bench_whatif_init(struct bench_whatif *w, const uint32_t *keys, const int64_t *ts_ms, size_t n);
void bench_whatif_dispose(struct bench_whatif *w);
/* Hits of one policy with cap entries (>= 1) and a TTL (0: none). 0 or CP_ENOMEM. */
int bench_whatif_ours(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits);
int bench_whatif_lru(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits);
int bench_whatif_opt(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits);
/* {"requests": N, "results": [{"policy","size","ttl","hits","misses","hitRatio"}, ...]}: for
 * each size, ours, lru and opt. CP_ENOMEM, CP_ECANCELED (interrupted). */
int bench_whatif_run(const struct bench_whatif *w, const uint64_t *sizes, size_t nsizes,
                     int64_t ttl_ms, json_t **out, struct cp_err *err);
/* A TTL as JSON seconds: an integer when whole. */
json_t *bench_ttl_json(int64_t ttl_ms);

/* ---- gRPC client (grpc_client.c) ---------------------------------------------------------- */

/* One channel and its registered methods. */
struct bench_chan {
    grpc_channel *ch;
    void *h_resource, *h_query, *h_shutdown;
};

/* The plugin process as go-plugin runs it: pipes drained by a thread, one channel. */
struct bench_plugin {
    pid_t pid;
    int out_fd, err_fd;
    int drain_started;
    pthread_t drain;
    char target[300]; /* "unix:/path" or "ipv4:127.0.0.1:port" */
    struct bench_chan chan;
    pthread_mutex_t mu; /* guards errtail */
    char errtail[2048]; /* last bytes the plugin wrote to stderr */
    size_t errlen;
};

/* Launches exe with Grafana's environment plus extra_env (NULL-terminated, may be NULL), reads
 * the handshake line and opens the channel. On failure nothing is left running. */
int bench_plugin_start(struct bench_plugin *p, const char *exe, const char *const *extra_env,
                       struct cp_err *err);
/* GRPCController/Shutdown, then waitpid bounded by BENCH_STOP_TIMEOUT_MS, then SIGKILL. Closes
 * the channel and pipes. Call once per successful start (a failed start cleans up itself).
 * Returns 0 when the plugin exited by itself with status 0. */
int bench_plugin_stop(struct bench_plugin *p);
/* VmRSS of the plugin in KiB, -1 if unknown. */
long bench_plugin_rss_kib(const struct bench_plugin *p);
/* Copies the tail of the plugin's stderr (for error messages). */
void bench_plugin_stderr(struct bench_plugin *p, char *out, size_t size);

/* Opens a channel to target (receive limit 256 MiB) and registers the methods. */
int bench_chan_open(struct bench_chan *c, const char *target, struct cp_err *err);
void bench_chan_close(struct bench_chan *c);

/* A calling thread's completion queue (pluck): one call in flight at a time. */
struct bench_caller {
    struct bench_chan *chan;
    grpc_completion_queue *cq;
};
int bench_caller_init(struct bench_caller *k, struct bench_chan *chan);
void bench_caller_dispose(struct bench_caller *k);

struct bench_res {
    int code;          /* first message's code */
    size_t body_bytes; /* over all messages */
    unsigned nmsg;
    char xcache[16];                       /* X-Cache of the first message, "" if none */
    Pluginv2__CallResourceResponse *first; /* kept only if asked; caller frees unpacked */
};

/* CallResource (server streaming) with a packed CallResourceRequest. keep_first: store the
 * unpacked first message in r->first. Returns 0 when the call ended with gRPC status OK (the
 * HTTP code is in r->code), else CP_EUPSTREAM with detail. */
int bench_call_resource(struct bench_caller *k, const void *req, size_t len, int keep_first,
                        struct bench_res *r, struct cp_err *err);

struct bench_qres {
    int status;         /* status of the first DataResponse */
    size_t frame_bytes; /* over all frames */
    unsigned nframes;
    char error[160]; /* error of the first DataResponse */
    char cache[16];  /* meta.custom.cache of its first frame ("hit", "miss", ...), "" if none */
    /* a split query: meta.custom.cachePieces of that frame (pieces from the cache, fetched) */
    uint32_t pieces_hit, pieces_fetched;
};
/* QueryData (unary) with a packed QueryDataRequest. */
int bench_query_data(struct bench_caller *k, const void *req, size_t len, struct bench_qres *r,
                     struct cp_err *err);

/* What Grafana sends for one data source and user, packed into requests below. */
struct bench_ds {
    int64_t id;
    const char *uid, *name, *url, *json_data;
    int64_t updated_ms;
};
/* Packs a CallResourceRequest for GET <url_path> (e.g. "proxy/data?size=1"): path is the part
 * before '?'. Returns a malloc'd buffer (caller frees) or NULL. */
uint8_t *bench_pack_resource(const struct bench_ds *ds, const char *url_path, size_t *len);
/* Packs a QueryDataRequest with one query (refId "A") of model JSON text. */
uint8_t *bench_pack_query(const struct bench_ds *ds, const char *model, int64_t from_ms,
                          int64_t to_ms, size_t *len);
/* The same as a given user: login (NULL or "": a call without a user, as Grafana's own) and
 * Grafana role; any method. */
struct bench_user {
    const char *login, *role;
};
uint8_t *bench_pack_call(const struct bench_ds *ds, const struct bench_user *u, const char *method,
                         const char *url_path, size_t *len);
uint8_t *bench_pack_query_as(const struct bench_ds *ds, const struct bench_user *u,
                             const char *model, int64_t from_ms, int64_t to_ms, size_t *len);

/* ---- bare gRPC baseline server (bare_server.c) ------------------------------------------- */

struct bench_bare;
/* Starts a gRPC server on a fresh unix socket that answers /pluginv2.Resource/CallResource with
 * the packed CallResourceResponse msg (copied) and nothing else. target receives its address. */
int bench_bare_start(const void *msg, size_t len, struct bench_bare **out, char *target,
                     size_t tsize, struct cp_err *err);
void bench_bare_stop(struct bench_bare *b);
/* The same server in a child process: this executable run as "__bare-server FILE", FILE a
 * temporary copy of msg whose name goes to file (the caller unlinks it after stopping the
 * child with bench_child_stop). Returns the child's pid, -1 with detail in err. */
pid_t bench_bare_child_start(const uint8_t *msg, size_t len, char *target, size_t tsize, char *file,
                             size_t fsize, struct cp_err *err);
/* The child's side: serves FILE's message until SIGTERM or SIGINT, printing its target on
 * stdout first. The process exit status. */
int bench_bare_child_main(const char *file);

/* ---- upstream simulator (upstream_sim.c) -------------------------------------------------- */

struct bench_sim;
struct bench_sim_counts {
    uint64_t requests, data_requests, rows_requests;
    uint64_t work_requests, work_errors; /* answered by the profile, and 503s among them */
    uint64_t work_bytes;                 /* body bytes of the profile's answers */
    uint64_t work_not_modified;          /* 304s among them (validators) */
    uint64_t work_conditional;           /* requests with If-None-Match or If-Modified-Since */
    uint64_t conns_opened, conns_open, conns_peak;
    uint64_t delayed_now, delayed_peak; /* answers waiting for their delay, now and at most */
    int64_t first_delayed_ns, last_delayed_ns; /* first and last arrival of a delayed request
                                                * since the last reset (cp_mono_ns), 0 none */
};
/* How the simulator answers workload paths (anything but /data and /rows). */
struct bench_upstream_profile {
    struct bench_dist latency;
    uint64_t payload_lo, payload_hi; /* body bytes, log-uniform per path */
    double error_rate;               /* share of 503 answers */
    char cache_control[128];         /* "" = no Cache-Control header */
    long query_rows;                 /* rows of a /q/ answer */
    uint64_t seed;
    /* > 0: a /q/ answer is the rows of [from, to) (its parameters, epoch ms) one per step,
     * each {"time": ms, "value": x, "count": n}; 0: query_rows fixed rows */
    int64_t query_step_ms;
    /* ETag and Last-Modified on every profile answer, 304 to a request that still matches;
     * a path's content changes every change_ms (at a phase of its own; 0: never) */
    int validators;
    int64_t change_ms;
};
/* No latency, 1 KiB bodies, no errors, no Cache-Control, 100 query rows, no validators. */
void bench_upstream_profile_init(struct bench_upstream_profile *p);
/* The pure parts of the simulator's answers, for its tests. */
#define BENCH_SIM_EPOCH_MS 1700000000000LL /* Last-Modified of content that never changes */
uint64_t bench_sim_path_hash(const char *path);
/* The JSON rows of [from_ms, to_ms) at the multiples of step_ms (> 0), values fixed by path
 * and time: [{"time":ms,"value":x,"count":n},...]. malloc'd (caller frees), NULL: no memory. */
char *bench_sim_time_rows(const char *path, int64_t from_ms, int64_t to_ms, int64_t step_ms,
                          size_t *len);
/* The content version of a path at now_ms when it changes every change_ms (0: never, version
 * 0), and in since_ms when that version began. */
int64_t bench_sim_version(uint64_t path_hash, int64_t now_ms, int64_t change_ms, int64_t *since_ms);
/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") and back; parse: 0 or -1. */
void bench_http_date(int64_t epoch_s, char *out, size_t size);
int bench_http_date_parse(const char *s, int64_t *epoch_s);
/* 1 when an If-None-Match value (a list, W/ tags, or "*") matches etag (weak comparison). */
int bench_etag_matches(const char *if_none_match, const char *etag);
/* Sets the profile between runs (no request in flight: cached answers are dropped). */
void bench_sim_set_profile(struct bench_sim *s, const struct bench_upstream_profile *p);
/* Starts the simulator on 127.0.0.1, ephemeral port; url receives "http://127.0.0.1:P". It
 * holds as many connections as RLIMIT_NOFILE leaves room for (see bench_fd_limit_raise). */
int bench_sim_start(struct bench_sim **out, char *url, size_t usize, struct cp_err *err);
void bench_sim_stop(struct bench_sim *s);
void bench_sim_counts(struct bench_sim *s, struct bench_sim_counts *c);
/* Sets the connection and delayed-answer peaks to their values now and forgets the arrival
 * times (start of a cell). */
void bench_sim_reset_peak(struct bench_sim *s);

/* ---- drivers: how a mode reaches the cache (driver.c, driver_grpc.c, driver_http.c) -------- */

#define BENCH_MAX_URL 9000

enum bench_kind { BENCH_KIND_RESOURCE, BENCH_KIND_QUERY };

/* What the cache said about one answer (X-Cache, or a frame's meta.custom.cache). */
enum bench_cache {
    BENCH_CACHE_NONE, /* no answer from the cache layer (an error before it, or no header) */
    BENCH_CACHE_HIT,
    BENCH_CACHE_MISS,
    BENCH_CACHE_STALE,
    BENCH_CACHE_BYPASS,
    BENCH_CACHE_REVALIDATED, /* a 304 renewed the stored entry */
    BENCH_CACHE_PARTIAL,     /* a split query: some pieces from the cache, some fetched */
    BENCH_CACHE_N
};
/* "none", "HIT", "MISS", "STALE", "BYPASS", "REVALIDATED", "PARTIAL"; parse is
 * case-insensitive (NONE when unknown). */
const char *bench_cache_name(enum bench_cache c);
enum bench_cache bench_cache_parse(const char *s);

/* One request of a workload. Borrowed for the call. */
struct bench_req {
    enum bench_kind kind;
    const char *user, *role; /* user NULL or "": a call without a user */
    const char *method;      /* resources */
    const char *path;        /* upstream path and query string: "/w/k12", "/q/k3?from=..." */
    int64_t from_ms, to_ms;  /* queries: the panel's time range */
};
struct bench_answer {
    int status; /* HTTP status, or the query's status */
    enum bench_cache cache;
    size_t bytes; /* body or frame bytes */
    uint32_t pieces_hit, pieces_fetched; /* a split query's pieces (0 otherwise) */
};

/* What a mode drives: one data source of the cache in front of the upstream simulator. */
struct bench_target {
    const char *exe;             /* the plugin executable (http: run as `serve`) */
    const char *const *env;      /* extra environment, NULL-terminated, may be NULL */
    const char *uid, *json_data; /* the data source */
    const char *upstream_url;
    int64_t updated_ms;
};
/* The data source's cache/stats and the process's memory. */
struct bench_target_stats {
    int valid; /* the counters below were read */
    uint64_t hits, misses, stale, bypass, coalesced, upstream, errors, entries, bytes;
    uint64_t revalidated, pieces_hit, pieces_fetched;
    long rss_kib; /* -1 unknown */
};
/* Fills the counters from a cache/stats document (rss_kib untouched) and sets valid. */
void bench_target_stats_read(json_t *stats, struct bench_target_stats *st);

/* Fills st's counters from the body of a cache/stats answer (status: its HTTP status), for
 * every driver. CP_EUPSTREAM when it is not a 200 with a JSON object. */
int bench_stats_parse(const void *body, size_t len, long status, struct bench_target_stats *st,
                      struct cp_err *err);
/* Resident set size of a process in KiB, -1 when /proc cannot tell. */
long bench_rss_kib(pid_t pid);

/* A mode: a table of operations. Connections and workers are the driver's; request may be
 * called from several workers at once, each with its own worker state. Errors: 0 or CP_E*
 * with detail; a request error means no answer at all (an HTTP error status is an answer). */
struct bench_driver {
    const char *name;
    int (*open)(const struct bench_target *t, void **conn, struct cp_err *err);
    int (*worker_new)(void *conn, void **w, struct cp_err *err);
    int (*request)(void *conn, void *w, const struct bench_req *rq, struct bench_answer *a,
                   struct cp_err *err);
    void (*worker_free)(void *conn, void *w);
    int (*stats)(void *conn, struct bench_target_stats *st, struct cp_err *err);
    /* Stops and frees; 0 when the target ended cleanly. */
    int (*close)(void *conn);
};
extern const struct bench_driver bench_driver_grpc;
extern const struct bench_driver bench_driver_http;
/* The standalone server a driver_http connection started: its base URL ("http://127.0.0.1:P")
 * and the Viewer's API key. */
void bench_http_conn_info(void *conn, char *base, size_t bsize, char *key, size_t ksize);
pid_t bench_http_conn_pid(void *conn);
/* The driver of a mode name, NULL when there is none (yet). */
const struct bench_driver *bench_driver_find(const char *name);

/* ---- workloads (workload.c) ----------------------------------------------------------------- */

struct bench_workload {
    const char *label; /* for progress lines */
    /* synthetic: `users` users ask for `keys` distinct requests, Zipf(zipf_s) by popularity */
    enum bench_kind kind;
    uint32_t users;
    uint64_t keys;
    double zipf_s;
    /* or a recorded trace, replayed at its pace times speed (0: as fast as possible) */
    const struct bench_trace *trace;
    double speed;
    /* queries: their time range ends now and spans range_ms (0: one hour); "now" is the wall
     * clock, or with trace_clock a replayed query's own time in the trace (a virtual clock:
     * the dashboard's time runs `speed` times faster than the wall clock) */
    int64_t range_ms;
    int trace_clock;
    /* load: closed loop (rate 0) with `concurrency` workers, or open loop at `rate` requests/s
     * with at most `concurrency` in flight */
    unsigned concurrency;
    double rate;
    double duration_s; /* measured part (0: until `requests` or the trace's end) */
    uint64_t requests; /* measured requests (0: until the duration or the trace's end) */
    double warmup_s;   /* requests scheduled before this are the warm-up */
    uint64_t seed;
    int progress;  /* progress lines on stderr */
    double tick_s; /* timeline step (0: about 60 steps) */
};

/* Answers counted by what the cache said. */
struct bench_counts {
    uint64_t requests;
    uint64_t by_cache[BENCH_CACHE_N];
    uint64_t errors; /* answers with a status >= 400 */
    uint64_t failed; /* no answer (transport error) */
    uint64_t bytes;
    uint64_t pieces_hit, pieces_fetched; /* split queries, as their answers say */
};

/* One step of the timeline: answers completed in the step, upstream calls the simulator saw. */
struct bench_tick {
    double t; /* seconds from the start of the run, at the end of the step */
    uint64_t requests, hits, upstream, errors;
    uint64_t upstream_bytes; /* body bytes of the simulator's answers */
    long rss_kib;
    int warmup;
};

struct bench_run_result {
    struct bench_counts warm, meas;
    double meas_s, total_s;
    int interrupted;
    int64_t *lat_ns; /* measured latencies, sorted */
    size_t nlat;
    struct bench_sim_counts sim0, sim_meas0, sim1; /* start, end of warm-up, end */
    struct bench_target_stats tgt0, tgt_meas0, tgt1;
    struct bench_tick *ticks;
    size_t nticks, ticks_cap;
    long rss_max_kib, rss_end_kib;
    char first_error[256];
};

/* Runs w through driver d (conn open), the simulator counting upstream calls. Fails only
 * when the run cannot go on (workers, memory, or 100 requests in a row without an answer);
 * an interrupt ends it early with interrupted set and rc 0. res is filled either way. */
int bench_workload_run(const struct bench_driver *d, void *conn, struct bench_sim *sim,
                       const struct bench_workload *w, struct bench_run_result *res,
                       struct cp_err *err);
void bench_run_result_dispose(struct bench_run_result *res);

/* ---- run reports (runreport.c) ----------------------------------------------------------------
 */

/* What a run was made against, for its report. */
struct bench_run_info {
    const char *label, *group, *mode, *backend;
    const char *json_data;  /* the data source's jsonData */
    const char *trace_name; /* replays */
    const struct bench_upstream_profile *profile;
    int clean_exit; /* the target stopped cleanly */
};
/* The bench's document (schema 1, see README): {"schema","tool","version","command",
 * "startedAt","host","interrupted","runs":[],"notes":[]}, "sim" added by the sim preset. */
json_t *bench_doc_new(const char *command);
/* Load at the end, and interrupted when Ctrl-C came. */
void bench_doc_finish(json_t *doc);
void bench_doc_note(json_t *doc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One run of a workload: the measured window first, then warm-up, whole-run totals (with the
 * plugin's own counters), the timeline and the latency histogram. A new reference. */
json_t *bench_run_json(const struct bench_run_info *info, const struct bench_workload *w,
                       const struct bench_run_result *r);
/* Sets "compare" on every run of group: the baseline's label and the run's upstream calls and
 * bytes over the baseline's (measured windows). CP_EINVAL when the baseline did not run. */
int bench_doc_compare(json_t *doc, const char *group, const char *baseline);
/* Text tables of the document's runs and what-if. */
void bench_runs_print(json_t *doc, FILE *f);
void bench_whatif_print(json_t *out, const char *title, FILE *f);
/* Writes the document to path ("-": stdout). */
int bench_doc_write(json_t *doc, const char *path, struct cp_err *err);

/* ---- HTML page (html.c) -----------------------------------------------------------------------
 */

/* Where the page's scripts come from: dir holds report.js and node_modules/chart.js (NULL: the
 * bench/web directory of the source tree the bench was built from); chartjs overrides the
 * library's file. */
struct bench_web {
    const char *dir, *chartjs;
};
/* Writes doc as a self-contained page (Chart.js and report.js inlined). CP_EINVAL names a
 * missing script or an unwritable file. */
int bench_html_write(json_t *doc, const struct bench_web *web, const char *out, struct cp_err *err);

/* ---- the newer modes and presets (modes.c) ------------------------------------------------------
 */

/* 1 when argv[1] names one of them: sim, trace, grpc, http, preset, report. */
int bench_is_mode(const char *name);
/* Runs it (owns signals and library set-up); the process exit status. */
int bench_modes_main(int argc, char **argv);

/* ---- the standalone server against its peers (peers.c) -------------------------------------- */

/* `cachingproxy-bench standalone`: the server's cached hit, a bare libmicrohttpd responder of
 * the same bytes and nginx proxy_cache, each under wrk -t2 -c50 for secs, rounds times; adds
 * "standalone" to scenarios and prints a table to out (NULL: none). */
int bench_peers_run(const char *exe, struct bench_sim *sim, const char *sim_url, double secs,
                    int rounds, json_t *scenarios, FILE *out);

/* ---- report (report.c) -------------------------------------------------------------------- */

/* A text table: title, column headers, rows of preformatted cells, notes under it. */
struct bench_table;
struct bench_table *bench_table_new(const char *title, const char *const *cols, size_t ncols);
void bench_table_row(struct bench_table *t, const char *const *cells);
void bench_table_note(struct bench_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bench_table_print(const struct bench_table *t, FILE *f);
void bench_table_free(struct bench_table *t);

/* Latency and throughput of one cell. */
struct bench_stats {
    uint64_t calls;
    double secs;
    double rps;
    double p50_ms, p90_ms, p95_ms, p99_ms, max_ms, mean_ms;
    uint64_t bytes; /* body or frame bytes received in the measured window */
};
/* Sorts samples (ns) in place and fills the percentiles. */
void bench_stats_fill(struct bench_stats *st, int64_t *ns, size_t n);
/* {"calls","seconds","calls_per_s","p50_ms",...} */
json_t *bench_stats_json(const struct bench_stats *st);
/* Formats helpers for table cells. */
void bench_fmt_ms(char *out, size_t size, double ms);
void bench_fmt_rate(char *out, size_t size, double rps);
void bench_fmt_size(char *out, size_t size, size_t bytes);
/* Prints the JSON document (indent 2) to f. */
void bench_json_print(json_t *doc, FILE *f);

/* ---- many calls in flight from a few threads (grpc_async.c) ------------------------------- */

/* One call of a load: when it started and ended (cp_mono_ns) and what came back. */
struct bench_acall {
    int64_t start_ns, end_ns;
    int grpc_status;        /* GRPC_STATUS_*, -1 when the call could not start */
    int code;               /* HTTP code of the first message, 0 when none came */
    enum bench_cache cache; /* X-Cache of the first message */
    size_t bytes;           /* body bytes over all messages */
};

/* CallResource calls on one channel from a few client threads, each with its own completion
 * queue: any number in flight without a thread per call. Everything borrowed for the load. */
struct bench_aload {
    struct bench_chan *chan;
    const uint8_t *const *reqs; /* packed CallResourceRequests */
    const size_t *lens;
    size_t nreqs;
    unsigned threads;   /* client threads (1..16) */
    int64_t timeout_ms; /* each call's deadline */
    /* loop only: calls in flight over all threads; a warm-up, then the measured window */
    unsigned inflight;
    double warmup_s, duration_s;
    int keep_samples; /* loop: hand the window's latencies over in the result */
};
/* Starts every request at once (split over the threads) and waits for every answer; out (an
 * array of nreqs) receives request i's call in out[i]. A failed call is a result, not an
 * error: 0, or CP_ENOMEM / CP_EINVAL, or CP_ECANCELED when interrupted (the calls are
 * cancelled first). */
int bench_async_burst(const struct bench_aload *l, struct bench_acall *out, struct cp_err *err);

struct bench_aloop_result {
    struct bench_stats st; /* calls answered in the window (ok + HTTP errors), percentiles */
    uint64_t ok, http_errors, failed;
    uint64_t by_cache[BENCH_CACHE_N];
    char first_error[160];
    /* the whole load, warm-up included: calls answered, and the time from start to the last */
    uint64_t answered_all;
    double all_secs;
    int64_t *samples; /* keep_samples: the window's latencies in ns, sorted; caller frees */
    size_t nsamples;
};
/* Keeps `inflight` calls in flight, requests round robin; the window counts calls started in
 * it, throughput = calls / (last end - window start). Errors as bench_async_burst, and
 * CP_EUPSTREAM when no call was answered in the window. */
int bench_async_loop(const struct bench_aload *l, struct bench_aloop_result *r, struct cp_err *err);

/* ---- preset core: the event-driven core's figures (core.c) --------------------------------- */

struct bench_core_opts {
    const char *exe;       /* the plugin executable */
    struct bench_sim *sim; /* the running upstream simulator */
    const char *sim_url;
    int64_t updated_ms;     /* the data sources' lastUpdatedMS */
    int quick;              /* small bursts and short loops (seconds, for the tests) */
    int progress;           /* a line per cell on stderr */
    const char *before_exe; /* NULL, or an older build whose plugin cells run too */
};
/* Bursts of distinct misses on a slow upstream, uncached forwarding and memory hits against
 * bare gRPC round trips, against one fresh plugin process; adds "core" to doc (bursts, loops,
 * threads, plugin, goals; see README). What ran is kept when a cell fails or Ctrl-C comes. */
int bench_core_run(const struct bench_core_opts *o, json_t *doc, struct cp_err *err);
/* The text tables of doc's "core", when it has one. */
void bench_core_print(json_t *doc, FILE *f);

#endif
