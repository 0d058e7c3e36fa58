/* framejson.c - the JSON form of a data frame (PROTOCOL.md section 4.7, the SDK's
 * data.FrameToJSON): schema with metadata, column-major values, non-finite floats listed in
 * "entities" and sub-millisecond time remainders in "nanos". Strings are escaped here so that
 * invalid UTF-8 becomes U+FFFD, as Go's encoder does; embedded meta, config and labels JSON is
 * checked with jansson and copied as written. */
#include "frame.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put_str(struct cp_buf *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    int rc = cp_buf_add(b, "\"", 1);
    while (!rc && *s) {
        size_t run = 0, n;
        /* copy runs that need no escaping in one call */
        while (s[run] >= 0x20 && s[run] != '"' && s[run] != '\\' && (n = cp_utf8_len(s + run)) &&
               !(n == 3 && s[run] == 0xE2 && s[run + 1] == 0x80 && (s[run + 2] & 0xFE) == 0xA8))
            run += n;
        if (run) {
            rc = cp_buf_add(b, s, run);
            s += run;
            continue;
        }
        unsigned c = *s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = cp_buf_add(b, e, 2);
            s++;
        } else if (c < 0x20) {
            if (c == '\n')
                rc = cp_buf_add(b, "\\n", 2);
            else if (c == '\r')
                rc = cp_buf_add(b, "\\r", 2);
            else if (c == '\t')
                rc = cp_buf_add(b, "\\t", 2);
            else
                rc = cp_buf_addf(b, "\\u%04x", c);
            s++;
        } else if (cp_utf8_len(s) == 3) { /* U+2028 / U+2029: valid JSON, not valid JavaScript */
            rc = cp_buf_addf(b, "\\u%04x", 0x2028u + (s[2] & 1u));
            s += 3;
        } else {
            rc = cp_buf_add(b, "\\ufffd", 6);
            s++;
        }
    }
    return rc ? rc : cp_buf_add(b, "\"", 1);
}

