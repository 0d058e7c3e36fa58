/*
 * test_path.c - proxy/path.c: resource sub-path validation, normalisation and re-encoding.
 *
 * Each table row becomes its own cmocka test so a failure names the case. A rejection row
 * also names a word of the expected message, so a case rejected for the wrong reason fails.
 */
#include "proxy_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct path_case {
    const char *name;
    const char *decoded;
    const char *raw;    /* NULL: Grafana sent no url */
    const char *expect; /* normalised output, or NULL when the path must be refused */
    const char *why;    /* for refusals: a fragment of the error message */
};

static const struct path_case hostile[] = {
    /* dot segments, plain and encoded */
    {"dotdot", "..", "..", NULL, "dot segment"},
    {"dot", ".", ".", NULL, "dot segment"},
    {"dotdot_middle", "a/../b", "a/../b", NULL, "dot segment"},
    {"dot_middle", "a/./b", "a/./b", NULL, "dot segment"},
    {"dotdot_trailing", "a/..", "a/..", NULL, "dot segment"},
    {"dotdot_no_raw", "a/../../etc/passwd", NULL, NULL, "dot segment"},
    {"dotdot_trailing_slash", "../", NULL, NULL, "dot segment"},
    {"enc_dotdot_lower", "../x", "%2e%2e/x", NULL, "encoded dot segment"},
    {"enc_dotdot_upper", "../x", "%2E%2E/x", NULL, "encoded dot segment"},
    {"enc_dotdot_half1", "../x", ".%2e/x", NULL, "encoded dot segment"},
    {"enc_dotdot_half2", "../x", "%2e./x", NULL, "encoded dot segment"},
    {"enc_dotdot_mixed", "a/../b", "a/%2E%2e/b", NULL, "encoded dot segment"},
    {"enc_dot", "./x", "%2e/x", NULL, "encoded dot segment"},
    {"enc_dotdot_end", "a/..", "a/%2e%2e", NULL, "encoded dot segment"},
    /* double encoding: the decoded path still holds an escape of something dangerous */
    {"dbl_dotdot", "%2e%2e/x", "%252e%252e/x", NULL, "double-encoded"},
    {"dbl_slash", "a%2fb", "a%252fb", NULL, "double-encoded"},
    {"dbl_slash_upper", "a%2Fb", "a%252Fb", NULL, "double-encoded"},
    {"dbl_backslash", "a%5cb", "a%255cb", NULL, "double-encoded"},
    {"dbl_nul", "a%00b", "a%2500b", NULL, "double-encoded"},
    {"dbl_overlong", "%c0%ae", "%25c0%25ae", NULL, "double-encoded"},
    {"dbl_triple", "%252e", "%25252e", NULL, "double-encoded"},
    {"dbl_no_raw", "x/%2e%2e/y", NULL, NULL, "double-encoded"},
    /* encoded separators */
    {"enc_slash_lower", "a/b", "a%2fb", NULL, "encoded slash"},
    {"enc_slash_upper", "a/b", "a%2Fb", NULL, "encoded slash"},
    {"enc_slash_dotdot", "../etc", "..%2fetc", NULL, "encoded slash"},
    {"enc_backslash_lower", "a\\b", "a%5cb", NULL, "encoded backslash"},
    {"enc_backslash_upper", "a\\b", "a%5Cb", NULL, "encoded backslash"},
    /* empty segments */
    {"double_slash", "a//b", "a//b", NULL, "empty segment"},
    {"leading_slash", "/evil.com/x", "/evil.com/x", NULL, "empty segment"},
    {"only_slash", "/", "/", NULL, "empty segment"},
    {"trailing_double_slash", "a/b//", "a/b//", NULL, "empty segment"},
    {"protocol_relative", "//evil.com", NULL, NULL, "empty segment"},
    /* absolute URLs */
    {"scheme_http", "http://evil.com/x", "http://evil.com/x", NULL, "absolute URL"},
    {"scheme_https_one_slash", "https:/evil.com", "https:/evil.com", NULL, "absolute URL"},
    {"scheme_file", "file:/etc/passwd", NULL, NULL, "absolute URL"},
    {"scheme_upper_alone", "FILE:", "FILE:", NULL, "absolute URL"},
    {"scheme_plus", "svn+ssh:/host/x", NULL, NULL, "absolute URL"},
    {"scheme_drive", "C:/windows", NULL, NULL, "absolute URL"},
    /* backslashes and control characters */
    {"backslash_decoded", "a\\b", NULL, NULL, "backslash"},
    {"backslash_raw", "a\\b", "a\\b", NULL, "backslash"},
    {"cr_encoded", "a\rb", "a%0db", NULL, "encoded control"},
    {"lf_encoded", "a\nb", "a%0Ab", NULL, "encoded control"},
    {"lf_raw", "a\nb", "a\nb", NULL, "control character"},
    {"tab_decoded", "a\tb", NULL, NULL, "control character"},
    {"del_encoded", "a\x7f" "b", "a%7fb", NULL, "encoded control"},
    {"ctl_decoded", "a\x01", NULL, NULL, "control character"},
    {"nul_encoded", "a", "a%00", NULL, "encoded NUL"},
    {"nul_encoded_mid", "a", "a%00/../b", NULL, "encoded NUL"},
    /* URL delimiters inside the path */
    {"question_decoded", "a?b", NULL, NULL, "'?'"},
    {"question_encoded", "a?b", "a%3fb", NULL, "'?'"},
    {"hash_encoded", "a#b", "a%23b", NULL, "'?'"},
    {"question_raw", "a", "a?x=1", NULL, "'?'"},
    /* malformed escapes */
    {"bad_escape_zz", "a%zz", "a%zz", NULL, "invalid percent escape"},
    {"bad_escape_short", "a%4", "a%4", NULL, "invalid percent escape"},
    {"bad_escape_trailing", "a%", "a%", NULL, "invalid percent escape"},
    {"bad_escape_half_hex", "a%g1", "a%g1", NULL, "invalid percent escape"},
    /* invalid UTF-8 */
    {"utf8_overlong_dot", "\xc0\xae", "%c0%ae", NULL, "invalid UTF-8"},
    {"utf8_overlong_dot_no_raw", "\xc0\xae\xc0\xae/x", NULL, NULL, "invalid UTF-8"},
    {"utf8_overlong_3", "\xe0\x80\xaf", NULL, NULL, "invalid UTF-8"},
    {"utf8_surrogate", "\xed\xa0\x80", "%ED%A0%80", NULL, "invalid UTF-8"},
    {"utf8_truncated", "\xe2\x82", NULL, NULL, "invalid UTF-8"},
    {"utf8_too_big", "\xf4\x90\x80\x80", NULL, NULL, "invalid UTF-8"},
    {"utf8_ff", "\xff", "%ff", NULL, "invalid UTF-8"},
    {"utf8_lone_continuation", "a\x80", NULL, NULL, "invalid UTF-8"},
    /* the two forms disagree */
    {"disagree_segment", "a/b", "a/c", NULL, "disagree"},
    {"disagree_all", "admin", "public", NULL, "disagree"},
    {"disagree_plus", "a b", "a+b", NULL, "disagree"},
    {"disagree_raw_longer", "ab", "abc", NULL, "disagree"},
    {"disagree_raw_shorter", "abc", "ab", NULL, "disagree"},
    {"disagree_undecoded", "%41", "%41", NULL, "disagree"},
    {"disagree_hidden_dotdot", "a/b", "a/..", NULL, "disagree"},
};

