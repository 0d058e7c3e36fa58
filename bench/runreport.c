/*
 * runreport.c - what a run or a what-if gives, as the bench's JSON document, and the text
 * tables drawn from that document (the HTML page draws from it too, so the three agree).
 *
 * The document's schema is stable and documented in the README (schema 1): fields are only
 * added. Ratios are in [0, 1], times in seconds unless the name says Ms, sizes in MiB where the
 * name says so.
 */
#include "bench_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double round_to(double v, double unit)
{
    return round(v / unit) * unit;
}

static json_t *jreal(double v, double unit)
{
    return json_real(round_to(v, unit));
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

json_t *bench_doc_new(const char *command)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_pack("{s:i,s:s,s:s,s:s,s:s,s:{s:i,s:f},s:b,s:[],s:[]}", "schema", 1, "tool",
                     "cachingproxy-bench", "version", CP_VERSION, "command", command, "startedAt",
                     when, "host", "cores", (int)sysconf(_SC_NPROCESSORS_ONLN), "loadavgStart",
                     round_to(loadavg1(), 0.01), "interrupted", 0, "runs", "notes");
}

void bench_doc_finish(json_t *doc)
{
    json_t *host = json_object_get(doc, "host");
    json_object_set_new(host, "loadavgEnd", jreal(loadavg1(), 0.01));
    if (atomic_load(&bench_interrupted))
        json_object_set_new(doc, "interrupted", json_true());
}

void bench_doc_note(json_t *doc, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(json_object_get(doc, "notes"), json_string(buf));
}

static json_t *counts_json(const struct bench_counts *c)
{
    json_t *by = json_object();
    for (int i = 0; i < BENCH_CACHE_N; i++)
        json_object_set_new(by, bench_cache_name((enum bench_cache)i),
                            json_integer((json_int_t)c->by_cache[i]));
    return by;
}

static uint64_t hits_of(const struct bench_counts *c)
{
    return c->by_cache[BENCH_CACHE_HIT] + c->by_cache[BENCH_CACHE_STALE];
}

static json_t *delta(const struct bench_target_stats *a, const struct bench_target_stats *b,
                     uint64_t field_b, uint64_t field_a)
{
    if (!a->valid || !b->valid)
        return json_null();
    return json_integer((json_int_t)(field_b - field_a));
}

static json_t *mib(long kib)
{
    return kib >= 0 ? jreal((double)kib / 1024.0, 0.01) : json_null();
}

/* A split query's pieces as its answers counted them. */
static json_t *pieces_json(const struct bench_counts *c)
{
    return json_pack("{s:I,s:I}", "hit", (json_int_t)c->pieces_hit, "fetched",
                     (json_int_t)c->pieces_fetched);
}

