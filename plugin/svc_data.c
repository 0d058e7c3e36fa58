/* svc_data.c - Data/QueryData: every query of the request runs through the pipeline
 * concurrently and answers in its own DataResponse, keyed by refId, with an HTTP-style status
 * (always set) and Arrow frames. */
#include "plugin_int.h"

#include <grpc/status.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 128

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

void svc_query_data(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__QueryDataRequest *rq = pluginv2__query_data_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed QueryDataRequest");
        return;
    }
    size_t n = rq->n_queries;
    struct proxy_query *qs = calloc(n ? n : 1, sizeof *qs);
    struct proxy_query_result *res = calloc(n ? n : 1, sizeof *res);
    Pluginv2__QueryDataResponse__ResponsesEntry *entries = calloc(n ? n : 1, sizeof *entries);
    Pluginv2__QueryDataResponse__ResponsesEntry **eptrs = calloc(n ? n : 1, sizeof *eptrs);
    Pluginv2__DataResponse *drs = calloc(n ? n : 1, sizeof *drs);
    ProtobufCBinaryData *bins = NULL;
    if (!qs || !res || !entries || !eptrs || !drs) {
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    const Pluginv2__PluginContext *pc = rq->plugincontext;
    struct plugin_instance *in = NULL;
    struct cp_err err = {0};
    if (plugin_instance_get(pc, rpc_cancelled_cb, c, &in, &err) != 0) {
        for (size_t i = 0; i < n; i++) {
            res[i].status = cp_http_status(err.code);
            res[i].error = cp_utf8_fix(strdup(cp_err_text(&err)));
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const Pluginv2__DataQuery *q = rq->queries[i];
            qs[i].ref_id = q->refid && *q->refid ? q->refid : "A";
            qs[i].json = (const char *)q->json.data;
            qs[i].json_len = q->json.len;
            qs[i].from_ms = q->timerange ? q->timerange->fromepochms : 0;
            qs[i].to_ms = q->timerange ? q->timerange->toepochms : 0;
            qs[i].interval_ms = q->intervalms;
            qs[i].max_data_points = q->maxdatapoints;
        }
        struct cp_user user;
        plugin_user_from_ctx(pc, &user);
        struct proxy_header hs[MAX_HEADERS];
        size_t nh = flatten(rq, hs, MAX_HEADERS);
        proxy_query_data(in->px, qs, n, &user, hs, nh, rpc_cancelled_cb, c, res);
        plugin_instance_put(in);
    }

    size_t nbins = 0;
    for (size_t i = 0; i < n; i++)
        nbins += res[i].nframes;
    bins = calloc(nbins ? nbins : 1, sizeof *bins);
    if (!bins) {
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        pluginv2__query_data_response__responses_entry__init(&entries[i]);
        pluginv2__data_response__init(&drs[i]);
        entries[i].key = (char *)(rq->queries[i]->refid && *rq->queries[i]->refid
                                      ? rq->queries[i]->refid
                                      : "A");
        entries[i].value = &drs[i];
        eptrs[i] = &entries[i];
        drs[i].status = res[i].status ? res[i].status : 500;
        if (res[i].error) {
            drs[i].error = res[i].error;
            drs[i].errorsource = (char *)(res[i].downstream ? "downstream" : "plugin");
        }
        drs[i].n_frames = res[i].nframes;
        drs[i].frames = &bins[b];
        for (size_t f = 0; f < res[i].nframes; f++, b++) {
            bins[b].data = res[i].frames[f];
            bins[b].len = res[i].frame_lens[f];
        }
        if (res[i].error) {
            struct cp_kv kv[] = {CP_KV_S("refId", entries[i].key), CP_KV_S("error", res[i].error),
                                 CP_KV_I("status", drs[i].status)};
            plugin_log(res[i].downstream ? CP_LOG_WARN : CP_LOG_INFO, "query failed", kv, 3);
        }
    }
    Pluginv2__QueryDataResponse resp = PLUGINV2__QUERY_DATA_RESPONSE__INIT;
    resp.n_responses = n;
    resp.responses = eptrs;
    rpc_reply(c, &resp.base);
out:
    for (size_t i = 0; res && i < n; i++)
        proxy_query_result_dispose(&res[i]);
    free(bins);
    free(drs);
    free(eptrs);
    free(entries);
    free(res);
    free(qs);
    pluginv2__query_data_request__free_unpacked(rq, NULL);
}
