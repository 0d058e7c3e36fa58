/* cache.c - picks a backend by name and forwards the store operations to it. "off" opens no
 * store at all: the pipeline bypasses the cache. */
#include "backend.h"

#include <stdio.h>
#include <string.h>

static const struct cache_backend *const backends[] = {&cache__memory_backend,
                                                       &cache__redis_backend, NULL};

int cache_store_open(const struct cfg_ds *cfg, const struct cache_env *env,
                     struct cache_store **out, struct cp_err *err)
{
    *out = NULL;
    if (cfg->cache.backend == CFG_CACHE_OFF)
        return 0;
    const char *name = cfg_cache_backend_name(cfg->cache.backend);
    for (size_t i = 0; backends[i]; i++)
        if (!strcmp(backends[i]->name, name))
            return backends[i]->open(cfg, env, out, err);
    return cp_err_set(err, CP_ECONFIG, "jsonData.cache.backend: unknown backend %s", name);
}

void cache_store_close(struct cache_store *s)
{
    if (s)
        s->be->close(s);
}

const char *cache_store_backend(const struct cache_store *s) { return s ? s->be->name : "off"; }

unsigned cache_store_caps(const struct cache_store *s) { return s ? s->be->caps : 0; }

int cache_get(struct cache_store *s, const struct cache_key *k, struct cache_entry **out,
              struct cp_err *err)
{
    return s->be->get(s, k, out, err);
}

int cache_set(struct cache_store *s, const struct cache_key *k, struct cache_entry *e,
              struct cp_err *err)
{
    return s->be->set(s, k, e, cache_entry_keep_ms(e), err);
}

int cache_del(struct cache_store *s, const struct cache_key *k, struct cp_err *err)
{
    return s->be->del ? s->be->del(s, k, err) : 0;
}

int cache_purge(struct cache_store *s, const char *prefix, uint64_t *purged, struct cp_err *err)
{
    *purged = 0;
    return s->be->purge_prefix(s, prefix, purged, err);
}

void cache_usage(struct cache_store *s, struct cache_usage *u)
{
    memset(u, 0, sizeof *u);
    if (s && s->be->usage)
        s->be->usage(s, u);
}

int cache_ping(struct cache_store *s, char *where, size_t wsize, struct cp_err *err)
{
    if (where && wsize)
        snprintf(where, wsize, "%s", s->be->name);
    return s->be->ping ? s->be->ping(s, where, wsize, err) : 0;
}

int cache_lock(struct cache_store *s, const struct cache_key *k, int64_t ttl_ms,
               struct cache_lock_token *tok)
{
    return (s->be->caps & CACHE_CAP_LOCK) && s->be->lock ? s->be->lock(s, k, ttl_ms, tok)
                                                         : CP_ENOTSUP;
}

void cache_unlock(struct cache_store *s, const struct cache_key *k,
                  const struct cache_lock_token *tok)
{
    if ((s->be->caps & CACHE_CAP_LOCK) && s->be->unlock)
        s->be->unlock(s, k, tok);
}

int cache_lock_held(struct cache_store *s, const struct cache_key *k)
{
    return (s->be->caps & CACHE_CAP_LOCK) && s->be->lock_held ? s->be->lock_held(s, k)
                                                              : CP_ENOTSUP;
}
