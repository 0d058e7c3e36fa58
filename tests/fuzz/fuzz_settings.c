/*
 * fuzz_settings.c - libFuzzer driver for cfg_ds_parse (DataSourceInstanceSettings).
 *
 * Input: jsonData, then optionally a NUL byte and the url, then optionally a NUL byte, a flags
 * byte and the tail of the secret. The secret is "S3CR3T-fuzz-" followed by that tail; it is
 * the value of every secure key (basicAuthPassword, bearerToken, apiKey, hmacSecret,
 * httpHeaderValue1..3, tlsClientKey, redisPassword, ...; secure authModuleConfig is
 * {"moduleToken": secret}) unless flag bit 1 withholds them. Flag bit 0: basicAuth enabled;
 * bit 2: no uid; bit 3: no basicAuthUser. Without a url part the url is a fixed valid one.
 *
 * Whatever the input, cfg_ds_parse either succeeds with settings that satisfy what the rest
 * of the plugin relies on, or fails with CP_ECONFIG/CP_ENOMEM and a detail that names a key
 * and never shows a secret; the same input parses to the same fingerprint twice.
 */
#include "config.h"

#include <jansson.h>

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET_PREFIX "S3CR3T-fuzz-"

static const char *const secure_keys[] = {
    "basicAuthPassword", "bearerToken",       "apiKey",           "oauth2ClientSecret",
    "hmacSecret",        "tlsCACert",         "tlsClientCert",    "tlsClientKey",
    "redisPassword",     "httpHeaderValue1",  "httpHeaderValue2", "httpHeaderValue3",
    "authModuleConfig",
};
#define NSECURE (sizeof secure_keys / sizeof secure_keys[0])

struct secret_check {
    const char *secret;
    const char *url_password; /* a password written into jsonData's redisUrl */
    const char *derived;      /* base64("user:password") derived for basic auth */
    size_t count;
};

static void each_secret(void *ctx, const char *v)
{
    struct secret_check *c = ctx;
    assert(v && *v);
    if (v == c->url_password || v == c->derived)
        return;
    assert(!strcmp(v, c->secret)); /* the only secure value given */
    c->count++;
}

static int is_method(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

static int is_glob(const char *s)
{
    if (s[0] != '/')
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '\\')
            return 0;
    return 1;
}

/* 1 when jsonData (at obj.key) says in so many words: an empty list. */
static int explicit_empty(const char *json, size_t len, const char *obj, const char *key)
{
    json_t *jd = json_loadb(json, len, 0, NULL);
    json_t *o = obj ? json_object_get(jd, obj) : jd;
    json_t *v = json_object_get(o, key);
    int empty = json_is_array(v) && json_array_size(v) == 0;
    json_decref(jd);
    return empty;
}

