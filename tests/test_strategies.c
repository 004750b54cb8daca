/*
 * test_strategies.c - strategies/ unit tests: the worked values of Flower's
 * strategies (clients that add +1 to the global each round, init 0, observed
 * with real Flower 1.6: FedAvgM 1.0 -> 2.9, FedAdagrad 0.1 -> 0.170711,
 * FedAdam 0.1 -> 0.234687, FedYogi 0.0099 -> 0.0232417), hand-derived values
 * for the robust strategies, QFedAvg and DP clipping, error cases, streaming
 * (views, unaligned data, non-finite rejection, batches, threads, memory),
 * evaluate aggregation and checkpoints. The numpy cross-check of every
 * strategy over several rounds is tests/test_strat_numpy.py.
 */
#include "petal.h"
#include "pst.h"
#include "test.h"

#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRAT_ASAN_ 1
#endif
#endif
#ifndef STRAT_ASAN_
#define STRAT_ASAN_ 0
#endif

static void mk(pt_params *p, size_t n, float v)
{
    int nd = 1;
    int64_t sh[1] = {(int64_t)n};
    const int64_t *shp[1] = {sh};
    memset(p, 0, sizeof *p);
    pt_params_init(p, 1, &nd, shp);
    for (size_t i = 0; i < n; i++) p->buf[i] = v;
}

/* Two-tensor model: a (rows x cols) kernel and a (cols) bias. */
static void mk2(pt_params *p, int64_t rows, int64_t cols)
{
    int nd[2] = {2, 1};
    int64_t s0[2] = {rows, cols}, s1[1] = {cols};
    const int64_t *shp[2] = {s0, s1};
    memset(p, 0, sizeof *p);
    pt_params_init(p, 2, nd, shp);
}

static pst_strategy *create(const char *name, const pst_options *o)
{
    pst_strategy *s = NULL;
    char err[PT_ERRLEN] = "";
    int rc = pst_create(&s, name, o, err);
    if (rc) fprintf(stderr, "  pst_create(%s): %s\n", name, err);
    return s;
}

/* Run `rounds` rounds in which `nc` clients each return global + 1 with
 * num_examples n_k = k + 1; vals[r] = global[0] after round r + 1. */
static int plus_one_rounds(pst_strategy *s, int rounds, int nc, double *vals)
{
    pt_params g, u;
    char err[PT_ERRLEN];
    int rc = 0, updated;
    mk(&g, 3, 0.0f);
    mk(&u, 3, 0.0f);
    if (pst_initialize(s, &g, err)) rc = -1;
    for (int r = 1; r <= rounds && !rc; r++) {
        if (pst_fit_begin(s, r, &g, err)) rc = -2;
        for (int k = 0; k < nc && !rc; k++) {
            for (size_t i = 0; i < 3; i++) u.buf[i] = g.buf[i] + 1.0f;
            if (pst_fit_add(s, &u, k + 1, NULL, err)) rc = -3;
        }
        if (!rc && pst_fit_end(s, &g, &updated, NULL, err)) rc = -4;
        if (!rc && !updated) rc = -5;
        vals[r - 1] = g.buf[0];
        if (g.buf[1] != g.buf[0] || g.buf[2] != g.buf[0]) rc = -6;
    }
    if (rc) fprintf(stderr, "  plus_one_rounds: rc %d: %s\n", rc, err);
    pt_params_free(&g);
    pt_params_free(&u);
    return rc;
}

static void t_worked_fedavgm(void)
{
    pst_options o;
    double v[2];
    pst_options_init(&o);
    o.server_momentum = 0.9;
    pst_strategy *s = create("FedAvgM", &o);
    ASSERT(s);
    ASSERT(pst_needs_initial_parameters(s));
    ASSERT_OK(plus_one_rounds(s, 2, 2, v));
    ASSERT_NEAR(v[0], 1.0, 1e-6);
    ASSERT_NEAR(v[1], 2.9, 1e-6);
    pst_free(s);
}

static void t_worked_fedopt(void)
{
    static const struct {
        const char *name;
        double r1, r2;
    } c[] = {{"FedAdagrad", 0.1, 0.170711},
             {"fedadagrad", 0.1, 0.170711}, /* the original's "FedAdaGrad" spelling */
             {"FedAdam", 0.1, 0.234687},
             {"FedYogi", 0.0099, 0.0232417}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        pst_options o;
        double v[2];
        pst_options_init(&o);
        o.defaults = PST_DEFAULTS_FLOWER; /* the worked values use Flower's defaults */
        pst_strategy *s = create(c[i].name, &o);
        ASSERT(s);
        ASSERT_OK(plus_one_rounds(s, 2, 3, v));
        ASSERT_NEAR(v[0], c[i].r1, 1e-4);
        ASSERT_NEAR(v[1], c[i].r2, 1e-6);
        pst_free(s);
    }
    {   /* the same with exact formulas: Yogi round 1 = 0.01*0.1/(0.1+0.001) */
        pst_options o;
        double v[2];
        pst_options_init(&o);
        pst_strategy *s = create("FedYogi", &o);
        ASSERT(s);
        ASSERT_OK(plus_one_rounds(s, 2, 2, v));
        ASSERT_NEAR(v[0], 0.01 * 0.1 / (0.1 + 0.001), 1e-7);
        pst_free(s);
    }
}

/* Petal's defaults: FedAdagrad/FedAdam round 1 moves by eta*0.1/(0.1|d|... ) */
static void t_petal_defaults(void)
{
    pst_options o;
    const pst_options *e;
    double v[1];
    pst_options_init(&o);
    pst_strategy *s = create("FedAdam", &o);
    ASSERT(s);
    e = pst_effective_options(s);
    ASSERT_NEAR(e->eta, 0.01, 0);
    ASSERT_NEAR(e->tau, 1e-3, 0);
    ASSERT_NEAR(e->beta_1, 0.9, 0);
    ASSERT_OK(plus_one_rounds(s, 1, 2, v));
    /* m = 0.1, v = 0.01: x = 0.01 * 0.1 / (0.1 + 0.001) */
    ASSERT_NEAR(v[0], 0.01 * 0.1 / 0.101, 1e-7);
    pst_free(s);
    o.defaults = PST_DEFAULTS_FLOWER;
    s = create("FedAdagrad", &o);
    ASSERT(s);
    ASSERT_NEAR(pst_effective_options(s)->eta, 0.1, 0);
    ASSERT_NEAR(pst_effective_options(s)->tau, 1e-9, 0);
    pst_free(s);
    pst_options_init(&o);
    o.eta = 0.05; /* explicit values win over either set */
    s = create("FedAdagrad", &o);
    ASSERT(s);
    ASSERT_NEAR(pst_effective_options(s)->eta, 0.05, 0);
    ASSERT_NEAR(pst_effective_options(s)->tau, 1e-3, 0);
    pst_free(s);
}

