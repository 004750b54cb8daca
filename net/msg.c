/* msg.c - Flower's ServerMessage / ClientMessage: exact-size encoders that
 * write NPY tensors straight into the output, and zero-copy decoders that
 * walk the wire format and return views of the tensor bytes (Scalar maps
 * are unpacked by the protoc-c generated code, see scalar.c). */
#include "codec_int.h"

#include <stdlib.h>
#include <string.h>

#define TENSOR_TYPE "numpy.ndarray"
#define TENSOR_TYPE_LEN (sizeof TENSOR_TYPE - 1)

/* ---- wire reader ----------------------------------------------------------- */

int pnet_rd_varint(pnet_rd *r, uint64_t *v)
{
    uint64_t acc = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        if (i == 9 && b > 1) return -1; /* beyond 64 bits */
        acc |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = acc;
            return 0;
        }
    }
    return -1;
}

int pnet_rd_key(pnet_rd *r, uint32_t *field, int *wt)
{
    uint64_t k;
    if (pnet_rd_varint(r, &k)) return -1;
    if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff) return -1;
    *field = (uint32_t)(k >> 3);
    *wt = (int)(k & 7);
    return 0;
}

int pnet_rd_bytes(pnet_rd *r, pnet_bytes *out)
{
    uint64_t n;
    if (pnet_rd_varint(r, &n)) return -1;
    if (n > (uint64_t)(r->end - r->p)) return -1;
    out->ptr = r->p;
    out->len = (size_t)n;
    r->p += n;
    return 0;
}

int pnet_rd_skip(pnet_rd *r, int wt)
{
    uint64_t v;
    pnet_bytes b;
    switch (wt) {
    case PNET_WT_VARINT: return pnet_rd_varint(r, &v);
    case PNET_WT_I64:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case PNET_WT_I32:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    case PNET_WT_LEN: return pnet_rd_bytes(r, &b);
    default: return -1; /* groups (3, 4) and 6, 7 */
    }
}

/* ---- arena ------------------------------------------------------------------ */

struct pnet_arena_chunk {
    pnet_arena_chunk *next;
    max_align_t align[];
};

static void *arena_cb_alloc(void *data, size_t size)
{
    return pnet_arena_alloc(data, size);
}

static void arena_cb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

void pnet_arena_init(pnet_arena *a, void *first, size_t first_len)
{
    memset(a, 0, sizeof *a);
    a->alloc.alloc = arena_cb_alloc;
    a->alloc.free = arena_cb_free;
    a->alloc.allocator_data = a;
    a->block = first;
    a->cap = first ? first_len : 0;
}

void *pnet_arena_alloc(pnet_arena *a, size_t size)
{
    const size_t al = sizeof(max_align_t);
    size = (size + al - 1) / al * al;
    if (size == 0) size = al;
    size_t off = (a->used + al - 1) / al * al;
    if (a->block && off <= a->cap && size <= a->cap - off) {
        a->used = off + size;
        return a->block + off;
    }
    size_t csize = size > 16384 ? size : 16384;
    pnet_arena_chunk *c = malloc(sizeof *c + csize);
    if (!c) return NULL;
    c->next = a->chunks;
    a->chunks = c;
    a->block = (uint8_t *)c->align;
    a->cap = csize;
    a->used = size;
    return a->block;
}

void pnet_arena_release(pnet_arena *a)
{
    while (a->chunks) {
        pnet_arena_chunk *n = a->chunks->next;
        free(a->chunks);
        a->chunks = n;
    }
    a->block = NULL;
    a->used = a->cap = 0;
}

/* ---- Parameters ---------------------------------------------------------- */

size_t pnet_params_packed_size(const pt_params *p)
{
    size_t n = pnet_ld_size(TENSOR_TYPE_LEN);
    if (!p) return n;
    for (size_t i = 0; i < p->n; i++)
        n += pnet_ld_size(pnet_npy_size(p->t[i].ndim, p->t[i].shape));
    return n;
}

