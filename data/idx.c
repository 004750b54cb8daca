/* idx.c - IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw, via zlib. */
#include "image_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803U
#define IDX_MAGIC_LABELS 0x00000801U
#define CHUNK (1 << 16)

typedef struct idx_file {
    gzFile gz;
    const char *path;
    const char *name;   /* basename for messages */
    uint64_t max_bytes; /* upper bound on the payload the file can hold */
} idx_file;

/* Open path with zlib (transparent for raw files) and work out how many
 * bytes it can possibly hold: the file size when raw, 1032x the compressed
 * size when gzip (deflate's maximum ratio). */
static int idx_open(idx_file *f, const char *path, char *err)
{
    struct stat st;
    memset(f, 0, sizeof *f);
    f->path = path;
    f->name = pd_basename(path);
    int fd = pt_open_read(path, err); /* a regular file, never a FIFO waited on */
    if (fd < 0) return fd == PT_ERR_INVAL ? PT_ERR_IO : fd;
    unsigned char sig[2] = {0, 0};
    ssize_t got = pread(fd, sig, 2, 0);
    if (fstat(fd, &st) != 0) {
        close(fd);
        return pt_seterr(err, PT_ERR_IO, "%s: %s", path, strerror(errno));
    }
    int gzip = got == 2 && sig[0] == 0x1f && sig[1] == 0x8b;
    f->max_bytes = gzip ? (uint64_t)st.st_size * 1032u : (uint64_t)st.st_size;
    if (!(f->gz = gzdopen(fd, "rb"))) { /* takes the descriptor */
        close(fd);
        return pt_seterr(err, PT_ERR_IO, "%s: gzdopen failed", path);
    }
    gzbuffer(f->gz, CHUNK);
    return PT_OK;
}

static void idx_close(idx_file *f)
{
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Read exactly len bytes of `what`; for item data, item = bytes per item,
 * done = items before this read, want = items the header promised. */
static int idx_read(idx_file *f, void *buf, size_t len, const char *what, size_t item,
                    size_t done, size_t want, char *err)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < len) {
        unsigned ask = (unsigned)(len - got > (1u << 30) ? (1u << 30) : len - got);
        int r = gzread(f->gz, p + got, ask);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(f->gz, &zerr);
            return pt_seterr(err, PT_ERR_FORMAT, "%s: corrupt gzip data while reading %s: %s",
                             f->path, what, m);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got == len) return PT_OK;
    int zerr = Z_OK;
    const char *m = gzerror(f->gz, &zerr);
    char why[128] = "";
    if (zerr != Z_OK) snprintf(why, sizeof why, " (truncated gzip: %s)", m);
    if (item)
        return pt_seterr(err, PT_ERR_FORMAT,
                         "%s: short data: header promises %zu %s but the file ends after %zu%s",
                         f->path, want, what, done + got / item, why);
    return pt_seterr(err, PT_ERR_FORMAT, "%s: short data: file ends inside the %s%s", f->path,
                     what, why);
}

