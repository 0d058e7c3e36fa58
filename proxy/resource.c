/*
 * resource.c - resource calls (SPEC.md section 4): routing of proxy/<path>, cache/stats and
 * cache/purge; request checks in the order that keeps the upstream safe (method, path,
 * allowedPaths, body size, authorization) before the cached call runs.
 */
#include "proxy_int.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_PATH 8192

/* Request headers never forwarded, whatever forwardHeaders says: credentials Grafana used,
 * cookies, hop-by-hop and framing headers. */
static const char *const never_forwarded[] = {
    "Authorization", "Cookie",           "Host",    "Connection", "Keep-Alive",
    "Proxy-Authorization", "TE",         "Trailer", "Transfer-Encoding", "Upgrade",
    "Content-Length", "Expect",          "X-ID-Token", "X-Grafana-Id", NULL};

const char *proxy__header(const struct proxy_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name))
            return h[i].value;
    return NULL;
}

int proxy_send_error(const struct proxy_sink *sink, int status, const char *msg)
{
    char text[512];
    snprintf(text, sizeof text, "%s", msg ? msg : "");
    json_t *j = json_pack("{s:s,s:i}", "error", cp_utf8_fix(text), "status", status);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct proxy_header h[] = {{"Content-Type", "application/json"},
                               {"Cache-Control", "no-store"}};
    int rc = sink->start(sink->ctx, status, h, 2);
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
    int rc = sink->start(sink->ctx, status, h, 2);
    if (!rc)
        rc = sink->body(sink->ctx, body, strlen(body));
    free(body);
    return rc ? CP_ECANCELED : 0;
}

static int fail(struct proxy_ds *ds, const struct proxy_sink *sink, const struct cp_err *err)
{
    atomic_fetch_add(&ds->errors, 1);
    if (ds->env.ctr)
        atomic_fetch_add(&ds->env.ctr->errors, 1);
    char text[sizeof err->msg + 64];
    cp_redact(ds->env.log, cp_err_text(err), text, sizeof text); /* no secret reaches users */
    return proxy_send_error(sink, cp_http_status(err->code), text);
}

/* An HTTP method must be a token (RFC 9110 section 5.6.2). */
static int valid_method(const char *m)
{
    if (!m || !*m || strlen(m) > 32)
        return 0;
    for (; *m; m++)
        if (!isalnum((unsigned char)*m) && !strchr("!#$%&'*+-.^_`|~", *m))
            return 0;
    return 1;
}

static int is_never_forwarded(const char *name)
{
    for (size_t i = 0; never_forwarded[i]; i++)
        if (!strcasecmp(name, never_forwarded[i]))
            return 1;
    return 0;
}

int proxy__header_allowed_in_query(const char *name) { return !is_never_forwarded(name); }

int proxy__method_forwardable(const char *m)
{
    /* CONNECT would open a tunnel through the upstream, TRACE echoes the request (and with
     * it the credentials added here) */
    return strcmp(m, "CONNECT") && strcmp(m, "TRACE");
}

size_t proxy__headers_size(const struct proxy_header *h, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(h[i].name) + strlen(h[i].value) + 4;
    return total;
}

void proxy__user_token(struct proxy_ds *ds, const char *authorization, int add)
{
    if (ds->cfg->auth_type != CFG_AUTH_FORWARD_OAUTH || !authorization || !*authorization)
        return;
    const char *sp = strchr(authorization, ' ');
    const char *token = sp ? sp + 1 : authorization;
    if (add)
        cp_log_secret_add(ds->env.log, token);
    else
        cp_log_secret_remove(ds->env.log, token);
}

/* Client headers allowed upstream by forwardHeaders. */
size_t proxy__filter_headers(const struct cfg_ds *cfg, const struct proxy_header *in, size_t n,
                             struct proxy_header *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++)
        if (!is_never_forwarded(in[i].name) && cfg_strlist_has_ci(&cfg->forward_headers,
                                                                  in[i].name))
            out[k++] = in[i];
    return k;
}

