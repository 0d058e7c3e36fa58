/* test_arrow.c - the Arrow IPC file writer (proxy/arrow.c) and the frame JSON form
 * (proxy/framejson.c). The checks read the produced bytes with a small flatbuffer reader of
 * their own and assert the facts of PROTOCOL.md section 4.
 *
 * With "--fixtures DIR" the program instead writes every fixture frame as DIR/<name>.arrow, the
 * expected decoded content as DIR/<name>.json and the frame's JSON form as
 * DIR/<name>.frame.json, for tests/node/decode_frames.mjs to check with apache-arrow. */
#include "proxy_int.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

/* ---- building frames (everything malloc'd: frame_dispose frees it) ----------------- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static void frame_new(struct frame *f, const char *name, const char *ref_id,
                      size_t nfields, size_t nrows)
{
    memset(f, 0, sizeof *f);
    f->name = xstrdup(name);
    f->ref_id = xstrdup(ref_id);
    f->nfields = nfields;
    f->nrows = nrows;
    f->fields = xcalloc(nfields, sizeof *f->fields);
}

static struct frame_field *field_new(struct frame *f, size_t i, const char *name,
                                      enum frame_type t, int nullable)
{
    struct frame_field *fd = &f->fields[i];
    size_t n = f->nrows;
    fd->name = xstrdup(name);
    fd->type = t;
    fd->nullable = nullable;
    fd->n = n;
    switch (t) {
    case FRAME_TIME:
    case FRAME_INT64:
        fd->i64 = xcalloc(n, sizeof *fd->i64);
        break;
    case FRAME_FLOAT64:
        fd->f64 = xcalloc(n, sizeof *fd->f64);
        break;
    case FRAME_BOOL:
        fd->b = xcalloc(n, 1);
        break;
    case FRAME_STRING:
        fd->s = xcalloc(n, sizeof *fd->s);
        for (size_t r = 0; r < n; r++)
            fd->s[r] = xstrdup("");
        break;
    }
    if (nullable) {
        fd->valid = xcalloc(n, 1);
        memset(fd->valid, 1, n);
    }
    return fd;
}

static void set_str(struct frame_field *fd, size_t r, const char *s)
{
    free(fd->s[r]);
    fd->s[r] = s ? xstrdup(s) : NULL;
}

static int row_null(const struct frame_field *fd, size_t r)
{
    return (fd->valid && !fd->valid[r]) || (fd->type == FRAME_STRING && !fd->s[r]);
}

/* The PROTOCOL.md worked example: "cpu"/"A", time (not nullable), value (float64, nullable),
 * 3 rows, value of row 1 null. */
static void worked_example(struct frame *f)
{
    frame_new(f, "cpu", "A", 2, 3);
    struct frame_field *t = field_new(f, 0, "time", FRAME_TIME, 0);
    struct frame_field *v = field_new(f, 1, "value", FRAME_FLOAT64, 1);
    for (size_t r = 0; r < 3; r++)
        t->i64[r] = 1700000000000000000LL + (int64_t)r * 1000000000LL;
    v->f64[0] = 1.5;
    v->f64[1] = 99; /* must not reach the file: the row is null */
    v->f64[2] = 3.25;
    v->valid[1] = 0;
}