static uint8_t *params_pack(const pt_params *p, uint8_t *out)
{
    for (size_t i = 0; p && i < p->n; i++) {
        const pt_tensor *t = &p->t[i];
        size_t sz = pnet_npy_size(t->ndim, t->shape), w = 0;
        *out++ = 0x0a;
        out = pnet_put_varint(out, sz);
        pnet_npy_encode(t->data, t->ndim, t->shape, out, sz, &w, NULL);
        out += sz;
    }
    *out++ = 0x12;
    out = pnet_put_varint(out, TENSOR_TYPE_LEN);
    memcpy(out, TENSOR_TYPE, TENSOR_TYPE_LEN);
    return out + TENSOR_TYPE_LEN;
}

static int params_check(const pt_params *p, char *err)
{
    for (size_t i = 0; p && i < p->n; i++) {
        const pt_tensor *t = &p->t[i];
        if (t->ndim < 0 || t->ndim > PT_MAX_DIMS || !pnet_npy_size(t->ndim, t->shape))
            return pt_seterr(err, PT_ERR_INVAL, "tensor %zu: bad shape", i);
        if (t->numel && !t->data) return pt_seterr(err, PT_ERR_INVAL, "tensor %zu: no data", i);
    }
    return PT_OK;
}

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf + n, len - n, "(");
    for (int d = 0; d < ndim && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (n < len) snprintf(buf + n, len - n, ndim == 1 ? ",)" : ")");
}

int pnet_params_check(const pnet_params_view *v, const pt_params *like, unsigned flags,
                      char *err)
{
    pnet_npy_info one;
    char e2[PT_ERRLEN];
    int rc;
    if (like && v->n != like->n)
        return pt_seterr(err, PT_ERR_MISMATCH, "parameters: got %zu tensors, model has %zu",
                         v->n, like->n);
    for (size_t i = 0; i < v->n; i++) {
        if ((rc = pnet_npy_view(v->tensors[i].ptr, v->tensors[i].len, &one, e2)))
            return pt_seterr(err, rc, "tensor %zu: %s", i, e2);
        if (like) {
            int same = one.ndim == like->t[i].ndim;
            for (int d = 0; same && d < one.ndim; d++) same = one.shape[d] == like->t[i].shape[d];
            if (!same) {
                char a[160], b[160];
                fmt_shape(a, sizeof a, one.ndim, one.shape);
                fmt_shape(b, sizeof b, like->t[i].ndim, like->t[i].shape);
                return pt_seterr(err, PT_ERR_MISMATCH, "tensor %zu: shape %s, expected %s", i, a,
                                 b);
            }
        }
        if ((rc = pnet_npy_check(&one, flags, e2)))
            return pt_seterr(err, rc, "tensor %zu: %s", i, e2);
    }
    return PT_OK;
}

