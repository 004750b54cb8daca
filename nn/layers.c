/*
 * layers.c - forward and backward passes of every layer type, on a batch of
 * NHWC images. Convolution is im2col + GEMM with the HWIO kernel as the
 * right-hand side; gradients accumulate into the model's flat gradient.
 */
#include "nn_int.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static int conv_is_direct(const nn_layer *l)
{
    return l->kh == 1 && l->kw == 1 && l->sh == 1 && l->sw == 1 && l->pt == 0 && l->pl == 0;
}

/* Patch rows are short (9 to a few hundred floats): an inline copy beats a
 * memcpy call. Vector-extension copies take the width of the clone they are
 * inlined into (NN_CLONES: 16-byte moves by default, 32 with AVX2, 64 with
 * AVX-512). */
typedef float nn_v16f __attribute__((vector_size(64), aligned(4), may_alias));
typedef float nn_v4f __attribute__((vector_size(16), aligned(4), may_alias));

static inline void copy_row(float *restrict d, const float *restrict s, size_t n)
{
    size_t j = 0;
    for (; j + 16 <= n; j += 16) *(nn_v16f *)(d + j) = *(const nn_v16f *)(s + j);
    for (; j + 4 <= n; j += 4) *(nn_v4f *)(d + j) = *(const nn_v4f *)(s + j);
    /* at most 3 left: straight-line, or GCC turns a loop into a memmove call */
    if (j < n) d[j] = s[j];
    if (j + 1 < n) d[j + 1] = s[j + 1];
    if (j + 2 < n) d[j + 2] = s[j + 2];
}

/* One kernel row of one patch: the kw*ic values of image row s (iw pixels of
 * ic) from column ix0 on, zeros outside the row. */
static inline void get_patch(const nn_layer *l, const float *s, int ix0, float *d)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw;
    if (ix0 >= 0 && ix0 + kw <= iw) {
        copy_row(d, s + (size_t)ix0 * ic, (size_t)kw * ic);
        return;
    }
    for (int kx = 0; kx < kw; kx++) {
        int ix = ix0 + kx;
        if (ix < 0 || ix >= iw) memset(d + kx * ic, 0, ic * sizeof(float));
        else memcpy(d + kx * ic, s + (size_t)ix * ic, ic * sizeof(float));
    }
}

/* Its reverse: image row s += the kernel-row gradient d (what falls outside
 * the row is dropped). */
static inline void add_patch(const nn_layer *l, float *s, int ix0, const float *restrict d)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw;
    if (ix0 >= 0 && ix0 + kw <= iw) {
        float *restrict t = s + (size_t)ix0 * ic;
        for (size_t j = 0; j < (size_t)kw * ic; j++) t[j] += d[j];
        return;
    }
    for (int kx = 0; kx < kw; kx++) {
        int ix = ix0 + kx;
        if (ix < 0 || ix >= iw) continue;
        for (int c = 0; c < ic; c++) s[(size_t)ix * ic + c] += d[kx * ic + c];
    }
}

/* Patch matrix rows [r0, r1) of a batch (row r = image r / pix, output pixel
 * r % pix), each kh*kw*ic floats. x is the batch's first image. */
NN_CLONES static void im2col(const nn_layer *l, const float *x, size_t r0, size_t r1, float *col)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw, ih = l->ih, ow = l->ow;
    const size_t rowlen = (size_t)kw * ic, pix = (size_t)l->oh * ow;
    size_t n = r0 / pix, p = r0 % pix;
    int oy = (int)(p / ow), ox = (int)(p % ow);
    const float *img = x + n * l->isz;
    float *d = col;
    for (size_t r = r0; r < r1; r++) {
        const int ix0 = ox * l->sw - l->pl;
        for (int ky = 0; ky < l->kh; ky++, d += rowlen) {
            const int iy = oy * l->sh - l->pt + ky;
            if (iy < 0 || iy >= ih) {
                memset(d, 0, rowlen * sizeof(float));
                continue;
            }
            get_patch(l, img + ((size_t)iy * iw) * ic, ix0, d);
        }
        if (++ox == ow) {
            ox = 0;
            if (++oy == l->oh) {
                oy = 0;
                img += l->isz;
            }
        }
    }
}

/* Scatter-add patch-matrix gradient rows [r0, r1) into dx (the batch's first
 * image; cleared by the caller). */
NN_CLONES static void col2im(const nn_layer *l, const float *col, size_t r0, size_t r1, float *dx)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw, ih = l->ih, ow = l->ow;
    const size_t rowlen = (size_t)kw * ic, pix = (size_t)l->oh * ow;
    size_t n = r0 / pix, p = r0 % pix;
    int oy = (int)(p / ow), ox = (int)(p % ow);
    float *img = dx + n * l->isz;
    const float *d = col;
    for (size_t r = r0; r < r1; r++) {
        const int ix0 = ox * l->sw - l->pl;
        for (int ky = 0; ky < l->kh; ky++, d += rowlen) {
            const int iy = oy * l->sh - l->pt + ky;
            if (iy < 0 || iy >= ih) continue;
            add_patch(l, img + ((size_t)iy * iw) * ic, ix0, d);
        }
        if (++ox == ow) {
            ox = 0;
            if (++oy == l->oh) {
                oy = 0;
                img += l->isz;
            }
        }
    }
}

