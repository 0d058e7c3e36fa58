/* inject.c - the auth state of an instance, authorization order (rules, then the service,
 * then the module), and the credential injectors of every authType (SPEC.md section 3). The
 * asynchronous steps run on the instance's loop, modules on the cpu pool. */
#include "auth_int.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int auth_ds_new(const struct cfg_ds *cfg, const struct auth_env *env, struct auth_ds **out,
                struct cp_err *err)
{
    struct auth_ds *a = calloc(1, sizeof *a);
    int rc;
    *out = NULL;
    if (!a)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    a->cfg = cfg;
    a->env = *env;
    if (cfg->auth_type == CFG_AUTH_OAUTH2 && (rc = auth__oauth2_new(a, err)))
        goto fail;
    if (cfg->authz_url && (rc = auth__authz_new(a, err)))
        goto fail;
    if (cfg->auth_module && (rc = auth__module_new(a, err)))
        goto fail;
    *out = a;
    return 0;
fail:
    auth_ds_free(a);
    return rc;
}

static void module_free_job(void *m) { auth__module_free(m); }

void auth_ds_free(struct auth_ds *a)
{
    if (!a)
        return;
    cp_http_free(a->http);
    auth__oauth2_free(a->oauth2);
    auth__authz_free(a->authz);
    /* a module's destroy() and its dlclose may take their time: on the cpu pool, not on the
     * loop that frees the data source (inline when there is no pool) */
    if (a->module && (!a->env.cpu || cp_pool_submit(a->env.cpu, module_free_job, a->module) != 0))
        auth__module_free(a->module);
    free(a);
}

int auth_is_local(const struct auth_ds *a) { return !a->authz && !a->module; }

void auth_count(struct auth_ds *a, int allow)
{
    if (a->env.decisions)
        atomic_fetch_add_explicit(&a->env.decisions[allow ? 1 : 0], 1, memory_order_relaxed);
}

void auth__hold(struct auth_ds *a, int delta)
{
    if (a->env.hold)
        a->env.hold(a->env.hold_ctx, delta);
}

/* The rules (first match wins, else defaultAction). */
static void rules_decide(struct auth_ds *a, const struct auth_request *rq,
                         struct auth_decision *d)
{
    int matched = -1;
    d->scope = AUTH_SCOPE_DEFAULT;
    d->reason[0] = 0;
    d->allow = auth_rules_eval(a->cfg, rq->user, rq->method, rq->path, &matched);
    if (!d->allow) {
        if (matched >= 0)
            snprintf(d->reason, sizeof d->reason, "denied by rule %d", matched + 1);
        else
            snprintf(d->reason, sizeof d->reason, "denied by defaultAction");
    }
}

void auth_authorize_local(struct auth_ds *a, const struct auth_request *rq,
                          struct auth_decision *d)
{
    rules_decide(a, rq, d);
}

/* An authorization under way: rules, then the service, then the module. */
struct decide_op {
    struct auth_ds *a;
    const struct auth_request *rq;
    struct auth_decision d;
    auth_decided_fn cb;
    void *arg;
};

static void decided(struct decide_op *op)
{
    auth_count(op->a, op->d.allow);
    op->cb(op->arg, &op->d);
    free(op);
}

static void module_decided(void *arg)
{
    struct decide_op *op = arg;
    struct auth_ds *a = op->a;
    decided(op);
    auth__hold(a, -1);
}

/* On the cpu pool: the module may block. */
static void module_job(void *arg)
{
    struct decide_op *op = arg;
    auth__module_decide(op->a, op->rq, &op->d);
    if (cp_loop_post(op->a->env.loop, module_decided, op) != 0)
        free(op); /* the loop has stopped: the process is ending */
}

static void module_step(struct decide_op *op)
{
    auth__hold(op->a, 1);
    if (cp_pool_submit(op->a->env.cpu, module_job, op) != 0) {
        op->d.allow = 0;
        snprintf(op->d.reason, sizeof op->d.reason, "auth module: out of memory");
        module_decided(op);
    }
}

static void authz_decided(void *arg, int allow, const char *reason)
{
    struct decide_op *op = arg;
    if (!allow) {
        op->d.allow = 0;
        snprintf(op->d.reason, sizeof op->d.reason, "%s", reason);
    }
    if (op->d.allow && op->a->module)
        module_step(op);
    else
        decided(op);
}

