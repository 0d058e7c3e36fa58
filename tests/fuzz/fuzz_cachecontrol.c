/*
 * fuzz_cachecontrol.c - libFuzzer driver for cache_control_parse.
 *
 * Input: a Cache-Control header value (up to the first NUL byte). Whatever the input, the
 * flags are 0 or 1, lifetimes are -1 or whole seconds; the result does not depend on the
 * case of the directives; a canonical header written from the result parses back to the same
 * result; and a lifetime the parser hands out can serve as an entry's ttl: the entry survives
 * the codec every backend stores it with (a lifetime the decoder refuses would make the entry
 * unreadable in Redis: a miss forever).
 */
#include "backend.h"
#include "cache.h"

#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_shape(const struct cache_control *cc)
{
    assert(cc->no_store == 0 || cc->no_store == 1);
    assert(cc->no_cache == 0 || cc->no_cache == 1);
    assert(cc->private_ == 0 || cc->private_ == 1);
    assert(cc->public_ == 0 || cc->public_ == 1);
    assert(cc->max_age_ms == -1 || (cc->max_age_ms >= 0 && cc->max_age_ms % 1000 == 0));
    assert(cc->s_maxage_ms == -1 || (cc->s_maxage_ms >= 0 && cc->s_maxage_ms % 1000 == 0));
}

static int same(const struct cache_control *a, const struct cache_control *b)
{
    return a->no_store == b->no_store && a->no_cache == b->no_cache &&
           a->private_ == b->private_ && a->public_ == b->public_ &&
           a->max_age_ms == b->max_age_ms && a->s_maxage_ms == b->s_maxage_ms;
}

/* An entry whose ttl is the parsed lifetime (as the pipeline builds it) must decode again. */
static void check_storable(int64_t ttl_ms)
{
    if (ttl_ms < 0)
        return;
    static const struct cache_header h[] = {{"Cache-Control", "max-age"}};
    struct cache_entry_spec sp = {.status = 200,
                                  .stored_ms = 1700000000000LL,
                                  .ttl_ms = ttl_ms,
                                  .swr_ms = 60000,
                                  .sie_ms = 3600000,
                                  .path = "/p",
                                  .headers = h,
                                  .nheaders = 1,
                                  .body = "{}",
                                  .body_len = 2};
    struct cache_entry *e = cache_entry_new(&sp), *back = NULL;
    struct cp_buf b = {0};
    assert(e);
    assert(cache_entry_keep_ms(e) >= ttl_ms);
    assert(cache_entry_encode(e, &b) == 0);
    int rc = cache_entry_decode(b.p, b.len, &back);
    if (rc != 0)
        fprintf(stderr, "fuzz_cachecontrol: ttl_ms %lld is refused by cache_entry_decode\n",
                (long long)ttl_ms);
    assert(rc == 0 && back && back->ttl_ms == ttl_ms);
    cache_entry_unref(back);
    cache_entry_unref(e);
    cp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *up = malloc(size + 1), canon[160];
    struct cache_control cc, again;
    if (!s || !up) {
        free(s);
        free(up);
        return 0;
    }
    memcpy(s, data, size);
    s[size] = 0;

    cache_control_parse(s, &cc);
    check_shape(&cc);

    /* directives are case-insensitive and values are digits: case never matters */
    for (size_t i = 0; i <= size; i++)
        up[i] = (char)toupper((unsigned char)s[i]);
    cache_control_parse(up, &again);
    assert(same(&cc, &again));

    /* the same input parses the same way twice (no hidden state) */
    cache_control_parse(s, &again);
    assert(same(&cc, &again));

    /* a canonical header written from the result reads back to it */
    int n = snprintf(canon, sizeof canon, "%s%s%s%s", cc.no_store ? "no-store, " : "",
                     cc.no_cache ? "No-Cache, " : "", cc.private_ ? "PRIVATE, " : "",
                     cc.public_ ? "public, " : "");
    if (cc.max_age_ms >= 0)
        n += snprintf(canon + n, sizeof canon - (size_t)n, "max-age=%lld, ",
                      (long long)(cc.max_age_ms / 1000));
    if (cc.s_maxage_ms >= 0)
        snprintf(canon + n, sizeof canon - (size_t)n, "s-maxage=\"%lld\"",
                 (long long)(cc.s_maxage_ms / 1000));
    cache_control_parse(canon, &again);
    assert(same(&cc, &again));

    /* NULL is "no header" */
    cache_control_parse(NULL, &again);
    assert(again.max_age_ms == -1 && again.s_maxage_ms == -1 && !again.no_store &&
           !again.no_cache && !again.private_ && !again.public_);

    check_storable(cc.max_age_ms);
    check_storable(cc.s_maxage_ms);

    free(up);
    free(s);
    return 0;
}
