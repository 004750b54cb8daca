/*
 * robust.c - the strategies that need every update at once: FedMedian,
 * FedTrimmedAvg, Krum / MultiKrum and Bulyan (Flower 1.6's aggregate.py
 * semantics). They work on s->kept[0..nkept), float32 copies of the accepted
 * updates, and write the aggregate to `out` (s->total floats).
 */
#include "pst_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void sort_floats(float *a, size_t n)
{
    for (size_t i = 1; i < n; i++) { /* insertion sort: n is a client count */
        float x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > x) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* np.median of n sorted float32 values: the middle one, or the float32 mean
 * of the two middle ones (computed exactly in double, then rounded once,
 * which equals numpy's float32 (a+b)/2). */
static float median_sorted(const float *a, size_t n)
{
    if (n % 2) return a[n / 2];
    return (float)(((double)a[n / 2 - 1] + (double)a[n / 2]) * 0.5);
}

int pst__median(pst_strategy *s, float *out, char *err)
{
    size_t n = s->nkept;
    float *col = malloc(n * sizeof *col);
    if (!col) return pt_seterr(err, PT_ERR_NOMEM, "FedMedian: out of memory");
    for (size_t j = 0; j < s->total; j++) {
        for (size_t i = 0; i < n; i++) col[i] = s->kept[i][j];
        sort_floats(col, n);
        out[j] = median_sorted(col, n);
    }
    free(col);
    return PT_OK;
}

int pst__trimmed_mean(pst_strategy *s, float *out, char *err)
{
    size_t n = s->nkept;
    /* Flower/scipy: lowercut = int(beta * n), uppercut = n - lowercut;
     * lowercut > uppercut raises "Proportion too big."; lowercut ==
     * uppercut would average nothing (NaN in numpy): rejected as well. */
    size_t lo = (size_t)(s->o.trim_beta * (double)n), hi;
    float *col;
    if (lo >= n - lo || 2 * lo >= n)
        return pt_seterr(err, PT_ERR_INVAL,
                         "FedTrimmedAvg: beta=%g cuts %zu of %zu results from each end, "
                         "leaving none (Flower: \"Proportion too big.\")",
                         s->o.trim_beta, lo, n);
    hi = n - lo;
    col = malloc(n * sizeof *col);
    if (!col) return pt_seterr(err, PT_ERR_NOMEM, "FedTrimmedAvg: out of memory");
    for (size_t j = 0; j < s->total; j++) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) col[i] = s->kept[i][j];
        sort_floats(col, n);
        for (size_t i = lo; i < hi; i++) sum += col[i];
        out[j] = (float)(sum / (double)(hi - lo));
    }
    free(col);
    return PT_OK;
}

