/*
 * options.c - strategy names, options (text setter, defaults, validation),
 * help text and descriptions.
 */
#include "pst_int.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ---------------------------------------------------------------- */

static const char *const canon[PST_K__COUNT] = {
    "FedAvg",    "FedAvgM",   "FedAdagrad", "FedAdam",      "FedYogi",
    "FedProx",   "FedMedian", "FedTrimmedAvg", "Krum",      "MultiKrum",
    "Bulyan",    "QFedAvg",   "FaultTolerantFedAvg",
};

static const char *const names_list[] = {
    "FedAvg",    "FedAvgM", "FedAdagrad", "FedAdam", "FedYogi",
    "FedProx",   "FedMedian", "FedTrimmedAvg", "Krum", "MultiKrum",
    "Bulyan",    "QFedAvg", "FaultTolerantFedAvg", "DifferentialPrivacyServerSideFixedClipping",
    NULL,
};

const char *const *pst_list_names(void) { return names_list; }

const char *pst__kind_name(pst_kind k) { return canon[k]; }

/* Case-insensitive lookup of a non-DP name (with aliases). */
static int kind_lookup(const char *s, size_t len)
{
    static const struct {
        const char *name;
        pst_kind k;
    } alias[] = {
        {"QFFedAvg", PST_K_QFEDAVG},  /* Flower's class is QFedAvg; repr says QffedAvg */
        {"FedTrimmedMean", PST_K_FEDTRIMMEDAVG},
    };
    for (int k = 0; k < PST_K__COUNT; k++)
        if (strlen(canon[k]) == len && !strncasecmp(canon[k], s, len)) return k;
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strlen(alias[i].name) == len && !strncasecmp(alias[i].name, s, len))
            return (int)alias[i].k;
    return -1;
}

static void trim(const char **s, size_t *len)
{
    while (*len && isspace((unsigned char)**s)) (*s)++, (*len)--;
    while (*len && isspace((unsigned char)(*s)[*len - 1])) (*len)--;
}

int pst__parse_name(const char *name, int *kind, int *dp, char *err)
{
    static const char *const dpn[] = {"DifferentialPrivacyServerSideFixedClipping",
                                      "DPFixedClipping"};
    const char *s = name;
    size_t len;
    int k;
    if (!name) return pt_seterr(err, PT_ERR_INVAL, "strategy name is NULL");
    len = strlen(name);
    trim(&s, &len);
    *dp = 0;
    for (int i = 0; i < 2; i++) {
        size_t pl = strlen(dpn[i]);
        if (len >= pl && !strncasecmp(s, dpn[i], pl)) {
            const char *r = s + pl;
            size_t rl = len - pl;
            trim(&r, &rl);
            if (rl == 0) { /* bare wrapper name: wraps FedAvg */
                *dp = 1;
                *kind = PST_K_FEDAVG;
                return PT_OK;
            }
            if (r[0] == '(' && r[rl - 1] == ')') {
                r++;
                rl -= 2;
                trim(&r, &rl);
                k = kind_lookup(r, rl);
                if (k < 0)
                    return pt_seterr(err, PT_ERR_NOTFOUND,
                                     "unknown inner strategy '%.*s' in '%s' (the DP wrapper "
                                     "takes one of the non-DP strategies; see --help)",
                                     (int)rl, r, name);
                *dp = 1;
                *kind = k;
                return PT_OK;
            }
        }
    }
    k = kind_lookup(s, len);
    if (k < 0)
        return pt_seterr(err, PT_ERR_NOTFOUND,
                         "unknown strategy '%s'; known: FedAvg, FedAvgM, FedAdagrad, FedAdam, "
                         "FedYogi, FedProx, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan, "
                         "QFedAvg, FaultTolerantFedAvg, DPFixedClipping(<inner>)",
                         name);
    *kind = k;
    return PT_OK;
}

/* ---- option table ------------------------------------------------------------ */

