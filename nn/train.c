/*
 * train.c - batch buffers, the forward/backward drivers, the fused softmax
 * cross-entropy, optimizers, and pnn_fit / pnn_evaluate / pnn_predict /
 * pnn_gradient.
 */
#include "nn_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int nfwd(const pnn_model *m)
{
    return m->L[m->nl - 1].type == NN_SOFTMAX ? m->nl - 1 : m->nl;
}

static float *logits_of(pnn_model *m)
{
    int k = nfwd(m);
    return k > 0 ? m->L[k - 1].out : m->xin;
}

int pnn__ensure_batch(pnn_model *m, int b, int grad)
{
    if (b < 1) return PNN_ERR_INVAL;
    if (b <= m->cap && (!grad || b <= m->gcap) && m->buf_threads == m->threads) return PNN_OK;
    int cap = b > m->cap ? b : m->cap;
    grad = grad || m->gcap > 0;
    pnn__big_free_all(m);
    size_t insz = pnn_input_size(m), maxsz = insz, ws = 0, gp = 0, cs = 0, pe = 0;
    const size_t T = (size_t)m->threads;
    m->xin = pnn__big_alloc(m, (size_t)cap * insz * sizeof(float));
    if (!m->xin) goto nomem;
    const float *prev = m->xin;
    for (int i = 0; i < m->nl; i++) {
        nn_layer *l = &m->L[i];
        if (l->osz > maxsz) maxsz = l->osz;
        if (l->type == NN_FLATTEN) {
            l->out = (float *)prev;
        } else if (l->fuse_pool) {
            l->out = NULL; /* never materialised */
        } else {
            l->out = pnn__big_alloc(m, (size_t)cap * l->osz * sizeof(float));
            if (!l->out) goto nomem;
        }
        if (l->fused) {
            l->code = pnn__big_alloc(m, (size_t)cap * l->osz);
            if (!l->code) goto nomem;
        }
        if (l->type == NN_DROPOUT) {
            l->mask = pnn__big_alloc(m, (size_t)cap * l->osz * sizeof(float));
            if (!l->mask) goto nomem;
        }
        if (l->type == NN_CONV) {
            /* row blocks of pnn__patch_block floats of patch matrix (256-512 KiB;
             * at least 256, at most 8192 rows) */
            size_t K = (size_t)l->kh * l->kw * l->ic, rb = pnn__patch_block(m->backend) / K;
            if (rb < 256) rb = 256;
            if (rb > 8192) rb = 8192;
            l->chunk = (int)rb;
            if (rb * K > ws) ws = rb * K;
            if (l->fuse_pool) { /* block scratch: whole images or runs of row pairs */
                size_t pix = (size_t)l->oh * l->ow, rows = pix <= rb ? rb / pix * pix : rb;
                if (rows < 2 * (size_t)l->ow) rows = 2 * (size_t)l->ow;
                if (rows * l->oc > cs) cs = rows * l->oc;
                if (rows * K > ws) ws = rows * K;
                size_t e, pw = pnn__pairs_need(l, &e);
                if (pw > ws) ws = pw;
                if (e > pe) pe = e;
            }
            if (l->wn + l->bn > gp) gp = l->wn + l->bn;
        }
        prev = l->out;
    }
    m->ws_n = ws;
    m->ws = pnn__big_alloc(m, T * ws * sizeof(float));
    if (!m->ws) goto nomem;
    m->cs_n = cs;
    m->cs = pnn__big_alloc(m, T * cs * sizeof(float));
    if (!m->cs) goto nomem;
    m->pe_n = pe;
    m->pe = pe ? pnn__big_alloc(m, pe * sizeof(float)) : NULL;
    if (pe && !m->pe) goto nomem;
    m->cap = cap;
    m->buf_threads = m->threads;
    if (grad) {
        m->gpriv_n = gp;
        m->gpriv = pnn__big_alloc(m, (size_t)cap * gp * sizeof(float)); /* <= cap work units */
        m->ws2 = pnn__big_alloc(m, T * ws * sizeof(float));
        m->pde = pe ? pnn__big_alloc(m, T * pe * sizeof(float)) : NULL;
        if (pe && !m->pde) goto nomem;
        if (!m->gpriv) goto nomem;
        m->gbuf[0] = pnn__big_alloc(m, (size_t)cap * maxsz * sizeof(float));
        m->gbuf[1] = pnn__big_alloc(m, (size_t)cap * maxsz * sizeof(float));
        if (!m->ws2 || !m->gbuf[0] || !m->gbuf[1]) goto nomem;
        m->gcap = cap;
    }
    return PNN_OK;
nomem:
    pnn__big_free_all(m);
    return PNN_ERR_NOMEM;
}

