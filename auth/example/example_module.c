/*
 * example_module.c - a small auth module showing the cpx_auth.h ABI.
 *
 * Config (jsonData.authModuleConfig), all keys optional:
 *   {"header": "X-Example-Token", "token": "...",      credential added to upstream calls
 *    "denyPrefix": "/admin",                           paths under it are denied
 *    "userScopePrefix": "/me",                         answers under it are cached per user
 *    "requireUser": true}                              calls without a user are denied
 * It parses its config by hand to stay free of dependencies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx_auth.h"

struct example {
    char header[64];
    char token[256];
    char deny_prefix[256];
    char user_prefix[256];
    int require_user;
    const struct cpx_auth_host *host;
};

/* Copies the string value of "key" from a flat JSON object (no escapes inside values). */
static int json_str(const char *json, const char *key, char *out, size_t size)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p)
        return 0;
    p = strchr(p + strlen(pat), ':');
    if (!p)
        return -1;
    while (*++p == ' ')
        ;
    if (*p != '"')
        return -1;
    const char *end = strchr(++p, '"');
    if (!end || (size_t)(end - p) >= size)
        return -1;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = 0;
    return 1;
}

static int has_prefix(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return n && !strncmp(path, prefix, n) && (path[n] == 0 || path[n] == '/');
}

static int create(const char *config, const struct cpx_auth_host *host, void **inst, char *err,
                  size_t err_size)
{
    struct example *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    e->host = host;
    snprintf(e->header, sizeof e->header, "X-Example-Token");
    if (json_str(config, "header", e->header, sizeof e->header) < 0 ||
        json_str(config, "token", e->token, sizeof e->token) < 0 ||
        json_str(config, "denyPrefix", e->deny_prefix, sizeof e->deny_prefix) < 0 ||
        json_str(config, "userScopePrefix", e->user_prefix, sizeof e->user_prefix) < 0) {
        snprintf(err, err_size, "config values must be short JSON strings");
        free(e);
        return -1;
    }
    e->require_user = strstr(config, "\"requireUser\": true") || strstr(config,
                                                                         "\"requireUser\":true");
    if (host && host->struct_size >= sizeof *host && host->log)
        host->log(host->host_ctx, CPX_LOG_INFO, "example module ready");
    *inst = e;
    return 0;
}

static int decide(void *inst, const struct cpx_auth_request *rq, struct cpx_auth_result *res)
{
    struct example *e = inst;
    if (rq->phase == CPX_PHASE_AUTHORIZE) {
        if (e->require_user && !rq->has_user) {
            res->verdict = CPX_DENY;
            snprintf(res->reason, sizeof res->reason, "example module: a signed-in user is "
                                                      "required");
        } else if (e->deny_prefix[0] && has_prefix(rq->path, e->deny_prefix)) {
            res->verdict = CPX_DENY;
            snprintf(res->reason, sizeof res->reason, "example module: %.80s is off limits",
                     e->deny_prefix);
        } else {
            res->verdict = CPX_ALLOW;
        }
        if (e->user_prefix[0] && has_prefix(rq->path, e->user_prefix))
            res->scope = CPX_SCOPE_USER;
        return 0;
    }
    if (rq->phase == CPX_PHASE_UPSTREAM && e->token[0])
        return res->add_header(res, e->header, e->token) == 0 ? 0 : -1;
    return 0;
}

static void destroy(void *inst) { free(inst); }

static const struct cpx_auth_module example_module = {
    CPX_AUTH_ABI_MAJOR, CPX_AUTH_ABI_MINOR, sizeof(struct cpx_auth_module), "example", "1.0.0",
    create, decide, destroy,
};

CPX_AUTH_EXPORT const struct cpx_auth_module *cpx_auth_module(void);
const struct cpx_auth_module *cpx_auth_module(void) { return &example_module; }
