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

/* Keep only rows whose owner is `part` (in place, order kept). */
static void keep_part(pd_dataset *d, const int *owner, int part)
{
    size_t per = pd_example_floats(d), m = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (owner[i] != part) continue;
        if (m != i) {
            memmove(d->x + m * per, d->x + i * per, per * sizeof(float));
            d->y[m] = d->y[i];
            if (d->keys) d->keys[m] = d->keys[i];
        }
        m++;
    }
    d->n = m;
}

/* Keep only part o->part of d under `scheme` (partitioned by its labels). */
static int keep_share(pd_dataset *d, const char *scheme, const pd_open_opts *o, char *err)
{
    int *owner = malloc((d->n ? d->n : 1) * sizeof *owner);
    if (!owner) return pt_seterr(err, PT_ERR_NOMEM, "out of memory partitioning");
    int rc = pd_partition_labels(d->y, d->n, d->nclasses, scheme, o->num_parts, o->seed, owner,
                                 err);
    if (!rc) keep_part(d, owner, o->part);
    free(owner);
    return rc;
}

/* limit, partition and reshape for formats with their own test set; either
 * split may be NULL */
static int post_load(pd_dataset *tr, pd_dataset *te, const pd_open_opts *o, char *err)
{
    int rc;
    if (tr && o->limit) pd_keep_random(tr, o->limit, o->seed);
    if (te && o->test_limit) pd_keep_random(te, o->test_limit, o->seed + 1);
    if (te && o->test_share) {
        if (o->num_parts < 1 || o->part < 0 || o->part >= o->num_parts)
            return pt_seterr(err, PT_ERR_INVAL, "test share: part %d out of range (0..%d)",
                             o->part, o->num_parts - 1);
        if (te->n < (size_t)o->num_parts) te->n = 0; /* too small to share: no validation */
        else if ((rc = keep_share(te, "iid", o, err))) return rc;
    }
    if (tr && o->partition && *o->partition) {
        if (o->num_parts >= 1 && (o->part < 0 || o->part >= o->num_parts))
            return pt_seterr(err, PT_ERR_INVAL, "partition %s: part %d out of range (0..%d)",
                             o->partition, o->part, o->num_parts - 1);
        if ((rc = keep_share(tr, o->partition, o, err))) return rc;
    }
    const pd_dataset *ref = tr ? tr : te;
    int h = o->h ? o->h : ref->h, w = o->w ? o->w : ref->w, c = o->c ? o->c : ref->c;
    if ((tr && (rc = pd_reshape(tr, h, w, c, err))) || (te && (rc = pd_reshape(te, h, w, c, err))))
        return rc;
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
        rc = pd_load_fashion_mnist(train, test, arg, err);
    } else if (sl && (known(spec, sl, "mnist") || known(spec, sl, "idx"))) {
        rc = pd_load_idx_dir(train, test, arg, err);
    } else if (sl && (known(spec, sl, "cifar10") || known(spec, sl, "cifar-10"))) {
        rc = pd_load_cifar10(train, test, arg, err);
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
    if (rc) return rc;
    if ((rc = post_load(train, test, &o, err))) {
        if (train) pd_dataset_free(train);
        if (test) pd_dataset_free(test);
        return rc;
    }
    return PT_OK;
}
