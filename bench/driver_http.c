/*
 * driver_http.c - the `http` mode: the standalone server (`gpx_cachingproxy serve`) started
 * with a configuration file written here (one data source, one API key per Grafana role), and
 * every request an HTTP call over keep-alive: a resource call
 * `/api/datasources/uid/<uid>/resources/proxy<path>`, or a query `POST /api/ds/query` whose
 * frame (data frame JSON) says hit or miss in meta.custom.cache. Each worker has its own
 * libcurl easy handle, so its connection stays open. Stats come from the data source's
 * `cache/stats` resource and the server's VmRSS.
 *
 * A workload's users map to the key of their role (the server knows its keys from its file,
 * so it cannot have one per synthetic user): the cache scopes `user` and `org` see one user
 * per role, and a call without a user is made with the Viewer key.
 */
#include "bench_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const roles[] = {"Viewer", "Editor", "Admin", "None"};
#define NROLES 4

struct http_conn {
    pid_t pid;
    int port;
    char dir[256], cfg_path[300];
    char *uid;
    char base[64];
    char keys[NROLES][48];
};

struct http_worker {
    CURL *h;
    struct curl_slist *hdr[NROLES];
    struct cp_buf body;
    char xcache[16];
};

static const char *key_for(const struct http_conn *c, const char *role, int *idx)
{
    int k = 0;
    for (int i = 0; role && i < NROLES; i++)
        if (!strcasecmp(role, roles[i]))
            k = i;
    if (idx)
        *idx = k;
    return c->keys[k];
}

