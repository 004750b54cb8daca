/*
 * test_net_cost.c - what hostile input costs the decoder, as growth (issue 11
 * item 7): ratios measured in one run, never timings against a constant.
 *
 * A FitRes of N empty tensor entries ("0a 00", 2 wire bytes each):
 *  - with the server's cap (pnet_decode_limits.max_tensors = the model's
 *    tensor count) it is refused (PT_ERR_MISMATCH, naming both counts)
 *    before anything is allocated: heap bytes held do not grow with N, and
 *    the time for 2N is under 3x the time for N (one counting pass);
 *  - without a cap the tensor array is sized once from the count: heap bytes
 *    per wire byte stay under 16 (16-byte views, power-of-two rounding) and
 *    2N holds about twice what N holds (its time is mostly the kernel's first
 *    touch of the fresh pages: printed, not asserted).
 * And the server's index (net/srv_map.c, client ids and peer addresses):
 * agrees with a reference under random inserts and deletes, and N vs 2N
 * structured keys (IPv6 /64 prefixes, sequential ids) cost under 3x.
 */
#include <malloc.h>
#include <stdint.h>
#include <time.h>

#include "test.h"

#include "pnet.h"
#include "srv_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define COST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COST_ASAN 1
#endif
#endif
#ifdef COST_ASAN
/* the sanitizer runtime's (sanitizer/allocator_interface.h, not installed with gcc) */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* ClientMessage { fit_res (4) { parameters (2) { tensors (1): n x "" } num_examples 10 } } */
static uint8_t *empty_tensors_fitres(size_t n, size_t *len)
{
    size_t params = 2 * n, fit = 1 + 10 + params + 2, total = 1 + 10 + fit;
    uint8_t *b = malloc(total), *p = b;
    if (!b) return NULL;
    *p++ = 0x22; /* field 4, LEN */
    p += put_varint(p, 1 + (uint64_t)(put_varint((uint8_t[10]){0}, params)) + params + 2);
    *p++ = 0x12; /* parameters */
    p += put_varint(p, params);
    for (size_t i = 0; i < n; i++) *p++ = 0x0a, *p++ = 0x00;
    *p++ = 0x18, *p++ = 10; /* num_examples */
    *len = (size_t)(p - b);
    return b;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Heap bytes held by the decoded message (0 if refused) and the best time of 5. */
static int decode_cost(const uint8_t *b, size_t len, const pnet_decode_limits *o, size_t *held,
                       double *secs, size_t *ntensors, char *err)
{
    int rc = 0;
    *secs = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        pnet_client_in in;
        size_t before = heap_in_use();
        double t0 = now_s();
        rc = pnet_client_in_decode(b, len, o, &in, err);
        double t = now_s() - t0;
        size_t after = heap_in_use();
        *held = after > before ? after - before : 0;
        *ntensors = in.params.n;
        pnet_client_in_free(&in);
        if (t < *secs) *secs = t;
    }
    return rc;
}

static void t_empty_tensor_entries_capped(void)
{
    const size_t n = (size_t)1 << 20;
    size_t l1, l2, h1, h2, k;
    double s1, s2;
    char err[PT_ERRLEN];
    uint8_t *b1 = empty_tensors_fitres(n, &l1), *b2 = empty_tensors_fitres(2 * n, &l2);
    ASSERT(b1 && b2);
    pnet_decode_limits o = {.max_tensors = 4};
    ASSERT_EQ_INT(decode_cost(b1, l1, &o, &h1, &s1, &k, err), PT_ERR_MISMATCH);
    ASSERT_MSG(strstr(err, "1048576 tensors, more than the 4 expected"), "%s", err);
    ASSERT_EQ_INT(decode_cost(b2, l2, &o, &h2, &s2, &k, err), PT_ERR_MISMATCH);
    printf("  capped: N=%zu refused in %.2f ms (%zu heap bytes), 2N in %.2f ms (%zu): "
           "time ratio %.2f\n", n, s1 * 1e3, h1, s2 * 1e3, h2, s2 / s1);
    ASSERT_MSG(h1 < 4096 && h2 < 4096, "refused messages held %zu and %zu heap bytes", h1, h2);
    ASSERT_MSG(s2 < 3 * s1, "decode time 2N/N = %.2f (>= 3: not linear)", s2 / s1);
    /* exactly the expected count still decodes */
    size_t l4;
    uint8_t *b4 = empty_tensors_fitres(4, &l4);
    ASSERT_OK(decode_cost(b4, l4, &o, &h1, &s1, &k, err));
    ASSERT_EQ_INT(k, 4);
    free(b1);
    free(b2);
    free(b4);
}

