/*
 * fuzz_npy.c - NPY tensor decoding (net/npy.c): pnet_npy_view on the raw
 * input, then pnet_npy_to_f32 with every flag combination, then a round trip
 * through pnet_npy_encode -> pnet_npy_view -> pnet_npy_to_f32 (same shape,
 * same float bits).
 */
#include "fuzz.h"
#include "pnet.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pnet_npy_info info;
    char err[PT_ERRLEN];
    if (pnet_npy_view(data, size, &info, err) != PT_OK) return 0;
    /* The view must lie inside the input. */
    FZ_CHECK(info.data >= data && info.data_offset <= size);
    FZ_CHECK(info.data_len <= size - info.data_offset);
    FZ_CHECK(info.data == data + info.data_offset);
    FZ_CHECK(info.data_len == info.numel * (size_t)info.itemsize);
    FZ_CHECK(info.ndim >= 0 && info.ndim <= PT_MAX_DIMS);

    float *dst = malloc(info.numel ? info.numel * sizeof(float) : 1);
    if (!dst) return 0;
    static const unsigned flags[] = {0, PNET_NPY_F32_ONLY, PNET_NPY_ERR_OVERFLOW,
                                     PNET_NPY_F32_ONLY | PNET_NPY_ERR_OVERFLOW};
    int ok = 0;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (pnet_npy_to_f32(&info, dst, info.numel, flags[i], err) == PT_OK && flags[i] == 0)
            ok = 1;
    /* A wrong element count is refused. */
    if (info.numel > 0) FZ_CHECK(pnet_npy_to_f32(&info, dst, info.numel - 1, 0, err) != PT_OK);
    if (ok && pnet_npy_to_f32(&info, dst, info.numel, 0, err) == PT_OK) {
        size_t need = pnet_npy_size(info.ndim, info.shape);
        uint8_t *enc = need ? malloc(need) : NULL;
        size_t written = 0;
        if (enc && pnet_npy_encode(dst, info.ndim, info.shape, enc, need, &written, err) == PT_OK) {
            FZ_CHECK(written == need);
            pnet_npy_info again;
            FZ_CHECK(pnet_npy_view(enc, written, &again, err) == PT_OK);
            FZ_CHECK(again.ndim == info.ndim && again.numel == info.numel);
            FZ_CHECK(again.dtype == PNET_DT_F4 && !again.fortran_order && !again.big_endian);
            for (int d = 0; d < info.ndim; d++) FZ_CHECK(again.shape[d] == info.shape[d]);
            FZ_CHECK(again.data_len == info.numel * 4);
            FZ_CHECK(!memcmp(again.data, dst, again.data_len) || info.numel == 0);
        }
        free(enc);
    }
    free(dst);
    return 0;
}
