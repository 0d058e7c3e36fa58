/* evict.c - W-TinyLFU admission and eviction for the memory backend (see evict.h). A new
 * entry enters a small LRU window, so bursts of recent keys get a chance; entries leaving the
 * window must beat the LRU end of probation on sketch frequency to stay, which keeps one-hit
 * scans from flushing a hot set; a probation hit promotes to protected, whose overflow is
 * demoted back to probation. Weights are bytes, so one large candidate may face several
 * victims in turn. */
#include "evict.h"

#include <assert.h>

#include <stdlib.h>
#include <string.h>

#define WINDOW_PERCENT 1     /* window share of the budget (Caffeine's default) */
#define PROTECTED_PERCENT 80 /* protected share of the main space */
#define SAMPLE_FACTOR 10     /* increments per counter word before aging */
#define HASHDOS_FREQ 6       /* from here a losing candidate is admitted with p = 1/128 */

/* ---- sketch ------------------------------------------------------------------------------- */

static uint64_t sketch_hash(const struct cache__evict_sketch *sk, const unsigned char *key)
{
    return cache__mix64(cache__load64(key + 16) ^ sk->seed);
}

int cache__evict_sketch_resize(struct cache__evict_sketch *sk, uint32_t entries)
{
    uint32_t blocks = 1;
    while (blocks < (1u << 26) && (uint64_t)blocks * 8 < entries)
        blocks <<= 1;
    uint64_t *t = calloc((size_t)blocks * 8, sizeof *t);
    if (!t)
        return CP_ENOMEM;
    free(sk->table);
    sk->table = t;
    sk->blocks = blocks;
    sk->additions = 0;
    sk->sample = blocks * 8 * SAMPLE_FACTOR;
    return 0;
}

void cache__evict_sketch_dispose(struct cache__evict_sketch *sk)
{
    free(sk->table);
    sk->table = NULL;
    sk->blocks = 0;
    sk->additions = 0;
}

/* Word (within the block) and counter index of row i, from the counter half of the hash. */
static void sketch_slot(uint64_t h, unsigned i, uint32_t *word, unsigned *shift)
{
    uint32_t x = (uint32_t)(h >> 32) >> (i << 3);
    *word = (x & 1) + (i << 1);
    *shift = ((x >> 1) & 15) << 2;
}

void cache__evict_sketch_increment(struct cache__evict_sketch *sk, const unsigned char key[32])
{
    if (!sk->blocks)
        return;
    uint64_t h = sketch_hash(sk, key);
    uint64_t *block = sk->table + (size_t)((uint32_t)h & (sk->blocks - 1)) * 8;
    int added = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint32_t w;
        unsigned sh;
        sketch_slot(h, i, &w, &sh);
        if (((block[w] >> sh) & 15) != 15) {
            block[w] += 1ull << sh;
            added = 1;
        }
    }
    if (added && ++sk->additions >= sk->sample)
        cache__evict_sketch_age(sk);
}

unsigned cache__evict_sketch_frequency(const struct cache__evict_sketch *sk,
                                       const unsigned char key[32])
{
    if (!sk->blocks)
        return 0;
    uint64_t h = sketch_hash(sk, key);
    const uint64_t *block = sk->table + (size_t)((uint32_t)h & (sk->blocks - 1)) * 8;
    unsigned f = 15;
    for (unsigned i = 0; i < 4; i++) {
        uint32_t w;
        unsigned sh;
        sketch_slot(h, i, &w, &sh);
        unsigned c = (unsigned)(block[w] >> sh) & 15;
        if (c < f)
            f = c;
    }
    return f;
}

void cache__evict_sketch_age(struct cache__evict_sketch *sk)
{
    uint64_t odd = 0;
    for (size_t i = 0; i < (size_t)sk->blocks * 8; i++) {
        odd += (uint64_t)__builtin_popcountll(sk->table[i] & 0x1111111111111111ull);
        sk->table[i] = (sk->table[i] >> 1) & 0x7777777777777777ull;
    }
    /* each key touched 4 counters: the halving drops about odd/4 additions on top */
    uint64_t left = sk->additions > odd / 4 ? (sk->additions - odd / 4) / 2 : 0;
    sk->additions = (uint32_t)left;
}

/* ---- lists -------------------------------------------------------------------------------- */

