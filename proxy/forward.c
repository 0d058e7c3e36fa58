/*
 * forward.c - one upstream request with libcurl, on the instance's shared connection pool.
 *
 * Each instance owns a CURLSH sharing connections, DNS and TLS sessions across all its easy
 * handles, so every user's call reuses the same warm connections (HTTP/2 when the upstream
 * offers it over TLS). Easy handles themselves are pooled too. The response is handed to the
 * caller as it arrives: headers once, then body chunks, so large bodies stream through
 * without being held whole.
 */
#include "proxy_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_IDLE_EASY 64
#define POOL_CONNECTIONS 64
#define MAX_RESP_HEADERS 200
#define MAX_HEADER_BYTES (256 * 1024)

/* Hop-by-hop and length headers never travel from the upstream to the client. */
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

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access a, void *ud)
{
    (void)h, (void)a;
    struct proxy_ds *ds = ud;
    pthread_mutex_lock(&ds->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    struct proxy_ds *ds = ud;
    pthread_mutex_unlock(&ds->share_mu[data]);
}

int proxy__share_init(struct proxy_ds *ds)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&ds->share_mu[i], NULL);
    pthread_mutex_init(&ds->easy_mu, NULL);
    ds->share = curl_share_init();
    if (!ds->share)
        return CP_ENOMEM;
    curl_share_setopt(ds->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(ds->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(ds->share, CURLSHOPT_USERDATA, ds);
    curl_share_setopt(ds->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(ds->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(ds->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 0;
}

void proxy__share_cleanup(struct proxy_ds *ds)
{
    for (size_t i = 0; i < ds->neasy; i++)
        curl_easy_cleanup(ds->easy[i]);
    free(ds->easy);
    ds->easy = NULL;
    ds->neasy = 0;
    if (ds->share)
        curl_share_cleanup(ds->share);
    ds->share = NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&ds->share_mu[i]);
    pthread_mutex_destroy(&ds->easy_mu);
}

static CURL *easy_get(struct proxy_ds *ds)
{
    CURL *h = NULL;
    pthread_mutex_lock(&ds->easy_mu);
    if (ds->neasy)
        h = ds->easy[--ds->neasy];
    pthread_mutex_unlock(&ds->easy_mu);
    if (!h)
        h = curl_easy_init();
    return h;
}

static void easy_put(struct proxy_ds *ds, CURL *h)
{
    curl_easy_reset(h);
    pthread_mutex_lock(&ds->easy_mu);
    if (ds->neasy < MAX_IDLE_EASY) {
        if (ds->neasy == ds->easy_cap) {
            size_t nc = ds->easy_cap ? ds->easy_cap * 2 : 8;
            CURL **ne = realloc(ds->easy, nc * sizeof *ne);
            if (ne) {
                ds->easy = ne;
                ds->easy_cap = nc;
            }
        }
        if (ds->neasy < ds->easy_cap) {
            ds->easy[ds->neasy++] = h;
            h = NULL;
        }
    }
    pthread_mutex_unlock(&ds->easy_mu);
    if (h)
        curl_easy_cleanup(h);
}

/* Per-transfer state. */
struct xfer {
    struct proxy_ds *ds;
    const struct proxy__upstream_req *rq;
    const struct proxy__upstream_sink *sink;
    int status;
    int head_done;
    struct cache_header *h;
    size_t nh;
    size_t header_bytes;
    int64_t received, max;
    int abort_code; /* why we aborted: CP_ERESPBIG, CP_ECANCELED, CP_EUPSTREAM */
};

static void free_headers(struct xfer *x)
{
    for (size_t i = 0; i < x->nh; i++) {
        free(x->h[i].name);
        free(x->h[i].value);
    }
    free(x->h);
    x->h = NULL;
    x->nh = 0;
}

static int finish_head(struct xfer *x)
{
    if (x->head_done)
        return 0;
    x->head_done = 1;
    for (size_t i = 0; i < x->nh && strcmp(x->rq->method, "HEAD"); i++)
        if (!strcasecmp(x->h[i].name, "Content-Length")) {
            long long cl = atoll(x->h[i].value);
            if (x->max > 0 && cl > x->max) {
                x->abort_code = CP_ERESPBIG;
                return -1;
            }
        }
    /* drop hop-by-hop headers (and those the Connection header names) before handing over */
    size_t w = 0;
    char *conn = NULL; /* a copy: the Connection header itself is freed in the loop below */
    for (size_t i = 0; i < x->nh; i++)
        if (!strcasecmp(x->h[i].name, "Connection")) {
            free(conn);
            conn = strdup(x->h[i].value);
        }
    for (size_t i = 0; i < x->nh; i++) {
        int drop = is_dropped(x->h[i].name);
        if (!drop && conn) {
            size_t nl = strlen(x->h[i].name);
            for (const char *c = conn; *c;) {
                while (*c == ' ' || *c == ',')
                    c++;
                size_t tl = strcspn(c, ", ");
                if (tl == nl && !strncasecmp(c, x->h[i].name, nl))
                    drop = 1;
                c += tl;
            }
        }
        if (drop) {
            free(x->h[i].name);
            free(x->h[i].value);
        } else {
            x->h[w++] = x->h[i];
        }
    }
    x->nh = w;
    free(conn);
    if (x->sink->on_head(x->sink->ctx, x->status, x->h, x->nh) != 0) {
        x->abort_code = CP_ECANCELED;
        return -1;
    }
    return 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct xfer *x = ud;
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
    struct cache_header *nh = realloc(x->h, (x->nh + 1) * sizeof *nh);
    if (!nh)
        return 0;
    x->h = nh;
    const char *v = colon + 1;
    while (v < p + len && (*v == ' ' || *v == '\t'))
        v++;
    x->h[x->nh].name = strndup(p, (size_t)(colon - p));
    x->h[x->nh].value = strndup(v, (size_t)(p + len - v));
    if (!x->h[x->nh].name || !x->h[x->nh].value) {
        free(x->h[x->nh].name);
        free(x->h[x->nh].value);
        return 0;
    }
    x->nh++;
    return sz * n;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = sz * n;
    if (!x->head_done && finish_head(x) != 0)
        return 0;
    x->received += (int64_t)len;
    if (x->max > 0 && x->received > x->max) {
        x->abort_code = CP_ERESPBIG;
        return 0;
    }
    if (x->sink->on_body(x->sink->ctx, p, len) != 0) {
        x->abort_code = CP_ECANCELED;
        return 0;
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct xfer *x = ud;
    if (x->rq->cancelled && x->rq->cancelled(x->rq->cancel_ctx)) {
        x->abort_code = CP_ECANCELED;
        return 1;
    }
    return 0;
}

/* A header line curl would send as written: the name an RFC 9110 token, the value free of
 * line breaks (anything else could smuggle a second request to the upstream). */
int proxy__header_ok(const char *name, const char *value)
{
    if (!name || !*name || !value)
        return 0;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
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

static void wipe_slist(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

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

static int status_class(int status) { return status >= 100 && status < 600 ? status / 100 : 0; }

int proxy__fetch(struct proxy_ds *ds, const struct proxy__upstream_req *rq,
                 const struct proxy__upstream_sink *sink, struct cp_err *err)
{
    const struct cfg_ds *cfg = ds->cfg;
    struct xfer x = {ds, rq, sink, 0, 0, NULL, 0, 0, 0, cfg->max_response_bytes, 0};
    CURL *h = easy_get(ds);
    if (!h)
        return cp_err_set(err, CP_ENOMEM, "out of memory");

    /* URL: the configured origin + the upstream path (base path included) + query, with the
     * API key appended as a query parameter when configured so */
    struct cp_buf url = {0};
    int rc = cp_buf_addstr(&url, ds->origin);
    if (!rc)
        rc = cp_buf_addstr(&url, rq->path_query);
    if (!rc && rq->creds && rq->creds->query_name) {
        char *k = curl_easy_escape(h, rq->creds->query_name, 0);
        char *v = curl_easy_escape(h, rq->creds->query_value, 0);
        if (k && v)
            rc = cp_buf_addf(&url, "%s%s=%s", strchr(rq->path_query, '?') ? "&" : "?", k, v);
        else
            rc = CP_ENOMEM;
        if (v)
            explicit_bzero(v, strlen(v));
        curl_free(k);
        curl_free(v);
    }
    struct curl_slist *hl = NULL;
    int fail = rc != 0;
    for (size_t i = 0; i < rq->nheaders; i++)
        hl = add_header(hl, rq->headers[i].name, rq->headers[i].value, &fail);
    if (rq->creds)
        for (size_t i = 0; i < rq->creds->n; i++)
            hl = add_header(hl, rq->creds->h[i].name, rq->creds->h[i].value, &fail);
    if (!fail) { /* "Expect:" removes curl's 100-continue round trip */
        struct curl_slist *nl = curl_slist_append(hl, "Expect:");
        fail = !nl;
        hl = nl ? nl : hl;
    }
    if (fail) {
        wipe_slist(hl);
        if (url.p)
            explicit_bzero(url.p, url.len);
        cp_buf_free(&url);
        easy_put(ds, h);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }

    curl_easy_setopt(h, CURLOPT_SHARE, ds->share);
    curl_easy_setopt(h, CURLOPT_URL, url.p);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)rq->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_timeout_ms(rq->timeout_ms));
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* the shared pool keeps this many idle connections; curl's default (a handful) would
     * close and reopen connections as soon as a few users call at once */
    curl_easy_setopt(h, CURLOPT_MAXCONNECTS, (long)POOL_CONNECTIONS);
    curl_easy_setopt(h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
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
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body_len ? rq->body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        }
    }

    int64_t t0 = cp_mono_ns();
    CURLcode cc = curl_easy_perform(h);
    uint64_t dt = (uint64_t)(cp_mono_ns() - t0);
    atomic_fetch_add(&ds->upstream_requests, 1);
    struct proxy_counters *ctr = ds->env.ctr;
    if (ctr)
        cp_hist_observe_ns(&ctr->upstream_duration, dt);

    const char *host = ds->host;
    if (cc == CURLE_OK && !x.head_done && x.status >= 200)
        rc = finish_head(&x) == 0 ? 0 : x.abort_code;
    if (cc == CURLE_OK && !rc) {
        rc = 0;
        if (ctr)
            atomic_fetch_add(&ctr->upstream[status_class(x.status)], 1);
    } else {
        if (ctr)
            atomic_fetch_add(&ctr->upstream[0], 1);
        if (x.abort_code == CP_ERESPBIG)
            rc = cp_err_set(err, CP_ERESPBIG,
                            "upstream response larger than maxResponseBytes (%lld bytes)",
                            (long long)x.max);
        else if (x.abort_code == CP_ECANCELED || cc == CURLE_ABORTED_BY_CALLBACK)
            rc = cp_err_set(err, CP_ECANCELED, "request cancelled by the client");
        else if (cc == CURLE_OPERATION_TIMEDOUT && !connected(h))
            rc = cp_err_set(err, CP_EUPSTREAM, "could not connect to upstream %s within %lld s",
                            host, (long long)(connect_timeout_ms(rq->timeout_ms) / 1000));
        else if (cc == CURLE_OPERATION_TIMEDOUT)
            rc = cp_err_set(err, CP_ETIMEDOUT, "upstream %s did not answer within %lld s", host,
                            (long long)(rq->timeout_ms / 1000));
        else if (x.abort_code == CP_EUPSTREAM)
            rc = cp_err_set(err, CP_EUPSTREAM, "upstream %s sent oversized headers", host);
        else
            rc = cp_err_set(err, CP_EUPSTREAM, "upstream %s failed: %s", host,
                            curl_easy_strerror(cc));
    }
    free_headers(&x);
    wipe_slist(hl);
    explicit_bzero(url.p, url.len);
    cp_buf_free(&url);
    easy_put(ds, h);
    return rc;
}