static int ensure_train_state(pnn_model *m, int adam)
{
    size_t n = m->nparams ? m->nparams : 1;
    if (!m->g && !(m->g = calloc(n, sizeof(float)))) return PNN_ERR_NOMEM;
    if (!m->opt_m && !(m->opt_m = calloc(n, sizeof(float)))) return PNN_ERR_NOMEM;
    if (adam && !m->opt_v && !(m->opt_v = calloc(n, sizeof(float)))) return PNN_ERR_NOMEM;
    return PNN_OK;
}

void pnn__forward(pnn_model *m, int b, int train)
{
    const float *x = m->xin;
    int k = nfwd(m);
    for (int i = 0; i < k; i++) {
        nn_layer *l = &m->L[i];
        if (l->fuse_pool) {
            pnn__conv_pool_forward(m, l, &m->L[i + 1], b, x);
            x = m->L[++i].out;
            continue;
        }
        pnn__layer_forward(m, l, b, x, l->out, train);
        x = l->out;
    }
}

int pnn__loss(pnn_model *m, int b, const int32_t *y, double *loss, int *correct, int grad,
            float **gout)
{
    const float *z = logits_of(m);
    const int C = m->ncls;
    float *g = grad ? m->gbuf[0] : NULL;
    double sum = 0.0;
    int ok = 0;
    float inv_b = 1.0f / (float)b;
    for (int r = 0; r < b; r++) {
        const float *zr = z + (size_t)r * C;
        int lab = y[r];
        if (lab < 0 || lab >= C) return PNN_ERR_LABEL;
        float mx = zr[0];
        int am = 0;
        for (int c = 1; c < C; c++)
            if (zr[c] > mx) {
                mx = zr[c];
                am = c;
            }
        double s = 0.0;
        for (int c = 0; c < C; c++) s += exp((double)(zr[c] - mx));
        double lse = log(s);
        sum += lse - (double)(zr[lab] - mx);
        ok += am == lab;
        if (g) {
            float *gr = g + (size_t)r * C;
            float is = (float)(1.0 / s);
            for (int c = 0; c < C; c++) gr[c] = expf(zr[c] - mx) * is * inv_b;
            gr[lab] -= inv_b;
        }
    }
    if (loss) *loss = sum / b;
    if (correct) *correct = ok;
    if (gout) *gout = g;
    return PNN_OK;
}

void pnn__backward(pnn_model *m, int b, float *gy, float *dx)
{
    float *cur = gy;
    int k = gy == m->gbuf[1] ? 1 : 0;
    if (nfwd(m) == 0 && dx) memcpy(dx, gy, (size_t)b * pnn_input_size(m) * sizeof(float));
    for (int i = nfwd(m) - 1; i >= 0; i--) {
        nn_layer *l = &m->L[i];
        const float *x = i ? m->L[i - 1].out : m->xin;
        if (l->type == NN_FLATTEN) {
            if (i == 0 && dx) memcpy(dx, cur, (size_t)b * l->isz * sizeof(float));
            continue;
        }
        if (l->fused) { /* pool i and conv i-1 together */
            const float *cx = i > 1 ? m->L[i - 2].out : m->xin;
            float *d = i - 1 > 0 ? m->gbuf[1 - k] : dx;
            pnn__conv_pool_backward(m, &m->L[i - 1], l, b, cx, cur, d);
            if (--i > 0) {
                cur = d;
                k = 1 - k;
            }
            continue;
        }
        float *d = i > 0 ? m->gbuf[1 - k] : dx;
        pnn__layer_backward(m, l, b, x, l->out, cur, d);
        if (i > 0) {
            cur = d;
            k = 1 - k;
        }
    }
}

/* ---- optimizers ----------------------------------------------------------- */
/* One step over the weights, split across the model's threads; adds the FedProx
 * term and leaves the gradient zeroed for the next step. */
typedef struct opt_task {
    pnn_model *m;
    const pnn_fit_opts *o;
    const float *ref; /* FedProx reference or NULL */
    float lr_t;       /* Adam's bias-corrected rate */
} opt_task;

