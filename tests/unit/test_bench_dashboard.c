/*
 * test_bench_dashboard.c - bench/dashboard.c: the refreshing dashboard as a trace (every user
 * refreshes every panel at its own phase, on time, for the whole window), and the placement of
 * the split preset's virtual clock, checked against a model of the plugin's stable-piece test.
 */
#include "bench_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MINUTE 60000LL
#define HOUR 3600000LL

static struct bench_trace *make(const struct bench_dashboard *d)
{
    struct bench_trace *t = NULL;
    struct cp_err err = {0};
    assert_int_equal(bench_dashboard_trace(d, &t, &err), 0);
    assert_non_null(t);
    return t;
}

/* ---- the trace ----------------------------------------------------------------------------- */

static void test_dashboard__every_user_refreshes_every_panel_on_time(void **state)
{
    (void)state;
    const struct bench_dashboard d = {7, 3, 30000, 1700000400000LL, 10 * MINUTE, 5};
    struct bench_trace *t = make(&d);
    size_t total = 0;
    for (uint32_t u = 0; u < d.users; u++) {
        char name[24];
        snprintf(name, sizeof name, "user%04u", u);
        int64_t prev = -1;
        size_t at_prev = 0, refreshes = 0;
        for (size_t i = 0; i < t->n; i++) {
            const struct bench_trace_rec *r = &t->recs[i];
            if (i)
                assert_true(r->ts_ms >= t->recs[i - 1].ts_ms); /* sorted by time */
            if (strcmp(r->user, name))
                continue;
            total++;
            assert_string_equal(r->role, "Viewer");
            assert_string_equal(r->method, "QUERY");
            if (r->ts_ms != prev) {
                /* a new refresh: the one before had all its panels, 30 s apart */
                if (prev >= 0) {
                    assert_int_equal(at_prev, d.panels);
                    assert_int_equal(r->ts_ms - prev, d.refresh_ms);
                } else {
                    assert_true(r->ts_ms >= d.start_ms && r->ts_ms < d.start_ms + d.refresh_ms);
                }
                prev = r->ts_ms;
                at_prev = 0;
                refreshes++;
            }
            char path[96];
            snprintf(path, sizeof path, "/q/panel%zu?from=${__from}&to=${__to}", at_prev);
            assert_string_equal(r->path, path); /* panels in order within a refresh */
            at_prev++;
        }
        assert_int_equal(at_prev, d.panels);
        /* refreshes run to the end of the window and not past it */
        assert_true(prev < d.start_ms + d.span_ms);
        assert_true(prev + d.refresh_ms >= d.start_ms + d.span_ms);
        assert_true(refreshes == 19 || refreshes == 20);
    }
    assert_int_equal(total, t->n);
    bench_trace_free(t);
}

static void test_dashboard__phases_follow_the_seed(void **state)
{
    (void)state;
    struct bench_dashboard d = {20, 2, 30000, 1700000400000LL, 5 * MINUTE, 9};
    struct bench_trace *a = make(&d), *b = make(&d);
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->recs[i].ts_ms, b->recs[i].ts_ms);
        assert_string_equal(a->recs[i].user, b->recs[i].user);
    }
    d.seed = 10;
    struct bench_trace *c = make(&d);
    int differ = a->n != c->n;
    for (size_t i = 0; !differ && i < a->n; i++)
        differ = a->recs[i].ts_ms != c->recs[i].ts_ms || strcmp(a->recs[i].user, c->recs[i].user);
    assert_true(differ);
    /* users do not refresh together: 20 users give (almost surely) 20 distinct first times */
    int64_t first[20];
    size_t nf = 0;
    for (size_t i = 0; i < a->n && nf < 20; i++) {
        int seen = 0;
        for (size_t k = 0; k < nf; k++)
            seen |= first[k] == a->recs[i].ts_ms;
        if (!seen && a->recs[i].ts_ms < d.start_ms + d.refresh_ms)
            first[nf++] = a->recs[i].ts_ms;
    }
    assert_true(nf >= 18);
    bench_trace_free(a);
    bench_trace_free(b);
    bench_trace_free(c);
}