int pnet_params_decode(const pnet_params_view *v, pt_params *dst, unsigned flags, char *err)
{
    pnet_npy_info one, *info = &one;
    int fresh = dst->n == 0 && dst->buf == NULL && dst->t == NULL;
    char e2[PT_ERRLEN];
    /* validate everything before the first byte of dst changes */
    int rc = pnet_params_check(v, fresh ? NULL : dst, flags, err);
    if (rc) return rc;
    flags &= ~(unsigned)PNET_NPY_FINITE; /* checked */
    if (fresh) {
        int *ndims = NULL;
        const int64_t **shapes = NULL;
        info = calloc(v->n ? v->n : 1, sizeof *info);
        ndims = calloc(v->n ? v->n : 1, sizeof *ndims);
        shapes = calloc(v->n ? v->n : 1, sizeof *shapes);
        if (!info || !ndims || !shapes) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "parameters: out of memory");
            goto fail_fresh;
        }
        for (size_t i = 0; i < v->n; i++) {
            rc = pnet_npy_view(v->tensors[i].ptr, v->tensors[i].len, &info[i], e2);
            if (rc) {
                pt_seterr(err, rc, "tensor %zu: %s", i, e2);
                goto fail_fresh;
            }
            ndims[i] = info[i].ndim;
            shapes[i] = info[i].shape;
        }
        rc = pt_params_init(dst, v->n, ndims, (const int64_t *const *)shapes);
        if (rc) {
            pt_seterr(err, rc, "parameters: %s", pt_strerror(rc));
            goto fail_fresh;
        }
        for (size_t i = 0; i < v->n; i++) {
            rc = pnet_npy_to_f32(&info[i], dst->t[i].data, dst->t[i].numel, flags, e2);
            if (rc) {
                pt_seterr(err, rc, "tensor %zu: %s", i, e2);
                pt_params_free(dst);
                goto fail_fresh;
            }
        }
    fail_fresh:
        free(info);
        free(ndims);
        free(shapes);
        return rc;
    }
    for (size_t i = 0; i < v->n; i++) {
        rc = pnet_npy_view(v->tensors[i].ptr, v->tensors[i].len, &one, e2);
        if (rc) return pt_seterr(err, rc, "tensor %zu: %s", i, e2);
        rc = pnet_npy_to_f32(&one, dst->t[i].data, dst->t[i].numel, flags, e2);
        if (rc) return pt_seterr(err, rc, "tensor %zu: %s", i, e2);
    }
    return PT_OK;
}

/* ---- encoders -------------------------------------------------------------- */

/* Body sizes of the oneof member (without its tag and length). */
static int server_body_size(const pnet_server_out *m, size_t *out, char *err)
{
    size_t n = 0;
    switch (m->type) {
    case PNET_SMSG_RECONNECT:
        if (m->seconds) n = 1 + pnet_varint_size((uint64_t)m->seconds);
        break;
    case PNET_SMSG_GET_PROPERTIES:
    case PNET_SMSG_GET_PARAMETERS: n = pnet_config_field_size(1, m->config); break;
    case PNET_SMSG_FIT:
    case PNET_SMSG_EVALUATE: {
        int rc = params_check(m->params, err);
        if (rc) return rc;
        n = pnet_ld_size(pnet_params_packed_size(m->params)) +
            pnet_config_field_size(2, m->config);
        break;
    }
    default:
        return pt_seterr(err, PT_ERR_INVAL, "ServerMessage: bad message type %d", (int)m->type);
    }
    *out = n;
    return PT_OK;
}

int pnet_server_out_size(const pnet_server_out *m, size_t *size, char *err)
{
    size_t body;
    int rc = server_body_size(m, &body, err);
    if (rc) return rc;
    *size = pnet_ld_size(body);
    return PT_OK;
}

int pnet_server_out_pack(const pnet_server_out *m, uint8_t *buf, size_t cap, size_t *written,
                         char *err)
{
    size_t body;
    uint8_t *p = buf;
    int rc = server_body_size(m, &body, err);
    if (written) *written = 0;
    if (rc) return rc;
    if (cap < pnet_ld_size(body))
        return pt_seterr(err, PT_ERR_RANGE, "ServerMessage: buffer too small (%zu < %zu)", cap,
                         pnet_ld_size(body));
    *p++ = (uint8_t)(m->type << 3 | PNET_WT_LEN);
    p = pnet_put_varint(p, body);
    switch (m->type) {
    case PNET_SMSG_RECONNECT:
        if (m->seconds) {
            *p++ = 0x08;
            p = pnet_put_varint(p, (uint64_t)m->seconds);
        }
        break;
    case PNET_SMSG_GET_PROPERTIES:
    case PNET_SMSG_GET_PARAMETERS: p = pnet_config_field_pack(1, m->config, p); break;
    default:
        *p++ = 0x0a;
        p = pnet_put_varint(p, pnet_params_packed_size(m->params));
        p = params_pack(m->params, p);
        p = pnet_config_field_pack(2, m->config, p);
        break;
    }
    if (written) *written = (size_t)(p - buf);
    return PT_OK;
}

