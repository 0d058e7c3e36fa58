/*
 * test_config.c - config/: settings (cfg_ds_parse), durations and sizes; and base/'s capped
 * buffers and pool.
 *
 * Settings are given the way Grafana gives them (url, basicAuth, jsonData text, decrypted
 * secure values). Every bad value must come back as CP_ECONFIG with a message that opens with
 * the offending key, and no message may hold a secret: every secret used here contains
 * "S3cret", and every error message is searched for it.
 */
#include "config.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define URL "https://api.example.com/v2"
#define SECRET_MARK "S3cret"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Secure values always passed along, so any error path that echoed a secret would show it. */
static const char *const base_sk[] = {"basicAuthPassword", "redisPassword", "tlsClientKey",
                                      "httpHeaderValue9"};
static const char *const base_sv[] = {"S3cret-basic-pw", "S3cret-redis-pw", "S3cret-tls-key",
                                      "S3cret-unused-header"};
#define NBASE (sizeof base_sk / sizeof base_sk[0])
#define MAX_SECURE 8

struct input {
    const char *url; /* NULL: URL */
    int basic;
    const char *buser;
    const char *json;
    const char *sk[MAX_SECURE - NBASE];
    const char *sv[MAX_SECURE - NBASE];
};

static int parse_in(const struct input *t, struct cfg_ds **out, struct cp_err *err)
{
    const char *keys[MAX_SECURE], *vals[MAX_SECURE];
    size_t n = 0;
    for (size_t i = 0; i < NBASE; i++, n++) {
        keys[n] = base_sk[i];
        vals[n] = base_sv[i];
    }
    for (size_t i = 0; i < MAX_SECURE - NBASE && t->sk[i]; i++, n++) {
        keys[n] = t->sk[i];
        vals[n] = t->sv[i];
    }
    struct cfg_ds_input in = {
        .id = 7,
        .uid = "ds-uid",
        .name = "My DS",
        .url = t->url ? t->url : URL,
        .basic_auth_enabled = t->basic,
        .basic_auth_user = t->buser,
        .json_data = t->json,
        .json_len = t->json ? strlen(t->json) : 0,
        .secure_keys = keys,
        .secure_values = vals,
        .nsecure = n,
        .last_updated_ms = 1000,
    };
    memset(err, 0, sizeof *err);
    return cfg_ds_parse(&in, out, err);
}

/* Parses json with the base secrets; the settings must be accepted. */
static struct cfg_ds *parse_ok(const char *json)
{
    struct input t = {.json = json};
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    int rc = parse_in(&t, &ds, &err);
    if (rc)
        print_error("settings %s refused: %s\n", json ? json : "(none)", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(ds);
    return ds;
}

static void assert_list(const struct cfg_strlist *l, const char *const *want, size_t n)
{
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l->v[i], want[i]);
}

/* ---- defaults ------------------------------------------------------------------------------ */

static void test_settings__defaults(void **state)
{
    (void)state;
    unsetenv("CACHINGPROXY_REDIS_URL");
    unsetenv("GF_PLUGIN_REDIS_URL");
    /* an absent jsonData, an empty object and explicit nulls all mean "defaults" */
    static const char *const forms[] = {NULL, "{}", "{\"timeout\":null,\"cache\":null,"
                                                    "\"allowedPaths\":null,\"rules\":null}"};
    for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
        struct cfg_ds *ds = parse_ok(forms[f]);
        assert_string_equal(ds->uid, "ds-uid");
        assert_string_equal(ds->url, URL);
        assert_int_equal(ds->timeout_ms, 30000);
        assert_int_equal(ds->max_response_bytes, 64LL * 1024 * 1024);
        assert_string_equal(ds->health_path, "/");
        static const char *const paths[] = {"/**"};
        assert_list(&ds->allowed_paths, paths, 1);
        static const char *const fwd[] = {"Accept", "Accept-Encoding", "Content-Type",
                                          "If-None-Match", "If-Modified-Since"};
        assert_list(&ds->forward_headers, fwd, 5);
        assert_int_equal(ds->nrules, 0);
        assert_int_equal(ds->default_allow, 1);
        assert_null(ds->authz_url);
        assert_int_equal(ds->authz_cache_ttl_ms, 10000);
        assert_int_equal(ds->auth_type, CFG_AUTH_NONE);
        assert_string_equal(ds->api_key_header, "X-API-Key");
        assert_null(ds->api_key_query);
        assert_string_equal(ds->hmac_header, "X-Signature");
        assert_string_equal(ds->hmac_algorithm, "sha256");
        assert_int_equal(ds->oauth_pass_thru, 0);
        assert_int_equal(ds->nheaders, 0);
        assert_int_equal(ds->tls_skip_verify, 0);

        const struct cfg_cache *c = &ds->cache;
        assert_int_equal(c->backend, CFG_CACHE_MEMORY);
        assert_int_equal(c->resource_ttl_ms, 30000);
        assert_int_equal(c->query_ttl_ms, 60000);
        assert_int_equal(c->nrules, 0);
        static const char *const methods[] = {"GET", "HEAD"};
        assert_list(&c->methods, methods, 2);
        assert_int_equal(c->swr_ms, 0);
        assert_int_equal(c->sie_ms, 0);
        assert_int_equal(c->respect_cache_control, 1);
        assert_int_equal(c->scope, CFG_SCOPE_SHARED);
        assert_int_equal(c->time_align_ms, 10000);
        assert_int_equal(c->max_entry_bytes, 8LL * 1024 * 1024);
        assert_int_equal(c->memory_max_bytes, 256LL * 1024 * 1024);
        assert_string_equal(c->redis_url, "redis://127.0.0.1:6379");
        assert_string_equal(c->key_prefix, "cachingproxy:");
        /* the secure value given is held as a secret */
        assert_string_equal(c->redis_password.v, "S3cret-redis-pw");
        cfg_ds_free(ds);
    }
}

static void test_settings__uid_falls_back_to_id(void **state)
{
    (void)state;
    struct cfg_ds_input in = {.id = 42, .url = URL};
    struct cfg_ds *ds = NULL;
    struct cp_err err = {0};
    assert_int_equal(cfg_ds_parse(&in, &ds, &err), 0);
    assert_string_equal(ds->uid, "42");
    cfg_ds_free(ds);
}

static void test_settings__url_trailing_slash_removed(void **state)
{
    (void)state;
    struct input t = {.url = "https://api.example.com/v2/"};
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    assert_int_equal(parse_in(&t, &ds, &err), 0);
    assert_string_equal(ds->url, "https://api.example.com/v2");
    cfg_ds_free(ds);
    t.url = "http://localhost:8080/";
    assert_int_equal(parse_in(&t, &ds, &err), 0);
    assert_string_equal(ds->url, "http://localhost:8080");
    cfg_ds_free(ds);
}

static void test_settings__auth_type_default_follows_basic_auth(void **state)
{
    (void)state;
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    struct input t = {.basic = 1, .buser = "alice"};
    assert_int_equal(parse_in(&t, &ds, &err), 0);
    assert_int_equal(ds->auth_type, CFG_AUTH_BASIC);
    assert_int_equal(ds->basic_auth, 1);
    assert_string_equal(ds->basic_auth_user, "alice");
    assert_string_equal(ds->basic_auth_password.v, "S3cret-basic-pw");
    cfg_ds_free(ds);

    t.basic = 0;
    assert_int_equal(parse_in(&t, &ds, &err), 0);
    assert_int_equal(ds->auth_type, CFG_AUTH_NONE);
    cfg_ds_free(ds);

    /* an explicit authType wins over basicAuth */
    struct input b = {.basic = 1,
                      .buser = "alice",
                      .json = "{\"authType\":\"bearer\"}",
                      .sk = {"bearerToken"},
                      .sv = {"S3cret-bearer"}};
    assert_int_equal(parse_in(&b, &ds, &err), 0);
    assert_int_equal(ds->auth_type, CFG_AUTH_BEARER);
    assert_string_equal(ds->bearer_token.v, "S3cret-bearer");
    cfg_ds_free(ds);
}

static void test_settings__redis_url_from_env(void **state)
{
    (void)state;
    struct cfg_ds *ds;
    unsetenv("CACHINGPROXY_REDIS_URL");
    setenv("GF_PLUGIN_REDIS_URL", "redis://gf-host:6390/1", 1);
    ds = parse_ok(NULL);
    assert_string_equal(ds->cache.redis_url, "redis://gf-host:6390/1");
    cfg_ds_free(ds);

    /* the plugin's own variable wins over grafana.ini's */
    setenv("CACHINGPROXY_REDIS_URL", "unix:///run/redis.sock", 1);
    ds = parse_ok(NULL);
    assert_string_equal(ds->cache.redis_url, "unix:///run/redis.sock");
    cfg_ds_free(ds);

    /* and the data source's own setting wins over both */
    ds = parse_ok("{\"cache\":{\"redisUrl\":\"redis://ds-host:6379\"}}");
    assert_string_equal(ds->cache.redis_url, "redis://ds-host:6379");
    cfg_ds_free(ds);

    unsetenv("CACHINGPROXY_REDIS_URL");
    unsetenv("GF_PLUGIN_REDIS_URL");
    ds = parse_ok(NULL);
    assert_string_equal(ds->cache.redis_url, "redis://127.0.0.1:6379");
    cfg_ds_free(ds);
}

/* ---- good values ----------------------------------------------------------------------------- */

