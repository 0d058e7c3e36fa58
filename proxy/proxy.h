/*
 * proxy.h - the request pipeline every front uses: one admission phase (method, path, query,
 * allowedPaths, sizes, authorization), then the cache (lookup, coalescing, stale serving),
 * credentials, the upstream call with libcurl and the answer; plus data queries (JSON to
 * frames).
 *
 * Threads: each data source instance lives on one event loop (base.h). Its calls run there
 * without blocking; Redis and CPU-heavy work (frames, modules) go to bounded pools and come
 * back to the loop. Fronts start calls from any thread and receive the answer through a sink
 * whose callbacks run on the instance's threads, never two at once for one call.
 */
#ifndef CP_PROXY_H
#define CP_PROXY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct proxy_ds;

/* Process-wide counters the pipeline updates; owned by the host, read by its metrics. */
struct proxy_counters {
    _Atomic uint64_t upstream[6]; /* by status class: [0] transport error, [1..5] 1xx..5xx */
    struct cp_hist upstream_duration;
    /* [kind: 0 resource, 1 query][result: hit miss stale bypass revalidated] */
    _Atomic uint64_t cache[2][5];
    _Atomic uint64_t coalesced;
    _Atomic uint64_t pieces[2]; /* split queries' pieces: [0] from the cache, [1] fetched */
    _Atomic uint64_t waiting; /* calls waiting now for an identical call's outcome */
    /* live streams: pollers and subscribers now; polls, skipped polls, packets sent */
    _Atomic int64_t live_streams, live_subscribers;
    _Atomic uint64_t live_polls, live_skipped, live_frames;
    _Atomic uint64_t authz[2]; /* [0] deny, [1] allow */
    _Atomic uint64_t redis_errors;
    _Atomic uint64_t evictions;
    _Atomic uint64_t errors; /* plugin-made error answers */
    _Atomic int64_t calls;   /* calls and background refreshes in flight */
};
enum { PROXY_HIT, PROXY_MISS, PROXY_STALE, PROXY_BYPASS, PROXY_REVALIDATED };
enum { PROXY_KIND_RESOURCE, PROXY_KIND_QUERY };

/* One request as the access log sees it: a resource call on proxy/ or a data query, once,
 * as its client asked for it, when it enters the pipeline (before admission and
 * authorization, so refused requests are seen too). Borrowed for the callback. */
struct proxy_access {
    int kind;           /* PROXY_KIND_RESOURCE or PROXY_KIND_QUERY */
    const char *method; /* resources: as the client sent it (any case); queries: NULL */
    const char *path;   /* relative to the data source URL, without its leading '/':
                         * resources in URL form as sent (what follows "proxy/"), queries as
                         * the model gives it after placeholders */
    const char *query;  /* the query string without '?', or NULL */
    const struct cp_user *user;
};

/* What every instance shares: set once by the host, borrowed by instances. */
struct proxy_env {
    const struct cp_logger *log;
    struct proxy_counters *ctr;
    struct cp_loop **loops; /* instances are spread over these, one loop each */
    size_t nloops;
    struct cp_pool *cpu;    /* frames, modules: about one thread per core */
    struct cp_pool *io;     /* Redis commands (bounded by their own timeouts) */
    const char *module_dir; /* CACHINGPROXY_MODULE_DIR, or NULL: no modules */
    /* the access log, or NULL: called once per request on the thread that starts it (a
     * front's); it must not block */
    void (*access)(void *ctx, const struct proxy_access *a);
    void *access_ctx;
};

/* Builds an instance from parsed settings; takes ownership of cfg in every case. May load a
 * module (blocking): call it off the loops. */
int proxy_ds_new(struct cfg_ds *cfg, const struct proxy_env *env, struct proxy_ds **out,
                 struct cp_err *err);
/* Drops the caller's reference; the instance is freed on its loop once no call uses it. */
void proxy_ds_free(struct proxy_ds *ds);
const struct cfg_ds *proxy_ds_cfg(const struct proxy_ds *ds);

struct proxy_header {
    const char *name;
    const char *value;
};

