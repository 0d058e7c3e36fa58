/*
 * upstream_sim.c - the built-in upstream the bench points the data sources at: libmicrohttpd
 * on 127.0.0.1 (ephemeral port, epoll, a small internal thread pool so a delayed answer holds
 * one pool thread, not the server).
 *
 *   GET /data?size=N&delay_ms=D[&id=K]   N bytes exactly (JSON {"d":"xx..."} from 8 bytes up,
 *                                        else 'x' bytes), after D ms, Cache-Control:
 *                                        public, max-age=300; id only makes keys distinct
 *   GET /rows?n=R&cols=C[&id=K]          a JSON array of R objects with C columns: "ts" (ms,
 *                                        one per second) then numbers "vI" and strings "sI"
 *
 * Counts requests per route and TCP connections (MHD_OPTION_NOTIFY_CONNECTION: opened, open
 * now, peak open) so reports can show the upstream load a run caused. Bodies are built once per
 * (route, size) and answered from the same MHD response, so the simulator costs as little as
 * it can per request.
 */
#include "bench_int.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_THREADS 4
#define MAX_DATA_BYTES (64L << 20)
#define MAX_ROWS 1000000L
#define MAX_COLS 64L
#define MAX_DELAY_MS 60000L
#define MAX_CACHED 64

enum sim_route { SIM_DATA, SIM_ROWS };

struct sim_resp {
    enum sim_route route;
    long a, b;
    struct MHD_Response *r;
};

struct bench_sim {
    struct MHD_Daemon *d;
    pthread_mutex_t mu; /* guards resp / nresp */
    struct sim_resp resp[MAX_CACHED];
    size_t nresp;
    _Atomic uint64_t requests, data_requests, rows_requests;
    _Atomic uint64_t opened, open, peak;
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

static struct MHD_Response *build(enum sim_route route, long a, long b)
{
    size_t len = 0;
    char *body = route == SIM_DATA ? make_data(a, &len) : make_rows(a, b, &len);
    if (!body)
        return NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type",
                            route == SIM_DATA && a < 8 ? "application/octet-stream"
                                                       : "application/json");
    MHD_add_response_header(r, "Cache-Control", "public, max-age=300");
    return r;
}

/* The response for (route, a, b). *temp = 1 when the table is full and the caller must
 * destroy it after queueing; otherwise the table keeps it until the simulator stops (queueing
 * takes MHD's own reference for as long as a connection sends it). */
static struct MHD_Response *response_for(struct bench_sim *s, enum sim_route route, long a, long b,
                                         int *temp)
{
    *temp = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nresp; i++)
        if (s->resp[i].route == route && s->resp[i].a == a && s->resp[i].b == b) {
            struct MHD_Response *r = s->resp[i].r;
            pthread_mutex_unlock(&s->mu);
            return r;
        }
    pthread_mutex_unlock(&s->mu);
    /* built outside the lock: a large body must not stall the other pool threads; two
     * threads racing on the same new key both build, the loser's copy is temporary */
    struct MHD_Response *r = build(route, a, b);
    if (!r)
        return NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nresp; i++)
        if (s->resp[i].route == route && s->resp[i].a == a && s->resp[i].b == b) {
            pthread_mutex_unlock(&s->mu);
            *temp = 1;
            return r;
        }
    if (s->nresp < MAX_CACHED)
        s->resp[s->nresp++] = (struct sim_resp){route, a, b, r};
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    struct bench_sim *s = cls;
    /* answer only once the whole request is in: a response queued from the first callback
     * makes MHD close the connection, and the bench must see keep-alive behaviour */
    if (!*con_cls) {
        *con_cls = s; /* any non-NULL marker */
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* bodies are ignored */
        return MHD_YES;
    }
    atomic_fetch_add(&s->requests, 1);
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return plain(con, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
    int bad = 0;
    enum sim_route route;
    long a, b = 0;
    if (!strcmp(url, "/data")) {
        route = SIM_DATA;
        a = arg_long(con, "size", 1024, 0, MAX_DATA_BYTES, &bad);
        atomic_fetch_add(&s->data_requests, 1);
    } else if (!strcmp(url, "/rows")) {
        route = SIM_ROWS;
        a = arg_long(con, "n", 100, 0, MAX_ROWS, &bad);
        b = arg_long(con, "cols", 4, 1, MAX_COLS, &bad);
        atomic_fetch_add(&s->rows_requests, 1);
    } else {
        return plain(con, MHD_HTTP_NOT_FOUND, "unknown route\n");
    }
    long delay = arg_long(con, "delay_ms", 0, 0, MAX_DELAY_MS, &bad);
    if (bad)
        return plain(con, MHD_HTTP_BAD_REQUEST, "bad size, n, cols or delay_ms\n");
    if (delay > 0) {
        struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    int temp;
    struct MHD_Response *r = response_for(s, route, a, b, &temp);
    if (!r)
        return plain(con, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    enum MHD_Result q = MHD_queue_response(con, MHD_HTTP_OK, r);
    if (temp)
        MHD_destroy_response(r);
    return q;
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

int bench_sim_start(struct bench_sim **out, char *url, size_t usize, struct cp_err *err)
{
    *out = NULL;
    struct bench_sim *s = calloc(1, sizeof *s);
    if (!s)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)POOL_THREADS,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096, MHD_OPTION_END);
    if (!s->d) {
        pthread_mutex_destroy(&s->mu);
        free(s);
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

void bench_sim_stop(struct bench_sim *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    for (size_t i = 0; i < s->nresp; i++)
        MHD_destroy_response(s->resp[i].r);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void bench_sim_counts(struct bench_sim *s, struct bench_sim_counts *c)
{
    c->requests = atomic_load(&s->requests);
    c->data_requests = atomic_load(&s->data_requests);
    c->rows_requests = atomic_load(&s->rows_requests);
    c->conns_opened = atomic_load(&s->opened);
    c->conns_open = atomic_load(&s->open);
    c->conns_peak = atomic_load(&s->peak);
}

void bench_sim_reset_peak(struct bench_sim *s)
{
    atomic_store(&s->peak, atomic_load(&s->open));
}
