/*
 * grpc_client.c - the plugin seen from Grafana's side: launch as go-plugin does (environment,
 * handshake line on stdout, stdout/stderr drained by a thread), one gRPC core channel, the
 * CallResource (server streaming) and QueryData (unary) calls, and GRPCController/Shutdown.
 *
 * Calls are synchronous per thread: each calling thread owns a pluck completion queue and has
 * one call in flight; concurrency comes from several threads sharing the one channel (one
 * HTTP/2 connection), as Grafana's many request goroutines share its plugin client.
 */
#include "bench_int.h"

#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_RECV_BYTES (256 << 20)

extern char **environ;

/* What Grafana puts in a backend plugin's environment (go-plugin plus Grafana's cookie). */
static const char *const grafana_env[] = {
    "grafana_plugin_type=datasource", "PLUGIN_PROTOCOL_VERSIONS=2",  "PLUGIN_MIN_PORT=10000",
    "PLUGIN_MAX_PORT=25000",          "CACHINGPROXY_LOG_LEVEL=warn", NULL};

static gpr_timespec after_ms(int64_t ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ---- process and pipes ------------------------------------------------------------------- */

static int env_named(const char *const *list, const char *entry)
{
    const char *eq = strchr(entry, '=');
    size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
    for (; list && *list; list++)
        if (!strncmp(*list, entry, n) && (*list)[n] == '=')
            return 1;
    return 0;
}

/* extra_env first (it wins, getenv takes the first match), then Grafana's, then ours. */
static const char **build_env(const char *const *extra)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++)
        n++;
    for (const char *const *e = extra; e && *e; e++)
        n++;
    const char **out = calloc(n + 8, sizeof *out);
    if (!out)
        return NULL;
    size_t k = 0;
    for (const char *const *e = extra; e && *e; e++)
        out[k++] = *e;
    for (const char *const *e = grafana_env; *e; e++)
        if (!env_named(extra, *e))
            out[k++] = *e;
    for (char **e = environ; e && *e; e++)
        if (!env_named(extra, *e) && !env_named(grafana_env, *e))
            out[k++] = *e;
    out[k] = NULL;
    return out;
}

static void keep_stderr(struct bench_plugin *p, const char *b, size_t n)
{
    pthread_mutex_lock(&p->mu);
    size_t cap = sizeof p->errtail - 1;
    if (n >= cap) {
        memcpy(p->errtail, b + n - cap, cap);
        p->errlen = cap;
    } else {
        if (p->errlen + n > cap) {
            size_t drop = p->errlen + n - cap;
            memmove(p->errtail, p->errtail + drop, p->errlen - drop);
            p->errlen -= drop;
        }
        memcpy(p->errtail + p->errlen, b, n);
        p->errlen += n;
    }
    p->errtail[p->errlen] = 0;
    pthread_mutex_unlock(&p->mu);
}

/* Drains whatever the plugin writes after the handshake so it never blocks on a full pipe;
 * exits at EOF on both pipes (the plugin is gone). */
static void *drain_main(void *arg)
{
    struct bench_plugin *p = arg;
    struct pollfd fds[2] = {{p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}};
    char buf[4096];
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        int r = poll(fds, 2, 200);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0 && !(n < 0 && errno == EINTR))
                fds[i].fd = -1;
            else if (n > 0 && i == 1)
                keep_stderr(p, buf, (size_t)n);
        }
    }
    return NULL;
}

