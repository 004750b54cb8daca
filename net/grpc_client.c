/*
 * grpc_client.c - the gRPC client side of Flower's Join RPC: a blocking
 * API over one HTTP/2 connection (h2c or TLS) and one stream.
 *
 * Every blocking call ends. It returns when its work is done or when the call
 * is over, whatever ended it: the server half-closed its side (END_STREAM on
 * DATA or HEADERS, with or without trailers), answered a non-200 :status,
 * reset the stream, sent GOAWAY, closed the connection, or broke HTTP/2 so
 * that nghttp2 answered with its own GOAWAY. Besides, three clocks run:
 *  - the stop flag (opts.stop), seen within one poll slice (0.2 s; a signal
 *    interrupts poll at once);
 *  - gRPC keepalive: a PING when nothing has arrived for keepalive_time, the
 *    connection dead when nothing (not even the PING's ACK) arrives for
 *    keepalive_timeout after it;
 *  - transfer deadlines: a message on its way in or out must make progress
 *    every transfer_timeout and be done within transfer_timeout + 1 s/MiB.
 * Received messages wait in a queue bounded in count and bytes.
 */
#include "h2_int.h"
#include "sock_int.h"
#include "tls_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENT_UA "petal/0.1 grpc-c-petal (linux)"
#define KILL_WAIT_MS 5000
#define SLICE_MS 200                 /* longest single poll: stop flag and clocks */
#define MIN_CONNECT_S 20.0           /* gRPC's MIN_CONNECT_TIMEOUT */
#define KEEPALIVE_TIME_S 60.0
#define KEEPALIVE_TIMEOUT_S 20.0
#define TRANSFER_TIMEOUT_S 60.0
#define QUEUE_MAX 1024
/* gRPC servers (grpc-core) allow a PING every 5 min while they send no data
 * and GOAWAY a client on its 3rd early one: after FREE_PINGS early pings in a
 * quiet spell, the next wait POLICED_GAP_S after the previous one. */
#define FREE_PINGS 3
#define POLICED_GAP_S 305.0
#define MIB 1048576.0

struct pnet_client {
    h2_conn h; /* first: nghttp2 user_data */
    pnet_client_opts o;
    SSL_CTX *tls;
    nghttp2_session_callbacks *cbs;
    int32_t sid;
    h2_tx tx;
    grpc_rx rx;
    pnet_msg **q;          /* received, not yet returned */
    size_t qhead, qn, qcap;
    size_t qbytes;         /* body bytes of q[qhead .. qn) */
    pnet_msg *cur;         /* last returned by pnet_client_recv */
    int http_status;
    int grpc_ct;           /* response content-type is application/grpc[+...] */
    int closed;            /* nghttp2 closed the stream (both sides) */
    int ended;             /* the call is over (status/message say how) */
    int half_closed;
    int status;            /* grpc-status, -1 = none */
    char message[256];
    int fail;              /* local failure code (e.g. PT_ERR_RANGE), 0 = none */
    char fail_msg[PT_ERRLEN];
    char ng_error[160];    /* nghttp2's last error text (error_callback2) */
    pnet_stats st;
    char host[256], port[16];
    /* keepalive */
    double heard;          /* a frame or DATA bytes last arrived */
    double ping_at;        /* our keepalive PING in flight since (0 = none) */
    double last_ping;      /* our last keepalive PING */
    int quiet_pings;       /* PINGs since the server last sent HEADERS or DATA */
    /* transfer deadline of the message being received */
    double rx_start, rx_progress;
    pnet_backoff own_backoff;
};

static double ka_time(const pnet_client *c)
{
    return c->o.keepalive_time_s == 0 ? KEEPALIVE_TIME_S : c->o.keepalive_time_s;
}

static double ka_timeout(const pnet_client *c)
{
    return c->o.keepalive_timeout_s > 0 ? c->o.keepalive_timeout_s : KEEPALIVE_TIMEOUT_S;
}

static double xfer_timeout(const pnet_client *c)
{
    return c->o.transfer_timeout_s == 0 ? TRANSFER_TIMEOUT_S : c->o.transfer_timeout_s;
}

static int stopped(const pnet_client *c)
{
    return c->o.stop && *c->o.stop;
}

/* ---- backoff (gRPC's connection backoff) ------------------------------------- */

double pnet_backoff_next(pnet_backoff *b)
{
    double init = b->initial_s > 0 ? b->initial_s : 1.0;
    double max = b->max_s > 0 ? b->max_s : 120.0;
    if (max < init) max = init;
    if (b->next_s <= 0) b->next_s = init;
    if (!b->seed) b->seed = (unsigned)(pt_now_ns() ^ ((uint64_t)getpid() << 16)) | 1u;
    double u = rand_r(&b->seed) / (double)RAND_MAX; /* [0, 1] */
    double d = b->next_s * (1 + PNET_BACKOFF_JITTER * (2 * u - 1));
    b->next_s *= PNET_BACKOFF_MULTIPLIER;
    if (b->next_s > max) b->next_s = max;
    return d;
}

