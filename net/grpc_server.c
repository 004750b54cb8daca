/*
 * grpc_server.c - the gRPC server side of Flower's Join RPC: one epoll loop,
 * many HTTP/2 connections (h2c or TLS), one client per Join stream.
 */
#include "h2_int.h"
#include "sock_int.h"
#include "tls_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_MAX_CONN 1000
#define DEFAULT_MAX_HDR ((size_t)16 << 10)
#define READS_PER_EVENT 64
#define HELLO_TIMEOUT_S 10.0 /* default: TLS handshake + HTTP/2 preface must arrive by then */
#define DEFAULT_RX_KEEP ((size_t)256 << 10)
#define AUTH_PREFIX "Bearer "

typedef struct srv_conn srv_conn;

typedef struct srv_stream {
    struct srv_stream *next;
    srv_conn *conn;
    int32_t sid;
    uint64_t id;          /* client id, 0 until joined */
    int joined;
    int bad;              /* request rejected (response already submitted) */
    char method[8];
    char path[96];
    char ctype[64];
    char encoding[32];
    int auth_seen;        /* authorization headers seen */
    int auth_ok;          /* the last one carried the right token */
    size_t hdr_bytes;
    int response_sent;
    int discard;          /* ignore further DATA */
    int leave_reason;     /* -1 = not decided yet */
    char leave_detail[160];
    int peer_rst;
    uint32_t rst_code;
    int closed;           /* nghttp2 closed it: finished (on_leave, freed) by reap_streams */
    int rx_drop;          /* discarded: its receive buffers are freed by reap_streams */
    grpc_rx rx;
    h2_tx tx;
    pnet_stats st;
} srv_stream;

struct srv_conn {
    h2_conn h; /* first: nghttp2 user_data */
    pnet_server *srv;
    srv_conn *next;
    srv_stream *streams;
    int handshaking;
    int closing;          /* close once the output is flushed */
    int warn;             /* closed for a peer error: log a warning */
    uint32_t evmask;
    size_t rx_buffered;
    double born;          /* accept time */
    int hello;            /* a valid HTTP/2 frame arrived */
};

struct pnet_server {
    pnet_server_opts o;
    int lfd, epfd, port;
    SSL_CTX *tls;
    srv_conn *conns;
    int nconns;
    uint64_t next_id;
    int nclients;
    int dispatched;
    pnet_stats total;     /* messages of all clients; wire bytes of closed conns */
    nghttp2_session_callbacks *cbs;
    nghttp2_option *ngopt;
    uint8_t *rbuf;        /* read buffer shared by all connections */
    size_t rx_total;      /* bytes buffered for incomplete messages, all clients */
    unsigned char tok_md[32]; /* SHA-256 of the expected token */
    int tok_set;
};

/* SHA-256 of p[0..n) into md (32 bytes). */
static int sha256(const void *p, size_t n, unsigned char *md)
{
    unsigned len = 0;
    return EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) == 1 && len == 32 ? 0 : -1;
}

static const char *const leave_names[] = {"done",      "cancelled", "ended",  "connection lost",
                                          "protocol error", "limit", "reset"};

const char *pnet_leave_name(int reason)
{
    if (reason < 0 || reason >= (int)(sizeof leave_names / sizeof *leave_names)) return "unknown";
    return leave_names[reason];
}

/* ---- lookup -------------------------------------------------------------- */

static srv_stream *find_client(const pnet_server *s, uint64_t id)
{
    if (!id) return NULL;
    for (srv_conn *c = s->conns; c; c = c->next)
        for (srv_stream *st = c->streams; st; st = st->next)
            if (st->id == id && st->joined && !st->closed) return st;
    return NULL;
}

/* ---- stream life ----------------------------------------------------------- */

static void stream_free(srv_stream *st)
{
    grpc_rx_free(&st->rx);
    h2_tx_clear(&st->tx);
    free(st);
}

static void stream_unlink(srv_stream *st)
{
    srv_conn *c = st->conn;
    for (srv_stream **pp = &c->streams; *pp; pp = &(*pp)->next)
        if (*pp == st) {
            *pp = st->next;
            break;
        }
}

