/*
 * pdata.h - Petal datasets: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary,
 * image folders (Keras image_dataset_from_directory), and partitioners for
 * federated clients. Prefix: pd_.
 *
 * A pd_dataset is plain data: n examples of h x w x c float32 pixels in NHWC
 * order, scaled to [0, 1], with int32 labels in [0, nclasses). Every loader
 * fills a caller-owned pd_dataset (zero it first or use a fresh one) and the
 * caller releases it with pd_dataset_free().
 *
 * Errors: functions return 0 (PT_OK) or a negative pt_err code from
 * core/petal.h, and fill the optional caller buffer `char err[PT_ERRLEN]`
 * with a message naming the file and what was wrong. On error the output
 * datasets are left empty (zeroed); nothing needs freeing.
 *
 *   pd_dataset train, test;
 *   pd_open_opts o = pd_open_opts_default();
 *   char err[PT_ERRLEN];
 *   if (pd_open(&train, &test, "fashion-mnist", &o, err)) { fprintf(stderr, "%s\n", err); ... }
 *   ...
 *   pd_dataset_free(&train); pd_dataset_free(&test);
 */
#ifndef PETAL_DATA_H
#define PETAL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Debian's dataset-fashion-mnist package puts the four .gz files here. */
#define PD_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

typedef struct pd_dataset {
    size_t n;           /* number of examples */
    int h, w, c;        /* per-example shape (NHWC) */
    int nclasses;       /* labels are in [0, nclasses) */
    float *x;           /* n*h*w*c floats in NHWC order, scaled to [0,1]; owned */
    int32_t *y;         /* n labels; owned */
    char **class_names; /* nclasses owned strings, or NULL when the format has none */
    size_t skipped;     /* files that could not be decoded (image folders) */
    uint64_t *keys;     /* image folders: n identities, pd_key() of each example's path
                         * relative to the dataset folder ("class/sub/name.png"); owned;
                         * NULL for formats without files per example */
} pd_dataset;

/* Identity of a file of an image folder: a 64-bit hash of its path relative
 * to the dataset folder. Two machines holding the same file at the same
 * place in their copies of a dataset compute the same key. */
uint64_t pd_key(const char *rel_path);

/* Release everything a dataset owns and zero it (NULL-safe, idempotent). */
void pd_dataset_free(pd_dataset *d);

/* Replace d's class names with copies of names[0..n) and set nclasses = n
 * (labels are not touched). Returns PT_OK or PT_ERR_NOMEM (d unchanged). */
int pd_set_class_names(pd_dataset *d, const char *const *names, int n, char *err);

/* Floats in one example (h*w*c). */
size_t pd_example_floats(const pd_dataset *d);

/* ---- IDX ------------------------------------------------------------------ */

/* Load an IDX image file (magic 0x00000803, unsigned bytes, dims n x rows x
 * cols) and its IDX label file (magic 0x00000801, n unsigned bytes). Either
 * file may be gzip-compressed or raw (detected from the content). The result
 * has c = 1, pixels scaled by 1/255, nclasses = max label + 1 (at least 1),
 * no class names.
 * Returns PT_OK, PT_ERR_NOTFOUND / PT_ERR_IO (open/read failed),
 * PT_ERR_FORMAT (bad magic, zero or absurd dims, short data, corrupt gzip,
 * trailing data), PT_ERR_MISMATCH (image and label counts differ) or
 * PT_ERR_NOMEM. */
int pd_load_idx(pd_dataset *out, const char *images_path, const char *labels_path, char *err);

/* Load Fashion-MNIST's train (60000) and test (10000) splits from dir
 * (NULL = PD_FASHION_MNIST_DIR): train-images-idx3-ubyte[.gz],
 * train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz],
 * t10k-labels-idx1-ubyte[.gz]. Sets nclasses = 10 and Fashion-MNIST's class
 * names; a label >= 10 is PT_ERR_FORMAT. Either output may be NULL to skip
 * that split. Same errors as pd_load_idx. */
int pd_load_fashion_mnist(pd_dataset *train, pd_dataset *test, const char *dir, char *err);

