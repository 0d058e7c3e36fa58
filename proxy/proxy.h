/*
 * proxy.h - the request pipeline shared by the gRPC services and the standalone HTTP front:
 * routing of resource paths, path safety, authorization, credentials, cache, coalescing and
 * forwarding to the upstream with libcurl; plus data queries (JSON to Arrow frames).
 *
 * One struct proxy_ds per data source instance holds the long-lived state (settings, curl
 * connection pool, auth state, cache store). It is immutable after creation apart from
 * internally synchronised parts, so any number of threads may call into it at once.
 */
#ifndef CP_PROXY_H
#define CP_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct proxy_ds;

/* Process-wide counters the pipeline updates; owned by the host, read by its metrics. */
struct proxy_counters {
    _Atomic uint64_t upstream[6]; /* by status class: [0] transport error, [1..5] 1xx..5xx */
    struct cp_hist upstream_duration;
    _Atomic uint64_t cache[2][4]; /* [kind: 0 resource, 1 query][result: hit miss stale bypass] */
    _Atomic uint64_t coalesced;
    _Atomic uint64_t waiting; /* calls waiting now for an identical call's outcome */
    _Atomic uint64_t authz[2]; /* [0] deny, [1] allow */
    _Atomic uint64_t redis_errors;
    _Atomic uint64_t evictions;
    _Atomic uint64_t errors; /* plugin-made error answers */
};
enum { PROXY_HIT, PROXY_MISS, PROXY_STALE, PROXY_BYPASS };
enum { PROXY_KIND_RESOURCE, PROXY_KIND_QUERY };

/* What every instance shares: set once by the host, borrowed by instances. */
struct proxy_env {
    const struct cp_logger *log;
    struct proxy_counters *ctr;
    struct cp_pool *pool;   /* background work (revalidation, concurrent queries) */
    const char *module_dir; /* CACHINGPROXY_MODULE_DIR, or NULL: no modules */
    _Atomic int *stopping;  /* set when the process stops: background work gives up */
};

/* Builds an instance from parsed settings; takes ownership of cfg in every case. */
int proxy_ds_new(struct cfg_ds *cfg, const struct proxy_env *env, struct proxy_ds **out,
                 struct cp_err *err);
/* Frees an instance once no call uses it any more. NULL-safe. */
void proxy_ds_free(struct proxy_ds *ds);
const struct cfg_ds *proxy_ds_cfg(const struct proxy_ds *ds);

struct proxy_header {
    const char *name;
    const char *value;
};

/* A resource request. Everything is borrowed for the duration of proxy_resource(). */
struct proxy_request {
    const char *method;
    const char *path;    /* resource path after resources/, percent-decoded ("proxy/a/b") */
    const char *raw_url; /* the same path in escaped form plus "?query" (may be NULL) */
    const struct proxy_header *headers;
    size_t nheaders;
    const void *body;
    size_t body_len;
    struct cp_user user;
    /* Polled during upstream transfers; non-zero aborts them (client gone). */
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
};

/* Where a response goes. start() is called exactly once, before any body(). A non-zero
 * return from either aborts the request (client gone). */
struct proxy_sink {
    int (*start)(void *ctx, int status, const struct proxy_header *h, size_t n);
    int (*body)(void *ctx, const void *p, size_t n);
    void *ctx;
};

/* Handles one resource call (proxy/<path>, cache/stats, cache/purge) and answers it through
 * sink, errors included (as JSON {"error","status"}). Returns 0, or a negative code when the
 * answer could not be delivered completely. */
int proxy_resource(struct proxy_ds *ds, const struct proxy_request *rq,
                   const struct proxy_sink *sink);

/* Answers a resource call on the spot when that needs no I/O: a plugin error decided from
 * the request alone, or a fresh hit of a memory cache whose body is at most max_body bytes.
 * Returns 1 when answered, 0 when the call needs proxy_resource (nothing was sent). Never
 * blocks: safe on an I/O thread. */
int proxy_resource_fast(struct proxy_ds *ds, const struct proxy_request *rq,
                        const struct proxy_sink *sink, size_t max_body);

/* Answers an error as JSON {"error": msg, "status": N} through sink. */
int proxy_send_error(const struct proxy_sink *sink, int status, const char *msg);

/* Health check: the upstream's healthPath with the configured credentials, then the cache
 * backend. Fills *ok and a message a user can act on; details (JSON object text) optional. */
int proxy_check_health(struct proxy_ds *ds, int *ok, struct cp_buf *msg, struct cp_buf *details);

/* ---- queries ----------------------------------------------------------------------------- */

struct proxy_query {
    const char *ref_id;
    const char *json; /* the query model, JSON text */
    size_t json_len;
    int64_t from_ms, to_ms, interval_ms, max_data_points;
};

/* The answer to one query: Arrow IPC file bytes of each frame, or an error with a status. */
struct proxy_query_result {
    int status; /* HTTP-style: 200 on success */
    char *error; /* owned, or NULL */
    int downstream; /* error source: 1 downstream (upstream), 0 plugin */
    unsigned char **frames; /* owned */
    size_t *frame_lens;
    size_t nframes;
};
void proxy_query_result_dispose(struct proxy_query_result *r);

/* Runs the queries of one request concurrently; results[i] answers queries[i]. */
void proxy_query_data(struct proxy_ds *ds, const struct proxy_query *queries, size_t n,
                      const struct cp_user *user, const struct proxy_header *headers,
                      size_t nheaders, int (*cancelled)(void *), void *cancel_ctx,
                      struct proxy_query_result *results);

/* ---- cache stats for metrics ---------------------------------------------------------------- */

/* Entries and bytes held by this instance's cache (0 for off; Redis: its near cache). */
void proxy_cache_usage(struct proxy_ds *ds, uint64_t *entries, uint64_t *bytes);

/* Process-wide start/stop of shared clients (curl global init, Redis pools). */
int proxy_global_init(void);
void proxy_global_cleanup(void);

#endif
