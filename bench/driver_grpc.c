/*
 * driver_grpc.c - the `grpc` mode: the plugin executable launched as Grafana launches it, one
 * data source, and every request a CallResource (`proxy/<path>`) or a QueryData call made as
 * the request's user, through one channel shared by the workers (each worker has its own
 * completion queue). Cache outcomes come from X-Cache (resources) and the frame's
 * meta.custom.cache (queries); stats from the data source's `cache/stats` resource and the
 * plugin's VmRSS.
 */
#include "bench_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct grpc_conn {
    struct bench_plugin plugin;
    struct bench_ds ds;
    char *uid, *json_data, *url;
};

static int g_open(const struct bench_target *t, void **out, struct cp_err *err)
{
    *out = NULL;
    struct grpc_conn *c = calloc(1, sizeof *c);
    if (!c)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    c->uid = strdup(t->uid);
    c->json_data = strdup(t->json_data);
    c->url = strdup(t->upstream_url);
    if (!c->uid || !c->json_data || !c->url) {
        free(c->uid);
        free(c->json_data);
        free(c->url);
        free(c);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    c->ds = (struct bench_ds){7, c->uid, c->uid, c->url, c->json_data, t->updated_ms};
    int rc = bench_plugin_start(&c->plugin, t->exe, t->env, err);
    if (rc) {
        free(c->uid);
        free(c->json_data);
        free(c->url);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int g_worker_new(void *conn, void **w, struct cp_err *err)
{
    struct grpc_conn *c = conn;
    struct bench_caller *k = calloc(1, sizeof *k);
    if (!k || bench_caller_init(k, &c->plugin.chan) != 0) {
        free(k);
        return cp_err_set(err, CP_ENOMEM, "cannot create a completion queue");
    }
    *w = k;
    return 0;
}

static void g_worker_free(void *conn, void *w)
{
    (void)conn;
    if (!w)
        return;
    bench_caller_dispose(w);
    free(w);
}

/* %XX decoded in place (a query's params are given unencoded; the plugin encodes them). */
static void pct_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
            char hex[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
}

/* {"refId":"A","path":P,"params":{...},"root":"$"} from "/p?a=1&b=2". */
static char *query_model(const char *path)
{
    json_t *m = json_object(), *params = json_object();
    const char *q = strchr(path, '?');
    char *p = q ? strndup(path, (size_t)(q - path)) : strdup(path);
    char *rest = q ? strdup(q + 1) : NULL;
    char *text = NULL;
    if (!m || !params || !p || (q && !rest))
        goto out;
    for (char *save = NULL, *kv = rest ? strtok_r(rest, "&", &save) : NULL; kv;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = 0;
        pct_decode(kv);
        if (eq)
            pct_decode(eq + 1);
        json_object_set_new(params, kv, json_string(eq ? eq + 1 : ""));
    }
    json_object_set_new(m, "refId", json_string("A"));
    json_object_set_new(m, "path", json_string(p));
    json_object_set(m, "params", params);
    json_object_set_new(m, "root", json_string("$"));
    text = json_dumps(m, JSON_COMPACT);
out:
    json_decref(m);
    json_decref(params);
    free(p);
    free(rest);
    return text;
}

static int g_request(void *conn, void *w, const struct bench_req *rq, struct bench_answer *a,
                     struct cp_err *err)
{
    struct grpc_conn *c = conn;
    struct bench_user u = {rq->user, rq->role};
    size_t len = 0;
    uint8_t *req = NULL;
    int rc;
    memset(a, 0, sizeof *a);
    if (rq->kind == BENCH_KIND_QUERY) {
        char *model = query_model(rq->path);
        if (model)
            req = bench_pack_query_as(&c->ds, &u, model, rq->from_ms, rq->to_ms, &len);
        free(model);
        if (!req)
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        struct bench_qres r;
        rc = bench_query_data(w, req, len, &r, err);
        if (!rc) {
            a->status = r.status;
            a->cache = bench_cache_parse(r.cache);
            a->bytes = r.frame_bytes;
            a->pieces_hit = r.pieces_hit;
            a->pieces_fetched = r.pieces_fetched;
        }
    } else {
        char url[BENCH_MAX_URL];
        if (snprintf(url, sizeof url, "proxy%s", rq->path) >= (int)sizeof url)
            return cp_err_set(err, CP_EINVAL, "path too long: %.60s...", rq->path);
        if (!(req = bench_pack_call(&c->ds, &u, rq->method, url, &len)))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        struct bench_res r;
        rc = bench_call_resource(w, req, len, 0, &r, err);
        if (!rc) {
            a->status = r.code;
            a->cache = bench_cache_parse(r.xcache);
            a->bytes = r.body_bytes;
        }
    }
    free(req);
    return rc;
}

static int g_stats(void *conn, struct bench_target_stats *st, struct cp_err *err)
{
    struct grpc_conn *c = conn;
    memset(st, 0, sizeof *st);
    st->rss_kib = bench_plugin_rss_kib(&c->plugin);
    struct bench_caller k;
    if (bench_caller_init(&k, &c->plugin.chan) != 0)
        return cp_err_set(err, CP_ENOMEM, "cannot create a completion queue");
    size_t len;
    uint8_t *req = bench_pack_resource(&c->ds, "cache/stats", &len);
    struct bench_res r;
    int rc = req ? bench_call_resource(&k, req, len, 1, &r, err)
                 : cp_err_set(err, CP_ENOMEM, "out of memory");
    free(req);
    bench_caller_dispose(&k);
    if (rc)
        return rc;
    rc = r.first ? bench_stats_parse(r.first->body.data, r.first->body.len, r.code, st, err)
                 : bench_stats_parse(NULL, 0, r.code, st, err);
    if (r.first)
        pluginv2__call_resource_response__free_unpacked(r.first, NULL);
    return rc;
}

static int g_close(void *conn)
{
    struct grpc_conn *c = conn;
    if (!c)
        return 0;
    int rc = bench_plugin_stop(&c->plugin);
    free(c->uid);
    free(c->json_data);
    free(c->url);
    free(c);
    return rc;
}

const struct bench_driver bench_driver_grpc = {
    .name = "grpc",
    .open = g_open,
    .worker_new = g_worker_new,
    .request = g_request,
    .worker_free = g_worker_free,
    .stats = g_stats,
    .close = g_close,
};