static void t_names_and_options(void)
{
    const char *const *names = pst_list_names();
    char err[PT_ERRLEN], d[512];
    pst_strategy *s = NULL;
    pst_options o;
    int n = 0;
    pst_options_init(&o);
    o.proximal_mu = 0.1;
    o.num_clients_to_keep = 2;
    o.noise_multiplier = 1;
    o.clipping_norm = 1;
    o.num_sampled_clients = 2;
    for (; names[n]; n++) {
        ASSERT_OK(pst_create(&s, names[n], &o, err));
        ASSERT(strstr(pst_name(s), names[n]) == pst_name(s));
        pst_free(s);
    }
    ASSERT_EQ_INT(n, 14);
    ASSERT_OK(pst_create(&s, "  fedavgm ", NULL, err));
    ASSERT_STR_EQ(pst_name(s), "FedAvgM");
    pst_free(s);
    ASSERT_OK(pst_create(&s, "QFFedAvg", NULL, err));
    ASSERT_STR_EQ(pst_name(s), "QFedAvg");
    pst_free(s);
    ASSERT_OK(pst_create(&s, "DPFixedClipping(fedadam)", &o, err));
    ASSERT_STR_EQ(pst_name(s), "DifferentialPrivacyServerSideFixedClipping(FedAdam)");
    pst_describe(s, d, sizeof d);
    ASSERT_CONTAINS(d, "DifferentialPrivacyServerSideFixedClipping(FedAdam(");
    ASSERT_CONTAINS(d, "clipping_norm=1");
    ASSERT(!strstr(d, "proximal_mu")); /* not an option of FedAdam: ignored */
    pst_free(s);
    ASSERT_OK(pst_create(&s, "DifferentialPrivacyServerSideFixedClipping", &o, err));
    ASSERT_STR_EQ(pst_name(s), "DifferentialPrivacyServerSideFixedClipping(FedAvg)");
    pst_free(s);
    s = NULL;
    ASSERT_EQ_INT(pst_create(&s, "FedSGD", NULL, err), PT_ERR_NOTFOUND);
    ASSERT_CONTAINS(err, "FedSGD");
    ASSERT(s == NULL);
    ASSERT_EQ_INT(pst_create(&s, "DPFixedClipping(Nope)", &o, err), PT_ERR_NOTFOUND);
    ASSERT_EQ_INT(pst_create(&s, "DPFixedClipping(DPFixedClipping(FedAvg))", &o, err),
                  PT_ERR_NOTFOUND);
    /* Flower's ValueErrors */
    ASSERT_EQ_INT(pst_create(&s, "FedProx", NULL, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "proximal_mu");
    ASSERT_EQ_INT(pst_create(&s, "MultiKrum", NULL, err), PT_ERR_INVAL);
    ASSERT_EQ_INT(pst_create(&s, "DPFixedClipping(FedAvg)", NULL, err), PT_ERR_INVAL);
    o.clipping_norm = 0;
    ASSERT_EQ_INT(pst_create(&s, "DPFixedClipping(FedAvg)", &o, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "clipping norm should be a positive value");
    o.clipping_norm = 1;
    o.noise_multiplier = -1;
    ASSERT_EQ_INT(pst_create(&s, "DPFixedClipping(FedAvg)", &o, err), PT_ERR_INVAL);
    pst_options_init(&o);
    o.trim_beta = 0.5;
    ASSERT_EQ_INT(pst_create(&s, "FedTrimmedAvg", &o, err), PT_ERR_INVAL);
    pst_options_init(&o);
    o.fraction_fit = 1.5;
    ASSERT_EQ_INT(pst_create(&s, "FedAvg", &o, err), PT_ERR_INVAL);
    /* text setter */
    pst_options_init(&o);
    ASSERT_OK(pst_option_set(&o, "--server-momentum", "0.9", err));
    ASSERT_OK(pst_option_set(&o, "proximal_mu", "0.01", err));
    ASSERT_OK(pst_option_set(&o, "accept-failures", "false", err));
    ASSERT_OK(pst_option_set(&o, "min-fit-clients", "3", err));
    ASSERT_OK(pst_option_set(&o, "defaults", "flower", err));
    ASSERT_NEAR(o.server_momentum, 0.9, 0);
    ASSERT_NEAR(o.proximal_mu, 0.01, 0);
    ASSERT_EQ_INT(o.accept_failures, 0);
    ASSERT_EQ_INT(o.min_fit_clients, 3);
    ASSERT_EQ_INT(o.defaults, PST_DEFAULTS_FLOWER);
    ASSERT_EQ_INT(pst_option_set(&o, "server-momentum", "0.9x", err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "server-momentum");
    ASSERT_EQ_INT(pst_option_set(&o, "eta", "nan", err), PT_ERR_INVAL);
    ASSERT_EQ_INT(pst_option_set(&o, "min-fit-clients", "-1", err), PT_ERR_INVAL);
    ASSERT_EQ_INT(pst_option_set(&o, "accept-failures", "maybe", err), PT_ERR_INVAL);
    ASSERT_EQ_INT(pst_option_set(&o, "momentum", "1", err), PT_ERR_NOTFOUND);
    ASSERT_CONTAINS(pst_help(), "--proximal-mu");
}

static void t_sampling(void)
{
    pst_strategy *s = create("FedAvg", NULL);
    pst_options o;
    int k, m, idx[10], seen[10] = {0};
    uint64_t rng = 42, rng2 = 42;
    ASSERT(s);
    ASSERT_OK(pst_num_fit_clients(s, 10, &k, &m));
    ASSERT_EQ_INT(k, 10);
    ASSERT_EQ_INT(m, 2);
    ASSERT_OK(pst_num_fit_clients(s, 1, &k, &m));
    ASSERT_EQ_INT(k, 2); /* max(int(1*1.0), 2): the server will cancel the round */
    pst_free(s);
    pst_options_init(&o);
    o.fraction_fit = 0.3;
    o.fraction_evaluate = 0.0;
    o.min_fit_clients = 1;
    s = create("FedAvg", &o);
    ASSERT(s);
    ASSERT_OK(pst_num_fit_clients(s, 10, &k, &m));
    ASSERT_EQ_INT(k, 3); /* int(10 * 0.3) = int(3.0000000000000004) */
    ASSERT_OK(pst_num_fit_clients(s, 7, &k, &m));
    ASSERT_EQ_INT(k, 2); /* int(2.1) */
    ASSERT_OK(pst_num_evaluate_clients(s, 10, &k, &m));
    ASSERT_EQ_INT(k, 0);
    ASSERT_EQ_INT(pst_num_fit_clients(s, -1, &k, &m), PT_ERR_INVAL);
    pst_free(s);
    s = create("QFedAvg", NULL);
    ASSERT_OK(pst_num_fit_clients(s, 0, &k, &m));
    ASSERT_EQ_INT(k, 1);
    ASSERT_EQ_INT(m, 1);
    pst_free(s);
    /* sampler: distinct, seeded, uniform enough */
    ASSERT_OK(pst_sample(&rng, 10, 10, idx));
    for (int i = 0; i < 10; i++) seen[idx[i]]++;
    for (int i = 0; i < 10; i++) ASSERT_EQ_INT(seen[i], 1);
    {
        int a[4], b[4], cnt[8] = {0};
        rng = rng2 = 7;
        ASSERT_OK(pst_sample(&rng, 8, 4, a));
        ASSERT_OK(pst_sample(&rng2, 8, 4, b));
        ASSERT(!memcmp(a, b, sizeof a));
        for (int t = 0; t < 8000; t++) {
            ASSERT_OK(pst_sample(&rng, 8, 1, a));
            cnt[a[0]]++;
        }
        for (int i = 0; i < 8; i++) ASSERT_MSG(cnt[i] > 850 && cnt[i] < 1150, "cnt %d", cnt[i]);
    }
    ASSERT_EQ_INT(pst_sample(&rng, 3, 4, idx), PT_ERR_INVAL);
    ASSERT_OK(pst_sample(&rng, 0, 0, idx));
}

static void t_fedavg_weighted_and_metrics(void)
{
    pst_strategy *s = create("FedAvg", NULL);
    pt_params g, a, b;
    pt_config ma = {0}, mb = {0}, out = {0};
    char err[PT_ERRLEN];
    int upd, res, fail, rej;
    ASSERT(s);
    mk2(&g, 2, 3);
    mk2(&a, 2, 3);
    mk2(&b, 2, 3);
    for (size_t i = 0; i < g.total; i++) {
        a.buf[i] = (float)i;
        b.buf[i] = 10.0f + (float)i;
    }
    pt_config_set_double(&ma, "accuracy", 0.5);
    pt_config_set_int(&ma, "steps", 10);
    pt_config_set_string(&ma, "note", "ignored");
    pt_config_set_double(&mb, "accuracy", 0.9);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &a, 30, &ma, err));
    ASSERT_OK(pst_fit_add(s, &b, 10, &mb, err));
    ASSERT_OK(pst_fit_end(s, &g, &upd, &out, err));
    ASSERT_EQ_INT(upd, 1);
    for (size_t i = 0; i < g.total; i++)
        ASSERT_NEAR(g.buf[i], (30.0 * i + 10.0 * (10 + i)) / 40, 1e-6);
    ASSERT_NEAR(pt_config_number_or(&out, "accuracy", -1), (0.5 * 30 + 0.9 * 10) / 40, 1e-12);
    ASSERT_NEAR(pt_config_number_or(&out, "steps", -1), 10, 1e-12); /* only one reported it */
    ASSERT(pt_config_get(&out, "note") == NULL);
    pst_fit_counts(s, &res, &fail, &rej);
    ASSERT_EQ_INT(res, 2);
    ASSERT_EQ_INT(fail, 0);
    ASSERT_EQ_INT(pst_last_round(s), 1);
    /* state errors */
    ASSERT_EQ_INT(pst_fit_add(s, &a, 1, NULL, err), PT_ERR_STATE);
    ASSERT_EQ_INT(pst_fit_end(s, &g, &upd, NULL, err), PT_ERR_STATE);
    ASSERT_OK(pst_fit_begin(s, 2, &g, err));
    ASSERT_EQ_INT(pst_fit_begin(s, 2, &g, err), PT_ERR_STATE);
    /* all zero examples: no average */
    ASSERT_OK(pst_fit_add(s, &a, 0, NULL, err));
    ASSERT_EQ_INT(pst_fit_end(s, &g, &upd, NULL, err), PT_ERR_INVAL);
    ASSERT_EQ_INT(upd, 0);
    /* no results: no update */
    ASSERT_OK(pst_fit_begin(s, 3, &g, err));
    pst_fit_failure(s);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 0);
    pst_free(s);
    /* metrics none (Flower without a metrics aggregation fn) */
    pst_options o;
    pst_options_init(&o);
    o.metrics = PST_METRICS_NONE;
    s = create("FedAvg", &o);
    pt_config_free(&out);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &a, 30, &ma, err));
    ASSERT_OK(pst_fit_end(s, &g, &upd, &out, err));
    ASSERT_EQ_INT(out.n, 0);
    pst_free(s);
    pt_config_free(&ma);
    pt_config_free(&mb);
    pt_config_free(&out);
    pt_params_free(&g);
    pt_params_free(&a);
    pt_params_free(&b);
}

