/*
 * call.c - one call through the pipeline, as a state machine on the instance's event loop:
 *
 *   admission -> authorization -> lookup -> (wait for an identical call | lock across
 *   processes) -> credentials -> upstream transfer (streamed to the client while it is kept
 *   for the cache) -> transform (queries: the frame) -> store -> answer
 *
 * Each step either finishes or arms a callback (an upstream transfer, a timer, a Redis
 * command or a frame on a pool); no step waits. Authorization has happened before the cache
 * is consulted: a cached answer is never served to someone the rules deny.
 *
 * Coalescing: the first call of a key leads; the others wait in its flight and share its
 * outcome (answer, error answer or failure); staleIfError applies per waiting call.
 * Background refreshes (staleWhileRevalidate) are calls without a front.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CHUNK (256 * 1024)         /* answers from memory are handed over in pieces */
#define STREAM_LOCK_WAIT_MS 5000   /* bounded wait on another process's fetch */
#define STREAM_LOCK_POLL_MS 20
#define DETACHED_CHECK_MS 50
#define BACKEND_WARN_MS 10000 /* "cache backend failed" is a warning at most this often */ /* a cancelled leader looks this often whether waiters remain */

static const char *const result_names[] = {"HIT", "MISS", "STALE", "BYPASS", "REVALIDATED"};
#define HIT_FOR_MISS_MS 30000 /* an unshareable answer's note lives this long (or its max-age) */
#define CACHE_STATUS_NAME "cachingproxy"

enum phase {
    PH_START,
    PH_AUTHORIZE,
    PH_LOOKUP,
    PH_WAIT,
    PH_LOCK,
    PH_CREDS,
    PH_FETCH,
    PH_TRANSFORM,
    PH_ANSWER,
    PH_DONE
};

/* The upstream answer as it arrives: streamed to the front and captured for the cache or for
 * the calls waiting on this one. */
struct tee {
    int result;    /* X-Cache value for the client */
    int64_t ttl_ms;
    int cacheable; /* still a candidate for the cache */
    int keep;      /* the answer is captured: for the cache, or to hand to waiters (a 5xx) */
    int hold;      /* a 5xx with a stale fallback: do not answer it, serve the stale entry */
    int started;   /* the front got the head */
    int status;
    int64_t stored_ms;
    struct cache_header *h;
    size_t nh;
    struct cp_buf body;
    int deferred;      /* a query: the answer is whole (and transformed) before it is sent */
    struct cp_buf raw; /* its upstream answer */
    struct cache_header *rh; /* and the upstream's headers */
    size_t nrh;
    int revalidated;         /* a 304 to our conditional request: the stored entry holds */
    struct cache_header *h304; /* its headers, merged into the entry */
    size_t nh304;
    const char *why_not;     /* why the answer is not stored (Cache-Status detail) */
    int per_user;            /* an answer for its caller alone (cookie, private) */
    char vary[256];          /* the request headers it varies on (vary_names), or "" */
    int64_t length;          /* its Content-Length, -1 when unknown */
};

/* What one call stores: its answer (or the renewed entry, or a hit-for-miss note) and, for an
 * answer that varies, the Vary note under the request's own key. */
struct writes {
    struct cache_key key, note_key;
    struct cache_entry *e, *note;
    int retry; /* the waiters cannot take the answer from the flight: they look up again */
    int hit_for_miss;
};

static void writes_dispose(struct writes *w)
{
    cache_entry_unref(w->e);
    cache_entry_unref(w->note);
    memset(w, 0, sizeof *w);
}

struct proxy_call {
    _Atomic unsigned refs; /* the front's, the pipeline's (until done), one per posted job */
    struct proxy_ds *ds;
    const struct proxy__call_ops *ops; /* NULL: a background refresh, nobody to answer */
    void *ctx;
    enum phase phase;
    enum cache_kind kind;
    const struct proxy__incoming *in; /* the front's request; NULL for a refresh */
    struct proxy__admitted a;
    struct cp_user user;
    char *own; /* a refresh's copies of everything it borrowed */
    int64_t ttl_override_ms;
    char *recipe; /* queries: what the frame is made of (JSON text) */
    int scope;    /* a module's cache scope, or AUTH_SCOPE_DEFAULT */
    struct auth_request areq;
    char *user_token; /* forwardOAuth: the user's token, registered as a secret meanwhile */

    /* cache */
    int use_cache;
    int64_t ttl;
    struct cache_key key;     /* where the answer lives (under a Vary note: its own key) */
    struct cache_key primary; /* the key of the request itself, where a Vary note lives */
    int via_vary;             /* key came from a Vary note found under primary */
    int hit_for_miss;         /* a note said: not shareable, go upstream side by side */
    int collapsed;            /* answered with another call's answer */
    int stale_sie;            /* the stale answer is served because the upstream failed */
    struct cache_entry *reval; /* an expired entry with validators: the fetch is conditional */
    struct cache_entry *got, *stale;
    int got_rc;
    int leading, locked;
    struct cache_lock_token lock_token;
    int64_t lock_deadline_ns;
    struct cp_timer *timer;
    struct cache_waiter waiter;
    int waiting;
    struct cache_outcome outcome;

    /* upstream */
    struct proxy_header up[CP_MAX_FWD_HEADERS + 34]; /* headers sent: forwarded ± conditions */
    size_t nup;
    char cstatus[256]; /* the Cache-Status of the answer */
    struct auth_outgoing og;
    struct cp_buf pq;
    struct auth_creds creds;
    struct proxy__xfer *x;
    struct tee t;
    int fetch_rc;
    struct cp_err err;
    struct cp_buf mine, keep; /* a query's frame for its caller and for the cache */
    int transform_rc;
    struct writes writes; /* what the call stores */

    /* answer */
    struct cache_entry *ans_e;
    struct cp_buf ans_buf;
    const char *ans_p;
    size_t ans_len, ans_off;
    int paused;    /* the front said PROXY_PAUSE: waiting for proxy_call_resume */
    int cancelled; /* the front is gone */
    int detached;  /* cancelled while leading a flight: the transfer goes on for the waiters */
    int lag;        /* the front paused while the answer is kept (for the cache, for waiting
                     * calls): the transfer goes on, the front reads t.body from lag_off */
    size_t lag_off;
    int result, transformed;

    /* an offloaded step (Redis on the io pool, a frame on the cpu pool) */
    void (*work)(struct proxy_call *c);
    void (*then)(struct proxy_call *c);
};

static void lookup_step(struct proxy_call *c);
static void miss_step(struct proxy_call *c);
static void lock_step(struct proxy_call *c);
static void creds_step(struct proxy_call *c);
static void fetched(struct proxy_call *c);
static void pump(struct proxy_call *c);
static void finish(struct proxy_call *c, int rc);

/* ---- references, posting, offloading -------------------------------------------------------- */

static void call_ref(struct proxy_call *c) { atomic_fetch_add(&c->refs, 1); }

