/*
 * test_cache_redis.c - the Redis backend's own parts: cluster key slots (CRC16, hash tags),
 * redisUrl forms, CLUSTER SLOTS replies and MOVED/ASK texts, the seal/open codec and the key
 * ring, and the client's routing against fake nodes on loopback (a slot map read from
 * CLUSTER SLOTS, MOVED updating it, ASK followed once with ASKING, a READONLY answer making
 * the client ask the sentinel for the new master, a silent node bounded by the timeouts, a
 * dead node failing fast behind its breaker).
 */
#include "redis_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- slots ------------------------------------------------------------------------------ */

static void test_slots__crc16_vector(void **state)
{
    (void)state;
    assert_int_equal(cache__crc16("123456789", 9), 0x31C3); /* the cluster specification's */
    assert_int_equal(cache__crc16("", 0), 0);
}

static int slot_of(const char *k)
{
    return cache__key_slot(k, strlen(k));
}

static void test_slots__keys_and_hash_tags(void **state)
{
    (void)state;
    /* values of CLUSTER KEYSLOT on a real server */
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("hello"), 866);
    assert_int_equal(slot_of("somekey"), 11058);
    /* a tag: only what is inside the first {...} counts */
    assert_int_equal(slot_of("{user1000}.following"), slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("{user1000}.following"), 3443);
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* an empty tag: the whole key */
    assert_int_equal(slot_of("foo{}{bar}"), 8363);
    assert_int_equal(slot_of("foo{bar"), cache__crc16("foo{bar", 7) & 16383);
    /* a data source's keys: entry, index and lock share the slot of "<org>:<uid>" */
    int s = slot_of("1:ds1");
    assert_int_equal(s, 7726);
    assert_int_equal(slot_of("cachingproxy:{1:ds1}::index"), s);
    assert_int_equal(
        slot_of("cachingproxy:{1:ds1}:0123456789abcdef0123456789abcdef0123456789abcdef01234567"
                "89abcdef:lock"),
        s);
    assert_int_equal(slot_of("pre{x}fix:{1:ds1}:abc"), slot_of("x")); /* the first tag wins */
}

