/* results.c - results writer: Flower-style log file + events.jsonl (see results_int.h). */
#include "results_int.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

struct pt_results {
    pthread_mutex_t mu;
    int log_fd;
    int ev_fd;
    char *dir;
    char source[72];
};

static int mkdir_p(const char *path, char *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return pt_seterr(err, PT_ERR_INVAL, "bad directory path");
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return pt_seterr(err, PT_ERR_IO, "cannot create directory %s: %s", buf,
                             strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_IO, "%s is not a directory", path);
    return PT_OK;
}

static int valid_source(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return strcmp(s, ".") && strcmp(s, "..");
}

int pt_results_open(pt_results **out, const char *dir, const char *source, char *err)
{
    char path[4200];
    int rc;
    if (!out) return pt_seterr(err, PT_ERR_INVAL, "results: NULL output pointer");
    *out = NULL;
    if (!dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "results: empty directory");
    if (!valid_source(source))
        return pt_seterr(err, PT_ERR_INVAL,
                         "results: bad source name '%s' (want 1-64 chars of [A-Za-z0-9_.-])",
                         source ? source : "(null)");
    if ((rc = mkdir_p(dir, err)) != PT_OK) return rc;

    pt_results *r = calloc(1, sizeof *r);
    if (!r) return pt_seterr(err, PT_ERR_NOMEM, "results: out of memory");
    r->log_fd = r->ev_fd = -1;
    r->dir = strdup(dir);
    if (!r->dir) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "results: out of memory");
        goto fail_alloc;
    }
    snprintf(r->source, sizeof r->source, "%s", source);

    snprintf(path, sizeof path, "%s/%s_log.log", dir, source);
    char e2[PT_ERRLEN];
    r->log_fd = pt_open_write(path, 1, e2);
    if (r->log_fd < 0) {
        rc = pt_seterr(err, PT_ERR_IO, "cannot open %s", e2);
        goto fail_alloc;
    }
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    r->ev_fd = pt_open_write(path, 1, e2);
    if (r->ev_fd < 0) {
        rc = pt_seterr(err, PT_ERR_IO, "cannot open %s", e2);
        goto fail_log;
    }
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return PT_OK;

fail_log:
    close(r->log_fd);
fail_alloc:
    free(r->dir);
    free(r);
    return rc;
}

void pt_results_close(pt_results *r)
{
    if (!r) return;
    if (r->log_fd >= 0) close(r->log_fd);
    if (r->ev_fd >= 0) close(r->ev_fd);
    pthread_mutex_destroy(&r->mu);
    free(r->dir);
    free(r);
}

const char *pt_results_dir(const pt_results *r) { return r ? r->dir : NULL; }
const char *pt_results_source(const pt_results *r) { return r ? r->source : NULL; }

/* Write all of buf in one write() call where the kernel allows (O_APPEND
 * makes a regular-file write atomic with respect to other appenders); retry
 * the remainder on a short write or EINTR. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return PT_ERR_IO;
        }
        buf += w;
        len -= (size_t)w;
    }
    return PT_OK;
}

static const char *level_name(pt_log_level l)
{
    switch (l) {
    case PT_LOG_DEBUG: return "DEBUG";
    case PT_LOG_INFO: return "INFO";
    case PT_LOG_WARN: return "WARNING";
    case PT_LOG_ERROR: return "ERROR";
    default: return "INFO";
    }
}

size_t pt_results_format_line(char *buf, size_t len, pt_log_level lvl, const char *file, int line,
                              const char *msg)
{
    struct timespec ts;
    struct tm tm;
    const char *base = file ? strrchr(file, '/') : NULL;
    int n;
    if (!buf || len == 0) return 0;
    base = base ? base + 1 : (file ? file : "?");
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = snprintf(buf, len, "%s flwr %04d-%02d-%02d %02d:%02d:%02d,%03ld | %s:%d | %s",
                 level_name(lvl), tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, base, line, msg ? msg : "");
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < len ? (size_t)n : len - 1;
}

void pt_results_vlog(pt_results *r, pt_log_level lvl, const char *file, int line,
                     const char *fmt, va_list ap)
{
    char raw[4096], msg[4096], out[4600];
    size_t n;
    if (lvl < pt_log_get_level() || lvl >= PT_LOG_OFF) return;
    vsnprintf(raw, sizeof raw, fmt, ap);
    pt_escape_ctrl(msg, sizeof msg, raw); /* one record, one line */
    pt_log_write(lvl, file, line, "%s", msg);
    if (!r) return;
    n = pt_results_format_line(out, sizeof out - 1, lvl, file, line, msg);
    out[n++] = '\n';
    pthread_mutex_lock(&r->mu);
    (void)write_all(r->log_fd, out, n);
    pthread_mutex_unlock(&r->mu);
}

