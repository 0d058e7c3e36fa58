/* memory.c - the in-process cache backend. Entries are kept by reference in up to 32 shards
 * picked by key hash; each shard has an open-addressing index of node ids, a min-heap of
 * expiry times (expired entries go first, before any live one is evicted) and a W-TinyLFU
 * policy (evict.c). The byte budget covers entry sizes and every byte of per-entry
 * bookkeeping (nodes, index, heap, sketch).
 *
 * Read-mostly locking: each shard has one mutex per stripe (a power of two >= the CPU count,
 * at most 8). A lookup locks only the stripe of the CPU it runs on, so two threads rarely
 * share a written cache line; it takes its reference and notes the hit in the stripe's
 * buffer. Writers (set, del, purge, and a reader whose buffer filled up) lock every stripe
 * in order, replay the noted hits into the policy, then change the shard. Under a lock only
 * pointers move: bodies are never copied, and released entries are unreferenced after
 * unlocking. */
#include "evict.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define MAX_SHARDS 32
#define MIN_SHARD_BYTES (256 * 1024) /* below this, fewer shards keep the policy useful */
#define MIN_SLOTS_BITS 6
#define BATCH 32 /* entries released after unlocking, per call */
#define MAX_STRIPES 8
#define READ_BUF 64 /* hits noted per stripe before they are replayed */

/* One cache line: policy links and key, the entry, its expiry. */
struct node {
    struct cache__evict_node n; /* n.aux: position in the expiry heap */
    struct cache_entry *e;      /* the store's reference */
    int64_t expire_ms;          /* wall clock; a miss from then on */
};
_Static_assert(sizeof(struct node) == 64, "a node is one cache line");

/* A reader lock and the hits noted under it, one cache line group per stripe. */
struct stripe {
    _Alignas(64) pthread_mutex_t mu;
    uint32_t n;
    uint32_t ids[READ_BUF];
    uint32_t tags[READ_BUF]; /* key bytes 24..27: ids are reused */
};

struct shard {
    _Alignas(64) struct cache__evict pol;
    struct stripe *stripes;
    uint32_t *slots; /* node ids, 0 = empty; linear probing, load <= 3/4 */
    unsigned slot_bits;
    uint32_t *heap; /* node ids by expire_ms */
    uint32_t heap_len, heap_cap;
    uint64_t fixed; /* bytes of slots and heap */
    uint64_t evictions, expired;
    uint64_t seed;
};

struct mem_store {
    struct cache_store base;
    _Atomic uint64_t *ext_evictions; /* env->evictions, may be NULL */
    uint64_t max_entry;
    unsigned nshards, nstripes;
    uint64_t seed;
    int64_t (*now)(void *ctx);
    void *now_ctx;
    struct shard *shards;
    struct stripe *stripes; /* nshards * nstripes */
};

/* Entries to release once the lock is dropped. */
struct batch {
    struct cache_entry *v[BATCH];
    unsigned n;
};

static void batch_add(struct batch *b, struct cache_entry *e)
{
    if (b->n < BATCH)
        b->v[b->n++] = e;
    else
        cache_entry_unref(e); /* rare: a large entry pushed out many small ones */
}

static void batch_release(struct batch *b)
{
    for (unsigned i = 0; i < b->n; i++)
        cache_entry_unref(b->v[i]);
    b->n = 0;
}

static int64_t wall_now(void *ctx)
{
    (void)ctx;
    return cp_now_ms();
}

static struct node *node_at(const struct shard *sh, uint32_t id)
{
    return cache__evict_at(&sh->pol, id);
}

static struct shard *shard_of(const struct mem_store *m, const unsigned char *key)
{
    return &m->shards[cache__mix64(cache__load64(key) ^ m->seed) & (m->nshards - 1)];
}

/* ---- index -------------------------------------------------------------------------------- */

static uint32_t home_of(const struct shard *sh, const unsigned char *key)
{
    return (uint32_t)(cache__mix64(cache__load64(key + 8) ^ sh->seed) >> (64 - sh->slot_bits));
}

