/*
 * ds.c - the per-data-source state of the pipeline: creation from parsed settings, the
 * health check, usage figures, and process-wide libcurl set-up.
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

static void curl_init_once(void) { curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }

static int curl_init(void)
{
    pthread_once(&curl_once, curl_init_once);
    return curl_ready ? 0 : CP_EINTERNAL;
}

int proxy_global_init(void)
{
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (!(v->features & CURL_VERSION_THREADSAFE))
        return curl_init(); /* no thread-safe lazy init: do it now, before any thread */
    return 0;
}

void proxy_global_cleanup(void)
{
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
    if ((rc = proxy__share_init(ds)) || (rc = split_url(ds))) {
        cp_err_set(err, rc, "out of memory");
        goto fail;
    }
    set_blob(&ds->ca_blob, &cfg->tls_ca_cert);
    set_blob(&ds->cert_blob, &cfg->tls_client_cert);
    set_blob(&ds->key_blob, &cfg->tls_client_key);
    struct auth_env aenv = {env->log, env->ctr ? env->ctr->authz : NULL, env->module_dir};
    if ((rc = auth_ds_new(cfg, &aenv, &ds->auth, err)))
        goto fail;
    struct cache_env cenv = {env->log, env->ctr ? &env->ctr->redis_errors : NULL,
                             env->ctr ? &env->ctr->evictions : NULL};
    if ((rc = cache_store_open(cfg, &cenv, &ds->store, err)))
        goto fail;
    ds->store_is_local = ds->store && !strcmp(cache_store_backend(ds->store), "memory");
    if (!(ds->flights = cache_flights_new())) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        goto fail;
    }
    *out = ds;
    return 0;
fail:
    proxy_ds_free(ds);
    return rc;
}

void proxy__ds_ref(struct proxy_ds *ds) { atomic_fetch_add(&ds->refs, 1); }

void proxy_ds_free(struct proxy_ds *ds)
{
    if (!ds || atomic_fetch_sub(&ds->refs, 1) != 1)
        return;
    cache_flights_free(ds->flights);
    cache_store_close(ds->store);
    auth_ds_free(ds->auth);
    proxy__share_cleanup(ds);
    free(ds->origin);
    free(ds->host);
    free(ds->base_path);
    cfg_ds_free(ds->cfg);
    free(ds);
}

const struct cfg_ds *proxy_ds_cfg(const struct proxy_ds *ds) { return ds->cfg; }

void proxy_cache_usage(struct proxy_ds *ds, uint64_t *entries, uint64_t *bytes)
{
    struct cache_usage u;
    cache_usage(ds->store, &u);
    *entries = u.entries;
    *bytes = u.bytes;
}

/* The health check needs the upstream's status only; its body is read and dropped. */
static int health_head(void *ctx, int status, const struct cache_header *h, size_t n)
{
    (void)h, (void)n;
    *(int *)ctx = status;
    return 0;
}

static int health_body(void *ctx, const void *p, size_t n)
{
    (void)ctx, (void)p, (void)n;
    return 0;
}

int proxy_check_health(struct proxy_ds *ds, int *ok, struct cp_buf *msg, struct cp_buf *details)
{
    const struct cfg_ds *cfg = ds->cfg;
    struct cp_err err = {0};
    struct auth_creds creds = {0};
    int hstatus = 0;
    char *path = NULL;
    *ok = 0;
    int64_t t0 = cp_mono_ns();

    size_t pl = strlen(ds->base_path) + strlen(cfg->health_path) + 1;
    path = malloc(pl);
    if (!path)
        return CP_ENOMEM;
    snprintf(path, pl, "%s%s", ds->base_path, cfg->health_path);
    struct auth_outgoing og = {NULL, "GET", path, NULL, 0, NULL, NULL, cp_now_ms() / 1000,
                               NULL, NULL};
    int rc = 0;
    if (cfg->auth_type == CFG_AUTH_FORWARD_OAUTH) {
        /* the user's token only exists on user calls: test reachability without it */
    } else {
        rc = auth_inject(ds->auth, &og, &creds, &err);
    }
    if (rc) {
        cp_buf_addf(msg, "Credentials could not be prepared: %s", cp_err_text(&err));
        goto out;
    }
    struct proxy__upstream_req rq = {"GET", path, NULL, 0, &creds, NULL, 0, cfg->timeout_ms,
                                     NULL, NULL};
    struct proxy__upstream_sink sk = {health_head, health_body, &hstatus};
    rc = proxy__fetch(ds, &rq, &sk, &err);
    int64_t ms = (cp_mono_ns() - t0) / 1000000;
    if (rc) {
        if (rc == CP_ETIMEDOUT)
            cp_buf_addf(msg, "Upstream %s did not answer GET %s within %lld s: check the URL "
                             "and the timeout",
                        ds->host, cfg->health_path, (long long)(cfg->timeout_ms / 1000));
        else
            cp_buf_addf(msg, "Upstream unreachable: %s. Check the URL, DNS, firewall and TLS "
                             "settings",
                        cp_err_text(&err));
        rc = 0;
        goto out;
    }
    if (hstatus == 401 || hstatus == 403) {
        cp_buf_addf(msg, "Upstream answered %d to GET %s: check the credentials (authType %s)",
                    hstatus, cfg->health_path, cfg_auth_type_name(cfg->auth_type));
        goto out;
    }
    if (hstatus < 200 || hstatus > 399) {
        cp_buf_addf(msg, "Upstream answered %d to GET %s: check the URL and healthPath",
                    hstatus, cfg->health_path);
        goto out;
    }
    if (ds->store) {
        struct cp_err cerr = {0};
        if (cache_ping(ds->store, &cerr) != 0) {
            cp_buf_addf(msg, "Upstream OK (%d in %lld ms), but the %s cache is unavailable: "
                             "%s. Calls still work, uncached",
                        hstatus, (long long)ms, cache_store_backend(ds->store),
                        cp_err_text(&cerr));
            goto out;
        }
    }
    *ok = 1;
    cp_buf_addf(msg, "Upstream OK (%d in %lld ms); cache: %s", hstatus, (long long)ms,
                cache_store_backend(ds->store));
out:
    if (details) {
        json_t *d = json_pack("{s:s,s:i,s:s,s:s}", "upstream", ds->host, "status", hstatus,
                              "cache", cache_store_backend(ds->store), "authType",
                              cfg_auth_type_name(cfg->auth_type));
        char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
        if (s)
            cp_buf_addstr(details, s);
        free(s);
        json_decref(d);
    }
    auth_creds_wipe(&creds);
    free(path);
    return rc;
}
