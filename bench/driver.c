/*
 * driver.c - the table of modes a workload can drive. A mode is one const struct bench_driver
 * in a file of its own (open, worker_new, request, worker_free, stats, close); adding one is a
 * new file and a line here. `grpc` launches the plugin as Grafana does; `http` drives the
 * standalone server (`gpx_cachingproxy serve`). Also what the drivers share: the cache outcomes'
 * names and the reading of `cache/stats`.
 */
#include "bench_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct bench_driver *const drivers[] = {&bench_driver_grpc, &bench_driver_http,
                                                     NULL};

const struct bench_driver *bench_driver_find(const char *name)
{
    for (size_t i = 0; drivers[i]; i++)
        if (!strcmp(drivers[i]->name, name))
            return drivers[i];
    return NULL;
}

static const char *const cache_names[BENCH_CACHE_N] = {"none",   "HIT",         "MISS",   "STALE",
                                                       "BYPASS", "REVALIDATED", "PARTIAL"};

const char *bench_cache_name(enum bench_cache c)
{
    return (unsigned)c < BENCH_CACHE_N ? cache_names[c] : "none";
}

enum bench_cache bench_cache_parse(const char *s)
{
    for (int c = 1; c < BENCH_CACHE_N; c++)
        if (!strcasecmp(s, cache_names[c]))
            return (enum bench_cache)c;
    return BENCH_CACHE_NONE;
}

/* ---- what every driver reads the same way ------------------------------------------------------ */

static uint64_t num(json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

void bench_target_stats_read(json_t *j, struct bench_target_stats *st)
{
    st->hits = num(j, "hits");
    st->misses = num(j, "misses");
    st->stale = num(j, "stale");
    st->revalidated = num(j, "revalidated");
    st->bypass = num(j, "bypass");
    st->coalesced = num(j, "coalesced");
    st->upstream = num(j, "upstreamRequests");
    st->errors = num(j, "errors");
    st->entries = num(j, "entries");
    st->bytes = num(j, "bytes");
    json_t *pieces = json_object_get(j, "splitPieces");
    st->pieces_hit = num(pieces, "hit");
    st->pieces_fetched = num(pieces, "fetched");
    st->valid = 1;
}

int bench_stats_parse(const void *body, size_t len, long status, struct bench_target_stats *st,
                      struct cp_err *err)
{
    json_error_t je;
    json_t *j = status == 200 && body ? json_loadb(body, len, 0, &je) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return cp_err_set(err, CP_EUPSTREAM, "cache/stats: HTTP %ld, not a JSON object", status);
    }
    bench_target_stats_read(j, st);
    json_decref(j);
    return 0;
}

long bench_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}
