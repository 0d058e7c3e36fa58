/*
 * loop.c - the event loop: one libuv loop per thread, work handed over from other threads
 * through a queue and uv_async_send, one-shot timers, and libcurl multi handles driven by the
 * multi socket API (a uv_poll_t per socket, one uv_timer_t per multi handle).
 *
 * Everything that touches a loop's handles runs on its thread: posted jobs, timer callbacks,
 * transfer completions. Other threads only call cp_loop_post.
 */
#include "base.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct job {
    struct job *next;
    void (*fn)(void *arg);
    void *arg;
};

struct cp_loop {
    uv_loop_t uv;
    uv_async_t wake;
    pthread_t thread;
    pthread_mutex_t mu;
    struct job *head, *tail; /* posted, not run yet */
    int stopping;            /* under mu: no more posts; the thread ends once drained */
    _Atomic uint64_t jobs;   /* jobs run, for tests and metrics */
};

static _Thread_local struct cp_loop *current;

/* ---- jobs ------------------------------------------------------------------------------------- */

static void run_jobs(uv_async_t *a)
{
    struct cp_loop *l = a->data;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        struct job *j = l->head;
        l->head = l->tail = NULL;
        int stopping = l->stopping;
        pthread_mutex_unlock(&l->mu);
        if (!j) {
            if (stopping)
                uv_close((uv_handle_t *)&l->wake, NULL);
            return;
        }
        while (j) {
            struct job *next = j->next;
            atomic_fetch_add_explicit(&l->jobs, 1, memory_order_relaxed);
            j->fn(j->arg);
            free(j);
            j = next;
        }
    }
}

int cp_loop_post(struct cp_loop *l, void (*fn)(void *arg), void *arg)
{
    struct job *j = malloc(sizeof *j);
    if (!j)
        return CP_ENOMEM;
    j->next = NULL;
    j->fn = fn;
    j->arg = arg;
    pthread_mutex_lock(&l->mu);
    if (l->stopping) {
        pthread_mutex_unlock(&l->mu);
        free(j);
        return CP_ECANCELED;
    }
    int was_empty = l->head == NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    pthread_mutex_unlock(&l->mu);
    if (was_empty)
        uv_async_send(&l->wake);
    return 0;
}

int cp_loop_is_current(const struct cp_loop *l) { return current == l; }

uint64_t cp_loop_jobs(struct cp_loop *l) { return atomic_load(&l->jobs); }

static void close_left(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL); /* an owner forgot a handle: its memory is the owner's to free */
}

