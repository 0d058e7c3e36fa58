/*
 * access_log.c - the access log (env CACHINGPROXY_ACCESS_LOG=FILE): every resource call on
 * proxy/ and every data query that enters the pipeline, appended to FILE as one line of the
 * trace CSV `ts,user,role,method,path` that `cachingproxy-bench sim` and `--replay` read. The
 * user is a pseudonym: the first 16 hex digits of HMAC-SHA-256(key, "<orgId>:<login>"); the
 * key is env CACHINGPROXY_ACCESS_LOG_KEY, else the first line of FILE.key (made once, 0600).
 *
 * The threads that start requests only format a line and copy it into a bounded buffer (a
 * full buffer drops the line and counts it); one writer thread takes the whole buffer at once,
 * every 20 ms or sooner when it fills, and appends it with write() on an O_APPEND descriptor:
 * under load a request costs no system call and no wake-up. Each write holds complete lines, so
 * processes appending to the same file never mix inside a line. Closing writes out what is
 * queued.
 */
#include "plugin_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_BYTES (1u << 20) /* lines waiting for the writer: about 10,000 */
#define FLUSH_BYTES (QUEUE_BYTES / 4) /* the writer is woken early past this */
#define FLUSH_MS 20                   /* else it gathers lines this long per write */
#define KEY_MIN 16
#define KEY_MAX 1024
#define MAX_METHOD 16 /* the trace reader's limits */
#define MAX_PATH_BYTES 8192

static const char header[] = "ts,user,role,method,path\n";
static const char *const role_names[] = {"None", "Viewer", "Editor", "Admin"};

struct plugin_access_log {
    int fd;
    char *path;         /* for messages */
    EVP_MAC_CTX *keyed; /* HMAC-SHA-256 with the key set: copied for each line */
    pthread_t writer;
    int started; /* the writer thread runs (join it) */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the writer waits here for lines or the end (CLOCK_MONOTONIC) */
    /* under mu: */
    char *buf, *spare; /* lines queued; the writer's while it writes */
    size_t len;
    uint64_t nlines; /* in buf */
    int stop;        /* no more lines: write out what is queued and end */
    _Atomic uint64_t written, dropped;
};

/* ---- one line ------------------------------------------------------------------------------ */

int plugin_access_pseudonym(const struct plugin_access_log *l, int64_t org_id, const char *login,
                            char out[17])
{
    static const char hex[] = "0123456789abcdef";
    char org[24];
    int n = snprintf(org, sizeof org, "%lld:", (long long)org_id);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mlen = 0;
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(l->keyed);
    int ok =
        c && EVP_MAC_update(c, (const unsigned char *)org, (size_t)n) &&
        EVP_MAC_update(c, (const unsigned char *)(login ? login : ""), login ? strlen(login) : 0) &&
        EVP_MAC_final(c, mac, &mlen, sizeof mac) && mlen >= 8;
    EVP_MAC_CTX_free(c);
    out[0] = 0;
    if (!ok)
        return CP_ENOMEM;
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[16] = 0;
    return 0;
}

/* Appends s to out[*n..] with every byte outside printable ASCII percent-encoded, stopping
 * before max (never inside an escape). */
static void put_encoded(char *out, size_t *n, size_t max, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x20 && c < 0x7f) {
            if (*n + 1 > max)
                return;
            out[(*n)++] = (char)c;
        } else {
            if (*n + 3 > max)
                return;
            out[(*n)++] = '%';
            out[(*n)++] = hex[c >> 4];
            out[(*n)++] = hex[c & 15];
        }
    }
}

