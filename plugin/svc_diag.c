/* svc_diag.c - Diagnostics: CheckHealth ("Save & test") and CollectMetrics. */
#include "plugin_int.h"

#include <grpc/status.h>
#include <string.h>
#include <strings.h>

void plugin_user_from_ctx(const Pluginv2__PluginContext *pc, struct cp_user *u)
{
    memset(u, 0, sizeof *u);
    if (!pc)
        return;
    u->org_id = pc->orgid;
    const Pluginv2__User *usr = pc->user;
    if (usr && usr->login && *usr->login) {
        u->present = 1;
        u->login = usr->login;
        u->email = usr->email;
        u->name = usr->name;
        u->role = cfg_role_parse(usr->role);
    }
}

void svc_check_health(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__CheckHealthRequest *rq = pluginv2__check_health_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed CheckHealthRequest");
        return;
    }
    Pluginv2__CheckHealthResponse resp = PLUGINV2__CHECK_HEALTH_RESPONSE__INIT;
    struct cp_buf msg = {0}, details = {0};
    struct cp_err err = {0};
    struct plugin_instance *in = NULL;
    const Pluginv2__PluginContext *pc = rq->plugincontext;
    int ok = 0;
    if (plugin_instance_get(pc, rpc_cancelled_cb, c, &in, &err) != 0) {
        cp_buf_addf(&msg, "Settings: %s", cp_err_text(&err));
    } else {
        proxy_check_health(in->px, &ok, &msg, &details);
        plugin_instance_put(in);
    }
    resp.status = ok ? PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__OK
                     : PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__ERROR;
    resp.message = msg.p ? cp_utf8_fix(msg.p) : (char *)"";
    if (details.len) {
        resp.jsondetails.data = (uint8_t *)details.p;
        resp.jsondetails.len = details.len;
    }
    struct cp_kv kv[] = {CP_KV_S("status", ok ? "OK" : "ERROR"), CP_KV_S("message", resp.message)};
    plugin_log(ok ? CP_LOG_DEBUG : CP_LOG_WARN, ok ? "health check" : "health check failed", kv, 2);
    rpc_reply(c, &resp.base);
    cp_buf_free(&msg);
    cp_buf_free(&details);
    pluginv2__check_health_request__free_unpacked(rq, NULL);
}

void svc_collect_metrics(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__CollectMetricsRequest *rq =
        pluginv2__collect_metrics_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed CollectMetricsRequest");
        return;
    }
    pluginv2__collect_metrics_request__free_unpacked(rq, NULL);
    struct cp_buf text = {0};
    if (plugin_metrics_render(&text) != 0) {
        cp_buf_free(&text);
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    Pluginv2__CollectMetricsResponse resp = PLUGINV2__COLLECT_METRICS_RESPONSE__INIT;
    Pluginv2__CollectMetricsResponse__Payload pay =
        PLUGINV2__COLLECT_METRICS_RESPONSE__PAYLOAD__INIT;
    pay.prometheus.data = (uint8_t *)text.p;
    pay.prometheus.len = text.len;
    resp.metrics = &pay;
    rpc_reply(c, &resp.base);
    cp_buf_free(&text);
}
