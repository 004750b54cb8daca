/*
 * npz.c - save/load weights as an uncompressed .npz: a zip archive (method
 * 0, "stored") of NPY v1.0 float32 little-endian arrays arr_0.npy ...
 * arr_{k-1}.npy in Keras order, as numpy.savez writes them. Loading accepts
 * zip64 extra fields (numpy writes them) and checks every size, offset and
 * CRC-32 so a truncated or corrupted file is an error, not a crash.
 */
#include "nn_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>

static uint32_t crc_table[256];
static int crc_ready;

static uint32_t crc32_update(uint32_t crc, const void *data, size_t n)
{
    if (!crc_ready) { /* idempotent; racing initialisers write identical values */
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
        crc_ready = 1;
    }
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static unsigned get16(const unsigned char *p) { return p[0] | (unsigned)p[1] << 8; }
static uint32_t get32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p)
{
    return get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* NPY v1.0 header for a float32 C-order array; returns its length (multiple of 64). */
static size_t npy_header(const pnn_tensor *t, char *buf, size_t cap)
{
    char shape[128];
    size_t k = 0;
    shape[0] = 0;
    for (int d = 0; d < t->ndim; d++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%lld,%s", (long long)t->shape[d],
                              d + 1 < t->ndim ? " " : "");
    if (t->ndim > 1 && k > 0) shape[k - 1] = 0; /* (a, b) not (a, b,) */
    char dict[256];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                      shape);
    size_t total = 10 + (size_t)dl + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap) return 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    put16((unsigned char *)buf + 8, (unsigned)(total - 10));
    memcpy(buf + 10, dict, (size_t)dl);
    memset(buf + 10 + dl, ' ', total - 10 - (size_t)dl - 1);
    buf[total - 1] = '\n';
    return total;
}

int pnn_save_weights(const pnn_model *m, const char *path, char *err)
{
    if (!m || !path) return pnn__seterr(err, PNN_ERR_INVAL, "save: NULL argument");
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return pnn__seterr(err, PNN_ERR_INVAL, "save: path too long");
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) /* rename would replace it */
        return pnn__seterr(err, PNN_ERR_IO, "save %.200s: not a regular file", path);
    char why[PNN_ERRLEN];
    int orc;
    FILE *f = pnn__fopen(tmp, 1, &orc, why);
    if (!f) return pnn__seterr(err, orc, "save %.300s", why);
    size_t n = m->nw;
    uint32_t *crc = calloc(n ? n : 1, sizeof *crc), *off = calloc(n ? n : 1, sizeof *off);
    uint32_t *sz = calloc(n ? n : 1, sizeof *sz);
    int rc = PNN_OK;
    if (!crc || !off || !sz) {
        rc = pnn__seterr(err, PNN_ERR_NOMEM, "save: out of memory");
        goto out;
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        const pnn_tensor *t = &m->wt[i];
        char hdr[512], name[32];
        size_t hl = npy_header(t, hdr, sizeof hdr);
        int nl = snprintf(name, sizeof name, "arr_%zu.npy", i);
        uint64_t dsz = hl + t->numel * 4;
        if (dsz > 0xfffffffful - 1 || pos > 0xfffffffful - 1 - dsz - 64) {
            rc = pnn__seterr(err, PNN_ERR_INVAL, "save: model too large for a zip32 archive");
            goto out;
        }
        uint32_t c = crc32_update(0, hdr, hl);
        c = crc32_update(c, t->data, t->numel * 4);
        crc[i] = c;
        off[i] = (uint32_t)pos;
        sz[i] = (uint32_t)dsz;
        unsigned char lh[30];
        memset(lh, 0, sizeof lh);
        put32(lh, 0x04034b50);
        put16(lh + 4, 20);
        put32(lh + 14, c);
        put32(lh + 18, (uint32_t)dsz);
        put32(lh + 22, (uint32_t)dsz);
        put16(lh + 26, (unsigned)nl);
        if (fwrite(lh, 1, 30, f) != 30 || fwrite(name, 1, (size_t)nl, f) != (size_t)nl ||
            fwrite(hdr, 1, hl, f) != hl || fwrite(t->data, 4, t->numel, f) != t->numel) {
            rc = pnn__seterr(err, PNN_ERR_IO, "save %.200s: write failed", tmp);
            goto out;
        }
        pos += 30 + (uint64_t)nl + dsz;
    }
    uint64_t cd_start = pos;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        int nl = snprintf(name, sizeof name, "arr_%zu.npy", i);
        unsigned char ch[46];
        memset(ch, 0, sizeof ch);
        put32(ch, 0x02014b50);
        put16(ch + 4, 20);
        put16(ch + 6, 20);
        put32(ch + 16, crc[i]);
        put32(ch + 20, sz[i]);
        put32(ch + 24, sz[i]);
        put16(ch + 28, (unsigned)nl);
        put32(ch + 38, 0644u << 16);
        put32(ch + 42, off[i]);
        if (fwrite(ch, 1, 46, f) != 46 || fwrite(name, 1, (size_t)nl, f) != (size_t)nl) {
            rc = pnn__seterr(err, PNN_ERR_IO, "save %.200s: write failed", tmp);
            goto out;
        }
        pos += 46 + (uint64_t)nl;
    }
    unsigned char eo[22];
    memset(eo, 0, sizeof eo);
    put32(eo, 0x06054b50);
    put16(eo + 8, (unsigned)n);
    put16(eo + 10, (unsigned)n);
    put32(eo + 12, (uint32_t)(pos - cd_start));
    put32(eo + 16, (uint32_t)cd_start);
    if (fwrite(eo, 1, 22, f) != 22) rc = pnn__seterr(err, PNN_ERR_IO, "save: write failed");