/* One column of each type; nulls at rows where (r % step) == phase when nullable. */
static void fill_all_types(struct frame *f, size_t first, int nullable, size_t step,
                           size_t phase)
{
    static const char *const words[] = {"alpha", "", ("gr\xC3\xBC\xC3\x9F" "e"), "x",
                                        "\xE6\x97\xA5\xE6\x9C\xAC", "longer string value"};
    struct frame_field *t = field_new(f, first, "time", FRAME_TIME, nullable);
    struct frame_field *x = field_new(f, first + 1, "float", FRAME_FLOAT64, nullable);
    struct frame_field *i = field_new(f, first + 2, "int", FRAME_INT64, nullable);
    struct frame_field *s = field_new(f, first + 3, "str", FRAME_STRING, nullable);
    struct frame_field *b = field_new(f, first + 4, "bool", FRAME_BOOL, nullable);
    for (size_t r = 0; r < f->nrows; r++) {
        t->i64[r] = 1600000000000000000LL + (int64_t)r * 1000001LL;
        x->f64[r] = (double)r * 0.25 - 7.125;
        i->i64[r] = (int64_t)r * 37 - 500;
        set_str(s, r, words[r % 6]);
        b->b[r] = (uint8_t)((r * 7 + 3) % 5 < 2);
        if (nullable && step && r % step == phase) {
            for (size_t k = 0; k < 5; k++)
                f->fields[first + k].valid[r] = 0;
            if (r % 2)
                set_str(s, r, NULL); /* null by NULL entry too; the other rows keep a string */
        }
    }
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static void fx_worked_example(struct frame *f) { worked_example(f); }

static void fx_all_types_nonnull(struct frame *f)
{
    frame_new(f, "all types", "A", 5, 7);
    fill_all_types(f, 0, 0, 0, 0);
}

static void fx_all_types_nullable(struct frame *f)
{
    frame_new(f, "nullable", "B", 5, 9);
    fill_all_types(f, 0, 1, 3, 1);
}

static void fx_nullable_no_nulls(struct frame *f)
{
    frame_new(f, "nullable without nulls", "B", 5, 4);
    fill_all_types(f, 0, 1, 0, 0);
}

static void fx_empty(struct frame *f)
{
    frame_new(f, "empty", "C", 5, 0);
    fill_all_types(f, 0, 1, 0, 0);
    f->fields[0].nullable = 0;
}

static void fx_no_fields(struct frame *f) { frame_new(f, "", "", 0, 0); }

static void fx_one_row(struct frame *f)
{
    frame_new(f, "one", "D", 10, 1);
    fill_all_types(f, 0, 0, 0, 0);
    fill_all_types(f, 5, 1, 1, 0); /* the single row null in every type */
    for (size_t i = 5; i < 10; i++) {
        /* distinct names: apache-arrow's Table merges same-named fields' nullability */
        char name[32];
        snprintf(name, sizeof name, "%s null", f->fields[i].name);
        free(f->fields[i].name);
        f->fields[i].name = xstrdup(name);
    }
}

static void fx_big(struct frame *f)
{
    frame_new(f, "big", "E", 5, 1003);
    fill_all_types(f, 0, 1, 7, 3);
}

static void fx_big_nonnull(struct frame *f)
{
    frame_new(f, "big non-nullable", "E", 5, 1029);
    fill_all_types(f, 0, 0, 0, 0);
}

static void fx_unicode(struct frame *f)
{
    static const char *const v[] = {
        "",
        "caf\xC3\xA9",                                     /* 2-byte */
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",             /* 3-byte */
        "\xF0\x9F\x98\x80 \xF0\x9F\x8C\x8D",               /* 4-byte */
        NULL,
        "",
        "quote \" backslash \\ newline \n tab \t",
        "\xE2\x80\xA8 line separator",
        "\xD7\xA2\xD7\x91\xD7\xA8\xD7\x99\xD7\xAA", /* RTL */
        ("a\x01" "b"),
    };
    size_t n = sizeof v / sizeof v[0];
    frame_new(f, "\xC3\xBCnic\xC3\xB8" "de \xF0\x9F\x93\x88", "R\xC3\xA9", 3, n);
    struct frame_field *s = field_new(f, 0, "na\xC3\xAFve \xE5\x90\x8D", FRAME_STRING, 1);
    struct frame_field *e = field_new(f, 1, "empty strings", FRAME_STRING, 0);
    struct frame_field *k = field_new(f, 2, "", FRAME_INT64, 0);
    for (size_t r = 0; r < n; r++) {
        set_str(s, r, v[r]);
        k->i64[r] = (int64_t)r;
    }
    (void)e; /* all rows "" */
}

static void fx_wide(struct frame *f)
{
    frame_new(f, "wide", "W", 10, 13);
    for (size_t c = 0; c < 10; c++) {
        char name[48];
        snprintf(name, sizeof name, "col%zu", c);
        enum frame_type t = (enum frame_type)(c % 5);
        struct frame_field *fd = field_new(f, c, name, t, (int)(c % 2));
        for (size_t r = 0; r < f->nrows; r++) {
            switch (t) {
            case FRAME_TIME:
            case FRAME_INT64:
                fd->i64[r] = (int64_t)(c * 1000 + r);
                break;
            case FRAME_FLOAT64:
                fd->f64[r] = (double)c + (double)r / 8;
                break;
            case FRAME_STRING:
                snprintf(name, sizeof name, "%zu/%zu", c, r);
                set_str(fd, r, name);
                break;
            case FRAME_BOOL:
                fd->b[r] = (uint8_t)((r + c) % 3 == 0);
                break;
            }
            if (fd->nullable && (r + c) % 4 == 0)
                fd->valid[r] = 0;
        }
    }
}

static void fx_metadata_fields(struct frame *f)
{
    frame_new(f, "with meta", "Q", 3, 2);
    f->meta_json = xstrdup("{\"type\":\"timeseries-wide\",\"typeVersion\":[0,1],"
                           "\"executedQueryString\":\"SELECT \\\"x\\\" \xE2\x86\x92 1\","
                           "\"custom\":{\"a\":[1,2.5,null,true]},"
                           "\"notices\":[{\"severity\":\"warning\",\"text\":\"t\"}]}");
    struct frame_field *t = field_new(f, 0, "time", FRAME_TIME, 0);
    struct frame_field *v = field_new(f, 1, "value", FRAME_FLOAT64, 1);
    struct frame_field *h = field_new(f, 2, "host", FRAME_STRING, 0);
    t->i64[0] = 1;
    t->i64[1] = 2;
    v->f64[0] = 0.5;
    v->valid[1] = 0;
    set_str(h, 0, "a");
    set_str(h, 1, "b");
    v->config_json = xstrdup("{\"displayName\":\"CPU %\",\"unit\":\"percent\",\"decimals\":2,"
                             "\"min\":0,\"max\":100,\"custom\":{\"drawStyle\":\"line\"}}");
    v->labels_json = xstrdup("{\"host\":\"a\",\"dc\":\"\xC3\xA9st\"}");
    h->labels_json = xstrdup("{}");
}

static void fx_int_edges(struct frame *f)
{
    static const int64_t v[] = {0, -1, 1, INT64_MIN, INT64_MAX, -9007199254740993LL,
                                9007199254740993LL, -1000000, 999999, -1500000};
    size_t n = sizeof v / sizeof v[0];
    frame_new(f, "int edges", "I", 3, n);
    struct frame_field *t = field_new(f, 0, "time", FRAME_TIME, 0);
    struct frame_field *i = field_new(f, 1, "int", FRAME_INT64, 0);
    struct frame_field *t2 = field_new(f, 2, "time2", FRAME_TIME, 1);
    for (size_t r = 0; r < n; r++) {
        t->i64[r] = v[r];
        i->i64[r] = v[r];
        t2->i64[r] = INT64_MAX - (int64_t)r * 123456789LL; /* year 2262 */
    }
    t2->valid[3] = 0;
}

static void fx_floats(struct frame *f)
{
    const double v[] = {NAN, INFINITY, -INFINITY, -0.0, 0.0, DBL_MIN, DBL_TRUE_MIN, DBL_MAX,
                        -DBL_MAX, 0.1, 1e21, 1e-7, 123456789.123456789, NAN};
    size_t n = sizeof v / sizeof v[0];
    frame_new(f, "floats", "F", 2, n);
    struct frame_field *a = field_new(f, 0, "f", FRAME_FLOAT64, 0);
    struct frame_field *b = field_new(f, 1, "fnull", FRAME_FLOAT64, 1);
    for (size_t r = 0; r < n; r++)
        a->f64[r] = b->f64[r] = v[r];
    b->valid[0] = b->valid[4] = b->valid[12] = 0;
}

static void fx_bools(struct frame *f)
{
    frame_new(f, "bools", "B", 4, 17);
    struct frame_field *a = field_new(f, 0, "alt", FRAME_BOOL, 0);
    struct frame_field *t = field_new(f, 1, "true", FRAME_BOOL, 0);
    struct frame_field *e = field_new(f, 2, "edges", FRAME_BOOL, 1);
    struct frame_field *o = field_new(f, 3, "odd", FRAME_BOOL, 1);
    for (size_t r = 0; r < 17; r++) {
        a->b[r] = (uint8_t)(r % 2);
        t->b[r] = 1;
        e->b[r] = (uint8_t)(r == 7 || r == 8 || r == 16 || r == 0);
        o->b[r] = (uint8_t)(r % 3 == 0 ? 2 : 0); /* any non-zero byte is true */
        o->valid[r] = (uint8_t)(r % 5 != 4);
    }
    e->valid[7] = e->valid[8] = e->valid[15] = e->valid[16] = 0;
}

static void fx_duplicate_names(struct frame *f)
{
    frame_new(f, "", "", 3, 2);
    struct frame_field *a = field_new(f, 0, "v", FRAME_INT64, 0);
    struct frame_field *b = field_new(f, 1, "v", FRAME_INT64, 0);
    struct frame_field *c = field_new(f, 2, "", FRAME_STRING, 1);
    a->i64[0] = 1, a->i64[1] = 2, b->i64[0] = 3, b->i64[1] = 4;
    set_str(c, 0, NULL);
    set_str(c, 1, "z");
}

static const struct fixture {
    const char *name;
    void (*build)(struct frame *f);
} fixtures[] = {
    {"worked_example", fx_worked_example},
    {"all_types_nonnull", fx_all_types_nonnull},
    {"all_types_nullable", fx_all_types_nullable},
    {"nullable_no_nulls", fx_nullable_no_nulls},
    {"empty_rows", fx_empty},
    {"no_fields", fx_no_fields},
    {"one_row", fx_one_row},
    {"big_1003", fx_big},
    {"big_nonnull_1029", fx_big_nonnull},
    {"unicode", fx_unicode},
    {"wide_10", fx_wide},
    {"metadata", fx_metadata_fields},
    {"int_edges", fx_int_edges},
    {"floats", fx_floats},
    {"bools", fx_bools},
    {"duplicate_names", fx_duplicate_names},
};
#define NFIXTURES (sizeof fixtures / sizeof fixtures[0])

/* ---- a flatbuffer reader for the checks ------------------------------------------------- */

/* One flatbuffer inside the file; positions are relative to its start, which lies on an
 * 8-byte boundary of the file, so alignment is checked on them directly. */
struct fbr {
    const uint8_t *p;
    size_t n;
};

static uint64_t rd(const struct fbr *b, size_t pos, size_t size)
{
    assert_true(pos <= b->n && size <= b->n - pos);
    assert_int_equal(pos % size, 0); /* scalars naturally aligned */
    uint64_t v = 0;
    memcpy(&v, b->p + pos, size);
    return v;
}

static size_t fb_root(const struct fbr *b) { return (size_t)rd(b, 0, 4); }

/* Position of a table's field, 0 when absent. */
static size_t fb_slot(const struct fbr *b, size_t table, int slot)
{
    int32_t soff = (int32_t)rd(b, table, 4);
    size_t vt = (size_t)((int64_t)table - soff);
    size_t vtsize = (size_t)rd(b, vt, 2), tsize = (size_t)rd(b, vt + 2, 2);
    assert_true(vtsize >= 4 && vtsize % 2 == 0 && tsize >= 4);
    if (4 + 2 * (size_t)slot >= vtsize)
        return 0;
    size_t off = (size_t)rd(b, vt + 4 + 2 * (size_t)slot, 2);
    assert_true(off < tsize);
    return off ? table + off : 0;
}

static int64_t fb_int(const struct fbr *b, size_t table, int slot, size_t size, int64_t dflt)
{
    size_t pos = fb_slot(b, table, slot);
    if (!pos)
        return dflt;
    uint64_t v = rd(b, pos, size);
    switch (size) {
    case 1:
        return (int8_t)v;
    case 2:
        return (int16_t)v;
    case 4:
        return (int32_t)v;
    default:
        return (int64_t)v;
    }
}

/* Follows the reference in a slot (or at pos when slot < 0); 0 when absent. */
static size_t fb_deref(const struct fbr *b, size_t table, int slot)
{
    size_t pos = slot < 0 ? table : fb_slot(b, table, slot);
    if (!pos)
        return 0;
    size_t target = pos + (size_t)rd(b, pos, 4);
    assert_true(target < b->n);
    return target;
}

/* Vector at a slot: element count, *elems the first element. */
static size_t fb_vec(const struct fbr *b, size_t table, int slot, size_t *elems)
{
    size_t v = fb_deref(b, table, slot);
    assert_true(v != 0);
    size_t n = (size_t)rd(b, v, 4);
    *elems = v + 4;
    return n;
}

static const char *fb_str(const struct fbr *b, size_t table, int slot, size_t *len)
{
    size_t s = fb_deref(b, table, slot);
    if (!s)
        return NULL;
    size_t n = (size_t)rd(b, s, 4);
    assert_true(n < b->n - s - 4);
    assert_int_equal(b->p[s + 4 + n], 0);
    if (len)
        *len = n;
    return (const char *)b->p + s + 4;
}

/* Value of key in a [KeyValue] slot, or NULL; *count receives the number of pairs. */
static const char *kv_get(const struct fbr *b, size_t table, int slot, const char *key,
                          size_t *count)
{
    size_t e, n = fb_vec(b, table, slot, &e);
    const char *found = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t kv = fb_deref(b, e + 4 * i, -1);
        const char *k = fb_str(b, kv, 0, NULL), *v = fb_str(b, kv, 1, NULL);
        assert_non_null(k);
        assert_non_null(v);
        if (!strcmp(k, key)) {
            assert_null(found); /* no duplicate keys */
            found = v;
        }
    }
    if (count)
        *count = n;
    return found;
}