/* Reads the handshake line from stdout, keeping stderr meanwhile; bounded. */
static int read_handshake(struct bench_plugin *p, char *line, size_t size, struct cp_err *err)
{
    size_t n = 0;
    int64_t deadline = cp_mono_ns() + (int64_t)BENCH_START_TIMEOUT_MS * 1000000;
    struct pollfd fds[2] = {{p->out_fd, POLLIN, 0}, {p->err_fd, POLLIN, 0}};
    char buf[1024];
    while (n < size - 1) {
        int64_t left = (deadline - cp_mono_ns()) / 1000000;
        if (left <= 0)
            return cp_err_set(err, CP_ETIMEDOUT, "no handshake line within %d ms",
                              BENCH_START_TIMEOUT_MS);
        if (bench_interrupted)
            return cp_err_set(err, CP_ECANCELED, "interrupted");
        int r = poll(fds, 2, left > 100 ? 100 : (int)left);
        if (r < 0 && errno != EINTR)
            return cp_err_set(err, CP_EINTERNAL, "poll: %s", strerror(errno));
        if (fds[1].fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP))) {
            ssize_t k = read(fds[1].fd, buf, sizeof buf);
            if (k > 0)
                keep_stderr(p, buf, (size_t)k);
            else if (k == 0)
                fds[1].fd = -1;
        }
        if (fds[0].revents & (POLLIN | POLLHUP)) {
            /* byte by byte: nothing after the newline may be consumed here */
            ssize_t k = read(p->out_fd, line + n, 1);
            if (k == 0)
                return cp_err_set(err, CP_EUPSTREAM, "plugin closed stdout before the handshake");
            if (k > 0 && line[n++] == '\n') {
                line[n - 1] = 0;
                return 0;
            }
        }
    }
    return cp_err_set(err, CP_EUPSTREAM, "handshake line too long");
}

/* "1|2|unix|/path|grpc|" -> target "unix:/path" (or "ipv4:host:port" for tcp). */
static int parse_handshake(const char *line, char *target, size_t size, struct cp_err *err)
{
    char copy[512];
    snprintf(copy, sizeof copy, "%s", line);
    char *f[6] = {0}, *save = NULL, *s = copy;
    int nf = 0;
    for (char *t = strtok_r(s, "|", &save); t && nf < 6; t = strtok_r(NULL, "|", &save))
        f[nf++] = t;
    if (nf < 5 || strcmp(f[0], "1") || strcmp(f[1], "2") || strcmp(f[4], "grpc"))
        return cp_err_set(err, CP_EUPSTREAM, "unexpected handshake line \"%.200s\"", line);
    if (!strcmp(f[2], "unix"))
        snprintf(target, size, "unix:%s", f[3]);
    else if (!strcmp(f[2], "tcp"))
        snprintf(target, size, "ipv4:%s", f[3]);
    else
        return cp_err_set(err, CP_EUPSTREAM, "unknown network \"%.40s\" in handshake", f[2]);
    return 0;
}

int bench_plugin_start(struct bench_plugin *p, const char *exe, const char *const *extra_env,
                       struct cp_err *err)
{
    memset(p, 0, sizeof *p);
    p->pid = -1;
    p->out_fd = p->err_fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    if (access(exe, X_OK) != 0)
        return cp_err_set(err, CP_EINVAL, "plugin executable %s: %s", exe, strerror(errno));
    int out[2] = {-1, -1}, errp[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) || pipe2(errp, O_CLOEXEC)) {
        cp_err_set(err, CP_EINTERNAL, "pipe: %s", strerror(errno));
        goto fail;
    }
    const char **envp = build_env(extra_env);
    if (!envp) {
        cp_err_set(err, CP_ENOMEM, "out of memory");
        goto fail;
    }
    const char *argv[] = {exe, NULL};
    p->pid = bench_spawn(argv, envp, out[1], errp[1]);
    free(envp);
    close(out[1]);
    close(errp[1]);
    out[1] = errp[1] = -1;
    p->out_fd = out[0];
    p->err_fd = errp[0];
    if (p->pid < 0) {
        cp_err_set(err, CP_EINTERNAL, "fork: %s", strerror(errno));
        goto fail;
    }
    char line[512];
    if (read_handshake(p, line, sizeof line, err) != 0 ||
        parse_handshake(line, p->target, sizeof p->target, err) != 0)
        goto fail;
    if (pthread_create(&p->drain, NULL, drain_main, p) != 0) {
        cp_err_set(err, CP_EINTERNAL, "cannot start the drain thread");
        goto fail;
    }
    p->drain_started = 1;
    if (bench_chan_open(&p->chan, p->target, err) != 0)
        goto fail;
    return 0;
