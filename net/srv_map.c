/*
 * srv_map.c - the gRPC server's indexes and small helpers (see srv_int.h).
 */
#include "srv_int.h"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t slot(const u64map *m, uint64_t key)
{
    return (size_t)mix(key ^ m->seed) & (m->cap - 1);
}

static int grow(u64map *m)
{
    size_t nc = m->cap ? m->cap * 2 : 16;
    u64map t = {calloc(nc, sizeof *t.keys), calloc(nc, sizeof *t.vals), calloc(nc, 1), nc, 0,
                m->seed};
    if (!t.keys || !t.vals || !t.used) {
        u64map_free(&t);
        return PT_ERR_NOMEM;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->used[i]) {
            size_t j = slot(&t, m->keys[i]);
            while (t.used[j]) j = (j + 1) & (nc - 1);
            t.used[j] = 1;
            t.keys[j] = m->keys[i];
            t.vals[j] = m->vals[i];
            t.n++;
        }
    u64map_free(m);
    *m = t;
    return PT_OK;
}

int u64map_put(u64map *m, uint64_t key, uintptr_t val)
{
    if (!m->seed) m->seed = mix(pt_now_ns() ^ (uintptr_t)m) | 1;
    if ((m->n + 1) * 2 > m->cap && grow(m)) return PT_ERR_NOMEM;
    size_t j = slot(m, key);
    while (m->used[j] && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (!m->used[j]) {
        m->used[j] = 1;
        m->keys[j] = key;
        m->n++;
    }
    m->vals[j] = val;
    return PT_OK;
}

static size_t find(const u64map *m, uint64_t key)
{
    if (!m->cap) return SIZE_MAX;
    for (size_t j = slot(m, key); m->used[j]; j = (j + 1) & (m->cap - 1))
        if (m->keys[j] == key) return j;
    return SIZE_MAX;
}

uintptr_t u64map_get(const u64map *m, uint64_t key, int *found)
{
    size_t j = find(m, key);
    if (found) *found = j != SIZE_MAX;
    return j == SIZE_MAX ? 0 : m->vals[j];
}

void u64map_del(u64map *m, uint64_t key)
{
    size_t i = find(m, key), mask = m->cap - 1;
    if (i == SIZE_MAX) return;
    m->used[i] = 0;
    m->n--;
    /* backward shift: move later members of the run into the hole when their
       home slot does not lie cyclically in (hole, their position] */
    for (size_t j = (i + 1) & mask; m->used[j]; j = (j + 1) & mask) {
        size_t home = slot(m, m->keys[j]);
        if (((j - home) & mask) < ((j - i) & mask)) continue;
        m->used[i] = 1;
        m->keys[i] = m->keys[j];
        m->vals[i] = m->vals[j];
        m->used[j] = 0;
        i = j;
    }
}

void u64map_free(u64map *m)
{
    free(m->keys);
    free(m->vals);
    free(m->used);
    m->keys = NULL;
    m->vals = NULL;
    m->used = NULL;
    m->cap = m->n = 0;
}

int srv_addr_key(const struct sockaddr *sa, uint64_t *key, int *v6)
{
    uint64_t k = 0;
    if (sa->sa_family == AF_INET) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        for (int i = 0; i < 4; i++) k = k << 8 | a[i];
        *v6 = 0;
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        int is4 = !memcmp(a, mapped, sizeof mapped);
        for (int i = is4 ? 12 : 0; i < (is4 ? 16 : 8); i++) k = k << 8 | a[i];
        *v6 = !is4;
    } else {
        return -1;
    }
    *key = k;
    return 0;
}

int srv_log_ok(log_rate *r, double burst, double per_s)
{
    double now = pt_now();
    if (r->last == 0) r->tokens = burst;
    r->tokens += (now - r->last) * per_s;
    if (r->tokens > burst) r->tokens = burst;
    r->last = now;
    if (r->tokens < 1) {
        r->held++;
        return 0;
    }
    r->tokens -= 1;
    return 1;
}

/* " (and N more ...)" for the lines held back since the last one, or "". */
const char *srv_held_note(log_rate *r, char *buf, size_t cap)
{
    buf[0] = 0;
    if (r->held) snprintf(buf, cap, " (and %lu more in the debug log)", r->held);
    r->held = 0;
    return buf;
}

/* SHA-256 of p[0..n) into md (32 bytes). */
int srv_sha256(const void *p, size_t n, unsigned char *md)
{
    unsigned len = 0;
    return EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

