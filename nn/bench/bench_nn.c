/*
 * bench_nn.c - `make bench-nn`: libpetal-nn throughput on synthetic data.
 *
 * For seed-cnn (batch 32) and fmnist-cnn (batch 32, 128) at 1 and 2 threads:
 * training and inference images/s, achieved GFLOP/s (GEMM-exact FLOPs), the
 * same run's cblas_sgemm 1024^3 GFLOP/s; with --torch, PyTorch's figures for
 * the same (model, batch, threads) measured in this run, its repetitions
 * alternating with ours (torch_baseline.py --serve, allocations retained),
 * and our ratios; PyTorch 1.13's
 * figures on this machine kind (docs/anchors.md) as a second reference; and
 * peak RSS while training seed-cnn.
 *
 * usage: bench_nn [-q] [--torch SCRIPT] [MODEL BATCH THREADS]
 *        bench_nn --best-core   (the CPU's best OpenBLAS core type, see blas_core.h)
 *   -q       shorter runs
 *   --torch  run SCRIPT (torch_baseline.py --serve) with /usr/bin/python3 for each row
 *   MODEL BATCH THREADS: that row only
 */
#include "nn_int.h"
#include "blas_core.h"

#include <cblas.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TORCH_PY "/usr/bin/python3"
#define REPS 5 /* best of REPS runs, ours and PyTorch's alike */
/* glibc keeps freed memory (no mmap for big blocks, no trimming): PyTorch's best
 * on these VMs, where first touch of fresh pages costs ~0.3 GB/s. */
#define TORCH_MMAP_MAX "0"
#define TORCH_TRIM_THRESHOLD "1099511627776"
#define TORCH_MALLOC "MALLOC_MMAP_MAX_=" TORCH_MMAP_MAX " MALLOC_TRIM_THRESHOLD_=" TORCH_TRIM_THRESHOLD

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double sgemm_gflops(int threads)
{
    const int n = 1024;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4),
          *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 13) * 0.1f;
        b[i] = (float)(i % 7) * 0.1f;
        c[i] = 0;
    }
    openblas_set_num_threads(threads);
    pnn__blas_threads(threads);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double t = now() - t0;
        if (t < best) best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best / 1e9;
}

/* GEMM-exact training FLOPs per image: forward + weight gradient + input
 * gradient (none for the first layer). */
static double train_flops(const pnn_model *m)
{
    double f = pnn_forward_flops(m), first = 0;
    for (int i = 0; i < m->nl; i++)
        if (m->L[i].wn) {
            const nn_layer *l = &m->L[i];
            first = 2.0 * (double)l->wn * (l->type == NN_CONV ? (double)l->oh * l->ow : 1.0);
            break;
        }
    return 3 * f - first;
}

typedef struct row {
    const char *model;
    int batch, threads;
    double train_ips, infer_ips, train_gflops, sgemm, anchor_train, anchor_infer, mflop;
    double torch_train, torch_infer; /* same run; 0 when not measured */
} row;

static char torch_why[256]; /* set once the torch baseline is found unavailable */

static void torch_unavailable(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(torch_why, sizeof torch_why, fmt, ap);
    va_end(ap);
    fprintf(stderr, "bench: torch baseline: unavailable (%s)\n", torch_why);
}

/* The PyTorch co-process of one row: torch_baseline.py --serve, driven line by
 * line so that its repetitions alternate with ours. */
typedef struct torch_proc {
    pid_t pid;
    FILE *in, *out; /* its stdin, its stdout */
} torch_proc;

static void torch_stop(torch_proc *tp)
{
    if (tp->in) {
        fputs("quit\n", tp->in);
        fclose(tp->in);
    }
    if (tp->out) fclose(tp->out);
    if (tp->pid > 0) waitpid(tp->pid, NULL, 0);
    memset(tp, 0, sizeof *tp);
}

/* Starts it and waits for "ready" (its warm-up done). Returns 0, or -1 with
 * torch_why set (no further attempts are made). */
