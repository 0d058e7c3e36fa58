/*
 * bare_server.c - the baseline "bare gRPC round trip of the same size": a gRPC core server in
 * the bench process, on its own unix socket, that answers /pluginv2.Resource/CallResource with
 * one prepared CallResourceResponse (the code, headers and body size the plugin returns on a
 * cache hit) and does nothing else: no request decoding, no lookup.
 *
 * Same model as the plugin's host (one CQ, one worker thread, a registered method with the
 * payload pre-read, a pool of pending request_registered_call). It has no generic
 * request_call: the bench calls nothing else on it.
 *
 * The same server also runs in a child process (this executable, "__bare-server FILE"): the
 * fair twin of the plugin, which also answers from another process.
 */
#include "bench_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PENDING 16

enum bare_kind { BARE_NEW, BARE_OPS, BARE_SHUTDOWN };

struct bare_tag {
    enum bare_kind kind;
    struct bare_call *c;
};

struct bare_call {
    struct bench_bare *b;
    struct bare_tag t_new, t_ops;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload, *reply;
    int cancelled;
};

struct bench_bare {
    grpc_server *srv;
    grpc_completion_queue *cq;
    void *method;
    pthread_t worker;
    int worker_started;
    struct bare_tag shutdown_tag;
    uint8_t *msg;
    size_t len;
    char dir[256], sock[300];
};

static void call_free(struct bare_call *c)
{
    if (c->call)
        grpc_call_unref(c->call);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    grpc_metadata_array_destroy(&c->md);
    free(c);
}

static int post_request(struct bench_bare *b)
{
    struct bare_call *c = calloc(1, sizeof *c);
    if (!c)
        return CP_ENOMEM;
    c->b = b;
    c->t_new = (struct bare_tag){BARE_NEW, c};
    c->t_ops = (struct bare_tag){BARE_OPS, c};
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_registered_call(b->srv, b->method, &c->call, &c->deadline, &c->md,
                                            &c->payload, b->cq, b->cq, &c->t_new) != GRPC_CALL_OK) {
        call_free(c);
        return CP_EINTERNAL;
    }
    return 0;
}

/* Initial metadata, the one message, OK status and the close, in one batch. */
static void answer(struct bare_call *c)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)c->b->msg, c->b->len);
    c->reply = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->reply;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, ops, 4, &c->t_ops, NULL) != GRPC_CALL_OK)
        call_free(c);
}

static void *worker_main(void *arg)
{
    struct bench_bare *b = arg;
    int stopping = 0;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct bare_tag *t = ev.tag;
        switch (t->kind) {
        case BARE_SHUTDOWN:
            stopping = 1;
            grpc_completion_queue_shutdown(b->cq);
            break;
        case BARE_NEW:
            if (!ev.success || stopping) {
                call_free(t->c);
                break;
            }
            /* re-post before handling, so a burst never finds the pool empty */
            post_request(b);
            answer(t->c);
            break;
        case BARE_OPS:
            call_free(t->c);
            break;
        }
    }
    return NULL;
}

