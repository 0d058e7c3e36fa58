/*
 * test_plugin.c - plugin/: the go-plugin handshake (handshake.c), JSON log lines and their
 * redaction (log.c) and the Prometheus exposition (metrics.c).
 *
 * Log lines are read back with jansson, so "valid JSON" means what the plugin host's reader
 * means. Metrics are checked line by line against the Prometheus text format.
 */
#include "plugin.h"
#include "plugin_int.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- handshake ------------------------------------------------------------------------------- */

static void test_handshake__pick_version(void **state)
{
    (void)state;
    static const struct {
        const char *offered;
        int want;
    } t[] = {
        {"2", 2},     {"1,2", 2},  {"3,2,1", 2},  {"2,3", 2}, {" 1, 2 ", 2}, {"1", 2},
        {"3", 2},     {"", 2},     {NULL, 2},     {"garbage", 2}, {"x,2,y", 2}, {",,,", 2},
        {"-2", 2},    {"22", 2},   {"12,21", 2},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int got = plugin_pick_version(t[i].offered);
        if (got != t[i].want)
            print_error("\"%s\": %d\n", t[i].offered ? t[i].offered : "(null)", got);
        assert_int_equal(got, t[i].want);
    }
}

static void test_handshake__line_exact(void **state)
{
    (void)state;
    char buf[128];
    int n = plugin_handshake_line(buf, sizeof buf, 2, "unix", "/tmp/plugin123");
    assert_string_equal(buf, "1|2|unix|/tmp/plugin123|grpc|\n");
    assert_int_equal(n, (int)strlen("1|2|unix|/tmp/plugin123|grpc|\n"));

    n = plugin_handshake_line(buf, sizeof buf, 1, "tcp", "127.0.0.1:41234");
    assert_string_equal(buf, "1|1|tcp|127.0.0.1:41234|grpc|\n");
    assert_int_equal(n, (int)strlen(buf));
}

static void test_handshake__line_refuses_separators(void **state)
{
    (void)state;
    static const struct {
        const char *network, *address;
    } bad[] = {
        {"unix", "/tmp/a|b"}, {"un|ix", "/tmp/a"},   {"unix", "/tmp/a\nb"},
        {"unix\n", "/tmp/a"}, {"unix", "/tmp/a\r"},  {"unix", "/tmp/a\n1|2|tcp|evil|grpc|"},
        {"", "/tmp/a"},       {"unix", ""},          {NULL, "/tmp/a"},
        {"unix", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[128];
        memset(buf, 'X', sizeof buf);
        int n = plugin_handshake_line(buf, sizeof buf, 2, bad[i].network, bad[i].address);
        if (n != CP_EINVAL)
            print_error("case %zu accepted: %d\n", i, n);
        assert_int_equal(n, CP_EINVAL);
    }
}

static void test_handshake__line_buffer_too_small(void **state)
{
    (void)state;
    const char *want = "1|2|unix|/tmp/plugin123|grpc|\n";
    size_t len = strlen(want);
    char buf[64];
    /* room for the line but not its terminator, and less */
    assert_int_equal(plugin_handshake_line(buf, len, 2, "unix", "/tmp/plugin123"), CP_EINVAL);
    assert_int_equal(plugin_handshake_line(buf, 10, 2, "unix", "/tmp/plugin123"), CP_EINVAL);
    assert_int_equal(plugin_handshake_line(buf, 1, 2, "unix", "/tmp/plugin123"), CP_EINVAL);
    /* exactly enough */
    assert_int_equal(plugin_handshake_line(buf, len + 1, 2, "unix", "/tmp/plugin123"), (int)len);
    assert_string_equal(buf, want);
}

/* A fresh directory under /tmp; the caller removes it. */
static void make_dir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/cp_test_plugin_XXXXXX");
    assert_non_null(mkdtemp(out));
}

/* out must be "<dir>/plugin<digits>" and must not exist. */
static void assert_socket_path(const char *dir, const char *out)
{
    size_t dl = strlen(dir);
    assert_memory_equal(out, dir, dl);
    assert_memory_equal(out + dl, "/plugin", 7);
    const char *d = out + dl + 7;
    assert_true(*d != 0);
    for (; *d; d++)
        assert_true(*d >= '0' && *d <= '9');
    assert_true(strlen(out) <= 107);
    struct stat st;
    assert_int_equal(lstat(out, &st), -1);
    assert_int_equal(errno, ENOENT);
}

