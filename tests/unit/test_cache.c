/*
 * test_cache.c - cache/key.c (key derivation), cache/entry.c (entries, freshness windows and
 * the checksummed codec), cache/cachecontrol.c and cache/coalesce.c (in-process flights: one
 * leader, waiters that receive its outcome through their callbacks, leaving, retries).
 */
#include "backend.h"
#include "cache.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- key derivation ----------------------------------------------------------------------- */

struct key_fixture {
    unsigned char fp[32];
    struct cache_header vary[3];
    char body[16];
    struct cache_key_input in;
};

/* A request with every field set, in user scope so that user and org both count. */
static void key_fixture_init(struct key_fixture *f)
{
    for (int i = 0; i < 32; i++)
        f->fp[i] = (unsigned char)(i * 7 + 3);
    f->vary[0] = (struct cache_header){"Accept", "application/json"};
    f->vary[1] = (struct cache_header){"Accept-Encoding", "gzip"};
    f->vary[2] = (struct cache_header){"Content-Type", "text/plain"};
    memcpy(f->body, "{\"q\":\"deadbeef\"}", 16);
    f->in = (struct cache_key_input){.ds_uid = "dsuid-0001",
                                     .fingerprint = f->fp,
                                     .kind = CACHE_KIND_RESOURCE,
                                     .method = "GET",
                                     .path = "/api/items",
                                     .query = "a=1&b=2&c=3",
                                     .body = f->body,
                                     .body_len = sizeof f->body,
                                     .vary = f->vary,
                                     .nvary = 3,
                                     .scope = CFG_SCOPE_USER,
                                     .user = "alice",
                                     .org_id = 1};
}

static void derive(const struct cache_key_input *in, struct cache_key *k)
{
    memset(k, 0xAA, sizeof *k);
    assert_int_equal(cache_key_derive(in, k), 0);
}

static int same_key(const struct cache_key_input *a, const struct cache_key_input *b)
{
    struct cache_key ka, kb;
    derive(a, &ka);
    derive(b, &kb);
    assert_int_equal(memcmp(ka.h, kb.h, 32) == 0, strcmp(ka.hex, kb.hex) == 0);
    return memcmp(ka.h, kb.h, 32) == 0;
}

static void test_key__stable_and_hex(void **state)
{
    (void)state;
    struct key_fixture f, g;
    key_fixture_init(&f);
    key_fixture_init(&g);
    /* equal content in other buffers: same key, every time */
    char uid[] = "dsuid-0001", path[] = "/api/items", query[] = "a=1&b=2&c=3";
    g.in.ds_uid = uid;
    g.in.path = path;
    g.in.query = query;
    struct cache_key k1, k2;
    derive(&f.in, &k1);
    for (int i = 0; i < 10; i++) {
        derive(&g.in, &k2);
        assert_memory_equal(k1.h, k2.h, 32);
        assert_string_equal(k1.hex, k2.hex);
    }
    assert_int_equal(strlen(k1.hex), 64);
    for (int i = 0; i < 32; i++) {
        char two[3];
        snprintf(two, sizeof two, "%02x", k1.h[i]);
        assert_memory_equal(k1.hex + 2 * i, two, 2); /* lowercase hex of h */
    }
}

/* The key recipe, rebuilt here byte by byte (SPEC.md section 6: length-prefixed fields), so
 * that keys stay what they were: entries in Redis outlive plugin versions. */
struct ref {
    unsigned char b[4096];
    size_t n;
};

static void ref_add(struct ref *r, const void *p, size_t n)
{
    for (int i = 0; i < 8; i++)
        r->b[r->n++] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void ref_str(struct ref *r, const char *s) { ref_add(r, s, strlen(s)); }

static void test_key__known_recipe(void **state)
{
    (void)state;
    char longpath[1500];
    memset(longpath, 'p', sizeof longpath - 1); /* longer than any internal buffer */
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = 0;
    const struct cache_header vary[] = {{"Accept-Language", "de"}, {"ACCEPT", "text/csv"}};
    const unsigned char body[] = "{\"q\":1}";
    struct cache_key_input in = {.ds_uid = "ds1", .kind = CACHE_KIND_RESOURCE, .method = "POST",
                                 .path = longpath, .query = "b=2&&a=1", .body = body,
                                 .body_len = sizeof body - 1, .vary = vary, .nvary = 2,
                                 .scope = CFG_SCOPE_ORG, .org_id = 7, .variant = "frame-v1"};
    struct cache_key k;
    derive(&in, &k);

    struct ref r = {.n = 0};
    ref_str(&r, "cachingproxy-key-v1");
    ref_str(&r, "ds1");
    ref_add(&r, "", 0); /* no fingerprint */
    unsigned char kind = CACHE_KIND_RESOURCE;
    ref_add(&r, &kind, 1);
    ref_str(&r, "POST");
    ref_str(&r, longpath);
    size_t np = 2;
    ref_add(&r, &np, sizeof np);
    ref_str(&r, "a=1");
    ref_str(&r, "b=2");
    unsigned char bh[32];
    unsigned int bl = 0;
    EVP_Digest(body, sizeof body - 1, bh, &bl, EVP_sha256(), NULL);
    ref_add(&r, bh, 32);
    size_t nv = 2;
    ref_add(&r, &nv, sizeof nv);
    ref_str(&r, "accept"); /* names lower-cased and sorted */
    ref_str(&r, "text/csv");
    ref_str(&r, "accept-language");
    ref_str(&r, "de");
    unsigned char scope = CFG_SCOPE_ORG;
    ref_add(&r, &scope, 1);
    int64_t org = 7;
    ref_add(&r, &org, sizeof org);
    unsigned char has_variant = 1;
    ref_add(&r, &has_variant, 1);
    ref_str(&r, "frame-v1");
    unsigned char want[32];
    EVP_Digest(r.b, r.n, want, &bl, EVP_sha256(), NULL);
    assert_memory_equal(k.h, want, 32);
}

static void test_key__no_input_in_clear(void **state)
{
    (void)state;
    struct key_fixture f;
    key_fixture_init(&f);
    /* inputs made of hex digits, so that they could show up in a hex rendering */
    f.in.ds_uid = "cafebabe0123";
    f.in.path = "/deadbeef4567";
    f.in.query = "abcdef=89abcdef";
    f.in.user = "feedface9876";
    struct cache_key k;
    derive(&f.in, &k);
    const char *inputs[] = {"cafebabe0123", "deadbeef4567", "abcdef=89abcdef", "89abcdef",
                            "feedface9876", "alice", "GET", "gzip", "deadbeef\""};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        assert_null(strstr(k.hex, inputs[i]));
        assert_null(memmem(k.h, 32, inputs[i], strlen(inputs[i])));
    }
}

