/*
 * resource.c - resource calls (SPEC.md section 4): the routes proxy/<path>, cache/stats and
 * cache/purge, plugin errors answered as JSON {"error","status"}, and the fast path that
 * answers memory hits and refusals on the caller's thread. proxy/<path> goes through the
 * pipeline (call.c) after the one admission phase (admit.c).
 */
#include "proxy_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int proxy_send_error(const struct proxy_sink *sink, int status, const char *msg)
{
    char text[512];
    snprintf(text, sizeof text, "%s", msg ? msg : "");
    json_t *j = json_pack("{s:s,s:i}", "error", cp_utf8_fix(text), "status", status);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct proxy_header h[] = {{"Content-Type", "application/json"},
                               {"Cache-Control", "no-store"}};
    int rc = sink->head(sink->ctx, status, h, 2);
    if (!rc && body)
        rc = sink->body(sink->ctx, body, strlen(body));
    free(body);
    return rc ? CP_ECANCELED : 0;
}

static int send_json(const struct proxy_sink *sink, int status, json_t *j)
{
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body)
        return proxy_send_error(sink, 500, "out of memory");
    struct proxy_header h[] = {{"Content-Type", "application/json"},
                               {"Cache-Control", "no-store"}};
    int rc = sink->head(sink->ctx, status, h, 2);
    if (!rc)
        rc = sink->body(sink->ctx, body, strlen(body));
    free(body);
    return rc ? CP_ECANCELED : 0;
}

/* A plugin error: counted, redacted (an upstream may echo a credential), answered as JSON. */
static int fail(struct proxy_ds *ds, const struct proxy_sink *sink, const struct cp_err *err)
{
    proxy__count_error(ds);
    char text[sizeof err->msg + 64];
    cp_redact(ds->env.log, cp_err_text(err), text, sizeof text);
    return proxy_send_error(sink, cp_http_status(err->code), text);
}

/* Answers synchronously and ends the call (routes that need no pipeline). */
static int answered(const struct proxy_sink *sink, int rc, struct proxy_call **out)
{
    sink->done(sink->ctx, rc);
    *out = NULL;
    return 0;
}

/* Splits Grafana's url field ("proxy/a%20b?x=1", leading '/' optional) into the escaped
 * sub-path after "proxy/" and the query. Returns 0, 1 when there is no raw form (the decoded
 * path alone is checked), or CP_EBADREQ when it does not name the proxy route. */
static int split_raw(const char *raw_url, char *sub, size_t size, const char **query)
{
    *query = NULL;
    if (!raw_url)
        return 1;
    const char *u = raw_url;
    while (*u == '/')
        u++;
    /* the sub-path form ("proxy/..."), or a whole request path some hosts send: then what
     * follows its first ".../resources/" */
    if (strncmp(u, "proxy", 5) || (u[5] && u[5] != '/' && u[5] != '?')) {
        const char *qs = strchr(u, '?');
        const char *r = strstr(u, "/resources/");
        if (r && (!qs || r < qs))
            u = r + 11;
    }
    while (*u == '/')
        u++;
    const char *q = strchr(u, '?');
    size_t n = q ? (size_t)(q - u) : strlen(u);
    if (q)
        *query = q + 1;
    if (n < 5 || strncmp(u, "proxy", 5) || (n > 5 && u[5] != '/'))
        return CP_EBADREQ;
    u += n > 5 ? 6 : 5;
    n -= n > 5 ? 6 : 5;
    if (n >= size)
        return CP_EBADREQ;
    memcpy(sub, u, n);
    sub[n] = 0;
    return 0;
}

/* The route of a resource path: "proxy/..." (sets *sub), "cache/stats", "cache/purge". */
enum route { ROUTE_PROXY, ROUTE_STATS, ROUTE_PURGE, ROUTE_UNKNOWN };

static enum route route_of(const char *path, const char **sub)
{
    const char *p = path ? path : "";
    while (*p == '/')
        p++;
    if (!strncmp(p, "proxy/", 6) || !strcmp(p, "proxy")) {
        *sub = p[5] ? p + 6 : "";
        return ROUTE_PROXY;
    }
    if (!strcmp(p, "cache/stats"))
        return ROUTE_STATS;
    if (!strcmp(p, "cache/purge"))
        return ROUTE_PURGE;
    return ROUTE_UNKNOWN;
}

