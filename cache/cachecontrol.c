/* cachecontrol.c - Cache-Control directives that matter to a shared cache (RFC 9111):
 * no-store, no-cache, private, public, max-age, s-maxage. */
#include "cache.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parses the delta-seconds of "name=value" (quotes allowed); -1 when malformed. */
static int64_t seconds(const char *v, size_t n)
{
    if (n && *v == '"') {
        v++;
        n -= n >= 2 && v[n - 2] == '"' ? 2 : 1;
    }
    if (!n)
        return -1;
    int64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        if (s < 1000000000000LL)
            s = s * 10 + (v[i] - '0');
    }
    /* RFC 9111 section 1.2.2: a delta-seconds beyond 2^31 is taken as 2^31 */
    if (s > 2147483648LL)
        s = 2147483648LL;
    return s * 1000;
}

void cache_control_parse(const char *v, struct cache_control *cc)
{
    memset(cc, 0, sizeof *cc);
    cc->max_age_ms = cc->s_maxage_ms = -1;
    if (!v)
        return;
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t n = strcspn(v, ",");
        const char *d = v;
        v += n;
        while (n && (d[n - 1] == ' ' || d[n - 1] == '\t'))
            n--;
        if (!n)
            continue;
        const char *eq = memchr(d, '=', n);
        size_t nl = eq ? (size_t)(eq - d) : n;
        while (nl && d[nl - 1] == ' ')
            nl--;
        const char *val = eq ? eq + 1 : NULL;
        size_t vl = eq ? n - (size_t)(val - d) : 0;
        while (val && vl && *val == ' ') {
            val++;
            vl--;
        }
#define IS(name) (nl == sizeof(name) - 1 && !strncasecmp(d, name, nl))
        if (IS("no-store"))
            cc->no_store = 1;
        else if (IS("no-cache"))
            cc->no_cache = 1;
        else if (IS("private"))
            cc->private_ = 1;
        else if (IS("public"))
            cc->public_ = 1;
        else if (IS("max-age") && val)
            cc->max_age_ms = seconds(val, vl);
        else if (IS("s-maxage") && val)
            cc->s_maxage_ms = seconds(val, vl);
#undef IS
    }
}
