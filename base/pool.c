/* pool.c - a bounded pool of threads for work that may block or burn CPU (frames, modules,
 * Redis commands), so it never runs on an event loop or gRPC's completion-queue thread. A job
 * that finds no idle thread starts one, up to max_threads; past that it waits in the queue.
 * Idle threads exit after idle_ms, so an idle plugin keeps only a few threads. */
#include "base.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct job {
    struct job *next;
    void (*fn)(void *);
    void *arg;
};

struct cp_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;
    struct job *head, *tail;
    unsigned queued, threads, idle, max, idle_ms;
    int stopping;
    /* live threads; one that leaves for idleness detaches itself, the others are joined by
     * cp_pool_free, so that their thread-local state (OpenSSL's, libcurl's) is released
     * before the process ends */
    pthread_t *ids;
};

static void forget_self(struct cp_pool *p)
{
    pthread_t me = pthread_self();
    for (unsigned i = 0; i < p->threads; i++)
        if (pthread_equal(p->ids[i], me)) {
            p->ids[i] = p->ids[p->threads - 1];
            break;
        }
}

static void *worker(void *arg)
{
    struct cp_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping) {
            struct timespec dl = cp_deadline(CLOCK_REALTIME, p->idle_ms);
            p->idle++;
            int rc = pthread_cond_timedwait(&p->work, &p->mu, &dl);
            p->idle--;
            if (rc == ETIMEDOUT && !p->head && !p->stopping) {
                forget_self(p);
                p->threads--;
                pthread_detach(pthread_self());
                pthread_mutex_unlock(&p->mu);
                return NULL;
            }
        }
        if (!p->head)
            break; /* stopping and drained: cp_pool_free joins us */
        struct job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct cp_pool *cp_pool_new(unsigned max_threads, unsigned idle_ms)
{
    struct cp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    p->max = max_threads ? max_threads : 1;
    p->idle_ms = idle_ms ? idle_ms : 1000;
    p->ids = calloc(p->max, sizeof *p->ids);
    if (!p->ids) {
        free(p);
        return NULL;
    }
    return p;
}

int cp_pool_submit(struct cp_pool *p, void (*fn)(void *), void *arg)
{
    struct job *j = malloc(sizeof *j);
    if (!j)
        return CP_ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    if (p->idle >= p->queued) {
        pthread_cond_signal(&p->work);
    } else if (p->threads < p->max) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 512 * 1024);
        if (pthread_create(&p->ids[p->threads], &attr, worker, p) == 0)
            p->threads++;
        pthread_attr_destroy(&attr);
        if (p->threads == 0) {
            /* could not start any thread: refuse rather than strand the job */
            p->head = p->tail = NULL;
            p->queued = 0;
            pthread_mutex_unlock(&p->mu);
            free(j);
            return CP_ENOMEM;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void cp_pool_free(struct cp_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    /* no thread detaches itself once stopping is set: join every one still listed */
    while (p->threads > 0) {
        pthread_t t = p->ids[--p->threads];
        pthread_mutex_unlock(&p->mu);
        pthread_join(t, NULL);
        pthread_mutex_lock(&p->mu);
    }
    /* no thread left: run what is still queued here, so no job's state leaks */
    while (p->head) {
        struct job *j = p->head;
        p->head = j->next;
        pthread_mutex_unlock(&p->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    free(p->ids);
    free(p);
}

void cp_pool_stats(struct cp_pool *p, unsigned *threads, unsigned *busy, unsigned *queued)
{
    pthread_mutex_lock(&p->mu);
    if (threads)
        *threads = p->threads;
    if (busy)
        *busy = p->threads - p->idle;
    if (queued)
        *queued = p->queued;
    pthread_mutex_unlock(&p->mu);
}
