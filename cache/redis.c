/*
 * redis.c - the Redis backend: entries shared by every Grafana replica and surviving plugin
 * restarts, on one server (plain or TLS), a Sentinel-managed master or a Redis Cluster.
 *
 * - Connections, timeouts, the circuit breaker (fail open: a failing Redis makes calls go to
 *   the upstream at once) and the routing for each mode live in the client (redis_client.c),
 *   shared by every data source of the process that uses the same Redis.
 * - Keys: <keyPrefix>{<org>:<uid>}:<sha256 hex>, in every mode: the braces are a Redis Cluster
 *   hash tag, so a data source's entries, its purge index and its locks share one slot and
 *   every operation of a store goes to one node (purge and locking stay single-node
 *   operations, and a node down only fails open the data sources it serves). Values: the
 *   shared entry codec, sealed with AES-256-GCM when the operator set encryption keys (seal.c);
 *   server-side expiry with SET ... PX. A hit is one round trip (GET).
 * - Purge by path prefix uses a per-data-source sorted-set index, "<keyPrefix>{..}::index":
 *   with values in clear its members are "<path>\n<hex>" (all score 0, so ZRANGEBYLEX finds a
 *   prefix); with encryption "<hex>\n<sealed path>", read back with ZSCAN. Purging
 *   everything uses SCAN on the data source's node.
 * - Cross-process coalescing: SET <key>:lock <token> NX PX, released by a compare-and-delete
 *   script so a late release never frees someone else's lock.
 * - Optional near cache: a small memory store in front of Redis for hot keys.
 */
#include "redis_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define INDEX_MAX 100000
#define INDEX_EXTRA_MS 3600000 /* the index outlives its newest entry by this */
#define NEAR_MAX_BYTES (32LL << 20)
#define KEY_MAX 600

struct redis_store {
    struct cache_store base;
    struct cache__rclient *client;
    char *prefix;                      /* "<keyPrefix>{<org>:<uid>}:" */
    char *index;                       /* "<keyPrefix>{<org>:<uid>}::index" */
    int slot;                          /* of every key of this store */
    const struct cache__keyring *keys; /* NULL: values in clear */
    struct cache_store *near;
    int64_t near_ms;
    struct cache_env env;
    _Atomic uint64_t sets;
};

static void count_error(struct redis_store *s)
{
    if (s->env.redis_errors)
        atomic_fetch_add(s->env.redis_errors, 1);
}

static void key_of(const struct redis_store *s, const struct cache_key *k, char *out, size_t n)
{
    snprintf(out, n, "%s%s", s->prefix, k->hex);
}

/* Runs one command on the store's node: its reply, or NULL (err set, counted). */
static redisReply *run1(struct redis_store *s, struct cp_err *err, const char *fmt, ...)
{
    struct cache__rbatch b = {0};
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) {
        cp_err_set(err, CP_ENOMEM, "out of memory");
        return NULL;
    }
    b.cmd[0] = cmd;
    b.len[0] = (size_t)len;
    b.n = 1;
    redisReply *r = NULL;
    if (cache__rclient_run(s->client, s->slot, &b, err) == 0) {
        r = b.reply[0];
        b.reply[0] = NULL;
    } else {
        count_error(s);
    }
    cache__rbatch_dispose(&b);
    return r;
}

/* ---- entries ---------------------------------------------------------------------------- */

/* A value that does not open (altered, sealed for another key, or with a key no longer in the
 * ring): counted, deleted, and a miss. */
static void drop_unsealable(struct redis_store *s, const char *key)
{
    /* warned once per process (a removed key would flood the log), counted every time */
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    atomic_fetch_add(&cache__rstats.unsealable, 1);
    cp_log(s->env.log, atomic_flag_test_and_set(&warned) ? CP_LOG_DEBUG : CP_LOG_WARN,
           "redis cache: an encrypted entry failed to open (altered, or sealed with a key no "
           "longer configured); deleted",
           NULL, 0);
    struct cp_err ignored;
    redisReply *r = run1(s, &ignored, "DEL %s", key);
    if (r)
        freeReplyObject(r);
}