/* A resource request (CallResource, or the standalone front's resources). Everything is
 * borrowed until the sink's done runs. */
struct proxy_request {
    const char *method;
    const char *path;    /* resource path after resources/, percent-decoded ("proxy/a/b") */
    const char *raw_url; /* the same path in escaped form plus "?query" (may be NULL) */
    const struct proxy_header *headers;
    size_t nheaders;
    const void *body;
    size_t body_len;
    struct cp_user user;
};

/* sink.body's answer when the receiver cannot take more now: nothing was taken; the pipeline
 * waits for proxy_call_resume and offers the same bytes again. */
#define PROXY_PAUSE 1

/* Where an answer goes. head runs once, before any body; done runs last, exactly once: rc 0
 * when the answer is complete, else the answer broke off (or never started: a cancelled call).
 * A non-zero return from head or a negative one from body aborts the call. */
struct proxy_sink {
    int (*head)(void *ctx, int status, const struct proxy_header *h, size_t n);
    int (*body)(void *ctx, const void *p, size_t n);
    void (*done)(void *ctx, int rc);
    void *ctx;
};

struct proxy_call;

/* Starts a resource call (proxy/<path>, cache/stats, cache/purge); its answer, errors
 * included (as JSON {"error","status"}), goes to sink. Any thread. *out holds a reference for
 * the caller (proxy_call_release after done), also when the call ended before this returned.
 * CP_ENOMEM: nothing started, the sink is never called. */
int proxy_resource_start(struct proxy_ds *ds, const struct proxy_request *rq,
                         const struct proxy_sink *sink, struct proxy_call **out);
/* The receiver can take more after PROXY_PAUSE. Any thread. */
void proxy_call_resume(struct proxy_call *c);
/* The client is gone: the upstream transfer stops (unless identical calls wait for its
 * answer) and done follows soon with CP_ECANCELED. Any thread; harmless after done. */
void proxy_call_cancel(struct proxy_call *c);
void proxy_call_release(struct proxy_call *c);

/* Answers a resource call on the spot when that needs no I/O: a plugin error decided from
 * the request alone, or a fresh hit of a memory cache whose body is at most max_body bytes.
 * Returns 1 when answered (head and body called; done is not), 0 when the call needs
 * proxy_resource_start (nothing was called). Never blocks: safe on an I/O thread. */
int proxy_resource_fast(struct proxy_ds *ds, const struct proxy_request *rq,
                        const struct proxy_sink *sink, size_t max_body);

/* Answers an error as JSON {"error": msg, "status": N} through sink (head and body). */
int proxy_send_error(const struct proxy_sink *sink, int status, const char *msg);

/* ---- queries ----------------------------------------------------------------------------- */

enum proxy_frame_form {
    PROXY_FRAME_ARROW, /* an Arrow IPC file (PROTOCOL.md 4.5) */
    PROXY_FRAME_JSON,  /* Grafana's data frame JSON (PROTOCOL.md 4.7) */
    PROXY_FRAME_BLOB,  /* the frame module's compact form (frame_blob_decode) */
};

struct proxy_query {
    const char *ref_id;
    const char *json; /* the query model, JSON text */
    size_t json_len;
    int64_t from_ms, to_ms, interval_ms, max_data_points;
    enum proxy_frame_form form; /* the cache keeps the forms apart */
    int exact_range;            /* the range as given (a stream's poller aligns it itself) */
    int check_only;             /* admission and authorization only: nothing is fetched */
};

/* The answer to one query: the bytes of each frame in the form asked for, or an error with a
 * status. */
struct proxy_query_result {
    int status;     /* HTTP-style: 200 on success */
    char *error;    /* owned, or NULL */
    int downstream; /* error source: 1 downstream (upstream), 0 plugin */
    unsigned char **frames; /* owned */
    size_t *frame_lens;
    size_t nframes;
};
void proxy_query_result_dispose(struct proxy_query_result *r);

struct proxy_batch;

