/*
 * test_bench_trace.c - bench/trace.c: the CSV trace format `ts,user,role,method,path`, line by
 * line and as whole files (header, order, interning, errors naming the line, a last line cut
 * short by a recorder), and the writer read back.
 */
#include "bench_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int parse(const char *text, struct bench_trace_fields *f, char *why, size_t wsize)
{
    static char line[20000];
    size_t n = strlen(text);
    assert_true(n < sizeof line);
    memcpy(line, text, n + 1);
    why[0] = 0;
    return bench_trace_parse_line(line, n, f, why, wsize);
}

static struct bench_trace *read_text(const char *text, struct cp_err *err)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    struct bench_trace *t = NULL;
    int rc = bench_trace_read(f, "t.csv", &t, err);
    fclose(f);
    assert_true(rc == 0 ? t != NULL : t == NULL);
    return t;
}

static void test_trace__parses_a_record(void **state)
{
    (void)state;
    struct bench_trace_fields f;
    char why[200];
    assert_int_equal(parse("1700000000.25,u1f3a,viewer,get,/api/x?ids=1,2,3", &f, why, 200),
                     BENCH_LINE_RECORD);
    assert_true(f.ts_ms == 1700000000250LL);
    assert_string_equal(f.user, "u1f3a");
    assert_string_equal(f.role, "Viewer");
    assert_string_equal(f.method, "GET");
    assert_string_equal(f.path, "/api/x?ids=1,2,3"); /* the path may hold commas */

    assert_int_equal(parse(" 17 , , , QUERY , /q\r", &f, why, 200), BENCH_LINE_RECORD);
    assert_true(f.ts_ms == 17000);
    assert_string_equal(f.user, "");
    assert_string_equal(f.role, "");
    assert_string_equal(f.method, "QUERY");
    assert_string_equal(f.path, "/q");

    assert_int_equal(parse("1.1239,a,Admin,POST,/", &f, why, 200), BENCH_LINE_RECORD);
    assert_true(f.ts_ms == 1123); /* finer than a millisecond is dropped */
}

static void test_trace__header_and_blank_lines(void **state)
{
    (void)state;
    struct bench_trace_fields f;
    char why[200];
    assert_int_equal(parse("ts,user,role,method,path", &f, why, 200), BENCH_LINE_HEADER);
    assert_int_equal(parse("TS, User ,role,Method,PATH\r", &f, why, 200), BENCH_LINE_HEADER);
    assert_int_equal(parse("", &f, why, 200), BENCH_LINE_BLANK);
    assert_int_equal(parse("  \t \r", &f, why, 200), BENCH_LINE_BLANK);
}

