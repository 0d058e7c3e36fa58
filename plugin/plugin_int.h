/*
 * plugin_int.h - internals shared by the files of plugin/: the gRPC call layer, the method
 * table, the instance manager, the process state and the access log.
 */
#ifndef CP_PLUGIN_INT_H
#define CP_PLUGIN_INT_H

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>

#include "backend.pb-c.h"
#include "plugin.h"
#include "proxy.h"

/* ---- gRPC call layer (grpc_server.c) ------------------------------------------------------ */

struct rpc_call;

/* A handler gets the raw request bytes (valid until the call is freed) on the
 * completion-queue thread; it must not block: it decodes, starts the work, and the call is
 * ended exactly once later, from any thread, with rpc_reply, rpc_fail or rpc_finish. */
typedef void (*rpc_handler)(struct rpc_call *c, const uint8_t *req, size_t len);

enum rpc_kind {
    RPC_UNARY,
    RPC_STREAM, /* server streaming: rpc_send* then rpc_finish */
    RPC_PARK,   /* held open without messages until the client leaves or we shut down */
};

struct rpc_method {
    const char *path;
    enum rpc_kind kind;
    rpc_handler fn;
};

/* Method table (dispatch.c). */
extern const struct rpc_method plugin_methods[];
extern const size_t plugin_nmethods;

/* What a handler hears of its call, from the completion-queue thread. */
struct rpc_events {
    void (*on_sent)(void *ctx);   /* a message sent with rpc_send left: the next may go */
    void (*on_cancel)(void *ctx); /* the client cancelled, its deadline passed, or it left */
    void (*on_free)(void *ctx);   /* the call is over and freed: the handler's state may go */
};
void rpc_set_events(struct rpc_call *c, const struct rpc_events *ev, void *ctx);

/* Unary answer: sends msg (a protobuf-c message) with status OK and ends the call; after the
 * message in flight if there is one. */
int rpc_reply(struct rpc_call *c, const ProtobufCMessage *msg);
/* Ends the call with a gRPC error status (details: a short text without secrets). */
int rpc_fail(struct rpc_call *c, int grpc_status, const char *details);
/* Streams one message without waiting: 0 sent, CP_EBUSY when a message is in flight (send
 * again after on_sent), CP_ECANCELED when the client is gone. */
int rpc_send(struct rpc_call *c, const ProtobufCMessage *msg);
/* Ends a stream with a status. */
int rpc_finish(struct rpc_call *c, int grpc_status, const char *details);
/* Holds a stream open without further messages until the client leaves or the server stops
 * (health Watch after its first answer). The handler must not touch c afterwards. */
void rpc_park(struct rpc_call *c);
/* Non-zero once the client cancelled, its deadline passed or the server is stopping. */
int rpc_cancelled(struct rpc_call *c);
int rpc_cancelled_cb(void *c); /* the same, shaped as a cancellation poll */

/* Server lifecycle. */
struct rpc_server;
/* Creates and starts the server on addr (gRPC address form). Returns NULL on failure. */
struct rpc_server *rpc_server_start(const char *addr, unsigned cq_threads);
/* Drains in-flight calls for at most grace_ms, then cancels the rest, stops and frees. */
void rpc_server_stop(struct rpc_server *s, int grace_ms);

/* ---- request arenas (arena.c) ------------------------------------------------------------ */

/* A bump allocator for unpacking one request (a.allocator for protobuf-c's unpack); what it
 * gave is freed at once by pb_arena_free (free_unpacked is not called). */
struct pb_chunk;
struct pb_arena {
    ProtobufCAllocator a;
    struct pb_chunk *chunks;
    char *cur;
    size_t left;
};
void pb_arena_init(struct pb_arena *ar);
void pb_arena_free(struct pb_arena *ar);

/* ---- process state (main.c) --------------------------------------------------------------- */

struct plugin_access_log;

struct plugin_state {
    struct proxy_counters ctr;
    struct proxy_env env;
    struct plugin_access_log *access; /* CACHINGPROXY_ACCESS_LOG, or NULL */
    struct cp_loop *loops[16];
    size_t nloops;
    struct cp_pool *cpu, *io;
    int64_t start_unix_ms;
    _Atomic int stopping;
    _Atomic uint64_t rpc_calls, rpc_errors, rpc_inflight;
};
extern struct plugin_state plugin_g;

/* Process-wide start-up every host needs (logs, gRPC core, libcurl, event loops, pools, the
 * env handed to instances) and its reverse. Exposed for in-process drivers (fuzzing). */
int plugin_runtime_init(void);
void plugin_runtime_cleanup(void);

/* Asks the main thread to stop (controller Shutdown). Async-signal-safe. */
void plugin_request_stop(void);

/* ---- access log (access_log.c) ------------------------------------------------------------ */

/* Longest line the access log writes, newline and NUL included. */
#define PLUGIN_ACCESS_LINE_MAX (8192 + 256)

/* Opens FILE for appending (O_APPEND|O_CREAT, 0600; the header line when it is empty) and
 * starts its writer thread. key: the pseudonym key (16 to 1024 bytes), or NULL/empty to read
 * FILE.key, made with 32 random bytes as 64 hex digits when it does not exist. *out is owned by
 * the caller (plugin_access_log_free). CP_ECONFIG naming the file or the key. */
int plugin_access_log_open(const char *path, const char *key, struct plugin_access_log **out,
                           struct cp_err *err);
/* proxy_env.access: formats one line and queues it; never blocks on I/O. A full queue drops
 * the line (counted); so does a closed log. */
void plugin_access_log_note(void *ctx, const struct proxy_access *a);
/* Writes out what is queued, ends the writer and closes the file (logging the lines written
 * and dropped); later lines are dropped. NULL-safe, idempotent. */
