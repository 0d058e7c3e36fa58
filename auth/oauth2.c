/* oauth2.c - OAuth2 client credentials (RFC 6749 section 4.4): one token per instance,
 * fetched on first use, shared by all users, refreshed shortly before it expires; while one
 * request for it runs, the other callers wait for its result instead of asking again. All of
 * it runs on the instance's loop thread. */
#include "auth_int.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_LIFETIME_MS 3600000LL
#define RETRY_AFTER_FAILURE_MS 1000LL

/* A caller waiting for the token request under way. */
struct waiter {
    struct waiter *next;
    auth__header_fn cb;
    void *arg;
};

struct auth__oauth2 {
    const struct cp_logger *log; /* told about each token, so logs redact it */
    struct cfg_secret header;    /* "Bearer <token>" */
    int64_t refresh_at_ms, expires_ms;
    int refreshing;
    int use_basic;    /* this attempt sends the client credentials as HTTP basic */
    int basic_failed; /* the server refused client_secret_basic: use the form body */
    int64_t failed_at_ms;
    struct cp_err last_err;
    struct waiter *waiters, **tail;
    _Atomic uint64_t fetches, failures;
};

int auth__oauth2_new(struct auth_ds *a, struct cp_err *err)
{
    struct auth__oauth2 *o = calloc(1, sizeof *o);
    if (!o)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    o->log = a->env.log;
    o->tail = &o->waiters;
    a->oauth2 = o;
    return 0;
}

/* The token part of "<type> <token>". */
static const char *token_of(const struct cfg_secret *header)
{
    const char *sp = header->v ? strchr(header->v, ' ') : NULL;
    return sp ? sp + 1 : header->v;
}

void auth__oauth2_free(struct auth__oauth2 *o)
{
    if (!o)
        return;
    if (cfg_secret_isset(&o->header))
        cp_log_secret_remove(o->log, token_of(&o->header));
    cfg_secret_wipe(&o->header);
    free(o);
}

static int add_form(struct cp_buf *b, const char *k, const char *v)
{
    char *e = curl_easy_escape(NULL, v, 0);
    if (!e)
        return CP_ENOMEM;
    int rc = cp_buf_addf(b, "%s%s=%s", b->len ? "&" : "", k, e);
    explicit_bzero(e, strlen(e));
    curl_free(e);
    return rc;
}

static void start_fetch(struct auth_ds *a);

/* Reads a 2xx answer of the token endpoint into header and lifetime. */
static int parse_token(const struct cp_buf *resp, struct cfg_secret *header, int64_t *lifetime_ms,
                       struct cp_err *err)
{
    json_error_t je;
    json_t *j = resp && resp->p ? json_loadb(resp->p, resp->len, 0, &je) : NULL;
    json_t *tok = json_object_get(j, "access_token");
    if (!json_is_string(tok) || !*json_string_value(tok)) {
        json_decref(j);
        return cp_err_set(err, CP_EUPSTREAM,
                          "OAuth2 token endpoint answered without an access_token");
    }
    const char *type = json_string_value(json_object_get(j, "token_type"));
    if (!type || !strcasecmp(type, "bearer"))
        type = "Bearer";
    json_t *exp = json_object_get(j, "expires_in");
    *lifetime_ms = DEFAULT_LIFETIME_MS;
    if (json_is_number(exp) && json_number_value(exp) > 0)
        *lifetime_ms = (int64_t)(json_number_value(exp) * 1000);
    else if (json_is_string(exp) && atoll(json_string_value(exp)) > 0)
        *lifetime_ms = atoll(json_string_value(exp)) * 1000;
    size_t n = strlen(type) + 1 + strlen(json_string_value(tok)) + 1;
    char *v = malloc(n);
    int rc;
    if (v) {
        snprintf(v, n, "%s %s", type, json_string_value(tok));
        rc = cfg_secret_set(header, v, n - 1);
        explicit_bzero(v, n);
        free(v);
    } else {
        rc = CP_ENOMEM;
    }
    /* wipe the token inside the JSON tree before freeing it */
    char *t = (char *)json_string_value(tok);
    explicit_bzero(t, strlen(t));
    json_decref(j);
    return rc ? cp_err_set(err, CP_ENOMEM, "out of memory") : 0;
}

/* Hands the outcome to every waiting caller. */
static void wake(struct auth__oauth2 *o, int rc, const struct cp_err *err)
{
    struct waiter *w = o->waiters;
    o->waiters = NULL;
    o->tail = &o->waiters;
    while (w) {
        struct waiter *next = w->next;
        w->cb(w->arg, rc, rc ? NULL : o->header.v, err);
        free(w);
        w = next;
    }
}

