/*
 * proxy_int.h - internals shared by the files of proxy/.
 */
#ifndef CP_PROXY_INT_H
#define CP_PROXY_INT_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>

#include "auth.h"
#include "cache.h"
#include "frame.h"
#include "proxy.h"

/* ---- instance state ----------------------------------------------------------------------- */

struct proxy_ds {
    _Atomic unsigned refs; /* the owner's, plus one per call, transfer or background job */
    struct cfg_ds *cfg;
    struct proxy_env env;
    struct cp_loop *loop;      /* where this instance's calls run */
    struct auth_ds *auth;
    struct cache_store *store; /* NULL: cache off */
    unsigned store_caps;       /* CACHE_CAP_* of the store */
    struct cache_flights *flights;
    /* loop thread only: */
    struct cp_http *http; /* connection pool, DNS cache, TLS sessions; made on first use */
    CURL **easy;          /* idle easy handles */
    size_t neasy, easy_cap;
    /* immutable: */
    char *origin;    /* "scheme://host[:port]" of cfg->url */
    char *host;      /* "host[:port]", for messages */
    char *base_path; /* path part of cfg->url, "" or "/v2" */
    struct curl_blob ca_blob, cert_blob, key_blob;
    _Atomic uint64_t hits, misses, stale, bypass, revalidated, coalesced, upstream_requests,
        errors;
    _Atomic uint64_t pieces_hit, pieces_fetched; /* split queries' pieces */
    _Atomic int running, queued; /* upstream transfers, mirrored from the loop for metrics */
    _Atomic int64_t backend_warned_ms; /* the last "cache backend failed" warning */
};

void proxy__ds_ref(struct proxy_ds *ds); /* released with proxy_ds_free */
/* Runs fn(arg) on the instance's loop, holding a reference on ds meanwhile (released after
 * fn). CP_ECANCELED when the loop has stopped. Any thread. */
int proxy__post(struct proxy_ds *ds, void (*fn)(void *arg), void *arg);

/* ---- upstream transfers (forward.c; loop thread) ------------------------------------------- */

/* An upstream request as forward.c sends it; copied by proxy__fetch_start except body, which
 * stays the caller's until on_done. */
struct proxy__upstream_req {
    const char *method;
    const char *path_query; /* upstream path (base path included) and "?query" */
    const struct proxy_header *headers; /* forwarded client headers, already filtered */
    size_t nheaders;
    const struct auth_creds *creds;
    const void *body;
    size_t body_len;
    int64_t timeout_ms;
    int decode; /* the answer is read here (a query): content codings are asked for and undone
                 * by libcurl (a forwarded Accept-Encoding is dropped); else passed through */
};

/* Receives the upstream response as it arrives: on_head once before any on_body; on_body may
 * answer PROXY_PAUSE (nothing taken: the transfer waits for proxy__fetch_resume); any other
 * non-zero return from either aborts the transfer. on_done runs last, once: 0 when a response
 * was received (whatever its status), else CP_EUPSTREAM, CP_ETIMEDOUT, CP_ERESPBIG,
 * CP_ECANCELED with err detail (host only, never the query or credentials). */
struct proxy__upstream_sink {
    /* length: the answer's Content-Length (dropped from h with the other framing headers),
     * -1 when it has none */
    int (*on_head)(void *ctx, int status, const struct cache_header *h, size_t n,
                   int64_t length);
    int (*on_body)(void *ctx, const void *p, size_t n);
    void (*on_done)(void *ctx, int rc, const struct cp_err *err);
    void *ctx;
};

struct proxy__xfer;
/* Starts one request with the instance's connection pool. On failure nothing is called. */
int proxy__fetch_start(struct proxy_ds *ds, const struct proxy__upstream_req *rq,
                       const struct proxy__upstream_sink *sink, struct proxy__xfer **out,
                       struct cp_err *err);
void proxy__fetch_resume(struct proxy__xfer *x);
/* Stops the transfer now (its connection is closed); on_done never runs. */
void proxy__fetch_abort(struct proxy__xfer *x);
/* The instance's multi handle (made on first use) and its release. */
struct cp_http *proxy__http(struct proxy_ds *ds);
/* No proxy in the environment at start-up (http_proxy, https_proxy, all_proxy): transfers
 * then say so to libcurl instead of having it look again each time. */
extern int proxy__no_env_proxy;
void proxy__http_close(struct proxy_ds *ds);