/* A reply parsed from RESP text. */
static redisReply *reply_of(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    void *r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

static void test_slots__cluster_slots_reply(void **state)
{
    (void)state;
    redisReply *r = reply_of("*3\r\n"
                             "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
                             "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n"
                             "*3\r\n:5461\r\n:10922\r\n*2\r\n$0\r\n\r\n:7001\r\n"
                             "*3\r\n:10923\r\n:16383\r\n*2\r\n$3\r\n::1\r\n:7002\r\n");
    struct cache__slot_range *v = NULL;
    size_t n = 0;
    assert_int_equal(cache__cluster_slots_parse(r, "10.0.0.5", &v, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(v[0].start, 0);
    assert_int_equal(v[0].end, 5460);
    assert_string_equal(v[0].host, "127.0.0.1");
    assert_int_equal(v[0].port, 7000);
    assert_string_equal(v[1].host, "10.0.0.5"); /* empty: the node that answered */
    assert_int_equal(v[1].port, 7001);
    assert_string_equal(v[2].host, "::1");
    assert_int_equal(v[2].end, 16383);
    free(v);
    freeReplyObject(r);

    /* an unknown endpoint ("?") leaves its slots out */
    r = reply_of("*1\r\n*3\r\n:0\r\n:100\r\n*2\r\n$1\r\n?\r\n:7000\r\n");
    assert_int_equal(cache__cluster_slots_parse(r, "h", &v, &n), 0);
    assert_int_equal(n, 0);
    free(v);
    freeReplyObject(r);

    static const char *const bad[] = {
        "+OK\r\n",
        "*1\r\n:5\r\n",
        "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n\r\n", /* end before start */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",  /* slot out of range */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:70000\r\n",  /* port out of range */
        "*1\r\n*2\r\n:0\r\n:1\r\n",                             /* no master */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n",           /* host not a string */
        "*1\r\n*3\r\n$1\r\nx\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n", /* start not a number */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = reply_of(bad[i]);
        v = (void *)1;
        assert_int_equal(cache__cluster_slots_parse(r, "h", &v, &n), CP_EINVAL);
        assert_null(v);
        freeReplyObject(r);
    }
}

static void test_slots__redirections(void **state)
{
    (void)state;
    char host[64];
    int slot = -1, port = -1;
    assert_int_equal(
        cache__redirect_parse("MOVED 3999 127.0.0.1:6381", "a", &slot, host, sizeof host, &port),
        CACHE__REDIRECT_MOVED);
    assert_int_equal(slot, 3999);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6381);
    assert_int_equal(
        cache__redirect_parse("ASK 1 [::1]:7000", "a", &slot, host, sizeof host, &port),
        CACHE__REDIRECT_ASK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    assert_int_equal(
        cache__redirect_parse("MOVED 16383 :7001", "10.1.2.3", &slot, host, sizeof host, &port),
        CACHE__REDIRECT_MOVED);
    assert_string_equal(host, "10.1.2.3");
    static const char *const none[] = {
        "ERR unknown",     "MOVED",
        "MOVED 3999",      "MOVED x h:1",
        "MOVED 16384 h:1", "MOVED 1 h:0",
        "MOVED 1 h:99999", "MOVED 1 h",
        "ASK 1 h:1x",      "READONLY You can't write against a read only replica."};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        assert_int_equal(cache__redirect_parse(none[i], "a", &slot, host, sizeof host, &port),
                         CACHE__REDIRECT_NONE);
    assert_int_equal(cache__redirect_parse(NULL, "a", &slot, host, sizeof host, &port),
                     CACHE__REDIRECT_NONE);
    /* a host longer than the caller's buffer is refused, not cut */
    assert_int_equal(
        cache__redirect_parse("MOVED 1 averyveryverylonghostname:1", "a", &slot, host, 8, &port),
        CACHE__REDIRECT_NONE);
}

/* ---- URLs ------------------------------------------------------------------------------------ */

static void test_url__forms(void **state)
{
    (void)state;
    struct cache__redis_url u;
    struct cp_err err = {0};

    assert_int_equal(cache__redis_url_parse("redis://cache:6380/2", &u, &err), 0);
    assert_int_equal(u.mode, CACHE__REDIS_SINGLE);
    assert_int_equal(u.tls, 0);
    assert_int_equal(u.naddrs, 1);
    assert_string_equal(u.addrs[0].host, "cache");
    assert_int_equal(u.addrs[0].port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(cache__redis_mode_name(&u), "redis");
    cache__redis_url_dispose(&u);

    assert_int_equal(cache__redis_url_parse("REDISS://alice:p@ss:w0rd@[::1]/3", &u, &err), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "p@ss:w0rd"); /* up to the last '@' */
    assert_string_equal(u.addrs[0].host, "::1");
    assert_int_equal(u.addrs[0].port, 6379);
    assert_int_equal(u.db, 3);
    assert_string_equal(cache__redis_mode_name(&u), "redis over TLS");
    cache__redis_url_dispose(&u);

    assert_int_equal(cache__redis_url_parse("redis://:secret@h", &u, &err), 0);
    assert_null(u.user);
    assert_string_equal(u.password, "secret");
    cache__redis_url_dispose(&u);

    assert_int_equal(
        cache__redis_url_parse("redis-sentinel://s1:26380,s2,[fe80::1]:26381/mymaster/4", &u, &err),
        0);
    assert_int_equal(u.mode, CACHE__REDIS_SENTINEL);
    assert_int_equal(u.naddrs, 3);
    assert_int_equal(u.addrs[0].port, 26380);
    assert_string_equal(u.addrs[1].host, "s2");
    assert_int_equal(u.addrs[1].port, 26379); /* the sentinels' default */
    assert_string_equal(u.addrs[2].host, "fe80::1");
    assert_string_equal(u.master, "mymaster");
    assert_int_equal(u.db, 4);
    cache__redis_url_dispose(&u);

    assert_int_equal(cache__redis_url_parse("rediss-sentinel://u@s1/m", &u, &err), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(u.user, "u");
    assert_string_equal(u.master, "m");
    assert_int_equal(u.db, 0);
    assert_string_equal(cache__redis_mode_name(&u), "redis sentinel over TLS");
    cache__redis_url_dispose(&u);

    assert_int_equal(cache__redis_url_parse("redis-cluster://n1:7000,n2:7001,n3", &u, &err), 0);
    assert_int_equal(u.mode, CACHE__REDIS_CLUSTER);
    assert_int_equal(u.naddrs, 3);
    assert_int_equal(u.addrs[2].port, 6379);
    cache__redis_url_dispose(&u);

    assert_int_equal(cache__redis_url_parse("rediss-cluster://n1:7000/0", &u, &err), 0);
    assert_int_equal(u.tls, 1);
    assert_string_equal(cache__redis_mode_name(&u), "redis cluster over TLS");
    cache__redis_url_dispose(&u);

    assert_int_equal(cache__redis_url_parse("unix:///run/redis.sock?db=5", &u, &err), 0);
    assert_string_equal(u.unix_path, "/run/redis.sock");
    assert_int_equal(u.db, 5);
    assert_int_equal(u.naddrs, 0);
    cache__redis_url_dispose(&u);
}

static void test_url__errors_name_the_key_never_the_password(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "http://h:6379",
        "redis://",
        "redis://S3cret-pw@",
        "redis://:S3cret-pw@h:0",
        "redis://:S3cret-pw@h:65536",
        "redis://:S3cret-pw@h:12ab",
        "redis://h:",
        "redis://h/db",
        "redis://h/1001",
        "redis://[::1:6379",
        "redis://a,b",
        "redis://h o",
        "redis-sentinel://s1:26379",
        "redis-sentinel://s1:26379/",
        "redis-sentinel://s1/m/x",
        "redis-sentinel://s1,/m",
        "redis-cluster://n1:7000/1",
        "redis-cluster://n1,,n2",
        "redis-cluster://1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
        "unix://relative.sock",
        "unix:///s?db=x",
        "unix:///s?timeout=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cache__redis_url u;
        struct cp_err err = {0};
        int rc = cache__redis_url_parse(bad[i], &u, &err);
        if (rc != CP_ECONFIG)
            print_error("%s: accepted\n", bad[i]);
        assert_int_equal(rc, CP_ECONFIG);
        assert_non_null(strstr(err.msg, "jsonData.cache.redisUrl: "));
        assert_null(strstr(err.msg, "S3cret"));
        cache__redis_url_dispose(&u);
    }
}

/* ---- sealing ------------------------------------------------------------------------------- */

/* 32-byte keys in base64 (openssl rand -base64 32) */
#define KEY_A "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA="
#define KEY_B "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define AAD "cachingproxy:{1:ds1}:00ff"

static struct cache__keyring *ring(const char *text)
{
    struct cache__keyring *kr = NULL;
    struct cp_err err = {0};
    int rc = cache__keyring_parse(text, &kr, &err);
    if (rc)
        print_error("%s: %s\n", text, err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(kr);
    return kr;
}

static void seal_text(const struct cache__keyring *kr, const char *aad, const char *text, int det,
                      struct cp_buf *out)
{
    memset(out, 0, sizeof *out);
    assert_int_equal(cache__seal(kr, aad, strlen(aad), text, strlen(text), det, out), 0);
    assert_int_equal(out->len, strlen(text) + CACHE__SEAL_OVERHEAD);
}

static void test_seal__round_trip_and_nothing_in_clear(void **state)
{
    (void)state;
    struct cache__keyring *kr = ring(KEY_A);
    const char *text = "{\"secret answer\":\"upstream bytes\"}";
    struct cp_buf s1, s2, plain = {0};
    seal_text(kr, AAD, text, 0, &s1);
    seal_text(kr, AAD, text, 0, &s2);
    assert_memory_equal(s1.p, "CPS1", 4);
    assert_memory_not_equal(s1.p + 8, s2.p + 8, 12); /* random nonces */
    assert_null(memmem(s1.p, s1.len, "upstream", 8));
    assert_null(memmem(s1.p, s1.len, "answer", 6));
    assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), s1.p, s1.len, &plain), 0);
    assert_int_equal(plain.len, strlen(text));
    assert_memory_equal(plain.p, text, plain.len);
    cp_buf_free(&plain);
    /* an empty value seals too */
    struct cp_buf e;
    seal_text(kr, AAD, "", 0, &e);
    assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), e.p, e.len, &plain), 0);
    assert_int_equal(plain.len, 0);
    cp_buf_free(&plain);
    cp_buf_free(&e);
    /* deterministic sealing (index members): the same input, the same bytes */
    struct cp_buf d1, d2, d3;
    seal_text(kr, AAD, "/api/items", 1, &d1);
    seal_text(kr, AAD, "/api/items", 1, &d2);
    seal_text(kr, AAD, "/api/itemz", 1, &d3);
    assert_int_equal(d1.len, d2.len);
    assert_memory_equal(d1.p, d2.p, d1.len);
    assert_memory_not_equal(d1.p + 8, d3.p + 8, 12);
    assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), d1.p, d1.len, &plain), 0);
    assert_memory_equal(plain.p, "/api/items", 10);
    cp_buf_free(&plain);
    cp_buf_free(&d1);
    cp_buf_free(&d2);
    cp_buf_free(&d3);
    cp_buf_free(&s1);
    cp_buf_free(&s2);
    cache__keyring_free(kr);
}

