/*
 * path.c - validation and normalisation of the resource sub-path (the part after "proxy/"),
 * and its re-encoding for the upstream URL.
 *
 * Grafana hands us the path twice: decoded once (CallResourceRequest.path) and escaped
 * (CallResourceRequest.url). We decode the escaped form exactly once ourselves and require
 * both to agree, so a proxy in between that decodes differently cannot smuggle a separator or
 * a dot segment past us. Anything that could move the request outside the upstream base, or
 * be read differently by the upstream than by our glob matching, is refused rather than
 * repaired: a "fixed" path would match globs the caller never asked for.
 */
#include "proxy_int.h"

#include <stdlib.h>
#include <string.h>

/* Hard cap on the normalised path, whatever buffer the caller offers. */
#define PATH_MAX_LEN 8192
/* Bytes of input quoted in an error message. */
#define EXCERPT_LEN 64


static int is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* A byte that, if a later layer decoded a second time, would change the path's structure or
 * smuggle in bytes we refuse: separators, dots, escapes, URL delimiters, controls, and
 * non-ASCII (lenient decoders turn overlong forms such as %c0%ae into '.'). */
static int is_unsafe_twice(unsigned char c)
{
    return c == '.' || c == '/' || c == '\\' || c == '%' || c == '?' || c == '#' ||
           is_ctl(c) || c >= 0x80;
}

/* Copies at most EXCERPT_LEN bytes of s into buf with everything but printable ASCII
 * replaced, so an error message neither echoes much input nor carries control bytes. */
