/*
 * fuzz_results.c - results files as `petal report` reads them (core/
 * results_read.c pt_runset_load_file on an events.jsonl), then everything
 * the report writes from them: metrics.csv, summary.json, report.html
 * (core/report_csv.c, core/report_html.c). The report promises a file
 * without scripts, so any "<script" in it means an unescaped input string.
 */
#include <strings.h>

#include "fuzz.h"
#include "results_int.h"

static fz_file events;
static char csv[300], summary[300], html[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    const char *dir = fz_tmpdir();
    if (!dir) abort();
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    snprintf(summary, sizeof summary, "%s/summary.json", dir);
    snprintf(html, sizeof html, "%s/report.html", dir);
    return 0;
}

static void check_no_script(const char *path)
{
    FILE *f = fopen(path, "rb");
    FZ_CHECK(f != NULL);
    static char buf[1 << 16];
    size_t keep = 0, n;
    while ((n = fread(buf + keep, 1, sizeof buf - 1 - keep, f)) > 0) {
        n += keep;
        buf[n] = 0;
        for (size_t i = 0; i + 7 <= n; i++)
            FZ_CHECK(buf[i] != '<' || strncasecmp(buf + i, "<script", 7) != 0);
        keep = n < 7 ? n : 7;
        memmove(buf, buf + n - keep, keep);
    }
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fz_file_set(&events, "events.jsonl", data, size)) return 0;
    pt_runset set;
    memset(&set, 0, sizeof set);
    char err[PT_ERRLEN];
    int rc = pt_runset_load_file(&set, events.path, "results/openblas/FedAvg/2", err);
    if (rc != PT_OK) {
        FZ_CHECK(set.n == 0);
        pt_runset_free(&set);
        return 0;
    }
    char label[256];
    for (size_t i = 0; i < set.n; i++) {
        pt_run_summary s;
        pt_run_summarize(&set.runs[i], &s);
        pt_runset_label(&set, i, label, sizeof label);
        FZ_CHECK(memchr(label, 0, sizeof label));
    }
    FZ_CHECK(pt_runset_write_csv(&set, csv, err) == PT_OK);
    FZ_CHECK(pt_runset_write_summary(&set, summary, err) == PT_OK);
    pt_report_opts o = {.title = NULL, .log_loss = -1};
    FZ_CHECK(pt_report_write_html(&set, html, &o, err) == PT_OK);
    check_no_script(html);
    pt_runset_free(&set);
    return 0;
}
