/*
 * test_loop.c - base/loop.c: jobs posted from many threads run on the loop's thread in the
 * order each thread posted them, timers fire once (or never, when cancelled), and libcurl
 * transfers on a multi handle overlap, respect the connection cap and report completion on
 * the loop. A real HTTP server on loopback answers them (a small thread-per-connection
 * server here: the loop under test is the client).
 */
#include "base.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- a result the test thread waits for ------------------------------------------------------ */

struct waitbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void box_init(struct waitbox *b)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->done = 0;
}

static void box_signal(struct waitbox *b)
{
    pthread_mutex_lock(&b->mu);
    b->done++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Waits until done reaches n (or 20 s pass: the test then fails on its counts). */
static int box_wait(struct waitbox *b, int n)
{
    struct timespec dl = cp_deadline(CLOCK_REALTIME, 20000);
    pthread_mutex_lock(&b->mu);
    while (b->done < n && pthread_cond_timedwait(&b->cv, &b->mu, &dl) == 0)
        ;
    int d = b->done;
    pthread_mutex_unlock(&b->mu);
    return d;
}

/* ---- jobs ------------------------------------------------------------------------------------- */

#define POSTERS 4
#define PER_POSTER 5000

struct order {
    struct cp_loop *l;
    int last[POSTERS];
    int bad, on_loop_thread;
    struct waitbox box;
};

struct job {
    struct order *o;
    int poster, seq;
};

static void job_run(void *arg)
{
    struct job *j = arg;
    struct order *o = j->o;
    if (!cp_loop_is_current(o->l))
        o->bad++;
    else
        o->on_loop_thread++;
    if (j->seq != o->last[j->poster] + 1)
        o->bad++;
    o->last[j->poster] = j->seq;
    if (j->seq == PER_POSTER)
        box_signal(&o->box);
    free(j);
}

struct poster {
    struct order *o;
    int id;
};

static void *poster_thread(void *arg)
{
    struct poster *p = arg;
    for (int i = 1; i <= PER_POSTER; i++) {
        struct job *j = malloc(sizeof *j);
        *j = (struct job){p->o, p->id, i};
        if (cp_loop_post(p->o->l, job_run, j) != 0)
            free(j);
    }
    return NULL;
}

static void test_loop__jobs_in_order_on_the_loop_thread(void **state)
{
    (void)state;
    struct order o = {0};
    box_init(&o.box);
    o.l = cp_loop_new();
    assert_non_null(o.l);
    assert_false(cp_loop_is_current(o.l));
    pthread_t th[POSTERS];
    struct poster ps[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        ps[i] = (struct poster){&o, i};
        pthread_create(&th[i], NULL, poster_thread, &ps[i]);
    }
    for (int i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(box_wait(&o.box, POSTERS), POSTERS);
    assert_int_equal(o.bad, 0);
    assert_int_equal(o.on_loop_thread, POSTERS * PER_POSTER);
    assert_true(cp_loop_jobs(o.l) >= POSTERS * PER_POSTER);
    cp_loop_free(o.l);
}

/* What was posted before free still runs; after free posting is refused by the caller's rule
 * (the loop is gone): here, a post from inside a job after stop began is refused. */
struct late {
    struct cp_loop *l;
    int ran, refused;
};

static void late_second(void *arg) { ((struct late *)arg)->ran++; }

static void late_first(void *arg)
{
    struct late *t = arg;
    t->ran++;
    /* cp_loop_free has marked the loop stopping by now only if it was called first: post
     * from here is accepted (the loop still runs jobs) */
    if (cp_loop_post(t->l, late_second, t) != 0)
        t->refused++;
}

static void test_loop__free_runs_what_was_posted(void **state)
{
    (void)state;
    struct late t = {0};
    t.l = cp_loop_new();
    assert_int_equal(cp_loop_post(t.l, late_first, &t), 0);
    cp_loop_free(t.l);
    /* the first job ran; its own post was either run or refused, never lost in between */
    assert_int_equal(t.ran + t.refused, 2);
    assert_true(t.ran >= 1);
}

/* ---- timers ------------------------------------------------------------------------------------ */

struct timers {
    struct cp_loop *l;
    struct cp_timer *cancelled;
    int fired, fired_cancelled;
    int64_t t0, at;
    struct waitbox box;
};

static void timer_fn(void *arg)
{
    struct timers *t = arg;
    t->fired++;
    t->at = cp_mono_ns();
    box_signal(&t->box);
}

static void cancelled_fn(void *arg) { ((struct timers *)arg)->fired_cancelled++; }

static void timers_start(void *arg)
{
    struct timers *t = arg;
    t->t0 = cp_mono_ns();
    /* cmocka asserts only on the test thread: record, check there */
    t->cancelled = cp_timer_start(t->l, 20, cancelled_fn, t);
    if (!cp_timer_start(t->l, 50, timer_fn, t))
        t->fired = -100;
    cp_timer_cancel(t->cancelled);
}

static void test_loop__timers_fire_once_or_never(void **state)
{
    (void)state;
    struct timers t = {0};
    box_init(&t.box);
    t.l = cp_loop_new();
    assert_int_equal(cp_loop_post(t.l, timers_start, &t), 0);
    assert_int_equal(box_wait(&t.box, 1), 1);
    cp_loop_free(t.l);
    assert_int_equal(t.fired, 1);
    assert_int_equal(t.fired_cancelled, 0);
    assert_true(t.at - t.t0 >= 45 * 1000000LL); /* not before its time */
}

/* ---- HTTP transfers ---------------------------------------------------------------------------- */

/* A loopback HTTP/1.1 server: one thread per connection, each request held until `open`
 * requests are in flight at once (so the test sees how many overlap), or 2 s pass. */
struct server {
    int fd, port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int conns, peak_conns, inflight, peak, release_at;
    int accepted, close_after_answer, closed; /* closed: connections the server closed */
    pthread_t th;
    int stop;
};

static void *serve_conn(void *arg);

struct conn_arg {
    struct server *s;
    int fd;
};

static void *accept_loop(void *arg)
{
    struct server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_mutex_lock(&s->mu);
        s->accepted++;
        pthread_mutex_unlock(&s->mu);
        struct conn_arg *a = malloc(sizeof *a);
        *a = (struct conn_arg){s, c};
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, a);
        pthread_detach(t);
    }
}

