/* coalesce.c - in-process request coalescing: concurrent identical misses share one upstream
 * call. The first caller of a key leads; the others wait (bounded) for the outcome it
 * publishes: an answer, an error, or "retry" when its answer was for its caller only. */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBUCKETS 256

struct cache_flight {
    struct cache_flight *next;
    unsigned char key[32];
    int done;
    unsigned waiters;
    struct cache_outcome result;
    pthread_cond_t cv;
};

struct cache_flights {
    pthread_mutex_t mu;
    struct cache_flight *b[NBUCKETS];
};

struct cache_flights *cache_flights_new(void)
{
    struct cache_flights *f = calloc(1, sizeof *f);
    if (f)
        pthread_mutex_init(&f->mu, NULL);
    return f;
}

void cache_flights_free(struct cache_flights *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static struct cache_flight **slot(struct cache_flights *f, const struct cache_key *k)
{
    struct cache_flight **pp = &f->b[k->h[0]];
    while (*pp && memcmp((*pp)->key, k->h, 32))
        pp = &(*pp)->next;
    return pp;
}

void cache_outcome_dispose(struct cache_outcome *o)
{
    if (!o)
        return;
    cache_entry_unref(o->e);
    memset(o, 0, sizeof *o);
    o->kind = CACHE_OUTCOME_RETRY;
}

static void outcome_copy(struct cache_outcome *dst, const struct cache_outcome *src)
{
    *dst = *src;
    if (dst->e)
        cache_entry_ref(dst->e);
}

static void flight_free(struct cache_flight *fl)
{
    cache_outcome_dispose(&fl->result);
    pthread_cond_destroy(&fl->cv);
    free(fl);
}

int cache_flight_join(struct cache_flights *f, const struct cache_key *k, int64_t wait_ms,
                      struct cache_outcome *out)
{
    memset(out, 0, sizeof *out);
    out->kind = CACHE_OUTCOME_RETRY;
    pthread_mutex_lock(&f->mu);
    struct cache_flight **pp = slot(f, k);
    if (!*pp) {
        struct cache_flight *fl = calloc(1, sizeof *fl);
        if (!fl) {
            pthread_mutex_unlock(&f->mu);
            return 1; /* lead without a flight record: nobody can wait on us */
        }
        memcpy(fl->key, k->h, 32);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&fl->cv, &ca);
        pthread_condattr_destroy(&ca);
        *pp = fl;
        pthread_mutex_unlock(&f->mu);
        return 1;
    }
    struct cache_flight *fl = *pp;
    fl->waiters++;
    struct timespec dl = cp_deadline(CLOCK_MONOTONIC, wait_ms);
    int rc = 0;
    while (!fl->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&fl->cv, &f->mu, &dl);
    int done = fl->done;
    if (done)
        outcome_copy(out, &fl->result);
    fl->waiters--;
    /* the leader unlinks a finished flight; the last waiter frees it */
    if (done && fl->waiters == 0)
        flight_free(fl);
    pthread_mutex_unlock(&f->mu);
    return done ? 0 : CP_ETIMEDOUT;
}

void cache_flight_done(struct cache_flights *f, const struct cache_key *k,
                       const struct cache_outcome *o)
{
    pthread_mutex_lock(&f->mu);
    struct cache_flight **pp = slot(f, k);
    struct cache_flight *fl = *pp;
    if (fl) {
        *pp = fl->next;
        fl->done = 1;
        if (o)
            outcome_copy(&fl->result, o);
        else
            fl->result.kind = CACHE_OUTCOME_RETRY;
        if (fl->waiters == 0)
            flight_free(fl);
        else
            pthread_cond_broadcast(&fl->cv);
    }
    pthread_mutex_unlock(&f->mu);
}
