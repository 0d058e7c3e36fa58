/*
 * grpc_async.c - many CallResource calls in flight from a few client threads. Each thread owns
 * a completion queue (next) and a set of call slots: it starts its calls without waiting and
 * handles completions as they come, so thousands of concurrent calls cost the client no
 * thread each (Grafana's goroutines cost it none either). Two loads on one channel:
 *
 *   burst  every request started at once, split over the threads; each call's start, end and
 *          answer are kept (bench_async_burst)
 *   loop   a fixed number of calls in flight for a warm-up and a measured window, a finished
 *          call replaced at once by the next (bench_async_loop)
 *
 * A call is the server-streaming CallResource: one batch sends the request and reads the
 * first message, a second batch waits for the status meanwhile; the messages after the first
 * are read one batch at a time. The call is over when both the message stream and the status
 * are. Only the first message's code and X-Cache are decoded, and every message's body length.
 */
#include "bench_int.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_THREADS 16
#define GUARD_MS 5000 /* past every call's deadline: core must have completed it by then */

enum { TAG_MSG, TAG_STATUS };

struct athread;
struct slot;

struct atag {
    struct slot *s;
    int kind;
};

/* One call in flight and what it owns until it is over. */
struct slot {
    struct athread *th;
    struct atag t_msg, t_status;
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
    int msgs_done, status_done, nmsg;
    size_t req;
    struct bench_acall res;
};

/* What the threads of one load share. */
struct arun {
    const struct bench_aload *l;
    int burst;
    pthread_barrier_t ready, go;
    int64_t t_start;          /* when the threads were let go */
    int64_t t_measure, t_end; /* loop: the measured window; calls start until t_end */
    struct bench_acall *out;  /* burst: one result per request */
};

struct athread {
    struct arun *run;
    pthread_t th;
    grpc_completion_queue *cq;
    struct slot *slots;
    unsigned nslots, active;
    size_t first, count; /* burst: requests [first, first + count) */
    size_t next;         /* loop: round-robin position in the requests */
    int cancelled;
    /* loop: the measured window */
    int64_t *ns;
    size_t n, cap;
    uint64_t ok, http_errors, failed, bytes;
    uint64_t by_cache[BENCH_CACHE_N];
    uint64_t answered_all; /* answered calls, warm-up and window alike */
    int64_t last_end, last_end_all;
    char first_error[160];
    int rc;
    struct cp_err err;
};

static gpr_timespec after_ms(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* The first message's code and X-Cache, every message's body length. */
static void read_message(struct slot *s)
{
    grpc_byte_buffer_reader rd;
    grpc_slice m = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&rd, s->recv)) {
        m = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
    }
    grpc_byte_buffer_destroy(s->recv);
    s->recv = NULL;
    Pluginv2__CallResourceResponse *msg = pluginv2__call_resource_response__unpack(
        NULL, GRPC_SLICE_LENGTH(m), GRPC_SLICE_START_PTR(m));
    grpc_slice_unref(m);
    if (!msg)
        return;
    if (s->nmsg++ == 0) {
        s->res.code = msg->code;
        for (size_t i = 0; i < msg->n_headers; i++) {
            const Pluginv2__CallResourceResponse__HeadersEntry *e = msg->headers[i];
            if (e->key && !strcasecmp(e->key, "X-Cache") && e->value && e->value->n_values)
                s->res.cache = bench_cache_parse(e->value->values[0]);
        }
    }
    s->res.bytes += msg->body.len;
    pluginv2__call_resource_response__free_unpacked(msg, NULL);
}

static int recv_next(struct slot *s)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv;
    return grpc_call_start_batch(s->call, &op, 1, &s->t_msg, NULL) == GRPC_CALL_OK ? 0 : -1;
}

/* Starts request req in slot s; 0 when the call is in flight (the thread counts it active). A
 * call that cannot start is finished at once as failed (no status). */