/* Squared L2 distances between all kept updates (n x n, row-major). */
static int distances(const pst_strategy *s, double **out)
{
    size_t n = s->nkept;
    double *d = calloc(n * n + 1, sizeof *d);
    if (!d) return PT_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            const float *a = s->kept[i], *b = s->kept[j];
            double s0 = 0, s1 = 0;
            size_t p = 0;
            for (; p + 2 <= s->total; p += 2) {
                double x = (double)a[p] - b[p], y = (double)a[p + 1] - b[p + 1];
                s0 += x * x;
                s1 += y * y;
            }
            for (; p < s->total; p++) {
                double x = (double)a[p] - b[p];
                s0 += x * x;
            }
            d[i * n + j] = d[j * n + i] = s0 + s1;
        }
    *out = d;
    return PT_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Krum scores over the subset idx[0..m): score_i = sum of the sorted
 * distances of row i (within the subset) at positions 1..c, c = max(1, m-f-2)
 * (position 0, normally the self-distance 0, skipped; numpy's slice stops
 * at the row's end). */
static void krum_scores(const double *d, size_t n, const size_t *idx, size_t m, int f,
                        double *row, double *score)
{
    long c = (long)m - f - 2;
    if (c < 1) c = 1;
    for (size_t a = 0; a < m; a++) {
        double sum = 0;
        for (size_t b = 0; b < m; b++) row[b] = d[idx[a] * n + idx[b]];
        qsort(row, m, sizeof *row, cmp_double);
        for (size_t p = 1; p <= (size_t)c && p < m; p++) sum += row[p];
        score[a] = sum;
    }
}

/* Position (in idx) of the lowest score, the first one on ties (np.argmin). */
static size_t argmin(const double *score, size_t m)
{
    size_t best = 0;
    for (size_t a = 1; a < m; a++)
        if (score[a] < score[best]) best = a;
    return best;
}

int pst__krum(pst_strategy *s, float *out, char *err)
{
    size_t n = s->nkept, keep;
    double *d = NULL, *row = NULL, *score = NULL;
    size_t *idx = NULL;
    int rc = PT_ERR_NOMEM;
    if (distances(s, &d)) goto fail;
    row = malloc(n * sizeof *row);
    score = malloc(n * sizeof *score);
    idx = calloc(n + 1, sizeof *idx);
    if (!row || !score || !idx) goto fail;
    for (size_t i = 0; i < n; i++) idx[i] = i;
    krum_scores(d, n, idx, n, s->o.num_malicious_clients, row, score);
    keep = s->o.num_clients_to_keep > 0 ? (size_t)s->o.num_clients_to_keep : 0;
    if (keep == 0) {
        memcpy(out, s->kept[argmin(score, n)], s->total * sizeof(float));
    } else {
        /* MultiKrum: weighted FedAvg of the `keep` lowest scores. Fewer
         * results than num_clients_to_keep: keep them all (Flower's slice
         * [len - keep:] would silently keep 2n - keep of them). */
        double tot = 0;
        if (keep > n) {
            PT_WARN("MultiKrum: %zu results, fewer than num_clients_to_keep=%zu: averaging all",
                    n, keep);
            keep = n;
        }
        /* selection by a stable sort of positions on score */
        for (size_t a = 1; a < n; a++) {
            size_t x = idx[a], b = a;
            while (b > 0 && score[idx[b - 1]] > score[x]) {
                idx[b] = idx[b - 1];
                b--;
            }
            idx[b] = x;
        }
        for (size_t a = 0; a < keep; a++) tot += (double)s->kept_n[idx[a]];
        if (!(tot > 0)) {
            rc = pt_seterr(err, PT_ERR_INVAL,
                           "MultiKrum: the selected results have 0 examples in total");
            goto fail_quiet;
        }
        for (size_t j = 0; j < s->total; j++) {
            double sum = 0;
            for (size_t a = 0; a < keep; a++)
                sum += (double)s->kept_n[idx[a]] * (double)s->kept[idx[a]][j];
            out[j] = (float)(sum / tot);
        }
    }
    rc = PT_OK;
    goto done;
fail:
    rc = pt_seterr(err, PT_ERR_NOMEM, "Krum: out of memory");
fail_quiet:
done:
    free(d);
    free(row);
    free(score);
    free(idx);
    return rc;
}

int pst__bulyan(pst_strategy *s, float *out, char *err)
{
    size_t n = s->nkept, f = (size_t)s->o.num_malicious_clients, theta, beta, m;
    double *d = NULL, *row = NULL, *score = NULL;
    size_t *rem = NULL, *sel = NULL;
    float *col = NULL;
    int rc;
    if (n < 4 * f + 3)
        return pt_seterr(err, PT_ERR_INVAL,
                         "Bulyan: %zu results but num_malicious_clients=%zu needs at least "
                         "4*f+3 = %zu",
                         n, f, 4 * f + 3);
    theta = n - 2 * f;
    beta = theta - 2 * f;
    if (distances(s, &d)) goto fail_nomem;
    row = malloc(n * sizeof *row);
    score = malloc(n * sizeof *score);
    rem = malloc(n * sizeof *rem);
    sel = malloc(n * sizeof *sel);
    col = malloc(n * sizeof *col);
    if (!row || !score || !rem || !sel || !col) goto fail_nomem;
    for (size_t i = 0; i < n; i++) rem[i] = i;
    m = n;
    /* theta rounds of Krum on the remaining set, moving the winner to sel */
    for (size_t r = 0; r < theta; r++) {
        size_t b;
        krum_scores(d, n, rem, m, (int)f, row, score);
        b = argmin(score, m);
        sel[r] = rem[b];
        memmove(rem + b, rem + b + 1, (m - b - 1) * sizeof *rem);
        m--;
    }
    /* per coordinate: median of the selection, then the mean of the beta
     * values closest to it (a contiguous window of the sorted values; on
     * equal distances the lower value is taken first) */
    for (size_t j = 0; j < s->total; j++) {
        float med;
        size_t lo, hi;
        double sum = 0;
        for (size_t a = 0; a < theta; a++) col[a] = s->kept[sel[a]][j];
        sort_floats(col, theta);
        med = median_sorted(col, theta);
        /* window [lo, hi): grow from the median outwards */
        lo = hi = theta / 2;
        while (hi - lo < beta) {
            if (lo == 0) hi++;
            else if (hi == theta) lo--;
            else {
                float dl = fabsf(col[lo - 1] - med), dh = fabsf(col[hi] - med);
                if (dl <= dh) lo--;
                else hi++;
            }
        }
        for (size_t a = lo; a < hi; a++) sum += col[a];
        out[j] = (float)(sum / (double)beta);
    }
    rc = PT_OK;
    goto done;
fail_nomem:
    rc = pt_seterr(err, PT_ERR_NOMEM, "Bulyan: out of memory");
done:
    free(d);
    free(row);
    free(score);
    free(rem);
    free(sel);
    free(col);
    return rc;
}
