/* svc_stream.c - Stream (Grafana Live, PROTOCOL.md 3.5) over proxy_live_*: SubscribeStream
 * checks a channel for the user (a status, never a gRPC error), RunStream subscribes to the
 * channel's poller and streams its packets, PublishStream is refused (the channels are the
 * plugin's to fill).
 *
 * A RunStream keeps at most MAX_QUEUED packets waiting behind the one in flight; a client that
 * falls further behind is dropped (RESOURCE_EXHAUSTED; Grafana restarts the stream). When the
 * plugin stops, every stream ends with UNAVAILABLE, so Grafana resubscribes to the next
 * process rather than finishing the stream. */
#include "plugin_int.h"

#include <grpc/status.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 64
#define MAX_QUEUED 32

/* Grafana's header map of stream requests: "http_<Name>" keys, as in QueryData. The three
 * request types have their own (identically shaped) entry types. */
#define FLATTEN(hs, n, out, max, k)                                                            \
    do {                                                                                       \
        (k) = 0;                                                                               \
        for (size_t i_ = 0; i_ < (n) && (k) < (max); i_++) {                                   \
            const char *name_ = (hs)[i_]->key, *v_ = (hs)[i_]->value;                          \
            if (!name_ || !v_)                                                                 \
                continue;                                                                      \
            if (!strncasecmp(name_, "http_", 5))                                               \
                name_ += 5;                                                                    \
            (out)[(k)++] = (struct proxy_header){name_, v_};                                   \
        }                                                                                      \
    } while (0)

/* ---- SubscribeStream ------------------------------------------------------------------------- */

struct sub_front {
    struct rpc_call *c;
    Pluginv2__SubscribeStreamRequest *rq;
    struct plugin_instance *in;
    struct cp_user user;
    struct proxy_header hs[MAX_HEADERS];
    size_t nh;
};

static void sub_front_free(struct sub_front *f)
{
    plugin_instance_put(f->in);
    pluginv2__subscribe_stream_request__free_unpacked(f->rq, NULL);
    free(f);
}

static void sub_answer(struct sub_front *f, int status, const char *msg)
{
    Pluginv2__SubscribeStreamResponse resp = PLUGINV2__SUBSCRIBE_STREAM_RESPONSE__INIT;
    resp.status = status;
    if (status != PROXY_LIVE_OK) {
        struct cp_kv kv[] = {CP_KV_S("path", f->rq->path), CP_KV_S("reason", msg ? msg : ""),
                             CP_KV_I("status", status)};
        plugin_log(CP_LOG_INFO, "live subscription refused", kv, 3);
    }
    rpc_reply(f->c, &resp.base);
    sub_front_free(f);
}

static void sub_checked(void *ctx, int status, const char *msg, json_t *query)
{
    (void)query;
    sub_answer(ctx, status, msg);
}

static void sub_instance(void *ctx, struct plugin_instance *in, const struct cp_err *err)
{
    struct sub_front *f = ctx;
    if (!in) {
        sub_answer(f, PROXY_LIVE_NOT_FOUND, cp_err_text(err));
        return;
    }
    f->in = in;
    if (proxy_live_check(in->px, f->rq->path, &f->user, f->hs, f->nh, sub_checked, f) != 0)
        sub_answer(f, PROXY_LIVE_NOT_FOUND, "out of memory");
}

void svc_subscribe_stream(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__SubscribeStreamRequest *rq =
        pluginv2__subscribe_stream_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed SubscribeStreamRequest");
        return;
    }
    struct sub_front *f = calloc(1, sizeof *f);
    if (!f) {
        pluginv2__subscribe_stream_request__free_unpacked(rq, NULL);
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    f->c = c;
    f->rq = rq;
    plugin_user_from_ctx(rq->plugincontext, &f->user);
    FLATTEN(rq->headers, rq->n_headers, f->hs, MAX_HEADERS, f->nh);
    if (plugin_instance_with(rq->plugincontext, rpc_cancelled_cb, c, sub_instance, f) != 0)
        sub_answer(f, PROXY_LIVE_NOT_FOUND, "out of memory");
}

/* ---- PublishStream --------------------------------------------------------------------------- */

