/*
 * tls_gen.c - authentication material made with OpenSSL's API: per-run
 * tokens, a CA and the certificates it signs (see pnet.h, Part 2).
 */
#include "pnet.h"
#include "tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- tokens ------------------------------------------------------------- */

int pnet_auth_token_check(const char *tok, char *err)
{
    if (!tok) return pt_seterr(err, PT_ERR_INVAL, "no authentication token");
    size_t n = strlen(tok);
    if (n < 16)
        return pt_seterr(err, PT_ERR_INVAL, "authentication token too short (%zu characters, "
                         "at least 16)", n);
    if (n > PNET_TOKEN_MAX)
        return pt_seterr(err, PT_ERR_INVAL, "authentication token too long (%zu bytes, at most "
                         "%d)", n, PNET_TOKEN_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)tok[i] < 0x21 || (unsigned char)tok[i] > 0x7e)
            return pt_seterr(err, PT_ERR_INVAL, "authentication token has a character that is "
                             "not visible ASCII at offset %zu", i);
    return PT_OK;
}

int pnet_auth_token_load(const char *path, char *out, size_t cap, char *err)
{
    if (!out || cap < PNET_TOKEN_MAX + 1)
        return pt_seterr(err, PT_ERR_RANGE, "token buffer too small");
    out[0] = 0;
    char eo[PT_ERRLEN];
    FILE *f = pt_fopen_read(path, eo); /* a FIFO is refused, never waited on */
    if (!f) return pt_seterr(err, PT_ERR_IO, "cannot read token file %s", eo);
    char buf[PNET_TOKEN_MAX + 3];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) return pt_seterr(err, PT_ERR_IO, "cannot read token file '%s'", path);
    buf[n] = 0;
    char *nl = memchr(buf, '\n', n);
    if (nl) *nl = 0, n = (size_t)(nl - buf);
    else if (n > PNET_TOKEN_MAX) {
        OPENSSL_cleanse(buf, sizeof buf);
        return pt_seterr(err, PT_ERR_INVAL, "token file '%s': token longer than %d bytes", path,
                         PNET_TOKEN_MAX);
    }
    while (n && (buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t')) buf[--n] = 0;
    int rc = pnet_auth_token_check(buf, err);
    if (rc) {
        char e2[PT_ERRLEN];
        snprintf(e2, sizeof e2, "%s", err ? err : "");
        if (err) pt_seterr(err, rc, "token file '%s': %s", path, e2);
    } else {
        memcpy(out, buf, n + 1);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return rc;
}

int pnet_auth_token_get(const char *file, const char *env, char *out, size_t cap, char *err)
{
    if (!out || cap < PNET_TOKEN_MAX + 1)
        return pt_seterr(err, PT_ERR_RANGE, "token buffer too small");
    out[0] = 0;
    if (file) return pnet_auth_token_load(file, out, cap, err);
    const char *v = env ? getenv(env) : NULL;
    if (!v || !*v) return PT_OK;
    char e2[PT_ERRLEN];
    if (pnet_auth_token_check(v, e2)) return pt_seterr(err, PT_ERR_INVAL, "%s: %s", env, e2);
    snprintf(out, cap, "%s", v);
    return PT_OK;
}

int pnet_auth_token_new(char *out, size_t cap, char *err)
{
    unsigned char r[32];
    if (cap < 65) return pt_seterr(err, PT_ERR_RANGE, "token buffer too small");
    if (RAND_bytes(r, sizeof r) != 1)
        return pt_seterr(err, PT_ERR_TLS, "no randomness for a token (RAND_bytes failed)");
    for (size_t i = 0; i < sizeof r; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
    OPENSSL_cleanse(r, sizeof r);
    return PT_OK;
}

/* ---- certificates --------------------------------------------------------- */

static EVP_PKEY *new_key(char *err)
{
    char e[200];
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k) pt_seterr(err, PT_ERR_TLS, "EC P-256 key generation failed: %s",
                      tls_errstr(e, sizeof e));
    return k;
}

/* Write PEM to path with mode (replacing the file). */
static int write_pem(const char *path, int mode, X509 *cert, EVP_PKEY *key, char *err)
{
    char e[200];
    unlink(path); /* new inode: the mode applies even if the file existed */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return pt_seterr(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return pt_seterr(err, PT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    int ok = cert ? PEM_write_X509(f, cert)
                  : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (fflush(f) || fsync(fileno(f))) ok = 0;
    if (fclose(f)) ok = 0;
    if (!ok)
        return pt_seterr(err, PT_ERR_IO, "cannot write '%s': %s", path, tls_errstr(e, sizeof e));
    return PT_OK;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value, char *err)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex) {
        char e[200];
        return pt_seterr(err, nid == NID_subject_alt_name ? PT_ERR_INVAL : PT_ERR_TLS,
                         "bad certificate extension %s '%s': %s", OBJ_nid2sn(nid), value,
                         tls_errstr(e, sizeof e));
    }
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? PT_OK : pt_seterr(err, PT_ERR_TLS, "cannot add extension %s", OBJ_nid2sn(nid));
}

/* A certificate for key with subject CN cn, issued by issuer (NULL = self). */
static X509 *new_cert(EVP_PKEY *key, const char *cn, X509 *issuer, int days, char *err)
{
    X509 *x = X509_new();
    if (!x) {
        pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    unsigned char sn[16];
    BIGNUM *bn = NULL;
    int ok = X509_set_version(x, 2) && RAND_bytes(sn, sizeof sn) == 1;
    if (ok) {
        sn[0] &= 0x7f; /* positive serial */
        ok = (bn = BN_bin2bn(sn, sizeof sn, NULL)) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    }
    BN_free(bn);
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
         X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) && X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Petal",
                                          -1, -1, 0) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0);
    ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    if (!ok) {
        char e[200];
        pt_seterr(err, PT_ERR_TLS, "cannot build certificate '%s': %s", cn,
                  tls_errstr(e, sizeof e));
        X509_free(x);
        return NULL;
    }
    return x;
}

