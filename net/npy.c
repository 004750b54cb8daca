/* npy.c - numpy .npy tensors: a byte-exact np.save writer for float32 and a
 * zero-copy reader for versions 1.0/2.0/3.0 (f4/f8/i8, either byte order,
 * C or Fortran order) that rejects what np.load(allow_pickle=False) rejects. */
#include "pnet.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_HEADER 10000 /* numpy's max_header_size */
#define NPY_GROWTH_DIGITS 21 /* numpy's GROWTH_AXIS_MAX_DIGITS */

/* ---- writer ------------------------------------------------------------ */

/* Header dict text exactly as numpy builds it (without padding/newline). */
static size_t header_text(int ndim, const int64_t *shape, char *out, size_t cap)
{
    char buf[64 + PT_MAX_DIMS * 24];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int d = 0; d < ndim; d++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, d ? ", %lld" : "%lld",
                              (long long)shape[d]);
    if (ndim == 1) buf[n++] = ',';
    n += (size_t)snprintf(buf + n, sizeof buf - n, "), }");
    if (ndim > 0) {
        char first[24];
        int digits = snprintf(first, sizeof first, "%lld", (long long)shape[0]);
        for (int i = digits; i < NPY_GROWTH_DIGITS; i++) buf[n++] = ' ';
    }
    if (out && cap >= n) memcpy(out, buf, n);
    return n;
}

static int shape_ok(int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > PT_MAX_DIMS || (ndim && !shape)) return 0;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0) return 0;
    return 1;
}

size_t pnet_npy_header_size(int ndim, const int64_t *shape)
{
    if (!shape_ok(ndim, shape)) return 0;
    size_t hlen = header_text(ndim, shape, NULL, 0) + 1; /* + '\n' */
    size_t pad = 64 - ((10 + hlen) % 64);
    return 10 + hlen + pad;
}

size_t pnet_npy_size(int ndim, const int64_t *shape)
{
    size_t h = pnet_npy_header_size(ndim, shape), numel = 1;
    if (!h) return 0;
    for (int d = 0; d < ndim; d++)
        if (shape[d] == 0) return h;
    for (int d = 0; d < ndim; d++) {
        if (numel > (SIZE_MAX / 8) / (size_t)shape[d]) return 0;
        numel *= (size_t)shape[d];
    }
    return h + numel * 4;
}

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

int pnet_npy_encode(const float *data, int ndim, const int64_t *shape, uint8_t *out, size_t cap,
                    size_t *written, char *err)
{
    char text[64 + PT_MAX_DIMS * 48];
    size_t numel = 1, tlen, hlen, pad, total;
    if (written) *written = 0;
    if (!shape_ok(ndim, shape))
        return pt_seterr(err, PT_ERR_INVAL, "npy: bad shape (ndim %d)", ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] == 0) numel = 0;
    for (int d = 0; d < ndim && numel; d++) {
        if (numel > (SIZE_MAX / 8) / (size_t)shape[d])
            return pt_seterr(err, PT_ERR_RANGE, "npy: shape too large");
        numel *= (size_t)shape[d];
    }
    if (numel && !data) return pt_seterr(err, PT_ERR_INVAL, "npy: no data");
    tlen = header_text(ndim, shape, text, sizeof text);
    hlen = tlen + 1;
    pad = 64 - ((10 + hlen) % 64);
    total = 10 + hlen + pad + numel * 4;
    if (cap < total)
        return pt_seterr(err, PT_ERR_RANGE, "npy: buffer too small (%zu < %zu)", cap, total);
    memcpy(out, NPY_MAGIC, 6);
    out[6] = 1;
    out[7] = 0;
    out[8] = (uint8_t)((hlen + pad) & 0xff);
    out[9] = (uint8_t)((hlen + pad) >> 8);
    memcpy(out + 10, text, tlen);
    memset(out + 10 + tlen, ' ', pad);
    out[10 + tlen + pad] = '\n';
    uint8_t *dst = out + 10 + hlen + pad;
    if (host_is_le()) {
        if (numel) memcpy(dst, data, numel * 4);
    } else {
        for (size_t i = 0; i < numel; i++) {
            uint32_t u;
            memcpy(&u, &data[i], 4);
            dst[4 * i] = (uint8_t)u;
            dst[4 * i + 1] = (uint8_t)(u >> 8);
            dst[4 * i + 2] = (uint8_t)(u >> 16);
            dst[4 * i + 3] = (uint8_t)(u >> 24);
        }
    }
    if (written) *written = total;
    return PT_OK;
}

