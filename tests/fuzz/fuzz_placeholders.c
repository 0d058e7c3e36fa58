/*
 * fuzz_placeholders.c - libFuzzer driver for proxy__substitute, the time range placeholders
 * of query paths, params and bodies (${__from}, ${__to:iso}, $__interval_ms, ...).
 *
 * Input: the text (up to the first NUL byte), then optionally the range as up to four
 * little-endian int64 (from_ms, to_ms, interval_ms, max_points); missing bytes keep a
 * realistic default, so short inputs exercise the text and long ones any range at all.
 * Whatever the input, the result is never NULL, equals what an independent, deliberately
 * naive substitution gives (its own calendar arithmetic for the :iso forms), holds no
 * placeholder that should have been replaced, is a fixed point of a second substitution, and
 * text without '$' comes back unchanged.
 */
#include "proxy_int.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days). */
static void civil(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* floor division and its non-negative remainder, without overflow for any int64 */
static int64_t floordiv(int64_t a, int64_t b, int64_t *rem)
{
    int64_t q = a / b, r = a % b;
    if (r < 0) {
        r += b;
        q--;
    }
    *rem = r;
    return q;
}

static void ref_iso(int64_t ms, char *out, size_t n)
{
    int64_t msr, secs = floordiv(ms, 1000, &msr), sr, days = floordiv(secs, 86400, &sr), y;
    int m, d;
    civil(days, &y, &m, &d);
    snprintf(out, n, "%" PRId64 "-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, (int)(sr / 3600),
             (int)(sr / 60 % 60), (int)(sr % 60), (int)msr);
}

struct var {
    const char *name;
    int kind; /* 0 ms, 1 s (truncated), 2 iso */
    int which;
};
static const struct var vars[] = {
    {"__from", 0, 0},        {"__to", 0, 1},           {"__from:s", 1, 0},
    {"__to:s", 1, 1},        {"__from:iso", 2, 0},     {"__to:iso", 2, 1},
    {"__interval_ms", 0, 2}, {"__maxDataPoints", 0, 3},
};
#define NVARS (sizeof vars / sizeof vars[0])

static void value(const struct var *v, const int64_t *rg, char *out, size_t n)
{
    int64_t x = rg[v->which];
    if (v->kind == 2)
        ref_iso(x, out, n);
    else
        snprintf(out, n, "%" PRId64, v->kind == 1 ? x / 1000 : x);
}

static int word(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Left to right: "${name}" for every name, "$name" for names without ':' when no word
 * character follows; anything else is copied. */
static char *reference(const char *s, const int64_t *rg)
{
    size_t cap = strlen(s) * 16 + 64, o = 0;
    char *out = malloc(cap), val[96];
    assert(out);
    while (*s) {
        size_t used = 0;
        if (s[0] == '$') {
            for (size_t k = 0; k < NVARS && !used; k++) {
                size_t nl = strlen(vars[k].name);
                if (s[1] == '{' && !strncmp(s + 2, vars[k].name, nl) && s[2 + nl] == '}')
                    used = nl + 3;
                else if (!strchr(vars[k].name, ':') && !strncmp(s + 1, vars[k].name, nl) &&
                         !word(s[1 + nl]))
                    used = nl + 1;
                if (used) {
                    value(&vars[k], rg, val, sizeof val);
                    size_t vl = strlen(val);
                    assert(o + vl < cap);
                    memcpy(out + o, val, vl);
                    o += vl;
                }
            }
        }
        if (!used) {
            out[o++] = *s;
            used = 1;
        }
        s += used;
    }
    out[o] = 0;
    return out;
}

/* No placeholder is left that should have been replaced. */
static void check_no_placeholders(const char *out)
{
    char pat[40];
    for (size_t k = 0; k < NVARS; k++) {
        snprintf(pat, sizeof pat, "${%s}", vars[k].name);
        assert(!strstr(out, pat));
        if (strchr(vars[k].name, ':'))
            continue;
        snprintf(pat, sizeof pat, "$%s", vars[k].name);
        for (const char *p = strstr(out, pat); p; p = strstr(p + 1, pat))
            assert(word(p[strlen(pat)]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tl = nul ? (size_t)(nul - data) : size;
    char *text = malloc(tl + 1);
    if (!text)
        return 0;
    memcpy(text, data, tl);
    text[tl] = 0;

    int64_t rg[4] = {1700000000000LL, 1700003600000LL, 15000, 1000};
    if (nul) {
        const uint8_t *v = nul + 1;
        size_t vn = size - tl - 1;
        for (size_t i = 0; i < 4; i++) {
            if (vn < 8 * (i + 1))
                break;
            uint64_t x = 0;
            for (int b = 7; b >= 0; b--)
                x = x << 8 | v[8 * i + (size_t)b];
            rg[i] = (int64_t)x;
        }
    }
    struct proxy__range range = {rg[0], rg[1], rg[2], rg[3]};

    char *out = proxy__substitute(text, &range);
    assert(out); /* NULL only on ENOMEM */
    char *want = reference(text, rg);
    if (strcmp(out, want))
        fprintf(stderr, "fuzz_placeholders: got  \"%s\"\n                   want \"%s\"\n", out,
                want);
    assert(!strcmp(out, want));
    check_no_placeholders(out);
    if (!strchr(text, '$'))
        assert(!strcmp(out, text));

    /* nothing is left to substitute: a second pass changes nothing */
    char *twice = proxy__substitute(out, &range);
    assert(twice && !strcmp(twice, out));

    free(twice);
    free(want);
    free(out);
    free(text);
    return 0;
}
