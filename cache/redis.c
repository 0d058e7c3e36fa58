/*
 * redis.c - the Redis backend: entries shared by every Grafana replica and surviving plugin
 * restarts.
 *
 * - One small connection pool per process and Redis target, shared by all data sources that
 *   use it; connect and command timeouts bound every wait.
 * - Fail open: any connection-level failure opens a circuit breaker, so for the next second
 *   every call skips Redis at once (and goes to the upstream) instead of waiting on it; after
 *   that one probe call tries again, and the client reconnects by itself.
 * - Keys: <keyPrefix><uid>:<sha256 hex>; values: the shared entry codec; server-side expiry
 *   with SET ... PX. A hit is one round trip (GET).
 * - Purge by path prefix uses a per-data-source sorted-set index ("<path>\n<hex>" members,
 *   all score 0, so ZRANGEBYLEX finds a prefix); purging everything uses SCAN.
 * - Cross-process coalescing: SET <key>:lock <token> NX PX, released by a compare-and-delete
 *   script so a late release never frees someone else's lock.
 * - Optional near cache: a small memory store in front of Redis for hot keys.
 */
#include "backend.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 100
#define COMMAND_TIMEOUT_MS 300
#define BREAKER_OPEN_MS 1000
#define MAX_IDLE 16
#define INDEX_MAX 100000
#define NEAR_MAX_BYTES (32LL << 20)

struct target {
    char *host;
    int port;
    char *unix_path;
    int db;
    char *user;
};

/* A connection pool for one Redis target, shared by the stores that use it. */
struct pool {
    struct pool *next;
    unsigned refs;
    char *id; /* url + password digest: identifies the pool */
    struct target t;
    struct cfg_secret password;
    pthread_mutex_t mu;
    redisContext *idle[MAX_IDLE];
    size_t nidle;
    int64_t open_until_ms; /* circuit breaker: skip Redis until then */
    int probing;           /* one call is trying Redis after the breaker closed */
    char last_error[160];  /* why the breaker opened, for health checks */
    int down;              /* an outage is under way (logged once when it starts and ends) */
    const struct cp_logger *log;
};

/* Records a failure; the first of an outage is logged. Caller holds p->mu. */
static void went_down(struct pool *p, const char *why)
{
    p->open_until_ms = cp_now_ms() + BREAKER_OPEN_MS;
    snprintf(p->last_error, sizeof p->last_error, "%s", why);
    if (!p->down) {
        p->down = 1;
        cp_log(p->log, CP_LOG_WARN,
               "redis cache unavailable: answering from the upstream until it is back",
               (struct cp_kv[]){CP_KV_S("error", why)}, 1);
    }
}

static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool *pools;

struct redis_store {
    struct cache_store base;
    struct pool *pool;
    char *prefix; /* "<keyPrefix><uid>:" */
    char *index;  /* "<keyPrefix><uid>::index" */
    struct cache_store *near;
    int64_t near_ms;
    struct cache_env env;
    _Atomic uint64_t sets;
};

/* ---- URL ------------------------------------------------------------------------------------
 * redis://[user[:password]@]host[:port][/db] or unix:///path[?db=N] */
static int parse_url(const char *url, struct target *t, char **url_password, struct cp_err *err)
{
    memset(t, 0, sizeof *t);
    t->port = 6379;
    *url_password = NULL;
    if (!strncasecmp(url, "unix://", 7)) {
        const char *p = url + 7;
        size_t n = strcspn(p, "?");
        if (!n || p[0] != '/')
            return cp_err_set(err, CP_ECONFIG, "jsonData.cache.redisUrl: unix:// needs an "
                                               "absolute socket path");
        t->unix_path = strndup(p, n);
        if (p[n] == '?' && !strncmp(p + n + 1, "db=", 3))
            t->db = atoi(p + n + 4);
        return t->unix_path ? 0 : CP_ENOMEM;
    }
    const char *p = url + 8; /* after redis:// */
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *ue = colon ? colon : at;
        if (ue > p)
            t->user = strndup(p, (size_t)(ue - p));
        if (colon)
            *url_password = strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    const char *hs = p, *he;
    if (*p == '[') { /* [ipv6]:port */
        he = memchr(p, ']', (size_t)(end - p));
        if (!he)
            return cp_err_set(err, CP_ECONFIG, "jsonData.cache.redisUrl: bad IPv6 host");
        hs = p + 1;
        p = he + 1;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        if (!he)
            he = end;
        p = he;
    }
    if (he == hs)
        return cp_err_set(err, CP_ECONFIG, "jsonData.cache.redisUrl: no host");
    t->host = strndup(hs, (size_t)(he - hs));
    if (*p == ':') {
        char *pe;
        long port = strtol(p + 1, &pe, 10);
        if (pe == p + 1 || port <= 0 || port > 65535 || pe != end)
            return cp_err_set(err, CP_ECONFIG, "jsonData.cache.redisUrl: bad port");
        t->port = (int)port;
    }
    if (*end == '/' && end[1]) {
        char *de;
        long db = strtol(end + 1, &de, 10);
        if (db < 0 || db > 1000 || (*de && *de != '?'))
            return cp_err_set(err, CP_ECONFIG, "jsonData.cache.redisUrl: bad database number");
        t->db = (int)db;
    }
    return t->host ? 0 : CP_ENOMEM;
}

