/*
 * instance.c - the instance manager: one live instance per data source uid, rebuilt when its
 * settings change (lastUpdatedMS, or any field: a hash over all of them), the old one freed
 * only when its last in-flight call ends (reference counted).
 */
#include "plugin_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct plugin_instance *head;
static size_t count;

/* A 64-bit hash over words (settings change detection, not security): each field ends with
 * its length, so that adjacent fields cannot trade bytes. */
static uint64_t mix(uint64_t h, uint64_t v)
{
    h = (h ^ v) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = mix(h, w);
    }
    uint64_t tail = 0;
    for (size_t k = 0; i + k < n; k++)
        tail |= (uint64_t)b[i + k] << (8 * k);
    return mix(mix(h, tail), (uint64_t)n);
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) : 0); }

/* Hash over every field; the secure map is summed entry by entry, since Grafana's map order
 * is not stable between calls. */
static uint64_t settings_hash(const Pluginv2__DataSourceInstanceSettings *s)
{
    uint64_t h = 1469598103934665603ULL;
    h = fnv(h, &s->id, sizeof s->id);
    h = fnv_str(h, s->name);
    h = fnv_str(h, s->url);
    h = fnv_str(h, s->uid);
    h = fnv(h, &s->basicauthenabled, sizeof s->basicauthenabled);
    h = fnv_str(h, s->basicauthuser);
    h = fnv(h, s->jsondata.data, s->jsondata.len);
    uint64_t sum = 0;
    for (size_t i = 0; i < s->n_decryptedsecurejsondata; i++) {
        const Pluginv2__DataSourceInstanceSettings__DecryptedSecureJsonDataEntry *e =
            s->decryptedsecurejsondata[i];
        sum += fnv_str(fnv_str(1469598103934665603ULL, e->key), e->value);
    }
    return fnv(h, &sum, sizeof sum);
}

static void secret_add(void *ctx, const char *v)
{
    (void)ctx;
    plugin_log_secret_add(v);
}

static void secret_remove(void *ctx, const char *v)
{
    (void)ctx;
    plugin_log_secret_remove(v);
}

static void instance_free(struct plugin_instance *in)
{
    cfg_ds_each_secret(proxy_ds_cfg(in->px), secret_remove, NULL);
    proxy_ds_free(in->px);
    free(in->uid);
    free(in);
}

void plugin_instance_put(struct plugin_instance *in)
{
    if (in && atomic_fetch_sub(&in->refs, 1) == 1)
        instance_free(in);
}

static struct plugin_instance *find(const char *uid)
{
    for (struct plugin_instance *in = head; in; in = in->next)
        if (!strcmp(in->uid, uid))
            return in;
    return NULL;
}

/* What tells instances apart: the org (uids are unique only within one) and the uid, or the
 * numeric id for Grafana versions without uids. */
static const char *uid_of(const Pluginv2__PluginContext *pc, char *buf, size_t size)
{
    const Pluginv2__DataSourceInstanceSettings *s = pc->datasourceinstancesettings;
    if (s->uid && *s->uid) { /* "<org>:<uid>", as snprintf would write it, without it */
        char digits[24];
        size_t nd = 0, at = 0;
        unsigned long long v = pc->orgid < 0 ? 0ULL - (unsigned long long)pc->orgid
                                             : (unsigned long long)pc->orgid;
        do
            digits[nd++] = (char)('0' + v % 10);
        while ((v /= 10));
        if (pc->orgid < 0)
            buf[at++] = '-';
        while (nd && at < size - 1)
            buf[at++] = digits[--nd];
        if (at < size - 1)
            buf[at++] = ':';
        size_t ul = strlen(s->uid);
        if (ul > size - 1 - at)
            ul = size - 1 - at;
        memcpy(buf + at, s->uid, ul);
        buf[at + ul] = 0;
    } else
        snprintf(buf, size, "%lld:#%lld", (long long)pc->orgid, (long long)s->id);
    return buf;
}

/* The instance of uid when it was built from exactly these settings, with a reference taken
 * for the caller; else NULL. Caller holds mu. */
