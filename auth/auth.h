/*
 * auth.h - who may do what (rules, external authorization, loadable modules) and the
 * credentials the upstream sees (basic, bearer, API key, custom headers, OAuth2 client
 * credentials, forwarded OAuth, HMAC signing, module-provided).
 *
 * One struct auth_ds per data source instance; thread-safe. Credential values produced here
 * are secrets: they live in a struct auth_creds that the caller wipes with auth_creds_wipe().
 */
#ifndef CP_AUTH_H
#define CP_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct auth_ds;

struct auth_env {
    const struct cp_logger *log;
    _Atomic uint64_t *decisions; /* [0] deny, [1] allow; may be NULL */
    const char *module_dir;      /* where modules may be loaded from; NULL: none */
    struct cp_loop *loop;        /* where the instance's work runs (token and authz requests) */
    struct cp_pool *cpu;         /* where modules run (they may block) */
    /* Keeps the owner (and with it cfg) alive while asynchronous work runs: hold(ctx, 1)
     * when work starts, hold(ctx, -1) when it ended, on the loop thread. May be NULL. */
    void (*hold)(void *ctx, int delta);
    void *hold_ctx;
};

/* Builds the auth state of an instance (borrows cfg for its lifetime). Loads the module when
 * authType is module or authModule is set. CP_ECONFIG / CP_EMODULE with err detail. */
int auth_ds_new(const struct cfg_ds *cfg, const struct auth_env *env, struct auth_ds **out,
                struct cp_err *err);
/* Frees it; on the loop thread once it was used there (no asynchronous work runs then). */
void auth_ds_free(struct auth_ds *a);

/* ---- authorization ----------------------------------------------------------------------- */

enum auth_scope_override { AUTH_SCOPE_DEFAULT = -1 }; /* else an enum cfg_scope value */

struct auth_decision {
    int allow;
    int scope; /* AUTH_SCOPE_DEFAULT or a cfg_scope a module named */
    char reason[160]; /* no secret: e.g. "rule 2 denies" */
};

/* The request being decided. path: normalised upstream path ("/items/1"). */
struct auth_request {
    const struct cp_user *user;
    const char *method;
    const char *path;
    const char *query; /* raw query string without '?', may be NULL */
    const char *ds_uid;
};

typedef void (*auth_decided_fn)(void *arg, const struct auth_decision *d);

/* Rules first (first match wins, else defaultAction), then the external service (authzUrl,
 * fail closed, over the loop), then the module (on the cpu pool). On the loop thread; cb runs
 * once on it, possibly before this returns. rq and what it points to stay valid until then.
 * Counts the decision. */
void auth_authorize_async(struct auth_ds *a, const struct auth_request *rq, auth_decided_fn cb,
                          void *arg);
/* The rules alone, when auth_is_local (no authzUrl, no module): any thread, no I/O. Does not
 * count the decision (a caller that may decide again later counts the one that stands with
 * auth_count). */
void auth_authorize_local(struct auth_ds *a, const struct auth_request *rq,
                          struct auth_decision *d);
void auth_count(struct auth_ds *a, int allow);
/* 1 when authorization needs no I/O (rules only: no authzUrl, no module). */
int auth_is_local(const struct auth_ds *a);

/* Rules alone (exposed for tests): 1 allow, 0 deny; *matched gets the rule index or -1. */
int auth_rules_eval(const struct cfg_ds *cfg, const struct cp_user *u, const char *method,
                    const char *path, int *matched);

/* Glob match of SPEC.md section 3: '*' one path segment (no '/'), '**' any run including '/'.
 * A trailing slash-double-star also matches the bare prefix: glob "/api/" + "**" matches
 * the path "/api" itself. */
int auth_glob_match(const char *glob, const char *path);
/* True when any glob of the list matches. */
int auth_glob_any(const struct cfg_strlist *globs, const char *path);
/* The form of a normalised path that common upstreams treat as the same resource: letters in
 * lower case, ";params" removed from every segment, trailing dots and spaces removed from
 * every segment ("/Secret-Area;x/a." -> "/secret-area/a"). Deny rules match the path as
 * written and this form (case-insensitively). CP_ETOOBIG when it does not fit in size. */
int auth_path_canonical(const char *path, char *out, size_t size);

/* ---- credentials ------------------------------------------------------------------------- */

#define AUTH_MAX_HEADERS 40

/* Credentials to add to one upstream request. All values are secret: from auth_inject until
 * auth_creds_wipe every value (and the token after a "Basic "/"Bearer " scheme) is registered
 * with the logger, so an upstream echoing one into an error text or a log line is redacted.
 * Keep them until the call's last error text and log line are written. */
struct auth_creds {
    struct {
        char *name;
        char *value;
    } h[AUTH_MAX_HEADERS];
    size_t n;
    char *query_name, *query_value; /* API key as query parameter (value raw, not encoded) */
    const struct cp_logger *registered; /* the logger told about the values, or NULL */
};
/* Unregisters, wipes and frees the values; c can be filled again. */
void auth_creds_wipe(struct auth_creds *c);

/* The outgoing request as the upstream will see it, for signing and modules. */
struct auth_outgoing {
    const struct cp_user *user;
    const char *method;
    const char *path_query; /* "/base/path?sorted=query" exactly as sent */
    const void *body;
    size_t body_len;
    /* Grafana's forwarded user tokens (forwardOAuth): "Bearer ..." and the ID token */
    const char *fwd_authorization, *fwd_id_token;
    int64_t now_unix; /* for HMAC timestamps */
};

typedef void (*auth_injected_fn)(void *arg, int rc, const struct cp_err *err);

/* Fills c (empty, or wiped) with the credentials of the configured authType and the custom
 * headers, and registers them with the logger. May fetch an OAuth2 token over the loop (shared
 * by all callers, one request at a time) and ask the module on the cpu pool. On the loop
 * thread; cb runs once on it with 0, CP_EUPSTREAM when a token cannot be had, CP_EBADREQ when
 * forwardOAuth finds no user token. o, c and what they point to stay valid until then. */
void auth_inject_async(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                       auth_injected_fn cb, void *arg);
/* The same for credentials that need no I/O (every authType but oauth2, without a module):
 * any thread. */
int auth_inject(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                struct cp_err *err);

/* HMAC signature (lower-case hex) over "METHOD\npath_query\ntimestamp\nhex(sha256(body))"
 * with algorithm "sha256" or "sha512". out must hold 129 bytes. Exposed for tests. */
int auth_hmac_sign(const char *algorithm, const void *key, size_t key_len, const char *method,
                   const char *path_query, const char *timestamp, const void *body,
                   size_t body_len, char *out);

/* Base64 (standard alphabet, padded) of src into a malloc'd string. */
char *auth_base64(const void *src, size_t n);

/* Process-wide counters of the OAuth2 token cache (tests and metrics). */
struct auth_token_stats {
    uint64_t fetches, failures;
};
void auth_token_stats(struct auth_ds *a, struct auth_token_stats *st);

#endif
