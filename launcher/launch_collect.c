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
            cJSON *j = cJSON_ParseWithLength(p, l);
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
        char e2[PT_ERRLEN], md5[33];
        int grc = pl_s3_get(r->aws, r->bucket, k, PL_MAX_OBJECT, &body, NULL, e2);
        if (grc) {
            PT_WARN("%s", e2);
            (*bad)++;
            pl_str_free(&body);
            continue;
        }
        pl_md5(body.data ? body.data : "", body.len, md5, NULL);
        if ((long long)body.len != objs[i].size ||
            (strlen(objs[i].etag) == 32 && strcasecmp(md5, objs[i].etag))) {
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
