/*
 * fold.c - the streaming FedAvg fold over a whole model, for one or several
 * client updates at a time: PST_ACC_DOUBLE48 (default) acc[j] += w * x[j] in
 * double, rounded to 48 bits (two planes: high 32 bits, next 16);
 * PST_ACC_FLOAT_DELTA acc[j] = fmaf(w, x[j] - g[j], acc[j]) in float32;
 * PST_ACC_DOUBLE acc[j] += w * x[j] in double.
 *
 * Memory-bound. A round's accumulator must never hold a trace of a rejected
 * update, so every call runs in two passes over the model: first each update
 * is checked whole for non-finite values (integer test on the exponent bits,
 * four updates at once so their first touch runs as four concurrent memory
 * streams), then only the updates found finite everywhere are folded. Bytes
 * moved per folded update float: 20 for a single add with double48 (update 4
 * checked + 4 folded, accumulator 6 read + 6 written) or float-delta
 * (update twice, global, accumulator read + write), 24 with double; a batch
 * of k moves 8 + 12/k (double48, float-delta) or 8 + 16/k (double), because
 * the fold goes block by block (BLK floats of one tensor): the accumulator
 * and global blocks stay in cache while every good update of the batch is
 * folded, four updates per accumulator load/store, each rounded in turn, so
 * the roundings are exactly those of single adds: results never depend on
 * batching, on the thread split or on rejected updates. The first fold of a
 * round writes the accumulator instead of reading it (no memset pass in
 * pst_fit_begin). Update data is read with memcpy, so it may be unaligned
 * (views into received messages). Large models are split between up to
 * s->threads pthreads (contiguous flat ranges, the same for both passes; no
 * nesting). Built with -O3 (see module.mk) so the loops vectorise; x86-64
 * also gets AVX2 / FMA clones.
 */
#include "pst_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BLK 16384

/* x86-64: also build AVX2 versions of the kernels (FMA, which implies AVX,
 * for the float-delta ones), picked at load time (ifunc). The float-delta
 * kernels use fmaf() explicitly (one
 * rounding, an IEEE operation): the FMA clone does it in hardware, the
 * baseline clone through libm's exact fmaf, so every clone gives the same
 * bits; the double kernels never fuse (w * x is exact in double anyway). */
#if defined(__x86_64__) && defined(__linux__) && !defined(PST_NO_CLONES) &&                   \
    (defined(__clang__) ? __clang_major__ >= 14 : defined(__GNUC__))
#define KERNEL __attribute__((target_clones("avx2", "default")))
#define KERNEL_FMA __attribute__((target_clones("fma", "default")))
#define KERNEL_48 __attribute__((target_clones("avx2", "default")))
#else
#define KERNEL
#define KERNEL_FMA
#define KERNEL_48
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

/* blk_finite for four updates at once (bit i set: update i's block is all
 * finite): the block's first touch of each update then runs as four
 * concurrent memory streams instead of one after the other, which a single
 * core's prefetchers need to come near the memory bandwidth. */
KERNEL static unsigned blk_finite4(const unsigned char *restrict p0,
                                   const unsigned char *restrict p1,
                                   const unsigned char *restrict p2,
                                   const unsigned char *restrict p3, size_t n)
{
    uint32_t m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t u0, u1, u2, u3;
        memcpy(&u0, p0 + 4 * j, 4);
        memcpy(&u1, p1 + 4 * j, 4);
        memcpy(&u2, p2 + 4 * j, 4);
        memcpy(&u3, p3 + 4 * j, 4);
        m0 |= (u0 & 0x7f800000u) + 0x00800000u;
        m1 |= (u1 & 0x7f800000u) + 0x00800000u;
        m2 |= (u2 & 0x7f800000u) + 0x00800000u;
        m3 |= (u3 & 0x7f800000u) + 0x00800000u;
    }
    return (~m0 >> 31 & 1u) | (~m1 >> 31 & 1u) << 1 | (~m2 >> 31 & 1u) << 2 |
           (~m3 >> 31 & 1u) << 3;
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

/* PST_ACC_FLOAT_DELTA: a[j] = fmaf(w, x[j] - g[j], a[j]): the difference in
 * float32 (exact when x and g are within a factor of 2 of each other, i.e.
 * whenever the delta is small next to the weight; else rounded at the scale
 * of the delta), then w*d + a with ONE rounding. w = num_examples is exact in
 * float32 below 2^24 (larger counts are rounded to float32 first). */
KERNEL_FMA static void blk_fold_d(float *restrict a, const unsigned char *restrict p,
                              const float *restrict g, size_t n, float w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        a[j] = fmaf(w, x - g[j], a[j]);
    }
}

