/* test_data.c - data/: IDX, CIFAR-10, image folders, resizing, partitions. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "pdata.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------ */

static char tmpdir_[256];

static const char *tmpdir(void)
{
    if (!tmpdir_[0]) {
        snprintf(tmpdir_, sizeof tmpdir_, "/tmp/petal-test-data-XXXXXX");
        if (!mkdtemp(tmpdir_)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    return tmpdir_;
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir(), name);
    return p;
}

static void write_file(const char *path, const void *data, size_t len, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f || (len && gzwrite(f, data, (unsigned)len) != (int)len)) {
            fprintf(stderr, "gz write %s failed\n", path);
            exit(1);
        }
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data, 1, len, f) != len) {
            fprintf(stderr, "write %s failed\n", path);
            exit(1);
        }
        fclose(f);
    }
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* IDX images (n x h x w, pixel = (i*7 + j) & 255) and labels (i % 10). */
static size_t make_idx_images(unsigned char *buf, uint32_t magic, uint32_t n, uint32_t h,
                              uint32_t w)
{
    be32(buf, magic);
    be32(buf + 4, n);
    be32(buf + 8, h);
    be32(buf + 12, w);
    for (size_t j = 0; j < (size_t)n * h * w; j++) buf[16 + j] = (unsigned char)((j * 7 + 3) & 255);
    return 16 + (size_t)n * h * w;
}

static size_t make_idx_labels(unsigned char *buf, uint32_t magic, uint32_t n)
{
    be32(buf, magic);
    be32(buf + 4, n);
    for (uint32_t i = 0; i < n; i++) buf[8 + i] = (unsigned char)(i % 10);
    return 8 + (size_t)n;
}

/* ---- IDX ------------------------------------------------------------------------ */

