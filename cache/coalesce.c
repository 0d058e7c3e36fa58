/* coalesce.c - in-process request coalescing: concurrent identical misses share one upstream
 * call. The first caller of a key leads; the others queue as waiters and receive the outcome
 * it publishes (an answer, an error, or "retry" when its answer was for its caller only),
 * through a callback, so no thread waits. */
#include "cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 256

struct cache_flight {
    struct cache_flight *next;
    unsigned char key[32];
    struct cache_waiter *head, **tail; /* in join order */
    size_t nwaiters;
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
    for (size_t i = 0; i < NBUCKETS; i++)
        while (f->b[i]) {
            struct cache_flight *fl = f->b[i];
            f->b[i] = fl->next;
            free(fl);
        }
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void cache_outcome_dispose(struct cache_outcome *o)
{
    if (!o)
        return;
    cache_entry_unref(o->e);
    memset(o, 0, sizeof *o);
    o->kind = CACHE_OUTCOME_RETRY;
}

static struct cache_flight **slot(struct cache_flights *f, const struct cache_key *k)
{
    struct cache_flight **pp = &f->b[k->h[0]];
    while (*pp && memcmp((*pp)->key, k->h, 32))
        pp = &(*pp)->next;
    return pp;
}

int cache_flight_join(struct cache_flights *f, const struct cache_key *k, struct cache_waiter *w)
{
    pthread_mutex_lock(&f->mu);
    struct cache_flight **pp = slot(f, k);
    if (!*pp) {
        struct cache_flight *fl = calloc(1, sizeof *fl);
        if (!fl) {
            pthread_mutex_unlock(&f->mu);
            return CP_ENOMEM;
        }
        memcpy(fl->key, k->h, 32);
        fl->tail = &fl->head;
        *pp = fl;
        pthread_mutex_unlock(&f->mu);
        return 1;
    }
    struct cache_flight *fl = *pp;
    w->next = NULL;
    *fl->tail = w;
    fl->tail = &w->next;
    fl->nwaiters++;
    pthread_mutex_unlock(&f->mu);
    return 0;
}

int cache_flight_leave(struct cache_flights *f, const struct cache_key *k,
                       struct cache_waiter *w)
{
    int found = 0;
    pthread_mutex_lock(&f->mu);
    struct cache_flight *fl = *slot(f, k);
    for (struct cache_waiter **pp = fl ? &fl->head : NULL; pp && *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            if (fl->tail == &w->next)
                fl->tail = pp;
            fl->nwaiters--;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&f->mu);
    return found;
}

void cache_flight_done(struct cache_flights *f, const struct cache_key *k,
                       const struct cache_outcome *o)
{
    pthread_mutex_lock(&f->mu);
    struct cache_flight **pp = slot(f, k);
    struct cache_flight *fl = *pp;
    if (fl)
        *pp = fl->next; /* from here on a new call for k leads a new flight */
    pthread_mutex_unlock(&f->mu);
    if (!fl)
        return;
    struct cache_waiter *w = fl->head;
    free(fl);
    while (w) {
        struct cache_waiter *next = w->next; /* w may be gone once its fn ran */
        struct cache_outcome copy = {.kind = CACHE_OUTCOME_RETRY};
        if (o) {
            copy = *o;
            if (copy.e)
                cache_entry_ref(copy.e);
        }
        w->fn(w, &copy);
        w = next;
    }
}

size_t cache_flight_waiters(struct cache_flights *f, const struct cache_key *k)
{
    pthread_mutex_lock(&f->mu);
    struct cache_flight *fl = *slot(f, k);
    size_t n = fl ? fl->nwaiters : 0;
    pthread_mutex_unlock(&f->mu);
    return n;
}
