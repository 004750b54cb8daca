/*
 * pnn.h - Petal's standalone CNN library (libpetal-nn): Keras-style models,
 * training on OpenBLAS (or a plain-C reference GEMM), Keras weight layout.
 *
 * Depends only on libc, OpenBLAS (cblas_sgemm) and cJSON. Link with
 * `pkg-config --cflags --libs petal-nn` (static: `--static`).
 *
 * Quick start:
 *
 *     char err[PNN_ERRLEN];
 *     pnn_opts o;
 *     pnn_opts_init(&o);               // openblas backend, 1 thread, seed 0
 *     pnn_model *m;
 *     if (pnn_model_new(&m, "fmnist-cnn", &o, err) != PNN_OK) { puts(err); return 1; }
 *     pnn_fit_opts f;
 *     pnn_fit_opts_init(&f);           // 1 epoch, batch 32, Adam lr 1e-3
 *     pnn_epoch_stats st;
 *     pnn_fit(m, x, y, n, &f, &st, err);          // x: n*28*28*1 floats (NHWC), y: labels
 *     double loss, acc;
 *     pnn_evaluate(m, xt, yt, nt, 256, &loss, &acc, err);
 *     pnn_model_free(m);
 *
 * Layout (Keras, because weights cross the wire to Keras/Flower peers):
 *   - activations NHWC, float32; labels int32 class indices;
 *   - weights are an ordered list: for each layer with weights, its kernel
 *     then its bias; Conv2D kernel (kh, kw, in, out), Dense kernel (in, out);
 *   - Flatten flattens in H, W, C order.
 * All weights of a model live in one contiguous float buffer in that order
 * (pnn_weights_data), so a flat copy is the fastest way in and out.
 *
 * Models come from a built-in preset ("seed-cnn", "fmnist-cnn") or from JSON:
 *
 *     {"input_shape": [28, 28, 1],
 *      "layers": [
 *        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "strides": 1,
 *         "padding": "valid", "activation": "relu"},
 *        {"type": "MaxPool2D", "pool_size": 2},
 *        {"type": "Flatten"},
 *        {"type": "Dense", "units": 128, "activation": "relu"},
 *        {"type": "Dropout", "rate": 0.5},
 *        {"type": "Dense", "units": 10, "activation": "softmax"}]}
 *
 * Layer types: Conv2D (filters, kernel_size int|[kh,kw], strides int|[sh,sw],
 * padding "valid"|"same", activation), MaxPool2D/MaxPooling2D (pool_size,
 * strides: default pool_size; padding "valid"), Dense (units, activation),
 * ReLU, Softmax, Flatten, Dropout (rate in [0,1)). Activation is "relu",
 * "softmax", "linear" or absent. "class_name" is accepted for "type". A
 * top-level array whose first element is {"type": "Input", "shape": [h,w,c]}
 * is accepted too. The model's output must be a vector (after Flatten/Dense).
 * The loss is softmax cross-entropy: fused with a final softmax (layer or
 * activation); if the model ends without softmax its outputs are logits.
 *
 * Errors: functions return PNN_OK (0) or a negative pnn_err; those taking
 * `char *err` write a one-line explanation there (PNN_ERRLEN bytes; may be
 * NULL). The library never prints to stdout and never exits.
 *
 * Threads: a model must not be used from two threads at once; different
 * models may. With pnn_opts.threads = T the model keeps T-1 worker threads:
 * convolutions and pooling are split across images (each thread calling a
 * 1-thread GEMM), dense layers use OpenBLAS with T threads (OpenBLAS's thread
 * count is process-wide and is set when the model computes), the optimizer
 * step is split across threads. Results do not depend on T or on scheduling
 * (weight gradients are summed in a fixed order), so the same seeds give the
 * same weights.
 *
 * Memory: batch buffers are sized once per (model, largest batch size) and
 * kept; a Conv2D followed by a 2x2 MaxPool2D is computed in one pass, so its
 * full output is never stored (seed-cnn trains at batch 32 in ~330 MiB).
 *
 * Speed: OpenBLAS picks its kernels from the CPU; on CPUs it does not know it
 * may fall back to slow generic ones (check `openblas_get_corename()`; set
 * OPENBLAS_CORETYPE, e.g. SkylakeX or Haswell, in the environment before
 * starting).
 */