static void test_handshake__socket_path(void **state)
{
    (void)state;
    char dir[64], withslash[80], out[200];
    make_dir(dir, sizeof dir);
    assert_int_equal(plugin_socket_path(dir, out, sizeof out), 0);
    assert_socket_path(dir, out);

    /* trailing slashes are not doubled */
    snprintf(withslash, sizeof withslash, "%s/", dir);
    assert_int_equal(plugin_socket_path(withslash, out, sizeof out), 0);
    assert_socket_path(dir, out);
    assert_null(strstr(out, "//"));
    snprintf(withslash, sizeof withslash, "%s///", dir);
    assert_int_equal(plugin_socket_path(withslash, out, sizeof out), 0);
    assert_socket_path(dir, out);

    /* no directory given: /tmp */
    assert_int_equal(plugin_socket_path(NULL, out, sizeof out), 0);
    assert_socket_path("/tmp", out);
    assert_int_equal(plugin_socket_path("", out, sizeof out), 0);
    assert_socket_path("/tmp", out);

    /* the chosen path can be bound: it really is free */
    char a[200], b[200];
    assert_int_equal(plugin_socket_path(dir, a, sizeof a), 0);
    assert_int_equal(plugin_socket_path(dir, b, sizeof b), 0);
    assert_string_not_equal(a, b);
    rmdir(dir);
}

static void test_handshake__socket_path_unusable_dir(void **state)
{
    (void)state;
    char out[200], dir[64], file[100];
    assert_int_equal(plugin_socket_path("/nonexistent/cp-test-dir", out, sizeof out), CP_EINVAL);
    make_dir(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/regular", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(plugin_socket_path(file, out, sizeof out), CP_EINVAL);
    unlink(file);
    /* out buffer too small for the path */
    assert_int_equal(plugin_socket_path(dir, out, 12), CP_EINVAL);
    rmdir(dir);
}

static void test_handshake__socket_path_length_limit(void **state)
{
    (void)state;
    /* a directory whose path leaves no room under sun_path's 107 usable bytes */
    char base[64], deep[256], out[512];
    make_dir(base, sizeof base);
    size_t bl = strlen(base);
    snprintf(deep, sizeof deep, "%s/", base);
    memset(deep + bl + 1, 'd', 100 - bl - 1);
    deep[100] = 0; /* strlen(deep) == 100: 100 + "/plugin" + digits > 107 */
    assert_int_equal(mkdir(deep, 0700), 0);
    assert_int_equal(plugin_socket_path(deep, out, sizeof out), CP_EINVAL);
    rmdir(deep);

    /* a shorter one fits */
    deep[80] = 0;
    assert_int_equal(mkdir(deep, 0700), 0);
    assert_int_equal(plugin_socket_path(deep, out, sizeof out), 0);
    assert_socket_path(deep, out);
    rmdir(deep);
    rmdir(base);
}

/* ---- log lines ------------------------------------------------------------------------------- */

#define TS_US 1700000000123456LL /* 2023-11-14T22:13:20.123456Z */

/* Formats and parses one line; checks it is exactly one line holding one JSON object. */
static json_t *log_line(char *buf, size_t size, int level, const char *msg,
                        const struct cp_kv *kv, size_t n)
{
    size_t len = plugin_log_format(buf, size, level, msg, kv, n, TS_US);
    assert_true(len < size);
    assert_int_equal(strlen(buf), len);
    assert_true(len >= 2);
    assert_int_equal(buf[len - 1], '\n');
    assert_ptr_equal(strchr(buf, '\n'), buf + len - 1);
    json_error_t je;
    json_t *j = json_loadb(buf, len, 0, &je);
    if (!j)
        print_error("not JSON (%s at %d): %.300s\n", je.text, je.position, buf);
    assert_non_null(j);
    assert_true(json_is_object(j));
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        print_error("key %s is not a string\n", key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void test_log__shape(void **state)
{
    (void)state;
    char buf[8192];
    struct cp_kv kv[] = {CP_KV_S("path", "/items/1"), CP_KV_I("status", 200),
                         CP_KV_I("negative", -42), CP_KV_I("big", LLONG_MAX),
                         CP_KV_S("empty", "")};
    json_t *j = log_line(buf, sizeof buf, CP_LOG_WARN, "upstream slow", kv, 5);
    assert_string_equal(jstr(j, "@level"), "warn");
    assert_string_equal(jstr(j, "@message"), "upstream slow");
    assert_string_equal(jstr(j, "@module"), "cachingproxy");
    assert_string_equal(jstr(j, "@timestamp"), "2023-11-14T22:13:20.123456Z");
    assert_string_equal(jstr(j, "path"), "/items/1");
    assert_true(json_is_integer(json_object_get(j, "status")));
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "negative")), -42);
    assert_int_equal(json_integer_value(json_object_get(j, "big")), LLONG_MAX);
    assert_string_equal(jstr(j, "empty"), "");
    assert_int_equal(json_object_size(j), 9);
    json_decref(j);
}

static void test_log__levels(void **state)
{
    (void)state;
    static const char *const names[] = {"trace", "debug", "info", "warn", "error"};
    char buf[1024];
    for (int l = CP_LOG_TRACE; l <= CP_LOG_ERROR; l++) {
        json_t *j = log_line(buf, sizeof buf, l, "m", NULL, 0);
        assert_string_equal(jstr(j, "@level"), names[l]);
        json_decref(j);
    }
    /* out of range levels still give a valid line */
    json_t *j = log_line(buf, sizeof buf, 99, "m", NULL, 0);
    assert_string_equal(jstr(j, "@level"), "info");
    json_decref(j);
}

