/*
 * modes.c - the command line of cachingproxy-bench's newer modes and the presets:
 *
 *   sim     what-if hit ratios of a CSV trace for several cache sizes (ours, lru, opt)
 *   trace   writes a synthetic trace in the CSV form sim and replays read
 *   grpc    a workload (synthetic or a trace replayed with its timing) against the plugin
 *           launched as Grafana launches it, with the built-in upstream simulator
 *   http    the same against the standalone server (gpx_cachingproxy serve) over HTTP
 *   preset  backends | policies | timealign | split | revalidation | all: common questions in
 *           one command; core: the event-driven core's figures (bursts of slow calls,
 *           forwarding and hits against a bare gRPC round trip; core.c)
 *   report  text and HTML from a JSON document written before
 *
 * Every run gets a fresh plugin process and its own data source; a Redis backend uses the
 * redis-server this process starts on a free loopback port, or the one given. Results are one
 * JSON document (runreport.c), printed as text tables and optionally written as JSON and as
 * an HTML page. Ctrl-C ends the current run, skips the rest and still writes the reports.
 */
#include "bench_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130

static const char *const mode_names[] = {"sim", "trace", "grpc", "http", "preset", "report", NULL};

int bench_is_mode(const char *name)
{
    for (size_t i = 0; mode_names[i]; i++)
        if (!strcmp(name, mode_names[i]))
            return 1;
    return 0;
}

/* ---- options ----------------------------------------------------------------------------------
 */

/* The data source a run uses. Negative durations: the plugin's default. */
struct ds_cfg {
    const char *backend;
    int64_t ttl_ms, time_align_ms;
    const char *scope;
    int64_t memory_max;
    const char *redis_url;  /* NULL: --redis-url, or the redis-server started here */
    int tls_skip_verify;    /* redisTlsSkipVerify */
    const char *const *env; /* extra environment of the plugin, or NULL */
};

/* Settings only some presets change (split, revalidation); zeros: the plugin's defaults. */
enum ds_flag { DS_DEFAULT, DS_ON, DS_OFF };
struct ds_more {
    int64_t query_split_ms, split_stable_after_ms, query_split_ttl_ms;
    enum ds_flag revalidate;
};

struct opts {
    const char *mode; /* the driver: grpc or http */
    const char *exe, *redis_bin, *redis_url;
    const char *json_out, *html_out;
    struct bench_web web;
    int progress, quick;
    struct ds_cfg ds;
    struct bench_upstream_profile profile;
    struct bench_workload w;
    const char *replay;
    const char *before; /* preset core: an older plugin executable to run beside */
    /* sim and trace */
    const char *trace, *sizes, *out;
    int64_t ttl_ms;
    int scope_user, ttl_set, duration_set;
    double scan, trace_rate;
    int64_t start_s;
};

static int usage_error(const char *mode, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *mode, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cachingproxy-bench %s: ", mode);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see cachingproxy-bench %s --help)\n", mode);
    return EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

static const char *self_dir_exe(char *buf, size_t size)
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

static void opts_init(struct opts *o)
{
    static char exe_buf[4096];
    memset(o, 0, sizeof *o);
    o->exe = self_dir_exe(exe_buf, sizeof exe_buf);
    o->mode = "grpc";
    o->redis_bin = "/usr/bin/redis-server";
    o->progress = isatty(2);
    o->ds = (struct ds_cfg){"memory", -1, -1, NULL, 0};
    bench_upstream_profile_init(&o->profile);
    o->w.kind = BENCH_KIND_RESOURCE;
    o->w.users = 100;
    o->w.keys = 1000;
    o->w.zipf_s = 1.0;
    o->w.concurrency = 8;
    o->w.duration_s = 10;
    o->w.warmup_s = 1;
    o->w.seed = 1;
    o->w.speed = 1;
    o->scope_user = 0;
    o->trace_rate = 50;
    o->start_s = 1700000000;
}

static int duration_arg(const char *mode, const char *flag, const char *v, int64_t *ms)
{
    if (cfg_duration_parse(v, ms) != 0)
        return usage_error(mode, "%s: \"%s\" is not a duration (500ms, 10s, 5m)", flag, v);
    return 0;
}