/* ---- reader: a tiny parser for the Python dict literal ------------------ */

typedef struct lex {
    const char *p, *end;
    int allow_l; /* Python 2 'L' suffix on ints (versions 1.0 and 2.0) */
} lex;

static void skip_ws(lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r' ||
                             *l->p == '\f' || *l->p == '\v'))
        l->p++;
}

static int accept(lex *l, char c)
{
    skip_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes or line breaks (numpy never writes any;
 * anything more exotic is refused). Copied into out (NUL-terminated). */
static int parse_str(lex *l, char *out, size_t cap)
{
    skip_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return -1;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || *l->p == '\n' || n + 1 >= cap) return -1;
        out[n++] = *l->p++;
    }
    if (l->p >= l->end) return -1;
    l->p++;
    out[n] = 0;
    return 0;
}

static int is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int parse_word(lex *l, const char *w)
{
    size_t n = strlen(w);
    skip_ws(l);
    if ((size_t)(l->end - l->p) < n || memcmp(l->p, w, n)) return 0;
    if (l->p + n < l->end && is_ident(l->p[n])) return 0;
    l->p += n;
    return 1;
}

/* Integer literal: optional sign, decimal digits (underscores between digits
 * as Python allows). *neg set for a negative value. */
static int parse_int(lex *l, int64_t *v)
{
    int neg = 0, digits = 0;
    uint64_t acc = 0;
    skip_ws(l);
    while (l->p < l->end && (*l->p == '-' || *l->p == '+')) {
        if (*l->p == '-') neg = !neg;
        l->p++;
        skip_ws(l);
    }
    if (l->p >= l->end || *l->p < '0' || *l->p > '9') return -1;
    if (*l->p == '0' && l->p + 1 < l->end && l->p[1] >= '0' && l->p[1] <= '9')
        return -1; /* Python 3 refuses leading zeros */
    while (l->p < l->end && ((*l->p >= '0' && *l->p <= '9') || *l->p == '_')) {
        if (*l->p == '_') {
            if (!(l->p + 1 < l->end && l->p[1] >= '0' && l->p[1] <= '9')) return -1;
            l->p++;
            continue;
        }
        if (acc > ((uint64_t)INT64_MAX - 9) / 10) return -2; /* too big */
        acc = acc * 10 + (uint64_t)(*l->p - '0');
        l->p++;
        digits++;
    }
    if (l->allow_l && l->p < l->end && *l->p == 'L') l->p++;
    if (l->p < l->end && is_ident(*l->p)) return -1;
    *v = neg ? -(int64_t)acc : (int64_t)acc;
    return digits ? 0 : -1;
}

static int parse_descr(const char *s, pnet_npy_info *o)
{
    static const struct {
        const char *name;
        pnet_dtype dt;
        int size;
    } names[] = {{"f4", PNET_DT_F4, 4}, {"f8", PNET_DT_F8, 8}, {"i8", PNET_DT_I8, 8},
                 {"float32", PNET_DT_F4, 4}, {"float64", PNET_DT_F8, 8},
                 {"int64", PNET_DT_I8, 8}, {"float", PNET_DT_F8, 8}, {"double", PNET_DT_F8, 8},
                 {"d", PNET_DT_F8, 8}, {"f", PNET_DT_F4, 4}};
    int be = !host_is_le();
    if (*s == '<' || *s == '>' || *s == '=' || *s == '|') {
        if (*s == '<') be = 0;
        if (*s == '>') be = 1;
        s++;
        if (!strcmp(s, "float32") || !strcmp(s, "float64") || !strcmp(s, "int64") ||
            !strcmp(s, "float") || !strcmp(s, "double"))
            return -1; /* numpy refuses a byte order on names */
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strcmp(s, names[i].name)) {
            o->dtype = names[i].dt;
            o->itemsize = names[i].size;
            o->big_endian = be;
            return 0;
        }
    }
    return -1;
}

