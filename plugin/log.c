/*
 * log.c - JSON log lines on stderr, in the shape go-plugin's host reads (hclog JSON):
 * {"@level":"info","@message":"...","@module":"cachingproxy","@timestamp":"...Z",...}.
 *
 * Redaction: every secret value of every live instance is registered here; any occurrence in
 * the message or in a value is replaced by "[redacted]". Keys that name credentials
 * (password, secret, token, authorization, cookie, apikey) always have their values replaced.
 */
#include "plugin.h"
#include "plugin_int.h"

#include <grpc/support/log.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REDACTED "[redacted]"
#define MIN_SECRET_LEN 4
#define MAX_VALUE 1024 /* longer strings are cut: a log line stays one line */

struct secret_ref {
    char *v;
    size_t len;
    unsigned refs;
};

static _Atomic int min_level = CP_LOG_INFO;
static pthread_mutex_t secrets_mu = PTHREAD_MUTEX_INITIALIZER;
static struct secret_ref *secrets;
static size_t nsecrets;
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error"};

int plugin_log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < 5; i++)
        if (!strcasecmp(s, level_names[i]))
            return i;
    if (!strcasecmp(s, "warning"))
        return CP_LOG_WARN;
    return -1;
}

void plugin_log_set_level(int level) { atomic_store(&min_level, level); }

static void grpc_log_hook(gpr_log_func_args *a)
{
    int level = a->severity == GPR_LOG_SEVERITY_ERROR  ? CP_LOG_ERROR
                : a->severity == GPR_LOG_SEVERITY_INFO ? CP_LOG_INFO
                                                       : CP_LOG_DEBUG;
    const char *file = a->file ? strrchr(a->file, '/') : NULL;
    struct cp_kv kv[] = {CP_KV_S("component", "grpc"),
                         CP_KV_S("file", file ? file + 1 : a->file), CP_KV_I("line", a->line)};
    plugin_log(level, a->message ? a->message : "", kv, 3);
}

void plugin_log_init(void)
{
    int lv = plugin_log_level_parse(cfg_env2("CACHINGPROXY_LOG_LEVEL", "GF_PLUGIN_LOG_LEVEL"));
    if (lv >= 0)
        plugin_log_set_level(lv);
    gpr_set_log_function(grpc_log_hook);
    gpr_set_log_verbosity(lv >= 0 && lv <= CP_LOG_DEBUG ? GPR_LOG_SEVERITY_INFO
                                                         : GPR_LOG_SEVERITY_ERROR);
}

/* Registers (add) or releases one exact form of a secret. Caller holds secrets_mu. */
static void secret_ref(const char *v, size_t len, int add)
{
    for (size_t i = 0; i < nsecrets; i++) {
        if (secrets[i].len != len || memcmp(secrets[i].v, v, len))
            continue;
        if (add) {
            secrets[i].refs++;
        } else if (--secrets[i].refs == 0) {
            explicit_bzero(secrets[i].v, len);
            free(secrets[i].v);
            memmove(&secrets[i], &secrets[i + 1], (nsecrets - i - 1) * sizeof *secrets);
            if (--nsecrets == 0) {
                free(secrets);
                secrets = NULL;
            }
        }
        return;
    }
    if (!add)
        return;
    struct secret_ref *ns = realloc(secrets, (nsecrets + 1) * sizeof *ns);
    char *copy = ns ? strndup(v, len) : NULL;
    if (ns)
        secrets = ns;
    if (!copy)
        return;
    /* longest first, so a secret containing another is redacted whole */
    size_t at = 0;
    while (at < nsecrets && secrets[at].len >= len)
        at++;
    memmove(&secrets[at + 1], &secrets[at], (nsecrets - at) * sizeof *secrets);
    secrets[at] = (struct secret_ref){copy, len, 1};
    nsecrets++;
}

/* The forms in which a secret can reach a text: as is, JSON-escaped (an upstream echoing it
 * inside a JSON document, with '/' escaped or not), percent-encoded (in a URL, with upper- or
 * lower-case hex, or '+' for spaces in a form body). Calls fn for each distinct form. */