static void test_key__query_order_insensitive(void **state)
{
    (void)state;
    struct key_fixture f, g;
    key_fixture_init(&f);
    key_fixture_init(&g);
    f.in.query = "a=1&b=2";
    g.in.query = "b=2&a=1";
    assert_true(same_key(&f.in, &g.in));
    f.in.query = "x=1&y=2&z=3";
    g.in.query = "z=3&x=1&y=2";
    assert_true(same_key(&f.in, &g.in));
    f.in.query = "a2=1&sort=x&a=1&sort=y";
    g.in.query = "sort=x&a=1&sort=y&a2=1";
    assert_true(same_key(&f.in, &g.in));
    /* but the values of one name keep their order: an API may read them in order */
    f.in.query = "sort=name&sort=date";
    g.in.query = "sort=date&sort=name";
    assert_false(same_key(&f.in, &g.in));
    /* NULL and empty query are the same request */
    f.in.query = NULL;
    g.in.query = "";
    assert_true(same_key(&f.in, &g.in));
}

static void test_key__sensitive_to_every_field(void **state)
{
    (void)state;
    struct key_fixture base, f;
    key_fixture_init(&base);
    struct cache_key kb;
    derive(&base.in, &kb);
#define DIFFERS(mutation)                                                                      \
    do {                                                                                       \
        key_fixture_init(&f);                                                                  \
        mutation;                                                                              \
        assert_false(same_key(&base.in, &f.in));                                               \
    } while (0)
    DIFFERS(f.in.ds_uid = "dsuid-0002");
    DIFFERS(f.fp[31] ^= 1);
    DIFFERS(f.fp[0] ^= 0x80);
    DIFFERS(f.in.fingerprint = NULL);
    DIFFERS(f.in.kind = CACHE_KIND_QUERY);
    DIFFERS(f.in.method = "HEAD");
    DIFFERS(f.in.method = "get");
    DIFFERS(f.in.path = "/api/items/");
    DIFFERS(f.in.path = "/api/Items");
    DIFFERS(f.in.query = "a=2&b=2&c=3");
    DIFFERS(f.in.query = "a=1&b=3&c=3");
    DIFFERS(f.in.query = "a=1&b=2&c=4");
    DIFFERS(f.in.query = "a=1&b=2");
    DIFFERS(f.in.query = "a=1&b=2&c=3&d=4");
    DIFFERS(f.in.query = "a=1&b=2&C=3");
    DIFFERS(f.body[15] ^= 1);
    DIFFERS(f.body[0] ^= 1);
    DIFFERS(f.in.body_len = 15);
    DIFFERS(f.in.body_len = 0);
    DIFFERS(f.vary[0].value = "application/xml");
    DIFFERS(f.vary[1].value = "br");
    DIFFERS(f.vary[2].value = "text/plain; charset=utf-8");
    DIFFERS(f.vary[1].name = "X-Other");
    DIFFERS(f.in.nvary = 2);
    DIFFERS(f.in.nvary = 0);
    DIFFERS(f.in.scope = CFG_SCOPE_SHARED);
    DIFFERS(f.in.scope = CFG_SCOPE_ORG);
    DIFFERS(f.in.user = "bob");
    DIFFERS(f.in.user = "Alice");
    DIFFERS(f.in.user = NULL);
    DIFFERS(f.in.org_id = 2);
    /* fields do not bleed into their neighbours */
    DIFFERS((f.in.ds_uid = "dsuid-000", f.in.method = "1GET"));
    DIFFERS((f.vary[0].name = "Acceptapplication/json", f.vary[0].value = ""));
    DIFFERS((f.in.path = "/api/items?a=1&b=2&c=3", f.in.query = NULL));
#undef DIFFERS

    /* org scope: the org counts, the user does not */
    struct key_fixture a, b;
    key_fixture_init(&a);
    key_fixture_init(&b);
    a.in.scope = b.in.scope = CFG_SCOPE_ORG;
    b.in.user = "bob";
    assert_true(same_key(&a.in, &b.in));
    b.in.user = NULL;
    assert_true(same_key(&a.in, &b.in));
    b.in.org_id = 5;
    assert_false(same_key(&a.in, &b.in));

    /* shared scope: neither the user nor the org counts */
    key_fixture_init(&a);
    key_fixture_init(&b);
    a.in.scope = b.in.scope = CFG_SCOPE_SHARED;
    b.in.user = "bob";
    assert_true(same_key(&a.in, &b.in));
    b.in.user = NULL;
    b.in.org_id = 42;
    assert_true(same_key(&a.in, &b.in));
}