int bench_bare_start(const void *msg, size_t len, struct bench_bare **out, char *target,
                     size_t tsize, struct cp_err *err)
{
    *out = NULL;
    struct bench_bare *b = calloc(1, sizeof *b);
    if (!b)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    b->msg = malloc(len ? len : 1);
    if (!b->msg) {
        free(b);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    memcpy(b->msg, msg, len);
    b->len = len;
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/cpbench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(b->dir)) {
        free(b->msg);
        free(b);
        return cp_err_set(err, CP_EINTERNAL, "mkdtemp failed");
    }
    snprintf(b->sock, sizeof b->sock, "%s/bare.sock", b->dir);
    b->shutdown_tag = (struct bare_tag){BARE_SHUTDOWN, NULL};
    b->srv = grpc_server_create(NULL, NULL);
    b->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(b->srv, b->cq, NULL);
    b->method = grpc_server_register_method(b->srv, "/pluginv2.Resource/CallResource", NULL,
                                            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    char addr[320];
    snprintf(addr, sizeof addr, "unix:%s", b->sock);
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(b->srv, addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0) {
        cp_err_set(err, CP_EINTERNAL, "bare server: cannot listen on %s", addr);
        grpc_server_destroy(b->srv);
        grpc_completion_queue_shutdown(b->cq);
        while (grpc_completion_queue_next(b->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
        grpc_completion_queue_destroy(b->cq);
        rmdir(b->dir);
        free(b->msg);
        free(b);
        return err ? err->code : CP_EINTERNAL;
    }
    grpc_server_start(b->srv);
    for (int i = 0; i < PENDING; i++)
        post_request(b);
    if (pthread_create(&b->worker, NULL, worker_main, b) == 0)
        b->worker_started = 1;
    snprintf(target, tsize, "%s", addr);
    *out = b;
    if (!b->worker_started) {
        bench_bare_stop(b);
        *out = NULL;
        return cp_err_set(err, CP_EINTERNAL, "bare server: no worker thread");
    }
    return 0;
}

void bench_bare_stop(struct bench_bare *b)
{
    if (!b)
        return;
    grpc_server_shutdown_and_notify(b->srv, b->cq, &b->shutdown_tag);
    grpc_server_cancel_all_calls(b->srv);
    if (b->worker_started) {
        pthread_join(b->worker, NULL);
    } else {
        worker_main(b); /* nobody drains the queue yet: do it on this thread */
    }
    grpc_server_destroy(b->srv);
    grpc_completion_queue_destroy(b->cq);
    unlink(b->sock);
    rmdir(b->dir);
    free(b->msg);
    free(b);
}

/* ---- the same server in a child process ------------------------------------------------ */

/* Reads one line from fd within timeout_ms (no newline kept). */
static int read_line(int fd, char *buf, size_t size, int timeout_ms)
{
    size_t n = 0;
    int64_t deadline = cp_mono_ns() + (int64_t)timeout_ms * 1000000;
    while (n < size - 1) {
        int64_t left = (deadline - cp_mono_ns()) / 1000000;
        struct pollfd pf = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return -1;
        ssize_t k = read(fd, buf + n, 1);
        if (k <= 0)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = 0;
            return 0;
        }
        n++;
    }
    return -1;
}

pid_t bench_bare_child_start(const uint8_t *msg, size_t len, char *target, size_t tsize, char *file,
                             size_t fsize, struct cp_err *err)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(file, fsize, "%s/cpbench-msg-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(file);
    if (fd < 0) {
        cp_err_set(err, CP_EINTERNAL, "mkstemp: %s", strerror(errno));
        return -1;
    }
    ssize_t w = write(fd, msg, len);
    close(fd);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    int out[2];
    if (w != (ssize_t)len || n <= 0 || pipe2(out, O_CLOEXEC) != 0) {
        unlink(file);
        cp_err_set(err, CP_EINTERNAL, "cannot prepare the bare server child");
        return -1;
    }
    self[n] = 0;
    const char *argv[] = {self, "__bare-server", file, NULL};
    pid_t pid = bench_spawn(argv, NULL, out[1], 2);
    close(out[1]);
    if (pid < 0 || read_line(out[0], target, tsize, BENCH_START_TIMEOUT_MS) != 0 ||
        strncmp(target, "unix:", 5) != 0) {
        if (pid > 0)
            bench_child_stop(pid, 1000);
        close(out[0]);
        unlink(file);
        cp_err_set(err, CP_EINTERNAL, "the bare server child did not start");
        return -1;
    }
    close(out[0]);
    return pid;
}

int bench_bare_child_main(const char *file)
{
    FILE *f = fopen(file, "rb");
    if (!f)
        return 1;
    struct cp_buf b = {0};
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (!rc && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = cp_buf_add(&b, chunk, n);
    fclose(f);
    struct bench_bare *srv = NULL;
    char target[400];
    struct cp_err err = {0};
    if (rc || bench_bare_start(b.p ? b.p : "", b.len, &srv, target, sizeof target, &err) != 0) {
        cp_buf_free(&b);
        fprintf(stderr, "bench bare server: %s\n", cp_err_text(&err));
        return 1;
    }
    cp_buf_free(&b);
    printf("%s\n", target);
    fflush(stdout);
    while (!atomic_load(&bench_interrupted)) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    bench_bare_stop(srv);
    return 0;
}