static size_t status_size(const pnet_client_out *m)
{
    size_t n = 0;
    if (m->status_code) n += 1 + pnet_varint_size((uint64_t)(int64_t)m->status_code);
    if (m->status_message && *m->status_message) n += pnet_ld_size(strlen(m->status_message));
    return n;
}

static int loss_bits_nonzero(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u != 0;
}

static int client_body_size(const pnet_client_out *m, size_t *out, char *err)
{
    size_t n = 0;
    if (m->type != PNET_CMSG_DISCONNECT && m->type != PNET_CMSG_GET_PROPERTIES &&
        m->type != PNET_CMSG_GET_PARAMETERS && m->type != PNET_CMSG_FIT &&
        m->type != PNET_CMSG_EVALUATE)
        return pt_seterr(err, PT_ERR_INVAL, "ClientMessage: bad message type %d", (int)m->type);
    if (m->type == PNET_CMSG_DISCONNECT) {
        if (m->reason) n = 1 + pnet_varint_size((uint64_t)(int64_t)m->reason);
        *out = n;
        return PT_OK;
    }
    n += pnet_ld_size(status_size(m));
    if ((m->type == PNET_CMSG_GET_PARAMETERS || m->type == PNET_CMSG_FIT) && m->params) {
        int rc = params_check(m->params, err);
        if (rc) return rc;
        n += pnet_ld_size(pnet_params_packed_size(m->params));
    }
    if (m->type == PNET_CMSG_EVALUATE && loss_bits_nonzero(m->loss)) n += 5;
    if ((m->type == PNET_CMSG_FIT || m->type == PNET_CMSG_EVALUATE) && m->num_examples)
        n += 1 + pnet_varint_size((uint64_t)m->num_examples);
    if (m->type != PNET_CMSG_GET_PARAMETERS)
        n += pnet_config_field_size(m->type == PNET_CMSG_GET_PROPERTIES ? 2 : 4, m->metrics);
    *out = n;
    return PT_OK;
}

int pnet_client_out_size(const pnet_client_out *m, size_t *size, char *err)
{
    size_t body;
    int rc = client_body_size(m, &body, err);
    if (rc) return rc;
    *size = pnet_ld_size(body);
    return PT_OK;
}

int pnet_client_out_pack(const pnet_client_out *m, uint8_t *buf, size_t cap, size_t *written,
                         char *err)
{
    size_t body;
    uint8_t *p = buf;
    int rc = client_body_size(m, &body, err);
    if (written) *written = 0;
    if (rc) return rc;
    if (cap < pnet_ld_size(body))
        return pt_seterr(err, PT_ERR_RANGE, "ClientMessage: buffer too small (%zu < %zu)", cap,
                         pnet_ld_size(body));
    *p++ = (uint8_t)(m->type << 3 | PNET_WT_LEN);
    p = pnet_put_varint(p, body);
    if (m->type == PNET_CMSG_DISCONNECT) {
        if (m->reason) {
            *p++ = 0x08;
            p = pnet_put_varint(p, (uint64_t)(int64_t)m->reason);
        }
        goto done;
    }
    *p++ = 0x0a; /* status */
    p = pnet_put_varint(p, status_size(m));
    if (m->status_code) {
        *p++ = 0x08;
        p = pnet_put_varint(p, (uint64_t)(int64_t)m->status_code);
    }
    if (m->status_message && *m->status_message) {
        size_t l = strlen(m->status_message);
        *p++ = 0x12;
        p = pnet_put_varint(p, l);
        memcpy(p, m->status_message, l);
        p += l;
    }
    if (m->type == PNET_CMSG_GET_PROPERTIES) {
        p = pnet_config_field_pack(2, m->metrics, p);
        goto done;
    }
    if ((m->type == PNET_CMSG_GET_PARAMETERS || m->type == PNET_CMSG_FIT) && m->params) {
        *p++ = 0x12;
        p = pnet_put_varint(p, pnet_params_packed_size(m->params));
        p = params_pack(m->params, p);
    }
    if (m->type == PNET_CMSG_EVALUATE && loss_bits_nonzero(m->loss)) {
        uint32_t u;
        memcpy(&u, &m->loss, 4);
        *p++ = 0x15;
        for (int i = 0; i < 4; i++) *p++ = (uint8_t)(u >> (8 * i));
    }
    if (m->type == PNET_CMSG_GET_PARAMETERS) goto done;
    if (m->num_examples) {
        *p++ = 0x18;
        p = pnet_put_varint(p, (uint64_t)m->num_examples);
    }
    p = pnet_config_field_pack(4, m->metrics, p);
done:
    if (written) *written = (size_t)(p - buf);
    return PT_OK;
}

