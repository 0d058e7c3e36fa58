/*
 * pipeline.c - one upstream call through the cache: eligibility, key, lookup, freshness,
 * coalescing (in process and across processes), the upstream fetch streamed to the client
 * while it is captured for the cache, stale serving, and background revalidation.
 *
 * Authorization has already happened when proxy__run is called: a cached answer is never
 * served to someone the rules deny.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define STREAM_LOCK_WAIT_MS 5000 /* bounded wait on another process's fetch */
#define STREAM_LOCK_POLL_MS 20

static const char *const result_names[] = {"HIT", "MISS", "STALE", "BYPASS"};

static void count(struct proxy_ds *ds, enum cache_kind kind, int result)
{
    _Atomic uint64_t *c = result == PROXY_HIT      ? &ds->hits
                          : result == PROXY_MISS   ? &ds->misses
                          : result == PROXY_STALE  ? &ds->stale
                                                   : &ds->bypass;
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
    if (ds->env.ctr)
        atomic_fetch_add_explicit(&ds->env.ctr->cache[kind][result], 1, memory_order_relaxed);
}

/* A cache backend failure: the call goes on to the upstream (fail open). The backend logs
 * the start and end of an outage and counts every failure. */
static void backend_failed(struct proxy_ds *ds, const struct cp_err *err)
{
    struct cp_kv kv[] = {CP_KV_S("error", cp_err_text(err)), CP_KV_S("dsUid", ds->cfg->uid)};
    cp_log(ds->env.log, CP_LOG_DEBUG, "cache backend failed; going to the upstream", kv, 2);
}

int64_t proxy__ttl_for(const struct proxy_ds *ds, enum cache_kind kind, const char *path,
                       int64_t override_ms)
{
    const struct cfg_cache *c = &ds->cfg->cache;
    if (override_ms >= 0)
        return override_ms;
    for (size_t i = 0; i < c->nrules; i++)
        if (auth_glob_any(&c->rules[i].paths, path))
            return c->rules[i].ttl_ms;
    return kind == CACHE_KIND_QUERY ? c->query_ttl_ms : c->resource_ttl_ms;
}

/* ---- answering from an entry ------------------------------------------------------------- */

static int send_entry(const struct proxy_sink *sink, const struct cache_entry *e, int result,
                      int64_t now, int not_modified)
{
    struct proxy_header hs[CP_MAX_OUT_HEADERS];
    size_t n = 0;
    char age[32];
    for (size_t i = 0; i < e->nheaders && n < CP_MAX_OUT_HEADERS - 2; i++)
        hs[n++] = (struct proxy_header){e->headers[i].name, e->headers[i].value};
    hs[n++] = (struct proxy_header){"X-Cache", result_names[result]};
    int64_t a = (now - e->stored_ms) / 1000;
    snprintf(age, sizeof age, "%lld", (long long)(a < 0 ? 0 : a));
    hs[n++] = (struct proxy_header){"Age", age};
    if (sink->start(sink->ctx, not_modified ? 304 : e->status, hs, n) != 0)
        return CP_ECANCELED;
    if (not_modified || !e->body_len)
        return 0;
    return sink->body(sink->ctx, e->body, e->body_len) ? CP_ECANCELED : 0;
}

