/* test_rel_ckpt.c - the server checkpoint format (core/checkpoint.c):
 * round trip of every field including FedAdam's moments (the restored
 * strategy continues bit-identically), atomic replacement, and validation:
 * every truncation, every flipped byte, CRC-consistent random mutations and
 * a mismatching model fail cleanly (no crash; ASan/UBSan clean). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint_int.h"
#include "pst.h"
#include "test.h"

static char dir[64];

static void make_params(pt_params *p, float base)
{
    int nd[3] = {2, 1, 4};
    int64_t s0[2] = {3, 5}, s1[1] = {5}, s2[4] = {2, 1, 2, 3};
    const int64_t *sh[3] = {s0, s1, s2};
    memset(p, 0, sizeof *p);
    pt_params_init(p, 3, nd, sh);
    for (size_t i = 0; i < p->total; i++) p->buf[i] = base + 0.01f * (float)i;
}

/* one FedAdam round: global += step(update) */
static int adam_round(pst_strategy *st, pt_params *global, int r, float shift)
{
    pt_params upd;
    int updated = 0, rc;
    char e[PT_ERRLEN];
    pt_params_copy(&upd, global);
    for (size_t i = 0; i < upd.total; i++) upd.buf[i] += shift * (float)((i % 5) + 1);
    rc = pst_fit_begin(st, r, global, e);
    if (!rc) rc = pst_fit_add(st, &upd, 10, NULL, e);
    if (!rc) rc = pst_fit_end(st, global, &updated, NULL, e);
    pt_params_free(&upd);
    return rc ? rc : updated ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (n) fwrite(b, 1, n, f);
    fclose(f);
}

static int save_sample(pst_strategy **st_out, pt_params *g, char *err)
{
    pst_strategy *st;
    pt_ckpt c;
    pt_ckpt_hist hc[2] = {{0, 2.3, 0.1}, {1, 1.5, 0.5}}, hd[1] = {{1, 1.7, 0.45}};
    int rc = pst_create(&st, "FedAdam", NULL, err);
    if (rc) return rc;
    make_params(g, 0.5f);
    if ((rc = pst_initialize(st, g, err))) return rc;
    if ((rc = adam_round(st, g, 1, 0.01f))) return rc;
    memset(&c, 0, sizeof c);
    c.round = 1;
    c.rounds = 5;
    c.seed = 42;
    c.rng = 0x0123456789abcdefull;
    c.central_loss = 1.5;
    c.elapsed = 12.25;
    snprintf(c.model, sizeof c.model, "tiny");
    snprintf(c.strategy, sizeof c.strategy, "%s", pst_name(st));
    c.global = *g;
    c.h_cent = hc;
    c.n_cent = 2;
    c.h_dist = hd;
    c.n_dist = 1;
    pt_config_set_string(&c.fit_hist, "accuracy", "(1, 0.5)");
    pt_config_set_string(&c.eval_hist, "loss", "(1, 1.7)");
    rc = pt_ckpt_save(dir, &c, st, err);
    pt_config_free(&c.fit_hist);
    pt_config_free(&c.eval_hist);
    *st_out = st;
    return rc;
}

