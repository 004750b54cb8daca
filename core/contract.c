/* contract.c - the federation's data contract: the server's class vocabulary
 * and held-out split, sent in the fit/evaluate config, checked and adopted by
 * Petal clients (see contract_int.h). */
#include "contract_int.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing and the held-out Bloom filter --------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return mix64(h ^ n);
}

/* Layout: "PBF1", k (1 byte), 3 zero bytes, m (bits, u32 little-endian), the
 * m bits (bit i: byte i / 8, mask 1 << (i % 8)). Bit j of key x (j < k):
 * (x + j * (mix64(x) | 1)) mod m. */
#define BF_HDR 12

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int bf_build(const uint64_t *keys, size_t n, uint8_t **out, size_t *len)
{
    uint64_t m = (uint64_t)n * 16; /* 16 bits per key: ~0.05% false positives */
    if (m < 64) m = 64;
    if (m > (uint64_t)PT_CONTRACT_MAX_FILTER * 8) m = (uint64_t)PT_CONTRACT_MAX_FILTER * 8;
    int k = n ? (int)lround((double)m / (double)n * 0.6931) : 1;
    if (k < 1) k = 1;
    if (k > 16) k = 16;
    size_t bytes = (size_t)((m + 7) / 8);
    uint8_t *b = calloc(BF_HDR + bytes, 1);
    if (!b) return PT_ERR_NOMEM;
    memcpy(b, "PBF1", 4);
    b[4] = (uint8_t)k;
    for (int i = 0; i < 4; i++) b[8 + i] = (uint8_t)(m >> (8 * i));
    for (size_t i = 0; i < n; i++) {
        uint64_t h2 = mix64(keys[i]) | 1;
        for (int j = 0; j < k; j++) {
            uint64_t bit = (keys[i] + (uint64_t)j * h2) % m;
            b[BF_HDR + bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
    }
    *out = b;
    *len = BF_HDR + bytes;
    return PT_OK;
}

/* 1 when the filter (checked by bf_valid) may hold key. */
static int bf_has(const uint8_t *b, uint64_t key)
{
    int k = b[4];
    uint64_t m = rd32(b + 8), h2 = mix64(key) | 1;
    for (int j = 0; j < k; j++) {
        uint64_t bit = (key + (uint64_t)j * h2) % m;
        if (!(b[BF_HDR + bit / 8] & (1u << (bit % 8)))) return 0;
    }
    return 1;
}

static int bf_valid(const uint8_t *b, size_t len)
{
    if (len < BF_HDR || memcmp(b, "PBF1", 4) || b[4] < 1 || b[4] > 32) return 0;
    uint64_t m = rd32(b + 8);
    return m >= 8 && len == BF_HDR + (size_t)((m + 7) / 8);
}

/* ---- the server's side ------------------------------------------------------------ */

void pt_contract_free(pt_contract *c)
{
    if (!c) return;
    free(c->classes);
    free(c->split);
    free(c->filter);
    memset(c, 0, sizeof *c);
}

int pt_contract_build(pt_contract *c, const pd_dataset *test, const pd_split_info *si,
                      char *err)
{
    memset(c, 0, sizeof *c);
    if (test->nclasses < 1 || test->nclasses > PT_CONTRACT_MAX_CLASSES)
        return pt_seterr(err, PT_ERR_RANGE, "data contract: %d classes (1 to %d)",
                         test->nclasses, PT_CONTRACT_MAX_CLASSES);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < test->nclasses; i++) {
        char num[24];
        snprintf(num, sizeof num, "%d", i);
        cJSON *s = cJSON_CreateString(test->class_names ? test->class_names[i] : num);
        if (!s || !cJSON_AddItemToArray(arr, s)) {
            cJSON_Delete(s);
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    c->classes = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    c->nclasses = test->nclasses;
    char split[256], vs[32];
    for (int prec = 1; prec <= 17; prec++) { /* the shortest text that reads back the same */
        snprintf(vs, sizeof vs, "%.*g", prec, si->val_split);
        if (strtod(vs, NULL) == si->val_split) break;
    }
    if (si->own_test_set)
        snprintf(split, sizeof split, "kind=test-set");
    else
        snprintf(split, sizeof split,
                 "kind=folder files=%zu heldout=%zu val_split=%s seed=%u list=%016llx",
                 si->files, si->heldout, vs, si->seed,
                 (unsigned long long)si->list_hash);
    c->split = strdup(split);
    if (!c->classes || !c->split ||
        (!si->own_test_set && si->heldout_keys &&
         bf_build(si->heldout_keys, si->heldout, &c->filter, &c->filter_len))) {
        pt_contract_free(c);
        return pt_seterr(err, PT_ERR_NOMEM, "data contract: out of memory");
    }
    return PT_OK;
}

int pt_contract_put(const pt_contract *c, pt_config *cfg, int with_filter)
{
    int rc;
    if (!c || !c->classes) return PT_OK;
    if ((rc = pt_config_set_string(cfg, PT_CONTRACT_CLASSES, c->classes)) ||
        (rc = pt_config_set_string(cfg, PT_CONTRACT_SPLIT, c->split)))
        return rc;
    if (with_filter && c->filter)
        return pt_config_set_bytes(cfg, PT_CONTRACT_HELDOUT, c->filter, c->filter_len);
    return PT_OK;
}

void pt_contract_describe(const pt_contract *c, char *buf, size_t len)
{
    snprintf(buf, len, "%d classes %.300s%s; split: %s%s%zu bytes of held-out filter)",
             c->nclasses, c->classes, strlen(c->classes) > 300 ? "..." : "", c->split,
             c->filter ? " (" : " (", c->filter_len);
}

/* ---- the client's side ------------------------------------------------------------ */

/* "key=value" in a split description; the value's text in v (len cap). */
static int kv(const char *split, const char *key, char *v, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = split; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            const char *e = strchr(p + kl + 1, ' ');
            size_t n = e ? (size_t)(e - p - kl - 1) : strlen(p + kl + 1);
            if (n >= cap) return 0;
            memcpy(v, p + kl + 1, n);
            v[n] = 0;
            return 1;
        }
        p = strchr(p, ' ');
        if (p) p++;
    }
    return 0;
}

typedef struct named {
    const char *name;
    int index;
} named;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* The server's classes (a JSON array of strings), sorted for lookups. */
static int parse_classes(const char *json, cJSON **root, named **sorted, int *n, char *err)
{
    *root = cJSON_Parse(json);
    *sorted = NULL;
    if (!*root || !cJSON_IsArray(*root))
        return pt_seterr(err, PT_ERR_FORMAT, "the server's %s is not a JSON array",
                         PT_CONTRACT_CLASSES);
    int cnt = cJSON_GetArraySize(*root);
    if (cnt < 1 || cnt > PT_CONTRACT_MAX_CLASSES)
        return pt_seterr(err, PT_ERR_FORMAT, "the server sent %d classes (1 to %d)", cnt,
                         PT_CONTRACT_MAX_CLASSES);
    named *v = malloc((size_t)cnt * sizeof *v);
    if (!v) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    int i = 0;
    for (cJSON *it = (*root)->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring) {
            free(v);
            return pt_seterr(err, PT_ERR_FORMAT, "the server's class %d is not a string", i);
        }
        v[i] = (named){it->valuestring, i};
    }
    qsort(v, (size_t)cnt, sizeof *v, cmp_named);
    for (i = 1; i < cnt; i++)
        if (!strcmp(v[i].name, v[i - 1].name)) {
            int rc = pt_seterr(err, PT_ERR_FORMAT, "the server's classes name '%s' twice",
                               v[i].name);
            free(v);
            return rc;
        }
    *sorted = v;
    *n = cnt;
    return PT_OK;
}

