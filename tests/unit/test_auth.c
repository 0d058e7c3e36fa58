/*
 * test_auth.c - auth/: path globs and the rules engine (rules.c), HMAC signing (hmac.c) and
 * the credential injectors (inject.c).
 *
 * Settings are built the way the plugin builds them: cfg_ds_parse over jsonData text and
 * decrypted secure values, then auth_ds_new with an environment without logger, counters or
 * module directory. Signatures are checked against vectors computed with the openssl CLI, not
 * with the code under test.
 */
#include "auth.h"
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define URL "https://api.example.com/v2"

/* ---- helpers -------------------------------------------------------------------------------- */

struct ds_fixture {
    struct cfg_ds *cfg;
    struct auth_ds *auth;
};

/* Parses settings (must succeed) and builds their auth state. */
static void ds_open(struct ds_fixture *f, int basic, const char *buser, const char *json,
                    const char *const *sk, const char *const *sv, size_t ns)
{
    struct cfg_ds_input in = {.id = 1,
                              .uid = "uid-1",
                              .url = URL,
                              .basic_auth_enabled = basic,
                              .basic_auth_user = buser,
                              .json_data = json,
                              .json_len = json ? strlen(json) : 0,
                              .secure_keys = sk,
                              .secure_values = sv,
                              .nsecure = ns};
    struct cp_err err = {0};
    int rc = cfg_ds_parse(&in, &f->cfg, &err);
    if (rc)
        print_error("settings refused: %s\n", err.msg);
    assert_int_equal(rc, 0);
    struct auth_env env = {NULL, NULL, NULL};
    rc = auth_ds_new(f->cfg, &env, &f->auth, &err);
    if (rc)
        print_error("auth_ds_new: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(f->auth);
}

static void ds_close(struct ds_fixture *f)
{
    auth_ds_free(f->auth);
    cfg_ds_free(f->cfg);
    f->auth = NULL;
    f->cfg = NULL;
}

/* The value of header name in c, or NULL; fails when the header appears twice. */
static const char *header(const struct auth_creds *c, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->h[i].name, name)) {
            assert_null(found);
            found = c->h[i].value;
        }
    return found;
}

/* ---- globs ----------------------------------------------------------------------------------- */

struct glob_case {
    const char *glob, *path;
    int match;
};

static const struct glob_case glob_cases[] = {
    /* literals */
    {"/items", "/items", 1},
    {"/items", "/items/", 0},
    {"/items", "/item", 0},
    {"/items", "/itemsx", 0},
    {"/items", "/Items", 0}, /* case-sensitive, as upstream paths are */
    {"/", "/", 1},
    {"/", "/a", 0},
    {"/a.b+c(d)", "/a.b+c(d)", 1},
    {"/a.b", "/axb", 0},
    {"/a?b", "/a?b", 1},
    {"/a?b", "/axb", 0},
    {"/a[1]", "/a[1]", 1},
    {"/a[1]", "/a1", 0},
    /* '*': exactly one segment (or part of one) */
    {"/items/*", "/items/1", 1},
    {"/items/*", "/items/abc-def", 1},
    {"/items/*", "/items/1/2", 0},
    {"/items/*", "/items", 0},
    {"/items/*/detail", "/items/42/detail", 1},
    {"/items/*/detail", "/items/42/43/detail", 0},
    {"/items/*/detail", "/items/detail", 0},
    {"/*", "/anything", 1},
    {"/*", "/a/b", 0},
    {"/*.json", "/data.json", 1},
    {"/*.json", "/dir/data.json", 0},
    {"/*.json", "/data.jsonx", 0},
    {"/v*/items", "/v2/items", 1},
    {"/v*/items", "/v2/x/items", 0},
    {"/a*b", "/ab", 1},
    {"/a*b", "/axxb", 1},
    {"/a*b", "/ax/b", 0},
    {"/*/*", "/a/b", 1},
    {"/*/*", "/a/b/c", 0},
    /* '**': any depth */
    {"/**", "/", 1},
    {"/**", "/a", 1},
    {"/**", "/a/b/c/d", 1},
    {"/api/**", "/api/x", 1},
    {"/api/**", "/api/x/y/z", 1},
    {"/api/**", "/api/", 1},
    {"/api/**", "/api", 1}, /* trailing slash-double-star also matches the bare prefix */
    {"/api/**", "/apix", 0},
    {"/api/**", "/apix/y", 0},
    {"/api/**", "/other/api/x", 0},
    {"/api/**", "/", 0},
    {"/**/x", "/x", 1}, /* a double star between slashes may stand for no segment */
    {"/**/x", "/a/x", 1},
    {"/**/x", "/a/b/c/x", 1},
    {"/**/x", "/a/xx", 0},
    {"/**/x", "/a/x/b", 0},
    {"/a/**/b", "/a/b", 1},
    {"/a/**/b", "/a/1/2/b", 1},
    {"/a/**/b", "/a/1/2/c", 0},
    {"/a/**/b", "/ab", 0},
    {"/**/*.json", "/data.json", 1},
    {"/**/*.json", "/a/b/data.json", 1},
    {"/**/*.json", "/a/b/data.xml", 0},
    {"/api/**/items/*", "/api/v1/items/3", 1},
    {"/api/**/items/*", "/api/items/3", 1},
    {"/api/**/items/*", "/api/v1/items/3/4", 0},
    {"/admin/**", "/administrator", 0},
    {"/admin/**", "/admin", 1},
};

