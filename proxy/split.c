/*
 * split.c - a query's time range cut into epoch-aligned pieces, each fetched, cached and
 * coalesced like any query call, then joined into one frame.
 *
 * A dashboard on "last 6 hours" refreshing every 30 s asks for a range that moves a little
 * each time. Unsplit, every step is a new key and the whole range is fetched again. Split
 * into pieces [k*I, (k+1)*I), every piece but the newest is the same request as last time
 * and comes from the cache; only the newest is fetched. A piece that ended longer ago than
 * cache.splitStableAfter no longer changes and is kept for cache.querySplitTtl.
 *
 * Each piece's call carries the query's recipe plus "piece":[from,to]: the transform keeps the
 * rows of that interval and caches them in the frame module's compact form, so joining is
 * decoding, appending and cutting to [from, to), never a second JSON pass. Pieces run at most
 * SPLIT_PARALLEL at a time per query; a failed piece stops the rest from starting (those
 * already fetched stay cached) and fails the query with its range. The join runs on the cpu
 * pool.
 */
#include "proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPLIT_PARALLEL 4
#define SPLIT_MAX_PIECES 1000

struct piece {
    struct proxy__split *s;
    int64_t from_ms, to_ms;
    struct proxy__qreq req;
    char *recipe;
    struct proxy__incoming in;
    struct proxy_call *call; /* set under s->lock */
    int status, result;
    struct cp_buf answer;         /* the piece's frame (compact form) */
    struct proxy_query_result r;  /* the piece's error, when it failed */
};

struct proxy__split {
    struct proxy_ds *ds;
    const struct proxy__qspec *spec;
    struct proxy_query_result *r;
    void (*done)(void *ctx);
    void *ctx;
    struct piece *p;
    size_t n;
    _Atomic size_t next; /* the next piece to start */
    _Atomic size_t left; /* pieces not concluded */
    _Atomic int stop;    /* a piece failed, or the client left: start no more */
    pthread_mutex_t lock; /* a piece starting against proxy__split_cancel */
    _Atomic int cancelled;
    int timeseries;
    encode_fn encode; /* the form the query asked for */
};

static const struct proxy__call_ops piece_ops;

static void finish(struct proxy__split *s);

/* ---- pieces ----------------------------------------------------------------------------------- */

/* Starts piece p; 0, or its error is set. */
static int piece_start(struct piece *p)
{
    struct proxy__split *s = p->s;
    const struct proxy__qspec *sp = s->spec;
    struct proxy_ds *ds = s->ds;
    struct proxy__range rg = sp->rg;
    rg.from_ms = p->from_ms;
    rg.to_ms = p->to_ms;
    if (proxy__query_request(sp->model, &rg, &p->req, &p->r) != 0)
        return CP_EINVAL;
    /* the recipe names the piece: the transform cuts to it and the key includes it */
    json_error_t je;
    json_t *rc = json_loads(sp->recipe, 0, &je);
    json_object_del(rc, "json"); /* pieces are the same for every frame form */
    json_object_del(rc, "blob");
    if (!rc || json_object_set_new(rc, "piece", json_pack("[I,I]", (json_int_t)p->from_ms,
                                                          (json_int_t)p->to_ms)) ||
        !(p->recipe = json_dumps(rc, JSON_COMPACT | JSON_SORT_KEYS))) {
        json_decref(rc);
        proxy__qerror(&p->r, 500, 0, "out of memory");
        return CP_ENOMEM;
    }
    json_decref(rc);
    /* a piece that stopped changing lives long; the others as the query says */
    const struct cfg_cache *cc = &ds->cfg->cache;
    int64_t ttl = sp->ttl_override_ms;
    if (p->to_ms <= cp_now_ms() - cc->split_stable_after_ms)
        ttl = cc->query_split_ttl_ms;
    p->in = (struct proxy__incoming){.kind = CACHE_KIND_QUERY,
                                     .method = sp->method,
                                     .path = p->req.path,
                                     .query = p->req.query.p,
                                     .headers = sp->headers,
                                     .nheaders = sp->nheaders,
                                     .own = sp->own,
                                     .nown = sp->nown,
                                     .body = p->req.body,
                                     .body_len = p->req.body ? strlen(p->req.body) : 0,
                                     .user = sp->user};
    pthread_mutex_lock(&s->lock);
    int rc2 = s->cancelled ? CP_ECANCELED
                           : proxy__call_start(ds, &p->in, &piece_ops, p, ttl, p->recipe,
                                               &p->call);
    pthread_mutex_unlock(&s->lock);
    if (rc2 == CP_ECANCELED)
        proxy__qerror(&p->r, 499, 0, "request cancelled by the client");
    else if (rc2)
        proxy__qerror(&p->r, 500, 0, "%s", cp_strerror(rc2));
    return rc2;
}

/* One piece is over: the last one to end finishes the query. */
static void conclude(struct proxy__split *s)
{
    if (atomic_fetch_sub(&s->left, 1) == 1)
        finish(s);
}

