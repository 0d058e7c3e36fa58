/*
 * bench_policy.c - cachingproxy-bench-policy: how well and how fast the memory backend caches.
 *
 *  (a) hit ratio of the memory backend (sharded W-TinyLFU, cache/evict.c) against a plain LRU
 *      with the same byte budget and the same entry sizes, on a Zipf(0.9) trace, at budgets of
 *      0.1%, 1% and 10% of the bytes of all keys; the LRU is charged entry sizes only, ours
 *      also pays for its bookkeeping;
 *  (b) lookups per second on a warm store with 1 and 2 threads (Zipf and uniform keys);
 *  (c) bytes of bookkeeping per entry beyond entry->mem_size.
 *
 * Only the cache module's public API is used: stores are opened from data source settings
 * as the plugin opens them (backend memory, memoryMaxBytes = the budget).
 *
 * Usage: cachingproxy-bench-policy [--quick] [--json]
 *   default: 1,000,000 keys, 5,000,000 requests, 1 s per throughput run (under a minute);
 *   --quick: 100,000 keys, 1,000,000 requests, 0.25 s per run (seconds, for CI).
 */
#include "cache.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZIPF_S 0.9
#define MIN_BODY 256.0
#define BODY_OCTAVES 6.0 /* bodies from 256 B to 16 KiB, log-uniform */
#define MAX_BODY 16384
#define WARM_KEYS (1u << 16)
#define WARM_BODY 256
#define TRACE_PER_THREAD (1u << 20)
#define KEEP_MS (3600 * 1000)

static const double size_pcts[] = {0.1, 1.0, 10.0};
#define NSIZES (sizeof size_pcts / sizeof size_pcts[0])

struct opts {
    int quick, json;
    uint32_t keys;
    uint64_t requests;
    double run_s;
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void key_of(uint64_t id, struct cache_key *k)
{
    uint64_t x = id ^ 0x5bd1e9955bd1e995ull;
    for (int i = 0; i < 4; i++) {
        uint64_t v = splitmix(&x);
        memcpy(k->h + 8 * i, &v, 8);
    }
    k->hex[0] = 0; /* the store never reads it */
}

static size_t body_len_of(uint64_t id)
{
    uint64_t x = id * 0x2545f4914f6cdd1dull;
    double u = (double)(splitmix(&x) >> 11) / 9007199254740992.0;
    return (size_t)(MIN_BODY * exp2(BODY_OCTAVES * u));
}

static double now_s(void)
{
    return (double)cp_mono_ns() / 1e9;
}

/* Cumulative Zipf(s) distribution over ranks 0..n-1. */
static double *zipf_cdf(uint32_t n, double s)
{
    double *cdf = malloc((size_t)n * sizeof *cdf);
    if (!cdf)
        return NULL;
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)i + 1, s);
        cdf[i] = sum;
    }
    for (uint32_t i = 0; i < n; i++)
        cdf[i] /= sum;
    return cdf;
}