static void test_glob__match(void **state)
{
    const struct glob_case *c = *state;
    int got = auth_glob_match(c->glob, c->path);
    if (!!got != c->match)
        print_error("glob %s path %s: got %d want %d\n", c->glob, c->path, got, c->match);
    assert_int_equal(!!got, c->match);
}

static void test_glob__any(void **state)
{
    (void)state;
    struct cfg_strlist l = {0};
    assert_false(auth_glob_any(&l, "/a")); /* an empty list matches nothing */
    assert_int_equal(cfg_strlist_push(&l, "/health"), 0);
    assert_int_equal(cfg_strlist_push(&l, "/api/*/items"), 0);
    assert_true(auth_glob_any(&l, "/health"));
    assert_true(auth_glob_any(&l, "/api/v1/items"));
    assert_false(auth_glob_any(&l, "/api/v1/v2/items"));
    assert_false(auth_glob_any(&l, "/healthz"));
    cfg_strlist_free(&l);
}

static void test_glob__many_stars_stay_fast(void **state)
{
    (void)state;
    /* Globs are admin input, paths are user input (up to 8 KiB after proxy/path.c). A glob
     * with several double stars against the longest non-matching path must still finish:
     * a backtracking matcher would need days here (the CTest timeout fails it), a matcher
     * linear in path length answers at once. The answers stay right at that length. */
    static char path[8193];
    for (size_t i = 0; i < sizeof path - 1; i++)
        path[i] = i % 2 ? 'a' : '/';
    path[sizeof path - 1] = 0;
    assert_false(auth_glob_match("/**/a/**/a/**/a/**/b", path));
    assert_false(auth_glob_match("/*/*/*/*/*/b", path));
    path[sizeof path - 2] = 'b';
    assert_true(auth_glob_match("/**/a/**/a/**/a/**/b", path));
    assert_true(auth_glob_match("/**/b", path));
    assert_false(auth_glob_match("/*/b", path));
}

/* ---- rules ----------------------------------------------------------------------------------- */

static struct cp_user user_of(const char *login, const char *email, enum cfg_role role,
                              int64_t org)
{
    return (struct cp_user){.present = 1, .login = login, .email = email, .name = login,
                            .role = role, .org_id = org};
}

static struct cfg_ds *rules_cfg(const char *json)
{
    struct cfg_ds_input in = {.id = 1, .url = URL, .json_data = json, .json_len = strlen(json)};
    struct cfg_ds *ds = NULL;
    struct cp_err err = {0};
    int rc = cfg_ds_parse(&in, &ds, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    return ds;
}

static void expect(const struct cfg_ds *ds, const struct cp_user *u, const char *method,
                   const char *path, int allow, int rule)
{
    int matched = -99;
    int got = auth_rules_eval(ds, u, method, path, &matched);
    if (got != allow || matched != rule)
        print_error("%s %s (%s): got allow=%d rule=%d, want allow=%d rule=%d\n", method, path,
                    u && u->login ? u->login : "no user", got, matched, allow, rule);
    assert_int_equal(got, allow);
    assert_int_equal(matched, rule);
}

static void test_rules__first_match_wins(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":["
                                  "{\"effect\":\"deny\",\"paths\":[\"/admin/**\"]},"
                                  "{\"effect\":\"allow\",\"roles\":[\"Viewer\"]},"
                                  "{\"effect\":\"deny\",\"roles\":[\"Viewer\"]}]}");
    struct cp_user v = user_of("ann", "ann@example.com", CFG_ROLE_VIEWER, 1);
    struct cp_user a = user_of("root", "root@example.com", CFG_ROLE_ADMIN, 1);
    expect(ds, &v, "GET", "/admin/x", 0, 0);
    expect(ds, &a, "GET", "/admin", 0, 0);
    expect(ds, &v, "GET", "/items", 1, 1); /* rule 2 decides, rule 3 is never reached */
    expect(ds, &a, "DELETE", "/items/1", 1, 1);
    /* matched may be NULL */
    assert_int_equal(auth_rules_eval(ds, &v, "GET", "/items", NULL), 1);
    cfg_ds_free(ds);
}