static void test_dashboard__refuses_an_empty_dashboard(void **state)
{
    (void)state;
    struct bench_trace *t = (void *)1;
    struct cp_err err = {0};
    const struct bench_dashboard bad[] = {{0, 6, 30000, 0, MINUTE, 1},
                                          {5, 0, 30000, 0, MINUTE, 1},
                                          {5, 6, 0, 0, MINUTE, 1},
                                          {5, 6, 30000, 0, 0, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(bench_dashboard_trace(&bad[i], &t, &err), CP_EINVAL);
        assert_null(t);
    }
}

/* ---- the virtual clock of the split preset ------------------------------------------------------
 */

static void test_split_clock__starts_ten_minutes_past_an_hour_in_the_past(void **state)
{
    (void)state;
    uint64_t rng = 3;
    int64_t walls[200];
    walls[0] = 1700000000000LL / HOUR * HOUR; /* exactly on the hour */
    walls[1] = walls[0] - 1;                  /* a millisecond before */
    walls[2] = walls[0] + 10 * MINUTE;        /* when the window would start now */
    for (size_t i = 3; i < 200; i++)
        walls[i] = 1600000000000LL + (int64_t)(bench_rand(&rng) % (400000000000ull));
    for (size_t i = 0; i < 200; i++) {
        int64_t w = walls[i], start = bench_split_start(w);
        assert_int_equal(start % HOUR, 10 * MINUTE);
        assert_true(w - start >= 50 * MINUTE);
        assert_true(w - start < 110 * MINUTE);
        /* the whole 10-minute window is in the past */
        assert_true(start + 10 * MINUTE < w);
        int64_t after = bench_split_stable_after(w, start, 10 * MINUTE);
        /* the plugin's line between stable and recent is an hour boundary, 10 minutes before
         * the virtual start */
        assert_int_equal(w - after, start - 10 * MINUTE);
        assert_int_equal((w - after) % HOUR, 0);
    }
}

/* The design claim, as a model: the plugin calls a piece ending at P stable when
 * P <= wall - splitStableAfter (its wall clock having moved on by up to a minute since the
 * setting was computed); the dashboard would when P <= now - 10 min on its own clock. For every
 * virtual now in the 10-minute window and every piece end, the two agree for intervals of 15
 * minutes or more that divide the hour or are whole hours; with 10 minutes they do not. */
static int disagreements(int64_t interval, int64_t wall)
{
    int64_t start = bench_split_start(wall);
    int64_t after = bench_split_stable_after(wall, start, 10 * MINUTE);
    int n = 0;
    for (int64_t moved = 0; moved <= MINUTE; moved += 15000)
        for (int64_t now = start; now <= start + 10 * MINUTE; now += 10000) {
            int64_t first = (now - 7 * HOUR) / interval * interval;
            for (int64_t p = first; p <= now; p += interval)
                n += (p <= wall + moved - after) != (p <= now - 10 * MINUTE);
        }
    return n;
}

static void test_split_clock__stable_pieces_agree_with_the_virtual_clock(void **state)
{
    (void)state;
    const int64_t good[] = {15 * MINUTE, 20 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR};
    const int64_t walls[] = {1700000000000LL, 1700003599999LL, 1712345678901LL};
    for (size_t w = 0; w < 3; w++) {
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
            assert_int_equal(disagreements(good[i], walls[w]), 0);
        assert_true(disagreements(10 * MINUTE, walls[w]) > 0);
        assert_true(disagreements(5 * MINUTE, walls[w]) > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dashboard__every_user_refreshes_every_panel_on_time),
        cmocka_unit_test(test_dashboard__phases_follow_the_seed),
        cmocka_unit_test(test_dashboard__refuses_an_empty_dashboard),
        cmocka_unit_test(test_split_clock__starts_ten_minutes_past_an_hour_in_the_past),
        cmocka_unit_test(test_split_clock__stable_pieces_agree_with_the_virtual_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