NN_CLONES static void opt_block(opt_task *t, size_t i0, size_t i1)
{
    pnn_model *m = t->m;
    const pnn_fit_opts *o = t->o;
    float *restrict w = m->w, *restrict g = m->g, *restrict v = m->opt_m;
    const float lr = o->learning_rate, mu = o->proximal_mu;
    if (t->ref)
        for (size_t i = i0; i < i1; i++) g[i] += mu * (w[i] - t->ref[i]);
    if (o->optimizer == PNN_OPT_SGD) {
        const float mom = o->momentum;
        if (mom == 0.0f) {
            for (size_t i = i0; i < i1; i++) w[i] -= lr * g[i];
        } else if (o->nesterov) {
            for (size_t i = i0; i < i1; i++) {
                v[i] = mom * v[i] - lr * g[i];
                w[i] += mom * v[i] - lr * g[i];
            }
        } else {
            for (size_t i = i0; i < i1; i++) {
                v[i] = mom * v[i] - lr * g[i];
                w[i] += v[i];
            }
        }
    } else { /* Keras Adam */
        const float c1 = 1.0f - o->beta1, c2 = 1.0f - o->beta2, eps = o->epsilon;
        const float lr_t = t->lr_t;
        float *restrict mm = m->opt_m, *restrict vv = m->opt_v;
        for (size_t i = i0; i < i1; i++) {
            float gi = g[i];
            mm[i] += (gi - mm[i]) * c1;
            vv[i] += (gi * gi - vv[i]) * c2;
            w[i] -= lr_t * mm[i] / (sqrtf(vv[i]) + eps);
        }
    }
}

/* In cache-sized blocks, clearing each block's gradient while it is hot. */
static void opt_range(opt_task *t, size_t i0, size_t i1)
{
    for (size_t j = i0; j < i1; j += 4096) {
        size_t e = j + 4096 < i1 ? j + 4096 : i1;
        opt_block(t, j, e);
        memset(t->m->g + j, 0, (e - j) * sizeof(float));
    }
}

static void opt_task_fn(void *arg, int tid, int nt)
{
    opt_task *t = arg;
    size_t n = t->m->nparams, per = (n / (size_t)nt + 15) / 16 * 16;
    size_t i0 = per * (size_t)tid, i1 = i0 + per < n ? i0 + per : n;
    if (tid == nt - 1) i1 = n;
    if (i0 < i1) opt_range(t, i0, i1);
}

static void opt_step(pnn_model *m, const pnn_fit_opts *o, const float *ref)
{
    opt_task t = {m, o, o->proximal_mu > 0.0f ? ref : NULL, 0.0f};
    if (o->optimizer == PNN_OPT_ADAM) {
        m->opt_t++;
        double b1 = o->beta1, b2 = o->beta2;
        t.lr_t = (float)(o->learning_rate * sqrt(1.0 - pow(b2, (double)m->opt_t)) /
                         (1.0 - pow(b1, (double)m->opt_t)));
    }
    if (m->nparams < ((size_t)1 << 16)) opt_task_fn(&t, 0, 1); /* not worth waking threads */
    else pnn__parallel(m, opt_task_fn, &t);
}

void pnn_fit_opts_init(pnn_fit_opts *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 1;
    o->batch_size = 32;
    o->shuffle = 1;
    o->optimizer = PNN_OPT_ADAM;
    o->learning_rate = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->epsilon = 1e-7f;
}

static int check_labels(const pnn_model *m, const int32_t *y, size_t n, char *err)
{
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= m->ncls)
            return pnn__seterr(err, PNN_ERR_LABEL, "label %zu is %d, outside [0, %d)", i,
                             (int)y[i], m->ncls);
    return PNN_OK;
}

static void gather(pnn_model *m, const float *x, const int32_t *y, const size_t *idx, size_t i0,
                   int b, int32_t *yb)
{
    size_t insz = pnn_input_size(m);
    for (int r = 0; r < b; r++) {
        size_t s = idx ? idx[i0 + r] : i0 + r;
        memcpy(m->xin + (size_t)r * insz, x + s * insz, insz * sizeof(float));
        if (yb) yb[r] = y[s];
    }
}

