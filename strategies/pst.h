/*
 * pst.h - Petal strategies: Flower's aggregation strategies in C (prefix pst_).
 *
 * Implements Flower 1.6's server-side strategies with Flower's names, options,
 * defaults and formulas (see each strategy below), working on pt_params (a
 * model's float32 tensors) and pt_config (Flower's map<string, Scalar>) from
 * core/petal.h. No wire knowledge and no nn dependency: the server round loop
 * (core/) drives a strategy through this sequence each round r = 1, 2, ...:
 *
 *   pst_num_fit_clients(s, available, &k, &min)      how many to sample
 *   pst_sample(&rng, available, k, idx)              which ones (seeded)
 *   pst_configure_fit(s, r, &cfg, err)               add strategy keys to the
 *                                                    FitIns config the server built
 *   pst_fit_begin(s, r, &global, err)
 *   for each FitRes as it arrives:
 *       pst_fit_add(s, &update, num_examples, &metrics, err)   (or pst_fit_failure(s))
 *   [QFedAvg only: pst_set_central_loss(s, L) with L = centralised loss of `global`]
 *   pst_fit_end(s, &global, &updated, &fit_metrics, err)      global updated in place
 *   ... centralised evaluation of the new global (server side) ...
 *   pst_num_evaluate_clients(s, available, &k, &min)  k == 0: skip federated eval
 *   pst_evaluate_begin(s, r)
 *   for each EvaluateRes: pst_evaluate_add(s, loss, n, &metrics, err) / pst_evaluate_failure(s)
 *   pst_evaluate_end(s, &loss, &has_loss, &eval_metrics, err)
 *
 * Streaming: FedAvg, FedAvgM, FedAdagrad, FedAdam, FedYogi, FedProx, QFedAvg,
 * FaultTolerantFedAvg and the DP wrapper around any of them fold each update
 * into a running sum as it arrives (memory: 6 bytes per model float with the
 * default double48 accumulator, 4 with float-delta, 8 with double, plus the
 * optimizer state, independent of the number of clients; see pst_accumulator). FedMedian,
 * FedTrimmedAvg, Krum/MultiKrum and Bulyan need every update at once: they keep
 * a float32 copy of each accepted update until pst_fit_end (memory: 4 bytes per
 * model float per client). pst_keeps_updates() tells which.
 *
 * Thread-safety: one strategy object must not be used from two threads at
 * once; distinct objects are independent. The fold may use up to
 * pst_options.threads worker threads internally (joined before return).
 *
 * Error convention: functions return PT_OK (0) or a negative pt_err code and,
 * when `err` is non-NULL, fill it (PT_ERRLEN bytes) with a readable reason.
 */
#ifndef PETAL_STRATEGIES_H
#define PETAL_STRATEGIES_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pst_strategy pst_strategy;

/* ---- options ----------------------------------------------------------- */

/* Marker for "not set: use the default" in double options (test with isnan). */
#define PST_UNSET NAN
/* Marker for "not set: use the default" in integer options. */
#define PST_UNSET_INT (-1)

