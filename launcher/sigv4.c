/* sigv4.c - AWS Signature Version 4: header signing and presigned URLs. */
#include "plaunch.h"

#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SIGNED 32

typedef struct hdr {
    char *name;  /* lower case, owned */
    char *value; /* trimmed, owned */
} hdr;

typedef struct qparam {
    pl_str name, value; /* encoded */
} qparam;

static void hmac(const void *key, size_t klen, const void *msg, size_t mlen, unsigned char out[32])
{
    unsigned olen = 32;
    if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen)) memset(out, 0, 32);
}

void pl_sigv4_key(const char *secret, const char *datestamp, const char *region,
                  const char *service, unsigned char key[32])
{
    char k0[160];
    int n = snprintf(k0, sizeof k0, "AWS4%s", secret);
    if (n < 0 || (size_t)n >= sizeof k0) n = (int)sizeof k0 - 1;
    unsigned char a[32], b[32];
    hmac(k0, (size_t)n, datestamp, strlen(datestamp), a);
    hmac(a, 32, region, strlen(region), b);
    hmac(b, 32, service, strlen(service), a);
    hmac(a, 32, "aws4_request", 12, key);
    memset(k0, 0, sizeof k0);
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* percent-decode s[0..n) then UriEncode it into out */
static int reencode(pl_str *out, const char *s, size_t n, int keep_slash)
{
    pl_str dec = {0};
    int rc = PT_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        rc = pl_str_add(&dec, &c, 1);
    }
    if (!rc) rc = pl_uri_encode(out, pl_str_c(&dec), dec.len, keep_slash);
    pl_str_free(&dec);
    return rc;
}

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const hdr *)a)->name, ((const hdr *)b)->name);
}

static int q_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(pl_str_c(&x->name), pl_str_c(&y->name));
    return c ? c : strcmp(pl_str_c(&x->value), pl_str_c(&y->value));
}

/* lower-case name, trimmed and space-collapsed value */
static int hdr_set(hdr *h, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    h->name = malloc(nl + 1);
    h->value = malloc(vl + 1);
    if (!h->name || !h->value) return PT_ERR_NOMEM;
    for (size_t i = 0; i <= nl; i++) {
        char c = name[i];
        h->name[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < vl; i++) {
        char c = value[i];
        if (c == ' ' || c == '\t') {
            space = 1;
            continue;
        }
        if (space && o) h->value[o++] = ' ';
        space = 0;
        h->value[o++] = c;
    }
    h->value[o] = 0;
    return PT_OK;
}

typedef struct sigctx {
    hdr h[MAX_SIGNED];
    size_t nh;
    qparam *q;
    size_t nq, capq;
} sigctx;

static void ctx_free(sigctx *x)
{
    for (size_t i = 0; i < x->nh; i++) {
        free(x->h[i].name);
        free(x->h[i].value);
    }
    for (size_t i = 0; i < x->nq; i++) {
        pl_str_free(&x->q[i].name);
        pl_str_free(&x->q[i].value);
    }
    free(x->q);
}

static int add_hdr(sigctx *x, const char *name, const char *value, char *err)
{
    if (x->nh >= MAX_SIGNED) return pt_seterr(err, PT_ERR_INVAL, "sigv4: too many headers");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == ':')
            return pt_seterr(err, PT_ERR_INVAL, "sigv4: bad header name '%s'", name);
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n')
            return pt_seterr(err, PT_ERR_INVAL, "sigv4: header '%s' has a line break", name);
    int rc = hdr_set(&x->h[x->nh++], name, value);
    return rc ? pt_seterr(err, rc, "sigv4: out of memory") : PT_OK;
}

/* raw names/values are encoded as given (not decoded) when raw != 0 */
static int add_q(sigctx *x, const char *name, size_t nl, const char *value, size_t vl, int raw)
{
    if (x->nq == x->capq) {
        size_t cap = x->capq ? 2 * x->capq : 16;
        qparam *q = realloc(x->q, cap * sizeof *q);
        if (!q) return PT_ERR_NOMEM;
        x->q = q;
        x->capq = cap;
    }
    qparam *p = &x->q[x->nq++];
    memset(p, 0, sizeof *p);
    if (raw) {
        if (pl_uri_encode(&p->name, name, nl, 0) || pl_uri_encode(&p->value, value, vl, 0))
            return PT_ERR_NOMEM;
        /* make sure both strings are allocated */
        if (pl_str_add(&p->name, "", 0) || pl_str_add(&p->value, "", 0)) return PT_ERR_NOMEM;
        return PT_OK;
    }
    if (reencode(&p->name, name, nl, 0) || reencode(&p->value, value, vl, 0)) return PT_ERR_NOMEM;
    if (pl_str_add(&p->name, "", 0) || pl_str_add(&p->value, "", 0)) return PT_ERR_NOMEM;
    return PT_OK;
}