static void test_log__timestamp_format(void **state)
{
    (void)state;
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                             "\\.[0-9]{6}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    static const struct {
        int64_t us;
        const char *want;
    } t[] = {
        {0, "1970-01-01T00:00:00.000000Z"},
        {42, "1970-01-01T00:00:00.000042Z"},
        {1700000000000001LL, "2023-11-14T22:13:20.000001Z"},
        {1700000000999999LL, "2023-11-14T22:13:20.999999Z"},
        {951782400500000LL, "2000-02-29T00:00:00.500000Z"},
        {4102444799999999LL, "2099-12-31T23:59:59.999999Z"},
    };
    char buf[512];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t len = plugin_log_format(buf, sizeof buf, CP_LOG_INFO, "m", NULL, 0, t[i].us);
        json_t *j = json_loadb(buf, len, 0, NULL);
        assert_non_null(j);
        const char *ts = jstr(j, "@timestamp");
        assert_int_equal(regexec(&re, ts, 0, NULL, 0), 0);
        assert_string_equal(ts, t[i].want);
        json_decref(j);
    }
    regfree(&re);
}

static void test_log__escaping(void **state)
{
    (void)state;
    static const char nasty[] = "q\"uote back\\slash nl\nline cr\r tab\t bell\x07 esc\x1b "
                                "del\x7f nul-less \x01\x1f end";
    char buf[4096];
    struct cp_kv kv[] = {CP_KV_S("detail", nasty), CP_KV_S("k\"ey\n", "v")};
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, nasty, kv, 2);
    assert_string_equal(jstr(j, "@message"), nasty);
    assert_string_equal(jstr(j, "detail"), nasty);
    assert_string_equal(jstr(j, "k\"ey\n"), "v");
    /* no raw control character reaches the output */
    for (const char *c = buf; *c && c < buf + strlen(buf) - 1; c++)
        assert_true((unsigned char)*c >= 0x20);
    json_decref(j);

    /* UTF-8 passes through */
    struct cp_kv u[] = {CP_KV_S("city", "Zürich ☃")};
    j = log_line(buf, sizeof buf, CP_LOG_INFO, "héllo", u, 1);
    assert_string_equal(jstr(j, "@message"), "héllo");
    assert_string_equal(jstr(j, "city"), "Zürich ☃");
    json_decref(j);
}

static void test_log__reserved_keys_not_overridden(void **state)
{
    (void)state;
    char buf[1024];
    struct cp_kv kv[] = {CP_KV_S("@level", "error"), CP_KV_S("@message", "forged"),
                         CP_KV_S("", "nokey"), CP_KV_S("ok", "yes")};
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, "real", kv, 4);
    assert_string_equal(jstr(j, "@level"), "info");
    assert_string_equal(jstr(j, "@message"), "real");
    assert_string_equal(jstr(j, "ok"), "yes");
    /* the raw text holds each reserved key once: no duplicate keys for the host to mix up */
    static const char *const reserved[] = {"\"@level\"", "\"@message\""};
    for (size_t i = 0; i < 2; i++) {
        const char *first = strstr(buf, reserved[i]);
        assert_non_null(first);
        assert_null(strstr(first + 1, reserved[i]));
    }
    assert_null(strstr(buf, "forged"));
    json_decref(j);
}

static char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * times] = 0;
    return s;
}

static void test_log__huge_values_stay_valid_json(void **state)
{
    (void)state;
    char buf[8192]; /* the size plugin_log writes with */
    char *huge = repeat("abcdefghij", 10000);     /* 100 KB */
    char *ctl = repeat("\x01\"\\\n", 5000);       /* expands 6x, 4x, 2x when escaped */
    struct cp_kv kv[] = {CP_KV_S("a", huge), CP_KV_S("b", ctl), CP_KV_S("c", huge),
                         CP_KV_S("d", ctl),  CP_KV_S("e", huge), CP_KV_I("n", 7)};

    json_t *j = log_line(buf, sizeof buf, CP_LOG_ERROR, huge, kv, 1);
    /* a huge value is cut, the line stays bounded */
    assert_true(strlen(jstr(j, "@message")) < 8192);
    assert_true(strlen(jstr(j, "@message")) > 0);
    assert_memory_equal(jstr(j, "@message"), "abcdefghij", 10);
    assert_string_equal(jstr(j, "@level"), "error");
    assert_string_equal(jstr(j, "@timestamp"), "2023-11-14T22:13:20.123456Z");
    json_decref(j);

    /* many huge values: still one valid object with the reserved keys */
    j = log_line(buf, sizeof buf, CP_LOG_ERROR, ctl, kv, 6);
    assert_string_equal(jstr(j, "@level"), "error");
    assert_string_equal(jstr(j, "@module"), "cachingproxy");
    json_decref(j);

    free(huge);
    free(ctl);
}