static void test_rules__canonical_path(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } t[] = {{"/", "/"},
             {"/Secret-Area", "/secret-area"},
             {"/secret-area;x", "/secret-area"},
             {"/secret-area;jsessionid=1/doc", "/secret-area/doc"},
             {"/secret-area.", "/secret-area"},
             {"/secret-area ./doc. ", "/secret-area/doc"},
             {"/a;b;c/D.;e/", "/a/d/"},
             {"/;x/y", "//y"},
             {"/x.y/z", "/x.y/z"}};
    char out[64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_int_equal(auth_path_canonical(t[i].in, out, sizeof out), 0);
        assert_string_equal(out, t[i].out);
    }
    assert_int_equal(auth_path_canonical("/a-long-path", out, 4), CP_ETOOBIG);
}

static void test_rules__deny_rules_match_other_spellings(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"rules\":["
                                  "{\"effect\":\"deny\",\"paths\":[\"/secret-area\","
                                  "\"/secret-area/**\"]},"
                                  "{\"effect\":\"allow\",\"roles\":[\"Admin\"],"
                                  "\"paths\":[\"/admin/**\"]},"
                                  "{\"effect\":\"deny\",\"paths\":[\"/admin/**\"]}]}");
    struct cp_user v = user_of("ann", "ann@example.com", CFG_ROLE_VIEWER, 1);
    struct cp_user a = user_of("root", "root@example.com", CFG_ROLE_ADMIN, 1);
    const char *denied[] = {"/secret-area",     "/SECRET-AREA",  "/secret-area;x",
                            "/secret-area.",    "/Secret-Area/x", "/secret-area;a=b/x",
                            "/secret-area ./x", "/secret-area.."};
    for (size_t i = 0; i < sizeof denied / sizeof *denied; i++)
        expect(ds, &v, "GET", denied[i], 0, 0);
    expect(ds, &v, "GET", "/secret-areas", 1, -1);
    expect(ds, &v, "GET", "/secret/area", 1, -1);
    /* an allow rule stays exact; the deny rule after it catches the other spellings */
    expect(ds, &a, "GET", "/admin/x", 1, 1);
    expect(ds, &a, "GET", "/ADMIN/x", 0, 2);
    expect(ds, &v, "GET", "/Admin;v=1/x", 0, 2);
    cfg_ds_free(ds);
}

static void test_rules__role_hierarchy(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":["
                                  "{\"effect\":\"allow\",\"roles\":[\"Editor\"]}]}");
    struct cp_user v = user_of("v", NULL, CFG_ROLE_VIEWER, 1);
    struct cp_user e = user_of("e", NULL, CFG_ROLE_EDITOR, 1);
    struct cp_user a = user_of("a", NULL, CFG_ROLE_ADMIN, 1);
    expect(ds, &v, "GET", "/x", 0, -1);
    expect(ds, &e, "GET", "/x", 1, 0);
    expect(ds, &a, "GET", "/x", 1, 0);
    cfg_ds_free(ds);

    /* a list: its lowest role counts */
    ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":["
                   "{\"effect\":\"allow\",\"roles\":[\"Admin\",\"viewer\"]}]}");
    expect(ds, &v, "GET", "/x", 1, 0);
    cfg_ds_free(ds);

    /* Admin only */
    ds = rules_cfg("{\"rules\":[{\"effect\":\"deny\",\"roles\":[\"Admin\"]}]}");
    expect(ds, &e, "GET", "/x", 1, -1);
    expect(ds, &a, "GET", "/x", 0, 0);
    cfg_ds_free(ds);

    /* an empty role list matches nobody */
    ds = rules_cfg("{\"rules\":[{\"effect\":\"deny\",\"roles\":[]}]}");
    expect(ds, &a, "GET", "/x", 1, -1);
    cfg_ds_free(ds);
}

static void test_rules__users_login_or_email(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":["
                                  "{\"effect\":\"allow\",\"users\":[\"Alice\","
                                  "\"Bob@Example.COM\"]}]}");
    struct cp_user alice = user_of("alice", "a@example.com", CFG_ROLE_VIEWER, 1);
    struct cp_user bob = user_of("robert", "bob@example.com", CFG_ROLE_VIEWER, 1);
    struct cp_user carol = user_of("carol", "carol@example.com", CFG_ROLE_ADMIN, 1);
    struct cp_user partial = user_of("alic", "alice@example.com", CFG_ROLE_ADMIN, 1);
    struct cp_user noemail = user_of("bob", "", CFG_ROLE_ADMIN, 1);
    expect(ds, &alice, "GET", "/x", 1, 0);
    expect(ds, &bob, "GET", "/x", 1, 0);
    expect(ds, &carol, "GET", "/x", 0, -1);
    expect(ds, &partial, "GET", "/x", 0, -1);
    expect(ds, &noemail, "GET", "/x", 0, -1);
    cfg_ds_free(ds);
}