size_t plugin_access_format(char *out, size_t size, int64_t unix_ms, const char *user,
                            const char *role, const char *method, const char *path,
                            const char *query)
{
    size_t ml = method ? strlen(method) : 0;
    if (size < PLUGIN_ACCESS_LINE_MAX || !ml || ml > MAX_METHOD)
        return 0;
    char m[MAX_METHOD + 1];
    for (size_t i = 0; i < ml; i++) {
        char c = method[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
        m[i] = (char)(c & ~0x20);
    }
    m[ml] = 0;
    int n = snprintf(out, size, "%lld.%03d,%s,%s,%s,", (long long)(unix_ms / 1000),
                     (int)(unix_ms % 1000), user ? user : "", role ? role : "", m);
    if (n < 0 || (size_t)n >= size - MAX_PATH_BYTES - 1)
        return 0;
    size_t len = (size_t)n, start = len, max = start + MAX_PATH_BYTES;
    out[len++] = '/';
    put_encoded(out, &len, max, path);
    if (query && *query && len + 1 < max) {
        out[len++] = '?';
        put_encoded(out, &len, max, query);
    }
    out[len++] = '\n';
    out[len] = 0;
    return len;
}

/* ---- the writer ------------------------------------------------------------------------------ */

/* Appends n bytes of whole lines; 0, or the errno of a failed write. */
static int append(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int open_file(const char *path, int *out, struct cp_err *err);

/* Follows a rotation: when the path no longer names the file being written (logrotate renamed
 * it, or somebody removed it), the path is opened again (created, with its header) and the
 * lines go there; the old descriptor is closed, so what it held stays complete in the moved
 * file. Checked before each write (at most one stat per 20 ms of traffic); a FIFO is not
 * followed. The writer thread alone uses l->fd. */
static void follow_path(struct plugin_access_log *l, int *warned)
{
    struct stat now, open_st;
    if (fstat(l->fd, &open_st) != 0 || !S_ISREG(open_st.st_mode))
        return;
    if (stat(l->path, &now) == 0 && now.st_dev == open_st.st_dev && now.st_ino == open_st.st_ino)
        return;
    int fd = -1;
    struct cp_err err = {0};
    if (open_file(l->path, &fd, &err) != 0) {
        if (!*warned) {
            struct cp_kv kv[] = {CP_KV_S("error", cp_err_text(&err))};
            plugin_log(CP_LOG_WARN,
                       "access log: the file was moved or removed and cannot be made again; "
                       "lines go on into the moved file",
                       kv, 1);
        }
        *warned = 1;
        return;
    }
    *warned = 0;
    close(l->fd);
    l->fd = fd;
    struct cp_kv kv[] = {CP_KV_S("file", l->path)};
    plugin_log(CP_LOG_INFO, "access log: the file was moved or removed; writing a new one", kv,
               1);
}

static void *writer_main(void *arg)
{
    struct plugin_access_log *l = arg;
    int failing = 0;   /* the last write failed: warned once until one succeeds */
    int reopening = 0; /* the path could not be opened again: warned once */
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->len && !l->stop)
            pthread_cond_wait(&l->cv, &l->mu);
        if (!l->len)
            break;
        /* gather lines for one write: woken early when the queue fills or at the end */
        struct timespec until = cp_deadline(CLOCK_MONOTONIC, FLUSH_MS);
        while (!l->stop && l->len < FLUSH_BYTES &&
               pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT)
            ;
        char *p = l->buf;
        size_t n = l->len;
        uint64_t lines = l->nlines;
        l->buf = l->spare;
        l->spare = p;
        l->len = 0;
        l->nlines = 0;
        pthread_mutex_unlock(&l->mu);
        follow_path(l, &reopening);
        int e = append(l->fd, p, n);
        if (!e) {
            atomic_fetch_add(&l->written, lines);
        } else {
            atomic_fetch_add(&l->dropped, lines);
            if (!failing) {
                struct cp_kv kv[] = {CP_KV_S("file", l->path), CP_KV_S("error", strerror(e))};
                plugin_log(CP_LOG_WARN, "access log: write failed; lines are dropped", kv, 2);
            }
        }
        failing = e != 0;
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

void plugin_access_log_note(void *ctx, const struct proxy_access *a)
{
    struct plugin_access_log *l = ctx;
    char user[17] = "";
    const char *role = "";
    if (a->user && a->user->present) {
        if (plugin_access_pseudonym(l, a->user->org_id, a->user->login, user) != 0) {
            atomic_fetch_add(&l->dropped, 1);
            return;
        }
        role = (unsigned)a->user->role < 4 ? role_names[a->user->role] : "None";
    }
    /* a secret the process knows (a data source's, a forwarded token) never reaches the file,
     * not even when a client wrote it into its own URL */
    char path[MAX_PATH_BYTES + 1], query[MAX_PATH_BYTES + 1];
    plugin_log_redact(a->path ? a->path : "", path, sizeof path);
    plugin_log_redact(a->query ? a->query : "", query, sizeof query);
    char line[PLUGIN_ACCESS_LINE_MAX];
    size_t n = plugin_access_format(line, sizeof line, cp_now_ms(), user, role,
                                    a->kind == PROXY_KIND_QUERY ? "QUERY" : a->method, path, query);
    if (!n)
        return; /* a method the trace cannot hold: nothing to replay */
    pthread_mutex_lock(&l->mu);
    int queued = !l->stop && l->len + n <= QUEUE_BYTES;
    if (queued) {
        /* the writer waits for a first line, or gathers until FLUSH_BYTES */
        if (!l->len || (l->len < FLUSH_BYTES && l->len + n >= FLUSH_BYTES))
            pthread_cond_signal(&l->cv);
        memcpy(l->buf + l->len, line, n);
        l->len += n;
        l->nlines++;
    }
    pthread_mutex_unlock(&l->mu);
    if (!queued)
        atomic_fetch_add(&l->dropped, 1);
}

void plugin_access_log_stats(const struct plugin_access_log *l, uint64_t *lines, uint64_t *dropped)
{
    *lines = l ? atomic_load(&l->written) : 0;
    *dropped = l ? atomic_load(&l->dropped) : 0;
}

/* ---- the key ------------------------------------------------------------------------------- */

/* The key text: 16 to 1024 bytes, no line break. */
static int check_key(const char *k, size_t n, const char *what, struct cp_err *err)
{
    if (n < KEY_MIN || n > KEY_MAX || memchr(k, '\n', n) || memchr(k, 0, n))
        return cp_err_set(err, CP_ECONFIG,
                          "%s: the access log key must be one line of %d to %d bytes", what,
                          KEY_MIN, KEY_MAX);
    return 0;
}

/* Reads the first line of an existing key file into buf (size > KEY_MAX + 1). 0, 1 when the
 * file does not exist, or an error. */
static int read_key_file(const char *kp, char *buf, size_t size, size_t *len, struct cp_err *err)
{
    int fd = open(kp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        return cp_err_set(err, CP_ECONFIG, "%s: %s", kp, strerror(errno));
    }
    size_t n = 0;
    while (n < size - 1) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    char *nl = memchr(buf, '\n', n);
    if (nl)
        n = (size_t)(nl - buf);
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = 0;
    *len = n;
    return check_key(buf, n, kp, err);
}

/* Makes a key file: 32 random bytes as 64 hex digits, written to a temporary file (O_EXCL,
 * 0600) and linked into place, so a process starting at the same moment either finds no file
 * or a whole one. When another process made it first, that one is read. */
static int make_key_file(const char *kp, char *buf, size_t size, size_t *len, struct cp_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[32];
    char text[66];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return cp_err_set(err, CP_EINTERNAL, "%s: no random bytes for a key", kp);
    for (size_t i = 0; i < sizeof raw; i++) {
        text[2 * i] = hex[raw[i] >> 4];
        text[2 * i + 1] = hex[raw[i] & 15];
    }
    text[64] = '\n';
    text[65] = 0;
    OPENSSL_cleanse(raw, sizeof raw);
    size_t tl = strlen(kp) + 16;
    char *tmp = malloc(tl);
    if (!tmp)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    snprintf(tmp, tl, "%s.XXXXXX", kp);
    int rc = 0, fd = mkstemp(tmp); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        rc = cp_err_set(err, CP_ECONFIG, "%s: %s", kp, strerror(errno));
        goto out;
    }
    int e = append(fd, text, 65);
    if (!e && fsync(fd) != 0)
        e = errno;
    close(fd);
    if (!e && link(tmp, kp) != 0)
        e = errno;
    unlink(tmp);
    if (e == EEXIST) { /* made by another process meanwhile */
        rc = read_key_file(kp, buf, size, len, err);
        if (rc == 1)
            rc = cp_err_set(err, CP_ECONFIG, "%s: vanished while it was read", kp);
    } else if (e) {
        rc = cp_err_set(err, CP_ECONFIG, "%s: %s", kp, strerror(e));
    } else {
        memcpy(buf, text, 64);
        buf[64] = 0;
        *len = 64;
    }
out:
    OPENSSL_cleanse(text, sizeof text);
    free(tmp);
    return rc;
}

static EVP_MAC_CTX *keyed_hmac(const char *key, size_t len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
    EVP_MAC_free(mac); /* the context holds its own reference */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (c && !EVP_MAC_init(c, (const unsigned char *)key, len, params)) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    return c;
}

/* ---- open and close ------------------------------------------------------------------------ */

/* Opens the file for appending; writes the header when it is empty. Another process opening it
 * at the same time waits on the lock, so the header is written once. A FIFO (a consumer that
 * compresses or ships the lines) gets no header and no checks. */
static int open_file(const char *path, int *out, struct cp_err *err)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return cp_err_set(err, CP_ECONFIG, "%s: %s", path, strerror(errno));
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : 0;
    if (!e && S_ISREG(st.st_mode)) {
        if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0) {
            e = errno;
        } else if (st.st_size == 0) {
            e = append(fd, header, sizeof header - 1);
        } else {
            /* a line cut short (a full disk, a killed writer) is closed, so the next line does
             * not run into it; readers name it by its line number */
            char last = '\n';
            if (pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
                struct cp_kv kv[] = {CP_KV_S("file", path)};
                plugin_log(CP_LOG_WARN,
                           "access log: its last line was cut short; it is closed with a "
                           "line break",
                           kv, 1);
                e = append(fd, "\n", 1);
            }
        }
        flock(fd, LOCK_UN);
    } else if (!e && !S_ISFIFO(st.st_mode)) {
        e = EINVAL;
    }
    if (e) {
        close(fd);
        return cp_err_set(err, CP_ECONFIG, "%s: %s", path,
                          e == EINVAL ? "not a regular file or a FIFO" : strerror(e));
    }
    *out = fd;
    return 0;
}

