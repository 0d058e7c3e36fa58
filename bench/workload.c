/*
 * workload.c - runs a workload through a driver and measures it.
 *
 * Requests come from a synthetic generator (users, distinct requests drawn with Zipf skew,
 * resource calls or dashboard queries over "the last hour") or from a recorded trace, replayed
 * with its timing scaled by `speed`. A query's range ends at the wall clock, or, with
 * trace_clock, at its own time in the trace, so a trace can carry a dashboard's clock running
 * faster than the wall clock (a refreshing dashboard compressed in time). Load is a closed loop
 * (each of C workers has one request in flight, the next one leaves when it returns) or an open
 * loop (arrivals at a rate, Poisson; or the trace's own times), with at most C requests in flight:
 * an open-loop request that waits for a free worker has that wait in its latency (it is measured
 * from its scheduled time), so a saturated target shows as latency, not as a lower offered load.
 *
 * Tickets are handed out under one mutex: index, scheduled time and phase (warm-up while the
 * scheduled time is within `warmup_s` of the start). Each worker keeps its own counts and
 * latency samples; a monitor thread samples shared counters every tick for the timeline, the
 * simulator and the target's cache/stats at the end of the warm-up, and prints progress.
 * SIGINT stops issuing at once: in-flight calls are cancelled and the result is partial.
 */
#include "bench_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 1024
#define MAX_CONSECUTIVE_FAILURES 100
#define DASHBOARD_RANGE_MS 3600000LL /* queries ask for "the last hour" unless told */

struct ticket {
    uint64_t index;
    int64_t sched_ns; /* 0: now (closed loop) */
    int warmup;
};

struct wrun {
    const struct bench_driver *d;
    void *conn;
    const struct bench_workload *w;
    struct bench_zipf zipf;
    /* tickets */
    pthread_mutex_t mu;
    uint64_t issued, measured_issued;
    int64_t next_arrival_ns;
    uint64_t arrival_rng;
    int stop;
    int64_t t0, t_meas, t_end; /* t_end 0: no duration limit */
    /* shared counters for the monitor */
    _Atomic uint64_t done, hits, errors, failed, consecutive_failed;
    _Atomic int finished;
    pthread_mutex_t err_mu;
    struct cp_err first_err;
};

struct wworker {
    struct wrun *run;
    pthread_t th;
    void *ws;
    struct bench_counts warm, meas;
    int64_t *lat;
    size_t nlat, cap;
    int64_t last_end;
    int rc;
    struct cp_err err;
};

static int64_t wall_ms(void)
{
    return cp_now_ms();
}

/* ---- tickets -------------------------------------------------------------------------------- */