/* Slot holding key, or -1. */
static long slot_find(const struct shard *sh, const unsigned char *key)
{
    if (!sh->slots)
        return -1;
    uint32_t mask = (1u << sh->slot_bits) - 1;
    for (uint32_t i = home_of(sh, key);; i = (i + 1) & mask) {
        uint32_t id = sh->slots[i];
        if (!id)
            return -1;
        if (!memcmp(node_at(sh, id)->n.key, key, 32))
            return (long)i;
    }
}

static void slot_put(struct shard *sh, uint32_t id)
{
    uint32_t mask = (1u << sh->slot_bits) - 1;
    uint32_t i = home_of(sh, node_at(sh, id)->n.key);
    while (sh->slots[i])
        i = (i + 1) & mask;
    sh->slots[i] = id;
}

/* Empties slot i, shifting later members of the probe run back (no tombstones). */
static void slot_clear(struct shard *sh, uint32_t i)
{
    uint32_t mask = (1u << sh->slot_bits) - 1;
    for (uint32_t j = (i + 1) & mask; sh->slots[j]; j = (j + 1) & mask) {
        uint32_t home = home_of(sh, node_at(sh, sh->slots[j])->n.key);
        /* the member at j may move to i when its home is not cyclically within (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            sh->slots[i] = sh->slots[j];
            i = j;
        }
    }
    sh->slots[i] = 0;
}

/* Room for one more id: doubles the table past 3/4 load. */
static int slots_reserve(struct shard *sh)
{
    uint64_t n = sh->slots ? 1ull << sh->slot_bits : 0;
    if ((uint64_t)(sh->pol.live + 1) * 4 <= n * 3)
        return 0;
    unsigned bits = sh->slots ? sh->slot_bits + 1 : MIN_SLOTS_BITS;
    if (bits > 31)
        return CP_ENOMEM;
    uint32_t *ns = calloc((size_t)1 << bits, sizeof *ns);
    if (!ns)
        return CP_ENOMEM;
    uint32_t *old = sh->slots;
    sh->slots = ns;
    sh->slot_bits = bits;
    for (uint64_t i = 0; i < n; i++)
        if (old[i])
            slot_put(sh, old[i]);
    free(old);
    sh->fixed += (((uint64_t)1 << bits) - n) * sizeof *ns;
    return 0;
}

/* ---- expiry heap -------------------------------------------------------------------------- */

static void heap_place(struct shard *sh, uint32_t pos, uint32_t id)
{
    sh->heap[pos] = id;
    node_at(sh, id)->n.aux = pos;
}

static void heap_up(struct shard *sh, uint32_t pos)
{
    uint32_t id = sh->heap[pos];
    int64_t ex = node_at(sh, id)->expire_ms;
    while (pos) {
        uint32_t parent = (pos - 1) / 2;
        if (node_at(sh, sh->heap[parent])->expire_ms <= ex)
            break;
        heap_place(sh, pos, sh->heap[parent]);
        pos = parent;
    }
    heap_place(sh, pos, id);
}

static void heap_down(struct shard *sh, uint32_t pos)
{
    uint32_t id = sh->heap[pos];
    int64_t ex = node_at(sh, id)->expire_ms;
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= sh->heap_len)
            break;
        if (c + 1 < sh->heap_len &&
            node_at(sh, sh->heap[c + 1])->expire_ms < node_at(sh, sh->heap[c])->expire_ms)
            c++;
        if (node_at(sh, sh->heap[c])->expire_ms >= ex)
            break;
        heap_place(sh, pos, sh->heap[c]);
        pos = c;
    }
    heap_place(sh, pos, id);
}

static int heap_reserve(struct shard *sh)
{
    if (sh->heap_len < sh->heap_cap)
        return 0;
    uint32_t ncap = sh->heap_cap ? sh->heap_cap * 2 : 1u << MIN_SLOTS_BITS;
    if (ncap < sh->heap_cap)
        return CP_ENOMEM;
    uint32_t *nh = realloc(sh->heap, (size_t)ncap * sizeof *nh);
    if (!nh)
        return CP_ENOMEM;
    sh->heap = nh;
    sh->fixed += (uint64_t)(ncap - sh->heap_cap) * sizeof *nh;
    sh->heap_cap = ncap;
    return 0;
}

