/* open.c - dataset specs for the CLI: fashion-mnist, mnist:DIR, idx:DIR,
 * cifar10:DIR, folder:DIR or a bare folder path. */
#include "data_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

pd_open_opts pd_open_opts_default(void)
{
    pd_open_opts o;
    memset(&o, 0, sizeof o);
    o.val_split = 0.25;
    o.seed = 1337;
    o.max_pixels = PD_MAX_PIXELS_DEFAULT;
    o.max_scans = PD_MAX_SCANS_DEFAULT;
    return o;
}

void pd_split_info_free(pd_split_info *si)
{
    if (!si) return;
    free(si->heldout_keys);
    memset(si, 0, sizeof *si);
}

int pd_select_rows(const int32_t *y, size_t n, int nclasses, const pd_open_opts *o, int test,
                   size_t **rows, size_t *nrows, char *err)
{
    size_t lim = test ? o->test_limit : o->limit, m;
    size_t *v;
    int rc;
    *rows = NULL;
    *nrows = 0;
    if (pd_random_rows(n, lim ? lim : n, test ? o->seed + 1 : o->seed, &v, &m))
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory selecting rows");
    const char *scheme = NULL;
    if (test && o->test_share) {
        if (o->num_parts < 1 || o->part < 0 || o->part >= o->num_parts) {
            free(v);
            return pt_seterr(err, PT_ERR_INVAL, "test share: part %d out of range (0..%d)",
                             o->part, o->num_parts - 1);
        }
        if (m < (size_t)o->num_parts) m = 0; /* too small to share: no validation */
        else scheme = "iid";
    } else if (!test && o->partition && *o->partition) {
        if (o->num_parts >= 1 && (o->part < 0 || o->part >= o->num_parts)) {
            free(v);
            return pt_seterr(err, PT_ERR_INVAL, "partition %s: part %d out of range (0..%d)",
                             o->partition, o->part, o->num_parts - 1);
        }
        scheme = o->partition;
    }
    if (scheme && m) { /* partition the kept rows by their labels, keep this part's */
        int32_t *lab = malloc(m * sizeof *lab);
        int *owner = malloc(m * sizeof *owner);
        if (!lab || !owner) {
            free(lab);
            free(owner);
            free(v);
            return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
        }
        for (size_t i = 0; i < m; i++) lab[i] = y[v[i]];
        rc = pd_partition_labels(lab, m, nclasses, scheme, o->num_parts, o->seed, owner, err);
        size_t k = 0;
        for (size_t i = 0; !rc && i < m; i++)
            if (owner[i] == o->part) v[k++] = v[i];
        free(lab);
        free(owner);
        if (rc) {
            free(v);
            return rc;
        }
        m = k;
    }
    *rows = v;
    *nrows = m;
    return PT_OK;
}

int pd_target_shape(const pd_open_opts *o, int nh, int nw, int nc, size_t n, const char *what,
                    int *th, int *tw, int *tc, char *err)
{
    *th = o && o->h ? o->h : nh;
    *tw = o && o->w ? o->w : nw;
    *tc = o && o->c ? o->c : nc;
    if (*th > nh || *tw > nw) {
        double gib = (double)n * (double)*th * (double)*tw * (double)*tc * 4.0 / 1073741824.0;
        return pt_seterr(err, PT_ERR_UNSUPPORTED,
                         "%s holds %dx%d images and the model takes %dx%d: Petal does not "
                         "upsample a dataset up front (these %zu examples would take %.1f GiB); "
                         "use a model whose input is at most %dx%d",
                         what, nh, nw, *th, *tw, n, gib, nh, nw);
    }
    return PT_OK;
}

static int known(const char *scheme, size_t len, const char *name)
{
    return strlen(name) == len && !strncmp(scheme, name, len);
}

int pd_open(pd_dataset *train, pd_dataset *test, const char *spec, const pd_open_opts *opts,
            char *err)
{
    pd_open_opts o = opts ? *opts : pd_open_opts_default();
    int rc;
    if (!train && !test) return pt_seterr(err, PT_ERR_INVAL, "pd_open: no output dataset");
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (!spec || !*spec) return pt_seterr(err, PT_ERR_INVAL, "empty dataset spec");
    if (o.h < 0 || o.w < 0 || (o.h == 0) != (o.w == 0) || o.h > 16384 || o.w > 16384)
        return pt_seterr(err, PT_ERR_INVAL, "invalid image size %dx%d", o.h, o.w);
    if (o.c != 0 && o.c != 1 && o.c != 3 && o.c != 4)
        return pt_seterr(err, PT_ERR_INVAL, "invalid channel count %d (use 1, 3 or 4)", o.c);
    if (o.partition && *o.partition && (rc = pd_partition_check(o.partition, err))) return rc;

    /* scheme:ARG, when the part before ':' looks like a scheme name */
    const char *colon = strchr(spec, ':');
    size_t sl = 0;
    if (colon) {
        sl = (size_t)(colon - spec);
        for (size_t i = 0; i < sl; i++)
            if (!isalnum((unsigned char)spec[i]) && spec[i] != '-' && spec[i] != '_') sl = 0;
    }
    const char *arg = sl ? colon + 1 : NULL;
    if (sl && !*arg)
        return pt_seterr(err, PT_ERR_INVAL, "dataset spec '%s': missing directory after ':'",
                         spec);

    if (!strcmp(spec, "fashion-mnist") || (sl && known(spec, sl, "fashion-mnist"))) {
        rc = pd_fashion_mnist_open(train, test, arg, &o, err);
    } else if (sl && (known(spec, sl, "mnist") || known(spec, sl, "idx"))) {
        rc = pd_idx_dir_open(train, test, arg, 0, NULL, &o, err);
    } else if (sl && (known(spec, sl, "cifar10") || known(spec, sl, "cifar-10"))) {
        rc = pd_cifar10_open(train, test, arg, &o, err);
    } else if (sl && known(spec, sl, "folder")) {
        return pd_load_folder(train, test, arg, &o, err);
    } else {
        struct stat st;
        if (stat(spec, &st) == 0) return pd_load_folder(train, test, spec, &o, err);
        if (!strcmp(spec, "mnist") || !strcmp(spec, "idx") || !strcmp(spec, "cifar10") ||
            !strcmp(spec, "cifar-10"))
            return pt_seterr(err, PT_ERR_INVAL, "dataset %s needs a directory: %s:DIR", spec,
                             spec);
        if (sl)
            return pt_seterr(err, PT_ERR_INVAL,
                             "unknown dataset '%s' (use fashion-mnist, mnist:DIR, idx:DIR, "
                             "cifar10:DIR, folder:DIR or an image folder path)",
                             spec);
        return pd_load_folder(train, test, spec, &o, err); /* reports the missing folder */
    }
    if (!rc && o.split_info) {
        memset(o.split_info, 0, sizeof *o.split_info);
        o.split_info->own_test_set = 1;
    }
    return rc;
}