static void bias_act(float *restrict y, size_t rows, int oc, const float *restrict b, int act)
{
    for (size_t r = 0; r < rows; r++) {
        float *restrict p = y + r * oc;
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
static void act_backward(float *restrict gy, const float *restrict y, size_t rows, int oc,
                         int act)
{
    size_t n = rows * (size_t)oc;
    if (act == NN_ACT_RELU) {
        for (size_t i = 0; i < n; i++) gy[i] = y[i] > 0.0f ? gy[i] : 0.0f;
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
/* Work is split in chunks of l->chunk images; thread t takes chunks t, t+T, ...
 * with its own workspace and a single-threaded GEMM. */
typedef struct conv_task {
    pnn_model *m;
    nn_layer *l;
    int b;
    const float *x, *y;
    float *out, *gy, *dx;
    size_t group;       /* images per work unit */
    atomic_size_t next; /* next work unit: threads take units dynamically */
} conv_task;

/* Images per work unit: as many as fit one row block, but at least ~8 units
 * per batch so a thread slowed down by other load is helped by the others.
 * A unit is never split across threads (col2im of one image is not shared).
 * Weight gradients are accumulated per unit and summed in unit order, so the
 * result does not depend on the thread count or on which thread ran what. */
static size_t group_size(const nn_layer *l, int b)
{
    size_t pix = (size_t)l->oh * l->ow, chunk = l->chunk > 0 ? (size_t)l->chunk : 1;
    size_t k = pix <= chunk ? chunk / pix : 1, cap = ((size_t)b + 7) / 8;
    if (k > cap) k = cap;
    return k ? k : 1;
}

/* Threads take units of t->group images and walk their output rows in blocks of
 * l->chunk rows, keeping each block's patch matrix and GEMM operands
 * cache-resident. */
static int next_unit(conv_task *t, size_t *r0, size_t *r1, size_t *n0, size_t *n1)
{
    const size_t pix = (size_t)t->l->oh * t->l->ow;
    size_t u = atomic_fetch_add(&t->next, 1);
    *n0 = u * t->group;
    if (*n0 >= (size_t)t->b) return 0;
    *n1 = *n0 + t->group < (size_t)t->b ? *n0 + t->group : (size_t)t->b;
    *r0 = *n0 * pix;
    *r1 = *n1 * pix;
    return 1;
}

static void conv_forward_task(void *arg, int tid, int nt)
{
    conv_task *t = arg;
    pnn_model *m = t->m;
    nn_layer *l = t->l;
    const int K = l->kh * l->kw * l->ic;
    const float *W = m->w + l->woff, *B = m->w + l->boff;
    float *ws = m->ws + (size_t)tid * m->ws_n;
    size_t rb = l->chunk > 0 ? (size_t)l->chunk : 1, r0, r1, n0, n1;
    (void)nt;
    while (next_unit(t, &r0, &r1, &n0, &n1)) {
        for (size_t r = r0; r < r1; r += rb) {
            size_t re = r + rb < r1 ? r + rb : r1;
            int rows = (int)(re - r);
            const float *A = t->x + r * K; /* direct: pixels are the rows */
            if (!conv_is_direct(l)) {
                im2col(l, t->x, r, re, ws);
                A = ws;
            }
            float *ys = t->out + r * l->oc;
            pnn__sgemm(m->backend, 0, 0, rows, l->oc, K, 1.0f, A, K, W, l->oc, 0.0f, ys, l->oc);
            bias_act(ys, (size_t)rows, l->oc, B, l->act);
        }
    }
}

static void conv_backward_task(void *arg, int tid, int nt)
{
    conv_task *t = arg;
    pnn_model *m = t->m;
    nn_layer *l = t->l;
    const int K = l->kh * l->kw * l->ic;
    const float *W = m->w + l->woff;
    float *ws = m->ws + (size_t)tid * m->ws_n, *ws2 = m->ws2 + (size_t)tid * m->ws_n;
    int direct = conv_is_direct(l);
    size_t rb = l->chunk > 0 ? (size_t)l->chunk : 1, r0, r1, n0, n1;
    (void)nt;
    while (next_unit(t, &r0, &r1, &n0, &n1)) {
        float *dW = m->gpriv + n0 / t->group * m->gpriv_n, *dB = dW + l->wn;
        memset(dW, 0, (l->wn + l->bn) * sizeof(float));
        if (t->dx && !direct) memset(t->dx + n0 * l->isz, 0, (n1 - n0) * l->isz * sizeof(float));
        for (size_t r = r0; r < r1; r += rb) {
            size_t re = r + rb < r1 ? r + rb : r1;
            int rows = (int)(re - r);
            float *gs = t->gy + r * l->oc;
            if (!l->relu_masked)
                act_backward(gs, t->y + r * l->oc, (size_t)rows, l->oc, l->act);
            col_sums(dB, gs, (size_t)rows, l->oc);
            const float *A = t->x + r * K;
            if (!direct) {
                im2col(l, t->x, r, re, ws);
                A = ws;
            }
            pnn__sgemm(m->backend, 1, 0, K, l->oc, rows, 1.0f, A, K, gs, l->oc, 1.0f, dW, l->oc);
            if (t->dx) {
                if (direct) {
                    pnn__sgemm(m->backend, 0, 1, rows, K, l->oc, 1.0f, gs, l->oc, W, l->oc, 0.0f,
                             t->dx + r * K, K);
                } else {
                    pnn__sgemm(m->backend, 0, 1, rows, K, l->oc, 1.0f, gs, l->oc, W, l->oc, 0.0f,
                             ws2, K);
                    col2im(l, ws2, r, re, t->dx);
                }
            }
        }
    }
}

/* Sum the per-unit weight gradients into the model's, in unit order. */
static void reduce_units(pnn_model *m, const nn_layer *l, int b, size_t group)
{
    size_t units = ((size_t)b + group - 1) / group;
    float *restrict g = m->g + l->woff; /* kernel and bias are adjacent */
    for (size_t u = 0; u < units; u++) {
        const float *restrict p = m->gpriv + u * m->gpriv_n;
        for (size_t i = 0; i < l->wn + l->bn; i++) g[i] += p[i];
    }
}

static void conv_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y)
{
    conv_task t = {m, l, b, x, NULL, y, NULL, NULL, group_size(l, b), 0};
    pnn__blas_threads(1);
    pnn__parallel(m, conv_forward_task, &t);
}

static void conv_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                          float *gy, float *dx)
{
    conv_task t = {m, l, b, x, y, NULL, gy, dx, group_size(l, b), 0};
    pnn__blas_threads(1);
    pnn__parallel(m, conv_backward_task, &t);
    reduce_units(m, l, b, t.group);
}

/* ---- row-shift patches ------------------------------------------------------
 * For a run of whole output rows of one image with vertical stride 1, the patch
 * matrix of kernel row ky is the matrix of kernel row 0 shifted down by ky
 * output rows. So only Q[(y, ox), (kx, c)] = x[y, ox*sw + kx - pl, c] is built
 * (kh times smaller than im2col) and the GEMM is split into kh GEMMs of depth
 * kw*ic over shifted views of Q; the input gradient is gathered the same way. */
static int use_rowshift(const nn_layer *l)
{
    return l->rowshift && l->sh == 1 && l->kh > 1 && l->kw * l->ic >= 8;
}

/* The patches of input row y of img (zeros outside the image), one per output
 * column ox, at d + ox * stride: Q[(y, ox), (kx, c)] = x[y, ox*sw + kx - pl, c]. */
NN_CLONES static void row_patches(const nn_layer *l, const float *img, int y, float *d, size_t stride)
{
    const int ic = l->ic, kw = l->kw, iw = l->iw, ow = l->ow;
    const size_t KW = (size_t)kw * ic;
    if (y < 0 || y >= l->ih) {
        for (int ox = 0; ox < ow; ox++) memset(d + ox * stride, 0, KW * sizeof(float));
        return;
    }
    const float *s = img + (size_t)y * iw * ic;
    for (int ox = 0; ox < ow; ox++, d += stride) get_patch(l, s, ox * l->sw - l->pl, d);
}

/* dimg (one image) += the patch gradients of input row y (see row_patches). */
NN_CLONES static void row_patches_add(const nn_layer *l, const float *d, int y, float *dimg, size_t stride)
{
    if (y < 0 || y >= l->ih) return;
    float *s = dimg + (size_t)y * l->iw * l->ic;
    for (int ox = 0; ox < l->ow; ox++, d += stride) add_patch(l, s, ox * l->sw - l->pl, d);
}

/* Q for input rows [y0, y0 + ny) of img (rows outside the image are zeros). */
static void im2row(const nn_layer *l, const float *img, int y0, int ny, float *Q)
{
    const size_t KW = (size_t)l->kw * l->ic;
    for (int yy = 0; yy < ny; yy++) row_patches(l, img, y0 + yy, Q + (size_t)yy * l->ow * KW, KW);
}

/* dx (one image) += the gradient dQ of Q for input rows [y0, y0 + ny). */
static void row2im(const nn_layer *l, const float *dQ, int y0, int ny, float *dimg)
{
    const size_t KW = (size_t)l->kw * l->ic;
    for (int yy = 0; yy < ny; yy++)
        row_patches_add(l, dQ + (size_t)yy * l->ow * KW, y0 + yy, dimg, KW);
}

/* ---- row pairs ---------------------------------------------------------------
 * A conv with few values per kernel row (kw*ic small, e.g. a first layer on
 * RGB) makes thin GEMMs (depth kw*ic, width oc) that run far below sgemm's
 * speed. Before a 2x2 pool its output rows come in pairs anyway, so the GEMM
 * computes both rows of a pair at once: patch rows P[(j, ox)] hold input rows
 * y0+2j and y0+2j+1 (2*kw*ic values), and pair j of outputs is
 *   sum_{i < J} P[j + i] . E_i,  E_i[(r, q), (t, o)] = W[2i + r - t][q][o]
 * (zero when the kernel row is outside 0..kh-1), J = kh/2 + 1 GEMMs of depth
 * 2*kw*ic and width 2*oc instead of kh of depth kw*ic and width oc: a third
 * more multiply-adds (the zero blocks) at over twice sgemm's speed. The
 * output block is laid out [pair][ox][top oc | bottom oc]. */
static int use_pairs(const nn_layer *l)
{
    return l->pairs && l->fuse_pool && l->sh == 1 && l->kh > 1 && l->kw * l->ic < 32;
}

static int pair_count(const nn_layer *l)
{
    return l->kh / 2 + 1;
}

/* Pooled rows per block when a fused conv's images do not fit one block. */
static int pooled_rows_per_block(const nn_layer *c)
{
    size_t chunk = c->chunk > 0 ? (size_t)c->chunk : 1, step = chunk / (2 * (size_t)c->ow);
    return step < 1 ? 1 : (int)step;
}

size_t pnn__pairs_need(const nn_layer *l, size_t *e_floats)
{
    *e_floats = 0;
    if (!use_pairs(l)) return 0;
    const size_t KW = (size_t)l->kw * l->ic, J = (size_t)pair_count(l), ow = (size_t)l->ow;
    const size_t step = (size_t)pooled_rows_per_block(l);
    *e_floats = J * 4 * KW * (size_t)l->oc;
    return (step + J - 1) * ow * 2 * KW;
}

/* E_0 .. E_{J-1} from the layer's kernel, each (2 KW) x (2 oc). */
static void pairs_expand(const pnn_model *m, const nn_layer *l, float *E)
{
    const int KW = l->kw * l->ic, oc = l->oc, J = pair_count(l);
    const float *W = m->w + l->woff;
    memset(E, 0, (size_t)J * 4 * KW * oc * sizeof(float));
    for (int i = 0; i < J; i++)
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++) {
                int ky = 2 * i + r - t;
                if (ky < 0 || ky >= l->kh) continue;
                float *e = E + (size_t)i * 4 * KW * oc;
                for (int q = 0; q < KW; q++)
                    memcpy(e + ((size_t)r * KW + q) * 2 * oc + (size_t)t * oc,
                           W + ((size_t)ky * KW + q) * oc, (size_t)oc * sizeof(float));
            }
}

/* dW += the kernel gradient folded out of dE_0 .. dE_{J-1}. */
static void pairs_fold(const nn_layer *l, const float *dE, float *dW)
{
    const int KW = l->kw * l->ic, oc = l->oc, J = pair_count(l);
    for (int i = 0; i < J; i++)
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < 2; t++) {
                int ky = 2 * i + r - t;
                if (ky < 0 || ky >= l->kh) continue;
                const float *e = dE + (size_t)i * 4 * KW * oc;
                for (int q = 0; q < KW; q++) {
                    const float *restrict s = e + ((size_t)r * KW + q) * 2 * oc + (size_t)t * oc;
                    float *restrict d = dW + ((size_t)ky * KW + q) * oc;
                    for (int o = 0; o < oc; o++) d[o] += s[o];
                }
            }
}

