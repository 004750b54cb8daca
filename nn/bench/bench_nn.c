/*
 * bench_nn.c - `make bench-nn`: libpetal-nn throughput on synthetic data.
 *
 * For seed-cnn (batch 32) and fmnist-cnn (batch 32, 128) at 1 and 2 threads:
 * training and inference images/s, achieved GFLOP/s (GEMM-exact FLOPs), the
 * same run's cblas_sgemm 1024^3 GFLOP/s, PyTorch 1.13's figure on this machine
 * kind (docs/anchors.md) and our ratio; and peak RSS while training seed-cnn.
 *
 * usage: bench_nn [-q]   (-q: shorter runs)
 */
#include "nn_int.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double sgemm_gflops(int threads)
{
    const int n = 1024;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4),
          *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 13) * 0.1f;
        b[i] = (float)(i % 7) * 0.1f;
        c[i] = 0;
    }
    openblas_set_num_threads(threads);
    pnn__blas_threads(threads);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

/* GEMM-exact training FLOPs per image: forward + weight gradient + input
 * gradient (none for the first layer). */
static double train_flops(const pnn_model *m)
{
    double f = pnn_forward_flops(m), first = 0;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].wn) {
            const nn_layer *l = &m->L[i];
            first = 2.0 * (double)l->wn * (l->type == NN_CONV ? (double)l->oh * l->ow : 1.0);
            break;
        }
    return 3 * f - first;
}

