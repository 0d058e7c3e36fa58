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
    _Atomic unsigned refs; /* the owner's, plus one per background job */
    struct cfg_ds *cfg;
    struct proxy_env env;
    struct auth_ds *auth;
    struct cache_store *store; /* NULL: cache off */
    int store_is_local;        /* the store answers without I/O (memory) */
    struct cache_flights *flights;
    CURLSH *share; /* connection pool, DNS cache and TLS sessions of this instance */
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    pthread_mutex_t easy_mu;
    CURL **easy; /* idle easy handles, reused so their connections stay warm */
    size_t neasy, easy_cap;
    char *origin;    /* "scheme://host[:port]" of cfg->url */
    char *host;      /* "host[:port]", for messages */
    char *base_path; /* path part of cfg->url, "" or "/v2" */
    struct curl_blob ca_blob, cert_blob, key_blob;
    _Atomic uint64_t hits, misses, stale, bypass, coalesced, upstream_requests, errors;
};

/* An upstream request as forward.c sends it. */
struct proxy__upstream_req {
    const char *method;
    const char *path_query; /* upstream path (base path included) and "?query" */
    const struct proxy_header *headers; /* forwarded client headers, already filtered */
    size_t nheaders;
    const struct auth_creds *creds;
    const void *body;
    size_t body_len;
    int64_t timeout_ms;
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
};

/* Receives the upstream response as it arrives. on_head is called once before any on_body;
 * returning non-zero from either aborts the transfer. */
struct proxy__upstream_sink {
    int (*on_head)(void *ctx, int status, const struct cache_header *h, size_t n);
    int (*on_body)(void *ctx, const void *p, size_t n);
    void *ctx;
};

/* Sends one request upstream with the instance's connection pool. Returns 0 when a response
 * was received (whatever its status), else CP_EUPSTREAM, CP_ETIMEDOUT, CP_ERESPBIG,
 * CP_ECANCELED with err detail (host only, never the query or credentials). */
int proxy__fetch(struct proxy_ds *ds, const struct proxy__upstream_req *rq,
                 const struct proxy__upstream_sink *sink, struct cp_err *err);

void proxy__ds_ref(struct proxy_ds *ds); /* released with proxy_ds_free */

/* Connection pool of an instance (forward.c). */
int proxy__share_init(struct proxy_ds *ds);
void proxy__share_cleanup(struct proxy_ds *ds);

/* ---- the cached call (pipeline.c) ----------------------------------------------------------- */

#define CP_MAX_FWD_HEADERS 64  /* client headers passed upstream */
#define CP_MAX_OUT_HEADERS 220 /* headers of one answer to the client */

/* One upstream call as both resources and queries make it. Borrowed for proxy__run. */
struct proxy__call {
    enum cache_kind kind;
    const char *method;
    const char *path;  /* normalised, relative to the data source URL: "/items/1" */
    const char *query; /* encoded query string without '?', or NULL */
    const struct proxy_header *fwd; /* client headers allowed upstream (forwardHeaders) */
    size_t nfwd;
    const void *body;
    size_t body_len;
    const struct cp_user *user;
    const char *fwd_authorization, *fwd_id_token; /* forwardOAuth tokens */
    int refresh;            /* Cache-Control: no-cache from an Editor or Admin */
    int scope_override;     /* -1, or the cfg_scope a module named */
    int64_t ttl_override_ms; /* -1, or the query's cacheTtl */
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
    /* Queries: what is cached and answered is not the upstream's answer but its transform
     * (the frame). transform turns a 2xx answer into the body for this caller and the body
     * to keep (they differ only in saying miss or hit); arg is its recipe, a string that also
     * goes into the key and is copied by background refreshes. A transform that fails leaves
     * the raw answer to the caller. NULL for resources. */
    int (*transform)(const char *arg, const void *raw, size_t len, struct cp_buf *for_caller,
                     struct cp_buf *for_cache);
    const char *transform_arg;
    /* Where the credentials of the upstream call are kept (caller storage, wiped by the caller
     * once its last error text and log line are written, so echoes of them are redacted);
     * NULL: the fetch keeps them only while it runs. */
    struct auth_creds *creds;
};

/* Runs the call through the cache and the upstream, answering through sink. *result gets
 * PROXY_HIT/MISS/STALE/BYPASS; *transformed (may be NULL) tells whether the body answered is
 * the transform's. Returns 0 once an answer was given; an error before any answer (the caller
 * answers it, e.g. as JSON) or after a partial one (the stream is broken). */
int proxy__run(struct proxy_ds *ds, const struct proxy__call *c, const struct proxy_sink *sink,
               int *result, int *transformed, struct cp_err *err);
/* A fresh hit answered without I/O, when the store allows it and the body is at most max_body
 * bytes: 1 answered, 0 not (nothing sent), negative when the answer broke off. */
int proxy__try_hit(struct proxy_ds *ds, const struct proxy__call *c,
                   const struct proxy_sink *sink, size_t max_body);
/* The lifetime for a call: override, else the first cache rule matching path, else the
 * resource or query default. */
int64_t proxy__ttl_for(const struct proxy_ds *ds, enum cache_kind kind, const char *path,
                       int64_t override_ms);
/* Keeps the client headers forwardHeaders allows (never Cookie, Authorization, framing). */
size_t proxy__filter_headers(const struct cfg_ds *cfg, const struct proxy_header *in, size_t n,
                             struct proxy_header *out, size_t max);
/* 1 when an Editor or Admin asked for a fresh answer (Cache-Control/Pragma: no-cache). */
int proxy__wants_refresh(const struct proxy_header *h, size_t n, const struct cp_user *u);
/* First value of a header (case-insensitive name), or NULL. */
const char *proxy__header(const struct proxy_header *h, size_t n, const char *name);

/* forwardOAuth: the user's token is a secret while the call runs (add 1, then 0). */
void proxy__user_token(struct proxy_ds *ds, const char *authorization, int add);
/* 1 when name is an RFC 9110 token and value holds no line break. */
int proxy__header_ok(const char *name, const char *value);
/* 0 for headers no query may set (credentials, cookies, framing). */
int proxy__header_allowed_in_query(const char *name);
/* 0 for methods never sent upstream (CONNECT, TRACE); m upper case. */
int proxy__method_forwardable(const char *m);
/* Bytes the headers take on the wire ("Name: value\r\n"). */
size_t proxy__headers_size(const struct proxy_header *h, size_t n);
/* Cap on client headers forwarded upstream (upstreams and libcurl refuse far less). */
#define CP_MAX_FWD_HEADER_BYTES 65536

/* ---- queries (query.c) ---------------------------------------------------------------------- */

struct proxy__range {
    int64_t from_ms, to_ms, interval_ms, max_points;
};
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
