/* agent_util.c - helpers shared by the server and client agents. */
#include "agent_int.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pnn.h"

int pt_agent_params_for_model(pt_params *p, const pnn_model *m, char *err)
{
    size_t n = pnn_weights_count(m);
    int *nd = calloc(n ? n : 1, sizeof *nd);
    int64_t(*sh)[PT_MAX_DIMS] = calloc(n ? n : 1, sizeof *sh);
    const int64_t **shp = calloc(n ? n : 1, sizeof *shp);
    int rc = PT_OK;
    if (!nd || !sh || !shp) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        pnn_tensor t;
        pnn_weight_info(m, i, &t);
        nd[i] = t.ndim;
        for (int d = 0; d < t.ndim; d++) sh[i][d] = t.shape[d];
        shp[i] = sh[i];
    }
    rc = pt_params_init(p, n, nd, (const int64_t *const *)shp);
    if (rc) pt_seterr(err, rc, "model parameters: %s", pt_strerror(rc));
done:
    free(nd);
    free(sh);
    free(shp);
    return rc;
}

int pt_agent_params_view(pt_params *p, pnn_model *m, char *err)
{
    size_t n = pnn_weights_count(m);
    memset(p, 0, sizeof *p);
    p->t = calloc(n ? n : 1, sizeof *p->t);
    if (!p->t) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    p->n = n;
    for (size_t i = 0; i < n; i++) {
        pnn_tensor t;
        pnn_weight_info(m, i, &t);
        p->t[i].ndim = t.ndim;
        for (int d = 0; d < t.ndim; d++) p->t[i].shape[d] = t.shape[d];
        p->t[i].numel = t.numel;
        p->t[i].data = t.data;
        p->total += t.numel;
    }
    return PT_OK;
}

void pt_agent_params_view_free(pt_params *p)
{
    free(p->t);
    memset(p, 0, sizeof *p);
}

/* ---- command-line helpers ---------------------------------------------------- */

int pt_agent_parse_int(const char *opt, const char *s, long long lo, long long hi,
                       long long *out)
{
    char *end;
    long long v;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "petal: %s: '%s' is not an integer in [%lld, %lld]\n", opt, s, lo, hi);
        return PT_ERR_INVAL;
    }
    *out = v;
    return PT_OK;
}

int pt_agent_parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "petal: %s: '%s' is not a number in [%g, %g]\n", opt, s, lo, hi);
        return PT_ERR_INVAL;
    }
    *out = v;
    return PT_OK;
}

int pt_agent_check_paths(const char *cmd, const pt_path_opt *p, size_t n)
{
    char err[PT_ERRLEN];
    for (size_t i = 0; i < n; i++) {
        if (!p[i].path) continue;
        int rc = pt_check_path(p[i].opt, p[i].path, p[i].kind, err);
        if (rc) {
            fprintf(stderr, "%s: %s\n", cmd, err);
            return rc;
        }
    }
    return PT_OK;
}

static volatile int *g_stop;

static void on_signal(int sig)
{
    (void)sig;
    if (g_stop) *g_stop = 1;
}

void pt_agent_signals(volatile int *stop)
{
    struct sigaction sa;
    g_stop = stop;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int pt_agent_parse_backend(const char *cmd, const char *s, int *out)
{
    pnn_backend b;
    if (pnn_backend_parse(s, &b)) {
        fprintf(stderr, "%s: --backend: unknown backend '%s' (openblas or reference)\n", cmd, s);
        return PT_ERR_INVAL;
    }
    *out = (int)b;
    return PT_OK;
}

int pt_agent_set_log_level(const char *cmd, const char *s)
{
    int l = pt_log_level_parse(s);
    if (l < 0) {
        fprintf(stderr, "%s: --log-level: unknown level '%s'\n", cmd, s);
        return PT_ERR_INVAL;
    }
    pt_log_set_level((pt_log_level)l);
    return PT_OK;
}
