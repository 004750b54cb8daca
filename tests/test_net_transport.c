/*
 * test_net_transport.c - Petal's gRPC transport, C side: message buffers,
 * reassembly, C client <-> C server, and hostile peers (garbage, truncated
 * and oversized messages, compressed flag, wrong path, oversized headers,
 * too many connections) while a well-behaved client keeps working.
 * Interop with python3-grpcio is in tests/test_net_transport.py.
 */
#include "pnet.h"
#include "h2_int.h"
#include "sock_int.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- a server running in a thread ---------------------------------------- */

typedef struct srv_ctx {
    pnet_server *s;
    pthread_t th;
    volatile int stop;
    pthread_mutex_t mu;
    char log[16384];
    size_t loglen;
    int port;
} srv_ctx;

static void logf_(srv_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(srv_ctx *x, const char *fmt, ...)
{
    pthread_mutex_lock(&x->mu);
    va_list ap;
    va_start(ap, fmt);
    if (x->loglen < sizeof x->log - 256)
        x->loglen += (size_t)vsnprintf(x->log + x->loglen, sizeof x->log - x->loglen, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&x->mu);
}

static int log_has(srv_ctx *x, const char *needle, double wait_s)
{
    double end = pt_now() + wait_s;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        int found = strstr(x->log, needle) != NULL;
        pthread_mutex_unlock(&x->mu);
        if (found || pt_now() > end) return found;
        usleep(10000);
    }
}

static void on_join(pnet_server *s, uint64_t id, const char *peer, void *user)
{
    (void)s;
    logf_(user, "join %llu %s\n", (unsigned long long)id, peer);
}

static void on_message(pnet_server *s, uint64_t id, pnet_msg *m, void *user)
{
    logf_(user, "msg %llu %zu\n", (unsigned long long)id, pnet_msg_len(m));
    if (pnet_msg_len(m) == 1 && pnet_msg_data(m)[0] == 'B') { /* ask for a big answer */
        pnet_msg *b;
        if (pnet_msg_new(&b, 5000) == PT_OK) {
            memset(pnet_msg_data(b), 'b', 5000);
            pnet_server_send(s, id, b);
            pnet_msg_unref(b);
        }
        return;
    }
    pnet_server_send(s, id, m); /* echo, zero copy */
}

static void on_leave(pnet_server *s, uint64_t id, int reason, const char *detail, void *user)
{
    (void)s;
    logf_(user, "leave %llu %s: %s\n", (unsigned long long)id, pnet_leave_name(reason), detail);
}

static void *srv_main(void *arg)
{
    srv_ctx *x = arg;
    while (!x->stop) pnet_server_poll(x->s, 20);
    return NULL;
}

static int srv_start(srv_ctx *x, size_t max_message, int max_conn)
{
    memset(x, 0, sizeof *x);
    pthread_mutex_init(&x->mu, NULL);
    pnet_server_opts o;
    memset(&o, 0, sizeof o);
    o.address = "127.0.0.1:0";
    o.max_message = max_message;
    o.max_connections = max_conn;
    o.user = x;
    o.on_join = on_join;
    o.on_message = on_message;
    o.on_leave = on_leave;
    char err[PT_ERRLEN];
    int rc = pnet_server_new(&x->s, &o, err);
    if (rc) {
        fprintf(stderr, "server: %s\n", err);
        return rc;
    }
    x->port = pnet_server_port(x->s);
    pthread_create(&x->th, NULL, srv_main, x);
    return PT_OK;
}

static void srv_stop(srv_ctx *x)
{
    x->stop = 1;
    pthread_join(x->th, NULL);
    pnet_server_free(x->s);
    pthread_mutex_destroy(&x->mu);
}