static int next_ticket(struct wrun *r, struct ticket *t)
{
    const struct bench_workload *w = r->w;
    int ok = 0;
    pthread_mutex_lock(&r->mu);
    if (r->stop || atomic_load(&bench_interrupted) ||
        atomic_load(&r->consecutive_failed) >= MAX_CONSECUTIVE_FAILURES)
        goto out;
    int64_t now = cp_mono_ns();
    if (w->trace) {
        if (r->issued >= w->trace->n)
            goto out;
        const struct bench_trace_rec *rec = &w->trace->recs[r->issued];
        int64_t off_ms = rec->ts_ms - w->trace->recs[0].ts_ms;
        t->sched_ns = w->speed > 0 ? r->t0 + (int64_t)((double)off_ms * 1e6 / w->speed) : 0;
    } else if (w->rate > 0) {
        t->sched_ns = r->next_arrival_ns;
        double gap_s = -log(1.0 - bench_rand_unit(&r->arrival_rng)) / w->rate;
        r->next_arrival_ns += (int64_t)(gap_s * 1e9);
    } else {
        t->sched_ns = 0;
    }
    int64_t at = t->sched_ns ? t->sched_ns : now;
    t->warmup = at < r->t_meas;
    if (!t->warmup) {
        if (r->t_end && at >= r->t_end)
            goto out;
        if (w->requests && r->measured_issued >= w->requests)
            goto out;
        r->measured_issued++;
    }
    t->index = r->issued++;
    ok = 1;
out:
    if (!ok)
        r->stop = 1;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* Sleeps until the monotonic time at_ns, waking for interrupts. */
static void sleep_until(int64_t at_ns)
{
    while (!atomic_load(&bench_interrupted)) {
        int64_t left = at_ns - cp_mono_ns();
        if (left <= 0)
            return;
        if (left > 50000000)
            left = 50000000;
        struct timespec ts = {0, (long)left};
        nanosleep(&ts, NULL);
    }
}

/* ---- requests ------------------------------------------------------------------------------- */

struct req_buf {
    char user[32], path[BENCH_MAX_URL];
};

static void make_request(struct wrun *r, uint64_t index, struct bench_req *rq, struct req_buf *b)
{
    const struct bench_workload *w = r->w;
    memset(rq, 0, sizeof *rq);
    if (w->trace) {
        const struct bench_trace_rec *rec = &w->trace->recs[index];
        rq->user = rec->user;
        rq->role = rec->role;
        rq->method = rec->method;
        rq->path = rec->path;
        rq->kind = !strcmp(rec->method, "QUERY") ? BENCH_KIND_QUERY : BENCH_KIND_RESOURCE;
        if (rq->kind == BENCH_KIND_QUERY) {
            /* the recorded path holds the resolved range (or placeholders); the request's own
             * ends "now": the wall clock, or the trace's clock */
            rq->to_ms = w->trace_clock ? rec->ts_ms : wall_ms();
            rq->from_ms = rq->to_ms - (w->range_ms > 0 ? w->range_ms : DASHBOARD_RANGE_MS);
        }
        return;
    }
    uint64_t rng = w->seed ^ (index * 0xd1342543de82ef95ull + 0x2545f4914f6cdd1dull);
    uint64_t key = bench_zipf_draw(&r->zipf, &rng);
    uint64_t user = bench_rand(&rng) % w->users;
    snprintf(b->user, sizeof b->user, "user%04llu", (unsigned long long)user);
    rq->user = b->user;
    rq->role = "Viewer";
    rq->method = "GET";
    rq->kind = w->kind;
    if (w->kind == BENCH_KIND_QUERY) {
        /* a dashboard panel over the last hour, as the user's browser asks at this moment */
        snprintf(b->path, sizeof b->path, "/q/k%llu?from=${__from}&to=${__to}",
                 (unsigned long long)key);
        rq->to_ms = wall_ms();
        rq->from_ms = rq->to_ms - (w->range_ms > 0 ? w->range_ms : DASHBOARD_RANGE_MS);
    } else {
        snprintf(b->path, sizeof b->path, "/w/k%llu", (unsigned long long)key);
    }
    rq->path = b->path;
}

static int add_sample(struct wworker *k, int64_t ns)
{
    if (k->nlat == k->cap) {
        size_t nc = k->cap ? k->cap * 2 : 4096;
        int64_t *nl = realloc(k->lat, nc * sizeof *nl);
        if (!nl)
            return CP_ENOMEM;
        k->lat = nl;
        k->cap = nc;
    }
    k->lat[k->nlat++] = ns;
    return 0;
}

static void *worker_main(void *arg)
{
    struct wworker *k = arg;
    struct wrun *r = k->run;
    struct ticket t;
    struct req_buf buf;
    while (!k->rc && next_ticket(r, &t)) {
        if (t.sched_ns)
            sleep_until(t.sched_ns);
        if (atomic_load(&bench_interrupted))
            break;
        struct bench_req rq;
        make_request(r, t.index, &rq, &buf);
        struct bench_answer a;
        struct cp_err err = {0};
        int64_t start = cp_mono_ns();
        int rc = r->d->request(r->conn, k->ws, &rq, &a, &err);
        int64_t end = cp_mono_ns();
        struct bench_counts *c = t.warmup ? &k->warm : &k->meas;
        c->requests++;
        atomic_fetch_add(&r->done, 1);
        if (rc) {
            if (atomic_load(&bench_interrupted)) {
                c->requests--; /* cancelled by Ctrl-C: not a result */
                atomic_fetch_sub(&r->done, 1);
                break;
            }
            c->failed++;
            atomic_fetch_add(&r->failed, 1);
            atomic_fetch_add(&r->consecutive_failed, 1);
            pthread_mutex_lock(&r->err_mu);
            if (!r->first_err.code)
                r->first_err = err;
            pthread_mutex_unlock(&r->err_mu);
            continue;
        }
        atomic_store(&r->consecutive_failed, 0);
        c->by_cache[a.cache]++;
        if (a.cache == BENCH_CACHE_HIT || a.cache == BENCH_CACHE_STALE)
            atomic_fetch_add(&r->hits, 1);
        if (a.status >= 400 || a.status < 100) {
            c->errors++;
            atomic_fetch_add(&r->errors, 1);
        }
        c->bytes += a.bytes;
        c->pieces_hit += a.pieces_hit;
        c->pieces_fetched += a.pieces_fetched;
        if (!t.warmup) {
            /* open loop: from the scheduled time, so waiting for a free worker counts */
            int64_t from = t.sched_ns && t.sched_ns < start ? t.sched_ns : start;
            if (add_sample(k, end - from)) {
                k->rc = cp_err_set(&k->err, CP_ENOMEM, "out of memory for latency samples");
                break;
            }
            k->last_end = end;
        }
    }
    return NULL;
}

/* ---- monitor ----------------------------------------------------------------------------------
 */

struct monitor {
    struct wrun *r;
    struct bench_sim *sim;
    struct bench_run_result *res;
    double tick_s;
    int tty;
    pthread_t th;
    int64_t last_print;
};

static int push_tick(struct bench_run_result *res, const struct bench_tick *t)
{
    if (res->nticks == res->ticks_cap) {
        size_t nc = res->ticks_cap ? res->ticks_cap * 2 : 64;
        struct bench_tick *nt = realloc(res->ticks, nc * sizeof *nt);
        if (!nt)
            return CP_ENOMEM;
        res->ticks = nt;
        res->ticks_cap = nc;
    }
    res->ticks[res->nticks++] = *t;
    return 0;
}

static void progress_line(struct monitor *m, const struct bench_tick *cum, double planned,
                          int final)
{
    const struct bench_workload *w = m->r->w;
    char plan[32] = "", errs[48] = "";
    if (planned > 0)
        snprintf(plan, sizeof plan, "/%.0f", planned);
    if (cum->errors)
        snprintf(errs, sizeof errs, "  errors %llu", (unsigned long long)cum->errors);
    double rate = cum->t > 0 ? (double)cum->requests / cum->t : 0;
    fprintf(stderr, "%s%s: %.1f%s s  %llu requests  %.0f/s  hit %.1f%%  upstream %llu%s%s",
            m->tty ? "\r" : "", w->label ? w->label : "run", cum->t, plan,
            (unsigned long long)cum->requests, rate,
            cum->requests ? 100.0 * (double)cum->hits / (double)cum->requests : 0.0,
            (unsigned long long)cum->upstream, errs, m->tty ? "\033[K" : "\n");
    if (final && m->tty)
        fputc('\n', stderr);
    fflush(stderr);
}

static void *monitor_main(void *arg)
{
    struct monitor *m = arg;
    struct wrun *r = m->r;
    struct bench_run_result *res = m->res;
    int64_t tick_ns = (int64_t)(m->tick_s * 1e9);
    int64_t next = r->t0 + tick_ns;
    int boundary_done = r->t_meas <= r->t0;
    uint64_t up0 = res->sim0.work_requests, bytes0 = res->sim0.work_bytes;
    struct bench_tick prev = {0};
    double planned = r->w->trace || !r->t_end ? 0 : (double)(r->t_end - r->t0) / 1e9;
    for (;;) {
        int finished = atomic_load(&r->finished);
        int64_t now = cp_mono_ns();
        if (!boundary_done && now >= r->t_meas) {
            bench_sim_counts(m->sim, &res->sim_meas0);
            struct cp_err err = {0};
            if (r->d->stats(r->conn, &res->tgt_meas0, &err) != 0)
                res->tgt_meas0.valid = 0;
            boundary_done = 1;
        }
        if (now >= next || finished) {
            struct bench_sim_counts sc;
            bench_sim_counts(m->sim, &sc);
            struct bench_tick cum = {.t = (double)(now - r->t0) / 1e9,
                                     .requests = atomic_load(&r->done),
                                     .hits = atomic_load(&r->hits),
                                     .upstream = sc.work_requests - up0,
                                     .upstream_bytes = sc.work_bytes - bytes0,
                                     .errors = atomic_load(&r->errors) + atomic_load(&r->failed),
                                     .rss_kib = -1,
                                     .warmup = now <= r->t_meas};
            struct bench_target_stats ts;
            struct cp_err err = {0};
            if (r->d->stats(r->conn, &ts, &err) == 0) {
                cum.rss_kib = ts.rss_kib;
                if (ts.rss_kib > res->rss_max_kib)
                    res->rss_max_kib = ts.rss_kib;
            }
            struct bench_tick t = cum;
            t.requests -= prev.requests;
            t.hits -= prev.hits;
            t.upstream -= prev.upstream;
            t.upstream_bytes -= prev.upstream_bytes;
            t.errors -= prev.errors;
            struct bench_tick *last = res->nticks ? &res->ticks[res->nticks - 1] : NULL;
            if (finished && last && t.t - last->t < m->tick_s / 2) {
                /* a short last step would be noise: it joins the one before */
                last->t = t.t;
                last->requests += t.requests;
                last->hits += t.hits;
                last->upstream += t.upstream;
                last->upstream_bytes += t.upstream_bytes;
                last->errors += t.errors;
                last->rss_kib = t.rss_kib;
            } else if (push_tick(res, &t) != 0) {
                break;
            }
            prev = cum;
            /* a terminal line is rewritten in place; a log gets one line a second */
            if (r->w->progress && (m->tty || finished || now - m->last_print >= 1000000000)) {
                progress_line(m, &cum, planned, finished);
                m->last_print = now;
            }
            next += tick_ns;
            if (next < now)
                next = now + tick_ns;
        }
        if (finished)
            break;
        int64_t wake = next;
        if (!boundary_done && r->t_meas < wake)
            wake = r->t_meas;
        /* short naps, so the end of the run is seen at once */
        int64_t left = wake - cp_mono_ns();
        if (left > 20000000)
            left = 20000000;
        if (left > 0) {
            struct timespec ts = {0, (long)left};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* ---- the run --------------------------------------------------------------------------------- */

static double auto_tick(const struct bench_workload *w)
{
    double span = w->warmup_s + w->duration_s;
    if (w->trace && w->speed > 0 && w->trace->n)
        span = (double)(w->trace->recs[w->trace->n - 1].ts_ms - w->trace->recs[0].ts_ms) / 1000.0 /
               w->speed;
    if (span <= 0)
        span = 30;
    double t = span / 60;
    return t < 0.1 ? 0.1 : t > 5 ? 5 : t;
}

static void add_counts(struct bench_counts *a, const struct bench_counts *b)
{
    a->requests += b->requests;
    for (int i = 0; i < BENCH_CACHE_N; i++)
        a->by_cache[i] += b->by_cache[i];
    a->errors += b->errors;
    a->failed += b->failed;
    a->bytes += b->bytes;
    a->pieces_hit += b->pieces_hit;
    a->pieces_fetched += b->pieces_fetched;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int bench_workload_run(const struct bench_driver *d, void *conn, struct bench_sim *sim,
                       const struct bench_workload *w, struct bench_run_result *res,
                       struct cp_err *err)
{
    memset(res, 0, sizeof *res);
    res->rss_max_kib = -1;
    if (w->concurrency < 1 || w->concurrency > MAX_WORKERS)
        return cp_err_set(err, CP_EINVAL, "concurrency must be 1..%d", MAX_WORKERS);
    if (!w->trace && (w->users < 1 || w->keys < 1))
        return cp_err_set(err, CP_EINVAL, "users and keys must be at least 1");
    if (!w->trace && !w->duration_s && !w->requests)
        return cp_err_set(err, CP_EINVAL, "a synthetic workload needs a duration or a count");
    struct wrun r;
    memset(&r, 0, sizeof r);
    r.d = d;
    r.conn = conn;
    r.w = w;
    r.arrival_rng = w->seed ^ 0xa0761d6478bd642full;
    if (!w->trace) {
        int zrc = bench_zipf_init(&r.zipf, w->keys, w->zipf_s);
        if (zrc)
            return cp_err_set(err, zrc, "keys %llu, zipf %.2f: %s", (unsigned long long)w->keys,
                              w->zipf_s, zrc == CP_EINVAL ? "out of range" : "out of memory");
    }
    pthread_mutex_init(&r.mu, NULL);
    pthread_mutex_init(&r.err_mu, NULL);
    struct wworker *ks = calloc(w->concurrency, sizeof *ks);
    int rc = ks ? 0 : cp_err_set(err, CP_ENOMEM, "out of memory");
    unsigned started = 0;
    for (unsigned i = 0; !rc && i < w->concurrency; i++) {
        ks[i].run = &r;
        rc = d->worker_new(conn, &ks[i].ws, err);
    }
    bench_sim_counts(sim, &res->sim0);
    struct cp_err serr = {0};
    if (!rc && d->stats(conn, &res->tgt0, &serr) != 0)
        res->tgt0.valid = 0;
    struct monitor m = {&r, sim, res, w->tick_s > 0 ? w->tick_s : auto_tick(w), isatty(2), 0, 0};
    int monitor_started = 0;
    if (!rc) {
        r.t0 = cp_mono_ns();
        r.t_meas = r.t0 + (int64_t)(w->warmup_s * 1e9);
        r.t_end = w->duration_s > 0 ? r.t_meas + (int64_t)(w->duration_s * 1e9) : 0;
        r.next_arrival_ns = r.t0;
        res->sim_meas0 = res->sim0;
        res->tgt_meas0 = res->tgt0;
        monitor_started = pthread_create(&m.th, NULL, monitor_main, &m) == 0;
        for (; started < w->concurrency; started++)
            if (pthread_create(&ks[started].th, NULL, worker_main, &ks[started]) != 0)
                break;
        if (!started)
            rc = cp_err_set(err, CP_EINTERNAL, "cannot start worker threads");
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(ks[i].th, NULL);
    int64_t t_done = cp_mono_ns();
    atomic_store(&r.finished, 1);
    if (monitor_started)
        pthread_join(m.th, NULL);
    bench_sim_counts(sim, &res->sim1);
    if (!rc && d->stats(conn, &res->tgt1, &serr) != 0)
        res->tgt1.valid = 0;
    if (res->tgt1.valid) {
        res->rss_end_kib = res->tgt1.rss_kib;
        if (res->tgt1.rss_kib > res->rss_max_kib)
            res->rss_max_kib = res->tgt1.rss_kib;
    } else {
        res->rss_end_kib = -1;
    }

    /* merge the workers */
    size_t total = 0;
    int64_t last = r.t_meas;
    for (unsigned i = 0; ks && i < w->concurrency; i++) {
        add_counts(&res->warm, &ks[i].warm);
        add_counts(&res->meas, &ks[i].meas);
        total += ks[i].nlat;
        if (ks[i].last_end > last)
            last = ks[i].last_end;
        if (ks[i].rc && !rc) {
            rc = ks[i].rc;
            *err = ks[i].err;
        }
    }
    res->lat_ns = malloc((total ? total : 1) * sizeof *res->lat_ns);
    if (!res->lat_ns && !rc)
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    for (unsigned i = 0; ks && i < w->concurrency; i++) {
        if (res->lat_ns && ks[i].nlat)
            memcpy(res->lat_ns + res->nlat, ks[i].lat, ks[i].nlat * sizeof *res->lat_ns);
        res->nlat += res->lat_ns ? ks[i].nlat : 0;
        free(ks[i].lat);
        if (ks[i].ws)
            d->worker_free(conn, ks[i].ws);
    }
    free(ks);
    if (res->lat_ns)
        qsort(res->lat_ns, res->nlat, sizeof *res->lat_ns, cmp_i64);
    /* the measured window ends with the last measured answer, or now when none came */
    res->meas_s = (double)((res->nlat ? last : t_done) - r.t_meas) / 1e9;
    if (res->meas_s < 0)
        res->meas_s = 0;
    res->total_s = (double)(t_done - r.t0) / 1e9;
    res->interrupted = atomic_load(&bench_interrupted);
    if (r.first_err.code)
        snprintf(res->first_error, sizeof res->first_error, "%s", cp_err_text(&r.first_err));
    if (!rc && atomic_load(&r.consecutive_failed) >= MAX_CONSECUTIVE_FAILURES)
        rc = cp_err_set(err, CP_EUPSTREAM, "%d requests in a row failed; the first error: %s",
                        MAX_CONSECUTIVE_FAILURES, res->first_error);
    pthread_mutex_destroy(&r.mu);
    pthread_mutex_destroy(&r.err_mu);
    bench_zipf_dispose(&r.zipf);
    return rc;
}

void bench_run_result_dispose(struct bench_run_result *res)
{
    free(res->lat_ns);
    free(res->ticks);
    memset(res, 0, sizeof *res);
}
