/*
 * h2.c - one HTTP/2 connection: nghttp2 driven with mem_recv/mem_send over a
 * non-blocking socket (cleartext or TLS), and a zero-copy output queue.
 *
 * Outgoing DATA uses NGHTTP2_DATA_FLAG_NO_COPY: the send_data callback does
 * not write, it appends the 9-byte frame header (copied) and references to
 * the message buffers (pnet_msg refcounts, or borrowed client bytes) to the
 * output queue, which is written with writev (cleartext) or through a
 * staging buffer with SSL_write (TLS).
 */
#include "h2_int.h"
#include "tls_int.h"
#include "sock_int.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TLS_STAGE ((size_t)64 << 10)
#define IOV_BATCH 1024

/* ---- stream tx pieces ---------------------------------------------------- */

static int tx_append(h2_tx *tx, h2_piece *pc)
{
    if (tx->tail)
        tx->tail->next = pc;
    else
        tx->head = pc;
    tx->tail = pc;
    tx->queued += pc->len;
    return PT_OK;
}

int h2_tx_push_msg(h2_tx *tx, pnet_msg *m)
{
    h2_piece *pc = calloc(1, sizeof *pc);
    if (!pc) return PT_ERR_NOMEM;
    msg_seal(m);
    pc->ref = pnet_msg_ref(m);
    pc->p = m->buf;
    pc->len = GRPC_PREFIX + m->len;
    pc->counts_msg = 1;
    pc->msg_len = m->len;
    return tx_append(tx, pc);
}

int h2_tx_push_bytes(h2_tx *tx, const void *p, size_t len)
{
    h2_piece *hd = calloc(1, sizeof *hd), *body = NULL;
    if (!hd) return PT_ERR_NOMEM;
    if (len && !(body = calloc(1, sizeof *body))) {
        free(hd);
        return PT_ERR_NOMEM;
    }
    hd->inl[0] = 0;
    hd->inl[1] = (uint8_t)(len >> 24);
    hd->inl[2] = (uint8_t)(len >> 16);
    hd->inl[3] = (uint8_t)(len >> 8);
    hd->inl[4] = (uint8_t)len;
    hd->len = GRPC_PREFIX;
    if (body) {
        body->p = p;
        body->len = len;
        body->counts_msg = 1;
        body->msg_len = len;
        tx_append(tx, hd);
        tx_append(tx, body);
    } else {
        hd->counts_msg = 1;
        tx_append(tx, hd);
    }
    return PT_OK;
}

void h2_tx_clear(h2_tx *tx)
{
    h2_piece *pc = tx->head;
    while (pc) {
        h2_piece *nx = pc->next;
        pnet_msg_unref(pc->ref);
        free(pc);
        pc = nx;
    }
    tx->head = tx->tail = NULL;
    tx->off = tx->queued = 0;
    free(tx->message);
    tx->message = NULL;
}

/* ---- output queue -------------------------------------------------------- */

static size_t outq_live(const h2_outq *q)
{
    return q->n - q->head;
}

static h2_seg *outq_push(h2_outq *q)
{
    if (q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->v, q->v + q->head, (q->n - q->head) * sizeof *q->v);
            q->n -= q->head;
            q->head = 0;
        }
        if (q->n == q->cap) {
            size_t nc = q->cap ? q->cap * 2 : 256;
            h2_seg *v = realloc(q->v, nc * sizeof *v);
            if (!v) return NULL;
            q->v = v;
            q->cap = nc;
        }
    }
    h2_seg *s = &q->v[q->n++];
    memset(s, 0, offsetof(h2_seg, inl));
    return s;
}

/* Append len bytes copied inline (merged with a previous inline segment when
 * it has room: frame header + gRPC prefix travel together). */
static int outq_inline(h2_outq *q, const uint8_t *p, size_t len)
{
    while (len) {
        h2_seg *last = q->n > q->head ? &q->v[q->n - 1] : NULL;
        if (last && !last->p && last->len < sizeof last->inl &&
            !(q->n - 1 == q->head && q->off)) {
            size_t room = sizeof last->inl - last->len, k = len < room ? len : room;
            memcpy(last->inl + last->len, p, k);
            last->len += k;
            q->bytes += k;
            p += k;
            len -= k;
            continue;
        }
        h2_seg *s = outq_push(q);
        if (!s) return PT_ERR_NOMEM;
        size_t k = len < sizeof s->inl ? len : sizeof s->inl;
        memcpy(s->inl, p, k);
        s->len = k;
        q->bytes += k;
        p += k;
        len -= k;
    }
    return PT_OK;
}