#ifndef PETAL_PNN_H
#define PETAL_PNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors -------------------------------------------------------------- */
/* Numbers are frozen: never renumbered; retired codes are not reused. */
typedef enum pnn_err {
    PNN_OK = 0,
    PNN_ERR_NOMEM = -1,     /* out of memory */
    PNN_ERR_INVAL = -2,     /* invalid argument (NULL, bad option value, bad sizes) */
    PNN_ERR_JSON = -3,      /* malformed or inconsistent model description */
    PNN_ERR_SHAPE = -4,     /* tensor count or shape mismatch */
    PNN_ERR_IO = -5,        /* file open/read/write failed */
    PNN_ERR_FORMAT = -6,    /* weights file malformed or truncated */
    PNN_ERR_BACKEND = -7,   /* unknown or unavailable compute backend */
    PNN_ERR_CANCELLED = -8, /* a progress callback asked to stop */
    PNN_ERR_NUMERIC = -9,   /* loss or weights became non-finite */
    PNN_ERR_LABEL = -10     /* label outside [0, classes) */
} pnn_err;

#define PNN_ERRLEN 256

/* Static description of an error code ("unknown error" for others). */
const char *pnn_strerror(int code);

/* ---- options ------------------------------------------------------------- */
typedef enum pnn_backend {
    PNN_BACKEND_OPENBLAS = 0,  /* cblas_sgemm from OpenBLAS (default) */
    PNN_BACKEND_REFERENCE = 1  /* plain C GEMM: slow, portable, for cross-checks */
} pnn_backend;

/* Parse "openblas" / "reference". Returns PNN_OK or PNN_ERR_BACKEND. */
int pnn_backend_parse(const char *name, pnn_backend *out);
/* "openblas", "reference" or "unknown". */
const char *pnn_backend_name(pnn_backend b);

typedef struct pnn_opts {
    pnn_backend backend; /* default PNN_BACKEND_OPENBLAS */
    int threads;         /* compute threads, >= 1 (default 1) */
    uint64_t seed;       /* weight init and dropout RNG seed (default 0) */
} pnn_opts;

/* Fill defaults. */
void pnn_opts_init(pnn_opts *o);

/* ---- models -------------------------------------------------------------- */
typedef struct pnn_model pnn_model;

/* Create a model from a spec: a preset name ("seed-cnn", "fmnist-cnn"), JSON
 * text (starting with '{' or '['), or the path of a JSON file. Weights are
 * Glorot-uniform kernels and zero biases from o->seed (same seed, same
 * weights). o may be NULL (defaults). On success *out owns the model (free
 * with pnn_model_free). Returns PNN_OK, PNN_ERR_JSON (bad description;
 * err names the layer and field), PNN_ERR_IO (file), PNN_ERR_INVAL,
 * PNN_ERR_BACKEND or PNN_ERR_NOMEM. */
int pnn_model_new(pnn_model **out, const char *spec, const pnn_opts *o, char *err);
/* Same, from JSON text of len bytes (need not be NUL-terminated). */
int pnn_model_new_json(pnn_model **out, const char *json, size_t len, const pnn_opts *o,
                       char *err);
/* JSON text of a built-in preset (static storage), or NULL if unknown. */
const char *pnn_preset_json(const char *name);

/* Free a model and everything it owns (NULL-safe). */
void pnn_model_free(pnn_model *m);

/* Change the backend / thread count of an existing model (weights kept).
 * Returns PNN_OK or PNN_ERR_INVAL/PNN_ERR_BACKEND. */
int pnn_model_set_backend(pnn_model *m, pnn_backend b, int threads);

