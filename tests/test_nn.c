/*
 * test_nn.c - libpetal-nn through its public API: presets, Keras layout,
 * determinism, optimizers, fit/evaluate/predict, weights get/set and save/load,
 * and clear errors for bad input.
 */
#include "pnn.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static pnn_model *mk(const char *spec, char *err)
{
    pnn_opts o;
    pnn_opts_init(&o);
    o.seed = 3;
    pnn_model *m = NULL;
    if (pnn_model_new(&m, spec, &o, err) != PNN_OK) return NULL;
    return m;
}

static void t_presets(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("seed-cnn", err);
    ASSERT_MSG(m, "%s", err);
    int h, w, c;
    pnn_input_shape(m, &h, &w, &c);
    ASSERT_EQ_INT(h, 256);
    ASSERT_EQ_INT(w, 256);
    ASSERT_EQ_INT(c, 3);
    ASSERT_EQ_INT(pnn_param_count(m), 7397802);
    ASSERT_EQ_INT(pnn_weights_count(m), 10);
    ASSERT_EQ_INT(pnn_num_classes(m), 10);
    ASSERT_NEAR(pnn_forward_flops(m) / 1e6, 347.2, 0.5);
    pnn_tensor t;
    ASSERT_OK(pnn_weight_info(m, 0, &t));
    ASSERT_EQ_INT(t.ndim, 4);
    ASSERT_EQ_INT(t.shape[0], 3);
    ASSERT_EQ_INT(t.shape[1], 3);
    ASSERT_EQ_INT(t.shape[2], 3);
    ASSERT_EQ_INT(t.shape[3], 16);
    ASSERT_OK(pnn_weight_info(m, 6, &t));
    ASSERT_EQ_INT(t.ndim, 2);
    ASSERT_EQ_INT(t.shape[0], 30 * 30 * 64);
    ASSERT_EQ_INT(t.shape[1], 128);
    ASSERT_OK(pnn_weight_info(m, 9, &t));
    ASSERT_EQ_INT(t.ndim, 1);
    ASSERT_EQ_INT(t.shape[0], 10);
    ASSERT_EQ_INT(pnn_weight_info(m, 10, &t), PNN_ERR_INVAL);
    pnn_model_free(m);
    m = mk("fmnist-cnn", err);
    ASSERT_MSG(m, "%s", err);
    ASSERT_EQ_INT(pnn_param_count(m), 225034);
    ASSERT_NEAR(pnn_forward_flops(m) / 1e6, 5.26, 0.05);
    pnn_model_free(m);
    ASSERT(pnn_preset_json("fmnist-cnn"));
    ASSERT(!pnn_preset_json("nope"));
}

/* Conv output computed by hand for a known kernel, NHWC / HWIO layout. */
static void t_conv_layout(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("{\"input_shape\":[3,3,2],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
                      "\"kernel_size\":2},{\"type\":\"Flatten\"}]}", err);
    ASSERT_MSG(m, "%s", err);
    /* x[h][w][c] = 10h + w + 0.5c... */
    float x[18];
    for (int h = 0; h < 3; h++)
        for (int w = 0; w < 3; w++)
            for (int c = 0; c < 2; c++) x[(h * 3 + w) * 2 + c] = (float)(10 * h + w) + 0.5f * c;
    /* kernel (kh, kw, in, out): K[i][j][c][f] = (f ? -1 : 1) * (i*4 + j*2 + c + 1) */
    float k[16], b[2] = {0.25f, -0.5f};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int c = 0; c < 2; c++)
                for (int f = 0; f < 2; f++)
                    k[((i * 2 + j) * 2 + c) * 2 + f] = (f ? -1.0f : 1.0f) * (i * 4 + j * 2 + c + 1);
    pnn_tensor ts[2] = {{4, {2, 2, 2, 2}, 16, k}, {1, {2}, 2, b}};
    ASSERT_OK(pnn_set_weights(m, ts, 2, err));
    float out[8];
    ASSERT_OK(pnn_predict(m, x, 1, 1, out, err)); /* no softmax: raw outputs */
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 2; ox++)
            for (int f = 0; f < 2; f++) {
                double s = b[f];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++)
                        for (int c = 0; c < 2; c++)
                            s += x[((oy + i) * 3 + ox + j) * 2 + c] *
                                 k[((i * 2 + j) * 2 + c) * 2 + f];
                ASSERT_NEAR(out[(oy * 2 + ox) * 2 + f], s, 1e-4);
            }
    /* spot value: oy=ox=0, f=0: sum (i*4+j*2+c+1) * (10i + j + 0.5c) + 0.25 */
    ASSERT_NEAR(out[0], 1 * 0 + 2 * 0.5 + 3 * 1 + 4 * 1.5 + 5 * 10 + 6 * 10.5 + 7 * 11 +
                            8 * 11.5 + 0.25, 1e-4);
    pnn_model_free(m);
}

