/* results_read.c - read events.jsonl trees back into runs (see results_int.h). */
#include "results_int.h"

#include <cjson/cJSON.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 8
#define MAX_LINE PT_RESULTS_MAX_LINE /* longer lines are malformed (the writer's limit) */
#define MAX_ROUND 10000000

/* ---- small helpers ----------------------------------------------------------- */

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Integer field in [lo, hi], else def. */
static int jint(const cJSON *o, const char *k, int lo, int hi, int def)
{
    double d = jnum(o, k);
    if (isnan(d) || d != floor(d) || d < lo || d > hi) return def;
    return (int)d;
}

static void copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static void round_init(pt_round_rec *r, int round)
{
    r->round = round;
    r->ts = r->fit_time = r->evaluate_time = r->round_time = NAN;
    r->loss_centralized = r->accuracy_centralized = NAN;
    r->loss_distributed = r->accuracy_distributed = NAN;
    r->bytes_sent = r->bytes_received = NAN;
    r->clients_sampled = r->results = r->failures = r->eval_results = r->eval_failures = NAN;
}

static pt_run_data *new_run(pt_runset *set, const char *dir)
{
    if (set->n == set->cap) {
        size_t nc = set->cap ? set->cap * 2 : 8;
        pt_run_data *nr = realloc(set->runs, nc * sizeof *nr);
        if (!nr) return NULL;
        set->runs = nr;
        set->cap = nc;
    }
    pt_run_data *r = &set->runs[set->n];
    memset(r, 0, sizeof *r);
    r->dir = strdup(dir);
    if (!r->dir) return NULL;
    r->n_clients = r->rounds_requested = -1;
    r->start_ts = r->end_ts = r->total_time = NAN;
    round_init(&r->round0, 0);
    set->n++;
    return r;
}

static void free_run(pt_run_data *r)
{
    free(r->dir);
    free(r->config_json);
    free(r->rounds);
    free(r->cl);
}

void pt_runset_free(pt_runset *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->n; i++) free_run(&set->runs[i]);
    free(set->runs);
    for (size_t i = 0; i < set->n_clients; i++) free(set->clients[i]);
    free(set->clients);
    free(set->cmap);
    memset(set, 0, sizeof *set);
}

/* A new record for round k, appended; sort_rounds orders the records once
 * the file is read (inserting in order would cost n^2 for events out of
 * order). NULL on OOM. */
static pt_round_rec *get_round(pt_run_data *r, int k)
{
    if (r->n_rounds == r->cap_rounds) {
        size_t nc = r->cap_rounds ? r->cap_rounds * 2 : 16;
        pt_round_rec *nr = realloc(r->rounds, nc * sizeof *nr);
        if (!nr) return NULL;
        r->rounds = nr;
        r->cap_rounds = nc;
    }
    pt_round_rec *rr = &r->rounds[r->n_rounds++];
    round_init(rr, k);
    return rr;
}

/* indices into the records: by round, then by position in the file */
static int cmp_round_idx(const void *a, const void *b, void *arg)
{
    const pt_round_rec *v = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (v[x].round != v[y].round) return v[x].round < v[y].round ? -1 : 1;
    return (x > y) - (x < y);
}

/* Sorted by round (n log n, whatever the order of the events); a round
 * reported twice keeps its last record, as overwriting in file order would. */
static int sort_rounds(pt_run_data *r)
{
    size_t n = r->n_rounds, m = 0;
    if (n < 2) return PT_OK;
    size_t *ord = malloc(n * sizeof *ord);
    pt_round_rec *tmp = malloc(n * sizeof *tmp);
    if (!ord || !tmp) {
        free(ord);
        free(tmp);
        return PT_ERR_NOMEM;
    }
    memcpy(tmp, r->rounds, n * sizeof *tmp);
    for (size_t i = 0; i < n; i++) ord[i] = i;
    qsort_r(ord, n, sizeof *ord, cmp_round_idx, tmp);
    for (size_t i = 0; i < n; i++) {
        const pt_round_rec *x = &tmp[ord[i]];
        if (m && r->rounds[m - 1].round == x->round) r->rounds[m - 1] = *x; /* later wins */
        else r->rounds[m++] = *x;
    }
    r->n_rounds = m;
    free(ord);
    free(tmp);
    return PT_OK;
}

