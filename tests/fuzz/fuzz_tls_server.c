/*
 * fuzz_tls_server.c - the gRPC server under TLS: the handshake (OpenSSL's
 * record and handshake parsing as Petal configures it: TLS 1.2+, ALPN h2,
 * optional client certificates) and Petal's handshake driving and TLS reads
 * and writes (net/srv_conn.c conn_handshake, net/h2.c io_read/flush_tls), in
 * memory (pnet_server_adopt on a socketpair).
 *
 * The first byte picks the mode (mod 4), the rest is the payload:
 *   0  the payload as raw bytes to a TLS server (ClientHello and records);
 *   1  a real handshake (an in-process OpenSSL client trusting the run's CA,
 *      ALPN h2), then the HTTP/2 preface and the payload as application data,
 *      written in pieces cut at FZ_SEP;
 *   2  the same against a server requiring client certificates (mutual TLS),
 *      without one: refused (at the handshake or the first read);
 *   3  the same with the run's client certificate.
 * Certificates: pnet_tls_make_run_dir in a scratch directory at start-up.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "fuzz_h2.h"

static pnet_server *servers[2]; /* [1] requires client certificates */
static SSL_CTX *cli[2];         /* [1] presents the client certificate */

static SSL_CTX *client_ctx(const char *dir, int with_cert)
{
    char ca[400], cert[400], key[400];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(cert, sizeof cert, "%s/client.pem", dir);
    snprintf(key, sizeof key, "%s/client.key", dir);
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    static const unsigned char alpn[] = "\x02h2";
    if (!c || SSL_CTX_load_verify_locations(c, ca, NULL) != 1 ||
        SSL_CTX_set_alpn_protos(c, alpn, sizeof alpn - 1) ||
        (with_cert && (SSL_CTX_use_certificate_chain_file(c, cert) != 1 ||
                       SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1)))
        abort();
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    return c;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    const char *dir = fz_tmpdir();
    char err[PT_ERRLEN], cert[400], key[400], ca[400];
    if (!dir || pnet_tls_make_run_dir(dir, "DNS:fuzz", 2, err)) {
        fprintf(stderr, "fuzz_tls_server: %s\n", err);
        abort();
    }
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    pnet_server_opts o = {.tls_cert = cert, .tls_key = key};
    servers[0] = fz_server(&o);
    o.tls_client_ca = ca;
    servers[1] = fz_server(&o);
    cli[0] = client_ctx(dir, 0);
    cli[1] = client_ctx(dir, 1);
    return 0;
}

/* Run the server once and read (dropping) what reaches the client; 1 when
 * the connection is over. */
static int tls_pump(pnet_server *s, SSL *ssl)
{
    uint8_t sink[16384];
    FZ_CHECK(pnet_server_poll(s, 0) >= 0);
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(ssl, sink, sizeof sink);
        if (r > 0) continue;
        int e = SSL_get_error(ssl, r);
        return e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
    }
}

static int tls_send(pnet_server *s, SSL *ssl, const uint8_t *p, size_t n, double deadline)
{
    size_t off = 0;
    while (off < n) {
        ERR_clear_error();
        int w = SSL_write(ssl, p + off, (int)(n - off > 65536 ? 65536 : n - off));
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        int e = SSL_get_error(ssl, w);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -1;
        if (tls_pump(s, ssl) || pt_now() > deadline) return -1;
    }
    return 0;
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!size) return 0;
    int mode = data[0] % 4, fd;
    pnet_server *srv = servers[mode >= 2];
    data++, size--;
    if (fz_connect(srv, &fd)) return 0;
    double deadline = pt_now() + 5.0;
    if (mode == 0) { /* raw records */
        if (!fz_send(srv, fd, data, size, deadline)) fz_pump(srv, fd);
        fz_finish(srv, fd, deadline);
        return 0;
    }
    SSL *ssl = SSL_new(cli[mode == 3]);
    FZ_CHECK(ssl != NULL);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "fuzz");
    SSL_set1_host(ssl, "fuzz");
    int ok = 0;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(ssl);
        if (r == 1) {
            ok = 1;
            break;
        }
        int e = SSL_get_error(ssl, r);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || pt_now() > deadline)
            break;
        FZ_CHECK(pnet_server_poll(srv, 0) >= 0);
    }
    /* the server accepts the run's certificates: only a client without one
       against the mutual-TLS server may fail (at connect or at first read) */
    FZ_CHECK(ok || mode == 2);
    if (ok) ok = !tls_send(srv, ssl, (const uint8_t *)preface, sizeof preface - 1, deadline);
    size_t off = 0;
    while (ok && off < size) {
        const uint8_t *sep = memmem(data + off, size - off, FZ_SEP, FZ_SEP_LEN);
        size_t n = sep ? (size_t)(sep - (data + off)) : size - off;
        ok = !tls_send(srv, ssl, data + off, n, deadline);
        if (ok) tls_pump(srv, ssl);
        off += n + (sep ? FZ_SEP_LEN : 0);
    }
    ERR_clear_error();
    SSL_shutdown(ssl);
    while (ok && !tls_pump(srv, ssl) && pt_now() < deadline) {
    }
    SSL_free(ssl);
    fz_finish(srv, fd, deadline);
    return 0;
}