static void heap_push(struct shard *sh, uint32_t id)
{
    sh->heap[sh->heap_len] = id;
    heap_up(sh, sh->heap_len++);
}

static void heap_remove(struct shard *sh, uint32_t pos)
{
    uint32_t last = sh->heap[--sh->heap_len];
    if (pos == sh->heap_len)
        return;
    heap_place(sh, pos, last);
    heap_down(sh, pos);
    heap_up(sh, node_at(sh, last)->n.aux);
}

/* ---- locking ------------------------------------------------------------------------------ */

static uint32_t tag_of(const unsigned char *key)
{
    uint32_t t;
    memcpy(&t, key + 24, sizeof t);
    return t;
}

/* The stripe of the CPU the caller runs on (a migration costs only locality). */
static struct stripe *my_stripe(const struct mem_store *m, const struct shard *sh)
{
    int cpu = sched_getcpu();
    return &sh->stripes[(unsigned)(cpu < 0 ? 0 : cpu) & (m->nstripes - 1)];
}

/* Replays the hits noted by readers. Stale notes (freed or reused ids) are skipped. */
static void replay(const struct mem_store *m, struct shard *sh)
{
    for (unsigned i = 0; i < m->nstripes; i++) {
        struct stripe *st = &sh->stripes[i];
        for (uint32_t j = 0; j < st->n; j++) {
            uint32_t id = st->ids[j];
            if (id < CACHE__EVICT_FIRST_ID || id >= sh->pol.top)
                continue;
            struct node *nd = node_at(sh, id);
            if (nd->e && tag_of(nd->n.key) == st->tags[j])
                cache__evict_access(&sh->pol, id);
        }
        st->n = 0;
    }
}

/* Exclusive access to the shard: every stripe, in order; noted hits are replayed first. */
static void wlock(const struct mem_store *m, struct shard *sh)
{
    for (unsigned i = 0; i < m->nstripes; i++)
        pthread_mutex_lock(&sh->stripes[i].mu);
    replay(m, sh);
}

static void wunlock(const struct mem_store *m, struct shard *sh)
{
    for (unsigned i = m->nstripes; i-- > 0;)
        pthread_mutex_unlock(&sh->stripes[i].mu);
}

/* ---- shard operations (exclusive) ----------------------------------------------------------- */

/* Drops the index and heap references to id and hands back its entry; the policy still
 * holds the id. */
static struct cache_entry *forget(struct shard *sh, uint32_t id)
{
    struct node *nd = node_at(sh, id);
    struct cache_entry *e = nd->e;
    long pos = slot_find(sh, nd->n.key);
    if (pos >= 0)
        slot_clear(sh, (uint32_t)pos);
    heap_remove(sh, nd->n.aux);
    nd->e = NULL; /* marks the id dead for notes still in a stripe */
    return e;
}

static struct cache_entry *remove_node(struct shard *sh, uint32_t id)
{
    struct cache_entry *e = forget(sh, id);
    cache__evict_remove(&sh->pol, id);
    return e;
}

struct drop_ctx {
    struct shard *sh;
    struct batch *b;
};

static void drop_victim(void *ctx, uint32_t id)
{
    struct drop_ctx *d = ctx;
    batch_add(d->b, forget(d->sh, id));
}

static void expire_due(struct shard *sh, int64_t now, struct batch *b)
{
    while (sh->heap_len && node_at(sh, sh->heap[0])->expire_ms <= now) {
        batch_add(b, remove_node(sh, sh->heap[0]));
        sh->expired++;
    }
}

/* With nothing left, gives every bookkeeping byte back. */
static void shrink_if_empty(struct shard *sh)
{
    if (sh->pol.live)
        return;
    free(sh->slots);
    free(sh->heap);
    sh->slots = NULL;
    sh->heap = NULL;
    sh->slot_bits = 0;
    sh->heap_len = sh->heap_cap = 0;
    sh->fixed = 0;
    cache__evict_compact(&sh->pol);
}

