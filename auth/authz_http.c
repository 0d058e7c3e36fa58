/* authz_http.c - external authorization (SPEC.md section 5): POST the request's identity to
 * authzUrl over the loop; 2xx allows, 403 denies, and anything else (other status,
 * unreachable, timeout) denies: fail closed. Decisions the service made are cached for
 * authzCacheTtl per user, method and path; failures are not cached. */
#include "auth_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 1024
#define MAX_ENTRIES 20000

struct decision {
    struct decision *next;
    char *key;
    int allow;
    int64_t expires_ms;
};

struct auth__authz {
    pthread_mutex_t mu;
    struct decision *b[NBUCKETS];
    size_t n;
};

int auth__authz_new(struct auth_ds *a, struct cp_err *err)
{
    struct auth__authz *z = calloc(1, sizeof *z);
    if (!z)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    pthread_mutex_init(&z->mu, NULL);
    a->authz = z;
    return 0;
}

static void clear(struct auth__authz *z)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct decision *d = z->b[i], *nx;
        for (; d; d = nx) {
            nx = d->next;
            free(d->key);
            free(d);
        }
        z->b[i] = NULL;
    }
    z->n = 0;
}

void auth__authz_free(struct auth__authz *z)
{
    if (!z)
        return;
    clear(z);
    pthread_mutex_destroy(&z->mu);
    free(z);
}

static size_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)(h % NBUCKETS);
}

static const char *role_name(const struct cp_user *u)
{
    static const char *const n[] = {"None", "Viewer", "Editor", "Admin"};
    if (!u || !u->present || (unsigned)u->role > 3)
        return "None";
    return n[u->role];
}

static int lookup(struct auth__authz *z, const char *key, int *allow)
{
    int found = 0;
    int64_t now = cp_now_ms();
    pthread_mutex_lock(&z->mu);
    for (struct decision *d = z->b[hash(key)]; d; d = d->next)
        if (!strcmp(d->key, key)) {
            if (d->expires_ms > now) {
                *allow = d->allow;
                found = 1;
            }
            break;
        }
    pthread_mutex_unlock(&z->mu);
    return found;
}

static void store(struct auth__authz *z, const char *key, int allow, int64_t ttl_ms)
{
    if (ttl_ms <= 0)
        return;
    pthread_mutex_lock(&z->mu);
    size_t h = hash(key);
    struct decision *d;
    for (d = z->b[h]; d; d = d->next)
        if (!strcmp(d->key, key))
            break;
    if (!d) {
        if (z->n >= MAX_ENTRIES)
            clear(z); /* a burst of distinct keys: start over rather than grow without bound */
        d = calloc(1, sizeof *d);
        if (d && !(d->key = strdup(key))) {
            free(d);
            d = NULL;
        }
        if (d) {
            d->next = z->b[h];
            z->b[h] = d;
            z->n++;
        }
    }
    if (d) {
        d->allow = allow;
        d->expires_ms = cp_now_ms() + ttl_ms;
    }
    pthread_mutex_unlock(&z->mu);
}

struct ask {
    struct auth_ds *a;
    char *key; /* the request body, also the cache key */
    auth__verdict_fn cb;
    void *arg;
};

static void answered(void *arg, int rc, long status, const struct cp_buf *resp,
                     const struct cp_err *e)
{
    (void)resp;
    struct ask *q = arg;
    struct auth_ds *a = q->a;
    const struct cfg_ds *cfg = a->cfg;
    char reason[160] = "";
    int allow = 0;
    if (rc) {
        cp_log(a->env.log, CP_LOG_WARN, "authorization service failed; denying (fail closed)",
               (struct cp_kv[]){CP_KV_S("error", cp_err_text(e)), CP_KV_S("dsUid", cfg->uid)},
               2);
        snprintf(reason, sizeof reason, "authorization service unavailable: denied");
    } else if (status >= 200 && status <= 299) {
        allow = 1;
        store(a->authz, q->key, 1, cfg->authz_cache_ttl_ms);
    } else if (status == 403) {
        snprintf(reason, sizeof reason, "denied by the authorization service");
        store(a->authz, q->key, 0, cfg->authz_cache_ttl_ms);
    } else {
        cp_log(a->env.log, CP_LOG_WARN,
               "authorization service answered an unexpected status; denying (fail closed)",
               (struct cp_kv[]){CP_KV_I("status", status), CP_KV_S("dsUid", cfg->uid)}, 2);
        snprintf(reason, sizeof reason, "authorization service answered %ld: denied", status);
    }
    q->cb(q->arg, allow, reason);
    free(q->key);
    free(q);
}

void auth__authz_decide(struct auth_ds *a, const struct auth_request *rq, auth__verdict_fn cb,
                        void *arg)
{
    const struct cfg_ds *cfg = a->cfg;
    const struct cp_user *u = rq->user;
    int present = u && u->present;
    json_t *j = json_pack("{s:{s:s,s:s,s:s},s:I,s:s,s:s,s:s}", "user", "login",
                          present && u->login ? u->login : "", "email",
                          present && u->email ? u->email : "", "role", role_name(u), "orgId",
                          (json_int_t)(u ? u->org_id : 0), "method", rq->method, "path",
                          rq->path, "datasourceUid", cfg->uid);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    struct ask *q = body ? calloc(1, sizeof *q) : NULL;
    if (!q) {
        free(body);
        cb(arg, 0, "authorization service: out of memory");
        return;
    }
    int allow = 0;
    if (lookup(a->authz, body, &allow)) {
        free(body);
        free(q);
        cb(arg, allow, allow ? "" : "denied by the authorization service");
        return;
    }
    q->a = a;
    q->key = body;
    q->cb = cb;
    q->arg = arg;
    int64_t timeout = cfg->timeout_ms < 10000 ? cfg->timeout_ms : 10000;
    struct auth__post p = {.url = cfg->authz_url,
                           .content_type = "application/json",
                           .body = body,
                           .timeout_ms = timeout,
                           .tls_skip_verify = cfg->tls_skip_verify,
                           .ca_cert = cfg->tls_auth_ca ? &cfg->tls_ca_cert : NULL};
    auth__http_post(a, &p, answered, q);
}