/* Flatten is H, W, C order: Dense weight row r sees input element r. */
static void t_flatten_order(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("{\"input_shape\":[2,3,2],\"layers\":[{\"type\":\"Flatten\"},"
                      "{\"type\":\"Dense\",\"units\":12}]}", err);
    ASSERT_MSG(m, "%s", err);
    float w[144] = {0}, b[12] = {0}, x[12], out[12];
    for (int i = 0; i < 12; i++) w[i * 12 + i] = 1.0f; /* identity (in, out) */
    for (int i = 0; i < 12; i++) x[i] = (float)i * 1.5f;
    pnn_tensor ts[2] = {{2, {12, 12}, 144, w}, {1, {12}, 12, b}};
    ASSERT_OK(pnn_set_weights(m, ts, 2, err));
    ASSERT_OK(pnn_predict(m, x, 1, 0, out, err));
    for (int i = 0; i < 12; i++) ASSERT_NEAR(out[i], x[i], 1e-6);
    /* Dense kernel is (in, out): moving the 1 to row 5 of column 0 picks x[5] */
    memset(w, 0, sizeof w);
    w[5 * 12 + 0] = 1.0f;
    ASSERT_OK(pnn_set_weights(m, ts, 2, err));
    ASSERT_OK(pnn_predict(m, x, 1, 0, out, err));
    ASSERT_NEAR(out[0], x[5], 1e-6);
    pnn_model_free(m);
}

static void t_same_padding_and_pool_shapes(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("[{\"type\":\"Input\",\"shape\":[7,5,1]},{\"class_name\":\"Conv2D\","
                      "\"filters\":2,\"kernel_size\":3,\"strides\":2,\"padding\":\"same\"},"
                      "{\"type\":\"MaxPooling2D\",\"pool_size\":[2,1]},{\"type\":\"Flatten\"},"
                      "{\"type\":\"Dense\",\"units\":2}]", err);
    ASSERT_MSG(m, "%s", err);
    pnn_tensor t;
    ASSERT_OK(pnn_weight_info(m, 2, &t));
    /* conv same stride 2: 4x3x2; pool (2,1): 2x3x2 = 12 */
    ASSERT_EQ_INT(t.shape[0], 12);
    /* same padding with a 3x3 all-ones kernel: corner output sums the 2x2 corner */
    float k[18], b[2] = {0, 0}, x[35], out[2];
    for (int i = 0; i < 18; i++) k[i] = (i % 2) ? 0.0f : 1.0f; /* filter 0 ones, filter 1 zero */
    for (int i = 0; i < 35; i++) x[i] = 1.0f;
    ASSERT_OK(pnn_weight_info(m, 0, &t));
    memcpy(t.data, k, sizeof k);
    /* dense picks the (0,0,f=0) pooled value */
    ASSERT_OK(pnn_weight_info(m, 2, &t));
    memset(t.data, 0, t.numel * 4);
    t.data[0] = 1.0f;
    (void)b;
    ASSERT_OK(pnn_predict(m, x, 1, 0, out, err));
    /* Keras 'same', stride 2, in 7: out 4, pad total (4-1)*2+3-7 = 2, top 1: output (0,0)
     * covers rows -1..1, cols -1..1 (5 wide: pad total (3-1)*2+3-5=2, left 1): 4 ones;
     * pooled with (1,0) which covers rows 1..3: 6 ones -> max 6 */
    ASSERT_NEAR(out[0], 6.0, 1e-5);
    pnn_model_free(m);
}