/* ---- decoders --------------------------------------------------------------- */

typedef struct dctx {
    pnet_arena arena;
    const uint8_t *base;
    char *err;
    size_t max_entries, max_key; /* pnet_decode_limits, defaults applied */
    size_t max_tensors;          /* 0 = no cap */
} dctx;

/* The caps of lim with the defaults filled in. */
static int dctx_limits(dctx *c, const pnet_decode_limits *lim)
{
    c->max_entries = lim && lim->max_map_entries ? lim->max_map_entries : PNET_MAX_MAP_ENTRIES;
    c->max_key = lim && lim->max_key_len ? lim->max_key_len : PNET_MAX_KEY_LEN;
    c->max_tensors = lim ? lim->max_tensors : 0;
    if (c->max_key > PT_CONFIG_KEY_MAX)
        return pt_seterr(c->err, PT_ERR_INVAL, "decode limits: max_key_len %zu is over %d",
                         c->max_key, PT_CONFIG_KEY_MAX);
    return PT_OK;
}

static int bad(dctx *c, const pnet_rd *r, const char *what)
{
    return pt_seterr(c->err, PT_ERR_PROTO, "undecodable protobuf: %s at byte %zu", what,
                     (size_t)(r->p - c->base));
}

/* One step of the ServerMessage/ClientMessage envelope (oneof msg, members
 * 1..5, each length-delimited). Returns 1 with *f and *b set for a member, 0
 * when an unknown field was skipped, or PT_ERR_PROTO naming msg. */
static int next_member(dctx *c, pnet_rd *r, const char *msg, uint32_t *f, pnet_bytes *b)
{
    char what[80];
    int wt;
    if (pnet_rd_key(r, f, &wt)) {
        snprintf(what, sizeof what, "bad field key in %s", msg);
        return bad(c, r, what);
    }
    if (*f < 1 || *f > 5) {
        if (!pnet_rd_skip(r, wt)) return 0;
        snprintf(what, sizeof what, "malformed unknown field in %s", msg);
        return bad(c, r, what);
    }
    if (wt != PNET_WT_LEN) {
        snprintf(what, sizeof what, "wrong wire type for a %s member", msg);
        return bad(c, r, what);
    }
    if (pnet_rd_bytes(r, b)) {
        snprintf(what, sizeof what, "truncated %s member", msg);
        return bad(c, r, what);
    }
    return 1;
}