/* After the payload: the stream must end cleanly (complete gzip trailer). */
static int idx_check_end(idx_file *f, char *err)
{
    unsigned char extra[16];
    int r = gzread(f->gz, extra, sizeof extra);
    int zerr = Z_OK;
    const char *m = gzerror(f->gz, &zerr);
    if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
        return pt_seterr(err, PT_ERR_FORMAT, "%s: corrupt or truncated gzip stream after the data: %s",
                         f->path, m);
    if (r > 0)
        return pt_seterr(err, PT_ERR_FORMAT, "%s: unexpected trailing data after the last item",
                         f->path);
    return PT_OK;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int read_header(idx_file *f, uint32_t want_magic, int ndim, uint32_t *dims, char *err)
{
    unsigned char hdr[16];
    int rc = idx_read(f, hdr, 4 + 4 * (size_t)ndim, "header", 0, 0, 0, err);
    if (rc) return rc;
    uint32_t magic = be32(hdr);
    if (magic != want_magic) {
        const char *hint = "";
        if (magic == IDX_MAGIC_IMAGES) hint = " (this is an image file)";
        else if (magic == IDX_MAGIC_LABELS) hint = " (this is a label file)";
        else if ((magic >> 16) != 0) hint = " (not an IDX file)";
        else if (((magic >> 8) & 0xff) != 0x08) hint = " (element type is not unsigned byte)";
        return pt_seterr(err, PT_ERR_FORMAT,
                         "%s: bad magic number 0x%08x, expected 0x%08x (IDX unsigned-byte %d-D "
                         "%s)%s",
                         f->path, magic, want_magic, ndim, ndim == 3 ? "images" : "labels", hint);
    }
    for (int i = 0; i < ndim; i++) dims[i] = be32(hdr + 4 + 4 * i);
    return PT_OK;
}

static int load_labels(idx_file *f, int32_t **out, size_t *n, int *maxlab, char *err)
{
    uint32_t dims[1];
    int rc = read_header(f, IDX_MAGIC_LABELS, 1, dims, err);
    if (rc) return rc;
    if (dims[0] == 0) return pt_seterr(err, PT_ERR_FORMAT, "%s: label file holds 0 items", f->path);
    if ((uint64_t)dims[0] + 8 > f->max_bytes)
        return pt_seterr(err, PT_ERR_FORMAT,
                         "%s: short data: header promises %u labels but the file cannot hold that many",
                         f->path, dims[0]);
    unsigned char *buf = malloc(dims[0]);
    int32_t *y = malloc((size_t)dims[0] * sizeof *y);
    if (!buf || !y) {
        free(buf);
        free(y);
        return pt_seterr(err, PT_ERR_NOMEM, "%s: out of memory for %u labels", f->path, dims[0]);
    }
    if ((rc = idx_read(f, buf, dims[0], "labels", 1, 0, dims[0], err)) ||
        (rc = idx_check_end(f, err))) {
        free(buf);
        free(y);
        return rc;
    }
    int mx = 0;
    for (uint32_t i = 0; i < dims[0]; i++) {
        y[i] = buf[i];
        if (buf[i] > mx) mx = buf[i];
    }
    free(buf);
    *out = y;
    *n = dims[0];
    *maxlab = mx;
    return PT_OK;
}

/* The image file's rows `rows` (ascending; NULL = all ny) converted to the
 * target shape (o: NULL = native) into out; labels are the caller's. */
static int load_rows(pd_dataset *out, const char *images_path, size_t ny, const size_t *rows,
                     size_t nrows, const pd_open_opts *o, char *err)
{
    idx_file fi;
    unsigned char *buf = NULL;
    float *scratch = NULL;
    size_t scap = 0;
    uint32_t dims[3];
    int rc, th, tw, tc;
    if ((rc = idx_open(&fi, images_path, err))) return rc;
    if ((rc = read_header(&fi, IDX_MAGIC_IMAGES, 3, dims, err))) goto fail_images;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[1] > 16384 || dims[2] > 16384) {
        rc = pt_seterr(err, PT_ERR_FORMAT, "%s: invalid dimensions %u x %u x %u (each 1 to 16384)",
                       images_path, dims[0], dims[1], dims[2]);
        goto fail_images;
    }
    if (dims[0] != ny) {
        rc = pt_seterr(err, PT_ERR_MISMATCH, "%s holds %u images but its label file holds %zu "
                       "labels", images_path, dims[0], ny);
        goto fail_images;
    }
    size_t per = (size_t)dims[1] * dims[2];
    uint64_t payload = (uint64_t)dims[0] * per;
    if (payload + 16 > fi.max_bytes) {
        rc = pt_seterr(err, PT_ERR_FORMAT,
                       "%s: short data: header promises %u images of %ux%u (%llu bytes) but the "
                       "file cannot hold that many",
                       images_path, dims[0], dims[1], dims[2], (unsigned long long)payload);
        goto fail_images;
    }
    if (!rows) nrows = ny;
    if ((rc = pd_target_shape(o, (int)dims[1], (int)dims[2], 1, nrows, images_path, &th, &tw,
                              &tc, err)))
        goto fail_images;
    if ((rc = pd_dataset_alloc(out, nrows, th, tw, tc, err))) goto fail_images;
    int native = th == (int)dims[1] && tw == (int)dims[2] && tc == 1;
    size_t tper = (size_t)th * (size_t)tw * (size_t)tc;

    /* stream the file in chunks of whole images; keep the selected rows */
    size_t per_chunk = per >= CHUNK ? 1 : CHUNK / per, next = 0, m = 0;
    if (!(buf = malloc(per_chunk * per))) {
        rc = pt_seterr(err, PT_ERR_NOMEM, "%s: out of memory", images_path);
        goto fail_out;
    }
    const float *lut = pd_u8_lut();
    for (size_t i = 0; i < ny; i += per_chunk) {
        size_t k = ny - i < per_chunk ? ny - i : per_chunk;
        if ((rc = idx_read(&fi, buf, k * per, "images", per, i, ny, err))) goto fail_out;
        for (size_t j = 0; j < k; j++) {
            if (rows && (next >= nrows || rows[next] != i + j)) continue;
            next++;
            float *dst = out->x + m++ * tper;
            if (native) {
                for (size_t q = 0; q < per; q++) dst[q] = lut[buf[j * per + q]];
            } else {
                pd_img view = {buf + j * per, per, (int)dims[2], (int)dims[1], 1, NULL, 0, 0};
                if (pd_img_to_float(&view, dst, th, tw, tc, &scratch, &scap)) {
                    rc = pt_seterr(err, PT_ERR_NOMEM, "%s: out of memory", images_path);
                    goto fail_out;
                }
            }
        }
    }
    if ((rc = idx_check_end(&fi, err))) goto fail_out;
    free(buf);
    free(scratch);
    idx_close(&fi);
    return PT_OK;

fail_out:
    free(buf);
    free(scratch);
    pd_dataset_free(out);
fail_images:
    idx_close(&fi);
    return rc;
}