static void each_form(const char *v, void (*fn)(const char *form, size_t len, int add), int add)
{
    size_t len = strlen(v);
    fn(v, len, add);
    char *buf = malloc(len * 6 + 1);
    if (!buf)
        return;
    for (int slash = 0; slash < 2; slash++) {
        size_t n = 0;
        for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
            if (*c == '"' || *c == '\\' || (slash && *c == '/')) {
                buf[n++] = '\\';
                buf[n++] = (char)*c;
            } else if (*c < 0x20 || *c == 0x7f) {
                static const char esc[] = {'\b', 'b', '\f', 'f', '\n', 'n', '\r', 'r', '\t', 't'};
                const char *e = memchr(esc, *c, sizeof esc);
                if (e && (e - esc) % 2 == 0) {
                    buf[n++] = '\\';
                    buf[n++] = e[1];
                } else {
                    n += (size_t)snprintf(buf + n, 7, "\\u%04x", *c);
                }
            } else {
                buf[n++] = (char)*c;
            }
        }
        if (n != len || memcmp(buf, v, len))
            fn(buf, n, add);
        if (!strchr(v, '/'))
            break;
    }
    static const char hex[2][17] = {"0123456789ABCDEF", "0123456789abcdef"};
    for (int form = 0; form < 3; form++) {
        size_t n = 0;
        for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
            if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
                strchr("-._~", *c)) {
                buf[n++] = (char)*c;
            } else if (form == 2 && *c == ' ') {
                buf[n++] = '+';
            } else {
                const char *h = hex[form == 1];
                buf[n++] = '%';
                buf[n++] = h[*c >> 4];
                buf[n++] = h[*c & 15];
            }
        }
        if (n != len || memcmp(buf, v, len))
            fn(buf, n, add);
    }
    explicit_bzero(buf, len * 6 + 1);
    free(buf);
}

void plugin_log_secret_add(const char *v)
{
    if (!v || strlen(v) < MIN_SECRET_LEN)
        return;
    pthread_mutex_lock(&secrets_mu);
    each_form(v, secret_ref, 1);
    pthread_mutex_unlock(&secrets_mu);
}

void plugin_log_secret_remove(const char *v)
{
    if (!v || strlen(v) < MIN_SECRET_LEN)
        return;
    pthread_mutex_lock(&secrets_mu);
    each_form(v, secret_ref, 0);
    pthread_mutex_unlock(&secrets_mu);
}

/* Keys naming credentials, compared without case and without '-', '_' or '.' (so
 * "X-API-Key", "api_key" and "apiKey" all count). */
static int sensitive_key(const char *k)
{
    static const char *const words[] = {"password", "passwd",  "secret", "token",
                                        "authorization", "cookie", "apikey", "credential"};
    char flat[128];
    size_t n = 0;
    for (; *k && n < sizeof flat - 1; k++)
        if (*k != '-' && *k != '_' && *k != '.')
            flat[n++] = *k;
    flat[n] = 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasestr(flat, words[i]))
            return 1;
    return 0;
}

/* Output cursor that never overruns and always leaves room for the closing "}\n". */
struct out {
    char *p;
    size_t len, size;
    int truncated;
};

static void put(struct out *o, const char *s, size_t n)
{
    size_t room = o->size > o->len + 3 ? o->size - o->len - 3 : 0;
    if (n > room) {
        n = room;
        o->truncated = 1;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* JSON string body: escapes, and U+FFFD for bytes that are not UTF-8 (the line must parse). */
static void put_escaped(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c >= 0x80) {
            size_t l = cp_utf8_len((const unsigned char *)s + i);
            if (l && l <= n - i) {
                put(o, s + i, l);
                i += l;
            } else {
                put(o, "\\ufffd", 6);
                i++;
            }
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c == '\r') {
            put(o, "\\r", 2);
        } else if (c == '\t') {
            put(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(o, esc, 6);
        } else {
            put(o, (const char *)&s[i], 1);
        }
        i++;
    }
}

/* Length of the registered secret that starts at s (avail bytes there), or 0. Caller holds
 * secrets_mu. Secrets are sorted longest first, so a secret containing another wins. */
static size_t secret_at(const char *s, size_t avail)
{
    for (size_t k = 0; k < nsecrets; k++)
        if (secrets[k].len <= avail && s[0] == secrets[k].v[0] &&
            !memcmp(s, secrets[k].v, secrets[k].len))
            return secrets[k].len;
    return 0;
}

/* Writes s[0..n) through write() with every registered secret replaced; secrets are looked
 * for in all `full` bytes, so one straddling a cut at n is still found. Caller holds
 * secrets_mu. */
static void redact_to(struct out *o, const char *s, size_t n, size_t full,
                      void (*write)(struct out *, const char *, size_t))
{
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t hit = secret_at(s + i, full - i);
        if (hit) {
            write(o, s + start, i - start);
            put(o, REDACTED, sizeof REDACTED - 1);
            i += hit;
            start = i;
        } else {
            i++;
        }
    }
    if (start < n)
        write(o, s + start, n - start);
}