/* Shortest decimal that reads back as the same double (Go writes floats this way). */
static int put_double(struct cp_buf *b, double v)
{
    char tmp[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    return cp_buf_addstr(b, tmp);
}

/* Decimal without printf: columns of integers and times are the bulk of large frames. */
static int put_i64(struct cp_buf *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return cp_buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* Appends embedded JSON after checking that it is one object. */
static int put_raw_object(struct cp_buf *b, const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    int ok = j && json_is_object(j);
    json_decref(j);
    if (!ok)
        return CP_EINVAL;
    return cp_buf_addstr(b, text);
}

static const char *tstype(enum frame_type t)
{
    static const char *const names[] = {"time", "number", "number", "string", "boolean"};
    return names[t];
}

static const char *item_type(enum frame_type t)
{
    static const char *const names[] = {"time.Time", "float64", "int64", "string", "bool"};
    return names[t];
}

static int is_null(const struct frame_field *fd, size_t i)
{
    return (fd->valid && !fd->valid[i]) || (fd->type == FRAME_STRING && !fd->s[i]);
}

static int check_field(const struct frame_field *fd, size_t nrows)
{
    if ((unsigned)fd->type > FRAME_BOOL || fd->n != nrows)
        return CP_EINVAL;
    if (!nrows)
        return 0;
    const void *vals[] = {fd->i64, fd->f64, fd->i64, fd->s, fd->b};
    if (!vals[fd->type])
        return CP_EINVAL;
    if (!fd->nullable)
        for (size_t i = 0; i < nrows; i++)
            if (is_null(fd, i))
                return CP_EINVAL;
    return 0;
}

static int put_schema(struct cp_buf *b, const struct frame *f)
{
    int rc = cp_buf_addstr(b, "\"schema\":{");
    const char *sep = "";
    if (!rc && f->name && *f->name && !(rc = cp_buf_addstr(b, "\"name\":")))
        rc = put_str(b, f->name), sep = ",";
    if (!rc && f->ref_id && *f->ref_id && !(rc = cp_buf_addf(b, "%s\"refId\":", sep)))
        rc = put_str(b, f->ref_id), sep = ",";
    if (!rc && f->meta_json && !(rc = cp_buf_addf(b, "%s\"meta\":", sep)))
        rc = put_raw_object(b, f->meta_json), sep = ",";
    if (!rc)
        rc = cp_buf_addf(b, "%s\"fields\":[", sep);
    for (size_t i = 0; !rc && i < f->nfields; i++) {
        const struct frame_field *fd = &f->fields[i];
        rc = cp_buf_addstr(b, i ? ",{" : "{");
        if (!rc && fd->name && *fd->name && !(rc = cp_buf_addstr(b, "\"name\":")) &&
            !(rc = put_str(b, fd->name)))
            rc = cp_buf_add(b, ",", 1);
        if (!rc)
            rc = cp_buf_addf(b, "\"type\":\"%s\",\"typeInfo\":{\"frame\":\"%s\"%s}",
                             tstype(fd->type), item_type(fd->type),
                             fd->nullable ? ",\"nullable\":true" : "");
        if (!rc && fd->labels_json && !(rc = cp_buf_addstr(b, ",\"labels\":")))
            rc = put_raw_object(b, fd->labels_json);
        if (!rc && fd->config_json && !(rc = cp_buf_addstr(b, ",\"config\":")))
            rc = put_raw_object(b, fd->config_json);
        if (!rc)
            rc = cp_buf_add(b, "}", 1);
    }
    return rc ? rc : cp_buf_addstr(b, "]}");
}

/* Unix milliseconds rounded down and the remainder in [0, 1e6), as Go's UnixMilli. */
static int64_t floor_ms(int64_t ns, int64_t *rem)
{
    int64_t ms = ns / 1000000, r = ns % 1000000;
    if (r < 0)
        r += 1000000, ms--;
    *rem = r;
    return ms;
}

static int put_values(struct cp_buf *b, const struct frame_field *fd)
{
    int rc = cp_buf_add(b, "[", 1);
    for (size_t i = 0; !rc && i < fd->n; i++) {
        if (i)
            rc = cp_buf_add(b, ",", 1);
        if (rc)
            break;
        if (is_null(fd, i)) {
            rc = cp_buf_addstr(b, "null");
            continue;
        }
        int64_t rem;
        switch (fd->type) {
        case FRAME_TIME:
            rc = put_i64(b, floor_ms(fd->i64[i], &rem));
            break;
        case FRAME_INT64:
            rc = put_i64(b, fd->i64[i]);
            break;
        case FRAME_FLOAT64:
            rc = isfinite(fd->f64[i]) ? put_double(b, fd->f64[i]) : cp_buf_addstr(b, "null");
            break;
        case FRAME_STRING:
            rc = put_str(b, fd->s[i]);
            break;
        case FRAME_BOOL:
            rc = cp_buf_addstr(b, fd->b[i] ? "true" : "false");
            break;
        }
    }
    return rc ? rc : cp_buf_add(b, "]", 1);
}

/* Appends {"NaN":[..],"Inf":[..],"NegInf":[..]} (empty lists omitted) or null; *any is set
 * when the field has a non-finite value. */
static int put_entities(struct cp_buf *b, const struct frame_field *fd, int *any)
{
    static const char *const keys[] = {"NaN", "Inf", "NegInf"};
    int rc = 0, open = 0;
    for (int k = 0; !rc && k < 3 && fd->type == FRAME_FLOAT64; k++) {
        int first = 1;
        for (size_t i = 0; !rc && i < fd->n; i++) {
            double v = fd->f64[i];
            int kind = isnan(v) ? 0 : isinf(v) ? (v > 0 ? 1 : 2) : -1;
            if (kind != k || is_null(fd, i))
                continue;
            if (first)
                rc = cp_buf_addf(b, "%s\"%s\":[", open ? "]," : "{", keys[k]);
            if (!rc)
                rc = cp_buf_addf(b, "%s%zu", first ? "" : ",", i);
            first = 0;
            open = 1;
        }
    }
    if (open)
        *any = 1;
    return rc ? rc : cp_buf_addstr(b, open ? "]}" : "null");
}

static int put_nanos(struct cp_buf *b, const struct frame_field *fd, int *any)
{
    int has = 0;
    int64_t rem;
    for (size_t i = 0; fd->type == FRAME_TIME && i < fd->n && !has; i++)
        has = !is_null(fd, i) && (floor_ms(fd->i64[i], &rem), rem != 0);
    if (!has)
        return cp_buf_addstr(b, "null");
    *any = 1;
    int rc = cp_buf_add(b, "[", 1);
    for (size_t i = 0; !rc && i < fd->n; i++) {
        rem = 0;
        if (!is_null(fd, i))
            floor_ms(fd->i64[i], &rem);
        if (!(rc = i ? cp_buf_add(b, ",", 1) : 0))
            rc = put_i64(b, rem);
    }
    return rc ? rc : cp_buf_add(b, "]", 1);
}

/* Appends ",\"<key>\":[...]" built by fn for each field, or nothing when no field has any. */
static int put_optional(struct cp_buf *b, const struct frame *f, const char *key,
                        int (*fn)(struct cp_buf *, const struct frame_field *, int *))
{
    size_t mark = b->len;
    int any = 0;
    int rc = cp_buf_addf(b, ",\"%s\":[", key);
    for (size_t i = 0; !rc && i < f->nfields; i++)
        if (!(rc = i ? cp_buf_add(b, ",", 1) : 0))
            rc = fn(b, &f->fields[i], &any);
    if (!rc)
        rc = cp_buf_add(b, "]", 1);
    if (!rc && !any) {
        b->len = mark;
        b->p[mark] = 0;
    }
    return rc;
}

int frame_to_json_parts(const struct frame *f, int parts, struct cp_buf *out)
{
    if (!f || !out || (f->nfields && !f->fields) || !(parts & (FRAME_JSON_SCHEMA | FRAME_JSON_DATA)))
        return CP_EINVAL;
    for (size_t i = 0; i < f->nfields; i++)
        if (check_field(&f->fields[i], f->nrows))
            return CP_EINVAL;
    size_t start = out->len;
    int rc = cp_buf_add(out, "{", 1);
    if (!rc && (parts & FRAME_JSON_SCHEMA))
        rc = put_schema(out, f);
    if (!rc && (parts & FRAME_JSON_DATA)) {
        rc = cp_buf_addstr(out, parts & FRAME_JSON_SCHEMA ? ",\"data\":{\"values\":["
                                                          : "\"data\":{\"values\":[");
        for (size_t i = 0; !rc && i < f->nfields; i++)
            if (!(rc = i ? cp_buf_add(out, ",", 1) : 0))
                rc = put_values(out, &f->fields[i]);
        if (!rc)
            rc = cp_buf_add(out, "]", 1);
        if (!rc)
            rc = put_optional(out, f, "entities", put_entities);
        if (!rc)
            rc = put_optional(out, f, "nanos", put_nanos);
        if (!rc)
            rc = cp_buf_add(out, "}", 1);
    }
    if (!rc)
        rc = cp_buf_add(out, "}", 1);
    if (rc && out->len > start) {
        out->len = start;
        out->p[start] = 0;
    }
    return rc;
}

int frame_to_json(const struct frame *f, struct cp_buf *out)
{
    return frame_to_json_parts(f, FRAME_JSON_SCHEMA | FRAME_JSON_DATA, out);
}
