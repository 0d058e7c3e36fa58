/*
 * evict.h - W-TinyLFU for the memory backend, byte weighted: node storage, a small LRU
 * admission window (1% of the budget), a segmented LRU main space (probation, protected =
 * 80% of main) and a count-min sketch of 4-bit counters with periodic halving (aging). When
 * the budget is exceeded, an entry leaving the window competes with the LRU end of probation
 * and the one the sketch saw less often goes (after Caffeine's BoundedLocalCache).
 *
 * Internal to cache/ (memory.c; tests and bench_policy.c reach the store hooks at the end).
 * Not thread-safe: the owner serialises every call (memory.c holds the shard mutex).
 */
#ifndef CP_CACHE_EVICT_H
#define CP_CACHE_EVICT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

/* Hash helpers shared by the policy and the store: keys are SHA-256 digests, so their bytes
 * are already uniform; mixing with a per-store seed keeps sharding unpredictable. */
static inline uint64_t cache__load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t cache__mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

enum cache__evict_region {
    CACHE__EVICT_WINDOW = 0,
    CACHE__EVICT_PROBATION = 1,
    CACHE__EVICT_PROTECTED = 2,
};
#define CACHE__EVICT_NREGIONS 3

/* Largest weight a node can carry (30 bits): bigger entries are refused by the owner. */
#define CACHE__EVICT_MAX_WEIGHT ((1u << 30) - 1)
/* Nodes per storage chunk; chunks are 64-byte aligned and never move. */
#define CACHE__EVICT_CHUNK_SHIFT 6
#define CACHE__EVICT_CHUNK (1u << CACHE__EVICT_CHUNK_SHIFT)
/* Ids 1..3 name the region sentinels; node ids start here. 0 is "none". */
#define CACHE__EVICT_FIRST_ID (CACHE__EVICT_NREGIONS + 1)

/* The policy's part of a node: the first member of the owner's node record. */
struct cache__evict_node {
    uint32_t prev, next;   /* region list neighbours, towards the LRU / MRU end */
    unsigned weight : 30;  /* bytes charged to the region budgets (the entry's mem_size) */
    unsigned region : 2;   /* enum cache__evict_region */
    uint32_t aux;          /* free for the owner (memory.c: position in its expiry heap) */
    unsigned char key[32]; /* key hash; bytes 16..23 feed the sketch */
};

/* Count-min sketch, 4 rows of 4-bit counters, all four counters of a key in one 64-byte
 * block. After `sample` increments every counter is halved, so old popularity fades. */
struct cache__evict_sketch {
    uint64_t *table; /* 16 counters per word, 8 words per block */
    uint32_t blocks; /* power of two; 0 before the first grow */
    uint32_t additions, sample;
    uint64_t seed; /* keyed hash: keys cannot be ground to collide */
};

/* Called for each victim chosen by cache__evict_run(), after it left its region list and
 * before its id is freed: the owner drops its own references (index, heap, entry). */
typedef void cache__evict_drop_fn(void *ctx, uint32_t id);

struct cache__evict {
    /* node storage: chunks of CACHE__EVICT_CHUNK records of node_size bytes */
    char **chunks;
    uint32_t nchunks, chunks_cap;
    size_t node_size;
    uint32_t free_head; /* free ids, linked through next */
    uint32_t top;       /* next never-used id */
    uint32_t live;      /* allocated ids */
    /* regions: sent[r] is the sentinel of region r (id r + 1); next = LRU end, prev = MRU */
    struct cache__evict_node sent[CACHE__EVICT_NREGIONS];
    uint64_t cap;                       /* byte budget: weights + all bookkeeping */
    uint64_t window_max, protected_max; /* region budgets (bytes of weight) */
    uint64_t bytes[CACHE__EVICT_NREGIONS];
    uint64_t weight; /* sum of live weights */
    uint64_t fixed;  /* bytes this policy allocated: chunks, chunk table, sketch */
    uint64_t rng;
    struct cache__evict_sketch sketch;
};

