/* partition.c - splitting a training set across federated clients: iid,
 * dirichlet:ALPHA (label skew) and shards:K (pathological non-IID). */
#include "data_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { P_IID, P_DIRICHLET, P_SHARDS } pkind;

typedef struct pscheme {
    pkind kind;
    double alpha;
    long k;
} pscheme;

static int parse_scheme(const char *s, pscheme *p, char *err)
{
    memset(p, 0, sizeof *p);
    if (!s || !*s) return pt_seterr(err, PT_ERR_INVAL, "empty partition scheme (use iid, "
                                                      "dirichlet:ALPHA or shards:K)");
    if (!strcmp(s, "iid")) {
        p->kind = P_IID;
        return PT_OK;
    }
    if (!strncmp(s, "dirichlet:", 10)) {
        char *end;
        errno = 0;
        p->kind = P_DIRICHLET;
        p->alpha = strtod(s + 10, &end);
        if (end == s + 10 || *end || errno || !isfinite(p->alpha) || !(p->alpha > 0.0) ||
            p->alpha > 1e6)
            return pt_seterr(err, PT_ERR_INVAL,
                             "partition %s: ALPHA must be a number > 0 (e.g. dirichlet:0.5)", s);
        return PT_OK;
    }
    if (!strncmp(s, "shards:", 7)) {
        char *end;
        errno = 0;
        p->kind = P_SHARDS;
        p->k = strtol(s + 7, &end, 10);
        if (end == s + 7 || *end || errno || p->k < 1 || p->k > 1000000)
            return pt_seterr(err, PT_ERR_INVAL,
                             "partition %s: K must be an integer >= 1 (e.g. shards:2)", s);
        return PT_OK;
    }
    if (!strcmp(s, "dirichlet") || !strcmp(s, "shards"))
        return pt_seterr(err, PT_ERR_INVAL, "partition %s needs a parameter (%s)", s,
                         s[0] == 'd' ? "dirichlet:ALPHA" : "shards:K");
    return pt_seterr(err, PT_ERR_INVAL,
                     "unknown partition scheme '%s' (use iid, dirichlet:ALPHA or shards:K)", s);
}

int pd_partition_check(const char *scheme, char *err)
{
    pscheme p;
    return parse_scheme(scheme, &p, err);
}

static void part_iid(size_t n, int parts, pd_rng *r, size_t *perm, int *owner)
{
    for (size_t i = 0; i < n; i++) perm[i] = i;
    pd_rng_shuffle(r, perm, n);
    /* np.array_split: the first n % parts shards get one extra */
    size_t base = n / (size_t)parts, extra = n % (size_t)parts, k = 0;
    for (int p = 0; p < parts; p++) {
        size_t sz = base + ((size_t)p < extra ? 1 : 0);
        for (size_t j = 0; j < sz; j++) owner[perm[k++]] = p;
    }
}

/* Examples grouped by label (stable): order[] holds indices, start[c] the
 * first position of class c (start has nclasses+1 entries). */
static void group_by_label(const int32_t *y, size_t n, int nclasses, size_t *order,
                           size_t *start)
{
    memset(start, 0, ((size_t)nclasses + 1) * sizeof *start);
    for (size_t i = 0; i < n; i++) start[y[i] + 1]++;
    for (int c = 0; c < nclasses; c++) start[c + 1] += start[c];
    size_t *pos = start + nclasses + 1; /* scratch: nclasses entries after start */
    memcpy(pos, start, (size_t)nclasses * sizeof *pos);
    for (size_t i = 0; i < n; i++) order[pos[y[i]]++] = i;
}

static int part_dirichlet(const int32_t *y, size_t n, int nclasses, int parts, double alpha,
                          pd_rng *r, size_t *order, int *owner, char *err)
{
    size_t *start = malloc((2 * (size_t)nclasses + 1) * sizeof *start);
    size_t *sizes = calloc((size_t)parts, sizeof *sizes);
    double *prop = malloc((size_t)parts * sizeof *prop);
    if (!start || !sizes || !prop) {
        free(start);
        free(sizes);
        free(prop);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
    }
    group_by_label(y, n, nclasses, order, start);
    int empty = 0;
    for (int attempt = 0; attempt < 20; attempt++) {
        memset(sizes, 0, (size_t)parts * sizeof *sizes);
        for (int c = 0; c < nclasses; c++) {
            size_t a = start[c], nc = start[c + 1] - start[c];
            if (!nc) continue;
            pd_rng_shuffle(r, order + a, nc);
            double sum = 0;
            for (int p = 0; p < parts; p++) sum += prop[p] = pd_rng_gamma(r, alpha);
            if (!(sum > 0.0) || !isfinite(sum)) { /* all underflowed: one client takes it */
                for (int p = 0; p < parts; p++) prop[p] = 0;
                prop[pd_rng_below(r, (uint64_t)parts)] = sum = 1.0;
            }
            /* cut points at floor(cumsum(p) * nc), as np.split in the usual recipe */
            double cum = 0;
            size_t prev = 0;
            for (int p = 0; p < parts; p++) {
                cum += prop[p] / sum;
                size_t cut = p == parts - 1 ? nc : (size_t)(cum * (double)nc);
                if (cut > nc) cut = nc;
                if (cut < prev) cut = prev;
                for (size_t j = prev; j < cut; j++) owner[order[a + j]] = p;
                sizes[p] += cut - prev;
                prev = cut;
            }
        }
        empty = 0;
        for (int p = 0; p < parts; p++) empty += sizes[p] == 0;
        if (!empty) break;
    }
    /* still empty clients (tiny alpha, many clients): give each one example
     * from the currently largest client (its highest index) */
    for (int p = 0; empty && p < parts; p++) {
        if (sizes[p]) continue;
        int big = 0;
        for (int q = 1; q < parts; q++)
            if (sizes[q] > sizes[big]) big = q;
        for (size_t i = n; i-- > 0;)
            if (owner[i] == big) {
                owner[i] = p;
                break;
            }
        sizes[big]--;
        sizes[p] = 1;
        empty--;
    }
    free(start);
    free(sizes);
    free(prop);
    return PT_OK;
}

