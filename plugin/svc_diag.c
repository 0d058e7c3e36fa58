/* svc_diag.c - Diagnostics: CheckHealth ("Save & test") and CollectMetrics. */
#include "plugin_int.h"

#include <grpc/status.h>
#include <stdio.h>
#include <stdlib.h>
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

struct health_front {
    struct rpc_call *c;
    Pluginv2__CheckHealthRequest *rq;
    struct plugin_instance *in;
};

static void health_reply(struct health_front *f, int ok, const char *msg, const char *details)
{
    Pluginv2__CheckHealthResponse resp = PLUGINV2__CHECK_HEALTH_RESPONSE__INIT;
    char *text = strdup(msg ? msg : "");
    resp.status = ok ? PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__OK
                     : PLUGINV2__CHECK_HEALTH_RESPONSE__HEALTH_STATUS__ERROR;
    resp.message = text ? cp_utf8_fix(text) : (char *)"";
    if (details && *details) {
        resp.jsondetails.data = (uint8_t *)details;
        resp.jsondetails.len = strlen(details);
    }
    struct cp_kv kv[] = {CP_KV_S("status", ok ? "OK" : "ERROR"), CP_KV_S("message", resp.message)};
    plugin_log(ok ? CP_LOG_DEBUG : CP_LOG_WARN, ok ? "health check" : "health check failed", kv, 2);
    rpc_reply(f->c, &resp.base);
    free(text);
    plugin_instance_put(f->in);
    pluginv2__check_health_request__free_unpacked(f->rq, NULL);
    free(f);
}

static void health_done(void *ctx, int ok, const char *msg, const char *details)
{
    health_reply(ctx, ok, msg, details);
}

static void health_instance(void *ctx, struct plugin_instance *in, const struct cp_err *err)
{
    struct health_front *f = ctx;
    if (!in) {
        char msg[sizeof err->msg + 16];
        snprintf(msg, sizeof msg, "Settings: %s", cp_err_text(err));
        health_reply(f, 0, msg, NULL);
        return;
    }
    f->in = in;
    if (proxy_check_health(in->px, health_done, f) != 0)
        health_reply(f, 0, "out of memory", NULL);
}

void svc_check_health(struct rpc_call *c, const uint8_t *req, size_t len)
{
    Pluginv2__CheckHealthRequest *rq = pluginv2__check_health_request__unpack(NULL, len, req);
    if (!rq) {
        rpc_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed CheckHealthRequest");
        return;
    }
    struct health_front *f = calloc(1, sizeof *f);
    if (!f) {
        pluginv2__check_health_request__free_unpacked(rq, NULL);
        rpc_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    f->c = c;
    f->rq = rq;
    if (plugin_instance_with(rq->plugincontext, rpc_cancelled_cb, c, health_instance, f) != 0)
        health_reply(f, 0, "out of memory", NULL);
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
