/*
 * fuzz_weights.c - weights files (.npz of NPY float32 arrays) for a small
 * fixed model (nn/npz.c pnn_load_weights, through an in-memory file).
 * Input: one flags byte, then the file. With bit 0 set, the harness first
 * rewrites the CRC-32 of every central-directory entry it can locate, so the
 * fuzzer gets past the checksum into the NPY parsing. After a successful
 * load: save, reload, same weights.
 */
#include <zlib.h>

#include "fuzz.h"
#include "pnn.h"

/* Keep in sync with tests/fuzz/gen_corpus.py (WEIGHTS_MODEL). */
static const char model_json[] =
    "{\"input_shape\": [4, 4, 1], \"layers\": ["
    "{\"type\": \"Conv2D\", \"filters\": 2, \"kernel_size\": 3, \"activation\": \"relu\"},"
    "{\"type\": \"Flatten\"},"
    "{\"type\": \"Dense\", \"units\": 3, \"activation\": \"softmax\"}]}";

static pnn_model *model;
static fz_file in_file;
static char saved[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[PNN_ERRLEN];
    const char *dir = fz_tmpdir();
    if (!dir) abort();
    snprintf(saved, sizeof saved, "%s/saved.npz", dir);
    if (pnn_model_new_json(&model, model_json, sizeof model_json - 1, NULL, err)) {
        fprintf(stderr, "fuzz_weights: %s\n", err);
        abort();
    }
    return 0;
}

static uint32_t rd32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static unsigned rd16(const uint8_t *p) { return p[0] | (unsigned)p[1] << 8; }

/* Set each central directory entry's CRC to that of the bytes it points at. */
static void fix_crcs(uint8_t *b, size_t n)
{
    for (size_t p = 0; p + 46 <= n; p++) {
        if (rd32(b + p) != 0x02014b50) continue;
        uint32_t size = rd32(b + p + 24), off = rd32(b + p + 42);
        if ((size_t)off + 30 > n || rd32(b + off) != 0x04034b50) continue;
        size_t d = (size_t)off + 30 + rd16(b + off + 26) + rd16(b + off + 28);
        if (d > n || size > n - d) continue;
        uint32_t crc = (uint32_t)crc32(0, b + d, size);
        for (int i = 0; i < 4; i++) b[p + 16 + i] = (uint8_t)(crc >> (8 * i));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    if (data[0] & 1) fix_crcs(buf, size - 1);
    size_t total = pnn_param_count(model);
    float *before = malloc(total * sizeof *before), *after = malloc(total * sizeof *after);
    char err[PNN_ERRLEN];
    if (!before || !after || fz_file_set(&in_file, "weights.npz", buf, size - 1)) goto out;
    memcpy(before, pnn_weights_data(model), total * sizeof *before);
    int rc = pnn_load_weights(model, in_file.path, err);
    if (rc != PNN_OK) {
        /* Nothing is changed on error. */
        FZ_CHECK(!memcmp(before, pnn_weights_data(model), total * sizeof *before));
        goto out;
    }
    memcpy(after, pnn_weights_data(model), total * sizeof *after);
    FZ_CHECK(pnn_save_weights(model, saved, err) == PNN_OK);
    memset(pnn_weights_data(model), 0, total * sizeof(float));
    FZ_CHECK(pnn_load_weights(model, saved, err) == PNN_OK);
    FZ_CHECK(!memcmp(after, pnn_weights_data(model), total * sizeof *after));
out:
    free(before);
    free(after);
    free(buf);
    return 0;
}
