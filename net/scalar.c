/* scalar.c - Flower's map<string, Scalar> <-> pt_config. Encoding writes the
 * wire bytes directly (exact sizes known up front); decoding unpacks each
 * map entry with the protoc-c generated code into an arena. */
#include "codec_int.h"

#include <string.h>

#include "net/transport.pb-c.h"

/* Scalar member tags: double 1 (I64), uint64 6, sint64 8, bool 13 (varint),
 * string 14, bytes 15 (LEN). */
static size_t scalar_body_size(const pt_scalar *v)
{
    switch (v->type) {
    case PT_SCALAR_DOUBLE: return 1 + 8;
    case PT_SCALAR_UINT64: return 1 + pnet_varint_size(v->v.u);
    case PT_SCALAR_SINT64: {
        uint64_t z = ((uint64_t)v->v.i << 1) ^ (uint64_t)(v->v.i >> 63);
        return 1 + pnet_varint_size(z);
    }
    case PT_SCALAR_BOOL: return 2;
    case PT_SCALAR_STRING:
    case PT_SCALAR_BYTES: return pnet_ld_size(v->v.s.len);
    }
    return 0;
}

static uint8_t *scalar_body_pack(const pt_scalar *v, uint8_t *p)
{
    switch (v->type) {
    case PT_SCALAR_DOUBLE: {
        uint64_t u;
        memcpy(&u, &v->v.d, 8);
        *p++ = 0x09;
        for (int i = 0; i < 8; i++) *p++ = (uint8_t)(u >> (8 * i));
        return p;
    }
    case PT_SCALAR_UINT64:
        *p++ = 0x30;
        return pnet_put_varint(p, v->v.u);
    case PT_SCALAR_SINT64:
        *p++ = 0x40;
        return pnet_put_varint(p, ((uint64_t)v->v.i << 1) ^ (uint64_t)(v->v.i >> 63));
    case PT_SCALAR_BOOL:
        *p++ = 0x68;
        *p++ = v->v.b ? 1 : 0;
        return p;
    case PT_SCALAR_STRING:
    case PT_SCALAR_BYTES:
        *p++ = v->type == PT_SCALAR_STRING ? 0x72 : 0x7a;
        p = pnet_put_varint(p, v->v.s.len);
        if (v->v.s.len) memcpy(p, v->v.s.ptr, v->v.s.len);
        return p + v->v.s.len;
    }
    return p;
}

static size_t entry_body_size(const pt_config_entry *e)
{
    return pnet_ld_size(e->keylen) + pnet_ld_size(scalar_body_size(&e->val));
}

size_t pnet_config_field_size(uint32_t field, const pt_config *c)
{
    size_t n = 0;
    (void)field; /* fields 1..15 have 1-byte tags */
    if (!c) return 0;
    for (size_t i = 0; i < c->n; i++) n += pnet_ld_size(entry_body_size(&c->e[i]));
    return n;
}

uint8_t *pnet_config_field_pack(uint32_t field, const pt_config *c, uint8_t *p)
{
    if (!c) return p;
    for (size_t i = 0; i < c->n; i++) {
        const pt_config_entry *e = &c->e[i];
        size_t klen = e->keylen;
        *p++ = (uint8_t)(field << 3 | PNET_WT_LEN);
        p = pnet_put_varint(p, entry_body_size(e));
        *p++ = 0x0a;
        p = pnet_put_varint(p, klen);
        memcpy(p, e->key, klen);
        p += klen;
        *p++ = 0x12;
        p = pnet_put_varint(p, scalar_body_size(&e->val));
        p = scalar_body_pack(&e->val, p);
    }
    return p;
}

