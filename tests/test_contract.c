/* test_contract.c - core/contract.c: the server's classes and held-out split,
 * as a Petal client checks and adopts them. */
#include "contract_int.h"
#include "test.h"

/* A dataset of n examples with labels y, classes names, keys k (or NULL). */
static void mk(pd_dataset *d, size_t n, const int32_t *y, const char *const *names, int nc,
               const uint64_t *keys)
{
    char err[PT_ERRLEN];
    memset(d, 0, sizeof *d);
    d->n = n;
    d->h = d->w = d->c = 1;
    d->x = calloc(n ? n : 1, sizeof(float));
    d->y = malloc((n ? n : 1) * sizeof *d->y);
    for (size_t i = 0; i < n; i++) {
        d->y[i] = y[i];
        d->x[i] = (float)i;
    }
    if (keys) {
        d->keys = malloc((n ? n : 1) * sizeof *d->keys);
        memcpy(d->keys, keys, n * sizeof *keys);
    }
    if (names) pd_set_class_names(d, names, nc, err);
    else d->nclasses = nc;
}

static const char *const ABC[3] = {"a", "b", "c"};

static void server_contract(pt_contract *c, pt_config *fit, pt_config *ev, const uint64_t *held,
                            size_t nheld)
{
    char err[PT_ERRLEN];
    pd_dataset t;
    int32_t y[1] = {0};
    mk(&t, 1, y, ABC, 3, NULL);
    pd_split_info si = {0, 40, nheld, 0.25, 1337, 0xabcdefull, (uint64_t *)held};
    memset(fit, 0, sizeof *fit);
    memset(ev, 0, sizeof *ev);
    if (pt_contract_build(c, &t, &si, err) || pt_contract_put(c, fit, 1) ||
        pt_contract_put(c, ev, 0))
        fprintf(stderr, "contract: %s\n", err);
    pd_dataset_free(&t);
}

