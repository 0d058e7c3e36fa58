/*
 * redis_client.c - the client of one Redis deployment, shared by every store of the process
 * that names it (same URL, credentials and TLS settings): its nodes, and the routing of a
 * command batch to the node that serves a key's slot.
 *
 * - A node has a few idle connections and a circuit breaker: a connection-level failure
 *   opens it, so for the next second every call to that node fails at once (the store answers
 *   from the upstream: fail open); then one call probes, and the client reconnects by itself.
 *   An outage is logged once when it starts and once when it ends.
 * - Single mode: one node. Sentinel mode: one node, the master, whose address the sentinels
 *   give (SENTINEL get-master-addr-by-name, then ROLE on that address to confirm it); a lost
 *   connection or a READONLY answer makes the next connection ask them again, so the client
 *   follows a failover by itself. Cluster mode: a node per address and a map of the 16384
 *   slots from CLUSTER SLOTS; MOVED updates the map (and refreshes it soon after), ASK sends
 *   the command once more to the importing node after ASKING. A failed node makes only its
 *   slots fail open.
 *
 * Locking: one mutex per client guards its nodes, breakers, idle lists and slot map; no I/O
 * happens under it. A discovery (sentinels, CLUSTER SLOTS) runs in one thread at a time; the
 * others go on with what is known, or fail open at once.
 */
#include "redis_int.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_MS 100
#define COMMAND_TIMEOUT_MS 300
#define BREAKER_OPEN_MS 1000
#define DISCOVERY_BUDGET_MS 1000 /* asking sentinels or cluster nodes, all of them together */
#define REFRESH_MIN_MS 100       /* between two slot map refreshes */
#define MAX_IDLE 16
#define MAX_NODES 512
#define MAX_ROUNDS 5 /* redirections followed for one batch */
#define NODE_NONE 0xffff
#define MAX_NODE_COUNTERS 64
#define MAX_CANDIDATES 32 /* nodes asked for the slot map in one refresh */

struct cache__rstats cache__rstats;

/* ---- per-node error counters (process-wide, for metrics) ------------------------------------- */

static pthread_mutex_t counters_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[288];
    _Atomic uint64_t n;
} counters[MAX_NODE_COUNTERS + 1]; /* the last one: every other node */
static size_t ncounters;

/* The counter of a node's name; counters are never removed, so a scrape sees them grow. */
static _Atomic uint64_t *counter_of(const char *name)
{
    pthread_mutex_lock(&counters_mu);
    size_t i;
    for (i = 0; i < ncounters; i++)
        if (!strcmp(counters[i].name, name))
            break;
    if (i == ncounters) {
        if (ncounters < MAX_NODE_COUNTERS) {
            snprintf(counters[i].name, sizeof counters[i].name, "%s", name);
            ncounters++;
        } else {
            i = MAX_NODE_COUNTERS;
            snprintf(counters[i].name, sizeof counters[i].name, "other");
        }
    }
    pthread_mutex_unlock(&counters_mu);
    return &counters[i].n;
}

void cache_redis_node_errors(void (*fn)(void *ctx, const char *node, uint64_t errors), void *ctx)
{
    pthread_mutex_lock(&counters_mu);
    size_t n = ncounters;
    pthread_mutex_unlock(&counters_mu);
    for (size_t i = 0; i < n; i++)
        fn(ctx, counters[i].name, atomic_load(&counters[i].n));
    if (atomic_load(&counters[MAX_NODE_COUNTERS].n))
        fn(ctx, "other", atomic_load(&counters[MAX_NODE_COUNTERS].n));
}

void cache_redis_stats(struct cache_redis_stats *out)
{
    out->moved = atomic_load(&cache__rstats.moved);
    out->ask = atomic_load(&cache__rstats.ask);
    out->failovers = atomic_load(&cache__rstats.failovers);
    out->unsealable = atomic_load(&cache__rstats.unsealable);
}

/* ---- structures ------------------------------------------------------------------------------ */

struct rnode {
    char *host; /* NULL in Sentinel mode until the sentinels named the master */
    int port;
    char *unix_path;
    char name[288]; /* host:port or the socket path */
    struct cache__rconn *idle[MAX_IDLE];
    size_t nidle;
    unsigned gen;          /* connections of an older generation are closed when returned */
    int64_t open_until_ms; /* breaker: fail at once until then */
    int probing;           /* one call is trying the node after the breaker closed */
    int down;              /* an outage is under way (logged when it starts and ends) */
    int stale;             /* Sentinel mode: ask the sentinels before the next connection */
    char last_error[200];
    _Atomic uint64_t *errors;
};

