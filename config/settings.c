/*
 * settings.c - DataSourceInstanceSettings into a typed, validated struct cfg_ds.
 *
 * Every key of SPEC.md sections 3 and 6 gets its default here, and every bad value is reported
 * as CP_ECONFIG with the offending key named ("jsonData.cache.resourceTtl: ..."). Values that
 * are secret come only from decryptedSecureJsonData and are held in struct cfg_secret.
 */
#include "config.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_RESPONSE (64LL << 20)
#define DEFAULT_MAX_REQUEST (16LL << 20)
#define DEFAULT_MAX_CONNECTIONS 1024 /* as Envoy's circuit breaker */
#define MAX_MAX_CONNECTIONS 100000
#define DEFAULT_MAX_ENTRY (8LL << 20)
#define DEFAULT_MEMORY_MAX (256LL << 20)
#define DEFAULT_REDIS_URL "redis://127.0.0.1:6379"

static const char *const default_forward_headers[] = {
    "Accept", "Accept-Encoding", "Content-Type", "If-None-Match", "If-Modified-Since"};

/* Parsing state: the input, the output under construction and the error sink. */
struct parser {
    const struct cfg_ds_input *in;
    struct cfg_ds *ds;
    struct cp_err *err;
};

static int bad(struct parser *p, const char *key, const char *why)
{
    return cp_err_set(p->err, CP_ECONFIG, "%s: %s", key, why);
}

/* Long lists are read in steps of CANCEL_EVERY elements between looks at the caller. */
#define CANCEL_EVERY 1024

static int cancelled(struct parser *p, size_t i)
{
    if (i % CANCEL_EVERY || !p->in->cancelled || !p->in->cancelled(p->in->cancel_ctx))
        return 0;
    return cp_err_set(p->err, CP_ECANCELED, "reading the settings was cancelled");
}

static const char *secure(const struct parser *p, const char *key)
{
    for (size_t i = 0; i < p->in->nsecure; i++)
        if (p->in->secure_keys[i] && strcmp(p->in->secure_keys[i], key) == 0)
            return p->in->secure_values[i] ? p->in->secure_values[i] : "";
    return NULL;
}

static int take_secret(struct parser *p, const char *key, struct cfg_secret *dst)
{
    const char *v = secure(p, key);
    if (!v || !*v)
        return 0;
    return cfg_secret_set(dst, v, strlen(v)) ? cp_err_set(p->err, CP_ENOMEM, "out of memory")
                                              : 0;
}

/* A secret that is sent in a header: bounded, and free of line breaks. */
static int check_header_secret(struct parser *p, const char *key, const struct cfg_secret *s)
{
    char path[96], why[128];
    snprintf(path, sizeof path, "secureJsonData.%s", key);
    if (s->len > CFG_MAX_HEADER_SECRET) {
        snprintf(why, sizeof why, "is %zu bytes long; header values are limited to %d bytes",
                 s->len, CFG_MAX_HEADER_SECRET);
        return bad(p, path, why);
    }
    if (s->v && strpbrk(s->v, "\r\n"))
        return bad(p, path, "must not contain line breaks");
    return 0;
}

static int dup_str(struct parser *p, char **dst, const char *v)
{
    free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : cp_err_set(p->err, CP_ENOMEM, "out of memory");
}

/* Optional string key; *dst keeps its default when absent or null. */
static int get_str(struct parser *p, json_t *obj, const char *key, const char *path, char **dst)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(p, path, "must be a string");
    return dup_str(p, dst, json_string_value(v));
}

static int get_bool(struct parser *p, json_t *obj, const char *key, const char *path, int *dst)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_boolean(v)) {
        *dst = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) { /* provisioning files sometimes quote booleans */
        const char *s = json_string_value(v);
        if (!strcasecmp(s, "true")) {
            *dst = 1;
            return 0;
        }
        if (!strcasecmp(s, "false")) {
            *dst = 0;
            return 0;
        }
    }
    return bad(p, path, "must be true or false");
}

/* A duration: a number of seconds or a string such as "30s", "5m", "500ms". */
static int get_duration(struct parser *p, json_t *obj, const char *key, const char *path,
                        int64_t *dst)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (d < 0 || d > 9.0e12)
            return bad(p, path, "must be a non-negative number of seconds");
        *dst = (int64_t)(d * 1000 + 0.5);
        return 0;
    }
    if (json_is_string(v) && cfg_duration_parse(json_string_value(v), dst) == 0)
        return 0;
    return bad(p, path, "must be a duration such as \"30s\", \"5m\", \"500ms\" or a number of "
                        "seconds");
}

static int get_size(struct parser *p, json_t *obj, const char *key, const char *path,
                    int64_t *dst)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        *dst = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && cfg_size_parse(json_string_value(v), dst) == 0 && *dst > 0)
        return 0;
    return bad(p, path, "must be a positive size such as 1048576 or \"64MiB\"");
}

/* An array of strings (a lone string is accepted as a one-element list). transform may
 * normalise each element in place and return non-zero to reject it. */
static int get_list(struct parser *p, json_t *obj, const char *key, const char *path,
                    struct cfg_strlist *dst, int *present, int (*check)(char *s))
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = 0;
    if (!v || json_is_null(v))
        return 0;
    json_t *one = NULL;
    if (json_is_string(v)) {
        one = json_array();
        json_array_append(one, v);
        v = one;
    }
    if (!json_is_array(v))
        return bad(p, path, "must be a list of strings");
    cfg_strlist_free(dst);
    size_t i;
    json_t *e;
    int rc = 0;
    json_array_foreach(v, i, e)
    {
        if ((rc = cancelled(p, i + 1)))
            break;
        if (!json_is_string(e)) {
            rc = bad(p, path, "must be a list of strings");
            break;
        }
        char *s = strdup(json_string_value(e));
        if (!s) {
            rc = cp_err_set(p->err, CP_ENOMEM, "out of memory");
            break;
        }
        if (check && check(s)) {
            char why[160];
            snprintf(why, sizeof why, "invalid element \"%.100s\"", json_string_value(e));
            free(s);
            rc = bad(p, path, why);
            break;
        }
        rc = cfg_strlist_push(dst, s);
        free(s);
        if (rc) {
            rc = cp_err_set(p->err, CP_ENOMEM, "out of memory");
            break;
        }
    }
    json_decref(one);
    if (!rc && present)
        *present = 1;
    return rc;
}

