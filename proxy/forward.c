/*
 * forward.c - upstream transfers on the instance's event loop: libcurl easy handles run by the
 * instance's multi handle (its connection pool, DNS cache and TLS sessions, capped at
 * maxConnections), so any number of calls in flight costs no thread.
 *
 * The answer is handed over as it arrives: the head once, then body pieces. A receiver that
 * cannot take a piece yet says PROXY_PAUSE: the transfer is paused (libcurl keeps the piece
 * and offers it again after proxy__fetch_resume), which is the back-pressure from the client
 * to the upstream. Everything here runs on the instance's loop thread.
 */
#include "proxy_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_IDLE_EASY 64
#define MAX_RESP_HEADERS 200
#define MAX_HEADER_BYTES (256 * 1024)

/* Hop-by-hop and length headers never travel from the upstream to the client (but for the
 * Content-Length of an answer to HEAD). */
static const char *const dropped_response_headers[] = {
    "Connection", "Keep-Alive",        "Proxy-Authenticate", "Proxy-Authorization",
    "TE",         "Trailer",           "Trailers",           "Transfer-Encoding",
    "Upgrade",    "Content-Length",    "Proxy-Connection",   NULL};

static int is_dropped(const char *name)
{
    for (size_t i = 0; dropped_response_headers[i]; i++)
        if (!strcasecmp(name, dropped_response_headers[i]))
            return 1;
    return 0;
}

/* ---- the instance's multi handle and idle easy handles (loop thread) -------------------------- */

struct cp_http *proxy__http(struct proxy_ds *ds)
{
    if (!ds->http)
        ds->http = cp_http_new(ds->loop, (long)ds->cfg->max_connections, &ds->running,
                               &ds->queued);
    return ds->http;
}

static CURL *easy_get(struct proxy_ds *ds)
{
    return ds->neasy ? ds->easy[--ds->neasy] : curl_easy_init();
}

static void easy_put(struct proxy_ds *ds, CURL *h)
{
    curl_easy_reset(h);
    if (ds->neasy == ds->easy_cap && ds->easy_cap < MAX_IDLE_EASY) {
        size_t nc = ds->easy_cap ? ds->easy_cap * 2 : 8;
        CURL **ne = realloc(ds->easy, nc * sizeof *ne);
        if (ne) {
            ds->easy = ne;
            ds->easy_cap = nc;
        }
    }
    if (ds->neasy < ds->easy_cap)
        ds->easy[ds->neasy++] = h;
    else
        curl_easy_cleanup(h);
}

void proxy__http_close(struct proxy_ds *ds)
{
    for (size_t i = 0; i < ds->neasy; i++)
        curl_easy_cleanup(ds->easy[i]);
    free(ds->easy);
    ds->easy = NULL;
    ds->neasy = ds->easy_cap = 0;
    cp_http_free(ds->http);
    ds->http = NULL;
}

/* ---- one transfer ------------------------------------------------------------------------------ */

struct proxy__xfer {
    struct proxy_ds *ds;
    CURL *h;
    struct proxy__upstream_sink sink;
    struct curl_slist *hl;
    struct cp_buf url;
    char method[40];
    int status;
    int head_done;
    int decode; /* libcurl undoes the content coding: its Content-Encoding header goes too */
    struct cache_header *hdr;
    size_t nh;
    size_t header_bytes;
    int64_t received, max, timeout_ms;
    int64_t t0;
    int abort_code; /* why we aborted: CP_ERESPBIG, CP_ECANCELED, CP_EUPSTREAM */
    int paused;
};

static void free_headers(struct proxy__xfer *x)
{
    for (size_t i = 0; i < x->nh; i++) {
        free(x->hdr[i].name);
        free(x->hdr[i].value);
    }
    free(x->hdr);
    x->hdr = NULL;
    x->nh = 0;
}

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

/* Frees the transfer; its easy handle goes back to the idle list. */
static void xfer_free(struct proxy__xfer *x)
{
    free_headers(x);
    wipe_slist(x->hl);
    if (x->url.p)
        explicit_bzero(x->url.p, x->url.len);
    cp_buf_free(&x->url);
    if (x->h)
        easy_put(x->ds, x->h);
    proxy_ds_free(x->ds);
    free(x);
}

