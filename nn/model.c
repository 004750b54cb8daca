/*
 * model.c - pnn models: errors, options, JSON descriptions and presets,
 * weight storage, Glorot initialisation, get/set weights.
 */
#include "nn_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/mman.h>

/* ---- errors ---------------------------------------------------------------- */
const char *pnn_strerror(int code)
{
    switch (code) {
    case PNN_OK: return "success";
    case PNN_ERR_NOMEM: return "out of memory";
    case PNN_ERR_INVAL: return "invalid argument";
    case PNN_ERR_JSON: return "invalid model description";
    case PNN_ERR_SHAPE: return "tensor count or shape mismatch";
    case PNN_ERR_IO: return "I/O error";
    case PNN_ERR_FORMAT: return "malformed or truncated weights file";
    case PNN_ERR_BACKEND: return "unknown or unavailable backend";
    case PNN_ERR_CANCELLED: return "cancelled by the progress callback";
    case PNN_ERR_NUMERIC: return "loss or weights not finite";
    case PNN_ERR_LABEL: return "label out of range";
    default: return "unknown error";
    }
}

int pnn__seterr(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PNN_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
           : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

FILE *pnn__fopen(const char *path, int write, int *rc, char *err)
{
    struct stat st;
    *rc = PNN_ERR_IO;
    if (write && stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        pnn__seterr(err, PNN_ERR_IO, "%.200s: %s, not a regular file", path, kind_of(st.st_mode));
        return NULL;
    }
    /* O_NONBLOCK: opening a FIFO must not wait for the other end */
    int fd = open(path, (write ? O_WRONLY | O_CREAT : O_RDONLY) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                  0644);
    if (fd < 0) {
        pnn__seterr(err, PNN_ERR_IO, "%.200s: %s", path,
                    errno == ENXIO ? "a FIFO, not a regular file" : strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        pnn__seterr(err, PNN_ERR_IO, "%.200s: %s, not a regular file", path, kind_of(st.st_mode));
        close(fd);
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = NULL;
    if ((write && ftruncate(fd, 0) != 0) || !(f = fdopen(fd, write ? "wb" : "rb"))) {
        pnn__seterr(err, PNN_ERR_IO, "%.200s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    *rc = PNN_OK;
    return f;
}

int pnn_backend_parse(const char *name, pnn_backend *out)
{
    if (!name || !out) return PNN_ERR_BACKEND;
    if (!strcmp(name, "openblas")) *out = PNN_BACKEND_OPENBLAS;
    else if (!strcmp(name, "reference")) *out = PNN_BACKEND_REFERENCE;
    else return PNN_ERR_BACKEND;
    return PNN_OK;
}

const char *pnn_backend_name(pnn_backend b)
{
    switch (b) {
    case PNN_BACKEND_OPENBLAS: return "openblas";
    case PNN_BACKEND_REFERENCE: return "reference";
    default: return "unknown";
    }
}

void pnn_opts_init(pnn_opts *o)
{
    memset(o, 0, sizeof *o);
    o->backend = PNN_BACKEND_OPENBLAS;
    o->threads = 1;
    o->seed = 0;
}

/* ---- RNG ---------------------------------------------------------------- */
uint64_t pnn__rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float pnn__rng_uniform(uint64_t *s)
{
    return (float)((pnn__rng_next(s) >> 40) * (1.0 / 16777216.0));
}

/* ---- big allocations ----------------------------------------------------- */
#define HUGE_SZ ((size_t)2 << 20)

void *pnn__big_alloc(pnn_model *m, size_t bytes)
{
    if (bytes == 0) bytes = 64;
    if (m->nblocks == m->capblocks) {
        size_t nc = m->capblocks ? 2 * m->capblocks : 16;
        void **nb = realloc(m->blocks, nc * 2 * sizeof *nb);
        if (!nb) return NULL;
        m->blocks = nb;
        m->capblocks = nc;
    }
    size_t len = (bytes + HUGE_SZ - 1) / HUGE_SZ * HUGE_SZ;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);
#endif
    m->blocks[2 * m->nblocks] = p;
    m->blocks[2 * m->nblocks + 1] = (void *)(uintptr_t)len;
    m->nblocks++;
    return p;
}

void pnn__big_free_all(pnn_model *m)
{
    for (size_t i = 0; i < m->nblocks; i++)
        munmap(m->blocks[2 * i], (size_t)(uintptr_t)m->blocks[2 * i + 1]);
    m->nblocks = 0;
    m->cap = m->gcap = 0;
    m->xin = m->ws = m->ws2 = m->gpriv = m->cs = m->pe = m->pde = NULL;
    m->pe_n = 0;
    m->gbuf[0] = m->gbuf[1] = NULL;
    for (int i = 0; i < m->nl; i++) {
        m->L[i].out = NULL;
        m->L[i].mask = NULL;
        m->L[i].code = NULL;
    }
}

/* ---- presets ------------------------------------------------------------- */
static const char SEED_CNN[] =
    "{\"name\": \"seed-cnn\", \"input_shape\": [256, 256, 3], \"layers\": [\n"
    " {\"type\": \"Conv2D\", \"filters\": 16, \"kernel_size\": 3, \"activation\": \"relu\"},\n"
    " {\"type\": \"MaxPool2D\", \"pool_size\": 2},\n"
    " {\"type\": \"Conv2D\", \"filters\": 32, \"kernel_size\": 3, \"activation\": \"relu\"},\n"
    " {\"type\": \"MaxPool2D\", \"pool_size\": 2},\n"
    " {\"type\": \"Conv2D\", \"filters\": 64, \"kernel_size\": 3, \"activation\": \"relu\"},\n"
    " {\"type\": \"MaxPool2D\", \"pool_size\": 2},\n"
    " {\"type\": \"Flatten\"},\n"
    " {\"type\": \"Dense\", \"units\": 128, \"activation\": \"relu\"},\n"
    " {\"type\": \"Dense\", \"units\": 10, \"activation\": \"softmax\"}]}\n";

static const char FMNIST_CNN[] =
    "{\"name\": \"fmnist-cnn\", \"input_shape\": [28, 28, 1], \"layers\": [\n"
    " {\"type\": \"Conv2D\", \"filters\": 32, \"kernel_size\": 3, \"activation\": \"relu\"},\n"
    " {\"type\": \"MaxPool2D\", \"pool_size\": 2},\n"
    " {\"type\": \"Conv2D\", \"filters\": 64, \"kernel_size\": 3, \"activation\": \"relu\"},\n"
    " {\"type\": \"MaxPool2D\", \"pool_size\": 2},\n"
    " {\"type\": \"Flatten\"},\n"
    " {\"type\": \"Dense\", \"units\": 128, \"activation\": \"relu\"},\n"
    " {\"type\": \"Dense\", \"units\": 10, \"activation\": \"softmax\"}]}\n";

const char *pnn_preset_json(const char *name)
{
    if (!name) return NULL;
    if (!strcmp(name, "seed-cnn")) return SEED_CNN;
    if (!strcmp(name, "fmnist-cnn")) return FMNIST_CNN;
    return NULL;
}

/* ---- JSON parsing -------------------------------------------------------- */
#define MAX_DIM 65536
#define MAX_LAYERS 1024
#define MAX_FLOATS ((size_t)1 << 31) /* per image activation / total weights */

static int get_int(const cJSON *o, const char *key, int def, int lo, int hi, int *out, int li,
                   char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (def < lo) return pnn__seterr(err, PNN_ERR_JSON, "layer %d: missing \"%s\"", li, key);
        *out = def;
        return PNN_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return pnn__seterr(err, PNN_ERR_JSON, "layer %d: \"%s\" must be an integer in [%d, %d]", li,
                         key, lo, hi);
    *out = (int)v->valuedouble;
    return PNN_OK;
}

/* int or [a, b] */
static int get_pair(const cJSON *o, const char *key, int def, int *a, int *b, int li, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (def < 1) return pnn__seterr(err, PNN_ERR_JSON, "layer %d: missing \"%s\"", li, key);
        *a = *b = def;
        return PNN_OK;
    }
    double d[2];
    if (cJSON_IsNumber(v)) {
        d[0] = d[1] = v->valuedouble;
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
               cJSON_IsNumber(cJSON_GetArrayItem(v, 0)) &&
               cJSON_IsNumber(cJSON_GetArrayItem(v, 1))) {
        d[0] = cJSON_GetArrayItem(v, 0)->valuedouble;
        d[1] = cJSON_GetArrayItem(v, 1)->valuedouble;
    } else {
        return pnn__seterr(err, PNN_ERR_JSON, "layer %d: \"%s\" must be an integer or [h, w]", li,
                         key);
    }
    for (int i = 0; i < 2; i++)
        if (d[i] != floor(d[i]) || d[i] < 1 || d[i] > MAX_DIM)
            return pnn__seterr(err, PNN_ERR_JSON,
                             "layer %d: \"%s\" values must be integers in [1, %d]", li, key,
                             MAX_DIM);
    *a = (int)d[0];
    *b = (int)d[1];
    return PNN_OK;
}

static int get_act(const cJSON *o, int *act, int li, char *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "activation");
    *act = NN_ACT_NONE;
    if (!v || cJSON_IsNull(v)) return PNN_OK;
    if (!cJSON_IsString(v))
        return pnn__seterr(err, PNN_ERR_JSON, "layer %d: \"activation\" must be a string", li);
    if (!strcmp(v->valuestring, "relu")) *act = NN_ACT_RELU;
    else if (!strcmp(v->valuestring, "softmax")) *act = NN_ACT_SOFTMAX;
    else if (strcmp(v->valuestring, "linear"))
        return pnn__seterr(err, PNN_ERR_JSON,
                         "layer %d: unknown activation \"%.40s\" (relu, softmax, linear)", li,
                         v->valuestring);
    return PNN_OK;
}

static int check_keys(const cJSON *o, const char *const *allowed, int li, char *err)
{
    for (const cJSON *c = o->child; c; c = c->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(c->string, *a)) ok = 1;
        if (!ok)
            return pnn__seterr(err, PNN_ERR_JSON, "layer %d: unknown field \"%.40s\"", li,
                             c->string);
    }
    return PNN_OK;
}

static int parse_shape(const cJSON *v, int *h, int *w, int *c, char *err)
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return pnn__seterr(err, PNN_ERR_JSON, "input shape must be an array [height, width, "
                                            "channels]");
    int d[3];
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
            e->valuedouble < 1 || e->valuedouble > MAX_DIM)
            return pnn__seterr(err, PNN_ERR_JSON,
                             "input shape entries must be integers in [1, %d]", MAX_DIM);
        d[i] = (int)e->valuedouble;
    }
    if ((size_t)d[0] * d[1] * d[2] >= MAX_FLOATS)
        return pnn__seterr(err, PNN_ERR_JSON, "input shape too large");
    *h = d[0];
    *w = d[1];
    *c = d[2];
    return PNN_OK;
}

