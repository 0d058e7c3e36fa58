/* arrow.c - encodes a Grafana data frame as an Arrow IPC file (PROTOCOL.md section 4): magic,
 * schema message, one record batch, end-of-stream marker, footer, footer length, magic. The
 * flatbuffers are made by a minimal builder below that, like the reference builders, writes
 * back to front so that every reference points forward to an object already written. */
#include "frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "arrow.c copies column values as they lie in memory: little-endian hosts only"
#endif

/* Format constants (format/Schema.fbs, Message.fbs). */
#define META_V5 4
#define HDR_SCHEMA 1
#define HDR_RECORD_BATCH 3
#define TYPE_INT 2
#define TYPE_FLOAT 3
#define TYPE_UTF8 5
#define TYPE_BOOL 6
#define TYPE_TIMESTAMP 10
#define PRECISION_DOUBLE 2
#define UNIT_NANOSECOND 3

#define FB_MAX_SLOTS 8
#define FB_MAX_SIZE ((size_t)INT32_MAX - 64) /* metaDataLength and footer length are i32 */

/* ---- flatbuffer builder ------------------------------------------------------------------ */

/* Objects are prepended: buf[cap-used .. cap) holds what is built so far. A position ("pos") is
 * an object's distance from the end, which stays valid while more is prepended; alignment is
 * of the distance from the end, which the finished buffer keeps because its size is made a
 * multiple of the largest alignment used. Errors are sticky: the first one is kept in err and
 * later calls do nothing. */
struct fbb {
    uint8_t *buf;
    size_t cap, used, minalign;
    int err;
    size_t table_end;            /* used when the open table was started */
    size_t slot[FB_MAX_SLOTS];   /* pos of each field of the open table, 0 = absent */
};

static void fb_init(struct fbb *b)
{
    memset(b, 0, sizeof *b);
    b->minalign = 1;
}

static void fb_dispose(struct fbb *b)
{
    free(b->buf);
    memset(b, 0, sizeof *b);
}

static int fb_grow(struct fbb *b, size_t need)
{
    if (need > FB_MAX_SIZE - b->used) {
        b->err = CP_EINVAL;
        return CP_EINVAL;
    }
    if (b->used + need <= b->cap)
        return 0;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->used + need)
        nc *= 2;
    uint8_t *nb = malloc(nc);
    if (!nb) {
        b->err = CP_ENOMEM;
        return CP_ENOMEM;
    }
    if (b->used)
        memcpy(nb + nc - b->used, b->buf + b->cap - b->used, b->used);
    free(b->buf);
    b->buf = nb;
    b->cap = nc;
    return 0;
}

/* Prepends zero padding so that, once `after` more bytes are prepended, the position is a
 * multiple of align (a power of two no larger than 8). */
static void fb_prep(struct fbb *b, size_t align, size_t after)
{
    if (b->err)
        return;
    if (align > b->minalign)
        b->minalign = align;
    size_t pad = (0 - (b->used + after)) & (align - 1);
    if (fb_grow(b, pad + after))
        return;
    if (pad)
        memset(b->buf + b->cap - b->used - pad, 0, pad);
    b->used += pad;
}

/* Prepends raw bytes; the caller has aligned. Returns the new position. */
static size_t fb_push(struct fbb *b, const void *p, size_t n)
{
    if (b->err || fb_grow(b, n))
        return 0;
    b->used += n;
    memcpy(b->buf + b->cap - b->used, p, n);
    return b->used;
}

static size_t fb_scalar(struct fbb *b, const void *p, size_t n)
{
    fb_prep(b, n, 0);
    return fb_push(b, p, n);
}

/* Prepends a reference to the object at pos, counted from the reference itself. */
static size_t fb_ref(struct fbb *b, size_t pos)
{
    fb_prep(b, 4, 0);
    uint32_t v = (uint32_t)(b->used + 4 - pos);
    return fb_push(b, &v, 4);
}

static size_t fb_string(struct fbb *b, const char *s)
{
    size_t n = strlen(s);
    uint32_t len = (uint32_t)n;
    if (n > FB_MAX_SIZE) {
        b->err = CP_EINVAL;
        return 0;
    }
    fb_prep(b, 4, n + 1);
    fb_push(b, "", 1);
    fb_push(b, s, n);
    return fb_push(b, &len, 4);
}

