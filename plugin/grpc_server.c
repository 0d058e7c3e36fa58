/*
 * grpc_server.c - a gRPC server on the core C API: one completion queue, a thread polling
 * it, registered methods with the request payload read up front, a generic catch-all that
 * answers UNIMPLEMENTED, and a per-call state machine.
 *
 * Threads: the completion-queue thread drives gRPC's I/O and never blocks. Handlers run on it
 * and only start work (the pipeline runs on the event loops); answers are sent from whichever
 * thread has them (grpc_call_start_batch is thread-safe). Sends never wait: a call has at most
 * one message in flight; a handler that finds a send under way waits for its on_sent event,
 * and a final status queued meanwhile goes out when that send completes.
 *
 * Lifetime of a call: two references, one held by the RECV_CLOSE_ON_SERVER batch (released
 * when the call is over on the wire) and one held by the handler's side (released when the
 * batch carrying the final status completes). The last release frees the call, after its
 * on_free event.
 */
#include "plugin_int.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REQUESTS_PER_METHOD 8
#define MAX_RECV_BYTES (256 << 20)

enum tag_kind { TAG_NEW, TAG_OPS, TAG_CLOSE, TAG_SHUTDOWN };

struct tag {
    enum tag_kind kind;
    void *ptr;
};

struct rpc_server {
    grpc_server *srv;
    grpc_completion_queue *cq;
    pthread_t *threads;
    unsigned nthreads;
    void **handles; /* registered method handles, parallel to plugin_methods */
    struct tag shutdown_tag;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int shutdown_done;
    _Atomic int stopping;
    _Atomic unsigned live;   /* calls accepted and not freed */
    struct rpc_call *parked; /* calls held open (stdio, broker, health watch) */
};

struct rpc_call {
    struct rpc_server *s;
    const struct rpc_method *m; /* NULL: generic (unknown method) */
    struct tag t_new, t_ops, t_close;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    gpr_timespec deadline;
    int close_cancelled; /* written by RECV_CLOSE_ON_SERVER */
    _Atomic int cancelled;
    _Atomic int refs;
    grpc_slice req;
    int have_req;

    pthread_mutex_t mu;
    int op_pending, op_failed, md_sent, final_sent;
    grpc_byte_buffer *send_bb;
    /* a final status queued behind the send in flight */
    int final_queued;
    grpc_byte_buffer *final_bb;
    int final_status;
    char *final_details;
    struct rpc_events ev;
    void *ev_ctx;
    int cancel_told;
    int parked;
    int in_handler; /* the handler runs on the CQ thread: a final status waits for it */
    int close_in_ops; /* RECV_CLOSE_ON_SERVER went in the final batch (answered at once) */
    struct rpc_call *park_prev, *park_next;
};

static void call_free(struct rpc_call *c)
{
    if (c->ev.on_free)
        c->ev.on_free(c->ev_ctx);
    if (c->final_bb)
        grpc_byte_buffer_destroy(c->final_bb);
    free(c->final_details);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb);
    if (c->have_req)
        grpc_slice_unref(c->req);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* A call that was matched to a client request (counted live until freed). */
