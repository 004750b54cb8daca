/* cifar.c - CIFAR-10 binary batches (3073-byte records: label, R, G, B planes). */
#include "image_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC 3073
#define NPIX 1024

static const char *const cifar_names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                            "dog",      "frog",       "horse", "ship", "truck"};

/* Size of a batch file in records; missing = 0 records with rc NOTFOUND. */
static int batch_records(const char *path, size_t *n, char *err)
{
    struct stat st;
    *n = 0;
    if (stat(path, &st) != 0)
        return pt_seterr(err, errno == ENOENT ? PT_ERR_NOTFOUND : PT_ERR_IO, "%s: %s", path,
                         strerror(errno));
    if (!S_ISREG(st.st_mode))
        return pt_seterr(err, PT_ERR_IO, "%s: %s, not a regular file", path,
                         pt_file_kind(st.st_mode));
    if (st.st_size == 0) return pt_seterr(err, PT_ERR_FORMAT, "%s: empty file", path);
    if (st.st_size % REC)
        return pt_seterr(err, PT_ERR_FORMAT,
                         "%s: size %lld is not a multiple of the 3073-byte CIFAR-10 record "
                         "(truncated file?)",
                         path, (long long)st.st_size);
    *n = (size_t)st.st_size / REC;
    return PT_OK;
}

/* Class names from batches.meta.txt (one per line) when it has 10 lines. */
static int set_names(pd_dataset *d, const char *dir, char *err)
{
    char path[4096], line[256], names[10][256];
    const char *ptrs[10];
    int k = 0;
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* never wait on a FIFO */
    FILE *f = NULL;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !(f = fdopen(fd, "r"))))
        close(fd);
    if (f) {
        while (k < 11 && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            if (k < 10) snprintf(names[k], sizeof names[k], "%s", line);
            k++;
        }
        fclose(f);
    }
    for (int i = 0; i < 10; i++) ptrs[i] = k == 10 ? names[i] : cifar_names[i];
    return pd_set_class_names(d, ptrs, 10, err);
}

/* One split: its batch files, their record counts, every record's label. */
typedef struct cfiles {
    char path[8][4096];
    size_t count[8];
    int nfiles;
    size_t total;
    int32_t *y;
} cfiles;

static int read_labels(cfiles *cf, char *err)
{
    size_t at = 0;
    if (!(cf->y = malloc((cf->total ? cf->total : 1) * sizeof *cf->y)))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory for %zu labels", cf->total);
    for (int f = 0; f < cf->nfiles; f++) {
        int fd = pt_open_read(cf->path[f], err);
        if (fd < 0) return PT_ERR_IO;
        for (size_t i = 0; i < cf->count[f]; i++) {
            unsigned char lab;
            if (pread(fd, &lab, 1, (off_t)(i * REC)) != 1) {
                close(fd);
                return pt_seterr(err, PT_ERR_IO, "%s: read error at record %zu", cf->path[f], i);
            }
            if (lab > 9) {
                close(fd);
                return pt_seterr(err, PT_ERR_FORMAT,
                                 "%s: record %zu has label %u (CIFAR-10 labels are 0..9)",
                                 cf->path[f], i, lab);
            }
            cf->y[at++] = lab;
        }
        close(fd);
    }
    return PT_OK;
}

