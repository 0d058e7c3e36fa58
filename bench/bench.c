/*
 * bench.c - cachingproxy-bench: drives the real plugin executable the way Grafana does
 * (go-plugin launch, gRPC over the handshake's unix socket) against the built-in upstream
 * simulator, and reports, all side by side from one run:
 *
 *   overhead  uncached CallResource through the plugin vs the same GETs straight to the
 *             simulator with libcurl (keep-alive): p50/p99, calls/s, added p50, throughput
 *             ratio, upstream connections opened by the plugin
 *   cache     hit latency of the memory and Redis backends, a miss, and a bare gRPC round trip
 *             of the same size (in-process server); ratio memory hit / bare
 *   query     QueryData hit and miss latency
 *   all       the three in sequence
 *
 * Load model: a cell runs C client threads for a warm-up then a measured window, each thread
 * a closed loop with one call in flight (gRPC threads share one channel; curl threads each
 * reuse one easy handle). Latency is taken with cp_mono_ns around the call only (requests are
 * packed before the clock starts); percentiles come from the sorted samples of all threads;
 * throughput is calls completed in the window / window length.
 *
 * Every wait is bounded (calls BENCH_CALL_TIMEOUT_MS, start and stop of children); SIGINT and
 * SIGTERM stop the current cell and run the normal cleanup; should that overrun, the signal
 * thread kills the children itself and exits. Children also get PR_SET_PDEATHSIG.
 */
#include "bench_int.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <grpc/support/time.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- options and context ------------------------------------------------------------------ */

struct bench_opts {
    double duration_s, warmup_s;
    int quick, json, no_redis;
    int rounds; /* hitpath and standalone: rounds of each side */
    const char *exe, *redis_bin;
};

struct bench_ctx {
    struct bench_opts o;
    struct bench_sim *sim;
    char sim_url[64];
    _Atomic unsigned long long seq; /* distinct keys for misses, unique over the run */
    int64_t updated_ms;
    json_t *scenarios;
};

static const size_t body_sizes[] = {1024, 65536};
#define NSIZES (sizeof body_sizes / sizeof body_sizes[0])

static void progress(const struct bench_ctx *c, const char *what)
{
    (void)c;
    fprintf(stderr, "bench: %s\n", what);
}

/* ---- the cell runner -------------------------------------------------------------------- */

struct target {
    void *arg;
    int (*init)(void *arg, void **ts, struct cp_err *err);
    /* one call; *ns = its latency, *bytes = body or frame bytes received */
    int (*call)(void *arg, void *ts, int64_t *ns, size_t *bytes, struct cp_err *err);
    void (*dispose)(void *arg, void *ts);
};

struct run;
struct worker {
    struct run *run;
    pthread_t th;
    void *ts;
    int64_t *ns;
    size_t n, cap;
    uint64_t bytes;
    int64_t last_end;
    int rc;
    struct cp_err err;
};

struct run {
    const struct target *t;
    pthread_barrier_t ready, go;
    int64_t t_measure, t_end;
    _Atomic int stop;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct run *r = w->run;
    w->rc = r->t->init ? r->t->init(r->t->arg, &w->ts, &w->err) : 0;
    if (w->rc)
        atomic_store(&r->stop, 1);
    pthread_barrier_wait(&r->ready);
    pthread_barrier_wait(&r->go);
    while (!w->rc && !atomic_load(&r->stop) && !atomic_load(&bench_interrupted)) {
        int64_t start = cp_mono_ns();
        if (start >= r->t_end)
            break;
        int64_t ns = 0;
        size_t bytes = 0;
        w->rc = r->t->call(r->t->arg, w->ts, &ns, &bytes, &w->err);
        if (w->rc) {
            atomic_store(&r->stop, 1);
            break;
        }
        if (start < r->t_measure)
            continue;
        if (w->n == w->cap) {
            size_t nc = w->cap ? w->cap * 2 : 4096;
            int64_t *nn = realloc(w->ns, nc * sizeof *nn);
            if (!nn) {
                w->rc = cp_err_set(&w->err, CP_ENOMEM, "out of memory for samples");
                atomic_store(&r->stop, 1);
                break;
            }
            w->ns = nn;
            w->cap = nc;
        }
        w->ns[w->n++] = ns;
        w->bytes += bytes;
        w->last_end = cp_mono_ns();
    }
    if (r->t->dispose && w->ts)
        r->t->dispose(r->t->arg, w->ts);
    return NULL;
}

static int run_cell(const struct bench_ctx *c, const struct target *t, int conc,
                    struct bench_stats *st, struct cp_err *err)
{
    memset(st, 0, sizeof *st);
    struct run r = {0};
    r.t = t;
    struct worker *ws = calloc((size_t)conc, sizeof *ws);
    if (!ws)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    pthread_barrier_init(&r.ready, NULL, (unsigned)conc + 1);
    pthread_barrier_init(&r.go, NULL, (unsigned)conc + 1);
    int started = 0;
    for (; started < conc; started++) {
        ws[started].run = &r;
        if (pthread_create(&ws[started].th, NULL, worker_main, &ws[started]) != 0)
            break;
    }
    if (started < conc) {
        /* cannot happen on a sane host; the barriers need every party, so give up hard */
        fprintf(stderr, "bench: cannot start client threads\n");
        exit(1);
    }
    pthread_barrier_wait(&r.ready);
    int64_t now = cp_mono_ns();
    r.t_measure = now + (int64_t)(c->o.warmup_s * 1e9);
    r.t_end = r.t_measure + (int64_t)(c->o.duration_s * 1e9);
    pthread_barrier_wait(&r.go);
    size_t total = 0;
    int rc = 0;
    int64_t last = r.t_measure;
    for (int i = 0; i < conc; i++) {
        pthread_join(ws[i].th, NULL);
        total += ws[i].n;
        if (ws[i].last_end > last)
            last = ws[i].last_end;
        if (ws[i].rc && !rc) {
            rc = ws[i].rc;
            if (err)
                *err = ws[i].err;
        }
    }
    int64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < conc; i++) {
        if (all && ws[i].n)
            memcpy(all + k, ws[i].ns, ws[i].n * sizeof *all);
        k += ws[i].n;
        st->bytes += ws[i].bytes;
        free(ws[i].ns);
    }
    if (!all && !rc)
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    if (!rc && atomic_load(&bench_interrupted))
        rc = cp_err_set(err, CP_ECANCELED, "interrupted");
    if (!rc && total == 0)
        rc = cp_err_set(err, CP_EINTERNAL, "no call completed in the measured window");
    if (!rc) {
        st->calls = total;
        st->secs = (double)(last - r.t_measure) / 1e9;
        st->rps = st->secs > 0 ? (double)total / st->secs : 0;
        bench_stats_fill(st, all, total);
    }
    free(all);
    free(ws);
    pthread_barrier_destroy(&r.ready);
    pthread_barrier_destroy(&r.go);
    return rc;
}

/* ---- targets: libcurl straight to the simulator ------------------------------------------- */

struct curl_arg {
    const char *url;
    size_t want;
};

struct curl_ts {
    CURL *h;
    size_t got;
};

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    ((struct curl_ts *)ud)->got += size * n;
    return size * n;
}