out:
    if (fclose(f) != 0 && rc == PNN_OK) rc = pnn__seterr(err, PNN_ERR_IO, "save: close failed");
    if (rc == PNN_OK && rename(tmp, path) != 0)
        rc = pnn__seterr(err, PNN_ERR_IO, "save %.200s: %s", path, strerror(errno));
    if (rc != PNN_OK) remove(tmp);
    free(crc);
    free(off);
    free(sz);
    return rc;
}

/* Parse "'shape': (a, b, )" etc. from an NPY header dict. */
static int npy_parse(const unsigned char *p, size_t len, pnn_tensor *t, size_t *data_off,
                     char *what, size_t wl)
{
    if (len < 10 || memcmp(p, "\x93NUMPY", 6)) {
        snprintf(what, wl, "not an NPY array");
        return -1;
    }
    size_t hl, ho;
    if (p[6] == 1) {
        hl = get16(p + 8);
        ho = 10;
    } else if (p[6] == 2 || p[6] == 3) {
        if (len < 12) {
            snprintf(what, wl, "truncated NPY header");
            return -1;
        }
        hl = get32(p + 8);
        ho = 12;
    } else {
        snprintf(what, wl, "unsupported NPY version %d", p[6]);
        return -1;
    }
    if (hl > len - ho || hl > 65536) {
        snprintf(what, wl, "truncated NPY header");
        return -1;
    }
    char h[1024];
    size_t cl = hl < sizeof h - 1 ? hl : sizeof h - 1;
    memcpy(h, p + ho, cl);
    h[cl] = 0;
    if (!strstr(h, "'descr': '<f4'")) {
        snprintf(what, wl, "dtype is not little-endian float32 ('<f4')");
        return -1;
    }
    if (!strstr(h, "'fortran_order': False")) {
        snprintf(what, wl, "fortran_order arrays are not supported");
        return -1;
    }
    const char *s = strstr(h, "'shape': (");
    if (!s) {
        snprintf(what, wl, "NPY header without shape");
        return -1;
    }
    s += 10;
    t->ndim = 0;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        if (*s < '0' || *s > '9' || t->ndim >= PNN_MAX_DIMS) {
            snprintf(what, wl, "bad or unsupported shape in NPY header");
            return -1;
        }
        char *e;
        long long v = strtoll(s, &e, 10);
        if (v < 0 || v > (1ll << 40)) {
            snprintf(what, wl, "bad shape in NPY header");
            return -1;
        }
        t->shape[t->ndim++] = v;
        s = e;
    }
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
    t->numel = numel;
    *data_off = ho + hl;
    return 0;
}

