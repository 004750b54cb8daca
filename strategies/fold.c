/*
 * fold.c - the streaming FedAvg fold: acc[j] += w * x[j] in double over a
 * whole model, for one or several client updates at a time.
 *
 * Memory-bound: per folded float we read 4 bytes of update and read+write 8
 * bytes of accumulator. Work goes block by block (BLK floats of one tensor):
 * the accumulator block stays in cache while every update of the batch is
 * first checked for non-finite values (integer test on the exponent bits) and
 * then folded, four updates per accumulator load/store (added one after the
 * other, so the roundings are those of single adds), so a batch of k updates
 * streams the accumulator once instead of k times. Update data is read with
 * memcpy, so it may be unaligned (views into received messages). Large
 * models are split between up to s->threads pthreads (contiguous flat
 * ranges; no nesting). Built with -O3 (see module.mk) so the loops
 * vectorise; x86-64 also gets AVX2 clones. PST_ACC_FLOAT_DELTA folds
 * w * (x - global) into float32 instead (reads the global too).
 */
#include "pst_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLK 2048

/* x86-64: also build AVX2 versions of the two kernels, picked at load time
 * (ifunc). Same IEEE operations (no FMA), so results are identical. */
#if defined(__x86_64__) && defined(__linux__) && !defined(PST_NO_CLONES) &&                   \
    (defined(__clang__) ? __clang_major__ >= 14 : defined(__GNUC__))
#define KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL
#endif

/* 1 when all n floats at p are finite (exponent field not all ones). */
KERNEL static int blk_finite(const unsigned char *restrict p, size_t n)
{
    uint32_t m = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, p + 4 * j, 4);
        m |= (u & 0x7f800000u) + 0x00800000u; /* carries into bit 31 iff exp == 0xff */
    }
    return !(m & 0x80000000u);
}

KERNEL static void blk_fold(double *restrict a, const unsigned char *restrict p, size_t n,
                            double w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        a[j] += w * (double)x;
    }
}

/* Four updates at once, added in order into a register: the same roundings
 * as four blk_fold calls, with one accumulator load/store instead of four. */
KERNEL static void blk_fold4(double *restrict a, const unsigned char *restrict p0,
                             const unsigned char *restrict p1, const unsigned char *restrict p2,
                             const unsigned char *restrict p3, size_t n, const double *w)
{
    double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (size_t j = 0; j < n; j++) {
        float x0, x1, x2, x3;
        double acc = a[j];
        memcpy(&x0, p0 + 4 * j, 4);
        memcpy(&x1, p1 + 4 * j, 4);
        memcpy(&x2, p2 + 4 * j, 4);
        memcpy(&x3, p3 + 4 * j, 4);
        acc += w0 * (double)x0;
        acc += w1 * (double)x1;
        acc += w2 * (double)x2;
        acc += w3 * (double)x3;
        a[j] = acc;
    }
}

/* PST_ACC_FLOAT_DELTA: a[j] = float(a[j] + w * (x[j] - g[j])), the step in
 * double (x - g and w*(x - g) are exact for w < 2^29), rounded to float once
 * per update. */
KERNEL static void blk_fold_d(float *restrict a, const unsigned char *restrict p,
                              const float *restrict g, size_t n, double w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        a[j] = (float)((double)a[j] + w * ((double)x - (double)g[j]));
    }
}

/* The first update of a block in a fresh round: a[j] = float(w * (x[j] - g[j]))
 * (the same value as adding it to 0), without reading the accumulator. */
KERNEL static void blk_set_d(float *restrict a, const unsigned char *restrict p,
                             const float *restrict g, size_t n, double w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        a[j] = (float)(w * ((double)x - (double)g[j]));
    }
}

/* Four updates per accumulator load/store, rounded to float after each one:
 * bit-identical to four blk_fold_d calls, so batching never changes a result. */
KERNEL static void blk_fold4_d(float *restrict a, const unsigned char *restrict p0,
                               const unsigned char *restrict p1, const unsigned char *restrict p2,
                               const unsigned char *restrict p3, const float *restrict g,
                               size_t n, const double *w)
{
    double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (size_t j = 0; j < n; j++) {
        float x0, x1, x2, x3, acc = a[j];
        double gj = g[j];
        memcpy(&x0, p0 + 4 * j, 4);
        memcpy(&x1, p1 + 4 * j, 4);
        memcpy(&x2, p2 + 4 * j, 4);
        memcpy(&x3, p3 + 4 * j, 4);
        acc = (float)((double)acc + w0 * ((double)x0 - gj));
        acc = (float)((double)acc + w1 * ((double)x1 - gj));
        acc = (float)((double)acc + w2 * ((double)x2 - gj));
        acc = (float)((double)acc + w3 * ((double)x3 - gj));
        a[j] = acc;
    }
}