/* A well-behaved client: n echoes of a few sizes. Returns 0 on success. */
static int good_client(int port, size_t big)
{
    char addr[64], err[PT_ERRLEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    pnet_client *c;
    if (pnet_client_connect(&c, &o, err)) {
        fprintf(stderr, "good client: %s\n", err);
        return -1;
    }
    size_t sizes[] = {0, 3, 70000, big};
    uint8_t *buf = malloc(big + 70000);
    int bad = 0;
    for (size_t i = 0; i < 4 && !bad; i++) {
        for (size_t k = 0; k < sizes[i]; k++) buf[k] = (uint8_t)(k * 7 + i);
        uint8_t *m;
        size_t len;
        if (pnet_client_send(c, buf, sizes[i], err) || pnet_client_recv(c, &m, &len, 20000, err)) {
            fprintf(stderr, "good client: %s\n", err);
            bad = 1;
        } else if (len != sizes[i] || (len && memcmp(m, buf, len))) {
            fprintf(stderr, "good client: echo of %zu bytes differs\n", sizes[i]);
            bad = 1;
        }
    }
    free(buf);
    if (!bad && pnet_client_close(c, 5000) != PT_OK) bad = 1;
    pnet_client_free(c);
    return bad ? -1 : 0;
}

/* ---- crafting raw HTTP/2 with an nghttp2 client session ------------------- */

typedef struct craft {
    nghttp2_session *ng;
    const uint8_t *body;
    size_t blen, boff;
    int end_stream;
    int grpc_status;
    int http_status;
    int closed;
} craft;

static ssize_t craft_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t length,
                          uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)sid;
    (void)src;
    craft *k = ud;
    size_t n = k->blen - k->boff;
    if (n > length) n = length;
    memcpy(buf, k->body + k->boff, n);
    k->boff += n;
    if (k->boff == k->blen) {
        if (k->end_stream)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        else if (n == 0)
            return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static int craft_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                        size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)ng;
    (void)f;
    (void)flags;
    craft *k = ud;
    char v[32];
    snprintf(v, sizeof v, "%.*s", (int)(vl < 31 ? vl : 31), value);
    if (nl == 11 && !memcmp(name, "grpc-status", 11)) k->grpc_status = atoi(v);
    if (nl == 7 && !memcmp(name, ":status", 7)) k->http_status = atoi(v);
    return 0;
}

static int craft_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    (void)ng;
    (void)sid;
    (void)code;
    ((craft *)ud)->closed = 1;
    return 0;
}

/* Serialize preface + SETTINGS + one request (path, extra header) + body. */
static size_t craft_request(craft *k, const char *path, const char *xname, const char *xval,
                            const uint8_t *body, size_t blen, int end_stream, uint8_t *out,
                            size_t cap)
{
    memset(k, 0, sizeof *k);
    k->grpc_status = -1;
    k->body = body;
    k->blen = blen;
    k->end_stream = end_stream;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, craft_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, craft_close);
    nghttp2_session_client_new(&k->ng, cb, k);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(k->ng, NGHTTP2_FLAG_NONE, NULL, 0);
    nghttp2_nv nv[7] = {H2_NV(":method", "POST"),
                        H2_NV(":scheme", "http"),
                        H2_NV(":path", path),
                        H2_NV(":authority", "127.0.0.1"),
                        H2_NV("content-type", "application/grpc"),
                        H2_NV("te", "trailers")};
    size_t nnv = 6;
    if (xname) {
        nghttp2_nv x = {(uint8_t *)xname, (uint8_t *)xval, strlen(xname), strlen(xval),
                        NGHTTP2_NV_FLAG_NONE};
        nv[nnv++] = x;
    }
    nghttp2_data_provider dp = {.source.ptr = NULL, .read_callback = craft_read};
    nghttp2_submit_request(k->ng, NULL, nv, nnv, &dp, NULL);
    size_t o = 0;
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(k->ng, &p)) > 0 && o + (size_t)n <= cap) {
        memcpy(out + o, p, (size_t)n);
        o += (size_t)n;
    }
    return o;
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read until EOF or timeout; feed into k (if any). Returns 1 if EOF was seen. */
static int raw_drain(int fd, craft *k, double secs)
{
    double end = pt_now() + secs;
    uint8_t buf[65536];
    for (;;) {
        int ms = (int)((end - pt_now()) * 1000);
        if (ms <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0) return 0;
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) return 1;
        if (k && k->ng) nghttp2_session_mem_recv(k->ng, buf, (size_t)r);
        if (k && k->closed) return 0;
    }
}

/* ---- unit tests -------------------------------------------------------------- */

static void t_pct(void)
{
    char enc[64], dec[64];
    grpc_pct_encode("a 100% \xc3\xbc\n", enc, sizeof enc);
    ASSERT_STR_EQ(enc, "a 100%25 %C3%BC%0A");
    grpc_pct_decode(enc, strlen(enc), dec, sizeof dec);
    ASSERT_STR_EQ(dec, "a 100% \xc3\xbc\n");
    grpc_pct_decode("%zz%4", 5, dec, sizeof dec); /* malformed escapes pass through */
    ASSERT_STR_EQ(dec, "%zz%4");
}

