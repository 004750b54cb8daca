/* pst_int.h - strategies internals shared by the strategies sources (not public). */
#ifndef PETAL_STRATEGIES_INT_H
#define PETAL_STRATEGIES_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pst.h"

typedef enum pst_kind {
    PST_K_FEDAVG = 0,
    PST_K_FEDAVGM,
    PST_K_FEDADAGRAD,
    PST_K_FEDADAM,
    PST_K_FEDYOGI,
    PST_K_FEDPROX,
    PST_K_FEDMEDIAN,
    PST_K_FEDTRIMMEDAVG,
    PST_K_KRUM,
    PST_K_MULTIKRUM,
    PST_K_BULYAN,
    PST_K_QFEDAVG,
    PST_K_FAULTTOLERANT,
    PST_K__COUNT
} pst_kind;

/* Weighted running average of numeric metrics, keyed by name: at most
 * max_metric_keys distinct keys per round (O(1) per key: idx maps a key to
 * its entry), values under further keys are counted in `dropped`. */
typedef struct pst_metric_acc {
    pt_config idx; /* key -> entry index (sint64); idx.e[j].key is entry j's key */
    size_t n, cap;
    struct pst_metric_ent {
        double wsum, w, sum; /* sum n_k*v_k, sum n_k, plain sum of v_k */
        int64_t cnt;
    } *e;
    size_t dropped;
} pst_metric_acc;

struct pst_strategy {
    pst_kind kind;
    int dp; /* wrapped in DifferentialPrivacyServerSideFixedClipping */
    char name[96];
    pst_options o; /* effective options */
    int threads;
    int server_opt; /* FedAvgM: momentum != 0 or lr != 1 */

    /* model layout */
    int have_layout;
    size_t nt;       /* tensors */
    int *ndim;       /* nt */
    int64_t *shape;  /* nt * PT_MAX_DIMS */
    size_t *numel;   /* nt */
    size_t *off;     /* nt + 1 flat offsets */
    size_t total;

    /* open fit round */
    int open;
    int round;
    const pt_params *global;
    int results, failures, rejected;
    double wsum;     /* sum of fold weights of x (n_k, or 1 for QFedAvg) */
    double gcoef;    /* coefficient of the global to add (DP clipping) */
    double sqsum;    /* QFedAvg: sum_k ||w - w_k||^2 (after clipping) */
    int have_loss;
    double central_loss;
    double *acc;     /* total doubles (streaming strategies, PST_ACC_DOUBLE) */
    float *accf;     /* total floats (streaming strategies, PST_ACC_FLOAT_DELTA) */
    uint32_t *acc48; /* PST_ACC_DOUBLE48: total uint32 (high bits), then total uint16 */
    int acc_fresh;   /* accumulator not written yet this round (first fold sets it) */
    pst_metric_acc fit_metrics;

    /* kept updates (median, trimmed mean, Krum, Bulyan) */
    float **kept;      /* kept[i]: total floats */
    int64_t *kept_n;   /* num_examples */
    size_t nkept, capkept;
    size_t nalloc;     /* kept buffers allocated (reused across rounds) */
    float *res;        /* total floats scratch for kept strategies */

    /* server optimizer state (float32 like Flower's ndarrays) */
    float *mom; /* FedAvgM momentum vector */
    float *m;   /* FedOpt first moment */
    float *v;   /* FedOpt second moment */
    int last_round;
    int mom_valid;   /* FedAvgM momentum vector set */
    uint64_t rng[4]; /* DP noise */

    /* evaluate round */
    int eopen, eround, eresults, efailures, erejected;
    double eloss, en;
    pst_metric_acc eval_metrics;
};

/* ---- options.c ---- */
int pst__parse_name(const char *name, int *kind, int *dp, char *err);
int pst__resolve_options(pst_kind k, int dp, pst_options *e, char *err);
int pst__describe(const pst_strategy *s, char *buf, size_t len);
const char *pst__kind_name(pst_kind k);

/* ---- fold.c ---- */

/* Streaming fold of k updates into acc over the layout of s (fresh: acc
 * holds garbage and is written as if it were zero - the round's first fold):
 * acc[j] += w[i] * x_i[j] for every update i (PST_ACC_DOUBLE: acc is
 * double*; PST_ACC_FLOAT_DELTA: acc is float* and gets w[i] * (x_i[j] -
 * global[j]) with s->global). Every update is first checked whole: one with
 * a non-finite value anywhere gets bad[i] = 1 and is not folded at all (acc
 * is bit for bit what it would be without it). *folded = the number folded;
 * when it is 0, acc was not touched (a fresh round stays fresh). src[i][t]
 * is tensor t's data of update i. Uses up to s->threads threads. Returns
 * PT_OK or PT_ERR_NOMEM (nothing folded). */
int pst__fold(const pst_strategy *s, void *acc, int fresh, size_t k,
              const unsigned char *const *const *src, const double *w, int *bad,
              size_t *folded);

/* Sum of squared differences sum_j (x[j] - g[j])^2 in double over all
 * tensors; *finite = 0 if any x is non-finite. */
double pst__sqdist_global(const pst_strategy *s, const unsigned char *const *src,
                          const pt_params *g, int *finite);

/* Copy an update into a flat float buffer; returns 0 if any value is non-finite. */
int pst__copy_flat(const pst_strategy *s, float *dst, const unsigned char *const *src);

/* ---- robust.c ---- */
int pst__median(pst_strategy *s, float *out, char *err);
int pst__trimmed_mean(pst_strategy *s, float *out, char *err);
int pst__krum(pst_strategy *s, float *out, char *err); /* Krum and MultiKrum */
int pst__bulyan(pst_strategy *s, float *out, char *err);

/* ---- rng (strategy.c) ---- */
void pst__rng_seed(uint64_t st[4], uint64_t seed);
uint64_t pst__rng_next(uint64_t st[4]);
double pst__rng_normal(uint64_t st[4]);

#endif /* PETAL_STRATEGIES_INT_H */