/* Which default set fills the options left unset.
 *
 * PST_DEFAULTS_FLOWER: exactly Flower 1.6's constructor defaults.
 * PST_DEFAULTS_PETAL (the default): Flower's, except for the adaptive server
 *   optimizers, whose Flower defaults diverged on Petal's presets in the
 *   original system (losses reaching 1e9). Petal's set:
 *
 *     strategy     option   Flower   Petal
 *     FedAdagrad   eta      0.1      0.01
 *                  tau      1e-9     1e-3
 *     FedAdam      eta      0.1      0.01
 *                  tau      1e-9     1e-3
 *     FedYogi      eta      0.01     0.01   (unchanged)
 *                  tau      1e-3     1e-3   (unchanged)
 *
 *   Rationale: the FedOpt step is eta*m/(sqrt(v)+tau). With tau=1e-9 the
 *   first steps are ~eta per coordinate regardless of the update's size
 *   (m/sqrt(v) = Delta/|Delta| for Adagrad, ~1 for Adam), i.e. every weight
 *   moves by 0.1 in round 1: an order of magnitude more than a round of SGD
 *   moves the weights of Petal's CNN presets (|Delta| ~1e-3..1e-2), which
 *   blows up the conv kernels. tau = 1e-3 (Yogi's default and the value
 *   Reddi et al., "Adaptive Federated Optimization", found best across tasks)
 *   makes coordinates with |Delta| << tau move by ~eta*|Delta|/tau and
 *   eta = 0.01 bounds the per-round move of the others to 0.01.
 *   Measured (petal run, fmnist-cnn, Fashion-MNIST, 2 iid clients x 4000
 *   examples, 1 epoch, lr 0.002, 5 rounds; centralised loss after rounds
 *   1..5):
 *     FedAdam    Flower: 9.76 4.89 0.78 1.92 0.78   Petal: 1.86 1.04 0.75 0.80 0.80
 *     FedAdagrad Flower: 9.76 2.55 2.12  ..  0.92   Petal: 1.64 1.07 0.83 0.75 0.65
 *     FedAvg 0.80 0.57 0.51 0.50 0.49; FedYogi (one set) 1.86 1.04 0.76 0.83 0.82
 *   Flower's set jumps to loss ~10 in round 1 and oscillates (accuracy
 *   62 -> 56 -> 80% for FedAdam); Petal's descends steadily. eta = 0.003
 *   was slower (FedAdam 1.36 after 5 rounds), tau = 1e-2 smoother but with
 *   a higher loss (0.95).
 */
typedef enum pst_defaults {
    PST_DEFAULTS_PETAL = 0,
    PST_DEFAULTS_FLOWER = 1
} pst_defaults;

/* How numeric client metrics are aggregated (fit and evaluate).
 * PST_METRICS_WEIGHTED (default): every numeric metric key (double, sint64,
 *   uint64, bool) is averaged weighted by num_examples over the clients that
 *   reported it; the result is a double. Non-numeric values are ignored.
 * PST_METRICS_NONE: Flower without *_metrics_aggregation_fn: metrics are {}. */
typedef enum pst_metrics_mode {
    PST_METRICS_WEIGHTED = 0,
    PST_METRICS_NONE = 1
} pst_metrics_mode;