static void t_determinism(void)
{
    char err[PNN_ERRLEN];
    pnn_model *a = mk("fmnist-cnn", err), *b = mk("fmnist-cnn", err);
    ASSERT(a && b);
    size_t n = pnn_param_count(a);
    ASSERT(!memcmp(pnn_weights_data(a), pnn_weights_data(b), n * 4));
    /* Glorot-uniform bound for conv1: sqrt(6 / (9 + 288)); biases zero */
    pnn_tensor k, bias;
    pnn_weight_info(a, 0, &k);
    pnn_weight_info(a, 1, &bias);
    double lim = sqrt(6.0 / (9 + 288)), mx = 0;
    for (size_t i = 0; i < k.numel; i++) mx = fmax(mx, fabs(k.data[i]));
    ASSERT(mx <= lim && mx > 0.9 * lim);
    for (size_t i = 0; i < bias.numel; i++) ASSERT_EQ_INT(bias.data[i] == 0.0f, 1);
    pnn_opts o;
    pnn_opts_init(&o);
    o.seed = 4;
    pnn_model *c = NULL;
    ASSERT_OK(pnn_model_new(&c, "fmnist-cnn", &o, err));
    ASSERT(memcmp(pnn_weights_data(a), pnn_weights_data(c), n * 4));
    /* same seeds, same data: same training result */
    size_t N = 64, insz = pnn_input_size(a);
    float *x = malloc(N * insz * 4);
    int32_t y[64];
    uint64_t s = 1;
    for (size_t i = 0; i < N * insz; i++) x[i] = (float)((i * 2654435761u + s) % 1000) / 1000.0f;
    for (size_t i = 0; i < N; i++) y[i] = (int32_t)(i % 10);
    pnn_fit_opts f;
    pnn_fit_opts_init(&f);
    f.batch_size = 16;
    f.shuffle_seed = 9;
    pnn_epoch_stats sa, sb;
    ASSERT_OK(pnn_fit(a, x, y, N, &f, &sa, err));
    ASSERT_OK(pnn_fit(b, x, y, N, &f, &sb, err));
    ASSERT(!memcmp(pnn_weights_data(a), pnn_weights_data(b), n * 4));
    ASSERT_EQ_INT(sa.loss == sb.loss, 1);
    /* with 2 threads too: work is taken dynamically, results are not */
    ASSERT_OK(pnn_model_set_backend(a, PNN_BACKEND_OPENBLAS, 2));
    ASSERT_OK(pnn_model_set_backend(b, PNN_BACKEND_OPENBLAS, 2));
    for (int r = 0; r < 3; r++) {
        ASSERT_OK(pnn_fit(a, x, y, N, &f, &sa, err));
        ASSERT_OK(pnn_fit(b, x, y, N, &f, &sb, err));
        ASSERT(!memcmp(pnn_weights_data(a), pnn_weights_data(b), n * 4));
    }
    free(x);
    pnn_model_free(a);
    pnn_model_free(b);
    pnn_model_free(c);
}

/* One optimizer step on a 1-weight-per-class model, checked against Keras' formulas. */
static void t_optimizers(void)
{
    char err[PNN_ERRLEN];
    const char *js = "{\"input_shape\":[1,1,1],\"layers\":[{\"type\":\"Dense\",\"units\":2}]}";
    float x[1] = {1.0f};
    int32_t y[1] = {0};
    for (int mode = 0; mode < 4; mode++) {
        pnn_model *m = mk(js, err);
        ASSERT(m);
        float *w = pnn_weights_data(m);
        w[0] = 0.5f;
        w[1] = -0.5f;
        w[2] = w[3] = 0.0f;
        float w0[4];
        memcpy(w0, w, sizeof w0);
        float g[4];
        double l;
        ASSERT_OK(pnn_gradient(m, x, y, 1, 0, NULL, &l, g, NULL, err));
        pnn_fit_opts f;
        pnn_fit_opts_init(&f);
        f.shuffle = 0;
        f.epochs = 2; /* two steps: momentum matters */
        f.optimizer = mode == 0 ? PNN_OPT_ADAM : PNN_OPT_SGD;
        f.learning_rate = 0.1f;
        f.momentum = mode >= 2 ? 0.9f : 0.0f;
        f.nesterov = mode == 3;
        /* replay the expected updates with the gradient recomputed each step */
        double v[4] = {0}, mm[4] = {0}, vv[4] = {0}, we[4];
        for (int i = 0; i < 4; i++) we[i] = w0[i];
        pnn_model *r = mk(js, err);
        for (int step = 1; step <= 2; step++) {
            float wf[4], gg[4];
            for (int i = 0; i < 4; i++) wf[i] = (float)we[i];
            ASSERT_OK(pnn_set_weights_flat(r, wf, 4, err));
            ASSERT_OK(pnn_gradient(r, x, y, 1, 0, NULL, &l, gg, NULL, err));
            for (int i = 0; i < 4; i++) {
                if (mode == 0) {
                    mm[i] = 0.9 * mm[i] + 0.1 * gg[i];
                    vv[i] = 0.999 * vv[i] + 0.001 * gg[i] * gg[i];
                    double lr_t = 0.1 * sqrt(1 - pow(0.999, step)) / (1 - pow(0.9, step));
                    we[i] -= lr_t * mm[i] / (sqrt(vv[i]) + 1e-7);
                } else if (mode == 1) {
                    we[i] -= 0.1 * gg[i];
                } else {
                    v[i] = 0.9 * v[i] - 0.1 * gg[i];
                    we[i] += mode == 3 ? 0.9 * v[i] - 0.1 * gg[i] : v[i];
                }
            }
        }
        ASSERT_OK(pnn_fit(m, x, y, 1, &f, NULL, err));
        for (int i = 0; i < 4; i++) ASSERT_NEAR(w[i], we[i], 1e-5);
        pnn_model_free(m);
        pnn_model_free(r);
    }
}