void plugin_access_log_close(struct plugin_access_log *l);
/* Closes (as above) and frees. NULL-safe. */
void plugin_access_log_free(struct plugin_access_log *l);
/* Lines written so far, and lines lost (queue full, write failed, after close). l may be NULL. */
void plugin_access_log_stats(const struct plugin_access_log *l, uint64_t *lines, uint64_t *dropped);
/* The process's access log from env CACHINGPROXY_ACCESS_LOG (and CACHINGPROXY_ACCESS_LOG_KEY):
 * 0 when unset; else opened into plugin_g.access and hooked into plugin_g.env, before any
 * instance is built. CP_ECONFIG with err when it cannot be opened. */
int plugin_access_log_start(struct cp_err *err);
/* The pseudonym of a login in an org: 16 hex digits of HMAC-SHA-256(key, "<orgId>:<login>"),
 * NUL-terminated. CP_ENOMEM (out empty) when OpenSSL fails. */
int plugin_access_pseudonym(const struct plugin_access_log *l, int64_t org_id, const char *login,
                            char out[17]);
/* Formats "ts,user,role,method,/path?query\n" into out (size >= PLUGIN_ACCESS_LINE_MAX): ts in
 * epoch seconds with milliseconds; method upper-cased, and when it is not 1 to 16 letters
 * nothing is formatted; path (without its leading '/') and query with every byte outside
 * printable ASCII percent-encoded, together cut at 8192 bytes (never inside an escape).
 * Returns the length, or 0. */
size_t plugin_access_format(char *out, size_t size, int64_t unix_ms, const char *user,
                            const char *role, const char *method, const char *path,
                            const char *query);

/* ---- instances (instance.c) --------------------------------------------------------------- */

/* One live data source: settings and pipeline state, shared by every call that uses it. */
struct plugin_instance {
    _Atomic unsigned refs;
    struct plugin_instance *next;
    char *uid;
    int64_t last_updated_ms;
    uint64_t settings_hash; /* over every settings field, order-independent for the map */
    struct proxy_ds *px;
};

/* The instance for the call's data source, found or built, handed to ready(ctx, in, err) on
 * some thread: at once when it is live, else after it was built on the cpu pool (settings are
 * parsed and a module loaded there). in is a reference (plugin_instance_put), or NULL with
 * err. Returns CP_ENOMEM when nothing could be started (ready never runs). */
int plugin_instance_with(const Pluginv2__PluginContext *pc, int (*cancelled)(void *),
                         void *cancel_ctx,
                         void (*ready)(void *ctx, struct plugin_instance *in,
                                       const struct cp_err *err),
                         void *ctx);

/* Finds or builds the instance for the call's data source (org and uid; rebuilt when its
 * settings changed). The returned
 * reference must be released with plugin_instance_put. CP_ECONFIG with err naming the key;
 * CP_ECANCELED when cancelled(cancel_ctx) turned true while the settings were read. */
int plugin_instance_get(const Pluginv2__PluginContext *pc, int (*cancelled)(void *),
                        void *cancel_ctx, struct plugin_instance **out, struct cp_err *err);
void plugin_instance_put(struct plugin_instance *in);
/* The live instance for these settings if there is one and it is current, else NULL. Never
 * builds one (so it never blocks). */
struct plugin_instance *plugin_instance_peek(const Pluginv2__PluginContext *pc);
/* Lists an instance the host built itself (the standalone server's data sources, from its
 * configuration file): counted in metrics like the others, never rebuilt. Takes px in every
 * case; *out is a reference for the caller. CP_ECONFIG when its org and uid are taken. */
int plugin_instance_adopt(struct proxy_ds *px, struct plugin_instance **out, struct cp_err *err);
/* 1 when in is no longer the live instance of its data source (its settings changed and a
 * newer one was built, or every instance was dropped). */
int plugin_instance_replaced(struct plugin_instance *in);
/* Calls fn for every live instance (each held by a reference during the call). */
void plugin_instance_each(void (*fn)(void *ctx, struct plugin_instance *in), void *ctx);
/* Number of live instances. */
size_t plugin_instance_count(void);
/* Drops every instance (each freed when its last call ends). */
void plugin_instance_clear(void);

/* ---- services ---------------------------------------------------------------------------- */

void svc_health_check(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_health_watch(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_controller_shutdown(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_check_health(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_collect_metrics(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_call_resource(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_query_data(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_subscribe_stream(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_publish_stream(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_run_stream(struct rpc_call *c, const uint8_t *req, size_t len);
/* Ends every RunStream with UNAVAILABLE (the plugin stops) and stops their subscriptions. */
void svc_stream_shutdown(void);

/* ---- standalone HTTP front (http_front.c) ------------------------------------------------ */

struct http_front;
/* Builds an instance for every data source of cfg (taking their settings) and starts the HTTP
 * server on cfg's address. cfg stays the caller's and must outlive the front. CP_ECONFIG with
 * err naming the data source, CP_EINTERNAL when the address cannot be bound. */
int http_front_start(struct cfg_standalone *cfg, struct http_front **out, struct cp_err *err);
/* The port it listens on (the chosen one when the configuration said 0). */
int http_front_port(const struct http_front *f);
/* Stops accepting connections; requests in flight go on, and their answers close their
 * connections. */
void http_front_quiesce(struct http_front *f);
/* Requests in flight. */
long http_front_active(struct http_front *f);
/* Cancels what still runs, waits a little for it to end, stops the server and frees. */
void http_front_stop(struct http_front *f);

/* Fills a cp_user from a PluginContext (borrowed strings). */
void plugin_user_from_ctx(const Pluginv2__PluginContext *pc, struct cp_user *u);

#endif