/* An HTTP method: a token, upper-cased. */
static int check_method(char *s)
{
    if (!*s)
        return 1;
    for (char *c = s; *c; c++) {
        if (!isalpha((unsigned char)*c) && *c != '-' && *c != '_')
            return 1;
        *c = (char)toupper((unsigned char)*c);
    }
    return 0;
}

/* A path glob: must start with '/' and hold no control characters. */
static int check_glob(char *s)
{
    if (s[0] != '/' || strlen(s) > 1024)
        return 1;
    for (char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\')
            return 1;
    return 0;
}

/* A header name: an RFC 9110 token. */
static int check_header_name(char *s) { return !cp_http_token(s); }

static int parse_url(struct parser *p)
{
    const char *u = p->in->url ? p->in->url : "";
    while (*u == ' ')
        u++;
    if (!*u)
        return bad(p, "url", "is required: the upstream base URL, e.g. https://api.example.com");
    const char *rest;
    if (!strncasecmp(u, "http://", 7))
        rest = u + 7;
    else if (!strncasecmp(u, "https://", 8))
        rest = u + 8;
    else
        return bad(p, "url", "must start with http:// or https://");
    if (!*rest || *rest == '/' || *rest == '?' || *rest == '#')
        return bad(p, "url", "has no host");
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f || *c == '\\')
            return bad(p, "url", "contains spaces, control characters or backslashes");
    if (strchr(rest, '?') || strchr(rest, '#'))
        return bad(p, "url", "must not contain a query string or fragment");
    const char *at = strchr(rest, '@'), *slash = strchr(rest, '/');
    if (at && (!slash || at < slash))
        return bad(p, "url", "must not carry credentials: use the authentication settings");
    if (dup_str(p, &p->ds->url, u))
        return CP_ENOMEM;
    size_t n = strlen(p->ds->url);
    while (n > 0 && p->ds->url[n - 1] == '/' && p->ds->url + n - 1 > strstr(p->ds->url, "//") + 1)
        p->ds->url[--n] = 0;
    return 0;
}

/* base64("user:password"), the credential basic auth sends: derived once, so every call
 * reuses it and the log can redact it. */
static int basic_header(struct parser *p)
{
    struct cfg_ds *ds = p->ds;
    const char *pass = ds->basic_auth_password.v ? ds->basic_auth_password.v : "";
    size_t ul = strlen(ds->basic_auth_user), n = ul + 1 + strlen(pass);
    char *pair = malloc(n + 1);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    int rc = pair && b64 ? 0 : CP_ENOMEM;
    if (!rc) {
        snprintf(pair, n + 1, "%s:%s", ds->basic_auth_user, pass);
        int bl = EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)pair, (int)n);
        rc = cfg_secret_set(&ds->basic_auth_b64, b64, (size_t)bl);
        explicit_bzero(pair, n);
        explicit_bzero(b64, (size_t)bl);
    }
    free(pair);
    free(b64);
    return rc ? cp_err_set(p->err, CP_ENOMEM, "out of memory") : 0;
}