void pt_results_log(pt_results *r, pt_log_level lvl, const char *file, int line,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pt_results_vlog(r, lvl, file, line, fmt, ap);
    va_end(ap);
}

/* ---- JSON helpers --------------------------------------------------------- */

static cJSON *ev_new(const pt_results *r, const char *event)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    /* ts with microseconds: cJSON prints 15 significant digits, too few. */
    char ts[32];
    snprintf(ts, sizeof ts, "%.6f", pt_wall());
    cJSON *n = cJSON_CreateRaw(ts);
    if (!n || !cJSON_AddItemToObject(o, "ts", n)) {
        cJSON_Delete(n);
        goto fail;
    }
    if (!cJSON_AddStringToObject(o, "source", r->source)) goto fail;
    if (!cJSON_AddStringToObject(o, "event", event)) goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* Finite doubles as numbers, NAN/inf as null. Returns 0 on OOM. */
static int add_num(cJSON *o, const char *k, double v)
{
    if (!isfinite(v)) return cJSON_AddNullToObject(o, k) != NULL;
    return cJSON_AddNumberToObject(o, k, v) != NULL;
}

/* Integers: negative means unknown (null). Values up to 2^53 are exact in cJSON. */
static int add_count(cJSON *o, const char *k, int64_t v)
{
    if (v < 0) return cJSON_AddNullToObject(o, k) != NULL;
    return cJSON_AddNumberToObject(o, k, (double)v) != NULL;
}

static int add_str(cJSON *o, const char *k, const char *v)
{
    if (!v) return cJSON_AddNullToObject(o, k) != NULL;
    return cJSON_AddStringToObject(o, k, v) != NULL;
}

static cJSON *scalar_json(const pt_scalar *s)
{
    switch (s->type) {
    case PT_SCALAR_DOUBLE: return isfinite(s->v.d) ? cJSON_CreateNumber(s->v.d) : cJSON_CreateNull();
    case PT_SCALAR_SINT64: return cJSON_CreateNumber((double)s->v.i);
    case PT_SCALAR_UINT64: return cJSON_CreateNumber((double)s->v.u);
    case PT_SCALAR_BOOL: return cJSON_CreateBool(s->v.b);
    case PT_SCALAR_STRING: return cJSON_CreateString(s->v.s.ptr ? s->v.s.ptr : "");
    default: return NULL; /* bytes: skipped */
    }
}

static int reserved_key(const char *k)
{
    return !strcmp(k, "ts") || !strcmp(k, "source") || !strcmp(k, "event");
}

/* Add every entry of c to o (skipping reserved keys and bytes). 0 on OOM. */
static int add_config_fields(cJSON *o, const pt_config *c)
{
    if (!c) return 1;
    for (size_t i = 0; i < c->n; i++) {
        if (!c->e[i].key || reserved_key(c->e[i].key)) continue;
        if (c->e[i].val.type == PT_SCALAR_BYTES) continue;
        cJSON *v = scalar_json(&c->e[i].val);
        if (!v) return 0;
        cJSON_DeleteItemFromObjectCaseSensitive(o, c->e[i].key);
        if (!cJSON_AddItemToObject(o, c->e[i].key, v)) {
            cJSON_Delete(v);
            return 0;
        }
    }
    return 1;
}