static void target_free(struct target *t)
{
    free(t->host);
    free(t->unix_path);
    free(t->user);
}

/* ---- pool ------------------------------------------------------------------------------------ */

static void count_error(struct redis_store *s)
{
    if (s->env.redis_errors)
        atomic_fetch_add(s->env.redis_errors, 1);
}

static redisContext *dial(struct pool *p, struct cp_err *err)
{
    struct timeval ct = {0, CONNECT_TIMEOUT_MS * 1000}, cmd = {0, COMMAND_TIMEOUT_MS * 1000};
    redisContext *c = p->t.unix_path ? redisConnectUnixWithTimeout(p->t.unix_path, ct)
                                     : redisConnectWithTimeout(p->t.host, p->t.port, ct);
    if (!c || c->err) {
        cp_err_set(err, CP_EBACKEND, "redis %s: %s", p->t.unix_path ? p->t.unix_path : p->t.host,
                   c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, cmd);
    redisReply *r = NULL;
    if (cfg_secret_isset(&p->password)) {
        r = p->t.user ? redisCommand(c, "AUTH %s %s", p->t.user, p->password.v)
                      : redisCommand(c, "AUTH %s", p->password.v);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            cp_err_set(err, CP_EBACKEND, "redis authentication failed: check redisPassword "
                                         "and the user in redisUrl");
            goto fail;
        }
        freeReplyObject(r);
    }
    if (p->t.db) {
        r = redisCommand(c, "SELECT %d", p->t.db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            cp_err_set(err, CP_EBACKEND, "redis SELECT %d failed", p->t.db);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return NULL;
}

/* Takes a connection, or fails at once while the breaker is open. */
static redisContext *conn_get(struct pool *p, struct cp_err *err)
{
    pthread_mutex_lock(&p->mu);
    if (p->nidle) {
        redisContext *c = p->idle[--p->nidle];
        pthread_mutex_unlock(&p->mu);
        return c;
    }
    int64_t now = cp_now_ms();
    if (now < p->open_until_ms || p->probing) {
        cp_err_set(err, CP_EBACKEND, "redis unavailable: %s (retrying within %d ms)",
                   p->last_error[0] ? p->last_error : "a connection failed", BREAKER_OPEN_MS);
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    int probe = p->open_until_ms != 0;
    if (probe)
        p->probing = 1; /* only this caller waits on a Redis that just failed */
    pthread_mutex_unlock(&p->mu);
    redisContext *c = dial(p, err);
    pthread_mutex_lock(&p->mu);
    if (probe)
        p->probing = 0;
    if (c) {
        p->open_until_ms = 0; /* back only once a command answers (conn_put) */
    } else {
        went_down(p, cp_err_text(err));
    }
    pthread_mutex_unlock(&p->mu);
    return c;
}

/* Returns a connection after a command: a broken one is closed and opens the breaker; a
 * working one ends an outage. */
static void conn_put(struct pool *p, redisContext *c, int broken)
{
    pthread_mutex_lock(&p->mu);
    if (!broken && p->down) {
        p->down = 0;
        cp_log(p->log, CP_LOG_INFO, "redis cache available again", NULL, 0);
    }
    if (broken) {
        went_down(p, c && c->errstr[0] ? c->errstr : "connection lost");
        /* the other idle connections probably died with it */
        for (size_t i = 0; i < p->nidle; i++)
            redisFree(p->idle[i]);
        p->nidle = 0;
    } else if (p->nidle < MAX_IDLE) {
        p->idle[p->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (c)
        redisFree(c);
}

static struct pool *pool_acquire(const struct cfg_cache *cc, const struct cp_logger *log,
                                 struct cp_err *err)
{
    struct target t;
    char *url_pw = NULL;
    int rc = parse_url(cc->redis_url, &t, &url_pw, err);
    if (rc) {
        target_free(&t);
        free(url_pw);
        return NULL;
    }
    const struct cfg_secret *pw = &cc->redis_password;
    struct cfg_secret from_url = {0};
    if (!cfg_secret_isset(pw) && url_pw) {
        cfg_secret_set(&from_url, url_pw, strlen(url_pw));
        pw = &from_url;
    }
    if (url_pw) {
        explicit_bzero(url_pw, strlen(url_pw));
        free(url_pw);
    }
    /* pools are told apart by target and a digest of the password, never the password */
    uint32_t pwsum = pw->v ? cache__crc32c(0, pw->v, pw->len) : 0;
    char id[600];
    snprintf(id, sizeof id, "%s|%d|%s|%d|%s|%08x", t.host ? t.host : "", t.port,
             t.unix_path ? t.unix_path : "", t.db, t.user ? t.user : "", pwsum);
    pthread_mutex_lock(&pools_mu);
    struct pool *p;
    for (p = pools; p; p = p->next)
        if (!strcmp(p->id, id) && p->password.len == pw->len &&
            (!pw->len || !memcmp(p->password.v, pw->v, pw->len)))
            break;
    if (p) {
        p->refs++;
        target_free(&t);
    } else if ((p = calloc(1, sizeof *p)) && (p->id = strdup(id))) {
        p->refs = 1;
        p->t = t;
        p->log = log;
        if (pw->v)
            cfg_secret_set(&p->password, pw->v, pw->len);
        pthread_mutex_init(&p->mu, NULL);
        p->next = pools;
        pools = p;
    } else {
        free(p);
        p = NULL;
        target_free(&t);
        cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&pools_mu);
    cfg_secret_wipe(&from_url);
    return p;
}

static void pool_release(struct pool *p)
{
    pthread_mutex_lock(&pools_mu);
    if (--p->refs > 0) {
        pthread_mutex_unlock(&pools_mu);
        return;
    }
    for (struct pool **pp = &pools; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    pthread_mutex_unlock(&pools_mu);
    for (size_t i = 0; i < p->nidle; i++)
        redisFree(p->idle[i]);
    cfg_secret_wipe(&p->password);
    target_free(&p->t);
    pthread_mutex_destroy(&p->mu);
    free(p->id);
    free(p);
}

/* ---- commands -------------------------------------------------------------------------------- */

/* Runs one command; on a connection failure counts it, opens the breaker and reports it. */
static redisReply *command(struct redis_store *s, redisContext **cp, struct cp_err *err,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(*cp, fmt, ap);
    va_end(ap);
    if (!r) {
        cp_err_set(err, CP_EBACKEND, "redis: %s", (*cp)->errstr[0] ? (*cp)->errstr : "no reply");
        count_error(s);
        conn_put(s->pool, *cp, 1);
        *cp = NULL;
    }
    return r;
}

static void key_of(const struct redis_store *s, const struct cache_key *k, char *out, size_t n)
{
    snprintf(out, n, "%s%s", s->prefix, k->hex);
}

static int rs_get(struct cache_store *base, const struct cache_key *k, struct cache_entry **out,
                  struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    *out = NULL;
    if (s->near && cache__memory_backend.get(s->near, k, out, err) == 0 && *out)
        return 0;
    redisContext *c = conn_get(s->pool, err);
    if (!c) {
        count_error(s);
        return CP_EBACKEND;
    }
    char key[512];
    key_of(s, k, key, sizeof key);
    redisReply *r = command(s, &c, err, "GET %s", key);
    if (!r)
        return CP_EBACKEND;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING) {
        if (cache_entry_decode(r->str, r->len, out) != 0) {
            *out = NULL; /* corrupt or foreign: a miss, never a crash */
            cp_log(s->env.log, CP_LOG_DEBUG, "ignoring an unreadable redis cache entry", NULL,
                   0);
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        rc = cp_err_set(err, CP_EBACKEND, "redis GET failed: %.100s", r->str);
        count_error(s);
    }
    freeReplyObject(r);
    conn_put(s->pool, c, 0);
    if (*out && s->near) {
        int64_t left = cache_entry_keep_ms(*out) - (cp_now_ms() - (*out)->stored_ms);
        int64_t keep = left < s->near_ms ? left : s->near_ms;
        struct cp_err ignored;
        if (keep > 0)
            cache__memory_backend.set(s->near, k, *out, keep, &ignored);
    }
    return rc;
}

static int rs_set(struct cache_store *base, const struct cache_key *k, struct cache_entry *e,
                  int64_t keep_ms, struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    if (keep_ms <= 0)
        return 0;
    if (s->near) {
        struct cp_err ignored;
        cache__memory_backend.set(s->near, k, e, keep_ms < s->near_ms ? keep_ms : s->near_ms,
                                  &ignored);
    }
    struct cp_buf v = {0};
    if (cache_entry_encode(e, &v) != 0)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    redisContext *c = conn_get(s->pool, err);
    if (!c) {
        cp_buf_free(&v);
        count_error(s);
        return CP_EBACKEND;
    }
    char key[512];
    key_of(s, k, key, sizeof key);
    struct cp_buf member = {0};
    cp_buf_addf(&member, "%s\n%s", e->path ? e->path : "", k->hex);
    /* one round trip: the entry, its index member, the index lifetime */
    redisAppendCommand(c, "SET %s %b PX %lld", key, v.p, v.len, (long long)keep_ms);
    redisAppendCommand(c, "ZADD %s 0 %b", s->index, member.p ? member.p : "", member.len);
    redisAppendCommand(c, "PEXPIRE %s %lld", s->index, (long long)(keep_ms + 3600000));
    int rc = 0, broken = 0;
    for (int i = 0; i < 3; i++) {
        void *rep = NULL;
        if (redisGetReply(c, &rep) != REDIS_OK || !rep) {
            rc = cp_err_set(err, CP_EBACKEND, "redis SET failed: %s",
                            c->errstr[0] ? c->errstr : "no reply");
            broken = 1;
            count_error(s);
            break;
        }
        redisReply *r = rep;
        if (r->type == REDIS_REPLY_ERROR && !rc) {
            rc = cp_err_set(err, CP_EBACKEND, "redis SET failed: %.100s", r->str);
            count_error(s);
        }
        freeReplyObject(r);
    }
    cp_buf_free(&v);
    cp_buf_free(&member);
    /* keep the index bounded: entries expire by themselves, stale members only cost space */
    if (!broken && atomic_fetch_add(&s->sets, 1) % 1000 == 999) {
        redisReply *r = redisCommand(c, "ZCARD %s", s->index);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer > INDEX_MAX) {
            redisReply *t = redisCommand(c, "ZREMRANGEBYRANK %s 0 %lld", s->index,
                                         (long long)(r->integer - INDEX_MAX - 1));
            if (t)
                freeReplyObject(t);
        }
        if (r)
            freeReplyObject(r);
        else
            broken = 1;
    }
    conn_put(s->pool, c, broken);
    return rc;
}

static int rs_del(struct cache_store *base, const struct cache_key *k, struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near)
        cache__memory_backend.del(s->near, k, err);
    redisContext *c = conn_get(s->pool, err);
    if (!c)
        return CP_EBACKEND;
    char key[512];
    key_of(s, k, key, sizeof key);
    redisReply *r = command(s, &c, err, "DEL %s", key);
    if (!r)
        return CP_EBACKEND;
    freeReplyObject(r);
    conn_put(s->pool, c, 0);
    return 0;
}

/* Escapes glob characters of a literal for SCAN MATCH. */
static void glob_escape(const char *in, char *out, size_t n)
{
    size_t k = 0;
    for (; *in && k + 2 < n; in++) {
        if (strchr("*?[]\\", *in))
            out[k++] = '\\';
        out[k++] = *in;
    }
    out[k] = 0;
}

static int purge_all(struct redis_store *s, redisContext **cp, uint64_t *purged,
                     struct cp_err *err)
{
    char pat[600];
    glob_escape(s->prefix, pat, sizeof pat - 2);
    strcat(pat, "*");
    char cursor[32] = "0";
    do {
        redisReply *r = command(s, cp, err, "SCAN %s MATCH %s COUNT 1000", cursor, pat);
        if (!r)
            return CP_EBACKEND;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            return cp_err_set(err, CP_EBACKEND, "redis SCAN: unexpected reply");
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str ? r->element[0]->str : "0");
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            size_t kl = keys->element[i]->len;
            int is_lock = kl > 5 && !memcmp(k + kl - 5, ":lock", 5);
            redisReply *d = command(s, cp, err, "DEL %b", k, kl);
            if (!d) {
                freeReplyObject(r);
                return CP_EBACKEND;
            }
            if (d->type == REDIS_REPLY_INTEGER && !is_lock && strcmp(k, s->index))
                *purged += (uint64_t)d->integer;
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    return 0;
}

static int purge_prefix(struct redis_store *s, redisContext **cp, const char *prefix,
                        uint64_t *purged, struct cp_err *err)
{
    for (;;) {
        redisReply *r = command(s, cp, err, "ZRANGEBYLEX %s [%s [%s\xff LIMIT 0 1000", s->index,
                                prefix, prefix);
        if (!r)
            return CP_EBACKEND;
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return cp_err_set(err, CP_EBACKEND, "redis ZRANGEBYLEX: unexpected reply");
        }
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            const char *m = r->element[i]->str;
            const char *nl = strrchr(m, '\n');
            if (nl) {
                redisReply *d = command(s, cp, err, "DEL %s%s", s->prefix, nl + 1);
                if (!d) {
                    freeReplyObject(r);
                    return CP_EBACKEND;
                }
                if (d->type == REDIS_REPLY_INTEGER)
                    *purged += (uint64_t)d->integer;
                freeReplyObject(d);
            }
            redisReply *z = command(s, cp, err, "ZREM %s %b", s->index, m, r->element[i]->len);
            if (!z) {
                freeReplyObject(r);
                return CP_EBACKEND;
            }
            freeReplyObject(z);
        }
        freeReplyObject(r);
        if (n < 1000)
            return 0;
    }
}

static int rs_purge(struct cache_store *base, const char *prefix, uint64_t *purged,
                    struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near) {
        uint64_t ignored = 0;
        cache__memory_backend.purge_prefix(s->near, prefix, &ignored, err);
    }
    redisContext *c = conn_get(s->pool, err);
    if (!c)
        return CP_EBACKEND;
    int rc = prefix && *prefix ? purge_prefix(s, &c, prefix, purged, err)
                               : purge_all(s, &c, purged, err);
    if (c)
        conn_put(s->pool, c, 0);
    return rc;
}

static void rs_usage(struct cache_store *base, struct cache_usage *u)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near)
        cache__memory_backend.usage(s->near, u);
    struct cp_err err;
    redisContext *c = conn_get(s->pool, &err);
    if (!c)
        return;
    redisReply *r = command(s, &c, &err, "ZCARD %s", s->index);
    if (r) {
        if (r->type == REDIS_REPLY_INTEGER)
            u->entries = (uint64_t)r->integer;
        freeReplyObject(r);
        conn_put(s->pool, c, 0);
    }
}

