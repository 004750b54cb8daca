/*
 * fuzz_model_json.c - model descriptions (nn/model.c pnn_model_new_json).
 * A model that builds and is small enough is then run: one evaluate and one
 * fit step on two zero images with the reference backend, which touches
 * every buffer the shape inference sized.
 */
#include "fuzz.h"
#include "pnn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pnn_opts o;
    pnn_opts_init(&o);
    o.backend = PNN_BACKEND_REFERENCE;
    pnn_model *m = NULL;
    char err[PNN_ERRLEN];
    int rc = pnn_model_new_json(&m, (const char *)data, size, &o, err);
    if (rc != PNN_OK) {
        FZ_CHECK(m == NULL);
        FZ_CHECK(rc < 0 && err[0]);
        return 0;
    }
    int h, w, c;
    pnn_input_shape(m, &h, &w, &c);
    FZ_CHECK(h > 0 && w > 0 && c > 0);
    size_t in = pnn_input_size(m);
    FZ_CHECK(in == (size_t)h * (size_t)w * (size_t)c);
    int classes = pnn_num_classes(m);
    FZ_CHECK(classes > 0);
    size_t nw = pnn_weights_count(m), total = 0;
    for (size_t i = 0; i < nw; i++) {
        pnn_tensor t;
        FZ_CHECK(pnn_weight_info(m, i, &t) == PNN_OK);
        FZ_CHECK(t.data == pnn_weights_data(m) + total);
        total += t.numel;
    }
    FZ_CHECK(total == pnn_param_count(m));
    if (in <= 4096 && total <= 200000 && pnn_forward_flops(m) <= 2e6) {
        float *x = calloc(2 * in, sizeof *x);
        int32_t y[2] = {0, classes - 1};
        if (x) {
            double loss, acc;
            FZ_CHECK(pnn_evaluate(m, x, y, 2, 2, &loss, &acc, err) == PNN_OK);
            pnn_fit_opts f;
            pnn_fit_opts_init(&f);
            f.batch_size = 2;
            rc = pnn_fit(m, x, y, 2, &f, NULL, err);
            FZ_CHECK(rc == PNN_OK || rc == PNN_ERR_NUMERIC);
            free(x);
        }
    }
    pnn_model_free(m);
    return 0;
}
