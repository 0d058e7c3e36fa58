/*
 * config.h - typed data source settings (SPEC.md sections 3 and 6): parsing and validation
 * with errors that name the key, durations and sizes, secrets, string lists.
 *
 * Layering: base <- config <- cache, auth, frame <- proxy <- plugin.
 */
#ifndef CP_CONFIG_H
#define CP_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base.h"

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

/* ---- durations and sizes ------------------------------------------------------------------ */

/* Parses "500ms", "30s", "5m", "2h", "1d", "0" or a plain number of seconds (fractions
 * allowed) into milliseconds. Returns 0 or CP_EINVAL. */
int cfg_duration_parse(const char *s, int64_t *ms);
/* Parses "64MiB", "512KiB", "1GB", or a plain number of bytes. Returns 0 or CP_EINVAL. */
int cfg_size_parse(const char *s, int64_t *bytes);
/* A time as Grafana's HTTP API takes it: epoch milliseconds (digits), or date math from now_ms
 * in UTC: "now", then any number of "-N<unit>" / "+N<unit>" (N is 1 when left out) and
 * "/<unit>" (rounded down to the unit's start; with round_up, as for a range's end, to its last
 * millisecond), units s m h d w M y, weeks starting on Monday, a month's day kept within the
 * month ("now-1M" on March 31 is the last day of February). "now-<duration>" in
 * cfg_duration_parse's forms ("1h30m", "500ms") is taken too. Returns 0 or CP_EINVAL. */
int cfg_time_parse(const char *s, int64_t now_ms, int round_up, int64_t *out);
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
    int revalidate; /* expired entries with validators are refreshed with conditional requests */
    enum cfg_scope scope; /* forced to user for forwardOAuth */
    int64_t time_align_ms;
    /* split queries: the default interval (0 = off), the age past which a piece is stable,
     * and the lifetime of stable pieces */
    int64_t query_split_ms, split_stable_after_ms, query_split_ttl_ms;
    int64_t max_entry_bytes, memory_max_bytes;
    int64_t near_cache_ms; /* near cache lifetime in front of Redis; 0 = off */
    int64_t cache_404_ms;  /* lifetime of 404 answers; 0 = not cached */
    char *redis_url;
    struct cfg_secret redis_password;
    struct cfg_secret redis_url_password; /* a password written into redisUrl (redacted) */
    struct cfg_secret redis_sentinel_password;
    /* TLS towards Redis (rediss://): PEM texts; verification on unless skip_verify */
    int redis_tls_skip_verify;
    struct cfg_secret redis_tls_ca_cert, redis_tls_client_cert, redis_tls_client_key;
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
    int64_t max_connections; /* upstream connections at once; calls past it queue */

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

/* ---- standalone server configuration (standalone.c) --------------------------------------- */

/* An API key of the standalone server: who a request with "Authorization: Bearer <key>" is.
 * Requests are matched on the key's SHA-256, compared in constant time; the key itself is
 * kept only so that logs can redact it. */
struct cfg_api_key {
    struct cfg_secret key;
    unsigned char digest[32];
    char *login, *email, *name;
    enum cfg_role role;
    int64_t org_id;
};

/* The file `gpx_cachingproxy serve --config FILE` reads (README, "Standalone mode"). */
struct cfg_standalone {
    char *host; /* listen address: "127.0.0.1", "::1", or "" for every interface */
    int port;
    unsigned threads;         /* HTTP threads (libmicrohttpd's pool) */
    int64_t max_body_bytes;   /* request bodies above it get 413 */
    int64_t shutdown_ms;      /* SIGTERM/SIGINT: in-flight requests get this long to finish */
    int64_t connection_timeout_ms; /* idle keep-alive connections are closed after it */
    struct cfg_ds **ds;       /* owned; an entry may be taken (set to NULL) by the host */
    size_t nds;
    struct cfg_api_key *keys; /* owned */
    size_t nkeys;
};

/* Parses and validates a standalone configuration (JSON text; name is used in messages).
 * "${NAME}" in any string is replaced by environment variable NAME ("$${" writes "${").
 * Every data source's settings are validated with cfg_ds_parse. CP_ECONFIG with err naming
 * the file and the key ("standalone.json: datasources[1].jsonData.cache.backend: ..."), or the
 * line and column of a JSON syntax error. */
int cfg_standalone_parse(const char *text, size_t len, const char *name,
                         struct cfg_standalone **out, struct cp_err *err);
/* Reads path and parses it. CP_ECONFIG when it cannot be read. */
int cfg_standalone_load(const char *path, struct cfg_standalone **out, struct cp_err *err);
/* The API key for a presented bearer token, or NULL. Borrowed from cfg. */
const struct cfg_api_key *cfg_standalone_key(const struct cfg_standalone *cfg, const char *token,
                                             size_t len);
/* Frees everything (secrets wiped). NULL-safe. */
void cfg_standalone_free(struct cfg_standalone *cfg);

#endif
