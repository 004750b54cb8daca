/*
 * test_net_transport_peer.c - Petal's transport as a test peer for
 * tests/test_net_transport.py (which plays the other side with Debian's
 * python3-grpcio).
 *
 *   test_net_transport_peer server [--tls CERT KEY] [--max-message N]
 *       Echo server on 127.0.0.1:0; prints "PORT <n>" then serves until
 *       stdin closes. Every message is sent back unchanged (zero copy); a
 *       message "CMD:end:<status>:<text>" ends the stream with that status.
 *       Prints "LEAVE <id> <reason>" lines for the driver.
 *       [--auth-token-file F] [--tls-client-ca CA] (token / mutual TLS required)
 *   test_net_transport_peer certs DIR [SANS]
 *       pnet_tls_make_run_dir(DIR, SANS): CA, server and client certificates
 *       and a token, as the launcher makes them for a run.
 *   test_net_transport_peer client ADDRESS [--tls-ca CA] [--server-name N]
 *       [--tls-cert C --tls-key K] [--auth-token-file F]
 *       Against an echo server that greets first with b"hello": checks the
 *       greeting, echoes of many sizes (0 B .. 30 MB, sha256-compared), an
 *       error status with a percent-encoded message, and a clean half-close.
 *       Prints PASS:/FAIL: lines.
 */
#include "pnet.h"
#include "test.h"

#include <openssl/sha.h>
#include <poll.h>
#include <unistd.h>

/* ---- server ---------------------------------------------------------------- */

static void on_join(pnet_server *s, uint64_t id, const char *peer, void *user)
{
    (void)s;
    (void)user;
    printf("JOIN %llu %s\n", (unsigned long long)id, peer);
    fflush(stdout);
}

static void on_message(pnet_server *s, uint64_t id, pnet_msg *m, void *user)
{
    (void)user;
    const char *d = (const char *)pnet_msg_data(m);
    size_t n = pnet_msg_len(m);
    if (n > 8 && !memcmp(d, "CMD:end:", 8)) {
        char buf[256];
        size_t k = n - 8 < sizeof buf - 1 ? n - 8 : sizeof buf - 1;
        memcpy(buf, d + 8, k);
        buf[k] = 0;
        char *colon = strchr(buf, ':');
        pnet_server_end_stream(s, id, atoi(buf), colon ? colon + 1 : "");
        return;
    }
    int rc = pnet_server_send(s, id, m);
    if (rc) fprintf(stderr, "send to %llu failed: %s\n", (unsigned long long)id, pt_strerror(rc));
}

static void on_leave(pnet_server *s, uint64_t id, int reason, const char *detail, void *user)
{
    (void)s;
    (void)user;
    printf("LEAVE %llu %s %s\n", (unsigned long long)id, pnet_leave_name(reason), detail);
    fflush(stdout);
}

static char token[PNET_TOKEN_MAX + 1];

static int load_token(const char *path)
{
    char err[PT_ERRLEN];
    if (pnet_auth_token_load(path, token, sizeof token, err)) {
        printf("ERROR %s\n", err);
        return -1;
    }
    return 0;
}

static int run_server(int argc, char **argv)
{
    pnet_server_opts o;
    memset(&o, 0, sizeof o);
    o.address = "127.0.0.1:0";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--tls") && i + 2 < argc) {
            o.tls_cert = argv[++i];
            o.tls_key = argv[++i];
        } else if (!strcmp(argv[i], "--max-message") && i + 1 < argc) {
            o.max_message = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--max-connections") && i + 1 < argc) {
            o.max_connections = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--address") && i + 1 < argc) {
            o.address = argv[++i];
        } else if (!strcmp(argv[i], "--tls-client-ca") && i + 1 < argc) {
            o.tls_client_ca = argv[++i];
        } else if (!strcmp(argv[i], "--auth-token-file") && i + 1 < argc) {
            if (load_token(argv[++i])) return 1;
            o.auth_token = token;
        }
    }
    o.on_join = on_join;
    o.on_message = on_message;
    o.on_leave = on_leave;
    pnet_server *s;
    char err[PT_ERRLEN];
    int rc = pnet_server_new(&s, &o, err);
    if (rc) {
        printf("ERROR %s\n", err);
        return 1;
    }
    printf("PORT %d\n", pnet_server_port(s));
    fflush(stdout);
    for (;;) {
        struct pollfd p = {.fd = 0, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) {
            char b[64];
            if (read(0, b, sizeof b) <= 0) break;
        }
        if (pnet_server_poll(s, 50) < 0) break;
    }
    pnet_stats st;
    pnet_server_stats(s, 0, &st);
    printf("STATS msgs_in=%llu msgs_out=%llu\n", (unsigned long long)st.msgs_in,
           (unsigned long long)st.msgs_out);
    pnet_server_free(s);
    return 0;
}

/* ---- client ---------------------------------------------------------------- */

