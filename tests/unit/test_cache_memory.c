/*
 * test_cache_memory.c - cache/memory.c (the memory backend) and cache/evict.c (W-TinyLFU).
 *
 * Expiry tests inject the clock through cache__memory_set_clock; one test also runs on the
 * wall clock, waiting with a deadline. Keys are random 32-byte strings, as SHA-256 keys are.
 */
#include "evict.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void key_of(uint64_t id, struct cache_key *k)
{
    uint64_t x = id * 7919 + 1;
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix(&x);
        memcpy(k->h + 8 * i, &v, 8);
    }
    for (int i = 0; i < 32; i++)
        snprintf(k->hex + 2 * i, 3, "%02x", k->h[i]);
}

/* An entry whose body starts with id (8 bytes) and is body_len long (>= 8). */
static struct cache_entry *entry_of(uint64_t id, const char *path, size_t body_len)
{
    static const unsigned char zeros[65536];
    unsigned char *body = malloc(body_len);
    assert_non_null(body);
    assert_true(body_len >= 8 && body_len <= sizeof zeros);
    memcpy(body, zeros, body_len);
    memcpy(body, &id, 8);
    struct cache_entry_spec sp = {.status = 200,
                                  .stored_ms = 0,
                                  .ttl_ms = 60000,
                                  .path = path,
                                  .body = body,
                                  .body_len = body_len};
    struct cache_entry *e = cache_entry_new(&sp);
    free(body);
    assert_non_null(e);
    return e;
}

static uint64_t body_id(const struct cache_entry *e)
{
    uint64_t id;
    memcpy(&id, e->body, 8);
    return id;
}

static struct cache_store *open_store(int64_t max_bytes, int64_t max_entry,
                                      const struct cache_env *env)
{
    struct cache_store *s = NULL;
    struct cp_err err = {0};
    assert_int_equal(cache__memory_open(max_bytes, max_entry, env, &s, &err), 0);
    assert_non_null(s);
    return s;
}

static const struct cache_backend *be(void)
{
    return &cache__memory_backend;
}

/* Stores a fresh entry for id; the store keeps its own reference. */
static void put(struct cache_store *s, uint64_t id, const char *path, size_t body_len,
                int64_t keep_ms)
{
    struct cache_key k;
    struct cp_err err = {0};
    key_of(id, &k);
    struct cache_entry *e = entry_of(id, path, body_len);
    assert_int_equal(be()->set(s, &k, e, keep_ms, &err), 0);
    cache_entry_unref(e);
}

/* 1 on a hit (checking the body belongs to id), 0 on a miss. */
static int probe(struct cache_store *s, uint64_t id)
{
    struct cache_key k;
    struct cache_entry *e = (struct cache_entry *)1;
    struct cp_err err = {0};
    key_of(id, &k);
    assert_int_equal(be()->get(s, &k, &e, &err), 0);
    if (!e)
        return 0;
    assert_int_equal(body_id(e), id);
    cache_entry_unref(e);
    return 1;
}

static void check_accounting(struct cache_store *s, int64_t max_bytes)
{
    struct cache_usage u;
    struct cache__memory_stats st;
    be()->usage(s, &u);
    cache__memory_stats(s, &st);
    assert_true(u.bytes <= (uint64_t)max_bytes);
    assert_int_equal(u.bytes, st.data_bytes + st.bookkeeping_bytes);
    assert_int_equal(u.entries, st.entries);
    assert_true(st.capacity <= (uint64_t)max_bytes);
}

struct fake_clock {
    int64_t now;
};

static int64_t fake_now(void *ctx)
{
    return ((struct fake_clock *)ctx)->now;
}

/* ---- memory backend ----------------------------------------------------------------------- */