static int load_ca(const char *ca_cert, const char *ca_key, X509 **cert, EVP_PKEY **key,
                   char *err)
{
    char e[200];
    *cert = NULL;
    *key = NULL;
    char e2[PT_ERRLEN];
    FILE *f = pt_fopen_read(ca_cert, e2);
    if (!f) return pt_seterr(err, PT_ERR_IO, "cannot read CA certificate %s", e2);
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!*cert) return pt_seterr(err, PT_ERR_TLS, "no PEM certificate in '%s': %s", ca_cert,
                                 tls_errstr(e, sizeof e));
    if (!(f = pt_fopen_read(ca_key, e2))) {
        X509_free(*cert), *cert = NULL;
        return pt_seterr(err, PT_ERR_IO, "cannot read CA key %s", e2);
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!*key || X509_check_private_key(*cert, *key) != 1) {
        int had = *key != NULL;
        X509_free(*cert), *cert = NULL;
        EVP_PKEY_free(*key), *key = NULL;
        return pt_seterr(err, PT_ERR_TLS, had ? "CA key '%s' does not match '%s'"
                                              : "no PEM private key in '%s' (for '%s')",
                         ca_key, ca_cert);
    }
    return PT_OK;
}

static int sign(X509 *x, EVP_PKEY *key, char *err)
{
    char e[200];
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        return pt_seterr(err, PT_ERR_TLS, "signing failed: %s", tls_errstr(e, sizeof e));
    return PT_OK;
}

