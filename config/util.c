/* util.c - secrets, string lists, durations, sizes and the environment. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cfg_secret_set(struct cfg_secret *s, const char *v, size_t len)
{
    cfg_secret_wipe(s);
    s->v = malloc(len + 1);
    if (!s->v)
        return CP_ENOMEM;
    memcpy(s->v, v, len);
    s->v[len] = 0;
    s->len = len;
    return 0;
}

void cfg_secret_wipe(struct cfg_secret *s)
{
    if (s->v) {
        /* volatile stores so the wipe is not optimised away before free */
        volatile char *p = s->v;
        for (size_t i = 0; i < s->len; i++)
            p[i] = 0;
        free(s->v);
    }
    s->v = NULL;
    s->len = 0;
}

int cfg_strlist_push(struct cfg_strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return CP_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(s)))
        return CP_ENOMEM;
    l->n++;
    return 0;
}

void cfg_strlist_free(struct cfg_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int cfg_strlist_has_ci(const struct cfg_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->v[i], s) == 0)
            return 1;
    return 0;
}

/* Parses a non-negative decimal with an optional fraction; returns the end pointer or NULL. */
static const char *parse_number(const char *s, double *out)
{
    /* digits and one dot only: strtod alone would also take "0x10", "1e3" or "inf" */
    size_t n = strspn(s, "0123456789.");
    const char *dot = memchr(s, '.', n);
    if (!n || (dot && memchr(dot + 1, '.', n - (size_t)(dot + 1 - s))) || (n == 1 && *s == '.'))
        return NULL;
    char buf[64];
    if (n >= sizeof buf)
        return NULL;
    memcpy(buf, s, n);
    buf[n] = 0;
    *out = strtod(buf, NULL);
    return s + n;
}

int cfg_duration_parse(const char *s, int64_t *ms)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1000}};
    double v, total = 0;
    int parts = 0;
    while (*s == ' ')
        s++;
    while (*s) {
        const char *end = parse_number(s, &v);
        if (!end)
            return CP_EINVAL;
        size_t k;
        for (k = 0; k < sizeof units / sizeof units[0]; k++) {
            size_t ul = strlen(units[k].unit);
            if (strncmp(end, units[k].unit, ul) == 0 &&
                !(ul == 1 && units[k].unit[0] == 'm' && end[1] == 's')) {
                /* a bare number is only allowed alone */
                if (ul == 0 && (parts > 0 || *end))
                    return CP_EINVAL;
                total += v * units[k].ms;
                s = end + ul;
                break;
            }
        }
        if (k == sizeof units / sizeof units[0])
            return CP_EINVAL;
        parts++;
    }
    if (parts == 0 || total > 9.0e15)
        return CP_EINVAL;
    *ms = (int64_t)(total + 0.5);
    return 0;
}

int cfg_size_parse(const char *s, int64_t *bytes)
{
    static const struct {
        const char *unit;
        double mul;
    } units[] = {{"KiB", 1024.0},     {"MiB", 1048576.0}, {"GiB", 1073741824.0},
                 {"KB", 1000.0},      {"MB", 1e6},        {"GB", 1e9},
                 {"K", 1024.0},       {"M", 1048576.0},   {"G", 1073741824.0},
                 {"B", 1.0},          {"", 1.0}};
    double v;
    const char *end = parse_number(s, &v);
    if (!end)
        return CP_EINVAL;
    while (*end == ' ')
        end++;
    for (size_t k = 0; k < sizeof units / sizeof units[0]; k++) {
        if (strcasecmp(end, units[k].unit) == 0) {
            double b = v * units[k].mul;
            if (b > 9.0e15)
                return CP_EINVAL;
            *bytes = (int64_t)b;
            return 0;
        }
    }
    return CP_EINVAL;
}

const char *cfg_env2(const char *primary, const char *secondary)
{
    const char *v = primary ? getenv(primary) : NULL;
    if (v && *v)
        return v;
    v = secondary ? getenv(secondary) : NULL;
    return v && *v ? v : NULL;
}