static int parse_auth(struct parser *p, json_t *jd)
{
    struct cfg_ds *ds = p->ds;
    int rc;
    char *t = NULL;
    ds->basic_auth = p->in->basic_auth_enabled;
    ds->auth_type = ds->basic_auth ? CFG_AUTH_BASIC : CFG_AUTH_NONE;
    if ((rc = get_str(p, jd, "authType", "jsonData.authType", &t)))
        return rc;
    if (t) {
        static const struct {
            const char *name;
            enum cfg_auth_type t;
        } types[] = {{"none", CFG_AUTH_NONE},     {"basic", CFG_AUTH_BASIC},
                     {"bearer", CFG_AUTH_BEARER}, {"apiKey", CFG_AUTH_APIKEY},
                     {"oauth2", CFG_AUTH_OAUTH2}, {"forwardOAuth", CFG_AUTH_FORWARD_OAUTH},
                     {"hmac", CFG_AUTH_HMAC},     {"module", CFG_AUTH_MODULE}};
        size_t i;
        for (i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(t, types[i].name) == 0)
                break;
        free(t);
        if (i == sizeof types / sizeof types[0])
            return bad(p, "jsonData.authType",
                       "must be one of none, basic, bearer, apiKey, oauth2, forwardOAuth, "
                       "hmac, module");
        ds->auth_type = types[i].t;
    }
    if (p->in->basic_auth_user && *p->in->basic_auth_user &&
        dup_str(p, &ds->basic_auth_user, p->in->basic_auth_user))
        return CP_ENOMEM;
    if ((rc = take_secret(p, "basicAuthPassword", &ds->basic_auth_password)) ||
        (rc = take_secret(p, "bearerToken", &ds->bearer_token)) ||
        (rc = take_secret(p, "apiKey", &ds->api_key)) ||
        (rc = take_secret(p, "oauth2ClientSecret", &ds->oauth2_client_secret)) ||
        (rc = take_secret(p, "hmacSecret", &ds->hmac_secret)))
        return rc;

    if ((rc = check_header_secret(p, "basicAuthPassword", &ds->basic_auth_password)) ||
        (rc = check_header_secret(p, "bearerToken", &ds->bearer_token)) ||
        (rc = check_header_secret(p, "apiKey", &ds->api_key)))
        return rc;
    if (ds->basic_auth_user && strlen(ds->basic_auth_user) > CFG_MAX_HEADER_SECRET / 2)
        return bad(p, "basicAuthUser", "is too long for a header");

    switch (ds->auth_type) {
    case CFG_AUTH_BASIC:
        if (!ds->basic_auth_user)
            return bad(p, "basicAuthUser", "is required when authType is basic");
        if ((rc = basic_header(p)))
            return rc;
        break;
    case CFG_AUTH_BEARER:
        if (!cfg_secret_isset(&ds->bearer_token))
            return bad(p, "secureJsonData.bearerToken", "is required when authType is bearer");
        break;
    case CFG_AUTH_APIKEY:
        if (!cfg_secret_isset(&ds->api_key))
            return bad(p, "secureJsonData.apiKey", "is required when authType is apiKey");
        break;
    case CFG_AUTH_HMAC:
        if (!cfg_secret_isset(&ds->hmac_secret))
            return bad(p, "secureJsonData.hmacSecret", "is required when authType is hmac");
        break;
    default:
        break;
    }

    if ((rc = get_str(p, jd, "apiKeyHeader", "jsonData.apiKeyHeader", &ds->api_key_header)) ||
        (rc = get_str(p, jd, "apiKeyQueryParam", "jsonData.apiKeyQueryParam",
                      &ds->api_key_query)))
        return rc;
    if (ds->api_key_header && ds->api_key_query)
        return bad(p, "jsonData.apiKeyQueryParam",
                   "set either apiKeyHeader or apiKeyQueryParam, not both");
    if (ds->api_key_header && check_header_name(ds->api_key_header))
        return bad(p, "jsonData.apiKeyHeader", "must be a valid header name");
    if (ds->api_key_query && !*ds->api_key_query)
        return bad(p, "jsonData.apiKeyQueryParam", "must not be empty");
    if (!ds->api_key_header && !ds->api_key_query && dup_str(p, &ds->api_key_header, "X-API-Key"))
        return CP_ENOMEM;

    if ((rc = get_str(p, jd, "oauth2TokenUrl", "jsonData.oauth2TokenUrl",
                      &ds->oauth2_token_url)) ||
        (rc = get_str(p, jd, "oauth2ClientId", "jsonData.oauth2ClientId",
                      &ds->oauth2_client_id)) ||
        (rc = get_str(p, jd, "oauth2Audience", "jsonData.oauth2Audience",
                      &ds->oauth2_audience)) ||
        (rc = get_list(p, jd, "oauth2Scopes", "jsonData.oauth2Scopes", &ds->oauth2_scopes, NULL,
                       NULL)))
        return rc;
    if (ds->auth_type == CFG_AUTH_OAUTH2) {
        if (!ds->oauth2_token_url || (strncasecmp(ds->oauth2_token_url, "http://", 7) &&
                                      strncasecmp(ds->oauth2_token_url, "https://", 8)))
            return bad(p, "jsonData.oauth2TokenUrl",
                       "is required when authType is oauth2 and must be an http(s) URL");
        if (!ds->oauth2_client_id || !*ds->oauth2_client_id)
            return bad(p, "jsonData.oauth2ClientId", "is required when authType is oauth2");
        if (!cfg_secret_isset(&ds->oauth2_client_secret))
            return bad(p, "secureJsonData.oauth2ClientSecret",
                       "is required when authType is oauth2");
    }

    if ((rc = get_str(p, jd, "hmacHeader", "jsonData.hmacHeader", &ds->hmac_header)) ||
        (rc = get_str(p, jd, "hmacAlgorithm", "jsonData.hmacAlgorithm", &ds->hmac_algorithm)))
        return rc;
    if (!ds->hmac_header && dup_str(p, &ds->hmac_header, "X-Signature"))
        return CP_ENOMEM;
    if (check_header_name(ds->hmac_header))
        return bad(p, "jsonData.hmacHeader", "must be a valid header name");
    if (!ds->hmac_algorithm && dup_str(p, &ds->hmac_algorithm, "sha256"))
        return CP_ENOMEM;
    if (strcmp(ds->hmac_algorithm, "sha256") && strcmp(ds->hmac_algorithm, "sha512"))
        return bad(p, "jsonData.hmacAlgorithm", "must be sha256 or sha512");

    if ((rc = get_str(p, jd, "authModule", "jsonData.authModule", &ds->auth_module)))
        return rc;
    /* the module's config: jsonData authModuleConfig, with secureJsonData authModuleConfig (a
     * JSON object of secrets) merged over it */
    json_t *mc = json_object_get(jd, "authModuleConfig");
    json_t *conf = NULL;
    if (mc && !json_is_null(mc)) {
        if (json_is_string(mc)) {
            json_error_t je;
            conf = json_loads(json_string_value(mc), 0, &je);
            if (!json_is_object(conf)) {
                json_decref(conf);
                return bad(p, "jsonData.authModuleConfig", "is not a JSON object");
            }
        } else if (json_is_object(mc)) {
            conf = json_deep_copy(mc);
        } else {
            return bad(p, "jsonData.authModuleConfig", "must be a JSON object");
        }
    }
    const char *smc = secure(p, "authModuleConfig");
    if (smc && *smc) {
        json_error_t je;
        json_t *sec = json_loads(smc, 0, &je);
        if (!json_is_object(sec)) {
            json_decref(sec);
            json_decref(conf);
            return bad(p, "secureJsonData.authModuleConfig", "is not a JSON object");
        }
        if (!conf)
            conf = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(sec, k, v)
        {
            if (json_is_string(v)) {
                struct cfg_secret *ns = realloc(ds->module_secrets,
                                                (ds->nmodule_secrets + 1) * sizeof *ns);
                if (!ns) {
                    json_decref(sec);
                    json_decref(conf);
                    return CP_ENOMEM;
                }
                ds->module_secrets = ns;
                memset(&ns[ds->nmodule_secrets], 0, sizeof *ns);
                cfg_secret_set(&ns[ds->nmodule_secrets++], json_string_value(v),
                               strlen(json_string_value(v)));
            }
            json_object_set(conf, k, v);
        }
        json_decref(sec);
    }
    if (conf) {
        ds->auth_module_config = json_dumps(conf, JSON_COMPACT);
        json_decref(conf);
        if (!ds->auth_module_config)
            return cp_err_set(p->err, CP_ENOMEM, "out of memory");
    }
    if (ds->auth_type == CFG_AUTH_MODULE && (!ds->auth_module || !*ds->auth_module))
        return bad(p, "jsonData.authModule", "is required when authType is module");
    if (ds->auth_module && (strchr(ds->auth_module, '/') || strstr(ds->auth_module, "..") ||
                            !*ds->auth_module))
        return bad(p, "jsonData.authModule",
                   "must be a plain module name, not a path (modules load only from "
                   "CACHINGPROXY_MODULE_DIR)");

    if ((rc = get_bool(p, jd, "oauthPassThru", "jsonData.oauthPassThru", &ds->oauth_pass_thru)))
        return rc;
    if (ds->auth_type == CFG_AUTH_FORWARD_OAUTH && !ds->oauth_pass_thru)
        return bad(p, "jsonData.oauthPassThru",
                   "must be true when authType is forwardOAuth (Grafana forwards the user's "
                   "token only then)");
    return 0;
}

