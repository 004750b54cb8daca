/*
 * grpc_msg.c - refcounted message buffers (pnet_msg), gRPC length-prefixed
 * message reassembly, grpc-message percent-encoding.
 */
#include "h2_int.h"

#include <stdlib.h>
#include <string.h>

#define MSG_LIMIT ((size_t)UINT32_MAX)
/* Initial allocation for a message whose prefix announces more: grow as the
 * bytes arrive, so a lying prefix cannot make us allocate gigabytes. */
#define RX_FIRST_CHUNK ((size_t)64 << 20)

int msg_alloc(pnet_msg **out, size_t cap)
{
    *out = NULL;
    if (cap > MSG_LIMIT) return PT_ERR_RANGE;
    pnet_msg *m = calloc(1, sizeof *m);
    if (!m) return PT_ERR_NOMEM;
    m->buf = malloc(GRPC_PREFIX + cap);
    if (!m->buf) {
        free(m);
        return PT_ERR_NOMEM;
    }
    m->cap = cap;
    m->refs = 1;
    *out = m;
    return PT_OK;
}

int msg_reserve(pnet_msg *m, size_t cap)
{
    if (cap <= m->cap) return PT_OK;
    if (cap > MSG_LIMIT) return PT_ERR_RANGE;
    uint8_t *b = realloc(m->buf, GRPC_PREFIX + cap);
    if (!b) return PT_ERR_NOMEM;
    m->buf = b;
    m->cap = cap;
    return PT_OK;
}

void msg_seal(pnet_msg *m)
{
    if (m->sealed) return;
    m->buf[0] = 0;
    m->buf[1] = (uint8_t)(m->len >> 24);
    m->buf[2] = (uint8_t)(m->len >> 16);
    m->buf[3] = (uint8_t)(m->len >> 8);
    m->buf[4] = (uint8_t)m->len;
    m->sealed = 1;
}

int pnet_msg_new(pnet_msg **out, size_t len)
{
    int rc = msg_alloc(out, len);
    if (rc == PT_OK) (*out)->len = len;
    return rc;
}

int pnet_msg_from(pnet_msg **out, const void *data, size_t len)
{
    int rc = pnet_msg_new(out, len);
    if (rc == PT_OK && len) memcpy((*out)->buf + GRPC_PREFIX, data, len);
    return rc;
}

uint8_t *pnet_msg_data(pnet_msg *m)
{
    return m->buf + GRPC_PREFIX;
}

size_t pnet_msg_len(const pnet_msg *m)
{
    return m->len;
}

int pnet_msg_set_len(pnet_msg *m, size_t len)
{
    if (m->sealed) return PT_ERR_STATE;
    if (len > m->cap) return PT_ERR_RANGE;
    m->len = len;
    return PT_OK;
}

pnet_msg *pnet_msg_ref(pnet_msg *m)
{
    __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
    return m;
}

void pnet_msg_unref(pnet_msg *m)
{
    if (!m) return;
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(m->buf);
        free(m);
    }
}

/* ---- reassembly --------------------------------------------------------- */

static void rx_account(grpc_rx *rx, size_t add, size_t sub)
{
    if (rx->buffered) {
        *rx->buffered += add;
        *rx->buffered -= sub;
    }
    if (rx->buffered2) {
        *rx->buffered2 += add;
        *rx->buffered2 -= sub;
    }
}

/* 1 if add more buffered bytes would pass a cap. */
static int rx_over(const grpc_rx *rx, size_t add)
{
    return (rx->buffered && rx->buf_cap && *rx->buffered + add > rx->buf_cap) ||
           (rx->buffered2 && rx->buf_cap2 && *rx->buffered2 + add > rx->buf_cap2);
}

/* May a released buffer of this capacity be kept for the next message? */
static int rx_keepable(const grpc_rx *rx, const pnet_msg *m)
{
    return !rx->keep_max || m->cap <= rx->keep_max;
}

