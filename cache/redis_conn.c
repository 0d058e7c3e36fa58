/*
 * redis_conn.c - one connection to a Redis node, plain or TLS, and command batches.
 *
 * hiredis stays the RESP library: its formatter builds the commands and its reader parses
 * the replies, both public API that work over any byte stream; the bytes travel over a
 * non-blocking socket written and read here, through OpenSSL when the URL says TLS. So plain
 * TCP, unix sockets and TLS share one path, and every wait is bounded: connecting by the
 * connect timeout, each wait for the socket afterwards by the I/O timeout, a whole round trip
 * by ROUNDTRIP_MAX_MS.
 *
 * TLS: TLS 1.2 or later, SNI for host names, the chain checked against redisTlsCACert (else
 * the system's trust store) and the URL's host checked against the certificate (its DNS
 * names, or its IP addresses for an address), unless redisTlsSkipVerify.
 */
#include "redis_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ROUNDTRIP_MAX_MS 5000

struct cache__rconn {
    int fd;
    SSL *ssl;
    redisReader *rd;
    unsigned gen;
    int cert_asked; /* the server asked for a client certificate and none is configured */
    int64_t io_ms;
    char name[280]; /* host:port or the socket path, for messages */
};

unsigned *cache__rconn_gen(struct cache__rconn *c)
{
    return &c->gen;
}

/* ---- the reply reader -------------------------------------------------------------------------
 */

/* hiredis 0.14's reader allocates an array reply's element table from the count the server
 * sends, before any element arrives: a count is capped here (the reader then fails as out of
 * memory, and the connection is dropped), everything else is hiredis's own. */
#define MAX_REPLY_ELEMENTS (1 << 20)

static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static redisReplyObjectFunctions capped_fns;
static void *(*default_array)(const redisReadTask *task, int elements);
static int reader_ok;

static void *capped_array(const redisReadTask *task, int elements)
{
    return elements >= 0 && elements <= MAX_REPLY_ELEMENTS ? default_array(task, elements) : NULL;
}

static void reader_init(void)
{
    redisReader *r = redisReaderCreate();
    if (r && r->fn && r->fn->createArray) {
        capped_fns = *r->fn;
        default_array = capped_fns.createArray;
        capped_fns.createArray = capped_array;
        reader_ok = 1;
    }
    if (r)
        redisReaderFree(r);
}

redisReader *cache__reader_new(void)
{
    pthread_once(&reader_once, reader_init);
    return reader_ok ? redisReaderCreateWithFunctions(&capped_fns) : NULL;
}

/* ---- TLS context ------------------------------------------------------------------------------
 */

/* The reason OpenSSL gives for its last error (empty when none), and the queue cleared. */
static void ssl_reason(char *out, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    out[0] = 0;
    if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(out, n, "%s", r ? r : "unknown TLS error");
    }
    ERR_clear_error();
}

/* Called by OpenSSL when the server asks for a client certificate and the context has none:
 * noted for error messages, and the handshake goes on without one. */
static int no_client_cert(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    (void)x509;
    (void)pkey;
    struct cache__rconn *c = SSL_get_app_data(ssl);
    if (c)
        c->cert_asked = 1;
    return 0;
}