static void test_seal__every_change_fails(void **state)
{
    (void)state;
    struct cache__keyring *kr = ring(KEY_A);
    struct cp_buf s, plain = {0};
    seal_text(kr, AAD, "payload of an upstream answer", 0, &s);
    /* every flipped bit of every byte: header, nonce, ciphertext, tag */
    for (size_t i = 0; i < s.len; i++)
        for (int bit = 0; bit < 8; bit++) {
            s.p[i] ^= (char)(1 << bit);
            assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), s.p, s.len, &plain), CP_EINVAL);
            assert_int_equal(plain.len, 0);
            s.p[i] ^= (char)(1 << bit);
        }
    /* every truncation */
    for (size_t n = 0; n < s.len; n++)
        assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), s.p, n, &plain), CP_EINVAL);
    /* another Redis key: the value was moved */
    const char *other = "cachingproxy:{1:ds1}:00fe";
    assert_int_equal(cache__unseal(kr, other, strlen(other), s.p, s.len, &plain), CP_EINVAL);
    /* a value in clear is not sealed */
    assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), "CPE1....", 8, &plain), CP_EINVAL);
    assert_int_equal(cache__unseal(kr, AAD, strlen(AAD), s.p, s.len, &plain), 0);
    cp_buf_free(&plain);
    cp_buf_free(&s);
    cache__keyring_free(kr);
}

