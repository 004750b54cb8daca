/* launch_collect.c - 'petal launch': download and verify the run's results,
 * lay out the results tree, merge the agents' events. */
#include "aws_int.h"
#include "launch_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct evbuf {
    char dir[1024];
    pl_str data;
} evbuf;

static int key_ok(const char *k)
{
    if (strstr(k, "..") || k[0] == '/' || strstr(k, "//")) return 0;
    for (const char *p = k; *p; p++)
        if (!(pl_valid_name((char[]){*p, 0}, 1) || *p == '/' || *p == '(' || *p == ')')) return 0;
    return 1;
}

typedef struct lineent {
    double ts;
    size_t order;
    const char *p;
    size_t len;
} lineent;

static int line_cmp(const void *a, const void *b)
{
    const lineent *x = a, *y = b;
    if (x->ts < y->ts) return -1;
    if (x->ts > y->ts) return 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* write events.jsonl sorted by "ts" (stable) */
static int write_events(const evbuf *e, char *err)
{
    size_t n = 0;
    const char *s = pl_str_c(&e->data);
    for (const char *p = s; *p; p++)
        if (*p == '\n') n++;
    lineent *v = calloc(n + 1, sizeof *v);
    if (!v) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    size_t k = 0;
    double last = 0;
    for (const char *p = s; *p;) {
        size_t l = strcspn(p, "\n");
        if (l) {
            cJSON *j = pt_json_parse(p, l, NULL);
            const cJSON *ts = j ? cJSON_GetObjectItemCaseSensitive(j, "ts") : NULL;
            double t = cJSON_IsNumber(ts) ? ts->valuedouble : last;
            last = t;
            cJSON_Delete(j);
            v[k] = (lineent){t, k, p, l};
            k++;
        }
        p += l + (p[l] ? 1 : 0);
    }
    qsort(v, k, sizeof *v, line_cmp);
    pl_str out = {0};
    int rc = PT_OK;
    for (size_t i = 0; i < k && !rc; i++)
        if (pl_str_add(&out, v[i].p, v[i].len) || pl_str_add(&out, "\n", 1))
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    char path[1200];
    snprintf(path, sizeof path, "%s/events.jsonl", e->dir);
    if (!rc) rc = pl_file_write(path, out.data ? out.data : "", out.len, err);
    pl_str_free(&out);
    free(v);
    return rc;
}

/* Download every object under results/, events/ and agents/, verify size
 * and MD5 against the listing's ETag, lay out the results tree. *bad counts
 * objects not saved and verified. */
int pl_run_collect(run *r, size_t *saved, size_t *bad, char *err)
{
    *saved = *bad = 0;
    pl_s3_object *objs = NULL;
    size_t n = 0;
    int rc = pl_s3_list(r->aws, r->bucket, NULL, 1000, &objs, &n, err);
    if (rc) return rc;
    evbuf *ev = NULL;
    size_t nev = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = objs[i].key;
        int is_res = !strncmp(k, "results/", 8), is_ev = !strncmp(k, "events/", 7),
            is_ag = !strncmp(k, "agents/", 7);
        if (!is_res && !is_ev && !is_ag) continue; /* our own manifests and artifacts */
        if (!key_ok(k)) {
            PT_WARN("bucket %s: unexpected object key '%s' not downloaded", r->bucket, k);
            (*bad)++;
            continue;
        }
        pl_str body = {0};
        char e2[PT_ERRLEN], md5[33], etag[80] = "";
        int grc = pl_s3_get(r->aws, r->bucket, k, PL_MAX_OBJECT, &body, etag, e2);
        if (grc) {
            PT_WARN("%s", e2);
            (*bad)++;
            pl_str_free(&body);
            continue;
        }
        pl_md5(body.data ? body.data : "", body.len, md5, NULL);
        /* a live run's agent may have replaced the object since the listing
         * (its status): then the body must match the ETag it came with */
        int fresh = strcmp(etag, objs[i].etag) && strlen(etag) == 32 && !strcasecmp(md5, etag);
        if (!fresh && ((long long)body.len != objs[i].size ||
                       (strlen(objs[i].etag) == 32 && strcasecmp(md5, objs[i].etag)))) {
            PT_WARN("%s: size %zu / MD5 %s do not match the listing (%lld, %s)", k, body.len, md5,
                    objs[i].size, objs[i].etag);
            (*bad)++;
            pl_str_free(&body);
            continue;
        }
        char path[1200];
        int wrc = PT_OK;
        if (is_res) {
            snprintf(path, sizeof path, "%s/%s", r->o->out_dir, k + 8);
            wrc = pl_file_write(path, body.data, body.len, e2);
        } else if (is_ag) {
            snprintf(path, sizeof path, "%s/agents/%s/%s", r->o->out_dir, r->run_id, k + 7);
            wrc = pl_file_write(path, body.data, body.len, e2);
        } else {
            /* events/<b>/<s>/<n>/<agent>.jsonl -> OUT/<b>/<s>/<n>/events.jsonl */
            char dir[1024];
            snprintf(dir, sizeof dir, "%s/%s", r->o->out_dir, k + 7);
            char *sl = strrchr(dir, '/');
            if (sl) *sl = 0;
            size_t j = 0;
            while (j < nev && strcmp(ev[j].dir, dir)) j++;
            if (j == nev) {
                evbuf *ne = realloc(ev, (nev + 1) * sizeof *ne);
                if (!ne) {
                    pl_str_free(&body);
                    rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
                    break;
                }
                ev = ne;
                memset(&ev[nev], 0, sizeof ev[nev]);
                snprintf(ev[nev].dir, sizeof ev[nev].dir, "%s", dir);
                nev++;
            }
            if (pl_str_add(&ev[j].data, body.data ? body.data : "", body.len) ||
                (body.len && body.data[body.len - 1] != '\n' && pl_str_add(&ev[j].data, "\n", 1)))
                wrc = pt_seterr(e2, PT_ERR_NOMEM, "out of memory");
        }
        pl_str_free(&body);
        if (wrc) {
            PT_WARN("%s", e2);
            (*bad)++;
        } else {
            (*saved)++;
        }
    }
    for (size_t j = 0; j < nev; j++) {
        char e2[PT_ERRLEN];
        if (!rc && write_events(&ev[j], e2)) {
            PT_WARN("%s", e2);
            (*bad)++;
        }
        pl_str_free(&ev[j].data);
    }
    free(ev);
    free(objs);
    return rc;
}