static void test_settings__every_key_read(void **state)
{
    (void)state;
    struct input t = {
        .json = "{\"timeout\":5,\"maxResponseBytes\":\"1MiB\",\"maxRequestBytes\":2048,"
                "\"healthPath\":\"status\",\"authType\":\"apiKey\",\"apiKeyQueryParam\":\"key\","
                "\"hmacHeader\":\"X-Sig\",\"hmacAlgorithm\":\"sha512\",\"oauthPassThru\":true,"
                "\"httpHeaderName1\":\"X-Tenant\",\"httpHeaderName2\":\"X-Empty\","
                "\"tlsSkipVerify\":\"true\",\"serverName\":\"api.internal\","
                "\"allowedPaths\":[\"/api/**\",\"/health\"],"
                "\"forwardHeaders\":[\"Accept\",\"X-Request-Id\"],"
                "\"rules\":[{\"effect\":\"deny\",\"roles\":[\"Editor\",\"Viewer\"],"
                "\"users\":[\"bob\"],\"orgs\":[1,\"2\"],\"methods\":[\"post\",\"delete\"],"
                "\"paths\":[\"/admin/**\"]},{\"effect\":\"allow\"}],"
                "\"defaultAction\":\"deny\",\"authzUrl\":\"http://authz.local/check\","
                "\"authzCacheTtl\":\"1m\",\"authModuleConfig\":{\"a\":1},"
                "\"oauth2Scopes\":\"read\","
                "\"cache\":{\"backend\":\"redis\",\"resourceTtl\":\"5m\",\"queryTtl\":120,"
                "\"rules\":[{\"paths\":[\"/slow/**\"],\"ttl\":\"1h\"},"
                "{\"paths\":\"/live\",\"ttl\":0}],\"methods\":[\"get\",\"post\"],"
                "\"staleWhileRevalidate\":\"30s\",\"staleIfError\":\"1h\","
                "\"respectCacheControl\":false,\"scope\":\"org\",\"timeAlign\":\"500ms\","
                "\"maxEntryBytes\":\"1MiB\",\"memoryMaxBytes\":1073741824,"
                "\"redisUrl\":\"redis://cache:6380/2\",\"keyPrefix\":\"gf:\"}}",
        .sk = {"apiKey", "httpHeaderValue1"},
        .sv = {"S3cret-api-key", "tenant-1"},
    };
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    int rc = parse_in(&t, &ds, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(ds->timeout_ms, 5000);
    assert_int_equal(ds->max_response_bytes, 1048576);
    assert_int_equal(ds->max_request_bytes, 2048);
    assert_string_equal(ds->health_path, "/status");
    assert_int_equal(ds->auth_type, CFG_AUTH_APIKEY);
    assert_string_equal(ds->api_key.v, "S3cret-api-key");
    assert_null(ds->api_key_header);
    assert_string_equal(ds->api_key_query, "key");
    assert_string_equal(ds->hmac_header, "X-Sig");
    assert_string_equal(ds->hmac_algorithm, "sha512");
    assert_int_equal(ds->oauth_pass_thru, 1);
    assert_int_equal(ds->nheaders, 2);
    assert_string_equal(ds->headers[0].name, "X-Tenant");
    assert_string_equal(ds->headers[0].value.v, "tenant-1");
    assert_string_equal(ds->headers[1].name, "X-Empty");
    assert_false(cfg_secret_isset(&ds->headers[1].value));
    assert_int_equal(ds->tls_skip_verify, 1);
    static const char *const paths[] = {"/api/**", "/health"};
    assert_list(&ds->allowed_paths, paths, 2);
    static const char *const fwd[] = {"Accept", "X-Request-Id"};
    assert_list(&ds->forward_headers, fwd, 2);

    assert_int_equal(ds->nrules, 2);
    const struct cfg_rule *r = &ds->rules[0];
    assert_int_equal(r->allow, 0);
    assert_true(r->has_roles);
    assert_int_equal(r->min_role, CFG_ROLE_VIEWER);
    assert_true(r->has_users);
    static const char *const users[] = {"bob"};
    assert_list(&r->users, users, 1);
    assert_true(r->has_orgs);
    assert_int_equal(r->norgs, 2);
    assert_int_equal(r->orgs[0], 1);
    assert_int_equal(r->orgs[1], 2);
    static const char *const rmethods[] = {"POST", "DELETE"};
    assert_list(&r->methods, rmethods, 2);
    static const char *const rpaths[] = {"/admin/**"};
    assert_list(&r->paths, rpaths, 1);
    r = &ds->rules[1];
    assert_int_equal(r->allow, 1);
    assert_false(r->has_roles || r->has_users || r->has_orgs || r->has_methods || r->has_paths);

    assert_int_equal(ds->default_allow, 0);
    assert_string_equal(ds->authz_url, "http://authz.local/check");
    assert_int_equal(ds->authz_cache_ttl_ms, 60000);
    assert_non_null(ds->auth_module_config);
    assert_string_equal(ds->auth_module_config, "{\"a\":1}");
    static const char *const scopes[] = {"read"};
    assert_list(&ds->oauth2_scopes, scopes, 1);

    const struct cfg_cache *c = &ds->cache;
    assert_int_equal(c->backend, CFG_CACHE_REDIS);
    assert_int_equal(c->resource_ttl_ms, 300000);
    assert_int_equal(c->query_ttl_ms, 120000);
    assert_int_equal(c->nrules, 2);
    static const char *const slow[] = {"/slow/**"};
    assert_list(&c->rules[0].paths, slow, 1);
    assert_int_equal(c->rules[0].ttl_ms, 3600000);
    static const char *const live[] = {"/live"};
    assert_list(&c->rules[1].paths, live, 1);
    assert_int_equal(c->rules[1].ttl_ms, 0);
    static const char *const cmethods[] = {"GET", "POST"};
    assert_list(&c->methods, cmethods, 2);
    assert_int_equal(c->swr_ms, 30000);
    assert_int_equal(c->sie_ms, 3600000);
    assert_int_equal(c->respect_cache_control, 0);
    assert_int_equal(c->scope, CFG_SCOPE_ORG);
    assert_int_equal(c->time_align_ms, 500);
    assert_int_equal(c->max_entry_bytes, 1048576);
    assert_int_equal(c->memory_max_bytes, 1073741824);
    assert_string_equal(c->redis_url, "redis://cache:6380/2");
    assert_string_equal(c->key_prefix, "gf:");
    cfg_ds_free(ds);
}

/* Each duration key read through the settings, in every accepted form. */
struct dur_key {
    const char *pre, *post; /* jsonData around the value */
    size_t off;      /* offset of the int64_t in struct cfg_ds */
};
static const struct dur_key dur_keys[] = {
    {"{\"timeout\":", "}", offsetof(struct cfg_ds, timeout_ms)},
    {"{\"authzCacheTtl\":", "}", offsetof(struct cfg_ds, authz_cache_ttl_ms)},
    {"{\"cache\":{\"resourceTtl\":", "}}", offsetof(struct cfg_ds, cache.resource_ttl_ms)},
    {"{\"cache\":{\"queryTtl\":", "}}", offsetof(struct cfg_ds, cache.query_ttl_ms)},
    {"{\"cache\":{\"staleWhileRevalidate\":", "}}", offsetof(struct cfg_ds, cache.swr_ms)},
    {"{\"cache\":{\"staleIfError\":", "}}", offsetof(struct cfg_ds, cache.sie_ms)},
    {"{\"cache\":{\"timeAlign\":", "}}", offsetof(struct cfg_ds, cache.time_align_ms)},
};

static void test_settings__duration_values(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int64_t ms;
    } vals[] = {{"\"500ms\"", 500},  {"\"30s\"", 30000}, {"\"5m\"", 300000},
                {"\"1h\"", 3600000}, {"90", 90000},      {"1.5", 1500},
                {"\"2\"", 2000},     {"\"1m30s\"", 90000}};
    for (size_t k = 0; k < sizeof dur_keys / sizeof dur_keys[0]; k++)
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            char json[160];
            snprintf(json, sizeof json, "%s%s%s", dur_keys[k].pre, vals[v].json,
                     dur_keys[k].post);
            struct cfg_ds *ds = parse_ok(json);
            int64_t got = *(const int64_t *)((const char *)ds + dur_keys[k].off);
            if (got != vals[v].ms)
                print_error("%s: got %lld\n", json, (long long)got);
            assert_int_equal(got, vals[v].ms);
            cfg_ds_free(ds);
        }
}

struct size_key {
    const char *pre, *post;
    size_t off;
};
static const struct size_key size_keys[] = {
    {"{\"maxResponseBytes\":", "}", offsetof(struct cfg_ds, max_response_bytes)},
    {"{\"cache\":{\"maxEntryBytes\":", "}}", offsetof(struct cfg_ds, cache.max_entry_bytes)},
    {"{\"cache\":{\"memoryMaxBytes\":", "}}", offsetof(struct cfg_ds, cache.memory_max_bytes)},
};

static void test_settings__size_values(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int64_t bytes;
    } vals[] = {{"\"64MiB\"", 64LL << 20}, {"\"512KiB\"", 512 << 10}, {"1048576", 1048576},
                {"\"4096\"", 4096},        {"\"2MB\"", 2000000},      {"\"1MiB\"", 1 << 20}};
    for (size_t k = 0; k < sizeof size_keys / sizeof size_keys[0]; k++)
        for (size_t v = 0; v < sizeof vals / sizeof vals[0]; v++) {
            char json[160];
            snprintf(json, sizeof json, "%s%s%s", size_keys[k].pre, vals[v].json,
                     size_keys[k].post);
            struct cfg_ds *ds = parse_ok(json);
            int64_t got = *(const int64_t *)((const char *)ds + size_keys[k].off);
            if (got != vals[v].bytes)
                print_error("%s: got %lld\n", json, (long long)got);
            assert_int_equal(got, vals[v].bytes);
            cfg_ds_free(ds);
        }
}

