/*
 * grpc_server.c - the gRPC server side of Flower's Join RPC, its streams:
 * request validation, authentication, one client per Join stream, gRPC
 * message reassembly, the per-client API. Connections: srv_conn.c.
 */
#include "srv_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AUTH_PREFIX "Bearer "

static const char *const leave_names[] = {"done",      "cancelled", "ended",  "connection lost",
                                          "protocol error", "limit", "reset"};

const char *pnet_leave_name(int reason)
{
    if (reason < 0 || reason >= (int)(sizeof leave_names / sizeof *leave_names)) return "unknown";
    return leave_names[reason];
}

/* ---- lookup -------------------------------------------------------------- */

srv_stream *srv_find_client(const pnet_server *s, uint64_t id)
{
    srv_stream *st = id ? (srv_stream *)u64map_get(&s->ids, id, NULL) : NULL;
    return st && !st->closed ? st : NULL;
}

/* ---- stream life ----------------------------------------------------------- */

void srv_stream_free(srv_stream *st)
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

/* The client of a joined stream is gone: tell the owner (once). The stream
 * itself lives on while nghttp2 holds it. */
static void stream_leave(srv_stream *st, int reason, const char *detail)
{
    pnet_server *s = st->conn->srv;
    if (st->leave_reason >= 0) {
        reason = st->leave_reason;
        detail = st->leave_detail;
    }
    if (st->joined) {
        s->nclients--;
        st->joined = 0;
        u64map_del(&s->ids, st->id);
        if (--st->conn->njoined == 0) st->conn->idle_since = pt_now();
        PT_DEBUG("net: client %llu (%s) left: %s%s%s", (unsigned long long)st->id,
                 st->conn->h.peer, pnet_leave_name(reason), detail && *detail ? ": " : "",
                 detail ? detail : "");
        if (s->o.on_leave) {
            s->dispatched++;
            s->o.on_leave(s, st->id, reason, detail ? detail : "", s->o.user);
        }
    }
}

/* The stream is gone: tell the owner, free it. */
void srv_stream_finish(srv_stream *st, int reason, const char *detail)
{
    stream_leave(st, reason, detail);
    stream_unlink(st);
    srv_stream_free(st);
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

/* Close a connection for a peer error: GOAWAY, nothing more is read (what
 * comes is drained), its clients leave at the next reap_streams. graceful:
 * the answers already queued go out first (else nghttp2 sends only the
 * GOAWAY and ignores the rest of the input at once). */
static void conn_abort(srv_conn *c, uint32_t h2err, const char *why, int graceful)
{
    if (!c->h.why[0]) snprintf(c->h.why, sizeof c->h.why, "%s", why);
    if (graceful)
        nghttp2_submit_goaway(c->h.ng, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h.ng), h2err, NULL, 0);
    else
        nghttp2_session_terminate_session(c->h.ng, h2err);
    c->h.stop_read = 1;
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
    if (!st || f->hd.type != NGHTTP2_HEADERS) return 0;
    /* request headers and trailers together count against the limit */
    int request = f->headers.cat == NGHTTP2_HCAT_REQUEST;
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > c->srv->o.max_header_list) {
        char why[96];
        snprintf(why, sizeof why, "%s over the limit of %zu bytes",
                 request ? "request header list" : "header list (with the trailers)",
                 c->srv->o.max_header_list);
        conn_abort(c, NGHTTP2_ENHANCE_YOUR_CALM, why, 0);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (!request) return 0;
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
                 !srv_sha256(value + pl, valuelen - pl, md) &&
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
        PEER_WARN(st->conn->srv,
                  "net: client %llu (%s): stream ended inside a gRPC message (truncated)",
                (unsigned long long)st->id, st->conn->h.peer);
        stream_end(st, PNET_GRPC_INTERNAL, "truncated gRPC message", PNET_LEAVE_PROTOCOL,
                   "truncated gRPC message");
    } else {
        stream_end(st, PNET_GRPC_OK, NULL, PNET_LEAVE_DONE, "client half-closed");
    }
}

/* Refuse a request stream: answer it (HTTP status, or a trailers-only gRPC
 * status), count it, log the first refusal of the connection (the others go
 * to the debug log and into the summary when the connection closes), and
 * close the connection after max_refused_streams. */
/* Kinds of refusal, each logged once per connection (RF_AUTH << 0..2: no
 * token, wrong token, several tokens). */
enum { RF_METHOD = 1, RF_CTYPE = 2, RF_PATH = 4, RF_AUTH = 8, RF_ENCODING = 64, RF_JOINS = 128,
       RF_NOMEM = 256 };

static void refuse_stream(srv_conn *c, srv_stream *st, unsigned kind, const char *http,
                          int grpc_status, const char *message, const char *why)
{
    pnet_server *s = c->srv;
    submit_headers_only(st, http, grpc_status, message);
    st->bad = 1;
    if (c->refused++ == 0) snprintf(c->refused_first, sizeof c->refused_first, "%s", why);
    if (!(c->refused_kinds & kind)) { /* the first of each kind on this connection */
        c->refused_kinds |= kind;
        PEER_WARN(s, "net: %s: refused: %s", c->h.peer, why);
    } else {
        PT_DEBUG("net: %s: refused: %s", c->h.peer, why);
    }
    if (c->refused >= s->o.max_refused_streams) {
        char m[160];
        snprintf(m, sizeof m, "%d streams refused (the limit; first: %.100s)", c->refused,
                 c->refused_first);
        conn_abort(c, NGHTTP2_ENHANCE_YOUR_CALM, m, 1);
    }
}

