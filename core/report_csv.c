/* report_csv.c - tidy metrics.csv and summary.json from a pt_runset (see results_int.h). */
#include "results_int.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* RFC 4180 quoting (with LF line ends; Python's csv reads either): quote a
 * field holding a comma, quote, CR or LF; double the quotes inside. */
static void csv_field(FILE *f, const char *s)
{
    if (!s) s = "";
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void iso_ts(double ts, char *buf, size_t len)
{
    /* years beyond 9999 are rejected below, so 64 bytes always suffice */
    if (isnan(ts) || ts < 0 || ts > 1e11) {
        buf[0] = '\0';
        return;
    }
    time_t t = (time_t)ts;
    struct tm tm;
    gmtime_r(&t, &tm);
    int ms = (int)((ts - (double)t) * 1000.0);
    if (ms > 999) ms = 999;
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

typedef struct row_ctx {
    FILE *f;
    const pt_run_data *run;
    char n_clients[16];
} row_ctx;

static void row(const row_ctx *c, const char *client, const char *metric, double v, double ts,
                int round)
{
    char val[40], t[64];
    if (isnan(v)) return;
    snprintf(val, sizeof val, "%.10g", v);
    iso_ts(ts, t, sizeof t);
    csv_field(c->f, c->run->strategy);
    fputc(',', c->f);
    csv_field(c->f, c->n_clients);
    fputc(',', c->f);
    csv_field(c->f, c->run->backend);
    fputc(',', c->f);
    csv_field(c->f, client);
    fputc(',', c->f);
    csv_field(c->f, metric);
    fprintf(c->f, ",%s,%s,", val, t);
    if (round >= 0) fprintf(c->f, "%d", round);
    fputc('\n', c->f);
}

static void round_rows(const row_ctx *c, const pt_round_rec *r)
{
#define R(field) row(c, "server", #field, r->field, r->ts, r->round)
    R(fit_time);
    R(evaluate_time);
    R(round_time);
    R(loss_centralized);
    R(accuracy_centralized);
    R(loss_distributed);
    R(accuracy_distributed);
    R(bytes_sent);
    R(bytes_received);
    R(clients_sampled);
    R(results);
    R(failures);
    R(eval_results);
    R(eval_failures);
#undef R
}

int pt_runset_write_csv(const pt_runset *set, const char *path, char *err)
{
    if (!set || !path) return pt_seterr(err, PT_ERR_INVAL, "NULL argument");
    char e2[PT_ERRLEN];
    FILE *f = pt_fopen_write(path, e2);
    if (!f) return pt_seterr(err, PT_ERR_IO, "cannot write %s", e2);
    fputs("strategy,n_clients,backend,client,metric,value,timestamp,round\n", f);
    for (size_t i = 0; i < set->n; i++) {
        row_ctx c = {f, &set->runs[i], ""};
        const pt_run_data *run = &set->runs[i];
        if (run->n_clients >= 0) snprintf(c.n_clients, sizeof c.n_clients, "%d", run->n_clients);
        if (run->has_round0) round_rows(&c, &run->round0);
        for (size_t k = 0; k < run->n_rounds; k++) round_rows(&c, &run->rounds[k]);
        if (run->has_end) row(&c, "server", "total_time", run->total_time, run->end_ts, -1);
        for (size_t k = 0; k < run->n_cl; k++) {
            const pt_client_rec *r = &run->cl[k];
            const char *ph = r->evaluate ? "evaluate" : "fit";
            char m[64];
#define C(field, name)                                                                     \
    do {                                                                                   \
        snprintf(m, sizeof m, "%s_%s", ph, name);                                          \
        row(&c, r->source, m, r->field, r->ts, r->round);                                  \
    } while (0)
            C(wall_time, "time");
            C(cpu_process_percent, "cpu_process_percent");
            C(cpu_system_percent, "cpu_system_percent");
            C(examples, "examples");
            C(peak_rss_bytes, "peak_rss_bytes");
            C(loss, "loss");
            C(accuracy, "accuracy");
#undef C
        }
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        return pt_seterr(err, PT_ERR_IO, "writing %s failed: %s", path, strerror(errno));
    return PT_OK;
}

static cJSON *num_or_null(double v)
{
    return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

int pt_runset_write_summary(const pt_runset *set, const char *path, char *err)
{
    int rc = PT_OK;
    char *text = NULL;
    if (!set || !path) return pt_seterr(err, PT_ERR_INVAL, "NULL argument");
    cJSON *root = cJSON_CreateObject(), *runs;
    if (!root) goto fail_oom;
    char ts[64];
    iso_ts(pt_wall(), ts, sizeof ts);
    if (!cJSON_AddStringToObject(root, "generated", ts)) goto fail_oom;
    if (!cJSON_AddNumberToObject(root, "malformed_lines", (double)set->bad_lines)) goto fail_oom;
    if (!(runs = cJSON_AddArrayToObject(root, "runs"))) goto fail_oom;
    for (size_t i = 0; i < set->n; i++) {
        const pt_run_data *r = &set->runs[i];
        pt_run_summary s;
        char label[160];
        pt_run_summarize(r, &s);
        pt_runset_label(set, i, label, sizeof label);
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(runs, o)) {
            cJSON_Delete(o);
            goto fail_oom;
        }
#define ADD(k, item)                                                                       \
    do {                                                                                   \
        cJSON *it_ = (item);                                                               \
        if (!it_ || !cJSON_AddItemToObject(o, k, it_)) {                                   \
            cJSON_Delete(it_);                                                             \
            goto fail_oom;                                                                 \
        }                                                                                  \
    } while (0)
        ADD("label", cJSON_CreateString(label));
        ADD("strategy", cJSON_CreateString(r->strategy));
        ADD("backend", cJSON_CreateString(r->backend));
        ADD("n_clients", r->n_clients >= 0 ? cJSON_CreateNumber(r->n_clients) : cJSON_CreateNull());
        ADD("model", cJSON_CreateString(r->model));
        ADD("dataset", cJSON_CreateString(r->dataset));
        ADD("dir", cJSON_CreateString(r->dir));
        ADD("rounds_requested",
            r->rounds_requested >= 0 ? cJSON_CreateNumber(r->rounds_requested) : cJSON_CreateNull());
        ADD("rounds_completed", cJSON_CreateNumber(s.rounds_completed));
        ADD("clients", cJSON_CreateNumber(s.clients));
        ADD("final_accuracy", num_or_null(s.final_accuracy));
        ADD("best_accuracy", num_or_null(s.best_accuracy));
        ADD("best_round", s.best_round >= 0 ? cJSON_CreateNumber(s.best_round) : cJSON_CreateNull());
        ADD("final_loss", num_or_null(s.final_loss));
        ADD("final_accuracy_distributed", num_or_null(s.final_accuracy_distributed));
        ADD("final_loss_distributed", num_or_null(s.final_loss_distributed));
        ADD("mean_round_time", num_or_null(s.mean_round_time));
        ADD("total_time", num_or_null(r->total_time));
        ADD("fit_cpu_process_percent_mean", num_or_null(s.fit_cpu_mean));
        ADD("evaluate_cpu_process_percent_mean", num_or_null(s.eval_cpu_mean));
        ADD("fit_time_mean", num_or_null(s.fit_time_mean));
        ADD("evaluate_time_mean", num_or_null(s.eval_time_mean));
        ADD("client_peak_rss_bytes_max", num_or_null(s.peak_rss_max));
        ADD("failures", cJSON_CreateNumber(r->n_failures));
        ADD("status", r->has_end ? cJSON_CreateString(r->status) : cJSON_CreateString("incomplete"));
        if (r->config_json) {
            cJSON *cfg = cJSON_Parse(r->config_json);
            ADD("config", cfg);
        }
#undef ADD
    }
    text = cJSON_Print(root);
    cJSON_Delete(root);
    root = NULL;
    if (!text) goto fail_oom;
    char e2[PT_ERRLEN];
    FILE *f = pt_fopen_write(path, e2);
    if (!f) {
        rc = pt_seterr(err, PT_ERR_IO, "cannot write %s", e2);
        goto out;
    }
    fputs(text, f);
    fputc('\n', f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad)
        rc = pt_seterr(err, PT_ERR_IO, "writing %s failed: %s", path, strerror(errno));
out:
    free(text);
    return rc;
fail_oom:
    cJSON_Delete(root);
    return pt_seterr(err, PT_ERR_NOMEM, "summary: out of memory");
}
