/*
 * fuzz_entry.c - libFuzzer driver for the cache entry codec (cache_entry_decode, _encode) and
 * the lifetime arithmetic of decoded entries (cache_entry_keep_ms, cache_entry_freshness).
 *
 * Input: one mode byte, then bytes. Odd mode: the bytes are decoded as they are (a foreign or
 * corrupt Redis value). Even mode: the bytes are the payload and the driver puts a valid
 * header (magic, version, CRC-32C, length) in front, so the fuzzer reaches the payload parser
 * instead of stopping at the checksum. Whatever the input, decode either refuses it or
 * returns an entry that re-encodes to exactly the bytes it came from (the form is canonical)
 * and decodes again to an identical entry; the lifetime sums of a decoded entry never
 * overflow (UBSan), freshness only moves forward with time, and a reader with a shorter
 * lifetime of its own (cache_entry_freshness_for) never finds the entry fresher.
 */
#include "backend.h"
#include "cache.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static const char *first_header(const struct cache_entry *e, const char *name)
{
    for (size_t i = 0; i < e->nheaders; i++)
        if (!strcasecmp(e->headers[i].name, name))
            return e->headers[i].value;
    return NULL;
}

static void check_entry(const struct cache_entry *e)
{
    assert(e->status >= 100 && e->status <= 599);
    assert(e->stored_ms >= 0 && e->ttl_ms >= 0 && e->swr_ms >= 0 && e->sie_ms >= 0);
    assert(e->path && e->headers && e->body);
    assert(e->body[e->body_len] == 0);
    assert(e->nheaders <= 256);
    for (size_t i = 0; i < e->nheaders; i++)
        assert(e->headers[i].name && e->headers[i].value);
    assert(e->etag == first_header(e, "ETag"));
    assert(e->last_modified == first_header(e, "Last-Modified"));
    assert(e->mem_size >= sizeof *e + e->body_len);
}

static void check_same(const struct cache_entry *a, const struct cache_entry *b)
{
    assert(a->status == b->status && a->stored_ms == b->stored_ms && a->ttl_ms == b->ttl_ms &&
           a->swr_ms == b->swr_ms && a->sie_ms == b->sie_ms);
    assert(!strcmp(a->path, b->path));
    assert(a->nheaders == b->nheaders);
    for (size_t i = 0; i < a->nheaders; i++) {
        assert(!strcmp(a->headers[i].name, b->headers[i].name));
        assert(!strcmp(a->headers[i].value, b->headers[i].value));
    }
    assert(a->body_len == b->body_len && !memcmp(a->body, b->body, a->body_len));
    assert((a->etag == NULL) == (b->etag == NULL));
    assert(!a->etag || !strcmp(a->etag, b->etag));
    assert((a->last_modified == NULL) == (b->last_modified == NULL));
    assert(!a->last_modified || !strcmp(a->last_modified, b->last_modified));
}

/* Lifetimes at a few clock readings around the entry's windows; a wall clock reading lies in
 * [0, 2^62) (cp_now_ms), which is what the sums must survive. */
static void check_times(const struct cache_entry *e, const uint8_t *data, size_t size)
{
    int64_t keep = cache_entry_keep_ms(e);
    assert(keep >= e->ttl_ms && keep >= e->ttl_ms + e->swr_ms && keep >= e->ttl_ms + e->sie_ms);
    int64_t now[12] = {0,
                       e->stored_ms,
                       e->stored_ms + e->ttl_ms - 1,
                       e->stored_ms + e->ttl_ms,
                       e->stored_ms + e->ttl_ms + e->swr_ms,
                       e->stored_ms + e->ttl_ms + e->sie_ms,
                       e->stored_ms + keep - 1,
                       e->stored_ms + keep,
                       cp_now_ms(),
                       (int64_t)1 << 61,
                       ((int64_t)1 << 62) - 1,
                       0};
    uint64_t x = 0;
    for (size_t i = 0; i < size && i < 8; i++)
        x = x << 8 | data[size - 1 - i];
    now[11] = (int64_t)(x & (((uint64_t)1 << 62) - 1));
    /* a reader's own lifetime: none, 0, the entry's, or one from the input (up to 2^53) */
    int64_t mine[4] = {-1, 0, e->ttl_ms, (int64_t)(x >> 11)};
    for (int i = 0; i < 12; i++) {
        if (now[i] < 0)
            continue;
        enum cache_freshness f = cache_entry_freshness(e, now[i]);
        assert(f >= CACHE_FRESH && f <= CACHE_EXPIRED);
        for (int k = 0; k < 4; k++) {
            enum cache_freshness g = cache_entry_freshness_for(e, now[i], mine[k]);
            assert(g >= f && g <= CACHE_EXPIRED);
            if (mine[k] < 0 || mine[k] >= e->ttl_ms)
                assert(g == f);
        }
        for (int j = 0; j < 12; j++)
            if (now[j] >= now[i]) /* never fresher later */
                assert(cache_entry_freshness(e, now[j]) >= f);
    }
    /* kept exactly as long as it can serve */
    assert(cache_entry_freshness(e, e->stored_ms + keep) == CACHE_EXPIRED);
    if (keep > 0)
        assert(cache_entry_freshness(e, e->stored_ms + keep - 1) != CACHE_EXPIRED);
    if (e->ttl_ms > 0)
        assert(cache_entry_freshness(e, e->stored_ms) == CACHE_FRESH);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *in = data;
    uint8_t *wrapped = NULL;
    size_t n = size;
    struct cache_entry *e = NULL, *again = NULL;
    struct cp_buf b = {0};

    if (size == 0) {
        assert(cache_entry_decode(data, 0, &e) == CP_EINVAL && !e);
        return 0;
    }
    if (data[0] & 1) {
        in = data + 1;
        n = size - 1;
    } else {
        n = size - 1 + 16;
        wrapped = malloc(n);
        if (!wrapped)
            return 0;
        put32(wrapped, 0x43504531u);
        put32(wrapped + 4, 1);
        put32(wrapped + 8, cache__crc32c(0, data + 1, size - 1));
        put32(wrapped + 12, (uint32_t)(size - 1));
        memcpy(wrapped + 16, data + 1, size - 1);
        in = wrapped;
    }

    int rc = cache_entry_decode(in, n, &e);
    assert(rc == 0 || rc == CP_EINVAL);
    assert((rc == 0) == (e != NULL));
    if (rc == 0) {
        check_entry(e);
        assert(e->body_len <= n);
        /* canonical: re-encoding gives back the input bytes */
        assert(cache_entry_encode(e, &b) == 0);
        assert(b.len == n && !memcmp(b.p, in, n));
        assert(cache_entry_decode(b.p, b.len, &again) == 0);
        check_entry(again);
        check_same(e, again);
        check_times(e, data, size);
        /* any single flipped bit is caught (CRC-32C detects all 1-bit errors) */
        size_t bit = (size_t)data[size - 1] * 131 % (b.len * 8);
        b.p[bit / 8] ^= (char)(1u << (bit % 8));
        struct cache_entry *bad = NULL;
        assert(cache_entry_decode(b.p, b.len, &bad) == CP_EINVAL && !bad);
        /* and so is any truncation */
        assert(cache_entry_decode(b.p, b.len - 1 - data[size - 1] % b.len, &bad) == CP_EINVAL &&
               !bad);
    }
    cache_entry_unref(again);
    cache_entry_unref(e);
    cp_buf_free(&b);
    free(wrapped);
    return 0;
}
