/*
 * http_front.c - the standalone server (`gpx_cachingproxy serve`): Grafana's URL layout over
 * HTTP/1.1 on libmicrohttpd, a thin host over the same proxy/ pipeline the gRPC services use.
 *
 *   /api/datasources/uid/<uid>/resources/...  resource calls (proxy/<path>, cache/stats,
 *                                             cache/purge), as CallResource
 *   POST /api/ds/query                        Grafana's query API; frames as data frame JSON
 *   GET /metrics                              Prometheus text, the families of CollectMetrics
 *   GET /healthz                              liveness
 *
 * Who calls: "Authorization: Bearer <key>" names one of the configuration's API keys, which
 * gives the login, email, role and org the pipeline's rules see. The header is never passed on.
 * Errors made here are Grafana's {"message": "..."}; errors of the pipeline keep the plugin's
 * {"error", "status"}.
 *
 * Threads: libmicrohttpd's pool (epoll, one thread per pool slot, never one per connection)
 * runs the handlers. A memory hit is answered on that thread (proxy_resource_fast); anything
 * else starts a pipeline call and suspends the connection until the answer's head is there;
 * the body then flows through a content reader that suspends the connection while it has
 * nothing to send. The pipeline's sink runs on the instance's threads and resumes the
 * connection; when the front holds more than OUT_LIMIT bytes not yet sent, the sink answers
 * PROXY_PAUSE, which pauses the upstream transfer until the reader has drained them.
 */
#include "plugin_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OUT_LIMIT (256 * 1024) /* bytes held for a slow client before the upstream pauses */
#define READER_BLOCK (64 * 1024)
#define MAX_REQ_HEADERS 128
#define STOP_WAIT_MS 1000 /* after cancelling: how long calls get to end */

static const char resources_prefix[] = "/api/datasources/uid/";

enum route { R_NONE, R_HEALTH, R_METRICS, R_RESOURCE, R_QUERY };

struct http_front {
    struct MHD_Daemon *d;
    struct cfg_standalone *cfg;
    struct plugin_instance **ds; /* parallel to cfg->ds */
    size_t nds;
    int port;
    int secrets; /* the API keys are registered for redaction */
    _Atomic int stopping;
    _Atomic long active; /* requests between their URI line and their end */
    pthread_mutex_t mu;  /* guards live */
    struct hreq *live;   /* requests with pipeline work started, for cancelling at stop */
};

struct query_group;

/* One request. References: the connection's (released when MHD says the request is over),
 * the pipeline's (released by its done) and a streamed response's (released when MHD frees
 * the response). */
struct hreq {
    _Atomic int refs;
    struct http_front *f;
    struct MHD_Connection *conn;
    char *uri; /* as received: path and query, still escaped */
    const char *method;
    enum route route;
    int started, dispatched;
    int queued; /* the answer went to MHD */
    /* the request */
    struct cp_buf body;
    uint64_t skipped; /* body bytes of a request answered before its body */
    const struct cfg_api_key *key;
    struct plugin_instance *in;
    char *strings;           /* copies of the headers and paths the pipeline borrows */
    struct proxy_header *hs; /* sized to the request's headers */
    size_t nh, hcap;
    struct proxy_request pr;
    struct proxy_call *call;
    struct query_group *groups;
    size_t ngroups;
    _Atomic size_t groups_left;
    /* the answer; guarded by mu from here on */
    pthread_mutex_t mu;
    int suspended; /* we suspended the connection and owe it a resume */
    int closed;    /* MHD is done with the request: conn is gone */
    int head, status;
    struct cp_buf hbuf; /* "name\0value\0" pairs */
    size_t nhead;
    struct cp_buf out; /* body not yet handed to MHD */
    size_t out_off;
    int paused; /* the pipeline was told PROXY_PAUSE */
    int done, done_rc;
    int listed;
    struct hreq *prev, *next;
};

/* The queries of one data source within an /api/ds/query request. */
struct query_group {
    struct hreq *r;
    struct plugin_instance *in;
    struct proxy_query *qs;
    size_t *index; /* position of each query in the request */
    struct proxy_query_result *res;
    size_t n;
    struct proxy_batch *batch;
};

