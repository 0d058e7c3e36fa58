/*
 * redis_int.h - internals the Redis backend's files share (cache/ only):
 *
 *   redis_url.c     the redisUrl forms: redis://, rediss://, unix://, redis[s]-sentinel://,
 *                   redis[s]-cluster://
 *   redis_slots.c   Redis Cluster key slots (CRC16, hash tags), CLUSTER SLOTS replies,
 *                   MOVED/ASK redirections: pure functions
 *   redis_conn.c    one connection over TCP, a unix socket or TLS (OpenSSL), speaking RESP
 *                   with hiredis's reader and command formatter, every wait bounded
 *   redis_client.c  the process-wide client of one Redis deployment: nodes, their idle
 *                   connections and circuit breakers, and the routing of a command batch in
 *                   single, Sentinel and Cluster mode (failover, MOVED, ASK)
 *   seal.c          AES-256-GCM sealing of values with the operator's key ring
 *   redis.c         the store operations (struct cache_backend) on top of the client
 */
#ifndef CP_CACHE_REDIS_INT_H
#define CP_CACHE_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "backend.h"

/* ---- URL (redis_url.c) -------------------------------------------------------------------- */

enum cache__redis_mode { CACHE__REDIS_SINGLE, CACHE__REDIS_SENTINEL, CACHE__REDIS_CLUSTER };

#define CACHE__REDIS_MAX_HOSTS 16 /* sentinels or cluster seeds in one URL */

struct cache__redis_addr {
    char *host; /* without IPv6 brackets */
    int port;
};

struct cache__redis_url {
    enum cache__redis_mode mode;
    int tls;
    char *unix_path;                 /* single mode over a unix socket, else NULL */
    struct cache__redis_addr *addrs; /* single: the server; sentinel: the sentinels; cluster:
                                      * the seed nodes */
    size_t naddrs;
    char *user;     /* ACL user of the data nodes, or NULL */
    char *password; /* written into the URL (a secret: the caller wipes it), or NULL */
    char *master;   /* sentinel: the master's name */
    int db;
};

/* Parses redisUrl. CP_ECONFIG naming jsonData.cache.redisUrl (never the password), CP_ENOMEM.
 * *out is always safe to dispose. */
int cache__redis_url_parse(const char *url, struct cache__redis_url *out, struct cp_err *err);
/* Frees (the password wiped first). */
void cache__redis_url_dispose(struct cache__redis_url *u);
/* "redis", "redis over TLS", "redis sentinel", ...: the mode in words, for health messages. */
const char *cache__redis_mode_name(const struct cache__redis_url *u);

/* ---- cluster slots (redis_slots.c) ---------------------------------------------------------- */

#define CACHE__SLOTS 16384

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as the Redis Cluster specification. */
uint16_t cache__crc16(const void *p, size_t n);
/* The key's cluster slot: the CRC16 of its hash tag (the text between the first '{' and the
 * first '}' after it, when not empty) or of the whole key, modulo 16384. */
int cache__key_slot(const char *key, size_t n);

/* One slot range of a CLUSTER SLOTS reply, with its master. */
struct cache__slot_range {
    int start, end; /* inclusive */
    char host[256];
    int port;
};
/* Reads a CLUSTER SLOTS reply asked of asked_host (a master announced with an empty address
 * lives there). *out (malloc'd, caller frees) holds *n ranges. CP_EINVAL for a reply of
 * another shape, CP_ENOMEM. */
int cache__cluster_slots_parse(const redisReply *r, const char *asked_host,
                               struct cache__slot_range **out, size_t *n);

enum { CACHE__REDIRECT_NONE, CACHE__REDIRECT_MOVED, CACHE__REDIRECT_ASK };
/* Reads an error reply text "MOVED <slot> <host>:<port>" or "ASK ...". An empty host means
 * asked_host. Returns CACHE__REDIRECT_* (NONE for any other text or a malformed one). */
int cache__redirect_parse(const char *text, const char *asked_host, int *slot, char *host,
                          size_t hsize, int *port);

/* ---- connections (redis_conn.c) ------------------------------------------------------------- */

struct cache__rconn;

/* A RESP reply reader: hiredis's, with the element count of an array reply capped (the
 * reader fails as out of memory past it). NULL when memory is short. */
redisReader *cache__reader_new(void);

/* Where and how to connect. Every wait is bounded: connecting by connect_ms, each wait for
 * the socket afterwards (TLS handshake, reads, writes) by io_ms. */
struct cache__rdial {
    const char *host; /* name or address; with tls, checked against the server's certificate */
    int port;
    const char *unix_path; /* instead of host and port */
    SSL_CTX *tls;          /* NULL: plain */
    int verify;            /* check the certificate chain and the host name */
    int64_t connect_ms, io_ms;
};

/* A client TLS context from the data source's PEM texts (any of them NULL or empty): the CA
 * (else the system's trust store), the client certificate and its key. CP_ECONFIG naming the
 * secure key that cannot be read. */
int cache__tls_ctx_new(const struct cfg_secret *ca, const struct cfg_secret *cert,
                       const struct cfg_secret *key, SSL_CTX **out, struct cp_err *err);

/* Connects (and shakes hands with TLS). CP_EBACKEND with the reason ("connection refused",
 * "certificate verify failed: ..."), CP_ENOMEM. */
