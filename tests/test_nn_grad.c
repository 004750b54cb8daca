/*
 * test_nn_grad.c - finite-difference gradient checks for every nn layer, the
 * fused softmax cross-entropy, a whole small model and FedProx's proximal
 * term; and agreement of the reference and openblas backends on both presets.
 */
#include "nn_int.h"
#include "test.h"

static uint64_t rng_state = 12345;
static int fd_inputs_only; /* check_model: skip the weights */
static double rel_inf(const float *a, const float *b, size_t n);

static float urand(void) { return pnn__rng_uniform(&rng_state) * 2.0f - 1.0f; }

static pnn_model *mk(const char *json, pnn_backend be)
{
    pnn_opts o;
    pnn_opts_init(&o);
    o.backend = be;
    o.seed = 7;
    pnn_model *m = NULL;
    char err[PNN_ERRLEN];
    if (pnn_model_new(&m, json, &o, err) != PNN_OK) fprintf(stderr, "model: %s\n", err);
    return m;
}

/* Values separated by >= 0.01 (shuffled), so +-eps never crosses a ReLU kink
 * or changes a max-pool winner. */
static void separated(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = ((float)i - (float)n / 2.0f) * 0.01f + 0.005f;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(pnn__rng_next(&rng_state) % (i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* L = sum r .* layer(x), in double. */
static double layer_loss(pnn_model *m, nn_layer *l, int b, const float *x, float *y,
                         const float *r, uint64_t drop_seed)
{
    m->drop_rng = drop_seed;
    pnn__layer_forward(m, l, b, x, y, 1);
    double s = 0.0;
    for (size_t i = 0; i < (size_t)b * l->osz; i++) s += (double)r[i] * y[i];
    return s;
}

static int close_enough(double a, double n, double abs_tol, double rel_tol)
{
    return fabs(a - n) <= abs_tol + rel_tol * fmax(fabs(a), fabs(n));
}

/* Check d/dx and d/dw of layer li of the model from json (batch 2). Returns the
 * number of mismatches (printed). */
static int check_layer(const char *json, int li, int sep, double eps)
{
    pnn_model *m = mk(json, PNN_BACKEND_REFERENCE);
    if (!m) return 1;
    const int b = 2;
    pnn__ensure_batch(m, b, 1);
    m->g = calloc(m->nparams + 1, sizeof(float));
    nn_layer *l = &m->L[li];
    size_t nx = (size_t)b * l->isz, ny = (size_t)b * l->osz;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *r = malloc(ny * 4), *gy = malloc(ny * 4);
    float *dx = calloc(nx, 4);
    if (sep) separated(x, nx);
    else
        for (size_t i = 0; i < nx; i++) x[i] = urand();
    for (size_t i = 0; i < ny; i++) r[i] = urand();
    for (size_t i = 0; i < m->nparams; i++) m->w[i] = urand() * 0.5f;
    uint64_t ds = 99;
    layer_loss(m, l, b, x, y, r, ds);
    memcpy(gy, r, ny * 4);
    pnn__layer_backward(m, l, b, x, y, gy, dx);
    int bad = 0;
    size_t stride = nx > 60 ? nx / 60 : 1;
    for (size_t i = 0; i < nx; i += stride) {
        float s = x[i];
        x[i] = s + (float)eps;
        double lp = layer_loss(m, l, b, x, y, r, ds);
        x[i] = s - (float)eps;
        double lm = layer_loss(m, l, b, x, y, r, ds);
        x[i] = s;
        double num = (lp - lm) / (2 * eps);
        if (!close_enough(dx[i], num, 5e-3, 1e-2)) {
            if (bad++ < 5) fprintf(stderr, "  layer %d dx[%zu]: analytic %g numeric %g\n", li, i,
                                   dx[i], num);
        }
    }
    if (l->wn) {
        size_t np = l->wn + l->bn, wstride = np > 80 ? np / 80 : 1;
        for (size_t k = 0; k < np; k += wstride) {
            size_t i = l->woff + k;
            float s = m->w[i];
            m->w[i] = s + (float)eps;
            double lp = layer_loss(m, l, b, x, y, r, ds);
            m->w[i] = s - (float)eps;
            double lm = layer_loss(m, l, b, x, y, r, ds);
            m->w[i] = s;
            double num = (lp - lm) / (2 * eps);
            if (!close_enough(m->g[i], num, 5e-3, 1e-2)) {
                if (bad++ < 5) fprintf(stderr, "  layer %d dw[%zu]: analytic %g numeric %g\n",
                                       li, k, m->g[i], num);
            }
        }
    }
    free(x);
    free(y);
    free(r);
    free(gy);
    free(dx);
    pnn_model_free(m);
    return bad;
}

static void t_grad_conv_valid(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[6,5,3],\"layers\":[{\"type\":\"Conv2D\","
                              "\"filters\":4,\"kernel_size\":3},{\"type\":\"Flatten\"}]}",
                              0, 0, 1e-2), 0);
}

static void t_grad_conv_same_stride(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[7,6,2],\"layers\":[{\"type\":\"Conv2D\","
                              "\"filters\":3,\"kernel_size\":[3,2],\"strides\":[2,1],"
                              "\"padding\":\"same\"},{\"type\":\"Flatten\"}]}",
                              0, 0, 1e-2), 0);
}