typedef struct prog {
    int calls, epoch_ends, stop_at;
    double last_loss;
} prog;

static int on_progress(const pnn_progress *p, void *user)
{
    prog *s = user;
    s->calls++;
    s->epoch_ends += p->epoch_end;
    s->last_loss = p->loss;
    return s->stop_at && s->calls >= s->stop_at;
}

/* Learnable synthetic task: class = brightest quadrant. Loss must fall,
 * accuracy rise; predict gives probabilities; progress and cancel work. */
static void t_fit_learns(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("{\"input_shape\":[8,8,1],\"layers\":[{\"type\":\"Conv2D\","
                      "\"filters\":4,\"kernel_size\":3,\"padding\":\"same\",\"activation\":"
                      "\"relu\"},{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":"
                      "\"Dropout\",\"rate\":0.1},{\"type\":\"Dense\",\"units\":4,"
                      "\"activation\":\"softmax\"}]}", err);
    ASSERT_MSG(m, "%s", err);
    size_t N = 400;
    float *x = malloc(N * 64 * 4);
    int32_t *y = malloc(N * 4);
    uint64_t s = 5;
    for (size_t i = 0; i < N; i++) {
        int q = (int)(i % 4);
        y[i] = q;
        for (int p = 0; p < 64; p++) {
            int r = p / 8, c = p % 8, pq = (r >= 4) * 2 + (c >= 4);
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i * 64 + p] = (float)(s >> 40) / 16777216.0f * 0.5f + (pq == q ? 0.5f : 0.0f);
        }
    }
    double l0, a0, l1, a1;
    ASSERT_OK(pnn_evaluate(m, x, y, N, 0, &l0, &a0, err));
    pnn_fit_opts f;
    pnn_fit_opts_init(&f);
    f.epochs = 3;
    f.learning_rate = 0.01f;
    f.progress = on_progress;
    prog pr = {0, 0, 0, 0};
    f.progress_user = &pr;
    pnn_epoch_stats st[3];
    ASSERT_OK(pnn_fit(m, x, y, N, &f, st, err));
    ASSERT_EQ_INT(pr.calls, 3 * 13 + 3);
    ASSERT_EQ_INT(pr.epoch_ends, 3);
    ASSERT(st[2].loss < st[0].loss);
    ASSERT_OK(pnn_evaluate(m, x, y, N, 50, &l1, &a1, err));
    ASSERT_MSG(l1 < l0 && a1 > 0.9, "loss %g -> %g, accuracy %g -> %g", l0, l1, a0, a1);
    float probs[8];
    ASSERT_OK(pnn_predict(m, x, 2, 0, probs, err));
    ASSERT_NEAR(probs[0] + probs[1] + probs[2] + probs[3], 1.0, 1e-5);
    /* cancel after 2 batches */
    prog pc = {0, 0, 2, 0};
    f.progress_user = &pc;
    ASSERT_EQ_INT(pnn_fit(m, x, y, N, &f, NULL, err), PNN_ERR_CANCELLED);
    ASSERT_EQ_INT(pc.calls, 2);
    /* bad labels and arguments */
    y[7] = 4;
    ASSERT_EQ_INT(pnn_fit(m, x, y, N, &f, NULL, err), PNN_ERR_LABEL);
    ASSERT_CONTAINS(err, "label 7");
    ASSERT_EQ_INT(pnn_evaluate(m, x, y, N, 0, NULL, NULL, err), PNN_ERR_LABEL);
    y[7] = 3;
    f.batch_size = 0;
    ASSERT_EQ_INT(pnn_fit(m, x, y, N, &f, NULL, err), PNN_ERR_INVAL);
    f.batch_size = 32;
    f.learning_rate = -1;
    ASSERT_EQ_INT(pnn_fit(m, x, y, N, &f, NULL, err), PNN_ERR_INVAL);
    ASSERT_EQ_INT(pnn_fit(m, NULL, y, N, &f, NULL, err), PNN_ERR_INVAL);
    free(x);
    free(y);
    pnn_model_free(m);
}