/* httpHeaderName1..N with secure httpHeaderValue1..N; the scan stops at the first gap. */
static int parse_headers(struct parser *p, json_t *jd)
{
    for (int i = 1;; i++) {
        char key[64], path[80];
        snprintf(key, sizeof key, "httpHeaderName%d", i);
        json_t *v = json_object_get(jd, key);
        if (!v || json_is_null(v))
            return 0;
        snprintf(path, sizeof path, "jsonData.%s", key);
        if (!json_is_string(v))
            return bad(p, path, "must be a string");
        char *name = strdup(json_string_value(v));
        if (!name)
            return CP_ENOMEM;
        if (check_header_name(name)) {
            free(name);
            return bad(p, path, "must be a valid header name");
        }
        struct cfg_header *nh = realloc(p->ds->headers, (p->ds->nheaders + 1) * sizeof *nh);
        if (!nh) {
            free(name);
            return CP_ENOMEM;
        }
        p->ds->headers = nh;
        struct cfg_header *h = &nh[p->ds->nheaders++];
        memset(h, 0, sizeof *h);
        h->name = name;
        snprintf(key, sizeof key, "httpHeaderValue%d", i);
        const char *val = secure(p, key);
        if (val && cfg_secret_set(&h->value, val, strlen(val)))
            return CP_ENOMEM;
        int rc = check_header_secret(p, key, &h->value);
        if (rc)
            return rc;
    }
}


enum pem_kind { PEM_CERT, PEM_KEY };

/* TLS material that OpenSSL cannot read is a settings error naming its key (not a failure of
 * every call later): a certificate (the first of a bundle) or a private key, in PEM. */
static int check_pem(struct parser *p, const struct cfg_secret *s, enum pem_kind kind,
                     const char *name)
{
    BIO *b = BIO_new_mem_buf(s->v, (int)s->len);
    if (!b)
        return CP_ENOMEM;
    int ok;
    if (kind == PEM_CERT) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        ok = x != NULL;
        X509_free(x);
    } else {
        EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
        ok = k != NULL;
        EVP_PKEY_free(k);
    }
    BIO_free(b);
    ERR_clear_error();
    if (ok)
        return 0;
    char key[64];
    snprintf(key, sizeof key, "secureJsonData.%s", name);
    return bad(p, key, kind == PEM_CERT ? "is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
                                        : "is not a PEM private key without a passphrase");
}

static int parse_tls(struct parser *p, json_t *jd)
{
    struct cfg_ds *ds = p->ds;
    int rc;
    if ((rc = get_bool(p, jd, "tlsSkipVerify", "jsonData.tlsSkipVerify", &ds->tls_skip_verify)) ||
        (rc = get_bool(p, jd, "tlsAuth", "jsonData.tlsAuth", &ds->tls_auth)) ||
        (rc = get_bool(p, jd, "tlsAuthWithCACert", "jsonData.tlsAuthWithCACert",
                       &ds->tls_auth_ca)) ||
        (rc = take_secret(p, "tlsCACert", &ds->tls_ca_cert)) ||
        (rc = take_secret(p, "tlsClientCert", &ds->tls_client_cert)) ||
        (rc = take_secret(p, "tlsClientKey", &ds->tls_client_key)))
        return rc;
    if (ds->tls_auth_ca && !cfg_secret_isset(&ds->tls_ca_cert))
        return bad(p, "secureJsonData.tlsCACert", "is required when tlsAuthWithCACert is on");
    if (ds->tls_auth && (!cfg_secret_isset(&ds->tls_client_cert) ||
                         !cfg_secret_isset(&ds->tls_client_key)))
        return bad(p, "secureJsonData.tlsClientCert",
                   "tlsClientCert and tlsClientKey are required when tlsAuth is on");
    if ((ds->tls_auth_ca && (rc = check_pem(p, &ds->tls_ca_cert, PEM_CERT, "tlsCACert"))) ||
        (ds->tls_auth && (rc = check_pem(p, &ds->tls_client_cert, PEM_CERT, "tlsClientCert"))) ||
        (ds->tls_auth && (rc = check_pem(p, &ds->tls_client_key, PEM_KEY, "tlsClientKey"))))
        return rc;
    return 0;
}

static int parse_rule(struct parser *p, json_t *r, size_t idx, struct cfg_rule *out)
{
    char path[96];
    snprintf(path, sizeof path, "jsonData.rules[%zu]", idx);
    if (!json_is_object(r))
        return bad(p, path, "must be an object");
    json_t *eff = json_object_get(r, "effect");
    if (!json_is_string(eff) || (strcmp(json_string_value(eff), "allow") &&
                                 strcmp(json_string_value(eff), "deny"))) {
        snprintf(path, sizeof path, "jsonData.rules[%zu].effect", idx);
        return bad(p, path, "must be \"allow\" or \"deny\"");
    }
    out->allow = strcmp(json_string_value(eff), "allow") == 0;
    int rc;
    struct cfg_strlist roles = {0};
    snprintf(path, sizeof path, "jsonData.rules[%zu].roles", idx);
    if ((rc = get_list(p, r, "roles", path, &roles, &out->has_roles, NULL)))
        return rc;
    out->min_role = CFG_ROLE_ADMIN;
    for (size_t i = 0; i < roles.n; i++) {
        enum cfg_role role = cfg_role_parse(roles.v[i]);
        if (role == CFG_ROLE_NONE) {
            cfg_strlist_free(&roles);
            return bad(p, path, "roles are Viewer, Editor or Admin");
        }
        if (role < out->min_role)
            out->min_role = role;
    }
    if (out->has_roles && roles.n == 0)
        out->min_role = CFG_ROLE_ADMIN + 1; /* an empty list matches no role */
    cfg_strlist_free(&roles);
    snprintf(path, sizeof path, "jsonData.rules[%zu].users", idx);
    if ((rc = get_list(p, r, "users", path, &out->users, &out->has_users, NULL)))
        return rc;
    snprintf(path, sizeof path, "jsonData.rules[%zu].methods", idx);
    if ((rc = get_list(p, r, "methods", path, &out->methods, &out->has_methods, check_method)))
        return rc;
    snprintf(path, sizeof path, "jsonData.rules[%zu].paths", idx);
    if ((rc = get_list(p, r, "paths", path, &out->paths, &out->has_paths, check_glob)))
        return rc;
    json_t *orgs = json_object_get(r, "orgs");
    if (orgs && !json_is_null(orgs)) {
        snprintf(path, sizeof path, "jsonData.rules[%zu].orgs", idx);
        if (!json_is_array(orgs))
            return bad(p, path, "must be a list of numeric org ids");
        out->has_orgs = 1;
        out->norgs = json_array_size(orgs);
        out->orgs = calloc(out->norgs ? out->norgs : 1, sizeof *out->orgs);
        if (!out->orgs)
            return CP_ENOMEM;
        for (size_t i = 0; i < out->norgs; i++) {
            json_t *o = json_array_get(orgs, i);
            if (json_is_integer(o))
                out->orgs[i] = json_integer_value(o);
            else if (json_is_string(o) && *json_string_value(o)) {
                char *end;
                out->orgs[i] = strtoll(json_string_value(o), &end, 10);
                if (*end)
                    return bad(p, path, "must be a list of numeric org ids");
            } else
                return bad(p, path, "must be a list of numeric org ids");
        }
    }
    return 0;
}