static void test_key__vary_names_case_insensitive_and_unordered(void **state)
{
    (void)state;
    struct key_fixture f, g;
    key_fixture_init(&f);
    key_fixture_init(&g);
    g.vary[0].name = "ACCEPT";
    g.vary[1].name = "accept-encoding";
    g.vary[2].name = "content-TYPE";
    assert_true(same_key(&f.in, &g.in));
    /* order of the headers does not matter either */
    struct cache_header rev[3] = {g.vary[2], g.vary[0], g.vary[1]};
    g.in.vary = rev;
    assert_true(same_key(&f.in, &g.in));
    /* values stay case-sensitive */
    key_fixture_init(&g);
    g.vary[1].value = "GZIP";
    assert_false(same_key(&f.in, &g.in));
}

static void test_key__long_vary_names_not_truncated(void **state)
{
    (void)state;
    /* two forwarded headers whose names share their first 150 characters */
    char n1[201], n2[201];
    memset(n1, 'x', 200);
    n1[200] = 0;
    memcpy(n2, n1, sizeof n1);
    n2[150] = 'y';
    struct key_fixture f, g;
    key_fixture_init(&f);
    key_fixture_init(&g);
    struct cache_header h1 = {n1, "same"}, h2 = {n2, "same"};
    f.in.vary = &h1;
    g.in.vary = &h2;
    f.in.nvary = g.in.nvary = 1;
    assert_false(same_key(&f.in, &g.in));
}

/* ---- entries: build, codec ---------------------------------------------------------------- */

static const unsigned char binary_body[] = {0x00, 0xff, 0x00, 0x01, 'a', 0x80, 0x7f, 0x00,
                                            '\r', '\n', 0xfe, 0x00};

static struct cache_entry *sample_entry(const void *body, size_t body_len)
{
    static const struct cache_header hs[] = {{"Content-Type", "application/octet-stream"},
                                             {"ETag", "\"v1-abc\""},
                                             {"Last-Modified", "Tue, 01 Oct 2024 10:00:00 GMT"},
                                             {"X-Empty", ""},
                                             {"X-Dup", "1"},
                                             {"X-Dup", "2"}};
    struct cache_entry_spec sp = {.status = 203,
                                  .stored_ms = 1727776800123LL,
                                  .ttl_ms = 30000,
                                  .swr_ms = 5000,
                                  .sie_ms = 600000,
                                  .path = "/api/v1/items/\xc3\xa9",
                                  .headers = hs,
                                  .nheaders = sizeof hs / sizeof *hs,
                                  .body = body,
                                  .body_len = body_len};
    struct cache_entry *e = cache_entry_new(&sp);
    assert_non_null(e);
    return e;
}

static void assert_entries_equal(const struct cache_entry *a, const struct cache_entry *b)
{
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->stored_ms, b->stored_ms);
    assert_int_equal(a->ttl_ms, b->ttl_ms);
    assert_int_equal(a->swr_ms, b->swr_ms);
    assert_int_equal(a->sie_ms, b->sie_ms);
    assert_string_equal(a->path, b->path);
    assert_int_equal(a->nheaders, b->nheaders);
    for (size_t i = 0; i < a->nheaders; i++) {
        assert_string_equal(a->headers[i].name, b->headers[i].name);
        assert_string_equal(a->headers[i].value, b->headers[i].value);
    }
    assert_int_equal(a->body_len, b->body_len);
    if (a->body_len)
        assert_memory_equal(a->body, b->body, a->body_len);
    assert_int_equal(b->body[b->body_len], 0);
    assert_int_equal(!a->etag, !b->etag);
    if (a->etag)
        assert_string_equal(a->etag, b->etag);
    assert_int_equal(!a->last_modified, !b->last_modified);
    if (a->last_modified)
        assert_string_equal(a->last_modified, b->last_modified);
}

/* Encodes e into an exactly sized heap buffer, so ASan sees any read past the end. */
static unsigned char *encode(const struct cache_entry *e, size_t *len)
{
    struct cp_buf b = {0};
    assert_int_equal(cache_entry_encode(e, &b), 0);
    assert_true(b.len > 16);
    unsigned char *p = malloc(b.len);
    assert_non_null(p);
    memcpy(p, b.p, b.len);
    *len = b.len;
    cp_buf_free(&b);
    return p;
}

/* Decodes a private, exactly sized copy of p[0..n). */
static int decode_copy(const unsigned char *p, size_t n, struct cache_entry **out)
{
    unsigned char *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    int rc = cache_entry_decode(c, n, out);
    free(c);
    return rc;
}

static void test_entry__new_fields_and_refs(void **state)
{
    (void)state;
    struct cache_entry *e = sample_entry(binary_body, sizeof binary_body);
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_int_equal(e->status, 203);
    assert_string_equal(e->etag, "\"v1-abc\"");
    assert_string_equal(e->last_modified, "Tue, 01 Oct 2024 10:00:00 GMT");
    assert_memory_equal(e->body, binary_body, sizeof binary_body);
    assert_true(e->mem_size >= sizeof *e + sizeof binary_body);
    assert_ptr_equal(cache_entry_ref(e), e);
    assert_int_equal(atomic_load(&e->refs), 2);
    cache_entry_unref(e);
    cache_entry_unref(e);
    cache_entry_unref(NULL);

    struct cache_entry_spec none = {.status = 200, .path = NULL, .body = NULL, .body_len = 0};
    e = cache_entry_new(&none);
    assert_non_null(e);
    assert_string_equal(e->path, "");
    assert_null(e->etag);
    assert_null(e->last_modified);
    assert_int_equal(e->body_len, 0);
    cache_entry_unref(e);
}