static void *serve_conn(void *arg)
{
    struct conn_arg *a = arg;
    struct server *s = a->s;
    int c = a->fd;
    free(a);
    pthread_mutex_lock(&s->mu);
    s->conns++;
    if (s->conns > s->peak_conns)
        s->peak_conns = s->conns;
    pthread_mutex_unlock(&s->mu);
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(c, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        pthread_mutex_lock(&s->mu);
        s->inflight++;
        if (s->inflight > s->peak)
            s->peak = s->inflight;
        pthread_cond_broadcast(&s->cv);
        struct timespec dl = cp_deadline(CLOCK_REALTIME, 2000);
        while (s->inflight < s->release_at && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0)
            ;
        pthread_mutex_unlock(&s->mu);
        static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        ssize_t w = write(c, resp, sizeof resp - 1);
        (void)w;
        pthread_mutex_lock(&s->mu);
        s->inflight--;
        pthread_mutex_unlock(&s->mu);
        if (s->close_after_answer)
            break;
        size_t used = (size_t)(end + 4 - buf);
        memmove(buf, buf + used, have - used);
        have -= used;
    }
    close(c);
    pthread_mutex_lock(&s->mu);
    s->conns--;
    s->closed++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void server_start(struct server *s, int release_at)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->release_at = release_at;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 256), 0);
    socklen_t al = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, accept_loop, s);
}

/* Stops accepting, then waits (20 s at most) for every connection thread to be done with s:
 * they are detached and s lives on the test's stack. The clients must have closed theirs. */
static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->th, NULL);
    struct timespec dl = cp_deadline(CLOCK_REALTIME, 20000);
    pthread_mutex_lock(&s->mu);
    while (s->closed < s->accepted && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0)
        ;
    int left = s->accepted - s->closed;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(left, 0);
}

struct xfers {
    struct cp_loop *l;
    struct cp_http *h;
    struct server *s;
    long cap;
    int n;
    CURL *easy[64];
    int codes[64], on_loop, done;
    _Atomic int running, queued;
    int max_queued_seen;
    struct waitbox box;
};

struct slot {
    struct xfers *xs;
    int i;
};

static struct slot slots[64];

static void slot_done(void *arg, int code)
{
    struct slot *sl = arg;
    struct xfers *xs = sl->xs;
    xs->codes[sl->i] = code;
    if (cp_loop_is_current(xs->l))
        xs->on_loop++;
    curl_easy_cleanup(xs->easy[sl->i]);
    if (++xs->done == xs->n) {
        cp_http_free(xs->h);
        box_signal(&xs->box);
    }
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    (void)p, (void)ud;
    return sz * n;
}