json_t *bench_run_json(const struct bench_run_info *info, const struct bench_workload *w,
                       const struct bench_run_result *r)
{
    json_t *j = json_object();
    json_object_set_new(j, "label", json_string(info->label));
    json_object_set_new(j, "group", json_string(info->group ? info->group : info->mode));
    json_object_set_new(j, "mode", json_string(info->mode));
    json_object_set_new(j, "backend", json_string(info->backend));
    json_error_t je;
    json_t *jd = info->json_data ? json_loads(info->json_data, 0, &je) : NULL;
    json_object_set_new(j, "jsonData", jd ? jd : json_null());

    json_t *wl = json_object();
    json_object_set_new(wl, "kind",
                        json_string(w->kind == BENCH_KIND_QUERY ? "query" : "resource"));
    if (w->trace) {
        json_object_set_new(wl, "replay", json_string(info->trace_name ? info->trace_name : ""));
        json_object_set_new(wl, "speed", json_real(w->speed));
        json_object_set_new(wl, "traceRequests", json_integer((json_int_t)w->trace->n));
    } else {
        json_object_set_new(wl, "users", json_integer(w->users));
        json_object_set_new(wl, "keys", json_integer((json_int_t)w->keys));
        json_object_set_new(wl, "zipf", json_real(w->zipf_s));
    }
    json_object_set_new(wl, "loop",
                        json_string(w->rate > 0 || (w->trace && w->speed > 0) ? "open" : "closed"));
    json_object_set_new(wl, "concurrency", json_integer(w->concurrency));
    json_object_set_new(wl, "rate", json_real(w->rate));
    json_object_set_new(wl, "durationS", json_real(w->duration_s));
    json_object_set_new(wl, "requests", json_integer((json_int_t)w->requests));
    json_object_set_new(wl, "warmupS", json_real(w->warmup_s));
    json_object_set_new(wl, "seed", json_integer((json_int_t)w->seed));
    if (w->kind == BENCH_KIND_QUERY || w->trace) {
        json_object_set_new(wl, "rangeS",
                            json_real((double)(w->range_ms > 0 ? w->range_ms : 3600000) / 1000));
        json_object_set_new(wl, "clock",
                            json_string(w->trace && w->trace_clock ? "trace" : "wall"));
    }
    json_object_set_new(j, "workload", wl);

    const struct bench_upstream_profile *p = info->profile;
    char payload[64];
    if (p->payload_lo == p->payload_hi)
        snprintf(payload, sizeof payload, "%llu", (unsigned long long)p->payload_lo);
    else
        snprintf(payload, sizeof payload, "%llu..%llu", (unsigned long long)p->payload_lo,
                 (unsigned long long)p->payload_hi);
    json_object_set_new(
        j, "upstream",
        json_pack("{s:s,s:s,s:f,s:s,s:I,s:I,s:b,s:o}", "latency", p->latency.text, "payloadBytes",
                  payload, "errorRate", p->error_rate, "cacheControl", p->cache_control,
                  "queryRows", (json_int_t)p->query_rows, "queryStepMs",
                  (json_int_t)p->query_step_ms, "validators", p->validators, "changeEveryS",
                  p->validators && p->change_ms > 0 ? json_real((double)p->change_ms / 1000)
                                                    : json_null()));

    /* the measured window */
    const struct bench_counts *m = &r->meas;
    uint64_t hits = hits_of(m);
    uint64_t up = r->sim1.work_requests - r->sim_meas0.work_requests;
    json_object_set_new(j, "interrupted", json_boolean(r->interrupted));
    json_object_set_new(j, "seconds", jreal(r->meas_s, 0.001));
    json_object_set_new(j, "requests", json_integer((json_int_t)m->requests));
    json_object_set_new(j, "hits", json_integer((json_int_t)hits));
    json_object_set_new(j, "misses", json_integer((json_int_t)(m->requests - hits)));
    json_object_set_new(j, "hitRatio",
                        jreal(m->requests ? (double)hits / (double)m->requests : 0, 1e-6));
    json_object_set_new(j, "byCache", counts_json(m));
    json_object_set_new(j, "errors", json_integer((json_int_t)m->errors));
    json_object_set_new(j, "failed", json_integer((json_int_t)m->failed));
    json_object_set_new(j, "upstreamCalls", json_integer((json_int_t)up));
    json_object_set_new(j, "upstreamSavedShare",
                        jreal(m->requests ? 1.0 - (double)up / (double)m->requests : 0, 1e-6));
    uint64_t nm = r->sim1.work_not_modified - r->sim_meas0.work_not_modified;
    json_object_set_new(j, "upstreamBytes",
                        json_integer((json_int_t)(r->sim1.work_bytes - r->sim_meas0.work_bytes)));
    json_object_set_new(j, "upstreamNotModified", json_integer((json_int_t)nm));
    json_object_set_new(j, "upstreamNotModifiedShare",
                        jreal(up ? (double)nm / (double)up : 0, 1e-6));
    json_object_set_new(j, "pieces", pieces_json(m));
    json_object_set_new(j, "coalesced",
                        delta(&r->tgt_meas0, &r->tgt1, r->tgt1.coalesced, r->tgt_meas0.coalesced));
    struct bench_stats st;
    memset(&st, 0, sizeof st);
    bench_stats_fill(&st, r->lat_ns, r->nlat); /* already sorted: the sort changes nothing */
    json_object_set_new(j, "latencyMs",
                        json_pack("{s:o,s:o,s:o,s:o,s:o}", "p50", jreal(st.p50_ms, 1e-4), "p95",
                                  jreal(st.p95_ms, 1e-4), "p99", jreal(st.p99_ms, 1e-4), "max",
                                  jreal(st.max_ms, 1e-4), "mean", jreal(st.mean_ms, 1e-4)));
    json_object_set_new(j, "throughput",
                        jreal(r->meas_s > 0 ? (double)m->requests / r->meas_s : 0, 0.1));
    json_object_set_new(j, "bytes", json_integer((json_int_t)m->bytes));
    json_object_set_new(
        j, "pluginRssMiB",
        json_pack("{s:o,s:o}", "end", mib(r->rss_end_kib), "max", mib(r->rss_max_kib)));
    json_object_set_new(j, "cleanExit", json_boolean(info->clean_exit));
    if (r->first_error[0])
        json_object_set_new(j, "firstError", json_string(r->first_error));

    /* warm-up and the whole run, for exact bookkeeping */
    const struct bench_counts *wc = &r->warm;
    json_object_set_new(j, "warmup",
                        json_pack("{s:I,s:I,s:I,s:I}", "requests", (json_int_t)wc->requests, "hits",
                                  (json_int_t)hits_of(wc), "upstreamCalls",
                                  (json_int_t)(r->sim_meas0.work_requests - r->sim0.work_requests),
                                  "upstreamBytes",
                                  (json_int_t)(r->sim_meas0.work_bytes - r->sim0.work_bytes)));
    struct bench_counts all = *m;
    all.requests += wc->requests;
    for (int i = 0; i < BENCH_CACHE_N; i++)
        all.by_cache[i] += wc->by_cache[i];
    all.errors += wc->errors;
    all.failed += wc->failed;
    all.pieces_hit += wc->pieces_hit;
    all.pieces_fetched += wc->pieces_fetched;
    json_t *plugin = json_null();
    if (r->tgt0.valid && r->tgt1.valid)
        plugin = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "hits", (json_int_t)(r->tgt1.hits - r->tgt0.hits),
            "misses", (json_int_t)(r->tgt1.misses - r->tgt0.misses), "stale",
            (json_int_t)(r->tgt1.stale - r->tgt0.stale), "bypass",
            (json_int_t)(r->tgt1.bypass - r->tgt0.bypass), "coalesced",
            (json_int_t)(r->tgt1.coalesced - r->tgt0.coalesced), "upstreamRequests",
            (json_int_t)(r->tgt1.upstream - r->tgt0.upstream), "errors",
            (json_int_t)(r->tgt1.errors - r->tgt0.errors), "entries", (json_int_t)r->tgt1.entries);
    if (json_is_object(plugin)) {
        json_object_set_new(plugin, "revalidated",
                            json_integer((json_int_t)(r->tgt1.revalidated - r->tgt0.revalidated)));
        json_object_set_new(plugin, "piecesHit",
                            json_integer((json_int_t)(r->tgt1.pieces_hit - r->tgt0.pieces_hit)));
        json_object_set_new(
            plugin, "piecesFetched",
            json_integer((json_int_t)(r->tgt1.pieces_fetched - r->tgt0.pieces_fetched)));
    }
    json_object_set_new(
        j, "total",
        json_pack("{s:f,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I,s:o}", "seconds",
                  round_to(r->total_s, 0.001), "requests", (json_int_t)all.requests, "hits",
                  (json_int_t)hits_of(&all), "misses", (json_int_t)(all.requests - hits_of(&all)),
                  "byCache", counts_json(&all), "errors", (json_int_t)all.errors, "failed",
                  (json_int_t)all.failed, "upstreamCalls",
                  (json_int_t)(r->sim1.work_requests - r->sim0.work_requests), "upstreamErrors",
                  (json_int_t)(r->sim1.work_errors - r->sim0.work_errors), "plugin", plugin));
    json_t *tot = json_object_get(j, "total");
    json_object_set_new(tot, "upstreamBytes",
                        json_integer((json_int_t)(r->sim1.work_bytes - r->sim0.work_bytes)));
    json_object_set_new(
        tot, "upstreamNotModified",
        json_integer((json_int_t)(r->sim1.work_not_modified - r->sim0.work_not_modified)));
    json_object_set_new(
        tot, "upstreamConditional",
        json_integer((json_int_t)(r->sim1.work_conditional - r->sim0.work_conditional)));
    json_object_set_new(tot, "pieces", pieces_json(&all));

    json_t *tl = json_array();
    for (size_t i = 0; i < r->nticks; i++) {
        const struct bench_tick *t = &r->ticks[i];
        json_array_append_new(
            tl, json_pack(
                    "{s:o,s:I,s:I,s:o,s:I,s:I,s:o,s:b,s:I}", "t", jreal(t->t, 0.001), "requests",
                    (json_int_t)t->requests, "hits", (json_int_t)t->hits, "hitRatio",
                    t->requests ? jreal((double)t->hits / (double)t->requests, 1e-4) : json_null(),
                    "upstreamCalls", (json_int_t)t->upstream, "errors", (json_int_t)t->errors,
                    "rssMiB", mib(t->rss_kib), "warmup", t->warmup, "upstreamBytes",
                    (json_int_t)t->upstream_bytes));
    }
    json_object_set_new(j, "timeline", tl);

    uint64_t counts[BENCH_HIST_BUCKETS];
    bench_hist_fill(r->lat_ns, r->nlat, counts);
    json_t *bounds = json_array(), *cs = json_array();
    const double *b = bench_hist_bounds_ms();
    for (int i = 0; i < BENCH_HIST_BUCKETS; i++) {
        json_array_append_new(bounds, json_real(b[i]));
        json_array_append_new(cs, json_integer((json_int_t)counts[i]));
    }
    json_object_set_new(j, "latencyHistogram",
                        json_pack("{s:o,s:o}", "boundsMs", bounds, "counts", cs));
    return j;
}