enum { T_DBL, T_INT, T_BOOL, T_I64 };
#define B(k) (1u << (k))
#define ALL 0xffffffffu
#define FEDOPT (B(PST_K_FEDADAGRAD) | B(PST_K_FEDADAM) | B(PST_K_FEDYOGI))
#define KRUMS (B(PST_K_KRUM) | B(PST_K_MULTIKRUM) | B(PST_K_BULYAN))
#define DPBIT (1u << 31) /* applies to the DP wrapper */

typedef struct optdef {
    const char *name;
    int type;
    size_t off;
    uint32_t applies; /* kinds (bits) */
} optdef;

#define OPT(n, t, m) {n, t, offsetof(pst_options, m), m##_APPLIES}
#define fraction_fit_APPLIES ALL
#define fraction_evaluate_APPLIES ALL
#define min_fit_clients_APPLIES ALL
#define min_evaluate_clients_APPLIES ALL
#define min_available_clients_APPLIES ALL
#define accept_failures_APPLIES (ALL & ~B(PST_K_FAULTTOLERANT))
#define server_learning_rate_APPLIES B(PST_K_FEDAVGM)
#define server_momentum_APPLIES B(PST_K_FEDAVGM)
#define eta_APPLIES FEDOPT
#define eta_l_APPLIES FEDOPT
#define beta_1_APPLIES (B(PST_K_FEDADAM) | B(PST_K_FEDYOGI))
#define beta_2_APPLIES (B(PST_K_FEDADAM) | B(PST_K_FEDYOGI))
#define tau_APPLIES FEDOPT
#define proximal_mu_APPLIES B(PST_K_FEDPROX)
#define trim_beta_APPLIES B(PST_K_FEDTRIMMEDAVG)
#define num_malicious_clients_APPLIES KRUMS
#define num_clients_to_keep_APPLIES (B(PST_K_KRUM) | B(PST_K_MULTIKRUM))
#define q_param_APPLIES B(PST_K_QFEDAVG)
#define qffl_learning_rate_APPLIES B(PST_K_QFEDAVG)
#define min_completion_rate_fit_APPLIES B(PST_K_FAULTTOLERANT)
#define min_completion_rate_evaluate_APPLIES B(PST_K_FAULTTOLERANT)
#define noise_multiplier_APPLIES DPBIT
#define clipping_norm_APPLIES DPBIT
#define num_sampled_clients_APPLIES DPBIT
#define seed_APPLIES DPBIT
#define threads_APPLIES ALL
#define max_metric_keys_APPLIES ALL

static const optdef opts[] = {
    OPT("fraction_fit", T_DBL, fraction_fit),
    OPT("fraction_evaluate", T_DBL, fraction_evaluate),
    OPT("min_fit_clients", T_INT, min_fit_clients),
    OPT("min_evaluate_clients", T_INT, min_evaluate_clients),
    OPT("min_available_clients", T_INT, min_available_clients),
    OPT("accept_failures", T_BOOL, accept_failures),
    OPT("server_learning_rate", T_DBL, server_learning_rate),
    OPT("server_momentum", T_DBL, server_momentum),
    OPT("eta", T_DBL, eta),
    OPT("eta_l", T_DBL, eta_l),
    OPT("beta_1", T_DBL, beta_1),
    OPT("beta_2", T_DBL, beta_2),
    OPT("tau", T_DBL, tau),
    OPT("proximal_mu", T_DBL, proximal_mu),
    OPT("trim_beta", T_DBL, trim_beta),
    OPT("num_malicious_clients", T_INT, num_malicious_clients),
    OPT("num_clients_to_keep", T_INT, num_clients_to_keep),
    OPT("q_param", T_DBL, q_param),
    OPT("qffl_learning_rate", T_DBL, qffl_learning_rate),
    OPT("min_completion_rate_fit", T_DBL, min_completion_rate_fit),
    OPT("min_completion_rate_evaluate", T_DBL, min_completion_rate_evaluate),
    OPT("noise_multiplier", T_DBL, noise_multiplier),
    OPT("clipping_norm", T_DBL, clipping_norm),
    OPT("num_sampled_clients", T_INT, num_sampled_clients),
    OPT("seed", T_I64, seed),
    OPT("threads", T_INT, threads),
    OPT("max_metric_keys", T_INT, max_metric_keys),
};
#define NOPTS (sizeof opts / sizeof opts[0])

