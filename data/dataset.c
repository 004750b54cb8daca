/* dataset.c - pd_dataset lifetime, subsets, resizing and channel conversion. */
#include "data_int.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static float u8_lut[256];
static pthread_once_t u8_once = PTHREAD_ONCE_INIT;

static void u8_lut_init(void)
{
    for (int i = 0; i < 256; i++) u8_lut[i] = (float)i / 255.0f;
}

const float *pd_u8_lut(void)
{
    pthread_once(&u8_once, u8_lut_init);
    return u8_lut;
}

const char *pd_basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

void pd_dataset_free(pd_dataset *d)
{
    if (!d) return;
    if (d->class_names) {
        for (int i = 0; i < d->nclasses; i++) free(d->class_names[i]);
        free(d->class_names);
    }
    free(d->x);
    free(d->y);
    free(d->keys);
    memset(d, 0, sizeof *d);
}

uint64_t pd_key(const char *rel)
{
    /* FNV-1a over the bytes, then splitmix64's finaliser to spread the bits */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

size_t pd_example_floats(const pd_dataset *d)
{
    return (size_t)d->h * (size_t)d->w * (size_t)d->c;
}

int pd_dataset_alloc(pd_dataset *d, size_t n, int h, int w, int c, char *err)
{
    memset(d, 0, sizeof *d);
    if (h <= 0 || w <= 0 || c <= 0 || h > 65535 || w > 65535 || c > 4)
        return pt_seterr(err, PT_ERR_INVAL, "invalid example shape %dx%dx%d", h, w, c);
    size_t per = (size_t)h * (size_t)w * (size_t)c;
    if (n > PD_MAX_FLOATS / per)
        return pt_seterr(err, PT_ERR_RANGE, "dataset of %zu examples of %dx%dx%d is too large",
                         n, h, w, c);
    d->x = malloc((n ? n : 1) * per * sizeof(float));
    d->y = malloc((n ? n : 1) * sizeof(int32_t));
    if (!d->x || !d->y) {
        free(d->x);
        free(d->y);
        memset(d, 0, sizeof *d);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory for %zu examples of %dx%dx%d", n,
                         h, w, c);
    }
    d->n = n;
    d->h = h;
    d->w = w;
    d->c = c;
    return PT_OK;
}

int pd_set_class_names(pd_dataset *d, const char *const *names, int n, char *err)
{
    char **v = calloc((size_t)(n > 0 ? n : 1), sizeof *v);
    if (!v) return pt_seterr(err, PT_ERR_NOMEM, "out of memory for class names");
    for (int i = 0; i < n; i++) {
        if (!(v[i] = strdup(names[i]))) {
            for (int j = 0; j < i; j++) free(v[j]);
            free(v);
            return pt_seterr(err, PT_ERR_NOMEM, "out of memory for class names");
        }
    }
    if (d->class_names) {
        for (int i = 0; i < d->nclasses; i++) free(d->class_names[i]);
        free(d->class_names);
    }
    d->class_names = v;
    d->nclasses = n;
    return PT_OK;
}

int pd_subset(pd_dataset *out, const pd_dataset *src, const size_t *idx, size_t count,
              char *err)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (!src || (count && !idx)) return pt_seterr(err, PT_ERR_INVAL, "pd_subset: NULL argument");
    for (size_t i = 0; i < count; i++)
        if (idx[i] >= src->n)
            return pt_seterr(err, PT_ERR_RANGE, "subset index %zu out of range (dataset has %zu)",
                             idx[i], src->n);
    if ((rc = pd_dataset_alloc(out, count, src->h, src->w, src->c, err))) return rc;
    size_t per = pd_example_floats(src);
    if (src->keys && !(out->keys = malloc((count ? count : 1) * sizeof *out->keys))) {
        pd_dataset_free(out);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory for %zu keys", count);
    }
    for (size_t i = 0; i < count; i++) {
        memcpy(out->x + i * per, src->x + idx[i] * per, per * sizeof(float));
        out->y[i] = src->y[idx[i]];
        if (out->keys) out->keys[i] = src->keys[idx[i]];
    }
    out->nclasses = src->nclasses;
    if (src->class_names &&
        (rc = pd_set_class_names(out, (const char *const *)src->class_names, src->nclasses,
                                 err))) {
        pd_dataset_free(out);
        return rc;
    }
    return PT_OK;
}

/* ---- resizing ------------------------------------------------------------------ */

/* tf.image.resize bilinear, half_pixel_centers: in = (o + 0.5) * scale - 0.5,
 * lo = max(floor(in), 0), hi = min(ceil(in), size - 1), t = in - floor(in). */
void pd_lerp_weight(int o, int out, int in, int *lo, int *hi, float *t)
{
    double v = ((double)o + 0.5) * ((double)in / (double)out) - 0.5;
    double f = floor(v);
    int l = (int)f, h = (int)ceil(v);
    *t = (float)(v - f);
    *lo = l < 0 ? 0 : l > in - 1 ? in - 1 : l;
    *hi = h < 0 ? 0 : h > in - 1 ? in - 1 : h;
}