/* Read the records `rows` (ascending; NULL = all) into d at the target shape. */
static int read_rows(pd_dataset *d, const cfiles *cf, const size_t *rows, size_t nrows,
                     const pd_open_opts *o, const char *dir, char *err)
{
    int th, tw, tc, rc;
    if (!rows) nrows = cf->total;
    if ((rc = pd_target_shape(o, 32, 32, 3, nrows, dir, &th, &tw, &tc, err))) return rc;
    if ((rc = pd_dataset_alloc(d, nrows, th, tw, tc, err))) return rc;
    unsigned char rec[REC], px[NPIX * 3];
    float *scratch = NULL;
    size_t scap = 0, tper = (size_t)th * (size_t)tw * (size_t)tc, base = 0, m = 0;
    int fd = -1, cur = -1;
    const float *lut = pd_u8_lut();
    for (size_t k = 0; k < nrows && !rc; k++) {
        size_t r = rows ? rows[k] : k;
        while (cur < 0 || r >= base + cf->count[cur]) { /* the batch holding record r */
            if (cur >= 0) base += cf->count[cur];
            cur++;
            if (fd >= 0) close(fd);
            if ((fd = pt_open_read(cf->path[cur], err)) < 0) {
                rc = PT_ERR_IO;
                break;
            }
        }
        if (rc) break;
        if (pread(fd, rec, REC, (off_t)((r - base) * REC)) != REC) {
            rc = pt_seterr(err, PT_ERR_IO, "%s: read error at record %zu", cf->path[cur],
                           r - base);
            break;
        }
        d->y[m] = rec[0];
        for (int p = 0; p < NPIX; p++) { /* planes -> HWC */
            px[3 * p] = rec[1 + p];
            px[3 * p + 1] = rec[1 + NPIX + p];
            px[3 * p + 2] = rec[1 + 2 * NPIX + p];
        }
        float *dst = d->x + m++ * tper;
        if (th == 32 && tw == 32 && tc == 3) {
            for (int q = 0; q < NPIX * 3; q++) dst[q] = lut[px[q]];
        } else {
            pd_img view = {px, sizeof px, 32, 32, 3, NULL, 0, 0};
            if (pd_img_to_float(&view, dst, th, tw, tc, &scratch, &scap))
                rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        }
    }
    if (fd >= 0) close(fd);
    free(scratch);
    if (rc) pd_dataset_free(d);
    return rc;
}

static int load_files(pd_dataset *d, const char *dir, const char *const *names, int nnames,
                      int need_all, const pd_open_opts *o, int test, char *err)
{
    cfiles *cf = calloc(1, sizeof *cf);
    size_t *rows = NULL, nrows = 0;
    int rc = PT_OK;
    if (!cf) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nnames; i++) {
        size_t cnt;
        snprintf(cf->path[cf->nfiles], sizeof cf->path[0], "%s/%s", dir, names[i]);
        rc = batch_records(cf->path[cf->nfiles], &cnt, err);
        if (rc == PT_ERR_NOTFOUND && !need_all) {
            rc = PT_OK;
            continue;
        }
        if (rc) goto out;
        cf->count[cf->nfiles++] = cnt;
        cf->total += cnt;
    }
    if (!cf->nfiles) {
        rc = pt_seterr(err, PT_ERR_NOTFOUND, "%s/%s: no such file (CIFAR-10 binary batches)",
                       dir, names[0]);
        goto out;
    }
    /* labels first, then only the kept records (memory follows the share) */
    if ((rc = read_labels(cf, err))) goto out;
    if (o && (rc = pd_select_rows(cf->y, cf->total, 10, o, test, &rows, &nrows, err))) goto out;
    if ((rc = read_rows(d, cf, o ? rows : NULL, nrows, o, dir, err))) goto out;
    if ((rc = set_names(d, dir, err))) pd_dataset_free(d);
out:
    free(rows);
    free(cf->y);
    free(cf);
    return rc;
}

int pd_cifar10_open(pd_dataset *train, pd_dataset *test, const char *dir, const pd_open_opts *o,
                    char *err)
{
    static const char *const trn[5] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                       "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const tst[1] = {"test_batch.bin"};
    int rc;
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (!dir) return pt_seterr(err, PT_ERR_INVAL, "pd_load_cifar10: NULL directory");
    struct stat st;
    if (stat(dir, &st) != 0)
        return pt_seterr(err, PT_ERR_NOTFOUND, "%s: no such directory", dir);
    if (!S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_INVAL, "%s: %s, not a directory", dir,
                         pt_file_kind(st.st_mode));
    if (train && (rc = load_files(train, dir, trn, 5, 0, o, 0, err))) return rc;
    if (test && (rc = load_files(test, dir, tst, 1, 1, o, 1, err))) {
        if (train) pd_dataset_free(train);
        return rc;
    }
    return PT_OK;
}

int pd_load_cifar10(pd_dataset *train, pd_dataset *test, const char *dir, char *err)
{
    return pd_cifar10_open(train, test, dir, NULL, err);
}