static void req_unref(struct hreq *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    proxy_call_release(r->call);
    for (size_t g = 0; g < r->ngroups; g++) {
        struct query_group *qg = &r->groups[g];
        proxy_batch_release(qg->batch);
        for (size_t i = 0; qg->res && i < qg->n; i++)
            proxy_query_result_dispose(&qg->res[i]);
        free(qg->res);
        free(qg->qs);
        free(qg->index);
    }
    free(r->groups);
    plugin_instance_put(r->in);
    cp_buf_free(&r->body);
    cp_buf_free(&r->hbuf);
    cp_buf_free(&r->out);
    free(r->strings);
    free(r->hs);
    free(r->uri);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- waking the connection ------------------------------------------------------------------ */

/* Resumes the connection if we suspended it. Caller holds r->mu; returns the connection to
 * resume after unlocking, or NULL. */
static struct MHD_Connection *wake_locked(struct hreq *r)
{
    if (!r->suspended || r->closed)
        return NULL;
    r->suspended = 0;
    return r->conn;
}

static void wake(struct MHD_Connection *c)
{
    if (c)
        MHD_resume_connection(c);
}

static void unlist(struct hreq *r)
{
    struct http_front *f = r->f;
    pthread_mutex_lock(&f->mu);
    if (r->listed) {
        if (r->prev)
            r->prev->next = r->next;
        else
            f->live = r->next;
        if (r->next)
            r->next->prev = r->prev;
        r->listed = 0;
    }
    pthread_mutex_unlock(&f->mu);
}

static void list(struct hreq *r)
{
    struct http_front *f = r->f;
    pthread_mutex_lock(&f->mu);
    r->next = f->live;
    r->prev = NULL;
    if (f->live)
        f->live->prev = r;
    f->live = r;
    r->listed = 1;
    pthread_mutex_unlock(&f->mu);
}

/* ---- the pipeline's sink -------------------------------------------------------------------- */

static int put_head_locked(struct hreq *r, int status, const struct proxy_header *h, size_t n)
{
    r->hbuf.len = 0;
    r->nhead = 0;
    r->status = status;
    for (size_t i = 0; i < n; i++) {
        if (cp_buf_add(&r->hbuf, h[i].name, strlen(h[i].name) + 1) ||
            cp_buf_add(&r->hbuf, h[i].value, strlen(h[i].value) + 1))
            return CP_ENOMEM;
        r->nhead++;
    }
    r->head = 1;
    return 0;
}

static int sink_head(void *ctx, int status, const struct proxy_header *h, size_t n)
{
    struct hreq *r = ctx;
    pthread_mutex_lock(&r->mu);
    /* a second head replaces the first while nothing has left; once the head went to MHD
     * (queued) it cannot: the answer breaks off instead (read_body ends it with an error, so
     * the client sees an incomplete answer, not an error text glued onto a 200) */
    int rc = r->queued || (r->head && r->out.len) ? CP_ECANCELED
                                                  : put_head_locked(r, status, h, n);
    if (!rc)
        r->out.len = r->out_off = 0;
    struct MHD_Connection *c = rc ? NULL : wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    wake(c);
    return rc;
}

static int sink_body(void *ctx, const void *p, size_t n)
{
    struct hreq *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->closed) {
        pthread_mutex_unlock(&r->mu);
        return CP_ECANCELED;
    }
    if (r->out.len - r->out_off >= OUT_LIMIT) {
        r->paused = 1; /* proxy_call_resume once the reader drained it */
        pthread_mutex_unlock(&r->mu);
        return PROXY_PAUSE;
    }
    if (r->out_off) { /* what MHD took is gone: keep the buffer small */
        memmove(r->out.p, r->out.p + r->out_off, r->out.len - r->out_off);
        r->out.len -= r->out_off;
        r->out_off = 0;
    }
    int rc = cp_buf_add(&r->out, p, n) ? CP_ENOMEM : 0;
    struct MHD_Connection *c = wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    wake(c);
    return rc;
}

static void sink_done(void *ctx, int rc)
{
    struct hreq *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    r->done_rc = rc;
    struct MHD_Connection *c = wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    wake(c);
    unlist(r);
    req_unref(r); /* the pipeline's reference */
}

static struct proxy_sink sink_of(struct hreq *r)
{
    return (struct proxy_sink){sink_head, sink_body, sink_done, r};
}

/* ---- answers ------------------------------------------------------------------------------- */

/* The content reader of a streamed answer (MHD's thread of the connection). */
static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct hreq *r = cls;
    pthread_mutex_lock(&r->mu);
    size_t have = r->out.len - r->out_off;
    if (have) {
        size_t n = have < max ? have : max;
        memcpy(buf, r->out.p + r->out_off, n);
        r->out_off += n;
        int resume = 0;
        if (r->out_off == r->out.len) {
            r->out.len = r->out_off = 0;
            resume = r->paused;
            r->paused = 0;
        }
        struct proxy_call *call = r->call;
        pthread_mutex_unlock(&r->mu);
        if (resume)
            proxy_call_resume(call);
        return (ssize_t)n;
    }
    if (r->done) {
        int rc = r->done_rc;
        pthread_mutex_unlock(&r->mu);
        return rc ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    /* nothing yet: sleep until the sink has more (its wake resumes us) */
    r->suspended = 1;
    MHD_suspend_connection(r->conn);
    int resume = r->paused;
    r->paused = 0;
    struct proxy_call *call = r->call;
    pthread_mutex_unlock(&r->mu);
    if (resume)
        proxy_call_resume(call);
    return 0;
}

static void reader_free(void *cls)
{
    req_unref(cls);
}

static int skip_header(const char *name)
{
    return !strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding") ||
           !strcasecmp(name, "Connection") || !strcasecmp(name, "Keep-Alive");
}

/* Queues the answer whose head is there: whole when it is complete, else streamed. Caller
 * holds r->mu (the connection's own thread). */
/* A HEAD answer has no body to read: MHD never calls this. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls, (void)pos, (void)buf, (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/* The Content-Length of the answer's head (an upstream's answer to HEAD), or -1. */
static int64_t head_length(const struct hreq *r)
{
    const char *h = r->hbuf.p;
    for (size_t i = 0; i < r->nhead; i++) {
        const char *v = h + strlen(h) + 1;
        if (!strcasecmp(h, "Content-Length") && *v && strspn(v, "0123456789") == strlen(v) &&
            strlen(v) < 19)
            return strtoll(v, NULL, 10);
        h = v + strlen(v) + 1;
    }
    return -1;
}