/* A vector of n inline structs of size `size`, elements 8-byte aligned. */
static size_t fb_struct_vec(struct fbb *b, const void *elems, size_t n, size_t size)
{
    uint32_t count = (uint32_t)n;
    fb_prep(b, 4, n * size);
    fb_prep(b, 8, n * size);
    if (n)
        fb_push(b, elems, n * size);
    return fb_push(b, &count, 4);
}

/* A vector of n references to objects at pos[0..n). */
static size_t fb_ref_vec(struct fbb *b, const size_t *pos, size_t n)
{
    uint32_t count = (uint32_t)n;
    fb_prep(b, 4, n * 4);
    for (size_t i = n; i-- > 0;)
        fb_ref(b, pos[i]);
    return fb_push(b, &count, 4);
}

static void fb_table_start(struct fbb *b)
{
    b->table_end = b->used;
    memset(b->slot, 0, sizeof b->slot);
}

static void fb_field(struct fbb *b, int slot, const void *p, size_t n)
{
    b->slot[slot] = fb_scalar(b, p, n);
}

static void fb_field_i64(struct fbb *b, int slot, int64_t v) { fb_field(b, slot, &v, 8); }
static void fb_field_i32(struct fbb *b, int slot, int32_t v) { fb_field(b, slot, &v, 4); }
static void fb_field_i16(struct fbb *b, int slot, int16_t v) { fb_field(b, slot, &v, 2); }
static void fb_field_u8(struct fbb *b, int slot, uint8_t v) { fb_field(b, slot, &v, 1); }
static void fb_field_ref(struct fbb *b, int slot, size_t pos) { b->slot[slot] = fb_ref(b, pos); }

/* Closes the open table: its soffset to the vtable, then the vtable just before it. */
static size_t fb_table_end(struct fbb *b)
{
    int32_t placeholder = 0;
    size_t table = fb_scalar(b, &placeholder, 4);
    int nslots = FB_MAX_SLOTS;
    while (nslots > 0 && !b->slot[nslots - 1])
        nslots--;
    uint16_t vt[2 + FB_MAX_SLOTS];
    vt[0] = (uint16_t)(4 + 2 * nslots);
    vt[1] = (uint16_t)(table - b->table_end);
    for (int i = 0; i < nslots; i++)
        vt[2 + i] = (uint16_t)(b->slot[i] ? table - b->slot[i] : 0);
    if (b->err)
        return 0;
    if (table - b->table_end > UINT16_MAX) {
        b->err = CP_EINVAL;
        return 0;
    }
    size_t vtpos = fb_push(b, vt, vt[0]);
    if (b->err)
        return 0;
    int32_t soff = (int32_t)(vtpos - table);
    memcpy(b->buf + b->cap - table, &soff, 4);
    return table;
}

/* Ends the buffer with the root reference; *len receives its size, a multiple of 8. */
static const uint8_t *fb_finish(struct fbb *b, size_t root, size_t *len)
{
    fb_prep(b, b->minalign > 8 ? b->minalign : 8, 4);
    fb_ref(b, root);
    if (b->err)
        return NULL;
    *len = b->used;
    return b->buf + b->cap - b->used;
}

/* ---- column layout ---------------------------------------------------------------------- */

struct col {
    size_t nulls;
    size_t nbuf;        /* 2, or 3 for Utf8 */
    size_t off[3];      /* within the body, 8-aligned */
    size_t len[3];      /* unpadded */
    size_t str_bytes;   /* Utf8 data bytes */
};

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static int row_null(const struct frame_field *fd, size_t i)
{
    if (fd->valid && !fd->valid[i])
        return 1;
    return fd->type == FRAME_STRING && !fd->s[i];
}

/* Checks one column against the frame and computes its buffer sizes. */
static int plan_column(const struct frame_field *fd, size_t nrows, struct col *c)
{
    memset(c, 0, sizeof *c);
    if (fd->n != nrows)
        return CP_EINVAL;
    int has_values;
    switch (fd->type) {
    case FRAME_TIME:
    case FRAME_INT64:
        has_values = fd->i64 != NULL;
        break;
    case FRAME_FLOAT64:
        has_values = fd->f64 != NULL;
        break;
    case FRAME_STRING:
        has_values = fd->s != NULL;
        break;
    case FRAME_BOOL:
        has_values = fd->b != NULL;
        break;
    default:
        return CP_EINVAL;
    }
    if (nrows && !has_values)
        return CP_EINVAL;
    if (nrows > (SIZE_MAX / 8) - 8 || nrows > INT32_MAX - 1)
        return CP_EINVAL;
    for (size_t i = 0; i < nrows; i++) {
        if (row_null(fd, i))
            c->nulls++;
        else if (fd->type == FRAME_STRING) {
            size_t l = strlen(fd->s[i]);
            if (l > (size_t)INT32_MAX - c->str_bytes)
                return CP_EINVAL; /* Utf8 offsets are int32 */
            c->str_bytes += l;
        }
    }
    if (c->nulls && !fd->nullable)
        return CP_EINVAL;
    c->len[0] = c->nulls ? (nrows + 7) / 8 : 0;
    c->nbuf = 2;
    switch (fd->type) {
    case FRAME_BOOL:
        c->len[1] = (nrows + 7) / 8;
        break;
    case FRAME_STRING:
        c->len[1] = 4 * (nrows + 1);
        c->len[2] = c->str_bytes;
        c->nbuf = 3;
        break;
    default:
        c->len[1] = 8 * nrows;
        break;
    }
    return 0;
}