/* The stream is gone: tell the owner, free it. */
static void stream_finish(srv_stream *st, int reason, const char *detail)
{
    pnet_server *s = st->conn->srv;
    if (st->leave_reason >= 0) {
        reason = st->leave_reason;
        detail = st->leave_detail;
    }
    stream_unlink(st);
    if (st->joined) {
        s->nclients--;
        st->joined = 0;
        PT_DEBUG("net: client %llu (%s) left: %s%s%s", (unsigned long long)st->id,
                 st->conn->h.peer, pnet_leave_name(reason), detail && *detail ? ": " : "",
                 detail ? detail : "");
        if (s->o.on_leave) {
            s->dispatched++;
            s->o.on_leave(s, st->id, reason, detail ? detail : "", s->o.user);
        }
    }
    stream_free(st);
}

static int submit_headers_only(srv_stream *st, const char *status, int grpc_status,
                               const char *message)
{
    nghttp2_session *ng = st->conn->h.ng;
    nghttp2_nv nv[5];
    size_t n = 0;
    nghttp2_nv a = H2_NV(":status", status);
    nv[n++] = a;
    h2_trailers t;
    if (grpc_status >= 0) {
        nghttp2_nv b = H2_NV("content-type", "application/grpc");
        nv[n++] = b;
        size_t k = h2_make_trailers(&t, grpc_status, message);
        for (size_t i = 0; i < k; i++) nv[n++] = t.nv[i];
    }
    st->response_sent = 1;
    st->tx.ending = 1;
    st->tx.eof_done = 1;
    return nghttp2_submit_response(ng, st->sid, nv, n, NULL) ? PT_ERR_NOMEM : PT_OK;
}

/* End a stream with trailers (or a trailers-only response). */
static int stream_end(srv_stream *st, int grpc_status, const char *message, int reason,
                      const char *detail)
{
    if (st->leave_reason < 0 && reason >= 0) {
        st->leave_reason = reason;
        snprintf(st->leave_detail, sizeof st->leave_detail, "%s", detail ? detail : "");
    }
    if (st->tx.ending) return PT_OK;
    if (!st->response_sent) return submit_headers_only(st, "200", grpc_status, message);
    st->tx.ending = 1;
    st->tx.trailers = 1;
    st->tx.status = grpc_status;
    free(st->tx.message);
    st->tx.message = message ? strdup(message) : NULL;
    nghttp2_session_resume_data(st->conn->h.ng, st->sid);
    return PT_OK;
}

/* ---- nghttp2 callbacks ----------------------------------------------------- */

static void conn_abort(srv_conn *c, uint32_t h2err, const char *why)
{
    if (!c->h.why[0]) snprintf(c->h.why, sizeof c->h.why, "%s", why);
    nghttp2_session_terminate_session(c->h.ng, h2err);
    c->closing = 1;
    c->warn = 1;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    srv_conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    srv_stream *st = calloc(1, sizeof *st);
    if (!st) return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->conn = c;
    st->sid = f->hd.stream_id;
    st->leave_reason = -1;
    st->rx.max = c->srv->o.max_message;
    st->rx.buffered = &c->rx_buffered;
    st->rx.buf_cap = c->srv->o.max_conn_buffer;
    st->rx.buffered2 = &c->srv->rx_total;
    st->rx.buf_cap2 = c->srv->o.max_rx_total;
    st->rx.keep_max = c->srv->o.rx_keep;
    st->tx.msgs_out = &st->st.msgs_out;
    st->tx.msg_bytes_out = &st->st.msg_bytes_out;
    st->tx.msgs_out2 = &c->srv->total.msgs_out;
    st->tx.msg_bytes_out2 = &c->srv->total.msg_bytes_out;
    st->next = c->streams;
    c->streams = st;
    nghttp2_session_set_stream_user_data(ng, st->sid, st);
    return 0;
}