static void xfers_start(void *arg)
{
    struct xfers *xs = arg;
    xs->h = cp_http_new(xs->l, xs->cap, &xs->running, &xs->queued);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", xs->s->port);
    for (int i = 0; i < xs->n; i++) {
        CURL *e = curl_easy_init();
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
        xs->easy[i] = e;
        slots[i] = (struct slot){xs, i};
        if (cp_http_add(xs->h, e, slot_done, &slots[i]) != 0)
            xs->codes[i] = -1; /* checked on the test thread */
    }
    xs->max_queued_seen = atomic_load(&xs->queued);
}

static void run_transfers(struct xfers *xs)
{
    box_init(&xs->box);
    xs->l = cp_loop_new();
    assert_int_equal(cp_loop_post(xs->l, xfers_start, xs), 0);
    assert_int_equal(box_wait(&xs->box, 1), 1);
    cp_loop_free(xs->l);
}

static void test_loop__transfers_overlap(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 16); /* every request waits until all 16 are in flight */
    struct xfers xs = {.s = &s, .n = 16, .cap = 0};
    run_transfers(&xs);
    server_stop(&s);
    for (int i = 0; i < xs.n; i++)
        assert_int_equal(xs.codes[i], CURLE_OK);
    assert_int_equal(s.peak, 16);
    assert_int_equal(xs.on_loop, 16);
    assert_int_equal(xs.max_queued_seen, 16); /* none connected at the moment they were added */
    assert_int_equal(atomic_load(&xs.running), 0);
    assert_int_equal(atomic_load(&xs.queued), 0);
}

static void test_loop__connection_cap(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 64); /* never reached: each request is held 2 s at most, then answered */
    s.release_at = 3;     /* answer once three are in flight */
    struct xfers xs = {.s = &s, .n = 12, .cap = 3};
    run_transfers(&xs);
    server_stop(&s);
    for (int i = 0; i < xs.n; i++)
        assert_int_equal(xs.codes[i], CURLE_OK);
    assert_true(s.peak_conns <= 3);
    assert_int_equal(s.peak, 3);
}

/* Transfers one after another on one multi handle, each started by a job on the loop. */
struct seq {
    struct cp_loop *l;
    struct cp_http *h;
    char url[64];
    int code[8], n;
    struct waitbox box;
};

static void seq_done(void *arg, int code)
{
    struct seq *q = arg;
    q->code[q->n++] = code;
    box_signal(&q->box);
}

static void seq_start(void *arg)
{
    struct seq *q = arg;
    if (!q->h)
        q->h = cp_http_new(q->l, 0, NULL, NULL);
    static CURL *e;
    if (e)
        curl_easy_cleanup(e);
    e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, q->url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
    if (cp_http_add(q->h, e, seq_done, q) != 0)
        seq_done(q, -1);
}

static void seq_end(void *arg)
{
    struct seq *q = arg;
    cp_http_free(q->h);
    box_signal(&q->box);
}

/* Waits (20 s at most) until the server has closed n connections. */
static void server_wait_closed(struct server *s, int n)
{
    struct timespec dl = cp_deadline(CLOCK_REALTIME, 20000);
    pthread_mutex_lock(&s->mu);
    while (s->closed < n && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
}

/* Keep-alive connections go back to libcurl's pool: sequential transfers share one
 * connection; one the server closed while it waited in the pool is not used again, and the
 * next transfer opens a fresh one. */
static void test_loop__pooled_connections(void **state)
{
    (void)state;
    struct server s;
    server_start(&s, 1);
    struct seq q = {0};
    box_init(&q.box);
    snprintf(q.url, sizeof q.url, "http://127.0.0.1:%d/x", s.port);
    q.l = cp_loop_new();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cp_loop_post(q.l, seq_start, &q), 0);
        assert_int_equal(box_wait(&q.box, i + 1), i + 1);
    }
    assert_int_equal(s.accepted, 1); /* one connection, reused */

    s.close_after_answer = 1; /* the next answer is the connection's last */
    assert_int_equal(cp_loop_post(q.l, seq_start, &q), 0);
    assert_int_equal(box_wait(&q.box, 4), 4);
    server_wait_closed(&s, 1);
    s.close_after_answer = 0;
    assert_int_equal(cp_loop_post(q.l, seq_start, &q), 0);
    assert_int_equal(box_wait(&q.box, 5), 5);
    assert_int_equal(s.accepted, 2); /* the dead one was not used */

    assert_int_equal(cp_loop_post(q.l, seq_end, &q), 0);
    assert_int_equal(box_wait(&q.box, 6), 6);
    cp_loop_free(q.l);
    server_stop(&s);
    for (int i = 0; i < 5; i++)
        assert_int_equal(q.code[i], CURLE_OK);
}