/* One option shared by the modes that drive a target; 1 consumed, 0 unknown, EXIT_USAGE bad. */
static int common_opt(const char *mode, struct opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    struct cp_err err = {0};
    uint64_t u;
    double d;
    int64_t ms;
#define NEED_VALUE                                                                                 \
    do {                                                                                           \
        if (!v)                                                                                    \
            return usage_error(mode, "%s needs a value", a);                                       \
        (*i)++;                                                                                    \
    } while (0)
    if (!strcmp(a, "--progress")) {
        o->progress = 1;
        return 1;
    }
    if (!strcmp(a, "--no-progress")) {
        o->progress = 0;
        return 1;
    }
    if (!strcmp(a, "--quick")) {
        o->quick = 1;
        return 1;
    }
    if (!strcmp(a, "--plugin")) {
        NEED_VALUE;
        o->exe = v;
    } else if (!strcmp(a, "--mode")) {
        NEED_VALUE;
        if (!bench_driver_find(v))
            return usage_error(mode, "--mode must be grpc or http");
        o->mode = v;
    } else if (!strcmp(a, "--redis-server")) {
        NEED_VALUE;
        o->redis_bin = v;
    } else if (!strcmp(a, "--redis-url")) {
        NEED_VALUE;
        o->redis_url = v;
    } else if (!strcmp(a, "--json")) {
        NEED_VALUE;
        o->json_out = v;
    } else if (!strcmp(a, "--html")) {
        NEED_VALUE;
        o->html_out = v;
    } else if (!strcmp(a, "--web-dir")) {
        NEED_VALUE;
        o->web.dir = v;
    } else if (!strcmp(a, "--chartjs")) {
        NEED_VALUE;
        o->web.chartjs = v;
    } else if (!strcmp(a, "--seed")) {
        NEED_VALUE;
        if (parse_u64(v, 0, UINT64_MAX, &u))
            return usage_error(mode, "--seed: \"%s\" is not a number", v);
        o->w.seed = u;
        o->profile.seed = u;
    } else if (!strcmp(a, "--backend")) {
        NEED_VALUE;
        if (strcmp(v, "memory") && strcmp(v, "redis") && strcmp(v, "off"))
            return usage_error(mode, "--backend must be memory, redis or off");
        o->ds.backend = v;
    } else if (!strcmp(a, "--ttl")) {
        NEED_VALUE;
        if (duration_arg(mode, a, v, &ms))
            return EXIT_USAGE;
        o->ds.ttl_ms = o->ttl_ms = ms;
        o->ttl_set = 1;
    } else if (!strcmp(a, "--time-align")) {
        NEED_VALUE;
        if (duration_arg(mode, a, v, &o->ds.time_align_ms))
            return EXIT_USAGE;
    } else if (!strcmp(a, "--scope")) {
        NEED_VALUE;
        if (strcmp(v, "shared") && strcmp(v, "org") && strcmp(v, "user"))
            return usage_error(mode, "--scope must be shared, org or user");
        o->ds.scope = v;
        o->scope_user = !strcmp(v, "user");
    } else if (!strcmp(a, "--memory-max-bytes")) {
        NEED_VALUE;
        if (cfg_size_parse(v, &o->ds.memory_max) || o->ds.memory_max <= 0)
            return usage_error(mode, "--memory-max-bytes: \"%s\" is not a size (64MiB)", v);
    } else if (!strcmp(a, "--latency")) {
        NEED_VALUE;
        if (bench_latency_parse(v, &o->profile.latency, &err))
            return usage_error(mode, "--latency: %s", cp_err_text(&err));
    } else if (!strcmp(a, "--payload")) {
        NEED_VALUE;
        if (bench_size_parse(v, &o->profile.payload_lo, &o->profile.payload_hi, &err))
            return usage_error(mode, "--payload: %s", cp_err_text(&err));
    } else if (!strcmp(a, "--error-rate")) {
        NEED_VALUE;
        if (parse_double(v, 0, 1, &o->profile.error_rate))
            return usage_error(mode, "--error-rate must be a share between 0 and 1");
    } else if (!strcmp(a, "--cache-control")) {
        NEED_VALUE;
        if (strlen(v) >= sizeof o->profile.cache_control || strpbrk(v, "\r\n"))
            return usage_error(mode, "--cache-control: one header value, under 128 bytes");
        snprintf(o->profile.cache_control, sizeof o->profile.cache_control, "%s", v);
    } else if (!strcmp(a, "--query-rows")) {
        NEED_VALUE;
        if (parse_u64(v, 0, 100000, &u))
            return usage_error(mode, "--query-rows must be 0..100000");
        o->profile.query_rows = (long)u;
    } else if (!strcmp(a, "--query-step")) {
        NEED_VALUE;
        if (duration_arg(mode, a, v, &ms))
            return EXIT_USAGE;
        if (ms < 1)
            return usage_error(mode, "--query-step must be at least 1ms");
        o->profile.query_step_ms = ms;
    } else if (!strcmp(a, "--validators")) {
        o->profile.validators = 1;
        return 1;
    } else if (!strcmp(a, "--change-every")) {
        NEED_VALUE;
        if (duration_arg(mode, a, v, &ms))
            return EXIT_USAGE;
        if (ms < 1000)
            return usage_error(mode, "--change-every must be at least 1s (Last-Modified counts "
                                     "whole seconds)");
        o->profile.validators = 1;
        o->profile.change_ms = ms;
    } else if (!strcmp(a, "--kind")) {
        NEED_VALUE;
        if (strcmp(v, "resource") && strcmp(v, "query"))
            return usage_error(mode, "--kind must be resource or query");
        o->w.kind = !strcmp(v, "query") ? BENCH_KIND_QUERY : BENCH_KIND_RESOURCE;
    } else if (!strcmp(a, "--users")) {
        NEED_VALUE;
        if (parse_u64(v, 1, 1000000, &u))
            return usage_error(mode, "--users must be 1..1000000");
        o->w.users = (uint32_t)u;
    } else if (!strcmp(a, "--keys")) {
        NEED_VALUE;
        if (parse_u64(v, 1, BENCH_ZIPF_MAX, &u))
            return usage_error(mode, "--keys must be 1..%llu", BENCH_ZIPF_MAX);
        o->w.keys = u;
    } else if (!strcmp(a, "--zipf")) {
        NEED_VALUE;
        if (parse_double(v, 0, 10, &d))
            return usage_error(mode, "--zipf must be 0..10 (0: uniform)");
        o->w.zipf_s = d;
    } else if (!strcmp(a, "--concurrency")) {
        NEED_VALUE;
        if (parse_u64(v, 1, 1024, &u))
            return usage_error(mode, "--concurrency must be 1..1024");
        o->w.concurrency = (unsigned)u;
    } else if (!strcmp(a, "--rate")) {
        NEED_VALUE;
        if (parse_double(v, 0, 1e6, &d))
            return usage_error(mode, "--rate must be 0..1000000 requests/s (0: closed loop)");
        o->w.rate = d;
    } else if (!strcmp(a, "--duration")) {
        NEED_VALUE;
        if (duration_arg(mode, a, v, &ms))
            return EXIT_USAGE;
        o->w.duration_s = (double)ms / 1000;
        o->duration_set = 1;
    } else if (!strcmp(a, "--requests")) {
        NEED_VALUE;
        if (parse_u64(v, 1, UINT64_MAX / 2, &u))
            return usage_error(mode, "--requests must be a positive count");
        o->w.requests = u;
        o->w.duration_s = 0; /* a count replaces the default duration */
    } else if (!strcmp(a, "--warmup")) {
        NEED_VALUE;
        if (duration_arg(mode, a, v, &ms))
            return EXIT_USAGE;
        o->w.warmup_s = (double)ms / 1000;
    } else if (!strcmp(a, "--replay")) {
        NEED_VALUE;
        o->replay = v;
    } else if (!strcmp(a, "--speed")) {
        NEED_VALUE;
        if (parse_double(v, 0, 1e6, &d))
            return usage_error(mode, "--speed must be >= 0 (0: as fast as possible)");
        o->w.speed = d;
    } else if (!strcmp(a, "--trace")) {
        NEED_VALUE;
        o->trace = v;
    } else {
        return 0;
    }
#undef NEED_VALUE
    return 1;
}

/* ---- the run context ----------------------------------------------------------------------------
 */

struct mctx {
    struct opts o;
    struct bench_sim *sim;
    char sim_url[64];
    struct bench_redis redis;
    int redis_state; /* 0 not tried, 1 running or given, -1 unavailable */
    char redis_why[256], redis_url[160];
    json_t *doc;
    int64_t updated_ms;
    unsigned seq;
};

/* The Redis a run uses: --redis-url, or a redis-server started once for the process. */
static const char *redis_for(struct mctx *c)
{
    if (c->o.redis_url)
        return c->o.redis_url;
    if (!c->redis_state) {
        c->redis_state =
            bench_redis_start(c->o.redis_bin, &c->redis, c->redis_why, sizeof c->redis_why) == 0
                ? 1
                : -1;
        if (c->redis_state > 0)
            snprintf(c->redis_url, sizeof c->redis_url, "redis://127.0.0.1:%d", c->redis.port);
    }
    return c->redis_state > 0 ? c->redis_url : NULL;
}

static void duration_set(json_t *obj, const char *key, int64_t ms)
{
    char v[32];
    snprintf(v, sizeof v, "%lldms", (long long)ms);
    json_object_set_new(obj, key, json_string(v));
}

