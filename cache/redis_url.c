/*
 * redis_url.c - the forms of redisUrl:
 *
 *   redis://[user[:password]@]host[:port][/db]        one server (rediss://: over TLS)
 *   unix:///path[?db=N]                               one server on a unix socket
 *   redis-sentinel://[user[:password]@]host[:port][,host[:port]...]/<master>[/db]
 *                                                     the master the sentinels name
 *   redis-cluster://[user[:password]@]host[:port][,host[:port]...]
 *                                                     a cluster, from its seed nodes
 *
 * rediss-sentinel:// and rediss-cluster:// speak TLS to every node (sentinels included).
 * The user and password are those of the data nodes; sentinels take redisSentinelPassword.
 * Hosts may be [IPv6] literals. Errors name jsonData.cache.redisUrl, never the password.
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY "jsonData.cache.redisUrl"

static const struct {
    const char *scheme;
    enum cache__redis_mode mode;
    int tls;
    int default_port;
} schemes[] = {
    {"redis://", CACHE__REDIS_SINGLE, 0, 6379},
    {"rediss://", CACHE__REDIS_SINGLE, 1, 6379},
    {"redis-sentinel://", CACHE__REDIS_SENTINEL, 0, 26379},
    {"rediss-sentinel://", CACHE__REDIS_SENTINEL, 1, 26379},
    {"redis-cluster://", CACHE__REDIS_CLUSTER, 0, 6379},
    {"rediss-cluster://", CACHE__REDIS_CLUSTER, 1, 6379},
};

void cache__redis_url_dispose(struct cache__redis_url *u)
{
    for (size_t i = 0; i < u->naddrs; i++)
        free(u->addrs[i].host);
    free(u->addrs);
    free(u->unix_path);
    free(u->user);
    if (u->password) {
        explicit_bzero(u->password, strlen(u->password));
        free(u->password);
    }
    free(u->master);
    memset(u, 0, sizeof *u);
}

const char *cache__redis_mode_name(const struct cache__redis_url *u)
{
    switch (u->mode) {
    case CACHE__REDIS_SENTINEL:
        return u->tls ? "redis sentinel over TLS" : "redis sentinel";
    case CACHE__REDIS_CLUSTER:
        return u->tls ? "redis cluster over TLS" : "redis cluster";
    default:
        return u->tls ? "redis over TLS" : "redis";
    }
}

static int bad(struct cp_err *err, const char *why)
{
    return cp_err_set(err, CP_ECONFIG, KEY ": %s", why);
}

/* A database number: digits only, 0..1000 (Redis' own limit is a setting; this bounds it). */
static int parse_db(const char *s, size_t n, int *db)
{
    if (!n || n > 4)
        return CP_ECONFIG;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return CP_ECONFIG;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 1000)
        return CP_ECONFIG;
    *db = v;
    return 0;
}

/* One host[:port] or [v6][:port] in s[0..n). */
static int parse_addr(const char *s, size_t n, int default_port, struct cache__redis_addr *a,
                      struct cp_err *err)
{
    const char *hs = s, *he, *rest;
    const char *end = s + n;
    if (n && *s == '[') {
        he = memchr(s, ']', n);
        if (!he)
            return bad(err, "an IPv6 host misses its closing ]");
        hs = s + 1;
        rest = he + 1;
    } else {
        he = memchr(s, ':', n);
        if (!he)
            he = end;
        rest = he;
    }
    if (he == hs)
        return bad(err, "a host is missing");
    if (he - hs > 255)
        return bad(err, "a host name is longer than 255 characters");
    for (const char *c = hs; c < he; c++)
        if ((unsigned char)*c <= ' ' || *c == '/' || *c == '@' || *c == ',' ||
            (*c == ':' && *s != '['))
            return bad(err, "a host holds a character hosts cannot have");
    a->port = default_port;
    if (rest < end) {
        if (*rest != ':' || rest + 1 == end || end - rest > 6)
            return bad(err, "a port must be a number from 1 to 65535");
        long port = 0;
        for (const char *c = rest + 1; c < end; c++) {
            if (*c < '0' || *c > '9')
                return bad(err, "a port must be a number from 1 to 65535");
            port = port * 10 + (*c - '0');
        }
        if (port < 1 || port > 65535)
            return bad(err, "a port must be a number from 1 to 65535");
        a->port = (int)port;
    }
    a->host = strndup(hs, (size_t)(he - hs));
    return a->host ? 0 : cp_err_set(err, CP_ENOMEM, "out of memory");
}

