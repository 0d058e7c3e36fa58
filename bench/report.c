/*
 * report.c - output of cachingproxy-bench: compact text tables (first column left-aligned,
 * figures right-aligned, notes under the table), percentiles from sorted samples, and the
 * JSON document printed by --json. The scenarios in bench.c decide what goes in; this file
 * only lays it out.
 */
#include "bench_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

struct bench_table {
    char *title;
    char **cols;
    size_t ncols;
    char ***rows;
    size_t nrows;
    char **notes;
    size_t nnotes;
};

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

struct bench_table *bench_table_new(const char *title, const char *const *cols, size_t ncols)
{
    struct bench_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->title = dup_or_empty(title);
    t->cols = calloc(ncols, sizeof *t->cols);
    t->ncols = ncols;
    for (size_t i = 0; t->cols && i < ncols; i++)
        t->cols[i] = dup_or_empty(cols[i]);
    return t;
}

void bench_table_row(struct bench_table *t, const char *const *cells)
{
    if (!t)
        return;
    char ***nr = realloc(t->rows, (t->nrows + 1) * sizeof *nr);
    if (!nr)
        return;
    t->rows = nr;
    char **row = calloc(t->ncols, sizeof *row);
    if (!row)
        return;
    for (size_t i = 0; i < t->ncols; i++)
        row[i] = dup_or_empty(cells[i]);
    t->rows[t->nrows++] = row;
}

void bench_table_note(struct bench_table *t, const char *fmt, ...)
{
    if (!t)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **nn = realloc(t->notes, (t->nnotes + 1) * sizeof *nn);
    if (!nn)
        return;
    t->notes = nn;
    t->notes[t->nnotes++] = strdup(buf);
}

void bench_table_print(const struct bench_table *t, FILE *f)
{
    if (!t || !t->cols)
        return;
    size_t *w = calloc(t->ncols, sizeof *w);
    if (!w)
        return;
    for (size_t c = 0; c < t->ncols; c++) {
        w[c] = strlen(t->cols[c]);
        for (size_t r = 0; r < t->nrows; r++)
            if (t->rows[r][c] && strlen(t->rows[r][c]) > w[c])
                w[c] = strlen(t->rows[r][c]);
    }
    fprintf(f, "\n== %s ==\n", t->title);
    size_t total = 0;
    for (size_t c = 0; c < t->ncols; c++) {
        fprintf(f, c ? "  %*s" : "%-*s", (int)w[c], t->cols[c]);
        total += w[c] + (c ? 2 : 0);
    }
    fputc('\n', f);
    for (size_t i = 0; i < total; i++)
        fputc('-', f);
    fputc('\n', f);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++)
            fprintf(f, c ? "  %*s" : "%-*s", (int)w[c], t->rows[r][c] ? t->rows[r][c] : "");
        fputc('\n', f);
    }
    for (size_t i = 0; i < t->nnotes; i++)
        if (t->notes[i])
            fprintf(f, "  %s\n", t->notes[i]);
    free(w);
}

void bench_table_free(struct bench_table *t)
{
    if (!t)
        return;
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++)
            free(t->rows[r][c]);
        free(t->rows[r]);
    }
    for (size_t c = 0; t->cols && c < t->ncols; c++)
        free(t->cols[c]);
    for (size_t i = 0; i < t->nnotes; i++)
        free(t->notes[i]);
    free(t->rows);
    free(t->cols);
    free(t->notes);
    free(t->title);
    free(t);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *s, size_t n, double p)
{
    return (double)bench_percentile(s, n, p) / 1e6;
}

void bench_stats_fill(struct bench_stats *st, int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_i64);
    st->p50_ms = pct_ms(ns, n, 50);
    st->p90_ms = pct_ms(ns, n, 90);
    st->p95_ms = pct_ms(ns, n, 95);
    st->p99_ms = pct_ms(ns, n, 99);
    st->max_ms = n ? (double)ns[n - 1] / 1e6 : 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    st->mean_ms = n ? sum / (double)n / 1e6 : 0;
}

static double round3(double v)
{
    return (double)(long long)(v * 1000.0 + (v >= 0 ? 0.5 : -0.5)) / 1000.0;
}

json_t *bench_stats_json(const struct bench_stats *st)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I}", "calls", (json_int_t)st->calls,
                     "seconds", round3(st->secs), "calls_per_s", round3(st->rps), "p50_ms",
                     round3(st->p50_ms), "p90_ms", round3(st->p90_ms), "p99_ms", round3(st->p99_ms),
                     "max_ms", round3(st->max_ms), "mean_ms", round3(st->mean_ms), "bytes",
                     (json_int_t)st->bytes);
}

void bench_fmt_ms(char *out, size_t size, double ms)
{
    if (ms < 1)
        snprintf(out, size, "%.3f", ms);
    else if (ms < 100)
        snprintf(out, size, "%.2f", ms);
    else
        snprintf(out, size, "%.0f", ms);
}

void bench_fmt_rate(char *out, size_t size, double rps)
{
    snprintf(out, size, "%.0f", rps);
}

void bench_fmt_size(char *out, size_t size, size_t bytes)
{
    if (bytes >= (1u << 20) && bytes % (1u << 20) == 0)
        snprintf(out, size, "%zu MiB", bytes >> 20);
    else if (bytes >= 1024 && bytes % 1024 == 0)
        snprintf(out, size, "%zu KiB", bytes >> 10);
    else
        snprintf(out, size, "%zu B", bytes);
}

void bench_json_print(json_t *doc, FILE *f)
{
    json_dumpf(doc, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    fputc('\n', f);
}
