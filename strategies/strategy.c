/*
 * strategy.c - strategy objects: creation, sampling, fit configuration,
 * streaming/kept fit aggregation, server optimizers, DP clipping and noise,
 * evaluate aggregation, metrics, checkpoints.
 *
 * Formulas: Flower 1.6 (flwr/server/strategy/ modules), as summarised in the
 * header. All arithmetic on model values is done in double and rounded to
 * float32 once per stored value; optimizer state is stored in float32 like
 * Flower's ndarrays, and rounded before it is used, as Flower uses it.
 */
#include "pst_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- random numbers ----------------------------------------------------------- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void pst__rng_seed(uint64_t st[4], uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) st[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pst__rng_next(uint64_t st[4]) /* xoshiro256** */
{
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

double pst__rng_normal(uint64_t st[4]) /* Marsaglia polar method, one value per call */
{
    double u, v, q;
    do {
        u = (double)(pst__rng_next(st) >> 11) * 0x1.0p-52 - 1.0;
        v = (double)(pst__rng_next(st) >> 11) * 0x1.0p-52 - 1.0;
        q = u * u + v * v;
    } while (q >= 1.0 || q == 0.0);
    return u * sqrt(-2.0 * log(q) / q);
}

int pst_sample(uint64_t *rng, int n, int k, int *out)
{
    int *idx;
    if (!rng || !out || n < 0 || k < 0 || k > n) return PT_ERR_INVAL;
    if (k == 0) return PT_OK;
    idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return PT_ERR_NOMEM;
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < k; i++) { /* partial Fisher-Yates, unbiased bounded draw */
        uint64_t bound = (uint64_t)(n - i), thresh = (0 - bound) % bound, r;
        do r = splitmix(rng);
        while (r < thresh);
        int j = i + (int)(r % bound), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        out[i] = idx[i];
    }
    free(idx);
    return PT_OK;
}

/* ---- helpers ------------------------------------------------------------------ */

static int is_streaming(pst_kind k)
{
    return !(k == PST_K_FEDMEDIAN || k == PST_K_FEDTRIMMEDAVG || k == PST_K_KRUM ||
             k == PST_K_MULTIKRUM || k == PST_K_BULYAN);
}

static void metrics_reset(pst_metric_acc *m)
{
    pt_config_free(&m->idx);
    m->n = 0;
    m->dropped = 0;
}

static void metrics_free(pst_metric_acc *m)
{
    metrics_reset(m);
    free(m->e);
    memset(m, 0, sizeof *m);
}

static int scalar_number(const pt_scalar *v, double *out)
{
    switch (v->type) {
    case PT_SCALAR_DOUBLE: *out = v->v.d; return 1;
    case PT_SCALAR_SINT64: *out = (double)v->v.i; return 1;
    case PT_SCALAR_UINT64: *out = (double)v->v.u; return 1;
    case PT_SCALAR_BOOL: *out = v->v.b ? 1.0 : 0.0; return 1;
    default: return 0;
    }
}

/* Fold one client's numeric metrics (weight w) into m: O(1) per key. */
static int metrics_add(pst_metric_acc *m, const pt_config *c, double w, int max_keys)
{
    if (!c) return PT_OK;
    for (size_t i = 0; i < c->n; i++) {
        double v;
        size_t j;
        const pt_scalar *at;
        if (!scalar_number(&c->e[i].val, &v) || !isfinite(v)) continue;
        if ((at = pt_config_get(&m->idx, c->e[i].key))) {
            j = (size_t)at->v.i;
        } else {
            if (m->n >= (size_t)max_keys) {
                m->dropped++;
                continue;
            }
            if (m->n == m->cap) {
                size_t cap = m->cap ? 2 * m->cap : 8;
                struct pst_metric_ent *e = realloc(m->e, cap * sizeof *e);
                if (!e) return PT_ERR_NOMEM;
                m->e = e;
                m->cap = cap;
            }
            j = m->n;
            if (pt_config_set_int(&m->idx, c->e[i].key, (int64_t)j)) return PT_ERR_NOMEM;
            memset(&m->e[j], 0, sizeof m->e[j]);
            m->n++;
        }
        m->e[j].wsum += w * v;
        m->e[j].w += w;
        m->e[j].sum += v;
        m->e[j].cnt++;
    }
    return PT_OK;
}

/* Weighted averages into out (plain mean for keys whose weights sum to 0). */
static int metrics_emit(const pst_metric_acc *m, pt_config *out, const char *what, int round,
                        int max_keys)
{
    if (m->dropped)
        PT_WARN("%s round %d: %zu client metric values under keys beyond the round's first %d "
                "distinct keys were not aggregated (max_metric_keys)",
                what, round, m->dropped, max_keys);
    if (!out) return PT_OK;
    for (size_t j = 0; j < m->n; j++) {
        const struct pst_metric_ent *e = &m->e[j];
        double v = e->w > 0 ? e->wsum / e->w : e->sum / (double)e->cnt;
        if (pt_config_set_double(out, m->idx.e[j].key, v)) return PT_ERR_NOMEM;
    }
    return PT_OK;
}

static size_t shape_numel(int ndim, const int64_t *shape, int *ok)
{
    size_t n = 1;
    *ok = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && n > SIZE_MAX / 8 / (size_t)shape[d])) {
            *ok = 0;
            return 0;
        }
        n *= (size_t)shape[d];
    }
    return n;
}

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t pos = 0;
    pos += (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && pos < len; d++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%lld", d ? ", " : "",
                                (long long)shape[d]);
    if (pos < len) snprintf(buf + pos, len - pos, "%s)", ndim == 1 ? "," : "");
}