static int torch_start(torch_proc *tp, const char *script, const char *model, int batch,
                       int threads, int ntrain, int ninfer)
{
    memset(tp, 0, sizeof *tp);
    if (torch_why[0]) return -1;
    if (access(TORCH_PY, X_OK)) {
        torch_unavailable("%s not found", TORCH_PY);
        return -1;
    }
    if (access(script, R_OK)) {
        torch_unavailable("cannot read %s", script);
        return -1;
    }
    signal(SIGPIPE, SIG_IGN); /* a co-process that dies is an error, not our end */
    int to[2], from[2];
    if (pipe(to)) {
        torch_unavailable("pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe(from)) {
        torch_unavailable("pipe: %s", strerror(errno));
        close(to[0]);
        close(to[1]);
        return -1;
    }
    char a[5][32];
    snprintf(a[0], sizeof a[0], "%d", batch);
    snprintf(a[1], sizeof a[1], "%d", threads);
    snprintf(a[2], sizeof a[2], "%d", ntrain);
    snprintf(a[3], sizeof a[3], "%d", ninfer);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        setenv("MALLOC_MMAP_MAX_", TORCH_MMAP_MAX, 1);
        setenv("MALLOC_TRIM_THRESHOLD_", TORCH_TRIM_THRESHOLD, 1);
        execl(TORCH_PY, TORCH_PY, script, "--serve", model, a[0], a[1], a[2], a[3],
              (char *)NULL);
        printf("torch unavailable: cannot run %s: %s\n", TORCH_PY, strerror(errno));
        _exit(2);
    }
    close(to[0]);
    close(from[1]);
    if (pid < 0) {
        torch_unavailable("fork: %s", strerror(errno));
        close(to[1]);
        close(from[0]);
        return -1;
    }
    tp->pid = pid;
    tp->in = fdopen(to[1], "w");
    tp->out = fdopen(from[0], "r");
    char line[512];
    while (tp->in && tp->out && fgets(line, sizeof line, tp->out)) {
        line[strcspn(line, "\n")] = 0;
        if (!strcmp(line, "ready")) return 0;
        if (!strncmp(line, "torch unavailable: ", 19)) {
            torch_unavailable("%.200s", line + 19);
            torch_stop(tp);
            return -1;
        }
    }
    torch_stop(tp);
    torch_unavailable("%s --serve ended before it was ready (%s batch %d threads %d)", script,
                      model, batch, threads);
    return -1;
}

/* One repetition: what is "train" or "infer"; *sec: its seconds. */
static int torch_rep(torch_proc *tp, const char *what, double *sec)
{
    char line[256], want[16];
    if (!tp->in || fprintf(tp->in, "%s\n", what) < 0 || fflush(tp->in)) goto fail;
    if (!fgets(line, sizeof line, tp->out)) goto fail;
    snprintf(want, sizeof want, "%s_s=%%lf", what);
    if (sscanf(line, want, sec) == 1 && *sec > 0) return 0;
fail:
    torch_unavailable("torch_baseline.py --serve stopped answering");
    torch_stop(tp);
    return -1;
}

/* Idle threads (OpenBLAS's, OpenMP's) spin for a while after their last work:
 * each side's repetition starts once the other side's have gone to sleep. */
