/* test_report_fixture.c - write a synthetic results tree through the results
 * writer API, for tests/test_report.py and the report unit tests.
 *
 *   test_report_fixture OUT
 *
 * OUT/openblas/FedAvg/2     3 rounds, round0, 2 clients, distributed metrics
 * OUT/openblas/FedAdam/2    3 rounds, loss reaching 1e9 (adaptive strategy blow-up),
 *                           round 2 without centralised evaluation, one failure,
 *                           a truncated last line (a process killed mid-write)
 * OUT/reference/FedAvgM/3   2 of 4 rounds (no run_end: interrupted), 3 clients
 * Prints nothing on success; exit 1 with a reason on failure. */
#include "results_int.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fail(const char *what, const char *err)
{
    fprintf(stderr, "test_report_fixture: %s: %s\n", what, err);
    return 1;
}

typedef struct spec {
    const char *backend, *strategy;
    int n_clients, rounds_req, rounds_done, end, blowup, with_failure;
} spec;

static int write_run(const char *out, const spec *sp)
{
    char dir[512], err[PT_ERRLEN] = "";
    pt_results *srv = NULL, *cl[8] = {0};
    snprintf(dir, sizeof dir, "%s/%s/%s/%d", out, sp->backend, sp->strategy, sp->n_clients);
    if (pt_results_open(&srv, dir, "server", err) != PT_OK) return fail(dir, err);
    for (int c = 0; c < sp->n_clients; c++) {
        char src[32];
        snprintf(src, sizeof src, "client_%d", c);
        if (pt_results_open(&cl[c], dir, src, err) != PT_OK) return fail(dir, err);
        char id[16], part[16];
        snprintf(id, sizeof id, "%d", c);
        snprintf(part, sizeof part, "%d/%d", c, sp->n_clients);
        pt_client_info ci = {id, part, 1000, 250, sp->backend, "fmnist-cnn", "fashion-mnist"};
        pt_results_client_start(cl[c], &ci);
    }
    pt_config cfg = {0};
    pt_config_set_double(&cfg, "lr", 0.05);
    pt_config_set_int(&cfg, "epochs", 1);
    pt_config_set_string(&cfg, "note", "quotes \" and, commas");
    pt_run_info info = {sp->strategy, sp->n_clients, sp->backend, "fmnist-cnn", "fashion-mnist",
                        sp->rounds_req, "127.0.0.1:0", &cfg};
    pt_results_run_start(srv, &info);
    PT_RINFO(srv, "Starting Flower server, config: num_rounds=%d", sp->rounds_req);
    pt_results_round0(srv, 2.302, 0.10, 0.4);
    for (int k = 1; k <= sp->rounds_done; k++) {
        for (int c = 0; c < sp->n_clients; c++) {
            pt_client_stats s;
            pt_client_stats_init(&s);
            s.round = k;
            s.wall_time = 4.0 + c * 0.5 + k * 0.1;
            s.cpu_process_percent = 150.0 + c * 10;
            s.cpu_system_percent = 90.0;
            s.examples = 1000;
            s.peak_rss_bytes = (int64_t)(200 + 10 * c) << 20;
            s.loss = 0.9 / k;
            pt_results_fit(cl[c], &s);
            s.wall_time = 0.5 + c * 0.1;
            s.cpu_process_percent = 95.0;
            s.examples = 250;
            s.accuracy = 0.7 + 0.05 * k;
            pt_results_evaluate(cl[c], &s);
        }
        pt_round_stats r;
        pt_round_stats_init(&r);
        r.round = k;
        r.fit_time = 5.0 + k * 0.2;
        r.evaluate_time = 0.8;
        r.round_time = r.fit_time + r.evaluate_time + 0.3;
        if (sp->blowup) {
            r.loss_centralized = pow(10, 3.0 * k); /* 1e3, (missing), 1e9 */
            r.accuracy_centralized = 0.10;
            if (k == 2) r.loss_centralized = r.accuracy_centralized = NAN;
        } else {
            double off = (double)(strlen(sp->strategy) % 4) * 0.02; /* tell runs apart */
            r.loss_centralized = 0.9 / k + off;
            r.accuracy_centralized = 0.70 + 0.06 * k - off;
        }
        r.loss_distributed = 0.95 / k;
        r.accuracy_distributed = 0.69 + 0.06 * k;
        r.bytes_sent = 1000000;
        r.bytes_received = 1000000;
        r.clients_sampled = sp->n_clients;
        r.results = sp->n_clients - (sp->with_failure && k == 3);
        r.failures = sp->with_failure && k == 3;
        r.eval_results = sp->n_clients;
        r.eval_failures = 0;
        if (sp->with_failure && k == 3)
            pt_results_failure(srv, k, "1", "fit", "client disconnected");
        pt_results_round(srv, &r);
        PT_RINFO(srv, "fit_round %d received %d results and %d failures", k, (int)r.results,
                 (int)r.failures);
    }
    if (sp->end) pt_results_run_end(srv, sp->rounds_done * 6.5, sp->rounds_done, "ok", NULL);
    for (int c = 0; c < sp->n_clients; c++) pt_results_close(cl[c]);
    pt_results_close(srv);
    pt_config_free(&cfg);
    if (sp->with_failure) { /* a truncated line, as from a process killed mid-write */
        char p[600];
        snprintf(p, sizeof p, "%s/events.jsonl", dir);
        int fd = open(p, O_WRONLY | O_APPEND);
        if (fd < 0) return fail(p, "open");
        const char *junk = "{\"ts\":1.5,\"source\":\"client_0\",\"event\":\"fi";
        if (write(fd, junk, strlen(junk)) < 0) {
            close(fd);
            return fail(p, "write");
        }
        close(fd);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_report_fixture OUT\n");
        return 2;
    }
    pt_log_set_stderr(0); /* log lines go to the files only */
    static const spec specs[] = {
        {"openblas", "FedAvg", 2, 3, 3, 1, 0, 0},
        {"openblas", "FedAdam", 2, 3, 3, 1, 1, 1},
        {"reference", "FedAvgM", 3, 4, 2, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        if (write_run(argv[1], &specs[i])) return 1;
    return 0;
}