int plugin_access_log_open(const char *path, const char *key, struct plugin_access_log **out,
                           struct cp_err *err)
{
    *out = NULL;
    char kbuf[KEY_MAX + 2];
    size_t klen = 0;
    int rc;
    if (key && *key) {
        klen = strlen(key);
        if ((rc = check_key(key, klen, "CACHINGPROXY_ACCESS_LOG_KEY", err)) != 0)
            return rc;
        memcpy(kbuf, key, klen);
        kbuf[klen] = 0;
    } else {
        size_t kl = strlen(path) + 5;
        char *kp = malloc(kl);
        if (!kp)
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        snprintf(kp, kl, "%s.key", path);
        rc = read_key_file(kp, kbuf, sizeof kbuf, &klen, err);
        if (rc == 1)
            rc = make_key_file(kp, kbuf, sizeof kbuf, &klen, err);
        free(kp);
        if (rc) {
            OPENSSL_cleanse(kbuf, sizeof kbuf);
            return rc;
        }
    }
    struct plugin_access_log *l = calloc(1, sizeof *l);
    if (l) {
        l->fd = -1;
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, &ca);
        pthread_condattr_destroy(&ca);
        l->keyed = keyed_hmac(kbuf, klen);
        l->path = strdup(path);
        l->buf = malloc(QUEUE_BYTES);
        l->spare = malloc(QUEUE_BYTES);
    }
    OPENSSL_cleanse(kbuf, sizeof kbuf);
    if (!l || !l->keyed || !l->path || !l->buf || !l->spare) {
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = open_file(path, &l->fd, err)) != 0)
        goto fail;
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
        rc = cp_err_set(err, CP_ENOMEM, "could not start the access log writer");
        goto fail;
    }
    l->started = 1;
    *out = l;
    return 0;