static void test_memory__backend_table(void **state)
{
    (void)state;
    struct cfg_ds cfg;
    struct cp_err err = {0};
    struct cache_store *s = NULL;

    assert_string_equal(be()->name, "memory");
    assert_int_equal(be()->caps, CACHE_CAP_NO_IO); /* answers at once: no shared locks */
    assert_null(be()->lock);
    assert_null(be()->unlock);
    memset(&cfg, 0, sizeof cfg);
    cfg.cache.memory_max_bytes = 1 << 20;
    cfg.cache.max_entry_bytes = 1 << 16;
    assert_int_equal(be()->open(&cfg, NULL, &s, &err), 0);
    assert_non_null(s);
    assert_ptr_equal(s->be, be());
    assert_int_equal(be()->ping(s, NULL, 0, &err), 0);
    be()->close(s);

    cfg.cache.memory_max_bytes = 0;
    assert_int_equal(be()->open(&cfg, NULL, &s, &err), CP_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(err.msg, "memoryMaxBytes"));
}

static void test_memory__hit_and_miss(void **state)
{
    (void)state;
    struct cache_store *s = open_store(1 << 20, 1 << 16, NULL);
    struct cache_key k;
    struct cache_entry *got = NULL;
    struct cp_err err = {0};

    key_of(1, &k);
    assert_int_equal(be()->get(s, &k, &got, &err), 0);
    assert_null(got);

    struct cache_entry *e = entry_of(1, "/api/a", 100);
    assert_int_equal(be()->set(s, &k, e, 60000, &err), 0);
    assert_int_equal(atomic_load(&e->refs), 2); /* the caller's and the store's */
    assert_int_equal(be()->get(s, &k, &got, &err), 0);
    assert_ptr_equal(got, e); /* shared, not copied */
    assert_int_equal(atomic_load(&e->refs), 3);
    cache_entry_unref(got);
    cache_entry_unref(e);

    assert_int_equal(probe(s, 2), 0);
    struct cache_usage u;
    be()->usage(s, &u);
    assert_int_equal(u.entries, 1);
    assert_true(u.bytes > e->mem_size); /* bookkeeping is charged too */
    be()->close(s);
}

static void test_memory__reference_survives_replacement_and_eviction(void **state)
{
    (void)state;
    struct cache_store *s = open_store(128 * 1024, 8 * 1024, NULL);
    struct cache_key k;
    struct cache_entry *r1 = NULL, *r2 = NULL;
    struct cp_err err = {0};

    key_of(7, &k);
    put(s, 7, "/v1", 4000, 60000);
    assert_int_equal(be()->get(s, &k, &r1, &err), 0);
    assert_non_null(r1);

    struct cache_entry *e2 = entry_of(8, "/v2", 5000);
    assert_int_equal(be()->set(s, &k, e2, 60000, &err), 0);
    cache_entry_unref(e2);
    assert_int_equal(atomic_load(&r1->refs), 1); /* the store let go of it */
    assert_int_equal(body_id(r1), 7);
    assert_int_equal(r1->body_len, 4000);

    assert_int_equal(be()->get(s, &k, &r2, &err), 0);
    assert_non_null(r2);
    assert_int_equal(body_id(r2), 8);
    /* seven times the budget, each key stored more often than r2's key was used */
    for (uint64_t i = 100; i < 400; i++)
        for (int j = 0; j < 8; j++)
            put(s, i, "/fill", 3000, 60000);
    struct cache_entry *still = NULL;
    assert_int_equal(be()->get(s, &k, &still, &err), 0);
    assert_null(still);
    assert_int_equal(atomic_load(&r2->refs), 1);
    assert_int_equal(body_id(r2), 8);
    assert_string_equal(r2->path, "/v2");
    cache_entry_unref(r1);
    cache_entry_unref(r2);
    be()->close(s);
}