/* True when the client's If-None-Match names the entry's ETag (weak comparison). */
static int client_has_it(const struct proxy__call *c, const struct cache_entry *e)
{
    if (!e->etag || e->status != 200)
        return 0;
    const char *inm = proxy__header(c->fwd, c->nfwd, "If-None-Match");
    if (!inm)
        return 0;
    const char *tag = e->etag;
    if (!strncmp(tag, "W/", 2))
        tag += 2;
    size_t tl = strlen(tag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (!strncmp(p, "W/", 2))
            p += 2;
        size_t l = strcspn(p, ",");
        while (l && p[l - 1] == ' ')
            l--;
        if (l == tl && !strncmp(p, tag, tl))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* ---- the fetch: stream to the client, capture for the cache -------------------------------- */

struct tee {
    struct proxy_ds *ds;
    const struct proxy__call *c;
    const struct proxy_sink *sink; /* NULL: background refresh, nobody to answer */
    int result;                    /* X-Cache value for the client */
    int64_t ttl_ms;
    int cacheable; /* still a candidate for the cache */
    int keep;      /* the answer is captured: for the cache, or to hand to waiters (a 5xx) */
    int hold;      /* a 5xx with a stale fallback: do not answer it, serve the stale entry */
    int have_stale;
    int started;
    int status;
    int64_t stored_ms, swr_ms, sie_ms;
    struct cache_header *h;
    size_t nh;
    struct cp_buf body;
    int deferred;      /* a transformed call: the answer is whole before anything is sent */
    struct cp_buf raw; /* its upstream answer */
    struct cache_header *rh; /* and the upstream's headers, for an untransformed answer */
    size_t nrh;
};

/* An answer meant for its caller alone (a cookie, Cache-Control: private): never handed to
 * anyone else, not even a concurrent identical call. */
static int per_user_answer(const struct cache_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(h[i].name, "Set-Cookie"))
            return 1;
        if (!strcasecmp(h[i].name, "Cache-Control")) {
            struct cache_control ctl;
            cache_control_parse(h[i].value, &ctl);
            if (ctl.private_)
                return 1;
        }
    }
    return 0;
}

static int response_cacheable(struct tee *t, int status, const struct cache_header *h,
                              size_t n)
{
    const struct cfg_cache *cc = &t->ds->cfg->cache;
    int ok = (status >= 200 && status <= 299 && status != 206) ||
             (status == 404 && cc->cache_404_ms > 0);
    if (!ok)
        return 0;
    if (status == 404)
        t->ttl_ms = t->ttl_ms < cc->cache_404_ms ? t->ttl_ms : cc->cache_404_ms;
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(h[i].name, "Set-Cookie"))
            return 0; /* a per-user answer: never shared */
        if (!strcasecmp(h[i].name, "Vary") && strchr(h[i].value, '*'))
            return 0;
        if (cc->respect_cache_control && !strcasecmp(h[i].name, "Cache-Control")) {
            struct cache_control ctl;
            cache_control_parse(h[i].value, &ctl);
            if (ctl.no_store || ctl.private_)
                return 0;
            if (ctl.s_maxage_ms >= 0)
                t->ttl_ms = ctl.s_maxage_ms;
            else if (ctl.max_age_ms >= 0)
                t->ttl_ms = ctl.max_age_ms;
            if (ctl.no_cache)
                t->ttl_ms = 0; /* must revalidate every time: not worth storing */
        }
    }
    return t->ttl_ms > 0;
}

/* Response headers for the client: upstream ones minus those we set ourselves. */
static size_t client_headers(const struct cache_header *h, size_t n, const char *xcache,
                             struct proxy_header *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < CP_MAX_OUT_HEADERS - 1; i++) {
        if (!strcasecmp(h[i].name, "X-Cache") || !strcasecmp(h[i].name, "Age"))
            continue;
        out[k++] = (struct proxy_header){h[i].name, h[i].value};
    }
    out[k++] = (struct proxy_header){"X-Cache", xcache};
    return k;
}

static int tee_head(void *ctx, int status, const struct cache_header *h, size_t n)
{
    struct tee *t = ctx;
    t->status = status;
    t->stored_ms = cp_now_ms();
    if (t->cacheable)
        t->cacheable = response_cacheable(t, status, h, n);
    /* a failing upstream's answer is the same for every waiter of this call: keep it for them */
    t->keep = t->cacheable || (status >= 500 && !per_user_answer(h, n));
    if (status >= 500 && t->have_stale)
        t->hold = 1; /* answered from the stale entry instead */
    if (t->deferred) {
        t->raw.max = (size_t)t->ds->cfg->max_response_bytes;
        t->rh = calloc(n ? n : 1, sizeof *t->rh);
        for (size_t i = 0; t->rh && i < n; i++) {
            t->rh[i].name = strdup(h[i].name);
            t->rh[i].value = strdup(h[i].value);
            t->nrh = i + 1;
            if (!t->rh[i].name || !t->rh[i].value)
                return CP_ENOMEM;
        }
        return t->rh ? 0 : CP_ENOMEM;
    }
    if (t->keep) {
        /* keep the headers for the entry (minus Age/X-Cache) */
        t->h = calloc(n ? n : 1, sizeof *t->h);
        if (!t->h) {
            t->keep = t->cacheable = 0;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (!strcasecmp(h[i].name, "X-Cache") || !strcasecmp(h[i].name, "Age"))
                    continue;
                t->h[t->nh].name = strdup(h[i].name);
                t->h[t->nh].value = strdup(h[i].value);
                if (!t->h[t->nh].name || !t->h[t->nh].value) {
                    free(t->h[t->nh].name);
                    free(t->h[t->nh].value);
                    t->keep = t->cacheable = 0;
                    break;
                }
                t->nh++;
            }
        }
        t->body.max = (size_t)t->ds->cfg->cache.max_entry_bytes;
    }
    if (!t->sink || t->hold)
        return 0;
    struct proxy_header out[CP_MAX_OUT_HEADERS];
    size_t k = client_headers(h, n, result_names[t->result], out);
    t->started = 1;
    return t->sink->start(t->sink->ctx, status, out, k);
}

