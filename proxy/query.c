/*
 * query.c - data queries (SPEC.md section 7): the query model, placeholders substituted in
 * the backend (so alerting works without the frontend) after aligning the time range to
 * timeAlign, the same authorization, credentials, cache and coalescing as resources, and one
 * Arrow frame per query. Queries of one request run concurrently; each fails on its own.
 */
#include "proxy_int.h"

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_PATH 8192
#define MAX_QUERY_HEADERS 32
#define MAX_CACHE_TTL_S (10LL * 365 * 86400)

void proxy_query_result_dispose(struct proxy_query_result *r)
{
    free(r->error);
    for (size_t i = 0; i < r->nframes; i++)
        free(r->frames[i]);
    free(r->frames);
    free(r->frame_lens);
    memset(r, 0, sizeof *r);
}

static void set_error(struct proxy_query_result *r, int status, int downstream, const char *fmt,
                      ...) __attribute__((format(printf, 4, 5)));
static void set_error(struct proxy_query_result *r, int status, int downstream, const char *fmt,
                      ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(r->error);
    r->error = strdup(buf);
    r->status = status;
    r->downstream = downstream;
}

/* ---- placeholders ----------------------------------------------------------------------------- */

static void iso(int64_t ms, char *out, size_t n)
{
    time_t s = (time_t)(ms / 1000 - (ms % 1000 < 0)); /* floor, without overflow */
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t l = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + l, n - l, ".%03dZ", (int)(((ms % 1000) + 1000) % 1000));
}

char *proxy__substitute(const char *s, const struct proxy__range *rg)
{
    struct {
        const char *name;
        int kind; /* 0 ms, 1 s, 2 iso */
        const int64_t *v;
    } vars[] = {{"__from:iso", 2, &rg->from_ms}, {"__to:iso", 2, &rg->to_ms},
                {"__from:s", 1, &rg->from_ms},   {"__to:s", 1, &rg->to_ms},
                {"__from", 0, &rg->from_ms},     {"__to", 0, &rg->to_ms},
                {"__interval_ms", 0, &rg->interval_ms},
                {"__maxDataPoints", 0, &rg->max_points}};
    struct cp_buf b = {0};
    int rc = 0;
    while (*s && !rc) {
        const char *d = strchr(s, '$');
        if (!d) {
            rc = cp_buf_addstr(&b, s);
            break;
        }
        rc = cp_buf_add(&b, s, (size_t)(d - s));
        int brace = d[1] == '{';
        const char *name = d + 1 + brace;
        size_t k, matched = 0;
        for (k = 0; k < sizeof vars / sizeof vars[0]; k++) {
            size_t nl = strlen(vars[k].name);
            if (strncmp(name, vars[k].name, nl))
                continue;
            if (brace && name[nl] != '}')
                continue;
            /* brace-less: only the plain names, and not a prefix of a longer word */
            if (!brace && (strchr(vars[k].name, ':') || isalnum((unsigned char)name[nl]) ||
                           name[nl] == '_'))
                continue;
            matched = nl + (size_t)brace + 1 + (size_t)brace;
            break;
        }
        if (!matched) {
            rc = cp_buf_add(&b, "$", 1);
            s = d + 1;
            continue;
        }
        char val[64];
        int64_t v = *vars[k].v;
        if (vars[k].kind == 2)
            iso(v, val, sizeof val);
        else
            snprintf(val, sizeof val, "%lld", (long long)(vars[k].kind == 1 ? v / 1000 : v));
        rc = cp_buf_addstr(&b, val);
        s = d + matched;
    }
    if (rc) {
        cp_buf_free(&b);
        return NULL;
    }
    return b.p ? cp_buf_take(&b, NULL) : strdup("");
}

/* ---- one query -------------------------------------------------------------------------------- */

struct qsink {
    int status;
    struct cp_buf body;
};

static int q_start(void *ctx, int status, const struct proxy_header *h, size_t n)
{
    (void)h, (void)n;
    ((struct qsink *)ctx)->status = status;
    return 0;
}

static int q_body(void *ctx, const void *p, size_t n)
{
    struct qsink *q = ctx;
    return cp_buf_add(&q->body, p, n) ? CP_ERESPBIG : 0;
}

/* The request-wide inputs every query of one QueryData shares. */
struct qctx {
    struct proxy_ds *ds;
    const struct cp_user *user;
    const struct proxy_header *headers;
    size_t nheaders;
    int (*cancelled)(void *);
    void *cancel_ctx;
};

