/* http.c - the HTTP POST used for OAuth2 tokens and external authorization, on the instance's
 * event loop (its own multi handle, made on first use). */
#include "auth_int.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RESPONSE (1 << 20)

struct post {
    struct auth_ds *a;
    CURL *h;
    struct curl_slist *hdrs;
    char *url, *body, *user, *pass;
    struct curl_blob ca;
    struct cp_buf resp;
    int too_big;
    int64_t timeout_ms;
    char origin[200];
    auth__posted_fn cb;
    void *arg;
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct post *q = ud;
    if (cp_buf_add(&q->resp, p, sz * n) != 0) {
        q->too_big = 1;
        return 0;
    }
    return sz * n;
}

/* "scheme://host[:port]" of a URL, for error messages that must not echo paths or queries. */
static void url_origin(const char *url, char *out, size_t size)
{
    const char *s = strstr(url, "://");
    const char *h = s ? s + 3 : url;
    size_t n = strcspn(h, "/?#");
    const char *at = memchr(h, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    snprintf(out, size, "%.*s%.*s", s ? (int)(s + 3 - url) : 0, url, (int)n, h);
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void post_free(struct post *q)
{
    if (q->h)
        curl_easy_cleanup(q->h);
    curl_slist_free_all(q->hdrs);
    free(q->url);
    wipe_free(q->body);
    wipe_free(q->user);
    wipe_free(q->pass);
    if (q->resp.p)
        explicit_bzero(q->resp.p, q->resp.len);
    cp_buf_free(&q->resp);
    free(q);
}

static void on_done(void *arg, int code)
{
    struct post *q = arg;
    struct auth_ds *a = q->a;
    CURLcode cc = (CURLcode)code;
    struct cp_err err = {0};
    long status = 0;
    int rc = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &status);
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        rc = cp_err_set(&err, CP_ETIMEDOUT, "%s did not answer within %lld ms", q->origin,
                        (long long)q->timeout_ms);
    else if (q->too_big)
        rc = cp_err_set(&err, CP_EUPSTREAM, "%s answered more than 1 MiB", q->origin);
    else
        rc = cp_err_set(&err, CP_EUPSTREAM, "%s unreachable: %s", q->origin,
                        curl_easy_strerror(cc));
    q->cb(q->arg, rc, status, &q->resp, &err);
    post_free(q);
    auth__hold(a, -1);
}

void auth__http_post(struct auth_ds *a, const struct auth__post *p, auth__posted_fn cb,
                     void *arg)
{
    struct post *q = calloc(1, sizeof *q);
    struct cp_err err = {0};
    if (!a->http)
        a->http = cp_http_new(a->env.loop, 0, NULL, NULL);
    if (!q || !a->http || !(q->h = curl_easy_init()) || !(q->url = strdup(p->url)) ||
        !(q->body = strdup(p->body)) || (p->basic_user && !(q->user = strdup(p->basic_user))) ||
        (p->basic_user && !(q->pass = strdup(p->basic_pass ? p->basic_pass : "")))) {
        if (q)
            post_free(q);
        cp_err_set(&err, CP_ENOMEM, "out of memory");
        cb(arg, CP_ENOMEM, 0, NULL, &err);
        return;
    }
    q->a = a;
    q->cb = cb;
    q->arg = arg;
    q->timeout_ms = p->timeout_ms;
    url_origin(p->url, q->origin, sizeof q->origin);
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", p->content_type);
    q->hdrs = curl_slist_append(q->hdrs, ct);
    q->hdrs = curl_slist_append(q->hdrs, "Accept: application/json");
    q->resp.max = MAX_RESPONSE;
    CURL *h = q->h;
    curl_easy_setopt(h, CURLOPT_URL, q->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(q->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)p->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(p->timeout_ms < 10000 ? p->timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (p->tls_skip_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (p->ca_cert && cfg_secret_isset(p->ca_cert)) {
        q->ca.data = p->ca_cert->v;
        q->ca.len = p->ca_cert->len;
        q->ca.flags = CURL_BLOB_COPY;
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &q->ca);
    }
    if (q->user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, q->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, q->pass);
    }
    auth__hold(a, 1);
    if (cp_http_add(a->http, h, on_done, q) != 0) {
        post_free(q);
        cp_err_set(&err, CP_ENOMEM, "out of memory");
        cb(arg, CP_ENOMEM, 0, NULL, &err);
        auth__hold(a, -1);
    }
}