static void test_memory__budget_never_exceeded(void **state)
{
    (void)state;
    static const int64_t budgets[][2] = {{96 * 1024, 16 * 1024}, {6 << 20, 64 * 1024}};
    for (size_t b = 0; b < 2; b++) {
        _Atomic uint64_t ev = 0;
        struct cache_env env = {.evictions = &ev};
        struct cache_store *s = open_store(budgets[b][0], budgets[b][1], &env);
        uint64_t seed = 42 + b;
        for (int i = 0; i < 6000; i++) {
            uint64_t r = splitmix(&seed);
            uint64_t id = r % 3000;
            size_t len = 8 + (size_t)((r >> 20) % 12000);
            if ((r >> 40) % 4 == 0)
                probe(s, id);
            else
                put(s, id, "/x", len, 60000);
            struct cache_usage u;
            be()->usage(s, &u);
            assert_true(u.bytes <= (uint64_t)budgets[b][0]);
        }
        check_accounting(s, budgets[b][0]);
        struct cache_usage u;
        be()->usage(s, &u);
        assert_true(u.evictions > 0);
        assert_int_equal(u.evictions, atomic_load(&ev));
        assert_true(u.bytes > (uint64_t)budgets[b][0] / 2); /* full, not flushed */
        be()->close(s);
    }
}

static void test_memory__oversized_entry_refused(void **state)
{
    (void)state;
    struct cache_entry *e = entry_of(1, "/big", 2000);
    struct cp_err err = {0};
    struct cache_key k;
    struct cache_usage u;
    key_of(1, &k);

    /* exactly at the limit: stored */
    struct cache_store *s = open_store(1 << 20, (int64_t)e->mem_size, NULL);
    assert_int_equal(be()->set(s, &k, e, 60000, &err), 0);
    assert_int_equal(probe(s, 1), 1);
    be()->close(s);

    /* one byte over: refused without error, and an older answer for the key goes too */
    s = open_store(1 << 20, (int64_t)e->mem_size - 1, NULL);
    put(s, 1, "/small", 100, 60000);
    assert_int_equal(probe(s, 1), 1);
    assert_int_equal(be()->set(s, &k, e, 60000, &err), 0);
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_int_equal(probe(s, 1), 0);
    be()->usage(s, &u);
    assert_int_equal(u.entries, 0);
    assert_int_equal(u.bytes, 0);
    be()->close(s);
    cache_entry_unref(e);
}

static void test_memory__ttl_expiry_injected_clock(void **state)
{
    (void)state;
    struct fake_clock clk = {1000000};
    struct cache_store *s = open_store(1 << 20, 1 << 16, NULL);
    struct cache__memory_stats st;
    cache__memory_set_clock(s, fake_now, &clk);

    put(s, 1, "/t", 100, 5);
    put(s, 2, "/t", 100, 60000);
    clk.now += 4;
    assert_int_equal(probe(s, 1), 1);
    clk.now += 1; /* 5 ms after the set: expired */
    assert_int_equal(probe(s, 1), 0);
    cache__memory_stats(s, &st);
    assert_int_equal(st.entries, 1); /* removed on the miss */
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(probe(s, 2), 1);

    /* a zero lifetime is not stored and drops what was there */
    put(s, 2, "/t", 100, 0);
    assert_int_equal(probe(s, 2), 0);
    be()->close(s);
}

static void test_memory__ttl_expiry_wall_clock(void **state)
{
    (void)state;
    struct cache_store *s = open_store(1 << 20, 1 << 16, NULL);
    int64_t t0 = cp_now_ms();
    put(s, 1, "/t", 100, 5);
    if (!probe(s, 1))
        assert_true(cp_now_ms() - t0 >= 5); /* a miss only once the time has passed */
    int64_t deadline = t0 + 5000;
    int hit = 1;
    while (hit && cp_now_ms() < deadline)
        hit = probe(s, 1);
    assert_int_equal(hit, 0);
    assert_true(cp_now_ms() - t0 >= 5);
    be()->close(s);
}