static void t_msg_refcount(void)
{
    pnet_msg *m;
    ASSERT_OK(pnet_msg_new(&m, 10));
    memcpy(pnet_msg_data(m), "0123456789", 10);
    ASSERT_OK(pnet_msg_set_len(m, 4));
    ASSERT_EQ_INT(pnet_msg_set_len(m, 11), PT_ERR_RANGE);
    ASSERT(pnet_msg_ref(m) == m);
    pnet_msg_unref(m);
    msg_seal(m);
    ASSERT_EQ_INT(pnet_msg_set_len(m, 2), PT_ERR_STATE);
    ASSERT_EQ_INT(m->buf[4], 4);
    pnet_msg_unref(m);
    pnet_msg_unref(NULL);
    ASSERT_OK(pnet_msg_from(&m, "abc", 3));
    ASSERT_EQ_INT(pnet_msg_len(m), 3);
    ASSERT(!memcmp(pnet_msg_data(m), "abc", 3));
    pnet_msg_unref(m);
}

typedef struct got {
    int n;
    size_t lens[8];
    uint8_t first[8];
} got;

static int got_cb(pnet_msg *m, void *arg)
{
    got *g = arg;
    if (g->n < 8) {
        g->lens[g->n] = m->len;
        g->first[g->n] = m->len ? pnet_msg_data(m)[0] : 0;
    }
    g->n++;
    return 0;
}

