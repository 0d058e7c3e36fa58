/*
 * fuzz_logline.c - libFuzzer driver for plugin_log_format, the JSON log line (hclog shape)
 * with secret redaction.
 *
 * Input: a header of 10 bytes (level as a signed byte; buffer size selector: 0 is the 8 KiB
 * that plugin_log uses, else 16 + 32 * n bytes; 8 bytes of timestamp, reduced to years 1970
 * to 9999), then NUL-separated parts: the message, the secret (registered with
 * plugin_log_secret_add and removed afterwards), then key, value, key, value, ... where a
 * value starting with '#' is the integer that follows.
 *
 * Whatever the input, the output is NUL-terminated inside the buffer. From 256 bytes on
 * (anything smaller cannot hold the skeleton) it is exactly one line, one JSON object that
 * jansson reads, with @level, @message, @module and a @timestamp of the form the plugin host
 * requires; either every key-value is there or none is (a line too long drops them, and a
 * message too long is replaced); the secret appears in no message or value.
 */
#include "config.h"
#include "plugin.h"

#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_KV 16
#define MAX_US 253402300800000000LL /* 10000-01-01T00:00:00Z */

static const char *const levels[] = {"trace", "debug", "info", "warn", "error"};

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* hclog: YYYY-MM-DDTHH:MM:SS.ffffff followed by Z */
static int ts_ok(const char *t)
{
    return strlen(t) == 27 && digits(t, 4) && t[4] == '-' && digits(t + 5, 2) && t[7] == '-' &&
           digits(t + 8, 2) && t[10] == 'T' && digits(t + 11, 2) && t[13] == ':' &&
           digits(t + 14, 2) && t[16] == ':' && digits(t + 17, 2) && t[19] == '.' &&
           digits(t + 20, 6) && t[26] == 'Z';
}

static void no_secret(const char *where, const char *s, const char *secret)
{
    if (secret && strstr(s, secret)) {
        fprintf(stderr, "fuzz_logline: the secret shows in %s: %s\n", where, s);
        assert(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10)
        return 0;
    int level = (int8_t)data[0];
    size_t bufsize = data[1] ? 16 + 32 * (size_t)data[1] : 8192;
    uint64_t t = 0;
    for (int i = 9; i >= 2; i--)
        t = t << 8 | data[i];
    int64_t us = (int64_t)(t % (uint64_t)MAX_US);

    /* the parts, NUL-separated */
    char *text = malloc(size - 10 + 1);
    if (!text)
        return 0;
    memcpy(text, data + 10, size - 10);
    text[size - 10] = 0;
    char *parts[2 + 2 * MAX_KV];
    size_t nparts = 0;
    for (char *p = text; nparts < 2 + 2 * MAX_KV;) {
        parts[nparts++] = p;
        char *end = p + strlen(p);
        if (end >= text + (size - 10))
            break;
        p = end + 1;
    }
    const char *msg = parts[0];
    const char *secret = nparts > 1 && strlen(parts[1]) >= 4 ? parts[1] : NULL;
    struct cp_kv kv[MAX_KV];
    size_t nkv = 0;
    for (size_t i = 2; i < nparts && nkv < MAX_KV; i += 2) {
        const char *v = i + 1 < nparts ? parts[i + 1] : "";
        if (v[0] == '#')
            kv[nkv++] = CP_KV_I(parts[i], strtoll(v + 1, NULL, 10));
        else
            kv[nkv++] = CP_KV_S(parts[i], v);
    }

    if (secret)
        plugin_log_secret_add(secret);
    char *buf = malloc(bufsize); /* exact size: ASan sees any overrun */
    assert(buf);
    size_t len = plugin_log_format(buf, bufsize, level, msg, kv, nkv, us);
    assert(len < bufsize && buf[len] == 0 && strlen(buf) == len);

    if (bufsize >= 256) {
        /* exactly one line */
        assert(len >= 2 && buf[len - 1] == '\n' && strchr(buf, '\n') == buf + len - 1);
        json_error_t je;
        json_t *j = json_loadb(buf, len, 0, &je);
        if (!j)
            fprintf(stderr, "fuzz_logline: not JSON (%s at %d): %.400s\n", je.text, je.position,
                    buf);
        assert(j && json_is_object(j));
        const char *lv = json_string_value(json_object_get(j, "@level"));
        const char *m = json_string_value(json_object_get(j, "@message"));
        const char *mod = json_string_value(json_object_get(j, "@module"));
        const char *ts = json_string_value(json_object_get(j, "@timestamp"));
        assert(lv && m && mod && ts);
        assert(!strcmp(lv, levels[level >= 0 && level <= 4 ? level : 2]));
        assert(!strcmp(mod, "cachingproxy"));
        if (!ts_ok(ts))
            fprintf(stderr, "fuzz_logline: bad @timestamp \"%s\" for %lld us\n", ts,
                    (long long)us);
        assert(ts_ok(ts));

        /* the key-values: all of them, or none when the line had to be cut */
        size_t want = 4, got = json_object_size(j);
        for (size_t i = 0; i < nkv; i++) {
            int dup = 0;
            for (size_t k = 0; k < i; k++)
                dup |= !strcmp(kv[k].key, kv[i].key);
            if (kv[i].key[0] && kv[i].key[0] != '@' && !dup)
                want++;
        }
        assert(got == want || got == 4);
        if (got == want)
            for (size_t i = 0; i < nkv; i++)
                if (kv[i].key[0] && kv[i].key[0] != '@')
                    assert(json_object_get(j, kv[i].key));

        /* The secret in no message or value. A secret that overlaps the marker text itself
         * ("[redacted]", "[log line truncated]") could be rebuilt from it: not a leak. */
        if (secret && !strpbrk(secret, "[]") && !strstr("[redacted]", secret) &&
            !strstr("[log line truncated]", secret) &&
            !strstr("cachingproxy", secret)) {
            const char *k;
            json_t *v;
            json_object_foreach(j, k, v)
            {
                if (json_is_string(v) && strcmp(k, "@timestamp") && strcmp(k, "@level"))
                    no_secret(k, json_string_value(v), secret);
            }
        }
        json_decref(j);
    } else if (len >= 2) {
        assert(buf[len - 1] == '\n' && strchr(buf, '\n') == buf + len - 1);
    }

    if (secret)
        plugin_log_secret_remove(secret);
    free(buf);
    free(text);
    return 0;
}