static uint32_t zipf_draw(const double *cdf, uint32_t n, uint64_t *rng)
{
    double u = (double)(splitmix(rng) >> 11) / 9007199254740992.0;
    uint32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Ranks are scattered over ids so popularity says nothing about size or key. */
static uint32_t *zipf_trace(uint32_t n, uint64_t len, uint64_t seed)
{
    double *cdf = zipf_cdf(n, ZIPF_S);
    uint32_t *perm = malloc((size_t)n * sizeof *perm);
    uint32_t *t = malloc(len * sizeof *t);
    if (!cdf || !perm || !t) {
        free(cdf);
        free(perm);
        free(t);
        return NULL;
    }
    uint64_t rng = seed;
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(splitmix(&rng) % (i + 1));
        uint32_t x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (uint64_t i = 0; i < len; i++)
        t[i] = perm[zipf_draw(cdf, n, &rng)];
    free(cdf);
    free(perm);
    return t;
}

/* ---- (a) hit ratio ------------------------------------------------------------------------ */

static const unsigned char body_src[MAX_BODY + 64];

/* The memory store a data source with this budget gets (maxEntryBytes 1 MiB). */
static struct cache_store *open_store(uint64_t budget)
{
    char json[160];
    snprintf(json, sizeof json,
             "{\"cache\":{\"backend\":\"memory\",\"memoryMaxBytes\":%llu,"
             "\"maxEntryBytes\":1048576}}",
             (unsigned long long)budget);
    struct cfg_ds_input in = {.id = 1,
                              .org_id = 1,
                              .uid = "bench-policy",
                              .name = "bench-policy",
                              .url = "http://127.0.0.1:1",
                              .json_data = json,
                              .json_len = strlen(json)};
    struct cfg_ds *cfg = NULL;
    struct cache_store *s = NULL;
    struct cp_err err = {0};
    if (cfg_ds_parse(&in, &cfg, &err) || cache_store_open(cfg, NULL, &s, &err) || !s) {
        fprintf(stderr, "memory store of %llu bytes: %s\n", (unsigned long long)budget,
                cp_err_text(&err));
        exit(1);
    }
    cfg_ds_free(cfg);
    return s;
}

static struct cache_entry *make_entry(size_t len)
{
    struct cache_entry_spec sp = {.status = 200,
                                  .stored_ms = cp_now_ms(),
                                  .ttl_ms = KEEP_MS,
                                  .path = "/api/v1/query",
                                  .body = body_src,
                                  .body_len = len};
    return cache_entry_new(&sp);
}

static double run_ours(const uint32_t *trace, uint64_t len, uint64_t budget)
{
    struct cache_store *s = open_store(budget);
    struct cp_err err = {0};
    uint64_t hits = 0;

    for (uint64_t i = 0; i < len; i++) {
        struct cache_key k;
        struct cache_entry *e = NULL;
        key_of(trace[i], &k);
        cache_get(s, &k, &e, &err);
        if (e) {
            hits++;
            cache_entry_unref(e);
            continue;
        }
        e = make_entry(body_len_of(trace[i]));
        if (!e || cache_set(s, &k, e, &err)) {
            fprintf(stderr, "set failed\n");
            exit(1);
        }
        cache_entry_unref(e);
    }
    cache_store_close(s);
    return (double)hits / (double)len;
}

/* Reference LRU: intrusive list over ids, charged mem_size only (no bookkeeping). */
static double run_lru(const uint32_t *trace, uint64_t len, uint32_t n, uint64_t budget, size_t base)
{
    int32_t *prev = malloc((size_t)n * sizeof *prev), *next = malloc((size_t)n * sizeof *next);
    int32_t head = -1, tail = -1; /* head = MRU */
    uint64_t used = 0, hits = 0;
    if (!prev || !next) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (uint32_t i = 0; i < n; i++)
        prev[i] = -2; /* not cached */
    for (uint64_t i = 0; i < len; i++) {
        int32_t id = (int32_t)trace[i];
        if (prev[id] != -2) {
            hits++;
            if (head == id)
                continue;
            next[prev[id]] = next[id];
            if (next[id] >= 0)
                prev[next[id]] = prev[id];
            else
                tail = prev[id];
        } else {
            uint64_t charge = base + body_len_of((uint64_t)id);
            if (charge > budget)
                continue;
            while (used + charge > budget) {
                int32_t v = tail;
                tail = prev[v];
                if (tail >= 0)
                    next[tail] = -1;
                else
                    head = -1;
                prev[v] = -2;
                used -= base + body_len_of((uint64_t)v);
            }
            used += charge;
        }
        prev[id] = -1;
        next[id] = head;
        if (head >= 0)
            prev[head] = id;
        head = id;
        if (tail < 0)
            tail = id;
    }
    free(prev);
    free(next);
    return (double)hits / (double)len;
}

/* ---- (b) lookups per second --------------------------------------------------------------- */

struct reader {
    struct cache_store *s;
    const struct cache_key *keys;
    const uint32_t *idx;
    double run_s;
    pthread_barrier_t *start;
    uint64_t ops, misses;
    double secs;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct cp_err err = {0};
    uint64_t ops = 0, misses = 0;
    pthread_barrier_wait(r->start);
    double t0 = now_s(), t = t0;
    while (t - t0 < r->run_s) {
        for (uint32_t i = 0; i < 4096; i++) {
            struct cache_entry *e = NULL;
            cache_get(r->s, &r->keys[r->idx[(ops + i) & (TRACE_PER_THREAD - 1)]], &e, &err);
            if (e)
                cache_entry_unref(e);
            else
                misses++;
        }
        ops += 4096;
        t = now_s();
    }
    r->ops = ops;
    r->misses = misses;
    r->secs = t - t0;
    return NULL;
}

static double lookups_per_s(struct cache_store *s, const struct cache_key *keys,
                            uint32_t *const idx[2], unsigned nthreads, double run_s)
{
    pthread_t th[2];
    struct reader r[2];
    pthread_barrier_t start;
    uint64_t ops = 0, misses = 0;
    double secs = 0;
    pthread_barrier_init(&start, NULL, nthreads);
    for (unsigned i = 0; i < nthreads; i++) {
        r[i] =
            (struct reader){.s = s, .keys = keys, .idx = idx[i], .run_s = run_s, .start = &start};
        pthread_create(&th[i], NULL, reader_main, &r[i]);
    }
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        ops += r[i].ops;
        misses += r[i].misses;
        if (r[i].secs > secs)
            secs = r[i].secs;
    }
    pthread_barrier_destroy(&start);
    if (misses) {
        fprintf(stderr, "warm store missed %llu lookups\n", (unsigned long long)misses);
        exit(1);
    }
    return (double)ops / secs;
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage_exit(const char *argv0)
{
    fprintf(stderr, "usage: %s [--quick] [--json]\n", argv0);
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = {0, 0, 1000000, 5000000, 1.0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            o.quick = 1;
        else if (!strcmp(argv[i], "--json"))
            o.json = 1;
        else
            usage_exit(argv[0]);
    }
    if (o.quick) {
        o.keys = 100000;
        o.requests = 1000000;
        o.run_s = 0.25;
    }
    double t_start = now_s();

    /* (a) */
    struct cache_entry *probe = make_entry(0), *probe2 = make_entry(1000);
    if (!probe || !probe2)
        return 1;
    size_t base = probe->mem_size;
    if (probe2->mem_size != base + 1000) {
        fprintf(stderr, "entry size is not linear in the body length\n");
        return 1;
    }
    cache_entry_unref(probe);
    cache_entry_unref(probe2);
    uint64_t total = 0;
    for (uint32_t i = 0; i < o.keys; i++)
        total += base + body_len_of(i);
    uint32_t *trace = zipf_trace(o.keys, o.requests, 20240601);
    if (!trace)
        return 1;
    double ours[NSIZES], lru[NSIZES];
    uint64_t budgets[NSIZES];
    for (size_t i = 0; i < NSIZES; i++) {
        budgets[i] = (uint64_t)((double)total * size_pcts[i] / 100.0);
        ours[i] = run_ours(trace, o.requests, budgets[i]);
        lru[i] = run_lru(trace, o.requests, o.keys, budgets[i], base);
    }
    free(trace);

    /* (b) and (c) on a warm store holding every key */
    struct cp_err err = {0};
    struct cache_key *keys = malloc(WARM_KEYS * sizeof *keys);
    uint32_t *zidx[2], *uidx[2];
    if (!keys)
        return 1;
    struct cache_store *s = open_store(256 << 20);
    size_t warm_size = 0;
    for (uint32_t i = 0; i < WARM_KEYS; i++) {
        struct cache_entry *e = make_entry(WARM_BODY);
        key_of(i, &keys[i]);
        if (!e || cache_set(s, &keys[i], e, &err))
            return 1;
        warm_size = e->mem_size;
        cache_entry_unref(e);
    }
    for (unsigned t = 0; t < 2; t++) {
        uint64_t rng = 99 + t;
        zidx[t] = zipf_trace(WARM_KEYS, TRACE_PER_THREAD, 7 + t);
        uidx[t] = malloc(TRACE_PER_THREAD * sizeof *uidx[t]);
        if (!zidx[t] || !uidx[t])
            return 1;
        for (uint32_t i = 0; i < TRACE_PER_THREAD; i++)
            uidx[t][i] = (uint32_t)(splitmix(&rng) % WARM_KEYS);
    }
    double z1 = lookups_per_s(s, keys, zidx, 1, o.run_s);
    double z2 = lookups_per_s(s, keys, zidx, 2, o.run_s);
    double u1 = lookups_per_s(s, keys, uidx, 1, o.run_s);
    double u2 = lookups_per_s(s, keys, uidx, 2, o.run_s);
    /* the store's bytes are its entries' sizes plus every byte of bookkeeping */
    struct cache_usage st;
    cache_usage(s, &st);
    double per_entry =
        (double)(st.bytes - st.entries * warm_size) / (double)(st.entries ? st.entries : 1);
    cache_store_close(s);
    for (unsigned t = 0; t < 2; t++) {
        free(zidx[t]);
        free(uidx[t]);
    }
    free(keys);
    double elapsed = now_s() - t_start;

    if (o.json) {
        printf("{\"keys\":%u,\"requests\":%llu,\"zipf_s\":%.2f,\"hit_ratio\":[", o.keys,
               (unsigned long long)o.requests, ZIPF_S);
        for (size_t i = 0; i < NSIZES; i++)
            printf("%s{\"cache_pct\":%.1f,\"budget_bytes\":%llu,"
                   "\"wtinylfu\":%.4f,\"lru\":%.4f,\"diff_points\":%.2f}",
                   i ? "," : "", size_pcts[i], (unsigned long long)budgets[i], ours[i], lru[i],
                   (ours[i] - lru[i]) * 100);
        printf("],\"lookups_per_s\":{\"zipf_1t\":%.0f,\"zipf_2t\":%.0f,\"uniform_1t\":%.0f,"
               "\"uniform_2t\":%.0f},\"warm_entries\":%llu,"
               "\"overhead_bytes_per_entry\":%.1f,\"elapsed_s\":%.1f}\n",
               z1, z2, u1, u2, (unsigned long long)st.entries, per_entry, elapsed);
        return 0;
    }
    printf("workload: Zipf(%.2f), %u keys, %llu requests, bodies 256 B..16 KiB (log-uniform), "
           "all keys = %.1f MiB\n",
           ZIPF_S, o.keys, (unsigned long long)o.requests, (double)total / 1048576.0);
    printf("%-8s %12s %10s %10s %8s\n", "cache", "budget", "w-tinylfu", "lru", "diff");
    for (size_t i = 0; i < NSIZES; i++)
        printf("%6.1f%% %10.2fMiB %9.2f%% %9.2f%% %+7.2fpt\n", size_pcts[i],
               (double)budgets[i] / 1048576.0, ours[i] * 100, lru[i] * 100,
               (ours[i] - lru[i]) * 100);
    printf("lookups/s, warm store of %llu entries: zipf 1 thread %.2fM, 2 threads %.2fM; "
           "uniform 1 thread %.2fM, 2 threads %.2fM\n",
           (unsigned long long)st.entries, z1 / 1e6, z2 / 1e6, u1 / 1e6, u2 / 1e6);
    printf("per-entry overhead: %.1f bytes beyond mem_size (64-byte node + index, expiry heap, "
           "sketch, storage slack), counted in the budget\n",
           per_entry);
    printf("elapsed: %.1f s\n", elapsed);
    return 0;
}