static void seg_release(h2_seg *s)
{
    pnet_msg_unref(s->ref);
    free(s->own);
}

static void outq_clear(h2_outq *q)
{
    for (size_t i = q->head; i < q->n; i++) seg_release(&q->v[i]);
    free(q->v);
    memset(q, 0, sizeof *q);
}

/* Drop n written bytes from the front. */
static void outq_consume(h2_outq *q, size_t n)
{
    q->bytes -= n;
    while (n) {
        h2_seg *s = &q->v[q->head];
        size_t left = s->len - q->off;
        if (n < left) {
            q->off += n;
            return;
        }
        n -= left;
        seg_release(s);
        q->head++;
        q->off = 0;
    }
    if (q->head == q->n) q->head = q->n = 0;
}

static const uint8_t *seg_ptr(const h2_seg *s)
{
    return s->p ? s->p : s->inl;
}

/* ---- nghttp2 data source callbacks ---------------------------------------- */

size_t h2_make_trailers(h2_trailers *t, int status, const char *message)
{
    snprintf(t->status, sizeof t->status, "%d", status);
    nghttp2_nv a = H2_NV("grpc-status", t->status);
    t->nv[0] = a;
    if (!message || !*message) return 1;
    grpc_pct_encode(message, t->msg, sizeof t->msg);
    nghttp2_nv b = H2_NV("grpc-message", t->msg);
    t->nv[1] = b;
    return 2;
}

static ssize_t tx_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t length,
                       uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)buf;
    (void)ud;
    h2_tx *tx = src->ptr;
    size_t n = tx->queued < length ? tx->queued : length;
    if (n == 0 && !tx->ending) return NGHTTP2_ERR_DEFERRED;
    if (n > 0) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (tx->ending && n == tx->queued) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (tx->trailers) {
            h2_trailers t;
            size_t k = h2_make_trailers(&t, tx->status, tx->message);
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(ng, sid, t.nv, k) != 0)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        tx->eof_done = 1;
    }
    return (ssize_t)n;
}