static void free_headers(struct cache_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static void call_unref(struct proxy_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    struct proxy_ds *ds = c->ds;
    proxy__admitted_dispose(&c->a);
    cache_entry_unref(c->got);
    cache_entry_unref(c->stale);
    cache_entry_unref(c->reval);
    cache_entry_unref(c->ans_e);
    cache_outcome_dispose(&c->outcome);
    writes_dispose(&c->writes);
    free_headers(c->t.h, c->t.nh);
    free_headers(c->t.rh, c->t.nrh);
    free_headers(c->t.h304, c->t.nh304);
    cp_buf_free(&c->t.body);
    cp_buf_free(&c->t.raw);
    cp_buf_free(&c->mine);
    cp_buf_free(&c->keep);
    cp_buf_free(&c->ans_buf);
    cp_buf_free(&c->pq);
    free(c->recipe);
    free(c->own);
    free(c);
    proxy_ds_free(ds);
}

void proxy_call_release(struct proxy_call *c)
{
    if (c)
        call_unref(c);
}

void *proxy__call_ctx(const struct proxy_call *c) { return c->ctx; }

int proxy__call_result(const struct proxy_call *c, int *transformed)
{
    if (transformed)
        *transformed = c->transformed;
    return c->result;
}

struct posted {
    struct proxy_call *c;
    void (*fn)(struct proxy_call *c);
};

static void run_posted(void *arg)
{
    struct posted *p = arg;
    p->fn(p->c);
    call_unref(p->c);
    free(p);
}

/* Runs fn(c) on the instance's loop (from any thread). */
static int post(struct proxy_call *c, void (*fn)(struct proxy_call *c))
{
    struct posted *p = malloc(sizeof *p);
    if (!p)
        return CP_ENOMEM;
    p->c = c;
    p->fn = fn;
    call_ref(c);
    int rc = proxy__post(c->ds, run_posted, p);
    if (rc) {
        atomic_fetch_sub(&c->refs, 1); /* the caller still holds one */
        free(p);
    }
    return rc;
}

static void offload_back(struct proxy_call *c) { c->then(c); }

static void offload_job(void *arg)
{
    struct proxy_call *c = arg;
    c->work(c);
    if (post(c, offload_back) != 0)
        c->cancelled = 1; /* the loop stopped: the process is ending */
    call_unref(c);
}

/* work(c) on pool (or here when pool is NULL: the store needs no I/O), then then(c) on the
 * loop. One offloaded step at a time per call. */
static void offload(struct proxy_call *c, struct cp_pool *pool, void (*work)(struct proxy_call *),
                    void (*then)(struct proxy_call *))
{
    c->work = work;
    c->then = then;
    if (!pool) {
        work(c);
        then(c);
        return;
    }
    call_ref(c);
    if (cp_pool_submit(pool, offload_job, c) != 0) {
        call_unref(c);
        work(c); /* out of memory for a job: do it here rather than lose the call */
        then(c);
    }
}

/* The pool for store operations: none when the store answers without I/O. */
static struct cp_pool *store_pool(const struct proxy_ds *ds)
{
    return (ds->store_caps & CACHE_CAP_NO_IO) ? NULL : ds->env.io;
}

/* ---- counting ------------------------------------------------------------------------------- */

static void count(struct proxy_ds *ds, enum cache_kind kind, int result)
{
    _Atomic uint64_t *n = result == PROXY_HIT           ? &ds->hits
                          : result == PROXY_MISS        ? &ds->misses
                          : result == PROXY_STALE       ? &ds->stale
                          : result == PROXY_REVALIDATED ? &ds->revalidated
                                                        : &ds->bypass;
    atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
    if (ds->env.ctr)
        atomic_fetch_add_explicit(&ds->env.ctr->cache[kind][result], 1, memory_order_relaxed);
}

static void count_coalesced(struct proxy_ds *ds)
{
    atomic_fetch_add(&ds->coalesced, 1);
    if (ds->env.ctr)
        atomic_fetch_add(&ds->env.ctr->coalesced, 1);
}

void proxy__count_error(struct proxy_ds *ds)
{
    atomic_fetch_add(&ds->errors, 1);
    if (ds->env.ctr)
        atomic_fetch_add(&ds->env.ctr->errors, 1);
}

/* A cache backend failure: the call goes on to the upstream (fail open). The backend logs
 * the start and end of an outage and counts every failure. */
/* A store failed for one call (the call goes on without the cache): a warning at most every
 * BACKEND_WARN_MS per data source (a Redis that refuses writes, a full one, would otherwise
 * fill the log), the others at debug; the metric counts every one. */
static void backend_failed(struct proxy_ds *ds, const struct cp_err *err)
{
    struct cp_kv kv[] = {CP_KV_S("error", cp_err_text(err)), CP_KV_S("dsUid", ds->cfg->uid)};
    int64_t now = cp_mono_ns() / 1000000, last = atomic_load(&ds->backend_warned_ms);
    int warn = (last == 0 || now - last >= BACKEND_WARN_MS) &&
               atomic_compare_exchange_strong(&ds->backend_warned_ms, &last, now);
    cp_log(ds->env.log, warn ? CP_LOG_WARN : CP_LOG_DEBUG,
           "cache backend failed; going to the upstream", kv, 2);
}

/* ---- keys and lifetimes ------------------------------------------------------------------------ */

int64_t proxy__ttl_for(const struct proxy_ds *ds, enum cache_kind kind, const char *path,
                       int64_t override_ms)
{
    const struct cfg_cache *cc = &ds->cfg->cache;
    for (size_t i = 0; i < cc->nrules; i++)
        if (auth_glob_any(&cc->rules[i].paths, path))
            /* a rule's ttl 0 (never cache) is the admin's: no query's cacheTtl lifts it */
            return cc->rules[i].ttl_ms <= 0 || override_ms < 0 ? cc->rules[i].ttl_ms
                                                                : override_ms;
    if (override_ms >= 0)
        return override_ms;
    return kind == CACHE_KIND_QUERY ? cc->query_ttl_ms : cc->resource_ttl_ms;
}

/* Whether a call may use the cache and, when it may, its key: the request (method, path,
 * query, body, a query's own headers) and the scope; the client's forwarded headers only
 * through vary (the names an answer's Vary header gave, lower case, comma-separated): then the
 * key includes their values (absent ones too). */
static int cacheable_key(const struct proxy_ds *ds, enum cache_kind kind,
                         const struct proxy__admitted *a, const struct cp_user *user,
                         int scope_override, int64_t ttl_override_ms, const char *recipe,
                         const char *vary, int64_t *ttl, struct cache_key *key)
{
    const struct cfg_cache *cc = &ds->cfg->cache;
    enum cfg_scope scope = scope_override >= 0 ? (enum cfg_scope)scope_override : cc->scope;
    if (ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH)
        scope = CFG_SCOPE_USER;
    *ttl = proxy__ttl_for(ds, kind, a->path, ttl_override_ms);
    int has_user = user && user->present && user->login && *user->login;
    if (!ds->store || *ttl <= 0 || a->skip || !cfg_strlist_has_ci(&cc->methods, a->method) ||
        (scope == CFG_SCOPE_USER && !has_user))
        return 0;
    struct cache_header hs[CP_MAX_FWD_HEADERS + 64];
    size_t nh = 0;
    for (size_t i = 0; i < a->nown; i++)
        hs[nh++] = (struct cache_header){(char *)a->fwd[i].name, (char *)a->fwd[i].value};
    char vname[64];
    char *joined[16] = {NULL}; /* values of a header sent more than once, in their order */
    size_t nj = 0;
    for (const char *v = vary; v && *v && nh < sizeof hs / sizeof hs[0];) {
        size_t l = strcspn(v, ",");
        snprintf(vname, sizeof vname, "%.*s", (int)l, v);
        const char *val = NULL;
        size_t count_of = 0, len = 0;
        for (size_t i = a->nown; i < a->nfwd; i++)
            if (!strcasecmp(a->fwd[i].name, vname)) {
                val = val ? val : a->fwd[i].value;
                count_of++;
                len += strlen(a->fwd[i].value) + 1;
            }
        if (count_of > 1) {
            /* every value goes upstream, so every value is part of the key (a line break
             * cannot be inside a forwarded value: it separates them unambiguously) */
            char *j = nj < 16 ? malloc(len) : NULL;
            if (!j)
                goto fail;
            joined[nj++] = j;
            for (size_t i = a->nown, o = 0; i < a->nfwd; i++)
                if (!strcasecmp(a->fwd[i].name, vname))
                    o += (size_t)sprintf(j + o, "%s%s", o ? "\n" : "", a->fwd[i].value);
            val = j;
        }
        /* "vary:" marks the name apart from a query's own header of the same name */
        hs[nh].name = NULL;
        static const char absent[] = "\001(absent)";
        hs[nh].value = (char *)(val ? val : absent);
        char *nm = malloc(strlen(vname) + 6);
        if (!nm)
            goto fail;
        sprintf(nm, "vary:%s", vname);
        hs[nh++].name = nm;
        v += l;
        if (*v == ',')
            v++;
    }
    struct cache_key_input ki = {.ds_uid = ds->cfg->key_id,
                                 .fingerprint = ds->cfg->fingerprint,
                                 .kind = kind,
                                 .method = a->method,
                                 .path = a->path,
                                 .query = a->query,
                                 .body = a->body,
                                 .body_len = a->body_len,
                                 .vary = hs,
                                 .nvary = nh,
                                 .scope = scope,
                                 .user = has_user ? user->login : NULL,
                                 .org_id = user ? user->org_id : 0,
                                 .variant = recipe};
    int ok = cache_key_derive(&ki, key) == 0;
    for (size_t i = a->nown; i < nh; i++)
        free(hs[i].name);
    for (size_t i = 0; i < nj; i++)
        free(joined[i]);
    return ok;
fail:
    for (size_t i = a->nown; i < nh; i++)
        free(hs[i].name);
    for (size_t i = 0; i < nj; i++)
        free(joined[i]);
    return 0;
}

/* The request headers an answer varies on that can make a difference here: the names its
 * Vary header lists that clients may forward (others never reach the upstream from a
 * client), lower case, sorted, comma-separated into out. 0 when there are none. */
static int vary_names(const struct cfg_ds *cfg, const struct cache_header *h, size_t n,
                      char *out, size_t size)
{
    char names[16][64];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(h[i].name, "Vary"))
            continue;
        for (const char *v = h[i].value; *v;) {
            while (*v == ' ' || *v == ',')
                v++;
            size_t l = strcspn(v, ", ");
            if (l >= 64 || (l && k == 16)) {
                /* more than a key can hold: a name this long or a 17th could be forwarded, so
                 * the answer might differ by it; rather than store it as if it did not */
                char nm[256];
                snprintf(nm, sizeof nm, "%.*s", (int)(l < 255 ? l : 255), v);
                if (l >= 255 || cfg_strlist_has_ci(&cfg->forward_headers, nm) || k == 16)
                    return -1;
            } else if (l) {
                char nm[64];
                for (size_t j = 0; j < l; j++)
                    nm[j] = (char)(v[j] >= 'A' && v[j] <= 'Z' ? v[j] + 32 : v[j]);
                nm[l] = 0;
                int dup = 0;
                for (size_t j = 0; j < k; j++)
                    dup |= !strcmp(names[j], nm);
                if (!dup && cfg_strlist_has_ci(&cfg->forward_headers, nm) &&
                    proxy__header_allowed_in_query(nm))
                    memcpy(names[k++], nm, l + 1);
            }
            v += l;
        }
    }
    /* sorted, so "Accept, Accept-Language" and the reverse make one key */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[64];
            memcpy(t, names[j], 64);
            memcpy(names[j], names[j - 1], 64);
            memcpy(names[j - 1], t, 64);
        }
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < k; i++)
        o += (size_t)snprintf(out + o, o < size ? size - o : 0, "%s%s", i ? "," : "", names[i]);
    if (o >= size)
        return -1;
    return k > 0;
}

/* The "Vary" header of a Vary note: the names its answer varies on. */
static const char *note_names(const struct cache_entry *e)
{
    for (size_t i = 0; i < e->nheaders; i++)
        if (!strcasecmp(e->headers[i].name, "Vary"))
            return e->headers[i].value;
    return "";
}