static void t_grad_conv_1x1(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[3,4,5],\"layers\":[{\"type\":\"Conv2D\","
                              "\"filters\":2,\"kernel_size\":1},{\"type\":\"Flatten\"}]}",
                              0, 0, 1e-2), 0);
}

static void t_grad_conv_relu(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[5,5,2],\"layers\":[{\"type\":\"Conv2D\","
                              "\"filters\":3,\"kernel_size\":2,\"activation\":\"relu\"},"
                              "{\"type\":\"Flatten\"}]}",
                              0, 0, 1e-3), 0);
}

static void t_grad_maxpool(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[6,7,3],\"layers\":[{\"type\":\"MaxPool2D\","
                              "\"pool_size\":2},{\"type\":\"Flatten\"}]}", 0, 1, 1e-3), 0);
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[7,7,2],\"layers\":[{\"type\":\"MaxPool2D\","
                              "\"pool_size\":3,\"strides\":2},{\"type\":\"Flatten\"}]}", 0, 1,
                              1e-3), 0);
}

static void t_grad_dense(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[1,1,7],\"layers\":[{\"type\":\"Dense\","
                              "\"units\":5}]}", 0, 0, 1e-2), 0);
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[1,1,7],\"layers\":[{\"type\":\"Dense\","
                              "\"units\":5,\"activation\":\"relu\"},{\"type\":\"Dense\","
                              "\"units\":3}]}", 0, 0, 1e-3), 0);
    /* a softmax activation that is not the last layer: full Jacobian */
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[1,1,7],\"layers\":[{\"type\":\"Dense\","
                              "\"units\":5,\"activation\":\"softmax\"},{\"type\":\"Dense\","
                              "\"units\":3}]}", 0, 0, 1e-3), 0);
}

static void t_grad_relu(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[3,3,4],\"layers\":[{\"type\":\"ReLU\"},"
                              "{\"type\":\"Flatten\"}]}", 0, 1, 1e-3), 0);
}

static void t_grad_softmax(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[1,1,6],\"layers\":[{\"type\":\"Softmax\"},"
                              "{\"type\":\"Dense\",\"units\":2}]}", 0, 0, 1e-3), 0);
}

static void t_grad_flatten(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[2,3,4],\"layers\":[{\"type\":\"Flatten\"},"
                              "{\"type\":\"Dense\",\"units\":2}]}", 0, 0, 1e-2), 0);
}

static void t_grad_dropout(void)
{
    ASSERT_EQ_INT(check_layer("{\"input_shape\":[1,1,40],\"layers\":[{\"type\":\"Dropout\","
                              "\"rate\":0.4},{\"type\":\"Dense\",\"units\":2}]}", 0, 0, 1e-2),
                  0);
}

/* Central difference of the model loss in coordinate *v. Returns 1 (skip) when
 * the steps eps and eps/2 disagree: the loss is not smooth there. */
static int fd_at(pnn_model *m, float *v, const float *x, const int32_t *y, int n, float mu,
                 const float *ref, double eps, double *num)
{
    float s = *v;
    double est[2];
    for (int k = 0; k < 2; k++) {
        double h = k ? eps / 2 : eps, lp, lm;
        *v = s + (float)h;
        pnn_gradient(m, x, y, n, mu, ref, &lp, NULL, NULL, NULL);
        *v = s - (float)h;
        pnn_gradient(m, x, y, n, mu, ref, &lm, NULL, NULL, NULL);
        *v = s;
        est[k] = (lp - lm) / (2 * h);
    }
    *num = est[0];
    return !close_enough(est[0], est[1], 3e-4, 1e-2);
}