/* Check p against the recorded layout. */
static int check_layout(const pst_strategy *s, const pt_params *p, const char *what, char *err)
{
    if (!p || (p->n && !p->t))
        return pt_seterr(err, PT_ERR_INVAL, "%s: no tensors", what);
    if (p->n != s->nt)
        return pt_seterr(err, PT_ERR_MISMATCH, "%s has %zu tensors, the model has %zu", what,
                         p->n, s->nt);
    for (size_t t = 0; t < s->nt; t++) {
        const pt_tensor *x = &p->t[t];
        int same = x->ndim == s->ndim[t], ok;
        for (int d = 0; same && d < x->ndim; d++)
            same = x->shape[d] == s->shape[t * PT_MAX_DIMS + d];
        if (!same) {
            char a[96], b[96];
            if (x->ndim < 0 || x->ndim > PT_MAX_DIMS)
                return pt_seterr(err, PT_ERR_MISMATCH, "%s: tensor %zu has rank %d", what, t,
                                 x->ndim);
            fmt_shape(a, sizeof a, x->ndim, x->shape);
            fmt_shape(b, sizeof b, s->ndim[t], s->shape + t * PT_MAX_DIMS);
            return pt_seterr(err, PT_ERR_MISMATCH, "%s: tensor %zu has shape %s, expected %s",
                             what, t, a, b);
        }
        if (x->numel != shape_numel(x->ndim, x->shape, &ok) || !ok)
            return pt_seterr(err, PT_ERR_MISMATCH,
                             "%s: tensor %zu numel %zu does not match its shape", what, t,
                             x->numel);
        if (x->numel && !x->data)
            return pt_seterr(err, PT_ERR_INVAL, "%s: tensor %zu has no data", what, t);
    }
    return PT_OK;
}

