/*
 * trace.c - recorded traffic as CSV, one request a line: `ts,user,role,method,path`.
 *
 *   ts      epoch seconds, digits with an optional fraction (milliseconds are kept)
 *   user    pseudonym of the user, printable ASCII without commas; empty for a call without
 *           a user (Grafana's own, e.g. alerting)
 *   role    Viewer, Editor, Admin, None or empty
 *   method  the HTTP method (letters; QUERY for a data query)
 *   path    the rest of the line: upstream path and query string, printable ASCII, starting
 *           with '/' (it may contain commas)
 *
 * A header line `ts,user,role,method,path` may come first; blank lines are skipped; CRLF is
 * accepted; spaces around the first four fields are trimmed. Any other line is an error that
 * names the file and line. A last line without its newline that does not parse is taken as a
 * write cut short by a running recorder: it is ignored and counted. Records are sorted by ts
 * (stable) after loading. Strings are interned: a day of traffic repeats few of them.
 */
#include "bench_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_LINE 16384
#define MAX_USER 256
#define MAX_PATH 8192
#define MAX_METHOD 16
#define MAX_TS_S 99999999999LL /* year 5138: anything later is a unit mistake */
#define BLOCK 65536

/* ---- interned strings ------------------------------------------------------------------- */

struct bench_strings {
    char **blocks; /* never move: records point into them */
    size_t nblocks, used;
    const char **slots; /* open addressing, load <= 1/2 */
    size_t nslots, count;
};

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int strings_grow(struct bench_strings *p)
{
    size_t n = p->nslots ? p->nslots * 2 : 1024;
    const char **ns = calloc(n, sizeof *ns);
    if (!ns)
        return CP_ENOMEM;
    for (size_t i = 0; i < p->nslots; i++) {
        if (!p->slots[i])
            continue;
        size_t j = str_hash(p->slots[i], strlen(p->slots[i])) & (n - 1);
        while (ns[j])
            j = (j + 1) & (n - 1);
        ns[j] = p->slots[i];
    }
    free(p->slots);
    p->slots = ns;
    p->nslots = n;
    return 0;
}

/* The pool's copy of s[0..n) (n < BLOCK), or NULL when out of memory. */
static const char *intern(struct bench_strings *p, const char *s, size_t n)
{
    if ((p->count + 1) * 2 > p->nslots && strings_grow(p))
        return NULL;
    size_t j = str_hash(s, n) & (p->nslots - 1);
    for (; p->slots[j]; j = (j + 1) & (p->nslots - 1))
        if (!strncmp(p->slots[j], s, n) && p->slots[j][n] == 0)
            return p->slots[j];
    if (!p->nblocks || p->used + n + 1 > BLOCK) {
        char **nb = realloc(p->blocks, (p->nblocks + 1) * sizeof *nb);
        if (!nb)
            return NULL;
        p->blocks = nb;
        if (!(p->blocks[p->nblocks] = malloc(BLOCK)))
            return NULL;
        p->nblocks++;
        p->used = 0;
    }
    char *c = p->blocks[p->nblocks - 1] + p->used;
    memcpy(c, s, n);
    c[n] = 0;
    p->used += n + 1;
    p->slots[j] = c;
    p->count++;
    return c;
}

static void strings_free(struct bench_strings *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nblocks; i++)
        free(p->blocks[i]);
    free(p->blocks);
    free(p->slots);
    free(p);
}

/* ---- one line ----------------------------------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* Epoch seconds with an optional fraction; milliseconds are kept, finer digits dropped. */
static int parse_ts(const char *s, int64_t *ms)
{
    int64_t sec = 0, frac = 0;
    int digits = 0, fdigits = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        sec = sec * 10 + (*p - '0');
        if (sec > MAX_TS_S)
            return -1;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, fdigits++)
            if (fdigits < 3)
                frac = frac * 10 + (*p - '0');
        if (!fdigits)
            return -1;
    }
    if (!digits || *p)
        return -1;
    for (int k = fdigits; k < 3; k++)
        frac *= 10;
    *ms = sec * 1000 + frac;
    return 0;
}

