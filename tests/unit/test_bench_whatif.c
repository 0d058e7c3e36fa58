/*
 * test_bench_whatif.c - bench/whatif.c (`cachingproxy-bench sim`): keys from a trace, and the
 * three policies against independent models on small random traces:
 *
 *   lru  against a plain array LRU (expired entries leave first, then the least recent);
 *   opt  against an exhaustive search over every choice a cache can make on a miss (store or
 *        not, and which entry to drop): without a TTL opt reaches that maximum, which proves
 *        it optimal on those traces; with a TTL it is checked against a literal O(n^2) model
 *        of the rule and never exceeds the maximum;
 *   ours never exceeds the maximum either, and with the same seed is deterministic.
 */
#include "bench_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAXN 200
#define MAXCAP 8

struct trace {
    size_t n;
    uint32_t key[MAXN];
    int64_t ts[MAXN];
};

static void random_trace(struct trace *t, uint64_t *rng, size_t maxn, uint32_t maxkeys)
{
    t->n = 1 + bench_rand(rng) % maxn;
    uint32_t keys = 1 + (uint32_t)(bench_rand(rng) % maxkeys);
    int64_t now = 0;
    for (size_t i = 0; i < t->n; i++) {
        static const int64_t steps[] = {0, 1000, 1000, 2000, 3000};
        now += steps[bench_rand(rng) % 5];
        t->ts[i] = now;
        t->key[i] = (uint32_t)(bench_rand(rng) % keys);
    }
}

static void load(struct bench_whatif *w, const struct trace *t)
{
    assert_int_equal(bench_whatif_init(w, t->key, t->ts, t->n), 0);
}

static int fresh(int64_t stored, int64_t now, int64_t ttl)
{
    return ttl <= 0 || now < stored + ttl;
}

/* ---- models --------------------------------------------------------------------------------- */

/* Array LRU: slots with key, store time and last use. */
static uint64_t model_lru(const struct trace *t, size_t cap, int64_t ttl)
{
    uint32_t key[MAXCAP];
    int64_t stored[MAXCAP];
    size_t used[MAXCAP], n = 0;
    uint64_t hits = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = 0;
        while (j < n && key[j] != t->key[i])
            j++;
        if (j < n && fresh(stored[j], t->ts[i], ttl)) {
            hits++;
            used[j] = i;
            continue;
        }
        if (j < n) { /* expired copy of this key */
            key[j] = key[--n], stored[j] = stored[n], used[j] = used[n];
        }
        for (size_t k = 0; k < n;) /* every expired entry leaves */
            if (!fresh(stored[k], t->ts[i], ttl))
                key[k] = key[--n], stored[k] = stored[n], used[k] = used[n];
            else
                k++;
        if (n == cap) {
            size_t v = 0;
            for (size_t k = 1; k < n; k++)
                if (used[k] < used[v])
                    v = k;
            key[v] = key[--n], stored[v] = stored[n], used[v] = used[n];
        }
        key[n] = t->key[i], stored[n] = t->ts[i], used[n] = i;
        n++;
    }
    return hits;
}

/* The opt rule taken literally: next uses found by scanning ahead. */
static size_t scan_next_use(const struct trace *t, size_t i, uint32_t k, int64_t stored,
                            int64_t ttl)
{
    for (size_t j = i + 1; j < t->n; j++)
        if (t->key[j] == k)
            return fresh(stored, t->ts[j], ttl) ? j : SIZE_MAX;
    return SIZE_MAX;
}

static uint64_t model_opt_rule(const struct trace *t, size_t cap, int64_t ttl)
{
    uint32_t key[MAXCAP];
    int64_t stored[MAXCAP];
    size_t n = 0;
    uint64_t hits = 0;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = 0;
        while (j < n && key[j] != t->key[i])
            j++;
        if (j < n && fresh(stored[j], t->ts[i], ttl)) {
            hits++;
            continue;
        }
        if (j < n) {
            stored[j] = t->ts[i];
            continue;
        }
        if (n < cap) {
            key[n] = t->key[i], stored[n] = t->ts[i];
            n++;
            continue;
        }
        /* of the cached entries and the new one, the furthest next use goes (never = SIZE_MAX;
         * between two nevers either choice leaves the same hits) */
        size_t mine = scan_next_use(t, i, t->key[i], t->ts[i], ttl), far = 0, far_use = 0;
        for (size_t k = 0; k < n; k++) {
            size_t u = scan_next_use(t, i, key[k], stored[k], ttl);
            if (k == 0 || u > far_use)
                far_use = u, far = k;
        }
        if (far_use > mine)
            key[far] = t->key[i], stored[far] = t->ts[i];
    }
    return hits;
}

/* The most hits any cache of this size can get: every choice on every miss is tried. */
struct search {
    const struct trace *t;
    size_t cap;
    int64_t ttl;
    uint64_t best;
};