/* Same for any MNIST-style IDX directory (same file names); nclasses is the
 * largest label in either split + 1, no class names. */
int pd_load_idx_dir(pd_dataset *train, pd_dataset *test, const char *dir, char *err);

/* ---- CIFAR-10 ------------------------------------------------------------- */

/* Load CIFAR-10 binary batches from dir: data_batch_1.bin .. data_batch_5.bin
 * (train; the batches present are used in order, at least one is required)
 * and test_batch.bin (test). Each record is 3073 bytes: label (0..9), then
 * 1024 red, 1024 green, 1024 blue bytes (row-major 32x32); converted to NHWC.
 * Class names come from batches.meta.txt when present, else CIFAR-10's.
 * Either output may be NULL. Returns PT_OK, PT_ERR_NOTFOUND, PT_ERR_IO,
 * PT_ERR_FORMAT (size not a multiple of 3073, empty file, label > 9) or
 * PT_ERR_NOMEM. */
int pd_load_cifar10(pd_dataset *train, pd_dataset *test, const char *dir, char *err);

/* ---- image folders ---------------------------------------------------------- */

/* Options for image folders (and for pd_open). */
typedef struct pd_open_opts {
    int h, w;         /* target size; 0 = the format's native size (folders: 256x256) */
    int c;            /* channels 1 (grayscale), 3 (RGB) or 4 (RGBA); 0 = native
                       * (IDX 1, CIFAR-10 3, folders 3) */
    double val_split; /* folders: fraction of files held out as the test set,
                       * in [0, 1); formats with their own test set ignore it */
    uint64_t seed;    /* shuffle seed for the folder split and for `limit` */
    size_t limit;     /* at most this many training examples (0 = all) */
    size_t test_limit; /* at most this many test examples (0 = all) */
    int quiet;        /* 1: no per-file warnings for skipped files (still counted) */
    int threads;      /* image folders: decoding threads; 0 = one per online CPU (max 8),
                       * 1 = the calling thread only */
    /* Optional: keep only one client's share of the training set (after
     * `limit`), as pd_partition(train, partition, num_parts, part, seed)
     * would select it. Image folders then decode only those files. */
    const char *partition; /* NULL or "" = whole training set */
    int num_parts;
    int part;
    /* 1: keep only part `part` of num_parts of the test split (after
     * `test_limit`), as pd_partition(test, "iid", num_parts, part, seed) would
     * select it (empty when the split has fewer than num_parts examples):
     * a client's local validation share. Image folders decode only those files. */
    int test_share;
    /* Decoder caps (image folders): a file is skipped, and named, when its
     * header declares more than max_pixels pixels (checked before the
     * decoder allocates anything), when a progressive JPEG has more than
     * max_scans scans, or when libjpeg would need more than
     * PD_DECODE_MEMORY(max_pixels) bytes. 0 = the defaults below. */
    uint64_t max_pixels;
    int max_scans;
    /* Optional output: what the split is (see pd_split_info); NULL = not
     * wanted. Filled on success; release with pd_split_info_free(). */
    struct pd_split_info *split_info;
} pd_open_opts;

#define PD_MAX_PIXELS_DEFAULT ((uint64_t)64 << 20) /* 64 Mpixels (8192 x 8192) */
#define PD_MAX_SCANS_DEFAULT 100 /* as libjpeg-turbo's own fuzzers (TJPARAM_SCANLIMIT) */
/* libjpeg's memory limit (max_memory_to_use) for a pixel cap: 4 bytes per
 * pixel (a progressive 4:4:4 colour image holds 2 bytes of coefficients per
 * pixel and component) plus 16 MiB of tables and buffers. */
#define PD_DECODE_MEMORY(max_pixels) ((uint64_t)(max_pixels) * 4 + ((uint64_t)16 << 20))

/* What a federation's members must agree on about a dataset's split: filled
 * by pd_open (o->split_info) for the split it loaded. */
