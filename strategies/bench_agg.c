/*
 * bench_agg.c - `make bench-agg`: FedAvg aggregation throughput and memory.
 *
 * 1. A STREAM-like triad a[i] = b[i] + s*c[i] on double arrays (1 and 2
 *    threads; STREAM's convention: 24 bytes counted per iteration).
 * 2. FedAvg over 10 client updates of seed-cnn size (7,397,802 floats) through
 *    the public API (pst_fit_begin / pst_fit_add or pst_fit_add_many /
 *    pst_fit_end), 1 and 2 fold threads: GB/s of update bytes folded
 *    (10 x 29.6 MB / time of the adds).
 * 3. numpy on the same data (written to a temp file, run via /usr/bin/python3
 *    strategies/bench_agg_numpy.py): Flower 1.6's aggregate() and tensordot.
 * 4. Server RSS while streaming 100 client updates (a fresh process: global
 *    model + one incoming update buffer + the strategy), vs 4 x model size.
 *
 * usage: bench_agg [--numpy SCRIPT] [--python PATH] [--reps N]
 *        bench_agg --rss-child STRATEGY   (internal)
 */
#include "petal.h"
#include "pst.h"

#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define NCLIENTS 10
#define TOTAL 7397802u

/* A seed-cnn-sized layout: conv kernels/biases, a big dense kernel, and a
 * last tensor that brings the total to exactly 7,397,802 floats. */
static void make_layout(pt_params *p)
{
    static const int64_t sh[][4] = {{3, 3, 3, 32}, {32},  {3, 3, 32, 64}, {64},
                                    {14399, 512},  {512}, {512, 10},      {10}};
    static const int nd[] = {4, 1, 4, 1, 2, 1, 2, 1, 1};
    int64_t last[1];
    const int64_t *shp[9];
    size_t sum = 0;
    for (int i = 0; i < 8; i++) {
        size_t n = 1;
        for (int d = 0; d < nd[i]; d++) n *= (size_t)sh[i][d];
        sum += n;
        shp[i] = sh[i];
    }
    last[0] = (int64_t)(TOTAL - sum);
    shp[8] = last;
    memset(p, 0, sizeof *p);
    if (pt_params_init(p, 9, nd, shp)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

static void fill(float *x, size_t n, uint32_t k)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(((uint32_t)i * 2654435761u ^ (k * 40503u)) & 0xffffu) * (1.0f / 65536) -
               0.5f;
}

/* ---- triad ---------------------------------------------------------------- */

typedef struct triad_job {
    double *a, *b, *c;
    size_t lo, hi;
} triad_job;

static void *triad_worker(void *arg)
{
    triad_job *j = arg;
    double *restrict a = j->a;
    const double *restrict b = j->b, *restrict c = j->c;
    for (size_t i = j->lo; i < j->hi; i++) a[i] = b[i] + 3.0 * c[i];
    return NULL;
}

static void *init_worker(void *arg)
{
    triad_job *j = arg;
    for (size_t i = j->lo; i < j->hi; i++) {
        j->a[i] = 0;
        j->b[i] = 1.0;
        j->c[i] = 2.0;
    }
    return NULL;
}

static void run_threads(void *(*fn)(void *), triad_job *jobs, int nth)
{
    pthread_t tid[8];
    for (int t = 1; t < nth; t++) pthread_create(&tid[t], NULL, fn, &jobs[t]);
    fn(&jobs[0]);
    for (int t = 1; t < nth; t++) pthread_join(tid[t], NULL);
}

static double triad(double *a, double *b, double *c, size_t n, int nth, int reps)
{
    triad_job jobs[8];
    double best = 1e30;
    for (int t = 0; t < nth; t++)
        jobs[t] = (triad_job){a, b, c, n * (size_t)t / (size_t)nth,
                              n * (size_t)(t + 1) / (size_t)nth};
    for (int r = 0; r < reps; r++) {
        double t0 = pt_now();
        run_threads(triad_worker, jobs, nth);
        double dt = pt_now() - t0;
        if (dt < best) best = dt;
    }
    return 24.0 * (double)n / best / 1e9;
}

/* ---- fold ------------------------------------------------------------------ */

/* One fold configuration of the benchmark. */
typedef struct fold_cfg {
    const char *label;
    int threads, batch; /* batch 1: pst_fit_add per update; NCLIENTS: pst_fit_add_many */
    const char *acc;
    pst_strategy *s;
    double best, tri; /* best fold time; best triad GB/s measured between its reps */
    float check;
} fold_cfg;

/* Time the adds of one round (the global is restored from g0 first). */
static double fold_once(fold_cfg *c, pt_params *g, const float *g0, pt_params *u, int round)
{
    char err[PT_ERRLEN];
    const pt_params *up[NCLIENTS];
    int64_t ne[NCLIENTS];
    double t0, dt;
    int upd;
    for (int k = 0; k < NCLIENTS; k++) {
        up[k] = &u[k];
        ne[k] = 100 + k;
    }
    memcpy(g->buf, g0, g->total * sizeof(float));
    if (pst_fit_begin(c->s, round, g, err)) goto fail;
    t0 = pt_now();
    if (c->batch > 1) {
        if (pst_fit_add_many(c->s, NCLIENTS, up, ne, NULL, NULL, err)) goto fail;
    } else {
        for (int k = 0; k < NCLIENTS; k++)
            if (pst_fit_add(c->s, up[k], ne[k], NULL, err)) goto fail;
    }
    dt = pt_now() - t0;
    if (pst_fit_end(c->s, g, &upd, NULL, err) || !upd) goto fail;
    c->check = g->buf[g->total / 2];
    return dt;
fail:
    fprintf(stderr, "fold: %s\n", err);
    exit(1);
}

/* ---- RSS child -------------------------------------------------------------- */

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) v = strtol(line + kl, NULL, 10);
    fclose(f);
    return v;
}