static void test_seal__rotation(void **state)
{
    (void)state;
    struct cache__keyring *a = ring(KEY_A), *b = ring(KEY_B), *ba = ring(" " KEY_B " ,\n" KEY_A);
    struct cp_buf sa, sb, plain = {0};
    seal_text(a, AAD, "old entry", 0, &sa);
    seal_text(ba, AAD, "new entry", 0, &sb);
    /* the new ring opens what the old key sealed, and seals with its first key */
    assert_int_equal(cache__unseal(ba, AAD, strlen(AAD), sa.p, sa.len, &plain), 0);
    assert_memory_equal(plain.p, "old entry", 9);
    plain.len = 0;
    assert_int_equal(cache__unseal(b, AAD, strlen(AAD), sb.p, sb.len, &plain), 0);
    assert_memory_equal(plain.p, "new entry", 9);
    plain.len = 0;
    assert_memory_not_equal(sa.p + 4, sb.p + 4, 4); /* key ids differ */
    /* once the old key is dropped, its entries no longer open */
    assert_int_equal(cache__unseal(b, AAD, strlen(AAD), sa.p, sa.len, &plain), CP_EINVAL);
    assert_int_equal(cache__unseal(a, AAD, strlen(AAD), sb.p, sb.len, &plain), CP_EINVAL);
    cp_buf_free(&plain);
    cp_buf_free(&sa);
    cp_buf_free(&sb);
    cache__keyring_free(a);
    cache__keyring_free(b);
    cache__keyring_free(ba);
}

