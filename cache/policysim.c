/* policysim.c - the memory backend's admission and eviction policy (evict.c) replayed on a
 * stream of keys without storing anything, for what-if reports (cachingproxy-bench sim).
 *
 * It makes the calls memory.c makes, in the same order: a lookup of an expired entry drops
 * it; a miss stores the key after every expired entry has left (memory.c's expire_due), then
 * the policy evicts what it decides. Two things differ on purpose: the budget counts entries
 * (every node weighs 1 and the policy's own storage is not charged), and there is one shard
 * (the backend splits large budgets into up to 32 shards, each running this policy on its
 * share of the keys). Hits are passed to the policy at once; memory.c notes them and replays
 * them before its next change, which gives the policy the same sequence of events. */
#include "evict.h"

#include <stdlib.h>

#define MIN_SLOTS_BITS 6

/* A policy node with the key and expiry the index and heap need (n.aux: heap position). */
struct sim_node {
    struct cache__evict_node n;
    int64_t expire_ms; /* a miss from then on; INT64_MAX: never */
    uint64_t key;
};
_Static_assert(sizeof(struct sim_node) % 8 == 0, "evict.c wants records in multiples of 8");

struct cache_policy_sim {
    struct cache__evict pol;
    uint64_t capacity;
    uint64_t seed;
    uint32_t *slots; /* node ids, 0 = empty; linear probing, load <= 3/4 */
    unsigned slot_bits;
    uint32_t *heap; /* node ids by expire_ms */
    uint32_t heap_len, heap_cap;
};

static struct sim_node *node_at(const struct cache_policy_sim *s, uint32_t id)
{
    return cache__evict_at(&s->pol, id);
}

/* ---- index: key -> node id ------------------------------------------------------------------ */

static uint32_t home_of(const struct cache_policy_sim *s, uint64_t key)
{
    return (uint32_t)(cache__mix64(key ^ s->seed) >> (64 - s->slot_bits));
}

static long slot_find(const struct cache_policy_sim *s, uint64_t key)
{
    if (!s->slots)
        return -1;
    uint32_t mask = (1u << s->slot_bits) - 1;
    for (uint32_t i = home_of(s, key);; i = (i + 1) & mask) {
        uint32_t id = s->slots[i];
        if (!id)
            return -1;
        if (node_at(s, id)->key == key)
            return (long)i;
    }
}

static void slot_put(struct cache_policy_sim *s, uint32_t id)
{
    uint32_t mask = (1u << s->slot_bits) - 1;
    uint32_t i = home_of(s, node_at(s, id)->key);
    while (s->slots[i])
        i = (i + 1) & mask;
    s->slots[i] = id;
}