static void params_view_free(pnet_params_view *v)
{
    free(v->tensors);
    memset(v, 0, sizeof *v);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* Merge one Parameters body into v (tensors append, tensor_type replaces).
 * The tensors are counted first, so the array is sized once (to a power of
 * two: merged bodies grow it geometrically) and a body holding more than
 * c->max_tensors costs nothing. */
static int dec_params(dctx *c, const pnet_bytes *body, pnet_params_view *v)
{
    pnet_rd r = {body->ptr, body->ptr + body->len, c->base};
    size_t k = 0;
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        if (pnet_rd_key(&r, &f, &wt)) return bad(c, &r, "bad field key in Parameters");
        if ((f == 1 || f == 2) && wt != PNET_WT_LEN)
            return bad(c, &r, "wrong wire type in Parameters");
        if (pnet_rd_skip(&r, wt))
            return bad(c, &r, f == 1 || f == 2 ? "truncated Parameters field"
                                               : "malformed unknown field in Parameters");
        k += f == 1;
    }
    if (c->max_tensors && k > c->max_tensors - v->n)
        return pt_seterr(c->err, PT_ERR_MISMATCH,
                         "Parameters hold %zu tensors, more than the %zu expected", v->n + k,
                         c->max_tensors);
    if (k && (!v->n || v->n + k > pow2_at_least(v->n))) {
        size_t cap = pow2_at_least(v->n + k);
        if (cap > SIZE_MAX / sizeof *v->tensors)
            return pt_seterr(c->err, PT_ERR_NOMEM, "out of memory");
        pnet_bytes *t = realloc(v->tensors, cap * sizeof *t);
        if (!t) return pt_seterr(c->err, PT_ERR_NOMEM, "out of memory");
        v->tensors = t;
    }
    r.p = body->ptr;
    while (r.p < r.end) { /* checked above */
        uint32_t f;
        int wt;
        pnet_bytes b;
        pnet_rd_key(&r, &f, &wt);
        if (f == 1 || f == 2) {
            pnet_rd_bytes(&r, &b);
            if (f == 1)
                v->tensors[v->n++] = b;
            else
                v->tensor_type = b;
        } else {
            pnet_rd_skip(&r, wt);
        }
    }
    return PT_OK;
}

static int dec_status(dctx *c, const pnet_bytes *body, pnet_client_in *m)
{
    pnet_rd r = {body->ptr, body->ptr + body->len, c->base};
    while (r.p < r.end) {
        uint32_t f;
        int wt;
        uint64_t v;
        if (pnet_rd_key(&r, &f, &wt)) return bad(c, &r, "bad field key in Status");
        if (f == 1) {
            if (wt != PNET_WT_VARINT || pnet_rd_varint(&r, &v))
                return bad(c, &r, "bad Status.code");
            m->status_code = (int)(int32_t)v;
        } else if (f == 2) {
            if (wt != PNET_WT_LEN || pnet_rd_bytes(&r, &m->status_message))
                return bad(c, &r, "bad Status.message");
        } else if (pnet_rd_skip(&r, wt)) {
            return bad(c, &r, "malformed unknown field in Status");
        }
    }
    return PT_OK;
}

static int dec_map_entry(dctx *c, const pnet_rd *r, const pnet_bytes *b, pt_config *dst)
{
    char e2[PT_ERRLEN];
    int rc = pnet_config_entry_decode(b, dst, &c->arena, c->max_entries, c->max_key, e2);
    if (rc == PT_ERR_PROTO)
        return pt_seterr(c->err, rc, "undecodable protobuf: %s at byte %zu", e2,
                         (size_t)(b->ptr - c->base));
    (void)r;
    if (rc) return pt_seterr(c->err, rc, "%s", e2);
    return PT_OK;
}

/* Decode the body of ServerMessage member `type` into m (merging). */
static int dec_server_member(dctx *c, pnet_smsg_type type, const pnet_bytes *body,
                             pnet_server_in *m)
{
    pnet_rd r = {body->ptr, body->ptr + body->len, c->base};
    while (r.p < r.end) {
        uint32_t f;
        int wt, rc;
        pnet_bytes b;
        uint64_t v;
        if (pnet_rd_key(&r, &f, &wt)) return bad(c, &r, "bad field key");
        if (type == PNET_SMSG_RECONNECT && f == 1) {
            if (wt != PNET_WT_VARINT || pnet_rd_varint(&r, &v))
                return bad(c, &r, "bad ReconnectIns.seconds");
            m->seconds = (int64_t)v;
            continue;
        }
        int is_cfg = ((type == PNET_SMSG_GET_PROPERTIES || type == PNET_SMSG_GET_PARAMETERS) &&
                      f == 1) ||
                     ((type == PNET_SMSG_FIT || type == PNET_SMSG_EVALUATE) && f == 2);
        int is_par = (type == PNET_SMSG_FIT || type == PNET_SMSG_EVALUATE) && f == 1;
        if (is_cfg || is_par) {
            if (wt != PNET_WT_LEN) return bad(c, &r, "wrong wire type");
            if (pnet_rd_bytes(&r, &b)) return bad(c, &r, "truncated field");
            rc = is_cfg ? dec_map_entry(c, &r, &b, &m->config) : dec_params(c, &b, &m->params);
            if (rc) return rc;
        } else if (pnet_rd_skip(&r, wt)) {
            return bad(c, &r, "malformed unknown field");
        }
    }
    return PT_OK;
}