static void t_rx_reassembly(void)
{
    /* three messages (5, 0, 3 bytes) fed one byte at a time */
    const uint8_t wire[] = {0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0, 0,
                            0, 0, 0, 0, 3, 'x', 'y', 'z'};
    grpc_rx rx;
    memset(&rx, 0, sizeof rx);
    rx.max = 100;
    got g = {0};
    char err[PT_ERRLEN];
    for (size_t i = 0; i < sizeof wire; i++) ASSERT_OK(grpc_rx_feed(&rx, wire + i, 1, got_cb, &g, err));
    ASSERT_EQ_INT(g.n, 3);
    ASSERT_EQ_INT(g.lens[0], 5);
    ASSERT_EQ_INT(g.lens[1], 0);
    ASSERT_EQ_INT(g.lens[2], 3);
    ASSERT_EQ_INT(g.first[2], 'z' - 2);
    ASSERT(!grpc_rx_partial(&rx));
    /* partial, then limits */
    ASSERT_OK(grpc_rx_feed(&rx, wire, 3, got_cb, &g, err));
    ASSERT(grpc_rx_partial(&rx));
    grpc_rx_free(&rx);
    const uint8_t big[] = {0, 0, 0, 0, 101};
    ASSERT_EQ_INT(grpc_rx_feed(&rx, big, 5, got_cb, &g, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "over the limit");
    grpc_rx_free(&rx);
    const uint8_t comp[] = {1, 0, 0, 0, 1, 'a'};
    ASSERT_EQ_INT(grpc_rx_feed(&rx, comp, 6, got_cb, &g, err), PT_ERR_PROTO);
    ASSERT_CONTAINS(err, "compressed");
    grpc_rx_free(&rx);
}

/* Two streams of one connection share its cap on partially received bytes. */
static void t_rx_connection_cap(void)
{
    size_t buffered = 0;
    grpc_rx a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.max = b.max = 1000;
    a.buffered = b.buffered = &buffered;
    a.buf_cap = b.buf_cap = 100;
    got g = {0};
    char err[PT_ERRLEN];
    uint8_t wire[5 + 200] = {0, 0, 0, 0, 200};
    ASSERT_OK(grpc_rx_feed(&a, wire, 5 + 60, got_cb, &g, err));
    ASSERT_EQ_INT(buffered, 60);
    ASSERT_EQ_INT(grpc_rx_feed(&b, wire, 5 + 50, got_cb, &g, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "cap");
    grpc_rx_free(&b);
    grpc_rx_free(&a); /* releasing a stream returns its bytes */
    ASSERT_EQ_INT(buffered, 0);
    ASSERT_OK(grpc_rx_feed(&b, wire, 5 + 90, got_cb, &g, err));
    ASSERT_EQ_INT(buffered, 90);
    grpc_rx_free(&b);
    ASSERT_EQ_INT(g.n, 0);
}

static void t_port_in_use(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    pnet_server_opts o;
    memset(&o, 0, sizeof o);
    char addr[64], err[PT_ERRLEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x.port);
    o.address = addr;
    pnet_server *s2 = NULL;
    int rc = pnet_server_new(&s2, &o, err);
    srv_stop(&x);
    ASSERT_EQ_INT(rc, PT_ERR_BUSY);
    ASSERT(s2 == NULL);
    ASSERT_CONTAINS(err, "already in use");
    o.address = "127.0.0.1:99999";
    ASSERT_EQ_INT(pnet_server_new(&s2, &o, err), PT_ERR_INVAL);
    o.address = "127.0.0.1:0";
    o.tls_cert = "/nonexistent/cert.pem";
    o.tls_key = "/nonexistent/key.pem";
    ASSERT_EQ_INT(pnet_server_new(&s2, &o, err), PT_ERR_TLS);
    ASSERT_CONTAINS(err, "/nonexistent/cert.pem");
}

static void t_c_client_c_server(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    int rc = good_client(x.port, 30000000);
    /* zero-copy send of a refcounted message, then a cancel (client freed) */
    char addr[64], err[PT_ERRLEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x.port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    pnet_client *c = NULL;
    int rc2 = pnet_client_connect(&c, &o, err);
    pnet_msg *m = NULL, *back = NULL;
    if (!rc2) rc2 = pnet_msg_from(&m, "refcounted", 10);
    if (!rc2) rc2 = pnet_client_send_msg(c, m, err);
    if (!rc2) rc2 = pnet_client_recv_msg(c, &back, 5000, err);
    int same = back && pnet_msg_len(back) == 10 && !memcmp(pnet_msg_data(back), "refcounted", 10);
    pnet_msg_unref(m);
    pnet_msg_unref(back);
    pnet_client_free(c);
    int done = log_has(&x, " done: ", 5), cancelled = log_has(&x, " cancelled: ", 5);
    srv_stop(&x);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_MSG(rc2 == 0, "%s", err);
    ASSERT(same);
    ASSERT_MSG(done, "no 'done' leave after the half-close:\n%s", x.log);
    ASSERT_MSG(cancelled, "no 'cancelled' leave after the client reset:\n%s", x.log);
}

/* Run a hostile exchange while a good client works at the same time. */
typedef struct good_arg {
    int port;
    size_t big;
    int rc;
} good_arg;

static void *good_thread(void *p)
{
    good_arg *g = p;
    g->rc = good_client(g->port, g->big);
    return NULL;
}

static void t_garbage_bytes(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    int fd = raw_connect(x.port);
    ASSERT(fd >= 0);
    good_arg g = {x.port, 3000000, -1};
    pthread_t th;
    pthread_create(&th, NULL, good_thread, &g);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02\x03 garbage garbage garbage";
    ssize_t w = send(fd, junk, sizeof junk, MSG_NOSIGNAL);
    int eof = raw_drain(fd, NULL, 5);
    close(fd);
    pthread_join(th, NULL);
    srv_stop(&x);
    ASSERT_EQ_INT(w, (ssize_t)sizeof junk);
    ASSERT_MSG(eof, "server did not close the garbage connection");
    ASSERT_EQ_INT(g.rc, 0);
}

static void t_truncated_message(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    int fd = raw_connect(x.port);
    ASSERT(fd >= 0);
    uint8_t body[15] = {0, 0, 0, 3, 0xe8, 'p', 'a', 'r', 't', 'i', 'a', 'l', '.', '.', '.'};
    uint8_t out[4096];
    craft k;
    size_t n = craft_request(&k, H2_PATH_JOIN, NULL, NULL, body, sizeof body, 0, out, sizeof out);
    ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
    int joined = log_has(&x, "join ", 5);
    close(fd); /* truncated: 1000 bytes announced, 10 sent */
    int left = log_has(&x, "protocol error: connection closed inside a gRPC message", 5);
    int good = good_client(x.port, 1000000);
    nghttp2_session_del(k.ng);
    srv_stop(&x);
    ASSERT_EQ_INT(w, (ssize_t)n);
    ASSERT(joined);
    ASSERT_MSG(left, "no truncation leave:\n%s", x.log);
    ASSERT_EQ_INT(good, 0);
}

/* Send one crafted request; return the grpc-status (or -HTTP status). */
static int crafted_status(int port, const char *path, const uint8_t *body, size_t blen,
                          const char *xname, const char *xval, int *eof)
{
    int fd = raw_connect(port);
    if (fd < 0) return -1000;
    static uint8_t out[1 << 17];
    craft k;
    size_t n = craft_request(&k, path, xname, xval, body, blen, 1, out, sizeof out);
    ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
    (void)w;
    *eof = raw_drain(fd, &k, 5);
    close(fd);
    int st = k.grpc_status >= 0 ? k.grpc_status : -k.http_status;
    nghttp2_session_del(k.ng);
    return st;
}

static void t_oversized_message(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 1 << 20, 0));
    good_arg g = {x.port, 500000, -1};
    pthread_t th;
    pthread_create(&th, NULL, good_thread, &g);
    const uint8_t body[] = {0, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3};
    int eof;
    int st = crafted_status(x.port, H2_PATH_JOIN, body, sizeof body, NULL, NULL, &eof);
    pthread_join(th, NULL);
    srv_stop(&x);
    ASSERT_EQ_INT(st, PNET_GRPC_RESOURCE_EXHAUSTED);
    ASSERT_EQ_INT(g.rc, 0);
}

static void t_limits_keep_others_running(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 8 << 20, 0));
    int eof;
    const uint8_t big[] = {0, 0x7f, 0xff, 0xff, 0xff};
    int s1 = crafted_status(x.port, H2_PATH_JOIN, big, sizeof big, NULL, NULL, &eof);
    const uint8_t comp[] = {1, 0, 0, 0, 2, 'h', 'i'};
    int s2 = crafted_status(x.port, H2_PATH_JOIN, comp, sizeof comp, NULL, NULL, &eof);
    const uint8_t ok[] = {0, 0, 0, 0, 0};
    int s3 = crafted_status(x.port, "/flwr.proto.FlowerService/Other", ok, sizeof ok, NULL, NULL,
                            &eof);
    int s4 = crafted_status(x.port, H2_PATH_JOIN, ok, sizeof ok, "grpc-encoding", "gzip", &eof);
    static char huge[20000];
    memset(huge, 'a', sizeof huge - 1);
    int s5 = crafted_status(x.port, H2_PATH_JOIN, ok, sizeof ok, "x-huge", huge, &eof);
    int hdr_eof = eof;
    int good = good_client(x.port, 5000000);
    srv_stop(&x);
    ASSERT_EQ_INT(s1, PNET_GRPC_RESOURCE_EXHAUSTED);
    ASSERT_EQ_INT(s2, PNET_GRPC_INTERNAL);
    ASSERT_EQ_INT(s3, PNET_GRPC_UNIMPLEMENTED);
    ASSERT_EQ_INT(s4, PNET_GRPC_UNIMPLEMENTED);
    ASSERT_MSG(s5 < 0 || s5 == -1000 || hdr_eof, "oversized headers: status %d", s5);
    ASSERT_MSG(hdr_eof, "connection with oversized headers was not closed");
    ASSERT_EQ_INT(good, 0);
}

