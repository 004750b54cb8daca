/* rng.c - seeded generators: xoshiro256** for partitions, MT19937 (numpy
 * RandomState) to reproduce Keras' file shuffle. */
#include "data_int.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pd_rng_seed(pd_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t pd_rng_next(pd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t pd_rng_below(pd_rng *r, uint64_t n)
{
    uint64_t lim = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t v;
    do v = pd_rng_next(r);
    while (v >= lim);
    return v % n;
}

double pd_rng_uniform(pd_rng *r) { return (double)(pd_rng_next(r) >> 11) * 0x1.0p-53; }

double pd_rng_normal(pd_rng *r)
{
    /* Box-Muller; u1 in (0,1] so the log is finite. */
    double u1 = 1.0 - pd_rng_uniform(r), u2 = pd_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double pd_rng_gamma(pd_rng *r, double shape)
{
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a+1) * U^(1/a); done in log space for tiny a */
        double g = pd_rng_gamma(r, shape + 1.0);
        double u = 1.0 - pd_rng_uniform(r);
        return g * exp(log(u) / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = pd_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = 1.0 - pd_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

void pd_rng_shuffle(pd_rng *r, size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)pd_rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- MT19937 as numpy's legacy RandomState --------------------------------- */

void pd_mt_seed(pd_mt *m, uint32_t seed)
{
    m->mt[0] = seed;
    for (int i = 1; i < 624; i++)
        m->mt[i] = 1812433253U * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

uint32_t pd_mt_next(pd_mt *m)
{
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->mt[k] & 0x80000000U) | (m->mt[(k + 1) % 624] & 0x7fffffffU);
            m->mt[k] = m->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1U) ? 0x9908b0dfU : 0U);
        }
        m->i = 0;
    }
    uint32_t y = m->mt[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
}

/* numpy's random_interval(max): masked rejection sampling in [0, max]. */
static uint64_t mt_interval(pd_mt *m, uint64_t max)
{
    if (max == 0) return 0;
    uint64_t mask = max, v;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    if (max <= 0xffffffffULL) {
        while ((v = (pd_mt_next(m) & mask)) > max) {}
    } else {
        for (;;) { /* numpy's next_uint64: two draws, high word first */
            uint64_t hi = pd_mt_next(m), lo = pd_mt_next(m);
            if ((v = ((hi << 32) | lo) & mask) <= max) break;
        }
    }
    return v;
}

void pd_mt_shuffle(pd_mt *m, size_t *v, size_t n)
{
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)mt_interval(m, i);
        size_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}
