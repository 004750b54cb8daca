/*
 * test_strat_hostile.c - strategies/ against a hostile credentialed client:
 * a rejected update leaves no trace (every strategy that aggregates, every
 * accumulator, single and batched adds, hostile update first or in the
 * middle of a round: the global after the round is bit-identical to the
 * round without it, and so is the next round, which sees the optimizer
 * state), and the cost of client-chosen metric keys grows linearly.
 */
#include "petal.h"
#include "pst.h"
#include "test.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

enum { R = 400, C = 700, TOTAL = R * C + C, HONEST = 3 }; /* 280,700 floats: 2 threads */

/* Two-tensor model: a (R x C) kernel and a (C) bias. */
static void mk2(pt_params *p)
{
    int nd[2] = {2, 1};
    int64_t s0[2] = {R, C}, s1[1] = {C};
    const int64_t *shp[2] = {s0, s1};
    memset(p, 0, sizeof *p);
    pt_params_init(p, 2, nd, shp);
}

/* Honest client k's update: the global plus a small delta. */
static void honest(pt_params *u, const pt_params *g, int k)
{
    for (size_t i = 0; i < TOTAL; i++)
        u->buf[i] = g->buf[i] + (float)((int)((i * 7 + (size_t)k * 13) % 101) - 50) * 1e-3f;
}

/* The hostile update: huge finite values (3e38, both signs) everywhere but
 * one non-finite value, late in the second thread's range (variant 0: NaN
 * in the last element) or early in the first (variant 1: +Inf). */
static void hostile(pt_params *u, int variant)
{
    for (size_t i = 0; i < TOTAL; i++) u->buf[i] = i % 2 ? -3e38f : 3e38f;
    if (variant == 0) u->buf[TOTAL - 1] = NAN;
    else u->buf[1000] = INFINITY;
}

typedef struct hcase {
    const char *name;
    int kept; /* keeps updates: the accumulator does not apply */
    int dp;   /* any failure voids the round (Flower's DP wrapper) */
} hcase;

static const hcase cases[] = {
    {"FedAvg", 0, 0},        {"FedAvgM", 0, 0},       {"FedAdagrad", 0, 0},
    {"FedAdam", 0, 0},       {"FedYogi", 0, 0},       {"FedProx", 0, 0},
    {"QFedAvg", 0, 0},       {"FaultTolerantFedAvg", 0, 0},
    {"DPFixedClipping(FedAvg)", 0, 1},
    {"DPFixedClipping(FedAdam)", 0, 1},
    {"FedMedian", 1, 0},     {"FedTrimmedAvg", 1, 0}, {"Krum", 1, 0},
    {"MultiKrum", 1, 0},     {"Bulyan", 1, 0},
};

static pst_strategy *make(const hcase *c, pst_accumulator acc)
{
    pst_options o;
    pst_strategy *s = NULL;
    char err[PT_ERRLEN];
    pst_options_init(&o);
    o.threads = 2;
    o.accumulator = acc;
    if (!strcmp(c->name, "FedAvgM")) o.server_momentum = 0.9;
    if (!strcmp(c->name, "FedProx")) o.proximal_mu = 0.1;
    if (!strcmp(c->name, "MultiKrum")) o.num_clients_to_keep = 2;
    if (c->dp) {
        o.noise_multiplier = 0.5;
        o.clipping_norm = 2.0;
        o.num_sampled_clients = HONEST;
        o.seed = 7;
    }
    if (pst_create(&s, c->name, &o, err)) fprintf(stderr, "  pst_create(%s): %s\n", c->name, err);
    return s;
}

/* One round from global g: the honest clients, and (hpos >= 0) the hostile
 * update with 2^40 examples at position hpos, added one by one (batch 0) or
 * all in one pst_fit_add_many (batch 1). Returns 0, or -1 with a message. */