int cache__tls_ctx_new(const struct cfg_secret *ca, const struct cfg_secret *cert,
                       const struct cfg_secret *key, SSL_CTX **out, struct cp_err *err)
{
    *out = NULL;
    int rc = 0;
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    char why[160];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_client_cert_cb(ctx, no_client_cert);
    if (ca && cfg_secret_isset(ca)) {
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        int n = 0;
        if (!(bio = BIO_new_mem_buf(ca->v, (int)ca->len)))
            goto nomem;
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
            if (X509_STORE_add_cert(st, x) == 1)
                n++;
            X509_free(x);
            x = NULL;
        }
        ERR_clear_error(); /* the end of the text reads as an error */
        BIO_free(bio);
        bio = NULL;
        if (!n) {
            rc = cp_err_set(err, CP_ECONFIG,
                            "secureJsonData.redisTlsCACert: holds no PEM certificate");
            goto out;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ERR_clear_error(); /* no system store: verification fails later with its reason */
    }
    int has_cert = cert && cfg_secret_isset(cert), has_key = key && cfg_secret_isset(key);
    if (has_cert != has_key) {
        rc = cp_err_set(err, CP_ECONFIG, "secureJsonData.%s: is needed with %s",
                        has_cert ? "redisTlsClientKey" : "redisTlsClientCert",
                        has_cert ? "redisTlsClientCert" : "redisTlsClientKey");
        goto out;
    }
    if (has_cert) {
        if (!(bio = BIO_new_mem_buf(cert->v, (int)cert->len)))
            goto nomem;
        if (!(x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) ||
            SSL_CTX_use_certificate(ctx, x) != 1) {
            ssl_reason(why, sizeof why);
            rc = cp_err_set(err, CP_ECONFIG,
                            "secureJsonData.redisTlsClientCert: not a usable PEM certificate "
                            "(%s)",
                            why[0] ? why : "no certificate");
            goto out;
        }
        X509_free(x);
        /* the rest of the text: intermediate certificates sent along */
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
            if (SSL_CTX_add_extra_chain_cert(ctx, x) != 1)
                X509_free(x);
            x = NULL;
        }
        ERR_clear_error();
        BIO_free(bio);
        if (!(bio = BIO_new_mem_buf(key->v, (int)key->len)))
            goto nomem;
        if (!(pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) ||
            SSL_CTX_use_PrivateKey(ctx, pk) != 1) {
            ERR_clear_error(); /* the reason may quote the key's bytes: not repeated */
            rc = cp_err_set(err, CP_ECONFIG,
                            "secureJsonData.redisTlsClientKey: not a usable PEM private key "
                            "(an encrypted key is not supported)");
            goto out;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            ERR_clear_error();
            rc = cp_err_set(err, CP_ECONFIG,
                            "secureJsonData.redisTlsClientKey: does not match "
                            "redisTlsClientCert");
            goto out;
        }
    }
    *out = ctx;
    ctx = NULL;
    goto out;
nomem:
    rc = cp_err_set(err, CP_ENOMEM, "out of memory");
out:
    X509_free(x);
    EVP_PKEY_free(pk);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return rc;
}

/* ---- waiting ------------------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    return cp_mono_ns() / 1000000;
}

/* Waits until fd is ready for ev, at most until deadline (monotonic ms). 0, or -1 with
 * errno (ETIMEDOUT on expiry). */