void pd_resize_row(const float *r0, const float *r1, float ty, int sw, float *out, int dw, int c)
{
    for (int ox = 0; ox < dw; ox++) {
        int lo, hi;
        float tx;
        pd_lerp_weight(ox, dw, sw, &lo, &hi, &tx);
        size_t a = (size_t)lo * (size_t)c, b = (size_t)hi * (size_t)c;
        for (int k = 0; k < c; k++) {
            float top = r0[a + k] + (r0[b + k] - r0[a + k]) * tx;
            float bot = r1[a + k] + (r1[b + k] - r1[a + k]) * tx;
            out[(size_t)ox * (size_t)c + k] = top + (bot - top) * ty;
        }
    }
}

void pd_resize_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw, int c)
{
    if (sh == dh && sw == dw) {
        memcpy(dst, src, (size_t)sh * (size_t)sw * (size_t)c * sizeof(float));
        return;
    }
    size_t row = (size_t)sw * (size_t)c;
    for (int oy = 0; oy < dh; oy++) {
        int lo, hi;
        float ty;
        pd_lerp_weight(oy, dh, sh, &lo, &hi, &ty);
        pd_resize_row(src + (size_t)lo * row, src + (size_t)hi * row, ty, sw,
                      dst + (size_t)oy * (size_t)dw * (size_t)c, dw, c);
    }
}

/* Convert one pixel's channels from sc to dc. */
static void convert_px(const float *s, int sc, float *d, int dc)
{
    float g, r, gg, b, a = 1.0f;
    if (sc == 1 || sc == 2) {
        g = s[0];
        r = gg = b = g;
        if (sc == 2) a = s[1];
    } else {
        r = s[0];
        gg = s[1];
        b = s[2];
        if (sc == 4) a = s[3];
        g = 0.2989f * r + 0.5870f * gg + 0.1140f * b;
    }
    switch (dc) {
    case 1: d[0] = g; break;
    case 2: d[0] = g; d[1] = a; break;
    case 3: d[0] = r; d[1] = gg; d[2] = b; break;
    default: d[0] = r; d[1] = gg; d[2] = b; d[3] = a; break;
    }
}

int pd_reshape(pd_dataset *d, int h, int w, int c, char *err)
{
    if (!d) return pt_seterr(err, PT_ERR_INVAL, "pd_reshape: NULL dataset");
    if (h <= 0 || w <= 0 || h > 16384 || w > 16384)
        return pt_seterr(err, PT_ERR_INVAL, "invalid target size %dx%d", h, w);
    if (c != 1 && c != 3 && c != 4)
        return pt_seterr(err, PT_ERR_INVAL, "invalid channel count %d (use 1, 3 or 4)", c);
    if (h == d->h && w == d->w && c == d->c) return PT_OK;
    size_t nper = (size_t)h * (size_t)w * (size_t)c;
    if (d->n > PD_MAX_FLOATS / nper)
        return pt_seterr(err, PT_ERR_RANGE, "dataset too large after resizing to %dx%dx%d", h, w,
                         c);
    float *nx = malloc((d->n ? d->n : 1) * nper * sizeof(float));
    /* scratch: one example after channel conversion at the source size */
    size_t spix = (size_t)d->h * (size_t)d->w;
    float *tmp = c != d->c ? malloc(spix * (size_t)c * sizeof(float)) : NULL;
    if (!nx || (c != d->c && !tmp)) {
        free(nx);
        free(tmp);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory resizing dataset");
    }
    size_t oper = pd_example_floats(d);
    for (size_t i = 0; i < d->n; i++) {
        const float *s = d->x + i * oper;
        if (tmp) {
            for (size_t p = 0; p < spix; p++)
                convert_px(s + p * (size_t)d->c, d->c, tmp + p * (size_t)c, c);
            s = tmp;
        }
        pd_resize_bilinear(s, d->h, d->w, nx + i * nper, h, w, c);
    }
    free(tmp);
    free(d->x);
    d->x = nx;
    d->h = h;
    d->w = w;
    d->c = c;
    return PT_OK;
}

int pd_random_rows(size_t n, size_t keep, uint64_t seed, size_t **rows, size_t *nrows)
{
    size_t *perm = malloc((n ? n : 1) * sizeof *perm);
    unsigned char *mark = calloc(n ? n : 1, 1);
    *rows = NULL;
    *nrows = 0;
    if (!perm || !mark) {
        free(perm);
        free(mark);
        return PT_ERR_NOMEM;
    }
    if (keep > n) keep = n;
    pd_rng r;
    pd_rng_seed(&r, seed ^ 0x6b6565702d726e64ULL);
    for (size_t i = 0; i < n; i++) perm[i] = i;
    /* partial Fisher-Yates: the first `keep` entries are a uniform sample */
    for (size_t i = 0; i < keep; i++) {
        size_t j = i + (size_t)pd_rng_below(&r, n - i);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        mark[perm[i]] = 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) /* in original order */
        if (mark[i]) perm[o++] = i;
    free(mark);
    *rows = perm;
    *nrows = keep;
    return PT_OK;
}