/* Cache-Control: no-cache (or Pragma: no-cache) from an Editor or Admin forces a refresh. */
int proxy__wants_refresh(const struct proxy_header *h, size_t n, const struct cp_user *u)
{
    if (!u || !u->present || u->role < CFG_ROLE_EDITOR)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(h[i].name, "Cache-Control")) {
            struct cache_control cc;
            cache_control_parse(h[i].value, &cc);
            if (cc.no_cache || cc.no_store)
                return 1;
        }
        if (!strcasecmp(h[i].name, "Pragma") && strcasestr(h[i].value, "no-cache"))
            return 1;
    }
    return 0;
}

/* Splits Grafana's url field ("proxy/a%20b?x=1", leading '/' optional) into the escaped
 * sub-path after "proxy/" and the query. Returns 0, or CP_EBADREQ when it does not name the
 * proxy route the decoded path names. */
static int split_raw(const char *raw_url, char *sub, size_t size, const char **query)
{
    *query = NULL;
    if (!raw_url)
        return 1; /* no raw form: the decoded path alone is checked */
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

/* A query string goes upstream as the client wrote it, but never with control characters,
 * spaces or a fragment. */
static int valid_query(const char *q)
{
    for (; q && *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '#')
            return 0;
    return 1;
}

/* max_body > 0: the fast mode of proxy_resource_fast: answer only what needs no I/O and set
 * *answered; otherwise the call is always answered. */
static int handle_proxy(struct proxy_ds *ds, const struct proxy_request *rq, const char *sub,
                        const struct proxy_sink *sink, size_t max_body, int *answered)
{
    const struct cfg_ds *cfg = ds->cfg;
    *answered = 1;
    struct cp_err err = {0};
    char path[MAX_PATH], rawsub[MAX_PATH];
    const char *query = NULL;
    int rs = split_raw(rq->raw_url, rawsub, sizeof rawsub, &query);
    if (rs < 0) {
        cp_err_set(&err, CP_EBADREQ, "request URL does not match the resource path");
        return fail(ds, sink, &err);
    }
    if (proxy__path_normalize(sub, rs == 0 ? rawsub : NULL, path, sizeof path, &err) != 0)
        return fail(ds, sink, &err);
    if (!valid_query(query)) {
        cp_err_set(&err, CP_EBADREQ, "query string holds spaces or control characters");
        return fail(ds, sink, &err);
    }
    if (!auth_glob_any(&cfg->allowed_paths, path)) {
        cp_err_set(&err, CP_ENOPATH, "path %.200s is not in allowedPaths", path);
        return fail(ds, sink, &err);
    }
    if ((int64_t)rq->body_len > cfg->max_request_bytes) {
        cp_err_set(&err, CP_ETOOBIG, "request body larger than maxRequestBytes (%lld bytes)",
                   (long long)cfg->max_request_bytes);
        return fail(ds, sink, &err);
    }
    struct auth_decision d;
    struct auth_request ar = {&rq->user, rq->method, path, query, cfg->uid};
    auth_authorize_uncounted(ds->auth, &ar, &d);
    if (!d.allow || !max_body)
        auth_count(ds->auth, d.allow); /* the fast mode counts only what it answers */
    if (!d.allow) {
        cp_err_set(&err, CP_EDENIED, "%s %s: %s", rq->method, path,
                   d.reason[0] ? d.reason : "denied");
        return fail(ds, sink, &err);
    }

    struct proxy_header fwd[CP_MAX_FWD_HEADERS];
    size_t nfwd = proxy__filter_headers(cfg, rq->headers, rq->nheaders, fwd,
                                        CP_MAX_FWD_HEADERS);
    if (proxy__headers_size(fwd, nfwd) > CP_MAX_FWD_HEADER_BYTES) {
        cp_err_set(&err, CP_ETOOBIG, "request headers to forward exceed %d bytes",
                   CP_MAX_FWD_HEADER_BYTES);
        return fail(ds, sink, &err);
    }
    struct auth_creds creds = {0};
    struct proxy__call c = {
        .kind = CACHE_KIND_RESOURCE,
        .method = rq->method,
        .path = path,
        .query = query,
        .fwd = fwd,
        .nfwd = nfwd,
        .body = rq->body,
        .body_len = rq->body_len,
        .user = &rq->user,
        .fwd_authorization = proxy__header(rq->headers, rq->nheaders, "Authorization"),
        .fwd_id_token = proxy__header(rq->headers, rq->nheaders, "X-ID-Token"),
        .refresh = proxy__wants_refresh(rq->headers, rq->nheaders, &rq->user),
        .scope_override = d.scope,
        .ttl_override_ms = -1,
        .cancelled = rq->cancelled,
        .cancel_ctx = rq->cancel_ctx,
        .creds = &creds,
    };
    int result;
    if (max_body) {
        int rc = proxy__try_hit(ds, &c, sink, max_body);
        *answered = rc != 0;
        if (*answered)
            auth_count(ds->auth, 1);
        return rc < 0 ? rc : 0;
    }
    proxy__user_token(ds, c.fwd_authorization, 1);
    int rc = proxy__run(ds, &c, sink, &result, NULL, &err);
    if (rc && rc != CP_ECANCELED) {
        struct cp_kv kv[] = {CP_KV_S("error", cp_err_text(&err)), CP_KV_S("method", rq->method),
                             CP_KV_S("path", path), CP_KV_S("dsUid", cfg->uid)};
        cp_log(ds->env.log, CP_LOG_WARN, "upstream call failed", kv, 4);
        rc = fail(ds, sink, &err);
    }
    auth_creds_wipe(&creds); /* after the last text that could echo them */
    proxy__user_token(ds, c.fwd_authorization, 0);
    return rc;
}

static int handle_stats(struct proxy_ds *ds, const struct proxy_sink *sink)
{
    struct cache_usage u;
    cache_usage(ds->store, &u);
    uint64_t hits = atomic_load(&ds->hits), misses = atomic_load(&ds->misses),
             stale = atomic_load(&ds->stale), lookups = hits + misses + stale;
    json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I}", "backend",
                          cache_store_backend(ds->store), "entries", (json_int_t)u.entries,
                          "bytes", (json_int_t)u.bytes, "hits", (json_int_t)hits, "misses",
                          (json_int_t)misses, "stale", (json_int_t)stale, "bypass",
                          (json_int_t)atomic_load(&ds->bypass), "coalesced",
                          (json_int_t)atomic_load(&ds->coalesced), "hitRatio",
                          lookups ? (double)(hits + stale) / (double)lookups : 0.0,
                          "upstreamRequests", (json_int_t)atomic_load(&ds->upstream_requests),
                          "errors", (json_int_t)atomic_load(&ds->errors));
    return send_json(sink, 200, j);
}