typedef struct zent {
    char name[64];
    uint64_t off, size;
    uint32_t crc;
    int idx; /* N of arr_N.npy, or -1 */
} zent;

static int cmp_ent(const void *a, const void *b)
{
    const zent *x = a, *y = b;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int pnn_load_weights(pnn_model *m, const char *path, char *err)
{
    if (!m || !path) return pnn__seterr(err, PNN_ERR_INVAL, "load: NULL argument");
    char why[PNN_ERRLEN];
    int orc;
    FILE *f = pnn__fopen(path, 0, &orc, why);
    if (!f) return pnn__seterr(err, orc, "load %.300s", why);
    unsigned char *buf = NULL;
    zent *ents = NULL;
    float *staging = NULL;
    int rc = PNN_OK;
    long fl = -1;
    if (fseek(f, 0, SEEK_END) == 0) fl = ftell(f);
    if (fl < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = pnn__seterr(err, PNN_ERR_IO, "load %.200s: cannot determine size", path);
        goto out;
    }
    size_t len = (size_t)fl;
    if (len > ((size_t)1 << 34)) {
        rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: file too large", path);
        goto out;
    }
    buf = malloc(len ? len : 1);
    if (!buf) {
        rc = pnn__seterr(err, PNN_ERR_NOMEM, "load: out of memory");
        goto out;
    }
    if (fread(buf, 1, len, f) != len) {
        rc = pnn__seterr(err, PNN_ERR_IO, "load %.200s: read failed", path);
        goto out;
    }
    /* end of central directory: last 22..22+65535 bytes */
    size_t eocd = (size_t)-1;
    for (size_t i = len >= 22 ? len - 22 + 1 : 0; i-- > 0 && len - i <= 22 + 65535;)
        if (get32(buf + i) == 0x06054b50) {
            eocd = i;
            break;
        }
    if (eocd == (size_t)-1) {
        rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: not an .npz (zip) file, or truncated "
                                            "(%zu bytes; no end-of-archive record)", path, len);
        goto out;
    }
    uint64_t count = get16(buf + eocd + 10), cdsz = get32(buf + eocd + 12);
    uint64_t cdoff = get32(buf + eocd + 16);
    if (cdoff == 0xffffffffu || count == 0xffff) { /* zip64 locator precedes the EOCD */
        if (eocd < 20 || get32(buf + eocd - 20) != 0x07064b50) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: bad zip64 archive", path);
            goto out;
        }
        uint64_t z64 = get64(buf + eocd - 20 + 8);
        if (z64 > len || len - z64 < 56 || get32(buf + z64) != 0x06064b50) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: bad zip64 record", path);
            goto out;
        }
        count = get64(buf + z64 + 32);
        cdsz = get64(buf + z64 + 40);
        cdoff = get64(buf + z64 + 48);
    }
    if (cdoff > len || cdsz > len - cdoff || count > 100000) {
        rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: truncated or corrupt central "
                                            "directory", path);
        goto out;
    }
    if (count != m->nw) {
        rc = pnn__seterr(err, PNN_ERR_SHAPE, "load %.200s: %llu arrays, the model has %zu weight "
                                           "tensors", path, (unsigned long long)count, m->nw);
        goto out;
    }
    ents = calloc(count ? count : 1, sizeof *ents);
    staging = malloc(m->nparams * sizeof(float) + 1);
    if (!ents || !staging) {
        rc = pnn__seterr(err, PNN_ERR_NOMEM, "load: out of memory");
        goto out;
    }
    size_t p = cdoff, end = cdoff + cdsz;
    int all_named = 1;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || get32(buf + p) != 0x02014b50) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: corrupt central directory entry "
                                                "%llu", path, (unsigned long long)i);
            goto out;
        }
        unsigned method = get16(buf + p + 10), nl = get16(buf + p + 28);
        unsigned xl = get16(buf + p + 30), cl = get16(buf + p + 32);
        zent *e = &ents[i];
        e->crc = get32(buf + p + 16);
        uint64_t csize = get32(buf + p + 20);
        e->size = get32(buf + p + 24);
        e->off = get32(buf + p + 42);
        if ((uint64_t)46 + nl + xl + cl > end - p) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: corrupt central directory", path);
            goto out;
        }
        size_t cn = nl < sizeof e->name - 1 ? nl : sizeof e->name - 1;
        memcpy(e->name, buf + p + 46, cn);
        e->name[cn] = 0;
        /* zip64 extra: sizes/offset present only where the 32-bit field is all ones */
        const unsigned char *x = buf + p + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            unsigned id = get16(x), dl = get16(x + 2);
            if ((size_t)(xe - x - 4) < dl) break;
            if (id == 1) {
                const unsigned char *q = x + 4, *qe = q + dl;
                if (e->size == 0xffffffffu && qe - q >= 8) e->size = get64(q), q += 8;
                if (csize == 0xffffffffu && qe - q >= 8) csize = get64(q), q += 8;
                if (e->off == 0xffffffffu && qe - q >= 8) e->off = get64(q), q += 8;
            }
            x += 4 + dl;
        }
        if (method != 0 || csize != e->size) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: %s is compressed (use numpy.savez,"
                                                " not savez_compressed)", path, e->name);
            goto out;
        }
        e->idx = -1;
        int k;
        char tail[8];
        if (sscanf(e->name, "arr_%d%7s", &k, tail) == 2 && !strcmp(tail, ".npy") && k >= 0)
            e->idx = k;
        else
            all_named = 0;
        p += 46 + nl + xl + cl;
    }
    if (all_named) qsort(ents, count, sizeof *ents, cmp_ent);
    size_t woff = 0;
    for (uint64_t i = 0; i < count; i++) {
        zent *e = &ents[i];
        if (all_named && e->idx != (int)i) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: arrays are not arr_0..arr_%llu",
                           path, (unsigned long long)count - 1);
            goto out;
        }
        if (e->off > len || len - e->off < 30 || get32(buf + e->off) != 0x04034b50) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: %s: bad local header (truncated?)",
                           path, e->name);
            goto out;
        }
        uint64_t d = e->off + 30 + get16(buf + e->off + 26) + get16(buf + e->off + 28);
        if (d > len || e->size > len - d) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: %s: data truncated (file has %zu "
                                                "bytes)", path, e->name, len);
            goto out;
        }
        if (crc32_update(0, buf + d, (size_t)e->size) != e->crc) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: %s: CRC mismatch (corrupt file)",
                           path, e->name);
            goto out;
        }
        pnn_tensor t;
        size_t doff;
        char what[128];
        memset(&t, 0, sizeof t);
        if (npy_parse(buf + d, (size_t)e->size, &t, &doff, what, sizeof what)) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: %s: %s", path, e->name, what);
            goto out;
        }
        const pnn_tensor *w = &m->wt[i];
        int same = t.ndim == w->ndim;
        for (int k = 0; same && k < t.ndim; k++) same = t.shape[k] == w->shape[k];
        if (!same) {
            char sa[96] = "", se[96] = "";
            size_t ka = 0, ke = 0;
            for (int k = 0; k < t.ndim; k++)
                ka += (size_t)snprintf(sa + ka, sizeof sa - ka, "%s%lld", k ? "," : "",
                                       (long long)t.shape[k]);
            for (int k = 0; k < w->ndim; k++)
                ke += (size_t)snprintf(se + ke, sizeof se - ke, "%s%lld", k ? "," : "",
                                       (long long)w->shape[k]);
            rc = pnn__seterr(err, PNN_ERR_SHAPE, "load %.200s: %s has shape (%s), the model "
                                               "expects (%s) for weight tensor %llu",
                           path, e->name, sa, se, (unsigned long long)i);
            goto out;
        }
        if ((uint64_t)e->size - doff != (uint64_t)w->numel * 4) {
            rc = pnn__seterr(err, PNN_ERR_FORMAT, "load %.200s: %s: %llu data bytes, expected %zu",
                           path, e->name, (unsigned long long)(e->size - doff), w->numel * 4);
            goto out;
        }
        memcpy(staging + woff, buf + d + doff, w->numel * 4);
        woff += w->numel;
    }
    memcpy(m->w, staging, m->nparams * sizeof(float));
out:
    fclose(f);
    free(buf);
    free(ents);
    free(staging);
    return rc;
}