static int round_with(pst_strategy *s, int r, pt_params *g, const pt_params *hu, int hpos,
                      int batch, int *updated)
{
    pt_params u[HONEST];
    const pt_params *list[HONEST + 1];
    int64_t ne[HONEST + 1];
    int st[HONEST + 1], n = 0, rc = 0, res, fail, rej;
    char err[PT_ERRLEN] = "";
    for (int k = 0; k < HONEST; k++) {
        mk2(&u[k]);
        honest(&u[k], g, k);
    }
    for (int k = 0; k <= HONEST; k++) {
        if (k == hpos) {
            list[n] = hu;
            ne[n++] = (int64_t)1 << 40;
        }
        if (k < HONEST) {
            list[n] = &u[k];
            ne[n++] = 100 + 50 * k;
        }
    }
    if (pst_fit_begin(s, r, g, err)) rc = -1;
    if (!rc && pst_needs_central_loss(s) && pst_set_central_loss(s, 0.75)) rc = -1;
    if (!rc && batch) {
        int brc = pst_fit_add_many(s, (size_t)n, list, ne, NULL, st, err);
        if (brc != (hpos >= 0 ? PT_ERR_DIVERGED : PT_OK)) rc = -1;
        for (int i = 0; !rc && i < n; i++)
            if (st[i] != (list[i] == hu ? PT_ERR_DIVERGED : PT_OK)) rc = -1;
    }
    for (int i = 0; !rc && !batch && i < n; i++) {
        int arc = pst_fit_add(s, list[i], ne[i], NULL, err);
        if (arc != (list[i] == hu ? PT_ERR_DIVERGED : PT_OK)) rc = -1;
    }
    pst_fit_counts(s, &res, &fail, &rej);
    if (!rc && (res != HONEST || rej != (hpos >= 0) || fail != rej)) rc = -1;
    if (!rc && pst_fit_end(s, g, updated, NULL, err)) rc = -1;
    if (rc) fprintf(stderr, "  round %d (%s, hostile at %d, batch %d): %s\n", r, pst_name(s),
                    hpos, batch, err);
    for (int k = 0; k < HONEST; k++) pt_params_free(&u[k]);
    return rc;
}

static void fill_global(pt_params *g)
{
    for (size_t i = 0; i < TOTAL; i++) g->buf[i] = (float)((int)(i % 17) - 8) * 0.01f;
}

/* Bit-for-bit equality of two models (NaN-safe, sign of zero included). */
static int same_bits(const pt_params *a, const pt_params *b)
{
    return !memcmp(a->buf, b->buf, TOTAL * sizeof(float));
}

static void t_rejected_update_leaves_no_trace(void)
{
    static const pst_accumulator accs[3] = {PST_ACC_DOUBLE48, PST_ACC_DOUBLE,
                                            PST_ACC_FLOAT_DELTA};
    static const char *const acc_names[3] = {"double48", "double", "float-delta"};
    pt_params ref1, ref2, g, hu;
    int upd, checked = 0;
    mk2(&ref1);
    mk2(&ref2);
    mk2(&g);
    mk2(&hu);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const hcase *hc = &cases[c];
        for (int a = 0; a < (hc->kept ? 1 : 3); a++) {
            /* the reference: two rounds without the hostile client (DP: a
             * round with any failure produces no update, so its reference
             * is the previous global, and the next round starts there) */
            pst_strategy *s = make(hc, accs[a]);
            ASSERT(s);
            fill_global(&ref1);
            if (!hc->dp) {
                ASSERT_OK(round_with(s, 1, &ref1, NULL, -1, 0, &upd));
                ASSERT_EQ_INT(upd, 1);
            }
            memcpy(ref2.buf, ref1.buf, TOTAL * sizeof(float));
            ASSERT_OK(round_with(s, 2, &ref2, NULL, -1, 0, &upd));
            ASSERT_EQ_INT(upd, 1);
            pst_free(s);
            for (int mode = 0; mode < 4; mode++) {
                int batch = mode & 1, hpos = mode & 2 ? 0 : 1;
                hostile(&hu, mode >> 1 & 1 ? 0 : 1);
                s = make(hc, accs[a]);
                ASSERT(s);
                fill_global(&g);
                ASSERT_OK(round_with(s, 1, &g, &hu, hpos, batch, &upd));
                ASSERT_EQ_INT(upd, !hc->dp);
                ASSERT_MSG(same_bits(&g, &ref1),
                           "%s, %s accumulator, hostile at %d, %s: round 1 differs from the "
                           "round without the rejected update",
                           hc->name, acc_names[a], hpos, batch ? "batched" : "single adds");
                ASSERT_OK(round_with(s, 2, &g, NULL, -1, batch, &upd));
                ASSERT_MSG(same_bits(&g, &ref2),
                           "%s, %s accumulator, hostile at %d, %s: round 2 differs (state)",
                           hc->name, acc_names[a], hpos, batch ? "batched" : "single adds");
                pst_free(s);
                checked++;
            }
        }
    }
    ASSERT_EQ_INT(checked, 4 * (10 * 3 + 5));
    pt_params_free(&ref1);
    pt_params_free(&ref2);
    pt_params_free(&g);
    pt_params_free(&hu);
}

