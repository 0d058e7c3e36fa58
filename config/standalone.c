/*
 * standalone.c - the configuration file of the standalone server (`gpx_cachingproxy serve
 * --config FILE`): where it listens, its data sources (each validated exactly as Grafana's
 * settings are, by cfg_ds_parse) and the API keys that say who a request is.
 *
 * Every fault is reported as CP_ECONFIG naming the file and the key
 * ("standalone.json: datasources[1].jsonData.cache.backend: must be memory, redis or off"),
 * or the line and column of a JSON syntax error. "${NAME}" in any string is replaced by the
 * environment variable NAME before validation, so secrets can stay out of the file.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_THREADS 2
#define MAX_THREADS 64
#define DEFAULT_MAX_BODY (16LL << 20)
#define DEFAULT_SHUTDOWN_MS 10000
#define DEFAULT_CONN_TIMEOUT_MS 60000
#define MAX_FILE_BYTES (16 << 20)
#define MAX_UID 40 /* Grafana's short uids */
#define MIN_KEY_BYTES 8

struct sparser {
    const char *name; /* the file, for messages */
    struct cp_err *err;
};

static int bad(struct sparser *p, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct sparser *p, const char *key, const char *fmt, ...)
{
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return cp_err_set(p->err, CP_ECONFIG, "%s: %s: %s", p->name, key, why);
}

static const EVP_MD *sha256(void) { return cp_sha256(); }

/* ---- ${NAME} substitution ------------------------------------------------------------------ */

/* The value of s with every ${NAME} replaced; NULL with err set (the path names the key). */
static char *substitute(struct sparser *p, const char *path, const char *s)
{
    struct cp_buf b = {0};
    int rc = 0;
    while (*s && !rc) {
        const char *d = strchr(s, '$');
        if (!d) {
            rc = cp_buf_addstr(&b, s);
            break;
        }
        rc = cp_buf_add(&b, s, (size_t)(d - s));
        if (rc)
            break;
        if (d[1] == '$' && d[2] == '{') { /* "$${" writes "${" */
            rc = cp_buf_add(&b, "${", 2);
            s = d + 3;
            continue;
        }
        if (d[1] != '{') {
            rc = cp_buf_add(&b, "$", 1);
            s = d + 1;
            continue;
        }
        const char *name = d + 2;
        size_t n = 0;
        while (isalnum((unsigned char)name[n]) || name[n] == '_')
            n++;
        if (name[n] != '}' || n == 0 || isdigit((unsigned char)name[0]) || n > 200) {
            cp_buf_free(&b);
            bad(p, path,
                "\"${\" must start an environment variable name such as ${API_TOKEN} "
                "(write \"$${\" for a literal \"${\")");
            return NULL;
        }
        char var[201];
        memcpy(var, name, n);
        var[n] = 0;
        const char *v = getenv(var);
        if (!v) {
            cp_buf_free(&b);
            bad(p, path, "environment variable %s is not set", var);
            return NULL;
        }
        rc = cp_buf_addstr(&b, v);
        s = name + n + 1;
    }
    if (rc) {
        cp_buf_free(&b);
        cp_err_set(p->err, CP_ENOMEM, "out of memory");
        return NULL;
    }
    char *out = b.p ? cp_buf_take(&b, NULL) : strdup("");
    if (!out)
        cp_err_set(p->err, CP_ENOMEM, "out of memory");
    return out;
}

/* Replaces ${NAME} in every string of the tree, in place. The replaced text of a secret is
 * wiped from the old string before it goes. */
