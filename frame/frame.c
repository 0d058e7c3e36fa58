/*
 * frame.c - JSON answers into data frames (SPEC.md section 7): the root selector, explicit
 * columns or columns inferred from the rows, time parsing, and the table/timeseries shapes.
 */
#include "frame.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_INFERRED_COLUMNS 256
#define MAX_COLUMNS 256          /* a query's own "columns" list */
#define MAX_CELLS (4L << 20)     /* rows x columns of one frame (about 64 MiB being built) */

/* ---- selectors: "data.items", "items[0].points", "$", "$.a.b", "[1]" --------------------- */

json_t *frame_select(json_t *root, const char *sel)
{
    const char *s = sel ? sel : "";
    if (*s == '$')
        s++;
    json_t *cur = root;
    while (cur && *s) {
        if (*s == '.') {
            s++;
            continue;
        }
        if (*s == '[') {
            char *end;
            long i = strtol(s + 1, &end, 10);
            if (end == s + 1 || *end != ']' || i < 0 || !json_is_array(cur))
                return NULL;
            cur = json_array_get(cur, (size_t)i);
            s = end + 1;
            continue;
        }
        size_t n = strcspn(s, ".[");
        if (!json_is_object(cur))
            return NULL;
        char key[256];
        if (n >= sizeof key)
            return NULL;
        memcpy(key, s, n);
        key[n] = 0;
        cur = json_object_get(cur, key);
        s += n;
    }
    return cur;
}

/* A selector for a row: object key path, or an index into an array row ("0", "[0]"). */
static json_t *select_in_row(json_t *row, const char *sel)
{
    if (json_is_array(row)) {
        const char *s = sel;
        if (*s == '[')
            s++;
        char *end;
        long i = strtol(s, &end, 10);
        if (end != s && (*end == 0 || (*end == ']' && end[1] == 0)) && i >= 0)
            return json_array_get(row, (size_t)i);
    }
    return frame_select(row, sel);
}

/* ---- time ------------------------------------------------------------------------------------ */

/* Parses RFC 3339 ("2026-01-02T03:04:05.123456789Z", "+02:00" offsets, space separator
 * accepted, date-only accepted) into nanoseconds since the epoch. */
int frame_parse_rfc3339(const char *s, int64_t *ns)
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return CP_EINVAL;
    const char *p = s + 10;
    int64_t frac = 0;
    int64_t off = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d:%2d%n", &h, &mi, &se, &m) != 3 || m != 8)
            return CP_EINVAL;
        p += 9;
        if (*p == '.') {
            int digits = 0;
            p++;
            while (isdigit((unsigned char)*p)) {
                if (digits < 9) {
                    frac = frac * 10 + (*p - '0');
                    digits++;
                }
                p++;
            }
            if (!digits)
                return CP_EINVAL;
            while (digits++ < 9)
                frac *= 10;
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int oh, om, k = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
                return CP_EINVAL;
            off = ((int64_t)oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
            p += 6;
        } else if (*p) {
            return CP_EINVAL;
        }
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return CP_EINVAL;
    if (y < 1678 || y > 2261) /* int64 nanoseconds span 1677..2262 */
        return CP_EINVAL;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    *ns = ((int64_t)t - off) * 1000000000LL + frac;
    return 0;
}

enum time_format { TF_AUTO, TF_UNIXMS, TF_UNIXS, TF_RFC3339 };

/* x units of `per` nanoseconds each, without losing the fraction to double rounding:
 * 1700000000.25 s is exactly ...250000000 ns. */
static int units_to_ns(double x, int64_t per, int64_t *ns)
{
    double whole = floor(x);
    if (!isfinite(x) || fabs(whole) * (double)per > 9.2e18)
        return 0;
    *ns = (int64_t)whole * per + (int64_t)llround((x - whole) * (double)per);
    return 1;
}