static void t_aligned_and_left_out(void)
{
    char err[PT_ERRLEN] = "";
    pt_contract c;
    pt_config fit, ev;
    uint64_t held[3] = {pd_key("b/1.png"), pd_key("c/9.png"), pd_key("a/4.png")};
    server_contract(&c, &fit, &ev, held, 3);
    ASSERT_STR_EQ(pt_config_get(&fit, PT_CONTRACT_CLASSES)->v.s.ptr, "[\"a\",\"b\",\"c\"]");
    ASSERT_CONTAINS(pt_config_get(&fit, PT_CONTRACT_SPLIT)->v.s.ptr,
                    "kind=folder files=40 heldout=3 val_split=0.25 seed=1337 list=0000000000abcdef");
    ASSERT(pt_config_get(&fit, PT_CONTRACT_HELDOUT) != NULL);
    ASSERT(pt_config_get(&ev, PT_CONTRACT_HELDOUT) == NULL);
    /* a client with classes b and c only (labels 0, 1 locally), one of its
     * training files held out by the server */
    static const char *const BC[2] = {"b", "c"};
    int32_t y[4] = {0, 1, 1, 0};
    uint64_t k[4] = {pd_key("b/0.png"), pd_key("c/9.png"), pd_key("c/3.png"), pd_key("b/2.png")};
    pd_dataset tr, va;
    int32_t vy[2] = {1, 0};
    mk(&tr, 4, y, BC, 2, k);
    mk(&va, 2, vy, BC, 2, NULL);
    pt_contract_state st = {0.25, 1337, 10, 1, 0x1234, 0, 0, 0, 0};
    pt_contract_outcome out;
    /* evaluate first (no filter): labels adopted, nothing left out yet */
    ASSERT_MSG(pt_contract_apply(&st, &ev, &tr, &va, &out, err) == 0, "%s", err);
    ASSERT(out.first && out.excluded == 0);
    ASSERT_CONTAINS(out.note, "labels follow the server's 3 classes (this client holds 2 of "
                              "them: non-IID, aligned)");
    ASSERT_EQ_INT(tr.nclasses, 3);
    ASSERT_STR_EQ(tr.class_names[0], "a");
    ASSERT_EQ_INT(tr.y[0], 1); /* b */
    ASSERT_EQ_INT(tr.y[1], 2); /* c */
    ASSERT_EQ_INT(va.y[0], 2);
    ASSERT_EQ_INT(va.y[1], 1);
    /* then a fit with the filter: c/9.png left out, labels not remapped twice */
    ASSERT_MSG(pt_contract_apply(&st, &fit, &tr, &va, &out, err) == 0, "%s", err);
    ASSERT(!out.first);
    ASSERT_EQ_INT(out.excluded, 1);
    ASSERT_EQ_INT(tr.n, 3);
    ASSERT_EQ_INT(tr.y[0], 1);
    ASSERT_EQ_INT(tr.y[1], 2); /* c/3.png moved up */
    ASSERT(tr.keys[1] == pd_key("c/3.png"));
    ASSERT_NEAR(tr.x[1], 2.0, 0);
    /* the same contract again: nothing to do */
    ASSERT_OK(pt_contract_apply(&st, &fit, &tr, &va, &out, err));
    ASSERT(!out.first && out.excluded == 0 && !out.note[0]);
    /* a contract that changes mid-run is refused */
    pt_config_set_string(&ev, PT_CONTRACT_SPLIT, "kind=test-set");
    ASSERT_EQ_INT(pt_contract_apply(&st, &ev, &tr, &va, &out, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "changed during the run");
    pd_dataset_free(&tr);
    pd_dataset_free(&va);
    pt_config_free(&fit);
    pt_config_free(&ev);
    pt_contract_free(&c);
}

static void t_refusals(void)
{
    char err[PT_ERRLEN] = "";
    pt_contract c;
    pt_config fit, ev;
    uint64_t held[1] = {pd_key("a/0.png")};
    server_contract(&c, &fit, &ev, held, 1);
    int32_t y[2] = {0, 1};
    uint64_t k[2] = {pd_key("a/0.png"), pd_key("z/0.png")};
    pt_contract_outcome out;
    pd_dataset tr;
    /* a class the server does not know */
    static const char *const AZ[2] = {"a", "zebra"};
    mk(&tr, 2, y, AZ, 2, k);
    pt_contract_state st = {0.25, 1337, 10, 1, 0, 0, 0, 0, 0};
    ASSERT_EQ_INT(pt_contract_apply(&st, &fit, &tr, NULL, &out, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "class 'zebra' is not one of the server's classes (a, b, c)");
    ASSERT_EQ_INT(tr.y[1], 1); /* untouched */
    pd_dataset_free(&tr);
    /* other split settings, and a training file the server holds out */
    static const char *const AB[2] = {"a", "b"};
    mk(&tr, 2, y, AB, 2, k);
    pt_contract_state st2 = {0.5, 7, 10, 1, 0, 0, 0, 0, 0};
    ASSERT_EQ_INT(pt_contract_apply(&st2, &fit, &tr, NULL, &out, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "the server holds out 0.25 of its images with seed 1337, this client "
                         "0.5 with seed 7: 1 of its 2 training images");
    /* the same settings and the same list: the filter is not even consulted */
    pt_contract_state st3 = {0.25, 1337, 10, 1, 0xabcdef, 0, 0, 0, 0};
    ASSERT_OK(pt_contract_apply(&st3, &fit, &tr, NULL, &out, err));
    ASSERT_EQ_INT(out.excluded, 0);
    ASSERT_EQ_INT(tr.n, 2);
    pd_dataset_free(&tr);
    /* a model too small for the server's classes */
    mk(&tr, 2, y, AB, 2, k);
    pt_contract_state st4 = {0.25, 1337, 2, 1, 0, 0, 0, 0, 0};
    ASSERT_EQ_INT(pt_contract_apply(&st4, &ev, &tr, NULL, &out, err), PT_ERR_MISMATCH);
    ASSERT_CONTAINS(err, "the server's 3 classes do not fit this client's model (2 outputs)");
    /* malformed contracts */
    pt_contract_state st5 = {0.25, 1337, 10, 1, 0, 0, 0, 0, 0};
    pt_config_set_string(&ev, PT_CONTRACT_CLASSES, "[\"a\",\"a\"]");
    ASSERT_EQ_INT(pt_contract_apply(&st5, &ev, &tr, NULL, &out, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "name 'a' twice");
    pt_config_set_string(&ev, PT_CONTRACT_CLASSES, "{}");
    ASSERT_EQ_INT(pt_contract_apply(&st5, &ev, &tr, NULL, &out, err), PT_ERR_FORMAT);
    pt_config_set_bytes(&fit, PT_CONTRACT_HELDOUT, "PBF1\x05", 5);
    ASSERT_EQ_INT(pt_contract_apply(&st5, &fit, &tr, NULL, &out, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "not a held-out filter");
    /* no contract: nothing happens */
    pt_config none = {0};
    ASSERT_OK(pt_contract_apply(&st5, &none, &tr, NULL, &out, err));
    ASSERT(!out.present);
    pd_dataset_free(&tr);
    pt_config_free(&fit);
    pt_config_free(&ev);
    pt_contract_free(&c);
}

/* The filter has no false negatives and few false positives. */
static void t_filter_rate(void)
{
    char err[PT_ERRLEN] = "";
    enum { N = 5000 };
    uint64_t *held = malloc(N * sizeof *held), *k = malloc(2 * N * sizeof *k);
    int32_t *y = calloc(2 * N, sizeof *y);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "a/h%d.png", i);
        held[i] = k[i] = pd_key(name);
        snprintf(name, sizeof name, "a/t%d.png", i);
        k[N + i] = pd_key(name);
    }
    pt_contract c;
    pt_config fit, ev;
    server_contract(&c, &fit, &ev, held, N);
    ASSERT(c.filter_len <= 12 + (size_t)N * 2);
    pd_dataset tr;
    static const char *const A1[1] = {"a"};
    mk(&tr, 2 * N, y, A1, 1, k);
    pt_contract_state st = {0.25, 1337, 3, 1, 0, 0, 0, 0, 0};
    pt_contract_outcome out;
    ASSERT_MSG(pt_contract_apply(&st, &fit, &tr, NULL, &out, err) == 0, "%s", err);
    ASSERT(out.excluded >= N);
    ASSERT_MSG(out.excluded - N < N / 200, "%zu false positives in %d", out.excluded - N, N);
    for (size_t i = 0; i < tr.n; i++) ASSERT(tr.x[i] >= N); /* every held-out file is gone */
    printf("  held-out filter: %zu bytes for %d files, %zu false positives in %d others\n",
           c.filter_len, N, out.excluded - N, N);
    pd_dataset_free(&tr);
    pt_config_free(&fit);
    pt_config_free(&ev);
    pt_contract_free(&c);
    free(held);
    free(k);
    free(y);
}

TEST_MAIN(TEST(t_aligned_and_left_out), TEST(t_refusals), TEST(t_filter_rate))