static void collect_text(void *ctx, const char *t)
{
    (*(int *)ctx) += strlen(t) == 44;
}

static void test_seal__key_ring_text(void **state)
{
    (void)state;
    struct cache__keyring *kr = NULL;
    struct cp_err err = {0};
    assert_int_equal(cache__keyring_parse(NULL, &kr, &err), 0);
    assert_null(kr);
    assert_int_equal(cache__keyring_parse("  \n", &kr, &err), 0);
    assert_null(kr);
    kr = ring(KEY_A "," KEY_B);
    int n = 0;
    cache__keyring_each_text(kr, collect_text, &n);
    assert_int_equal(n, 2);
    cache__keyring_free(kr);

    static const char *const bad[] = {
        "c2hvcnQ=", /* 5 bytes */
        KEY_A ",",  /* an empty element */
        "," KEY_A,
        KEY_A "," KEY_A,                                 /* twice the same key */
        "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA",   /* no padding: 43 characters */
        "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRW*JA=",  /* not base64 */
        "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA==", /* too long */
        "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJ==",  /* 31 bytes */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&err, 0, sizeof err);
        kr = (void *)1;
        assert_int_equal(cache__keyring_parse(bad[i], &kr, &err), CP_ECONFIG);
        assert_null(kr);
        assert_non_null(strstr(err.msg, CACHE__KEYS_ENV));
        /* never a key's text, not even part of it */
        assert_null(strstr(err.msg, "q83vEjRW"));
        assert_null(strstr(err.msg, "c2hvcnQ"));
    }
    char many[17 * 46] = "";
    for (int i = 0; i < 17; i++)
        strcat(strcat(many, i ? "," : ""), KEY_A);
    assert_int_equal(cache__keyring_parse(many, &kr, &err), CP_ECONFIG);
}

/* ---- the client against fake cluster nodes ------------------------------------------------- */

/* Fake nodes on loopback, served by one thread: A and B, a silent one and a sentinel. In the
 * cluster scenarios A owns every slot per CLUSTER SLOTS and what GET gets depends on the
 * scenario; in the Sentinel one the sentinel names the master (A or B), the other is a
 * replica that answers writes with READONLY. */
enum scenario { SC_MOVED, SC_ASK, SC_SENTINEL };

struct fake_conn {
    int fd;
    int node;
    int asking;
    redisReader *rd;
};

#define NFAKE 4 /* A, B, a silent node, a sentinel */