/* As a nested object under key; null when c is NULL. */
static int add_config_obj(cJSON *o, const char *key, const pt_config *c)
{
    if (!c) return cJSON_AddNullToObject(o, key) != NULL;
    cJSON *m = cJSON_AddObjectToObject(o, key);
    if (!m) return 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!c->e[i].key || c->e[i].val.type == PT_SCALAR_BYTES) continue;
        cJSON *v = scalar_json(&c->e[i].val);
        if (!v) return 0;
        if (!cJSON_AddItemToObject(m, c->e[i].key, v)) {
            cJSON_Delete(v);
            return 0;
        }
    }
    return 1;
}

/* Serialise, append '\n', write in one call; frees o. */
static int ev_emit(pt_results *r, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    int rc;
    cJSON_Delete(o);
    if (!s) return PT_ERR_NOMEM;
    size_t n = strlen(s);
    if (n + 1 > PT_RESULTS_MAX_LINE) { /* the reader would refuse it */
        free(s);
        return PT_ERR_RANGE;
    }
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return PT_ERR_NOMEM;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    pthread_mutex_lock(&r->mu);
    rc = write_all(r->ev_fd, line, n + 1);
    pthread_mutex_unlock(&r->mu);
    free(line);
    if (rc != PT_OK) PT_WARN("results: writing %s/events.jsonl failed: %s", r->dir, strerror(errno));
    return rc;
}

#define CHECK(x)                                                                           \
    do {                                                                                   \
        if (!(x)) goto fail_oom;                                                           \
    } while (0)

int pt_results_run_start(pt_results *r, const pt_run_info *info)
{
    if (!r || !info) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, "run_start");
    CHECK(o);
    CHECK(add_str(o, "strategy", info->strategy));
    CHECK(add_count(o, "n_clients", info->n_clients));
    CHECK(add_str(o, "backend", info->backend));
    CHECK(add_str(o, "model", info->model));
    CHECK(add_str(o, "dataset", info->dataset));
    CHECK(add_count(o, "rounds", info->rounds));
    CHECK(add_str(o, "address", info->address));
    CHECK(add_config_obj(o, "config", info->config));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

int pt_results_round0(pt_results *r, double loss, double accuracy, double evaluate_time)
{
    if (!r) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, "round0");
    CHECK(o);
    CHECK(add_count(o, "round", 0));
    CHECK(add_num(o, "loss_centralized", loss));
    CHECK(add_num(o, "accuracy_centralized", accuracy));
    CHECK(add_num(o, "evaluate_time", evaluate_time));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

void pt_round_stats_init(pt_round_stats *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->fit_time = s->evaluate_time = s->round_time = NAN;
    s->loss_centralized = s->accuracy_centralized = NAN;
    s->loss_distributed = s->accuracy_distributed = NAN;
    s->bytes_sent = s->bytes_received = -1;
    s->clients_sampled = s->results = s->failures = -1;
    s->eval_results = s->eval_failures = -1;
    s->metrics = NULL;
}

static int round_event(pt_results *r, const pt_round_stats *s, int with_metrics);

int pt_results_round(pt_results *r, const pt_round_stats *s)
{
    if (!r || !s) return PT_ERR_INVAL;
    int rc = round_event(r, s, 1);
    if (rc == PT_ERR_RANGE && s->metrics) {
        PT_WARN("results: round %d's %zu metrics would make its events.jsonl line longer than "
                "%zu bytes: written without them", s->round, s->metrics->n,
                PT_RESULTS_MAX_LINE);
        rc = round_event(r, s, 0);
    }
    return rc;
}