int pd_load_idx(pd_dataset *out, const char *images_path, const char *labels_path, char *err)
{
    idx_file fl;
    int32_t *y = NULL;
    size_t ny = 0;
    int maxlab = 0, rc;
    if (!out || !images_path || !labels_path)
        return pt_seterr(err, PT_ERR_INVAL, "pd_load_idx: NULL argument");
    memset(out, 0, sizeof *out);
    if ((rc = idx_open(&fl, labels_path, err))) return rc;
    rc = load_labels(&fl, &y, &ny, &maxlab, err);
    idx_close(&fl);
    if (rc) return rc;
    if ((rc = load_rows(out, images_path, ny, NULL, 0, NULL, err))) {
        free(y);
        return rc;
    }
    memcpy(out->y, y, ny * sizeof *y);
    free(y);
    out->nclasses = maxlab + 1;
    return PT_OK;
}

/* ---- directories ----------------------------------------------------------------- */

/* dir/name, or dir/name.gz when only that exists. */
static int find_file(char *path, size_t len, const char *dir, const char *name, char *err)
{
    struct stat st;
    snprintf(path, len, "%s/%s", dir, name);
    if (stat(path, &st) == 0) return PT_OK;
    snprintf(path, len, "%s/%s.gz", dir, name);
    if (stat(path, &st) == 0) return PT_OK;
    return pt_seterr(err, PT_ERR_NOTFOUND, "%s/%s[.gz]: no such file", dir, name);
}

/* One split of an IDX directory: its files and its labels. */
typedef struct split {
    char ip[4096], lp[4096];
    int32_t *y;
    size_t n;
    int maxlab;
} split;