static int rs_get(struct cache_store *base, const struct cache_key *k, struct cache_entry **out,
                  struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    *out = NULL;
    if (s->near && cache__memory_backend.get(s->near, k, out, err) == 0 && *out)
        return 0;
    char key[KEY_MAX];
    key_of(s, k, key, sizeof key);
    redisReply *r = run1(s, err, "GET %s", key);
    if (!r)
        return CP_EBACKEND;
    int rc = 0;
    if (r->type == REDIS_REPLY_STRING && s->keys) {
        struct cp_buf plain = {0};
        int orc = cache__unseal(s->keys, key, strlen(key), r->str, r->len, &plain);
        if (orc == 0 && cache_entry_decode(plain.p ? plain.p : "", plain.len, out) != 0)
            *out = NULL;
        if (plain.p)
            explicit_bzero(plain.p, plain.len);
        cp_buf_free(&plain);
        freeReplyObject(r);
        r = NULL;
        if (orc == CP_EINVAL)
            drop_unsealable(s, key);
        else if (orc)
            rc = cp_err_set(err, orc, "redis GET: cannot open the value");
    } else if (r->type == REDIS_REPLY_STRING) {
        if (cache_entry_decode(r->str, r->len, out) != 0) {
            *out = NULL; /* corrupt or foreign: a miss, never a crash */
            cp_log(s->env.log, CP_LOG_DEBUG, "ignoring an unreadable redis cache entry", NULL, 0);
        }
    } else if (r->type == REDIS_REPLY_ERROR) {
        rc = cp_err_set(err, CP_EBACKEND, "redis GET failed: %.100s", r->str);
        count_error(s);
    }
    if (r)
        freeReplyObject(r);
    if (*out && s->near) {
        int64_t left = cache_entry_keep_ms(*out) - (cp_now_ms() - (*out)->stored_ms);
        int64_t keep = left < s->near_ms ? left : s->near_ms;
        struct cp_err ignored;
        if (keep > 0)
            cache__memory_backend.set(s->near, k, *out, keep, &ignored);
    }
    return rc;
}

/* The purge index member of an entry (see the file comment). */
static int index_member(struct redis_store *s, const struct cache_key *k, const char *path,
                        struct cp_buf *m)
{
    if (!s->keys)
        return cp_buf_addf(m, "%s\n%s", path, k->hex);
    int rc = cp_buf_addf(m, "%s\n", k->hex);
    return rc ? rc : cache__seal(s->keys, s->index, strlen(s->index), path, strlen(path), 1, m);
}

/* Keeps the index bounded: entries expire by themselves, stale members only cost space. */
static void index_trim(struct redis_store *s)
{
    struct cp_err err;
    redisReply *r = run1(s, &err, "ZCARD %s", s->index);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer > INDEX_MAX) {
        redisReply *t = run1(s, &err, "ZREMRANGEBYRANK %s 0 %lld", s->index,
                             (long long)(r->integer - INDEX_MAX - 1));
        if (t)
            freeReplyObject(t);
    }
    if (r)
        freeReplyObject(r);
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
    char key[KEY_MAX];
    key_of(s, k, key, sizeof key);
    struct cp_buf v = {0}, sealed = {0}, member = {0};
    struct cache__rbatch b = {0};
    int rc = cache_entry_encode(e, &v);
    if (!rc && s->keys)
        rc = cache__seal(s->keys, key, strlen(key), v.p, v.len, 0, &sealed);
    if (!rc)
        rc = index_member(s, k, e->path ? e->path : "", &member);
    const struct cp_buf *val = s->keys ? &sealed : &v;
    /* one round trip: the entry, its index member, the index lifetime */
    if (!rc)
        rc = cache__rbatch_add(&b, "SET %s %b PX %lld", key, val->p ? val->p : "", val->len,
                               (long long)keep_ms);
    if (!rc)
        rc = cache__rbatch_add(&b, "ZADD %s 0 %b", s->index, member.p ? member.p : "", member.len);
    if (!rc)
        rc = cache__rbatch_add(&b, "PEXPIRE %s %lld", s->index,
                               (long long)(keep_ms + INDEX_EXTRA_MS));
    if (v.p)
        explicit_bzero(v.p, v.len);
    cp_buf_free(&v);
    cp_buf_free(&sealed);
    cp_buf_free(&member);
    if (rc) {
        cache__rbatch_dispose(&b);
        return cp_err_set(err, rc, "redis SET: %s", cp_strerror(rc));
    }
    if (cache__rclient_run(s->client, s->slot, &b, err) != 0) {
        count_error(s);
        cache__rbatch_dispose(&b);
        return CP_EBACKEND;
    }
    for (size_t i = 0; i < b.n && !rc; i++)
        if (b.reply[i]->type == REDIS_REPLY_ERROR) {
            rc = cp_err_set(err, CP_EBACKEND, "redis SET failed: %.100s", b.reply[i]->str);
            count_error(s);
        }
    cache__rbatch_dispose(&b);
    if (!rc && atomic_fetch_add(&s->sets, 1) % 1000 == 999)
        index_trim(s);
    return rc;
}

