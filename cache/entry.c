/* entry.c - cache entries: one allocation holding headers and body, reference counted,
 * freshness windows, and the versioned, checksummed serialised form shared by backends. */
#include "backend.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENTRY_MAGIC 0x43504531u /* "CPE1" */
#define ENTRY_VERSION 1
#define MAX_HEADERS 256
#define MAX_TIME_MS (1LL << 53) /* far beyond any real time or lifetime, far below overflow */

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static const char *find_header(const struct cache_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(h[i].name, name))
            return h[i].value;
    return NULL;
}

struct cache_entry *cache_entry_new(const struct cache_entry_spec *sp)
{
    if (sp->nheaders > MAX_HEADERS)
        return NULL;
    size_t strbytes = strlen(sp->path ? sp->path : "") + 1;
    for (size_t i = 0; i < sp->nheaders; i++)
        strbytes += strlen(sp->headers[i].name) + strlen(sp->headers[i].value) + 2;
    size_t size = align8(sizeof(struct cache_entry)) +
                  align8(sp->nheaders * sizeof(struct cache_header)) + align8(strbytes) +
                  sp->body_len + 1;
    char *mem = malloc(size);
    if (!mem)
        return NULL;
    struct cache_entry *e = (struct cache_entry *)mem;
    memset(e, 0, sizeof *e);
    atomic_init(&e->refs, 1);
    e->status = sp->status;
    e->stored_ms = sp->stored_ms;
    e->ttl_ms = sp->ttl_ms;
    e->swr_ms = sp->swr_ms;
    e->sie_ms = sp->sie_ms;
    e->nheaders = sp->nheaders;
    e->headers = (struct cache_header *)(mem + align8(sizeof *e));
    char *s = (char *)e->headers + align8(sp->nheaders * sizeof(struct cache_header));
    size_t pl = strlen(sp->path ? sp->path : "") + 1;
    memcpy(s, sp->path ? sp->path : "", pl);
    e->path = s;
    s += pl;
    for (size_t i = 0; i < sp->nheaders; i++) {
        size_t nl = strlen(sp->headers[i].name) + 1, vl = strlen(sp->headers[i].value) + 1;
        memcpy(s, sp->headers[i].name, nl);
        e->headers[i].name = s;
        s += nl;
        memcpy(s, sp->headers[i].value, vl);
        e->headers[i].value = s;
        s += vl;
    }
    unsigned char *body = (unsigned char *)e->headers +
                          align8(sp->nheaders * sizeof(struct cache_header)) + align8(strbytes);
    if (sp->body_len)
        memcpy(body, sp->body, sp->body_len);
    body[sp->body_len] = 0;
    e->body = body;
    e->body_len = sp->body_len;
    e->etag = find_header(e->headers, e->nheaders, "ETag");
    e->last_modified = find_header(e->headers, e->nheaders, "Last-Modified");
    e->mem_size = size;
    return e;
}