/* ---- the file ---------------------------------------------------------------------------- */

struct parsed {
    const uint8_t *file;
    size_t size;
    struct fbr footer, schema_msg, batch_msg;
    size_t footer_schema, stream_schema; /* Schema tables */
    size_t batch;                        /* RecordBatch table */
    int64_t block_offset, block_body;
    int32_t block_meta;
    const uint8_t *body;
};

static int32_t rd_i32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int64_t rd_i64(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Reads an encapsulated message at off; returns its flatbuffer and the Message table. */
static size_t message_at(const uint8_t *file, size_t size, size_t off, struct fbr *fb,
                         int64_t *meta_len)
{
    assert_int_equal(off % 8, 0);
    assert_true(off + 8 <= size);
    assert_int_equal((uint32_t)rd_i32(file + off), 0xFFFFFFFFu);
    int32_t l = rd_i32(file + off + 4);
    assert_true(l > 0 && (size_t)l <= size - off - 8);
    assert_int_equal((8 + l) % 8, 0);
    fb->p = file + off + 8;
    fb->n = (size_t)l;
    *meta_len = 8 + l;
    size_t msg = fb_root(fb);
    assert_int_equal(fb_int(fb, msg, 0, 2, 0), 4); /* V5 */
    return msg;
}

/* Parses an encoded frame and checks the container facts of PROTOCOL.md 4.5. */
static void parse_file(const uint8_t *file, size_t size, struct parsed *ps)
{
    memset(ps, 0, sizeof *ps);
    ps->file = file;
    ps->size = size;
    assert_true(size >= 8 + 8 + 8 + 10);
    assert_memory_equal(file, "ARROW1\0\0", 8);
    assert_memory_equal(file + size - 6, "ARROW1", 6);
    int32_t flen = rd_i32(file + size - 10);
    assert_true(flen > 0 && (size_t)flen <= size - 10 - 16);
    size_t foff = size - 10 - (size_t)flen;
    assert_int_equal(foff % 8, 0);
    /* end-of-stream marker just before the footer */
    assert_int_equal((uint32_t)rd_i32(file + foff - 8), 0xFFFFFFFFu);
    assert_int_equal(rd_i32(file + foff - 4), 0);

    ps->footer.p = file + foff;
    ps->footer.n = (size_t)flen;
    size_t footer = fb_root(&ps->footer);
    assert_int_equal(fb_int(&ps->footer, footer, 0, 2, 0), 4); /* V5 */
    ps->footer_schema = fb_deref(&ps->footer, footer, 1);
    assert_true(ps->footer_schema != 0);
    size_t e;
    assert_int_equal(fb_vec(&ps->footer, footer, 2, &e), 0); /* dictionaries: empty */
    assert_int_equal(fb_vec(&ps->footer, footer, 3, &e), 1); /* one record batch */
    assert_int_equal(e % 8, 0);                              /* Block vector 8-aligned */
    ps->block_offset = (int64_t)rd(&ps->footer, e, 8);
    ps->block_meta = (int32_t)rd(&ps->footer, e + 8, 4);
    ps->block_body = (int64_t)rd(&ps->footer, e + 16, 8);
    assert_int_equal(ps->block_offset % 8, 0);
    assert_int_equal(ps->block_meta % 8, 0);
    assert_int_equal(ps->block_body % 8, 0);

    /* the schema message at offset 8 */
    int64_t ml;
    size_t msg = message_at(file, size, 8, &ps->schema_msg, &ml);
    assert_int_equal(fb_int(&ps->schema_msg, msg, 1, 1, 0), 1); /* Schema */
    assert_int_equal(fb_int(&ps->schema_msg, msg, 3, 8, 0), 0);
    ps->stream_schema = fb_deref(&ps->schema_msg, msg, 2);
    assert_true(ps->stream_schema != 0);
    assert_int_equal(8 + (size_t)ml, (size_t)ps->block_offset); /* the batch follows */

    /* the record batch the Block points at */
    msg = message_at(file, size, (size_t)ps->block_offset, &ps->batch_msg, &ml);
    assert_int_equal(ml, ps->block_meta);
    assert_int_equal(fb_int(&ps->batch_msg, msg, 1, 1, 0), 3); /* RecordBatch */
    assert_int_equal(fb_int(&ps->batch_msg, msg, 3, 8, -1), ps->block_body);
    ps->batch = fb_deref(&ps->batch_msg, msg, 2);
    assert_true(ps->batch != 0);
    size_t body_off = (size_t)(ps->block_offset + ps->block_meta);
    assert_int_equal(body_off + (size_t)ps->block_body, foff - 8);
    ps->body = file + body_off;
}

static size_t schema_fields(const struct fbr *b, size_t schema, size_t *elems)
{
    return fb_vec(b, schema, 1, elems);
}

static void check_type(const struct fbr *b, size_t field, enum frame_type t)
{
    static const int tags[] = {10, 3, 2, 5, 6};
    assert_int_equal(fb_int(b, field, 2, 1, 0), tags[t]);
    size_t type = fb_deref(b, field, 3);
    assert_true(type != 0); /* present even when empty */
    switch (t) {
    case FRAME_TIME:
        assert_int_equal(fb_int(b, type, 0, 2, 0), 3); /* NANOSECOND */
        assert_int_equal(fb_slot(b, type, 1), 0);      /* no timezone */
        break;
    case FRAME_INT64:
        assert_int_equal(fb_int(b, type, 0, 4, 0), 64);
        assert_int_equal(fb_int(b, type, 1, 1, 0), 1);
        break;
    case FRAME_FLOAT64:
        assert_int_equal(fb_int(b, type, 0, 2, 0), 2); /* DOUBLE */
        break;
    default:
        break;
    }
}

static void check_schema(const struct fbr *b, size_t schema, const struct frame *f)
{
    size_t n;
    assert_int_equal(fb_int(b, schema, 0, 2, 0), 0);
    assert_string_equal(kv_get(b, schema, 2, "name", &n), f->name);
    assert_string_equal(kv_get(b, schema, 2, "refId", NULL), f->ref_id);
    if (f->meta_json) {
        assert_int_equal(n, 3);
        assert_string_equal(kv_get(b, schema, 2, "meta", NULL), f->meta_json);
    } else {
        assert_int_equal(n, 2);
    }
    size_t e;
    assert_int_equal(schema_fields(b, schema, &e), f->nfields);
    static const char *const tst[] = {"time", "number", "number", "string", "boolean"};
    for (size_t i = 0; i < f->nfields; i++) {
        const struct frame_field *fd = &f->fields[i];
        size_t field = fb_deref(b, e + 4 * i, -1);
        assert_string_equal(fb_str(b, field, 0, NULL), fd->name);
        assert_int_equal(fb_int(b, field, 1, 1, 0), fd->nullable);
        check_type(b, field, fd->type);
        size_t nkv;
        assert_string_equal(kv_get(b, field, 6, "tstype", &nkv), tst[fd->type]);
        assert_int_equal(nkv, 1 + !!fd->config_json + !!fd->labels_json);
        if (fd->config_json)
            assert_string_equal(kv_get(b, field, 6, "config", NULL), fd->config_json);
        if (fd->labels_json)
            assert_string_equal(kv_get(b, field, 6, "labels", NULL), fd->labels_json);
    }
}

static int bit(const uint8_t *p, size_t i) { return (p[i / 8] >> (i % 8)) & 1; }

/* Checks nodes, buffers and body contents against the frame. */
static void check_batch(const struct parsed *ps, const struct frame *f)
{
    const struct fbr *b = &ps->batch_msg;
    assert_int_equal(fb_int(b, ps->batch, 0, 8, 0), (int64_t)f->nrows);
    size_t ne, be;
    assert_int_equal(fb_vec(b, ps->batch, 1, &ne), f->nfields);
    size_t nbufs = fb_vec(b, ps->batch, 2, &be);
    assert_int_equal(ne % 8, 0);
    assert_int_equal(be % 8, 0);
    size_t k = 0;
    uint64_t body = (uint64_t)ps->block_body;
    for (size_t i = 0; i < f->nfields; i++) {
        const struct frame_field *fd = &f->fields[i];
        size_t nulls = 0;
        for (size_t r = 0; r < f->nrows; r++)
            nulls += (size_t)row_null(fd, r);
        assert_int_equal(rd(b, ne + 16 * i, 8), f->nrows);
        assert_int_equal(rd(b, ne + 16 * i + 8, 8), nulls);
        size_t want = fd->type == FRAME_STRING ? 3 : 2;
        assert_true(k + want <= nbufs);
        uint64_t off[3], len[3];
        for (size_t j = 0; j < want; j++, k++) {
            off[j] = rd(b, be + 16 * k, 8);
            len[j] = rd(b, be + 16 * k + 8, 8);
            assert_int_equal(off[j] % 8, 0);
            assert_true(off[j] <= body && len[j] <= body - off[j]);
        }
        const uint8_t *valid = ps->body + off[0], *vals = ps->body + off[1];
        assert_int_equal(len[0], nulls ? (f->nrows + 7) / 8 : 0);
        for (size_t r = 0; r < f->nrows; r++) {
            int isnull = row_null(fd, r);
            if (nulls)
                assert_int_equal(bit(valid, r), !isnull);
            switch (fd->type) {
            case FRAME_TIME:
            case FRAME_INT64:
                assert_int_equal(len[1], 8 * f->nrows);
                assert_int_equal(rd_i64(vals + 8 * r), isnull ? 0 : fd->i64[r]);
                break;
            case FRAME_FLOAT64: {
                assert_int_equal(len[1], 8 * f->nrows);
                double want_v = isnull ? 0.0 : fd->f64[r], got;
                memcpy(&got, vals + 8 * r, 8);
                assert_memory_equal(&got, &want_v, 8);
                break;
            }
            case FRAME_BOOL:
                assert_int_equal(len[1], (f->nrows + 7) / 8);
                assert_int_equal(bit(vals, r), !isnull && fd->b[r]);
                break;
            case FRAME_STRING: {
                assert_int_equal(len[1], 4 * (f->nrows + 1));
                int32_t a = rd_i32(vals + 4 * r), z = rd_i32(vals + 4 * r + 4);
                if (r == 0)
                    assert_int_equal(a, 0);
                if (isnull) {
                    assert_int_equal(a, z);
                } else {
                    assert_int_equal((size_t)(z - a), strlen(fd->s[r]));
                    assert_memory_equal(ps->body + off[2] + a, fd->s[r], (size_t)(z - a));
                }
                if (r + 1 == f->nrows)
                    assert_int_equal((uint64_t)z, len[2]);
                break;
            }
            }
        }
    }
    assert_int_equal(k, nbufs);
}

static void encode_and_check(const struct frame *f)
{
    struct cp_buf out = {0};
    assert_int_equal(frame_arrow_encode(f, &out), 0);
    struct parsed ps;
    parse_file((const uint8_t *)out.p, out.len, &ps);
    check_schema(&ps.footer, ps.footer_schema, f);
    check_schema(&ps.schema_msg, ps.stream_schema, f);
    check_batch(&ps, f);
    cp_buf_free(&out);
}

/* ---- tests: Arrow ------------------------------------------------------------------------ */

static void test_arrow__worked_example_layout(void **state)
{
    (void)state;
    struct frame f;
    worked_example(&f);
    struct cp_buf out = {0};
    assert_int_equal(frame_arrow_encode(&f, &out), 0);
    struct parsed ps;
    parse_file((const uint8_t *)out.p, out.len, &ps);
    assert_int_equal(ps.block_body, 56);

    const struct fbr *b = &ps.batch_msg;
    size_t ne, be;
    assert_int_equal(fb_vec(b, ps.batch, 1, &ne), 2);
    assert_int_equal(rd(b, ne, 8), 3);
    assert_int_equal(rd(b, ne + 8, 8), 0);
    assert_int_equal(rd(b, ne + 16, 8), 3);
    assert_int_equal(rd(b, ne + 24, 8), 1);
    assert_int_equal(fb_vec(b, ps.batch, 2, &be), 4);
    static const uint64_t want[4][2] = {{0, 0}, {0, 24}, {24, 1}, {32, 24}};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(rd(b, be + 16 * i, 8), want[i][0]);
        assert_int_equal(rd(b, be + 16 * i + 8, 8), want[i][1]);
    }
    for (size_t r = 0; r < 3; r++)
        assert_int_equal(rd_i64(ps.body + 8 * r), f.fields[0].i64[r]);
    assert_int_equal(ps.body[24], 0x05);
    for (size_t i = 25; i < 32; i++)
        assert_int_equal(ps.body[i], 0);
    double v[3];
    memcpy(v, ps.body + 32, 24);
    assert_true(v[0] == 1.5 && v[2] == 3.25);
    assert_memory_equal(&v[1], &(double){0.0}, 8); /* null slot zeroed */

    check_schema(&ps.footer, ps.footer_schema, &f);
    check_schema(&ps.schema_msg, ps.stream_schema, &f);
    check_batch(&ps, &f);
    cp_buf_free(&out);
    frame_dispose(&f);
}