/* Updates as views: tensors pointing into an unaligned byte buffer. */
static void t_views_unaligned_and_reject(void)
{
    enum { R = 400, C = 700 }; /* 280,700 floats: several blocks, two threads */
    pst_options o;
    pt_params g;
    char err[PT_ERRLEN];
    int upd, res, fail, rej;
    unsigned char *raw = malloc((R * C + C) * 4 + 8);
    pt_params v;
    pt_tensor vt[2];
    pst_options_init(&o);
    o.threads = 2;
    pst_strategy *s = create("FedAvg", &o);
    ASSERT(s && raw);
    mk2(&g, R, C);
    v.n = 2;
    v.t = vt;
    v.total = 0;
    v.buf = NULL;
    vt[0] = g.t[0];
    vt[1] = g.t[1];
    vt[0].data = (float *)(void *)(raw + 1); /* deliberately misaligned */
    vt[1].data = (float *)(void *)(raw + 1 + (size_t)R * C * 4);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < (size_t)R * C + C; i++) {
            float x = (float)(k + 1) * 0.5f + (float)(i % 7);
            memcpy(raw + 1 + 4 * i, &x, 4);
        }
        if (k == 1) { /* a NaN late in the kernel, in the second thread's half */
            float nan = NAN;
            memcpy(raw + 1 + 4 * ((size_t)R * C - 5), &nan, 4);
            ASSERT_EQ_INT(pst_fit_add(s, &v, 100, NULL, err), PT_ERR_DIVERGED);
            ASSERT_CONTAINS(err, "non-finite");
        } else {
            ASSERT_OK(pst_fit_add(s, &v, k + 1, NULL, err));
        }
    }
    /* shape and count mismatches */
    vt[1].shape[0] = C + 1;
    vt[1].numel = C + 1;
    ASSERT_EQ_INT(pst_fit_add(s, &v, 1, NULL, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "tensor 1 has shape (701,), expected (700,)");
    vt[1].shape[0] = C;
    vt[1].numel = C + 1;
    ASSERT_EQ_INT(pst_fit_add(s, &v, 1, NULL, err), PT_ERR_MISMATCH);
    vt[1].numel = C;
    v.n = 1;
    ASSERT_EQ_INT(pst_fit_add(s, &v, 1, NULL, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "1 tensors");
    v.n = 2;
    ASSERT_EQ_INT(pst_fit_add(s, &v, -1, NULL, err), PT_ERR_INVAL);
    pst_fit_counts(s, &res, &fail, &rej);
    ASSERT_EQ_INT(res, 2);
    ASSERT_EQ_INT(fail, 5);
    ASSERT_EQ_INT(rej, 5);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    /* clients 0 (n=1, +0.5) and 2 (n=3, +1.5): (0.5 + 4.5)/4 = 1.25 + i%7 */
    for (size_t t = 0, i = 0; t < 2; t++)
        for (size_t j = 0; j < g.t[t].numel; j++, i++)
            if (fabs(g.t[t].data[j] - (1.25 + (double)(i % 7))) > 1e-6)
                ASSERT_MSG(0, "at %zu: %g", i, g.t[t].data[j]);
    pst_free(s);
    /* accept_failures = False: the rejected update voids the round */
    pst_options_init(&o);
    o.accept_failures = 0;
    s = create("FedAvg", &o);
    float before = g.buf[0];
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &g, 5, NULL, err));
    {
        float nan = NAN;
        memcpy(raw + 1, &nan, 4);
    }
    ASSERT_EQ_INT(pst_fit_add(s, &v, 5, NULL, err), PT_ERR_DIVERGED);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 0);
    ASSERT_NEAR(g.buf[0], before, 0);
    pst_free(s);
    free(raw);
    pt_params_free(&g);
}

