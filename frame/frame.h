/*
 * frame.h - Grafana data frames: built from JSON answers (a root selector, explicit or
 * inferred columns, time parsing, table and timeseries shapes), encoded as Arrow IPC files
 * (PROTOCOL.md section 4.5, our own writer) and as Grafana's data frame JSON (section 4.7).
 * Knows nothing of data sources or the pipeline.
 */
#ifndef CP_FRAME_H
#define CP_FRAME_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

/* ---- frames (frame.c builds them, arrow.c and framejson.c encode them) -------------------- */

enum frame_type { FRAME_TIME, FRAME_FLOAT64, FRAME_INT64, FRAME_STRING, FRAME_BOOL };

/* One column. Exactly one value array is used, by type; every array has n entries. */
struct frame_field {
    char *name;
    enum frame_type type;
    int nullable;      /* Arrow Field.nullable; a column with nulls must be nullable */
    size_t n;          /* rows */
    int64_t *i64;      /* FRAME_TIME: nanoseconds since the Unix epoch (UTC); FRAME_INT64 */
    double *f64;       /* FRAME_FLOAT64 */
    uint8_t *b;        /* FRAME_BOOL: 0 or 1 per row */
    char **s;          /* FRAME_STRING: UTF-8, NUL-terminated; NULL entry for a null row */
    uint8_t *valid;    /* 1 byte per row, 1 = valid; NULL = every row valid */
    char *config_json; /* optional Grafana FieldConfig JSON */
    char *labels_json; /* optional labels JSON object */
};

struct frame {
    char *name, *ref_id;
    char *meta_json; /* optional FrameMeta JSON */
    struct frame_field *fields;
    size_t nfields;
    size_t nrows;
};

/* Encodes one frame as a complete Arrow IPC file (PROTOCOL.md section 4.5) appended to out. */
int frame_arrow_encode(const struct frame *f, struct cp_buf *out);
/* Appends the frame in Grafana's data-frame JSON form (PROTOCOL.md section 4.7) to out. */
int frame_to_json(const struct frame *f, struct cp_buf *out);
/* The same with only some parts: schema only (a stream's initial data), data only (its
 * packets once the schema was sent), or both. */
enum { FRAME_JSON_SCHEMA = 1, FRAME_JSON_DATA = 2 };
int frame_to_json_parts(const struct frame *f, int parts, struct cp_buf *out);
/* Frees the contents of a frame (not the struct itself). */
void frame_dispose(struct frame *f);

/* JSON answers into frames (frame.c). */
/* Follows a selector ("data.items", "items[0].points", "$", "$.a") from root; borrowed or
 * NULL. */
json_t *frame_select(json_t *root, const char *sel);
/* RFC 3339 time into nanoseconds since the epoch; 0 or CP_EINVAL. */
int frame_parse_rfc3339(const char *s, int64_t *ns);
/* Builds the frame of one query from the upstream's JSON document and the query model (root,
 * columns, format). cache_result ("hit", "miss", ...) goes into meta.custom.cache. CP_EINVAL
 * with err for a model or answer that cannot make a frame. */
int frame_from_json(json_t *doc, json_t *model, const char *ref_id, const char *cache_result,
                    struct frame *fr, struct cp_err *err);

/* Sets meta.custom.cache of a built frame. */
int frame_set_cache(struct frame *fr, const char *cache_result);

/* ---- compact binary form and row operations (blob.c), for joining split queries ---------- */

/* Appends f in a compact binary form to out (0 or CP_ENOMEM). */
int frame_blob_encode(const struct frame *f, struct cp_buf *out);
/* Decodes a blob into f (which it owns after 0); CP_EINVAL for anything malformed or
 * truncated, CP_ENOMEM. */
int frame_blob_decode(const void *p, size_t n, struct frame *f);
/* Appends the rows of src to dst, matching fields by name: a field only one side has is null
 * in the other's rows (new fields go last), integers meeting floats become floats. CP_EINVAL
 * when a field has incompatible types on the two sides (*bad_field names it, dst unchanged);
 * CP_ENOMEM (dst then only fit for frame_dispose). */
int frame_append(struct frame *dst, const struct frame *src, const char **bad_field);
/* The index of the first time field, or -1. */
int frame_time_field(const struct frame *f);
/* Keeps the rows whose time (first time field) is valid and in [from_ns, to_ns). CP_EINVAL
 * for a frame with rows and no time field. */
int frame_keep_time(struct frame *f, int64_t from_ns, int64_t to_ns);
/* Sorts the rows by the first time field (stable); no time field: unchanged. */
int frame_sort_time(struct frame *fr);

#endif