int pnet_server_in_decode(const uint8_t *buf, size_t len, const pnet_decode_limits *lim,
                          pnet_server_in *out, char *err)
{
    uint8_t first[2048];
    dctx c = {.base = buf, .err = err};
    pnet_rd r = {buf, buf + len, buf};
    int rc = PT_OK;
    memset(out, 0, sizeof *out);
    if (!buf && len) return pt_seterr(err, PT_ERR_INVAL, "ServerMessage: NULL buffer");
    if ((rc = dctx_limits(&c, lim))) return rc;
    pnet_arena_init(&c.arena, first, sizeof first);
    while (r.p < r.end) {
        uint32_t f;
        pnet_bytes b;
        int k = next_member(&c, &r, "ServerMessage", &f, &b);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k == 0) continue; /* unknown field, skipped */
        if (out->type != (pnet_smsg_type)f) { /* a different oneof member replaces */
            pnet_server_in_free(out);
            out->type = (pnet_smsg_type)f;
        }
        rc = dec_server_member(&c, out->type, &b, out);
        if (rc) break;
    }
    pnet_arena_release(&c.arena);
    if (rc) pnet_server_in_free(out);
    return rc;
}

static int dec_client_member(dctx *c, pnet_cmsg_type type, const pnet_bytes *body,
                             pnet_client_in *m)
{
    pnet_rd r = {body->ptr, body->ptr + body->len, c->base};
    while (r.p < r.end) {
        uint32_t f;
        int wt, rc;
        pnet_bytes b;
        uint64_t v;
        if (pnet_rd_key(&r, &f, &wt)) return bad(c, &r, "bad field key");
        if (type == PNET_CMSG_DISCONNECT) {
            if (f == 1) {
                if (wt != PNET_WT_VARINT || pnet_rd_varint(&r, &v))
                    return bad(c, &r, "bad DisconnectRes.reason");
                m->reason = (int)(int32_t)v;
            } else if (pnet_rd_skip(&r, wt)) {
                return bad(c, &r, "malformed unknown field");
            }
            continue;
        }
        if (f == 1) { /* status, in every other member */
            if (wt != PNET_WT_LEN || pnet_rd_bytes(&r, &b)) return bad(c, &r, "bad Status");
            if ((rc = dec_status(c, &b, m))) return rc;
        } else if (f == 2 && type == PNET_CMSG_EVALUATE) {
            if (wt != PNET_WT_I32 || r.end - r.p < 4) return bad(c, &r, "bad EvaluateRes.loss");
            uint32_t u = (uint32_t)r.p[0] | (uint32_t)r.p[1] << 8 | (uint32_t)r.p[2] << 16 |
                         (uint32_t)r.p[3] << 24;
            memcpy(&m->loss, &u, 4);
            r.p += 4;
        } else if (f == 2 && (type == PNET_CMSG_GET_PARAMETERS || type == PNET_CMSG_FIT)) {
            if (wt != PNET_WT_LEN || pnet_rd_bytes(&r, &b)) return bad(c, &r, "bad Parameters");
            if ((rc = dec_params(c, &b, &m->params))) return rc;
        } else if ((f == 2 && type == PNET_CMSG_GET_PROPERTIES) ||
                   (f == 4 && (type == PNET_CMSG_FIT || type == PNET_CMSG_EVALUATE))) {
            if (wt != PNET_WT_LEN || pnet_rd_bytes(&r, &b)) return bad(c, &r, "bad map entry");
            if ((rc = dec_map_entry(c, &r, &b, &m->metrics))) return rc;
        } else if (f == 3 && (type == PNET_CMSG_FIT || type == PNET_CMSG_EVALUATE)) {
            if (wt != PNET_WT_VARINT || pnet_rd_varint(&r, &v))
                return bad(c, &r, "bad num_examples");
            m->num_examples = (int64_t)v;
        } else if (pnet_rd_skip(&r, wt)) {
            return bad(c, &r, "malformed unknown field");
        }
    }
    return PT_OK;
}

