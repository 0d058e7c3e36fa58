/*
 * bench_int.h - cross-file internals of cachingproxy-bench: the plugin process and its gRPC
 * channel (grpc_client.c), the in-process bare gRPC server used as a baseline
 * (bare_server.c), the upstream simulator (upstream_sim.c), the closed-loop cell runner and
 * scenarios (bench.c) and the tables / JSON output (report.c).
 *
 * Errors: functions return 0 or a negative CP_E* code with detail in a caller's cp_err.
 */
#ifndef CP_BENCH_INT_H
#define CP_BENCH_INT_H

#include <grpc/grpc.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "backend.pb-c.h"
#include "config.h"

/* Every call and every wait of the bench is bounded by these. */
#define BENCH_CALL_TIMEOUT_MS 10000
#define BENCH_START_TIMEOUT_MS 10000
#define BENCH_STOP_TIMEOUT_MS 3000

/* ---- interruption and child bookkeeping (bench.c) ---------------------------------------- */

/* Set once SIGINT/SIGTERM arrived; loops stop at their next call. */
extern _Atomic int bench_interrupted;
/* Records / forgets a child pid so an interrupt that overruns cleanup can still kill it. */
void bench_child_track(pid_t pid);
void bench_child_untrack(pid_t pid);
/* fork() + exec of argv with envp (NULL: inherit), signals unblocked, PDEATHSIG set, stdout
 * and stderr to out_fd / err_fd (-1: /dev/null). Returns the pid or -1. */
pid_t bench_spawn(const char *const *argv, const char *const *envp, int out_fd, int err_fd);
/* SIGTERM, wait up to timeout_ms, then SIGKILL; reaps. Returns the wait status or -1. */
int bench_child_stop(pid_t pid, int timeout_ms);

/* ---- gRPC client (grpc_client.c) ---------------------------------------------------------- */

/* One channel and its registered methods. */
struct bench_chan {
    grpc_channel *ch;
    void *h_resource, *h_query, *h_shutdown;
};

/* The plugin process as go-plugin runs it: pipes drained by a thread, one channel. */
struct bench_plugin {
    pid_t pid;
    int out_fd, err_fd;
    int drain_started;
    pthread_t drain;
    char target[300]; /* "unix:/path" or "ipv4:127.0.0.1:port" */
    struct bench_chan chan;
    pthread_mutex_t mu; /* guards errtail */
    char errtail[2048]; /* last bytes the plugin wrote to stderr */
    size_t errlen;
};

/* Launches exe with Grafana's environment plus extra_env (NULL-terminated, may be NULL), reads
 * the handshake line and opens the channel. On failure nothing is left running. */
int bench_plugin_start(struct bench_plugin *p, const char *exe, const char *const *extra_env,
                       struct cp_err *err);
/* GRPCController/Shutdown, then waitpid bounded by BENCH_STOP_TIMEOUT_MS, then SIGKILL. Closes
 * the channel and pipes. Call once per successful start (a failed start cleans up itself).
 * Returns 0 when the plugin exited by itself with status 0. */
int bench_plugin_stop(struct bench_plugin *p);
/* VmRSS of the plugin in KiB, -1 if unknown. */
long bench_plugin_rss_kib(const struct bench_plugin *p);
/* Copies the tail of the plugin's stderr (for error messages). */
void bench_plugin_stderr(struct bench_plugin *p, char *out, size_t size);

/* Opens a channel to target (receive limit 256 MiB) and registers the methods. */
int bench_chan_open(struct bench_chan *c, const char *target, struct cp_err *err);
void bench_chan_close(struct bench_chan *c);

/* A calling thread's completion queue (pluck): one call in flight at a time. */
struct bench_caller {
    struct bench_chan *chan;
    grpc_completion_queue *cq;
};
int bench_caller_init(struct bench_caller *k, struct bench_chan *chan);
void bench_caller_dispose(struct bench_caller *k);

struct bench_res {
    int code;          /* first message's code */
    size_t body_bytes; /* over all messages */
    unsigned nmsg;
    char xcache[16];                       /* X-Cache of the first message, "" if none */
    Pluginv2__CallResourceResponse *first; /* kept only if asked; caller frees unpacked */
};