struct fake {
    int lfd[NFAKE], port[NFAKE];
    _Atomic int master; /* SC_SENTINEL: the node (0 A, 1 B) that is master now */
    int stop[2];
    pthread_t th;
    _Atomic int scenario;
    _Atomic int gets[2]; /* GETs each node received */
    _Atomic int askings; /* ASKING commands received by B */
    struct fake_conn conns[32];
    int nconns;
};

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void fake_answer(struct fake *f, struct fake_conn *c, const redisReply *cmd)
{
    char out[512];
    const char *name = cmd->element[0]->str;
    int was_asking = c->asking;
    c->asking = 0;
    if (c->node == 3 && !strcasecmp(name, "SENTINEL")) {
        snprintf(out, sizeof out, "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n%d\r\n",
                 f->port[atomic_load(&f->master)]);
    } else if (!strcasecmp(name, "ROLE")) {
        snprintf(out, sizeof out, "*1\r\n$%s\r\n",
                 c->node == atomic_load(&f->master) ? "6\r\nmaster" : "5\r\nslave");
    } else if (!strcasecmp(name, "SET")) {
        snprintf(out, sizeof out, "%s\r\n",
                 c->node == atomic_load(&f->master)
                     ? "+OK"
                     : "-READONLY You can't write against a read only replica.");
    } else if (!strcasecmp(name, "CLUSTER")) {
        snprintf(out, sizeof out, "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n",
                 f->port[0]);
    } else if (!strcasecmp(name, "ASKING")) {
        c->asking = 1;
        atomic_fetch_add(&f->askings, 1);
        snprintf(out, sizeof out, "+OK\r\n");
    } else if (!strcasecmp(name, "GET")) {
        int slot = cache__key_slot(cmd->element[1]->str, cmd->element[1]->len);
        atomic_fetch_add(&f->gets[c->node], 1);
        if (c->node == 0)
            snprintf(out, sizeof out, "-%s %d 127.0.0.1:%d\r\n",
                     atomic_load(&f->scenario) == SC_MOVED ? "MOVED" : "ASK", slot, f->port[1]);
        else if (atomic_load(&f->scenario) == SC_ASK && !was_asking)
            snprintf(out, sizeof out, "-MOVED %d 127.0.0.1:%d\r\n", slot, f->port[0]);
        else
            snprintf(out, sizeof out, "$2\r\nhi\r\n");
    } else {
        snprintf(out, sizeof out, "-ERR unknown command\r\n");
    }
    assert_int_equal(send(c->fd, out, strlen(out), MSG_NOSIGNAL), (ssize_t)strlen(out));
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    for (;;) {
        struct pollfd pf[40];
        int n = 0;
        pf[n++] = (struct pollfd){f->stop[0], POLLIN, 0};
        for (int i = 0; i < NFAKE; i++)
            pf[n++] = (struct pollfd){f->lfd[i], POLLIN, 0};
        for (int i = 0; i < f->nconns; i++)
            pf[n++] = (struct pollfd){f->conns[i].fd, POLLIN, 0};
        if (poll(pf, (nfds_t)n, 5000) <= 0 || pf[0].revents)
            return NULL;
        /* backwards: a closed connection is replaced by the last one, already seen */
        for (int i = f->nconns - 1; i >= 0; i--) {
            struct fake_conn *c = &f->conns[i];
            if (!(pf[1 + NFAKE + i].revents & (POLLIN | POLLHUP)))
                continue;
            char buf[4096];
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r <= 0) {
                close(c->fd);
                if (c->rd)
                    redisReaderFree(c->rd);
                *c = f->conns[--f->nconns];
                continue;
            }
            if (!c->rd)
                continue; /* the silent node */
            redisReaderFeed(c->rd, buf, (size_t)r);
            void *cmd;
            while (redisReaderGetReply(c->rd, &cmd) == REDIS_OK && cmd) {
                fake_answer(f, c, cmd);
                freeReplyObject(cmd);
            }
        }
        for (int i = 0; i < NFAKE; i++)
            if ((pf[1 + i].revents & POLLIN) && f->nconns < 32) {
                int fd = accept(f->lfd[i], NULL, NULL);
                /* the third node keeps its connections and never answers */
                if (fd >= 0)
                    f->conns[f->nconns++] =
                        (struct fake_conn){fd, i, 0, i == 2 ? NULL : redisReaderCreate()};
            }
    }
}

static struct fake *fake_start(void)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    for (int i = 0; i < NFAKE; i++)
        f->lfd[i] = listen_any(&f->port[i]);
    assert_int_equal(pipe(f->stop), 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    assert_int_equal(write(f->stop[1], "x", 1), 1);
    pthread_join(f->th, NULL);
    for (int i = 0; i < f->nconns; i++) {
        close(f->conns[i].fd);
        if (f->conns[i].rd)
            redisReaderFree(f->conns[i].rd);
    }
    for (int i = 0; i < NFAKE; i++)
        close(f->lfd[i]);
    close(f->stop[0]);
    close(f->stop[1]);
    free(f);
}

static struct cache__rclient *client_for(const char *url)
{
    struct cfg_cache cc;
    memset(&cc, 0, sizeof cc);
    cc.redis_url = (char *)url;
    struct cache__rclient *c = NULL;
    struct cp_err err = {0};
    assert_int_equal(cache__rclient_acquire(&cc, NULL, &c, &err), 0);
    return c;
}