static void set_bit(uint8_t *bits, size_t i) { bits[i / 8] |= (uint8_t)(1u << (i % 8)); }

/* Writes one column's buffers into the zero-filled body. */
static void fill_column(const struct frame_field *fd, size_t nrows, const struct col *c,
                        uint8_t *body)
{
    if (c->nulls)
        for (size_t i = 0; i < nrows; i++)
            if (!row_null(fd, i))
                set_bit(body + c->off[0], i);
    uint8_t *v = body + c->off[1];
    switch (fd->type) {
    case FRAME_TIME:
    case FRAME_INT64:
    case FRAME_FLOAT64: {
        const void *src = fd->type == FRAME_FLOAT64 ? (const void *)fd->f64 : (const void *)fd->i64;
        if (nrows)
            memcpy(v, src, 8 * nrows);
        if (c->nulls)
            for (size_t i = 0; i < nrows; i++)
                if (row_null(fd, i))
                    memset(v + 8 * i, 0, 8); /* as the SDK writes null slots */
        break;
    }
    case FRAME_BOOL:
        for (size_t i = 0; i < nrows; i++)
            if (fd->b[i] && !row_null(fd, i))
                set_bit(v, i);
        break;
    case FRAME_STRING: {
        uint8_t *data = body + c->off[2];
        int32_t pos = 0;
        memcpy(v, &pos, 4);
        for (size_t i = 0; i < nrows; i++) {
            if (!row_null(fd, i)) {
                size_t l = strlen(fd->s[i]);
                memcpy(data + pos, fd->s[i], l);
                pos += (int32_t)l;
            }
            memcpy(v + 4 * (i + 1), &pos, 4);
        }
        break;
    }
    }
}

/* ---- tables ------------------------------------------------------------------------------ */

static size_t key_value(struct fbb *b, const char *k, const char *v)
{
    size_t ks = fb_string(b, k), vs = fb_string(b, v);
    fb_table_start(b);
    fb_field_ref(b, 0, ks);
    fb_field_ref(b, 1, vs);
    return fb_table_end(b);
}

static size_t type_table(struct fbb *b, enum frame_type t, uint8_t *tag)
{
    fb_table_start(b);
    switch (t) {
    case FRAME_TIME:
        *tag = TYPE_TIMESTAMP;
        fb_field_i16(b, 0, UNIT_NANOSECOND); /* no timezone: Grafana times are UTC instants */
        break;
    case FRAME_INT64:
        *tag = TYPE_INT;
        fb_field_i32(b, 0, 64);
        fb_field_u8(b, 1, 1);
        break;
    case FRAME_FLOAT64:
        *tag = TYPE_FLOAT;
        fb_field_i16(b, 0, PRECISION_DOUBLE);
        break;
    case FRAME_STRING:
        *tag = TYPE_UTF8;
        break;
    case FRAME_BOOL:
        *tag = TYPE_BOOL;
        break;
    }
    return fb_table_end(b); /* empty tables too: readers require the type table */
}

static const char *tstype(enum frame_type t)
{
    switch (t) {
    case FRAME_TIME:
        return "time";
    case FRAME_STRING:
        return "string";
    case FRAME_BOOL:
        return "boolean";
    default:
        return "number";
    }
}

