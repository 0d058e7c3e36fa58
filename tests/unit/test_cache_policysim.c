/*
 * test_cache_policysim.c - cache/policysim.c: the memory backend's policy (evict.c) fed keys
 * without storing anything, through the public cache_policy_sim API the benchmark uses.
 */
#include "cache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static struct cache_policy_sim *sim_new(uint64_t capacity, uint64_t seed)
{
    struct cache_policy_sim *s = NULL;
    assert_int_equal(cache_policy_sim_new(capacity, seed, &s), 0);
    assert_non_null(s);
    return s;
}

static int access_at(struct cache_policy_sim *s, uint64_t key, int64_t now, int64_t ttl)
{
    int hit = -1;
    assert_int_equal(cache_policy_sim_access(s, key, now, ttl, &hit), 0);
    assert_true(hit == 0 || hit == 1);
    return hit;
}

/* Plain LRU of the same capacity over the same keys, for comparisons. */
static uint64_t lru_hits(const uint64_t *keys, size_t n, size_t cap)
{
    uint64_t *c = calloc(cap, sizeof *c); /* c[0] = MRU */
    size_t len = 0;
    uint64_t hits = 0;
    assert_non_null(c);
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < len && c[j] != keys[i])
            j++;
        if (j < len)
            hits++;
        else if (len < cap)
            j = len++;
        else
            j = cap - 1;
        memmove(c + 1, c, j * sizeof *c);
        c[0] = keys[i];
    }
    free(c);
    return hits;
}

static void test_policysim__refuses_empty_capacity(void **state)
{
    (void)state;
    struct cache_policy_sim *s = (struct cache_policy_sim *)1;
    assert_int_equal(cache_policy_sim_new(0, 1, &s), CP_EINVAL);
    assert_null(s);
    cache_policy_sim_free(NULL);
}

static void test_policysim__second_request_hits(void **state)
{
    (void)state;
    struct cache_policy_sim *s = sim_new(10, 1);
    assert_int_equal(access_at(s, 42, 0, 0), 0);
    assert_int_equal(access_at(s, 42, 1, 0), 1);
    assert_int_equal(access_at(s, 43, 2, 0), 0);
    assert_int_equal(access_at(s, 42, 3, 0), 1);
    assert_int_equal(cache_policy_sim_entries(s), 2);
    cache_policy_sim_free(s);
}

static void test_policysim__never_holds_more_than_capacity(void **state)
{
    (void)state;
    static const uint64_t caps[] = {1, 2, 3, 7, 100, 1000};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        struct cache_policy_sim *s = sim_new(caps[c], 7);
        uint64_t rng = 3 + c;
        for (int i = 0; i < 20000; i++) {
            access_at(s, splitmix(&rng) % 5000, i, 0);
            assert_true(cache_policy_sim_entries(s) <= caps[c]);
        }
        assert_int_equal(cache_policy_sim_entries(s), caps[c]);
        cache_policy_sim_free(s);
    }
}

/* Fresh while now < stored + ttl, as the memory backend's expire_ms > now. */
static void test_policysim__ttl_bounds_freshness(void **state)
{
    (void)state;
    struct cache_policy_sim *s = sim_new(10, 1);
    assert_int_equal(access_at(s, 1, 1000, 500), 0);
    assert_int_equal(access_at(s, 1, 1499, 500), 1);
    assert_int_equal(access_at(s, 1, 1500, 500), 0); /* expired: stored again at 1500 */
    assert_int_equal(access_at(s, 1, 1999, 500), 1);
    assert_int_equal(cache_policy_sim_entries(s), 1);
    cache_policy_sim_free(s);
}

/* A store first lets every expired entry go, so a live one is not evicted in their place. */
static void test_policysim__expired_entries_leave_first(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        struct cache_policy_sim *s = sim_new(2, seed);
        /* b is popular, so the policy would keep it; a is expired by t = 100 */
        access_at(s, 1, 0, 50);
        for (int i = 0; i < 5; i++)
            access_at(s, 2, 10 + i, 1000);
        assert_int_equal(access_at(s, 3, 100, 1000), 0);
        assert_int_equal(cache_policy_sim_entries(s), 2);
        /* 3 and 2 fit together once 1 has gone */
        assert_int_equal(access_at(s, 2, 101, 1000), 1);
        assert_int_equal(access_at(s, 3, 102, 1000), 1);
        cache_policy_sim_free(s);
    }
}

/* Frequency decides, not recency: a hot set survives a scan of one-time keys that flushes an
 * LRU of the same size. */
static void test_policysim__scan_resistant_unlike_lru(void **state)
{
    (void)state;
    enum { CAP = 100, HOT = 60, N = 60000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    assert_non_null(keys);
    uint64_t rng = 11, scan = 1000000;
    for (size_t i = 0; i < N; i++)
        keys[i] = (i % 3 == 0) ? splitmix(&rng) % HOT : scan++;
    struct cache_policy_sim *s = sim_new(CAP, 5);
    uint64_t hits = 0;
    for (size_t i = 0; i < N; i++)
        hits += (uint64_t)access_at(s, keys[i], (int64_t)i, 0);
    uint64_t lru = lru_hits(keys, N, CAP);
    /* the hot third is hit almost always by ours; the LRU sees 2 scan keys per hot key */
    assert_true(hits > N / 3 * 9 / 10);
    assert_true(hits > lru + N / 10);
    cache_policy_sim_free(s);
    free(keys);
}

static void test_policysim__same_seed_same_result(void **state)
{
    (void)state;
    uint64_t hits[2] = {0, 0};
    for (int r = 0; r < 2; r++) {
        struct cache_policy_sim *s = sim_new(50, 99);
        uint64_t rng = 5;
        for (int i = 0; i < 20000; i++) {
            uint64_t x = splitmix(&rng);
            hits[r] += (uint64_t)access_at(s, (x % 7 == 0) ? x % 2000 : x % 80, i, 300);
        }
        cache_policy_sim_free(s);
    }
    assert_true(hits[0] > 0);
    assert_int_equal(hits[0], hits[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policysim__refuses_empty_capacity),
        cmocka_unit_test(test_policysim__second_request_hits),
        cmocka_unit_test(test_policysim__never_holds_more_than_capacity),
        cmocka_unit_test(test_policysim__ttl_bounds_freshness),
        cmocka_unit_test(test_policysim__expired_entries_leave_first),
        cmocka_unit_test(test_policysim__scan_resistant_unlike_lru),
        cmocka_unit_test(test_policysim__same_seed_same_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