/* Starts pieces until one runs or none is left; pieces that cannot start (stopped, or failed
 * to start) conclude here. Called with a piece of the caller's still counted in left, except
 * from proxy__split_start, which holds a count of its own. */
static void launch(struct proxy__split *s)
{
    size_t i;
    while ((i = atomic_fetch_add(&s->next, 1)) < s->n) {
        struct piece *p = &s->p[i];
        if (!atomic_load(&s->stop) && piece_start(p) == 0)
            return;
        atomic_store(&s->stop, 1);
        conclude(s);
    }
}

static int p_head(struct proxy_call *c, int status, const struct proxy_header *h, size_t n)
{
    (void)h, (void)n;
    struct piece *p = proxy__call_ctx(c);
    p->status = status;
    p->answer.max = (size_t)p->s->ds->cfg->max_response_bytes;
    return 0;
}

static int p_body(struct proxy_call *c, const void *b, size_t n)
{
    struct piece *p = proxy__call_ctx(c);
    return cp_buf_add(&p->answer, b, n) ? CP_ERESPBIG : 0;
}

static void p_error(struct proxy_call *c, const struct cp_err *err)
{
    struct piece *p = proxy__call_ctx(c);
    proxy__query_call_error(&p->r, err);
}

static void p_done(struct proxy_call *c, int rc)
{
    struct piece *p = proxy__call_ctx(c);
    struct proxy__split *s = p->s;
    int transformed = 0;
    p->result = proxy__call_result(c, &transformed);
    if (proxy__query_verdict(s->ds, rc, p->status, &p->answer, s->spec->method, p->req.path,
                             transformed, &p->r) != 0) {
        proxy__query_clean_error(s->ds, &p->r);
        atomic_store(&s->stop, 1);
    }
    launch(s);
    conclude(s);
}

static const struct proxy__call_ops piece_ops = {p_head, p_body, p_error, p_done};

/* ---- the join --------------------------------------------------------------------------------- */

/* meta.custom.cache: hit, miss (or bypass) or partial, with the pieces' counts. */
static int set_meta(struct frame *fr, size_t hit, size_t fetched, int bypass)
{
    const char *label = !fetched ? "hit" : !hit ? (bypass ? "bypass" : "miss") : "partial";
    if (frame_set_cache(fr, label) != 0)
        return CP_ENOMEM;
    json_error_t je;
    json_t *meta = json_loads(fr->meta_json, 0, &je);
    json_t *custom = json_object_get(meta, "custom");
    int rc = CP_ENOMEM;
    if (json_is_object(custom) &&
        !json_object_set_new(custom, "cachePieces",
                             json_pack("{s:I,s:I}", "hit", (json_int_t)hit, "fetched",
                                       (json_int_t)fetched))) {
        char *t = json_dumps(meta, JSON_COMPACT);
        if (t) {
            free(fr->meta_json);
            fr->meta_json = t;
            rc = 0;
        }
    }
    json_decref(meta);
    return rc;
}

static void join(struct proxy__split *s)
{
    struct proxy_query_result *r = s->r;
    struct proxy_ds *ds = s->ds;
    struct frame out = {0}, f;
    size_t hit = 0, fetched = 0;
    int bypass = 1, rc = 0;
    const char *bad = NULL;
    for (size_t i = 0; i < s->n && !rc; i++) {
        struct piece *p = &s->p[i];
        int from_cache = p->result == PROXY_HIT || p->result == PROXY_STALE;
        hit += from_cache;
        fetched += !from_cache;
        bypass &= p->result == PROXY_BYPASS;
        if (frame_blob_decode(p->answer.p, p->answer.len, &f) != 0) {
            proxy__qerror(r, 500, 0, "split: a piece's frame could not be read");
            rc = CP_EINVAL;
            break;
        }
        cp_buf_free(&p->answer);
        if (i == 0 || (!out.nrows && f.nrows)) { /* the first piece with rows shapes the frame */
            frame_dispose(&out);
            out = f;
            continue;
        }
        rc = frame_append(&out, &f, &bad);
        frame_dispose(&f);
        if (rc == CP_EINVAL)
            proxy__qerror(r, 400, 0, "split: the pieces' frames differ in column \"%.80s\" "
                                     "(a number in one, text in another); give the column a "
                                     "type in columns, or set split to \"off\"",
                          bad ? bad : "?");
    }
    atomic_fetch_add(&ds->pieces_hit, hit);
    atomic_fetch_add(&ds->pieces_fetched, fetched);
    atomic_fetch_add(&ds->env.ctr->pieces[0], hit);
    atomic_fetch_add(&ds->env.ctr->pieces[1], fetched);
    struct cp_buf arrow = {0};
    if (!rc) {
        int64_t from = proxy__ms_to_ns(s->spec->rg.from_ms), to = proxy__ms_to_ns(s->spec->rg.to_ms);
        if (frame_keep_time(&out, from, to) != 0 || (s->timeseries && frame_sort_time(&out)) ||
            set_meta(&out, hit, fetched, bypass) != 0 || s->encode(&out, &arrow) != 0 ||
            !(r->frames = malloc(sizeof *r->frames)) ||
            !(r->frame_lens = malloc(sizeof *r->frame_lens)))
            rc = CP_ENOMEM;
    }
    if (rc == CP_ENOMEM)
        proxy__qerror(r, 500, 0, "out of memory");
    if (!rc) {
        r->frames[0] = (unsigned char *)cp_buf_take(&arrow, &r->frame_lens[0]);
        r->nframes = 1;
        r->status = 200;
    }
    cp_buf_free(&arrow);
    frame_dispose(&out);
}