static void test_rules__orgs_methods_paths(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":["
                                  "{\"effect\":\"allow\",\"orgs\":[2,\"5\"]},"
                                  "{\"effect\":\"allow\",\"methods\":[\"get\",\"HEAD\"],"
                                  "\"paths\":[\"/public/**\",\"/health\"]}]}");
    struct cp_user o1 = user_of("u", NULL, CFG_ROLE_VIEWER, 1);
    struct cp_user o2 = user_of("u", NULL, CFG_ROLE_VIEWER, 2);
    struct cp_user o5 = user_of("u", NULL, CFG_ROLE_VIEWER, 5);
    expect(ds, &o2, "POST", "/private", 1, 0);
    expect(ds, &o5, "DELETE", "/x", 1, 0);
    expect(ds, &o1, "POST", "/private", 0, -1);
    expect(ds, &o1, "GET", "/public/a/b", 1, 1);
    expect(ds, &o1, "get", "/public", 1, 1); /* methods compare case-insensitively */
    expect(ds, &o1, "HEAD", "/health", 1, 1);
    expect(ds, &o1, "POST", "/public/a", 0, -1);
    expect(ds, &o1, "GET", "/healthz", 0, -1);
    expect(ds, &o1, "GET", "/private", 0, -1);
    cfg_ds_free(ds);
}

static void test_rules__all_conditions_must_hold(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"rules\":[{\"effect\":\"deny\",\"roles\":[\"Viewer\"],"
                                  "\"users\":[\"eve\"],\"orgs\":[3],\"methods\":[\"POST\"],"
                                  "\"paths\":[\"/w/*\"]}]}");
    struct cp_user eve = user_of("eve", NULL, CFG_ROLE_VIEWER, 3);
    struct cp_user eve_org4 = user_of("eve", NULL, CFG_ROLE_VIEWER, 4);
    struct cp_user adam = user_of("adam", NULL, CFG_ROLE_VIEWER, 3);
    expect(ds, &eve, "POST", "/w/1", 0, 0);
    expect(ds, &eve, "GET", "/w/1", 1, -1);
    expect(ds, &eve, "POST", "/w/1/2", 1, -1);
    expect(ds, &eve_org4, "POST", "/w/1", 1, -1);
    expect(ds, &adam, "POST", "/w/1", 1, -1);
    cfg_ds_free(ds);
}

static void test_rules__default_action(void **state)
{
    (void)state;
    struct cp_user u = user_of("u", NULL, CFG_ROLE_EDITOR, 1);
    struct cfg_ds *ds = rules_cfg("{}");
    expect(ds, &u, "GET", "/x", 1, -1); /* no rules, default allow */
    cfg_ds_free(ds);
    ds = rules_cfg("{\"defaultAction\":\"deny\"}");
    expect(ds, &u, "GET", "/x", 0, -1);
    cfg_ds_free(ds);
    ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":[{\"effect\":\"allow\","
                   "\"paths\":[\"/ok\"]}]}");
    expect(ds, &u, "GET", "/ok", 1, 0);
    expect(ds, &u, "GET", "/no", 0, -1);
    cfg_ds_free(ds);
}

static void test_rules__no_user_matches_only_open_rules(void **state)
{
    (void)state;
    struct cfg_ds *ds = rules_cfg("{\"defaultAction\":\"deny\",\"rules\":["
                                  "{\"effect\":\"allow\",\"roles\":[\"Viewer\"]},"
                                  "{\"effect\":\"allow\",\"users\":[\"\"]},"
                                  "{\"effect\":\"allow\",\"users\":[\"grafana\"]},"
                                  "{\"effect\":\"allow\",\"paths\":[\"/alerts/**\"]}]}");
    struct cp_user none = {.present = 0};
    struct cp_user role_none = user_of("grafana", "", CFG_ROLE_NONE, 1);
    struct cp_user viewer = user_of("v", NULL, CFG_ROLE_VIEWER, 1);
    /* roles and users rules are skipped for Grafana's own calls and role None */
    expect(ds, &none, "GET", "/x", 0, -1);
    expect(ds, NULL, "GET", "/x", 0, -1);
    expect(ds, &role_none, "GET", "/x", 0, -1);
    /* a rule with neither roles nor users applies */
    expect(ds, &none, "GET", "/alerts/1", 1, 3);
    expect(ds, NULL, "GET", "/alerts/1", 1, 3);
    expect(ds, &role_none, "GET", "/alerts/1", 1, 3);
    expect(ds, &viewer, "GET", "/x", 1, 0);
    cfg_ds_free(ds);

    /* deny rules without roles or users also reach them */
    ds = rules_cfg("{\"rules\":[{\"effect\":\"deny\",\"methods\":[\"POST\"]}]}");
    expect(ds, &none, "POST", "/x", 0, 0);
    expect(ds, &none, "GET", "/x", 1, -1);
    cfg_ds_free(ds);

    /* orgs apply to them too: Grafana's own calls belong to an org */
    ds = rules_cfg("{\"rules\":[{\"effect\":\"deny\",\"orgs\":[2]}]}");
    struct cp_user none_org2 = {.present = 0, .org_id = 2};
    struct cp_user none_org1 = {.present = 0, .org_id = 1};
    expect(ds, &none_org2, "GET", "/x", 0, 0);
    expect(ds, &none_org1, "GET", "/x", 1, -1);
    cfg_ds_free(ds);
}