struct cache__rclient {
    struct cache__rclient *next;
    unsigned refs;
    unsigned char id[32]; /* digest of the URL, credentials and TLS settings */
    struct cache__redis_url url;
    struct cfg_secret password, sentinel_password;
    SSL_CTX *tls;
    int verify;
    const struct cp_logger *log;
    pthread_mutex_t mu;
    struct rnode **nodes; /* single and Sentinel mode: nodes[0]; cluster: every node seen */
    size_t nnodes;
    /* cluster */
    uint16_t *slots;       /* node index serving each slot, NODE_NONE when unknown */
    int64_t refresh_at_ms; /* refresh the map at or after this time; 0: no need */
    int64_t refreshed_ms;
    int refreshing;
    int map_down; /* no node answered CLUSTER SLOTS: logged once */
    char map_error[200];
    /* sentinel */
    int resolving;
    size_t sentinel_first; /* the sentinel that answered last is asked first */
};

static pthread_mutex_t clients_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cache__rclient *clients;

static int64_t mono_ms(void)
{
    return cp_mono_ns() / 1000000;
}

static void node_name(struct rnode *n)
{
    if (n->unix_path)
        snprintf(n->name, sizeof n->name, "%s", n->unix_path);
    else if (n->host)
        snprintf(n->name, sizeof n->name, strchr(n->host, ':') ? "[%s]:%d" : "%s:%d", n->host,
                 n->port);
    else
        snprintf(n->name, sizeof n->name, "(master not found yet)");
}

static struct rnode *node_new(const char *host, int port, const char *unix_path)
{
    struct rnode *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->port = port;
    if ((host && !(n->host = strdup(host))) || (unix_path && !(n->unix_path = strdup(unix_path)))) {
        free(n->host);
        free(n);
        return NULL;
    }
    node_name(n);
    n->errors = n->host || n->unix_path ? counter_of(n->name) : NULL;
    return n;
}

static void drop_idle(struct rnode *n)
{
    for (size_t i = 0; i < n->nidle; i++)
        cache__rconn_close(n->idle[i]);
    n->nidle = 0;
}

static void node_free(struct rnode *n)
{
    if (!n)
        return;
    drop_idle(n);
    free(n->host);
    free(n->unix_path);
    free(n);
}

static void node_error(struct rnode *n)
{
    if (n->errors)
        atomic_fetch_add(n->errors, 1);
}

/* The index of the cluster node at host:port, added when new; NODE_NONE when the table is
 * full or memory is short. Caller holds c->mu. */
static unsigned node_index(struct cache__rclient *c, const char *host, int port)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->port == port && c->nodes[i]->host && !strcmp(c->nodes[i]->host, host))
            return (unsigned)i;
    if (c->nnodes >= MAX_NODES)
        return NODE_NONE;
    struct rnode *n = node_new(host, port, NULL);
    if (!n)
        return NODE_NONE;
    c->nodes[c->nnodes] = n;
    return (unsigned)c->nnodes++;
}

/* ---- breakers ---------------------------------------------------------------------------- */

/* A connection-level failure of n: the breaker opens, idle connections go (they probably died
 * with it), and the first failure of an outage is logged. Caller holds c->mu. */
static void went_down(struct cache__rclient *c, struct rnode *n, const char *why)
{
    int64_t now = mono_ms();
    n->open_until_ms = now + BREAKER_OPEN_MS;
    snprintf(n->last_error, sizeof n->last_error, "%s", why);
    drop_idle(n);
    n->gen++;
    if (c->url.mode == CACHE__REDIS_SENTINEL)
        n->stale = 1; /* a failover may be under way: ask the sentinels again */
    if (c->url.mode == CACHE__REDIS_CLUSTER) {
        /* its slots may get another master once the cluster has noticed: look again then */
        int64_t at = now + BREAKER_OPEN_MS;
        if (!c->refresh_at_ms || c->refresh_at_ms > at)
            c->refresh_at_ms = at;
    }
    if (!n->down) {
        n->down = 1;
        cp_log(c->log, CP_LOG_WARN,
               "redis cache unavailable: answering from the upstream until it is back",
               (struct cp_kv[]){CP_KV_S("error", why), CP_KV_S("node", n->name),
                                CP_KV_S("mode", cache__redis_mode_name(&c->url))},
               3);
    }
}