static int rss_child(const char *name, const char *acc)
{
    pt_params g, u;
    pst_options o;
    pst_strategy *s = NULL;
    char err[PT_ERRLEN];
    int upd;
    long base;
    double model_mb = TOTAL * 4.0 / 1e6;
    make_layout(&g);
    make_layout(&u);
    fill(g.buf, g.total, 12345);
    fill(u.buf, u.total, 0);
    base = status_kb("VmRSS:");
    pst_options_init(&o);
    if (pst_option_set(&o, "accumulator", acc, err) || pst_create(&s, name, &o, err) ||
        pst_fit_begin(s, 1, &g, err))
        goto fail;
    for (int k = 0; k < 100; k++) {
        fill(u.buf, u.total, (uint32_t)k + 1); /* the next client's update "arrives" */
        if (pst_fit_add(s, &u, 50 + k, NULL, err)) goto fail;
    }
    if (pst_fit_end(s, &g, &upd, NULL, err) || !upd) goto fail;
    {
        long hwm = status_kb("VmHWM:");
        printf("    %-7s %-11s peak RSS %6.1f MB = %.2f x model (%.1f MB); before the "
               "strategy (global + update + binary) %.1f MB, strategy adds %.1f MB "
               "(%.2f x model)\n",
               name, acc, hwm / 1e3 * 1.024, hwm * 1024.0 / (TOTAL * 4.0), model_mb,
               base / 1e3 * 1.024, (hwm - base) / 1e3 * 1.024,
               (hwm - base) * 1024.0 / (TOTAL * 4.0));
    }
    pst_free(s);
    pt_params_free(&g);
    pt_params_free(&u);
    return 0;
fail:
    fprintf(stderr, "rss child: %s\n", err);
    return 1;
}

/* ---- precision (make check-agg-precision) ----------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) from (stream, index) */
static double unif(uint64_t stream, uint64_t i)
{
    uint64_t z = mix64(stream * 0x100000001b3ull ^ mix64(i)) >> 11;
    return (double)z * (2.0 / 9007199254740992.0) - 1.0;
}