static void test_log__small_buffer_stays_valid_json(void **state)
{
    (void)state;
    /* static storage: a failed assertion leaves nothing to leak */
    static char ctl[4 * 5000 + 1], small[4096];
    for (size_t i = 0; i < 5000; i++)
        memcpy(ctl + 4 * i, "\x01\"\\\n", 4);
    ctl[sizeof ctl - 1] = 0;
    struct cp_kv kv[] = {CP_KV_S("b", ctl), CP_KV_I("n", 7)};
    /* whatever is cut, the line is still one JSON object */
    static const size_t sizes[] = {4096, 1024, 300, 160}; /* the shortest line is ~120 bytes */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        json_t *j = log_line(small, sizes[i], CP_LOG_INFO, "short message", kv, 2);
        assert_string_equal(jstr(j, "@message"), "short message");
        json_decref(j);
        j = log_line(small, sizes[i], CP_LOG_INFO, ctl, kv, 2);
        json_decref(j);
    }
}

static void test_log__cut_keeps_utf8_valid(void **state)
{
    (void)state;
    char buf[8192];
    /* one ASCII byte, then 2-byte characters: any cut at an odd offset splits one */
    static char s[1 + 2 * 1000 + 1];
    s[0] = 'a';
    for (int i = 0; i < 1000; i++)
        memcpy(s + 1 + 2 * i, "\xc3\xa9", 2);
    s[1 + 2000] = 0;
    struct cp_kv kv[] = {CP_KV_S("v", s)};
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, s, kv, 1);
    assert_true(strlen(jstr(j, "v")) > 0);
    json_decref(j);
}

static void test_log__cut_never_leaks_secret_prefix(void **state)
{
    (void)state;
    char buf[8192];
    plugin_log_secret_add("s3cret-value");
    /* the secret straddles the 1024-byte cut of long values */
    char *s = malloc(1020 + 12 + 1);
    assert_non_null(s);
    memset(s, 'x', 1020);
    memcpy(s + 1020, "s3cret-value", 13);
    struct cp_kv kv[] = {CP_KV_S("v", s)};
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, s, kv, 1);
    json_decref(j);
    plugin_log_secret_remove("s3cret-value"); /* before asserting: later tests need it gone */
    free(s);
    assert_null(strstr(buf, "s3cr"));
}

static void test_log__redacts_registered_secret(void **state)
{
    (void)state;
    char buf[2048];
    plugin_log_secret_add("s3cret-value");
    struct cp_kv kv[] = {CP_KV_S("detail", "token=s3cret-value&x=s3cret-value"),
                         CP_KV_S("url", "https://h/?k=s3cret-value")};
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, "s3cret-value leaked? s3cret-value", kv,
                         2);
    assert_null(strstr(buf, "s3cret-value"));
    assert_string_equal(jstr(j, "@message"), "[redacted] leaked? [redacted]");
    assert_string_equal(jstr(j, "detail"), "token=[redacted]&x=[redacted]");
    assert_string_equal(jstr(j, "url"), "https://h/?k=[redacted]");
    json_decref(j);
    plugin_log_secret_remove("s3cret-value");

    /* once removed, the text is logged as is */
    j = log_line(buf, sizeof buf, CP_LOG_INFO, "s3cret-value", NULL, 0);
    assert_string_equal(jstr(j, "@message"), "s3cret-value");
    json_decref(j);
}

static void test_log__redaction_refcounted(void **state)
{
    (void)state;
    char buf[1024];
    json_t *j;
    plugin_log_secret_add("shared-s3cret");
    plugin_log_secret_add("shared-s3cret"); /* a second instance holds the same value */
    plugin_log_secret_remove("shared-s3cret");
    j = log_line(buf, sizeof buf, CP_LOG_INFO, "x shared-s3cret y", NULL, 0);
    assert_string_equal(jstr(j, "@message"), "x [redacted] y");
    json_decref(j);
    plugin_log_secret_remove("shared-s3cret");
    j = log_line(buf, sizeof buf, CP_LOG_INFO, "x shared-s3cret y", NULL, 0);
    assert_string_equal(jstr(j, "@message"), "x shared-s3cret y");
    json_decref(j);
    /* removing what was never added changes nothing */
    plugin_log_secret_remove("never-added-value");
    plugin_log_secret_remove(NULL);
}

static void test_log__short_secrets_ignored(void **state)
{
    (void)state;
    char buf[1024];
    plugin_log_secret_add("abc");
    plugin_log_secret_add("");
    plugin_log_secret_add(NULL);
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, "abc abcd", NULL, 0);
    assert_string_equal(jstr(j, "@message"), "abc abcd");
    json_decref(j);
    plugin_log_secret_remove("abc");
    /* four bytes is enough */
    plugin_log_secret_add("abcd");
    j = log_line(buf, sizeof buf, CP_LOG_INFO, "abc abcd", NULL, 0);
    assert_string_equal(jstr(j, "@message"), "abc [redacted]");
    json_decref(j);
    plugin_log_secret_remove("abcd");
}

