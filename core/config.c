/* config.c - Flower's map<string, Scalar> as an ordered map: entries in
 * insertion order in c->e, plus (past SMALL entries) an open-addressing hash
 * index over them, so every set and get is O(1) expected whatever the keys.
 * Keys come from peers, so the hash is keyed: SipHash-1-3 (Aumasson and
 * Bernstein's construction, written here from the paper) with a random
 * per-process key; nobody outside the process can build colliding keys. */
#include "petal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

enum { SMALL = 8 }; /* up to this many entries a scan beats hashing */

/* ---- keyed hash ----------------------------------------------------------- */

static uint64_t hkey[2];
static pthread_once_t hkey_once = PTHREAD_ONCE_INIT;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void hkey_init(void)
{
    uint64_t k[2];
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        /* no entropy yet (early boot): still unpredictable from outside */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 32 ^ (uint64_t)getpid());
        k[1] = mix64(k[0] ^ (uint64_t)(uintptr_t)&ts ^ (uint64_t)(uintptr_t)&hkey);
    }
    hkey[0] = k[0];
    hkey[1] = k[1];
}

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                                           \
    do {                                                                                   \
        v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                          \
        v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                             \
        v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                             \
        v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                          \
    } while (0)

/* SipHash-1-3 of key[0..len) under the process key. */
static uint64_t keyhash(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t v0, v1, v2, v3, m, b = (uint64_t)len << 56;
    size_t i, tail = len & 7;
    pthread_once(&hkey_once, hkey_init);
    v0 = hkey[0] ^ 0x736f6d6570736575ull;
    v1 = hkey[1] ^ 0x646f72616e646f6dull;
    v2 = hkey[0] ^ 0x6c7967656e657261ull;
    v3 = hkey[1] ^ 0x7465646279746573ull;
    for (i = 0; i + 8 <= len; i += 8) {
        m = 0;
        for (int j = 7; j >= 0; j--) m = m << 8 | p[i + (size_t)j];
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = tail; j > 0; j--) b |= (uint64_t)p[i + j - 1] << (8 * (j - 1));
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- index -------------------------------------------------------------- */

/* Slot of key in the index: the one holding it, else the empty one where
 * it would go. The index is at most half full, so probes are short. */
static uint32_t *probe(const pt_config *c, const char *key, size_t len)
{
    size_t mask = c->nslot - 1, i = (size_t)keyhash(key, len) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t *sl = &c->slot[i];
        if (!*sl) return sl;
        const pt_config_entry *e = &c->e[*sl - 1];
        if (e->keylen == len && !memcmp(e->key, key, len)) return sl;
    }
}

/* (Re)build the index for at least `want` entries (power of two, >= 2x). */
static int reindex(pt_config *c, size_t want)
{
    size_t ns = 32;
    while (ns < 2 * want) ns *= 2;
    if (ns > UINT32_MAX) return PT_ERR_NOMEM;
    uint32_t *sl = calloc(ns, sizeof *sl);
    if (!sl) return PT_ERR_NOMEM;
    free(c->slot);
    c->slot = sl;
    c->nslot = ns;
    for (size_t i = 0; i < c->n; i++) {
        *probe(c, c->e[i].key, c->e[i].keylen) = (uint32_t)(i + 1);
    }
    return PT_OK;
}

static void scalar_clear(pt_scalar *v)
{
    if (v->type == PT_SCALAR_STRING || v->type == PT_SCALAR_BYTES) free(v->v.s.ptr);
    memset(v, 0, sizeof *v);
}

/* Keys compare by length and bytes (a key may hold NUL bytes). */
static pt_config_entry *find(const pt_config *c, const char *key, size_t keylen)
{
    if (!c->slot) {
        for (size_t i = 0; i < c->n; i++)
            if (c->e[i].keylen == keylen && !memcmp(c->e[i].key, key, keylen)) return &c->e[i];
        return NULL;
    }
    uint32_t *sl = probe(c, key, keylen);
    return *sl ? &c->e[*sl - 1] : NULL;
}

/* Returns the entry for key, creating it (value cleared) if needed. */
static pt_config_entry *slot(pt_config *c, const char *key, size_t keylen)
{
    pt_config_entry *e = find(c, key, keylen);
    if (e) {
        scalar_clear(&e->val);
        return e;
    }
    if (c->n >= UINT32_MAX - 1) return NULL;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        pt_config_entry *ne = realloc(c->e, cap * sizeof *ne);
        if (!ne) return NULL;
        c->e = ne;
        c->cap = cap;
    }
    /* the index covers the new entry before it exists, so a failure leaves
     * the map as it was */
    if (c->n + 1 > SMALL && 2 * (c->n + 1) > c->nslot && reindex(c, c->n + 1)) return NULL;
    e = &c->e[c->n];
    memset(e, 0, sizeof *e);
    if (!(e->key = malloc(keylen + 1))) return NULL;
    memcpy(e->key, key, keylen);
    e->key[keylen] = 0;
    e->keylen = keylen;
    if (c->slot) *probe(c, key, keylen) = (uint32_t)(c->n + 1);
    c->n++;
    return e;
}

int pt_config_set(pt_config *c, const char *key, const pt_scalar *v)
{
    return pt_config_set_len(c, key, strlen(key), v);
}

