/*
 * upstream_sim.c - the built-in upstream the bench points the data sources at: libmicrohttpd
 * on 127.0.0.1 (ephemeral port, epoll, a small internal thread pool). A delayed answer holds
 * no thread: the connection is suspended and a timer thread resumes it when it is due, so a
 * slow upstream can have as many answers in flight as clients ask for.
 *
 *   GET /data?size=N&delay_ms=D[&id=K]   N bytes exactly (JSON {"d":"xx..."} from 8 bytes up,
 *                                        else 'x' bytes), after D ms, Cache-Control:
 *                                        public, max-age=300; id only makes keys distinct
 *   GET /rows?n=R&cols=C[&id=K]          a JSON array of R objects with C columns: "ts" (ms,
 *                                        one per second) then numbers "vI" and strings "sI"
 *   any other path (workloads)           answered by the profile (bench_sim_set_profile): a
 *                                        latency drawn from its distribution, then 503 with its
 *                                        error rate, else 200 with the profile's Cache-Control;
 *                                        paths under /q/ get a rows array (queries), others a
 *                                        JSON body whose size is fixed per path (log-uniform in
 *                                        the profile's range)
 *
 * Two profile options make it answer as real APIs do. With a query step, a /q/ path is a
 * time-filtering API: the rows of [from, to) (its `from` and `to` parameters, epoch ms), one
 * per step, so an answer's size follows its range and the rows of two adjacent ranges
 * concatenate to those of their union (what split queries rely on). With validators, every
 * profile answer carries an ETag and a Last-Modified that change when the path's content does
 * (every `change_ms`, at a phase of its own), and a request whose If-None-Match (else
 * If-Modified-Since) still matches gets a 304 without a body.
 *
 * Counts requests per route, profile errors, 304s, conditional requests, body bytes of the
 * profile's answers, TCP connections (opened, open now, peak open) and delayed answers waiting
 * (now and peak) so reports can show the upstream load a run caused. It takes as many
 * connections as the file descriptor limit leaves room for (up to MAX_CONNECTIONS), with a
 * listen backlog as deep as the kernel allows, so a burst of thousands of new connections is
 * neither refused nor left waiting for a SYN retry. Fixed bodies are built once per (route,
 * size) and answered from the same MHD response, so the simulator costs as little as it can;
 * answers that depend on the request (time rows, validators) are built for it.
 */
#include "bench_int.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define POOL_THREADS 4
#define MAX_CONNECTIONS 16384
#define MIN_CONNECTIONS 256
#define FD_RESERVE 256 /* descriptors the rest of the bench process may need */
#define LISTEN_BACKLOG 4096
#define MAX_DATA_BYTES (64L << 20)
#define MAX_ROWS 1000000L
#define MAX_COLS 64L
#define MAX_DELAY_MS 60000L
#define MAX_TIME_MS (1LL << 52)
#define MAX_CACHED 256
#define SIZE_STEPS 8.0 /* profile sizes are rounded to 8 steps per doubling */
#define SIM_UNAVAILABLE "{\"error\":\"simulated upstream failure\"}"

enum sim_route { SIM_DATA, SIM_ROWS };

struct sim_resp {
    enum sim_route route;
    long a, b;
    struct MHD_Response *r;
    size_t len; /* body bytes */
};

/* One request's state across the handler's calls (freed when MHD completes it). */
struct sim_req {
    int phase; /* 0 reading, 1 suspended until due, 2 resumed */
    unsigned code;
    struct MHD_Response *r;
    int temp; /* r is ours to destroy once queued */
    struct MHD_Connection *con;
    int64_t due_ns;
};

struct bench_sim {
    struct MHD_Daemon *d;
    pthread_mutex_t mu; /* guards resp / nresp and profile */
    struct sim_resp resp[MAX_CACHED];
    size_t nresp;
    struct bench_upstream_profile profile;
    _Atomic uint64_t requests, data_requests, rows_requests, work_requests, work_errors;
    _Atomic uint64_t work_bytes, work_not_modified, work_conditional;
    _Atomic uint64_t opened, open, peak;
    _Atomic uint64_t draws; /* per-request random streams */
    struct MHD_Response *error_resp;
    /* delayed answers: a min-heap by due time, served by the timer thread */
    pthread_mutex_t tmu;
    pthread_cond_t tcv;
    struct sim_req **heap;
    size_t heap_len, heap_cap;
    size_t heap_peak; /* most delayed answers waiting at once since the last reset */
    int64_t first_delayed_ns, last_delayed_ns; /* arrivals of delayed requests since then */
    int stopping;
    pthread_t timer;
    int timer_started;
};