/* Looks the request up, following a Vary note to the key of the variant the request's
 * headers select: *key becomes that key (*primary keeps the request's own), *via_vary says
 * so. Synchronous: on a pool for stores that do I/O (two round trips through a note). */
static int store_lookup(const struct proxy_ds *ds, enum cache_kind kind,
                        const struct proxy__admitted *a, const struct cp_user *user, int scope,
                        int64_t ttl_override_ms, const char *recipe, struct cache_key *key,
                        struct cache_key *primary, int *via_vary, struct cache_entry **out,
                        struct cp_err *err)
{
    *out = NULL;
    *via_vary = 0;
    *primary = *key;
    int rc = cache_get(ds->store, key, out, err);
    if (rc || !*out || (*out)->status != CACHE_STATUS_VARY)
        return rc;
    struct cache_entry *note = *out;
    *out = NULL;
    int64_t ttl;
    if (cacheable_key(ds, kind, a, user, scope, ttl_override_ms, recipe, note_names(note), &ttl,
                      key)) {
        *via_vary = 1;
        rc = cache_get(ds->store, key, out, err);
    }
    cache_entry_unref(note);
    return rc;
}

/* ---- answering ---------------------------------------------------------------------------------- */

/* True when the client's If-None-Match names the entry's ETag (weak comparison). */
static int client_has_it(const struct proxy__admitted *a, const struct cache_entry *e)
{
    if (!e->etag || e->status != 200)
        return 0;
    const char *inm = proxy__header(a->fwd, a->nfwd, "If-None-Match");
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

/* The headers of an answer from an entry: its own, X-Cache and Age. */
static size_t entry_headers(const struct cache_entry *e, int result, int64_t now, char *age,
                            size_t age_size, struct proxy_header *hs)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nheaders && n < CP_MAX_OUT_HEADERS - 3; i++)
        if (strcasecmp(e->headers[i].name, "Cache-Status"))
            hs[n++] = (struct proxy_header){e->headers[i].name, e->headers[i].value};
    hs[n++] = (struct proxy_header){"X-Cache", result_names[result]};
    int64_t a = (now - e->stored_ms) / 1000;
    snprintf(age, age_size, "%lld", (long long)(a < 0 ? 0 : a));
    hs[n++] = (struct proxy_header){"Age", age};
    return n;
}

/* Seconds of freshness left, rounded down (negative once stale). */
static long long ttl_left(const struct cache_entry *e, int64_t now)
{
    int64_t ms = e->stored_ms + e->ttl_ms - now;
    return (long long)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
}

int proxy__try_hit(struct proxy_ds *ds, const struct proxy__admitted *a,
                   const struct cp_user *user, int scope_override,
                   const struct proxy_sink *sink, size_t max_body)
{
    int64_t ttl;
    struct cache_key key, primary;
    struct cache_entry *e = NULL;
    struct cp_err err;
    int via_vary;
    if (a->refresh || !(ds->store_caps & CACHE_CAP_NO_IO) ||
        !cacheable_key(ds, CACHE_KIND_RESOURCE, a, user, scope_override, -1, NULL, NULL, &ttl,
                       &key) ||
        store_lookup(ds, CACHE_KIND_RESOURCE, a, user, scope_override, -1, NULL, &key, &primary,
                     &via_vary, &e, &err) != 0 ||
        !e)
        return 0;
    int64_t now = cp_now_ms();
    int rc = 0;
    if (e->status >= 100 && e->body_len <= max_body &&
        cache_entry_freshness(e, now) == CACHE_FRESH) {
        count(ds, CACHE_KIND_RESOURCE, PROXY_HIT);
        struct proxy_header hs[CP_MAX_OUT_HEADERS];
        char age[32], cstatus[96];
        size_t n = entry_headers(e, PROXY_HIT, now, age, sizeof age, hs);
        snprintf(cstatus, sizeof cstatus, CACHE_STATUS_NAME "; hit; ttl=%lld", ttl_left(e, now));
        hs[n++] = (struct proxy_header){"Cache-Status", cstatus};
        int nm = client_has_it(a, e);
        rc = sink->head(sink->ctx, nm ? 304 : e->status, hs, n) ? CP_ECANCELED : 1;
        if (rc == 1 && !nm && e->body_len && sink->body(sink->ctx, e->body, e->body_len) != 0)
            rc = CP_ECANCELED;
    }
    cache_entry_unref(e);
    return rc;
}

/* The Cache-Status (RFC 9211) of an answer from an entry. */

static void entry_status(struct proxy_call *c, const struct cache_entry *e, int result,
                         int64_t now)
{
    long long ttl = ttl_left(e, now);
    switch (result) {
    case PROXY_HIT:
        if (c->collapsed)
            snprintf(c->cstatus, sizeof c->cstatus,
                     CACHE_STATUS_NAME "; fwd=uri-miss; fwd-status=%d; collapsed", e->status);
        else
            snprintf(c->cstatus, sizeof c->cstatus, CACHE_STATUS_NAME "; hit; ttl=%lld", ttl);
        break;
    case PROXY_STALE:
        if (!c->stale_sie)
            snprintf(c->cstatus, sizeof c->cstatus,
                     CACHE_STATUS_NAME "; hit; ttl=%lld; detail=stale-while-revalidate", ttl);
        else if (c->t.status)
            snprintf(c->cstatus, sizeof c->cstatus,
                     CACHE_STATUS_NAME "; fwd=stale; fwd-status=%d; ttl=%lld; "
                                       "detail=stale-if-error",
                     c->t.status, ttl);
        else
            snprintf(c->cstatus, sizeof c->cstatus,
                     CACHE_STATUS_NAME "; fwd=stale; ttl=%lld; detail=stale-if-error", ttl);
        break;
    case PROXY_REVALIDATED:
        snprintf(c->cstatus, sizeof c->cstatus,
                 CACHE_STATUS_NAME "; fwd=stale; fwd-status=304%s; ttl=%lld",
                 c->t.cacheable ? "; stored" : "", ttl);
        break;
    default: /* an upstream error answer shared with this waiting call */
        snprintf(c->cstatus, sizeof c->cstatus,
                 CACHE_STATUS_NAME "; fwd=uri-miss; fwd-status=%d; collapsed", e->status);
        break;
    }
}

/* Answers from an entry (the front gets head, then the body in pieces), then ends the call. */
static void answer_entry(struct proxy_call *c, struct cache_entry *e, int result)
{
    c->phase = PH_ANSWER;
    if (!c->ops || c->cancelled) {
        finish(c, c->cancelled ? CP_ECANCELED : 0);
        return;
    }
    struct proxy_header hs[CP_MAX_OUT_HEADERS];
    char age[32];
    int64_t now = cp_now_ms();
    size_t n = entry_headers(e, result, now, age, sizeof age, hs);
    entry_status(c, e, result, now);
    hs[n++] = (struct proxy_header){"Cache-Status", c->cstatus};
    int nm = client_has_it(&c->a, e);
    c->t.started = 1;
    if (c->ops->head(c, nm ? 304 : e->status, hs, n) != 0) {
        finish(c, CP_ECANCELED);
        return;
    }
    c->ans_e = cache_entry_ref(e);
    c->ans_p = (const char *)e->body;
    c->ans_len = nm ? 0 : e->body_len;
    c->ans_off = 0;
    pump(c);
}

/* Answers a whole body kept in a buffer (a query's frame, a raw answer). */
static void answer_buf(struct proxy_call *c, int status, const struct proxy_header *h, size_t n,
                       struct cp_buf *b)
{
    c->phase = PH_ANSWER;
    if (!c->ops || c->cancelled) {
        finish(c, c->cancelled ? CP_ECANCELED : 0);
        return;
    }
    c->t.started = 1;
    if (c->ops->head(c, status, h, n) != 0) {
        finish(c, CP_ECANCELED);
        return;
    }
    c->ans_buf = *b;
    memset(b, 0, sizeof *b);
    c->ans_p = c->ans_buf.p;
    c->ans_len = c->ans_buf.len;
    c->ans_off = 0;
    pump(c);
}

/* Hands the answer's body to the front, a piece at a time, as fast as it takes them. */
static void pump(struct proxy_call *c)
{
    while (c->ans_off < c->ans_len) {
        size_t n = c->ans_len - c->ans_off < CHUNK ? c->ans_len - c->ans_off : CHUNK;
        int r = c->ops->body(c, c->ans_p + c->ans_off, n);
        if (r == PROXY_PAUSE) {
            c->paused = 1;
            return;
        }
        if (r != 0) {
            finish(c, CP_ECANCELED);
            return;
        }
        c->ans_off += n;
    }
    finish(c, 0);
}

/* The call ends without an answer: the front answers err its own way. */
static void fail(struct proxy_call *c, int code, const struct cp_err *err)
{
    if (c->ops && !c->cancelled)
        c->ops->error(c, err);
    finish(c, code);
}