static char *json_data_for(const struct ds_cfg *dc, const struct ds_more *more, const char *uid,
                           const char *redis_url)
{
    json_t *cache = json_object();
    char v[64];
    json_object_set_new(cache, "backend", json_string(dc->backend));
    if (dc->ttl_ms >= 0) {
        snprintf(v, sizeof v, "%lldms", (long long)dc->ttl_ms);
        json_object_set_new(cache, "resourceTtl", json_string(v));
        json_object_set_new(cache, "queryTtl", json_string(v));
    }
    if (dc->time_align_ms >= 0) {
        snprintf(v, sizeof v, "%lldms", (long long)dc->time_align_ms);
        json_object_set_new(cache, "timeAlign", json_string(v));
    }
    if (dc->scope)
        json_object_set_new(cache, "scope", json_string(dc->scope));
    if (dc->memory_max > 0)
        json_object_set_new(cache, "memoryMaxBytes", json_integer(dc->memory_max));
    if (more && more->query_split_ms > 0)
        duration_set(cache, "querySplit", more->query_split_ms);
    if (more && more->split_stable_after_ms > 0)
        duration_set(cache, "splitStableAfter", more->split_stable_after_ms);
    if (more && more->query_split_ttl_ms > 0)
        duration_set(cache, "querySplitTtl", more->query_split_ttl_ms);
    if (more && more->revalidate != DS_DEFAULT)
        json_object_set_new(cache, "revalidate", json_boolean(more->revalidate == DS_ON));
    if (redis_url) {
        json_object_set_new(cache, "redisUrl", json_string(redis_url));
        if (dc->tls_skip_verify)
            json_object_set_new(cache, "redisTlsSkipVerify", json_true());
        snprintf(v, sizeof v, "cpbench:%d:%s:", (int)getpid(), uid); /* runs never share keys */
        json_object_set_new(cache, "keyPrefix", json_string(v));
    }
    json_t *jd = json_pack("{s:o}", "cache", cache);
    char *text = jd ? json_dumps(jd, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(jd);
    return text;
}

/* One workload against a fresh plugin; the run goes into the document. 0, or an error that
 * ends the command. more may be NULL. */
static int run_more(struct mctx *c, const char *group, const char *label, const struct ds_cfg *dc,
                    const struct ds_more *more, struct bench_workload *w,
                    const struct bench_upstream_profile *p, const char *trace_name)
{
    const struct bench_driver *d = bench_driver_find(c->o.mode);
    char uid[48];
    snprintf(uid, sizeof uid, "bench-%u", ++c->seq);
    const char *redis_url = NULL;
    if (!strcmp(dc->backend, "redis") &&
        !(redis_url = dc->redis_url ? dc->redis_url : redis_for(c))) {
        bench_doc_note(c->doc, "%s: Redis run %s", label, c->redis_why);
        fprintf(stderr, "bench: %s: Redis run %s\n", label, c->redis_why);
        return 0;
    }
    char *jd = json_data_for(dc, more, uid, redis_url);
    if (!jd)
        return CP_ENOMEM;
    bench_sim_set_profile(c->sim, p);
    struct bench_target t = {c->o.exe, dc->env, uid, jd, c->sim_url, c->updated_ms};
    struct cp_err err = {0};
    void *conn = NULL;
    int rc = d->open(&t, &conn, &err);
    if (rc) {
        fprintf(stderr, "bench: %s: the %s did not start: %s\n", label,
                !strcmp(d->name, "http") ? "standalone server" : "plugin", cp_err_text(&err));
        free(jd);
        return rc;
    }
    w->label = label;
    w->progress = c->o.progress;
    struct bench_run_result r;
    rc = bench_workload_run(d, conn, c->sim, w, &r, &err);
    int clean = d->close(conn) == 0;
    if (rc)
        fprintf(stderr, "bench: %s: %s\n", label, cp_err_text(&err));
    if (!rc || r.meas.requests || r.warm.requests) {
        struct bench_run_info info = {label, group, d->name, dc->backend, jd, trace_name, p, clean};
        json_array_append_new(json_object_get(c->doc, "runs"), bench_run_json(&info, w, &r));
    }
    bench_run_result_dispose(&r);
    free(jd);
    return rc;
}

static int run_one(struct mctx *c, const char *group, const char *label, const struct ds_cfg *dc,
                   struct bench_workload *w, const struct bench_upstream_profile *p,
                   const char *trace_name)
{
    return run_more(c, group, label, dc, NULL, w, p, trace_name);
}

/* ---- synthetic traces
 * ----------------------------------------------------------------------------- */

struct synth {
    uint64_t requests, keys;
    uint32_t users;
    double zipf_s, scan, rate;
    int query;
    uint64_t seed;
    int64_t start_ms;
};

/* Writes a synthetic trace: Poisson arrivals at `rate`, Zipf keys, a `scan` share of one-off
 * requests, users pseudonymised as the recorder does (hex of a hash). */
static int write_synthetic(FILE *f, const struct synth *s, struct cp_err *err)
{
    struct bench_zipf z;
    int rc = bench_zipf_init(&z, s->keys, s->zipf_s);
    if (rc)
        return cp_err_set(err, rc, "keys %llu, zipf %.2f: %s", (unsigned long long)s->keys,
                          s->zipf_s, rc == CP_EINVAL ? "out of range" : "out of memory");
    uint64_t rng = s->seed * 0x9e3779b97f4a7c15ull + 1;
    double t_ms = (double)s->start_ms;
    bench_trace_write_header(f);
    for (uint64_t i = 0; i < s->requests; i++) {
        t_ms += -log(1.0 - bench_rand_unit(&rng)) / s->rate * 1000.0;
        uint64_t user = bench_rand(&rng) % s->users;
        uint64_t ux = user ^ s->seed;
        char uname[24], path[64];
        snprintf(uname, sizeof uname, "%012llx",
                 (unsigned long long)(bench_rand(&ux) & 0xffffffffffffull));
        if (s->scan > 0 && bench_rand_unit(&rng) < s->scan)
            snprintf(path, sizeof path, "/%s/scan%llu", s->query ? "q" : "w",
                     (unsigned long long)i);
        else
            snprintf(path, sizeof path, "/%s/k%llu", s->query ? "q" : "w",
                     (unsigned long long)bench_zipf_draw(&z, &rng));
        bench_trace_write(f, (int64_t)t_ms, uname, user % 10 ? "Viewer" : "Editor",
                          s->query ? "QUERY" : "GET", path);
    }
    bench_zipf_dispose(&z);
    return ferror(f) ? cp_err_set(err, CP_EINVAL, "write failed") : 0;
}

/* The same trace in memory, read back through the CSV reader. */
static int synthetic_trace(const struct synth *s, struct bench_trace **out, struct cp_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    int rc = write_synthetic(f, s, err);
    fclose(f);
    if (!rc) {
        FILE *in = fmemopen(buf, len, "r");
        rc = in ? bench_trace_read(in, "synthetic", out, err)
                : cp_err_set(err, CP_ENOMEM, "out of memory");
        if (in)
            fclose(in);
    }
    free(buf);
    return rc;
}

/* ---- what-if ------------------------------------------------------------------------------------
 */

/* Runs the what-if and returns {"trace","scope","ttl","distinctKeys","output":{...}}. */
static int whatif(struct bench_trace *t, const char *name, const uint64_t *sizes, size_t nsizes,
                  int64_t ttl_ms, int scope_user, json_t **out_sim, json_t **out_doc,
                  struct cp_err *err)
{
    struct bench_whatif w;
    int rc = bench_whatif_prepare(t, scope_user, &w, err);
    if (rc)
        return rc;
    json_t *doc = NULL;
    rc = bench_whatif_run(&w, sizes, nsizes, ttl_ms, &doc, err);
    if (!rc) {
        *out_sim =
            json_pack("{s:s,s:s,s:o,s:I,s:I,s:O}", "trace", name, "scope",
                      scope_user ? "user" : "shared", "ttl", bench_ttl_json(ttl_ms), "distinctKeys",
                      (json_int_t)w.nkeys, "ignoredLines", (json_int_t)t->ignored, "output", doc);
        *out_doc = doc;
    }
    bench_whatif_dispose(&w);
    return rc;
}

static int parse_sizes(const char *spec, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *copy = strdup(spec);
    if (!copy)
        return -1;
    int bad = !*copy;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok && !bad;
         tok = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        uint64_t *grown = realloc(*out, (*n + 1) * sizeof *grown);
        if (!grown || parse_u64(tok, 1, INT32_MAX, &v)) {
            if (grown)
                *out = grown;
            bad = 1;
            break;
        }
        *out = grown;
        (*out)[(*n)++] = v;
    }
    free(copy);
    if (bad || !*n) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static const char sim_help[] =
    "usage: cachingproxy-bench sim --trace FILE --sizes N[,N...] [--ttl DURATION]\n"
    "                              [--scope shared|user] --json OUT\n"
    "\n"
    "What-if hit ratios of a recorded (or synthetic) trace, no upstream needed: for each cache\n"
    "size (entries) the memory backend's policy (ours), exact LRU (lru) and Belady's optimum\n"
    "with bypass (opt). FILE is CSV ts,user,role,method,path (\"-\": stdin); the key is method\n"
    "+ path (+ user with --scope user); with --ttl an entry expires that long after it was\n"
    "stored (trace time; 0, the default, never). OUT gets {\"requests\": N, \"results\": [...]};\n"
    "a table goes to stdout.\n";

static int mode_sim(int argc, char **argv)
{
    struct opts o;
    opts_init(&o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(sim_help, stdout);
            return 0;
        }
        if (strcmp(a, "--trace") && strcmp(a, "--sizes") && strcmp(a, "--ttl") &&
            strcmp(a, "--scope") && strcmp(a, "--json"))
            return usage_error("sim", "unknown option %s", a);
        if (!v)
            return usage_error("sim", "%s needs a value", a);
        i++;
        if (!strcmp(a, "--trace")) {
            o.trace = v;
        } else if (!strcmp(a, "--sizes")) {
            o.sizes = v;
        } else if (!strcmp(a, "--json")) {
            o.json_out = v;
        } else if (!strcmp(a, "--ttl")) {
            if (duration_arg("sim", a, v, &o.ttl_ms))
                return EXIT_USAGE;
        } else {
            if (strcmp(v, "shared") && strcmp(v, "user"))
                return usage_error("sim", "--scope must be shared or user");
            o.scope_user = !strcmp(v, "user");
        }
    }
    if (!o.trace || !o.sizes || !o.json_out)
        return usage_error("sim", "--trace, --sizes and --json are required");
    uint64_t *sizes;
    size_t nsizes;
    if (parse_sizes(o.sizes, &sizes, &nsizes))
        return usage_error("sim", "--sizes: \"%s\" must be entry counts 1..%d, comma separated",
                           o.sizes, INT32_MAX);
    struct cp_err err = {0};
    struct bench_trace *t = NULL;
    json_t *sim = NULL, *out = NULL;
    int rc = bench_trace_load(o.trace, &t, &err);
    if (!rc)
        rc = whatif(t, o.trace, sizes, nsizes, o.ttl_ms, o.scope_user, &sim, &out, &err);
    if (!rc)
        rc = bench_doc_write(out, o.json_out, &err);
    if (!rc) {
        char title[512];
        snprintf(title, sizeof title,
                 "what-if: %s, %zu requests, %lld distinct keys, scope %s, ttl %gs; hit ratio by "
                 "cache size (entries)",
                 o.trace, t->n, (long long)json_integer_value(json_object_get(sim, "distinctKeys")),
                 o.scope_user ? "user" : "shared", (double)o.ttl_ms / 1000);
        FILE *f = strcmp(o.json_out, "-") ? stdout : stderr;
        bench_whatif_print(out, title, f);
        if (t->ignored)
            fprintf(f, "note: the last line was unfinished (a recorder still writing) and was "
                       "ignored\n");
    } else {
        fprintf(stderr, "cachingproxy-bench sim: %s\n", cp_err_text(&err));
    }
    json_decref(out);
    json_decref(sim);
    bench_trace_free(t);
    free(sizes);
    if (atomic_load(&bench_interrupted))
        return EXIT_INTERRUPTED;
    return rc ? 1 : 0;
}