static long arg_long(struct MHD_Connection *con, const char *name, long def, long min, long max,
                     int *bad)
{
    const char *v = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, name);
    if (!v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < min || n > max) {
        *bad = 1;
        return def;
    }
    return n;
}

static char *make_data(long n, size_t *len)
{
    char *p = malloc(n ? (size_t)n : 1);
    if (!p)
        return NULL;
    memset(p, 'x', (size_t)n);
    if (n >= 8) {
        memcpy(p, "{\"d\":\"", 6);
        memcpy(p + n - 2, "\"}", 2);
    }
    *len = (size_t)n;
    return p;
}

static char *make_rows(long rows, long cols, size_t *len)
{
    struct cp_buf b = {0};
    const int64_t t0 = 1700000000000LL;
    int rc = cp_buf_add(&b, "[", 1);
    for (long i = 0; i < rows && !rc; i++) {
        rc = cp_buf_addf(&b, "%s{\"ts\":%lld", i ? "," : "", (long long)(t0 + i * 1000));
        for (long c = 1; c < cols && !rc; c++)
            rc = (c % 2) ? cp_buf_addf(&b, ",\"v%ld\":%.3f", c, (double)(i * c % 1000) / 7.0)
                         : cp_buf_addf(&b, ",\"s%ld\":\"row-%ld-%ld\"", c, i, c);
        if (!rc)
            rc = cp_buf_add(&b, "}", 1);
    }
    if (!rc)
        rc = cp_buf_add(&b, "]", 1);
    if (rc) {
        cp_buf_free(&b);
        return NULL;
    }
    return cp_buf_take(&b, len);
}

/* A response owning body (malloc'd, len bytes; freed on failure too). */
static struct MHD_Response *respond(char *body, size_t len, const char *type, const char *cc)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (cc && *cc)
        MHD_add_response_header(r, "Cache-Control", cc);
    return r;
}

static struct MHD_Response *build(enum sim_route route, long a, long b, const char *cc, size_t *len)
{
    *len = 0;
    char *body = route == SIM_DATA ? make_data(a, len) : make_rows(a, b, len);
    if (!body)
        return NULL;
    return respond(body, *len,
                   route == SIM_DATA && a < 8 ? "application/octet-stream" : "application/json",
                   cc);
}

/* The response for (route, a, b). *temp = 1 when the table is full and the caller must
 * destroy it after queueing; otherwise the table keeps it until the simulator stops or the
 * profile changes (queueing takes MHD's own reference for as long as a connection sends it).
 * The fixed routes carry "public, max-age=300", profile answers the profile's header
 * (profile: 1). */
static struct MHD_Response *response_for(struct bench_sim *s, enum sim_route route, long a, long b,
                                         int profile, int *temp, size_t *len)
{
    *temp = 0;
    /* profile answers are told apart from the fixed routes by a negative b */
    long tag = profile ? -1 - b : b;
    char cc[sizeof s->profile.cache_control];
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nresp; i++)
        if (s->resp[i].route == route && s->resp[i].a == a && s->resp[i].b == tag) {
            struct MHD_Response *r = s->resp[i].r;
            *len = s->resp[i].len;
            pthread_mutex_unlock(&s->mu);
            return r;
        }
    snprintf(cc, sizeof cc, "%s", profile ? s->profile.cache_control : "public, max-age=300");
    pthread_mutex_unlock(&s->mu);
    /* built outside the lock: a large body must not stall the other pool threads; two
     * threads racing on the same new key both build, the loser's copy is temporary */
    struct MHD_Response *r = build(route, a, b, cc, len);
    if (!r)
        return NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nresp; i++)
        if (s->resp[i].route == route && s->resp[i].a == a && s->resp[i].b == tag) {
            pthread_mutex_unlock(&s->mu);
            *temp = 1;
            return r;
        }
    if (s->nresp < MAX_CACHED)
        s->resp[s->nresp++] = (struct sim_resp){route, a, tag, r, *len};
    else
        *temp = 1;
    pthread_mutex_unlock(&s->mu);
    return r;
}