static void test_entry__codec_round_trip(void **state)
{
    (void)state;
    const struct {
        const void *body;
        size_t len;
    } bodies[] = {{binary_body, sizeof binary_body}, {"", 0}, {"{\"a\":1}", 7}};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        struct cache_entry *e = sample_entry(bodies[i].body, bodies[i].len);
        size_t n;
        unsigned char *p = encode(e, &n);
        struct cache_entry *d = NULL;
        assert_int_equal(decode_copy(p, n, &d), 0);
        assert_non_null(d);
        assert_int_equal(atomic_load(&d->refs), 1);
        assert_entries_equal(e, d);
        /* re-encoding the decoded entry gives the same bytes */
        size_t n2;
        unsigned char *p2 = encode(d, &n2);
        assert_int_equal(n, n2);
        assert_memory_equal(p, p2, n);
        free(p2);
        free(p);
        cache_entry_unref(d);
        cache_entry_unref(e);
    }

    /* no headers, empty path, a large body, the earliest stored time (times before 1970 are
     * refused as foreign) */
    unsigned char *big = malloc(200000);
    assert_non_null(big);
    uint64_t x = 1;
    for (size_t i = 0; i < 200000; i++)
        big[i] = (unsigned char)splitmix(&x);
    struct cache_entry_spec sp = {.status = 404, .stored_ms = 0, .ttl_ms = 0, .path = "",
                                  .body = big, .body_len = 200000};
    struct cache_entry *e = cache_entry_new(&sp), *d = NULL;
    assert_non_null(e);
    size_t n;
    unsigned char *p = encode(e, &n);
    assert_int_equal(decode_copy(p, n, &d), 0);
    assert_entries_equal(e, d);
    free(p);
    free(big);
    cache_entry_unref(d);
    cache_entry_unref(e);

    /* encode appends to what the buffer already holds */
    e = sample_entry("xyz", 3);
    struct cp_buf b = {0};
    assert_int_equal(cp_buf_add(&b, "prefix", 6), 0);
    assert_int_equal(cache_entry_encode(e, &b), 0);
    assert_int_equal(decode_copy((unsigned char *)b.p + 6, b.len - 6, &d), 0);
    assert_entries_equal(e, d);
    cp_buf_free(&b);
    cache_entry_unref(d);
    cache_entry_unref(e);
}

static void test_entry__every_truncation_rejected(void **state)
{
    (void)state;
    struct cache_entry *e = sample_entry(binary_body, sizeof binary_body);
    size_t n;
    unsigned char *p = encode(e, &n);
    for (size_t len = 0; len < n; len++) {
        struct cache_entry *d = (struct cache_entry *)1;
        assert_int_equal(decode_copy(p, len, &d), CP_EINVAL);
        assert_null(d);
    }
    /* trailing bytes are not ours either */
    unsigned char *longer = malloc(n + 1);
    assert_non_null(longer);
    memcpy(longer, p, n);
    longer[n] = 0;
    struct cache_entry *d = (struct cache_entry *)1;
    assert_int_equal(decode_copy(longer, n + 1, &d), CP_EINVAL);
    assert_null(d);
    free(longer);
    free(p);
    cache_entry_unref(e);
}