static void keep_decision(void *arg, const struct auth_decision *d)
{
    *(struct auth_decision *)arg = *d;
}

static void test_rules__authorize_counts_and_explains(void **state)
{
    (void)state;
    static const char json[] = "{\"defaultAction\":\"allow\",\"rules\":["
                               "{\"effect\":\"deny\",\"paths\":[\"/secret/**\"]}]}";
    struct cfg_ds_input in = {.id = 1, .url = URL, .json_data = json, .json_len = strlen(json)};
    struct cfg_ds *cfg = NULL;
    struct cp_err err = {0};
    assert_int_equal(cfg_ds_parse(&in, &cfg, &err), 0);
    _Atomic uint64_t decisions[2] = {0, 0};
    struct auth_env env = {.decisions = decisions};
    struct auth_ds *a = NULL;
    assert_int_equal(auth_ds_new(cfg, &env, &a, &err), 0);
    assert_true(auth_is_local(a));
    struct cp_user u = user_of("u", NULL, CFG_ROLE_VIEWER, 1);
    struct auth_request rq = {&u, "GET", "/secret/x", NULL, "uid-1"};
    /* rules alone decide at once, before auth_authorize_async returns */
    struct auth_decision d = {.allow = -1};
    auth_authorize_async(a, &rq, keep_decision, &d);
    assert_int_equal(d.allow, 0);
    assert_int_equal(d.scope, AUTH_SCOPE_DEFAULT);
    assert_non_null(strstr(d.reason, "1"));
    rq.path = "/open";
    d.allow = -1;
    auth_authorize_async(a, &rq, keep_decision, &d);
    assert_int_equal(d.allow, 1);
    /* the local form does not count */
    auth_authorize_local(a, &rq, &d);
    assert_int_equal(d.allow, 1);
    assert_int_equal(atomic_load(&decisions[0]), 1);
    assert_int_equal(atomic_load(&decisions[1]), 1);
    auth_ds_free(a);
    cfg_ds_free(cfg);
}

static void test_rules__module_needs_module_dir(void **state)
{
    (void)state;
    static const char json[] = "{\"authType\":\"module\",\"authModule\":\"example\"}";
    struct cfg_ds_input in = {.id = 1, .url = URL, .json_data = json, .json_len = strlen(json)};
    struct cfg_ds *cfg = NULL;
    struct cp_err err = {0};
    assert_int_equal(cfg_ds_parse(&in, &cfg, &err), 0);
    struct auth_env env = {NULL, NULL, NULL};
    struct auth_ds *a = (struct auth_ds *)(uintptr_t)1;
    int rc = auth_ds_new(cfg, &env, &a, &err);
    assert_true(rc == CP_ECONFIG || rc == CP_EMODULE);
    assert_null(a);
    assert_non_null(strstr(err.msg, "authModule"));
    cfg_ds_free(cfg);
}

/* ---- HMAC ------------------------------------------------------------------------------------ */

/*
 * Vectors computed with the openssl CLI:
 *   BODYH=$(printf '{"q":1}' | openssl dgst -sha256 -r | cut -d' ' -f1)
 *     = 6ae0f660046dadcf5fe8462c0e00a062db4c8d67be82f4098c5ea4208d19b076
 *   printf 'POST\n/api/items?a=1&b=2\n1700000000\n%s' $BODYH | openssl dgst -sha256 -hmac k3y-secret
 *   printf 'POST\n/api/items?a=1&b=2\n1700000000\n%s' $BODYH | openssl dgst -sha512 -hmac k3y-secret
 *   EH = sha256 of the empty body
 *     = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
 *   printf 'GET\n/v2/x\n1700000123\n%s' $EH | openssl dgst -sha256 -hmac hmac-S3cret-1
 *   printf 'GET\n/v2/x\n1700000123\n%s' $EH | openssl dgst -sha512 -hmac hmac-S3cret-1
 */
#define SIG_POST_256 "bc4f18892f36b599b9a9a5a9abd26e8137f978ca24633809fa6404ccf6403320"
#define SIG_POST_512                                                                          \
    "51104d7bfd26fe49885c76779bf376622868bd3a9d028468079d53b48e78e559"                        \
    "10a4e20f62e47e6e190c00f6b6f0e206e39006fb4e308c9d1ea2ef7f9f8fee01"

