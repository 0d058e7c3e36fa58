/*
 * peers.c - `cachingproxy-bench standalone`: the standalone server's cached hit against its
 * peers, all loaded by the same wrk command (Debian's wrk: 2 threads, 50 connections,
 * keep-alive, latency distribution), in rounds that take turns:
 *
 *   bare        a libmicrohttpd responder configured like the server (internal polling
 *               thread, epoll, a pool of 2 threads) answering the very bytes of the server's
 *               hit (body and headers) from one prepared response: the library's ceiling
 *   standalone  gpx_cachingproxy serve, memory cache, the request with its API key, answered
 *               from the cache (the upstream simulator counts zero calls meanwhile)
 *   nginx       Debian's nginx with proxy_cache in front of the same upstream simulator, 2
 *               worker processes, warmed so that every answer is a cache HIT
 *
 * Reported per round: requests/s and p50/p99 of each, and the ratios standalone / bare and
 * standalone / nginx. Nothing here is a pass or fail: the figures go to the README.
 */
#include "bench_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRK "/usr/bin/wrk"
#define NGINX "/usr/sbin/nginx"
#define PAYLOAD 1024

struct wrk_result {
    double rps, p50_ms, p99_ms;
    uint64_t requests, bad; /* bad: non-2xx answers and socket errors */
    double cpu_us;          /* the server's CPU time per request, 0 when unknown */
};

/* ---- wrk ------------------------------------------------------------------------------------ */

static double wrk_time_ms(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    while (*end == ' ')
        end++;
    if (!strncmp(end, "us", 2))
        return v / 1000;
    if (!strncmp(end, "ms", 2))
        return v;
    if (*end == 's')
        return v * 1000;
    if (*end == 'm')
        return v * 60000;
    return v;
}

/* Parses wrk --latency output. 0, or -1 when the figures are not there. */
static int wrk_parse(const char *out, struct wrk_result *r)
{
    memset(r, 0, sizeof *r);
    const char *p;
    if (!(p = strstr(out, "Requests/sec:")))
        return -1;
    r->rps = strtod(p + 13, NULL);
    if ((p = strstr(out, "\n     50%")))
        r->p50_ms = wrk_time_ms(p + 9);
    if ((p = strstr(out, "\n     99%")))
        r->p99_ms = wrk_time_ms(p + 9);
    if ((p = strstr(out, " requests in ")))
        for (const char *b = p; b > out && b[-1] >= '0' && b[-1] <= '9'; b--)
            r->requests = strtoull(b - 1, NULL, 10);
    if ((p = strstr(out, "Non-2xx or 3xx responses:")))
        r->bad += strtoull(p + 25, NULL, 10);
    if ((p = strstr(out, "Socket errors:"))) {
        /* connect N, read N, write N, timeout N */
        const char *k;
        for (k = p; *k && *k != '\n'; k++)
            if (*k >= '0' && *k <= '9') {
                r->bad += strtoull(k, (char **)&k, 10);
                k--;
            }
    }
    return r->rps > 0 && r->p99_ms > 0 ? 0 : -1;
}