static void t_max_connections(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 2));
    int a = raw_connect(x.port), b = raw_connect(x.port);
    usleep(100000);
    int c = raw_connect(x.port);
    int c_eof = raw_drain(c, NULL, 3);
    close(a);
    close(b);
    close(c);
    usleep(100000);
    int good = good_client(x.port, 1000);
    srv_stop(&x);
    ASSERT_MSG(c_eof, "third connection not refused");
    ASSERT_EQ_INT(good, 0);
}

static void t_server_end_stream(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    char addr[64], err[PT_ERRLEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x.port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    pnet_client *c;
    int rc = pnet_client_connect(&c, &o, err);
    int joined = !rc && log_has(&x, "join 1 ", 5);
    /* end it from outside the server thread: stop the loop first */
    x.stop = 1;
    pthread_join(x.th, NULL);
    int erc = pnet_server_end_stream(x.s, 1, PNET_GRPC_UNAVAILABLE, "going away");
    int nf = pnet_server_end_stream(x.s, 12345, 0, NULL);
    x.stop = 0;
    pthread_create(&x.th, NULL, srv_main, &x);
    uint8_t *m;
    size_t len;
    int rrc = rc ? rc : pnet_client_recv(c, &m, &len, 5000, err);
    const char *msg = "";
    int st = rc ? -2 : pnet_client_status(c, &msg);
    int ended = log_has(&x, "ended: ", 5);
    char msgc[64];
    snprintf(msgc, sizeof msgc, "%s", msg);
    pnet_client_free(c);
    srv_stop(&x);
    ASSERT(joined);
    ASSERT_OK(erc);
    ASSERT_EQ_INT(nf, PT_ERR_NOTFOUND);
    ASSERT_EQ_INT(rrc, PT_ERR_CLOSED);
    ASSERT_EQ_INT(st, PNET_GRPC_UNAVAILABLE);
    ASSERT_STR_EQ(msgc, "going away");
    ASSERT(ended);
}

typedef struct late_arg {
    char addr[64];
    int rc;
    double took;
    char err[PT_ERRLEN];
} late_arg;

static void *late_client(void *p)
{
    late_arg *a = p;
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = a->addr;
    o.connect_deadline_s = 10;
    o.backoff_initial_s = 0.05;
    o.backoff_max_s = 0.2;
    pnet_client *c = NULL;
    double t0 = pt_now();
    a->rc = pnet_client_connect(&c, &o, a->err);
    if (!a->rc) {
        uint8_t *m;
        size_t len;
        a->rc = pnet_client_send(c, "late", 4, a->err);
        if (!a->rc) a->rc = pnet_client_recv(c, &m, &len, 5000, a->err);
        if (!a->rc && (len != 4 || memcmp(m, "late", 4))) a->rc = -99;
    }
    a->took = pt_now() - t0;
    pnet_client_free(c);
    return NULL;
}

static void t_connect_retries_until_server_up(void)
{
    /* find a free port, start the client first, the server 0.6 s later */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof a;
    ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof a));
    getsockname(fd, (struct sockaddr *)&a, &sl);
    close(fd);
    late_arg la;
    memset(&la, 0, sizeof la);
    snprintf(la.addr, sizeof la.addr, "127.0.0.1:%d", ntohs(a.sin_port));
    pthread_t th;
    pthread_create(&th, NULL, late_client, &la);
    usleep(600000);
    srv_ctx x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.mu, NULL);
    pnet_server_opts o;
    memset(&o, 0, sizeof o);
    o.address = la.addr;
    o.user = &x;
    o.on_join = on_join;
    o.on_message = on_message;
    o.on_leave = on_leave;
    char err[PT_ERRLEN];
    int rc = pnet_server_new(&x.s, &o, err);
    if (rc == PT_OK) pthread_create(&x.th, NULL, srv_main, &x);
    pthread_join(th, NULL);
    if (rc == PT_OK) srv_stop(&x);
    ASSERT_MSG(rc == PT_OK, "server: %s", err);
    ASSERT_MSG(la.rc == PT_OK, "late client: %d %s", la.rc, la.err);
    ASSERT_MSG(la.took > 0.5 && la.took < 5, "took %.2f s", la.took);
}