void svc_publish_stream(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__PublishStreamRequest *rq = pluginv2__publish_stream_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed PublishStreamRequest");
        return;
    }
    Pluginv2__PublishStreamResponse resp = PLUGINV2__PUBLISH_STREAM_RESPONSE__INIT;
    /* poll channels are filled by their poller only; nothing else exists */
    resp.status = rq->path && !strncmp(rq->path, "poll/", 5)
                      ? PLUGINV2__PUBLISH_STREAM_RESPONSE__STATUS__PERMISSION_DENIED
                      : PLUGINV2__PUBLISH_STREAM_RESPONSE__STATUS__NOT_FOUND;
    pluginv2__publish_stream_request__free_unpacked(rq, NULL);
    rpc_reply(c, &resp.base);
}

/* ---- RunStream ------------------------------------------------------------------------------- */

struct packet {
    struct packet *next;
    size_t len;
    char data[];
};

/* One RunStream. References: the gRPC call's (on_free), the subscription's (its done), and
 * the starter's (until the subscription is started). */
struct run_front {
    _Atomic int refs;
    struct rpc_call *c; /* NULL once freed (under mu) */
    Pluginv2__RunStreamRequest *rq;
    struct plugin_instance *in;
    struct cp_user user;
    struct proxy_header hs[MAX_HEADERS];
    size_t nh;
    pthread_mutex_t mu;
    struct proxy_live_sub *sub;
    struct packet *head, *tail; /* waiting; the one in flight is not here */
    size_t queued;
    int in_flight, ended, cancelled;
    struct run_front *next, **prevp; /* the list of running streams (shutdown) */
};