static void test_log__encoded_forms_redacted(void **state)
{
    (void)state;
    char buf[2048];
    const char *secret = "p\"w/d key+1";
    plugin_log_secret_add(secret);
    const char *forms[] = {"p\"w/d key+1",          /* as is */
                           "p\\\"w/d key+1",       /* JSON-escaped */
                           "p\\\"w\\/d key+1",    /* JSON-escaped with \/ */
                           "p%22w%2Fd%20key%2B1",  /* percent-encoded */
                           "p%22w%2fd%20key%2b1",  /* lower-case hex */
                           "p%22w%2Fd+key%2B1"};   /* form-encoded */
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char text[256];
        snprintf(text, sizeof text, "echo=[%s]", forms[i]);
        struct cp_kv kv[] = {CP_KV_S("body", text)};
        json_t *j = log_line(buf, sizeof buf, CP_LOG_WARN, text, kv, 1);
        if (strcmp(jstr(j, "@message"), "echo=[[redacted]]"))
            print_error("form %zu: %s\n", i, jstr(j, "@message"));
        assert_string_equal(jstr(j, "@message"), "echo=[[redacted]]");
        assert_string_equal(jstr(j, "body"), "echo=[[redacted]]");
        json_decref(j);
        char out[256];
        plugin_log_redact(text, out, sizeof out);
        assert_string_equal(out, "echo=[[redacted]]");
    }
    plugin_log_secret_remove(secret);
    /* every form goes with the secret */
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, "p%22w%2Fd%20key%2B1", NULL, 0);
    assert_string_equal(jstr(j, "@message"), "p%22w%2Fd%20key%2B1");
    json_decref(j);
}

static void test_log__overlapping_and_special_secrets(void **state)
{
    (void)state;
    char buf[1024];
    /* a secret that contains another is redacted whole, whichever was added first */
    plugin_log_secret_add("token");
    plugin_log_secret_add("token-and-more-s3cret");
    const char *pw = "p\"w\\d\nsecret";
    plugin_log_secret_add(pw);
    struct cp_kv kv[] = {CP_KV_S("v", "a token-and-more-s3cret b")};
    char msg[128];
    snprintf(msg, sizeof msg, "pw=%s;", pw);
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, msg, kv, 1);
    assert_string_equal(jstr(j, "v"), "a [redacted] b");
    assert_string_equal(jstr(j, "@message"), "pw=[redacted];");
    assert_null(strstr(buf, "more-s3cret"));
    json_decref(j);
    plugin_log_secret_remove("token");
    plugin_log_secret_remove("token-and-more-s3cret");
    plugin_log_secret_remove(pw);
}

static void test_log__sensitive_keys_always_redacted(void **state)
{
    (void)state;
    char buf[2048];
    struct cp_kv kv[] = {
        CP_KV_S("password", "hunter2"),        CP_KV_S("apiKey", "k-123"),
        CP_KV_S("Authorization", "Bearer xyz"), CP_KV_S("db_password", "pw"),
        CP_KV_S("clientSecret", "cs"),          CP_KV_S("refresh_token", "rt"),
        CP_KV_S("Cookie", "sid=1"),             CP_KV_I("passwordLength", 7),
        CP_KV_S("path", "/ok"),
    };
    json_t *j = log_line(buf, sizeof buf, CP_LOG_INFO, "m", kv, 9);
    static const char *const hidden[] = {"password", "apiKey",        "Authorization",
                                         "db_password", "clientSecret", "refresh_token",
                                         "Cookie",   "passwordLength"};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        assert_string_equal(jstr(j, hidden[i]), "[redacted]");
    static const char *const values[] = {"hunter2", "k-123", "Bearer xyz", "sid=1"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        assert_null(strstr(buf, values[i]));
    assert_string_equal(jstr(j, "path"), "/ok");
    json_decref(j);
}

static void test_log__level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int want;
    } t[] = {
        {"trace", CP_LOG_TRACE}, {"debug", CP_LOG_DEBUG}, {"info", CP_LOG_INFO},
        {"warn", CP_LOG_WARN},   {"error", CP_LOG_ERROR}, {"WARN", CP_LOG_WARN},
        {"Debug", CP_LOG_DEBUG}, {"warning", CP_LOG_WARN}, {"", -1},
        {NULL, -1},              {"verbose", -1},         {"err", -1},
        {"info ", -1},           {"5", -1},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        assert_int_equal(plugin_log_level_parse(t[i].s), t[i].want);
}

/* ---- metrics --------------------------------------------------------------------------------- */

struct family_seen {
    char name[128];
    char type[16];
    int samples;
};

struct exposition {
    char *text;
    struct family_seen fam[64];
    size_t nfam;
};

static int sample_belongs(const char *sample, const struct family_seen *f)
{
    size_t n = strlen(f->name);
    if (strcmp(sample, f->name) == 0)
        return 1;
    if (strcmp(f->type, "histogram") == 0 && strncmp(sample, f->name, n) == 0)
        return !strcmp(sample + n, "_bucket") || !strcmp(sample + n, "_sum") ||
               !strcmp(sample + n, "_count");
    return 0;
}

