/* util.c - small shared tools: the logging handle, UTF-8 checks, capped buffers, clocks and
 * histograms. */
#include "base.h"

#include <ctype.h>
#include <dlfcn.h>
#include <openssl/evp.h>
#include <pthread.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cp_log(const struct cp_logger *lg, int level, const char *msg, const struct cp_kv *kv,
            size_t n)
{
    if (lg && lg->fn)
        lg->fn(lg->ctx, level, msg, kv, n);
}

void cp_log_secret_add(const struct cp_logger *lg, const char *v)
{
    if (lg && lg->secret_add && v)
        lg->secret_add(lg->ctx, v);
}

void cp_log_secret_remove(const struct cp_logger *lg, const char *v)
{
    if (lg && lg->secret_remove && v)
        lg->secret_remove(lg->ctx, v);
}

void cp_redact(const struct cp_logger *lg, const char *in, char *out, size_t size)
{
    if (!size)
        return;
    if (lg && lg->redact)
        lg->redact(lg->ctx, in ? in : "", out, size);
    else
        snprintf(out, size, "%s", in ? in : "");
}

size_t cp_utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F))
            return 0;
        return 3;
    }
    if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

int cp_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cp_http_token(const char *s)
{
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

char *cp_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (p && *p) {
        size_t n = cp_utf8_len(p);
        if (!n) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
    return s;
}

int cp_buf_add(struct cp_buf *b, const void *data, size_t n)
{
    size_t max = b->max ? b->max : SIZE_MAX - 1;
    if (n > max - b->len)
        return CP_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1)
            nc = nc > SIZE_MAX / 2 ? b->len + n + 1 : nc * 2;
        char *np = realloc(b->p, nc);
        if (!np)
            return CP_ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int cp_buf_addstr(struct cp_buf *b, const char *s) { return cp_buf_add(b, s, strlen(s)); }

int cp_buf_addf(struct cp_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CP_EINVAL;
    if ((size_t)n < sizeof small)
        return cp_buf_add(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big)
        return CP_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = cp_buf_add(b, big, (size_t)n);
    free(big);
    return rc;
}

char *cp_buf_take(struct cp_buf *b, size_t *len)
{
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void cp_buf_free(struct cp_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static const EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha256_md = md ? md : EVP_sha256();
}

const struct evp_md_st *cp_sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

int64_t cp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t cp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct timespec cp_deadline(int clk, int64_t ms)
{
    struct timespec ts;
    clock_gettime((clockid_t)clk, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

const double cp_hist_bounds[CP_HIST_NBOUNDS] = CP_HIST_BOUNDS;

void cp_hist_observe_ns(struct cp_hist *h, uint64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < CP_HIST_NBOUNDS && s > cp_hist_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}


/*
 * Debian builds Abseil without NDEBUG, which leaves its debug-only Mutex deadlock detector on:
 * every lock gRPC takes also takes one process-wide graph lock and updates a lock-order graph
 * (GraphCycles::GetId and friends, about 2 % of a gRPC server's CPU under load). Release
 * builds of Abseil have it off; absl::SetMutexDeadlockDetectionMode(kIgnore) turns it off,
 * looked up by its C++ name, so that an Abseil without the symbol is simply left alone.
 */
int cp_absl_deadlock_detection_off(void)
{
    static const char *const names[] = {
        "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
        "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        if (sym) {
            void (*set_mode)(int) = (void (*)(int))(uintptr_t)sym; /* enum class, 0 = kIgnore */
            set_mode(0);
            return 1;
        }
    }
    return 0;
}