void pst_options_init(pst_options *o)
{
    memset(o, 0, sizeof *o);
    o->defaults = PST_DEFAULTS_PETAL;
    o->metrics = PST_METRICS_WEIGHTED;
    for (size_t i = 0; i < NOPTS; i++) {
        char *p = (char *)o + opts[i].off;
        switch (opts[i].type) {
        case T_DBL: *(double *)p = PST_UNSET; break;
        case T_I64: *(int64_t *)p = PST_UNSET_INT; break;
        default: *(int *)p = PST_UNSET_INT; break;
        }
    }
}

static int is_set(const pst_options *o, const optdef *d)
{
    const char *p = (const char *)o + d->off;
    switch (d->type) {
    case T_DBL: return !isnan(*(const double *)p);
    case T_I64: return *(const int64_t *)p != PST_UNSET_INT;
    default: return *(const int *)p != PST_UNSET_INT;
    }
}

int pst_option_set(pst_options *o, const char *key, const char *value, char *err)
{
    char k[64];
    size_t n = 0;
    if (!o || !key || !value) return pt_seterr(err, PT_ERR_INVAL, "option key/value is NULL");
    if (!strncmp(key, "--", 2)) key += 2;
    for (; key[n] && n < sizeof k - 1; n++) k[n] = key[n] == '-' ? '_' : (char)tolower(key[n]);
    k[n] = 0;
    if (key[n]) return pt_seterr(err, PT_ERR_NOTFOUND, "unknown strategy option '%s'", key);
    if (!strcmp(k, "defaults")) {
        if (!strcasecmp(value, "petal")) o->defaults = PST_DEFAULTS_PETAL;
        else if (!strcasecmp(value, "flower")) o->defaults = PST_DEFAULTS_FLOWER;
        else return pt_seterr(err, PT_ERR_INVAL, "--defaults: '%s' is not petal or flower", value);
        return PT_OK;
    }
    if (!strcmp(k, "accumulator")) {
        if (!strcasecmp(value, "double")) o->accumulator = PST_ACC_DOUBLE;
        else if (!strcasecmp(value, "double48")) o->accumulator = PST_ACC_DOUBLE48;
        else if (!strcasecmp(value, "float-delta") || !strcasecmp(value, "float_delta"))
            o->accumulator = PST_ACC_FLOAT_DELTA;
        else
            return pt_seterr(err, PT_ERR_INVAL,
                             "--accumulator: '%s' is not double48, float-delta or double",
                             value);
        return PT_OK;
    }
    if (!strcmp(k, "metrics")) {
        if (!strcasecmp(value, "weighted")) o->metrics = PST_METRICS_WEIGHTED;
        else if (!strcasecmp(value, "none")) o->metrics = PST_METRICS_NONE;
        else return pt_seterr(err, PT_ERR_INVAL, "--metrics: '%s' is not weighted or none", value);
        return PT_OK;
    }
    for (size_t i = 0; i < NOPTS; i++) {
        char *p = (char *)o + opts[i].off, *end;
        if (strcmp(opts[i].name, k)) continue;
        errno = 0;
        switch (opts[i].type) {
        case T_DBL: {
            double d = strtod(value, &end);
            if (end == value || *end || errno || !isfinite(d))
                return pt_seterr(err, PT_ERR_INVAL, "--%s: '%s' is not a finite number", key,
                                 value);
            *(double *)p = d;
            return PT_OK;
        }
        case T_BOOL:
            if (!strcasecmp(value, "1") || !strcasecmp(value, "true") ||
                !strcasecmp(value, "yes")) {
                *(int *)p = 1;
                return PT_OK;
            }
            if (!strcasecmp(value, "0") || !strcasecmp(value, "false") ||
                !strcasecmp(value, "no")) {
                *(int *)p = 0;
                return PT_OK;
            }
            return pt_seterr(err, PT_ERR_INVAL, "--%s: '%s' is not a boolean", key, value);
        default: {
            long long v = strtoll(value, &end, 10);
            if (end == value || *end || errno || v < 0 ||
                (opts[i].type == T_INT && v > 1000000000LL))
                return pt_seterr(err, PT_ERR_INVAL, "--%s: '%s' is not a non-negative integer",
                                 key, value);
            if (opts[i].type == T_I64) *(int64_t *)p = v;
            else *(int *)p = (int)v;
            return PT_OK;
        }
        }
    }
    return pt_seterr(err, PT_ERR_NOTFOUND, "unknown strategy option '%s'", key);
}

