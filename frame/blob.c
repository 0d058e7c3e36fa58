/* blob.c - a compact binary form of a frame for caches (pieces of split queries are cached in
 * it and joined later), and the row operations joining needs: append, keep a time range, sort.
 *
 * Layout (little-endian): "CPF1", u32 nfields, u64 nrows, str name, str ref_id, str meta, then
 * per field: str name, u8 type, u8 nullable, u8 has_valid, str config, str labels, the valid
 * bytes (nrows, when has_valid), and the values: i64 or f64 (8 bytes a row), bool (1 byte a
 * row), or per row a u32 length (0xffffffff: null) and the string. str = u32 length
 * (0xffffffff: absent) and bytes. Decoding checks every length against what is left. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

#define BLOB_MAGIC "CPF1"
#define NONE 0xffffffffu
#define MAX_FIELDS 4096

static int put(struct cp_buf *b, const void *p, size_t n) { return cp_buf_add(b, p, n); }

static int put_u32(struct cp_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return put(b, x, 4);
}

static int put_u64(struct cp_buf *b, uint64_t v)
{
    return put_u32(b, (uint32_t)v) || put_u32(b, (uint32_t)(v >> 32)) ? CP_ENOMEM : 0;
}

static int put_str(struct cp_buf *b, const char *s)
{
    if (!s)
        return put_u32(b, NONE);
    size_t n = strlen(s);
    return put_u32(b, (uint32_t)n) || put(b, s, n) ? CP_ENOMEM : 0;
}

int frame_blob_encode(const struct frame *f, struct cp_buf *out)
{
    int rc = put(out, BLOB_MAGIC, 4);
    rc = rc ? rc : put_u32(out, (uint32_t)f->nfields);
    rc = rc ? rc : put_u64(out, f->nrows);
    rc = rc ? rc : put_str(out, f->name);
    rc = rc ? rc : put_str(out, f->ref_id);
    rc = rc ? rc : put_str(out, f->meta_json);
    for (size_t i = 0; i < f->nfields && !rc; i++) {
        const struct frame_field *fd = &f->fields[i];
        unsigned char flags[3] = {(unsigned char)fd->type, (unsigned char)fd->nullable,
                                  (unsigned char)(fd->valid != NULL)};
        rc = put_str(out, fd->name);
        rc = rc ? rc : put(out, flags, 3);
        rc = rc ? rc : put_str(out, fd->config_json);
        rc = rc ? rc : put_str(out, fd->labels_json);
        if (!rc && fd->valid)
            rc = put(out, fd->valid, f->nrows);
        if (rc)
            break;
        switch (fd->type) {
        case FRAME_TIME:
        case FRAME_INT64:
            for (size_t r = 0; r < f->nrows && !rc; r++)
                rc = put_u64(out, (uint64_t)fd->i64[r]);
            break;
        case FRAME_FLOAT64:
            for (size_t r = 0; r < f->nrows && !rc; r++) {
                uint64_t bits;
                memcpy(&bits, &fd->f64[r], 8);
                rc = put_u64(out, bits);
            }
            break;
        case FRAME_BOOL:
            rc = put(out, fd->b, f->nrows);
            break;
        case FRAME_STRING:
            for (size_t r = 0; r < f->nrows && !rc; r++)
                rc = put_str(out, fd->s[r]);
            break;
        }
    }
    return rc ? CP_ENOMEM : 0;
}

/* ---- decoding --------------------------------------------------------------------------------- */

struct reader {
    const unsigned char *p;
    size_t left;
    int bad;
};