/* Re-initialise the weights (Glorot-uniform / zeros) from seed, and reset the
 * optimizer state. */
void pnn_model_init_weights(pnn_model *m, uint64_t seed);

/* Input shape (height, width, channels); any pointer may be NULL. */
void pnn_input_shape(const pnn_model *m, int *h, int *w, int *c);
/* Floats per input image (h*w*c). */
size_t pnn_input_size(const pnn_model *m);
/* Number of outputs (classes). */
int pnn_num_classes(const pnn_model *m);
/* Total trainable parameters (floats). */
size_t pnn_param_count(const pnn_model *m);
/* Forward multiply-adds x2 per image (FLOPs of one inference). */
double pnn_forward_flops(const pnn_model *m);

/* ---- weights ------------------------------------------------------------- */
#define PNN_MAX_DIMS 4
typedef struct pnn_tensor {
    int ndim;
    int64_t shape[PNN_MAX_DIMS];
    size_t numel;
    float *data;
} pnn_tensor;

/* Number of weight tensors (2 per Conv2D/Dense layer: kernel, bias). */
size_t pnn_weights_count(const pnn_model *m);
/* Describe tensor i: ndim, shape, numel, and data pointing directly at the
 * model's storage (borrowed; valid until the model is freed; writes change the
 * model). Returns PNN_OK or PNN_ERR_INVAL (i out of range). */
int pnn_weight_info(const pnn_model *m, size_t i, pnn_tensor *out);
/* All weights, contiguous, Keras order (pnn_param_count floats; borrowed). */
float *pnn_weights_data(pnn_model *m);

/* Copy the weights into caller tensors: n must equal pnn_weights_count, each
 * dst[i] must have the model's shape (ndim/shape checked; numel ignored) and
 * dst[i].data room for its numel floats. Returns PNN_OK or PNN_ERR_SHAPE. */
int pnn_get_weights(const pnn_model *m, pnn_tensor *dst, size_t n, char *err);
/* Set the weights from n tensors with the model's count and shapes. Nothing
 * is changed on error. Returns PNN_OK, PNN_ERR_SHAPE (err names the tensor,
 * expected and actual shape) or PNN_ERR_INVAL (NULL data). */
int pnn_set_weights(pnn_model *m, const pnn_tensor *src, size_t n, char *err);
/* Set all weights from a flat array of total floats in Keras order. Returns
 * PNN_OK or PNN_ERR_SHAPE (total != pnn_param_count). */
int pnn_set_weights_flat(pnn_model *m, const float *buf, size_t total, char *err);

/* Save the weights to path: a .npz (zip, stored) of NPY float32 arrays named
 * arr_0.npy ... arr_{k-1}.npy in Keras order, readable with numpy.load.
 * Returns PNN_OK or PNN_ERR_IO. */
int pnn_save_weights(const pnn_model *m, const char *path, char *err);
/* Load weights saved by pnn_save_weights (or numpy.savez of float32 arrays
 * with the model's shapes, uncompressed). Nothing is changed on error.
 * Returns PNN_OK, PNN_ERR_IO, PNN_ERR_FORMAT (truncated/malformed) or
 * PNN_ERR_SHAPE (count/shape mismatch with the model). */
int pnn_load_weights(pnn_model *m, const char *path, char *err);

/* ---- training ------------------------------------------------------------ */
typedef enum pnn_optimizer {
    PNN_OPT_SGD = 0, /* Keras SGD: momentum, nesterov */
    PNN_OPT_ADAM = 1 /* Keras Adam: beta1 0.9, beta2 0.999, epsilon 1e-7 */
} pnn_optimizer;

/* Progress report, once per batch and once at the end of each epoch. */
typedef struct pnn_progress {
    int epoch;         /* 0-based */
    int epochs;
    size_t batch;      /* batches done in this epoch */
    size_t batches;    /* batches per epoch */
    size_t seen;       /* samples done in this epoch */
    size_t n;          /* samples per epoch */
    double loss;       /* running mean loss of this epoch */
    double accuracy;   /* running accuracy of this epoch */
    int epoch_end;     /* 1 on the end-of-epoch call */
} pnn_progress;