/* The front's request in the pipeline's terms. rawsub: storage for the escaped sub-path. */
static int incoming_of(const struct proxy_request *rq, const char *sub, char *rawsub,
                       size_t size, struct proxy__incoming *in, struct cp_err *err)
{
    const char *query = NULL;
    int rs = split_raw(rq->raw_url, rawsub, size, &query);
    if (rs < 0)
        return cp_err_set(err, CP_EBADREQ, "request URL does not match the resource path");
    *in = (struct proxy__incoming){.kind = CACHE_KIND_RESOURCE,
                                   .method = rq->method,
                                   .path = sub,
                                   .raw_path = rs == 0 ? rawsub : NULL,
                                   .query = query,
                                   .headers = rq->headers,
                                   .nheaders = rq->nheaders,
                                   .body = rq->body,
                                   .body_len = rq->body_len,
                                   .user = &rq->user};
    return 0;
}

/* Tells the access log about a proxy/ call, once, from the path that answers it: the
 * escaped sub-path and query the client sent, or (no raw form, or one that did not match)
 * the decoded sub-path encoded again. */
static void note_access(struct proxy_ds *ds, const struct proxy_request *rq,
                        const struct proxy__incoming *in, const char *sub)
{
    if (!ds->env.access)
        return;
    char *enc = NULL;
    const char *path = in && in->raw_path ? in->raw_path : (enc = proxy__path_encode(sub));
    if (!path)
        return;
    struct proxy_access a = {PROXY_KIND_RESOURCE, rq->method, path,
                             in && in->raw_path ? in->query : NULL, &rq->user};
    ds->env.access(ds->env.access_ctx, &a);
    free(enc);
}

/* ---- proxy/<path> through the pipeline ------------------------------------------------------- */

struct res {
    struct proxy_ds *ds;
    struct proxy_sink sink;
    struct proxy__incoming in;
    int error_sent; /* the call ended in an error answered as JSON: 1, or -1 when that broke */
    size_t rawsub_size;
    char rawsub[]; /* the escaped sub-path: as long as the request's URL, at most CP_MAX_PATH */
};

static int res_head(struct proxy_call *c, int status, const struct proxy_header *h, size_t n)
{
    struct res *r = proxy__call_ctx(c);
    return r->sink.head(r->sink.ctx, status, h, n);
}

static int res_body(struct proxy_call *c, const void *p, size_t n)
{
    struct res *r = proxy__call_ctx(c);
    return r->sink.body(r->sink.ctx, p, n);
}

/* Refusals from admission and authorization are the client's doing; anything after them is
 * the upstream's (or ours) and worth a warning. */
static int upstream_side(int code)
{
    return code != CP_EBADREQ && code != CP_EDENIED && code != CP_ENOPATH &&
           code != CP_ETOOBIG && code != CP_EMETHOD;
}

static void res_error(struct proxy_call *c, const struct cp_err *err)
{
    struct res *r = proxy__call_ctx(c);
    if (upstream_side(err->code)) {
        struct cp_kv kv[] = {CP_KV_S("error", cp_err_text(err)), CP_KV_S("method", r->in.method),
                             CP_KV_S("path", r->in.path), CP_KV_S("dsUid", r->ds->cfg->uid)};
        cp_log(r->ds->env.log, CP_LOG_WARN, "upstream call failed", kv, 4);
    }
    r->error_sent = fail(r->ds, &r->sink, err) == 0 ? 1 : -1;
}

static void res_done(struct proxy_call *c, int rc)
{
    struct res *r = proxy__call_ctx(c);
    /* an error answered as JSON is a complete answer */
    if (r->error_sent)
        rc = r->error_sent > 0 ? 0 : CP_ECANCELED;
    r->sink.done(r->sink.ctx, rc);
    free(r);
}

static const struct proxy__call_ops res_ops = {res_head, res_body, res_error, res_done};

/* ---- cache/stats and cache/purge ---------------------------------------------------------------- */