static int slot_start(struct athread *th, struct slot *s, size_t req)
{
    const struct bench_aload *l = th->run->l;
    memset(s, 0, sizeof *s);
    s->th = th;
    s->t_msg = (struct atag){s, TAG_MSG};
    s->t_status = (struct atag){s, TAG_STATUS};
    s->req = req;
    s->res.grpc_status = -1;
    s->res.cache = BENCH_CACHE_NONE;
    s->status = GRPC_STATUS_UNKNOWN;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->imd);
    grpc_metadata_array_init(&s->tmd);
    s->res.start_ns = cp_mono_ns();
    s->call =
        grpc_channel_create_registered_call(l->chan->ch, NULL, GRPC_PROPAGATE_DEFAULTS, th->cq,
                                            l->chan->h_resource, after_ms(l->timeout_ms), NULL);
    grpc_slice body = grpc_slice_from_static_buffer(l->reqs[req], l->lens[req]);
    s->send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_op ops[5];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->recv;
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &s->tmd;
    st.data.recv_status_on_client.status = &s->status;
    st.data.recv_status_on_client.status_details = &s->details;
    if (!s->call || grpc_call_start_batch(s->call, ops, 5, &s->t_msg, NULL) != GRPC_CALL_OK) {
        s->msgs_done = s->status_done = 1;
        return -1;
    }
    if (grpc_call_start_batch(s->call, &st, 1, &s->t_status, NULL) != GRPC_CALL_OK) {
        /* the message batch still completes (cancelled); no status will come */
        s->status_done = 1;
        grpc_call_cancel(s->call, NULL);
    }
    th->active++;
    return 0;
}

/* Releases what the call owned; the result stays in s->res. */
static void slot_release(struct slot *s)
{
    if (s->recv)
        grpc_byte_buffer_destroy(s->recv);
    if (s->send)
        grpc_byte_buffer_destroy(s->send);
    s->recv = s->send = NULL;
    grpc_slice_unref(s->details);
    s->details = grpc_empty_slice();
    grpc_metadata_array_destroy(&s->imd);
    grpc_metadata_array_destroy(&s->tmd);
    if (s->call)
        grpc_call_unref(s->call);
    s->call = NULL;
}

static void note_error(struct athread *th, const struct slot *s)
{
    if (th->first_error[0])
        return;
    if (s->res.grpc_status == GRPC_STATUS_OK)
        snprintf(th->first_error, sizeof th->first_error, "HTTP %d", s->res.code);
    else if (s->res.grpc_status < 0)
        snprintf(th->first_error, sizeof th->first_error, "the call could not start");
    else
        snprintf(th->first_error, sizeof th->first_error, "gRPC status %d: %.*s",
                 s->res.grpc_status, (int)GRPC_SLICE_LENGTH(s->details),
                 (const char *)GRPC_SLICE_START_PTR(s->details));
}

/* Counts a finished loop call: every answer for the whole load, the measured window's in full. */
static void loop_record(struct athread *th, const struct slot *s)
{
    struct arun *r = th->run;
    if (s->res.grpc_status == GRPC_STATUS_OK && s->nmsg) {
        th->answered_all++;
        if (s->res.end_ns > th->last_end_all)
            th->last_end_all = s->res.end_ns;
    }
    if (s->res.start_ns < r->t_measure || s->res.start_ns >= r->t_end)
        return;
    if (s->res.grpc_status != GRPC_STATUS_OK || s->nmsg == 0) {
        th->failed++;
        note_error(th, s);
        return;
    }
    if (s->res.code >= 400) {
        th->http_errors++;
        note_error(th, s);
    } else {
        th->ok++;
    }
    th->by_cache[s->res.cache]++;
    th->bytes += s->res.bytes;
    if (th->n == th->cap) {
        size_t nc = th->cap ? th->cap * 2 : 4096;
        int64_t *nn = realloc(th->ns, nc * sizeof *nn);
        if (!nn) {
            th->rc = cp_err_set(&th->err, CP_ENOMEM, "out of memory for samples");
            return;
        }
        th->ns = nn;
        th->cap = nc;
    }
    th->ns[th->n++] = s->res.end_ns - s->res.start_ns;
    if (s->res.end_ns > th->last_end)
        th->last_end = s->res.end_ns;
}

/* The call in s is over: keep its result, then start the next one in its place (loop). */
static void slot_finish(struct athread *th, struct slot *s)
{
    struct arun *r = th->run;
    s->res.end_ns = cp_mono_ns();
    s->res.grpc_status = s->status_done && s->call ? (int)s->status : -1;
    th->active--;
    if (r->burst) {
        if (s->res.grpc_status != GRPC_STATUS_OK || s->res.code >= 400)
            note_error(th, s);
        r->out[s->req] = s->res;
    } else {
        loop_record(th, s);
    }
    slot_release(s);
    if (r->burst || th->cancelled || th->rc || atomic_load(&bench_interrupted))
        return;
    if (cp_mono_ns() < r->t_end) {
        size_t req = th->next++ % r->l->nreqs;
        if (slot_start(th, s, req) != 0) {
            s->res.end_ns = cp_mono_ns();
            loop_record(th, s);
            slot_release(s);
        }
    }
}

