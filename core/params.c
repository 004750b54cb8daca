/* params.c - ordered float32 tensor lists in one contiguous buffer. */
#include "petal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int pt_params_init(pt_params *p, size_t n, const int *ndims, const int64_t *const *shapes)
{
    size_t total = 0, off = 0;
    memset(p, 0, sizeof *p);
    if (n && (!ndims || !shapes)) return PT_ERR_INVAL;
    for (size_t i = 0; i < n; i++) {
        size_t numel = 1;
        if (ndims[i] < 0 || ndims[i] > PT_MAX_DIMS) return PT_ERR_INVAL;
        for (int d = 0; d < ndims[i]; d++) {
            if (shapes[i][d] < 0) return PT_ERR_INVAL;
            if (shapes[i][d] && numel > SIZE_MAX / 8 / (size_t)shapes[i][d]) return PT_ERR_RANGE;
            numel *= (size_t)shapes[i][d];
        }
        if (total > SIZE_MAX / 8 - numel) return PT_ERR_RANGE;
        total += numel;
    }
    p->t = calloc(n ? n : 1, sizeof *p->t);
    p->buf = calloc(total ? total : 1, sizeof(float));
    if (!p->t || !p->buf) {
        free(p->t);
        free(p->buf);
        memset(p, 0, sizeof *p);
        return PT_ERR_NOMEM;
    }
    p->n = n;
    p->total = total;
    for (size_t i = 0; i < n; i++) {
        pt_tensor *t = &p->t[i];
        t->ndim = ndims[i];
        t->numel = 1;
        for (int d = 0; d < ndims[i]; d++) {
            t->shape[d] = shapes[i][d];
            t->numel *= (size_t)shapes[i][d];
        }
        t->data = p->buf + off;
        off += t->numel;
    }
    return PT_OK;
}

int pt_params_init_like(pt_params *p, const pt_params *src)
{
    int nd[64] = {0}, *ndims = nd, rc;
    const int64_t *sh[64] = {0};
    const int64_t **shapes = sh;
    if (src->n > 64) {
        ndims = malloc(src->n * sizeof *ndims);
        shapes = malloc(src->n * sizeof *shapes);
        if (!ndims || !shapes) {
            free(ndims);
            free(shapes);
            return PT_ERR_NOMEM;
        }
    }
    for (size_t i = 0; i < src->n; i++) {
        ndims[i] = src->t[i].ndim;
        shapes[i] = src->t[i].shape;
    }
    rc = pt_params_init(p, src->n, ndims, (const int64_t *const *)shapes);
    if (ndims != nd) {
        free(ndims);
        free(shapes);
    }
    return rc;
}

int pt_params_copy(pt_params *dst, const pt_params *src)
{
    int rc = pt_params_init_like(dst, src);
    if (rc) return rc;
    if (src->total) memcpy(dst->buf, src->buf, src->total * sizeof(float));
    return PT_OK;
}

int pt_params_same_shape(const pt_params *a, const pt_params *b)
{
    if (a->n != b->n || a->total != b->total) return 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->t[i].ndim != b->t[i].ndim) return 0;
        for (int d = 0; d < a->t[i].ndim; d++)
            if (a->t[i].shape[d] != b->t[i].shape[d]) return 0;
    }
    return 1;
}

int pt_params_assign(pt_params *dst, const pt_params *src)
{
    if (!pt_params_same_shape(dst, src)) return PT_ERR_MISMATCH;
    if (src->total) memcpy(dst->buf, src->buf, src->total * sizeof(float));
    return PT_OK;
}

int pt_params_all_finite(const pt_params *p)
{
    for (size_t i = 0; i < p->total; i++)
        if (!isfinite(p->buf[i])) return 0;
    return 1;
}

void pt_params_free(pt_params *p)
{
    if (!p) return;
    free(p->t);
    free(p->buf);
    memset(p, 0, sizeof *p);
}