static int curl_init(void *arg, void **ts, struct cp_err *err)
{
    struct curl_arg *a = arg;
    struct curl_ts *t = calloc(1, sizeof *t);
    if (!t || !(t->h = curl_easy_init())) {
        free(t);
        return cp_err_set(err, CP_ENOMEM, "curl_easy_init failed");
    }
    curl_easy_setopt(t->h, CURLOPT_URL, a->url);
    curl_easy_setopt(t->h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(t->h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->h, CURLOPT_TIMEOUT_MS, (long)BENCH_CALL_TIMEOUT_MS);
    curl_easy_setopt(t->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    *ts = t;
    return 0;
}

static int curl_call(void *arg, void *ts, int64_t *ns, size_t *bytes, struct cp_err *err)
{
    struct curl_arg *a = arg;
    struct curl_ts *t = ts;
    t->got = 0;
    int64_t t0 = cp_mono_ns();
    CURLcode cc = curl_easy_perform(t->h);
    *ns = cp_mono_ns() - t0;
    if (cc != CURLE_OK)
        return cp_err_set(err, CP_EUPSTREAM, "direct GET %s: %s", a->url, curl_easy_strerror(cc));
    long code = 0;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200 || t->got != a->want)
        return cp_err_set(err, CP_EUPSTREAM, "direct GET %s: HTTP %ld, %zu bytes (want 200, %zu)",
                          a->url, code, t->got, a->want);
    *bytes = t->got;
    return 0;
}

static void curl_dispose(void *arg, void *ts)
{
    (void)arg;
    struct curl_ts *t = ts;
    curl_easy_cleanup(t->h);
    free(t);
}

/* ---- targets: CallResource through a channel --------------------------------------------- */

struct res_arg {
    struct bench_chan *chan;
    const struct bench_ds *ds;
    const uint8_t *req; /* fixed request, or NULL: a distinct key per call from url_base */
    size_t len;
    const char *url_base; /* e.g. "proxy/data?size=1024&delay_ms=0"; "&id=N" is appended */
    _Atomic unsigned long long *seq;
    size_t want_bytes;
    const char *want_xcache; /* NULL: not checked */
    _Atomic uint64_t xc_match, xc_other;
};

static int caller_new(struct bench_chan *chan, void **ts, struct cp_err *err)
{
    struct bench_caller *k = calloc(1, sizeof *k);
    if (!k || bench_caller_init(k, chan) != 0) {
        free(k);
        return cp_err_set(err, CP_ENOMEM, "cannot create a completion queue");
    }
    *ts = k;
    return 0;
}

static int res_init(void *arg, void **ts, struct cp_err *err)
{
    return caller_new(((struct res_arg *)arg)->chan, ts, err);
}

static void caller_free(void *arg, void *ts)
{
    (void)arg;
    bench_caller_dispose(ts);
    free(ts);
}

static int res_call(void *arg, void *ts, int64_t *ns, size_t *bytes, struct cp_err *err)
{
    struct res_arg *a = arg;
    const uint8_t *req = a->req;
    size_t len = a->len;
    uint8_t *own = NULL;
    if (!req) {
        char url[512];
        snprintf(url, sizeof url, "%s&id=%llu", a->url_base, atomic_fetch_add(a->seq, 1));
        if (!(own = bench_pack_resource(a->ds, url, &len)))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        req = own;
    }
    struct bench_res r;
    int64_t t0 = cp_mono_ns();
    int rc = bench_call_resource(ts, req, len, 0, &r, err);
    *ns = cp_mono_ns() - t0;
    free(own);
    if (rc)
        return rc;
    if (r.code != 200)
        return cp_err_set(err, CP_EUPSTREAM, "CallResource: HTTP %d (want 200), X-Cache %s", r.code,
                          r.xcache[0] ? r.xcache : "-");
    if (a->want_bytes && r.body_bytes != a->want_bytes)
        return cp_err_set(err, CP_EUPSTREAM, "CallResource: %zu body bytes (want %zu)",
                          r.body_bytes, a->want_bytes);
    if (a->want_xcache)
        atomic_fetch_add(strcmp(r.xcache, a->want_xcache) ? &a->xc_other : &a->xc_match, 1);
    *bytes = r.body_bytes;
    return 0;
}

static const struct target res_target = {NULL, res_init, res_call, caller_free};

/* ---- targets: QueryData ------------------------------------------------------------------- */

struct query_arg {
    struct bench_chan *chan;
    const struct bench_ds *ds;
    long rows, cols;
    int distinct; /* 0: the same query every time */
    _Atomic unsigned long long *seq;
    const uint8_t *req;
    size_t len;
};

#define QUERY_FROM_MS 1700000000000LL
#define QUERY_TO_MS 1700003600000LL

static uint8_t *pack_rows_query(const struct bench_ds *ds, long rows, long cols, const char *id,
                                size_t *len)
{
    char model[512];
    snprintf(model, sizeof model,
             "{\"refId\":\"A\",\"path\":\"/rows\",\"params\":{\"n\":\"%ld\",\"cols\":\"%ld\","
             "\"id\":\"%s\"},\"root\":\"$\"}",
             rows, cols, id);
    return bench_pack_query(ds, model, QUERY_FROM_MS, QUERY_TO_MS, len);
}

static int query_call(void *arg, void *ts, int64_t *ns, size_t *bytes, struct cp_err *err)
{
    struct query_arg *a = arg;
    const uint8_t *req = a->req;
    size_t len = a->len;
    uint8_t *own = NULL;
    if (a->distinct) {
        char id[32];
        snprintf(id, sizeof id, "%llu", atomic_fetch_add(a->seq, 1));
        if (!(own = pack_rows_query(a->ds, a->rows, a->cols, id, &len)))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        req = own;
    }
    struct bench_qres r;
    int64_t t0 = cp_mono_ns();
    int rc = bench_query_data(ts, req, len, &r, err);
    *ns = cp_mono_ns() - t0;
    free(own);
    if (rc)
        return rc;
    if (r.status != 200 || r.error[0] || r.nframes == 0)
        return cp_err_set(err, CP_EUPSTREAM, "QueryData: status %d, %u frames, error \"%s\"",
                          r.status, r.nframes, r.error);
    *bytes = r.frame_bytes;
    return 0;
}

static int query_init(void *arg, void **ts, struct cp_err *err)
{
    return caller_new(((struct query_arg *)arg)->chan, ts, err);
}

static const struct target query_target = {NULL, query_init, query_call, caller_free};

/* ---- helpers for the scenarios ------------------------------------------------------------ */

static int fail_msg(const char *what, const struct cp_err *err)
{
    fprintf(stderr, "bench: %s: %s\n", what, cp_err_text(err));
    return err->code ? err->code : CP_EINTERNAL;
}

static int start_plugin(struct bench_ctx *c, struct bench_plugin *p)
{
    struct cp_err err = {0};
    if (bench_plugin_start(p, c->o.exe, NULL, &err) != 0)
        return fail_msg("plugin did not start", &err);
    return 0;
}

/* One call with a check, used to warm keys; keep: the first message is returned. */
static int one_call(struct bench_chan *chan, const struct bench_ds *ds, const char *url,
                    Pluginv2__CallResourceResponse **keep, struct bench_res *r, struct cp_err *err)
{
    struct bench_caller k;
    if (bench_caller_init(&k, chan) != 0)
        return cp_err_set(err, CP_ENOMEM, "cannot create a completion queue");
    size_t len;
    uint8_t *req = bench_pack_resource(ds, url, &len);
    int rc = req ? bench_call_resource(&k, req, len, keep != NULL, r, err)
                 : cp_err_set(err, CP_ENOMEM, "out of memory");
    free(req);
    bench_caller_dispose(&k);
    if (!rc && r->code != 200)
        rc = cp_err_set(err, CP_EUPSTREAM, "GET %s: HTTP %d (want 200)", url, r->code);
    if (keep) {
        *keep = rc ? NULL : r->first;
        if (rc && r->first)
            pluginv2__call_resource_response__free_unpacked(r->first, NULL);
        r->first = NULL;
    }
    return rc;
}

static void fmt_cells_stats(char cells[][32], const struct bench_stats *st)
{
    bench_fmt_ms(cells[0], 32, st->p50_ms);
    bench_fmt_ms(cells[1], 32, st->p99_ms);
    bench_fmt_rate(cells[2], 32, st->rps);
}

static void emit(const struct bench_ctx *c, struct bench_table *t)
{
    if (!c->o.json)
        bench_table_print(t, stdout);
    fflush(stdout);
    bench_table_free(t);
}

static json_t *direct_json(const struct bench_stats *st, uint64_t conns)
{
    json_t *j = bench_stats_json(st);
    json_object_set_new(j, "conns_opened", json_integer((json_int_t)conns));
    return j;
}

/* ---- scenario: overhead ------------------------------------------------------------------- */

static int scen_overhead(struct bench_ctx *c)
{
    static const int concs[] = {1, 8};
    struct bench_plugin p;
    int rc = start_plugin(c, &p);
    if (rc)
        return rc;
    struct bench_ds ds = {1,
                          "bench-off",
                          "bench (cache off)",
                          c->sim_url,
                          "{\"cache\":{\"backend\":\"off\"}}",
                          c->updated_ms};
    static const char *const cols[] = {"body",      "conc",       "direct p50",   "direct p99",
                                       "direct/s",  "plugin p50", "plugin p99",   "plugin/s",
                                       "added p50", "thru ratio", "conns opened", "peak open"};
    struct bench_table *t = bench_table_new(
        "overhead: uncached CallResource (cache off) vs direct libcurl GET; latency ms", cols,
        sizeof cols / sizeof cols[0]);
    json_t *cells = json_array();
    struct cp_err err = {0};
    double worst_added = 0;
    for (size_t si = 0; si < NSIZES && !rc; si++) {
        for (size_t ci = 0; ci < sizeof concs / sizeof concs[0] && !rc; ci++) {
            size_t size = body_sizes[si];
            int conc = concs[ci];
            char path[128], url[256], purl[256], line[128];
            snprintf(path, sizeof path, "data?size=%zu&delay_ms=0", size);
            snprintf(url, sizeof url, "%s/%s", c->sim_url, path);
            snprintf(purl, sizeof purl, "proxy/%s", path);

            snprintf(line, sizeof line, "overhead %zu B c%d: direct", size, conc);
            progress(c, line);
            struct curl_arg ca = {url, size};
            struct target ct = {&ca, curl_init, curl_call, curl_dispose};
            struct bench_stats direct, plug;
            struct bench_sim_counts d0, d1;
            bench_sim_counts(c->sim, &d0);
            rc = run_cell(c, &ct, conc, &direct, &err);
            bench_sim_counts(c->sim, &d1);
            if (rc) {
                fail_msg("overhead, direct", &err);
                break;
            }

            snprintf(line, sizeof line, "overhead %zu B c%d: plugin", size, conc);
            progress(c, line);
            size_t len;
            uint8_t *req = bench_pack_resource(&ds, purl, &len);
            struct res_arg ra = {&p.chan, &ds, req, len, NULL, &c->seq, size, "BYPASS"};
            struct target pt = res_target;
            pt.arg = &ra;
            struct bench_sim_counts before, after;
            bench_sim_reset_peak(c->sim);
            bench_sim_counts(c->sim, &before);
            rc = req ? run_cell(c, &pt, conc, &plug, &err)
                     : cp_err_set(&err, CP_ENOMEM, "out of memory");
            bench_sim_counts(c->sim, &after);
            free(req);
            if (rc) {
                fail_msg("overhead, through the plugin", &err);
                break;
            }
            uint64_t opened = after.conns_opened - before.conns_opened;
            double added = plug.p50_ms - direct.p50_ms;
            double ratio = direct.rps > 0 ? plug.rps / direct.rps : 0;
            if (added > worst_added)
                worst_added = added;

            char cs[12][32];
            bench_fmt_size(cs[0], 32, size);
            snprintf(cs[1], 32, "%d", conc);
            fmt_cells_stats(&cs[2], &direct);
            fmt_cells_stats(&cs[5], &plug);
            snprintf(cs[8], 32, "%+.3f", added);
            snprintf(cs[9], 32, "%.2f", ratio);
            snprintf(cs[10], 32, "%llu", (unsigned long long)opened);
            snprintf(cs[11], 32, "%llu", (unsigned long long)after.conns_peak);
            const char *row[12];
            for (int i = 0; i < 12; i++)
                row[i] = cs[i];
            bench_table_row(t, row);
            uint64_t xc_other = atomic_load(&ra.xc_other);
            if (xc_other)
                bench_table_note(t, "%zu B c%d: %llu answers were not X-Cache BYPASS", size, conc,
                                 (unsigned long long)xc_other);
            json_array_append_new(
                cells, json_pack("{s:I,s:i,s:o,s:o,s:f,s:f,s:b,s:{s:I,s:I,s:I,s:i}}", "body_bytes",
                                 (json_int_t)size, "concurrency", conc, "direct",
                                 direct_json(&direct, d1.conns_opened - d0.conns_opened), "plugin",
                                 bench_stats_json(&plug), "added_p50_ms", added, "throughput_ratio",
                                 ratio, "added_p50_target_met", added < 0.3, "upstream", "requests",
                                 (json_int_t)(after.data_requests - before.data_requests),
                                 "conns_opened", (json_int_t)opened, "conns_peak_open",
                                 (json_int_t)after.conns_peak, "client_threads", conc));
        }
    }
    long rss = bench_plugin_rss_kib(&p);
    int stop_rc = bench_plugin_stop(&p);
    if (!rc) {
        bench_table_note(t,
                         "added p50 = plugin p50 - direct p50 (target < 0.3 ms): worst %+.3f "
                         "ms, %s",
                         worst_added, worst_added < 0.3 ? "met" : "NOT met");
        bench_table_note(t, "thru ratio = plugin calls/s / direct calls/s; conns opened = new "
                            "upstream TCP connections during the plugin cell (pool reuse keeps it "
                            "<= conc, then 0); peak open includes idle pooled ones");
        bench_table_note(t, "client, plugin and simulator share the cores: at conc 8 the box is "
                            "saturated and p50 includes queueing");
        bench_table_note(t, "plugin RSS at the end: %.1f MiB; plugin exit %s", (double)rss / 1024,
                         stop_rc == 0 ? "clean" : "NOT clean");
        emit(c, t);
        json_object_set_new(c->scenarios, "overhead",
                            json_pack("{s:o,s:f,s:b,s:f,s:b}", "cells", cells, "worst_added_p50_ms",
                                      worst_added, "target_met", worst_added < 0.3,
                                      "plugin_rss_mib", (double)rss / 1024, "plugin_clean_exit",
                                      stop_rc == 0));
    } else {
        bench_table_free(t);
        json_decref(cells);
    }
    return rc;
}

/* ---- scenario: cache ---------------------------------------------------------------------- */

struct cache_row {
    const char *name;
    struct bench_stats st;
    uint64_t upstream, xc_match, xc_other;
    int ran;
};

/* A hit cell: warm the key, check the second answer is a HIT, then measure. */
static int hit_cell(struct bench_ctx *c, struct bench_chan *chan, const struct bench_ds *ds,
                    size_t size, Pluginv2__CallResourceResponse **keep, struct cache_row *row,
                    struct cp_err *err)
{
    char url[160];
    snprintf(url, sizeof url, "proxy/data?size=%zu&delay_ms=0&id=hot", size);
    struct bench_res r;
    int rc = one_call(chan, ds, url, NULL, &r, err);
    if (!rc)
        rc = one_call(chan, ds, url, keep, &r, err);
    if (!rc && strcmp(r.xcache, "HIT") != 0)
        rc = cp_err_set(err, CP_EUPSTREAM, "%s: second call answered X-Cache %s, not HIT", ds->uid,
                        r.xcache[0] ? r.xcache : "(none)");
    if (rc)
        return rc;
    size_t len;
    uint8_t *req = bench_pack_resource(ds, url, &len);
    if (!req)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    struct res_arg ra = {chan, ds, req, len, NULL, &c->seq, size, "HIT"};
    struct target t = res_target;
    t.arg = &ra;
    struct bench_sim_counts b0, b1;
    bench_sim_counts(c->sim, &b0);
    rc = run_cell(c, &t, 1, &row->st, err);
    bench_sim_counts(c->sim, &b1);
    free(req);
    row->upstream = b1.data_requests - b0.data_requests;
    row->xc_match = atomic_load(&ra.xc_match);
    row->xc_other = atomic_load(&ra.xc_other);
    row->ran = !rc;
    return rc;
}

static int miss_cell(struct bench_ctx *c, struct bench_chan *chan, const struct bench_ds *ds,
                     size_t size, struct cache_row *row, struct cp_err *err)
{
    char base[160];
    snprintf(base, sizeof base, "proxy/data?size=%zu&delay_ms=0", size);
    struct res_arg ra = {chan, ds, NULL, 0, base, &c->seq, size, "MISS"};
    struct target t = res_target;
    t.arg = &ra;
    struct bench_sim_counts b0, b1;
    bench_sim_counts(c->sim, &b0);
    int rc = run_cell(c, &t, 1, &row->st, err);
    bench_sim_counts(c->sim, &b1);
    row->upstream = b1.data_requests - b0.data_requests;
    row->xc_match = atomic_load(&ra.xc_match);
    row->xc_other = atomic_load(&ra.xc_other);
    row->ran = !rc;
    return rc;
}

static int bare_cell(struct bench_ctx *c, const Pluginv2__CallResourceResponse *hit,
                     const struct bench_ds *ds, size_t size, int in_child, struct cache_row *row,
                     struct cp_err *err)
{
    size_t mlen = pluginv2__call_resource_response__get_packed_size(hit);
    uint8_t *msg = malloc(mlen ? mlen : 1);
    if (!msg)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    pluginv2__call_resource_response__pack(hit, msg);
    struct bench_bare *b = NULL;
    pid_t child = -1;
    char target[400], file[300];
    int rc = 0;
    if (in_child)
        rc = (child = bench_bare_child_start(msg, mlen, target, sizeof target, file, sizeof file,
                                             err)) > 0
                 ? 0
                 : CP_EINTERNAL;
    else
        rc = bench_bare_start(msg, mlen, &b, target, sizeof target, err);
    free(msg);
    if (rc)
        return rc;
    struct bench_chan chan = {0};
    rc = bench_chan_open(&chan, target, err);
    char url[160];
    snprintf(url, sizeof url, "proxy/data?size=%zu&delay_ms=0&id=hot", size);
    size_t len = 0;
    uint8_t *req = rc ? NULL : bench_pack_resource(ds, url, &len);
    if (!rc && !req)
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    if (!rc) {
        struct res_arg ra = {&chan, ds, req, len, NULL, &c->seq, size, "HIT"};
        struct target t = res_target;
        t.arg = &ra;
        rc = run_cell(c, &t, 1, &row->st, err);
        row->xc_match = atomic_load(&ra.xc_match);
        row->xc_other = atomic_load(&ra.xc_other);
        row->ran = !rc;
    }
    free(req);
    bench_chan_close(&chan);
    if (in_child) {
        bench_child_stop(child, BENCH_STOP_TIMEOUT_MS);
        unlink(file);
    } else {
        bench_bare_stop(b);
    }
    return rc;
}

static int scen_cache(struct bench_ctx *c)
{
    struct bench_redis redis = {-1, 0};
    char redis_why[256] = "skipped (--no-redis)";
    int have_redis = !c->o.no_redis &&
                     bench_redis_start(c->o.redis_bin, &redis, redis_why, sizeof redis_why) == 0;
    struct bench_plugin p;
    int rc = start_plugin(c, &p);
    if (rc) {
        bench_redis_stop(&redis);
        return rc;
    }
    char redis_json[160];
    snprintf(redis_json, sizeof redis_json,
             "{\"cache\":{\"backend\":\"redis\",\"redisUrl\":\"redis://127.0.0.1:%d\"}}",
             redis.port);
    struct bench_ds mem = {2,
                           "bench-mem",
                           "bench (memory)",
                           c->sim_url,
                           "{\"cache\":{\"backend\":\"memory\"}}",
                           c->updated_ms};
    struct bench_ds red = {3,          "bench-redis", "bench (redis)",
                           c->sim_url, redis_json,    c->updated_ms};
    static const char *const cols[] = {"body", "case",    "p50",        "p90",
                                       "p99",  "calls/s", "X-Cache ok", "upstream reqs"};
    struct bench_table *t =
        bench_table_new("cache: CallResource hit / miss latency (concurrency 1); latency ms", cols,
                        sizeof cols / sizeof cols[0]);
    json_t *cells = json_array();
    struct cp_err err = {0};
    double worst_ratio = 0;
    for (size_t si = 0; si < NSIZES && !rc; si++) {
        size_t size = body_sizes[si];
        struct cache_row rows[5] = {{"memory hit"},
                                    {"redis hit"},
                                    {"miss (memory)"},
                                    {"bare gRPC in-process"},
                                    {"bare gRPC child proc"}};
        Pluginv2__CallResourceResponse *hit = NULL;
        char line[128];
        snprintf(line, sizeof line, "cache %zu B: memory hit", size);
        progress(c, line);
        if ((rc = hit_cell(c, &p.chan, &mem, size, &hit, &rows[0], &err)) != 0) {
            fail_msg("cache, memory hit", &err);
            break;
        }
        if (have_redis) {
            snprintf(line, sizeof line, "cache %zu B: redis hit", size);
            progress(c, line);
            if ((rc = hit_cell(c, &p.chan, &red, size, NULL, &rows[1], &err)) != 0) {
                fail_msg("cache, redis hit", &err);
                pluginv2__call_resource_response__free_unpacked(hit, NULL);
                break;
            }
        }
        snprintf(line, sizeof line, "cache %zu B: miss", size);
        progress(c, line);
        if ((rc = miss_cell(c, &p.chan, &mem, size, &rows[2], &err)) != 0) {
            fail_msg("cache, miss", &err);
            pluginv2__call_resource_response__free_unpacked(hit, NULL);
            break;
        }
        snprintf(line, sizeof line, "cache %zu B: bare gRPC", size);
        progress(c, line);
        rc = bare_cell(c, hit, &mem, size, 0, &rows[3], &err);
        if (!rc)
            rc = bare_cell(c, hit, &mem, size, 1, &rows[4], &err);
        pluginv2__call_resource_response__free_unpacked(hit, NULL);
        if (rc) {
            fail_msg("cache, bare gRPC baseline", &err);
            break;
        }
        json_t *jc = json_object();
        json_object_set_new(jc, "body_bytes", json_integer((json_int_t)size));
        for (int i = 0; i < 5; i++) {
            static const char *const keys[] = {"memory_hit", "redis_hit", "miss", "bare_grpc",
                                               "bare_grpc_child_process"};
            if (!rows[i].ran) {
                char cs0[32];
                bench_fmt_size(cs0, 32, size);
                const char *row[8] = {cs0, rows[i].name, "-", "-", "-", "-", "skipped", "-"};
                bench_table_row(t, row);
                json_object_set_new(jc, keys[i], json_null());
                continue;
            }
            char cs[8][32];
            bench_fmt_size(cs[0], 32, size);
            snprintf(cs[1], 32, "%s", rows[i].name);
            bench_fmt_ms(cs[2], 32, rows[i].st.p50_ms);
            bench_fmt_ms(cs[3], 32, rows[i].st.p90_ms);
            bench_fmt_ms(cs[4], 32, rows[i].st.p99_ms);
            bench_fmt_rate(cs[5], 32, rows[i].st.rps);
            uint64_t tot = rows[i].xc_match + rows[i].xc_other;
            snprintf(cs[6], 32, "%.1f%%", tot ? 100.0 * (double)rows[i].xc_match / (double)tot : 0);
            if (i >= 3)
                snprintf(cs[7], 32, "-");
            else
                snprintf(cs[7], 32, "%llu", (unsigned long long)rows[i].upstream);
            const char *row[8];
            for (int k = 0; k < 8; k++)
                row[k] = cs[k];
            bench_table_row(t, row);
            json_t *js = bench_stats_json(&rows[i].st);
            json_object_set_new(js, "xcache_expected_fraction",
                                json_real(tot ? (double)rows[i].xc_match / (double)tot : 0));
            if (i < 3)
                json_object_set_new(js, "upstream_requests",
                                    json_integer((json_int_t)rows[i].upstream));
            json_object_set_new(jc, keys[i], js);
        }
        double ratio = rows[3].st.p50_ms > 0 ? rows[0].st.p50_ms / rows[3].st.p50_ms : 0;
        double ratio99 = rows[3].st.p99_ms > 0 ? rows[0].st.p99_ms / rows[3].st.p99_ms : 0;
        if (ratio > worst_ratio)
            worst_ratio = ratio;
        json_object_set_new(jc, "memory_hit_over_bare_p50", json_real(ratio));
        json_object_set_new(jc, "memory_hit_over_bare_p99", json_real(ratio99));
        json_object_set_new(jc, "target_met", json_boolean(ratio <= 1.5));
        double ratio_proc = rows[4].st.p50_ms > 0 ? rows[0].st.p50_ms / rows[4].st.p50_ms : 0;
        json_object_set_new(jc, "memory_hit_over_bare_child_process_p50", json_real(ratio_proc));
        if (rows[1].ran && rows[0].st.p50_ms > 0)
            json_object_set_new(jc, "redis_hit_over_memory_hit_p50",
                                json_real(rows[1].st.p50_ms / rows[0].st.p50_ms));
        if (rows[2].ran && rows[0].st.p50_ms > 0)
            json_object_set_new(jc, "miss_over_memory_hit_p50",
                                json_real(rows[2].st.p50_ms / rows[0].st.p50_ms));
        bench_table_note(t,
                         "%zu B: memory hit / bare in-process p50 = %.2f (target <= 1.5: %s), "
                         "p99 %.2f; / bare child proc p50 = %.2f",
                         size, ratio, ratio <= 1.5 ? "met" : "NOT met", ratio99, ratio_proc);
        json_array_append_new(cells, jc);
    }
    long rss = bench_plugin_rss_kib(&p);
    int stop_rc = bench_plugin_stop(&p);
    bench_redis_stop(&redis);
    if (!rc) {
        if (!have_redis)
            bench_table_note(t, "redis hit %s", redis_why);
        bench_table_note(t, "X-Cache ok = share of answers with the expected X-Cache (HIT, or "
                            "MISS for the miss rows); upstream reqs = simulator count over "
                            "warm-up + window");
        bench_table_note(t, "bare gRPC = gRPC core server answering the same "
                            "CallResourceResponse bytes as a memory hit, same client path; "
                            "in-process (as specified) and in a child process (like the plugin)");
        bench_table_note(t, "plugin RSS at the end: %.1f MiB; plugin exit %s", (double)rss / 1024,
                         stop_rc == 0 ? "clean" : "NOT clean");
        emit(c, t);
        json_t *js =
            json_pack("{s:o,s:f,s:b,s:b,s:f,s:b}", "cells", cells, "worst_memory_hit_over_bare_p50",
                      worst_ratio, "target_met", worst_ratio <= 1.5, "redis", have_redis,
                      "plugin_rss_mib", (double)rss / 1024, "plugin_clean_exit", stop_rc == 0);
        if (!have_redis)
            json_object_set_new(js, "redis_note", json_string(redis_why));
        json_object_set_new(c->scenarios, "cache", js);
    } else {
        bench_table_free(t);
        json_decref(cells);
    }
    return rc;
}

/* ---- scenario: the plugin's hit path under load ------------------------------------------ */

#define HIT_CONC 8

/* A memory hit through CallResource against a bare gRPC round trip of the same answer bytes
 * (the bare server in a child process, like the plugin), HIT_CONC calls in flight on one
 * channel each, for c->rounds rounds; the order alternates so neither side always runs first.
 * Goal: throughput ratio >= 0.9 and p99 ratio <= 1.3 in every round. */
static int scen_hitpath(struct bench_ctx *c)
{
    struct bench_plugin p;
    int rc = start_plugin(c, &p);
    if (rc)
        return rc;
    struct bench_ds mem = {5,          "bench-hit", "bench (hit path)", c->sim_url,
                           "{\"cache\":{\"backend\":\"memory\"}}", c->updated_ms};
    struct cp_err err = {0};
    size_t size = 1024;
    Pluginv2__CallResourceResponse *hit = NULL;
    char url[160];
    snprintf(url, sizeof url, "proxy/data?size=%zu&delay_ms=0&id=hot", size);
    struct bench_res r0;
    rc = one_call(&p.chan, &mem, url, NULL, &r0, &err);
    if (!rc)
        rc = one_call(&p.chan, &mem, url, &hit, &r0, &err);
    if (!rc && strcmp(r0.xcache, "HIT"))
        rc = cp_err_set(&err, CP_EUPSTREAM, "second call answered X-Cache %s, not HIT", r0.xcache);
    uint8_t *msg = NULL, *req = NULL;
    size_t mlen = 0, len = 0;
    pid_t child = -1;
    char target[400], file[300];
    struct bench_chan bare = {0};
    if (!rc) {
        mlen = pluginv2__call_resource_response__get_packed_size(hit);
        msg = malloc(mlen ? mlen : 1);
        req = bench_pack_resource(&mem, url, &len);
        if (!msg || !req)
            rc = cp_err_set(&err, CP_ENOMEM, "out of memory");
        else
            pluginv2__call_resource_response__pack(hit, msg);
    }
    if (!rc && (child = bench_bare_child_start(msg, mlen, target, sizeof target, file, sizeof file,
                                         &err)) < 0)
        rc = CP_EINTERNAL;
    if (!rc)
        rc = bench_chan_open(&bare, target, &err);
    static const char *const cols[] = {"round", "case",       "calls/s",     "p50",
                                       "p99",   "X-Cache ok", "server CPU/call", "switches/call"};
    char title[160];
    snprintf(title, sizeof title, "hitpath: CallResource memory hit vs bare gRPC, %zu B, %d calls "
             "in flight on one channel; latency ms", size, HIT_CONC);
    struct bench_table *t = bench_table_new(title, cols, 8);
    json_t *rounds = json_array();
    double worst_rps = 1e9, worst_p99 = 0;
    for (int round = 0; !rc && round < c->o.rounds; round++) {
        struct bench_stats st[2];
        uint64_t ok[2] = {0}, other[2] = {0};
        double cpu_us[2] = {0}, sw_per[2] = {0};
        for (int k = 0; k < 2 && !rc; k++) {
            int plugin_side = (round % 2 == 0) ? k == 1 : k == 0;
            struct res_arg ra = {plugin_side ? &p.chan : &bare, &mem, req, len, NULL, &c->seq,
                                 size, "HIT"};
            struct target tg = res_target;
            tg.arg = &ra;
            char line[96];
            snprintf(line, sizeof line, "hitpath round %d: %s", round + 1,
                     plugin_side ? "plugin memory hit" : "bare gRPC");
            progress(c, line);
            pid_t server = plugin_side ? p.pid : child;
            int64_t cpu0 = 0, cpu1 = 0;
            uint64_t sw0 = 0, sw1 = 0;
            int have = bench_proc_usage(server, &cpu0, &sw0) == 0;
            rc = run_cell(c, &tg, HIT_CONC, &st[plugin_side], &err);
            have = have && bench_proc_usage(server, &cpu1, &sw1) == 0;
            /* over warm-up and window: the calls of both */
            double calls = st[plugin_side].rps * (c->o.duration_s + c->o.warmup_s);
            cpu_us[plugin_side] = have && calls > 0 ? (double)(cpu1 - cpu0) / 1000 / calls : 0;
            sw_per[plugin_side] = have && calls > 0 ? (double)(sw1 - sw0) / calls : 0;
            ok[plugin_side] = atomic_load(&ra.xc_match);
            other[plugin_side] = atomic_load(&ra.xc_other);
        }
        if (rc)
            break;
        double rps_ratio = st[0].rps > 0 ? st[1].rps / st[0].rps : 0;
        double p99_ratio = st[0].p99_ms > 0 ? st[1].p99_ms / st[0].p99_ms : 0;
        if (rps_ratio < worst_rps)
            worst_rps = rps_ratio;
        if (p99_ratio > worst_p99)
            worst_p99 = p99_ratio;
        for (int k = 0; k < 2; k++) {
            char cs[8][32];
            snprintf(cs[0], 32, "%d", round + 1);
            snprintf(cs[1], 32, "%s", k ? "plugin memory hit" : "bare gRPC (child)");
            bench_fmt_rate(cs[2], 32, st[k].rps);
            bench_fmt_ms(cs[3], 32, st[k].p50_ms);
            bench_fmt_ms(cs[4], 32, st[k].p99_ms);
            uint64_t tot = ok[k] + other[k];
            snprintf(cs[5], 32, "%.1f%%", tot ? 100.0 * (double)ok[k] / (double)tot : 0);
            snprintf(cs[6], 32, "%.1f us", cpu_us[k]);
            snprintf(cs[7], 32, "%.2f", sw_per[k]);
            const char *row[8] = {cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6], cs[7]};
            bench_table_row(t, row);
        }
        bench_table_note(t, "round %d: plugin / bare throughput %.2f (goal >= 0.9: %s), p99 %.2f "
                            "(goal <= 1.3: %s)",
                         round + 1, rps_ratio, rps_ratio >= 0.9 ? "met" : "NOT met", p99_ratio,
                         p99_ratio <= 1.3 ? "met" : "NOT met");
        json_array_append_new(
            rounds, json_pack("{s:i,s:o,s:o,s:f,s:f,s:f,s:f,s:f,s:f}", "round", round + 1,
                              "plugin_hit", bench_stats_json(&st[1]), "bare_grpc",
                              bench_stats_json(&st[0]), "throughput_ratio", rps_ratio,
                              "p99_ratio", p99_ratio, "plugin_cpu_us_per_call", cpu_us[1],
                              "bare_cpu_us_per_call", cpu_us[0], "plugin_switches_per_call",
                              sw_per[1], "bare_switches_per_call", sw_per[0]));
    }
    bench_chan_close(&bare);
    if (child > 0) {
        bench_child_stop(child, BENCH_STOP_TIMEOUT_MS);
        unlink(file);
    }
    if (hit)
        pluginv2__call_resource_response__free_unpacked(hit, NULL);
    free(msg);
    free(req);
    int stop_rc = bench_plugin_stop(&p);
    if (rc) {
        fail_msg("hitpath", &err);
        bench_table_free(t);
        json_decref(rounds);
        return rc;
    }
    bench_table_note(t, "worst round: throughput %.2f, p99 %.2f; plugin exit %s", worst_rps,
                     worst_p99, stop_rc == 0 ? "clean" : "NOT clean");
    emit(c, t);
    json_object_set_new(c->scenarios, "hitpath",
                        json_pack("{s:o,s:f,s:f,s:b}", "rounds", rounds, "worst_throughput_ratio",
                                  worst_rps, "worst_p99_ratio", worst_p99, "goal_met",
                                  worst_rps >= 0.9 && worst_p99 <= 1.3));
    return 0;
}

