/*
 * results_int.h - results writer of the petal binary: Flower-style log files
 * and machine-readable event lines (internal to core/ and the petal command).
 *
 * One pt_results per agent process. pt_results_open(dir, source) creates DIR
 * (and its parents) and opens two files in append mode:
 *
 *   DIR/<source>_log.log   human-readable lines in Flower's log format,
 *                          e.g. "INFO flwr 2026-11-28 20:45:41,123 | server.c:123 | message"
 *                          (source "server" -> server_log.log, "client_3" ->
 *                          client_3_log.log, as the original's results tree);
 *   DIR/events.jsonl       one JSON object per line, shared by every process
 *                          of a run: opened with O_APPEND and each line goes
 *                          out in ONE write(), so concurrent writers never
 *                          interleave within a line.
 *
 * ---- events.jsonl schema ------------------------------------------------------
 * Every line has:  "ts" (UNIX seconds, float), "source" ("server" or
 * "client_<id>"), "event" (name below). Missing measurements are JSON null
 * (pass NAN for doubles, -1 for counts). Event-specific keys:
 *
 *  server:
 *   run_start  strategy (str), n_clients (int), backend (str), model (str),
 *              dataset (str), rounds (int), config (object: strategy/run
 *              options, e.g. {"lr":0.01,"epochs":1}), address (str or null)
 *   round0     round (=0), loss_centralized, accuracy_centralized,
 *              evaluate_time (s)  -- centralised evaluation of the initial model
 *   round      round (int >= 1), fit_time, evaluate_time, round_time (s),
 *              loss_centralized, accuracy_centralized,
 *              loss_distributed, accuracy_distributed (client-weighted),
 *              bytes_sent, bytes_received (int, payload bytes this round),
 *              clients_sampled, results, failures (fit phase, int),
 *              eval_results, eval_failures (evaluate phase, int),
 *              metrics (object, optional: aggregated fit/eval metrics)
 *   failure    round (int or null), client (str or null), phase ("fit",
 *              "evaluate", "connect", ...), reason (str)
 *   run_end    total_time (s), rounds (int, completed), status ("ok",
 *              "interrupted", "error"), reason (str or null)
 *  client:
 *   client_start  client (str), partition (str, e.g. "0/2"), train_examples,
 *              val_examples (int), backend, model, dataset (str)
 *   fit        round (int or null), wall_time (s), cpu_process_percent
 *              (this process over the fit, may exceed 100 on several cores,
 *              like psutil's Process.cpu_percent), cpu_system_percent (whole
 *              machine, like psutil.cpu_percent), examples (int),
 *              peak_rss_bytes (int), loss, accuracy (training, may be null),
 *              metrics (object, optional)
 *   evaluate   same keys as fit (loss/accuracy on the client's validation split)
 *   client_end  total_time (s), status, reason
 *  any:
 *   pt_results_event() writes other names with caller-chosen fields.
 *
 * Thread safety: every function may be called from several threads on one
 * pt_results (a mutex guards it).
 */
#ifndef PETAL_RESULTS_INT_H
#define PETAL_RESULTS_INT_H

#include "petal.h"

#include <stdarg.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pt_results pt_results;

/* Open the writer. dir: results directory (created with parents, mode 0755).
 * source: "server" or "client_<id>" (1..64 chars of [A-Za-z0-9_.-]).
 * Returns PT_OK (and *out, freed by pt_results_close), PT_ERR_INVAL (bad
 * source/dir, err says which), PT_ERR_IO (mkdir/open failed, err names the
 * path and errno) or PT_ERR_NOMEM. */
int pt_results_open(pt_results **out, const char *dir, const char *source, char *err);

/* Close the files and free the writer. NULL-safe. */
void pt_results_close(pt_results *r);

/* The directory and source given to pt_results_open (borrowed, valid until close). */
const char *pt_results_dir(const pt_results *r);
const char *pt_results_source(const pt_results *r);

/* Write one human-readable line to <source>_log.log in Flower's format and
 * echo it to stderr through core logging (pt_log_write, so the core log level
 * applies to the echo). Lines below the core log level are not written to the
 * file either. file/line name the call site (use PT_RLOG). r may be NULL: then
 * only the echo happens. Embedded newlines are kept (Flower does the same). */