static int handle_purge(struct proxy_ds *ds, const struct proxy_request *rq,
                        const struct proxy_sink *sink)
{
    struct cp_err err = {0};
    if (!rq->user.present || rq->user.role != CFG_ROLE_ADMIN) {
        cp_err_set(&err, CP_EDENIED, "cache/purge is for Admins only");
        return fail(ds, sink, &err);
    }
    const char *prefix = NULL;
    json_t *j = NULL;
    if (rq->body_len) {
        json_error_t je;
        j = json_loadb(rq->body, rq->body_len, 0, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            cp_err_set(&err, CP_EBADREQ, "body must be a JSON object: {} or {\"prefix\":\"/x\"}");
            return fail(ds, sink, &err);
        }
        json_t *p = json_object_get(j, "prefix");
        if (p && !json_is_null(p)) {
            if (!json_is_string(p) || json_string_value(p)[0] != '/') {
                json_decref(j);
                cp_err_set(&err, CP_EBADREQ, "prefix must be a path starting with /");
                return fail(ds, sink, &err);
            }
            prefix = json_string_value(p);
        }
    }
    uint64_t purged = 0;
    int rc = ds->store ? cache_purge(ds->store, prefix, &purged, &err) : 0;
    struct cp_kv kv[] = {CP_KV_S("prefix", prefix ? prefix : "/"), CP_KV_I("purged", purged),
                         CP_KV_S("user", rq->user.login), CP_KV_S("dsUid", ds->cfg->uid)};
    cp_log(ds->env.log, rc ? CP_LOG_WARN : CP_LOG_INFO, rc ? "cache purge failed" : "cache purged",
           kv, 4);
    json_decref(j); /* prefix points into j: only after the log line */
    if (rc)
        return fail(ds, sink, &err);
    return send_json(sink, 200, json_pack("{s:I}", "purged", (json_int_t)purged));
}