/* A finite 3e38 update with 2^40 examples is accepted (it is finite): the
 * double and double48 sums hold it without overflow, and the average is
 * what the exact arithmetic gives. */
static void t_huge_finite_accepted_exactly(void)
{
    static const pst_accumulator accs[2] = {PST_ACC_DOUBLE48, PST_ACC_DOUBLE};
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd;
    mk2(&g);
    mk2(&u);
    for (int a = 0; a < 2; a++) {
        pst_options o;
        pst_strategy *s = NULL;
        pst_options_init(&o);
        o.accumulator = accs[a];
        ASSERT_OK(pst_create(&s, "FedAvg", &o, err));
        memset(g.buf, 0, TOTAL * sizeof(float));
        ASSERT_OK(pst_fit_begin(s, 1, &g, err));
        for (size_t i = 0; i < TOTAL; i++) u.buf[i] = 3e38f;
        ASSERT_OK(pst_fit_add(s, &u, (int64_t)1 << 40, NULL, err));
        for (size_t i = 0; i < TOTAL; i++) u.buf[i] = -3e38f;
        ASSERT_OK(pst_fit_add(s, &u, (int64_t)1 << 40, NULL, err));
        ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
        ASSERT_EQ_INT(upd, 1);
        for (size_t i = 0; i < TOTAL; i++)
            if (g.buf[i] != 0.0f) ASSERT_MSG(0, "at %zu: %g, want 0", i, g.buf[i]);
        pst_free(s);
    }
    pt_params_free(&g);
    pt_params_free(&u);
}

/* ---- client-chosen metric keys ----------------------------------------------- */

static void mk1(pt_params *p, float v)
{
    int nd = 1;
    int64_t sh[1] = {1};
    const int64_t *shp[1] = {sh};
    memset(p, 0, sizeof *p);
    pt_params_init(p, 1, &nd, shp);
    p->buf[0] = v;
}

/* Metrics of n keys "<prefix><i>" = i. */
static void metric_map(pt_config *m, const char *prefix, size_t n)
{
    char k[64];
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%s%zu", prefix, i);
        pt_config_set_double(m, k, (double)i);
    }
}

/* The round's distinct keys are capped (max_metric_keys): the first ones
 * are aggregated as usual, values under later keys are not. */
static void t_metric_keys_capped(void)
{
    pst_options o;
    pst_strategy *s = NULL;
    pt_params g, u;
    pt_config m1, m2, out = {0};
    char err[PT_ERRLEN];
    int upd;
    pst_options_init(&o);
    ASSERT_OK(pst_option_set(&o, "max-metric-keys", "10", err));
    ASSERT_OK(pst_create(&s, "FedAvg", &o, err));
    ASSERT_EQ_INT(pst_effective_options(s)->max_metric_keys, 10);
    mk1(&g, 0);
    mk1(&u, 1);
    metric_map(&m1, "a", 6); /* a0..a5 */
    metric_map(&m2, "b", 8); /* b0..b3 fit under the cap, b4..b7 do not */
    pt_config_set_double(&m2, "a1", 3.0);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, &m1, err));
    ASSERT_OK(pst_fit_add(s, &u, 3, &m2, err));
    ASSERT_OK(pst_fit_end(s, &g, &upd, &out, err));
    ASSERT_EQ_INT(out.n, 10);
    ASSERT_NEAR(pt_config_number_or(&out, "a1", NAN), (1 * 1.0 + 3 * 3.0) / 4, 1e-12);
    ASSERT_NEAR(pt_config_number_or(&out, "b3", NAN), 3.0, 0);
    ASSERT(pt_config_get(&out, "b4") == NULL);
    ASSERT(pt_config_get(&out, "b7") == NULL);
    pt_config_free(&out);
    /* the next round starts empty */
    ASSERT_OK(pst_fit_begin(s, 2, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, &m2, err));
    ASSERT_OK(pst_fit_end(s, &g, &upd, &out, err));
    ASSERT_EQ_INT(out.n, 9);
    ASSERT(pt_config_get(&out, "b7") != NULL);
    pt_config_free(&out);
    pst_options_init(&o);
    ASSERT_EQ_INT(pst_option_set(&o, "max_metric_keys", "x", err), PT_ERR_INVAL);
    o.max_metric_keys = 0;
    pst_free(s);
    s = NULL;
    ASSERT_EQ_INT(pst_create(&s, "FedAvg", &o, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "max_metric_keys");
    pt_config_free(&m1);
    pt_config_free(&m2);
    pt_params_free(&g);
    pt_params_free(&u);
}