/* ---- scenario: query ---------------------------------------------------------------------- */

static int scen_query(struct bench_ctx *c)
{
    static const long shapes[][2] = {{100, 4}, {1000, 8}};
    struct bench_plugin p;
    int rc = start_plugin(c, &p);
    if (rc)
        return rc;
    struct bench_ds ds = {4,
                          "bench-query",
                          "bench (query)",
                          c->sim_url,
                          "{\"cache\":{\"backend\":\"memory\"}}",
                          c->updated_ms};
    static const char *const cols[] = {"rows x cols", "case",    "p50",         "p90",
                                       "p99",         "calls/s", "frame bytes", "upstream reqs"};
    struct bench_table *t = bench_table_new(
        "query: QueryData hit / miss latency (memory cache, concurrency 1); latency ms", cols,
        sizeof cols / sizeof cols[0]);
    json_t *cells = json_array();
    struct cp_err err = {0};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0] && !rc; si++) {
        long nrows = shapes[si][0], ncols = shapes[si][1];
        json_t *jc = json_pack("{s:i,s:i}", "rows", (int)nrows, "cols", (int)ncols);
        for (int distinct = 0; distinct < 2 && !rc; distinct++) {
            char line[128];
            snprintf(line, sizeof line, "query %ldx%ld: %s", nrows, ncols,
                     distinct ? "miss" : "hit");
            progress(c, line);
            struct query_arg qa = {&p.chan, &ds, nrows, ncols, distinct, &c->seq, NULL, 0};
            uint8_t *req = NULL;
            if (!distinct) {
                req = pack_rows_query(&ds, nrows, ncols, "hot", &qa.len);
                qa.req = req;
                /* warm the key so every measured call is a hit */
                struct bench_caller k;
                struct bench_qres qr;
                if (!req || bench_caller_init(&k, &p.chan) != 0) {
                    free(req);
                    rc = cp_err_set(&err, CP_ENOMEM, "out of memory");
                    break;
                }
                rc = bench_query_data(&k, req, qa.len, &qr, &err);
                bench_caller_dispose(&k);
                if (!rc && (qr.status != 200 || qr.error[0]))
                    rc = cp_err_set(&err, CP_EUPSTREAM, "QueryData: status %d, error \"%s\"",
                                    qr.status, qr.error);
            }
            struct bench_stats st;
            struct bench_sim_counts b0, b1;
            bench_sim_counts(c->sim, &b0);
            if (!rc) {
                struct target tg = query_target;
                tg.arg = &qa;
                rc = run_cell(c, &tg, 1, &st, &err);
            }
            bench_sim_counts(c->sim, &b1);
            free(req);
            if (rc) {
                fail_msg(distinct ? "query, miss" : "query, hit", &err);
                break;
            }
            uint64_t up = b1.rows_requests - b0.rows_requests;
            char cs[8][32];
            snprintf(cs[0], 32, "%ld x %ld", nrows, ncols);
            snprintf(cs[1], 32, "%s", distinct ? "miss" : "hit");
            bench_fmt_ms(cs[2], 32, st.p50_ms);
            bench_fmt_ms(cs[3], 32, st.p90_ms);
            bench_fmt_ms(cs[4], 32, st.p99_ms);
            bench_fmt_rate(cs[5], 32, st.rps);
            snprintf(cs[6], 32, "%llu",
                     st.calls ? (unsigned long long)(st.bytes / st.calls) : 0ULL);
            snprintf(cs[7], 32, "%llu", (unsigned long long)up);
            const char *row[8];
            for (int k = 0; k < 8; k++)
                row[k] = cs[k];
            bench_table_row(t, row);
            if (!distinct && up)
                bench_table_note(t,
                                 "%ld x %ld hit: %llu upstream requests during the hit cell "
                                 "(expected 0)",
                                 nrows, ncols, (unsigned long long)up);
            json_t *js = bench_stats_json(&st);
            json_object_set_new(js, "upstream_requests", json_integer((json_int_t)up));
            json_object_set_new(jc, distinct ? "miss" : "hit", js);
        }
        if (!rc) {
            json_t *h = json_object_get(jc, "hit"), *m = json_object_get(jc, "miss");
            double hp = json_real_value(json_object_get(h, "p50_ms"));
            double mp = json_real_value(json_object_get(m, "p50_ms"));
            if (hp > 0)
                json_object_set_new(jc, "miss_over_hit_p50", json_real(mp / hp));
            json_array_append_new(cells, jc);
        } else {
            json_decref(jc);
        }
    }
    long rss = bench_plugin_rss_kib(&p);
    int stop_rc = bench_plugin_stop(&p);
    if (!rc) {
        bench_table_note(t, "query: {\"path\":\"/rows\",\"root\":\"$\"} on the simulator's "
                            "/rows (ts + numbers/strings), Arrow frames; miss = distinct params");
        bench_table_note(t, "frame bytes per call; upstream reqs = simulator count over warm-up "
                            "+ window (a hit row must show 0)");
        bench_table_note(t, "plugin RSS at the end: %.1f MiB; plugin exit %s", (double)rss / 1024,
                         stop_rc == 0 ? "clean" : "NOT clean");
        emit(c, t);
        json_object_set_new(c->scenarios, "query",
                            json_pack("{s:o,s:f,s:b}", "cells", cells, "plugin_rss_mib",
                                      (double)rss / 1024, "plugin_clean_exit", stop_rc == 0));
    } else {
        bench_table_free(t);
        json_decref(cells);
    }
    return rc;
}