static void join_work(void *arg)
{
    struct proxy__split *s = arg;
    join(s);
    s->done(s->ctx);
}

/* Every piece is over: the query fails with its first failed piece, or the pieces join. */
static void finish(struct proxy__split *s)
{
    struct proxy_query_result *r = s->r;
    int cancelled = atomic_load(&s->cancelled);
    for (size_t i = 0; i < s->n && !r->error; i++) {
        struct piece *p = &s->p[i];
        if (!p->r.error || (cancelled && p->r.status == 499))
            continue;
        char a[40], b[40];
        proxy__iso(p->from_ms, a, sizeof a);
        proxy__iso(p->to_ms, b, sizeof b);
        proxy__qerror(r, p->r.status, p->r.downstream, "piece [%s, %s) of the split range: %s",
                      a, b, p->r.error);
    }
    if (!r->error && cancelled)
        proxy__qerror(r, 499, 0, "request cancelled by the client");
    if (r->error) {
        s->done(s->ctx);
        return;
    }
    if (cp_pool_submit(s->ds->env.cpu, join_work, s) != 0)
        join_work(s);
}

/* ---- start, cancel, free ---------------------------------------------------------------------- */

int proxy__split_start(struct proxy_ds *ds, const struct proxy__qspec *spec, int64_t split_ms,
                       struct proxy_query_result *r, void (*done)(void *ctx), void *ctx,
                       struct proxy__split **out)
{
    int64_t from = spec->rg.from_ms, to = spec->rg.to_ms;
    /* floor to a multiple of the interval (epoch-aligned, also before 1970) */
    int64_t first = from - (((from % split_ms) + split_ms) % split_ms);
    uint64_t span = (uint64_t)to - (uint64_t)first;
    uint64_t n = span / (uint64_t)split_ms + (span % (uint64_t)split_ms != 0);
    if (n > SPLIT_MAX_PIECES) {
        proxy__qerror(r, 400, 0, "split cuts this range into %llu pieces, at most %d: choose a "
                                 "longer split for this query or jsonData.cache.querySplit",
                      (unsigned long long)n, SPLIT_MAX_PIECES);
        return CP_EINVAL;
    }
    struct proxy__split *s = calloc(1, sizeof *s);
    struct piece *p = calloc(n, sizeof *p);
    if (!s || !p) {
        free(s);
        free(p);
        proxy__qerror(r, 500, 0, "out of memory");
        return CP_ENOMEM;
    }
    json_t *fmt = json_object_get(spec->model, "format");
    s->timeseries = json_is_string(fmt) && !strcmp(json_string_value(fmt), "timeseries");
    json_error_t je;
    json_t *recipe = json_loads(spec->recipe, 0, &je);
    s->encode = proxy__recipe_encoder(recipe);
    json_decref(recipe);
    proxy__ds_ref(ds);
    s->ds = ds;
    s->spec = spec;
    s->r = r;
    s->done = done;
    s->ctx = ctx;
    s->p = p;
    s->n = (size_t)n;
    pthread_mutex_init(&s->lock, NULL);
    for (size_t i = 0; i < s->n; i++) {
        p[i].s = s;
        p[i].from_ms = first + (int64_t)i * split_ms;
        p[i].to_ms = p[i].from_ms + split_ms < to ? p[i].from_ms + split_ms : to;
    }
    atomic_init(&s->next, 0);
    atomic_init(&s->left, s->n + 1); /* every piece, and this function's own count */
    atomic_init(&s->stop, 0);
    *out = s;
    for (int k = 0; k < SPLIT_PARALLEL; k++)
        launch(s);
    conclude(s);
    return 0;
}

void proxy__split_cancel(struct proxy__split *s)
{
    if (!s)
        return;
    /* stop first: a piece ending from here on starts nothing and takes no lock */
    atomic_store(&s->stop, 1);
    atomic_store(&s->cancelled, 1);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        proxy_call_cancel(s->p[i].call); /* harmless on a piece that is over */
    pthread_mutex_unlock(&s->lock);
}

void proxy__split_free(struct proxy__split *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        struct piece *p = &s->p[i];
        proxy_call_release(p->call);
        proxy__qreq_free(&p->req);
        free(p->recipe);
        cp_buf_free(&p->answer);
        proxy_query_result_dispose(&p->r);
    }
    pthread_mutex_destroy(&s->lock);
    proxy_ds_free(s->ds);
    free(s->p);
    free(s);
}