static const char *type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(o, "class_name");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Fill m->L from the layer objects; computes shapes and weight offsets. */
static int build_layers(pnn_model *m, const cJSON *arr, int first, char *err)
{
    int n = cJSON_GetArraySize(arr) - first;
    if (n < 1) return pnn__seterr(err, PNN_ERR_JSON, "the model has no layers");
    if (n > MAX_LAYERS) return pnn__seterr(err, PNN_ERR_JSON, "too many layers (max %d)",
                                         MAX_LAYERS);
    m->L = calloc((size_t)n, sizeof *m->L);
    if (!m->L) return pnn__seterr(err, PNN_ERR_NOMEM, "out of memory");
    m->nl = n;
    int h = m->in_h, w = m->in_w, c = m->in_c;
    int flat = (h == 1 && w == 1);
    size_t off = 0, nw = 0;
    double flops = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *o = cJSON_GetArrayItem(arr, i + first);
        nn_layer *l = &m->L[i];
        int li = i + first, rc;
        if (!cJSON_IsObject(o))
            return pnn__seterr(err, PNN_ERR_JSON, "layer %d: must be an object", li);
        const char *t = type_of(o);
        if (!t) return pnn__seterr(err, PNN_ERR_JSON, "layer %d: missing string \"type\"", li);
        l->ih = h;
        l->iw = w;
        l->ic = c;
        if (!strcmp(t, "Conv2D")) {
            static const char *const keys[] = {"type", "class_name", "name", "filters",
                                               "kernel_size", "strides", "padding",
                                               "activation", NULL};
            if ((rc = check_keys(o, keys, li, err))) return rc;
            if (flat && i > 0 && m->L[i - 1].type != NN_CONV && m->L[i - 1].type != NN_POOL)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: Conv2D needs a 3-D input, not "
                                                    "the flat output of layer %d", li, li - 1);
            l->type = NN_CONV;
            l->rowshift = 1;
            l->pairs = 1;
            if ((rc = get_int(o, "filters", 0, 1, MAX_DIM, &l->oc, li, err))) return rc;
            if ((rc = get_pair(o, "kernel_size", 0, &l->kh, &l->kw, li, err))) return rc;
            if ((rc = get_pair(o, "strides", 1, &l->sh, &l->sw, li, err))) return rc;
            if ((rc = get_act(o, &l->act, li, err))) return rc;
            if (l->act == NN_ACT_SOFTMAX)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: softmax activation is only "
                                                    "supported on Dense layers", li);
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "padding");
            int same = 0;
            if (p) {
                if (!cJSON_IsString(p) ||
                    (strcmp(p->valuestring, "valid") && strcmp(p->valuestring, "same")))
                    return pnn__seterr(err, PNN_ERR_JSON, "layer %d: \"padding\" must be "
                                                        "\"valid\" or \"same\"", li);
                same = !strcmp(p->valuestring, "same");
            }
            if (same) {
                l->oh = (h + l->sh - 1) / l->sh;
                l->ow = (w + l->sw - 1) / l->sw;
                int ph = (l->oh - 1) * l->sh + l->kh - h, pw = (l->ow - 1) * l->sw + l->kw - w;
                l->pt = ph > 0 ? ph / 2 : 0;
                l->pl = pw > 0 ? pw / 2 : 0;
            } else {
                if (l->kh > h || l->kw > w)
                    return pnn__seterr(err, PNN_ERR_JSON, "layer %d: kernel %dx%d larger than "
                                                        "its input %dx%d", li, l->kh, l->kw, h, w);
                l->oh = (h - l->kh) / l->sh + 1;
                l->ow = (w - l->kw) / l->sw + 1;
            }
            if ((double)l->kh * l->kw * c * l->oc >= (double)MAX_FLOATS)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: too many parameters", li);
            l->wn = (size_t)l->kh * l->kw * c * l->oc;
            l->bn = (size_t)l->oc;
            flops += 2.0 * l->oh * l->ow * (double)l->wn;
            h = l->oh;
            w = l->ow;
            c = l->oc;
            flat = 0;
        } else if (!strcmp(t, "MaxPool2D") || !strcmp(t, "MaxPooling2D")) {
            static const char *const keys[] = {"type", "class_name", "name", "pool_size",
                                               "strides", "padding", NULL};
            if ((rc = check_keys(o, keys, li, err))) return rc;
            if (flat && i > 0 && m->L[i - 1].type != NN_CONV && m->L[i - 1].type != NN_POOL)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: MaxPool2D needs a 3-D input",
                                 li);
            l->type = NN_POOL;
            if ((rc = get_pair(o, "pool_size", 2, &l->kh, &l->kw, li, err))) return rc;
            if ((rc = get_pair(o, "strides", l->kh == l->kw ? l->kh : 1, &l->sh, &l->sw, li,
                               err)))
                return rc;
            if (!cJSON_GetObjectItemCaseSensitive(o, "strides")) {
                l->sh = l->kh;
                l->sw = l->kw;
            }
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "padding");
            if (p && (!cJSON_IsString(p) || strcmp(p->valuestring, "valid")))
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: MaxPool2D supports only "
                                                    "\"padding\": \"valid\"", li);
            if (l->kh > h || l->kw > w)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: pool %dx%d larger than its "
                                                    "input %dx%d", li, l->kh, l->kw, h, w);
            l->oh = (h - l->kh) / l->sh + 1;
            l->ow = (w - l->kw) / l->sw + 1;
            l->oc = c;
            h = l->oh;
            w = l->ow;
        } else if (!strcmp(t, "Dense")) {
            static const char *const keys[] = {"type", "class_name", "name", "units",
                                               "activation", NULL};
            if ((rc = check_keys(o, keys, li, err))) return rc;
            if (!flat)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: Dense needs a flat input (%dx%d"
                                                    "x%d): add a Flatten layer", li, h, w, c);
            l->type = NN_DENSE;
            if ((rc = get_int(o, "units", 0, 1, 1 << 24, &l->oc, li, err))) return rc;
            if ((rc = get_act(o, &l->act, li, err))) return rc;
            l->oh = l->ow = 1;
            l->wn = (size_t)h * w * c * l->oc;
            l->bn = (size_t)l->oc;
            flops += 2.0 * (double)l->wn;
            h = w = 1;
            c = l->oc;
        } else if (!strcmp(t, "ReLU") || !strcmp(t, "Softmax") || !strcmp(t, "Dropout") ||
                   !strcmp(t, "Flatten")) {
            static const char *const keys[] = {"type", "class_name", "name", NULL};
            static const char *const dkeys[] = {"type", "class_name", "name", "rate", NULL};
            int drop = !strcmp(t, "Dropout");
            if ((rc = check_keys(o, drop ? dkeys : keys, li, err))) return rc;
            l->oh = h;
            l->ow = w;
            l->oc = c;
            if (!strcmp(t, "ReLU")) {
                l->type = NN_RELU;
            } else if (!strcmp(t, "Softmax")) {
                if (!flat)
                    return pnn__seterr(err, PNN_ERR_JSON, "layer %d: Softmax needs a flat input",
                                     li);
                l->type = NN_SOFTMAX;
            } else if (drop) {
                l->type = NN_DROPOUT;
                const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "rate");
                if (!cJSON_IsNumber(r) || !(r->valuedouble >= 0 && r->valuedouble < 1))
                    return pnn__seterr(err, PNN_ERR_JSON, "layer %d: Dropout needs \"rate\" in "
                                                        "[0, 1)", li);
                l->rate = (float)r->valuedouble;
            } else {
                l->type = NN_FLATTEN;
                l->oh = l->ow = 1;
                l->oc = h * w * c;
                h = w = 1;
                c = l->oc;
                flat = 1;
            }
        } else {
            return pnn__seterr(err, PNN_ERR_JSON,
                             "layer %d: unknown type \"%.40s\" (Conv2D, MaxPool2D, Dense, ReLU, "
                             "Softmax, Flatten, Dropout)", li, t);
        }
        if (l->type == NN_CONV || l->type == NN_POOL) {
            if (l->oh < 1 || l->ow < 1)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: empty output", li);
        }
        l->isz = (size_t)l->ih * l->iw * l->ic;
        l->osz = (size_t)l->oh * l->ow * l->oc;
        if (l->osz >= MAX_FLOATS)
            return pnn__seterr(err, PNN_ERR_JSON, "layer %d: output too large", li);
        if (l->wn) {
            if (off + l->wn + l->bn >= MAX_FLOATS)
                return pnn__seterr(err, PNN_ERR_JSON, "layer %d: too many parameters", li);
            l->woff = off;
            l->boff = off + l->wn;
            off += l->wn + l->bn;
            nw += 2;
        }
    }
    if (!flat || (m->L[n - 1].type != NN_DENSE && m->L[n - 1].type != NN_SOFTMAX &&
                  m->L[n - 1].type != NN_FLATTEN && m->L[n - 1].type != NN_RELU &&
                  m->L[n - 1].type != NN_DROPOUT))
        return pnn__seterr(err, PNN_ERR_JSON, "the model's output must be a vector (end with "
                                            "Flatten/Dense), got %dx%dx%d", h, w, c);
    if (c < 2)
        return pnn__seterr(err, PNN_ERR_JSON, "the model needs at least 2 outputs (classes)");
    /* a max pool after a ReLU conv applies the ReLU mask in its backward pass:
     * the window winner is the pooled value, positive iff the ReLU passed it */
    for (int i = 0; i + 1 < n; i++) {
        nn_layer *cl = &m->L[i], *pl = &m->L[i + 1];
        if (cl->type != NN_CONV || pl->type != NN_POOL) continue;
        if (pl->kh == 2 && pl->kw == 2 && pl->sh == 2 && pl->sw == 2) {
            cl->fuse_pool = 1; /* conv + bias + ReLU + pool in one pass */
            pl->fused = 1;
        } else if (cl->act == NN_ACT_RELU) {
            cl->relu_masked = 1;
            pl->relu_in = 1;
        }
    }
    nn_layer *last = &m->L[n - 1];
    if (last->type == NN_SOFTMAX) {
        m->final_softmax = 1;
    } else if (last->act == NN_ACT_SOFTMAX) {
        m->final_softmax = 1;
        last->act = NN_ACT_NONE; /* fused into the loss */
    }
    m->ncls = c;
    m->nparams = off;
    m->nw = nw;
    m->fwd_flops = flops;
    return PNN_OK;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first key repeated in one object of the tree, or NULL. Python's json
 * and Keras keep the last value, cJSON the first: a model file with a
 * repeated key is refused rather than read differently from Keras. */