static void copy_hdr(char *dst, size_t cap, const uint8_t *v, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)flags;
    srv_conn *c = ud;
    srv_stream *st = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > c->srv->o.max_header_list) {
        char why[96];
        snprintf(why, sizeof why, "request header list over the limit of %zu bytes",
                 c->srv->o.max_header_list);
        conn_abort(c, NGHTTP2_ENHANCE_YOUR_CALM, why);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
#define IS(lit) (namelen == sizeof(lit) - 1 && !memcmp(name, lit, namelen))
    if (IS(":method"))
        copy_hdr(st->method, sizeof st->method, value, valuelen);
    else if (IS(":path"))
        copy_hdr(st->path, sizeof st->path, value, valuelen);
    else if (IS("content-type"))
        copy_hdr(st->ctype, sizeof st->ctype, value, valuelen);
    else if (IS("grpc-encoding"))
        copy_hdr(st->encoding, sizeof st->encoding, value, valuelen);
    else if (IS("authorization") && c->srv->tok_set) {
        /* constant time: compare digests of equal length, whatever was sent */
        unsigned char md[32];
        size_t pl = sizeof AUTH_PREFIX - 1;
        int ok = valuelen > pl && !strncasecmp((const char *)value, AUTH_PREFIX, pl) &&
                 !sha256(value + pl, valuelen - pl, md) &&
                 !CRYPTO_memcmp(md, c->srv->tok_md, sizeof md);
        st->auth_seen++;
        st->auth_ok = ok && st->auth_seen == 1;
    }
#undef IS
    return 0;
}

static void half_closed(srv_stream *st)
{
    if (!st->joined || st->tx.ending) return;
    if (grpc_rx_partial(&st->rx)) {
        PT_WARN("net: client %llu (%s): stream ended inside a gRPC message (truncated)",
                (unsigned long long)st->id, st->conn->h.peer);
        stream_end(st, PNET_GRPC_INTERNAL, "truncated gRPC message", PNET_LEAVE_PROTOCOL,
                   "truncated gRPC message");
    } else {
        stream_end(st, PNET_GRPC_OK, NULL, PNET_LEAVE_DONE, "client half-closed");
    }
}

static void request_ready(srv_conn *c, srv_stream *st)
{
    pnet_server *s = c->srv;
    if (c->closing) return;
    if (strcmp(st->method, "POST")) {
        PT_WARN("net: %s: rejected %s request (only POST)", c->h.peer, st->method);
        submit_headers_only(st, "405", -1, NULL);
        st->bad = 1;
        return;
    }
    if (strncmp(st->ctype, "application/grpc", 16) ||
        (st->ctype[16] && st->ctype[16] != '+' && st->ctype[16] != ';')) {
        PT_WARN("net: %s: rejected request with content-type '%s'", c->h.peer, st->ctype);
        submit_headers_only(st, "415", -1, NULL);
        st->bad = 1;
        return;
    }
    if (strcmp(st->path, H2_PATH_JOIN)) {
        char m[160];
        snprintf(m, sizeof m, "Method not found: %s", st->path);
        PT_WARN("net: %s: %s", c->h.peer, m);
        submit_headers_only(st, "200", PNET_GRPC_UNIMPLEMENTED, m);
        st->bad = 1;
        return;
    }
    if (s->tok_set && !st->auth_ok) {
        const char *why = !st->auth_seen      ? "no authorization token"
                          : st->auth_seen > 1 ? "more than one authorization header"
                                              : "wrong authorization token";
        PT_WARN("net: %s: refused: %s (grpc-status 16 UNAUTHENTICATED)", c->h.peer, why);
        submit_headers_only(st, "200", PNET_GRPC_UNAUTHENTICATED,
                            "missing or invalid authentication token");
        st->bad = 1;
        return;
    }
    if (st->encoding[0] && strcmp(st->encoding, "identity")) {
        char m[96];
        snprintf(m, sizeof m, "grpc-encoding '%s' is not supported (identity only)", st->encoding);
        PT_WARN("net: %s: %s", c->h.peer, m);
        submit_headers_only(st, "200", PNET_GRPC_UNIMPLEMENTED, m);
        st->bad = 1;
        return;
    }
    st->id = ++s->next_id;
    st->joined = 1;
    s->nclients++;
    PT_DEBUG("net: client %llu joined from %s", (unsigned long long)st->id, c->h.peer);
    if (s->o.on_join) {
        s->dispatched++;
        s->o.on_join(s, st->id, c->h.peer, s->o.user);
    }
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    srv_conn *c = ud;
    c->hello = 1;
    srv_stream *st = f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id)
                                     : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!st) break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST) request_ready(c, st);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) half_closed(st);
        break;
    case NGHTTP2_DATA:
        if (st && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) half_closed(st);
        break;
    case NGHTTP2_RST_STREAM:
        if (st) {
            st->peer_rst = 1;
            st->rst_code = f->rst_stream.error_code;
        }
        break;
    default:
        break;
    }
    return 0;
}