/* PST_ACC_DOUBLE, first update of a block in a fresh round: a[j] = w * x[j]. */
KERNEL static void blk_set(double *restrict a, const unsigned char *restrict p, size_t n,
                           double w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        a[j] = w * (double)x;
    }
}

typedef struct fold_job {
    const pst_strategy *s;
    double *acc;  /* PST_ACC_DOUBLE */
    float *accf;  /* PST_ACC_FLOAT_DELTA (then s->global is read too) */
    size_t k;
    const unsigned char *const *const *src;
    const double *w;
    size_t lo, hi;  /* flat range */
    int fresh;      /* accumulator not yet written this round: set instead of add */
    int *bad;       /* k: found non-finite in this range */
    size_t *stop;   /* k: flat index where folding of the update stopped */
    const unsigned char **gx; /* k: scratch, the block's good updates */
    double *gw;               /* k: and their weights */
} fold_job;

/* Call fn(t, from, to) for the part of tensor t inside [lo, hi). */
static void *fold_worker(void *arg)
{
    fold_job *j = arg;
    const pst_strategy *s = j->s;
    for (size_t i = 0; i < j->k; i++) {
        j->bad[i] = 0;
        j->stop[i] = j->hi;
    }
    for (size_t t = 0; t < s->nt; t++) {
        size_t t0 = s->off[t], t1 = s->off[t + 1];
        size_t a = t0 > j->lo ? t0 : j->lo, b = t1 < j->hi ? t1 : j->hi;
        for (size_t p = a; p < b; p += BLK) {
            size_t n = b - p < BLK ? b - p : BLK, ng = 0, i = 0;
            /* check every update's block first, then fold the good ones in
             * their order, four at a time */
            for (i = 0; i < j->k; i++) {
                const unsigned char *x;
                if (j->bad[i]) continue;
                x = j->src[i][t] + 4 * (p - t0);
                if (!blk_finite(x, n)) {
                    j->bad[i] = 1;
                    j->stop[i] = p;
                    continue;
                }
                j->gx[ng] = x;
                j->gw[ng++] = j->w[i];
            }
            i = 0;
            if (j->accf) {
                float *af = j->accf + p;
                const float *g = s->global->t[t].data + (p - t0);
                if (j->fresh) { /* first fold of the round: write, don't read */
                    if (ng == 0) memset(af, 0, n * sizeof *af);
                    else blk_set_d(af, j->gx[0], g, n, j->gw[0]);
                    i = 1;
                }
                for (; i + 4 <= ng; i += 4)
                    blk_fold4_d(af, j->gx[i], j->gx[i + 1], j->gx[i + 2], j->gx[i + 3], g, n,
                                j->gw + i);
                for (; i < ng; i++) blk_fold_d(af, j->gx[i], g, n, j->gw[i]);
                continue;
            }
            if (j->fresh) {
                if (ng == 0) memset(j->acc + p, 0, n * sizeof *j->acc);
                else blk_set(j->acc + p, j->gx[0], n, j->gw[0]);
                i = 1;
            }
            for (; i + 4 <= ng; i += 4)
                blk_fold4(j->acc + p, j->gx[i], j->gx[i + 1], j->gx[i + 2], j->gx[i + 3], n,
                          j->gw + i);
            for (; i < ng; i++) blk_fold(j->acc + p, j->gx[i], n, j->gw[i]);
        }
    }
    return NULL;
}

/* Subtract update i's contribution again over [lo, stop). */
static void unfold(const fold_job *j, size_t i)
{
    const pst_strategy *s = j->s;
    for (size_t t = 0; t < s->nt; t++) {
        size_t t0 = s->off[t], t1 = s->off[t + 1];
        size_t a = t0 > j->lo ? t0 : j->lo, b = t1 < j->stop[i] ? t1 : j->stop[i];
        if (a >= b) continue;
        if (j->accf)
            blk_fold_d(j->accf + a, j->src[i][t] + 4 * (a - t0), s->global->t[t].data + (a - t0),
                       b - a, -j->w[i]);
        else
            blk_fold(j->acc + a, j->src[i][t] + 4 * (a - t0), b - a, -j->w[i]);
    }
}