static int substitute_tree(struct sparser *p, json_t *j, char *path, size_t size)
{
    size_t plen = strlen(path);
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v)
        {
            snprintf(path + plen, size - plen, "%s%s", plen ? "." : "", k);
            if (json_is_string(v) && strchr(json_string_value(v), '$')) {
                char *nv = substitute(p, path, json_string_value(v));
                if (!nv || json_object_set_new(j, k, json_string(nv)) != 0) {
                    free(nv);
                    path[plen] = 0;
                    return p->err->code ? p->err->code
                                        : cp_err_set(p->err, CP_ECONFIG, "%s: %s: not valid UTF-8",
                                                     p->name, path);
                }
                OPENSSL_cleanse(nv, strlen(nv));
                free(nv);
            } else if (json_is_object(v) || json_is_array(v)) {
                int rc = substitute_tree(p, v, path, size);
                if (rc)
                    return rc;
            }
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            snprintf(path + plen, size - plen, "[%zu]", i);
            if (json_is_string(v) && strchr(json_string_value(v), '$')) {
                char *nv = substitute(p, path, json_string_value(v));
                if (!nv || json_array_set_new(j, i, json_string(nv)) != 0) {
                    free(nv);
                    return p->err->code ? p->err->code : CP_ENOMEM;
                }
                OPENSSL_cleanse(nv, strlen(nv));
                free(nv);
            } else if (json_is_object(v) || json_is_array(v)) {
                int rc = substitute_tree(p, v, path, size);
                if (rc)
                    return rc;
            }
        }
    }
    path[plen] = 0;
    return 0;
}

/* ---- small readers ----------------------------------------------------------------------------
 */

/* Refuses keys of obj that are not in allowed (a typo would otherwise be silently ignored). */
static int only_keys(struct sparser *p, json_t *obj, const char *where, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        size_t i;
        for (i = 0; allowed[i] && strcmp(allowed[i], k); i++)
            ;
        if (!allowed[i]) {
            char key[160];
            snprintf(key, sizeof key, "%s%s%.100s", where, *where ? "." : "", k);
            struct cp_buf list = {0};
            for (i = 0; allowed[i]; i++)
                cp_buf_addf(&list, "%s%s", i ? ", " : "", allowed[i]);
            int rc = bad(p, key, "unknown key (known: %s)", list.p ? list.p : "");
            cp_buf_free(&list);
            return rc;
        }
    }
    (void)v;
    return 0;
}

/* A string member: absent leaves *out as it is (NULL or a default). */
static int get_string(struct sparser *p, json_t *obj, const char *k, const char *key,
                      const char **out)
{
    json_t *v = json_object_get(obj, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad(p, key, "must be a string");
    *out = json_string_value(v);
    return 0;
}

static int get_int(struct sparser *p, json_t *obj, const char *k, const char *key, int64_t lo,
                   int64_t hi, int64_t *out)
{
    json_t *v = json_object_get(obj, k);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bad(p, key, "must be a whole number from %lld to %lld", (long long)lo,
                   (long long)hi);
    *out = json_integer_value(v);
    return 0;
}

/* The same, for obj's member k within `where`: key (size bytes) becomes "<where>.<k>", the
 * name errors give, and stays so for the caller's own checks. */
static int get_string_at(struct sparser *p, json_t *obj, const char *where, const char *k,
                         char *key, size_t size, const char **out)
{
    snprintf(key, size, "%s.%s", where, k);
    return get_string(p, obj, k, key, out);
}

static int get_int_at(struct sparser *p, json_t *obj, const char *where, const char *k,
                      char *key, size_t size, int64_t lo, int64_t hi, int64_t *out)
{
    snprintf(key, size, "%s.%s", where, k);
    return get_int(p, obj, k, key, lo, hi, out);
}

/* A duration as the settings write them: "30s", "5m", or a number of seconds. */
static int get_duration(struct sparser *p, json_t *obj, const char *k, const char *key,
                        int64_t *out)
{
    json_t *v = json_object_get(obj, k);
    if (!v || json_is_null(v))
        return 0;
    int64_t ms;
    if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 86400.0 * 365)
        ms = (int64_t)(json_number_value(v) * 1000);
    else if (!json_is_string(v) || cfg_duration_parse(json_string_value(v), &ms) != 0)
        return bad(p, key, "must be a duration such as \"10s\" or a number of seconds");
    *out = ms;
    return 0;
}