int pnet_client_in_decode(const uint8_t *buf, size_t len, const pnet_decode_limits *lim,
                          pnet_client_in *out, char *err)
{
    uint8_t first[2048];
    dctx c = {.base = buf, .err = err};
    pnet_rd r = {buf, buf + len, buf};
    int rc = PT_OK;
    memset(out, 0, sizeof *out);
    if (!buf && len) return pt_seterr(err, PT_ERR_INVAL, "ClientMessage: NULL buffer");
    if ((rc = dctx_limits(&c, lim))) return rc;
    pnet_arena_init(&c.arena, first, sizeof first);
    while (r.p < r.end) {
        uint32_t f;
        pnet_bytes b;
        int k = next_member(&c, &r, "ClientMessage", &f, &b);
        if (k < 0) {
            rc = k;
            break;
        }
        if (k == 0) continue; /* unknown field, skipped */
        if (out->type != (pnet_cmsg_type)f) {
            pnet_client_in_free(out);
            out->type = (pnet_cmsg_type)f;
        }
        rc = dec_client_member(&c, out->type, &b, out);
        if (rc) break;
    }
    pnet_arena_release(&c.arena);
    if (rc) pnet_client_in_free(out);
    return rc;
}

void pnet_server_in_free(pnet_server_in *m)
{
    if (!m) return;
    pt_config_free(&m->config);
    params_view_free(&m->params);
    memset(m, 0, sizeof *m);
}

void pnet_client_in_free(pnet_client_in *m)
{
    if (!m) return;
    pt_config_free(&m->metrics);
    params_view_free(&m->params);
    memset(m, 0, sizeof *m);
}

const char *pnet_smsg_name(pnet_smsg_type t)
{
    static const char *const n[] = {"none", "reconnect_ins", "get_properties_ins",
                                    "get_parameters_ins", "fit_ins", "evaluate_ins"};
    return (unsigned)t < 6 ? n[t] : "unknown";
}

const char *pnet_cmsg_name(pnet_cmsg_type t)
{
    static const char *const n[] = {"none", "disconnect_res", "get_properties_res",
                                    "get_parameters_res", "fit_res", "evaluate_res"};
    return (unsigned)t < 6 ? n[t] : "unknown";
}

/* ---- into refcounted transport messages ------------------------------------- */

int pnet_server_out_msg(const pnet_server_out *m, pnet_msg **out, char *err)
{
    size_t sz, w;
    int rc;
    *out = NULL;
    if ((rc = pnet_server_out_size(m, &sz, err))) return rc;
    if ((rc = pnet_msg_new(out, sz)))
        return pt_seterr(err, rc, "ServerMessage of %zu bytes: %s", sz, pt_strerror(rc));
    if ((rc = pnet_server_out_pack(m, pnet_msg_data(*out), sz, &w, err))) {
        pnet_msg_unref(*out);
        *out = NULL;
    }
    return rc;
}

int pnet_client_out_msg(const pnet_client_out *m, pnet_msg **out, char *err)
{
    size_t sz, w;
    int rc;
    *out = NULL;
    if ((rc = pnet_client_out_size(m, &sz, err))) return rc;
    if ((rc = pnet_msg_new(out, sz)))
        return pt_seterr(err, rc, "ClientMessage of %zu bytes: %s", sz, pt_strerror(rc));
    if ((rc = pnet_client_out_pack(m, pnet_msg_data(*out), sz, &w, err))) {
        pnet_msg_unref(*out);
        *out = NULL;
    }
    return rc;
}
