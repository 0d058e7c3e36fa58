/*
 * seal.c - encryption of the values written to Redis with the operator's keys
 * (CACHINGPROXY_CACHE_ENCRYPTION_KEYS=<current>[,<older>...], 32 bytes each in base64).
 *
 * A sealed value is "CPS1" | key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16). The
 * associated data is the 20-byte header followed by the Redis key the value is stored under,
 * so a value copied to another key, or with its header changed, fails to open like an altered
 * one. The current (first) key seals; every key of the ring opens what it sealed, found by its
 * id: a SHA-256-derived label of the key, never the key. Nonces are random (96 bits), except
 * for purge index members, which must be the same bytes for the same input: their nonce is an
 * HMAC of the input under a key derived from the sealing key (a synthetic IV: equal inputs
 * give equal members, and nothing else repeats).
 */
#include "redis_int.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "CPS1"
#define ID_LEN 4
#define NONCE_LEN 12
#define TAG_LEN 16
#define HEADER_LEN (4 + ID_LEN + NONCE_LEN)
#define KEY_LEN 32
#define MAX_KEYS 16
#define CHUNK (1 << 30) /* EVP lengths are int */

struct seal_key {
    unsigned char id[ID_LEN];
    struct cfg_secret key;   /* the 32 key bytes */
    struct cfg_secret nonce; /* 32 bytes: the HMAC key of deterministic nonces */
    struct cfg_secret text;  /* the base64 text, for log redaction */
};

struct cache__keyring {
    size_t n;
    struct seal_key k[MAX_KEYS];
};

void cache__keyring_free(struct cache__keyring *kr)
{
    if (!kr)
        return;
    for (size_t i = 0; i < kr->n; i++) {
        cfg_secret_wipe(&kr->k[i].key);
        cfg_secret_wipe(&kr->k[i].nonce);
        cfg_secret_wipe(&kr->k[i].text);
    }
    free(kr);
}

void cache__keyring_each_text(const struct cache__keyring *kr,
                              void (*fn)(void *ctx, const char *text), void *ctx)
{
    for (size_t i = 0; kr && i < kr->n; i++)
        fn(ctx, kr->k[i].text.v);
}

/* SHA-256(label || key) into out (32 bytes). */
static int derive(const char *label, const unsigned char *key, unsigned char *out)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, label, strlen(label) + 1) == 1 &&
             EVP_DigestUpdate(md, key, KEY_LEN) == 1 && EVP_DigestFinal_ex(md, out, &len) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : CP_ENOMEM;
}