static void fetched(void *arg, int rc, long status, const struct cp_buf *resp,
                    const struct cp_err *perr)
{
    struct auth_ds *a = arg;
    struct auth__oauth2 *o = a->oauth2;
    struct cp_err e = {0};
    struct cfg_secret fresh = {0};
    int64_t life = 0;
    if (rc) {
        rc = cp_err_set(&e, CP_EUPSTREAM, "OAuth2 token request failed: %s", cp_err_text(perr));
    } else if (status < 200 || status > 299) {
        if (o->use_basic && (status == 400 || status == 401)) {
            /* some servers take the client credentials only in the form body */
            o->use_basic = 0;
            start_fetch(a);
            auth__hold(a, -1);
            return;
        }
        rc = cp_err_set(&e, CP_EUPSTREAM,
                        "OAuth2 token endpoint answered %ld: check oauth2ClientId, the client "
                        "secret and oauth2Scopes", status);
    } else {
        rc = parse_token(resp, &fresh, &life, &e);
    }
    o->refreshing = 0;
    atomic_fetch_add(&o->fetches, 1);
    int64_t now = cp_now_ms();
    if (rc == 0) {
        if (!o->use_basic)
            o->basic_failed = 1;
        cp_log_secret_add(o->log, token_of(&fresh));
        if (cfg_secret_isset(&o->header))
            cp_log_secret_remove(o->log, token_of(&o->header));
        cfg_secret_wipe(&o->header);
        o->header = fresh;
        /* refresh a little early: 10% of the lifetime, at least 5 s, at most 60 s */
        int64_t margin = life / 10;
        margin = margin < 5000 ? 5000 : margin > 60000 ? 60000 : margin;
        if (margin > life / 2)
            margin = life / 2;
        o->expires_ms = now + life;
        o->refresh_at_ms = now + life - margin;
        o->failed_at_ms = 0;
    } else {
        atomic_fetch_add(&o->failures, 1);
        o->failed_at_ms = now;
        o->last_err = e;
        cp_log(a->env.log, CP_LOG_WARN, "OAuth2 token request failed",
               (struct cp_kv[]){CP_KV_S("error", cp_err_text(&e)), CP_KV_S("dsUid", a->cfg->uid)},
               2);
        if (cfg_secret_isset(&o->header) && now < o->expires_ms)
            rc = 0; /* the old token is still valid: use it */
    }
    wake(o, rc, &e);
    auth__hold(a, -1);
}

/* One token request, with the client credentials as HTTP basic or in the form body. */
static void start_fetch(struct auth_ds *a)
{
    const struct cfg_ds *cfg = a->cfg;
    struct auth__oauth2 *o = a->oauth2;
    int use_basic = o->use_basic;
    struct cp_buf form = {0};
    int rc = add_form(&form, "grant_type", "client_credentials");
    if (!rc && !use_basic) {
        rc = add_form(&form, "client_id", cfg->oauth2_client_id);
        if (!rc)
            rc = add_form(&form, "client_secret", cfg->oauth2_client_secret.v);
    }
    if (!rc && cfg->oauth2_scopes.n) {
        struct cp_buf sc = {0};
        for (size_t i = 0; i < cfg->oauth2_scopes.n && !rc; i++)
            rc = cp_buf_addf(&sc, "%s%s", i ? " " : "", cfg->oauth2_scopes.v[i]);
        if (!rc)
            rc = add_form(&form, "scope", sc.p);
        cp_buf_free(&sc);
    }
    if (!rc && cfg->oauth2_audience && *cfg->oauth2_audience)
        rc = add_form(&form, "audience", cfg->oauth2_audience);
    /* client_secret_basic: id and secret are form-urlencoded, then base64'd by curl */
    char *uid = use_basic ? curl_easy_escape(NULL, cfg->oauth2_client_id, 0) : NULL;
    char *usec = use_basic ? curl_easy_escape(NULL, cfg->oauth2_client_secret.v, 0) : NULL;
    auth__hold(a, 1); /* released by fetched */
    if (rc || (use_basic && (!uid || !usec))) {
        struct cp_err e;
        cp_err_set(&e, CP_ENOMEM, "out of memory");
        fetched(a, CP_ENOMEM, 0, NULL, &e);
    } else {
        int64_t timeout = cfg->timeout_ms < 30000 ? cfg->timeout_ms : 30000;
        struct auth__post p = {.url = cfg->oauth2_token_url,
                               .content_type = "application/x-www-form-urlencoded",
                               .body = form.p,
                               .basic_user = uid,
                               .basic_pass = usec,
                               .timeout_ms = timeout,
                               .tls_skip_verify = cfg->tls_skip_verify,
                               .ca_cert = cfg->tls_auth_ca ? &cfg->tls_ca_cert : NULL};
        auth__http_post(a, &p, fetched, a);
    }
    if (form.p)
        explicit_bzero(form.p, form.len);
    cp_buf_free(&form);
    if (usec) {
        explicit_bzero(usec, strlen(usec));
        curl_free(usec);
    }
    curl_free(uid);
}

void auth__oauth2_header(struct auth_ds *a, auth__header_fn cb, void *arg)
{
    struct auth__oauth2 *o = a->oauth2;
    int64_t now = cp_now_ms();
    if (cfg_secret_isset(&o->header) && now < o->refresh_at_ms) {
        cb(arg, 0, o->header.v, NULL);
        return;
    }
    if (!o->refreshing && o->failed_at_ms && now - o->failed_at_ms < RETRY_AFTER_FAILURE_MS) {
        /* the last attempt just failed: answer its error instead of asking again */
        if (cfg_secret_isset(&o->header) && now < o->expires_ms)
            cb(arg, 0, o->header.v, NULL);
        else
            cb(arg, o->last_err.code, NULL, &o->last_err);
        return;
    }
    struct waiter *w = calloc(1, sizeof *w);
    if (!w) {
        struct cp_err e;
        cp_err_set(&e, CP_ENOMEM, "out of memory");
        cb(arg, CP_ENOMEM, NULL, &e);
        return;
    }
    w->cb = cb;
    w->arg = arg;
    *o->tail = w;
    o->tail = &w->next;
    if (o->refreshing)
        return;
    o->refreshing = 1;
    o->use_basic = !o->basic_failed;
    start_fetch(a);
}

void auth__oauth2_stats(struct auth__oauth2 *o, struct auth_token_stats *st)
{
    st->fetches = atomic_load(&o->fetches);
    st->failures = atomic_load(&o->failures);
}