/* Renders and checks the whole exposition line by line. */
static void render(struct exposition *e)
{
    struct cp_buf b = {0};
    assert_int_equal(plugin_metrics_render(&b), 0);
    assert_non_null(b.p);
    e->text = cp_buf_take(&b, NULL);
    e->nfam = 0;

    regex_t help, type, sample;
    assert_int_equal(regcomp(&help, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n]+$", REG_EXTENDED),
                     0);
    assert_int_equal(
        regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|"
                       "untyped)$",
                REG_EXTENDED),
        0);
    assert_int_equal(
        regcomp(&sample,
                "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
                "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\[\"\\\\n])*\""
                "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\[\"\\\\n])*\")*\\})? "
                "([-+]?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)$",
                REG_EXTENDED),
        0);

    size_t len = strlen(e->text);
    assert_true(len > 0);
    assert_int_equal(e->text[len - 1], '\n');
    char pending_help[128] = "";
    for (char *line = e->text; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = 0;
        regmatch_t m[3];
        if (!strncmp(line, "# HELP ", 7)) {
            if (regexec(&help, line, 3, m, 0))
                print_error("bad HELP line: %s\n", line);
            assert_int_equal(regexec(&help, line, 3, m, 0), 0);
            assert_string_equal(pending_help, ""); /* HELP is followed by its TYPE */
            snprintf(pending_help, sizeof pending_help, "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
                     line + m[1].rm_so);
            for (size_t i = 0; i < e->nfam; i++)
                assert_string_not_equal(e->fam[i].name, pending_help); /* once per family */
        } else if (!strncmp(line, "# TYPE ", 7)) {
            if (regexec(&type, line, 3, m, 0))
                print_error("bad TYPE line: %s\n", line);
            assert_int_equal(regexec(&type, line, 3, m, 0), 0);
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
                     line + m[1].rm_so);
            if (strcmp(name, pending_help))
                print_error("TYPE %s without its HELP just before\n", name);
            assert_string_equal(name, pending_help);
            assert_true(e->nfam < 64);
            struct family_seen *f = &e->fam[e->nfam++];
            snprintf(f->name, sizeof f->name, "%s", name);
            snprintf(f->type, sizeof f->type, "%.*s", (int)(m[2].rm_eo - m[2].rm_so),
                     line + m[2].rm_so);
            f->samples = 0;
            pending_help[0] = 0;
        } else {
            if (regexec(&sample, line, 3, m, 0))
                print_error("bad sample line: %s\n", line);
            assert_int_equal(regexec(&sample, line, 3, m, 0), 0);
            assert_string_equal(pending_help, "");
            assert_true(e->nfam > 0); /* no sample before its family's HELP and TYPE */
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
                     line + m[1].rm_so);
            if (!sample_belongs(name, &e->fam[e->nfam - 1]))
                print_error("sample %s under family %s\n", name, e->fam[e->nfam - 1].name);
            assert_true(sample_belongs(name, &e->fam[e->nfam - 1]));
            e->fam[e->nfam - 1].samples++;
        }
        *nl = '\n';
        line = nl + 1;
    }
    assert_string_equal(pending_help, "");
    regfree(&help);
    regfree(&type);
    regfree(&sample);
}

static const struct family_seen *family(const struct exposition *e, const char *name)
{
    for (size_t i = 0; i < e->nfam; i++)
        if (!strcmp(e->fam[i].name, name))
            return &e->fam[i];
    return NULL;
}

/* The value of the sample line that starts with series + ' ' (series includes labels). */
static double value_of(const struct exposition *e, const char *series)
{
    size_t sl = strlen(series);
    for (const char *line = e->text; *line;) {
        const char *nl = strchr(line, '\n');
        if (!strncmp(line, series, sl) && line[sl] == ' ')
            return strtod(line + sl + 1, NULL);
        line = nl + 1;
    }
    print_error("series %s not found\n", series);
    fail();
    return 0;
}