/* A JSON value as a time (ns); 0 when it cannot be one. */
static int to_time(json_t *v, enum time_format tf, int64_t *ns)
{
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if (!isfinite(x))
            return 0;
        if (tf == TF_RFC3339)
            return 0;
        /* automatic: values above 1e11 are milliseconds (1e11 s is the year 5138) */
        int ms = tf == TF_UNIXMS || (tf == TF_AUTO && fabs(x) >= 1e11);
        return units_to_ns(x, ms ? 1000000 : 1000000000, ns);
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (tf == TF_UNIXMS || tf == TF_UNIXS) {
            char *end;
            double x = strtod(s, &end);
            if (end == s || *end || !isfinite(x))
                return 0;
            return units_to_ns(x, tf == TF_UNIXMS ? 1000000 : 1000000000, ns);
        }
        return frame_parse_rfc3339(s, ns) == 0;
    }
    return 0;
}

/* ---- columns --------------------------------------------------------------------------------- */

struct colspec {
    char *selector;
    char *name;
    enum frame_type type;
    enum time_format tf;
    int explicit_type;
};

static int looks_like_time_key(const char *k)
{
    static const char *const names[] = {"time", "timestamp", "ts", "date", "datetime",
                                        "created_at", "updated_at", "_time", "@timestamp"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(k, names[i]))
            return 1;
    return 0;
}

/* Infers a column's type from its non-null values. */
static void infer_type(json_t *rows, struct colspec *c)
{
    int nums = 0, ints = 0, strs = 0, bools = 0, times = 0, other = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *v = select_in_row(row, c->selector);
        int64_t ns;
        if (!v || json_is_null(v))
            continue;
        if (json_is_integer(v))
            ints++, nums++;
        else if (json_is_real(v))
            nums++;
        else if (json_is_boolean(v))
            bools++;
        else if (json_is_string(v)) {
            strs++;
            if (frame_parse_rfc3339(json_string_value(v), &ns) == 0)
                times++;
        } else
            other++;
    }
    int total = nums + strs + bools + other;
    c->tf = TF_AUTO;
    if (total == 0)
        c->type = FRAME_STRING;
    else if (nums == total)
        c->type = looks_like_time_key(c->name) ? FRAME_TIME : ints == total ? FRAME_INT64 : FRAME_FLOAT64;
    else if (bools == total)
        c->type = FRAME_BOOL;
    else if (strs == total && times == strs)
        c->type = FRAME_TIME;
    else
        c->type = FRAME_STRING;
}

static int add_col(struct colspec **cols, size_t *n, const char *sel, const char *name)
{
    struct colspec *nc = realloc(*cols, (*n + 1) * sizeof *nc);
    if (!nc)
        return CP_ENOMEM;
    *cols = nc;
    memset(&nc[*n], 0, sizeof *nc);
    nc[*n].selector = strdup(sel);
    nc[*n].name = strdup(name);
    (*n)++;
    return nc[*n - 1].selector && nc[*n - 1].name ? 0 : CP_ENOMEM;
}

static void free_cols(struct colspec *cols, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cols[i].selector);
        free(cols[i].name);
    }
    free(cols);
}

/* Columns from the query's "columns" list; CP_EINVAL with err naming the entry. */
static int explicit_columns(json_t *jcols, struct colspec **cols, size_t *n, struct cp_err *err)
{
    size_t i;
    json_t *jc;
    if (json_array_size(jcols) > MAX_COLUMNS)
        return cp_err_set(err, CP_EINVAL, "columns: at most %d", MAX_COLUMNS);
    json_array_foreach(jcols, i, jc)
    {
        if (!json_is_object(jc))
            return cp_err_set(err, CP_EINVAL, "columns[%zu] must be an object", i);
        json_t *sel = json_object_get(jc, "selector");
        json_t *name = json_object_get(jc, "name");
        json_t *type = json_object_get(jc, "type");
        json_t *tf = json_object_get(jc, "timeFormat");
        if (!json_is_string(sel) || !*json_string_value(sel))
            return cp_err_set(err, CP_EINVAL, "columns[%zu].selector must be a string", i);
        if (name && !json_is_string(name))
            return cp_err_set(err, CP_EINVAL, "columns[%zu].name must be a string", i);
        if (type && !json_is_string(type))
            return cp_err_set(err, CP_EINVAL, "columns[%zu].type must be a string", i);
        if (tf && !json_is_string(tf))
            return cp_err_set(err, CP_EINVAL, "columns[%zu].timeFormat must be a string", i);
        if (add_col(cols, n, json_string_value(sel),
                    name ? json_string_value(name) : json_string_value(sel)))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        struct colspec *c = &(*cols)[*n - 1];
        c->tf = TF_AUTO;
        if (tf) {
            const char *t = json_string_value(tf);
            c->tf = !strcmp(t, "unixms")    ? TF_UNIXMS
                    : !strcmp(t, "unixs")   ? TF_UNIXS
                    : !strcmp(t, "rfc3339") ? TF_RFC3339
                                            : (enum time_format)-1;
            if ((int)c->tf < 0)
                return cp_err_set(err, CP_EINVAL,
                                  "columns[%zu].timeFormat must be unixms, unixs or rfc3339", i);
        }
        if (type) {
            const char *t = json_string_value(type);
            c->explicit_type = 1;
            if (!strcmp(t, "time"))
                c->type = FRAME_TIME;
            else if (!strcmp(t, "number"))
                c->type = FRAME_FLOAT64;
            else if (!strcmp(t, "string"))
                c->type = FRAME_STRING;
            else if (!strcmp(t, "boolean"))
                c->type = FRAME_BOOL;
            else
                return cp_err_set(err, CP_EINVAL,
                                  "columns[%zu].type must be time, number, string or boolean", i);
        } else if (tf) {
            c->type = FRAME_TIME;
            c->explicit_type = 1;
        }
    }
    return 0;
}