void pt_results_log(pt_results *r, pt_log_level lvl, const char *file, int line,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void pt_results_vlog(pt_results *r, pt_log_level lvl, const char *file, int line,
                     const char *fmt, va_list ap);
#define PT_RLOG(r, lvl, ...) pt_results_log((r), (lvl), __FILE__, __LINE__, __VA_ARGS__)
#define PT_RINFO(r, ...) pt_results_log((r), PT_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define PT_RWARN(r, ...) pt_results_log((r), PT_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define PT_RERROR(r, ...) pt_results_log((r), PT_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/* Format a Flower-style log line (no trailing newline) into buf:
 * "LEVEL flwr YYYY-MM-DD HH:MM:SS,mmm | file:line | message" (local time as
 * Python's logging does; basename of file). Returns the length written. */
size_t pt_results_format_line(char *buf, size_t len, pt_log_level lvl, const char *file, int line,
                              const char *msg);

/* ---- typed events (schemas above). Each returns PT_OK, PT_ERR_INVAL (NULL
 * r or required pointer), PT_ERR_NOMEM or PT_ERR_IO (write failed; the run
 * may go on). Strings are copied; nothing is retained. An event line is at
 * most PT_RESULTS_MAX_LINE bytes, what the reader accepts: a round whose
 * metrics would make it longer is written without them, with a
 * "metrics_omitted" note (and a warning); other events over it are not
 * written (PT_ERR_RANGE). */
#define PT_RESULTS_MAX_LINE ((size_t)16 << 20)

typedef struct pt_run_info {
    const char *strategy;   /* e.g. "FedAvg" */
    int n_clients;          /* clients the run expects */
    const char *backend;    /* "openblas" or "reference" */
    const char *model;      /* preset name or JSON path */
    const char *dataset;    /* e.g. "fashion-mnist" */
    int rounds;             /* rounds requested */
    const char *address;    /* listen address, may be NULL */
    const pt_config *config; /* run/strategy options, may be NULL */
} pt_run_info;
int pt_results_run_start(pt_results *r, const pt_run_info *info);

/* Centralised evaluation of the initial parameters (round 0). */
int pt_results_round0(pt_results *r, double loss, double accuracy, double evaluate_time);

typedef struct pt_round_stats {
    int round;
    double fit_time, evaluate_time, round_time;       /* seconds */
    double loss_centralized, accuracy_centralized;    /* NAN when not evaluated */
    double loss_distributed, accuracy_distributed;    /* NAN when no eval results */
    int64_t bytes_sent, bytes_received;               /* -1 when unknown */
    int clients_sampled, results, failures;           /* fit phase */
    int eval_results, eval_failures;                  /* evaluate phase, -1 if none */
    const pt_config *metrics;                         /* may be NULL */
} pt_round_stats;
/* Initialise every field to "unknown" (NAN / -1 / NULL) and round to 0. */
void pt_round_stats_init(pt_round_stats *s);
int pt_results_round(pt_results *r, const pt_round_stats *s);

/* round < 0: unknown (null); client, phase, reason may be NULL. */
int pt_results_failure(pt_results *r, int round, const char *client, const char *phase,
                       const char *reason);

/* status: "ok", "interrupted" or "error"; reason may be NULL. */
int pt_results_run_end(pt_results *r, double total_time, int rounds_completed, const char *status,
                       const char *reason);

typedef struct pt_client_info {
    const char *client;     /* id, e.g. "0" */
    const char *partition;  /* e.g. "0/2", may be NULL */
    int64_t train_examples, val_examples; /* -1 unknown */
    const char *backend, *model, *dataset; /* may be NULL */
} pt_client_info;
int pt_results_client_start(pt_results *r, const pt_client_info *info);

typedef struct pt_client_stats {
    int round;                    /* < 0: unknown */
    double wall_time;             /* seconds */
    double cpu_process_percent;   /* NAN unknown */
    double cpu_system_percent;    /* NAN unknown */
    int64_t examples;             /* -1 unknown */
    int64_t peak_rss_bytes;       /* -1 unknown */
    double loss, accuracy;        /* NAN unknown */
    const pt_config *metrics;     /* may be NULL */
} pt_client_stats;
void pt_client_stats_init(pt_client_stats *s);
int pt_results_fit(pt_results *r, const pt_client_stats *s);
int pt_results_evaluate(pt_results *r, const pt_client_stats *s);
int pt_results_client_end(pt_results *r, double total_time, const char *status,
                          const char *reason);

/* Generic event: fields (may be NULL) become top-level keys (doubles,
 * integers, bools, strings; bytes are skipped). The keys ts/source/event are
 * reserved and ignored in fields. */
int pt_results_event(pt_results *r, const char *event, const pt_config *fields);


/* ---- reading results back (core/results_read.c) -------------------------------
 * A results tree holds one run per directory that has an events.jsonl,
 * usually OUT/<backend>/<strategy>/<n_clients>/. Several runs appended to one
 * events.jsonl (a server run_start after another) are split into separate
 * runs. Lines that do not parse (e.g. a process killed mid-write) are skipped
 * and counted. Missing numbers are NAN. */

typedef struct pt_round_rec {
    int round;                                 /* 0 = initial model */
    double ts;                                 /* event time (UNIX s) */
    double fit_time, evaluate_time, round_time;
    double loss_centralized, accuracy_centralized;
    double loss_distributed, accuracy_distributed;
    double bytes_sent, bytes_received;
    double clients_sampled, results, failures, eval_results, eval_failures;
} pt_round_rec;

typedef struct pt_client_rec {
    char source[72];   /* "client_<id>" */
    int cid;           /* index of source in the set's clients[] */
    int evaluate;      /* 0 fit, 1 evaluate */
    int round;         /* -1 unknown */
    double ts, wall_time, cpu_process_percent, cpu_system_percent;
    double examples, peak_rss_bytes, loss, accuracy;
} pt_client_rec;

typedef struct pt_run_data {
    char *dir;                  /* directory of the events.jsonl (owned) */
    char strategy[64], backend[32], model[160], dataset[160], status[16];
    int n_clients;              /* -1 unknown */
    int rounds_requested;       /* -1 unknown */
    int has_start, has_end;
    double start_ts, end_ts, total_time;
    char *config_json;          /* run_start "config" as compact JSON, or NULL (owned) */
    pt_round_rec round0;        /* valid when has_round0 */
    int has_round0;
    pt_round_rec *rounds;       /* sorted by round, unique */
    size_t n_rounds;
    pt_client_rec *cl;          /* fit/evaluate events in file order */
    size_t n_cl;
    int n_failures;             /* failure events */
    char last_failure[160];     /* reason of the last one */
    size_t cap_rounds, cap_cl;
} pt_run_data;

typedef struct pt_runset {
    pt_run_data *runs;   /* sorted by start time */
    size_t n, cap;
    size_t bad_lines;    /* lines skipped as malformed (or with a repeated key) */
    size_t files;        /* events.jsonl files read */
    char **clients;      /* distinct client sources over all runs, first seen first */
    size_t n_clients, cap_clients;
    size_t *cmap, cmap_cap; /* hash of clients[] (index + 1; 0 = empty) */
} pt_runset;

/* Loading is linear in the events: clients are interned through a hash map
 * (cid), rounds sorted once per file. A line whose JSON repeats a key is
 * malformed (Python's json would keep the last value, cJSON the first: Petal
 * picks neither; see pt_json_repeated_key). */

/* Read every events.jsonl under dir (dir itself included; directories are
 * walked up to 8 levels deep, symlinks are not followed). A zeroed set is
 * filled. Returns PT_OK, PT_ERR_NOTFOUND (dir missing, or no events.jsonl
 * / no events in it: err says which), PT_ERR_INVAL, PT_ERR_IO, PT_ERR_NOMEM.
 * On error the set is left empty. Runs without a strategy in their events
 * take backend/strategy/n_clients from the last three path components. */
int pt_runset_load(pt_runset *set, const char *dir, char *err);
/* Parse one events.jsonl into set (appending runs). Same codes. */
int pt_runset_load_file(pt_runset *set, const char *path, const char *run_dir, char *err);
void pt_runset_free(pt_runset *set);

/* Label of a run for legends: strategy, plus " n=<clients>" and "
 * (<backend>)" when the set has runs that differ in those. */
void pt_runset_label(const pt_runset *set, size_t i, char *buf, size_t len);

/* Last and best centralised accuracy (NAN when none), round of the best,
 * final centralised loss, mean round time over rounds >= 1. */
typedef struct pt_run_summary {
    double final_accuracy, best_accuracy, final_loss, mean_round_time;
    double final_accuracy_distributed, final_loss_distributed;
    int best_round, rounds_completed, clients;
    double fit_cpu_mean, eval_cpu_mean, fit_time_mean, eval_time_mean, peak_rss_max;
} pt_run_summary;
void pt_run_summarize(const pt_run_data *run, pt_run_summary *out);

/* Write OUT/metrics.csv (tidy: strategy,n_clients,backend,client,metric,
 * value,timestamp,round; RFC 4180 quoting) and OUT/summary.json. The
 * metrics are every numeric field of round0/round/run_end (client "server")
 * and of fit/evaluate events (client = source, metric "fit_<field>" /
 * "evaluate_<field>", wall_time as "<phase>_time"); timestamp is ISO-8601 UTC. */
int pt_runset_write_csv(const pt_runset *set, const char *path, char *err);
int pt_runset_write_summary(const pt_runset *set, const char *path, char *err);

/* ---- report (core/report_html.c) ------------------------------------------ */
typedef struct pt_report_opts {
    const char *title;  /* NULL: "Petal federated-learning report" */
    int log_loss;       /* -1 auto (log scale when loss spans >= 2 decades), 0 linear, 1 log */
} pt_report_opts;
/* Write one self-contained HTML file (inline CSS, SVG charts, no scripts). */
int pt_report_write_html(const pt_runset *set, const char *path, const pt_report_opts *o,
                         char *err);
/* Load dir and write dir/metrics.csv, dir/summary.json, dir/report.html. */
int pt_report_build(const char *dir, const pt_report_opts *o, char *err);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_RESULTS_INT_H */
