/* codec_int.h - internals shared by the net codec (msg.c, scalar.c): protobuf
 * wire primitives, a bump arena usable as a ProtobufCAllocator, and the
 * Scalar-map field codec. Not part of the public API. */
#ifndef PETAL_NET_CODEC_INT_H
#define PETAL_NET_CODEC_INT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "pnet.h"

/* ---- wire primitives ----------------------------------------------------- */
enum { PNET_WT_VARINT = 0, PNET_WT_I64 = 1, PNET_WT_LEN = 2, PNET_WT_I32 = 5 };

static inline size_t pnet_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline uint8_t *pnet_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Size of a length-delimited field with a 1-byte tag and body of len bytes. */
static inline size_t pnet_ld_size(size_t len)
{
    return 1 + pnet_varint_size(len) + len;
}

/* A reader over buf[0..len); `base` is kept to report absolute offsets. */
typedef struct pnet_rd {
    const uint8_t *p, *end, *base;
} pnet_rd;

/* Read one varint. Returns 0, or -1 (truncated or longer than 10 bytes). */
int pnet_rd_varint(pnet_rd *r, uint64_t *v);
/* Read a field key: *field (>= 1) and *wt. Returns 0 or -1 (bad key). */
int pnet_rd_key(pnet_rd *r, uint32_t *field, int *wt);
/* Read a length-delimited body as a view. Returns 0 or -1 (truncated). */
int pnet_rd_bytes(pnet_rd *r, pnet_bytes *out);
/* Skip a field body of wire type wt. Returns 0 or -1 (truncated, group or
 * unknown wire type). */
int pnet_rd_skip(pnet_rd *r, int wt);

/* ---- arena allocator ------------------------------------------------------ */
/* Bump allocator: a caller-provided first block, then heap chunks. free() is
 * a no-op; pnet_arena_release frees the chunks. Use `alloc` as a
 * ProtobufCAllocator for unpacking. */
typedef struct pnet_arena_chunk pnet_arena_chunk;
typedef struct pnet_arena {
    ProtobufCAllocator alloc;
    uint8_t *block;
    size_t used, cap;
    pnet_arena_chunk *chunks;
} pnet_arena;

void pnet_arena_init(pnet_arena *a, void *first, size_t first_len);
void *pnet_arena_alloc(pnet_arena *a, size_t size);
void pnet_arena_release(pnet_arena *a);

/* ---- Scalar maps (scalar.c) ------------------------------------------------ */
/* Bytes of all entries of a map<string, Scalar> field number `field` (each
 * entry: tag + length + {key, value}); 0 for an empty/NULL map. */
size_t pnet_config_field_size(uint32_t field, const pt_config *c);
/* Write them; returns the end pointer. Caller reserved the size above. */
uint8_t *pnet_config_field_pack(uint32_t field, const pt_config *c, uint8_t *p);
/* Decode one map entry body (the bytes of one occurrence of the field) with
 * protobuf-c into dst (later keys replace earlier). A key longer than
 * max_key, or a new key when dst already holds max_entries, is refused.
 * Returns PT_OK, PT_ERR_PROTO (err says why), PT_ERR_RANGE (a cap),
 * PT_ERR_NOMEM. */
int pnet_config_entry_decode(const pnet_bytes *entry, pt_config *dst, pnet_arena *a,
                             size_t max_entries, size_t max_key, char *err);

#endif /* PETAL_NET_CODEC_INT_H */
