/*
 * fuzz_image.c - JPEG/PNG decoding (data/image.c): the in-memory decoder the
 * folder loader uses (pd_decode_image, with and without a DCT-scaling hint),
 * the conversion to floats (pd_img_to_float: resize + channels), and the
 * public path-based pd_load_image through an in-memory file. The first input
 * byte picks the target size/channels; the rest is the image file.
 */
#include "fuzz.h"
#include "image_int.h"
#include "pdata.h"

static fz_file file;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const int dims[4] = {1, 7, 16, 33};
    static const int chans[4] = {1, 3, 4, 3};
    int th = dims[data[0] & 3], tw = dims[(data[0] >> 2) & 3], tc = chans[(data[0] >> 4) & 3];
    int hint = (data[0] >> 6) & 1;
    data++;
    size--;
    pd_img im;
    memset(&im, 0, sizeof im);
    char why[PT_ERRLEN];
    float out[33 * 33 * 4];
    float *scratch = NULL;
    size_t scap = 0;
    int rc = pd_decode_image(&im, data, size, hint ? tw : 0, hint ? th : 0, NULL, NULL, why);
    if (rc == PT_OK) {
        FZ_CHECK(im.w > 0 && im.h > 0 && im.c >= 1 && im.c <= 4);
        if (pd_img_to_float(&im, out, th, tw, tc, &scratch, &scap) == PT_OK)
            for (int i = 0; i < th * tw * tc; i++) FZ_CHECK(out[i] >= 0.0f && out[i] <= 1.0001f);
    }
    free(scratch);
    pd_img_free(&im);
    /* The public entry point on the same bytes (size limited: it rereads). */
    if (size <= 65536 && fz_file_set(&file, "image", data, size) == 0) {
        int rc2 = pd_load_image(file.path, th, tw, tc, out, why);
        if (rc2 == PT_OK)
            for (int i = 0; i < th * tw * tc; i++) FZ_CHECK(out[i] >= 0.0f && out[i] <= 1.0001f);
    }
    return 0;
}
