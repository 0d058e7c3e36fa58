/*
 * backend.h - the table of operations every cache backend provides (one const instance per
 * backend file; cache.c picks one by name). A store embeds struct cache_store first.
 * Optional slots may be NULL. Internal to cache/.
 */
#ifndef CP_CACHE_BACKEND_H
#define CP_CACHE_BACKEND_H

#include "cache.h"

struct cache_store;

struct cache_backend {
    const char *name;
    unsigned caps;
    int (*open)(const struct cfg_ds *cfg, const struct cache_env *env, struct cache_store **out,
                struct cp_err *err);
    /* miss: 0 with *out NULL; hit: *out holds a new reference */
    int (*get)(struct cache_store *s, const struct cache_key *k, struct cache_entry **out,
               struct cp_err *err);
    /* stores e (taking its own reference) for keep_ms */
    int (*set)(struct cache_store *s, const struct cache_key *k, struct cache_entry *e,
               int64_t keep_ms, struct cp_err *err);
    int (*del)(struct cache_store *s, const struct cache_key *k, struct cp_err *err);
    /* prefix NULL or "": everything of this store */
    int (*purge_prefix)(struct cache_store *s, const char *prefix, uint64_t *purged,
                        struct cp_err *err);
    void (*usage)(struct cache_store *s, struct cache_usage *u);
    /* where: the mode and node, for health messages (may be NULL) */
    int (*ping)(struct cache_store *s, char *where, size_t wsize, struct cp_err *err);
    int (*lock)(struct cache_store *s, const struct cache_key *k, int64_t ttl_ms,
                struct cache_lock_token *tok);
    void (*unlock)(struct cache_store *s, const struct cache_key *k,
                   const struct cache_lock_token *tok);
    /* 1 while someone holds k's lock, 0 when nobody does, negative on failure */
    int (*lock_held)(struct cache_store *s, const struct cache_key *k);
    void (*close)(struct cache_store *s);
};

struct cache_store {
    const struct cache_backend *be;
};

extern const struct cache_backend cache__memory_backend;
extern const struct cache_backend cache__redis_backend;

/* Memory store with explicit limits, for the Redis near cache and for tests/bench. */
int cache__memory_open(int64_t max_bytes, int64_t max_entry_bytes, const struct cache_env *env,
                       struct cache_store **out, struct cp_err *err);

/* CRC-32C (Castagnoli) of a buffer, used by the entry codec. */
uint32_t cache__crc32c(uint32_t crc, const void *p, size_t n);

#endif
