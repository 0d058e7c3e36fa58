/* rules.c - path globs and the rules engine of SPEC.md section 5. */
#include "auth.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* Glob matching as a set of positions in the glob (an NFA), advanced one path character at a
 * time: time grows with path length times glob length, whatever the stars, so no glob an
 * admin writes can make a crafted path expensive. */
#define GLOB_MAX 1024
#define WORDS (GLOB_MAX / 64 + 1)
#define CANON_MAX 8192

/* Adds position i and every position reachable from it without reading a character. fresh:
 * a "**" entered just now, which may still stand for no segment at all ("/" "**" "/x" ~ "/x");
 * one that has read characters may not skip its slash. */
static void add_state(uint64_t *set, const char *g, size_t i, int fresh)
{
    for (;;) {
        set[i / 64] |= 1ULL << (i % 64);
        if (g[i] != '*')
            return;
        if (g[i + 1] == '*') {
            if (fresh && g[i + 2] == '/')
                add_state(set, g, i + 3, 1);
            i += 2;
        } else {
            i += 1;
        }
        fresh = 1;
    }
}

/* fold: compare letters without case (the canonical form of a path, for deny rules). */
static int glob_match(const char *g, const char *p, int fold)
{
    size_t len = strlen(g);
    if (len > GLOB_MAX)
        return 0;
    uint64_t cur[WORDS] = {0}, next[WORDS];
    add_state(cur, g, 0, 1);
    for (; *p; p++) {
        memset(next, 0, sizeof next);
        int any = 0;
        for (size_t w = 0; w <= len / 64; w++) {
            for (uint64_t bits = cur[w]; bits; bits &= bits - 1) {
                size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
                if (g[i] == '*' && g[i + 1] == '*') {
                    add_state(next, g, i, 0); /* any character, '/' included */
                    any = 1;
                } else if (g[i] == '*') {
                    if (*p != '/') { /* '*' never crosses a segment */
                        add_state(next, g, i, 0);
                        any = 1;
                    }
                } else if (g[i] && (g[i] == *p || (fold && lower(g[i]) == *p))) {
                    add_state(next, g, i + 1, 1);
                    any = 1;
                }
            }
        }
        if (!any)
            return 0;
        memcpy(cur, next, sizeof cur);
    }
    for (size_t w = 0; w <= len / 64; w++)
        for (uint64_t bits = cur[w]; bits; bits &= bits - 1) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(bits);
            /* the end of the glob, or a trailing slash-double-star at the bare prefix */
            if (i == len || !strcmp(g + i, "/**"))
                return 1;
        }
    return 0;
}

int auth_glob_match(const char *g, const char *p) { return glob_match(g, p, 0); }

int auth_glob_any(const struct cfg_strlist *globs, const char *path)
{
    for (size_t i = 0; i < globs->n; i++)
        if (auth_glob_match(globs->v[i], path))
            return 1;
    return 0;
}

int auth_path_canonical(const char *path, char *out, size_t size)
{
    size_t n = 0;
    const char *p = path;
    while (*p) {
        /* one segment: "/" then up to the next "/" */
        size_t seg = n;
        if (*p == '/') {
            if (n + 1 >= size)
                return CP_ETOOBIG;
            out[n++] = *p++;
            seg = n;
        }
        size_t len = strcspn(p, "/"), keep = strcspn(p, ";/");
        if (keep > len)
            keep = len;
        if (n + keep >= size)
            return CP_ETOOBIG;
        for (size_t i = 0; i < keep; i++)
            out[n++] = lower(p[i]);
        /* "name." and "name " read as "name" on many servers: drop trailing dots and spaces */
        while (n > seg && (out[n - 1] == '.' || out[n - 1] == ' '))
            n--;
        p += len;
    }
    out[n] = 0;
    return 0;
}

/* Whether a deny rule's paths cover path: as written, or in the canonical form an upstream
 * may give it (so "/Secret;x/", "/secret." or "/SECRET" cannot step around the rule). canon
 * is computed on first use. */
static int deny_paths_match(const struct cfg_strlist *globs, const char *path, char *canon,
                            size_t size, int *have)
{
    if (auth_glob_any(globs, path))
        return 1;
    if (!*have)
        *have = auth_path_canonical(path, canon, size) == 0 ? 1 : -1;
    if (*have < 0)
        return 1; /* too long to canonicalise: the deny rule stands */
    for (size_t i = 0; i < globs->n; i++)
        if (glob_match(globs->v[i], canon, 1))
            return 1;
    return 0;
}

static int user_matches(const struct cfg_rule *r, const struct cp_user *u)
{
    /* a call without a user (or role None) matches only rules naming neither roles nor users */
    int anonymous = !u || !u->present || u->role == CFG_ROLE_NONE;
    if (anonymous) /* orgs still apply: the call belongs to an org (checked below) */
        return !r->has_roles && !r->has_users;
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
    char canon[CANON_MAX];
    int have_canon = 0;
    for (size_t i = 0; i < cfg->nrules; i++) {
        const struct cfg_rule *r = &cfg->rules[i];
        if (!user_matches(r, u) || !org_matches(r, u))
            continue;
        if (r->has_methods && !cfg_strlist_has_ci(&r->methods, method))
            continue;
        if (r->has_paths && !(r->allow ? auth_glob_any(&r->paths, path)
                                       : deny_paths_match(&r->paths, path, canon, sizeof canon,
                                                          &have_canon)))
            continue;
        if (matched)
            *matched = (int)i;
        return r->allow;
    }
    if (matched)
        *matched = -1;
    return cfg->default_allow;
}
