/*
 * bench_frames.c - how fast query answers become frames: the Arrow IPC encoder alone, and
 * the whole conversion of a JSON answer (parse, select, infer columns, build, encode), for a
 * 10-column frame (time, 6 numbers, 2 strings, 1 boolean).
 *
 *   cachingproxy-bench-frames [--rows N] [--seconds S] [--json]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static double now_s(void) { return (double)cp_mono_ns() / 1e9; }

/* A JSON document of n rows with ten keys, as an upstream would send it. */
static char *make_doc(size_t n)
{
    struct cp_buf b = {0};
    cp_buf_addstr(&b, "{\"data\":{\"items\":[");
    for (size_t i = 0; i < n; i++)
        cp_buf_addf(&b,
                    "%s{\"ts\":%lld,\"cpu\":%.3f,\"mem\":%.2f,\"load1\":%.2f,\"load5\":%.2f,"
                    "\"rx\":%zu,\"tx\":%zu,\"host\":\"web-%zu\",\"dc\":\"eu-%zu\",\"up\":%s}",
                    i ? "," : "", 1700000000000LL + (long long)i * 1000, (double)(i % 100) / 100,
                    (double)(i % 1000) * 1.5, (double)(i % 7) / 3, (double)(i % 11) / 5, i * 17,
                    i * 13, i % 50, i % 3, i % 9 ? "true" : "false");
    cp_buf_addstr(&b, "]}}");
    return cp_buf_take(&b, NULL);
}

int main(int argc, char **argv)
{
    size_t rows = 10000;
    double seconds = 2.0;
    int json_out = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json_out = 1;
    }
    char *text = make_doc(rows);
    json_error_t je;
    json_t *model = json_pack("{s:s,s:s}", "root", "data.items", "format", "timeseries");
    json_t *doc = json_loads(text, 0, &je);
    struct frame fr;
    struct cp_err err;
    if (!doc || frame_from_json(doc, model, "A", "miss", &fr, &err) != 0) {
        fprintf(stderr, "could not build the frame: %s\n", cp_err_text(&err));
        return 1;
    }

    /* 1. Arrow encoding alone */
    size_t bytes = 0, iters = 0;
    double t0 = now_s(), t;
    do {
        struct cp_buf out = {0};
        if (frame_arrow_encode(&fr, &out) != 0)
            return 1;
        bytes = out.len;
        cp_buf_free(&out);
        iters++;
    } while ((t = now_s() - t0) < seconds);
    double enc_rows = (double)(iters * rows) / t;
    double enc_mb = (double)(iters * bytes) / t / (1 << 20);

    /* 2. the whole conversion: parse, select, infer, build, encode */
    size_t iters2 = 0;
    t0 = now_s();
    do {
        json_t *d = json_loads(text, 0, &je);
        struct frame f2;
        struct cp_buf out = {0};
        if (!d || frame_from_json(d, model, "A", "miss", &f2, &err) != 0 ||
            frame_arrow_encode(&f2, &out) != 0)
            return 1;
        cp_buf_free(&out);
        frame_dispose(&f2);
        json_decref(d);
        iters2++;
    } while ((t = now_s() - t0) < seconds);
    double conv_rows = (double)(iters2 * rows) / t;

    if (json_out)
        printf("{\"rows\":%zu,\"columns\":10,\"frame_bytes\":%zu,\"arrow_encode_rows_per_s\":%.0f,"
               "\"arrow_encode_mib_per_s\":%.1f,\"json_to_arrow_rows_per_s\":%.0f}\n",
               rows, bytes, enc_rows, enc_mb, conv_rows);
    else
        printf("10-column frame of %zu rows (%zu bytes of Arrow):\n"
               "  Arrow encode:              %12.0f rows/s  (%.1f MiB/s)\n"
               "  JSON answer -> Arrow frame: %11.0f rows/s  (parse, select, infer, build, "
               "encode)\n",
               rows, bytes, enc_rows, enc_mb, conv_rows);
    frame_dispose(&fr);
    json_decref(doc);
    json_decref(model);
    free(text);
    return 0;
}