static enum MHD_Result queue_locked(struct hreq *r)
{
    struct MHD_Response *resp;
    int64_t head_len = !strcmp(r->method, "HEAD") && r->done && !r->done_rc &&
                               r->out.len == r->out_off
                           ? head_length(r)
                           : -1;
    if (head_len >= 0) {
        /* the length the upstream announced (libmicrohttpd writes it and sends no body) */
        resp = MHD_create_response_from_callback((uint64_t)head_len, READER_BLOCK, no_body, NULL,
                                                 NULL);
    } else if (r->done && !r->done_rc) {
        size_t len = r->out.len - r->out_off;
        if (r->out_off)
            memmove(r->out.p, r->out.p + r->out_off, len);
        r->out.len = len;
        r->out_off = 0;
        char *p = len ? cp_buf_take(&r->out, NULL) : NULL;
        resp = MHD_create_response_from_buffer(len, p ? p : (char *)"",
                                               p ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp)
            free(p);
    } else {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, READER_BLOCK, read_body, r,
                                                 reader_free);
        if (resp)
            atomic_fetch_add(&r->refs, 1); /* the response's */
    }
    if (!resp)
        return MHD_NO;
    const char *h = r->hbuf.p;
    for (size_t i = 0; i < r->nhead; i++) {
        const char *v = h + strlen(h) + 1;
        if (!skip_header(h))
            MHD_add_response_header(resp, h, v);
        h = v + strlen(v) + 1;
    }
    if (atomic_load(&r->f->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* Sends the answer decided for a request whose body is still coming: MHD reads no more of it
 * and closes the connection after the answer. */
static enum MHD_Result answer_now(struct hreq *r)
{
    pthread_mutex_lock(&r->mu);
    enum MHD_Result ok = MHD_YES;
    if (!r->queued) {
        r->queued = 1;
        ok = r->head ? queue_locked(r) : MHD_NO;
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* Grafana's error shape, answered by the front itself. */
static enum MHD_Result answer_message(struct hreq *r, int status, const char *msg)
{
    json_t *j = json_pack("{s:s}", "message", msg);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct proxy_header h[] = {{"Content-Type", "application/json"},
                               {"Cache-Control", "no-store"},
                               {"WWW-Authenticate", "Bearer"}};
    pthread_mutex_lock(&r->mu);
    int rc = put_head_locked(r, status, h, status == 401 ? 3 : 2);
    r->out.len = r->out_off = 0;
    if (!rc && text)
        rc = cp_buf_addstr(&r->out, text);
    free(text);
    r->done = 1;
    r->done_rc = rc;
    enum MHD_Result ok = rc ? MHD_NO : MHD_YES; /* on_request queues it */
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static enum MHD_Result answer_text(struct hreq *r, int status, const char *type, const char *p,
                                   size_t n)
{
    struct proxy_header h[] = {{"Content-Type", type}, {"Cache-Control", "no-store"}};
    pthread_mutex_lock(&r->mu);
    int rc = put_head_locked(r, status, h, 2);
    r->out.len = r->out_off = 0;
    if (!rc && n)
        rc = cp_buf_add(&r->out, p, n);
    r->done = 1;
    r->done_rc = rc;
    enum MHD_Result ok = rc ? MHD_NO : MHD_YES; /* on_request queues it */
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* ---- requests: parsing --------------------------------------------------------------------- */


/* Percent-decodes n bytes of s into out (size n + 1). -1 on a bad escape or an encoded NUL. */
static int pct_decode(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[k++] = s[i];
            continue;
        }
        if (i + 2 >= n)
            return CP_EBADREQ;
        int a = cp_hexval((unsigned char)s[i + 1]), b = cp_hexval((unsigned char)s[i + 2]);
        if (a < 0 || b < 0 || (a == 0 && b == 0))
            return CP_EBADREQ;
        out[k++] = (char)(a * 16 + b);
        i += 2;
    }
    out[k] = 0;
    return 0;
}

static enum MHD_Result take_header(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    (void)kind;
    struct hreq *r = cls;
    /* the caller's API key is ours: it never reaches the pipeline, let alone the upstream */
    if (k && v && strcasecmp(k, "Authorization") && r->nh < r->hcap)
        r->hs[r->nh++] = (struct proxy_header){k, v};
    return MHD_YES;
}

/* The client's headers, borrowed from MHD (valid while the request is being handled). */
static int collect_headers(struct hreq *r)
{
    int n = MHD_get_connection_values(r->conn, MHD_HEADER_KIND, NULL, NULL);
    r->nh = 0;
    r->hcap = n <= 0 ? 1 : n > MAX_REQ_HEADERS ? MAX_REQ_HEADERS : (size_t)n;
    free(r->hs);
    if (!(r->hs = malloc(r->hcap * sizeof *r->hs)))
        return CP_ENOMEM;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, take_header, r);
    return 0;
}

/* Copies the collected headers, the method and extra strings into one block the request owns
 * (the pipeline may read them after MHD let the connection go) and points everything there;
 * extra[i] get their copies in place. */
static int own_request(struct hreq *r, const char **extra, size_t nextra)
{
    size_t total = strlen(r->method) + 1;
    for (size_t i = 0; i < r->nh; i++)
        total += strlen(r->hs[i].name) + strlen(r->hs[i].value) + 2;
    for (size_t i = 0; i < nextra; i++)
        total += strlen(extra[i]) + 1;
    char *dst = r->strings = malloc(total);
    if (!dst)
        return CP_ENOMEM;
#define OWN(p)                                                                                     \
    do {                                                                                           \
        size_t l_ = strlen(p) + 1;                                                                 \
        memcpy(dst, (p), l_);                                                                      \
        (p) = dst;                                                                                 \
        dst += l_;                                                                                 \
    } while (0)
    for (size_t i = 0; i < r->nh; i++) {
        OWN(r->hs[i].name);
        OWN(r->hs[i].value);
    }
    OWN(r->method);
    for (size_t i = 0; i < nextra; i++)
        OWN(extra[i]);
#undef OWN
    return 0;
}

/* The API key of the request, or NULL; *missing tells an absent header from a wrong one. */
static const struct cfg_api_key *caller(struct hreq *r, int *missing)
{
    const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    *missing = !a || !*a;
    if (*missing)
        return NULL;
    if (strncasecmp(a, "Bearer ", 7))
        return NULL;
    const char *t = a + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n && t[n - 1] == ' ')
        n--;
    return cfg_standalone_key(r->f->cfg, t, n);
}

/* The instance of uid (n bytes) visible to org, or NULL. */
static struct plugin_instance *find_ds(struct http_front *f, const char *uid, size_t n, int64_t org)
{
    for (size_t i = 0; i < f->nds; i++) {
        const struct cfg_ds *c = proxy_ds_cfg(f->ds[i]->px);
        if (c->org_id == org && strlen(c->uid) == n && !memcmp(c->uid, uid, n))
            return f->ds[i];
    }
    return NULL;
}

static void set_user(struct hreq *r)
{
    const struct cfg_api_key *k = r->key;
    r->pr.user = (struct cp_user){.present = 1,
                                  .login = k->login,
                                  .email = k->email,
                                  .name = k->name,
                                  .role = k->role,
                                  .org_id = k->org_id};
}

/* ---- resources ------------------------------------------------------------------------------ */

/* Splits the URI of a resource route: uid, and the escaped sub-path after "resources/" with
 * its query. 0, or -1 when it is not a resource route. */
static int split_resource(const char *uri, const char **uid, size_t *uid_len, const char **sub,
                          size_t *sub_len, const char **query)
{
    const char *p = uri + sizeof resources_prefix - 1;
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - p) : strlen(p);
    const char *slash = memchr(p, '/', plen);
    if (!slash)
        return -1;
    *uid = p;
    *uid_len = (size_t)(slash - p);
    const char *rest = slash + 1;
    size_t rl = plen - (size_t)(rest - p);
    if (rl < 9 || strncmp(rest, "resources", 9) || (rl > 9 && rest[9] != '/'))
        return -1;
    *sub = rl > 9 ? rest + 10 : rest + 9;
    *sub_len = rl > 9 ? rl - 10 : 0;
    *query = q;
    return 0;
}

static enum MHD_Result start_resource(struct hreq *r)
{
    const char *uid, *sub, *query;
    size_t uid_len, sub_len;
    if (split_resource(r->uri, &uid, &uid_len, &sub, &sub_len, &query) != 0)
        return answer_message(r, 404, "Not found");
    struct plugin_instance *in = find_ds(r->f, uid, uid_len, r->key->org_id);
    if (!in) /* unknown here, or another org's */
        return answer_message(r, 404, "Data source not found");
    /* Grafana's CallResource fields: path percent-decoded, url escaped with its query */
    char small[2][1024];
    size_t need = sub_len + (query ? strlen(query) : 0) + 1;
    char *decoded = need <= sizeof small[0] ? small[0] : malloc(need);
    char *raw = need <= sizeof small[1] ? small[1] : malloc(need);
    enum MHD_Result ok = MHD_YES;
    if (!decoded || !raw) {
        ok = answer_message(r, 500, "out of memory");
        goto out;
    }
    if (pct_decode(sub, sub_len, decoded) != 0) {
        ok = answer_message(r, 400, "bad percent-encoding in the URL");
        goto out;
    }
    memcpy(raw, sub, sub_len);
    strcpy(raw + sub_len, query ? query : "");
    set_user(r);
    if (collect_headers(r) != 0) {
        ok = answer_message(r, 500, "out of memory");
        goto out;
    }
    r->pr.method = r->method;
    r->pr.path = decoded;
    r->pr.raw_url = raw;
    r->pr.headers = r->hs;
    r->pr.nheaders = r->nh;
    r->pr.body = r->body.p;
    r->pr.body_len = r->body.len;
    struct proxy_sink sink = sink_of(r);
    /* a memory hit (or a refusal decided from the request) is answered here, on this thread */
    if (proxy_resource_fast(in->px, &r->pr, &sink, OUT_LIMIT)) {
        pthread_mutex_lock(&r->mu);
        r->done = 1;
        pthread_mutex_unlock(&r->mu);
        goto out;
    }
    const char *extra[] = {decoded, raw};
    if (own_request(r, extra, 2) != 0) {
        ok = answer_message(r, 500, "out of memory");
        goto out;
    }
    r->pr.method = r->method;
    r->pr.path = extra[0];
    r->pr.raw_url = extra[1];
    r->pr.headers = r->hs;
    atomic_fetch_add(&r->refs, 1); /* the pipeline's */
    list(r);
    struct proxy_call *call = NULL;
    if (proxy_resource_start(in->px, &r->pr, &sink, &call) != 0) {
        unlist(r);
        atomic_fetch_sub(&r->refs, 1);
        ok = answer_message(r, 500, "out of memory");
        goto out;
    }
    pthread_mutex_lock(&r->mu);
    r->call = call;
    pthread_mutex_unlock(&r->mu);
out:
    if (decoded != small[0])
        free(decoded);
    if (raw != small[1])
        free(raw);
    return ok;
}

/* ---- /api/ds/query ----------------------------------------------------------------------------
 */

/* Grafana's time: epoch milliseconds (a number or a string of digits), or date math
 * ("now-7d/d"; cfg_time_parse). A range's end (round_up) rounds up to its unit's end. */
static int parse_time(json_t *v, int64_t now_ms, int round_up, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return CP_EBADREQ;
    return cfg_time_parse(json_string_value(v), now_ms, round_up, out);
}

/* Appends a JSON string. */
static int put_json_string(struct cp_buf *b, const char *s)
{
    json_t *j = json_string(s);
    if (!j) {
        char *copy = strdup(s);
        j = copy ? json_string(cp_utf8_fix(copy)) : NULL;
        free(copy);
    }
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    int rc = t ? cp_buf_addstr(b, t) : CP_ENOMEM;
    free(t);
    return rc;
}

/* Every group answered: {"results": {"<refId>": {"status", "frames", "error", ...}}}, 200 when
 * no query failed, else 400, as Grafana answers. */
static void queries_answer(struct hreq *r)
{
    struct cp_buf b = {0};
    int failed = 0, rc = cp_buf_addstr(&b, "{\"results\":{");
    size_t written = 0;
    for (size_t g = 0; g < r->ngroups && !rc; g++) {
        struct query_group *qg = &r->groups[g];
        for (size_t i = 0; i < qg->n && !rc; i++) {
            struct proxy_query_result *res = &qg->res[i];
            int status = res->status ? res->status : 500;
            rc = cp_buf_addstr(&b, written++ ? "," : "");
            rc = rc ? rc : put_json_string(&b, qg->qs[i].ref_id);
            rc = rc ? rc : cp_buf_addf(&b, ":{\"status\":%d", status);
            if (!rc && res->nframes) {
                rc = cp_buf_addstr(&b, ",\"frames\":[");
                for (size_t k = 0; k < res->nframes && !rc; k++) {
                    rc = cp_buf_addstr(&b, k ? "," : "");
                    rc = rc ? rc : cp_buf_add(&b, res->frames[k], res->frame_lens[k]);
                }
                rc = rc ? rc : cp_buf_addstr(&b, "]");
            }
            if (!rc && res->error) {
                failed = 1;
                rc = cp_buf_addstr(&b, ",\"error\":");
                rc = rc ? rc : put_json_string(&b, res->error);
                rc = rc ? rc
                        : cp_buf_addf(&b, ",\"errorSource\":\"%s\"",
                                      res->downstream ? "downstream" : "plugin");
                struct cp_kv kv[] = {CP_KV_S("refId", qg->qs[i].ref_id),
                                     CP_KV_S("error", res->error), CP_KV_I("status", status)};
                plugin_log(res->downstream ? CP_LOG_WARN : CP_LOG_INFO, "query failed", kv, 3);
            }
            rc = rc ? rc : cp_buf_addstr(&b, "}");
        }
    }
    rc = rc ? rc : cp_buf_addstr(&b, "}}");
    struct proxy_header h[] = {{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}};
    pthread_mutex_lock(&r->mu);
    if (!rc)
        rc = put_head_locked(r, failed ? 400 : 200, h, 2);
    if (!rc) {
        cp_buf_free(&r->out);
        r->out = b;
        r->out_off = 0;
        memset(&b, 0, sizeof b);
    }
    r->done = 1;
    r->done_rc = rc;
    struct MHD_Connection *c = wake_locked(r);
    pthread_mutex_unlock(&r->mu);
    cp_buf_free(&b);
    wake(c);
}

static void group_done(void *ctx)
{
    struct query_group *qg = ctx;
    struct hreq *r = qg->r;
    if (atomic_fetch_sub(&r->groups_left, 1) != 1)
        return;
    queries_answer(r);
    unlist(r);
    req_unref(r); /* the pipeline's reference */
}

static enum MHD_Result start_queries(struct hreq *r)
{
    if (strcmp(r->method, "POST"))
        return answer_message(r, 405, "Method not allowed: use POST");
    json_error_t je;
    json_t *doc = r->body.len ? json_loadb(r->body.p, r->body.len, 0, &je) : NULL;
    json_t *qs = json_object_get(doc, "queries");
    char msg[300];
    int64_t now = cp_now_ms(), from = now - 3600000, to = now;
    json_t *jf = json_object_get(doc, "from"), *jt = json_object_get(doc, "to");
    enum MHD_Result ok = MHD_YES;
    if (!json_is_object(doc)) {
        snprintf(msg, sizeof msg, "body must be a JSON object {\"from\", \"to\", \"queries\"}%s%s",
                 doc || !r->body.len ? "" : ": ", doc || !r->body.len ? "" : je.text);
        ok = answer_message(r, 400, msg);
        goto out;
    }
    if (!json_is_array(qs) || json_array_size(qs) == 0) {
        ok = answer_message(r, 400, "queries must be a non-empty list");
        goto out;
    }
    if ((jf && parse_time(jf, now, 0, &from) != 0) || (jt && parse_time(jt, now, 1, &to) != 0)) {
        ok = answer_message(r, 400,
                            "from and to must be epoch milliseconds or relative to now, such as "
                            "now-6h, now-7d/d or now/w");
        goto out;
    }
    size_t n = json_array_size(qs);
    /* one group per data source, in order of first appearance */
    size_t *dsidx = calloc(n, sizeof *dsidx);
    r->groups = calloc(n, sizeof *r->groups);
    if (!dsidx || !r->groups) {
        free(dsidx);
        ok = answer_message(r, 500, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *q = json_array_get(qs, i);
        json_t *ds = json_object_get(q, "datasource");
        const char *uid = json_string_value(json_object_get(ds, "uid"));
        if (!json_is_object(q) || !uid) {
            snprintf(msg, sizeof msg, "queries[%zu]: datasource.uid is required", i);
            free(dsidx);
            ok = answer_message(r, 400, msg);
            goto out;
        }
        /* results are keyed by refId (missing: "A"): two queries with one refId would make a
         * duplicate key in the answer, of which JSON readers keep one */
        const char *ref = json_string_value(json_object_get(q, "refId"));
        ref = ref && *ref ? ref : "A";
        for (size_t k = 0; k < i; k++) {
            const char *o = json_string_value(json_object_get(json_array_get(qs, k), "refId"));
            if (!strcmp(o && *o ? o : "A", ref)) {
                snprintf(msg, sizeof msg, "queries[%zu]: refId \"%.40s\" is used twice", i, ref);
                free(dsidx);
                ok = answer_message(r, 400, msg);
                goto out;
            }
        }
        struct plugin_instance *in = find_ds(r->f, uid, strlen(uid), r->key->org_id);
        if (!in) {
            free(dsidx);
            ok = answer_message(r, 404, "Data source not found");
            goto out;
        }
        size_t g;
        for (g = 0; g < r->ngroups && r->groups[g].in != in; g++)
            ;
        if (g == r->ngroups) {
            r->groups[g].in = in;
            r->groups[g].r = r;
            r->ngroups++;
        }
        r->groups[g].n++;
        dsidx[i] = g;
    }
    /* the queries' JSON texts live in one copy the request owns */
    struct cp_buf texts = {0};
    size_t *off = calloc(n, sizeof *off), *len = calloc(n, sizeof *len);
    int rc = off && len ? 0 : CP_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        char *t = json_dumps(json_array_get(qs, i), JSON_COMPACT);
        const char *ref = json_string_value(json_object_get(json_array_get(qs, i), "refId"));
        off[i] = texts.len;
        len[i] = t ? strlen(t) : 0;
        rc = t ? cp_buf_add(&texts, t, len[i] + 1) : CP_ENOMEM;
        rc = rc ? rc : cp_buf_addstr(&texts, ref && *ref ? ref : "A");
        rc = rc ? rc : cp_buf_add(&texts, "", 1);
        free(t);
    }
    for (size_t g = 0; g < r->ngroups && !rc; g++) {
        struct query_group *qg = &r->groups[g];
        qg->qs = calloc(qg->n, sizeof *qg->qs);
        qg->res = calloc(qg->n, sizeof *qg->res);
        qg->index = calloc(qg->n, sizeof *qg->index);
        if (!qg->qs || !qg->res || !qg->index)
            rc = CP_ENOMEM;
        qg->n = 0;
    }
    if (!rc && !(rc = collect_headers(r))) {
        /* the headers of this POST's own body are not the queries': each query's upstream
         * request gets its model's */
        size_t k = 0;
        for (size_t i = 0; i < r->nh; i++)
            if (strncasecmp(r->hs[i].name, "Content-", 8) && strcasecmp(r->hs[i].name, "Expect") &&
                strcasecmp(r->hs[i].name, "Transfer-Encoding"))
                r->hs[k++] = r->hs[i];
        r->nh = k;
        rc = own_request(r, NULL, 0);
    }
    if (rc) {
        free(dsidx);
        free(off);
        free(len);
        cp_buf_free(&texts);
        ok = answer_message(r, 500, "out of memory");
        goto out;
    }
    cp_buf_free(&r->body);
    r->body = texts; /* owned by the request from here */
    for (size_t i = 0; i < n; i++) {
        struct query_group *qg = &r->groups[dsidx[i]];
        json_t *q = json_array_get(qs, i);
        json_t *iv = json_object_get(q, "intervalMs"), *mdp = json_object_get(q, "maxDataPoints");
        const char *text = r->body.p + off[i];
        qg->index[qg->n] = i;
        qg->qs[qg->n++] = (struct proxy_query){
            .ref_id = text + len[i] + 1,
            .json = text,
            .json_len = len[i],
            .from_ms = from,
            .to_ms = to,
            .interval_ms = json_is_number(iv) ? (int64_t)json_number_value(iv) : 0,
            .max_data_points = json_is_number(mdp) ? (int64_t)json_number_value(mdp) : 0,
            .form = PROXY_FRAME_JSON,
        };
    }
    free(dsidx);
    free(off);
    free(len);
    set_user(r);
    atomic_store(&r->groups_left, r->ngroups + 1);
    atomic_fetch_add(&r->refs, 1); /* the pipeline's */
    list(r);
    for (size_t g = 0; g < r->ngroups; g++) {
        struct query_group *qg = &r->groups[g];
        struct proxy_batch *b = NULL;
        if (proxy_query_start(qg->in->px, qg->qs, qg->n, &r->pr.user, r->hs, r->nh, qg->res,
                              group_done, qg, &b) != 0) {
            for (size_t i = 0; i < qg->n; i++) {
                qg->res[i].status = 500;
                qg->res[i].error = strdup("out of memory");
            }
            group_done(qg);
            continue;
        }
        pthread_mutex_lock(&r->mu);
        qg->batch = b;
        pthread_mutex_unlock(&r->mu);
    }
    group_done(&(struct query_group){.r = r});
out:
    json_decref(doc);
    return ok;
}

/* ---- routing --------------------------------------------------------------------------------- */

static enum route route_of(const char *uri)
{
    size_t n = strcspn(uri, "?");
    if (n == 8 && !strncmp(uri, "/healthz", 8))
        return R_HEALTH;
    if (n == 8 && !strncmp(uri, "/metrics", 8))
        return R_METRICS;
    if (n == 13 && !strncmp(uri, "/api/ds/query", 13))
        return R_QUERY;
    if (!strncmp(uri, resources_prefix, sizeof resources_prefix - 1))
        return R_RESOURCE;
    return R_NONE;
}

static enum MHD_Result serve_open(struct hreq *r)
{
    int get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD");
    if (!get)
        return answer_message(r, 405, "Method not allowed: use GET");
    if (r->route == R_HEALTH) {
        if (atomic_load(&r->f->stopping))
            return answer_text(r, 503, "application/json", "{\"status\":\"stopping\"}", 21);
        return answer_text(r, 200, "application/json", "{\"status\":\"ok\"}", 15);
    }
    struct cp_buf b = {0};
    int rc = plugin_metrics_render(&b);
    enum MHD_Result ok =
        rc ? answer_message(r, 500, "out of memory")
           : answer_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    cp_buf_free(&b);
    return ok;
}

/* The first call of a request: headers are there, the body is not. Decides what can be
 * decided now (route, caller, size); returns 1 when an answer was queued. */
static int admit(struct hreq *r, enum MHD_Result *ok)
{
    r->route = route_of(r->uri);
    if (r->route == R_HEALTH || r->route == R_METRICS) {
        *ok = serve_open(r);
        return 1;
    }
    if (r->route == R_NONE) {
        *ok = answer_message(r, 404, "Not found");
        return 1;
    }
    int missing = 0;
    if (!(r->key = caller(r, &missing))) {
        *ok = answer_message(r, 401, missing ? "Unauthorized" : "Invalid API key");
        return 1;
    }
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoll(cl, NULL, 10) > r->f->cfg->max_body_bytes) {
        /* answered before the body, which is never read: the connection closes after it */
        *ok = answer_message(r, 413, "Request body too large");
        if (*ok == MHD_YES)
            *ok = answer_now(r);
        return 1;
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)url, (void)version;
    struct hreq *r = *con_cls;
    if (!r)
        return MHD_NO; /* out of memory when the request line came */
    if (!r->started) {
        r->started = 1;
        r->conn = conn;
        r->method = method;
        enum MHD_Result ok = MHD_YES;
        /* an answer decided now goes out after the body (if any) was read, so that the
         * connection stays open for the next request */
        if (r->uri[0] != '/') {
            r->dispatched = 1;
            ok = answer_message(r, 400, "the request target must be a path");
        } else if (admit(r, &ok)) {
            r->dispatched = 1;
        }
        /* a refused request whose body would be more than the limit, or whose client waits
         * for "100 Continue", gets its answer now, before the body (which is then never read:
         * the connection closes after the answer) */
        const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Expect");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (ok == MHD_YES && r->dispatched &&
            ((expect && !strcasecmp(expect, "100-continue")) ||
             (cl && strtoll(cl, NULL, 10) > r->f->cfg->max_body_bytes)))
            ok = answer_now(r);
        return ok;
    }
    if (r->dispatched && *upload_data_size) { /* answered before the body: skip it */
        r->skipped += *upload_data_size;
        *upload_data_size = 0;
        /* a refused client does not get to send an endless body: past twice the limit the
         * connection closes (libmicrohttpd cannot answer in the middle of a body) */
        return r->skipped > 2 * (uint64_t)r->f->cfg->max_body_bytes ? MHD_NO : MHD_YES;
    }
    if (*upload_data_size) {
        if ((int64_t)(r->body.len + *upload_data_size) > r->f->cfg->max_body_bytes) {
            /* over the limit (a chunked body says so only now): the 413 goes after the body,
             * the rest of which is skipped within the same bound as a refused request's
             * (libmicrohttpd answers only before or after a body, not inside it) */
            r->dispatched = 1;
            r->skipped = r->body.len + *upload_data_size;
            cp_buf_free(&r->body);
            *upload_data_size = 0;
            return answer_message(r, 413, "Request body too large");
        }
        if (cp_buf_add(&r->body, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!r->dispatched) {
        r->dispatched = 1;
        enum MHD_Result ok = r->route == R_QUERY ? start_queries(r) : start_resource(r);
        if (ok != MHD_YES)
            return ok;
    }
    /* the answer's head is there: send it; else wait for it */
    pthread_mutex_lock(&r->mu);
    enum MHD_Result ok = MHD_YES;
    if (r->queued) {
        /* already with MHD */
    } else if (r->head && (r->done || strcmp(r->method, "HEAD"))) {
        /* (an answer to HEAD waits for its end, which follows its head at once: queued whole,
         * it keeps the upstream's Content-Length) */
        r->queued = 1;
        ok = queue_locked(r);
    } else if (r->done) {
        ok = MHD_NO; /* ended without an answer (cancelled): close the connection */
    } else {
        r->suspended = 1;
        MHD_suspend_connection(conn);
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* The request line arrived: the request's state starts here, with the URI as sent. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)conn;
    struct http_front *f = cls;
    struct hreq *r = calloc(1, sizeof *r);
    if (!r || !(r->uri = strdup(uri ? uri : ""))) {
        free(r);
        return NULL;
    }
    r->f = f;
    atomic_init(&r->refs, 1);
    pthread_mutex_init(&r->mu, NULL);
    atomic_fetch_add(&f->active, 1);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct http_front *f = cls;
    struct hreq *r = *con_cls;
    *con_cls = NULL;
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->closed = 1;
    r->suspended = 0;
    int gone = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->done;
    struct proxy_call *call = r->call;
    pthread_mutex_unlock(&r->mu);
    if (gone) {
        proxy_call_cancel(call);
        for (size_t g = 0; g < r->ngroups; g++)
            proxy_batch_cancel(r->groups[g].batch);
    }
    req_unref(r);
    atomic_fetch_sub(&f->active, 1);
}

/* libmicrohttpd's own messages, as log lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    struct cp_kv kv[] = {CP_KV_S("source", "libmicrohttpd")};
    plugin_log(CP_LOG_DEBUG, buf, kv, 1);
}

/* ---- lifecycle --------------------------------------------------------------------------------
 */

static int bind_address(const struct cfg_standalone *cfg, struct sockaddr_storage *ss, int *v6,
                        struct cp_err *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    int rc = getaddrinfo(*cfg->host ? cfg->host : "0.0.0.0", port, &hints, &ai);
    if (rc != 0 || !ai)
        return cp_err_set(err, CP_ECONFIG, "listen: cannot resolve \"%s\": %s", cfg->host,
                          gai_strerror(rc));
    memset(ss, 0, sizeof *ss);
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    return 0;
}

int http_front_start(struct cfg_standalone *cfg, struct http_front **out, struct cp_err *err)
{
    *out = NULL;
    struct http_front *f = calloc(1, sizeof *f);
    if (!f || !(f->ds = calloc(cfg->nds, sizeof *f->ds))) {
        free(f);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    f->cfg = cfg;
    pthread_mutex_init(&f->mu, NULL);
    int rc = 0;
    for (size_t i = 0; i < cfg->nds && !rc; i++) {
        struct cp_err e = {0};
        struct proxy_ds *px = NULL;
        struct cfg_ds *c = cfg->ds[i];
        cfg->ds[i] = NULL; /* proxy_ds_new takes it */
        char uid[64];
        snprintf(uid, sizeof uid, "%s", c->uid);
        if ((rc = proxy_ds_new(c, &plugin_g.env, &px, &e)) == 0)
            rc = plugin_instance_adopt(px, &f->ds[i], &e);
        if (rc)
            cp_err_set(err, rc, "datasources[%zu] (uid %s): %s", i, uid, cp_err_text(&e));
        else
            f->nds++;
    }
    if (rc) {
        http_front_stop(f);
        return rc;
    }
    struct sockaddr_storage ss;
    int v6 = 0;
    if ((rc = bind_address(cfg, &ss, &v6, err)) != 0) {
        http_front_stop(f);
        return rc;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->threads, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)((cfg->connection_timeout_ms + 999) / 1000),
         NULL},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, f},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, f},
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {MHD_OPTION_SOCK_ADDR, 0, &ss},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (cfg->threads <= 1)
        opts[0] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, 0, NULL};
    f->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, f, MHD_OPTION_ARRAY,
                            opts, MHD_OPTION_END);
    if (!f->d) {
        rc = cp_err_set(err, CP_EINTERNAL,
                        "listen: cannot listen on %s%s%s:%d (in use, or not "
                        "an address of this machine)",
                        v6 ? "[" : "", cfg->host, v6 ? "]" : "", cfg->port);
        http_front_stop(f);
        return rc;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    f->port = info ? (int)info->port : cfg->port;
    for (size_t i = 0; i < cfg->nkeys; i++)
        plugin_log_secret_add(cfg->keys[i].key.v);
    f->secrets = 1;
    *out = f;
    return 0;
}