static const struct path_case benign[] = {
    {"simple", "items/1", "items/1", "/items/1", NULL},
    {"empty", "", "", "/", NULL},
    {"empty_no_raw", "", NULL, "/", NULL},
    {"no_raw", "items/1", NULL, "/items/1", NULL},
    {"trailing_slash", "items/", "items/", "/items/", NULL},
    {"dotted_name", "v1.2/x", "v1.2/x", "/v1.2/x", NULL},
    {"well_known", ".well-known/openid-configuration", ".well-known/openid-configuration",
     "/.well-known/openid-configuration", NULL},
    {"three_dots", "...", "...", "/...", NULL},
    {"dots_in_names", "..a/b..", "..a/b..", "/..a/b..", NULL},
    {"space", "a b", "a%20b", "/a b", NULL},
    {"utf8_2", "caf\xc3\xa9", "caf%C3%A9", "/caf\xc3\xa9", NULL},
    {"utf8_raw_bytes", "caf\xc3\xa9", "caf\xc3\xa9", "/caf\xc3\xa9", NULL},
    {"utf8_3_4", "\xe2\x82\xac/\xf0\x9f\x98\x80", NULL, "/\xe2\x82\xac/\xf0\x9f\x98\x80",
     NULL},
    {"tilde", "~user/x", "~user/x", "/~user/x", NULL},
    {"sub_delims", "a!$&'()*+,;=b", "a!$&'()*+,;=b", "/a!$&'()*+,;=b", NULL},
    {"colon_inside", "users:batchGet", "users:batchGet", "/users:batchGet", NULL},
    {"colon_later", "api/v1/projects:list", NULL, "/api/v1/projects:list", NULL},
    {"scheme_later_segment", "a/http:/b", "a/http:/b", "/a/http:/b", NULL},
    {"digit_colon", "9http:/x", NULL, "/9http:/x", NULL},
    {"at_sign", "user@host/x", "user@host/x", "/user@host/x", NULL},
    {"enc_dot_in_name", "v1.2", "v1%2e2", "/v1.2", NULL},
    {"enc_unreserved", "a", "%61", "/a", NULL},
    {"percent_literal", "100%", "100%25", "/100%", NULL},
    {"percent_not_hex", "a%zz", "a%25zz", "/a%zz", NULL},
    {"percent_safe_char", "a%41", "a%2541", "/a%41", NULL},
    {"deep_trailing", "a/b/c/", "a/b/c/", "/a/b/c/", NULL},
};

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