void auth_authorize_async(struct auth_ds *a, const struct auth_request *rq, auth_decided_fn cb,
                          void *arg)
{
    struct decide_op *op = calloc(1, sizeof *op);
    if (!op) {
        struct auth_decision d = {.allow = 0, .scope = AUTH_SCOPE_DEFAULT};
        snprintf(d.reason, sizeof d.reason, "out of memory");
        auth_count(a, 0);
        cb(arg, &d);
        return;
    }
    op->a = a;
    op->rq = rq;
    op->cb = cb;
    op->arg = arg;
    rules_decide(a, rq, &op->d);
    if (op->d.allow && a->authz)
        auth__authz_decide(a, rq, authz_decided, op);
    else if (op->d.allow && a->module)
        module_step(op);
    else
        decided(op);
}

int auth__creds_add(struct auth_creds *c, const char *name, const char *value)
{
    if (c->n >= AUTH_MAX_HEADERS)
        return CP_ETOOBIG;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return CP_ENOMEM;
    }
    c->h[c->n].name = n;
    c->h[c->n].value = v;
    c->n++;
    return 0;
}

static void wipe_str(char **s)
{
    if (*s) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

/* The value itself and, for "<scheme> <token>", the token alone. */
static void each_secret_of(const struct auth_creds *c, const struct cp_logger *lg,
                           void (*fn)(const struct cp_logger *lg, const char *v))
{
    for (size_t i = 0; i < c->n; i++) {
        const char *v = c->h[i].value;
        fn(lg, v);
        const char *sp = strchr(v, ' ');
        if (sp && !strcasecmp(c->h[i].name, "Authorization"))
            fn(lg, sp + 1);
    }
    if (c->query_value)
        fn(lg, c->query_value);
}

void auth_creds_wipe(struct auth_creds *c)
{
    if (c->registered)
        each_secret_of(c, c->registered, cp_log_secret_remove);
    c->registered = NULL;
    for (size_t i = 0; i < c->n; i++) {
        free(c->h[i].name);
        wipe_str(&c->h[i].value);
    }
    c->n = 0;
    free(c->query_name);
    c->query_name = NULL;
    wipe_str(&c->query_value);
}

char *auth_base64(const void *src, size_t n)
{
    size_t outlen = 4 * ((n + 2) / 3);
    char *out = malloc(outlen + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, src, (int)n);
    out[outlen] = 0;
    return out;
}

/* "Authorization: <scheme> <value>" from a secret; the composed string is wiped by the
 * caller's auth_creds_wipe. */
static int add_scheme(struct auth_creds *c, const char *scheme, const char *value)
{
    size_t n = strlen(scheme) + 1 + strlen(value) + 1;
    char *v = malloc(n);
    if (!v)
        return CP_ENOMEM;
    snprintf(v, n, "%s %s", scheme, value);
    int rc = auth__creds_add(c, "Authorization", v);
    explicit_bzero(v, n);
    free(v);
    return rc;
}

static int inject_basic(const struct cfg_ds *cfg, struct auth_creds *c)
{
    return add_scheme(c, "Basic", cfg->basic_auth_b64.v ? cfg->basic_auth_b64.v : "");
}

static int inject_hmac(const struct cfg_ds *cfg, const struct auth_outgoing *o,
                       struct auth_creds *c)
{
    char ts[32], sig[129];
    snprintf(ts, sizeof ts, "%lld", (long long)o->now_unix);
    int rc = auth_hmac_sign(cfg->hmac_algorithm, cfg->hmac_secret.v, cfg->hmac_secret.len,
                            o->method, o->path_query, ts, o->body, o->body_len, sig);
    if (rc)
        return rc;
    if ((rc = auth__creds_add(c, "X-Timestamp", ts)))
        return rc;
    return auth__creds_add(c, cfg->hmac_header, sig);
}

/* The injectors that need no I/O. */
static int inject_local(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                        struct cp_err *err)
{
    const struct cfg_ds *cfg = a->cfg;
    int rc = 0;
    /* custom headers first: an explicit credential below wins on the same name */
    for (size_t i = 0; i < cfg->nheaders && !rc; i++)
        rc = auth__creds_add(c, cfg->headers[i].name,
                             cfg->headers[i].value.v ? cfg->headers[i].value.v : "");
    if (rc)
        return rc;
    switch (cfg->auth_type) {
    case CFG_AUTH_NONE:
    case CFG_AUTH_OAUTH2: /* asynchronous: auth_inject_async */
    case CFG_AUTH_MODULE: /* the module adds its own */
        break;
    case CFG_AUTH_BASIC:
        rc = inject_basic(cfg, c);
        break;
    case CFG_AUTH_BEARER:
        rc = add_scheme(c, "Bearer", cfg->bearer_token.v);
        break;
    case CFG_AUTH_APIKEY:
        if (cfg->api_key_query) {
            c->query_name = strdup(cfg->api_key_query);
            c->query_value = strdup(cfg->api_key.v);
            rc = c->query_name && c->query_value ? 0 : CP_ENOMEM;
        } else {
            rc = auth__creds_add(c, cfg->api_key_header, cfg->api_key.v);
        }
        break;
    case CFG_AUTH_FORWARD_OAUTH:
        if (!o->fwd_authorization || !*o->fwd_authorization)
            return cp_err_set(err, CP_EBADREQ,
                              "no OAuth token was forwarded for this user: sign in with the "
                              "OAuth provider (forwardOAuth needs oauthPassThru)");
        rc = auth__creds_add(c, "Authorization", o->fwd_authorization);
        if (!rc && o->fwd_id_token && *o->fwd_id_token)
            rc = auth__creds_add(c, "X-ID-Token", o->fwd_id_token);
        break;
    case CFG_AUTH_HMAC:
        rc = inject_hmac(cfg, o, c);
        break;
    }
    return rc;
}

/* Maps internal failures to what the caller answers, and registers the values on success. */
static int injected(struct auth_ds *a, struct auth_creds *c, int rc, struct cp_err *err)
{
    if (!rc) {
        each_secret_of(c, a->env.log, cp_log_secret_add);
        c->registered = a->env.log;
        return 0;
    }
    if (rc == CP_ENOMEM)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    if (rc == CP_ETOOBIG)
        return cp_err_set(err, CP_ECONFIG, "too many credential headers");
    return rc;
}

int auth_inject(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                struct cp_err *err)
{
    return injected(a, c, inject_local(a, o, c, err), err);
}

/* An injection under way: local injectors, then the OAuth2 token, then the module. */
struct inject_op {
    struct auth_ds *a;
    const struct auth_outgoing *o;
    struct auth_creds *c;
    struct cp_err err;
    int rc;
    auth_injected_fn cb;
    void *arg;
};

static void inject_finish(struct inject_op *op)
{
    op->rc = injected(op->a, op->c, op->rc, &op->err);
    op->cb(op->arg, op->rc, &op->err);
    free(op);
}

static void module_injected(void *arg)
{
    struct inject_op *op = arg;
    struct auth_ds *a = op->a;
    inject_finish(op);
    auth__hold(a, -1);
}

static void module_inject_job(void *arg)
{
    struct inject_op *op = arg;
    op->rc = auth__module_inject(op->a, op->o, op->c, &op->err);
    if (cp_loop_post(op->a->env.loop, module_injected, op) != 0)
        free(op);
}

static void inject_module_step(struct inject_op *op)
{
    if (op->rc || !op->a->module) {
        inject_finish(op);
        return;
    }
    auth__hold(op->a, 1);
    if (cp_pool_submit(op->a->env.cpu, module_inject_job, op) != 0) {
        op->rc = CP_ENOMEM;
        module_injected(op);
    }
}

static void token_ready(void *arg, int rc, const char *value, const struct cp_err *err)
{
    struct inject_op *op = arg;
    if (rc) {
        op->rc = rc;
        op->err = *err;
    } else {
        op->rc = auth__creds_add(op->c, "Authorization", value);
    }
    inject_module_step(op);
}

void auth_inject_async(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                       auth_injected_fn cb, void *arg)
{
    struct inject_op *op = calloc(1, sizeof *op);
    if (!op) {
        struct cp_err e;
        cb(arg, cp_err_set(&e, CP_ENOMEM, "out of memory"), &e);
        return;
    }
    op->a = a;
    op->o = o;
    op->c = c;
    op->cb = cb;
    op->arg = arg;
    op->rc = inject_local(a, o, c, &op->err);
    if (!op->rc && a->cfg->auth_type == CFG_AUTH_OAUTH2)
        auth__oauth2_header(a, token_ready, op);
    else
        inject_module_step(op);
}

void auth_token_stats(struct auth_ds *a, struct auth_token_stats *st)
{
    memset(st, 0, sizeof *st);
    if (a->oauth2)
        auth__oauth2_stats(a->oauth2, st);
}