/* Return 0 to continue, non-zero to stop training (pnn_fit then returns
 * PNN_ERR_CANCELLED; the weights keep the updates done so far). */
typedef int (*pnn_progress_fn)(const pnn_progress *p, void *user);

typedef struct pnn_fit_opts {
    int epochs;               /* default 1 */
    int batch_size;           /* default 32; the last batch may be smaller */
    int shuffle;              /* default 1: shuffle each epoch */
    uint64_t shuffle_seed;    /* default 0; epoch e uses a stream derived from it */
    pnn_optimizer optimizer;  /* default PNN_OPT_ADAM */
    float learning_rate;      /* default 1e-3 (Adam); Keras SGD default is 0.01 */
    float momentum;           /* SGD, default 0 */
    int nesterov;             /* SGD, default 0 */
    float beta1, beta2, epsilon; /* Adam, defaults 0.9, 0.999, 1e-7 */
    /* FedProx: adds (mu/2)*||w - w_ref||^2 to the loss. prox_ref holds
     * pnn_param_count floats in Keras order (borrowed for the call); NULL with
     * mu > 0 uses the weights at the start of the call. */
    float proximal_mu;        /* default 0 */
    const float *prox_ref;
    int reset_optimizer;      /* 1: fresh optimizer state (default 0: keep the
                                 state of the previous fit, like a compiled Keras
                                 model; it is reset anyway when the optimizer
                                 type changes) */
    pnn_progress_fn progress; /* may be NULL */
    void *progress_user;
} pnn_fit_opts;

/* Fill defaults (see the fields). */
void pnn_fit_opts_init(pnn_fit_opts *o);

typedef struct pnn_epoch_stats {
    double loss;     /* mean training loss over the epoch (proximal term excluded) */
    double accuracy; /* training accuracy over the epoch */
} pnn_epoch_stats;

/* Train on n samples: x is n images NHWC float32 (pnn_input_size floats each),
 * y n int32 labels in [0, classes). stats, if not NULL, receives o->epochs
 * entries. Buffers are allocated once per (model, batch size) and kept.
 * Returns PNN_OK, PNN_ERR_INVAL, PNN_ERR_LABEL, PNN_ERR_NOMEM,
 * PNN_ERR_CANCELLED or PNN_ERR_NUMERIC (loss not finite). */
int pnn_fit(pnn_model *m, const float *x, const int32_t *y, size_t n, const pnn_fit_opts *o,
            pnn_epoch_stats *stats, char *err);

/* Mean loss and accuracy over n samples, batch_size at a time (<= 0: the
 * batch size the model's buffers already hold, or 32).
 * loss/accuracy may be NULL. Returns as pnn_fit. */
int pnn_evaluate(pnn_model *m, const float *x, const int32_t *y, size_t n, int batch_size,
                 double *loss, double *accuracy, char *err);

/* Model outputs (softmax probabilities if the model ends with softmax,
 * otherwise logits) for n images into out (n * pnn_num_classes floats). */
int pnn_predict(pnn_model *m, const float *x, size_t n, int batch_size, float *out, char *err);

/* Mean loss over n samples (inference mode: no dropout) plus
 * (mu/2)*||w - prox_ref||^2 when mu > 0 and prox_ref != NULL, and its gradient:
 * dweights (pnn_param_count floats, may be NULL) receives d loss / d weights,
 * dx (n * pnn_input_size floats, may be NULL) d loss / d x. For gradient checks
 * and custom optimizers. Returns as pnn_fit. */
int pnn_gradient(pnn_model *m, const float *x, const int32_t *y, size_t n, float mu,
                 const float *prox_ref, double *loss, float *dweights, float *dx, char *err);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_PNN_H */