static void test_arrow__all_fixtures_structure(void **state)
{
    (void)state;
    for (size_t i = 0; i < NFIXTURES; i++) {
        struct frame f;
        fixtures[i].build(&f);
        encode_and_check(&f);
        frame_dispose(&f);
    }
}

static void test_arrow__appends_after_existing_bytes(void **state)
{
    (void)state;
    struct frame f;
    worked_example(&f);
    struct cp_buf out = {0}, alone = {0};
    assert_int_equal(cp_buf_addstr(&out, "prefix!"), 0);
    assert_int_equal(frame_arrow_encode(&f, &out), 0);
    assert_int_equal(frame_arrow_encode(&f, &alone), 0);
    /* Block offsets count from the start of the file, not of the buffer */
    assert_int_equal(out.len, 7 + alone.len);
    assert_memory_equal(out.p + 7, alone.p, alone.len);
    cp_buf_free(&out);
    cp_buf_free(&alone);
    frame_dispose(&f);
}

static void test_arrow__non_nullable_with_nulls_is_einval(void **state)
{
    (void)state;
    struct frame f;
    worked_example(&f);
    struct cp_buf out = {0};
    assert_int_equal(cp_buf_addstr(&out, "keep"), 0);
    f.fields[1].nullable = 0; /* row 1 is null */
    assert_int_equal(frame_arrow_encode(&f, &out), CP_EINVAL);
    assert_int_equal(out.len, 4);
    assert_string_equal(out.p, "keep");
    frame_dispose(&f);

    frame_new(&f, "s", "A", 1, 2);
    struct frame_field *s = field_new(&f, 0, "s", FRAME_STRING, 0);
    set_str(s, 1, NULL); /* a NULL string is a null row */
    assert_int_equal(frame_arrow_encode(&f, &out), CP_EINVAL);
    s->nullable = 1;
    assert_int_equal(frame_arrow_encode(&f, &out), 0);
    cp_buf_free(&out);
    frame_dispose(&f);
}