static void test_hmac__known_vectors(void **state)
{
    (void)state;
    char out[129];
    static const char body[] = "{\"q\":1}";
    memset(out, 'X', sizeof out);
    assert_int_equal(auth_hmac_sign("sha256", "k3y-secret", 10, "POST", "/api/items?a=1&b=2",
                                    "1700000000", body, strlen(body), out),
                     0);
    assert_string_equal(out, SIG_POST_256);
    memset(out, 'X', sizeof out);
    assert_int_equal(auth_hmac_sign("sha512", "k3y-secret", 10, "POST", "/api/items?a=1&b=2",
                                    "1700000000", body, strlen(body), out),
                     0);
    assert_string_equal(out, SIG_POST_512);
}

static void test_hmac__every_input_counts(void **state)
{
    (void)state;
    static const char body[] = "{\"q\":1}";
    char base[129], out[129];
    assert_int_equal(auth_hmac_sign("sha256", "k3y-secret", 10, "POST", "/api/items?a=1&b=2",
                                    "1700000000", body, 7, base),
                     0);
    struct {
        const char *key, *method, *pq, *ts, *body;
    } v[] = {
        {"k3y-secreT", "POST", "/api/items?a=1&b=2", "1700000000", body},
        {"k3y-secret", "PUT", "/api/items?a=1&b=2", "1700000000", body},
        {"k3y-secret", "POST", "/api/items?a=1&b=3", "1700000000", body},
        {"k3y-secret", "POST", "/api/items?a=1&b=2", "1700000001", body},
        {"k3y-secret", "POST", "/api/items?a=1&b=2", "1700000000", "{\"q\":2}"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(auth_hmac_sign("sha256", v[i].key, 10, v[i].method, v[i].pq, v[i].ts,
                                        v[i].body, 7, out),
                         0);
        assert_string_not_equal(out, base);
        assert_int_equal(strlen(out), 64);
    }
}

/* ---- credential injection -------------------------------------------------------------------- */

static void test_inject__none(void **state)
{
    (void)state;
    struct ds_fixture f;
    ds_open(&f, 0, NULL, "{}", NULL, NULL, 0);
    struct auth_creds c = {0};
    struct auth_outgoing o = {.method = "GET", .path_query = "/v2/x", .now_unix = 1};
    struct cp_err err = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 0);
    assert_null(c.query_name);
    assert_null(c.query_value);
    auth_creds_wipe(&c);
    ds_close(&f);
}

static void test_inject__basic(void **state)
{
    (void)state;
    static const char *const sk[] = {"basicAuthPassword"};
    static const char *const sv[] = {"p@ss:w0rd"};
    struct ds_fixture f;
    /* Grafana's basicAuth switch alone selects basic */
    ds_open(&f, 1, "alice", NULL, sk, sv, 1);
    struct auth_creds c = {0};
    struct auth_outgoing o = {.method = "GET", .path_query = "/v2/x"};
    struct cp_err err = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 1);
    /* printf 'alice:p@ss:w0rd' | base64 */
    assert_string_equal(header(&c, "Authorization"), "Basic YWxpY2U6cEBzczp3MHJk");
    auth_creds_wipe(&c);
    ds_close(&f);
}

static void test_inject__bearer(void **state)
{
    (void)state;
    static const char *const sk[] = {"bearerToken"};
    static const char *const sv[] = {"tok-S3cret-123"};
    struct ds_fixture f;
    ds_open(&f, 0, NULL, "{\"authType\":\"bearer\"}", sk, sv, 1);
    struct auth_creds c = {0};
    struct auth_outgoing o = {.method = "GET", .path_query = "/v2/x"};
    struct cp_err err = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(header(&c, "Authorization"), "Bearer tok-S3cret-123");
    auth_creds_wipe(&c);
    ds_close(&f);
}

static void test_inject__api_key_header_and_query(void **state)
{
    (void)state;
    static const char *const sk[] = {"apiKey"};
    static const char *const sv[] = {"key-S3cret-9"};
    struct auth_outgoing o = {.method = "GET", .path_query = "/v2/x"};
    struct cp_err err = {0};
    struct ds_fixture f;

    /* default header */
    ds_open(&f, 0, NULL, "{\"authType\":\"apiKey\"}", sk, sv, 1);
    struct auth_creds c = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(header(&c, "X-API-Key"), "key-S3cret-9");
    assert_null(c.query_name);
    auth_creds_wipe(&c);
    ds_close(&f);

    /* a named header */
    ds_open(&f, 0, NULL, "{\"authType\":\"apiKey\",\"apiKeyHeader\":\"X-Token\"}", sk, sv, 1);
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(header(&c, "X-Token"), "key-S3cret-9");
    assert_null(header(&c, "X-API-Key"));
    auth_creds_wipe(&c);
    ds_close(&f);

    /* a query parameter: no header at all */
    ds_open(&f, 0, NULL, "{\"authType\":\"apiKey\",\"apiKeyQueryParam\":\"api_key\"}", sk, sv,
            1);
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 0);
    assert_non_null(c.query_name);
    assert_string_equal(c.query_name, "api_key");
    assert_string_equal(c.query_value, "key-S3cret-9");
    auth_creds_wipe(&c);
    assert_null(c.query_name);
    assert_null(c.query_value);
    ds_close(&f);
}