static int tx_send(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                   size_t length, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    h2_conn *c = ud;
    h2_tx *tx = src->ptr;
    h2_outq *q = &c->out;
    if (q->bytes >= H2_OUT_HIGH || outq_live(q) >= H2_OUT_SEGS) return NGHTTP2_ERR_WOULDBLOCK;
    if (outq_inline(q, framehd, 9)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (frame->data.padlen > 0) {
        uint8_t pl = (uint8_t)(frame->data.padlen - 1);
        if (outq_inline(q, &pl, 1)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    while (length) {
        h2_piece *pc = tx->head;
        if (!pc) return NGHTTP2_ERR_CALLBACK_FAILURE; /* cannot happen: tx_read counted it */
        size_t avail = pc->len - tx->off, take = length < avail ? length : avail;
        if (!pc->p) {
            if (outq_inline(q, pc->inl + tx->off, take)) return NGHTTP2_ERR_CALLBACK_FAILURE;
        } else {
            h2_seg *s = outq_push(q);
            if (!s) return NGHTTP2_ERR_CALLBACK_FAILURE;
            s->p = pc->p + tx->off;
            s->len = take;
            s->ref = pc->ref ? pnet_msg_ref(pc->ref) : NULL;
            q->bytes += take;
        }
        tx->off += take;
        tx->queued -= take;
        length -= take;
        if (tx->off == pc->len) {
            if (pc->counts_msg) {
                if (tx->msgs_out) ++*tx->msgs_out, *tx->msg_bytes_out += pc->msg_len;
                if (tx->msgs_out2) ++*tx->msgs_out2, *tx->msg_bytes_out2 += pc->msg_len;
            }
            tx->head = pc->next;
            if (!tx->head) tx->tail = NULL;
            pnet_msg_unref(pc->ref);
            free(pc);
            tx->off = 0;
        }
    }
    if (frame->data.padlen > 1) {
        uint8_t zero[256] = {0};
        if (outq_inline(q, zero, frame->data.padlen - 1)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
}

static ssize_t read_len(nghttp2_session *ng, uint8_t type, int32_t sid, int32_t swin,
                        int32_t stwin, uint32_t maxf, void *ud)
{
    (void)ng;
    (void)type;
    (void)sid;
    (void)ud;
    ssize_t n = (ssize_t)maxf;
    if (swin > 0 && swin < n) n = swin;
    if (stwin > 0 && stwin < n) n = stwin;
    return n > 0 ? n : 1;
}

nghttp2_data_provider h2_tx_provider(h2_tx *tx)
{
    nghttp2_data_provider d;
    d.source.ptr = tx;
    d.read_callback = tx_read;
    return d;
}

void h2_callbacks_common(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_send_data_callback(cb, tx_send);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cb, read_len);
}

/* ---- connection ------------------------------------------------------------ */

int h2_conn_init(h2_conn *c, int fd, SSL *ssl, const char *peer, uint8_t *shared_rbuf)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->ssl = ssl;
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "?");
    c->rbuf = shared_rbuf;
    if (!c->rbuf) {
        if (!(c->rbuf = malloc(H2_RBUF))) return PT_ERR_NOMEM;
        c->own_rbuf = 1;
    }
    /* the TLS staging buffer is allocated when needed, freed when drained:
       idle connections keep none */
    return PT_OK;
}

void h2_conn_free(h2_conn *c)
{
    if (c->ng) nghttp2_session_del(c->ng);
    c->ng = NULL;
    outq_clear(&c->out);
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    if (c->own_rbuf) free(c->rbuf);
    free(c->tbuf);
    c->rbuf = c->tbuf = NULL;
}

int h2_conn_settings(h2_conn *c, int server, size_t max_header_list)
{
    nghttp2_settings_entry iv[5];
    size_t n = 0;
    iv[n].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[n++].value = 100;
    iv[n].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[n++].value = (uint32_t)H2_WINDOW;
    iv[n].settings_id = NGHTTP2_SETTINGS_MAX_FRAME_SIZE;
    iv[n++].value = (uint32_t)H2_MAX_FRAME;
    iv[n].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[n++].value = (uint32_t)(max_header_list > UINT32_MAX ? UINT32_MAX : max_header_list);
    if (!server) {
        iv[n].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
        iv[n++].value = 0;
    }
    int rv = nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, n);
    if (rv == 0) rv = nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, H2_WINDOW);
    return rv ? PT_ERR_NOMEM : PT_OK;
}

static int conn_fail(h2_conn *c, int code, const char *fmt, const char *detail)
{
    c->dead = 1;
    if (!c->why[0]) snprintf(c->why, sizeof c->why, fmt, detail);
    return code;
}

/* One read: > 0 bytes, 0 EOF, -1 would block, -2 error (c->why set). */
static ssize_t io_read(h2_conn *c, uint8_t *buf, size_t n)
{
    if (!c->ssl) {
        ssize_t r;
        do r = read(c->fd, buf, n);
        while (r < 0 && errno == EINTR);
        if (r >= 0) return r;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
        conn_fail(c, PT_ERR_NET, "read failed: %s", strerror(errno));
        return -2;
    }
    ERR_clear_error();
    c->tls_want_write = 0;
    sock_sigpipe g;
    sock_sigpipe_block(&g);
    int r = SSL_read(c->ssl, buf, (int)(n > INT_MAX ? INT_MAX : n));
    sock_sigpipe_restore(&g);
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return -1;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->tls_want_write = 1;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0; /* EOF without close_notify */
    char eb[160];
    conn_fail(c, PT_ERR_TLS, "TLS read failed: %s", tls_errstr(eb, sizeof eb));
    return -2;
}

/* ---- inbound flood limits -------------------------------------------------- */

const h2_flood_limit h2_flood_limits[H2_FL_KINDS] = {
    [H2_FL_SETTINGS] = {"SETTINGS", 100, 10},
    [H2_FL_PING] = {"PING", 200, 50},
    [H2_FL_RST] = {"RST_STREAM", 100, 10},
    [H2_FL_HEADERS] = {"HEADERS", 200, 20},
    [H2_FL_PRIORITY] = {"PRIORITY", 100, 10},
    [H2_FL_EMPTY] = {"empty or unknown", 100, 10},
};