/* The FedAvg family's running sum (streaming strategies). Server memory
 * while streaming 100 seed-cnn updates (`make bench-agg`: global + one
 * incoming update + the strategy), target under 4x the model:
 *   double48 3.58x, float-delta 3.07x, double 4.08x. Fold throughput
 *   (same bench, 10 updates, GB/s of update bytes as % of a same-run STREAM
 *   triad; load average ~4 on 2 CPUs), before every update was checked
 *   whole ahead of the fold: single pst_fit_add double48 26%, float-delta
 *   36%, double 27%; pst_fit_add_many(10) double48 43%, float-delta 60%,
 *   double 53%. The check pass (a rejected update must leave no trace)
 *   reads each update once more: old/new binaries alternated in one run
 *   gave 0.85-0.87x the GB/s with double48, 0.80x double, 0.70-0.74x
 *   float-delta. Flower's numpy aggregate() 1.1-2.3 GB/s, 8-16%: the
 *   default batched fold stays 2.3-5x that.
 *
 * PST_ACC_DOUBLE48 (the default): A = sum_k n_k*w_k like double, but each
 *   element is a double with its low 16 mantissa bits dropped (37
 *   significant bits), kept as a 32-bit and a 16-bit plane: 6 bytes per
 *   model float. Each add is done in double (n_k*w_k is exact) and rounded
 *   to 48 bits (to nearest, ties away from zero). The error of the average
 *   is <= ~k*2^-37 relative (k*2^-13 of a float32 ulp): the result is the
 *   correctly rounded float32 average except in the rare floats whose exact
 *   average lies that close to a rounding boundary (0.006% with 10 clients,
 *   0.03% with 100; then one float32 step off); when every client returns
 *   the same weights the result is exactly those weights.
 * PST_ACC_FLOAT_DELTA (`accumulator=float-delta`): A = sum_k n_k*(w_k -
 *   w_global) in float32, 4 bytes per model float: the least memory, reads
 *   the global too. Each step is A = fmaf(n_k, w_k - w_global, A): the
 *   difference in float32 (exact whenever w_k and w_global are within a
 *   factor 2, i.e. the delta is small next to the weight), the product and
 *   sum with a single rounding (hardware FMA where the CPU has it, else
 *   libm's exact fmaf: the same bits everywhere); n_k (and DP's clipped
 *   weights) as float32. The result is w_global + A/sum n_k, in double,
 *   rounded to float32. Each rounding is <= 2^-24 |A| and |A|/sum n_k is the
 *   size of a client delta, so the error is <= ~k*2^-24*|delta|: small next
 *   to Flower's own float32 arithmetic (numpy: layer*n, reduce(np.add),
 *   / total, all float32), whose error is ~k*2^-24*|w| since it sums the
 *   weights themselves; but identical client weights do not always come
 *   back bit-exact.
 * PST_ACC_DOUBLE (`accumulator=double`): A = sum_k n_k*w_k in double, 8
 *   bytes per model float; exact up to the final float32 rounding.
 *
 * Measured by `make check-agg-precision`: FedAvg of seed-cnn-sized updates
 * (7,397,802 floats), weights ~U(-0.1,0.1), deltas ~U(-2e-3,2e-3),
 * num_examples 50..5000, vs a float64 reference. Max abs error in ulp(0.05)
 * = 2^-28 (correct rounding alone gives 1.00, since weights reach 0.1) /
 * share of floats not correctly rounded / max rel error where |w| >= 0.01:
 *   clients  double48           float-delta        double         Flower float32
 *   2        1.00  0%     6e-8  1.03  2.1%  6.6e-8  1.00  0%  6e-8  3.45  34%  1.5e-7
 *   10       1.00  0.006% 6e-8  1.05  1.5%  6.8e-8  1.00  0%  6e-8  6.60  47%  2.6e-7
 *   100      1.00  0.033% 6e-8  1.04  1.4%  6.4e-8  1.00  0%  6e-8  19.5  78%  8.1e-7
 * All three are far closer to the exact average than Flower's float32 sums.
 *
 * Determinism (all kinds): each accumulator element gets the same sequence
 * of IEEE operations whatever the thread count and however updates are
 * batched (pst_fit_add one by one == pst_fit_add_many, bit for bit). The
 * last bits depend on the ARRIVAL ORDER of the updates, since every add is
 * rounded: with float-delta, reversing the order of 2, 10 or 100 clients in
 * the check above changes 1.3-1.8% of the floats, by one float32 step;
 * with double48 at the 2^-37 level and double at 2^-53, which the final
 * float32 rounding almost always hides. Flower's own result depends on the
 * order of its results list the same way; the server's ordered aggregation
 * (a canonical fold order) makes any of them bit-reproducible. */
typedef enum pst_accumulator {
    PST_ACC_DOUBLE48 = 0,
    PST_ACC_FLOAT_DELTA = 1,
    PST_ACC_DOUBLE = 2
} pst_accumulator;

/* Every field starts "unset" (pst_options_init); the strategy fills unset
 * fields from the chosen default set. Options that do not apply to the
 * chosen strategy are ignored (logged at DEBUG), so one option set can serve
 * a list of strategies run in turn. Set values are range-checked by
 * pst_create. Flower's defaults are given per field; "req" means required. */