static void fill_round(pt_round_rec *rr, const cJSON *o, double ts)
{
    rr->ts = ts;
    rr->fit_time = jnum(o, "fit_time");
    rr->evaluate_time = jnum(o, "evaluate_time");
    rr->round_time = jnum(o, "round_time");
    rr->loss_centralized = jnum(o, "loss_centralized");
    rr->accuracy_centralized = jnum(o, "accuracy_centralized");
    rr->loss_distributed = jnum(o, "loss_distributed");
    rr->accuracy_distributed = jnum(o, "accuracy_distributed");
    rr->bytes_sent = jnum(o, "bytes_sent");
    rr->bytes_received = jnum(o, "bytes_received");
    rr->clients_sampled = jnum(o, "clients_sampled");
    rr->results = jnum(o, "results");
    rr->failures = jnum(o, "failures");
    rr->eval_results = jnum(o, "eval_results");
    rr->eval_failures = jnum(o, "eval_failures");
}

/* The index of a client source in set->clients (added when new); -1 on OOM. */
static size_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 29));
}

static int cmap_grow(pt_runset *set)
{
    size_t cap = set->cmap_cap ? set->cmap_cap * 2 : 64;
    size_t *m = calloc(cap, sizeof *m);
    if (!m) return PT_ERR_NOMEM;
    for (size_t i = 0; i < set->n_clients; i++) {
        size_t h = hash_str(set->clients[i]) & (cap - 1);
        while (m[h]) h = (h + 1) & (cap - 1);
        m[h] = i + 1;
    }
    free(set->cmap);
    set->cmap = m;
    set->cmap_cap = cap;
    return PT_OK;
}

static int intern_client(pt_runset *set, const char *src)
{
    if ((set->n_clients + 1) * 2 > set->cmap_cap && cmap_grow(set)) return -1;
    size_t h = hash_str(src) & (set->cmap_cap - 1);
    for (; set->cmap[h]; h = (h + 1) & (set->cmap_cap - 1))
        if (!strcmp(set->clients[set->cmap[h] - 1], src)) return (int)(set->cmap[h] - 1);
    if (set->n_clients == set->cap_clients) {
        size_t nc = set->cap_clients ? set->cap_clients * 2 : 16;
        char **v = realloc(set->clients, nc * sizeof *v);
        if (!v) return -1;
        set->clients = v;
        set->cap_clients = nc;
    }
    if (!(set->clients[set->n_clients] = strdup(src))) return -1;
    set->cmap[h] = ++set->n_clients;
    return (int)(set->n_clients - 1);
}

static int add_client_rec(pt_runset *set, pt_run_data *r, const cJSON *o, const char *source,
                          int evaluate, double ts)
{
    int cid = intern_client(set, source);
    if (cid < 0) return PT_ERR_NOMEM;
    if (r->n_cl == r->cap_cl) {
        size_t nc = r->cap_cl ? r->cap_cl * 2 : 32;
        pt_client_rec *n = realloc(r->cl, nc * sizeof *n);
        if (!n) return PT_ERR_NOMEM;
        r->cl = n;
        r->cap_cl = nc;
    }
    pt_client_rec *c = &r->cl[r->n_cl++];
    copy_str(c->source, sizeof c->source, source);
    c->cid = cid;
    c->evaluate = evaluate;
    c->round = jint(o, "round", 0, MAX_ROUND, -1);
    c->ts = ts;
    c->wall_time = jnum(o, "wall_time");
    c->cpu_process_percent = jnum(o, "cpu_process_percent");
    c->cpu_system_percent = jnum(o, "cpu_system_percent");
    c->examples = jnum(o, "examples");
    c->peak_rss_bytes = jnum(o, "peak_rss_bytes");
    c->loss = jnum(o, "loss");
    c->accuracy = jnum(o, "accuracy");
    return PT_OK;
}