static int get_size(struct sparser *p, json_t *obj, const char *k, const char *key, int64_t *out)
{
    json_t *v = json_object_get(obj, k);
    if (!v || json_is_null(v))
        return 0;
    int64_t n;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (!json_is_string(v) || cfg_size_parse(json_string_value(v), &n) != 0)
        return bad(p, key, "must be a size such as \"16MiB\" or a number of bytes");
    if (n <= 0)
        return bad(p, key, "must be a positive size");
    *out = n;
    return 0;
}

/* "host:port", "[v6]:port", ":port" (every interface) or "port". */
static int parse_listen(struct sparser *p, const char *s, struct cfg_standalone *cfg)
{
    const char *colon = NULL, *host = s;
    size_t hl = 0;
    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return bad(p, "listen", "an IPv6 address is written \"[::1]:8080\"");
        host = s + 1;
        hl = (size_t)(end - host);
        colon = end + 1;
    } else if ((colon = strrchr(s, ':'))) {
        hl = (size_t)(colon - s);
        if (memchr(s, ':', hl))
            return bad(p, "listen", "an IPv6 address is written \"[::1]:8080\"");
    } else {
        hl = 0;
        colon = s - 1; /* the whole string is the port */
    }
    const char *ps = colon + 1;
    char *end;
    errno = 0;
    long port = strtol(ps, &end, 10);
    if (!*ps || *end || errno || port < 0 || port > 65535 || !isdigit((unsigned char)*ps))
        return bad(p, "listen",
                   "must be \"host:port\" with a port from 0 to 65535 (0: any "
                   "free port), e.g. \"127.0.0.1:8080\"");
    for (size_t i = 0; i < hl; i++)
        if (isspace((unsigned char)host[i]))
            return bad(p, "listen", "the host must not contain spaces");
    if (!(cfg->host = strndup(host, hl)))
        return cp_err_set(p->err, CP_ENOMEM, "out of memory");
    cfg->port = (int)port;
    return 0;
}

static int valid_uid(const char *u)
{
    size_t n = strlen(u);
    if (!n || n > MAX_UID)
        return 0;
    for (; *u; u++)
        if (!isalnum((unsigned char)*u) && *u != '-' && *u != '_')
            return 0;
    return 1;
}

/* ---- data sources ------------------------------------------------------------------------------
 */