static void test_settings__enum_values(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int backend, scope, def_allow;
    } vals[] = {
        {"{\"cache\":{\"backend\":\"memory\",\"scope\":\"shared\"}}", CFG_CACHE_MEMORY,
         CFG_SCOPE_SHARED, 1},
        {"{\"cache\":{\"backend\":\"redis\",\"scope\":\"org\"},\"defaultAction\":\"allow\"}",
         CFG_CACHE_REDIS, CFG_SCOPE_ORG, 1},
        {"{\"cache\":{\"backend\":\"off\",\"scope\":\"user\"},\"defaultAction\":\"deny\"}",
         CFG_CACHE_OFF, CFG_SCOPE_USER, 0},
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct cfg_ds *ds = parse_ok(vals[i].json);
        assert_int_equal(ds->cache.backend, vals[i].backend);
        assert_int_equal(ds->cache.scope, vals[i].scope);
        assert_int_equal(ds->default_allow, vals[i].def_allow);
        cfg_ds_free(ds);
    }
}

static void test_settings__auth_types_accepted(void **state)
{
    (void)state;
    static const struct {
        struct input in;
        enum cfg_auth_type type;
    } cases[] = {
        {{.json = "{\"authType\":\"none\"}"}, CFG_AUTH_NONE},
        {{.json = "{\"authType\":\"basic\"}", .buser = "u"}, CFG_AUTH_BASIC},
        {{.json = "{\"authType\":\"bearer\"}", .sk = {"bearerToken"}, .sv = {"S3cret-t"}},
         CFG_AUTH_BEARER},
        {{.json = "{\"authType\":\"apiKey\",\"apiKeyHeader\":\"X-Key\"}",
          .sk = {"apiKey"},
          .sv = {"S3cret-k"}},
         CFG_AUTH_APIKEY},
        {{.json = "{\"authType\":\"oauth2\",\"oauth2TokenUrl\":\"https://idp/token\","
                  "\"oauth2ClientId\":\"cid\",\"oauth2Scopes\":[\"a\",\"b\"]}",
          .sk = {"oauth2ClientSecret"},
          .sv = {"S3cret-cs"}},
         CFG_AUTH_OAUTH2},
        {{.json = "{\"authType\":\"forwardOAuth\",\"oauthPassThru\":true}"},
         CFG_AUTH_FORWARD_OAUTH},
        {{.json = "{\"authType\":\"hmac\"}", .sk = {"hmacSecret"}, .sv = {"S3cret-h"}},
         CFG_AUTH_HMAC},
        {{.json = "{\"authType\":\"module\",\"authModule\":\"example\"}"}, CFG_AUTH_MODULE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cfg_ds *ds = NULL;
        struct cp_err err;
        int rc = parse_in(&cases[i].in, &ds, &err);
        if (rc)
            print_error("%s: %s\n", cases[i].in.json, err.msg);
        assert_int_equal(rc, 0);
        assert_int_equal(ds->auth_type, cases[i].type);
        /* the name the type reports is the jsonData spelling */
        char want[32];
        const char *at = strstr(cases[i].in.json, "\"authType\":\"") + 12;
        snprintf(want, sizeof want, "%.*s", (int)strcspn(at, "\""), at);
        assert_string_equal(cfg_auth_type_name(ds->auth_type), want);
        cfg_ds_free(ds);
    }
}

static void test_settings__forward_oauth_forces_user_scope(void **state)
{
    (void)state;
    static const char *const forms[] = {
        "{\"authType\":\"forwardOAuth\",\"oauthPassThru\":true}",
        "{\"authType\":\"forwardOAuth\",\"oauthPassThru\":true,\"cache\":{\"scope\":\"shared\"}}",
        "{\"authType\":\"forwardOAuth\",\"oauthPassThru\":\"true\",\"cache\":{\"scope\":\"org\"}}",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct cfg_ds *ds = parse_ok(forms[i]);
        assert_int_equal(ds->cache.scope, CFG_SCOPE_USER);
        cfg_ds_free(ds);
    }
    /* without forwardOAuth the scope stays as configured */
    struct cfg_ds *ds = parse_ok("{\"cache\":{\"scope\":\"org\"}}");
    assert_int_equal(ds->cache.scope, CFG_SCOPE_ORG);
    cfg_ds_free(ds);
}

static void collect_secret(void *ctx, const char *v)
{
    assert_int_equal(cfg_strlist_push(ctx, v), 0);
}

static void test_settings__each_secret_lists_secrets(void **state)
{
    (void)state;
    struct input t = {.json = "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-T\"}",
                      .sk = {"bearerToken", "httpHeaderValue1"},
                      .sv = {"S3cret-bearer-1", "S3cret-header-1"}};
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    assert_int_equal(parse_in(&t, &ds, &err), 0);
    struct cfg_strlist seen = {0};
    cfg_ds_each_secret(ds, collect_secret, &seen);
    assert_true(cfg_strlist_has_ci(&seen, "S3cret-bearer-1"));
    assert_true(cfg_strlist_has_ci(&seen, "S3cret-header-1"));
    assert_true(cfg_strlist_has_ci(&seen, "S3cret-basic-pw"));
    assert_true(cfg_strlist_has_ci(&seen, "S3cret-redis-pw"));
    assert_true(cfg_strlist_has_ci(&seen, "S3cret-tls-key"));
    cfg_strlist_free(&seen);
    cfg_ds_free(ds);
}

/* Redis TLS, Sentinel and Cluster settings: every URL form is accepted here (its hosts are
 * read when the store opens), the TLS material and the sentinel password are secrets. */
/* A self-signed certificate and its key, in PEM (malloc'd), for settings that read them. */
static void make_pem(char **cert, char **key)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem()), *c = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio_X509(b, x) && PEM_write_bio_PrivateKey(c, k, NULL, NULL, 0, NULL, NULL));
    char *p;
    long len = BIO_get_mem_data(b, &p);
    *cert = strndup(p, (size_t)len);
    len = BIO_get_mem_data(c, &p);
    *key = strndup(p, (size_t)len);
    BIO_free(b);
    BIO_free(c);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_settings__redis_tls_sentinel_cluster(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "rediss://cache:6380/2",          "REDISS://u@cache:6380",
        "redis-sentinel://s1:26379,s2/mymaster/1", "rediss-sentinel://s1/m",
        "redis-cluster://n1:7000,n2:7001", "rediss-cluster://n1:7000"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"cache\":{\"backend\":\"redis\",\"redisUrl\":\"%s\"}}",
                 urls[i]);
        struct cfg_ds *ds = parse_ok(json);
        assert_string_equal(ds->cache.redis_url, urls[i]);
        assert_int_equal(ds->cache.redis_tls_skip_verify, 0);
        cfg_ds_free(ds);
    }
    char *cert, *key;
    make_pem(&cert, &key);
    struct input t = {.json = "{\"cache\":{\"redisUrl\":\"rediss://c:6380\","
                              "\"redisTlsSkipVerify\":true}}",
                      .sk = {"redisTlsCACert", "redisTlsClientCert", "redisTlsClientKey",
                             "redisSentinelPassword"},
                      .sv = {cert, cert, key, "S3cret-sentinel-pw"}};
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    assert_int_equal(parse_in(&t, &ds, &err), 0);
    assert_int_equal(ds->cache.redis_tls_skip_verify, 1);
    assert_string_equal(ds->cache.redis_tls_ca_cert.v, cert);
    assert_string_equal(ds->cache.redis_tls_client_cert.v, cert);
    assert_string_equal(ds->cache.redis_tls_client_key.v, key);
    assert_string_equal(ds->cache.redis_sentinel_password.v, "S3cret-sentinel-pw");
    struct cfg_strlist seen = {0};
    cfg_ds_each_secret(ds, collect_secret, &seen);
    assert_true(cfg_strlist_has_ci(&seen, key));
    assert_true(cfg_strlist_has_ci(&seen, "S3cret-sentinel-pw"));
    cfg_strlist_free(&seen);
    cfg_ds_free(ds);
    /* TLS material OpenSSL cannot read is refused, naming its key */
    static const char *const names[] = {"redisTlsCACert", "redisTlsClientCert",
                                        "redisTlsClientKey"};
    for (int i = 0; i < 3; i++) {
        struct input b = {.json = "{\"cache\":{\"redisUrl\":\"rediss://c:6380\"}}",
                          .sk = {"redisTlsCACert", "redisTlsClientCert", "redisTlsClientKey"},
                          .sv = {i == 0 ? "not a PEM" : cert, i == 1 ? key : cert,
                                 i == 2 ? cert : key}};
        char want[64];
        snprintf(want, sizeof want, "secureJsonData.%s:", names[i]);
        assert_int_equal(parse_in(&b, &ds, &err), CP_ECONFIG);
        if (strncmp(err.msg, want, strlen(want)))
            fail_msg("%s: %s", names[i], err.msg);
    }
    /* the upstream's too (its client key: the base inputs' fake one, refused with tlsAuth) */
    struct input up = {.json = "{\"tlsAuthWithCACert\":true}", .sk = {"tlsCACert"},
                       .sv = {"-----BEGIN CERTIFICATE-----\nAAAA\n"}};
    assert_int_equal(parse_in(&up, &ds, &err), CP_ECONFIG);
    assert_non_null(strstr(err.msg, "secureJsonData.tlsCACert"));
    up.sv[0] = cert;
    assert_int_equal(parse_in(&up, &ds, &err), 0);
    cfg_ds_free(ds);
    struct input ck = {.json = "{\"tlsAuth\":true}", .sk = {"tlsClientCert"}, .sv = {cert}};
    assert_int_equal(parse_in(&ck, &ds, &err), CP_ECONFIG);
    assert_non_null(strstr(err.msg, "secureJsonData.tlsClientKey"));
    assert_null(strstr(err.msg, SECRET_MARK));
    free(cert);
    free(key);
}