void pnet_backoff_reset(pnet_backoff *b)
{
    b->next_s = 0;
}

/* ---- how a call ends --------------------------------------------------------- */

/* The server ended the call (or the connection): remember the first reason.
 * A status the server sent (grpc-status) wins over the one given here. */
static void call_end(pnet_client *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_end(pnet_client *c, int status, const char *fmt, ...)
{
    if (c->ended) return;
    c->ended = 1;
    if (c->status < 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->message, sizeof c->message, fmt, ap);
        va_end(ap);
        c->status = status;
    }
    if (grpc_rx_partial(&c->rx) && !c->fail) {
        c->fail = PT_ERR_PROTO;
        snprintf(c->fail_msg, sizeof c->fail_msg, "the call ended inside a gRPC message (%.200s)",
                 c->message);
    }
}

/* A local failure (limit, deadline, protocol): the first one is kept. */
static void call_fail(pnet_client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void call_fail(pnet_client *c, int code, const char *fmt, ...)
{
    if (c->fail) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_msg, sizeof c->fail_msg, fmt, ap);
    va_end(ap);
    c->fail = code;
}

static int call_over(const pnet_client *c)
{
    return c->ended || c->fail;
}

/* gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md). */
static int http_to_grpc(int http)
{
    switch (http) {
    case 400: return PNET_GRPC_INTERNAL;
    case 401: return PNET_GRPC_UNAUTHENTICATED;
    case 403: return 7; /* PERMISSION_DENIED */
    case 404: return PNET_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504: return PNET_GRPC_UNAVAILABLE;
    default: return PNET_GRPC_UNKNOWN;
    }
}

/* Printable copy of peer bytes (GOAWAY debug data) for messages. */
static void printable(char *out, size_t cap, const uint8_t *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        out[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[o] = 0;
}

/* ---- callbacks ----------------------------------------------------------- */

/* grpc-status: decimal digits only (a hostile "x" is not OK = 0). */
static int parse_status(const uint8_t *v, size_t n)
{
    if (n == 0 || n > 3) return -1;
    int s = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        s = s * 10 + (v[i] - '0');
    }
    return s;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)ng;
    (void)flags;
    pnet_client *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != c->sid) return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && !memcmp(name, lit, namelen))
    if (IS(":status")) {
        int s = 0;
        for (size_t i = 0; i < valuelen && i < 4; i++)
            s = value[i] >= '0' && value[i] <= '9' ? s * 10 + (value[i] - '0') : 999;
        c->http_status = s; /* nghttp2 has checked it is 3 digits */
    } else if (IS("content-type")) {
        c->grpc_ct = valuelen >= 16 && !memcmp(value, "application/grpc", 16) &&
                     (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (IS("grpc-status")) {
        int s = parse_status(value, valuelen);
        c->status = s >= 0 ? s : PNET_GRPC_UNKNOWN;
        if (s < 0) snprintf(c->message, sizeof c->message, "malformed grpc-status from the server");
    } else if (IS("grpc-message")) {
        grpc_pct_decode((const char *)value, valuelen, c->message, sizeof c->message);
    }
#undef IS
    return 0;
}

static int deliver(pnet_msg *m, void *arg)
{
    pnet_client *c = arg;
    size_t waiting = c->qn - c->qhead;
    if (waiting >= (size_t)c->o.max_queue || c->qbytes + m->len > c->o.max_queue_bytes) {
        call_fail(c, PT_ERR_RANGE,
                  "the server sent messages ahead of our replies: %zu waiting (%zu bytes), "
                  "one more of %zu bytes is over the queue limit of %d messages / %zu bytes",
                  waiting, c->qbytes, m->len, c->o.max_queue, c->o.max_queue_bytes);
        return PT_ERR_RANGE;
    }
    if (c->qn == c->qcap) {
        if (c->qhead) {
            memmove(c->q, c->q + c->qhead, (c->qn - c->qhead) * sizeof *c->q);
            c->qn -= c->qhead;
            c->qhead = 0;
        }
        if (c->qn == c->qcap) {
            size_t nc = c->qcap ? c->qcap * 2 : 8;
            pnet_msg **q = realloc(c->q, nc * sizeof *q);
            if (!q) {
                call_fail(c, PT_ERR_NOMEM, "out of memory for the message queue");
                return PT_ERR_NOMEM;
            }
            c->q = q;
            c->qcap = nc;
        }
    }
    c->q[c->qn++] = pnet_msg_ref(m);
    c->qbytes += m->len;
    c->st.msgs_in++;
    c->st.msg_bytes_in += m->len;
    c->rx_start = 0; /* the next message starts its own clock */
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    pnet_client *c = ud;
    h2_data_seen(&c->h, sid, data, len);
    if (sid != c->sid || call_over(c)) return 0;
    double now = pt_now();
    c->heard = c->rx_progress = now;
    int rc = grpc_rx_feed(&c->rx, data, len, deliver, c, c->fail_msg);
    if (rc) {
        if (!c->fail) c->fail = rc; /* grpc_rx_feed wrote fail_msg */
        PT_WARN("net: server %s: %s", c->h.peer, c->fail_msg);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
        return 0;
    }
    if (grpc_rx_partial(&c->rx) && !c->rx_start) c->rx_start = now;
    return 0;
}

/* The server ended its side of the stream (END_STREAM). */
static void remote_end(pnet_client *c)
{
    if (c->status >= 0) call_end(c, c->status, "%s", c->message);
    else if (c->http_status && c->http_status != 200)
        call_end(c, http_to_grpc(c->http_status), "HTTP status %d from the server",
                 c->http_status);
    else
        call_end(c, PNET_GRPC_INTERNAL, "the server ended the stream without a grpc-status");
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    pnet_client *c = ud;
    c->heard = pt_now();
    switch (f->hd.type) {
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) c->ping_at = 0;
        break;
    case NGHTTP2_GOAWAY: {
        char dbg[96];
        printable(dbg, sizeof dbg, f->goaway.opaque_data, f->goaway.opaque_data_len);
        call_end(c, PNET_GRPC_UNAVAILABLE, "the server sent GOAWAY (%s%s%s)",
                 nghttp2_http2_strerror(f->goaway.error_code), dbg[0] ? ": " : "", dbg);
        break;
    }
    case NGHTTP2_HEADERS:
        if (f->hd.stream_id != c->sid) break;
        c->quiet_pings = 0;
        if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && c->http_status >= 200 &&
            !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            /* the response headers of a call that goes on: gRPC needs 200 and
               application/grpc, anything else ends the call here */
            if (c->http_status != 200 || !c->grpc_ct) {
                if (c->http_status != 200)
                    call_end(c, http_to_grpc(c->http_status), "HTTP status %d from the server",
                             c->http_status);
                else
                    call_end(c, PNET_GRPC_UNKNOWN,
                             "the server's response is not application/grpc");
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_CANCEL);
            }
        }
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) remote_end(c);
        break;
    case NGHTTP2_DATA:
        if (f->hd.stream_id != c->sid) break;
        c->quiet_pings = 0;
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) remote_end(c);
        break;
    default: break;
    }
    return 0;
}