static int finish_head(struct proxy__xfer *x)
{
    if (x->head_done)
        return 0;
    x->head_done = 1;
    int64_t length = -1;
    for (size_t i = 0; i < x->nh && strcmp(x->method, "HEAD"); i++)
        if (!strcasecmp(x->hdr[i].name, "Content-Length")) {
            length = atoll(x->hdr[i].value);
            if (x->max > 0 && length > x->max)
                return x->abort_code = CP_ERESPBIG;
        }
    /* drop hop-by-hop headers (and those the Connection header names) before handing over */
    size_t w = 0;
    char *conn = NULL; /* a copy: the Connection header itself is freed in the loop below */
    for (size_t i = 0; i < x->nh; i++)
        if (!strcasecmp(x->hdr[i].name, "Connection")) {
            free(conn);
            conn = strdup(x->hdr[i].value);
        }
    int head = !strcmp(x->method, "HEAD");
    for (size_t i = 0; i < x->nh; i++) {
        /* an answer to HEAD keeps its Content-Length: the length a GET would have (RFC 9110
         * section 9.3.2), not this answer's framing */
        int drop = (is_dropped(x->hdr[i].name) &&
                    !(head && !strcasecmp(x->hdr[i].name, "Content-Length"))) ||
                   (x->decode && !strcasecmp(x->hdr[i].name, "Content-Encoding"));
        if (!drop && conn) {
            size_t nl = strlen(x->hdr[i].name);
            for (const char *c = conn; *c;) {
                while (*c == ' ' || *c == ',')
                    c++;
                size_t tl = strcspn(c, ", ");
                if (tl == nl && !strncasecmp(c, x->hdr[i].name, nl))
                    drop = 1;
                c += tl;
            }
        }
        if (drop) {
            free(x->hdr[i].name);
            free(x->hdr[i].value);
        } else {
            x->hdr[w++] = x->hdr[i];
        }
    }
    x->nh = w;
    free(conn);
    if (x->sink.on_head(x->sink.ctx, x->status, x->hdr, x->nh, length) != 0)
        return x->abort_code = CP_ECANCELED;
    return 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct proxy__xfer *x = ud;
    size_t len = sz * n;
    x->header_bytes += len;
    if (x->header_bytes > MAX_HEADER_BYTES) {
        x->abort_code = CP_EUPSTREAM;
        return 0;
    }
    if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
        /* a new response (after 1xx or a proxy CONNECT): start over */
        free_headers(x);
        const char *sp = memchr(p, ' ', len);
        x->status = sp ? atoi(sp + 1) : 0;
        return len;
    }
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len == 0) {
        /* end of a header block; the final one when the status is not 1xx */
        if (x->status >= 200 && finish_head(x) != 0)
            return 0;
        return sz * n;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon || colon == p || x->nh >= MAX_RESP_HEADERS)
        return sz * n; /* folded or junk lines are ignored */
    struct cache_header *nh = realloc(x->hdr, (x->nh + 1) * sizeof *nh);
    if (!nh)
        return 0;
    x->hdr = nh;
    const char *v = colon + 1;
    while (v < p + len && (*v == ' ' || *v == '\t'))
        v++;
    x->hdr[x->nh].name = strndup(p, (size_t)(colon - p));
    x->hdr[x->nh].value = strndup(v, (size_t)(p + len - v));
    if (!x->hdr[x->nh].name || !x->hdr[x->nh].value) {
        free(x->hdr[x->nh].name);
        free(x->hdr[x->nh].value);
        return 0;
    }
    x->nh++;
    return sz * n;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct proxy__xfer *x = ud;
    size_t len = sz * n;
    if (!x->head_done && finish_head(x) != 0)
        return 0;
    if (x->max > 0 && x->received + (int64_t)len > x->max) {
        x->abort_code = CP_ERESPBIG;
        return 0;
    }
    int rc = x->sink.on_body(x->sink.ctx, p, len);
    if (rc == PROXY_PAUSE) {
        x->paused = 1;
        return CURL_WRITEFUNC_PAUSE; /* libcurl keeps these bytes and offers them again */
    }
    if (rc != 0) {
        x->abort_code = CP_ECANCELED;
        return 0;
    }
    x->received += (int64_t)len;
    return len;
}

/* A header line curl would send as written: the name an RFC 9110 token, the value free of
 * line breaks (anything else could smuggle a second request to the upstream). */
int proxy__header_ok(const char *name, const char *value)
{
    if (!cp_http_token(name) || !value)
        return 0;
    for (const char *c = value; *c; c++)
        if (*c == '\r' || *c == '\n')
            return 0;
    return 1;
}

/* "Name: value" into a curl list; a header that is not well formed is left out. */
static struct curl_slist *add_header(struct curl_slist *l, const char *name, const char *value,
                                     int *fail)
{
    if (*fail || !proxy__header_ok(name, value))
        return l;
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (!line) {
        *fail = 1;
        return l;
    }
    /* an empty value must be sent as "Name;" to curl */
    if (*value)
        snprintf(line, n, "%s: %s", name, value);
    else
        snprintf(line, n, "%s;", name);
    struct curl_slist *nl = curl_slist_append(l, line);
    explicit_bzero(line, n);
    free(line);
    if (!nl)
        *fail = 1;
    return nl ? nl : l;
}