/* Writes s as a JSON string body, with registered secrets replaced. Caller holds secrets_mu. */
static void put_redacted(struct out *o, const char *s)
{
    size_t full = strlen(s), n = full < MAX_VALUE ? full : MAX_VALUE;
    /* cut on a character boundary, never inside a UTF-8 sequence */
    if (n < full)
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    redact_to(o, s, n, full, put_escaped);
}

size_t plugin_log_format(char *buf, size_t size, int level, const char *msg,
                         const struct cp_kv *kv, size_t n, int64_t unix_us)
{
    struct out o = {buf, 0, size, 0};
    char ts[64];
    time_t secs = (time_t)(unix_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof ts - tl, ".%06lldZ", (long long)(unix_us % 1000000));
    if (level < CP_LOG_TRACE || level > CP_LOG_ERROR)
        level = CP_LOG_INFO;

    pthread_mutex_lock(&secrets_mu);
    put(&o, "{\"@level\":\"", 11);
    put(&o, level_names[level], strlen(level_names[level]));
    put(&o, "\",\"@message\":\"", 14);
    put_redacted(&o, msg ? msg : "");
    put(&o, "\",\"@module\":\"cachingproxy\",\"@timestamp\":\"", 41);
    put(&o, ts, strlen(ts));
    put(&o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (!kv[i].key || !*kv[i].key || kv[i].key[0] == '@')
            continue;
        put(&o, ",\"", 2);
        put_escaped(&o, kv[i].key, strlen(kv[i].key));
        put(&o, "\":", 2);
        if (sensitive_key(kv[i].key)) {
            put(&o, "\"" REDACTED "\"", sizeof REDACTED + 1);
        } else if (kv[i].str) {
            put(&o, "\"", 1);
            put_redacted(&o, kv[i].str);
            put(&o, "\"", 1);
        } else {
            char num[32];
            int nl = snprintf(num, sizeof num, "%lld", kv[i].num);
            put(&o, num, (size_t)nl);
        }
    }
    pthread_mutex_unlock(&secrets_mu);
    if (o.truncated && n > 0) /* keep the line valid JSON: drop the key-values */
        return plugin_log_format(buf, size, level, msg, kv, 0, unix_us);
    static const char cut_msg[] = "[log line truncated]";
    if (o.truncated && msg != cut_msg) /* the message itself does not fit: say so instead */
        return plugin_log_format(buf, size, level, cut_msg, NULL, 0, unix_us);
    /* put() always leaves 3 bytes: close the object even when truncated */
    if (o.size >= 3) {
        o.p[o.len++] = '}';
        o.p[o.len++] = '\n';
        o.p[o.len] = 0;
    }
    return o.len;
}

void plugin_log(int level, const char *msg, const struct cp_kv *kv, size_t n)
{
    if (level < atomic_load_explicit(&min_level, memory_order_relaxed))
        return;
    /* hclog's reader splits lines longer than 64 KiB; stay well below */
    char buf[8192];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    size_t len =
        plugin_log_format(buf, sizeof buf, level, msg, kv, n,
                          (int64_t)tv.tv_sec * 1000000 + tv.tv_usec);
    pthread_mutex_lock(&write_mu);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, buf + off, len - off);
        if (w <= 0)
            break; /* EPIPE when the host is gone: the parent watch ends the process */
        off += (size_t)w;
    }
    pthread_mutex_unlock(&write_mu);
}

static void logger_fn(void *ctx, int level, const char *msg, const struct cp_kv *kv, size_t n)
{
    (void)ctx;
    plugin_log(level, msg, kv, n);
}

static void secret_add_fn(void *ctx, const char *v)
{
    (void)ctx;
    plugin_log_secret_add(v);
}

static void secret_remove_fn(void *ctx, const char *v)
{
    (void)ctx;
    plugin_log_secret_remove(v);
}

void plugin_log_redact(const char *in, char *out, size_t size)
{
    struct out o = {out, 0, size > 3 ? size : 0, 0};
    if (size <= 3) {
        if (size)
            out[0] = 0;
        return;
    }
    /* the same replacement as for log lines, without the JSON escaping */
    size_t n = strlen(in);
    pthread_mutex_lock(&secrets_mu);
    redact_to(&o, in, n, n, put);
    pthread_mutex_unlock(&secrets_mu);
    out[o.len] = 0;
}

static void redact_fn(void *ctx, const char *in, char *out, size_t size)
{
    (void)ctx;
    plugin_log_redact(in, out, size);
}

const struct cp_logger plugin_logger = {logger_fn, NULL, secret_add_fn, secret_remove_fn,
                                        redact_fn};
