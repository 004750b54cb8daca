/* folder.c - image folders the way Keras' image_dataset_from_directory reads
 * them: one subfolder per class, files sorted, seeded shuffle, validation
 * split taken from the end. */
#include "image_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- notes: skipped and ignored files, named (the first few) and counted ---- */

#define NOTE_NAMES 20 /* names kept per kind; reported: 5 (quiet) or all kept */

typedef struct notes {
    size_t n;
    char first[NOTE_NAMES][320];
} notes;

static void note(notes *s, const char *rel, const char *why)
{
    if (s->n < NOTE_NAMES) {
        size_t l = strlen(rel);
        if (l <= 200) /* long paths keep their start and their end */
            snprintf(s->first[s->n], sizeof s->first[0], "%s (%.110s)", rel, why);
        else
            snprintf(s->first[s->n], sizeof s->first[0], "%.60s...%s (%.110s)", rel,
                     rel + l - 137, why);
    }
    s->n++;
}

/* One log line per kind: "dataset folder D: WHAT N files: a (why); b (why) and M more". */
static void note_report(const notes *s, pt_log_level lvl, const char *dir, const char *what,
                        int quiet)
{
    char line[1800];
    size_t show = quiet ? 5 : NOTE_NAMES, off;
    if (!s->n) return;
    if (show > s->n) show = s->n;
    off = (size_t)snprintf(line, sizeof line, "dataset folder %s: %s %zu file%s: ", dir, what,
                           s->n, s->n == 1 ? "" : "s");
    for (size_t i = 0; i < show && off < sizeof line; i++)
        off += (size_t)snprintf(line + off, sizeof line - off, "%s%s", i ? "; " : "",
                                s->first[i]);
    if (s->n > show && off < sizeof line)
        snprintf(line + off, sizeof line - off, " and %zu more", s->n - show);
    pt_log_write(lvl, __FILE__, __LINE__, "%s", line);
}

/* ---- the file list ---------------------------------------------------------------- */

enum { K_REG = 0, K_SPECIAL, K_DANGLING };

typedef struct fentry {
    char *rel;       /* "class/sub/name", relative to the dataset folder */
    uint32_t dirlen; /* bytes of rel before the last '/' (the folder part) */
    int label;
    unsigned char kind, dropped;
    dev_t dev;
    ino_t ino;
    uint64_t key; /* pd_key(rel) */
} fentry;

typedef struct flist {
    fentry *v;
    size_t n, cap;
    char **classes;
    int nclasses;
    notes ignored; /* not images by name, not class folders: as Keras, not in the list */
    notes skipped; /* would have been in Keras' list (or are deeper/links): named */
} flist;

static void flist_free(flist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].rel);
    free(l->v);
    for (int i = 0; i < l->nclasses; i++) free(l->classes[i]);
    free(l->classes);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Within one class: by folder path, then by file name (Keras sorts os.walk's
 * tuples by root, then the files of each root). */
static int cmp_entry(const void *a, const void *b)
{
    const fentry *x = a, *y = b;
    size_t m = x->dirlen < y->dirlen ? x->dirlen : y->dirlen;
    int c = memcmp(x->rel, y->rel, m);
    if (c) return c;
    if (x->dirlen != y->dirlen) return x->dirlen < y->dirlen ? -1 : 1;
    return strcmp(x->rel + x->dirlen + 1, y->rel + y->dirlen + 1);
}

/* Keras' ALLOWLIST_FORMATS, compared as fname.lower().endswith(formats) */
static int image_name(const char *n)
{
    static const char *const ext[] = {".bmp", ".gif", ".jpeg", ".jpg", ".png"};
    size_t l = strlen(n);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t k = strlen(ext[i]);
        if (l >= k && !strcasecmp(n + l - k, ext[i])) return 1;
    }
    return 0;
}

static int add_entry(flist *l, const char *rel, size_t dirlen, int label, int kind,
                     const struct stat *st)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        fentry *v = realloc(l->v, nc * sizeof *v);
        if (!v) return PT_ERR_NOMEM;
        l->v = v;
        l->cap = nc;
    }
    fentry *e = &l->v[l->n];
    memset(e, 0, sizeof *e);
    if (!(e->rel = strdup(rel))) return PT_ERR_NOMEM;
    e->dirlen = (uint32_t)dirlen;
    e->label = label;
    e->kind = (unsigned char)kind;
    if (st) {
        e->dev = st->st_dev;
        e->ino = st->st_ino;
    }
    e->key = pd_key(rel);
    l->n++;
    return PT_OK;
}