int pnn_fit(pnn_model *m, const float *x, const int32_t *y, size_t n, const pnn_fit_opts *o,
            pnn_epoch_stats *stats, char *err)
{
    if (!m || !x || !y || !o) return pnn__seterr(err, PNN_ERR_INVAL, "fit: NULL argument");
    if (n == 0) return pnn__seterr(err, PNN_ERR_INVAL, "fit: no samples");
    if (o->epochs < 1 || o->batch_size < 1 || o->batch_size > (1 << 20))
        return pnn__seterr(err, PNN_ERR_INVAL, "fit: epochs must be >= 1 and batch size in "
                                             "[1, 2^20] (got %d, %d)", o->epochs, o->batch_size);
    if (o->optimizer != PNN_OPT_SGD && o->optimizer != PNN_OPT_ADAM)
        return pnn__seterr(err, PNN_ERR_INVAL, "fit: unknown optimizer %d", (int)o->optimizer);
    if (!(o->learning_rate > 0.0f) || !isfinite(o->learning_rate) || !(o->momentum >= 0.0f) ||
        !(o->momentum < 1.0f) || !(o->proximal_mu >= 0.0f) || !isfinite(o->proximal_mu))
        return pnn__seterr(err, PNN_ERR_INVAL, "fit: learning rate must be > 0, momentum in "
                                             "[0, 1), proximal_mu >= 0");
    if (o->optimizer == PNN_OPT_ADAM &&
        (!(o->beta1 >= 0.0f && o->beta1 < 1.0f) || !(o->beta2 >= 0.0f && o->beta2 < 1.0f) ||
         !(o->epsilon > 0.0f)))
        return pnn__seterr(err, PNN_ERR_INVAL, "fit: Adam needs beta1, beta2 in [0, 1) and "
                                             "epsilon > 0");
    int rc = check_labels(m, y, n, err);
    if (rc) return rc;
    int B = (size_t)o->batch_size < n ? o->batch_size : (int)n;
    if ((rc = pnn__ensure_batch(m, B, 1)) || (rc = ensure_train_state(m, o->optimizer == PNN_OPT_ADAM)))
        return pnn__seterr(err, rc, "fit: out of memory for batch %d", B);
    if (o->reset_optimizer || m->opt_type != (int)o->optimizer) {
        memset(m->opt_m, 0, m->nparams * sizeof(float));
        if (m->opt_v) memset(m->opt_v, 0, m->nparams * sizeof(float));
        m->opt_t = 0;
        m->opt_type = (int)o->optimizer;
    }
    size_t *idx = malloc(n * sizeof *idx);
    int32_t *yb = malloc((size_t)B * sizeof *yb);
    float *ref_own = NULL;
    const float *ref = o->prox_ref;
    if (!idx || !yb) {
        rc = pnn__seterr(err, PNN_ERR_NOMEM, "fit: out of memory");
        goto out;
    }
    if (o->proximal_mu > 0.0f && !ref) {
        ref_own = malloc(m->nparams * sizeof(float) + 1);
        if (!ref_own) {
            rc = pnn__seterr(err, PNN_ERR_NOMEM, "fit: out of memory");
            goto out;
        }
        memcpy(ref_own, m->w, m->nparams * sizeof(float));
        ref = ref_own;
    }
    pnn__blas_threads(m->threads);
    memset(m->g, 0, m->nparams * sizeof(float));
    size_t batches = (n + B - 1) / B;
    for (int ep = 0; ep < o->epochs; ep++) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        if (o->shuffle) {
            uint64_t s = o->shuffle_seed * 0x9e3779b97f4a7c15ull + (uint64_t)ep + 1;
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = (size_t)(pnn__rng_next(&s) % (i + 1));
                size_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
        }
        double lsum = 0.0;
        size_t seen = 0, correct = 0;
        for (size_t bi = 0; bi < batches; bi++) {
            size_t i0 = bi * B;
            int b = (int)(n - i0 < (size_t)B ? n - i0 : (size_t)B);
            gather(m, x, y, idx, i0, b, yb);
            pnn__forward(m, b, 1);
            double l;
            int ok;
            float *gy;
            pnn__loss(m, b, yb, &l, &ok, 1, &gy);
            if (!isfinite(l)) {
                rc = pnn__seterr(err, PNN_ERR_NUMERIC, "fit: loss is not finite at epoch %d batch "
                                                     "%zu", ep + 1, bi);
                goto out;
            }
            pnn__backward(m, b, gy, NULL); /* m->g is zero here (opt_step clears it) */
            opt_step(m, o, ref);
            lsum += l * b;
            seen += (size_t)b;
            correct += (size_t)ok;
            if (o->progress) {
                pnn_progress p = {ep, o->epochs, bi + 1, batches, seen, n, lsum / seen,
                                  (double)correct / seen, 0};
                if (o->progress(&p, o->progress_user)) {
                    rc = pnn__seterr(err, PNN_ERR_CANCELLED, "fit: cancelled");
                    goto out;
                }
            }
        }
        if (stats) {
            stats[ep].loss = lsum / seen;
            stats[ep].accuracy = (double)correct / seen;
        }
        if (o->progress) {
            pnn_progress p = {ep, o->epochs, batches, batches, seen, n, lsum / seen,
                              (double)correct / seen, 1};
            if (o->progress(&p, o->progress_user)) {
                rc = pnn__seterr(err, PNN_ERR_CANCELLED, "fit: cancelled");
                goto out;
            }
        }
    }
    rc = PNN_OK;