static int parse_rules(struct parser *p, json_t *jd)
{
    json_t *rules = json_object_get(jd, "rules");
    if (!rules || json_is_null(rules))
        return 0;
    if (!json_is_array(rules))
        return bad(p, "jsonData.rules", "must be a list of rule objects");
    size_t n = json_array_size(rules);
    p->ds->rules = calloc(n ? n : 1, sizeof *p->ds->rules);
    if (!p->ds->rules)
        return CP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        p->ds->nrules = i + 1;
        int rc = cancelled(p, i + 1);
        if (!rc)
            rc = parse_rule(p, json_array_get(rules, i), i, &p->ds->rules[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_access(struct parser *p, json_t *jd)
{
    struct cfg_ds *ds = p->ds;
    int rc, present;
    if ((rc = get_list(p, jd, "allowedPaths", "jsonData.allowedPaths", &ds->allowed_paths,
                       &present, check_glob)))
        return rc;
    if (!present && cfg_strlist_push(&ds->allowed_paths, "/**"))
        return CP_ENOMEM;
    if ((rc = get_list(p, jd, "forwardHeaders", "jsonData.forwardHeaders", &ds->forward_headers,
                       &present, check_header_name)))
        return rc;
    if (!present)
        for (size_t i = 0; i < sizeof default_forward_headers / sizeof *default_forward_headers;
             i++)
            if (cfg_strlist_push(&ds->forward_headers, default_forward_headers[i]))
                return CP_ENOMEM;
    if ((rc = parse_rules(p, jd)))
        return rc;
    char *def = NULL;
    if ((rc = get_str(p, jd, "defaultAction", "jsonData.defaultAction", &def)))
        return rc;
    ds->default_allow = 1;
    if (def) {
        int ok = !strcmp(def, "allow") || !strcmp(def, "deny");
        ds->default_allow = !strcmp(def, "allow");
        free(def);
        if (!ok)
            return bad(p, "jsonData.defaultAction", "must be \"allow\" or \"deny\"");
    }
    if ((rc = get_str(p, jd, "authzUrl", "jsonData.authzUrl", &ds->authz_url)))
        return rc;
    if (ds->authz_url && !*ds->authz_url) {
        free(ds->authz_url);
        ds->authz_url = NULL;
    }
    if (ds->authz_url && strncasecmp(ds->authz_url, "http://", 7) &&
        strncasecmp(ds->authz_url, "https://", 8))
        return bad(p, "jsonData.authzUrl", "must be an http(s) URL");
    ds->authz_cache_ttl_ms = 10000;
    return get_duration(p, jd, "authzCacheTtl", "jsonData.authzCacheTtl",
                        &ds->authz_cache_ttl_ms);
}

static int parse_cache(struct parser *p, json_t *jd)
{
    struct cfg_cache *c = &p->ds->cache;
    int rc, present;
    c->backend = CFG_CACHE_MEMORY;
    c->resource_ttl_ms = 30000;
    c->query_ttl_ms = 60000;
    c->respect_cache_control = 1;
    c->revalidate = 1;
    c->time_align_ms = 10000;
    c->query_split_ms = 0;
    c->split_stable_after_ms = 600000;
    c->query_split_ttl_ms = 3600000;
    c->max_entry_bytes = DEFAULT_MAX_ENTRY;
    c->memory_max_bytes = DEFAULT_MEMORY_MAX;
    c->near_cache_ms = 0;
    json_t *co = json_object_get(jd, "cache");
    json_t *empty = NULL;
    if (!co || json_is_null(co))
        co = empty = json_object();
    else if (!json_is_object(co))
        return bad(p, "jsonData.cache", "must be an object");

    char *s = NULL;
    if ((rc = get_str(p, co, "backend", "jsonData.cache.backend", &s)))
        goto out;
    if (s) {
        if (!strcmp(s, "memory"))
            c->backend = CFG_CACHE_MEMORY;
        else if (!strcmp(s, "redis"))
            c->backend = CFG_CACHE_REDIS;
        else if (!strcmp(s, "off"))
            c->backend = CFG_CACHE_OFF;
        else
            rc = bad(p, "jsonData.cache.backend", "must be memory, redis or off");
        free(s);
        s = NULL;
        if (rc)
            goto out;
    }
    if ((rc = get_duration(p, co, "resourceTtl", "jsonData.cache.resourceTtl",
                           &c->resource_ttl_ms)) ||
        (rc = get_duration(p, co, "queryTtl", "jsonData.cache.queryTtl", &c->query_ttl_ms)) ||
        (rc = get_duration(p, co, "staleWhileRevalidate", "jsonData.cache.staleWhileRevalidate",
                           &c->swr_ms)) ||
        (rc = get_duration(p, co, "staleIfError", "jsonData.cache.staleIfError", &c->sie_ms)) ||
        (rc = get_duration(p, co, "timeAlign", "jsonData.cache.timeAlign",
                           &c->time_align_ms)) ||
        (rc = get_duration(p, co, "querySplit", "jsonData.cache.querySplit",
                           &c->query_split_ms)) ||
        (rc = get_duration(p, co, "splitStableAfter", "jsonData.cache.splitStableAfter",
                           &c->split_stable_after_ms)) ||
        (rc = get_duration(p, co, "querySplitTtl", "jsonData.cache.querySplitTtl",
                           &c->query_split_ttl_ms)) ||
        (rc = get_duration(p, co, "nearCacheTtl", "jsonData.cache.nearCacheTtl",
                           &c->near_cache_ms)) ||
        (rc = get_duration(p, co, "notFoundTtl", "jsonData.cache.notFoundTtl",
                           &c->cache_404_ms)) ||
        (rc = get_bool(p, co, "respectCacheControl", "jsonData.cache.respectCacheControl",
                       &c->respect_cache_control)) ||
        (rc = get_bool(p, co, "revalidate", "jsonData.cache.revalidate", &c->revalidate)) ||
        (rc = get_size(p, co, "maxEntryBytes", "jsonData.cache.maxEntryBytes",
                       &c->max_entry_bytes)) ||
        (rc = get_size(p, co, "memoryMaxBytes", "jsonData.cache.memoryMaxBytes",
                       &c->memory_max_bytes)) ||
        (rc = get_list(p, co, "methods", "jsonData.cache.methods", &c->methods, &present,
                       check_method)))
        goto out;
    if (!present && (cfg_strlist_push(&c->methods, "GET") || cfg_strlist_push(&c->methods,
                                                                               "HEAD"))) {
        rc = CP_ENOMEM;
        goto out;
    }
    if ((rc = get_str(p, co, "scope", "jsonData.cache.scope", &s)))
        goto out;
    if (s) {
        if (!strcmp(s, "shared"))
            c->scope = CFG_SCOPE_SHARED;
        else if (!strcmp(s, "org"))
            c->scope = CFG_SCOPE_ORG;
        else if (!strcmp(s, "user"))
            c->scope = CFG_SCOPE_USER;
        else
            rc = bad(p, "jsonData.cache.scope", "must be shared, org or user");
        free(s);
        s = NULL;
        if (rc)
            goto out;
    }
    if (p->ds->auth_type == CFG_AUTH_FORWARD_OAUTH)
        c->scope = CFG_SCOPE_USER;

    json_t *rules = json_object_get(co, "rules");
    if (rules && !json_is_null(rules)) {
        if (!json_is_array(rules)) {
            rc = bad(p, "jsonData.cache.rules", "must be a list of {paths, ttl} objects");
            goto out;
        }
        size_t n = json_array_size(rules);
        c->rules = calloc(n ? n : 1, sizeof *c->rules);
        if (!c->rules) {
            rc = CP_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            char path[96];
            json_t *r = json_array_get(rules, i);
            c->nrules = i + 1;
            snprintf(path, sizeof path, "jsonData.cache.rules[%zu]", i);
            if (!json_is_object(r)) {
                rc = bad(p, path, "must be an object with paths and ttl");
                goto out;
            }
            snprintf(path, sizeof path, "jsonData.cache.rules[%zu].paths", i);
            if ((rc = get_list(p, r, "paths", path, &c->rules[i].paths, &present, check_glob)))
                goto out;
            if (!present) {
                rc = bad(p, path, "is required");
                goto out;
            }
            snprintf(path, sizeof path, "jsonData.cache.rules[%zu].ttl", i);
            c->rules[i].ttl_ms = -1;
            if ((rc = get_duration(p, r, "ttl", path, &c->rules[i].ttl_ms)))
                goto out;
            if (c->rules[i].ttl_ms < 0) {
                rc = bad(p, path, "is required");
                goto out;
            }
        }
    }

    const char *env = cfg_env2("CACHINGPROXY_REDIS_URL", "GF_PLUGIN_REDIS_URL");
    if ((rc = dup_str(p, &c->redis_url, env ? env : DEFAULT_REDIS_URL)) ||
        (rc = get_str(p, co, "redisUrl", "jsonData.cache.redisUrl", &c->redis_url)))
        goto out;
    {
        /* the scheme here; hosts, ports and the rest when the Redis store opens */
        static const char *const schemes[] = {"redis://",
                                              "rediss://",
                                              "redis-sentinel://",
                                              "rediss-sentinel://",
                                              "redis-cluster://",
                                              "rediss-cluster://",
                                              "unix://"};
        size_t i;
        for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
            if (!strncasecmp(c->redis_url, schemes[i], strlen(schemes[i])))
                break;
        if (i == sizeof schemes / sizeof schemes[0]) {
            rc = bad(p, "jsonData.cache.redisUrl",
                     "must be redis://[user@]host:port[/db], rediss:// (TLS), "
                     "redis-sentinel://host:port[,host:port...]/master[/db], "
                     "redis-cluster://host:port[,host:port...] or unix:///path");
            goto out;
        }
    }
    if ((rc = take_secret(p, "redisPassword", &c->redis_password)) ||
        (rc = take_secret(p, "redisSentinelPassword", &c->redis_sentinel_password)) ||
        (rc = take_secret(p, "redisTlsCACert", &c->redis_tls_ca_cert)) ||
        (rc = take_secret(p, "redisTlsClientCert", &c->redis_tls_client_cert)) ||
        (rc = take_secret(p, "redisTlsClientKey", &c->redis_tls_client_key)) ||
        (rc = get_bool(p, co, "redisTlsSkipVerify", "jsonData.cache.redisTlsSkipVerify",
                       &c->redis_tls_skip_verify)))
        goto out;
    int has_cert = cfg_secret_isset(&c->redis_tls_client_cert);
    if (has_cert != cfg_secret_isset(&c->redis_tls_client_key)) {
        rc = bad(
            p, has_cert ? "secureJsonData.redisTlsClientKey" : "secureJsonData.redisTlsClientCert",
            "redisTlsClientCert and redisTlsClientKey go together");
        goto out;
    }
    if ((cfg_secret_isset(&c->redis_tls_ca_cert) &&
         (rc = check_pem(p, &c->redis_tls_ca_cert, PEM_CERT, "redisTlsCACert"))) ||
        (has_cert &&
         ((rc = check_pem(p, &c->redis_tls_client_cert, PEM_CERT, "redisTlsClientCert")) ||
          (rc = check_pem(p, &c->redis_tls_client_key, PEM_KEY, "redisTlsClientKey")))))
        goto out;
    {
        /* a password written into the URL is a secret too: keep it for redaction */
        const char *ui = strstr(c->redis_url, "://");
        const char *at = ui ? strchr(ui + 3, '@') : NULL;
        const char *colon = ui && at ? memchr(ui + 3, ':', (size_t)(at - ui - 3)) : NULL;
        if (colon && at > colon + 1 &&
            cfg_secret_set(&c->redis_url_password, colon + 1, (size_t)(at - colon - 1))) {
            rc = CP_ENOMEM;
            goto out;
        }
    }
    if ((rc = dup_str(p, &c->key_prefix, "cachingproxy:")) ||
        (rc = get_str(p, co, "keyPrefix", "jsonData.cache.keyPrefix", &c->key_prefix)))
        goto out;
    if (c->max_entry_bytes > c->memory_max_bytes && c->backend == CFG_CACHE_MEMORY)
        c->max_entry_bytes = c->memory_max_bytes;
out:
    json_decref(empty);
    return rc;
}

/* Feeds a length-prefixed field into the fingerprint, so adjacent fields cannot collide. */
static void fp_add(EVP_MD_CTX *md, const char *tag, const void *v, size_t n)
{
    uint32_t len = (uint32_t)n;
    EVP_DigestUpdate(md, tag, strlen(tag) + 1);
    EVP_DigestUpdate(md, &len, sizeof len);
    if (n)
        EVP_DigestUpdate(md, v, n);
}

static void fp_str(EVP_MD_CTX *md, const char *tag, const char *s)
{
    fp_add(md, tag, s ? s : "", s ? strlen(s) : 0);
}

static void fp_secret(EVP_MD_CTX *md, const char *tag, const struct cfg_secret *s)
{
    fp_add(md, tag, s->v ? s->v : "", s->len);
}

static int fingerprint(struct cfg_ds *ds)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return CP_ENOMEM;
    EVP_DigestInit_ex(md, cp_sha256(), NULL);
    fp_str(md, "url", ds->url);
    fp_str(md, "auth", cfg_auth_type_name(ds->auth_type));
    fp_str(md, "buser", ds->basic_auth_user);
    fp_secret(md, "bpass", &ds->basic_auth_password);
    fp_secret(md, "bearer", &ds->bearer_token);
    fp_secret(md, "apikey", &ds->api_key);
    fp_str(md, "akh", ds->api_key_header);
    fp_str(md, "akq", ds->api_key_query);
    fp_str(md, "o2url", ds->oauth2_token_url);
    fp_str(md, "o2id", ds->oauth2_client_id);
    fp_str(md, "o2aud", ds->oauth2_audience);
    for (size_t i = 0; i < ds->oauth2_scopes.n; i++)
        fp_str(md, "o2scope", ds->oauth2_scopes.v[i]);
    fp_secret(md, "o2secret", &ds->oauth2_client_secret);
    fp_secret(md, "hmacsecret", &ds->hmac_secret);
    fp_str(md, "hmachdr", ds->hmac_header);
    fp_str(md, "hmacalg", ds->hmac_algorithm);
    fp_str(md, "module", ds->auth_module);
    fp_str(md, "modcfg", ds->auth_module_config);
    char tls[8] = {(char)('0' + ds->tls_skip_verify), (char)('0' + ds->tls_auth),
                   (char)('0' + ds->tls_auth_ca), 0};
    fp_str(md, "tls", tls);
    fp_secret(md, "tlsca", &ds->tls_ca_cert);
    fp_secret(md, "tlscert", &ds->tls_client_cert);
    fp_secret(md, "tlskey", &ds->tls_client_key);
    for (size_t i = 0; i < ds->nheaders; i++) {
        fp_str(md, "hname", ds->headers[i].name);
        fp_secret(md, "hval", &ds->headers[i].value);
    }
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, ds->fingerprint, &n);
    EVP_MD_CTX_free(md);
    return 0;
}

int cfg_ds_parse(const struct cfg_ds_input *in, struct cfg_ds **out, struct cp_err *err)
{
    struct cfg_ds *ds = calloc(1, sizeof *ds);
    json_t *jd = NULL;
    int rc;
    *out = NULL;
    if (!ds)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    struct parser p = {in, ds, err};
    ds->id = in->id;
    ds->org_id = in->org_id;
    ds->last_updated_ms = in->last_updated_ms;
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "%lld", (long long)in->id);
    if ((rc = dup_str(&p, &ds->uid, in->uid && *in->uid ? in->uid : idbuf)) ||
        (rc = dup_str(&p, &ds->name, in->name ? in->name : "")))
        goto fail;
    size_t kl = strlen(ds->uid) + 24;
    if (!(ds->key_id = malloc(kl))) {
        rc = CP_ENOMEM;
        goto fail;
    }
    snprintf(ds->key_id, kl, "%lld:%s", (long long)ds->org_id, ds->uid);
    if ((rc = parse_url(&p)))
        goto fail;

    if (in->json_len) {
        json_error_t je;
        jd = json_loadb(in->json_data, in->json_len, 0, &je);
        if (!jd) {
            rc = cp_err_set(err, CP_ECONFIG, "jsonData: not valid JSON (line %d: %.80s)",
                            je.line, je.text);
            goto fail;
        }
        if (!json_is_object(jd)) {
            rc = bad(&p, "jsonData", "must be a JSON object");
            goto fail;
        }
    } else {
        jd = json_object();
    }

    json_t *t = json_object_get(jd, "timeout");
    ds->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (t && !json_is_null(t) && !(json_is_number(t) && json_number_value(t) == 0)) {
        if ((rc = get_duration(&p, jd, "timeout", "jsonData.timeout", &ds->timeout_ms)))
            goto fail;
        if (ds->timeout_ms <= 0) {
            rc = bad(&p, "jsonData.timeout", "must be a positive number of seconds");
            goto fail;
        }
    }
    ds->max_response_bytes = DEFAULT_MAX_RESPONSE;
    if ((rc = get_size(&p, jd, "maxResponseBytes", "jsonData.maxResponseBytes",
                       &ds->max_response_bytes)))
        goto fail;
    ds->max_request_bytes = DEFAULT_MAX_REQUEST;
    if ((rc = get_size(&p, jd, "maxRequestBytes", "jsonData.maxRequestBytes",
                       &ds->max_request_bytes)))
        goto fail;
    ds->max_connections = DEFAULT_MAX_CONNECTIONS;
    json_t *mc = json_object_get(jd, "maxConnections");
    if (mc && !json_is_null(mc)) {
        if (!json_is_integer(mc) || json_integer_value(mc) < 1 ||
            json_integer_value(mc) > MAX_MAX_CONNECTIONS) {
            rc = bad(&p, "jsonData.maxConnections", "must be a whole number from 1 to 100000");
            goto fail;
        }
        ds->max_connections = json_integer_value(mc);
    }
    if ((rc = dup_str(&p, &ds->health_path, "/")) ||
        (rc = get_str(&p, jd, "healthPath", "jsonData.healthPath", &ds->health_path)))
        goto fail;
    if (ds->health_path[0] != '/') {
        char *hp = malloc(strlen(ds->health_path) + 2);
        if (!hp) {
            rc = CP_ENOMEM;
            goto fail;
        }
        hp[0] = '/';
        strcpy(hp + 1, ds->health_path);
        free(ds->health_path);
        ds->health_path = hp;
    }
    for (const char *c = ds->health_path; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            rc = bad(&p, "jsonData.healthPath", "must not contain spaces or control characters");
            goto fail;
        }

    if ((rc = parse_auth(&p, jd)) || (rc = parse_headers(&p, jd)) || (rc = parse_tls(&p, jd)) ||
        (rc = parse_access(&p, jd)) || (rc = parse_cache(&p, jd)) || (rc = fingerprint(ds)))
        goto fail;
    json_decref(jd);
    *out = ds;
    return 0;
fail:
    if (rc == CP_ENOMEM)
        cp_err_set(err, CP_ENOMEM, "out of memory while reading settings");
    json_decref(jd);
    cfg_ds_free(ds);
    return rc;
}

