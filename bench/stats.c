/*
 * stats.c - the bench's own statistics: nearest-rank percentiles, a latency histogram with
 * 1-2-5 bounds, the Zipf sampler behind synthetic workloads, and the latency and size
 * distributions of the upstream simulator (their command-line forms included).
 */
#include "bench_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t bench_percentile(const int64_t *sorted, size_t n, double p)
{
    if (!n)
        return 0;
    /* rank = ceil(p/100 * n), computed without the float noise that would turn 50% of 100
     * into rank 51 */
    double exact = p / 100.0 * (double)n;
    size_t rank = (size_t)exact;
    if ((double)rank < exact - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

/* ---- histogram ---------------------------------------------------------------------------- */

static const double hist_bounds[BENCH_HIST_BUCKETS] = {
    0.01, 0.02, 0.05, 0.1, 0.2,  0.5,  1,    2,     5,     10,    20,
    50,   100,  200,  500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};

const double *bench_hist_bounds_ms(void)
{
    return hist_bounds;
}

void bench_hist_fill(const int64_t *sorted_ns, size_t n, uint64_t counts[BENCH_HIST_BUCKETS])
{
    memset(counts, 0, BENCH_HIST_BUCKETS * sizeof *counts);
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        double ms = (double)sorted_ns[i] / 1e6;
        while (b + 1 < BENCH_HIST_BUCKETS && ms > hist_bounds[b])
            b++;
        counts[b]++;
    }
}

/* ---- Zipf --------------------------------------------------------------------------------- */

int bench_zipf_init(struct bench_zipf *z, uint64_t n, double s)
{
    memset(z, 0, sizeof *z);
    if (n == 0 || n > BENCH_ZIPF_MAX || !(s >= 0 && s <= 10))
        return CP_EINVAL;
    z->cdf = malloc((size_t)n * sizeof *z->cdf);
    if (!z->cdf)
        return CP_ENOMEM;
    /* summed from the smallest terms up, so the total loses nothing to rounding */
    double sum = 0;
    for (uint64_t i = n; i-- > 0;)
        sum += pow((double)i + 1, -s);
    double acc = 0;
    for (uint64_t i = 0; i < n; i++) {
        acc += pow((double)i + 1, -s) / sum;
        z->cdf[i] = acc;
    }
    z->cdf[n - 1] = 1.0; /* every draw below 1 finds a rank */
    z->n = n;
    z->s = s;
    return 0;
}

uint64_t bench_zipf_draw(const struct bench_zipf *z, uint64_t *rng)
{
    double u = bench_rand_unit(rng);
    uint64_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] <= u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double bench_zipf_prob(const struct bench_zipf *z, uint64_t k)
{
    if (k >= z->n)
        return 0;
    return k ? z->cdf[k] - z->cdf[k - 1] : z->cdf[0];
}

void bench_zipf_dispose(struct bench_zipf *z)
{
    free(z->cdf);
    memset(z, 0, sizeof *z);
}

/* ---- distributions ------------------------------------------------------------------------ */

#define Z99 2.3263478740408408 /* the standard normal's 99th percentile */

/* "a..b" split into two parts; 1 when it has the separator. */
static int split_range(const char *spec, char *a, char *b, size_t size)
{
    const char *dots = strstr(spec, "..");
    if (!dots) {
        snprintf(a, size, "%s", spec);
        return 0;
    }
    snprintf(a, size, "%.*s", (int)(dots - spec), spec);
    snprintf(b, size, "%s", dots + 2);
    return 1;
}

int bench_latency_parse(const char *spec, struct bench_dist *d, struct cp_err *err)
{
    char a[64], b[64];
    int64_t x = 0, y = 0;
    memset(d, 0, sizeof *d);
    if (strlen(spec) >= sizeof a)
        return cp_err_set(err, CP_EINVAL, "latency \"%.40s...\" is too long", spec);
    if (!strncmp(spec, "lognormal:", 10)) {
        const char *m = spec + 10, *colon = strchr(m, ':');
        if (!colon)
            return cp_err_set(err, CP_EINVAL,
                              "latency \"%s\": lognormal needs MEDIAN:P99, e.g. "
                              "lognormal:20ms:200ms",
                              spec);
        snprintf(a, sizeof a, "%.*s", (int)(colon - m), m);
        snprintf(b, sizeof b, "%s", colon + 1);
        if (cfg_duration_parse(a, &x) || cfg_duration_parse(b, &y) || x <= 0 || y < x)
            return cp_err_set(err, CP_EINVAL,
                              "latency \"%s\": the median must be a positive duration and the "
                              "p99 at least the median",
                              spec);
        d->kind = BENCH_DIST_LOGNORMAL;
    } else if (split_range(spec, a, b, sizeof a)) {
        if (cfg_duration_parse(a, &x) || cfg_duration_parse(b, &y) || y < x)
            return cp_err_set(err, CP_EINVAL,
                              "latency \"%s\": a range is MIN..MAX with MIN <= MAX, e.g. "
                              "5ms..50ms",
                              spec);
        d->kind = BENCH_DIST_UNIFORM;
    } else {
        if (cfg_duration_parse(a, &x))
            return cp_err_set(err, CP_EINVAL,
                              "latency \"%s\": expected a duration (20ms), a range (5ms..50ms) "
                              "or lognormal:MEDIAN:P99",
                              spec);
        y = x;
        d->kind = BENCH_DIST_FIXED;
    }
    if (y > BENCH_MAX_LATENCY_MS)
        return cp_err_set(err, CP_EINVAL, "latency \"%s\": at most %d s", spec,
                          BENCH_MAX_LATENCY_MS / 1000);
    d->a = (double)x;
    d->b = (double)y;
    snprintf(d->text, sizeof d->text, "%s", spec);
    return 0;
}

double bench_dist_draw(const struct bench_dist *d, uint64_t *rng)
{
    double v;
    switch (d->kind) {
    case BENCH_DIST_UNIFORM:
        v = d->a + (d->b - d->a) * bench_rand_unit(rng);
        break;
    case BENCH_DIST_LOGNORMAL: {
        /* Box-Muller; u1 in (0, 1] keeps the log finite */
        double u1 = 1.0 - bench_rand_unit(rng), u2 = bench_rand_unit(rng);
        double zn = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        double sigma = log(d->b / d->a) / Z99;
        v = d->a * exp(sigma * zn);
        break;
    }
    default:
        v = d->a;
    }
    return v > BENCH_MAX_LATENCY_MS ? BENCH_MAX_LATENCY_MS : v;
}

int bench_size_parse(const char *spec, uint64_t *lo, uint64_t *hi, struct cp_err *err)
{
    char a[64], b[64];
    int64_t x = 0, y = 0;
    if (strlen(spec) >= sizeof a)
        return cp_err_set(err, CP_EINVAL, "size \"%.40s...\" is too long", spec);
    int range = split_range(spec, a, b, sizeof a);
    if (cfg_size_parse(a, &x) || (range && cfg_size_parse(b, &y)))
        return cp_err_set(err, CP_EINVAL,
                          "size \"%s\": expected bytes (1024, 4KiB) or a range (1KiB..64KiB)",
                          spec);
    if (!range)
        y = x;
    if (y < x || (uint64_t)y > BENCH_MAX_PAYLOAD)
        return cp_err_set(err, CP_EINVAL, "size \"%s\": MIN <= MAX <= %d MiB", spec,
                          (int)(BENCH_MAX_PAYLOAD >> 20));
    *lo = (uint64_t)x;
    *hi = (uint64_t)y;
    return 0;
}