static void finish(struct proxy_call *c, int rc)
{
    if (c->phase == PH_DONE)
        return;
    c->phase = PH_DONE;
    if (c->timer) {
        cp_timer_cancel(c->timer);
        c->timer = NULL;
    }
    if (c->waiting && cache_flight_leave(c->ds->flights, &c->key, &c->waiter)) {
        c->waiting = 0;
        if (c->ds->env.ctr)
            atomic_fetch_sub(&c->ds->env.ctr->waiting, 1);
    }
    if (c->ops)
        c->ops->done(c, rc);
    /* after the front's last text: echoes of the credentials are redacted until here */
    auth_creds_wipe(&c->creds);
    if (c->user_token) { /* a copy: the front's request may be gone once done ran */
        proxy__user_token(c->ds, c->user_token, 0);
        explicit_bzero(c->user_token, strlen(c->user_token));
        free(c->user_token);
        c->user_token = NULL;
    }
    if (c->ds->env.ctr)
        atomic_fetch_sub(&c->ds->env.ctr->calls, 1);
    call_unref(c); /* the pipeline's reference */
}

/* ---- the upstream answer: streamed to the front, captured for the cache ---------------------- */

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

/* Whether an answer may be stored, and for how long (t->ttl_ms); when not, t->why_not says
 * why (Cache-Status detail) and t->per_user whether it was meant for its caller alone. */
static int response_cacheable(const struct proxy_ds *ds, struct tee *t, int status,
                              const struct cache_header *h, size_t n)
{
    const struct cfg_cache *cc = &ds->cfg->cache;
    int ok = (status >= 200 && status <= 299 && status != 206) ||
             (status == 404 && cc->cache_404_ms > 0);
    t->per_user = per_user_answer(h, n);
    if (!ok) {
        t->why_not = "status";
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(h[i].name, "Set-Cookie")) {
            t->why_not = "set-cookie"; /* a per-user answer: never shared */
            return 0;
        }
        if (!strcasecmp(h[i].name, "Vary") && strchr(h[i].value, '*')) {
            t->why_not = "vary";
            return 0;
        }
        if (cc->respect_cache_control && !strcasecmp(h[i].name, "Cache-Control")) {
            struct cache_control ctl;
            cache_control_parse(h[i].value, &ctl);
            if (ctl.no_store || ctl.private_) {
                t->why_not = ctl.no_store ? "no-store" : "private";
                return 0;
            }
            if (ctl.s_maxage_ms >= 0)
                t->ttl_ms = ctl.s_maxage_ms;
            else if (ctl.max_age_ms >= 0)
                t->ttl_ms = ctl.max_age_ms;
            if (ctl.no_cache)
                t->ttl_ms = 0; /* must revalidate every time: not worth storing */
        }
    }
    if (status == 404) /* notFoundTtl bounds it, whatever the upstream's max-age says */
        t->ttl_ms = t->ttl_ms < cc->cache_404_ms ? t->ttl_ms : cc->cache_404_ms;
    if (t->ttl_ms <= 0) {
        t->why_not = "ttl";
        return 0;
    }
    if (t->length > cc->max_entry_bytes) {
        t->why_not = "too-large";
        return 0;
    }
    return 1;
}

/* Response headers for the client: upstream ones minus those we set ourselves. */
static size_t client_headers(const struct cache_header *h, size_t n, const char *xcache,
                             const char *cstatus, struct proxy_header *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < CP_MAX_OUT_HEADERS - 2; i++) {
        if (!strcasecmp(h[i].name, "X-Cache") || !strcasecmp(h[i].name, "Age") ||
            !strcasecmp(h[i].name, "Cache-Status"))
            continue;
        out[k++] = (struct proxy_header){h[i].name, h[i].value};
    }
    if (xcache)
        out[k++] = (struct proxy_header){"X-Cache", xcache};
    if (cstatus)
        out[k++] = (struct proxy_header){"Cache-Status", cstatus};
    return k;
}

/* The Cache-Status of an answer forwarded from the upstream as it arrives. */
static void forwarded_status(struct proxy_call *c, int status)
{
    const struct tee *t = &c->t;
    if (!c->use_cache) {
        int method = !cfg_strlist_has_ci(&c->ds->cfg->cache.methods, c->a.method);
        snprintf(c->cstatus, sizeof c->cstatus, CACHE_STATUS_NAME "; fwd=%s%s",
                 method ? "method" : "bypass", c->a.skip ? "; detail=skip" : "");
        return;
    }
    const char *fwd = c->a.refresh ? "request" : c->reval ? "stale" : "uri-miss";
    if (t->cacheable)
        snprintf(c->cstatus, sizeof c->cstatus, CACHE_STATUS_NAME "; fwd=%s; fwd-status=%d%s",
                 fwd, status, t->length >= 0 ? "; stored" : "");
    else
        snprintf(c->cstatus, sizeof c->cstatus,
                 CACHE_STATUS_NAME "; fwd=%s; fwd-status=%d; detail=%s", fwd, status,
                 t->why_not ? t->why_not : "status");
}

static int copy_headers(const struct cache_header *h, size_t n, struct cache_header **out,
                        size_t *nout)
{
    *out = calloc(n ? n : 1, sizeof **out);
    *nout = 0;
    if (!*out)
        return CP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(h[i].name, "X-Cache") || !strcasecmp(h[i].name, "Age"))
            continue;
        (*out)[*nout].name = strdup(h[i].name);
        (*out)[*nout].value = strdup(h[i].value);
        if (!(*out)[*nout].name || !(*out)[*nout].value) {
            free((*out)[*nout].name);
            free((*out)[*nout].value);
            return CP_ENOMEM;
        }
        (*nout)++;
    }
    return 0;
}

/* The front receives the answer as it arrives unless it is gone, the call runs in the
 * background, the answer is held back (a 5xx with a stale fallback) or deferred (a query). */
static int streams_to_front(const struct proxy_call *c)
{
    return c->ops && !c->detached && !c->cancelled && !c->t.hold && !c->t.deferred;
}

static int tee_head(void *ctx, int status, const struct cache_header *h, size_t n,
                    int64_t length)
{
    struct proxy_call *c = ctx;
    struct tee *t = &c->t;
    t->status = status;
    t->stored_ms = cp_now_ms();
    t->length = length;
    if (status == 304 && c->reval) {
        /* our conditional request: the stored answer is still good; renewed in conclude */
        t->revalidated = 1;
        t->cacheable = c->use_cache && response_cacheable(c->ds, t, 200, h, n);
        return copy_headers(h, n, &t->h304, &t->nh304);
    }
    if (t->cacheable)
        t->cacheable = response_cacheable(c->ds, t, status, h, n);
    else if (!t->why_not)
        t->why_not = "bypass";
    int vr = t->cacheable ? vary_names(c->ds->cfg, h, n, t->vary, sizeof t->vary) : 0;
    if (vr < 0) { /* it varies by more headers than a key can name: not stored */
        t->cacheable = 0;
        t->why_not = "vary";
    }
    if (vr <= 0)
        t->vary[0] = 0;
    /* a failing upstream's answer is the same for every waiter of this call: keep it for them */
    t->keep = t->cacheable || (status >= 500 && !per_user_answer(h, n));
    if (status >= 500 && c->stale)
        t->hold = 1; /* answered from the stale entry instead */
    if (t->deferred) {
        t->raw.max = (size_t)c->ds->cfg->max_response_bytes;
        return copy_headers(h, n, &t->rh, &t->nrh);
    }
    if (t->keep) {
        if (copy_headers(h, n, &t->h, &t->nh) != 0)
            t->keep = t->cacheable = 0;
        t->body.max = (size_t)c->ds->cfg->cache.max_entry_bytes;
    }
    if (!streams_to_front(c))
        return 0;
    struct proxy_header out[CP_MAX_OUT_HEADERS];
    forwarded_status(c, status);
    size_t k = client_headers(h, n, result_names[t->result], c->cstatus, out);
    t->started = 1;
    return c->ops->head(c, status, out, k);
}

static int tee_body(void *ctx, const void *p, size_t n)
{
    struct proxy_call *c = ctx;
    struct tee *t = &c->t;
    if (t->revalidated)
        return 0; /* a 304 has no body */
    if (t->deferred)
        return cp_buf_add(&t->raw, p, n) ? CP_ERESPBIG : 0;
    if (streams_to_front(c) && t->started && !c->lag) {
        /* the front first: when it cannot take the piece, it comes again after resume */
        int r = c->ops->body(c, p, n);
        if (r == PROXY_PAUSE && !t->keep)
            return PROXY_PAUSE;
        if (r == PROXY_PAUSE) {
            /* the answer is kept for the cache or for identical calls waiting: a client that
             * reads slowly does not hold the transfer back for them; it reads what is kept */
            c->lag = 1;
            c->lag_off = t->body.len;
        } else if (r != 0) {
            return r;
        }
    }
    if (t->keep && cp_buf_add(&t->body, p, n) != 0) {
        t->keep = t->cacheable = 0; /* larger than maxEntryBytes: answer it, do not keep it */
        t->why_not = "too-large";
        if (c->lag) {
            /* only the part the front has not read stays; the transfer waits for the front
             * again, and this piece comes again once it has caught up */
            memmove(t->body.p, t->body.p + c->lag_off, t->body.len - c->lag_off);
            t->body.len -= c->lag_off;
            c->lag_off = 0;
            return PROXY_PAUSE;
        }
        cp_buf_free(&t->body);
    }
    return 0;
}

/* The front can take more while it is behind the transfer (c->lag): what was kept for it, as
 * far as it takes it; once it has caught up it gets the transfer's pieces again. */
static void catch_up(struct proxy_call *c)
{
    struct tee *t = &c->t;
    while (c->lag_off < t->body.len) {
        size_t n = t->body.len - c->lag_off < CHUNK ? t->body.len - c->lag_off : CHUNK;
        int r = c->ops->body(c, t->body.p + c->lag_off, n);
        if (r == PROXY_PAUSE)
            return;
        if (r != 0) { /* the front broke off: the transfer goes on for the others */
            c->cancelled = 1;
            return;
        }
        c->lag_off += n;
    }
    c->lag = 0;
    if (!t->keep)
        t->body.len = 0; /* it held only what the front had not read */
    proxy__fetch_resume(c->x); /* paused when the kept part could not grow */
}

