/* http.c - the blocking HTTP POST used for OAuth2 tokens and external authorization. */
#include "auth_int.h"

#include <curl/curl.h>
#include <string.h>

#define MAX_RESPONSE (1 << 20)

struct sink {
    struct cp_buf *buf;
    int too_big;
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct sink *s = ud;
    if (cp_buf_add(s->buf, p, sz * n) != 0) {
        s->too_big = 1;
        return 0;
    }
    return sz * n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    const struct auth__post *p = ud;
    return p->cancelled && p->cancelled(p->cancel_ctx) ? 1 : 0;
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

int auth__http_post(const struct auth__post *p, long *status, struct cp_buf *resp,
                    struct cp_err *err)
{
    char origin[200];
    url_origin(p->url, origin, sizeof origin);
    CURL *h = curl_easy_init();
    if (!h)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    struct curl_slist *hdrs = NULL;
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", p->content_type);
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    resp->max = MAX_RESPONSE;
    struct sink sk = {resp, 0};
    curl_easy_setopt(h, CURLOPT_URL, p->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(p->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sk);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)p->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(p->timeout_ms < 10000 ? p->timeout_ms
                                                                                : 10000));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)p);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    if (p->tls_skip_verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    struct curl_blob ca = {0};
    if (p->ca_cert && cfg_secret_isset(p->ca_cert)) {
        ca.data = p->ca_cert->v;
        ca.len = p->ca_cert->len;
        ca.flags = CURL_BLOB_COPY;
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (p->basic_user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, p->basic_user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, p->basic_pass ? p->basic_pass : "");
    }
    CURLcode cc = curl_easy_perform(h);
    int rc = 0;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    } else if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = cp_err_set(err, CP_ETIMEDOUT, "%s did not answer within %lld ms", origin,
                        (long long)p->timeout_ms);
    } else if (cc == CURLE_ABORTED_BY_CALLBACK) {
        rc = cp_err_set(err, CP_ECANCELED, "request cancelled");
    } else if (sk.too_big) {
        rc = cp_err_set(err, CP_EUPSTREAM, "%s answered more than 1 MiB", origin);
    } else {
        rc = cp_err_set(err, CP_EUPSTREAM, "%s unreachable: %s", origin, curl_easy_strerror(cc));
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}
