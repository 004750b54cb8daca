/* util.c - pl_str, URI encoding, SHA-256 / MD5 / base64 helpers. */
#include "plaunch.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int grow(pl_str *s, size_t extra)
{
    if (s->len + extra + 1 <= s->cap) return PT_OK;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < s->len + extra + 1) {
        if (cap > ((size_t)-1) / 2) return PT_ERR_NOMEM;
        cap *= 2;
    }
    char *p = realloc(s->data, cap);
    if (!p) return PT_ERR_NOMEM;
    s->data = p;
    s->cap = cap;
    return PT_OK;
}

int pl_str_add(pl_str *s, const void *p, size_t n)
{
    if (grow(s, n)) return PT_ERR_NOMEM;
    if (n) memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = 0;
    return PT_OK;
}

int pl_str_adds(pl_str *s, const char *p)
{
    return pl_str_add(s, p, strlen(p));
}

int pl_str_addf(pl_str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return PT_ERR_INVAL;
    if (grow(s, (size_t)n)) return PT_ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
    return PT_OK;
}

const char *pl_str_c(const pl_str *s)
{
    return s->data ? s->data : "";
}

void pl_str_reset(pl_str *s)
{
    s->len = 0;
    if (s->data) s->data[0] = 0;
}

void pl_str_free(pl_str *s)
{
    free(s->data);
    s->data = NULL;
    s->len = s->cap = 0;
}

int pl_uri_encode(pl_str *out, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    if (grow(out, n * 3)) return PT_ERR_NOMEM;
    char *d = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            *d++ = (char)c;
        } else {
            *d++ = '%';
            *d++ = hex[c >> 4];
            *d++ = hex[c & 15];
        }
    }
    out->len = (size_t)(d - out->data);
    out->data[out->len] = 0;
    return PT_OK;
}

static void digest(const EVP_MD *md, const void *data, size_t n, unsigned char *out,
                   unsigned *outlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, data, n) ||
        !EVP_DigestFinal_ex(ctx, out, outlen)) {
        /* only on allocation failure inside OpenSSL: produce a value that
         * will never verify rather than crash */
        memset(out, 0, EVP_MD_size(md));
        *outlen = (unsigned)EVP_MD_size(md);
    }
    EVP_MD_CTX_free(ctx);
}

static void to_hex(const unsigned char *b, size_t n, char *hex)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = h[b[i] >> 4];
        hex[2 * i + 1] = h[b[i] & 15];
    }
    hex[2 * n] = 0;
}

void pl_sha256_hex(const void *data, size_t n, char hex[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    digest(EVP_sha256(), data, n, d, &dl);
    to_hex(d, 32, hex);
}

void pl_md5(const void *data, size_t n, char hex[33], char b64[25])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    digest(EVP_md5(), data, n, d, &dl);
    if (hex) to_hex(d, 16, hex);
    if (b64) EVP_EncodeBlock((unsigned char *)b64, d, 16);
}

int pl_base64(pl_str *out, const void *data, size_t n)
{
    size_t need = 4 * ((n + 2) / 3);
    if (grow(out, need)) return PT_ERR_NOMEM;
    /* EVP_EncodeBlock takes an int length: encode in chunks of 3*k bytes */
    const unsigned char *p = data;
    while (n) {
        size_t chunk = n > 3u * 1024 * 1024 ? 3u * 1024 * 1024 : n;
        int w = EVP_EncodeBlock((unsigned char *)out->data + out->len, p, (int)chunk);
        out->len += (size_t)w;
        p += chunk;
        n -= chunk;
    }
    out->data[out->len] = 0;
    return PT_OK;
}
