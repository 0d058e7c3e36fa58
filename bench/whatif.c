/*
 * whatif.c - `cachingproxy-bench sim`: hit ratio of a trace for several cache sizes (in
 * entries) under three policies, with no upstream and no plugin.
 *
 *   ours  the memory backend's own admission and eviction code, through the cache module's
 *         cache_policy_sim (one shard, entries instead of bytes);
 *   lru   exact LRU: every miss is stored; expired entries leave first (as in the memory
 *         backend), then the least recently used;
 *   opt   Belady with bypass: on a miss with a full cache, of the cached entries and the new
 *         one, the one whose next use is furthest away is dropped, never-again first; under a
 *         TTL a next use after expiry counts as never. Next uses are precomputed and the
 *         cached entries kept in a max-heap with lazy deletion: O(n log n).
 *
 * An entry stored at t is fresh while now < t + ttl (ttl 0: for ever); a hit does not renew
 * it. Without a TTL opt is the optimum (no policy gets more hits); with one it is the rule
 * above, which the exhaustive search of the tests shows can be beaten by a policy that
 * declines to store an entry so as to store it fresher a little later.
 */
#include "bench_int.h"

#include <stdlib.h>
#include <string.h>

#include "cache.h"

#define NONE UINT32_MAX
#define NEVER UINT64_MAX
#define OURS_SEED 0x5eedull

/* ---- keys ----------------------------------------------------------------------------------- */

/* Interned strings: one (method, path[, user]) pointer tuple is one key. */
struct tuple_slot {
    const char *m, *p, *u;
    uint32_t id;
};

static uint64_t ptr_hash(const char *m, const char *p, const char *u)
{
    uint64_t h = (uint64_t)(uintptr_t)m * 0x9e3779b97f4a7c15ull;
    h ^= (uint64_t)(uintptr_t)p + 0x632be59bd9b4e019ull + (h << 6) + (h >> 2);
    h ^= (uint64_t)(uintptr_t)u + 0x8cb92ba72f3d8dd7ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    return h * 0x94d049bb133111ebull;
}

static int alloc_arrays(struct bench_whatif *w, size_t n)
{
    w->n = n;
    w->key = malloc((n ? n : 1) * sizeof *w->key);
    w->ts_ms = malloc((n ? n : 1) * sizeof *w->ts_ms);
    w->next = malloc((n ? n : 1) * sizeof *w->next);
    return w->key && w->ts_ms && w->next ? 0 : CP_ENOMEM;
}

/* next[i]: the following request of the same key, n when there is none. */
static int link_next(struct bench_whatif *w)
{
    size_t *last = malloc((w->nkeys ? w->nkeys : 1) * sizeof *last);
    if (!last)
        return CP_ENOMEM;
    for (uint32_t k = 0; k < w->nkeys; k++)
        last[k] = w->n;
    for (size_t i = w->n; i-- > 0;) {
        uint32_t k = w->key[i];
        if (k == NONE) {
            w->next[i] = w->n;
            continue;
        }
        w->next[i] = last[k];
        last[k] = i;
    }
    free(last);
    return 0;
}