/* ---- trace --------------------------------------------------------------------------------------
 */

static const char trace_help[] =
    "usage: cachingproxy-bench trace --out FILE [--requests N] [--keys K] [--users U]\n"
    "                                [--zipf S] [--scan SHARE] [--rate R] [--kind resource|query]\n"
    "                                [--seed N] [--start EPOCH]\n"
    "\n"
    "Writes a synthetic trace in the CSV form sim and replays read: N requests (100000) over K\n"
    "distinct paths (10000) drawn with Zipf(S) skew (0.9), SHARE of them one-off paths (0), from\n"
    "U users (100), arriving at R per second (50, Poisson) from EPOCH (1700000000).\n";

static int mode_trace(int argc, char **argv)
{
    struct synth s = {100000, 10000, 100, 0.9, 0, 50, 0, 1, 1700000000000LL};
    const char *out = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(trace_help, stdout);
            return 0;
        }
        if (!v)
            return usage_error("trace", "unknown option or missing value: %s", a);
        i++;
        int bad = 0;
        if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--requests"))
            bad = parse_u64(v, 1, 100000000, &s.requests);
        else if (!strcmp(a, "--keys"))
            bad = parse_u64(v, 1, BENCH_ZIPF_MAX, &s.keys);
        else if (!strcmp(a, "--users"))
            bad = parse_u64(v, 1, 1000000, &u) || !(s.users = (uint32_t)u);
        else if (!strcmp(a, "--zipf"))
            bad = parse_double(v, 0, 10, &s.zipf_s);
        else if (!strcmp(a, "--scan"))
            bad = parse_double(v, 0, 1, &s.scan);
        else if (!strcmp(a, "--rate"))
            bad = parse_double(v, 0.001, 1e6, &s.rate);
        else if (!strcmp(a, "--seed"))
            bad = parse_u64(v, 0, UINT64_MAX, &s.seed);
        else if (!strcmp(a, "--start")) {
            bad = parse_u64(v, 0, 99999999999ull, &u);
            s.start_ms = (int64_t)u * 1000;
        } else if (!strcmp(a, "--kind")) {
            bad = strcmp(v, "resource") && strcmp(v, "query");
            s.query = !strcmp(v, "query");
        } else
            return usage_error("trace", "unknown option %s", a);
        if (bad)
            return usage_error("trace", "%s: bad value \"%s\"", a, v);
    }
    if (!out)
        return usage_error("trace", "--out is required");
    FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "cachingproxy-bench trace: %s: %s\n", out, strerror(errno));
        return 1;
    }
    struct cp_err err = {0};
    int rc = write_synthetic(f, &s, &err);
    if (f != stdout && fclose(f) != 0 && !rc)
        rc = cp_err_set(&err, CP_EINVAL, "%s: write failed", out);
    if (rc) {
        fprintf(stderr, "cachingproxy-bench trace: %s\n", cp_err_text(&err));
        return 1;
    }
    return 0;
}