typedef struct pst_options {
    pst_defaults defaults;        /* PST_DEFAULTS_PETAL unless set */
    pst_metrics_mode metrics;     /* PST_METRICS_WEIGHTED unless set */

    /* common (all strategies) */
    double fraction_fit;          /* 1.0 */
    double fraction_evaluate;     /* 1.0 */
    int min_fit_clients;          /* 2 (QFedAvg, FaultTolerantFedAvg: 1) */
    int min_evaluate_clients;     /* 2 (QFedAvg, FaultTolerantFedAvg: 1) */
    int min_available_clients;    /* 2 (QFedAvg, FaultTolerantFedAvg: 1) */
    int accept_failures;          /* 1 (0/1); FaultTolerantFedAvg: always 1 */

    /* FedAvgM */
    double server_learning_rate;  /* 1.0 */
    double server_momentum;       /* 0.0 */
    /* FedAdagrad, FedAdam, FedYogi (FedOpt) */
    double eta;                   /* Adagrad 0.1, Adam 0.1, Yogi 0.01 (Petal: see above) */
    double eta_l;                 /* 0.1, 0.1, 0.0316 (stored, unused, as in Flower) */
    double beta_1;                /* Adam/Yogi 0.9 (Adagrad: forced 0, may not be set) */
    double beta_2;                /* Adam/Yogi 0.99 (Adagrad: unused, may not be set) */
    double tau;                   /* Adagrad 1e-9, Adam 1e-9, Yogi 1e-3 (Petal: see above) */
    /* FedProx */
    double proximal_mu;           /* req, >= 0 */
    /* FedTrimmedAvg */
    double trim_beta;             /* 0.2, in [0, 0.5) */
    /* Krum, MultiKrum, Bulyan */
    int num_malicious_clients;    /* 0 */
    int num_clients_to_keep;      /* Krum 0; MultiKrum: req, > 0 */
    /* QFedAvg */
    double q_param;               /* 0.2 */
    double qffl_learning_rate;    /* 0.1 */
    /* FaultTolerantFedAvg */
    double min_completion_rate_fit;      /* 0.5 */
    double min_completion_rate_evaluate; /* 0.5 */
    /* DifferentialPrivacyServerSideFixedClipping wrapper */
    double noise_multiplier;      /* req, >= 0 */
    double clipping_norm;         /* req, > 0 */
    int num_sampled_clients;      /* req, > 0 */
    int64_t seed;                 /* noise RNG seed; unset (-1): 0 */

    /* Petal: worker threads for the streaming fold (0 or unset = auto: 2 on
     * machines with >= 2 CPUs for models of >= 1M floats, else 1). */
    int threads;
    /* Petal: accumulator of the streaming strategies (PST_ACC_DOUBLE48
     * unless set; text option "accumulator" = "double48" | "float-delta" |
     * "double"). */
    pst_accumulator accumulator;
    /* Petal: distinct metric keys aggregated per round (fit and evaluate
     * each, over all clients); values under further keys are not aggregated
     * and are counted in a warning at the round's end. Unset: 1024. */
    int max_metric_keys;
} pst_options;

/* Set every field to "unset" (defaults PETAL, metrics WEIGHTED, accumulator DOUBLE48). */
void pst_options_init(pst_options *o);

/* Set one option from text, for command lines and config files. `key` is the
 * field name with '_' or '-' (e.g. "server-momentum", "proximal_mu",
 * "accept-failures", "defaults" = "petal"|"flower", "metrics" =
 * "weighted"|"none", "accumulator" = "double"|"float-delta"); a leading
 * "--" is skipped. Booleans accept
 * 1/0/true/false/yes/no. Returns PT_OK, PT_ERR_NOTFOUND (unknown key) or
 * PT_ERR_INVAL (value not a number / out of range), with err naming both. */
int pst_option_set(pst_options *o, const char *key, const char *value, char *err);

/* Static help text listing strategy names and options with their defaults
 * (for `petal ... --help`). Never NULL. */
const char *pst_help(void);

/* Canonical strategy names, NULL-terminated static array:
 * FedAvg FedAvgM FedAdagrad FedAdam FedYogi FedProx FedMedian FedTrimmedAvg
 * Krum MultiKrum Bulyan QFedAvg FaultTolerantFedAvg
 * DifferentialPrivacyServerSideFixedClipping. */
const char *const *pst_list_names(void);

/* ---- lifecycle ----------------------------------------------------------- */

