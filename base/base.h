/*
 * base.h - the bottom layer of cachingproxy: tools every other module builds on and that know
 * nothing of data sources: the one error table, the logging handle (with redaction hooks),
 * UTF-8 checks, capped buffers, clocks, histograms and a worker pool.
 *
 * Error convention: every fallible function returns 0 or a negative CP_E* code. The table
 * gives each code its name, a user-facing message, the HTTP status a plugin error carries and
 * the gRPC status a failed call gets. Mapping to HTTP or gRPC happens only at the edges. Detail
 * goes into a caller-owned struct cp_err, which never holds a secret.
 *
 * Layering: base <- config <- cache, auth, frame <- proxy <- plugin.
 */
#ifndef CP_BASE_H
#define CP_BASE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- errors --------------------------------------------------------------------------------- */

/* X(name, message, http status, grpc status code) */
#define CP_ERRNO_MAP(X)                                                                    \
    X(EINVAL, "invalid argument", 400, 3)                                                  \
    X(ENOMEM, "out of memory", 500, 8)                                                     \
    X(ECONFIG, "invalid data source settings", 400, 9)                                     \
    X(EBADREQ, "bad request", 400, 3)                                                      \
    X(EDENIED, "denied by an authorization rule", 403, 7)                                  \
    X(ENOPATH, "path not allowed", 404, 5)                                                 \
    X(ENOTFOUND, "not found", 404, 5)                                                      \
    X(EMETHOD, "method not allowed", 405, 12)                                              \
    X(ETOOBIG, "request too large", 413, 8)                                                \
    X(EUPSTREAM, "upstream failure", 502, 14)                                              \
    X(ERESPBIG, "upstream response too large", 502, 14)                                    \
    X(ETIMEDOUT, "upstream timeout", 504, 4)                                               \
    X(ECANCELED, "request cancelled", 499, 1)                                              \
    X(EBUSY, "busy, try again", 503, 14)                                                   \
    X(EBACKEND, "cache backend failure", 503, 14)                                          \
    X(EAUTHZ, "authorization service failure", 403, 7)                                     \
    X(EMODULE, "auth module failure", 500, 13)                                             \
    X(ENOTSUP, "not supported", 501, 12)                                                   \
    X(EINTERNAL, "internal error", 500, 13)

enum cp_errno_index {
#define CP_X_INDEX(name, msg, http, grpc) CP_I_##name,
    CP_ERRNO_MAP(CP_X_INDEX)
#undef CP_X_INDEX
    CP_I__COUNT
};

enum cp_errno {
    CP_OK = 0,
#define CP_X_CODE(name, msg, http, grpc) CP_##name = -(CP_I_##name + 1),
    CP_ERRNO_MAP(CP_X_CODE)
#undef CP_X_CODE
};

/* Caller-owned error detail. msg names the offending key or path; never a secret. */
struct cp_err {
    int code;
    char msg[256];
};

/* Name ("ECONFIG"), message, HTTP status and gRPC code of an error code; unknown codes map to
 * EINTERNAL. */
const char *cp_errname(int code);
const char *cp_strerror(int code);
int cp_http_status(int code);
int cp_grpc_status(int code);