int http_front_port(const struct http_front *f)
{
    return f->port;
}

long http_front_active(struct http_front *f)
{
    return atomic_load(&f->active);
}

void http_front_quiesce(struct http_front *f)
{
    if (!f || !f->d || atomic_exchange(&f->stopping, 1))
        return;
    MHD_socket s = MHD_quiesce_daemon(f->d);
    if (s != MHD_INVALID_SOCKET)
        close(s);
}

/* Cancels every pipeline call still running (their done resumes their connections). */
static void cancel_all(struct http_front *f)
{
    pthread_mutex_lock(&f->mu);
    for (struct hreq *r = f->live; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        struct proxy_call *call = r->call;
        pthread_mutex_unlock(&r->mu);
        proxy_call_cancel(call);
        for (size_t g = 0; g < r->ngroups; g++)
            proxy_batch_cancel(r->groups[g].batch);
    }
    pthread_mutex_unlock(&f->mu);
}

void http_front_stop(struct http_front *f)
{
    if (!f)
        return;
    int clean = 1;
    if (f->d) {
        http_front_quiesce(f);
        cancel_all(f);
        int64_t deadline = cp_mono_ns() + (int64_t)STOP_WAIT_MS * 1000000;
        for (;;) {
            pthread_mutex_lock(&f->mu);
            int busy = f->live != NULL;
            pthread_mutex_unlock(&f->mu);
            if (!busy || cp_mono_ns() > deadline)
                break;
            struct timespec ts = {0, 5000000L};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&f->mu);
        clean = f->live == NULL;
        pthread_mutex_unlock(&f->mu);
        /* stopping with a connection still suspended is undefined in libmicrohttpd: leave
         * the server to the process's end rather than risk it */
        if (clean)
            MHD_stop_daemon(f->d);
        else
            plugin_log(CP_LOG_WARN, "requests still running at exit; leaving them", NULL, 0);
    }
    for (size_t i = 0; f->secrets && i < f->cfg->nkeys; i++)
        plugin_log_secret_remove(f->cfg->keys[i].key.v);
    if (!clean)
        return;
    for (size_t i = 0; i < f->nds; i++)
        plugin_instance_put(f->ds[i]);
    free(f->ds);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