/* P for pairs [0, np) starting at input row y0 of img. */
static void im2pair(const nn_layer *l, const float *img, int y0, int np, float *P)
{
    const size_t KW = (size_t)l->kw * l->ic, pr = (size_t)l->ow * 2 * KW;
    for (int j = 0; j < np; j++)
        for (int r = 0; r < 2; r++) row_patches(l, img, y0 + 2 * j + r, P + j * pr + r * KW, 2 * KW);
}

/* dx (one image) += the gradient dP of P. */
static void pair2im(const nn_layer *l, const float *dP, int y0, int np, float *dimg)
{
    const size_t KW = (size_t)l->kw * l->ic, pr = (size_t)l->ow * 2 * KW;
    for (int j = 0; j < np; j++)
        for (int r = 0; r < 2; r++)
            row_patches_add(l, dP + j * pr + r * KW, y0 + 2 * j + r, dimg, 2 * KW);
}

/* ---- fused Conv2D (+ReLU) + MaxPool2D 2x2/2 ------------------------------------
 * The conv output never goes to memory: each row block's GEMM result stays in a
 * per-thread scratch, gets bias and ReLU, and is pooled straight away; the
 * window winner (0..3) is kept as one byte. Backward rebuilds the conv output
 * gradient of a block from the pool gradient and the winners (zero where the
 * ReLU was off: the winner's value is the pooled value), then runs the usual
 * weight- and input-gradient GEMMs on it. */