int pt_config_set_len(pt_config *c, const char *key, size_t keylen, const pt_scalar *v)
{
    pt_scalar tmp = *v;
    if (v->type == PT_SCALAR_STRING || v->type == PT_SCALAR_BYTES) {
        tmp.v.s.ptr = malloc(v->v.s.len + 1);
        if (!tmp.v.s.ptr) return PT_ERR_NOMEM;
        if (v->v.s.len) memcpy(tmp.v.s.ptr, v->v.s.ptr, v->v.s.len);
        tmp.v.s.ptr[v->v.s.len] = 0;
    } else if (v->type < PT_SCALAR_DOUBLE || v->type > PT_SCALAR_UINT64) {
        return PT_ERR_INVAL;
    }
    pt_config_entry *e = slot(c, key, keylen);
    if (!e) {
        if (tmp.type == PT_SCALAR_STRING || tmp.type == PT_SCALAR_BYTES) free(tmp.v.s.ptr);
        return PT_ERR_NOMEM;
    }
    e->val = tmp;
    return PT_OK;
}

int pt_config_set_double(pt_config *c, const char *key, double v)
{
    pt_scalar s = {.type = PT_SCALAR_DOUBLE, .v.d = v};
    return pt_config_set(c, key, &s);
}

int pt_config_set_int(pt_config *c, const char *key, int64_t v)
{
    pt_scalar s = {.type = PT_SCALAR_SINT64, .v.i = v};
    return pt_config_set(c, key, &s);
}

int pt_config_set_uint(pt_config *c, const char *key, uint64_t v)
{
    pt_scalar s = {.type = PT_SCALAR_UINT64, .v.u = v};
    return pt_config_set(c, key, &s);
}

int pt_config_set_bool(pt_config *c, const char *key, int v)
{
    pt_scalar s = {.type = PT_SCALAR_BOOL, .v.b = !!v};
    return pt_config_set(c, key, &s);
}

int pt_config_set_string(pt_config *c, const char *key, const char *v)
{
    pt_scalar s = {.type = PT_SCALAR_STRING};
    s.v.s.ptr = (char *)v;
    s.v.s.len = strlen(v);
    return pt_config_set(c, key, &s);
}

int pt_config_set_bytes(pt_config *c, const char *key, const void *v, size_t len)
{
    pt_scalar s = {.type = PT_SCALAR_BYTES};
    s.v.s.ptr = (char *)v;
    s.v.s.len = len;
    return pt_config_set(c, key, &s);
}

const pt_scalar *pt_config_get(const pt_config *c, const char *key)
{
    return pt_config_get_len(c, key, strlen(key));
}

const pt_scalar *pt_config_get_len(const pt_config *c, const char *key, size_t keylen)
{
    pt_config_entry *e = find(c, key, keylen);
    return e ? &e->val : NULL;
}

int pt_config_get_number(const pt_config *c, const char *key, double *out)
{
    const pt_scalar *v = pt_config_get(c, key);
    if (!v) return PT_ERR_NOTFOUND;
    switch (v->type) {
    case PT_SCALAR_DOUBLE: *out = v->v.d; return PT_OK;
    case PT_SCALAR_SINT64: *out = (double)v->v.i; return PT_OK;
    case PT_SCALAR_UINT64: *out = (double)v->v.u; return PT_OK;
    case PT_SCALAR_BOOL: *out = v->v.b ? 1.0 : 0.0; return PT_OK;
    default: return PT_ERR_FORMAT;
    }
}

double pt_config_number_or(const pt_config *c, const char *key, double def)
{
    double d;
    return pt_config_get_number(c, key, &d) == PT_OK ? d : def;
}

int pt_config_copy(pt_config *dst, const pt_config *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++) {
        int rc = pt_config_set_len(dst, src->e[i].key, src->e[i].keylen, &src->e[i].val);
        if (rc) {
            pt_config_free(dst);
            return rc;
        }
    }
    return PT_OK;
}

void pt_config_free(pt_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        scalar_clear(&c->e[i].val);
    }
    free(c->e);
    free(c->slot);
    memset(c, 0, sizeof *c);
}

int pt_config_format(const pt_config *c, char *buf, size_t len)
{
    size_t off = 0;
    int w;
#define PUT(...)                                                                           \
    do {                                                                                   \
        w = snprintf(buf + off, off < len ? len - off : 0, __VA_ARGS__);                   \
        if (w < 0) return PT_ERR_FORMAT;                                                   \
        off += (size_t)w;                                                                  \
    } while (0)
    if (!len) return PT_ERR_RANGE;
    buf[0] = 0;
    PUT("{");
    for (size_t i = 0; i < c->n; i++) {
        const pt_scalar *v = &c->e[i].val;
        PUT("%s'%s': ", i ? ", " : "", c->e[i].key);
        switch (v->type) {
        case PT_SCALAR_DOUBLE: {
            char num[40];
            snprintf(num, sizeof num, "%.15g", v->v.d); /* shortest that round-trips */
            if (strtod(num, NULL) != v->v.d) snprintf(num, sizeof num, "%.17g", v->v.d);
            if (!strpbrk(num, ".eni")) strcat(num, ".0"); /* Python prints 1.0 */
            PUT("%s", num);
            break;
        }
        case PT_SCALAR_SINT64: PUT("%lld", (long long)v->v.i); break;
        case PT_SCALAR_UINT64: PUT("%llu", (unsigned long long)v->v.u); break;
        case PT_SCALAR_BOOL: PUT("%s", v->v.b ? "True" : "False"); break;
        case PT_SCALAR_STRING: PUT("'%s'", v->v.s.ptr); break;
        case PT_SCALAR_BYTES: PUT("b'<%zu bytes>'", v->v.s.len); break;
        }
    }
    PUT("}");
#undef PUT
    return off < len ? PT_OK : PT_ERR_RANGE;
}