int bench_whatif_prepare(const struct bench_trace *t, int scope_user, struct bench_whatif *w,
                         struct cp_err *err)
{
    memset(w, 0, sizeof *w);
    size_t nslots = 1024;
    while (nslots < t->n * 2)
        nslots *= 2;
    struct tuple_slot *slots = calloc(nslots, sizeof *slots);
    if (!slots || alloc_arrays(w, t->n)) {
        free(slots);
        bench_whatif_dispose(w);
        return cp_err_set(err, CP_ENOMEM, "out of memory for %zu requests", t->n);
    }
    for (size_t i = 0; i < t->n; i++) {
        const struct bench_trace_rec *r = &t->recs[i];
        w->ts_ms[i] = r->ts_ms;
        /* a per-user key without a user is not cached (the plugin answers BYPASS) */
        if (scope_user && !r->user[0]) {
            w->key[i] = NONE;
            continue;
        }
        const char *u = scope_user ? r->user : NULL;
        size_t j = ptr_hash(r->method, r->path, u) & (nslots - 1);
        while (slots[j].p && !(slots[j].m == r->method && slots[j].p == r->path && slots[j].u == u))
            j = (j + 1) & (nslots - 1);
        if (!slots[j].p)
            slots[j] = (struct tuple_slot){r->method, r->path, u, w->nkeys++};
        w->key[i] = slots[j].id;
    }
    free(slots);
    if (link_next(w)) {
        bench_whatif_dispose(w);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    return 0;
}

int bench_whatif_init(struct bench_whatif *w, const uint32_t *keys, const int64_t *ts_ms, size_t n)
{
    memset(w, 0, sizeof *w);
    if (alloc_arrays(w, n)) {
        bench_whatif_dispose(w);
        return CP_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        w->key[i] = keys[i];
        w->ts_ms[i] = ts_ms[i];
        if (keys[i] != NONE && keys[i] + 1 > w->nkeys)
            w->nkeys = keys[i] + 1;
    }
    if (link_next(w)) {
        bench_whatif_dispose(w);
        return CP_ENOMEM;
    }
    return 0;
}

void bench_whatif_dispose(struct bench_whatif *w)
{
    free(w->key);
    free(w->ts_ms);
    free(w->next);
    memset(w, 0, sizeof *w);
}

static int fresh(int64_t stored, int64_t now, int64_t ttl)
{
    return ttl <= 0 || now - stored < ttl;
}

/* ---- lru ------------------------------------------------------------------------------------ */

struct fifo_rec {
    uint32_t key;
    int64_t stored;
};

int bench_whatif_lru(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits)
{
    *hits = 0;
    uint32_t nk = w->nkeys ? w->nkeys : 1;
    uint32_t *prev = malloc(nk * sizeof *prev), *nxt = malloc(nk * sizeof *nxt);
    int64_t *stored = malloc(nk * sizeof *stored);
    unsigned char *in = calloc(nk, 1);
    struct fifo_rec *fifo = ttl_ms > 0 ? malloc((w->n ? w->n : 1) * sizeof *fifo) : NULL;
    if (!prev || !nxt || !stored || !in || (ttl_ms > 0 && !fifo)) {
        free(prev);
        free(nxt);
        free(stored);
        free(in);
        free(fifo);
        return CP_ENOMEM;
    }
    uint32_t head = NONE, tail = NONE; /* head = most recently used */
    uint64_t count = 0;
    size_t fhead = 0, ftail = 0;
#define UNLINK(k)                                                                                  \
    do {                                                                                           \
        if (prev[k] != NONE)                                                                       \
            nxt[prev[k]] = nxt[k];                                                                 \
        else                                                                                       \
            head = nxt[k];                                                                         \
        if (nxt[k] != NONE)                                                                        \
            prev[nxt[k]] = prev[k];                                                                \
        else                                                                                       \
            tail = prev[k];                                                                        \
    } while (0)
    for (size_t i = 0; i < w->n; i++) {
        uint32_t k = w->key[i];
        int64_t now = w->ts_ms[i];
        if (k == NONE)
            continue;
        if (in[k] && fresh(stored[k], now, ttl_ms)) {
            (*hits)++;
            UNLINK(k);
        } else {
            if (in[k]) { /* expired: stored again below */
                UNLINK(k);
                in[k] = 0;
                count--;
            }
            /* expired entries leave first, oldest first (stores come in time order) */
            while (fhead < ftail && !fresh(fifo[fhead].stored, now, ttl_ms)) {
                uint32_t x = fifo[fhead++].key;
                if (in[x] && stored[x] == fifo[fhead - 1].stored) {
                    UNLINK(x);
                    in[x] = 0;
                    count--;
                }
            }
            if (count == cap) {
                uint32_t v = tail;
                UNLINK(v);
                in[v] = 0;
                count--;
            }
            in[k] = 1;
            stored[k] = now;
            count++;
            if (fifo)
                fifo[ftail++] = (struct fifo_rec){k, now};
        }
        prev[k] = NONE;
        nxt[k] = head;
        if (head != NONE)
            prev[head] = k;
        head = k;
        if (tail == NONE)
            tail = k;
    }
#undef UNLINK
    free(prev);
    free(nxt);
    free(stored);
    free(in);
    free(fifo);
    return 0;
}

/* ---- opt ------------------------------------------------------------------------------------ */

struct heap_rec {
    uint64_t prio; /* next use (request index), NEVER */
    uint32_t key, ver;
};

struct maxheap {
    struct heap_rec *v;
    size_t n, cap;
};

static int heap_push(struct maxheap *h, struct heap_rec r)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 1024;
        struct heap_rec *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv)
            return CP_ENOMEM;
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i && h->v[(i - 1) / 2].prio < r.prio) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = r;
    return 0;
}

static void heap_pop(struct maxheap *h)
{
    struct heap_rec last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1].prio > h->v[c].prio)
            c++;
        if (h->v[c].prio <= last.prio)
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
}

/* The next use of an entry stored at `stored`, seen from request i: NEVER when there is none
 * or it comes after the entry expired. */