static const char *repeated_key(const cJSON *o)
{
    if (!cJSON_IsObject(o) && !cJSON_IsArray(o)) return NULL;
    size_t n = 0;
    for (const cJSON *c = o->child; c; c = c->next, n++) {
        const char *k = repeated_key(c);
        if (k) return k;
    }
    if (!cJSON_IsObject(o) || n < 2) return NULL;
    const char **keys = malloc(n * sizeof *keys), *dup = NULL;
    if (!keys) return "(out of memory)";
    n = 0;
    for (const cJSON *c = o->child; c; c = c->next) keys[n++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_key);
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(keys[i], keys[i - 1])) dup = keys[i];
    free(keys);
    return dup;
}

static int parse_model(pnn_model *m, const char *json, size_t len, char *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        long at = ep && ep >= json && ep <= json + len ? (long)(ep - json) : -1;
        return pnn__seterr(err, PNN_ERR_JSON, "model JSON: syntax error near byte %ld", at);
    }
    const char *dup = repeated_key(root);
    if (dup) {
        int rc = pnn__seterr(err, PNN_ERR_JSON, "model JSON: the key \"%.100s\" appears twice in "
                                                "one object (Keras would keep the last value; "
                                                "Petal refuses the file)",
                             dup);
        cJSON_Delete(root);
        return rc;
    }
    int rc;
    if (cJSON_IsObject(root)) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "layers");
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(root, "input_shape");
        for (const cJSON *c = root->child; c; c = c->next)
            if (strcmp(c->string, "layers") && strcmp(c->string, "input_shape") &&
                strcmp(c->string, "name")) {
                rc = pnn__seterr(err, PNN_ERR_JSON, "model JSON: unknown field \"%.40s\"",
                               c->string);
                goto out;
            }
        if (!shape) {
            rc = pnn__seterr(err, PNN_ERR_JSON, "model JSON: missing \"input_shape\"");
            goto out;
        }
        if (!cJSON_IsArray(arr)) {
            rc = pnn__seterr(err, PNN_ERR_JSON, "model JSON: \"layers\" must be an array");
            goto out;
        }
        if ((rc = parse_shape(shape, &m->in_h, &m->in_w, &m->in_c, err))) goto out;
        rc = build_layers(m, arr, 0, err);
    } else if (cJSON_IsArray(root)) {
        const cJSON *in = cJSON_GetArrayItem(root, 0);
        const char *t = cJSON_IsObject(in) ? type_of(in) : NULL;
        if (!t || (strcmp(t, "Input") && strcmp(t, "InputLayer"))) {
            rc = pnn__seterr(err, PNN_ERR_JSON, "model JSON: a layer array must start with "
                                              "{\"type\": \"Input\", \"shape\": [h, w, c]}");
            goto out;
        }
        if ((rc = parse_shape(cJSON_GetObjectItemCaseSensitive(in, "shape"), &m->in_h,
                              &m->in_w, &m->in_c, err)))
            goto out;
        rc = build_layers(m, root, 1, err);
    } else {
        rc = pnn__seterr(err, PNN_ERR_JSON, "model JSON: expected an object or an array");
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- weights ------------------------------------------------------------- */
void pnn_model_init_weights(pnn_model *m, uint64_t seed)
{
    uint64_t s = seed ^ 0x5eed5eed12345678ull;
    for (int i = 0; i < m->nl; i++) {
        nn_layer *l = &m->L[i];
        if (!l->wn) continue;
        double fan_in, fan_out;
        if (l->type == NN_CONV) {
            fan_in = (double)l->kh * l->kw * l->ic;
            fan_out = (double)l->kh * l->kw * l->oc;
        } else {
            fan_in = (double)l->isz;
            fan_out = l->oc;
        }
        float lim = (float)sqrt(6.0 / (fan_in + fan_out));
        float *w = m->w + l->woff;
        for (size_t k = 0; k < l->wn; k++) w[k] = (2.0f * pnn__rng_uniform(&s) - 1.0f) * lim;
        memset(m->w + l->boff, 0, l->bn * sizeof(float));
    }
    m->opt_type = -1;
    m->opt_t = 0;
    m->drop_rng = seed ^ 0xd50d50d5ull;
}

static int setup_tensors(pnn_model *m)
{
    m->w = calloc(m->nparams ? m->nparams : 1, sizeof(float));
    m->wt = calloc(m->nw ? m->nw : 1, sizeof *m->wt);
    if (!m->w || !m->wt) return PNN_ERR_NOMEM;
    size_t k = 0;
    for (int i = 0; i < m->nl; i++) {
        nn_layer *l = &m->L[i];
        if (!l->wn) continue;
        pnn_tensor *t = &m->wt[k++];
        if (l->type == NN_CONV) {
            t->ndim = 4;
            t->shape[0] = l->kh;
            t->shape[1] = l->kw;
            t->shape[2] = l->ic;
            t->shape[3] = l->oc;
        } else {
            t->ndim = 2;
            t->shape[0] = (int64_t)l->isz;
            t->shape[1] = l->oc;
        }
        t->numel = l->wn;
        t->data = m->w + l->woff;
        t = &m->wt[k++];
        t->ndim = 1;
        t->shape[0] = l->oc;
        t->numel = l->bn;
        t->data = m->w + l->boff;
    }
    return PNN_OK;
}

int pnn_model_new_json(pnn_model **out, const char *json, size_t len, const pnn_opts *o,
                       char *err)
{
    if (!out || !json) return pnn__seterr(err, PNN_ERR_INVAL, "NULL argument");
    *out = NULL;
    pnn_opts def;
    if (!o) {
        pnn_opts_init(&def);
        o = &def;
    }
    if (o->backend != PNN_BACKEND_OPENBLAS && o->backend != PNN_BACKEND_REFERENCE)
        return pnn__seterr(err, PNN_ERR_BACKEND, "unknown backend %d", (int)o->backend);
    if (o->threads < 1 || o->threads > 256)
        return pnn__seterr(err, PNN_ERR_INVAL, "threads must be in [1, 256], got %d", o->threads);
    pnn_model *m = calloc(1, sizeof *m);
    if (!m) return pnn__seterr(err, PNN_ERR_NOMEM, "out of memory");
    m->backend = o->backend;
    m->threads = o->threads;
    m->seed = o->seed;
    int rc = parse_model(m, json, len, err);
    if (rc) goto fail;
    if ((rc = setup_tensors(m))) {
        pnn__seterr(err, rc, "out of memory");
        goto fail;
    }
    pnn_model_init_weights(m, o->seed);
    *out = m;
    return PNN_OK;
fail:
    pnn_model_free(m);
    return rc;
}

int pnn_model_new(pnn_model **out, const char *spec, const pnn_opts *o, char *err)
{
    if (!out || !spec) return pnn__seterr(err, PNN_ERR_INVAL, "NULL argument");
    *out = NULL;
    const char *pre = pnn_preset_json(spec);
    if (pre) return pnn_model_new_json(out, pre, strlen(pre), o, err);
    const char *p = spec;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p == '{' || *p == '[') return pnn_model_new_json(out, spec, strlen(spec), o, err);
    char why[PNN_ERRLEN];
    int orc;
    FILE *f = pnn__fopen(spec, 0, &orc, why);
    if (!f)
        return pnn__seterr(err, orc, "model \"%.100s\": not a preset (seed-cnn, fmnist-cnn) and "
                                     "cannot open as a file: %.200s",
                         spec, why);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = PNN_OK;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > ((size_t)16 << 20)) {
                rc = pnn__seterr(err, PNN_ERR_JSON, "model file %.100s: larger than 16 MiB", spec);
                break;
            }
            cap = cap ? 2 * cap : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = pnn__seterr(err, PNN_ERR_NOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f)) rc = pnn__seterr(err, PNN_ERR_IO, "read %.100s failed", spec);
            break;
        }
    }
    fclose(f);
    if (rc == PNN_OK) rc = pnn_model_new_json(out, buf, len, o, err);
    free(buf);
    return rc;
}