static void t_save_load(void)
{
    char err[PNN_ERRLEN], path[64];
    snprintf(path, sizeof path, "/tmp/pnn_test_%d.npz", (int)getpid());
    pnn_model *a = mk("fmnist-cnn", err);
    pnn_opts o;
    pnn_opts_init(&o);
    o.seed = 77;
    pnn_model *b = NULL;
    ASSERT_OK(pnn_model_new(&b, "fmnist-cnn", &o, err));
    size_t n = pnn_param_count(a);
    ASSERT(memcmp(pnn_weights_data(a), pnn_weights_data(b), n * 4));
    ASSERT_OK(pnn_save_weights(a, path, err));
    ASSERT_OK(pnn_load_weights(b, path, err));
    ASSERT(!memcmp(pnn_weights_data(a), pnn_weights_data(b), n * 4));
    /* mismatched model */
    pnn_model *s = mk("{\"input_shape\":[28,28,1],\"layers\":[{\"type\":\"Conv2D\","
                      "\"filters\":8,\"kernel_size\":3},{\"type\":\"MaxPool2D\"},{\"type\":"
                      "\"Conv2D\",\"filters\":64,\"kernel_size\":3},{\"type\":\"MaxPool2D\"},"
                      "{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":128},{\"type\":"
                      "\"Dense\",\"units\":10}]}", err);
    ASSERT_MSG(s, "%s", err);
    ASSERT_EQ_INT(pnn_load_weights(s, path, err), PNN_ERR_SHAPE);
    ASSERT_CONTAINS(err, "arr_0.npy has shape (3,3,1,32)");
    pnn_model *t = mk("{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},"
                      "{\"type\":\"Dense\",\"units\":3}]}", err);
    ASSERT_EQ_INT(pnn_load_weights(t, path, err), PNN_ERR_SHAPE);
    ASSERT_CONTAINS(err, "8 arrays");
    /* truncations at many lengths: always a clean error, never a change */
    FILE *f = fopen(path, "rb");
    ASSERT(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len);
    ASSERT(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    char tpath[80];
    snprintf(tpath, sizeof tpath, "%s.cut", path);
    long cuts[] = {0, 1, 21, 22, 100, 1000, len / 2, len - 100, len - 22, len - 1};
    memcpy(pnn_weights_data(b), pnn_weights_data(s), 4); /* change one float */
    float keep = pnn_weights_data(b)[0];
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        f = fopen(tpath, "wb");
        fwrite(buf, 1, (size_t)cuts[i], f);
        fclose(f);
        int rc = pnn_load_weights(b, tpath, err);
        ASSERT_MSG(rc == PNN_ERR_FORMAT, "cut at %ld: rc %d (%s)", cuts[i], rc, err);
        ASSERT_EQ_INT(pnn_weights_data(b)[0] == keep, 1);
    }
    /* a flipped data byte: CRC mismatch */
    buf[len / 2] ^= 0x40;
    f = fopen(tpath, "wb");
    fwrite(buf, 1, (size_t)len, f);
    fclose(f);
    ASSERT_EQ_INT(pnn_load_weights(b, tpath, err), PNN_ERR_FORMAT);
    ASSERT_CONTAINS(err, "CRC");
    ASSERT_EQ_INT(pnn_load_weights(b, "/nonexistent/x.npz", err), PNN_ERR_IO);
    ASSERT_EQ_INT(pnn_save_weights(a, "/nonexistent/x.npz", err), PNN_ERR_IO);
    remove(tpath);
    remove(path);
    free(buf);
    pnn_model_free(a);
    pnn_model_free(b);
    pnn_model_free(s);
    pnn_model_free(t);
}