/* ---- bad values ------------------------------------------------------------------------------ */

struct bad_case {
    const char *name;
    struct input in;
    const char *key; /* err.msg must open with "<key>:" */
};

static const struct bad_case bad_cases[] = {
    /* url */
    {"url_missing", {.url = ""}, "url"},
    {"url_blank", {.url = "   "}, "url"},
    {"url_ftp", {.url = "ftp://files.example.com"}, "url"},
    {"url_no_scheme", {.url = "api.example.com/v2"}, "url"},
    {"url_javascript", {.url = "javascript:alert(1)"}, "url"},
    {"url_credentials", {.url = "https://admin:S3cret-in-url@api.example.com/v2"}, "url"},
    {"url_user_only", {.url = "https://S3cret-token@api.example.com"}, "url"},
    {"url_query", {.url = "https://api.example.com/v2?token=S3cret-q"}, "url"},
    {"url_fragment", {.url = "https://api.example.com/v2#frag"}, "url"},
    {"url_no_host", {.url = "https://"}, "url"},
    {"url_no_host_path", {.url = "http:///path"}, "url"},
    {"url_space", {.url = "https://api.example.com/a b"}, "url"},
    {"url_newline", {.url = "https://api.example.com/a\nb"}, "url"},
    {"url_backslash", {.url = "https://api.example.com\\@evil.com"}, "url"},
    /* jsonData itself */
    {"json_invalid", {.json = "{\"timeout\":"}, "jsonData"},
    {"json_array", {.json = "[1,2]"}, "jsonData"},
    {"json_string", {.json = "\"x\""}, "jsonData"},
    /* timeout and sizes */
    {"timeout_word", {.json = "{\"timeout\":\"abc\"}"}, "jsonData.timeout"},
    {"timeout_bool", {.json = "{\"timeout\":true}"}, "jsonData.timeout"},
    {"timeout_negative", {.json = "{\"timeout\":-5}"}, "jsonData.timeout"},
    {"timeout_bad_unit", {.json = "{\"timeout\":\"10x\"}"}, "jsonData.timeout"},
    {"timeout_object", {.json = "{\"timeout\":{}}"}, "jsonData.timeout"},
    {"timeout_zero_string", {.json = "{\"timeout\":\"0s\"}"}, "jsonData.timeout"},
    {"maxresp_word", {.json = "{\"maxResponseBytes\":\"lots\"}"}, "jsonData.maxResponseBytes"},
    {"maxresp_zero", {.json = "{\"maxResponseBytes\":0}"}, "jsonData.maxResponseBytes"},
    {"maxresp_negative", {.json = "{\"maxResponseBytes\":-1}"}, "jsonData.maxResponseBytes"},
    {"maxresp_bad_unit", {.json = "{\"maxResponseBytes\":\"10XB\"}"},
     "jsonData.maxResponseBytes"},
    {"maxresp_fraction", {.json = "{\"maxResponseBytes\":1.5}"}, "jsonData.maxResponseBytes"},
    {"maxresp_bool", {.json = "{\"maxResponseBytes\":true}"}, "jsonData.maxResponseBytes"},
    {"healthpath_space", {.json = "{\"healthPath\":\"/a b\"}"}, "jsonData.healthPath"},
    {"healthpath_number", {.json = "{\"healthPath\":5}"}, "jsonData.healthPath"},
    /* authType and its secrets */
    {"authtype_unknown", {.json = "{\"authType\":\"kerberos\"}"}, "jsonData.authType"},
    {"authtype_case", {.json = "{\"authType\":\"Bearer\"}"}, "jsonData.authType"},
    {"authtype_number", {.json = "{\"authType\":5}"}, "jsonData.authType"},
    {"basic_without_user", {.json = "{\"authType\":\"basic\"}"}, "basicAuthUser"},
    {"basicauth_without_user", {.basic = 1}, "basicAuthUser"},
    {"bearer_without_token", {.json = "{\"authType\":\"bearer\"}"},
     "secureJsonData.bearerToken"},
    {"bearer_empty_token",
     {.json = "{\"authType\":\"bearer\"}", .sk = {"bearerToken"}, .sv = {""}},
     "secureJsonData.bearerToken"},
    {"apikey_without_key", {.json = "{\"authType\":\"apiKey\"}"}, "secureJsonData.apiKey"},
    {"hmac_without_secret", {.json = "{\"authType\":\"hmac\"}"}, "secureJsonData.hmacSecret"},
    {"oauth2_without_url",
     {.json = "{\"authType\":\"oauth2\",\"oauth2ClientId\":\"c\"}",
      .sk = {"oauth2ClientSecret"},
      .sv = {"S3cret-cs"}},
     "jsonData.oauth2TokenUrl"},
    {"oauth2_ftp_url",
     {.json = "{\"authType\":\"oauth2\",\"oauth2TokenUrl\":\"ftp://idp/t\","
              "\"oauth2ClientId\":\"c\"}",
      .sk = {"oauth2ClientSecret"},
      .sv = {"S3cret-cs"}},
     "jsonData.oauth2TokenUrl"},
    {"oauth2_without_client_id",
     {.json = "{\"authType\":\"oauth2\",\"oauth2TokenUrl\":\"https://idp/t\"}",
      .sk = {"oauth2ClientSecret"},
      .sv = {"S3cret-cs"}},
     "jsonData.oauth2ClientId"},
    {"oauth2_without_secret",
     {.json = "{\"authType\":\"oauth2\",\"oauth2TokenUrl\":\"https://idp/t\","
              "\"oauth2ClientId\":\"c\"}"},
     "secureJsonData.oauth2ClientSecret"},
    {"oauth2_scopes_object", {.json = "{\"oauth2Scopes\":{\"a\":1}}"}, "jsonData.oauth2Scopes"},
    {"forward_oauth_without_passthru", {.json = "{\"authType\":\"forwardOAuth\"}"},
     "jsonData.oauthPassThru"},
    {"forward_oauth_passthru_false",
     {.json = "{\"authType\":\"forwardOAuth\",\"oauthPassThru\":false}"},
     "jsonData.oauthPassThru"},
    {"passthru_not_bool", {.json = "{\"oauthPassThru\":\"maybe\"}"}, "jsonData.oauthPassThru"},
    {"apikey_header_invalid", {.json = "{\"apiKeyHeader\":\"Bad Header\"}"},
     "jsonData.apiKeyHeader"},
    {"apikey_header_and_query",
     {.json = "{\"apiKeyHeader\":\"X-K\",\"apiKeyQueryParam\":\"k\"}"},
     "jsonData.apiKeyQueryParam"},
    {"apikey_query_empty", {.json = "{\"apiKeyQueryParam\":\"\"}"}, "jsonData.apiKeyQueryParam"},
    {"hmac_algorithm_md5", {.json = "{\"hmacAlgorithm\":\"md5\"}"}, "jsonData.hmacAlgorithm"},
    {"hmac_header_invalid", {.json = "{\"hmacHeader\":\"X Sig\"}"}, "jsonData.hmacHeader"},
    {"module_without_name", {.json = "{\"authType\":\"module\"}"}, "jsonData.authModule"},
    {"module_dotdot", {.json = "{\"authModule\":\"../evil\"}"}, "jsonData.authModule"},
    {"module_dotdot_plain", {.json = "{\"authModule\":\"..\"}"}, "jsonData.authModule"},
    {"module_abs_path", {.json = "{\"authModule\":\"/usr/lib/evil.so\"}"},
     "jsonData.authModule"},
    {"module_sub_path", {.json = "{\"authModule\":\"a/b\"}"}, "jsonData.authModule"},
    {"module_empty",
     {.json = "{\"authType\":\"module\",\"authModule\":\"\"}"},
     "jsonData.authModule"},
    {"module_config_bad_json", {.json = "{\"authModuleConfig\":\"{not json\"}"},
     "jsonData.authModuleConfig"},
    /* custom headers */
    {"header_name_number", {.json = "{\"httpHeaderName1\":42}"}, "jsonData.httpHeaderName1"},
    {"header_name_colon", {.json = "{\"httpHeaderName1\":\"Bad:Name\"}"},
     "jsonData.httpHeaderName1"},
    {"header_name_empty", {.json = "{\"httpHeaderName1\":\"\"}"}, "jsonData.httpHeaderName1"},
    {"header_name2_bad", {.json = "{\"httpHeaderName1\":\"X-A\",\"httpHeaderName2\":\"X B\"}"},
     "jsonData.httpHeaderName2"},
    {"header_value_newline",
     {.json = "{\"httpHeaderName1\":\"X-A\"}",
      .sk = {"httpHeaderValue1"},
      .sv = {"S3cret-hdr\r\nX-Evil: 1"}},
     "secureJsonData.httpHeaderValue1"},
    /* TLS */
    {"tls_skip_not_bool", {.json = "{\"tlsSkipVerify\":\"yes\"}"}, "jsonData.tlsSkipVerify"},
    {"tls_ca_missing", {.json = "{\"tlsAuthWithCACert\":true}"}, "secureJsonData.tlsCACert"},
    {"tls_client_cert_missing", {.json = "{\"tlsAuth\":true}"}, "secureJsonData.tlsClientCert"},
    /* access */
    {"allowed_paths_relative", {.json = "{\"allowedPaths\":[\"api/**\"]}"},
     "jsonData.allowedPaths"},
    {"allowed_paths_number", {.json = "{\"allowedPaths\":[1]}"}, "jsonData.allowedPaths"},
    {"allowed_paths_object", {.json = "{\"allowedPaths\":{\"a\":1}}"}, "jsonData.allowedPaths"},
    {"allowed_paths_backslash", {.json = "{\"allowedPaths\":[\"/a\\\\b\"]}"},
     "jsonData.allowedPaths"},
    {"allowed_paths_control", {.json = "{\"allowedPaths\":[\"/a\\tb\"]}"},
     "jsonData.allowedPaths"},
    {"allowed_paths_empty_glob", {.json = "{\"allowedPaths\":[\"\"]}"}, "jsonData.allowedPaths"},
    {"forward_headers_invalid", {.json = "{\"forwardHeaders\":[\"Bad Header\"]}"},
     "jsonData.forwardHeaders"},
    {"forward_headers_number", {.json = "{\"forwardHeaders\":7}"}, "jsonData.forwardHeaders"},
    {"rules_object", {.json = "{\"rules\":{\"effect\":\"allow\"}}"}, "jsonData.rules"},
    {"rules_element_number", {.json = "{\"rules\":[1]}"}, "jsonData.rules[0]"},
    {"rules_effect_missing", {.json = "{\"rules\":[{\"roles\":[\"Admin\"]}]}"},
     "jsonData.rules[0].effect"},
    {"rules_effect_unknown", {.json = "{\"rules\":[{\"effect\":\"maybe\"}]}"},
     "jsonData.rules[0].effect"},
    {"rules_role_unknown",
     {.json = "{\"rules\":[{\"effect\":\"allow\",\"roles\":[\"Superuser\"]}]}"},
     "jsonData.rules[0].roles"},
    {"rules_role_none", {.json = "{\"rules\":[{\"effect\":\"allow\",\"roles\":[\"None\"]}]}"},
     "jsonData.rules[0].roles"},
    {"rules_users_number", {.json = "{\"rules\":[{\"effect\":\"allow\",\"users\":[3]}]}"},
     "jsonData.rules[0].users"},
    {"rules_orgs_word", {.json = "{\"rules\":[{\"effect\":\"allow\",\"orgs\":[\"x\"]}]}"},
     "jsonData.rules[0].orgs"},
    {"rules_orgs_not_list", {.json = "{\"rules\":[{\"effect\":\"allow\",\"orgs\":1}]}"},
     "jsonData.rules[0].orgs"},
    {"rules_method_space", {.json = "{\"rules\":[{\"effect\":\"allow\",\"methods\":[\"G ET\"]}]}"},
     "jsonData.rules[0].methods"},
    {"rules_second_bad_glob",
     {.json = "{\"rules\":[{\"effect\":\"allow\"},{\"effect\":\"deny\",\"paths\":[\"x/**\"]}]}"},
     "jsonData.rules[1].paths"},
    {"default_action_unknown", {.json = "{\"defaultAction\":\"reject\"}"},
     "jsonData.defaultAction"},
    {"default_action_bool", {.json = "{\"defaultAction\":true}"}, "jsonData.defaultAction"},
    {"authz_url_ftp", {.json = "{\"authzUrl\":\"ftp://authz\"}"}, "jsonData.authzUrl"},
    {"authz_ttl_word", {.json = "{\"authzCacheTtl\":\"forever\"}"}, "jsonData.authzCacheTtl"},
    /* cache */
    {"cache_string", {.json = "{\"cache\":\"on\"}"}, "jsonData.cache"},
    {"cache_backend_unknown", {.json = "{\"cache\":{\"backend\":\"disk\"}}"},
     "jsonData.cache.backend"},
    {"cache_backend_number", {.json = "{\"cache\":{\"backend\":1}}"}, "jsonData.cache.backend"},
    {"cache_resource_ttl_words", {.json = "{\"cache\":{\"resourceTtl\":\"5 minutes\"}}"},
     "jsonData.cache.resourceTtl"},
    {"cache_query_ttl_negative", {.json = "{\"cache\":{\"queryTtl\":-1}}"},
     "jsonData.cache.queryTtl"},
    {"cache_swr_word", {.json = "{\"cache\":{\"staleWhileRevalidate\":\"x\"}}"},
     "jsonData.cache.staleWhileRevalidate"},
    {"cache_sie_bool", {.json = "{\"cache\":{\"staleIfError\":true}}"},
     "jsonData.cache.staleIfError"},
    {"cache_time_align_year", {.json = "{\"cache\":{\"timeAlign\":\"1y\"}}"},
     "jsonData.cache.timeAlign"},
    {"cache_respect_cc_word", {.json = "{\"cache\":{\"respectCacheControl\":\"sometimes\"}}"},
     "jsonData.cache.respectCacheControl"},
    {"cache_max_entry_word", {.json = "{\"cache\":{\"maxEntryBytes\":\"huge\"}}"},
     "jsonData.cache.maxEntryBytes"},
    {"cache_memory_max_zero", {.json = "{\"cache\":{\"memoryMaxBytes\":0}}"},
     "jsonData.cache.memoryMaxBytes"},
    {"cache_methods_empty_string", {.json = "{\"cache\":{\"methods\":[\"\"]}}"},
     "jsonData.cache.methods"},
    {"cache_methods_slash", {.json = "{\"cache\":{\"methods\":[\"GET/1\"]}}"},
     "jsonData.cache.methods"},
    {"cache_scope_unknown", {.json = "{\"cache\":{\"scope\":\"global\"}}"},
     "jsonData.cache.scope"},
    {"cache_rules_object", {.json = "{\"cache\":{\"rules\":{}}}"}, "jsonData.cache.rules"},
    {"cache_rules_element_string", {.json = "{\"cache\":{\"rules\":[\"x\"]}}"},
     "jsonData.cache.rules[0]"},
    {"cache_rules_paths_missing", {.json = "{\"cache\":{\"rules\":[{\"ttl\":\"5m\"}]}}"},
     "jsonData.cache.rules[0].paths"},
    {"cache_rules_ttl_missing", {.json = "{\"cache\":{\"rules\":[{\"paths\":[\"/a\"]}]}}"},
     "jsonData.cache.rules[0].ttl"},
    {"cache_rules_ttl_bad",
     {.json = "{\"cache\":{\"rules\":[{\"paths\":[\"/a\"],\"ttl\":\"soon\"}]}}"},
     "jsonData.cache.rules[0].ttl"},
    {"cache_rules_bad_glob",
     {.json = "{\"cache\":{\"rules\":[{\"paths\":[\"/a\"],\"ttl\":1},"
              "{\"paths\":[\"nolead\"],\"ttl\":1}]}}"},
     "jsonData.cache.rules[1].paths"},
    {"cache_redis_tls_plus", {.json = "{\"cache\":{\"redisUrl\":\"redis+tls://cache:6380\"}}"},
     "jsonData.cache.redisUrl"},
    {"cache_redis_clusters", {.json = "{\"cache\":{\"redisUrl\":\"REDIS-CLUSTERS://c:6380\"}}"},
     "jsonData.cache.redisUrl"},
    {"cache_redis_cert_without_key",
     {.json = "{}", .sk = {"redisTlsClientCert"}, .sv = {"-----BEGIN CERTIFICATE-----"}},
     "secureJsonData.redisTlsClientKey"},
    {"cache_redis_key_without_cert",
     {.json = "{}", .sk = {"redisTlsClientKey"}, .sv = {"S3cret-redis-tls-key"}},
     "secureJsonData.redisTlsClientCert"},
    {"cache_redis_tls_skip", {.json = "{\"cache\":{\"redisTlsSkipVerify\":\"maybe\"}}"},
     "jsonData.cache.redisTlsSkipVerify"},
    {"cache_redis_http", {.json = "{\"cache\":{\"redisUrl\":\"http://cache:6379\"}}"},
     "jsonData.cache.redisUrl"},
    {"cache_redis_number", {.json = "{\"cache\":{\"redisUrl\":6379}}"},
     "jsonData.cache.redisUrl"},
    {"cache_key_prefix_number", {.json = "{\"cache\":{\"keyPrefix\":5}}"},
     "jsonData.cache.keyPrefix"},
};