/* Apply one event to the file's current run (creating runs as needed). */
static int apply_event(pt_runset *set, size_t first, const char *run_dir, const cJSON *o)
{
    const char *ev = jstr(o, "event"), *src = jstr(o, "source");
    double ts = jnum(o, "ts");
    if (!ev || !src) return PT_ERR_FORMAT;
    int is_server = strcmp(src, "server") == 0;
    pt_run_data *r = set->n > first ? &set->runs[set->n - 1] : NULL;

    if (is_server && !strcmp(ev, "run_start")) {
        if (!r || r->has_start) r = new_run(set, run_dir);
        if (!r) return PT_ERR_NOMEM;
        r->has_start = 1;
        r->start_ts = ts;
        copy_str(r->strategy, sizeof r->strategy, jstr(o, "strategy"));
        copy_str(r->backend, sizeof r->backend, jstr(o, "backend"));
        copy_str(r->model, sizeof r->model, jstr(o, "model"));
        copy_str(r->dataset, sizeof r->dataset, jstr(o, "dataset"));
        r->n_clients = jint(o, "n_clients", 0, 1000000, -1);
        r->rounds_requested = jint(o, "rounds", 0, MAX_ROUND, -1);
        const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(o, "config");
        free(r->config_json);
        r->config_json = cJSON_IsObject(cfg) ? cJSON_PrintUnformatted(cfg) : NULL;
        return PT_OK;
    }
    if (!r) r = new_run(set, run_dir);
    if (!r) return PT_ERR_NOMEM;
    if (!isnan(ts) && (isnan(r->start_ts) || (!r->has_start && ts < r->start_ts)))
        r->start_ts = ts;

    if (is_server && !strcmp(ev, "round0")) {
        fill_round(&r->round0, o, ts);
        r->round0.round = 0;
        r->has_round0 = 1;
    } else if (is_server && !strcmp(ev, "round")) {
        int k = jint(o, "round", 1, MAX_ROUND, -1);
        if (k < 0) return PT_ERR_FORMAT;
        pt_round_rec *rr = get_round(r, k);
        if (!rr) return PT_ERR_NOMEM;
        fill_round(rr, o, ts);
    } else if (is_server && !strcmp(ev, "run_end")) {
        r->has_end = 1;
        r->end_ts = ts;
        r->total_time = jnum(o, "total_time");
        copy_str(r->status, sizeof r->status, jstr(o, "status"));
    } else if (!strcmp(ev, "failure")) {
        r->n_failures++;
        copy_str(r->last_failure, sizeof r->last_failure, jstr(o, "reason"));
    } else if (!is_server && (!strcmp(ev, "fit") || !strcmp(ev, "evaluate"))) {
        return add_client_rec(set, r, o, src, ev[0] == 'e', ts);
    }
    return PT_OK; /* other events: not needed by the report */
}

/* Fill backend/strategy/n_clients of runs without run_start from the path
 * OUT/<backend>/<strategy>/<n_clients>. */
static void infer_from_path(pt_run_data *r)
{
    char buf[4096], *parts[3] = {0};
    copy_str(buf, sizeof buf, r->dir);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
    for (int i = 2; i >= 0; i--) {
        char *s = strrchr(buf, '/');
        parts[i] = s ? s + 1 : buf;
        if (!s) break;
        *s = '\0';
    }
    if (!r->strategy[0] && parts[1]) copy_str(r->strategy, sizeof r->strategy, parts[1]);
    if (!r->backend[0] && parts[0]) copy_str(r->backend, sizeof r->backend, parts[0]);
    if (r->n_clients < 0 && parts[2]) {
        char *end;
        long v = strtol(parts[2], &end, 10);
        if (*end == '\0' && v > 0 && v < 1000000) r->n_clients = (int)v;
    }
}

int pt_runset_load_file(pt_runset *set, const char *path, const char *run_dir, char *err)
{
    FILE *f;
    char *line = NULL;
    size_t cap = 0, first = set ? set->n : 0;
    ssize_t len;
    int rc = PT_OK;
    if (!set || !path || !run_dir) return pt_seterr(err, PT_ERR_INVAL, "NULL argument");
    char e2[PT_ERRLEN];
    if (!(f = pt_fopen_read(path, e2))) return pt_seterr(err, PT_ERR_IO, "cannot open %s", e2);
    set->files++;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len == 0 || (len == 1 && line[0] == '\n')) continue;
        if ((size_t)len > MAX_LINE) {
            set->bad_lines++;
            continue;
        }
        cJSON *o = pt_json_parse(line, (size_t)len, NULL); /* repeated keys: malformed */
        if (!o || !cJSON_IsObject(o)) {
            set->bad_lines++;
            cJSON_Delete(o);
            continue;
        }
        rc = apply_event(set, first, run_dir, o);
        cJSON_Delete(o);
        if (rc == PT_ERR_FORMAT) {
            set->bad_lines++;
            rc = PT_OK;
        } else if (rc != PT_OK) {
            pt_seterr(err, rc, "reading %s: out of memory", path);
            break;
        }
    }
    if (rc == PT_OK && ferror(f))
        rc = pt_seterr(err, PT_ERR_IO, "reading %s: %s", path, strerror(errno));
    free(line);
    fclose(f);
    for (size_t i = first; i < set->n; i++) {
        infer_from_path(&set->runs[i]);
        if (rc == PT_OK && sort_rounds(&set->runs[i]))
            rc = pt_seterr(err, PT_ERR_NOMEM, "reading %s: out of memory", path);
    }
    return rc;
}