/* ---- agents' status objects ---- */
static int json_int(const cJSON *o, const char *name, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        v->valuedouble != (double)(int)v->valuedouble)
        return -1;
    *out = (int)v->valuedouble;
    return 0;
}

static int json_str(const cJSON *o, const char *name, char *dst, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return -1;
    for (const char *p = v->valuestring; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) return -1;
    snprintf(dst, cap, "%s", v->valuestring);
    return 0;
}

int pl_agent_parse_status(pl_agent_view *v, const char *run_id, const char *body, size_t n,
                          char *err)
{
    cJSON *j = pt_json_parse(body, n, NULL);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return pt_seterr(err, PT_ERR_FORMAT, "not a JSON object");
    }
    pl_agent_view t = *v;
    char rid[64] = "", agent[32] = "", what[32] = "";
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j, "exit");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "t");
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(j, "phases");
    if (json_str(j, "run", rid, sizeof rid) || strcmp(rid, run_id)) snprintf(what, sizeof what, "run");
    else if (json_str(j, "agent", agent, sizeof agent) || strcmp(agent, v->name)) snprintf(what, sizeof what, "agent");
    else if (json_str(j, "state", t.state, sizeof t.state) ||
             (strcmp(t.state, "running") && strcmp(t.state, "done") && strcmp(t.state, "failed")))
        snprintf(what, sizeof what, "state");
    else if (json_str(j, "stage", t.stage, sizeof t.stage)) snprintf(what, sizeof what, "stage");
    else if (json_str(j, "strategy", t.strategy, sizeof t.strategy)) snprintf(what, sizeof what, "strategy");
    else if (json_int(j, "k", 0, PL_MAX_STRATEGIES, &t.k) ||
             json_int(j, "strategies", 0, PL_MAX_STRATEGIES, &t.n_strat))
        snprintf(what, sizeof what, "k/strategies");
    else if (json_int(j, "round", 0, 100000, &t.round) || json_int(j, "rounds", 0, 100000, &t.rounds))
        snprintf(what, sizeof what, "round/rounds");
    else if (!cJSON_IsNull(ex) && !(cJSON_IsNumber(ex) && ex->valuedouble >= 0 && ex->valuedouble <= 255))
        snprintf(what, sizeof what, "exit");
    else if (!cJSON_IsNumber(ts) || !cJSON_IsObject(ph)) snprintf(what, sizeof what, "t/phases");
    if (!what[0]) {
        t.n_ph = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ph)
        {
            if (t.n_ph >= PL_MAX_PHASES || !cJSON_IsNumber(e) || !e->string ||
                strlen(e->string) >= sizeof t.ph[0].name) {
                snprintf(what, sizeof what, "phases");
                break;
            }
            snprintf(t.ph[t.n_ph].name, sizeof t.ph[0].name, "%s", e->string);
            t.ph[t.n_ph++].t = e->valuedouble;
        }
    }
    if (what[0]) {
        cJSON_Delete(j);
        return pt_seterr(err, PT_ERR_FORMAT, "bad status object (field '%s')", what);
    }
    t.t_status = ts->valuedouble;
    t.exit_code = cJSON_IsNumber(ex) ? (int)ex->valuedouble : -1;
    t.final = strcmp(t.state, "running") != 0;
    t.failed = !strcmp(t.state, "failed");
    t.have_status = 1;
    *v = t;
    cJSON_Delete(j);
    return PT_OK;
}