static void test_entry__every_byte_flip_rejected(void **state)
{
    (void)state;
    const struct {
        const void *body;
        size_t len;
    } bodies[] = {{binary_body, sizeof binary_body}, {"", 0}};
    for (size_t b = 0; b < 2; b++) {
        struct cache_entry *e = sample_entry(bodies[b].body, bodies[b].len);
        size_t n;
        unsigned char *p = encode(e, &n);
        unsigned char *c = malloc(n);
        assert_non_null(c);
        for (size_t i = 0; i < n; i++) {
            for (unsigned x = 1; x < 256; x++) {
                memcpy(c, p, n);
                c[i] ^= (unsigned char)x;
                struct cache_entry *d = (struct cache_entry *)1;
                int rc = cache_entry_decode(c, n, &d);
                if (rc != CP_EINVAL || d)
                    fail_msg("byte %zu ^ 0x%02x of %zu accepted (rc %d)", i, x, n, rc);
            }
        }
        free(c);
        free(p);
        cache_entry_unref(e);
    }
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Recomputes the header's checksum and length after the payload was edited. */
static void reseal(unsigned char *p, size_t n)
{
    put32(p + 8, cache__crc32c(0, p + 16, n - 16));
    put32(p + 12, (uint32_t)(n - 16));
}

static void test_entry__foreign_magic_and_version_rejected(void **state)
{
    (void)state;
    struct cache_entry *e = sample_entry("body", 4);
    size_t n;
    unsigned char *p = encode(e, &n);
    struct cache_entry *d = NULL;
    assert_int_equal(decode_copy(p, n, &d), 0);
    cache_entry_unref(d);

    uint32_t magic = get32(p), version = get32(p + 4);
    /* the header is outside the checksum: these edits keep the CRC valid */
    const uint32_t magics[] = {0, magic ^ 1, magic ^ 0x80000000u, 0x31455043u, 0xffffffffu};
    for (size_t i = 0; i < sizeof magics / sizeof *magics; i++) {
        put32(p, magics[i]);
        d = (struct cache_entry *)1;
        assert_int_equal(decode_copy(p, n, &d), CP_EINVAL);
        assert_null(d);
    }
    put32(p, magic);
    const uint32_t versions[] = {0, version + 1, version + 0x10000, 0xffffffffu};
    for (size_t i = 0; i < sizeof versions / sizeof *versions; i++) {
        put32(p + 4, versions[i]);
        d = (struct cache_entry *)1;
        assert_int_equal(decode_copy(p, n, &d), CP_EINVAL);
        assert_null(d);
    }
    put32(p + 4, version);
    assert_int_equal(decode_copy(p, n, &d), 0);
    cache_entry_unref(d);
    free(p);
    cache_entry_unref(e);
}

/* Payloads that pass the checksum but are not well formed are still rejected. */
static void test_entry__resealed_malformed_payloads_rejected(void **state)
{
    (void)state;
    struct cache_entry *e = sample_entry("body", 4);
    size_t n;
    unsigned char *orig = encode(e, &n);
    unsigned char *p = malloc(n);
    assert_non_null(p);
    /* payload offsets: status 16, stored 20, ttl 28, swr 36, sie 44, path length 52 */
    const size_t path_len_at = 52;
    size_t path_len = get32(orig + path_len_at);
    size_t nh_at = path_len_at + 4 + path_len;
    const struct {
        size_t at;
        uint32_t v;
    } edits[] = {
        {16, 0},           {16, 99},          {16, 600},        {16, 0xffffffffu},
        {32, 0x80000000u}, {40, 0x80000000u}, {48, 0x80000000u},
        {path_len_at, 0xffffffffu},           {path_len_at, (uint32_t)n},
        {nh_at, 257},      {nh_at, 0xffffffffu}, {nh_at, 7},    {nh_at, 5},
        {n - 4 - 4, 5},    {n - 4 - 4, 3},    {n - 4 - 4, 0xffffffffu},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        memcpy(p, orig, n);
        put32(p + edits[i].at, edits[i].v);
        reseal(p, n);
        struct cache_entry *d = (struct cache_entry *)1;
        int rc = cache_entry_decode(p, n, &d);
        if (rc != CP_EINVAL || d)
            fail_msg("edit %zu (u32 %u at %zu) accepted", i, edits[i].v, edits[i].at);
    }
    /* an embedded NUL in the path is not something the encoder writes */
    memcpy(p, orig, n);
    p[path_len_at + 4 + 1] = 0;
    reseal(p, n);
    struct cache_entry *d = (struct cache_entry *)1;
    assert_int_equal(cache_entry_decode(p, n, &d), CP_EINVAL);
    assert_null(d);
    free(p);
    free(orig);
    cache_entry_unref(e);
}

/* Freshness and keep time of whatever the codec accepts must be computable: a Redis value is
 * input we do not control, and the pipeline evaluates every decoded entry. */
static void test_entry__decoded_extreme_times_are_safe(void **state)
{
    (void)state;
    struct cache_entry *e = sample_entry("x", 1);
    size_t n;
    unsigned char *orig = encode(e, &n);
    unsigned char *p = malloc(n);
    assert_non_null(p);
    const int64_t big = INT64_MAX;
    const struct {
        int64_t stored, ttl, swr, sie;
    } cases[] = {{0, big, big, big},   {0, big, 1, 0},       {0, 1, big, big},
                 {INT64_MIN, 1000, 0, 0}, {big, 1000, 1000, 1000}, {0, big / 2, big / 2 + 2, 0}};
    const int64_t nows[] = {0, 1727776800000LL, INT64_MAX / 4};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(p, orig, n);
        int64_t v[4] = {cases[i].stored, cases[i].ttl, cases[i].swr, cases[i].sie};
        for (int f = 0; f < 4; f++) {
            put32(p + 20 + 8 * f, (uint32_t)(uint64_t)v[f]);
            put32(p + 24 + 8 * f, (uint32_t)((uint64_t)v[f] >> 32));
        }
        reseal(p, n);
        struct cache_entry *d = NULL;
        if (cache_entry_decode(p, n, &d) != 0)
            continue; /* refusing such an entry is fine */
        int64_t keep = cache_entry_keep_ms(d);
        if (keep < d->ttl_ms)
            fail_msg("case %zu: keep_ms %lld < ttl_ms %lld", i, (long long)keep,
                     (long long)d->ttl_ms);
        for (size_t k = 0; k < sizeof nows / sizeof *nows; k++)
            (void)cache_entry_freshness(d, nows[k]);
        cache_entry_unref(d);
    }
    free(p);
    free(orig);
    cache_entry_unref(e);
}

/* Random bytes, random payloads behind a valid header, and mutated valid encodings resealed
 * with a correct checksum: decode never crashes, never reads out of bounds, and anything it
 * accepts is a well-formed entry. */
static void test_entry__random_garbage_never_crashes(void **state)
{
    (void)state;
    struct cache_entry *e = sample_entry(binary_body, sizeof binary_body);
    size_t vn;
    unsigned char *valid = encode(e, &vn);
    uint64_t x = 0x5eed;
    size_t accepted = 0;
    for (int iter = 0; iter < 100000; iter++) {
        uint64_t r = splitmix(&x);
        size_t n;
        unsigned char *p;
        switch (iter % 4) {
        case 0: /* plain random bytes */
            n = r % 300;
            p = malloc(n ? n : 1);
            assert_non_null(p);
            for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)splitmix(&x);
            break;
        case 1: /* a valid header around a random payload */
            n = 16 + r % 300;
            p = malloc(n);
            assert_non_null(p);
            memcpy(p, valid, 8);
            for (size_t i = 16; i < n; i++) {
                uint64_t v = splitmix(&x);
                p[i] = (unsigned char)(v & (v & 0x100 ? 0x0f : 0xff)); /* many small values */
            }
            reseal(p, n);
            break;
        default: /* a valid encoding, a few bytes changed or cut, resealed */
            n = iter % 4 == 3 ? 16 + (size_t)(r % (vn - 15)) : vn;
            p = malloc(n);
            assert_non_null(p);
            memcpy(p, valid, n);
            for (int k = 0, m = 1 + (int)(r >> 32) % 4; k < m && n > 16; k++)
                p[16 + splitmix(&x) % (n - 16)] = (unsigned char)splitmix(&x);
            reseal(p, n);
            break;
        }
        struct cache_entry *d = (struct cache_entry *)1;
        int rc = cache_entry_decode(p, n, &d);
        if (rc == 0) {
            assert_non_null(d);
            assert_true(d->status >= 100 && d->status <= 599);
            assert_true(d->nheaders <= 256);
            assert_true(d->body_len < n);
            accepted++;
            cache_entry_unref(d);
        } else {
            assert_int_equal(rc, CP_EINVAL);
            assert_null(d);
        }
        free(p);
    }
    assert_true(accepted > 0); /* the resealed mutations do reach the payload parser */
    free(valid);
    cache_entry_unref(e);
}