/* nghttp2 sent a frame: its own GOAWAY or RST_STREAM with an error code means
 * the server broke HTTP/2 (a bad frame, a flow-control overflow, ...). */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    pnet_client *c = ud;
    uint32_t code;
    if (f->hd.type == NGHTTP2_GOAWAY) code = f->goaway.error_code;
    else if (f->hd.type == NGHTTP2_RST_STREAM && f->hd.stream_id == c->sid)
        code = f->rst_stream.error_code;
    else
        return 0;
    if (code == NGHTTP2_NO_ERROR || code == NGHTTP2_CANCEL) return 0;
    char why[160];
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.opaque_data_len) /* nghttp2 says why */
        printable(why, sizeof why, f->goaway.opaque_data, f->goaway.opaque_data_len);
    else
        snprintf(why, sizeof why, "%s", c->ng_error[0] ? c->ng_error : "protocol error");
    call_fail(c, PT_ERR_PROTO, "the server broke HTTP/2: %s (we sent %s %s)", why,
              f->hd.type == NGHTTP2_GOAWAY ? "GOAWAY" : "RST_STREAM",
              nghttp2_http2_strerror(code));
    return 0;
}

static int on_error(nghttp2_session *ng, int lib_error_code, const char *msg, size_t len,
                    void *ud)
{
    (void)ng;
    (void)lib_error_code;
    pnet_client *c = ud;
    printable(c->ng_error, sizeof c->ng_error, (const uint8_t *)msg, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    (void)ng;
    pnet_client *c = ud;
    if (sid != c->sid) return 0;
    c->closed = 1;
    if (c->http_status && c->http_status != 200)
        call_end(c, http_to_grpc(c->http_status), "HTTP status %d from the server",
                 c->http_status);
    else if (code == NGHTTP2_REFUSED_STREAM)
        call_end(c, PNET_GRPC_UNAVAILABLE, "stream refused (%s)", nghttp2_http2_strerror(code));
    else if (code == NGHTTP2_CANCEL)
        call_end(c, PNET_GRPC_CANCELLED, "stream reset (%s)", nghttp2_http2_strerror(code));
    else if (code != NGHTTP2_NO_ERROR)
        call_end(c, PNET_GRPC_INTERNAL, "stream reset (%s)", nghttp2_http2_strerror(code));
    else
        call_end(c, PNET_GRPC_INTERNAL, "stream ended without grpc-status");
    return 0;
}

/* ---- I/O ----------------------------------------------------------------- */

static int conn_error(pnet_client *c, char *err)
{
    int code = c->h.ssl && strstr(c->h.why, "TLS") ? PT_ERR_TLS
               : strstr(c->h.why, "HTTP/2")        ? PT_ERR_PROTO
                                                   : PT_ERR_NET;
    if (c->h.eof) code = PT_ERR_CLOSED;
    return pt_seterr(err, code, "connection to %s: %s", c->o.address, c->h.why);
}

static int stream_error(pnet_client *c, char *err)
{
    if (c->fail) return pt_seterr(err, c->fail, "%s", c->fail_msg);
    return pt_seterr(err, PT_ERR_CLOSED, "stream ended by the server: grpc-status %d%s%s",
                     c->status, c->message[0] ? ": " : "", c->message);
}

/* Keepalive and the receive deadline, after every I/O step. */
static void check_clocks(pnet_client *c)
{
    double now = pt_now(), T = xfer_timeout(c);
    if (c->h.dead) return;
    if (c->ping_at) {
        double since = c->heard > c->ping_at ? c->heard : c->ping_at;
        if (now - since > ka_timeout(c)) {
            call_fail(c, PT_ERR_TIMEOUT,
                      "the server at %s did not answer a keepalive PING within %g s (it is "
                      "gone, frozen or the network is down)", c->o.address, ka_timeout(c));
            h2_conn_kill(&c->h, c->fail_msg);
            return;
        }
    }
    if (T > 0 && !call_over(c) && grpc_rx_partial(&c->rx)) {
        double limit = T + (double)c->rx.need / MIB;
        if (now - c->rx_progress > T) {
            call_fail(c, PT_ERR_TIMEOUT,
                      "a message from the server stalled: no data for %g s (%zu of %zu bytes "
                      "received)", T, c->rx.got, c->rx.need);
        } else if (c->rx.cur && now - c->rx_start > limit) {
            call_fail(c, PT_ERR_TIMEOUT,
                      "a message from the server is too slow: %zu of %zu bytes in %.0f s "
                      "(limit %g s + 1 s per MiB)", c->rx.got, c->rx.need, now - c->rx_start, T);
        }
        if (c->fail) {
            PT_WARN("net: server %s: %s", c->h.peer, c->fail_msg);
            nghttp2_submit_rst_stream(c->h.ng, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_CANCEL);
        }
    }
    /* gRPC keepalive: a PING after keepalive_time of silence, spaced so that
       a grpc-core server's ping policing never counts a strike */
    double kt = ka_time(c);
    if (kt > 0 && !c->ping_at && !c->h.dead && now - c->heard >= kt &&
        (!c->last_ping || now - c->last_ping >= kt) &&
        (c->quiet_pings < FREE_PINGS || now - c->last_ping >= POLICED_GAP_S)) {
        if (nghttp2_submit_ping(c->h.ng, NGHTTP2_FLAG_NONE, NULL) == 0) {
            c->ping_at = c->last_ping = now;
            c->quiet_pings++;
        }
    }
}

/* One I/O step: write, wait up to timeout_ms (at most one slice) for
 * readability, read, write, then the clocks. until_sent: the caller only
 * waits for its bytes to go out, so once they are all written do not wait
 * for input (only take what is already there). */
static int pump(pnet_client *c, int timeout_ms, int until_sent, char *err)
{
    if (c->h.dead || c->h.eof) return conn_error(c, err);
    h2_conn_write(&c->h);
    if (c->h.dead) return conn_error(c, err);
    if (timeout_ms < 0 || timeout_ms > SLICE_MS) timeout_ms = SLICE_MS; /* clocks, stop flag */
    if (until_sent && !c->tx.queued && !h2_conn_pending(&c->h) && !c->h.tls_want_write)
        timeout_ms = 0;
    struct pollfd p = {.fd = c->h.fd, .events = POLLIN};
    if (h2_conn_pending(&c->h) || c->h.tls_want_write) p.events |= POLLOUT;
    if (c->h.ssl && SSL_pending(c->h.ssl)) timeout_ms = 0;
    if (stopped(c)) timeout_ms = 0;
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno != EINTR) return pt_seterr(err, PT_ERR_NET, "poll: %s", strerror(errno));
    if (r > 0 && ((p.revents & (POLLIN | POLLHUP | POLLERR)) ||
                  (c->h.ssl && (p.revents & POLLOUT)))) {
        int rc = h2_conn_read(&c->h, 64);
        if (rc && rc != PT_ERR_CLOSED) return conn_error(c, err);
    } else if (r >= 0 && c->h.ssl && SSL_pending(c->h.ssl)) {
        int rc = h2_conn_read(&c->h, 64);
        if (rc && rc != PT_ERR_CLOSED) return conn_error(c, err);
    }
    check_clocks(c);
    h2_conn_write(&c->h);
    if (c->h.dead) return c->fail ? stream_error(c, err) : conn_error(c, err);
    /* nghttp2 wants neither to read nor to write: its GOAWAY (or the
       server's) has settled the connection */
    if (!nghttp2_session_want_read(c->h.ng) && !nghttp2_session_want_write(c->h.ng)) {
        call_end(c, PNET_GRPC_UNAVAILABLE, "the HTTP/2 connection was closed (GOAWAY)");
        h2_conn_kill(&c->h, "HTTP/2 session over (GOAWAY)");
    }
    return PT_OK;
}

