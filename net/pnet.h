/*
 * pnet.h - Petal's Flower wire protocol: protobuf messages (protobuf-c), NPY
 * tensors, config maps, gRPC over HTTP/2 (nghttp2) with optional TLS
 * (OpenSSL). Prefix: pnet_. Knows nothing of models: tensors are pt_params
 * (core/petal.h) and messages are bytes.
 *
 * Errors: functions return PT_OK (0) or a negative pt_err code from
 * core/petal.h, and fill an optional caller buffer char err[PT_ERRLEN].
 */
#ifndef PETAL_NET_H
#define PETAL_NET_H

#include <stddef.h>
#include <stdint.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================
 * Part 1: codec - NPY tensors, Scalar maps, Flower messages.
 * (owned by the codec work; see net/npy.c, net/msg.c, net/scalar.c)
 *
 * Wire schema: net/proto/transport.proto (package flwr.proto, Flower's
 * field numbers). Encoders compute the exact packed size first and write
 * straight into the destination (no intermediate copies of tensor data).
 * Decoders never copy tensor bytes: they return views (pnet_bytes) into the
 * caller's message buffer, which must outlive the decoded struct; every
 * length is validated against the buffer. Config/metrics maps are decoded
 * into owned pt_config copies.
 * ====================================================================== */

/* A borrowed byte range. */
typedef struct pnet_bytes {
    const uint8_t *ptr;
    size_t len;
} pnet_bytes;

/* ---- NPY (numpy .npy format, one file per tensor) --------------------- */
typedef enum pnet_dtype {
    PNET_DT_F4 = 1, /* '<f4' (or '>f4') float32 */
    PNET_DT_F8 = 2, /* '<f8' (or '>f8') float64 */
    PNET_DT_I8 = 3  /* '<i8' (or '>i8') int64 */
} pnet_dtype;

/* What pnet_npy_view() found. Pointers borrow the caller's buffer. */
typedef struct pnet_npy_info {
    int version;                 /* major version: 1, 2 or 3 */
    pnet_dtype dtype;
    int big_endian;              /* descr starts with '>' */
    int itemsize;                /* 4 or 8 */
    int fortran_order;           /* data is column-major */
    int ndim;                    /* 0..PT_MAX_DIMS */
    int64_t shape[PT_MAX_DIMS];  /* logical shape */
    size_t numel;                /* product of shape (1 for 0-d) */
    size_t data_offset;          /* bytes before the data */
    const uint8_t *data;         /* numel * itemsize bytes (unaligned) */
    size_t data_len;             /* numel * itemsize */
} pnet_npy_info;

/* Parse an NPY file held in buf[0..len) without copying. Accepts what
 * numpy's np.load(allow_pickle=False) accepts for the supported dtypes:
 * versions 1.0/2.0/3.0, any key order, ' or " quotes, optional trailing
 * comma/newline, fortran_order True/False, extra bytes after the data.
 * Returns PT_OK; PT_ERR_FORMAT (bad magic/version, header over 10000 bytes,
 * malformed dict, shape not a tuple, missing/unknown keys, negative dims,
 * short data), PT_ERR_RANGE (element count overflows), PT_ERR_UNSUPPORTED
 * (dtype other than f4/f8/i8, more than PT_MAX_DIMS dims). err may be NULL. */
int pnet_npy_view(const uint8_t *buf, size_t len, pnet_npy_info *out, char *err);

/* Conversion flags for pnet_npy_to_f32 / pnet_params_decode. */
#define PNET_NPY_F32_ONLY 0x1      /* reject anything but float32 (PT_ERR_UNSUPPORTED) */
#define PNET_NPY_ERR_OVERFLOW 0x2  /* f8/i8 values beyond float32 range -> PT_ERR_RANGE */

/* Convert the tensor described by info into dst (numel floats, C order):
 * f4 copied, f8 and i8 converted to float32, big-endian swapped, fortran
 * order transposed. numel must equal info->numel (else PT_ERR_MISMATCH).
 * Returns PT_OK, PT_ERR_MISMATCH, PT_ERR_UNSUPPORTED, PT_ERR_RANGE. */