/* server: the process whose CPU time per request is measured (-1: none). */
static int run_wrk(const char *url, const char *header, double secs, pid_t server,
                   struct wrk_result *r, struct cp_err *err)
{
    int64_t cpu0 = 0, cpu1 = 0;
    uint64_t sw;
    int have = server > 0 && bench_proc_usage(server, &cpu0, &sw) == 0;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return cp_err_set(err, CP_EINTERNAL, "pipe: %s", strerror(errno));
    char dur[32];
    snprintf(dur, sizeof dur, "%ds", (int)ceil(secs));
    const char *argv[16];
    int n = 0;
    argv[n++] = WRK;
    argv[n++] = "-t2";
    argv[n++] = "-c50";
    argv[n++] = "-d";
    argv[n++] = dur;
    argv[n++] = "--latency";
    if (header) {
        argv[n++] = "-H";
        argv[n++] = header;
    }
    argv[n++] = url;
    argv[n] = NULL;
    pid_t pid = bench_spawn(argv, NULL, pfd[1], pfd[1]);
    close(pfd[1]);
    if (pid < 0) {
        close(pfd[0]);
        return cp_err_set(err, CP_EINTERNAL, "cannot start %s", WRK);
    }
    struct cp_buf out = {.max = 1 << 20};
    int64_t deadline = cp_mono_ns() + (int64_t)((secs + 15) * 1e9);
    char buf[4096];
    for (;;) {
        int left = (int)((deadline - cp_mono_ns()) / 1000000);
        struct pollfd pf = {pfd[0], POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t k = read(pfd[0], buf, sizeof buf);
        if (k <= 0)
            break;
        cp_buf_add(&out, buf, (size_t)k);
    }
    close(pfd[0]);
    int st = bench_child_stop(pid, 1000);
    have = have && bench_proc_usage(server, &cpu1, &sw) == 0;
    int rc = 0;
    if (!out.p || wrk_parse(out.p, r) != 0)
        rc = cp_err_set(err, CP_EINTERNAL, "wrk gave no figures (status %d): %.200s", st,
                        out.p ? out.p : "");
    else if (have && r->requests)
        r->cpu_us = (double)(cpu1 - cpu0) / 1000 / (double)r->requests;
    cp_buf_free(&out);
    return rc;
}

/* ---- the bare responder ------------------------------------------------------------------- */

struct bare_mhd {
    struct MHD_Daemon *d;
    struct MHD_Response *resp;
    int port;
};

static enum MHD_Result bare_answer(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    (void)url, (void)method, (void)version, (void)upload_data;
    struct bare_mhd *b = cls;
    if (!*con_cls) { /* the first call: headers only */
        *con_cls = b;
        return MHD_YES;
    }
    *upload_data_size = 0;
    return MHD_queue_response(conn, MHD_HTTP_OK, b->resp);
}

struct captured {
    struct cp_buf body;
    char names[16][64], values[16][256];
    int n;
};

static size_t cap_body(char *p, size_t size, size_t n, void *ud)
{
    struct captured *c = ud;
    return cp_buf_add(&c->body, p, size * n) ? 0 : size * n;
}

/* The answer's own headers (not the framing ones MHD writes itself, nor Date). */
static size_t cap_header(char *p, size_t size, size_t n, void *ud)
{
    struct captured *c = ud;
    size_t len = size * n;
    const char *colon = memchr(p, ':', len);
    if (!colon || c->n >= 16)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    while (*v == ' ')
        v++;
    size_t vl = len - (size_t)(v - p);
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    if (nl >= 64 || vl >= 256)
        return len;
    static const char *const skip[] = {"Date", "Content-Length", "Connection", "Transfer-Encoding",
                                       "Keep-Alive"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (strlen(skip[i]) == nl && !strncasecmp(p, skip[i], nl))
            return len;
    memcpy(c->names[c->n], p, nl);
    c->names[c->n][nl] = 0;
    memcpy(c->values[c->n], v, vl);
    c->values[c->n][vl] = 0;
    c->n++;
    return len;
}

static int fetch(const char *url, const char *header, struct captured *c, long *status)
{
    memset(c, 0, sizeof *c);
    CURL *h = curl_easy_init();
    if (!h)
        return -1;
    /* the headers wrk sends (Host, and the key): no Accept, which would be another cache key */
    struct curl_slist *l = curl_slist_append(NULL, "Accept:");
    if (l && header)
        curl_slist_append(l, header);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)BENCH_CALL_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cap_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cap_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(h);
    curl_slist_free_all(l);
    return cc == CURLE_OK ? 0 : -1;
}

static int bare_start(struct bare_mhd *b, const struct captured *cap, struct cp_err *err)
{
    memset(b, 0, sizeof *b);
    b->resp = MHD_create_response_from_buffer(cap->body.len, cap->body.p, MHD_RESPMEM_MUST_COPY);
    if (!b->resp)
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    for (int i = 0; i < cap->n; i++)
        MHD_add_response_header(b->resp, cap->names[i], cap->values[i]);
    b->port = bench_free_port();
    b->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)b->port,
                            NULL, NULL, bare_answer, b, MHD_OPTION_THREAD_POOL_SIZE, 2u,
                            MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_LISTEN_BACKLOG_SIZE,
                            1024u, MHD_OPTION_END);
    if (!b->d) {
        MHD_destroy_response(b->resp);
        return cp_err_set(err, CP_EINTERNAL, "the bare libmicrohttpd responder did not start");
    }
    return 0;
}

static void bare_stop(struct bare_mhd *b)
{
    if (b->d)
        MHD_stop_daemon(b->d);
    if (b->resp)
        MHD_destroy_response(b->resp);
}

/* ---- nginx ---------------------------------------------------------------------------------- */

struct nginx {
    pid_t pid;
    int port;
    char dir[256];
};