typedef struct metric_ctx {
    pst_strategy *s;
    pt_config m[2][3]; /* [size n or 2n][client] */
    size_t n;
} metric_ctx;

/* One round: three clients with n (or 2n) metric keys each, two thirds of
 * them shared; fit and evaluate aggregation, averages emitted. */
static void metric_round(void *arg, size_t n)
{
    metric_ctx *c = arg;
    pt_params g, u;
    pt_config out = {0};
    char err[PT_ERRLEN];
    int upd, has;
    double loss;
    int which = n == c->n ? 0 : 1;
    mk1(&g, 0);
    mk1(&u, 1);
    pst_fit_begin(c->s, 1, &g, err);
    for (int k = 0; k < 3; k++) pst_fit_add(c->s, &u, 10 + k, &c->m[which][k], err);
    pst_fit_end(c->s, &g, &upd, &out, err);
    pt_config_free(&out);
    pst_evaluate_begin(c->s, 1);
    for (int k = 0; k < 3; k++) pst_evaluate_add(c->s, 0.5, 10 + k, &c->m[which][k], err);
    pst_evaluate_end(c->s, &loss, &has, &out, err);
    pt_config_free(&out);
    pt_params_free(&g);
    pt_params_free(&u);
}

/* Aggregating 2n client metric keys costs about twice n (was x4). */
static void t_metric_growth(void)
{
    static const char *const prefix[3] = {"shared/a/", "shared/b/", "own/"};
    metric_ctx c;
    pst_options o;
    char err[PT_ERRLEN];
    c.n = 2000;
    pst_options_init(&o);
    o.max_metric_keys = 1000000;
    ASSERT_OK(pst_create(&c.s, "FedAvg", &o, err));
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 3; k++) metric_map(&c.m[w][k], prefix[k], c.n << w);
    double gr = test_growth("strategy metric aggregation", metric_round, &c, c.n);
    ASSERT_MSG(gr < 3.0, "2x the metric keys cost x%.2f", gr);
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 3; k++) pt_config_free(&c.m[w][k]);
    pst_free(c.s);
}

/* ---- tampered strategy state (checkpoints) ------------------------------------ */

/* The state of strategy `name` (options o) after one round of two clients. */
static char *state_after_round(const char *name, const pst_options *o, size_t *len)
{
    pst_strategy *s = NULL;
    pt_params g, u;
    char err[PT_ERRLEN], *buf = NULL;
    int upd;
    FILE *f;
    if (pst_create(&s, name, o, err)) return NULL;
    mk1(&g, 0.5f);
    mk1(&u, 0.75f);
    pst_initialize(s, &g, err);
    pst_fit_begin(s, 1, &g, err);
    pst_fit_add(s, &u, 10, NULL, err);
    u.buf[0] = 0.25f;
    pst_fit_add(s, &u, 30, NULL, err);
    pst_fit_end(s, &g, &upd, NULL, err);
    f = open_memstream(&buf, len);
    if (pst_state_save(s, f, err)) *len = 0;
    fclose(f);
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
    return buf;
}

