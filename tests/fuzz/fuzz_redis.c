/*
 * fuzz_redis.c - libFuzzer driver for what the Redis backend reads from outside: redisUrl
 * (cache__redis_url_parse), replies of Redis nodes (CLUSTER SLOTS through hiredis's reader,
 * MOVED/ASK texts) and values read back from Redis when they are sealed (cache__unseal).
 *
 * Input: one mode byte, then bytes. Mode % 4: 0 a URL; 1 RESP bytes, each complete reply read
 * as a CLUSTER SLOTS answer; 2 an error text read as a redirection; 3 a stored value opened
 * with a fixed key ring, or (odd second byte) the bytes sealed then opened again. Whatever
 * the input: no crash, every range and port parsed is in bounds, a URL error names
 * jsonData.cache.redisUrl, a value that fails to open yields nothing, and sealing round-trips.
 */
#include "redis_int.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEYS "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=,AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define AAD "cachingproxy:{1:ds1}:00ff"

static void fuzz_url(const char *s)
{
    struct cache__redis_url u;
    struct cp_err err = {0};
    int rc = cache__redis_url_parse(s, &u, &err);
    if (rc == 0) {
        assert(u.unix_path || (u.naddrs >= 1 && u.naddrs <= CACHE__REDIS_MAX_HOSTS));
        for (size_t i = 0; i < u.naddrs; i++)
            assert(u.addrs[i].host && u.addrs[i].port >= 1 && u.addrs[i].port <= 65535);
        assert(u.db >= 0 && u.db <= 1000);
        assert(u.mode != CACHE__REDIS_SENTINEL || (u.master && *u.master));
        assert(u.mode != CACHE__REDIS_CLUSTER || u.db == 0);
    } else if (rc == CP_ECONFIG) {
        assert(!strncmp(err.msg, "jsonData.cache.redisUrl: ", 25));
    }
    cache__redis_url_dispose(&u);
}

static void fuzz_replies(const uint8_t *p, size_t n)
{
    redisReader *rd = cache__reader_new();
    if (!rd || redisReaderFeed(rd, (const char *)p, n) != REDIS_OK) {
        if (rd)
            redisReaderFree(rd);
        return;
    }
    void *r;
    while (redisReaderGetReply(rd, &r) == REDIS_OK && r) {
        struct cache__slot_range *v = NULL;
        size_t nv = 0;
        if (cache__cluster_slots_parse(r, "10.0.0.1", &v, &nv) == 0) {
            for (size_t i = 0; i < nv; i++) {
                assert(v[i].start >= 0 && v[i].start <= v[i].end && v[i].end < CACHE__SLOTS);
                assert(v[i].port >= 1 && v[i].port <= 65535);
                assert(v[i].host[0] && strlen(v[i].host) < sizeof v[i].host);
            }
        } else {
            assert(!v);
        }
        free(v);
        freeReplyObject(r);
    }
    redisReaderFree(rd);
}

static void fuzz_redirect(const char *s)
{
    char host[64];
    int slot = -1, port = -1;
    int kind = cache__redirect_parse(s, "10.0.0.1", &slot, host, sizeof host, &port);
    if (kind != CACHE__REDIRECT_NONE) {
        assert(slot >= 0 && slot < CACHE__SLOTS && port >= 1 && port <= 65535);
        assert(host[0] && strlen(host) < sizeof host);
    }
    (void)cache__key_slot(s, strlen(s));
}

static void fuzz_sealed(const struct cache__keyring *kr, const uint8_t *p, size_t n, int reseal)
{
    struct cp_buf out = {0};
    if (reseal) {
        struct cp_buf sealed = {0};
        int rc = cache__seal(kr, AAD, strlen(AAD), p, n, n & 1, &sealed);
        assert(rc == 0 && sealed.len == n + CACHE__SEAL_OVERHEAD);
        rc = cache__unseal(kr, AAD, strlen(AAD), sealed.p, sealed.len, &out);
        assert(rc == 0 && out.len == n && (!n || !memcmp(out.p, p, n)));
        (void)rc;
        cp_buf_free(&sealed);
    } else if (cache__unseal(kr, AAD, strlen(AAD), p, n, &out) == 0) {
        assert(out.len == n - CACHE__SEAL_OVERHEAD);
    } else {
        assert(out.len == 0); /* nothing unauthenticated is handed out */
    }
    cp_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cache__keyring *kr;
    if (!kr) {
        struct cp_err err;
        if (cache__keyring_parse(KEYS, &kr, &err) != 0 || !kr)
            abort();
    }
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if (mode == 1) {
        fuzz_replies(p, n);
    } else if (mode == 3) {
        int reseal = n > 0 && (p[0] & 1);
        fuzz_sealed(kr, p + (n > 0), n - (n > 0), reseal);
    } else {
        char *s = malloc(n + 1);
        if (!s)
            return 0;
        memcpy(s, p, n);
        s[n] = 0;
        if (mode == 0)
            fuzz_url(s);
        else
            fuzz_redirect(s);
        free(s);
    }
    return 0;
}