void pnn_model_free(pnn_model *m)
{
    if (!m) return;
    pnn__pool_free(m);
    pnn__big_free_all(m);
    free(m->blocks);
    free(m->L);
    free(m->w);
    free(m->wt);
    free(m->g);
    free(m->opt_m);
    free(m->opt_v);
    free(m);
}

int pnn_model_set_backend(pnn_model *m, pnn_backend b, int threads)
{
    if (!m || threads < 1 || threads > 256) return PNN_ERR_INVAL;
    if (b != PNN_BACKEND_OPENBLAS && b != PNN_BACKEND_REFERENCE) return PNN_ERR_BACKEND;
    m->backend = b;
    if (threads != m->threads) {
        pnn__pool_free(m);
        pnn__big_free_all(m); /* per-thread workspaces are re-sized on next use */
    }
    m->threads = threads;
    return PNN_OK;
}

void pnn_input_shape(const pnn_model *m, int *h, int *w, int *c)
{
    if (h) *h = m->in_h;
    if (w) *w = m->in_w;
    if (c) *c = m->in_c;
}

size_t pnn_input_size(const pnn_model *m) { return (size_t)m->in_h * m->in_w * m->in_c; }
int pnn_num_classes(const pnn_model *m) { return m->ncls; }
size_t pnn_param_count(const pnn_model *m) { return m->nparams; }
double pnn_forward_flops(const pnn_model *m) { return m->fwd_flops; }
size_t pnn_weights_count(const pnn_model *m) { return m->nw; }
float *pnn_weights_data(pnn_model *m) { return m->w; }