static uint64_t next_use(const struct bench_whatif *w, size_t i, int64_t stored, int64_t ttl)
{
    size_t j = w->next[i];
    if (j >= w->n || !fresh(stored, w->ts_ms[j], ttl))
        return NEVER;
    return j;
}

int bench_whatif_opt(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits)
{
    *hits = 0;
    uint32_t nk = w->nkeys ? w->nkeys : 1;
    int64_t *stored = malloc(nk * sizeof *stored);
    uint32_t *ver = calloc(nk, sizeof *ver);
    unsigned char *in = calloc(nk, 1);
    struct maxheap h = {0};
    int rc = stored && ver && in ? 0 : CP_ENOMEM;
    uint64_t count = 0;
    for (size_t i = 0; i < w->n && !rc; i++) {
        uint32_t k = w->key[i];
        int64_t now = w->ts_ms[i];
        if (k == NONE)
            continue;
        if (in[k] && fresh(stored[k], now, ttl_ms)) {
            (*hits)++; /* the entry keeps its store time */
        } else if (in[k]) {
            stored[k] = now; /* expired: its slot holds the new copy */
        } else {
            uint64_t mine = next_use(w, i, now, ttl_ms);
            if (count == cap) {
                /* drop stale heap records (entries gone, or re-queued since) */
                while (h.n && (!in[h.v[0].key] || h.v[0].ver != ver[h.v[0].key]))
                    heap_pop(&h);
                if (!h.n || h.v[0].prio <= mine)
                    continue; /* the new one is used last (or never): bypass */
                in[h.v[0].key] = 0;
                heap_pop(&h);
                count--;
            }
            in[k] = 1;
            stored[k] = now;
            count++;
        }
        ver[k]++;
        rc = heap_push(&h, (struct heap_rec){next_use(w, i, stored[k], ttl_ms), k, ver[k]});
    }
    free(stored);
    free(ver);
    free(in);
    free(h.v);
    return rc;
}

/* ---- ours ----------------------------------------------------------------------------------- */

int bench_whatif_ours(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits)
{
    *hits = 0;
    struct cache_policy_sim *s = NULL;
    int rc = cache_policy_sim_new(cap, OURS_SEED, &s);
    for (size_t i = 0; i < w->n && !rc; i++) {
        if (w->key[i] == NONE)
            continue;
        int hit = 0;
        rc = cache_policy_sim_access(s, w->key[i], w->ts_ms[i], ttl_ms, &hit);
        *hits += (uint64_t)hit;
    }
    cache_policy_sim_free(s);
    return rc;
}

/* ---- the document --------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(const struct bench_whatif *w, uint64_t cap, int64_t ttl_ms, uint64_t *hits);
} policies[] = {{"ours", bench_whatif_ours}, {"lru", bench_whatif_lru}, {"opt", bench_whatif_opt}};

json_t *bench_ttl_json(int64_t ttl_ms)
{
    return ttl_ms % 1000 ? json_real((double)ttl_ms / 1000.0) : json_integer(ttl_ms / 1000);
}

int bench_whatif_run(const struct bench_whatif *w, const uint64_t *sizes, size_t nsizes,
                     int64_t ttl_ms, json_t **out, struct cp_err *err)
{
    *out = NULL;
    json_t *results = json_array();
    json_t *doc = json_object();
    if (!results || !doc) {
        json_decref(results);
        json_decref(doc);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    json_object_set_new(doc, "requests", json_integer((json_int_t)w->n));
    json_object_set_new(doc, "results", results);
    for (size_t si = 0; si < nsizes; si++) {
        for (size_t pi = 0; pi < sizeof policies / sizeof policies[0]; pi++) {
            if (atomic_load(&bench_interrupted)) {
                json_decref(doc);
                return cp_err_set(err, CP_ECANCELED, "interrupted");
            }
            uint64_t hits = 0;
            int rc = policies[pi].run(w, sizes[si], ttl_ms, &hits);
            if (rc) {
                json_decref(doc);
                return cp_err_set(err, rc, "%s, size %llu: %s", policies[pi].name,
                                  (unsigned long long)sizes[si], cp_strerror(rc));
            }
            json_t *r = json_object();
            json_object_set_new(r, "policy", json_string(policies[pi].name));
            json_object_set_new(r, "size", json_integer((json_int_t)sizes[si]));
            json_object_set_new(r, "ttl", bench_ttl_json(ttl_ms));
            json_object_set_new(r, "hits", json_integer((json_int_t)hits));
            json_object_set_new(r, "misses", json_integer((json_int_t)(w->n - hits)));
            json_object_set_new(r, "hitRatio", json_real(w->n ? (double)hits / (double)w->n : 0.0));
            json_array_append_new(results, r);
        }
    }
    *out = doc;
    return 0;
}