/* Fills err (may be NULL) with code and a formatted detail; returns code. */
int cp_err_set(struct cp_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The detail of err, or the table message when no detail was set. */
const char *cp_err_text(const struct cp_err *err);

/* ---- logging handle ---------------------------------------------------------------------- */

enum cp_log_level { CP_LOG_TRACE, CP_LOG_DEBUG, CP_LOG_INFO, CP_LOG_WARN, CP_LOG_ERROR };

/* One key/value of a log line: a string (str != NULL) or an integer. */
struct cp_kv {
    const char *key;
    const char *str;
    long long num;
};
static inline struct cp_kv cp_kv_str(const char *k, const char *v)
{
    return (struct cp_kv){k, v ? v : "", 0};
}
#define CP_KV_S(k, v) cp_kv_str((k), (v))
#define CP_KV_I(k, v) ((struct cp_kv){(k), NULL, (long long)(v)})

/* Where lower modules send log lines. fn may redact; it must be thread-safe. secret_add and
 * secret_remove (optional) tell the log about secret values learnt at run time (tokens), so
 * that they are redacted like configured ones; calls come in pairs. */
struct cp_logger {
    void (*fn)(void *ctx, int level, const char *msg, const struct cp_kv *kv, size_t n);
    void *ctx;
    void (*secret_add)(void *ctx, const char *v);
    void (*secret_remove)(void *ctx, const char *v);
    /* copies in to out (size bytes, NUL-terminated) with every known secret replaced */
    void (*redact)(void *ctx, const char *in, char *out, size_t size);
};

/* Logs through lg (NULL or a NULL fn: dropped). */
void cp_log(const struct cp_logger *lg, int level, const char *msg, const struct cp_kv *kv,
            size_t n);
void cp_log_secret_add(const struct cp_logger *lg, const char *v);
void cp_log_secret_remove(const struct cp_logger *lg, const char *v);
/* Text for users (error messages): in with every known secret replaced, into out. Without a
 * redact hook it is copied as is. */
void cp_redact(const struct cp_logger *lg, const char *in, char *out, size_t size);

/* Length (1..4) of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0; stops at a terminating NUL. */
size_t cp_utf8_len(const unsigned char *s);
/* Replaces every byte that is not part of valid UTF-8 with '?', in place, so the text can go
 * into JSON and protobuf string fields. Returns s. */
char *cp_utf8_fix(char *s);
/* The value of a hex digit, or -1. */
int cp_hexval(int c);
/* 1 when s is an HTTP token (RFC 9110 section 5.6.2: a method or a header name), else 0. */
int cp_http_token(const char *s);

/* ---- buffers and clocks ----------------------------------------------------------------- */

/* Growable byte buffer with a hard cap (0 = SIZE_MAX). Always NUL-terminated when non-empty. */
struct cp_buf {
    char *p;
    size_t len, cap, max;
};
/* Appends; CP_ETOOBIG when max would be exceeded (nothing appended), CP_ENOMEM on failure. */
int cp_buf_add(struct cp_buf *b, const void *data, size_t n);
int cp_buf_addf(struct cp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cp_buf_addstr(struct cp_buf *b, const char *s);
/* Hands the buffer over (caller frees with free()); b is left empty. */
char *cp_buf_take(struct cp_buf *b, size_t *len);
void cp_buf_free(struct cp_buf *b);

/* OpenSSL's SHA-256, fetched once for the process's life: EVP_sha256() makes OpenSSL 3 look
 * the implementation up again in every EVP_DigestInit_ex, which costs more than hashing a
 * cache key or an API key on the hit path. (An EVP_MD.) */
const struct evp_md_st *cp_sha256(void);
/* Turns off the debug-only Mutex deadlock detector of an Abseil built without NDEBUG (gRPC's
 * locks); call before grpc_init. 1: done; 0: no such symbol here (nothing changed). */
int cp_absl_deadlock_detection_off(void);

/* Monotonic and wall clocks. */
int64_t cp_now_ms(void);
int64_t cp_mono_ns(void);
/* The time ms milliseconds from now on clock clk, for pthread timed waits. */
struct timespec cp_deadline(int clk, int64_t ms);

/* ---- counters and histograms ------------------------------------------------------------- */

/* Upper bounds in seconds of the duration histogram buckets (the last bucket is +Inf). */
#define CP_HIST_BOUNDS                                                                         \
    {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
#define CP_HIST_NBOUNDS 15

struct cp_hist {
    _Atomic uint64_t bucket[CP_HIST_NBOUNDS + 1]; /* non-cumulative; last = above all bounds */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
};
extern const double cp_hist_bounds[CP_HIST_NBOUNDS];
void cp_hist_observe_ns(struct cp_hist *h, uint64_t ns);

/* ---- worker pool ------------------------------------------------------------------------- */

/* A pool of threads that grows on demand up to max_threads and lets idle threads exit after
 * idle_ms. Jobs never block the submitter. */
struct cp_pool;
struct cp_pool *cp_pool_new(unsigned max_threads, unsigned idle_ms);
/* Queues fn(arg). Returns 0 or CP_ENOMEM. */
int cp_pool_submit(struct cp_pool *p, void (*fn)(void *), void *arg);
/* Runs every queued job, joins all threads and frees the pool. NULL-safe. */
void cp_pool_free(struct cp_pool *p);
/* Threads alive and jobs waiting, for metrics. */
void cp_pool_stats(struct cp_pool *p, unsigned *threads, unsigned *busy, unsigned *queued);

/* ---- event loop --------------------------------------------------------------------------- */

/* A libuv loop on a thread of its own. Upstream transfers, timers and the continuations of
 * requests run on it; nothing on it blocks. Other threads hand it work with cp_loop_post. */
struct cp_loop;
/* Starts the loop's thread. NULL on failure. */
struct cp_loop *cp_loop_new(void);
/* Runs what was posted, then stops and joins the thread. Owners close their timers and HTTP
 * multi handles first. NULL-safe. */
void cp_loop_free(struct cp_loop *l);
/* Queues fn(arg) to run on the loop's thread (from any thread, the loop's own included: then
 * it runs after the current callback). 0, CP_ENOMEM, or CP_ECANCELED once the loop stops
 * (fn will never run). */
int cp_loop_post(struct cp_loop *l, void (*fn)(void *arg), void *arg);
/* 1 when called on l's thread. */
int cp_loop_is_current(const struct cp_loop *l);
/* Jobs started so far (tests, metrics). */
uint64_t cp_loop_jobs(struct cp_loop *l);

/* A one-shot timer (loop thread only): fn(arg) runs once after ms, on the loop. */
struct cp_timer;
struct cp_timer *cp_timer_start(struct cp_loop *l, int64_t ms, void (*fn)(void *arg), void *arg);
/* Stops a timer that has not fired; fn never runs. Must not be called after it fired. */
void cp_timer_cancel(struct cp_timer *t);

/* HTTP transfers on a loop: one libcurl multi handle (its connection pool, DNS cache and
 * connection caps) driven through the multi socket API. Loop thread only. */
struct cp_http;
/* max_connections > 0 caps connections in total and per host: transfers past it wait in
 * libcurl's queue (within their own timeouts). running and queued (may be NULL) are kept up to
 * date with the transfers running and, of those, the ones still waiting for a connection. */
struct cp_http *cp_http_new(struct cp_loop *l, long max_connections, _Atomic int *running,
                            _Atomic int *queued);
/* Closes the pool; every transfer must have finished or been aborted. NULL-safe; from a done
 * callback, the pool closes once that callback's caller has returned. */
void cp_http_free(struct cp_http *h);
/* Starts easy (a CURL *, fully set up; CURLOPT_PRIVATE and CURLOPT_PREREQ* are ours). done
 * runs on the loop when it ends, with libcurl's CURLcode; the easy handle is the caller's
 * again then (done may free it or start another transfer). CP_ENOMEM: nothing started. */
int cp_http_add(struct cp_http *h, void *easy, void (*done)(void *arg, int curl_code), void *arg);
/* Removes a running transfer; its done never runs. */
void cp_http_abort(struct cp_http *h, void *easy);

#endif