/* ---- reports ------------------------------------------------------------------------------------
 */

/* Text on stdout (stderr when the JSON goes to stdout), then the JSON and HTML files. */
static int emit(struct mctx *c)
{
    bench_doc_finish(c->doc);
    FILE *text = c->o.json_out && !strcmp(c->o.json_out, "-") ? stderr : stdout;
    bench_runs_print(c->doc, text);
    struct cp_err err = {0};
    int rc = 0;
    if (c->o.json_out && bench_doc_write(c->doc, c->o.json_out, &err)) {
        fprintf(stderr, "bench: %s\n", cp_err_text(&err));
        rc = 1;
    }
    if (c->o.html_out) {
        if (bench_html_write(c->doc, &c->o.web, c->o.html_out, &err)) {
            fprintf(stderr, "bench: %s\n", cp_err_text(&err));
            rc = 1;
        } else {
            fprintf(text, "HTML report: %s\n", c->o.html_out);
        }
    }
    return rc;
}

static const char report_help[] =
    "usage: cachingproxy-bench report DOC.json [--html OUT] [--web-dir DIR] [--chartjs FILE]\n"
    "\n"
    "Prints the text tables of a JSON document written by --json, and makes its HTML page.\n";

static int mode_report(int argc, char **argv)
{
    struct mctx c;
    memset(&c, 0, sizeof c);
    opts_init(&c.o);
    const char *in = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(report_help, stdout);
            return 0;
        }
        int k = common_opt("report", &c.o, argc, argv, &i);
        if (k == EXIT_USAGE)
            return k;
        if (!k) {
            if (argv[i][0] == '-' || in)
                return usage_error("report", "unexpected argument %s", argv[i]);
            in = argv[i];
        }
    }
    if (!in)
        return usage_error("report", "a JSON document is required");
    json_error_t je;
    c.doc = json_load_file(in, 0, &je);
    if (!json_is_object(c.doc) || json_integer_value(json_object_get(c.doc, "schema")) != 1) {
        fprintf(stderr, "cachingproxy-bench report: %s: not a bench document (%s)\n", in,
                c.doc ? "schema 1 expected" : je.text);
        json_decref(c.doc);
        return 1;
    }
    FILE *text = stdout;
    bench_runs_print(c.doc, text);
    int rc = 0;
    struct cp_err err = {0};
    if (c.o.html_out && bench_html_write(c.doc, &c.o.web, c.o.html_out, &err)) {
        fprintf(stderr, "cachingproxy-bench report: %s\n", cp_err_text(&err));
        rc = 1;
    }
    json_decref(c.doc);
    return rc;
}

/* ---- grpc and presets
 * ------------------------------------------------------------------------------ */

static const char grpc_help[] =
    "usage: cachingproxy-bench grpc|http [options]\n"
    "\n"
    "Drives the plugin (grpc: launched as Grafana launches it) or the standalone server (http:\n"
    "gpx_cachingproxy serve, API keys per role, keep-alive connections) with a workload against\n"
    "the built-in upstream simulator, and reports hit ratio (overall and over time), upstream\n"
    "calls and the share saved, coalesced calls, latency percentiles, throughput and the RSS.\n"
    "\n"
    "workload (synthetic):\n"
    "  --kind resource|query   CallResource proxy calls, or dashboard queries over the last hour\n"
    "  --users N (100)  --keys K (1000)  --zipf S (1.0; 0 uniform)\n"
    "  --concurrency C (8)     closed loop: C callers; open loop: at most C in flight\n"
    "  --rate R                open loop: R requests/s, Poisson arrivals (default: closed loop)\n"
    "  --duration D (10s) | --requests N     measured part\n"
    "  --warmup D (1s)  --seed N (1)\n"
    "workload (recorded):\n"
    "  --replay FILE           a CSV trace (ts,user,role,method,path) with its timing\n"
    "  --speed X (1)           pace multiplier; 0: as fast as C callers go\n"
    "data source:\n"
    "  --backend memory|redis|off (memory)  --ttl D  --time-align D  --scope shared|org|user\n"
    "  --memory-max-bytes SIZE  --redis-url URL (default: a redis-server started here)\n"
    "  --redis-server PATH (/usr/bin/redis-server)  --plugin PATH\n"
    "upstream simulator:\n"
    "  --latency SPEC (0)      20ms | 5ms..50ms | lognormal:MEDIAN:P99\n"
    "  --payload SIZE (1KiB)   or MIN..MAX, log-uniform per path\n"
    "  --error-rate P (0)      share of 503 answers\n"
    "  --cache-control VALUE   Cache-Control on its answers (default none)\n"
    "  --query-rows N (100)    rows of a query answer\n"
    "  --query-step D          query answers are the rows of [from, to), one per D, with a\n"
    "                          time column (a time-filtering API; default: --query-rows rows)\n"
    "  --validators            ETag and Last-Modified on answers, 304 to matching conditions\n"
    "  --change-every D        with validators: a path's content changes this often (never)\n"
    "output:\n"
    "  --json OUT  --html OUT  --web-dir DIR  --chartjs FILE\n"
    "  --progress / --no-progress (default: when stderr is a terminal)  --quick\n";

static const char preset_help[] =
    "usage: cachingproxy-bench preset "
    "backends|policies|timealign|split|revalidation|all|core|redis\n"
    "                                 [options]\n"
    "\n"
    "  backends   the same workload against the memory backend, Redis and no cache\n"
    "  policies   what-if: our eviction policy against LRU and the optimum, by cache size\n"
    "             (--trace FILE, else a synthetic trace; --ttl D; --scope shared|user)\n"
    "  timealign  dashboard queries over \"the last hour\" from many users, by timeAlign\n"
    "  split      users keeping a dashboard over \"the last 6 hours\" open with a 30 s refresh\n"
    "             (a virtual clock, 10 minutes in 20 s): upstream calls and bytes with split\n"
    "             queries off, 1h and 15m\n"
    "  revalidation  resource calls with a short TTL on an upstream with ETags whose content\n"
    "             rarely changes: upstream calls, body bytes and 304s, revalidate on and off\n"
    "  all        all of the above, in one report\n"
    "  core       the event-driven core: 64, 512 and 5,000 distinct misses at once on a slow\n"
    "             upstream (wall time, answers, the plugin's threads and RSS), uncached\n"
    "             forwarding and memory hits against a bare gRPC round trip, and the goals\n"
    "             (--before PATH: the same cells, but the largest burst, against an older\n"
    "             plugin build too, side by side)\n"
    "  redis      cache hits through each Redis mode side by side (one server in clear and\n"
    "             with sealed values, TLS, a 3-master cluster; 1 and 8 callers), the servers\n"
    "             started here (redis-server, redis-cli beside it, openssl)\n"
    "\n"
    "options: --quick (seconds, for CI), --json OUT, --html OUT, --plugin PATH,\n"
    "         --mode grpc|http (the plugin, or the standalone server; default grpc),\n"
    "         --redis-url URL, --redis-server PATH, --progress, --seed N, --web-dir, --chartjs\n";

