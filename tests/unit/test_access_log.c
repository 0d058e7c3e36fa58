/*
 * test_access_log.c - plugin/access_log.c: the trace lines the access log writes (encoding,
 * caps, methods the trace cannot hold), pseudonyms against OpenSSL's own HMAC, the key file,
 * the header written once, a full queue dropping and counting, and whole lines from several
 * writers on one file. Files are read back with the benchmark's trace reader (bench/trace.c),
 * the one `cachingproxy-bench sim` uses.
 */
#include "bench_int.h"
#include "plugin_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define KEY "0123456789abcdef-test-key"

/* ---- helpers --------------------------------------------------------------------------------- */

struct tmp {
    char dir[64], log[96], key[100];
};

static void tmp_make(struct tmp *t)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/cp-accesslog-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->log, sizeof t->log, "%s/access.csv", t->dir);
    snprintf(t->key, sizeof t->key, "%s/access.csv.key", t->dir);
}

static void tmp_remove(struct tmp *t)
{
    unlink(t->log);
    unlink(t->key);
    rmdir(t->dir);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *p = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (n + 4096 + 1) * 2;
            p = realloc(p, cap);
            assert_non_null(p);
        }
        size_t r = fread(p + n, 1, 4096, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    p[n] = 0;
    if (len)
        *len = n;
    return p;
}