static void *loop_thread(void *arg)
{
    struct cp_loop *l = arg;
    current = l;
    uv_run(&l->uv, UV_RUN_DEFAULT);
    /* handles still open (owners that did not close theirs): close, then let them finish */
    uv_walk(&l->uv, close_left, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    current = NULL;
    return NULL;
}

struct cp_loop *cp_loop_new(void)
{
    struct cp_loop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    if (uv_loop_init(&l->uv) != 0) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    uv_async_init(&l->uv, &l->wake, run_jobs);
    l->wake.data = l;
    if (pthread_create(&l->thread, NULL, loop_thread, l) != 0) {
        uv_close((uv_handle_t *)&l->wake, NULL);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        uv_loop_close(&l->uv);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return NULL;
    }
    return l;
}

void cp_loop_free(struct cp_loop *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stopping = 1;
    pthread_mutex_unlock(&l->mu);
    uv_async_send(&l->wake);
    pthread_join(l->thread, NULL);
    uv_loop_close(&l->uv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- timers ----------------------------------------------------------------------------------- */

struct cp_timer {
    uv_timer_t t;
    void (*fn)(void *arg);
    void *arg;
};

static void timer_closed(uv_handle_t *h) { free(h->data); }

static void timer_fired(uv_timer_t *t)
{
    struct cp_timer *c = t->data;
    void (*fn)(void *) = c->fn;
    void *arg = c->arg;
    uv_close((uv_handle_t *)&c->t, timer_closed);
    fn(arg);
}

struct cp_timer *cp_timer_start(struct cp_loop *l, int64_t ms, void (*fn)(void *arg), void *arg)
{
    struct cp_timer *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    uv_timer_init(&l->uv, &c->t);
    c->t.data = c;
    c->fn = fn;
    c->arg = arg;
    uv_timer_start(&c->t, timer_fired, (uint64_t)(ms > 0 ? ms : 0), 0);
    return c;
}

void cp_timer_cancel(struct cp_timer *c)
{
    if (c && !uv_is_closing((uv_handle_t *)&c->t)) {
        uv_timer_stop(&c->t);
        uv_close((uv_handle_t *)&c->t, timer_closed);
    }
}

/* ---- HTTP transfers: libcurl's multi socket API on the loop ------------------------------------ */

struct sock;

struct cp_http {
    struct cp_loop *l;
    CURLM *multi;
    uv_timer_t timeout;
    struct sock *socks; /* every socket watched now */
    _Atomic int *running; /* transfers added and not finished (read by metrics threads) */
    _Atomic int *queued;  /* of which not connected yet (no request sent) */
    _Atomic int own_running, own_queued;
    int closing;
    int busy;         /* inside libcurl's or a done callback's call chain */
    int free_pending; /* cp_http_free was called meanwhile: finish it on the way out */
};

/* What the multi keeps per socket. */
struct sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct cp_http *h;
    struct sock *prev, *next;
};

/* What the multi keeps per transfer (CURLOPT_PRIVATE). */
struct xfer {
    struct cp_http *h;
    void (*done)(void *arg, int curl_code);
    void *arg;
    int connected;
};

static void http_free_now(struct cp_http *h);

static void check_done(struct cp_http *h)
{
    CURLMsg *m;
    int left;
    while (!h->free_pending && (m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        struct xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(h->multi, e);
        atomic_fetch_sub(h->running, 1);
        if (x && !x->connected)
            atomic_fetch_sub(h->queued, 1);
        curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
        if (x) {
            x->done(x->arg, (int)rc); /* may free e, add transfers, or free h (deferred) */
            free(x);
        }
    }
}

/* Runs libcurl for fd (or its timers) and hands finished transfers over; a cp_http_free
 * from inside is carried out when everything on the way has returned. */
static void drive(struct cp_http *h, curl_socket_t fd, int flags)
{
    int running;
    h->busy++;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    check_done(h);
    if (--h->busy == 0 && h->free_pending)
        http_free_now(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    drive(s->h, s->fd, flags);
}

static void on_timeout(uv_timer_t *t) { drive(t->data, CURL_SOCKET_TIMEOUT, 0); }

static void sock_closed(uv_handle_t *hd) { free(hd->data); }

static void sock_drop(struct cp_http *h, struct sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e;
    struct cp_http *h = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            sock_drop(h, s);
            if (!h->closing)
                curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(&h->l->uv, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

static int on_timer(CURLM *m, long ms, void *userp)
{
    (void)m;
    struct cp_http *h = userp;
    if (ms < 0)
        uv_timer_stop(&h->timeout);
    else
        uv_timer_start(&h->timeout, on_timeout, (uint64_t)ms, 0);
    return 0;
}

struct cp_http *cp_http_new(struct cp_loop *l, long max_connections, _Atomic int *running,
                            _Atomic int *queued)
{
    struct cp_http *h = calloc(1, sizeof *h);
    if (!h || !(h->multi = curl_multi_init())) {
        free(h);
        return NULL;
    }
    h->l = l;
    h->running = running ? running : &h->own_running;
    h->queued = queued ? queued : &h->own_queued;
    uv_timer_init(&l->uv, &h->timeout);
    h->timeout.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    if (max_connections > 0) {
        curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_connections);
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_connections);
    }
    /* idle connections kept warm for the next calls */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
                      max_connections > 0 && max_connections < 64 ? max_connections : 64L);
    return h;
}

static void http_timer_closed(uv_handle_t *hd)
{
    struct cp_http *h = hd->data;
    free(h);
}

static void http_free_now(struct cp_http *h)
{
    h->closing = 1;
    curl_multi_cleanup(h->multi); /* closes the idle connections' sockets */
    while (h->socks)              /* whether or not it said CURL_POLL_REMOVE for each */
        sock_drop(h, h->socks);
    uv_timer_stop(&h->timeout);
    uv_close((uv_handle_t *)&h->timeout, http_timer_closed);
}

void cp_http_free(struct cp_http *h)
{
    if (!h)
        return;
    if (h->busy) { /* from a done callback: the multi is still in use up the stack */
        h->free_pending = 1;
        return;
    }
    http_free_now(h);
}

/* CURLOPT_PREREQFUNCTION: the transfer has its connection and sends its request now. */
static int on_prereq(void *ud, char *conn_ip, char *local_ip, int conn_port, int local_port)
{
    (void)conn_ip, (void)local_ip, (void)conn_port, (void)local_port;
    struct xfer *x = ud;
    if (!x->connected) {
        x->connected = 1;
        atomic_fetch_sub(x->h->queued, 1);
    }
    return CURL_PREREQFUNC_OK;
}

int cp_http_add(struct cp_http *h, void *easy, void (*done)(void *arg, int curl_code), void *arg)
{
    struct xfer *x = calloc(1, sizeof *x);
    if (!x)
        return CP_ENOMEM;
    x->h = h;
    x->done = done;
    x->arg = arg;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, x);
    if (curl_multi_add_handle(h->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(x);
        return CP_ENOMEM;
    }
    atomic_fetch_add(h->running, 1);
    atomic_fetch_add(h->queued, 1);
    return 0;
}

void cp_http_abort(struct cp_http *h, void *easy)
{
    struct xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    if (!x)
        return;
    curl_multi_remove_handle(h->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    atomic_fetch_sub(h->running, 1);
    if (!x->connected)
        atomic_fetch_sub(h->queued, 1);
    free(x);
}