static void test_settings__bad(void **state)
{
    const struct bad_case *c = *state;
    struct cfg_ds *ds = (struct cfg_ds *)(uintptr_t)1;
    struct cp_err err;
    int rc = parse_in(&c->in, &ds, &err);
    if (rc != CP_ECONFIG)
        print_error("%s: rc %d (%s)\n", c->name, rc, err.msg);
    assert_int_equal(rc, CP_ECONFIG);
    assert_int_equal(err.code, CP_ECONFIG);
    assert_null(ds);
    size_t kl = strlen(c->key);
    if (strncmp(err.msg, c->key, kl) != 0 || err.msg[kl] != ':')
        print_error("%s: message \"%s\" does not open with \"%s:\"\n", c->name, err.msg, c->key);
    assert_memory_equal(err.msg, c->key, kl);
    assert_int_equal(err.msg[kl], ':');
    assert_true(strlen(err.msg) > kl + 3); /* says what is wrong, not only where */
    if (strcasestr(err.msg, SECRET_MARK))
        print_error("%s: message \"%s\" holds a secret\n", c->name, err.msg);
    assert_null(strcasestr(err.msg, SECRET_MARK));
}

/* A bad key next to secrets of every kind: the message names the key, never a secret. */
static void test_settings__error_never_holds_secret(void **state)
{
    (void)state;
    static const char *const keys[] = {
        "bearerToken", "apiKey",       "hmacSecret",       "oauth2ClientSecret",
        "tlsClientKey", "redisPassword", "httpHeaderValue1", "basicAuthPassword"};
    static const char *const vals[] = {
        "s3cret-value-bearer", "s3cret-value-apikey", "s3cret-value-hmac",
        "s3cret-value-oauth",  "s3cret-value-tls",    "s3cret-value-redis",
        "s3cret-value-header", "s3cret-value-basic"};
    static const char *const bad_json[] = {
        "{\"authType\":\"bearer\",\"timeout\":\"abc\"}",
        "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-A\",\"cache\":{\"backend\":\"disk\"}}",
        "{\"authType\":\"hmac\",\"hmacAlgorithm\":\"s3cret-value-hmac\"}",
        "{\"authType\":\"apiKey\",\"apiKeyHeader\":\"bad header\"}",
        "{\"authType\":\"bearer\",\"rules\":[{\"effect\":\"x\"}]}",
        "{\"authType\":\"bearer\",\"cache\":{\"redisUrl\":\"rediss+x://:s3cret-value-redis@h\"}}",
    };
    for (size_t j = 0; j < sizeof bad_json / sizeof bad_json[0]; j++) {
        struct cfg_ds_input in = {.id = 1,
                                  .url = URL,
                                  .basic_auth_user = "u",
                                  .json_data = bad_json[j],
                                  .json_len = strlen(bad_json[j]),
                                  .secure_keys = keys,
                                  .secure_values = vals,
                                  .nsecure = sizeof keys / sizeof keys[0]};
        struct cfg_ds *ds = NULL;
        struct cp_err err = {0};
        assert_int_equal(cfg_ds_parse(&in, &ds, &err), CP_ECONFIG);
        assert_null(ds);
        assert_non_null(strstr(err.msg, "jsonData."));
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            if (strstr(err.msg, vals[i]))
                print_error("secret %s in \"%s\"\n", vals[i], err.msg);
            assert_null(strstr(err.msg, vals[i]));
        }
        assert_null(strstr(err.msg, "s3cret"));
    }
}