/* Whole-model check through the public pnn_gradient: d loss / d w and d x. */
static int check_model(pnn_model *m, int n, float mu, const float *ref, double eps)
{
    size_t insz = pnn_input_size(m), np = pnn_param_count(m);
    float *x = malloc((size_t)n * insz * 4), *dw = malloc(np * 4), *dx = malloc(n * insz * 4);
    int32_t *y = malloc((size_t)n * 4);
    for (size_t i = 0; i < (size_t)n * insz; i++) x[i] = urand();
    for (int i = 0; i < n; i++) y[i] = (int32_t)(pnn__rng_next(&rng_state) % pnn_num_classes(m));
    double l0;
    int bad = 0;
    if (pnn_gradient(m, x, y, n, mu, ref, &l0, dw, dx, NULL) != PNN_OK) return 99;
    float *w = pnn_weights_data(m);
    size_t stride = np > 150 ? np / 150 : 1;
    int checked = 0, kinks = 0;
    for (size_t i = 0; i < np && !fd_inputs_only; i += stride) {
        double num;
        if (fd_at(m, w + i, x, y, n, mu, ref, eps, &num)) {
            kinks++;
            continue;
        }
        checked++;
        if (!close_enough(dw[i], num, 1e-3, 2e-2) && bad++ < 5)
            fprintf(stderr, "  dw[%zu]: analytic %g numeric %g\n", i, dw[i], num);
    }
    size_t xs = (size_t)n * insz > 60 ? (size_t)n * insz / 60 : 1;
    for (size_t i = 0; i < (size_t)n * insz; i += xs) {
        double num;
        if (fd_at(m, x + i, x, y, n, mu, ref, eps, &num)) {
            kinks++;
            continue;
        }
        checked++;
        if (!close_enough(dx[i], num, 1e-3, 2e-2) && bad++ < 5)
            fprintf(stderr, "  dx[%zu]: analytic %g numeric %g\n", i, dx[i], num);
    }
    /* a ReLU kink or max-pool switch inside [-eps, eps] makes that coordinate's
     * difference quotient meaningless; such points must stay rare */
    if (kinks * 20 > checked + kinks) {
        fprintf(stderr, "  %d of %d coordinates hit kinks\n", kinks, checked + kinks);
        bad++;
    }
    free(x);
    free(dw);
    free(dx);
    free(y);
    return bad;
}

static void t_grad_loss(void)
{
    /* logits are the input itself: checks the fused softmax cross-entropy */
    pnn_model *m = mk("{\"input_shape\":[1,1,6],\"layers\":[{\"type\":\"Flatten\"}]}",
                      PNN_BACKEND_REFERENCE);
    ASSERT(m);
    ASSERT_EQ_INT(check_model(m, 3, 0, NULL, 1e-3), 0);
    pnn_model_free(m);
    /* final Softmax layer, fused */
    m = mk("{\"input_shape\":[1,1,6],\"layers\":[{\"type\":\"Softmax\"}]}",
           PNN_BACKEND_REFERENCE);
    ASSERT(m);
    ASSERT_EQ_INT(check_model(m, 3, 0, NULL, 1e-3), 0);
    pnn_model_free(m);
    /* numerically stable with huge logits */
    m = mk("{\"input_shape\":[1,1,3],\"layers\":[{\"type\":\"Flatten\"}]}",
           PNN_BACKEND_REFERENCE);
    float x[3] = {1000.0f, -1000.0f, 999.0f};
    int32_t y[1] = {2};
    float dx[3];
    double l;
    ASSERT_OK(pnn_gradient(m, x, y, 1, 0, NULL, &l, NULL, dx, NULL));
    ASSERT_NEAR(l, 1.3132616875, 1e-5); /* log(1 + e) */
    ASSERT_NEAR(dx[0], 0.7310586, 1e-5);
    ASSERT_NEAR(dx[2], 0.2689414 - 1.0, 1e-5);
    ASSERT(isfinite(dx[1]));
    pnn_model_free(m);
}