/* Mutated and truncated copies of a valid request stream, many connections
 * in a row: the server must survive them all and still serve a good client. */
static void t_mutation_fuzz(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 1 << 20, 0));
    uint8_t body[64] = {0, 0, 0, 0, 20};
    for (int i = 5; i < 25; i++) body[i] = (uint8_t)i;
    memcpy(body + 25, body, 25); /* two messages, then garbage tail */
    static uint8_t base[8192], buf[8192];
    craft k;
    size_t n = craft_request(&k, H2_PATH_JOIN, "x-pad", "abcdefgh", body, 50, 1, base, sizeof base);
    nghttp2_session_del(k.ng);
    uint32_t seed = 12345;
    int sent = 0;
    for (int it = 0; it < 300; it++) {
        memcpy(buf, base, n);
        size_t len = n;
        int flips = 1 + it % 8;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = 24 + (seed >> 8) % (len - 24); /* keep the preface mostly */
            buf[pos] = (uint8_t)(seed >> 3);
        }
        if (it % 5 == 0) {
            seed = seed * 1103515245u + 12345u;
            len = 24 + (seed >> 8) % (len - 24);
        }
        int fd = raw_connect(x.port);
        if (fd < 0) continue;
        struct timeval tv = {0, 200000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len) sent++;
        if (it % 3 == 0) raw_drain(fd, NULL, 0.05);
        close(fd);
    }
    int good = good_client(x.port, 500000);
    srv_stop(&x);
    ASSERT(sent > 250);
    ASSERT_EQ_INT(good, 0);
}

typedef struct flush_arg {
    int port, rc, status;
    size_t len;
    char err[PT_ERRLEN];
} flush_arg;

static void *flush_client(void *p)
{
    flush_arg *a = p;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", a->port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    pnet_client *c;
    a->rc = pnet_client_connect(&c, &o, a->err);
    if (a->rc) return NULL;
    uint8_t *m;
    a->rc = pnet_client_recv(c, &m, &a->len, 20000, a->err);
    if (!a->rc) {
        size_t len2;
        int rc2 = pnet_client_recv(c, &m, &len2, 20000, a->err);
        a->status = rc2 == PT_ERR_CLOSED ? pnet_client_status(c, NULL) : -100 + rc2;
    }
    pnet_client_free(c);
    return NULL;
}