const char *pst_help(void)
{
    return "Strategies (Flower 1.6 names, case-insensitive):\n"
           "  FedAvg FedAvgM FedAdagrad (also FedAdaGrad) FedAdam FedYogi FedProx FedMedian\n"
           "  FedTrimmedAvg Krum MultiKrum Bulyan QFedAvg FaultTolerantFedAvg\n"
           "  DPFixedClipping(<inner>) = DifferentialPrivacyServerSideFixedClipping(<inner>)\n"
           "Strategy options (default: Flower's, '*' = Petal's tuned default):\n"
           "  --defaults petal|flower       which default set fills unset options (petal)\n"
           "  --metrics weighted|none       weighted average of numeric client metrics\n"
           "  --fraction-fit F (1.0)  --fraction-evaluate F (1.0)\n"
           "  --min-fit-clients N  --min-evaluate-clients N  --min-available-clients N\n"
           "                                (2; QFedAvg, FaultTolerantFedAvg: 1)\n"
           "  --accept-failures BOOL (true)\n"
           "  FedAvgM:    --server-learning-rate (1.0) --server-momentum (0.0)\n"
           "  FedAdagrad: --eta (0.1; *0.01) --eta-l (0.1) --tau (1e-9; *1e-3)\n"
           "  FedAdam:    --eta (0.1; *0.01) --eta-l (0.1) --beta-1 (0.9) --beta-2 (0.99)\n"
           "              --tau (1e-9; *1e-3)\n"
           "  FedYogi:    --eta (0.01) --eta-l (0.0316) --beta-1 (0.9) --beta-2 (0.99)\n"
           "              --tau (1e-3)\n"
           "  FedProx:    --proximal-mu MU (required)\n"
           "  FedTrimmedAvg: --trim-beta (0.2)\n"
           "  Krum/MultiKrum/Bulyan: --num-malicious-clients (0)\n"
           "              --num-clients-to-keep (Krum 0; MultiKrum required)\n"
           "  QFedAvg:    --q-param (0.2) --qffl-learning-rate (0.1)\n"
           "  FaultTolerantFedAvg: --min-completion-rate-fit (0.5)\n"
           "              --min-completion-rate-evaluate (0.5)\n"
           "  DP wrapper: --noise-multiplier Z --clipping-norm C --num-sampled-clients M\n"
           "              (all required) --seed S (noise RNG, 0)\n"
           "  --threads N (0 = auto)        threads for the streaming fold\n"
           "  --max-metric-keys N (1024)    distinct client metric keys aggregated per round\n"
           "  --accumulator double48|float-delta|double  running sum: 6 B/float, a double\n"
           "                                rounded to 37 significant bits (default); 4 B/float\n"
           "                                float32 deltas from the global; 8 B/float double\n";
}

/* ---- defaults and validation ---------------------------------------------------- */

#define SETD(field, v)                                                                  \
    do {                                                                                \
        if (isnan(e->field)) e->field = (v);                                            \
    } while (0)
