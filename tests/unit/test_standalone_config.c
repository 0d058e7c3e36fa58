/*
 * test_standalone_config.c - config/standalone.c: the standalone server's configuration file.
 * Defaults, listen forms, ${NAME} substitution (and $${ for a literal), errors that name the
 * file and the key (and line:column for JSON), data source settings validated by
 * cfg_ds_parse, API keys found by their digest and never present in an error text.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define DS "{\"uid\":\"api\",\"url\":\"http://127.0.0.1:9\"}"

static struct cfg_standalone *ok(const char *text)
{
    struct cfg_standalone *cfg = NULL;
    struct cp_err err = {0};
    int rc = cfg_standalone_parse(text, strlen(text), "t.json", &cfg, &err);
    if (rc)
        fail_msg("unexpected error: %s", cp_err_text(&err));
    assert_non_null(cfg);
    return cfg;
}

/* Parses text, which must fail; returns the message (static). */
static const char *bad(const char *text)
{
    static struct cp_err err;
    struct cfg_standalone *cfg = NULL;
    memset(&err, 0, sizeof err);
    assert_int_equal(cfg_standalone_parse(text, strlen(text), "t.json", &cfg, &err), CP_ECONFIG);
    assert_null(cfg);
    assert_int_equal(strncmp(err.msg, "t.json", 6), 0);
    return err.msg;
}

static void test_standalone__defaults(void **state)
{
    (void)state;
    struct cfg_standalone *cfg = ok("{\"datasources\":[" DS "]}");
    assert_string_equal(cfg->host, "127.0.0.1");
    assert_int_equal(cfg->port, 8080);
    assert_int_equal(cfg->threads, 2);
    assert_int_equal(cfg->max_body_bytes, 16 << 20);
    assert_int_equal(cfg->shutdown_ms, 10000);
    assert_int_equal(cfg->nds, 1);
    assert_string_equal(cfg->ds[0]->uid, "api");
    assert_string_equal(cfg->ds[0]->name, "api");
    assert_int_equal(cfg->ds[0]->org_id, 1);
    assert_int_equal(cfg->ds[0]->cache.backend, CFG_CACHE_MEMORY);
    assert_int_equal(cfg->nkeys, 0);
    cfg_standalone_free(cfg);
}

static void test_standalone__listen_forms(void **state)
{
    (void)state;
    static const struct {
        const char *listen, *host;
        int port;
    } cases[] = {{"0.0.0.0:80", "0.0.0.0", 80},
                 {":9000", "", 9000},
                 {"9001", "", 9001},
                 {"[::1]:9002", "::1", 9002},
                 {"localhost:0", "localhost", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "{\"listen\":\"%s\",\"datasources\":[" DS "]}",
                 cases[i].listen);
        struct cfg_standalone *cfg = ok(text);
        assert_string_equal(cfg->host, cases[i].host);
        assert_int_equal(cfg->port, cases[i].port);
        cfg_standalone_free(cfg);
    }
    assert_non_null(strstr(bad("{\"listen\":\"h:99999\",\"datasources\":[" DS "]}"), "listen:"));
    assert_non_null(strstr(bad("{\"listen\":\"::1:80\",\"datasources\":[" DS "]}"), "[::1]"));
}

static void test_standalone__env_substitution(void **state)
{
    (void)state;
    setenv("CP_UT_TOKEN", "tok-S3cret-value", 1);
    setenv("CP_UT_PORT", "7070", 1);
    struct cfg_standalone *cfg = ok(
        "{\"listen\":\"127.0.0.1:${CP_UT_PORT}\",\"datasources\":[{\"uid\":\"a\","
        "\"url\":\"http://127.0.0.1:9\",\"jsonData\":{\"authType\":\"bearer\","
        "\"healthPath\":\"/h$${x}$y\"},\"secureJsonData\":{\"bearerToken\":\"${CP_UT_TOKEN}\"}}]}");
    assert_int_equal(cfg->port, 7070);
    assert_string_equal(cfg->ds[0]->bearer_token.v, "tok-S3cret-value");
    assert_string_equal(cfg->ds[0]->health_path, "/h${x}$y");
    cfg_standalone_free(cfg);
    unsetenv("CP_UT_NOT_SET");
    const char *m = bad("{\"datasources\":[{\"uid\":\"a\",\"url\":\"http://x\","
                        "\"secureJsonData\":{\"apiKey\":\"${CP_UT_NOT_SET}\"}}]}");
    assert_non_null(strstr(m, "datasources[0].secureJsonData.apiKey: environment variable "
                              "CP_UT_NOT_SET is not set"));
    m = bad("{\"datasources\":[{\"uid\":\"a\",\"url\":\"${9bad}\"}]}");
    assert_non_null(strstr(m, "datasources[0].url:"));
}