uint8_t *grpc_rx_direct(grpc_rx *rx, size_t *max)
{
    if (!rx->cur || rx->got >= rx->need) return NULL;
    size_t left = rx->need - rx->got;
    if (rx->got + left > rx->cur->cap) {
        size_t want = rx->cur->cap * 2;
        if (want < rx->got + H2_DIRECT_MIN) want = rx->got + H2_DIRECT_MIN;
        if (want > rx->need) want = rx->need;
        if (rx_over(rx, want - rx->got)) return NULL; /* let the normal path report the cap */
        if (msg_reserve(rx->cur, want) != PT_OK) return NULL;
    }
    size_t room = rx->cur->cap - rx->got;
    *max = left < room ? left : room;
    return rx->cur->buf + GRPC_PREFIX + rx->got;
}

int grpc_rx_partial(const grpc_rx *rx)
{
    return rx->hdr_got > 0 || rx->cur != NULL;
}

void grpc_rx_free(grpc_rx *rx)
{
    if (rx->cur) rx_account(rx, 0, rx->got);
    pnet_msg_unref(rx->cur);
    pnet_msg_unref(rx->spare);
    pnet_msg_unref(rx->lent);
    rx->cur = rx->spare = rx->lent = NULL;
    rx->hdr_got = rx->need = rx->got = 0;
}

/* Start a message of need body bytes: reuse the spare buffer when possible. */
static int rx_begin(grpc_rx *rx, size_t need)
{
    size_t first = need < RX_FIRST_CHUNK ? need : RX_FIRST_CHUNK;
    if (!rx->spare && rx->lent && msg_refs(rx->lent) == 1 && rx_keepable(rx, rx->lent)) {
        rx->spare = rx->lent; /* the owner is done with it */
        rx->lent = NULL;
    }
    if (rx->lent && msg_refs(rx->lent) == 1) { /* released, too big to keep */
        pnet_msg_unref(rx->lent);
        rx->lent = NULL;
    }
    pnet_msg *m = rx->spare;
    rx->spare = NULL;
    if (m && msg_refs(m) != 1) { /* should not happen: we only keep sole refs */
        pnet_msg_unref(m);
        m = NULL;
    }
    if (m) {
        if (m->cap < first && msg_reserve(m, need <= m->cap * 2 ? need : first) != PT_OK) {
            pnet_msg_unref(m);
            m = NULL;
        }
    }
    if (!m && msg_alloc(&m, first) != PT_OK) return PT_ERR_NOMEM;
    m->len = 0;
    m->sealed = 0;
    rx->cur = m;
    rx->need = need;
    rx->got = 0;
    return PT_OK;
}

static int rx_deliver(grpc_rx *rx, grpc_rx_cb cb, void *arg)
{
    pnet_msg *m = rx->cur;
    rx->cur = NULL;
    rx_account(rx, 0, rx->got);
    m->len = rx->need;
    msg_seal(m); /* the prefix is the received one: the message can be forwarded */
    rx->hdr_got = 0;
    rx->need = rx->got = 0;
    int rc = cb(m, arg);
    if (msg_refs(m) == 1 && !rx->spare && rx_keepable(rx, m)) {
        rx->spare = m; /* nobody kept it: reuse the buffer */
    } else if (msg_refs(m) > 1 && m->cap >= ((size_t)1 << 20) && rx_keepable(rx, m)) {
        /* kept by the owner: hold on to it (big ones only) to reuse later */
        if (rx->lent && msg_refs(rx->lent) == 1 && !rx->spare)
            rx->spare = rx->lent;
        else
            pnet_msg_unref(rx->lent);
        rx->lent = m;
    } else {
        pnet_msg_unref(m);
    }
    return rc;
}