/* Columns from the rows: keys of object rows in order of first appearance, or indices of
 * array rows. */
static int inferred_columns(json_t *rows, struct colspec **cols, size_t *n, struct cp_err *err)
{
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if (json_is_object(row)) {
            const char *k;
            json_t *v;
            json_object_foreach(row, k, v)
            {
                (void)v;
                size_t c;
                for (c = 0; c < *n; c++)
                    if (!strcmp((*cols)[c].selector, k))
                        break;
                if (c < *n)
                    continue;
                if (*n >= MAX_INFERRED_COLUMNS)
                    return cp_err_set(err, CP_EINVAL, "rows have more than %d distinct keys: "
                                                      "list the wanted columns",
                                      MAX_INFERRED_COLUMNS);
                /* keys holding '.' or '[' cannot be selectors: skip them */
                if (strpbrk(k, ".[") || add_col(cols, n, k, k))
                    continue;
            }
        } else if (json_is_array(row)) {
            for (size_t c = *n; c < json_array_size(row) && c < MAX_INFERRED_COLUMNS; c++) {
                char idx[24];
                snprintf(idx, sizeof idx, "%zu", c);
                if (add_col(cols, n, idx, idx))
                    return cp_err_set(err, CP_ENOMEM, "out of memory");
            }
        } else if (!json_is_null(row)) {
            /* a list of scalars: one column named "value" */
            if (*n == 0 && add_col(cols, n, "$", "value"))
                return cp_err_set(err, CP_ENOMEM, "out of memory");
        }
    }
    for (size_t c = 0; c < *n; c++)
        infer_type(rows, &(*cols)[c]);
    return 0;
}

/* ---- building --------------------------------------------------------------------------------- */

