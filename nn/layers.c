/*
 * layers.c - forward and backward passes of every layer type, on a batch of
 * NHWC images. Convolution is im2col + GEMM with the HWIO kernel as the
 * right-hand side; gradients accumulate into the model's flat gradient.
 */
#include "nn_int.h"

#include <math.h>
#include <string.h>

static int conv_is_direct(const nn_layer *l)
{
    return l->kh == 1 && l->kw == 1 && l->sh == 1 && l->sw == 1 && l->pt == 0 && l->pl == 0;
}

/* Rows x (kh*kw*ic) patch matrix of nb images. */
static void im2col(const nn_layer *l, int nb, const float *x, float *col)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw, ih = l->ih;
    const size_t rowlen = (size_t)kw * ic;
    float *d = col;
    for (int n = 0; n < nb; n++) {
        const float *img = x + (size_t)n * l->isz;
        for (int oy = 0; oy < l->oh; oy++) {
            for (int ox = 0; ox < l->ow; ox++) {
                const int ix0 = ox * l->sw - l->pl;
                for (int ky = 0; ky < l->kh; ky++, d += rowlen) {
                    const int iy = oy * l->sh - l->pt + ky;
                    if (iy < 0 || iy >= ih) {
                        memset(d, 0, rowlen * sizeof(float));
                        continue;
                    }
                    const float *s = img + ((size_t)iy * iw) * ic;
                    if (ix0 >= 0 && ix0 + kw <= iw) {
                        memcpy(d, s + (size_t)ix0 * ic, rowlen * sizeof(float));
                    } else {
                        for (int kx = 0; kx < kw; kx++) {
                            int ix = ix0 + kx;
                            if (ix < 0 || ix >= iw) memset(d + kx * ic, 0, ic * sizeof(float));
                            else memcpy(d + kx * ic, s + (size_t)ix * ic, ic * sizeof(float));
                        }
                    }
                }
            }
        }
    }
}

/* Scatter-add the patch-matrix gradient back into dx (zeroed by the caller). */
static void col2im(const nn_layer *l, int nb, const float *col, float *dx)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw, ih = l->ih;
    const size_t rowlen = (size_t)kw * ic;
    const float *d = col;
    for (int n = 0; n < nb; n++) {
        float *img = dx + (size_t)n * l->isz;
        for (int oy = 0; oy < l->oh; oy++) {
            for (int ox = 0; ox < l->ow; ox++) {
                const int ix0 = ox * l->sw - l->pl;
                for (int ky = 0; ky < l->kh; ky++, d += rowlen) {
                    const int iy = oy * l->sh - l->pt + ky;
                    if (iy < 0 || iy >= ih) continue;
                    float *s = img + ((size_t)iy * iw) * ic;
                    for (int kx = 0; kx < kw; kx++) {
                        int ix = ix0 + kx;
                        if (ix < 0 || ix >= iw) continue;
                        float *t = s + (size_t)ix * ic;
                        const float *g = d + kx * ic;
                        for (int c = 0; c < ic; c++) t[c] += g[c];
                    }
                }
            }
        }
    }
}

static void bias_act(float *y, size_t rows, int oc, const float *b, int act)
{
    for (size_t r = 0; r < rows; r++) {
        float *p = y + r * oc;
        if (act == NN_ACT_RELU) {
            for (int c = 0; c < oc; c++) {
                float v = p[c] + b[c];
                p[c] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int c = 0; c < oc; c++) p[c] += b[c];
        }
        if (act == NN_ACT_SOFTMAX) {
            float mx = p[0];
            for (int c = 1; c < oc; c++) mx = p[c] > mx ? p[c] : mx;
            float s = 0.0f;
            for (int c = 0; c < oc; c++) {
                p[c] = expf(p[c] - mx);
                s += p[c];
            }
            float inv = 1.0f / s;
            for (int c = 0; c < oc; c++) p[c] *= inv;
        }
    }
}

/* gy <- d/d(pre-activation) given the activation's output y. */
static void act_backward(float *gy, const float *y, size_t rows, int oc, int act)
{
    size_t n = rows * (size_t)oc;
    if (act == NN_ACT_RELU) {
        for (size_t i = 0; i < n; i++)
            if (!(y[i] > 0.0f)) gy[i] = 0.0f;
    } else if (act == NN_ACT_SOFTMAX) {
        for (size_t r = 0; r < rows; r++) {
            float *g = gy + r * oc;
            const float *p = y + r * oc;
            float s = 0.0f;
            for (int c = 0; c < oc; c++) s += g[c] * p[c];
            for (int c = 0; c < oc; c++) g[c] = p[c] * (g[c] - s);
        }
    }
}