typedef struct fused_task {
    pnn_model *m;
    nn_layer *c, *p;
    int b;
    const float *x, *gy; /* conv input; pool output gradient (backward) */
    float *dx;           /* conv input gradient (backward, may be NULL) */
    const float *E;      /* row pairs: the expanded kernels (see use_pairs), or NULL */
    size_t group;        /* images per work unit (see group_size) */
    atomic_size_t next;
} fused_task;

/* Work units of t->group images, taken dynamically; blocks: the unit's whole
 * images when they fit in l->chunk rows, else runs of pooled rows of one image.
 * clear_dx: zero the unit's dx images first. */
typedef void (*block_fn)(fused_task *t, int tid, size_t n, int nimg, int py0, int npy);

static void for_blocks(fused_task *t, int tid, block_fn fn, int clear_dx)
{
    const nn_layer *c = t->c, *p = t->p;
    size_t pix = (size_t)c->oh * c->ow, chunk = c->chunk > 0 ? (size_t)c->chunk : 1;
    for (;;) {
        size_t n0 = atomic_fetch_add(&t->next, 1) * t->group;
        if (n0 >= (size_t)t->b) return;
        size_t n1 = n0 + t->group < (size_t)t->b ? n0 + t->group : (size_t)t->b;
        if (clear_dx) memset(t->dx + n0 * c->isz, 0, (n1 - n0) * c->isz * sizeof(float));
        if (t->gy) /* backward: this unit's weight gradient */
            memset(t->m->gpriv + n0 / t->group * t->m->gpriv_n, 0,
                   (c->wn + c->bn) * sizeof(float));
        if (pix <= chunk) {
            fn(t, tid, n0, (int)(n1 - n0), 0, p->oh);
            continue;
        }
        const int step = pooled_rows_per_block(c);
        for (size_t n = n0; n < n1; n++)
            for (int py = 0; py < p->oh; py += step)
                fn(t, tid, n, 1, py, py + step <= p->oh ? step : p->oh - py);
    }
}

/* Where a block's conv outputs (forward) or their gradients (backward) of
 * pool window (py, px) of image j of the block lie: at
 * base + window_row(...) + px * w.step + w.d[0..3] (top-left, top-right,
 * bottom-left, bottom-right). Rows of width ow * oc, or with row pairs
 * [pair][ox][top oc | bottom oc]. */
typedef struct win_layout {
    size_t step, d[4];
} win_layout;

static win_layout window_layout(const nn_layer *c, int pairs)
{
    const size_t oc = (size_t)c->oc, rs = (size_t)c->ow * oc;
    win_layout w = {pairs ? 4 * oc : 2 * oc,
                    {0, pairs ? 2 * oc : oc, pairs ? oc : rs, pairs ? 3 * oc : rs + oc}};
    return w;
}

static size_t window_row(const nn_layer *c, int whole, int j, int py, int py0)
{
    const size_t pix = (size_t)c->oh * c->ow, rs = (size_t)c->ow * c->oc;
    return (whole ? (size_t)j * pix * c->oc : 0) + (size_t)(whole ? 2 * py : 2 * (py - py0)) * rs;
}