static int nginx_start(struct nginx *x, const char *sim_url, struct cp_err *err)
{
    memset(x, 0, sizeof *x);
    x->pid = -1;
    if (access(NGINX, X_OK) != 0)
        return cp_err_set(err, CP_ENOTSUP, "%s is not installed (apt-get install nginx-light)",
                          NGINX);
    const char *tmp = getenv("TMPDIR");
    snprintf(x->dir, sizeof x->dir, "%s/cpbench-nginx-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(x->dir))
        return cp_err_set(err, CP_EINTERNAL, "mkdtemp: %s", strerror(errno));
    x->port = bench_free_port();
    char conf[512];
    snprintf(conf, sizeof conf, "%s/nginx.conf", x->dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return cp_err_set(err, CP_EINTERNAL, "cannot write %s", conf);
    const char *up = strstr(sim_url, "://");
    up = up ? up + 3 : sim_url;
    fprintf(f,
            "%s"
            "daemon off;\nworker_processes 2;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  access_log off;\n"
            "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
            "  proxy_cache_path %s/cache levels=1:2 keys_zone=bench:10m max_size=100m "
            "inactive=10m use_temp_path=off;\n"
            "  upstream sim { server %s; keepalive 16; }\n"
            "  server {\n"
            "    listen 127.0.0.1:%d;\n"
            "    location / {\n"
            "      proxy_pass http://sim;\n"
            "      proxy_http_version 1.1;\n"
            "      proxy_set_header Connection \"\";\n"
            "      proxy_cache bench;\n"
            "      proxy_cache_valid 200 10m;\n"
            "      proxy_cache_lock on;\n"
            "      add_header X-Cache $upstream_cache_status;\n"
            "    }\n"
            "  }\n"
            "}\n",
            geteuid() == 0 ? "user root;\n" : "", x->dir, x->dir, x->dir, x->dir, x->dir, x->dir,
            x->dir, x->dir, up, x->port);
    fclose(f);
    const char *argv[] = {NGINX, "-p", x->dir, "-c", conf, NULL};
    if ((x->pid = bench_spawn(argv, NULL, -1, -1)) < 0)
        return cp_err_set(err, CP_EINTERNAL, "cannot start nginx");
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", x->port);
    int64_t deadline = cp_mono_ns() + (int64_t)BENCH_START_TIMEOUT_MS * 1000000;
    while (cp_mono_ns() < deadline) {
        struct captured c;
        long st = 0;
        int ok = fetch(url, NULL, &c, &st) == 0 && st > 0;
        cp_buf_free(&c.body);
        if (ok)
            return 0;
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return cp_err_set(err, CP_EINTERNAL, "nginx did not answer on port %d (see %s/error.log)",
                      x->port, x->dir);
}

static void rm_tree(const char *dir)
{
    /* nginx's temporary tree: only files and folders it made itself */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", dir);
    if (strstr(dir, "/cpbench-nginx-") && !strchr(dir, '\''))
        (void)!system(cmd);
}

static void nginx_stop(struct nginx *x)
{
    if (x->pid > 0) {
        kill(x->pid, SIGQUIT); /* graceful: workers finish, then the master exits */
        int st;
        int64_t deadline = cp_mono_ns() + 3000000000LL;
        while (waitpid(x->pid, &st, WNOHANG) == 0 && cp_mono_ns() < deadline) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        bench_child_stop(x->pid, 1000);
    }
    if (x->dir[0])
        rm_tree(x->dir);
}

/* ---- the scenario -------------------------------------------------------------------------- */

static void fmt_row(struct bench_table *t, int round, const char *name, const struct wrk_result *r)
{
    char cs[7][32];
    snprintf(cs[0], 32, "%d", round);
    snprintf(cs[1], 32, "%s", name);
    bench_fmt_rate(cs[2], 32, r->rps);
    bench_fmt_ms(cs[3], 32, r->p50_ms);
    bench_fmt_ms(cs[4], 32, r->p99_ms);
    snprintf(cs[5], 32, "%llu", (unsigned long long)r->bad);
    if (r->cpu_us > 0)
        snprintf(cs[6], 32, "%.1f us", r->cpu_us);
    else
        snprintf(cs[6], 32, "-");
    const char *row[7] = {cs[0], cs[1], cs[2], cs[3], cs[4], cs[5], cs[6]};
    bench_table_row(t, row);
}

static json_t *wrk_json(const struct wrk_result *r)
{
    return json_pack("{s:f,s:f,s:f,s:I,s:I,s:f}", "requests_per_s", r->rps, "p50_ms", r->p50_ms,
                     "p99_ms", r->p99_ms, "requests", (json_int_t)r->requests, "bad",
                     (json_int_t)r->bad, "server_cpu_us_per_request", r->cpu_us);
}

static double median3(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && v[k] < v[k - 1]; k--) {
            double t = v[k];
            v[k] = v[k - 1];
            v[k - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int bench_peers_run(const char *exe, struct bench_sim *sim, const char *sim_url, double secs,
                    int rounds, json_t *scenarios, FILE *out)
{
    struct cp_err err = {0};
    if (access(WRK, X_OK) != 0) {
        fprintf(stderr, "bench: standalone: %s is not installed (apt-get install wrk)\n", WRK);
        return CP_ENOTSUP;
    }
    struct bench_upstream_profile prof;
    bench_upstream_profile_init(&prof);
    bench_sim_set_profile(sim, &prof);
    struct bench_target t = {exe,
                             NULL,
                             "bench",
                             "{\"cache\":{\"backend\":\"memory\","
                             "\"resourceTtl\":\"1h\"}}",
                             sim_url,
                             cp_now_ms()};
    void *conn = NULL;
    struct bare_mhd bare = {0};
    struct nginx nx = {.pid = -1};
    struct captured cap = {0};
    int rc = bench_driver_http.open(&t, &conn, &err);
    char base[64], key[64], auth[96], sa_url[256], nx_url[160], bare_url[96];
    if (!rc) {
        bench_http_conn_info(conn, base, sizeof base, key, sizeof key);
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        snprintf(sa_url, sizeof sa_url,
                 "%s/api/datasources/uid/bench/resources/proxy/data?size=%d&delay_ms=0&id=hot",
                 base, PAYLOAD);
        /* warm the entry: a MISS, then the HIT whose bytes the bare responder serves */
        long st = 0;
        if (fetch(sa_url, auth, &cap, &st) != 0 || st != 200) {
            rc = cp_err_set(&err, CP_EUPSTREAM, "standalone warm-up: HTTP %ld", st);
        } else {
            cp_buf_free(&cap.body);
            if (fetch(sa_url, auth, &cap, &st) != 0 || st != 200 || cap.body.len != PAYLOAD)
                rc = cp_err_set(&err, CP_EUPSTREAM, "standalone hit: HTTP %ld, %zu bytes", st,
                                cap.body.len);
        }
    }
    if (!rc)
        rc = bare_start(&bare, &cap, &err);
    int have_nginx = 0;
    char nginx_why[300] = "";
    if (!rc) {
        struct cp_err ne = {0};
        if (nginx_start(&nx, sim_url, &ne) == 0) {
            snprintf(nx_url, sizeof nx_url, "http://127.0.0.1:%d/data?size=%d&delay_ms=0&id=hot",
                     nx.port, PAYLOAD);
            struct captured c2;
            long st = 0;
            fetch(nx_url, NULL, &c2, &st);
            cp_buf_free(&c2.body);
            int hit = fetch(nx_url, NULL, &c2, &st) == 0 && st == 200;
            for (int i = 0; hit && i < c2.n; i++)
                if (!strcasecmp(c2.names[i], "X-Cache") && strcmp(c2.values[i], "HIT"))
                    hit = 0;
            hit = hit && c2.body.len == PAYLOAD;
            cp_buf_free(&c2.body);
            have_nginx = hit;
            if (!hit)
                snprintf(nginx_why, sizeof nginx_why, "nginx did not answer a 1 KiB HIT");
        } else {
            snprintf(nginx_why, sizeof nginx_why, "%s", cp_err_text(&ne));
        }
    }
    snprintf(bare_url, sizeof bare_url, "http://127.0.0.1:%d/data", bare.port);
    static const char *const cols[] = {"round", "server", "req/s",         "p50",
                                       "p99",   "errors", "server CPU/req"};
    struct bench_table *tab = bench_table_new(
        "standalone: cached 1 KiB answer, wrk -t2 -c50 (keep-alive); latency ms", cols, 7);
    json_t *jr = json_array();
    double r_bare[20], r_nginx[20], p_bare[20], p_nginx[20];
    int nr = 0;
    uint64_t upstream_during = 0;
    for (int round = 1; !rc && round <= rounds && !atomic_load(&bench_interrupted); round++) {
        struct wrk_result wb, ws, wn = {0};
        char line[96];
        snprintf(line, sizeof line, "standalone round %d: bare libmicrohttpd", round);
        fprintf(stderr, "bench: %s\n", line);
        if ((rc = run_wrk(bare_url, NULL, secs, getpid(), &wb, &err)))
            break;
        struct bench_sim_counts s0, s1;
        bench_sim_counts(sim, &s0);
        fprintf(stderr, "bench: standalone round %d: gpx_cachingproxy serve\n", round);
        if ((rc = run_wrk(sa_url, auth, secs, bench_http_conn_pid(conn), &ws, &err)))
            break;
        bench_sim_counts(sim, &s1);
        upstream_during += s1.data_requests - s0.data_requests;
        if (have_nginx) {
            fprintf(stderr, "bench: standalone round %d: nginx proxy_cache\n", round);
            if ((rc = run_wrk(nx_url, NULL, secs, -1, &wn, &err)))
                break;
        }
        fmt_row(tab, round, "bare libmicrohttpd", &wb);
        fmt_row(tab, round, "gpx_cachingproxy serve", &ws);
        if (have_nginx)
            fmt_row(tab, round, "nginx proxy_cache", &wn);
        r_bare[nr] = ws.rps / wb.rps;
        p_bare[nr] = ws.p99_ms / wb.p99_ms;
        r_nginx[nr] = have_nginx ? ws.rps / wn.rps : 0;
        p_nginx[nr] = have_nginx ? ws.p99_ms / wn.p99_ms : 0;
        bench_table_note(tab, "round %d: standalone / bare: throughput %.2f, p99 %.2f%s", round,
                         r_bare[nr], p_bare[nr], have_nginx ? ";" : "");
        if (have_nginx)
            bench_table_note(tab, "         standalone / nginx: throughput %.2f, p99 %.2f",
                             r_nginx[nr], p_nginx[nr]);
        json_t *o = json_pack("{s:i,s:o,s:o,s:f,s:f}", "round", round, "bare", wrk_json(&wb),
                              "standalone", wrk_json(&ws), "standalone_over_bare_throughput",
                              r_bare[nr], "standalone_over_bare_p99", p_bare[nr]);
        if (have_nginx) {
            json_object_set_new(o, "nginx", wrk_json(&wn));
            json_object_set_new(o, "standalone_over_nginx_throughput", json_real(r_nginx[nr]));
            json_object_set_new(o, "standalone_over_nginx_p99", json_real(p_nginx[nr]));
        }
        json_array_append_new(jr, o);
        nr++;
    }
    if (conn && bench_driver_http.close(conn) != 0 && !rc)
        bench_table_note(tab, "the standalone server did NOT exit cleanly");
    bare_stop(&bare);
    nginx_stop(&nx);
    cp_buf_free(&cap.body);
    if (rc) {
        fprintf(stderr, "bench: standalone: %s\n", cp_err_text(&err));
        bench_table_free(tab);
        json_decref(jr);
        return rc;
    }
    json_t *js = json_pack("{s:o,s:I}", "rounds", jr, "upstream_calls_during_standalone_runs",
                           (json_int_t)upstream_during);
    if (nr) {
        double mb = median3(r_bare, nr), mpb = median3(p_bare, nr);
        bench_table_note(tab,
                         "median of %d rounds: standalone / bare throughput %.2f (goal >= 0.9), "
                         "p99 %.2f",
                         nr, mb, mpb);
        json_object_set_new(js, "median_standalone_over_bare_throughput", json_real(mb));
        json_object_set_new(js, "median_standalone_over_bare_p99", json_real(mpb));
        if (have_nginx) {
            double mn = median3(r_nginx, nr), mpn = median3(p_nginx, nr);
            bench_table_note(tab,
                             "median of %d rounds: standalone / nginx throughput %.2f, p99 %.2f",
                             nr, mn, mpn);
            json_object_set_new(js, "median_standalone_over_nginx_throughput", json_real(mn));
            json_object_set_new(js, "median_standalone_over_nginx_p99", json_real(mpn));
        }
    }
    bench_table_note(tab, "upstream calls during the standalone runs: %llu (every answer a HIT)",
                     (unsigned long long)upstream_during);
    if (!have_nginx) {
        bench_table_note(tab, "nginx skipped: %s", nginx_why);
        json_object_set_new(js, "nginx_note", json_string(nginx_why));
    }
    bench_table_note(tab, "wrk, the servers and the upstream simulator share the machine's cores");
    if (out)
        bench_table_print(tab, out);
    bench_table_free(tab);
    json_object_set_new(scenarios, "standalone", js);
    return 0;
}