static enum MHD_Result plain(struct MHD_Connection *con, unsigned code, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result q = MHD_queue_response(con, code, r);
    MHD_destroy_response(r);
    return q;
}

/* ---- delays ------------------------------------------------------------------------------- */

static void heap_swap(struct sim_req **h, size_t i, size_t j)
{
    struct sim_req *x = h[i];
    h[i] = h[j];
    h[j] = x;
}

/* Queues rq for resumption at rq->due_ns. Called with tmu held. 0 or CP_ENOMEM. */
static int delay_push(struct bench_sim *s, struct sim_req *rq)
{
    if (s->heap_len == s->heap_cap) {
        size_t nc = s->heap_cap ? s->heap_cap * 2 : 256;
        struct sim_req **nh = realloc(s->heap, nc * sizeof *nh);
        if (!nh)
            return CP_ENOMEM;
        s->heap = nh;
        s->heap_cap = nc;
    }
    size_t i = s->heap_len++;
    if (s->heap_len > s->heap_peak)
        s->heap_peak = s->heap_len;
    s->heap[i] = rq;
    while (i && s->heap[(i - 1) / 2]->due_ns > s->heap[i]->due_ns) {
        heap_swap(s->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return 0;
}

static struct sim_req *delay_pop(struct bench_sim *s)
{
    struct sim_req *top = s->heap[0];
    s->heap[0] = s->heap[--s->heap_len];
    for (size_t i = 0;;) {
        size_t c = 2 * i + 1;
        if (c >= s->heap_len)
            break;
        if (c + 1 < s->heap_len && s->heap[c + 1]->due_ns < s->heap[c]->due_ns)
            c++;
        if (s->heap[i]->due_ns <= s->heap[c]->due_ns)
            break;
        heap_swap(s->heap, i, c);
        i = c;
    }
    return top;
}

/* Resumes suspended connections when they are due; all of them at once when stopping. A
 * connection is in the heap only once it is suspended (both happen under tmu); it is resumed
 * outside tmu so MHD's own locks are never taken under ours. */
static void *timer_main(void *arg)
{
    struct bench_sim *s = arg;
    struct MHD_Connection *due[64];
    pthread_mutex_lock(&s->tmu);
    for (;;) {
        int64_t now = cp_mono_ns();
        size_t n = 0;
        while (n < sizeof due / sizeof due[0] && s->heap_len &&
               (s->stopping || s->heap[0]->due_ns <= now)) {
            struct sim_req *rq = delay_pop(s);
            rq->phase = 2;
            due[n++] = rq->con;
        }
        if (n) {
            pthread_mutex_unlock(&s->tmu);
            for (size_t i = 0; i < n; i++)
                MHD_resume_connection(due[i]);
            pthread_mutex_lock(&s->tmu);
            continue;
        }
        if (s->stopping)
            break;
        if (!s->heap_len) {
            pthread_cond_wait(&s->tcv, &s->tmu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = s->heap[0]->due_ns - cp_mono_ns();
            if (wait > 0) {
                int64_t at = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + wait;
                ts.tv_sec = at / 1000000000LL;
                ts.tv_nsec = at % 1000000000LL;
                pthread_cond_timedwait(&s->tcv, &s->tmu, &ts);
            }
        }
    }
    pthread_mutex_unlock(&s->tmu);
    return NULL;
}

/* ---- answers that depend on the request ------------------------------------------------------ */

uint64_t bench_sim_path_hash(const char *p)
{
    uint64_t h = 1469598103934665603ull;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

char *bench_sim_time_rows(const char *path, int64_t from_ms, int64_t to_ms, int64_t step_ms,
                          size_t *len)
{
    struct cp_buf b = {0};
    uint64_t h = bench_sim_path_hash(path);
    int rc = cp_buf_add(&b, "[", 1);
    /* the first multiple of the step at or after from */
    int64_t t = floor_div(from_ms, step_ms) * step_ms;
    if (t < from_ms)
        t += step_ms;
    for (int first = 1; t < to_ms && !rc; t += step_ms, first = 0) {
        /* a value of the path and the time alone: every range agrees on every point */
        uint64_t x = h ^ (uint64_t)(t / step_ms);
        uint64_t v = bench_rand(&x);
        rc = cp_buf_addf(&b, "%s{\"time\":%" PRId64 ",\"value\":%.2f,\"count\":%u}",
                         first ? "" : ",", t, (double)(v % 100000) / 100.0,
                         (unsigned)((v >> 32) % 1000));
    }
    if (!rc)
        rc = cp_buf_add(&b, "]", 1);
    if (rc) {
        cp_buf_free(&b);
        return NULL;
    }
    return cp_buf_take(&b, len);
}

int64_t bench_sim_version(uint64_t path_hash, int64_t now_ms, int64_t change_ms, int64_t *since_ms)
{
    if (change_ms <= 0) {
        *since_ms = BENCH_SIM_EPOCH_MS;
        return 0;
    }
    int64_t phase = (int64_t)(path_hash % (uint64_t)change_ms);
    int64_t v = floor_div(now_ms + phase, change_ms);
    *since_ms = v * change_ms - phase;
    return v;
}

void bench_http_date(int64_t epoch_s, char *out, size_t size)
{
    time_t t = (time_t)epoch_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int bench_http_date_parse(const char *s, int64_t *epoch_s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = s ? strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm) : NULL;
    if (!end || *end)
        return -1;
    *epoch_s = (int64_t)timegm(&tm);
    return 0;
}

int bench_etag_matches(const char *if_none_match, const char *etag)
{
    /* weak comparison (RFC 9110 13.1.2): W/ is ignored, "*" matches any */
    for (const char *p = if_none_match; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return 1;
        if (!strncmp(p, "W/", 2))
            p += 2;
        size_t n = strcspn(p, ",");
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n && n == strlen(etag) && !memcmp(p, etag, n))
            return 1;
        p += strcspn(p, ",");
    }
    return 0;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* Size of a profile body for url: log-uniform in [lo, hi], fixed per path, in SIZE_STEPS
 * steps per doubling so the answers can be shared. */
static long profile_size(const struct bench_upstream_profile *p, const char *url)
{
    if (p->payload_hi <= p->payload_lo)
        return (long)p->payload_lo;
    uint64_t x = bench_sim_path_hash(url);
    double u = bench_rand_unit(&x);
    double lo = (double)(p->payload_lo ? p->payload_lo : 1);
    double octaves = log2((double)p->payload_hi / lo);
    double step = floor(u * octaves * SIZE_STEPS) / SIZE_STEPS;
    long n = (long)(lo * exp2(step));
    return n < (long)p->payload_lo ? (long)p->payload_lo : n;
}

/* A time-filtering API's answer: the rows of [from, to) one per step. NULL with rq->code 400
 * when from or to is missing or the range is too long. */
static struct MHD_Response *time_rows(struct MHD_Connection *con, const char *url, int64_t step,
                                      const char *cc, struct sim_req *rq, size_t *len)
{
    const char *a = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "from");
    const char *b = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "to");
    char *e1 = NULL, *e2 = NULL;
    long long from = a ? strtoll(a, &e1, 10) : 0, to = b ? strtoll(b, &e2, 10) : 0;
    /* times within some 140,000 years of 1970, so nothing below can overflow */
    if (!a || !b || e1 == a || *e1 || e2 == b || *e2 || llabs(from) > MAX_TIME_MS ||
        llabs(to) > MAX_TIME_MS || (to > from && (to - from) / step > MAX_ROWS)) {
        rq->code = MHD_HTTP_BAD_REQUEST;
        return NULL;
    }
    char *rows = bench_sim_time_rows(url, from, to, step, len);
    return rows ? respond(rows, *len, "application/json", cc) : NULL;
}

/* A 200 of the profile (or a 304 with validators). 0, or -1 with rq->code set (400) or not
 * (no memory). */
static int profile_answer(struct bench_sim *s, const struct bench_upstream_profile *p,
                          struct MHD_Connection *con, const char *url, int body, struct sim_req *rq)
{
    int rows = !strncmp(url, "/q/", 3);
    char etag[48] = "", modified[40] = "";
    rq->code = MHD_HTTP_OK;
    if (p->validators) {
        int64_t since;
        uint64_t h = bench_sim_path_hash(url);
        int64_t v = bench_sim_version(h, cp_now_ms(), p->change_ms, &since);
        snprintf(etag, sizeof etag, "\"%016" PRIx64 "-%" PRIx64 "\"", h, (uint64_t)v);
        bench_http_date(floor_div(since, 1000), modified, sizeof modified);
        const char *inm = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "If-None-Match");
        const char *ims = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "If-Modified-Since");
        int64_t ims_s;
        if (inm || ims)
            atomic_fetch_add(&s->work_conditional, 1);
        /* If-Modified-Since counts only without If-None-Match (RFC 9110 13.2.2) */
        if (inm ? bench_etag_matches(inm, etag)
                : ims && !bench_http_date_parse(ims, &ims_s) && floor_div(since, 1000) <= ims_s) {
            atomic_fetch_add(&s->work_not_modified, 1);
            rq->code = MHD_HTTP_NOT_MODIFIED;
            rq->r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            rq->temp = 1;
            if (!rq->r)
                return -1;
            MHD_add_response_header(rq->r, "ETag", etag);
            MHD_add_response_header(rq->r, "Last-Modified", modified);
            if (p->cache_control[0])
                MHD_add_response_header(rq->r, "Cache-Control", p->cache_control);
            return 0;
        }
    }
    size_t len = 0;
    if (rows && p->query_step_ms > 0) {
        rq->r = time_rows(con, url, p->query_step_ms, p->cache_control, rq, &len);
        rq->temp = 1;
    } else if (etag[0]) {
        /* its own response: the validators differ per path */
        rq->r = rows ? build(SIM_ROWS, p->query_rows, 4, p->cache_control, &len)
                     : build(SIM_DATA, profile_size(p, url), 0, p->cache_control, &len);
        rq->temp = 1;
    } else {
        rq->r = rows ? response_for(s, SIM_ROWS, p->query_rows, 4, 1, &rq->temp, &len)
                     : response_for(s, SIM_DATA, profile_size(p, url), 0, 1, &rq->temp, &len);
    }
    if (!rq->r)
        return -1;
    if (etag[0]) {
        MHD_add_response_header(rq->r, "ETag", etag);
        MHD_add_response_header(rq->r, "Last-Modified", modified);
    }
    if (body)
        atomic_fetch_add(&s->work_bytes, len);
    return 0;
}