/* ---- directory walk ---------------------------------------------------------- */

typedef struct path_list {
    char **v;
    size_t n, cap;
} path_list;

static int push_path(path_list *l, const char *p)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return PT_ERR_NOMEM;
        l->v = nv;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(p))) return PT_ERR_NOMEM;
    l->n++;
    return PT_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(const char *dir, int depth, path_list *out)
{
    DIR *d;
    struct dirent *de;
    char p[4096];
    struct stat st;
    int rc = PT_OK;
    snprintf(p, sizeof p, "%s/events.jsonl", dir);
    /* a special file there is read (and refused, named) rather than skipped */
    if (lstat(p, &st) == 0 && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode) &&
        (rc = push_path(out, dir)) != PT_OK)
        return rc;
    if (depth >= MAX_DEPTH || !(d = opendir(dir))) return PT_OK;
    while (rc == PT_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= sizeof p) continue;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rc = walk(p, depth + 1, out);
    }
    closedir(d);
    return rc;
}

static int cmp_run(const void *a, const void *b)
{
    const pt_run_data *x = a, *y = b;
    double tx = isnan(x->start_ts) ? 0 : x->start_ts, ty = isnan(y->start_ts) ? 0 : y->start_ts;
    if (tx != ty) return tx < ty ? -1 : 1;
    return strcmp(x->dir, y->dir);
}

int pt_runset_load(pt_runset *set, const char *dir, char *err)
{
    struct stat st;
    path_list paths = {0};
    int rc;
    char ev[4200];
    if (!set || !dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "no results directory given");
    memset(set, 0, sizeof *set);
    if (stat(dir, &st) != 0)
        return pt_seterr(err, PT_ERR_NOTFOUND, "results directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_INVAL, "results directory %s is %s, not a directory", dir,
                         pt_file_kind(st.st_mode));
    if ((rc = walk(dir, 0, &paths)) != PT_OK) {
        pt_seterr(err, rc, "scanning %s: out of memory", dir);
        goto out;
    }
    if (paths.n == 0) {
        rc = pt_seterr(err, PT_ERR_NOTFOUND,
                       "no events.jsonl under %s (expected OUT/<backend>/<strategy>/<n_clients>/"
                       "events.jsonl, as written by 'petal run' or 'petal server --out')",
                       dir);
        goto out;
    }
    qsort(paths.v, paths.n, sizeof *paths.v, cmp_str);
    for (size_t i = 0; i < paths.n; i++) {
        snprintf(ev, sizeof ev, "%s/events.jsonl", paths.v[i]);
        if ((rc = pt_runset_load_file(set, ev, paths.v[i], err)) != PT_OK) goto out;
    }
    if (set->n == 0) {
        rc = pt_seterr(err, PT_ERR_NOTFOUND, "no events in the %zu events.jsonl file(s) under %s",
                       paths.n, dir);
        goto out;
    }
    qsort(set->runs, set->n, sizeof *set->runs, cmp_run);
out:
    for (size_t i = 0; i < paths.n; i++) free(paths.v[i]);
    free(paths.v);
    if (rc != PT_OK) pt_runset_free(set);
    return rc;
}

/* ---- labels and summaries ------------------------------------------------------ */

