/* auth_int.h - internals shared by the files of auth/. */
#ifndef CP_AUTH_INT_H
#define CP_AUTH_INT_H

#include <pthread.h>

#include "auth.h"

struct auth__oauth2;  /* oauth2.c: shared client-credentials token */
struct auth__authz;   /* authz_http.c: external authorization client and decision cache */
struct auth__module;  /* module.c: a loaded module instance */

struct auth_ds {
    const struct cfg_ds *cfg;
    struct auth_env env;
    struct cp_http *http; /* token and authz requests, on env.loop (made on first use) */
    struct auth__oauth2 *oauth2;
    struct auth__authz *authz;
    struct auth__module *module;
};

/* Asynchronous work keeps the owner alive (auth_env.hold). */
void auth__hold(struct auth_ds *a, int delta);

int auth__oauth2_new(struct auth_ds *a, struct cp_err *err);
void auth__oauth2_free(struct auth__oauth2 *o);
typedef void (*auth__header_fn)(void *arg, int rc, const char *value, const struct cp_err *err);
/* Calls cb with "Bearer <token>" (borrowed for the call), fetching or refreshing the token
 * first if needed: one request at a time, the other callers wait for its result. Loop
 * thread. */
void auth__oauth2_header(struct auth_ds *a, auth__header_fn cb, void *arg);
void auth__oauth2_stats(struct auth__oauth2 *o, struct auth_token_stats *st);

int auth__authz_new(struct auth_ds *a, struct cp_err *err);
void auth__authz_free(struct auth__authz *z);
typedef void (*auth__verdict_fn)(void *arg, int allow, const char *reason);
/* Asks the service (or its cached decision): allow 1, or 0 when it denied or failed (fail
 * closed) with a reason. Loop thread. */
void auth__authz_decide(struct auth_ds *a, const struct auth_request *rq, auth__verdict_fn cb,
                        void *arg);

int auth__module_new(struct auth_ds *a, struct cp_err *err);
void auth__module_free(struct auth__module *m);
/* Module decision; fills allow, scope and reason. Blocking: runs on the cpu pool. */
int auth__module_decide(struct auth_ds *a, const struct auth_request *rq,
                        struct auth_decision *d);
/* Module credentials, appended to c. Blocking: runs on the cpu pool. */
int auth__module_inject(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                        struct cp_err *err);

/* Adds a header (both strings copied). CP_ENOMEM or CP_ETOOBIG when full. */
int auth__creds_add(struct auth_creds *c, const char *name, const char *value);

/* A small HTTP POST for the token endpoint and the authorization service, on the loop. The
 * response body is capped at 1 MiB. cb gets 0 with the status and body, or CP_EUPSTREAM /
 * CP_ETIMEDOUT with err naming the host only. Every pointer of p is copied. */
struct auth__post {
    const char *url;
    const char *content_type;
    const char *body;
    const char *basic_user, *basic_pass; /* optional HTTP basic credentials */
    int64_t timeout_ms;
    int tls_skip_verify;
    const struct cfg_secret *ca_cert; /* tlsCACert when tlsAuthWithCACert is on, else NULL */
};
typedef void (*auth__posted_fn)(void *arg, int rc, long status, const struct cp_buf *resp,
                                const struct cp_err *err);
void auth__http_post(struct auth_ds *a, const struct auth__post *p, auth__posted_fn cb,
                     void *arg);

#endif