/* A big message then the end of the stream, flushed, then the server freed
 * at once: the client still gets both. */
static void t_flush_before_free(void)
{
    srv_ctx x;
    memset(&x, 0, sizeof x);
    pthread_mutex_init(&x.mu, NULL);
    pnet_server_opts o;
    memset(&o, 0, sizeof o);
    o.user = &x;
    o.on_join = on_join;
    o.on_leave = on_leave;
    char err[PT_ERRLEN];
    ASSERT_OK(pnet_server_new(&x.s, &o, err));
    flush_arg a;
    memset(&a, 0, sizeof a);
    a.port = pnet_server_port(x.s);
    pthread_t th;
    pthread_create(&th, NULL, flush_client, &a);
    double end = pt_now() + 10;
    while (pnet_server_clients(x.s) < 1 && pt_now() < end) pnet_server_poll(x.s, 20);
    pnet_msg *m;
    ASSERT_OK(pnet_msg_new(&m, 20000000));
    memset(pnet_msg_data(m), 7, 20000000);
    int rs = pnet_server_send(x.s, 1, m);
    pnet_msg_unref(m);
    int re = pnet_server_end_stream(x.s, 1, PNET_GRPC_OK, NULL);
    int rf = pnet_server_flush(x.s, 15000);
    pnet_server_free(x.s);
    pthread_join(th, NULL);
    pthread_mutex_destroy(&x.mu);
    ASSERT_OK(rs);
    ASSERT_OK(re);
    ASSERT_OK(rf);
    ASSERT_MSG(a.rc == PT_OK, "client: %s", a.err);
    ASSERT_EQ_INT(a.len, 20000000);
    ASSERT_EQ_INT(a.status, 0);
}

/* The client's own limit: a message over its max_message fails the stream
 * with PT_ERR_RANGE and a clear error; the server sees the client leave. */
static void t_client_message_limit(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    char addr[64], err[PT_ERRLEN];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x.port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    o.max_message = 1000;
    pnet_client *c;
    int rc = pnet_client_connect(&c, &o, err);
    static uint8_t big[2000];
    int rs = rc ? rc : pnet_client_send(c, big, sizeof big, err); /* over its own limit */
    int rs2 = rc ? rc : pnet_client_send(c, big, 999, err);        /* fine; echo is too */
    uint8_t *m;
    size_t len = 0;
    int rr = rc ? rc : pnet_client_recv(c, &m, &len, 5000, err);
    pnet_client_free(c);
    srv_stop(&x);
    ASSERT_OK(rc);
    ASSERT_EQ_INT(rs, PT_ERR_RANGE);
    ASSERT_OK(rs2);
    ASSERT_OK(rr);
    ASSERT_EQ_INT(len, 999);
}

static void t_client_recv_limit(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    char addr[64], err[PT_ERRLEN] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x.port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    o.max_message = 4000;
    pnet_client *c;
    int rc = pnet_client_connect(&c, &o, err);
    int rs = rc ? rc : pnet_client_send(c, "B", 1, err); /* the server answers 5000 bytes */
    uint8_t *m;
    size_t len;
    int rr = rc ? rc : pnet_client_recv(c, &m, &len, 5000, err);
    int left = log_has(&x, "leave 1 ", 5);
    pnet_client_free(c);
    srv_stop(&x);
    ASSERT_OK(rc);
    ASSERT_OK(rs);
    ASSERT_EQ_INT(rr, PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "over the limit");
    ASSERT(left);
}

static void t_address_parsing(void)
{
    char h[64], p[16], err[PT_ERRLEN];
    ASSERT_OK(sock_split("127.0.0.1:8080", h, sizeof h, p, sizeof p, err));
    ASSERT_STR_EQ(h, "127.0.0.1");
    ASSERT_STR_EQ(p, "8080");
    ASSERT_OK(sock_split("[::1]:9092", h, sizeof h, p, sizeof p, err));
    ASSERT_STR_EQ(h, "::1");
    ASSERT_STR_EQ(p, "9092");
    ASSERT_OK(sock_split(":0", h, sizeof h, p, sizeof p, err));
    ASSERT_STR_EQ(h, "");
    ASSERT_OK(sock_split("localhost:1", h, sizeof h, p, sizeof p, err));
    ASSERT_STR_EQ(h, "localhost");
    static const char *bad[] = {"", "127.0.0.1", "host:", "host:x", "host:65536", "host:-1",
                                "::1:80", "[::1]80", "[::1", "h:8080x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ASSERT_MSG(sock_split(bad[i], h, sizeof h, p, sizeof p, err) == PT_ERR_INVAL,
                   "'%s' accepted", bad[i]);
    char addr[64];
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = "no-port-here";
    pnet_client *c = NULL;
    ASSERT_EQ_INT(pnet_client_connect(&c, &o, addr), PT_ERR_INVAL);
    ASSERT_CONTAINS(addr, "host:port");
    ASSERT(c == NULL);
}