void h2_conn_flood_limits(h2_conn *c, size_t max_block)
{
    double now = pt_now();
    c->flood.on = 1;
    c->flood.max_block = max_block;
    for (int k = 0; k < H2_FL_KINDS; k++) {
        c->flood.tokens[k] = h2_flood_limits[k].burst;
        c->flood.last[k] = now;
    }
}

static int flood_take(h2_flood *f, int k)
{
    const h2_flood_limit *l = &h2_flood_limits[k];
    double now = pt_now();
    f->tokens[k] += (now - f->last[k]) * l->per_s;
    if (f->tokens[k] > l->burst) f->tokens[k] = l->burst;
    f->last[k] = now;
    if (f->tokens[k] < 1) {
        snprintf(f->why, sizeof f->why, "%s flood (over %g frames, then %g/s)", l->name,
                 l->burst, l->per_s);
        return -1;
    }
    f->tokens[k] -= 1;
    return 0;
}

/* Count one inbound frame header; -1 when it passes a limit (f->why says which). */
static int flood_frame(h2_flood *f, uint8_t type, uint8_t flags, size_t len)
{
    int ack = flags & NGHTTP2_FLAG_ACK;
    if (f->in_block && type != NGHTTP2_CONTINUATION) return 0; /* nghttp2 rejects it */
    switch (type) {
    case NGHTTP2_DATA:
        return len || (flags & NGHTTP2_FLAG_END_STREAM) ? 0 : flood_take(f, H2_FL_EMPTY);
    case NGHTTP2_HEADERS:
        f->block_bytes = len;
        f->block_frames = 0;
        f->in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
        if (flood_take(f, H2_FL_HEADERS)) return -1;
        break;
    case NGHTTP2_CONTINUATION:
        f->block_bytes += len;
        f->in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
        if (++f->block_frames > H2_MAX_CONTINUATIONS) {
            snprintf(f->why, sizeof f->why, "CONTINUATION flood (over %d frames in a header block)",
                     H2_MAX_CONTINUATIONS);
            return -1;
        }
        break;
    case NGHTTP2_SETTINGS: return ack ? 0 : flood_take(f, H2_FL_SETTINGS);
    case NGHTTP2_PING: return ack ? 0 : flood_take(f, H2_FL_PING);
    case NGHTTP2_RST_STREAM: return flood_take(f, H2_FL_RST);
    case NGHTTP2_PRIORITY: return flood_take(f, H2_FL_PRIORITY);
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_GOAWAY:
    case NGHTTP2_PUSH_PROMISE: return 0; /* cheap, or a connection error in nghttp2 */
    default: return flood_take(f, H2_FL_EMPTY);
    }
    if (f->max_block && f->block_bytes > f->max_block) {
        snprintf(f->why, sizeof f->why, "header block over %zu bytes", f->max_block);
        return -1;
    }
    return 0;
}

/* Advance the inbound frame tracker over p[0..n): the same bytes nghttp2
 * is about to parse (HTTP/2 framing: a 9-byte header with a 24-bit length).
 * Returns how many bytes nghttp2 may see: n, or fewer when a frame passes
 * a flood limit (up to the start of that frame's header). */