/* Percent-decodes s once into a malloc'd string (test oracle, independent of path.c); NULL
 * on an invalid escape. */
static char *pct_decode(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *d = malloc(n + 1);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h = i + 1 < n ? hexdig(s[i + 1]) : -1;
            int l = h >= 0 && i + 2 < n ? hexdig(s[i + 2]) : -1;
            if (l < 0) {
                free(d);
                return NULL;
            }
            d[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            d[o++] = s[i];
        }
    }
    d[o] = 0;
    return d;
}

static void test_path__hostile(void **state)
{
    const struct path_case *c = *state;
    char out[256];
    struct cp_err err = {0};
    int rc;

    memset(out, 'X', sizeof out);
    rc = proxy__path_normalize(c->decoded, c->raw, out, sizeof out, &err);
    if (rc != CP_EBADREQ)
        fail_msg("case %s: rc %d, out \"%s\"", c->name, rc, rc == 0 ? out : "");
    assert_int_equal(err.code, CP_EBADREQ);
    assert_string_equal(out, ""); /* nothing usable left behind */
    if (!strstr(err.msg, c->why))
        fail_msg("case %s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->why);
    for (const char *m = err.msg; *m; m++)
        assert_true((unsigned char)*m >= 0x20 && (unsigned char)*m < 0x7f);
}

static void test_path__benign(void **state)
{
    const struct path_case *c = *state;
    char out[256], *enc, *back;
    struct cp_err err = {0};
    int rc;

    rc = proxy__path_normalize(c->decoded, c->raw, out, sizeof out, &err);
    if (rc != 0)
        fail_msg("case %s: rc %d: %s", c->name, rc, err.msg);
    assert_string_equal(out, c->expect);

    /* What we send upstream decodes back to what we matched globs against... */
    enc = proxy__path_encode(out);
    assert_non_null(enc);
    back = pct_decode(enc);
    assert_non_null(back);
    assert_string_equal(back, out);
    /* ...and, fed back in as a (decoded, raw) pair, is accepted unchanged. */
    rc = proxy__path_normalize(out + 1, enc + 1, out, sizeof out, &err);
    if (rc != 0)
        fail_msg("case %s: re-encoded \"%s\" refused: %s", c->name, enc, err.msg);
    assert_string_equal(out, c->expect);
    free(back);
    free(enc);
}

static void test_path__dot_segments_with_parameters(void **state)
{
    (void)state;
    /* servlet containers strip ";params" before resolving dot segments */
    static const char *const with_params[] = {"a/..;/b", "..;", "a/.;x/b", "a/..;jsessionid=1/b"};
    for (size_t i = 0; i < sizeof with_params / sizeof with_params[0]; i++) {
        char out[256];
        struct cp_err err = {0};
        assert_int_equal(proxy__path_normalize(with_params[i], NULL, out, sizeof out, &err),
                         CP_EBADREQ);
    }
    char out[256];
    struct cp_err err = {0};
    assert_int_equal(proxy__path_normalize("a/...;/b;c", NULL, out, sizeof out, &err), 0);
    assert_string_equal(out, "/a/...;/b;c");
}

static void test_path__too_long(void **state)
{
    char dec[9000], out[20000];
    struct cp_err err = {0};
    (void)state;

    memset(dec, 'a', sizeof dec);
    /* size 64: at most 63 bytes of output, i.e. 62 of sub-path */
    dec[62] = 0;
    assert_int_equal(proxy__path_normalize(dec, NULL, out, 64, &err), 0);
    assert_int_equal(strlen(out), 63);
    dec[62] = 'a';
    dec[63] = 0;
    assert_int_equal(proxy__path_normalize(dec, dec, out, 64, &err), CP_EBADREQ);
    assert_non_null(strstr(err.msg, "too long"));
    /* the 8192 cap holds whatever the buffer */
    dec[63] = 'a';
    dec[8191] = 0;
    assert_int_equal(proxy__path_normalize(dec, dec, out, sizeof out, &err), 0);
    assert_int_equal(strlen(out), 8192);
    dec[8191] = 'a';
    dec[8192] = 0;
    assert_int_equal(proxy__path_normalize(dec, dec, out, sizeof out, &err), CP_EBADREQ);
    assert_non_null(strstr(err.msg, "too long"));
    /* size 1 leaves room for nothing, not even "/" */
    assert_int_equal(proxy__path_normalize("", NULL, out, 1, &err), CP_EBADREQ);
    assert_string_equal(out, "");
}

static void test_path__message_is_bounded(void **state)
{
    char dec[6000], out[8200];
    struct cp_err err = {0};
    (void)state;

    memset(dec, 'a', sizeof dec);
    memcpy(dec + 5000, "/../b", 6);
    assert_int_equal(proxy__path_normalize(dec, NULL, out, sizeof out, &err), CP_EBADREQ);
    assert_non_null(strstr(err.msg, "dot segment"));
    assert_true(strlen(err.msg) < 160);
    for (const char *m = err.msg, *run; (run = strchr(m, 'a')) != NULL; m = run + 1)
        assert_true(strspn(run, "a") <= 100);

    /* a header-injection attempt does not reach the message as line breaks */
    assert_int_equal(proxy__path_normalize("x\r\nSet-Cookie: a=b", NULL, out, sizeof out, &err),
                     CP_EBADREQ);
    assert_null(strchr(err.msg, '\r'));
    assert_null(strchr(err.msg, '\n'));
}

static void test_path__bad_arguments(void **state)
{
    char out[16];
    struct cp_err err = {0};
    (void)state;

    assert_int_equal(proxy__path_normalize(NULL, "a", out, sizeof out, &err), CP_EINVAL);
    assert_int_equal(proxy__path_normalize("a", "a", NULL, sizeof out, &err), CP_EINVAL);
    assert_int_equal(proxy__path_normalize("a", "a", out, 0, &err), CP_EINVAL);
    /* err may be NULL */
    assert_int_equal(proxy__path_normalize("..", NULL, out, sizeof out, NULL), CP_EBADREQ);
    assert_int_equal(proxy__path_normalize("ok", NULL, out, sizeof out, NULL), 0);
    assert_string_equal(out, "/ok");
}

static void test_path__encode_examples(void **state)
{
    static const struct {
        const char *in, *out;
    } ex[] = {
        {"", ""},
        {"/", "/"},
        {"/a b", "/a%20b"},
        {"/caf\xc3\xa9", "/caf%C3%A9"},
        {"/100%", "/100%25"},
        {"/a\"<>`{}|^[]", "/a%22%3C%3E%60%7B%7D%7C%5E%5B%5D"},
        {"/q?#", "/q%3F%23"},
        {"/AZaz09-._~!$&'()*+,;=:@/", "/AZaz09-._~!$&'()*+,;=:@/"},
        {"\x7f\x01\xff", "%7F%01%FF"},
    };
    (void)state;

    assert_null(proxy__path_encode(NULL));
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        char *s = proxy__path_encode(ex[i].in);
        assert_non_null(s);
        assert_string_equal(s, ex[i].out);
        free(s);
    }
}