typedef struct pd_split_info {
    int own_test_set;       /* 1: the format has its own test set (IDX, CIFAR-10); 0: an
                             * image folder whose held-out split is cut from its files */
    size_t files;           /* image folders: files in the (checked) file list */
    size_t heldout;         /* image folders: files in the whole held-out split */
    double val_split;       /* image folders: the held-out fraction used */
    uint32_t seed;          /* image folders: the shuffle seed used (RandomState(seed)) */
    uint64_t list_hash;     /* image folders: hash of the file list (paths, labels, order) */
    uint64_t *heldout_keys; /* image folders: pd_key() of every held-out file (heldout
                             * entries, whatever test_limit decoded); owned */
} pd_split_info;

void pd_split_info_free(pd_split_info *si);

/* Defaults: native size and channels, val_split 0.25, seed 1337, no limits,
 * one thread, no partition, PD_MAX_PIXELS_DEFAULT, PD_MAX_SCANS_DEFAULT. */
pd_open_opts pd_open_opts_default(void);

/* Load a folder of images the way Keras' image_dataset_from_directory reads
 * it (keras/src/utils/dataset_utils.py, index_directory with the defaults):
 *  - classes: the entries of dir that are folders (symbolic links followed)
 *    and do not start with '.', sorted bytewise; label = index. A class
 *    folder without images still takes its label. Other entries of dir are
 *    ignored (and named).
 *  - files: every file under a class folder, in nested folders too (hidden
 *    ones included, as os.walk lists them), whose name ends with .bmp, .gif,
 *    .jpeg, .jpg or .png (any case); sorted by folder path, then name.
 *    Symbolic links to files count; links to folders are not followed
 *    (follow_links=False), so a link back up cannot loop. Other names are
 *    ignored and named.
 * Where Keras would silently make one image two examples, Petal does not:
 * two class folders that are the same folder are an error (PT_ERR_FORMAT);
 * the same file (device and inode) reached twice through links is kept once
 * when the paths are in one class and dropped when they are in different
 * classes (its label would be a guess); both are named. Folders nested more
 * than PD_FOLDER_MAX_DEPTH deep are not read, and named.
 * The list is then shuffled with the seed (numpy RandomState(seed).shuffle,
 * as Keras; the seed's low 32 bits) and the last floor(val_split * nfiles)
 * files taken as the validation (test) split. Each file is decoded by content
 * as JPEG (libjpeg) or PNG (libpng), grayscale/RGB/RGBA converted to o->c
 * channels, and resized bilinearly (half-pixel centres, no antialiasing, as
 * tf.image.resize) to o->h x o->w; JPEGs at least twice the target size are
 * decoded with libjpeg's DCT scaling first (never below the target). A file
 * that cannot be decoded (BMP and GIF, which Keras reads, included) or that
 * breaks a decoder cap (o->max_pixels, o->max_scans) is skipped and counted
 * in `skipped` of its split. Skipped and ignored files are reported in one
 * warning per kind: the first few names with the reason, then the count.
 * train or test may be NULL to decode only the other split (the split is the
 * same). With test != NULL val_split must be > 0. With o->limit /
 * o->test_limit only the first files of each split (after the shuffle) are
 * decoded; with o->partition only this part's training files. Examples carry
 * their file's pd_key() in keys.
 * Returns PT_OK, PT_ERR_NOTFOUND (missing folder), PT_ERR_FORMAT (no class
 * subfolders, no files, a class folder twice, no decodable image in a split),
 * PT_ERR_INVAL (bad options), PT_ERR_IO or PT_ERR_NOMEM. */
#define PD_FOLDER_MAX_DEPTH 64
int pd_load_folder(pd_dataset *train, pd_dataset *test, const char *dir,
                   const pd_open_opts *o, char *err);

/* Decode one JPEG or PNG file into h*w*c floats at out (as the folder
 * loader does). Returns PT_OK, PT_ERR_INVAL, PT_ERR_IO, PT_ERR_FORMAT,
 * PT_ERR_UNSUPPORTED or PT_ERR_NOMEM. */
int pd_load_image(const char *path, int h, int w, int c, float *out, char *err);

/* ---- dataset specs ----------------------------------------------------------- */