static int parse_query(sigctx *x, const char *q)
{
    if (!q) return PT_OK;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len) {
            const char *eq = memchr(q, '=', len);
            size_t nl = eq ? (size_t)(eq - q) : len;
            const char *v = eq ? eq + 1 : q + len;
            size_t vl = eq ? len - nl - 1 : 0;
            if (add_q(x, q, nl, v, vl, 0)) return PT_ERR_NOMEM;
        }
        q += len;
        if (*q == '&') q++;
    }
    return PT_OK;
}

static int build_query(sigctx *x, pl_str *out)
{
    if (x->nq) qsort(x->q, x->nq, sizeof *x->q, q_cmp);
    for (size_t i = 0; i < x->nq; i++)
        if (pl_str_addf(out, "%s%s=%s", i ? "&" : "", pl_str_c(&x->q[i].name),
                        pl_str_c(&x->q[i].value)))
            return PT_ERR_NOMEM;
    return PT_OK;
}

static int check_req(const pl_sigv4_req *r, const pl_creds *c, char *err)
{
    if (!r || !c || !r->method || !r->host || !r->service || !r->region || !r->method[0] ||
        !r->host[0] || !r->service[0] || !r->region[0])
        return pt_seterr(err, PT_ERR_INVAL, "sigv4: method, host, service and region are required");
    if (!c->access_key[0] || !c->secret_key[0])
        return pt_seterr(err, PT_ERR_AUTH, "sigv4: no credentials");
    if (r->body_len && !r->body) return pt_seterr(err, PT_ERR_INVAL, "sigv4: body is NULL");
    return PT_OK;
}

static void stamp(time_t t, char amz[17], char date[9])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(amz, 17, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date, amz, 8);
    date[8] = 0;
}

/* builds canonical request + string to sign + signature. */
static int finish(const pl_sigv4_req *r, const pl_creds *c, sigctx *x, const char *date,
                  pl_sigv4_out *out, char *err)
{
    int rc = PT_ERR_NOMEM;
    pl_str cq = {0};
    pl_str *cr = &out->canonical_request;
    qsort(x->h, x->nh, sizeof x->h[0], hdr_cmp);
    /* merge repeated headers with ',' */
    size_t w = 0;
    for (size_t i = 0; i < x->nh; i++) {
        if (w && !strcmp(x->h[w - 1].name, x->h[i].name)) {
            size_t a = strlen(x->h[w - 1].value), b = strlen(x->h[i].value);
            char *v = realloc(x->h[w - 1].value, a + b + 2);
            if (!v) goto done;
            v[a] = ',';
            memcpy(v + a + 1, x->h[i].value, b + 1);
            x->h[w - 1].value = v;
            free(x->h[i].name);
            free(x->h[i].value);
            continue;
        }
        x->h[w++] = x->h[i];
    }
    x->nh = w;
    out->signed_headers[0] = 0;
    size_t sl = 0;
    for (size_t i = 0; i < x->nh; i++) {
        int n = snprintf(out->signed_headers + sl, sizeof out->signed_headers - sl, "%s%s",
                         i ? ";" : "", x->h[i].name);
        if (n < 0 || (size_t)n >= sizeof out->signed_headers - sl) {
            rc = pt_seterr(err, PT_ERR_INVAL, "sigv4: signed header list too long");
            goto done;
        }
        sl += (size_t)n;
    }
    if (build_query(x, &cq)) goto done;
    pl_str_reset(cr);
    if (pl_str_addf(cr, "%s\n", r->method)) goto done;
    const char *path = (r->path && r->path[0]) ? r->path : "/";
    if (r->s3) {
        if (reencode(cr, path, strlen(path), 1)) goto done;
    } else {
        if (pl_uri_encode(cr, path, strlen(path), 1)) goto done;
    }
    if (pl_str_addf(cr, "\n%s\n", pl_str_c(&cq))) goto done;
    for (size_t i = 0; i < x->nh; i++)
        if (pl_str_addf(cr, "%s:%s\n", x->h[i].name, x->h[i].value)) goto done;
    if (pl_str_addf(cr, "\n%s\n%s", out->signed_headers, out->payload_hash)) goto done;

    char crh[65];
    pl_sha256_hex(cr->data, cr->len, crh);
    pl_str_reset(&out->string_to_sign);
    if (pl_str_addf(&out->string_to_sign, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
                    out->amz_date, date, r->region, r->service, crh))
        goto done;
    unsigned char key[32], sig[32];
    pl_sigv4_key(c->secret_key, date, r->region, r->service, key);
    hmac(key, 32, out->string_to_sign.data, out->string_to_sign.len, sig);
    memset(key, 0, sizeof key);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out->signature[2 * i] = hx[sig[i] >> 4];
        out->signature[2 * i + 1] = hx[sig[i] & 15];
    }
    out->signature[64] = 0;
    rc = PT_OK;
done:
    if (rc == PT_ERR_NOMEM) pt_seterr(err, rc, "sigv4: out of memory");
    pl_str_free(&cq);
    return rc;
}