int pnet_tls_make_ca(const char *cert_path, const char *key_path, const char *cn, int days,
                     char *err)
{
    if (!cert_path || !key_path || days < 0)
        return pt_seterr(err, PT_ERR_INVAL, "CA needs a certificate and a key path");
    if (!days) days = 30;
    EVP_PKEY *k = new_key(err);
    if (!k) return PT_ERR_TLS;
    int rc = PT_ERR_TLS;
    X509 *x = new_cert(k, cn ? cn : "Petal run CA", NULL, days, err);
    if (!x) goto done;
    if ((rc = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0", err)) ||
        (rc = add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", err)) ||
        (rc = add_ext(x, x, NID_subject_key_identifier, "hash", err)) ||
        (rc = sign(x, k, err)) || (rc = write_pem(key_path, 0600, NULL, k, err)) ||
        (rc = write_pem(cert_path, 0644, x, NULL, err)))
        goto done;
done:
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

int pnet_tls_make_cert(const char *ca_cert, const char *ca_key, const char *cert_path,
                       const char *key_path, const char *cn, const char *sans, int usage,
                       int days, char *err)
{
    if (!ca_cert || !ca_key || !cert_path || !key_path || !cn || days < 0 ||
        !(usage & (PNET_CERT_SERVER | PNET_CERT_CLIENT)) ||
        (usage & ~(PNET_CERT_SERVER | PNET_CERT_CLIENT)))
        return pt_seterr(err, PT_ERR_INVAL, "certificate needs CA files, output paths, a CN "
                         "and a usage (server and/or client)");
    if (!days) days = 30;
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *cak = NULL, *k = NULL;
    int rc = load_ca(ca_cert, ca_key, &ca, &cak, err);
    if (rc) return rc;
    rc = PT_ERR_TLS;
    if (!(k = new_key(err)) || !(x = new_cert(k, cn, ca, days, err))) goto done;
    const char *eku = usage == (PNET_CERT_SERVER | PNET_CERT_CLIENT) ? "serverAuth,clientAuth"
                      : usage == PNET_CERT_SERVER                    ? "serverAuth"
                                                                     : "clientAuth";
    if ((rc = add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE", err)) ||
        (rc = add_ext(x, ca, NID_key_usage, "critical,digitalSignature", err)) ||
        (rc = add_ext(x, ca, NID_ext_key_usage, eku, err)) ||
        (rc = add_ext(x, ca, NID_subject_key_identifier, "hash", err)) ||
        (rc = add_ext(x, ca, NID_authority_key_identifier, "keyid:always", err)) ||
        (sans && *sans && (rc = add_ext(x, ca, NID_subject_alt_name, sans, err))) ||
        (rc = sign(x, cak, err)) || (rc = write_pem(key_path, 0600, NULL, k, err)) ||
        (rc = write_pem(cert_path, 0644, x, NULL, err)))
        goto done;
done:
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(k);
    EVP_PKEY_free(cak);
    return rc;
}

int pnet_tls_make_run_dir(const char *dir, const char *sans, int days, char *err)
{
    if (!dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "no directory for run certificates");
    if (mkdir(dir, 0700) && errno != EEXIST)
        return pt_seterr(err, PT_ERR_IO, "cannot create '%s': %s", dir, strerror(errno));
    char p[6][4096], all[2048];
    static const char *const names[6] = {"ca.pem", "ca.key", "server.pem", "server.key",
                                         "client.pem", "client.key"};
    for (int i = 0; i < 6; i++)
        if ((size_t)snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]) >= sizeof p[i])
            return pt_seterr(err, PT_ERR_INVAL, "directory name too long");
    if ((size_t)snprintf(all, sizeof all, "DNS:localhost,IP:127.0.0.1%s%s",
                         sans && *sans ? "," : "", sans ? sans : "") >= sizeof all)
        return pt_seterr(err, PT_ERR_INVAL, "subjectAltName list too long");
    int rc;
    if ((rc = pnet_tls_make_ca(p[0], p[1], "Petal run CA", days, err)) ||
        (rc = pnet_tls_make_cert(p[0], p[1], p[2], p[3], "petal-server", all, PNET_CERT_SERVER,
                                 days, err)) ||
        (rc = pnet_tls_make_cert(p[0], p[1], p[4], p[5], "petal-client", NULL, PNET_CERT_CLIENT,
                                 days, err)))
        return rc;
    char tok[80], tpath[4096];
    if ((rc = pnet_auth_token_new(tok, sizeof tok, err))) return rc;
    snprintf(tpath, sizeof tpath, "%s/token", dir);
    unlink(tpath);
    int fd = open(tpath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    size_t n = strlen(tok);
    tok[n++] = '\n';
    int ok = fd >= 0 && write(fd, tok, n) == (ssize_t)n && !fsync(fd);
    int e = errno;
    if (fd >= 0 && close(fd)) ok = 0;
    OPENSSL_cleanse(tok, sizeof tok);
    if (!ok) return pt_seterr(err, PT_ERR_IO, "cannot write '%s': %s", tpath, strerror(e));
    return PT_OK;
}