static int ctx_start(struct mctx *c, const char *command)
{
    struct cp_err err = {0};
    c->updated_ms = cp_now_ms();
    c->redis.pid = -1;
    c->doc = bench_doc_new(command);
    if (!c->doc || bench_sim_start(&c->sim, c->sim_url, sizeof c->sim_url, &err)) {
        fprintf(stderr, "bench: upstream simulator: %s\n", cp_err_text(&err));
        return 1;
    }
    return 0;
}

static void ctx_stop(struct mctx *c)
{
    bench_redis_stop(&c->redis);
    bench_sim_stop(c->sim);
    json_decref(c->doc);
}

static int finish(struct mctx *c, int rc)
{
    int erc = emit(c);
    ctx_stop(c);
    if (atomic_load(&bench_interrupted))
        return EXIT_INTERRUPTED;
    return rc || erc ? 1 : 0;
}

/* grpc and http: one workload against the plugin, or against the standalone server. */
static int mode_grpc(int argc, char **argv)
{
    struct mctx c;
    memset(&c, 0, sizeof c);
    opts_init(&c.o);
    const char *mode = argv[1];
    c.o.mode = mode;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(grpc_help, stdout);
            return 0;
        }
        int k = common_opt(mode, &c.o, argc, argv, &i);
        if (k == EXIT_USAGE)
            return k;
        if (!k)
            return usage_error(mode, "unknown option %s", argv[i]);
    }
    c.o.mode = mode;
    if (c.o.quick) {
        c.o.w.duration_s = c.o.w.requests ? 0 : 1.5;
        c.o.w.warmup_s = 0.3;
    }
    struct bench_trace *t = NULL;
    struct cp_err err = {0};
    if (c.o.replay) {
        if (bench_trace_load(c.o.replay, &t, &err)) {
            fprintf(stderr, "cachingproxy-bench %s: %s\n", mode, cp_err_text(&err));
            return 1;
        }
        c.o.w.trace = t;
        if (!c.o.duration_set && !c.o.quick)
            c.o.w.duration_s = 0; /* the whole trace unless a duration is asked for */
    }
    if (ctx_start(&c, mode)) {
        ctx_stop(&c);
        bench_trace_free(t);
        return 1;
    }
    char label[64];
    snprintf(label, sizeof label, "%s%s", c.o.ds.backend, t ? " (replay)" : "");
    int rc = run_one(&c, mode, label, &c.o.ds, &c.o.w, &c.o.profile, c.o.replay);
    rc = finish(&c, rc);
    bench_trace_free(t);
    return rc;
}

/* The resource-call workload of the presets: 100 users, Zipf 0.9 over keys (the first count
 * with --quick), 8 callers in a closed loop for 10 s (1.5 s), on an upstream answering in
 * 5 ms median, 50 ms p99. */
static struct bench_workload resource_workload(const struct mctx *c, uint64_t quick_keys,
                                               uint64_t keys, struct bench_upstream_profile *p)
{
    struct bench_workload w = c->o.w;
    w.kind = BENCH_KIND_RESOURCE;
    w.users = 100;
    w.keys = c->o.quick ? quick_keys : keys;
    w.zipf_s = 0.9;
    w.concurrency = 8;
    w.rate = 0;
    w.requests = 0;
    w.duration_s = c->o.quick ? 1.5 : 10;
    w.warmup_s = c->o.quick ? 0.3 : 1;
    w.trace = NULL;
    *p = c->o.profile;
    bench_latency_parse("lognormal:5ms:50ms", &p->latency, NULL);
    return w;
}

static int preset_backends(struct mctx *c)
{
    struct bench_upstream_profile p;
    struct bench_workload w = resource_workload(c, 500, 5000, &p);
    p.payload_lo = 1024;
    p.payload_hi = 16384;
    static const char *const backends[] = {"memory", "redis", "off"};
    int rc = 0;
    for (size_t i = 0; i < 3 && !rc && !atomic_load(&bench_interrupted); i++) {
        struct ds_cfg dc = {backends[i], 10000, -1, NULL, 0};
        rc = run_one(c, "backends", backends[i], &dc, &w, &p, NULL);
    }
    return rc;
}

/* Cache hits through each Redis mode, side by side: one server in clear, the same with the
 * values sealed (an encryption key in the plugin's environment), a server over TLS, and a
 * cluster of three masters; one caller (latency), then eight (throughput). Every key is
 * fetched in the warm-up, so the measured window is hits. The TLS run skips certificate
 * verification: it costs only when a connection opens, and connections are pooled. */