int pst__fold(const pst_strategy *s, void *acc, int fresh, size_t k,
              const unsigned char *const *const *src, const double *w, int *bad)
{
    enum { MAXT = 8 };
    fold_job jobs[MAXT];
    pthread_t tid[MAXT];
    int started[MAXT] = {0};
    int nth = s->threads < 1 ? 1 : (s->threads > MAXT ? MAXT : s->threads);
    int *ibuf;
    size_t *sbuf;
    const unsigned char **xbuf;
    double *wbuf;
    if (s->total < ((size_t)1 << 18)) nth = 1;
    ibuf = malloc((size_t)nth * k * sizeof *ibuf + 1);
    sbuf = malloc((size_t)nth * k * sizeof *sbuf + 1);
    xbuf = malloc((size_t)nth * k * sizeof *xbuf + 1);
    wbuf = malloc((size_t)nth * k * sizeof *wbuf + 1);
    if (!ibuf || !sbuf || !xbuf || !wbuf) {
        free(ibuf);
        free(sbuf);
        free(xbuf);
        free(wbuf);
        return PT_ERR_NOMEM;
    }
    for (int t = 0; t < nth; t++) {
        /* split at BLK multiples so blocks do not straddle threads needlessly */
        size_t per = (s->total / (size_t)nth + BLK - 1) / BLK * BLK;
        size_t lo = per * (size_t)t, hi = per * (size_t)(t + 1);
        if (lo > s->total) lo = s->total;
        if (hi > s->total || t == nth - 1) hi = s->total;
        int delta = s->o.accumulator == PST_ACC_FLOAT_DELTA;
        jobs[t] = (fold_job){s,
                             delta ? NULL : acc,
                             delta ? acc : NULL,
                             k,
                             src,
                             w,
                             lo,
                             hi,
                             fresh,
                             ibuf + (size_t)t * k,
                             sbuf + (size_t)t * k,
                             xbuf + (size_t)t * k,
                             wbuf + (size_t)t * k};
    }
    for (int t = 1; t < nth; t++)
        started[t] = pthread_create(&tid[t], NULL, fold_worker, &jobs[t]) == 0;
    fold_worker(&jobs[0]);
    for (int t = 1; t < nth; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fold_worker(&jobs[t]); /* could not start a thread: do it here */
    }
    for (size_t i = 0; i < k; i++) {
        bad[i] = 0;
        for (int t = 0; t < nth; t++) bad[i] |= jobs[t].bad[i];
        if (bad[i])
            for (int t = 0; t < nth; t++) unfold(&jobs[t], i);
    }
    free(ibuf);
    free(sbuf);
    free(xbuf);
    free(wbuf);
    return PT_OK;
}

double pst__sqdist_global(const pst_strategy *s, const unsigned char *const *src,
                          const pt_params *g, int *finite)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    *finite = 1;
    for (size_t t = 0; t < s->nt; t++) {
        const unsigned char *x = src[t];
        const float *gd = g->t[t].data;
        size_t n = s->numel[t];
        for (size_t p = 0; p < n; p += BLK) {
            size_t m = n - p < BLK ? n - p : BLK, j = 0;
            const unsigned char *xb = x + 4 * p;
            const float *gb = gd + p;
            if (!blk_finite(xb, m)) {
                *finite = 0;
                return 0;
            }
            for (; j + 4 <= m; j += 4) {
                float a[4];
                memcpy(a, xb + 4 * j, sizeof a);
                double d0 = (double)a[0] - gb[j], d1 = (double)a[1] - gb[j + 1];
                double d2 = (double)a[2] - gb[j + 2], d3 = (double)a[3] - gb[j + 3];
                s0 += d0 * d0;
                s1 += d1 * d1;
                s2 += d2 * d2;
                s3 += d3 * d3;
            }
            for (; j < m; j++) {
                float a;
                memcpy(&a, xb + 4 * j, 4);
                double d = (double)a - gb[j];
                s0 += d * d;
            }
        }
    }
    return (s0 + s1) + (s2 + s3);
}

int pst__copy_flat(const pst_strategy *s, float *dst, const unsigned char *const *src)
{
    for (size_t t = 0; t < s->nt; t++) {
        size_t n = s->numel[t];
        for (size_t p = 0; p < n; p += BLK) {
            size_t m = n - p < BLK ? n - p : BLK;
            if (!blk_finite(src[t] + 4 * p, m)) return 0;
            memcpy(dst + s->off[t] + p, src[t] + 4 * p, m * sizeof(float));
        }
    }
    return 1;
}