static size_t count(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static struct plugin_access_log *open_log(const char *path, const char *key)
{
    struct plugin_access_log *l = NULL;
    struct cp_err err = {0};
    int rc = plugin_access_log_open(path, key, &l, &err);
    if (rc)
        fail_msg("open %s: %s", path, cp_err_text(&err));
    assert_non_null(l);
    return l;
}

static void note(struct plugin_access_log *l, int kind, const char *method, const char *path,
                 const char *query, const struct cp_user *u)
{
    struct proxy_access a = {kind, method, path, query, u};
    plugin_access_log_note(l, &a);
}

/* ---- one line -------------------------------------------------------------------------------- */

static void test_access_log__format_line(void **state)
{
    (void)state;
    char out[PLUGIN_ACCESS_LINE_MAX];
    size_t n = plugin_access_format(out, sizeof out, 1700000000250LL, "07da4c69f9d2a1b3", "Editor",
                                    "get", "w/k226", "a=1&b=%2F");
    assert_string_equal(out, "1700000000.250,07da4c69f9d2a1b3,Editor,GET,/w/k226?a=1&b=%2F\n");
    assert_int_equal(n, strlen(out));
    /* whole seconds keep their fraction; no user, no role, no query, an empty path */
    n = plugin_access_format(out, sizeof out, 1700000001000LL, "", "", "QUERY", "", NULL);
    assert_string_equal(out, "1700000001.000,,,QUERY,/\n");
    n = plugin_access_format(out, sizeof out, 1700000001007LL, "", "", "Query", "q/cpu", "");
    assert_string_equal(out, "1700000001.007,,,QUERY,/q/cpu\n");
    /* a path that starts with a slash after proxy/ keeps it: "proxy//a" is not "proxy/a" */
    plugin_access_format(out, sizeof out, 1700000001000LL, "", "", "GET", "/a", NULL);
    assert_string_equal(out, "1700000001.000,,,GET,//a\n");
}

static void test_access_log__format_encodes_unprintable(void **state)
{
    (void)state;
    char out[PLUGIN_ACCESS_LINE_MAX];
    plugin_access_format(out, sizeof out, 1700000000000LL, "u", "Viewer", "GET",
                         "a b/\xc3\xa9t\xc3\xa9/x,y\t\x7f", "q=a b,c\r\n");
    assert_string_equal(
        out, "1700000000.000,u,Viewer,GET,/a%20b/%C3%A9t%C3%A9/x,y%09%7F?q=a%20b,c%0D%0A\n");
    /* what the trace reader takes, field by field */
    struct bench_trace_fields f;
    char why[200];
    size_t len = strlen(out) - 1;
    out[len] = 0;
    assert_int_equal(bench_trace_parse_line(out, len, &f, why, sizeof why), BENCH_LINE_RECORD);
    assert_string_equal(f.method, "GET");
    assert_string_equal(f.role, "Viewer");
    assert_string_equal(f.path, "/a%20b/%C3%A9t%C3%A9/x,y%09%7F?q=a%20b,c%0D%0A");
}

static void test_access_log__format_caps_path(void **state)
{
    (void)state;
    char out[PLUGIN_ACCESS_LINE_MAX], why[200];
    static char big[30000];
    struct bench_trace_fields f;
    /* plain bytes: the path field is cut at exactly 8192 bytes, the query never starts */
    memset(big, 'a', sizeof big - 1);
    size_t n = plugin_access_format(out, sizeof out, 1700000000000LL, "", "", "GET", big, "x=1");
    assert_true(n > 0 && out[n - 1] == '\n');
    const char *p = strstr(out, ",/");
    assert_non_null(p);
    assert_int_equal(strlen(p + 1) - 1, 8192);
    assert_null(strchr(out, '?'));
    out[n - 1] = 0;
    assert_int_equal(bench_trace_parse_line(out, n - 1, &f, why, sizeof why), BENCH_LINE_RECORD);
    /* escapes are never cut: "/" + 2730 * "%C3%A9" = 8191 bytes, the next one does not fit */
    for (size_t i = 0; i + 1 < sizeof big; i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    big[sizeof big - 1] = 0;
    n = plugin_access_format(out, sizeof out, 1700000000000LL, "", "", "GET", big, NULL);
    p = strstr(out, ",/");
    assert_int_equal(strlen(p + 1) - 1, 8191);
    assert_memory_equal(out + n - 7, "%C3%A9\n", 7);
    /* a query fills what the path left */
    memset(big, 'b', 8000);
    big[8000] = 0;
    char q[1000];
    memset(q, 'c', sizeof q - 1);
    q[sizeof q - 1] = 0;
    n = plugin_access_format(out, sizeof out, 1700000000000LL, "", "", "GET", big, q);
    p = strstr(out, ",/");
    assert_int_equal(strlen(p + 1) - 1, 8192);
    assert_int_equal(count(out, "c"), 8192 - 1 - 8000 - 1);
}

static void test_access_log__format_skips_methods_the_trace_cannot_hold(void **state)
{
    (void)state;
    char out[PLUGIN_ACCESS_LINE_MAX];
    const char *bad[] = {"", "M-SEARCH", "GET ", "G3T", "ABCDEFGHIJKLMNOPQ", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(plugin_access_format(out, sizeof out, 1, "", "", bad[i], "a", NULL), 0);
    assert_true(plugin_access_format(out, sizeof out, 1, "", "", "ABCDEFGHIJKLMNOP", "a", NULL));
    /* a buffer below the documented size is refused, not overrun */
    assert_int_equal(plugin_access_format(out, 100, 1, "", "", "GET", "a", NULL), 0);
}

/* ---- pseudonyms and keys --------------------------------------------------------------------- */

static void expect_hmac(const char *key, const char *msg, const char *got)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int ml = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg,
                         strlen(msg), mac, &ml));
    char hex[17];
    for (int i = 0; i < 8; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    assert_string_equal(got, hex);
}

static void test_access_log__pseudonym_is_hmac_of_org_and_login(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    struct plugin_access_log *l = open_log(t.log, KEY);
    char a1[17], a2[17], b1[17];
    assert_int_equal(plugin_access_pseudonym(l, 1, "alice", a1), 0);
    assert_int_equal(plugin_access_pseudonym(l, 2, "alice", a2), 0);
    assert_int_equal(plugin_access_pseudonym(l, 1, "bob", b1), 0);
    expect_hmac(KEY, "1:alice", a1);
    expect_hmac(KEY, "2:alice", a2);
    expect_hmac(KEY, "1:bob", b1);
    assert_string_not_equal(a1, a2);
    assert_string_not_equal(a1, b1);
    /* "1:1" + login and "11:" + login stay apart: the org ends at its colon */
    char x[17], y[17];
    plugin_access_pseudonym(l, 1, "1:x", x);
    plugin_access_pseudonym(l, 11, "x", y);
    expect_hmac(KEY, "1:1:x", x);
    expect_hmac(KEY, "11:x", y);
    assert_string_not_equal(x, y);
    /* with the key given, no key file is made */
    assert_int_equal(access(t.key, F_OK), -1);
    plugin_access_log_free(l);
    tmp_remove(&t);
}

static void test_access_log__key_file_made_once_and_reused(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    struct plugin_access_log *l = open_log(t.log, NULL);
    struct stat st;
    assert_int_equal(stat(t.key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65);
    char *k = slurp(t.key, NULL);
    assert_int_equal(strspn(k, "0123456789abcdef"), 64);
    assert_int_equal(k[64], '\n');
    k[64] = 0;
    char p1[17], p2[17], p3[17];
    plugin_access_pseudonym(l, 1, "alice", p1);
    expect_hmac(k, "1:alice", p1);
    plugin_access_log_free(l);
    /* a restart reads the same file, and the same key as text gives the same pseudonyms */
    l = open_log(t.log, NULL);
    plugin_access_pseudonym(l, 1, "alice", p2);
    plugin_access_log_free(l);
    assert_string_equal(p1, p2);
    l = open_log(t.log, k);
    plugin_access_pseudonym(l, 1, "alice", p3);
    plugin_access_log_free(l);
    assert_string_equal(p1, p3);
    char *again = slurp(t.key, NULL);
    assert_memory_equal(again, k, 64);
    /* a second file gets a key of its own */
    char other[128], other_key[140];
    snprintf(other, sizeof other, "%s/b.csv", t.dir);
    snprintf(other_key, sizeof other_key, "%s/b.csv.key", t.dir);
    l = open_log(other, NULL);
    char *k2 = slurp(other_key, NULL);
    assert_memory_not_equal(k, k2, 64);
    plugin_access_log_free(l);
    unlink(other);
    unlink(other_key);
    free(k);
    free(k2);
    free(again);
    tmp_remove(&t);
}

static void test_access_log__bad_keys_refused(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    struct plugin_access_log *l = NULL;
    struct cp_err err = {0};
    assert_int_equal(plugin_access_log_open(t.log, "short", &l, &err), CP_ECONFIG);
    assert_null(l);
    assert_non_null(strstr(err.msg, "CACHINGPROXY_ACCESS_LOG_KEY"));
    assert_null(strstr(err.msg, "short")); /* the key is never echoed */
    assert_int_equal(plugin_access_log_open(t.log, "0123456789abcdef\nx", &l, &err), CP_ECONFIG);
    /* a key file that holds too little is refused and left alone */
    FILE *f = fopen(t.key, "w");
    fputs("abc\n", f);
    fclose(f);
    assert_int_equal(plugin_access_log_open(t.log, NULL, &l, &err), CP_ECONFIG);
    assert_non_null(strstr(err.msg, t.key));
    char *k = slurp(t.key, NULL);
    assert_string_equal(k, "abc\n");
    free(k);
    /* nor is the log made when the key is refused */
    assert_int_equal(access(t.log, F_OK), -1);
    /* a directory that does not exist */
    char nowhere[128];
    snprintf(nowhere, sizeof nowhere, "%s/no/such/dir.csv", t.dir);
    assert_int_equal(plugin_access_log_open(nowhere, KEY, &l, &err), CP_ECONFIG);
    assert_non_null(strstr(err.msg, nowhere));
    tmp_remove(&t);
}

/* ---- the file -------------------------------------------------------------------------------- */

static void test_access_log__header_once_lines_load_as_trace(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    struct cp_user alice = {1, "alice", "alice@example.com", "Alice", CFG_ROLE_VIEWER, 1};
    struct cp_user bob = {1, "bob", "bob@example.com", "Bob", CFG_ROLE_ADMIN, 1};
    struct cp_user grafana = {0};
    struct plugin_access_log *l = open_log(t.log, KEY);
    note(l, PROXY_KIND_RESOURCE, "get", "items/1", "a=1", &alice);
    note(l, PROXY_KIND_RESOURCE, "POST", "items", NULL, &bob);
    note(l, PROXY_KIND_QUERY, NULL, "q/cpu", "from=1&to=2", &grafana);
    note(l, PROXY_KIND_RESOURCE, "M-SEARCH", "x", NULL, &alice); /* not a trace method */
    plugin_access_log_free(l);
    l = open_log(t.log, KEY);
    note(l, PROXY_KIND_RESOURCE, "GET", "items/1", "a=1", &alice);
    uint64_t lines, dropped;
    plugin_access_log_close(l);
    plugin_access_log_stats(l, &lines, &dropped);
    assert_int_equal(lines, 1);
    assert_int_equal(dropped, 0);
    plugin_access_log_free(l);

    struct stat st;
    assert_int_equal(stat(t.log, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *text = slurp(t.log, NULL);
    assert_int_equal(count(text, "ts,user,role,method,path\n"), 1);
    assert_memory_equal(text, "ts,user,role,method,path\n", 25);
    assert_null(strstr(text, "alice"));
    assert_null(strstr(text, "bob"));
    assert_null(strstr(text, "example.com"));
    free(text);

    struct bench_trace *tr = NULL;
    struct cp_err err = {0};
    assert_int_equal(bench_trace_load(t.log, &tr, &err), 0);
    assert_int_equal(tr->n, 4);
    assert_int_equal(tr->ignored, 0);
    char pa[17], pb[17];
    snprintf(pa, sizeof pa, "%s", tr->recs[0].user);
    expect_hmac(KEY, "1:alice", pa);
    snprintf(pb, sizeof pb, "%s", tr->recs[1].user);
    expect_hmac(KEY, "1:bob", pb);
    /* in line order (equal times keep it) */
    const char *want[][4] = {{pa, "Viewer", "GET", "/items/1?a=1"},
                             {pb, "Admin", "POST", "/items"},
                             {"", "", "QUERY", "/q/cpu?from=1&to=2"},
                             {pa, "Viewer", "GET", "/items/1?a=1"}};
    int64_t now = cp_now_ms();
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(tr->recs[i].user, want[i][0]);
        assert_string_equal(tr->recs[i].role, want[i][1]);
        assert_string_equal(tr->recs[i].method, want[i][2]);
        assert_string_equal(tr->recs[i].path, want[i][3]);
        assert_true(tr->recs[i].ts_ms <= now && tr->recs[i].ts_ms > now - 60000);
    }
    bench_trace_free(tr);
    tmp_remove(&t);
}

static void test_access_log__cut_line_is_closed(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    FILE *f = fopen(t.log, "w");
    fputs("ts,user,role,method,path\n1700000000,,,GET,/a\n1700000001,,,GE", f);
    fclose(f);
    struct plugin_access_log *l = open_log(t.log, KEY);
    note(l, PROXY_KIND_RESOURCE, "GET", "b", NULL, NULL);
    plugin_access_log_free(l);
    char *text = slurp(t.log, NULL);
    /* the cut line stays (a reader names it), the new one is whole on a line of its own */
    assert_non_null(strstr(text, "\n1700000001,,,GE\n"));
    assert_int_equal(count(text, ",,,GET,/b\n"), 1);
    assert_int_equal(count(text, "ts,user"), 1);
    free(text);
    struct bench_trace *tr = NULL;
    struct cp_err err = {0};
    assert_int_equal(bench_trace_load(t.log, &tr, &err), CP_EINVAL);
    assert_non_null(strstr(err.msg, ":3:"));
    tmp_remove(&t);
}

/* Waits (5 s at most) until the writer has written n lines in all. */
static void wait_written(struct plugin_access_log *l, uint64_t n)
{
    uint64_t lines = 0, dropped = 0;
    int64_t until = cp_now_ms() + 5000;
    for (;;) {
        plugin_access_log_stats(l, &lines, &dropped);
        if (lines >= n || cp_now_ms() > until)
            break;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(lines, n);
    assert_int_equal(dropped, 0);
}

/* path holds the header and one line, of path */
static void expect_one_line(const char *file, const char *path)
{
    char *text = slurp(file, NULL);
    char line[64];
    snprintf(line, sizeof line, ",,,GET,/%s\n", path);
    assert_memory_equal(text, "ts,user,role,method,path\n", 25);
    assert_int_equal(count(text, line), 1);
    assert_int_equal(count(text, "\n"), 2);
    free(text);
}

/* logrotate's default: rename the file (a new one is made by the next write); and a file
 * removed outright. Lines already queued stay in the moved file, later ones go to the new. */
static void test_access_log__follows_a_rotation(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    char moved[128];
    snprintf(moved, sizeof moved, "%s.1", t.log);
    struct plugin_access_log *l = open_log(t.log, KEY);
    note(l, PROXY_KIND_RESOURCE, "GET", "before", NULL, NULL);
    wait_written(l, 1);
    assert_int_equal(rename(t.log, moved), 0);
    note(l, PROXY_KIND_RESOURCE, "GET", "after", NULL, NULL);
    wait_written(l, 2);
    expect_one_line(moved, "before");
    expect_one_line(t.log, "after");
    struct stat st;
    assert_int_equal(stat(t.log, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(unlink(t.log), 0);
    note(l, PROXY_KIND_RESOURCE, "GET", "again", NULL, NULL);
    wait_written(l, 3);
    plugin_access_log_free(l);
    expect_one_line(t.log, "again");
    struct bench_trace *tr = NULL;
    struct cp_err err = {0};
    assert_int_equal(bench_trace_load(moved, &tr, &err), 0);
    assert_int_equal(tr->n, 1);
    bench_trace_free(tr);
    unlink(moved);
    tmp_remove(&t);
}

/* Reads a FIFO to its end (every writer closed). */
struct drain {
    int fd;
    char *p;
    size_t n, cap;
};

static void *drain_main(void *arg)
{
    struct drain *d = arg;
    for (;;) {
        if (d->n + 65536 > d->cap) {
            d->cap = (d->n + 65536) * 2;
            d->p = realloc(d->p, d->cap);
            if (!d->p)
                return NULL;
        }
        ssize_t r = read(d->fd, d->p + d->n, 65536);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        d->n += (size_t)r;
    }
    return NULL;
}

static void test_access_log__full_queue_drops_and_counts(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    assert_int_equal(mkfifo(t.log, 0600), 0);
    /* the consumer's end, not read yet: the writer stalls once the pipe is full, and the
     * queue behind it fills */
    int rfd = open(t.log, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    struct plugin_access_log *l = open_log(t.log, KEY);
    struct cp_user u = {1, "alice", "", "", CFG_ROLE_EDITOR, 1};
    char path[200];
    memset(path, 'p', 150);
    path[150] = 0;
    uint64_t noted = 0, lines = 0, dropped = 0;
    int64_t t0 = cp_mono_ns();
    /* at most the pipe, the chunk the writer holds and the queue (2 MiB and 64 KiB) fit */
    while (dropped < 100 && noted < 200000) {
        note(l, PROXY_KIND_RESOURCE, "GET", path, "n=1", &u);
        noted++;
        plugin_access_log_stats(l, &lines, &dropped);
    }
    int64_t per_line_ns = (cp_mono_ns() - t0) / (int64_t)noted;
    assert_int_equal(dropped, 100); /* counted, and the caller never waited */
    assert_true(noted < 2 * 15000);
    /* now read it: close writes out everything queued, then the end of the file */
    int fl = fcntl(rfd, F_GETFL);
    fcntl(rfd, F_SETFL, fl & ~O_NONBLOCK);
    struct drain d = {rfd, NULL, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drain_main, &d), 0);
    plugin_access_log_close(l);
    pthread_join(th, NULL);
    close(rfd);
    plugin_access_log_stats(l, &lines, &dropped);
    assert_int_equal(lines + dropped, noted);
    /* a closed log drops and counts */
    note(l, PROXY_KIND_RESOURCE, "GET", path, NULL, &u);
    uint64_t lines2, dropped2;
    plugin_access_log_stats(l, &lines2, &dropped2);
    assert_int_equal(lines2, lines);
    assert_int_equal(dropped2, dropped + 1);
    plugin_access_log_free(l);
    /* no header in a FIFO; every line whole and readable */
    assert_non_null(d.p);
    assert_true(d.n > 0 && d.p[d.n - 1] == '\n');
    size_t got = 0;
    for (char *s = d.p, *e; s < d.p + d.n; s = e + 1) {
        e = memchr(s, '\n', (size_t)(d.p + d.n - s));
        assert_non_null(e);
        *e = 0;
        struct bench_trace_fields f;
        char why[200];
        assert_int_equal(bench_trace_parse_line(s, (size_t)(e - s), &f, why, sizeof why),
                         BENCH_LINE_RECORD);
        assert_string_equal(f.role, "Editor");
        got++;
    }
    assert_int_equal(got, lines);
    print_message("      %llu lines queued and written, %llu dropped; %lld ns per line noted\n",
                  (unsigned long long)lines, (unsigned long long)dropped, (long long)per_line_ns);
    free(d.p);
    unlink(t.log);
    rmdir(t.dir);
}

/* Several threads of two "processes" (two descriptors on the same file) at once. */
struct hammer {
    struct plugin_access_log *l;
    int id;
};

#define HAMMER_LINES 20000

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    struct cp_user u = {1, h->id % 2 ? "alice" : "bob", "", "", CFG_ROLE_VIEWER, 1};
    char path[64], query[32];
    for (int i = 0; i < HAMMER_LINES; i++) {
        snprintf(path, sizeof path, "t%d/%d", h->id, i);
        snprintf(query, sizeof query, "pad=%0*d", 1 + (i * 7919) % 24, i);
        note(h->l, PROXY_KIND_RESOURCE, "GET", path, query, &u);
    }
    return NULL;
}

static void test_access_log__writers_never_mix_within_a_line(void **state)
{
    (void)state;
    struct tmp t;
    tmp_make(&t);
    struct plugin_access_log *a = open_log(t.log, KEY), *b = open_log(t.log, KEY);
    struct hammer h[4] = {{a, 0}, {a, 1}, {b, 2}, {b, 3}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    uint64_t la, da, lb, db;
    plugin_access_log_close(a);
    plugin_access_log_close(b);
    plugin_access_log_stats(a, &la, &da);
    plugin_access_log_stats(b, &lb, &db);
    plugin_access_log_free(a);
    plugin_access_log_free(b);
    assert_int_equal(la + da, 2 * HAMMER_LINES);
    assert_int_equal(lb + db, 2 * HAMMER_LINES);
    struct bench_trace *tr = NULL;
    struct cp_err err = {0};
    if (bench_trace_load(t.log, &tr, &err) != 0)
        fail_msg("%s", cp_err_text(&err));
    assert_int_equal(tr->n, la + lb);
    /* each line of each thread is there once, whole */
    int next[4] = {0, 0, 0, 0};
    size_t *seen = calloc(4 * HAMMER_LINES, sizeof *seen);
    for (size_t i = 0; i < tr->n; i++) {
        int id, k;
        assert_int_equal(sscanf(tr->recs[i].path, "/t%d/%d?pad=", &id, &k), 2);
        assert_true(id >= 0 && id < 4 && k >= 0 && k < HAMMER_LINES);
        assert_int_equal(seen[id * HAMMER_LINES + k]++, 0);
        next[id]++;
    }
    free(seen);
    if (!da && !db)
        for (int i = 0; i < 4; i++)
            assert_int_equal(next[i], HAMMER_LINES);
    bench_trace_free(tr);
    tmp_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_log__format_line),
        cmocka_unit_test(test_access_log__format_encodes_unprintable),
        cmocka_unit_test(test_access_log__format_caps_path),
        cmocka_unit_test(test_access_log__format_skips_methods_the_trace_cannot_hold),
        cmocka_unit_test(test_access_log__pseudonym_is_hmac_of_org_and_login),
        cmocka_unit_test(test_access_log__key_file_made_once_and_reused),
        cmocka_unit_test(test_access_log__bad_keys_refused),
        cmocka_unit_test(test_access_log__header_once_lines_load_as_trace),
        cmocka_unit_test(test_access_log__cut_line_is_closed),
        cmocka_unit_test(test_access_log__follows_a_rotation),
        cmocka_unit_test(test_access_log__full_queue_drops_and_counts),
        cmocka_unit_test(test_access_log__writers_never_mix_within_a_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