static int deliver(pnet_msg *m, void *arg)
{
    srv_stream *st = arg;
    pnet_server *s = st->conn->srv;
    st->st.msgs_in++;
    st->st.msg_bytes_in += m->len;
    s->total.msgs_in++;
    s->total.msg_bytes_in += m->len;
    if (s->o.on_message) {
        s->dispatched++;
        s->o.on_message(s, st->id, m, s->o.user);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    h2_data_seen(ud, sid, data, len);
    srv_stream *st = nghttp2_session_get_stream_user_data(ng, sid);
    if (!st || !st->joined || st->discard || st->tx.ending) return 0;
    char err[PT_ERRLEN];
    int rc = grpc_rx_feed(&st->rx, data, len, deliver, st, err);
    if (rc) {
        PT_WARN("net: client %llu (%s): %s", (unsigned long long)st->id, st->conn->h.peer, err);
        st->discard = 1;
        st->rx_drop = 1; /* freed after nghttp2_session_mem_recv: data may point into it */
        int status = rc == PT_ERR_RANGE  ? PNET_GRPC_RESOURCE_EXHAUSTED
                     : rc == PT_ERR_NOMEM ? PNET_GRPC_RESOURCE_EXHAUSTED
                                          : PNET_GRPC_INTERNAL;
        stream_end(st, status, err, rc == PT_ERR_PROTO ? PNET_LEAVE_PROTOCOL : PNET_LEAVE_LIMIT,
                   err);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
        /* we are done but the client still may send: close the stream (gRPC does the same) */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

/* nghttp2 closed the stream. Nothing is freed inside nghttp2's callbacks
 * (nghttp2 may still be parsing input that lies in this stream's buffers):
 * the stream is marked and finished by reap_streams once nghttp2 returns. */
static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    (void)ud;
    srv_stream *st = nghttp2_session_get_stream_user_data(ng, sid);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    st->closed = 1;
    if (st->leave_reason >= 0) return 0;
    if (st->peer_rst) {
        st->leave_reason = st->rst_code == NGHTTP2_CANCEL || st->rst_code == NGHTTP2_NO_ERROR
                               ? PNET_LEAVE_CANCELLED
                               : PNET_LEAVE_RESET;
        snprintf(st->leave_detail, sizeof st->leave_detail, "client reset the stream (%s)",
                 nghttp2_http2_strerror(st->rst_code));
    } else if (st->tx.ending) {
        st->leave_reason = PNET_LEAVE_ENDED;
        snprintf(st->leave_detail, sizeof st->leave_detail, "stream ended by the server");
    } else {
        st->leave_reason = code == NGHTTP2_NO_ERROR ? PNET_LEAVE_DONE : PNET_LEAVE_RESET;
        snprintf(st->leave_detail, sizeof st->leave_detail, "stream closed (%s)",
                 nghttp2_http2_strerror(code));
    }
    return 0;
}

/* After nghttp2 returned: finish the streams it closed (on_leave, free) and
 * free the buffers of discarded ones. */
static void reap_streams(srv_conn *c)
{
    srv_stream *st = c->streams;
    while (st) {
        srv_stream *nx = st->next;
        if (st->closed) {
            stream_finish(st, st->leave_reason, st->leave_detail);
        } else if (st->rx_drop) {
            grpc_rx_free(&st->rx);
            st->rx_drop = 0;
        }
        st = nx;
    }
}

/* ---- connections ----------------------------------------------------------- */

static void conn_set_mask(pnet_server *s, srv_conn *c, uint32_t mask)
{
    if (c->evmask == mask || c->h.fd < 0) return;
    struct epoll_event ev = {.events = mask, .data.ptr = c};
    epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->h.fd, &ev);
    c->evmask = mask;
}

static void conn_close(pnet_server *s, srv_conn *c)
{
    const char *why = c->h.why[0] ? c->h.why : "closed";
    int joined = 0;
    for (srv_stream *st = c->streams; st; st = st->next) joined |= st->joined;
    if (!c->warn && !joined)
        PT_DEBUG("net: %s: connection closed: %s", c->h.peer, why);
    else
        PT_WARN("net: %s: connection closed: %s", c->h.peer, why);
    while (c->streams) {
        srv_stream *st = c->streams;
        if (st->joined && grpc_rx_partial(&st->rx) && st->leave_reason < 0) {
            st->leave_reason = PNET_LEAVE_PROTOCOL;
            snprintf(st->leave_detail, sizeof st->leave_detail,
                     "connection closed inside a gRPC message (truncated): %.100s", why);
        }
        if (c->h.ng) nghttp2_session_set_stream_user_data(c->h.ng, st->sid, NULL);
        stream_finish(st, PNET_LEAVE_CONN_LOST, why);
    }
    s->total.wire_in += c->h.wire_in;
    s->total.wire_out += c->h.wire_out;
    if (c->h.fd >= 0) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->h.fd, NULL);
    h2_conn_free(&c->h);
    for (srv_conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    s->nconns--;
    free(c);
}

static uint8_t *direct_dst(h2_conn *h, int32_t sid, size_t *max)
{
    srv_stream *st = nghttp2_session_get_stream_user_data(h->ng, sid);
    if (!st || !st->joined || st->discard || st->tx.ending) return NULL;
    return grpc_rx_direct(&st->rx, max);
}

static int conn_start_h2(pnet_server *s, srv_conn *c)
{
    c->h.direct = direct_dst;
    if (nghttp2_session_server_new2(&c->h.ng, s->cbs, c, s->ngopt)) return PT_ERR_NOMEM;
    return h2_conn_settings(&c->h, 1, s->o.max_header_list);
}

static void conn_handshake(srv_conn *c)
{
    ERR_clear_error();
    c->h.tls_want_write = 0;
    sock_sigpipe g;
    sock_sigpipe_block(&g);
    int r = SSL_do_handshake(c->h.ssl);
    sock_sigpipe_restore(&g);
    if (r == 1) {
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(c->h.ssl, &alpn, &alen);
        c->handshaking = 0;
        if (conn_start_h2(c->srv, c)) {
            c->h.dead = 1;
            snprintf(c->h.why, sizeof c->h.why, "out of memory");
        }
        return;
    }
    int e = SSL_get_error(c->h.ssl, r);
    if (e == SSL_ERROR_WANT_READ) return;
    if (e == SSL_ERROR_WANT_WRITE) {
        c->h.tls_want_write = 1;
        return;
    }
    char eb[160];
    c->h.dead = 1;
    c->warn = 1;
    snprintf(c->h.why, sizeof c->h.why, "TLS handshake failed: %s",
             e == SSL_ERROR_SYSCALL && !ERR_peek_error() ? "peer closed the connection"
                                                         : tls_errstr(eb, sizeof eb));
}

static void refuse(int fd, const char *peer)
{
    static const uint8_t frames[] = {
        0, 0, 0, 4, 0, 0, 0, 0, 0,                              /* SETTINGS */
        0, 0, 28, 7, 0, 0, 0, 0, 0,                             /* GOAWAY, 8 + 20 bytes */
        0, 0, 0, 0, 0, 0, 0, 0xb,                               /* last 0, ENHANCE_YOUR_CALM */
        't', 'o', 'o', ' ', 'm', 'a', 'n', 'y', ' ', 'c', 'o', 'n', 'n', 'e', 'c', 't', 'i', 'o',
        'n', 's'};
    ssize_t w = send(fd, frames, sizeof frames, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    PT_WARN("net: %s: connection refused: too many connections", peer);
    close(fd);
}

static void do_accept(pnet_server *s)
{
    for (int i = 0; i < 64; i++) {
        int fd;
        char peer[72];
        if (sock_accept(s->lfd, &fd, peer, sizeof peer) != PT_OK) return;
        if (s->nconns >= s->o.max_connections) {
            if (s->tls)
                close(fd), PT_WARN("net: %s: connection refused: too many connections", peer);
            else
                refuse(fd, peer);
            continue;
        }
        srv_conn *c = calloc(1, sizeof *c);
        SSL *ssl = NULL;
        if (c && s->tls && (ssl = SSL_new(s->tls))) {
            SSL_set_fd(ssl, fd);
            SSL_set_accept_state(ssl);
        }
        if (!c || (s->tls && !ssl) || h2_conn_init(&c->h, fd, ssl, peer, s->rbuf)) {
            PT_WARN("net: %s: connection dropped: out of memory", peer);
            if (ssl) SSL_free(ssl);
            free(c);
            close(fd);
            continue;
        }
        c->srv = s;
        c->born = pt_now();
        c->handshaking = s->tls != NULL;
        if (!c->handshaking && conn_start_h2(s, c)) {
            h2_conn_free(&c->h);
            free(c);
            continue;
        }
        c->evmask = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.events = c->evmask, .data.ptr = c};
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            h2_conn_free(&c->h);
            free(c);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
        s->nconns++;
        PT_DEBUG("net: connection from %s", peer);
        if (c->handshaking) conn_handshake(c);
    }
}

static void conn_event(pnet_server *s, srv_conn *c, uint32_t ev)
{
    (void)s;
    if (c->h.dead) return;
    if (c->handshaking) {
        conn_handshake(c);
        if (c->handshaking || c->h.dead) return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP) || c->h.ssl) {
        int rc = h2_conn_read(&c->h, READS_PER_EVENT);
        reap_streams(c);
        if (rc == PT_ERR_CLOSED) c->closing = 1;
        if (rc == PT_ERR_PROTO || rc == PT_ERR_TLS) c->warn = 1;
    }
}