/* ---- text -------------------------------------------------------------------------------------
 */

static double num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static void fmt_pct(char *out, size_t n, double ratio)
{
    snprintf(out, n, "%.1f %%", ratio * 100);
}

/* One table for the runs of one group (backends, timeAlign, ...). */
static void group_print(json_t *runs, const char *group, FILE *f)
{
    static const char *const cols[] = {"run",    "requests",  "hit ratio", "upstream",
                                       "saved",  "coalesced", "p50 ms",    "p95 ms",
                                       "p99 ms", "max ms",    "req/s",     "RSS MiB"};
    char title[128];
    snprintf(title, sizeof title, "%s: measured window, after the warm-up", group);
    struct bench_table *t = bench_table_new(title, cols, sizeof cols / sizeof cols[0]);
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "group")), group))
            continue;
        char c[12][40];
        json_t *lat = json_object_get(r, "latencyMs");
        json_t *rss = json_object_get(r, "pluginRssMiB");
        json_t *co = json_object_get(r, "coalesced");
        snprintf(c[0], 40, "%s%s", json_string_value(json_object_get(r, "label")),
                 json_is_true(json_object_get(r, "interrupted")) ? " (partial)" : "");
        snprintf(c[1], 40, "%.0f", num(r, "requests"));
        fmt_pct(c[2], 40, num(r, "hitRatio"));
        snprintf(c[3], 40, "%.0f", num(r, "upstreamCalls"));
        fmt_pct(c[4], 40, num(r, "upstreamSavedShare"));
        if (json_is_integer(co))
            snprintf(c[5], 40, "%lld", (long long)json_integer_value(co));
        else
            snprintf(c[5], 40, "-");
        bench_fmt_ms(c[6], 40, num(lat, "p50"));
        bench_fmt_ms(c[7], 40, num(lat, "p95"));
        bench_fmt_ms(c[8], 40, num(lat, "p99"));
        bench_fmt_ms(c[9], 40, num(lat, "max"));
        bench_fmt_rate(c[10], 40, num(r, "throughput"));
        if (json_is_number(json_object_get(rss, "max")))
            snprintf(c[11], 40, "%.1f", num(rss, "max"));
        else
            snprintf(c[11], 40, "-");
        const char *row[12];
        for (int k = 0; k < 12; k++)
            row[k] = c[k];
        bench_table_row(t, row);
        double errs = num(r, "errors"), failed = num(r, "failed");
        json_t *first = json_object_get(r, "firstError");
        if (errs || failed)
            bench_table_note(t, "%s: %.0f error answers, %.0f calls without an answer%s%s",
                             json_string_value(json_object_get(r, "label")), errs, failed,
                             json_is_string(first) ? "; first: " : "",
                             json_is_string(first) ? json_string_value(first) : "");
        if (!json_is_true(json_object_get(r, "cleanExit")))
            bench_table_note(t, "%s: the plugin did not exit cleanly",
                             json_string_value(json_object_get(r, "label")));
    }
    bench_table_note(t, "hit ratio = answers from the cache (HIT, STALE) / requests; upstream = "
                        "calls the upstream simulator received; saved = 1 - upstream / requests; "
                        "coalesced = requests that waited for another's identical upstream call "
                        "(the plugin's count)");
    bench_table_print(t, f);
    bench_table_free(t);
}