static int parse_ds(struct sparser *p, json_t *d, size_t i, struct cfg_ds **out)
{
    static const char *const known[] = {
        "uid",      "name",           "url", "id", "orgId", "basicAuth", "basicAuthUser",
        "jsonData", "secureJsonData", NULL};
    char where[64], key[200];
    snprintf(where, sizeof where, "datasources[%zu]", i);
    if (!json_is_object(d))
        return bad(p, where, "must be an object with uid, url, jsonData and secureJsonData");
    int rc = only_keys(p, d, where, known);
    if (rc)
        return rc;
    const char *uid = NULL, *name = NULL, *url = NULL, *user = "";
    if ((rc = get_string_at(p, d, where, "uid", key, sizeof key, &uid)))
        return rc;
    if (!uid)
        return bad(p, key, "is required: the uid in /api/datasources/uid/<uid>/...");
    if (!valid_uid(uid))
        return bad(p, key, "must be 1 to %d letters, digits, '-' or '_'", MAX_UID);
    if ((rc = get_string_at(p, d, where, "name", key, sizeof key, &name)))
        return rc;
    if ((rc = get_string_at(p, d, where, "url", key, sizeof key, &url)))
        return rc;
    if ((rc = get_string_at(p, d, where, "basicAuthUser", key, sizeof key, &user)))
        return rc;
    int64_t id = (int64_t)i + 1, org = 1;
    if ((rc = get_int_at(p, d, where, "id", key, sizeof key, 1, INT64_MAX, &id)))
        return rc;
    if ((rc = get_int_at(p, d, where, "orgId", key, sizeof key, 1, INT64_MAX, &org)))
        return rc;
    json_t *ba = json_object_get(d, "basicAuth");
    if (ba && !json_is_null(ba) && !json_is_boolean(ba)) {
        snprintf(key, sizeof key, "%s.basicAuth", where);
        return bad(p, key, "must be true or false");
    }
    json_t *jd = json_object_get(d, "jsonData"), *sj = json_object_get(d, "secureJsonData");
    if (jd && !json_is_null(jd) && !json_is_object(jd)) {
        snprintf(key, sizeof key, "%s.jsonData", where);
        return bad(p, key, "must be an object");
    }
    if (sj && !json_is_null(sj) && !json_is_object(sj)) {
        snprintf(key, sizeof key, "%s.secureJsonData", where);
        return bad(p, key, "must be an object of strings");
    }
    size_t ns = json_is_object(sj) ? json_object_size(sj) : 0;
    const char **keys = calloc(ns + 1, sizeof *keys), **vals = calloc(ns + 1, sizeof *vals);
    char *jtext = json_is_object(jd) ? json_dumps(jd, JSON_COMPACT) : NULL;
    if (!keys || !vals || (json_is_object(jd) && !jtext)) {
        rc = cp_err_set(p->err, CP_ENOMEM, "out of memory");
        goto out;
    }
    size_t k = 0;
    const char *sk;
    json_t *sv;
    if (json_is_object(sj))
        json_object_foreach(sj, sk, sv)
        {
            if (!json_is_string(sv)) {
                snprintf(key, sizeof key, "%s.secureJsonData.%.60s", where, sk);
                rc = bad(p, key, "must be a string");
                goto out;
            }
            keys[k] = sk;
            vals[k++] = json_string_value(sv);
        }
    /* the authorization header carries the caller's API key here, never a user's OAuth token */
    json_t *at = json_is_object(jd) ? json_object_get(jd, "authType") : NULL;
    if (json_is_string(at) && !strcmp(json_string_value(at), "forwardOAuth")) {
        snprintf(key, sizeof key, "%s.jsonData.authType", where);
        rc = bad(p, key,
                 "forwardOAuth forwards the token Grafana got for its user; the "
                 "standalone server has none (its Authorization is the API key)");
        goto out;
    }
    struct cfg_ds_input in = {.id = id,
                              .org_id = org,
                              .uid = uid,
                              .name = name ? name : uid,
                              .url = url,
                              .basic_auth_enabled = json_is_true(ba),
                              .basic_auth_user = user,
                              .json_data = jtext,
                              .json_len = jtext ? strlen(jtext) : 0,
                              .secure_keys = keys,
                              .secure_values = vals,
                              .nsecure = k,
                              .last_updated_ms = 0};
    struct cp_err e = {0};
    rc = cfg_ds_parse(&in, out, &e);
    if (rc == CP_ENOMEM)
        cp_err_set(p->err, CP_ENOMEM, "out of memory");
    else if (rc)
        cp_err_set(p->err, CP_ECONFIG, "%s: %s.%s", p->name, where, cp_err_text(&e));
out:
    free(jtext);
    free(keys);
    free(vals);
    return rc;
}

/* ---- API keys ------------------------------------------------------------------------------- */