/* Determinism, both accumulators, over two rounds (the first fold of a round
 * writes the accumulator, later ones add): one thread with sequential adds,
 * three threads with one pst_fit_add_many, two threads with batches of 2 and
 * 5 give bit-identical globals. */
static void t_deterministic(void)
{
    enum { K = 7, N = 300001 };
    static const pst_accumulator accs[3] = {PST_ACC_DOUBLE48, PST_ACC_FLOAT_DELTA,
                                            PST_ACC_DOUBLE};
    pt_params g[3], u[K];
    const pt_params *up[K];
    int64_t ne[K];
    char err[PT_ERRLEN];
    uint64_t r = 7;
    for (int k = 0; k < K; k++) {
        mk(&u[k], N, 0);
        up[k] = &u[k];
        ne[k] = 3 + 17 * k;
    }
    for (int a = 0; a < 3; a++) {
        pst_strategy *s[3];
        for (int v = 0; v < 3; v++) {
            pst_options o;
            pst_options_init(&o);
            o.accumulator = accs[a];
            o.threads = v == 0 ? 1 : (v == 1 ? 3 : 2);
            o.server_momentum = 0.5;
            s[v] = create("FedAvgM", &o);
            ASSERT(s[v]);
            mk(&g[v], N, 0);
            for (size_t i = 0; i < N; i++) g[v].buf[i] = (float)(i % 97) * 0.001f - 0.05f;
        }
        for (int round = 1; round <= 2; round++) {
            int upd;
            for (int k = 0; k < K; k++)
                for (size_t i = 0; i < N; i++) {
                    r = r * 6364136223846793005ull + 1442695040888963407ull;
                    u[k].buf[i] =
                        g[0].buf[i] + (float)((double)(r >> 40) / (1 << 24) - 0.5) * 4e-3f;
                }
            for (int v = 0; v < 3; v++) ASSERT_OK(pst_fit_begin(s[v], round, &g[v], err));
            for (int k = 0; k < K; k++) ASSERT_OK(pst_fit_add(s[0], up[k], ne[k], NULL, err));
            ASSERT_OK(pst_fit_add_many(s[1], K, up, ne, NULL, NULL, err));
            ASSERT_OK(pst_fit_add_many(s[2], 2, up, ne, NULL, NULL, err));
            ASSERT_OK(pst_fit_add_many(s[2], K - 2, up + 2, ne + 2, NULL, NULL, err));
            for (int v = 0; v < 3; v++) {
                ASSERT_OK(pst_fit_end(s[v], &g[v], &upd, NULL, err));
                ASSERT_EQ_INT(upd, 1);
            }
            ASSERT_MSG(!memcmp(g[0].buf, g[1].buf, N * sizeof(float)) &&
                           !memcmp(g[0].buf, g[2].buf, N * sizeof(float)),
                       "accumulator %d round %d: results depend on threads/batching", a, round);
        }
        for (int v = 0; v < 3; v++) {
            pst_free(s[v]);
            pt_params_free(&g[v]);
        }
    }
    for (int k = 0; k < K; k++) pt_params_free(&u[k]);
}