static const char *SMALL =
    "{\"input_shape\":[9,8,2],\"layers\":["
    "{\"type\":\"Conv2D\",\"filters\":4,\"kernel_size\":3,\"padding\":\"same\","
    "\"activation\":\"relu\"},"
    "{\"type\":\"MaxPool2D\",\"pool_size\":2},"
    "{\"type\":\"Conv2D\",\"filters\":5,\"kernel_size\":2,\"strides\":2,\"activation\":\"relu\"},"
    "{\"type\":\"Flatten\"},"
    "{\"type\":\"Dense\",\"units\":6,\"activation\":\"relu\"},"
    "{\"type\":\"Dropout\",\"rate\":0.3},"
    "{\"type\":\"Dense\",\"units\":3,\"activation\":\"softmax\"}]}";

/* unfused pool after a ReLU conv (3x3/2 pool applies the ReLU mask), and a
 * fused 1x1 linear conv + 2x2 pool with odd sizes */
static const char *SMALL2 =
    "{\"input_shape\":[10,9,3],\"layers\":["
    "{\"type\":\"Conv2D\",\"filters\":4,\"kernel_size\":3,\"activation\":\"relu\"},"
    "{\"type\":\"MaxPool2D\",\"pool_size\":3,\"strides\":2},"
    "{\"type\":\"Conv2D\",\"filters\":3,\"kernel_size\":1},"
    "{\"type\":\"MaxPool2D\",\"pool_size\":2},"
    "{\"type\":\"Flatten\"},"
    "{\"type\":\"Dense\",\"units\":3,\"activation\":\"softmax\"}]}";

static void t_grad_small_model(void)
{
    pnn_model *m = mk(SMALL, PNN_BACKEND_REFERENCE);
    ASSERT(m);
    ASSERT_EQ_INT(check_model(m, 3, 0, NULL, 1e-3), 0);
    pnn_model *m2 = mk(SMALL2, PNN_BACKEND_OPENBLAS);
    ASSERT(m2);
    ASSERT_EQ_INT(check_model(m2, 3, 0, NULL, 1e-3), 0);
    pnn_model_free(m2);
    pnn_model_set_backend(m, PNN_BACKEND_OPENBLAS, 1);
    ASSERT_EQ_INT(check_model(m, 3, 0, NULL, 1e-3), 0);
    pnn_model_free(m);
}

/* Images too big for one row block: the fused conv+pool runs over runs of rows
 * with row-shifted patches (same padding, horizontal stride 2; and valid). */
static void t_grad_large_images(void)
{
    static const char *models[] = {
        "{\"input_shape\":[40,24,64],\"layers\":[{\"type\":\"Conv2D\",\"filters\":4,"
        "\"kernel_size\":3,\"strides\":[1,2],\"padding\":\"same\",\"activation\":\"relu\"},"
        "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":3}]}",
        "{\"input_shape\":[24,25,64],\"layers\":[{\"type\":\"Conv2D\",\"filters\":4,"
        "\"kernel_size\":3,\"activation\":\"relu\"},"
        "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":3}]}",
        "{\"input_shape\":[100,100,3],\"layers\":[{\"type\":\"Conv2D\",\"filters\":4,"
        "\"kernel_size\":3,\"activation\":\"relu\"},"
        "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":3}]}",
    };
    for (int i = 0; i < 3; i++) {
        pnn_model *m = mk(models[i], PNN_BACKEND_OPENBLAS), *r = mk(models[i],
                                                                    PNN_BACKEND_OPENBLAS);
        ASSERT(m && r);
        pnn__ensure_batch(m, 2, 1);
        ASSERT_MSG((size_t)m->L[0].oh * m->L[0].ow > (size_t)m->L[0].chunk,
                   "model %d: image fits one block (%d rows)", i, m->L[0].chunk);
        /* row-shifted patches == plain im2col */
        r->L[0].rowshift = 0;
        size_t insz = pnn_input_size(m), np = pnn_param_count(m);
        float *x = malloc(2 * insz * 4), *ga = malloc(np * 4), *gb = malloc(np * 4);
        float *xa = malloc(2 * insz * 4), *xb = malloc(2 * insz * 4);
        int32_t y[2] = {0, 2};
        for (size_t k = 0; k < 2 * insz; k++) x[k] = urand();
        double la, lb;
        ASSERT_OK(pnn_gradient(m, x, y, 2, 0, NULL, &la, ga, xa, NULL));
        ASSERT_OK(pnn_gradient(r, x, y, 2, 0, NULL, &lb, gb, xb, NULL));
        ASSERT_REL(la, lb, 1e-6);
        double e = rel_inf(ga, gb, np);
        ASSERT_MSG(e < 1e-5, "model %d: weight gradients differ: %g", i, e);
        e = rel_inf(xa, xb, 2 * insz);
        ASSERT_MSG(e < 1e-5, "model %d: input gradients differ: %g", i, e);
        /* and the input gradient against finite differences (a weight moves
         * every pixel: too many ReLU/pool kinks for a weight check here) */
        fd_inputs_only = 1;
        int bad = check_model(m, 2, 0, NULL, 1e-3);
        fd_inputs_only = 0;
        ASSERT_EQ_INT(bad, 0);
        free(x);
        free(ga);
        free(gb);
        free(xa);
        free(xb);
        pnn_model_free(m);
        pnn_model_free(r);
    }
}

