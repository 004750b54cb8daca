/*
 * fuzz_checkpoint.c - server checkpoints as `petal server --resume` reads
 * them (core/checkpoint.c pt_ckpt_load through an in-memory file), then the
 * strategy state inside (pt_ckpt_restore_strategy -> strategies' pst_state_load)
 * into a strategy of the name the checkpoint gives. Input: one flags byte
 * (bit 0: the harness rewrites the payload CRC so mutations reach the
 * fields; bit 1: load against the model shapes the seeds use), then the file.
 *
 * Seeds: FUZZ_WRITE_SEED=DIR replay_checkpoint x /dev/null writes real
 * checkpoints (FedAdam after a round, FedAvgM, FedAvg) into DIR
 * (tests/fuzz/gen_corpus.py).
 */
#include "checkpoint_int.h"
#include "fuzz.h"
#include "pst.h"

static fz_file file;
static pt_params like;

static int make_like(pt_params *p)
{
    static const int nd[2] = {2, 1};
    static const int64_t s0[2] = {3, 2}, s1[1] = {2};
    const int64_t *shapes[2] = {s0, s1};
    return pt_params_init(p, 2, nd, shapes);
}

/* One real round so adaptive strategies have state to save. */
static void write_seed(const char *dir, const char *strategy, int rounds)
{
    char err[PT_ERRLEN], sub[512];
    pst_options o;
    pst_options_init(&o);
    o.min_fit_clients = o.min_available_clients = 1;
    pst_strategy *st = NULL;
    pt_params g = {0}, u = {0};
    if (pst_create(&st, strategy, &o, err) || make_like(&g) || make_like(&u)) abort();
    for (size_t i = 0; i < g.total; i++) g.buf[i] = (float)i / 7, u.buf[i] = (float)i / 5;
    for (int r = 1; r <= rounds; r++) {
        int updated = 0;
        pt_config m = {0};
        if (pst_fit_begin(st, r, &g, err) || pst_fit_add(st, &u, 10, NULL, err) ||
            pst_fit_end(st, &g, &updated, &m, err)) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
        pt_config_free(&m);
    }
    pt_ckpt_hist h[2] = {{0, 2.3, 0.1}, {1, 1.1, 0.6}};
    pt_ckpt c = {.round = rounds, .rounds = 3, .seed = 42, .rng = 0x9e3779b97f4a7c15ull,
                 .central_loss = 1.1, .elapsed = 12.5, .global = g, .h_cent = h, .h_dist = h,
                 .n_cent = 2, .n_dist = 1};
    snprintf(c.model, sizeof c.model, "fmnist-cnn");
    snprintf(c.strategy, sizeof c.strategy, "%s", pst_name(st));
    pt_config_set_string(&c.fit_hist, "accuracy", "(1, 0.5)");
    pt_config_set_string(&c.eval_hist, "loss", "(1, 1.25), (2, 0.9)");
    snprintf(sub, sizeof sub, "%s/%s", dir, strategy);
    if (pt_ckpt_save(sub, &c, st, err)) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    pt_config_free(&c.fit_hist);
    pt_config_free(&c.eval_hist);
    pt_params_free(&g);
    pt_params_free(&u);
    pst_free(st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    if (make_like(&like)) abort();
    const char *seed = getenv("FUZZ_WRITE_SEED");
    if (seed) {
        write_seed(seed, "FedAdam", 1);
        write_seed(seed, "FedAvgM", 2);
        write_seed(seed, "FedAvg", 1);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t *b = malloc(size);
    if (!b) return 0;
    size_t n = size - 1;
    memcpy(b, data + 1, n);
    /* "PTCK" | u32 version | u64 payload length | payload | u32 CRC */
    if ((data[0] & 1) && n >= 20) {
        uint64_t plen = 0;
        for (int i = 0; i < 8; i++) plen |= (uint64_t)b[8 + i] << (8 * i);
        if (plen <= n - 20) {
            uint32_t crc = pt_crc32(0, b + 16, (size_t)plen);
            for (int i = 0; i < 4; i++) b[16 + plen + (size_t)i] = (uint8_t)(crc >> (8 * i));
        }
    }
    char err[PT_ERRLEN];
    pt_ckpt c;
    if (fz_file_set(&file, "checkpoint.ptck", b, n) == 0) {
        int rc = pt_ckpt_load(file.path, (data[0] & 2) ? &like : NULL, &c, err);
        if (rc == PT_OK) {
            FZ_CHECK(c.round >= 0);
            FZ_CHECK(memchr(c.model, 0, sizeof c.model));
            FZ_CHECK(memchr(c.strategy, 0, sizeof c.strategy));
            if (data[0] & 2) FZ_CHECK(pt_params_same_shape(&c.global, &like));
            pst_options o;
            pst_options_init(&o);
            pst_strategy *st = NULL;
            /* As core/server.c: the strategy learns the model layout from the
             * checkpoint's global first (pst_state_load then bounds the state
             * by it; without a layout it trusts the header's size). */
            if (pst_create(&st, c.strategy, &o, err) == PT_OK) {
                if (pst_initialize(st, &c.global, err) == PT_OK)
                    (void)pt_ckpt_restore_strategy(&c, st, err);
                pst_free(st);
            }
            pt_ckpt_free(&c);
        } else {
            FZ_CHECK(err[0]);
        }
    }
    free(b);
    return 0;
}