static size_t track_frames(h2_conn *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    if (!c->trk_init) {
        c->trk_init = 1;
        c->trk_preface = nghttp2_session_check_server_session(c->ng) ? NGHTTP2_CLIENT_MAGIC_LEN
                                                                      : 0;
    }
    while (off < n) {
        size_t k, left = n - off;
        if (c->trk_preface) {
            k = left < c->trk_preface ? left : c->trk_preface;
            c->trk_preface -= k;
        } else if (c->trk_left) {
            k = left < c->trk_left ? left : c->trk_left;
            c->trk_left -= k;
        } else {
            k = sizeof c->trk_hd - c->trk_hd_got;
            if (k > left) k = left;
            memcpy(c->trk_hd + c->trk_hd_got, p + off, k);
            c->trk_hd_got += k;
            if (c->trk_hd_got == sizeof c->trk_hd) {
                const uint8_t *h = c->trk_hd;
                size_t start = off + k >= sizeof c->trk_hd ? off + k - sizeof c->trk_hd : 0;
                c->trk_hd_got = 0;
                c->trk_left = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
                c->trk_type = h[3];
                c->trk_flags = h[4];
                c->trk_sid = (int32_t)(((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 |
                                        (uint32_t)h[7] << 8 | h[8]) &
                                       0x7fffffffu);
                if (c->flood.on && flood_frame(&c->flood, c->trk_type, c->trk_flags, c->trk_left))
                    return start;
            }
        }
        off += k;
    }
    return n;
}

/* Where the next read goes: straight into the owner's message buffer when
 * the read can hold only payload of a DATA frame all of whose bytes so far
 * nghttp2 delivered; else the read buffer. */
static uint8_t *read_dst(h2_conn *c, size_t *want)
{
    *want = H2_RBUF;
    if (!c->direct || !c->tail_payload || c->trk_type != NGHTTP2_DATA ||
        (c->trk_flags & NGHTTP2_FLAG_PADDED) || c->trk_left < H2_DIRECT_MIN || c->trk_hd_got)
        return c->rbuf;
    size_t max = 0;
    uint8_t *d = c->direct(c, c->trk_sid, &max);
    if (!d || max < H2_DIRECT_MIN) return c->rbuf;
    *want = max < c->trk_left ? max : c->trk_left;
    return d;
}

static int flood_stop(h2_conn *c)
{
    if (!c->why[0]) snprintf(c->why, sizeof c->why, "%s", c->flood.why);
    nghttp2_session_terminate_session(c->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    return PT_ERR_RANGE;
}

int h2_conn_read(h2_conn *c, int max_reads)
{
    if (c->flood.why[0]) return PT_ERR_RANGE; /* over a limit: read nothing more */
    for (int i = 0; i < max_reads && !c->dead && !c->stop_read; i++) {
        size_t want;
        uint8_t *dst = read_dst(c, &want);
        ssize_t r = io_read(c, dst, want);
        if (r == -1) return PT_OK;
        if (r == -2) return c->ssl ? PT_ERR_TLS : PT_ERR_NET;
        if (r == 0) {
            c->eof = 1;
            if (!c->why[0]) snprintf(c->why, sizeof c->why, "peer closed the connection");
            return PT_ERR_CLOSED;
        }
        c->wire_in += (uint64_t)r;
        size_t feed = track_frames(c, dst, (size_t)r);
        c->tail_payload = 0;
        c->in_end = dst + feed;
        ssize_t k = feed ? nghttp2_session_mem_recv(c->ng, dst, feed) : 0;
        c->in_end = NULL;
        if (k < 0) {
            if (k == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
                return conn_fail(c, PT_ERR_PROTO, "%s",
                                 "bad HTTP/2 connection preface (not an h2c/gRPC client)");
            return conn_fail(c, PT_ERR_PROTO, "HTTP/2 error: %s", nghttp2_strerror((int)k));
        }
        if ((size_t)k != feed) /* nghttp2 consumes all input unless paused (never here) */
            return conn_fail(c, PT_ERR_PROTO, "%s", "HTTP/2 input not consumed");
        if (feed < (size_t)r) return flood_stop(c);
        if ((size_t)r < want && !c->ssl) return PT_OK; /* drained the socket */
    }
    return PT_OK;
}

static int flush_plain(h2_conn *c)
{
    h2_outq *q = &c->out;
    while (q->bytes) {
        struct iovec iov[IOV_BATCH];
        int k = 0;
        for (size_t i = q->head; i < q->n && k < IOV_BATCH; i++, k++) {
            size_t skip = i == q->head ? q->off : 0;
            iov[k].iov_base = (void *)(seg_ptr(&q->v[i]) + skip);
            iov[k].iov_len = q->v[i].len - skip;
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)k;
        ssize_t w;
        do w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return PT_OK;
            return conn_fail(c, PT_ERR_NET, "write failed: %s", strerror(errno));
        }
        c->wire_out += (uint64_t)w;
        outq_consume(q, (size_t)w);
    }
    return PT_OK;
}

/* TLS: big segments go to SSL_write straight from the message buffers;
 * small ones (frame headers, control frames) are batched in a staging
 * buffer so they do not become one TLS record each. */
#define TLS_DIRECT_MIN ((size_t)16 << 10)

static int tls_write(h2_conn *c, const uint8_t *p, size_t n, size_t *done)
{
    ERR_clear_error();
    int w = SSL_write(c->ssl, p, (int)(n > (1u << 30) ? 1u << 30 : n));
    if (w > 0) {
        *done = (size_t)w;
        c->wire_out += (uint64_t)w;
        return PT_OK;
    }
    *done = 0;
    int e = SSL_get_error(c->ssl, w);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return PT_ERR_CLOSED; /* later */
    char eb[160];
    return conn_fail(c, PT_ERR_TLS, "TLS write failed: %s", tls_errstr(eb, sizeof eb));
}

static int flush_tls(h2_conn *c)
{
    h2_outq *q = &c->out;
    for (;;) {
        size_t done;
        int rc;
        if (c->toff < c->tlen) { /* staged bytes first (same buffer on retry) */
            rc = tls_write(c, c->tbuf + c->toff, c->tlen - c->toff, &done);
            if (rc) return rc == PT_ERR_CLOSED ? PT_OK : rc;
            c->toff += done;
            continue;
        }
        c->toff = c->tlen = 0;
        if (!q->bytes) {
            free(c->tbuf); /* drained: an idle connection holds no staging buffer */
            c->tbuf = NULL;
            return PT_OK;
        }
        h2_seg *s = &q->v[q->head];
        size_t left = s->len - q->off;
        if (left >= TLS_DIRECT_MIN) {
            rc = tls_write(c, seg_ptr(s) + q->off, left, &done);
            if (rc) return rc == PT_ERR_CLOSED ? PT_OK : rc;
            outq_consume(q, done);
            continue;
        }
        if (!c->tbuf && !(c->tbuf = malloc(TLS_STAGE)))
            return conn_fail(c, PT_ERR_NOMEM, "%s", "out of memory");
        while (q->bytes && c->tlen < TLS_STAGE) {
            s = &q->v[q->head];
            left = s->len - q->off;
            if (left >= TLS_DIRECT_MIN && c->tlen > 0) break;
            size_t k = TLS_STAGE - c->tlen;
            if (k > left) k = left;
            memcpy(c->tbuf + c->tlen, seg_ptr(s) + q->off, k);
            c->tlen += k;
            outq_consume(q, k);
        }
    }
}

int h2_conn_write(h2_conn *c)
{
    while (!c->dead) {
        /* pack: control frames are copied, DATA frames are referenced */
        size_t packed0 = c->out.bytes;
        while (c->out.bytes < H2_OUT_HIGH && outq_live(&c->out) < H2_OUT_SEGS) {
            const uint8_t *p;
            ssize_t n = nghttp2_session_mem_send(c->ng, &p);
            if (n < 0)
                return conn_fail(c, PT_ERR_PROTO, "HTTP/2 send error: %s",
                                 nghttp2_strerror((int)n));
            if (n == 0) break;
            if ((size_t)n <= 16) {
                if (outq_inline(&c->out, p, (size_t)n)) return PT_ERR_NOMEM;
            } else {
                h2_seg *s = outq_push(&c->out);
                uint8_t *cp = s ? malloc((size_t)n) : NULL;
                if (!cp) {
                    if (s) c->out.n--;
                    return conn_fail(c, PT_ERR_NOMEM, "%s", "out of memory");
                }
                memcpy(cp, p, (size_t)n);
                s->p = cp;
                s->own = cp;
                s->len = (size_t)n;
                c->out.bytes += (size_t)n;
            }
        }
        size_t packed = c->out.bytes - packed0;
        size_t before = c->out.bytes + (c->tlen - c->toff);
        int rc;
        if (c->ssl) {
            sock_sigpipe g;
            sock_sigpipe_block(&g);
            rc = flush_tls(c);
            sock_sigpipe_restore(&g);
        } else {
            rc = flush_plain(c);
        }
        if (rc) return rc;
        size_t after = c->out.bytes + (c->tlen - c->toff);
        if (after > 0 && after == before) return PT_OK; /* socket full */
        if (after == 0 && packed == 0) return PT_OK; /* all sent, nothing new to pack */
    }
    return PT_ERR_NET;
}

int h2_conn_wants_write(const h2_conn *c)
{
    return c->out.bytes > 0 || c->tlen > c->toff || c->tls_want_write ||
           (c->ng && nghttp2_session_want_write(c->ng));
}

size_t h2_conn_pending(const h2_conn *c)
{
    return c->out.bytes + (c->tlen - c->toff);
}

void h2_conn_kill(h2_conn *c, const char *why)
{
    c->dead = 1;
    if (!c->why[0]) snprintf(c->why, sizeof c->why, "%s", why);
    outq_clear(&c->out);
    c->toff = c->tlen = 0;
}
