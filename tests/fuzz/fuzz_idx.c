/*
 * fuzz_idx.c - IDX image + label files, raw or gzip (data/idx.c
 * pd_load_idx, through two in-memory files). Input: the images file, FZ_SEP,
 * the labels file. A loaded dataset is checked (labels in range, pixels in
 * [0,1]) and reshaped (resize + channel conversion) when small.
 */
#include "fuzz.h"
#include "pdata.h"

static fz_file images, labels;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[2];
    size_t len[2];
    fz_split(data, size, part, len, 2);
    if (fz_file_set(&images, "images", part[0], len[0]) ||
        fz_file_set(&labels, "labels", part[1], len[1]))
        return 0;
    pd_dataset d;
    memset(&d, 0, sizeof d);
    char err[PT_ERRLEN];
    if (pd_load_idx(&d, images.path, labels.path, err) != PT_OK) {
        FZ_CHECK(d.n == 0 && d.x == NULL && d.y == NULL);
        return 0;
    }
    FZ_CHECK(d.n > 0 && d.h > 0 && d.w > 0 && d.c == 1 && d.nclasses >= 1);
    size_t per = pd_example_floats(&d);
    FZ_CHECK(per == (size_t)d.h * (size_t)d.w);
    for (size_t i = 0; i < d.n; i++) FZ_CHECK(d.y[i] >= 0 && d.y[i] < d.nclasses);
    for (size_t i = 0; i < d.n * per; i++) FZ_CHECK(d.x[i] >= 0.0f && d.x[i] <= 1.0001f);
    if (d.n * per <= 65536) {
        FZ_CHECK(pd_reshape(&d, 3, 5, 3, err) == PT_OK);
        FZ_CHECK(d.h == 3 && d.w == 5 && d.c == 3);
        for (size_t i = 0; i < d.n * 45; i++) FZ_CHECK(d.x[i] >= 0.0f && d.x[i] <= 1.0001f);
        FZ_CHECK(pd_reshape(&d, 2, 2, 1, err) == PT_OK);
    }
    pd_dataset_free(&d);
    return 0;
}
