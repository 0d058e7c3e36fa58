/*
 * ds.c - the per-data-source state of the pipeline: creation from parsed settings (and the
 * loop it lives on), references and the free on its loop, the health check, usage figures,
 * and process-wide libcurl set-up.
 */
#include "proxy_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libcurl (and with it OpenSSL) is initialised when the first data source needs it, not at
 * start-up: a plugin that Grafana starts but nobody uses stays small. This build's libcurl
 * has a thread-safe curl_global_init (CURL_VERSION_THREADSAFE), checked at start. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ready;
static _Atomic unsigned next_loop;

static void curl_init_once(void) { curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }

static int curl_init(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_ready ? 0 : CP_EINTERNAL;
}

int proxy__no_env_proxy;

int proxy_global_init(void)
{
    /* libcurl reads these for every transfer unless CURLOPT_PROXY is set; read them once */
    static const char *const vars[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                       "ALL_PROXY"};
    proxy__no_env_proxy = 1;
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]) && *getenv(vars[i]))
            proxy__no_env_proxy = 0;
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (!(v->features & CURL_VERSION_THREADSAFE))
        return curl_init(); /* no thread-safe lazy init: do it now, before any thread */
    return 0;
}

void proxy_global_cleanup(void)
{
    proxy__live_forget_all();
    if (curl_ready)
        curl_global_cleanup();
}

/* Splits cfg->url into origin ("https://host:port"), host label and base path ("/v2"). */
static int split_url(struct proxy_ds *ds)
{
    const char *u = ds->cfg->url;
    const char *h = strstr(u, "://");
    h = h ? h + 3 : u;
    size_t hl = strcspn(h, "/");
    ds->origin = strndup(u, (size_t)(h - u) + hl);
    ds->host = strndup(h, hl);
    ds->base_path = strdup(h + hl);
    if (!ds->origin || !ds->host || !ds->base_path)
        return CP_ENOMEM;
    size_t bl = strlen(ds->base_path);
    while (bl && ds->base_path[bl - 1] == '/')
        ds->base_path[--bl] = 0;
    return 0;
}

static void set_blob(struct curl_blob *b, const struct cfg_secret *s)
{
    if (cfg_secret_isset(s)) {
        b->data = s->v;
        b->len = s->len;
        b->flags = CURL_BLOB_COPY;
    }
}

static void auth_hold(void *ctx, int delta)
{
    struct proxy_ds *ds = ctx;
    if (delta > 0)
        proxy__ds_ref(ds);
    else
        proxy_ds_free(ds);
}

/* The last of it, on its loop: the multi handles live there. */
static void ds_destroy(struct proxy_ds *ds)
{
    cache_flights_free(ds->flights);
    cache_store_close(ds->store);
    auth_ds_free(ds->auth);
    proxy__http_close(ds);
    free(ds->origin);
    free(ds->host);
    free(ds->base_path);
    cfg_ds_free(ds->cfg);
    free(ds);
}

static void ds_destroy_job(void *arg) { ds_destroy(arg); }

int proxy_ds_new(struct cfg_ds *cfg, const struct proxy_env *env, struct proxy_ds **out,
                 struct cp_err *err)
{
    *out = NULL;
    if (curl_init() != 0) {
        cfg_ds_free(cfg);
        return cp_err_set(err, CP_EINTERNAL, "libcurl could not be initialised");
    }
    struct proxy_ds *ds = calloc(1, sizeof *ds);
    int rc;
    if (!ds) {
        cfg_ds_free(cfg);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    atomic_init(&ds->refs, 1);
    ds->cfg = cfg;
    ds->env = *env;
    ds->loop = env->nloops ? env->loops[atomic_fetch_add(&next_loop, 1) % env->nloops] : NULL;
    if ((rc = split_url(ds))) {
        cp_err_set(err, rc, "out of memory");
        goto fail;
    }
    set_blob(&ds->ca_blob, &cfg->tls_ca_cert);
    set_blob(&ds->cert_blob, &cfg->tls_client_cert);
    set_blob(&ds->key_blob, &cfg->tls_client_key);
    struct auth_env aenv = {.log = env->log,
                            .decisions = env->ctr ? env->ctr->authz : NULL,
                            .module_dir = env->module_dir,
                            .loop = ds->loop,
                            .cpu = env->cpu,
                            .hold = auth_hold,
                            .hold_ctx = ds};
    if ((rc = auth_ds_new(cfg, &aenv, &ds->auth, err)))
        goto fail;
    struct cache_env cenv = {env->log, env->ctr ? &env->ctr->redis_errors : NULL,
                             env->ctr ? &env->ctr->evictions : NULL};
    if ((rc = cache_store_open(cfg, &cenv, &ds->store, err)))
        goto fail;
    ds->store_caps = cache_store_caps(ds->store);
    if (!(ds->flights = cache_flights_new())) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        goto fail;
    }
    *out = ds;
    return 0;
fail:
    ds_destroy(ds); /* never used on a loop yet */
    return rc;
}