int pnet_npy_to_f32(const pnet_npy_info *info, float *dst, size_t numel, unsigned flags,
                    char *err);

/* Header length (10 + HEADER_LEN = data offset) numpy's np.save writes for a
 * C-order float32 array of this shape: 128 for ordinary shapes. */
size_t pnet_npy_header_size(int ndim, const int64_t *shape);
/* Whole encoded size: pnet_npy_header_size + numel * 4. */
size_t pnet_npy_size(int ndim, const int64_t *shape);
/* Write exactly what np.save writes for a float32 C-order array (v1.0, same
 * header text and padding) into out[0..cap). data holds numel floats
 * (host order; written little-endian). *written gets the size.
 * Returns PT_OK, PT_ERR_INVAL (ndim/shape), PT_ERR_RANGE (cap too small). */
int pnet_npy_encode(const float *data, int ndim, const int64_t *shape, uint8_t *out, size_t cap,
                    size_t *written, char *err);

/* ---- Parameters <-> pt_params ------------------------------------------ */
/* Decoded Parameters: tensor views into the message buffer. */
typedef struct pnet_params_view {
    size_t n;              /* number of tensors */
    pnet_bytes *tensors;   /* n NPY files (array owned by the decoded message) */
    pnet_bytes tensor_type; /* e.g. "numpy.ndarray" (not checked, as Flower) */
} pnet_params_view;

/* Decode every tensor of v into dst. If dst is empty (zeroed) it is
 * allocated with the tensors' shapes (free with pt_params_free). Otherwise
 * the count and every shape must match dst: PT_ERR_MISMATCH names the
 * tensor index and both shapes. flags: PNET_NPY_*. Returns PT_OK or the
 * pnet_npy_view / pnet_npy_to_f32 / PT_ERR_NOMEM codes (err names the
 * tensor index). On error an allocated dst is freed, an existing one may
 * be partly overwritten. */
int pnet_params_decode(const pnet_params_view *v, pt_params *dst, unsigned flags, char *err);

/* Size of a Parameters message body (tensors as NPY, tensor_type
 * "numpy.ndarray") for p, without its own tag/length. */
size_t pnet_params_packed_size(const pt_params *p);

/* ---- messages ------------------------------------------------------------ */
/* The oneof member of a ServerMessage / ClientMessage (same numbers as the
 * field numbers on the wire). NONE = no member set. */
typedef enum pnet_smsg_type {
    PNET_SMSG_NONE = 0,
    PNET_SMSG_RECONNECT = 1,
    PNET_SMSG_GET_PROPERTIES = 2,
    PNET_SMSG_GET_PARAMETERS = 3,
    PNET_SMSG_FIT = 4,
    PNET_SMSG_EVALUATE = 5
} pnet_smsg_type;

typedef enum pnet_cmsg_type {
    PNET_CMSG_NONE = 0,
    PNET_CMSG_DISCONNECT = 1,
    PNET_CMSG_GET_PROPERTIES = 2,
    PNET_CMSG_GET_PARAMETERS = 3,
    PNET_CMSG_FIT = 4,
    PNET_CMSG_EVALUATE = 5
} pnet_cmsg_type;

/* Flower enums. */
enum { PNET_CODE_OK = 0, PNET_CODE_GET_PROPERTIES_NOT_IMPLEMENTED = 1,
       PNET_CODE_GET_PARAMETERS_NOT_IMPLEMENTED = 2, PNET_CODE_FIT_NOT_IMPLEMENTED = 3,
       PNET_CODE_EVALUATE_NOT_IMPLEMENTED = 4 };
enum { PNET_REASON_UNKNOWN = 0, PNET_REASON_RECONNECT = 1, PNET_REASON_POWER_DISCONNECTED = 2,
       PNET_REASON_WIFI_UNAVAILABLE = 3, PNET_REASON_ACK = 4 };