static void t_roundtrip_continues_bit_exact(void)
{
    char e[PT_ERRLEN];
    pst_strategy *st = NULL, *st2 = NULL;
    pt_params g = {0}, g2 = {0};
    pt_ckpt c;
    ASSERT_OK(save_sample(&st, &g, e));
    ASSERT_OK(pt_ckpt_load(dir, &g, &c, e));
    ASSERT_EQ_INT(c.round, 1);
    ASSERT_EQ_INT(c.rounds, 5);
    ASSERT(c.seed == 42 && c.rng == 0x0123456789abcdefull);
    ASSERT(c.central_loss == 1.5 && c.elapsed == 12.25);
    ASSERT_STR_EQ(c.model, "tiny");
    ASSERT_STR_EQ(c.strategy, "FedAdam");
    ASSERT(pt_params_same_shape(&c.global, &g));
    ASSERT(!memcmp(c.global.buf, g.buf, g.total * sizeof(float)));
    ASSERT(c.n_cent == 2 && c.h_cent[1].round == 1 && c.h_cent[1].loss == 1.5);
    ASSERT(c.n_dist == 1 && c.h_dist[0].acc == 0.45);
    ASSERT_STR_EQ(pt_config_get(&c.fit_hist, "accuracy")->v.s.ptr, "(1, 0.5)");
    ASSERT_STR_EQ(pt_config_get(&c.eval_hist, "loss")->v.s.ptr, "(1, 1.7)");
    /* a fresh strategy restored from the checkpoint continues exactly as the original */
    ASSERT_OK(pst_create(&st2, "FedAdam", NULL, e));
    ASSERT_OK(pt_params_copy(&g2, &c.global));
    ASSERT_OK(pst_initialize(st2, &g2, e));
    ASSERT_OK(pt_ckpt_restore_strategy(&c, st2, e));
    for (int r = 2; r <= 3; r++) {
        ASSERT_OK(adam_round(st, &g, r, 0.02f));
        ASSERT_OK(adam_round(st2, &g2, r, 0.02f));
    }
    ASSERT(!memcmp(g.buf, g2.buf, g.total * sizeof(float)));
    /* and a fresh one without the state does not (the moments matter) */
    pst_strategy *st3 = NULL;
    pt_params g3 = {0};
    ASSERT_OK(pst_create(&st3, "FedAdam", NULL, e));
    ASSERT_OK(pt_params_copy(&g3, &c.global));
    ASSERT_OK(pst_initialize(st3, &g3, e));
    for (int r = 2; r <= 3; r++) ASSERT_OK(adam_round(st3, &g3, r, 0.02f));
    ASSERT(memcmp(g.buf, g3.buf, g.total * sizeof(float)));
    /* another strategy refuses the state */
    pst_strategy *avg = NULL;
    ASSERT_OK(pst_create(&avg, "FedAvg", NULL, e));
    ASSERT(pt_ckpt_restore_strategy(&c, avg, e) != 0);
    pst_free(avg);
    pst_free(st3);
    pt_params_free(&g3);
    pt_ckpt_free(&c);
    pst_free(st);
    pst_free(st2);
    pt_params_free(&g);
    pt_params_free(&g2);
}

static void t_atomic_replace(void)
{
    char e[PT_ERRLEN], path[128];
    pst_strategy *st = NULL;
    pt_params g = {0};
    pt_ckpt c;
    pst_strategy *st2 = NULL;
    pt_params g2 = {0};
    ASSERT_OK(save_sample(&st, &g, e));
    int rc2 = save_sample(&st2, &g2, e); /* replaces the first */
    pst_free(st2);
    pt_params_free(&g2);
    ASSERT_OK(rc2);
    int n = 0;
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp)))
        if (de->d_name[0] != '.') {
            n++;
            ASSERT_STR_EQ(de->d_name, PT_CKPT_FILE);
        }
    if (dp) closedir(dp);
    ASSERT_EQ_INT(n, 1);
    /* a file path works too */
    snprintf(path, sizeof path, "%s/%s", dir, PT_CKPT_FILE);
    ASSERT_OK(pt_ckpt_load(path, NULL, &c, e));
    pt_ckpt_free(&c);
    /* unwritable places fail with a clear error */
    pt_ckpt w;
    memset(&w, 0, sizeof w);
    w.global = g;
    ASSERT_EQ_INT(pt_ckpt_save("/nonexistent-dir/x/y", &w, NULL, e), PT_ERR_IO);
    ASSERT_CONTAINS(e, "/nonexistent-dir/x/y");
    ASSERT_EQ_INT(pt_ckpt_save(path, &w, NULL, e), PT_ERR_IO); /* a file, not a directory */
    ASSERT_EQ_INT(pt_ckpt_load("/nonexistent-dir", NULL, &c, e), PT_ERR_NOTFOUND);
    pst_free(st);
    pt_params_free(&g);
}

