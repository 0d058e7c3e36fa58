/*
 * test_frame_blob.c - the compact binary form of frames (what split queries cache per piece)
 * and the row operations that join pieces: append, keep a time range, sort by time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

static struct frame frame_of(const char *doc_text, const char *model_text)
{
    json_error_t je;
    json_t *doc = json_loads(doc_text, JSON_DECODE_ANY, &je);
    json_t *model = json_loads(model_text, 0, &je);
    assert_non_null(doc);
    assert_non_null(model);
    struct frame fr;
    struct cp_err err;
    int rc = frame_from_json(doc, model, "A", "miss", &fr, &err);
    if (rc)
        fail_msg("frame_from_json: %s", err.msg);
    json_decref(doc);
    json_decref(model);
    return fr;
}

static void arrow_of(const struct frame *f, struct cp_buf *b)
{
    memset(b, 0, sizeof(struct cp_buf));
    assert_int_equal(frame_arrow_encode(f, b), 0);
}

/* Every kind of column, nulls, labels and config survive encode/decode: the decoded frame
 * encodes to the same Arrow file and to the same blob. */
static void test_blob__round_trip(void **state)
{
    (void)state;
    struct frame f = frame_of(
        "[{\"t\":\"2023-11-14T22:13:20Z\",\"i\":1,\"f\":1.5,\"s\":\"x\",\"b\":true},"
        "{\"t\":\"2023-11-14T22:13:21Z\",\"i\":-7,\"f\":-0.25,\"s\":null,\"b\":false,\"e\":3}]",
        "{}");
    f.fields[1].labels_json = strdup("{\"host\":\"a\"}");
    f.fields[2].config_json = strdup("{\"unit\":\"s\"}");
    struct cp_buf blob, again, a1, a2;
    memset(&blob, 0, sizeof(struct cp_buf));
    memset(&again, 0, sizeof(struct cp_buf));
    assert_int_equal(frame_blob_encode(&f, &blob), 0);
    struct frame g;
    assert_int_equal(frame_blob_decode(blob.p, blob.len, &g), 0);
    assert_int_equal(g.nrows, 2);
    assert_int_equal(g.nfields, f.nfields);
    assert_string_equal(g.fields[1].labels_json, "{\"host\":\"a\"}");
    assert_string_equal(g.fields[3].s[0], "x");
    assert_null(g.fields[3].s[1]);
    assert_true(g.fields[2].f64[1] == -0.25);
    assert_int_equal(frame_blob_encode(&g, &again), 0);
    assert_int_equal(again.len, blob.len);
    assert_memory_equal(again.p, blob.p, blob.len);
    arrow_of(&f, &a1);
    arrow_of(&g, &a2);
    assert_int_equal(a1.len, a2.len);
    assert_memory_equal(a1.p, a2.p, a1.len);
    cp_buf_free(&blob);
    cp_buf_free(&again);
    cp_buf_free(&a1);
    cp_buf_free(&a2);
    frame_dispose(&f);
    frame_dispose(&g);
}

/* Every strict prefix, a trailing byte and a flipped magic are refused, never read past. */
static void test_blob__truncated_and_corrupt(void **state)
{
    (void)state;
    struct frame f = frame_of("[{\"time\":1700000000,\"s\":\"abc\",\"v\":2.5},{\"time\":1700000001,\"s\":null,"
                              "\"v\":3}]",
                              "{\"format\":\"timeseries\"}");
    struct cp_buf blob;
    memset(&blob, 0, sizeof(struct cp_buf));
    assert_int_equal(frame_blob_encode(&f, &blob), 0);
    struct frame g;
    for (size_t n = 0; n < blob.len; n++) {
        unsigned char *copy = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, blob.p, n);
        assert_int_equal(frame_blob_decode(copy, n, &g), CP_EINVAL);
        free(copy);
    }
    unsigned char *longer = malloc(blob.len + 1);
    memcpy(longer, blob.p, blob.len);
    longer[blob.len] = 0;
    assert_int_equal(frame_blob_decode(longer, blob.len + 1, &g), CP_EINVAL);
    longer[0] = 'X';
    assert_int_equal(frame_blob_decode(longer, blob.len, &g), CP_EINVAL);
    /* a row count far above what the bytes can hold */
    memcpy(longer, blob.p, blob.len);
    longer[12] = 0x7f;
    assert_int_equal(frame_blob_decode(longer, blob.len, &g), CP_EINVAL);
    free(longer);
    cp_buf_free(&blob);
    frame_dispose(&f);
}