/* pst_fit_add_many == sequential adds; thread counts agree. */
static void t_batch_and_threads(void)
{
    enum { K = 5, N = 600000 };
    pt_params g, u[K], g2, g3;
    const pt_params *up[K];
    int64_t ne[K];
    int st[K], upd;
    char err[PT_ERRLEN];
    pst_options o1, o2;
    pst_options_init(&o1);
    o1.threads = 1;
    pst_options_init(&o2);
    o2.threads = 3;
    pst_strategy *a = create("FedAvg", &o1), *b = create("FedAvg", &o2);
    ASSERT(a && b);
    mk(&g, N, 0);
    mk(&g2, N, 0);
    mk(&g3, N, 0);
    uint64_t r = 1;
    for (int k = 0; k < K; k++) {
        mk(&u[k], N, 0);
        for (size_t i = 0; i < N; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            u[k].buf[i] = (float)((double)(r >> 40) / (double)(1 << 24) - 0.5);
        }
        up[k] = &u[k];
        ne[k] = 10 + k;
    }
    u[3].buf[N - 1] = INFINITY;
    ASSERT_OK(pst_fit_begin(a, 1, &g, err));
    for (int k = 0; k < K; k++) pst_fit_add(a, up[k], ne[k], NULL, err);
    ASSERT_OK(pst_fit_end(a, &g, &upd, NULL, err));
    ASSERT_OK(pst_fit_begin(b, 1, &g2, err));
    ASSERT_EQ_INT(pst_fit_add_many(b, K, up, ne, NULL, st, err), PT_ERR_DIVERGED);
    ASSERT_EQ_INT(st[3], PT_ERR_DIVERGED);
    ASSERT_EQ_INT(st[0] | st[1] | st[2] | st[4], 0);
    ASSERT_OK(pst_fit_end(b, &g2, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    for (size_t i = 0; i < N; i++) {
        double want = 0;
        for (int k = 0; k < K; k++)
            if (k != 3) want += (double)ne[k] * u[k].buf[i];
        want /= 10 + 11 + 12 + 14;
        if (fabs(g.buf[i] - want) > 1e-7 || fabs(g2.buf[i] - want) > 1e-7) {
            ASSERT_MSG(0, "at %zu: %.9g %.9g want %.9g", i, g.buf[i], g2.buf[i], want);
        }
    }
    pst_free(a);
    pst_free(b);
    for (int k = 0; k < K; k++) pt_params_free(&u[k]);
    pt_params_free(&g);
    pt_params_free(&g2);
    pt_params_free(&g3);
}

static void t_failures_semantics(void)
{
    pst_options o;
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd, has;
    double loss = -1;
    mk(&g, 2, 0);
    mk(&u, 2, 4);
    /* FaultTolerantFedAvg: 1 result + 1 failure = 0.5 >= 0.5 updates; 1 + 2 does not */
    pst_strategy *s = create("FaultTolerantFedAvg", NULL);
    ASSERT(s);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    pst_fit_failure(s);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    ASSERT_NEAR(g.buf[0], 4, 0);
    u.buf[0] = 8;
    ASSERT_OK(pst_fit_begin(s, 2, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    pst_fit_failure(s);
    pst_fit_failure(s);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 0);
    ASSERT_NEAR(g.buf[0], 4, 0);
    pst_evaluate_begin(s, 2);
    ASSERT_OK(pst_evaluate_add(s, 1.0, 10, NULL, err));
    pst_evaluate_failure(s);
    pst_evaluate_failure(s);
    ASSERT_OK(pst_evaluate_end(s, &loss, &has, NULL, err));
    ASSERT_EQ_INT(has, 0);
    pst_free(s);
    pst_options_init(&o);
    o.min_completion_rate_evaluate = 0.3;
    s = create("FaultTolerantFedAvg", &o);
    pst_evaluate_begin(s, 1);
    ASSERT_OK(pst_evaluate_add(s, 1.0, 10, NULL, err));
    pst_evaluate_failure(s);
    pst_evaluate_failure(s);
    ASSERT_OK(pst_evaluate_end(s, &loss, &has, NULL, err));
    ASSERT_EQ_INT(has, 1);
    ASSERT_NEAR(loss, 1.0, 0);
    pst_free(s);
    /* accept_failures: True (default) aggregates despite failures; False does not */
    s = create("FedAvgM", NULL);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    pst_fit_failure(s);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    pst_free(s);
    pst_options_init(&o);
    o.accept_failures = 0;
    s = create("FedAvg", &o);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    pst_fit_failure(s);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 0);
    pst_evaluate_begin(s, 1);
    ASSERT_OK(pst_evaluate_add(s, 2.0, 10, NULL, err));
    pst_evaluate_failure(s);
    ASSERT_OK(pst_evaluate_end(s, &loss, &has, NULL, err));
    ASSERT_EQ_INT(has, 0);
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
}

static void t_evaluate(void)
{
    pst_strategy *s = create("FedAvg", NULL);
    pt_config m1 = {0}, m2 = {0}, out = {0};
    char err[PT_ERRLEN];
    double loss;
    int has;
    pt_config_set_double(&m1, "accuracy", 0.8);
    pt_config_set_double(&m2, "accuracy", 0.6);
    pt_config_set_bool(&m2, "flag", 1);
    ASSERT_EQ_INT(pst_evaluate_add(s, 1, 1, NULL, err), PT_ERR_STATE);
    pst_evaluate_begin(s, 1);
    ASSERT_OK(pst_evaluate_add(s, (double)0.25f, 100, &m1, err));
    ASSERT_OK(pst_evaluate_add(s, 0.75, 300, &m2, err));
    ASSERT_EQ_INT(pst_evaluate_add(s, NAN, 300, &m2, err), PT_ERR_DIVERGED);
    ASSERT_EQ_INT(pst_evaluate_add(s, 1.0, -3, &m2, err), PT_ERR_INVAL);
    ASSERT_OK(pst_evaluate_end(s, &loss, &has, &out, err));
    ASSERT_EQ_INT(has, 1); /* rejected results count as failures; accepted by default */
    ASSERT_NEAR(loss, (0.25 * 100 + 0.75 * 300) / 400, 1e-12);
    ASSERT_NEAR(pt_config_number_or(&out, "accuracy", -1), (0.8 * 100 + 0.6 * 300) / 400, 1e-12);
    ASSERT_NEAR(pt_config_number_or(&out, "flag", -1), 1, 0);
    /* no results */
    pst_evaluate_begin(s, 2);
    ASSERT_OK(pst_evaluate_end(s, &loss, &has, NULL, err));
    ASSERT_EQ_INT(has, 0);
    /* zero examples: no loss (Flower divides by zero) */
    pst_evaluate_begin(s, 3);
    ASSERT_OK(pst_evaluate_add(s, 1.0, 0, NULL, err));
    ASSERT_OK(pst_evaluate_end(s, &loss, &has, NULL, err));
    ASSERT_EQ_INT(has, 0);
    pst_free(s);
    pt_config_free(&m1);
    pt_config_free(&m2);
    pt_config_free(&out);
}

static void t_fedprox_config(void)
{
    pst_options o;
    pt_config c = {0};
    char err[PT_ERRLEN];
    const pt_scalar *v;
    pst_options_init(&o);
    o.proximal_mu = 0.01;
    pst_strategy *s = create("FedProx", &o);
    ASSERT(s);
    pt_config_set_int(&c, "epochs", 1);
    ASSERT_OK(pst_configure_fit(s, 1, &c, err));
    v = pt_config_get(&c, "proximal_mu");
    ASSERT(v && v->type == PT_SCALAR_DOUBLE);
    ASSERT_NEAR(v->v.d, 0.01, 0);
    ASSERT_EQ_INT(c.n, 2);
    pst_free(s);
    pt_config_free(&c);
    s = create("FedAvg", NULL);
    ASSERT_OK(pst_configure_fit(s, 1, &c, err));
    ASSERT_EQ_INT(c.n, 0);
    pst_free(s);
}

/* Kept strategies on scalar models: values chosen by hand. */
static double robust_run(const char *name, const pst_options *o, const float *vals,
                         const int64_t *n, int k, int *rc_out)
{
    pst_strategy *s = create(name, o);
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd = 0;
    double r;
    mk(&g, 1, 0);
    mk(&u, 1, 0);
    *rc_out = pst_fit_begin(s, 1, &g, err);
    for (int i = 0; i < k; i++) {
        u.buf[0] = vals[i];
        pst_fit_add(s, &u, n ? n[i] : 1, NULL, err);
    }
    *rc_out = pst_fit_end(s, &g, &upd, NULL, err);
    if (*rc_out == PT_OK && !upd) *rc_out = 1;
    r = g.buf[0];
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
    return r;
}

static void t_robust(void)
{
    pst_options o;
    int rc;
    const float v5[5] = {3, 1, 100, 2, -50}, v4[4] = {4, 1, 3, 2};
    pst_options_init(&o);
    ASSERT_NEAR(robust_run("FedMedian", &o, v5, NULL, 5, &rc), 2, 0);
    ASSERT_OK(rc);
    ASSERT_NEAR(robust_run("FedMedian", &o, v4, NULL, 4, &rc), 2.5, 0); /* even: mean of middle */
    /* trimmed: beta 0.2 of 5 cuts int(1.0) = 1 each end: mean(1, 2, 3) */
    ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, v5, NULL, 5, &rc), 2, 1e-7);
    ASSERT_OK(rc);
    /* 4 results: int(0.8) = 0 cut: plain mean */
    ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, v4, NULL, 4, &rc), 2.5, 1e-7);
    o.trim_beta = 0.45; /* 2 results: int(0.9) = 0 ok; 3 results: int(1.35) = 1 leaves 1 */
    ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, v5, NULL, 3, &rc), 3, 0);
    o.trim_beta = 0.49;
    {
        const float two[2] = {1, 5};
        ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, two, NULL, 2, &rc), 3, 0);
        ASSERT_OK(rc); /* int(0.98) = 0: nothing cut */
        const float four[4] = {1, 2, 3, 4};
        ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, four, NULL, 4, &rc), 2.5, 0);
        (void)four;
    }
    pst_options_init(&o);
    o.trim_beta = 0.34;
    {
        const float three[3] = {1, 2, 9};
        ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, three, NULL, 3, &rc), 2, 0);
        o.trim_beta = 0.4;
        const float f2[5] = {1, 2, 9, 10, 11};
        /* int(2.0) = 2 of 5 each end leaves 1 */
        ASSERT_NEAR(robust_run("FedTrimmedAvg", &o, f2, NULL, 5, &rc), 9, 0);
    }
    /* Krum f=0, n=5: c = 3 nearest; outlier 100 and -50 score high; 2 has
     * neighbours 1,3 (d=1,1) and -50 or 100... scores: 1: d to 2,3 = 1,4, to
     * -50 = 2601 -> 1+4+2601; 2: 1+1+2704; 3: 1+4+9409 (100: 97^2=9409 vs -50: 53^2=2809)
     * 3: sorted 1,4,2809 -> 2814; 1: 1,4,2601 -> 2606; 2: 1,1,2704 -> 2706. Krum picks 1. */
    pst_options_init(&o);
    ASSERT_NEAR(robust_run("Krum", &o, v5, NULL, 5, &rc), 1, 0);
    ASSERT_OK(rc);
    /* f = 1: c = 2: 1: 1+4 = 5; 2: 1+1 = 2; 3: 1+4 = 5 -> picks 2 */
    o.num_malicious_clients = 1;
    ASSERT_NEAR(robust_run("Krum", &o, v5, NULL, 5, &rc), 2, 0);
    /* MultiKrum keep 3, f = 1: lowest scores 2 (2), 1 (5), 3 (5) weighted by n */
    {
        const int64_t n5[5] = {1, 2, 1, 4, 1};
        o.num_clients_to_keep = 3;
        ASSERT_NEAR(robust_run("MultiKrum", &o, v5, n5, 5, &rc), (3 * 1 + 1 * 2 + 2 * 4) / 7.0,
                    1e-6);
        ASSERT_OK(rc);
        o.num_clients_to_keep = 9; /* more than received: all of them */
        ASSERT_NEAR(robust_run("MultiKrum", &o, v5, n5, 5, &rc),
                    (3 * 1 + 1 * 2 + 100 * 1 + 2 * 4 - 50 * 1) / 9.0, 1e-6);
    }
    /* Bulyan: f = 0 gives the plain mean */
    pst_options_init(&o);
    ASSERT_NEAR(robust_run("Bulyan", &o, v5, NULL, 5, &rc), (3 + 1 + 100 + 2 - 50) / 5.0, 1e-6);
    ASSERT_OK(rc);
    /* f = 1 needs n >= 7 */
    o.num_malicious_clients = 1;
    robust_run("Bulyan", &o, v5, NULL, 5, &rc);
    ASSERT_EQ_INT(rc, PT_ERR_INVAL);
    {   /* n = 7, f = 1: theta = 5 models selected by repeated Krum, then the
         * mean of the beta = 3 values closest to their median. Krum picks 2
         * (c=4), then 1 (c=3, tie with 3: first), 3, 0, and from {50,-60,4}
         * with c=1 the first of the tied 50 and 4: selection {2,1,3,0,50},
         * median 2, closest 1,2,3: mean 2. */
        const float v7[7] = {50, 0, 1, 2, 3, -60, 4};
        ASSERT_NEAR(robust_run("Bulyan", &o, v7, NULL, 7, &rc), 2, 1e-7);
        ASSERT_OK(rc);
    }
    /* DP-wrapped kept strategy: no noise, clipping to norm 1 around global 0 */
    pst_options_init(&o);
    o.noise_multiplier = 0;
    o.clipping_norm = 1;
    o.num_sampled_clients = 3;
    {
        const float v3[3] = {0.5f, 3, -2};
        ASSERT_NEAR(robust_run("DPFixedClipping(FedMedian)", &o, v3, NULL, 3, &rc), 0.5, 0);
        const float v3b[3] = {2, 3, -2};
        ASSERT_NEAR(robust_run("DPFixedClipping(FedMedian)", &o, v3b, NULL, 3, &rc), 1, 0);
    }
}