/* A ServerMessage to encode. Unused pointers may be NULL (NULL config =
 * empty map; NULL params = empty Parameters with tensor_type set). */
typedef struct pnet_server_out {
    pnet_smsg_type type;
    int64_t seconds;          /* RECONNECT (0 = unset: encodes as 0a 00) */
    const pt_params *params;  /* FIT, EVALUATE */
    const pt_config *config;  /* GET_PROPERTIES, GET_PARAMETERS, FIT, EVALUATE */
} pnet_server_out;

/* A ClientMessage to encode. */
typedef struct pnet_client_out {
    pnet_cmsg_type type;
    int reason;               /* DISCONNECT: PNET_REASON_* */
    int status_code;          /* PNET_CODE_* (all but DISCONNECT) */
    const char *status_message; /* NULL = none; NumPyClient sends "Success" */
    const pt_params *params;  /* GET_PARAMETERS, FIT (NULL = empty Parameters) */
    int64_t num_examples;     /* FIT, EVALUATE */
    float loss;               /* EVALUATE */
    const pt_config *metrics; /* GET_PROPERTIES (properties), FIT, EVALUATE */
} pnet_client_out;

/* Decoded ServerMessage (client side). Free with pnet_server_in_free. */
typedef struct pnet_server_in {
    pnet_smsg_type type;
    int64_t seconds;          /* RECONNECT */
    pt_config config;         /* owned copy */
    pnet_params_view params;  /* FIT, EVALUATE: views into the message buffer */
} pnet_server_in;

/* Decoded ClientMessage (server side). Free with pnet_client_in_free. */
typedef struct pnet_client_in {
    pnet_cmsg_type type;
    int reason;               /* DISCONNECT */
    int status_code;
    pnet_bytes status_message; /* view into the message buffer */
    pnet_params_view params;  /* GET_PARAMETERS, FIT: views into the buffer */
    int64_t num_examples;
    float loss;
    pt_config metrics;        /* properties / metrics, owned copy */
} pnet_client_in;

/* Exact packed size of the message (protobuf bytes, no gRPC prefix).
 * Returns PT_OK, PT_ERR_INVAL (bad type/arguments). */
int pnet_server_out_size(const pnet_server_out *m, size_t *size, char *err);
int pnet_client_out_size(const pnet_client_out *m, size_t *size, char *err);
/* Pack the message into buf[0..cap); *written = bytes written (equal to the
 * size above). Returns PT_OK, PT_ERR_INVAL, PT_ERR_RANGE (cap too small). */
int pnet_server_out_pack(const pnet_server_out *m, uint8_t *buf, size_t cap, size_t *written,
                         char *err);
int pnet_client_out_pack(const pnet_client_out *m, uint8_t *buf, size_t cap, size_t *written,
                         char *err);

/* Decode a whole protobuf message buf[0..len) (no gRPC prefix). out is
 * overwritten (need not be initialised). Views in out point into buf.
 * Unknown fields are skipped as protobuf does; a repeated oneof member
 * merges, a different one replaces. Returns PT_OK, PT_ERR_PROTO (malformed
 * protobuf: err says what and at which offset), PT_ERR_NOMEM. On error out
 * is left empty (safe to free). */
int pnet_server_in_decode(const uint8_t *buf, size_t len, pnet_server_in *out, char *err);
int pnet_client_in_decode(const uint8_t *buf, size_t len, pnet_client_in *out, char *err);
/* Free owned parts and zero (NULL-safe, idempotent). */
void pnet_server_in_free(pnet_server_in *m);
void pnet_client_in_free(pnet_client_in *m);

/* Names for logs: "fit_ins", "evaluate_res", ... ("none" / "unknown"). */
const char *pnet_smsg_name(pnet_smsg_type t);
const char *pnet_cmsg_name(pnet_cmsg_type t);

/* ======================================================================
 * Part 2: transport - gRPC over HTTP/2, h2c and TLS, server and client.
 * (owned by the transport work; see net/h2*.c, net/grpc*.c)
 * ====================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* PETAL_NET_H */