static void call_unref(struct rpc_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    struct rpc_server *s = c->s;
    call_free(c);
    if (atomic_fetch_sub(&s->live, 1) == 1 && atomic_load(&s->stopping)) {
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

static struct rpc_call *call_new(struct rpc_server *s, const struct rpc_method *m)
{
    struct rpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    c->m = m;
    c->t_new = (struct tag){TAG_NEW, c};
    c->t_ops = (struct tag){TAG_OPS, c};
    c->t_close = (struct tag){TAG_CLOSE, c};
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->details);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

/* Posts one request for method index i (or the generic catch-all when i < 0). */
static void post_request(struct rpc_server *s, int i)
{
    if (atomic_load(&s->stopping))
        return;
    struct rpc_call *c = call_new(s, i >= 0 ? &plugin_methods[i] : NULL);
    if (!c)
        return;
    grpc_call_error e;
    if (i >= 0)
        e = grpc_server_request_registered_call(
            s->srv, s->handles[i], &c->call, &c->deadline, &c->md,
            plugin_methods[i].kind == RPC_PARK ? NULL : &c->payload, s->cq, s->cq, &c->t_new);
    else
        e = grpc_server_request_call(s->srv, &c->call, &c->details, &c->md, s->cq, s->cq,
                                     &c->t_new);
    if (e != GRPC_CALL_OK)
        call_free(c);
}

/* Starts a batch on c; on a start failure the completion never comes, so act as if it had
 * failed. Caller holds c->mu. Returns 1 when the final status was sent (or failed to be). */
static void start_ops(struct rpc_call *c, grpc_op *ops, size_t n)
{
    c->op_pending = 1;
    if (grpc_call_start_batch(c->call, ops, n, &c->t_ops, NULL) != GRPC_CALL_OK) {
        c->op_pending = 0;
        c->op_failed = 1;
        if (c->send_bb) {
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
        }
        if (c->final_sent) {
            pthread_mutex_unlock(&c->mu);
            call_unref(c);
            pthread_mutex_lock(&c->mu);
        }
    }
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice sl = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(sl));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* Sends the final status (with an optional last message). Caller holds c->mu, nothing in
 * flight. Takes bb. */
static void send_final(struct rpc_call *c, grpc_byte_buffer *bb, int status, const char *details)
{
    grpc_op ops[3];
    size_t n = 0;
    grpc_slice det = grpc_slice_from_copied_string(details ? details : "");
    memset(ops, 0, sizeof ops);
    if (!c->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        c->md_sent = 1;
    }
    if (bb) {
        c->send_bb = bb;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = bb;
        n++;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)status;
    ops[n].data.send_status_from_server.status_details = details && *details ? &det : NULL;
    n++;
    c->final_sent = 1;
    start_ops(c, ops, n);
    grpc_slice_unref(det);
}

/* The final status now, or once the send in flight completes. Takes bb. */
static int end_call(struct rpc_call *c, grpc_byte_buffer *bb, int status, const char *details)
{
    pthread_mutex_lock(&c->mu);
    if (c->final_sent || c->final_queued) {
        pthread_mutex_unlock(&c->mu);
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return CP_EINVAL;
    }
    if (c->op_pending || c->in_handler) {
        /* behind the message in flight; or, when the handler answers on the spot, in one
         * batch with RECV_CLOSE_ON_SERVER once it returns (on_new) */
        c->final_queued = 1;
        c->final_bb = bb;
        c->final_status = status;
        c->final_details = details && *details ? strdup(details) : NULL;
    } else {
        send_final(c, bb, status, details);
    }
    pthread_mutex_unlock(&c->mu);
    if (status != GRPC_STATUS_OK)
        atomic_fetch_add(&plugin_g.rpc_errors, 1);
    return 0;
}

int rpc_reply(struct rpc_call *c, const ProtobufCMessage *msg)
{
    return end_call(c, pack(msg), GRPC_STATUS_OK, NULL);
}

int rpc_finish(struct rpc_call *c, int grpc_status, const char *details)
{
    return end_call(c, NULL, grpc_status, details);
}

int rpc_fail(struct rpc_call *c, int grpc_status, const char *details)
{
    return rpc_finish(c, grpc_status, details);
}

int rpc_send(struct rpc_call *c, const ProtobufCMessage *msg)
{
    pthread_mutex_lock(&c->mu);
    if (c->op_failed || c->final_sent || c->final_queued || atomic_load(&c->cancelled)) {
        pthread_mutex_unlock(&c->mu);
        return CP_ECANCELED;
    }
    if (c->op_pending) {
        pthread_mutex_unlock(&c->mu);
        return CP_EBUSY;
    }
    grpc_byte_buffer *bb = pack(msg);
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    c->send_bb = bb;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = bb;
    n++;
    start_ops(c, ops, n);
    int failed = c->op_failed;
    pthread_mutex_unlock(&c->mu);
    return failed ? CP_ECANCELED : 0;
}

void rpc_set_events(struct rpc_call *c, const struct rpc_events *ev, void *ctx)
{
    pthread_mutex_lock(&c->mu);
    c->ev = *ev;
    c->ev_ctx = ctx;
    int tell = ev->on_cancel && atomic_load(&c->cancelled) && !c->cancel_told;
    if (tell)
        c->cancel_told = 1;
    pthread_mutex_unlock(&c->mu);
    if (tell) /* the client left before the handler was ready to hear it */
        ev->on_cancel(ctx);
}

int rpc_cancelled(struct rpc_call *c) { return atomic_load(&c->cancelled); }
int rpc_cancelled_cb(void *c) { return rpc_cancelled(c); }

/* Holds the call open without messages (go-plugin's stdio and broker streams) until the
 * client leaves or the server stops. */
static void park(struct rpc_call *c)
{
    struct rpc_server *s = c->s;
    pthread_mutex_lock(&s->mu);
    c->parked = 1;
    c->park_next = s->parked;
    if (s->parked)
        s->parked->park_prev = c;
    s->parked = c;
    pthread_mutex_unlock(&s->mu);
}

/* Removes c from the parked list; returns 1 when it was there (the caller now owns the
 * handler-side reference). */
static int unpark(struct rpc_call *c)
{
    struct rpc_server *s = c->s;
    int was;
    pthread_mutex_lock(&s->mu);
    was = c->parked;
    if (was) {
        if (c->park_prev)
            c->park_prev->park_next = c->park_next;
        else
            s->parked = c->park_next;
        if (c->park_next)
            c->park_next->park_prev = c->park_prev;
        c->parked = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return was;
}

void rpc_park(struct rpc_call *c)
{
    park(c);
    /* the client may have left while we were parking */
    if (atomic_load(&c->cancelled) && unpark(c))
        rpc_finish(c, GRPC_STATUS_CANCELLED, NULL);
}

/* Posts RECV_CLOSE_ON_SERVER on its own (its completion releases the close reference). */
static void post_close(struct rpc_call *c)
{
    grpc_op close_op;
    memset(&close_op, 0, sizeof close_op);
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &close_op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
        atomic_fetch_sub(&c->refs, 1);
}

/* After the handler returned on the CQ thread. A call it answered on the spot goes out as one
 * batch, initial metadata, message, status and RECV_CLOSE_ON_SERVER together, as a bare
 * server answers: one completion instead of two, and no second wake-up per call. Otherwise
 * RECV_CLOSE is posted now, to hear of a client that leaves. */
static void handler_returned(struct rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    c->in_handler = 0;
    if (!c->final_queued || c->op_pending || c->final_sent) {
        /* answered later, or a stream under way (its final waits for the send in flight) */
        pthread_mutex_unlock(&c->mu);
        post_close(c);
        return;
    }
    c->final_queued = 0;
    grpc_byte_buffer *bb = c->final_bb;
    c->final_bb = NULL;
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    grpc_slice det = grpc_slice_from_copied_string(c->final_details ? c->final_details : "");
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->md_sent = 1;
    if (bb) {
        c->send_bb = bb;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)c->final_status;
    ops[n++].data.send_status_from_server.status_details = c->final_details ? &det : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->close_cancelled;
    c->final_sent = 1;
    c->close_in_ops = 1;
    c->op_pending = 1;
    int failed = grpc_call_start_batch(c->call, ops, n, &c->t_ops, NULL) != GRPC_CALL_OK;
    grpc_slice_unref(det);
    if (failed) {
        c->op_pending = 0;
        c->op_failed = 1;
        if (c->send_bb) {
            grpc_byte_buffer_destroy(c->send_bb);
            c->send_bb = NULL;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (failed) { /* no completion will come: both references go now */
        call_unref(c);
        call_unref(c);
    }
}

static void on_new(struct rpc_call *c, int ok)
{
    struct rpc_server *s = c->s;
    if (!ok) { /* server shutting down: the request was never matched */
        call_free(c);
        return;
    }
    post_request(s, c->m ? (int)(c->m - plugin_methods) : -1);
    atomic_fetch_add(&plugin_g.rpc_calls, 1);
    atomic_fetch_add(&s->live, 1);
    atomic_store(&c->refs, 2);

    if (c->m && c->m->kind == RPC_PARK) {
        post_close(c);
        park(c);
        return;
    }
    c->in_handler = 1; /* no other thread knows the call yet */
    if (!c->m) {
        rpc_fail(c, GRPC_STATUS_UNIMPLEMENTED, "method not implemented by this plugin");
    } else if (!c->payload) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "request message missing");
    } else {
        grpc_byte_buffer_reader r;
        if (!grpc_byte_buffer_reader_init(&r, c->payload)) {
            rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "unreadable request message");
        } else {
            c->req = grpc_byte_buffer_reader_readall(&r);
            c->have_req = 1;
            grpc_byte_buffer_reader_destroy(&r);
            grpc_byte_buffer_destroy(c->payload);
            c->payload = NULL;
            if (atomic_load(&s->stopping))
                rpc_fail(c, GRPC_STATUS_UNAVAILABLE, "plugin is shutting down");
            else /* the handler decodes and starts the work; the bytes stay with the call */
                c->m->fn(c, GRPC_SLICE_START_PTR(c->req), GRPC_SLICE_LENGTH(c->req));
        }
    }
    handler_returned(c);
}

static void on_close(struct rpc_call *c);

static void on_ops(struct rpc_call *c, int ok)
{
    pthread_mutex_lock(&c->mu);
    if (c->send_bb) {
        grpc_byte_buffer_destroy(c->send_bb);
        c->send_bb = NULL;
    }
    c->op_pending = 0;
    if (!ok) {
        c->op_failed = 1;
        atomic_store(&c->cancelled, 1);
    }
    int final = c->final_sent;
    int close_too = final && c->close_in_ops;
    if (!final && c->final_queued && !c->in_handler) {
        grpc_byte_buffer *bb = c->final_bb;
        c->final_bb = NULL;
        send_final(c, bb, c->final_status, c->final_details);
    }
    void (*on_sent)(void *) = final || c->final_sent ? NULL : c->ev.on_sent;
    void *ctx = c->ev_ctx;
    pthread_mutex_unlock(&c->mu);
    if (on_sent)
        on_sent(ctx);
    if (close_too)
        on_close(c); /* the call is over on the wire too: its reference goes */
    if (final)
        call_unref(c);
}

static void on_close(struct rpc_call *c)
{
    if (c->close_cancelled)
        atomic_store(&c->cancelled, 1);
    pthread_mutex_lock(&c->mu);
    int tell = c->close_cancelled && c->ev.on_cancel && !c->cancel_told;
    if (tell)
        c->cancel_told = 1;
    void (*on_cancel)(void *) = c->ev.on_cancel;
    void *ctx = c->ev_ctx;
    pthread_mutex_unlock(&c->mu);
    if (tell)
        on_cancel(ctx);
    /* a parked call ends when its client leaves */
    if (unpark(c))
        rpc_finish(c, GRPC_STATUS_CANCELLED, NULL);
    call_unref(c);
}

static void *cq_thread(void *arg)
{
    struct rpc_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct tag *t = ev.tag;
        switch (t->kind) {
        case TAG_NEW:
            on_new(t->ptr, ev.success);
            break;
        case TAG_OPS:
            on_ops(t->ptr, ev.success);
            break;
        case TAG_CLOSE:
            on_close(t->ptr);
            break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            break;
        }
    }
    return NULL;
}

struct rpc_server *rpc_server_start(const char *addr, unsigned cq_threads)
{
    struct rpc_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->shutdown_tag = (struct tag){TAG_SHUTDOWN, s};
    s->handles = calloc(plugin_nmethods, sizeof *s->handles);
    s->nthreads = cq_threads ? cq_threads : 1;
    s->threads = calloc(s->nthreads, sizeof *s->threads);
    if (!s->handles || !s->threads)
        goto fail;

    grpc_arg args[2];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = MAX_RECV_BYTES;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = -1;
    grpc_channel_args ch = {2, args};
    s->srv = grpc_server_create(&ch, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->srv, s->cq, NULL);
    for (size_t i = 0; i < plugin_nmethods; i++)
        s->handles[i] = grpc_server_register_method(
            s->srv, plugin_methods[i].path, NULL,
            plugin_methods[i].kind == RPC_PARK ? GRPC_SRM_PAYLOAD_NONE
                                               : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
            0);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s->srv, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        grpc_server_destroy(s->srv);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(s->cq);
        goto fail;
    }
    grpc_server_start(s->srv);
    for (size_t i = 0; i < plugin_nmethods; i++)
        for (int k = 0; k < REQUESTS_PER_METHOD; k++)
            post_request(s, (int)i);
    for (int k = 0; k < 2; k++)
        post_request(s, -1);
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_create(&s->threads[i], NULL, cq_thread, s);
    return s;
fail:
    free(s->handles);
    free(s->threads);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return NULL;
}