/* Write what can be written, update interest, mark finished connections. */
static void service_writes(pnet_server *s)
{
    for (srv_conn *c = s->conns; c; c = c->next) {
        if (c->h.dead) continue;
        if (!c->handshaking && c->h.ng) {
            if (h2_conn_wants_write(&c->h)) h2_conn_write(&c->h);
            reap_streams(c);
            if (!c->h.dead && !nghttp2_session_want_read(c->h.ng) &&
                !nghttp2_session_want_write(c->h.ng) && !h2_conn_pending(&c->h)) {
                c->h.dead = 1; /* GOAWAY exchanged, nothing left */
                if (!c->h.why[0]) snprintf(c->h.why, sizeof c->h.why, "session finished");
            }
            if (c->closing && (c->h.eof || !h2_conn_pending(&c->h))) c->h.dead = 1;
        }
        uint32_t mask = EPOLLIN | EPOLLRDHUP;
        if (c->h.eof) mask = 0;
        if (h2_conn_pending(&c->h) || c->h.tls_want_write) mask |= EPOLLOUT;
        conn_set_mask(s, c, mask);
    }
}

static void reap(pnet_server *s)
{
    double now = pt_now();
    for (srv_conn *c = s->conns; c; c = c->next)
        if (!c->hello && !c->h.dead && now - c->born > s->o.handshake_timeout_s) {
            c->h.dead = 1;
            c->warn = 1;
            snprintf(c->h.why, sizeof c->h.why, "no %s within %g s",
                     c->handshaking ? "TLS handshake" : "HTTP/2 preface",
                     s->o.handshake_timeout_s);
        }
    srv_conn *c = s->conns;
    while (c) {
        srv_conn *nx = c->next;
        if (c->h.dead) conn_close(s, c);
        c = nx;
    }
}

