/* pdata_info.c - load a dataset spec, print its shape and the load time.
 *
 *   build/pdata-info [-s H,W,C] [-v VAL_SPLIT] [-t THREADS] [-l LIMIT] [-p SCHEME [-n N]]
 *                    [-o train|test] SPEC
 *
 * Used by `make bench-data` (timing the houseware folder) and handy to check
 * a folder before a run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pdata.h"

static void describe(const char *what, const pd_dataset *d)
{
    long cnt[256] = {0};
    double sum = 0;
    size_t per = pd_example_floats(d);
    for (size_t i = 0; i < d->n; i++)
        if (d->y[i] >= 0 && d->y[i] < 256) cnt[d->y[i]]++;
    for (size_t j = 0; j < d->n * per; j++) sum += d->x[j];
    printf("%s: %zu examples of %dx%dx%d, %d classes, %zu skipped, mean pixel %.4f\n", what,
           d->n, d->h, d->w, d->c, d->nclasses, d->skipped, d->n ? sum / (double)(d->n * per) : 0);
    for (int k = 0; k < d->nclasses && k < 256; k++)
        printf("  %2d %-20s %ld\n", k, d->class_names ? d->class_names[k] : "", cnt[k]);
}

int main(int argc, char **argv)
{
    pd_open_opts o = pd_open_opts_default();
    int opt, want_train = 1, want_test = 1;
    while ((opt = getopt(argc, argv, "s:v:t:l:p:n:o:")) != -1) {
        switch (opt) {
        case 's':
            if (sscanf(optarg, "%d,%d,%d", &o.h, &o.w, &o.c) != 3) {
                fprintf(stderr, "-s H,W,C\n");
                return 2;
            }
            break;
        case 'v': o.val_split = atof(optarg); break;
        case 't': o.threads = atoi(optarg); break;
        case 'l': o.limit = (size_t)atol(optarg); break;
        case 'p': o.partition = optarg; o.num_parts = o.num_parts ? o.num_parts : 2; break;
        case 'n': o.num_parts = atoi(optarg); break;
        case 'o':
            want_train = !strcmp(optarg, "train");
            want_test = !strcmp(optarg, "test");
            break;
        default:
            fprintf(stderr, "usage: %s [-s H,W,C] [-v VAL_SPLIT] [-t THREADS] [-l LIMIT] "
                            "[-p SCHEME (part 0) [-n PARTS (default 2)]] [-o train|test] SPEC\n", argv[0]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: %s [options] SPEC\n", argv[0]);
        return 2;
    }
    pd_dataset tr = {0}, te = {0};
    char err[PT_ERRLEN];
    double t0 = pt_now();
    int rc = pd_open(want_train ? &tr : NULL, want_test ? &te : NULL, argv[optind], &o, err);
    double dt = pt_now() - t0;
    if (rc) {
        fprintf(stderr, "error: %s (%s)\n", err, pt_strerror(rc));
        return 1;
    }
    printf("loaded %s in %.3f s (%d thread%s), peak RSS %lld KiB\n", argv[optind], dt,
           o.threads > 1 ? o.threads : 1, o.threads > 1 ? "s" : "",
           (long long)(pt_peak_rss_bytes() / 1024));
    if (want_train) describe("train", &tr);
    if (want_test) describe("test", &te);
    pd_dataset_free(&tr);
    pd_dataset_free(&te);
    return 0;
}
