/*
 * test_bench_upstream_sim.c - the pure parts of bench/upstream_sim.c's answers: a time-filtering
 * API's rows (one per step of [from, to), adjacent ranges concatenating to their union, values
 * fixed by path and time), content versions and their validators (ETag matching, HTTP dates).
 */
#include "bench_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MINUTE 60000LL

static json_t *rows(const char *path, int64_t from, int64_t to, int64_t step)
{
    size_t len = 0;
    char *text = bench_sim_time_rows(path, from, to, step, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    json_error_t je;
    json_t *a = json_loadb(text, len, 0, &je);
    free(text);
    assert_true(json_is_array(a));
    return a;
}

static int64_t time_of(json_t *a, size_t i)
{
    return json_integer_value(json_object_get(json_array_get(a, i), "time"));
}

/* ---- time rows ------------------------------------------------------------------------------- */

static void test_time_rows__one_per_step_inside_the_range(void **state)
{
    (void)state;
    uint64_t rng = 11;
    for (int k = 0; k < 200; k++) {
        int64_t step = (k % 3 == 0) ? MINUTE : (int64_t)(1 + bench_rand(&rng) % 90000);
        int64_t from = 1700000000000LL + (int64_t)(bench_rand(&rng) % 100000000);
        if (k % 10 == 0)
            from = from / step * step; /* on a step */
        int64_t to = from + (int64_t)(bench_rand(&rng) % (200 * (uint64_t)step));
        json_t *a = rows("/q/x", from, to, step);
        /* the multiples of step in [from, to) */
        int64_t first = (from + step - 1) / step * step;
        size_t want = to > first ? (size_t)((to - first + step - 1) / step) : 0;
        assert_int_equal(json_array_size(a), want);
        for (size_t i = 0; i < want; i++) {
            json_t *r = json_array_get(a, i);
            assert_int_equal(json_object_size(r), 3);
            assert_true(json_is_real(json_object_get(r, "value")));
            assert_true(json_is_integer(json_object_get(r, "count")));
            assert_int_equal(time_of(a, i), first + (int64_t)i * step);
            assert_true(time_of(a, i) >= from && time_of(a, i) < to);
        }
        json_decref(a);
    }
}

static void test_time_rows__adjacent_ranges_join_to_their_union(void **state)
{
    (void)state;
    uint64_t rng = 5;
    for (int k = 0; k < 100; k++) {
        int64_t a = 1700000000000LL + (int64_t)(bench_rand(&rng) % 10000000);
        int64_t b = a + (int64_t)(bench_rand(&rng) % (3 * 3600000ull));
        int64_t c = b + (int64_t)(bench_rand(&rng) % (3 * 3600000ull));
        json_t *left = rows("/q/panel1", a, b, MINUTE), *right = rows("/q/panel1", b, c, MINUTE);
        json_t *all = rows("/q/panel1", a, c, MINUTE);
        json_array_extend(left, right);
        assert_true(json_equal(left, all)); /* the same points, the same values */
        json_decref(left);
        json_decref(right);
        json_decref(all);
    }
}

static void test_time_rows__values_belong_to_the_path(void **state)
{
    (void)state;
    const int64_t from = 1700000000000LL / MINUTE * MINUTE;
    json_t *a = rows("/q/panel0", from, from + 60 * MINUTE, MINUTE);
    json_t *b = rows("/q/panel1", from, from + 60 * MINUTE, MINUTE);
    assert_int_equal(json_array_size(a), 60);
    assert_false(json_equal(a, b));
    size_t same = 0;
    for (size_t i = 0; i < 60; i++)
        same += json_equal(json_object_get(json_array_get(a, i), "value"),
                           json_object_get(json_array_get(b, i), "value"));
    assert_true(same < 5);
    json_decref(a);
    json_decref(b);
    /* empty and reversed ranges, and times before 1970 */
    json_t *e = rows("/q/x", from, from, MINUTE), *r = rows("/q/x", from + MINUTE, from, MINUTE);
    assert_int_equal(json_array_size(e), 0);
    assert_int_equal(json_array_size(r), 0);
    json_t *old = rows("/q/x", -90001, 1, MINUTE);
    assert_int_equal(json_array_size(old), 2);
    assert_int_equal(time_of(old, 0), -MINUTE);
    assert_int_equal(time_of(old, 1), 0);
    json_decref(e);
    json_decref(r);
    json_decref(old);
}

/* ---- versions and validators ----------------------------------------------------------------- */

static void test_version__changes_every_period_at_a_phase_per_path(void **state)
{
    (void)state;
    const int64_t period = 30000, now = 1700000012345LL;
    int64_t since;
    assert_int_equal(bench_sim_version(42, now, 0, &since), 0);
    assert_int_equal(since, BENCH_SIM_EPOCH_MS);
    uint64_t h = bench_sim_path_hash("/w/k1");
    int64_t v = bench_sim_version(h, now, period, &since);
    assert_true(since <= now && now < since + period);
    int64_t s2;
    /* the same version through its period, the next one at its end */
    assert_int_equal(bench_sim_version(h, since, period, &s2), v);
    assert_int_equal(s2, since);
    assert_int_equal(bench_sim_version(h, since + period - 1, period, &s2), v);
    assert_int_equal(bench_sim_version(h, since + period, period, &s2), v + 1);
    assert_int_equal(s2, since + period);
    assert_int_equal(bench_sim_version(h, since - 1, period, &s2), v - 1);
    /* paths change at different moments */
    int distinct = 0;
    int64_t first;
    bench_sim_version(bench_sim_path_hash("/w/k0"), now, period, &first);
    for (int k = 1; k < 20; k++) {
        char p[16];
        snprintf(p, sizeof p, "/w/k%d", k);
        bench_sim_version(bench_sim_path_hash(p), now, period, &s2);
        distinct += s2 != first;
    }
    assert_true(distinct >= 18);
}

static void test_http_date__round_trip_and_refusals(void **state)
{
    (void)state;
    char d[40];
    bench_http_date(784111777, d, sizeof d);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    int64_t s;
    assert_int_equal(bench_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &s), 0);
    assert_int_equal(s, 784111777);
    uint64_t rng = 2;
    for (int i = 0; i < 100; i++) {
        int64_t t = (int64_t)(bench_rand(&rng) % 4000000000ull);
        bench_http_date(t, d, sizeof d);
        assert_int_equal(bench_http_date_parse(d, &s), 0);
        assert_int_equal(s, t);
    }
    assert_int_equal(bench_http_date_parse("", &s), -1);
    assert_int_equal(bench_http_date_parse("yesterday", &s), -1);
    assert_int_equal(bench_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT junk", &s), -1);
    assert_int_equal(bench_http_date_parse(NULL, &s), -1);
}

static void test_etag__if_none_match_forms(void **state)
{
    (void)state;
    const char *tag = "\"00ab-3\"";
    assert_true(bench_etag_matches("\"00ab-3\"", tag));
    assert_true(bench_etag_matches("W/\"00ab-3\"", tag));
    assert_true(bench_etag_matches("\"x\", \"00ab-3\"", tag));
    assert_true(bench_etag_matches(" \"x\" ,W/\"00ab-3\" ", tag));
    assert_true(bench_etag_matches("*", tag));
    assert_false(bench_etag_matches("\"00ab-2\"", tag));
    assert_false(bench_etag_matches("\"00ab-3", tag));
    assert_false(bench_etag_matches("\"00ab-33\"", tag));
    assert_false(bench_etag_matches("\"x\", \"y\"", tag));
    assert_false(bench_etag_matches("", tag));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_rows__one_per_step_inside_the_range),
        cmocka_unit_test(test_time_rows__adjacent_ranges_join_to_their_union),
        cmocka_unit_test(test_time_rows__values_belong_to_the_path),
        cmocka_unit_test(test_version__changes_every_period_at_a_phase_per_path),
        cmocka_unit_test(test_http_date__round_trip_and_refusals),
        cmocka_unit_test(test_etag__if_none_match_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