int pnet_server_poll(pnet_server *s, int timeout_ms)
{
    s->dispatched = 0;
    service_writes(s);
    reap(s);
    struct epoll_event ev[64];
    int n = epoll_wait(s->epfd, ev, 64, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return s->dispatched;
        PT_ERROR("net: epoll_wait: %s", strerror(errno));
        return PT_ERR_NET;
    }
    for (int i = 0; i < n; i++) {
        if (!ev[i].data.ptr)
            do_accept(s);
        else
            conn_event(s, ev[i].data.ptr, ev[i].events);
    }
    service_writes(s);
    reap(s);
    return s->dispatched;
}

/* ---- public API ------------------------------------------------------------ */

int pnet_server_new(pnet_server **out, const pnet_server_opts *o, char *err)
{
    *out = NULL;
    pnet_server *s = calloc(1, sizeof *s);
    if (!s) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    s->o = *o;
    s->lfd = s->epfd = -1;
    if (!s->o.address) s->o.address = "127.0.0.1:0";
    if (!s->o.max_message) s->o.max_message = PNET_MAX_MESSAGE_DEFAULT;
    if (s->o.max_message > UINT32_MAX) s->o.max_message = UINT32_MAX;
    if (s->o.max_connections <= 0) s->o.max_connections = DEFAULT_MAX_CONN;
    if (!s->o.max_header_list) s->o.max_header_list = DEFAULT_MAX_HDR;
    if (!s->o.max_conn_buffer) s->o.max_conn_buffer = s->o.max_message + ((size_t)64 << 20);
    if (!s->o.rx_keep) s->o.rx_keep = DEFAULT_RX_KEEP;
    if (s->o.handshake_timeout_s <= 0) s->o.handshake_timeout_s = HELLO_TIMEOUT_S;
    s->o.auth_token = NULL; /* only its digest is kept */
    s->o.tls_client_ca = NULL;
    int rc;
    if (o->auth_token) {
        if ((rc = pnet_auth_token_check(o->auth_token, err))) goto fail;
        if (sha256(o->auth_token, strlen(o->auth_token), s->tok_md)) {
            rc = pt_seterr(err, PT_ERR_TLS, "SHA-256 unavailable");
            goto fail;
        }
        s->tok_set = 1;
    }
    if (o->tls_client_ca && !o->tls_cert) {
        rc = pt_seterr(err, PT_ERR_INVAL, "a client CA (mutual TLS) needs a server certificate");
        goto fail;
    }
    if (!!o->tls_cert != !!o->tls_key) {
        rc = pt_seterr(err, PT_ERR_INVAL, "TLS needs both a certificate and a key");
        goto fail;
    }
    if (o->tls_cert && !(s->tls = tls_server_ctx(o->tls_cert, o->tls_key, err))) {
        rc = PT_ERR_TLS;
        goto fail;
    }
    if (o->tls_client_ca && (rc = tls_server_require_client(s->tls, o->tls_client_ca, err)))
        goto fail;
    if (s->tok_set && !s->tls)
        PT_WARN("net: clients send the authentication token over cleartext h2c: anyone on "
                "the path can read it (serve TLS to protect it)");
    if ((rc = sock_listen(s->o.address, &s->lfd, &s->port, err))) goto fail;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        rc = pt_seterr(err, PT_ERR_NET, "epoll_create1: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev)) {
        rc = pt_seterr(err, PT_ERR_NET, "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    if (nghttp2_session_callbacks_new(&s->cbs) || nghttp2_option_new(&s->ngopt) ||
        !(s->rbuf = malloc(H2_RBUF))) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    h2_callbacks_common(s->cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(s->cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->cbs, on_stream_close);
    nghttp2_option_set_no_closed_streams(s->ngopt, 1);
    *out = s;
    return PT_OK;
fail:
    pnet_server_free(s);
    return rc;
}

int pnet_server_port(const pnet_server *s)
{
    return s->port;
}

int pnet_server_fd(const pnet_server *s)
{
    return s->epfd;
}

int pnet_server_clients(const pnet_server *s)
{
    return s->nclients;
}

int pnet_server_send(pnet_server *s, uint64_t id, pnet_msg *m)
{
    srv_stream *st = find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    if (st->tx.ending || st->conn->h.dead) return PT_ERR_STATE;
    if (m->len > s->o.max_message) return PT_ERR_RANGE;
    if (h2_tx_push_msg(&st->tx, m)) return PT_ERR_NOMEM;
    nghttp2_session *ng = st->conn->h.ng;
    if (!st->response_sent) {
        nghttp2_nv nv[] = {H2_NV(":status", "200"), H2_NV("content-type", "application/grpc"),
                           H2_NV("grpc-accept-encoding", "identity")};
        nghttp2_data_provider dp = h2_tx_provider(&st->tx);
        if (nghttp2_submit_response(ng, st->sid, nv, 3, &dp)) return PT_ERR_NOMEM;
        st->response_sent = 1;
    } else {
        nghttp2_session_resume_data(ng, st->sid);
    }
    return PT_OK;
}

int pnet_server_end_stream(pnet_server *s, uint64_t id, int grpc_status, const char *message)
{
    srv_stream *st = find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    return stream_end(st, grpc_status, message, PNET_LEAVE_ENDED,
                      grpc_status ? (message ? message : "error status") : "server ended the stream");
}

int64_t pnet_server_pending(const pnet_server *s, uint64_t id)
{
    const srv_stream *st = find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    return (int64_t)(st->tx.queued + h2_conn_pending(&st->conn->h));
}

int pnet_server_flush(pnet_server *s, int timeout_ms)
{
    double end = pt_now() + timeout_ms / 1000.0;
    for (;;) {
        int busy = 0;
        for (srv_conn *c = s->conns; c && !busy; c = c->next) {
            if (c->h.dead || c->handshaking || !c->h.ng) continue;
            if (h2_conn_pending(&c->h) || nghttp2_session_want_write(c->h.ng)) busy = 1;
            for (srv_stream *st = c->streams; st && !busy; st = st->next)
                if (st->tx.queued) busy = 1;
        }
        if (!busy) return PT_OK;
        double left = end - pt_now();
        if (left <= 0) return PT_ERR_TIMEOUT;
        int rc = pnet_server_poll(s, (int)(left * 1000) + 1 > 50 ? 50 : (int)(left * 1000) + 1);
        if (rc < 0) return rc;
    }
}

const char *pnet_server_peer(const pnet_server *s, uint64_t id)
{
    const srv_stream *st = find_client(s, id);
    return st ? st->conn->h.peer : NULL;
}

int pnet_server_stats(const pnet_server *s, uint64_t id, pnet_stats *out)
{
    if (!id) {
        *out = s->total;
        for (const srv_conn *c = s->conns; c; c = c->next) {
            out->wire_in += c->h.wire_in;
            out->wire_out += c->h.wire_out;
        }
        return PT_OK;
    }
    const srv_stream *st = find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    *out = st->st;
    out->wire_in = st->conn->h.wire_in;
    out->wire_out = st->conn->h.wire_out;
    return PT_OK;
}

void pnet_server_free(pnet_server *s)
{
    if (!s) return;
    while (s->conns) {
        srv_conn *c = s->conns;
        if (c->h.ng && !c->handshaking) {
            nghttp2_session_terminate_session(c->h.ng, NGHTTP2_NO_ERROR);
            h2_conn_write(&c->h);
        }
        while (c->streams) {
            srv_stream *st = c->streams;
            c->streams = st->next;
            stream_free(st);
        }
        s->conns = c->next;
        h2_conn_free(&c->h);
        free(c);
    }
    if (s->epfd >= 0) close(s->epfd);
    if (s->lfd >= 0) close(s->lfd);
    if (s->tls) SSL_CTX_free(s->tls);
    if (s->cbs) nghttp2_session_callbacks_del(s->cbs);
    if (s->ngopt) nghttp2_option_del(s->ngopt);
    free(s->rbuf);
    OPENSSL_cleanse(s->tok_md, sizeof s->tok_md);
    free(s);
}