static void tee_done(void *ctx, int rc, const struct cp_err *err)
{
    struct proxy_call *c = ctx;
    c->x = NULL;
    c->fetch_rc = rc;
    if (rc)
        c->err = *err;
    fetched(c);
}

static struct cache_entry *tee_entry(struct proxy_call *c, const struct cp_buf *body)
{
    const struct cfg_cache *cc = &c->ds->cfg->cache;
    struct tee *t = &c->t;
    const struct cache_header *h = t->deferred ? t->rh : t->h;
    size_t nh = t->deferred ? t->nrh : t->nh;
    struct cache_entry_spec sp = {.status = t->status,
                                  .stored_ms = t->stored_ms,
                                  .ttl_ms = t->ttl_ms,
                                  .swr_ms = cc->swr_ms,
                                  .sie_ms = cc->sie_ms,
                                  .path = c->a.path,
                                  .headers = h,
                                  .nheaders = nh,
                                  .body = body->p,
                                  .body_len = body->len};
    return cache_entry_new(&sp);
}

/* A note (Vary or hit-for-miss) with one header, living as long as ttl_ms says. */
static struct cache_entry *note_entry(struct proxy_call *c, int status, const char *name,
                                      const char *value, int64_t ttl_ms)
{
    const struct cfg_cache *cc = &c->ds->cfg->cache;
    struct cache_header h = {(char *)name, (char *)value};
    struct cache_entry_spec sp = {.status = status,
                                  .stored_ms = c->t.stored_ms,
                                  .ttl_ms = ttl_ms,
                                  .swr_ms = status == CACHE_STATUS_VARY ? cc->swr_ms : 0,
                                  .sie_ms = status == CACHE_STATUS_VARY ? cc->sie_ms : 0,
                                  .path = c->a.path,
                                  .headers = &h,
                                  .nheaders = name ? 1 : 0};
    return cache_entry_new(&sp);
}

/* The stored entry renewed by a 304 (RFC 9111 section 4.3.4): its body and status, its
 * headers updated with the 304's (but for Content-Length and hop-by-hop ones, gone already),
 * a new lifetime from the 304's Cache-Control, else the configured one. */
static struct cache_entry *renewed_entry(struct proxy_call *c)
{
    const struct cfg_cache *cc = &c->ds->cfg->cache;
    const struct cache_entry *old = c->reval;
    struct tee *t = &c->t;
    size_t n = 0, cap = old->nheaders + t->nh304;
    struct cache_header *hs = calloc(cap ? cap : 1, sizeof *hs);
    if (!hs)
        return NULL;
    for (size_t i = 0; i < old->nheaders; i++) {
        int replaced = 0;
        for (size_t k = 0; k < t->nh304 && !replaced; k++)
            replaced = !strcasecmp(t->h304[k].name, old->headers[i].name) &&
                       strcasecmp(old->headers[i].name, "Content-Length");
        if (!replaced)
            hs[n++] = old->headers[i];
    }
    for (size_t k = 0; k < t->nh304; k++)
        if (strcasecmp(t->h304[k].name, "Content-Length"))
            hs[n++] = t->h304[k];
    struct cache_entry_spec sp = {.status = old->status,
                                  .stored_ms = t->stored_ms,
                                  .ttl_ms = t->ttl_ms,
                                  .swr_ms = cc->swr_ms,
                                  .sie_ms = cc->sie_ms,
                                  .path = old->path,
                                  .headers = hs,
                                  .nheaders = n,
                                  .body = old->body,
                                  .body_len = old->body_len};
    struct cache_entry *e = cache_entry_new(&sp);
    free(hs);
    return e;
}



/* Decides what the call stores. */
static void plan_writes(struct proxy_call *c, struct writes *w)
{
    struct tee *t = &c->t;
    memset(w, 0, sizeof *w);
    w->key = c->key;
    if (c->fetch_rc || t->hold || !c->use_cache)
        return;
    if (t->revalidated) {
        if (t->cacheable)
            w->e = renewed_entry(c);
        return;
    }
    if (t->cacheable) {
        if (t->deferred && !c->transformed)
            return;
        w->e = tee_entry(c, t->deferred ? &c->keep : &t->body);
        struct cache_key primary = c->via_vary ? c->primary : c->key;
        int64_t ttl;
        if (t->vary[0] && cacheable_key(c->ds, c->kind, &c->a, &c->user, c->scope,
                                        c->ttl_override_ms, c->recipe, t->vary, &ttl,
                                        &w->key)) {
            /* the answer varies: it lives under the key of its variant, found through a note
             * under the request's own key (which lives as long as the answer) */
            w->note_key = primary;
            w->note = note_entry(c, CACHE_STATUS_VARY, "Vary", t->vary, t->ttl_ms);
        } else {
            w->key = primary; /* a note that no longer holds is replaced by the answer */
        }
        w->retry = memcmp(w->key.h, c->key.h, sizeof w->key.h) != 0;
        return;
    }
    /* an answer nobody else may have: remembered for a while, so that later calls go upstream
     * side by side instead of waiting for each other */
    if (t->status < 500 && t->why_not &&
        (t->per_user || !strcmp(t->why_not, "no-store") || !strcmp(t->why_not, "private") ||
         !strcmp(t->why_not, "set-cookie") || !strcmp(t->why_not, "too-large"))) {
        w->note = note_entry(c, CACHE_STATUS_HIT_FOR_MISS, NULL, NULL, HIT_FOR_MISS_MS);
        w->note_key = c->key;
        w->hit_for_miss = 1;
    }
}

/* What the leader hands the calls waiting for it: the entry it stored, the upstream's error
 * answer, or the error that ended the call; RETRY when the answer was its caller's alone (then
 * side by side when a hit-for-miss note says so), lives under another key (it varies), or the
 * call was cancelled before an answer. */
static void leader_outcome(struct proxy_call *c, const struct writes *w, struct cache_outcome *o)
{
    struct tee *t = &c->t;
    memset(o, 0, sizeof *o);
    o->kind = CACHE_OUTCOME_RETRY;
    if (c->fetch_rc == CP_ECANCELED)
        return;
    if (c->fetch_rc) {
        o->kind = CACHE_OUTCOME_ERROR;
        o->code = c->err.code ? c->err.code : c->fetch_rc;
        snprintf(o->msg, sizeof o->msg, "%s", cp_err_text(&c->err));
        return;
    }
    if (w->hit_for_miss) {
        o->hit_for_miss = 1;
        return;
    }
    if (w->e && !w->retry) {
        o->kind = CACHE_OUTCOME_ANSWER;
        o->e = cache_entry_ref(w->e);
        o->transformed = c->recipe != NULL;
        return;
    }
    if (t->status < 500)
        return;
    /* an upstream error answer: the same for everyone, kept whole, else as an error */
    const struct cp_buf *b = t->deferred ? &t->raw : &t->body;
    if (t->keep && b->len <= (size_t)c->ds->cfg->cache.max_entry_bytes) {
        struct cache_entry_spec sp = {.status = t->status,
                                      .stored_ms = t->stored_ms,
                                      .path = c->a.path,
                                      .headers = t->deferred ? t->rh : t->h,
                                      .nheaders = t->deferred ? t->nrh : t->nh,
                                      .body = b->p,
                                      .body_len = b->len};
        if ((o->e = cache_entry_new(&sp))) {
            o->kind = CACHE_OUTCOME_ANSWER;
            o->failed = 1;
            return;
        }
    }
    o->kind = CACHE_OUTCOME_ERROR;
    o->code = CP_EUPSTREAM;
    snprintf(o->msg, sizeof o->msg, "upstream %s answered %d", c->ds->host, t->status);
}

/* ---- storing (on the io pool for stores that do I/O) ------------------------------------------- */

/* The writes, then the unlock: other processes wait for the entry until the lock goes. */
static void do_writes(struct proxy_ds *ds, const struct writes *w, int unlock,
                      const struct cache_key *lock_key, const struct cache_lock_token *token)
{
    struct cp_err err = {0};
    if (w->e && cache_set(ds->store, &w->key, w->e, &err) != 0)
        backend_failed(ds, &err);
    if (w->note && cache_set(ds->store, &w->note_key, w->note, &err) != 0)
        backend_failed(ds, &err);
    if (unlock)
        cache_unlock(ds->store, lock_key, token);
}

/* ---- background refresh (staleWhileRevalidate) ---------------------------------------------- */

static void refresh_start(struct proxy_call *parent, struct cache_entry *e);

/* ---- steps ------------------------------------------------------------------------------------- */

static void publish(struct proxy_call *c, const struct writes *w)
{
    if (!c->leading)
        return;
    struct cache_outcome o;
    struct writes none = {0};
    leader_outcome(c, w ? w : &none, &o);
    c->leading = 0;
    cache_flight_done(c->ds->flights, &c->key, &o);
    cache_outcome_dispose(&o);
}

static void answer_rest(struct proxy_call *c);

/* The writes (and the unlock of a cross-process lock) before the call goes on: the next call
 * of this client finds the entry, and other processes waiting on the lock find it too. */
static void writes_work(struct proxy_call *c)
{
    do_writes(c->ds, &c->writes, c->locked, &c->key, &c->lock_token);
    c->locked = 0;
}