static void col_sums(float *db, const float *gy, size_t rows, int oc)
{
    for (size_t r = 0; r < rows; r++) {
        const float *g = gy + r * oc;
        for (int c = 0; c < oc; c++) db[c] += g[c];
    }
}

/* ---- conv ------------------------------------------------------------------ */
static void conv_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y)
{
    const int K = l->kh * l->kw * l->ic;
    const size_t pix = (size_t)l->oh * l->ow;
    const float *W = m->w + l->woff, *B = m->w + l->boff;
    int chunk = l->chunk > 0 ? l->chunk : 1;
    for (int n0 = 0; n0 < b; n0 += chunk) {
        int nb = b - n0 < chunk ? b - n0 : chunk;
        const float *xs = x + (size_t)n0 * l->isz;
        float *ys = y + (size_t)n0 * l->osz;
        const float *A = xs;
        if (!conv_is_direct(l)) {
            im2col(l, nb, xs, m->ws);
            A = m->ws;
        }
        int rows = (int)(nb * pix);
        nn_sgemm(m->backend, 0, 0, rows, l->oc, K, 1.0f, A, K, W, l->oc, 0.0f, ys, l->oc);
        bias_act(ys, (size_t)rows, l->oc, B, l->act);
    }
}

static void conv_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                          float *gy, float *dx)
{
    const int K = l->kh * l->kw * l->ic;
    const size_t pix = (size_t)l->oh * l->ow;
    const float *W = m->w + l->woff;
    float *dW = m->g + l->woff, *dB = m->g + l->boff;
    act_backward(gy, y, (size_t)b * pix, l->oc, l->act);
    col_sums(dB, gy, (size_t)b * pix, l->oc);
    int chunk = l->chunk > 0 ? l->chunk : 1;
    int direct = conv_is_direct(l);
    for (int n0 = 0; n0 < b; n0 += chunk) {
        int nb = b - n0 < chunk ? b - n0 : chunk;
        const float *xs = x + (size_t)n0 * l->isz;
        float *gs = gy + (size_t)n0 * l->osz;
        int rows = (int)(nb * pix);
        const float *A = xs;
        if (!direct) {
            im2col(l, nb, xs, m->ws);
            A = m->ws;
        }
        nn_sgemm(m->backend, 1, 0, K, l->oc, rows, 1.0f, A, K, gs, l->oc, 1.0f, dW, l->oc);
        if (dx) {
            float *dxs = dx + (size_t)n0 * l->isz;
            if (direct) {
                nn_sgemm(m->backend, 0, 1, rows, K, l->oc, 1.0f, gs, l->oc, W, l->oc, 0.0f, dxs,
                         K);
            } else {
                nn_sgemm(m->backend, 0, 1, rows, K, l->oc, 1.0f, gs, l->oc, W, l->oc, 0.0f,
                         m->ws2, K);
                memset(dxs, 0, (size_t)nb * l->isz * sizeof(float));
                col2im(l, nb, m->ws2, dxs);
            }
        }
    }
}

/* ---- max pool ------------------------------------------------------------- */
static void pool_forward(nn_layer *l, int b, const float *x, float *y, int32_t *am)
{
    const int c = l->ic;
    for (int n = 0; n < b; n++) {
        const float *img = x + (size_t)n * l->isz;
        float *o = y + (size_t)n * l->osz;
        int32_t *a = am + (size_t)n * l->osz;
        for (int oy = 0; oy < l->oh; oy++) {
            for (int ox = 0; ox < l->ow; ox++, o += c, a += c) {
                int base = ((oy * l->sh) * l->iw + ox * l->sw) * c;
                for (int k = 0; k < c; k++) {
                    o[k] = img[base + k];
                    a[k] = base + k;
                }
                for (int ky = 0; ky < l->kh; ky++) {
                    for (int kx = ky ? 0 : 1; kx < l->kw; kx++) {
                        int idx = base + (ky * l->iw + kx) * c;
                        const float *p = img + idx;
                        for (int k = 0; k < c; k++) {
                            if (p[k] > o[k]) {
                                o[k] = p[k];
                                a[k] = idx + k;
                            }
                        }
                    }
                }
            }
        }
    }
}

