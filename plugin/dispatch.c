/*
 * dispatch.c - the method table (full gRPC paths to handlers) and the go-plugin side
 * services: grpc.health.v1 and the controller.
 */
#include "plugin_int.h"

#include <grpc/status.h>
#include <string.h>

#include "goplugin.pb-c.h"
#include "health.pb-c.h"

const struct rpc_method plugin_methods[] = {
    {"/grpc.health.v1.Health/Check", RPC_UNARY, svc_health_check},
    {"/grpc.health.v1.Health/Watch", RPC_STREAM, svc_health_watch},
    {"/plugin.GRPCController/Shutdown", RPC_UNARY, svc_controller_shutdown},
    {"/plugin.GRPCStdio/StreamStdio", RPC_PARK, NULL},
    {"/plugin.GRPCBroker/StartStream", RPC_PARK, NULL},
    {"/pluginv2.Diagnostics/CheckHealth", RPC_UNARY, svc_check_health},
    {"/pluginv2.Diagnostics/CollectMetrics", RPC_UNARY, svc_collect_metrics},
    {"/pluginv2.Resource/CallResource", RPC_STREAM, svc_call_resource},
    {"/pluginv2.Data/QueryData", RPC_UNARY, svc_query_data},
    {"/pluginv2.Stream/SubscribeStream", RPC_UNARY, svc_subscribe_stream},
    {"/pluginv2.Stream/RunStream", RPC_STREAM, svc_run_stream},
    {"/pluginv2.Stream/PublishStream", RPC_UNARY, svc_publish_stream},
};
const size_t plugin_nmethods = sizeof plugin_methods / sizeof plugin_methods[0];

/* Health of the whole plugin: "" and go-plugin's "plugin" are served; others are unknown. */
static int health_status(const Grpc__Health__V1__HealthCheckRequest *rq)
{
    const char *svc = rq->service ? rq->service : "";
    if (!*svc || !strcmp(svc, "plugin"))
        return atomic_load(&plugin_g.stopping) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
                                              : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return -1;
}

void svc_health_check(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *rq =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        return;
    }
    int st = health_status(rq);
    grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
    if (st < 0) {
        rpc_fail(c, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    rpc_reply(c, &resp.base);
}

void svc_health_watch(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Grpc__Health__V1__HealthCheckRequest *rq =
        grpc__health__v1__health_check_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        return;
    }
    int st = health_status(rq);
    grpc__health__v1__health_check_request__free_unpacked(rq, NULL);
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st < 0 ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                         : st;
    if (rpc_send(c, &resp.base) != 0) {
        rpc_finish(c, GRPC_STATUS_CANCELLED, NULL);
        return;
    }
    rpc_park(c); /* the first message may still be on its way: the parked call holds it */
}

void svc_controller_shutdown(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Plugin__Empty *rq = plugin__empty__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed Empty");
        return;
    }
    plugin__empty__free_unpacked(rq, NULL);
    Plugin__Empty resp = PLUGIN__EMPTY__INIT;
    rpc_reply(c, &resp.base);
    plugin_log(CP_LOG_DEBUG, "shutdown requested by the host", NULL, 0);
    plugin_request_stop();
}