/* ---- freshness windows -------------------------------------------------------------------- */

static struct cache_entry *timed_entry(int64_t stored, int64_t ttl, int64_t swr, int64_t sie)
{
    struct cache_entry_spec sp = {.status = 200, .stored_ms = stored, .ttl_ms = ttl,
                                  .swr_ms = swr, .sie_ms = sie, .path = "/x"};
    struct cache_entry *e = cache_entry_new(&sp);
    assert_non_null(e);
    return e;
}

static void test_entry__freshness_windows(void **state)
{
    (void)state;
    const int64_t t0 = 1727776800000LL;
    /* ttl 100, swr 50, sie 200 */
    struct cache_entry *e = timed_entry(t0, 100, 50, 200);
    const struct {
        int64_t at;
        enum cache_freshness f;
    } a[] = {{-1000, CACHE_FRESH},      {0, CACHE_FRESH},       {99, CACHE_FRESH},
             {100, CACHE_STALE_SWR},    {149, CACHE_STALE_SWR}, {150, CACHE_STALE_SIE},
             {299, CACHE_STALE_SIE},    {300, CACHE_EXPIRED},   {1000000, CACHE_EXPIRED}};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++)
        if (cache_entry_freshness(e, t0 + a[i].at) != a[i].f)
            fail_msg("ttl100/swr50/sie200 at +%lld: %d, expected %d", (long long)a[i].at,
                     cache_entry_freshness(e, t0 + a[i].at), a[i].f);
    assert_int_equal(cache_entry_keep_ms(e), 300);
    cache_entry_unref(e);

    /* swr longer than sie: the stale-if-error window is inside the revalidation window */
    e = timed_entry(t0, 100, 200, 50);
    assert_int_equal(cache_entry_freshness(e, t0 + 99), CACHE_FRESH);
    assert_int_equal(cache_entry_freshness(e, t0 + 100), CACHE_STALE_SWR);
    assert_int_equal(cache_entry_freshness(e, t0 + 299), CACHE_STALE_SWR);
    assert_int_equal(cache_entry_freshness(e, t0 + 300), CACHE_EXPIRED);
    assert_int_equal(cache_entry_keep_ms(e), 300);
    cache_entry_unref(e);

    /* no stale windows */
    e = timed_entry(t0, 100, 0, 0);
    assert_int_equal(cache_entry_freshness(e, t0 + 99), CACHE_FRESH);
    assert_int_equal(cache_entry_freshness(e, t0 + 100), CACHE_EXPIRED);
    assert_int_equal(cache_entry_keep_ms(e), 100);
    cache_entry_unref(e);

    /* only stale-if-error */
    e = timed_entry(t0, 1000, 0, 60000);
    assert_int_equal(cache_entry_freshness(e, t0 + 999), CACHE_FRESH);
    assert_int_equal(cache_entry_freshness(e, t0 + 1000), CACHE_STALE_SIE);
    assert_int_equal(cache_entry_freshness(e, t0 + 60999), CACHE_STALE_SIE);
    assert_int_equal(cache_entry_freshness(e, t0 + 61000), CACHE_EXPIRED);
    assert_int_equal(cache_entry_keep_ms(e), 61000);
    cache_entry_unref(e);

    /* ttl 0: never fresh */
    e = timed_entry(t0, 0, 0, 0);
    assert_int_equal(cache_entry_freshness(e, t0), CACHE_EXPIRED);
    assert_int_equal(cache_entry_keep_ms(e), 0);
    cache_entry_unref(e);
}

/* ---- Cache-Control ------------------------------------------------------------------------ */