static int parse_key(struct sparser *p, json_t *o, size_t i, struct cfg_api_key *k)
{
    static const char *const known[] = {"key", "login", "email", "name", "role", "orgId", NULL};
    char where[48], key[96];
    snprintf(where, sizeof where, "apiKeys[%zu]", i);
    if (!json_is_object(o))
        return bad(p, where, "must be an object with key, login, email, role and orgId");
    int rc = only_keys(p, o, where, known);
    if (rc)
        return rc;
    const char *kv = NULL, *login = NULL, *email = "", *name = NULL, *role = "Viewer";
    if ((rc = get_string_at(p, o, where, "key", key, sizeof key, &kv)))
        return rc;
    if (!kv || strlen(kv) < MIN_KEY_BYTES)
        return bad(p, key,
                   "is required, at least %d characters (use ${ENV_NAME} to keep it "
                   "out of the file)",
                   MIN_KEY_BYTES);
    for (const char *c = kv; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return bad(p, key, "must not contain spaces or control characters");
    if ((rc = get_string_at(p, o, where, "login", key, sizeof key, &login)))
        return rc;
    if (!login || !*login)
        return bad(p, key, "is required: the user name rules and logs see");
    if ((rc = get_string_at(p, o, where, "email", key, sizeof key, &email)))
        return rc;
    if ((rc = get_string_at(p, o, where, "name", key, sizeof key, &name)))
        return rc;
    if ((rc = get_string_at(p, o, where, "role", key, sizeof key, &role)))
        return rc;
    k->role = cfg_role_parse(role);
    if (k->role == CFG_ROLE_NONE && strcmp(role, "None"))
        return bad(p, key, "must be Viewer, Editor, Admin or None");
    k->org_id = 1;
    if ((rc = get_int_at(p, o, where, "orgId", key, sizeof key, 1, INT64_MAX, &k->org_id)))
        return rc;
    unsigned int dl = 0;
    if (cfg_secret_set(&k->key, kv, strlen(kv)) != 0 || !(k->login = strdup(login)) ||
        !(k->email = strdup(email ? email : "")) || !(k->name = strdup(name ? name : login)) ||
        !EVP_Digest(kv, strlen(kv), k->digest, &dl, sha256(), NULL))
        return cp_err_set(p->err, CP_ENOMEM, "out of memory");
    return 0;
}

/* ---- the file ------------------------------------------------------------------------------- */

int cfg_standalone_parse(const char *text, size_t len, const char *name,
                         struct cfg_standalone **out, struct cp_err *err)
{
    static const char *const known[] = {
        "listen",  "threads", "maxBodyBytes", "shutdownTimeout", "connectionTimeout", "datasources",
        "apiKeys", NULL};
    struct sparser p = {name && *name ? name : "config", err};
    *out = NULL;
    cp_err_set(err, 0, "%s", "");
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cp_err_set(err, CP_ECONFIG, "%s:%d:%d: not valid JSON: %s", p.name, je.line,
                          je.column, je.text);
    struct cfg_standalone *cfg = calloc(1, sizeof *cfg);
    int rc = 0;
    char path[512] = "";
    if (!cfg) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        goto out;
    }
    if (!json_is_object(root)) {
        rc = bad(&p, "(top)", "must be a JSON object with listen, datasources and apiKeys");
        goto out;
    }
    if ((rc = only_keys(&p, root, "", known)) ||
        (rc = substitute_tree(&p, root, path, sizeof path)))
        goto out;
    const char *listen = DEFAULT_LISTEN;
    if ((rc = get_string(&p, root, "listen", "listen", &listen)) ||
        (rc = parse_listen(&p, listen, cfg)))
        goto out;
    int64_t threads = DEFAULT_THREADS;
    if ((rc = get_int(&p, root, "threads", "threads", 1, MAX_THREADS, &threads)))
        goto out;
    cfg->threads = (unsigned)threads;
    cfg->max_body_bytes = DEFAULT_MAX_BODY;
    cfg->shutdown_ms = DEFAULT_SHUTDOWN_MS;
    cfg->connection_timeout_ms = DEFAULT_CONN_TIMEOUT_MS;
    if ((rc = get_size(&p, root, "maxBodyBytes", "maxBodyBytes", &cfg->max_body_bytes)) ||
        (rc = get_duration(&p, root, "shutdownTimeout", "shutdownTimeout", &cfg->shutdown_ms)) ||
        (rc = get_duration(&p, root, "connectionTimeout", "connectionTimeout",
                           &cfg->connection_timeout_ms)))
        goto out;
    if (cfg->connection_timeout_ms < 1000) {
        rc = bad(&p, "connectionTimeout", "must be at least 1s");
        goto out;
    }

    json_t *dss = json_object_get(root, "datasources");
    if (!json_is_array(dss) || json_array_size(dss) == 0) {
        rc = bad(&p, "datasources", "is required: a list of data sources, each with uid and url");
        goto out;
    }
    cfg->ds = calloc(json_array_size(dss), sizeof *cfg->ds);
    if (!cfg->ds) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(dss); i++) {
        if ((rc = parse_ds(&p, json_array_get(dss, i), i, &cfg->ds[i])))
            goto out;
        cfg->nds++;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(cfg->ds[k]->uid, cfg->ds[i]->uid) &&
                cfg->ds[k]->org_id == cfg->ds[i]->org_id) {
                char key[48];
                snprintf(key, sizeof key, "datasources[%zu].uid", i);
                rc = bad(&p, key, "\"%s\" is already the uid of datasources[%zu]", cfg->ds[i]->uid,
                         k);
                goto out;
            }
    }

    json_t *keys = json_object_get(root, "apiKeys");
    if (keys && !json_is_null(keys) && !json_is_array(keys)) {
        rc = bad(&p, "apiKeys", "must be a list of {key, login, email, role, orgId}");
        goto out;
    }
    size_t nk = json_is_array(keys) ? json_array_size(keys) : 0;
    cfg->keys = calloc(nk ? nk : 1, sizeof *cfg->keys);
    if (!cfg->keys) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nk; i++) {
        cfg->nkeys++;
        if ((rc = parse_key(&p, json_array_get(keys, i), i, &cfg->keys[i])))
            goto out;
        for (size_t k = 0; k < i; k++)
            if (!CRYPTO_memcmp(cfg->keys[k].digest, cfg->keys[i].digest, 32)) {
                char key[48];
                snprintf(key, sizeof key, "apiKeys[%zu].key", i);
                rc = bad(&p, key, "the same key as apiKeys[%zu]", k);
                goto out;
            }
    }
