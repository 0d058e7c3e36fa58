/*
 * test_bench_stats.c - bench/stats.c: percentiles, the latency histogram, the Zipf sampler
 * and the upstream simulator's distributions with their command-line forms.
 */
#include "bench_int.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- percentiles ----------------------------------------------------------------------------- */

static void test_percentile__nearest_rank_of_1_to_100(void **state)
{
    (void)state;
    int64_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = i + 1;
    assert_int_equal(bench_percentile(v, 100, 50), 50);
    assert_int_equal(bench_percentile(v, 100, 95), 95);
    assert_int_equal(bench_percentile(v, 100, 99), 99);
    assert_int_equal(bench_percentile(v, 100, 100), 100);
    assert_int_equal(bench_percentile(v, 100, 1), 1);
    assert_int_equal(bench_percentile(v, 100, 0.5), 1);
    assert_int_equal(bench_percentile(v, 100, 99.5), 100);
}

static void test_percentile__small_and_empty(void **state)
{
    (void)state;
    int64_t one[] = {7};
    assert_int_equal(bench_percentile(one, 1, 50), 7);
    assert_int_equal(bench_percentile(one, 1, 99), 7);
    assert_int_equal(bench_percentile(NULL, 0, 50), 0);
    int64_t four[] = {10, 20, 30, 40};
    assert_int_equal(bench_percentile(four, 4, 50), 20); /* rank 2 */
    assert_int_equal(bench_percentile(four, 4, 51), 30); /* rank 3 */
    assert_int_equal(bench_percentile(four, 4, 75), 30);
    assert_int_equal(bench_percentile(four, 4, 76), 40);
    int64_t ten[10];
    for (int i = 0; i < 10; i++)
        ten[i] = i;
    assert_int_equal(bench_percentile(ten, 10, 95), 9); /* rank ceil(9.5) = 10 */
    assert_int_equal(bench_percentile(ten, 10, 90), 8); /* rank 9 exactly */
}

/* The definition, checked on random samples with ties: the smallest sample x with at least
 * p % of the samples <= x. */
static void test_percentile__matches_definition_on_random_samples(void **state)
{
    (void)state;
    static const double ps[] = {1, 10, 25, 50, 90, 95, 99, 99.9, 100};
    uint64_t rng = 42;
    for (int round = 0; round < 300; round++) {
        size_t n = 1 + bench_rand(&rng) % 300;
        int64_t *v = malloc(n * sizeof *v);
        assert_non_null(v);
        for (size_t i = 0; i < n; i++)
            v[i] = (int64_t)(bench_rand(&rng) % 50);
        qsort(v, n, sizeof *v, cmp_i64);
        for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
            int64_t want = v[n - 1];
            for (size_t i = 0; i < n; i++) {
                size_t at_or_below = 0;
                for (size_t j = 0; j < n; j++)
                    at_or_below += v[j] <= v[i];
                if ((double)at_or_below * 100.0 >= ps[k] * (double)n - 1e-9) {
                    want = v[i];
                    break;
                }
            }
            assert_int_equal(bench_percentile(v, n, ps[k]), want);
        }
        free(v);
    }
}

/* ---- histogram ------------------------------------------------------------------------------- */

static void test_hist__bounds_are_inclusive_above(void **state)
{
    (void)state;
    const double *b = bench_hist_bounds_ms();
    assert_true(b[0] == 0.01);
    for (int i = 1; i < BENCH_HIST_BUCKETS; i++)
        assert_true(b[i] > b[i - 1]);
    /* 10 us, 11 us, 1 ms, 1.001 ms, 150 s */
    int64_t ns[] = {10000, 11000, 1000000, 1001000, 150000000000LL};
    uint64_t c[BENCH_HIST_BUCKETS];
    bench_hist_fill(ns, 5, c);
    assert_int_equal(c[0], 1); /* (.., 0.01] */
    assert_int_equal(c[1], 1); /* (0.01, 0.02] */
    assert_int_equal(c[6], 1); /* (0.5, 1] */
    assert_int_equal(c[7], 1); /* (1, 2] */
    assert_int_equal(c[BENCH_HIST_BUCKETS - 1], 1);
    uint64_t sum = 0;
    for (int i = 0; i < BENCH_HIST_BUCKETS; i++)
        sum += c[i];
    assert_int_equal(sum, 5);
}

/* ---- Zipf ------------------------------------------------------------------------------------ */

static void test_zipf__refuses_bad_parameters(void **state)
{
    (void)state;
    struct bench_zipf z;
    assert_int_equal(bench_zipf_init(&z, 0, 1), CP_EINVAL);
    assert_int_equal(bench_zipf_init(&z, BENCH_ZIPF_MAX + 1, 1), CP_EINVAL);
    assert_int_equal(bench_zipf_init(&z, 10, -0.5), CP_EINVAL);
    assert_int_equal(bench_zipf_init(&z, 10, NAN), CP_EINVAL);
}

static void test_zipf__one_key_always_drawn(void **state)
{
    (void)state;
    struct bench_zipf z;
    assert_int_equal(bench_zipf_init(&z, 1, 1.2), 0);
    uint64_t rng = 1;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bench_zipf_draw(&z, &rng), 0);
    bench_zipf_dispose(&z);
}