static int shutdown_is_done(struct rpc_server *s) { return s->shutdown_done; }
static int calls_are_done(struct rpc_server *s) { return atomic_load(&s->live) == 0; }

/* Waits on s->cv until pred holds or the monotonic deadline passes; returns pred. */
static int wait_until(struct rpc_server *s, int (*pred)(struct rpc_server *), int64_t deadline_ns)
{
    pthread_mutex_lock(&s->mu);
    while (!pred(s)) {
        int64_t left = deadline_ns - cp_mono_ns();
        if (left <= 0)
            break;
        /* wake at least every 20 ms: the predicate may change without a signal */
        int64_t step_ms = left < 20000000 ? 1 + left / 1000000 : 20;
        struct timespec ts = cp_deadline(CLOCK_REALTIME, step_ms);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    int v = pred(s);
    pthread_mutex_unlock(&s->mu);
    return v;
}

void rpc_server_stop(struct rpc_server *s, int grace_ms)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    grpc_server_shutdown_and_notify(s->srv, s->cq, &s->shutdown_tag);
    /* parked streams never end by themselves: close them now, gracefully */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        struct rpc_call *c = s->parked;
        pthread_mutex_unlock(&s->mu);
        if (!c || !unpark(c))
            break;
        rpc_finish(c, GRPC_STATUS_OK, NULL);
    }
    int64_t t0 = cp_mono_ns();
    if (!wait_until(s, shutdown_is_done, t0 + (int64_t)grace_ms * 1000000)) {
        grpc_server_cancel_all_calls(s->srv);
        wait_until(s, shutdown_is_done, cp_mono_ns() + 300000000LL);
    }
    /* calls still running see their calls cancelled; give them a moment to end */
    wait_until(s, calls_are_done, cp_mono_ns() + 300000000LL);
    grpc_completion_queue_shutdown(s->cq);
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    if (atomic_load(&s->live) == 0) {
        grpc_server_destroy(s->srv);
        grpc_completion_queue_destroy(s->cq);
        free(s->handles);
        free(s->threads);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
    }
    /* else: a call is stuck past every deadline; the process is exiting, keep the server
     * alive under it rather than free memory it still uses */
}