static const char *excerpt(const char *s, char *buf, size_t size)
{
    size_t i = 0;
    for (; s[i] && i < EXCERPT_LEN && i + 4 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    if (s[i] && i + 4 <= size) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = 0;
    return buf;
}

static int reject(struct cp_err *err, const char *what, const char *input, const char *problem)
{
    char ex[EXCERPT_LEN + 4];
    return cp_err_set(err, CP_EBADREQ, "bad resource path (%s \"%s\"): %s", what,
                      excerpt(input, ex, sizeof ex), problem);
}

/* Length of the valid UTF-8 sequence at p (strict: no overlong forms, no surrogates, nothing
 * above U+10FFFF), or 0 if there is none. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* Checks the escaped form and that decoding it once gives exactly decoded. */
static int check_raw(const char *raw, const char *decoded, size_t dlen, struct cp_err *err)
{
    const unsigned char *r = (const unsigned char *)raw;
    size_t o = 0; /* bytes of decoded matched so far */
    size_t seg_len = 0;
    int seg_dots = 1; /* the current segment (decoded) holds only dots */
    int seg_escaped = 0;

    for (size_t i = 0;; i++) {
        unsigned char c = r[i];
        int escaped = 0;

        if (c == '%') {
            int h = cp_hexval(r[i + 1]), l = h < 0 ? -1 : cp_hexval(r[i + 2]);
            if (h < 0 || l < 0)
                return reject(err, "url", raw, "invalid percent escape");
            c = (unsigned char)(h << 4 | l);
            i += 2;
            escaped = 1;
            if (c == '/')
                return reject(err, "url", raw, "encoded slash");
            if (c == '\\')
                return reject(err, "url", raw, "encoded backslash");
            if (c == 0)
                return reject(err, "url", raw, "encoded NUL");
            if (is_ctl(c))
                return reject(err, "url", raw, "encoded control character");
        } else if (c == '\\') {
            return reject(err, "url", raw, "backslash");
        } else if (c && is_ctl(c)) {
            return reject(err, "url", raw, "control character");
        } else if (c == '?' || c == '#') {
            return reject(err, "url", raw, "'?' or '#' in path");
        }

        if (c == 0 || c == '/') {
            if (seg_escaped && seg_dots && (seg_len == 1 || seg_len == 2))
                return reject(err, "url", raw, "encoded dot segment");
            if (c == 0)
                break;
            seg_len = 0;
            seg_dots = 1;
            seg_escaped = 0;
        } else {
            seg_len++;
            seg_dots &= c == '.';
            seg_escaped |= escaped;
        }

        if (o >= dlen || (unsigned char)decoded[o] != c)
            return reject(err, "url", raw, "path and url disagree");
        o++;
    }
    if (o != dlen)
        return reject(err, "url", raw, "path and url disagree");
    return 0;
}

/* A first segment "scheme:" ([A-Za-z][A-Za-z0-9+.-]*:) would read as an absolute URL. */
static int is_scheme(const char *seg, size_t len)
{
    if (len < 2 || seg[len - 1] != ':')
        return 0;
    if (!((seg[0] >= 'A' && seg[0] <= 'Z') || (seg[0] >= 'a' && seg[0] <= 'z')))
        return 0;
    for (size_t i = 1; i + 1 < len; i++) {
        char c = seg[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int check_decoded(const char *d, size_t len, struct cp_err *err)
{
    const unsigned char *p = (const unsigned char *)d;

    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        size_t n;
        if (c == '\\')
            return reject(err, "path", d, "backslash");
        if (is_ctl(c))
            return reject(err, "path", d, "control character");
        if (c == '?' || c == '#')
            return reject(err, "path", d, "'?' or '#' in path");
        if (c == '%') {
            int h = cp_hexval(p[i + 1]), l = h < 0 ? -1 : cp_hexval(p[i + 2]);
            if (h >= 0 && l >= 0 && is_unsafe_twice((unsigned char)(h << 4 | l)))
                return reject(err, "path", d, "double-encoded character");
        }
        n = utf8_seq(p + i);
        if (!n)
            return reject(err, "path", d, "invalid UTF-8");
        i += n;
    }

    /* Segments: none empty except a trailing one, no "." or "..", no scheme first. */
    for (size_t s = 0, nseg = 0;; nseg++) {
        const char *slash = memchr(d + s, '/', len - s);
        size_t e = slash ? (size_t)(slash - d) : len;
        size_t sl = e - s;
        if (sl == 0 && slash)
            return reject(err, "path", d, "empty segment");
        /* servlet containers drop ";params" before resolving, so "..;x" is ".." to them */
        const char *semi = memchr(d + s, ';', sl);
        size_t bl = semi ? (size_t)(semi - (d + s)) : sl;
        if ((bl == 1 && d[s] == '.') || (bl == 2 && d[s] == '.' && d[s + 1] == '.'))
            return reject(err, "path", d, "dot segment");
        if (nseg == 0 && is_scheme(d + s, sl))
            return reject(err, "path", d, "absolute URL");
        if (!slash)
            break;
        s = e + 1;
    }
    return 0;
}

int proxy__path_normalize(const char *decoded, const char *raw, char *out, size_t size,
                          struct cp_err *err)
{
    size_t len, cap;
    int rc;

    if (!out || size == 0)
        return cp_err_set(err, CP_EINVAL, "path: no output buffer");
    out[0] = 0;
    if (!decoded)
        return cp_err_set(err, CP_EINVAL, "path: no path given");

    cap = size - 1 < PATH_MAX_LEN ? size - 1 : PATH_MAX_LEN;
    len = strnlen(decoded, cap + 1);
    if (len + 1 > cap)
        return cp_err_set(err, CP_EBADREQ, "bad resource path: path too long (limit %zu)",
                          cap);
    /* Escaped form is at most three bytes per decoded byte; stop scanning hostile giants. */
    if (raw && strnlen(raw, 3 * PATH_MAX_LEN + 1) > 3 * PATH_MAX_LEN)
        return cp_err_set(err, CP_EBADREQ, "bad resource path: url too long");

    if (raw && (rc = check_raw(raw, decoded, len, err)) != 0)
        return rc;
    if ((rc = check_decoded(decoded, len, err)) != 0)
        return rc;

    out[0] = '/';
    memcpy(out + 1, decoded, len);
    out[len + 1] = 0;
    return 0;
}

static int keep_byte(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    return c && strchr("-._~!$&'()*+,;=:@/", c) != NULL;
}

char *proxy__path_encode(const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len, n = 0;
    char *s;

    if (!path)
        return NULL;
    len = strlen(path);
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    s = malloc(3 * len + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (keep_byte(c)) {
            s[n++] = (char)c;
        } else {
            s[n++] = '%';
            s[n++] = hex[c >> 4];
            s[n++] = hex[c & 15];
        }
    }
    s[n] = 0;
    return s;
}