static const char *label_of(json_t *r)
{
    const char *l = json_string_value(json_object_get(r, "label"));
    return l ? l : "";
}

static int in_group(json_t *r, const char *group)
{
    const char *g = json_string_value(json_object_get(r, "group"));
    return g && !strcmp(g, group);
}

int bench_doc_compare(json_t *doc, const char *group, const char *baseline)
{
    json_t *runs = json_object_get(doc, "runs"), *r, *base = NULL;
    size_t i;
    json_array_foreach(runs, i, r)
    {
        if (in_group(r, group) && !strcmp(label_of(r), baseline))
            base = r;
    }
    if (!base)
        return CP_EINVAL;
    double calls = num(base, "upstreamCalls"), bytes = num(base, "upstreamBytes");
    json_array_foreach(runs, i, r)
    {
        if (!in_group(r, group))
            continue;
        json_object_set_new(
            r, "compare",
            json_pack("{s:s,s:o,s:o}", "baseline", baseline, "upstreamCallsRatio",
                      calls > 0 ? jreal(num(r, "upstreamCalls") / calls, 1e-4) : json_null(),
                      "upstreamBytesRatio",
                      bytes > 0 ? jreal(num(r, "upstreamBytes") / bytes, 1e-4) : json_null()));
    }
    return 0;
}