/* ---- admission (admit.c) ---------------------------------------------------------------------- */

#define CP_MAX_FWD_HEADERS 64  /* client headers passed upstream */
#define CP_MAX_OUT_HEADERS 220 /* headers of one answer to the client */
#define CP_MAX_PATH 8192
/* Cap on client headers forwarded upstream (upstreams and libcurl refuse far less). */
#define CP_MAX_FWD_HEADER_BYTES 65536

/* What a front asks for, in its own terms. Borrowed. */
struct proxy__incoming {
    enum cache_kind kind;
    const char *method;   /* as the client sent it (any case) */
    const char *path;     /* resources: the decoded sub-path after "proxy/"; queries: the
                           * model's path after placeholders, without its query */
    const char *raw_path; /* resources: the escaped sub-path (Grafana's url), or NULL */
    const char *query;    /* query string without '?', or NULL */
    const struct proxy_header *headers; /* the client's headers (forwardHeaders filters) */
    size_t nheaders;
    const struct proxy_header *own; /* queries: the model's headers (checked by the front) */
    size_t nown;
    const void *body;
    size_t body_len;
    const struct cp_user *user;
    int check_only; /* ends once authorized (done with 0), nothing fetched */
};

/* The call as it goes upstream, once admitted. Strings point into the call or the front's
 * request (borrowed until the call ends). */
struct proxy__admitted {
    char method[40]; /* upper case */
    char *path; /* normalised, relative to the data source URL: "/items/1"; path_in or heap */
    char path_in[256];
    const char *query;
    struct proxy_header fwd[CP_MAX_FWD_HEADERS + 32]; /* the model's, then forwarded ones */
    size_t nfwd;
    size_t nown; /* of which the first nown are the model's own (part of the request) */
    const void *body;
    size_t body_len;
    const char *fwd_authorization, *fwd_id_token; /* forwardOAuth tokens */
    int refresh; /* Cache-Control: no-cache from an Editor or Admin: the entry is renewed */
    int skip;    /* X-Cache-Skip: true from an Editor or Admin: the cache is not used */
};

/* out is initialised here (release it with proxy__admitted_dispose, also after a refusal).
 * The checks of admission that need nothing but the request, in one order for every front:
 * method token (400; CONNECT and TRACE 405), path normalisation (400), query string (400),
 * allowedPaths (404), body size (413), forwarded headers and their size (413); the last step,
 * authorization, follows with proxy__authorize (or proxy__authorize_local on a fast path).
 * CP_E* with err on a refusal. */
int proxy__admit(const struct proxy_ds *ds, const struct proxy__incoming *in,
                 struct proxy__admitted *out, struct cp_err *err);
/* Admission's last step: the data source's rules, then its authorization service or module;
 * cb gets the decision on the loop thread (at once when the rules decide). rq is filled here
 * and must stay valid (with a and user) until cb ran. */
void proxy__authorize(struct proxy_ds *ds, const struct proxy__admitted *a,
                      const struct cp_user *user, struct auth_request *rq, auth_decided_fn cb,
                      void *arg);
/* The same on a fast path, when the rules alone decide (auth_is_local): any thread, no I/O,
 * counted in the authorization metrics only on a refusal (an answered call counts itself). 0
 * when allowed (d->scope then holds the cache scope), else CP_EDENIED with err. */
int proxy__authorize_local(struct proxy_ds *ds, const struct proxy__admitted *a,
                           const struct cp_user *user, struct auth_decision *d,
                           struct cp_err *err);
/* The refusal of a denied call: CP_EDENIED with err naming method, path and the reason. */
int proxy__denied(const struct proxy__admitted *a, const struct auth_decision *d,
                  struct cp_err *err);

/* Sets a->path to a copy of path (inline when short). 0 or CP_ENOMEM. */
int proxy__admitted_set_path(struct proxy__admitted *a, const char *path);
/* Frees what an admitted call holds (its path when long). NULL-safe. */
void proxy__admitted_dispose(struct proxy__admitted *a);

/* Keeps the client headers forwardHeaders allows (never Cookie, Authorization, framing). */
size_t proxy__filter_headers(const struct cfg_ds *cfg, const struct proxy_header *in, size_t n,
                             struct proxy_header *out, size_t max);
/* 1 when an Editor or Admin asked for a fresh answer (Cache-Control/Pragma: no-cache). */
int proxy__wants_refresh(const struct proxy_header *h, size_t n, const struct cp_user *u);
/* 1 when an Editor or Admin asked to skip the cache (X-Cache-Skip: true, as Grafana
 * Enterprise's cache understands it). */