/* 1 when the query parameter p (n bytes, "name" or "name=value", escaped) is named name once
 * percent-decoded ('+' is a space in a query). */
static int param_named(const char *p, size_t n, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n && p[i] != '='; i++, k++) {
        int c = (unsigned char)p[i];
        int h = c == '%' && i + 2 < n ? cp_hexval((unsigned char)p[i + 1]) : -1;
        int l = h < 0 ? -1 : cp_hexval((unsigned char)p[i + 2]);
        if (l >= 0) {
            c = h * 16 + l;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (!name[k] || (unsigned char)name[k] != c)
            return 0;
    }
    return !name[k];
}

/* Appends path_query to b without the query parameters named name: the credential's own
 * parameter is the only one of that name the upstream sees, never one the client chose. */
static int add_without_param(struct cp_buf *b, const char *path_query, const char *name)
{
    const char *q = strchr(path_query, '?');
    if (!q)
        return cp_buf_addstr(b, path_query);
    if (cp_buf_add(b, path_query, (size_t)(q - path_query)))
        return CP_ENOMEM;
    char sep = '?';
    for (const char *p = q + 1; *p;) {
        size_t n = strcspn(p, "&");
        if (n && !param_named(p, n, name)) {
            if (cp_buf_add(b, &sep, 1) || cp_buf_add(b, p, n))
                return CP_ENOMEM;
            sep = '&';
        }
        p += n;
        if (*p == '&')
            p++;
    }
    return 0;
}

static int has_header(const struct proxy_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name))
            return 1;
    return 0;
}

static int status_class(int status) { return status >= 100 && status < 600 ? status / 100 : 0; }

/* Connecting (DNS, TCP, TLS) gets at most 10 s of the call's timeout. */
static int64_t connect_timeout_ms(int64_t timeout_ms)
{
    return timeout_ms < 10000 ? timeout_ms : 10000;
}

/* Whether the transfer got as far as a connection. */
static int connected(CURL *h)
{
    curl_off_t t = 0;
    return curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &t) == CURLE_OK && t > 0;
}

static void on_done(void *arg, int code)
{
    struct proxy__xfer *x = arg;
    struct proxy_ds *ds = x->ds;
    CURLcode cc = (CURLcode)code;
    struct cp_err err = {0};
    int rc = 0;
    atomic_fetch_add(&ds->upstream_requests, 1);
    struct proxy_counters *ctr = ds->env.ctr;
    if (ctr)
        cp_hist_observe_ns(&ctr->upstream_duration, (uint64_t)(cp_mono_ns() - x->t0));
    const char *host = ds->host;
    if (cc == CURLE_OK && !x->head_done && x->status >= 200)
        rc = finish_head(x) == 0 ? 0 : x->abort_code;
    if (cc == CURLE_OK && !rc) {
        if (ctr)
            atomic_fetch_add(&ctr->upstream[status_class(x->status)], 1);
    } else {
        if (ctr)
            atomic_fetch_add(&ctr->upstream[0], 1);
        if (x->abort_code == CP_ERESPBIG)
            rc = cp_err_set(&err, CP_ERESPBIG,
                            "upstream response larger than maxResponseBytes (%lld bytes)",
                            (long long)x->max);
        else if (x->abort_code == CP_ECANCELED)
            rc = cp_err_set(&err, CP_ECANCELED, "request cancelled by the client");
        else if (cc == CURLE_OPERATION_TIMEDOUT && !connected(x->h))
            rc = cp_err_set(&err, CP_EUPSTREAM, "could not connect to upstream %s within %lld s",
                            host, (long long)(connect_timeout_ms(x->timeout_ms) / 1000));
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            rc = cp_err_set(&err, CP_ETIMEDOUT, "upstream %s did not answer within %lld s", host,
                            (long long)(x->timeout_ms / 1000));
        else if (x->abort_code == CP_EUPSTREAM)
            rc = cp_err_set(&err, CP_EUPSTREAM, "upstream %s sent oversized headers", host);
        else
            rc = cp_err_set(&err, CP_EUPSTREAM, "upstream %s failed: %s", host,
                            curl_easy_strerror(cc));
    }
    x->sink.on_done(x->sink.ctx, rc, &err);
    xfer_free(x);
}