static void test_arrow__malformed_frames_are_einval(void **state)
{
    (void)state;
    struct frame f;
    struct cp_buf out = {0};
    worked_example(&f);
    f.fields[0].n = 2; /* disagrees with nrows */
    assert_int_equal(frame_arrow_encode(&f, &out), CP_EINVAL);
    f.fields[0].n = 3;
    free(f.fields[1].f64);
    f.fields[1].f64 = NULL; /* no values */
    assert_int_equal(frame_arrow_encode(&f, &out), CP_EINVAL);
    f.fields[1].type = (enum frame_type)42;
    assert_int_equal(frame_arrow_encode(&f, &out), CP_EINVAL);
    assert_int_equal(frame_arrow_encode(NULL, &out), CP_EINVAL);
    assert_int_equal(out.len, 0);
    frame_dispose(&f);
}

static void test_arrow__capped_buffer_fails_cleanly(void **state)
{
    (void)state;
    struct frame f;
    worked_example(&f);
    struct cp_buf out = {.max = 300};
    int rc = frame_arrow_encode(&f, &out);
    assert_int_equal(rc, CP_ETOOBIG);
    assert_int_equal(out.len, 0);
    cp_buf_free(&out);
    frame_dispose(&f);
}

static void test_arrow__empty_frame(void **state)
{
    (void)state;
    struct frame f;
    fx_empty(&f);
    struct cp_buf out = {0};
    assert_int_equal(frame_arrow_encode(&f, &out), 0);
    struct parsed ps;
    parse_file((const uint8_t *)out.p, out.len, &ps);
    assert_int_equal(fb_int(&ps.batch_msg, ps.batch, 0, 8, -1), 0);
    assert_int_equal(ps.block_body, 8); /* just the Utf8 offsets {0} */
    check_batch(&ps, &f);
    cp_buf_free(&out);
    frame_dispose(&f);
}

