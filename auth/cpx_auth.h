/*
 * cpx_auth.h - the ABI of cachingproxy auth modules. This is the only header a module
 * includes; it needs nothing but the C standard headers.
 *
 * A module is a shared object placed in the directory the operator names with
 * CACHINGPROXY_MODULE_DIR (or grafana.ini [plugin.seed-cachingproxy-datasource] module_dir,
 * which arrives as GF_PLUGIN_MODULE_DIR). A data source selects it by name with jsonData
 * authModule ("example" loads "<dir>/example.so"; names holding '/' or ".." are refused) and
 * passes it jsonData authModuleConfig.
 *
 * The module exports exactly one symbol, cpx_auth_module (see CPX_AUTH_ENTRY), returning a
 * static struct cpx_auth_module. Versioning: the host refuses a module whose abi_major differs
 * from its own; structs open with struct_size and only ever grow at the end, so either side
 * reads a field only when the other side's struct_size covers it.
 *
 * Threads: decide() is called concurrently from many threads for one instance; a module
 * synchronises its own state. Memory: the module never frees host memory and the host never
 * frees module memory; headers are copied by add_header() before it returns.
 */
#ifndef CPX_AUTH_H
#define CPX_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define CPX_AUTH_ABI_MAJOR 1
#define CPX_AUTH_ABI_MINOR 0

enum cpx_log_level { CPX_LOG_DEBUG = 1, CPX_LOG_INFO = 2, CPX_LOG_WARN = 3, CPX_LOG_ERROR = 4 };

/* Services the host offers to a module. */
struct cpx_auth_host {
    uint32_t struct_size;
    uint32_t abi_major, abi_minor;
    /* Writes a line to the plugin log (secrets are redacted by the host). */
    void (*log)(void *host_ctx, int level, const char *msg);
    void *host_ctx;
};

enum cpx_phase {
    CPX_PHASE_AUTHORIZE = 1, /* before the cache: set verdict and scope */
    CPX_PHASE_UPSTREAM = 2,  /* before an upstream call: add credentials with add_header */
};

/* The request as the module sees it. Strings are never NULL (empty when absent). */
struct cpx_auth_request {
    uint32_t struct_size;
    int phase;          /* enum cpx_phase */
    const char *method; /* "GET" */
    const char *path;   /* normalised upstream path, "/items/1" */
    const char *query;  /* raw query string without '?' */
    const char *datasource_uid;
    int has_user; /* 0 for Grafana's own calls (alerting) */
    const char *user_login, *user_email, *user_role; /* role: Viewer, Editor, Admin, None */
    int64_t org_id;
    const void *body; /* UPSTREAM phase only; may be NULL */
    size_t body_len;
};

enum cpx_verdict { CPX_ABSTAIN = 0, CPX_ALLOW = 1, CPX_DENY = 2 };
enum cpx_scope { CPX_SCOPE_DEFAULT = 0, CPX_SCOPE_SHARED = 1, CPX_SCOPE_ORG = 2, CPX_SCOPE_USER = 3 };

/* What the module decides; the host zero-fills it and sets struct_size and add_header. */
struct cpx_auth_result {
    uint32_t struct_size;
    int verdict;      /* AUTHORIZE phase: enum cpx_verdict (ABSTAIN keeps the host's decision) */
    int scope;        /* AUTHORIZE phase: enum cpx_scope, cache scope of the answer */
    char reason[128]; /* shown to the user when denying; no secrets */
    /* UPSTREAM phase: adds a header to the upstream request; returns 0, or -1 when refused
     * (invalid name or value, too many headers). */
    int (*add_header)(struct cpx_auth_result *res, const char *name, const char *value);
    void *host_private;
};

struct cpx_auth_module {
    uint32_t abi_major, abi_minor; /* CPX_AUTH_ABI_MAJOR, CPX_AUTH_ABI_MINOR */
    uint32_t struct_size;          /* sizeof(struct cpx_auth_module) */
    const char *name;              /* unique module name */
    const char *version;
    /* Creates an instance from the data source's authModuleConfig (JSON text, "{}" when
     * unset). Returns 0, or non-zero with a message (no secrets) in err. */
    int (*create)(const char *config_json, const struct cpx_auth_host *host, void **inst,
                  char *err, size_t err_size);
    /* Decides one phase of one request. Returns 0; non-zero is a module failure (the host
     * then denies the request). */
    int (*decide)(void *inst, const struct cpx_auth_request *rq, struct cpx_auth_result *res);
    void (*destroy)(void *inst);
};

/* The one symbol a module exports. */
#define CPX_AUTH_ENTRY_SYMBOL "cpx_auth_module"
#if defined(__GNUC__)
#define CPX_AUTH_EXPORT __attribute__((visibility("default")))
#else
#define CPX_AUTH_EXPORT
#endif
typedef const struct cpx_auth_module *(*cpx_auth_entry_fn)(void);

#endif
