/* folder.c - image folders the way Keras' image_dataset_from_directory reads
 * them: one subfolder per class, files sorted, seeded shuffle, validation
 * split taken from the end. */
#include "image_int.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fentry {
    char *root; /* directory holding the file, relative to the dataset folder */
    char *name;
    int label;
} fentry;

typedef struct flist {
    fentry *v;
    size_t n, cap;
    char **classes;
    int nclasses;
} flist;

static void flist_free(flist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].root);
        free(l->v[i].name);
    }
    free(l->v);
    for (int i = 0; i < l->nclasses; i++) free(l->classes[i]);
    free(l->classes);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Within one class: sorted by directory, then by file name (Keras sorts
 * os.walk by root, then the files of each root). */
static int cmp_entry(const void *a, const void *b)
{
    const fentry *x = a, *y = b;
    int c = strcmp(x->root, y->root);
    return c ? c : strcmp(x->name, y->name);
}

static int add_entry(flist *l, const char *root, const char *name, int label)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        fentry *v = realloc(l->v, nc * sizeof *v);
        if (!v) return PT_ERR_NOMEM;
        l->v = v;
        l->cap = nc;
    }
    fentry *e = &l->v[l->n];
    e->root = strdup(root);
    e->name = strdup(name);
    e->label = label;
    if (!e->root || !e->name) {
        free(e->root);
        free(e->name);
        return PT_ERR_NOMEM;
    }
    l->n++;
    return PT_OK;
}

/* Collect regular files under base/rel (recursively, depth-limited). */
static int walk(flist *l, const char *base, const char *rel, int label, int depth, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    DIR *d = opendir(path);
    if (!d) return pt_seterr(err, PT_ERR_IO, "%s: %s", path, strerror(errno));
    struct dirent *e;
    int rc = PT_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* ., .., hidden files */
        char sub[4096], full[8192];
        int k = snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
        if (k < 0 || (size_t)k >= sizeof sub) continue;
        snprintf(full, sizeof full, "%s/%s", base, sub);
        struct stat st;
        if (stat(full, &st) != 0) continue; /* dangling link */
        if (S_ISDIR(st.st_mode)) {
            if (depth < 8 && (rc = walk(l, base, sub, label, depth + 1, err))) break;
        } else if (S_ISREG(st.st_mode)) {
            if ((rc = add_entry(l, rel, e->d_name, label))) {
                rc = pt_seterr(err, rc, "out of memory listing %s", path);
                break;
            }
        }
    }
    closedir(d);
    return rc;
}

static int list_folder(flist *l, const char *dir, char *err)
{
    struct stat st;
    memset(l, 0, sizeof *l);
    if (stat(dir, &st) != 0)
        return pt_seterr(err, errno == ENOENT ? PT_ERR_NOTFOUND : PT_ERR_IO,
                         "dataset folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_INVAL, "dataset %s is not a folder", dir);
    DIR *d = opendir(dir);
    if (!d) return pt_seterr(err, PT_ERR_IO, "dataset folder %s: %s", dir, strerror(errno));
    struct dirent *e;
    size_t cap = 0, nfiles_top = 0;
    int rc = PT_OK;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (stat(full, &st) != 0) continue;
        if (!S_ISDIR(st.st_mode)) {
            nfiles_top++;
            continue;
        }
        if ((size_t)l->nclasses == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(l->classes, cap * sizeof *v);
            if (!v) {
                rc = PT_ERR_NOMEM;
                break;
            }
            l->classes = v;
        }
        if (!(l->classes[l->nclasses] = strdup(e->d_name))) {
            rc = PT_ERR_NOMEM;
            break;
        }
        l->nclasses++;
    }
    closedir(d);
    if (rc) {
        flist_free(l);
        return pt_seterr(err, rc, "out of memory listing %s", dir);
    }
    if (l->nclasses == 0) {
        flist_free(l);
        if (nfiles_top)
            return pt_seterr(err, PT_ERR_FORMAT,
                             "dataset folder %s has %zu files but no class subfolders (expected "
                             "one subfolder per class)",
                             dir, nfiles_top);
        return pt_seterr(err, PT_ERR_FORMAT,
                         "dataset folder %s is empty (expected one subfolder per class)", dir);
    }
    qsort(l->classes, (size_t)l->nclasses, sizeof *l->classes, cmp_str);
    for (int c = 0; c < l->nclasses; c++) {
        size_t start = l->n;
        if ((rc = walk(l, dir, l->classes[c], c, 0, err))) {
            flist_free(l);
            return rc;
        }
        if (l->n > start) qsort(l->v + start, l->n - start, sizeof *l->v, cmp_entry);
    }
    if (l->n == 0) {
        int nc = l->nclasses;
        flist_free(l);
        return pt_seterr(err, PT_ERR_FORMAT, "dataset folder %s: its %d class subfolders hold no files",
                         dir, nc);
    }
    return PT_OK;
}

/* ---- decoding -------------------------------------------------------------------- */

#define MAX_WARN 20 /* per-file warnings per split; the rest are only counted */