/* GEMM rows of a block: [r0, r0 + rows) of the batch's conv output. */
static void block_rows(const nn_layer *c, size_t n, int nimg, int py0, int npy, int whole,
                       size_t *r0, size_t *rows)
{
    size_t pix = (size_t)c->oh * c->ow;
    if (whole) {
        *r0 = n * pix;
        *rows = (size_t)nimg * pix;
    } else {
        *r0 = n * pix + (size_t)2 * py0 * c->ow;
        *rows = (size_t)2 * npy * c->ow;
    }
}

/* One 2x2 window row of oc channels: o = max of the four, code = the first
 * position holding it (0..3); then + bias and ReLU when bias is given. */
static inline void pool4_fwd(float *restrict o, uint8_t *restrict code, const float *restrict p0,
                             const float *restrict p1, const float *restrict p2,
                             const float *restrict p3, int oc, const float *restrict bias,
                             int relu)
{
    int k = 0;
#ifdef __SSE2__
    const __m128i one = _mm_set1_epi32(1), two = _mm_set1_epi32(2), three = _mm_set1_epi32(3);
    for (; k + 4 <= oc; k += 4) {
        __m128 v = _mm_loadu_ps(p0 + k), a = _mm_loadu_ps(p1 + k);
        __m128 q = _mm_cmpgt_ps(a, v);
        __m128i w = _mm_and_si128(_mm_castps_si128(q), one);
        v = _mm_or_ps(_mm_and_ps(q, a), _mm_andnot_ps(q, v));
        a = _mm_loadu_ps(p2 + k);
        q = _mm_cmpgt_ps(a, v);
        w = _mm_or_si128(_mm_and_si128(_mm_castps_si128(q), two),
                         _mm_andnot_si128(_mm_castps_si128(q), w));
        v = _mm_or_ps(_mm_and_ps(q, a), _mm_andnot_ps(q, v));
        a = _mm_loadu_ps(p3 + k);
        q = _mm_cmpgt_ps(a, v);
        w = _mm_or_si128(_mm_and_si128(_mm_castps_si128(q), three),
                         _mm_andnot_si128(_mm_castps_si128(q), w));
        v = _mm_or_ps(_mm_and_ps(q, a), _mm_andnot_ps(q, v));
        _mm_storeu_ps(o + k, v);
        w = _mm_packs_epi32(w, w);
        w = _mm_packus_epi16(w, w);
        int32_t c4 = _mm_cvtsi128_si32(w);
        memcpy(code + k, &c4, 4);
    }
#endif
    for (; k < oc; k++) {
        float v = p0[k];
        int w = 0;
        w = p1[k] > v ? 1 : w;
        v = p1[k] > v ? p1[k] : v;
        w = p2[k] > v ? 2 : w;
        v = p2[k] > v ? p2[k] : v;
        w = p3[k] > v ? 3 : w;
        v = p3[k] > v ? p3[k] : v;
        code[k] = (uint8_t)w;
        o[k] = v;
    }
    if (!bias) return;
    if (relu) {
        for (k = 0; k < oc; k++) {
            float v = o[k] + bias[k];
            o[k] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (k = 0; k < oc; k++) o[k] += bias[k];
    }
}

static void fused_fwd_block(fused_task *t, int tid, size_t n, int nimg, int py0, int npy)
{
    pnn_model *m = t->m;
    const nn_layer *c = t->c, *p = t->p;
    const int K = c->kh * c->kw * c->ic, oc = c->oc, ow = c->ow;
    const size_t pix = (size_t)c->oh * ow;
    int whole = pix <= (size_t)c->chunk;
    size_t r0, rows;
    block_rows(c, n, nimg, py0, npy, whole, &r0, &rows);
    float *ws = m->ws + (size_t)tid * m->ws_n, *C = m->cs + (size_t)tid * m->cs_n;
    const int pairs = !whole && t->E;
    if (pairs) {
        const int KW2 = 2 * c->kw * c->ic, J = pair_count(c);
        const size_t pr = (size_t)ow * KW2;
        im2pair(c, t->x + n * c->isz, 2 * py0 - c->pt, npy + J - 1, ws);
        for (int i = 0; i < J; i++)
            pnn__sgemm(m->backend, 0, 0, npy * ow, 2 * oc, KW2, 1.0f, ws + i * pr, KW2,
                     t->E + (size_t)i * KW2 * 2 * oc, 2 * oc, i ? 1.0f : 0.0f, C, 2 * oc);
    } else if (!whole && use_rowshift(c)) {
        const int KW = c->kw * c->ic, y0 = 2 * py0 - c->pt;
        im2row(c, t->x + n * c->isz, y0, 2 * npy + c->kh - 1, ws);
        for (int ky = 0; ky < c->kh; ky++)
            pnn__sgemm(m->backend, 0, 0, (int)rows, oc, KW, 1.0f, ws + (size_t)ky * ow * KW, KW,
                     m->w + c->woff + (size_t)ky * KW * oc, oc, ky ? 1.0f : 0.0f, C, oc);
    } else {
        const float *A = t->x + r0 * K;
        if (!conv_is_direct(c)) {
            im2col(c, t->x, r0, r0 + rows, ws);
            A = ws;
        }
        pnn__sgemm(m->backend, 0, 0, (int)rows, oc, K, 1.0f, A, K, m->w + c->woff, oc, 0.0f, C,
                 oc);
    }
    /* ReLU and linear: bias and activation after the pooling, on 4x fewer
     * values. Exact: adding a per-channel bias and the ReLU are monotonic, so
     * max(relu(a + b), ...) == relu(max(a, ...) + b) in floating point too. */
    const float *bias = m->w + c->boff;
    const int late = c->act != NN_ACT_SOFTMAX, relu = c->act == NN_ACT_RELU;
    if (!late) bias_act(C, rows, oc, bias, c->act);
    const win_layout w = window_layout(c, pairs);
    for (int j = 0; j < nimg; j++) {
        for (int py = py0; py < py0 + npy; py++) {
            const float *crow = C + window_row(c, whole, j, py, py0);
            size_t po = (n + j) * p->osz + (size_t)py * p->ow * oc;
            float *o = p->out + po;
            uint8_t *code = p->code + po;
            for (int px = 0; px < p->ow; px++, o += oc, code += oc) {
                const float *p0 = crow + px * w.step;
                pool4_fwd(o, code, p0, p0 + w.d[1], p0 + w.d[2], p0 + w.d[3], oc,
                          late ? bias : NULL, relu);
            }
        }
    }
}

static void fused_fwd_task(void *arg, int tid, int nt)
{
    (void)nt;
    for_blocks(arg, tid, fused_fwd_block, 0);
}

/* The conv output gradient of one window row from the pooled gradient g: the
 * winner gets g (0 where the ReLU was off: o, the pooled value, is 0), the
 * others 0; the bias gradient db sums what passed. */
static inline void pool4_bwd(float *restrict g0, float *restrict g1, float *restrict g2,
                             float *restrict g3, float *restrict db, const float *restrict g,
                             const float *restrict o, const uint8_t *restrict code, int oc,
                             int relu)
{
    int k = 0;
#ifdef __SSE2__
    const __m128 zero = _mm_setzero_ps();
    const __m128i z = _mm_setzero_si128(), one = _mm_set1_epi32(1), two = _mm_set1_epi32(2),
                  three = _mm_set1_epi32(3);
    for (; k + 4 <= oc; k += 4) {
        __m128 v = _mm_loadu_ps(g + k);
        if (relu) v = _mm_and_ps(v, _mm_cmpgt_ps(_mm_loadu_ps(o + k), zero));
        int32_t c4;
        memcpy(&c4, code + k, 4);
        __m128i w = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(c4), z), z);
        _mm_storeu_ps(g0 + k, _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(w, z)), v));
        _mm_storeu_ps(g1 + k, _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(w, one)), v));
        _mm_storeu_ps(g2 + k, _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(w, two)), v));
        _mm_storeu_ps(g3 + k, _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(w, three)), v));
        _mm_storeu_ps(db + k, _mm_add_ps(_mm_loadu_ps(db + k), v));
    }