/* Strict base64 of exactly KEY_LEN bytes (44 characters, one '=' of padding). */
static int decode_key(const char *s, size_t n, unsigned char *out)
{
    unsigned char buf[48];
    if (n != 44 || s[43] != '=' || s[42] == '=')
        return -1;
    for (size_t i = 0; i < 43; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/'))
            return -1;
    if (EVP_DecodeBlock(buf, (const unsigned char *)s, 44) != 33) /* counts the padding */
        return -1;
    memcpy(out, buf, KEY_LEN);
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

static int key_error(struct cp_err *err, size_t i, size_t n, const char *why)
{
    return cp_err_set(err, CP_ECONFIG,
                      CACHE__KEYS_ENV
                      ": key %zu of %zu %s; data sources with the Redis cache stay off "
                      "until it is fixed (a key is 32 random bytes in base64: openssl rand "
                      "-base64 32)",
                      i + 1, n, why);
}

int cache__keyring_parse(const char *text, struct cache__keyring **out, struct cp_err *err)
{
    *out = NULL;
    if (!text || !text[strspn(text, " \t\r\n")])
        return 0;
    size_t total = 1;
    for (const char *c = text; *c; c++)
        total += *c == ',';
    if (total > MAX_KEYS)
        return cp_err_set(err, CP_ECONFIG, CACHE__KEYS_ENV ": at most %d keys", MAX_KEYS);
    struct cache__keyring *kr = calloc(1, sizeof *kr);
    if (!kr)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    int rc = 0;
    const char *p = text;
    for (size_t i = 0; i < total && !rc; i++) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        p = *e ? e + 1 : e;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
            e--;
        unsigned char key[KEY_LEN], dig[32];
        if (s == e) {
            rc = key_error(err, i, total, "is empty");
            break;
        }
        if (decode_key(s, (size_t)(e - s), key) != 0) {
            rc = key_error(err, i, total, "is not 32 bytes in base64");
            break;
        }
        struct seal_key *k = &kr->k[kr->n];
        if ((rc = derive("cachingproxy cache key id", key, dig)) == 0) {
            memcpy(k->id, dig, ID_LEN);
            for (size_t j = 0; j < kr->n; j++)
                if (!memcmp(kr->k[j].id, k->id, ID_LEN))
                    rc = key_error(err, i, total, "repeats an earlier key (or shares its id)");
        }
        if (!rc && (rc = derive("cachingproxy index nonce", key, dig)) == 0 &&
            (cfg_secret_set(&k->key, (const char *)key, KEY_LEN) ||
             cfg_secret_set(&k->nonce, (const char *)dig, sizeof dig) ||
             cfg_secret_set(&k->text, s, (size_t)(e - s))))
            rc = CP_ENOMEM;
        OPENSSL_cleanse(key, sizeof key);
        OPENSSL_cleanse(dig, sizeof dig);
        kr->n++; /* wiped by the free below on failure */
        if (rc == CP_ENOMEM)
            cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    if (rc) {
        cache__keyring_free(kr);
        return rc;
    }
    *out = kr;
    return 0;
}

/* ---- the process's ring ------------------------------------------------------------------- */

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static struct cache__keyring *env_ring;
static struct cp_err env_err;

static void env_load(void)
{
    const char *v = cfg_env2(CACHE__KEYS_ENV, "GF_PLUGIN_CACHE_ENCRYPTION_KEYS");
    if (cache__keyring_parse(v, &env_ring, &env_err) != 0)
        env_ring = NULL;
}

int cache__keyring_env(const struct cache__keyring **out, struct cp_err *err)
{
    pthread_once(&env_once, env_load);
    *out = env_ring;
    if (env_err.code && err)
        *err = env_err;
    return env_err.code;
}

/* ---- sealing ------------------------------------------------------------------------------ */

static int crypt_chunks(EVP_CIPHER_CTX *cx, int enc, unsigned char *dst, const unsigned char *src,
                        size_t n)
{
    while (n) {
        int step = n > CHUNK ? CHUNK : (int)n, len = 0;
        if ((enc ? EVP_EncryptUpdate(cx, dst, &len, src, step)
                 : EVP_DecryptUpdate(cx, dst, &len, src, step)) != 1)
            return -1;
        dst += len;
        src += step;
        n -= (size_t)step;
    }
    return 0;
}

/* Feeds the associated data: the header, then the Redis key. */
static int add_aad(EVP_CIPHER_CTX *cx, int enc, const unsigned char *hdr, const void *aad,
                   size_t aadn)
{
    int len;
    if ((enc ? EVP_EncryptUpdate(cx, NULL, &len, hdr, HEADER_LEN)
             : EVP_DecryptUpdate(cx, NULL, &len, hdr, HEADER_LEN)) != 1)
        return -1;
    if (aadn > INT32_MAX)
        return -1;
    return aadn && (enc ? EVP_EncryptUpdate(cx, NULL, &len, aad, (int)aadn)
                        : EVP_DecryptUpdate(cx, NULL, &len, aad, (int)aadn)) != 1
               ? -1
               : 0;
}

int cache__seal(const struct cache__keyring *kr, const void *aad, size_t aadn, const void *p,
                size_t n, int det, struct cp_buf *out)
{
    const struct seal_key *k = &kr->k[0];
    unsigned char hdr[HEADER_LEN];
    memcpy(hdr, MAGIC, 4);
    memcpy(hdr + 4, k->id, ID_LEN);
    unsigned char *nonce = hdr + 4 + ID_LEN;
    if (det) {
        unsigned char mac[32];
        size_t maclen = 0;
        uint64_t al = aadn;
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                               OSSL_PARAM_construct_end()};
        EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *h = m ? EVP_MAC_CTX_new(m) : NULL;
        int ok = h &&
                 EVP_MAC_init(h, (const unsigned char *)k->nonce.v, k->nonce.len, params) == 1 &&
                 EVP_MAC_update(h, (const unsigned char *)&al, sizeof al) == 1 &&
                 EVP_MAC_update(h, aad, aadn) == 1 && EVP_MAC_update(h, p, n) == 1 &&
                 EVP_MAC_final(h, mac, &maclen, sizeof mac) == 1;
        EVP_MAC_CTX_free(h);
        EVP_MAC_free(m);
        if (!ok)
            return CP_EINTERNAL;
        memcpy(nonce, mac, NONCE_LEN);
    } else if (RAND_bytes(nonce, NONCE_LEN) != 1) {
        return CP_EINTERNAL;
    }
    size_t start = out->len;
    int rc = cp_buf_add(out, hdr, HEADER_LEN);
    if (rc)
        return rc;
    /* room for the ciphertext and the tag, written in place */
    static const unsigned char zeros[4096];
    for (size_t left = n + TAG_LEN; left && !rc;) {
        size_t step = left < sizeof zeros ? left : sizeof zeros;
        rc = cp_buf_add(out, zeros, step);
        left -= step;
    }
    if (rc) {
        out->len = start;
        return rc;
    }
    unsigned char *ct = (unsigned char *)out->p + start + HEADER_LEN;
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int len = 0;
    int ok = cx && EVP_EncryptInit_ex(cx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
             EVP_EncryptInit_ex(cx, NULL, NULL, (const unsigned char *)k->key.v, nonce) == 1 &&
             add_aad(cx, 1, hdr, aad, aadn) == 0 && crypt_chunks(cx, 1, ct, p, n) == 0 &&
             EVP_EncryptFinal_ex(cx, ct + n, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + n) == 1;
    EVP_CIPHER_CTX_free(cx);
    if (!ok) {
        out->len = start;
        return CP_EINTERNAL;
    }
    return 0;
}

int cache__unseal(const struct cache__keyring *kr, const void *aad, size_t aadn, const void *p,
                  size_t n, struct cp_buf *out)
{
    const unsigned char *b = p;
    if (n < HEADER_LEN + TAG_LEN || memcmp(b, MAGIC, 4))
        return CP_EINVAL;
    const struct seal_key *k = NULL;
    for (size_t i = 0; i < kr->n && !k; i++)
        if (!memcmp(kr->k[i].id, b + 4, ID_LEN))
            k = &kr->k[i];
    if (!k)
        return CP_EINVAL;
    size_t clen = n - HEADER_LEN - TAG_LEN;
    size_t start = out->len;
    int rc = 0;
    static const unsigned char zeros[4096];
    for (size_t left = clen; left && !rc;) {
        size_t step = left < sizeof zeros ? left : sizeof zeros;
        rc = cp_buf_add(out, zeros, step);
        left -= step;
    }
    if (!rc && !clen)
        rc = cp_buf_add(out, "", 0);
    if (rc) {
        out->len = start;
        return rc;
    }
    unsigned char *pt = (unsigned char *)out->p + start;
    unsigned char tag[TAG_LEN];
    memcpy(tag, b + HEADER_LEN + clen, TAG_LEN);
    EVP_CIPHER_CTX *cx = EVP_CIPHER_CTX_new();
    int len = 0;
    int ok =
        cx && EVP_DecryptInit_ex(cx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
        EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
        EVP_DecryptInit_ex(cx, NULL, NULL, (const unsigned char *)k->key.v, b + 4 + ID_LEN) == 1 &&
        add_aad(cx, 0, b, aad, aadn) == 0 && crypt_chunks(cx, 0, pt, b + HEADER_LEN, clen) == 0 &&
        EVP_CIPHER_CTX_ctrl(cx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1 &&
        EVP_DecryptFinal_ex(cx, pt + clen, &len) == 1;
    EVP_CIPHER_CTX_free(cx);
    if (!ok) {
        OPENSSL_cleanse(pt, clen); /* nothing unauthenticated is handed out */
        out->len = start;
        if (out->p)
            out->p[start] = 0;
        return CP_EINVAL;
    }
    return 0;
}