/* "upstream": the simulator alone, in the foreground, for trying things by hand. */
static int serve_upstream(struct bench_ctx *c)
{
    printf("upstream simulator on %s (/data?size=N&delay_ms=D, /rows?n=R&cols=C, any other "
           "path: 1 KiB of JSON); Ctrl-C stops\n",
           c->sim_url);
    fflush(stdout);
    while (!atomic_load(&bench_interrupted)) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    struct bench_sim_counts n;
    bench_sim_counts(c->sim, &n);
    printf("requests %llu, connections opened %llu\n", (unsigned long long)n.requests,
           (unsigned long long)n.conns_opened);
    return 0;
}

static int run_hidden_bare(const char *file)
{
    if (bench_signals_start(1) != 0)
        return 1;
    cp_absl_deadlock_detection_off(); /* as the plugin does, so both sides compare alike */
    grpc_init();
    int rc = bench_bare_child_main(file);
    grpc_shutdown();
    bench_cleanup_done();
    return rc;
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cachingproxy-bench <overhead|cache|query|all> [options]\n"
            "       cachingproxy-bench <sim|trace|grpc|http|preset|report> ... (--help: theirs)\n"
            "\n"
            "  sim        what-if hit ratios of a CSV trace: our policy, LRU, the optimum\n"
            "  trace      write a synthetic CSV trace\n"
            "  grpc       a workload (synthetic, or a trace replayed) against the plugin\n"
            "  http       the same against the standalone server (gpx_cachingproxy serve)\n"
            "  preset     backends | policies | timealign | all\n"
            "  report     text and HTML from a saved JSON document\n"
            "\n"
            "  overhead   uncached calls through the plugin vs straight to the upstream\n"
            "  cache      memory / Redis hit, miss, and a bare gRPC round trip of the same size\n"
            "  query      QueryData hit and miss\n"
            "  all        the three in sequence\n"
            "  hitpath    a memory hit vs a bare gRPC round trip, 8 calls in flight, --rounds N\n"
            "  standalone the standalone server's cached hit vs a bare libmicrohttpd responder\n"
            "             and nginx proxy_cache, same bytes, wrk -t2 -c50, --rounds N\n"
            "  upstream   run only the upstream simulator until Ctrl-C\n"
            "\n"
            "  --duration S       measured seconds per cell (default 2)\n"
            "  --warmup S         warm-up seconds before each cell (default 0.5)\n"
            "  --quick            short cells for CI (0.6 s + 0.15 s warm-up; all < 30 s)\n"
            "  --json             print one JSON document instead of the tables\n"
            "  --plugin PATH      plugin executable (default: gpx_cachingproxy next to this "
            "binary)\n"
            "  --redis-server P   redis-server to start (default /usr/bin/redis-server)\n"
            "  --no-redis         skip the Redis backend\n"
            "  --rounds N         hitpath, standalone: rounds of every side (default 3)\n");
}