static struct {
    pthread_mutex_t mu;
    struct run_front *list;
} streams = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void run_unref(struct run_front *f)
{
    if (atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    proxy_live_release(f->sub);
    for (struct packet *p = f->head, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    plugin_instance_put(f->in);
    pthread_mutex_destroy(&f->mu);
    pluginv2__run_stream_request__free_unpacked(f->rq, NULL);
    free(f);
}

static void unlist(struct run_front *f)
{
    pthread_mutex_lock(&streams.mu);
    if (f->prevp) {
        *f->prevp = f->next;
        if (f->next)
            f->next->prevp = f->prevp;
        f->prevp = NULL;
    }
    pthread_mutex_unlock(&streams.mu);
}

/* Ends the gRPC call once (caller holds mu). */
static void run_end(struct run_front *f, int status, const char *details)
{
    if (f->ended || !f->c)
        return;
    f->ended = 1;
    rpc_finish(f->c, status, details);
}

/* Sends the first waiting packet if none is in flight (caller holds mu). */
static void pump(struct run_front *f)
{
    while (!f->in_flight && f->head && !f->ended && f->c) {
        struct packet *p = f->head;
        Pluginv2__StreamPacket m = PLUGINV2__STREAM_PACKET__INIT;
        m.data.data = (uint8_t *)p->data;
        m.data.len = p->len;
        int rc = rpc_send(f->c, &m.base);
        if (rc == CP_EBUSY)
            return;
        f->head = p->next;
        if (!f->head)
            f->tail = NULL;
        f->queued--;
        free(p);
        if (rc) /* the client is gone: on_cancel stops the subscription */
            return;
        f->in_flight = 1;
    }
}

static int on_packet(void *ctx, const char *json, size_t len)
{
    struct run_front *f = ctx;
    /* the data source's settings changed (a rotated credential): the stream ends, and
     * Grafana starts it again with the new ones */
    if (plugin_instance_replaced(f->in))
        return CP_ECONFIG;
    pthread_mutex_lock(&f->mu);
    if (f->ended || !f->c) {
        pthread_mutex_unlock(&f->mu);
        return 0; /* ending: the subscription stops soon */
    }
    if (f->queued >= MAX_QUEUED) {
        pthread_mutex_unlock(&f->mu);
        return CP_EBUSY;
    }
    struct packet *p = malloc(sizeof *p + len);
    if (!p) {
        pthread_mutex_unlock(&f->mu);
        return CP_ENOMEM;
    }
    p->next = NULL;
    p->len = len;
    memcpy(p->data, json, len);
    if (f->tail)
        f->tail->next = p;
    else
        f->head = p;
    f->tail = p;
    f->queued++;
    pump(f);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int grpc_status_of(int rc)
{
    switch (rc) {
    case CP_EDENIED:
        return GRPC_STATUS_PERMISSION_DENIED;
    case CP_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case CP_EBUSY:
    case CP_ENOMEM:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    default:
        return GRPC_STATUS_UNAVAILABLE;
    }
}

/* The subscription is over (after our stop: rc 0; else refused or dropped). */
static void on_done(void *ctx, int rc, const char *msg)
{
    struct run_front *f = ctx;
    if (rc) {
        struct cp_kv kv[] = {CP_KV_S("path", f->rq->path), CP_KV_S("reason", msg ? msg : "")};
        plugin_log(CP_LOG_INFO, "live stream ended", kv, 2);
    }
    pthread_mutex_lock(&f->mu);
    run_end(f, rc ? grpc_status_of(rc) : GRPC_STATUS_OK, rc ? msg : NULL);
    pthread_mutex_unlock(&f->mu);
    unlist(f);
    run_unref(f);
}

static void on_sent(void *ctx)
{
    struct run_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->in_flight = 0;
    pump(f);
    pthread_mutex_unlock(&f->mu);
}

/* The client left (Grafana: the last subscriber is gone, or it shuts down). */
static void on_cancel(void *ctx)
{
    struct run_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->cancelled = 1;
    struct proxy_live_sub *sub = f->sub;
    run_end(f, GRPC_STATUS_CANCELLED, NULL);
    pthread_mutex_unlock(&f->mu);
    proxy_live_stop(sub); /* NULL-safe: the starter stops it when it sees cancelled */
}

static void run_free(void *ctx)
{
    struct run_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->c = NULL;
    pthread_mutex_unlock(&f->mu);
    run_unref(f);
}

static const struct rpc_events run_events = {on_sent, on_cancel, run_free};

static void run_instance(void *ctx, struct plugin_instance *in, const struct cp_err *err)
{
    struct run_front *f = ctx;
    if (!in) {
        pthread_mutex_lock(&f->mu);
        run_end(f, GRPC_STATUS_NOT_FOUND, cp_err_text(err));
        pthread_mutex_unlock(&f->mu);
        unlist(f);
        run_unref(f); /* the subscription's, never made */
        run_unref(f); /* the starter's */
        return;
    }
    f->in = in;
    struct proxy_live_sink sink = {on_packet, on_done, f};
    struct proxy_live_sub *sub = NULL;
    if (proxy_live_run(in->px, f->rq->path, &f->user, f->hs, f->nh, &sink, &sub) != 0) {
        pthread_mutex_lock(&f->mu);
        run_end(f, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        pthread_mutex_unlock(&f->mu);
        unlist(f);
        run_unref(f);
        run_unref(f);
        return;
    }
    pthread_mutex_lock(&f->mu);
    f->sub = sub;
    int gone = f->cancelled || f->ended;
    pthread_mutex_unlock(&f->mu);
    if (gone)
        proxy_live_stop(sub);
    run_unref(f); /* the starter's */
}

void svc_run_stream(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__RunStreamRequest *rq = pluginv2__run_stream_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed RunStreamRequest");
        return;
    }
    struct run_front *f = calloc(1, sizeof *f);
    if (!f) {
        pluginv2__run_stream_request__free_unpacked(rq, NULL);
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    atomic_init(&f->refs, 3);
    pthread_mutex_init(&f->mu, NULL);
    f->c = c;
    f->rq = rq;
    plugin_user_from_ctx(rq->plugincontext, &f->user);
    FLATTEN(rq->headers, rq->n_headers, f->hs, MAX_HEADERS, f->nh);
    pthread_mutex_lock(&streams.mu);
    f->next = streams.list;
    if (f->next)
        f->next->prevp = &f->next;
    streams.list = f;
    f->prevp = &streams.list;
    pthread_mutex_unlock(&streams.mu);
    rpc_set_events(c, &run_events, f);
    if (plugin_instance_with(rq->plugincontext, rpc_cancelled_cb, c, run_instance, f) != 0) {
        struct cp_err e;
        cp_err_set(&e, CP_ENOMEM, "out of memory");
        run_instance(f, NULL, &e);
    }
}

void svc_stream_shutdown(void)
{
    /* each stream ends with UNAVAILABLE and its subscription stops; the list empties as their
     * subscriptions end */
    pthread_mutex_lock(&streams.mu);
    for (struct run_front *f = streams.list; f; f = f->next) {
        pthread_mutex_lock(&f->mu);
        run_end(f, GRPC_STATUS_UNAVAILABLE, "the plugin is stopping");
        struct proxy_live_sub *sub = f->sub;
        pthread_mutex_unlock(&f->mu);
        proxy_live_stop(sub);
    }
    pthread_mutex_unlock(&streams.mu);
}