static int round_event(pt_results *r, const pt_round_stats *s, int with_metrics)
{
    cJSON *o = ev_new(r, "round");
    CHECK(o);
    CHECK(add_count(o, "round", s->round));
    CHECK(add_num(o, "fit_time", s->fit_time));
    CHECK(add_num(o, "evaluate_time", s->evaluate_time));
    CHECK(add_num(o, "round_time", s->round_time));
    CHECK(add_num(o, "loss_centralized", s->loss_centralized));
    CHECK(add_num(o, "accuracy_centralized", s->accuracy_centralized));
    CHECK(add_num(o, "loss_distributed", s->loss_distributed));
    CHECK(add_num(o, "accuracy_distributed", s->accuracy_distributed));
    CHECK(add_count(o, "bytes_sent", s->bytes_sent));
    CHECK(add_count(o, "bytes_received", s->bytes_received));
    CHECK(add_count(o, "clients_sampled", s->clients_sampled));
    CHECK(add_count(o, "results", s->results));
    CHECK(add_count(o, "failures", s->failures));
    CHECK(add_count(o, "eval_results", s->eval_results));
    CHECK(add_count(o, "eval_failures", s->eval_failures));
    if (s->metrics && with_metrics) CHECK(add_config_obj(o, "metrics", s->metrics));
    if (s->metrics && !with_metrics)
        CHECK(add_str(o, "metrics_omitted", "over the events.jsonl line limit"));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

int pt_results_failure(pt_results *r, int round, const char *client, const char *phase,
                       const char *reason)
{
    if (!r) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, "failure");
    CHECK(o);
    CHECK(add_count(o, "round", round));
    CHECK(add_str(o, "client", client));
    CHECK(add_str(o, "phase", phase));
    CHECK(add_str(o, "reason", reason));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

int pt_results_run_end(pt_results *r, double total_time, int rounds_completed, const char *status,
                       const char *reason)
{
    if (!r) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, "run_end");
    CHECK(o);
    CHECK(add_num(o, "total_time", total_time));
    CHECK(add_count(o, "rounds", rounds_completed));
    CHECK(add_str(o, "status", status ? status : "ok"));
    CHECK(add_str(o, "reason", reason));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

int pt_results_client_start(pt_results *r, const pt_client_info *info)
{
    if (!r || !info) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, "client_start");
    CHECK(o);
    CHECK(add_str(o, "client", info->client));
    CHECK(add_str(o, "partition", info->partition));
    CHECK(add_count(o, "train_examples", info->train_examples));
    CHECK(add_count(o, "val_examples", info->val_examples));
    CHECK(add_str(o, "backend", info->backend));
    CHECK(add_str(o, "model", info->model));
    CHECK(add_str(o, "dataset", info->dataset));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

void pt_client_stats_init(pt_client_stats *s)
{
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->round = -1;
    s->wall_time = NAN;
    s->cpu_process_percent = s->cpu_system_percent = NAN;
    s->examples = s->peak_rss_bytes = -1;
    s->loss = s->accuracy = NAN;
    s->metrics = NULL;
}

static int client_event(pt_results *r, const char *name, const pt_client_stats *s)
{
    if (!r || !s) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, name);
    CHECK(o);
    CHECK(add_count(o, "round", s->round));
    CHECK(add_num(o, "wall_time", s->wall_time));
    CHECK(add_num(o, "cpu_process_percent", s->cpu_process_percent));
    CHECK(add_num(o, "cpu_system_percent", s->cpu_system_percent));
    CHECK(add_count(o, "examples", s->examples));
    CHECK(add_count(o, "peak_rss_bytes", s->peak_rss_bytes));
    CHECK(add_num(o, "loss", s->loss));
    CHECK(add_num(o, "accuracy", s->accuracy));
    if (s->metrics) CHECK(add_config_obj(o, "metrics", s->metrics));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

int pt_results_fit(pt_results *r, const pt_client_stats *s) { return client_event(r, "fit", s); }

int pt_results_evaluate(pt_results *r, const pt_client_stats *s)
{
    return client_event(r, "evaluate", s);
}

int pt_results_client_end(pt_results *r, double total_time, const char *status,
                          const char *reason)
{
    if (!r) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, "client_end");
    CHECK(o);
    CHECK(add_num(o, "total_time", total_time));
    CHECK(add_str(o, "status", status ? status : "ok"));
    CHECK(add_str(o, "reason", reason));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}

int pt_results_event(pt_results *r, const char *event, const pt_config *fields)
{
    if (!r || !event || !*event) return PT_ERR_INVAL;
    cJSON *o = ev_new(r, event);
    CHECK(o);
    CHECK(add_config_fields(o, fields));
    return ev_emit(r, o);
fail_oom:
    cJSON_Delete(o);
    return PT_ERR_NOMEM;
}
