/* config.c - Flower's map<string, Scalar> as a small ordered map. */
#include "petal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void scalar_clear(pt_scalar *v)
{
    if (v->type == PT_SCALAR_STRING || v->type == PT_SCALAR_BYTES) free(v->v.s.ptr);
    memset(v, 0, sizeof *v);
}

/* Keys compare by length and bytes (a key may hold NUL bytes). */
static pt_config_entry *find(const pt_config *c, const char *key, size_t keylen)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].keylen == keylen && !memcmp(c->e[i].key, key, keylen)) return &c->e[i];
    return NULL;
}

/* Returns the entry for key, creating it (value cleared) if needed. */
static pt_config_entry *slot(pt_config *c, const char *key, size_t keylen)
{
    pt_config_entry *e = find(c, key, keylen);
    if (e) {
        scalar_clear(&e->val);
        return e;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        pt_config_entry *ne = realloc(c->e, cap * sizeof *ne);
        if (!ne) return NULL;
        c->e = ne;
        c->cap = cap;
    }
    e = &c->e[c->n];
    memset(e, 0, sizeof *e);
    if (!(e->key = malloc(keylen + 1))) return NULL;
    memcpy(e->key, key, keylen);
    e->key[keylen] = 0;
    e->keylen = keylen;
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