fail:
    plugin_access_log_free(l);
    return rc;
}

void plugin_access_log_close(struct plugin_access_log *l)
{
    if (!l || !l->started)
        return;
    pthread_mutex_lock(&l->mu);
    int first = !l->stop;
    l->stop = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (!first)
        return;
    pthread_join(l->writer, NULL);
    close(l->fd);
    l->fd = -1;
    struct cp_kv kv[] = {CP_KV_S("file", l->path), CP_KV_I("lines", atomic_load(&l->written)),
                         CP_KV_I("dropped", atomic_load(&l->dropped))};
    plugin_log(CP_LOG_INFO, "access log closed", kv, 3);
}

void plugin_access_log_free(struct plugin_access_log *l)
{
    if (!l)
        return;
    plugin_access_log_close(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    if (l->fd >= 0)
        close(l->fd);
    EVP_MAC_CTX_free(l->keyed); /* wipes the key */
    free(l->path);
    free(l->buf);
    free(l->spare);
    free(l);
}

/* ---- the process's access log ------------------------------------------------------------- */

int plugin_access_log_start(struct cp_err *err)
{
    const char *path = getenv("CACHINGPROXY_ACCESS_LOG");
    if (!path || !*path)
        return 0;
    struct plugin_access_log *l = NULL;
    int rc = plugin_access_log_open(path, getenv("CACHINGPROXY_ACCESS_LOG_KEY"), &l, err);
    if (rc)
        return rc;
    plugin_g.access = l;
    plugin_g.env.access = plugin_access_log_note;
    plugin_g.env.access_ctx = l;
    struct cp_kv kv[] = {CP_KV_S("file", path),
                         CP_KV_S("key", getenv("CACHINGPROXY_ACCESS_LOG_KEY") &&
                                                *getenv("CACHINGPROXY_ACCESS_LOG_KEY")
                                            ? "CACHINGPROXY_ACCESS_LOG_KEY"
                                            : "file")};
    plugin_log(CP_LOG_INFO, "access log on", kv, 2);
    return 0;
}
