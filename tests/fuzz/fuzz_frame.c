/*
 * fuzz_frame.c - libFuzzer driver for the JSON-to-frame path of queries: frame_from_json
 * (selectors, column inference, time parsing, timeseries sorting), then both encoders of the
 * frame (frame_arrow_encode, frame_to_json) and frame_set_cache.
 *
 * Input: the upstream's JSON answer, then optionally a NUL byte and the query model (root,
 * columns, format, refId); a model that is missing or not a JSON object is {}. An answer that
 * is not JSON is not a frame's business (query.c answers 502 before): such inputs stop early.
 * Whatever the input, a frame is either refused with CP_EINVAL and a detail, or is consistent
 * (every column has nrows values of its type, validity bytes 0/1, a timeseries is sorted by
 * its non-null time column) and both encoders accept it: the Arrow file is framed by its
 * magic, the JSON form parses and has one value list of nrows per field. Every string of the
 * answer that frame_parse_rfc3339 accepts is also checked against independent calendar
 * arithmetic: the instant is the one written (up to the largest offset), and an instant that
 * int64 nanoseconds cannot hold (before 1677, after 2262) is refused rather than wrapped.
 */
#include "proxy_int.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const struct frame *fr, const struct frame_field *f)
{
    assert(f->name);
    assert(f->n == fr->nrows);
    assert((unsigned)f->type <= FRAME_BOOL);
    switch (f->type) {
    case FRAME_TIME:
    case FRAME_INT64:
        assert(f->i64);
        break;
    case FRAME_FLOAT64:
        assert(f->f64);
        break;
    case FRAME_STRING:
        assert(f->s);
        break;
    case FRAME_BOOL:
        assert(f->b);
        break;
    }
    size_t nulls = 0;
    for (size_t r = 0; r < f->n; r++) {
        if (f->valid)
            assert(f->valid[r] == 0 || f->valid[r] == 1);
        int valid = !f->valid || f->valid[r];
        nulls += !valid;
        if (f->type == FRAME_BOOL && valid)
            assert(f->b[r] == 0 || f->b[r] == 1);
        if (f->type == FRAME_STRING)
            assert((f->s[r] != NULL) == valid);
    }
    assert(!nulls || f->nullable);
}

/* The Arrow IPC file: "ARROW1\0\0", messages, footer, i32 footer length, "ARROW1". */
static void check_arrow(const struct cp_buf *b)
{
    assert(b->len >= 8 + 10);
    assert(!memcmp(b->p, "ARROW1\0\0", 8));
    assert(!memcmp(b->p + b->len - 6, "ARROW1", 6));
    int32_t footer;
    memcpy(&footer, b->p + b->len - 10, 4);
    assert(footer > 0 && (size_t)footer <= b->len - 8 - 10);
    /* the first message: continuation marker, then its length */
    uint32_t cont;
    int32_t mlen;
    memcpy(&cont, b->p + 8, 4);
    memcpy(&mlen, b->p + 12, 4);
    assert(cont == 0xFFFFFFFFu && mlen > 0 && mlen % 8 == 0 && (size_t)mlen < b->len);
}

static void check_json(const struct frame *fr, const struct cp_buf *b,
                       const char *cache_result)
{
    json_error_t je;
    json_t *j = json_loadb(b->p, b->len, 0, &je);
    if (!j)
        fprintf(stderr, "fuzz_frame: frame JSON does not parse (%s at %d): %.300s\n", je.text,
                je.position, b->p);
    assert(j && json_is_object(j));
    json_t *fields = json_object_get(json_object_get(j, "schema"), "fields");
    json_t *values = json_object_get(json_object_get(j, "data"), "values");
    assert(json_is_array(fields) && json_array_size(fields) == fr->nfields);
    assert(json_is_array(values) && json_array_size(values) == fr->nfields);
    for (size_t i = 0; i < fr->nfields; i++) {
        json_t *col = json_array_get(values, i);
        assert(json_is_array(col) && json_array_size(col) == fr->nrows);
        json_t *fd = json_array_get(fields, i);
        assert(json_is_string(json_object_get(fd, "type")));
    }
    json_t *meta = json_object_get(json_object_get(j, "schema"), "meta");
    const char *cache = json_string_value(json_object_get(json_object_get(meta, "custom"),
                                                          "cache"));
    assert(cache && !strcmp(cache, cache_result));
    json_decref(j);
}

/* Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil); d may
 * run past the month's end, as timegm allows. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void check_time_string(const char *s)
{
    int64_t ns = 0;
    if (frame_parse_rfc3339(s, &ns) != 0)
        return;
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0, m = 0;
    assert(sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10);
    if (s[10])
        assert(sscanf(s + 11, "%2d:%2d:%2d%n", &h, &mi, &se, &m) == 3 && m == 8);
    int64_t want = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
    /* what int64 nanoseconds can hold, with room for the largest offset (99:99) */
    const int64_t slack = 99 * 3600 + 99 * 60 + 1, lim = INT64_MAX / 1000000000;
    if (want > lim - slack || want < -lim + slack) {
        fprintf(stderr, "fuzz_frame: \"%s\" cannot be int64 ns, yet parsed to %lld\n", s,
                (long long)ns);
        assert(0);
    }
    int64_t got = ns / 1000000000 - (ns % 1000000000 < 0);
    if (got < want - slack || got > want + slack) {
        fprintf(stderr, "fuzz_frame: \"%s\" parsed to %lld ns, not near %lld s\n", s,
                (long long)ns, (long long)want);
        assert(0);
    }
}

/* Checks the strings of the answer (a bounded number of them) as times. */
static void walk_strings(json_t *j, int *budget)
{
    if (--*budget < 0)
        return;
    if (json_is_string(j)) {
        check_time_string(json_string_value(j));
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) walk_strings(v, budget);
    } else if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) walk_strings(v, budget);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t doc_len = nul ? (size_t)(nul - data) : size;
    json_error_t je;
    json_t *doc = json_loadb((const char *)data, doc_len, 0, &je);
    json_t *model = NULL;
    if (nul)
        model = json_loadb((const char *)nul + 1, size - doc_len - 1, 0, &je);
    if (!json_is_object(model)) {
        json_decref(model);
        model = json_object();
    }
    if (!doc) {
        json_decref(model);
        return 0;
    }
    int budget = 256;
    walk_strings(doc, &budget);
    const char *ref = json_string_value(json_object_get(model, "refId"));
    if (!ref)
        ref = "A";

    struct frame fr;
    struct cp_err err = {0};
    memset(&fr, 0x5a, sizeof fr); /* whatever the caller had there */
    int rc = frame_from_json(doc, model, ref, "miss", &fr, &err);
    assert(rc == 0 || rc == CP_EINVAL || rc == CP_ENOMEM);
    if (rc) {
        assert(err.code == rc && err.msg[0] && strlen(err.msg) < sizeof err.msg);
        assert(!fr.fields && !fr.nfields && !fr.name && !fr.meta_json);
        frame_dispose(&fr);
        json_decref(doc);
        json_decref(model);
        return 0;
    }

    assert(fr.name && fr.ref_id && !strcmp(fr.ref_id, ref) && fr.meta_json);
    assert(fr.nfields == 0 || fr.fields);
    for (size_t i = 0; i < fr.nfields; i++)
        check_field(&fr, &fr.fields[i]);
    const char *fmt = json_string_value(json_object_get(model, "format"));
    if (fmt && !strcmp(fmt, "timeseries")) {
        assert(fr.nfields > 0 && fr.fields[0].type == FRAME_TIME);
        assert(!fr.fields[0].valid && !fr.fields[0].nullable);
        for (size_t r = 1; r < fr.nrows; r++)
            assert(fr.fields[0].i64[r - 1] <= fr.fields[0].i64[r]);
    }

    struct cp_buf arrow = {0}, js = {0};
    int arc = frame_arrow_encode(&fr, &arrow);
    if (arc)
        fprintf(stderr, "fuzz_frame: frame_arrow_encode failed: %d\n", arc);
    assert(arc == 0);
    check_arrow(&arrow);
    int jrc = frame_to_json(&fr, &js);
    if (jrc)
        fprintf(stderr, "fuzz_frame: frame_to_json failed: %d\n", jrc);
    assert(jrc == 0);
    check_json(&fr, &js, "miss");

    /* the copy kept in the cache says "hit" and encodes the same way */
    assert(frame_set_cache(&fr, "hit") == 0);
    arrow.len = js.len = 0;
    assert(frame_arrow_encode(&fr, &arrow) == 0);
    check_arrow(&arrow);
    assert(frame_to_json(&fr, &js) == 0);
    check_json(&fr, &js, "hit");

    cp_buf_free(&arrow);
    cp_buf_free(&js);
    frame_dispose(&fr);
    assert(!fr.fields && !fr.name);
    json_decref(doc);
    json_decref(model);
    return 0;
}