/* The configuration file: the target's data source and one key per role. */
static int write_config(struct http_conn *c, const struct bench_target *t, struct cp_err *err)
{
    json_error_t je;
    json_t *jd = json_loads(t->json_data && *t->json_data ? t->json_data : "{}", 0, &je);
    if (!json_is_object(jd)) {
        json_decref(jd);
        return cp_err_set(err, CP_EINVAL, "the data source's jsonData is not a JSON object");
    }
    json_t *keys = json_array();
    for (int i = 0; i < NROLES; i++) {
        char login[32];
        snprintf(login, sizeof login, "bench-%s", roles[i]);
        for (char *p = login; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        json_array_append_new(
            keys, json_pack("{s:s,s:s,s:s}", "key", c->keys[i], "login", login, "role", roles[i]));
    }
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", c->port);
    json_t *doc = json_pack("{s:s,s:i,s:s,s:[{s:s,s:s,s:o}],s:o}", "listen", listen, "threads", 2,
                            "shutdownTimeout", "2s", "datasources", "uid", t->uid, "url",
                            t->upstream_url, "jsonData", jd, "apiKeys", keys);
    int rc = doc && json_dump_file(doc, c->cfg_path, JSON_INDENT(2)) == 0
                 ? 0
                 : cp_err_set(err, CP_EINVAL, "cannot write %s", c->cfg_path);
    json_decref(doc);
    return rc;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct cp_buf *b = ud;
    return cp_buf_add(b, p, size * n) ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    char *xc = ud;
    size_t len = size * n;
    if (len > 9 && !strncasecmp(p, "X-Cache:", 8)) {
        const char *v = p + 8;
        while (*v == ' ')
            v++;
        size_t k = 0;
        while (k < 15 && v + k < p + len && v[k] != '\r' && v[k] != '\n')
            k++;
        memcpy(xc, v, k);
        xc[k] = 0;
    }
    return len;
}

/* One call with the worker's handle; 0 with *status, or CP_EUPSTREAM (no answer). */
static int perform(struct http_worker *w, const char *url, const char *post, struct curl_slist *h,
                   long *status, struct cp_err *err)
{
    w->body.len = 0;
    w->xcache[0] = 0;
    curl_easy_setopt(w->h, CURLOPT_URL, url);
    curl_easy_setopt(w->h, CURLOPT_HTTPHEADER, h);
    if (post) {
        curl_easy_setopt(w->h, CURLOPT_POSTFIELDS, post);
    } else {
        curl_easy_setopt(w->h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode cc = curl_easy_perform(w->h);
    if (cc != CURLE_OK)
        return cp_err_set(err, CP_EUPSTREAM, "%s: %s", url, curl_easy_strerror(cc));
    curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

static void worker_dispose(struct http_worker *w)
{
    if (w->h)
        curl_easy_cleanup(w->h);
    for (int i = 0; i < NROLES; i++)
        curl_slist_free_all(w->hdr[i]);
    cp_buf_free(&w->body);
}

static int worker_init(struct http_conn *c, struct http_worker *w, struct cp_err *err)
{
    memset(w, 0, sizeof *w);
    if (!(w->h = curl_easy_init()))
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    for (int i = 0; i < NROLES; i++) {
        char a[96];
        snprintf(a, sizeof a, "Authorization: Bearer %s", c->keys[i]);
        struct curl_slist *l = curl_slist_append(NULL, a);
        struct curl_slist *l2 = l ? curl_slist_append(l, "Content-Type: application/json") : NULL;
        if (!l2) {
            curl_slist_free_all(l);
            worker_dispose(w);
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        }
        w->hdr[i] = l2;
    }
    curl_easy_setopt(w->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(w->h, CURLOPT_TIMEOUT_MS, (long)BENCH_CALL_TIMEOUT_MS);
    curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(w->h, CURLOPT_WRITEDATA, &w->body);
    curl_easy_setopt(w->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(w->h, CURLOPT_HEADERDATA, w->xcache);
    curl_easy_setopt(w->h, CURLOPT_TCP_NODELAY, 1L);
    return 0;
}

static int wait_ready(struct http_conn *c, struct cp_err *err)
{
    struct http_worker w;
    int rc = worker_init(c, &w, err);
    if (rc)
        return rc;
    char url[96];
    snprintf(url, sizeof url, "%s/healthz", c->base);
    curl_easy_setopt(w.h, CURLOPT_TIMEOUT_MS, 500L);
    int64_t deadline = cp_mono_ns() + (int64_t)BENCH_START_TIMEOUT_MS * 1000000;
    rc = CP_ETIMEDOUT;
    while (cp_mono_ns() < deadline && !atomic_load(&bench_interrupted)) {
        long st = 0;
        struct cp_err e;
        if (perform(&w, url, NULL, NULL, &st, &e) == 0 && st == 200) {
            rc = 0;
            break;
        }
        int wst;
        if (waitpid(c->pid, &wst, WNOHANG) == c->pid) {
            c->pid = -1;
            break;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    worker_dispose(&w);
    if (rc)
        cp_err_set(err, CP_EINTERNAL, "the standalone server did not answer /healthz (config %s)",
                   c->cfg_path);
    return rc;
}

static void conn_free(struct http_conn *c)
{
    if (c->cfg_path[0])
        unlink(c->cfg_path);
    if (c->dir[0])
        rmdir(c->dir);
    free(c->uid);
    free(c);
}

static int h_open(const struct bench_target *t, void **out, struct cp_err *err)
{
    *out = NULL;
    struct http_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->uid = strdup(t->uid))) {
        free(c);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    c->pid = -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/cpbench-http-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(c->dir)) {
        c->dir[0] = 0;
        conn_free(c);
        return cp_err_set(err, CP_EINTERNAL, "mkdtemp: %s", strerror(errno));
    }
    snprintf(c->cfg_path, sizeof c->cfg_path, "%s/standalone.json", c->dir);
    uint64_t seed = (uint64_t)cp_mono_ns() ^ (uint64_t)getpid();
    for (int i = 0; i < NROLES; i++)
        snprintf(c->keys[i], sizeof c->keys[i], "bench-%016llx",
                 (unsigned long long)bench_rand(&seed));
    c->port = bench_free_port();
    snprintf(c->base, sizeof c->base, "http://127.0.0.1:%d", c->port);
    int rc = c->port > 0 ? write_config(c, t, err)
                         : cp_err_set(err, CP_EINTERNAL, "no free loopback port");
    if (rc) {
        conn_free(c);
        return rc;
    }
    const char *argv[] = {t->exe, "serve", "--config", c->cfg_path, NULL};
    c->pid = bench_spawn(argv, NULL, -1, -1);
    if (c->pid < 0) {
        conn_free(c);
        return cp_err_set(err, CP_EINTERNAL, "cannot start %s", t->exe);
    }
    if ((rc = wait_ready(c, err)) != 0) {
        if (c->pid > 0)
            bench_child_stop(c->pid, BENCH_STOP_TIMEOUT_MS);
        conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int h_worker_new(void *conn, void **out, struct cp_err *err)
{
    struct http_worker *w = calloc(1, sizeof *w);
    if (!w)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    int rc = worker_init(conn, w, err);
    if (rc) {
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

static void h_worker_free(void *conn, void *w)
{
    (void)conn;
    if (!w)
        return;
    worker_dispose(w);
    free(w);
}

/* {"from","to","queries":[{"refId":"A","datasource":{"uid":U},"path":P,"params":{..},"root":"$"}]}
 */
static char *query_body(const struct http_conn *c, const struct bench_req *rq)
{
    json_t *params = json_object();
    const char *q = strchr(rq->path, '?');
    char *p = q ? strndup(rq->path, (size_t)(q - rq->path)) : strdup(rq->path);
    char *rest = q ? strdup(q + 1) : NULL;
    char *text = NULL;
    if (params && p && (!q || rest)) {
        for (char *save = NULL, *kv = rest ? strtok_r(rest, "&", &save) : NULL; kv;
             kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq)
                *eq = 0;
            char *k = curl_easy_unescape(NULL, kv, 0, NULL);
            char *v = curl_easy_unescape(NULL, eq ? eq + 1 : "", 0, NULL);
            if (k && v)
                json_object_set_new(params, k, json_string(v));
            curl_free(k);
            curl_free(v);
        }
        char from[32], to[32];
        snprintf(from, sizeof from, "%lld", (long long)rq->from_ms);
        snprintf(to, sizeof to, "%lld", (long long)rq->to_ms);
        json_t *doc = json_pack("{s:s,s:s,s:[{s:s,s:{s:s},s:s,s:O,s:s}]}", "from", from, "to", to,
                                "queries", "refId", "A", "datasource", "uid", c->uid, "path", p,
                                "params", params, "root", "$");
        text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
    }
    json_decref(params);
    free(p);
    free(rest);
    return text;
}

static int h_request(void *conn, void *wp, const struct bench_req *rq, struct bench_answer *a,
                     struct cp_err *err)
{
    struct http_conn *c = conn;
    struct http_worker *w = wp;
    int role = 0;
    key_for(c, rq->user && *rq->user ? rq->role : NULL, &role);
    memset(a, 0, sizeof *a);
    long status = 0;
    int rc;
    if (rq->kind == BENCH_KIND_QUERY) {
        char url[96];
        snprintf(url, sizeof url, "%s/api/ds/query", c->base);
        char *body = query_body(c, rq);
        if (!body)
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        rc = perform(w, url, body, w->hdr[role], &status, err);
        free(body);
        if (rc)
            return rc;
        json_error_t je;
        json_t *doc = json_loadb(w->body.p ? w->body.p : "", w->body.len, 0, &je);
        json_t *res =
            json_object_get(json_object_get(json_object_get(doc, "results"), "A"), "status");
        json_t *frame = json_array_get(
            json_object_get(json_object_get(json_object_get(doc, "results"), "A"), "frames"), 0);
        json_t *custom =
            json_object_get(json_object_get(json_object_get(frame, "schema"), "meta"), "custom");
        const char *cache = json_string_value(json_object_get(custom, "cache"));
        json_t *pieces = json_object_get(custom, "cachePieces");
        a->status = json_is_integer(res) ? (int)json_integer_value(res) : (int)status;
        a->cache = cache ? bench_cache_parse(cache) : BENCH_CACHE_NONE;
        a->pieces_hit = (uint32_t)json_integer_value(json_object_get(pieces, "hit"));
        a->pieces_fetched = (uint32_t)json_integer_value(json_object_get(pieces, "fetched"));
        a->bytes = w->body.len;
        json_decref(doc);
        return 0;
    }
    char url[BENCH_MAX_URL + 160];
    if (snprintf(url, sizeof url, "%s/api/datasources/uid/%s/resources/proxy%s", c->base, c->uid,
                 rq->path) >= (int)sizeof url)
        return cp_err_set(err, CP_EINVAL, "path too long: %.60s...", rq->path);
    if (rq->method && strcmp(rq->method, "GET"))
        curl_easy_setopt(w->h, CURLOPT_CUSTOMREQUEST, rq->method);
    rc = perform(w, url, NULL, w->hdr[role], &status, err);
    curl_easy_setopt(w->h, CURLOPT_CUSTOMREQUEST, NULL);
    if (rc)
        return rc;
    a->status = (int)status;
    a->cache = bench_cache_parse(w->xcache);
    a->bytes = w->body.len;
    return 0;
}

static int h_stats(void *conn, struct bench_target_stats *st, struct cp_err *err)
{
    struct http_conn *c = conn;
    memset(st, 0, sizeof *st);
    st->rss_kib = bench_rss_kib(c->pid);
    struct http_worker w;
    int rc = worker_init(c, &w, err);
    if (rc)
        return rc;
    char url[160];
    snprintf(url, sizeof url, "%s/api/datasources/uid/%s/resources/cache/stats", c->base, c->uid);
    long status = 0;
    rc = perform(&w, url, NULL, w.hdr[0], &status, err);
    if (!rc)
        rc = bench_stats_parse(w.body.p, w.body.len, status, st, err);
    worker_dispose(&w);
    return rc;
}

static int h_close(void *conn)
{
    struct http_conn *c = conn;
    if (!c)
        return 0;
    int st = bench_child_stop(c->pid, BENCH_STOP_TIMEOUT_MS);
    conn_free(c);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

void bench_http_conn_info(void *conn, char *base, size_t bsize, char *key, size_t ksize)
{
    struct http_conn *c = conn;
    snprintf(base, bsize, "%s", c->base);
    snprintf(key, ksize, "%s", c->keys[0]);
}

pid_t bench_http_conn_pid(void *conn)
{
    return ((struct http_conn *)conn)->pid;
}

const struct bench_driver bench_driver_http = {
    .name = "http",
    .open = h_open,
    .worker_new = h_worker_new,
    .request = h_request,
    .worker_free = h_worker_free,
    .stats = h_stats,
    .close = h_close,
};