out:
    free(idx);
    free(yb);
    free(ref_own);
    return rc;
}

static int infer_batch(pnn_model *m, int batch_size, size_t n)
{
    int b = batch_size > 0 ? batch_size : (m->cap ? m->cap : 32);
    if ((size_t)b > n) b = (int)n;
    return b;
}

int pnn_evaluate(pnn_model *m, const float *x, const int32_t *y, size_t n, int batch_size,
                 double *loss, double *accuracy, char *err)
{
    if (!m || !x || !y) return pnn__seterr(err, PNN_ERR_INVAL, "evaluate: NULL argument");
    if (n == 0) return pnn__seterr(err, PNN_ERR_INVAL, "evaluate: no samples");
    int rc = check_labels(m, y, n, err);
    if (rc) return rc;
    int B = infer_batch(m, batch_size, n);
    if ((rc = pnn__ensure_batch(m, B, 0)))
        return pnn__seterr(err, rc, "evaluate: out of memory for batch %d", B);
    pnn__blas_threads(m->threads);
    double lsum = 0.0;
    size_t correct = 0;
    for (size_t i0 = 0; i0 < n; i0 += (size_t)B) {
        int b = (int)(n - i0 < (size_t)B ? n - i0 : (size_t)B);
        gather(m, x, y, NULL, i0, b, NULL);
        pnn__forward(m, b, 0);
        double l;
        int ok;
        pnn__loss(m, b, y + i0, &l, &ok, 0, NULL);
        lsum += l * b;
        correct += (size_t)ok;
    }
    if (loss) *loss = lsum / n;
    if (accuracy) *accuracy = (double)correct / n;
    return PNN_OK;
}

int pnn_predict(pnn_model *m, const float *x, size_t n, int batch_size, float *out, char *err)
{
    if (!m || !x || !out) return pnn__seterr(err, PNN_ERR_INVAL, "predict: NULL argument");
    if (n == 0) return PNN_OK;
    int B = infer_batch(m, batch_size, n), rc;
    if ((rc = pnn__ensure_batch(m, B, 0)))
        return pnn__seterr(err, rc, "predict: out of memory for batch %d", B);
    pnn__blas_threads(m->threads);
    const int C = m->ncls;
    for (size_t i0 = 0; i0 < n; i0 += (size_t)B) {
        int b = (int)(n - i0 < (size_t)B ? n - i0 : (size_t)B);
        gather(m, x, NULL, NULL, i0, b, NULL);
        pnn__forward(m, b, 0);
        const float *z = logits_of(m);
        float *o = out + i0 * C;
        memcpy(o, z, (size_t)b * C * sizeof(float));
        if (!m->final_softmax) continue;
        for (int r = 0; r < b; r++) {
            float *p = o + (size_t)r * C, mx = p[0], s = 0.0f;
            for (int c = 1; c < C; c++) mx = p[c] > mx ? p[c] : mx;
            for (int c = 0; c < C; c++) {
                p[c] = expf(p[c] - mx);
                s += p[c];
            }
            for (int c = 0; c < C; c++) p[c] /= s;
        }
    }
    return PNN_OK;
}

int pnn_gradient(pnn_model *m, const float *x, const int32_t *y, size_t n, float mu,
                 const float *prox_ref, double *loss, float *dweights, float *dx, char *err)
{
    if (!m || !x || !y) return pnn__seterr(err, PNN_ERR_INVAL, "gradient: NULL argument");
    if (n == 0 || n > (1u << 20)) return pnn__seterr(err, PNN_ERR_INVAL, "gradient: bad n");
    int rc = check_labels(m, y, n, err);
    if (rc) return rc;
    if ((rc = pnn__ensure_batch(m, (int)n, 1)) || (rc = ensure_train_state(m, 0)))
        return pnn__seterr(err, rc, "gradient: out of memory");
    pnn__blas_threads(m->threads);
    int b = (int)n;
    gather(m, x, y, NULL, 0, b, NULL);
    pnn__forward(m, b, 0);
    double l;
    float *gy;
    pnn__loss(m, b, y, &l, NULL, 1, &gy);
    memset(m->g, 0, m->nparams * sizeof(float));
    pnn__backward(m, b, gy, dx);
    if (mu > 0.0f && prox_ref) {
        double p = 0.0;
        for (size_t i = 0; i < m->nparams; i++) {
            double d = (double)m->w[i] - prox_ref[i];
            p += d * d;
            m->g[i] += mu * (float)d;
        }
        l += 0.5 * mu * p;
    }
    if (loss) *loss = l;
    if (dweights) memcpy(dweights, m->g, m->nparams * sizeof(float));
    return PNN_OK;
}