/* Create a strategy by name (case-insensitive; Flower's spellings plus the
 * original's "FedAdaGrad", and "QFFedAvg"/"QffedAvg" for QFedAvg).
 *
 * Differential privacy wraps another strategy:
 *   "DifferentialPrivacyServerSideFixedClipping(<inner>)" or the short
 *   "DPFixedClipping(<inner>)", e.g. "DPFixedClipping(FedAvg)"; a bare
 *   "DPFixedClipping" wraps FedAvg. <inner> is any non-DP strategy; the inner
 *   strategy's options come from the same `o`. Semantics of Flower >= 1.8's
 *   server-side fixed clipping: each update u_k = w_k - w_global is scaled by
 *   min(1, C/||u_k||) (L2 over all tensors), w_k := w_global + u_k is handed
 *   to the inner strategy, and N(0, sigma^2), sigma = z*C/m (z =
 *   noise_multiplier, C = clipping_norm, m = num_sampled_clients), is added
 *   to every coordinate of the aggregate. Any failure in the round makes the
 *   round produce no update (as Flower). Nothing is added to the fit config
 *   (client-side clipping is not implemented).
 *
 * `o` may be NULL (all defaults). On success *out owns a new strategy (free
 * with pst_free). Returns PT_OK, PT_ERR_NOTFOUND (unknown name: err lists the
 * known ones), PT_ERR_INVAL (bad or inapplicable option: err names it; also
 * Flower's ValueErrors, e.g. FedProx without proximal_mu) or PT_ERR_NOMEM. */
int pst_create(pst_strategy **out, const char *name, const pst_options *o, char *err);

/* Free a strategy and everything it holds. NULL-safe. */
void pst_free(pst_strategy *s);

/* Canonical name ("FedAdagrad", "DifferentialPrivacyServerSideFixedClipping(FedAvg)").
 * Borrowed, valid for the strategy's lifetime. */
const char *pst_name(const pst_strategy *s);

/* Flower-like one-line description with the effective options, e.g.
 * "FedAvgM(server_learning_rate=1, server_momentum=0.9, accept_failures=True)".
 * Truncates to len; returns the untruncated length (snprintf-like). */
int pst_describe(const pst_strategy *s, char *buf, size_t len);

/* Effective options (after defaults). Borrowed, valid for the lifetime. */
const pst_options *pst_effective_options(const pst_strategy *s);

/* Properties for the server loop. */
int pst_keeps_updates(const pst_strategy *s);          /* 1: O(clients x model) memory */
int pst_needs_central_loss(const pst_strategy *s);     /* 1: QFedAvg */
int pst_needs_initial_parameters(const pst_strategy *s); /* 1: FedAvgM w/ server opt, FedOpt */

/* Hand the initial global parameters to the strategy (Flower's
 * initial_parameters). Records the model layout; every later global and
 * update must have the same tensor count and shapes. Optional: if it is not
 * called, the first pst_fit_begin's global is used. Does not keep a copy
 * (the server's global, passed to pst_fit_begin/pst_fit_end, is the
 * strategy's x / w_prev: Flower's FedOpt/FedAvgM state always equals the
 * server's global). Returns PT_OK, PT_ERR_MISMATCH (layout differs from one
 * seen before), PT_ERR_DIVERGED (non-finite values) or PT_ERR_NOMEM. */
int pst_initialize(pst_strategy *s, const pt_params *init, char *err);

/* ---- client sampling ------------------------------------------------------ */

/* Flower's num_fit_clients: *sample_size = max(int(available * fraction_fit),
 * min_fit_clients), *min_num = min_available_clients. The server waits for
 * *min_num registered clients, and cancels the round ("Sampling failed")
 * when *sample_size > available. Returns PT_OK or PT_ERR_INVAL (available < 0). */
int pst_num_fit_clients(const pst_strategy *s, int available, int *sample_size, int *min_num);

/* Same for evaluation with fraction_evaluate / min_evaluate_clients; sets
 * *sample_size = 0 when fraction_evaluate == 0 (Flower: no federated
 * evaluation, "evaluate_round r: no clients selected, cancel"). */
int pst_num_evaluate_clients(const pst_strategy *s, int available, int *sample_size,
                             int *min_num);

/* Seeded sampler: write k distinct indices of 0..n-1 to out (uniformly random
 * k-subset, in random order; partial Fisher-Yates on a splitmix64/xoshiro
 * stream kept in *rng, which the caller seeds once with any value and keeps
 * between calls). Returns PT_OK or PT_ERR_INVAL (k > n, k < 0, NULL out) or
 * PT_ERR_NOMEM. */