static void t_qfedavg(void)
{
    pst_options o;
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd;
    double L = 0.5, q = 0.2, lr = 0.1;
    mk(&g, 2, 1.0f);
    mk(&u, 2, 0);
    pst_options_init(&o);
    pst_strategy *s = create("QFedAvg", &o);
    ASSERT(s && pst_needs_central_loss(s));
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    u.buf[0] = 0.8f, u.buf[1] = 1.1f;
    ASSERT_OK(pst_fit_add(s, &u, 10, NULL, err));
    u.buf[0] = 1.3f, u.buf[1] = 0.9f;
    ASSERT_OK(pst_fit_add(s, &u, 99, NULL, err));
    ASSERT_EQ_INT(pst_fit_end(s, &g, &upd, NULL, err), PT_ERR_STATE); /* no central loss */
    ASSERT_CONTAINS(err, "centralised loss");
    ASSERT_NEAR(g.buf[0], 1.0, 0);
    /* again with the loss */
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    u.buf[0] = 0.8f, u.buf[1] = 1.1f;
    ASSERT_OK(pst_fit_add(s, &u, 10, NULL, err));
    u.buf[0] = 1.3f, u.buf[1] = 0.9f;
    ASSERT_OK(pst_fit_add(s, &u, 99, NULL, err));
    ASSERT_OK(pst_set_central_loss(s, L));
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    {
        double Lq = pow(L + 1e-10, q), Lq1 = pow(L + 1e-10, q - 1);
        double g1[2] = {(1 - 0.8f) / lr, (1 - 1.1f) / lr};
        double g2[2] = {(1 - 1.3f) / lr, (1 - 0.9f) / lr};
        double h = q * Lq1 * (g1[0] * g1[0] + g1[1] * g1[1]) + Lq / lr +
                   q * Lq1 * (g2[0] * g2[0] + g2[1] * g2[1]) + Lq / lr;
        ASSERT_NEAR(g.buf[0], 1 - Lq * (g1[0] + g2[0]) / h, 1e-6);
        ASSERT_NEAR(g.buf[1], 1 - Lq * (g1[1] + g2[1]) / h, 1e-6);
    }
    ASSERT_EQ_INT(pst_set_central_loss(s, NAN), PT_ERR_INVAL);
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
}