struct cache_entry *cache_entry_ref(struct cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

void cache_entry_unref(struct cache_entry *e)
{
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

enum cache_freshness cache_entry_freshness_for(const struct cache_entry *e, int64_t now,
                                               int64_t max_ttl)
{
    int64_t ttl = max_ttl >= 0 && max_ttl < e->ttl_ms ? max_ttl : e->ttl_ms;
    int64_t age = now - e->stored_ms;
    if (age < ttl)
        return CACHE_FRESH;
    if (age < ttl + e->swr_ms)
        return CACHE_STALE_SWR;
    if (age < ttl + e->sie_ms)
        return CACHE_STALE_SIE;
    return CACHE_EXPIRED;
}

enum cache_freshness cache_entry_freshness(const struct cache_entry *e, int64_t now)
{
    return cache_entry_freshness_for(e, now, -1);
}

#define REVALIDATE_KEEP_MS 60000

int64_t cache_entry_keep_ms(const struct cache_entry *e)
{
    int64_t window = e->swr_ms > e->sie_ms ? e->swr_ms : e->sie_ms;
    if (e->etag || e->last_modified) {
        int64_t reval = e->ttl_ms > REVALIDATE_KEEP_MS ? e->ttl_ms : REVALIDATE_KEEP_MS;
        if (reval > window)
            window = reval;
    }
    return e->ttl_ms + window;
}

/* ---- codec ---------------------------------------------------------------------------------
 * u32 magic, u16 version, u16 flags(0), u32 crc32c(payload), u32 payload length, payload:
 *   i32 status, i64 stored_ms, i64 ttl_ms, i64 swr_ms, i64 sie_ms,
 *   str path, u32 nheaders, nheaders x (str name, str value), u32 body_len, body
 * where str = u32 length + bytes. All little-endian. */

static int put_u32(struct cp_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return cp_buf_add(b, x, 4);
}

static int put_u64(struct cp_buf *b, uint64_t v)
{
    return put_u32(b, (uint32_t)v) || put_u32(b, (uint32_t)(v >> 32)) ? CP_ENOMEM : 0;
}

static int put_str(struct cp_buf *b, const char *s)
{
    size_t n = strlen(s);
    return put_u32(b, (uint32_t)n) || cp_buf_add(b, s, n) ? CP_ENOMEM : 0;
}

int cache_entry_encode(const struct cache_entry *e, struct cp_buf *out)
{
    size_t start = out->len;
    int rc = put_u32(out, ENTRY_MAGIC);
    rc = rc ? rc : put_u32(out, ENTRY_VERSION);
    rc = rc ? rc : put_u32(out, 0); /* crc, patched below */
    rc = rc ? rc : put_u32(out, 0); /* payload length, patched below */
    size_t pstart = out->len;
    rc = rc ? rc : put_u32(out, (uint32_t)e->status);
    rc = rc ? rc : put_u64(out, (uint64_t)e->stored_ms);
    rc = rc ? rc : put_u64(out, (uint64_t)e->ttl_ms);
    rc = rc ? rc : put_u64(out, (uint64_t)e->swr_ms);
    rc = rc ? rc : put_u64(out, (uint64_t)e->sie_ms);
    rc = rc ? rc : put_str(out, e->path ? e->path : "");
    rc = rc ? rc : put_u32(out, (uint32_t)e->nheaders);
    for (size_t i = 0; i < e->nheaders && !rc; i++)
        rc = put_str(out, e->headers[i].name) || put_str(out, e->headers[i].value) ? CP_ENOMEM
                                                                                   : 0;
    rc = rc ? rc : put_u32(out, (uint32_t)e->body_len);
    rc = rc ? rc : cp_buf_add(out, e->body, e->body_len);
    if (rc) {
        out->len = start;
        return rc;
    }
    size_t plen = out->len - pstart;
    uint32_t crc = cache__crc32c(0, out->p + pstart, plen);
    unsigned char *h = (unsigned char *)out->p + start;
    for (int i = 0; i < 4; i++) {
        h[8 + i] = (unsigned char)(crc >> (8 * i));
        h[12 + i] = (unsigned char)((uint32_t)plen >> (8 * i));
    }
    return 0;
}

struct reader {
    const unsigned char *p;
    size_t n, off;
    int bad;
};

static uint32_t get_u32(struct reader *r)
{
    if (r->bad || r->n - r->off < 4) {
        r->bad = 1;
        return 0;
    }
    const unsigned char *x = r->p + r->off;
    r->off += 4;
    return (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
}

static uint64_t get_u64(struct reader *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

/* A string of the payload: returns a pointer into the buffer and its length. */
static const char *get_str(struct reader *r, size_t *len)
{
    uint32_t n = get_u32(r);
    if (r->bad || r->n - r->off < n) {
        r->bad = 1;
        return NULL;
    }
    const char *s = (const char *)r->p + r->off;
    if (memchr(s, 0, n)) {
        r->bad = 1; /* embedded NUL: not something we wrote */
        return NULL;
    }
    r->off += n;
    *len = n;
    return s;
}

int cache_entry_decode(const void *p, size_t n, struct cache_entry **out)
{
    struct reader r = {p, n, 0, 0};
    struct cache_header *hs = NULL;
    char *strings = NULL;
    int rc = CP_EINVAL;
    *out = NULL;
    if (get_u32(&r) != ENTRY_MAGIC || get_u32(&r) != ENTRY_VERSION)
        return CP_EINVAL;
    uint32_t crc = get_u32(&r), plen = get_u32(&r);
    if (r.bad || plen != n - r.off || cache__crc32c(0, r.p + r.off, plen) != crc)
        return CP_EINVAL;
    struct cache_entry_spec sp = {0};
    sp.status = (int)get_u32(&r);
    sp.stored_ms = (int64_t)get_u64(&r);
    sp.ttl_ms = (int64_t)get_u64(&r);
    sp.swr_ms = (int64_t)get_u64(&r);
    sp.sie_ms = (int64_t)get_u64(&r);
    size_t pl = 0;
    const char *path = get_str(&r, &pl);
    uint32_t nh = get_u32(&r);
    /* times no writer of ours produces (and whose sums would overflow) mark a foreign value */
    int note = sp.status == CACHE_STATUS_VARY || sp.status == CACHE_STATUS_HIT_FOR_MISS;
    if (r.bad || nh > MAX_HEADERS || (sp.status < 100 && !note) || sp.status > 599 ||
        sp.stored_ms < 0 || sp.stored_ms > MAX_TIME_MS || sp.ttl_ms < 0 ||
        sp.ttl_ms > MAX_TIME_MS || sp.swr_ms < 0 || sp.swr_ms > MAX_TIME_MS || sp.sie_ms < 0 ||
        sp.sie_ms > MAX_TIME_MS)
        return CP_EINVAL;
    /* copy strings out so they are NUL-terminated for cache_entry_new */
    strings = malloc(n + 2 * nh + 2);
    hs = calloc(nh ? nh : 1, sizeof *hs);
    if (!strings || !hs) {
        rc = CP_ENOMEM;
        goto out;
    }
    char *w = strings;
    memcpy(w, path, pl);
    w[pl] = 0;
    sp.path = w;
    w += pl + 1;
    for (uint32_t i = 0; i < nh; i++) {
        size_t ln = 0, lv = 0;
        const char *nm = get_str(&r, &ln);
        const char *v = get_str(&r, &lv);
        if (r.bad)
            goto out;
        memcpy(w, nm, ln);
        w[ln] = 0;
        hs[i].name = w;
        w += ln + 1;
        memcpy(w, v, lv);
        w[lv] = 0;
        hs[i].value = w;
        w += lv + 1;
    }
    uint32_t bl = get_u32(&r);
    if (r.bad || bl != n - r.off)
        goto out;
    sp.headers = hs;
    sp.nheaders = nh;
    sp.body = r.p + r.off;
    sp.body_len = bl;
    *out = cache_entry_new(&sp);
    rc = *out ? 0 : CP_ENOMEM;
out:
    free(strings);
    free(hs);
    return rc;
}

/* CRC-32C, bitwise-reflected polynomial 0x82F63B78, table-driven. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t cache__crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *b = p;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
    return ~crc;
}