static void test_standalone__errors_name_the_key(void **state)
{
    (void)state;
    const char *m = bad("{\n  \"listen\": \"127.0.0.1:1\",\n  \"datasources\": [,]\n}");
    assert_non_null(strstr(m, "t.json:3:"));
    assert_non_null(strstr(m, "not valid JSON"));
    m = bad("{\"datasources\":[{\"uid\":\"a\",\"url\":\"http://x\",\"jsonData\":{\"cache\":"
            "{\"backend\":\"disk\"}}}]}");
    assert_non_null(
        strstr(m, "datasources[0].jsonData.cache.backend: must be memory, redis or off"));
    m = bad("{\"datasources\":[" DS ",{\"uid\":\"b\"}]}");
    assert_non_null(strstr(m, "datasources[1].url: is required"));
    assert_non_null(strstr(bad("{\"datasources\":[" DS "," DS "]}"), "datasources[1].uid"));
    assert_non_null(strstr(bad("{\"datasources\":[]}"), "datasources: is required"));
    assert_non_null(strstr(bad("{\"datasource\":[" DS "]}"), "datasource: unknown key"));
    assert_non_null(strstr(bad("{\"datasources\":[{\"uid\":\"a b\",\"url\":\"http://x\"}]}"),
                           "datasources[0].uid"));
    assert_non_null(strstr(bad("{\"datasources\":[{\"uid\":\"a\",\"url\":\"http://x\","
                               "\"jsonData\":{\"authType\":\"forwardOAuth\"}}]}"),
                           "datasources[0].jsonData.authType"));
    assert_non_null(strstr(bad("{\"threads\":0,\"datasources\":[" DS "]}"), "threads:"));
    assert_non_null(
        strstr(bad("{\"maxBodyBytes\":\"lots\",\"datasources\":[" DS "]}"), "maxBodyBytes:"));
    assert_non_null(strstr(bad("{\"datasources\":[" DS "],\"apiKeys\":[{\"key\":\"short\","
                               "\"login\":\"a\"}]}"),
                           "apiKeys[0].key"));
    m = bad("{\"datasources\":[" DS "],\"apiKeys\":[{\"key\":\"S3cret-key-1\",\"login\":\"a\"},"
            "{\"key\":\"S3cret-key-1\",\"login\":\"b\"}]}");
    assert_non_null(strstr(m, "apiKeys[1].key: the same key as apiKeys[0]"));
    assert_null(strstr(m, "S3cret"));
    m = bad("{\"datasources\":[" DS "],\"apiKeys\":[{\"key\":\"S3cret-key-1\",\"login\":\"a\","
            "\"role\":\"Boss\"}]}");
    assert_non_null(strstr(m, "apiKeys[0].role"));
}

static void test_standalone__keys_by_digest(void **state)
{
    (void)state;
    struct cfg_standalone *cfg =
        ok("{\"datasources\":[" DS "],\"apiKeys\":[{\"key\":\"alice-key-1\",\"login\":\"alice\","
           "\"email\":\"a@x\",\"role\":\"Editor\",\"orgId\":3},{\"key\":\"bob-key-22\","
           "\"login\":\"bob\"}]}");
    assert_int_equal(cfg->nkeys, 2);
    const struct cfg_api_key *k = cfg_standalone_key(cfg, "alice-key-1", 11);
    assert_non_null(k);
    assert_string_equal(k->login, "alice");
    assert_string_equal(k->email, "a@x");
    assert_int_equal(k->role, CFG_ROLE_EDITOR);
    assert_int_equal(k->org_id, 3);
    k = cfg_standalone_key(cfg, "bob-key-22", 10);
    assert_non_null(k);
    assert_int_equal(k->role, CFG_ROLE_VIEWER);
    assert_int_equal(k->org_id, 1);
    assert_string_equal(k->name, "bob");
    assert_null(cfg_standalone_key(cfg, "alice-key-", 10));
    assert_null(cfg_standalone_key(cfg, "alice-key-12", 12));
    assert_null(cfg_standalone_key(cfg, "", 0));
    cfg_standalone_free(cfg);
}

static void test_standalone__load_file(void **state)
{
    (void)state;
    struct cfg_standalone *cfg = NULL;
    struct cp_err err = {0};
    assert_int_equal(cfg_standalone_load("/nonexistent/x.json", &cfg, &err), CP_ECONFIG);
    assert_non_null(strstr(err.msg, "/nonexistent/x.json: cannot read"));
    char path[] = "/tmp/cp-ut-standalone-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"datasources\":[" DS "]}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(cfg_standalone_load(path, &cfg, &err), 0);
    assert_int_equal(cfg->nds, 1);
    cfg_standalone_free(cfg);
    unlink(path);
    cfg_standalone_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standalone__defaults),
        cmocka_unit_test(test_standalone__listen_forms),
        cmocka_unit_test(test_standalone__env_substitution),
        cmocka_unit_test(test_standalone__errors_name_the_key),
        cmocka_unit_test(test_standalone__keys_by_digest),
        cmocka_unit_test(test_standalone__load_file),
    };
    return cmocka_run_group_tests_name("standalone_config", tests, NULL, NULL);
}
