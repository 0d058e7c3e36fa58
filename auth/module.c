/* module.c - loading auth modules (cpx_auth.h) with dlopen, only by name and only from the
 * operator's module directory, and calling them in the two phases of a request. */
#include "auth_int.h"
#include "cpx_auth.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The smallest module descriptor this host can use (ABI 1.0). */
#define MODULE_MIN_SIZE (offsetof(struct cpx_auth_module, destroy) + sizeof(void (*)(void *)))

struct auth__module {
    void *dl;
    const struct cpx_auth_module *m;
    void *inst;
    struct cpx_auth_host host;
    const struct cp_logger *log;
    char name[64];
};

/* Process-wide: which file provides which module name, so that two different files cannot
 * both claim one name. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg {
    char name[64];
    char path[PATH_MAX];
    unsigned users;
} registry[32];

static int reg_claim(const char *name, const char *path)
{
    int rc = 0, free_slot = -1;
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < 32; i++) {
        if (registry[i].users == 0) {
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (!strcmp(registry[i].name, name)) {
            if (strcmp(registry[i].path, path))
                rc = -1; /* same name, another file */
            else
                registry[i].users++;
            pthread_mutex_unlock(&reg_mu);
            return rc;
        }
    }
    if (free_slot < 0) {
        rc = -2;
    } else {
        snprintf(registry[free_slot].name, sizeof registry[free_slot].name, "%s", name);
        snprintf(registry[free_slot].path, sizeof registry[free_slot].path, "%s", path);
        registry[free_slot].users = 1;
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

static void reg_release(const char *name)
{
    pthread_mutex_lock(&reg_mu);
    for (int i = 0; i < 32; i++)
        if (registry[i].users && !strcmp(registry[i].name, name)) {
            registry[i].users--;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

static void host_log(void *ctx, int level, const char *msg)
{
    struct auth__module *mod = ctx;
    int lv = level <= CPX_LOG_DEBUG  ? CP_LOG_DEBUG
             : level == CPX_LOG_INFO ? CP_LOG_INFO
             : level == CPX_LOG_WARN ? CP_LOG_WARN
                                     : CP_LOG_ERROR;
    struct cp_kv kv[] = {CP_KV_S("module", mod->name)};
    cp_log(mod->log, lv, msg ? msg : "", kv, 1);
}

int auth__module_new(struct auth_ds *a, struct cp_err *err)
{
    const char *name = a->cfg->auth_module;
    const char *dir = a->env.module_dir;
    char path[PATH_MAX], real[PATH_MAX], realdir[PATH_MAX];
    if (!dir || !*dir)
        return cp_err_set(err, CP_ECONFIG,
                          "jsonData.authModule: modules are disabled: the operator must set "
                          "CACHINGPROXY_MODULE_DIR (or [plugin.seed-cachingproxy-datasource] "
                          "module_dir in grafana.ini)");
    if (!*name || strchr(name, '/') || strstr(name, "..") || strlen(name) > 48)
        return cp_err_set(err, CP_ECONFIG, "jsonData.authModule: must be a plain module name");
    size_t nl = strlen(name);
    int has_so = nl > 3 && !strcmp(name + nl - 3, ".so");
    snprintf(path, sizeof path, "%s/%s%s", dir, name, has_so ? "" : ".so");
    /* the resolved file must still lie inside the resolved directory (no symlink escape) */
    if (!realpath(dir, realdir) || !realpath(path, real))
        return cp_err_set(err, CP_ECONFIG, "jsonData.authModule: module \"%s\" not found in the "
                                           "module directory", name);
    size_t dl = strlen(realdir);
    if (strncmp(real, realdir, dl) != 0 || real[dl] != '/')
        return cp_err_set(err, CP_ECONFIG,
                          "jsonData.authModule: module \"%s\" resolves outside the module "
                          "directory", name);

    struct auth__module *mod = calloc(1, sizeof *mod);
    if (!mod)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    mod->log = a->env.log;
    snprintf(mod->name, sizeof mod->name, "%s", name);
    mod->dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!mod->dl) {
        free(mod);
        return cp_err_set(err, CP_EMODULE, "auth module \"%s\" could not be loaded", name);
    }
    cpx_auth_entry_fn entry = (cpx_auth_entry_fn)dlsym(mod->dl, CPX_AUTH_ENTRY_SYMBOL);
    const struct cpx_auth_module *m = entry ? entry() : NULL;
    int rc;
    if (!m) {
        rc = cp_err_set(err, CP_EMODULE, "auth module \"%s\" does not export %s", name,
                        CPX_AUTH_ENTRY_SYMBOL);
        goto fail;
    }
    if (m->abi_major != CPX_AUTH_ABI_MAJOR || m->struct_size < MODULE_MIN_SIZE || !m->create ||
        !m->decide || !m->destroy || !m->name) {
        rc = cp_err_set(err, CP_EMODULE,
                        "auth module \"%s\" was built for ABI %u (host: %u) or is incomplete",
                        name, (unsigned)m->abi_major, (unsigned)CPX_AUTH_ABI_MAJOR);
        goto fail;
    }
    snprintf(mod->name, sizeof mod->name, "%s", m->name);
    if (reg_claim(m->name, real) != 0) {
        rc = cp_err_set(err, CP_EMODULE,
                        "auth module name \"%s\" is already provided by another file", m->name);
        goto fail;
    }
    mod->m = m;
    mod->host = (struct cpx_auth_host){sizeof mod->host, CPX_AUTH_ABI_MAJOR, CPX_AUTH_ABI_MINOR,
                                       host_log, mod};
    char merr[256] = "";
    const char *conf = a->cfg->auth_module_config ? a->cfg->auth_module_config : "{}";
    if (m->create(conf, &mod->host, &mod->inst, merr, sizeof merr) != 0) {
        merr[sizeof merr - 1] = 0;
        rc = cp_err_set(err, CP_ECONFIG, "jsonData.authModuleConfig: module \"%s\" refused "
                                         "it: %s", m->name, merr[0] ? merr : "no reason given");
        reg_release(m->name);
        mod->m = NULL;
        goto fail;
    }
    a->module = mod;
    return 0;
fail:
    dlclose(mod->dl);
    free(mod);
    return rc;
}

void auth__module_free(struct auth__module *mod)
{
    if (!mod)
        return;
    if (mod->m) {
        mod->m->destroy(mod->inst);
        reg_release(mod->m->name);
    }
    dlclose(mod->dl);
    free(mod);
}

static const char *role_name(enum cfg_role r)
{
    static const char *const n[] = {"None", "Viewer", "Editor", "Admin"};
    return (unsigned)r < 4 ? n[r] : "None";
}

static void fill_request(struct cpx_auth_request *r, int phase, const struct cp_user *u,
                         const char *method, const char *path, const char *query,
                         const char *uid)
{
    memset(r, 0, sizeof *r);
    r->struct_size = sizeof *r;
    r->phase = phase;
    r->method = method ? method : "";
    r->path = path ? path : "";
    r->query = query ? query : "";
    r->datasource_uid = uid ? uid : "";
    r->has_user = u && u->present;
    r->user_login = u && u->login ? u->login : "";
    r->user_email = u && u->email ? u->email : "";
    r->user_role = role_name(u && u->present ? u->role : CFG_ROLE_NONE);
    r->org_id = u ? u->org_id : 0;
}

static int add_header_cb(struct cpx_auth_result *res, const char *name, const char *value)
{
    struct auth_creds *c = res->host_private;
    if (!c || !value || !cp_http_token(name)) /* a name forwarding would drop later */
        return -1;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n')
            return -1;
    return auth__creds_add(c, name, value) ? -1 : 0;
}

int auth__module_decide(struct auth_ds *a, const struct auth_request *rq,
                        struct auth_decision *d)
{
    struct auth__module *mod = a->module;
    struct cpx_auth_request r;
    struct cpx_auth_result res;
    fill_request(&r, CPX_PHASE_AUTHORIZE, rq->user, rq->method, rq->path, rq->query,
                 rq->ds_uid);
    memset(&res, 0, sizeof res);
    res.struct_size = sizeof res;
    res.add_header = add_header_cb;
    if (mod->m->decide(mod->inst, &r, &res) != 0) {
        d->allow = 0;
        snprintf(d->reason, sizeof d->reason, "auth module %s failed", mod->name);
        return 0;
    }
    res.reason[sizeof res.reason - 1] = 0;
    if (res.verdict == CPX_DENY) {
        d->allow = 0;
        snprintf(d->reason, sizeof d->reason, "%s", res.reason[0] ? res.reason
                                                                  : "denied by auth module");
    }
    switch (res.scope) {
    case CPX_SCOPE_SHARED:
        d->scope = CFG_SCOPE_SHARED;
        break;
    case CPX_SCOPE_ORG:
        d->scope = CFG_SCOPE_ORG;
        break;
    case CPX_SCOPE_USER:
        d->scope = CFG_SCOPE_USER;
        break;
    default:
        break;
    }
    return 0;
}

int auth__module_inject(struct auth_ds *a, const struct auth_outgoing *o, struct auth_creds *c,
                        struct cp_err *err)
{
    struct auth__module *mod = a->module;
    struct cpx_auth_request r;
    struct cpx_auth_result res;
    /* split "path?query" for the module */
    const char *q = strchr(o->path_query, '?');
    size_t plen = q ? (size_t)(q - o->path_query) : strlen(o->path_query);
    char *path = strndup(o->path_query, plen);
    if (!path)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    fill_request(&r, CPX_PHASE_UPSTREAM, o->user, o->method, path, q ? q + 1 : "",
                 a->cfg->uid);
    r.body = o->body;
    r.body_len = o->body_len;
    memset(&res, 0, sizeof res);
    res.struct_size = sizeof res;
    res.add_header = add_header_cb;
    res.host_private = c;
    int rc = mod->m->decide(mod->inst, &r, &res);
    free(path);
    if (rc != 0)
        return cp_err_set(err, CP_EMODULE, "auth module %s could not provide credentials",
                          mod->name);
    return 0;
}