static struct cache__evict_node *link_at(struct cache__evict *p, uint32_t id)
{
    /* ids 1..FIRST_ID-1 name the list heads (sentinels); 0 is never linked */
    assert(id != 0);
    return id < CACHE__EVICT_FIRST_ID ? &p->sent[id > 0 ? id - 1 : 0]
                                      : (struct cache__evict_node *)cache__evict_at(p, id);
}

static void unlink_node(struct cache__evict *p, struct cache__evict_node *n)
{
    link_at(p, n->prev)->next = n->next;
    link_at(p, n->next)->prev = n->prev;
}

static void push_mru(struct cache__evict *p, uint32_t id, struct cache__evict_node *n, unsigned r)
{
    struct cache__evict_node *s = &p->sent[r];
    n->prev = s->prev;
    n->next = r + 1;
    link_at(p, s->prev)->next = id;
    s->prev = id;
    n->region = r & 3;
}

static uint32_t first_of(const struct cache__evict *p, unsigned r)
{
    uint32_t id = p->sent[r].next;
    return id < CACHE__EVICT_FIRST_ID ? 0 : id;
}

/* The next node towards the MRU end of the same region, or 0. */
static uint32_t after(struct cache__evict *p, uint32_t id)
{
    uint32_t nx = link_at(p, id)->next;
    return nx < CACHE__EVICT_FIRST_ID ? 0 : nx;
}

static void move_to(struct cache__evict *p, uint32_t id, struct cache__evict_node *n, unsigned r)
{
    unlink_node(p, n);
    p->bytes[n->region] -= n->weight;
    push_mru(p, id, n, r);
    p->bytes[r] += n->weight;
}

/* ---- policy ------------------------------------------------------------------------------- */

void cache__evict_init(struct cache__evict *p, size_t node_size, uint64_t cap, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    p->node_size = node_size;
    p->top = CACHE__EVICT_FIRST_ID;
    for (unsigned r = 0; r < CACHE__EVICT_NREGIONS; r++)
        p->sent[r].prev = p->sent[r].next = r + 1;
    p->cap = cap;
    p->window_max = cap * WINDOW_PERCENT / 100;
    p->protected_max = (cap - p->window_max) * PROTECTED_PERCENT / 100;
    p->rng = seed | 1;
    p->sketch.seed = cache__mix64(seed + 0x9e3779b97f4a7c15ull);
}

static void free_storage(struct cache__evict *p)
{
    for (uint32_t i = 0; i < p->nchunks; i++)
        free(p->chunks[i]);
    free(p->chunks);
    p->chunks = NULL;
    p->nchunks = p->chunks_cap = 0;
    p->free_head = 0;
    p->top = CACHE__EVICT_FIRST_ID;
}

void cache__evict_dispose(struct cache__evict *p)
{
    free_storage(p);
    cache__evict_sketch_dispose(&p->sketch);
    p->fixed = 0;
}

void cache__evict_compact(struct cache__evict *p)
{
    if (p->live)
        return;
    cache__evict_dispose(p);
    memset(p->bytes, 0, sizeof p->bytes);
    p->weight = 0;
}

static int add_chunk(struct cache__evict *p)
{
    size_t bytes = ((size_t)CACHE__EVICT_CHUNK * p->node_size + 63) & ~(size_t)63;
    if (p->nchunks == p->chunks_cap) {
        uint32_t ncap = p->chunks_cap ? p->chunks_cap * 2 : 16;
        char **nc = realloc(p->chunks, ncap * sizeof *nc);
        if (!nc)
            return CP_ENOMEM;
        p->chunks = nc;
        p->fixed += (uint64_t)(ncap - p->chunks_cap) * sizeof *nc;
        p->chunks_cap = ncap;
    }
    char *c = aligned_alloc(64, bytes);
    if (!c)
        return CP_ENOMEM;
    p->chunks[p->nchunks++] = c;
    p->fixed += bytes;
    return 0;
}

int cache__evict_alloc(struct cache__evict *p, uint32_t *id)
{
    uint32_t x;
    if (p->free_head) {
        x = p->free_head;
        p->free_head = ((struct cache__evict_node *)cache__evict_at(p, x))->next;
    } else {
        if (p->top == UINT32_MAX)
            return CP_ENOMEM;
        if (p->top - CACHE__EVICT_FIRST_ID == p->nchunks * CACHE__EVICT_CHUNK && add_chunk(p))
            return CP_ENOMEM;
        x = p->top++;
    }
    memset(cache__evict_at(p, x), 0, p->node_size);
    p->live++;
    *id = x;
    return 0;
}