static void t_every_truncation_and_flip_fails(void)
{
    char e[PT_ERRLEN], path[128], bad[128];
    pst_strategy *st = NULL;
    pt_params g = {0};
    pt_ckpt c;
    size_t n;
    ASSERT_OK(save_sample(&st, &g, e));
    snprintf(path, sizeof path, "%s/%s", dir, PT_CKPT_FILE);
    uint8_t *good = slurp(path, &n);
    ASSERT(good && n > 100);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    for (size_t len = 0; len < n; len++) {
        spit(bad, good, len);
        int rc = pt_ckpt_load(bad, &g, &c, e);
        ASSERT_MSG(rc == PT_ERR_FORMAT, "truncated to %zu: rc %d (%s)", len, rc, e);
    }
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++) {
        memcpy(m, good, n);
        m[i] ^= (uint8_t)(1u << (i % 8));
        spit(bad, m, n);
        int rc = pt_ckpt_load(bad, &g, &c, e);
        ASSERT_MSG(rc == PT_ERR_FORMAT || rc == PT_ERR_UNSUPPORTED,
                   "byte %zu flipped: rc %d (%s)", i, rc, e);
    }
    free(m);
    free(good);
    unlink(bad);
    pst_free(st);
    pt_params_free(&g);
}

/* Mutations with a recomputed CRC reach the field parser: never a crash. */
static void t_crc_consistent_mutations(void)
{
    char e[PT_ERRLEN], path[128], bad[128];
    pst_strategy *st = NULL;
    pt_params g = {0};
    pt_ckpt c;
    size_t n;
    uint64_t rng = 12345;
    int ok = 0, refused = 0;
    ASSERT_OK(save_sample(&st, &g, e));
    snprintf(path, sizeof path, "%s/%s", dir, PT_CKPT_FILE);
    uint8_t *good = slurp(path, &n), *m = malloc(n);
    snprintf(bad, sizeof bad, "%s/mut", dir);
    for (int it = 0; it < 2000; it++) {
        memcpy(m, good, n);
        int k = 1 + it % 4;
        for (int j = 0; j < k; j++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = 16 + (size_t)((rng >> 33) % (n - 20));
            uint8_t v = (uint8_t)(rng >> 17);
            m[pos] = (it % 3 == 0) ? 0xff : (it % 3 == 1) ? v : (uint8_t)(m[pos] + 1);
        }
        uint32_t crc = pt_crc32(0, m + 16, n - 20);
        for (int b = 0; b < 4; b++) m[n - 4 + b] = (uint8_t)(crc >> (8 * b));
        spit(bad, m, n);
        int rc = pt_ckpt_load(bad, NULL, &c, e);
        if (rc == PT_OK) {
            /* the strategy state inside must be validated by pst_state_load in turn */
            pst_strategy *s2 = NULL;
            if (!pst_create(&s2, "FedAdam", NULL, e) && !pst_initialize(s2, &c.global, e))
                (void)pt_ckpt_restore_strategy(&c, s2, e);
            pst_free(s2);
            ok++;
            pt_ckpt_free(&c);
        } else {
            ASSERT_MSG(rc == PT_ERR_FORMAT || rc == PT_ERR_NOMEM, "iteration %d: rc %d (%s)", it,
                       rc, e);
            refused++;
        }
    }
    ASSERT(refused > 0);
    printf("  mutations: %d loaded (value changes), %d refused\n", ok, refused);
    free(m);
    free(good);
    unlink(bad);
    pst_free(st);
    pt_params_free(&g);
}

