/*
 * test_bench_runreport.c - bench/runreport.c: runs of a group compared with their baseline
 * (upstream calls and bytes over the baseline's), and the text table that shows them.
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

static json_t *run(const char *group, const char *label, int calls, int bytes)
{
    return json_pack("{s:s,s:s,s:i,s:i,s:i,s:f,s:f,s:{s:i,s:i},s:{s:f,s:f}}", "group", group,
                     "label", label, "upstreamCalls", calls, "upstreamBytes", bytes, "requests",
                     100, "hitRatio", 0.5, "upstreamNotModifiedShare", 0.25, "pieces", "hit", 6,
                     "fetched", 1, "latencyMs", "p50", 1.0, "p99", 9.0);
}

static double ratio(json_t *r, const char *what)
{
    json_t *v = json_object_get(json_object_get(r, "compare"), what);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void test_compare__ratios_against_the_baseline_of_the_group(void **state)
{
    (void)state;
    json_t *doc = bench_doc_new("preset split");
    json_t *runs = json_object_get(doc, "runs");
    json_array_append_new(runs, run("other", "split off", 7, 7)); /* another group's namesake */
    json_array_append_new(runs, run("split", "split off", 200, 4000000));
    json_array_append_new(runs, run("split", "split 1h", 210, 200000));
    json_array_append_new(runs, run("split", "split 15m", 260, 100000));
    assert_int_equal(bench_doc_compare(doc, "split", "split off"), 0);
    assert_null(json_object_get(json_array_get(runs, 0), "compare"));
    json_t *base = json_array_get(runs, 1), *h = json_array_get(runs, 2),
           *q = json_array_get(runs, 3);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(h, "compare"), "baseline")), "split off");
    assert_true(ratio(base, "upstreamCallsRatio") == 1.0);
    assert_true(ratio(base, "upstreamBytesRatio") == 1.0);
    assert_true(ratio(h, "upstreamCallsRatio") == 1.05);
    assert_true(ratio(h, "upstreamBytesRatio") == 0.05);
    assert_true(ratio(q, "upstreamCallsRatio") == 1.3);
    assert_true(ratio(q, "upstreamBytesRatio") == 0.025);

    /* the text: the comparison table after the group's own */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    bench_runs_print(doc, f);
    fclose(f);
    assert_non_null(strstr(text, "split: upstream load against \"split off\""));
    assert_non_null(strstr(text, "0.025"));
    assert_null(strstr(text, "other: upstream load"));
    free(text);
    json_decref(doc);
}

static void test_compare__needs_its_baseline_and_a_nonzero_base(void **state)
{
    (void)state;
    json_t *doc = bench_doc_new("preset revalidation");
    json_t *runs = json_object_get(doc, "runs");
    json_array_append_new(runs, run("revalidation", "revalidate on", 50, 10));
    assert_int_equal(bench_doc_compare(doc, "revalidation", "revalidate off"), CP_EINVAL);
    assert_null(json_object_get(json_array_get(runs, 0), "compare"));
    json_array_append_new(runs, run("revalidation", "revalidate off", 0, 0));
    assert_int_equal(bench_doc_compare(doc, "revalidation", "revalidate off"), 0);
    json_t *cmp = json_object_get(json_array_get(runs, 0), "compare");
    assert_true(json_is_null(json_object_get(cmp, "upstreamCallsRatio")));
    assert_true(json_is_null(json_object_get(cmp, "upstreamBytesRatio")));
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare__ratios_against_the_baseline_of_the_group),
        cmocka_unit_test(test_compare__needs_its_baseline_and_a_nonzero_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