static void t_dp_clipping_and_noise(void)
{
    enum { N = 200000 };
    pst_options o;
    pt_params g, u, g2;
    char err[PT_ERRLEN];
    int upd;
    mk(&g, 4, 1.0f);
    mk(&u, 4, 0);
    pst_options_init(&o);
    o.noise_multiplier = 0;
    o.clipping_norm = 1.0;
    o.num_sampled_clients = 2;
    pst_strategy *s = create("DPFixedClipping(FedAvg)", &o);
    ASSERT(s);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    /* update (2,2,2,2) has norm 4 -> scaled by 1/4 -> global + 0.5 */
    for (int i = 0; i < 4; i++) u.buf[i] = 3.0f;
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    /* update (0.1,0,0,0): norm 0.1, kept */
    u.buf[0] = 1.1f, u.buf[1] = u.buf[2] = u.buf[3] = 1.0f;
    ASSERT_OK(pst_fit_add(s, &u, 3, NULL, err));
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    ASSERT_NEAR(g.buf[0], (1.5 * 1 + 1.1 * 3) / 4, 1e-6);
    ASSERT_NEAR(g.buf[1], (1.5 * 1 + 1.0 * 3) / 4, 1e-6);
    /* any failure: no update */
    ASSERT_OK(pst_fit_begin(s, 2, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 3, NULL, err));
    pst_fit_failure(s);
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 0);
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
    /* noise: sigma = z*C/m = 2 * 0.5 / 4 = 0.25, seeded and reproducible */
    o.noise_multiplier = 2;
    o.clipping_norm = 0.5;
    o.num_sampled_clients = 4;
    o.seed = 123;
    mk(&g, N, 0);
    mk(&g2, N, 0);
    mk(&u, N, 0);
    for (int rep = 0; rep < 2; rep++) {
        pt_params *gg = rep ? &g2 : &g;
        s = create("DPFixedClipping(FedAvg)", &o);
        ASSERT_OK(pst_fit_begin(s, 1, gg, err));
        ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
        ASSERT_OK(pst_fit_end(s, gg, &upd, NULL, err));
        pst_free(s);
    }
    {
        double sum = 0, sq = 0, m4 = 0, mean, var;
        size_t within = 0;
        for (size_t i = 0; i < N; i++) {
            sum += g.buf[i];
            sq += (double)g.buf[i] * g.buf[i];
            m4 += pow(g.buf[i], 4);
            if (fabs(g.buf[i]) < 0.25) within++;
        }
        mean = sum / N;
        var = sq / N - mean * mean;
        ASSERT_MSG(fabs(mean) < 5 * 0.25 / sqrt(N), "noise mean %g", mean);
        ASSERT_MSG(fabs(sqrt(var) - 0.25) < 0.005, "noise std %g, want 0.25", sqrt(var));
        ASSERT_MSG(fabs(m4 / N / (var * var) - 3) < 0.1, "kurtosis %g", m4 / N / (var * var));
        ASSERT_MSG(fabs((double)within / N - 0.6827) < 0.01, "1-sigma fraction %g",
                   (double)within / N);
        ASSERT(!memcmp(g.buf, g2.buf, N * sizeof(float)));
    }
    o.seed = 124;
    s = create("DPFixedClipping(FedAvg)", &o);
    memset(g2.buf, 0, N * sizeof(float));
    ASSERT_OK(pst_fit_begin(s, 1, &g2, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    ASSERT_OK(pst_fit_end(s, &g2, &upd, NULL, err));
    ASSERT(memcmp(g.buf, g2.buf, N * sizeof(float)) != 0);
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&g2);
    pt_params_free(&u);
}

/* Divergence in the server optimizer: global and state stay. */
static void t_diverged_output(void)
{
    pst_options o;
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd;
    mk(&g, 2, 0);
    mk(&u, 2, 3e38f);
    pst_options_init(&o);
    o.server_learning_rate = 10; /* 0 - 10 * (0 - 3e38) overflows float32 */
    pst_strategy *s = create("FedAvgM", &o);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    ASSERT_EQ_INT(pst_fit_end(s, &g, &upd, NULL, err), PT_ERR_DIVERGED);
    ASSERT_EQ_INT(upd, 0);
    ASSERT_NEAR(g.buf[0], 0, 0);
    ASSERT_EQ_INT(pst_last_round(s), 0);
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
}

/* Checkpoint after round 2 of 4, resume in a new object: same result. */
static void t_state_save_load(void)
{
    static const char *const names[] = {"FedAdam", "FedAvgM", "FedYogi", "FedAdagrad",
                                        "DPFixedClipping(FedAvg)"};
    for (size_t ni = 0; ni < sizeof names / sizeof names[0]; ni++) {
        pst_options o;
        pt_params g, g2 = {0}, u;
        char err[PT_ERRLEN];
        int upd;
        FILE *f = tmpfile();
        pst_options_init(&o);
        o.server_momentum = 0.5;
        o.noise_multiplier = 1;
        o.clipping_norm = 10;
        o.num_sampled_clients = 2;
        o.seed = 5;
        pst_strategy *a = create(names[ni], &o), *b = create(names[ni], &o);
        ASSERT(a && b && f);
        mk(&g, 5, 0.5f);
        mk(&u, 5, 0);
        for (int r = 1; r <= 4; r++) {
            if (r == 3) {
                ASSERT_OK(pst_state_save(a, f, err));
                rewind(f);
                ASSERT_OK(pst_state_load(b, f, err));
                ASSERT_EQ_INT(pst_last_round(b), 2);
                pt_params_copy(&g2, &g);
            }
            ASSERT_OK(pst_fit_begin(a, r, &g, err));
            for (int i = 0; i < 5; i++) u.buf[i] = g.buf[i] + 0.1f * (float)(i + r);
            ASSERT_OK(pst_fit_add(a, &u, 2, NULL, err));
            ASSERT_OK(pst_fit_end(a, &g, &upd, NULL, err));
            if (r >= 3) {
                ASSERT_OK(pst_fit_begin(b, r, &g2, err));
                for (int i = 0; i < 5; i++) u.buf[i] = g2.buf[i] + 0.1f * (float)(i + r);
                ASSERT_OK(pst_fit_add(b, &u, 2, NULL, err));
                ASSERT_OK(pst_fit_end(b, &g2, &upd, NULL, err));
            }
        }
        ASSERT_MSG(!memcmp(g.buf, g2.buf, 5 * sizeof(float)), "%s: resumed run differs",
                   names[ni]);
        /* wrong strategy / garbage */
        rewind(f);
        pst_strategy *c = create("FedAvg", NULL);
        ASSERT_EQ_INT(pst_state_load(c, f, err), PT_ERR_MISMATCH);
        pst_free(c);
        fclose(f);
        f = tmpfile();
        fputs("PSTSxxxx", f);
        rewind(f);
        ASSERT_EQ_INT(pst_state_load(b, f, err), PT_ERR_FORMAT);
        fclose(f);
        /* a header promising 2^40 floats with no data behind it, for a strategy
         * that has no layout yet: refused before anything is allocated */
        {
            pst_strategy *fresh = create(names[ni], &o);
            FILE *h = tmpfile();
            ASSERT(fresh && h);
            uint32_t ver = 1, nl = (uint32_t)strlen(pst_name(fresh)), flags = 1u | 4u | 8u;
            int32_t lr = 3;
            uint64_t total = (uint64_t)1 << 40, rng[4] = {1, 2, 3, 4};
            fwrite("PSTS", 1, 4, h);
            fwrite(&ver, 4, 1, h);
            fwrite(&nl, 4, 1, h);
            fwrite(pst_name(fresh), 1, nl, h);
            fwrite(&lr, 4, 1, h);
            fwrite(&total, 8, 1, h);
            fwrite(&flags, 4, 1, h);
            fwrite(rng, sizeof rng, 1, h);
            fwrite("abcd", 1, 4, h);
            rewind(h);
            ASSERT_EQ_INT(pst_state_load(fresh, h, err), PT_ERR_FORMAT);
            ASSERT_CONTAINS(err, "truncated");
            fclose(h);
            pst_free(fresh);
        }
        pst_free(a);
        pst_free(b);
        pt_params_free(&g);
        pt_params_free(&g2);
        pt_params_free(&u);
    }
}

