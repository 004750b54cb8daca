/*
 * test.h - minimal test harness for Petal's C tests (in the style of libuv's
 * test/task.h). Each test binary defines test functions and runs them with
 * TEST_MAIN(). Every test case prints "PASS: name" or "FAIL: name"; the
 * runner (tests/run.sh) adds them up.
 *
 *   static void t_adds(void) { ASSERT_EQ_INT(1 + 1, 2); }
 *   TEST_MAIN(TEST(t_adds))
 *
 * Assertions print both values and return from the test function on
 * failure (the rest of the binary still runs).
 */
#ifndef PETAL_TEST_H
#define PETAL_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_;
static int test_pass_count_, test_fail_count_;

#define TEST_FAIL_(...)                                                                    \
    do {                                                                                   \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                  \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fprintf(stderr, "\n");                                                             \
        test_failed_ = 1;                                                                  \
        return;                                                                            \
    } while (0)

#define ASSERT(c)                                                                          \
    do {                                                                                   \
        if (!(c)) TEST_FAIL_("assertion failed: %s", #c);                                  \
    } while (0)
#define ASSERT_MSG(c, ...)                                                                 \
    do {                                                                                   \
        if (!(c)) TEST_FAIL_(__VA_ARGS__);                                                 \
    } while (0)
#define ASSERT_EQ_INT(a, b)                                                                \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_) TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                \
    } while (0)
#define ASSERT_NE_INT(a, b)                                                                \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ == b_) TEST_FAIL_("%s != %s: both %lld", #a, #b, a_);                      \
    } while (0)
#define ASSERT_OK(e)                                                                       \
    do {                                                                                   \
        long long r_ = (long long)(e);                                                     \
        if (r_ != 0) TEST_FAIL_("%s returned %lld, expected 0", #e, r_);                   \
    } while (0)
#define ASSERT_STR_EQ(a, b)                                                                \
    do {                                                                                   \
        const char *a_ = (a), *b_ = (b);                                                   \
        if (!a_ || !b_ || strcmp(a_, b_))                                                  \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",           \
                       b_ ? b_ : "(null)");                                                \
    } while (0)
#define ASSERT_CONTAINS(hay, needle)                                                       \
    do {                                                                                   \
        const char *h_ = (hay), *n_ = (needle);                                            \
        if (!h_ || !strstr(h_, n_))                                                        \
            TEST_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);          \
    } while (0)
/* |a-b| <= tol */
#define ASSERT_NEAR(a, b, tol)                                                             \
    do {                                                                                   \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                     \
        if (!(fabs(a_ - b_) <= t_))                                                        \
            TEST_FAIL_("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, t_);             \
    } while (0)
/* relative: |a-b| <= tol * max(|a|,|b|,1e-12) */
#define ASSERT_REL(a, b, tol)                                                              \
    do {                                                                                   \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                     \
        double m_ = fmax(fmax(fabs(a_), fabs(b_)), 1e-12);                                 \
        if (!(fabs(a_ - b_) <= t_ * m_))                                                   \
            TEST_FAIL_("%s ~= %s: %.9g vs %.9g (rel tol %g)", #a, #b, a_, b_, t_);         \
    } while (0)

/* Growth of a cost, measured in one run (never a time limit): the least
 * thread CPU time over `reps` calls of fn(ctx, n). Compare sizes n and 2n
 * with test_growth(): ~2 for linear cost, ~4 for quadratic. */
#include <malloc.h>
#include <time.h>
typedef void (*test_cost_fn)(void *ctx, size_t n);
static inline double test_min_cpu(test_cost_fn fn, void *ctx, size_t n, int reps)
{
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        fn(ctx, n);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        double t = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        if (t < best) best = t;
    }
    return best;
}
/* cost(2n) / cost(n): the least of 2 x 4 runs of each size (n four times,
 * 2n four times, twice over, so both sizes meet the load of a shared machine
 * and each run finds the heap its size left: the allocator keeps its memory,
 * no first-touch page faults in the figures); printed for the record. */
static inline double test_growth(const char *what, test_cost_fn fn, void *ctx, size_t n)
{
    double t1 = 1e300, t2 = 1e300;
#ifdef M_TRIM_THRESHOLD
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
#endif
    fn(ctx, 2 * n); /* warm up: the heap grows once, lazy init */
    for (int pass = 0; pass < 2; pass++) {
        double a = test_min_cpu(fn, ctx, n, 4), b = test_min_cpu(fn, ctx, 2 * n, 4);
        if (a < t1) t1 = a;
        if (b < t2) t2 = b;
    }
    printf("  growth %s: %zu -> %zu: %.2f ms -> %.2f ms, x%.2f\n", what, n, 2 * n, t1 * 1e3,
           t2 * 1e3, t2 / (t1 > 1e-9 ? t1 : 1e-9));
    return t2 / (t1 > 1e-9 ? t1 : 1e-9);
}

typedef struct test_case_ {
    const char *name;
    void (*fn)(void);
} test_case_;

#define TEST(fn) {#fn, fn}

static inline int test_run_all_(const char *prog, const test_case_ *cases, int n, int argc,
                                char **argv)
{
    for (int i = 0; i < n; i++) {
        if (argc > 1) { /* run only the named tests */
            int want = 0;
            for (int j = 1; j < argc; j++)
                if (strstr(cases[i].name, argv[j])) want = 1;
            if (!want) continue;
        }
        test_failed_ = 0;
        cases[i].fn();
        if (test_failed_) test_fail_count_++;
        else test_pass_count_++;
        printf("%s: %s/%s\n", test_failed_ ? "FAIL" : "PASS", prog, cases[i].name);
        fflush(stdout);
    }
    return test_fail_count_ ? 1 : 0;
}

#define TEST_MAIN(...)                                                                     \
    int main(int argc, char **argv)                                                        \
    {                                                                                      \
        static const test_case_ cases_[] = {__VA_ARGS__};                                  \
        const char *p_ = strrchr(argv[0], '/');                                            \
        return test_run_all_(p_ ? p_ + 1 : argv[0], cases_,                                \
                             (int)(sizeof cases_ / sizeof cases_[0]), argc, argv);         \
    }

#endif /* PETAL_TEST_H */