static int split_labels(split *sp, const char *dir, const char *prefix, char *err)
{
    char n1[64], n2[64];
    idx_file fl;
    int rc;
    snprintf(n1, sizeof n1, "%s-images-idx3-ubyte", prefix);
    snprintf(n2, sizeof n2, "%s-labels-idx1-ubyte", prefix);
    if ((rc = find_file(sp->ip, sizeof sp->ip, dir, n1, err)) ||
        (rc = find_file(sp->lp, sizeof sp->lp, dir, n2, err)))
        return rc;
    if ((rc = idx_open(&fl, sp->lp, err))) return rc;
    rc = load_labels(&fl, &sp->y, &sp->n, &sp->maxlab, err);
    idx_close(&fl);
    return rc;
}

/* Decode the split's selected rows into d. */
static int split_load(pd_dataset *d, split *sp, int nclasses, const char *const *names,
                      const pd_open_opts *o, int test, char *err)
{
    size_t *rows = NULL, nrows = 0;
    int rc;
    if (o && (rc = pd_select_rows(sp->y, sp->n, nclasses, o, test, &rows, &nrows, err)))
        return rc;
    rc = load_rows(d, sp->ip, sp->n, o ? rows : NULL, nrows, o, err);
    if (!rc) {
        for (size_t i = 0; i < d->n; i++) d->y[i] = sp->y[rows ? rows[i] : i];
        d->nclasses = nclasses;
        if (names && (rc = pd_set_class_names(d, names, nclasses, err))) pd_dataset_free(d);
    }
    free(rows);
    return rc;
}

int pd_idx_dir_open(pd_dataset *train, pd_dataset *test, const char *dir, int nclasses,
                    const char *const *names, const pd_open_opts *o, char *err)
{
    split sp[2];
    pd_dataset *out[2] = {train, test};
    static const char *const prefix[2] = {"train", "t10k"};
    int rc = PT_OK;
    struct stat st;
    memset(sp, 0, sizeof sp);
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (!dir) return pt_seterr(err, PT_ERR_INVAL, "IDX dataset: NULL directory");
    if (stat(dir, &st) != 0)
        return pt_seterr(err, PT_ERR_NOTFOUND, "%s: no such directory", dir);
    if (!S_ISDIR(st.st_mode))
        return pt_seterr(err, PT_ERR_INVAL, "%s: %s, not a directory", dir,
                         pt_file_kind(st.st_mode));
    /* labels first: the rows to keep are chosen from them, then only those
     * images are converted (memory follows the partition and the limits) */
    int fixed = nclasses;
    for (int k = 0; k < 2 && !rc; k++)
        if (out[k]) rc = split_labels(&sp[k], dir, prefix[k], err);
    if (!fixed)
        for (int k = 0; k < 2; k++)
            if (out[k] && sp[k].maxlab + 1 > nclasses) nclasses = sp[k].maxlab + 1;
    for (int k = 0; k < 2 && !rc; k++)
        if (out[k] && sp[k].maxlab >= nclasses)
            rc = pt_seterr(err, PT_ERR_FORMAT, "%s/%s labels: label %d out of range (%d classes)",
                           dir, prefix[k], sp[k].maxlab, nclasses);
    for (int k = 0; k < 2 && !rc; k++)
        if (out[k]) rc = split_load(out[k], &sp[k], nclasses, names, o, k, err);
    free(sp[0].y);
    free(sp[1].y);
    if (rc) {
        if (train) pd_dataset_free(train);
        if (test) pd_dataset_free(test);
    }
    return rc;
}

static const char *const fmnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                             "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                             "Bag",         "Ankle boot"};

int pd_fashion_mnist_open(pd_dataset *train, pd_dataset *test, const char *dir,
                          const pd_open_opts *o, char *err)
{
    return pd_idx_dir_open(train, test, dir ? dir : PD_FASHION_MNIST_DIR, 10, fmnist_names, o,
                           err);
}

int pd_load_fashion_mnist(pd_dataset *train, pd_dataset *test, const char *dir, char *err)
{
    return pd_fashion_mnist_open(train, test, dir, NULL, err);
}

int pd_load_idx_dir(pd_dataset *train, pd_dataset *test, const char *dir, char *err)
{
    return pd_idx_dir_open(train, test, dir, 0, NULL, NULL, err);
}