static void request_ready(srv_conn *c, srv_stream *st)
{
    pnet_server *s = c->srv;
    char why[PT_ERRLEN], esc[128];
    if (c->closing) return;
    if (strcmp(st->method, "POST")) {
        snprintf(why, sizeof why, "%s request (only POST)",
                 pt_escape(esc, sizeof esc, st->method, PT_ESC_CSTR));
        refuse_stream(c, st, RF_METHOD, "405", -1, NULL, why);
        return;
    }
    if (strncmp(st->ctype, "application/grpc", 16) ||
        (st->ctype[16] && st->ctype[16] != '+' && st->ctype[16] != ';')) {
        snprintf(why, sizeof why, "request with content-type '%s'",
                 pt_escape(esc, sizeof esc, st->ctype, PT_ESC_CSTR));
        refuse_stream(c, st, RF_CTYPE, "415", -1, NULL, why);
        return;
    }
    if (strcmp(st->path, H2_PATH_JOIN)) {
        char m[160];
        snprintf(m, sizeof m, "Method not found: %s", st->path);
        snprintf(why, sizeof why, "Method not found: %s",
                 pt_escape(esc, sizeof esc, st->path, PT_ESC_CSTR));
        refuse_stream(c, st, RF_PATH, "200", PNET_GRPC_UNIMPLEMENTED, m, why);
        return;
    }
    if (s->tok_set && !st->auth_ok) {
        const char *w = !st->auth_seen      ? "no authorization token"
                        : st->auth_seen > 1 ? "more than one authorization header"
                                            : "wrong authorization token";
        snprintf(why, sizeof why, "%s (grpc-status 16 UNAUTHENTICATED)", w);
        refuse_stream(c, st, RF_AUTH << (st->auth_seen > 1 ? 2 : st->auth_seen), "200",
                      PNET_GRPC_UNAUTHENTICATED,
                      "missing or invalid authentication token", why);
        return;
    }
    if (st->encoding[0] && strcmp(st->encoding, "identity")) {
        char m[96];
        snprintf(m, sizeof m, "grpc-encoding '%s' is not supported (identity only)",
                 pt_escape(esc, 40, st->encoding, PT_ESC_CSTR));
        refuse_stream(c, st, RF_ENCODING, "200", PNET_GRPC_UNIMPLEMENTED, m, m);
        return;
    }
    if (c->njoined >= s->o.max_streams_per_conn) {
        char m[96];
        snprintf(m, sizeof m, "more than %d Join streams on one connection",
                 s->o.max_streams_per_conn);
        refuse_stream(c, st, RF_JOINS, "200", PNET_GRPC_RESOURCE_EXHAUSTED, m, m);
        return;
    }
    st->id = ++s->next_id;
    if (u64map_put(&s->ids, st->id, (uintptr_t)st)) {
        refuse_stream(c, st, RF_NOMEM, "200", PNET_GRPC_RESOURCE_EXHAUSTED, "server out of memory",
                      "out of memory");
        return;
    }
    st->joined = 1;
    c->njoined++;
    c->ever_joined = 1;
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
        PEER_WARN(st->conn->srv, "net: client %llu (%s): %s", (unsigned long long)st->id,
                  st->conn->h.peer, err);
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

/* After nghttp2 returned: finish the streams it closed (on_leave, free),
 * free the buffers of discarded ones; on a closing connection the clients
 * leave at once (no new work goes to them). */
void srv_reap_streams(srv_conn *c)
{
    srv_stream *st = c->streams;
    while (st) {
        srv_stream *nx = st->next;
        if (c->closing && st->joined && !st->closed)
            stream_leave(st, PNET_LEAVE_CONN_LOST, c->h.why[0] ? c->h.why : "connection closing");
        if (st->closed) {
            srv_stream_finish(st, st->leave_reason, st->leave_detail);
        } else if (st->rx_drop) {
            grpc_rx_free(&st->rx);
            st->rx_drop = 0;
        }
        st = nx;
    }
}

uint8_t *srv_direct_dst(h2_conn *h, int32_t sid, size_t *max)
{
    srv_stream *st = nghttp2_session_get_stream_user_data(h->ng, sid);
    if (!st || !st->joined || st->discard || st->tx.ending) return NULL;
    return grpc_rx_direct(&st->rx, max);
}

int pnet_server_clients(const pnet_server *s)
{
    return s->nclients;
}

int pnet_server_send(pnet_server *s, uint64_t id, pnet_msg *m)
{
    srv_stream *st = srv_find_client(s, id);
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
    srv_stream *st = srv_find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    return stream_end(st, grpc_status, message, PNET_LEAVE_ENDED,
                      grpc_status ? (message ? message : "error status") : "server ended the stream");
}

int64_t pnet_server_pending(const pnet_server *s, uint64_t id)
{
    const srv_stream *st = srv_find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    return (int64_t)(st->tx.queued + h2_conn_pending(&st->conn->h));
}

const char *pnet_server_peer(const pnet_server *s, uint64_t id)
{
    const srv_stream *st = srv_find_client(s, id);
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
    const srv_stream *st = srv_find_client(s, id);
    if (!st) return PT_ERR_NOTFOUND;
    *out = st->st;
    out->wire_in = st->conn->h.wire_in;
    out->wire_out = st->conn->h.wire_out;
    return PT_OK;
}


/* ---- the server's stream callbacks ---------------------------------------------- */

void srv_stream_callbacks(nghttp2_session_callbacks *cb)
{
    h2_callbacks_common(cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
}