static void test_cachecontrol__table(void **state)
{
    (void)state;
    const struct {
        const char *v;
        int no_store, no_cache, priv, pub;
        int64_t max_age, s_maxage;
    } t[] = {
        {NULL, 0, 0, 0, 0, -1, -1},
        {"", 0, 0, 0, 0, -1, -1},
        {" , ,", 0, 0, 0, 0, -1, -1},
        {"no-store", 1, 0, 0, 0, -1, -1},
        {"no-cache", 0, 1, 0, 0, -1, -1},
        {"private", 0, 0, 1, 0, -1, -1},
        {"public", 0, 0, 0, 1, -1, -1},
        {"max-age=60", 0, 0, 0, 0, 60000, -1},
        {"max-age=0", 0, 0, 0, 0, 0, -1},
        {"s-maxage=30", 0, 0, 0, 0, -1, 30000},
        {"max-age=\"60\"", 0, 0, 0, 0, 60000, -1},
        {"s-maxage=\"7\"", 0, 0, 0, 0, -1, 7000},
        {"  max-age=5  ", 0, 0, 0, 0, 5000, -1},
        {"\tno-cache ,\tmax-age=5\t", 0, 1, 0, 0, 5000, -1},
        {"public,max-age=60,s-maxage=120", 0, 0, 0, 1, 60000, 120000},
        {"public, max-age=60, s-maxage=120", 0, 0, 0, 1, 60000, 120000},
        {"NO-STORE", 1, 0, 0, 0, -1, -1},
        {"No-Cache, PRIVATE", 0, 1, 1, 0, -1, -1},
        {"Max-Age=10, S-MAXAGE=20, Public", 0, 0, 0, 1, 10000, 20000},
        {"no-store, no-cache, private, public, max-age=1, s-maxage=2", 1, 1, 1, 1, 1000, 2000},
        {"no-cache=\"Set-Cookie\", max-age=3", 0, 1, 0, 0, 3000, -1},
        {"private=\"X-User\"", 0, 0, 1, 0, -1, -1},
        {"must-revalidate, foo=bar, max-age=3, proxy-revalidate", 0, 0, 0, 0, 3000, -1},
        /* malformed numbers */
        {"max-age=abc", 0, 0, 0, 0, -1, -1},
        {"max-age=", 0, 0, 0, 0, -1, -1},
        {"max-age", 0, 0, 0, 0, -1, -1},
        {"max-age=-5", 0, 0, 0, 0, -1, -1},
        {"max-age=+5", 0, 0, 0, 0, -1, -1},
        {"max-age=1.5", 0, 0, 0, 0, -1, -1},
        {"max-age=5x", 0, 0, 0, 0, -1, -1},
        {"max-age=0x10", 0, 0, 0, 0, -1, -1},
        {"max-age=\"\"", 0, 0, 0, 0, -1, -1},
        {"max-age=\"", 0, 0, 0, 0, -1, -1},
        {"s-maxage=ten, max-age=10", 0, 0, 0, 0, 10000, -1},
        {"s-maxage=1 0", 0, 0, 0, 0, -1, -1},
        /* names that only look like directives */
        {"max-agex=5, no-stores, privately, s-maxage2=4", 0, 0, 0, 0, -1, -1},
        {"xno-cache", 0, 0, 0, 0, -1, -1},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        struct cache_control cc;
        memset(&cc, 0x5a, sizeof cc);
        cache_control_parse(t[i].v, &cc);
        if (cc.no_store != t[i].no_store || cc.no_cache != t[i].no_cache ||
            cc.private_ != t[i].priv || cc.public_ != t[i].pub || cc.max_age_ms != t[i].max_age ||
            cc.s_maxage_ms != t[i].s_maxage)
            fail_msg("\"%s\": store %d cache %d private %d public %d max-age %lld s-maxage %lld",
                     t[i].v ? t[i].v : "(null)", cc.no_store, cc.no_cache, cc.private_,
                     cc.public_, (long long)cc.max_age_ms, (long long)cc.s_maxage_ms);
    }
    /* a huge number neither overflows nor turns negative */
    struct cache_control cc;
    cache_control_parse("max-age=99999999999999999999999999", &cc);
    assert_true(cc.max_age_ms > 0);
}

/* ---- coalescing --------------------------------------------------------------------------- */

static void key_from(struct cache_key *k, unsigned char first, unsigned char last)
{
    memset(k, 0, sizeof *k);
    for (int i = 0; i < 32; i++)
        k->h[i] = (unsigned char)(i * 13 + 1);
    k->h[0] = first;
    k->h[31] = last;
}

/* A waiter that records what it was handed. */
struct rec_waiter {
    struct cache_waiter w;
    int calls;
    struct cache_outcome got;
    /* on RETRY: join again at once (as a call does), recording whether it then leads */
    struct cache_flights *rejoin;
    const struct cache_key *key;
    int rejoined;
};

static void rec_fn(struct cache_waiter *w, struct cache_outcome *o)
{
    struct rec_waiter *r = w->ctx;
    r->calls++;
    r->got = *o;
    if (o->kind == CACHE_OUTCOME_RETRY && r->rejoin)
        r->rejoined = cache_flight_join(r->rejoin, r->key, &r->w);
}

static void rec_init(struct rec_waiter *r)
{
    memset(r, 0, sizeof *r);
    r->w.fn = rec_fn;
    r->w.ctx = r;
}

static void test_coalesce__one_leader_others_get_its_entry(void **state)
{
    (void)state;
    struct cache_flights *f = cache_flights_new();
    assert_non_null(f);
    struct cache_key k;
    key_from(&k, 9, 9);
    struct rec_waiter w[7];
    assert_int_equal(cache_flight_join(f, &k, &w[0].w), 1); /* the first leads */
    for (int i = 0; i < 7; i++) {
        rec_init(&w[i]);
        assert_int_equal(cache_flight_join(f, &k, &w[i].w), 0);
    }
    assert_int_equal(cache_flight_waiters(f, &k), 7);
    struct cache_entry *e = sample_entry("shared answer", 13);
    struct cache_outcome o = {.kind = CACHE_OUTCOME_ANSWER, .e = e, .transformed = 1};
    cache_flight_done(f, &k, &o);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].got.kind, CACHE_OUTCOME_ANSWER);
        assert_ptr_equal(w[i].got.e, e);
        assert_int_equal(w[i].got.transformed, 1);
    }
    /* each waiter holds one reference; the flight kept none */
    assert_int_equal(atomic_load(&e->refs), 1 + 7);
    for (int i = 0; i < 7; i++)
        cache_outcome_dispose(&w[i].got);
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_int_equal(cache_flight_waiters(f, &k), 0);
    /* the flight is over: the next caller leads a new one */
    struct rec_waiter next;
    rec_init(&next);
    assert_int_equal(cache_flight_join(f, &k, &next.w), 1);
    cache_flight_done(f, &k, NULL);
    assert_int_equal(next.calls, 0);
    cache_entry_unref(e);
    cache_flights_free(f);
}

static void test_coalesce__error_handed_to_every_waiter(void **state)
{
    (void)state;
    struct cache_flights *f = cache_flights_new();
    struct cache_key k;
    key_from(&k, 3, 3);
    struct rec_waiter w[3];
    assert_int_equal(cache_flight_join(f, &k, &w[0].w), 1);
    for (int i = 0; i < 3; i++) {
        rec_init(&w[i]);
        assert_int_equal(cache_flight_join(f, &k, &w[i].w), 0);
    }
    struct cache_outcome o = {.kind = CACHE_OUTCOME_ERROR, .code = CP_ETIMEDOUT,
                              .msg = "upstream u did not answer within 2 s"};
    cache_flight_done(f, &k, &o);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_int_equal(w[i].got.kind, CACHE_OUTCOME_ERROR);
        assert_int_equal(w[i].got.code, CP_ETIMEDOUT);
        assert_string_equal(w[i].got.msg, "upstream u did not answer within 2 s");
        assert_null(w[i].got.e);
    }
    cache_flights_free(f);
}