static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pf = {fd, ev, 0};
        int r = poll(&pf, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* ---- connecting ----------------------------------------------------------------------------- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Connects fd to sa by deadline. 0 or an errno value. */
static int connect_by(int fd, const struct sockaddr *sa, socklen_t sl, int64_t deadline)
{
    if (connect(fd, sa, sl) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;
    if (wait_fd(fd, POLLOUT, deadline) != 0)
        return errno;
    int e = 0;
    socklen_t el = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
        return errno;
    return e;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int conn_fail(struct cp_err *err, const char *name, const char *what)
{
    return cp_err_set(err, CP_EBACKEND, "%s: %s", name, what);
}

static int open_socket(const struct cache__rdial *d, struct cache__rconn *c, struct cp_err *err)
{
    int64_t deadline = now_ms() + d->connect_ms;
    if (d->unix_path) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(d->unix_path) >= sizeof sa.sun_path)
            return conn_fail(err, c->name, "socket path too long");
        strcpy(sa.sun_path, d->unix_path);
        /* connecting a unix socket does not wait for the server: blocking is fine */
        if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
            return conn_fail(err, c->name, strerror(errno));
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            return conn_fail(err, c->name, strerror(errno));
        return set_nonblock(c->fd) ? conn_fail(err, c->name, strerror(errno)) : 0;
    }
    char port[8];
    snprintf(port, sizeof port, "%d", d->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(d->host, port, &hints, &ai);
    if (g)
        return conn_fail(err, c->name, g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    int e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (!(e = connect_by(fd, a->ai_addr, a->ai_addrlen, deadline))) {
            c->fd = fd;
            break;
        }
        close(fd);
        if (e == ETIMEDOUT)
            break;
    }
    freeaddrinfo(ai);
    if (c->fd < 0)
        return conn_fail(err, c->name, e == ETIMEDOUT ? "timed out connecting" : strerror(e));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* Waits for what OpenSSL asked (want: SSL_get_error's answer). 0, or -1 with errno. */
static int ssl_wait(struct cache__rconn *c, int want, int64_t deadline)
{
    return wait_fd(c->fd, want == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, deadline);
}

static int handshake(const struct cache__rdial *d, struct cache__rconn *c, struct cp_err *err)
{
    ERR_clear_error();
    if (!(c->ssl = SSL_new(d->tls)) || SSL_set_fd(c->ssl, c->fd) != 1) {
        ERR_clear_error();
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    SSL_set_connect_state(c->ssl);
    SSL_set_app_data(c->ssl, c);
    int ip = is_ip_literal(d->host);
    if (!ip)
        SSL_set_tlsext_host_name(c->ssl, d->host);
    if (d->verify) {
        SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), d->host)
                    : SSL_set1_host(c->ssl, d->host);
        if (ok != 1) {
            ERR_clear_error();
            return conn_fail(err, c->name, "TLS: the host name cannot be checked");
        }
    } else {
        SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
    }
    int64_t deadline = now_ms() + d->io_ms;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(c->ssl, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
            ssl_wait(c, e, deadline) == 0)
            continue;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return conn_fail(err, c->name, "TLS handshake timed out");
        long vr = SSL_get_verify_result(c->ssl);
        char why[160];
        ssl_reason(why, sizeof why);
        if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
            return cp_err_set(err, CP_EBACKEND,
                              "%s: TLS certificate verify failed: the server's certificate "
                              "does not name %s (%s); check the host in redisUrl",
                              c->name, d->host, X509_verify_cert_error_string(vr));
        if (vr != X509_V_OK)
            return cp_err_set(err, CP_EBACKEND,
                              "%s: TLS certificate verify failed: %s; check redisTlsCACert "
                              "(or set redisTlsSkipVerify on a trusted network)",
                              c->name, X509_verify_cert_error_string(vr));
        if (e == SSL_ERROR_SYSCALL && !why[0])
            return cp_err_set(err, CP_EBACKEND, "%s: TLS handshake failed: %s", c->name,
                              errno ? strerror(errno) : "connection closed (is it a TLS port?)");
        return cp_err_set(err, CP_EBACKEND, "%s: TLS handshake failed: %s%s", c->name,
                          why[0] ? why : "unknown error",
                          strstr(why, "certificate") ? " (a client certificate may be needed: "
                                                       "redisTlsClientCert, redisTlsClientKey)"
                                                     : "");
    }
}

int cache__rconn_open(const struct cache__rdial *d, struct cache__rconn **out, struct cp_err *err)
{
    *out = NULL;
    struct cache__rconn *c = calloc(1, sizeof *c);
    if (!c)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    c->fd = -1;
    c->io_ms = d->io_ms;
    if (d->unix_path)
        snprintf(c->name, sizeof c->name, "%s", d->unix_path);
    else
        snprintf(c->name, sizeof c->name, strchr(d->host, ':') ? "[%s]:%d" : "%s:%d", d->host,
                 d->port);
    int rc = open_socket(d, c, err);
    if (!rc && d->tls)
        rc = handshake(d, c, err);
    if (!rc && !(c->rd = cache__reader_new()))
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    if (rc) {
        cache__rconn_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void cache__rconn_close(struct cache__rconn *c)
{
    if (!c)
        return;
    if (c->ssl) {
        /* no close_notify: the connection may be broken, and a wait here is not allowed */
        SSL_set_quiet_shutdown(c->ssl, 1);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->rd)
        redisReaderFree(c->rd);
    free(c);
}

/* ---- I/O ------------------------------------------------------------------------------------ */

/* Deadline of the next wait: io_ms from now, never past the round trip's end. */
static int64_t step_deadline(const struct cache__rconn *c, int64_t end)
{
    int64_t d = now_ms() + c->io_ms;
    return d < end ? d : end;
}

static int io_fail(struct cache__rconn *c, struct cp_err *err, const char *what)
{
    return cp_err_set(err, CP_EBACKEND, "%s: %s", c->name, what);
}

/* A TLS read or write that failed for good. A server that wants a client certificate
 * rejects its absence after the handshake (TLS 1.3): its alert may be lost when the
 * connection is reset, so the hint also comes from its asking for one during the handshake. */
static int tls_fail(struct cache__rconn *c, int e, struct cp_err *err)
{
    int sys = errno;
    char why[160];
    ssl_reason(why, sizeof why);
    if (strstr(why, "certificate"))
        return cp_err_set(err, CP_EBACKEND,
                          "%s: TLS: %s (the server wants a client certificate it trusts: "
                          "redisTlsClientCert, redisTlsClientKey)",
                          c->name, why);
    if (c->cert_asked && !why[0])
        return cp_err_set(err, CP_EBACKEND,
                          "%s: connection closed by the server, which asked for a client "
                          "certificate: set redisTlsClientCert and redisTlsClientKey if it "
                          "requires one",
                          c->name);
    if (why[0])
        return io_fail(c, err, why);
    return io_fail(c, err,
                   e == SSL_ERROR_SYSCALL && sys && sys != EPIPE && sys != ECONNRESET
                       ? strerror(sys)
                       : "connection closed by the server");
}

static int write_all(struct cache__rconn *c, const char *p, size_t n, int64_t end,
                     struct cp_err *err)
{
    while (n) {
        ssize_t w;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
            if (r > 0) {
                w = r;
            } else {
                int e = SSL_get_error(c->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    return tls_fail(c, e, err);
                if (ssl_wait(c, e, step_deadline(c, end)) != 0)
                    return io_fail(c, err, errno == ETIMEDOUT ? "timed out" : strerror(errno));
                continue;
            }
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    return io_fail(c, err, strerror(errno));
                if (wait_fd(c->fd, POLLOUT, step_deadline(c, end)) != 0)
                    return io_fail(c, err, errno == ETIMEDOUT ? "timed out" : strerror(errno));
                continue;
            }
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads what is there (waiting for something) into the reader. */
static int read_some(struct cache__rconn *c, int64_t end, struct cp_err *err)
{
    char buf[16384];
    for (;;) {
        ssize_t r;
        if (c->ssl) {
            ERR_clear_error();
            int n = SSL_read(c->ssl, buf, sizeof buf);
            if (n > 0) {
                r = n;
            } else {
                int e = SSL_get_error(c->ssl, n);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    return tls_fail(c, e, err);
                if (ssl_wait(c, e, step_deadline(c, end)) != 0)
                    return io_fail(c, err, errno == ETIMEDOUT ? "timed out" : strerror(errno));
                continue;
            }
        } else {
            r = recv(c->fd, buf, sizeof buf, 0);
            if (r == 0)
                return io_fail(c, err, "connection closed by the server");
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    return io_fail(c, err, strerror(errno));
                if (wait_fd(c->fd, POLLIN, step_deadline(c, end)) != 0)
                    return io_fail(c, err, errno == ETIMEDOUT ? "timed out" : strerror(errno));
                continue;
            }
        }
        if (redisReaderFeed(c->rd, buf, (size_t)r) != REDIS_OK)
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        return 0;
    }
}

static int read_reply(struct cache__rconn *c, redisReply **out, int64_t end, struct cp_err *err)
{
    for (;;) {
        void *r = NULL;
        if (redisReaderGetReply(c->rd, &r) != REDIS_OK)
            return cp_err_set(err, CP_EBACKEND, "%s: protocol error: %.80s", c->name,
                              c->rd->errstr);
        if (r) {
            *out = r;
            return 0;
        }
        int rc = read_some(c, end, err);
        if (rc)
            return rc;
    }
}

int cache__rconn_roundtrip(struct cache__rconn *c, const char *out, size_t n, size_t nreplies,
                           redisReply **replies, struct cp_err *err)
{
    int64_t end = now_ms() + ROUNDTRIP_MAX_MS;
    for (size_t i = 0; i < nreplies; i++)
        replies[i] = NULL;
    int rc = write_all(c, out, n, end, err);
    for (size_t i = 0; !rc && i < nreplies; i++)
        rc = read_reply(c, &replies[i], end, err);
    if (rc)
        for (size_t i = 0; i < nreplies; i++) {
            if (replies[i])
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    return rc;
}

redisReply *cache__rconn_command(struct cache__rconn *c, struct cp_err *err, const char *fmt, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0) {
        cp_err_set(err, len == -2 ? CP_EINVAL : CP_ENOMEM, "redis: cannot format a command");
        return NULL;
    }
    redisReply *r = NULL;
    int rc = cache__rconn_roundtrip(c, cmd, (size_t)len, 1, &r, err);
    redisFreeCommand(cmd);
    return rc ? NULL : r;
}

/* ---- batches -------------------------------------------------------------------------------- */

int cache__rbatch_add(struct cache__rbatch *b, const char *fmt, ...)
{
    if (b->n >= CACHE__BATCH_MAX)
        return CP_EINVAL;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return len == -2 ? CP_EINVAL : CP_ENOMEM;
    b->cmd[b->n] = cmd;
    b->len[b->n] = (size_t)len;
    b->reply[b->n] = NULL;
    b->n++;
    return 0;
}

void cache__rbatch_dispose(struct cache__rbatch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        redisFreeCommand(b->cmd[i]);
        if (b->reply[i])
            freeReplyObject(b->reply[i]);
    }
    memset(b, 0, sizeof *b);
}