void pt_runset_label(const pt_runset *set, size_t i, char *buf, size_t len)
{
    const pt_run_data *r = &set->runs[i];
    int diff_n = 0, diff_b = 0, dup = 0;
    for (size_t j = 0; j < set->n; j++) {
        if (set->runs[j].n_clients != r->n_clients) diff_n = 1;
        if (strcmp(set->runs[j].backend, r->backend)) diff_b = 1;
        if (j != i && !strcmp(set->runs[j].strategy, r->strategy) &&
            set->runs[j].n_clients == r->n_clients && !strcmp(set->runs[j].backend, r->backend))
            dup = 1;
    }
    size_t n = (size_t)snprintf(buf, len, "%s", r->strategy[0] ? r->strategy : "?");
    if (diff_n && n < len)
        n += (size_t)snprintf(buf + n, len - n, " n=%d", r->n_clients);
    if (diff_b && n < len) n += (size_t)snprintf(buf + n, len - n, " (%s)", r->backend);
    if (dup && n < len) snprintf(buf + n, len - n, " #%zu", i + 1);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void pt_run_summarize(const pt_run_data *run, pt_run_summary *s)
{
    double sum_rt = 0, fc = 0, ec = 0, ft = 0, et = 0;
    int n_rt = 0, nfc = 0, nec = 0, nft = 0, net = 0;
    s->final_accuracy = s->best_accuracy = s->final_loss = s->mean_round_time = NAN;
    s->final_accuracy_distributed = s->final_loss_distributed = NAN;
    s->fit_cpu_mean = s->eval_cpu_mean = s->fit_time_mean = s->eval_time_mean = NAN;
    s->peak_rss_max = NAN;
    s->best_round = -1;
    s->rounds_completed = (int)run->n_rounds;
    if (run->has_round0 && !isnan(run->round0.accuracy_centralized)) {
        s->best_accuracy = s->final_accuracy = run->round0.accuracy_centralized;
        s->best_round = 0;
    }
    if (run->has_round0) s->final_loss = run->round0.loss_centralized;
    for (size_t i = 0; i < run->n_rounds; i++) {
        const pt_round_rec *r = &run->rounds[i];
        if (!isnan(r->accuracy_centralized)) {
            s->final_accuracy = r->accuracy_centralized;
            if (isnan(s->best_accuracy) || r->accuracy_centralized > s->best_accuracy) {
                s->best_accuracy = r->accuracy_centralized;
                s->best_round = r->round;
            }
        }
        if (!isnan(r->loss_centralized)) s->final_loss = r->loss_centralized;
        if (!isnan(r->accuracy_distributed))
            s->final_accuracy_distributed = r->accuracy_distributed;
        if (!isnan(r->loss_distributed)) s->final_loss_distributed = r->loss_distributed;
        if (!isnan(r->round_time)) {
            sum_rt += r->round_time;
            n_rt++;
        }
    }
    if (n_rt) s->mean_round_time = sum_rt / n_rt;
    /* distinct clients: sort the records' client ids (n log n, not n^2) */
    int clients = 0;
    int *ids = malloc((run->n_cl ? run->n_cl : 1) * sizeof *ids);
    if (ids) {
        for (size_t i = 0; i < run->n_cl; i++) ids[i] = run->cl[i].cid;
        qsort(ids, run->n_cl, sizeof *ids, cmp_int);
        for (size_t i = 0; i < run->n_cl; i++) clients += !i || ids[i] != ids[i - 1];
        free(ids);
    }
    for (size_t i = 0; i < run->n_cl; i++) {
        const pt_client_rec *c = &run->cl[i];
        if (!isnan(c->cpu_process_percent)) {
            if (c->evaluate) ec += c->cpu_process_percent, nec++;
            else fc += c->cpu_process_percent, nfc++;
        }
        if (!isnan(c->wall_time)) {
            if (c->evaluate) et += c->wall_time, net++;
            else ft += c->wall_time, nft++;
        }
        if (!isnan(c->peak_rss_bytes) &&
            (isnan(s->peak_rss_max) || c->peak_rss_bytes > s->peak_rss_max))
            s->peak_rss_max = c->peak_rss_bytes;
    }
    s->clients = clients ? clients : run->n_clients;
    if (nfc) s->fit_cpu_mean = fc / nfc;
    if (nec) s->eval_cpu_mean = ec / nec;
    if (nft) s->fit_time_mean = ft / nft;
    if (net) s->eval_time_mean = et / net;
}