static int common(const pl_sigv4_req *r, const pl_creds *c, sigctx *x, pl_sigv4_out *out,
                  char date[9], int presign, char *err)
{
    int rc = check_req(r, c, err);
    if (rc) return rc;
    stamp(r->when, out->amz_date, date);
    if (r->payload_hash) {
        if (strlen(r->payload_hash) > 64)
            return pt_seterr(err, PT_ERR_INVAL, "sigv4: payload hash too long");
        strcpy(out->payload_hash, r->payload_hash);
    } else if (presign && r->s3) {
        strcpy(out->payload_hash, "UNSIGNED-PAYLOAD");
    } else {
        pl_sha256_hex(r->body ? r->body : "", r->body_len, out->payload_hash);
    }
    if ((rc = add_hdr(x, "host", r->host, err))) return rc;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (!r->headers[i].name || !r->headers[i].value)
            return pt_seterr(err, PT_ERR_INVAL, "sigv4: header without name or value");
        if (!strcasecmp(r->headers[i].name, "host") ||
            !strcasecmp(r->headers[i].name, "x-amz-date") ||
            !strcasecmp(r->headers[i].name, "authorization") ||
            (!strcasecmp(r->headers[i].name, "x-amz-security-token") && c->token[0]) ||
            (!strcasecmp(r->headers[i].name, "x-amz-content-sha256") && r->s3 && !presign))
            return pt_seterr(err, PT_ERR_INVAL, "sigv4: header '%s' is set by the signer",
                             r->headers[i].name);
        if ((rc = add_hdr(x, r->headers[i].name, r->headers[i].value, err))) return rc;
    }
    if (parse_query(x, r->query)) return pt_seterr(err, PT_ERR_NOMEM, "sigv4: out of memory");
    return PT_OK;
}

int pl_sigv4_sign(const pl_sigv4_req *r, const pl_creds *c, pl_sigv4_out *out, char *err)
{
    sigctx x;
    memset(&x, 0, sizeof x);
    char date[9];
    int rc = common(r, c, &x, out, date, 0, err);
    if (!rc) rc = add_hdr(&x, "x-amz-date", out->amz_date, err);
    if (!rc && c->token[0]) rc = add_hdr(&x, "x-amz-security-token", c->token, err);
    if (!rc && r->s3) rc = add_hdr(&x, "x-amz-content-sha256", out->payload_hash, err);
    if (!rc) rc = finish(r, c, &x, date, out, err);
    if (!rc) {
        int n = snprintf(out->authorization, sizeof out->authorization,
                         "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
                         "SignedHeaders=%s, Signature=%s",
                         c->access_key, date, r->region, r->service, out->signed_headers,
                         out->signature);
        if (n < 0 || (size_t)n >= sizeof out->authorization)
            rc = pt_seterr(err, PT_ERR_INVAL, "sigv4: authorization header too long");
    }
    ctx_free(&x);
    return rc;
}

int pl_sigv4_presign(const pl_sigv4_req *r, const pl_creds *c, int expires, pl_sigv4_out *out,
                     char *err)
{
    if (expires < 1 || expires > 604800)
        return pt_seterr(err, PT_ERR_RANGE, "presign: expiry %d s outside 1..604800", expires);
    sigctx x;
    memset(&x, 0, sizeof x);
    char date[9], cred[300], exp[16];
    int rc = common(r, c, &x, out, date, 1, err);
    if (rc) goto done;
    snprintf(cred, sizeof cred, "%s/%s/%s/%s/aws4_request", c->access_key, date, r->region,
             r->service);
    snprintf(exp, sizeof exp, "%d", expires);
    /* signed header names first, to fill X-Amz-SignedHeaders */
    {
        qsort(x.h, x.nh, sizeof x.h[0], hdr_cmp);
        pl_str sh = {0};
        for (size_t i = 0; i < x.nh; i++)
            if (pl_str_addf(&sh, "%s%s", i ? ";" : "", x.h[i].name)) rc = PT_ERR_NOMEM;
        struct {
            const char *n, *v;
        } ps[] = {{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
                  {"X-Amz-Credential", cred},
                  {"X-Amz-Date", out->amz_date},
                  {"X-Amz-Expires", exp},
                  {"X-Amz-SignedHeaders", pl_str_c(&sh)},
                  {"X-Amz-Security-Token", c->token}};
        size_t np = c->token[0] ? 6 : 5;
        for (size_t i = 0; i < np && !rc; i++)
            rc = add_q(&x, ps[i].n, strlen(ps[i].n), ps[i].v, strlen(ps[i].v), 1);
        pl_str_free(&sh);
        if (rc) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "presign: out of memory");
            goto done;
        }
    }
    if ((rc = finish(r, c, &x, date, out, err))) goto done;
    pl_str_reset(&out->presigned_query);
    if (build_query(&x, &out->presigned_query) ||
        pl_str_addf(&out->presigned_query, "&X-Amz-Signature=%s", out->signature))
        rc = pt_seterr(err, PT_ERR_NOMEM, "presign: out of memory");
done:
    ctx_free(&x);
    return rc;
}

void pl_sigv4_out_free(pl_sigv4_out *out)
{
    if (!out) return;
    pl_str_free(&out->canonical_request);
    pl_str_free(&out->string_to_sign);
    pl_str_free(&out->presigned_query);
}
