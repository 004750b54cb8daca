/*
 * train_fmnist.c - train fmnist-cnn on Fashion-MNIST with libpetal-nn.
 *
 * Build against an installed libpetal-nn with pkg-config alone:
 *     cc -O2 train_fmnist.c $(pkg-config --cflags --libs petal-nn zlib) -o train_fmnist
 * Run:
 *     ./train_fmnist [DIR [N_TRAIN [WEIGHTS.npz]]]
 * DIR holds train-images-idx3-ubyte.gz etc. (Debian: dataset-fashion-mnist,
 * /usr/share/datasets/fashion-mnist). N_TRAIN limits the training images.
 */
#include <pnn.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

/* Read a gzipped IDX file: images (magic 0x803) become floats in [0,1],
 * labels (0x801) int32. Returns the item count, 0 on error. */
static size_t read_idx(const char *dir, const char *name, float **x, int32_t **y)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile f = gzopen(path, "rb");
    unsigned char h[16];
    size_t n = 0;
    if (!f) return 0;
    if (gzread(f, h, 8) != 8) goto out;
    uint32_t magic = (uint32_t)h[2] << 8 | h[3];
    n = (size_t)h[4] << 24 | (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
    size_t per = 1;
    if (magic == 0x803) {
        if (gzread(f, h + 8, 8) != 8) goto bad;
        per = ((size_t)h[10] << 8 | h[11]) * ((size_t)h[14] << 8 | h[15]);
    } else if (magic != 0x801) {
        goto bad;
    }
    unsigned char *raw = malloc(n * per);
    if (!raw || gzread(f, raw, (unsigned)(n * per)) != (int)(n * per)) {
        free(raw);
        goto bad;
    }
    if (magic == 0x803) {
        *x = malloc(n * per * sizeof(float));
        for (size_t i = 0; *x && i < n * per; i++) (*x)[i] = raw[i] / 255.0f;
    } else {
        *y = malloc(n * sizeof(int32_t));
        for (size_t i = 0; *y && i < n; i++) (*y)[i] = raw[i];
    }
    free(raw);
    goto out;
bad:
    n = 0;
out:
    gzclose(f);
    return n;
}

static int progress(const pnn_progress *p, void *user)
{
    (void)user;
    if (p->epoch_end || p->batch % 200 == 0)
        fprintf(stderr, "  %zu/%zu  loss %.4f  accuracy %.4f\n", p->seen, p->n, p->loss,
                p->accuracy);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    size_t limit = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
    float *x = NULL, *xt = NULL;
    int32_t *y = NULL, *yt = NULL;
    size_t n = read_idx(dir, "train-images-idx3-ubyte.gz", &x, NULL);
    size_t ny = read_idx(dir, "train-labels-idx1-ubyte.gz", NULL, &y);
    size_t nt = read_idx(dir, "t10k-images-idx3-ubyte.gz", &xt, NULL);
    size_t nty = read_idx(dir, "t10k-labels-idx1-ubyte.gz", NULL, &yt);
    if (!n || n != ny || !nt || nt != nty || !x || !y || !xt || !yt) {
        fprintf(stderr, "cannot read Fashion-MNIST from %s\n", dir);
        return 1;
    }
    if (limit && limit < n) n = limit;

    char err[PNN_ERRLEN];
    pnn_opts o;
    pnn_opts_init(&o); /* openblas, 1 thread, seed 0 */
    pnn_model *m;
    if (pnn_model_new(&m, "fmnist-cnn", &o, err) != PNN_OK) {
        fprintf(stderr, "model: %s\n", err);
        return 1;
    }
    pnn_fit_opts f;
    pnn_fit_opts_init(&f); /* 1 epoch, batch 32, Adam lr 1e-3 */
    f.progress = progress;
    pnn_epoch_stats st;
    double loss, acc;
    if (pnn_fit(m, x, y, n, &f, &st, err) != PNN_OK ||
        pnn_evaluate(m, xt, yt, nt, 256, &loss, &acc, err) != PNN_OK) {
        fprintf(stderr, "training: %s\n", err);
        return 1;
    }
    printf("trained on %zu images: train accuracy %.4f; test loss %.4f, test accuracy %.4f\n",
           n, st.accuracy, loss, acc);
    if (argc > 3 && pnn_save_weights(m, argv[3], err) != PNN_OK) {
        fprintf(stderr, "save: %s\n", err);
        return 1;
    }
    pnn_model_free(m);
    free(x);
    free(y);
    free(xt);
    free(yt);
    return 0;
}