static void test_trace__bad_lines_say_which_field(void **state)
{
    (void)state;
    static const struct {
        const char *line, *word;
    } bad[] = {
        {"1700000000,u,Viewer,GET", "fields"},
        {"17000", "fields"},
        {"abc,u,Viewer,GET,/x", "ts"},
        {"-1,u,Viewer,GET,/x", "ts"},
        {"1e9,u,Viewer,GET,/x", "ts"},
        {"1.,u,Viewer,GET,/x", "ts"},
        {",u,Viewer,GET,/x", "ts"},
        {"999999999999,u,Viewer,GET,/x", "ts"},
        {"1,u s,Viewer,GET,/x", "user"},
        {"1,u,Boss,GET,/x", "role"},
        {"1,u,Viewer,,/x", "method"},
        {"1,u,Viewer,G3T,/x", "method"},
        {"1,u,Viewer,GE T,/x", "method"},
        {"1,u,Viewer,GET,api/x", "path"},
        {"1,u,Viewer,GET,/a b", "path"},
        {"1,u,Viewer,GET,/a\x01", "path"},
        {"1,u,Viewer,GET,", "path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct bench_trace_fields f;
        char why[200];
        assert_int_equal(parse(bad[i].line, &f, why, sizeof why), CP_EINVAL);
        if (!strstr(why, bad[i].word))
            fail_msg("\"%s\": \"%s\" does not name %s", bad[i].line, why, bad[i].word);
    }
    /* a NUL byte inside the line */
    char line[] = "1,u,Viewer,GET,/a\0b";
    struct bench_trace_fields f;
    char why[200];
    assert_int_equal(bench_trace_parse_line(line, sizeof line - 1, &f, why, sizeof why), CP_EINVAL);
    assert_non_null(strstr(why, "NUL"));
    /* an overlong line */
    char *big = malloc(17001);
    assert_non_null(big);
    memcpy(big, "1,u,Viewer,GET,/", 16);
    memset(big + 16, 'a', 17000 - 16);
    big[17000] = 0;
    assert_int_equal(bench_trace_parse_line(big, 17000, &f, why, sizeof why), CP_EINVAL);
    assert_non_null(strstr(why, "longer"));
    free(big);
}

static void test_trace__reads_sorts_and_interns(void **state)
{
    (void)state;
    struct cp_err err = {0};
    struct bench_trace *t = read_text("ts,user,role,method,path\n"
                                      "20,a,Viewer,GET,/x\n"
                                      "\n"
                                      "10,b,Editor,GET,/y\r\n"
                                      "20,b,Viewer,GET,/x\n"
                                      "15,a,,POST,/x\n",
                                      &err);
    assert_non_null(t);
    assert_int_equal(t->n, 4);
    assert_int_equal(t->ignored, 0);
    assert_true(t->recs[0].ts_ms == 10000 && !strcmp(t->recs[0].path, "/y"));
    assert_true(t->recs[1].ts_ms == 15000 && !strcmp(t->recs[1].method, "POST"));
    /* equal times keep their line order */
    assert_true(t->recs[2].ts_ms == 20000 && !strcmp(t->recs[2].user, "a"));
    assert_true(t->recs[3].ts_ms == 20000 && !strcmp(t->recs[3].user, "b"));
    /* one copy of each string */
    assert_ptr_equal(t->recs[2].path, t->recs[3].path);
    assert_ptr_equal(t->recs[1].path, t->recs[2].path);
    assert_ptr_equal(t->recs[0].user, t->recs[3].user);
    bench_trace_free(t);
}

static void test_trace__error_names_file_and_line(void **state)
{
    (void)state;
    struct cp_err err = {0};
    assert_null(read_text("1,a,Viewer,GET,/x\n2,a,Viewer,GET,/x\n3,a,Viewer,GET x\n", &err));
    assert_int_equal(err.code, CP_EINVAL);
    assert_non_null(strstr(err.msg, "t.csv:3:"));

    memset(&err, 0, sizeof err);
    assert_null(read_text("1,a,Viewer,GET,/x\nts,user,role,method,path\n", &err));
    assert_non_null(strstr(err.msg, "t.csv:2:"));
    assert_non_null(strstr(err.msg, "header"));

    memset(&err, 0, sizeof err);
    assert_null(read_text("", &err));
    assert_non_null(strstr(err.msg, "no requests"));
    memset(&err, 0, sizeof err);
    assert_null(read_text("ts,user,role,method,path\n\n", &err));
    assert_non_null(strstr(err.msg, "no requests"));
}

static void test_trace__unfinished_last_line(void **state)
{
    (void)state;
    struct cp_err err = {0};
    /* cut short while being written: ignored and counted */
    struct bench_trace *t = read_text("1,a,Viewer,GET,/x\n2,a,Viewer,GET,/y\n17000000", &err);
    assert_non_null(t);
    assert_int_equal(t->n, 2);
    assert_int_equal(t->ignored, 1);
    bench_trace_free(t);
    /* complete except for the newline: kept */
    t = read_text("1,a,Viewer,GET,/x\n2,a,Viewer,GET,/y", &err);
    assert_non_null(t);
    assert_int_equal(t->n, 2);
    assert_int_equal(t->ignored, 0);
    bench_trace_free(t);
    /* a bad line that does end with a newline is an error, even the last one */
    assert_null(read_text("1,a,Viewer,GET,/x\n17000000\n", &err));
    assert_non_null(strstr(err.msg, "t.csv:2:"));
}

static void test_trace__writer_round_trip(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    bench_trace_write_header(f);
    bench_trace_write(f, 1700000000000LL, "u1", "Viewer", "GET", "/a?x=1,2");
    bench_trace_write(f, 1700000000007LL, "", "", "QUERY", "/q/k1?from=1&to=2");
    bench_trace_write(f, 1700000001250LL, "u2", "Admin", "POST", "/b");
    fclose(f);
    assert_non_null(strstr(buf, "1700000000.007,,,QUERY,/q/k1?from=1&to=2\n"));
    struct cp_err err = {0};
    struct bench_trace *t = read_text(buf, &err);
    assert_non_null(t);
    assert_int_equal(t->n, 3);
    assert_true(t->recs[0].ts_ms == 1700000000000LL && !strcmp(t->recs[0].path, "/a?x=1,2"));
    assert_true(t->recs[1].ts_ms == 1700000000007LL && !strcmp(t->recs[1].user, ""));
    assert_true(t->recs[2].ts_ms == 1700000001250LL && !strcmp(t->recs[2].role, "Admin"));
    bench_trace_free(t);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace__parses_a_record),
        cmocka_unit_test(test_trace__header_and_blank_lines),
        cmocka_unit_test(test_trace__bad_lines_say_which_field),
        cmocka_unit_test(test_trace__reads_sorts_and_interns),
        cmocka_unit_test(test_trace__error_names_file_and_line),
        cmocka_unit_test(test_trace__unfinished_last_line),
        cmocka_unit_test(test_trace__writer_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