#endif
    for (; k < oc; k++) {
        float v = !relu || o[k] > 0.0f ? g[k] : 0.0f;
        int w = code[k];
        g0[k] = w == 0 ? v : 0.0f;
        g1[k] = w == 1 ? v : 0.0f;
        g2[k] = w == 2 ? v : 0.0f;
        g3[k] = w == 3 ? v : 0.0f;
        db[k] += v;
    }
}

static void fused_bwd_block(fused_task *t, int tid, size_t n, int nimg, int py0, int npy)
{
    pnn_model *m = t->m;
    const nn_layer *c = t->c, *p = t->p;
    const int K = c->kh * c->kw * c->ic, oc = c->oc, ow = c->ow;
    const size_t pix = (size_t)c->oh * ow;
    int whole = pix <= (size_t)c->chunk;
    size_t r0, rows;
    block_rows(c, n, nimg, py0, npy, whole, &r0, &rows);
    float *ws = m->ws + (size_t)tid * m->ws_n, *ws2 = m->ws2 + (size_t)tid * m->ws_n;
    float *G = m->cs + (size_t)tid * m->cs_n;
    float *dW = m->gpriv + n / t->group * m->gpriv_n, *dB = dW + c->wn;
    /* every conv output of a window gets its value (the pooled gradient at
     * the winner, 0 elsewhere) unless the pool drops an odd last row/column */
    if (c->oh != 2 * p->oh || ow != 2 * p->ow) memset(G, 0, rows * oc * sizeof(float));
    const int relu = c->act == NN_ACT_RELU, pairs = !whole && t->E;
    const win_layout w = window_layout(c, pairs);
    for (int j = 0; j < nimg; j++) {
        for (int py = py0; py < py0 + npy; py++) {
            float *grow = G + window_row(c, whole, j, py, py0);
            size_t po = (n + j) * p->osz + (size_t)py * p->ow * oc;
            const float *g = t->gy + po, *o = p->out + po;
            const uint8_t *code = p->code + po;
            for (int px = 0; px < p->ow; px++, g += oc, o += oc, code += oc) {
                float *g0 = grow + px * w.step;
                pool4_bwd(g0, g0 + w.d[1], g0 + w.d[2], g0 + w.d[3], dB, g, o, code, oc, relu);
            }
        }
    }
    if (pairs) {
        const int KW2 = 2 * c->kw * c->ic, J = pair_count(c), y0 = 2 * py0 - c->pt;
        const size_t pr = (size_t)ow * KW2;
        float *dE = m->pde + (size_t)tid * m->pe_n;
        im2pair(c, t->x + n * c->isz, y0, npy + J - 1, ws);
        for (int i = 0; i < J; i++)
            pnn__sgemm(m->backend, 1, 0, KW2, 2 * oc, npy * ow, 1.0f, ws + i * pr, KW2, G,
                     2 * oc, 0.0f, dE + (size_t)i * KW2 * 2 * oc, 2 * oc);
        pairs_fold(c, dE, dW);
        if (t->dx) {
            memset(ws2, 0, (size_t)(npy + J - 1) * pr * sizeof(float));
            for (int i = 0; i < J; i++)
                pnn__sgemm(m->backend, 0, 1, npy * ow, KW2, 2 * oc, 1.0f, G, 2 * oc,
                         t->E + (size_t)i * KW2 * 2 * oc, 2 * oc, 1.0f, ws2 + i * pr, KW2);
            pair2im(c, ws2, y0, npy + J - 1, t->dx + n * c->isz);
        }
        return;
    }
    const float *W = m->w + c->woff;
    if (!whole && use_rowshift(c)) {
        const int KW = c->kw * c->ic, y0 = 2 * py0 - c->pt, ny = 2 * npy + c->kh - 1;
        im2row(c, t->x + n * c->isz, y0, ny, ws);
        for (int ky = 0; ky < c->kh; ky++)
            pnn__sgemm(m->backend, 1, 0, KW, oc, (int)rows, 1.0f, ws + (size_t)ky * ow * KW, KW, G,
                     oc, 1.0f, dW + (size_t)ky * KW * oc, oc);
        if (t->dx) {
            memset(ws2, 0, (size_t)ny * ow * KW * sizeof(float));
            for (int ky = 0; ky < c->kh; ky++)
                pnn__sgemm(m->backend, 0, 1, (int)rows, KW, oc, 1.0f, G, oc,
                         W + (size_t)ky * KW * oc, oc, 1.0f, ws2 + (size_t)ky * ow * KW, KW);
            row2im(c, ws2, y0, ny, t->dx + n * c->isz);
        }
        return;
    }
    const float *A = t->x + r0 * K;
    int direct = conv_is_direct(c);
    if (!direct) {
        im2col(c, t->x, r0, r0 + rows, ws);
        A = ws;
    }
    pnn__sgemm(m->backend, 1, 0, K, oc, (int)rows, 1.0f, A, K, G, oc, 1.0f, dW, oc);
    if (t->dx) {
        if (direct) {
            pnn__sgemm(m->backend, 0, 1, (int)rows, K, oc, 1.0f, G, oc, W, oc, 0.0f, t->dx + r0 * K,
                     K);
        } else {
            pnn__sgemm(m->backend, 0, 1, (int)rows, K, oc, 1.0f, G, oc, W, oc, 0.0f, ws2, K);
            col2im(c, ws2, r0, r0 + rows, t->dx);
        }
    }
}

