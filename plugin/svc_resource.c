/*
 * svc_resource.c - Resource/CallResource: the request becomes a proxy_request; the answer is
 * streamed back as CallResourceResponse messages. Code and headers go in the first message
 * only; bodies go in messages of about CHUNK bytes, one in flight at a time: while one is on
 * its way the pipeline is told to pause (PROXY_PAUSE), which pauses the upstream transfer, and
 * resumed when it has left. Small answers take exactly one message with the status.
 *
 * A memory hit (and a refusal decided from the request alone) is answered on the
 * completion-queue thread itself; everything else starts a pipeline call and returns.
 */
#include "plugin_int.h"

#include <grpc/status.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK (256 * 1024)
#define MAX_REQ_HEADERS 256

/* One CallResource: the decoded request, the answer being sent, the pipeline call. Three
 * references: the gRPC call's (released by on_free), the answer's (released once done has
 * sent the end) and the starter's (released once the call is started), since the end may
 * free the gRPC call while done or the starter still run. */
struct res_front {
    _Atomic int refs;
    struct rpc_call *c;
    Pluginv2__CallResourceRequest *rq; /* unpacked into ar */
    struct pb_arena ar;
    struct proxy_header *hs; /* as many as the request has (a large struct would make every
                              * call's allocation consolidate malloc's free lists); in ar */
    struct proxy_request pr;
    struct plugin_instance *in;
    struct proxy_call *call;
    pthread_mutex_t mu;
    int started, sent_any, ended;
    int paused;    /* the pipeline was told PROXY_PAUSE */
    int owed;      /* a resume came before the call was known: start_call passes it on */
    int cancelled; /* the client left (on_cancel): the gRPC call may be gone after the end */
    int final;     /* the answer is complete: send the rest and the status */
    int code;
    /* the answer's headers as the first message's map, all in one allocation (hblock) */
    void *hblock;
    Pluginv2__CallResourceResponse__HeadersEntry **entry_ptrs;
    size_t nentries;
    struct cp_buf buf; /* body not sent yet */
};

static void drop_headers(struct res_front *f)
{
    free(f->hblock);
    f->hblock = NULL;
    f->entry_ptrs = NULL;
    f->nentries = 0;
}

static void front_unref(struct res_front *f)
{
    if (atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    proxy_call_release(f->call);
    plugin_instance_put(f->in);
    drop_headers(f);
    cp_buf_free(&f->buf);
    pthread_mutex_destroy(&f->mu);
    pb_arena_free(&f->ar); /* the request and hs */
    free(f);
}

/* The gRPC call is freed: nothing may look at it any more (a starter still running on
 * another thread checks f->c under f->mu). */
static void front_free(void *ctx)
{
    struct res_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->c = NULL;
    pthread_mutex_unlock(&f->mu);
    front_unref(f);
}

/* Groups the answer's headers by name into the map<string,StringList> of the first message:
 * entries, lists, value arrays and every string in one block (one allocation per answer, not
 * three per header). */
static int build_headers(struct res_front *f, const struct proxy_header *h, size_t n)
{
    size_t *key_of = malloc((n ? n : 1) * 2 * sizeof *key_of), *first = key_of + (n ? n : 1);
    if (!key_of)
        return CP_ENOMEM;
    size_t nk = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        for (k = 0; k < nk; k++)
            if (!strcasecmp(h[first[k]].name, h[i].name))
                break;
        if (k == nk) {
            first[nk++] = i;
            bytes += strlen(h[i].name) + 1;
        }
        key_of[i] = k;
        bytes += strlen(h[i].value) + 1;
    }
    Pluginv2__CallResourceResponse__HeadersEntry *entries;
    Pluginv2__StringList *lists;
    size_t head = nk * (sizeof *entries + sizeof *lists + sizeof *f->entry_ptrs) +
                  n * sizeof(char *);
    char *block = malloc(head + bytes + 1);
    if (!block) {
        free(key_of);
        return CP_ENOMEM;
    }
    entries = (void *)block;
    lists = (void *)(entries + nk);
    f->entry_ptrs = (void *)(lists + nk);
    char **values = (char **)(f->entry_ptrs + nk);
    char *str = block + head;
    size_t used = 0;
    for (size_t k = 0; k < nk; k++) {
        pluginv2__call_resource_response__headers_entry__init(&entries[k]);
        pluginv2__string_list__init(&lists[k]);
        size_t l = strlen(h[first[k]].name) + 1;
        entries[k].key = memcpy(str, h[first[k]].name, l);
        cp_utf8_fix(entries[k].key); /* protobuf strings must be UTF-8 */
        str += l;
        entries[k].value = &lists[k];
        f->entry_ptrs[k] = &entries[k];
        lists[k].values = values + used; /* this key's values, contiguous */
        for (size_t i = first[k]; i < n; i++)
            if (key_of[i] == k) {
                size_t vl = strlen(h[i].value) + 1;
                lists[k].values[lists[k].n_values++] = cp_utf8_fix(memcpy(str, h[i].value, vl));
                str += vl;
            }
        used += lists[k].n_values;
    }
    free(key_of);
    f->hblock = block;
    f->nentries = nk;
    return 0;
}