/* Decides the answer and its delay; *delay_ms < 0 when the request is refused outright. */
static int decide(struct bench_sim *s, struct MHD_Connection *con, const char *url,
                  const char *method, struct sim_req *rq, long *delay_ms)
{
    *delay_ms = 0;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        rq->code = MHD_HTTP_METHOD_NOT_ALLOWED;
        return -1;
    }
    int bad = 0;
    if (!strcmp(url, "/data") || !strcmp(url, "/rows")) {
        enum sim_route route = url[1] == 'd' ? SIM_DATA : SIM_ROWS;
        long a, b = 0;
        if (route == SIM_DATA) {
            a = arg_long(con, "size", 1024, 0, MAX_DATA_BYTES, &bad);
            atomic_fetch_add(&s->data_requests, 1);
        } else {
            a = arg_long(con, "n", 100, 0, MAX_ROWS, &bad);
            b = arg_long(con, "cols", 4, 1, MAX_COLS, &bad);
            atomic_fetch_add(&s->rows_requests, 1);
        }
        *delay_ms = arg_long(con, "delay_ms", 0, 0, MAX_DELAY_MS, &bad);
        if (bad) {
            rq->code = MHD_HTTP_BAD_REQUEST;
            return -1;
        }
        rq->code = MHD_HTTP_OK;
        size_t len;
        rq->r = response_for(s, route, a, b, 0, &rq->temp, &len);
        return rq->r ? 0 : -1;
    }
    /* the profile */
    atomic_fetch_add(&s->work_requests, 1);
    pthread_mutex_lock(&s->mu);
    struct bench_upstream_profile p = s->profile;
    pthread_mutex_unlock(&s->mu);
    uint64_t rng = p.seed ^ (atomic_fetch_add(&s->draws, 1) * 0x9e3779b97f4a7c15ull);
    *delay_ms = (long)llround(bench_dist_draw(&p.latency, &rng));
    int body = strcmp(method, "HEAD") != 0;
    if (p.error_rate > 0 && bench_rand_unit(&rng) < p.error_rate) {
        atomic_fetch_add(&s->work_errors, 1);
        if (body)
            atomic_fetch_add(&s->work_bytes, sizeof SIM_UNAVAILABLE - 1);
        rq->code = MHD_HTTP_SERVICE_UNAVAILABLE;
        rq->r = s->error_resp;
        return 0;
    }
    return profile_answer(s, &p, con, url, body, rq);
}