static int printable(const char *s, int allow_comma)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || (*s == ',' && !allow_comma))
            return 0;
    return 1;
}

static const char *const roles[] = {"Viewer", "Editor", "Admin", "None"};

int bench_trace_parse_line(char *line, size_t len, struct bench_trace_fields *f, char *why,
                           size_t wsize)
{
    memset(f, 0, sizeof *f);
    if (len && line[len - 1] == '\r')
        line[--len] = 0;
    if (memchr(line, 0, len)) {
        snprintf(why, wsize, "NUL byte in the line");
        return CP_EINVAL;
    }
    size_t k = 0;
    while (k < len && (line[k] == ' ' || line[k] == '\t'))
        k++;
    if (k == len)
        return BENCH_LINE_BLANK;
    if (len > MAX_LINE) {
        snprintf(why, wsize, "line longer than %d bytes", MAX_LINE);
        return CP_EINVAL;
    }
    char *field[5];
    char *p = line;
    for (int i = 0; i < 4; i++) {
        char *comma = strchr(p, ',');
        if (!comma) {
            snprintf(why, wsize, "%d fields, expected 5: ts,user,role,method,path", i + 1);
            return CP_EINVAL;
        }
        *comma = 0;
        field[i] = trim(p);
        p = comma + 1;
    }
    field[4] = trim(p);
    if (!strcasecmp(field[0], "ts") && !strcasecmp(field[1], "user") &&
        !strcasecmp(field[2], "role") && !strcasecmp(field[3], "method") &&
        !strcasecmp(field[4], "path"))
        return BENCH_LINE_HEADER;

    if (parse_ts(field[0], &f->ts_ms) != 0) {
        snprintf(why, wsize,
                 "ts must be epoch seconds such as 1700000000 or 1700000000.250 (got "
                 "\"%.40s\")",
                 field[0]);
        return CP_EINVAL;
    }
    if (strlen(field[1]) > MAX_USER || !printable(field[1], 0)) {
        snprintf(why, wsize, "user must be at most %d printable ASCII characters without spaces",
                 MAX_USER);
        return CP_EINVAL;
    }
    f->role = NULL;
    if (!*field[2]) {
        f->role = "";
    } else {
        for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
            if (!strcasecmp(field[2], roles[i]))
                f->role = roles[i];
        if (!f->role) {
            snprintf(why, wsize,
                     "role must be Viewer, Editor, Admin, None or empty (got \"%.40s\")", field[2]);
            return CP_EINVAL;
        }
    }
    size_t ml = strlen(field[3]);
    int letters = ml > 0 && ml <= MAX_METHOD;
    for (size_t i = 0; i < ml && letters; i++)
        letters = isalpha((unsigned char)field[3][i]) != 0;
    if (!letters) {
        snprintf(why, wsize, "method must be 1 to %d letters such as GET or QUERY (got \"%.40s\")",
                 MAX_METHOD, field[3]);
        return CP_EINVAL;
    }
    for (size_t i = 0; i < ml; i++)
        field[3][i] = (char)toupper((unsigned char)field[3][i]);
    if (field[4][0] != '/' || strlen(field[4]) > MAX_PATH || !printable(field[4], 1)) {
        snprintf(why, wsize,
                 "path must start with '/' and be at most %d printable ASCII characters without "
                 "spaces (got \"%.40s\")",
                 MAX_PATH, field[4]);
        return CP_EINVAL;
    }
    f->user = field[1];
    f->method = field[3];
    f->path = field[4];
    return BENCH_LINE_RECORD;
}

/* ---- whole traces ------------------------------------------------------------------------- */

static int cmp_rec(const void *a, const void *b)
{
    const struct bench_trace_rec *x = a, *y = b;
    if (x->ts_ms != y->ts_ms)
        return x->ts_ms < y->ts_ms ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq); /* stable */
}