static void test_path__encode_every_byte(void **state)
{
    static const char keep[] = "-._~!$&'()*+,;=:@/";
    (void)state;

    for (int c = 1; c < 256; c++) {
        char in[2] = {(char)c, 0}, want[4];
        char *s = proxy__path_encode(in), *back;
        int kept = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   strchr(keep, c) != NULL;
        assert_non_null(s);
        if (kept)
            snprintf(want, sizeof want, "%c", c);
        else
            snprintf(want, sizeof want, "%%%02X", (unsigned)c);
        assert_string_equal(s, want);
        back = pct_decode(s);
        assert_non_null(back);
        assert_string_equal(back, in);
        free(back);
        free(s);
    }
}

static struct CMUnitTest table_test(void (*fn)(void **), const char *prefix,
                                    const struct path_case *c, char **name)
{
    struct CMUnitTest t = {0};
    size_t n = strlen(prefix) + strlen(c->name) + 1;
    *name = malloc(n);
    assert_non_null(*name);
    snprintf(*name, n, "%s%s", prefix, c->name);
    t.name = *name;
    t.test_func = fn;
    t.initial_state = (void *)c;
    return t;
}

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_path__dot_segments_with_parameters),
        cmocka_unit_test(test_path__too_long),
        cmocka_unit_test(test_path__message_is_bounded),
        cmocka_unit_test(test_path__bad_arguments),
        cmocka_unit_test(test_path__encode_examples),
        cmocka_unit_test(test_path__encode_every_byte),
    };
    const size_t nh = sizeof hostile / sizeof hostile[0];
    const size_t nb = sizeof benign / sizeof benign[0];
    const size_t nf = sizeof fixed / sizeof fixed[0];
    const size_t n = nh + nb + nf;
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    char **names = calloc(n, sizeof *names);
    int rc;

    if (!tests || !names)
        return 1;
    for (size_t i = 0; i < nh; i++)
        tests[i] = table_test(test_path__hostile, "test_path__hostile_", &hostile[i], &names[i]);
    for (size_t i = 0; i < nb; i++)
        tests[nh + i] =
            table_test(test_path__benign, "test_path__benign_", &benign[i], &names[nh + i]);
    for (size_t i = 0; i < nf; i++)
        tests[nh + nb + i] = fixed[i];

    rc = _cmocka_run_group_tests("path", tests, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc;
}
