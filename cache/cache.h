/*
 * cache.h - the shared cache: entries, key derivation, backends (memory, redis, off) behind
 * one store interface, Cache-Control parsing and in-process request coalescing.
 *
 * Entries are immutable once built and reference counted: a reader that got one from get()
 * owns one reference and releases it with cache_entry_unref(). Stores are thread-safe.
 */
#ifndef CP_CACHE_H
#define CP_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* ---- entries ----------------------------------------------------------------------------- */

struct cache_header {
    char *name;
    char *value;
};

/* One stored answer. All strings and the body live in the same allocation as the struct. */
struct cache_entry {
    _Atomic unsigned refs;
    int status;
    int64_t stored_ms;  /* wall clock (ms) when the upstream answered */
    int64_t ttl_ms;     /* fresh for ttl_ms after stored_ms */
    int64_t swr_ms;     /* then servable stale while one refresh runs */
    int64_t sie_ms;     /* then servable stale while the upstream fails */
    const char *path;   /* normalised upstream path, for purge by prefix */
    const char *etag, *last_modified; /* validators, or NULL */
    struct cache_header *headers;
    size_t nheaders;
    const unsigned char *body;
    size_t body_len;
    size_t mem_size; /* bytes charged to the memory budget */
};

struct cache_entry_spec {
    int status;
    int64_t stored_ms, ttl_ms, swr_ms, sie_ms;
    const char *path;
    const struct cache_header *headers; /* copied; validators are taken from here */
    size_t nheaders;
    const void *body;
    size_t body_len;
};

/* Entries that are not answers but notes about a key, told apart by their status (HTTP
 * statuses start at 100). A Vary note lists, in its one "Vary" header, the request headers
 * the answer varies on: the answer itself is stored under the key that includes their values.
 * A hit-for-miss note says the last answer could not be shared: calls go straight upstream,
 * side by side, until it expires. */
#define CACHE_STATUS_VARY 1
#define CACHE_STATUS_HIT_FOR_MISS 2

/* Builds an entry with one reference. NULL on allocation failure. */
struct cache_entry *cache_entry_new(const struct cache_entry_spec *spec);
struct cache_entry *cache_entry_ref(struct cache_entry *e);
void cache_entry_unref(struct cache_entry *e); /* NULL-safe */

/* Freshness at now_ms: CACHE_FRESH, CACHE_STALE_SWR (inside staleWhileRevalidate),
 * CACHE_STALE_SIE (only inside staleIfError), CACHE_EXPIRED. */
enum cache_freshness { CACHE_FRESH, CACHE_STALE_SWR, CACHE_STALE_SIE, CACHE_EXPIRED };
enum cache_freshness cache_entry_freshness(const struct cache_entry *e, int64_t now_ms);
/* The same as seen by a reader whose own lifetime is max_ttl_ms (the shorter of the two
 * counts; negative: the entry's own). A reader asking for a short lifetime is not served an
 * old entry that another reader stored with a long one. */
enum cache_freshness cache_entry_freshness_for(const struct cache_entry *e, int64_t now_ms,
                                               int64_t max_ttl_ms);
/* How long a backend should keep the entry: ttl + the longer stale window; an entry with
 * validators (ETag, Last-Modified) is kept longer (at least its ttl again, and a minute),
 * since a conditional request can renew it without its body. */
int64_t cache_entry_keep_ms(const struct cache_entry *e);

/* Serialised form shared by every backend: magic, version, lengths, CRC-32C of the payload.
 * decode() rejects (CP_EINVAL) anything truncated, foreign, of another version or whose
 * checksum fails; it never crashes on arbitrary bytes. */
int cache_entry_encode(const struct cache_entry *e, struct cp_buf *out);
int cache_entry_decode(const void *p, size_t n, struct cache_entry **out);

/* ---- keys -------------------------------------------------------------------------------- */

struct cache_key {
    unsigned char h[32]; /* SHA-256 */
    char hex[65];
};

enum cache_kind { CACHE_KIND_RESOURCE = 0, CACHE_KIND_QUERY = 1 };

struct cache_key_input {
    const char *ds_uid;
    const unsigned char *fingerprint; /* 32 bytes: settings that change answers */
    enum cache_kind kind;
    const char *method;
    const char *path;  /* normalised upstream path */
    const char *query; /* raw query string (sorted here), may be NULL */
    const void *body;
    size_t body_len;
    const struct cache_header *vary; /* request headers that change the answer */
    size_t nvary;
    enum cfg_scope scope;
    const char *user;    /* login, for user scope */
    int64_t org_id;      /* for org scope */
    const char *variant; /* what is stored is a transformed answer (a query's frame): its
                          * recipe, or NULL for the answer itself */
};