/* The first update of a block in a fresh round: a[j] = fmaf(w, x[j] - g[j], 0)
 * (the same bits as adding it to a zeroed accumulator), without reading a. */
KERNEL_FMA static void blk_set_d(float *restrict a, const unsigned char *restrict p,
                             const float *restrict g, size_t n, float w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        a[j] = fmaf(w, x - g[j], 0.0f);
    }
}

/* Four updates per accumulator load/store, each one fused and rounded in
 * turn: bit-identical to four blk_fold_d calls, so batching never changes a
 * result. */
KERNEL_FMA static void blk_fold4_d(float *restrict a, const unsigned char *restrict p0,
                               const unsigned char *restrict p1, const unsigned char *restrict p2,
                               const unsigned char *restrict p3, const float *restrict g,
                               size_t n, const float *w)
{
    float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (size_t j = 0; j < n; j++) {
        float x0, x1, x2, x3, acc = a[j], gj = g[j];
        memcpy(&x0, p0 + 4 * j, 4);
        memcpy(&x1, p1 + 4 * j, 4);
        memcpy(&x2, p2 + 4 * j, 4);
        memcpy(&x3, p3 + 4 * j, 4);
        acc = fmaf(w0, x0 - gj, acc);
        acc = fmaf(w1, x1 - gj, acc);
        acc = fmaf(w2, x2 - gj, acc);
        acc = fmaf(w3, x3 - gj, acc);
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

/* PST_ACC_DOUBLE48: a double with the low 16 mantissa bits dropped, kept in
 * two planes (high 32 bits, next 16 bits), 6 bytes per float. */
static inline double ld48(const uint32_t *hi, const uint16_t *lo, size_t j)
{
    uint64_t b = (uint64_t)hi[j] << 32 | (uint64_t)lo[j] << 16;
    double a;
    memcpy(&a, &b, 8);
    return a;
}

/* Round a to 48 bits (to nearest on the magnitude, ties away from zero: the
 * carry of +0x8000 runs into the exponent correctly) and store it. */
static inline void st48(uint32_t *hi, uint16_t *lo, size_t j, double a)
{
    uint64_t b;
    memcpy(&b, &a, 8);
    b += 0x8000u;
    hi[j] = (uint32_t)(b >> 32);
    lo[j] = (uint16_t)(b >> 16);
}

KERNEL_48 static void blk_fold48(uint32_t *restrict hi, uint16_t *restrict lo,
                              const unsigned char *restrict p, size_t n, double w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        st48(hi, lo, j, ld48(hi, lo, j) + w * (double)x);
    }
}

KERNEL_48 static void blk_set48(uint32_t *restrict hi, uint16_t *restrict lo,
                             const unsigned char *restrict p, size_t n, double w)
{
    for (size_t j = 0; j < n; j++) {
        float x;
        memcpy(&x, p + 4 * j, 4);
        st48(hi, lo, j, 0.0 + w * (double)x);
    }
}

/* 48-bit rounding of a double in a register (the st48 rounding). */
static inline double r48(double a)
{
    uint64_t b;
    memcpy(&b, &a, 8);
    b = (b + 0x8000u) & ~(uint64_t)0xffff;
    memcpy(&a, &b, 8);
    return a;
}

/* Four / eight updates per accumulator load/store (fresh: start from 0
 * without reading it), rounded to 48 bits after each: bit-identical to that
 * many blk_fold48 calls. Unused slots get the zero block with weight -0.0,
 * which leaves every value (and the sign of zeros) unchanged. */
KERNEL_48 static void blk_fold4_48(uint32_t *restrict hi, uint16_t *restrict lo,
                                   const unsigned char *const *px, size_t n, const double *w,
                                   int fresh)
{
    const unsigned char *restrict p0 = px[0], *restrict p1 = px[1], *restrict p2 = px[2],
                                  *restrict p3 = px[3];
    double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
    for (size_t j = 0; j < n; j++) {
        float x0, x1, x2, x3;
        double a = fresh ? 0.0 : ld48(hi, lo, j);
        memcpy(&x0, p0 + 4 * j, 4);
        memcpy(&x1, p1 + 4 * j, 4);
        memcpy(&x2, p2 + 4 * j, 4);
        memcpy(&x3, p3 + 4 * j, 4);
        a = r48(a + w0 * (double)x0);
        a = r48(a + w1 * (double)x1);
        a = r48(a + w2 * (double)x2);
        st48(hi, lo, j, a + w3 * (double)x3);
    }
}

KERNEL_48 static void blk_fold8_48(uint32_t *restrict hi, uint16_t *restrict lo,
                                   const unsigned char *const *px, size_t n, const double *w,
                                   int fresh)
{
    const unsigned char *restrict p0 = px[0], *restrict p1 = px[1], *restrict p2 = px[2],
                                  *restrict p3 = px[3], *restrict p4 = px[4],
                                  *restrict p5 = px[5], *restrict p6 = px[6],
                                  *restrict p7 = px[7];
    double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6],
           w7 = w[7];
    for (size_t j = 0; j < n; j++) {
        float x0, x1, x2, x3, x4, x5, x6, x7;
        double a = fresh ? 0.0 : ld48(hi, lo, j);
        memcpy(&x0, p0 + 4 * j, 4);
        memcpy(&x1, p1 + 4 * j, 4);
        memcpy(&x2, p2 + 4 * j, 4);
        memcpy(&x3, p3 + 4 * j, 4);
        memcpy(&x4, p4 + 4 * j, 4);
        memcpy(&x5, p5 + 4 * j, 4);
        memcpy(&x6, p6 + 4 * j, 4);
        memcpy(&x7, p7 + 4 * j, 4);
        a = r48(a + w0 * (double)x0);
        a = r48(a + w1 * (double)x1);
        a = r48(a + w2 * (double)x2);
        a = r48(a + w3 * (double)x3);
        a = r48(a + w4 * (double)x4);
        a = r48(a + w5 * (double)x5);
        a = r48(a + w6 * (double)x6);
        st48(hi, lo, j, a + w7 * (double)x7);
    }
}