static int handle_stats(struct proxy_ds *ds, const struct proxy_sink *sink)
{
    struct cache_usage u;
    cache_usage(ds->store, &u);
    uint64_t hits = atomic_load(&ds->hits), misses = atomic_load(&ds->misses),
             stale = atomic_load(&ds->stale), lookups = hits + misses + stale;
    uint64_t reval = atomic_load(&ds->revalidated);
    lookups += reval;
    json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I}", "backend",
                          cache_store_backend(ds->store), "entries", (json_int_t)u.entries,
                          "bytes", (json_int_t)u.bytes, "hits", (json_int_t)hits, "misses",
                          (json_int_t)misses, "stale", (json_int_t)stale, "revalidated",
                          (json_int_t)reval, "bypass", (json_int_t)atomic_load(&ds->bypass),
                          "coalesced", (json_int_t)atomic_load(&ds->coalesced), "hitRatio",
                          lookups ? (double)(hits + stale + reval) / (double)lookups : 0.0,
                          "upstreamRequests", (json_int_t)atomic_load(&ds->upstream_requests),
                          "errors", (json_int_t)atomic_load(&ds->errors));
    json_object_set_new(j, "splitPieces",
                        json_pack("{s:I,s:I}", "hit", (json_int_t)atomic_load(&ds->pieces_hit),
                                  "fetched", (json_int_t)atomic_load(&ds->pieces_fetched)));
    return send_json(sink, 200, j);
}

struct purge {
    struct proxy_ds *ds;
    struct proxy_sink sink;
    json_t *body; /* holds prefix */
    const char *prefix;
    char login[128];
};

/* On the io pool when the store does I/O (Redis SCAN and deletes), else right away. */
static void purge_run(void *arg)
{
    struct purge *p = arg;
    struct proxy_ds *ds = p->ds;
    struct cp_err err = {0};
    uint64_t purged = 0;
    int rc = ds->store ? cache_purge(ds->store, p->prefix, &purged, &err) : 0;
    struct cp_kv kv[] = {CP_KV_S("prefix", p->prefix ? p->prefix : "/"),
                         CP_KV_I("purged", purged), CP_KV_S("user", p->login),
                         CP_KV_S("dsUid", ds->cfg->uid)};
    cp_log(ds->env.log, rc ? CP_LOG_WARN : CP_LOG_INFO, rc ? "cache purge failed" : "cache purged",
           kv, 4);
    int sent = rc ? fail(ds, &p->sink, &err)
                  : send_json(&p->sink, 200, json_pack("{s:I}", "purged", (json_int_t)purged));
    p->sink.done(p->sink.ctx, sent);
    json_decref(p->body);
    free(p);
    proxy_ds_free(ds);
}

static int handle_purge(struct proxy_ds *ds, const struct proxy_request *rq,
                        const struct proxy_sink *sink, struct proxy_call **out)
{
    struct cp_err err = {0};
    if (!rq->user.present || rq->user.role != CFG_ROLE_ADMIN) {
        cp_err_set(&err, CP_EDENIED, "cache/purge is for Admins only");
        return answered(sink, fail(ds, sink, &err), out);
    }
    struct purge *p = calloc(1, sizeof *p);
    if (!p) {
        cp_err_set(&err, CP_ENOMEM, "out of memory");
        return answered(sink, fail(ds, sink, &err), out);
    }
    if (rq->body_len) {
        json_error_t je;
        p->body = json_loadb(rq->body, rq->body_len, 0, &je);
        json_t *pf = json_object_get(p->body, "prefix");
        if (!json_is_object(p->body)) {
            cp_err_set(&err, CP_EBADREQ, "body must be a JSON object: {} or {\"prefix\":\"/x\"}");
        } else if (pf && !json_is_null(pf) &&
                   (!json_is_string(pf) || json_string_value(pf)[0] != '/')) {
            cp_err_set(&err, CP_EBADREQ, "prefix must be a path starting with /");
        } else if (pf && json_is_string(pf)) {
            p->prefix = json_string_value(pf);
        }
        if (err.code) {
            json_decref(p->body);
            free(p);
            return answered(sink, fail(ds, sink, &err), out);
        }
    }
    proxy__ds_ref(ds);
    p->ds = ds;
    p->sink = *sink;
    snprintf(p->login, sizeof p->login, "%s", rq->user.login ? rq->user.login : "");
    *out = NULL;
    if ((ds->store_caps & CACHE_CAP_NO_IO) || !ds->store ||
        cp_pool_submit(ds->env.io, purge_run, p) != 0)
        purge_run(p);
    return 0;
}

