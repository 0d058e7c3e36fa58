/* svc_data.c - Data/QueryData: every query of the request runs through the pipeline
 * concurrently (on the event loop) and answers in its own DataResponse, keyed by refId, with
 * an HTTP-style status (always set) and Arrow frames. The reply goes out when the last query
 * is done. */
#include "plugin_int.h"

#include <grpc/status.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 128

/* One QueryData. Two references: the gRPC call's (released by on_free) and the starter's
 * (released once the queries are started), since the reply may end the call first. */
struct data_front {
    _Atomic int refs;
    struct rpc_call *c;
    Pluginv2__QueryDataRequest *rq;
    struct plugin_instance *in;
    struct proxy_query *qs;
    struct proxy_query_result *res;
    size_t n;
    struct cp_user user;
    struct proxy_header hs[MAX_HEADERS];
    size_t nh;
    pthread_mutex_t mu;
    struct proxy_batch *batch;
    int cancelled; /* the client left (on_cancel): the gRPC call may be gone after the reply */
};

/* Grafana's string header map: "http_<Name>" keys (some versions send Authorization,
 * X-ID-Token and Cookie unprefixed). Returns borrowed name/value pairs. */
static size_t flatten(const Pluginv2__QueryDataRequest *rq, struct proxy_header *out, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < rq->n_headers && k < max; i++) {
        const char *name = rq->headers[i]->key, *v = rq->headers[i]->value;
        if (!name || !v)
            continue;
        if (!strncasecmp(name, "http_", 5))
            name += 5;
        out[k++] = (struct proxy_header){name, v};
    }
    return k;
}

