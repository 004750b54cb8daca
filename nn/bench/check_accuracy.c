/*
 * check_accuracy.c - `make check-accuracy`: fmnist-cnn, 1 epoch, batch 32,
 * Adam (lr 1e-3, Keras defaults) on the 60k Fashion-MNIST training images,
 * evaluated on the 10k test images; exits 1 below 87% accuracy.
 *
 * usage: check_accuracy [DIR] [THREADS] [SEED]
 *        DIR defaults to Debian's /usr/share/datasets/fashion-mnist
 */
#include "pdata.h"
#include "pnn.h"
#include "blas_core.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int on_progress(const pnn_progress *p, void *user)
{
    (void)user;
    if (p->batch % 100 == 0 || p->epoch_end)
        fprintf(stderr, "\r  epoch %d/%d  %zu/%zu  loss %.4f  accuracy %.4f%s", p->epoch + 1,
                p->epochs, p->seen, p->n, p->loss, p->accuracy, p->epoch_end ? "\n" : "");
    return 0;
}

int main(int argc, char **argv)
{
    pt_blas_fix_core(argv);
    const char *dir = argc > 1 ? argv[1] : PD_FASHION_MNIST_DIR;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    char err[PNN_ERRLEN > PT_ERRLEN ? PNN_ERRLEN : PT_ERRLEN];
    pd_dataset train = {0}, test = {0};
    if (pd_load_fashion_mnist(&train, &test, dir, err) != 0) {
        fprintf(stderr, "check-accuracy: %s\n", err);
        return 2;
    }
    pnn_opts o;
    pnn_opts_init(&o);
    o.threads = threads > 0 ? threads : 1;
    o.seed = seed;
    pnn_model *m;
    if (pnn_model_new(&m, "fmnist-cnn", &o, err)) {
        fprintf(stderr, "check-accuracy: %s\n", err);
        return 2;
    }
    pnn_fit_opts f;
    pnn_fit_opts_init(&f); /* 1 epoch, batch 32, shuffle, Adam lr 1e-3 */
    f.shuffle_seed = seed;
    if (isatty(2)) f.progress = on_progress;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pnn_epoch_stats st;
    int rc = pnn_fit(m, train.x, train.y, train.n, &f, &st, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double loss, acc;
    if (rc == 0) rc = pnn_evaluate(m, test.x, test.y, test.n, 256, &loss, &acc, err);
    if (rc) {
        fprintf(stderr, "check-accuracy: %s\n", err);
        return 2;
    }
    printf("fmnist-cnn, 1 epoch, batch 32, Adam lr 1e-3, %d thread(s), seed %llu: train loss "
           "%.4f accuracy %.4f (%.1f s, %.0f images/s); test loss %.4f accuracy %.4f "
           "(%zu images)\n", o.threads, (unsigned long long)seed, st.loss, st.accuracy, secs,
           train.n / secs, loss, acc, test.n);
    int ok = acc >= 0.87;
    printf("check-accuracy: %s (need >= 0.87)\n", ok ? "PASS" : "FAIL");
    pnn_model_free(m);
    pd_dataset_free(&train);
    pd_dataset_free(&test);
    return ok ? 0 : 1;
}