static void test_memory__expired_entries_go_first(void **state)
{
    (void)state;
    struct fake_clock clk = {5000};
    const int64_t max = 64 * 1024;
    struct cache_store *s = open_store(max, 4096, NULL);
    struct cache__memory_stats st;
    cache__memory_set_clock(s, fake_now, &clk);

    for (uint64_t i = 0; i < 20; i++)
        put(s, i, "/long", 900, 600000);
    for (uint64_t i = 100; i < 120; i++)
        put(s, i, "/short", 900, 10);
    cache__memory_stats(s, &st);
    assert_int_equal(st.entries, 40);
    assert_int_equal(st.evictions, 0);
    uint64_t each = st.data_bytes / 40;

    clk.now += 11;
    /* without the 20 expired entries these 25 would not fit */
    assert_true(65 * each > (uint64_t)max);
    for (uint64_t i = 200; i < 225; i++)
        put(s, i, "/new", 900, 600000);
    cache__memory_stats(s, &st);
    assert_int_equal(st.expired, 20);
    assert_int_equal(st.evictions, 0);
    for (uint64_t i = 0; i < 20; i++)
        assert_int_equal(probe(s, i), 1);
    for (uint64_t i = 200; i < 225; i++)
        assert_int_equal(probe(s, i), 1);
    check_accounting(s, max);
    be()->close(s);
}

