/*
 * test_net_transport_auth.c - Petal's transport: client authentication
 * (shared token as gRPC metadata, mutual TLS with certificates made by
 * pnet_tls_make_*), configurable resource limits (handshake deadline,
 * server-wide receive cap, receive buffers freed after hand-off), idle
 * per-connection memory, and a send that does not wait for a reply.
 * Interop with python3-grpcio: tests/test_net_transport_auth.py.
 */
#include "pnet.h"
#include "h2_int.h"
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];
static char logpath[300];

/* ---- a server running in a thread ----------------------------------------- */

typedef struct srv_ctx {
    pnet_server *s;
    pthread_t th;
    volatile int stop;
    volatile int joins, leaves;
    int port;
} srv_ctx;

static void on_join(pnet_server *s, uint64_t id, const char *peer, void *user)
{
    (void)s, (void)id, (void)peer;
    __atomic_add_fetch(&((srv_ctx *)user)->joins, 1, __ATOMIC_RELAXED);
}

static void on_message(pnet_server *s, uint64_t id, pnet_msg *m, void *user)
{
    (void)user;
    if (pnet_msg_len(m) == 5 && !memcmp(pnet_msg_data(m), "quiet", 5)) return; /* no reply */
    pnet_server_send(s, id, m); /* echo */
}

static void on_leave(pnet_server *s, uint64_t id, int reason, const char *detail, void *user)
{
    (void)s, (void)id, (void)reason, (void)detail;
    __atomic_add_fetch(&((srv_ctx *)user)->leaves, 1, __ATOMIC_RELAXED);
}

static void *srv_main(void *arg)
{
    srv_ctx *x = arg;
    while (!x->stop) pnet_server_poll(x->s, 20);
    return NULL;
}

/* o may be NULL; address and callbacks are filled in. */
static int srv_start(srv_ctx *x, const pnet_server_opts *base)
{
    memset(x, 0, sizeof *x);
    pnet_server_opts o;
    memset(&o, 0, sizeof o);
    if (base) o = *base;
    o.address = "127.0.0.1:0";
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
}

static void client_opts(pnet_client_opts *o, char *addr, size_t alen, int port)
{
    snprintf(addr, alen, "127.0.0.1:%d", port);
    memset(o, 0, sizeof *o);
    o->address = addr;
    o->connect_deadline_s = 10;
}

/* Connect, echo len bytes; 0 on success, else the failing pt_err (err set). */
static int echo_once(const pnet_client_opts *o, size_t len, int *grpc_status, char *err)
{
    pnet_client *c;
    int rc = pnet_client_connect(&c, o, err);
    if (grpc_status) *grpc_status = -1;
    if (rc) return rc;
    uint8_t *buf = malloc(len ? len : 1), *m;
    size_t n;
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 13 + 1);
    rc = pnet_client_send(c, buf, len, err);
    if (!rc) rc = pnet_client_recv(c, &m, &n, 10000, err);
    if (!rc && (n != len || (len && memcmp(m, buf, len))))
        rc = pt_seterr(err, PT_ERR_MISMATCH, "echo differs");
    if (!rc) rc = pnet_client_close(c, 5000);
    if (grpc_status) *grpc_status = pnet_client_status(c, NULL);
    pnet_client_free(c);
    free(buf);
    return rc;
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static int wait_file_has(const char *path, const char *needle, double secs)
{
    double end = pt_now() + secs;
    while (!file_has(path, needle))
        if (pt_now() > end) return 0;
        else usleep(10000);
    return 1;
}

static void path_in(char *out, size_t cap, const char *sub, const char *name)
{
    snprintf(out, cap, "%s/%s/%s", tmpdir, sub, name);
}

/* ---- tests -------------------------------------------------------------------- */

/* A send the server never answers returns once the bytes are written (the
 * client used to wait a fixed second for input after writing). */
