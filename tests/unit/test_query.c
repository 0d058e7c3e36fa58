/* test_query.c - query pieces of proxy/: selectors, RFC 3339 times, column inference and
 * frame shapes (frame.c), placeholders (query.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy_int.h"

/* ---- selectors ------------------------------------------------------------------------------- */

static void test_select__paths(void **state)
{
    (void)state;
    json_error_t je;
    json_t *doc = json_loads("{\"data\":{\"items\":[1,2]},\"items\":[{\"points\":[[1,2]]}],"
                             "\"a\":{\"b\":{\"c\":\"deep\"}}}",
                             0, &je);
    assert_non_null(doc);
    assert_ptr_equal(frame_select(doc, "$"), doc);
    assert_ptr_equal(frame_select(doc, ""), doc);
    assert_int_equal(json_array_size(frame_select(doc, "data.items")), 2);
    assert_int_equal(json_array_size(frame_select(doc, "$.data.items")), 2);
    json_t *pts = frame_select(doc, "items[0].points");
    assert_true(json_is_array(pts));
    assert_int_equal(json_integer_value(json_array_get(json_array_get(pts, 0), 1)), 2);
    assert_string_equal(json_string_value(frame_select(doc, "a.b.c")), "deep");
    assert_null(frame_select(doc, "nothere"));
    assert_null(frame_select(doc, "data.items[5]"));
    assert_null(frame_select(doc, "data.items[-1]"));
    assert_null(frame_select(doc, "data[0]"));     /* an object is not indexable */
    assert_null(frame_select(doc, "items.points")); /* an array has no keys */
    assert_null(frame_select(doc, "items[x]"));
    json_decref(doc);
}

/* ---- times ------------------------------------------------------------------------------------ */

static void test_rfc3339__forms(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ns;
    } ok[] = {
        {"2023-11-14T22:13:20Z", 1700000000000000000LL},
        {"2023-11-14T22:13:20.5Z", 1700000000500000000LL},
        {"2023-11-14T22:13:20.123456789Z", 1700000000123456789LL},
        {"2023-11-14T22:13:20.1234567891Z", 1700000000123456789LL}, /* digits past ns dropped */
        {"2023-11-15T00:13:20+02:00", 1700000000000000000LL},
        {"2023-11-14T20:13:20-02:00", 1700000000000000000LL},
        {"2023-11-14 22:13:20Z", 1700000000000000000LL},
        {"2023-11-14t22:13:20z", 1700000000000000000LL},
        {"1970-01-01", 0},
        {"2023-11-14", 1699920000000000000LL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ns = -1;
        assert_int_equal(frame_parse_rfc3339(ok[i].s, &ns), 0);
        assert_int_equal(ns, ok[i].ns);
    }
    static const char *const bad[] = {"",           "2023",          "2023-13-01",
                                      "2023-11-32", "2023-11-14T25:00:00Z",
                                      "2023-11-14T22:13Z", "2023-11-14T22:13:20.Z",
                                      "2023-11-14T22:13:20+2", "2023-11-14T22:13:20Zjunk",
                                      "14/11/2023", "1700000000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ns;
        assert_int_not_equal(frame_parse_rfc3339(bad[i], &ns), 0);
    }
}

/* ---- frames --------------------------------------------------------------------------------- */

static int frame_of(const char *doc_text, const char *model_text, struct frame *fr,
                    struct cp_err *err)
{
    json_error_t je;
    json_t *doc = json_loads(doc_text, JSON_DECODE_ANY, &je);
    json_t *model = json_loads(model_text, 0, &je);
    assert_non_null(doc);
    assert_non_null(model);
    int rc = frame_from_json(doc, model, "Q", "miss", fr, err);
    json_decref(doc);
    json_decref(model);
    return rc;
}

static const struct frame_field *field(const struct frame *fr, const char *name)
{
    for (size_t i = 0; i < fr->nfields; i++)
        if (!strcmp(fr->fields[i].name, name))
            return &fr->fields[i];
    fail_msg("no field %s", name);
    return NULL;
}