static int insert(struct shard *sh, const unsigned char *key, struct cache_entry *e, int64_t expire)
{
    uint32_t id;
    if (slots_reserve(sh) || heap_reserve(sh) || cache__evict_alloc(&sh->pol, &id))
        return CP_ENOMEM;
    struct node *nd = node_at(sh, id);
    memcpy(nd->n.key, key, 32);
    nd->e = e;
    nd->expire_ms = expire;
    slot_put(sh, id);
    heap_push(sh, id);
    cache__evict_insert(&sh->pol, id, (uint32_t)e->mem_size);
    return 0;
}

static uint64_t shard_bytes(const struct shard *sh)
{
    return sh->pol.weight + sh->pol.fixed + sh->fixed;
}

/* ---- backend slots ------------------------------------------------------------------------ */

/* Exclusive part of a lookup: replay a full buffer, drop the entry if it expired. */
static void get_slow(const struct mem_store *m, struct shard *sh, const struct cache_key *k,
                     int64_t now)
{
    struct cache_entry *dead = NULL;
    wlock(m, sh);
    long pos = slot_find(sh, k->h);
    if (pos >= 0 && node_at(sh, sh->slots[pos])->expire_ms <= now) {
        dead = remove_node(sh, sh->slots[pos]);
        sh->expired++;
    }
    wunlock(m, sh);
    cache_entry_unref(dead);
}

static int mem_get(struct cache_store *s, const struct cache_key *k, struct cache_entry **out,
                   struct cp_err *err)
{
    struct mem_store *m = (struct mem_store *)s;
    struct shard *sh = shard_of(m, k->h);
    struct stripe *st = my_stripe(m, sh);
    int64_t now = m->now(m->now_ctx);
    int slow = 0;
    (void)err;