/* One varint at p[*off..n); 0 when malformed. */
static int get_varint(const uint8_t *p, size_t n, size_t *off, uint64_t *v)
{
    *v = 0;
    for (int sh = 0; sh < 64 && *off < n; sh += 7) {
        uint8_t b = p[(*off)++];
        *v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* The key's length on the wire (the last field 1, as protobuf keeps the last
 * of a repeated scalar): protobuf-c hands it over as a C string, which would
 * cut "batch_size\0junk" to "batch_size". Returns the C length when the walk
 * does not work out (protobuf-c accepted the bytes, so it should). */
static size_t wire_key_len(const pnet_bytes *entry, const char *key)
{
    size_t off = 0, klen = strlen(key);
    const uint8_t *p = entry->ptr;
    while (off < entry->len) {
        uint64_t tag, v;
        if (!get_varint(p, entry->len, &off, &tag)) return klen;
        switch (tag & 7) {
        case 0:
            if (!get_varint(p, entry->len, &off, &v)) return klen;
            break;
        case 1: off += 8; break;
        case 5: off += 4; break;
        case 2:
            if (!get_varint(p, entry->len, &off, &v) || v > entry->len - off) return klen;
            if (tag >> 3 == 1) klen = (size_t)v;
            off += (size_t)v;
            break;
        default: return strlen(key);
        }
    }
    return klen;
}

int pnet_config_entry_decode(const pnet_bytes *entry, pt_config *dst, pnet_arena *a,
                             size_t max_entries, size_t max_key, char *err)
{
    /* Every map<string, Scalar> entry has the same layout, so one descriptor
     * decodes them all. */
    Flwr__Proto__ServerMessage__FitIns__ConfigEntry *m =
        (Flwr__Proto__ServerMessage__FitIns__ConfigEntry *)protobuf_c_message_unpack(
            &flwr__proto__server_message__fit_ins__config_entry__descriptor, &a->alloc,
            entry->len, entry->ptr);
    const Flwr__Proto__Scalar *s;
    pt_scalar v = {0};
    if (!m) return pt_seterr(err, PT_ERR_PROTO, "malformed map<string, Scalar> entry");
    size_t klen = wire_key_len(entry, m->key);
    if (klen > max_key)
        return pt_seterr(err, PT_ERR_RANGE, "map key of %zu bytes, over the limit of %zu",
                         klen, max_key);
    if (dst->n >= max_entries && !pt_config_get_len(dst, m->key, klen))
        return pt_seterr(err, PT_ERR_RANGE, "more than %zu distinct map keys", max_entries);
    s = m->value;
    char esc[160]; /* the peer's key, escaped for the logs */
    if (!s || s->scalar_case == FLWR__PROTO__SCALAR__SCALAR__NOT_SET)
        return pt_seterr(err, PT_ERR_PROTO, "map entry '%s' has no Scalar value",
                         pt_escape(esc, sizeof esc, m->key, PT_ESC_CSTR));
    switch (s->scalar_case) {
    case FLWR__PROTO__SCALAR__SCALAR_DOUBLE:
        v.type = PT_SCALAR_DOUBLE;
        v.v.d = s->double_;
        break;
    case FLWR__PROTO__SCALAR__SCALAR_UINT64:
        v.type = PT_SCALAR_UINT64;
        v.v.u = s->uint64;
        break;
    case FLWR__PROTO__SCALAR__SCALAR_SINT64:
        v.type = PT_SCALAR_SINT64;
        v.v.i = s->sint64;
        break;
    case FLWR__PROTO__SCALAR__SCALAR_BOOL:
        v.type = PT_SCALAR_BOOL;
        v.v.b = s->bool_ ? 1 : 0;
        break;
    case FLWR__PROTO__SCALAR__SCALAR_STRING:
        v.type = PT_SCALAR_STRING;
        v.v.s.ptr = s->string ? s->string : (char *)"";
        v.v.s.len = strlen(v.v.s.ptr);
        break;
    case FLWR__PROTO__SCALAR__SCALAR_BYTES:
        v.type = PT_SCALAR_BYTES;
        v.v.s.ptr = (char *)s->bytes.data;
        v.v.s.len = s->bytes.len;
        break;
    default:
        return pt_seterr(err, PT_ERR_PROTO, "map entry '%s': unknown Scalar member %d",
                         pt_escape(esc, sizeof esc, m->key, PT_ESC_CSTR), (int)s->scalar_case);
    }
    int rc = pt_config_set_len(dst, m->key, klen, &v);
    if (rc)
        return pt_seterr(err, rc, "map entry '%s': %s",
                         pt_escape(esc, sizeof esc, m->key, PT_ESC_CSTR), pt_strerror(rc));
    return PT_OK;
}