static int part_shards(const int32_t *y, size_t n, int nclasses, int parts, long k, pd_rng *r,
                       size_t *order, int *owner, char *err)
{
    size_t nshards = (size_t)parts * (size_t)k;
    size_t *start = malloc((2 * (size_t)nclasses + 1) * sizeof *start);
    size_t *sh = malloc(nshards * sizeof *sh);
    if (!start || !sh) {
        free(start);
        free(sh);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
    }
    group_by_label(y, n, nclasses, order, start); /* sorted by label, then index */
    for (size_t s = 0; s < nshards; s++) sh[s] = s;
    pd_rng_shuffle(r, sh, nshards);
    for (size_t q = 0; q < nshards; q++) {
        size_t s = sh[q];
        int p = (int)(q / (size_t)k);
        size_t a = s * n / nshards, b = (s + 1) * n / nshards; /* balanced cut */
        for (size_t j = a; j < b; j++) owner[order[j]] = p;
    }
    free(start);
    free(sh);
    return PT_OK;
}

int pd_partition_labels(const int32_t *y, size_t n, int nclasses, const char *scheme,
                        int num_parts, uint64_t seed, int *owner, char *err)
{
    pscheme ps;
    int rc;
    if ((rc = parse_scheme(scheme, &ps, err))) return rc;
    if (num_parts < 1)
        return pt_seterr(err, PT_ERR_INVAL, "partition %s: number of parts %d must be >= 1",
                         scheme, num_parts);
    if (n < (size_t)num_parts)
        return pt_seterr(err, PT_ERR_RANGE,
                         "partition %s: %d clients but only %zu training examples", scheme,
                         num_parts, n);
    if (ps.kind == P_SHARDS && (size_t)ps.k * (size_t)num_parts > n)
        return pt_seterr(err, PT_ERR_RANGE,
                         "partition %s: %d clients x %ld shards = %zu shards but only %zu "
                         "training examples",
                         scheme, num_parts, ps.k, (size_t)ps.k * (size_t)num_parts, n);
    int mx = -1;
    for (size_t i = 0; i < n; i++) {
        if (y[i] < 0 || (nclasses > 0 && y[i] >= nclasses))
            return pt_seterr(err, PT_ERR_INVAL, "partition: label %d of example %zu is out of "
                                                "range (%d classes)",
                             (int)y[i], i, nclasses);
        if (y[i] > mx) mx = y[i];
    }
    if (nclasses <= 0) nclasses = mx + 1;
    size_t *order = malloc(n * sizeof *order);
    if (!order) return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
    pd_rng r;
    pd_rng_seed(&r, seed);
    rc = PT_OK;
    switch (ps.kind) {
    case P_IID: part_iid(n, num_parts, &r, order, owner); break;
    case P_DIRICHLET:
        rc = part_dirichlet(y, n, nclasses, num_parts, ps.alpha, &r, order, owner, err);
        break;
    case P_SHARDS: rc = part_shards(y, n, nclasses, num_parts, ps.k, &r, order, owner, err); break;
    }
    free(order);
    return rc;
}

int pd_partition_all(const pd_dataset *d, const char *scheme, int num_parts, uint64_t seed,
                     int *owner, char *err)
{
    if (!d || !owner) return pt_seterr(err, PT_ERR_INVAL, "pd_partition_all: NULL argument");
    return pd_partition_labels(d->y, d->n, d->nclasses, scheme, num_parts, seed, owner, err);
}

int pd_partition(const pd_dataset *d, const char *scheme, int num_parts, int part,
                 uint64_t seed, size_t **idx, size_t *count, char *err)
{
    if (!d || !idx || !count) return pt_seterr(err, PT_ERR_INVAL, "pd_partition: NULL argument");
    *idx = NULL;
    *count = 0;
    pscheme ps;
    int rc;
    if ((rc = parse_scheme(scheme, &ps, err))) return rc;
    if (num_parts >= 1 && (part < 0 || part >= num_parts))
        return pt_seterr(err, PT_ERR_INVAL, "partition %s: part %d out of range (0..%d)", scheme,
                         part, num_parts - 1);
    int *owner = malloc((d->n ? d->n : 1) * sizeof *owner);
    if (!owner) return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
    if ((rc = pd_partition_labels(d->y, d->n, d->nclasses, scheme, num_parts, seed, owner, err))) {
        free(owner);
        return rc;
    }
    size_t m = 0;
    for (size_t i = 0; i < d->n; i++) m += owner[i] == part;
    size_t *v = m ? malloc(m * sizeof *v) : NULL;
    if (m && !v) {
        free(owner);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
    }
    m = 0;
    for (size_t i = 0; i < d->n; i++)
        if (owner[i] == part) v[m++] = i;
    free(owner);
    *idx = v;
    *count = m;
    return PT_OK;
}
