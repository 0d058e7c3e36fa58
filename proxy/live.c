/*
 * live.c - streams (Grafana Live): a channel names a query to poll, and one poller per
 * (instance, channel, cache scope) polls it whatever the number of subscribers.
 *
 * Channels. "poll/<unpadded base64url of the stream query>", the stream query being the
 * request and shaping keys of a QueryData query (method, path, params, headers, body, root,
 * columns, format, refId) plus intervalMs (the poll interval) and rangeMs (the window each
 * poll asks for, ending at the poll's time). Grafana refuses channels over 160 characters, so
 * a longer query gets "poll/id/<id>", id a hash of the instance and the query, registered when
 * QueryData answers a query with live: true (in this process, and in the cache when it is
 * shared, so another replica resolves it too).
 *
 * Polls. Every interval, at multiples of it on the wall clock, the poller runs the query
 * through the pipeline (admission, authorization, credentials, cache, coalescing) for
 * [t - rangeMs, t) with the interval as its lifetime: pollers of several processes sharing
 * Redis make the same key at the same moment, and the cache's lock and entry leave one
 * upstream call per interval between them. Each poll's frame (asked in the compact form)
 * becomes a packet per subscriber in Grafana's frame JSON: the schema when it changed, then
 * the rows newer than what that subscriber already has (by the time column; a frame without
 * one is sent whole). An upstream failure is a packet whose schema carries an error notice;
 * the stream goes on.
 *
 * Threads: subscribers attach and leave on the instance's loop, where the poll timer runs;
 * packets are built on the cpu pool. A poller's subscriber list is under its mutex.
 */
#include "proxy_int.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE_MIN_INTERVAL_MS 500
#define LIVE_MAX_INTERVAL_MS (24LL * 3600 * 1000)
#define LIVE_MAX_RANGE_MS (366LL * 24 * 3600 * 1000)
#define LIVE_DEFAULT_RANGE_MS (3600LL * 1000)
#define LIVE_MAX_CHANNEL 160 /* Grafana's limit on a whole channel name */
#define LIVE_MAX_PATH 8192
#define LIVE_ID_LEN 22
#define LIVE_MAX_IDS 4096
#define LIVE_ID_TTL_MS (24LL * 3600 * 1000)

static const char *const stream_keys[] = {"method", "path", "params", "headers", "body",
                                          "root",   "columns", "format", "refId"};

/* ---- base64url ----------------------------------------------------------------------------- */

static char *b64url(const unsigned char *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (!o)
        return NULL;
    int len = EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    while (len > 0 && o[len - 1] == '=')
        len--;
    o[len] = 0;
    for (int i = 0; i < len; i++)
        o[i] = o[i] == '+' ? '-' : o[i] == '/' ? '_' : o[i];
    return o;
}