static void on_event(struct athread *th, struct atag *t, int success)
{
    struct slot *s = t->s;
    if (t->kind == TAG_STATUS) {
        s->status_done = 1;
    } else if (success && s->recv) {
        read_message(s);
        if (recv_next(s) != 0)
            s->msgs_done = 1;
    } else {
        s->msgs_done = 1; /* end of the stream, or the call failed */
    }
    if (s->msgs_done && s->status_done)
        slot_finish(th, s);
}

static void cancel_all(struct athread *th)
{
    th->cancelled = 1;
    for (unsigned i = 0; i < th->nslots; i++)
        if (th->slots[i].call && !(th->slots[i].msgs_done && th->slots[i].status_done))
            grpc_call_cancel(th->slots[i].call, NULL);
}

static void *thread_main(void *arg)
{
    struct athread *th = arg;
    struct arun *r = th->run;
    pthread_barrier_wait(&r->ready);
    pthread_barrier_wait(&r->go);
    if (r->burst) {
        for (size_t i = 0; i < th->count; i++) {
            struct slot *s = &th->slots[i];
            if (slot_start(th, s, th->first + i) != 0) {
                s->res.end_ns = cp_mono_ns();
                note_error(th, s);
                r->out[s->req] = s->res;
                slot_release(s);
            }
        }
    } else {
        for (unsigned i = 0; i < th->nslots; i++) {
            struct slot *s = &th->slots[i];
            if (slot_start(th, s, th->next++ % r->l->nreqs) != 0) {
                s->res.end_ns = cp_mono_ns();
                loop_record(th, s);
                slot_release(s);
            }
        }
    }
    int64_t guard =
        (r->burst ? cp_mono_ns() : r->t_end) + (r->l->timeout_ms + GUARD_MS) * (int64_t)1000000;
    while (th->active > 0) {
        grpc_event ev = grpc_completion_queue_next(th->cq, after_ms(100), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            on_event(th, ev.tag, ev.success);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (!th->cancelled && (atomic_load(&bench_interrupted) || cp_mono_ns() > guard))
            cancel_all(th);
    }
    return NULL;
}

static void cq_drain_destroy(grpc_completion_queue *cq)
{
    if (!cq)
        return;
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

/* Runs the load on l->threads threads. Thread k gets requests or slots by its share. */
static int run_load(struct arun *r, struct athread **out_ths, unsigned *out_n, struct cp_err *err)
{
    const struct bench_aload *l = r->l;
    unsigned nt = l->threads ? l->threads : 1;
    if (nt > MAX_THREADS)
        nt = MAX_THREADS;
    size_t total = r->burst ? l->nreqs : l->inflight;
    if (nt > total)
        nt = (unsigned)(total ? total : 1);
    struct athread *ths = calloc(nt, sizeof *ths);
    if (!ths)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    int rc = 0;
    for (unsigned k = 0; k < nt && !rc; k++) {
        struct athread *th = &ths[k];
        th->run = r;
        size_t lo = total * k / nt, hi = total * (k + 1) / nt;
        th->first = lo;
        th->count = hi - lo;
        th->next = lo; /* loop: threads start at different requests */
        th->nslots = (unsigned)(hi - lo);
        th->slots = calloc(th->nslots ? th->nslots : 1, sizeof *th->slots);
        th->cq = grpc_completion_queue_create_for_next(NULL);
        if (!th->slots || !th->cq)
            rc = cp_err_set(err, CP_ENOMEM, "out of memory for %zu calls", hi - lo);
    }
    pthread_barrier_init(&r->ready, NULL, nt + 1);
    pthread_barrier_init(&r->go, NULL, nt + 1);
    unsigned started = 0;
    for (; !rc && started < nt; started++)
        if (pthread_create(&ths[started].th, NULL, thread_main, &ths[started]) != 0)
            break;
    if (!rc && started < nt) {
        /* the barriers need every party: a host that cannot start a thread is unusable */
        fprintf(stderr, "bench: cannot start client threads\n");
        exit(1);
    }
    if (!rc) {
        pthread_barrier_wait(&r->ready);
        int64_t now = cp_mono_ns();
        r->t_start = now;
        r->t_measure = now + (int64_t)(l->warmup_s * 1e9);
        r->t_end = r->t_measure + (int64_t)(l->duration_s * 1e9);
        pthread_barrier_wait(&r->go);
        for (unsigned k = 0; k < nt; k++)
            pthread_join(ths[k].th, NULL);
    }
    pthread_barrier_destroy(&r->ready);
    pthread_barrier_destroy(&r->go);
    for (unsigned k = 0; k < nt; k++) {
        cq_drain_destroy(ths[k].cq);
        ths[k].cq = NULL;
        free(ths[k].slots);
        ths[k].slots = NULL;
        if (!rc && ths[k].rc) {
            rc = ths[k].rc;
            if (err)
                *err = ths[k].err;
        }
    }
    if (!rc && atomic_load(&bench_interrupted))
        rc = cp_err_set(err, CP_ECANCELED, "interrupted");
    *out_ths = ths;
    *out_n = nt;
    return rc;
}

static int check_load(const struct bench_aload *l, int burst, struct cp_err *err)
{
    if (!l->chan || !l->chan->ch || !l->reqs || !l->lens || !l->nreqs)
        return cp_err_set(err, CP_EINVAL, "a load needs a channel and requests");
    if (!burst && (!l->inflight || l->duration_s <= 0))
        return cp_err_set(err, CP_EINVAL, "a loop needs calls in flight and a duration");
    return 0;
}

int bench_async_burst(const struct bench_aload *l, struct bench_acall *out, struct cp_err *err)
{
    int rc = check_load(l, 1, err);
    if (rc)
        return rc;
    memset(out, 0, l->nreqs * sizeof *out);
    for (size_t i = 0; i < l->nreqs; i++)
        out[i].grpc_status = -1;
    struct arun r;
    memset(&r, 0, sizeof r);
    r.l = l;
    r.burst = 1;
    r.out = out;
    struct athread *ths = NULL;
    unsigned nt = 0;
    rc = run_load(&r, &ths, &nt, err);
    free(ths);
    return rc;
}

int bench_async_loop(const struct bench_aload *l, struct bench_aloop_result *res,
                     struct cp_err *err)
{
    memset(res, 0, sizeof *res);
    int rc = check_load(l, 0, err);
    if (rc)
        return rc;
    struct arun r;
    memset(&r, 0, sizeof r);
    r.l = l;
    struct athread *ths = NULL;
    unsigned nt = 0;
    rc = run_load(&r, &ths, &nt, err);
    size_t total = 0;
    int64_t last = r.t_measure, last_all = r.t_start;
    for (unsigned k = 0; ths && k < nt; k++)
        total += ths[k].n;
    int64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t at = 0;
    for (unsigned k = 0; ths && k < nt; k++) {
        struct athread *th = &ths[k];
        if (all && th->n)
            memcpy(all + at, th->ns, th->n * sizeof *all);
        at += th->n;
        res->ok += th->ok;
        res->http_errors += th->http_errors;
        res->failed += th->failed;
        for (int c = 0; c < BENCH_CACHE_N; c++)
            res->by_cache[c] += th->by_cache[c];
        res->st.bytes += th->bytes;
        if (th->last_end > last)
            last = th->last_end;
        if (th->last_end_all > last_all)
            last_all = th->last_end_all;
        res->answered_all += th->answered_all;
        if (!res->first_error[0] && th->first_error[0])
            snprintf(res->first_error, sizeof res->first_error, "%s", th->first_error);
        free(th->ns);
    }
    free(ths);
    if (!all && !rc)
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    if (!rc && total == 0)
        rc = cp_err_set(err, CP_EUPSTREAM, "no call answered in the measured window%s%s",
                        res->first_error[0] ? ": " : "", res->first_error);
    if (!rc) {
        res->st.calls = total;
        res->st.secs = (double)(last - r.t_measure) / 1e9;
        res->st.rps = res->st.secs > 0 ? (double)total / res->st.secs : 0;
        res->all_secs = (double)(last_all - r.t_start) / 1e9;
        bench_stats_fill(&res->st, all, total);
        if (l->keep_samples) {
            res->samples = all;
            res->nsamples = total;
            all = NULL;
        }
    }
    free(all);
    return rc;
}