/* List the files under the folder dfd (rel: its path relative to the dataset
 * folder, in a PATH_MAX buffer), as os.walk(followlinks=False) would. */
static int walk(flist *l, int dfd, char *rel, size_t rlen, int label, int depth, char *err)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        note(&l->skipped, rel, strerror(errno));
        return PT_OK;
    }
    struct dirent *e;
    int rc = PT_OK;
    while (!rc && (e = readdir(d))) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        size_t nl = strlen(name);
        if (rlen + 1 + nl >= 4096) {
            note(&l->skipped, name, "path longer than 4095 bytes");
            continue;
        }
        rel[rlen] = '/';
        memcpy(rel + rlen + 1, name, nl + 1);
        struct stat lst, st;
        if (fstatat(dirfd(d), name, &lst, AT_SYMLINK_NOFOLLOW) != 0) {
            note(&l->skipped, rel, strerror(errno));
        } else if (S_ISDIR(lst.st_mode)) {
            if (depth + 1 > PD_FOLDER_MAX_DEPTH) {
                char why[96];
                snprintf(why, sizeof why, "folder nested more than %d levels deep, not read",
                         PD_FOLDER_MAX_DEPTH);
                note(&l->skipped, rel, why);
            } else {
                int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) note(&l->skipped, rel, strerror(errno));
                else rc = walk(l, sub, rel, rlen + 1 + nl, label, depth + 1, err);
            }
        } else if (S_ISLNK(lst.st_mode) && fstatat(dirfd(d), name, &st, 0) == 0 &&
                   S_ISDIR(st.st_mode)) {
            /* os.walk lists it as a folder and, with followlinks=False, does not enter it */
            note(&l->skipped, rel, "symbolic link to a folder, not followed");
        } else if (!image_name(name)) {
            note(&l->ignored, rel, "not an image file name");
        } else if (S_ISLNK(lst.st_mode) && fstatat(dirfd(d), name, &st, 0) != 0) {
            rc = add_entry(l, rel, rlen, label, K_DANGLING, NULL); /* os.walk lists it */
        } else {
            if (!S_ISLNK(lst.st_mode)) st = lst;
            rc = add_entry(l, rel, rlen, label, S_ISREG(st.st_mode) ? K_REG : K_SPECIAL, &st);
        }
        rel[rlen] = 0;
    }
    closedir(d);
    if (rc == PT_ERR_NOMEM) return pt_seterr(err, rc, "out of memory listing the dataset folder");
    return rc;
}

typedef struct dupkey {
    dev_t dev;
    ino_t ino;
    size_t i;
} dupkey;

static int cmp_dup(const void *a, const void *b)
{
    const dupkey *x = a, *y = b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* The same file reached twice (links, hard links): keep its first path when
 * all its paths are in one class, drop it when its paths name several
 * classes; name what was dropped. Keras would list every path: one image,
 * several examples, possibly in both splits or under two labels. */
static int drop_duplicates(flist *l, char *err)
{
    size_t n = 0;
    dupkey *k = malloc((l->n ? l->n : 1) * sizeof *k);
    if (!k) return pt_seterr(err, PT_ERR_NOMEM, "out of memory listing the dataset folder");
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind != K_DANGLING) k[n++] = (dupkey){l->v[i].dev, l->v[i].ino, i};
    qsort(k, n, sizeof *k, cmp_dup);
    for (size_t a = 0, b; a < n; a = b) {
        int other = -1; /* a second class naming the file */
        for (b = a + 1; b < n && k[b].dev == k[a].dev && k[b].ino == k[a].ino; b++)
            if (other < 0 && l->v[k[b].i].label != l->v[k[a].i].label) other = l->v[k[b].i].label;
        if (b - a < 2) continue;
        int mixed = other >= 0;
        const fentry *first = &l->v[k[a].i];
        for (size_t j = mixed ? a : a + 1; j < b; j++) {
            char why[400];
            fentry *e = &l->v[k[j].i];
            if (mixed)
                snprintf(why, sizeof why, "the same file is in classes '%s' and '%s'",
                         l->classes[first->label], l->classes[other]);
            else
                snprintf(why, sizeof why, "the same file as %s", first->rel);
            note(&l->skipped, e->rel, why);
            e->dropped = 1;
        }
    }
    free(k);
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].dropped) {
            free(l->v[i].rel);
            continue;
        }
        l->v[m++] = l->v[i];
    }
    l->n = m;
    return PT_OK;
}