static void t_model_mismatch(void)
{
    char e[PT_ERRLEN];
    pst_strategy *st = NULL;
    pt_params g = {0}, other = {0};
    pt_ckpt c;
    ASSERT_OK(save_sample(&st, &g, e));
    int nd[3] = {2, 1, 4};
    int64_t s0[2] = {5, 3}, s1[1] = {5}, s2[4] = {2, 1, 2, 3};
    const int64_t *sh[3] = {s0, s1, s2};
    ASSERT_OK(pt_params_init(&other, 3, nd, sh));
    ASSERT_EQ_INT(pt_ckpt_load(dir, &other, &c, e), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(e, "tensor 0 has shape (3,5), the server's model (5,3)");
    pt_params_free(&other);
    ASSERT_OK(pt_params_init(&other, 2, nd, sh));
    ASSERT_EQ_INT(pt_ckpt_load(dir, &other, &c, e), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(e, "holds 3 tensors, the server's model has 2");
    pt_params_free(&other);
    pst_free(st);
    pt_params_free(&g);
}

/* A minimal checkpoint (no strategy state) with the given histories. */
static int save_hist(const pt_config *fit, const pt_config *ev, char *err)
{
    pt_ckpt c;
    pt_params g = {0};
    int rc;
    make_params(&g, 0.25f);
    memset(&c, 0, sizeof c);
    c.round = 3;
    c.central_loss = NAN;
    c.global = g;
    c.fit_hist = *fit; /* borrowed */
    c.eval_hist = *ev;
    rc = pt_ckpt_save(dir, &c, NULL, err);
    pt_params_free(&g);
    return rc;
}

/* Writers enforce what the reader accepts: a history key of
 * PT_CONFIG_KEY_MAX bytes round-trips, one byte more is refused when
 * writing (the previous checkpoint stays), not discovered at resume. */
static void t_history_key_limit_agrees(void)
{
    char e[PT_ERRLEN], key[PT_CONFIG_KEY_MAX + 2];
    pt_config fit = {0}, ev = {0};
    pt_ckpt c;
    memset(key, 'k', sizeof key);
    key[PT_CONFIG_KEY_MAX] = 0;
    pt_config_set_string(&fit, key, "(1, 0.5)");
    ASSERT_OK(save_hist(&fit, &ev, e));
    ASSERT_OK(pt_ckpt_load(dir, NULL, &c, e));
    ASSERT_STR_EQ(pt_config_get(&c.fit_hist, key)->v.s.ptr, "(1, 0.5)");
    pt_ckpt_free(&c);
    key[PT_CONFIG_KEY_MAX] = 'k';
    key[PT_CONFIG_KEY_MAX + 1] = 0;
    pt_config_set_string(&ev, key, "(2, 0.25)");
    ASSERT_EQ_INT(save_hist(&fit, &ev, e), PT_ERR_RANGE);
    ASSERT_CONTAINS(e, "evaluate metrics history key of 4097 bytes");
    ASSERT_OK(pt_ckpt_load(dir, NULL, &c, e)); /* still the previous one */
    ASSERT_EQ_INT(c.eval_hist.n, 0);
    pt_ckpt_free(&c);
    pt_config_free(&fit);
    pt_config_free(&ev);
}

/* CRC-valid files with values no server writes are refused. */
static void t_tampered_values_refused(void)
{
    static const char *const want[] = {"central loss", "elapsed", "weights",
                                       "centralised history", "distributed history"};
    char e[PT_ERRLEN];
    pt_params g = {0};
    make_params(&g, 0.25f);
    for (int k = 0; k < 5; k++) {
        pt_ckpt c, back;
        pt_ckpt_hist h = {1, 0.5, 0.5};
        memset(&c, 0, sizeof c);
        c.round = 2;
        c.central_loss = k == 0 ? -1.0 : 0.5;
        c.elapsed = k == 1 ? INFINITY : 1.0;
        c.global = g;
        if (k == 2) g.buf[3] = NAN;
        if (k == 3) h.round = 7, c.h_cent = &h, c.n_cent = 1;
        if (k == 4) h.round = 0, c.h_dist = &h, c.n_dist = 1;
        ASSERT_OK(pt_ckpt_save(dir, &c, NULL, e));
        ASSERT_EQ_INT(pt_ckpt_load(dir, NULL, &back, e), PT_ERR_FORMAT);
        ASSERT_CONTAINS(e, want[k]);
        g.buf[3] = 0;
    }
    pt_params_free(&g);
}

/* Temporary files: a crashed writer's (dead pid) are removed at the next
 * save, links too (never followed); a live process's stay. */
static void t_stale_temps(void)
{
    char e[PT_ERRLEN], p[256], victim[128];
    pt_config none = {0};
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(victim, sizeof victim, "%s-victim", dir);
    spit(victim, (const uint8_t *)"keep me", 7);
    snprintf(p, sizeof p, "%s/%s.tmp.%ld.0123", dir, PT_CKPT_FILE, (long)dead);
    spit(p, (const uint8_t *)"half a checkpoint", 17);
    snprintf(p, sizeof p, "%s/%s.tmp.%ld.link", dir, PT_CKPT_FILE, (long)dead);
    ASSERT_OK(symlink(victim, p));
    snprintf(p, sizeof p, "%s/%s.tmp.1.live", dir, PT_CKPT_FILE); /* pid 1 is alive */
    spit(p, (const uint8_t *)"x", 1);
    ASSERT_OK(save_hist(&none, &none, e));
    int n = 0, live = 0;
    DIR *dp = opendir(dir);
    struct dirent *de;
    while (dp && (de = readdir(dp)))
        if (de->d_name[0] != '.') {
            n++;
            live += strstr(de->d_name, ".tmp.1.live") != NULL;
        }
    if (dp) closedir(dp);
    ASSERT_EQ_INT(n, 2);
    ASSERT_EQ_INT(live, 1);
    unlink(p);
    size_t vn;
    uint8_t *v = slurp(victim, &vn);
    ASSERT(v && vn == 7 && !memcmp(v, "keep me", 7));
    free(v);
    unlink(victim);
}

typedef struct hist_ctx {
    char file[2][160]; /* checkpoints with n and 2n history keys */
    size_t n;
} hist_ctx;

static void load_hist(void *arg, size_t n)
{
    hist_ctx *h = arg;
    pt_ckpt c;
    char e[PT_ERRLEN];
    if (pt_ckpt_load(h->file[n == h->n ? 0 : 1], NULL, &c, e)) fprintf(stderr, "%s\n", e);
    pt_ckpt_free(&c);
}

/* Loading a checkpoint with 2n history keys costs about twice n (the loader
 * used to rebuild the map by linear scans: x4). */
static void t_history_growth(void)
{
    hist_ctx h = {.n = 4000};
    pt_config none = {0};
    char k[48], e[PT_ERRLEN], path[128];
    snprintf(path, sizeof path, "%s/%s", dir, PT_CKPT_FILE);
    for (int w = 0; w < 2; w++) {
        pt_config fit = {0};
        for (size_t i = 0; i < h.n << w; i++) {
            snprintf(k, sizeof k, "client-chosen/metric/%zu", i);
            pt_config_set_string(&fit, k, "(1, 0.5), (2, 0.25)");
        }
        ASSERT_OK(save_hist(&fit, &none, e));
        snprintf(h.file[w], sizeof h.file[w], "%s/hist%d", dir, w);
        ASSERT_OK(rename(path, h.file[w]));
        pt_config_free(&fit);
    }
    double g = test_growth("checkpoint load, history keys", load_hist, &h, h.n);
    ASSERT_MSG(g < 3.0, "2x the history keys cost x%.2f", g);
    unlink(h.file[0]);
    unlink(h.file[1]);
}

static void t_crc32_known_value(void)
{
    ASSERT_EQ_INT(pt_crc32(0, "123456789", 9), 0xcbf43926u);
    ASSERT_EQ_INT(pt_crc32(pt_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
}

static void setup_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/petal-ckpt-XXXXXX");
    if (!mkdtemp(dir)) exit(1);
}

static void t_cleanup(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, PT_CKPT_FILE);
    unlink(p);
    ASSERT_OK(rmdir(dir));
}

static void t_setup(void)
{
    setup_dir();
}

TEST_MAIN(TEST(t_setup), TEST(t_crc32_known_value), TEST(t_roundtrip_continues_bit_exact),
          TEST(t_atomic_replace), TEST(t_every_truncation_and_flip_fails),
          TEST(t_crc_consistent_mutations), TEST(t_model_mismatch),
          TEST(t_history_key_limit_agrees), TEST(t_tampered_values_refused),
          TEST(t_stale_temps), TEST(t_history_growth), TEST(t_cleanup))