/* Row pairs (fused conv + pool with thin kernel rows, see layers.c): against
 * row-shifted patches and plain im2col; kernel heights 2, 3, 5, same padding,
 * horizontal stride 2, odd conv sizes (the pool drops a row and a column), a
 * pairs conv after another layer (its input gradient flows on), ic 1..3. */
static void t_grad_row_pairs(void)
{
    static const char *models[] = {
        "{\"input_shape\":[100,100,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":2,"
        "\"kernel_size\":1},{\"type\":\"Conv2D\",\"filters\":3,\"kernel_size\":3,"
        "\"padding\":\"same\",\"activation\":\"relu\"},"
        "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":3}]}",
        "{\"input_shape\":[101,99,1],\"layers\":[{\"type\":\"Conv2D\",\"filters\":4,"
        "\"kernel_size\":5,\"activation\":\"relu\"},"
        "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":3}]}",
        "{\"input_shape\":[180,100,3],\"layers\":[{\"type\":\"Conv2D\",\"filters\":4,"
        "\"kernel_size\":[2,3],\"strides\":[1,2],\"padding\":\"same\"},"
        "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\",\"units\":3}]}",
    };
    for (int i = 0; i < 3; i++) {
        pnn_model *m = mk(models[i], PNN_BACKEND_OPENBLAS);
        pnn_model *q = mk(models[i], PNN_BACKEND_OPENBLAS), *r = mk(models[i],
                                                                   PNN_BACKEND_OPENBLAS);
        ASSERT(m && q && r);
        int pc = m->L[0].kh > 1 ? 0 : 1; /* the pairs conv */
        pnn__ensure_batch(m, 2, 1);
        ASSERT_MSG(m->pe_n > 0 && (size_t)m->L[pc].oh * m->L[pc].ow > (size_t)m->L[pc].chunk,
                   "model %d: row pairs not used", i);
        q->L[pc].pairs = 0; /* row-shifted patches */
        r->L[pc].pairs = 0; /* plain im2col */
        r->L[pc].rowshift = 0;
        size_t insz = pnn_input_size(m), np = pnn_param_count(m);
        float *x = malloc(2 * insz * 4), *g[3], *dx[3];
        int32_t y[2] = {0, 2};
        for (size_t k = 0; k < 2 * insz; k++) x[k] = urand();
        pnn_model *mm[3] = {m, q, r};
        double l[3];
        for (int k = 0; k < 3; k++) {
            g[k] = malloc(np * 4);
            dx[k] = malloc(2 * insz * 4);
            ASSERT_OK(pnn_gradient(mm[k], x, y, 2, 0, NULL, &l[k], g[k], dx[k], NULL));
        }
        for (int k = 1; k < 3; k++) {
            ASSERT_REL(l[0], l[k], 1e-6);
            double e = rel_inf(g[0], g[k], np);
            ASSERT_MSG(e < 1e-5, "model %d vs %d: weight gradients differ: %g", i, k, e);
            e = rel_inf(dx[0], dx[k], 2 * insz);
            ASSERT_MSG(e < 1e-5, "model %d vs %d: input gradients differ: %g", i, k, e);
        }
        /* 2 threads (per-thread pair gradients, reduced per unit): same bits */
        ASSERT_OK(pnn_model_set_backend(q, PNN_BACKEND_OPENBLAS, 2));
        q->L[pc].pairs = 1;
        ASSERT_OK(pnn_gradient(q, x, y, 2, 0, NULL, &l[1], g[1], dx[1], NULL));
        ASSERT_MSG(!memcmp(g[0], g[1], np * 4) && !memcmp(dx[0], dx[1], 2 * insz * 4),
                   "model %d: 2 threads differ from 1", i);
        fd_inputs_only = 1;
        int bad = check_model(m, 1, 0, NULL, 1e-3);
        fd_inputs_only = 0;
        ASSERT_EQ_INT(bad, 0);
        for (int k = 0; k < 3; k++) {
            free(g[k]);
            free(dx[k]);
            pnn_model_free(mm[k]);
        }
        free(x);
    }
}

