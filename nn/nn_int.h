/*
 * nn_int.h - libpetal-nn internals shared by the nn sources and the nn tests.
 * Not installed; not part of the API.
 */
#ifndef PETAL_NN_INT_H
#define PETAL_NN_INT_H

#include "pnn.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Vector-width clones of a hot elementwise function, picked at load time
 * (GCC, glibc, x86-64): the loops are elementwise and built without FP
 * contraction, so every clone gives the same bits. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__gnu_linux__)
#define NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NN_CLONES
#endif

typedef enum nn_ltype {
    NN_CONV = 1,
    NN_POOL,
    NN_DENSE,
    NN_RELU,
    NN_SOFTMAX,
    NN_FLATTEN,
    NN_DROPOUT
} nn_ltype;

enum { NN_ACT_NONE = 0, NN_ACT_RELU = 1, NN_ACT_SOFTMAX = 2 };

/* One layer. Shapes are per image: input ih x iw x ic, output oh x ow x oc
 * (Dense/Flatten outputs are 1 x 1 x units). */
typedef struct nn_layer {
    nn_ltype type;
    int ih, iw, ic, oh, ow, oc;
    int kh, kw, sh, sw, pt, pl; /* kernel/pool size, strides, top/left padding */
    int act;                    /* NN_ACT_*; for the fused final softmax see nn_model */
    float rate;                 /* dropout */
    size_t woff, boff;          /* kernel / bias offsets in the flat weights (w layers) */
    size_t wn, bn;              /* kernel / bias sizes */
    size_t isz, osz;            /* floats per image in / out */
    int chunk;                  /* conv: output rows per im2col block */
    int relu_in;                /* pool: input is a ReLU output; backward applies its mask */
    int relu_masked;            /* conv: the next layer (pool) applies our ReLU mask */
    int fuse_pool;              /* conv: computed together with the next (2x2/2) pool */
    int rowshift;               /* conv: row-shifted patches allowed (tests turn it off) */
    int pairs;                  /* conv: row pairs allowed (tests turn it off) */
    int fused;                  /* pool: computed by the previous conv (see fuse_pool) */
    uint8_t *code;              /* fused pool: window winner 0..3 per output */
    /* batch buffers (owned by the model's arena; cap images) */
    float *out;                 /* cap * osz (Flatten: aliases its input) */
    float *mask;                /* dropout: cap * osz multipliers */
} nn_layer;

/* Row-major GEMM seam: C[M,N] = alpha * op(A) * op(B) + beta * C. */
void pnn__sgemm(pnn_backend be, int ta, int tb, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* Floats in a conv's patch-matrix block for this backend (kernel-dependent,
 * never thread-dependent). */
size_t pnn__patch_block(pnn_backend be);
/* Apply the thread count to OpenBLAS (no-op when unchanged). */
void pnn__blas_threads(int threads);

typedef void (*nn_task_fn)(void *ctx, int tid, int nthreads);
struct nn_pool;

struct pnn_model {
    pnn_backend backend;
    int threads;
    uint64_t seed;
    int in_h, in_w, in_c;
    int ncls;
    int nl;
    nn_layer *L;
    int final_softmax; /* 1: the last layer (or its activation) is a softmax fused with the loss */
    size_t nparams;
    float *w;          /* nparams weights, Keras order */
    size_t nw;         /* number of weight tensors */
    pnn_tensor *wt;    /* nw descriptors pointing into w */
    double fwd_flops;
    /* training state */
    float *g;          /* nparams gradients */
    float *opt_m, *opt_v;
    int opt_type;      /* -1: none yet */
    int64_t opt_t;
    uint64_t drop_rng;
    /* batch buffers */
    int cap;           /* images the activation buffers hold (0: none) */
    int gcap;          /* images the gradient buffers hold */
    float *xin;        /* cap * input floats */
    float *gbuf[2];    /* gcap * max layer size, ping-pong gradients */
    float *ws;         /* im2col workspace, ws_n floats per thread */
    size_t ws_n;
    float *ws2;        /* dcol workspace, ws_n floats per thread */
    float *pe;         /* row pairs: one layer's expanded kernels, pe_n floats */
    float *pde;        /* row pairs: their gradients, pe_n floats per thread */
    size_t pe_n;
    float *cs;         /* fused conv+pool output block, cs_n floats per thread */
    size_t cs_n;
    float *gpriv;      /* conv weight gradients per work unit, gpriv_n floats each */
    size_t gpriv_n;
    int buf_threads;   /* threads the workspaces were sized for */
    struct nn_pool *pool;
    void **blocks;     /* big allocations to release */
    size_t nblocks, capblocks;
};