static void free_rule(struct cfg_rule *r)
{
    cfg_strlist_free(&r->users);
    cfg_strlist_free(&r->methods);
    cfg_strlist_free(&r->paths);
    free(r->orgs);
}

void cfg_ds_free(struct cfg_ds *ds)
{
    if (!ds)
        return;
    free(ds->uid);
    free(ds->key_id);
    free(ds->name);
    free(ds->url);
    free(ds->health_path);
    free(ds->basic_auth_user);
    cfg_secret_wipe(&ds->basic_auth_password);
    cfg_secret_wipe(&ds->basic_auth_b64);
    cfg_secret_wipe(&ds->bearer_token);
    cfg_secret_wipe(&ds->api_key);
    cfg_secret_wipe(&ds->oauth2_client_secret);
    cfg_secret_wipe(&ds->hmac_secret);
    free(ds->api_key_header);
    free(ds->api_key_query);
    free(ds->oauth2_token_url);
    free(ds->oauth2_client_id);
    free(ds->oauth2_audience);
    cfg_strlist_free(&ds->oauth2_scopes);
    free(ds->hmac_header);
    free(ds->hmac_algorithm);
    free(ds->auth_module);
    free(ds->auth_module_config);
    for (size_t i = 0; i < ds->nmodule_secrets; i++)
        cfg_secret_wipe(&ds->module_secrets[i]);
    free(ds->module_secrets);
    for (size_t i = 0; i < ds->nheaders; i++) {
        free(ds->headers[i].name);
        cfg_secret_wipe(&ds->headers[i].value);
    }
    free(ds->headers);
    cfg_secret_wipe(&ds->tls_ca_cert);
    cfg_secret_wipe(&ds->tls_client_cert);
    cfg_secret_wipe(&ds->tls_client_key);
    cfg_strlist_free(&ds->allowed_paths);
    cfg_strlist_free(&ds->forward_headers);
    for (size_t i = 0; i < ds->nrules; i++)
        free_rule(&ds->rules[i]);
    free(ds->rules);
    free(ds->authz_url);
    for (size_t i = 0; i < ds->cache.nrules; i++)
        cfg_strlist_free(&ds->cache.rules[i].paths);
    free(ds->cache.rules);
    cfg_strlist_free(&ds->cache.methods);
    free(ds->cache.redis_url);
    cfg_secret_wipe(&ds->cache.redis_password);
    cfg_secret_wipe(&ds->cache.redis_url_password);
    cfg_secret_wipe(&ds->cache.redis_sentinel_password);
    cfg_secret_wipe(&ds->cache.redis_tls_ca_cert);
    cfg_secret_wipe(&ds->cache.redis_tls_client_cert);
    cfg_secret_wipe(&ds->cache.redis_tls_client_key);
    free(ds->cache.key_prefix);
    free(ds);
}

