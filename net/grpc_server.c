/*
 * grpc_server.c - the gRPC server side of Flower's Join RPC: one epoll loop,
 * many HTTP/2 connections (h2c or TLS), one client per Join stream.
 */
#include "h2_int.h"
#include "sock_int.h"
#include "srv_int.h"
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
#define DEFAULT_PER_ADDR 64     /* connections from one address (IPv6: one /64) */
#define DEFAULT_JOINS 32        /* Join streams on one connection */
#define DEFAULT_REFUSED 10      /* refused streams before the connection is closed */
#define DEFAULT_MAX_HDR ((size_t)16 << 10)
#define READS_PER_EVENT 64
#define HELLO_TIMEOUT_S 10.0 /* default: TLS handshake, HTTP/2 preface and a Join stream */
#define CLOSE_GRACE_S 2.0    /* a closing connection gets this long to take our GOAWAY */
#define DEFAULT_RX_KEEP ((size_t)256 << 10)
#define AUTH_PREFIX "Bearer "
/* Warnings a peer can cause: a burst, then one a second (the rest go to the
 * debug log and are counted); refusals at accept: one line per 10 s. */
#define PEER_WARN_BURST 20.0
#define PEER_WARN_PER_S 1.0
#define REFUSE_LOG_EVERY_S 10.0

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
    srv_conn *next, *prev;
    srv_stream *streams;
    int handshaking;
    int closing;          /* close once the output is flushed */
    int warn;             /* closed for a peer error: log a warning */
    uint32_t evmask;
    size_t rx_buffered;
    double born;          /* accept time */
    int hello;            /* a valid HTTP/2 frame arrived */
    int njoined;          /* open Join streams */
    int ever_joined;
    double idle_since;    /* without a Join stream since (accept time at first) */
    int refused;          /* streams refused on this connection */
    unsigned refused_kinds; /* RF_* already logged */
    char refused_first[128]; /* why the first one was */
    double closing_since;
    int shut;             /* closing: our side is shut down (all written) */
    int addr_v6;          /* per-address count: which map (-1: none) and key */
    uint64_t addr_key;
};

/* Log rate limiter: a token bucket; what it holds back goes to the debug log
 * and is counted, and the count is told with the next line it lets through. */
typedef struct log_rate {
    double tokens, last;
    unsigned long held;
} log_rate;

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
    u64map ids;           /* client id -> its srv_stream */
    u64map per_addr[2];   /* IPv4 address / IPv6 /64 -> open connections */
    log_rate warn_rate;   /* peer-caused warnings */
    log_rate refuse_rate; /* connections refused at accept */
};

static int log_rate_ok(log_rate *r, double burst, double per_s)
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

/* A warning a peer can cause, limited server-wide (PEER_WARN_*). */
#define PEER_WARN(s, fmt, ...)                                                             \
    do {                                                                                   \
        char held_[80];                                                                    \
        if (log_rate_ok(&(s)->warn_rate, PEER_WARN_BURST, PEER_WARN_PER_S))                \
            PT_WARN(fmt "%s", __VA_ARGS__, held_note(&(s)->warn_rate, held_, sizeof held_)); \
        else                                                                               \
            PT_DEBUG(fmt, __VA_ARGS__);                                                    \
    } while (0)