int pnet_npy_view(const uint8_t *buf, size_t len, pnet_npy_info *out, char *err)
{
    pnet_npy_info o;
    size_t hlen, hstart;
    char descr[64];
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    memset(&o, 0, sizeof o);
    memset(out, 0, sizeof *out);
    if (!buf || len < 10 || memcmp(buf, NPY_MAGIC, 6))
        return pt_seterr(err, PT_ERR_FORMAT, "npy: bad magic (not an NPY file, %zu bytes)", len);
    if ((buf[6] != 1 && buf[6] != 2 && buf[6] != 3) || buf[7] != 0)
        return pt_seterr(err, PT_ERR_FORMAT, "npy: unsupported format version %u.%u", buf[6],
                         buf[7]);
    o.version = buf[6];
    if (o.version == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else {
        if (len < 12) return pt_seterr(err, PT_ERR_FORMAT, "npy: truncated header length");
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
               (size_t)buf[11] << 24;
        hstart = 12;
    }
    if (hlen > len - hstart)
        return pt_seterr(err, PT_ERR_FORMAT, "npy: header of %zu bytes truncated (%zu left)", hlen,
                         len - hstart);
    {
        /* numpy counts decoded characters; UTF-8 continuation bytes (v3)
         * do not count. Latin-1 (v1/v2) is one byte per character. */
        size_t chars = hlen;
        if (o.version == 3)
            for (size_t i = 0; i < hlen; i++)
                if ((buf[hstart + i] & 0xc0) == 0x80) chars--;
        if (chars > NPY_MAX_HEADER)
            return pt_seterr(err, PT_ERR_FORMAT,
                             "npy: header of %zu bytes exceeds numpy's limit of %d", chars,
                             NPY_MAX_HEADER);
    }
    lex l = {(const char *)buf + hstart, (const char *)buf + hstart + hlen, o.version <= 2};
    char esc[128]; /* peer text quoted in an error, escaped for the logs */
    if (!accept(&l, '{')) return pt_seterr(err, PT_ERR_FORMAT, "npy: header is not a dict");
    for (;;) {
        char key[32];
        if (accept(&l, '}')) break;
        if (parse_str(&l, key, sizeof key))
            return pt_seterr(err, PT_ERR_FORMAT, "npy: header dict key is not a simple string");
        if (!accept(&l, ':'))
            return pt_seterr(err, PT_ERR_FORMAT, "npy: header: ':' expected after '%s'",
                             pt_escape(esc, sizeof esc, key, PT_ESC_CSTR));
        if (!strcmp(key, "descr")) {
            skip_ws(&l);
            if (l.p < l.end && (*l.p == '[' || *l.p == '('))
                return pt_seterr(err, PT_ERR_UNSUPPORTED,
                                 "npy: structured dtypes are not supported");
            if (parse_str(&l, descr, sizeof descr))
                return pt_seterr(err, PT_ERR_FORMAT, "npy: 'descr' is not a dtype string");
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            if (parse_word(&l, "True")) o.fortran_order = 1;
            else if (parse_word(&l, "False")) o.fortran_order = 0;
            else return pt_seterr(err, PT_ERR_FORMAT, "npy: 'fortran_order' is not a bool");
            have_fortran = 1;
        } else if (!strcmp(key, "shape")) {
            int n = 0;
            if (!accept(&l, '('))
                return pt_seterr(err, PT_ERR_FORMAT, "npy: 'shape' is not a tuple");
            int trailing_comma = 0;
            while (!accept(&l, ')')) {
                int64_t v;
                int rc = parse_int(&l, &v);
                if (rc == -2) return pt_seterr(err, PT_ERR_RANGE, "npy: shape value too large");
                if (rc) return pt_seterr(err, PT_ERR_FORMAT, "npy: shape holds a non-integer");
                if (n >= PT_MAX_DIMS)
                    return pt_seterr(err, PT_ERR_UNSUPPORTED, "npy: more than %d dimensions",
                                     PT_MAX_DIMS);
                o.shape[n++] = v;
                trailing_comma = accept(&l, ',');
                if (!trailing_comma) {
                    if (!accept(&l, ')'))
                        return pt_seterr(err, PT_ERR_FORMAT, "npy: malformed shape tuple");
                    break;
                }
            }
            if (n == 1 && !trailing_comma)
                return pt_seterr(err, PT_ERR_FORMAT, "npy: 'shape' is not a tuple");
            o.ndim = n;
            have_shape = 1;
        } else {
            return pt_seterr(err, PT_ERR_FORMAT, "npy: unexpected header key '%s'",
                             pt_escape(esc, sizeof esc, key, PT_ESC_CSTR));
        }
        if (!accept(&l, ',')) {
            if (!accept(&l, '}'))
                return pt_seterr(err, PT_ERR_FORMAT, "npy: header: ',' or '}' expected");
            break;
        }
    }
    skip_ws(&l);
    if (l.p != l.end)
        return pt_seterr(err, PT_ERR_FORMAT, "npy: trailing garbage after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
        return pt_seterr(err, PT_ERR_FORMAT, "npy: header lacks '%s'",
                         !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    if (parse_descr(descr, &o)) {
        /* numpy knows many more dtypes; we refuse them either way. */
        return pt_seterr(err, PT_ERR_UNSUPPORTED,
                         "npy: dtype '%s' not supported (float32, float64 or int64)",
                         pt_escape(esc, sizeof esc, descr, PT_ESC_CSTR));
    }
    o.numel = 1;
    for (int d = 0; d < o.ndim; d++) {
        if (o.shape[d] < 0)
            return pt_seterr(err, PT_ERR_FORMAT, "npy: negative dimension %lld in shape",
                             (long long)o.shape[d]);
        if (o.shape[d] == 0) o.numel = 0;
    }
    for (int d = 0; d < o.ndim && o.numel; d++) {
        if (o.numel > (SIZE_MAX / 8) / (uint64_t)o.shape[d])
            return pt_seterr(err, PT_ERR_RANGE, "npy: element count overflows");
        o.numel *= (size_t)o.shape[d];
    }
    o.data_offset = hstart + hlen;
    o.data_len = o.numel * (size_t)o.itemsize;
    if (o.data_len > len - o.data_offset)
        return pt_seterr(err, PT_ERR_FORMAT, "npy: EOF: expected %zu data bytes, got %zu",
                         o.data_len, len - o.data_offset);
    o.data = buf + o.data_offset;
    *out = o;
    return PT_OK;
}

/* ---- conversion to float32 ---------------------------------------------- */

static uint64_t load_u(const uint8_t *p, int size, int be)
{
    uint64_t u = 0;
    if (be)
        for (int i = 0; i < size; i++) u = u << 8 | p[i];
    else
        for (int i = size - 1; i >= 0; i--) u = u << 8 | p[i];
    return u;
}

/* Convert element k of the source (in storage order) into a float. */
static int convert_one(const pnet_npy_info *in, size_t k, unsigned flags, float *out)
{
    const uint8_t *p = in->data + k * (size_t)in->itemsize;
    uint64_t u = load_u(p, in->itemsize, in->big_endian);
    if (in->dtype == PNET_DT_F4) {
        uint32_t w = (uint32_t)u;
        memcpy(out, &w, 4);
        return 0;
    }
    if (in->dtype == PNET_DT_F8) {
        double d;
        memcpy(&d, &u, 8);
        if ((flags & PNET_NPY_ERR_OVERFLOW) && isfinite(d) && fabs(d) > FLT_MAX) return -1;
        *out = (float)d;
        return 0;
    }
    int64_t i = (int64_t)u;
    *out = (float)i;
    return 0;
}

int pnet_npy_check(const pnet_npy_info *info, unsigned flags, char *err)
{
    if (info->dtype != PNET_DT_F4 && (flags & PNET_NPY_F32_ONLY))
        return pt_seterr(err, PT_ERR_UNSUPPORTED, "npy: dtype %s where float32 is required",
                         info->dtype == PNET_DT_F8 ? "float64" : "int64");
    if (info->dtype == PNET_DT_I8 || !(flags & (PNET_NPY_FINITE | PNET_NPY_ERR_OVERFLOW)) ||
        (info->dtype == PNET_DT_F4 && !(flags & PNET_NPY_FINITE)))
        return PT_OK; /* every int64 converts to a finite float; a float32 cannot overflow */
    /* The exponent bits say it all: no conversion, no write. Element order
     * (C or Fortran) does not matter for "is any of them bad". */
    for (size_t k = 0; k < info->numel; k++) {
        uint64_t u = load_u(info->data + k * (size_t)info->itemsize, info->itemsize,
                            info->big_endian);
        if (info->dtype == PNET_DT_F4) {
            if ((flags & PNET_NPY_FINITE) && ((u >> 23) & 0xff) == 0xff)
                return pt_seterr(err, PT_ERR_DIVERGED, "npy: element %zu is not finite (%s)", k,
                                 (u & 0x7fffff) ? "NaN" : "infinity");
            continue;
        }
        double d;
        memcpy(&d, &u, 8);
        if (!isfinite(d)) {
            if (flags & PNET_NPY_FINITE)
                return pt_seterr(err, PT_ERR_DIVERGED, "npy: element %zu is not finite (%s)", k,
                                 isnan(d) ? "NaN" : "infinity");
        } else if (fabs(d) > FLT_MAX) {
            return pt_seterr(err, PT_ERR_RANGE,
                             "npy: element %zu overflows float32 (value beyond %g)", k,
                             (double)FLT_MAX);
        }
    }
    return PT_OK;
}

int pnet_npy_to_f32(const pnet_npy_info *info, float *dst, size_t numel, unsigned flags,
                    char *err)
{
    if (numel != info->numel)
        return pt_seterr(err, PT_ERR_MISMATCH, "npy: %zu elements, destination holds %zu",
                         info->numel, numel);
    if (info->dtype != PNET_DT_F4 && (flags & PNET_NPY_F32_ONLY))
        return pt_seterr(err, PT_ERR_UNSUPPORTED, "npy: dtype %s where float32 is required",
                         info->dtype == PNET_DT_F8 ? "float64" : "int64");
    if (flags & PNET_NPY_FINITE) { /* nothing written unless every value passes */
        int rc = pnet_npy_check(info, flags, err);
        if (rc) return rc;
    }
    int contiguous = !info->fortran_order || info->ndim <= 1;
    if (contiguous && info->dtype == PNET_DT_F4 && info->big_endian == !host_is_le()) {
        if (numel) memcpy(dst, info->data, numel * 4);
        return PT_OK;
    }
    if (contiguous) {
        for (size_t k = 0; k < numel; k++)
            if (convert_one(info, k, flags, &dst[k]))
                return pt_seterr(err, PT_ERR_RANGE,
                                 "npy: element %zu overflows float32 (value beyond %g)", k,
                                 (double)FLT_MAX);
        return PT_OK;
    }
    /* Fortran order: walk the destination in C order, find the source
     * offset with column-major strides. */
    size_t fstride[PT_MAX_DIMS], idx[PT_MAX_DIMS] = {0}, s = 1;
    for (int d = 0; d < info->ndim; d++) {
        fstride[d] = s;
        s *= (size_t)info->shape[d];
    }
    for (size_t k = 0; k < numel; k++) {
        size_t off = 0;
        for (int d = 0; d < info->ndim; d++) off += idx[d] * fstride[d];
        if (convert_one(info, off, flags, &dst[k]))
            return pt_seterr(err, PT_ERR_RANGE, "npy: element %zu overflows float32", off);
        for (int d = info->ndim - 1; d >= 0; d--) {
            if (++idx[d] < (size_t)info->shape[d]) break;
            idx[d] = 0;
        }
    }
    return PT_OK;
}