static int ms_left(double end)
{
    double l = end - pt_now();
    if (l <= 0) return 0;
    return l > 3600 ? 3600000 : (int)(l * 1000) + 1;
}

static int interrupted(char *err)
{
    return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
}

/* ---- connect ---------------------------------------------------------------- */

static int tls_handshake(pnet_client *c, double end, char *err)
{
    char eb[200];
    for (;;) {
        ERR_clear_error();
        sock_sigpipe g;
        sock_sigpipe_block(&g);
        int r = SSL_connect(c->h.ssl);
        sock_sigpipe_restore(&g);
        if (r == 1) break;
        int e = SSL_get_error(c->h.ssl, r);
        struct pollfd p = {.fd = c->h.fd};
        if (e == SSL_ERROR_WANT_READ)
            p.events = POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE)
            p.events = POLLOUT;
        else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
            return pt_seterr(err, PT_ERR_NET, "TLS handshake with %s: connection closed",
                             c->o.address);
        else {
            long vr = SSL_get_verify_result(c->h.ssl);
            if (vr != X509_V_OK)
                return pt_seterr(err, PT_ERR_TLS, "TLS handshake with %s: certificate "
                                 "verification failed: %s", c->o.address,
                                 X509_verify_cert_error_string(vr));
            return pt_seterr(err, PT_ERR_TLS, "TLS handshake with %s failed: %s", c->o.address,
                             tls_errstr(eb, sizeof eb));
        }
        for (;;) { /* in slices: the stop flag */
            if (stopped(c)) return interrupted(err);
            int ms = ms_left(end);
            if (!ms)
                return pt_seterr(err, PT_ERR_TIMEOUT, "TLS handshake with %s timed out",
                                 c->o.address);
            int pr = poll(&p, 1, ms < SLICE_MS ? ms : SLICE_MS);
            if (pr > 0) break;
            if (pr < 0 && errno != EINTR)
                return pt_seterr(err, PT_ERR_NET, "poll: %s", strerror(errno));
        }
    }
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(c->h.ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2))
        return pt_seterr(err, PT_ERR_TLS, "server %s did not negotiate HTTP/2 (ALPN h2)",
                         c->o.address);
    return PT_OK;
}

