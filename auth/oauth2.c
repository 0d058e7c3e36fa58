/* oauth2.c - OAuth2 client credentials (RFC 6749 section 4.4): one token per instance,
 * fetched on first use, shared by all users, refreshed shortly before it expires; while one
 * thread refreshes, the others wait for its result instead of asking again. */
#include "auth_int.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_LIFETIME_MS 3600000LL
#define RETRY_AFTER_FAILURE_MS 1000LL

struct auth__oauth2 {
    const struct cp_logger *log; /* told about each token, so logs redact it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cfg_secret header; /* "Bearer <token>" */
    int64_t refresh_at_ms, expires_ms;
    int refreshing;
    int basic_failed; /* the server refused client_secret_basic: use the form body */
    int64_t failed_at_ms;
    struct cp_err last_err;
    uint64_t fetches, failures;
};

int auth__oauth2_new(struct auth_ds *a, struct cp_err *err)
{
    struct auth__oauth2 *o = calloc(1, sizeof *o);
    if (!o)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->log = a->env.log;
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
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
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

/* One token request; on success fills header and lifetime. */
static int fetch(struct auth_ds *a, int use_basic, const struct auth_outgoing *og,
                 struct cfg_secret *header, int64_t *lifetime_ms, long *status,
                 struct cp_err *err)
{
    const struct cfg_ds *cfg = a->cfg;
    struct cp_buf form = {0}, resp = {0};
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
    if (rc) {
        cp_buf_free(&form);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    /* client_secret_basic: id and secret are form-urlencoded, then base64'd by curl */
    char *uid = use_basic ? curl_easy_escape(NULL, cfg->oauth2_client_id, 0) : NULL;
    char *usec = use_basic ? curl_easy_escape(NULL, cfg->oauth2_client_secret.v, 0) : NULL;
    int64_t timeout = cfg->timeout_ms < 30000 ? cfg->timeout_ms : 30000;
    struct auth__post p = {cfg->oauth2_token_url, "application/x-www-form-urlencoded", form.p,
                           uid, usec, timeout, cfg->tls_skip_verify,
                           cfg->tls_auth_ca ? &cfg->tls_ca_cert : NULL,
                           og ? og->cancelled : NULL, og ? og->cancel_ctx : NULL};
    *status = 0;
    rc = auth__http_post(&p, status, &resp, err);
    explicit_bzero(form.p, form.len);
    cp_buf_free(&form);
    if (usec) {
        explicit_bzero(usec, strlen(usec));
        curl_free(usec);
    }
    curl_free(uid);
    if (rc) {
        cp_buf_free(&resp);
        if (rc == CP_ECANCELED)
            return rc;
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", cp_err_text(err));
        return cp_err_set(err, CP_EUPSTREAM, "OAuth2 token request failed: %s", why);
    }
    if (*status < 200 || *status > 299) {
        cp_buf_free(&resp);
        return cp_err_set(err, CP_EUPSTREAM,
                          "OAuth2 token endpoint answered %ld: check oauth2ClientId, the "
                          "client secret and oauth2Scopes", *status);
    }
    json_error_t je;
    json_t *j = resp.p ? json_loadb(resp.p, resp.len, 0, &je) : NULL;
    if (resp.p)
        explicit_bzero(resp.p, resp.len);
    cp_buf_free(&resp);
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

int auth__oauth2_header(struct auth_ds *a, const struct auth_outgoing *og, char **value,
                        struct cp_err *err)
{
    struct auth__oauth2 *o = a->oauth2;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        int64_t now = cp_now_ms();
        if (cfg_secret_isset(&o->header) && now < o->refresh_at_ms)
            break;
        if (o->refreshing) {
            pthread_cond_wait(&o->cv, &o->mu);
            continue;
        }
        if (o->failed_at_ms && now - o->failed_at_ms < RETRY_AFTER_FAILURE_MS) {
            /* the last attempt just failed: answer its error instead of asking again */
            if (cfg_secret_isset(&o->header) && now < o->expires_ms)
                break;
            int code = o->last_err.code;
            if (err)
                *err = o->last_err;
            pthread_mutex_unlock(&o->mu);
            return code;
        }
        o->refreshing = 1;
        int use_basic = !o->basic_failed;
        pthread_mutex_unlock(&o->mu);

        struct cfg_secret fresh = {0};
        int64_t life = 0;
        long status = 0;
        struct cp_err e = {0};
        int rc = fetch(a, use_basic, og, &fresh, &life, &status, &e);
        if (rc && use_basic && (status == 400 || status == 401)) {
            /* some servers take the client credentials only in the form body */
            rc = fetch(a, 0, og, &fresh, &life, &status, &e);
            if (!rc) {
                pthread_mutex_lock(&o->mu);
                o->basic_failed = 1;
                pthread_mutex_unlock(&o->mu);
            }
        }

        pthread_mutex_lock(&o->mu);
        o->refreshing = 0;
        o->fetches++;
        now = cp_now_ms();
        if (rc == 0) {
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
        } else if (rc != CP_ECANCELED) {
            o->failures++;
            o->failed_at_ms = now;
            o->last_err = e;
            cp_log(a->env.log, CP_LOG_WARN, "OAuth2 token request failed",
                   (struct cp_kv[]){CP_KV_S("error", cp_err_text(&e)),
                                    CP_KV_S("dsUid", a->cfg->uid)},
                   2);
        }
        pthread_cond_broadcast(&o->cv);
        if (rc) {
            if (cfg_secret_isset(&o->header) && now < o->expires_ms)
                break; /* the old token is still valid: use it */
            pthread_mutex_unlock(&o->mu);
            if (err)
                *err = e;
            return rc;
        }
        break;
    }
    *value = strdup(o->header.v);
    pthread_mutex_unlock(&o->mu);
    return *value ? 0 : cp_err_set(err, CP_ENOMEM, "out of memory");
}

void auth__oauth2_stats(struct auth__oauth2 *o, struct auth_token_stats *st)
{
    pthread_mutex_lock(&o->mu);
    st->fetches = o->fetches;
    st->failures = o->failures;
    pthread_mutex_unlock(&o->mu);
}