/* Load bytes into strategy s; the code, err filled. */
static int load_bytes(pst_strategy *s, const char *b, size_t n, char *err)
{
    FILE *f = fmemopen((void *)b, n, "rb");
    int rc = pst_state_load(s, f, err);
    fclose(f);
    return rc;
}

/* Offset of the fields after the name in a pst_state_save stream. */
static size_t after_name(const char *b)
{
    uint32_t nl;
    memcpy(&nl, b + 8, 4);
    return 12 + nl;
}

static void t_tampered_state_refused(void)
{
    pst_options o;
    pst_strategy *s = NULL;
    char err[PT_ERRLEN], *b, *t;
    size_t n, off;
    float x;
    /* FedAdam: moments m, v (one float each) after the rng */
    pst_options_init(&o);
    b = state_after_round("FedAdam", &o, &n);
    ASSERT(b && n);
    t = malloc(n + 8);
    off = after_name(b) + 4 + 8 + 4 + 32; /* lr, total, flags, rng */
    ASSERT_EQ_INT(n, off + 8);
    ASSERT_OK(pst_create(&s, "FedAdam", &o, err));
    ASSERT_OK(load_bytes(s, b, n, err));
    static const struct {
        size_t at;
        float v;
        const char *msg;
    } bad[] = {{4, -1.0f, "second moment[0] is -1: negative"},
               {4, INFINITY, "second moment[0] is inf: not finite"},
               {0, NAN, "first moment[0] is nan: not finite"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(t, b, n);
        x = bad[i].v;
        memcpy(t + off + bad[i].at, &x, 4);
        ASSERT_EQ_INT(load_bytes(s, t, n, err), PT_ERR_FORMAT);
        ASSERT_CONTAINS(err, bad[i].msg);
    }
    /* the refused loads left the good state: saving again gives the same bytes */
    {
        char *again = NULL;
        size_t an = 0;
        FILE *f = open_memstream(&again, &an);
        ASSERT_OK(pst_state_save(s, f, err));
        fclose(f);
        ASSERT(an == n && !memcmp(again, b, n));
        free(again);
    }
    /* moments in the state of a strategy without them */
    pst_free(s);
    s = NULL;
    free(b);
    b = state_after_round("FedAvg", &o, &n);
    off = after_name(b);
    t = realloc(t, n + 8);
    memcpy(t, b, n);
    {
        uint32_t flags = 4 | 8; /* F_M | F_V */
        uint64_t total = 1;
        float zero[2] = {0, 0};
        memcpy(t + off + 4, &total, 8);
        memcpy(t + off + 12, &flags, 4);
        memcpy(t + n, zero, 8);
    }
    ASSERT_OK(pst_create(&s, "FedAvg", &o, err));
    ASSERT_EQ_INT(load_bytes(s, t, n + 8, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "optimizer moments given for FedAvg");
    pst_free(s);
    s = NULL;
    free(b);
    /* momentum into a FedAvgM without momentum */
    o.server_momentum = 0.9;
    b = state_after_round("FedAvgM", &o, &n);
    o.server_momentum = PST_UNSET;
    ASSERT_OK(pst_create(&s, "FedAvgM", &o, err));
    ASSERT_EQ_INT(load_bytes(s, b, n, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "momentum state does not fit");
    pst_free(s);
    s = NULL;
    free(b);
    /* DP: an all-zero noise RNG would hang the normal sampler */
    pst_options_init(&o);
    o.noise_multiplier = 1;
    o.clipping_norm = 1;
    o.num_sampled_clients = 2;
    b = state_after_round("DPFixedClipping(FedAvg)", &o, &n);
    off = after_name(b) + 4 + 8 + 4;
    t = realloc(t, n);
    memcpy(t, b, n);
    memset(t + off, 0, 32);
    ASSERT_OK(pst_create(&s, "DPFixedClipping(FedAvg)", &o, err));
    ASSERT_EQ_INT(load_bytes(s, t, n, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "noise RNG state is all zero");
    ASSERT_OK(load_bytes(s, b, n, err));
    pst_free(s);
    free(b);
    free(t);
}

TEST_MAIN(TEST(t_rejected_update_leaves_no_trace), TEST(t_tampered_state_refused), TEST(t_huge_finite_accepted_exactly),
          TEST(t_metric_keys_capped), TEST(t_metric_growth))