static void fmt_ratio(char *out, size_t n, json_t *v)
{
    if (json_is_number(v))
        snprintf(out, n, "%.3f", json_number_value(v));
    else
        snprintf(out, n, "-");
}

/* The upstream load of a group whose runs are compared with a baseline (split, revalidation). */
static void compare_print(json_t *runs, const char *group, FILE *f)
{
    static const char *const cols[] = {
        "run",           "requests",     "hit ratio",     "upstream calls",
        "calls vs base", "upstream MiB", "bytes vs base", "304 share",
        "pieces cached", "p50 ms",       "p99 ms"};
    enum { NC = sizeof cols / sizeof cols[0] };
    char title[160];
    const char *base = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        if (in_group(r, group) && !base)
            base = json_string_value(json_object_get(json_object_get(r, "compare"), "baseline"));
    }
    snprintf(title, sizeof title, "%s: upstream load against \"%s\" (measured window)", group,
             base ? base : "?");
    struct bench_table *t = bench_table_new(title, cols, NC);
    json_array_foreach(runs, i, r)
    {
        if (!in_group(r, group))
            continue;
        char c[NC][40];
        json_t *lat = json_object_get(r, "latencyMs"), *cmp = json_object_get(r, "compare");
        json_t *pieces = json_object_get(r, "pieces");
        double ph = num(pieces, "hit"), pf = num(pieces, "fetched");
        snprintf(c[0], 40, "%s", label_of(r));
        snprintf(c[1], 40, "%.0f", num(r, "requests"));
        fmt_pct(c[2], 40, num(r, "hitRatio"));
        snprintf(c[3], 40, "%.0f", num(r, "upstreamCalls"));
        fmt_ratio(c[4], 40, json_object_get(cmp, "upstreamCallsRatio"));
        snprintf(c[5], 40, "%.2f", num(r, "upstreamBytes") / 1048576.0);
        fmt_ratio(c[6], 40, json_object_get(cmp, "upstreamBytesRatio"));
        fmt_pct(c[7], 40, num(r, "upstreamNotModifiedShare"));
        if (ph + pf > 0)
            fmt_pct(c[8], 40, ph / (ph + pf));
        else
            snprintf(c[8], 40, "-");
        bench_fmt_ms(c[9], 40, num(lat, "p50"));
        bench_fmt_ms(c[10], 40, num(lat, "p99"));
        const char *row[NC];
        for (int k = 0; k < NC; k++)
            row[k] = c[k];
        bench_table_row(t, row);
    }
    bench_table_note(t, "upstream MiB = body bytes the simulator sent; vs base = this run / the "
                        "baseline run; 304 share = upstream answers that were 304 Not Modified; "
                        "pieces cached = pieces of split queries that came from the cache, as the "
                        "answers' meta.custom.cachePieces say");
    bench_table_print(t, f);
    bench_table_free(t);
}

