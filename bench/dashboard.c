/*
 * dashboard.c - a dashboard that many users keep open with an auto-refresh, as a trace of
 * queries on a virtual clock, and where that clock stands against the wall clock for a split
 * run.
 *
 * The costly pattern split queries answer is "the last 6 hours, refresh every 30 s" kept open
 * by many users. Measuring it in real time takes as long as it lasts, so the preset replays
 * the dashboard's queries faster than they happen: each record's time is the dashboard's
 * "now", and the workload (trace_clock) ends each query's range there. Every time the plugin
 * derives from the range (timeAlign steps, split pieces, their keys) is then virtual time;
 * lifetimes are wall-clock time, so the preset divides them by the speed-up.
 *
 * One thing the plugin decides on its own wall clock: a piece is stable (kept for
 * querySplitTtl) when it ended splitStableAfter before the wall clock's now. The virtual
 * window is placed so that this test agrees with the virtual clock: it starts 10 minutes past
 * an hour H, in the past; splitStableAfter is set to 10 minutes plus the distance from that
 * start to the wall clock, so the plugin's line between stable and recent pieces is H, which
 * is exactly "10 minutes before the dashboard's now" at the start. The line stays at H while
 * the run lasts (the wall clock barely moves), while the virtual line moves from H to
 * H + 10 min over a window of 10 minutes. No piece ends between the two for intervals of 15
 * minutes or more that divide the hour or are whole hours (1h, 30m, 15m, ...): the piece
 * [H, H + 15 min) ends inside the window and stays recent to its end, as it would in real
 * time. A longer window would let pieces end there; hence 10 minutes.
 */
#include "bench_int.h"

#include <stdlib.h>
#include <string.h>

#define HOUR_MS 3600000LL
#define MINUTE_MS 60000LL

int64_t bench_split_start(int64_t wall_ms)
{
    int64_t hour = wall_ms / HOUR_MS * HOUR_MS; /* epoch ms is positive here */
    return hour - HOUR_MS + 10 * MINUTE_MS;
}

int64_t bench_split_stable_after(int64_t wall_ms, int64_t start_ms, int64_t stable_ms)
{
    return wall_ms - start_ms + stable_ms;
}

/* Writes the trace's CSV: per user, per refresh, one line per panel. */
static int write_trace(FILE *f, const struct bench_dashboard *d)
{
    uint64_t rng = d->seed * 0x9e3779b97f4a7c15ull + 0x5851f42d4c957f2dull;
    char user[24], path[96];
    bench_trace_write_header(f);
    for (uint32_t u = 0; u < d->users; u++) {
        /* users opened the dashboard at different moments: each has a phase of its own */
        int64_t phase = (int64_t)(bench_rand_unit(&rng) * (double)d->refresh_ms);
        snprintf(user, sizeof user, "user%04u", u);
        for (int64_t t = d->start_ms + phase; t < d->start_ms + d->span_ms; t += d->refresh_ms)
            for (uint32_t p = 0; p < d->panels; p++) {
                snprintf(path, sizeof path, "/q/panel%u?from=${__from}&to=${__to}", p);
                bench_trace_write(f, t, user, "Viewer", "QUERY", path);
            }
    }
    return ferror(f) ? -1 : 0;
}

int bench_dashboard_trace(const struct bench_dashboard *d, struct bench_trace **out,
                          struct cp_err *err)
{
    *out = NULL;
    if (!d->users || !d->panels || d->refresh_ms <= 0 || d->span_ms <= 0 || d->start_ms < 0)
        return cp_err_set(err, CP_EINVAL, "a dashboard needs users, panels, a refresh and a span");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    int bad = write_trace(f, d);
    bad |= fclose(f) != 0;
    int rc = bad ? cp_err_set(err, CP_ENOMEM, "out of memory") : 0;
    if (!rc) {
        FILE *in = fmemopen(buf, len, "r");
        rc = in ? bench_trace_read(in, "dashboard", out, err)
                : cp_err_set(err, CP_ENOMEM, "out of memory");
        if (in)
            fclose(in);
    }
    free(buf);
    return rc;
}