int pnn_weight_info(const pnn_model *m, size_t i, pnn_tensor *out)
{
    if (!m || !out || i >= m->nw) return PNN_ERR_INVAL;
    *out = m->wt[i];
    return PNN_OK;
}

static void shape_str(const pnn_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, n - k, "(");
    int nd = t->ndim < 0 ? 0 : t->ndim > PNN_MAX_DIMS ? PNN_MAX_DIMS : t->ndim;
    for (int d = 0; d < nd && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

static int check_shapes(const pnn_model *m, const pnn_tensor *ts, size_t n, int need_data,
                        char *err)
{
    if (!ts && n) return pnn__seterr(err, PNN_ERR_INVAL, "NULL tensor list");
    if (n != m->nw)
        return pnn__seterr(err, PNN_ERR_SHAPE, "expected %zu weight tensors, got %zu", m->nw, n);
    for (size_t i = 0; i < n; i++) {
        const pnn_tensor *a = &ts[i], *e = &m->wt[i];
        int same = a->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = a->shape[d] == e->shape[d];
        if (!same) {
            char sa[96], se[96];
            if (a->ndim < 0 || a->ndim > PNN_MAX_DIMS) snprintf(sa, sizeof sa, "ndim %d",
                                                                a->ndim);
            else shape_str(a, sa, sizeof sa);
            shape_str(e, se, sizeof se);
            return pnn__seterr(err, PNN_ERR_SHAPE, "weight tensor %zu: expected shape %s, got %s",
                             i, se, sa);
        }
        if (need_data && !a->data)
            return pnn__seterr(err, PNN_ERR_INVAL, "weight tensor %zu: NULL data", i);
    }
    return PNN_OK;
}

int pnn_get_weights(const pnn_model *m, pnn_tensor *dst, size_t n, char *err)
{
    if (!m) return pnn__seterr(err, PNN_ERR_INVAL, "NULL model");
    int rc = check_shapes(m, dst, n, 1, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) memcpy(dst[i].data, m->wt[i].data, m->wt[i].numel * 4);
    return PNN_OK;
}

int pnn_set_weights(pnn_model *m, const pnn_tensor *src, size_t n, char *err)
{
    if (!m) return pnn__seterr(err, PNN_ERR_INVAL, "NULL model");
    int rc = check_shapes(m, src, n, 1, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) memmove(m->wt[i].data, src[i].data, m->wt[i].numel * 4);
    return PNN_OK;
}

int pnn_set_weights_flat(pnn_model *m, const float *buf, size_t total, char *err)
{
    if (!m || (!buf && total)) return pnn__seterr(err, PNN_ERR_INVAL, "NULL argument");
    if (total != m->nparams)
        return pnn__seterr(err, PNN_ERR_SHAPE, "expected %zu weights, got %zu", m->nparams, total);
    memmove(m->w, buf, total * sizeof(float));
    return PNN_OK;
}