    *out = NULL;
    pthread_mutex_lock(&st->mu);
    long pos = slot_find(sh, k->h);
    if (pos >= 0) {
        uint32_t id = sh->slots[pos];
        struct node *nd = node_at(sh, id);
        if (nd->expire_ms > now) {
            *out = cache_entry_ref(nd->e);
            if (st->n < READ_BUF) { /* full: another reader is replaying; the hit is lost */
                st->ids[st->n] = id;
                st->tags[st->n] = tag_of(k->h);
                slow = ++st->n == READ_BUF;
            }
        } else {
            slow = 1;
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (slow)
        get_slow(m, sh, k, now);
    return 0;
}

static int mem_del(struct cache_store *s, const struct cache_key *k, struct cp_err *err)
{
    struct mem_store *m = (struct mem_store *)s;
    struct shard *sh = shard_of(m, k->h);
    struct cache_entry *dead = NULL;
    (void)err;

    wlock(m, sh);
    long pos = slot_find(sh, k->h);
    if (pos >= 0)
        dead = remove_node(sh, sh->slots[pos]);
    shrink_if_empty(sh);
    wunlock(m, sh);
    cache_entry_unref(dead);
    return 0;
}

static int mem_set(struct cache_store *s, const struct cache_key *k, struct cache_entry *e,
                   int64_t keep_ms, struct cp_err *err)
{
    struct mem_store *m = (struct mem_store *)s;
    /* Refused (not an error). The older answer this one replaces must not outlive it. */
    if (e->mem_size > m->max_entry || keep_ms <= 0)
        return mem_del(s, k, err);

    struct shard *sh = shard_of(m, k->h);
    struct batch b = {.n = 0};
    struct drop_ctx d = {sh, &b};
    int64_t now = m->now(m->now_ctx);
    int64_t expire = keep_ms > INT64_MAX - now ? INT64_MAX : now + keep_ms;
    uint64_t evicted = 0;
    int rc = 0;

    cache_entry_ref(e);
    wlock(m, sh);
    expire_due(sh, now, &b);
    long pos = slot_find(sh, k->h);
    if (pos >= 0) {
        uint32_t id = sh->slots[pos];
        struct node *nd = node_at(sh, id);
        batch_add(&b, nd->e);
        nd->e = e;
        nd->expire_ms = expire;
        heap_down(sh, nd->n.aux);
        heap_up(sh, nd->n.aux);
        cache__evict_update(&sh->pol, id, (uint32_t)e->mem_size);
    } else {
        rc = insert(sh, k->h, e, expire);
    }
    /* even after a failed insert: a table may have grown */
    evicted = cache__evict_run(&sh->pol, sh->fixed, drop_victim, &d);
    sh->evictions += evicted;
    wunlock(m, sh);
    batch_release(&b);
    if (rc) {
        cache_entry_unref(e);
        return cp_err_set(err, rc, "memory cache: no memory for a new entry");
    }
    if (evicted && m->ext_evictions)
        atomic_fetch_add(m->ext_evictions, evicted);
    return 0;
}

static int has_prefix(const char *path, const char *prefix, size_t n)
{
    return !strncmp(path ? path : "", prefix, n);
}

/* O(entries); entries are released under the lock past the first BATCH of a shard. */
static int mem_purge(struct cache_store *s, const char *prefix, uint64_t *purged,
                     struct cp_err *err)
{
    struct mem_store *m = (struct mem_store *)s;
    size_t plen = prefix ? strlen(prefix) : 0;
    uint64_t count = 0;
    (void)err;

    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        struct batch b = {.n = 0};
        wlock(m, sh);
        for (uint32_t id = cache__evict_next(&sh->pol, 0), nx; id; id = nx) {
            nx = cache__evict_next(&sh->pol, id);
            if (plen && !has_prefix(node_at(sh, id)->e->path, prefix, plen))
                continue;
            batch_add(&b, remove_node(sh, id));
            count++;
        }
        shrink_if_empty(sh);
        wunlock(m, sh);
        batch_release(&b);
    }
    *purged = count;
    return 0;
}

static void mem_usage(struct cache_store *s, struct cache_usage *u)
{
    struct mem_store *m = (struct mem_store *)s;
    memset(u, 0, sizeof *u);
    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        wlock(m, sh);
        u->entries += sh->pol.live;
        u->bytes += shard_bytes(sh);
        u->evictions += sh->evictions;
        wunlock(m, sh);
    }
}

static int mem_ping(struct cache_store *s, char *where, size_t wsize, struct cp_err *err)
{
    (void)s;
    (void)where;
    (void)wsize;
    (void)err;
    return 0;
}

static void mem_close(struct cache_store *s)
{
    struct mem_store *m = (struct mem_store *)s;
    if (!m)
        return;
    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        for (uint32_t id = cache__evict_next(&sh->pol, 0); id; id = cache__evict_next(&sh->pol, id))
            cache_entry_unref(node_at(sh, id)->e);
        cache__evict_dispose(&sh->pol);
        free(sh->slots);
        free(sh->heap);
    }
    for (unsigned i = 0; i < m->nshards * m->nstripes; i++)
        pthread_mutex_destroy(&m->stripes[i].mu);
    free(m->stripes);
    free(m->shards);
    free(m);
}

static int mem_open(const struct cfg_ds *cfg, const struct cache_env *env, struct cache_store **out,
                    struct cp_err *err)
{
    return cache__memory_open(cfg->cache.memory_max_bytes, cfg->cache.max_entry_bytes, env, out,
                              err);
}

const struct cache_backend cache__memory_backend = {
    .name = "memory",
    .caps = CACHE_CAP_NO_IO,
    .open = mem_open,
    .get = mem_get,
    .set = mem_set,
    .del = mem_del,
    .purge_prefix = mem_purge,
    .usage = mem_usage,
    .ping = mem_ping,
    .lock = NULL,
    .unlock = NULL,
    .close = mem_close,
};

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
        seed = (uint64_t)cp_mono_ns() ^ (uint64_t)(uintptr_t)&seed;
    return seed;
}