static int rs_del(struct cache_store *base, const struct cache_key *k, struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near)
        cache__memory_backend.del(s->near, k, err);
    char key[KEY_MAX];
    key_of(s, k, key, sizeof key);
    redisReply *r = run1(s, err, "DEL %s", key);
    if (!r)
        return CP_EBACKEND;
    freeReplyObject(r);
    return 0;
}

/* ---- purge -------------------------------------------------------------------------------- */

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

static int purge_all(struct redis_store *s, uint64_t *purged, struct cp_err *err)
{
    char pat[KEY_MAX * 2 + 2];
    glob_escape(s->prefix, pat, sizeof pat - 2);
    strcat(pat, "*");
    char cursor[32] = "0";
    do {
        redisReply *r = run1(s, err, "SCAN %s MATCH %s COUNT 1000", cursor, pat);
        if (!r)
            return CP_EBACKEND;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return cp_err_set(err, CP_EBACKEND, "redis SCAN: unexpected reply");
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            size_t kl = keys->element[i]->len;
            if (!k)
                continue;
            int is_lock = kl > 5 && !memcmp(k + kl - 5, ":lock", 5);
            redisReply *d = run1(s, err, "DEL %b", k, kl);
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

/* Deletes the entry named by hex and the index member m. */
static int purge_member(struct redis_store *s, const char *hex, size_t hexlen, const char *m,
                        size_t mlen, uint64_t *purged, struct cp_err *err)
{
    struct cache__rbatch b = {0};
    int rc = cache__rbatch_add(&b, "DEL %s%b", s->prefix, hex, hexlen);
    if (!rc)
        rc = cache__rbatch_add(&b, "ZREM %s %b", s->index, m, mlen);
    if (rc) {
        cache__rbatch_dispose(&b);
        return cp_err_set(err, rc, "out of memory");
    }
    if (cache__rclient_run(s->client, s->slot, &b, err) != 0) {
        count_error(s);
        cache__rbatch_dispose(&b);
        return CP_EBACKEND;
    }
    if (b.reply[0]->type == REDIS_REPLY_INTEGER)
        *purged += (uint64_t)b.reply[0]->integer;
    cache__rbatch_dispose(&b);
    return 0;
}

/* Values in clear: the index members start with the path, so the prefix is a lexical range. */
static int purge_prefix_clear(struct redis_store *s, const char *prefix, uint64_t *purged,
                              struct cp_err *err)
{
    for (;;) {
        redisReply *r =
            run1(s, err, "ZRANGEBYLEX %s [%s [%s\xff LIMIT 0 1000", s->index, prefix, prefix);
        if (!r)
            return CP_EBACKEND;
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return cp_err_set(err, CP_EBACKEND, "redis ZRANGEBYLEX: unexpected reply");
        }
        size_t n = r->elements;
        for (size_t i = 0; i < n; i++) {
            const char *m = r->element[i]->str;
            size_t ml = r->element[i]->len;
            const char *nl = m ? memrchr(m, '\n', ml) : NULL;
            int rc = m ? purge_member(s, nl ? nl + 1 : "", nl ? ml - (size_t)(nl + 1 - m) : 0, m,
                                      ml, purged, err)
                       : 0;
            if (rc) {
                freeReplyObject(r);
                return rc;
            }
        }
        freeReplyObject(r);
        if (n < 1000)
            return 0;
    }
}

/* Encrypted values: the paths in the index are sealed, so every member is opened. */
static int purge_prefix_sealed(struct redis_store *s, const char *prefix, uint64_t *purged,
                               struct cp_err *err)
{
    size_t pl = strlen(prefix);
    char cursor[32] = "0";
    do {
        redisReply *r = run1(s, err, "ZSCAN %s %s COUNT 1000", s->index, cursor);
        if (!r)
            return CP_EBACKEND;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return cp_err_set(err, CP_EBACKEND, "redis ZSCAN: unexpected reply");
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *items = r->element[1]; /* member, score, member, score ... */
        for (size_t i = 0; i + 1 < items->elements; i += 2) {
            const char *m = items->element[i]->str;
            size_t ml = items->element[i]->len;
            const char *nl = m ? memchr(m, '\n', ml) : NULL;
            if (!nl)
                continue;
            int rc = 0;
            if (m[0] == '/') {
                /* "<path>\n<hex>", written before encryption was on */
                const char *tail = memrchr(m, '\n', ml);
                if ((size_t)(tail - m) >= pl && !memcmp(m, prefix, pl))
                    rc = purge_member(s, tail + 1, ml - (size_t)(tail + 1 - m), m, ml, purged, err);
            } else {
                struct cp_buf path = {0};
                size_t hexlen = (size_t)(nl - m);
                int match = cache__unseal(s->keys, s->index, strlen(s->index), nl + 1,
                                          ml - hexlen - 1, &path) == 0 &&
                            path.len >= pl && !memcmp(path.p, prefix, pl);
                cp_buf_free(&path);
                if (match)
                    rc = purge_member(s, m, hexlen, m, ml, purged, err);
            }
            if (rc) {
                freeReplyObject(r);
                return rc;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0"));
    return 0;
}

static int rs_purge(struct cache_store *base, const char *prefix, uint64_t *purged,
                    struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near) {
        uint64_t ignored = 0;
        cache__memory_backend.purge_prefix(s->near, prefix, &ignored, err);
    }
    if (!prefix || !*prefix)
        return purge_all(s, purged, err);
    return s->keys ? purge_prefix_sealed(s, prefix, purged, err)
                   : purge_prefix_clear(s, prefix, purged, err);
}

/* ---- the rest ----------------------------------------------------------------------------- */

static void rs_usage(struct cache_store *base, struct cache_usage *u)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near)
        cache__memory_backend.usage(s->near, u);
    struct cp_err err;
    redisReply *r = run1(s, &err, "ZCARD %s", s->index);
    if (r) {
        if (r->type == REDIS_REPLY_INTEGER)
            u->entries = (uint64_t)r->integer;
        freeReplyObject(r);
    }
}

static int rs_ping(struct cache_store *base, char *where, size_t wsize, struct cp_err *err)
{
    struct redis_store *s = (struct redis_store *)base;
    redisReply *r = run1(s, err, "PING");
    if (where && wsize)
        cache__rclient_where(s->client, s->slot, where, wsize);
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
    snprintf(tok->v, sizeof tok->v, "%lx-%llx-%llx", (unsigned long)getpid(),
             (unsigned long long)atomic_fetch_add(&lock_seq, 1), (unsigned long long)cp_mono_ns());
    redisReply *r =
        run1(s, &err, "SET %s%s:lock %s NX PX %lld", s->prefix, k->hex, tok->v, (long long)ttl_ms);
    if (!r)
        return CP_EBACKEND;
    int rc = r->type == REDIS_REPLY_STATUS ? 1 : r->type == REDIS_REPLY_NIL ? 0 : -1;
    freeReplyObject(r);
    return rc;
}

static void rs_unlock(struct cache_store *base, const struct cache_key *k,
                      const struct cache_lock_token *tok)
{
    struct redis_store *s = (struct redis_store *)base;
    struct cp_err err;
    redisReply *r = run1(s, &err, "EVAL %s 1 %s%s:lock %s",
                         "if redis.call('get',KEYS[1])==ARGV[1] then "
                         "return redis.call('del',KEYS[1]) else return 0 end",
                         s->prefix, k->hex, tok->v);
    if (r)
        freeReplyObject(r);
}

static int rs_lock_held(struct cache_store *base, const struct cache_key *k)
{
    struct redis_store *s = (struct redis_store *)base;
    struct cp_err err;
    redisReply *r = run1(s, &err, "EXISTS %s%s:lock", s->prefix, k->hex);
    if (!r)
        return CP_EBACKEND;
    int rc = r->type == REDIS_REPLY_INTEGER ? r->integer > 0 : -1;
    freeReplyObject(r);
    return rc;
}

static void secret_add(void *ctx, const char *v)
{
    cp_log_secret_add(ctx, v);
}
static void secret_remove(void *ctx, const char *v)
{
    cp_log_secret_remove(ctx, v);
}

static void rs_close(struct cache_store *base)
{
    struct redis_store *s = (struct redis_store *)base;
    if (s->near)
        cache__memory_backend.close(s->near);
    cache__keyring_each_text(s->keys, secret_remove, (void *)s->env.log);
    cache__rclient_release(s->client);
    free(s->prefix);
    free(s->index);
    free(s);
}

static int rs_open(const struct cfg_ds *cfg, const struct cache_env *env, struct cache_store **out,
                   struct cp_err *err)
{
    const struct cache__keyring *keys = NULL;
    int rc = cache__keyring_env(&keys, err);
    if (rc) {
        /* fail closed: with keys meant to be set, nothing is written in clear (logged once;
         * every call and health check says it too) */
        static atomic_flag logged = ATOMIC_FLAG_INIT;
        if (!atomic_flag_test_and_set(&logged))
            cp_log(env->log, CP_LOG_ERROR, "redis cache refused: the encryption keys are wrong",
                   (struct cp_kv[]){CP_KV_S("error", cp_err_text(err))}, 1);
        return rc;
    }
    struct redis_store *s = calloc(1, sizeof *s);
    if (!s)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    s->base.be = &cache__redis_backend;
    s->env = *env;
    s->keys = keys;
    cache__keyring_each_text(keys, secret_add, (void *)env->log);
    size_t n = strlen(cfg->cache.key_prefix) + strlen(cfg->key_id) + 8;
    if (n + 72 > KEY_MAX) {
        rs_close(&s->base);
        return cp_err_set(err, CP_ECONFIG,
                          "jsonData.cache.keyPrefix: too long (at most %d "
                          "bytes with the data source's uid)",
                          KEY_MAX - 80);
    }
    s->prefix = malloc(n);
    s->index = malloc(n + 8);
    if (!s->prefix || !s->index) {
        rs_close(&s->base);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    snprintf(s->prefix, n, "%s{%s}:", cfg->cache.key_prefix, cfg->key_id);
    snprintf(s->index, n + 8, "%s:index", s->prefix);
    s->slot = cache__key_slot(s->index, strlen(s->index));
    if ((rc = cache__rclient_acquire(&cfg->cache, env->log, &s->client, err))) {
        rs_close(&s->base);
        return rc;
    }
    if (cfg->cache.near_cache_ms > 0) {
        s->near_ms = cfg->cache.near_cache_ms;
        int64_t nb = cfg->cache.memory_max_bytes < NEAR_MAX_BYTES ? cfg->cache.memory_max_bytes
                                                                  : NEAR_MAX_BYTES;
        rc = cache__memory_open(nb, cfg->cache.max_entry_bytes, env, &s->near, err);
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