/* The class folders of dir (sorted); two names for one folder are an error. */
static int list_classes(flist *l, const char *dir, size_t *nfiles_top, char *err)
{
    DIR *d = opendir(dir);
    if (!d) return pt_seterr(err, PT_ERR_IO, "dataset folder %s: %s", dir, strerror(errno));
    struct dirent *e;
    size_t cap = 0;
    int rc = PT_OK;
    dupkey *ids = NULL;
    while ((e = readdir(d))) {
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (fstatat(dirfd(d), e->d_name, &st, 0) != 0 || !S_ISDIR(st.st_mode)) {
            note(&l->ignored, e->d_name, "not a class folder");
            (*nfiles_top)++;
            continue;
        }
        if (e->d_name[0] == '.') { /* Keras skips hidden class folders */
            note(&l->ignored, e->d_name, "hidden folder");
            continue;
        }
        if ((size_t)l->nclasses == cap) {
            cap = cap ? cap * 2 : 16;
            char **v = realloc(l->classes, cap * sizeof *v);
            dupkey *w = realloc(ids, cap * sizeof *w);
            if (v) l->classes = v;
            if (w) ids = w;
            if (!v || !w) {
                rc = PT_ERR_NOMEM;
                break;
            }
        }
        if (!(l->classes[l->nclasses] = strdup(e->d_name))) {
            rc = PT_ERR_NOMEM;
            break;
        }
        ids[l->nclasses] = (dupkey){st.st_dev, st.st_ino, (size_t)l->nclasses};
        l->nclasses++;
    }
    closedir(d);
    if (rc) {
        free(ids);
        return pt_seterr(err, rc, "out of memory listing %s", dir);
    }
    if (l->nclasses > 1) qsort(ids, (size_t)l->nclasses, sizeof *ids, cmp_dup);
    for (int i = 1; i < l->nclasses; i++)
        if (ids[i].dev == ids[i - 1].dev && ids[i].ino == ids[i - 1].ino) {
            const char *x = l->classes[ids[i - 1].i], *y = l->classes[ids[i].i];
            if (strcmp(x, y) > 0) {
                const char *t = x;
                x = y;
                y = t;
            }
            rc = pt_seterr(err, PT_ERR_FORMAT,
                           "dataset folder %s: class folders '%s' and '%s' are the same folder "
                           "(a link): every image in it would be an example of both classes",
                           dir, x, y);
            break;
        }
    free(ids);
    if (!rc && l->nclasses > 1)
        qsort(l->classes, (size_t)l->nclasses, sizeof *l->classes, cmp_str);
    return rc;
}

static int list_folder(flist *l, const char *dir, char *err)
{
    struct stat st;
    size_t nfiles_top = 0;
    int rc;
    memset(l, 0, sizeof *l);
    if (stat(dir, &st) != 0)
        return pt_seterr(err, errno == ENOENT ? PT_ERR_NOTFOUND : PT_ERR_IO,
                         "dataset folder %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_INVAL, "dataset %s is %s, not a folder", dir,
                         pt_file_kind(st.st_mode));
    if ((rc = list_classes(l, dir, &nfiles_top, err))) {
        flist_free(l);
        return rc;
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
    char *rel = malloc(4096);
    if (!rel) {
        flist_free(l);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory listing %s", dir);
    }
    for (int c = 0; c < l->nclasses; c++) {
        size_t start = l->n, cl = strlen(l->classes[c]);
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, l->classes[c]);
        memcpy(rel, l->classes[c], cl + 1);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) note(&l->skipped, rel, strerror(errno));
        else if ((rc = walk(l, fd, rel, cl, c, 0, err))) break;
        if (l->n > start) qsort(l->v + start, l->n - start, sizeof *l->v, cmp_entry);
    }
    free(rel);
    if (!rc) rc = drop_duplicates(l, err);
    if (rc) {
        flist_free(l);
        return rc;
    }
    if (l->n == 0) {
        int nc = l->nclasses;
        note_report(&l->ignored, PT_LOG_INFO, dir, "ignored", 0);
        note_report(&l->skipped, PT_LOG_WARN, dir, "skipped", 0);
        flist_free(l);
        return pt_seterr(err, PT_ERR_FORMAT,
                         "dataset folder %s: its %d class subfolders hold no image files "
                         "(.bmp, .gif, .jpeg, .jpg, .png)",
                         dir, nc);
    }
    return PT_OK;
}