typedef struct row {
    const char *model;
    int batch, threads;
    double train_ips, infer_ips, train_gflops, sgemm, anchor_train, anchor_infer, mflop;
} row;

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "-q");
    const char *only_model = NULL; /* bench_nn MODEL BATCH THREADS: one row only */
    int only_batch = 0, only_threads = 0;
    if (argc == 4) {
        only_model = argv[1];
        only_batch = atoi(argv[2]);
        only_threads = atoi(argv[3]);
    }
    struct {
        const char *model;
        int batch;
        double anchor_train[2], anchor_infer[2];
        int train_batches, infer_batches;
    } cfg[] = {
        {"seed-cnn", 32, {50, 92}, {94, 176}, 2, 2},
        {"fmnist-cnn", 32, {3100, 2300}, {6000, 5700}, quick ? 40 : 100, quick ? 40 : 100},
        {"fmnist-cnn", 128, {3500, 3800}, {0, 0}, quick ? 10 : 26, quick ? 10 : 26},
    };
    row rows[6];
    int nr = 0;
    long rss_seed_kb = 0;
    char err[PNN_ERRLEN];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        for (int th = 1; th <= 2; th++) {
            if (only_model && (strcmp(only_model, cfg[c].model) || only_batch != cfg[c].batch ||
                               only_threads != th))
                continue;
            pnn_opts o;
            pnn_opts_init(&o);
            o.threads = th;
            pnn_model *m;
            if (pnn_model_new(&m, cfg[c].model, &o, err)) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            int B = cfg[c].batch;
            size_t insz = pnn_input_size(m);
            size_t N = (size_t)B * 2; /* two distinct batches, reused */
            float *x = malloc(N * insz * 4);
            int32_t *y = malloc(N * 4);
            uint64_t s = 42;
            for (size_t i = 0; i < N * insz; i++) x[i] = pnn__rng_uniform(&s);
            for (size_t i = 0; i < N; i++) y[i] = (int32_t)(i % 10);
            float *probs = malloc(N * 10 * 4);
            pnn_fit_opts f;
            pnn_fit_opts_init(&f);
            f.batch_size = B;
            f.shuffle = 0;
            /* warm-up: first touch of every buffer */
            if (pnn_fit(m, x, y, N, &f, NULL, err) ||
                pnn_predict(m, x, N, B, probs, err)) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            /* best of 3 repetitions (the machine is shared: take the least disturbed) */
            double sg0 = sgemm_gflops(th);
            pnn__blas_threads(th);
            int nb = cfg[c].train_batches;
            f.epochs = nb / 2 > 0 ? nb / 2 : 1;
            double tt = 1e30, ti = 1e30;
            int ni = cfg[c].infer_batches / 2 > 0 ? cfg[c].infer_batches / 2 : 1;
            for (int rep = 0; rep < 3; rep++) {
                double t0 = now();
                pnn_fit(m, x, y, N, &f, NULL, err);
                double t = now() - t0;
                if (t < tt) tt = t;
                t0 = now();
                for (int r = 0; r < ni; r++) pnn_predict(m, x, N, B, probs, err);
                t = now() - t0;
                if (t < ti) ti = t;
            }
            if (c == 0 && th == 1) {
                struct rusage ru;
                getrusage(RUSAGE_SELF, &ru);
                rss_seed_kb = ru.ru_maxrss;
            }
            double sg1 = sgemm_gflops(th);
            row *rw = &rows[nr++];
            rw->model = cfg[c].model;
            rw->batch = B;
            rw->threads = th;
            rw->train_ips = (double)f.epochs * N / tt;
            rw->infer_ips = (double)ni * N / ti;
            rw->train_gflops = rw->train_ips * train_flops(m) / 1e9;
            rw->mflop = train_flops(m) / 1e6;
            rw->sgemm = (sg0 + sg1) / 2; /* measured around this row */
            rw->anchor_train = cfg[c].anchor_train[th - 1];
            rw->anchor_infer = cfg[c].anchor_infer[th - 1];
            fprintf(stderr, "bench: %s batch %d threads %d done\n", rw->model, B, th);
            free(x);
            free(y);
            free(probs);
            pnn_model_free(m);
        }
    }
    printf("libpetal-nn benchmark (synthetic data; OPENBLAS_CORETYPE=%s)\n",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("%-11s %5s %3s | %10s %10s %8s | %6s | %9s %6s %6s | %9s %6s\n", "model", "batch",
           "thr", "train im/s", "infer im/s", "GFLOP/s", "sgemm", "torch trn", "ratio", "norm",
           "torch inf", "ratio");
    if (nr == 0) return 1;
    for (int i = 0; i < nr; i++) {
        row *r = &rows[i];
        char ai[16] = "-", ar[16] = "-";
        if (r->anchor_infer > 0) {
            snprintf(ai, sizeof ai, "%.0f", r->anchor_infer);
            snprintf(ar, sizeof ar, "%.2f", r->infer_ips / r->anchor_infer);
        }
        /* norm: the ratio with PyTorch's figure scaled by this run's sgemm speed
         * relative to the anchor machine's (107 / 184 GFLOP/s at 1 / 2 threads) */
        double anchor_sg = r->threads == 1 ? 107.0 : 184.0;
        printf("%-11s %5d %3d | %10.1f %10.1f %8.1f | %6.1f | %9.0f %6.2f %6.2f | %9s %6s\n",
               r->model, r->batch, r->threads, r->train_ips, r->infer_ips, r->train_gflops,
               r->sgemm, r->anchor_train, r->train_ips / r->anchor_train,
               r->train_ips / (r->anchor_train * r->sgemm / anchor_sg), ai, ar);
    }
    printf("GFLOP/s: GEMM-exact training FLOPs (seed-cnn %.1f, fmnist-cnn %.1f MFLOP/image); "
           "sgemm: cblas_sgemm 1024^3 in this run\n", rows[0].mflop, rows[nr - 1].mflop);
    printf("torch: PyTorch 1.13 (oneDNN, allocations retained) on this machine kind, "
           "docs/anchors.md; ratio = ours / torch;\n  norm = ratio with torch's figure scaled "
           "by (sgemm here / sgemm on the anchor machine: 107 at 1, 184 at 2 threads)\n");
    printf("peak RSS while training seed-cnn batch 32: %.1f MiB (limit 1024)\n",
           rss_seed_kb / 1024.0);
    return rss_seed_kb / 1024.0 < 1024 ? 0 : 1;
}