static float zblk[BLK]; /* never written: the zero update of unused slots */

/* Fold ng updates (px, w) into a double48 block, eight or four per pass. */
static void fold48_group(uint32_t *hi, uint16_t *lo, const unsigned char **px, const double *w,
                         size_t ng, size_t n, int fresh)
{
    size_t i = 0;
    if (ng == 0) {
        if (fresh) {
            memset(hi, 0, n * sizeof *hi);
            memset(lo, 0, n * sizeof *lo);
        }
        return;
    }
    if (ng == 1) {
        if (fresh) blk_set48(hi, lo, px[0], n, w[0]);
        else blk_fold48(hi, lo, px[0], n, w[0]);
        return;
    }
    while (i < ng) {
        const unsigned char *q[8];
        double qw[8];
        size_t m = ng - i, slots = m > 4 ? 8 : 4;
        if (m > slots) m = slots;
        for (size_t e = 0; e < slots; e++) {
            q[e] = e < m ? px[i + e] : (const unsigned char *)zblk;
            qw[e] = e < m ? w[i + e] : -0.0;
        }
        if (slots == 8) blk_fold8_48(hi, lo, q, n, qw, fresh && i == 0);
        else blk_fold4_48(hi, lo, q, n, qw, fresh && i == 0);
        i += m;
    }
}

typedef struct fold_job {
    const pst_strategy *s;
    double *acc;  /* PST_ACC_DOUBLE */
    float *accf;  /* PST_ACC_FLOAT_DELTA (then s->global is read too) */
    uint32_t *ahi; /* PST_ACC_DOUBLE48: high 32 bits */
    uint16_t *alo; /*   and the next 16 */
    size_t k;
    const unsigned char *const *const *src;
    const double *w;
    size_t lo, hi;  /* flat range */
    int fresh;      /* accumulator not yet written this round: set instead of add */
    int *bad;       /* k: check phase: found non-finite in this range */
    const int *skip; /* k: fold phase: updates rejected anywhere (not folded) */
    const unsigned char **gx; /* k: scratch, the block's good updates */
    double *gw;               /* k: and their weights */
    float *gwf;               /* k: the same as float (float-delta kernels) */
} fold_job;

/* Check phase: mark in j->bad every update with a non-finite value in the
 * job's range (four updates at a time, so their first touch runs as four
 * concurrent memory streams; an update found bad is not read further). */
static void *check_worker(void *arg)
{
    fold_job *j = arg;
    const pst_strategy *s = j->s;
    for (size_t i = 0; i < j->k; i++) j->bad[i] = 0;
    for (size_t t = 0; t < s->nt; t++) {
        size_t t0 = s->off[t], t1 = s->off[t + 1];
        size_t a = t0 > j->lo ? t0 : j->lo, b = t1 < j->hi ? t1 : j->hi;
        for (size_t p = a; p < b; p += BLK) {
            size_t n = b - p < BLK ? b - p : BLK;
            for (size_t i = 0; i < j->k;) {
                size_t q[4], nq = 0;
                unsigned ok;
                const unsigned char *x[4];
                for (; i < j->k && nq < 4; i++)
                    if (!j->bad[i]) {
                        q[nq] = i;
                        x[nq++] = j->src[i][t] + 4 * (p - t0);
                    }
                if (nq == 4) ok = blk_finite4(x[0], x[1], x[2], x[3], n);
                else {
                    ok = 0;
                    for (size_t e = 0; e < nq; e++) ok |= (unsigned)blk_finite(x[e], n) << e;
                }
                for (size_t e = 0; e < nq; e++)
                    if (!(ok >> e & 1)) j->bad[q[e]] = 1;
            }
        }
    }
    return NULL;
}