static int rs_ping(struct cache_store *base, struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    redisContext *c = conn_get(s->pool, err);
    if (!c)
        return CP_EBACKEND;
    redisReply *r = command(s, &c, err, "PING");
    if (!r)
        return CP_EBACKEND;
    int ok = (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
             !strcasecmp(r->str, "PONG");
    if (!ok)
        cp_err_set(err, CP_EBACKEND, "redis PING answered %.120s%s",
                   r->type == REDIS_REPLY_ERROR && r->str ? r->str : "something else than PONG",
                   r->type == REDIS_REPLY_ERROR && r->str && strstr(r->str, "NOAUTH")
                       ? ": set redisPassword (and the user in redisUrl)"
                       : "");
    freeReplyObject(r);
    conn_put(s->pool, c, 0);
    return ok ? 0 : CP_EBACKEND;
}

/* Lock tokens tell our lock apart from a successor's after expiry: process, a counter and
 * the time, unique for every acquisition. */
static _Atomic uint64_t lock_seq;

static int rs_lock(struct cache_store *base, const struct cache_key *k, int64_t ttl_ms,
                   struct cache_lock_token *tok)
{
    struct redis_store *s = (struct redis_store *)base;
    struct cp_err err;
    redisContext *c = conn_get(s->pool, &err);
    if (!c)
        return CP_EBACKEND;
    char *lock_token = tok->v;
    snprintf(lock_token, sizeof tok->v, "%lx-%llx-%llx", (unsigned long)getpid(),
             (unsigned long long)atomic_fetch_add(&lock_seq, 1),
             (unsigned long long)cp_mono_ns());
    redisReply *r = command(s, &c, &err, "SET %s%s:lock %s NX PX %lld", s->prefix, k->hex,
                            lock_token, (long long)ttl_ms);
    if (!r)
        return CP_EBACKEND;
    int rc = r->type == REDIS_REPLY_STATUS ? 1 : r->type == REDIS_REPLY_NIL ? 0 : -1;
    freeReplyObject(r);
    conn_put(s->pool, c, 0);
    return rc;
}

static void rs_unlock(struct cache_store *base, const struct cache_key *k,
                      const struct cache_lock_token *tok)
{
    const char *lock_token = tok->v;
    struct redis_store *s = (struct redis_store *)base;
    struct cp_err err;
    redisContext *c = conn_get(s->pool, &err);
    if (!c)
        return;
    redisReply *r = command(s, &c, &err,
                            "EVAL %s 1 %s%s:lock %s",
                            "if redis.call('get',KEYS[1])==ARGV[1] then "
                            "return redis.call('del',KEYS[1]) else return 0 end",
                            s->prefix, k->hex, lock_token);
    if (r) {
        freeReplyObject(r);
        conn_put(s->pool, c, 0);
    }
}

static int rs_lock_held(struct cache_store *base, const struct cache_key *k)
{
    struct redis_store *s = (struct redis_store *)base;
    struct cp_err err;
    redisContext *c = conn_get(s->pool, &err);
    if (!c)
        return CP_EBACKEND;
    redisReply *r = command(s, &c, &err, "EXISTS %s%s:lock", s->prefix, k->hex);
    if (!r)
        return CP_EBACKEND;
    int rc = r->type == REDIS_REPLY_INTEGER ? r->integer > 0 : -1;
    freeReplyObject(r);
    conn_put(s->pool, c, 0);
    return rc;
}

static void rs_close(struct cache_store *base)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near)
        cache__memory_backend.close(s->near);
    if (s->pool)
        pool_release(s->pool);
    free(s->prefix);
    free(s->index);
    free(s);
}