int proxy__wants_skip(const struct proxy_header *h, size_t n, const struct cp_user *u);
/* First value of a header (case-insensitive name), or NULL. */
const char *proxy__header(const struct proxy_header *h, size_t n, const char *name);
/* 1 when name is an RFC 9110 token and value holds no line break. */
int proxy__header_ok(const char *name, const char *value);
/* 0 for headers no query may set (credentials, cookies, framing). */
int proxy__header_allowed_in_query(const char *name);
/* Bytes the headers take on the wire ("Name: value\r\n"). */
size_t proxy__headers_size(const struct proxy_header *h, size_t n);

/* ---- the call (call.c) ----------------------------------------------------------------------- */

/* How a call answers, chosen by the front that made it. */
struct proxy__call_ops {
    int (*head)(struct proxy_call *c, int status, const struct proxy_header *h, size_t n);
    int (*body)(struct proxy_call *c, const void *p, size_t n); /* 0, PROXY_PAUSE, <0 */
    /* the call ends without an answer (refused, or the upstream failed before answering):
     * the front answers err its own way; head/body may be called from here */
    void (*error)(struct proxy_call *c, const struct cp_err *err);
    void (*done)(struct proxy_call *c, int rc);
};

/* Starts a call on the instance's loop: admission, authorization, cache, upstream, answer.
 * in is copied by admission before this returns... on the loop: so in must stay valid until
 * ops->done. ctx is the front's; *out holds a reference for the caller. recipe: queries, the
 * frame recipe (JSON text, copied): the answer is transformed into an Arrow frame. */
int proxy__call_start(struct proxy_ds *ds, const struct proxy__incoming *in,
                      const struct proxy__call_ops *ops, void *ctx, int64_t ttl_override_ms,
                      const char *recipe, struct proxy_call **out);
void *proxy__call_ctx(const struct proxy_call *c);
/* After done: PROXY_HIT/MISS/STALE/BYPASS, and whether the body was the transform's. */
int proxy__call_result(const struct proxy_call *c, int *transformed);
/* The fast path's hit: 1 answered through sink (head and body), 0 not, <0 broke off. */
int proxy__try_hit(struct proxy_ds *ds, const struct proxy__admitted *a,
                   const struct cp_user *user, int scope_override,
                   const struct proxy_sink *sink, size_t max_body);
/* The lifetime for a call: override, else the first cache rule matching path, else the
 * resource or query default. */
int64_t proxy__ttl_for(const struct proxy_ds *ds, enum cache_kind kind, const char *path,
                       int64_t override_ms);
void proxy__count_error(struct proxy_ds *ds);

/* Turns an upstream JSON answer into the Arrow frame of a query (recipe: refId, root,
 * columns, format as JSON): mine says result ("miss", "bypass") in its meta.custom.cache,
 * keep says "hit". CP_EUPSTREAM when
 * the answer is not JSON, CP_EINVAL when the query cannot make a frame of it (err says why),
 * CP_ENOMEM. query.c. */
int proxy__frame_transform(const char *recipe, const void *raw, size_t len, const char *result,
                           struct cp_buf *mine, struct cp_buf *keep, struct cp_err *err);

/* forwardOAuth: the user's token is a secret while the call runs (add 1, then 0). */
void proxy__user_token(struct proxy_ds *ds, const char *authorization, int add);

/* ---- queries (query.c) ---------------------------------------------------------------------- */

struct proxy__range {
    int64_t from_ms, to_ms, interval_ms, max_points;
};

/* The upstream request of a query for one time range (placeholders substituted). */
struct proxy__qreq {
    char *path; /* without its query string */
    struct cp_buf query;
    char *body; /* or NULL */
};
/* Builds it from the query model; 0, or the error set in r. */
int proxy__query_request(json_t *model, const struct proxy__range *rg, struct proxy__qreq *out,
                         struct proxy_query_result *r);
void proxy__qreq_free(struct proxy__qreq *rq);

/* A validated query (query.c), borrowed by its split run until done. */
struct proxy__qspec {
    json_t *model;
    struct proxy__range rg; /* aligned to timeAlign */
    char method[40];
    const struct proxy_header *own; /* the model's headers, checked */
    size_t nown;
    const struct proxy_header *headers; /* the client's */
    size_t nheaders;
    const struct cp_user *user;
    int64_t ttl_override_ms; /* cacheTtl, or -1 */
    const char *recipe;      /* JSON text: refId, root, columns, format */
};