static void test_memory__purge_by_prefix(void **state)
{
    (void)state;
    struct cache_store *s = open_store(8 << 20, 1 << 16, NULL);
    struct cp_err err = {0};
    struct cache_usage u;
    struct cache_key k;
    struct cache_entry *held = NULL;
    uint64_t n = 99;

    for (uint64_t i = 0; i < 10; i++)
        put(s, i, "/api/a/items", 200, 60000);
    for (uint64_t i = 10; i < 15; i++)
        put(s, i, "/api/b", 200, 60000);
    for (uint64_t i = 15; i < 18; i++)
        put(s, i, "/other", 200, 60000);
    key_of(3, &k);
    assert_int_equal(be()->get(s, &k, &held, &err), 0);
    assert_non_null(held);

    assert_int_equal(be()->purge_prefix(s, "/api/a", &n, &err), 0);
    assert_int_equal(n, 10);
    assert_int_equal(probe(s, 3), 0);
    assert_int_equal(probe(s, 12), 1);
    assert_int_equal(body_id(held), 3); /* a reader's reference outlives the purge */
    cache_entry_unref(held);

    assert_int_equal(be()->purge_prefix(s, "/nothing", &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(be()->purge_prefix(s, "", &n, &err), 0);
    assert_int_equal(n, 8);
    be()->usage(s, &u);
    assert_int_equal(u.entries, 0);
    assert_int_equal(u.bytes, 0); /* bookkeeping is given back too */

    put(s, 1, "/x", 100, 60000);
    assert_int_equal(be()->purge_prefix(s, NULL, &n, &err), 0);
    assert_int_equal(n, 1);
    be()->close(s);
}

static void test_memory__del(void **state)
{
    (void)state;
    struct cache_store *s = open_store(1 << 20, 1 << 16, NULL);
    struct cp_err err = {0};
    struct cache_key k;
    struct cache_usage u;

    put(s, 1, "/d", 100, 60000);
    put(s, 2, "/d", 100, 60000);
    key_of(1, &k);
    assert_int_equal(be()->del(s, &k, &err), 0);
    assert_int_equal(probe(s, 1), 0);
    assert_int_equal(probe(s, 2), 1);
    assert_int_equal(be()->del(s, &k, &err), 0); /* absent: fine */
    key_of(2, &k);
    assert_int_equal(be()->del(s, &k, &err), 0);
    be()->usage(s, &u);
    assert_int_equal(u.entries, 0);
    assert_int_equal(u.bytes, 0);
    be()->close(s);
}

/* Many keys per shard: index growth, and deletes that shift probe runs back. */
static void test_memory__index_growth_and_deletes(void **state)
{
    (void)state;
    struct cache_store *s = open_store(64 << 20, 1 << 16, NULL);
    struct cp_err err = {0};
    struct cache_key k;
    for (uint64_t i = 0; i < 20000; i++)
        put(s, i, "/g", 8, 60000);
    for (uint64_t i = 0; i < 20000; i += 3) {
        key_of(i, &k);
        assert_int_equal(be()->del(s, &k, &err), 0);
    }
    for (uint64_t i = 0; i < 20000; i++)
        assert_int_equal(probe(s, i), i % 3 != 0);
    struct cache_usage u;
    be()->usage(s, &u);
    assert_int_equal(u.entries, 20000 - 6667);
    check_accounting(s, 64 << 20);
    be()->close(s);
}

struct worker {
    struct cache_store *s;
    uint64_t seed;
    int ops;
};

#define CONC_KEYS 2000

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct cp_err err = {0};
    for (int i = 0; i < w->ops; i++) {
        uint64_t r = splitmix(&w->seed);
        uint64_t id = r % CONC_KEYS;
        struct cache_key k;
        key_of(id, &k);
        unsigned op = (unsigned)((r >> 32) % 10);
        if (op < 6) {
            struct cache_entry *e = NULL;
            if (be()->get(w->s, &k, &e, &err) || (e && body_id(e) != id))
                return "wrong entry";
            cache_entry_unref(e);
        } else if (op < 9) {
            static const unsigned char zeros[4096];
            size_t len = 8 + (size_t)((r >> 40) % 4000);
            unsigned char body[4096];
            memcpy(body, zeros, len);
            memcpy(body, &id, 8);
            struct cache_entry_spec sp = {
                .status = 200, .ttl_ms = 60000, .path = "/c", .body = body, .body_len = len};
            struct cache_entry *e = cache_entry_new(&sp);
            /* a quarter expire within milliseconds: expiry races with readers too */
            int64_t keep = (r >> 56) % 4 == 0 ? 1 + (int64_t)((r >> 48) % 3) : 60000;
            if (!e || be()->set(w->s, &k, e, keep, &err))
                return "set failed";
            cache_entry_unref(e);
        } else if (be()->del(w->s, &k, &err)) {
            return "del failed";
        }
    }
    return NULL;
}

static void test_memory__concurrent_get_set(void **state)
{
    (void)state;
    const int64_t max = 2 << 20;
    _Atomic uint64_t ev = 0;
    struct cache_env env = {.evictions = &ev};
    struct cache_store *s = open_store(max, 64 * 1024, &env);
    struct worker w[4];
    pthread_t t[4];
    struct cache__memory_stats st;

    cache__memory_stats(s, &st);
    assert_true(st.shards > 1);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){s, 1000 + (uint64_t)i, 40000};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *ret = (void *)1;
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
    check_accounting(s, max);

    /* every entry counted can be found (expired ones are removed by the lookup), and the
     * byte totals agree */
    uint64_t hits = 0, data = 0;
    for (uint64_t id = 0; id < CONC_KEYS; id++) {
        struct cache_key k;
        struct cache_entry *e = NULL;
        struct cp_err err = {0};
        key_of(id, &k);
        assert_int_equal(be()->get(s, &k, &e, &err), 0);
        if (e) {
            hits++;
            data += e->mem_size;
            cache_entry_unref(e);
        }
    }
    cache__memory_stats(s, &st);
    assert_int_equal(hits, st.entries);
    assert_int_equal(data, st.data_bytes);
    assert_true(st.evictions > 0);
    assert_true(st.expired > 0);
    assert_int_equal(st.evictions, atomic_load(&ev));
    be()->close(s);
}