static int fill_field(struct frame_field *f, const struct colspec *c, json_t *rows, size_t n)
{
    f->name = strdup(c->name);
    f->type = c->type;
    f->n = n;
    f->valid = calloc(n ? n : 1, 1);
    if (!f->name || !f->valid)
        return CP_ENOMEM;
    switch (c->type) {
    case FRAME_TIME:
    case FRAME_INT64:
        f->i64 = calloc(n ? n : 1, sizeof *f->i64);
        break;
    case FRAME_FLOAT64:
        f->f64 = calloc(n ? n : 1, sizeof *f->f64);
        break;
    case FRAME_BOOL:
        f->b = calloc(n ? n : 1, 1);
        break;
    case FRAME_STRING:
        f->s = calloc(n ? n : 1, sizeof *f->s);
        break;
    }
    if (!f->i64 && !f->f64 && !f->b && !f->s)
        return CP_ENOMEM;
    size_t nulls = 0;
    for (size_t r = 0; r < n; r++) {
        json_t *row = c->selector[0] == '$' && !c->selector[1] ? json_array_get(rows, r)
                                                                : select_in_row(json_array_get(rows, r),
                                                                                c->selector);
        int ok = 0;
        if (row && !json_is_null(row)) {
            switch (c->type) {
            case FRAME_TIME:
                ok = to_time(row, c->tf, &f->i64[r]);
                break;
            case FRAME_INT64:
                if (json_is_integer(row)) {
                    f->i64[r] = json_integer_value(row);
                    ok = 1;
                }
                break;
            case FRAME_FLOAT64:
                if (json_is_number(row)) {
                    f->f64[r] = json_number_value(row);
                    ok = 1;
                } else if (json_is_string(row)) {
                    char *end;
                    const char *s = json_string_value(row);
                    double v = strtod(s, &end);
                    if (end != s && !*end) { /* numbers sent as strings ("1.5") */
                        f->f64[r] = v;
                        ok = 1;
                    }
                }
                break;
            case FRAME_BOOL:
                if (json_is_boolean(row)) {
                    f->b[r] = json_is_true(row);
                    ok = 1;
                }
                break;
            case FRAME_STRING:
                if (json_is_string(row))
                    f->s[r] = strdup(json_string_value(row));
                else
                    f->s[r] = json_dumps(row, JSON_COMPACT | JSON_ENCODE_ANY);
                ok = f->s[r] != NULL;
                break;
            }
        }
        f->valid[r] = (uint8_t)ok;
        nulls += !ok;
    }
    f->nullable = 1; /* JSON values may be missing in any row */
    if (!nulls) {
        free(f->valid);
        f->valid = NULL;
    }
    return 0;
}

/* Orders row indices by time, ties by arrival (a stable order). */
static int cmp_rows(const void *a, const void *b, void *ctx)
{
    const int64_t *t = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (t[x] != t[y])
        return t[x] < t[y] ? -1 : 1;
    return (x > y) - (x < y);
}