static int add_rec(struct bench_trace *t, size_t *cap, const struct bench_trace_fields *f)
{
    if (t->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        struct bench_trace_rec *nr = realloc(t->recs, nc * sizeof *nr);
        if (!nr)
            return CP_ENOMEM;
        t->recs = nr;
        *cap = nc;
    }
    struct bench_trace_rec *r = &t->recs[t->n];
    r->ts_ms = f->ts_ms;
    r->seq = t->n;
    r->user = intern(t->strings, f->user, strlen(f->user));
    r->role = intern(t->strings, f->role, strlen(f->role));
    r->method = intern(t->strings, f->method, strlen(f->method));
    r->path = intern(t->strings, f->path, strlen(f->path));
    if (!r->user || !r->role || !r->method || !r->path)
        return CP_ENOMEM;
    t->n++;
    return 0;
}

int bench_trace_read(FILE *in, const char *name, struct bench_trace **out, struct cp_err *err)
{
    *out = NULL;
    struct bench_trace *t = calloc(1, sizeof *t);
    if (!t || !(t->strings = calloc(1, sizeof *t->strings))) {
        free(t);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    char *line = NULL;
    size_t lcap = 0, cap = 0;
    ssize_t got;
    uint64_t lineno = 0;
    int rc = 0, seen_content = 0;
    while (!rc && (got = getline(&line, &lcap, in)) >= 0) {
        lineno++;
        int complete = got > 0 && line[got - 1] == '\n';
        size_t len = (size_t)got - (complete ? 1 : 0);
        line[len] = 0;
        struct bench_trace_fields f;
        char why[200];
        int kind = bench_trace_parse_line(line, len, &f, why, sizeof why);
        if (kind == BENCH_LINE_BLANK)
            continue;
        if (kind == BENCH_LINE_HEADER && seen_content) {
            kind = CP_EINVAL;
            snprintf(why, sizeof why, "a header line is only allowed first");
        }
        if (kind < 0 && !complete) {
            t->ignored++; /* cut short by a recorder that was still writing */
            break;
        }
        seen_content = 1;
        if (kind < 0)
            rc = cp_err_set(err, CP_EINVAL, "%s:%llu: %s", name, (unsigned long long)lineno, why);
        else if (kind == BENCH_LINE_RECORD && add_rec(t, &cap, &f))
            rc = cp_err_set(err, CP_ENOMEM, "%s:%llu: out of memory", name,
                            (unsigned long long)lineno);
    }
    if (!rc && ferror(in))
        rc = cp_err_set(err, CP_EINVAL, "%s: read error after line %llu", name,
                        (unsigned long long)lineno);
    free(line);
    if (!rc && t->n == 0)
        rc = cp_err_set(err, CP_EINVAL, "%s: no requests (expected lines ts,user,role,method,path)",
                        name);
    if (rc) {
        bench_trace_free(t);
        return rc;
    }
    int sorted = 1;
    for (size_t i = 1; i < t->n && sorted; i++)
        sorted = t->recs[i - 1].ts_ms <= t->recs[i].ts_ms;
    if (!sorted)
        qsort(t->recs, t->n, sizeof *t->recs, cmp_rec);
    *out = t;
    return 0;
}

int bench_trace_load(const char *path, struct bench_trace **out, struct cp_err *err)
{
    if (!strcmp(path, "-"))
        return bench_trace_read(stdin, "(stdin)", out, err);
    FILE *f = fopen(path, "r");
    if (!f) {
        *out = NULL;
        return cp_err_set(err, CP_EINVAL, "%s: %s", path, strerror(errno));
    }
    int rc = bench_trace_read(f, path, out, err);
    fclose(f);
    return rc;
}

void bench_trace_free(struct bench_trace *t)
{
    if (!t)
        return;
    strings_free(t->strings);
    free(t->recs);
    free(t);
}

void bench_trace_write_header(FILE *f)
{
    fputs("ts,user,role,method,path\n", f);
}

void bench_trace_write(FILE *f, int64_t ts_ms, const char *user, const char *role,
                       const char *method, const char *path)
{
    if (ts_ms % 1000)
        fprintf(f, "%lld.%03lld,", (long long)(ts_ms / 1000), (long long)(ts_ms % 1000));
    else
        fprintf(f, "%lld,", (long long)(ts_ms / 1000));
    fprintf(f, "%s,%s,%s,%s\n", user ? user : "", role ? role : "", method, path);
}