static int res_head(void *ctx, int status, const struct proxy_header *h, size_t n)
{
    struct res_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    if (f->sent_any) {
        rc = CP_ECANCELED; /* a second head after bytes went out: the stream must fail */
        goto out;
    }
    drop_headers(f); /* a second head before anything was sent replaces the first */
    f->buf.len = 0;
    f->started = 1;
    f->code = status;
    rc = build_headers(f, h, n);
out:
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Sends what is buffered as one message; the last one carries the status in the same batch.
 * Caller holds f->mu. Returns 0, CP_EBUSY (a message is in flight) or CP_ECANCELED. */
static int flush(struct res_front *f, int last)
{
    Pluginv2__CallResourceResponse m = PLUGINV2__CALL_RESOURCE_RESPONSE__INIT;
    if (!f->sent_any) {
        m.code = f->code;
        m.n_headers = f->nentries;
        m.headers = f->entry_ptrs;
    }
    m.body.data = (uint8_t *)f->buf.p;
    m.body.len = f->buf.len;
    int rc = last ? rpc_reply(f->c, &m.base) : rpc_send(f->c, &m.base);
    if (rc == 0) {
        f->sent_any = 1;
        f->buf.len = 0;
        if (last)
            f->ended = 1;
    }
    return rc;
}

static int res_body(void *ctx, const void *p, size_t n)
{
    struct res_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    int rc = 0;
    if (f->buf.len >= CHUNK) {
        rc = flush(f, 0);
        if (rc == CP_EBUSY) {
            f->paused = 1; /* resumed by on_sent */
            pthread_mutex_unlock(&f->mu);
            return PROXY_PAUSE;
        }
    }
    if (!rc && cp_buf_add(&f->buf, p, n) != 0)
        rc = CP_ENOMEM;
    if (!rc && f->buf.len >= CHUNK && flush(f, 0) == CP_ECANCELED)
        rc = CP_ECANCELED;
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Ends the gRPC call for an answer that is complete (final) or broke off. Caller holds mu. */
static void end_answer(struct res_front *f)
{
    if (f->ended)
        return;
    /* the last message (queued behind one in flight, if any) carries the status */
    if (f->final && flush(f, 1) == 0)
        return;
    f->ended = 1;
    rpc_finish(f->c, rpc_cancelled(f->c) ? GRPC_STATUS_CANCELLED : GRPC_STATUS_INTERNAL,
               f->started ? "response interrupted" : "no response");
}

static void res_done(void *ctx, int rc)
{
    struct res_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->final = rc == 0 && f->started;
    end_answer(f);
    pthread_mutex_unlock(&f->mu);
    front_unref(f); /* the answer's reference */
}

/* A message left: send the next one, end the call, or let the pipeline go on. */
static void on_sent(void *ctx)
{
    struct res_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    int resume = 0;
    if (f->final) {
        end_answer(f);
    } else if (f->buf.len >= CHUNK) {
        flush(f, 0);
    }
    if (f->paused && !f->final) {
        f->paused = 0;
        resume = 1;
    }
    struct proxy_call *call = f->call;
    if (resume && !call) /* the pipeline streams before start_call has stored the call */
        f->owed = 1;
    pthread_mutex_unlock(&f->mu);
    if (resume)
        proxy_call_resume(call);
}

static void on_cancel(void *ctx)
{
    struct res_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->cancelled = 1;
    struct proxy_call *call = f->call;
    pthread_mutex_unlock(&f->mu);
    proxy_call_cancel(call); /* NULL-safe: not started yet, or answered already */
}

static const struct rpc_events front_events = {on_sent, on_cancel, front_free};

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

/* A proxy_sink over the front. */
static struct proxy_sink sink_of(struct res_front *f)
{
    return (struct proxy_sink){res_head, res_body, res_done, f};
}

/* Answers a plugin error decided here, before any pipeline. */
static void answer_error(struct res_front *f, int status, const char *msg)
{
    struct proxy_sink sink = sink_of(f);
    res_done(f, proxy_send_error(&sink, status, msg));
}

static void start_call(struct res_front *f, struct plugin_instance *in)
{
    struct proxy_sink sink = sink_of(f);
    f->in = in;
    /* one message at most on this thread: a second would have to wait for the first */
    if (proxy_resource_fast(in->px, &f->pr, &sink, CHUNK - 1)) {
        res_done(f, 0);
        return;
    }
    struct proxy_call *call = NULL;
    if (proxy_resource_start(in->px, &f->pr, &sink, &call) != 0) {
        answer_error(f, 500, "out of memory");
        return;
    }
    pthread_mutex_lock(&f->mu);
    f->call = call;
    int gone = f->cancelled, owed = f->owed;
    f->owed = 0;
    pthread_mutex_unlock(&f->mu);
    if (gone) /* the client left while the call was being started */
        proxy_call_cancel(call);
    else if (owed) /* a send completed meanwhile: the paused pipeline goes on */
        proxy_call_resume(call);
}

static void instance_ready(void *ctx, struct plugin_instance *in, const struct cp_err *err)
{
    struct res_front *f = ctx;
    if (!in)
        answer_error(f, cp_http_status(err->code), cp_err_text(err));
    else
        start_call(f, in);
    front_unref(f); /* the starter's reference */
}

void svc_call_resource(struct rpc_call *c, const uint8_t *req, size_t len)
{
    struct res_front *f = calloc(1, sizeof *f);
    if (!f) {
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pb_arena_init(&f->ar);
    Pluginv2__CallResourceRequest *rq = pluginv2__call_resource_request__unpack(&f->ar.a, len, req);
    if (!rq) {
        pb_arena_free(&f->ar);
        free(f);
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed CallResourceRequest");
        return;
    }
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->refs, 3);
    f->c = c;
    f->rq = rq;
    size_t nh = 0;
    for (size_t i = 0; i < rq->n_headers; i++)
        nh += rq->headers[i]->value ? rq->headers[i]->value->n_values : 0;
    nh = nh < MAX_REQ_HEADERS ? nh : MAX_REQ_HEADERS;
    f->hs = f->ar.a.alloc(&f->ar, (nh ? nh : 1) * sizeof *f->hs);
    rpc_set_events(c, &front_events, f);
    if (!f->hs) {
        answer_error(f, 500, "out of memory");
        front_unref(f);
        return;
    }
    f->pr = (struct proxy_request){.method = rq->method,
                                   .path = rq->path,
                                   .raw_url = rq->url && *rq->url ? rq->url : NULL,
                                   .headers = f->hs,
                                   .nheaders = flatten(rq, f->hs, nh),
                                   .body = rq->body.data,
                                   .body_len = rq->body.len};
    plugin_user_from_ctx(rq->plugincontext, &f->pr.user);
    if (has_nul_in_strings(req, len)) {
        answer_error(f, 400, "bad request: NUL byte in method, path or url");
        front_unref(f);
        return;
    }
    if (plugin_instance_with(rq->plugincontext, rpc_cancelled_cb, c, instance_ready, f) != 0) {
        answer_error(f, 500, "out of memory");
        front_unref(f);
    }
}