static const char *default_exe(char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 32);
    if (n > 0) {
        buf[n] = 0;
        char *slash = strrchr(buf, '/');
        if (slash) {
            strcpy(slash + 1, "gpx_cachingproxy");
            if (access(buf, X_OK) == 0)
                return buf;
        }
    }
    return "build/gpx_cachingproxy";
}

static double loadavg1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

int main(int argc, char **argv)
{
    char exe_buf[4096];
    struct bench_ctx c;
    memset(&c, 0, sizeof c);
    c.o.duration_s = 2.0;
    c.o.warmup_s = 0.5;
    c.o.redis_bin = "/usr/bin/redis-server";
    c.o.exe = NULL;
    c.o.rounds = 3;
    const char *cmd = NULL;
    int dur_set = 0, warm_set = 0;
    if (argc == 3 && !strcmp(argv[1], "__bare-server"))
        return run_hidden_bare(argv[2]);
    if (argc >= 2 && bench_is_mode(argv[1]))
        return bench_modes_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--duration") && i + 1 < argc) {
            c.o.duration_s = atof(argv[++i]);
            dur_set = 1;
        } else if (!strcmp(a, "--warmup") && i + 1 < argc) {
            c.o.warmup_s = atof(argv[++i]);
            warm_set = 1;
        } else if (!strcmp(a, "--quick")) {
            c.o.quick = 1;
        } else if (!strcmp(a, "--json")) {
            c.o.json = 1;
        } else if (!strcmp(a, "--plugin") && i + 1 < argc) {
            c.o.exe = argv[++i];
        } else if (!strcmp(a, "--redis-server") && i + 1 < argc) {
            c.o.redis_bin = argv[++i];
        } else if (!strcmp(a, "--no-redis")) {
            c.o.no_redis = 1;
        } else if (!strcmp(a, "--rounds") && i + 1 < argc) {
            c.o.rounds = atoi(argv[++i]);
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!cmd && a[0] != '-') {
            cmd = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (c.o.quick) {
        if (!dur_set)
            c.o.duration_s = 0.6;
        if (!warm_set)
            c.o.warmup_s = 0.15;
    }
    int do_over = 0, do_cache = 0, do_query = 0, do_sim = 0, do_hit = 0, do_sa = 0;
    if (cmd && !strcmp(cmd, "upstream"))
        do_sim = 1;
    else if (cmd && !strcmp(cmd, "hitpath"))
        do_hit = 1;
    else if (cmd && !strcmp(cmd, "standalone"))
        do_sa = 1;
    else if (cmd && !strcmp(cmd, "overhead"))
        do_over = 1;
    else if (cmd && !strcmp(cmd, "cache"))
        do_cache = 1;
    else if (cmd && !strcmp(cmd, "query"))
        do_query = 1;
    else if (cmd && !strcmp(cmd, "all"))
        do_over = do_cache = do_query = 1;
    if (!do_over && !do_cache && !do_query && !do_sim && !do_hit && !do_sa) {
        usage(stderr);
        return 2;
    }
    if (c.o.duration_s <= 0 || c.o.duration_s > 3600 || c.o.warmup_s < 0 || c.o.warmup_s > 600 ||
        c.o.rounds < 1 || c.o.rounds > 20) {
        fprintf(stderr, "bench: --duration must be in (0, 3600], --warmup in [0, 600] and "
                        "--rounds in [1, 20]\n");
        return 2;
    }
    if (!c.o.exe)
        c.o.exe = default_exe(exe_buf, sizeof exe_buf);

    /* signals: blocked before any thread exists (gRPC's and curl's inherit it) */
    if (bench_signals_start(0) != 0) {
        fprintf(stderr, "bench: cannot start the signal thread\n");
        return 1;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    cp_absl_deadlock_detection_off(); /* as the plugin does, so both sides compare alike */
    grpc_init();
    c.updated_ms = cp_now_ms();
    atomic_store(&c.seq, 1);
    c.scenarios = json_object();
    double load0 = loadavg1();

    struct cp_err err = {0};
    int rc = bench_sim_start(&c.sim, c.sim_url, sizeof c.sim_url, &err);
    if (rc) {
        fail_msg("upstream simulator", &err);
    } else if (do_sim) {
        rc = serve_upstream(&c);
    } else {
        if (!c.o.json)
            printf("cachingproxy-bench %s: plugin %s, upstream %s, %.2f s per cell after %.2f s "
                   "warm-up, load avg %.2f on %ld cores (shared box: figures are noisy)\n",
                   CP_VERSION, c.o.exe, c.sim_url, c.o.duration_s, c.o.warmup_s, load0,
                   sysconf(_SC_NPROCESSORS_ONLN));
        int64_t t0 = cp_mono_ns();
        if (!rc && do_over)
            rc = scen_overhead(&c);
        if (!rc && do_cache)
            rc = scen_cache(&c);
        if (!rc && do_query)
            rc = scen_query(&c);
        if (!rc && do_hit)
            rc = scen_hitpath(&c);
        if (!rc && do_sa)
            rc = bench_peers_run(c.o.exe, c.sim, c.sim_url, c.o.duration_s, c.o.rounds,
                                 c.scenarios, c.o.json ? NULL : stdout);
        double total = (double)(cp_mono_ns() - t0) / 1e9;
        if (!rc && c.o.json) {
            json_t *doc =
                json_pack("{s:s,s:s,s:{s:f,s:f,s:b},s:{s:i,s:f,s:f},s:o,s:f}", "bench",
                          "cachingproxy-bench", "version", CP_VERSION, "settings", "duration_s",
                          c.o.duration_s, "warmup_s", c.o.warmup_s, "quick", c.o.quick, "host",
                          "cores", (int)sysconf(_SC_NPROCESSORS_ONLN), "loadavg_start", load0,
                          "loadavg_end", loadavg1(), "scenarios", c.scenarios, "total_s", total);
            c.scenarios = NULL;
            bench_json_print(doc, stdout);
            json_decref(doc);
        } else if (!rc) {
            printf("\ntotal %.1f s; load avg at the end %.2f\n", total, loadavg1());
        }
    }
    bench_sim_stop(c.sim);
    json_decref(c.scenarios);
    grpc_shutdown();
    curl_global_cleanup();
    bench_cleanup_done();
    if (atomic_load(&bench_interrupted))
        return 130;
    return rc ? 1 : 0;
}