static int have_fmnist(void)
{
    return access(PD_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0;
}

static void t_fashion_mnist_real(void)
{
    pd_dataset tr, te;
    char err[PT_ERRLEN] = "";
    ASSERT_MSG(have_fmnist(), "Debian's dataset-fashion-mnist is not installed");
    int rc = pd_load_fashion_mnist(&tr, &te, NULL, err);
    ASSERT_MSG(rc == 0, "load failed: %s", err);
    ASSERT_EQ_INT(tr.n, 60000);
    ASSERT_EQ_INT(te.n, 10000);
    ASSERT_EQ_INT(tr.h, 28);
    ASSERT_EQ_INT(tr.w, 28);
    ASSERT_EQ_INT(tr.c, 1);
    ASSERT_EQ_INT(te.h, 28);
    ASSERT_EQ_INT(tr.nclasses, 10);
    ASSERT_STR_EQ(tr.class_names[0], "T-shirt/top");
    ASSERT_STR_EQ(te.class_names[9], "Ankle boot");
    /* values read with /usr/bin/python3's gzip module from the Debian files */
    static const int first_train[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    static const int first_test[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ_INT(tr.y[i], first_train[i]);
        ASSERT_EQ_INT(te.y[i], first_test[i]);
    }
    long long ysum = 0, cnt[10] = {0};
    for (size_t i = 0; i < tr.n; i++) {
        ASSERT(tr.y[i] >= 0 && tr.y[i] < 10);
        ysum += tr.y[i];
        cnt[tr.y[i]]++;
    }
    ASSERT_EQ_INT(ysum, 270000);
    for (int k = 0; k < 10; k++) ASSERT_EQ_INT(cnt[k], 6000);
    ASSERT_NEAR(tr.x[14 * 28 + 14] * 255.0f, 217, 1e-3);
    ASSERT_NEAR(tr.x[784 + 14 * 28 + 10] * 255.0f, 205, 1e-3);
    ASSERT_NEAR(tr.x[784 * 59999 + 400] * 255.0f, 129, 1e-3);
    ASSERT_NEAR(te.x[784 * 9999 + 500] * 255.0f, 63, 1e-3);
    double s = 0;
    for (size_t j = 0; j < 784; j++) s += tr.x[j] * 255.0;
    ASSERT_NEAR(s, 76247, 0.05);
    s = 0;
    for (size_t j = 0; j < te.n * 784; j++) {
        ASSERT(te.x[j] >= 0.0f && te.x[j] <= 1.0f);
        s += round(te.x[j] * 255.0);
    }
    ASSERT_NEAR(s, 573469082.0, 0.5);
    pd_dataset_free(&tr);
    pd_dataset_free(&te);
    ASSERT(tr.x == NULL && tr.n == 0);
    pd_dataset_free(&tr); /* idempotent */
}

/* The same bytes computed independently: raw zlib decode of the test images. */
static void t_fashion_mnist_raw_bytes(void)
{
    pd_dataset te;
    char err[PT_ERRLEN] = "";
    ASSERT_MSG(have_fmnist(), "Debian's dataset-fashion-mnist is not installed");
    ASSERT_MSG(pd_load_fashion_mnist(NULL, &te, NULL, err) == 0, "%s", err);
    gzFile f = gzopen(PD_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", "rb");
    ASSERT(f);
    unsigned char hdr[16], *raw = malloc(te.n * 784);
    ASSERT(raw);
    ASSERT_EQ_INT(gzread(f, hdr, 16), 16);
    ASSERT_EQ_INT(gzread(f, raw, (unsigned)(te.n * 784)), (long long)(te.n * 784));
    gzclose(f);
    size_t bad = 0;
    for (size_t j = 0; j < te.n * 784; j++)
        if (te.x[j] != (float)raw[j] / 255.0f) bad++;
    free(raw);
    ASSERT_EQ_INT(bad, 0);
    pd_dataset_free(&te);
}

static void t_idx_raw_and_gzip(void)
{
    static unsigned char ib[16 + 5 * 3 * 4], lb[8 + 5];
    char err[PT_ERRLEN] = "";
    size_t il = make_idx_images(ib, 0x803, 5, 3, 4), ll = make_idx_labels(lb, 0x801, 5);
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = tpath(gz ? "i.gz" : "i.raw"), *lp = tpath(gz ? "l.gz" : "l.raw");
        write_file(ip, ib, il, gz);
        write_file(lp, lb, ll, gz);
        pd_dataset d;
        int rc = pd_load_idx(&d, ip, lp, err);
        ASSERT_MSG(rc == 0, "%s", err);
        ASSERT_EQ_INT(d.n, 5);
        ASSERT_EQ_INT(d.h, 3);
        ASSERT_EQ_INT(d.w, 4);
        ASSERT_EQ_INT(d.c, 1);
        ASSERT_EQ_INT(d.nclasses, 5);
        ASSERT(d.class_names == NULL);
        for (size_t j = 0; j < 60; j++) ASSERT_NEAR(d.x[j], ib[16 + j] / 255.0, 1e-7);
        for (int i = 0; i < 5; i++) ASSERT_EQ_INT(d.y[i], i);
        pd_dataset_free(&d);
    }
}

static void expect_idx_error(const unsigned char *ib, size_t il, int igz, const unsigned char *lb,
                             size_t ll, int lgz, int code, const char *needle)
{
    char err[PT_ERRLEN] = "";
    const char *ip = tpath("bad-images"), *lp = tpath("bad-labels");
    write_file(ip, ib, il, igz);
    write_file(lp, lb, ll, lgz);
    pd_dataset d;
    memset(&d, 0x5a, sizeof d);
    int rc = pd_load_idx(&d, ip, lp, err);
    ASSERT_EQ_INT(rc, code);
    ASSERT_CONTAINS(err, needle);
    ASSERT(d.x == NULL && d.y == NULL && d.n == 0);
}

static void t_idx_errors(void)
{
    static unsigned char ib[16 + 6 * 28 * 28], lb[8 + 6];
    size_t il = make_idx_images(ib, 0x803, 6, 28, 28), ll = make_idx_labels(lb, 0x801, 6);
    unsigned char tmp[16 + 6 * 28 * 28];

    /* bad magic on either file, and the two files swapped */
    memcpy(tmp, ib, il);
    be32(tmp, 0x12345678);
    expect_idx_error(tmp, il, 0, lb, ll, 0, PT_ERR_FORMAT, "bad magic number 0x12345678");
    expect_idx_error(tmp, il, 1, lb, ll, 1, PT_ERR_FORMAT, "bad-images");
    expect_idx_error(ib, il, 0, ib, il, 0, PT_ERR_FORMAT, "this is an image file");
    be32(tmp, 0x00000d03); /* float elements */
    expect_idx_error(tmp, il, 0, lb, ll, 0, PT_ERR_FORMAT, "not unsigned byte");
    /* short image data, raw and gzip */
    expect_idx_error(ib, il - 100, 0, lb, ll, 0, PT_ERR_FORMAT, "short data");
    expect_idx_error(ib, il - 100, 1, lb, ll, 0, PT_ERR_FORMAT, "ends after 5");
    expect_idx_error(ib, 10, 0, lb, ll, 0, PT_ERR_FORMAT, "header");
    expect_idx_error(ib, il, 0, lb, ll - 1, 1, PT_ERR_FORMAT, "short data");
    /* count mismatch */
    unsigned char lb5[8 + 5];
    size_t ll5 = make_idx_labels(lb5, 0x801, 5);
    expect_idx_error(ib, il, 0, lb5, ll5, 0, PT_ERR_MISMATCH, "holds 6 images");
    /* zero and absurd dimensions */
    memcpy(tmp, ib, il);
    be32(tmp + 8, 0);
    expect_idx_error(tmp, il, 0, lb, ll, 0, PT_ERR_FORMAT, "invalid dimensions");
    memcpy(tmp, ib, il);
    be32(tmp + 4, 6);
    be32(tmp + 8, 100000);
    expect_idx_error(tmp, il, 0, lb, ll, 0, PT_ERR_FORMAT, "invalid dimensions");
    /* header claims far more images than a gzip file can hold */
    unsigned char big[16 + 6 * 28 * 28], bigl[8 + 6];
    memcpy(big, ib, il);
    be32(big + 4, 3000000000u);
    memcpy(bigl, lb, ll);
    be32(bigl + 4, 3000000000u);
    expect_idx_error(big, il, 1, bigl, ll, 1, PT_ERR_FORMAT, "cannot hold");
    /* truncated gzip: valid stream cut before its end */
    {
        const char *gp = tpath("whole.gz");
        write_file(gp, ib, il, 1);
        FILE *f = fopen(gp, "rb");
        static unsigned char gzb[16 + 6 * 28 * 28 + 1024];
        size_t gl = fread(gzb, 1, sizeof gzb, f);
        fclose(f);
        ASSERT(gl > 40);
        expect_idx_error(gzb, gl - 6, 0, lb, ll, 0, PT_ERR_FORMAT, "gzip");
        expect_idx_error(gzb, gl / 2, 0, lb, ll, 0, PT_ERR_FORMAT, "short data");
        /* corrupt a byte in the middle of the deflate stream */
        gzb[gl / 2] ^= 0xff;
        gzb[gl / 2 + 1] ^= 0x55;
        char err[PT_ERRLEN] = "";
        write_file(tpath("bad-images"), gzb, gl, 0);
        write_file(tpath("bad-labels"), lb, ll, 0);
        pd_dataset d;
        int rc = pd_load_idx(&d, tpath("bad-images"), tpath("bad-labels"), err);
        ASSERT_EQ_INT(rc, PT_ERR_FORMAT);
        ASSERT_CONTAINS(err, "bad-images");
    }
    /* missing files */
    {
        char err[PT_ERRLEN] = "";
        pd_dataset d;
        ASSERT_EQ_INT(pd_load_idx(&d, tpath("nope"), tpath("bad-labels"), err), PT_ERR_NOTFOUND);
        ASSERT_CONTAINS(err, "nope");
        ASSERT_EQ_INT(pd_load_idx(&d, tpath("bad-images"), tpath("nolabels"), err),
                      PT_ERR_NOTFOUND);
        ASSERT_CONTAINS(err, "nolabels");
        ASSERT_EQ_INT(pd_load_fashion_mnist(&d, NULL, tpath("nodir"), err), PT_ERR_NOTFOUND);
        ASSERT_CONTAINS(err, "nodir");
        ASSERT_EQ_INT(pd_load_idx(&d, tmpdir(), tpath("bad-labels"), err), PT_ERR_IO);
    }
}

static void t_idx_trailing_and_labels(void)
{
    static unsigned char ib[16 + 4 * 2 * 2 + 3], lb[8 + 4];
    size_t il = make_idx_images(ib, 0x803, 4, 2, 2), ll = make_idx_labels(lb, 0x801, 4);
    expect_idx_error(ib, il + 3, 0, lb, ll, 0, PT_ERR_FORMAT, "trailing data");
    expect_idx_error(ib, il + 3, 1, lb, ll, 1, PT_ERR_FORMAT, "trailing data");
    /* a directory in fashion-mnist layout with a label >= 10 is rejected */
    char dir[512], err[PT_ERRLEN] = "";
    snprintf(dir, sizeof dir, "%s/fm", tmpdir());
    mkdir(dir, 0755);
    lb[8 + 2] = 12;
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", dir);
    write_file(p, ib, il, 0);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    write_file(p, lb, ll, 1);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    write_file(p, ib, il, 1);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    write_file(p, lb, ll, 0);
    pd_dataset tr, te;
    ASSERT_EQ_INT(pd_load_fashion_mnist(&tr, &te, dir, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "label 12 out of range");
    /* the generic IDX loader accepts it with 13 classes in both splits */
    ASSERT_MSG(pd_load_idx_dir(&tr, &te, dir, err) == 0, "%s", err);
    ASSERT_EQ_INT(tr.nclasses, 13);
    ASSERT_EQ_INT(te.nclasses, 13);
    ASSERT_EQ_INT(tr.n, 4);
    ASSERT_EQ_INT(tr.y[2], 12);
    pd_dataset_free(&tr);
    pd_dataset_free(&te);
}

static void cleanup(void) { rm_rf(tmpdir()); }

static void t_zz_cleanup(void)
{
    cleanup();
    ASSERT(access(tmpdir_, F_OK) != 0);
}

TEST_MAIN(TEST(t_fashion_mnist_real), TEST(t_fashion_mnist_raw_bytes), TEST(t_idx_raw_and_gzip),
          TEST(t_idx_errors), TEST(t_idx_trailing_and_labels), TEST(t_zz_cleanup))