static void check_valid(const struct cfg_ds *ds, const struct cfg_ds_input *in,
                        const char *secret, int withheld)
{
    assert(ds->uid && *ds->uid && ds->name);
    char key_id[300];
    snprintf(key_id, sizeof key_id, "%lld:%s", (long long)in->org_id, ds->uid);
    assert(ds->key_id && !strncmp(ds->key_id, key_id, sizeof key_id - 1));
    assert(ds->url && (!strncasecmp(ds->url, "http://", 7) || !strncasecmp(ds->url, "https://", 8)));
    size_t ul = strlen(ds->url);
    assert(ds->url[ul - 1] != '/');
    for (const char *c = ds->url; *c; c++)
        assert((unsigned char)*c > 0x20 && *c != 0x7f && *c != '\\' && *c != '?' && *c != '#');
    assert(ds->timeout_ms > 0);
    assert(ds->max_response_bytes > 0 && ds->max_request_bytes > 0);
    assert(ds->health_path && ds->health_path[0] == '/');
    /* an explicit [] is taken as "nothing" (deny all, cache nothing); never by default */
    assert(ds->allowed_paths.n > 0 ||
           explicit_empty(in->json_data, in->json_len, NULL, "allowedPaths"));
    for (size_t i = 0; i < ds->allowed_paths.n; i++)
        assert(is_glob(ds->allowed_paths.v[i]));
    assert(ds->cache.methods.n > 0 ||
           explicit_empty(in->json_data, in->json_len, "cache", "methods"));
    for (size_t i = 0; i < ds->cache.methods.n; i++)
        assert(is_method(ds->cache.methods.v[i]));
    assert((ds->api_key_header != NULL) != (ds->api_key_query != NULL));
    assert(ds->hmac_header && ds->hmac_algorithm);
    assert(!strcmp(ds->hmac_algorithm, "sha256") || !strcmp(ds->hmac_algorithm, "sha512"));
    assert((unsigned)ds->auth_type <= CFG_AUTH_MODULE);
    if (ds->auth_type == CFG_AUTH_FORWARD_OAUTH)
        assert(ds->oauth_pass_thru && ds->cache.scope == CFG_SCOPE_USER);
    if (ds->auth_type == CFG_AUTH_BEARER)
        assert(cfg_secret_isset(&ds->bearer_token));
    if (ds->auth_type == CFG_AUTH_APIKEY)
        assert(cfg_secret_isset(&ds->api_key));
    if (ds->auth_type == CFG_AUTH_HMAC)
        assert(cfg_secret_isset(&ds->hmac_secret));
    if (ds->auth_type == CFG_AUTH_OAUTH2)
        assert(ds->oauth2_token_url && ds->oauth2_client_id && *ds->oauth2_client_id &&
               cfg_secret_isset(&ds->oauth2_client_secret));
    if (ds->auth_type == CFG_AUTH_MODULE)
        assert(ds->auth_module && *ds->auth_module);
    if (ds->auth_module)
        assert(!strchr(ds->auth_module, '/') && !strstr(ds->auth_module, ".."));
    if (ds->authz_url)
        assert(!strncasecmp(ds->authz_url, "http://", 7) ||
               !strncasecmp(ds->authz_url, "https://", 8));
    assert((unsigned)ds->cache.backend <= CFG_CACHE_OFF &&
           (unsigned)ds->cache.scope <= CFG_SCOPE_USER);
    assert(ds->cache.resource_ttl_ms >= 0 && ds->cache.query_ttl_ms >= 0 &&
           ds->cache.swr_ms >= 0 && ds->cache.sie_ms >= 0 && ds->cache.time_align_ms >= 0 &&
           ds->cache.near_cache_ms >= 0 && ds->cache.cache_404_ms >= 0);
    assert(ds->cache.max_entry_bytes > 0 && ds->cache.memory_max_bytes > 0);
    if (ds->cache.backend == CFG_CACHE_MEMORY)
        assert(ds->cache.max_entry_bytes <= ds->cache.memory_max_bytes);
    for (size_t i = 0; i < ds->cache.nrules; i++) {
        assert(ds->cache.rules[i].ttl_ms >= 0);
        for (size_t k = 0; k < ds->cache.rules[i].paths.n; k++)
            assert(is_glob(ds->cache.rules[i].paths.v[k]));
    }
    assert(ds->cache.redis_url && ds->cache.key_prefix);
    for (size_t i = 0; i < ds->nrules; i++) {
        for (size_t k = 0; k < ds->rules[i].methods.n; k++)
            assert(is_method(ds->rules[i].methods.v[k]));
        for (size_t k = 0; k < ds->rules[i].paths.n; k++)
            assert(is_glob(ds->rules[i].paths.v[k]));
        assert(!ds->rules[i].norgs || ds->rules[i].orgs);
    }
    for (size_t i = 0; i < ds->nheaders; i++) {
        assert(ds->headers[i].name && *ds->headers[i].name);
        if (ds->headers[i].value.v)
            assert(!strpbrk(ds->headers[i].value.v, "\r\n"));
    }
    /* secrets come only from secureJsonData: each one held is the one given */
    struct secret_check sc = {secret, ds->cache.redis_url_password.v, ds->basic_auth_b64.v, 0};
    cfg_ds_each_secret(ds, each_secret, &sc);
    if (withheld)
        assert(sc.count == 0);
}