static void t_send_does_not_wait_for_reply(void)
{
    srv_ctx x;
    ASSERT_OK(srv_start(&x, NULL));
    pnet_client_opts o;
    char addr[64], err[PT_ERRLEN];
    client_opts(&o, addr, sizeof addr, x.port);
    pnet_client *c;
    ASSERT_OK(pnet_client_connect(&c, &o, err));
    double worst = 0;
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        double t0 = pt_now();
        rc = pnet_client_send(c, "quiet", 5, err);
        double dt = pt_now() - t0;
        if (dt > worst) worst = dt;
    }
    pnet_client_free(c);
    srv_stop(&x);
    ASSERT_OK(rc);
    ASSERT_MSG(worst < 0.5, "send of an unanswered message took %.3f s", worst);
}

static void t_token_checks(void)
{
    char err[PT_ERRLEN], tok[PNET_TOKEN_MAX + 1], path[400];
    ASSERT_EQ_INT(pnet_auth_token_check("short", err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "too short");
    ASSERT_EQ_INT(pnet_auth_token_check("0123456789abcdef ghij", err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "offset 16");
    ASSERT_OK(pnet_auth_token_check("0123456789abcdef", err));
    ASSERT_OK(pnet_auth_token_new(tok, sizeof tok, err));
    ASSERT_EQ_INT(strlen(tok), 64);
    ASSERT_EQ_INT(pnet_auth_token_new(tok, 10, err), PT_ERR_RANGE);
    snprintf(path, sizeof path, "%s/tok", tmpdir);
    FILE *f = fopen(path, "w");
    ASSERT(f);
    fputs("abcdefghijklmnopqrstuvwxyz \r\nsecond line\n", f);
    fclose(f);
    ASSERT_OK(pnet_auth_token_load(path, tok, sizeof tok, err));
    ASSERT_STR_EQ(tok, "abcdefghijklmnopqrstuvwxyz");
    f = fopen(path, "w");
    fputs("\n", f);
    fclose(f);
    ASSERT_EQ_INT(pnet_auth_token_load(path, tok, sizeof tok, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "too short");
    snprintf(path, sizeof path, "%s/missing-token", tmpdir);
    ASSERT_EQ_INT(pnet_auth_token_load(path, tok, sizeof tok, err), PT_ERR_IO);
    /* a server refuses a bad token at creation; a client too */
    pnet_server *s;
    pnet_server_opts so;
    memset(&so, 0, sizeof so);
    so.auth_token = "tiny";
    ASSERT_EQ_INT(pnet_server_new(&s, &so, err), PT_ERR_INVAL);
    pnet_client *c;
    pnet_client_opts co;
    memset(&co, 0, sizeof co);
    co.address = "127.0.0.1:1";
    co.auth_token = "bad token with spaces";
    ASSERT_EQ_INT(pnet_client_connect(&c, &co, err), PT_ERR_INVAL);
}

static void t_certgen(void)
{
    char err[PT_ERRLEN], p[400], q[400], r[400], s[400];
    /* runA and runB were made by setup() with pnet_tls_make_run_dir; a run
       directory is remade in place (files replaced, modes kept) */
    snprintf(p, sizeof p, "%s/runC", tmpdir);
    ASSERT_OK(pnet_tls_make_run_dir(p, NULL, 1, err));
    ASSERT_OK(pnet_tls_make_run_dir(p, "DNS:again.example", 1, err));
    const char *names[] = {"ca.pem", "ca.key", "server.pem", "server.key", "client.pem",
                           "client.key", "token"};
    for (int i = 0; i < 7; i++) {
        struct stat st;
        path_in(p, sizeof p, "runA", names[i]);
        ASSERT_MSG(stat(p, &st) == 0 && st.st_size > 0, "%s missing", p);
        int secret = strstr(names[i], ".key") || !strcmp(names[i], "token");
        ASSERT_MSG((st.st_mode & 0777) == (secret ? 0600u : 0644u), "%s mode %o", p,
                   st.st_mode & 0777);
    }
    char tok[PNET_TOKEN_MAX + 1];
    path_in(p, sizeof p, "runA", "token");
    ASSERT_OK(pnet_auth_token_load(p, tok, sizeof tok, err));
    ASSERT_EQ_INT(strlen(tok), 64);
    /* a certificate from a CA whose key is not its own */
    path_in(p, sizeof p, "runA", "ca.pem");
    path_in(q, sizeof q, "runB", "ca.key");
    path_in(r, sizeof r, "runA", "x.pem");
    path_in(s, sizeof s, "runA", "x.key");
    ASSERT_EQ_INT(pnet_tls_make_cert(p, q, r, s, "x", NULL, PNET_CERT_CLIENT, 1, err),
                  PT_ERR_TLS);
    ASSERT_CONTAINS(err, "does not match");
    path_in(q, sizeof q, "runA", "ca.key");
    ASSERT_EQ_INT(pnet_tls_make_cert(p, q, r, s, "x", "NOPE:x", PNET_CERT_SERVER, 1, err),
                  PT_ERR_INVAL);
    ASSERT_EQ_INT(pnet_tls_make_cert(p, q, r, s, "x", NULL, 0, 1, err), PT_ERR_INVAL);
    ASSERT_OK(pnet_tls_make_cert(p, q, r, s, "both", "DNS:a.example",
                                 PNET_CERT_SERVER | PNET_CERT_CLIENT, 0, err));
    snprintf(p, sizeof p, "%s/no/such/dir/ca.pem", tmpdir);
    ASSERT_EQ_INT(pnet_tls_make_ca(p, q, NULL, 1, err), PT_ERR_IO);
}

typedef struct hold_arg {
    int port;
    const pnet_client_opts *o;
    volatile int go;
    int rc;
} hold_arg;

/* A well-behaved client that joins first, waits until the hostile ones are
 * done, then completes its exchange. */
static void *hold_client(void *p)
{
    hold_arg *a = p;
    char err[PT_ERRLEN];
    pnet_client *c;
    a->rc = pnet_client_connect(&c, a->o, err);
    if (a->rc) return NULL;
    uint8_t *m;
    size_t n;
    a->rc = pnet_client_send(c, "first", 5, err);
    if (!a->rc) a->rc = pnet_client_recv(c, &m, &n, 10000, err);
    while (!a->rc && !a->go) {
        int q = pnet_client_poll(c, 20, err);
        if (q < 0) a->rc = q;
    }
    if (!a->rc) a->rc = pnet_client_send(c, "second", 6, err);
    if (!a->rc) a->rc = pnet_client_recv(c, &m, &n, 10000, err);
    if (!a->rc && (n != 6 || memcmp(m, "second", 6))) a->rc = PT_ERR_MISMATCH;
    if (!a->rc) a->rc = pnet_client_close(c, 5000);
    if (a->rc) fprintf(stderr, "hold client: %s\n", err);
    pnet_client_free(c);
    return NULL;
}

static void t_token_auth(void)
{
    const char *good = "run-token-0123456789abcdefABCDEF";
    pnet_server_opts so;
    memset(&so, 0, sizeof so);
    so.auth_token = good;
    srv_ctx x;
    ASSERT_OK(srv_start(&x, &so));
    pnet_client_opts o;
    char addr[64], err[PT_ERRLEN];
    client_opts(&o, addr, sizeof addr, x.port);
    pnet_client_opts ok = o;
    ok.auth_token = good;
    hold_arg h = {x.port, &ok, 0, -1};
    pthread_t th;
    pthread_create(&th, NULL, hold_client, &h);
    int st_ok = -1, st_wrong = -1, st_none = -1, st_prefix = -1;
    int rc_ok = echo_once(&ok, 70000, &st_ok, err);
    pnet_client_opts wrong = o;
    wrong.auth_token = "run-token-0123456789abcdefABCDEX"; /* same length, last byte differs */
    int rc_wrong = echo_once(&wrong, 10, &st_wrong, err);
    int rc_none = echo_once(&o, 10, &st_none, err);
    pnet_client_opts prefix = o;
    prefix.auth_token = "run-token-0123456789abcdef"; /* a prefix of the right one */
    int rc_prefix = echo_once(&prefix, 10, &st_prefix, err);
    int logged = wait_file_has(logpath, "refused: wrong authorization token", 5) &&
                 wait_file_has(logpath, "refused: no authorization token", 5);
    h.go = 1;
    pthread_join(th, NULL);
    int joins = x.joins;
    srv_stop(&x);
    ASSERT_OK(rc_ok);
    ASSERT_EQ_INT(st_ok, 0);
    ASSERT_EQ_INT(rc_wrong, PT_ERR_CLOSED);
    ASSERT_EQ_INT(st_wrong, PNET_GRPC_UNAUTHENTICATED);
    ASSERT_EQ_INT(rc_none, PT_ERR_CLOSED);
    ASSERT_EQ_INT(st_none, PNET_GRPC_UNAUTHENTICATED);
    ASSERT_EQ_INT(rc_prefix, PT_ERR_CLOSED);
    ASSERT_EQ_INT(st_prefix, PNET_GRPC_UNAUTHENTICATED);
    ASSERT_MSG(logged, "refusals not logged");
    ASSERT_MSG(file_has(logpath, "ipv4:127.0.0.1:"), "refusal without the peer address");
    ASSERT_MSG(!file_has(logpath, "0123456789abcdef"), "a token reached the log");
    ASSERT_EQ_INT(joins, 2); /* the two good clients only */
    ASSERT_OK(h.rc);
}

static void mtls_opts(pnet_client_opts *o, const char *cert_run, const char *ca_run, char *b1,
                      char *b2, char *b3)
{
    path_in(b1, 400, ca_run, "ca.pem");
    o->tls_ca = b1;
    if (cert_run) {
        path_in(b2, 400, cert_run, "client.pem");
        path_in(b3, 400, cert_run, "client.key");
        o->tls_cert = b2;
        o->tls_key = b3;
    }
}

static void t_mutual_tls(void)
{
    char cert[400], key[400], ca[400], err[PT_ERRLEN], tok[PNET_TOKEN_MAX + 1];
    path_in(cert, sizeof cert, "runA", "server.pem");
    path_in(key, sizeof key, "runA", "server.key");
    path_in(ca, sizeof ca, "runA", "ca.pem");
    char tp[400];
    path_in(tp, sizeof tp, "runA", "token");
    ASSERT_OK(pnet_auth_token_load(tp, tok, sizeof tok, err));
    pnet_server_opts so;
    memset(&so, 0, sizeof so);
    so.tls_cert = cert;
    so.tls_key = key;
    so.tls_client_ca = ca;
    so.auth_token = tok;
    srv_ctx x;
    ASSERT_OK(srv_start(&x, &so));
    pnet_client_opts base;
    char addr[64], b1[400], b2[400], b3[400], c1[400], c2[400], c3[400], d1[400];
    client_opts(&base, addr, sizeof addr, x.port);
    base.auth_token = tok;
    base.connect_deadline_s = -1; /* once */
    pnet_client_opts good = base;
    mtls_opts(&good, "runA", "runA", b1, b2, b3);
    hold_arg h = {x.port, &good, 0, -1};
    pthread_t th;
    pthread_create(&th, NULL, hold_client, &h);
    int rc_good = echo_once(&good, 100000, NULL, err);
    pnet_client_opts nocert = base;
    mtls_opts(&nocert, NULL, "runA", d1, NULL, NULL);
    int rc_nocert = echo_once(&nocert, 10, NULL, err);
    char e_nocert[PT_ERRLEN];
    snprintf(e_nocert, sizeof e_nocert, "%s", err);
    pnet_client_opts other = base;
    mtls_opts(&other, "runB", "runA", c1, c2, c3); /* runB's client cert, trusting runA */
    int rc_other = echo_once(&other, 10, NULL, err);
    int logged = wait_file_has(logpath, "peer did not return a certificate", 5) &&
                 wait_file_has(logpath, "certificate verify failed", 5);
    pnet_client_opts notoken = good;
    notoken.auth_token = NULL; /* mutual TLS passes, the token is still required */
    int st_notoken;
    int rc_notoken = echo_once(&notoken, 10, &st_notoken, err);
    h.go = 1;
    pthread_join(th, NULL);
    int joins = x.joins;
    srv_stop(&x);
    ASSERT_OK(rc_good);
    ASSERT_MSG(rc_nocert == PT_ERR_TLS || rc_nocert == PT_ERR_NET || rc_nocert == PT_ERR_CLOSED,
               "client without a certificate: %d %s", rc_nocert, e_nocert);
    ASSERT_MSG(rc_other == PT_ERR_TLS || rc_other == PT_ERR_NET || rc_other == PT_ERR_CLOSED,
               "client with another CA's certificate: %d", rc_other);
    ASSERT_MSG(logged, "mutual TLS refusals not logged");
    ASSERT_EQ_INT(rc_notoken, PT_ERR_CLOSED);
    ASSERT_EQ_INT(st_notoken, PNET_GRPC_UNAUTHENTICATED);
    ASSERT_EQ_INT(joins, 2);
    ASSERT_OK(h.rc);
    /* a server certificate from the generator verifies by name and by IP */
    ASSERT_EQ_INT(pnet_server_new(&x.s, &(pnet_server_opts){.tls_client_ca = ca}, err),
                  PT_ERR_INVAL);
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

/* Seconds until the server closes fd (reading and discarding), or -1. */
static double time_to_eof(int fd, double max_s)
{
    double t0 = pt_now(), end = t0 + max_s;
    char buf[4096];
    for (;;) {
        int ms = (int)((end - pt_now()) * 1000);
        if (ms <= 0) return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0) return -1;
        if (read(fd, buf, sizeof buf) <= 0) return pt_now() - t0;
    }
}

static void t_handshake_timeout(void)
{
    char cert[400], key[400], ca[400], err[PT_ERRLEN];
    path_in(cert, sizeof cert, "runA", "server.pem");
    path_in(key, sizeof key, "runA", "server.key");
    path_in(ca, sizeof ca, "runA", "ca.pem");
    for (int tls = 0; tls < 2; tls++) {
        pnet_server_opts so;
        memset(&so, 0, sizeof so);
        so.handshake_timeout_s = 0.4;
        if (tls) so.tls_cert = cert, so.tls_key = key;
        srv_ctx x;
        ASSERT_OK(srv_start(&x, &so));
        int fd = raw_connect(x.port); /* connects, then says nothing */
        ASSERT(fd >= 0);
        pnet_client_opts o;
        char addr[64];
        client_opts(&o, addr, sizeof addr, x.port);
        if (tls) o.tls_ca = ca;
        int good = echo_once(&o, 1000, NULL, err);
        double dt = time_to_eof(fd, 5);
        close(fd);
        int logged = wait_file_has(logpath, tls ? "no TLS handshake within 0.4 s"
                                                : "no HTTP/2 preface within 0.4 s", 3);
        srv_stop(&x);
        ASSERT_OK(good);
        ASSERT_MSG(dt >= 0.3 && dt < 3, "silent connection closed after %.2f s (tls %d)", dt, tls);
        ASSERT_MSG(logged, "handshake timeout not logged (tls %d)", tls);
    }
}

/* The server-wide cap on receive buffers: a message that would need more is
 * refused with RESOURCE_EXHAUSTED; smaller ones pass; the count returns to 0. */
static void t_server_rx_cap(void)
{
    pnet_server_opts so;
    memset(&so, 0, sizeof so);
    so.max_rx_total = (size_t)1 << 20;
    srv_ctx x;
    ASSERT_OK(srv_start(&x, &so));
    pnet_client_opts o;
    char addr[64], err[PT_ERRLEN];
    client_opts(&o, addr, sizeof addr, x.port);
    int st = -1;
    int big = echo_once(&o, (size_t)3 << 20, &st, err);
    int good1 = echo_once(&o, 900000, NULL, err);
    int good2 = echo_once(&o, 900000, NULL, err);
    int logged = wait_file_has(logpath, "exceed the server's receive buffer cap", 3);
    srv_stop(&x);
    ASSERT_MSG(big == PT_ERR_CLOSED || big == PT_ERR_NET, "over the cap: %d", big);
    ASSERT_EQ_INT(st, PNET_GRPC_RESOURCE_EXHAUSTED);
    ASSERT_OK(good1);
    ASSERT_OK(good2);
    ASSERT(logged);
}

typedef struct keep_cb {
    pnet_msg *kept;
    int hold;
} keep_cb;

static int keep_fn(pnet_msg *m, void *arg)
{
    keep_cb *k = arg;
    if (k->hold) k->kept = pnet_msg_ref(m);
    return 0;
}

static void feed_msg(grpc_rx *rx, size_t n, keep_cb *k, char *err, int *rc)
{
    uint8_t *b = calloc(1, n + GRPC_PREFIX);
    b[1] = (uint8_t)(n >> 24), b[2] = (uint8_t)(n >> 16), b[3] = (uint8_t)(n >> 8);
    b[4] = (uint8_t)n;
    *rc = grpc_rx_feed(rx, b, n + GRPC_PREFIX, keep_fn, k, err);
    free(b);
}

/* Receive buffers above keep_max are freed once their message is released,
 * so an idle client holds no model-sized buffer. */
static void t_rx_buffers_released(void)
{
    char err[PT_ERRLEN];
    int rc;
    grpc_rx rx;
    memset(&rx, 0, sizeof rx);
    rx.max = (size_t)64 << 20;
    rx.keep_max = (size_t)64 << 10;
    keep_cb k = {NULL, 0};
    feed_msg(&rx, (size_t)2 << 20, &k, err, &rc);
    ASSERT_OK(rc);
    ASSERT(rx.spare == NULL && rx.lent == NULL); /* big, not kept by the owner: freed */
    feed_msg(&rx, 1000, &k, err, &rc);
    ASSERT_OK(rc);
    ASSERT(rx.spare != NULL); /* small: reused */
    k.hold = 1;
    feed_msg(&rx, (size_t)2 << 20, &k, err, &rc);
    ASSERT_OK(rc);
    ASSERT(k.kept && rx.lent == NULL); /* held by the owner only */
    pnet_msg_unref(k.kept);
    grpc_rx_free(&rx);
    /* without keep_max (the client) big buffers are reused */
    memset(&rx, 0, sizeof rx);
    rx.max = (size_t)64 << 20;
    k.hold = 0;
    feed_msg(&rx, (size_t)2 << 20, &k, err, &rc);
    ASSERT_OK(rc);
    ASSERT(rx.spare != NULL && rx.spare->cap >= ((size_t)2 << 20));
    grpc_rx_free(&rx);
}

static long rss_kib(pid_t pid)
{
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atol(line + 6);
    fclose(f);
    return v;
}

/* Server memory per idle joined client: a server in a child process, N
 * clients that joined, exchanged a 1 MB message each (buffers then freed)
 * and stay connected. Reports the figure; the budget is 64 KiB. */
static void idle_memory(int tls)
{
    char cert[400], key[400], ca[400];
    path_in(cert, sizeof cert, "runA", "server.pem");
    path_in(key, sizeof key, "runA", "server.key");
    path_in(ca, sizeof ca, "runA", "ca.pem");
    int pfd[2], cfd[2];
    ASSERT_OK(pipe(pfd));
    ASSERT_OK(pipe(cfd));
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        close(cfd[1]);
        pnet_server_opts so;
        memset(&so, 0, sizeof so);
        so.on_message = on_message;
        so.max_conn_per_addr = -1; /* all N clients come from 127.0.0.1 */
        if (tls) so.tls_cert = cert, so.tls_key = key;
        pnet_server *s;
        char err[PT_ERRLEN];
        if (pnet_server_new(&s, &so, err)) _exit(1);
        int port = pnet_server_port(s);
        if (write(pfd[1], &port, sizeof port) != sizeof port) _exit(1);
        for (;;) {
            struct pollfd p = {.fd = cfd[0], .events = POLLIN};
            if (poll(&p, 1, 0) > 0) break;
            pnet_server_poll(s, 20);
        }
        pnet_server_free(s);
        _exit(0);
    }
    close(pfd[1]);
    close(cfd[0]);
    int port = 0;
    ASSERT_EQ_INT(read(pfd[0], &port, sizeof port), (ssize_t)sizeof port);
    enum { N = 200 };
    static pnet_client *cs[N];
    pnet_client_opts o;
    char addr[64], err[PT_ERRLEN];
    client_opts(&o, addr, sizeof addr, port);
    if (tls) o.tls_ca = ca;
    uint8_t *m;
    size_t n;
    int rc = 0;
    /* warm up: allocator arenas, shared buffers */
    for (int i = 0; i < 10 && !rc; i++) rc = echo_once(&o, (size_t)1 << 20, NULL, err);
    usleep(100000);
    long before = rss_kib(pid);
    size_t sz = (size_t)1 << 20;
    uint8_t *big = calloc(1, sz);
    int nc = 0;
    for (; nc < N && !rc; nc++) {
        rc = pnet_client_connect(&cs[nc], &o, err);
        if (rc) break;
        rc = pnet_client_send(cs[nc], big, nc < 20 ? sz : 100, err);
        if (!rc) rc = pnet_client_recv(cs[nc], &m, &n, 10000, err);
    }
    usleep(200000);
    long after = rss_kib(pid);
    for (int i = 0; i < nc; i++) pnet_client_free(cs[i]);
    free(big);
    close(cfd[1]);
    int status;
    waitpid(pid, &status, 0);
    close(pfd[0]);
    ASSERT_MSG(!rc, "client %d: %s", nc, err);
    double per = (double)(after - before) / N;
    printf("  idle joined %s client: %.1f KiB of server RSS each (%d clients, RSS %ld -> %ld "
           "KiB)\n", tls ? "TLS" : "h2c", per, N, before, after);
#if defined(__SANITIZE_ADDRESS__)
    (void)per;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    (void)per;
#else
    ASSERT_MSG(per < 64, "%.1f KiB per idle client", per);
#endif
#else
    ASSERT_MSG(per < 64, "%.1f KiB per idle client", per);
#endif
}

static void t_idle_connection_memory(void)
{
    idle_memory(0);
}

static void t_idle_tls_connection_memory(void)
{
    idle_memory(1);
}

/* Before the tests: a private directory, the log captured there, and two
 * runs' certificates (runA: the server's; runB: another CA). */
__attribute__((constructor)) static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/petal-auth-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(logpath, sizeof logpath, "%s/log", tmpdir);
    pt_log_set_file(logpath);
    pt_log_set_stderr(0);
    signal(SIGPIPE, SIG_IGN);
    char p[400], err[PT_ERRLEN];
    snprintf(p, sizeof p, "%s/runA", tmpdir);
    if (pnet_tls_make_run_dir(p, "DNS:server.example,IP:10.0.0.7", 1, err))
        fprintf(stderr, "run certificates: %s\n", err);
    snprintf(p, sizeof p, "%s/runB", tmpdir);
    if (pnet_tls_make_run_dir(p, NULL, 1, err)) fprintf(stderr, "run certificates: %s\n", err);
}

__attribute__((destructor)) static void teardown(void)
{
    pt_log_set_file(NULL);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", tmpdir);
}

TEST_MAIN(TEST(t_send_does_not_wait_for_reply), TEST(t_token_checks), TEST(t_certgen),
          TEST(t_token_auth), TEST(t_mutual_tls), TEST(t_handshake_timeout),
          TEST(t_server_rx_cap), TEST(t_rx_buffers_released), TEST(t_idle_connection_memory),
          TEST(t_idle_tls_connection_memory))
