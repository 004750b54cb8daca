/*
 * tls_int.h - OpenSSL contexts for the transport: TLS 1.2+, ALPN "h2".
 */
#ifndef PETAL_NET_TLS_INT_H
#define PETAL_NET_TLS_INT_H

#include <openssl/ssl.h>

/* Server context from PEM cert chain + key (checked to match); selects
 * ALPN "h2". NULL on error (err filled, PT_ERR_TLS). */
SSL_CTX *tls_server_ctx(const char *cert, const char *key, char *err);
/* Require a client certificate verified against the PEM CA file ca
 * (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT). PT_OK or PT_ERR_TLS. */
int tls_server_require_client(SSL_CTX *ctx, const char *ca, char *err);
/* Client context verifying peers against ca (PEM file; NULL = system store),
 * offering ALPN "h2", presenting cert/key (PEM files) when given (mutual
 * TLS). NULL on error. */
SSL_CTX *tls_client_ctx(const char *ca, const char *cert, const char *key, char *err);
/* New client SSL on fd with SNI + hostname/IP check for name. */
SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const char *name, char *err);
/* Text of the OpenSSL error queue (drained) into buf; returns buf. */
const char *tls_errstr(char *buf, size_t len);

#endif /* PETAL_NET_TLS_INT_H */