static double phase(const pl_agent_view *a, const char *name)
{
    for (int i = 0; i < a->n_ph; i++)
        if (!strcmp(a->ph[i].name, name)) return a->ph[i].t;
    return -1;
}

/* the first phase starting with prefix ("run:") */
static double phase_prefix(const pl_agent_view *a, const char *prefix)
{
    for (int i = 0; i < a->n_ph; i++)
        if (!strncmp(a->ph[i].name, prefix, strlen(prefix))) return a->ph[i].t;
    return -1;
}

/* ts of the server's round 1 in the first strategy's collected events */
static double round1_time(const run *r)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/%s/%d/events.jsonl", r->o->out_dir, r->o->backend,
             r->o->strategies[0], r->o->n_clients);
    pl_str ev = {0};
    char e2[PT_ERRLEN];
    double t1 = -1;
    if (pl_file_read(path, &ev, (size_t)64 << 20, e2)) return -1;
    for (const char *p = pl_str_c(&ev); *p && t1 < 0;) {
        size_t l = strcspn(p, "\n");
        cJSON *j = pt_json_parse(p, l, NULL);
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(j, "source");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "event");
        const cJSON *rd = cJSON_GetObjectItemCaseSensitive(j, "round");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(j, "ts");
        if (cJSON_IsString(src) && !strcmp(src->valuestring, "server") && cJSON_IsString(e) &&
            !strcmp(e->valuestring, "round") && cJSON_IsNumber(rd) && rd->valuedouble == 1 &&
            cJSON_IsNumber(ts))
            t1 = ts->valuedouble;
        cJSON_Delete(j);
        p += l + (p[l] ? 1 : 0);
    }
    pl_str_free(&ev);
    return t1;
}

void pl_run_timeline(run *r, pl_str *out)
{
    if (!r->n_agents || !r->agents[0].have_status) return;
    const pl_agent_view *s = &r->agents[0];
    double round1 = round1_time(r);
    double s_run = phase_prefix(s, "run:"), c_run = -1;
    for (size_t i = 1; i < r->n_agents; i++) {
        double t = phase_prefix(&r->agents[i], "run:");
        if (t > c_run) c_run = t;
    }
    double agents_up = s_run > c_run ? s_run : c_run;
    int built = phase(s, "build") >= 0;
    struct {
        const char *name, *what;
        double from, to;
    } rows[] = {
        {"provision", "bucket, uploads, group, AMI, RunInstances", r->t_launch, r->t_instances},
        {"boot", "RunInstances -> the user-data's first line", r->t_instances, phase(s, "boot")},
        {"setup", "metadata, manifest, downloads", phase(s, "boot"), phase(s, "packages")},
        {"packages", built ? "deps.sh build (server)" : "deps.sh runtime (server)",
         phase(s, "packages"), built ? phase(s, "build") : phase(s, "binary")},
        {"build", "make build/petal (server)", phase(s, "build"), phase(s, "share")},
        {"share", built ? "binary to S3, the clients fetch it and start"
                        : "binary from S3, the agents start",
         built ? phase(s, "share") : phase(s, "binary"), agents_up},
        {"round1", "round 1: fit + evaluate on every client", agents_up, round1},
    };
    cJSON *j = cJSON_CreateObject();
    cJSON *jp = cJSON_AddArrayToObject(j, "phases");
    double total = round1 > 0 ? round1 - r->t_launch : -1;
    pl_str_addf(out, "      timeline: launch -> round 1 %s%.0f s\n", total > 0 ? "" : "unknown: ",
                total > 0 ? total : 0);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rows[i].from < 0 || rows[i].to < 0) continue;
        double d = rows[i].to - rows[i].from;
        if (d < 0) d = 0; /* clocks of different machines */
        pl_str_addf(out, "        %-9s %6.1f s  %s\n", rows[i].name, d, rows[i].what);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "phase", rows[i].name);
        cJSON_AddStringToObject(e, "what", rows[i].what);
        cJSON_AddNumberToObject(e, "seconds", d);
        cJSON_AddItemToArray(jp, e);
    }
    cJSON_AddNumberToObject(j, "launch_to_round1", total);
    cJSON_AddStringToObject(j, "run_id", r->run_id);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    char path[1200], e2[PT_ERRLEN];
    snprintf(path, sizeof path, "%s/agents/%s/timeline.json", r->o->out_dir, r->run_id);
    if (txt && pl_file_write(path, txt, strlen(txt), e2)) PT_WARN("%s", e2);
    free(txt);
}