int grpc_rx_feed(grpc_rx *rx, const uint8_t *p, size_t n, grpc_rx_cb cb, void *arg, char *err)
{
    while (n > 0) {
        if (!rx->cur) {
            size_t take = GRPC_PREFIX - rx->hdr_got;
            if (take > n) take = n;
            memcpy(rx->hdr + rx->hdr_got, p, take);
            rx->hdr_got += take;
            p += take;
            n -= take;
            if (rx->hdr_got < GRPC_PREFIX) break;
            if (rx->hdr[0] != 0)
                return pt_seterr(err, PT_ERR_PROTO,
                                 rx->hdr[0] == 1
                                     ? "compressed gRPC message, but only identity is accepted"
                                     : "bad gRPC message flags 0x%02x",
                                 rx->hdr[0]);
            size_t need = (size_t)rx->hdr[1] << 24 | (size_t)rx->hdr[2] << 16 |
                          (size_t)rx->hdr[3] << 8 | rx->hdr[4];
            if (need > rx->max)
                return pt_seterr(err, PT_ERR_RANGE,
                                 "gRPC message of %zu bytes is over the limit of %zu bytes", need,
                                 rx->max);
            if (rx->buffered && rx->buf_cap && *rx->buffered + need > rx->buf_cap &&
                need > RX_FIRST_CHUNK)
                return pt_seterr(err, PT_ERR_RANGE,
                                 "gRPC message of %zu bytes would exceed the connection's "
                                 "buffer cap of %zu bytes", need, rx->buf_cap);
            if (rx->buffered2 && rx->buf_cap2 && need > rx->buf_cap2)
                return pt_seterr(err, PT_ERR_RANGE,
                                 "gRPC message of %zu bytes would exceed the server's "
                                 "receive buffer cap of %zu bytes", need, rx->buf_cap2);
            if (rx_begin(rx, need) != PT_OK)
                return pt_seterr(err, PT_ERR_NOMEM, "out of memory for a %zu-byte message", need);
        }
        size_t take = rx->need - rx->got;
        if (take > n) take = n;
        if (rx->got + take > rx->cur->cap) {
            size_t want = rx->cur->cap * 2;
            if (want < rx->got + take) want = rx->got + take;
            if (want > rx->need) want = rx->need;
            if (msg_reserve(rx->cur, want) != PT_OK)
                return pt_seterr(err, PT_ERR_NOMEM, "out of memory for a %zu-byte message",
                                 rx->need);
        }
        if (rx->buffered && rx->buf_cap && *rx->buffered + take > rx->buf_cap)
            return pt_seterr(err, PT_ERR_RANGE,
                             "connection buffers over the cap of %zu bytes", rx->buf_cap);
        if (rx->buffered2 && rx->buf_cap2 && *rx->buffered2 + take > rx->buf_cap2)
            return pt_seterr(err, PT_ERR_RANGE,
                             "server receive buffers over the cap of %zu bytes (all clients)",
                             rx->buf_cap2);
        uint8_t *dst = rx->cur->buf + GRPC_PREFIX + rx->got;
        if (take && dst != p) memmove(dst, p, take); /* equal: read in place (direct) */
        rx->got += take;
        rx_account(rx, take, 0);
        p += take;
        n -= take;
        if (rx->got == rx->need) {
            int rc = rx_deliver(rx, cb, arg);
            if (rc) return rc;
        }
    }
    return PT_OK;
}

/* ---- percent-encoding ---------------------------------------------------- */

size_t grpc_pct_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!cap) return 0;
    for (const unsigned char *s = (const unsigned char *)(in ? in : ""); *s; s++) {
        if (*s >= 0x20 && *s <= 0x7e && *s != '%') {
            if (o + 1 >= cap) break;
            out[o++] = (char)*s;
        } else {
            if (o + 3 >= cap) break;
            out[o++] = '%';
            out[o++] = hex[*s >> 4];
            out[o++] = hex[*s & 15];
        }
    }
    out[o] = 0;
    return o;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t grpc_pct_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (!cap) return 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        int a, b;
        if (in[i] == '%' && i + 2 < n && (a = hexval(in[i + 1])) >= 0 &&
            (b = hexval(in[i + 2])) >= 0) {
            out[o++] = (char)(a << 4 | b);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = 0;
    return o;
}