int pst_sample(uint64_t *rng, int n, int k, int *out);

/* ---- configuration ------------------------------------------------------ */

/* Add the strategy's keys to the fit config the server built for round
 * `round` (the server sets epochs, batch_size, lr, ...). FedProx sets
 * "proximal_mu" (double). Others add nothing. Returns PT_OK or PT_ERR_NOMEM. */
int pst_configure_fit(pst_strategy *s, int round, pt_config *cfg, char *err);

/* Same for the evaluate config (no strategy adds keys today). */
int pst_configure_evaluate(pst_strategy *s, int round, pt_config *cfg, char *err);

/* ---- fit aggregation ------------------------------------------------------ */

/* Start aggregating round `round` (>= 1) whose clients were sent `global`.
 * Borrowed: `global` must stay valid and unchanged until pst_fit_end, which
 * is called with the same object. Resets the round's accumulators (allocated
 * once, reused across rounds). Returns PT_OK, PT_ERR_STATE (a round is
 * already open), PT_ERR_MISMATCH (layout differs from pst_initialize's),
 * PT_ERR_INVAL or PT_ERR_NOMEM. */
int pst_fit_begin(pst_strategy *s, int round, const pt_params *global, char *err);

/* Fold one client's FitRes into the round.
 * `update`: the client's returned weights. Only update->n and each
 * t[i].ndim/shape/numel/data are read (buf/total are ignored), so the
 * tensors may be views into someone else's memory (e.g. the NPY payloads of
 * a received message); data need NOT be 4-byte aligned. Not retained after
 * the call returns (strategies that keep updates copy them).
 * `num_examples` must be >= 0. `metrics` (may be NULL) are the FitRes
 * metrics, folded into the weighted metric averages.
 * Validation: a tensor count / shape mismatch with the global
 * (PT_ERR_MISMATCH) or any non-finite value (PT_ERR_DIVERGED) or a negative
 * num_examples (PT_ERR_INVAL) rejects the update: it is never aggregated
 * and is counted as a failure of this round (so accept_failures=False then
 * voids the round). Every update is checked whole before any of it is
 * aggregated: a rejected update leaves no trace (the round's result is bit
 * for bit that of the round without it, whatever its other values, e.g.
 * 3e38 everywhere but one NaN, and whatever its num_examples).
 * Returns PT_OK, those codes, PT_ERR_STATE (no open round) or PT_ERR_NOMEM. */
int pst_fit_add(pst_strategy *s, const pt_params *update, int64_t num_examples,
                const pt_config *metrics, char *err);

/* Fold k updates at once (same contract as k pst_fit_add calls, in order):
 * one pass over the accumulator (and global) for all k, so the memory
 * traffic per update float drops from 20 bytes (single add with double48 or
 * float-delta, the check pass included; double: 24) to 8 + 12/k (double:
 * 8 + 16/k): `make bench-agg` measures 1.5-2.2x the GB/s of single adds for
 * k = 10. Bit-identical to
 * the k single adds in the same order. Use it when several FitRes are
 * already in memory. metrics may be NULL or hold NULL entries.
 * status[i] (may be NULL) receives each update's result code. Returns PT_OK
 * when all were accepted, else the first failing update's code (err
 * describes it); accepted ones are aggregated either way. */
int pst_fit_add_many(pst_strategy *s, size_t k, const pt_params *const *updates,
                     const int64_t *num_examples, const pt_config *const *metrics,
                     int *status, char *err);

/* Record a failed fit (exception, timeout, disconnect) for this round. */
void pst_fit_failure(pst_strategy *s);

/* QFedAvg: the centralised loss L of the weights sent this round (the global
 * given to pst_fit_begin), as Flower's evaluate_fn computes it. Must be set
 * (once per round, any time between pst_fit_begin and pst_fit_end) for
 * QFedAvg; ignored by other strategies. Returns PT_OK or PT_ERR_INVAL
 * (non-finite or negative). */