static void t_empty_tensor_entries_uncapped(void)
{
    const size_t n = (size_t)1 << 20;
    size_t l1, l2, h1, h2, k1, k2;
    double s1, s2;
    char err[PT_ERRLEN];
    uint8_t *b1 = empty_tensors_fitres(n, &l1), *b2 = empty_tensors_fitres(2 * n, &l2);
    ASSERT(b1 && b2);
    ASSERT_OK(decode_cost(b1, l1, NULL, &h1, &s1, &k1, err));
    ASSERT_OK(decode_cost(b2, l2, NULL, &h2, &s2, &k2, err));
    ASSERT_EQ_INT(k1, n);
    ASSERT_EQ_INT(k2, 2 * n);
    printf("  uncapped: N=%zu holds %.2f heap bytes per wire byte, 2N %.2f; held 2N/N %.2f, "
           "time 2N/N %.2f\n", n, (double)h1 / l1, (double)h2 / l2, (double)h2 / h1, s2 / s1);
    ASSERT_MSG((double)h1 / l1 <= 16.5 && (double)h2 / l2 <= 16.5,
               "%.2f / %.2f heap bytes per wire byte", (double)h1 / l1, (double)h2 / l2);
    ASSERT_MSG((double)h2 / h1 < 2.5, "held 2N/N = %.2f", (double)h2 / h1);
    /* (its time is first-touch of fresh pages, reported, not asserted) */
    free(b1);
    free(b2);
}

static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}

static void t_u64map_matches_reference(void)
{
    enum { K = 4096 };
    static uintptr_t ref[K];
    static uint8_t in[K];
    u64map m = {0};
    uint64_t x = 88172645463325252ull;
    memset(in, 0, sizeof in);
    for (int i = 0; i < 400000; i++) {
        uint64_t r = rng_next(&x), k = r % K;
        uint64_t key = k * 0x9e3779b97f4a7c15ull; /* spread, but a fixed set */
        if (r >> 62) {
            ASSERT_OK(u64map_put(&m, key, (uintptr_t)(r >> 20)));
            ref[k] = (uintptr_t)(r >> 20);
            in[k] = 1;
        } else {
            u64map_del(&m, key);
            in[k] = 0;
        }
        if (i % 1000 == 0) {
            size_t n = 0;
            for (int j = 0; j < K; j++) {
                int found;
                uintptr_t v = u64map_get(&m, j * 0x9e3779b97f4a7c15ull, &found);
                ASSERT_EQ_INT(found, in[j]);
                if (found) ASSERT_EQ_INT(v, ref[j]);
                n += in[j];
            }
            ASSERT_EQ_INT(m.n, n);
        }
    }
    u64map_free(&m);
}

/* Time of 20 x n lookups and n deletes in a map holding n keys (the map is
 * built first, untimed: first-touch of fresh pages is not the map's cost;
 * n small enough that both sizes stay in the cache). */
static double map_cost(size_t n, int prefixes)
{
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        u64map m = {0};
        for (size_t i = 0; i < n; i++) {
            uint64_t key = prefixes ? (uint64_t)i << 32 | 0x20010db8u : i + 1;
            if (u64map_put(&m, key, i)) return -1;
        }
        double t0 = now_s();
        for (int pass = 0; pass < 20; pass++)
            for (size_t i = 0; i < n; i++) {
                uint64_t key = prefixes ? (uint64_t)i << 32 | 0x20010db8u : i + 1;
                if (u64map_get(&m, key, NULL) != i) return -1;
            }
        for (size_t i = 0; i < n; i++)
            u64map_del(&m, prefixes ? (uint64_t)i << 32 | 0x20010db8u : i + 1);
        double t = now_s() - t0;
        if (m.n) return -1;
        u64map_free(&m);
        if (t < best) best = t;
    }
    return best;
}

static void t_u64map_growth(void)
{
    const size_t n = 4000;
    for (int prefixes = 0; prefixes < 2; prefixes++) {
        double a = map_cost(n, prefixes), b = map_cost(2 * n, prefixes);
        ASSERT_MSG(a > 0 && b > 0, "map lost a key");
        printf("  u64map %s: N=%zu %.2f ms, 2N %.2f ms: ratio %.2f\n",
               prefixes ? "IPv6 /64 keys" : "sequential ids", n, a * 1e3, b * 1e3, b / a);
        ASSERT_MSG(b < 3 * a, "2N/N = %.2f", b / a);
    }
}

TEST_MAIN(TEST(t_empty_tensor_entries_capped), TEST(t_empty_tensor_entries_uncapped),
          TEST(t_u64map_matches_reference), TEST(t_u64map_growth))