static size_t field_table(struct fbb *b, const struct frame_field *fd)
{
    size_t kv[3], nkv = 0; /* keys in sorted order, as arrow-go writes them */
    if (fd->config_json)
        kv[nkv++] = key_value(b, "config", fd->config_json);
    if (fd->labels_json)
        kv[nkv++] = key_value(b, "labels", fd->labels_json);
    kv[nkv++] = key_value(b, "tstype", tstype(fd->type));
    size_t meta = fb_ref_vec(b, kv, nkv);
    size_t children = fb_ref_vec(b, NULL, 0);
    uint8_t tag = 0;
    size_t type = type_table(b, fd->type, &tag);
    size_t name = fb_string(b, fd->name ? fd->name : "");
    fb_table_start(b);
    fb_field_ref(b, 0, name);
    fb_field_ref(b, 3, type);
    fb_field_ref(b, 5, children);
    fb_field_ref(b, 6, meta);
    fb_field_u8(b, 1, fd->nullable ? 1 : 0);
    fb_field_u8(b, 2, tag);
    return fb_table_end(b);
}

static size_t schema_table(struct fbb *b, const struct frame *f)
{
    size_t *fields = malloc((f->nfields ? f->nfields : 1) * sizeof *fields);
    if (!fields) {
        b->err = CP_ENOMEM;
        return 0;
    }
    for (size_t i = 0; i < f->nfields; i++)
        fields[i] = field_table(b, &f->fields[i]);
    size_t fvec = fb_ref_vec(b, fields, f->nfields);
    free(fields);
    size_t kv[3], nkv = 0;
    if (f->meta_json)
        kv[nkv++] = key_value(b, "meta", f->meta_json);
    kv[nkv++] = key_value(b, "name", f->name ? f->name : "");
    kv[nkv++] = key_value(b, "refId", f->ref_id ? f->ref_id : "");
    size_t meta = fb_ref_vec(b, kv, nkv);
    fb_table_start(b);
    fb_field_ref(b, 1, fvec);
    fb_field_ref(b, 2, meta);
    fb_field_i16(b, 0, 0); /* little-endian */
    return fb_table_end(b);
}

static size_t message_table(struct fbb *b, uint8_t hdr_type, size_t hdr, int64_t body_len)
{
    fb_table_start(b);
    fb_field_i64(b, 3, body_len);
    fb_field_ref(b, 2, hdr);
    fb_field_i16(b, 0, META_V5);
    fb_field_u8(b, 1, hdr_type);
    return fb_table_end(b);
}

/* struct FieldNode and struct Buffer: two i64 each. */
struct pair64 {
    int64_t a, b;
};

static size_t record_batch_table(struct fbb *b, const struct frame *f,
                                 const struct col *cols)
{
    size_t nbufs = 0;
    for (size_t i = 0; i < f->nfields; i++)
        nbufs += cols[i].nbuf;
    struct pair64 *nodes = malloc((f->nfields ? f->nfields : 1) * sizeof *nodes);
    struct pair64 *bufs = malloc((nbufs ? nbufs : 1) * sizeof *bufs);
    if (!nodes || !bufs) {
        free(nodes);
        free(bufs);
        b->err = CP_ENOMEM;
        return 0;
    }
    for (size_t i = 0, k = 0; i < f->nfields; i++) {
        nodes[i].a = (int64_t)f->nrows;
        nodes[i].b = (int64_t)cols[i].nulls;
        for (size_t j = 0; j < cols[i].nbuf; j++, k++) {
            bufs[k].a = (int64_t)cols[i].off[j];
            bufs[k].b = (int64_t)cols[i].len[j];
        }
    }
    size_t bvec = fb_struct_vec(b, bufs, nbufs, sizeof *bufs);
    size_t nvec = fb_struct_vec(b, nodes, f->nfields, sizeof *nodes);
    free(nodes);
    free(bufs);
    fb_table_start(b);
    fb_field_i64(b, 0, (int64_t)f->nrows);
    fb_field_ref(b, 1, nvec);
    fb_field_ref(b, 2, bvec);
    return fb_table_end(b);
}

/* struct Block { i64 offset; i32 metaDataLength; 4 bytes padding; i64 bodyLength; } */
struct block {
    int64_t offset;
    int32_t meta_len;
    int32_t pad;
    int64_t body_len;
};

static size_t footer_table(struct fbb *b, const struct frame *f, const struct block *blk)
{
    size_t batches = fb_struct_vec(b, blk, 1, sizeof *blk);
    size_t dicts = fb_struct_vec(b, NULL, 0, sizeof *blk);
    size_t schema = schema_table(b, f);
    fb_table_start(b);
    fb_field_ref(b, 1, schema);
    fb_field_ref(b, 2, dicts);
    fb_field_ref(b, 3, batches);
    fb_field_i16(b, 0, META_V5);
    return fb_table_end(b);
}

/* ---- file -------------------------------------------------------------------------------- */

static const uint8_t zeros[8];