static enum MHD_Result answer(struct sim_req *rq)
{
    enum MHD_Result q = MHD_queue_response(rq->con, rq->code, rq->r);
    if (rq->temp)
        MHD_destroy_response(rq->r);
    rq->r = NULL;
    return q;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    struct bench_sim *s = cls;
    struct sim_req *rq = *con_cls;
    /* answer only once the whole request is in: a response queued from the first callback
     * makes MHD close the connection, and the bench must see keep-alive behaviour */
    if (!rq) {
        if (!(rq = calloc(1, sizeof *rq)))
            return MHD_NO;
        rq->con = con;
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* bodies are ignored */
        return MHD_YES;
    }
    if (rq->phase == 2)
        return answer(rq);
    atomic_fetch_add(&s->requests, 1);
    long delay = 0;
    if (decide(s, con, url, method, rq, &delay) < 0) {
        if (rq->code == MHD_HTTP_METHOD_NOT_ALLOWED)
            return plain(con, rq->code, "GET only\n");
        if (rq->code == MHD_HTTP_BAD_REQUEST)
            return plain(con, rq->code, "bad size, n, cols, delay_ms, from or to\n");
        return plain(con, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    if (delay <= 0)
        return answer(rq);
    pthread_mutex_lock(&s->tmu);
    int rc = s->stopping ? -1 : 0;
    if (!rc) {
        int64_t now = cp_mono_ns();
        if (!s->first_delayed_ns)
            s->first_delayed_ns = now;
        s->last_delayed_ns = now;
        rq->due_ns = now + (int64_t)delay * 1000000;
        rq->phase = 1;
        rc = delay_push(s, rq);
    }
    if (!rc) {
        MHD_suspend_connection(con); /* under tmu: the timer cannot see it unsuspended */
        pthread_cond_signal(&s->tcv);
    }
    pthread_mutex_unlock(&s->tmu);
    if (rc) {
        rq->phase = 0;
        return answer(rq); /* stopping, or no memory for the timer: answer at once */
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con;
    (void)toe;
    struct sim_req *rq = *con_cls;
    if (rq && rq->r && rq->temp)
        MHD_destroy_response(rq->r);
    free(rq);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)con;
    (void)socket_context;
    struct bench_sim *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->opened, 1);
        uint64_t now = atomic_fetch_add(&s->open, 1) + 1;
        uint64_t peak = atomic_load(&s->peak);
        while (now > peak && !atomic_compare_exchange_weak(&s->peak, &peak, now))
            ;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub(&s->open, 1);
    }
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* Connections the daemon may hold: what the descriptor limit leaves after FD_RESERVE. */
static unsigned connection_limit(void)
{
    struct rlimit rl;
    rlim_t n = MAX_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = rl.rlim_cur > FD_RESERVE + MIN_CONNECTIONS ? rl.rlim_cur - FD_RESERVE : MIN_CONNECTIONS;
    return n > MAX_CONNECTIONS ? MAX_CONNECTIONS : (unsigned)n;
}

void bench_upstream_profile_init(struct bench_upstream_profile *p)
{
    memset(p, 0, sizeof *p);
    p->latency.kind = BENCH_DIST_FIXED;
    snprintf(p->latency.text, sizeof p->latency.text, "0");
    p->payload_lo = p->payload_hi = 1024;
    p->query_rows = 100;
    p->seed = 1;
}

int bench_sim_start(struct bench_sim **out, char *url, size_t usize, struct cp_err *err)
{
    *out = NULL;
    struct bench_sim *s = calloc(1, sizeof *s);
    if (!s)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->tmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->tcv, &ca);
    pthread_condattr_destroy(&ca);
    bench_upstream_profile_init(&s->profile);
    s->error_resp = MHD_create_response_from_buffer(
        sizeof SIM_UNAVAILABLE - 1, (void *)SIM_UNAVAILABLE, MHD_RESPMEM_PERSISTENT);
    if (!s->error_resp || pthread_create(&s->timer, NULL, timer_main, s) != 0) {
        bench_sim_stop(s);
        return cp_err_set(err, CP_EINTERNAL, "upstream simulator: cannot start");
    }
    MHD_add_response_header(s->error_resp, "Content-Type", "application/json");
    s->timer_started = 1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)POOL_THREADS, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit(), MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)LISTEN_BACKLOG, MHD_OPTION_END);
    if (!s->d) {
        bench_sim_stop(s);
        return cp_err_set(err, CP_EINTERNAL, "upstream simulator: MHD_start_daemon failed");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    if (!di || !di->port) {
        bench_sim_stop(s);
        return cp_err_set(err, CP_EINTERNAL, "upstream simulator: no bound port");
    }
    snprintf(url, usize, "http://127.0.0.1:%u", (unsigned)di->port);
    *out = s;
    return 0;
}