static void dfs(struct search *s, size_t i, const uint32_t *key, const int64_t *stored, size_t n,
                uint64_t hits)
{
    if (hits + (s->t->n - i) <= s->best)
        return; /* cannot beat what is found */
    if (i == s->t->n) {
        s->best = hits;
        return;
    }
    uint32_t k = s->t->key[i];
    int64_t now = s->t->ts[i];
    uint32_t nk[MAXCAP];
    int64_t ns[MAXCAP];
    size_t j = 0;
    while (j < n && key[j] != k)
        j++;
    if (j < n && fresh(stored[j], now, s->ttl)) {
        dfs(s, i + 1, key, stored, n, hits + 1);
        return;
    }
    memcpy(nk, key, n * sizeof *nk);
    memcpy(ns, stored, n * sizeof *ns);
    if (j < n) { /* expired: store the new copy, or drop it */
        ns[j] = now;
        dfs(s, i + 1, nk, ns, n, hits);
        nk[j] = nk[n - 1], ns[j] = ns[n - 1];
        dfs(s, i + 1, nk, ns, n - 1, hits);
        return;
    }
    dfs(s, i + 1, key, stored, n, hits); /* not stored */
    if (n < s->cap) {
        nk[n] = k, ns[n] = now;
        dfs(s, i + 1, nk, ns, n + 1, hits);
        return;
    }
    for (size_t v = 0; v < n; v++) {
        memcpy(nk, key, n * sizeof *nk);
        memcpy(ns, stored, n * sizeof *ns);
        nk[v] = k, ns[v] = now;
        dfs(s, i + 1, nk, ns, n, hits);
    }
}

static uint64_t model_max(const struct trace *t, size_t cap, int64_t ttl)
{
    struct search s = {t, cap, ttl, 0};
    uint32_t key[MAXCAP] = {0};
    int64_t stored[MAXCAP] = {0};
    dfs(&s, 0, key, stored, 0, 0);
    return s.best;
}