typedef struct job {
    const char *dir;
    const flist *l;
    const size_t *sel; /* entries to decode */
    size_t n;
    int h, w, c;
    int quiet;
    float *x;          /* n slots */
    unsigned char *ok; /* per slot: 1 decoded, 0 skipped */
    int fatal;         /* PT_ERR_NOMEM */
    size_t next;       /* work queue */
    size_t warned;     /* per-file warnings printed (capped) */
    pthread_mutex_t mu;
} job;

static void *decode_worker(void *arg)
{
    job *j = arg;
    pd_img im;
    float *scratch = NULL;
    size_t scap = 0, per = (size_t)j->h * (size_t)j->w * (size_t)j->c;
    memset(&im, 0, sizeof im);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t i = j->next;
        j->next += 8;
        int stop = j->fatal;
        pthread_mutex_unlock(&j->mu);
        if (stop || i >= j->n) break;
        size_t end = i + 8 < j->n ? i + 8 : j->n;
        for (; i < end; i++) {
            const fentry *e = &j->l->v[j->sel[i]];
            char path[8192], why[PT_ERRLEN] = "";
            snprintf(path, sizeof path, "%s/%s/%s", j->dir, e->root, e->name);
            int rc = pd_read_file(&im, path, why);
            if (!rc) rc = pd_decode_image(&im, im.fbuf, im.flen, j->w, j->h, why);
            if (!rc && pd_img_to_float(&im, j->x + i * per, j->h, j->w, j->c, &scratch, &scap))
                rc = pt_seterr(why, PT_ERR_NOMEM, "out of memory");
            if (rc == PT_ERR_NOMEM) {
                pthread_mutex_lock(&j->mu);
                j->fatal = rc;
                pthread_mutex_unlock(&j->mu);
                break;
            }
            j->ok[i] = rc == PT_OK;
            if (rc && !j->quiet) {
                pthread_mutex_lock(&j->mu);
                size_t w = j->warned++;
                pthread_mutex_unlock(&j->mu);
                if (w < MAX_WARN) PT_WARN("skipping %s: %s", path, why);
                else if (w == MAX_WARN) PT_WARN("skipping more undecodable files (not listed)");
            }
        }
    }
    free(scratch);
    pd_img_free(&im);
    return NULL;
}

/* Decode the selected entries into a new dataset; undecodable files are
 * skipped and counted. */
static int decode_set(pd_dataset *d, const char *dir, const flist *l, const size_t *sel,
                      size_t n, const pd_open_opts *o, const char *what, char *err)
{
    int rc;
    if ((rc = pd_dataset_alloc(d, n, o->h, o->w, o->c, err))) return rc;
    job j;
    memset(&j, 0, sizeof j);
    j.dir = dir;
    j.l = l;
    j.sel = sel;
    j.n = n;
    j.h = o->h;
    j.w = o->w;
    j.c = o->c;
    j.quiet = o->quiet;
    j.x = d->x;
    if (!(j.ok = calloc(n ? n : 1, 1))) {
        pd_dataset_free(d);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&j.mu, NULL);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = o->threads > 0 ? o->threads : (int)(ncpu < 1 ? 1 : ncpu > 8 ? 8 : ncpu);
    if ((size_t)nt > (n + 7) / 8) nt = (int)((n + 7) / 8);
    if (nt > 64) nt = 64;
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < nt; t++)
        if (pthread_create(&th[started], NULL, decode_worker, &j) == 0) started++;
    decode_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.mu);
    if (j.fatal) {
        free(j.ok);
        pd_dataset_free(d);
        return pt_seterr(err, j.fatal, "out of memory decoding images in %s", dir);
    }
    size_t per = pd_example_floats(d), m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!j.ok[i]) continue;
        if (m != i) memmove(d->x + m * per, d->x + i * per, per * sizeof(float));
        d->y[m++] = l->v[sel[i]].label;
    }
    free(j.ok);
    d->skipped = n - m;
    d->n = m;
    if (n > 0 && m == 0) {
        size_t sk = d->skipped;
        pd_dataset_free(d);
        return pt_seterr(err, PT_ERR_FORMAT,
                         "dataset folder %s: none of the %zu %s files could be decoded as JPEG "
                         "or PNG",
                         dir, sk, what);
    }
    if ((rc = pd_set_class_names(d, (const char *const *)l->classes, l->nclasses, err))) {
        pd_dataset_free(d);
        return rc;
    }
    return PT_OK;
}

/* The files of sel[0..n) that part o->part of o->num_parts gets when they are
 * partitioned by their labels under `scheme` (as pd_partition would select
 * them from the decoded set), in order: a new array in *out, its length in
 * *nout. */
