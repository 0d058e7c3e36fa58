/* util.c - secrets, string lists, durations, sizes and the environment. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

/* ---- Grafana's times ------------------------------------------------------------------------ */

static int days_in_month(int year, int mon) /* year since 1900, mon 0..11 */
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = year + 1900;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return days[mon] + (mon == 1 && leap);
}

/* Brings tm's fields back into their ranges (after arithmetic on them). */
static int tm_normalise(struct tm *tm)
{
    time_t t = timegm(tm);
    return gmtime_r(&t, tm) ? 0 : CP_EINVAL;
}

/* Moves tm by n units; 0, or CP_EINVAL for an unknown unit. */
static int tm_add(struct tm *tm, char unit, long n)
{
    switch (unit) {
    case 's': tm->tm_sec += (int)n; break;
    case 'm': tm->tm_min += (int)n; break;
    case 'h': tm->tm_hour += (int)n; break;
    case 'd': tm->tm_mday += (int)n; break;
    case 'w': tm->tm_mday += 7 * (int)n; break;
    case 'M':
    case 'y': {
        long months = (long)tm->tm_year * 12 + tm->tm_mon + (unit == 'M' ? n : 12 * n);
        tm->tm_year = (int)(months >= 0 ? months / 12 : -((11 - months) / 12));
        tm->tm_mon = (int)(months - (long)tm->tm_year * 12);
        int last = days_in_month(tm->tm_year, tm->tm_mon);
        if (tm->tm_mday > last)
            tm->tm_mday = last;
        break;
    }
    default:
        return CP_EINVAL;
    }
    return tm_normalise(tm);
}

/* Rounds tm down to the start of its unit; 0, or CP_EINVAL. */
static int tm_floor(struct tm *tm, char unit)
{
    switch (unit) {
    case 'y': tm->tm_mon = 0; /* fall through */
    case 'M': tm->tm_mday = 1; /* fall through */
    case 'd': tm->tm_hour = 0; /* fall through */
    case 'h': tm->tm_min = 0; /* fall through */
    case 'm': tm->tm_sec = 0; /* fall through */
    case 's': break;
    case 'w':
        tm->tm_mday -= (tm->tm_wday + 6) % 7; /* back to Monday */
        tm->tm_hour = tm->tm_min = tm->tm_sec = 0;
        break;
    default:
        return CP_EINVAL;
    }
    return tm_normalise(tm);
}

int cfg_time_parse(const char *s, int64_t now_ms, int round_up, int64_t *out)
{
    size_t len = strlen(s);
    if (len && len < 19 && strspn(s, "0123456789") == len) {
        *out = strtoll(s, NULL, 10);
        return 0;
    }
    if (strncmp(s, "now", 3) || now_ms < 0)
        return CP_EINVAL;
    time_t secs = (time_t)(now_ms / 1000);
    int ms = (int)(now_ms % 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return CP_EINVAL;
    for (const char *p = s + 3; *p;) {
        if (*p == '/') {
            if (tm_floor(&tm, p[1]) != 0)
                goto duration;
            ms = 0;
            if (round_up) { /* the unit's last millisecond */
                if (tm_add(&tm, p[1], 1) != 0)
                    goto duration;
                ms = -1;
            }
            p += 2;
            continue;
        }
        if (*p != '+' && *p != '-')
            goto duration;
        long sign = *p == '-' ? -1 : 1, n = 1;
        const char *q = p + 1;
        if (*q >= '0' && *q <= '9') {
            char *end;
            n = strtol(q, &end, 10);
            q = end;
            if (n > 1000000)
                goto duration;
        }
        if (!*q || !strchr("smhdwMy", *q) || (*q == 'm' && q[1] == 's') || tm_add(&tm, *q, sign * n))
            goto duration;
        p = q + 1;
    }
    *out = (int64_t)timegm(&tm) * 1000 + ms;
    return 0;
duration:; /* not date math: "now-1h30m", "now-500ms" */
    int64_t d;
    if ((s[3] != '-' && s[3] != '+') || cfg_duration_parse(s + 4, &d) != 0)
        return CP_EINVAL;
    *out = s[3] == '-' ? now_ms - d : now_ms + d;
    return 0;
}