/* Sets r's error (replacing one set before): status, whether the upstream caused it. */
void proxy__qerror(struct proxy_query_result *r, int status, int downstream, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A query call's error callback: the error with its status. */
void proxy__query_call_error(struct proxy_query_result *r, const struct cp_err *err);
/* After a query's call ends: 0 when the answer is its frame, else CP_EINVAL with the error
 * (status, text) set in r, unless the front's error callback set it already. */
int proxy__query_verdict(struct proxy_ds *ds, int rc, int status, const struct cp_buf *answer,
                         const char *method, const char *path, int transformed,
                         struct proxy_query_result *r);
/* Redacts r's error text (while the call's credentials are still known) and fixes UTF-8. */
void proxy__query_clean_error(struct proxy_ds *ds, struct proxy_query_result *r);
/* The frame encoder a recipe asks for: Arrow, frame JSON ("json") or the compact form
 * ("blob"). */
typedef int (*encode_fn)(const struct frame *, struct cp_buf *);
encode_fn proxy__recipe_encoder(json_t *recipe);
/* RFC 3339 UTC with milliseconds ("2023-11-14T22:13:20.000Z"); n >= 32. */
void proxy__iso(int64_t ms, char *out, size_t n);
/* Milliseconds to nanoseconds, saturating. */
int64_t proxy__ms_to_ns(int64_t ms);

/* ---- live (live.c) ---------------------------------------------------------------------- */

/* The channel ("ds/<uid>/poll/...") for a QueryData query asking for live: true: the stream
 * query of model polled every interval_ms over the last range_ms; a long one is registered
 * under a short id. When answers are per user (scope user, forwardOAuth) the channel names
 * user as its owner: Grafana runs one stream per channel for all its subscribers, so a channel
 * is one user's, and only its owner may subscribe. malloc'd, NULL on ENOMEM. */
char *proxy__live_channel(struct proxy_ds *ds, json_t *model, const char *ref_id,
                          int64_t interval_ms, int64_t range_ms, const struct cp_user *user);
/* Forgets every registered id (process end). */
void proxy__live_forget_all(void);

/* ---- split queries (split.c) ------------------------------------------------------------ */

struct proxy__split;
/* Runs a query as pieces of split_ms (epoch-aligned, at most 4 at a time), each a call of its
 * own with its own cache entry, then joins their frames into r. done(ctx) runs once, on any
 * thread, when r is set. 0: started (*out set first; done may run before this returns);
 * else the error is set in r and nothing runs. */
int proxy__split_start(struct proxy_ds *ds, const struct proxy__qspec *spec, int64_t split_ms,
                       struct proxy_query_result *r, void (*done)(void *ctx), void *ctx,
                       struct proxy__split **out);
/* The client is gone: running pieces stop, no more start; done follows. Any thread. */
void proxy__split_cancel(struct proxy__split *s);
/* After done. NULL-safe. */
void proxy__split_free(struct proxy__split *s);
/* Replaces ${__from}, ${__to} (epoch ms), ${__from:s}, ${__to:s}, ${__from:iso},
 * ${__to:iso}, ${__interval_ms}, ${__maxDataPoints} (and the brace-less $__from, $__to,
 * $__interval_ms, $__maxDataPoints) in s. Returns a malloc'd string, NULL on ENOMEM. */
char *proxy__substitute(const char *s, const struct proxy__range *rg);

/* ---- paths ------------------------------------------------------------------------------ */

/* Decodes and normalises a resource sub-path (the part after "proxy/") into "/a/b" form.
 * raw: Grafana's escaped form (may be NULL), decoded: its percent-decoded form. Rejects with
 * CP_EBADREQ anything that could leave the upstream base: "..", encoded dots or slashes,
 * "//", backslashes, NUL, CR/LF, control characters, absolute URLs, and a disagreement between
 * the two forms. out receives a NUL-terminated path of at most size-1 bytes. */
int proxy__path_normalize(const char *decoded, const char *raw, char *out, size_t size,
                          struct cp_err *err);
/* Percent-encodes a normalised path for the upstream URL (keeps '/', unreserved, sub-delims,
 * ':' and '@'). Returns a malloc'd string. */
char *proxy__path_encode(const char *path);

#endif