static void test_frame__inferred_types(void **state)
{
    (void)state;
    struct frame fr;
    struct cp_err err;
    assert_int_equal(frame_of("[{\"i\":1,\"f\":1.5,\"s\":\"x\",\"b\":true,\"t\":\"2023-11-14T22:13:20Z\","
                              "\"o\":{\"k\":1},\"mix\":1},"
                              "{\"i\":-2,\"f\":2,\"s\":null,\"b\":false,\"t\":\"2023-11-14T22:13:21Z\","
                              "\"o\":[1],\"mix\":\"a\",\"late\":7}]",
                              "{}", &fr, &err),
                     0);
    assert_int_equal(fr.nrows, 2);
    assert_string_equal(fr.name, "Q");
    assert_string_equal(fr.ref_id, "Q");
    assert_non_null(strstr(fr.meta_json, "\"type\":\"table\""));
    assert_non_null(strstr(fr.meta_json, "\"cache\":\"miss\""));
    assert_int_equal(field(&fr, "i")->type, FRAME_INT64);
    assert_int_equal(field(&fr, "i")->i64[1], -2);
    assert_int_equal(field(&fr, "f")->type, FRAME_FLOAT64);
    assert_true(field(&fr, "f")->f64[0] == 1.5);
    assert_int_equal(field(&fr, "s")->type, FRAME_STRING);
    assert_non_null(field(&fr, "s")->valid);
    assert_int_equal(field(&fr, "s")->valid[1], 0);
    assert_int_equal(field(&fr, "b")->type, FRAME_BOOL);
    assert_int_equal(field(&fr, "b")->b[0], 1);
    assert_int_equal(field(&fr, "t")->type, FRAME_TIME);
    assert_int_equal(field(&fr, "t")->i64[1], 1700000001000000000LL);
    assert_int_equal(field(&fr, "o")->type, FRAME_STRING); /* objects as JSON text */
    assert_string_equal(field(&fr, "o")->s[0], "{\"k\":1}");
    assert_int_equal(field(&fr, "mix")->type, FRAME_STRING);
    assert_string_equal(field(&fr, "mix")->s[0], "1");
    /* a key only some rows have: null where missing */
    assert_int_equal(field(&fr, "late")->valid[0], 0);
    assert_int_equal(field(&fr, "late")->i64[1], 7);
    frame_dispose(&fr);
}

static void test_frame__numeric_time_columns_by_name(void **state)
{
    (void)state;
    struct frame fr;
    struct cp_err err;
    /* numbers in a column named like a time: seconds below 1e11, milliseconds above */
    assert_int_equal(frame_of("[{\"time\":1700000000,\"ts\":1700000000123,\"n\":1}]", "{}", &fr,
                              &err),
                     0);
    assert_int_equal(field(&fr, "time")->type, FRAME_TIME);
    assert_int_equal(field(&fr, "time")->i64[0], 1700000000000000000LL);
    assert_int_equal(field(&fr, "ts")->i64[0], 1700000000123000000LL);
    assert_int_equal(field(&fr, "n")->type, FRAME_INT64);
    frame_dispose(&fr);
}

static void test_frame__timeseries_sorted_time_first(void **state)
{
    (void)state;
    struct frame fr;
    struct cp_err err;
    assert_int_equal(frame_of("{\"rows\":[{\"v\":3,\"host\":\"a\",\"ts\":30},{\"v\":1,\"host\":\"b\","
                              "\"ts\":10},{\"v\":2,\"host\":\"c\",\"ts\":20}]}",
                              "{\"root\":\"rows\",\"format\":\"timeseries\","
                              "\"columns\":[{\"selector\":\"v\"},{\"selector\":\"host\"},"
                              "{\"selector\":\"ts\",\"name\":\"Time\",\"timeFormat\":\"unixs\"}]}",
                              &fr, &err),
                     0);
    assert_string_equal(fr.fields[0].name, "Time");
    assert_int_equal(fr.fields[0].nullable, 0);
    assert_int_equal(fr.fields[0].i64[0], 10000000000LL);
    assert_int_equal(fr.fields[0].i64[2], 30000000000LL);
    assert_string_equal(fr.fields[1].name, "v");
    assert_int_equal(fr.fields[1].i64[0], 1);
    assert_int_equal(fr.fields[1].i64[2], 3);
    assert_string_equal(fr.fields[2].s[0], "b"); /* every column moved with its row */
    assert_non_null(strstr(fr.meta_json, "timeseries-long")); /* a string column: long */
    frame_dispose(&fr);

    assert_int_equal(frame_of("[{\"t\":\"2023-11-14T22:13:21Z\",\"v\":2},"
                              "{\"t\":\"2023-11-14T22:13:20Z\",\"v\":1}]",
                              "{\"format\":\"timeseries\"}", &fr, &err),
                     0);
    assert_non_null(strstr(fr.meta_json, "timeseries-wide"));
    assert_int_equal(fr.fields[1].i64[0], 1);
    frame_dispose(&fr);
}