/* GET key through the client: 0 and the reply's text, or the error. */
static int get(struct cache__rclient *c, const char *key, char *val, size_t vsize,
               struct cp_err *err)
{
    struct cache__rbatch b = {0};
    assert_int_equal(cache__rbatch_add(&b, "GET %s", key), 0);
    int rc = cache__rclient_run(c, cache__key_slot(key, strlen(key)), &b, err);
    if (!rc)
        snprintf(val, vsize, "%s", b.reply[0]->str ? b.reply[0]->str : "");
    cache__rbatch_dispose(&b);
    return rc;
}

static void test_client__moved_updates_the_slot_map(void **state)
{
    (void)state;
    struct fake *f = fake_start();
    char url[64], val[16];
    snprintf(url, sizeof url, "redis-cluster://127.0.0.1:%d", f->port[0]);
    struct cache__rclient *c = client_for(url);
    struct cp_err err = {0};
    struct cache_redis_stats s0, s1;
    cache_redis_stats(&s0);
    atomic_store(&f->scenario, SC_MOVED);
    assert_int_equal(get(c, "{a}k", val, sizeof val, &err), 0);
    assert_string_equal(val, "hi");
    assert_int_equal(atomic_load(&f->gets[0]), 1);
    assert_int_equal(atomic_load(&f->gets[1]), 1);
    /* the slot now maps to B: the next GET goes there (at once, or after a refresh that says
     * A again and one more redirection) */
    assert_int_equal(get(c, "{a}k", val, sizeof val, &err), 0);
    assert_int_equal(atomic_load(&f->gets[1]), 2);
    cache_redis_stats(&s1);
    assert_true(s1.moved >= s0.moved + 1);
    char where[128];
    cache__rclient_where(c, cache__key_slot("{a}k", 4), where, sizeof where);
    assert_non_null(strstr(where, "redis cluster, node 127.0.0.1:"));
    cache__rclient_release(c);
    fake_stop(f);
}

static void test_client__ask_followed_once_with_asking(void **state)
{
    (void)state;
    struct fake *f = fake_start();
    char url[64], val[16];
    snprintf(url, sizeof url, "redis-cluster://127.0.0.1:%d", f->port[0]);
    struct cache__rclient *c = client_for(url);
    struct cp_err err = {0};
    struct cache_redis_stats s0, s1;
    cache_redis_stats(&s0);
    atomic_store(&f->scenario, SC_ASK);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(get(c, "{b}k", val, sizeof val, &err), 0);
        assert_string_equal(val, "hi");
        /* ASK does not change the map: every GET asks A first, then B after ASKING */
        assert_int_equal(atomic_load(&f->gets[0]), i);
        assert_int_equal(atomic_load(&f->gets[1]), i);
        assert_int_equal(atomic_load(&f->askings), i);
    }
    cache_redis_stats(&s1);
    assert_int_equal(s1.ask, s0.ask + 3);
    cache__rclient_release(c);
    fake_stop(f);
}

/* SET key through the client: 0 and the reply (its text, or "-" and the error). */
static int set(struct cache__rclient *c, char *val, size_t vsize, struct cp_err *err)
{
    struct cache__rbatch b = {0};
    assert_int_equal(cache__rbatch_add(&b, "SET k v"), 0);
    int rc = cache__rclient_run(c, 0, &b, err);
    if (!rc)
        snprintf(val, vsize, "%s%s", b.reply[0]->type == REDIS_REPLY_ERROR ? "-" : "",
                 b.reply[0]->str ? b.reply[0]->str : "");
    cache__rbatch_dispose(&b);
    return rc;
}

