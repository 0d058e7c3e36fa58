/*
 * fuzz_path.c - libFuzzer driver for proxy__path_normalize and proxy__path_encode.
 *
 * Input: the decoded path, then optionally a NUL byte and the raw (escaped) path; without a
 * NUL byte raw is NULL, as when Grafana sends no url. Whatever the input, an accepted path
 * must be safe to match and to send upstream, and must survive encode/decode unchanged.
 */
#include "proxy_int.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Independent once-only percent decoder; returns 0 on an invalid escape. */
static int pct_decode(const char *s, char *d)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '%') {
            int h = hexdig(s[i + 1]), l = h < 0 ? -1 : hexdig(s[i + 2]);
            if (l < 0)
                return 0;
            d[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            d[o++] = s[i];
        }
    }
    d[o] = 0;
    return 1;
}

static void check_safe(const char *out)
{
    size_t n = strlen(out);
    assert(out[0] == '/');
    assert(!strstr(out, "//"));
    assert(!strstr(out, "/./") && !strstr(out, "/../"));
    assert(strcmp(out, "/.") != 0 && strcmp(out, "/..") != 0);
    assert(n < 2 || strcmp(out + n - 2, "/.") != 0);
    assert(n < 3 || strcmp(out + n - 3, "/..") != 0);
    assert(!strchr(out, '\\') && !strchr(out, '?') && !strchr(out, '#'));
    for (size_t i = 0; i < n; i++)
        assert((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1), *decoded, *raw = NULL, *enc, *back;
    char out[8200], out2[8200], small[32];
    const uint8_t *nul;
    struct cp_err err = {0};
    int rc;

    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    decoded = buf;
    nul = memchr(data, 0, size);
    if (nul)
        raw = buf + (nul - data) + 1;

    rc = proxy__path_normalize(decoded, raw, out, sizeof out, &err);
    assert(rc == 0 || rc == CP_EBADREQ);
    assert(strlen(err.msg) < sizeof err.msg);
    if (rc != 0) {
        assert(out[0] == 0 && err.code == CP_EBADREQ && err.msg[0]);
        /* A smaller buffer never accepts what a larger one refused. */
        assert(proxy__path_normalize(decoded, raw, small, sizeof small, NULL) == CP_EBADREQ);
        free(buf);
        return 0;
    }

    check_safe(out);
    assert(strcmp(out + 1, decoded) == 0);
    if (raw) {
        /* raw decodes exactly once to the accepted path */
        back = malloc(strlen(raw) + 1);
        assert(back && pct_decode(raw, back) && strcmp(back, decoded) == 0);
        free(back);
        /* the same path without the url is accepted too */
        assert(proxy__path_normalize(decoded, NULL, out2, sizeof out2, NULL) == 0);
        assert(strcmp(out2, out) == 0);
    }

    /* Encoding round-trips and the result, fed back in, is a fixed point. */
    enc = proxy__path_encode(out);
    assert(enc && enc[0] == '/');
    back = malloc(strlen(enc) + 1);
    assert(back && pct_decode(enc, back) && strcmp(back, out) == 0);
    assert(proxy__path_normalize(out + 1, enc + 1, out2, sizeof out2, NULL) == 0);
    assert(strcmp(out2, out) == 0);

    /* The buffer size only decides "too long", never the result. */
    rc = proxy__path_normalize(decoded, raw, small, sizeof small, NULL);
    if (strlen(out) < sizeof small)
        assert(rc == 0 && strcmp(small, out) == 0);
    else
        assert(rc == CP_EBADREQ);

    free(back);
    free(enc);
    free(buf);
    return 0;
}