/* "a, b, c, ... (N)" of the server's classes, for messages. */
static void list_names(const cJSON *root, char *buf, size_t len)
{
    size_t off = 0;
    int i = 0, n = cJSON_GetArraySize(root);
    buf[0] = 0;
    for (const cJSON *it = root->child; it && i < 8 && off < len; it = it->next, i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", it->valuestring);
    if (n > 8 && off < len) snprintf(buf + off, len - off, ", ... (%d classes)", n);
}

static const char *client_class(const pd_dataset *d, int i, char *num, size_t len)
{
    if (d->class_names) return d->class_names[i];
    snprintf(num, len, "%d", i);
    return num;
}

/* map[i] = the server's index of this client's class i; a class the server
 * does not know is refused. */
static int map_classes(const pd_dataset *train, const cJSON *root, const named *srv, int nsrv,
                       int *map, char *err)
{
    for (int i = 0; i < train->nclasses; i++) {
        char num[24], have[400];
        named key = {client_class(train, i, num, sizeof num), 0};
        const named *hit = bsearch(&key, srv, (size_t)nsrv, sizeof *srv, cmp_named);
        if (!hit) {
            list_names(root, have, sizeof have);
            return pt_seterr(err, PT_ERR_MISMATCH,
                             "this client's class '%s' is not one of the server's classes (%s): "
                             "the federation's labels are the server's; remove or rename that "
                             "class folder",
                             key.name, have);
        }
        map[i] = hit->index;
    }
    return PT_OK;
}

/* Relabel d through map and give it the server's class names. */
static int relabel(pd_dataset *d, const int *map, const cJSON *root, int nsrv, char *err)
{
    const char **names = malloc((size_t)nsrv * sizeof *names);
    if (!names) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    int i = 0;
    for (const cJSON *it = root->child; it; it = it->next) names[i++] = it->valuestring;
    int rc = pd_set_class_names(d, names, nsrv, err); /* sets nclasses */
    free(names);
    if (rc) return rc;
    for (size_t k = 0; k < d->n; k++) d->y[k] = map[d->y[k]];
    return PT_OK;
}

/* Training examples in the server's held-out split: count, or drop them. */
static size_t heldout_hits(const pd_dataset *train, const uint8_t *bf, size_t *first)
{
    size_t hits = 0;
    for (size_t i = 0; train->keys && i < train->n; i++)
        if (bf_has(bf, train->keys[i]) && hits++ == 0) *first = i;
    return hits;
}

static void drop_heldout(pd_dataset *train, const uint8_t *bf)
{
    size_t per = pd_example_floats(train), m = 0;
    for (size_t i = 0; i < train->n; i++) {
        if (bf_has(bf, train->keys[i])) continue;
        if (m != i) {
            memmove(train->x + m * per, train->x + i * per, per * sizeof(float));
            train->y[m] = train->y[i];
            train->keys[m] = train->keys[i];
        }
        m++;
    }
    train->n = m;
}

/* The held-out filter against this client's training set. */
static int apply_filter(pt_contract_state *st, const char *split, const pt_scalar *f,
                        pd_dataset *train, pt_contract_outcome *out, char *err)
{
    const uint8_t *bf = (const uint8_t *)f->v.s.ptr;
    char vs[64] = "", sd[64] = "";
    size_t first = 0;
    if (f->type != PT_SCALAR_BYTES || !bf_valid(bf, f->v.s.len))
        return pt_seterr(err, PT_ERR_FORMAT, "the server's %s is not a held-out filter",
                         PT_CONTRACT_HELDOUT);
    char lh[32] = "";
    kv(split, "val_split", vs, sizeof vs);
    kv(split, "seed", sd, sizeof sd);
    kv(split, "list", lh, sizeof lh);
    double svs = atof(vs);
    unsigned long long ssd = strtoull(sd, NULL, 10);
    int same_settings = svs == st->val_split && ssd == (st->seed & 0xffffffffu);
    if (same_settings && st->own_folder && strtoull(lh, NULL, 16) == st->own_list_hash)
        return PT_OK; /* the same file list, cut the same way: the server's split exactly */
    size_t hits = heldout_hits(train, bf, &first);
    if (!hits) return PT_OK;
    if (!same_settings)
        return pt_seterr(err, PT_ERR_MISMATCH,
                         "the server holds out %s of its images with seed %s, this client %g "
                         "with seed %llu: %zu of its %zu training images are in the server's "
                         "held-out split; start it with --val-split %s --seed %s",
                         vs, sd, st->val_split, (unsigned long long)(st->seed & 0xffffffffu),
                         hits, train->n, vs, sd);
    /* same settings, another folder (a client's own subset of the classes,
     * say): Keras' shuffle cut it differently; never train on those */
    drop_heldout(train, bf);
    out->excluded = hits;
    if (train->n == 0)
        return pt_seterr(err, PT_ERR_MISMATCH,
                         "every training image of this client is in the server's held-out split");
    return PT_OK;
}

int pt_contract_apply(pt_contract_state *st, const pt_config *cfg, pd_dataset *train,
                      pd_dataset *val, pt_contract_outcome *out, char *err)
{
    memset(out, 0, sizeof *out);
    const pt_scalar *cl = pt_config_get(cfg, PT_CONTRACT_CLASSES);
    const pt_scalar *sp = pt_config_get(cfg, PT_CONTRACT_SPLIT);
    const pt_scalar *f = pt_config_get(cfg, PT_CONTRACT_HELDOUT);
    if (!cl) return PT_OK;
    out->present = 1;
    if (cl->type != PT_SCALAR_STRING || !sp || sp->type != PT_SCALAR_STRING)
        return pt_seterr(err, PT_ERR_FORMAT, "the server's data contract is malformed (%s, %s)",
                         PT_CONTRACT_CLASSES, PT_CONTRACT_SPLIT);
    uint64_t terms = hash_bytes(hash_bytes(0x636c61737365ull, cl->v.s.ptr, cl->v.s.len),
                                sp->v.s.ptr, sp->v.s.len);
    if (st->agreed && terms != st->terms_hash)
        return pt_seterr(err, PT_ERR_MISMATCH, "the server's classes or split changed during the "
                         "run (this client's labels follow the first ones)");
    if (st->agreed && (!f || st->filter_checked)) {
        if (f && hash_bytes(1, f->v.s.ptr, f->v.s.len) != st->filter_hash)
            return pt_seterr(err, PT_ERR_MISMATCH, "the server's held-out split changed during "
                             "the run");
        return PT_OK;
    }
    cJSON *root = NULL;
    named *srv = NULL;
    int nsrv = 0, rc = PT_OK, *map = NULL;
    if (!st->agreed) {
        if ((rc = parse_classes(cl->v.s.ptr, &root, &srv, &nsrv, err))) goto done;
        if (nsrv > st->model_classes) {
            rc = pt_seterr(err, PT_ERR_MISMATCH, "the server's %d classes do not fit this "
                           "client's model (%d outputs)", nsrv, st->model_classes);
            goto done;
        }
        if (!(map = malloc((size_t)(train->nclasses > 0 ? train->nclasses : 1) * sizeof *map))) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
            goto done;
        }
        if ((rc = map_classes(train, root, srv, nsrv, map, err))) goto done;
    }
    if (f && (rc = apply_filter(st, sp->v.s.ptr, f, train, out, err))) goto done;
    if (!st->agreed) {
        int lacking = nsrv - train->nclasses;
        if ((rc = relabel(train, map, root, nsrv, err)) ||
            (val && val->y && (rc = relabel(val, map, root, nsrv, err))))
            goto done;
        out->first = 1;
        snprintf(out->note, sizeof out->note,
                 "labels follow the server's %d classes (this client holds %d of them%s); "
                 "split: %.200s",
                 nsrv, nsrv - lacking, lacking ? ": non-IID, aligned" : "", sp->v.s.ptr);
        st->agreed = 1;
        st->terms_hash = terms;
    }
    if (f) {
        st->filter_checked = 1;
        st->filter_hash = hash_bytes(1, f->v.s.ptr, f->v.s.len);
        if (out->excluded) {
            size_t off = strlen(out->note);
            snprintf(out->note + off, sizeof out->note - off,
                     "%s%zu training images left out: the server holds them out for "
                     "evaluation (this client's folder differs from the server's, so Keras' "
                     "shuffle splits it differently)",
                     off ? "; " : "", out->excluded);
        }
    }
done:
    free(map);
    free(srv);
    cJSON_Delete(root);
    return rc;
}