static void test_client__sentinel_readonly_finds_the_new_master(void **state)
{
    (void)state;
    struct fake *f = fake_start();
    atomic_store(&f->scenario, SC_SENTINEL);
    char url[80], val[128], where[160], want[64];
    snprintf(url, sizeof url, "redis-sentinel://127.0.0.1:%d/m", f->port[3]);
    struct cache__rclient *c = client_for(url);
    struct cp_err err = {0};
    struct cache_redis_stats s0, s1;
    cache_redis_stats(&s0);
    assert_int_equal(set(c, val, sizeof val, &err), 0);
    assert_string_equal(val, "OK");
    cache__rclient_where(c, 0, where, sizeof where);
    snprintf(want, sizeof want, "master m at 127.0.0.1:%d", f->port[0]);
    assert_non_null(strstr(where, want));
    /* a failover the client has not seen: its connection to A is still open */
    atomic_store(&f->master, 1);
    assert_int_equal(set(c, val, sizeof val, &err), 0);
    assert_non_null(strstr(val, "-READONLY"));
    /* READONLY made it ask the sentinel again: the next write goes to B */
    assert_int_equal(set(c, val, sizeof val, &err), 0);
    assert_string_equal(val, "OK");
    cache__rclient_where(c, 0, where, sizeof where);
    snprintf(want, sizeof want, "master m at 127.0.0.1:%d", f->port[1]);
    assert_non_null(strstr(where, want));
    cache_redis_stats(&s1);
    assert_int_equal(s1.failovers, s0.failovers + 1);
    cache__rclient_release(c);
    fake_stop(f);
}

static void test_client__silent_node_bounded_then_breaker(void **state)
{
    (void)state;
    struct fake *f = fake_start();
    char url[64], val[16];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", f->port[2]);
    struct cache__rclient *c = client_for(url);
    struct cp_err err = {0};
    int64_t t0 = cp_mono_ns();
    assert_int_equal(get(c, "k", val, sizeof val, &err), CP_EBACKEND);
    int64_t ms = (cp_mono_ns() - t0) / 1000000;
    assert_true(ms >= 250 && ms < 1500); /* the 300 ms command timeout */
    assert_non_null(strstr(err.msg, "timed out"));
    /* the breaker is open: the next call fails at once */
    t0 = cp_mono_ns();
    memset(&err, 0, sizeof err);
    assert_int_equal(get(c, "k", val, sizeof val, &err), CP_EBACKEND);
    assert_true((cp_mono_ns() - t0) / 1000000 < 50);
    assert_non_null(strstr(err.msg, "retrying within"));
    cache__rclient_release(c);
    fake_stop(f);
}

static void test_client__nothing_listening_fails_fast(void **state)
{
    (void)state;
    int port;
    int fd = listen_any(&port);
    close(fd); /* nobody there now */
    char url[64], val[16];
    snprintf(url, sizeof url, "redis-cluster://127.0.0.1:%d", port);
    struct cache__rclient *c = client_for(url);
    struct cp_err err = {0};
    int64_t t0 = cp_mono_ns();
    assert_int_equal(get(c, "k", val, sizeof val, &err), CP_EBACKEND);
    assert_true((cp_mono_ns() - t0) / 1000000 < 500);
    assert_non_null(strstr(err.msg, "redis cluster"));
    assert_non_null(strstr(err.msg, "refused"));
    cache__rclient_release(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots__crc16_vector),
        cmocka_unit_test(test_slots__keys_and_hash_tags),
        cmocka_unit_test(test_slots__cluster_slots_reply),
        cmocka_unit_test(test_slots__redirections),
        cmocka_unit_test(test_url__forms),
        cmocka_unit_test(test_url__errors_name_the_key_never_the_password),
        cmocka_unit_test(test_seal__round_trip_and_nothing_in_clear),
        cmocka_unit_test(test_seal__every_change_fails),
        cmocka_unit_test(test_seal__rotation),
        cmocka_unit_test(test_seal__key_ring_text),
        cmocka_unit_test(test_client__moved_updates_the_slot_map),
        cmocka_unit_test(test_client__ask_followed_once_with_asking),
        cmocka_unit_test(test_client__sentinel_readonly_finds_the_new_master),
        cmocka_unit_test(test_client__silent_node_bounded_then_breaker),
        cmocka_unit_test(test_client__nothing_listening_fails_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