/* Derives the key. Query parameters are sorted (order-insensitive); header names compare
 * case-insensitively; no input appears in clear in the result. CP_ENOMEM only. */
int cache_key_derive(const struct cache_key_input *in, struct cache_key *out);

/* ---- Cache-Control ----------------------------------------------------------------------- */

struct cache_control {
    int no_store, no_cache, private_, public_;
    int64_t max_age_ms, s_maxage_ms; /* -1 when absent */
};
/* Parses a Cache-Control header value (any number of directives, case-insensitive). */
void cache_control_parse(const char *v, struct cache_control *cc);

/* ---- stores ------------------------------------------------------------------------------ */

/* Usage snapshot of a store. */
struct cache_usage {
    uint64_t entries, bytes, evictions;
};

struct cache_store;

/* What the host hands every store it opens. */
struct cache_env {
    const struct cp_logger *log;
    _Atomic uint64_t *redis_errors; /* may be NULL */
    _Atomic uint64_t *evictions;    /* may be NULL */
};

/* What a store can do (cache_store_caps), so callers never test a backend's name. */
enum {
    CACHE_CAP_SHARED = 1 << 0, /* entries are seen by other processes */
    CACHE_CAP_LOCK = 1 << 1,   /* lock/unlock coalesce across processes */
    CACHE_CAP_NO_IO = 1 << 2,  /* every operation answers at once, without I/O: callable on
                                * an event loop or an I/O thread */
};

/* Opens the store of the configured backend for data source uid (NULL for "off": the
 * caller bypasses the cache). CP_ECONFIG when the backend cannot be set up (bad Redis URL). */
int cache_store_open(const struct cfg_ds *cfg, const struct cache_env *env,
                     struct cache_store **out, struct cp_err *err);
void cache_store_close(struct cache_store *s); /* NULL-safe */
const char *cache_store_backend(const struct cache_store *s);
/* CACHE_CAP_* bits of the store (0 for NULL, cache off). */
unsigned cache_store_caps(const struct cache_store *s);

/* Lookup: 0 with *out NULL on a miss; on a hit *out holds a reference. Backend failures are
 * reported as CP_EBACKEND (the caller then goes to the upstream: fail open). */
int cache_get(struct cache_store *s, const struct cache_key *k, struct cache_entry **out,
              struct cp_err *err);
/* Stores e (a new reference is taken) for cache_entry_keep_ms(e). */
int cache_set(struct cache_store *s, const struct cache_key *k, struct cache_entry *e,
              struct cp_err *err);
int cache_del(struct cache_store *s, const struct cache_key *k, struct cp_err *err);
/* Removes every entry of this data source whose path starts with prefix ("" or NULL: all). */
int cache_purge(struct cache_store *s, const char *prefix, uint64_t *purged,
                struct cp_err *err);
void cache_usage(struct cache_store *s, struct cache_usage *u);
/* Health of the backend (Redis PING). where (may be NULL) receives, failing or not, the
 * backend's mode and the node it reached or tried ("redis cluster, node 127.0.0.1:7001 for
 * slot 42"). */
int cache_ping(struct cache_store *s, char *where, size_t wsize, struct cp_err *err);

/* Process-wide Redis figures, for metrics. */
struct cache_redis_stats {
    uint64_t moved, ask; /* cluster redirections followed */
    uint64_t failovers;  /* master changes seen (Sentinel, or a failed cluster node's slots) */
    uint64_t unsealable; /* encrypted entries that failed to open (a miss, then deleted) */
};
void cache_redis_stats(struct cache_redis_stats *out);
/* Calls fn for every Redis node (host:port) that failed since the start, with its count of
 * failures (connections, timeouts, error answers). */
void cache_redis_node_errors(void (*fn)(void *ctx, const char *node, uint64_t errors), void *ctx);

/* Cross-process coalescing lock (Redis SET NX PX): 1 acquired (tok names this acquisition,
 * for the unlock from any thread), 0 held by someone else, CP_EBACKEND on failure,
 * CP_ENOTSUP when the backend has no shared locks (memory). */
struct cache_lock_token {
    char v[64];
};
int cache_lock(struct cache_store *s, const struct cache_key *k, int64_t ttl_ms,
               struct cache_lock_token *tok);
/* Releases the lock only if it is still the one tok acquired (not a successor's). */
void cache_unlock(struct cache_store *s, const struct cache_key *k,
                  const struct cache_lock_token *tok);