static void check_error(int rc, const struct cp_err *err, const char *secret, int secret_in_input)
{
    static const char *const prefixes[] = {"url", "jsonData", "secureJsonData", "basicAuthUser",
                                           "out of memory"};
    assert(rc == CP_ECONFIG || rc == CP_ENOMEM);
    assert(err->code == rc);
    assert(strlen(err->msg) > 0 && strlen(err->msg) < sizeof err->msg);
    int named = 0;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        named |= !strncmp(err->msg, prefixes[i], strlen(prefixes[i]));
    if (!named)
        fprintf(stderr, "fuzz_settings: detail names no key: %s\n", err->msg);
    assert(named);
    if (!secret_in_input) {
        /* not the secret, nor a piece of it */
        assert(!strstr(err->msg, secret));
        assert(!strstr(err->msg, SECRET_PREFIX));
        assert(!strstr(err->msg, "S3CR3T"));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *json = NULL;
    const char *url = "https://upstream.example:8443/api/";
    char secret[300] = SECRET_PREFIX;
    int flags = 0;
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    json = buf;
    size_t json_len = strlen(buf);
    if (json_len < size) {
        char *rest = buf + json_len + 1;
        url = rest;
        rest += strlen(rest);
        if (rest < buf + size) {
            rest++; /* the NUL after the url */
            if (rest < buf + size)
                flags = (unsigned char)*rest++;
            snprintf(secret + strlen(SECRET_PREFIX), sizeof secret - strlen(SECRET_PREFIX),
                     "%s", rest);
        }
    }
    int withheld = flags & 2;
    const char *values[NSECURE];
    for (size_t i = 0; i < NSECURE; i++)
        values[i] = secret;
    json_t *mc = json_pack("{s:s}", "moduleToken", secret); /* NULL for invalid UTF-8 */
    char *mc_text = mc ? json_dumps(mc, JSON_COMPACT) : NULL;
    json_decref(mc);
    values[NSECURE - 1] = mc_text ? mc_text : "{}";
    /* the secret may show in an error only when the non-secret input holds it itself */
    int secret_in_input = strstr(json, "S3CR3T") || strstr(url, "S3CR3T");

    unsetenv("CACHINGPROXY_REDIS_URL");
    unsetenv("GF_PLUGIN_REDIS_URL");
    struct cfg_ds_input in = {
        .id = 7,
        .org_id = 3,
        .uid = (flags & 4) ? "" : "ds-uid",
        .name = "fuzz",
        .url = url,
        .basic_auth_enabled = flags & 1,
        .basic_auth_user = (flags & 8) ? "" : "alice",
        .json_data = json,
        .json_len = json_len,
        .secure_keys = secure_keys,
        .secure_values = values,
        .nsecure = withheld ? 0 : NSECURE,
        .last_updated_ms = 1700000000000LL,
    };
    struct cfg_ds *ds = (struct cfg_ds *)(uintptr_t)1;
    struct cp_err err = {0};
    int rc = cfg_ds_parse(&in, &ds, &err);
    if (rc == 0) {
        assert(ds);
        check_valid(ds, &in, secret, withheld);
        /* deterministic: the same settings give the same fingerprint */
        struct cfg_ds *ds2 = NULL;
        assert(cfg_ds_parse(&in, &ds2, NULL) == 0 && ds2);
        assert(!memcmp(ds->fingerprint, ds2->fingerprint, sizeof ds->fingerprint));
        cfg_ds_free(ds2);
    } else {
        assert(ds == NULL);
        check_error(rc, &err, secret, secret_in_input);
        /* a NULL err is allowed and gives the same verdict */
        struct cfg_ds *ds2 = (struct cfg_ds *)(uintptr_t)1;
        assert(cfg_ds_parse(&in, &ds2, NULL) == rc && ds2 == NULL);
    }
    cfg_ds_free(ds);
    free(mc_text);
    free(buf);
    return 0;
}
