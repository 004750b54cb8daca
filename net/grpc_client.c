/*
 * grpc_client.c - the gRPC client side of Flower's Join RPC: a blocking
 * API over one HTTP/2 connection (h2c or TLS) and one stream.
 */
#include "h2_int.h"
#include "sock_int.h"
#include "tls_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLIENT_UA "petal/0.1 grpc-c-petal (linux)"
#define KILL_WAIT_MS 5000

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
    pnet_msg *cur;         /* last returned by pnet_client_recv */
    int http_status;
    int closed;            /* stream closed */
    int half_closed;
    int status;            /* grpc-status, -1 = none */
    char message[256];
    int fail;              /* local stream failure code (e.g. PT_ERR_RANGE), 0 = none */
    char fail_msg[PT_ERRLEN];
    pnet_stats st;
    char host[256], port[16];
};

/* ---- callbacks ----------------------------------------------------------- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *ud)
{
    (void)ng;
    (void)flags;
    pnet_client *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != c->sid) return 0;
    char v[16];
#define IS(lit) (namelen == sizeof(lit) - 1 && !memcmp(name, lit, namelen))
    if (IS(":status")) {
        size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
        memcpy(v, value, n);
        v[n] = 0;
        c->http_status = atoi(v);
    } else if (IS("grpc-status")) {
        size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
        memcpy(v, value, n);
        v[n] = 0;
        c->status = atoi(v);
    } else if (IS("grpc-message")) {
        grpc_pct_decode((const char *)value, valuelen, c->message, sizeof c->message);
    }
#undef IS
    return 0;
}

static int deliver(pnet_msg *m, void *arg)
{
    pnet_client *c = arg;
    if (c->qn == c->qcap) {
        if (c->qhead) {
            memmove(c->q, c->q + c->qhead, (c->qn - c->qhead) * sizeof *c->q);
            c->qn -= c->qhead;
            c->qhead = 0;
        }
        if (c->qn == c->qcap) {
            size_t nc = c->qcap ? c->qcap * 2 : 8;
            pnet_msg **q = realloc(c->q, nc * sizeof *q);
            if (!q) return PT_ERR_NOMEM;
            c->q = q;
            c->qcap = nc;
        }
    }
    c->q[c->qn++] = pnet_msg_ref(m);
    c->st.msgs_in++;
    c->st.msg_bytes_in += m->len;
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    pnet_client *c = ud;
    h2_data_seen(&c->h, sid, data, len);
    if (sid != c->sid || c->fail) return 0;
    int rc = grpc_rx_feed(&c->rx, data, len, deliver, c, c->fail_msg);
    if (rc) {
        c->fail = rc;
        PT_WARN("net: server %s: %s", c->h.peer, c->fail_msg);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    (void)ng;
    pnet_client *c = ud;
    if (sid != c->sid) return 0;
    c->closed = 1;
    if (c->status < 0) {
        if (c->http_status && c->http_status != 200) {
            c->status = c->http_status == 404 || c->http_status == 405 || c->http_status == 415
                            ? PNET_GRPC_UNIMPLEMENTED
                            : PNET_GRPC_UNKNOWN;
            snprintf(c->message, sizeof c->message, "HTTP status %d from the server",
                     c->http_status);
        } else if (code != NGHTTP2_NO_ERROR) {
            c->status = code == NGHTTP2_CANCEL ? PNET_GRPC_CANCELLED
                        : code == NGHTTP2_REFUSED_STREAM ? PNET_GRPC_UNAVAILABLE
                                                         : PNET_GRPC_INTERNAL;
            snprintf(c->message, sizeof c->message, "stream reset (%s)",
                     nghttp2_http2_strerror(code));
        } else {
            c->status = PNET_GRPC_INTERNAL;
            snprintf(c->message, sizeof c->message, "stream ended without grpc-status");
        }
    }
    if (grpc_rx_partial(&c->rx) && !c->fail) {
        c->fail = PT_ERR_PROTO;
        snprintf(c->fail_msg, sizeof c->fail_msg, "stream ended inside a gRPC message");
    }
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

/* One I/O step: write, wait up to timeout_ms for readability, read, write.
 * until_sent: the caller only waits for its bytes to go out, so once they are
 * all written do not wait for input (only take what is already there). */