static const unsigned char *take(struct reader *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint32_t get_u32(struct reader *r)
{
    const unsigned char *x = take(r, 4);
    return x ? (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24
             : 0;
}

static uint64_t get_u64(struct reader *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

/* A string (or NULL when absent); r->bad set on malformed input, *err on allocation failure. */
static char *get_str(struct reader *r, int *err)
{
    uint32_t n = get_u32(r);
    if (r->bad || n == NONE)
        return NULL;
    const unsigned char *s = take(r, n);
    if (!s || memchr(s, 0, n)) { /* short, or a NUL inside: not one of ours */
        r->bad = 1;
        return NULL;
    }
    char *c = malloc((size_t)n + 1);
    if (!c) {
        *err = 1;
        return NULL;
    }
    memcpy(c, s, n);
    c[n] = 0;
    return c;
}

/* What our encoder writes: validity and booleans 0 or 1, nulls only in nullable fields. */
static int field_consistent(const struct frame_field *fd)
{
    int nulls = 0;
    for (size_t k = 0; k < fd->n; k++) {
        if (fd->valid && fd->valid[k] > 1)
            return 0;
        if (fd->type == FRAME_BOOL && fd->b[k] > 1)
            return 0;
        nulls |= (fd->valid && !fd->valid[k]) || (fd->type == FRAME_STRING && !fd->s[k]);
    }
    return fd->nullable || !nulls;
}

int frame_blob_decode(const void *p, size_t n, struct frame *f)
{
    struct reader r = {p, n, 0};
    int err = 0;
    memset(f, 0, sizeof *f);
    const unsigned char *magic = take(&r, 4);
    if (!magic || memcmp(magic, BLOB_MAGIC, 4))
        return CP_EINVAL;
    uint32_t nf = get_u32(&r);
    uint64_t nrows = get_u64(&r);
    /* every row takes at least a byte per field: a count above what is left is a lie */
    if (r.bad || nf > MAX_FIELDS || nrows > r.left)
        return CP_EINVAL;
    f->nrows = (size_t)nrows;
    f->name = get_str(&r, &err);
    f->ref_id = get_str(&r, &err);
    f->meta_json = get_str(&r, &err);
    f->fields = calloc(nf ? nf : 1, sizeof *f->fields);
    if (!f->fields)
        err = 1;
    for (uint32_t i = 0; i < nf && !err && !r.bad; i++) {
        struct frame_field *fd = &f->fields[i];
        f->nfields = i + 1;
        fd->n = f->nrows;
        fd->name = get_str(&r, &err);
        const unsigned char *flags = take(&r, 3);
        if (!flags || !fd->name || flags[0] > FRAME_BOOL || flags[1] > 1 || flags[2] > 1) {
            r.bad = 1;
            break;
        }
        fd->type = (enum frame_type)flags[0];
        fd->nullable = flags[1];
        fd->config_json = get_str(&r, &err);
        fd->labels_json = get_str(&r, &err);
        size_t rows = f->nrows;
        if (flags[2]) {
            const unsigned char *v = take(&r, rows);
            if (!v)
                break;
            if (!(fd->valid = malloc(rows ? rows : 1))) {
                err = 1;
                break;
            }
            memcpy(fd->valid, v, rows);
        }
        switch (fd->type) {
        case FRAME_TIME:
        case FRAME_INT64:
        case FRAME_FLOAT64:
            if (rows > r.left / 8) {
                r.bad = 1;
                break;
            }
            if (!(fd->i64 = malloc(rows ? rows * 8 : 1))) {
                err = 1;
                break;
            }
            for (size_t k = 0; k < rows; k++)
                fd->i64[k] = (int64_t)get_u64(&r);
            if (fd->type == FRAME_FLOAT64) { /* the same bits, read as doubles */
                fd->f64 = (double *)(void *)fd->i64;
                fd->i64 = NULL;
            }
            break;
        case FRAME_BOOL: {
            const unsigned char *v = take(&r, rows);
            if (!v)
                break;
            if (!(fd->b = malloc(rows ? rows : 1))) {
                err = 1;
                break;
            }
            memcpy(fd->b, v, rows);
            break;
        }
        case FRAME_STRING:
            if (rows > r.left / 4) {
                r.bad = 1;
                break;
            }
            if (!(fd->s = calloc(rows ? rows : 1, sizeof *fd->s))) {
                err = 1;
                break;
            }
            for (size_t k = 0; k < rows && !err && !r.bad; k++)
                fd->s[k] = get_str(&r, &err);
            break;
        }
        if (!err && !r.bad && !field_consistent(fd))
            r.bad = 1;
    }
    if (err || r.bad || r.left || !f->name || !f->ref_id) {
        frame_dispose(f);
        return r.bad || !err ? CP_EINVAL : CP_ENOMEM;
    }
    return 0;
}

/* ---- rows ------------------------------------------------------------------------------------- */

/* The size of one value of a field's array. */
static size_t value_size(enum frame_type t)
{
    return t == FRAME_BOOL ? 1 : t == FRAME_STRING ? sizeof(char *) : 8;
}

static void *values(struct frame_field *fd)
{
    switch (fd->type) {
    case FRAME_TIME:
    case FRAME_INT64:
        return fd->i64;
    case FRAME_FLOAT64:
        return fd->f64;
    case FRAME_BOOL:
        return fd->b;
    default:
        return fd->s;
    }
}

static void set_values(struct frame_field *fd, void *v)
{
    switch (fd->type) {
    case FRAME_TIME:
    case FRAME_INT64:
        fd->i64 = v;
        break;
    case FRAME_FLOAT64:
        fd->f64 = v;
        break;
    case FRAME_BOOL:
        fd->b = v;
        break;
    default:
        fd->s = v;
    }
}

/* The field named name, preferring index hint (frames of one query have the same fields in the
 * same order, even when two share a name). */
static int find_field(const struct frame *f, const char *name, size_t hint)
{
    if (hint < f->nfields && !strcmp(f->fields[hint].name, name))
        return (int)hint;
    for (size_t i = 0; i < f->nfields; i++)
        if (!strcmp(f->fields[i].name, name))
            return (int)i;
    return -1;
}

static int is_number(enum frame_type t) { return t == FRAME_INT64 || t == FRAME_FLOAT64; }

static char *dup_or_null(const char *s, int *err)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *err = 1;
    return d;
}

/* Adds a field like `like` to dst, null in every row dst already has. */
static int add_null_field(struct frame *dst, const struct frame_field *like)
{
    struct frame_field *nf = realloc(dst->fields, (dst->nfields + 1) * sizeof *nf);
    if (!nf)
        return CP_ENOMEM;
    dst->fields = nf;
    struct frame_field *d = &nf[dst->nfields];
    memset(d, 0, sizeof *d);
    size_t n = dst->nrows ? dst->nrows : 1;
    int err = 0;
    d->type = like->type;
    d->nullable = 1;
    d->name = dup_or_null(like->name, &err);
    d->config_json = dup_or_null(like->config_json, &err);
    d->labels_json = dup_or_null(like->labels_json, &err);
    void *v = calloc(n, value_size(d->type));
    d->valid = calloc(n, 1);
    set_values(d, v);
    dst->nfields++; /* counted now so that frame_dispose frees whatever was allocated */
    if (err || !v || !d->valid)
        return CP_ENOMEM;
    d->n = dst->nrows;
    return 0;
}

/* An integer column becomes a float one (values converted in place, same width). */
static void widen(struct frame_field *d)
{
    double *f = (double *)(void *)d->i64;
    for (size_t r = 0; r < d->n; r++)
        f[r] = (double)d->i64[r];
    d->f64 = f;
    d->i64 = NULL;
    d->type = FRAME_FLOAT64;
}

/* Appends src's column s (NULL: the column is absent there, all null) to dst's d. */
static int append_column(struct frame_field *d, const struct frame_field *s, size_t n0,
                         size_t add)
{
    size_t n = n0 + add, vs = value_size(d->type);
    void *nv = realloc(values(d), n * vs);
    if (!nv)
        return CP_ENOMEM;
    set_values(d, nv);
    if (!s) {
        memset((char *)nv + n0 * vs, 0, add * vs);
    } else if (d->type == FRAME_STRING) {
        for (size_t r = 0; r < add; r++) {
            d->s[n0 + r] = s->s[r] ? strdup(s->s[r]) : NULL;
            if (s->s[r] && !d->s[n0 + r]) {
                for (size_t k = 0; k < r; k++)
                    free(d->s[n0 + k]);
                return CP_ENOMEM;
            }
        }
    } else if (d->type == FRAME_FLOAT64 && s->type == FRAME_INT64) {
        for (size_t r = 0; r < add; r++)
            d->f64[n0 + r] = (double)s->i64[r];
    } else {
        memcpy((char *)nv + n0 * vs, values((struct frame_field *)s), add * vs);
    }
    d->n = n; /* the values are in: a failure below leaves a frame frame_dispose can free */
    if (d->valid || !s || s->valid) {
        uint8_t *valid = realloc(d->valid, n);
        if (!valid)
            return CP_ENOMEM;
        if (!d->valid)
            memset(valid, 1, n0);
        d->valid = valid;
        if (!s)
            memset(valid + n0, 0, add);
        else if (s->valid)
            memcpy(valid + n0, s->valid, add);
        else
            memset(valid + n0, 1, add);
        d->nullable = 1;
    }
    return 0;
}

int frame_append(struct frame *dst, const struct frame *src, const char **bad_field)
{
    if (bad_field)
        *bad_field = NULL;
    if (!src->nrows)
        return 0;
    /* check everything first: a refusal leaves dst as it was */
    for (size_t i = 0; i < src->nfields; i++) {
        int j = find_field(dst, src->fields[i].name, i);
        if (j < 0)
            continue;
        enum frame_type a = dst->fields[j].type, b = src->fields[i].type;
        if (a != b && !(is_number(a) && is_number(b))) {
            if (bad_field)
                *bad_field = dst->fields[j].name;
            return CP_EINVAL;
        }
    }
    for (size_t i = 0; i < src->nfields; i++) {
        int j = find_field(dst, src->fields[i].name, i);
        if (j < 0 && add_null_field(dst, &src->fields[i]))
            return CP_ENOMEM;
        if (j >= 0 && dst->fields[j].type == FRAME_INT64 && src->fields[i].type == FRAME_FLOAT64)
            widen(&dst->fields[j]);
    }
    size_t n0 = dst->nrows;
    for (size_t i = 0; i < dst->nfields; i++) {
        int j = find_field(src, dst->fields[i].name, i);
        if (append_column(&dst->fields[i], j < 0 ? NULL : &src->fields[j], n0, src->nrows))
            return CP_ENOMEM;
    }
    dst->nrows = n0 + src->nrows;
    return 0;
}

int frame_time_field(const struct frame *f)
{
    for (size_t i = 0; i < f->nfields; i++)
        if (f->fields[i].type == FRAME_TIME)
            return (int)i;
    return -1;
}

int frame_keep_time(struct frame *f, int64_t from_ns, int64_t to_ns)
{
    int t = frame_time_field(f);
    if (t < 0)
        return f->nrows ? CP_EINVAL : 0;
    const struct frame_field *tf = &f->fields[t];
    size_t w = 0;
    for (size_t r = 0; r < f->nrows; r++) {
        int keep = (!tf->valid || tf->valid[r]) && tf->i64[r] >= from_ns && tf->i64[r] < to_ns;
        for (size_t i = 0; i < f->nfields; i++) {
            struct frame_field *fd = &f->fields[i];
            size_t vs = value_size(fd->type);
            char *v = values(fd);
            if (!keep) {
                if (fd->type == FRAME_STRING)
                    free(fd->s[r]);
                continue;
            }
            if (w != r) {
                memcpy(v + w * vs, v + r * vs, vs);
                if (fd->valid)
                    fd->valid[w] = fd->valid[r];
            }
        }
        w += keep;
    }
    f->nrows = w;
    for (size_t i = 0; i < f->nfields; i++)
        f->fields[i].n = w;
    return 0;
}