/* One connection attempt within [now, end); PT_ERR_NET/TIMEOUT are worth
 * retrying. */
static int try_connect(pnet_client *c, double end, char *err)
{
    int fd, ms = ms_left(end);
    int rc = sock_connect(c->host, c->port, ms ? ms : 1, c->o.stop, &fd, err);
    if (rc) return rc;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char peer[72] = "?";
    if (!getpeername(fd, (struct sockaddr *)&ss, &sl))
        sock_peer_string((struct sockaddr *)&ss, peer, sizeof peer);
    SSL *ssl = NULL;
    if (c->tls) {
        const char *name = c->o.server_name ? c->o.server_name : c->host;
        if (!(ssl = tls_client_ssl(c->tls, fd, name, err))) {
            close(fd);
            return PT_ERR_TLS;
        }
    }
    if (h2_conn_init(&c->h, fd, ssl, peer, NULL)) {
        if (ssl) SSL_free(ssl);
        close(fd);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
    if (ssl && (rc = tls_handshake(c, end, err))) {
        h2_conn_free(&c->h);
        return rc;
    }
    return PT_OK;
}

static uint8_t *direct_dst(h2_conn *h, int32_t sid, size_t *max)
{
    pnet_client *c = (pnet_client *)h;
    if (sid != c->sid || call_over(c) || c->closed) return NULL;
    return grpc_rx_direct(&c->rx, max);
}

static int open_stream(pnet_client *c, char *err)
{
    c->h.direct = direct_dst;
    /* the server's frames are counted like a client's are on the server side
       (SETTINGS/PING/RST/HEADERS floods, oversized header blocks) */
    h2_conn_flood_limits(&c->h, 4 * 65536 + 4096);
    if (nghttp2_session_client_new(&c->h.ng, c->cbs, c) || h2_conn_settings(&c->h, 0, 65536))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    const char *ua = c->o.user_agent ? c->o.user_agent : CLIENT_UA;
    nghttp2_nv nv[] = {H2_NV(":method", "POST"),
                       H2_NV(":scheme", c->tls ? "https" : "http"),
                       H2_NV(":path", H2_PATH_JOIN),
                       H2_NV(":authority", c->o.address),
                       H2_NV("content-type", "application/grpc"),
                       H2_NV("te", "trailers"),
                       H2_NV("grpc-accept-encoding", "identity"),
                       H2_NV("user-agent", ua),
                       H2_NV("authorization", "")};
    size_t nnv = sizeof nv / sizeof *nv - 1;
    char auth[PNET_TOKEN_MAX + 16];
    if (c->o.auth_token) {
        int n = snprintf(auth, sizeof auth, "Bearer %s", c->o.auth_token);
        nv[nnv].value = (uint8_t *)auth;
        nv[nnv].valuelen = (size_t)n;
        nv[nnv].flags |= NGHTTP2_NV_FLAG_NO_INDEX; /* keep it out of HPACK tables */
        nnv++;
    }
    nghttp2_data_provider dp = h2_tx_provider(&c->tx);
    c->sid = nghttp2_submit_request(c->h.ng, NULL, nv, nnv, &dp, c);
    OPENSSL_cleanse(auth, sizeof auth);
    if (c->sid < 0) return pt_seterr(err, PT_ERR_NOMEM, "cannot open the Join stream");
    c->heard = pt_now();
    if (h2_conn_write(&c->h)) return conn_error(c, err);
    return PT_OK;
}

int pnet_client_connect(pnet_client **out, const pnet_client_opts *o, char *err)
{
    *out = NULL;
    if (!o || !o->address) return pt_seterr(err, PT_ERR_INVAL, "client needs an address");
    pnet_client *c = calloc(1, sizeof *c);
    if (!c) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    c->h.fd = -1;
    c->o = *o;
    c->status = -1;
    if (!c->o.max_message) c->o.max_message = PNET_MAX_MESSAGE_DEFAULT;
    if (c->o.max_message > UINT32_MAX) c->o.max_message = UINT32_MAX;
    if (c->o.max_queue <= 0) c->o.max_queue = QUEUE_MAX;
    if (!c->o.max_queue_bytes) c->o.max_queue_bytes = c->o.max_message;
    c->rx.max = c->o.max_message;
    c->tx.msgs_out = &c->st.msgs_out;
    c->tx.msg_bytes_out = &c->st.msg_bytes_out;
    pnet_backoff *bo = o->backoff;
    if (!bo) {
        bo = &c->own_backoff;
        bo->initial_s = o->backoff_initial_s;
        bo->max_s = o->backoff_max_s;
    }
    double deadline_s = o->connect_deadline_s == 0 ? 60 : o->connect_deadline_s;
    int rc = sock_split(o->address, c->host, sizeof c->host, c->port, sizeof c->port, err);
    if (rc) goto fail;
    if (!c->host[0]) snprintf(c->host, sizeof c->host, "127.0.0.1");
    if (o->auth_token && (rc = pnet_auth_token_check(o->auth_token, err))) goto fail;
    if ((o->tls || o->tls_ca || o->tls_cert || o->tls_key) &&
        !(c->tls = tls_client_ctx(o->tls_ca, o->tls_cert, o->tls_key, err))) {
        rc = (o->tls_cert != NULL) != (o->tls_key != NULL) ? PT_ERR_INVAL : PT_ERR_TLS;
        goto fail;
    }
    if (nghttp2_session_callbacks_new(&c->cbs)) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    h2_callbacks_common(c->cbs);
    nghttp2_session_callbacks_set_on_header_callback(c->cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(c->cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(c->cbs, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(c->cbs, on_error);

    double start = pt_now(), end = start + (deadline_s > 0 ? deadline_s : MIN_CONNECT_S);
    for (int attempt = 1;; attempt++) {
        char e1[PT_ERRLEN] = "";
        if (stopped(c)) {
            rc = interrupted(err);
            goto fail;
        }
        /* each attempt gets at least MIN_CONNECT_S (gRPC), never past the deadline
           when retries are allowed */
        double att_end = pt_now() + (bo->next_s > MIN_CONNECT_S ? bo->next_s : MIN_CONNECT_S);
        if (deadline_s > 0 && att_end > end) att_end = end;
        rc = try_connect(c, att_end, e1);
        if (rc == PT_OK) break;
        if (rc != PT_ERR_NET && rc != PT_ERR_TIMEOUT) {
            pt_seterr(err, rc, "%s", e1);
            goto fail;
        }
        double wait = pnet_backoff_next(bo);
        if (deadline_s < 0 || pt_now() + wait > end) {
            rc = pt_seterr(err, deadline_s < 0 ? rc : PT_ERR_TIMEOUT,
                           "could not connect to %s after %d attempt%s in %.1f s: %s",
                           o->address, attempt, attempt > 1 ? "s" : "", pt_now() - start, e1);
            goto fail;
        }
        PT_DEBUG("net: connect attempt %d to %s failed (%s); retrying in %.2f s", attempt,
                 o->address, e1, wait);
        pt_sleep(wait, o->stop);
    }
    if ((rc = open_stream(c, err))) goto fail;
    *out = c;
    return PT_OK;
fail:
    pnet_client_free(c);
    return rc;
}

/* ---- messages ----------------------------------------------------------------- */

int pnet_client_recv_msg(pnet_client *c, pnet_msg **out, int timeout_ms, char *err)
{
    *out = NULL;
    double end = timeout_ms < 0 ? 0 : pt_now() + timeout_ms / 1000.0;
    for (;;) {
        /* a local failure (limit, deadline, broken framing) breaks the call:
           what is queued could not be answered; a server's end comes after
           the messages it sent before it */
        if (c->fail) return stream_error(c, err);
        if (c->qhead < c->qn) {
            *out = c->q[c->qhead++];
            c->qbytes -= (*out)->len;
            if (c->qhead == c->qn) c->qhead = c->qn = 0;
            return PT_OK;
        }
        if (call_over(c)) return stream_error(c, err);
        if (stopped(c)) return interrupted(err);
        int ms = timeout_ms < 0 ? SLICE_MS : ms_left(end);
        if (timeout_ms > 0 && ms == 0)
            return pt_seterr(err, PT_ERR_TIMEOUT, "no message from %s within %d ms",
                             c->o.address, timeout_ms);
        int rc = pump(c, ms, 0, err);
        if (rc) {
            if (c->qhead < c->qn && !c->fail) continue;
            if (call_over(c)) return stream_error(c, err);
            return rc;
        }
        if (timeout_ms == 0 && c->qhead == c->qn && !call_over(c))
            return pt_seterr(err, PT_ERR_TIMEOUT, "no message waiting");
    }
}

int pnet_client_recv(pnet_client *c, uint8_t **msg, size_t *len, int timeout_ms, char *err)
{
    pnet_msg *m;
    /* the previous message is no longer needed: release it first so its
       buffer can receive the next one (no fresh pages per message) */
    pnet_msg_unref(c->cur);
    c->cur = NULL;
    int rc = pnet_client_recv_msg(c, &m, timeout_ms, err);
    if (rc) return rc;
    c->cur = m;
    *msg = pnet_msg_data(m);
    *len = m->len;
    return PT_OK;
}

/* Give up on the bytes being sent: the connection is dropped, so no
 * reference to the caller's buffer survives. */
static void send_abort(pnet_client *c, const char *why)
{
    h2_conn_kill(&c->h, why);
    h2_tx_clear(&c->tx);
}

/* Block until the queued outgoing bytes (a message of len bytes) are on the
 * socket, within the transfer deadline. */
static int wait_sent(pnet_client *c, size_t len, char *err)
{
    double t0 = pt_now(), progress = t0, kill_at = 0, T = xfer_timeout(c);
    double limit = T + (double)len / MIB;
    /* progress: fewer of our bytes left, framed or not (control frames such
       as PINGs come and go and do not count) */
    size_t least = c->tx.queued + h2_conn_pending(&c->h);
    int dropped = 0; /* the stream ended before our bytes were framed */
    for (;;) {
        if (stopped(c)) {
            send_abort(c, "interrupted while sending");
            return interrupted(err);
        }
        int stream_gone = call_over(c);
        if (stream_gone && c->tx.head) {
            h2_tx_clear(&c->tx);
            dropped = 1;
        }
        if (!c->tx.queued && !h2_conn_pending(&c->h)) break;
        int rc = pump(c, SLICE_MS, 1, err);
        if (rc) {
            send_abort(c, c->h.why[0] ? c->h.why : "write failed");
            return call_over(c) ? stream_error(c, err) : rc;
        }
        double now = pt_now();
        size_t left = c->tx.queued + h2_conn_pending(&c->h);
        if (left < least) {
            least = left;
            progress = now;
        }
        if (stream_gone) {
            /* only connection-level bytes remain; don't hang on a stuck peer */
            if (!kill_at) kill_at = now + KILL_WAIT_MS / 1000.0;
            if (now > kill_at) {
                h2_conn_kill(&c->h, "peer stopped reading");
                dropped = 1;
                break;
            }
        } else if (T > 0 && (now - progress > T || now - t0 > limit)) {
            call_fail(c, PT_ERR_TIMEOUT,
                      now - progress > T
                          ? "sending a %zu-byte message: no progress for %g s (the server "
                            "stopped reading or keeps its flow-control window closed)"
                          : "sending a %zu-byte message: too slow, over %g s + 1 s per MiB",
                      len, T);
            send_abort(c, c->fail_msg);
            return stream_error(c, err);
        }
    }
    /* written: a stream failure that came meanwhile surfaces at the next recv */
    if (dropped) return stream_error(c, err);
    return PT_OK;
}

static int send_check(pnet_client *c, size_t len, char *err)
{
    if (c->half_closed) return pt_seterr(err, PT_ERR_STATE, "stream already half-closed");
    if (call_over(c)) return stream_error(c, err);
    if (c->h.dead) return conn_error(c, err);
    if (stopped(c)) return interrupted(err);
    if (len > c->o.max_message)
        return pt_seterr(err, PT_ERR_RANGE, "message of %zu bytes is over the limit of %zu",
                         len, c->o.max_message);
    return PT_OK;
}

int pnet_client_send(pnet_client *c, const void *msg, size_t len, char *err)
{
    int rc = send_check(c, len, err);
    if (rc) return rc;
    if (h2_tx_push_bytes(&c->tx, msg, len)) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    nghttp2_session_resume_data(c->h.ng, c->sid);
    return wait_sent(c, len, err);
}

int pnet_client_send_msg(pnet_client *c, pnet_msg *m, char *err)
{
    int rc = send_check(c, m->len, err);
    if (rc) return rc;
    if (h2_tx_push_msg(&c->tx, m)) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    nghttp2_session_resume_data(c->h.ng, c->sid);
    return wait_sent(c, m->len, err);
}

int pnet_client_poll(pnet_client *c, int timeout_ms, char *err)
{
    int rc = PT_OK;
    if (stopped(c)) return interrupted(err);
    if (!call_over(c)) rc = pump(c, timeout_ms < 0 ? SLICE_MS : timeout_ms, 0, err);
    int queued = (int)(c->qn - c->qhead);
    if (queued && !c->fail) return queued;
    if (call_over(c)) return stream_error(c, err);
    return rc ? rc : 0;
}

int pnet_client_close(pnet_client *c, int timeout_ms)
{
    char err[PT_ERRLEN];
    if (!call_over(c) && !c->half_closed && !c->h.dead) {
        c->half_closed = 1;
        c->tx.ending = 1;
        nghttp2_session_resume_data(c->h.ng, c->sid);
    }
    double end = pt_now() + (timeout_ms < 0 ? 3600 : timeout_ms / 1000.0);
    while (!call_over(c) && !c->closed && !c->h.dead) {
        if (stopped(c)) return PT_ERR_INTERRUPTED;
        int ms = ms_left(end);
        if (!ms) return PT_ERR_TIMEOUT;
        if (pump(c, ms, 0, err)) break;
    }
    if (call_over(c) || c->closed) return c->status == 0 && !c->fail ? PT_OK : PT_ERR_CLOSED;
    return PT_ERR_CLOSED;
}

int pnet_client_status(const pnet_client *c, const char **message)
{
    if (message) *message = c->message;
    return c->status;
}

void pnet_client_stats(const pnet_client *c, pnet_stats *out)
{
    *out = c->st;
    out->wire_in = c->h.wire_in;
    out->wire_out = c->h.wire_out;
}

void pnet_client_free(pnet_client *c)
{
    if (!c) return;
    if (c->h.ng && !c->h.dead && !c->h.eof) {
        h2_tx_clear(&c->tx); /* borrowed bytes must not be touched any more */
        if (!c->closed) {
            nghttp2_submit_rst_stream(c->h.ng, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_CANCEL);
            h2_conn_write(&c->h);
        }
        nghttp2_session_terminate_session(c->h.ng, NGHTTP2_NO_ERROR);
        h2_conn_write(&c->h);
    }
    h2_conn_free(&c->h);
    h2_tx_clear(&c->tx);
    grpc_rx_free(&c->rx);
    for (size_t i = c->qhead; i < c->qn; i++) pnet_msg_unref(c->q[i]);
    free(c->q);
    pnet_msg_unref(c->cur);
    if (c->tls) SSL_CTX_free(c->tls);
    if (c->cbs) nghttp2_session_callbacks_del(c->cbs);
    free(c);
}