static const char *result_name(int r)
{
    static const char *const n[] = {"hit", "miss", "stale", "bypass"};
    return r >= 0 && r < 4 ? n[r] : "bypass";
}

/* Appends one query parameter, encoded. */
static int add_param(struct cp_buf *q, const char *k, const char *v)
{
    char *ek = curl_easy_escape(NULL, k, 0), *ev = curl_easy_escape(NULL, v, 0);
    int rc = ek && ev ? cp_buf_addf(q, "%s%s=%s", q->len ? "&" : "", ek, ev) : CP_ENOMEM;
    curl_free(ek);
    curl_free(ev);
    return rc;
}

static char *scalar_text(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v))
        return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    return NULL;
}

/* Builds the query string from "params" (placeholders substituted). */
static int build_params(json_t *params, const struct proxy__range *rg, struct cp_buf *q,
                        struct proxy_query_result *r)
{
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v)
    {
        json_t *one = json_is_array(v) ? NULL : v;
        size_t n = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < n; i++) {
            json_t *e = one ? one : json_array_get(v, i);
            if (json_is_null(e))
                continue;
            char *t = scalar_text(e);
            if (!t) {
                set_error(r, 400, 0, "params.%.80s must be a string, number, boolean or a list "
                                     "of them", k);
                return CP_EINVAL;
            }
            char *sub = proxy__substitute(t, rg);
            free(t);
            int rc = sub ? add_param(q, k, sub) : CP_ENOMEM;
            free(sub);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* The transform of query answers (proxy__call.transform): the upstream's JSON into the Arrow
 * frame, once saying "miss" for the caller and once saying "hit" for the cache. */
static int frame_transform(const char *arg, const void *raw, size_t len, struct cp_buf *mine,
                           struct cp_buf *keep)
{
    json_error_t je;
    json_t *recipe = json_loads(arg, 0, &je);
    json_t *doc = len ? json_loadb(raw, len, 0, &je) : NULL;
    struct frame fr = {0};
    struct cp_err err;
    const char *ref = json_string_value(json_object_get(recipe, "refId"));
    int rc = CP_EINVAL;
    if (recipe && doc && ref &&
        frame_from_json(doc, recipe, ref, "miss", &fr, &err) == 0 &&
        frame_arrow_encode(&fr, mine) == 0 && frame_set_cache(&fr, "hit") == 0 &&
        frame_arrow_encode(&fr, keep) == 0)
        rc = 0;
    frame_dispose(&fr);
    json_decref(doc);
    json_decref(recipe);
    return rc;
}

static int is_token(const char *m)
{
    if (!*m || strlen(m) > 32)
        return 0;
    for (; *m; m++)
        if (!isalnum((unsigned char)*m) && !strchr("!#$%&'*+-.^_`|~", *m))
            return 0;
    return 1;
}

static void run_query(const struct qctx *qc, const struct proxy_query *q,
                      struct proxy_query_result *r)
{
    struct proxy_ds *ds = qc->ds;
    const struct cfg_ds *cfg = ds->cfg;
    json_error_t je;
    json_t *m = json_loadb(q->json ? q->json : "{}", q->json_len ? q->json_len : 2, 0, &je);
    char *path_sub = NULL, *body = NULL, *recipe_text = NULL;
    struct cp_buf query = {0};
    struct qsink sink = {0};
    json_t *doc = NULL;
    struct frame fr = {0};
    struct auth_creds creds = {0};
    const char *user_token = NULL; /* forwardOAuth: a secret until the error text is clean */
    memset(r, 0, sizeof *r);
    r->status = 200;
    if (!json_is_object(m)) {
        set_error(r, 400, 0, "the query is not a JSON object");
        goto out;
    }

    /* time range aligned to timeAlign, so relative ranges of different users meet */
    int64_t align = cfg->cache.time_align_ms;
    struct proxy__range rg = {q->from_ms, q->to_ms, q->interval_ms, q->max_data_points};
    if (align > 0) {
        rg.from_ms -= ((rg.from_ms % align) + align) % align;
        rg.to_ms -= ((rg.to_ms % align) + align) % align;
    }

    json_t *jm = json_object_get(m, "method"), *jp = json_object_get(m, "path"),
           *jparams = json_object_get(m, "params"), *jh = json_object_get(m, "headers"),
           *jb = json_object_get(m, "body"), *jttl = json_object_get(m, "cacheTtl");
    if ((jm && !json_is_null(jm) && !json_is_string(jm)) ||
        (jp && !json_is_null(jp) && !json_is_string(jp))) {
        set_error(r, 400, 0, "%s must be a string", jm && !json_is_string(jm) ? "method" : "path");
        goto out;
    }
    if (jparams && !json_is_null(jparams) && !json_is_object(jparams)) {
        set_error(r, 400, 0, "params must be an object");
        goto out;
    }
    if (jh && !json_is_null(jh) && !json_is_object(jh)) {
        set_error(r, 400, 0, "headers must be an object");
        goto out;
    }
    if (jb && !json_is_null(jb) && !json_is_string(jb) && !json_is_object(jb) &&
        !json_is_array(jb)) {
        set_error(r, 400, 0, "body must be a string");
        goto out;
    }
    char method[40];
    snprintf(method, sizeof method, "%s", json_is_string(jm) ? json_string_value(jm) : "GET");
    for (char *c = method; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    if (!is_token(method)) {
        set_error(r, 400, 0, "method is not a valid HTTP method");
        goto out;
    }
    if (!proxy__method_forwardable(method)) {
        set_error(r, 405, 0, "method %s is never forwarded", method);
        goto out;
    }
    int64_t ttl_override = -1;
    if (jttl && !json_is_null(jttl)) {
        if (json_is_number(jttl) && json_number_value(jttl) >= 0 &&
            json_number_value(jttl) <= MAX_CACHE_TTL_S)
            ttl_override = (int64_t)(json_number_value(jttl) * 1000);
        else if (!json_is_string(jttl) || cfg_duration_parse(json_string_value(jttl),
                                                              &ttl_override) != 0) {
            set_error(r, 400, 0, "cacheTtl must be a duration such as \"5m\" or seconds, at "
                                 "most 10 years");
            goto out;
        }
    }

    /* path (placeholders first, then the same normalisation as resource paths) */
    path_sub = proxy__substitute(json_is_string(jp) ? json_string_value(jp) : "/", &rg);
    if (!path_sub) {
        set_error(r, 500, 0, "out of memory");
        goto out;
    }
    char *qmark = strchr(path_sub, '?');
    if (qmark) {
        *qmark = 0;
        if (qmark[1] && cp_buf_addstr(&query, qmark + 1)) {
            set_error(r, 500, 0, "out of memory");
            goto out;
        }
    }
    char path[MAX_PATH];
    struct cp_err err = {0};
    const char *rel = path_sub;
    while (*rel == '/')
        rel++;
    if (proxy__path_normalize(rel, NULL, path, sizeof path, &err) != 0) {
        set_error(r, 400, 0, "path: %s", cp_err_text(&err));
        goto out;
    }
    for (const char *c = query.p; c && *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == '#') {
            set_error(r, 400, 0, "path: query string holds spaces or control characters");
            goto out;
        }
    if (json_is_object(jparams) && build_params(jparams, &rg, &query, r) != 0) {
        if (!r->error)
            set_error(r, 500, 0, "out of memory");
        goto out;
    }
    if (jb && !json_is_null(jb)) {
        char *raw = json_is_string(jb) ? strdup(json_string_value(jb))
                                       : json_dumps(jb, JSON_COMPACT);
        body = raw ? proxy__substitute(raw, &rg) : NULL;
        free(raw);
        if (!body) {
            set_error(r, 500, 0, "out of memory");
            goto out;
        }
    }
    if (!auth_glob_any(&cfg->allowed_paths, path)) {
        set_error(r, 404, 0, "path %.200s is not in allowedPaths", path);
        goto out;
    }
    struct auth_decision d;
    struct auth_request ar = {qc->user, method, path, query.p, cfg->uid};
    auth_authorize(ds->auth, &ar, &d);
    if (!d.allow) {
        set_error(r, 403, 0, "%s %s: %s", method, path, d.reason[0] ? d.reason : "denied");
        goto out;
    }

    /* headers: the query's own (never credentials or framing), then the forwarded ones */
    struct proxy_header hs[MAX_QUERY_HEADERS + CP_MAX_FWD_HEADERS];
    size_t nh = 0;
    if (json_is_object(jh)) {
        const char *k;
        json_t *v;
        struct proxy_header tmp[MAX_QUERY_HEADERS];
        size_t nt = 0;
        json_object_foreach(jh, k, v)
        {
            if (!json_is_string(v) || !proxy__header_ok(k, json_string_value(v))) {
                set_error(r, 400, 0, "headers: \"%.60s\" is not a valid header name and value",
                          k);
                goto out;
            }
            if (nt < MAX_QUERY_HEADERS)
                tmp[nt++] = (struct proxy_header){k, json_string_value(v)};
        }
        for (size_t i = 0; i < nt; i++) {
            int clash = 0;
            for (size_t c = 0; c < cfg->nheaders; c++)
                clash |= !strcasecmp(cfg->headers[c].name, tmp[i].name);
            if (!clash && proxy__header_allowed_in_query(tmp[i].name))
                hs[nh++] = tmp[i];
        }
    }
    nh += proxy__filter_headers(cfg, qc->headers, qc->nheaders, hs + nh, CP_MAX_FWD_HEADERS);
    if (proxy__headers_size(hs, nh) > CP_MAX_FWD_HEADER_BYTES) {
        set_error(r, 413, 0, "headers to send upstream exceed %d bytes", CP_MAX_FWD_HEADER_BYTES);
        goto out;
    }

    sink.body.max = (size_t)cfg->max_response_bytes;
    struct proxy_sink ps = {q_start, q_body, &sink};
    struct proxy__call c = {
        .kind = CACHE_KIND_QUERY,
        .method = method,
        .path = path,
        .query = query.p,
        .fwd = hs,
        .nfwd = nh,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .user = qc->user,
        .fwd_authorization = proxy__header(qc->headers, qc->nheaders, "Authorization"),
        .fwd_id_token = proxy__header(qc->headers, qc->nheaders, "X-ID-Token"),
        .scope_override = d.scope,
        .ttl_override_ms = ttl_override,
        .cancelled = qc->cancelled,
        .cancel_ctx = qc->cancel_ctx,
        .transform = frame_transform,
        .creds = &creds,
    };
    /* the frame is what the cache keeps: its recipe is the refId and the model's shaping */
    json_t *recipe = json_pack("{s:s,s:O?,s:O?,s:O?}", "refId", q->ref_id ? q->ref_id : "A",
                               "root", json_object_get(m, "root"), "columns",
                               json_object_get(m, "columns"), "format",
                               json_object_get(m, "format"));
    recipe_text = recipe ? json_dumps(recipe, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(recipe);
    if (!recipe_text) {
        set_error(r, 500, 0, "out of memory");
        goto out;
    }
    c.transform_arg = recipe_text;
    int result = PROXY_BYPASS, transformed = 0;
    proxy__user_token(ds, c.fwd_authorization, 1);
    user_token = c.fwd_authorization;
    int rc = proxy__run(ds, &c, &ps, &result, &transformed, &err);
    if (rc) {
        int st = rc == CP_ERESPBIG || sink.body.len >= sink.body.max
                     ? 502
                     : cp_http_status(err.code ? err.code : rc);
        set_error(r, st, rc != CP_ENOMEM && rc != CP_EBADREQ,
                  "%s", rc == CP_ERESPBIG || sink.body.len >= sink.body.max
                            ? "upstream answer larger than maxResponseBytes"
                            : cp_err_text(&err));
        goto out;
    }
    if (sink.status < 200 || sink.status > 299) {
        /* the start of the answer, redacted before it is cut: a secret the upstream echoed
         * across the cut is still found whole */
        char head[4096], clean[8192], snippet[161];
        size_t hn = sink.body.len < sizeof head - 1 ? sink.body.len : sizeof head - 1;
        for (size_t i = 0; i < hn; i++)
            head[i] = sink.body.p[i] ? sink.body.p[i] : ' ';
        head[hn] = 0;
        cp_redact(ds->env.log, head, clean, sizeof clean);
        size_t n = strlen(clean) < 160 ? strlen(clean) : 160;
        for (size_t i = 0; i < n; i++)
            snippet[i] = isprint((unsigned char)clean[i]) ? clean[i] : ' ';
        snippet[n] = 0;
        set_error(r, sink.status >= 400 ? sink.status : 502, 1, "upstream answered %d to %s %s%s%s",
                  sink.status, method, path, n ? ": " : "", snippet);
        goto out;
    }
    if (transformed) { /* the cache or the pipeline made the frame already */
        if (!(r->frames = malloc(sizeof *r->frames)) ||
            !(r->frame_lens = malloc(sizeof *r->frame_lens))) {
            set_error(r, 500, 0, "out of memory");
            goto out;
        }
        r->frames[0] = (unsigned char *)cp_buf_take(&sink.body, &r->frame_lens[0]);
        r->nframes = 1;
        r->status = 200;
        goto out;
    }
    doc = sink.body.len ? json_loadb(sink.body.p, sink.body.len, 0, &je) : NULL;
    if (!doc) {
        set_error(r, 502, 1, "upstream answer to %s %s is not JSON", method, path);
        goto out;
    }
    if (frame_from_json(doc, m, q->ref_id ? q->ref_id : "A", result_name(result), &fr,
                             &err) != 0) {
        set_error(r, err.code == CP_ENOMEM ? 500 : 400, 0, "%s", cp_err_text(&err));
        goto out;
    }
    struct cp_buf arrow = {0};
    if (frame_arrow_encode(&fr, &arrow) != 0 || !(r->frames = malloc(sizeof *r->frames)) ||
        !(r->frame_lens = malloc(sizeof *r->frame_lens))) {
        cp_buf_free(&arrow);
        set_error(r, 500, 0, "could not encode the frame");
        goto out;
    }
    r->frames[0] = (unsigned char *)cp_buf_take(&arrow, &r->frame_lens[0]);
    r->nframes = 1;
    r->status = 200;
out:
    if (r->error) { /* an upstream may echo credentials: no secret reaches the user */
        char clean[700];
        cp_redact(ds->env.log, r->error, clean, sizeof clean);
        free(r->error);
        r->error = strdup(cp_utf8_fix(clean));
    }
    auth_creds_wipe(&creds);
    proxy__user_token(ds, user_token, 0);
    free(recipe_text);
    frame_dispose(&fr);
    json_decref(doc);
    json_decref(m);
    cp_buf_free(&sink.body);
    cp_buf_free(&query);
    free(path_sub);
    free(body);
}

/* ---- running queries concurrently ------------------------------------------------------------ */

struct batch {
    const struct qctx *qc;
    const struct proxy_query *queries;
    struct proxy_query_result *results;
    _Atomic int *claimed;
    size_t n, done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic unsigned refs; /* the caller's plus one per queued job */
};

struct job {
    struct batch *b;
    size_t i;
};

static void batch_unref(struct batch *b)
{
    if (atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->claimed);
    free(b);
}

/* Runs query i unless someone already took it. */
static void try_run(struct batch *b, size_t i)
{
    if (atomic_exchange(&b->claimed[i], 1))
        return;
    run_query(b->qc, &b->queries[i], &b->results[i]);
    pthread_mutex_lock(&b->mu);
    b->done++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void job_run(void *arg)
{
    struct job *j = arg;
    struct batch *b = j->b;
    /* a job that runs after the caller went home finds its query claimed and does nothing */
    try_run(b, j->i);
    free(j);
    batch_unref(b);
}

void proxy_query_data(struct proxy_ds *ds, const struct proxy_query *queries, size_t n,
                      const struct cp_user *user, const struct proxy_header *headers,
                      size_t nheaders, int (*cancelled)(void *), void *cancel_ctx,
                      struct proxy_query_result *results)
{
    struct qctx qc = {ds, user, headers, nheaders, cancelled, cancel_ctx};
    if (n == 1 || !ds->env.pool) {
        for (size_t i = 0; i < n; i++)
            run_query(&qc, &queries[i], &results[i]);
        return;
    }
    struct batch *b = calloc(1, sizeof *b);
    _Atomic int *claimed = calloc(n, sizeof *claimed);
    if (!b || !claimed) {
        free(b);
        free(claimed);
        for (size_t i = 0; i < n; i++)
            run_query(&qc, &queries[i], &results[i]);
        return;
    }
    b->qc = &qc;
    b->queries = queries;
    b->results = results;
    b->claimed = claimed;
    b->n = n;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    atomic_init(&b->refs, 1);
    /* hand all but the first to the pool; this thread runs the first and then helps with
     * whatever no worker has picked up yet, so a busy pool never stalls the request */
    for (size_t i = 1; i < n; i++) {
        struct job *j = malloc(sizeof *j);
        if (!j)
            break;
        j->b = b;
        j->i = i;
        atomic_fetch_add(&b->refs, 1);
        if (cp_pool_submit(ds->env.pool, job_run, j) != 0) {
            atomic_fetch_sub(&b->refs, 1);
            free(j);
        }
    }
    for (size_t i = 0; i < n; i++)
        try_run(b, i);
    pthread_mutex_lock(&b->mu);
    while (b->done < n)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    batch_unref(b);
}
