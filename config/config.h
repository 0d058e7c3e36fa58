/*
 * config.h - the base layer of cachingproxy: typed data source settings, durations and sizes,
 * and the small shared tools every other module builds on (error table, logger handle,
 * secrets, capped buffers, counters and histograms, a worker pool).
 *
 * Layering: config <- cache, auth <- proxy <- plugin. Nothing here includes a higher module.
 */
#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "errors.h"

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

/* ---- secrets and strings ------------------------------------------------------------------ */

/* A secret value: owned, NUL-terminated, wiped before free, never formatted. */
struct cfg_secret {
    char *v;
    size_t len;
};
int cfg_secret_set(struct cfg_secret *s, const char *v, size_t len);
void cfg_secret_wipe(struct cfg_secret *s);
static inline int cfg_secret_isset(const struct cfg_secret *s) { return s->v && s->len; }

/* Owned list of owned strings; grows geometrically. */
struct cfg_strlist {
    char **v;
    size_t n, cap;
};
int cfg_strlist_push(struct cfg_strlist *l, const char *s);
void cfg_strlist_free(struct cfg_strlist *l);
/* Case-insensitive membership test. */
int cfg_strlist_has_ci(const struct cfg_strlist *l, const char *s);

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

/* ---- durations and sizes ------------------------------------------------------------------ */

/* Parses "500ms", "30s", "5m", "2h", "1d", "0" or a plain number of seconds (fractions
 * allowed) into milliseconds. Returns 0 or CP_EINVAL. */
int cfg_duration_parse(const char *s, int64_t *ms);
/* Parses "64MiB", "512KiB", "1GB", or a plain number of bytes. Returns 0 or CP_EINVAL. */
int cfg_size_parse(const char *s, int64_t *bytes);
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

/* ---- data source settings (SPEC.md sections 3 and 6) ----------------------------------------- */

enum cfg_auth_type {
    CFG_AUTH_NONE,
    CFG_AUTH_BASIC,
    CFG_AUTH_BEARER,
    CFG_AUTH_APIKEY,
    CFG_AUTH_OAUTH2,
    CFG_AUTH_FORWARD_OAUTH,
    CFG_AUTH_HMAC,
    CFG_AUTH_MODULE,
};
enum cfg_cache_backend { CFG_CACHE_MEMORY, CFG_CACHE_REDIS, CFG_CACHE_OFF };
enum cfg_scope { CFG_SCOPE_SHARED, CFG_SCOPE_ORG, CFG_SCOPE_USER };
/* Grafana org roles in rising order; a role matches itself and every higher role. */
enum cfg_role { CFG_ROLE_NONE = 0, CFG_ROLE_VIEWER, CFG_ROLE_EDITOR, CFG_ROLE_ADMIN };

/* Parses "Viewer", "Editor", "Admin" (case-insensitive); anything else is CFG_ROLE_NONE. */
enum cfg_role cfg_role_parse(const char *s);
const char *cfg_auth_type_name(enum cfg_auth_type t);
const char *cfg_cache_backend_name(enum cfg_cache_backend b);

/* The caller of a request, as Grafana describes it (PluginContext.user and orgId). Strings are
 * borrowed from the request. */
struct cp_user {
    int present; /* 0: Grafana's own call (alerting, provisioning): no user */
    const char *login, *email, *name;
    enum cfg_role role;
    int64_t org_id;
};

/* An authorization rule (SPEC.md section 5); an absent list matches everything. */
struct cfg_rule {
    int allow;
    int has_roles;
    enum cfg_role min_role; /* lowest role listed: it and every higher role match */
    struct cfg_strlist users;
    int has_users;
    int64_t *orgs;
    size_t norgs;
    int has_orgs;
    struct cfg_strlist methods; /* upper case */
    int has_methods;
    struct cfg_strlist paths;
    int has_paths;
};

struct cfg_cache_rule {
    struct cfg_strlist paths;
    int64_t ttl_ms; /* 0 = never cache */
};

/* A custom upstream header (httpHeaderNameN / secure httpHeaderValueN). */
struct cfg_header {
    char *name;
    struct cfg_secret value;
};