/* ---- fingerprint ----------------------------------------------------------------------------- */

static void fingerprint_of(const struct input *t, unsigned char fp[32])
{
    struct cfg_ds *ds = NULL;
    struct cp_err err;
    int rc = parse_in(t, &ds, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    memcpy(fp, ds->fingerprint, 32);
    cfg_ds_free(ds);
}

static void test_settings__fingerprint(void **state)
{
    (void)state;
    const char *base_json = "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-Tenant\"}";
    const struct input base = {.json = base_json,
                               .sk = {"bearerToken", "httpHeaderValue1"},
                               .sv = {"S3cret-token-a", "tenant-a"}};
    unsigned char fp0[32], fp[32], zero[32] = {0};
    fingerprint_of(&base, fp0);
    assert_memory_not_equal(fp0, zero, 32);

    /* stable: the same settings, and settings that do not change upstream answers */
    const struct input same[] = {
        base,
        {.url = URL "/", .json = base_json, .sk = {"bearerToken", "httpHeaderValue1"},
         .sv = {"S3cret-token-a", "tenant-a"}},
        {.json = "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-Tenant\",\"timeout\":5,"
                 "\"rules\":[{\"effect\":\"deny\"}],\"cache\":{\"resourceTtl\":\"5m\"}}",
         .sk = {"bearerToken", "httpHeaderValue1"},
         .sv = {"S3cret-token-a", "tenant-a"}},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        fingerprint_of(&same[i], fp);
        assert_memory_equal(fp, fp0, 32);
    }

    /* changes: url, auth type, auth secret, header name, header value */
    const struct input diff[] = {
        {.url = "https://api.example.com/v3", .json = base_json,
         .sk = {"bearerToken", "httpHeaderValue1"}, .sv = {"S3cret-token-a", "tenant-a"}},
        {.url = "https://other.example.com/v2", .json = base_json,
         .sk = {"bearerToken", "httpHeaderValue1"}, .sv = {"S3cret-token-a", "tenant-a"}},
        {.json = "{\"authType\":\"apiKey\",\"httpHeaderName1\":\"X-Tenant\"}",
         .sk = {"bearerToken", "httpHeaderValue1", "apiKey"},
         .sv = {"S3cret-token-a", "tenant-a", "S3cret-token-a"}},
        {.json = base_json, .sk = {"bearerToken", "httpHeaderValue1"},
         .sv = {"S3cret-token-b", "tenant-a"}},
        {.json = "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-Org\"}",
         .sk = {"bearerToken", "httpHeaderValue1"}, .sv = {"S3cret-token-a", "tenant-a"}},
        {.json = base_json, .sk = {"bearerToken", "httpHeaderValue1"},
         .sv = {"S3cret-token-a", "tenant-b"}},
        {.json = "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-Tenant\","
                 "\"httpHeaderName2\":\"X-More\"}",
         .sk = {"bearerToken", "httpHeaderValue1"}, .sv = {"S3cret-token-a", "tenant-a"}},
        /* every credential counts, not only the bearer token: HMAC secrets, TLS settings */
        {.json = base_json, .sk = {"bearerToken", "httpHeaderValue1", "hmacSecret"},
         .sv = {"S3cret-token-a", "tenant-a", "another-hmac-secret"}},
        {.json = "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-Tenant\","
                 "\"tlsSkipVerify\":true}",
         .sk = {"bearerToken", "httpHeaderValue1"}, .sv = {"S3cret-token-a", "tenant-a"}},
        {.json = base_json, .sk = {"bearerToken", "httpHeaderValue1", "tlsClientCert"},
         .sv = {"S3cret-token-a", "tenant-a", "-----BEGIN CERTIFICATE-----"}},
    };
    unsigned char seen[sizeof diff / sizeof diff[0]][32];
    for (size_t i = 0; i < sizeof diff / sizeof diff[0]; i++) {
        fingerprint_of(&diff[i], seen[i]);
        if (!memcmp(seen[i], fp0, 32))
            print_error("variant %zu keeps the fingerprint\n", i);
        assert_memory_not_equal(seen[i], fp0, 32);
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], 32);
    }

    /* the fingerprint is a hash: no secret bytes in clear */
    assert_null(memmem(fp0, 32, "S3cret", 6));
}

/* ---- durations and sizes ------------------------------------------------------------------ */

static void test_duration__table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int64_t ms;
    } t[] = {
        {"500ms", 0, 500},      {"30s", 0, 30000},      {"5m", 0, 300000},
        {"1h", 0, 3600000},     {"2h", 0, 7200000},     {"1d", 0, 86400000},
        {"0", 0, 0},            {"0s", 0, 0},           {"45", 0, 45000},
        {"1.5", 0, 1500},       {"1.5s", 0, 1500},      {"0.25m", 0, 15000},
        {"1m30s", 0, 90000},    {"1h1m1s", 0, 3661000}, {"1s500ms", 0, 1500},
        {" 30s", 0, 30000},     {"", CP_EINVAL, 0},     {"abc", CP_EINVAL, 0},
        {"-1s", CP_EINVAL, 0},  {"-5", CP_EINVAL, 0},   {"5x", CP_EINVAL, 0},
        {"s", CP_EINVAL, 0},    {"ms", CP_EINVAL, 0},   {"30s5", CP_EINVAL, 0},
        {"30 s", CP_EINVAL, 0}, {"5mm", CP_EINVAL, 0},  {"1y", CP_EINVAL, 0},
        {"nan", CP_EINVAL, 0},  {"inf", CP_EINVAL, 0},  {"1e400", CP_EINVAL, 0},
        {"5S", CP_EINVAL, 0},   {"1h-1m", CP_EINVAL, 0}, {"999999999999d", CP_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int64_t ms = -12345;
        int rc = cfg_duration_parse(t[i].in, &ms);
        if (rc != t[i].rc || (rc == 0 && ms != t[i].ms))
            print_error("\"%s\": rc %d ms %lld\n", t[i].in, rc, (long long)ms);
        assert_int_equal(rc, t[i].rc);
        if (t[i].rc == 0)
            assert_int_equal(ms, t[i].ms);
        else
            assert_int_equal(ms, -12345); /* untouched on failure */
    }
}

static void test_size__table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        int64_t bytes;
    } t[] = {
        {"64MiB", 0, 64LL << 20},  {"512KiB", 0, 512 << 10}, {"1GiB", 0, 1LL << 30},
        {"1GB", 0, 1000000000},    {"10KB", 0, 10000},       {"2MB", 0, 2000000},
        {"2M", 0, 2LL << 20},      {"4K", 0, 4096},          {"1G", 0, 1LL << 30},
        {"10B", 0, 10},            {"100", 0, 100},          {"0", 0, 0},
        {"1.5MiB", 0, 1572864},    {"64mib", 0, 64LL << 20}, {"64 MiB", 0, 64LL << 20},
        {"", CP_EINVAL, 0},        {"abc", CP_EINVAL, 0},    {"-1", CP_EINVAL, 0},
        {"10XB", CP_EINVAL, 0},    {"MiB", CP_EINVAL, 0},    {"1e20", CP_EINVAL, 0},
        {"5 MiBs", CP_EINVAL, 0},  {"1TiB0", CP_EINVAL, 0},  {"9999999999GiB", CP_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int64_t b = -12345;
        int rc = cfg_size_parse(t[i].in, &b);
        if (rc != t[i].rc || (rc == 0 && b != t[i].bytes))
            print_error("\"%s\": rc %d bytes %lld\n", t[i].in, rc, (long long)b);
        assert_int_equal(rc, t[i].rc);
        if (t[i].rc == 0)
            assert_int_equal(b, t[i].bytes);
    }
}