static int preset_redis(struct mctx *c)
{
    struct bench_workload w = c->o.w;
    w.kind = BENCH_KIND_RESOURCE;
    w.users = 50;
    w.keys = 100;
    w.zipf_s = 0; /* uniform: the warm-up sees every key */
    w.rate = 0;
    w.requests = 0;
    w.duration_s = c->o.quick ? 1.5 : 5;
    w.warmup_s = c->o.quick ? 0.5 : 1;
    w.trace = NULL;
    struct bench_upstream_profile p = c->o.profile;
    bench_latency_parse("2ms", &p.latency, NULL);
    p.payload_lo = p.payload_hi = 1024;

    char cli[4096];
    snprintf(cli, sizeof cli, "%s", c->o.redis_bin);
    char *slash = strrchr(cli, '/');
    snprintf(slash ? slash + 1 : cli, sizeof cli - (size_t)(slash ? slash + 1 - cli : 0),
             "redis-cli");
    struct bench_redis_deploy tls, cluster;
    char why_tls[256], why_cluster[256];
    int have_tls = bench_redis_tls_start(c->o.redis_bin, &tls, why_tls, sizeof why_tls) == 0;
    int have_cluster = !atomic_load(&bench_interrupted) &&
                       bench_redis_cluster_start(c->o.redis_bin, cli, &cluster, why_cluster,
                                                 sizeof why_cluster) == 0;
    const char *plain = redis_for(c);

    /* a fresh 32-byte key for the sealed run */
    unsigned char raw[32];
    char env_key[128] = "CACHINGPROXY_CACHE_ENCRYPTION_KEYS=";
    FILE *rnd = fopen("/dev/urandom", "rb");
    int have_key = rnd && fread(raw, 1, sizeof raw, rnd) == sizeof raw;
    if (rnd)
        fclose(rnd);
    if (have_key)
        EVP_EncodeBlock((unsigned char *)env_key + strlen(env_key), raw, sizeof raw);
    const char *const sealed_env[] = {env_key, NULL};

    const struct {
        const char *name, *url, *why;
        int skip_verify;
        const char *const *env;
    } modes[] = {
        {"plain", plain, c->redis_why, 0, NULL},
        {"plain, encrypted", have_key ? plain : NULL, "skipped: no random key", 0, sealed_env},
        {"TLS", have_tls ? tls.url : NULL, why_tls, 1, NULL},
        {"cluster", have_cluster ? cluster.url : NULL, why_cluster, 0, NULL},
    };
    static const unsigned concs[] = {1, 8};
    int rc = 0;
    for (size_t k = 0; k < 2 && !rc && !atomic_load(&bench_interrupted); k++) {
        w.concurrency = concs[k];
        for (size_t i = 0; i < sizeof modes / sizeof modes[0] && !rc; i++) {
            if (atomic_load(&bench_interrupted))
                break;
            char label[64];
            snprintf(label, sizeof label, "%s, %u caller%s", modes[i].name, concs[k],
                     concs[k] > 1 ? "s" : "");
            if (!modes[i].url) {
                if (!k) {
                    bench_doc_note(c->doc, "redis %s: %s", modes[i].name, modes[i].why);
                    fprintf(stderr, "bench: redis %s: %s\n", modes[i].name, modes[i].why);
                }
                continue;
            }
            struct ds_cfg dc = {
                "redis", 120000, -1, NULL, 0, modes[i].url, modes[i].skip_verify, modes[i].env};
            rc = run_one(c, "redis", label, &dc, &w, &p, NULL);
        }
    }
    explicit_bzero(env_key, sizeof env_key);
    explicit_bzero(raw, sizeof raw);
    if (have_tls)
        bench_redis_deploy_stop(&tls);
    if (have_cluster)
        bench_redis_deploy_stop(&cluster);
    return rc;
}

static int preset_timealign(struct mctx *c)
{
    struct bench_workload w = c->o.w;
    w.kind = BENCH_KIND_QUERY;
    w.users = 50;
    w.keys = 6; /* the panels of one dashboard */
    w.zipf_s = 0;
    w.concurrency = 16;
    w.rate = 30; /* 50 users refreshing a 6-panel dashboard every 10 s */
    w.requests = 0;
    w.duration_s = c->o.quick ? 2 : 10;
    w.warmup_s = 0;
    w.trace = NULL;
    struct bench_upstream_profile p = c->o.profile;
    bench_latency_parse("lognormal:20ms:100ms", &p.latency, NULL);
    p.query_rows = 100;
    static const int64_t aligns[] = {0, 1000, 10000, 60000};
    int rc = 0;
    for (size_t i = 0; i < 4 && !rc && !atomic_load(&bench_interrupted); i++) {
        struct ds_cfg dc = {"memory", 60000, aligns[i], NULL, 0};
        char label[32];
        snprintf(label, sizeof label, "timeAlign %llds", (long long)(aligns[i] / 1000));
        rc = run_one(c, "timeAlign", label, &dc, &w, &p, NULL);
    }
    return rc;
}

/* split: N users keep a dashboard over "the last 6 hours" open with a 30 s refresh; the same
 * queries with split off, 1h and 15m. Ten minutes of the dashboard's clock run in 20 s of wall
 * clock (2 s with --quick): lifetimes are divided by that speed-up, and splitStableAfter is set
 * so that the plugin's wall-clock test of stable pieces agrees with the dashboard's clock
 * (dashboard.c says how). */
static int preset_split(struct mctx *c)
{
    const int64_t refresh_ms = 30000, range_ms = 6 * 3600000LL, span_ms = 600000;
    const int64_t stable_ms = 600000, query_ttl_ms = 60000, split_ttl_ms = 3600000;
    double wall_s = c->o.quick ? 2 : 20;
    double speed = (double)span_ms / 1000 / wall_s;
    struct bench_dashboard d = {.users = c->o.quick ? 10 : 50,
                                .panels = 6,
                                .refresh_ms = refresh_ms,
                                .start_ms = bench_split_start(cp_now_ms()),
                                .span_ms = span_ms,
                                .seed = c->o.w.seed};
    struct bench_trace *t = NULL;
    struct cp_err err = {0};
    int rc = bench_dashboard_trace(&d, &t, &err);
    if (rc) {
        fprintf(stderr, "bench: split: %s\n", cp_err_text(&err));
        return rc;
    }
    char name[200];
    snprintf(name, sizeof name,
             "a dashboard: %u users, %u panels over the last 6 h, refresh 30 s, 10 min of its "
             "clock",
             d.users, d.panels);
    struct bench_workload w = c->o.w;
    w.kind = BENCH_KIND_QUERY;
    w.trace = t;
    w.speed = speed;
    w.trace_clock = 1;
    w.range_ms = range_ms;
    w.concurrency = 32;
    w.rate = 0;
    w.requests = 0;
    w.duration_s = 0;
    /* every user's first load, and at least the time the first loads take upstream (the
     * simulator counts a call when it arrives) */
    w.warmup_s = fmax((double)refresh_ms / 1000 / speed, 0.5);
    struct bench_upstream_profile p = c->o.profile;
    bench_latency_parse("lognormal:20ms:100ms", &p.latency, NULL);
    p.query_step_ms = 60000; /* a point a minute: 360 rows for 6 hours */
    static const int64_t splits[] = {0, 3600000, 900000};
    static const char *const labels[] = {"split off", "split 1h", "split 15m"};
    for (size_t i = 0; i < 3 && !rc && !atomic_load(&bench_interrupted); i++) {
        struct ds_cfg dc = {"memory", llround((double)query_ttl_ms / speed), 10000, NULL, 0};
        struct ds_more more = {.query_split_ms = splits[i],
                               .split_stable_after_ms =
                                   bench_split_stable_after(cp_now_ms(), d.start_ms, stable_ms),
                               .query_split_ttl_ms = llround((double)split_ttl_ms / speed)};
        rc = run_more(c, "split", labels[i], &dc, &more, &w, &p, name);
    }
    if (!rc && bench_doc_compare(c->doc, "split", "split off") == 0)
        bench_doc_note(c->doc,
                       "split: the dashboard's clock ran %.0f times faster than the wall clock "
                       "(queries end at its now); queryTtl and querySplitTtl are 1 min and 1 h "
                       "of that clock, splitStableAfter 10 min of it",
                       speed);
    bench_trace_free(t);
    return rc;
}

/* revalidation: resource calls with a short TTL against an upstream that sends ETag and
 * Last-Modified and whose content changes every 30 s per path, revalidate on and off. */