static void written(struct proxy_call *c)
{
    publish(c, &c->writes);
    answer_rest(c);
}

/* After the transfer (and for queries the transform): store, hand the outcome to the waiters,
 * then answer what was not streamed. */
static void conclude(struct proxy_call *c)
{
    plan_writes(c, &c->writes);
    if (c->writes.e || c->writes.note || c->locked) {
        offload(c, store_pool(c->ds), writes_work, written);
        return;
    }
    written(c);
}

static void answer_rest(struct proxy_call *c)
{
    struct proxy_ds *ds = c->ds;
    struct tee *t = &c->t;
    int rc = c->fetch_rc;
    int serve_stale = c->stale && (t->hold || (rc && rc != CP_ECANCELED && !t->started));
    if (!c->ops || c->detached) {
        if (rc && rc != CP_ECANCELED && !c->ops)
            cp_log(ds->env.log, CP_LOG_WARN, "background refresh failed; stale answer kept",
                   (struct cp_kv[]){CP_KV_S("error", cp_err_text(&c->err)),
                                    CP_KV_S("dsUid", ds->cfg->uid)},
                   2);
        finish(c, c->detached ? CP_ECANCELED : rc);
        return;
    }
    if (serve_stale) {
        c->result = PROXY_STALE;
        c->stale_sie = 1;
        count(ds, c->kind, PROXY_STALE);
        cp_log(ds->env.log, CP_LOG_WARN, "upstream failing: serving a stale answer",
               (struct cp_kv[]){CP_KV_S("error", rc ? cp_err_text(&c->err) : "5xx answer"),
                                CP_KV_I("status", t->status), CP_KV_S("dsUid", ds->cfg->uid)},
               3);
        c->transformed = c->recipe != NULL;
        answer_entry(c, c->stale, PROXY_STALE);
        return;
    }
    if (!rc && t->revalidated) {
        /* the stored answer holds: sent as renewed (or as stored, when it may not be kept) */
        struct cache_entry *e = c->writes.e ? cache_entry_ref(c->writes.e) : renewed_entry(c);
        if (e) {
            c->result = PROXY_REVALIDATED;
            c->transformed = c->recipe != NULL;
            count(ds, c->kind, PROXY_REVALIDATED);
            answer_entry(c, e, PROXY_REVALIDATED);
            cache_entry_unref(e);
            return;
        }
        rc = cp_err_set(&c->err, CP_ENOMEM, "out of memory");
    }
    c->result = t->result;
    count(ds, c->kind, t->result);
    if (rc) {
        /* the front answers the error, or, when part of the answer already left, fails */
        fail(c, rc, &c->err);
        return;
    }
    if (!t->deferred && c->lag && !c->cancelled) {
        /* the transfer is over but the front is behind: the rest from what was kept */
        c->phase = PH_ANSWER;
        c->ans_p = t->body.p;
        c->ans_len = t->body.len;
        c->ans_off = c->lag_off;
        c->lag = 0;
        pump(c);
        return;
    }
    if (!t->deferred) {
        finish(c, c->cancelled ? CP_ECANCELED : 0);
        return;
    }
    /* a query's answer: its frame, or the upstream's own answer when it made none */
    if (c->transformed) {
        struct proxy_header h[] = {{"X-Cache", result_names[t->result]}};
        answer_buf(c, t->status, h, 1, &c->mine);
        return;
    }
    if (t->status >= 200 && t->status <= 299 && c->transform_rc) {
        fail(c, c->err.code, &c->err);
        return;
    }
    struct proxy_header out[CP_MAX_OUT_HEADERS];
    size_t k = client_headers(t->rh, t->nrh, result_names[t->result], NULL, out);
    answer_buf(c, t->status, out, k, &t->raw);
}

static void transform_work(struct proxy_call *c)
{
    struct tee *t = &c->t;
    static const char *const names[] = {"hit", "miss", "stale", "bypass"};
    c->transform_rc = proxy__frame_transform(c->recipe, t->raw.p ? t->raw.p : "", t->raw.len,
                                             names[t->result], &c->mine, &c->keep, &c->err);
    if (!c->transform_rc) {
        c->transformed = 1;
        if (c->keep.len > (size_t)c->ds->cfg->cache.max_entry_bytes)
            t->cacheable = 0;
    } else if (c->transform_rc == CP_EUPSTREAM) {
        cp_err_set(&c->err, CP_EUPSTREAM, "upstream answer to %s %s is not JSON", c->a.method,
                   c->a.path);
    }
}

static void transform_done(struct proxy_call *c) { conclude(c); }

static void fetched(struct proxy_call *c)
{
    struct tee *t = &c->t;
    if (!c->fetch_rc && t->deferred && !t->hold && t->status >= 200 && t->status <= 299) {
        c->phase = PH_TRANSFORM;
        offload(c, c->ds->env.cpu, transform_work, transform_done);
        return;
    }
    conclude(c);
}

static void creds_ready(void *arg, int rc, const struct cp_err *err)
{
    struct proxy_call *c = arg;
    struct proxy_ds *ds = c->ds;
    if (!rc && c->cancelled && !(c->leading && cache_flight_waiters(ds->flights, &c->key)))
        rc = cp_err_set(&c->err, CP_ECANCELED, "request cancelled by the client");
    else if (rc)
        c->err = *err;
    if (!rc) {
        if (c->cancelled)
            c->detached = 1;
        struct proxy__upstream_req rq = {.method = c->a.method,
                                         .path_query = c->pq.p,
                                         .headers = c->up,
                                         .nheaders = c->nup,
                                         .creds = &c->creds,
                                         .body = c->a.body,
                                         .body_len = c->a.body_len,
                                         .timeout_ms = ds->cfg->timeout_ms,
                                         .decode = c->t.deferred};
        struct proxy__upstream_sink sk = {tee_head, tee_body, tee_done, c};
        c->phase = PH_FETCH;
        rc = proxy__fetch_start(ds, &rq, &sk, &c->x, &c->err);
        if (!rc)
            return;
    }
    c->fetch_rc = rc;
    conclude(c);
}

/* Builds the upstream request and asks for its credentials. */
static void creds_step(struct proxy_call *c)
{
    struct proxy_ds *ds = c->ds;
    c->phase = PH_CREDS;
    char *enc = proxy__path_encode(c->a.path);
    int rc = enc ? cp_buf_addf(&c->pq, "%s%s%s%s", ds->base_path, enc,
                               c->a.query ? "?" : "", c->a.query ? c->a.query : "")
                 : CP_ENOMEM;
    free(enc);
    if (rc) {
        c->fetch_rc = cp_err_set(&c->err, CP_ENOMEM, "out of memory");
        conclude(c);
        return;
    }
    /* the headers sent: the forwarded ones, or for a conditional refresh ours in place of
     * the client's own conditions (the client's are answered here, from the entry) */
    c->nup = 0;
    for (size_t i = 0; i < c->a.nfwd; i++)
        if (!c->reval || (strcasecmp(c->a.fwd[i].name, "If-None-Match") &&
                          strcasecmp(c->a.fwd[i].name, "If-Modified-Since")))
            c->up[c->nup++] = c->a.fwd[i];
    if (c->reval && c->reval->etag)
        c->up[c->nup++] = (struct proxy_header){"If-None-Match", c->reval->etag};
    if (c->reval && c->reval->last_modified)
        c->up[c->nup++] = (struct proxy_header){"If-Modified-Since", c->reval->last_modified};
    c->og = (struct auth_outgoing){.user = &c->user,
                                   .method = c->a.method,
                                   .path_query = c->pq.p,
                                   .body = c->a.body,
                                   .body_len = c->a.body_len,
                                   .fwd_authorization = c->a.fwd_authorization,
                                   .fwd_id_token = c->a.fwd_id_token,
                                   .now_unix = cp_now_ms() / 1000};
    auth_inject_async(ds->auth, &c->og, &c->creds, creds_ready, c);
}

/* Starts the upstream part of a call: the tee set up for its kind of answer. */
static void fetch_step(struct proxy_call *c)
{
    c->t.result = c->use_cache ? PROXY_MISS : PROXY_BYPASS;
    c->t.cacheable = c->use_cache;
    c->t.ttl_ms = c->ttl;
    c->t.deferred = c->recipe != NULL;
    creds_step(c);
}

/* ---- another process fetching the same key (Redis lock) -------------------------------------- */

static void poll_work(struct proxy_call *c)
{
    struct cp_err err;
    cache_entry_unref(c->got);
    c->got = NULL;
    if (cache_get(c->ds->store, &c->key, &c->got, &err) != 0) {
        c->got_rc = -1;
    } else if (c->got && c->got->status < 100) {
        /* a Vary or hit-for-miss note (the other process's answer varies, or was its caller's
         * alone): nothing to answer with here; this call asks the upstream itself */
        cache_entry_unref(c->got);
        c->got = NULL;
        c->got_rc = 0;
    } else if (c->got && cache_entry_freshness(c->got, cp_now_ms()) == CACHE_FRESH) {
        c->got_rc = 1;
    } else if (cache_lock_held(c->ds->store, &c->key) == 0) {
        c->got_rc = 0; /* the other process is done, without an entry to share */
    } else {
        c->got_rc = 2; /* still at it */
    }
}

static void poll_fire(void *arg);

