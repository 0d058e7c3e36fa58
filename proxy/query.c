/*
 * query.c - data queries (SPEC.md section 7): the query model translated into a pipeline
 * call (placeholders substituted in the backend, so alerting works without the frontend,
 * after aligning the time range to timeAlign), the same admission, authorization,
 * credentials, cache and coalescing as resources, and one Arrow frame per query, made in one
 * place (proxy__frame_transform). Queries of one request run concurrently on the loop; each
 * fails on its own.
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

#define MAX_TIME_MS (1LL << 52) /* times beyond are refused (no overflow when aligned) */
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

void proxy__qerror(struct proxy_query_result *r, int status, int downstream, const char *fmt, ...)
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

void proxy__iso(int64_t ms, char *out, size_t n)
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
            proxy__iso(v, val, sizeof val);
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
                proxy__qerror(r, 400, 0, "params.%.80s must be a string, number, boolean or a list "
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

/* ---- the frame: one place where answers become frames ---------------------------------------- */

int64_t proxy__ms_to_ns(int64_t ms)
{
    const int64_t lim = INT64_MAX / 1000000;
    return ms > lim ? INT64_MAX : ms < -lim ? INT64_MIN : ms * 1000000;
}

/* meta.channel: the Grafana Live channel the frame continues on. */
static int set_meta_channel(struct frame *fr, const char *channel)
{
    json_error_t je;
    json_t *meta = fr->meta_json ? json_loads(fr->meta_json, 0, &je) : json_object();
    char *t = NULL;
    if (json_is_object(meta) && !json_object_set_new(meta, "channel", json_string(channel)))
        t = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    if (!t)
        return CP_ENOMEM;
    free(fr->meta_json);
    fr->meta_json = t;
    return 0;
}

encode_fn proxy__recipe_encoder(json_t *recipe)
{
    return json_is_true(json_object_get(recipe, "json"))   ? frame_to_json
           : json_is_true(json_object_get(recipe, "blob")) ? frame_blob_encode
                                                           : frame_arrow_encode;
}

/* A piece of a split query: the rows of its own interval, in the compact form the join reads
 * (the same bytes for the caller and the cache). */
static int piece_transform(json_t *piece, struct frame *fr, struct cp_buf *mine,
                           struct cp_buf *keep, struct cp_err *err)
{
    int64_t from = proxy__ms_to_ns(json_integer_value(json_array_get(piece, 0))),
            to = proxy__ms_to_ns(json_integer_value(json_array_get(piece, 1)));
    if (fr->nrows && frame_time_field(fr) < 0)
        return cp_err_set(err, CP_EINVAL, "split needs a time column in the frame (name it time "
                                          "or give it type time), or set split to \"off\"");
    if (frame_keep_time(fr, from, to) != 0 || frame_blob_encode(fr, mine) ||
        cp_buf_add(keep, mine->p, mine->len))
        return cp_err_set(err, CP_ENOMEM, "could not encode the frame");
    return 0;
}

int proxy__frame_transform(const char *recipe, const void *raw, size_t len, const char *result,
                           struct cp_buf *mine, struct cp_buf *keep, struct cp_err *err)
{
    json_error_t je;
    json_t *r = json_loads(recipe, 0, &je);
    /* any JSON value (a bare 42 is JSON too; the root then says it is no list of rows), and
     * strings holding \u0000 */
    json_t *doc = len ? json_loadb(raw, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je) : NULL;
    struct frame fr = {0};
    const char *ref = json_string_value(json_object_get(r, "refId"));
    /* the recipe names the encoding, so the cache keys of the two never meet */
    int (*encode)(const struct frame *, struct cp_buf *) = proxy__recipe_encoder(r);
    int rc = 0;
    if (!doc)
        rc = cp_err_set(err, CP_EUPSTREAM, "the upstream's answer is not JSON");
    else if (!r || !ref)
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    else if ((rc = frame_from_json(doc, r, ref, result, &fr, err)) != 0)
        rc = err->code == CP_ENOMEM ? CP_ENOMEM : CP_EINVAL;
    else if (json_is_string(json_object_get(r, "channel")) &&
             set_meta_channel(&fr, json_string_value(json_object_get(r, "channel"))) != 0)
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    else if (json_is_array(json_object_get(r, "piece")))
        rc = piece_transform(json_object_get(r, "piece"), &fr, mine, keep, err);
    else if (encode(&fr, mine) != 0 || frame_set_cache(&fr, "hit") != 0 ||
             encode(&fr, keep) != 0)
        rc = cp_err_set(err, CP_ENOMEM, "could not encode the frame");
    frame_dispose(&fr);
    json_decref(doc);
    json_decref(r);
    return rc;
}

/* ---- one query -------------------------------------------------------------------------------- */

struct qrun {
    struct proxy_batch *b;
    const struct proxy_query *q;
    struct proxy_query_result *r;
    json_t *m;
    struct proxy__qreq req;
    char *recipe;
    struct proxy_header hs[32];
    struct proxy__qspec spec;
    struct proxy__incoming in;
    struct proxy_call *call;
    struct proxy__split *split; /* a split query: its pieces run there */
    int status;
    struct cp_buf answer; /* the frame, or the upstream's answer when there is none */
};

struct proxy_batch {
    _Atomic unsigned refs; /* the caller's, plus one while queries run */
    struct proxy_ds *ds;
    const struct cp_user *user;
    const struct proxy_header *headers;
    size_t nheaders;
    struct qrun *runs;
    size_t n;
    _Atomic size_t left;
    void (*done)(void *ctx);
    void *ctx;
};

static void batch_unref(struct proxy_batch *b)
{
    if (atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    for (size_t i = 0; i < b->n; i++) {
        struct qrun *q = &b->runs[i];
        proxy_call_release(q->call);
        proxy__split_free(q->split);
        json_decref(q->m);
        proxy__qreq_free(&q->req);
        free(q->recipe);
        cp_buf_free(&q->answer);
    }
    proxy_ds_free(b->ds);
    free(b->runs);
    free(b);
}

void proxy_batch_release(struct proxy_batch *b)
{
    if (b)
        batch_unref(b);
}

/* An error text reaches the user only redacted (an upstream may echo a credential) and as
 * valid UTF-8. Called while the query's credentials are still registered. */
void proxy__query_clean_error(struct proxy_ds *ds, struct proxy_query_result *r)
{
    if (!r->error)
        return;
    char clean[700];
    cp_redact(ds->env.log, r->error, clean, sizeof clean);
    free(r->error);
    r->error = strdup(cp_utf8_fix(clean));
}

static void one_done(struct qrun *q)
{
    struct proxy_batch *b = q->b;
    if (atomic_fetch_sub(&b->left, 1) == 1) {
        b->done(b->ctx);
        batch_unref(b);
    }
}

static int q_head(struct proxy_call *c, int status, const struct proxy_header *h, size_t n)
{
    (void)h, (void)n;
    struct qrun *q = proxy__call_ctx(c);
    q->status = status;
    q->answer.max = (size_t)q->b->ds->cfg->max_response_bytes;
    return 0;
}

static int q_body(struct proxy_call *c, const void *p, size_t n)
{
    struct qrun *q = proxy__call_ctx(c);
    return cp_buf_add(&q->answer, p, n) ? CP_ERESPBIG : 0;
}

static int downstream_code(int code)
{
    return code == CP_EUPSTREAM || code == CP_ETIMEDOUT || code == CP_ERESPBIG ||
           code == CP_ECANCELED;
}

void proxy__query_call_error(struct proxy_query_result *r, const struct cp_err *err)
{
    int code = err->code ? err->code : CP_EINTERNAL;
    proxy__qerror(r, cp_http_status(code), downstream_code(code), "%s", cp_err_text(err));
}

static void q_error(struct proxy_call *c, const struct cp_err *err)
{
    struct qrun *q = proxy__call_ctx(c);
    proxy__query_call_error(q->r, err);
}

int proxy__query_verdict(struct proxy_ds *ds, int rc, int status, const struct cp_buf *answer,
                         const char *method, const char *path, int transformed,
                         struct proxy_query_result *r)
{
    if (r->error) {
        /* set by the front's error callback */
    } else if (rc == CP_ERESPBIG || (answer->max && answer->len >= answer->max)) {
        proxy__qerror(r, 502, 1, "upstream answer larger than maxResponseBytes");
    } else if (rc) {
        proxy__qerror(r, rc == CP_ECANCELED ? 499 : 502, 1, "%s", cp_strerror(rc));
    } else if (status < 200 || status > 299) {
        /* the start of the answer, redacted before it is cut: a secret the upstream echoed
         * across the cut is still found whole */
        char head[4096], clean[8192], snippet[161];
        size_t hn = answer->len < sizeof head - 1 ? answer->len : sizeof head - 1;
        for (size_t i = 0; i < hn; i++)
            head[i] = answer->p[i] ? answer->p[i] : ' ';
        head[hn] = 0;
        cp_redact(ds->env.log, head, clean, sizeof clean);
        size_t n = strlen(clean) < 160 ? strlen(clean) : 160;
        for (size_t i = 0; i < n; i++)
            snippet[i] = isprint((unsigned char)clean[i]) ? clean[i] : ' ';
        snippet[n] = 0;
        proxy__qerror(r, status >= 400 ? status : 502, 1, "upstream answered %d to %s %s%s%s",
                  status, method, path, n ? ": " : "", snippet);
    } else if (!transformed) {
        proxy__qerror(r, 500, 0, "the answer made no frame");
    }
    return r->error ? CP_EINVAL : 0;
}

static void q_done(struct proxy_call *c, int rc)
{
    struct qrun *q = proxy__call_ctx(c);
    struct proxy_query_result *r = q->r;
    struct proxy_ds *ds = q->b->ds;
    int transformed = 0;
    proxy__call_result(c, &transformed);
    if (q->q->check_only) {
        if (!r->error && rc)
            proxy__qerror(r, rc == CP_ECANCELED ? 499 : 500, 0, "%s", cp_strerror(rc));
        if (!r->error)
            r->status = 200;
    } else if (proxy__query_verdict(ds, rc, q->status, &q->answer, q->spec.method, q->in.path,
                             transformed, r) != 0) {
        /* the error is set */
    } else if (!(r->frames = malloc(sizeof *r->frames)) ||
               !(r->frame_lens = malloc(sizeof *r->frame_lens))) {
        proxy__qerror(r, 500, 0, "out of memory");
    } else {
        r->frames[0] = (unsigned char *)cp_buf_take(&q->answer, &r->frame_lens[0]);
        r->nframes = 1;
        r->status = 200;
    }
    proxy__query_clean_error(ds, r);
    one_done(q);
}

static const struct proxy__call_ops query_ops = {q_head, q_body, q_error, q_done};

void proxy__qreq_free(struct proxy__qreq *rq)
{
    free(rq->path);
    free(rq->body);
    cp_buf_free(&rq->query);
    memset(rq, 0, sizeof *rq);
}

int proxy__query_request(json_t *m, const struct proxy__range *rg, struct proxy__qreq *out,
                         struct proxy_query_result *r)
{
    json_t *jp = json_object_get(m, "path"), *jparams = json_object_get(m, "params"),
           *jb = json_object_get(m, "body");
    memset(out, 0, sizeof *out);
    /* path (placeholders first; admission normalises it like resource paths) */
    out->path = proxy__substitute(json_is_string(jp) ? json_string_value(jp) : "/", rg);
    if (!out->path)
        goto nomem;
    char *qmark = strchr(out->path, '?');
    if (qmark) {
        *qmark = 0;
        if (qmark[1] && cp_buf_addstr(&out->query, qmark + 1))
            goto nomem;
    }
    if (json_is_object(jparams) && build_params(jparams, rg, &out->query, r) != 0) {
        if (!r->error)
            goto nomem;
        return CP_EINVAL;
    }
    if (jb && !json_is_null(jb)) {
        char *raw = json_is_string(jb) ? strdup(json_string_value(jb))
                                       : json_dumps(jb, JSON_COMPACT);
        out->body = raw ? proxy__substitute(raw, rg) : NULL;
        free(raw);
        if (!out->body)
            goto nomem;
    }
    return 0;
nomem:
    proxy__qerror(r, 500, 0, "out of memory");
    return CP_ENOMEM;
}

/* Whether the request depends on the time range: built for a range a day later, it differs. */
static int uses_time_range(json_t *m, const struct proxy__qreq *rq, const struct proxy__range *rg,
                           struct proxy_query_result *r)
{
    struct proxy__range later = *rg;
    later.from_ms += 86400000;
    later.to_ms += 86400000;
    struct proxy__qreq other;
    if (proxy__query_request(m, &later, &other, r) != 0)
        return CP_EINVAL;
    int differs = strcmp(rq->path, other.path) ||
                  strcmp(rq->query.p ? rq->query.p : "", other.query.p ? other.query.p : "") ||
                  strcmp(rq->body ? rq->body : "", other.body ? other.body : "");
    proxy__qreq_free(&other);
    return differs;
}

/* The query's split interval: its own "split" (a duration, or "off"/false/0), else the data
 * source's querySplit. 0: not split; CP_EINVAL: error set in r. */
static int64_t split_of(json_t *m, const struct cfg_ds *cfg, int *explicit,
                        struct proxy_query_result *r)
{
    json_t *js = json_object_get(m, "split");
    int64_t ms = 0;
    *explicit = 0;
    if (!js || json_is_null(js))
        return cfg->cache.query_split_ms;
    *explicit = 1;
    if (json_is_false(js) || (json_is_string(js) && !strcmp(json_string_value(js), "off")))
        return 0;
    if (json_is_number(js) && json_number_value(js) >= 0 &&
        json_number_value(js) <= MAX_CACHE_TTL_S)
        ms = (int64_t)(json_number_value(js) * 1000);
    else if (!json_is_string(js) || cfg_duration_parse(json_string_value(js), &ms) != 0) {
        proxy__qerror(r, 400, 0, "split must be a duration such as \"1h\", or \"off\"");
        return CP_EINVAL;
    }
    if (ms && ms < 1000) {
        proxy__qerror(r, 400, 0, "split must be at least 1s");
        return CP_EINVAL;
    }
    return ms;
}

static void split_done(void *ctx) { one_done(ctx); }

/* The query model in the pipeline's terms; 0, or an error set in the result. */
static int translate(struct qrun *q)
{
    struct proxy_batch *b = q->b;
    const struct cfg_ds *cfg = b->ds->cfg;
    const struct proxy_query *pq = q->q;
    struct proxy_query_result *r = q->r;
    json_error_t je;
    q->m = json_loadb(pq->json ? pq->json : "{}", pq->json_len ? pq->json_len : 2, 0, &je);
    if (!json_is_object(q->m)) {
        proxy__qerror(r, 400, 0, "the query is not a JSON object");
        return CP_EINVAL;
    }
    json_t *m = q->m;
    if (pq->from_ms < -MAX_TIME_MS || pq->from_ms > MAX_TIME_MS || pq->to_ms < -MAX_TIME_MS ||
        pq->to_ms > MAX_TIME_MS) {
        proxy__qerror(r, 400, 0, "the time range is out of bounds (epoch milliseconds within "
                                 "+-2^52)");
        return CP_EINVAL;
    }
    /* time range aligned to timeAlign, so relative ranges of different users meet: the start
     * down, the end up (a range shorter than the step keeps its data) */
    int64_t align = pq->exact_range ? 0 : cfg->cache.time_align_ms;
    struct proxy__range rg = {pq->from_ms, pq->to_ms, pq->interval_ms, pq->max_data_points};
    if (align > 0) {
        rg.from_ms -= ((rg.from_ms % align) + align) % align;
        int64_t over = ((rg.to_ms % align) + align) % align;
        if (over)
            rg.to_ms += align - over;
    }
    json_t *jm = json_object_get(m, "method"), *jp = json_object_get(m, "path"),
           *jparams = json_object_get(m, "params"), *jh = json_object_get(m, "headers"),
           *jb = json_object_get(m, "body"), *jttl = json_object_get(m, "cacheTtl");
    if ((jm && !json_is_null(jm) && !json_is_string(jm)) ||
        (jp && !json_is_null(jp) && !json_is_string(jp))) {
        proxy__qerror(r, 400, 0, "%s must be a string", jm && !json_is_string(jm) ? "method" : "path");
        return CP_EINVAL;
    }
    if (jparams && !json_is_null(jparams) && !json_is_object(jparams)) {
        proxy__qerror(r, 400, 0, "params must be an object");
        return CP_EINVAL;
    }
    if (jh && !json_is_null(jh) && !json_is_object(jh)) {
        proxy__qerror(r, 400, 0, "headers must be an object");
        return CP_EINVAL;
    }
    if (jb && !json_is_null(jb) && !json_is_string(jb) && !json_is_object(jb) &&
        !json_is_array(jb)) {
        proxy__qerror(r, 400, 0, "body must be a string");
        return CP_EINVAL;
    }
    struct proxy__qspec *sp = &q->spec;
    snprintf(sp->method, sizeof sp->method, "%s",
             json_is_string(jm) ? json_string_value(jm) : "GET");
    sp->ttl_override_ms = -1;
    if (jttl && !json_is_null(jttl)) {
        if (json_is_number(jttl) && json_number_value(jttl) >= 0 &&
            json_number_value(jttl) <= MAX_CACHE_TTL_S)
            sp->ttl_override_ms = (int64_t)(json_number_value(jttl) * 1000);
        else if (!json_is_string(jttl) ||
                 cfg_duration_parse(json_string_value(jttl), &sp->ttl_override_ms) != 0) {
            proxy__qerror(r, 400, 0, "cacheTtl must be a duration such as \"5m\" or seconds, at "
                                 "most 10 years");
            return CP_EINVAL;
        }
    }
    int explicit_split;
    int64_t split = split_of(m, cfg, &explicit_split, r);
    if (split < 0)
        return CP_EINVAL;
    if (proxy__query_request(m, &rg, &q->req, r) != 0)
        return CP_EINVAL;
    /* once, with its whole range, however it runs; a stream's polls and checks are not the
     * client's demand */
    if (b->ds->env.access && !pq->exact_range && !pq->check_only) {
        const char *p = q->req.path;
        while (*p == '/')
            p++;
        struct proxy_access a = {PROXY_KIND_QUERY, NULL, p, q->req.query.p, b->user};
        b->ds->env.access(b->ds->env.access_ctx, &a);
    }
    /* the query's own headers: never credentials or framing, nor a data source header's name */
    size_t nh = 0;
    if (json_is_object(jh)) {
        const char *k;
        json_t *v;
        json_object_foreach(jh, k, v)
        {
            if (!json_is_string(v) || !proxy__header_ok(k, json_string_value(v))) {
                proxy__qerror(r, 400, 0, "headers: \"%.60s\" is not a valid header name and value",
                          k);
                return CP_EINVAL;
            }
            int clash = 0;
            for (size_t c = 0; c < cfg->nheaders; c++)
                clash |= !strcasecmp(cfg->headers[c].name, k);
            if (!clash && proxy__header_allowed_in_query(k) && nh < sizeof q->hs / sizeof q->hs[0])
                q->hs[nh++] = (struct proxy_header){k, json_string_value(v)};
        }
    }
    /* the frame is what the cache keeps: its recipe is the refId and the model's shaping */
    json_t *recipe = json_pack("{s:s,s:O?,s:O?,s:O?}", "refId", pq->ref_id ? pq->ref_id : "A",
                               "root", json_object_get(m, "root"), "columns",
                               json_object_get(m, "columns"), "format",
                               json_object_get(m, "format"));
    /* live: true: the frame names the channel that polls this query (Grafana subscribes) */
    if (recipe && json_is_true(json_object_get(m, "live"))) {
        int64_t every = pq->interval_ms;
        json_t *li = json_object_get(m, "liveInterval");
        if (li && !json_is_null(li) &&
            (json_is_number(li) ? (every = (int64_t)(json_number_value(li) * 1000)) < 0
                                : !json_is_string(li) ||
                                      cfg_duration_parse(json_string_value(li), &every) != 0)) {
            json_decref(recipe);
            proxy__qerror(r, 400, 0, "liveInterval must be a duration such as \"5s\"");
            return CP_EINVAL;
        }
        char *ch = proxy__live_channel(b->ds, m, pq->ref_id ? pq->ref_id : "A", every,
                                       pq->to_ms - pq->from_ms, b->user); /* as asked */
        if (!ch || json_object_set_new(recipe, "channel", json_string(ch)) != 0) {
            json_decref(recipe);
            recipe = NULL;
        }
        free(ch);
    }
    /* other forms: a recipe of their own (an Arrow recipe stays as it was, keys unchanged) */
    if (recipe && pq->form != PROXY_FRAME_ARROW &&
        json_object_set_new(recipe, pq->form == PROXY_FRAME_JSON ? "json" : "blob",
                            json_true()) != 0) {
        json_decref(recipe);
        recipe = NULL;
    }
    q->recipe = recipe ? json_dumps(recipe, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(recipe);
    if (!q->recipe) {
        proxy__qerror(r, 500, 0, "out of memory");
        return CP_ENOMEM;
    }
    sp->model = m;
    sp->rg = rg;
    sp->own = q->hs;
    sp->nown = nh;
    sp->headers = b->headers;
    sp->nheaders = b->nheaders;
    sp->user = b->user;
    sp->recipe = q->recipe;
    /* split: only a query whose request carries the time range can be cut into pieces */
    if (split > 0) {
        int uses = uses_time_range(m, &q->req, &rg, r);
        if (uses < 0)
            return CP_EINVAL;
        if (!uses && explicit_split) {
            proxy__qerror(r, 400, 0, "split needs the time range in path, params or body "
                                 "(${__from}, ${__to} and their :s and :iso forms); without "
                                 "them, set split to \"off\"");
            return CP_EINVAL;
        }
        if (uses && rg.to_ms > rg.from_ms && !pq->check_only)
            return proxy__split_start(b->ds, sp, split, r, split_done, q, &q->split);
    }
    q->in = (struct proxy__incoming){.kind = CACHE_KIND_QUERY,
                                     .method = sp->method,
                                     .path = q->req.path,
                                     .query = q->req.query.p,
                                     .headers = b->headers,
                                     .nheaders = b->nheaders,
                                     .own = q->hs,
                                     .nown = nh,
                                     .body = q->req.body,
                                     .body_len = q->req.body ? strlen(q->req.body) : 0,
                                     .user = b->user,
                                     .check_only = pq->check_only};
    return proxy__call_start(b->ds, &q->in, &query_ops, q, sp->ttl_override_ms, q->recipe,
                             &q->call);
}

int proxy_query_start(struct proxy_ds *ds, const struct proxy_query *queries, size_t n,
                      const struct cp_user *user, const struct proxy_header *headers,
                      size_t nheaders, struct proxy_query_result *results,
                      void (*done)(void *ctx), void *ctx, struct proxy_batch **out)
{
    struct proxy_batch *b = calloc(1, sizeof *b);
    struct qrun *runs = calloc(n ? n : 1, sizeof *runs);
    if (!b || !runs) {
        free(b);
        free(runs);
        return CP_ENOMEM;
    }
    proxy__ds_ref(ds);
    b->ds = ds;
    b->user = user;
    b->headers = headers;
    b->nheaders = nheaders;
    b->runs = runs;
    b->n = n;
    b->done = done;
    b->ctx = ctx;
    atomic_init(&b->refs, 2);          /* the caller's and the running queries' */
    atomic_init(&b->left, n + 1);      /* each query, and this function */
    *out = b;
    for (size_t i = 0; i < n; i++) {
        struct qrun *q = &runs[i];
        q->b = b;
        q->q = &queries[i];
        q->r = &results[i];
        memset(q->r, 0, sizeof *q->r);
        q->r->status = 200;
        if (translate(q) != 0) {
            if (!q->r->error)
                proxy__qerror(q->r, 500, 0, "out of memory");
            proxy__query_clean_error(ds, q->r);
            one_done(q);
        }
    }
    one_done(&(struct qrun){.b = b});
    return 0;
}

void proxy_batch_cancel(struct proxy_batch *b)
{
    for (size_t i = 0; b && i < b->n; i++) {
        proxy_call_cancel(b->runs[i].call);
        proxy__split_cancel(b->runs[i].split);
    }
}