/* Random fused conv + pool models (kernel 1..5 x 1..5, 1..4 input channels,
 * 1..20 filters, horizontal stride 1..2, valid/same, ReLU or linear, first
 * layer or after a 1x1 conv, images up to 140x140 so that row blocks and row
 * pairs come into play): row pairs, row-shifted patches, plain im2col and 2
 * threads give the same loss gradients (weights and input). */
static void t_conv_paths_random(void)
{
    uint64_t rs = 12345;
#define RND(lo, hi) ((lo) + (int)(pnn__rng_next(&rs) % (uint64_t)((hi) - (lo) + 1)))
    int built = 0, paired = 0;
    for (int it = 0; it < 24; it++) {
        int kh = RND(1, 5), kw = RND(1, 5), ic = RND(1, 4), oc = RND(1, 20), sw = RND(1, 2);
        int same = RND(0, 1), relu = RND(0, 1), pre = RND(0, 1);
        int H = RND(kh + 2, 140), W = RND(kw + 2, 140);
        char js[1024];
        snprintf(js, sizeof js,
                 "{\"input_shape\":[%d,%d,%d],\"layers\":[%s{\"type\":\"Conv2D\",\"filters\":%d,"
                 "\"kernel_size\":[%d,%d],\"strides\":[1,%d],\"padding\":\"%s\"%s},"
                 "{\"type\":\"MaxPool2D\"},{\"type\":\"Flatten\"},{\"type\":\"Dense\","
                 "\"units\":3}]}",
                 H, W, ic, pre ? "{\"type\":\"Conv2D\",\"filters\":2,\"kernel_size\":1}," : "",
                 oc, kh, kw, sw, same ? "same" : "valid", relu ? ",\"activation\":\"relu\"" : "");
        pnn_model *m[4];
        int ok = 1;
        for (int k = 0; k < 4 && ok; k++) {
            pnn_opts o;
            pnn_opts_init(&o);
            o.seed = 7;
            o.threads = k == 3 ? 2 : 1;
            char err[PNN_ERRLEN];
            if (pnn_model_new(&m[k], js, &o, err)) ok = 0; /* e.g. too small for the pool */
            else if (k == 1 || k == 2) {
                m[k]->L[pre].pairs = 0;
                if (k == 2) m[k]->L[pre].rowshift = 0;
            }
        }
        if (!ok) continue;
        built++;
        size_t insz = pnn_input_size(m[0]), np = pnn_param_count(m[0]);
        float *x = malloc(3 * insz * 4), *g[4], *dx[4];
        int32_t y[3] = {0, 1, 2};
        for (size_t i = 0; i < 3 * insz; i++) x[i] = urand();
        double l[4];
        for (int k = 0; k < 4; k++) {
            g[k] = malloc(np * 4);
            dx[k] = malloc(3 * insz * 4);
            ASSERT_OK(pnn_gradient(m[k], x, y, 3, 0, NULL, &l[k], g[k], dx[k], NULL));
        }
        paired += m[0]->pe_n > 0 && (size_t)m[0]->L[pre].oh * m[0]->L[pre].ow >
                                        (size_t)m[0]->L[pre].chunk;
        for (int k = 1; k < 4; k++) {
            double eg = rel_inf(g[k], g[0], np), ex = rel_inf(dx[k], dx[0], 3 * insz);
            ASSERT_MSG(eg < 1e-4 && ex < 1e-4, "path %d: gradients differ (%g, %g) on %s", k, eg,
                       ex, js);
        }
        for (int k = 0; k < 4; k++) {
            free(g[k]);
            free(dx[k]);
            pnn_model_free(m[k]);
        }
        free(x);
    }
#undef RND
    ASSERT_MSG(built >= 16 && paired >= 4, "only %d models built, %d with row pairs", built,
               paired);
}