static void test_inject__custom_headers(void **state)
{
    (void)state;
    static const char *const sk[] = {"httpHeaderValue1", "httpHeaderValue3", "bearerToken"};
    static const char *const sv[] = {"tenant-7", "v3", "S3cret-b"};
    struct ds_fixture f;
    /* header 2 has no secure value: sent empty; the scan stops at the gap after 3 */
    ds_open(&f, 0, NULL,
            "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-Tenant\","
            "\"httpHeaderName2\":\"X-Empty\",\"httpHeaderName3\":\"X-Three\","
            "\"httpHeaderName5\":\"X-After-Gap\"}",
            sk, sv, 3);
    struct auth_creds c = {0};
    struct auth_outgoing o = {.method = "GET", .path_query = "/v2/x"};
    struct cp_err err = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.h[0].name, "X-Tenant");
    assert_string_equal(c.h[0].value, "tenant-7");
    assert_string_equal(c.h[1].name, "X-Empty");
    assert_string_equal(c.h[1].value, "");
    assert_string_equal(c.h[2].name, "X-Three");
    assert_string_equal(c.h[2].value, "v3");
    assert_string_equal(header(&c, "Authorization"), "Bearer S3cret-b");
    assert_null(header(&c, "X-After-Gap"));
    auth_creds_wipe(&c);
    ds_close(&f);
}

static void test_inject__forward_oauth(void **state)
{
    (void)state;
    struct ds_fixture f;
    ds_open(&f, 0, NULL, "{\"authType\":\"forwardOAuth\",\"oauthPassThru\":true}", NULL, NULL,
            0);
    struct cp_user u = user_of("u", NULL, CFG_ROLE_VIEWER, 1);
    struct auth_outgoing o = {.user = &u,
                              .method = "GET",
                              .path_query = "/v2/x",
                              .fwd_authorization = "Bearer user-access-token",
                              .fwd_id_token = "user-id-token"};
    struct auth_creds c = {0};
    struct cp_err err = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(header(&c, "Authorization"), "Bearer user-access-token");
    assert_string_equal(header(&c, "X-ID-Token"), "user-id-token");
    auth_creds_wipe(&c);

    /* no ID token: only Authorization */
    o.fwd_id_token = NULL;
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 1);
    assert_null(header(&c, "X-ID-Token"));
    auth_creds_wipe(&c);

    /* no token at all: a bad request, nothing injected */
    static const char *const none[] = {NULL, ""};
    for (size_t i = 0; i < 2; i++) {
        o.fwd_authorization = none[i];
        o.fwd_id_token = "user-id-token";
        memset(&err, 0, sizeof err);
        assert_int_equal(auth_inject(f.auth, &o, &c, &err), CP_EBADREQ);
        assert_int_equal(err.code, CP_EBADREQ);
        assert_true(strlen(err.msg) > 0);
        assert_null(header(&c, "Authorization"));
        auth_creds_wipe(&c);
    }
    ds_close(&f);
}

static void test_inject__hmac(void **state)
{
    (void)state;
    static const char *const sk[] = {"hmacSecret"};
    static const char *const sv[] = {"hmac-S3cret-1"};
    struct auth_outgoing o = {
        .method = "GET", .path_query = "/v2/x", .body = NULL, .body_len = 0,
        .now_unix = 1700000123};
    struct cp_err err = {0};
    struct auth_creds c = {0};
    struct ds_fixture f;

    ds_open(&f, 0, NULL, "{\"authType\":\"hmac\"}", sk, sv, 1);
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(header(&c, "X-Timestamp"), "1700000123");
    /* printf 'GET\n/v2/x\n1700000123\n%s' $EH | openssl dgst -sha256 -hmac hmac-S3cret-1 */
    assert_string_equal(header(&c, "X-Signature"),
                        "48e063f06c17f658cdfba8f7a2edabcad2e47a192f09bd7515c72216ead4179e");
    auth_creds_wipe(&c);
    ds_close(&f);

    /* a named header and sha512 */
    ds_open(&f, 0, NULL, "{\"authType\":\"hmac\",\"hmacHeader\":\"X-Sig\","
                         "\"hmacAlgorithm\":\"sha512\"}", sk, sv, 1);
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(header(&c, "X-Timestamp"), "1700000123");
    assert_null(header(&c, "X-Signature"));
    /* printf 'GET\n/v2/x\n1700000123\n%s' $EH | openssl dgst -sha512 -hmac hmac-S3cret-1 */
    assert_string_equal(header(&c, "X-Sig"),
                        "43d844bdceb107f946f5c5c1a2f562c98f03618a6317482f0cc7c33978442648"
                        "0bbcf0d6aaf5b9f6a9f75ed454829afcddd0127cb4d96abd8d13354463c7e2d8");
    auth_creds_wipe(&c);
    ds_close(&f);
}