/* 1 while another process holds k's lock, 0 when nobody does, CP_EBACKEND / CP_ENOTSUP. */
int cache_lock_held(struct cache_store *s, const struct cache_key *k);

/* ---- policy simulation (what-if) ------------------------------------------------------- */

/* The memory backend's admission and eviction policy (W-TinyLFU, the code memory.c runs) fed
 * a stream of keys without storing anything, for cachingproxy-bench's what-if reports. The
 * budget counts entries, not bytes, and there is one shard; expiry works as in the memory
 * backend (an expired entry is a miss, expired entries leave before a live one is evicted).
 * Deterministic for a given seed. Not thread-safe: one caller at a time. */
struct cache_policy_sim;
/* An empty simulation holding at most capacity entries (1 .. 2^31-1). CP_EINVAL, CP_ENOMEM. */
int cache_policy_sim_new(uint64_t capacity, uint64_t seed, struct cache_policy_sim **out);
/* One request for key at now_ms (non-decreasing from call to call): *hit = 1 when a fresh
 * entry was cached; otherwise the key is stored as a fetched answer would be, fresh for ttl_ms
 * (0: for ever), and the policy evicts or refuses what it decides. CP_ENOMEM leaves the
 * simulation usable, the key not stored. */
int cache_policy_sim_access(struct cache_policy_sim *s, uint64_t key, int64_t now_ms,
                            int64_t ttl_ms, int *hit);
/* Entries held now (at most the capacity). */
uint64_t cache_policy_sim_entries(const struct cache_policy_sim *s);
void cache_policy_sim_free(struct cache_policy_sim *s); /* NULL-safe */

/* ---- coalescing (in process) ------------------------------------------------------------- */

/* What the leader of a flight hands its waiters: they share its outcome, errors included, as
 * nginx's cache lock and Varnish's waiting list do, so a failing upstream sees one request,
 * not one per waiter. */
enum cache_outcome_kind {
    CACHE_OUTCOME_RETRY,  /* nothing shareable (an answer meant for its caller only, or the
                           * leader gave up): a waiter fetches itself, one at a time */
    CACHE_OUTCOME_ANSWER, /* e is the answer for everyone (stored or not) */
    CACHE_OUTCOME_ERROR,  /* the upstream call failed: code and msg */
};
struct cache_outcome {
    enum cache_outcome_kind kind;
    struct cache_entry *e; /* ANSWER: one reference, owned by the outcome */
    int failed;            /* ANSWER: an upstream error answer (5xx), so stale-if-error applies */
    int transformed;       /* ANSWER: e holds the caller's transform (a query frame), not the
                            * upstream's own answer */
    int code;              /* ERROR: a CP_E* code */
    char msg[256];         /* ERROR: its detail (no secret) */
    int hit_for_miss;      /* RETRY: the answer cannot be shared; go upstream side by side */
};
/* Releases what o holds and makes it RETRY. NULL-safe. */
void cache_outcome_dispose(struct cache_outcome *o);

/* A call waiting for a flight: caller storage, linked into the flight while it waits. */
struct cache_waiter {
    struct cache_waiter *next;
    /* Receives the leader's outcome (a copy the waiter disposes) once, from
     * cache_flight_done, unless cache_flight_leave took the waiter out first. */
    void (*fn)(struct cache_waiter *w, struct cache_outcome *o);
    void *ctx;
};

struct cache_flight;
struct cache_flights;
struct cache_flights *cache_flights_new(void);
void cache_flights_free(struct cache_flights *f);

/* Joins the flight for k: 1 when the caller leads it (and must call cache_flight_done), 0
 * when another call leads it and w waits for its outcome, CP_ENOMEM. */
int cache_flight_join(struct cache_flights *f, const struct cache_key *k, struct cache_waiter *w);
/* Takes w out of k's flight (a waiter giving up: timeout, cancelled): 1 when it was waiting
 * (its fn will not run), 0 when it was not. */
int cache_flight_leave(struct cache_flights *f, const struct cache_key *k,
                       struct cache_waiter *w);
/* Ends the leader's flight: each waiter's fn gets a copy of o (NULL: RETRY), in the order
 * they joined. A new call for k after this leads a new flight. */
void cache_flight_done(struct cache_flights *f, const struct cache_key *k,
                       const struct cache_outcome *o);
/* Calls waiting on k's flight now. */
size_t cache_flight_waiters(struct cache_flights *f, const struct cache_key *k);

#endif
