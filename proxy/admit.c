/*
 * admit.c - the one admission phase every front goes through (resource calls, their fast
 * path, queries): the checks that keep the upstream safe, in one order, written once. The
 * fronts only translate their wire format into a struct proxy__incoming.
 */
#include "proxy_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Request headers never forwarded, whatever forwardHeaders says: credentials Grafana used,
 * cookies, hop-by-hop and framing headers. */
static const char *const never_forwarded[] = {
    "Authorization", "Cookie",           "Host",    "Connection", "Keep-Alive",
    "Proxy-Authorization", "TE",         "Trailer", "Transfer-Encoding", "Upgrade",
    "Content-Length", "Expect",          "X-ID-Token", "X-Grafana-Id", NULL};

static int is_never_forwarded(const char *name)
{
    for (size_t i = 0; never_forwarded[i]; i++)
        if (!strcasecmp(name, never_forwarded[i]))
            return 1;
    return 0;
}

int proxy__header_allowed_in_query(const char *name) { return !is_never_forwarded(name); }

const char *proxy__header(const struct proxy_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name))
            return h[i].value;
    return NULL;
}

size_t proxy__headers_size(const struct proxy_header *h, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(h[i].name) + strlen(h[i].value) + 4;
    return total;
}

size_t proxy__filter_headers(const struct cfg_ds *cfg, const struct proxy_header *in, size_t n,
                             struct proxy_header *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < max; i++)
        if (!is_never_forwarded(in[i].name) &&
            cfg_strlist_has_ci(&cfg->forward_headers, in[i].name))
            out[k++] = in[i];
    return k;
}

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

int proxy__wants_skip(const struct proxy_header *h, size_t n, const struct cp_user *u)
{
    if (!u || !u->present || u->role < CFG_ROLE_EDITOR)
        return 0;
    const char *v = proxy__header(h, n, "X-Cache-Skip");
    return v && !strcasecmp(v, "true");
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

int proxy__admitted_set_path(struct proxy__admitted *a, const char *path)
{
    size_t n = strlen(path) + 1;
    if (a->path && a->path != a->path_in)
        free(a->path);
    a->path = n <= sizeof a->path_in ? a->path_in : malloc(n);
    if (!a->path) {
        a->path = a->path_in;
        a->path_in[0] = 0;
        return CP_ENOMEM;
    }
    memcpy(a->path, path, n);
    return 0;
}

void proxy__admitted_dispose(struct proxy__admitted *a)
{
    if (a && a->path && a->path != a->path_in)
        free(a->path);
    if (a)
        a->path = NULL;
}

int proxy__admit(const struct proxy_ds *ds, const struct proxy__incoming *in,
                 struct proxy__admitted *out, struct cp_err *err)
{
    const struct cfg_ds *cfg = ds->cfg;
    out->path = out->path_in; /* "" until admitted; proxy__admitted_dispose frees a long one */
    out->path_in[0] = 0;
    /* 1. the method: a token, sent upper case ("get" would reach curl as a custom method) */
    const char *m = in->method ? in->method : "";
    size_t ml = strlen(m);
    if (!cp_http_token(m) || ml >= sizeof out->method)
        return cp_err_set(err, CP_EBADREQ, "missing or invalid HTTP method");
    for (size_t i = 0; i <= ml; i++)
        out->method[i] = (char)toupper((unsigned char)m[i]);
    /* CONNECT would open a tunnel through the upstream, TRACE echoes the request (and with
     * it the credentials added here) */
    if (!strcmp(out->method, "CONNECT") || !strcmp(out->method, "TRACE"))
        return cp_err_set(err, CP_EMETHOD, "method %s is never forwarded", out->method);
    /* 2. the path, decoded once and normalised; escapes refused */
    const char *p = in->path ? in->path : "";
    while (in->kind == CACHE_KIND_QUERY && *p == '/')
        p++;
    char path[CP_MAX_PATH];
    int rc = proxy__path_normalize(p, in->raw_path, path, sizeof path, err);
    if (rc)
        return rc;
    if (proxy__admitted_set_path(out, path) != 0)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    /* 3. the query string */
    if (!valid_query(in->query))
        return cp_err_set(err, CP_EBADREQ, "query string holds spaces or control characters");
    out->query = in->query && *in->query ? in->query : NULL;
    /* 4. allowedPaths */
    if (!auth_glob_any(&cfg->allowed_paths, out->path))
        return cp_err_set(err, CP_ENOPATH, "path %.200s is not in allowedPaths", out->path);
    /* 5. sizes: body, then the headers that would go upstream */
    if ((int64_t)in->body_len > cfg->max_request_bytes)
        return cp_err_set(err, CP_ETOOBIG,
                          "request body larger than maxRequestBytes (%lld bytes)",
                          (long long)cfg->max_request_bytes);
    out->body = in->body;
    out->body_len = in->body_len;
    size_t n = 0;
    for (size_t i = 0; i < in->nown && n < 32; i++)
        out->fwd[n++] = in->own[i];
    out->nown = n;
    n += proxy__filter_headers(cfg, in->headers, in->nheaders, out->fwd + n, CP_MAX_FWD_HEADERS);
    out->nfwd = n;
    if (proxy__headers_size(out->fwd, n) > CP_MAX_FWD_HEADER_BYTES)
        return cp_err_set(err, CP_ETOOBIG, "request headers to forward exceed %d bytes",
                          CP_MAX_FWD_HEADER_BYTES);
    out->fwd_authorization = proxy__header(in->headers, in->nheaders, "Authorization");
    out->fwd_id_token = proxy__header(in->headers, in->nheaders, "X-ID-Token");
    out->refresh = proxy__wants_refresh(in->headers, in->nheaders, in->user);
    out->skip = proxy__wants_skip(in->headers, in->nheaders, in->user);
    return 0;
}

static struct auth_request auth_request_of(const struct proxy_ds *ds,
                                           const struct proxy__admitted *a,
                                           const struct cp_user *user)
{
    return (struct auth_request){.user = user,
                                 .method = a->method,
                                 .path = a->path,
                                 .query = a->query,
                                 .ds_uid = ds->cfg->uid};
}

void proxy__authorize(struct proxy_ds *ds, const struct proxy__admitted *a,
                      const struct cp_user *user, struct auth_request *rq, auth_decided_fn cb,
                      void *arg)
{
    *rq = auth_request_of(ds, a, user);
    auth_authorize_async(ds->auth, rq, cb, arg);
}

int proxy__authorize_local(struct proxy_ds *ds, const struct proxy__admitted *a,
                           const struct cp_user *user, struct auth_decision *d,
                           struct cp_err *err)
{
    struct auth_request rq = auth_request_of(ds, a, user);
    auth_authorize_local(ds->auth, &rq, d);
    if (d->allow)
        return 0;
    auth_count(ds->auth, 0);
    return proxy__denied(a, d, err);
}

int proxy__denied(const struct proxy__admitted *a, const struct auth_decision *d,
                  struct cp_err *err)
{
    return cp_err_set(err, CP_EDENIED, "%s %s: %s", a->method, a->path,
                      d->reason[0] ? d->reason : "denied");
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