static void test_memory__scan_keeps_hot_set(void **state)
{
    (void)state;
    const int64_t max = 256 * 1024;
    struct cache_store *s = open_store(max, 16 * 1024, NULL);
    struct cache__memory_stats st;
    enum { HOT = 50, SCAN = 2000 };

    for (uint64_t i = 0; i < HOT; i++) {
        put(s, i, "/hot", 1000, 600000);
        for (int j = 0; j < 4; j++)
            assert_int_equal(probe(s, i), 1);
    }
    for (uint64_t i = 1000; i < 1000 + SCAN; i++)
        if (!probe(s, i))
            put(s, i, "/scan", 1000, 600000);
    cache__memory_stats(s, &st);
    /* The scan alone is many times the cache: an LRU of the same size would now hold only
     * scan keys, so none of the hot ones. */
    assert_true(st.entries < SCAN / 4);
    assert_true(st.evictions > SCAN / 2);
    int kept = 0;
    for (uint64_t i = 0; i < HOT; i++)
        kept += probe(s, i);
    assert_true(kept >= HOT * 9 / 10);
    check_accounting(s, max);
    be()->close(s);
}

/* ---- policy ------------------------------------------------------------------------------- */

static void test_evict__sketch_counts_and_ages(void **state)
{
    (void)state;
    struct cache__evict_sketch sk = {.seed = 12345};
    unsigned char a[32], b[32];
    uint64_t x = 9;
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix(&x), w = splitmix(&x);
        memcpy(a + 8 * i, &v, 8);
        memcpy(b + 8 * i, &w, 8);
    }
    assert_int_equal(cache__evict_sketch_resize(&sk, 1024), 0);
    assert_int_equal(cache__evict_sketch_frequency(&sk, a), 0);
    for (int i = 0; i < 5; i++)
        cache__evict_sketch_increment(&sk, a);
    assert_int_equal(cache__evict_sketch_frequency(&sk, a), 5);
    assert_true(cache__evict_sketch_frequency(&sk, b) <= 1);
    for (int i = 0; i < 30; i++)
        cache__evict_sketch_increment(&sk, a);
    assert_int_equal(cache__evict_sketch_frequency(&sk, a), 15); /* 4-bit counters saturate */
    cache__evict_sketch_age(&sk);
    assert_int_equal(cache__evict_sketch_frequency(&sk, a), 7);
    cache__evict_sketch_age(&sk);
    assert_int_equal(cache__evict_sketch_frequency(&sk, a), 3);

    /* aging runs by itself within `sample` increments */
    uint64_t y = 77;
    uint32_t i = 0, before = sk.additions;
    for (; i <= sk.sample; i++) {
        unsigned char k[32] = {0};
        uint64_t v = splitmix(&y), w = splitmix(&y);
        memcpy(k + 16, &v, 8);
        memcpy(k + 24, &w, 8);
        cache__evict_sketch_increment(&sk, k);
        if (sk.additions < before)
            break;
        before = sk.additions;
    }
    assert_true(i <= sk.sample);
    assert_true(sk.additions <= sk.sample / 2);
    cache__evict_sketch_dispose(&sk);
}

struct pnode {
    struct cache__evict_node n;
    uint64_t tag;
    uint64_t pad;
};

struct drops {
    uint64_t tags[16];
    int n;
    struct cache__evict *p;
};

static void record_drop(void *ctx, uint32_t id)
{
    struct drops *d = ctx;
    d->tags[d->n++] = ((struct pnode *)cache__evict_at(d->p, id))->tag;
}

static uint32_t pnew(struct cache__evict *p, uint64_t tag, uint32_t weight)
{
    uint32_t id;
    assert_int_equal(cache__evict_alloc(p, &id), 0);
    struct pnode *n = cache__evict_at(p, id);
    uint64_t x = tag;
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix(&x);
        memcpy(n->n.key + 8 * i, &v, 8);
    }
    n->tag = tag;
    cache__evict_insert(p, id, weight);
    return id;
}