/* " (and N more ...)" for the lines held back since the last one, or "". */
static const char *held_note(log_rate *r, char *buf, size_t cap)
{
    buf[0] = 0;
    if (r->held) snprintf(buf, cap, " (and %lu more in the debug log)", r->held);
    r->held = 0;
    return buf;
}

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
    srv_stream *st = id ? (srv_stream *)u64map_get(&s->ids, id, NULL) : NULL;
    return st && !st->closed ? st : NULL;
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
static void stream_finish(srv_stream *st, int reason, const char *detail)
{
    stream_leave(st, reason, detail);
    stream_unlink(st);
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
        PEER_WARN(st->conn->srv, "net: client %llu (%s): stream ended inside a gRPC message (truncated)",
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
static void reap_streams(srv_conn *c)
{
    srv_stream *st = c->streams;
    while (st) {
        srv_stream *nx = st->next;
        if (c->closing && st->joined && !st->closed)
            stream_leave(st, PNET_LEAVE_CONN_LOST, c->h.why[0] ? c->h.why : "connection closing");
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

/* Connections open from an address key (map v6 = 0/1; -1: not counted);
 * add delta and return the new count. */
static int addr_count(pnet_server *s, int v6, uint64_t key, int delta)
{
    if (v6 < 0) return 0;
    u64map *m = &s->per_addr[v6];
    intptr_t n = (intptr_t)u64map_get(m, key, NULL) + delta;
    if (n <= 0)
        u64map_del(m, key);
    else if (u64map_put(m, key, (uintptr_t)n))
        return -1;
    return (int)n;
}

static void conn_close(pnet_server *s, srv_conn *c)
{
    const char *why = c->h.why[0] ? c->h.why : "closed";
    char more[200] = "";
    if (c->refused && !strstr(why, "streams refused"))
        snprintf(more, sizeof more, " (%d stream%s refused; first: %.120s)", c->refused,
                 c->refused == 1 ? "" : "s", c->refused_first);
    if (!c->warn && !c->njoined && !c->refused)
        PT_DEBUG("net: %s: connection closed: %s", c->h.peer, why);
    else
        PEER_WARN(s, "net: %s: connection closed: %s%s", c->h.peer, why, more);
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
    addr_count(s, c->addr_v6, c->addr_key, -1);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
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
    /* a header block may be HPACK-coded larger than the list it decodes to
       (Huffman codes up to 30 bits a byte): room for 4x */
    h2_conn_flood_limits(&c->h, 4 * s->o.max_header_list + 4096);
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

/* Refuse a connection at accept: cleartext peers get SETTINGS + GOAWAY
 * ENHANCE_YOUR_CALM with the reason first (TLS peers: no handshake, just
 * closed). One log line per REFUSE_LOG_EVERY_S, with a count. */
static void refuse(pnet_server *s, int fd, const char *peer, const char *why)
{
    if (!s->tls) {
        uint8_t f[9 + 9 + 8 + 64];
        size_t wl = strlen(why) < 64 ? strlen(why) : 64, len = 8 + wl;
        static const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
        memcpy(f, settings, 9);
        uint8_t goaway[17] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, 7, 0,
                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NGHTTP2_ENHANCE_YOUR_CALM};
        memcpy(f + 9, goaway, sizeof goaway);
        memcpy(f + 9 + sizeof goaway, why, wl);
        ssize_t w = send(fd, f, 9 + sizeof goaway + wl, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    close(fd);
    log_rate *r = &s->refuse_rate;
    unsigned long before = r->held;
    if (log_rate_ok(r, 1, 1.0 / REFUSE_LOG_EVERY_S)) {
        if (before)
            PT_WARN("net: %s: connection refused: %s (and %lu more refused in the last "
                    "%g s)", peer, why, before, REFUSE_LOG_EVERY_S);
        else
            PT_WARN("net: %s: connection refused: %s", peer, why);
        r->held = 0;
    } else {
        PT_DEBUG("net: %s: connection refused: %s", peer, why);
    }
}

static void do_accept(pnet_server *s)
{
    for (int i = 0; i < 64; i++) {
        int fd, v6 = -1;
        uint64_t key = 0;
        char peer[72], why[96];
        struct sockaddr_storage ss;
        if (sock_accept(s->lfd, &fd, peer, sizeof peer, &ss) != PT_OK) return;
        if (s->nconns >= s->o.max_connections) {
            refuse(s, fd, peer, "too many connections");
            continue;
        }
        if (s->o.max_conn_per_addr > 0 && !srv_addr_key((struct sockaddr *)&ss, &key, &v6) &&
            (int)u64map_get(&s->per_addr[v6], key, NULL) >= s->o.max_conn_per_addr) {
            snprintf(why, sizeof why, "too many connections per address (%d from %s)",
                     s->o.max_conn_per_addr, v6 ? "its /64" : "it");
            refuse(s, fd, peer, why);
            continue;
        }
        srv_conn *c = calloc(1, sizeof *c);
        SSL *ssl = c && s->tls ? SSL_new(s->tls) : NULL;
        if (!c || (s->tls && !ssl)) {
            PEER_WARN(s, "net: %s: connection dropped: %s", peer, "out of memory");
            SSL_free(ssl);
            free(c);
            close(fd);
            continue;
        }
        if (ssl) {
            SSL_set_fd(ssl, fd);
            SSL_set_accept_state(ssl);
        }
        h2_conn_init(&c->h, fd, ssl, peer, s->rbuf); /* cannot fail: shared read buffer */
        if (addr_count(s, v6, key, +1) < 0) {
            PEER_WARN(s, "net: %s: connection dropped: %s", peer, "out of memory");
            h2_conn_free(&c->h);
            free(c);
            continue;
        }
        c->srv = s;
        c->born = c->idle_since = pt_now();
        c->addr_v6 = v6;
        c->addr_key = key;
        c->handshaking = s->tls != NULL;
        c->evmask = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.events = c->evmask, .data.ptr = c};
        if ((!c->handshaking && conn_start_h2(s, c)) || epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
            addr_count(s, v6, key, -1);
            h2_conn_free(&c->h);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        PT_DEBUG("net: connection from %s", peer);
        if (c->handshaking) conn_handshake(c);
    }
}

/* A closing connection: read and drop what the peer still sends (closing a
 * socket with unread input sends a TCP reset, which can destroy our GOAWAY
 * before the peer reads it) until it closes or CLOSE_GRACE_S passes. */
static void conn_drain(pnet_server *s, srv_conn *c)
{
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t r = read(c->h.fd, s->rbuf, H2_RBUF);
        if (r > 0) continue;
        if (r < 0 && errno == EINTR) continue;
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) c->h.dead = 1;
        return;
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
    if (c->closing) { /* our GOAWAY goes out; what comes in is read and dropped */
        conn_drain(s, c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP) || c->h.ssl) {
        int rc = h2_conn_read(&c->h, READS_PER_EVENT);
        reap_streams(c);
        if (rc == PT_ERR_CLOSED || rc == PT_ERR_RANGE) c->closing = 1;
        if (rc == PT_ERR_PROTO || rc == PT_ERR_TLS || rc == PT_ERR_RANGE) c->warn = 1;
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
            if (c->closing && c->h.eof) {
                c->h.dead = 1;
            } else if (c->closing && !c->shut && !c->h.dead && !h2_conn_pending(&c->h) &&
                       !nghttp2_session_want_write(c->h.ng)) {
                shutdown(c->h.fd, SHUT_WR); /* all said: the peer sees EOF after GOAWAY */
                c->shut = 1;
            }
        }
        uint32_t mask = EPOLLIN | EPOLLRDHUP;
        if (c->h.eof) mask = 0;
        if (h2_conn_pending(&c->h) || c->h.tls_want_write) mask |= EPOLLOUT;
        conn_set_mask(s, c, mask);
    }
}

/* Connection deadlines: the TLS handshake and HTTP/2 preface, then a Join
 * stream, within handshake_timeout_s of the accept or of the last Join
 * stream's end (a connection holds a slot only while it serves a client);
 * a closing connection gets CLOSE_GRACE_S to take our GOAWAY. */
static void conn_deadlines(pnet_server *s, srv_conn *c, double now)
{
    double t = s->o.handshake_timeout_s;
    if (c->h.dead) return;
    if (!c->hello) {
        if (now - c->born <= t) return;
        c->h.dead = 1;
        c->warn = 1;
        snprintf(c->h.why, sizeof c->h.why, "no %s within %g s",
                 c->handshaking ? "TLS handshake" : "HTTP/2 preface", t);
        return;
    }
    if (!c->closing && !c->njoined && now - c->idle_since > t) {
        if (!c->h.why[0])
            snprintf(c->h.why, sizeof c->h.why, "%s within %g s",
                     c->ever_joined ? "idle: no new Join stream" : "no accepted Join stream", t);
        nghttp2_session_terminate_session(c->h.ng, NGHTTP2_NO_ERROR);
        c->closing = 1;
        c->warn = !c->ever_joined;
    }
    if (c->closing) {
        if (!c->closing_since) c->closing_since = now;
        if (now - c->closing_since > CLOSE_GRACE_S) c->h.dead = 1;
    }
}

static void reap(pnet_server *s)
{
    double now = pt_now();
    for (srv_conn *c = s->conns; c; c = c->next) conn_deadlines(s, c, now);
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

/* Default server-wide receive cap: half the machine's memory, but room for
 * at least one connection's worth. */
static size_t default_rx_total(size_t conn_cap)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    size_t half = pages > 0 && psz > 0 ? (size_t)pages / 2 * (size_t)psz : (size_t)1 << 31;
    return half > conn_cap ? half : conn_cap;
}

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
    if (!s->o.max_rx_total) s->o.max_rx_total = default_rx_total(s->o.max_conn_buffer);
    if (!s->o.rx_keep) s->o.rx_keep = DEFAULT_RX_KEEP;
    if (s->o.handshake_timeout_s <= 0) s->o.handshake_timeout_s = HELLO_TIMEOUT_S;
    if (!s->o.max_conn_per_addr) s->o.max_conn_per_addr = DEFAULT_PER_ADDR;
    if (s->o.max_streams_per_conn <= 0) s->o.max_streams_per_conn = DEFAULT_JOINS;
    if (s->o.max_refused_streams <= 0) s->o.max_refused_streams = DEFAULT_REFUSED;
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
    u64map_free(&s->ids);
    u64map_free(&s->per_addr[0]);
    u64map_free(&s->per_addr[1]);
    OPENSSL_cleanse(s->tok_md, sizeof s->tok_md);
    free(s);
}