static void t_set_weights_errors(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("fmnist-cnn", err);
    size_t nw = pnn_weights_count(m);
    pnn_tensor ts[8];
    float *bufs[8];
    for (size_t i = 0; i < nw; i++) {
        pnn_weight_info(m, i, &ts[i]);
        bufs[i] = calloc(ts[i].numel, 4);
        ts[i].data = bufs[i];
    }
    ASSERT_OK(pnn_get_weights(m, ts, nw, err));
    ASSERT(!memcmp(bufs[0], pnn_weights_data(m), ts[0].numel * 4));
    ASSERT_EQ_INT(pnn_set_weights(m, ts, nw - 1, err), PNN_ERR_SHAPE);
    ASSERT_CONTAINS(err, "expected 8 weight tensors, got 7");
    ts[2].shape[3] = 63;
    ASSERT_EQ_INT(pnn_set_weights(m, ts, nw, err), PNN_ERR_SHAPE);
    ASSERT_CONTAINS(err, "weight tensor 2: expected shape (3, 3, 32, 64), got (3, 3, 32, 63)");
    ts[2].shape[3] = 64;
    ts[5].ndim = 2;
    ASSERT_EQ_INT(pnn_set_weights(m, ts, nw, err), PNN_ERR_SHAPE);
    ts[5].ndim = 9;
    ASSERT_EQ_INT(pnn_set_weights(m, ts, nw, err), PNN_ERR_SHAPE);
    ASSERT_CONTAINS(err, "ndim 9");
    ASSERT_EQ_INT(pnn_get_weights(m, ts, nw, err), PNN_ERR_SHAPE);
    ts[5].ndim = 1;
    ts[5].shape[0] = 128;
    ts[5].data = NULL;
    ASSERT_EQ_INT(pnn_set_weights(m, ts, nw, err), PNN_ERR_INVAL);
    ts[5].data = bufs[5];
    ASSERT_EQ_INT(pnn_set_weights_flat(m, bufs[0], 5, err), PNN_ERR_SHAPE);
    ASSERT_EQ_INT(pnn_set_weights(m, NULL, nw, err), PNN_ERR_INVAL);
    bufs[0][0] = 42.0f;
    ASSERT_OK(pnn_set_weights(m, ts, nw, err));
    ASSERT_NEAR(pnn_weights_data(m)[0], 42.0, 0);
    for (size_t i = 0; i < nw; i++) free(bufs[i]);
    pnn_model_free(m);
}