#define SETI(field, v)                                                                  \
    do {                                                                                \
        if (e->field == PST_UNSET_INT) e->field = (v);                                  \
    } while (0)

/* Fill `e` (a copy of the user's options) with defaults and validate. */
int pst__resolve_options(pst_kind k, int dp, pst_options *e, char *err)
{
    int petal = e->defaults == PST_DEFAULTS_PETAL;
    int one = k == PST_K_QFEDAVG || k == PST_K_FAULTTOLERANT;
    uint32_t mask = B(k) | (dp ? DPBIT : 0);
    if (e->defaults != PST_DEFAULTS_PETAL && e->defaults != PST_DEFAULTS_FLOWER)
        return pt_seterr(err, PT_ERR_INVAL, "defaults: unknown default set %d", (int)e->defaults);
    if (e->accumulator != PST_ACC_DOUBLE && e->accumulator != PST_ACC_FLOAT_DELTA &&
        e->accumulator != PST_ACC_DOUBLE48)
        return pt_seterr(err, PT_ERR_INVAL, "accumulator: unknown kind %d", (int)e->accumulator);
    if (e->metrics != PST_METRICS_WEIGHTED && e->metrics != PST_METRICS_NONE)
        return pt_seterr(err, PT_ERR_INVAL, "metrics: unknown mode %d", (int)e->metrics);
    /* options that do not apply are reset to unset (and logged) */
    for (size_t i = 0; i < NOPTS; i++) {
        if ((opts[i].applies & mask) || !is_set(e, &opts[i])) continue;
        PT_DEBUG("strategy %s: option %s does not apply, ignored", canon[k], opts[i].name);
        char *p = (char *)e + opts[i].off;
        if (opts[i].type == T_DBL) *(double *)p = PST_UNSET;
        else if (opts[i].type == T_I64) *(int64_t *)p = PST_UNSET_INT;
        else *(int *)p = PST_UNSET_INT;
    }
    SETD(fraction_fit, 1.0);
    SETD(fraction_evaluate, 1.0);
    SETI(min_fit_clients, one ? 1 : 2);
    SETI(min_evaluate_clients, one ? 1 : 2);
    SETI(min_available_clients, one ? 1 : 2);
    SETI(accept_failures, 1);
    if (k == PST_K_FAULTTOLERANT) e->accept_failures = 1;
    SETI(threads, 0);
    SETI(max_metric_keys, 1024);
    switch (k) {
    case PST_K_FEDAVGM:
        SETD(server_learning_rate, 1.0);
        SETD(server_momentum, 0.0);
        break;
    case PST_K_FEDADAGRAD:
        SETD(eta, petal ? 0.01 : 0.1);
        SETD(eta_l, 0.1);
        SETD(tau, petal ? 1e-3 : 1e-9);
        e->beta_1 = 0.0; /* Flower's FedAdagrad passes beta_1=0, beta_2=0 */
        e->beta_2 = 0.0;
        break;
    case PST_K_FEDADAM:
        SETD(eta, petal ? 0.01 : 0.1);
        SETD(eta_l, 0.1);
        SETD(beta_1, 0.9);
        SETD(beta_2, 0.99);
        SETD(tau, petal ? 1e-3 : 1e-9);
        break;
    case PST_K_FEDYOGI:
        SETD(eta, 0.01);
        SETD(eta_l, 0.0316);
        SETD(beta_1, 0.9);
        SETD(beta_2, 0.99);
        SETD(tau, 1e-3);
        break;
    case PST_K_FEDTRIMMEDAVG: SETD(trim_beta, 0.2); break;
    case PST_K_KRUM:
    case PST_K_MULTIKRUM:
    case PST_K_BULYAN:
        SETI(num_malicious_clients, 0);
        if (k == PST_K_KRUM) SETI(num_clients_to_keep, 0);
        if (k == PST_K_BULYAN) e->num_clients_to_keep = 0;
        break;
    case PST_K_QFEDAVG:
        SETD(q_param, 0.2);
        SETD(qffl_learning_rate, 0.1);
        break;
    case PST_K_FAULTTOLERANT:
        SETD(min_completion_rate_fit, 0.5);
        SETD(min_completion_rate_evaluate, 0.5);
        break;
    default: break;
    }
    if (dp) SETI(seed, 0);

    /* validation (Flower's ValueErrors plus range sanity) */
#define BAD(...) return pt_seterr(err, PT_ERR_INVAL, __VA_ARGS__)
    if (!(e->fraction_fit >= 0 && e->fraction_fit <= 1))
        BAD("%s: fraction_fit=%g must be in [0, 1]", canon[k], e->fraction_fit);
    if (!(e->fraction_evaluate >= 0 && e->fraction_evaluate <= 1))
        BAD("%s: fraction_evaluate=%g must be in [0, 1]", canon[k], e->fraction_evaluate);
    if (e->min_fit_clients < 0 || e->min_evaluate_clients < 0 || e->min_available_clients < 0)
        BAD("%s: min_*_clients must be >= 0", canon[k]);
    if (e->fraction_fit == 0 && e->min_fit_clients == 0)
        BAD("%s: fraction_fit=0 with min_fit_clients=0 samples no client to train: every round "
            "would do nothing (raise one of them)", canon[k]);
    if (e->accept_failures != 0 && e->accept_failures != 1)
        BAD("%s: accept_failures must be 0 or 1", canon[k]);
    if (e->threads < 0 || e->threads > 64) BAD("threads=%d must be in [0, 64]", e->threads);
    if (e->max_metric_keys < 1) BAD("max_metric_keys=%d must be >= 1", e->max_metric_keys);
    if (e->min_available_clients < e->min_fit_clients ||
        e->min_available_clients < e->min_evaluate_clients)
        PT_WARN("Setting `min_available_clients` lower than `min_fit_clients` or "
                "`min_evaluate_clients` can cause the server to fail when there are too few "
                "clients connected to the server. `min_available_clients` must be set to a "
                "value larger than or equal to the values of `min_fit_clients` and "
                "`min_evaluate_clients`.");
    switch (k) {
    case PST_K_FEDAVGM:
        if (!isfinite(e->server_learning_rate))
            BAD("FedAvgM: server_learning_rate must be finite");
        if (!(e->server_momentum >= 0 && e->server_momentum < 1e6))
            BAD("FedAvgM: server_momentum=%g must be >= 0", e->server_momentum);
        break;
    case PST_K_FEDADAGRAD:
    case PST_K_FEDADAM:
    case PST_K_FEDYOGI:
        if (!(e->eta > 0 && isfinite(e->eta))) BAD("%s: eta=%g must be > 0", canon[k], e->eta);
        if (!isfinite(e->eta_l)) BAD("%s: eta_l must be finite", canon[k]);
        if (!(e->tau >= 0 && isfinite(e->tau))) BAD("%s: tau=%g must be >= 0", canon[k], e->tau);
        if (!(e->beta_1 >= 0 && e->beta_1 < 1))
            BAD("%s: beta_1=%g must be in [0, 1)", canon[k], e->beta_1);
        if (!(e->beta_2 >= 0 && e->beta_2 < 1))
            BAD("%s: beta_2=%g must be in [0, 1)", canon[k], e->beta_2);
        break;
    case PST_K_FEDPROX:
        if (isnan(e->proximal_mu))
            BAD("FedProx: proximal_mu is required (Flower has no default), e.g. "
                "--proximal-mu 0.01");
        if (!(e->proximal_mu >= 0 && isfinite(e->proximal_mu)))
            BAD("FedProx: proximal_mu=%g must be >= 0", e->proximal_mu);
        break;
    case PST_K_FEDTRIMMEDAVG:
        if (!(e->trim_beta >= 0 && e->trim_beta < 0.5))
            BAD("FedTrimmedAvg: trim_beta=%g must be in [0, 0.5)", e->trim_beta);
        break;
    case PST_K_KRUM:
    case PST_K_MULTIKRUM:
    case PST_K_BULYAN:
        if (e->num_malicious_clients < 0) BAD("%s: num_malicious_clients must be >= 0", canon[k]);
        if (k == PST_K_MULTIKRUM && e->num_clients_to_keep <= 0)
            BAD("MultiKrum: num_clients_to_keep must be > 0 (Krum with num_clients_to_keep=0 "
                "selects a single model)");
        break;
    case PST_K_QFEDAVG:
        if (!isfinite(e->q_param) || e->q_param < 0) BAD("QFedAvg: q_param must be >= 0");
        if (!(e->qffl_learning_rate > 0 && isfinite(e->qffl_learning_rate)))
            BAD("QFedAvg: qffl_learning_rate must be > 0");
        break;
    case PST_K_FAULTTOLERANT:
        if (!(e->min_completion_rate_fit >= 0 && e->min_completion_rate_fit <= 1))
            BAD("FaultTolerantFedAvg: min_completion_rate_fit must be in [0, 1]");
        if (!(e->min_completion_rate_evaluate >= 0 && e->min_completion_rate_evaluate <= 1))
            BAD("FaultTolerantFedAvg: min_completion_rate_evaluate must be in [0, 1]");
        break;
    default: break;
    }
    if (dp) {
        if (isnan(e->noise_multiplier) || isnan(e->clipping_norm) ||
            e->num_sampled_clients == PST_UNSET_INT)
            BAD("DifferentialPrivacyServerSideFixedClipping: noise_multiplier, clipping_norm "
                "and num_sampled_clients are required");
        if (!(e->noise_multiplier >= 0 && isfinite(e->noise_multiplier)))
            BAD("The noise multiplier should be a non-negative value.");
        if (!(e->clipping_norm > 0 && isfinite(e->clipping_norm)))
            BAD("The clipping norm should be a positive value.");
        if (e->num_sampled_clients <= 0)
            BAD("The number of sampled clients should be a positive value.");
    }
#undef BAD
    return PT_OK;
}