/* Many messages of random sizes (0 .. 3 MB, around the direct-receive
 * threshold too) sent back to back without waiting, echoes read afterwards:
 * the client queues what arrives while it sends; every byte must match. */
static void t_pipelined_random_sizes(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, 0, 0));
    char addr[64], err[PT_ERRLEN] = "";
    snprintf(addr, sizeof addr, "127.0.0.1:%d", x.port);
    pnet_client_opts o;
    memset(&o, 0, sizeof o);
    o.address = addr;
    pnet_client *c;
    int rc = pnet_client_connect(&c, &o, err);
    enum { N = 120 };
    static size_t sizes[N];
    uint32_t seed = 777;
    uint8_t *buf = malloc(3 << 20);
    for (size_t i = 0; i < (3u << 20); i++) buf[i] = (uint8_t)(i * 31 + (i >> 11));
    for (int i = 0; i < N && !rc; i++) {
        seed = seed * 1664525u + 1013904223u;
        size_t kind = seed % 4;
        size_t n = kind == 0 ? (seed >> 8) % 100
                   : kind == 1 ? 65536 + (seed >> 8) % 200 - 100
                   : kind == 2 ? (seed >> 8) % (300 << 10)
                               : (seed >> 8) % (3u << 20);
        sizes[i] = n;
        rc = pnet_client_send(c, buf + (i % 7), n, err);
    }
    int bad = -1;
    for (int i = 0; i < N && !rc; i++) {
        uint8_t *m;
        size_t len;
        rc = pnet_client_recv(c, &m, &len, 20000, err);
        if (!rc && (len != sizes[i] || (len && memcmp(m, buf + (i % 7), len)))) {
            bad = i;
            break;
        }
    }
    free(buf);
    pnet_stats st;
    pnet_client_stats(c, &st);
    int crc = rc ? rc : pnet_client_close(c, 5000);
    pnet_client_free(c);
    srv_stop(&x);
    ASSERT_MSG(rc == PT_OK, "%s", err);
    ASSERT_MSG(bad < 0, "message %d (%zu bytes) came back different", bad, bad >= 0 ? sizes[bad] : 0);
    ASSERT_EQ_INT(st.msgs_in, N);
    ASSERT_EQ_INT(st.msgs_out, N);
    ASSERT_OK(crc);
}

/* gRPC's connection backoff: 1 s, x1.6, +-20 % jitter, capped; reset starts over. */
static void t_backoff(void)
{
    pnet_backoff b = {0};
    double want = 1.0;
    for (int i = 0; i < 20; i++) {
        double d = pnet_backoff_next(&b);
        ASSERT_MSG(d >= 0.8 * want - 1e-9 && d <= 1.2 * want + 1e-9, "retry %d: %.3f s, want %.3f"
                   " +-20 %%", i, d, want);
        want = want * 1.6 > 120 ? 120 : want * 1.6;
    }
    pnet_backoff_reset(&b);
    double d = pnet_backoff_next(&b);
    ASSERT(d >= 0.8 && d <= 1.2);
    pnet_backoff c = {.initial_s = 0.1, .max_s = 0.3};
    for (int i = 0; i < 10; i++) d = pnet_backoff_next(&c);
    ASSERT(d >= 0.24 - 1e-9 && d <= 0.36 + 1e-9);
}

TEST_MAIN(TEST(t_address_parsing), TEST(t_backoff), TEST(t_pipelined_random_sizes), TEST(t_connect_retries_until_server_up), TEST(t_client_message_limit),
          TEST(t_client_recv_limit), TEST(t_flush_before_free), TEST(t_mutation_fuzz), TEST(t_pct), TEST(t_msg_refcount), TEST(t_rx_reassembly), TEST(t_rx_connection_cap), TEST(t_port_in_use),
          TEST(t_c_client_c_server), TEST(t_garbage_bytes), TEST(t_truncated_message),
          TEST(t_oversized_message), TEST(t_limits_keep_others_running), TEST(t_max_connections),
          TEST(t_server_end_stream))