static void t_bad_json(void)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{", "syntax error"},
        /* a repeated key: Keras keeps the last, cJSON the first; refused */
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Dense\",\"units\":2,\"units\":3}]}",
         "the key \"units\" appears twice in one object"},
        {"{\"input_shape\":[4,4,1],\"input_shape\":[8,8,1],\"layers\":[{\"type\":\"Flatten\"}]}",
         "the key \"input_shape\" appears twice"},
        {"", "cannot open"},
        {"{\"input_shape\":[28,28,1]}", "\"layers\" must be an array"},
        {"{\"layers\":[]}", "missing \"input_shape\""},
        {"{\"input_shape\":[28,28],\"layers\":[]}", "input shape must be"},
        {"{\"input_shape\":[28,0,1],\"layers\":[{\"type\":\"Flatten\"}]}", "integers in"},
        {"{\"input_shape\":[28,28.5,1],\"layers\":[{\"type\":\"Flatten\"}]}", "integers in"},
        {"{\"input_shape\":[28,28,\"1\"],\"layers\":[{\"type\":\"Flatten\"}]}", "integers in"},
        {"{\"input_shape\":[4,4,1],\"layers\":[]}", "no layers"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"}],\"x\":1}",
         "unknown field \"x\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[3]}", "layer 0: must be an object"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{}]}", "missing string \"type\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"LSTM\"}]}", "unknown type \"LSTM\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"kernel_size\":3}]}",
         "missing \"filters\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":-2,"
         "\"kernel_size\":3}]}", "\"filters\" must be an integer"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2}]}",
         "missing \"kernel_size\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":[3]}]}", "\"kernel_size\" must be an integer or [h, w]"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":5}]}", "kernel 5x5 larger than its input 4x4"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":3,\"padding\":\"full\"}]}", "\"padding\" must be"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":3,\"activation\":\"tanh\"}]}", "unknown activation \"tanh\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":3,\"activation\":\"softmax\"}]}", "only supported on Dense"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":3,\"filter\":2}]}", "unknown field \"filter\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Dense\",\"units\":3}]}",
         "Dense needs a flat input"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Dense\"}]}",
         "missing \"units\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Dense\","
         "\"units\":0}]}", "\"units\" must be"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"MaxPool2D\",\"pool_size\":5}]}",
         "pool 5x5 larger"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"MaxPool2D\",\"padding\":\"same\"}]}",
         "only \"padding\": \"valid\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Conv2D\","
         "\"filters\":1,\"kernel_size\":1}]}", "Conv2D needs a 3-D input"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Dropout\"}]}",
         "Dropout needs \"rate\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Dropout\","
         "\"rate\":1.5}]}", "Dropout needs \"rate\""},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Softmax\"}]}",
         "Softmax needs a flat input"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"ReLU\"}]}", "must be a vector"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Dense\","
         "\"units\":1}]}", "at least 2 outputs"},
        {"[{\"type\":\"Conv2D\"}]", "must start with"},
        {"[{\"type\":\"Input\",\"shape\":[1,2]}]", "input shape must be"},
        {"\"fmnist\"", "not a preset"},
        {"{\"input_shape\":[65537,4,1],\"layers\":[{\"type\":\"Flatten\"}]}", "integers in"},
        {"{\"input_shape\":[60000,60000,60000],\"layers\":[{\"type\":\"Flatten\"}]}",
         "too large"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Flatten\"},{\"type\":\"Dense\","
         "\"units\":16000000},{\"type\":\"Dense\",\"units\":1000}]}", "too many parameters"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":65536,"
         "\"kernel_size\":65536,\"padding\":\"same\"}]}", "too many parameters"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":3,\"strides\":0}]}", "\"strides\" values must be integers"},
        {"{\"input_shape\":[4,4,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
         "\"kernel_size\":3,\"activation\":7}]}", "\"activation\" must be a string"},
        {"[{\"type\":\"Input\",\"shape\":[2,2,1]},{\"type\":\"Flatten\"},"
         "{\"type\":\"Dense\",\"units\":2}", "syntax error"},
        {"no-such-preset", "not a preset"},
    };
    char err[PNN_ERRLEN];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pnn_model *m = (pnn_model *)1;
        err[0] = 0;
        int rc = pnn_model_new(&m, cases[i].json, NULL, err);
        ASSERT_MSG(rc == PNN_ERR_JSON || rc == PNN_ERR_IO, "case %zu: rc %d", i, rc);
        ASSERT_MSG(m == NULL, "case %zu: model not NULL", i);
        ASSERT_MSG(strstr(err, cases[i].want), "case %zu: \"%s\" lacks \"%s\"", i, err,
                   cases[i].want);
    }
    /* from a file */
    char path[64];
    snprintf(path, sizeof path, "/tmp/pnn_model_%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    fputs(pnn_preset_json("fmnist-cnn"), f);
    fclose(f);
    pnn_model *m = NULL;
    ASSERT_OK(pnn_model_new(&m, path, NULL, err));
    ASSERT_EQ_INT(pnn_param_count(m), 225034);
    pnn_model_free(m);
    remove(path);
    pnn_opts o;
    pnn_opts_init(&o);
    o.threads = 0;
    ASSERT_EQ_INT(pnn_model_new(&m, "fmnist-cnn", &o, err), PNN_ERR_INVAL);
    o.threads = 1;
    o.backend = (pnn_backend)5;
    ASSERT_EQ_INT(pnn_model_new(&m, "fmnist-cnn", &o, err), PNN_ERR_BACKEND);
    pnn_backend be;
    ASSERT_OK(pnn_backend_parse("reference", &be));
    ASSERT_EQ_INT(be, PNN_BACKEND_REFERENCE);
    ASSERT_EQ_INT(pnn_backend_parse("cuda", &be), PNN_ERR_BACKEND);
    ASSERT_STR_EQ(pnn_backend_name(PNN_BACKEND_OPENBLAS), "openblas");
    ASSERT_STR_EQ(pnn_strerror(PNN_ERR_SHAPE), "tensor count or shape mismatch");
    ASSERT_STR_EQ(pnn_strerror(-999), "unknown error");
    pnn_model_free(NULL);
}