/* ---- decoding -------------------------------------------------------------------- */

typedef struct job {
    const char *dir;
    const flist *l;
    const size_t *sel; /* entries to decode */
    size_t n;
    int h, w, c;
    pd_img_limits lim;
    float *x;          /* n slots */
    unsigned char *ok; /* per slot: 1 decoded, 0 skipped */
    int fatal;         /* PT_ERR_NOMEM */
    size_t next;       /* work queue */
    notes *skipped;    /* shared by the workers, under mu */
    notes *warned;     /* decoded despite libjpeg warnings */
    pthread_mutex_t mu;
} job;

/* Decode one entry into dst; why says why not. */
static int decode_one(job *j, const fentry *e, pd_img *im, float *dst, float **scratch,
                      size_t *scap, int *warnings, char *why)
{
    *warnings = 0;
    char path[8192];
    int rc;
    if (e->kind == K_DANGLING)
        return pt_seterr(why, PT_ERR_IO, "symbolic link to nothing");
    if (e->kind == K_SPECIAL)
        return pt_seterr(why, PT_ERR_IO, "not a regular file");
    snprintf(path, sizeof path, "%s/%s", j->dir, e->rel);
    if ((rc = pd_read_file(im, path, PD_MAX_FILE_BYTES(j->lim.max_pixels), why))) return rc;
    if ((rc = pd_decode_image(im, im->fbuf, im->flen, j->w, j->h, &j->lim, warnings, why)))
        return rc;
    if (pd_img_to_float(im, dst, j->h, j->w, j->c, scratch, scap))
        return pt_seterr(why, PT_ERR_NOMEM, "out of memory");
    return PT_OK;
}

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
            char why[PT_ERRLEN] = "";
            int nwarn;
            int rc = decode_one(j, e, &im, j->x + i * per, &scratch, &scap, &nwarn, why);
            if (rc == PT_ERR_NOMEM) {
                pthread_mutex_lock(&j->mu);
                j->fatal = rc;
                pthread_mutex_unlock(&j->mu);
                break;
            }
            j->ok[i] = rc == PT_OK;
            if (rc || nwarn) {
                pthread_mutex_lock(&j->mu);
                note(rc ? j->skipped : j->warned, e->rel, why);
                pthread_mutex_unlock(&j->mu);
            }
        }
    }
    free(scratch);
    pd_img_free(&im);
    return NULL;
}

/* Decode the selected entries into a new dataset; undecodable files are
 * skipped, counted and noted in *sk. */
static int decode_set(pd_dataset *d, const char *dir, const flist *l, const size_t *sel,
                      size_t n, const pd_open_opts *o, const char *what, notes *sk, char *err)
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
    j.lim.max_pixels = o->max_pixels;
    j.lim.max_scans = o->max_scans;
    j.x = d->x;
    j.skipped = &sk[0];
    j.warned = &sk[1];
    if (!(j.ok = calloc(n ? n : 1, 1)) ||
        !(d->keys = malloc((n ? n : 1) * sizeof *d->keys))) {
        free(j.ok);
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
        d->y[m] = l->v[sel[i]].label;
        d->keys[m++] = l->v[sel[i]].key;
    }
    free(j.ok);
    d->skipped = n - m;
    d->n = m;
    if (n > 0 && m == 0) {
        size_t sk_n = d->skipped;
        pd_dataset_free(d);
        return pt_seterr(err, PT_ERR_FORMAT,
                         "dataset folder %s: none of the %zu %s files could be decoded as JPEG "
                         "or PNG",
                         dir, sk_n, what);
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

/* The split's facts for a federation (pd_split_info). */
static int fill_split_info(pd_split_info *si, const flist *l, const size_t *perm, size_t n,
                           size_t nval, const pd_open_opts *o, char *err)
{
    memset(si, 0, sizeof *si);
    si->files = n;
    si->heldout = nval;
    si->val_split = o->val_split;
    si->seed = (uint32_t)(o->seed & 0xffffffffu);
    uint64_t h = 0x70657461ull ^ n;
    for (size_t i = 0; i < n; i++) { /* the list in Keras' order, with labels */
        h += l->v[i].key + (uint64_t)l->v[i].label * 0x9e3779b97f4a7c15ull;
        h ^= h >> 31;
        h *= 0xbf58476d1ce4e5b9ull;
    }
    si->list_hash = h;
    if (!(si->heldout_keys = malloc((nval ? nval : 1) * sizeof *si->heldout_keys)))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nval; i++) si->heldout_keys[i] = l->v[perm[n - nval + i]].key;
    return PT_OK;
}