static void test_evict__admission_by_frequency(void **state)
{
    (void)state;
    struct cache__evict p;
    struct drops d = {.n = 0, .p = &p};
    const uint32_t kib = 1024;
    cache__evict_init(&p, sizeof(struct pnode), 1024 * kib, 1);

    /* two popular entries; protected (80% of main) holds only one, the other is demoted */
    uint32_t a = pnew(&p, 'A', 450 * kib), b = pnew(&p, 'B', 450 * kib);
    assert_int_equal(cache__evict_run(&p, 0, record_drop, &d), 0);
    assert_int_equal(((struct pnode *)cache__evict_at(&p, a))->n.region, CACHE__EVICT_PROBATION);
    for (int i = 0; i < 3; i++) {
        cache__evict_access(&p, a);
        cache__evict_access(&p, b);
    }
    assert_int_equal(p.bytes[CACHE__EVICT_PROTECTED], 450 * kib);
    assert_int_equal(p.bytes[CACHE__EVICT_PROBATION], 450 * kib);

    /* a one-hit newcomer loses against the probation victim */
    pnew(&p, 'C', 200 * kib);
    assert_int_equal(cache__evict_run(&p, 0, record_drop, &d), 1);
    assert_int_equal(d.tags[0], 'C');

    /* a newcomer seen more often than the victim replaces it */
    uint32_t dd = pnew(&p, 'D', 200 * kib);
    for (int i = 0; i < 8; i++)
        cache__evict_access(&p, dd);
    assert_int_equal(cache__evict_run(&p, 0, record_drop, &d), 1);
    assert_true(d.tags[1] == 'A' || d.tags[1] == 'B');
    assert_int_equal(p.live, 2);
    assert_true(p.weight + p.fixed <= p.cap);

    /* iteration sees exactly the live nodes; removal empties and compaction frees */
    int seen = 0;
    for (uint32_t id = cache__evict_next(&p, 0), nx; id; id = nx) {
        nx = cache__evict_next(&p, id);
        seen++;
        cache__evict_remove(&p, id);
    }
    assert_int_equal(seen, 2);
    assert_int_equal(p.weight, 0);
    cache__evict_compact(&p);
    assert_int_equal(p.fixed, 0);
    cache__evict_dispose(&p);
}

static void test_evict__window_then_probation_then_protected(void **state)
{
    (void)state;
    struct cache__evict p;
    struct drops d = {.n = 0, .p = &p};
    cache__evict_init(&p, sizeof(struct pnode), 100000, 2);
    uint32_t x = pnew(&p, 'X', 100); /* the window holds 1% = 1000 bytes */
    assert_int_equal(((struct pnode *)cache__evict_at(&p, x))->n.region, CACHE__EVICT_WINDOW);
    for (uint64_t i = 0; i < 10; i++)
        pnew(&p, i, 100);
    cache__evict_run(&p, 0, record_drop, &d);
    /* the eleventh 100-byte entry pushed the oldest (X) out of the window */
    assert_int_equal(((struct pnode *)cache__evict_at(&p, x))->n.region, CACHE__EVICT_PROBATION);
    cache__evict_access(&p, x);
    assert_int_equal(((struct pnode *)cache__evict_at(&p, x))->n.region, CACHE__EVICT_PROTECTED);
    assert_int_equal(d.n, 0);
    cache__evict_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory__backend_table),
        cmocka_unit_test(test_memory__hit_and_miss),
        cmocka_unit_test(test_memory__reference_survives_replacement_and_eviction),
        cmocka_unit_test(test_memory__budget_never_exceeded),
        cmocka_unit_test(test_memory__oversized_entry_refused),
        cmocka_unit_test(test_memory__ttl_expiry_injected_clock),
        cmocka_unit_test(test_memory__ttl_expiry_wall_clock),
        cmocka_unit_test(test_memory__expired_entries_go_first),
        cmocka_unit_test(test_memory__purge_by_prefix),
        cmocka_unit_test(test_memory__del),
        cmocka_unit_test(test_memory__index_growth_and_deletes),
        cmocka_unit_test(test_memory__concurrent_get_set),
        cmocka_unit_test(test_memory__scan_keeps_hot_set),
        cmocka_unit_test(test_evict__sketch_counts_and_ages),
        cmocka_unit_test(test_evict__admission_by_frequency),
        cmocka_unit_test(test_evict__window_then_probation_then_protected),
    };
    return cmocka_run_group_tests_name("cache_memory", tests, NULL, NULL);
}