static int rs_open(const struct cfg_ds *cfg, const struct cache_env *env,
                   struct cache_store **out, struct cp_err *err)
{
    struct redis_store *s = calloc(1, sizeof *s);
    if (!s)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    s->base.be = &cache__redis_backend;
    s->env = *env;
    size_t n = strlen(cfg->cache.key_prefix) + strlen(cfg->key_id) + 8;
    s->prefix = malloc(n);
    s->index = malloc(n + 8);
    if (!s->prefix || !s->index) {
        rs_close(&s->base);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    snprintf(s->prefix, n, "%s%s:", cfg->cache.key_prefix, cfg->key_id);
    snprintf(s->index, n + 8, "%s%s::index", cfg->cache.key_prefix, cfg->key_id);
    if (!(s->pool = pool_acquire(&cfg->cache, env->log, err))) {
        rs_close(&s->base);
        return err && err->code ? err->code : CP_ECONFIG;
    }
    if (cfg->cache.near_cache_ms > 0) {
        s->near_ms = cfg->cache.near_cache_ms;
        int64_t nb = cfg->cache.memory_max_bytes < NEAR_MAX_BYTES ? cfg->cache.memory_max_bytes
                                                                  : NEAR_MAX_BYTES;
        int rc = cache__memory_open(nb, cfg->cache.max_entry_bytes, env, &s->near, err);
        if (rc) {
            rs_close(&s->base);
            return rc;
        }
    }
    *out = &s->base;
    return 0;
}

const struct cache_backend cache__redis_backend = {
    .name = "redis",
    .caps = CACHE_CAP_SHARED | CACHE_CAP_LOCK,
    .open = rs_open,
    .get = rs_get,
    .set = rs_set,
    .del = rs_del,
    .purge_prefix = rs_purge,
    .usage = rs_usage,
    .ping = rs_ping,
    .lock = rs_lock,
    .unlock = rs_unlock,
    .lock_held = rs_lock_held,
    .close = rs_close,
};
