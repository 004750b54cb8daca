/* data_int.h - internals shared by data/ source files (not installed). */
#ifndef PETAL_DATA_INT_H
#define PETAL_DATA_INT_H

#include <stddef.h>
#include <stdint.h>

#include "pdata.h"

/* Largest dataset we accept: guards against absurd header fields. */
#define PD_MAX_FLOATS ((size_t)1 << 33) /* 32 GiB of floats */

/* byte -> [0,1] float lookup (b / 255.0f), filled on first use. */
const float *pd_u8_lut(void);

/* Allocate a dataset's pixel and label buffers (x uninitialised). */
int pd_dataset_alloc(pd_dataset *d, size_t n, int h, int w, int c, char *err);


/* Bilinear resizing in pieces (pd_resize_bilinear is built from them): the
 * source positions and weight of output index o, and one output row from
 * the two source rows r0 (lo) and r1 (hi). */
void pd_lerp_weight(int o, int out, int in, int *lo, int *hi, float *t);
void pd_resize_row(const float *r0, const float *r1, float ty, int sw, float *out, int dw, int c);

/* Basename of a path, for messages. */
const char *pd_basename(const char *path);

/* ---- random numbers -------------------------------------------------------- */

/* xoshiro256** seeded through splitmix64: the generator for partitions and
 * subsets. */
typedef struct pd_rng {
    uint64_t s[4];
} pd_rng;
void pd_rng_seed(pd_rng *r, uint64_t seed);
uint64_t pd_rng_next(pd_rng *r);
/* Uniform in [0, n) without modulo bias (n > 0). */
uint64_t pd_rng_below(pd_rng *r, uint64_t n);
/* Uniform double in [0, 1). */
double pd_rng_uniform(pd_rng *r);
/* Standard normal. */
double pd_rng_normal(pd_rng *r);
/* Gamma(shape, 1), shape > 0 (Marsaglia-Tsang). */
double pd_rng_gamma(pd_rng *r, double shape);
/* Fisher-Yates shuffle of n size_t values. */
void pd_rng_shuffle(pd_rng *r, size_t *v, size_t n);

/* MT19937 exactly as numpy's legacy RandomState(seed) with an integer seed,
 * and its shuffle(); used to reproduce Keras' file-list shuffle. */
typedef struct pd_mt {
    uint32_t mt[624];
    int i;
} pd_mt;
void pd_mt_seed(pd_mt *m, uint32_t seed);
uint32_t pd_mt_next(pd_mt *m);
/* numpy.random.RandomState.shuffle on a 1-D sequence of n items. */
void pd_mt_shuffle(pd_mt *m, size_t *v, size_t n);

/* Partition n labels (in [0, nclasses)) into num_parts: owner[i] = part of
 * example i. Schemes and errors as pd_partition. */
int pd_partition_labels(const int32_t *y, size_t n, int nclasses, const char *scheme,
                        int num_parts, uint64_t seed, int *owner, char *err);

/* A seeded uniform sample of `keep` of the rows 0..n-1 (all when keep >= n),
 * in ascending order: *rows is malloc'd (free()), *nrows its length.
 * Returns PT_OK or PT_ERR_NOMEM. */
int pd_random_rows(size_t n, size_t keep, uint64_t seed, size_t **rows, size_t *nrows);

/* The rows of one split that pd_open keeps, from the split's labels y[0..n)
 * alone (so that only they are decoded): `limit` (test: `test_limit`) as a
 * seeded random subset in original order, then the training partition
 * (o->partition) or the test share (o->test_share). *rows is malloc'd, in
 * ascending order. Returns PT_OK, PT_ERR_INVAL, PT_ERR_RANGE or
 * PT_ERR_NOMEM. */
int pd_select_rows(const int32_t *y, size_t n, int nclasses, const pd_open_opts *o, int test,
                   size_t **rows, size_t *nrows, char *err);

/* Target shape for fixed-size formats: o's h, w, c (0 = native). Refuses a
 * target larger than the native size: upsampling a whole split up front
 * costs memory for nothing (what names the dataset, n its examples). */
int pd_target_shape(const pd_open_opts *o, int nh, int nw, int nc, size_t n, const char *what,
                    int *th, int *tw, int *tc, char *err);

/* Fixed-size formats through pd_open's options (NULL = every row, native
 * shape): only the rows pd_select_rows keeps are read and converted. */
int pd_idx_dir_open(pd_dataset *train, pd_dataset *test, const char *dir, int nclasses,
                    const char *const *names, const pd_open_opts *o, char *err);
int pd_fashion_mnist_open(pd_dataset *train, pd_dataset *test, const char *dir,
                          const pd_open_opts *o, char *err);
int pd_cifar10_open(pd_dataset *train, pd_dataset *test, const char *dir, const pd_open_opts *o,
                    char *err);

#endif /* PETAL_DATA_INT_H */