static void pool_backward(nn_layer *l, int b, const float *gy, const int32_t *am, float *dx)
{
    memset(dx, 0, (size_t)b * l->isz * sizeof(float));
    for (int n = 0; n < b; n++) {
        float *d = dx + (size_t)n * l->isz;
        const float *g = gy + (size_t)n * l->osz;
        const int32_t *a = am + (size_t)n * l->osz;
        for (size_t i = 0; i < l->osz; i++) d[a[i]] += g[i];
    }
}

/* ---- dense ---------------------------------------------------------------- */
static void dense_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y)
{
    int in = (int)l->isz;
    nn_sgemm(m->backend, 0, 0, b, l->oc, in, 1.0f, x, in, m->w + l->woff, l->oc, 0.0f, y, l->oc);
    bias_act(y, (size_t)b, l->oc, m->w + l->boff, l->act);
}

static void dense_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                           float *gy, float *dx)
{
    int in = (int)l->isz;
    act_backward(gy, y, (size_t)b, l->oc, l->act);
    col_sums(m->g + l->boff, gy, (size_t)b, l->oc);
    nn_sgemm(m->backend, 1, 0, in, l->oc, b, 1.0f, x, in, gy, l->oc, 1.0f, m->g + l->woff,
             l->oc);
    if (dx)
        nn_sgemm(m->backend, 0, 1, b, in, l->oc, 1.0f, gy, l->oc, m->w + l->woff, l->oc, 0.0f,
                 dx, in);
}

/* ---- dispatch ------------------------------------------------------------- */
void nn_layer_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y, int train)
{
    size_t n = (size_t)b * l->osz;
    switch (l->type) {
    case NN_CONV: conv_forward(m, l, b, x, y); break;
    case NN_POOL: pool_forward(l, b, x, y, l->argmax); break;
    case NN_DENSE: dense_forward(m, l, b, x, y); break;
    case NN_RELU:
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case NN_SOFTMAX: {
        if (y != x) memcpy(y, x, n * sizeof(float));
        for (int r = 0; r < b; r++) {
            float *p = y + (size_t)r * l->osz;
            int oc = (int)l->osz;
            float mx = p[0], s = 0.0f;
            for (int c = 1; c < oc; c++) mx = p[c] > mx ? p[c] : mx;
            for (int c = 0; c < oc; c++) {
                p[c] = expf(p[c] - mx);
                s += p[c];
            }
            for (int c = 0; c < oc; c++) p[c] /= s;
        }
        break;
    }
    case NN_FLATTEN:
        if (y != x) memcpy(y, x, n * sizeof(float));
        break;
    case NN_DROPOUT:
        if (train && l->rate > 0.0f) {
            float keep = 1.0f / (1.0f - l->rate);
            for (size_t i = 0; i < n; i++) {
                l->mask[i] = nn_rng_uniform(&m->drop_rng) < l->rate ? 0.0f : keep;
                y[i] = x[i] * l->mask[i];
            }
        } else {
            if (l->mask)
                for (size_t i = 0; i < n; i++) l->mask[i] = 1.0f;
            if (y != x) memcpy(y, x, n * sizeof(float));
        }
        break;
    }
}

void nn_layer_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                       float *gy, float *dx)
{
    size_t n = (size_t)b * l->osz;
    switch (l->type) {
    case NN_CONV: conv_backward(m, l, b, x, y, gy, dx); break;
    case NN_POOL:
        if (dx) pool_backward(l, b, gy, l->argmax, dx);
        break;
    case NN_DENSE: dense_backward(m, l, b, x, y, gy, dx); break;
    case NN_RELU:
        if (dx)
            for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? gy[i] : 0.0f;
        break;
    case NN_SOFTMAX:
        act_backward(gy, y, (size_t)b, (int)l->osz, NN_ACT_SOFTMAX);
        if (dx && dx != gy) memcpy(dx, gy, n * sizeof(float));
        break;
    case NN_FLATTEN:
        if (dx && dx != gy) memcpy(dx, gy, n * sizeof(float));
        break;
    case NN_DROPOUT:
        if (dx) {
            if (l->mask)
                for (size_t i = 0; i < n; i++) dx[i] = gy[i] * l->mask[i];
            else if (dx != gy)
                memcpy(dx, gy, n * sizeof(float));
        }
        break;
    }
}