static int pump(pnet_client *c, int timeout_ms, int until_sent, char *err)
{
    if (c->h.dead || c->h.eof) return conn_error(c, err);
    h2_conn_write(&c->h);
    if (c->h.dead) return conn_error(c, err);
    if (until_sent && !c->tx.queued && !h2_conn_pending(&c->h) && !c->h.tls_want_write)
        timeout_ms = 0;
    struct pollfd p = {.fd = c->h.fd, .events = POLLIN};
    if (h2_conn_pending(&c->h) || c->h.tls_want_write) p.events |= POLLOUT;
    if (c->h.ssl && SSL_pending(c->h.ssl)) timeout_ms = 0;
    int r;
    do r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0) return pt_seterr(err, PT_ERR_NET, "poll: %s", strerror(errno));
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) || (c->h.ssl && SSL_pending(c->h.ssl)) ||
        (c->h.ssl && (p.revents & POLLOUT))) {
        int rc = h2_conn_read(&c->h, 64);
        if (rc && rc != PT_ERR_CLOSED) return conn_error(c, err);
    }
    h2_conn_write(&c->h);
    if (c->h.dead) return conn_error(c, err);
    return PT_OK;
}

static int ms_left(double end)
{
    double l = end - pt_now();
    if (l <= 0) return 0;
    return l > 3600 ? 3600000 : (int)(l * 1000) + 1;
}

static int stream_error(pnet_client *c, char *err)
{
    if (c->fail) return pt_seterr(err, c->fail, "%s", c->fail_msg);
    return pt_seterr(err, PT_ERR_CLOSED, "stream ended by the server: grpc-status %d%s%s",
                     c->status, c->message[0] ? ": " : "", c->message);
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
        int ms = ms_left(end);
        if (!ms || poll(&p, 1, ms) == 0)
            return pt_seterr(err, PT_ERR_TIMEOUT, "TLS handshake with %s timed out",
                             c->o.address);
    }
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(c->h.ssl, &alpn, &alen);
    if (alen != 2 || memcmp(alpn, "h2", 2))
        return pt_seterr(err, PT_ERR_TLS, "server %s did not negotiate HTTP/2 (ALPN h2)",
                         c->o.address);
    return PT_OK;
}

/* One connection attempt; PT_ERR_NET/TIMEOUT are worth retrying. */
static int try_connect(pnet_client *c, double end, char *err)
{
    int fd, ms = ms_left(end);
    int rc = sock_connect(c->host, c->port, ms ? ms : 1, &fd, err);
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
    if (sid != c->sid || c->fail || c->closed) return NULL;
    return grpc_rx_direct(&c->rx, max);
}

