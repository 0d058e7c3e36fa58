/*
 * svc_resource.c - Resource/CallResource: the request becomes a proxy_request; the answer is
 * streamed back as CallResourceResponse messages. Code and headers go in the first message
 * only; bodies are sent in chunks of up to CHUNK bytes, so a large body never sits in memory
 * twice and small ones take exactly one message.
 */
#include "plugin_int.h"

#include <grpc/status.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK (256 * 1024)
#define MAX_REQ_HEADERS 256

struct res_sink {
    struct rpc_call *c;
    int64_t send_timeout_ms; /* a client that stops reading for this long is dropped */
    int started, sent_any, failed;
    int code;
    Pluginv2__CallResourceResponse__HeadersEntry *entries;
    Pluginv2__CallResourceResponse__HeadersEntry **entry_ptrs;
    Pluginv2__StringList *lists;
    char ***values;
    size_t nentries;
    struct cp_buf buf;
};

static void sink_dispose(struct res_sink *s)
{
    for (size_t i = 0; i < s->nentries; i++) {
        free(s->entries[i].key);
        for (size_t k = 0; k < s->lists[i].n_values; k++)
            free(s->lists[i].values[k]);
        free(s->lists[i].values);
    }
    free(s->entries);
    free(s->entry_ptrs);
    free(s->lists);
    free(s->values);
    cp_buf_free(&s->buf);
}

/* Groups the answer's headers by name into the map<string,StringList> of the first message. */
static int res_start(void *ctx, int status, const struct proxy_header *h, size_t n)
{
    struct res_sink *s = ctx;
    if (s->started) {
        /* a second answer (an error after the upstream's head): only possible while nothing
         * has been sent; otherwise the stream must fail */
        if (s->sent_any)
            return CP_ECANCELED;
        sink_dispose(s);
        s->entries = NULL;
        s->entry_ptrs = NULL;
        s->lists = NULL;
        s->values = NULL;
        s->nentries = 0;
        memset(&s->buf, 0, sizeof s->buf);
    }
    s->started = 1;
    s->code = status;
    s->entries = calloc(n ? n : 1, sizeof *s->entries);
    s->entry_ptrs = calloc(n ? n : 1, sizeof *s->entry_ptrs);
    s->lists = calloc(n ? n : 1, sizeof *s->lists);
    if (!s->entries || !s->entry_ptrs || !s->lists)
        return CP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < s->nentries; k++)
            if (!strcasecmp(s->entries[k].key, h[i].name))
                break;
        if (k == s->nentries) {
            pluginv2__call_resource_response__headers_entry__init(&s->entries[k]);
            pluginv2__string_list__init(&s->lists[k]);
            if (!(s->entries[k].key = strdup(h[i].name)))
                return CP_ENOMEM;
            cp_utf8_fix(s->entries[k].key); /* protobuf strings must be UTF-8 */
            s->entries[k].value = &s->lists[k];
            s->entry_ptrs[k] = &s->entries[k];
            s->nentries++;
        }
        Pluginv2__StringList *l = &s->lists[k];
        char **nv = realloc(l->values, (l->n_values + 1) * sizeof *nv);
        if (!nv)
            return CP_ENOMEM;
        l->values = nv;
        if (!(l->values[l->n_values] = strdup(h[i].value)))
            return CP_ENOMEM;
        cp_utf8_fix(l->values[l->n_values]);
        l->n_values++;
    }
    return 0;
}

/* Sends what is buffered; the last message of the answer carries the OK status in the same
 * batch (a one-message answer is then a single batch, like a unary reply). */
static int flush(struct res_sink *s, int last)
{
    Pluginv2__CallResourceResponse m = PLUGINV2__CALL_RESOURCE_RESPONSE__INIT;
    if (!s->sent_any) {
        m.code = s->code;
        m.n_headers = s->nentries;
        m.headers = s->entry_ptrs;
    }
    m.body.data = (uint8_t *)s->buf.p;
    m.body.len = s->buf.len;
    int rc = last ? rpc_reply(s->c, &m.base) : rpc_send_within(s->c, &m.base, s->send_timeout_ms);
    s->sent_any = 1;
    s->buf.len = 0;
    if (rc)
        s->failed = 1;
    return rc;
}

static int res_body(void *ctx, const void *p, size_t n)
{
    struct res_sink *s = ctx;
    if (s->failed)
        return CP_ECANCELED;
    const char *b = p;
    while (n) {
        size_t room = CHUNK - s->buf.len, take = n < room ? n : room;
        if (cp_buf_add(&s->buf, b, take) != 0)
            return CP_ENOMEM;
        b += take;
        n -= take;
        if (s->buf.len >= CHUNK && flush(s, 0) != 0)
            return CP_ECANCELED;
    }
    return 0;
}

/* Flattens Grafana's map<string,StringList> into name/value pairs (borrowed strings). */
static size_t flatten(const Pluginv2__CallResourceRequest *rq, struct proxy_header *out,
                      size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < rq->n_headers; i++) {
        const Pluginv2__CallResourceRequest__HeadersEntry *e = rq->headers[i];
        if (!e->key || !e->value)
            continue;
        for (size_t v = 0; v < e->value->n_values && k < max; v++)
            out[k++] = (struct proxy_header){e->key, e->value->values[v]};
    }
    return k;
}