fail:
    if (out[1] >= 0)
        close(out[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    if (p->pid > 0) {
        char tail[sizeof p->errtail];
        int st = bench_child_stop(p->pid, 500);
        p->pid = -1;
        bench_plugin_stderr(p, tail, sizeof tail);
        if (st >= 0 && WIFEXITED(st) && err)
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     " (plugin exited with %d)", WEXITSTATUS(st));
        if (*tail)
            fprintf(stderr, "plugin stderr:\n%s\n", tail);
    }
    bench_plugin_stop(p);
    return err ? err->code : CP_EINTERNAL;
}

long bench_plugin_rss_kib(const struct bench_plugin *p) { return bench_rss_kib(p->pid); }

void bench_plugin_stderr(struct bench_plugin *p, char *out, size_t size)
{
    pthread_mutex_lock(&p->mu);
    snprintf(out, size, "%s", p->errtail);
    pthread_mutex_unlock(&p->mu);
}

/* go-plugin's graceful stop: the controller's Shutdown, answered with an Empty. */
/* Everything one call owns: the request, the answer being read, metadata and status. */
struct call_io {
    grpc_call *call;
    grpc_byte_buffer *bb, *rbb;
    grpc_metadata_array imd, tmd;
    grpc_status_code status;
    grpc_slice details;
};

static void call_open(struct call_io *io, grpc_channel *ch, grpc_completion_queue *cq,
                      void *method, int64_t timeout_ms, const void *req, size_t len)
{
    memset(io, 0, sizeof *io);
    io->call = grpc_channel_create_registered_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                                   after_ms(timeout_ms), NULL);
    grpc_slice s = len ? grpc_slice_from_static_buffer(req, len) : grpc_empty_slice();
    io->bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_metadata_array_init(&io->imd);
    grpc_metadata_array_init(&io->tmd);
    io->status = GRPC_STATUS_UNKNOWN;
    io->details = grpc_empty_slice();
}

static void call_close(struct call_io *io)
{
    if (io->rbb)
        grpc_byte_buffer_destroy(io->rbb);
    grpc_byte_buffer_destroy(io->bb);
    grpc_slice_unref(io->details);
    grpc_metadata_array_destroy(&io->imd);
    grpc_metadata_array_destroy(&io->tmd);
    grpc_call_unref(io->call);
}

/* The ops that send the request and read the first answer: the four common ones, then the
 * status for a unary call (n = 6) or nothing more for a stream read message by message
 * (n = 5). */