/* Fold phase: fold every update not in j->skip into the job's range of the
 * accumulator, block by block, four updates per accumulator load/store. */
static void *fold_worker(void *arg)
{
    fold_job *j = arg;
    const pst_strategy *s = j->s;
    for (size_t t = 0; t < s->nt; t++) {
        size_t t0 = s->off[t], t1 = s->off[t + 1];
        size_t a = t0 > j->lo ? t0 : j->lo, b = t1 < j->hi ? t1 : j->hi;
        for (size_t p = a; p < b; p += BLK) {
            size_t n = b - p < BLK ? b - p : BLK, ng = 0, i = 0;
            for (i = 0; i < j->k; i++) {
                if (j->skip[i]) continue;
                j->gx[ng] = j->src[i][t] + 4 * (p - t0);
                j->gwf[ng] = (float)j->w[i];
                j->gw[ng++] = j->w[i];
            }
            i = 0;
            if (j->accf) {
                float *af = j->accf + p;
                const float *g = s->global->t[t].data + (p - t0);
                if (j->fresh) { /* first fold of the round: write, don't read */
                    if (ng == 0) memset(af, 0, n * sizeof *af);
                    else blk_set_d(af, j->gx[0], g, n, j->gwf[0]);
                    i = 1;
                }
                for (; i + 4 <= ng; i += 4)
                    blk_fold4_d(af, j->gx[i], j->gx[i + 1], j->gx[i + 2], j->gx[i + 3], g, n,
                                j->gwf + i);
                for (; i < ng; i++) blk_fold_d(af, j->gx[i], g, n, j->gwf[i]);
                continue;
            }
            if (j->ahi) {
                fold48_group(j->ahi + p, j->alo + p, j->gx, j->gw, ng, n, j->fresh);
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

/* Run fn on every job: jobs 1.. on their own threads, job 0 here (a thread
 * that cannot be started runs here too). */
static void run_jobs(fold_job *jobs, int nth, void *(*fn)(void *))
{
    pthread_t tid[8];
    int started[8] = {0};
    for (int t = 1; t < nth; t++) started[t] = pthread_create(&tid[t], NULL, fn, &jobs[t]) == 0;
    fn(&jobs[0]);
    for (int t = 1; t < nth; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else fn(&jobs[t]);
    }
}

int pst__fold(const pst_strategy *s, void *acc, int fresh, size_t k,
              const unsigned char *const *const *src, const double *w, int *bad,
              size_t *folded)
{
    enum { MAXT = 8 };
    fold_job jobs[MAXT];
    int nth = s->threads < 1 ? 1 : (s->threads > MAXT ? MAXT : s->threads);
    int *ibuf;
    const unsigned char **xbuf;
    double *wbuf;
    float *fbuf;
    size_t good = 0;
    *folded = 0;
    if (s->total < ((size_t)1 << 18)) nth = 1;
    ibuf = malloc((size_t)nth * k * sizeof *ibuf + 1);
    xbuf = malloc((size_t)nth * k * sizeof *xbuf + 1);
    wbuf = malloc((size_t)nth * k * sizeof *wbuf + 1);
    fbuf = malloc((size_t)nth * k * sizeof *fbuf + 1);
    if (!ibuf || !xbuf || !wbuf || !fbuf) {
        free(fbuf);
        free(ibuf);
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
        int d48 = s->o.accumulator == PST_ACC_DOUBLE48;
        jobs[t] = (fold_job){s,
                             delta || d48 ? NULL : acc,
                             delta ? acc : NULL,
                             d48 ? acc : NULL,
                             d48 ? (uint16_t *)((uint32_t *)acc + s->total) : NULL,
                             k,
                             src,
                             w,
                             lo,
                             hi,
                             fresh,
                             ibuf + (size_t)t * k,
                             bad,
                             xbuf + (size_t)t * k,
                             wbuf + (size_t)t * k,
                             fbuf + (size_t)t * k};
    }
    /* 1. every update checked whole; 2. only the good ones folded: a rejected
     * update never touches the accumulator */
    run_jobs(jobs, nth, check_worker);
    for (size_t i = 0; i < k; i++) {
        bad[i] = 0;
        for (int t = 0; t < nth; t++) bad[i] |= jobs[t].bad[i];
        good += !bad[i];
    }
    if (good) run_jobs(jobs, nth, fold_worker);
    *folded = good;
    free(ibuf);
    free(xbuf);
    free(wbuf);
    free(fbuf);
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