/* Methods are compared and sent upper-case ("get" would otherwise reach curl as a custom
 * method with a form body). Returns a copy in buf, or NULL when not a method token. */
static const char *upper_method(const char *m, char *buf, size_t size)
{
    if (!valid_method(m) || strlen(m) >= size)
        return NULL;
    size_t i = 0;
    for (; m[i]; i++)
        buf[i] = (char)toupper((unsigned char)m[i]);
    buf[i] = 0;
    return buf;
}

int proxy_resource(struct proxy_ds *ds, const struct proxy_request *in,
                   const struct proxy_sink *sink)
{
    struct cp_err err = {0};
    char mbuf[40];
    struct proxy_request copy = *in;
    const struct proxy_request *rq = &copy;
    if (!(copy.method = upper_method(in->method, mbuf, sizeof mbuf))) {
        cp_err_set(&err, CP_EBADREQ, "missing or invalid HTTP method");
        return fail(ds, sink, &err);
    }
    if (!proxy__method_forwardable(copy.method)) {
        cp_err_set(&err, CP_EMETHOD, "method %s is never forwarded", copy.method);
        return fail(ds, sink, &err);
    }
    const char *p = rq->path ? rq->path : "";
    while (*p == '/')
        p++;
    int answered;
    if (!strncmp(p, "proxy/", 6) || !strcmp(p, "proxy"))
        return handle_proxy(ds, rq, p[5] ? p + 6 : "", sink, 0, &answered);
    if (!strcmp(p, "cache/stats")) {
        if (strcmp(rq->method, "GET")) {
            cp_err_set(&err, CP_EMETHOD, "cache/stats answers GET only");
            return fail(ds, sink, &err);
        }
        return handle_stats(ds, sink);
    }
    if (!strcmp(p, "cache/purge")) {
        if (strcmp(rq->method, "POST")) {
            cp_err_set(&err, CP_EMETHOD, "cache/purge answers POST only");
            return fail(ds, sink, &err);
        }
        return handle_purge(ds, rq, sink);
    }
    cp_err_set(&err, CP_ENOTFOUND, "unknown resource: use proxy/<path>, cache/stats or "
                                   "cache/purge");
    return fail(ds, sink, &err);
}

int proxy_resource_fast(struct proxy_ds *ds, const struct proxy_request *in,
                        const struct proxy_sink *sink, size_t max_body)
{
    if (!ds->store || !(ds->store_is_local && auth_is_local(ds->auth)) || !max_body)
        return 0;
    char mbuf[40];
    struct proxy_request copy = *in;
    const struct proxy_request *rq = &copy;
    const char *p = rq->path ? rq->path : "";
    while (*p == '/')
        p++;
    if (!(copy.method = upper_method(in->method, mbuf, sizeof mbuf)) ||
        (strncmp(p, "proxy/", 6) && strcmp(p, "proxy")))
        return 0; /* errors and the other resources take the usual way */
    int answered = 0;
    handle_proxy(ds, rq, p[5] ? p + 6 : "", sink, max_body, &answered);
    return answered;
}
