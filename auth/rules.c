/* rules.c - path globs and the rules engine of SPEC.md section 5. */
#include "auth.h"

#include <string.h>
#include <strings.h>

int auth_glob_match(const char *g, const char *p)
{
    while (*g) {
        if (g[0] == '*' && g[1] == '*') {
            const char *rest = g + 2;
            /* a double star followed by a slash may also stand for no segment at all, so the
             * glob "/" + "**" + "/x" matches "/x" */
            if (rest[0] == '/' && auth_glob_match(rest + 1, p))
                return 1;
            for (const char *q = p;; q++) {
                if (auth_glob_match(rest, q))
                    return 1;
                if (!*q)
                    return 0;
            }
        }
        if (g[0] == '*') {
            for (const char *q = p;; q++) {
                if (auth_glob_match(g + 1, q))
                    return 1;
                if (!*q || *q == '/')
                    return 0; /* '*' never crosses a segment */
            }
        }
        if (!*p) /* a trailing slash-double-star also matches the bare prefix ("/api") */
            return g[0] == '/' && g[1] == '*' && g[2] == '*' && !g[3];
        if (*g != *p)
            return 0;
        g++;
        p++;
    }
    return !*p;
}

int auth_glob_any(const struct cfg_strlist *globs, const char *path)
{
    for (size_t i = 0; i < globs->n; i++)
        if (auth_glob_match(globs->v[i], path))
            return 1;
    return 0;
}

static int user_matches(const struct cfg_rule *r, const struct cp_user *u)
{
    /* a call without a user (or role None) matches only rules naming neither roles nor users */
    int anonymous = !u || !u->present || u->role == CFG_ROLE_NONE;
    if (anonymous)
        return !r->has_roles && !r->has_users && (!r->has_orgs || (u && u->present));
    if (r->has_roles && !((int)u->role >= (int)r->min_role))
        return 0;
    if (r->has_users) {
        int hit = 0;
        for (size_t i = 0; i < r->users.n && !hit; i++)
            hit = (u->login && !strcasecmp(r->users.v[i], u->login)) ||
                  (u->email && *u->email && !strcasecmp(r->users.v[i], u->email));
        if (!hit)
            return 0;
    }
    return 1;
}

static int org_matches(const struct cfg_rule *r, const struct cp_user *u)
{
    if (!r->has_orgs)
        return 1;
    for (size_t i = 0; i < r->norgs; i++)
        if (u && r->orgs[i] == u->org_id)
            return 1;
    return 0;
}

int auth_rules_eval(const struct cfg_ds *cfg, const struct cp_user *u, const char *method,
                    const char *path, int *matched)
{
    for (size_t i = 0; i < cfg->nrules; i++) {
        const struct cfg_rule *r = &cfg->rules[i];
        if (!user_matches(r, u) || !org_matches(r, u))
            continue;
        if (r->has_methods && !cfg_strlist_has_ci(&r->methods, method))
            continue;
        if (r->has_paths && !auth_glob_any(&r->paths, path))
            continue;
        if (matched)
            *matched = (int)i;
        return r->allow;
    }
    if (matched)
        *matched = -1;
    return cfg->default_allow;
}