/* Reads a base-128 varint at p[*i..len): at most 10 bytes, the last holding one bit.
 * Returns 0 on a truncated or overlong varint. */
static int read_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < 10; k++) {
        if (*i >= len)
            return 0;
        uint8_t b = p[(*i)++];
        if (k == 9 && b > 1)
            return 0; /* would not fit in 64 bits */
        v |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* protobuf-c cuts string fields at the first NUL: refuse a request whose path (2), method (3)
 * or url (4) holds one, by looking at the top-level fields of the wire form. Malformed input
 * answers 0: the unpacker refuses it. */
static int has_nul_in_strings(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t key, n, skip;
        if (!read_varint(p, len, &i, &key))
            return 0;
        unsigned wt = (unsigned)(key & 7);
        uint64_t field = key >> 3;
        switch (wt) {
        case 0:
            if (!read_varint(p, len, &i, &n))
                return 0;
            continue;
        case 1:
        case 5:
            skip = wt == 1 ? 8 : 4;
            break;
        case 2:
            if (!read_varint(p, len, &i, &n) || n > len - i)
                return 0;
            if (field >= 2 && field <= 4 && memchr(p + i, 0, (size_t)n))
                return 1;
            skip = n;
            break;
        default:
            return 0;
        }
        if (skip > len - i)
            return 0;
        i += (size_t)skip;
    }
    return 0;
}

/* Fills a proxy_request from Grafana's message (everything borrowed from rq and hs). */
static void to_request(struct rpc_call *c, const Pluginv2__CallResourceRequest *rq,
                       struct proxy_header *hs, struct proxy_request *pr)
{
    memset(pr, 0, sizeof *pr);
    pr->method = rq->method;
    pr->path = rq->path;
    pr->raw_url = rq->url && *rq->url ? rq->url : NULL;
    pr->headers = hs;
    pr->nheaders = flatten(rq, hs, MAX_REQ_HEADERS);
    pr->body = rq->body.data;
    pr->body_len = rq->body.len;
    plugin_user_from_ctx(rq->plugincontext, &pr->user);
    pr->cancelled = rpc_cancelled_cb;
    pr->cancel_ctx = c;
}

int svc_call_resource_fast(struct rpc_call *c, const uint8_t *req, size_t len)
{
    if (has_nul_in_strings(req, len))
        return 0;
    Pluginv2__CallResourceRequest *rq = pluginv2__call_resource_request__unpack(NULL, len, req);
    if (!rq)
        return 0; /* the usual way answers INVALID_ARGUMENT */
    const Pluginv2__PluginContext *pc = rq->plugincontext;
    struct plugin_instance *in = plugin_instance_peek(pc);
    int done = 0;
    if (in) {
        struct res_sink s = {0};
        s.c = c;
        struct proxy_sink sink = {res_start, res_body, &s};
        struct proxy_header hs[MAX_REQ_HEADERS];
        struct proxy_request pr;
        to_request(c, rq, hs, &pr);
        /* one message at most: a second would have to wait for this thread to deliver the
         * first */
        done = proxy_resource_fast(in->px, &pr, &sink, CHUNK - 1);
        if (done && (s.buf.len || !s.sent_any))
            flush(&s, 1);
        else if (done)
            rpc_finish(c, GRPC_STATUS_OK, NULL);
        sink_dispose(&s);
        plugin_instance_put(in);
    }
    pluginv2__call_resource_request__free_unpacked(rq, NULL);
    return done;
}

void svc_call_resource(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__CallResourceRequest *rq = pluginv2__call_resource_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed CallResourceRequest");
        return;
    }
    struct res_sink s = {0};
    s.c = c;
    struct proxy_sink sink = {res_start, res_body, &s};
    const Pluginv2__PluginContext *pc = rq->plugincontext;
    struct plugin_instance *in = NULL;
    struct cp_err err = {0};
    int rc;
    if (has_nul_in_strings(req, len)) {
        rc = proxy_send_error(&sink, 400, "bad request: NUL byte in method, path or url");
    } else if (plugin_instance_get(pc, rpc_cancelled_cb, c, &in, &err) != 0) {
        rc = proxy_send_error(&sink, cp_http_status(err.code), cp_err_text(&err));
    } else {
        struct proxy_header hs[MAX_REQ_HEADERS];
        struct proxy_request pr;
        to_request(c, rq, hs, &pr);
        s.send_timeout_ms = proxy_ds_cfg(in->px)->timeout_ms;
        rc = proxy_resource(in->px, &pr, &sink);
        plugin_instance_put(in);
    }
    if (!rc && !s.failed && s.started && (s.buf.len || !s.sent_any))
        rc = flush(&s, 1); /* ends the call */
    else if (!rc && !s.failed && s.started)
        rpc_finish(c, GRPC_STATUS_OK, NULL);
    if (rc || s.failed || !s.started)
        rpc_finish(c, rpc_cancelled(c) ? GRPC_STATUS_CANCELLED : GRPC_STATUS_INTERNAL,
                   s.started ? "response interrupted" : "no response");
    sink_dispose(&s);
    pluginv2__call_resource_request__free_unpacked(rq, NULL);
}