static void test_arrow__bitmap_edges(void **state)
{
    (void)state;
    struct frame f;
    fx_bools(&f);
    encode_and_check(&f);
    frame_dispose(&f);
}

static void test_frame_dispose__partial_and_null(void **state)
{
    (void)state;
    frame_dispose(NULL);
    struct frame f;
    memset(&f, 0, sizeof f);
    frame_dispose(&f);
    f.name = xstrdup("x");
    f.nfields = 3;
    f.fields = xcalloc(3, sizeof *f.fields);
    f.fields[0].name = xstrdup("half");
    f.fields[0].n = 4;
    f.fields[0].type = FRAME_STRING;
    f.fields[0].s = xcalloc(4, sizeof(char *));
    f.fields[0].s[1] = xstrdup("only one");
    f.fields[1].labels_json = xstrdup("{}");
    frame_dispose(&f);
    assert_null(f.fields);
    frame_dispose(&f); /* again: already empty */
}

/* ---- tests: JSON ------------------------------------------------------------------------- */

static char *frame_json(const struct frame *f)
{
    struct cp_buf out = {0};
    assert_int_equal(frame_to_json(f, &out), 0);
    json_error_t jerr;
    json_t *j = json_loadb(out.p, out.len, 0, &jerr); /* strict parser, checks UTF-8 */
    if (!j)
        fail_msg("invalid JSON: %s: %s", jerr.text, out.p);
    json_decref(j);
    return cp_buf_take(&out, NULL);
}