int pd_load_folder(pd_dataset *train, pd_dataset *test, const char *dir,
                   const pd_open_opts *opts, char *err)
{
    pd_open_opts o = opts ? *opts : pd_open_opts_default();
    flist l;
    notes undecodable[2] = {{0}, {0}}; /* skipped, decoded with warnings */
    size_t *perm = NULL, *tsel = NULL;
    int rc;
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (o.split_info) memset(o.split_info, 0, sizeof *o.split_info);
    if (!dir || !*dir) return pt_seterr(err, PT_ERR_INVAL, "empty dataset folder path");
    if (!train && !test) return pt_seterr(err, PT_ERR_INVAL, "pd_load_folder: no output");
    if (o.h == 0) o.h = 256;
    if (o.w == 0) o.w = 256;
    if (o.c == 0) o.c = 3;
    if (o.max_pixels == 0) o.max_pixels = PD_MAX_PIXELS_DEFAULT;
    if (o.max_scans <= 0) o.max_scans = PD_MAX_SCANS_DEFAULT;
    if (o.h < 1 || o.w < 1 || o.h > 16384 || o.w > 16384)
        return pt_seterr(err, PT_ERR_INVAL, "invalid image size %dx%d (1 to 16384)", o.h, o.w);
    if (o.c != 1 && o.c != 3 && o.c != 4)
        return pt_seterr(err, PT_ERR_INVAL, "invalid channel count %d (use 1, 3 or 4)", o.c);
    if (!(o.val_split >= 0.0 && o.val_split < 1.0))
        return pt_seterr(err, PT_ERR_INVAL, "validation split %g must be in [0, 1)", o.val_split);
    if (test && o.val_split == 0.0)
        return pt_seterr(err, PT_ERR_INVAL,
                         "dataset folder %s has no test set: a validation split > 0 is needed",
                         dir);
    if ((rc = list_folder(&l, dir, err))) return rc;
    note_report(&l.ignored, PT_LOG_INFO, dir, "ignored (as Keras does)", o.quiet);
    note_report(&l.skipped, PT_LOG_WARN, dir, "left out", o.quiet);

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
    if (o.split_info && (rc = fill_split_info(o.split_info, &l, perm, n, nval, &o, err)))
        goto fail;
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
        if ((rc = decode_set(train, dir, &l, sel, nsel, &o, "training", undecodable, err)))
            goto fail;
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
            if (!rc && m)
                rc = decode_set(test, dir, &l, vs, m, &o, "validation", undecodable, err);
            free(vs);
            if (rc) goto fail;
            nval = 0; /* decoded */
        }
    }
    if (test && nval &&
        (rc = decode_set(test, dir, &l, vsel, nval, &o, "validation", undecodable, err)))
        goto fail;
    note_report(&undecodable[0], PT_LOG_WARN, dir, "skipped (not decoded)", o.quiet);
    note_report(&undecodable[1], PT_LOG_WARN, dir, "used despite decoder warnings", o.quiet);
    free(tsel);
    free(perm);
    flist_free(&l);
    return PT_OK;

fail:
    note_report(&undecodable[0], PT_LOG_WARN, dir, "skipped (not decoded)", o.quiet);
    if (train) pd_dataset_free(train);
    if (test) pd_dataset_free(test);
    if (o.split_info) pd_split_info_free(o.split_info);
    free(tsel);
    free(perm);
    flist_free(&l);
    return rc;
}
