/*
 * html.c - the report as one self-contained HTML page: the bench's JSON document in a
 * script#bench-data element, Chart.js (from npm, bench/web/package.json) and the page's own
 * script (bench/web/report.js) inlined, so the file opens offline and can be mailed around.
 * Both scripts are read at report time from the web directory the bench was built with, or
 * the one given; the JSON is written with "/" escaped so it cannot close its element.
 */
#include "bench_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SCRIPT (8u << 20)

static const char page_head[] =
    "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>cachingproxy-bench</title>\n<style>\n"
    "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;"
    "background:#fafafa}\n"
    "header,main,#notes,footer{max-width:1200px;margin:0 auto;padding:0 24px}\n"
    "h1{font-size:22px;margin:20px 0 4px}h2{font-size:17px;margin:28px 0 4px}\n"
    "#meta,.note,footer{color:#666}.note{margin:0 0 8px}.empty{color:#999;font-style:italic}\n"
    "table{border-collapse:collapse;background:#fff;margin:8px 0}\n"
    "th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f0f0f0}\n"
    "td:first-child,th:first-child{text-align:left}\n"
    ".chart{position:relative;height:300px;background:#fff;border:1px solid #e4e4e4;"
    "padding:8px;margin:8px 0}\n"
    ".row{display:flex;gap:16px}.row .chart{flex:1;min-width:0}\n"
    "footer{margin:24px auto;font-size:12px}\n"
    "</style>\n</head>\n<body>\n<header><h1 id=\"title\">cachingproxy-bench</h1>"
    "<p id=\"meta\"></p></header>\n<main id=\"main\"></main>\n<ul id=\"notes\"></ul>\n"
    "<footer>Made by cachingproxy-bench; charts drawn with Chart.js (MIT licence), inlined in "
    "this page.</footer>\n";

/* A whole file, refused when it could end the script element it goes into. */
static char *read_script(const char *path, const char *what, struct cp_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cp_err_set(err, CP_EINVAL,
                   "the HTML report needs %s: %s: %s (run `npm ci` in bench/web, as "
                   ".ci/bootstrap does, or give --web-dir / --chartjs)",
                   what, path, strerror(errno));
        return NULL;
    }
    struct cp_buf b = {0};
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = b.len + n > MAX_SCRIPT ? CP_ETOOBIG : cp_buf_add(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (!rc && !bad)
        rc = cp_buf_add(&b, "", 1); /* NUL for the scan below */
    if (rc || bad) {
        cp_buf_free(&b);
        cp_err_set(err, CP_EINVAL, "%s: %s", path, bad ? "read error" : "too large");
        return NULL;
    }
    for (const char *p = b.p; (p = strchr(p, '<')); p++)
        if (!strncasecmp(p, "</script", 8)) {
            cp_buf_free(&b);
            cp_err_set(err, CP_EINVAL, "%s holds \"</script\": it cannot be inlined", path);
            return NULL;
        }
    size_t len;
    return cp_buf_take(&b, &len);
}

int bench_html_write(json_t *doc, const struct bench_web *web, const char *out, struct cp_err *err)
{
    const char *dir = web->dir && *web->dir ? web->dir : BENCH_WEB_DIR;
    char chart_path[4096], script_path[4096];
    if (web->chartjs && *web->chartjs)
        snprintf(chart_path, sizeof chart_path, "%s", web->chartjs);
    else
        snprintf(chart_path, sizeof chart_path, "%s/node_modules/chart.js/dist/chart.umd.min.js",
                 dir);
    snprintf(script_path, sizeof script_path, "%s/report.js", dir);
    char *lib = read_script(chart_path, "Chart.js", err);
    char *mine = lib ? read_script(script_path, "its script", err) : NULL;
    char *data = mine ? json_dumps(doc, JSON_COMPACT | JSON_ESCAPE_SLASH | JSON_PRESERVE_ORDER |
                                            JSON_REAL_PRECISION(10))
                      : NULL;
    int rc = 0;
    if (!lib || !mine) {
        rc = err->code;
    } else if (!data) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    } else {
        FILE *f = fopen(out, "w");
        if (!f) {
            rc = cp_err_set(err, CP_EINVAL, "%s: %s", out, strerror(errno));
        } else {
            fputs(page_head, f);
            fprintf(f, "<script type=\"application/json\" id=\"bench-data\">%s</script>\n", data);
            fprintf(f, "<script>\n%s\n</script>\n<script>\n%s\n</script>\n</body>\n</html>\n", lib,
                    mine);
            int bad = ferror(f);
            bad |= fclose(f) != 0;
            if (bad)
                rc = cp_err_set(err, CP_EINVAL, "%s: write failed", out);
        }
    }
    free(lib);
    free(mine);
    free(data);
    return rc;
}
