/*
 * gemm.c - the one GEMM seam: OpenBLAS cblas_sgemm or a plain-C reference,
 * chosen at run time per model.
 */
#include "nn_int.h"

#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

/* OpenBLAS's thread count is process-wide; remember the last value set so the
 * per-layer switches (1 inside image-parallel convolutions, the model's count
 * for dense layers) cost nothing when unchanged. */
static atomic_int cur_threads = -1;

void pnn__blas_threads(int threads)
{
    if (atomic_exchange(&cur_threads, threads) != threads) openblas_set_num_threads(threads);
}

/* Reference: row-major, accumulates in float with the k loop outside the j
 * loop (vectorisable) when B is not transposed, dot products otherwise. */
static void ref_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
        if (!tb) {
            for (int p = 0; p < K; p++) {
                float a = alpha * (ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
                if (a == 0.0f) continue;
                const float *b = B + (size_t)p * ldb;
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {
            for (int j = 0; j < N; j++) {
                const float *b = B + (size_t)j * ldb;
                float s = 0.0f;
                if (!ta) {
                    const float *a = A + (size_t)i * lda;
                    for (int p = 0; p < K; p++) s += a[p] * b[p];
                } else {
                    for (int p = 0; p < K; p++) s += A[(size_t)p * lda + i] * b[p];
                }
                c[j] += alpha * s;
            }
        }
    }
}

void pnn__sgemm(pnn_backend be, int ta, int tb, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++) {
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : c[j] * beta;
        }
        return;
    }
    if (be == PNN_BACKEND_REFERENCE) {
        ref_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* Floats in a conv's patch-matrix block (see pnn__ensure_batch): 2^16 (256 KiB)
 * with OpenBLAS's AVX-512 kernels, 2^17 with the others. Measured on seed-cnn
 * (A/B, min of repeated steps): with SkylakeX kernels 2^16 trains 12-17%
 * faster than 2^17-2^18 at 1 thread and ~10% at 2; with Haswell kernels 2^17
 * is best at 1 and 2 threads. Never a function of the thread count, so that
 * results are not either. */
size_t pnn__patch_block(pnn_backend be)
{
    static atomic_size_t cached;
    size_t v = atomic_load(&cached);
    if (v) return v;
    const char *core = be == PNN_BACKEND_OPENBLAS ? openblas_get_corename() : NULL;
    int avx512 = core && (strstr(core, "Skylake") || strstr(core, "Cooperlake") ||
                          strstr(core, "Sapphire"));
    v = be == PNN_BACKEND_OPENBLAS && !avx512 ? (size_t)1 << 17 : (size_t)1 << 16;
    if (be == PNN_BACKEND_OPENBLAS) atomic_store(&cached, v);
    return v;
}