static int put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(*pos < len ? buf + *pos : NULL, *pos < len ? len - *pos : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *pos += (size_t)n;
    return n;
}

int pst__describe(const pst_strategy *s, char *buf, size_t len)
{
    size_t pos = 0;
    int first = 1;
    uint32_t mask = B(s->kind) | (s->dp ? DPBIT : 0);
    if (len) buf[0] = 0;
    if (s->dp) put(buf, len, &pos, "DifferentialPrivacyServerSideFixedClipping(");
    put(buf, len, &pos, "%s(", canon[s->kind]);
    for (size_t i = 0; i < NOPTS; i++) {
        const char *p = (const char *)&s->o + opts[i].off;
        if (!(opts[i].applies & mask) || !is_set(&s->o, &opts[i])) continue;
        if (!strcmp(opts[i].name, "threads") || !strcmp(opts[i].name, "max_metric_keys"))
            continue;
        put(buf, len, &pos, "%s%s=", first ? "" : ", ", opts[i].name);
        first = 0;
        switch (opts[i].type) {
        case T_DBL: put(buf, len, &pos, "%g", *(const double *)p); break;
        case T_BOOL: put(buf, len, &pos, "%s", *(const int *)p ? "True" : "False"); break;
        case T_I64: put(buf, len, &pos, "%lld", (long long)*(const int64_t *)p); break;
        default: put(buf, len, &pos, "%d", *(const int *)p); break;
        }
    }
    if (s->o.accumulator != PST_ACC_DOUBLE48)
        put(buf, len, &pos, "%saccumulator=%s", first ? "" : ", ",
            s->o.accumulator == PST_ACC_DOUBLE ? "double" : "float-delta");
    put(buf, len, &pos, ")%s", s->dp ? ")" : "");
    return (int)pos;
}