struct cfg_cache {
    enum cfg_cache_backend backend;
    int64_t resource_ttl_ms, query_ttl_ms;
    struct cfg_cache_rule *rules;
    size_t nrules;
    struct cfg_strlist methods; /* upper case */
    int64_t swr_ms, sie_ms;     /* staleWhileRevalidate, staleIfError */
    int respect_cache_control;
    enum cfg_scope scope; /* forced to user for forwardOAuth */
    int64_t time_align_ms;
    int64_t max_entry_bytes, memory_max_bytes;
    int64_t near_cache_ms; /* near cache lifetime in front of Redis; 0 = off */
    int64_t cache_404_ms;  /* lifetime of 404 answers; 0 = not cached */
    char *redis_url;
    struct cfg_secret redis_password;
    struct cfg_secret redis_url_password; /* a password written into redisUrl (redacted) */
    char *key_prefix;
};

struct cfg_ds {
    int64_t id;
    char *uid; /* never empty: falls back to the numeric id */
    int64_t org_id; /* uids are unique only within an org */
    char *key_id;   /* "<org>:<uid>": names the data source in cache keys and Redis keys */
    char *name;
    char *url; /* no trailing slash */
    int64_t last_updated_ms;

    int64_t timeout_ms;
    char *health_path;
    int64_t max_response_bytes;
    int64_t max_request_bytes;

    /* credentials */
    enum cfg_auth_type auth_type;
    int basic_auth;
    char *basic_auth_user;
    struct cfg_secret basic_auth_password;
    struct cfg_secret basic_auth_b64; /* base64("user:password"): what basic auth sends */
    struct cfg_secret bearer_token, api_key, oauth2_client_secret, hmac_secret;
    char *api_key_header, *api_key_query; /* exactly one is set */
    char *oauth2_token_url, *oauth2_client_id, *oauth2_audience;
    struct cfg_strlist oauth2_scopes;
    char *hmac_header, *hmac_algorithm;
    char *auth_module, *auth_module_config; /* config: JSON text, secure keys merged in */
    struct cfg_secret *module_secrets;        /* string values of secure authModuleConfig */
    size_t nmodule_secrets;
    struct cfg_header *headers;
    size_t nheaders;
    int oauth_pass_thru;

    /* TLS towards the upstream */
    int tls_skip_verify, tls_auth, tls_auth_ca;
    struct cfg_secret tls_ca_cert, tls_client_cert, tls_client_key;

    /* what may pass */
    struct cfg_strlist allowed_paths;
    struct cfg_strlist forward_headers;
    struct cfg_rule *rules;
    size_t nrules;
    int default_allow;
    char *authz_url;
    int64_t authz_cache_ttl_ms;

    struct cfg_cache cache;

    /* SHA-256 over every setting that changes upstream answers or who may see them: url, every
     * credential and TLS setting (secrets included, hashed). */
    unsigned char fingerprint[32];
};

/* What the host knows of a data source: the fields of DataSourceInstanceSettings. Borrowed. */
struct cfg_ds_input {
    int64_t id;
    int64_t org_id; /* PluginContext.orgId */
    const char *uid, *name, *url;
    int basic_auth_enabled;
    const char *basic_auth_user;
    const char *json_data;
    size_t json_len;
    const char *const *secure_keys; /* decryptedSecureJsonData, nsecure pairs */
    const char *const *secure_values;
    size_t nsecure;
    int64_t last_updated_ms;
    /* Polled while long lists are read: non-zero stops parsing with CP_ECANCELED (the call
     * that asked for the settings is gone). May be NULL. */
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
};

/* Longest secret that may travel in a request header (bearer token, API key, custom header
 * values, basic auth): upstream servers and libcurl refuse much longer header lines. */
#define CFG_MAX_HEADER_SECRET 16384

/* Parses and validates settings into *out (caller frees with cfg_ds_free). On a bad value
 * returns CP_ECONFIG with err naming the key, e.g. "jsonData.timeout: ...". CP_ECANCELED when
 * in->cancelled said stop. */
int cfg_ds_parse(const struct cfg_ds_input *in, struct cfg_ds **out, struct cp_err *err);
/* Wipes secrets and frees. NULL-safe. */
void cfg_ds_free(struct cfg_ds *ds);
/* Calls fn for each secret value held by ds (for log redaction). */
void cfg_ds_each_secret(const struct cfg_ds *ds, void (*fn)(void *ctx, const char *v),
                        void *ctx);

/* Environment lookup that also accepts grafana.ini's GF_PLUGIN_<KEY> form: returns the value
 * of `primary`, else of `secondary`, else NULL. */
const char *cfg_env2(const char *primary, const char *secondary);

#endif