#if !(defined(__SANITIZE_ADDRESS__) || STRAT_ASAN_)
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

/* Streaming: 100 clients of a 1M-float model add at most the default 6-byte
 * double48 accumulator (1.5x the model) to the heap, float-delta 1x, double
 * 2x; FedMedian keeps every update. */
static void t_streaming_memory(void)
{
#if defined(__SANITIZE_ADDRESS__) || STRAT_ASAN_
    printf("SKIP: t_streaming_memory mallinfo2 is not meaningful under ASan\n");
    return;
#else
    enum { N = 1 << 20 };
    size_t model = N * sizeof(float), base, peak = 0;
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd;
    mk(&g, N, 0);
    mk(&u, N, 1);
    base = heap_in_use();
    pst_strategy *s = create("FedAvgM", NULL);
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    for (int k = 0; k < 100; k++) {
        size_t now;
        u.buf[k] = (float)k;
        ASSERT_OK(pst_fit_add(s, &u, 1 + k, NULL, err));
        now = heap_in_use();
        if (now > peak) peak = now;
    }
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_MSG(peak - base <= model * 3 / 2 + model / 8,
               "streaming grew %zu bytes for a %zu-byte model", peak - base, model);
    pst_free(s);
    for (int a = 0; a < 2; a++) {
        pst_options o;
        size_t limit = a ? 2 * model : model; /* double: 8 B/float, float-delta: 4 */
        pst_options_init(&o);
        o.accumulator = a ? PST_ACC_DOUBLE : PST_ACC_FLOAT_DELTA;
        base = heap_in_use();
        peak = 0;
        s = create("FedAvgM", &o);
        ASSERT_OK(pst_fit_begin(s, 2, &g, err));
        for (int k = 0; k < 100; k++) {
            size_t now;
            ASSERT_OK(pst_fit_add(s, &u, 1 + k, NULL, err));
            now = heap_in_use();
            if (now > peak) peak = now;
        }
        ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
        ASSERT_MSG(peak - base <= limit + model / 8,
                   "accumulator %d grew %zu bytes for a %zu-byte model", a, peak - base, model);
        pst_free(s);
    }
    s = create("FedMedian", NULL);
    base = heap_in_use();
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    for (int k = 0; k < 5; k++) ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    ASSERT_MSG(heap_in_use() - base >= 5 * model, "FedMedian keeps every update");
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
#endif
}

#if !(defined(__SANITIZE_ADDRESS__) || STRAT_ASAN_)
static size_t heap_in_use(void);
#endif

/* The float32-delta accumulator: worked values, rejection, memory. */
static void t_float_delta(void)
{
    enum { N = 300000 };
    pst_options o;
    double v[2];
    pt_params g, u;
    char err[PT_ERRLEN];
    int upd;
    pst_options_init(&o);
    ASSERT_OK(pst_option_set(&o, "accumulator", "float-delta", err));
    ASSERT_EQ_INT(pst_option_set(&o, "accumulator", "half", err), PT_ERR_INVAL);
    o.server_momentum = 0.9;
    pst_strategy *s = create("FedAvgM", &o);
    ASSERT(s);
    ASSERT_OK(plus_one_rounds(s, 2, 3, v));
    ASSERT_NEAR(v[0], 1.0, 1e-6);
    ASSERT_NEAR(v[1], 2.9, 1e-6);
    pst_free(s);
    o.server_momentum = PST_UNSET;
    o.threads = 2;
    s = create("FedAvg", &o);
    mk(&g, N, 0);
    mk(&u, N, 0);
    for (size_t i = 0; i < N; i++) g.buf[i] = (float)(i % 13) * 0.25f;
    ASSERT_OK(pst_fit_begin(s, 1, &g, err));
    for (size_t i = 0; i < N; i++) u.buf[i] = g.buf[i] + 0.5f;
    ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
    u.buf[N - 3] = NAN; /* in the last block of the second thread: never folded */
    ASSERT_EQ_INT(pst_fit_add(s, &u, 7, NULL, err), PT_ERR_DIVERGED);
    for (size_t i = 0; i < N; i++) u.buf[i] = g.buf[i] + 1.5f;
    ASSERT_OK(pst_fit_add(s, &u, 3, NULL, err));
    ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
    ASSERT_EQ_INT(upd, 1);
    for (size_t i = 0; i < N; i++)
        if (fabs(g.buf[i] - ((double)(i % 13) * 0.25 + 1.25)) > 1e-6)
            ASSERT_MSG(0, "at %zu: %.9g", i, g.buf[i]);
    pst_free(s);
#if !(defined(__SANITIZE_ADDRESS__) || STRAT_ASAN_)
    {   /* 100 clients: the strategy adds about one model size */
        size_t base = heap_in_use(), peak = 0;
        s = create("FedAvg", &o);
        ASSERT_OK(pst_fit_begin(s, 1, &g, err));
        for (int k = 0; k < 100; k++) {
            size_t now;
            ASSERT_OK(pst_fit_add(s, &u, 1, NULL, err));
            now = heap_in_use();
            if (now > peak) peak = now;
        }
        ASSERT_OK(pst_fit_end(s, &g, &upd, NULL, err));
        ASSERT_MSG(peak - base <= N * sizeof(float) + N / 2, "float-delta grew %zu bytes",
                   peak - base);
        pst_free(s);
    }
#endif
    pt_params_free(&g);
    pt_params_free(&u);
}

TEST_MAIN(TEST(t_worked_fedavgm), TEST(t_float_delta), TEST(t_worked_fedopt),
          TEST(t_petal_defaults),
          TEST(t_names_and_options), TEST(t_sampling), TEST(t_fedavg_weighted_and_metrics),
          TEST(t_views_unaligned_and_reject), TEST(t_batch_and_threads), TEST(t_deterministic),
          TEST(t_failures_semantics), TEST(t_evaluate), TEST(t_fedprox_config), TEST(t_robust),
          TEST(t_qfedavg), TEST(t_dp_clipping_and_noise), TEST(t_diverged_output),
          TEST(t_state_save_load), TEST(t_streaming_memory))