/* CallResource (server streaming) with a packed CallResourceRequest. keep_first: store the
 * unpacked first message in r->first. Returns 0 when the call ended with gRPC status OK (the
 * HTTP code is in r->code), else CP_EUPSTREAM with detail. */
int bench_call_resource(struct bench_caller *k, const void *req, size_t len, int keep_first,
                        struct bench_res *r, struct cp_err *err);

struct bench_qres {
    int status;         /* status of the first DataResponse */
    size_t frame_bytes; /* over all frames */
    unsigned nframes;
    char error[160]; /* error of the first DataResponse */
};
/* QueryData (unary) with a packed QueryDataRequest. */
int bench_query_data(struct bench_caller *k, const void *req, size_t len, struct bench_qres *r,
                     struct cp_err *err);

/* What Grafana sends for one data source and user, packed into requests below. */
struct bench_ds {
    int64_t id;
    const char *uid, *name, *url, *json_data;
    int64_t updated_ms;
};
/* Packs a CallResourceRequest for GET <url_path> (e.g. "proxy/data?size=1"): path is the part
 * before '?'. Returns a malloc'd buffer (caller frees) or NULL. */
uint8_t *bench_pack_resource(const struct bench_ds *ds, const char *url_path, size_t *len);
/* Packs a QueryDataRequest with one query (refId "A") of model JSON text. */
uint8_t *bench_pack_query(const struct bench_ds *ds, const char *model, int64_t from_ms,
                          int64_t to_ms, size_t *len);

/* ---- bare gRPC baseline server (bare_server.c) ------------------------------------------- */

struct bench_bare;
/* Starts a gRPC server on a fresh unix socket that answers /pluginv2.Resource/CallResource with
 * the packed CallResourceResponse msg (copied) and nothing else. target receives its address. */
int bench_bare_start(const void *msg, size_t len, struct bench_bare **out, char *target,
                     size_t tsize, struct cp_err *err);
void bench_bare_stop(struct bench_bare *b);

/* ---- upstream simulator (upstream_sim.c) -------------------------------------------------- */

struct bench_sim;
struct bench_sim_counts {
    uint64_t requests, data_requests, rows_requests;
    uint64_t conns_opened, conns_open, conns_peak;
};
/* Starts the simulator on 127.0.0.1, ephemeral port; url receives "http://127.0.0.1:P". */
int bench_sim_start(struct bench_sim **out, char *url, size_t usize, struct cp_err *err);
void bench_sim_stop(struct bench_sim *s);
void bench_sim_counts(struct bench_sim *s, struct bench_sim_counts *c);
/* Sets the connection peak to the number open now (start of a cell). */
void bench_sim_reset_peak(struct bench_sim *s);

/* ---- report (report.c) -------------------------------------------------------------------- */

/* A text table: title, column headers, rows of preformatted cells, notes under it. */
struct bench_table;
struct bench_table *bench_table_new(const char *title, const char *const *cols, size_t ncols);
void bench_table_row(struct bench_table *t, const char *const *cells);
void bench_table_note(struct bench_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bench_table_print(const struct bench_table *t, FILE *f);
void bench_table_free(struct bench_table *t);

/* Latency and throughput of one cell. */
struct bench_stats {
    uint64_t calls;
    double secs;
    double rps;
    double p50_ms, p90_ms, p99_ms, max_ms, mean_ms;
    uint64_t bytes; /* body or frame bytes received in the measured window */
};
/* Sorts samples (ns) in place and fills the percentiles. */
void bench_stats_fill(struct bench_stats *st, int64_t *ns, size_t n);
/* {"calls","seconds","calls_per_s","p50_ms",...} */
json_t *bench_stats_json(const struct bench_stats *st);
/* Formats helpers for table cells. */
void bench_fmt_ms(char *out, size_t size, double ms);
void bench_fmt_rate(char *out, size_t size, double rps);
void bench_fmt_size(char *out, size_t size, size_t bytes);
/* Prints the JSON document (indent 2) to f. */
void bench_json_print(json_t *doc, FILE *f);

#endif