/* Open a dataset by spec:
 *   "fashion-mnist"        Debian's Fashion-MNIST (PD_FASHION_MNIST_DIR)
 *   "fashion-mnist:DIR"    the same files elsewhere
 *   "mnist:DIR", "idx:DIR" MNIST-style IDX files in DIR
 *   "cifar10:DIR"          CIFAR-10 binary batches in DIR
 *   "folder:DIR" or DIR    an image folder (pd_load_folder)
 * o may be NULL (defaults). Resizing (o->h/o->w) and channel conversion
 * (o->c) apply to every format; `limit`/`test_limit` keep a seeded random
 * subset (in original order) of formats with their own test set.
 * Memory follows the selection: for IDX and CIFAR-10 the labels are read
 * first, the rows to keep (limit, partition, test share) chosen from them,
 * and only those images converted, straight to the target shape; a target
 * larger than such a format's native size is PT_ERR_UNSUPPORTED (no
 * upsampling of a whole split up front; the message gives its cost).
 * Either output may be NULL to load only the other split (a server needs only
 * the test set, a client only its training share); the selection is the same.
 * With o->split_info, what the split is (pd_split_info) is filled too.
 * Returns PT_OK or the loaders' errors; PT_ERR_INVAL for an unknown scheme or
 * empty spec. */
int pd_open(pd_dataset *train, pd_dataset *test, const char *spec, const pd_open_opts *o,
            char *err);

/* ---- transforms --------------------------------------------------------------- */

/* Bilinear resize of one HWC float image (half-pixel centres, as
 * tf.image.resize(method='bilinear', antialias=False)). src and dst must not
 * overlap. Channel count c is unchanged. */
void pd_resize_bilinear(const float *src, int sh, int sw, float *dst, int dh, int dw, int c);

/* Convert a dataset in place to size h x w and c channels (1, 3 or 4; RGB->
 * gray uses ITU-R 601 weights as tf.image.rgb_to_grayscale; gray->RGB
 * replicates; alpha is 1.0 when added, dropped when removed). Allocates the
 * new pixel buffer only when the shape changes. Returns PT_OK, PT_ERR_INVAL
 * or PT_ERR_NOMEM (dataset unchanged on error). */
int pd_reshape(pd_dataset *d, int h, int w, int c, char *err);

/* ---- subsets and partitions --------------------------------------------------- */

/* Copy the rows idx[0..count) of src (in that order) into a new dataset
 * (shape, nclasses and class names copied; skipped = 0). count may be 0
 * (empty dataset with src's shape). Returns PT_OK, PT_ERR_RANGE (index out
 * of range) or PT_ERR_NOMEM. */
int pd_subset(pd_dataset *out, const pd_dataset *src, const size_t *idx, size_t count,
              char *err);

/* Indices of client `part` (0-based) of num_parts under a partition scheme,
 * deterministic in (dataset labels, scheme, num_parts, seed), so every client
 * computes its own share and the shares are disjoint and cover the dataset:
 *   "iid"            shuffle with seed, cut into num_parts contiguous shards
 *                    whose sizes differ by at most one (np.array_split)
 *   "dirichlet:A"    label skew: for each class, proportions over clients
 *                    ~ Dirichlet(A) (A > 0); every client gets >= 1 example
 *   "shards:K"       sort by label, cut into num_parts*K shards, give each
 *                    client K shards chosen at random (McMahan et al.)
 * *idx receives a malloc'd array of *count indices into d, sorted ascending
 * (free() it); *idx is NULL when the share is empty (never for these schemes).
 * Returns PT_OK, PT_ERR_INVAL (unknown scheme, bad parameter, num_parts < 1,
 * part out of range), PT_ERR_RANGE (more parts or shards than examples) or
 * PT_ERR_NOMEM. */
int pd_partition(const pd_dataset *d, const char *scheme, int num_parts, int part,
                 uint64_t seed, size_t **idx, size_t *count, char *err);

/* All parts at once: owner[i] = part of example i (caller array of d->n ints).
 * Same schemes and errors as pd_partition. */
int pd_partition_all(const pd_dataset *d, const char *scheme, int num_parts, uint64_t seed,
                     int *owner, char *err);

/* Check a scheme string without a dataset (for CLI validation). */
int pd_partition_check(const char *scheme, char *err);

#ifdef __cplusplus
}
#endif

#endif /* PETAL_DATA_H */