static void test_frame_json__worked_example(void **state)
{
    (void)state;
    struct frame f;
    worked_example(&f);
    char *s = frame_json(&f);
    assert_string_equal(
        s, "{\"schema\":{\"name\":\"cpu\",\"refId\":\"A\",\"fields\":["
           "{\"name\":\"time\",\"type\":\"time\",\"typeInfo\":{\"frame\":\"time.Time\"}},"
           "{\"name\":\"value\",\"type\":\"number\",\"typeInfo\":{\"frame\":\"float64\","
           "\"nullable\":true}}]},"
           "\"data\":{\"values\":[[1700000000000,1700000001000,1700000002000],"
           "[1.5,null,3.25]]}}");
    free(s);
    frame_dispose(&f);
}

static void test_frame_json__entities_and_nanos(void **state)
{
    (void)state;
    struct frame f;
    frame_new(&f, "", "", 3, 5);
    struct frame_field *t = field_new(&f, 0, "t", FRAME_TIME, 1);
    struct frame_field *v = field_new(&f, 1, "v", FRAME_FLOAT64, 1);
    field_new(&f, 2, "n", FRAME_INT64, 0);
    const int64_t ts[] = {1000000, 1500001, -1, 7, 0};
    const double vs[] = {NAN, INFINITY, -INFINITY, 0.1, NAN};
    for (size_t r = 0; r < 5; r++)
        t->i64[r] = ts[r], v->f64[r] = vs[r];
    t->valid[3] = 0; /* its remainder is not reported */
    v->valid[4] = 0; /* a null NaN is just null */
    char *s = frame_json(&f);
    assert_string_equal(
        s, "{\"schema\":{\"fields\":["
           "{\"name\":\"t\",\"type\":\"time\",\"typeInfo\":{\"frame\":\"time.Time\","
           "\"nullable\":true}},"
           "{\"name\":\"v\",\"type\":\"number\",\"typeInfo\":{\"frame\":\"float64\","
           "\"nullable\":true}},"
           "{\"name\":\"n\",\"type\":\"number\",\"typeInfo\":{\"frame\":\"int64\"}}]},"
           "\"data\":{\"values\":[[1,1,-1,null,0],[null,null,null,0.1,null],[0,0,0,0,0]],"
           "\"entities\":[null,{\"NaN\":[0],\"Inf\":[1],\"NegInf\":[2]},null],"
           "\"nanos\":[[0,500001,999999,0,0],null,null]}}");
    free(s);
    frame_dispose(&f);
}

static void test_frame_json__strings_and_metadata(void **state)
{
    (void)state;
    struct frame f;
    frame_new(&f, "q\"\n", "A", 2, 5);
    f.meta_json = xstrdup("{\"type\":\"table\", \"typeVersion\":[0,0]}");
    struct frame_field *s = field_new(&f, 0, "", FRAME_STRING, 1);
    struct frame_field *b = field_new(&f, 1, "b", FRAME_BOOL, 0);
    s->labels_json = xstrdup("{\"host\":\"a\"}");
    s->config_json = xstrdup("{\"unit\":\"s\"}");
    set_str(s, 0, "caf\xC3\xA9 \xF0\x9F\x98\x80");
    set_str(s, 1, "bad \xFF\xC3 utf8 \xED\xA0\x80");
    set_str(s, 2, "ctl \x01\t\\ \xE2\x80\xA8");
    set_str(s, 3, NULL);
    b->b[0] = 1, b->b[2] = 7;
    char *out = frame_json(&f);
    assert_string_equal(
        out, "{\"schema\":{\"name\":\"q\\\"\\n\",\"refId\":\"A\","
             "\"meta\":{\"type\":\"table\", \"typeVersion\":[0,0]},\"fields\":["
             "{\"type\":\"string\",\"typeInfo\":{\"frame\":\"string\",\"nullable\":true},"
             "\"labels\":{\"host\":\"a\"},\"config\":{\"unit\":\"s\"}},"
             "{\"name\":\"b\",\"type\":\"boolean\",\"typeInfo\":{\"frame\":\"bool\"}}]},"
             "\"data\":{\"values\":[[\"caf\xC3\xA9 \xF0\x9F\x98\x80\","
             "\"bad \\ufffd\\ufffd utf8 \\ufffd\\ufffd\\ufffd\","
             "\"ctl \\u0001\\t\\\\ \\u2028\",null,\"\"],"
             "[true,false,true,false,false]]}}");
    free(out);
    frame_dispose(&f);
}