static void test_metrics__families_of_spec(void **state)
{
    (void)state;
    struct exposition e;
    render(&e);
    static const struct {
        const char *name, *type;
    } want[] = {
        {"cachingproxy_cache_requests_total", "counter"},
        {"cachingproxy_cache_entries", "gauge"},
        {"cachingproxy_cache_bytes", "gauge"},
        {"cachingproxy_cache_evictions_total", "counter"},
        {"cachingproxy_coalesced_requests_total", "counter"},
        {"cachingproxy_upstream_requests_total", "counter"},
        {"cachingproxy_upstream_duration_seconds", "histogram"},
        {"cachingproxy_authz_decisions_total", "counter"},
        {"cachingproxy_redis_errors_total", "counter"},
        {"cachingproxy_redis_redirects_total", "counter"},
        {"cachingproxy_redis_failovers_total", "counter"},
        {"cachingproxy_redis_node_errors_total", "counter"},
        {"cachingproxy_redis_decrypt_failures_total", "counter"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_open_fds", "gauge"},
        {"process_start_time_seconds", "gauge"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct family_seen *f = family(&e, want[i].name);
        if (!f)
            print_error("family %s missing\n", want[i].name);
        assert_non_null(f);
        assert_string_equal(f->type, want[i].type);
    }
    /* counters are named *_total */
    for (size_t i = 0; i < e.nfam; i++)
        if (!strcmp(e.fam[i].type, "counter"))
            assert_non_null(strstr(e.fam[i].name, "_total"));
    /* every label combination of the spec exists before any traffic */
    static const char *const kinds[] = {"resource", "query"};
    static const char *const results[] = {"hit", "miss", "stale", "bypass"};
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 4; r++) {
            char series[160];
            snprintf(series, sizeof series,
                     "cachingproxy_cache_requests_total{kind=\"%s\",result=\"%s\"}", kinds[k],
                     results[r]);
            assert_true(value_of(&e, series) >= 0);
        }
    assert_true(value_of(&e, "cachingproxy_redis_redirects_total{type=\"moved\"}") >= 0);
    assert_true(value_of(&e, "cachingproxy_redis_redirects_total{type=\"ask\"}") >= 0);
    assert_true(value_of(&e, "cachingproxy_authz_decisions_total{effect=\"allow\"}") >= 0);
    assert_true(value_of(&e, "cachingproxy_authz_decisions_total{effect=\"deny\"}") >= 0);
    assert_true(value_of(&e, "process_resident_memory_bytes") > 0);
    assert_true(value_of(&e, "process_open_fds") > 0);
    free(e.text);
}

static void test_metrics__counters_reflect_state(void **state)
{
    (void)state;
    struct exposition a, b;
    render(&a);
    atomic_fetch_add(&plugin_g.ctr.cache[0][0], 3); /* resource hit */
    atomic_fetch_add(&plugin_g.ctr.cache[1][1], 2); /* query miss */
    atomic_fetch_add(&plugin_g.ctr.cache[0][3], 1); /* resource bypass */
    atomic_fetch_add(&plugin_g.ctr.upstream[2], 5); /* 2xx */
    atomic_fetch_add(&plugin_g.ctr.upstream[0], 1); /* transport error */
    atomic_fetch_add(&plugin_g.ctr.authz[0], 4);    /* deny */
    atomic_fetch_add(&plugin_g.ctr.authz[1], 6);    /* allow */
    atomic_fetch_add(&plugin_g.ctr.redis_errors, 7);
    atomic_fetch_add(&plugin_g.ctr.evictions, 8);
    atomic_fetch_add(&plugin_g.ctr.coalesced, 9);
    render(&b);
    static const struct {
        const char *series;
        double delta;
    } t[] = {
        {"cachingproxy_cache_requests_total{kind=\"resource\",result=\"hit\"}", 3},
        {"cachingproxy_cache_requests_total{kind=\"query\",result=\"miss\"}", 2},
        {"cachingproxy_cache_requests_total{kind=\"resource\",result=\"bypass\"}", 1},
        {"cachingproxy_cache_requests_total{kind=\"query\",result=\"hit\"}", 0},
        {"cachingproxy_cache_requests_total{kind=\"resource\",result=\"miss\"}", 0},
        {"cachingproxy_cache_requests_total{kind=\"resource\",result=\"stale\"}", 0},
        {"cachingproxy_upstream_requests_total{status=\"2xx\"}", 5},
        {"cachingproxy_upstream_requests_total{status=\"5xx\"}", 0},
        {"cachingproxy_authz_decisions_total{effect=\"deny\"}", 4},
        {"cachingproxy_authz_decisions_total{effect=\"allow\"}", 6},
        {"cachingproxy_redis_errors_total", 7},
        {"cachingproxy_cache_evictions_total", 8},
        {"cachingproxy_coalesced_requests_total", 9},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double d = value_of(&b, t[i].series) - value_of(&a, t[i].series);
        if (d != t[i].delta)
            print_error("%s moved by %g, want %g\n", t[i].series, d, t[i].delta);
        assert_true(d == t[i].delta);
    }
    free(a.text);
    free(b.text);
}

static void test_metrics__histogram(void **state)
{
    (void)state;
    struct exposition a, b;
    const char *h = "cachingproxy_upstream_duration_seconds";
    render(&a);
    struct cp_hist *hist = &plugin_g.ctr.upstream_duration;
    cp_hist_observe_ns(hist, 300000ULL);         /* 0.3 ms: le 0.0005 */
    cp_hist_observe_ns(hist, 7000000ULL);        /* 7 ms: le 0.01 */
    cp_hist_observe_ns(hist, 2000000000ULL);     /* 2 s: le 2.5 */
    cp_hist_observe_ns(hist, 60000000000ULL);    /* 60 s: only +Inf */
    render(&b);

    /* bucket lines in rising le order, cumulative, ending in +Inf = _count */
    const struct family_seen *f = family(&b, h);
    assert_non_null(f);
    assert_int_equal(f->samples, CP_HIST_NBOUNDS + 1 + 2);
    double prev_le = -1, prev_count = -1, inf = -1;
    int nbuckets = 0, saw_inf = 0;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s_bucket{le=\"", h);
    for (const char *line = b.text; *line;) {
        const char *nl = strchr(line, '\n');
        if (!strncmp(line, prefix, strlen(prefix))) {
            const char *le = line + strlen(prefix);
            const char *q = strchr(le, '"');
            double count = strtod(strchr(line, ' ') + 1, NULL);
            assert_false(saw_inf); /* +Inf is the last bucket */
            if (!strncmp(le, "+Inf\"", 5)) {
                saw_inf = 1;
                inf = count;
            } else {
                char *end;
                double v = strtod(le, &end);
                assert_ptr_equal(end, q);
                assert_true(v > prev_le);
                prev_le = v;
            }
            assert_true(count >= prev_count);
            prev_count = count;
            nbuckets++;
        }
        line = nl + 1;
    }
    assert_true(saw_inf);
    assert_int_equal(nbuckets, CP_HIST_NBOUNDS + 1);
    char series[160];
    snprintf(series, sizeof series, "%s_count", h);
    assert_true(value_of(&b, series) == inf);
    assert_true(value_of(&b, series) - value_of(&a, series) == 4);

    static const struct {
        const char *le;
        double delta;
    } t[] = {{"0.0005", 1}, {"0.001", 1}, {"0.01", 2}, {"1", 2},
             {"2.5", 3},    {"30", 3},    {"+Inf", 4}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        snprintf(series, sizeof series, "%s_bucket{le=\"%s\"}", h, t[i].le);
        double d = value_of(&b, series) - value_of(&a, series);
        if (d != t[i].delta)
            print_error("le %s moved by %g, want %g\n", t[i].le, d, t[i].delta);
        assert_true(d == t[i].delta);
    }
    snprintf(series, sizeof series, "%s_sum", h);
    double sum = value_of(&b, series) - value_of(&a, series);
    assert_true(sum > 62.0072 && sum < 62.0074);
    free(a.text);
    free(b.text);
}

static void test_metrics__render_appends_and_respects_cap(void **state)
{
    (void)state;
    struct cp_buf b = {0};
    assert_int_equal(cp_buf_addstr(&b, "PREFIX\n"), 0);
    assert_int_equal(plugin_metrics_render(&b), 0);
    assert_memory_equal(b.p, "PREFIX\n# HELP ", 14);
    cp_buf_free(&b);
    /* a capped buffer too small for the exposition: an error, not an overflow */
    struct cp_buf small = {.max = 200};
    assert_int_not_equal(plugin_metrics_render(&small), 0);
    assert_true(small.len <= 200);
    cp_buf_free(&small);
}

/* Debian's Abseil (linked through gRPC) has the switch the plugin uses to turn off its
 * debug-only deadlock detector; a renamed symbol would silently cost every lock again. */
static void test_runtime__absl_deadlock_detection_switch(void **state)
{
    (void)state;
    assert_int_equal(cp_absl_deadlock_detection_off(), 1);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runtime__absl_deadlock_detection_switch),
        cmocka_unit_test(test_handshake__pick_version),
        cmocka_unit_test(test_handshake__line_exact),
        cmocka_unit_test(test_handshake__line_refuses_separators),
        cmocka_unit_test(test_handshake__line_buffer_too_small),
        cmocka_unit_test(test_handshake__socket_path),
        cmocka_unit_test(test_handshake__socket_path_unusable_dir),
        cmocka_unit_test(test_handshake__socket_path_length_limit),
        cmocka_unit_test(test_log__shape),
        cmocka_unit_test(test_log__levels),
        cmocka_unit_test(test_log__timestamp_format),
        cmocka_unit_test(test_log__escaping),
        cmocka_unit_test(test_log__reserved_keys_not_overridden),
        cmocka_unit_test(test_log__huge_values_stay_valid_json),
        cmocka_unit_test(test_log__small_buffer_stays_valid_json),
        cmocka_unit_test(test_log__cut_keeps_utf8_valid),
        cmocka_unit_test(test_log__cut_never_leaks_secret_prefix),
        cmocka_unit_test(test_log__redacts_registered_secret),
        cmocka_unit_test(test_log__redaction_refcounted),
        cmocka_unit_test(test_log__short_secrets_ignored),
        cmocka_unit_test(test_log__overlapping_and_special_secrets),
        cmocka_unit_test(test_log__encoded_forms_redacted),
        cmocka_unit_test(test_log__sensitive_keys_always_redacted),
        cmocka_unit_test(test_log__level_parse),
        cmocka_unit_test(test_metrics__families_of_spec),
        cmocka_unit_test(test_metrics__counters_reflect_state),
        cmocka_unit_test(test_metrics__histogram),
        cmocka_unit_test(test_metrics__render_appends_and_respects_cap),
    };
    return cmocka_run_group_tests_name("plugin", tests, NULL, NULL);
}
