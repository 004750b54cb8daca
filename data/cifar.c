/* cifar.c - CIFAR-10 binary batches (3073-byte records: label, R, G, B planes). */
#include "data_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    if (!S_ISREG(st.st_mode)) return pt_seterr(err, PT_ERR_IO, "%s: not a regular file", path);
    if (st.st_size == 0) return pt_seterr(err, PT_ERR_FORMAT, "%s: empty file", path);
    if (st.st_size % REC)
        return pt_seterr(err, PT_ERR_FORMAT,
                         "%s: size %lld is not a multiple of the 3073-byte CIFAR-10 record "
                         "(truncated file?)",
                         path, (long long)st.st_size);
    *n = (size_t)st.st_size / REC;
    return PT_OK;
}

/* Decode one batch file into d->x/d->y starting at row `at`. */
static int read_batch(pd_dataset *d, size_t at, const char *path, size_t n, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return pt_seterr(err, PT_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char rec[REC];
    const float *lut = pd_u8_lut();
    for (size_t i = 0; i < n; i++) {
        if (fread(rec, 1, REC, f) != REC) {
            fclose(f);
            return pt_seterr(err, PT_ERR_IO, "%s: read error at record %zu", path, i);
        }
        if (rec[0] > 9) {
            fclose(f);
            return pt_seterr(err, PT_ERR_FORMAT,
                             "%s: record %zu has label %u (CIFAR-10 labels are 0..9)", path, i,
                             rec[0]);
        }
        d->y[at + i] = rec[0];
        float *x = d->x + (at + i) * (NPIX * 3);
        for (int p = 0; p < NPIX; p++) {
            x[3 * p] = lut[rec[1 + p]];
            x[3 * p + 1] = lut[rec[1 + NPIX + p]];
            x[3 * p + 2] = lut[rec[1 + 2 * NPIX + p]];
        }
    }
    fclose(f);
    return PT_OK;
}

/* Class names from batches.meta.txt (one per line) when it has 10 lines. */
static int set_names(pd_dataset *d, const char *dir, char *err)
{
    char path[4096], line[256], names[10][256];
    const char *ptrs[10];
    int k = 0;
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    FILE *f = fopen(path, "r");
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

static int load_files(pd_dataset *d, const char *dir, const char *const *names, int nnames,
                      int need_all, char *err)
{
    char path[4096];
    size_t counts[8] = {0}, total = 0;
    int found = 0, rc;
    for (int i = 0; i < nnames; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = batch_records(path, &counts[i], err);
        if (rc == PT_ERR_NOTFOUND && !need_all) continue;
        if (rc) return rc;
        total += counts[i];
        found++;
    }
    if (!found) {
        snprintf(path, sizeof path, "%s/%s", dir, names[0]);
        return pt_seterr(err, PT_ERR_NOTFOUND, "%s: no such file (CIFAR-10 binary batches)", path);
    }
    if ((rc = pd_dataset_alloc(d, total, 32, 32, 3, err))) return rc;
    size_t at = 0;
    for (int i = 0; i < nnames; i++) {
        if (!counts[i]) continue;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((rc = read_batch(d, at, path, counts[i], err))) {
            pd_dataset_free(d);
            return rc;
        }
        at += counts[i];
    }
    if ((rc = set_names(d, dir, err))) {
        pd_dataset_free(d);
        return rc;
    }
    return PT_OK;
}

int pd_load_cifar10(pd_dataset *train, pd_dataset *test, const char *dir, char *err)
{
    static const char *const trn[5] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                       "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const tst[1] = {"test_batch.bin"};
    int rc;
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (!dir) return pt_seterr(err, PT_ERR_INVAL, "pd_load_cifar10: NULL directory");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_NOTFOUND, "%s: no such directory", dir);
    if (train && (rc = load_files(train, dir, trn, 5, 0, err))) return rc;
    if (test && (rc = load_files(test, dir, tst, 1, 1, err))) {
        if (train) pd_dataset_free(train);
        return rc;
    }
    return PT_OK;
}