static int record_layout(pst_strategy *s, const pt_params *p, const char *what, char *err)
{
    size_t total = 0;
    long ncpu;
    if (s->have_layout) return check_layout(s, p, what, err);
    if (!p || !p->n || !p->t)
        return pt_seterr(err, PT_ERR_INVAL, "%s: a model needs at least one tensor", what);
    for (size_t t = 0; t < p->n; t++) {
        int ok;
        size_t n;
        if (p->t[t].ndim < 0 || p->t[t].ndim > PT_MAX_DIMS)
            return pt_seterr(err, PT_ERR_INVAL, "%s: tensor %zu has rank %d", what, t,
                             p->t[t].ndim);
        n = shape_numel(p->t[t].ndim, p->t[t].shape, &ok);
        if (!ok || n != p->t[t].numel)
            return pt_seterr(err, PT_ERR_INVAL, "%s: tensor %zu has a bad shape or numel", what,
                             t);
        if (n && !p->t[t].data)
            return pt_seterr(err, PT_ERR_INVAL, "%s: tensor %zu has no data", what, t);
        total += n;
    }
    if (s->mom || s->m || s->v) { /* state loaded from a checkpoint before */
        if (s->total != total)
            return pt_seterr(err, PT_ERR_MISMATCH,
                             "%s has %zu floats, the loaded strategy state has %zu", what, total,
                             s->total);
    }
    s->ndim = malloc(p->n * sizeof *s->ndim);
    s->shape = calloc(p->n * PT_MAX_DIMS, sizeof *s->shape);
    s->numel = malloc(p->n * sizeof *s->numel);
    s->off = malloc((p->n + 1) * sizeof *s->off);
    if (!s->ndim || !s->shape || !s->numel || !s->off) {
        free(s->ndim);
        free(s->shape);
        free(s->numel);
        free(s->off);
        s->ndim = NULL, s->shape = NULL, s->numel = NULL, s->off = NULL;
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
    s->nt = p->n;
    s->off[0] = 0;
    for (size_t t = 0; t < p->n; t++) {
        s->ndim[t] = p->t[t].ndim;
        for (int d = 0; d < p->t[t].ndim; d++) s->shape[t * PT_MAX_DIMS + d] = p->t[t].shape[d];
        s->numel[t] = p->t[t].numel;
        s->off[t + 1] = s->off[t] + p->t[t].numel;
    }
    s->total = total;
    s->have_layout = 1;
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (s->o.threads > 0) s->threads = s->o.threads;
    else s->threads = (ncpu >= 2 && total >= ((size_t)1 << 20)) ? 2 : 1;
    return PT_OK;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int pst_create(pst_strategy **out, const char *name, const pst_options *o, char *err)
{
    pst_strategy *s;
    int kind, dp, rc;
    pst_options def;
    if (!out) return pt_seterr(err, PT_ERR_INVAL, "pst_create: out is NULL");
    *out = NULL;
    rc = pst__parse_name(name, &kind, &dp, err);
    if (rc) return rc;
    if (!o) {
        pst_options_init(&def);
        o = &def;
    }
    s = calloc(1, sizeof *s);
    if (!s) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    s->kind = (pst_kind)kind;
    s->dp = dp;
    s->o = *o;
    rc = pst__resolve_options(s->kind, dp, &s->o, err);
    if (rc) {
        free(s);
        return rc;
    }
    if (dp)
        snprintf(s->name, sizeof s->name, "DifferentialPrivacyServerSideFixedClipping(%s)",
                 pst__kind_name(s->kind));
    else
        snprintf(s->name, sizeof s->name, "%s", pst__kind_name(s->kind));
    s->server_opt = s->kind == PST_K_FEDAVGM &&
                    (s->o.server_momentum != 0.0 || s->o.server_learning_rate != 1.0);
    pst__rng_seed(s->rng, dp ? (uint64_t)s->o.seed : 0);
    *out = s;
    return PT_OK;
}

void pst_free(pst_strategy *s)
{
    if (!s) return;
    free(s->ndim);
    free(s->shape);
    free(s->numel);
    free(s->off);
    free(s->acc);
    free(s->accf);
    free(s->acc48);
    for (size_t i = 0; i < s->nalloc; i++) free(s->kept[i]);
    free(s->kept);
    free(s->kept_n);
    free(s->res);
    free(s->mom);
    free(s->m);
    free(s->v);
    metrics_free(&s->fit_metrics);
    metrics_free(&s->eval_metrics);
    free(s);
}

const char *pst_name(const pst_strategy *s) { return s->name; }

int pst_describe(const pst_strategy *s, char *buf, size_t len)
{
    return pst__describe(s, buf, len);
}

const pst_options *pst_effective_options(const pst_strategy *s) { return &s->o; }

int pst_keeps_updates(const pst_strategy *s) { return !is_streaming(s->kind); }

int pst_needs_central_loss(const pst_strategy *s) { return s->kind == PST_K_QFEDAVG; }

int pst_needs_initial_parameters(const pst_strategy *s)
{
    return s->server_opt || s->kind == PST_K_FEDADAGRAD || s->kind == PST_K_FEDADAM ||
           s->kind == PST_K_FEDYOGI;
}

int pst_initialize(pst_strategy *s, const pt_params *init, char *err)
{
    int rc = record_layout(s, init, "initial parameters", err);
    if (rc) return rc;
    for (size_t t = 0; t < s->nt; t++)
        for (size_t j = 0; j < s->numel[t]; j++)
            if (!isfinite(init->t[t].data[j]))
                return pt_seterr(err, PT_ERR_DIVERGED,
                                 "initial parameters: tensor %zu has a non-finite value at %zu",
                                 t, j);
    return PT_OK;
}

int pst_last_round(const pst_strategy *s) { return s->last_round; }

/* ---- sampling and configuration -------------------------------------------------- */

int pst_num_fit_clients(const pst_strategy *s, int available, int *sample_size, int *min_num)
{
    int n;
    if (available < 0 || !sample_size || !min_num) return PT_ERR_INVAL;
    n = (int)((double)available * s->o.fraction_fit); /* Python int() truncates */
    *sample_size = n > s->o.min_fit_clients ? n : s->o.min_fit_clients;
    *min_num = s->o.min_available_clients;
    return PT_OK;
}

int pst_num_evaluate_clients(const pst_strategy *s, int available, int *sample_size,
                             int *min_num)
{
    int n;
    if (available < 0 || !sample_size || !min_num) return PT_ERR_INVAL;
    *min_num = s->o.min_available_clients;
    if (s->o.fraction_evaluate == 0.0) {
        *sample_size = 0;
        return PT_OK;
    }
    n = (int)((double)available * s->o.fraction_evaluate);
    *sample_size = n > s->o.min_evaluate_clients ? n : s->o.min_evaluate_clients;
    return PT_OK;
}

int pst_configure_fit(pst_strategy *s, int round, pt_config *cfg, char *err)
{
    (void)round;
    if (!cfg) return pt_seterr(err, PT_ERR_INVAL, "configure_fit: config is NULL");
    if (s->kind == PST_K_FEDPROX && pt_config_set_double(cfg, "proximal_mu", s->o.proximal_mu))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    return PT_OK;
}

int pst_configure_evaluate(pst_strategy *s, int round, pt_config *cfg, char *err)
{
    (void)s;
    (void)round;
    if (!cfg) return pt_seterr(err, PT_ERR_INVAL, "configure_evaluate: config is NULL");
    return PT_OK;
}

/* ---- fit ------------------------------------------------------------------------ */

int pst_fit_begin(pst_strategy *s, int round, const pt_params *global, char *err)
{
    int rc;
    if (s->open) return pt_seterr(err, PT_ERR_STATE, "fit round %d is still open", s->round);
    if (round < 1) return pt_seterr(err, PT_ERR_INVAL, "fit round %d: rounds start at 1", round);
    rc = record_layout(s, global, "global parameters", err);
    if (rc) return rc;
    if (is_streaming(s->kind) && s->o.accumulator == PST_ACC_FLOAT_DELTA) {
        if (!s->accf) {
            s->accf = malloc((s->total ? s->total : 1) * sizeof *s->accf);
            if (!s->accf) return pt_seterr(err, PT_ERR_NOMEM, "out of memory (accumulator)");
        }
    } else if (is_streaming(s->kind) && s->o.accumulator == PST_ACC_DOUBLE48) {
        if (!s->acc48) { /* total uint32 high parts, then total uint16 low parts */
            s->acc48 = malloc((s->total ? s->total : 1) * 6);
            if (!s->acc48) return pt_seterr(err, PT_ERR_NOMEM, "out of memory (accumulator)");
        }
    } else if (is_streaming(s->kind)) {
        if (!s->acc) {
            s->acc = malloc((s->total ? s->total : 1) * sizeof *s->acc);
            if (!s->acc) return pt_seterr(err, PT_ERR_NOMEM, "out of memory (accumulator)");
        }
    }
    s->acc_fresh = 1; /* the first fold writes the accumulator: no memset pass */
    s->open = 1;
    s->round = round;
    s->global = global;
    s->results = s->failures = s->rejected = 0;
    s->wsum = s->gcoef = s->sqsum = 0;
    s->have_loss = 0;
    s->nkept = 0;
    metrics_reset(&s->fit_metrics);
    return PT_OK;
}

void pst_fit_failure(pst_strategy *s)
{
    if (s->open) s->failures++;
}

int pst_set_central_loss(pst_strategy *s, double loss)
{
    if (!isfinite(loss) || loss < 0) return PT_ERR_INVAL;
    s->central_loss = loss;
    s->have_loss = 1;
    return PT_OK;
}

void pst_fit_counts(const pst_strategy *s, int *results, int *failures, int *rejected)
{
    if (results) *results = s->results;
    if (failures) *failures = s->failures;
    if (rejected) *rejected = s->rejected;
}

static int reject(pst_strategy *s)
{
    s->failures++;
    s->rejected++;
    return 0;
}

/* Validate an update; on failure count it and fill err. */
static int validate_update(pst_strategy *s, const pt_params *u, int64_t n, char *err)
{
    int rc;
    if (n < 0) {
        reject(s);
        return pt_seterr(err, PT_ERR_INVAL, "fit result rejected: num_examples %lld < 0",
                         (long long)n);
    }
    rc = check_layout(s, u, "fit result rejected: update", err);
    if (rc) reject(s);
    return rc;
}

static int ensure_kept_slot(pst_strategy *s)
{
    if (s->nkept == s->capkept) {
        size_t cap = s->capkept ? 2 * s->capkept : 16;
        float **k = realloc(s->kept, cap * sizeof *k);
        int64_t *kn;
        if (!k) return PT_ERR_NOMEM;
        s->kept = k;
        kn = realloc(s->kept_n, cap * sizeof *kn);
        if (!kn) return PT_ERR_NOMEM;
        s->kept_n = kn;
        s->capkept = cap;
    }
    if (s->nkept == s->nalloc) {
        s->kept[s->nalloc] = malloc((s->total ? s->total : 1) * sizeof(float));
        if (!s->kept[s->nalloc]) return PT_ERR_NOMEM;
        s->nalloc++;
    }
    return PT_OK;
}

static void *acc_ptr(pst_strategy *s)
{
    return s->accf ? (void *)s->accf : s->acc48 ? (void *)s->acc48 : (void *)s->acc;
}

/* Element i of the (double or 48-bit) sum accumulator. */
static double acc_at(const pst_strategy *s, size_t i)
{
    const uint32_t *hi;
    const uint16_t *lo;
    uint64_t b;
    double a;
    if (s->acc) return s->acc[i];
    hi = s->acc48;
    lo = (const uint16_t *)(hi + s->total);
    b = (uint64_t)hi[i] << 32 | (uint64_t)lo[i] << 16;
    memcpy(&a, &b, 8);
    return a;
}

/* One update for DP-wrapped, QFedAvg or kept strategies (validated already). */
static int add_one(pst_strategy *s, const unsigned char *const *src, int64_t n, char *err)
{
    double c = 1.0, sq = 0;
    int finite = 1;
    if (s->dp || s->kind == PST_K_QFEDAVG) {
        sq = pst__sqdist_global(s, src, s->global, &finite);
        if (!finite) goto nonfinite;
        if (s->dp) {
            double norm = sqrt(sq);
            if (norm > 0 && s->o.clipping_norm / norm < 1.0) c = s->o.clipping_norm / norm;
            sq *= c * c;
        }
    }
    if (is_streaming(s->kind)) {
        double w = s->kind == PST_K_QFEDAVG ? 1.0 : (double)n, wc = w * c;
        const unsigned char *const *srcs[1] = {src};
        int bad = 0;
        size_t folded;
        if (pst__fold(s, acc_ptr(s), s->acc_fresh, 1, srcs, &wc, &bad, &folded))
            return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        if (folded) s->acc_fresh = 0;
        if (bad) goto nonfinite;
        /* double: sum of w*(g + c(x - g)) = w*c*x + w*(1-c)*g; the delta
         * accumulator holds w*c*(x - g) directly */
        if (!s->accf) s->gcoef += w * (1.0 - c);
        s->wsum += w;
        s->sqsum += sq;
    } else {
        float *dst;
        if (ensure_kept_slot(s)) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        dst = s->kept[s->nkept];
        if (!pst__copy_flat(s, dst, src)) goto nonfinite;
        if (s->dp && c < 1.0) /* Flower: u = x - g; u *= c; x = g + u (float32) */
            for (size_t t = 0; t < s->nt; t++) {
                const float *g = s->global->t[t].data;
                float *x = dst + s->off[t];
                for (size_t j = 0; j < s->numel[t]; j++) {
                    float u = x[j] - g[j];
                    u = (float)((double)u * c);
                    x[j] = g[j] + u;
                }
            }
        s->kept_n[s->nkept++] = n;
    }
    return PT_OK;
nonfinite:
    reject(s);
    return pt_seterr(err, PT_ERR_DIVERGED, "fit result rejected: update has non-finite values");
}

int pst_fit_add_many(pst_strategy *s, size_t k, const pt_params *const *updates,
                     const int64_t *num_examples, const pt_config *const *metrics,
                     int *status, char *err)
{
    const unsigned char **ptrs = NULL;
    const unsigned char *const **srcs = NULL;
    double *w = NULL;
    int *bad = NULL, *st = NULL, first = PT_OK;
    size_t nv = 0, *vi = NULL;
    char e1[PT_ERRLEN];
    if (!s->open) return pt_seterr(err, PT_ERR_STATE, "fit_add: no open round (fit_begin)");
    if (!k) return PT_OK;
    if (!updates || !num_examples) return pt_seterr(err, PT_ERR_INVAL, "fit_add: NULL arrays");
    ptrs = malloc(k * s->nt * sizeof *ptrs);
    srcs = malloc(k * sizeof *srcs);
    w = malloc(k * sizeof *w);
    bad = calloc(k, sizeof *bad);
    st = calloc(k, sizeof *st);
    vi = malloc(k * sizeof *vi);
    if (!ptrs || !srcs || !w || !bad || !st || !vi) {
        first = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < k; i++) {
        e1[0] = 0;
        st[i] = validate_update(s, updates[i], num_examples[i], e1);
        if (st[i]) {
            if (first == PT_OK) {
                first = st[i];
                pt_seterr(err, st[i], "%s", e1);
            }
            continue;
        }
        for (size_t t = 0; t < s->nt; t++)
            ptrs[i * s->nt + t] = (const unsigned char *)updates[i]->t[t].data;
        if (is_streaming(s->kind) && !s->dp && s->kind != PST_K_QFEDAVG) {
            srcs[nv] = ptrs + i * s->nt;
            w[nv] = (double)num_examples[i];
            vi[nv++] = i;
        } else {
            st[i] = add_one(s, ptrs + i * s->nt, num_examples[i], e1);
            if (st[i] && first == PT_OK) {
                first = st[i];
                pt_seterr(err, st[i], "%s", e1);
            }
        }
    }
    if (nv) {
        size_t folded;
        if (pst__fold(s, acc_ptr(s), s->acc_fresh, nv, srcs, w, bad, &folded)) {
            first = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (folded) s->acc_fresh = 0;
        for (size_t j = 0; j < nv; j++) {
            if (bad[j]) {
                reject(s);
                st[vi[j]] = PT_ERR_DIVERGED;
                if (first == PT_OK)
                    first = pt_seterr(err, PT_ERR_DIVERGED,
                                      "fit result rejected: update has non-finite values");
            } else {
                s->wsum += w[j];
            }
        }
    }
    for (size_t i = 0; i < k; i++) {
        if (st[i]) continue;
        s->results++;
        if (s->o.metrics == PST_METRICS_WEIGHTED &&
            metrics_add(&s->fit_metrics, metrics ? metrics[i] : NULL, (double)num_examples[i],
                        s->o.max_metric_keys))
            if (first == PT_OK) first = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
done:
    if (status)
        for (size_t i = 0; i < k; i++) status[i] = st ? st[i] : first;
    free(ptrs);
    free(srcs);
    free(w);
    free(bad);
    free(st);
    free(vi);
    return first;
}

int pst_fit_add(pst_strategy *s, const pt_params *update, int64_t num_examples,
                const pt_config *metrics, char *err)
{
    return pst_fit_add_many(s, 1, &update, &num_examples, &metrics, NULL, err);
}

/* Compute (commit = 0: check only) or write (commit = 1) the new global and
 * the optimizer state from the accumulator (sum of weight * update, or of
 * weight * (update - global)) and K = the sum of the weights. Returns PT_OK
 * or PT_ERR_DIVERGED (check pass). */
static int apply_streaming(pst_strategy *s, pt_params *g, int commit)
{
    const pst_options *o = &s->o;
    double sigma = s->dp ? o->noise_multiplier * o->clipping_norm / o->num_sampled_clients : 0;
    double qc = 0, qh = 1, K = s->wsum;
    int momentum = s->kind == PST_K_FEDAVGM && s->server_opt && o->server_momentum > 0.0;
    if (s->kind == PST_K_QFEDAVG) {
        /* Delta_k = L'^q * (w - w_k)/lr; h_k = q L'^(q-1) ||(w - w_k)/lr||^2 + L'^q/lr */
        double L = s->central_loss + 1e-10, lr = o->qffl_learning_rate;
        double Lq = pow(L, o->q_param);
        qh = o->q_param * pow(L, o->q_param - 1.0) * s->sqsum / (lr * lr) + K * Lq / lr;
        qc = Lq / lr;
    }
    for (size_t t = 0; t < s->nt; t++) {
        float *gd = g->t[t].data;
        for (size_t j = 0, i = s->off[t]; j < s->numel[t]; j++, i++) {
            double gv = gd[j], out, a;
            float fm = 0, fv = 0;
            /* a = the average of the (clipped) updates; QFedAvg: their sum */
            if (s->accf) a = s->kind == PST_K_QFEDAVG ? K * gv + s->accf[i] : gv + s->accf[i] / K;
            else {
                a = acc_at(s, i) + (s->gcoef != 0 ? s->gcoef * gv : 0.0);
                if (s->kind != PST_K_QFEDAVG) a /= K;
            }
            if (s->kind != PST_K_QFEDAVG) a = (float)a; /* Flower's FedAvg result is float32 */
            switch (s->kind) {
            case PST_K_FEDAVGM:
                if (!s->server_opt) {
                    out = a;
                    break;
                }
                {
                    double grad = gv - a;
                    if (momentum) {
                        fm = (float)(s->mom_valid ? o->server_momentum * s->mom[i] + grad : grad);
                        grad = fm;
                    }
                    out = gv - o->server_learning_rate * grad;
                }
                break;
            case PST_K_FEDADAGRAD:
            case PST_K_FEDADAM:
            case PST_K_FEDYOGI: {
                double d = (float)(a - gv), d2; /* Flower's delta is a float32 array */
                fm = (float)(o->beta_1 * s->m[i] + (1.0 - o->beta_1) * d);
                d2 = (double)(float)(d * d);
                if (s->kind == PST_K_FEDADAGRAD) fv = (float)(s->v[i] + d2);
                else if (s->kind == PST_K_FEDADAM)
                    fv = (float)(o->beta_2 * s->v[i] + (1.0 - o->beta_2) * d2);
                else {
                    double diff = s->v[i] - d2, sg = (diff > 0) - (diff < 0);
                    fv = (float)(s->v[i] - (1.0 - o->beta_2) * d2 * sg);
                }
                out = gv + o->eta * fm / (sqrt((double)fv) + o->tau);
                break;
            }
            case PST_K_QFEDAVG: out = gv - qc * (K * gv - a) / qh; break;
            default: out = a; break;
            }
            if (sigma > 0) out += sigma * pst__rng_normal(s->rng);
            if (!commit) {
                if (!isfinite((float)out)) return PT_ERR_DIVERGED;
                continue;
            }
            gd[j] = (float)out;
            if (momentum) s->mom[i] = fm;
            if (s->m) s->m[i] = fm;
            if (s->v) s->v[i] = fv;
        }
    }
    return PT_OK;
}

int pst_fit_end(pst_strategy *s, pt_params *global, int *updated, pt_config *metrics_out,
                char *err)
{
    int rc = PT_OK, fedopt;
    int dummy;
    if (!updated) updated = &dummy;
    *updated = 0;
    if (!s->open) return pt_seterr(err, PT_ERR_STATE, "fit_end: no open round");
    s->open = 0;
    rc = check_layout(s, global, "fit_end: global", err);
    if (rc) return rc;
    /* Flower's (None, {}) cases */
    if (s->results == 0) return PT_OK;
    if (s->dp && s->failures > 0) return PT_OK;
    if (s->kind == PST_K_FAULTTOLERANT) {
        if ((double)s->results / (double)(s->results + s->failures) <
            s->o.min_completion_rate_fit)
            return PT_OK;
    } else if (!s->o.accept_failures && s->failures > 0) {
        return PT_OK;
    }
    if (s->dp && s->results != s->o.num_sampled_clients)
        PT_WARN("The number of clients returning parameters (%d) differs from the number of "
                "sampled clients (%d). This could impact the differential privacy guarantees "
                "of the system, potentially leading to privacy leakage or inadequate noise "
                "calibration.",
                s->results, s->o.num_sampled_clients);
    if (s->kind == PST_K_QFEDAVG && !s->have_loss)
        return pt_seterr(err, PT_ERR_STATE,
                         "QFedAvg needs the centralised loss of the global weights "
                         "(pst_set_central_loss) before fit_end");
    fedopt = s->kind == PST_K_FEDADAGRAD || s->kind == PST_K_FEDADAM || s->kind == PST_K_FEDYOGI;
    if (is_streaming(s->kind)) {
        uint64_t rng0[4];
        if (s->kind != PST_K_QFEDAVG && !(s->wsum > 0))
            return pt_seterr(err, PT_ERR_INVAL,
                             "%s: the results have 0 examples in total, cannot average",
                             s->name);
        if (fedopt && !s->m) {
            s->m = calloc(s->total ? s->total : 1, sizeof *s->m);
            s->v = calloc(s->total ? s->total : 1, sizeof *s->v);
            if (!s->m || !s->v) {
                free(s->m);
                free(s->v);
                s->m = s->v = NULL;
                return pt_seterr(err, PT_ERR_NOMEM, "out of memory (optimizer state)");
            }
        }
        if (s->kind == PST_K_FEDAVGM && s->server_opt && s->o.server_momentum > 0 && !s->mom) {
            s->mom = calloc(s->total ? s->total : 1, sizeof *s->mom);
            if (!s->mom) return pt_seterr(err, PT_ERR_NOMEM, "out of memory (momentum)");
        }
        memcpy(rng0, s->rng, sizeof rng0);
        if (apply_streaming(s, global, 0))
            return pt_seterr(err, PT_ERR_DIVERGED,
                             "%s round %d: the aggregated parameters are not finite; "
                             "global model and strategy state kept",
                             s->name, s->round);
        memcpy(s->rng, rng0, sizeof rng0);
        apply_streaming(s, global, 1);
        if (s->mom) s->mom_valid = 1;
    } else {
        double sigma = s->dp ? s->o.noise_multiplier * s->o.clipping_norm /
                                   s->o.num_sampled_clients
                             : 0;
        uint64_t rng0[4];
        if (!s->res) {
            s->res = malloc((s->total ? s->total : 1) * sizeof *s->res);
            if (!s->res) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        }
        switch (s->kind) {
        case PST_K_FEDMEDIAN: rc = pst__median(s, s->res, err); break;
        case PST_K_FEDTRIMMEDAVG: rc = pst__trimmed_mean(s, s->res, err); break;
        case PST_K_BULYAN: rc = pst__bulyan(s, s->res, err); break;
        default: rc = pst__krum(s, s->res, err); break;
        }
        if (rc) return rc;
        memcpy(rng0, s->rng, sizeof rng0);
        if (sigma > 0)
            for (size_t i = 0; i < s->total; i++)
                s->res[i] = (float)((double)s->res[i] + sigma * pst__rng_normal(s->rng));
        for (size_t i = 0; i < s->total; i++)
            if (!isfinite(s->res[i])) {
                memcpy(s->rng, rng0, sizeof rng0);
                return pt_seterr(err, PT_ERR_DIVERGED,
                                 "%s round %d: the aggregated parameters are not finite; "
                                 "global model kept",
                                 s->name, s->round);
            }
        for (size_t t = 0; t < s->nt; t++)
            memcpy(global->t[t].data, s->res + s->off[t], s->numel[t] * sizeof(float));
    }
    if (s->dp)
        PT_INFO("aggregate_fit: parameters are clipped by value: %.4f; central DP noise with "
                "%.4f stdev added",
                s->o.clipping_norm,
                s->o.noise_multiplier * s->o.clipping_norm / s->o.num_sampled_clients);
    *updated = 1;
    s->last_round = s->round;
    if (metrics_emit(&s->fit_metrics, metrics_out, "fit", s->round, s->o.max_metric_keys))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory (metrics)");
    return PT_OK;
}

/* ---- evaluate ---------------------------------------------------------------------- */

int pst_evaluate_begin(pst_strategy *s, int round)
{
    s->eopen = 1;
    s->eround = round;
    s->eresults = s->efailures = s->erejected = 0;
    s->eloss = s->en = 0;
    metrics_reset(&s->eval_metrics);
    return PT_OK;
}

int pst_evaluate_add(pst_strategy *s, double loss, int64_t num_examples,
                     const pt_config *metrics, char *err)
{
    if (!s->eopen) return pt_seterr(err, PT_ERR_STATE, "evaluate_add: no open round");
    if (num_examples < 0) {
        s->efailures++;
        s->erejected++;
        return pt_seterr(err, PT_ERR_INVAL, "evaluate result rejected: num_examples %lld < 0",
                         (long long)num_examples);
    }
    if (!isfinite(loss)) {
        s->efailures++;
        s->erejected++;
        return pt_seterr(err, PT_ERR_DIVERGED, "evaluate result rejected: loss is %g", loss);
    }
    s->eresults++;
    s->eloss += (double)num_examples * loss;
    s->en += (double)num_examples;
    if (s->o.metrics == PST_METRICS_WEIGHTED &&
        metrics_add(&s->eval_metrics, metrics, (double)num_examples, s->o.max_metric_keys))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    return PT_OK;
}

void pst_evaluate_failure(pst_strategy *s)
{
    if (s->eopen) s->efailures++;
}

int pst_evaluate_end(pst_strategy *s, double *loss, int *has_loss, pt_config *metrics_out,
                     char *err)
{
    int dummy;
    if (!has_loss) has_loss = &dummy;
    *has_loss = 0;
    if (!s->eopen) return pt_seterr(err, PT_ERR_STATE, "evaluate_end: no open round");
    s->eopen = 0;
    if (s->eresults == 0) return PT_OK;
    if (s->kind == PST_K_FAULTTOLERANT) {
        if ((double)s->eresults / (double)(s->eresults + s->efailures) <
            s->o.min_completion_rate_evaluate)
            return PT_OK;
    } else if (!s->o.accept_failures && s->efailures > 0) {
        return PT_OK;
    }
    if (!(s->en > 0)) return PT_OK; /* Flower: ZeroDivisionError */
    if (loss) *loss = s->eloss / s->en;
    *has_loss = 1;
    if (metrics_emit(&s->eval_metrics, metrics_out, "evaluate", s->eround,
                     s->o.max_metric_keys))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory (metrics)");
    return PT_OK;
}

/* ---- checkpoints -------------------------------------------------------------------- */

#define STATE_MAGIC "PSTS"
#define STATE_VERSION 1u
enum { F_MOM = 1, F_MOMVALID = 2, F_M = 4, F_V = 8 };

static int wr(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }
static int rd(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n ? 0 : -1; }

int pst_state_save(const pst_strategy *s, FILE *f, char *err)
{
    uint32_t ver = STATE_VERSION, nl = (uint32_t)strlen(s->name), flags = 0;
    int32_t lr = s->last_round;
    uint64_t total = s->total;
    if (!f) return pt_seterr(err, PT_ERR_INVAL, "state_save: FILE is NULL");
    if (s->open) return pt_seterr(err, PT_ERR_STATE, "state_save: a fit round is open");
    if (s->mom) flags |= F_MOM;
    if (s->mom_valid) flags |= F_MOMVALID;
    if (s->m) flags |= F_M;
    if (s->v) flags |= F_V;
    if (wr(f, STATE_MAGIC, 4) || wr(f, &ver, 4) || wr(f, &nl, 4) || wr(f, s->name, nl) ||
        wr(f, &lr, 4) || wr(f, &total, 8) || wr(f, &flags, 4) || wr(f, s->rng, sizeof s->rng) ||
        (s->mom && wr(f, s->mom, s->total * sizeof(float))) ||
        (s->m && wr(f, s->m, s->total * sizeof(float))) ||
        (s->v && wr(f, s->v, s->total * sizeof(float))) || fflush(f))
        return pt_seterr(err, PT_ERR_IO, "state_save: write failed");
    return PT_OK;
}

/* The loaded flags must describe the state this strategy keeps, and the
 * noise RNG must be usable (xoshiro's all-zero state only yields zeros: the
 * normal sampler would never return). */
static int state_check_header(const pst_strategy *s, uint32_t flags, const uint64_t rng[4],
                              char *err)
{
    int fedopt = s->kind == PST_K_FEDADAGRAD || s->kind == PST_K_FEDADAM ||
                 s->kind == PST_K_FEDYOGI;
    int mom = s->kind == PST_K_FEDAVGM && s->server_opt && s->o.server_momentum > 0;
    if (!(rng[0] | rng[1] | rng[2] | rng[3]))
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: the noise RNG state is all zero");
    if (((flags & F_M) != 0) != ((flags & F_V) != 0) || ((flags & F_M) && !fedopt))
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: optimizer moments %s for %s",
                         fedopt ? "incomplete" : "given", s->name);
    if (((flags & F_MOM) && !mom) || ((flags & F_MOMVALID) && !(flags & F_MOM)))
        return pt_seterr(err, PT_ERR_FORMAT,
                         "state_load: momentum state does not fit %s with these options",
                         s->name);
    return PT_OK;
}

int pst_state_load(pst_strategy *s, FILE *f, char *err)
{
    char magic[4], name[sizeof s->name];
    uint32_t ver, nl, flags;
    int32_t lr;
    uint64_t total, rng[4];
    float *arr[3] = {NULL, NULL, NULL};
    static const uint32_t fl[3] = {F_MOM, F_M, F_V};
    if (!f) return pt_seterr(err, PT_ERR_INVAL, "state_load: FILE is NULL");
    if (s->open) return pt_seterr(err, PT_ERR_STATE, "state_load: a fit round is open");
    if (rd(f, magic, 4) || memcmp(magic, STATE_MAGIC, 4))
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: not a Petal strategy state (magic)");
    if (rd(f, &ver, 4) || ver != STATE_VERSION)
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: unsupported version");
    if (rd(f, &nl, 4) || nl >= sizeof name || rd(f, name, nl))
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: bad strategy name");
    name[nl] = 0;
    if (strcmp(name, s->name))
        return pt_seterr(err, PT_ERR_MISMATCH, "state_load: state of %s, strategy is %s", name,
                         s->name);
    if (rd(f, &lr, 4) || rd(f, &total, 8) || rd(f, &flags, 4) || rd(f, rng, sizeof rng))
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: truncated header");
    if (lr < 0 || lr > 100000000 || (flags & ~15u) || total > ((uint64_t)1 << 40))
        return pt_seterr(err, PT_ERR_FORMAT, "state_load: bad header values");
    if ((flags & (F_MOM | F_M | F_V)) && s->have_layout && total != s->total)
        return pt_seterr(err, PT_ERR_MISMATCH,
                         "state_load: state has %llu floats, the model has %zu",
                         (unsigned long long)total, s->total);
    {
        /* Bound the arrays by what the stream still holds before allocating:
         * a corrupt header must not make us allocate up to 2^40 floats. */
        long cur = ftell(f);
        if (cur >= 0 && fseek(f, 0, SEEK_END) == 0) {
            long end = ftell(f);
            uint64_t narr = (uint64_t)((flags & F_MOM) != 0) + ((flags & F_M) != 0) +
                            ((flags & F_V) != 0);
            if (fseek(f, cur, SEEK_SET) != 0)
                return pt_seterr(err, PT_ERR_IO, "state_load: seek failed");
            if (end < cur || narr * total * sizeof(float) > (uint64_t)(end - cur))
                return pt_seterr(err, PT_ERR_FORMAT,
                                 "state_load: truncated: header promises %llu floats x %llu "
                                 "arrays, %ld bytes left",
                                 (unsigned long long)total, (unsigned long long)narr,
                                 end >= cur ? end - cur : 0L);
        }
    }
    {
        int rc = state_check_header(s, flags, rng, err);
        if (rc) return rc;
    }
    for (int i = 0; i < 3; i++) {
        static const char *const what[3] = {"momentum", "first moment", "second moment"};
        if (!(flags & fl[i])) continue;
        arr[i] = malloc(total ? total * sizeof(float) : 1);
        if (!arr[i]) {
            for (int j = 0; j < i; j++) free(arr[j]);
            return pt_seterr(err, PT_ERR_NOMEM, "state_load: out of memory");
        }
        if (rd(f, arr[i], total * sizeof(float))) {
            for (int j = 0; j <= i; j++) free(arr[j]);
            return pt_seterr(err, PT_ERR_FORMAT, "state_load: truncated state arrays");
        }
        /* momentum and first moment: finite; second moment: finite, >= 0
         * (every FedOpt update keeps it so; a negative one would take the
         * square root of a negative number) */
        for (size_t j = 0; j < total; j++) {
            float x = arr[i][j];
            if (isfinite(x) && (fl[i] != F_V || x >= 0)) continue;
            for (int q = 0; q <= i; q++) free(arr[q]);
            return pt_seterr(err, PT_ERR_FORMAT, "state_load: %s[%zu] is %g: %s", what[i], j,
                             (double)x, isfinite(x) ? "negative" : "not finite");
        }
    }
    free(s->mom);
    free(s->m);
    free(s->v);
    s->mom = arr[0];
    s->m = arr[1];
    s->v = arr[2];
    s->mom_valid = (flags & F_MOMVALID) && s->mom;
    if (!s->have_layout && (flags & (F_MOM | F_M | F_V))) s->total = (size_t)total;
    s->last_round = lr;
    memcpy(s->rng, rng, sizeof rng);
    return PT_OK;
}