static void test_inject__creds_wipe(void **state)
{
    (void)state;
    struct auth_creds c = {0};
    auth_creds_wipe(&c); /* empty: harmless */
    assert_int_equal(c.n, 0);
    static const char *const sk[] = {"bearerToken", "httpHeaderValue1"};
    static const char *const sv[] = {"S3cret-w", "h"};
    struct ds_fixture f;
    ds_open(&f, 0, NULL, "{\"authType\":\"bearer\",\"httpHeaderName1\":\"X-H\"}", sk, sv, 2);
    struct auth_outgoing o = {.method = "GET", .path_query = "/"};
    struct cp_err err = {0};
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 2);
    auth_creds_wipe(&c);
    assert_int_equal(c.n, 0);
    assert_null(c.query_name);
    assert_null(c.query_value);
    auth_creds_wipe(&c); /* twice: harmless */
    /* the struct is reusable */
    assert_int_equal(auth_inject(f.auth, &o, &c, &err), 0);
    assert_int_equal(c.n, 2);
    auth_creds_wipe(&c);
    ds_close(&f);
}

static void test_base64__vectors(void **state)
{
    (void)state;
    /* RFC 4648 section 10, plus bytes that use '+', '/' and NUL */
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } t[] = {
        {"", 0, ""},           {"f", 1, "Zg=="},           {"fo", 2, "Zm8="},
        {"foo", 3, "Zm9v"},    {"foob", 4, "Zm9vYg=="},    {"fooba", 5, "Zm9vYmE="},
        {"foobar", 6, "Zm9vYmFy"}, {"\xfb\xff\xbf", 3, "+/+/"}, {"\0\0\0\0", 4, "AAAAAA=="},
        {"user:pass", 9, "dXNlcjpwYXNz"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *b = auth_base64(t[i].in, t[i].len);
        assert_non_null(b);
        assert_string_equal(b, t[i].out);
        free(b);
    }
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_glob__any),
        cmocka_unit_test(test_glob__many_stars_stay_fast),
        cmocka_unit_test(test_rules__first_match_wins),
        cmocka_unit_test(test_rules__role_hierarchy),
        cmocka_unit_test(test_rules__users_login_or_email),
        cmocka_unit_test(test_rules__orgs_methods_paths),
        cmocka_unit_test(test_rules__all_conditions_must_hold),
        cmocka_unit_test(test_rules__default_action),
        cmocka_unit_test(test_rules__canonical_path),
        cmocka_unit_test(test_rules__deny_rules_match_other_spellings),
        cmocka_unit_test(test_rules__no_user_matches_only_open_rules),
        cmocka_unit_test(test_rules__authorize_counts_and_explains),
        cmocka_unit_test(test_rules__module_needs_module_dir),
        cmocka_unit_test(test_hmac__known_vectors),
        cmocka_unit_test(test_hmac__every_input_counts),
        cmocka_unit_test(test_inject__none),
        cmocka_unit_test(test_inject__basic),
        cmocka_unit_test(test_inject__bearer),
        cmocka_unit_test(test_inject__api_key_header_and_query),
        cmocka_unit_test(test_inject__custom_headers),
        cmocka_unit_test(test_inject__forward_oauth),
        cmocka_unit_test(test_inject__hmac),
        cmocka_unit_test(test_inject__creds_wipe),
        cmocka_unit_test(test_base64__vectors),
    };
    const size_t nf = sizeof fixed / sizeof fixed[0];
    const size_t ng = sizeof glob_cases / sizeof glob_cases[0];
    struct CMUnitTest *tests = calloc(nf + ng, sizeof *tests);
    char **names = calloc(ng, sizeof *names);
    if (!tests || !names)
        return 1;
    for (size_t i = 0; i < ng; i++) {
        size_t n = strlen(glob_cases[i].glob) + strlen(glob_cases[i].path) + 40;
        names[i] = malloc(n);
        if (!names[i])
            return 1;
        snprintf(names[i], n, "test_glob__match_%02zu %s ~ %s", i, glob_cases[i].glob,
                 glob_cases[i].path);
        tests[i] = (struct CMUnitTest){.name = names[i],
                                       .test_func = test_glob__match,
                                       .initial_state = (void *)&glob_cases[i]};
    }
    for (size_t i = 0; i < nf; i++)
        tests[ng + i] = fixed[i];
    int rc = _cmocka_run_group_tests("auth", tests, nf + ng, NULL, NULL);
    for (size_t i = 0; i < ng; i++)
        free(names[i]);
    free(names);
    free(tests);
    return rc;
}