/* FedProx through fit: with a huge mu the weights stay at the reference. */
static void t_fedprox_fit(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("{\"input_shape\":[1,1,4],\"layers\":[{\"type\":\"Dense\",\"units\":3}]}",
                      err);
    pnn_model *m2 = mk("{\"input_shape\":[1,1,4],\"layers\":[{\"type\":\"Dense\",\"units\":3}]}",
                       err);
    float x[40];
    int32_t y[10];
    for (int i = 0; i < 40; i++) x[i] = (float)((i * 7) % 5) - 2.0f;
    for (int i = 0; i < 10; i++) y[i] = i % 3;
    float ref[15];
    memcpy(ref, pnn_weights_data(m), sizeof ref);
    pnn_fit_opts f;
    pnn_fit_opts_init(&f);
    f.optimizer = PNN_OPT_SGD;
    f.learning_rate = 0.01f;
    f.epochs = 5;
    f.batch_size = 5;
    ASSERT_OK(pnn_fit(m2, x, y, 10, &f, NULL, err));
    f.proximal_mu = 50.0f; /* lr * mu = 0.5: strongly pulled back */
    ASSERT_OK(pnn_fit(m, x, y, 10, &f, NULL, err));
    double d_prox = 0, d_plain = 0;
    for (int i = 0; i < 15; i++) {
        d_prox += fabs(pnn_weights_data(m)[i] - ref[i]);
        d_plain += fabs(pnn_weights_data(m2)[i] - ref[i]);
    }
    ASSERT_MSG(d_prox < 0.2 * d_plain, "prox %g plain %g", d_prox, d_plain);
    pnn_model_free(m);
    pnn_model_free(m2);
}

/* Weights files interoperate with numpy (Debian's python3-numpy): numpy reads
 * what we save, we load what numpy.savez writes (zip64 extras included). */
static void t_numpy_interop(void)
{
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        printf("SKIP: test_nn/t_numpy_interop python3-numpy not installed\n");
        return;
    }
    char err[PNN_ERRLEN], a[64], b[64], cmd[512];
    snprintf(a, sizeof a, "/tmp/pnn_np_%d_a.npz", (int)getpid());
    snprintf(b, sizeof b, "/tmp/pnn_np_%d_b.npz", (int)getpid());
    pnn_model *m = mk("fmnist-cnn", err);
    ASSERT(m);
    size_t n = pnn_param_count(m);
    float *orig = malloc(n * 4);
    memcpy(orig, pnn_weights_data(m), n * 4);
    ASSERT_OK(pnn_save_weights(m, a, err));
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np, sys; d = np.load(sys.argv[1]); "
             "assert d['arr_0'].shape == (3, 3, 1, 32) and d['arr_4'].shape == (1600, 128); "
             "assert d['arr_7'].dtype == np.float32 and len(d.files) == 8; "
             "np.savez(sys.argv[2], *[d['arr_%%d' %% i] * 2 for i in range(8)])\" %s %s", a, b);
    ASSERT_EQ_INT(system(cmd), 0);
    ASSERT_OK(pnn_load_weights(m, b, err));
    for (size_t i = 0; i < n; i += 997) ASSERT_NEAR(pnn_weights_data(m)[i], 2 * orig[i], 0);
    remove(a);
    remove(b);
    free(orig);
    pnn_model_free(m);
}

/* Non-finite inputs: a clear error, not garbage weights. */
static void t_nonfinite(void)
{
    char err[PNN_ERRLEN];
    pnn_model *m = mk("{\"input_shape\":[1,1,4],\"layers\":[{\"type\":\"Dense\",\"units\":3}]}",
                      err);
    ASSERT(m);
    float x[8] = {1, 2, 3, 4, 1, NAN, 0, 0};
    int32_t y[2] = {0, 1};
    pnn_fit_opts f;
    pnn_fit_opts_init(&f);
    f.shuffle = 0;
    f.batch_size = 1;
    ASSERT_EQ_INT(pnn_fit(m, x, y, 2, &f, NULL, err), PNN_ERR_NUMERIC);
    ASSERT_CONTAINS(err, "not finite");
    pnn_model_free(m);
}

TEST_MAIN(TEST(t_presets), TEST(t_nonfinite), TEST(t_numpy_interop), TEST(t_conv_layout), TEST(t_flatten_order),
          TEST(t_same_padding_and_pool_shapes), TEST(t_determinism), TEST(t_optimizers),
          TEST(t_fit_learns), TEST(t_save_load), TEST(t_set_weights_errors), TEST(t_bad_json),
          TEST(t_fedprox_fit))