static void test_coalesce__retry_one_at_a_time(void **state)
{
    (void)state;
    struct cache_flights *f = cache_flights_new();
    struct cache_key k;
    key_from(&k, 4, 4);
    struct rec_waiter lead, w[3];
    rec_init(&lead);
    assert_int_equal(cache_flight_join(f, &k, &lead.w), 1);
    for (int i = 0; i < 3; i++) {
        rec_init(&w[i]);
        w[i].rejoin = f;
        w[i].key = &k;
        assert_int_equal(cache_flight_join(f, &k, &w[i].w), 0);
    }
    /* the leader's answer was its own: the waiters retry, and exactly one of them leads */
    cache_flight_done(f, &k, NULL);
    int leaders = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].got.kind, CACHE_OUTCOME_RETRY);
        leaders += w[i].rejoined == 1;
    }
    assert_int_equal(leaders, 1);
    assert_int_equal(w[0].rejoined, 1); /* in the order they joined */
    assert_int_equal(cache_flight_waiters(f, &k), 2);
    cache_flight_done(f, &k, NULL);
    cache_flight_done(f, &k, NULL);
    assert_int_equal(cache_flight_waiters(f, &k), 0);
    cache_flights_free(f);
}

static void test_coalesce__leave_and_keys(void **state)
{
    (void)state;
    struct cache_flights *f = cache_flights_new();
    assert_non_null(f);
    struct cache_key a, b, c;
    key_from(&a, 7, 1);
    key_from(&b, 7, 2); /* same bucket as a */
    key_from(&c, 8, 1);
    struct rec_waiter w1, w2, w3;
    rec_init(&w1);
    rec_init(&w2);
    rec_init(&w3);
    assert_int_equal(cache_flight_join(f, &a, &w1.w), 1);
    assert_int_equal(cache_flight_join(f, &b, &w1.w), 1);
    assert_int_equal(cache_flight_join(f, &c, &w1.w), 1);
    assert_int_equal(cache_flight_join(f, &b, &w1.w), 0);
    assert_int_equal(cache_flight_join(f, &b, &w2.w), 0);
    assert_int_equal(cache_flight_join(f, &b, &w3.w), 0);
    /* a waiter that gives up is taken out; its fn never runs */
    assert_int_equal(cache_flight_leave(f, &b, &w2.w), 1);
    assert_int_equal(cache_flight_leave(f, &b, &w2.w), 0);
    assert_int_equal(cache_flight_leave(f, &c, &w3.w), 0); /* not on that flight */
    assert_int_equal(cache_flight_waiters(f, &b), 2);
    /* the last one leaving keeps the tail right: a new waiter still gets the outcome */
    assert_int_equal(cache_flight_leave(f, &b, &w3.w), 1);
    assert_int_equal(cache_flight_join(f, &b, &w3.w), 0);
    /* ending one flight leaves the others running */
    cache_flight_done(f, &a, NULL);
    assert_int_equal(cache_flight_waiters(f, &b), 2);
    struct cache_outcome o = {.kind = CACHE_OUTCOME_ERROR, .code = CP_EUPSTREAM};
    cache_flight_done(f, &b, &o);
    assert_int_equal(w1.calls, 1);
    assert_int_equal(w2.calls, 0);
    assert_int_equal(w3.calls, 1);
    assert_int_equal(w3.got.code, CP_EUPSTREAM);
    /* done for a key nobody leads is harmless */
    cache_flight_done(f, &b, NULL);
    cache_flight_done(f, &c, NULL);
    /* a flight still open at free is freed too (ASan: no leak) */
    assert_int_equal(cache_flight_join(f, &a, &w1.w), 1);
    cache_flights_free(f);
    cache_flights_free(NULL);
}

int main(void)
{
    /* e.g. CMOCKA_SKIP_FILTER=*extreme* to run the rest when one test aborts under UBSan */
    if (getenv("CMOCKA_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CMOCKA_TEST_FILTER"));
    if (getenv("CMOCKA_SKIP_FILTER"))
        cmocka_set_skip_filter(getenv("CMOCKA_SKIP_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key__stable_and_hex),
        cmocka_unit_test(test_key__known_recipe),
        cmocka_unit_test(test_key__no_input_in_clear),
        cmocka_unit_test(test_key__query_order_insensitive),
        cmocka_unit_test(test_key__sensitive_to_every_field),
        cmocka_unit_test(test_key__vary_names_case_insensitive_and_unordered),
        cmocka_unit_test(test_key__long_vary_names_not_truncated),
        cmocka_unit_test(test_entry__new_fields_and_refs),
        cmocka_unit_test(test_entry__codec_round_trip),
        cmocka_unit_test(test_entry__every_truncation_rejected),
        cmocka_unit_test(test_entry__every_byte_flip_rejected),
        cmocka_unit_test(test_entry__foreign_magic_and_version_rejected),
        cmocka_unit_test(test_entry__resealed_malformed_payloads_rejected),
        cmocka_unit_test(test_entry__decoded_extreme_times_are_safe),
        cmocka_unit_test(test_entry__random_garbage_never_crashes),
        cmocka_unit_test(test_entry__freshness_windows),
        cmocka_unit_test(test_cachecontrol__table),
        cmocka_unit_test(test_coalesce__one_leader_others_get_its_entry),
        cmocka_unit_test(test_coalesce__error_handed_to_every_waiter),
        cmocka_unit_test(test_coalesce__retry_one_at_a_time),
        cmocka_unit_test(test_coalesce__leave_and_keys),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