void proxy__ds_ref(struct proxy_ds *ds) { atomic_fetch_add(&ds->refs, 1); }

void proxy_ds_free(struct proxy_ds *ds)
{
    if (!ds || atomic_fetch_sub(&ds->refs, 1) != 1)
        return;
    if (!ds->loop || cp_loop_is_current(ds->loop) || cp_loop_post(ds->loop, ds_destroy_job, ds))
        ds_destroy(ds); /* here, or the loop has stopped (its handles went with it) */
}

const struct cfg_ds *proxy_ds_cfg(const struct proxy_ds *ds) { return ds->cfg; }

struct ds_job {
    struct proxy_ds *ds;
    void (*fn)(void *arg);
    void *arg;
};

static void run_ds_job(void *arg)
{
    struct ds_job *j = arg;
    j->fn(j->arg);
    proxy_ds_free(j->ds);
    free(j);
}

int proxy__post(struct proxy_ds *ds, void (*fn)(void *arg), void *arg)
{
    struct ds_job *j = malloc(sizeof *j);
    if (!j)
        return CP_ENOMEM;
    proxy__ds_ref(ds);
    *j = (struct ds_job){ds, fn, arg};
    int rc = cp_loop_post(ds->loop, run_ds_job, j);
    if (rc) {
        atomic_fetch_sub(&ds->refs, 1); /* the caller still holds one */
        free(j);
    }
    return rc;
}

void proxy_cache_usage(struct proxy_ds *ds, uint64_t *entries, uint64_t *bytes)
{
    struct cache_usage u;
    cache_usage(ds->store, &u);
    *entries = u.entries;
    *bytes = u.bytes;
}

void proxy_upstream_usage(struct proxy_ds *ds, int *running, int *queued)
{
    *running = atomic_load(&ds->running);
    *queued = atomic_load(&ds->queued);
}

/* ---- health check --------------------------------------------------------------------------- */

struct health {
    struct proxy_ds *ds;
    void (*done)(void *ctx, int ok, const char *msg, const char *details);
    void *ctx;
    struct auth_outgoing og;
    struct auth_creds creds;
    char *path;
    struct proxy__xfer *x;
    int status;
    int fetch_rc;
    struct cp_err err;
    int64_t t0;
    int ok;
    struct cp_buf msg;
    int cache_rc;
    struct cp_err cache_err;
    char cache_where[200]; /* the cache's mode and the node the ping reached or tried */
};

static void health_finish(struct health *h)
{
    struct proxy_ds *ds = h->ds;
    const struct cfg_ds *cfg = ds->cfg;
    json_t *d = json_pack("{s:s,s:i,s:s,s:s}", "upstream", ds->host, "status", h->status,
                          "cache", cache_store_backend(ds->store), "authType",
                          cfg_auth_type_name(cfg->auth_type));
    char *details = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    h->done(h->ctx, h->ok, h->msg.p ? h->msg.p : "", details ? details : "{}");
    free(details);
    auth_creds_wipe(&h->creds);
    cp_buf_free(&h->msg);
    free(h->path);
    free(h);
    proxy_ds_free(ds);
}

static void ping_work(void *arg)
{
    struct health *h = arg;
    h->cache_rc = cache_ping(h->ds->store, h->cache_where, sizeof h->cache_where, &h->cache_err);
}

static void ping_done(void *arg)
{
    struct health *h = arg;
    struct proxy_ds *ds = h->ds;
    int64_t ms = (cp_mono_ns() - h->t0) / 1000000;
    if (h->cache_rc) {
        cp_buf_addf(&h->msg,
                    "Upstream OK (%d in %lld ms), but the %s cache (%s) is unavailable: "
                    "%s. Calls still work, uncached",
                    h->status, (long long)ms, cache_store_backend(ds->store), h->cache_where,
                    cp_err_text(&h->cache_err));
    } else {
        h->ok = 1;
        cp_buf_addf(&h->msg, "Upstream OK (%d in %lld ms); cache: %s", h->status, (long long)ms,
                    h->cache_where[0] ? h->cache_where : cache_store_backend(ds->store));
    }
    health_finish(h);
}