/* Drops the shared profile answers (called with mu held). */
static void drop_profile_answers(struct bench_sim *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->nresp; i++) {
        if (s->resp[i].b < 0)
            MHD_destroy_response(s->resp[i].r); /* MHD keeps its own reference while sending */
        else
            s->resp[k++] = s->resp[i];
    }
    s->nresp = k;
}

void bench_sim_set_profile(struct bench_sim *s, const struct bench_upstream_profile *p)
{
    pthread_mutex_lock(&s->mu);
    s->profile = *p;
    drop_profile_answers(s);
    pthread_mutex_unlock(&s->mu);
}

void bench_sim_stop(struct bench_sim *s)
{
    if (!s)
        return;
    /* every suspended connection is resumed before the daemon stops (MHD requires it) */
    if (s->timer_started) {
        pthread_mutex_lock(&s->tmu);
        s->stopping = 1;
        pthread_cond_signal(&s->tcv);
        pthread_mutex_unlock(&s->tmu);
        pthread_join(s->timer, NULL);
    }
    if (s->d)
        MHD_stop_daemon(s->d);
    for (size_t i = 0; i < s->nresp; i++)
        MHD_destroy_response(s->resp[i].r);
    if (s->error_resp)
        MHD_destroy_response(s->error_resp);
    free(s->heap);
    pthread_cond_destroy(&s->tcv);
    pthread_mutex_destroy(&s->tmu);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void bench_sim_counts(struct bench_sim *s, struct bench_sim_counts *c)
{
    c->requests = atomic_load(&s->requests);
    c->data_requests = atomic_load(&s->data_requests);
    c->rows_requests = atomic_load(&s->rows_requests);
    c->work_requests = atomic_load(&s->work_requests);
    c->work_errors = atomic_load(&s->work_errors);
    c->work_bytes = atomic_load(&s->work_bytes);
    c->work_not_modified = atomic_load(&s->work_not_modified);
    c->work_conditional = atomic_load(&s->work_conditional);
    c->conns_opened = atomic_load(&s->opened);
    c->conns_open = atomic_load(&s->open);
    c->conns_peak = atomic_load(&s->peak);
    pthread_mutex_lock(&s->tmu);
    c->delayed_now = s->heap_len;
    c->delayed_peak = s->heap_peak;
    c->first_delayed_ns = s->first_delayed_ns;
    c->last_delayed_ns = s->last_delayed_ns;
    pthread_mutex_unlock(&s->tmu);
}

void bench_sim_reset_peak(struct bench_sim *s)
{
    atomic_store(&s->peak, atomic_load(&s->open));
    pthread_mutex_lock(&s->tmu);
    s->heap_peak = s->heap_len;
    s->first_delayed_ns = s->last_delayed_ns = 0;
    pthread_mutex_unlock(&s->tmu);
}