static void call_ops(grpc_op ops[6], struct call_io *io, int n)
{
    memset(ops, 0, 6 * sizeof *ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = io->bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &io->imd;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &io->rbb;
    if (n == 6) {
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &io->tmd;
        ops[5].data.recv_status_on_client.status = &io->status;
        ops[5].data.recv_status_on_client.status_details = &io->details;
    }
}

static int controller_shutdown(struct bench_chan *c)
{
    struct bench_caller k;
    if (!c->ch || bench_caller_init(&k, c) != 0)
        return -1;
    struct call_io io;
    call_open(&io, c->ch, k.cq, c->h_shutdown, 2000, NULL, 0);
    grpc_op ops[6];
    call_ops(ops, &io, 6);
    int ok = -1;
    if (grpc_call_start_batch(io.call, ops, 6, ops, NULL) == GRPC_CALL_OK) {
        grpc_event ev = grpc_completion_queue_pluck(k.cq, ops, after_ms(4000), NULL);
        if (ev.type != GRPC_OP_COMPLETE) {
            grpc_call_cancel(io.call, NULL);
            grpc_completion_queue_pluck(k.cq, ops, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        } else if (io.status == GRPC_STATUS_OK) {
            ok = 0;
        }
    }
    call_close(&io);
    bench_caller_dispose(&k);
    return ok;
}

int bench_plugin_stop(struct bench_plugin *p)
{
    int rc = -1;
    if (p->pid > 0) {
        controller_shutdown(&p->chan);
        /* the channel goes first: an open connection would not keep the plugin alive, but a
         * closed one shows at once whether it went away */
        bench_chan_close(&p->chan);
        int64_t deadline = cp_mono_ns() + (int64_t)BENCH_STOP_TIMEOUT_MS * 1000000;
        int st = 0;
        pid_t w = 0;
        while ((w = waitpid(p->pid, &st, WNOHANG)) == 0 && cp_mono_ns() < deadline) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        if (w == p->pid || w < 0) {
            bench_child_untrack(p->pid);
            rc = w == p->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
        } else {
            fprintf(stderr, "bench: plugin pid %d did not exit within %d ms; killed\n", (int)p->pid,
                    BENCH_STOP_TIMEOUT_MS);
            bench_child_stop(p->pid, 0);
        }
        p->pid = -1;
    }
    bench_chan_close(&p->chan);
    if (p->drain_started) {
        pthread_join(p->drain, NULL);
        p->drain_started = 0;
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->err_fd >= 0)
        close(p->err_fd);
    p->out_fd = p->err_fd = -1;
    pthread_mutex_destroy(&p->mu);
    return rc;
}

/* ---- channel and calls ------------------------------------------------------------------- */

int bench_chan_open(struct bench_chan *c, const char *target, struct cp_err *err)
{
    grpc_arg args[1];
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = MAX_RECV_BYTES;
    grpc_channel_args ca = {1, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    if (!c->ch)
        return cp_err_set(err, CP_EINTERNAL, "cannot create a channel to %s", target);
    c->h_resource =
        grpc_channel_register_call(c->ch, "/pluginv2.Resource/CallResource", NULL, NULL);
    c->h_query = grpc_channel_register_call(c->ch, "/pluginv2.Data/QueryData", NULL, NULL);
    c->h_shutdown =
        grpc_channel_register_call(c->ch, "/plugin.GRPCController/Shutdown", NULL, NULL);
    return 0;
}

void bench_chan_close(struct bench_chan *c)
{
    if (c->ch)
        grpc_channel_destroy(c->ch);
    c->ch = NULL;
}

int bench_caller_init(struct bench_caller *k, struct bench_chan *chan)
{
    k->chan = chan;
    k->cq = grpc_completion_queue_create_for_pluck(NULL);
    return k->cq ? 0 : CP_ENOMEM;
}

void bench_caller_dispose(struct bench_caller *k)
{
    if (!k->cq)
        return;
    grpc_completion_queue_shutdown(k->cq);
    while (
        grpc_completion_queue_pluck(k->cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(k->cq);
    k->cq = NULL;
}

/* Waits for tag; the call deadline makes core complete it, so the extra margin only guards
 * against a core bug. An interrupt (Ctrl-C) or that margin cancels the call, which completes
 * every batch. */
static int wait_tag(struct bench_caller *k, grpc_call *call, void *tag)
{
    int64_t deadline = cp_mono_ns() + (int64_t)(BENCH_CALL_TIMEOUT_MS + 5000) * 1000000;
    while (cp_mono_ns() < deadline && !atomic_load(&bench_interrupted)) {
        grpc_event ev = grpc_completion_queue_pluck(k->cq, tag, after_ms(100), NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            return ev.success ? 0 : -1;
    }
    grpc_call_cancel(call, NULL);
    grpc_completion_queue_pluck(k->cq, tag, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    return -1;
}

/* Flattens a received byte buffer (decompressing if needed) and destroys it. */
static grpc_slice take_bb(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader rd;
    grpc_slice s = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&rd, bb)) {
        s = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
    }
    grpc_byte_buffer_destroy(bb);
    return s;
}

static void note_first(struct bench_res *r, Pluginv2__CallResourceResponse *m)
{
    r->code = m->code;
    for (size_t i = 0; i < m->n_headers; i++) {
        const Pluginv2__CallResourceResponse__HeadersEntry *e = m->headers[i];
        if (e->key && !strcasecmp(e->key, "X-Cache") && e->value && e->value->n_values)
            snprintf(r->xcache, sizeof r->xcache, "%s", e->value->values[0]);
    }
}

static int status_error(struct cp_err *err, const char *what, grpc_status_code st,
                        grpc_slice details)
{
    return cp_err_set(err, CP_EUPSTREAM, "%s: gRPC status %d: %.*s", what, (int)st,
                      (int)GRPC_SLICE_LENGTH(details), (const char *)GRPC_SLICE_START_PTR(details));
}

int bench_call_resource(struct bench_caller *k, const void *req, size_t len, int keep_first,
                        struct bench_res *r, struct cp_err *err)
{
    memset(r, 0, sizeof *r);
    struct call_io io;
    call_open(&io, k->chan->ch, k->cq, k->chan->h_resource, BENCH_CALL_TIMEOUT_MS, req, len);
    grpc_call *call = io.call;
    int rc = 0, failed = 0;
    grpc_op ops[6];
    call_ops(ops, &io, 5);
    if (grpc_call_start_batch(call, ops, 5, ops, NULL) != GRPC_CALL_OK) {
        rc = cp_err_set(err, CP_EINTERNAL, "CallResource: start_batch refused");
        goto out;
    }
    failed = wait_tag(k, call, ops) != 0;
    /* messages until RECV_MESSAGE gives NULL (end of stream) */
    while (!failed && io.rbb) {
        grpc_slice m = take_bb(io.rbb);
        io.rbb = NULL;
        Pluginv2__CallResourceResponse *msg = pluginv2__call_resource_response__unpack(
            NULL, GRPC_SLICE_LENGTH(m), GRPC_SLICE_START_PTR(m));
        grpc_slice_unref(m);
        if (!msg) {
            rc = cp_err_set(err, CP_EUPSTREAM, "CallResource: undecodable response message");
            grpc_call_cancel(call, NULL);
            break;
        }
        if (r->nmsg++ == 0) {
            note_first(r, msg);
            if (keep_first)
                r->first = msg;
        }
        r->body_bytes += msg->body.len;
        if (msg != r->first)
            pluginv2__call_resource_response__free_unpacked(msg, NULL);
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &io.rbb;
        if (grpc_call_start_batch(call, &op, 1, &op, NULL) != GRPC_CALL_OK ||
            wait_tag(k, call, &op) != 0)
            failed = 1;
    }
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &io.tmd;
    st.data.recv_status_on_client.status = &io.status;
    st.data.recv_status_on_client.status_details = &io.details;
    if (grpc_call_start_batch(call, &st, 1, &st, NULL) != GRPC_CALL_OK ||
        wait_tag(k, call, &st) != 0) {
        if (!rc)
            rc = cp_err_set(err, CP_EUPSTREAM, "CallResource: no status");
    } else if (!rc && io.status != GRPC_STATUS_OK) {
        rc = status_error(err, "CallResource", io.status, io.details);
    } else if (!rc && r->nmsg == 0) {
        rc = cp_err_set(err, CP_EUPSTREAM, "CallResource: no response message");
    }
out:
    call_close(&io);
    if (rc && r->first) {
        pluginv2__call_resource_response__free_unpacked(r->first, NULL);
        r->first = NULL;
    }
    return rc;
}

/* A split query's meta.custom.cachePieces {"hit":H,"fetched":F}, found the same way. */
static void frame_pieces(const uint8_t *p, size_t n, uint32_t *hit, uint32_t *fetched)
{
    static const char needle[] = "\"cachePieces\":{";
    const uint8_t *at = memmem(p, n, needle, sizeof needle - 1);
    *hit = *fetched = 0;
    if (!at)
        return;
    at += sizeof needle - 1;
    char obj[96];
    size_t k = 0;
    while (at + k < p + n && k + 1 < sizeof obj && at[k] != '}') {
        obj[k] = (char)at[k];
        k++;
    }
    obj[k] = 0;
    const char *h = strstr(obj, "\"hit\":"), *f = strstr(obj, "\"fetched\":");
    if (h)
        *hit = (uint32_t)strtoul(h + 6, NULL, 10);
    if (f)
        *fetched = (uint32_t)strtoul(f + 10, NULL, 10);
}

/* The frame's meta.custom.cache ("hit", "miss", "stale", "bypass", "partial"): Arrow keeps the
 * frame's meta JSON as text in the schema metadata, so it is found in the bytes. */
static void frame_cache(const uint8_t *p, size_t n, char *out, size_t size)
{
    static const char needle[] = "\"cache\":\"";
    const uint8_t *at = memmem(p, n, needle, sizeof needle - 1);
    out[0] = 0;
    if (!at)
        return;
    at += sizeof needle - 1;
    size_t k = 0;
    while (at + k < p + n && k + 1 < size && at[k] >= 'a' && at[k] <= 'z') {
        out[k] = (char)at[k];
        k++;
    }
    out[k] = 0;
}

int bench_query_data(struct bench_caller *k, const void *req, size_t len, struct bench_qres *r,
                     struct cp_err *err)
{
    memset(r, 0, sizeof *r);
    struct call_io io;
    call_open(&io, k->chan->ch, k->cq, k->chan->h_query, BENCH_CALL_TIMEOUT_MS, req, len);
    grpc_call *call = io.call;
    int rc = 0;
    grpc_op ops[6];
    call_ops(ops, &io, 6);
    if (grpc_call_start_batch(call, ops, 6, ops, NULL) != GRPC_CALL_OK) {
        rc = cp_err_set(err, CP_EINTERNAL, "QueryData: start_batch refused");
    } else if (wait_tag(k, call, ops) != 0) {
        rc = cp_err_set(err, CP_EUPSTREAM, "QueryData: batch failed");
    } else if (io.status != GRPC_STATUS_OK) {
        rc = status_error(err, "QueryData", io.status, io.details);
    } else if (!io.rbb) {
        rc = cp_err_set(err, CP_EUPSTREAM, "QueryData: no response message");
    } else {
        grpc_slice m = take_bb(io.rbb);
        io.rbb = NULL;
        Pluginv2__QueryDataResponse *msg = pluginv2__query_data_response__unpack(
            NULL, GRPC_SLICE_LENGTH(m), GRPC_SLICE_START_PTR(m));
        grpc_slice_unref(m);
        if (!msg || msg->n_responses == 0 || !msg->responses[0]->value) {
            rc = cp_err_set(err, CP_EUPSTREAM, "QueryData: undecodable or empty response");
        } else {
            const Pluginv2__DataResponse *d = msg->responses[0]->value;
            r->status = d->status;
            snprintf(r->error, sizeof r->error, "%s", d->error ? d->error : "");
            r->nframes = (unsigned)d->n_frames;
            for (size_t i = 0; i < d->n_frames; i++)
                r->frame_bytes += d->frames[i].len;
            if (d->n_frames) {
                frame_cache(d->frames[0].data, d->frames[0].len, r->cache, sizeof r->cache);
                frame_pieces(d->frames[0].data, d->frames[0].len, &r->pieces_hit,
                             &r->pieces_fetched);
            }
        }
        if (msg)
            pluginv2__query_data_response__free_unpacked(msg, NULL);
    }
    call_close(&io);
    return rc;
}

/* ---- requests as Grafana builds them ----------------------------------------------------- */

struct ctx_parts {
    Pluginv2__PluginContext pc;
    Pluginv2__DataSourceInstanceSettings ds;
    Pluginv2__User user;
};

static const struct bench_user default_user = {"bench", "Viewer"};

static void fill_ctx(struct ctx_parts *c, const struct bench_ds *ds, const struct bench_user *u)
{
    pluginv2__plugin_context__init(&c->pc);
    pluginv2__data_source_instance_settings__init(&c->ds);
    pluginv2__user__init(&c->user);
    if (u == &default_user) {
        c->user.login = (char *)"bench";
        c->user.name = (char *)"Bench";
        c->user.email = (char *)"bench@example.com";
        c->user.role = (char *)"Viewer";
    } else if (u && u->login && u->login[0]) {
        c->user.login = (char *)u->login;
        c->user.name = (char *)u->login;
        c->user.role = (char *)(u->role ? u->role : "");
    }
    c->ds.id = ds->id;
    c->ds.uid = (char *)ds->uid;
    c->ds.name = (char *)ds->name;
    c->ds.url = (char *)ds->url;
    c->ds.jsondata.data = (uint8_t *)ds->json_data;
    c->ds.jsondata.len = strlen(ds->json_data);
    c->ds.lastupdatedms = ds->updated_ms;
    c->pc.orgid = 1;
    c->pc.pluginid = (char *)"seed-cachingproxy-datasource";
    c->pc.pluginversion = (char *)CP_VERSION;
    c->pc.useragent = (char *)"cachingproxy-bench/" CP_VERSION;
    c->pc.user = u && u->login && u->login[0] ? &c->user : NULL;
    c->pc.datasourceinstancesettings = &c->ds;
}

uint8_t *bench_pack_resource(const struct bench_ds *ds, const char *url_path, size_t *len)
{
    return bench_pack_call(ds, &default_user, "GET", url_path, len);
}

uint8_t *bench_pack_call(const struct bench_ds *ds, const struct bench_user *u, const char *method,
                         const char *url_path, size_t *len)
{
    struct ctx_parts c;
    fill_ctx(&c, ds, u);
    char path[1024];
    size_t pl = strcspn(url_path, "?");
    snprintf(path, sizeof path, "%.*s", (int)(pl < sizeof path ? pl : sizeof path - 1), url_path);
    Pluginv2__CallResourceRequest rq = PLUGINV2__CALL_RESOURCE_REQUEST__INIT;
    rq.plugincontext = &c.pc;
    rq.path = path;
    rq.method = (char *)method;
    rq.url = (char *)url_path;
    *len = pluginv2__call_resource_request__get_packed_size(&rq);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        pluginv2__call_resource_request__pack(&rq, buf);
    return buf;
}

uint8_t *bench_pack_query(const struct bench_ds *ds, const char *model, int64_t from_ms,
                          int64_t to_ms, size_t *len)
{
    return bench_pack_query_as(ds, &default_user, model, from_ms, to_ms, len);
}

uint8_t *bench_pack_query_as(const struct bench_ds *ds, const struct bench_user *u,
                             const char *model, int64_t from_ms, int64_t to_ms, size_t *len)
{
    struct ctx_parts c;
    fill_ctx(&c, ds, u);
    Pluginv2__TimeRange tr = PLUGINV2__TIME_RANGE__INIT;
    tr.fromepochms = from_ms;
    tr.toepochms = to_ms;
    Pluginv2__DataQuery q = PLUGINV2__DATA_QUERY__INIT;
    q.refid = (char *)"A";
    q.maxdatapoints = 1000;
    q.intervalms = 1000;
    q.timerange = &tr;
    q.json.data = (uint8_t *)model;
    q.json.len = strlen(model);
    Pluginv2__DataQuery *qs[1] = {&q};
    Pluginv2__QueryDataRequest rq = PLUGINV2__QUERY_DATA_REQUEST__INIT;
    rq.plugincontext = &c.pc;
    rq.n_queries = 1;
    rq.queries = qs;
    *len = pluginv2__query_data_request__get_packed_size(&rq);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        pluginv2__query_data_request__pack(&rq, buf);
    return buf;
}