static void free_id(struct cache__evict *p, uint32_t id, struct cache__evict_node *n)
{
    n->next = p->free_head;
    p->free_head = id;
    p->live--;
}

/* Lifts the key's four counters to at least f. */
static void sketch_raise(struct cache__evict_sketch *sk, const unsigned char *key, unsigned f)
{
    uint64_t h = sketch_hash(sk, key);
    uint64_t *block = sk->table + (size_t)((uint32_t)h & (sk->blocks - 1)) * 8;
    for (unsigned i = 0; i < 4; i++) {
        uint32_t w;
        unsigned sh;
        sketch_slot(h, i, &w, &sh);
        if (((block[w] >> sh) & 15) < f)
            block[w] = (block[w] & ~(15ull << sh)) | ((uint64_t)f << sh);
    }
}

/* Keeps about one counter word per live node. Caffeine sizes the sketch by the maximum entry
 * count; with byte weights the count is only known as it grows, so the sketch grows with it
 * and carries the estimates of live keys over (those of departed keys are lost). */
static void sketch_fit(struct cache__evict *p)
{
    struct cache__evict_sketch *sk = &p->sketch;
    if ((uint64_t)sk->blocks * 8 >= p->live)
        return;
    struct cache__evict_sketch grown = {.seed = sk->seed};
    if (cache__evict_sketch_resize(&grown, p->live))
        return; /* keep counting in the smaller table */
    if (sk->blocks)
        for (uint32_t id = cache__evict_next(p, 0); id; id = cache__evict_next(p, id)) {
            const struct cache__evict_node *n = cache__evict_at(p, id);
            sketch_raise(&grown, n->key, cache__evict_sketch_frequency(sk, n->key));
        }
    p->fixed += ((uint64_t)grown.blocks - sk->blocks) * 64;
    cache__evict_sketch_dispose(sk);
    *sk = grown;
}

void cache__evict_insert(struct cache__evict *p, uint32_t id, uint32_t weight)
{
    struct cache__evict_node *n = cache__evict_at(p, id);
    n->weight = weight & CACHE__EVICT_MAX_WEIGHT;
    sketch_fit(p);
    cache__evict_sketch_increment(&p->sketch, n->key);
    push_mru(p, id, n, CACHE__EVICT_WINDOW);
    p->bytes[CACHE__EVICT_WINDOW] += n->weight;
    p->weight += n->weight;
}

/* Protected overflow goes back to the MRU end of probation. */
static void demote(struct cache__evict *p)
{
    while (p->bytes[CACHE__EVICT_PROTECTED] > p->protected_max) {
        uint32_t id = first_of(p, CACHE__EVICT_PROTECTED);
        if (!id)
            break;
        move_to(p, id, cache__evict_at(p, id), CACHE__EVICT_PROBATION);
    }
}

void cache__evict_access(struct cache__evict *p, uint32_t id)
{
    struct cache__evict_node *n = cache__evict_at(p, id);
    cache__evict_sketch_increment(&p->sketch, n->key);
    if (n->region == CACHE__EVICT_PROBATION) {
        move_to(p, id, n, CACHE__EVICT_PROTECTED);
        demote(p);
    } else if (p->sent[n->region].prev != id) {
        unlink_node(p, n);
        push_mru(p, id, n, n->region);
    }
}

void cache__evict_update(struct cache__evict *p, uint32_t id, uint32_t weight)
{
    struct cache__evict_node *n = cache__evict_at(p, id);
    weight &= CACHE__EVICT_MAX_WEIGHT;
    p->bytes[n->region] = p->bytes[n->region] - n->weight + weight;
    p->weight = p->weight - n->weight + weight;
    n->weight = weight;
    cache__evict_access(p, id);
}

void cache__evict_remove(struct cache__evict *p, uint32_t id)
{
    struct cache__evict_node *n = cache__evict_at(p, id);
    unlink_node(p, n);
    p->bytes[n->region] -= n->weight;
    p->weight -= n->weight;
    free_id(p, id, n);
}

static uint64_t next_rand(struct cache__evict *p)
{
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return p->rng;
}