static struct plugin_instance *current(const char *uid,
                                       const Pluginv2__DataSourceInstanceSettings *s, uint64_t h)
{
    struct plugin_instance *in = find(uid);
    if (!in || in->last_updated_ms != s->lastupdatedms || in->settings_hash != h)
        return NULL;
    atomic_fetch_add(&in->refs, 1);
    return in;
}

static void unlink_locked(struct plugin_instance *in)
{
    for (struct plugin_instance **pp = &head; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            count--;
            return;
        }
}

int plugin_instance_replaced(struct plugin_instance *in)
{
    pthread_mutex_lock(&mu);
    int replaced = find(in->uid) != in;
    pthread_mutex_unlock(&mu);
    return replaced;
}

struct plugin_instance *plugin_instance_peek(const Pluginv2__PluginContext *pc)
{
    const Pluginv2__DataSourceInstanceSettings *s = pc ? pc->datasourceinstancesettings : NULL;
    if (!s)
        return NULL;
    char idbuf[64];
    const char *uid = uid_of(pc, idbuf, sizeof idbuf);
    uint64_t h = settings_hash(s);
    pthread_mutex_lock(&mu);
    struct plugin_instance *in = current(uid, s, h);
    pthread_mutex_unlock(&mu);
    return in;
}

int plugin_instance_get(const Pluginv2__PluginContext *pc, int (*cancelled)(void *),
                        void *cancel_ctx, struct plugin_instance **out, struct cp_err *err)
{
    const Pluginv2__DataSourceInstanceSettings *s = pc ? pc->datasourceinstancesettings : NULL;
    *out = NULL;
    if (!s)
        return cp_err_set(err, CP_ECONFIG, "this call carries no data source settings");
    if ((*out = plugin_instance_peek(pc)))
        return 0;
    char idbuf[64];
    const char *uid = uid_of(pc, idbuf, sizeof idbuf);
    uint64_t h = settings_hash(s);

    /* build outside the lock: other data sources keep being served meanwhile */
    const char **keys = calloc(s->n_decryptedsecurejsondata + 1, sizeof *keys);
    const char **vals = calloc(s->n_decryptedsecurejsondata + 1, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < s->n_decryptedsecurejsondata; i++) {
        keys[i] = s->decryptedsecurejsondata[i]->key;
        vals[i] = s->decryptedsecurejsondata[i]->value;
    }
    char plain_uid[32];
    snprintf(plain_uid, sizeof plain_uid, "%lld", (long long)s->id);
    struct cfg_ds_input ci = {.id = s->id,
                              .org_id = pc->orgid,
                              .uid = s->uid && *s->uid ? s->uid : plain_uid,
                              .name = s->name,
                              .url = s->url,
                              .basic_auth_enabled = s->basicauthenabled,
                              .basic_auth_user = s->basicauthuser,
                              .json_data = (const char *)s->jsondata.data,
                              .json_len = s->jsondata.len,
                              .secure_keys = keys,
                              .secure_values = vals,
                              .nsecure = s->n_decryptedsecurejsondata,
                              .last_updated_ms = s->lastupdatedms,
                              .cancelled = cancelled,
                              .cancel_ctx = cancel_ctx};
    struct cfg_ds *cfg = NULL;
    int rc = cfg_ds_parse(&ci, &cfg, err);
    free(keys);
    free(vals);
    if (rc)
        return rc;
    struct plugin_instance *fresh = calloc(1, sizeof *fresh);
    if (!fresh || !(fresh->uid = strdup(uid))) {
        free(fresh);
        cfg_ds_free(cfg);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    if ((rc = proxy_ds_new(cfg, &plugin_g.env, &fresh->px, err)) != 0) {
        free(fresh->uid); /* proxy_ds_new freed cfg */
        free(fresh);
        return rc;
    }
    cfg_ds_each_secret(proxy_ds_cfg(fresh->px), secret_add, NULL);
    fresh->last_updated_ms = s->lastupdatedms;
    fresh->settings_hash = h;
    atomic_init(&fresh->refs, 2); /* the table's and the caller's */

    pthread_mutex_lock(&mu);
    struct plugin_instance *cur = current(uid, s, h);
    if (cur) {
        /* another call built the same instance first: use that one */
        pthread_mutex_unlock(&mu);
        atomic_store(&fresh->refs, 1);
        plugin_instance_put(fresh);
        *out = cur;
        return 0;
    }
    cur = find(uid);
    if (cur)
        unlink_locked(cur);
    fresh->next = head;
    head = fresh;
    count++;
    pthread_mutex_unlock(&mu);
    if (cur) {
        struct cp_kv kv[] = {CP_KV_S("dsUid", uid)};
        plugin_log(CP_LOG_INFO, "data source settings changed: instance rebuilt", kv, 1);
        plugin_instance_put(cur); /* freed when its last call ends */
    }
    *out = fresh;
    return 0;
}

int plugin_instance_adopt(struct proxy_ds *px, struct plugin_instance **out, struct cp_err *err)
{
    const struct cfg_ds *cfg = proxy_ds_cfg(px);
    *out = NULL;
    struct plugin_instance *in = calloc(1, sizeof *in);
    if (!in || !(in->uid = strdup(cfg->key_id))) {
        free(in);
        proxy_ds_free(px);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    in->px = px;
    in->last_updated_ms = cfg->last_updated_ms;
    cfg_ds_each_secret(cfg, secret_add, NULL);
    atomic_init(&in->refs, 2); /* the table's and the caller's */
    pthread_mutex_lock(&mu);
    if (find(in->uid)) {
        pthread_mutex_unlock(&mu);
        atomic_store(&in->refs, 1);
        plugin_instance_put(in);
        return cp_err_set(err, CP_ECONFIG, "data source %s is defined twice", cfg->key_id);
    }
    in->next = head;
    head = in;
    count++;
    pthread_mutex_unlock(&mu);
    *out = in;
    return 0;
}

void plugin_instance_each(void (*fn)(void *ctx, struct plugin_instance *in), void *ctx)
{
    /* take references under the lock, call fn outside it: fn may talk to Redis */
    pthread_mutex_lock(&mu);
    struct plugin_instance **all = calloc(count ? count : 1, sizeof *all);
    size_t n = 0;
    for (struct plugin_instance *in = head; in && all; in = in->next) {
        atomic_fetch_add(&in->refs, 1);
        all[n++] = in;
    }
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < n; i++) {
        fn(ctx, all[i]);
        plugin_instance_put(all[i]);
    }
    free(all);
}

size_t plugin_instance_count(void)
{
    pthread_mutex_lock(&mu);
    size_t n = count;
    pthread_mutex_unlock(&mu);
    return n;
}

void plugin_instance_clear(void)
{
    pthread_mutex_lock(&mu);
    struct plugin_instance *in = head;
    head = NULL;
    count = 0;
    pthread_mutex_unlock(&mu);
    while (in) {
        struct plugin_instance *next = in->next;
        plugin_instance_put(in);
        in = next;
    }
}

/* ---- building off the completion-queue thread --------------------------------------------- */

struct build_job {
    const Pluginv2__PluginContext *pc;
    int (*cancelled)(void *);
    void *cancel_ctx;
    void (*ready)(void *ctx, struct plugin_instance *in, const struct cp_err *err);
    void *ctx;
};

static void build_run(void *arg)
{
    struct build_job *j = arg;
    struct plugin_instance *in = NULL;
    struct cp_err err = {0};
    plugin_instance_get(j->pc, j->cancelled, j->cancel_ctx, &in, &err);
    j->ready(j->ctx, in, &err);
    free(j);
}

int plugin_instance_with(const Pluginv2__PluginContext *pc, int (*cancelled)(void *),
                         void *cancel_ctx,
                         void (*ready)(void *ctx, struct plugin_instance *in,
                                       const struct cp_err *err),
                         void *ctx)
{
    struct plugin_instance *in = plugin_instance_peek(pc);
    struct cp_err err = {0};
    if (in || !pc || !pc->datasourceinstancesettings) {
        if (!in)
            cp_err_set(&err, CP_ECONFIG, "this call carries no data source settings");
        ready(ctx, in, &err);
        return 0;
    }
    struct build_job *j = malloc(sizeof *j);
    if (!j)
        return CP_ENOMEM;
    *j = (struct build_job){pc, cancelled, cancel_ctx, ready, ctx};
    if (cp_pool_submit(plugin_g.cpu, build_run, j) != 0) {
        free(j);
        return CP_ENOMEM;
    }
    return 0;
}