/* ---- entry points ----------------------------------------------------------------------------- */

int proxy_resource_start(struct proxy_ds *ds, const struct proxy_request *rq,
                         const struct proxy_sink *sink, struct proxy_call **out)
{
    struct cp_err err = {0};
    const char *sub = NULL;
    *out = NULL;
    switch (route_of(rq->path, &sub)) {
    case ROUTE_PROXY:
        break;
    case ROUTE_STATS:
        if (!rq->method || strcasecmp(rq->method, "GET")) {
            cp_err_set(&err, CP_EMETHOD, "cache/stats answers GET only");
            return answered(sink, fail(ds, sink, &err), out);
        }
        return answered(sink, handle_stats(ds, sink), out);
    case ROUTE_PURGE:
        if (!rq->method || strcasecmp(rq->method, "POST")) {
            cp_err_set(&err, CP_EMETHOD, "cache/purge answers POST only");
            return answered(sink, fail(ds, sink, &err), out);
        }
        return handle_purge(ds, rq, sink, out);
    case ROUTE_UNKNOWN:
        if (!cp_http_token(rq->method))
            cp_err_set(&err, CP_EBADREQ, "missing or invalid HTTP method");
        else
            cp_err_set(&err, CP_ENOTFOUND, "unknown resource: use proxy/<path>, cache/stats or "
                                           "cache/purge");
        return answered(sink, fail(ds, sink, &err), out);
    }
    size_t raw = rq->raw_url ? strlen(rq->raw_url) + 1 : 1;
    struct res *r = calloc(1, sizeof *r + (raw < CP_MAX_PATH ? raw : CP_MAX_PATH));
    if (!r)
        return CP_ENOMEM;
    r->ds = ds;
    r->sink = *sink;
    r->rawsub_size = raw < CP_MAX_PATH ? raw : CP_MAX_PATH;
    if (incoming_of(rq, sub, r->rawsub, r->rawsub_size, &r->in, &err) != 0) {
        note_access(ds, rq, NULL, sub);
        free(r);
        return answered(sink, fail(ds, sink, &err), out);
    }
    note_access(ds, rq, &r->in, sub);
    int rc = proxy__call_start(ds, &r->in, &res_ops, r, -1, NULL, out);
    if (rc)
        free(r);
    return rc;
}

int proxy_resource_fast(struct proxy_ds *ds, const struct proxy_request *rq,
                        const struct proxy_sink *sink, size_t max_body)
{
    const char *sub = NULL;
    if (!(ds->store_caps & CACHE_CAP_NO_IO) || !auth_is_local(ds->auth) || !max_body ||
        route_of(rq->path, &sub) != ROUTE_PROXY)
        return 0;
    struct cp_err err = {0};
    char rawsub[CP_MAX_PATH];
    struct proxy__incoming in;
    struct proxy__admitted a;
    a.path = NULL;
    int bad = incoming_of(rq, sub, rawsub, sizeof rawsub, &in, &err);
    if (bad || proxy__admit(ds, &in, &a, &err) != 0) {
        note_access(ds, rq, bad ? NULL : &in, sub);
        proxy__admitted_dispose(&a);
        fail(ds, sink, &err);
        return 1;
    }
    struct auth_decision d;
    if (proxy__authorize_local(ds, &a, &rq->user, &d, &err) != 0) {
        note_access(ds, rq, &in, sub);
        proxy__admitted_dispose(&a);
        fail(ds, sink, &err);
        return 1;
    }
    int rc = proxy__try_hit(ds, &a, &rq->user, d.scope, sink, max_body);
    proxy__admitted_dispose(&a);
    if (rc != 0) {
        /* counted and logged once, by the path that answers */
        auth_count(ds->auth, 1);
        note_access(ds, rq, &in, sub);
    }
    return rc != 0;
}