static void front_unref(struct data_front *f)
{
    if (atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    proxy_batch_release(f->batch);
    for (size_t i = 0; f->res && i < f->n; i++)
        proxy_query_result_dispose(&f->res[i]);
    free(f->res);
    free(f->qs);
    plugin_instance_put(f->in);
    pthread_mutex_destroy(&f->mu);
    if (f->rq)
        pluginv2__query_data_request__free_unpacked(f->rq, NULL);
    free(f);
}

/* The gRPC call is freed: nothing may look at it any more (a starter still running on
 * another thread checks f->c under f->mu). */
static void front_free(void *ctx)
{
    struct data_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->c = NULL;
    pthread_mutex_unlock(&f->mu);
    front_unref(f);
}

static void on_cancel(void *ctx)
{
    struct data_front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->cancelled = 1;
    struct proxy_batch *b = f->batch;
    pthread_mutex_unlock(&f->mu);
    proxy_batch_cancel(b);
}

static const struct rpc_events front_events = {NULL, on_cancel, front_free};

/* Every result is set: one DataResponse per query. */
static void reply(void *ctx)
{
    struct data_front *f = ctx;
    size_t n = f->n, nbins = 0;
    for (size_t i = 0; i < n; i++)
        nbins += f->res[i].nframes;
    Pluginv2__QueryDataResponse__ResponsesEntry *entries = calloc(n ? n : 1, sizeof *entries);
    Pluginv2__QueryDataResponse__ResponsesEntry **eptrs = calloc(n ? n : 1, sizeof *eptrs);
    Pluginv2__DataResponse *drs = calloc(n ? n : 1, sizeof *drs);
    ProtobufCBinaryData *bins = calloc(nbins ? nbins : 1, sizeof *bins);
    if (!entries || !eptrs || !drs || !bins) {
        rpc_fail(f->c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        struct proxy_query_result *r = &f->res[i];
        pluginv2__query_data_response__responses_entry__init(&entries[i]);
        pluginv2__data_response__init(&drs[i]);
        entries[i].key = (char *)f->qs[i].ref_id;
        entries[i].value = &drs[i];
        eptrs[i] = &entries[i];
        drs[i].status = r->status ? r->status : 500;
        if (r->error) {
            drs[i].error = r->error;
            drs[i].errorsource = (char *)(r->downstream ? "downstream" : "plugin");
        }
        drs[i].n_frames = r->nframes;
        drs[i].frames = &bins[b];
        for (size_t k = 0; k < r->nframes; k++, b++) {
            bins[b].data = r->frames[k];
            bins[b].len = r->frame_lens[k];
        }
        if (r->error) {
            struct cp_kv kv[] = {CP_KV_S("refId", entries[i].key), CP_KV_S("error", r->error),
                                 CP_KV_I("status", drs[i].status)};
            plugin_log(r->downstream ? CP_LOG_WARN : CP_LOG_INFO, "query failed", kv, 3);
        }
    }
    Pluginv2__QueryDataResponse resp = PLUGINV2__QUERY_DATA_RESPONSE__INIT;
    resp.n_responses = n;
    resp.responses = eptrs;
    rpc_reply(f->c, &resp.base);
out:
    free(bins);
    free(drs);
    free(eptrs);
    free(entries);
}

/* Every query answers the same settings error. */
static void reply_error(struct data_front *f, const struct cp_err *err)
{
    for (size_t i = 0; i < f->n; i++) {
        f->res[i].status = cp_http_status(err->code);
        f->res[i].error = cp_utf8_fix(strdup(cp_err_text(err)));
    }
    reply(f);
}

static void instance_ready(void *ctx, struct plugin_instance *in, const struct cp_err *err)
{
    struct data_front *f = ctx;
    if (!in) {
        reply_error(f, err);
        front_unref(f);
        return;
    }
    f->in = in;
    struct proxy_batch *b = NULL;
    if (proxy_query_start(in->px, f->qs, f->n, &f->user, f->hs, f->nh, f->res, reply, f, &b) !=
        0) {
        struct cp_err e;
        cp_err_set(&e, CP_ENOMEM, "out of memory");
        reply_error(f, &e);
        front_unref(f);
        return;
    }
    pthread_mutex_lock(&f->mu);
    f->batch = b;
    int gone = f->cancelled;
    pthread_mutex_unlock(&f->mu);
    if (gone)
        proxy_batch_cancel(b);
    front_unref(f); /* the starter's reference */
}

void svc_query_data(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__QueryDataRequest *rq = pluginv2__query_data_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed QueryDataRequest");
        return;
    }
    struct data_front *f = calloc(1, sizeof *f);
    size_t n = rq->n_queries;
    if (f) {
        f->qs = calloc(n ? n : 1, sizeof *f->qs);
        f->res = calloc(n ? n : 1, sizeof *f->res);
    }
    if (!f || !f->qs || !f->res) {
        if (f) {
            free(f->qs);
            free(f->res);
            free(f);
        }
        pluginv2__query_data_request__free_unpacked(rq, NULL);
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->refs, 2);
    f->c = c;
    f->rq = rq;
    f->n = n;
    for (size_t i = 0; i < n; i++) {
        const Pluginv2__DataQuery *q = rq->queries[i];
        f->qs[i] = (struct proxy_query){
            .ref_id = q->refid && *q->refid ? q->refid : "A",
            .json = (const char *)q->json.data,
            .json_len = q->json.len,
            .from_ms = q->timerange ? q->timerange->fromepochms : 0,
            .to_ms = q->timerange ? q->timerange->toepochms : 0,
            .interval_ms = q->intervalms,
            .max_data_points = q->maxdatapoints,
        };
    }
    plugin_user_from_ctx(rq->plugincontext, &f->user);
    f->nh = flatten(rq, f->hs, MAX_HEADERS);
    rpc_set_events(c, &front_events, f);
    if (plugin_instance_with(rq->plugincontext, rpc_cancelled_cb, c, instance_ready, f) != 0) {
        struct cp_err e;
        cp_err_set(&e, CP_ENOMEM, "out of memory");
        reply_error(f, &e);
        front_unref(f);
    }
}
