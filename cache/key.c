/* key.c - cache key derivation (SPEC.md section 6): SHA-256 over length-prefixed fields, so
 * that no field can bleed into its neighbour and nothing appears in clear. */
#include "cache.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const EVP_MD *sha256(void) { return cp_sha256(); }

/* SHA-256 of no bytes (FIPS 180-2): the body hash of every call without a body. */
static const unsigned char empty_sha256[32] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

/* The digest's input gathered in a buffer: one EVP_DigestUpdate per 512 bytes instead of two
 * per field (the same digest: SHA-256 does not see how its input was split). */
struct hb {
    EVP_MD_CTX *md;
    size_t n;
    unsigned char b[512];
};

static void put(struct hb *h, const void *p, size_t n)
{
    if (h->n + n > sizeof h->b) {
        if (h->n)
            EVP_DigestUpdate(h->md, h->b, h->n);
        h->n = 0;
        if (n > sizeof h->b) {
            EVP_DigestUpdate(h->md, p, n);
            return;
        }
    }
    memcpy(h->b + h->n, p, n);
    h->n += n;
}

static void add(struct hb *md, const void *p, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    put(md, len, 8);
    if (n)
        put(md, p, n);
}

static void add_str(struct hb *md, const char *s) { add(md, s ? s : "", s ? strlen(s) : 0); }

struct param {
    const char *p;
    size_t n;    /* the whole "name=value" */
    size_t name; /* the name's length */
    size_t at;   /* its place in the query string */
};

/* By name; parameters of one name keep their order ("sort=name&sort=date" is not
 * "sort=date&sort=name": an API may read them in order). */
static int cmp_param(const void *a, const void *b)
{
    const struct param *x = a, *y = b;
    size_t n = x->name < y->name ? x->name : y->name;
    int c = memcmp(x->p, y->p, n);
    if (!c)
        c = (x->name > y->name) - (x->name < y->name);
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

static int cmp_header(const void *a, const void *b)
{
    const struct cache_header *x = *(const struct cache_header *const *)a;
    const struct cache_header *y = *(const struct cache_header *const *)b;
    int c = strcasecmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

int cache_key_derive(const struct cache_key_input *in, struct cache_key *out)
{
    struct hb hb, *md = &hb; /* not zeroed: only b[0..n) is read */
    hb.md = EVP_MD_CTX_new();
    hb.n = 0;
    if (!hb.md)
        return CP_ENOMEM;
    EVP_DigestInit_ex(hb.md, sha256(), NULL);
    add_str(md, "cachingproxy-key-v1");
    add_str(md, in->ds_uid);
    add(md, in->fingerprint, in->fingerprint ? 32 : 0);
    unsigned char kind = (unsigned char)in->kind;
    add(md, &kind, 1);
    add_str(md, in->method);
    add_str(md, in->path);

    /* query parameters, sorted so that their order does not matter; empty ones dropped */
    const char *q = in->query ? in->query : "";
    size_t np = 0;
    for (const char *c = q; *c; c++)
        np += *c == '&';
    struct param small[16];
    struct param *ps = np + 1 <= 16 ? small : malloc((np + 1) * sizeof *ps);
    if (!ps) {
        EVP_MD_CTX_free(hb.md);
        return CP_ENOMEM;
    }
    np = 0;
    for (const char *c = q; *c;) {
        size_t n = strcspn(c, "&");
        if (n) {
            const char *eq = memchr(c, '=', n);
            ps[np] = (struct param){c, n, eq ? (size_t)(eq - c) : n, np};
            np++;
        }
        c += n;
        if (*c == '&')
            c++;
    }
    qsort(ps, np, sizeof *ps, cmp_param);
    add(md, &np, sizeof np);
    for (size_t i = 0; i < np; i++)
        add(md, ps[i].p, ps[i].n);
    if (ps != small)
        free(ps);

    unsigned char bh[32];
    unsigned int bl = 0;
    if (in->body_len)
        EVP_Digest(in->body, in->body_len, bh, &bl, sha256(), NULL);
    else
        memcpy(bh, empty_sha256, 32); /* most calls have no body */
    add(md, bh, 32);

    const struct cache_header *hsmall[16];
    const struct cache_header **hs =
        in->nvary + 1 <= 16 ? hsmall : malloc((in->nvary + 1) * sizeof *hs);
    if (!hs) {
        EVP_MD_CTX_free(hb.md);
        return CP_ENOMEM;
    }
    for (size_t i = 0; i < in->nvary; i++)
        hs[i] = &in->vary[i];
    qsort(hs, in->nvary, sizeof *hs, cmp_header);
    add(md, &in->nvary, sizeof in->nvary);
    for (size_t i = 0; i < in->nvary; i++) {
        /* the whole name, lower-cased, length first, fed in pieces */
        const char *name = hs[i]->name;
        size_t n = strlen(name);
        unsigned char len[8];
        for (int k = 0; k < 8; k++)
            len[k] = (unsigned char)((uint64_t)n >> (8 * k));
        put(md, len, 8);
        for (size_t off = 0; off < n;) {
            char lower[128];
            size_t m = n - off < sizeof lower ? n - off : sizeof lower;
            for (size_t k = 0; k < m; k++) {
                char ch = name[off + k];
                lower[k] = ch >= 'A' && ch <= 'Z' ? (char)(ch | 0x20) : ch;
            }
            put(md, lower, m);
            off += m;
        }
        add_str(md, hs[i]->value);
    }
    if (hs != hsmall)
        free(hs);

    unsigned char scope = (unsigned char)in->scope;
    add(md, &scope, 1);
    if (in->scope == CFG_SCOPE_USER)
        add_str(md, in->user);
    if (in->scope == CFG_SCOPE_ORG || in->scope == CFG_SCOPE_USER)
        add(md, &in->org_id, sizeof in->org_id);

    unsigned char has_variant = in->variant != NULL;
    add(md, &has_variant, 1);
    if (has_variant)
        add_str(md, in->variant);

    if (hb.n)
        EVP_DigestUpdate(hb.md, hb.b, hb.n);
    unsigned int n = 0;
    EVP_DigestFinal_ex(hb.md, out->h, &n);
    EVP_MD_CTX_free(hb.md);
    static const char hexd[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out->hex[2 * i] = hexd[out->h[i] >> 4];
        out->hex[2 * i + 1] = hexd[out->h[i] & 15];
    }
    out->hex[64] = 0;
    return 0;
}
