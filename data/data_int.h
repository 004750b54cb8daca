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

/* Copy class names (n entries) into d->class_names. */
int pd_set_class_names(pd_dataset *d, const char *const *names, int n, char *err);

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

/* Keep a seeded random subset of `keep` rows of d (in original order),
 * shrinking d in place (no reallocation). keep >= d->n is a no-op. */
void pd_keep_random(pd_dataset *d, size_t keep, uint64_t seed);

#endif /* PETAL_DATA_INT_H */
