/*
 * srv_conn.c - the gRPC server's connections: one epoll loop; accept (and
 * pnet_server_adopt), TLS handshakes, the limits a connection lives under
 * (per address, deadlines, closing with GOAWAY), reads and writes, the
 * server's life. Streams and requests: grpc_server.c.
 */
#include "sock_int.h"
#include "srv_int.h"
#include "tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

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
        srv_stream_finish(st, PNET_LEAVE_CONN_LOST, why);
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

static int conn_start_h2(pnet_server *s, srv_conn *c)
{
    c->h.direct = srv_direct_dst;
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
    if (srv_log_ok(r, 1, 1.0 / REFUSE_LOG_EVERY_S)) {
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

/* Serve the connected socket fd (taken over: closed on failure) as a new
 * connection; v6/key: its per-address count (v6 -1: none). */
static int conn_add(pnet_server *s, int fd, const char *peer, int v6, uint64_t key)
{
    srv_conn *c = calloc(1, sizeof *c);
    SSL *ssl = c && s->tls ? SSL_new(s->tls) : NULL;
    if (!c || (s->tls && !ssl)) {
        PEER_WARN(s, "net: %s: connection dropped: %s", peer, "out of memory");
        SSL_free(ssl);
        free(c);
        close(fd);
        return PT_ERR_NOMEM;
    }
    if (ssl) {
        SSL_set_fd(ssl, fd);
        SSL_set_accept_state(ssl);
    }
    h2_conn_init(&c->h, fd, ssl, peer, s->rbuf); /* cannot fail: shared read buffer */
    c->srv = s;
    c->born = c->idle_since = pt_now();
    c->addr_v6 = -1;
    c->handshaking = s->tls != NULL;
    c->evmask = EPOLLIN | EPOLLRDHUP;
    struct epoll_event ev = {.events = c->evmask, .data.ptr = c};
    int counted = 0;
    if ((counted = addr_count(s, v6, key, +1)) < 0 || (!c->handshaking && conn_start_h2(s, c)) ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        PEER_WARN(s, "net: %s: connection dropped: %s", peer, "out of memory");
        if (counted > 0) addr_count(s, v6, key, -1);
        h2_conn_free(&c->h);
        free(c);
        return PT_ERR_NOMEM;
    }
    c->addr_v6 = v6;
    c->addr_key = key;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    PT_DEBUG("net: connection from %s", peer);
    if (c->handshaking) conn_handshake(c);
    return PT_OK;
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
        conn_add(s, fd, peer, v6, key);
    }
}

int pnet_server_adopt(pnet_server *s, int fd, const char *peer)
{
    if (fd < 0) return PT_ERR_INVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) || fcntl(fd, F_SETFD, FD_CLOEXEC)) {
        close(fd);
        return PT_ERR_NET;
    }
    if (s->nconns >= s->o.max_connections) {
        refuse(s, fd, peer ? peer : "adopted", "too many connections");
        return PT_ERR_BUSY;
    }
    return conn_add(s, fd, peer ? peer : "adopted", -1, 0);
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
        srv_reap_streams(c);
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
            srv_reap_streams(c);
            if (!c->h.dead && !c->closing && !nghttp2_session_want_read(c->h.ng) &&
                !nghttp2_session_want_write(c->h.ng) && !h2_conn_pending(&c->h)) {
                /* GOAWAY exchanged (or nghttp2 ended the session for a peer error):
                   nothing left to say; close once the peer has read it */
                c->closing = 1;
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
        if (srv_sha256(o->auth_token, strlen(o->auth_token), s->tok_md)) {
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
    srv_stream_callbacks(s->cbs);
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
            srv_stream_free(st);
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