/* ---- cp_buf ---------------------------------------------------------------------------------- */

/* Grafana's times: epoch digits, date math from now in UTC, durations after now-. */
static void test_time__date_math(void **state)
{
    (void)state;
    const int64_t now = 1796545433123LL; /* Sunday 2026-12-06T08:23:53.123Z */
    const int64_t day = 86400000, monday = 1795996800000LL; /* 2026-11-30T00:00Z */
    const int64_t dec1 = 1796083200000LL, jan1 = 1767225600000LL, jan1_27 = 1798761600000LL;
    struct {
        const char *s;
        int up;
        int64_t want;
    } ok[] = {
        {"1700000000000", 0, 1700000000000LL},
        {"now", 0, now},
        {"now-1h", 0, now - 3600000},
        {"now+15m", 0, now + 900000},
        {"now-1w", 0, now - 7 * day},
        {"now-d", 0, now - day},
        {"now-1M", 0, now - 30 * day},          /* November has 30 days */
        {"now-1y", 0, now - 365 * day},
        {"now/d", 0, now - (now % day)},
        {"now/d", 1, now - (now % day) + day - 1},
        {"now-1d/d", 0, now - (now % day) - day},
        {"now-1d/d", 1, now - (now % day) - 1},
        {"now/w", 0, monday},
        {"now/w", 1, monday + 7 * day - 1},
        {"now/M", 0, dec1},
        {"now/M", 1, jan1_27 - 1},
        {"now/y", 0, jan1},
        {"now-1d+2h/h", 0, now - (now % 3600000) - day + 2 * 3600000},
        {"now-1h30m", 0, now - 5400000},         /* a duration, as before */
        {"now-500ms", 0, now - 500},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        int64_t got = -1;
        assert_int_equal(cfg_time_parse(ok[i].s, now, ok[i].up, &got), 0);
        if (got != ok[i].want)
            fail_msg("%s (up %d): %lld, want %lld", ok[i].s, ok[i].up, (long long)got,
                     (long long)ok[i].want);
    }
    /* a month back from March 31 is the last day of February */
    int64_t mar31 = 1774958400000LL, feb28 = mar31 - 31 * day, got; /* 2026-03-31T12:00Z */
    assert_int_equal(cfg_time_parse("now-1M", mar31, 0, &got), 0);
    assert_int_equal(got, feb28);
    static const char *const bad[] = {"", "yesterday", "now-", "now/", "now/x", "now-1x", "now*2",
                                      "12345678901234567890", "-1", "now-1h junk"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (cfg_time_parse(bad[i], now, 0, &got) != CP_EINVAL)
            fail_msg("accepted %s", bad[i]);
}

/* The one HTTP token check (methods, header names in settings, forwarding and modules). */
static void test_http_token__rfc9110(void **state)
{
    (void)state;
    static const char *const ok[] = {"GET", "M-SEARCH", "X-Api-Key", "a!#$%&'*+-.^_`|~z", "0"};
    static const char *const bad[] = {"", "X Key", "X:Key", "X(Key)", "X;a", "X@b", "X[1]",
                                      "X{1}", "X\"q\"", "X/1", "X=1", "X\tY", "X\x7f",
                                      "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        assert_int_equal(cp_http_token(ok[i]), 1);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(cp_http_token(bad[i]), 0);
    assert_int_equal(cp_http_token(NULL), 0);
}

static void test_buf__cap(void **state)
{
    (void)state;
    struct cp_buf b = {.max = 10};
    assert_int_equal(cp_buf_add(&b, "abcdef", 6), 0);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.p, "abcdef");
    /* over the cap: refused whole, nothing appended */
    assert_int_equal(cp_buf_add(&b, "ghijk", 5), CP_ETOOBIG);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.p, "abcdef");
    assert_int_equal(cp_buf_addf(&b, "%d", 12345), CP_ETOOBIG);
    assert_int_equal(b.len, 6);
    /* exactly up to the cap is fine */
    assert_int_equal(cp_buf_addstr(&b, "ghij"), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.p, "abcdefghij");
    assert_int_equal(cp_buf_add(&b, "x", 1), CP_ETOOBIG);
    assert_int_equal(cp_buf_add(&b, "", 0), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.p, "abcdefghij");

    /* take hands the bytes over and leaves the buffer empty, still capped */
    size_t len = 0;
    char *p = cp_buf_take(&b, &len);
    assert_int_equal(len, 10);
    assert_string_equal(p, "abcdefghij");
    free(p);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(cp_buf_add(&b, "0123456789A", 11), CP_ETOOBIG);
    assert_int_equal(cp_buf_add(&b, "0123456789", 10), 0);
    cp_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    cp_buf_free(&b); /* twice is harmless */
}

static void test_buf__uncapped_growth(void **state)
{
    (void)state;
    struct cp_buf b = {0};
    char chunk[1000];
    memset(chunk, 'q', sizeof chunk);
    for (int i = 0; i < 300; i++)
        assert_int_equal(cp_buf_add(&b, chunk, sizeof chunk), 0);
    assert_int_equal(b.len, 300000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.p[b.len], 0);
    assert_int_equal(b.p[299999], 'q');
    /* a formatted string longer than any small internal buffer arrives whole */
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(cp_buf_addf(&b, "<%s>", big), 0);
    assert_int_equal(b.len, 300000 + 3001);
    assert_int_equal(b.p[300000], '<');
    assert_int_equal(b.p[300000 + 3000], '>');
    assert_int_equal(b.p[b.len], 0);
    /* a long formatted string against a cap: refused, not cut */
    struct cp_buf c = {.max = 1000};
    assert_int_equal(cp_buf_addf(&c, "%s", big), CP_ETOOBIG);
    assert_int_equal(c.len, 0);
    cp_buf_free(&c);
    cp_buf_free(&b);
}

/* ---- cp_pool --------------------------------------------------------------------------------- */

#define POOL_JOBS 4000
#define POOL_SUBMITTERS 4

struct pool_ctx {
    _Atomic unsigned runs[POOL_JOBS];
    _Atomic unsigned done;
    _Atomic int running, max_running;
};

struct pool_job {
    struct pool_ctx *ctx;
    unsigned idx;
};

static void pool_job_fn(void *arg)
{
    struct pool_job *j = arg;
    struct pool_ctx *c = j->ctx;
    int now = atomic_fetch_add(&c->running, 1) + 1;
    int seen = atomic_load(&c->max_running);
    while (now > seen && !atomic_compare_exchange_weak(&c->max_running, &seen, now))
        ;
    /* a little work so that jobs overlap */
    volatile unsigned x = 0;
    for (unsigned i = 0; i < 2000; i++)
        x += i;
    atomic_fetch_add(&c->runs[j->idx], 1);
    atomic_fetch_sub(&c->running, 1);
    atomic_fetch_add(&c->done, 1);
}

/* Spins (yielding) until c->done reaches n or timeout_s passes; returns the final count. */
static unsigned wait_done(struct pool_ctx *c, unsigned n, int timeout_s)
{
    int64_t deadline = cp_mono_ns() + (int64_t)timeout_s * 1000000000;
    while (atomic_load(&c->done) < n && cp_mono_ns() < deadline)
        sched_yield();
    return atomic_load(&c->done);
}

struct submitter {
    struct cp_pool *pool;
    struct pool_job *jobs;
    unsigned from, to;
    int failures;
};

static void *submit_range(void *arg)
{
    struct submitter *s = arg;
    for (unsigned i = s->from; i < s->to; i++)
        if (cp_pool_submit(s->pool, pool_job_fn, &s->jobs[i]))
            s->failures++;
    return NULL;
}

static void test_pool__every_job_once_concurrent(void **state)
{
    (void)state;
    struct pool_ctx *ctx = calloc(1, sizeof *ctx);
    struct pool_job *jobs = calloc(POOL_JOBS, sizeof *jobs);
    assert_non_null(ctx);
    assert_non_null(jobs);
    for (unsigned i = 0; i < POOL_JOBS; i++)
        jobs[i] = (struct pool_job){ctx, i};
    struct cp_pool *pool = cp_pool_new(4, 200);
    assert_non_null(pool);

    pthread_t th[POOL_SUBMITTERS];
    struct submitter sub[POOL_SUBMITTERS];
    for (unsigned t = 0; t < POOL_SUBMITTERS; t++) {
        sub[t] = (struct submitter){pool, jobs, t * (POOL_JOBS / POOL_SUBMITTERS),
                                    (t + 1) * (POOL_JOBS / POOL_SUBMITTERS), 0};
        assert_int_equal(pthread_create(&th[t], NULL, submit_range, &sub[t]), 0);
    }
    for (unsigned t = 0; t < POOL_SUBMITTERS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(sub[t].failures, 0);
    }
    /* every job runs without cp_pool_free's help */
    assert_int_equal(wait_done(ctx, POOL_JOBS, 30), POOL_JOBS);
    unsigned threads = 99, busy = 99, queued = 99;
    cp_pool_stats(pool, &threads, &busy, &queued);
    assert_int_equal(queued, 0);
    assert_true(threads <= 4);
    cp_pool_free(pool);

    for (unsigned i = 0; i < POOL_JOBS; i++) {
        if (atomic_load(&ctx->runs[i]) != 1)
            print_error("job %u ran %u times\n", i, atomic_load(&ctx->runs[i]));
        assert_int_equal(atomic_load(&ctx->runs[i]), 1);
    }
    assert_int_equal(atomic_load(&ctx->done), POOL_JOBS);
    /* never more jobs at once than threads allowed */
    assert_true(atomic_load(&ctx->max_running) >= 1);
    assert_true(atomic_load(&ctx->max_running) <= 4);
    free(jobs);
    free(ctx);
}