/* Opens a connection to host:port (or the socket) and logs in: AUTH, SELECT. */
static struct cache__rconn *dial(struct cache__rclient *c, const char *host, int port,
                                 const char *unix_path, int sentinel, struct cp_err *err)
{
    struct cache__rdial d = {
        host, port, unix_path, c->tls, c->verify, CONNECT_TIMEOUT_MS, COMMAND_TIMEOUT_MS};
    struct cache__rconn *conn = NULL;
    struct cp_err e = {0};
    if (cache__rconn_open(&d, &conn, &e) != 0) {
        cp_err_set(err, e.code, "redis %s", e.msg);
        return NULL;
    }
    redisReply *r = NULL;
    const struct cfg_secret *pw = sentinel ? &c->sentinel_password : &c->password;
    if (cfg_secret_isset(pw)) {
        r = !sentinel && c->url.user
                ? cache__rconn_command(conn, &e, "AUTH %s %b", c->url.user, pw->v, pw->len)
                : cache__rconn_command(conn, &e, "AUTH %b", pw->v, pw->len);
        if (!r) {
            cp_err_set(err, CP_EBACKEND, "redis %s", e.msg);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            cp_err_set(err, CP_EBACKEND,
                       sentinel ? "redis sentinel authentication failed: check "
                                  "redisSentinelPassword"
                                : "redis authentication failed: check redisPassword and the "
                                  "user in redisUrl");
            goto fail;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (!sentinel && c->url.db) {
        if (!(r = cache__rconn_command(conn, &e, "SELECT %d", c->url.db))) {
            cp_err_set(err, CP_EBACKEND, "redis %s", e.msg);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            cp_err_set(err, CP_EBACKEND, "redis SELECT %d failed: %.100s", c->url.db, r->str);
            goto fail;
        }
        freeReplyObject(r);
    }
    return conn;
fail:
    if (r)
        freeReplyObject(r);
    cache__rconn_close(conn);
    return NULL;
}

/* ---- Sentinel ------------------------------------------------------------------------------- */

/* Asks the sentinels (the last one that answered first) for the master's address and
 * confirms it with ROLE. Returns a logged-in connection to it and its address. */
static struct cache__rconn *sentinel_master(struct cache__rclient *c, char *host, size_t hsize,
                                            int *port, struct cp_err *err)
{
    int64_t end = mono_ms() + DISCOVERY_BUDGET_MS;
    pthread_mutex_lock(&c->mu);
    size_t first = c->sentinel_first;
    pthread_mutex_unlock(&c->mu);
    cp_err_set(err, CP_EBACKEND, "redis sentinel: no sentinel answered");
    for (size_t k = 0; k < c->url.naddrs && mono_ms() < end; k++) {
        size_t i = (first + k) % c->url.naddrs;
        const struct cache__redis_addr *s = &c->url.addrs[i];
        struct cp_err e = {0};
        char sname[288];
        snprintf(sname, sizeof sname, "%s:%d", s->host, s->port);
        struct cache__rconn *sc = dial(c, s->host, s->port, NULL, 1, &e);
        if (!sc) {
            atomic_fetch_add(counter_of(sname), 1);
            cp_err_set(err, CP_EBACKEND, "%s", e.msg);
            continue;
        }
        redisReply *r =
            cache__rconn_command(sc, &e, "SENTINEL get-master-addr-by-name %s", c->url.master);
        cache__rconn_close(sc);
        if (!r) {
            cp_err_set(err, CP_EBACKEND, "%s", e.msg);
            continue;
        }
        int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[0]->type == REDIS_REPLY_STRING &&
                 r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len < hsize;
        if (ok) {
            snprintf(host, hsize, "%s", r->element[0]->str);
            *port = atoi(r->element[1]->str);
        } else if (r->type == REDIS_REPLY_ERROR) {
            cp_err_set(err, CP_EBACKEND, "redis sentinel %s:%d: %.100s", s->host, s->port, r->str);
        } else {
            cp_err_set(err, CP_EBACKEND, "redis sentinel %s:%d does not know a master named %s",
                       s->host, s->port, c->url.master);
        }
        freeReplyObject(r);
        if (!ok || *port <= 0 || *port > 65535)
            continue;
        /* confirm: a sentinel may not have seen the failover yet */
        struct cache__rconn *mc = dial(c, host, *port, NULL, 0, &e);
        if (!mc) {
            cp_err_set(err, CP_EBACKEND, "%s (named master by sentinel %s:%d)", e.msg, s->host,
                       s->port);
            continue;
        }
        if (!(r = cache__rconn_command(mc, &e, "ROLE"))) {
            cp_err_set(err, CP_EBACKEND, "redis %s", e.msg);
            cache__rconn_close(mc);
            continue;
        }
        int master = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                     r->element[0]->type == REDIS_REPLY_STRING &&
                     !strcmp(r->element[0]->str, "master");
        freeReplyObject(r);
        if (!master) {
            cp_err_set(err, CP_EBACKEND,
                       "redis sentinel: %s:%d, named master %s by sentinel %s:%d, is not a "
                       "master (a failover is under way)",
                       host, *port, c->url.master, s->host, s->port);
            cache__rconn_close(mc);
            continue;
        }
        pthread_mutex_lock(&c->mu);
        c->sentinel_first = i;
        pthread_mutex_unlock(&c->mu);
        return mc;
    }
    return NULL;
}

/* ---- connections ---------------------------------------------------------------------------- */

/* A connection to n: an idle one, or a new one; fails at once while the breaker is open (or
 * while another thread asks the sentinels). */
static struct cache__rconn *conn_get(struct cache__rclient *c, struct rnode *n, struct cp_err *err)
{
    pthread_mutex_lock(&c->mu);
    if (n->nidle && !n->stale) {
        struct cache__rconn *conn = n->idle[--n->nidle];
        pthread_mutex_unlock(&c->mu);
        return conn;
    }
    int64_t now = mono_ms();
    int resolve = c->url.mode == CACHE__REDIS_SENTINEL && n->stale;
    if (now < n->open_until_ms || n->probing || (resolve && c->resolving)) {
        cp_err_set(err, CP_EBACKEND, "redis unavailable: %s (retrying within %d ms)",
                   n->last_error[0] ? n->last_error
                   : resolve        ? "asking the sentinels for the master"
                                    : "a connection failed",
                   BREAKER_OPEN_MS);
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    int probe = n->open_until_ms != 0;
    if (probe)
        n->probing = 1; /* only this caller waits on a node that just failed */
    if (resolve)
        c->resolving = 1;
    char host[256] = "";
    if (n->host)
        snprintf(host, sizeof host, "%s", n->host);
    int port = n->port;
    unsigned gen = n->gen;
    pthread_mutex_unlock(&c->mu);

    struct cache__rconn *conn = NULL;
    if (resolve) {
        conn = sentinel_master(c, host, sizeof host, &port, err);
        pthread_mutex_lock(&c->mu);
        c->resolving = 0;
        if (conn) {
            int moved = !n->host || strcmp(n->host, host) || n->port != port;
            if (moved) {
                char *h = strdup(host);
                if (h) {
                    int failover = n->host != NULL;
                    char before[288];
                    snprintf(before, sizeof before, "%s", n->name);
                    free(n->host);
                    n->host = h;
                    n->port = port;
                    node_name(n);
                    n->errors = counter_of(n->name);
                    drop_idle(n);
                    n->gen++;
                    if (failover) {
                        atomic_fetch_add(&cache__rstats.failovers, 1);
                        cp_log(c->log, CP_LOG_INFO, "redis sentinel: the master has moved",
                               (struct cp_kv[]){CP_KV_S("master", c->url.master),
                                                CP_KV_S("from", before), CP_KV_S("to", n->name)},
                               3);
                    }
                } else {
                    cache__rconn_close(conn);
                    conn = NULL;
                    cp_err_set(err, CP_ENOMEM, "out of memory");
                }
            }
            n->stale = conn ? 0 : n->stale;
            gen = n->gen;
        }
        pthread_mutex_unlock(&c->mu);
    } else {
        conn = dial(c, host, port, n->unix_path, 0, err);
    }
    pthread_mutex_lock(&c->mu);
    if (probe)
        n->probing = 0;
    if (conn) {
        n->open_until_ms = 0; /* back only once a command answers (conn_put) */
        *cache__rconn_gen(conn) = gen;
    } else {
        node_error(n);
        went_down(c, n, cp_err_text(err));
    }
    pthread_mutex_unlock(&c->mu);
    return conn;
}

/* Returns a connection after a round trip: a broken one is closed and opens the breaker; a
 * working one ends an outage. */
static void conn_put(struct cache__rclient *c, struct rnode *n, struct cache__rconn *conn,
                     const char *broken)
{
    pthread_mutex_lock(&c->mu);
    if (broken) {
        node_error(n);
        went_down(c, n, broken);
    } else {
        if (n->down) {
            n->down = 0;
            cp_log(c->log, CP_LOG_INFO, "redis cache available again",
                   (struct cp_kv[]){CP_KV_S("node", n->name)}, 1);
        }
        if (*cache__rconn_gen(conn) == n->gen && !n->stale && n->nidle < MAX_IDLE) {
            n->idle[n->nidle++] = conn;
            conn = NULL;
        }
    }
    pthread_mutex_unlock(&c->mu);
    cache__rconn_close(conn);
}

/* ---- Cluster -------------------------------------------------------------------------------- */

/* Asks the known nodes (those that work first, then the seeds) for the slot map and installs
 * it. A slot whose master was down and now is another node counts as a failover seen. */
static void cluster_refresh(struct cache__rclient *c)
{
    struct cache__redis_addr cand[MAX_CANDIDATES];
    size_t ncand = 0, max = sizeof cand / sizeof cand[0];
    pthread_mutex_lock(&c->mu);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->nnodes && ncand < max; i++)
            if ((c->nodes[i]->open_until_ms == 0) == (pass == 0) &&
                (cand[ncand].host = strdup(c->nodes[i]->host)))
                cand[ncand++].port = c->nodes[i]->port;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < c->url.naddrs && ncand < max; i++)
        if ((cand[ncand].host = strdup(c->url.addrs[i].host)))
            cand[ncand++].port = c->url.addrs[i].port;

    int64_t end = mono_ms() + DISCOVERY_BUDGET_MS;
    struct cache__slot_range *ranges = NULL;
    size_t nranges = 0;
    int ok = 0;
    struct cp_err err = {0};
    cp_err_set(&err, CP_EBACKEND, "redis cluster: no node to ask for the slots");
    for (size_t i = 0; i < ncand && !ok && mono_ms() < end; i++) {
        struct cache__rconn *conn = dial(c, cand[i].host, cand[i].port, NULL, 0, &err);
        if (!conn)
            continue;
        struct cp_err e = {0};
        redisReply *r = cache__rconn_command(conn, &e, "CLUSTER SLOTS");
        cache__rconn_close(conn);
        if (!r) {
            cp_err_set(&err, CP_EBACKEND, "redis %s", e.msg);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR)
            cp_err_set(&err, CP_EBACKEND, "redis cluster %s:%d: CLUSTER SLOTS: %.100s",
                       cand[i].host, cand[i].port, r->str);
        else if (cache__cluster_slots_parse(r, cand[i].host, &ranges, &nranges) != 0)
            cp_err_set(&err, CP_EBACKEND,
                       "redis cluster %s:%d: CLUSTER SLOTS answered something unexpected",
                       cand[i].host, cand[i].port);
        else
            ok = 1;
        freeReplyObject(r);
    }
    for (size_t i = 0; i < ncand; i++)
        free(cand[i].host);

    pthread_mutex_lock(&c->mu);
    int64_t now = mono_ms();
    int failover = 0;
    if (ok) {
        uint16_t *fresh = malloc(CACHE__SLOTS * sizeof *fresh);
        if (fresh) {
            memset(fresh, 0xff, CACHE__SLOTS * sizeof *fresh);
            for (size_t i = 0; i < nranges; i++) {
                unsigned idx = node_index(c, ranges[i].host, ranges[i].port);
                for (int s = ranges[i].start; s <= ranges[i].end; s++)
                    fresh[s] = (uint16_t)idx;
            }
            for (int s = 0; s < CACHE__SLOTS; s++)
                if (c->slots[s] != NODE_NONE && fresh[s] != NODE_NONE && fresh[s] != c->slots[s] &&
                    c->nodes[c->slots[s]]->down)
                    failover = 1;
            memcpy(c->slots, fresh, CACHE__SLOTS * sizeof *fresh);
            free(fresh);
        } else {
            ok = 0;
            cp_err_set(&err, CP_ENOMEM, "out of memory");
        }
    }
    if (ok) {
        c->refresh_at_ms = 0;
        c->refreshed_ms = now;
        c->map_error[0] = 0;
        if (c->map_down) {
            c->map_down = 0;
            cp_log(c->log, CP_LOG_INFO, "redis cluster slots known again", NULL, 0);
        }
    } else {
        c->refresh_at_ms = now + BREAKER_OPEN_MS;
        snprintf(c->map_error, sizeof c->map_error, "%s", cp_err_text(&err));
        if (!c->map_down) {
            c->map_down = 1;
            cp_log(c->log, CP_LOG_WARN,
                   "redis cache unavailable: answering from the upstream until it is back",
                   (struct cp_kv[]){CP_KV_S("error", c->map_error),
                                    CP_KV_S("mode", cache__redis_mode_name(&c->url))},
                   2);
        }
    }
    c->refreshing = 0;
    pthread_mutex_unlock(&c->mu);
    free(ranges);
    if (failover) {
        atomic_fetch_add(&cache__rstats.failovers, 1);
        cp_log(c->log, CP_LOG_INFO, "redis cluster: slots of a failed node have a new master", NULL,
               0);
    }
}

/* Asks for a map refresh soon (after MOVED). Caller holds c->mu. */
static void refresh_soon(struct cache__rclient *c)
{
    int64_t at = c->refreshed_ms + REFRESH_MIN_MS;
    int64_t now = mono_ms();
    if (at < now)
        at = now;
    if (!c->refresh_at_ms || c->refresh_at_ms > at)
        c->refresh_at_ms = at;
}

/* The node serving slot (refreshing the cluster's map first when it is due). */
static struct rnode *route(struct cache__rclient *c, int slot, struct cp_err *err)
{
    if (c->url.mode != CACHE__REDIS_CLUSTER)
        return c->nodes[0];
    pthread_mutex_lock(&c->mu);
    if (c->refresh_at_ms && mono_ms() >= c->refresh_at_ms && !c->refreshing) {
        c->refreshing = 1;
        pthread_mutex_unlock(&c->mu);
        cluster_refresh(c);
        pthread_mutex_lock(&c->mu);
    }
    unsigned idx = c->slots[slot & (CACHE__SLOTS - 1)];
    struct rnode *n = idx != NODE_NONE ? c->nodes[idx] : NULL;
    if (!n)
        cp_err_set(err, CP_EBACKEND, "redis cluster: no node known for slot %d (%s)", slot,
                   c->map_error[0] ? c->map_error : "the slot map is being read");
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- running a batch ------------------------------------------------------------------------- */

static const char asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

int cache__rclient_run(struct cache__rclient *c, int slot, struct cache__rbatch *b,
                       struct cp_err *err)
{
    size_t pending[CACHE__BATCH_MAX], np = b->n;
    for (size_t i = 0; i < b->n; i++) {
        pending[i] = i;
        b->reply[i] = NULL;
    }
    struct rnode *target = NULL;
    int asking = 0;
    for (int round = 0; np && round < MAX_ROUNDS; round++) {
        struct rnode *n = target ? target : route(c, slot, err);
        if (!n)
            goto fail;
        struct cache__rconn *conn = conn_get(c, n, err);
        if (!conn)
            goto fail;
        struct cp_buf out = {0};
        int rc = 0;
        for (size_t k = 0; k < np && !rc; k++) {
            if (asking)
                rc = cp_buf_add(&out, asking_cmd, sizeof asking_cmd - 1);
            if (!rc)
                rc = cp_buf_add(&out, b->cmd[pending[k]], b->len[pending[k]]);
        }
        redisReply *reps[2 * CACHE__BATCH_MAX];
        size_t per = asking ? 2 : 1;
        struct cp_err e = {0};
        if (rc) {
            cp_buf_free(&out);
            conn_put(c, n, conn, NULL);
            cp_err_set(err, CP_ENOMEM, "out of memory");
            goto fail;
        }
        rc = cache__rconn_roundtrip(conn, out.p, out.len, np * per, reps, &e);
        cp_buf_free(&out);
        if (rc) {
            cp_err_set(err, CP_EBACKEND, "redis %s", e.msg);
            conn_put(c, n, conn, cp_err_text(err));
            goto fail;
        }
        size_t still = 0;
        target = NULL;
        asking = 0;
        for (size_t k = 0; k < np; k++) {
            if (per == 2)
                freeReplyObject(reps[2 * k]); /* ASKING's +OK */
            redisReply *r = reps[k * per + per - 1];
            size_t i = pending[k];
            if (r->type == REDIS_REPLY_ERROR && c->url.mode == CACHE__REDIS_CLUSTER) {
                char host[256];
                int s, port;
                int kind = cache__redirect_parse(r->str, n->host ? n->host : "", &s, host,
                                                 sizeof host, &port);
                if (kind != CACHE__REDIRECT_NONE) {
                    pthread_mutex_lock(&c->mu);
                    unsigned idx = node_index(c, host, port);
                    if (kind == CACHE__REDIRECT_MOVED) {
                        atomic_fetch_add(&cache__rstats.moved, 1);
                        if (idx != NODE_NONE)
                            c->slots[s] = (uint16_t)idx;
                        refresh_soon(c);
                    } else {
                        atomic_fetch_add(&cache__rstats.ask, 1);
                        asking = 1;
                    }
                    target = idx != NODE_NONE ? c->nodes[idx] : NULL;
                    pthread_mutex_unlock(&c->mu);
                    freeReplyObject(r);
                    pending[still++] = i;
                    continue;
                }
            }
            if (r->type == REDIS_REPLY_ERROR) {
                node_error(n);
                if (c->url.mode == CACHE__REDIS_SENTINEL && r->str &&
                    !strncmp(r->str, "READONLY", 8)) {
                    /* the master became a replica: find the new one */
                    pthread_mutex_lock(&c->mu);
                    n->stale = 1;
                    pthread_mutex_unlock(&c->mu);
                }
            }
            b->reply[i] = r;
        }
        conn_put(c, n, conn, NULL);
        np = still;
        if (np && !target) {
            cp_err_set(err, CP_EBACKEND,
                       "redis cluster: redirected to a node that cannot be "
                       "added");
            goto fail;
        }
    }
    if (!np)
        return 0;
    cp_err_set(err, CP_EBACKEND, "redis cluster: too many redirections for slot %d", slot);
fail:
    for (size_t i = 0; i < b->n; i++) {
        if (b->reply[i])
            freeReplyObject(b->reply[i]);
        b->reply[i] = NULL;
    }
    return CP_EBACKEND;
}

void cache__rclient_where(struct cache__rclient *c, int slot, char *out, size_t size)
{
    pthread_mutex_lock(&c->mu);
    const char *mode = cache__redis_mode_name(&c->url);
    if (c->url.mode == CACHE__REDIS_CLUSTER) {
        unsigned idx = c->slots[slot & (CACHE__SLOTS - 1)];
        snprintf(out, size, "%s, node %s for slot %d", mode,
                 idx != NODE_NONE ? c->nodes[idx]->name : "(not known yet)", slot);
    } else if (c->url.mode == CACHE__REDIS_SENTINEL) {
        snprintf(out, size, "%s, master %s at %s", mode, c->url.master, c->nodes[0]->name);
    } else {
        snprintf(out, size, "%s at %s", mode, c->nodes[0]->name);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- sharing ------------------------------------------------------------------------------- */

static void digest_add(EVP_MD_CTX *md, const void *p, size_t n)
{
    uint64_t len = n;
    EVP_DigestUpdate(md, &len, sizeof len);
    if (n)
        EVP_DigestUpdate(md, p, n);
}

static void digest_secret(EVP_MD_CTX *md, const struct cfg_secret *s)
{
    digest_add(md, s->v, cfg_secret_isset(s) ? s->len : 0);
}

static void client_free(struct cache__rclient *c)
{
    for (size_t i = 0; i < c->nnodes; i++)
        node_free(c->nodes[i]);
    free(c->nodes);
    free(c->slots);
    SSL_CTX_free(c->tls);
    cfg_secret_wipe(&c->password);
    cfg_secret_wipe(&c->sentinel_password);
    cache__redis_url_dispose(&c->url);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int cache__rclient_acquire(const struct cfg_cache *cc, const struct cp_logger *log,
                           struct cache__rclient **out, struct cp_err *err)
{
    *out = NULL;
    struct cache__redis_url u;
    int rc = cache__redis_url_parse(cc->redis_url, &u, err);
    if (rc) {
        cache__redis_url_dispose(&u);
        return rc;
    }
    struct cfg_secret pw = {0};
    const struct cfg_secret *cpw = &cc->redis_password;
    if (!cfg_secret_isset(cpw) && u.password &&
        cfg_secret_set(&pw, u.password, strlen(u.password))) {
        cache__redis_url_dispose(&u);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    if (cfg_secret_isset(&pw))
        cpw = &pw;
    /* clients are told apart by a digest of everything that makes them differ */
    unsigned char id[32];
    unsigned idlen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        cfg_secret_wipe(&pw);
        cache__redis_url_dispose(&u);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    digest_add(md, cc->redis_url, strlen(cc->redis_url));
    digest_secret(md, cpw);
    digest_secret(md, &cc->redis_sentinel_password);
    digest_secret(md, &cc->redis_tls_ca_cert);
    digest_secret(md, &cc->redis_tls_client_cert);
    digest_secret(md, &cc->redis_tls_client_key);
    unsigned char skip = (unsigned char)cc->redis_tls_skip_verify;
    digest_add(md, &skip, 1);
    EVP_DigestFinal_ex(md, id, &idlen);
    EVP_MD_CTX_free(md);

    pthread_mutex_lock(&clients_mu);
    struct cache__rclient *c;
    for (c = clients; c; c = c->next)
        if (!memcmp(c->id, id, sizeof id))
            break;
    if (c) {
        c->refs++;
        pthread_mutex_unlock(&clients_mu);
        cfg_secret_wipe(&pw);
        cache__redis_url_dispose(&u);
        *out = c;
        return 0;
    }
    if (!(c = calloc(1, sizeof *c))) {
        pthread_mutex_unlock(&clients_mu);
        cfg_secret_wipe(&pw);
        cache__redis_url_dispose(&u);
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->refs = 1;
    memcpy(c->id, id, sizeof id);
    c->url = u;
    c->log = log;
    c->verify = !cc->redis_tls_skip_verify;
    rc = 0;
    if ((cfg_secret_isset(cpw) && cfg_secret_set(&c->password, cpw->v, cpw->len)) ||
        (cfg_secret_isset(&cc->redis_sentinel_password) &&
         cfg_secret_set(&c->sentinel_password, cc->redis_sentinel_password.v,
                        cc->redis_sentinel_password.len)))
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    if (!rc && u.tls)
        rc = cache__tls_ctx_new(&cc->redis_tls_ca_cert, &cc->redis_tls_client_cert,
                                &cc->redis_tls_client_key, &c->tls, err);
    size_t cap = u.mode == CACHE__REDIS_CLUSTER ? MAX_NODES : 1;
    if (!rc && !(c->nodes = calloc(cap, sizeof *c->nodes)))
        rc = cp_err_set(err, CP_ENOMEM, "out of memory");
    if (!rc && u.mode == CACHE__REDIS_CLUSTER) {
        if (!(c->slots = malloc(CACHE__SLOTS * sizeof *c->slots)))
            rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        else
            memset(c->slots, 0xff, CACHE__SLOTS * sizeof *c->slots);
        c->refresh_at_ms = 1; /* read the map on first use */
    } else if (!rc) {
        c->nodes[0] = u.mode == CACHE__REDIS_SENTINEL
                          ? node_new(NULL, 0, NULL)
                          : node_new(u.unix_path ? NULL : u.addrs[0].host,
                                     u.unix_path ? 0 : u.addrs[0].port, u.unix_path);
        if (!c->nodes[0])
            rc = cp_err_set(err, CP_ENOMEM, "out of memory");
        else
            c->nnodes = 1;
        if (c->nodes[0] && u.mode == CACHE__REDIS_SENTINEL)
            c->nodes[0]->stale = 1;
    }
    cfg_secret_wipe(&pw);
    if (rc) {
        pthread_mutex_unlock(&clients_mu);
        client_free(c);
        return rc;
    }
    c->next = clients;
    clients = c;
    pthread_mutex_unlock(&clients_mu);
    *out = c;
    return 0;
}

void cache__rclient_release(struct cache__rclient *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&clients_mu);
    if (--c->refs > 0) {
        pthread_mutex_unlock(&clients_mu);
        return;
    }
    for (struct cache__rclient **pp = &clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pthread_mutex_unlock(&clients_mu);
    client_free(c);
}