static void fused_bwd_task(void *arg, int tid, int nt)
{
    fused_task *t = arg;
    const nn_layer *c = t->c;
    pnn_model *m = t->m;
    (void)nt;
    (void)tid;
    (void)m;
    /* col2im accumulates; a direct (1x1) conv writes every covered element, and
     * all of them are covered unless the pool drops an odd last row/column */
    int clear = t->dx && (!conv_is_direct(c) || c->oh != 2 * t->p->oh || c->ow != 2 * t->p->ow);
    for_blocks(t, tid, fused_bwd_block, clear);
}

void pnn__conv_pool_forward(pnn_model *m, nn_layer *c, nn_layer *p, int b, const float *x)
{
    fused_task t = {m, c, p, b, x, NULL, NULL, NULL, group_size(c, b), 0};
    if (use_pairs(c) && m->pe) {
        pairs_expand(m, c, m->pe);
        t.E = m->pe;
    }
    pnn__blas_threads(1);
    pnn__parallel(m, fused_fwd_task, &t);
}

void pnn__conv_pool_backward(pnn_model *m, nn_layer *c, nn_layer *p, int b, const float *x,
                           const float *gy, float *dx)
{
    fused_task t = {m, c, p, b, x, gy, dx, NULL, group_size(c, b), 0};
    if (use_pairs(c) && m->pe) {
        pairs_expand(m, c, m->pe);
        t.E = m->pe;
    }
    pnn__blas_threads(1);
    pnn__parallel(m, fused_bwd_task, &t);
    reduce_units(m, c, b, t.group);
}

/* ---- max pool ------------------------------------------------------------- */
/* Forward keeps only the maxima; backward finds each window's winner again
 * (the first element equal to the max, in window order). */
static void pool_forward_range(nn_layer *l, int n0, int n1, const float *x, float *y)
{
    const int c = l->ic;
    for (int n = n0; n < n1; n++) {
        const float *img = x + (size_t)n * l->isz;
        float *restrict o = y + (size_t)n * l->osz;
        for (int oy = 0; oy < l->oh; oy++) {
            for (int ox = 0; ox < l->ow; ox++, o += c) {
                const float *base = img + ((size_t)(oy * l->sh) * l->iw + ox * l->sw) * c;
                if (l->kh == 2 && l->kw == 2) {
                    const float *restrict p0 = base, *restrict p1 = base + c;
                    const float *restrict p2 = base + (size_t)l->iw * c, *restrict p3 = p2 + c;
                    for (int k = 0; k < c; k++) {
                        float m0 = p0[k] > p1[k] ? p0[k] : p1[k];
                        float m1 = p2[k] > p3[k] ? p2[k] : p3[k];
                        o[k] = m0 > m1 ? m0 : m1;
                    }
                    continue;
                }
                memcpy(o, base, (size_t)c * sizeof(float));
                for (int ky = 0; ky < l->kh; ky++) {
                    for (int kx = ky ? 0 : 1; kx < l->kw; kx++) {
                        const float *restrict p = base + ((size_t)ky * l->iw + kx) * c;
                        for (int k = 0; k < c; k++) o[k] = p[k] > o[k] ? p[k] : o[k];
                    }
                }
            }
        }
    }
}