static void test_blob__empty_frame(void **state)
{
    (void)state;
    struct frame f = frame_of("[]", "{}");
    struct cp_buf blob;
    memset(&blob, 0, sizeof(struct cp_buf));
    assert_int_equal(frame_blob_encode(&f, &blob), 0);
    struct frame g;
    assert_int_equal(frame_blob_decode(blob.p, blob.len, &g), 0);
    assert_int_equal(g.nrows, 0);
    assert_string_equal(g.ref_id, "A");
    cp_buf_free(&blob);
    frame_dispose(&f);
    frame_dispose(&g);
}

/* Pieces of one query joined: rows follow in order, a column only one piece has is null in the
 * others, integers meeting floats become floats, the time range filter is half-open. */
static void test_append__pieces(void **state)
{
    (void)state;
    struct frame a = frame_of("[{\"time\":100,\"v\":1,\"host\":\"a\"},{\"time\":200,\"v\":2,\"host\":\"b\"}]",
                              "{}");
    struct frame b = frame_of("[{\"time\":300,\"v\":2.5,\"extra\":true}]", "{}");
    const char *bad = "x";
    assert_int_equal(frame_append(&a, &b, &bad), 0);
    assert_null(bad);
    assert_int_equal(a.nrows, 3);
    assert_int_equal(a.nfields, 4);
    assert_int_equal(a.fields[1].type, FRAME_FLOAT64);
    assert_true(a.fields[1].f64[0] == 1.0 && a.fields[1].f64[2] == 2.5);
    assert_string_equal(a.fields[2].name, "host");
    assert_int_equal(a.fields[2].valid[2], 0);
    assert_null(a.fields[2].s[2]);
    assert_string_equal(a.fields[3].name, "extra");
    assert_int_equal(a.fields[3].valid[0], 0);
    assert_int_equal(a.fields[3].valid[2], 1);
    assert_int_equal(a.fields[3].b[2], 1);
    for (size_t i = 0; i < a.nfields; i++)
        assert_int_equal(a.fields[i].n, 3);
    assert_int_equal(a.fields[0].i64[2], 300000000000LL);

    assert_int_equal(frame_keep_time(&a, 200000000000LL, 300000000000LL), 0);
    assert_int_equal(a.nrows, 1); /* [200 s, 300 s): the row at 300 s is out */
    assert_string_equal(a.fields[2].s[0], "b");
    assert_true(a.fields[1].f64[0] == 2.0);

    /* a column that is text here and a number there: refused, named, dst unchanged */
    struct frame c = frame_of("[{\"time\":400,\"v\":\"high\"}]", "{}");
    assert_int_equal(frame_append(&a, &c, &bad), CP_EINVAL);
    assert_string_equal(bad, "v");
    assert_int_equal(a.nrows, 1);
    assert_int_equal(a.fields[1].n, 1);
    frame_dispose(&a);
    frame_dispose(&b);
    frame_dispose(&c);
}

static void test_sort__stable_by_time(void **state)
{
    (void)state;
    struct frame f = frame_of("[{\"k\":\"x\",\"time\":3},{\"k\":\"y\",\"time\":1},{\"k\":\"z\",\"time\":3},"
                              "{\"k\":\"w\",\"time\":2}]",
                              "{}");
    assert_int_equal(frame_time_field(&f), 1);
    assert_int_equal(frame_sort_time(&f), 0);
    const char *want[] = {"y", "w", "x", "z"};
    for (size_t r = 0; r < 4; r++)
        assert_string_equal(f.fields[0].s[r], want[r]);
    frame_dispose(&f);
    /* no time field: keep_time refuses a frame with rows, sort leaves it alone */
    struct frame g = frame_of("[{\"k\":1}]", "{}");
    assert_int_equal(frame_time_field(&g), -1);
    assert_int_equal(frame_keep_time(&g, 0, 1), CP_EINVAL);
    assert_int_equal(frame_sort_time(&g), 0);
    frame_dispose(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blob__round_trip),
        cmocka_unit_test(test_blob__truncated_and_corrupt),
        cmocka_unit_test(test_blob__empty_frame),
        cmocka_unit_test(test_append__pieces),
        cmocka_unit_test(test_sort__stable_by_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