int frame_sort_time(struct frame *fr)
{
    size_t n = fr->nrows;
    int tf = frame_time_field(fr);
    if (n < 2 || tf < 0)
        return 0;
    size_t *ord = malloc(n * sizeof *ord);
    void *tmp = malloc(n * sizeof(int64_t));
    if (!ord || !tmp) {
        free(ord);
        free(tmp);
        return CP_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        ord[i] = i;
    qsort_r(ord, n, sizeof *ord, cmp_rows, fr->fields[tf].i64);
    for (size_t f = 0; f < fr->nfields; f++) {
        struct frame_field *fl = &fr->fields[f];
#define PERMUTE(arr, type)                                                                     \
    if (fl->arr) {                                                                             \
        type *t = tmp;                                                                         \
        for (size_t i = 0; i < n; i++)                                                         \
            t[i] = fl->arr[ord[i]];                                                            \
        memcpy(fl->arr, t, n * sizeof *t);                                                     \
    }
        PERMUTE(i64, int64_t)
        PERMUTE(f64, double)
        PERMUTE(b, uint8_t)
        PERMUTE(s, char *)
        PERMUTE(valid, uint8_t)
#undef PERMUTE
    }
    free(ord);
    free(tmp);
    return 0;
}

int frame_from_json(json_t *doc, json_t *model, const char *ref_id, const char *cache_result,
                         struct frame *fr, struct cp_err *err)
{
    memset(fr, 0, sizeof *fr);
    json_t *jroot = json_object_get(model, "root");
    json_t *jcols = json_object_get(model, "columns");
    json_t *jfmt = json_object_get(model, "format");
    if (json_is_null(jroot))
        jroot = NULL;
    if (jroot && !json_is_string(jroot))
        return cp_err_set(err, CP_EINVAL, "root must be a string selector such as data.items");
    if (jcols && !json_is_null(jcols) && !json_is_array(jcols))
        return cp_err_set(err, CP_EINVAL, "columns must be a list");
    if (jfmt && !json_is_null(jfmt) && !json_is_string(jfmt))
        return cp_err_set(err, CP_EINVAL, "format must be table or timeseries");
    const char *fmt = json_is_string(jfmt) ? json_string_value(jfmt) : "table";
    int timeseries = !strcmp(fmt, "timeseries");
    if (!timeseries && strcmp(fmt, "table"))
        return cp_err_set(err, CP_EINVAL, "format must be table or timeseries");

    json_t *rows = frame_select(doc, jroot ? json_string_value(jroot) : "$");
    json_t *wrapped = NULL;
    if (!rows)
        return cp_err_set(err, CP_EINVAL, "root \"%.100s\" selects nothing in the answer",
                          jroot ? json_string_value(jroot) : "$");
    if (json_is_object(rows)) { /* a single object is one row */
        wrapped = json_array();
        json_array_append(wrapped, rows);
        rows = wrapped;
    }
    if (!json_is_array(rows)) {
        json_decref(wrapped);
        return cp_err_set(err, CP_EINVAL, "root \"%.100s\" does not select a list of rows",
                          jroot ? json_string_value(jroot) : "$");
    }
    struct colspec *cols = NULL;
    size_t ncols = 0;
    int rc = jcols && json_is_array(jcols) && json_array_size(jcols)
                 ? explicit_columns(jcols, &cols, &ncols, err)
                 : inferred_columns(rows, &cols, &ncols, err);
    if (!rc)
        for (size_t c = 0; c < ncols; c++)
            if (!cols[c].explicit_type && jcols && json_array_size(jcols))
                infer_type(rows, &cols[c]);
    if (!rc && timeseries) {
        /* the first time column goes first */
        size_t t;
        for (t = 0; t < ncols && cols[t].type != FRAME_TIME; t++)
            ;
        if (t == ncols) {
            rc = cp_err_set(err, CP_EINVAL, "format timeseries needs a time column (name it "
                                            "time or give it type time)");
        } else if (t) {
            struct colspec tmp = cols[t];
            memmove(&cols[1], &cols[0], t * sizeof *cols);
            cols[0] = tmp;
        }
    }
    if (!rc && ncols && json_array_size(rows) > (size_t)MAX_CELLS / ncols)
        rc = cp_err_set(err, CP_EINVAL,
                        "the frame would have %zu rows of %zu columns, more than %ld cells: "
                        "select fewer rows (root, the API's own parameters) or columns",
                        json_array_size(rows), ncols, (long)MAX_CELLS);
    if (!rc) {
        size_t n = json_array_size(rows);
        fr->nrows = n;
        fr->nfields = ncols;
        fr->fields = calloc(ncols ? ncols : 1, sizeof *fr->fields);
        fr->name = strdup(ref_id);
        fr->ref_id = strdup(ref_id);
        /* a time series frame with string columns is in long form (one row per series and
         * time); without them it is wide */
        int has_strings = 0;
        for (size_t c = 0; c < ncols; c++)
            has_strings |= cols[c].type == FRAME_STRING;
        const char *type = !timeseries ? "table" : has_strings ? "timeseries-long"
                                                              : "timeseries-wide";
        json_t *meta = json_pack("{s:s,s:[i,i],s:{s:s}}", "type", type, "typeVersion", 0, 0,
                                 "custom", "cache", cache_result);
        fr->meta_json = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
        json_decref(meta);
        if (!fr->fields || !fr->name || !fr->ref_id || !fr->meta_json)
            rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        for (size_t c = 0; c < ncols && !rc; c++)
            if (fill_field(&fr->fields[c], &cols[c], rows, n))
                rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        if (!rc && timeseries) {
            if (fr->fields[0].valid) { /* rows without a time cannot be placed */
                rc = cp_err_set(err, CP_EINVAL,
                                "format timeseries: some rows have no valid time in \"%.60s\"",
                                fr->fields[0].name);
            } else {
                fr->fields[0].nullable = 0;
                if (frame_sort_time(fr))
                    rc = cp_err_set(err, CP_ENOMEM, "out of memory");
            }
        }
    }
    free_cols(cols, ncols);
    json_decref(wrapped);
    if (rc)
        frame_dispose(fr);
    return rc;
}

int frame_set_cache(struct frame *fr, const char *cache_result)
{
    json_error_t je;
    json_t *meta = fr->meta_json ? json_loads(fr->meta_json, 0, &je) : json_object();
    json_t *custom = json_object_get(meta, "custom");
    if (!json_is_object(custom)) {
        custom = json_object();
        json_object_set_new(meta, "custom", custom);
    }
    json_object_set_new(custom, "cache", json_string(cache_result));
    char *text = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_decref(meta);
    if (!text)
        return CP_ENOMEM;
    free(fr->meta_json);
    fr->meta_json = text;
    return 0;
}