/* Whether the candidate should replace the victim. A candidate that is popular but not more
 * than the victim is let in now and then, so an attacker who learns which keys collide in
 * the sketch cannot keep a victim alive for ever. */
static int admit(struct cache__evict *p, uint32_t cand, uint32_t victim)
{
    const struct cache__evict_node *c = cache__evict_at(p, cand);
    const struct cache__evict_node *v = cache__evict_at(p, victim);
    unsigned cf = cache__evict_sketch_frequency(&p->sketch, c->key);
    unsigned vf = cache__evict_sketch_frequency(&p->sketch, v->key);
    if (cf > vf)
        return 1;
    if (cf >= HASHDOS_FREQ)
        return (next_rand(p) & 127) == 0;
    return 0;
}

static void evict_one(struct cache__evict *p, uint32_t id, cache__evict_drop_fn *drop, void *ctx)
{
    struct cache__evict_node *n = cache__evict_at(p, id);
    unlink_node(p, n);
    p->bytes[n->region] -= n->weight;
    p->weight -= n->weight;
    drop(ctx, id);
    free_id(p, id, n);
}

/* Moves window overflow to the MRU end of probation; returns the first node moved (the
 * oldest candidate), or 0. */
static uint32_t spill_window(struct cache__evict *p)
{
    uint32_t first = 0;
    while (p->bytes[CACHE__EVICT_WINDOW] > p->window_max) {
        uint32_t id = first_of(p, CACHE__EVICT_WINDOW);
        if (!id)
            break;
        move_to(p, id, cache__evict_at(p, id), CACHE__EVICT_PROBATION);
        if (!first)
            first = id;
    }
    return first;
}

static int over(const struct cache__evict *p, uint64_t extra)
{
    return p->weight + p->fixed + extra > p->cap;
}

uint64_t cache__evict_run(struct cache__evict *p, uint64_t extra, cache__evict_drop_fn *drop,
                          void *ctx)
{
    uint32_t cand = spill_window(p);
    unsigned cq = CACHE__EVICT_PROBATION, vq = CACHE__EVICT_PROBATION;
    uint32_t victim = first_of(p, CACHE__EVICT_PROBATION);
    uint64_t n = 0;

    while (over(p, extra)) {
        /* candidates: the nodes just spilled, then the window itself */
        if (!cand && cq == CACHE__EVICT_PROBATION) {
            cand = first_of(p, CACHE__EVICT_WINDOW);
            cq = CACHE__EVICT_WINDOW;
        }
        /* victims: probation from its LRU end, then protected, then the window */
        if (!cand && !victim) {
            if (vq == CACHE__EVICT_PROBATION) {
                victim = first_of(p, CACHE__EVICT_PROTECTED);
                vq = CACHE__EVICT_PROTECTED;
                continue;
            }
            if (vq == CACHE__EVICT_PROTECTED) {
                victim = first_of(p, CACHE__EVICT_WINDOW);
                vq = CACHE__EVICT_WINDOW;
                continue;
            }
            break;
        }
        uint32_t gone;
        if (!victim) {
            gone = cand;
            cand = after(p, cand);
        } else if (!cand) {
            gone = victim;
            victim = after(p, victim);
        } else if (cand == victim) {
            gone = cand;
            victim = after(p, victim);
            cand = 0;
        } else if (admit(p, cand, victim)) {
            gone = victim;
            victim = after(p, victim);
            cand = after(p, cand);
        } else {
            gone = cand;
            cand = after(p, cand);
        }
        /* a walk that stands on the node now leaving steps past it */
        uint32_t past = after(p, gone);
        if (victim == gone)
            victim = past;
        if (cand == gone)
            cand = past;
        evict_one(p, gone, drop, ctx);
        n++;
    }
    return n;
}

uint32_t cache__evict_next(const struct cache__evict *p, uint32_t id)
{
    unsigned r = 0;
    if (id) {
        const struct cache__evict_node *n = cache__evict_at(p, id);
        if (n->next >= CACHE__EVICT_FIRST_ID)
            return n->next;
        r = n->region + 1u;
    }
    for (; r < CACHE__EVICT_NREGIONS; r++)
        if (p->sent[r].next >= CACHE__EVICT_FIRST_ID)
            return p->sent[r].next;
    return 0;
}