out:
    json_decref(root);
    if (rc) {
        cfg_standalone_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int cfg_standalone_load(const char *path, struct cfg_standalone **out, struct cp_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cp_err_set(err, CP_ECONFIG, "%s: cannot read: %s", path, strerror(errno));
    struct cp_buf b = {.max = MAX_FILE_BYTES};
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = cp_buf_add(&b, chunk, n);
    int ioerr = ferror(f);
    fclose(f);
    if (rc || ioerr) {
        cp_buf_free(&b);
        return cp_err_set(err, CP_ECONFIG, "%s: %s", path,
                          rc == CP_ETOOBIG ? "larger than 16 MiB" : "cannot read");
    }
    const char *base = strrchr(path, '/');
    rc = cfg_standalone_parse(b.p ? b.p : "", b.len, base ? base + 1 : path, out, err);
    if (b.p)
        OPENSSL_cleanse(b.p, b.len); /* the file may hold secrets written in clear */
    cp_buf_free(&b);
    return rc;
}

const struct cfg_api_key *cfg_standalone_key(const struct cfg_standalone *cfg, const char *token,
                                             size_t len)
{
    unsigned char d[32];
    unsigned int dl = 0;
    if (!len || !EVP_Digest(token, len, d, &dl, sha256(), NULL))
        return NULL;
    const struct cfg_api_key *found = NULL;
    /* every key is compared, so the time taken does not say which one matched */
    for (size_t i = 0; i < cfg->nkeys; i++)
        if (!CRYPTO_memcmp(cfg->keys[i].digest, d, sizeof d) && !found)
            found = &cfg->keys[i];
    return found;
}

void cfg_standalone_free(struct cfg_standalone *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nds; i++)
        cfg_ds_free(cfg->ds[i]);
    free(cfg->ds);
    for (size_t i = 0; i < cfg->nkeys; i++) {
        cfg_secret_wipe(&cfg->keys[i].key);
        free(cfg->keys[i].login);
        free(cfg->keys[i].email);
        free(cfg->keys[i].name);
    }
    free(cfg->keys);
    free(cfg->host);
    free(cfg);
}