static int select_part(const flist *l, const size_t *sel, size_t n, const char *scheme,
                       const pd_open_opts *o, size_t **out, size_t *nout, char *err)
{
    int32_t *lab = malloc((n ? n : 1) * sizeof *lab);
    int *owner = malloc((n ? n : 1) * sizeof *owner);
    size_t *v = malloc((n ? n : 1) * sizeof *v);
    int rc = PT_OK;
    *out = NULL;
    *nout = 0;
    if (!lab || !owner || !v) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) lab[i] = l->v[sel[i]].label;
    if ((rc = pd_partition_labels(lab, n, l->nclasses, scheme, o->num_parts, o->seed, owner,
                                  err)))
        goto done;
    if (o->part < 0 || o->part >= o->num_parts) {
        rc = pt_seterr(err, PT_ERR_INVAL, "part %d out of range (0..%d)", o->part,
                       o->num_parts - 1);
        goto done;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (owner[i] == o->part) v[m++] = sel[i];
    *out = v;
    *nout = m;
    v = NULL;
done:
    free(lab);
    free(owner);
    free(v);
    return rc;
}

int pd_load_folder(pd_dataset *train, pd_dataset *test, const char *dir,
                   const pd_open_opts *opts, char *err)
{
    pd_open_opts o = opts ? *opts : pd_open_opts_default();
    flist l;
    size_t *perm = NULL, *tsel = NULL;
    int rc;
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (!dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "empty dataset folder path");
    if (!train && !test) return pt_seterr(err, PT_ERR_INVAL, "pd_load_folder: no output");
    if (o.h == 0) o.h = 256;
    if (o.w == 0) o.w = 256;
    if (o.c == 0) o.c = 3;
    if (o.h < 1 || o.w < 1 || o.h > 16384 || o.w > 16384)
        return pt_seterr(err, PT_ERR_INVAL, "invalid image size %dx%d", o.h, o.w);
    if (o.c != 1 && o.c != 3 && o.c != 4)
        return pt_seterr(err, PT_ERR_INVAL, "invalid channel count %d (use 1, 3 or 4)", o.c);
    if (!(o.val_split >= 0.0 && o.val_split < 1.0))
        return pt_seterr(err, PT_ERR_INVAL, "validation split %g must be in [0, 1)", o.val_split);
    if (test && o.val_split == 0.0)
        return pt_seterr(err, PT_ERR_INVAL,
                         "dataset folder %s has no test set: a validation split > 0 is needed",
                         dir);
    if ((rc = list_folder(&l, dir, err))) return rc;

    /* Keras: shuffle the file list with RandomState(seed), take the last
     * int(val_split * n) files for validation */
    size_t n = l.n;
    if (!(perm = malloc(n * sizeof *perm))) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) perm[i] = i;
    pd_mt mt;
    pd_mt_seed(&mt, (uint32_t)(o.seed & 0xffffffffu));
    pd_mt_shuffle(&mt, perm, n);
    size_t nval = (size_t)(o.val_split * (double)n);
    if (o.val_split > 0.0 && nval == 0) {
        rc = pt_seterr(err, PT_ERR_RANGE,
                       "dataset folder %s: validation split %g of %zu files is empty", dir,
                       o.val_split, n);
        goto fail;
    }
    size_t ntrain = n - nval;
    if (ntrain == 0) {
        rc = pt_seterr(err, PT_ERR_RANGE, "dataset folder %s: no files left for training", dir);
        goto fail;
    }
    if (o.limit && o.limit < ntrain) ntrain = o.limit;
    size_t *vsel = perm + (n - nval);
    if (o.test_limit && o.test_limit < nval) nval = o.test_limit;

    if (train) {
        size_t nsel = ntrain;
        const size_t *sel = perm;
        if (o.partition && *o.partition) {
            /* partition the training files by their labels before decoding */
            if ((rc = select_part(&l, perm, ntrain, o.partition, &o, &tsel, &nsel, err)))
                goto fail;
            sel = tsel;
        }
        if ((rc = decode_set(train, dir, &l, sel, nsel, &o, "training", err))) goto fail;
    }
    if (test && o.test_share) {
        /* this part's iid share of the validation files, decoded alone */
        if (o.num_parts < 1 || o.part < 0 || o.part >= o.num_parts) {
            rc = pt_seterr(err, PT_ERR_INVAL, "test share: part %d out of range (0..%d)", o.part,
                           o.num_parts - 1);
            goto fail;
        }
        if (nval < (size_t)o.num_parts) {
            nval = 0; /* too small to share: no local validation */
        } else {
            size_t *vs, m;
            rc = select_part(&l, vsel, nval, "iid", &o, &vs, &m, err);
            if (!rc && m) rc = decode_set(test, dir, &l, vs, m, &o, "validation", err);
            free(vs);
            if (rc) goto fail;
            nval = 0; /* decoded */
        }
    }
    if (test && nval && (rc = decode_set(test, dir, &l, vsel, nval, &o, "validation", err)))
        goto fail;
    if (train && train->skipped)
        PT_WARN("dataset folder %s: skipped %zu undecodable training files", dir, train->skipped);
    if (test && test->skipped)
        PT_WARN("dataset folder %s: skipped %zu undecodable validation files", dir,
                test->skipped);
    free(tsel);
    free(perm);
    flist_free(&l);
    return PT_OK;

fail:
    if (train) pd_dataset_free(train);
    if (test) pd_dataset_free(test);
    free(tsel);
    free(perm);
    flist_free(&l);
    return rc;
}