static void poll_done(struct proxy_call *c)
{
    if (c->cancelled) {
        publish(c, NULL);
        finish(c, CP_ECANCELED);
        return;
    }
    if (c->got_rc == 1) {
        struct cache_entry *got = c->got;
        c->got = NULL;
        count_coalesced(c->ds);
        c->t.result = PROXY_HIT;
        struct cache_outcome o = {.kind = CACHE_OUTCOME_ANSWER, .e = got,
                                  .transformed = c->recipe != NULL};
        c->leading = 0;
        cache_flight_done(c->ds->flights, &c->key, &o);
        c->result = PROXY_HIT;
        c->transformed = c->recipe != NULL;
        count(c->ds, c->kind, PROXY_HIT);
        answer_entry(c, got, PROXY_HIT);
        cache_entry_unref(got);
        return;
    }
    if (c->got_rc == 2 && cp_mono_ns() < c->lock_deadline_ns) {
        c->timer = cp_timer_start(c->ds->loop, STREAM_LOCK_POLL_MS, poll_fire, c);
        if (c->timer)
            return;
    }
    fetch_step(c); /* gone without an entry, Redis failed, or waited long enough */
}

static void poll_fire(void *arg)
{
    struct proxy_call *c = arg;
    c->timer = NULL;
    offload(c, store_pool(c->ds), poll_work, poll_done);
}

static void lock_work(struct proxy_call *c)
{
    c->got_rc = cache_lock(c->ds->store, &c->key, c->ds->cfg->timeout_ms + 1000,
                           &c->lock_token);
}

static void lock_done(struct proxy_call *c)
{
    if (c->cancelled) {
        c->locked = c->got_rc == 1;
        c->fetch_rc = CP_ECANCELED;
        conclude(c); /* unlocks, tells the waiters to retry, ends the call */
        return;
    }
    if (c->got_rc == 0) {
        /* another process is fetching it: wait for its entry, bounded */
        int64_t limit = c->ds->cfg->timeout_ms < STREAM_LOCK_WAIT_MS ? c->ds->cfg->timeout_ms
                                                                     : STREAM_LOCK_WAIT_MS;
        c->lock_deadline_ns = cp_mono_ns() + limit * 1000000;
        c->timer = cp_timer_start(c->ds->loop, STREAM_LOCK_POLL_MS, poll_fire, c);
        if (c->timer)
            return;
    }
    c->locked = c->got_rc == 1;
    fetch_step(c);
}

static void lock_step(struct proxy_call *c)
{
    c->phase = PH_LOCK;
    if (c->a.refresh || !(c->ds->store_caps & CACHE_CAP_LOCK)) {
        fetch_step(c);
        return;
    }
    offload(c, store_pool(c->ds), lock_work, lock_done);
}

/* ---- waiting for an identical call ------------------------------------------------------------ */

static void outcome_arrived(struct proxy_call *c);

static void waiter_fn(struct cache_waiter *w, struct cache_outcome *o)
{
    struct proxy_call *c = w->ctx;
    c->outcome = *o; /* taken: disposed by the call */
    c->waiting = 0;
    if (c->ds->env.ctr)
        atomic_fetch_sub(&c->ds->env.ctr->waiting, 1);
    if (c->timer) {
        cp_timer_cancel(c->timer);
        c->timer = NULL;
    }
    /* not from inside the leader's completion: the next loop turn */
    if (post(c, outcome_arrived) != 0)
        finish(c, CP_ECANCELED);
}

static void wait_expired(void *arg)
{
    struct proxy_call *c = arg;
    c->timer = NULL;
    if (!cache_flight_leave(c->ds->flights, &c->key, &c->waiter))
        return; /* its outcome is on the way */
    c->waiting = 0;
    if (c->ds->env.ctr)
        atomic_fetch_sub(&c->ds->env.ctr->waiting, 1);
    c->outcome.kind = CACHE_OUTCOME_ERROR;
    c->outcome.code = CP_ETIMEDOUT;
    snprintf(c->outcome.msg, sizeof c->outcome.msg,
             "an identical upstream call did not finish within %lld s",
             (long long)(c->ds->cfg->timeout_ms / 1000 + 1));
    outcome_arrived(c);
}

/* A waiting call gets its leader's outcome: the shared answer, the stale entry when the
 * upstream failed and staleIfError allows one, or the shared error. */
static void outcome_arrived(struct proxy_call *c)
{
    struct proxy_ds *ds = c->ds;
    struct cache_outcome *o = &c->outcome;
    if (c->phase == PH_DONE)
        return;
    if (c->cancelled) {
        finish(c, CP_ECANCELED);
        return;
    }
    if (o->kind == CACHE_OUTCOME_RETRY) {
        int side_by_side = o->hit_for_miss;
        cache_outcome_dispose(o);
        if (side_by_side) { /* the answer cannot be shared: every waiter asks for its own */
            c->hit_for_miss = 1;
            fetch_step(c);
        } else { /* the answer lives under another key, or the leader gave up: look again */
            lookup_step(c);
        }
        return;
    }
    if (o->kind == CACHE_OUTCOME_ANSWER && !o->failed) {
        count_coalesced(ds);
        c->collapsed = 1;
        c->result = PROXY_HIT;
        c->transformed = o->transformed;
        count(ds, c->kind, PROXY_HIT);
        answer_entry(c, o->e, PROXY_HIT);
        return;
    }
    if (c->stale) { /* the upstream failed for the leader: staleIfError, per call */
        c->result = PROXY_STALE;
        c->stale_sie = 1;
        c->transformed = c->recipe != NULL;
        count(ds, c->kind, PROXY_STALE);
        answer_entry(c, c->stale, PROXY_STALE);
        return;
    }
    c->result = PROXY_MISS;
    count(ds, c->kind, PROXY_MISS);
    if (o->kind == CACHE_OUTCOME_ANSWER) {
        count_coalesced(ds);
        c->collapsed = 1;
        c->transformed = o->transformed;
        answer_entry(c, o->e, PROXY_MISS);
        return;
    }
    struct cp_err err;
    cp_err_set(&err, o->code, "%s", o->msg);
    fail(c, o->code, &err);
}

/* A miss: one fetch per key in this process; the others wait for its outcome. */
static void miss_step(struct proxy_call *c)
{
    if (c->hit_for_miss) {
        fetch_step(c);
        return;
    }
    c->phase = PH_WAIT;
    c->waiter.fn = waiter_fn;
    c->waiter.ctx = c;
    int lead = cache_flight_join(c->ds->flights, &c->key, &c->waiter);
    if (lead == 0) {
        c->waiting = 1;
        if (c->ds->env.ctr)
            atomic_fetch_add(&c->ds->env.ctr->waiting, 1);
        c->timer = cp_timer_start(c->ds->loop, c->ds->cfg->timeout_ms + 1000, wait_expired, c);
        return;
    }
    c->leading = lead == 1; /* CP_ENOMEM: fetch without a flight nobody can join */
    lock_step(c);
}

/* ---- lookup --------------------------------------------------------------------------------- */

static void lookup_work(struct proxy_call *c)
{
    struct cp_err err = {0};
    c->got = NULL;
    c->got_rc = store_lookup(c->ds, c->kind, &c->a, &c->user, c->scope, c->ttl_override_ms,
                             c->recipe, &c->key, &c->primary, &c->via_vary, &c->got, &err);
    if (c->got_rc)
        backend_failed(c->ds, &err);
}

/* An expired answer with a validator: the fetch asks whether it still holds (a 304 renews it
 * without its body). */
static int has_validator(const struct cache_entry *e)
{
    return e->status == 200 && (e->etag || e->last_modified);
}

static void lookup_done(struct proxy_call *c)
{
    struct cache_entry *e = c->got;
    c->got = NULL;
    if (c->cancelled) {
        cache_entry_unref(e);
        finish(c, CP_ECANCELED);
        return;
    }
    int64_t now = cp_now_ms();
    if (e && e->status == CACHE_STATUS_HIT_FOR_MISS) {
        int holds = cache_entry_freshness(e, now) == CACHE_FRESH;
        cache_entry_unref(e);
        if (holds) { /* the last answer could not be shared: no waiting for each other */
            c->hit_for_miss = 1;
            fetch_step(c);
            return;
        }
        e = NULL;
    }
    if (e && e->status < 100) { /* a note where an answer should be: treat as absent */
        cache_entry_unref(e);
        e = NULL;
    }
    if (e) {
        /* a query reader's own lifetime bounds what it accepts (cacheTtl is per query) */
        enum cache_freshness f =
            cache_entry_freshness_for(e, now, c->kind == CACHE_KIND_QUERY ? c->ttl : -1);
        if (c->a.refresh) /* renewed on request: never answered from, but maybe validated */
            f = CACHE_EXPIRED;
        /* stale while one refresh runs; a call that cannot start one (forwardOAuth: the user's
         * token is not kept; a request with a body) fetches instead, as after expiry */
        if (f == CACHE_STALE_SWR &&
            (c->a.body_len || c->ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH))
            f = CACHE_EXPIRED;
        if (f == CACHE_FRESH || f == CACHE_STALE_SWR) {
            int r = f == CACHE_FRESH ? PROXY_HIT : PROXY_STALE;
            c->result = r;
            c->transformed = c->recipe != NULL;
            count(c->ds, c->kind, r);
            if (f == CACHE_STALE_SWR)
                refresh_start(c, e);
            answer_entry(c, e, r);
            cache_entry_unref(e);
            return;
        }
        if (has_validator(e) && c->ds->cfg->cache.revalidate)
            c->reval = cache_entry_ref(e);
        if (f == CACHE_STALE_SIE)
            c->stale = e;
        else
            cache_entry_unref(e);
    }
    miss_step(c);
}