/* ---- sketch ------------------------------------------------------------------------------- */

/* Sizes the sketch for about `entries` keys (counters are lost). 0 or CP_ENOMEM (the old
 * table is kept). */
int cache__evict_sketch_resize(struct cache__evict_sketch *sk, uint32_t entries);
void cache__evict_sketch_dispose(struct cache__evict_sketch *sk);
void cache__evict_sketch_increment(struct cache__evict_sketch *sk, const unsigned char key[32]);
/* Estimated frequency 0..15 (an upper bound of the true count since the last halvings). */
unsigned cache__evict_sketch_frequency(const struct cache__evict_sketch *sk,
                                       const unsigned char key[32]);
/* Halves every counter (runs by itself every `sample` increments). */
void cache__evict_sketch_age(struct cache__evict_sketch *sk);

/* ---- policy ------------------------------------------------------------------------------- */

/* Empty policy for records of node_size bytes (a multiple of 8, starting with struct
 * cache__evict_node) within cap bytes. Allocates nothing yet. */
void cache__evict_init(struct cache__evict *p, size_t node_size, uint64_t cap, uint64_t seed);
/* Frees the storage (not what the owner's records point to). */
void cache__evict_dispose(struct cache__evict *p);

/* Record of a live id (borrowed until the id is freed; records never move). */
static inline void *cache__evict_at(const struct cache__evict *p, uint32_t id)
{
    uint32_t i = id - CACHE__EVICT_FIRST_ID;
    return p->chunks[i >> CACHE__EVICT_CHUNK_SHIFT] +
           (size_t)(i & (CACHE__EVICT_CHUNK - 1)) * p->node_size;
}

/* A zeroed record, not yet in any region. 0 or CP_ENOMEM. */
int cache__evict_alloc(struct cache__evict *p, uint32_t *id);
/* Puts an allocated record (key filled in) at the MRU end of the window; counts an access. */
void cache__evict_insert(struct cache__evict *p, uint32_t id, uint32_t weight);
/* A hit: counts an access and moves the node (probation hits are promoted to protected). */
void cache__evict_access(struct cache__evict *p, uint32_t id);
/* The node's entry was replaced by one of another weight; counts as an access. */
void cache__evict_update(struct cache__evict *p, uint32_t id, uint32_t weight);
/* Takes the node out of its region and frees its id (del, expiry, purge). */
void cache__evict_remove(struct cache__evict *p, uint32_t id);
/* Moves the window's overflow to probation, then evicts while weights + fixed + extra
 * (the owner's bookkeeping bytes) exceed cap, calling drop for each victim. Returns the
 * number evicted. */
uint64_t cache__evict_run(struct cache__evict *p, uint64_t extra, cache__evict_drop_fn *drop,
                          void *ctx);
/* Iterates live nodes (window, probation, protected): pass 0 to start; returns 0 at the
 * end. Fetch the next id before removing the current one. */
uint32_t cache__evict_next(const struct cache__evict *p, uint32_t id);
/* With no live node left, frees the storage and the sketch (fixed drops to 0). */
void cache__evict_compact(struct cache__evict *p);

/* ---- memory store hooks for tests and the benchmark ------------------------------------- */

struct cache__memory_stats {
    unsigned shards;
    uint64_t entries;
    uint64_t data_bytes;        /* sum of entry mem_size */
    uint64_t bookkeeping_bytes; /* nodes, index, expiry heap, sketch */
    uint64_t capacity;          /* sum of shard budgets (<= max_bytes) */
    uint64_t evictions, expired;
    uint64_t region_bytes[CACHE__EVICT_NREGIONS];
};
/* Snapshot of a store opened by cache__memory_open (each shard locked in turn). */
void cache__memory_stats(struct cache_store *s, struct cache__memory_stats *st);
/* Replaces the wall clock (cp_now_ms) the store uses for expiry. Call before sharing s. */
void cache__memory_set_clock(struct cache_store *s, int64_t (*now)(void *ctx), void *ctx);

#endif