/* ---- a run started here or elsewhere ---- */
int pl_launch_status(const pl_launch_opts *oin, pl_str *out, char *err)
{
    pl_launch_opts o = *oin;
    run R, *r = &R;
    pl_run_init(r, &o, NULL);
    int rc = pl_run_attach(r, &o, "--status", err);
    pl_s3_object *objs = NULL;
    size_t n = 0;
    if (!rc) rc = pl_s3_list(r->aws, r->bucket, NULL, 1000, &objs, &n, err);
    if (rc) goto done;
    pl_instance *v = NULL;
    size_t nv = 0;
    char e2[PT_ERRLEN];
    int irc = pl_ec2_describe_instances(r->aws, NULL, 0, "petal:run-id", r->run_id, &v, &nv, e2);
    size_t results = 0;
    pl_str_addf(out, "run %s in %s, bucket s3://%s\n", r->run_id, r->region, r->bucket);
    double now = pt_wall();
    for (size_t i = 0; i < n; i++) {
        const char *k = objs[i].key;
        results += !strncmp(k, "results/", 8);
        size_t l = strlen(k);
        if (strncmp(k, "agents/", 7) || l < 15 || strcmp(k + l - 7, ".status")) continue;
        pl_agent_view a;
        memset(&a, 0, sizeof a);
        snprintf(a.name, sizeof a.name, "%.*s", (int)(l - 14 < 31 ? l - 14 : 31), k + 7);
        pl_str body = {0};
        pl_instance none = {0};
        a.inst = &none;
        if (pl_s3_get(r->aws, r->bucket, k, 65536, &body, NULL, e2) ||
            pl_agent_parse_status(&a, r->run_id, pl_str_c(&body), body.len, e2)) {
            pl_str_addf(out, "  %-10s %s\n", a.name, e2);
        } else {
            char st[200];
            if (!strncmp(a.stage, "run:", 4))
                snprintf(st, sizeof st, "%s %d/%d, round %d/%d", a.strategy, a.k, a.n_strat,
                         a.round, a.rounds);
            else
                snprintf(st, sizeof st, "%s", a.stage);
            pl_str_addf(out, "  %-10s %-8s %-40s (updated %.0f s ago)\n", a.name, a.state, st,
                        now - a.t_status);
        }
        pl_str_free(&body);
    }
    pl_str_addf(out, "  result files: %zu\n", results);
    if (irc)
        pl_str_addf(out, "  instances: %s\n", e2);
    for (size_t i = 0; !irc && i < nv; i++)
        pl_str_addf(out, "  instance %-20s %-14s %s\n", v[i].id, v[i].state, v[i].type);
    if (!irc && !nv) pl_str_addf(out, "  instances: none left\n");
    free(v);
done:
    free(objs);
    pl_run_free(r);
    return rc;
}

int pl_launch_collect(const pl_launch_opts *oin, volatile int *stop, char *err)
{
    pl_launch_opts o = *oin;
    run R, *r = &R;
    pl_run_init(r, &o, stop);
    int rc = pl_run_attach(r, &o, "--collect", err);
    size_t saved = 0, bad = 0;
    if (!rc) rc = pl_run_collect(r, &saved, &bad, err);
    if (!rc) {
        fprintf(stderr, "petal launch --collect %s: %zu file(s) saved and verified under %s\n",
                r->run_id, saved, o.out_dir);
        if (o.report && saved && o.report(o.out_dir, o.report_ud))
            PT_WARN("petal report %s failed", o.out_dir);
        if (bad)
            rc = pt_seterr(err, PT_ERR_IO, "%zu object(s) could not be downloaded and verified",
                           bad);
    }
    pl_run_free(r);
    return rc;
}