int cache__memory_open(int64_t max_bytes, int64_t max_entry_bytes, const struct cache_env *env,
                       struct cache_store **out, struct cp_err *err)
{
    *out = NULL;
    if (max_bytes <= 0)
        return cp_err_set(err, CP_ECONFIG, "jsonData.cache.memoryMaxBytes: must be positive");
    if (max_entry_bytes <= 0)
        return cp_err_set(err, CP_ECONFIG, "jsonData.cache.maxEntryBytes: must be positive");

    /* Shards only while each keeps room for a few of the largest entries. */
    uint64_t min_shard = (uint64_t)max_entry_bytes * 2;
    if (min_shard < MIN_SHARD_BYTES)
        min_shard = MIN_SHARD_BYTES;
    unsigned n = MAX_SHARDS;
    while (n > 1 && (uint64_t)max_bytes / n < min_shard)
        n /= 2;
    uint64_t cap = (uint64_t)max_bytes / n;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned ns = 1;
    while (ns < MAX_STRIPES && ns < (unsigned long)(cpus > 0 ? cpus : 1))
        ns *= 2;

    struct mem_store *m = calloc(1, sizeof *m);
    if (!m)
        return cp_err_set(err, CP_ENOMEM, "memory cache: out of memory");
    m->shards = aligned_alloc(64, n * sizeof *m->shards);
    m->stripes = aligned_alloc(64, (size_t)n * ns * sizeof *m->stripes);
    if (!m->shards || !m->stripes) {
        free(m->shards);
        free(m->stripes);
        free(m);
        return cp_err_set(err, CP_ENOMEM, "memory cache: out of memory");
    }
    m->base.be = &cache__memory_backend;
    m->ext_evictions = env ? env->evictions : NULL;
    m->max_entry = (uint64_t)max_entry_bytes;
    if (m->max_entry > cap / 2)
        m->max_entry = cap / 2; /* one entry never flushes a whole shard */
    if (m->max_entry > CACHE__EVICT_MAX_WEIGHT)
        m->max_entry = CACHE__EVICT_MAX_WEIGHT;
    m->nshards = n;
    m->nstripes = ns;
    m->seed = random_seed();
    m->now = wall_now;
    for (unsigned i = 0; i < n * ns; i++) {
        memset(&m->stripes[i], 0, sizeof m->stripes[i]);
        pthread_mutex_init(&m->stripes[i].mu, NULL);
    }
    for (unsigned i = 0; i < n; i++) {
        struct shard *sh = &m->shards[i];
        memset(sh, 0, sizeof *sh);
        sh->stripes = &m->stripes[i * ns];
        sh->seed = cache__mix64(m->seed + i + 1);
        cache__evict_init(&sh->pol, sizeof(struct node), cap, cache__mix64(sh->seed));
    }
    *out = &m->base;
    return 0;
}

/* ---- hooks for tests and the benchmark ------------------------------------------------------- */

void cache__memory_stats(struct cache_store *s, struct cache__memory_stats *st)
{
    struct mem_store *m = (struct mem_store *)s;
    memset(st, 0, sizeof *st);
    st->shards = m->nshards;
    for (unsigned i = 0; i < m->nshards; i++) {
        struct shard *sh = &m->shards[i];
        wlock(m, sh);
        st->entries += sh->pol.live;
        st->data_bytes += sh->pol.weight;
        st->bookkeeping_bytes += sh->pol.fixed + sh->fixed;
        st->capacity += sh->pol.cap;
        st->evictions += sh->evictions;
        st->expired += sh->expired;
        for (unsigned r = 0; r < CACHE__EVICT_NREGIONS; r++)
            st->region_bytes[r] += sh->pol.bytes[r];
        wunlock(m, sh);
    }
}

void cache__memory_set_clock(struct cache_store *s, int64_t (*now)(void *ctx), void *ctx)
{
    struct mem_store *m = (struct mem_store *)s;
    m->now = now ? now : wall_now;
    m->now_ctx = now ? ctx : NULL;
}