/* Runs the queries of one request concurrently; results[i] answers queries[i]. done(ctx)
 * runs once, on an instance thread, when every result is set. Everything passed is borrowed
 * until then. *out: a reference for the caller (proxy_batch_release after done). */
int proxy_query_start(struct proxy_ds *ds, const struct proxy_query *queries, size_t n,
                      const struct cp_user *user, const struct proxy_header *headers,
                      size_t nheaders, struct proxy_query_result *results,
                      void (*done)(void *ctx), void *ctx, struct proxy_batch **out);
/* The client is gone: every query stops (its result says so) and done follows. */
void proxy_batch_cancel(struct proxy_batch *b);
void proxy_batch_release(struct proxy_batch *b);

/* ---- live streams (Grafana Live) ---------------------------------------------------------- */

/* What a subscribe or a stream learns of a channel (SubscribeStreamResponse.Status values). */
enum { PROXY_LIVE_OK = 0, PROXY_LIVE_NOT_FOUND = 1, PROXY_LIVE_DENIED = 2 };

/* Checks that user may use the channel path ("poll/<query>" or "poll/id/<id>"): the query it
 * names goes through admission and authorization, nothing is fetched. done(ctx, status, msg,
 * query) runs once on any thread (query: the stream query, borrowed, NULL unless OK).
 * Everything passed is borrowed until then. CP_ENOMEM: nothing started. */
int proxy_live_check(struct proxy_ds *ds, const char *path, const struct cp_user *user,
                     const struct proxy_header *h, size_t nh,
                     void (*done)(void *ctx, int status, const char *msg, json_t *query),
                     void *ctx);

/* Where a stream's packets go. packet runs on any thread with the JSON of a frame (schema and
 * data, schema only, or data only); it copies what it keeps and answers non-zero when the
 * subscriber cannot keep up (it is then dropped: done follows with CP_EBUSY), or CP_ECONFIG
 * when the settings it runs on are outdated (dropped: done follows with CP_ECONFIG). done
 * runs last, once: rc 0 after proxy_live_stop, else why the stream ended (CP_EDENIED,
 * CP_ENOTFOUND with msg, CP_EBUSY, CP_ECONFIG, CP_ECANCELED, CP_ENOMEM). */
struct proxy_live_sink {
    int (*packet)(void *ctx, const char *json, size_t len);
    void (*done)(void *ctx, int rc, const char *msg);
    void *ctx;
};
struct proxy_live_sub;
/* Checks the channel like proxy_live_check, then subscribes to its poller (started by the
 * first subscriber, polling at multiples of the channel's interval). user and h are copied.
 * *out: a reference for the caller (proxy_live_release after done). CP_ENOMEM: nothing
 * started, the sink is never called. */
int proxy_live_run(struct proxy_ds *ds, const char *path, const struct cp_user *user,
                   const struct proxy_header *h, size_t nh, const struct proxy_live_sink *sink,
                   struct proxy_live_sub **out);
/* The subscriber leaves (the last one stops the poller); done follows. Any thread. */
void proxy_live_stop(struct proxy_live_sub *s);
void proxy_live_release(struct proxy_live_sub *s);

/* ---- health and usage -------------------------------------------------------------------- */

/* Health check: the upstream's healthPath with the configured credentials, then the cache
 * backend. done(ctx, ok, message, details) runs once on an instance thread with a message a
 * user can act on and a JSON object of details (both borrowed for the call). */
int proxy_check_health(struct proxy_ds *ds,
                       void (*done)(void *ctx, int ok, const char *msg, const char *details),
                       void *ctx);

/* Entries and bytes held by this instance's cache (0 for off; Redis: its near cache). */
void proxy_cache_usage(struct proxy_ds *ds, uint64_t *entries, uint64_t *bytes);
/* Upstream transfers of this instance running now, and of those waiting for a connection
 * (maxConnections reached, or connecting). */
void proxy_upstream_usage(struct proxy_ds *ds, int *running, int *queued);

/* Process-wide start/stop of shared clients (curl global init). */
int proxy_global_init(void);
void proxy_global_cleanup(void);

#endif
