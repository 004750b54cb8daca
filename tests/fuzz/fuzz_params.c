/*
 * fuzz_params.c - Parameters -> pt_params (net/msg.c pnet_params_decode).
 * Input: one flags byte (PNET_NPY_* in bits 0-1), then up to 16 NPY tensors
 * separated by FZ_SEP. Decodes into an empty pt_params (allocating path),
 * then again into the now-shaped one (shape-checked path): both must agree,
 * and a shape-mismatched destination must be refused.
 */
#include "fuzz.h"
#include "pnet.h"

#define MAX_T 16

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
    unsigned flags = data[0] & 3;
    const uint8_t *part[MAX_T];
    size_t len[MAX_T];
    size_t n = fz_split(data + 1, size - 1, part, len, MAX_T);
    pnet_bytes t[MAX_T];
    for (size_t i = 0; i < n; i++) t[i] = (pnet_bytes){part[i], len[i]};
    pnet_params_view v = {.n = n, .tensors = t,
                          .tensor_type = {(const uint8_t *)"numpy.ndarray", 13}};
    char err[PT_ERRLEN];
    pt_params p = {0};
    if (pnet_params_decode(&v, &p, flags, err) != PT_OK) {
        FZ_CHECK(p.n == 0 && p.buf == NULL && p.t == NULL);
        return 0;
    }
    FZ_CHECK(p.n == n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(p.t[i].data == p.buf + total || p.t[i].numel == 0);
        total += p.t[i].numel;
    }
    FZ_CHECK(total == p.total);
    pt_params q = {0};
    FZ_CHECK(pt_params_copy(&q, &p) == PT_OK);
    /* Second decode into the shaped list: same values. */
    FZ_CHECK(pnet_params_decode(&v, &q, flags, err) == PT_OK);
    FZ_CHECK(p.total == 0 || !memcmp(p.buf, q.buf, p.total * sizeof(float)));
    /* Fewer tensors than the destination holds: refused. */
    if (n > 1) {
        pnet_params_view w = v;
        w.n = n - 1;
        FZ_CHECK(pnet_params_decode(&w, &q, flags, err) == PT_ERR_MISMATCH);
    }
    pt_params_free(&q);
    pt_params_free(&p);
    return 0;
}
