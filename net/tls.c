/*
 * tls.c - OpenSSL contexts for the transport (see tls_int.h).
 */
#include "tls_int.h"
#include "petal.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const unsigned char alpn_h2[] = {2, 'h', '2'};

const char *tls_errstr(char *buf, size_t len)
{
    unsigned long e;
    size_t o = 0;
    buf[0] = 0;
    while ((e = ERR_get_error()) != 0) {
        if (o + 2 < len) {
            if (o) buf[o++] = ';', buf[o++] = ' ';
            buf[o] = 0;
            ERR_error_string_n(e, buf + o, len - o);
            o += strlen(buf + o);
        }
    }
    if (!buf[0]) snprintf(buf, len, "no OpenSSL detail");
    return buf;
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof alpn_h2, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* gRPC needs h2 */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* A context with the settings both ends share: TLS 1.2+, partial writes, no
 * compression or renegotiation. */
static SSL_CTX *ctx_new(const SSL_METHOD *method, char *err)
{
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        pt_seterr(err, PT_ERR_TLS, "SSL_CTX_new: %s", tls_errstr(e, sizeof e));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    return ctx;
}

/* OpenSSL opens files with fopen: a FIFO given as a certificate would block
 * it forever. Only regular files are handed to it. */
static int regular_files(char *err, const char *a, const char *b)
{
    char e[PT_ERRLEN];
    const char *p[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (!p[i]) continue;
        int fd = pt_open_read(p[i], e);
        if (fd < 0) return pt_seterr(err, fd, "TLS file %s", e);
        close(fd);
    }
    return PT_OK;
}

SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err)
{
    char e[256];
    if (regular_files(err, cert, key)) return NULL;
    SSL_CTX *ctx = ctx_new(TLS_server_method(), err);
    if (!ctx) return NULL;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        pt_seterr(err, PT_ERR_TLS, "cannot load TLS certificate '%s': %s", cert,
                  tls_errstr(e, sizeof e));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        pt_seterr(err, PT_ERR_TLS, "cannot load TLS key '%s': %s", key, tls_errstr(e, sizeof e));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        pt_seterr(err, PT_ERR_TLS, "TLS key '%s' does not match certificate '%s'", key, cert);
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_server_require_client(SSL_CTX *ctx, const char *ca, char *err)
{
    char e[256];
    int rc = regular_files(err, ca, NULL);
    if (rc) return rc;
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return pt_seterr(err, PT_ERR_TLS, "cannot load the client CA '%s': %s", ca,
                         tls_errstr(e, sizeof e));
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (!names)
        return pt_seterr(err, PT_ERR_TLS, "no CA certificate in '%s': %s", ca,
                         tls_errstr(e, sizeof e));
    SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);
    /* no session resumption: every connection shows its certificate */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    return PT_OK;
}

SSL_CTX *tls_client_ctx(const char *ca, const char *cert, const char *key, char *err)
{
    char e[256];
    if (regular_files(err, ca, cert) || regular_files(err, key, NULL)) return NULL;
    SSL_CTX *ctx = ctx_new(TLS_client_method(), err);
    if (!ctx) return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        pt_seterr(err, PT_ERR_TLS, "cannot load CA certificates%s%s: %s", ca ? " from " : "",
                  ca ? ca : "", tls_errstr(e, sizeof e));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (cert || key) {
        if (!cert || !key) {
            pt_seterr(err, PT_ERR_INVAL, "a TLS client certificate needs both a cert and a key");
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
            pt_seterr(err, PT_ERR_TLS, "cannot load TLS client certificate '%s': %s", cert,
                      tls_errstr(e, sizeof e));
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            pt_seterr(err, PT_ERR_TLS, "cannot use TLS client key '%s' with '%s': %s", key, cert,
                      tls_errstr(e, sizeof e));
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof alpn_h2);
    return ctx;
}

SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const char *name, char *err)
{
    char e[256];
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        pt_seterr(err, PT_ERR_TLS, "SSL_new: %s", tls_errstr(e, sizeof e));
        return NULL;
    }
    SSL_set_fd(ssl, fd);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (!is_ip) SSL_set_tlsext_host_name(ssl, name); /* SNI takes names only */
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) : X509_VERIFY_PARAM_set1_host(vp, name, 0);
    if (ok != 1) {
        pt_seterr(err, PT_ERR_TLS, "bad TLS server name '%s'", name);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}