/* client c's update: x = float(g + d), d ~ U(-2e-3, 2e-3) */
static void client_update(float *x, const float *g, size_t n, int c)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)g[i] + 2e-3 * unif(1000 + (uint64_t)c, i));
}

typedef struct perr {
    double max_ulp, sum_ulp, max_abs, max_rel; /* sum_ulp: % not correctly rounded */
} perr;

/* Error of out vs ref (double): max abs (also in ulps of a typical weight,
 * ulp(0.05) = 2^-28), the share of floats that differ from the correctly
 * rounded float32 of ref, max rel where |ref| >= 0.01 (near 0 the result is
 * a cancellation and relative errors say nothing). */
static void err_stats(const float *out, const double *ref, size_t n, perr *e)
{
    size_t wrong = 0;
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)out[i] - ref[i]);
        wrong += out[i] != (float)ref[i];
        if (d > e->max_abs) e->max_abs = d;
        if (fabs(ref[i]) >= 0.01 && d / fabs(ref[i]) > e->max_rel) e->max_rel = d / fabs(ref[i]);
    }
    e->max_ulp = e->max_abs / ldexp(1.0, -28);
    e->sum_ulp = 100.0 * (double)wrong / (double)n;
}

static pst_strategy *mk_fedavg(const char *acc)
{
    pst_options o;
    pst_strategy *s = NULL;
    char err[PT_ERRLEN];
    pst_options_init(&o);
    if (pst_option_set(&o, "accumulator", acc, err) || pst_create(&s, "FedAvg", &o, err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return s;
}

/* FedAvg of K seed-cnn-sized updates with realistic magnitudes (weights
 * ~U(-0.1, 0.1), deltas ~U(-2e-3, 2e-3), num_examples 50..5000): the
 * float-delta and double accumulators and Flower's float32 numpy arithmetic
 * (layer * n, reduce(np.add), / total, all float32), each against a float64
 * reference; and float-delta in reverse arrival order against forward. */
static int precision(void)
{
    static const int ks[] = {2, 10, 100};
    pt_params g, u, gf, gd, gr, g48;
    double *ref = malloc(TOTAL * sizeof *ref);
    float *fl = malloc(TOTAL * sizeof *fl);
    char err[PT_ERRLEN];
    make_layout(&g);
    make_layout(&u);
    make_layout(&gf);
    make_layout(&gd);
    make_layout(&gr);
    make_layout(&g48);
    if (!ref || !fl) return 1;
    for (size_t i = 0; i < TOTAL; i++) g.buf[i] = (float)(0.1 * unif(7, i));
    printf("check-agg-precision: FedAvg of %u floats, weights ~U(-0.1,0.1), client deltas "
           "~U(-2e-3,2e-3), num_examples 50..5000; vs a float64 reference:\n"
           "  clients   accumulator      max abs error (in ulp(0.05) = 2^-28)  "
           "not correctly rounded  max rel (|w| >= 0.01)\n",
           TOTAL);
    for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++) {
        int K = ks[q], upd;
        int64_t ne[100];
        double N = 0;
        perr ef, ed, efl, eo, e48;
        pst_strategy *sf = mk_fedavg("float-delta"), *sd = mk_fedavg("double"),
                     *sr = mk_fedavg("float-delta"), *s48 = mk_fedavg("double48");
        memcpy(gf.buf, g.buf, TOTAL * sizeof(float));
        memcpy(gd.buf, g.buf, TOTAL * sizeof(float));
        memcpy(gr.buf, g.buf, TOTAL * sizeof(float));
        memcpy(g48.buf, g.buf, TOTAL * sizeof(float));
        if (pst_fit_begin(s48, 1, &g48, err) || pst_fit_begin(sf, 1, &gf, err) ||
            pst_fit_begin(sd, 1, &gd, err) ||
            pst_fit_begin(sr, 1, &gr, err))
            goto fail;
        for (int c = 0; c < K; c++) {
            ne[c] = 50 + (int64_t)(mix64(99 + (uint64_t)c) % 4951);
            N += (double)ne[c];
        }
        for (int c = 0; c < K; c++) {
            float n32 = (float)ne[c];
            client_update(u.buf, g.buf, TOTAL, c);
            if (pst_fit_add(sf, &u, ne[c], NULL, err) || pst_fit_add(sd, &u, ne[c], NULL, err) ||
                pst_fit_add(s48, &u, ne[c], NULL, err))
                goto fail;
            for (size_t i = 0; i < TOTAL; i++) {
                float p = u.buf[i] * n32; /* numpy float32: layer * n */
                ref[i] = c ? ref[i] + (double)ne[c] * u.buf[i] : (double)ne[c] * u.buf[i];
                fl[i] = c ? fl[i] + p : p; /* reduce(np.add) in float32 */
            }
        }
        for (int c = K - 1; c >= 0; c--) {
            client_update(u.buf, g.buf, TOTAL, c);
            if (pst_fit_add(sr, &u, ne[c], NULL, err)) goto fail;
        }
        if (pst_fit_end(sf, &gf, &upd, NULL, err) || !upd ||
            pst_fit_end(sd, &gd, &upd, NULL, err) ||
            !upd || pst_fit_end(sr, &gr, &upd, NULL, err) || !upd ||
            pst_fit_end(s48, &g48, &upd, NULL, err) || !upd)
            goto fail;
        for (size_t i = 0; i < TOTAL; i++) {
            ref[i] /= N;
            fl[i] = fl[i] / (float)N; /* / total, float32 */
        }
        err_stats(gf.buf, ref, TOTAL, &ef);
        err_stats(gd.buf, ref, TOTAL, &ed);
        err_stats(g48.buf, ref, TOTAL, &e48);
        err_stats(fl, ref, TOTAL, &efl);
        {
            size_t ndiff = 0;
            for (size_t i = 0; i < TOTAL; i++) {
                ndiff += gr.buf[i] != gf.buf[i];
                ref[i] = gf.buf[i];
            }
            err_stats(gr.buf, ref, TOTAL, &eo);
            printf("  %3d clients   double48         %.2g (%.2f ulp)  %6.3f%%   %.2g\n"
                   "                float-delta      %.2g (%.2f ulp)  %6.3f%%   %.2g\n"
                   "                double           %.2g (%.2f ulp)  %6.3f%%   %.2g\n"
                   "                Flower float32   %.2g (%.2f ulp)  %6.3f%%   %.2g\n"
                   "                float-delta, reverse arrival order vs forward: %.3f%% of "
                   "floats differ, by at most %.2g (%.2f ulp)\n",
                   K, e48.max_abs, e48.max_ulp, e48.sum_ulp, e48.max_rel, ef.max_abs,
                   ef.max_ulp, ef.sum_ulp, ef.max_rel, ed.max_abs, ed.max_ulp,
                   ed.sum_ulp, ed.max_rel, efl.max_abs, efl.max_ulp, efl.sum_ulp, efl.max_rel,
                   100.0 * (double)ndiff / TOTAL, eo.max_abs, eo.max_ulp);
            fflush(stdout);
        }
        pst_free(sf);
        pst_free(sd);
        pst_free(sr);
        pst_free(s48);
    }
    free(ref);
    free(fl);
    pt_params_free(&g);
    pt_params_free(&u);
    pt_params_free(&gf);
    pt_params_free(&gd);
    pt_params_free(&gr);
    pt_params_free(&g48);
    return 0;
fail:
    fprintf(stderr, "precision: %s\n", err);
    return 1;
}

static int spawn_wait(char *const argv[])
{
    pid_t pid;
    int st;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ)) return -1;
    if (waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv)
{
    const char *script = NULL, *python = "/usr/bin/python3";
    int reps = 7;
    pt_params g, u[NCLIENTS];
    float *g0;
    double tri[3] = {0, 0, 0}, np_flower = 0, np_dot = 0, np_avg = 0, l1 = -1, l2 = -1;
    size_t tn = (size_t)1 << 25; /* 3 x 256 MB triad arrays: beyond the caches */
    double *a, *b, *c;
    char path[] = "/tmp/petal_bench_agg_XXXXXX";
    double upd_bytes = (double)NCLIENTS * TOTAL * 4.0;
    fold_cfg cf[] = {
        {"single pst_fit_add, double48 (default), 1 thread ", 1, 1, "double48", 0, 0, 0, 0},
        {"single pst_fit_add, double48 (default), 2 threads", 2, 1, "double48", 0, 0, 0, 0},
        {"batched add_many(10), double48 (default), 1 thread ", 1, NCLIENTS, "double48", 0, 0, 0,
         0},
        {"batched add_many(10), double48 (default), 2 threads", 2, NCLIENTS, "double48", 0, 0, 0,
         0},
        {"single pst_fit_add, float-delta, 2 threads", 2, 1, "float-delta", 0, 0, 0, 0},
        {"batched add_many(10), float-delta, 2 threads", 2, NCLIENTS, "float-delta", 0, 0, 0, 0},
        {"single pst_fit_add, double, 2 threads", 2, 1, "double", 0, 0, 0, 0},
        {"batched add_many(10), double, 2 threads", 2, NCLIENTS, "double", 0, 0, 0, 0},
    };
    enum { NCF = sizeof cf / sizeof cf[0] };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rss-child") && i + 2 < argc)
            return rss_child(argv[i + 1], argv[i + 2]);
        if (!strcmp(argv[i], "--precision")) return precision();
        if (!strcmp(argv[i], "--numpy") && i + 1 < argc) script = argv[++i];
        else if (!strcmp(argv[i], "--python") && i + 1 < argc) python = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--numpy SCRIPT] [--python PATH] [--reps N] | --precision\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    {
        FILE *la = fopen("/proc/loadavg", "r");
        if (la) {
            if (fscanf(la, "%lf", &l1) != 1) l1 = -1;
            fclose(la);
        }
        printf("bench-agg: FedAvg of %d client updates of %u floats (%.1f MB each), "
               "%ld CPUs, load average %.2f at start (other work skews every figure)\n",
               NCLIENTS, TOTAL, TOTAL * 4.0 / 1e6, sysconf(_SC_NPROCESSORS_ONLN), l1);
    }

    a = malloc(tn * sizeof *a);
    b = malloc(tn * sizeof *b);
    c = malloc(tn * sizeof *c);
    g0 = malloc(TOTAL * sizeof *g0);
    if (!a || !b || !c || !g0) return 1;
    {
        triad_job jobs[2] = {{a, b, c, 0, tn / 2}, {a, b, c, tn / 2, tn}};
        run_threads(init_worker, jobs, 2);
    }
    make_layout(&g);
    fill(g0, TOTAL, 12345);
    for (int k = 0; k < NCLIENTS; k++) {
        make_layout(&u[k]);
        fill(u[k].buf, u[k].total, (uint32_t)k);
    }
    for (int i = 0; i < NCF; i++) {
        pst_options o;
        char err[PT_ERRLEN];
        pst_options_init(&o);
        o.threads = cf[i].threads;
        if (pst_option_set(&o, "accumulator", cf[i].acc, err) ||
            pst_create(&cf[i].s, "FedAvg", &o, err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        cf[i].best = 1e30;
    }
    /* interleaved: every rep runs each fold right after a triad with the same
     * thread count, so both see the same machine state; best of reps each */
    for (int r = 0; r < reps + 1; r++)
        for (int i = 0; i < NCF; i++) {
            double t = triad(a, b, c, tn, cf[i].threads, 1), dt;
            dt = fold_once(&cf[i], &g, g0, u, r + 1);
            if (r == 0) continue; /* warm-up: first touch of the accumulators */
            if (t > cf[i].tri) cf[i].tri = t;
            if (t > tri[cf[i].threads]) tri[cf[i].threads] = t;
            if (dt < cf[i].best) cf[i].best = dt;
        }
    free(a);
    free(b);
    free(c);
    for (int i = 1; i < NCF; i++)
        if (fabs(cf[i].check - cf[0].check) > 1e-6)
            printf("  WARNING: fold variants disagree (%g vs %g)\n", cf[i].check, cf[0].check);

    /* numpy on the same data */
    if (script) {
        int fd = mkstemp(path);
        FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
        char cmd[1024], line[512];
        int ok = fp != NULL;
        for (int k = 0; ok && k < NCLIENTS; k++)
            ok = fwrite(u[k].buf, sizeof(float), u[k].total, fp) == u[k].total;
        if (fp) fclose(fp);
        if (ok) {
            char sizes[256];
            size_t pos = 0;
            for (size_t t = 0; t < g.n; t++)
                pos += (size_t)snprintf(sizes + pos, sizeof sizes - pos, "%s%zu", t ? "," : "",
                                        g.t[t].numel);
            snprintf(cmd, sizeof cmd, "%s %s %s %d %s %d", python, script, path, NCLIENTS, sizes,
                     reps);
            FILE *pp = popen(cmd, "r");
            while (pp && fgets(line, sizeof line, pp)) {
                double x;
                if (sscanf(line, "flower_aggregate_gbps %lf", &x) == 1) np_flower = x;
                else if (sscanf(line, "tensordot_gbps %lf", &x) == 1) np_dot = x;
                else if (sscanf(line, "np_average_gbps %lf", &x) == 1) np_avg = x;
                else if (!strncmp(line, "SKIP", 4)) fputs(line, stdout);
            }
            if (pp) pclose(pp);
        }
        unlink(path);
    }
    {
        FILE *la = fopen("/proc/loadavg", "r");
        if (la) {
            if (fscanf(la, "%lf", &l2) != 1) l2 = -1;
            fclose(la);
        }
    }
    printf("  triad (3 x %zu MB doubles, STREAM's 24 B/iter), best of the runs interleaved with "
           "the folds: 1 thread %.2f GB/s, 2 threads %.2f GB/s\n",
           tn * 8 >> 20, tri[1], tri[2]);
    if (np_flower > 0)
        printf("  numpy (same data, /usr/bin/python3): Flower 1.6 aggregate() %.2f GB/s, "
               "np.average(weights=) %.2f GB/s, np.tensordot (float32 sgemv) %.2f GB/s\n",
               np_flower, np_avg, np_dot);
    else if (script)
        printf("  numpy: not measured (no output from %s)\n", script);
    printf("  fold, GB/s of update bytes (10 x %.1f MB), best of %d; vs the triad measured "
           "right before each run (same threads); vs numpy:\n",
           TOTAL * 4.0 / 1e6, reps);
    printf("    %-56s %7s %9s %11s %10s\n", "", "GB/s", "% triad", "x aggregate",
           "x average");
    for (int i = 0; i < NCF; i++) {
        double gb = upd_bytes / cf[i].best / 1e9;
        printf("    %-56s %7.2f %8.0f%% %10.1fx %9.1fx\n", cf[i].label, gb,
               100 * gb / cf[i].tri, np_flower > 0 ? gb / np_flower : 0,
               np_avg > 0 ? gb / np_avg : 0);
        pst_free(cf[i].s);
    }
    printf("  load average at end %.2f\n", l2);
    for (int k = 0; k < NCLIENTS; k++) pt_params_free(&u[k]);
    pt_params_free(&g);
    free(g0);

    /* RSS in fresh processes */
    printf("  server RSS while streaming 100 client updates (4 x model = %.1f MB):\n",
           4 * TOTAL * 4.0 / 1e6);
    {
        static const char *const acc[] = {"double48", "float-delta", "double"};
        fflush(stdout);
        for (int i = 0; i < 6; i++) {
            char *av[] = {argv[0], "--rss-child", i < 3 ? "FedAvg" : "FedAdam",
                          (char *)acc[i % 3], NULL};
            if (spawn_wait(av)) fprintf(stderr, "rss child failed\n");
        }
    }
    return 0;
}