/* Empties slot i, shifting later members of its probe run back (no tombstones). */
static void slot_clear(struct cache_policy_sim *s, uint32_t i)
{
    uint32_t mask = (1u << s->slot_bits) - 1;
    for (uint32_t j = (i + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        uint32_t home = home_of(s, node_at(s, s->slots[j])->key);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = 0;
}

static int slots_reserve(struct cache_policy_sim *s)
{
    uint64_t n = s->slots ? 1ull << s->slot_bits : 0;
    if ((uint64_t)(s->pol.live + 1) * 4 <= n * 3)
        return 0;
    unsigned bits = s->slots ? s->slot_bits + 1 : MIN_SLOTS_BITS;
    if (bits > 31)
        return CP_ENOMEM;
    uint32_t *ns = calloc((size_t)1 << bits, sizeof *ns);
    if (!ns)
        return CP_ENOMEM;
    uint32_t *old = s->slots;
    s->slots = ns;
    s->slot_bits = bits;
    for (uint64_t i = 0; i < n; i++)
        if (old[i])
            slot_put(s, old[i]);
    free(old);
    return 0;
}

/* ---- expiry heap ------------------------------------------------------------------------------
 */

static void heap_place(struct cache_policy_sim *s, uint32_t pos, uint32_t id)
{
    s->heap[pos] = id;
    node_at(s, id)->n.aux = pos;
}

static void heap_up(struct cache_policy_sim *s, uint32_t pos)
{
    uint32_t id = s->heap[pos];
    int64_t ex = node_at(s, id)->expire_ms;
    while (pos) {
        uint32_t parent = (pos - 1) / 2;
        if (node_at(s, s->heap[parent])->expire_ms <= ex)
            break;
        heap_place(s, pos, s->heap[parent]);
        pos = parent;
    }
    heap_place(s, pos, id);
}

static void heap_down(struct cache_policy_sim *s, uint32_t pos)
{
    uint32_t id = s->heap[pos];
    int64_t ex = node_at(s, id)->expire_ms;
    for (;;) {
        uint32_t c = 2 * pos + 1;
        if (c >= s->heap_len)
            break;
        if (c + 1 < s->heap_len &&
            node_at(s, s->heap[c + 1])->expire_ms < node_at(s, s->heap[c])->expire_ms)
            c++;
        if (node_at(s, s->heap[c])->expire_ms >= ex)
            break;
        heap_place(s, pos, s->heap[c]);
        pos = c;
    }
    heap_place(s, pos, id);
}

static int heap_reserve(struct cache_policy_sim *s)
{
    if (s->heap_len < s->heap_cap)
        return 0;
    uint32_t ncap = s->heap_cap ? s->heap_cap * 2 : 1u << MIN_SLOTS_BITS;
    if (ncap < s->heap_cap)
        return CP_ENOMEM;
    uint32_t *nh = realloc(s->heap, (size_t)ncap * sizeof *nh);
    if (!nh)
        return CP_ENOMEM;
    s->heap = nh;
    s->heap_cap = ncap;
    return 0;
}

static void heap_remove(struct cache_policy_sim *s, uint32_t pos)
{
    uint32_t last = s->heap[--s->heap_len];
    if (pos == s->heap_len)
        return;
    heap_place(s, pos, last);
    heap_down(s, pos);
    heap_up(s, node_at(s, last)->n.aux);
}

/* ---- the calls memory.c makes ------------------------------------------------------------------
 */

/* Drops the index and heap references to id; the policy still holds it. */
static void forget(struct cache_policy_sim *s, uint32_t id)
{
    struct sim_node *nd = node_at(s, id);
    long pos = slot_find(s, nd->key);
    if (pos >= 0)
        slot_clear(s, (uint32_t)pos);
    heap_remove(s, nd->n.aux);
}

static void drop_victim(void *ctx, uint32_t id)
{
    forget(ctx, id);
}

static void remove_node(struct cache_policy_sim *s, uint32_t id)
{
    forget(s, id);
    cache__evict_remove(&s->pol, id);
}

static void expire_due(struct cache_policy_sim *s, int64_t now)
{
    while (s->heap_len && node_at(s, s->heap[0])->expire_ms <= now)
        remove_node(s, s->heap[0]);
}

/* The 32 key bytes the policy reads (its sketch hashes bytes 16..23 with its own seed). */
static void key_bytes(uint64_t key, unsigned char out[32])
{
    for (unsigned i = 0; i < 4; i++) {
        uint64_t v = cache__mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
        memcpy(out + 8 * i, &v, 8);
    }
}

int cache_policy_sim_new(uint64_t capacity, uint64_t seed, struct cache_policy_sim **out)
{
    *out = NULL;
    if (capacity == 0 || capacity > UINT32_MAX / 2)
        return CP_EINVAL;
    struct cache_policy_sim *s = calloc(1, sizeof *s);
    if (!s)
        return CP_ENOMEM;
    s->capacity = capacity;
    s->seed = cache__mix64(seed ^ 0x5851f42d4c957f2dull);
    cache__evict_init(&s->pol, sizeof(struct sim_node), capacity, cache__mix64(seed));
    *out = s;
    return 0;
}

int cache_policy_sim_access(struct cache_policy_sim *s, uint64_t key, int64_t now_ms,
                            int64_t ttl_ms, int *hit)
{
    *hit = 0;
    long pos = slot_find(s, key);
    if (pos >= 0) {
        uint32_t id = s->slots[pos];
        if (node_at(s, id)->expire_ms > now_ms) {
            cache__evict_access(&s->pol, id);
            *hit = 1;
            return 0;
        }
        remove_node(s, id); /* memory.c's lookup drops an expired entry */
    }
    expire_due(s, now_ms);
    uint32_t id;
    if (slots_reserve(s) || heap_reserve(s) || cache__evict_alloc(&s->pol, &id))
        return CP_ENOMEM;
    struct sim_node *nd = node_at(s, id);
    key_bytes(key, nd->n.key);
    nd->key = key;
    nd->expire_ms = ttl_ms <= 0 || ttl_ms > INT64_MAX - now_ms ? INT64_MAX : now_ms + ttl_ms;
    slot_put(s, id);
    s->heap[s->heap_len] = id;
    heap_up(s, s->heap_len++);
    cache__evict_insert(&s->pol, id, 1);
    /* entries are counted, not bytes: the policy's own storage (pol.fixed) is not charged */
    s->pol.cap = s->capacity + s->pol.fixed;
    cache__evict_run(&s->pol, 0, drop_victim, s);
    return 0;
}

uint64_t cache_policy_sim_entries(const struct cache_policy_sim *s)
{
    return s->pol.live;
}

void cache_policy_sim_free(struct cache_policy_sim *s)
{
    if (!s)
        return;
    cache__evict_dispose(&s->pol);
    free(s->slots);
    free(s->heap);
    free(s);
}