void cfg_ds_each_secret(const struct cfg_ds *ds, void (*fn)(void *ctx, const char *v),
                        void *ctx)
{
    const struct cfg_secret *s[] = {&ds->basic_auth_password,
                                    &ds->basic_auth_b64,
                                    &ds->bearer_token,
                                    &ds->api_key,
                                    &ds->oauth2_client_secret,
                                    &ds->hmac_secret,
                                    &ds->tls_client_key,
                                    &ds->cache.redis_password,
                                    &ds->cache.redis_url_password,
                                    &ds->cache.redis_sentinel_password,
                                    &ds->cache.redis_tls_client_key};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        if (cfg_secret_isset(s[i]))
            fn(ctx, s[i]->v);
    for (size_t i = 0; i < ds->nmodule_secrets; i++)
        if (cfg_secret_isset(&ds->module_secrets[i]))
            fn(ctx, ds->module_secrets[i].v);
    for (size_t i = 0; i < ds->nheaders; i++)
        if (cfg_secret_isset(&ds->headers[i].value))
            fn(ctx, ds->headers[i].value.v);
}

enum cfg_role cfg_role_parse(const char *s)
{
    if (!s)
        return CFG_ROLE_NONE;
    if (!strcasecmp(s, "Viewer"))
        return CFG_ROLE_VIEWER;
    if (!strcasecmp(s, "Editor"))
        return CFG_ROLE_EDITOR;
    if (!strcasecmp(s, "Admin"))
        return CFG_ROLE_ADMIN;
    return CFG_ROLE_NONE;
}

const char *cfg_auth_type_name(enum cfg_auth_type t)
{
    static const char *const names[] = {"none",         "basic", "bearer", "apiKey", "oauth2",
                                        "forwardOAuth", "hmac",  "module"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "none";
}

const char *cfg_cache_backend_name(enum cfg_cache_backend b)
{
    return b == CFG_CACHE_REDIS ? "redis" : b == CFG_CACHE_OFF ? "off" : "memory";
}