int pst_set_central_loss(pst_strategy *s, double loss);

/* Finish the round. When the round produces new parameters, writes them into
 * *global (the same object given to pst_fit_begin; only its data changes)
 * and sets *updated = 1; otherwise leaves *global untouched and sets
 * *updated = 0 (no results; accept_failures=False with failures;
 * FaultTolerantFedAvg below its completion rate; DP with failures) - Flower's
 * `(None, {})`. metrics_out (may be NULL; must be an initialised map, entries
 * are added) receives the weighted fit metrics (empty when not updated).
 * Server optimizer state (momentum, m, v) advances only when updated.
 * Returns PT_OK (also when not updated), PT_ERR_STATE (no open round; QFedAvg
 * without central loss), PT_ERR_INVAL (Flower's ValueErrors: Bulyan with
 * n < 4f+3; total num_examples 0 for the weighted strategies, where Flower
 * would divide by zero) - the global is then unchanged - or PT_ERR_DIVERGED
 * (the new parameters are non-finite: global unchanged, state not advanced).
 * The round is closed in every case. MultiKrum with fewer results than
 * num_clients_to_keep averages all of them (logged; Flower's slice would
 * silently keep 2n - keep of them). */
int pst_fit_end(pst_strategy *s, pt_params *global, int *updated, pt_config *metrics_out,
                char *err);

/* Counts of the open or last round: accepted results, failures (including
 * rejected updates) and rejected updates alone. Any pointer may be NULL. */
void pst_fit_counts(const pst_strategy *s, int *results, int *failures, int *rejected);

/* ---- evaluate aggregation -------------------------------------------------- */

/* Start aggregating the evaluate results of round `round`. */
int pst_evaluate_begin(pst_strategy *s, int round);

/* Fold one EvaluateRes: Flower's weighted_loss_avg (sum n_k*loss_k / sum n_k)
 * and the weighted metric averages. Rejects (PT_ERR_DIVERGED, counted as a
 * failure) a non-finite loss, (PT_ERR_INVAL) num_examples < 0. */
int pst_evaluate_add(pst_strategy *s, double loss, int64_t num_examples,
                     const pt_config *metrics, char *err);

/* Record a failed evaluate for this round. */
void pst_evaluate_failure(pst_strategy *s);

/* Finish: *has_loss = 1 and *loss set when Flower would return a loss (some
 * results; no failure with accept_failures=False; completion rate met for
 * FaultTolerantFedAvg; total examples > 0), else *has_loss = 0 (the round's
 * distributed loss is not recorded). metrics_out (may be NULL) gets the
 * weighted metrics. Returns PT_OK or PT_ERR_STATE / PT_ERR_NOMEM. */
int pst_evaluate_end(pst_strategy *s, double *loss, int *has_loss, pt_config *metrics_out,
                     char *err);

/* ---- checkpoints ------------------------------------------------------------ */

/* Write the strategy's state (name, last completed round, server optimizer
 * state: FedAvgM momentum, FedOpt m and v, DP noise RNG) to f in a small
 * binary format ("PSTS" magic, version, little-endian). Does not close f.
 * Not allowed while a round is open (PT_ERR_STATE). Returns PT_OK or PT_ERR_IO. */
int pst_state_save(const pst_strategy *s, FILE *f, char *err);

/* Restore state written by pst_state_save into a strategy created with the
 * same name and options (and model layout, if already known). The state is
 * validated as input from outside: the arrays present must be those this
 * strategy keeps (moments for FedOpt, momentum for FedAvgM with momentum),
 * momentum and moments finite, second moments >= 0, the noise RNG state not
 * all zero. Returns PT_OK, PT_ERR_FORMAT (bad magic/version/truncated/any of
 * those checks: err names the value), PT_ERR_MISMATCH (other strategy or
 * layout), PT_ERR_IO or PT_ERR_NOMEM. On error the strategy is unchanged. */
int pst_state_load(pst_strategy *s, FILE *f, char *err);

/* Last round completed by pst_fit_end with an update (0 if none). */
int pst_last_round(const pst_strategy *s);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_STRATEGIES_H */
