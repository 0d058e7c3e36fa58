/*
 * redis_slots.c - Redis Cluster's key space, as its specification describes it: the slot of a
 * key (CRC16-CCITT/XMODEM of its hash tag or of the whole key, modulo 16384), the slot map a
 * CLUSTER SLOTS reply gives, and the MOVED and ASK redirections a node answers.
 */
#include "redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16 of every 4-bit value for polynomial 0x1021: a 16-entry table, two steps per byte,
 * fast enough for keys of a few dozen bytes. */
static const uint16_t nibble_table[16] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
};

uint16_t cache__crc16(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc = (uint16_t)((crc << 4) ^ nibble_table[((crc >> 12) ^ (b[i] >> 4)) & 0x0f]);
        crc = (uint16_t)((crc << 4) ^ nibble_table[((crc >> 12) ^ (b[i] & 0x0f)) & 0x0f]);
    }
    return crc;
}

int cache__key_slot(const char *key, size_t n)
{
    const char *open = memchr(key, '{', n);
    if (open) {
        size_t rest = n - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return cache__crc16(open + 1, (size_t)(close - open - 1)) & (CACHE__SLOTS - 1);
    }
    return cache__crc16(key, n) & (CACHE__SLOTS - 1);
}

/* An element that must be an integer in 0..max (RESP2 integer, or a numeric string). */
static int int_of(const redisReply *r, long max, long *v)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *v = (long)r->integer;
    } else if (r->type == REDIS_REPLY_STRING && r->len && r->len < 12) {
        char *end;
        *v = strtol(r->str, &end, 10);
        if (*end)
            return -1;
    } else {
        return -1;
    }
    return *v >= 0 && *v <= max ? 0 : -1;
}

int cache__cluster_slots_parse(const redisReply *r, const char *asked_host,
                               struct cache__slot_range **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return CP_EINVAL;
    struct cache__slot_range *v = calloc(r->elements ? r->elements : 1, sizeof *v);
    if (!v)
        return CP_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long start, end, port;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            int_of(e->element[0], CACHE__SLOTS - 1, &start) ||
            int_of(e->element[1], CACHE__SLOTS - 1, &end) || end < start)
            goto bad;
        const redisReply *m = e->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0]->type != REDIS_REPLY_STRING || int_of(m->element[1], 65535, &port))
            goto bad;
        const char *host = m->element[0]->str;
        size_t hl = m->element[0]->len;
        /* an empty address: the node that answered; "?": not known (not reachable now) */
        if (!hl) {
            host = asked_host;
            hl = strlen(asked_host);
        }
        if (!port || (hl == 1 && host[0] == '?'))
            continue;
        if (hl >= sizeof v[k].host || memchr(host, 0, hl))
            goto bad;
        v[k].start = (int)start;
        v[k].end = (int)end;
        memcpy(v[k].host, host, hl);
        v[k].host[hl] = 0;
        v[k].port = (int)port;
        k++;
    }
    *out = v;
    *n = k;
    return 0;
bad:
    free(v);
    return CP_EINVAL;
}

int cache__redirect_parse(const char *text, const char *asked_host, int *slot, char *host,
                          size_t hsize, int *port)
{
    int kind;
    if (!text)
        return CACHE__REDIRECT_NONE;
    if (!strncmp(text, "MOVED ", 6)) {
        kind = CACHE__REDIRECT_MOVED;
        text += 6;
    } else if (!strncmp(text, "ASK ", 4)) {
        kind = CACHE__REDIRECT_ASK;
        text += 4;
    } else {
        return CACHE__REDIRECT_NONE;
    }
    char *end;
    long s = strtol(text, &end, 10);
    if (end == text || *end != ' ' || s < 0 || s >= CACHE__SLOTS)
        return CACHE__REDIRECT_NONE;
    const char *addr = end + 1;
    const char *colon = strrchr(addr, ':'); /* IPv6 addresses hold colons themselves */
    if (!colon)
        return CACHE__REDIRECT_NONE;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p <= 0 || p > 65535)
        return CACHE__REDIRECT_NONE;
    size_t hl = (size_t)(colon - addr);
    if (!hl) {
        addr = asked_host;
        hl = strlen(asked_host);
    } else if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
        addr++;
        hl -= 2;
    }
    if (!hl || hl >= hsize)
        return CACHE__REDIRECT_NONE;
    memcpy(host, addr, hl);
    host[hl] = 0;
    *slot = (int)s;
    *port = (int)p;
    return kind;
}