static void test_pool__free_runs_queued_jobs(void **state)
{
    (void)state;
    struct pool_ctx *ctx = calloc(1, sizeof *ctx);
    struct pool_job *jobs = calloc(POOL_JOBS, sizeof *jobs);
    assert_non_null(ctx);
    assert_non_null(jobs);
    struct cp_pool *pool = cp_pool_new(2, 1000);
    assert_non_null(pool);
    for (unsigned i = 0; i < POOL_JOBS; i++) {
        jobs[i] = (struct pool_job){ctx, i};
        assert_int_equal(cp_pool_submit(pool, pool_job_fn, &jobs[i]), 0);
    }
    /* free straight away: whatever is still queued runs before it returns */
    cp_pool_free(pool);
    assert_int_equal(atomic_load(&ctx->done), POOL_JOBS);
    for (unsigned i = 0; i < POOL_JOBS; i++)
        assert_int_equal(atomic_load(&ctx->runs[i]), 1);
    assert_true(atomic_load(&ctx->max_running) <= 2);
    cp_pool_free(NULL);
    free(jobs);
    free(ctx);
}

static void test_pool__idle_threads_exit(void **state)
{
    (void)state;
    struct pool_ctx *ctx = calloc(1, sizeof *ctx);
    struct pool_job jobs[64];
    assert_non_null(ctx);
    struct cp_pool *pool = cp_pool_new(8, 20);
    assert_non_null(pool);
    for (unsigned i = 0; i < 64; i++) {
        jobs[i] = (struct pool_job){ctx, i};
        assert_int_equal(cp_pool_submit(pool, pool_job_fn, &jobs[i]), 0);
    }
    assert_int_equal(wait_done(ctx, 64, 30), 64);
    unsigned threads = 1;
    int64_t deadline = cp_mono_ns() + 10LL * 1000000000;
    do {
        cp_pool_stats(pool, &threads, NULL, NULL);
        if (threads)
            sched_yield();
    } while (threads && cp_mono_ns() < deadline);
    assert_int_equal(threads, 0);
    /* a pool whose threads all left still takes and runs work */
    jobs[0].idx = 100;
    assert_int_equal(cp_pool_submit(pool, pool_job_fn, &jobs[0]), 0);
    assert_int_equal(wait_done(ctx, 65, 30), 65);
    assert_int_equal(atomic_load(&ctx->runs[100]), 1);
    cp_pool_free(pool);
    free(ctx);
}

/* ---- main ------------------------------------------------------------------------------------ */

static int always(void *ctx)
{
    (*(int *)ctx)++;
    return 1;
}

static void test_settings__long_lists_and_cancellation(void **state)
{
    (void)state;
    /* 200,000 allowedPaths: linear time (the list grows geometrically) */
    size_t n = 200000;
    struct cp_buf b = {0};
    assert_int_equal(cp_buf_addstr(&b, "{\"allowedPaths\":["), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cp_buf_addf(&b, "%s\"/p%zu/**\"", i ? "," : "", i), 0);
    assert_int_equal(cp_buf_addstr(&b, "]}"), 0);
    struct cfg_ds *ds = parse_ok(b.p);
    assert_int_equal(ds->allowed_paths.n, n);
    assert_true(ds->allowed_paths.cap >= n && ds->allowed_paths.cap < 2 * n + 8);
    assert_string_equal(ds->allowed_paths.v[n - 1], "/p199999/**");
    cfg_ds_free(ds);

    /* a caller that went away stops the parse early */
    int polls = 0;
    struct cfg_ds_input in = {.id = 1, .url = URL, .json_data = b.p, .json_len = b.len,
                              .cancelled = always, .cancel_ctx = &polls};
    struct cp_err err = {0};
    ds = NULL;
    assert_int_equal(cfg_ds_parse(&in, &ds, &err), CP_ECANCELED);
    assert_null(ds);
    assert_int_equal(polls, 1);
    assert_non_null(strstr(err.msg, "cancelled"));
    cp_buf_free(&b);
}

/* Parses with exactly one secure value (none of the base ones). */
static int parse_one_secret(const char *json, const char *key, const char *value, int basic,
                            struct cfg_ds **ds, struct cp_err *err)
{
    const char *keys[] = {key}, *vals[] = {value};
    struct cfg_ds_input in = {.id = 1, .url = URL, .json_data = json, .json_len = strlen(json),
                              .basic_auth_enabled = basic, .basic_auth_user = "bob",
                              .secure_keys = keys, .secure_values = vals, .nsecure = 1};
    memset(err, 0, sizeof *err);
    *ds = NULL;
    return cfg_ds_parse(&in, ds, err);
}

static void test_settings__header_secrets_bounded(void **state)
{
    (void)state;
    char *big = malloc(CFG_MAX_HEADER_SECRET + 2);
    memset(big, 't', CFG_MAX_HEADER_SECRET + 1);
    big[CFG_MAX_HEADER_SECRET + 1] = 0;
    static const char *const keys[] = {"bearerToken", "apiKey", "basicAuthPassword",
                                       "httpHeaderValue1"};
    struct cfg_ds *ds;
    struct cp_err err;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(parse_one_secret("{\"httpHeaderName1\":\"X-A\"}", keys[i], big, 1,
                                          &ds, &err),
                         CP_ECONFIG);
        assert_non_null(strstr(err.msg, keys[i]));
        assert_non_null(strstr(err.msg, "16384"));
        assert_null(ds);
    }
    big[CFG_MAX_HEADER_SECRET] = 0; /* at the limit: accepted */
    assert_int_equal(parse_one_secret("{\"authType\":\"bearer\"}", "bearerToken", big, 0, &ds,
                                      &err),
                     0);
    cfg_ds_free(ds);
    free(big);
}

static void test_settings__basic_auth_header_derived(void **state)
{
    (void)state;
    struct cfg_ds *ds;
    struct cp_err err;
    assert_int_equal(parse_one_secret("{}", "basicAuthPassword", "pw:1", 1, &ds, &err), 0);
    assert_string_equal(ds->basic_auth_b64.v, "Ym9iOnB3OjE="); /* base64("bob:pw:1") */
    cfg_ds_free(ds);
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_settings__defaults),
        cmocka_unit_test(test_settings__long_lists_and_cancellation),
        cmocka_unit_test(test_settings__header_secrets_bounded),
        cmocka_unit_test(test_settings__basic_auth_header_derived),
        cmocka_unit_test(test_settings__uid_falls_back_to_id),
        cmocka_unit_test(test_settings__url_trailing_slash_removed),
        cmocka_unit_test(test_settings__auth_type_default_follows_basic_auth),
        cmocka_unit_test(test_settings__redis_url_from_env),
        cmocka_unit_test(test_settings__redis_tls_sentinel_cluster),
        cmocka_unit_test(test_settings__every_key_read),
        cmocka_unit_test(test_settings__duration_values),
        cmocka_unit_test(test_settings__size_values),
        cmocka_unit_test(test_settings__enum_values),
        cmocka_unit_test(test_settings__auth_types_accepted),
        cmocka_unit_test(test_settings__forward_oauth_forces_user_scope),
        cmocka_unit_test(test_settings__each_secret_lists_secrets),
        cmocka_unit_test(test_settings__error_never_holds_secret),
        cmocka_unit_test(test_settings__fingerprint),
        cmocka_unit_test(test_duration__table),
        cmocka_unit_test(test_size__table),
        cmocka_unit_test(test_buf__cap),
        cmocka_unit_test(test_buf__uncapped_growth),
        cmocka_unit_test(test_http_token__rfc9110),
        cmocka_unit_test(test_time__date_math),
        cmocka_unit_test(test_pool__every_job_once_concurrent),
        cmocka_unit_test(test_pool__free_runs_queued_jobs),
        cmocka_unit_test(test_pool__idle_threads_exit),
    };
    const size_t nf = sizeof fixed / sizeof fixed[0];
    const size_t nb = sizeof bad_cases / sizeof bad_cases[0];
    struct CMUnitTest *tests = calloc(nf + nb, sizeof *tests);
    char **names = calloc(nb, sizeof *names);
    if (!tests || !names)
        return 1;
    for (size_t i = 0; i < nf; i++)
        tests[i] = fixed[i];
    for (size_t i = 0; i < nb; i++) {
        size_t n = strlen("test_settings__bad_") + strlen(bad_cases[i].name) + 1;
        names[i] = malloc(n);
        if (!names[i])
            return 1;
        snprintf(names[i], n, "test_settings__bad_%s", bad_cases[i].name);
        tests[nf + i] = (struct CMUnitTest){.name = names[i],
                                            .test_func = test_settings__bad,
                                            .initial_state = (void *)&bad_cases[i]};
    }
    int rc = _cmocka_run_group_tests("config", tests, nf + nb, NULL, NULL);
    for (size_t i = 0; i < nb; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc;
}
