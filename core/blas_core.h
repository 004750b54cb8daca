/*
 * blas_core.h - pick OpenBLAS kernels the CPU can run when OpenBLAS itself
 * does not recognise the CPU. Used by the programs (petal, the nn benchmark
 * and accuracy check); never by the libraries.
 *
 * OpenBLAS picks its kernels when it is loaded, before main(). On CPUs it does
 * not recognise (common on VMs that hide the CPU model) the Debian build falls
 * back to generic "Prescott" SSE3 kernels, several times slower than its AVX2
 * ("Haswell") or AVX-512 ("SkylakeX") ones. When the user has not chosen a
 * core type (OPENBLAS_CORETYPE unset) the program re-executes itself once with
 * the best core type the CPU supports. An explicit OPENBLAS_CORETYPE (even
 * empty) is always left alone, and PETAL_NO_BLAS_REEXEC=1 turns this off.
 */
#ifndef PETAL_BLAS_CORE_H
#define PETAL_BLAS_CORE_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

/* The best core type of the Debian build this CPU runs: "SkylakeX" with
 * AVX-512 (F, VL, BW, DQ), "Haswell" with AVX2 and FMA, else NULL. */
static inline const char *pt_blas_best_core(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

/* The core type to force, or NULL (OpenBLAS's own choice is fine, or the CPU
 * has nothing better). */
static inline const char *pt_blas_better_core(void)
{
    const char *core = openblas_get_corename();
    if (!core || (strcmp(core, "Prescott") && strcmp(core, "Core2") && strcmp(core, "Penryn")))
        return NULL;
    return pt_blas_best_core();
}

/* Re-executes the program (argv as given to main) with a better core type
 * when there is one; returns when there is none or the exec failed. */
static inline void pt_blas_fix_core(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("PETAL_NO_BLAS_REEXEC")) return;
    const char *better = pt_blas_better_core();
    if (!better || setenv("OPENBLAS_CORETYPE", better, 1) != 0) return;
    setenv("PETAL_NO_BLAS_REEXEC", "1", 1); /* never loop */
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the generic kernels */
}

#endif /* PETAL_BLAS_CORE_H */