/* Run fn(ctx, tid, nthreads) on the model's threads (caller is tid 0);
 * returns nthreads. */
int pnn__parallel(pnn_model *m, nn_task_fn fn, void *ctx);
void pnn__pool_free(pnn_model *m);

/* Format err (may be NULL) and return code. */
int pnn__seterr(char *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Open a user's file: for reading an existing regular file, for writing a
 * regular file (created or truncated). Never blocks on a FIFO and refuses
 * anything but a regular file (err: "PATH: a FIFO, not a regular file").
 * NULL with err set on failure (code in *rc). */
FILE *pnn__fopen(const char *path, int write, int *rc, char *err);

/* Large zero-filled allocation tracked by the model (hugepage-advised). */
void *pnn__big_alloc(pnn_model *m, size_t bytes);
void pnn__big_free_all(pnn_model *m);

/* Make room for batches of b images; grad: also gradient buffers. */
int pnn__ensure_batch(pnn_model *m, int b, int grad);
/* Forward b images already in m->xin; train: dropout active. */
void pnn__forward(pnn_model *m, int b, int train);
/* Loss of the last forward (mean over b), its accuracy count; writes the
 * gradient w.r.t. the final logits into gbuf when grad. Returns PNN_OK or
 * PNN_ERR_LABEL. */
int pnn__loss(pnn_model *m, int b, const int32_t *y, double *loss, int *correct, int grad,
            float **gout);
/* Backward from gradient gy (w.r.t. the output of layer `from`, or the final
 * logits), accumulating into m->g (which the caller zeroes). dx: if not NULL,
 * receives d/d input (b * input floats). */
void pnn__backward(pnn_model *m, int b, float *gy, float *dx);

/* Single-layer entry points for the gradient tests. x: b * l->isz inputs,
 * y: b * l->osz outputs, w: the model's weights. */
void pnn__layer_forward(pnn_model *m, nn_layer *l, int b, const float *x, float *y, int train);
/* gy is modified in place (activation mask). dx may be NULL. */
void pnn__layer_backward(pnn_model *m, nn_layer *l, int b, const float *x, const float *y,
                       float *gy, float *dx);

/* Fused Conv2D (+ReLU) and 2x2/2 MaxPool2D: forward writes the pool's out and
 * code; backward takes the pool output gradient gy and writes the conv input
 * gradient dx (may be NULL), accumulating the conv weight gradients. */
void pnn__conv_pool_forward(pnn_model *m, nn_layer *c, nn_layer *p, int b, const float *x);
void pnn__conv_pool_backward(pnn_model *m, nn_layer *c, nn_layer *p, int b, const float *x,
                           const float *gy, float *dx);

/* Row pairs (fused conv + pool with thin kernel rows): the im2col workspace
 * floats a block needs (0: the layer does not use them; l->chunk must be
 * set) and, in *e_floats, the size of the expanded kernels. */
size_t pnn__pairs_need(const nn_layer *l, size_t *e_floats);

/* RNG: splitmix64 */
uint64_t pnn__rng_next(uint64_t *s);
float pnn__rng_uniform(uint64_t *s); /* [0,1) */

#endif /* PETAL_NN_INT_H */