int cache__rconn_open(const struct cache__rdial *d, struct cache__rconn **out, struct cp_err *err);
void cache__rconn_close(struct cache__rconn *c); /* NULL-safe */
/* Writes n bytes of formatted commands, then reads nreplies replies into replies[] (owned by
 * the caller: freeReplyObject). On failure (CP_EBACKEND: I/O error, timeout, protocol error)
 * the connection is unusable and replies[] holds nothing. */
int cache__rconn_roundtrip(struct cache__rconn *c, const char *out, size_t n, size_t nreplies,
                           redisReply **replies, struct cp_err *err);
/* One command formatted as redisCommand does; NULL on failure (err set). */
redisReply *cache__rconn_command(struct cache__rconn *c, struct cp_err *err, const char *fmt, ...);
/* The generation the client stamped on the connection (connections of an older one are
 * dropped when they come back). */
unsigned *cache__rconn_gen(struct cache__rconn *c);

/* ---- command batches (redis_conn.c) --------------------------------------------------------- */

#define CACHE__BATCH_MAX 4

/* Commands sent together (one round trip), each formatted on its own so that a redirected
 * one can be sent again alone, and their replies. */
struct cache__rbatch {
    size_t n;
    char *cmd[CACHE__BATCH_MAX];
    size_t len[CACHE__BATCH_MAX];
    redisReply *reply[CACHE__BATCH_MAX]; /* filled by cache__rclient_run */
};
/* Appends a command (redisCommand's format). CP_ENOMEM, CP_EINVAL (batch full or bad
 * format). */
int cache__rbatch_add(struct cache__rbatch *b, const char *fmt, ...);
/* Frees commands and replies; the batch is empty again. */
void cache__rbatch_dispose(struct cache__rbatch *b);

/* ---- the client (redis_client.c) ------------------------------------------------------------ */

struct cache__rclient;

/* The client of cc's Redis deployment, shared by every store of the process with the same
 * URL, credentials and TLS settings (one reference each). No I/O happens here. CP_ECONFIG
 * naming the key (URL, TLS material), CP_ENOMEM. */
int cache__rclient_acquire(const struct cfg_cache *cc, const struct cp_logger *log,
                           struct cache__rclient **out, struct cp_err *err);
void cache__rclient_release(struct cache__rclient *c); /* NULL-safe */

/* Runs b on the node that serves slot (single and Sentinel mode: the server, the master),
 * following MOVED and ASK in Cluster mode and finding a new master after a failover in
 * Sentinel mode. 0: every command has its reply in b->reply (error replies included; a
 * READONLY one also makes the client look for the master again). CP_EBACKEND: the node is
 * unreachable or its breaker is open (err says which node and why); no reply is kept. */
int cache__rclient_run(struct cache__rclient *c, int slot, struct cache__rbatch *b,
                       struct cp_err *err);
/* "redis cluster, node 127.0.0.1:7001" and so on: the mode and the node serving slot now. */
void cache__rclient_where(struct cache__rclient *c, int slot, char *out, size_t size);

/* Process-wide counters (cache_redis_stats reads them). */
struct cache__rstats {
    _Atomic uint64_t moved, ask, failovers, unsealable;
};
extern struct cache__rstats cache__rstats;

/* ---- sealing (seal.c) ----------------------------------------------------------------------- */

/* The operator's key ring: CACHINGPROXY_CACHE_ENCRYPTION_KEYS=<current>[,<older>...], each
 * key 32 bytes in base64. Sealed values:
 *   "CPS1" | key id (4 bytes) | nonce (12) | AES-256-GCM ciphertext | tag (16)
 * with the header and the Redis key as associated data. The key id is derived from the key
 * (never the key itself), so the order of the older keys does not matter. */
struct cache__keyring;

#define CACHE__KEYS_ENV "CACHINGPROXY_CACHE_ENCRYPTION_KEYS"
#define CACHE__SEAL_OVERHEAD (4 + 4 + 12 + 16)

/* Parses a key list. An empty or blank text gives *out NULL (no encryption). CP_ECONFIG
 * naming CACHINGPROXY_CACHE_ENCRYPTION_KEYS and which key is wrong (never its text),
 * CP_ENOMEM. */
int cache__keyring_parse(const char *text, struct cache__keyring **out, struct cp_err *err);
void cache__keyring_free(struct cache__keyring *kr); /* wipes; NULL-safe */
/* Calls fn with the text of each key (for log redaction). */
void cache__keyring_each_text(const struct cache__keyring *kr,
                              void (*fn)(void *ctx, const char *text), void *ctx);
/* The process's key ring from the environment (also GF_PLUGIN_CACHE_ENCRYPTION_KEYS), read
 * once: 0 with *out NULL when none is set; the parse error every time when it is bad. */
int cache__keyring_env(const struct cache__keyring **out, struct cp_err *err);

/* Seals p[0..n) for the Redis key aad into out (appended). det: the nonce is derived from
 * the key, aad and text (the same input seals to the same bytes: for index members), else
 * random. CP_ENOMEM, CP_EINTERNAL. */
int cache__seal(const struct cache__keyring *kr, const void *aad, size_t aadn, const void *p,
                size_t n, int det, struct cp_buf *out);
/* Opens a sealed value into out (appended). CP_EINVAL when it is not sealed, sealed with a
 * key not in the ring, for another Redis key, or altered. */
int cache__unseal(const struct cache__keyring *kr, const void *aad, size_t aadn, const void *p,
                  size_t n, struct cp_buf *out);

#endif
