/*
 * fuzz_blob.c - libFuzzer driver for the binary frame form split queries cache per piece
 * (frame_blob_decode) and the joining operations run on decoded pieces.
 *
 * Input: any bytes, taken as a blob. Whatever they are, decoding either refuses them with
 * CP_EINVAL or yields a consistent frame (every field has nrows values, names present) that
 * encodes back to exactly the input bytes (the form is canonical, so a cache entry either
 * decodes to what was stored or is refused), with nulls only in nullable fields. A decoded frame is then appended to a second
 * decoding of itself, cut to a time range and sorted; the result stays consistent and the
 * Arrow writer accepts it.
 */
#include "frame.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct frame *f)
{
    assert(f->name && f->ref_id);
    for (size_t i = 0; i < f->nfields; i++) {
        const struct frame_field *fd = &f->fields[i];
        assert(fd->name);
        assert(fd->n == f->nrows);
        assert((unsigned)fd->type <= FRAME_BOOL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame f, g;
    int rc = frame_blob_decode(data, size, &f);
    assert(rc == 0 || rc == CP_EINVAL);
    if (rc)
        return 0;
    check(&f);
    struct cp_buf again = {0};
    rc = frame_blob_encode(&f, &again);
    assert(rc == 0);
    assert(again.len == size && !memcmp(again.p, data, size));
    cp_buf_free(&again);

    rc = frame_blob_decode(data, size, &g);
    assert(rc == 0);
    const char *bad = NULL;
    rc = frame_append(&f, &g, &bad);
    assert(rc == 0); /* the same fields on both sides always join */
    assert(f.nrows == 2 * g.nrows);
    check(&f);
    int t = frame_time_field(&f);
    if (t >= 0 || !f.nrows) {
        int64_t mid = t >= 0 && f.nrows ? f.fields[t].i64[0] : 0;
        rc = frame_keep_time(&f, mid, INT64_MAX);
        assert(rc == 0);
        check(&f);
        for (size_t r = 0; t >= 0 && r < f.nrows; r++)
            assert(f.fields[t].i64[r] >= mid);
    }
    rc = frame_sort_time(&f);
    assert(rc == 0);
    for (size_t r = 1; t >= 0 && r < f.nrows; r++)
        assert(f.fields[t].i64[r - 1] <= f.fields[t].i64[r]);
    struct cp_buf arrow = {0};
    rc = frame_arrow_encode(&f, &arrow);
    assert(rc == 0 || rc == CP_ENOMEM);
    cp_buf_free(&arrow);
    frame_dispose(&f);
    frame_dispose(&g);
    return 0;
}