static void lookup_step(struct proxy_call *c)
{
    c->phase = PH_LOOKUP;
    if (!c->use_cache) {
        fetch_step(c);
        return;
    }
    /* a fresh look: a retry after a leader forgets what an earlier one found */
    c->via_vary = 0;
    c->key = c->primary;
    cache_entry_unref(c->stale);
    cache_entry_unref(c->reval);
    c->stale = c->reval = NULL;
    offload(c, store_pool(c->ds), lookup_work, lookup_done);
}

/* Whether the call may use the cache, and its key; then the lookup. */
static void key_step(struct proxy_call *c)
{
    c->use_cache = cacheable_key(c->ds, c->kind, &c->a, &c->user, c->scope, c->ttl_override_ms,
                                 c->recipe, NULL, &c->ttl, &c->key);
    c->primary = c->key;
    lookup_step(c);
}

/* ---- admission ------------------------------------------------------------------------------ */

static void authorized(void *arg, const struct auth_decision *d)
{
    struct proxy_call *c = arg;
    if (c->cancelled) {
        finish(c, CP_ECANCELED);
        return;
    }
    if (!d->allow) {
        struct cp_err err;
        fail(c, proxy__denied(&c->a, d, &err), &err);
        return;
    }
    if (c->in->check_only) {
        finish(c, 0);
        return;
    }
    c->scope = d->scope;
    if (c->ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH && c->a.fwd_authorization &&
        (c->user_token = strdup(c->a.fwd_authorization)))
        proxy__user_token(c->ds, c->user_token, 1);
    key_step(c);
}

static void start(struct proxy_call *c)
{
    struct cp_err err = {0};
    int rc = proxy__admit(c->ds, c->in, &c->a, &err);
    if (rc) {
        fail(c, rc, &err);
        return;
    }
    c->phase = PH_AUTHORIZE;
    proxy__authorize(c->ds, &c->a, &c->user, &c->areq, authorized, c);
}

static struct proxy_call *call_new(struct proxy_ds *ds, const struct proxy__call_ops *ops,
                                   void *ctx)
{
    struct proxy_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1); /* the pipeline's */
    proxy__ds_ref(ds);
    c->ds = ds;
    c->ops = ops;
    c->ctx = ctx;
    c->scope = AUTH_SCOPE_DEFAULT;
    c->ttl_override_ms = -1;
    if (ds->env.ctr)
        atomic_fetch_add(&ds->env.ctr->calls, 1);
    return c;
}

int proxy__call_start(struct proxy_ds *ds, const struct proxy__incoming *in,
                      const struct proxy__call_ops *ops, void *ctx, int64_t ttl_override_ms,
                      const char *recipe, struct proxy_call **out)
{
    struct proxy_call *c = call_new(ds, ops, ctx);
    if (!c || (recipe && !(c->recipe = strdup(recipe)))) {
        if (c) {
            if (ds->env.ctr)
                atomic_fetch_sub(&ds->env.ctr->calls, 1);
            call_unref(c);
        }
        return CP_ENOMEM;
    }
    c->kind = in->kind;
    c->in = in;
    c->user = *in->user;
    c->ttl_override_ms = ttl_override_ms;
    call_ref(c); /* the front's */
    *out = c;
    if (post(c, start) != 0)
        finish(c, CP_ECANCELED); /* the loop has stopped: the process is ending */
    return 0;
}

/* ---- background refresh ------------------------------------------------------------------- */

/* Copies s into the block at *at (pointer into own), returns the copy. */
static const char *keep_str(char **at, const char *s)
{
    if (!s)
        return NULL;
    char *d = *at;
    size_t n = strlen(s) + 1;
    memcpy(d, s, n);
    *at += n;
    return d;
}

static size_t str_size(const char *s) { return s ? strlen(s) + 1 : 0; }

static void refresh_go(struct proxy_call *c) { fetch_step(c); }

/* Starts one background refresh of the parent's key unless one is under way: a call without
 * a front, with its own copies of what it needs; conditional when the stale entry e has a
 * validator. */
static void refresh_start(struct proxy_call *parent, struct cache_entry *e)
{
    struct proxy_ds *ds = parent->ds;
    /* forwardOAuth: the user's token cannot be kept for a later call: no background refresh,
     * the next request after expiry fetches */
    if (ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH)
        return;
    struct proxy_call *c = call_new(ds, NULL, NULL);
    if (!c)
        return;
    c->kind = parent->kind;
    c->key = parent->key;
    c->primary = parent->primary;
    c->via_vary = parent->via_vary;
    c->use_cache = 1;
    if (has_validator(e) && ds->cfg->cache.revalidate)
        c->reval = cache_entry_ref(e);
    c->ttl = parent->ttl;
    c->scope = parent->scope;
    c->waiter.fn = waiter_fn;
    c->waiter.ctx = c;
    int lead = cache_flight_join(ds->flights, &c->key, &c->waiter);
    if (lead != 1) {
        /* someone is already fetching it */
        if (lead == 0)
            cache_flight_leave(ds->flights, &c->key, &c->waiter);
        c->phase = PH_DONE;
        if (ds->env.ctr)
            atomic_fetch_sub(&ds->env.ctr->calls, 1);
        call_unref(c);
        return;
    }
    c->leading = 1;
    const struct proxy__admitted *pa = &parent->a;
    const struct cp_user *pu = &parent->user;
    size_t need = str_size(pa->query) + str_size(pu->login) + str_size(pu->email) +
                  str_size(pu->name) + str_size(parent->recipe);
    for (size_t i = 0; i < pa->nfwd; i++)
        need += str_size(pa->fwd[i].name) + str_size(pa->fwd[i].value);
    char *at = c->own = malloc(need ? need : 1);
    if (!c->own || (parent->recipe && !(c->recipe = strdup(parent->recipe)))) {
        c->fetch_rc = CP_ENOMEM;
        publish(c, NULL);
        finish(c, CP_ENOMEM);
        return;
    }
    memcpy(c->a.method, pa->method, sizeof c->a.method);
    if (proxy__admitted_set_path(&c->a, pa->path) != 0) {
        c->fetch_rc = CP_ENOMEM;
        publish(c, NULL);
        finish(c, CP_ENOMEM);
        return;
    }
    c->a.query = keep_str(&at, pa->query);
    for (size_t i = 0; i < pa->nfwd; i++) {
        c->a.fwd[i].name = keep_str(&at, pa->fwd[i].name);
        c->a.fwd[i].value = keep_str(&at, pa->fwd[i].value);
    }
    c->a.nfwd = pa->nfwd;
    c->user = *pu;
    c->user.login = keep_str(&at, pu->login);
    c->user.email = keep_str(&at, pu->email);
    c->user.name = keep_str(&at, pu->name);
    /* only bodiless (GET/HEAD-like) calls are revalidated; no user token is kept */
    if (post(c, refresh_go) != 0) {
        publish(c, NULL);
        finish(c, CP_ECANCELED);
    }
}

/* ---- the front's signals -------------------------------------------------------------------- */

/* The transfer stops now: its client is gone and no identical call waits for its answer. */
static void abort_fetch(struct proxy_call *c)
{
    proxy__fetch_abort(c->x);
    c->x = NULL;
    c->fetch_rc = cp_err_set(&c->err, CP_ECANCELED, "request cancelled by the client");
    conclude(c);
}

/* A leader cancelled while identical calls waited goes on for them; once the last of them has
 * left too (cancelled, timed out) nobody wants the answer: checked every DETACHED_CHECK_MS. */
static void detached_check(void *arg)
{
    struct proxy_call *c = arg;
    c->timer = NULL;
    if (c->phase != PH_FETCH || !c->x)
        return;
    if (cache_flight_waiters(c->ds->flights, &c->key) == 0)
        abort_fetch(c);
    else
        c->timer = cp_timer_start(c->ds->loop, DETACHED_CHECK_MS, detached_check, c);
}

static void on_resume(struct proxy_call *c)
{
    if (c->phase == PH_FETCH && c->x && c->lag) {
        if (streams_to_front(c))
            catch_up(c);
    } else if (c->phase == PH_FETCH && c->x) {
        proxy__fetch_resume(c->x); /* the transfer knows whether it is paused */
    } else if (c->phase == PH_ANSWER && c->paused) {
        c->paused = 0;
        pump(c);
    }
}

void proxy_call_resume(struct proxy_call *c)
{
    if (c)
        post(c, on_resume);
}

static void on_cancel(struct proxy_call *c)
{
    if (c->phase == PH_DONE || c->cancelled)
        return;
    c->cancelled = 1;
    switch (c->phase) {
    case PH_FETCH:
        if (c->leading && cache_flight_waiters(c->ds->flights, &c->key) > 0) {
            /* identical calls wait for this answer: the transfer goes on for them */
            c->detached = 1;
            proxy__fetch_resume(c->x);
            if (!c->timer)
                c->timer = cp_timer_start(c->ds->loop, DETACHED_CHECK_MS, detached_check, c);
        } else if (c->x) {
            abort_fetch(c);
        }
        break;
    case PH_WAIT:
        if (c->waiting)
            finish(c, CP_ECANCELED);
        break;
    case PH_LOCK:
        if (c->timer) { /* polling for another process's entry, nothing else under way */
            publish(c, NULL);
            finish(c, CP_ECANCELED);
        }
        break;
    case PH_ANSWER:
        if (c->paused)
            finish(c, CP_ECANCELED);
        break;
    default:
        break; /* a step is under way: its continuation sees the flag */
    }
}

void proxy_call_cancel(struct proxy_call *c)
{
    if (c)
        post(c, on_cancel);
}