/* On the io pool: the ping may wait on Redis. */
static void ping_job(void *arg)
{
    struct health *h = arg;
    ping_work(h);
    if (proxy__post(h->ds, ping_done, h) != 0)
        ping_done(h);
}

static int health_head(void *ctx, int status, const struct cache_header *hd, size_t n,
                       int64_t length)
{
    (void)hd, (void)n, (void)length;
    ((struct health *)ctx)->status = status;
    return 0;
}

static int health_body(void *ctx, const void *p, size_t n)
{
    (void)ctx, (void)p, (void)n;
    return 0; /* the status is all the check needs */
}

static void health_fetched(void *ctx, int rc, const struct cp_err *err)
{
    struct health *h = ctx;
    struct proxy_ds *ds = h->ds;
    const struct cfg_ds *cfg = ds->cfg;
    if (rc == CP_ETIMEDOUT) {
        cp_buf_addf(&h->msg, "Upstream %s did not answer GET %s within %lld s: check the URL "
                             "and the timeout",
                    ds->host, cfg->health_path, (long long)(cfg->timeout_ms / 1000));
    } else if (rc) {
        cp_buf_addf(&h->msg, "Upstream unreachable: %s. Check the URL, DNS, firewall and TLS "
                             "settings",
                    cp_err_text(err));
    } else if (h->status == 401 || h->status == 403) {
        cp_buf_addf(&h->msg, "Upstream answered %d to GET %s: check the credentials (authType %s)",
                    h->status, cfg->health_path, cfg_auth_type_name(cfg->auth_type));
    } else if (h->status < 200 || h->status > 399) {
        cp_buf_addf(&h->msg, "Upstream answered %d to GET %s: check the URL and healthPath",
                    h->status, cfg->health_path);
    } else if (ds->store) {
        if (!(ds->store_caps & CACHE_CAP_NO_IO) && cp_pool_submit(ds->env.io, ping_job, h) == 0)
            return;
        ping_work(h);
        ping_done(h);
        return;
    } else {
        ping_done(h);
        return;
    }
    health_finish(h);
}

static void health_creds(void *arg, int rc, const struct cp_err *err)
{
    struct health *h = arg;
    struct proxy_ds *ds = h->ds;
    if (rc) {
        cp_buf_addf(&h->msg, "Credentials could not be prepared: %s", cp_err_text(err));
        health_finish(h);
        return;
    }
    struct proxy__upstream_req rq = {.method = "GET",
                                     .path_query = h->path,
                                     .creds = &h->creds,
                                     .timeout_ms = ds->cfg->timeout_ms};
    struct proxy__upstream_sink sk = {health_head, health_body, health_fetched, h};
    struct cp_err e = {0};
    if (proxy__fetch_start(ds, &rq, &sk, &h->x, &e) != 0)
        health_fetched(h, e.code, &e);
}

static void health_start(void *arg)
{
    struct health *h = arg;
    struct proxy_ds *ds = h->ds;
    h->t0 = cp_mono_ns();
    h->og = (struct auth_outgoing){.method = "GET", .path_query = h->path,
                                   .now_unix = cp_now_ms() / 1000};
    if (ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH) {
        /* the user's token only exists on user calls: test reachability without it */
        health_creds(h, 0, NULL);
        return;
    }
    auth_inject_async(ds->auth, &h->og, &h->creds, health_creds, h);
}

int proxy_check_health(struct proxy_ds *ds,
                       void (*done)(void *ctx, int ok, const char *msg, const char *details),
                       void *ctx)
{
    struct health *h = calloc(1, sizeof *h);
    size_t pl = strlen(ds->base_path) + strlen(ds->cfg->health_path) + 1;
    if (!h || !(h->path = malloc(pl))) {
        free(h);
        return CP_ENOMEM;
    }
    snprintf(h->path, pl, "%s%s", ds->base_path, ds->cfg->health_path);
    proxy__ds_ref(ds);
    h->ds = ds;
    h->done = done;
    h->ctx = ctx;
    int rc = proxy__post(ds, health_start, h);
    if (rc) {
        free(h->path);
        free(h);
        proxy_ds_free(ds);
    }
    return rc;
}