static void settle(void)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--best-core")) { /* for the make recipe */
        const char *best = pt_blas_best_core();
        if (best) puts(best);
        return 0;
    }
    pt_blas_fix_core(argv);
    int quick = 0, npos = 0;
    const char *torch_script = NULL, *pos[3];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-q")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--torch") && i + 1 < argc) {
            torch_script = argv[++i];
        } else if (argv[i][0] != '-' && npos < 3) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "usage: bench_nn [-q] [--torch SCRIPT] [MODEL BATCH THREADS]\n");
            return 2;
        }
    }
    const char *only_model = NULL; /* bench_nn MODEL BATCH THREADS: one row only */
    int only_batch = 0, only_threads = 0;
    if (npos == 3) {
        only_model = pos[0];
        only_batch = atoi(pos[1]);
        only_threads = atoi(pos[2]);
    } else if (npos) {
        fprintf(stderr, "usage: bench_nn [-q] [--torch SCRIPT] [MODEL BATCH THREADS]\n");
        return 2;
    }
    struct {
        const char *model;
        int batch;
        double anchor_train[2], anchor_infer[2];
        int train_batches, infer_batches;
    } cfg[] = {
        {"seed-cnn", 32, {50, 92}, {94, 176}, 2, 2},
        {"fmnist-cnn", 32, {3100, 2300}, {6000, 5700}, quick ? 40 : 100, quick ? 40 : 100},
        {"fmnist-cnn", 128, {3500, 3800}, {0, 0}, quick ? 10 : 26, quick ? 10 : 26},
    };
    row rows[6];
    int nr = 0;
    long rss_seed_kb = 0;
    char err[PNN_ERRLEN];
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        for (int th = 1; th <= 2; th++) {
            if (only_model && (strcmp(only_model, cfg[c].model) || only_batch != cfg[c].batch ||
                               only_threads != th))
                continue;
            pnn_opts o;
            pnn_opts_init(&o);
            o.threads = th;
            pnn_model *m;
            if (pnn_model_new(&m, cfg[c].model, &o, err)) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            int B = cfg[c].batch;
            size_t insz = pnn_input_size(m);
            size_t N = (size_t)B * 2; /* two distinct batches, reused */
            float *x = malloc(N * insz * 4);
            int32_t *y = malloc(N * 4);
            uint64_t s = 42;
            for (size_t i = 0; i < N * insz; i++) x[i] = pnn__rng_uniform(&s);
            for (size_t i = 0; i < N; i++) y[i] = (int32_t)(i % 10);
            float *probs = malloc(N * 10 * 4);
            pnn_fit_opts f;
            pnn_fit_opts_init(&f);
            f.batch_size = B;
            f.shuffle = 0;
            /* warm-up: first touch of every buffer */
            if (pnn_fit(m, x, y, N, &f, NULL, err) ||
                pnn_predict(m, x, N, B, probs, err)) {
                fprintf(stderr, "bench: %s\n", err);
                return 1;
            }
            /* best of REPS repetitions (the machine is shared: take the least
             * disturbed), alternating with PyTorch's so that both meet the same
             * load */
            int nb = cfg[c].train_batches;
            f.epochs = nb / 2 > 0 ? nb / 2 : 1;
            int ni = cfg[c].infer_batches / 2 > 0 ? cfg[c].infer_batches / 2 : 1;
            torch_proc tp = {0};
            int torch_ok = torch_script && !torch_start(&tp, torch_script, cfg[c].model, B, th,
                                                        f.epochs * 2, ni * 2);
            double sg0 = sgemm_gflops(th);
            pnn__blas_threads(th);
            double tt = 1e30, ti = 1e30, ttt = 1e30, tti = 1e30, ts;
            for (int rep = 0; rep < REPS; rep++) {
                settle();
                double t0 = now();
                pnn_fit(m, x, y, N, &f, NULL, err);
                double t = now() - t0;
                if (t < tt) tt = t;
                if (torch_ok) {
                    settle();
                    if ((torch_ok = !torch_rep(&tp, "train", &ts)) && ts < ttt) ttt = ts;
                }
                settle();
                t0 = now();
                for (int r = 0; r < ni; r++) pnn_predict(m, x, N, B, probs, err);
                t = now() - t0;
                if (t < ti) ti = t;
                if (torch_ok) {
                    settle();
                    if ((torch_ok = !torch_rep(&tp, "infer", &ts)) && ts < tti) tti = ts;
                }
            }
            torch_stop(&tp);
            if (c == 0 && th == 1) {
                struct rusage ru;
                getrusage(RUSAGE_SELF, &ru);
                rss_seed_kb = ru.ru_maxrss;
            }
            double sg1 = sgemm_gflops(th);
            row *rw = &rows[nr++];
            rw->model = cfg[c].model;
            rw->batch = B;
            rw->threads = th;
            rw->train_ips = (double)f.epochs * N / tt;
            rw->infer_ips = (double)ni * N / ti;
            rw->train_gflops = rw->train_ips * train_flops(m) / 1e9;
            rw->mflop = train_flops(m) / 1e6;
            rw->sgemm = (sg0 + sg1) / 2; /* measured around this row */
            rw->anchor_train = cfg[c].anchor_train[th - 1];
            rw->anchor_infer = cfg[c].anchor_infer[th - 1];
            fprintf(stderr, "bench: %s batch %d threads %d done\n", rw->model, B, th);
            free(x);
            free(y);
            free(probs);
            pnn_model_free(m);
            rw->torch_train = rw->torch_infer = 0;
            if (torch_ok) {
                rw->torch_train = (double)f.epochs * 2 * B / ttt;
                rw->torch_infer = (double)ni * 2 * B / tti;
            }
        }
    }
    const char *core = openblas_get_corename();
    /* anchors.md's sgemm 1024^3 on the anchor machine with the same kernel
     * family: AVX-512 (SkylakeX, Cooperlake, ...) 194 / 329, AVX2 107 / 184 */
    int avx512 = core && (strstr(core, "Skylake") || strstr(core, "Cooperlake") ||
                          strstr(core, "Sapphire"));
    const double anc_sg1 = avx512 ? 194.0 : 107.0, anc_sg2 = avx512 ? 329.0 : 184.0;
    printf("libpetal-nn benchmark (synthetic data; OpenBLAS kernels %s, OPENBLAS_CORETYPE=%s)\n",
           core ? core : "?",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    if (!torch_script)
        printf("torch baseline: unavailable (not requested: bench_nn --torch SCRIPT)\n");
    else if (torch_why[0])
        printf("torch baseline: unavailable (%s)\n", torch_why);
    printf("%-11s %5s %3s | %10s %10s %8s | %6s | %9s %6s | %9s %6s | %7s %6s %6s | %7s %6s\n",
           "model", "batch", "thr", "train im/s", "infer im/s", "GFLOP/s", "sgemm", "torch trn",
           "ratio", "torch inf", "ratio", "anc trn", "ratio", "norm", "anc inf", "ratio");
    if (nr == 0) return 1;
    for (int i = 0; i < nr; i++) {
        row *r = &rows[i];
        char tt[16] = "-", tr[16] = "-", ti[16] = "-", tir[16] = "-";
        if (r->torch_train > 0) {
            snprintf(tt, sizeof tt, "%.1f", r->torch_train);
            snprintf(tr, sizeof tr, "%.2f", r->train_ips / r->torch_train);
            snprintf(ti, sizeof ti, "%.1f", r->torch_infer);
            snprintf(tir, sizeof tir, "%.2f", r->infer_ips / r->torch_infer);
        }
        char ai[16] = "-", ar[16] = "-";
        if (r->anchor_infer > 0) {
            snprintf(ai, sizeof ai, "%.0f", r->anchor_infer);
            snprintf(ar, sizeof ar, "%.2f", r->infer_ips / r->anchor_infer);
        }
        /* norm: the ratio with PyTorch's figure scaled by this run's sgemm speed
         * relative to the anchor machine's (same kernel family) */
        double anchor_sg = r->threads == 1 ? anc_sg1 : anc_sg2;
        printf("%-11s %5d %3d | %10.1f %10.1f %8.1f | %6.1f | %9s %6s | %9s %6s | %7.0f %6.2f "
               "%6.2f | %7s %6s\n",
               r->model, r->batch, r->threads, r->train_ips, r->infer_ips, r->train_gflops,
               r->sgemm, tt, tr, ti, tir, r->anchor_train, r->train_ips / r->anchor_train,
               r->train_ips / (r->anchor_train * r->sgemm / anchor_sg), ai, ar);
    }
    printf("GFLOP/s: GEMM-exact training FLOPs (");
    for (int i = 0; i < nr; i++)
        if (i == 0 || strcmp(rows[i].model, rows[i - 1].model))
            printf("%s%s %.1f", i ? ", " : "", rows[i].model, rows[i].mflop);
    printf(" MFLOP/image); sgemm: cblas_sgemm 1024^3 in this run\n");
    printf("torch trn/inf: PyTorch (%s) measured in this run, its repetitions alternating with\n"
           "  ours; same model, batch, threads, Adam, synthetic data, channels_last, best of %d\n"
           "  (" TORCH_MALLOC "); ratio = ours / torch\n",
           torch_script ? "torch_baseline.py" : "not run", REPS);
    printf("anc: PyTorch 1.13 (oneDNN, allocations retained) on this machine kind on another day, "
           "docs/anchors.md;\n  norm = ratio with that figure scaled "
           "by (sgemm here / sgemm on the anchor machine, %s kernels: %.0f at 1, %.0f at 2 "
           "threads)\n", avx512 ? "AVX-512" : "AVX2", anc_sg1, anc_sg2);
    printf("peak RSS while training seed-cnn batch 32: %.1f MiB (limit 1024)\n",
           rss_seed_kb / 1024.0);
    return rss_seed_kb / 1024.0 < 1024 ? 0 : 1;
}
