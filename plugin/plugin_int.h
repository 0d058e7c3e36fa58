/*
 * plugin_int.h - internals shared by the files of plugin/: the gRPC call layer, the method
 * table, the instance manager and the process state.
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

/* A handler gets the raw request bytes (valid until it ends the call) and must end the call
 * exactly once with rpc_reply, rpc_fail or rpc_finish (streams). */
typedef void (*rpc_handler)(struct rpc_call *c, const uint8_t *req, size_t len);

enum rpc_kind {
    RPC_UNARY,
    RPC_STREAM, /* server streaming: rpc_send* then rpc_finish */
    RPC_PARK,   /* held open without messages until the client leaves or we shut down */
};

/* An optional first try on the completion-queue thread: answers (and returns 1) only what
 * needs no I/O; returning 0 hands the call to fn on the worker pool. */
typedef int (*rpc_fast_handler)(struct rpc_call *c, const uint8_t *req, size_t len);

struct rpc_method {
    const char *path;
    enum rpc_kind kind;
    int run_inline; /* cheap and non-blocking: run on the completion-queue thread */
    rpc_handler fn;
    rpc_fast_handler fast;
};

/* Method table (dispatch.c). */
extern const struct rpc_method plugin_methods[];
extern const size_t plugin_nmethods;

/* Unary answer: sends msg (a protobuf-c message) with status OK and ends the call. */
int rpc_reply(struct rpc_call *c, const ProtobufCMessage *msg);
/* Ends the call with a gRPC error status (details: a short text without secrets). */
int rpc_fail(struct rpc_call *c, int grpc_status, const char *details);
/* Streams one message; waits only for the previous message to be written. Returns 0 or
 * CP_ECANCELED when the client is gone. */
int rpc_send(struct rpc_call *c, const ProtobufCMessage *msg);
/* The same, but a client that has not taken the previous message within timeout_ms is cut
 * off (its call cancelled) and CP_ECANCELED returned: a stalled reader must not hold a worker
 * and an upstream transfer forever. */
int rpc_send_within(struct rpc_call *c, const ProtobufCMessage *msg, int64_t timeout_ms);
/* Ends a stream with a status. */
int rpc_finish(struct rpc_call *c, int grpc_status, const char *details);
/* Holds a stream open without further messages until the client leaves or the server stops
 * (health Watch after its first answer). The handler must not touch c afterwards. */
void rpc_park(struct rpc_call *c);
/* Non-zero once the client cancelled, its deadline passed or the server is stopping. */
int rpc_cancelled(struct rpc_call *c);
int rpc_cancelled_cb(void *c); /* the same, shaped for proxy_request.cancelled */

/* Server lifecycle. */
struct rpc_server;
/* Creates and starts the server on addr (gRPC address form). Returns NULL on failure. */
struct rpc_server *rpc_server_start(const char *addr, unsigned cq_threads);
/* Drains in-flight calls for at most grace_ms, then cancels the rest, stops and frees. */
void rpc_server_stop(struct rpc_server *s, int grace_ms);

/* ---- process state (main.c) --------------------------------------------------------------- */

struct plugin_state {
    struct proxy_counters ctr;
    struct proxy_env env;
    struct cp_pool *pool;
    int64_t start_unix_ms;
    _Atomic int stopping;
    _Atomic uint64_t rpc_calls, rpc_errors, rpc_inflight;
};
extern struct plugin_state plugin_g;

/* Process-wide start-up every host needs (logs, gRPC core, libcurl, the worker pool, the
 * env handed to instances) and its reverse. Exposed for in-process drivers (fuzzing). */
int plugin_runtime_init(void);
void plugin_runtime_cleanup(void);

/* Asks the main thread to stop (controller Shutdown). Async-signal-safe. */
void plugin_request_stop(void);

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
int svc_call_resource_fast(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_query_data(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_subscribe_stream(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_publish_stream(struct rpc_call *c, const uint8_t *req, size_t len);
void svc_run_stream(struct rpc_call *c, const uint8_t *req, size_t len);

/* Fills a cp_user from a PluginContext (borrowed strings). */
void plugin_user_from_ctx(const Pluginv2__PluginContext *pc, struct cp_user *u);

#endif