static int parse_unix(const char *p, struct cache__redis_url *u, struct cp_err *err)
{
    size_t n = strcspn(p, "?");
    if (!n || p[0] != '/')
        return bad(err, "unix:// needs an absolute socket path (unix:///run/redis.sock)");
    if (!(u->unix_path = strndup(p, n)))
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    if (p[n] == '?') {
        const char *q = p + n + 1;
        if (strncmp(q, "db=", 3) || parse_db(q + 3, strlen(q + 3), &u->db))
            return bad(err, "the only unix:// parameter is db=N (0 to 1000)");
    }
    return 0;
}

int cache__redis_url_parse(const char *url, struct cache__redis_url *u, struct cp_err *err)
{
    memset(u, 0, sizeof *u);
    if (!url)
        return bad(err, "is missing");
    if (!strncasecmp(url, "unix://", 7))
        return parse_unix(url + 7, u, err);
    size_t si;
    for (si = 0; si < sizeof schemes / sizeof schemes[0]; si++)
        if (!strncasecmp(url, schemes[si].scheme, strlen(schemes[si].scheme)))
            break;
    if (si == sizeof schemes / sizeof schemes[0])
        return bad(err, "must start with redis://, rediss://, redis-sentinel://, "
                        "redis-cluster:// (or rediss-sentinel://, rediss-cluster://) or unix://");
    u->mode = schemes[si].mode;
    u->tls = schemes[si].tls;
    const char *p = url + strlen(schemes[si].scheme);
    const char *q = p + strcspn(p, "?#");
    /* authority: up to the first '/' (the path: database, or the sentinel master's name) */
    const char *slash = memchr(p, '/', (size_t)(q - p));
    const char *aend = slash ? slash : q;
    const char *at = NULL;
    for (const char *c = p; c < aend; c++)
        if (*c == '@')
            at = c; /* the last one: a password may hold '@' */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *ue = colon ? colon : at;
        if (ue > p && !(u->user = strndup(p, (size_t)(ue - p))))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        if (colon && at > colon + 1 &&
            !(u->password = strndup(colon + 1, (size_t)(at - colon - 1))))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        p = at + 1;
    }
    if (p == aend)
        return bad(err, "a host is missing");
    /* hosts, comma-separated */
    size_t nh = 1;
    for (const char *c = p; c < aend; c++)
        nh += *c == ',';
    if (nh > 1 && u->mode == CACHE__REDIS_SINGLE)
        return bad(err, "lists several hosts: use redis-sentinel:// or redis-cluster:// for "
                        "more than one");
    if (nh > CACHE__REDIS_MAX_HOSTS)
        return bad(err, "lists more than 16 hosts");
    if (!(u->addrs = calloc(nh, sizeof *u->addrs)))
        return cp_err_set(err, CP_ENOMEM, "out of memory");
    for (const char *h = p; h < aend;) {
        const char *he = memchr(h, ',', (size_t)(aend - h));
        if (!he)
            he = aend;
        int rc =
            parse_addr(h, (size_t)(he - h), schemes[si].default_port, &u->addrs[u->naddrs], err);
        if (rc)
            return rc;
        u->naddrs++;
        h = he + (he < aend);
        if (he < aend && h == aend)
            return bad(err, "a host is missing after the last comma");
    }
    /* the path */
    const char *path = slash ? slash + 1 : q;
    size_t pl = (size_t)(q - path);
    if (u->mode == CACHE__REDIS_SENTINEL) {
        const char *me = memchr(path, '/', pl);
        size_t ml = me ? (size_t)(me - path) : pl;
        if (!ml)
            return bad(err, "redis-sentinel:// needs the master's name: "
                            "redis-sentinel://host:26379/mymaster");
        if (!(u->master = strndup(path, ml)))
            return cp_err_set(err, CP_ENOMEM, "out of memory");
        if (me && me + 1 < q && parse_db(me + 1, (size_t)(q - me - 1), &u->db))
            return bad(err, "the database after the master's name must be a number from 0 "
                            "to 1000");
        return 0;
    }
    if (pl && parse_db(path, pl, &u->db))
        return bad(err, "the path must be a database number from 0 to 1000");
    if (u->mode == CACHE__REDIS_CLUSTER && u->db)
        return bad(err, "Redis Cluster has only database 0");
    return 0;
}
