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
    struct auth__oauth2 *oauth2;
    struct auth__authz *authz;
    struct auth__module *module;
};

int auth__oauth2_new(struct auth_ds *a, struct cp_err *err);
void auth__oauth2_free(struct auth__oauth2 *o);
/* Copies "Bearer <token>" into a malloc'd string, fetching or refreshing the token first if
 * needed (one refresh at a time; others wait for it). */
int auth__oauth2_header(struct auth_ds *a, const struct auth_outgoing *o, char **value,
                        struct cp_err *err);
void auth__oauth2_stats(struct auth__oauth2 *o, struct auth_token_stats *st);

int auth__authz_new(struct auth_ds *a, struct cp_err *err);
void auth__authz_free(struct auth__authz *z);
/* 1 allow, 0 deny (service said so, or failed: fail closed). */
int auth__authz_decide(struct auth_ds *a, const struct auth_request *rq, char *reason,
                       size_t reason_size);

int auth__module_new(struct auth_ds *a, struct cp_err *err);
void auth__module_free(struct auth__module *m);
/* Module decision; fills allow, scope and reason. */
int auth__module_decide(struct auth_ds *a, const struct auth_request *rq,
                        struct auth_decision *d);
/* Module credentials, appended to c. */
int auth__module_inject(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                        struct cp_err *err);

/* Adds a header (both strings copied). CP_ENOMEM or CP_ETOOBIG when full. */
int auth__creds_add(struct auth_creds *c, const char *name, const char *value);

/* A small blocking HTTP POST for the token endpoint and the authorization service. The
 * response body is capped at 1 MiB. Returns 0 with *status set (transport errors:
 * CP_EUPSTREAM / CP_ETIMEDOUT with err naming the host only). */
struct auth__post {
    const char *url;
    const char *content_type;
    const char *body;
    const char *basic_user, *basic_pass; /* optional HTTP basic credentials */
    int64_t timeout_ms;
    int tls_skip_verify;
    const struct cfg_secret *ca_cert; /* tlsCACert when tlsAuthWithCACert is on, else NULL */
    int (*cancelled)(void *ctx);
    void *cancel_ctx;
};
int auth__http_post(const struct auth__post *p, long *status, struct cp_buf *resp,
                    struct cp_err *err);

#endif