static void test_frame__array_rows_and_scalars(void **state)
{
    (void)state;
    struct frame fr;
    struct cp_err err;
    assert_int_equal(frame_of("[[1,\"a\"],[2,\"b\",true]]", "{}", &fr, &err), 0);
    assert_int_equal(fr.nfields, 3);
    assert_string_equal(fr.fields[0].name, "0");
    assert_int_equal(fr.fields[0].i64[1], 2);
    assert_string_equal(fr.fields[1].s[1], "b");
    assert_int_equal(fr.fields[2].valid[0], 0);
    frame_dispose(&fr);
    assert_int_equal(frame_of("[1.5,2.5]", "{}", &fr, &err), 0);
    assert_int_equal(fr.nfields, 1);
    assert_string_equal(fr.fields[0].name, "value");
    assert_true(fr.fields[0].f64[1] == 2.5);
    frame_dispose(&fr);
    /* a single object is one row */
    assert_int_equal(frame_of("{\"a\":1}", "{}", &fr, &err), 0);
    assert_int_equal(fr.nrows, 1);
    frame_dispose(&fr);
}

static void test_frame__errors_name_the_problem(void **state)
{
    (void)state;
    static const struct {
        const char *doc, *model, *words;
    } cases[] = {
        {"[{\"a\":1}]", "{\"root\":\"nothere\"}", "selects nothing"},
        {"{\"a\":1}", "{\"root\":\"a\"}", "list of rows"},
        {"[{\"a\":1}]", "{\"root\":5}", "root must be"},
        {"[{\"a\":1}]", "{\"format\":\"pie\"}", "format"},
        {"[{\"a\":1}]", "{\"format\":\"timeseries\"}", "time column"},
        {"[{\"a\":1}]", "{\"columns\":{}}", "columns must be a list"},
        {"[{\"a\":1}]", "{\"columns\":[{\"name\":\"x\"}]}", "selector"},
        {"[{\"a\":1}]", "{\"columns\":[{\"selector\":\"a\",\"type\":\"date\"}]}", "type must be"},
        {"[{\"a\":1}]", "{\"columns\":[{\"selector\":\"a\",\"timeFormat\":\"ns\"}]}",
         "timeFormat"},
        {"[{\"t\":\"x\"}]",
         "{\"format\":\"timeseries\",\"columns\":[{\"selector\":\"t\",\"type\":\"time\"}]}",
         "no valid time"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct frame fr;
        struct cp_err err = {0};
        assert_int_equal(frame_of(cases[i].doc, cases[i].model, &fr, &err), CP_EINVAL);
        if (!strstr(err.msg, cases[i].words))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, cases[i].words);
    }
}

/* A model cannot make the frame as large as it likes: many columns over many rows of a small
 * answer are refused before anything is built. */