static uint64_t run(int (*fn)(const struct bench_whatif *, uint64_t, int64_t, uint64_t *),
                    const struct trace *t, uint64_t cap, int64_t ttl)
{
    struct bench_whatif w;
    uint64_t hits = UINT64_MAX;
    load(&w, t);
    assert_int_equal(fn(&w, cap, ttl, &hits), 0);
    bench_whatif_dispose(&w);
    assert_true(hits <= t->n);
    return hits;
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_whatif__keys_by_method_path_and_scope(void **state)
{
    (void)state;
    static const char text[] = "1,a,Viewer,GET,/x\n"
                               "2,b,Viewer,GET,/x\n"
                               "3,a,Viewer,HEAD,/x\n"
                               "4,,,GET,/x\n"
                               "5,a,Viewer,GET,/x?p=1\n";
    FILE *f = fmemopen((void *)text, sizeof text - 1, "r");
    struct bench_trace *tr = NULL;
    struct cp_err err = {0};
    assert_int_equal(bench_trace_read(f, "t", &tr, &err), 0);
    fclose(f);
    struct bench_whatif w;
    assert_int_equal(bench_whatif_prepare(tr, 0, &w, &err), 0);
    assert_int_equal(w.n, 5);
    assert_int_equal(w.nkeys, 3);
    assert_int_equal(w.key[0], w.key[1]); /* shared: users do not split keys */
    assert_int_equal(w.key[0], w.key[3]);
    assert_true(w.key[2] != w.key[0] && w.key[4] != w.key[0] && w.key[4] != w.key[2]);
    assert_int_equal(w.next[0], 1);
    assert_int_equal(w.next[1], 3);
    assert_int_equal(w.next[3], 5);
    bench_whatif_dispose(&w);

    assert_int_equal(bench_whatif_prepare(tr, 1, &w, &err), 0);
    assert_int_equal(w.nkeys, 4);
    assert_true(w.key[0] != w.key[1]);               /* per user */
    assert_int_equal(w.key[3], BENCH_WHATIF_BYPASS); /* no user: never cached */
    bench_whatif_dispose(&w);
    bench_trace_free(tr);
}

static void test_whatif__lru_matches_the_model(void **state)
{
    (void)state;
    static const int64_t ttls[] = {0, 2000, 3000, 5000, 9000};
    uint64_t rng = 77;
    for (int round = 0; round < 3000; round++) {
        struct trace t;
        random_trace(&t, &rng, MAXN, 1 + (uint32_t)(round % 24));
        size_t cap = 1 + bench_rand(&rng) % MAXCAP;
        int64_t ttl = ttls[round % 5];
        uint64_t want = model_lru(&t, cap, ttl), got = run(bench_whatif_lru, &t, cap, ttl);
        if (want != got)
            fail_msg("round %d (n %zu, cap %zu, ttl %lld): lru %llu, model %llu", round, t.n, cap,
                     (long long)ttl, (unsigned long long)got, (unsigned long long)want);
    }
}

static void test_whatif__opt_is_the_optimum_without_ttl(void **state)
{
    (void)state;
    uint64_t rng = 5;
    for (int round = 0; round < 1500; round++) {
        struct trace t;
        random_trace(&t, &rng, 10, 5);
        size_t cap = 1 + bench_rand(&rng) % 3;
        uint64_t best = model_max(&t, cap, 0);
        uint64_t opt = run(bench_whatif_opt, &t, cap, 0);
        if (opt != best)
            fail_msg("round %d (n %zu, cap %zu): opt %llu, exhaustive %llu", round, t.n, cap,
                     (unsigned long long)opt, (unsigned long long)best);
        assert_true(run(bench_whatif_lru, &t, cap, 0) <= opt);
        assert_true(run(bench_whatif_ours, &t, cap, 0) <= opt);
    }
}

static void test_whatif__opt_follows_its_rule_under_ttl(void **state)
{
    (void)state;
    static const int64_t ttls[] = {2000, 3000, 5000, 8000};
    uint64_t rng = 11;
    for (int round = 0; round < 1500; round++) {
        struct trace t;
        random_trace(&t, &rng, 10, 5);
        size_t cap = 1 + bench_rand(&rng) % 3;
        int64_t ttl = ttls[round % 4];
        uint64_t opt = run(bench_whatif_opt, &t, cap, ttl);
        assert_int_equal(opt, model_opt_rule(&t, cap, ttl));
        uint64_t best = model_max(&t, cap, ttl);
        assert_true(opt <= best);
        assert_true(run(bench_whatif_lru, &t, cap, ttl) <= best);
        assert_true(run(bench_whatif_ours, &t, cap, ttl) <= best);
    }
    /* larger traces against the literal rule only */
    for (int round = 0; round < 300; round++) {
        struct trace t;
        random_trace(&t, &rng, MAXN, 30);
        size_t cap = 1 + bench_rand(&rng) % MAXCAP;
        int64_t ttl = ttls[round % 4];
        assert_int_equal(run(bench_whatif_opt, &t, cap, ttl), model_opt_rule(&t, cap, ttl));
    }
}

/* Under a TTL the rule is not always the optimum: key 3 stored at t=1 is hit at 5, then
 * expired at 6; not storing it at 1 leaves room for others, and storing it at 5 still gives
 * one hit (at 6). Seconds, cache of 2, TTL 5 s. */
static void test_whatif__opt_rule_can_be_beaten_under_ttl(void **state)
{
    (void)state;
    struct trace t = {
        8, {3, 0, 2, 1, 0, 3, 3, 2}, {1000, 2000, 3000, 4000, 4000, 5000, 6000, 7000}};
    assert_int_equal(run(bench_whatif_opt, &t, 2, 5000), 2);
    assert_int_equal(model_max(&t, 2, 5000), 3);
    /* without the TTL the rule is optimal again */
    assert_int_equal(run(bench_whatif_opt, &t, 2, 0), model_max(&t, 2, 0));
}

static void test_whatif__document_shape(void **state)
{
    (void)state;
    uint64_t rng = 3;
    struct trace t;
    random_trace(&t, &rng, MAXN, 20);
    struct bench_whatif w;
    load(&w, &t);
    static const uint64_t sizes[] = {1, 4, 16};
    json_t *doc = NULL;
    struct cp_err err = {0};
    assert_int_equal(bench_whatif_run(&w, sizes, 3, 1500, &doc, &err), 0);
    assert_int_equal(json_object_size(doc), 2);
    assert_int_equal(json_integer_value(json_object_get(doc, "requests")), (json_int_t)t.n);
    json_t *res = json_object_get(doc, "results");
    assert_int_equal(json_array_size(res), 9);
    static const char *const names[] = {"ours", "lru", "opt"};
    for (size_t i = 0; i < 9; i++) {
        json_t *r = json_array_get(res, i);
        assert_int_equal(json_object_size(r), 6);
        assert_string_equal(json_string_value(json_object_get(r, "policy")), names[i % 3]);
        assert_int_equal(json_integer_value(json_object_get(r, "size")), (json_int_t)sizes[i / 3]);
        assert_true(json_real_value(json_object_get(r, "ttl")) == 1.5);
        json_int_t h = json_integer_value(json_object_get(r, "hits"));
        json_int_t m = json_integer_value(json_object_get(r, "misses"));
        assert_int_equal(h + m, (json_int_t)t.n);
        assert_true(json_real_value(json_object_get(r, "hitRatio")) == (double)h / (double)t.n);
    }
    json_decref(doc);
    /* a whole-second TTL is an integer */
    assert_int_equal(bench_whatif_run(&w, sizes, 1, 0, &doc, &err), 0);
    assert_true(json_is_integer(
        json_object_get(json_array_get(json_object_get(doc, "results"), 0), "ttl")));
    json_decref(doc);
    bench_whatif_dispose(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whatif__keys_by_method_path_and_scope),
        cmocka_unit_test(test_whatif__lru_matches_the_model),
        cmocka_unit_test(test_whatif__opt_is_the_optimum_without_ttl),
        cmocka_unit_test(test_whatif__opt_follows_its_rule_under_ttl),
        cmocka_unit_test(test_whatif__opt_rule_can_be_beaten_under_ttl),
        cmocka_unit_test(test_whatif__document_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