void bench_runs_print(json_t *doc, FILE *f)
{
    json_t *runs = json_object_get(doc, "runs");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        const char *g = json_string_value(json_object_get(r, "group"));
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(g, json_string_value(json_object_get(json_array_get(runs, k), "group")));
        if (seen)
            continue;
        group_print(runs, g, f);
        if (json_object_get(r, "compare"))
            compare_print(runs, g, f);
    }
    json_t *sim = json_object_get(doc, "sim");
    if (sim) {
        json_t *out = json_object_get(sim, "output");
        char title[256];
        snprintf(title, sizeof title,
                 "what-if: %s, %lld requests, %lld distinct keys, scope %s, ttl %gs; hit ratio "
                 "by cache size (entries)",
                 json_string_value(json_object_get(sim, "trace")),
                 (long long)json_integer_value(json_object_get(out, "requests")),
                 (long long)json_integer_value(json_object_get(sim, "distinctKeys")),
                 json_string_value(json_object_get(sim, "scope")),
                 json_number_value(json_object_get(sim, "ttl")));
        bench_whatif_print(out, title, f);
    }
    bench_core_print(doc, f);
    json_t *notes = json_object_get(doc, "notes");
    json_t *n;
    json_array_foreach(notes, i, n) fprintf(f, "note: %s\n", json_string_value(n));
    if (json_is_true(json_object_get(doc, "interrupted")))
        fprintf(f, "note: interrupted (Ctrl-C): the figures cover the part that ran\n");
}

void bench_whatif_print(json_t *out, const char *title, FILE *f)
{
    static const char *const cols[] = {"size", "ours", "lru", "opt", "ours - lru", "opt - ours"};
    struct bench_table *t = bench_table_new(title, cols, 6);
    json_t *res = json_object_get(out, "results");
    for (size_t i = 0; i + 2 < json_array_size(res); i += 3) {
        double h[3];
        for (int k = 0; k < 3; k++)
            h[k] = num(json_array_get(res, i + (size_t)k), "hitRatio");
        char c[6][32];
        snprintf(c[0], 32, "%lld",
                 (long long)json_integer_value(json_object_get(json_array_get(res, i), "size")));
        for (int k = 0; k < 3; k++)
            fmt_pct(c[1 + k], 32, h[k]);
        snprintf(c[4], 32, "%+.1f pt", (h[0] - h[1]) * 100);
        snprintf(c[5], 32, "%+.1f pt", (h[2] - h[0]) * 100);
        const char *row[6] = {c[0], c[1], c[2], c[3], c[4], c[5]};
        bench_table_row(t, row);
    }
    bench_table_note(t, "ours = the memory backend's W-TinyLFU (cache/evict.c) counted in entries; "
                        "lru = exact LRU; opt = Belady with bypass (the optimum without a TTL)");
    bench_table_print(t, f);
    bench_table_free(t);
}

int bench_doc_write(json_t *doc, const char *path, struct cp_err *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f)
        return cp_err_set(err, CP_EINVAL, "%s: %s", path, strerror(errno));
    bench_json_print(doc, f);
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        fflush(f);
    return bad ? cp_err_set(err, CP_EINVAL, "%s: write failed", path) : 0;
}