int proxy__fetch_start(struct proxy_ds *ds, const struct proxy__upstream_req *rq,
                       const struct proxy__upstream_sink *sink, struct proxy__xfer **out,
                       struct cp_err *err)
{
    const struct cfg_ds *cfg = ds->cfg;
    struct cp_http *http = proxy__http(ds);
    struct proxy__xfer *x = calloc(1, sizeof *x);
    *out = NULL;
    if (!x || !http || !(x->h = easy_get(ds))) {
        if (x)
            free(x);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    proxy__ds_ref(ds);
    x->ds = ds;
    x->sink = *sink;
    x->max = cfg->max_response_bytes;
    x->timeout_ms = rq->timeout_ms;
    x->decode = rq->decode;
    snprintf(x->method, sizeof x->method, "%s", rq->method);
    CURL *h = x->h;

    /* URL: the configured origin + the upstream path (base path included) + query, with the
     * API key appended as a query parameter when configured so */
    const char *qname = rq->creds ? rq->creds->query_name : NULL;
    int rc = cp_buf_addstr(&x->url, ds->origin);
    if (!rc)
        rc = qname ? add_without_param(&x->url, rq->path_query, qname)
                   : cp_buf_addstr(&x->url, rq->path_query);
    if (!rc && qname) {
        char *k = curl_easy_escape(h, qname, 0);
        char *v = curl_easy_escape(h, rq->creds->query_value, 0);
        if (k && v)
            rc = cp_buf_addf(&x->url, "%s%s=%s", memchr(x->url.p, '?', x->url.len) ? "&" : "?",
                             k, v);
        else
            rc = CP_ENOMEM;
        if (v)
            explicit_bzero(v, strlen(v));
        curl_free(k);
        curl_free(v);
    }
    int fail = rc != 0;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!rq->decode || strcasecmp(rq->headers[i].name, "Accept-Encoding"))
            x->hl = add_header(x->hl, rq->headers[i].name, rq->headers[i].value, &fail);
    if (rq->creds)
        for (size_t i = 0; i < rq->creds->n; i++)
            x->hl = add_header(x->hl, rq->creds->h[i].name, rq->creds->h[i].value, &fail);
    /* "Expect:" removes curl's 100-continue round trip; "Accept:" and "Content-Type:" keep
     * curl from adding headers of its own that the client did not send */
    static const char *const unset[][2] = {
        {"Expect", "Expect:"}, {"Accept", "Accept:"}, {"Content-Type", "Content-Type:"}};
    for (size_t i = 0; !fail && i < sizeof unset / sizeof *unset; i++) {
        if (i && has_header(rq->headers, rq->nheaders, unset[i][0]))
            continue;
        struct curl_slist *nl = curl_slist_append(x->hl, unset[i][1]);
        fail = !nl;
        x->hl = nl ? nl : x->hl;
    }
    if (fail) {
        xfer_free(x);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }

    curl_easy_setopt(h, CURLOPT_URL, x->url.p);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hl);
    /* "": every coding libcurl can undo is offered, and undone; NULL: the body as sent */
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, rq->decode ? "" : NULL);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)rq->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms(rq->timeout_ms));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    /* never wait for another transfer's connection to show whether it multiplexes: open one */
    curl_easy_setopt(h, CURLOPT_PIPEWAIT, 0L);
    if (proxy__no_env_proxy)
        curl_easy_setopt(h, CURLOPT_PROXY, "");
    if (cfg->tls_skip_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (cfg->tls_auth_ca && ds->ca_blob.data)
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ds->ca_blob);
    if (cfg->tls_auth && ds->cert_blob.data) {
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &ds->cert_blob);
        curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &ds->key_blob);
        curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (!strcmp(rq->method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(rq->method, "GET") && !rq->body_len) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
        if (rq->body_len || strcmp(rq->method, "GET")) {
            /* the body stays with the caller until on_done */
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body_len ? rq->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        }
    }
    x->t0 = cp_mono_ns();
    if (cp_http_add(http, h, on_done, x) != 0) {
        xfer_free(x);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    *out = x;
    return 0;
}

void proxy__fetch_resume(struct proxy__xfer *x)
{
    if (x && x->paused) {
        x->paused = 0;
        /* may offer the kept bytes again at once, from inside this call */
        curl_easy_pause(x->h, CURLPAUSE_CONT);
    }
}

void proxy__fetch_abort(struct proxy__xfer *x)
{
    if (!x)
        return;
    cp_http_abort(x->ds->http, x->h);
    /* the connection may be mid-answer: it must not go back to the pool */
    curl_easy_cleanup(x->h);
    x->h = NULL;
    xfer_free(x);
}