static int tee_body(void *ctx, const void *p, size_t n)
{
    struct tee *t = ctx;
    if (t->deferred)
        return cp_buf_add(&t->raw, p, n) ? CP_ERESPBIG : 0;
    if (t->keep && cp_buf_add(&t->body, p, n) != 0) {
        t->keep = t->cacheable = 0; /* larger than maxEntryBytes: answer it, do not keep it */
        cp_buf_free(&t->body);
    }
    if (!t->sink || t->hold)
        return 0;
    return t->sink->body(t->sink->ctx, p, n);
}

static void free_headers(struct cache_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void tee_dispose(struct tee *t)
{
    free_headers(t->h, t->nh);
    free_headers(t->rh, t->nrh);
    cp_buf_free(&t->body);
    cp_buf_free(&t->raw);
}

/* After a deferred fetch: transforms a 2xx answer (the kept form replaces what the tee
 * captured for the cache) and answers the caller, with the transform or the raw answer.
 * Sets *transformed. */
static int finish_deferred(struct tee *t, int *transformed)
{
    const struct proxy__call *c = t->c;
    struct cp_buf mine = {0}, keep = {0};
    *transformed = 0;
    if (t->status >= 200 && t->status <= 299 &&
        c->transform(c->transform_arg, t->raw.p ? t->raw.p : "", t->raw.len, &mine, &keep) == 0) {
        *transformed = 1;
        cp_buf_free(&t->body);
        t->body = keep;
        if (t->body.len > (size_t)t->ds->cfg->cache.max_entry_bytes)
            t->cacheable = 0;
    } else {
        cp_buf_free(&keep);
        t->cacheable = 0;
    }
    int rc = 0;
    if (t->sink) {
        struct proxy_header out[CP_MAX_OUT_HEADERS];
        size_t k = *transformed ? 0 : client_headers(t->rh, t->nrh, result_names[t->result], out);
        if (*transformed)
            out[k++] = (struct proxy_header){"X-Cache", result_names[t->result]};
        const struct cp_buf *b = *transformed ? &mine : &t->raw;
        t->started = 1;
        rc = t->sink->start(t->sink->ctx, t->status, out, k);
        if (!rc && b->len)
            rc = t->sink->body(t->sink->ctx, b->p, b->len);
    }
    cp_buf_free(&mine);
    return rc ? CP_ECANCELED : 0;
}

static struct cache_entry *tee_entry(struct tee *t)
{
    const struct cfg_cache *cc = &t->ds->cfg->cache;
    struct cache_entry_spec sp = {t->status,  t->stored_ms, t->ttl_ms, cc->swr_ms, cc->sie_ms,
                                  t->c->path, t->h,         t->nh,     t->body.p, t->body.len};
    return cache_entry_new(&sp);
}

/* What the leader of a call hands the calls waiting for it (cache_flight_done): the entry it
 * stored, the upstream's error answer, or the error that ended the call; RETRY when the
 * answer was its caller's alone or the caller went away. */
static void leader_outcome(struct tee *t, int rc, const struct cp_err *err,
                           struct cache_entry *stored, int transformed, struct cache_outcome *o)
{
    memset(o, 0, sizeof *o);
    o->kind = CACHE_OUTCOME_RETRY;
    if (rc == CP_ECANCELED)
        return;
    if (rc) {
        o->kind = CACHE_OUTCOME_ERROR;
        o->code = err->code ? err->code : rc;
        snprintf(o->msg, sizeof o->msg, "%s", cp_err_text(err));
        return;
    }
    if (stored) {
        o->kind = CACHE_OUTCOME_ANSWER;
        o->e = cache_entry_ref(stored);
        o->transformed = transformed;
        return;
    }
    if (t->status < 500)
        return;
    /* an upstream error answer: the same for everyone, kept whole, else as an error */
    const struct cache_header *h = t->deferred ? t->rh : t->h;
    size_t nh = t->deferred ? t->nrh : t->nh;
    const struct cp_buf *b = t->deferred ? &t->raw : &t->body;
    if (t->keep && b->len <= (size_t)t->ds->cfg->cache.max_entry_bytes) {
        struct cache_entry_spec sp = {t->status, t->stored_ms, 0,  0,    0,
                                      t->c->path, h,           nh, b->p, b->len};
        if ((o->e = cache_entry_new(&sp))) {
            o->kind = CACHE_OUTCOME_ANSWER;
            o->failed = 1;
            return;
        }
    }
    o->kind = CACHE_OUTCOME_ERROR;
    o->code = CP_EUPSTREAM;
    snprintf(o->msg, sizeof o->msg, "upstream %s answered %d", t->ds->host, t->status);
}

/* Builds the upstream request (credentials included) and fetches it through the tee. */
static int fetch(struct proxy_ds *ds, const struct proxy__call *c, struct tee *t,
                 struct cp_err *err)
{
    struct auth_creds local = {0};
    struct auth_creds *creds = c->creds ? c->creds : &local;
    auth_creds_wipe(creds);
    struct cp_buf pq = {0};
    char *enc = proxy__path_encode(c->path);
    int rc = enc ? 0 : CP_ENOMEM;
    if (!rc)
        rc = cp_buf_addf(&pq, "%s%s%s%s", ds->base_path, enc, c->query && *c->query ? "?" : "",
                         c->query ? c->query : "");
    free(enc);
    if (rc) {
        cp_buf_free(&pq);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    struct auth_outgoing og = {c->user,           c->method,        pq.p,
                               c->body,           c->body_len,      c->fwd_authorization,
                               c->fwd_id_token,   cp_now_ms() / 1000, c->cancelled,
                               c->cancel_ctx};
    rc = auth_inject(ds->auth, &og, creds, err);
    if (!rc) {
        struct proxy__upstream_req rq = {.method = c->method,
                                         .path_query = pq.p,
                                         .headers = c->fwd,
                                         .nheaders = c->nfwd,
                                         .creds = creds,
                                         .body = c->body,
                                         .body_len = c->body_len,
                                         .timeout_ms = ds->cfg->timeout_ms,
                                         .cancelled = c->cancelled,
                                         .cancel_ctx = c->cancel_ctx};
        struct proxy__upstream_sink sk = {tee_head, tee_body, t};
        rc = proxy__fetch(ds, &rq, &sk, err);
    }
    auth_creds_wipe(&local);
    cp_buf_free(&pq);
    return rc;
}

/* ---- background revalidation (staleWhileRevalidate) ---------------------------------------- */

struct refresh_job {
    struct proxy_ds *ds;
    struct cache_key key;
    struct proxy__call c;
    struct auth_creds creds;
    struct cp_user user;
    struct proxy_header *fwd;
    char *strings; /* every string of the job, in one block */
};

static int job_stopping(void *ctx)
{
    struct refresh_job *j = ctx;
    return j->ds->env.stopping && atomic_load(j->ds->env.stopping);
}

static void refresh_run(void *arg)
{
    struct refresh_job *j = arg;
    struct proxy_ds *ds = j->ds;
    struct tee t = {0};
    struct cp_err err = {0};
    t.ds = ds;
    t.c = &j->c;
    t.cacheable = 1;
    t.ttl_ms = proxy__ttl_for(ds, j->c.kind, j->c.path, j->c.ttl_override_ms);
    t.deferred = j->c.transform != NULL;
    int rc = fetch(ds, &j->c, &t, &err);
    int transformed = 0;
    if (!rc && t.deferred)
        finish_deferred(&t, &transformed);
    struct cache_entry *e = NULL;
    if (!rc && t.cacheable && (e = tee_entry(&t))) {
        struct cp_err serr = {0};
        if (cache_set(ds->store, &j->key, e, &serr) != 0)
            backend_failed(ds, &serr);
    } else if (rc && rc != CP_ECANCELED) {
        cp_log(ds->env.log, CP_LOG_WARN, "background refresh failed; stale answer kept",
               (struct cp_kv[]){CP_KV_S("error", cp_err_text(&err)),
                                CP_KV_S("dsUid", ds->cfg->uid)},
               2);
    }
    struct cache_outcome o;
    leader_outcome(&t, rc, &err, e, transformed, &o);
    cache_flight_done(ds->flights, &j->key, &o);
    cache_outcome_dispose(&o);
    cache_entry_unref(e);
    tee_dispose(&t);
    auth_creds_wipe(&j->creds);
    free(j->fwd);
    free(j->strings);
    free(j);
    proxy_ds_free(ds);
}

/* Copies what a refresh needs out of the caller's request; starts it unless one is running. */
static void refresh_start(struct proxy_ds *ds, const struct cache_key *k,
                          const struct proxy__call *c)
{
    struct cache_outcome none;
    /* forwardOAuth: the user's token cannot be kept for a later call: no background refresh,
     * the next request after expiry fetches */
    if (ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH)
        return;
    if (!ds->env.pool || cache_flight_join(ds->flights, k, 0, &none) != 1) {
        cache_outcome_dispose(&none);
        return; /* someone is already fetching it */
    }
    struct refresh_job *j = calloc(1, sizeof *j);
    struct cp_buf sb = {0};
    const char *user_strs[3] = {c->user && c->user->login ? c->user->login : "",
                                c->user && c->user->email ? c->user->email : "",
                                c->user && c->user->name ? c->user->name : ""};
    size_t offs[64];
    size_t no = 0;
    int rc = j ? 0 : CP_ENOMEM;
    /* strings: method, path, query, 3 user strings, the transform's recipe, then name/value
     * of each header */
    const char *fixed[7] = {c->method,    c->path,      c->query ? c->query : "",
                            user_strs[0], user_strs[1], user_strs[2],
                            c->transform_arg ? c->transform_arg : ""};
    size_t nf = c->nfwd < 28 ? c->nfwd : 28;
    for (size_t i = 0; i < 7 && !rc; i++) {
        offs[no++] = sb.len;
        rc = cp_buf_add(&sb, fixed[i], strlen(fixed[i]) + 1);
    }
    for (size_t i = 0; i < nf && !rc; i++) {
        offs[no++] = sb.len;
        rc = cp_buf_add(&sb, c->fwd[i].name, strlen(c->fwd[i].name) + 1);
        offs[no++] = sb.len;
        if (!rc)
            rc = cp_buf_add(&sb, c->fwd[i].value, strlen(c->fwd[i].value) + 1);
    }
    if (!rc && nf && !(j->fwd = calloc(nf, sizeof *j->fwd)))
        rc = CP_ENOMEM;
    if (rc) {
        cp_buf_free(&sb);
        if (j)
            free(j->fwd);
        free(j);
        cache_flight_done(ds->flights, k, NULL);
        return;
    }
    j->strings = cp_buf_take(&sb, NULL);
    j->ds = ds;
    j->key = *k;
    j->c = *c;
    j->c.method = j->strings + offs[0];
    j->c.path = j->strings + offs[1];
    j->c.query = j->strings + offs[2];
    j->user = c->user ? *c->user : (struct cp_user){0};
    j->user.login = j->strings + offs[3];
    j->user.email = j->strings + offs[4];
    j->user.name = j->strings + offs[5];
    j->c.user = &j->user;
    j->c.transform_arg = c->transform ? j->strings + offs[6] : NULL;
    for (size_t i = 0; i < nf; i++)
        j->fwd[i] = (struct proxy_header){j->strings + offs[7 + 2 * i],
                                          j->strings + offs[8 + 2 * i]};
    j->c.fwd = j->fwd;
    j->c.nfwd = nf;
    j->c.body = NULL; /* only bodiless (GET/HEAD-like) calls are revalidated */
    j->c.body_len = 0;
    j->c.fwd_authorization = NULL;
    j->c.fwd_id_token = NULL;
    j->c.cancelled = job_stopping;
    j->c.cancel_ctx = j;
    j->c.creds = &j->creds;
    proxy__ds_ref(ds);
    if (cp_pool_submit(ds->env.pool, refresh_run, j) != 0) {
        proxy_ds_free(ds);
        cache_flight_done(ds->flights, k, NULL);
        free(j->fwd);
        free(j->strings);
        free(j);
    }
}

/* ---- the call ---------------------------------------------------------------------------- */

/* Uncached: stream the upstream answer straight through. */
static int run_bypass(struct proxy_ds *ds, const struct proxy__call *c,
                      const struct proxy_sink *sink, int *result, struct cp_err *err)
{
    struct tee t = {0};
    t.ds = ds;
    t.c = c;
    t.sink = sink;
    t.result = PROXY_BYPASS;
    *result = PROXY_BYPASS;
    count(ds, c->kind, PROXY_BYPASS);
    int rc = fetch(ds, c, &t, err);
    tee_dispose(&t);
    if (rc && t.started)
        return rc; /* broken after the answer started: nothing more to say */
    return rc ? rc : 0;
}

/* Waits for another process's fetch of k (Redis lock held elsewhere), polling the store. */
static struct cache_entry *wait_other_process(struct proxy_ds *ds, const struct cache_key *k,
                                              const struct proxy__call *c)
{
    int64_t limit = ds->cfg->timeout_ms < STREAM_LOCK_WAIT_MS ? ds->cfg->timeout_ms
                                                              : STREAM_LOCK_WAIT_MS;
    int64_t deadline = cp_mono_ns() + limit * 1000000;
    while (cp_mono_ns() < deadline) {
        struct timespec ts = {0, STREAM_LOCK_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (c->cancelled && c->cancelled(c->cancel_ctx))
            return NULL;
        struct cache_entry *e = NULL;
        struct cp_err err;
        if (cache_get(ds->store, k, &e, &err) != 0)
            return NULL;
        if (e && cache_entry_freshness(e, cp_now_ms()) == CACHE_FRESH)
            return e;
        cache_entry_unref(e);
        /* the other process is done: take what it stored (it stores before it unlocks), or
         * nothing when its answer was not to be cached */
        if (cache_lock_held(ds->store, k) == 0) {
            e = NULL;
            if (cache_get(ds->store, k, &e, &err) == 0 && e &&
                cache_entry_freshness(e, cp_now_ms()) == CACHE_FRESH)
                return e;
            cache_entry_unref(e);
            return NULL;
        }
    }
    return NULL;
}

/* Whether the call may use the cache and, when it may, its key. */
static int cacheable_key(struct proxy_ds *ds, const struct proxy__call *c, int64_t *ttl,
                         struct cache_key *key)
{
    const struct cfg_cache *cc = &ds->cfg->cache;
    enum cfg_scope scope = c->scope_override >= 0 ? (enum cfg_scope)c->scope_override : cc->scope;
    if (ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH)
        scope = CFG_SCOPE_USER;
    *ttl = proxy__ttl_for(ds, c->kind, c->path, c->ttl_override_ms);
    int has_user = c->user && c->user->present && c->user->login && *c->user->login;
    if (!ds->store || *ttl <= 0 || !cfg_strlist_has_ci(&cc->methods, c->method) ||
        (scope == CFG_SCOPE_USER && !has_user))
        return 0;
    struct cache_key_input ki = {ds->cfg->key_id, ds->cfg->fingerprint, c->kind, c->method,
                                 c->path,      c->query,            c->body, c->body_len,
                                 NULL,         0,                   scope,
                                 has_user ? c->user->login : NULL, c->user ? c->user->org_id : 0};
    struct cache_header vary[CP_MAX_FWD_HEADERS];
    size_t nv = 0;
    for (size_t i = 0; i < c->nfwd && nv < CP_MAX_FWD_HEADERS; i++)
        if (strcasecmp(c->fwd[i].name, "If-None-Match") &&
            strcasecmp(c->fwd[i].name, "If-Modified-Since"))
            vary[nv++] = (struct cache_header){(char *)c->fwd[i].name, (char *)c->fwd[i].value};
    ki.vary = vary;
    ki.nvary = nv;
    ki.variant = c->transform ? c->transform_arg : NULL;
    return cache_key_derive(&ki, key) == 0;
}

int proxy__try_hit(struct proxy_ds *ds, const struct proxy__call *c,
                   const struct proxy_sink *sink, size_t max_body)
{
    int64_t ttl;
    struct cache_key key;
    struct cache_entry *e = NULL;
    struct cp_err err;
    if (c->refresh || !ds->store_is_local || !cacheable_key(ds, c, &ttl, &key) ||
        cache_get(ds->store, &key, &e, &err) != 0 || !e)
        return 0;
    int64_t now = cp_now_ms();
    int rc = 0;
    if (e->body_len <= max_body && cache_entry_freshness(e, now) == CACHE_FRESH) {
        count(ds, c->kind, PROXY_HIT);
        rc = send_entry(sink, e, PROXY_HIT, now, client_has_it(c, e));
        rc = rc ? rc : 1;
    }
    cache_entry_unref(e);
    return rc;
}

static void count_coalesced(struct proxy_ds *ds)
{
    atomic_fetch_add(&ds->coalesced, 1);
    if (ds->env.ctr)
        atomic_fetch_add(&ds->env.ctr->coalesced, 1);
}

/* Answers a call that waited for an identical one (joined: 0 with its leader's outcome, or
 * CP_ETIMEDOUT): the shared answer, the stale entry when the upstream failed and
 * staleIfError allows one, or the shared error. */
static int waiter_answer(struct proxy_ds *ds, const struct proxy__call *c,
                         const struct proxy_sink *sink, int joined,
                         const struct cache_outcome *o, struct cache_entry *stale, int *result,
                         int *transformed, struct cp_err *err)
{
    int64_t now = cp_now_ms();
    if (joined == 0 && o->kind == CACHE_OUTCOME_ANSWER && !o->failed) {
        count_coalesced(ds);
        *result = PROXY_HIT;
        *transformed = o->transformed;
        count(ds, c->kind, PROXY_HIT);
        return send_entry(sink, o->e, PROXY_HIT, now, client_has_it(c, o->e));
    }
    if (stale) { /* the upstream failed for the leader: staleIfError, per call */
        *result = PROXY_STALE;
        *transformed = c->transform != NULL;
        count(ds, c->kind, PROXY_STALE);
        return send_entry(sink, stale, PROXY_STALE, now, 0);
    }
    *result = PROXY_MISS;
    count(ds, c->kind, PROXY_MISS);
    if (joined == 0 && o->kind == CACHE_OUTCOME_ANSWER) {
        count_coalesced(ds);
        *transformed = o->transformed;
        return send_entry(sink, o->e, PROXY_MISS, now, 0);
    }
    if (joined == 0)
        return cp_err_set(err, o->code, "%s", o->msg);
    return cp_err_set(err, CP_ETIMEDOUT, "an identical upstream call did not finish within "
                                         "%lld s", (long long)(ds->cfg->timeout_ms / 1000 + 1));
}

int proxy__run(struct proxy_ds *ds, const struct proxy__call *c, const struct proxy_sink *sink,
               int *result, int *transformed, struct cp_err *err)
{
    int64_t ttl;
    struct cache_key key;
    int ignored;
    if (!transformed)
        transformed = &ignored;
    *transformed = 0;
    if (!cacheable_key(ds, c, &ttl, &key))
        return run_bypass(ds, c, sink, result, err);

    int64_t now = cp_now_ms();
    struct cache_entry *e = NULL, *stale = NULL;
    if (!c->refresh) {
        struct cp_err berr = {0};
        if (cache_get(ds->store, &key, &e, &berr) != 0) {
            backend_failed(ds, &berr);
            e = NULL;
        }
        if (e) {
            /* a query reader's own lifetime bounds what it accepts (cacheTtl is per query) */
            enum cache_freshness f =
                cache_entry_freshness_for(e, now, c->kind == CACHE_KIND_QUERY ? ttl : -1);
            if (f == CACHE_FRESH || f == CACHE_STALE_SWR) {
                int r = f == CACHE_FRESH ? PROXY_HIT : PROXY_STALE;
                *result = r;
                *transformed = c->transform != NULL;
                count(ds, c->kind, r);
                if (f == CACHE_STALE_SWR && !c->body_len)
                    refresh_start(ds, &key, c);
                int rc = send_entry(sink, e, r, now, client_has_it(c, e));
                cache_entry_unref(e);
                return rc;
            }
            if (f == CACHE_STALE_SIE)
                stale = e;
            else
                cache_entry_unref(e);
        }
    }

    /* a miss: one fetch per key in this process; the others wait for its outcome */
    int lead;
    for (;;) {
        struct cache_outcome o;
        if (ds->env.ctr)
            atomic_fetch_add(&ds->env.ctr->waiting, 1);
        lead = cache_flight_join(ds->flights, &key, ds->cfg->timeout_ms + 1000, &o);
        if (ds->env.ctr)
            atomic_fetch_sub(&ds->env.ctr->waiting, 1);
        if (lead == 1)
            break;
        if (lead == 0 && o.kind == CACHE_OUTCOME_RETRY)
            continue; /* the leader's answer was its own: the next one of us fetches */
        int rc = waiter_answer(ds, c, sink, lead, &o, stale, result, transformed, err);
        cache_outcome_dispose(&o);
        cache_entry_unref(stale);
        return rc;
    }

    int locked = -1;
    if (!c->refresh) {
        locked = cache_lock(ds->store, &key, ds->cfg->timeout_ms + 1000);
        if (locked == 0) {
            /* another process is fetching it: wait for its entry, bounded */
            struct cache_entry *got = wait_other_process(ds, &key, c);
            if (got) {
                count_coalesced(ds);
                struct cache_outcome o = {.kind = CACHE_OUTCOME_ANSWER,
                                          .e = got,
                                          .transformed = c->transform != NULL};
                cache_flight_done(ds->flights, &key, &o);
                *result = PROXY_HIT;
                *transformed = c->transform != NULL;
                count(ds, c->kind, PROXY_HIT);
                int rc = send_entry(sink, got, PROXY_HIT, cp_now_ms(), client_has_it(c, got));
                cache_entry_unref(got);
                cache_entry_unref(stale);
                return rc;
            }
        }
    }

    struct tee t = {0};
    t.ds = ds;
    t.c = c;
    t.sink = sink;
    t.result = PROXY_MISS;
    t.cacheable = 1;
    t.ttl_ms = ttl;
    t.have_stale = stale != NULL;
    t.deferred = c->transform != NULL;
    int rc = fetch(ds, c, &t, err);
    if (!rc && t.deferred && !t.hold)
        rc = finish_deferred(&t, transformed);
    struct cache_entry *fresh = NULL;
    if (!rc && !t.hold && t.cacheable && (fresh = tee_entry(&t))) {
        struct cp_err serr = {0};
        if (cache_set(ds->store, &key, fresh, &serr) != 0)
            backend_failed(ds, &serr);
    }
    if (locked == 1)
        cache_unlock(ds->store, &key);
    struct cache_outcome out;
    leader_outcome(&t, rc, err, fresh, *transformed, &out);
    cache_flight_done(ds->flights, &key, &out);
    cache_outcome_dispose(&out);

    int served_stale = stale && (t.hold || (rc && rc != CP_ECANCELED && !t.started));
    if (served_stale) {
        *result = PROXY_STALE;
        count(ds, c->kind, PROXY_STALE);
        cp_log(ds->env.log, CP_LOG_WARN, "upstream failing: serving a stale answer",
               (struct cp_kv[]){CP_KV_S("error", rc ? cp_err_text(err) : "5xx answer"),
                                CP_KV_I("status", t.status), CP_KV_S("dsUid", ds->cfg->uid)},
               3);
        rc = send_entry(sink, stale, PROXY_STALE, cp_now_ms(), 0);
        *transformed = c->transform != NULL;
    } else {
        *result = PROXY_MISS;
        count(ds, c->kind, PROXY_MISS);
    }
    cache_entry_unref(fresh);
    cache_entry_unref(stale);
    tee_dispose(&t);
    return rc;
}