/* A listener whose accept queue is full: connections to it hang in SYN_SENT. */
struct blackhole {
    int fd, port, fill[8];
};

static void blackhole_start(struct blackhole *b)
{
    b->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(b->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(b->fd, 0), 0);
    socklen_t al = sizeof a;
    getsockname(b->fd, (struct sockaddr *)&a, &al);
    b->port = ntohs(a.sin_port);
    for (int i = 0; i < 8; i++) { /* never accepted: the queue stays full */
        b->fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int rc = connect(b->fill[i], (struct sockaddr *)&a, sizeof a);
        (void)rc;
    }
}

static void blackhole_stop(struct blackhole *b)
{
    for (int i = 0; i < 8; i++)
        close(b->fill[i]);
    close(b->fd);
}

struct hang {
    struct cp_loop *l;
    struct cp_http *h;
    CURL *e;
    char url[64];
    long connect_ms;
    int64_t abort_ms; /* > 0: abort the transfer this long after it started */
    int code;         /* CURLcode, or -2 when aborted */
    struct waitbox box;
};

static void hang_done(void *arg, int code)
{
    struct hang *g = arg;
    g->code = code;
    box_signal(&g->box);
}

static void hang_abort(void *arg)
{
    struct hang *g = arg;
    cp_http_abort(g->h, g->e);
    hang_done(g, -2);
}

static void hang_start(void *arg)
{
    struct hang *g = arg;
    if (!g->h)
        g->h = cp_http_new(g->l, 0, NULL, NULL);
    if (g->e)
        curl_easy_cleanup(g->e);
    g->e = curl_easy_init();
    curl_easy_setopt(g->e, CURLOPT_URL, g->url);
    curl_easy_setopt(g->e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(g->e, CURLOPT_CONNECTTIMEOUT_MS, g->connect_ms);
    curl_easy_setopt(g->e, CURLOPT_TIMEOUT_MS, 20000L);
    if (cp_http_add(g->h, g->e, hang_done, g) != 0)
        hang_done(g, -1);
    else if (g->abort_ms > 0)
        cp_timer_start(g->l, g->abort_ms, hang_abort, g);
}

static void hang_end(void *arg)
{
    struct hang *g = arg;
    curl_easy_cleanup(g->e);
    cp_http_free(g->h);
    box_signal(&g->box);
}

/* A socket that never finishes connecting is closed by libcurl itself (on its connect timeout,
 * or when the transfer is aborted) without the close-socket callback: the loop must forget
 * its watch, keep running, and serve the next transfers on the same multi handle. */
static void test_loop__connect_never_finishes(void **state)
{
    (void)state;
    struct blackhole b;
    blackhole_start(&b);
    struct server s;
    server_start(&s, 1);
    struct hang g = {.connect_ms = 300};
    box_init(&g.box);
    g.l = cp_loop_new();
    snprintf(g.url, sizeof g.url, "http://127.0.0.1:%d/x", b.port);

    assert_int_equal(cp_loop_post(g.l, hang_start, &g), 0); /* connect timeout */
    assert_int_equal(box_wait(&g.box, 1), 1);
    assert_int_equal(g.code, CURLE_OPERATION_TIMEDOUT);

    g.connect_ms = 10000;
    g.abort_ms = 100; /* aborted while it connects */
    assert_int_equal(cp_loop_post(g.l, hang_start, &g), 0);
    assert_int_equal(box_wait(&g.box, 2), 2);
    assert_int_equal(g.code, -2);

    g.abort_ms = 0; /* the loop and the multi handle still work */
    snprintf(g.url, sizeof g.url, "http://127.0.0.1:%d/x", s.port);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(cp_loop_post(g.l, hang_start, &g), 0);
        assert_int_equal(box_wait(&g.box, 3 + i), 3 + i);
        assert_int_equal(g.code, CURLE_OK);
    }
    assert_int_equal(s.accepted, 1);

    assert_int_equal(cp_loop_post(g.l, hang_end, &g), 0);
    assert_int_equal(box_wait(&g.box, 5), 5);
    cp_loop_free(g.l);
    server_stop(&s);
    blackhole_stop(&b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop__jobs_in_order_on_the_loop_thread),
        cmocka_unit_test(test_loop__free_runs_what_was_posted),
        cmocka_unit_test(test_loop__timers_fire_once_or_never),
        cmocka_unit_test(test_loop__transfers_overlap),
        cmocka_unit_test(test_loop__connection_cap),
        cmocka_unit_test(test_loop__pooled_connections),
        cmocka_unit_test(test_loop__connect_never_finishes),
    };
    int rc = cmocka_run_group_tests_name("loop", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