static void test_frame__size_bounded_before_it_is_built(void **state)
{
    (void)state;
    struct cp_buf doc = {0}, model = {0};
    assert_int_equal(cp_buf_addstr(&doc, "["), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(cp_buf_addstr(&doc, i ? ",{\"a\":1}" : "{\"a\":1}"), 0);
    assert_int_equal(cp_buf_addstr(&doc, "]"), 0);
    assert_int_equal(cp_buf_addstr(&model, "{\"columns\":["), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(cp_buf_addf(&model, "%s{\"selector\":\"a\",\"name\":\"c%d\"}",
                                     i ? "," : "", i), 0);
    assert_int_equal(cp_buf_addstr(&model, "]}"), 0);
    struct frame fr;
    struct cp_err err = {0};
    assert_int_equal(frame_of(doc.p, model.p, &fr, &err), CP_EINVAL);
    assert_non_null(strstr(err.msg, "cells"));
    /* the same rows with 40 columns (4 million cells) are built */
    model.len = 0;
    assert_int_equal(cp_buf_addstr(&model, "{\"columns\":["), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(cp_buf_addf(&model, "%s{\"selector\":\"a\",\"name\":\"c%d\"}",
                                     i ? "," : "", i), 0);
    assert_int_equal(cp_buf_addstr(&model, "]}"), 0);
    assert_int_equal(frame_of(doc.p, model.p, &fr, &err), 0);
    assert_int_equal(fr.nrows, 100000);
    assert_int_equal(fr.nfields, 40);
    frame_dispose(&fr);
    /* and a list of more than 256 columns is refused as such */
    model.len = 0;
    assert_int_equal(cp_buf_addstr(&model, "{\"columns\":["), 0);
    for (int i = 0; i < 257; i++)
        assert_int_equal(cp_buf_addf(&model, "%s{\"selector\":\"a\"}", i ? "," : ""), 0);
    assert_int_equal(cp_buf_addstr(&model, "]}"), 0);
    assert_int_equal(frame_of("[{\"a\":1}]", model.p, &fr, &err), CP_EINVAL);
    assert_non_null(strstr(err.msg, "at most 256"));
    cp_buf_free(&doc);
    cp_buf_free(&model);
}

static void test_frame__set_cache(void **state)
{
    (void)state;
    struct frame fr;
    struct cp_err err;
    assert_int_equal(frame_of("[{\"a\":1}]", "{}", &fr, &err), 0);
    assert_int_equal(frame_set_cache(&fr, "hit"), 0);
    assert_non_null(strstr(fr.meta_json, "\"cache\":\"hit\""));
    assert_null(strstr(fr.meta_json, "miss"));
    assert_non_null(strstr(fr.meta_json, "\"type\":\"table\""));
    frame_dispose(&fr);
}

/* ---- placeholders ------------------------------------------------------------------------------ */

static void test_substitute__every_placeholder(void **state)
{
    (void)state;
    struct proxy__range rg = {1700000000123, 1700003600000, 15000, 321};
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"${__from}", "1700000000123"},
        {"${__to}", "1700003600000"},
        {"${__from:s}", "1700000000"},
        {"${__to:s}", "1700003600"},
        {"${__from:iso}", "2023-11-14T22:13:20.123Z"},
        {"${__to:iso}", "2023-11-14T23:13:20.000Z"},
        {"${__interval_ms}", "15000"},
        {"${__maxDataPoints}", "321"},
        {"$__from-$__to", "1700000000123-1700003600000"},
        {"$__interval_ms/$__maxDataPoints", "15000/321"},
        {"/q?start=${__from:s}&end=${__to:s}", "/q?start=1700000000&end=1700003600"},
        {"no placeholders", "no placeholders"},
        {"$5 and ${other} and $__fromage", "$5 and ${other} and $__fromage"},
        {"${__from", "${__from"},
        {"$", "$"},
        {"", ""},
        {"${__from:iso}${__from:iso}", "2023-11-14T22:13:20.123Z2023-11-14T22:13:20.123Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = proxy__substitute(cases[i].in, &rg);
        assert_non_null(got);
        if (strcmp(got, cases[i].out))
            fail_msg("case %zu: \"%s\" gave \"%s\", want \"%s\"", i, cases[i].in, got,
                     cases[i].out);
        free(got);
    }
    struct proxy__range before = {-1500, 0, 0, 0};
    char *got = proxy__substitute("${__from:iso}", &before);
    assert_string_equal(got, "1969-12-31T23:59:58.500Z");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select__paths),
        cmocka_unit_test(test_rfc3339__forms),
        cmocka_unit_test(test_frame__inferred_types),
        cmocka_unit_test(test_frame__numeric_time_columns_by_name),
        cmocka_unit_test(test_frame__timeseries_sorted_time_first),
        cmocka_unit_test(test_frame__array_rows_and_scalars),
        cmocka_unit_test(test_frame__errors_name_the_problem),
        cmocka_unit_test(test_frame__size_bounded_before_it_is_built),
        cmocka_unit_test(test_frame__set_cache),
        cmocka_unit_test(test_substitute__every_placeholder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