static void t_grad_fedprox(void)
{
    pnn_model *m = mk(SMALL, PNN_BACKEND_OPENBLAS);
    ASSERT(m);
    size_t np = pnn_param_count(m);
    float *ref = malloc(np * 4);
    for (size_t i = 0; i < np; i++) ref[i] = pnn_weights_data(m)[i] + 0.3f * urand();
    ASSERT_EQ_INT(check_model(m, 2, 0.7f, ref, 1e-3), 0);
    /* the proximal part alone: gradient difference is mu * (w - ref) */
    float *g0 = malloc(np * 4), *g1 = malloc(np * 4);
    float x[9 * 8 * 2];
    int32_t y[1] = {1};
    for (size_t i = 0; i < sizeof x / 4; i++) x[i] = urand();
    double l0, l1;
    ASSERT_OK(pnn_gradient(m, x, y, 1, 0, NULL, &l0, g0, NULL, NULL));
    ASSERT_OK(pnn_gradient(m, x, y, 1, 0.5f, ref, &l1, g1, NULL, NULL));
    double p = 0;
    for (size_t i = 0; i < np; i++) {
        double d = (double)pnn_weights_data(m)[i] - ref[i];
        p += d * d;
        ASSERT_NEAR(g1[i] - g0[i], 0.5 * d, 1e-5);
    }
    ASSERT_NEAR(l1 - l0, 0.25 * p, 1e-4 * p);
    free(g0);
    free(g1);
    free(ref);
    pnn_model_free(m);
}

/* ||a - b||_inf / ||b||_inf */
static double rel_inf(const float *a, const float *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return mx > 0 ? d / mx : d;
}

static void backends_agree(const char *preset, int n)
{
    pnn_model *a = mk(preset, PNN_BACKEND_OPENBLAS), *r = mk(preset, PNN_BACKEND_REFERENCE);
    ASSERT(a && r);
    size_t insz = pnn_input_size(a), np = pnn_param_count(a);
    int C = pnn_num_classes(a);
    float *x = malloc((size_t)n * insz * 4);
    int32_t *y = malloc((size_t)n * 4);
    for (size_t i = 0; i < (size_t)n * insz; i++) x[i] = pnn__rng_uniform(&rng_state);
    for (int i = 0; i < n; i++) y[i] = i % C;
    float *pa = malloc((size_t)n * C * 4), *pr = malloc((size_t)n * C * 4);
    float *ga = malloc(np * 4), *gr = malloc(np * 4);
    float *dxa = malloc((size_t)n * insz * 4), *dxr = malloc((size_t)n * insz * 4);
    ASSERT_OK(pnn_predict(a, x, n, n, pa, NULL));
    ASSERT_OK(pnn_predict(r, x, n, n, pr, NULL));
    double e = rel_inf(pa, pr, (size_t)n * C);
    ASSERT_MSG(e < 1e-4, "%s forward: relative error %g", preset, e);
    /* Backward from the same forward state: the two forwards differ in the
     * last bits, which can flip a max-pool winner where two window values
     * are within rounding of each other (or a ReLU at ~0) and move a whole
     * gradient entry. So the end-to-end gradients are compared for the flip
     * count only, and the backward passes from the openblas forward state
     * (activations, pool winners) copied into the reference model. */
    double la, lr;
    ASSERT_OK(pnn_gradient(a, x, y, n, 0, NULL, &la, ga, dxa, NULL));
    ASSERT_OK(pnn_gradient(r, x, y, n, 0, NULL, &lr, gr, dxr, NULL));
    ASSERT_REL(la, lr, 1e-4);
    size_t flips = 0, windows = 0;
    memcpy(r->xin, a->xin, (size_t)n * insz * sizeof(float));
    for (int i = 0; i < a->nl; i++) {
        nn_layer *la_ = &a->L[i], *lr_ = &r->L[i];
        size_t k = (size_t)n * la_->osz;
        if (la_->code) {
            for (size_t j = 0; j < k; j++) flips += la_->code[j] != lr_->code[j];
            windows += k;
            memcpy(lr_->code, la_->code, k);
        }
        if (la_->out && la_->type != NN_FLATTEN) memcpy(lr_->out, la_->out, k * sizeof(float));
    }
    ASSERT_MSG(flips <= windows / 10000, "%s: %zu of %zu pool winners differ", preset, flips,
               windows);
    float *gy;
    ASSERT_OK(pnn__loss(r, n, y, &lr, NULL, 1, &gy));
    memset(r->g, 0, np * sizeof(float));
    pnn__backward(r, n, gy, dxr);
    memcpy(gr, r->g, np * sizeof(float));
    e = rel_inf(dxa, dxr, (size_t)n * insz);
    ASSERT_MSG(e < 1e-4, "%s backward d/dx: relative error %g", preset, e);
    free(x);
    free(y);
    free(pa);
    free(pr);
    free(ga);
    free(gr);
    free(dxa);
    free(dxr);
    pnn_model_free(a);
    pnn_model_free(r);
}