static pnet_client_opts copts;

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static void t_echo(void)
{
    static const size_t sizes[] = {0, 1, 5, 100, 16384, 65535, 65536, 1048579, 0, 30000000, 7};
    pnet_client *c;
    char err[PT_ERRLEN];
    ASSERT_MSG(pnet_client_connect(&c, &copts, err) == PT_OK, "connect: %s", err);
    uint8_t *m;
    size_t len;
    int rc = pnet_client_recv(c, &m, &len, 10000, err);
    if (rc) {
        pnet_client_free(c);
        TEST_FAIL_("greeting: %s", err);
    }
    if (len != 5 || memcmp(m, "hello", 5)) {
        pnet_client_free(c);
        TEST_FAIL_("bad greeting (%zu bytes)", len);
    }
    uint8_t *buf = malloc(30000000);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        fill(buf, sizes[i], (unsigned)i);
        unsigned char h1[32], h2[32];
        SHA256(buf, sizes[i], h1);
        rc = pnet_client_send(c, buf, sizes[i], err);
        if (!rc) rc = pnet_client_recv(c, &m, &len, 30000, err);
        if (rc) {
            free(buf);
            pnet_client_free(c);
            TEST_FAIL_("echo of %zu bytes: %s", sizes[i], err);
        }
        SHA256(m, len, h2);
        if (len != sizes[i] || memcmp(h1, h2, 32)) {
            free(buf);
            pnet_client_free(c);
            TEST_FAIL_("echo of %zu bytes came back as %zu different bytes", sizes[i], len);
        }
    }
    free(buf);
    pnet_stats st;
    pnet_client_stats(c, &st);
    ASSERT_EQ_INT(st.msgs_out, sizeof sizes / sizeof *sizes);
    ASSERT_EQ_INT(st.msgs_in, sizeof sizes / sizeof *sizes + 1);
    ASSERT_OK(pnet_client_close(c, 5000));
    ASSERT_EQ_INT(pnet_client_status(c, NULL), 0);
    pnet_client_free(c);
}

static void t_error_status(void)
{
    pnet_client *c;
    char err[PT_ERRLEN];
    ASSERT_MSG(pnet_client_connect(&c, &copts, err) == PT_OK, "connect: %s", err);
    uint8_t *m;
    size_t len;
    int rc = pnet_client_recv(c, &m, &len, 10000, err);
    if (!rc) rc = pnet_client_send(c, "CMD:abort", 9, err);
    if (!rc) rc = pnet_client_recv(c, &m, &len, 10000, err);
    const char *msg;
    int status = pnet_client_status(c, &msg);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", msg);
    pnet_client_free(c);
    ASSERT_EQ_INT(rc, PT_ERR_CLOSED);
    ASSERT_EQ_INT(status, PNET_GRPC_RESOURCE_EXHAUSTED);
    ASSERT_STR_EQ(copy, "bye 100% \xc3\xbc\n");
}

static void t_connect_refused_deadline(void)
{
    /* a port nobody listens on: retries until the deadline, then a clear error */
    pnet_client_opts o = copts;
    o.address = "127.0.0.1:1";
    o.connect_deadline_s = 0.5;
    o.backoff_initial_s = 0.05;
    pnet_client *c;
    char err[PT_ERRLEN];
    double t0 = pt_now();
    int rc = pnet_client_connect(&c, &o, err);
    double dt = pt_now() - t0;
    ASSERT_EQ_INT(rc, PT_ERR_TIMEOUT);
    ASSERT_CONTAINS(err, "could not connect");
    ASSERT_MSG(dt >= 0.25 && dt < 3, "took %.2f s", dt);
}

static void t_tls_wrong_name(void)
{
    /* a name the certificate does not carry: a TLS error at once, no retries */
    pnet_client_opts o = copts;
    o.server_name = "wrong.example";
    o.connect_deadline_s = 20;
    pnet_client *c = NULL;
    char err[PT_ERRLEN];
    double t0 = pt_now();
    int rc = pnet_client_connect(&c, &o, err);
    pnet_client_free(c);
    ASSERT_EQ_INT(rc, PT_ERR_TLS);
    ASSERT_CONTAINS(err, "verif");
    ASSERT_MSG(pt_now() - t0 < 5, "took %.1f s", pt_now() - t0);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "server")) return run_server(argc - 2, argv + 2);
    if (argc >= 3 && !strcmp(argv[1], "certs")) {
        char err[PT_ERRLEN];
        if (pnet_tls_make_run_dir(argv[2], argc > 3 ? argv[3] : NULL, 2, err)) {
            printf("ERROR %s\n", err);
            return 1;
        }
        return 0;
    }
    if (argc < 3 || strcmp(argv[1], "client")) {
        fprintf(stderr, "usage: %s server [...] | client ADDRESS [...]\n", argv[0]);
        return 2;
    }
    memset(&copts, 0, sizeof copts);
    copts.address = argv[2];
    copts.connect_deadline_s = 20;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--tls-ca") && i + 1 < argc)
            copts.tls_ca = argv[++i];
        else if (!strcmp(argv[i], "--server-name") && i + 1 < argc)
            copts.server_name = argv[++i];
        else if (!strcmp(argv[i], "--tls-cert") && i + 1 < argc)
            copts.tls_cert = argv[++i];
        else if (!strcmp(argv[i], "--tls-key") && i + 1 < argc)
            copts.tls_key = argv[++i];
        else if (!strcmp(argv[i], "--auth-token-file") && i + 1 < argc) {
            if (load_token(argv[++i])) return 1;
            copts.auth_token = token;
        }
    }
    const char *tag = copts.tls_cert    ? "mtls_token"
                      : !copts.tls_ca   ? "h2c"
                      : copts.server_name ? "tls"
                                          : "tls_ip_san";
    int fails = 0;
#define RUN(fn)                                                                            \
    do {                                                                                   \
        test_failed_ = 0;                                                                  \
        fn();                                                                              \
        printf("%s: %s_%s\n", test_failed_ ? "FAIL" : "PASS", #fn, tag);                  \
        fflush(stdout);                                                                    \
        fails += test_failed_;                                                             \
    } while (0)
    RUN(t_echo);
    RUN(t_error_status);
    if (!copts.tls_ca) RUN(t_connect_refused_deadline);
    if (copts.tls_ca) RUN(t_tls_wrong_name);
    return fails ? 1 : 0;
}