static void test_zipf__probabilities_follow_the_law(void **state)
{
    (void)state;
    struct bench_zipf z;
    assert_int_equal(bench_zipf_init(&z, 100, 1.0), 0);
    double h = 0, sum = 0;
    for (int k = 1; k <= 100; k++)
        h += 1.0 / k;
    for (uint64_t k = 0; k < 100; k++) {
        assert_true(fabs(bench_zipf_prob(&z, k) - 1.0 / ((double)(k + 1) * h)) < 1e-12);
        sum += bench_zipf_prob(&z, k);
    }
    assert_true(fabs(sum - 1.0) < 1e-12);
    assert_true(bench_zipf_prob(&z, 100) == 0);
    bench_zipf_dispose(&z);
}

/* Pearson's chi-square of draws against the law; the bound is far out in the tail of the
 * chi-square distribution, and the seed is fixed, so the test is not flaky. */
static void check_draws(uint64_t n, double s, uint64_t seed)
{
    enum { DRAWS = 200000 };
    struct bench_zipf z;
    assert_int_equal(bench_zipf_init(&z, n, s), 0);
    uint64_t *count = calloc(n, sizeof *count);
    assert_non_null(count);
    uint64_t rng = seed;
    for (int i = 0; i < DRAWS; i++) {
        uint64_t k = bench_zipf_draw(&z, &rng);
        assert_true(k < n);
        count[k]++;
    }
    double chi = 0;
    for (uint64_t k = 0; k < n; k++) {
        double e = bench_zipf_prob(&z, k) * DRAWS;
        chi += ((double)count[k] - e) * ((double)count[k] - e) / e;
    }
    double df = (double)n - 1;
    assert_true(chi < df + 6 * sqrt(2 * df));
    /* the most popular key is drawn as often as the law says, within 2 % */
    double e0 = bench_zipf_prob(&z, 0) * DRAWS;
    assert_true(fabs((double)count[0] - e0) < 0.02 * e0 + 50);
    free(count);
    bench_zipf_dispose(&z);
}

static void test_zipf__draws_follow_the_law(void **state)
{
    (void)state;
    check_draws(10, 0.0, 1); /* uniform */
    check_draws(50, 0.9, 2);
    check_draws(200, 1.2, 3);
}

/* ---- distributions --------------------------------------------------------------------------- */

static void test_latency__fixed_range_and_lognormal(void **state)
{
    (void)state;
    struct bench_dist d;
    struct cp_err err = {0};
    uint64_t rng = 9;
    assert_int_equal(bench_latency_parse("20ms", &d, &err), 0);
    assert_int_equal(d.kind, BENCH_DIST_FIXED);
    assert_true(bench_dist_draw(&d, &rng) == 20);
    assert_int_equal(bench_latency_parse("0", &d, &err), 0);
    assert_true(bench_dist_draw(&d, &rng) == 0);

    assert_int_equal(bench_latency_parse("5ms..50ms", &d, &err), 0);
    assert_int_equal(d.kind, BENCH_DIST_UNIFORM);
    double lo = 1e9, hi = 0;
    for (int i = 0; i < 10000; i++) {
        double v = bench_dist_draw(&d, &rng);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    assert_true(lo >= 5 && lo < 6 && hi <= 50 && hi > 49);

    enum { N = 20001 };
    assert_int_equal(bench_latency_parse("lognormal:20ms:200ms", &d, &err), 0);
    int64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < N; i++)
        v[i] = (int64_t)(bench_dist_draw(&d, &rng) * 1000); /* us */
    qsort(v, N, sizeof *v, cmp_i64);
    double p50 = (double)bench_percentile(v, N, 50) / 1000,
           p99 = (double)bench_percentile(v, N, 99) / 1000;
    assert_true(p50 > 19 && p50 < 21);
    assert_true(p99 > 180 && p99 < 220);
    free(v);
}

static void test_latency__bad_forms_are_named(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "abc", "50ms..5ms", "lognormal:20ms", "lognormal:0:1s", "lognormal:200ms:20ms", "2m"};
    struct bench_dist d;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cp_err err = {0};
        assert_int_equal(bench_latency_parse(bad[i], &d, &err), CP_EINVAL);
        assert_non_null(strstr(err.msg, bad[i]));
    }
}

static void test_size__single_and_range(void **state)
{
    (void)state;
    uint64_t lo, hi;
    struct cp_err err = {0};
    assert_int_equal(bench_size_parse("4KiB", &lo, &hi, &err), 0);
    assert_true(lo == 4096 && hi == 4096);
    assert_int_equal(bench_size_parse("100..1MiB", &lo, &hi, &err), 0);
    assert_true(lo == 100 && hi == 1048576);
    assert_int_equal(bench_size_parse("64KiB..1KiB", &lo, &hi, &err), CP_EINVAL);
    assert_int_equal(bench_size_parse("x", &lo, &hi, &err), CP_EINVAL);
    assert_int_equal(bench_size_parse("1GiB", &lo, &hi, &err), CP_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percentile__nearest_rank_of_1_to_100),
        cmocka_unit_test(test_percentile__small_and_empty),
        cmocka_unit_test(test_percentile__matches_definition_on_random_samples),
        cmocka_unit_test(test_hist__bounds_are_inclusive_above),
        cmocka_unit_test(test_zipf__refuses_bad_parameters),
        cmocka_unit_test(test_zipf__one_key_always_drawn),
        cmocka_unit_test(test_zipf__probabilities_follow_the_law),
        cmocka_unit_test(test_zipf__draws_follow_the_law),
        cmocka_unit_test(test_latency__fixed_range_and_lognormal),
        cmocka_unit_test(test_latency__bad_forms_are_named),
        cmocka_unit_test(test_size__single_and_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