static void pool_backward_range(nn_layer *l, int n0, int n1, const float *x, const float *y,
                                const float *gy, float *dx)
{
    const int c = l->ic;
    const size_t rowc = (size_t)l->iw * c;
    /* 2x2 stride-2 windows tile the input exactly when the sizes are even: every
     * dx element is then written once and needs no clearing */
    int tiled = l->kh == 2 && l->kw == 2 && l->sh == 2 && l->sw == 2 && l->ih == 2 * l->oh &&
                l->iw == 2 * l->ow;
    if (!tiled) memset(dx + (size_t)n0 * l->isz, 0, (size_t)(n1 - n0) * l->isz * sizeof(float));
    for (int n = n0; n < n1; n++) {
        const float *img = x + (size_t)n * l->isz;
        float *d = dx + (size_t)n * l->isz;
        const float *o = y + (size_t)n * l->osz, *g = gy + (size_t)n * l->osz;
        for (int oy = 0; oy < l->oh; oy++) {
            for (int ox = 0; ox < l->ow; ox++, o += c, g += c) {
                size_t base = ((size_t)(oy * l->sh) * l->iw + ox * l->sw) * c;
                if (l->kh == 2 && l->kw == 2 && l->sh == 2 && l->sw == 2) {
                    const float *restrict p0 = img + base, *restrict p1 = p0 + c;
                    const float *restrict p2 = p0 + rowc;
                    float *restrict d0 = d + base, *restrict d1 = d0 + c;
                    float *restrict d2 = d0 + rowc, *restrict d3 = d2 + c;
                    int k = 0;
#ifdef __SSE2__
                    for (; k + 4 <= c; k += 4) {
                        __m128 v = _mm_loadu_ps(o + k), r = _mm_loadu_ps(g + k);
                        if (l->relu_in) r = _mm_and_ps(r, _mm_cmpgt_ps(v, _mm_setzero_ps()));
                        __m128 q0 = _mm_cmpeq_ps(_mm_loadu_ps(p0 + k), v);
                        _mm_storeu_ps(d0 + k, _mm_and_ps(q0, r));
                        r = _mm_andnot_ps(q0, r);
                        __m128 q1 = _mm_cmpeq_ps(_mm_loadu_ps(p1 + k), v);
                        _mm_storeu_ps(d1 + k, _mm_and_ps(q1, r));
                        r = _mm_andnot_ps(q1, r);
                        __m128 q2 = _mm_cmpeq_ps(_mm_loadu_ps(p2 + k), v);
                        _mm_storeu_ps(d2 + k, _mm_and_ps(q2, r));
                        _mm_storeu_ps(d3 + k, _mm_andnot_ps(q2, r));
                    }
#endif
                    for (; k < c; k++) {
                        float v = o[k], r = g[k];
                        if (l->relu_in && !(v > 0.0f)) r = 0.0f;
                        float a0 = p0[k] == v ? r : 0.0f;
                        r = p0[k] == v ? 0.0f : r;
                        float a1 = p1[k] == v ? r : 0.0f;
                        r = p1[k] == v ? 0.0f : r;
                        float a2 = p2[k] == v ? r : 0.0f;
                        r = p2[k] == v ? 0.0f : r;
                        d0[k] = a0;
                        d1[k] = a1;
                        d2[k] = a2;
                        d3[k] = r;
                    }
                    continue;
                }
                for (int k = 0; k < c; k++) {
                    float v = o[k];
                    size_t win = base + k;
                    for (int ky = 0; ky < l->kh; ky++)
                        for (int kx = 0; kx < l->kw; kx++) {
                            size_t idx = base + ((size_t)ky * l->iw + kx) * c + k;
                            if (img[idx] == v) {
                                win = idx;
                                goto found;
                            }
                        }
                found:
                    d[win] += l->relu_in && !(v > 0.0f) ? 0.0f : g[k];
                }
            }
        }
    }
}

typedef struct pool_task {
    nn_layer *l;
    int b;
    const float *x, *y, *gy;
    float *out;
} pool_task;

static void pool_task_fn(void *arg, int tid, int nt)
{
    pool_task *t = arg;
    int per = (t->b + nt - 1) / nt, n0 = tid * per, n1 = n0 + per < t->b ? n0 + per : t->b;
    if (n0 >= n1) return;
    if (t->gy) pool_backward_range(t->l, n0, n1, t->x, t->y, t->gy, t->out);
    else pool_forward_range(t->l, n0, n1, t->x, t->out);
}

static void pool_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y)
{
    pool_task t = {l, b, x, NULL, NULL, y};
    pnn__parallel(m, pool_task_fn, &t);
}

static void pool_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                          const float *gy, float *dx)
{
    pool_task t = {l, b, x, y, gy, dx};
    pnn__parallel(m, pool_task_fn, &t);
}

/* ---- dense ---------------------------------------------------------------- */
static void dense_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y)
{
    int in = (int)l->isz;
    pnn__blas_threads(m->threads);
    pnn__sgemm(m->backend, 0, 0, b, l->oc, in, 1.0f, x, in, m->w + l->woff, l->oc, 0.0f, y, l->oc);
    bias_act(y, (size_t)b, l->oc, m->w + l->boff, l->act);
}

static void dense_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                           float *gy, float *dx)
{
    int in = (int)l->isz;
    pnn__blas_threads(m->threads);
    act_backward(gy, y, (size_t)b, l->oc, l->act);
    col_sums(m->g + l->boff, gy, (size_t)b, l->oc);
    pnn__sgemm(m->backend, 1, 0, in, l->oc, b, 1.0f, x, in, gy, l->oc, 1.0f, m->g + l->woff,
             l->oc);
    if (dx)
        pnn__sgemm(m->backend, 0, 1, b, in, l->oc, 1.0f, gy, l->oc, m->w + l->woff, l->oc, 0.0f,
                 dx, in);
}

/* ---- dispatch ------------------------------------------------------------- */
void pnn__layer_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y, int train)
{
    size_t n = (size_t)b * l->osz;
    switch (l->type) {
    case NN_CONV: conv_forward(m, l, b, x, y); break;
    case NN_POOL: pool_forward(m, l, b, x, y); break;
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
                l->mask[i] = pnn__rng_uniform(&m->drop_rng) < l->rate ? 0.0f : keep;
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

void pnn__layer_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                       float *gy, float *dx)
{
    size_t n = (size_t)b * l->osz;
    switch (l->type) {
    case NN_CONV: conv_backward(m, l, b, x, y, gy, dx); break;
    case NN_POOL:
        if (dx) pool_backward(m, l, b, x, y, gy, dx);
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