static int open_stream(pnet_client *c, char *err)
{
    c->h.direct = direct_dst;
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
    c->rx.max = c->o.max_message;
    c->tx.msgs_out = &c->st.msgs_out;
    c->tx.msg_bytes_out = &c->st.msg_bytes_out;
    double deadline_s = o->connect_deadline_s == 0 ? 60 : o->connect_deadline_s;
    double backoff = o->backoff_initial_s > 0 ? o->backoff_initial_s : 0.1;
    double bmax = o->backoff_max_s > 0 ? o->backoff_max_s : 5;
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

    double start = pt_now(), end = start + (deadline_s > 0 ? deadline_s : 30);
    unsigned seed = (unsigned)(pt_now_ns() ^ (uint64_t)getpid());
    for (int attempt = 1;; attempt++) {
        char e1[PT_ERRLEN] = "";
        rc = try_connect(c, end, e1);
        if (rc == PT_OK) break;
        if (rc != PT_ERR_NET && rc != PT_ERR_TIMEOUT) {
            pt_seterr(err, rc, "%s", e1);
            goto fail;
        }
        double wait = backoff * (0.8 + 0.4 * (rand_r(&seed) / (double)RAND_MAX));
        if (deadline_s < 0 || pt_now() + wait > end) {
            rc = pt_seterr(err, deadline_s < 0 ? rc : PT_ERR_TIMEOUT,
                           "could not connect to %s after %d attempt%s in %.1f s: %s",
                           o->address, attempt, attempt > 1 ? "s" : "", pt_now() - start, e1);
            goto fail;
        }
        PT_DEBUG("net: connect attempt %d to %s failed (%s); retrying in %.2f s", attempt,
                 o->address, e1, wait);
        pt_sleep(wait, NULL);
        backoff = backoff * 2 > bmax ? bmax : backoff * 2;
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
        if (c->qhead < c->qn) {
            *out = c->q[c->qhead++];
            if (c->qhead == c->qn) c->qhead = c->qn = 0;
            return PT_OK;
        }
        if (c->fail || c->closed) return stream_error(c, err);
        int ms = timeout_ms < 0 ? 1000 : ms_left(end);
        if (timeout_ms >= 0 && ms == 0 && timeout_ms > 0)
            return pt_seterr(err, PT_ERR_TIMEOUT, "no message from %s within %d ms",
                             c->o.address, timeout_ms);
        int rc = pump(c, ms, 0, err);
        if (rc) {
            if (c->qhead < c->qn) continue;
            if (c->closed || c->fail) return stream_error(c, err);
            return rc;
        }
        if (timeout_ms == 0 && c->qhead == c->qn && !c->closed && !c->fail)
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

/* Block until the queued outgoing bytes are on the socket. */
static int wait_sent(pnet_client *c, char *err)
{
    double kill_at = 0;
    int dropped = 0; /* the stream ended before our bytes were framed */
    for (;;) {
        int stream_gone = c->closed || c->fail;
        if (stream_gone && c->tx.head) {
            h2_tx_clear(&c->tx);
            dropped = 1;
        }
        if (!c->tx.queued && !h2_conn_pending(&c->h)) break;
        int rc = pump(c, 1000, 1, err);
        if (rc) {
            h2_conn_kill(&c->h, c->h.why[0] ? c->h.why : "write failed");
            h2_tx_clear(&c->tx);
            return c->closed || c->fail ? stream_error(c, err) : rc;
        }
        if (stream_gone) {
            /* only connection-level bytes remain; don't hang on a stuck peer */
            if (!kill_at) kill_at = pt_now() + KILL_WAIT_MS / 1000.0;
            if (pt_now() > kill_at) {
                h2_conn_kill(&c->h, "peer stopped reading");
                dropped = 1;
                break;
            }
        }
    }
    /* written: a stream failure that came meanwhile surfaces at the next recv */
    if (dropped) return stream_error(c, err);
    return PT_OK;
}

static int send_check(pnet_client *c, size_t len, char *err)
{
    if (c->half_closed) return pt_seterr(err, PT_ERR_STATE, "stream already half-closed");
    if (c->closed || c->fail) return stream_error(c, err);
    if (c->h.dead) return conn_error(c, err);
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
    return wait_sent(c, err);
}

int pnet_client_send_msg(pnet_client *c, pnet_msg *m, char *err)
{
    int rc = send_check(c, m->len, err);
    if (rc) return rc;
    if (h2_tx_push_msg(&c->tx, m)) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    nghttp2_session_resume_data(c->h.ng, c->sid);
    return wait_sent(c, err);
}

int pnet_client_poll(pnet_client *c, int timeout_ms, char *err)
{
    int rc = PT_OK;
    if (!c->closed && !c->fail) rc = pump(c, timeout_ms < 0 ? 1000 : timeout_ms, 0, err);
    int queued = (int)(c->qn - c->qhead);
    if (queued) return queued;
    if (c->closed || c->fail) return stream_error(c, err);
    return rc ? rc : 0;
}

int pnet_client_close(pnet_client *c, int timeout_ms)
{
    char err[PT_ERRLEN];
    if (!c->closed && !c->half_closed && !c->h.dead) {
        c->half_closed = 1;
        c->tx.ending = 1;
        nghttp2_session_resume_data(c->h.ng, c->sid);
    }
    double end = pt_now() + (timeout_ms < 0 ? 3600 : timeout_ms / 1000.0);
    while (!c->closed && !c->h.dead) {
        int ms = ms_left(end);
        if (!ms) return PT_ERR_TIMEOUT;
        if (pump(c, ms, 0, err)) break;
    }
    if (c->closed) return c->status == 0 && !c->fail ? PT_OK : PT_ERR_CLOSED;
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