static void test_frame_json__invalid_input_is_einval(void **state)
{
    (void)state;
    struct frame f;
    worked_example(&f);
    struct cp_buf out = {0};
    assert_int_equal(cp_buf_addstr(&out, "keep"), 0);
    f.meta_json = xstrdup("{\"unterminated\":");
    assert_int_equal(frame_to_json(&f, &out), CP_EINVAL);
    assert_string_equal(out.p, "keep");
    free(f.meta_json);
    f.meta_json = xstrdup("[1]"); /* not an object */
    assert_int_equal(frame_to_json(&f, &out), CP_EINVAL);
    free(f.meta_json);
    f.meta_json = NULL;
    f.fields[1].nullable = 0; /* has a null */
    assert_int_equal(frame_to_json(&f, &out), CP_EINVAL);
    assert_int_equal(out.len, 4);
    cp_buf_free(&out);
    frame_dispose(&f);
}

static void test_frame_json__all_fixtures_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < NFIXTURES; i++) {
        struct frame f;
        fixtures[i].build(&f);
        free(frame_json(&f));
        frame_dispose(&f);
    }
}

/* ---- fixture files ----------------------------------------------------------------------- */

static json_t *expected_value(const struct frame_field *fd, size_t r)
{
    char num[32];
    if (row_null(fd, r))
        return json_null();
    switch (fd->type) {
    case FRAME_TIME:
    case FRAME_INT64: /* decimal strings: exact beyond 2^53 */
        snprintf(num, sizeof num, "%lld", (long long)fd->i64[r]);
        return json_string(num);
    case FRAME_FLOAT64: {
        double v = fd->f64[r];
        if (isnan(v))
            return json_string("NaN");
        if (isinf(v))
            return json_string(v > 0 ? "Inf" : "-Inf");
        snprintf(num, sizeof num, "%.17g", v);
        return json_string(num); /* decoded with Number(): exact, keeps -0 */
    }
    case FRAME_STRING:
        return json_string(fd->s[r]);
    case FRAME_BOOL:
        return json_boolean(fd->b[r] != 0);
    }
    return json_null();
}

/* The sidecar: what a decoder must find in the .arrow file. */
static json_t *expected_frame(const struct frame *f)
{
    static const char *const types[] = {"time", "float64", "int64", "string", "bool"};
    static const char *const tst[] = {"time", "number", "number", "string", "boolean"};
    json_t *meta = json_object(), *fields = json_array();
    json_object_set_new(meta, "name", json_string(f->name));
    json_object_set_new(meta, "refId", json_string(f->ref_id));
    if (f->meta_json)
        json_object_set_new(meta, "meta", json_string(f->meta_json));
    for (size_t i = 0; i < f->nfields; i++) {
        const struct frame_field *fd = &f->fields[i];
        json_t *fm = json_object(), *vals = json_array();
        size_t nulls = 0;
        json_object_set_new(fm, "tstype", json_string(tst[fd->type]));
        if (fd->config_json)
            json_object_set_new(fm, "config", json_string(fd->config_json));
        if (fd->labels_json)
            json_object_set_new(fm, "labels", json_string(fd->labels_json));
        for (size_t r = 0; r < fd->n; r++) {
            nulls += (size_t)row_null(fd, r);
            json_array_append_new(vals, expected_value(fd, r));
        }
        json_array_append_new(fields, json_pack("{s:s, s:s, s:b, s:I, s:o, s:o}", "name",
                                                fd->name, "type", types[fd->type], "nullable",
                                                fd->nullable, "nullCount", (json_int_t)nulls,
                                                "metadata", fm, "values", vals));
    }
    return json_pack("{s:I, s:o, s:o}", "rows", (json_int_t)f->nrows, "metadata", meta,
                     "fields", fields);
}

static int write_file(const char *dir, const char *name, const char *ext, const void *p,
                      size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, ext);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n || fclose(fp)) {
        fprintf(stderr, "test_arrow: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_fixtures(const char *dir)
{
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "test_arrow: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < NFIXTURES; i++) {
        struct frame f;
        struct cp_buf arrow = {0}, js = {0};
        fixtures[i].build(&f);
        json_t *exp = expected_frame(&f);
        char *exp_text = exp ? json_dumps(exp, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
        int rc = frame_arrow_encode(&f, &arrow);
        int jrc = frame_to_json(&f, &js);
        int bad = rc || jrc || !exp_text ||
                  write_file(dir, fixtures[i].name, ".arrow", arrow.p, arrow.len) ||
                  write_file(dir, fixtures[i].name, ".json", exp_text, strlen(exp_text)) ||
                  write_file(dir, fixtures[i].name, ".frame.json", js.p, js.len);
        if (rc || jrc || !exp_text)
            fprintf(stderr, "test_arrow: fixture %s: %s / %s\n", fixtures[i].name,
                    cp_errname(rc), cp_errname(jrc));
        free(exp_text);
        json_decref(exp);
        cp_buf_free(&arrow);
        cp_buf_free(&js);
        frame_dispose(&f);
        if (bad)
            return 1;
    }
    printf("wrote %zu fixtures to %s\n", (size_t)NFIXTURES, dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--fixtures"))
        return write_fixtures(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--fixtures DIR]\n", argv[0]);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arrow__worked_example_layout),
        cmocka_unit_test(test_arrow__all_fixtures_structure),
        cmocka_unit_test(test_arrow__appends_after_existing_bytes),
        cmocka_unit_test(test_arrow__non_nullable_with_nulls_is_einval),
        cmocka_unit_test(test_arrow__malformed_frames_are_einval),
        cmocka_unit_test(test_arrow__capped_buffer_fails_cleanly),
        cmocka_unit_test(test_arrow__empty_frame),
        cmocka_unit_test(test_arrow__bitmap_edges),
        cmocka_unit_test(test_frame_dispose__partial_and_null),
        cmocka_unit_test(test_frame_json__worked_example),
        cmocka_unit_test(test_frame_json__entities_and_nanos),
        cmocka_unit_test(test_frame_json__strings_and_metadata),
        cmocka_unit_test(test_frame_json__invalid_input_is_einval),
        cmocka_unit_test(test_frame_json__all_fixtures_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