/* Decodes unpadded base64url (NUL-terminated result); NULL when s is not that. */
static char *b64url_decode(const char *s, size_t *n)
{
    size_t l = strlen(s);
    if (!l || l % 4 == 1 || l > LIVE_MAX_PATH)
        return NULL;
    size_t pad = (4 - l % 4) % 4;
    char *in = malloc(l + pad + 1);
    unsigned char *out = malloc((l + pad) / 4 * 3 + 1);
    if (!in || !out)
        goto bad;
    for (size_t i = 0; i < l; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            goto bad;
        in[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    memset(in + l, '=', pad);
    in[l + pad] = 0;
    int got = EVP_DecodeBlock(out, (unsigned char *)in, (int)(l + pad));
    if (got < 0 || (size_t)got < pad)
        goto bad;
    free(in);
    *n = (size_t)got - pad;
    out[*n] = 0;
    return (char *)out;
bad:
    free(in);
    free(out);
    return NULL;
}

/* ---- stream queries -------------------------------------------------------------------------- */

/* The scope a data source's answers are shared in (forwardOAuth makes them per user). */
static enum cfg_scope answer_scope(const struct proxy_ds *ds)
{
    return ds->cfg->auth_type == CFG_AUTH_FORWARD_OAUTH ? CFG_SCOPE_USER : ds->cfg->cache.scope;
}

/* Whether the data source's answers are per user (then a channel is its owner's alone). */
static int per_user(const struct proxy_ds *ds) { return answer_scope(ds) == CFG_SCOPE_USER; }

/* The canonical text of a stream query (with its owner's login when answers are per user);
 * NULL on ENOMEM. */
static char *stream_text(json_t *model, const char *ref_id, int64_t interval_ms, int64_t range_ms,
                         const char *owner)
{
    json_t *q = json_object();
    for (size_t i = 0; q && i < sizeof stream_keys / sizeof stream_keys[0]; i++) {
        json_t *v = json_object_get(model, stream_keys[i]);
        if (v && !json_is_null(v))
            json_object_set(q, stream_keys[i], v);
    }
    if (q && ref_id && !json_object_get(q, "refId"))
        json_object_set_new(q, "refId", json_string(ref_id));
    if (q && owner && json_object_set_new(q, "owner", json_string(owner))) {
        json_decref(q);
        return NULL;
    }
    if (q && (json_object_set_new(q, "intervalMs", json_integer(interval_ms)) ||
              json_object_set_new(q, "rangeMs", json_integer(range_ms)))) {
        json_decref(q);
        return NULL;
    }
    char *t = q ? json_dumps(q, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(q);
    return t;
}

/* A stream query from a channel: an object of known keys with a sane interval and range. */
static json_t *stream_parse(const char *text, size_t n, const char **why)
{
    json_error_t je;
    json_t *q = json_loadb(text, n, 0, &je);
    const char *k;
    json_t *v;
    *why = "the channel does not name a query";
    if (!json_is_object(q))
        goto bad;
    json_object_foreach(q, k, v)
    {
        int known = !strcmp(k, "intervalMs") || !strcmp(k, "rangeMs") ||
                    (!strcmp(k, "owner") && json_is_string(v));
        for (size_t i = 0; i < sizeof stream_keys / sizeof stream_keys[0]; i++)
            known |= !strcmp(k, stream_keys[i]);
        if (!known) {
            *why = "the channel's query has an unknown key";
            goto bad;
        }
    }
    json_t *iv = json_object_get(q, "intervalMs"), *rv = json_object_get(q, "rangeMs");
    if (!json_is_integer(iv) || json_integer_value(iv) < 1 ||
        json_integer_value(iv) > LIVE_MAX_INTERVAL_MS || (rv && !json_is_integer(rv)) ||
        (rv && (json_integer_value(rv) < 0 || json_integer_value(rv) > LIVE_MAX_RANGE_MS))) {
        *why = "the channel's intervalMs or rangeMs is out of range";
        goto bad;
    }
    return q;
bad:
    json_decref(q);
    return NULL;
}

static int64_t stream_interval(json_t *q)
{
    int64_t i = json_integer_value(json_object_get(q, "intervalMs"));
    return i < LIVE_MIN_INTERVAL_MS ? LIVE_MIN_INTERVAL_MS : i;
}

static int64_t stream_range(json_t *q)
{
    json_t *r = json_object_get(q, "rangeMs");
    return r ? json_integer_value(r) : LIVE_DEFAULT_RANGE_MS;
}

/* ---- ids of long channels -------------------------------------------------------------------- */

struct live_id {
    char id[LIVE_ID_LEN + 1];
    char *ds_key; /* the instance's key id: ids of different data sources never mix */
    char *text;
};

static struct {
    pthread_mutex_t mu;
    struct live_id ids[LIVE_MAX_IDS]; /* a ring: the oldest registration goes first */
    size_t next;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The store key under which a shared cache keeps an id's query. */
static int id_key(const struct proxy_ds *ds, const char *id, struct cache_key *k)
{
    static const unsigned char zero[32];
    char path[64];
    snprintf(path, sizeof path, "/live/%s", id);
    struct cache_key_input in = {.ds_uid = ds->cfg->key_id,
                                 .fingerprint = zero, /* survives settings changes */
                                 .kind = CACHE_KIND_QUERY,
                                 .method = "LIVE",
                                 .path = path,
                                 .scope = CFG_SCOPE_SHARED};
    return cache_key_derive(&in, k);
}

static char *id_lookup_local(const struct proxy_ds *ds, const char *id)
{
    char *t = NULL;
    pthread_mutex_lock(&reg.mu);
    for (size_t i = 0; i < LIVE_MAX_IDS && !t; i++)
        if (reg.ids[i].text && !strcmp(reg.ids[i].id, id) &&
            !strcmp(reg.ids[i].ds_key, ds->cfg->key_id))
            t = strdup(reg.ids[i].text);
    pthread_mutex_unlock(&reg.mu);
    return t;
}

struct id_write {
    struct proxy_ds *ds;
    char id[LIVE_ID_LEN + 1];
    char *text;
};

static void id_write_job(void *arg)
{
    struct id_write *w = arg;
    struct cache_key k;
    struct cp_err err = {0};
    int64_t now = cp_now_ms();
    struct cache_entry_spec sp = {.status = 200,
                                  .stored_ms = now,
                                  .ttl_ms = LIVE_ID_TTL_MS,
                                  .path = "/live",
                                  .body = w->text,
                                  .body_len = strlen(w->text)};
    struct cache_entry *e = cache_entry_new(&sp);
    if (e && id_key(w->ds, w->id, &k) == 0 && cache_set(w->ds->store, &k, e, &err) != 0)
        cp_log(w->ds->env.log, CP_LOG_WARN, "live: could not share a channel id through redis",
               NULL, 0);
    cache_entry_unref(e);
    proxy_ds_free(w->ds);
    free(w->text);
    free(w);
}

/* Registers id -> text here and, with a shared cache, there (in the background). */
static void id_register(struct proxy_ds *ds, const char *id, const char *text)
{
    pthread_mutex_lock(&reg.mu);
    int known = 0;
    for (size_t i = 0; i < LIVE_MAX_IDS && !known; i++)
        known = reg.ids[i].text && !strcmp(reg.ids[i].id, id) &&
                !strcmp(reg.ids[i].ds_key, ds->cfg->key_id);
    if (!known) {
        struct live_id *slot = &reg.ids[reg.next];
        char *k = strdup(ds->cfg->key_id), *t = strdup(text);
        if (k && t) {
            free(slot->ds_key);
            free(slot->text);
            snprintf(slot->id, sizeof slot->id, "%s", id);
            slot->ds_key = k;
            slot->text = t;
            reg.next = (reg.next + 1) % LIVE_MAX_IDS;
        } else {
            free(k);
            free(t);
        }
    }
    pthread_mutex_unlock(&reg.mu);
    if (known || !ds->store || !(ds->store_caps & CACHE_CAP_SHARED))
        return;
    struct id_write *w = calloc(1, sizeof *w);
    if (!w || !(w->text = strdup(text))) {
        free(w);
        return;
    }
    snprintf(w->id, sizeof w->id, "%s", id);
    proxy__ds_ref(ds);
    w->ds = ds;
    if (cp_pool_submit(ds->env.io, id_write_job, w) != 0)
        id_write_job(w);
}

void proxy__live_forget_all(void)
{
    pthread_mutex_lock(&reg.mu);
    for (size_t i = 0; i < LIVE_MAX_IDS; i++) {
        free(reg.ids[i].ds_key);
        free(reg.ids[i].text);
        memset(&reg.ids[i], 0, sizeof reg.ids[i]);
    }
    pthread_mutex_unlock(&reg.mu);
}

char *proxy__live_channel(struct proxy_ds *ds, json_t *model, const char *ref_id,
                          int64_t interval_ms, int64_t range_ms, const struct cp_user *user)
{
    const char *owner = NULL;
    if (per_user(ds))
        owner = user && user->present && user->login ? user->login : "";
    if (interval_ms < LIVE_MIN_INTERVAL_MS)
        interval_ms = LIVE_MIN_INTERVAL_MS;
    if (interval_ms > LIVE_MAX_INTERVAL_MS)
        interval_ms = LIVE_MAX_INTERVAL_MS;
    if (range_ms < 0 || range_ms > LIVE_MAX_RANGE_MS)
        range_ms = LIVE_DEFAULT_RANGE_MS;
    char *text = stream_text(model, ref_id, interval_ms, range_ms, owner);
    char *b = text ? b64url((const unsigned char *)text, strlen(text)) : NULL;
    char *out = NULL;
    if (b) {
        size_t need = strlen(ds->cfg->uid) + strlen(b) + 16;
        if ((out = malloc(need + 64)))
            snprintf(out, need + 64, "ds/%s/poll/%s", ds->cfg->uid, b);
    }
    if (out && strlen(out) > LIVE_MAX_CHANNEL) {
        /* too long for Grafana: a short id, registered */
        unsigned char md[32];
        unsigned int mdlen = 0;
        EVP_MD_CTX *h = EVP_MD_CTX_new();
        int ok = h && EVP_DigestInit_ex(h, cp_sha256(), NULL) &&
                 EVP_DigestUpdate(h, ds->cfg->key_id, strlen(ds->cfg->key_id) + 1) &&
                 EVP_DigestUpdate(h, text, strlen(text)) && EVP_DigestFinal_ex(h, md, &mdlen);
        EVP_MD_CTX_free(h);
        char *id = ok ? b64url(md, sizeof md) : NULL;
        if (id) {
            id[LIVE_ID_LEN] = 0;
            id_register(ds, id, text);
            snprintf(out, strlen(out) + 1, "ds/%s/poll/id/%s", ds->cfg->uid, id);
        } else {
            free(out);
            out = NULL;
        }
        free(id);
    }
    free(b);
    free(text);
    return out;
}

/* ---- resolving and checking a channel ------------------------------------------------------- */

/* One channel path on its way to a decision: resolved to its query, then checked. */
struct check {
    struct proxy_ds *ds;
    char *path;
    const struct cp_user *user;
    const struct proxy_header *headers;
    size_t nheaders;
    void (*done)(void *ctx, int status, const char *msg, json_t *q); /* q: borrowed */
    void *ctx;
    json_t *q;
    char *text; /* the model the check runs: the query with a lifetime */
    struct proxy_query pq;
    struct proxy_query_result res;
    struct proxy_batch *batch;
};

static void check_free(struct check *k)
{
    proxy_batch_release(k->batch);
    proxy_query_result_dispose(&k->res);
    json_decref(k->q);
    free(k->text);
    free(k->path);
    proxy_ds_free(k->ds);
    free(k);
}

static void check_end(struct check *k, int status, const char *msg)
{
    k->done(k->ctx, status, msg, k->q);
    check_free(k);
}

static void checked(void *arg)
{
    struct check *k = arg;
    struct proxy_query_result *r = &k->res;
    if (r->status == 200 && !r->error)
        check_end(k, PROXY_LIVE_OK, NULL);
    else
        check_end(k, r->status == 403 || r->status == 404 ? PROXY_LIVE_DENIED
                                                          : PROXY_LIVE_NOT_FOUND,
                  r->error ? r->error : "refused");
}

/* The channel's query through admission and authorization (nothing fetched), after its
 * owner: with answers per user, only the user named in the channel may subscribe or run it. */
static void check_query(struct check *k)
{
    json_t *ow = json_object_get(k->q, "owner");
    if (per_user(k->ds)) {
        const struct cp_user *u = k->user;
        if (!json_is_string(ow) || !u || !u->present || !u->login || !*u->login ||
            strcmp(json_string_value(ow), u->login)) {
            check_end(k, PROXY_LIVE_DENIED,
                      "this live channel is another user's (answers of this data source are "
                      "per user)");
            return;
        }
    }
    json_object_del(k->q, "owner"); /* not part of the query model */
    int64_t now = cp_now_ms(), range = stream_range(k->q);
    k->text = json_dumps(k->q, JSON_COMPACT);
    k->pq = (struct proxy_query){.ref_id = json_string_value(json_object_get(k->q, "refId")),
                                 .json = k->text,
                                 .json_len = k->text ? strlen(k->text) : 0,
                                 .from_ms = now - range,
                                 .to_ms = now,
                                 .interval_ms = stream_interval(k->q),
                                 .max_data_points = 1000,
                                 .exact_range = 1,
                                 .check_only = 1};
    if (!k->text || proxy_query_start(k->ds, &k->pq, 1, k->user, k->headers, k->nheaders,
                                      &k->res, checked, k, &k->batch) != 0)
        check_end(k, PROXY_LIVE_NOT_FOUND, "out of memory");
}

static void id_read_job(void *arg)
{
    struct check *k = arg;
    struct cache_key key;
    struct cache_entry *e = NULL;
    struct cp_err err = {0};
    const char *id = k->path + strlen("poll/id/");
    const char *why;
    if (id_key(k->ds, id, &key) == 0 && cache_get(k->ds->store, &key, &e, &err) == 0 && e &&
        e->status == 200)
        k->q = stream_parse((const char *)e->body, e->body_len, &why);
    cache_entry_unref(e);
    if (!k->q) {
        check_end(k, PROXY_LIVE_NOT_FOUND, "unknown live channel id");
        return;
    }
    check_query(k);
}

int proxy_live_check(struct proxy_ds *ds, const char *path, const struct cp_user *user,
                     const struct proxy_header *h, size_t nh,
                     void (*done)(void *ctx, int status, const char *msg, json_t *query),
                     void *ctx)
{
    struct check *k = calloc(1, sizeof *k);
    if (!k || !(k->path = strdup(path ? path : ""))) {
        free(k);
        return CP_ENOMEM;
    }
    proxy__ds_ref(ds);
    k->ds = ds;
    k->user = user;
    k->headers = h;
    k->nheaders = nh;
    k->done = done;
    k->ctx = ctx;
    const char *why = "no such channel: live channels are poll/<query> or poll/id/<id>";
    if (!strncmp(k->path, "poll/id/", 8)) {
        char *text = id_lookup_local(ds, k->path + 8);
        if (text) {
            k->q = stream_parse(text, strlen(text), &why);
            free(text);
        } else if (ds->store && (ds->store_caps & CACHE_CAP_SHARED) &&
                   strlen(k->path + 8) == LIVE_ID_LEN) {
            if (cp_pool_submit(ds->env.io, id_read_job, k) != 0)
                id_read_job(k);
            return 0;
        } else {
            why = "unknown live channel id (ids live in the process that answered the query, "
                  "or in Redis)";
        }
    } else if (!strncmp(k->path, "poll/", 5)) {
        size_t n;
        char *text = b64url_decode(k->path + 5, &n);
        if (text)
            k->q = stream_parse(text, n, &why);
        free(text);
    }
    if (!k->q) {
        check_end(k, PROXY_LIVE_NOT_FOUND, why);
        return 0;
    }
    check_query(k);
    return 0;
}

/* ---- pollers and subscribers ------------------------------------------------------------------ */

struct poller;

/* Who a poll runs as: a copy of a user and of the client headers. */
struct ident {
    struct cp_user user;
    char *login, *email, *name;
    struct proxy_header *headers;
    size_t nheaders;
};

static char *dup_or(const char *s, int *bad)
{
    char *d = s ? strdup(s) : NULL;
    *bad |= s && !d;
    return d;
}

static void ident_dispose(struct ident *id)
{
    free(id->login);
    free(id->email);
    free(id->name);
    for (size_t i = 0; i < id->nheaders; i++) {
        free((char *)id->headers[i].name);
        free((char *)id->headers[i].value);
    }
    free(id->headers);
    memset(id, 0, sizeof *id);
}

static int ident_copy(struct ident *id, const struct cp_user *u, const struct proxy_header *h,
                      size_t nh)
{
    int bad = 0;
    memset(id, 0, sizeof *id);
    id->user = *u;
    id->user.login = id->login = dup_or(u->login, &bad);
    id->user.email = id->email = dup_or(u->email, &bad);
    id->user.name = id->name = dup_or(u->name, &bad);
    id->headers = calloc(nh ? nh : 1, sizeof *id->headers);
    bad |= !id->headers;
    for (size_t i = 0; !bad && i < nh; i++) {
        id->headers[i].name = dup_or(h[i].name, &bad);
        id->headers[i].value = dup_or(h[i].value, &bad);
        id->nheaders = i + 1;
    }
    if (bad)
        ident_dispose(id);
    return bad ? CP_ENOMEM : 0;
}

struct proxy_live_sub {
    _Atomic unsigned refs; /* the caller's, and the stream's until done */
    struct proxy_ds *ds;
    struct poller *p; /* set once by attach (loop thread), with a reference */
    struct proxy_live_sub *next;
    struct proxy_live_sink sink;
    char *path;
    struct ident id; /* a poller made for this subscriber runs as it */
    json_t *q;
    /* under p->mu: */
    int64_t last_ns;   /* the newest row time sent; INT64_MIN: none yet */
    char *schema_sent; /* the schema JSON last sent */
    int ended;         /* done ran or is about to */
    _Atomic int stop;  /* proxy_live_stop was called */
};

struct poller {
    _Atomic unsigned refs; /* the registry's while subscribed, plus one per poll or job */
    struct poller *next;
    struct proxy_ds *ds;
    char *key;
    pthread_mutex_t mu;
    struct proxy_live_sub *subs;
    /* loop thread: */
    struct cp_timer *timer;
    struct proxy_batch *batch;
    struct proxy_query pq;
    struct proxy_query_result res;
    int stopping;
    int64_t interval_ms, range_ms;
    char *text; /* the model each poll runs: the stream query with the interval as lifetime */
    char ref_id[64];
    struct ident id; /* the first subscriber's user and headers, which polls carry */
};

static struct {
    pthread_mutex_t mu;
    struct poller *list;
} pollers = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void poller_unref(struct poller *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&p->mu);
    proxy_batch_release(p->batch);
    proxy_query_result_dispose(&p->res);
    ident_dispose(&p->id);
    free(p->text);
    free(p->key);
    proxy_ds_free(p->ds);
    free(p);
}

static void sub_unref(struct proxy_live_sub *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    poller_unref(s->p);
    free(s->path);
    ident_dispose(&s->id);
    json_decref(s->q);
    free(s->schema_sent);
    proxy_ds_free(s->ds);
    free(s);
}

void proxy_live_release(struct proxy_live_sub *s) { sub_unref(s); }

/* Ends a subscriber (not under p->mu): its last callback. */
static void sub_end(struct proxy_live_sub *s, int rc, const char *msg)
{
    s->sink.done(s->sink.ctx, rc, msg);
    sub_unref(s);
}

/* A poller's key: the channel, and the cache scope's user or org (answers are shared only as
 * far as the cache shares them). */
static char *poller_key(const struct proxy_ds *ds, const struct proxy_live_sub *s)
{
    enum cfg_scope scope = answer_scope(ds);
    char who[300] = "";
    if (scope == CFG_SCOPE_USER)
        snprintf(who, sizeof who, "u:%s", s->id.login ? s->id.login : "");
    else if (scope == CFG_SCOPE_ORG)
        snprintf(who, sizeof who, "o:%lld", (long long)s->id.user.org_id);
    size_t n = strlen(ds->cfg->key_id) + strlen(s->path) + strlen(who) + 4;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "%s\n%s\n%s", ds->cfg->key_id, who, s->path);
    return k;
}

static void tick(void *arg);

/* Arms the timer for the next multiple of the interval (loop thread). */
static void schedule(struct poller *p)
{
    int64_t now = cp_now_ms(), next = (now / p->interval_ms + 1) * p->interval_ms;
    p->timer = cp_timer_start(p->ds->loop, next - now + 1, tick, p);
}

/* ---- packets -------------------------------------------------------------------------------- */

struct delivery {
    struct poller *p;
    struct proxy_query_result res; /* moved from the poll */
};

/* meta.notices with one error notice, in the frame's meta JSON. */
static int add_notice(struct frame *f, const char *text)
{
    json_error_t je;
    json_t *meta = f->meta_json ? json_loads(f->meta_json, 0, &je) : json_object();
    if (!json_is_object(meta)) {
        json_decref(meta);
        meta = json_object();
    }
    json_t *n = json_pack("[{s:s,s:s}]", "severity", "error", "text", text);
    char *t = NULL;
    if (meta && n && !json_object_set_new(meta, "notices", n))
        t = json_dumps(meta, JSON_COMPACT);
    else
        json_decref(n);
    json_decref(meta);
    if (!t)
        return CP_ENOMEM;
    free(f->meta_json);
    f->meta_json = t;
    return 0;
}

/* The packet for one subscriber; 0 with nothing to send is possible (no new rows). */
static int packet_for(struct proxy_live_sub *s, const struct proxy_query_result *res,
                      const char *ref_id, struct cp_buf *out)
{
    struct frame f;
    int rc;
    if (res->status == 200 && res->nframes == 1) {
        rc = frame_blob_decode(res->frames[0], res->frame_lens[0], &f);
        if (rc)
            return rc;
    } else {
        /* an error: a schema with the notice and no fields; the next good frame sends its
         * schema again */
        memset(&f, 0, sizeof f);
        if (!(f.name = strdup(ref_id)) || !(f.ref_id = strdup(ref_id)) ||
            add_notice(&f, res->error ? res->error : "the poll failed")) {
            frame_dispose(&f);
            return CP_ENOMEM;
        }
        rc = frame_to_json_parts(&f, FRAME_JSON_SCHEMA, out);
        frame_dispose(&f);
        free(s->schema_sent);
        s->schema_sent = NULL; /* the next good frame sends its schema again */
        return rc;
    }
    int t = frame_time_field(&f);
    if (t >= 0 && s->last_ns != INT64_MIN)
        rc = frame_keep_time(&f, s->last_ns + 1, INT64_MAX);
    if (!rc && t >= 0)
        for (size_t r = 0; r < f.nrows; r++)
            if (f.fields[t].i64[r] > s->last_ns)
                s->last_ns = f.fields[t].i64[r];
    struct cp_buf schema = {0};
    if (!rc)
        rc = frame_to_json_parts(&f, FRAME_JSON_SCHEMA, &schema);
    int same = !rc && s->schema_sent && !strcmp(s->schema_sent, schema.p);
    if (!rc && (f.nrows || !same)) {
        rc = frame_to_json_parts(&f, same ? FRAME_JSON_DATA : FRAME_JSON_SCHEMA | FRAME_JSON_DATA,
                                 out);
        if (!rc && !same) {
            free(s->schema_sent);
            s->schema_sent = cp_buf_take(&schema, NULL);
        }
    }
    cp_buf_free(&schema);
    frame_dispose(&f);
    return rc;
}

static void poller_stop(struct poller *p);

static void stop_if_idle(void *arg)
{
    struct poller *p = arg;
    pthread_mutex_lock(&p->mu);
    int idle = !p->subs;
    pthread_mutex_unlock(&p->mu);
    if (idle && !p->stopping)
        poller_stop(p);
    poller_unref(p);
}

static void deliver_job(void *arg)
{
    struct delivery *d = arg;
    struct poller *p = d->p;
    struct proxy_counters *ctr = p->ds->env.ctr;
    struct proxy_live_sub *dropped[64];
    int why[64];
    size_t nd = 0;
    pthread_mutex_lock(&p->mu);
    for (struct proxy_live_sub **pp = &p->subs; *pp;) {
        struct proxy_live_sub *s = *pp;
        struct cp_buf b = {0};
        int rc = packet_for(s, &d->res, p->ref_id, &b);
        if (!rc && b.len) {
            rc = s->sink.packet(s->sink.ctx, b.p, b.len);
            if (!rc && ctr)
                atomic_fetch_add(&ctr->live_frames, 1);
        }
        cp_buf_free(&b);
        if (rc && nd < sizeof dropped / sizeof dropped[0]) {
            /* cannot keep up (or out of memory): this subscriber goes, the others stay */
            *pp = s->next;
            s->ended = 1;
            why[nd] = rc;
            dropped[nd++] = s;
            continue;
        }
        pp = &s->next;
    }
    int empty = !p->subs;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < nd; i++) {
        if (ctr)
            atomic_fetch_sub(&ctr->live_subscribers, 1);
        if (why[i] == CP_ECONFIG) /* the sink's word: its settings changed */
            sub_end(dropped[i], CP_ECONFIG,
                    "the data source's settings changed: the stream starts again with them");
        else
            sub_end(dropped[i], CP_EBUSY, "the subscriber could not keep up with the stream");
    }
    proxy_query_result_dispose(&d->res);
    free(d);
    /* the last subscriber was dropped: the poller stops on its loop (with this reference) */
    if (!(nd && empty && proxy__post(p->ds, stop_if_idle, p) == 0))
        poller_unref(p);
}

/* ---- polls (loop thread) ----------------------------------------------------------------------- */

static void poll_finished(void *arg)
{
    struct poller *p = arg;
    proxy_batch_release(p->batch);
    p->batch = NULL;
    struct delivery *d = p->stopping ? NULL : calloc(1, sizeof *d);
    if (d) {
        d->p = p; /* the poll's reference goes to the delivery */
        d->res = p->res;
        memset(&p->res, 0, sizeof p->res);
        if (cp_pool_submit(p->ds->env.cpu, deliver_job, d) != 0)
            deliver_job(d);
        return;
    }
    proxy_query_result_dispose(&p->res);
    poller_unref(p);
}

static void poll_done(void *arg)
{
    struct poller *p = arg;
    if (proxy__post(p->ds, poll_finished, p) != 0) {
        /* the loop is gone: nothing more will run there */
        proxy_query_result_dispose(&p->res);
        poller_unref(p);
    }
}

static void poll_start(struct poller *p, int64_t t)
{
    struct proxy_counters *ctr = p->ds->env.ctr;
    if (p->batch) { /* the last poll is still running: this interval is skipped */
        if (ctr)
            atomic_fetch_add(&ctr->live_skipped, 1);
        return;
    }
    p->pq = (struct proxy_query){.ref_id = p->ref_id,
                                 .json = p->text,
                                 .json_len = strlen(p->text),
                                 .from_ms = t - p->range_ms,
                                 .to_ms = t,
                                 .interval_ms = p->interval_ms,
                                 .max_data_points = 1000,
                                 .form = PROXY_FRAME_BLOB,
                                 .exact_range = 1};
    memset(&p->res, 0, sizeof p->res);
    atomic_fetch_add(&p->refs, 1);
    if (ctr)
        atomic_fetch_add(&ctr->live_polls, 1);
    if (proxy_query_start(p->ds, &p->pq, 1, &p->id.user, p->id.headers, p->id.nheaders,
                          &p->res, poll_done, p, &p->batch) != 0)
        poller_unref(p);
}

static void tick(void *arg)
{
    struct poller *p = arg;
    p->timer = NULL;
    if (p->stopping)
        return;
    int64_t now = cp_now_ms();
    poll_start(p, now / p->interval_ms * p->interval_ms);
    schedule(p);
}

/* ---- attach and leave (loop thread) ------------------------------------------------------------ */

static struct poller *poller_new(struct proxy_live_sub *s, char *key)
{
    struct poller *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    json_t *m = json_deep_copy(s->q);
    json_t *ref = json_object_get(s->q, "refId");
    p->interval_ms = stream_interval(s->q);
    p->range_ms = stream_range(s->q);
    snprintf(p->ref_id, sizeof p->ref_id, "%s", json_is_string(ref) ? json_string_value(ref) : "A");
    /* each poll's answer lives one interval: the next poll is a new key anyway */
    if (m && !json_object_set_new(m, "cacheTtl", json_real((double)p->interval_ms / 1000.0)))
        p->text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (!p->text || ident_copy(&p->id, &s->id.user, s->id.headers, s->id.nheaders)) {
        free(p->text);
        free(p);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->mu, NULL);
    proxy__ds_ref(s->ds);
    p->ds = s->ds;
    p->key = key;
    return p;
}

static void attach(void *arg)
{
    struct proxy_live_sub *s = arg;
    struct proxy_ds *ds = s->ds;
    struct proxy_counters *ctr = ds->env.ctr;
    if (atomic_load(&s->stop)) {
        sub_end(s, 0, NULL);
        return;
    }
    char *key = poller_key(ds, s);
    struct poller *p = NULL;
    pthread_mutex_lock(&pollers.mu);
    for (p = pollers.list; key && p; p = p->next)
        if (p->ds == ds && !strcmp(p->key, key))
            break;
    int made = 0;
    if (!p && key && (p = poller_new(s, key))) {
        key = NULL;
        p->next = pollers.list;
        pollers.list = p;
        made = 1;
        if (ctr)
            atomic_fetch_add(&ctr->live_streams, 1);
    }
    pthread_mutex_unlock(&pollers.mu);
    free(key);
    if (!p) {
        sub_end(s, CP_ENOMEM, "out of memory");
        return;
    }
    atomic_fetch_add(&p->refs, 1); /* the subscriber's */
    pthread_mutex_lock(&p->mu);
    s->p = p;
    s->last_ns = INT64_MIN;
    s->next = p->subs;
    p->subs = s;
    pthread_mutex_unlock(&p->mu);
    if (ctr)
        atomic_fetch_add(&ctr->live_subscribers, 1);
    if (made) { /* the first poll now, then at every multiple of the interval */
        int64_t now = cp_now_ms();
        poll_start(p, now / p->interval_ms * p->interval_ms);
        schedule(p);
    }
    /* a subscriber joining a running poller gets data from the next poll */
}

/* The last subscriber left: the poller stops (loop thread). */
static void poller_stop(struct poller *p)
{
    pthread_mutex_lock(&pollers.mu);
    for (struct poller **pp = &pollers.list; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    pthread_mutex_unlock(&pollers.mu);
    p->stopping = 1;
    if (p->timer) {
        cp_timer_cancel(p->timer);
        p->timer = NULL;
    }
    if (p->batch)
        proxy_batch_cancel(p->batch);
    if (p->ds->env.ctr)
        atomic_fetch_sub(&p->ds->env.ctr->live_streams, 1);
    poller_unref(p);
}

static void leave(void *arg)
{
    struct proxy_live_sub *s = arg;
    struct poller *p = s->p;
    if (!p) { /* not attached (yet, or any more): attach or a drop ends it */
        sub_unref(s);
        return;
    }
    int ended, last;
    pthread_mutex_lock(&p->mu);
    ended = s->ended;
    if (!ended) {
        for (struct proxy_live_sub **pp = &p->subs; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        s->ended = 1;
    }
    last = !p->subs;
    pthread_mutex_unlock(&p->mu);
    if (last && !p->stopping)
        poller_stop(p);
    if (!ended) {
        if (p->ds->env.ctr)
            atomic_fetch_sub(&p->ds->env.ctr->live_subscribers, 1);
        sub_end(s, 0, NULL);
    }
    sub_unref(s); /* the reference proxy_live_stop took for this job */
}

void proxy_live_stop(struct proxy_live_sub *s)
{
    if (!s || atomic_exchange(&s->stop, 1))
        return;
    atomic_fetch_add(&s->refs, 1);
    if (proxy__post(s->ds, leave, s) != 0)
        sub_unref(s);
}

/* ---- run ------------------------------------------------------------------------------------ */

static void run_checked(void *ctx, int status, const char *msg, json_t *q)
{
    struct proxy_live_sub *s = ctx;
    if (status != PROXY_LIVE_OK) {
        sub_end(s, status == PROXY_LIVE_DENIED ? CP_EDENIED : CP_ENOTFOUND, msg);
        return;
    }
    s->q = json_incref(q);
    if (proxy__post(s->ds, attach, s) != 0)
        sub_end(s, CP_ECANCELED, "the data source is stopping");
}

int proxy_live_run(struct proxy_ds *ds, const char *path, const struct cp_user *user,
                   const struct proxy_header *h, size_t nh, const struct proxy_live_sink *sink,
                   struct proxy_live_sub **out)
{
    struct proxy_live_sub *s = calloc(1, sizeof *s);
    int bad = !s;
    if (s) {
        s->path = dup_or(path ? path : "", &bad);
        bad |= ident_copy(&s->id, user, h, nh) != 0;
        proxy__ds_ref(ds);
        s->ds = ds;
        atomic_init(&s->refs, bad ? 1 : 2); /* the caller's, and the stream's until done */
    }
    if (bad) {
        sub_unref(s);
        return CP_ENOMEM;
    }
    s->sink = *sink;
    *out = s;
    if (proxy_live_check(ds, s->path, &s->id.user, s->id.headers, s->id.nheaders, run_checked,
                         s) != 0)
        sub_end(s, CP_ENOMEM, "out of memory");
    return 0;
}