/* Appends continuation marker, length and the message flatbuffer padded to 8 bytes; *meta_len
 * receives the bytes written (8 + L). */
static int put_message(struct cp_buf *out, const uint8_t *fb, size_t n, int32_t *meta_len)
{
    size_t total = align8(8 + n);
    uint32_t cont = 0xFFFFFFFFu;
    int32_t l = (int32_t)(total - 8);
    int rc;
    if ((rc = cp_buf_add(out, &cont, 4)) || (rc = cp_buf_add(out, &l, 4)) ||
        (rc = cp_buf_add(out, fb, n)) || (rc = cp_buf_add(out, zeros, total - 8 - n)))
        return rc;
    *meta_len = (int32_t)total;
    return 0;
}

int frame_arrow_encode(const struct frame *f, struct cp_buf *out)
{
    if (!f || !out || (f->nfields && !f->fields))
        return CP_EINVAL;
    size_t start = out->len;
    struct fbb b;
    fb_init(&b);
    uint8_t *body = NULL;
    struct col *cols = calloc(f->nfields ? f->nfields : 1, sizeof *cols);
    int rc = CP_ENOMEM;
    if (!cols)
        goto fail;

    size_t body_len = 0;
    for (size_t i = 0; i < f->nfields; i++) {
        if ((rc = plan_column(&f->fields[i], f->nrows, &cols[i])))
            goto fail;
        for (size_t j = 0; j < cols[i].nbuf; j++) {
            if (cols[i].len[j] > FB_MAX_SIZE - body_len) {
                rc = CP_EINVAL;
                goto fail;
            }
            cols[i].off[j] = body_len;
            body_len += align8(cols[i].len[j]);
        }
    }
    rc = CP_ENOMEM;
    if (!(body = calloc(body_len ? body_len : 1, 1)))
        goto fail;
    for (size_t i = 0; i < f->nfields; i++)
        fill_column(&f->fields[i], f->nrows, &cols[i], body);

    static const char magic[8] = "ARROW1\0";
    const uint8_t *fb;
    size_t fb_len;
    int32_t meta_len;
    if ((rc = cp_buf_add(out, magic, 8)))
        goto fail;

    size_t root = message_table(&b, HDR_SCHEMA, schema_table(&b, f), 0);
    if (!(fb = fb_finish(&b, root, &fb_len))) {
        rc = b.err;
        goto fail;
    }
    if ((rc = put_message(out, fb, fb_len, &meta_len)))
        goto fail;

    struct block blk = {.offset = (int64_t)(out->len - start), .body_len = (int64_t)body_len};
    fb_dispose(&b);
    fb_init(&b);
    root = message_table(&b, HDR_RECORD_BATCH, record_batch_table(&b, f, cols),
                         (int64_t)body_len);
    if (!(fb = fb_finish(&b, root, &fb_len))) {
        rc = b.err;
        goto fail;
    }
    if ((rc = put_message(out, fb, fb_len, &blk.meta_len)) ||
        (rc = cp_buf_add(out, body, body_len)))
        goto fail;

    static const uint8_t eos[8] = {0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0};
    if ((rc = cp_buf_add(out, eos, 8)))
        goto fail;
    fb_dispose(&b);
    fb_init(&b);
    root = footer_table(&b, f, &blk);
    if (!(fb = fb_finish(&b, root, &fb_len))) {
        rc = b.err;
        goto fail;
    }
    int32_t footer_len = (int32_t)fb_len;
    if ((rc = cp_buf_add(out, fb, fb_len)) || (rc = cp_buf_add(out, &footer_len, 4)) ||
        (rc = cp_buf_add(out, magic, 6)))
        goto fail;
    rc = 0;

fail:
    if (rc && out->len > start) {
        out->len = start;
        out->p[start] = 0;
    }
    fb_dispose(&b);
    free(body);
    free(cols);
    return rc;
}

void frame_dispose(struct frame *f)
{
    if (!f)
        return;
    for (size_t i = 0; f->fields && i < f->nfields; i++) {
        struct frame_field *fd = &f->fields[i];
        if (fd->s)
            for (size_t r = 0; r < fd->n; r++)
                free(fd->s[r]);
        free(fd->name);
        free(fd->i64);
        free(fd->f64);
        free(fd->b);
        free(fd->s);
        free(fd->valid);
        free(fd->config_json);
        free(fd->labels_json);
    }
    free(f->fields);
    free(f->name);
    free(f->ref_id);
    free(f->meta_json);
    memset(f, 0, sizeof *f);
}
