/*
 * test_strat_driver.c - runs a strategy over rounds described in a binary
 * file, for tests/test_strat_numpy.py (which compares the results with a
 * numpy reimplementation of Flower 1.6's formulas).
 *
 *   test_strat_driver NAME IN OUT [option=value ...]
 *
 * IN (little-endian): int32 ntensors; per tensor int32 ndim, int64 dims[ndim];
 * float32 init[total]; int32 npad, npad bytes; int32 rounds; per round: int32 nclients, int32
 * nfailures, float64 central_loss (QFedAvg; < 0: not set), then per client
 * int64 num_examples and float32 update[total].
 * OUT: per round int32 rc, int32 updated, float32 global[total].
 * Client updates are handed over as views into the input buffer (unaligned
 * on purpose); odd rounds use pst_fit_add_many, even rounds pst_fit_add.
 */
#include "petal.h"
#include "pst.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        b = malloc((size_t)n + 1);
        if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
            free(b);
            b = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return b;
}

typedef struct rd {
    const unsigned char *p, *end;
    int bad;
} rd;

static const void *take(rd *r, size_t n)
{
    const void *q = r->p;
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    r->p += n;
    return q;
}
#define GET(r, T)                                                                          \
    ({                                                                                     \
        T v_ = 0;                                                                          \
        const void *q_ = take(r, sizeof(T));                                               \
        if (q_) memcpy(&v_, q_, sizeof(T));                                                \
        v_;                                                                                \
    })

int main(int argc, char **argv)
{
    size_t len;
    unsigned char *in;
    rd r;
    pst_options o;
    pst_strategy *s = NULL;
    pt_params g = {0};
    char err[PT_ERRLEN];
    FILE *out;
    int nt, rounds;
    if (argc < 4) {
        fprintf(stderr, "usage: %s NAME IN OUT [option=value ...]\n", argv[0]);
        return 2;
    }
    pst_options_init(&o);
    for (int i = 4; i < argc; i++) {
        char key[64], *eq = strchr(argv[i], '=');
        if (!eq || (size_t)(eq - argv[i]) >= sizeof key) return 2;
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = 0;
        if (pst_option_set(&o, key, eq + 1, err)) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
    }
    if (pst_create(&s, argv[1], &o, err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    in = slurp(argv[2], &len);
    if (!in) return 2;
    r = (rd){in, in + len, 0};
    nt = GET(&r, int32_t);
    if (nt <= 0 || nt > 64) return 2;
    {
        int nd[64];
        int64_t sh[64][PT_MAX_DIMS];
        const int64_t *shp[64];
        for (int t = 0; t < nt; t++) {
            nd[t] = GET(&r, int32_t);
            if (nd[t] < 0 || nd[t] > PT_MAX_DIMS) return 2;
            for (int d = 0; d < nd[t]; d++) sh[t][d] = GET(&r, int64_t);
            shp[t] = sh[t];
        }
        if (r.bad || pt_params_init(&g, (size_t)nt, nd, shp)) return 2;
    }
    {
        const void *init = take(&r, g.total * 4);
        int32_t pad;
        if (!init) return 2;
        memcpy(g.buf, init, g.total * 4);
        pad = GET(&r, int32_t); /* pad bytes: misalign the updates on purpose */
        if (pad < 0 || pad > 7 || !take(&r, (size_t)pad)) return 2;
    }
    if (pst_initialize(s, &g, err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    rounds = GET(&r, int32_t);
    out = fopen(argv[3], "wb");
    if (!out || r.bad) return 2;
    for (int rd_ = 1; rd_ <= rounds; rd_++) {
        int nc = GET(&r, int32_t), nf = GET(&r, int32_t), rc, upd = 0;
        double loss = GET(&r, double);
        pt_params *u = calloc((size_t)nc + 1, sizeof *u);
        const pt_params **up = calloc((size_t)nc + 1, sizeof *up);
        int64_t *ne = calloc((size_t)nc + 1, sizeof *ne);
        if (!u || !up || !ne || r.bad) return 2;
        rc = pst_fit_begin(s, rd_, &g, err);
        for (int k = 0; k < nc && !rc; k++) {
            const unsigned char *base;
            ne[k] = GET(&r, int64_t);
            base = take(&r, g.total * 4);
            if (r.bad) return 2;
            u[k].n = g.n;
            u[k].t = malloc(g.n * sizeof *u[k].t);
            for (size_t t = 0; t < g.n; t++) {
                u[k].t[t] = g.t[t];
                u[k].t[t].data = (float *)(void *)(base + 4 * (size_t)(g.t[t].data - g.buf));
            }
            up[k] = &u[k];
            if (rd_ % 2 == 0) {
                int e = pst_fit_add(s, &u[k], ne[k], NULL, err);
                if (e) fprintf(stderr, "round %d client %d: %s\n", rd_, k, err);
            }
        }
        if (!rc && rd_ % 2 == 1 && nc) {
            int e = pst_fit_add_many(s, (size_t)nc, up, ne, NULL, NULL, err);
            if (e) fprintf(stderr, "round %d: %s\n", rd_, err);
        }
        for (int f = 0; f < nf; f++) pst_fit_failure(s);
        if (loss >= 0) pst_set_central_loss(s, loss);
        if (!rc) rc = pst_fit_end(s, &g, &upd, NULL, err);
        if (rc) fprintf(stderr, "round %d: %s\n", rd_, err);
        fwrite(&rc, 4, 1, out);
        fwrite(&upd, 4, 1, out);
        fwrite(g.buf, 4, g.total, out);
        for (int k = 0; k < nc; k++) free(u[k].t);
        free(u);
        free(up);
        free(ne);
    }
    fclose(out);
    pst_free(s);
    pt_params_free(&g);
    free(in);
    return 0;
}