/* 2 threads (work split across images, private conv gradients reduced) agree
 * with 1 thread; and the finite-difference check holds with 2 threads. */
static void t_threads_agree(void)
{
    pnn_model *a = mk("fmnist-cnn", PNN_BACKEND_OPENBLAS), *b = mk("fmnist-cnn",
                                                                    PNN_BACKEND_OPENBLAS);
    ASSERT(a && b);
    ASSERT_OK(pnn_model_set_backend(b, PNN_BACKEND_OPENBLAS, 2));
    int n = 7;
    size_t insz = pnn_input_size(a), np = pnn_param_count(a);
    float *x = malloc((size_t)n * insz * 4), *ga = malloc(np * 4), *gb = malloc(np * 4);
    float *dxa = malloc((size_t)n * insz * 4), *dxb = malloc((size_t)n * insz * 4);
    int32_t y[7] = {0, 1, 2, 3, 4, 5, 6};
    for (size_t i = 0; i < (size_t)n * insz; i++) x[i] = pnn__rng_uniform(&rng_state);
    double la, lb;
    ASSERT_OK(pnn_gradient(a, x, y, n, 0, NULL, &la, ga, dxa, NULL));
    ASSERT_OK(pnn_gradient(b, x, y, n, 0, NULL, &lb, gb, dxb, NULL));
    ASSERT_REL(la, lb, 1e-6);
    double e = rel_inf(gb, ga, np);
    ASSERT_MSG(e < 1e-5, "weights gradient: relative error %g", e);
    e = rel_inf(dxb, dxa, (size_t)n * insz);
    ASSERT_MSG(e < 1e-5, "input gradient: relative error %g", e);
    free(x);
    free(ga);
    free(gb);
    free(dxa);
    free(dxb);
    pnn_model_free(a);
    pnn_model_free(b);
    pnn_model *m = mk(SMALL, PNN_BACKEND_REFERENCE);
    ASSERT(m);
    ASSERT_OK(pnn_model_set_backend(m, PNN_BACKEND_REFERENCE, 2));
    ASSERT_EQ_INT(check_model(m, 5, 0, NULL, 1e-3), 0);
    pnn_model_free(m);
}

static void t_backends_fmnist(void) { backends_agree("fmnist-cnn", 8); }
static void t_backends_seed(void) { backends_agree("seed-cnn", 2); }

TEST_MAIN(TEST(t_grad_conv_valid), TEST(t_grad_conv_same_stride), TEST(t_grad_conv_1x1),
          TEST(t_grad_conv_relu), TEST(t_grad_maxpool), TEST(t_grad_dense), TEST(t_grad_relu),
          TEST(t_grad_softmax), TEST(t_grad_flatten), TEST(t_grad_dropout), TEST(t_grad_loss),
          TEST(t_grad_small_model), TEST(t_grad_large_images), TEST(t_grad_fedprox), TEST(t_threads_agree),
          TEST(t_backends_fmnist),
          TEST(t_backends_seed),
          /* last: it draws many values from the shared RNG */
          TEST(t_grad_row_pairs), TEST(t_conv_paths_random))