static int preset_revalidation(struct mctx *c)
{
    struct bench_upstream_profile p;
    struct bench_workload w = resource_workload(c, 300, 2000, &p);
    p.payload_lo = 4096;
    p.payload_hi = 65536;
    p.validators = 1;
    p.change_ms = 30000;
    static const enum ds_flag flags[] = {DS_ON, DS_OFF};
    static const char *const labels[] = {"revalidate on", "revalidate off"};
    int rc = 0;
    for (size_t i = 0; i < 2 && !rc && !atomic_load(&bench_interrupted); i++) {
        struct ds_cfg dc = {"memory", 1000, -1, NULL, 0};
        struct ds_more more = {.revalidate = flags[i]};
        rc = run_more(c, "revalidation", labels[i], &dc, &more, &w, &p, NULL);
    }
    if (!rc)
        bench_doc_compare(c->doc, "revalidation", "revalidate off");
    return rc;
}

static int preset_policies(struct mctx *c)
{
    struct bench_trace *t = NULL;
    struct cp_err err = {0};
    char name[160];
    int rc;
    if (c->o.trace) {
        rc = bench_trace_load(c->o.trace, &t, &err);
        snprintf(name, sizeof name, "%s", c->o.trace);
    } else {
        struct synth s = {c->o.quick ? 30000 : 300000,
                          c->o.quick ? 3000 : 30000,
                          200,
                          0.9,
                          0.2,
                          100,
                          0,
                          c->o.w.seed,
                          1700000000000LL};
        snprintf(name, sizeof name,
                 "a synthetic trace (%llu requests, Zipf 0.9 over %llu paths, 20 %% one-off)",
                 (unsigned long long)s.requests, (unsigned long long)s.keys);
        rc = synthetic_trace(&s, &t, &err);
    }
    if (rc) {
        fprintf(stderr, "bench: policies: %s\n", cp_err_text(&err));
        return rc;
    }
    /* sizes from 0.1 % to 20 % of the distinct keys */
    struct bench_whatif probe;
    rc = bench_whatif_prepare(t, c->o.scope_user, &probe, &err);
    uint32_t nkeys = rc ? 0 : probe.nkeys;
    bench_whatif_dispose(&probe);
    static const double shares[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2};
    uint64_t sizes[8];
    size_t n = 0;
    for (size_t i = 0; !rc && i < 8; i++) {
        uint64_t sz = (uint64_t)llround(shares[i] * nkeys);
        if (sz >= 1 && (!n || sz > sizes[n - 1]))
            sizes[n++] = sz;
    }
    if (!rc && !n)
        sizes[n++] = 1;
    json_t *sim = NULL, *out = NULL;
    if (!rc)
        rc = whatif(t, name, sizes, n, c->o.ttl_ms, c->o.scope_user, &sim, &out, &err);
    if (rc)
        fprintf(stderr, "bench: policies: %s\n", cp_err_text(&err));
    else
        json_object_set_new(c->doc, "sim", sim);
    json_decref(out);
    bench_trace_free(t);
    return rc;
}

static int preset_core(struct mctx *c)
{
    struct bench_core_opts co = {.exe = c->o.exe,
                                 .sim = c->sim,
                                 .sim_url = c->sim_url,
                                 .updated_ms = c->updated_ms,
                                 .quick = c->o.quick,
                                 .progress = c->o.progress,
                                 .before_exe = c->o.before};
    struct cp_err err = {0};
    int rc = bench_core_run(&co, c->doc, &err);
    if (rc)
        fprintf(stderr, "bench: core: %s\n", cp_err_text(&err));
    return rc;
}

static int mode_preset(int argc, char **argv)
{
    struct mctx c;
    memset(&c, 0, sizeof c);
    opts_init(&c.o);
    const char *name = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(preset_help, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--before")) {
            if (i + 1 >= argc)
                return usage_error("preset", "--before needs a plugin executable");
            c.o.before = argv[++i];
            continue;
        }
        int k = common_opt("preset", &c.o, argc, argv, &i);
        if (k == EXIT_USAGE)
            return k;
        if (!k) {
            if (argv[i][0] == '-' || name)
                return usage_error("preset", "unexpected argument %s", argv[i]);
            name = argv[i];
        }
    }
    int all = name && !strcmp(name, "all");
    int backends = all || (name && !strcmp(name, "backends"));
    int policies = all || (name && !strcmp(name, "policies"));
    int timealign = all || (name && !strcmp(name, "timealign"));
    int split = all || (name && !strcmp(name, "split"));
    int revalidation = all || (name && !strcmp(name, "revalidation"));
    int core = name && !strcmp(name, "core");
    int redis = name && !strcmp(name, "redis");
    if (!backends && !policies && !timealign && !split && !revalidation && !core && !redis)
        return usage_error("preset", "name one of backends, policies, timealign, split, "
                                     "revalidation, all, core, redis");
    if (c.o.before && !core)
        return usage_error("preset", "--before goes with preset core");
    if (c.o.before && access(c.o.before, X_OK) != 0)
        return usage_error("preset", "--before %s: not an executable", c.o.before);
    char command[64];
    snprintf(command, sizeof command, "preset %s%s", name, c.o.quick ? " --quick" : "");
    if (ctx_start(&c, command)) {
        ctx_stop(&c);
        return 1;
    }
    int rc = 0;
    if (policies)
        rc = preset_policies(&c);
    if (!rc && backends && !atomic_load(&bench_interrupted))
        rc = preset_backends(&c);
    if (!rc && timealign && !atomic_load(&bench_interrupted))
        rc = preset_timealign(&c);
    if (!rc && split && !atomic_load(&bench_interrupted))
        rc = preset_split(&c);
    if (!rc && revalidation && !atomic_load(&bench_interrupted))
        rc = preset_revalidation(&c);
    if (!rc && core && !atomic_load(&bench_interrupted))
        rc = preset_core(&c);
    if (!rc && redis && !atomic_load(&bench_interrupted))
        rc = preset_redis(&c);
    return finish(&c, rc);
}

/* ---- entry -------------------------------------------------------------------------------------
 */

int bench_modes_main(int argc, char **argv)
{
    const char *mode = argv[1];
    if (bench_signals_start(0) != 0) {
        fprintf(stderr, "bench: cannot start the signal thread\n");
        return 1;
    }
    int rc;
    if (!strcmp(mode, "sim")) {
        rc = mode_sim(argc, argv);
    } else if (!strcmp(mode, "trace")) {
        rc = mode_trace(argc, argv);
    } else if (!strcmp(mode, "report")) {
        rc = mode_report(argc, argv);
    } else {
        /* before the simulator starts: it takes connections by this limit, and the plugin
         * inherits it */
        bench_fd_limit_raise(BENCH_FD_WANT);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        cp_absl_deadlock_detection_off(); /* as the plugin does, so both sides compare alike */
    grpc_init();
        rc = !strcmp(mode, "grpc") || !strcmp(mode, "http") ? mode_grpc(argc, argv)
                                                             : mode_preset(argc, argv);
        grpc_shutdown();
        curl_global_cleanup();
    }
    bench_cleanup_done();
    return rc;
}
