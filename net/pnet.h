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
#define PNET_NPY_FINITE 0x4        /* NaN or infinity -> PT_ERR_DIVERGED (and f8 values
                                      beyond float32 range -> PT_ERR_RANGE) */

/* Check the values of the tensor described by info against flags without
 * converting or writing anything: PNET_NPY_F32_ONLY (PT_ERR_UNSUPPORTED),
 * PNET_NPY_FINITE (PT_ERR_DIVERGED naming the element), PNET_NPY_ERR_OVERFLOW
 * (PT_ERR_RANGE). One read pass over the data. */
int pnet_npy_check(const pnet_npy_info *info, unsigned flags, char *err);

/* Convert the tensor described by info into dst (numel floats, C order):
 * f4 copied, f8 and i8 converted to float32, big-endian swapped, fortran
 * order transposed. numel must equal info->numel (else PT_ERR_MISMATCH).
 * With PNET_NPY_FINITE the values are checked first (pnet_npy_check) and dst
 * is untouched on PT_ERR_DIVERGED.
 * Returns PT_OK, PT_ERR_MISMATCH, PT_ERR_UNSUPPORTED, PT_ERR_RANGE, PT_ERR_DIVERGED. */
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

/* Check v whole without writing anything: every tensor parses (pnet_npy_view),
 * its values pass pnet_npy_check(flags), and, when like is not NULL, the
 * count and every shape match like (PT_ERR_MISMATCH names the tensor index
 * and both shapes). Returns PT_OK or those codes (err names the tensor). */
int pnet_params_check(const pnet_params_view *v, const pt_params *like, unsigned flags,
                      char *err);

/* Decode every tensor of v into dst. If dst is empty (zeroed) it is
 * allocated with the tensors' shapes (free with pt_params_free). Otherwise
 * the count and every shape must match dst: PT_ERR_MISMATCH names the
 * tensor index and both shapes. flags: PNET_NPY_*. v is validated whole
 * first (pnet_params_check): on any error dst is left as it was (an
 * allocated one is freed). Returns PT_OK or the pnet_params_check /
 * PT_ERR_NOMEM codes (err names the tensor index). */
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
    const pt_params *params;  /* GET_PARAMETERS, FIT (NULL = field omitted, as
                                 a NumPyClient's FIT_NOT_IMPLEMENTED reply) */
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
/* Encode straight into a new refcounted transport message (Part 2), sized
 * exactly, ready for pnet_server_send (one message to many clients, no
 * copies) or pnet_client_send_msg. *out holds one reference (pnet_msg_unref).
 * Returns PT_OK, PT_ERR_INVAL, PT_ERR_NOMEM or PT_ERR_RANGE (over 4 GiB). */
typedef struct pnet_msg pnet_msg;
int pnet_server_out_msg(const pnet_server_out *m, pnet_msg **out, char *err);
int pnet_client_out_msg(const pnet_client_out *m, pnet_msg **out, char *err);

/* Caps a decoder applies to what a peer sends, so that decoding costs and
 * holds memory linear in the message and bounded downstream (metric
 * aggregation, histories, checkpoints, logs). A zeroed struct (or NULL)
 * means the defaults. */
#define PNET_MAX_MAP_ENTRIES 1024 /* default: distinct keys per config/metrics map */
#define PNET_MAX_KEY_LEN 256      /* default: bytes per map key */
typedef struct pnet_decode_limits {
    size_t max_map_entries; /* distinct keys in one map<string, Scalar> (config,
                               metrics, properties); 0 = PNET_MAX_MAP_ENTRIES */
    size_t max_key_len;     /* bytes of one key; 0 = PNET_MAX_KEY_LEN; at most
                               PT_CONFIG_KEY_MAX (what checkpoints can hold) */
    size_t max_tensors;     /* Parameters.tensors entries (all Parameters fields of the
                               message merged); 0 = no cap. More is PT_ERR_MISMATCH
                               ("Parameters hold N tensors, more than the M expected")
                               before the tensor array is allocated. A server passes its
                               model's tensor count: then a message costs at most 16
                               bytes per expected tensor, not 16 bytes per 2 wire bytes */
} pnet_decode_limits;

/* Decode a whole protobuf message buf[0..len) (no gRPC prefix). out is
 * overwritten (need not be initialised). Views in out point into buf.
 * Unknown fields are skipped as protobuf does; a repeated oneof member
 * merges, a different one replaces. `lim` (NULL = defaults) caps the maps.
 * Returns PT_OK, PT_ERR_PROTO (malformed protobuf: err says what and at
 * which offset), PT_ERR_RANGE (over a cap of lim: err names it and the
 * option), PT_ERR_MISMATCH (over lim->max_tensors), PT_ERR_INVAL (lim over
 * PT_CONFIG_KEY_MAX), PT_ERR_NOMEM. On
 * error out is left empty (safe to free). */
int pnet_server_in_decode(const uint8_t *buf, size_t len, const pnet_decode_limits *lim,
                          pnet_server_in *out, char *err);
int pnet_client_in_decode(const uint8_t *buf, size_t len, const pnet_decode_limits *lim,
                          pnet_client_in *out, char *err);
/* Free owned parts and zero (NULL-safe, idempotent). */
void pnet_server_in_free(pnet_server_in *m);
void pnet_client_in_free(pnet_client_in *m);

/* Names for logs: "fit_ins", "evaluate_res", ... ("none" / "unknown"). */
const char *pnet_smsg_name(pnet_smsg_type t);
const char *pnet_cmsg_name(pnet_cmsg_type t);

/* ======================================================================
 * Part 2: transport - gRPC over HTTP/2, h2c and TLS, server and client.
 * (owned by the transport work; see net/h2*.c, net/grpc*.c)
 *
 * Moves opaque gRPC message bytes on the one Flower RPC,
 * POST /flwr.proto.FlowerService/Join (bidirectional stream). Cleartext h2c
 * with prior knowledge, or TLS (OpenSSL) with ALPN "h2". No hidden threads:
 * the server is an epoll loop driven by pnet_server_poll(); the client is
 * blocking and does I/O only inside its calls.
 *
 * Typical server use (the agent's round loop):
 *     pnet_msg *m;  pnet_msg_new(&m, size);
 *     pnet_server_out_pack(&out, pnet_msg_data(m), size, &n, err);
 *     for each client: pnet_server_send(srv, id, m);   (no copies)
 *     pnet_msg_unref(m);
 *     while (waiting) pnet_server_poll(srv, 100);       (callbacks fire here)
 * ====================================================================== */

/* gRPC status codes used by the transport. */
#define PNET_GRPC_OK 0
#define PNET_GRPC_CANCELLED 1
#define PNET_GRPC_UNKNOWN 2
#define PNET_GRPC_INVALID_ARGUMENT 3
#define PNET_GRPC_DEADLINE_EXCEEDED 4
#define PNET_GRPC_RESOURCE_EXHAUSTED 8
#define PNET_GRPC_UNIMPLEMENTED 12
#define PNET_GRPC_INTERNAL 13
#define PNET_GRPC_UNAVAILABLE 14
#define PNET_GRPC_UNAUTHENTICATED 16

#define PNET_MAX_MESSAGE_DEFAULT ((size_t)536870912) /* 512 MiB, as Flower */

/* ---- messages: refcounted, immutable once sent ------------------------ */
/* One gRPC message body (a serialized ServerMessage/ClientMessage). The
 * buffer keeps room for the 5-byte gRPC prefix in front of the data, so a
 * message goes to the socket straight from here, to any number of streams.
 * Reference counting is atomic (a message may be shared between threads). */
typedef struct pnet_msg pnet_msg;

/* New message of len bytes (uninitialised, writable through pnet_msg_data
 * until it is first sent). *out holds one reference. Returns PT_OK,
 * PT_ERR_NOMEM or PT_ERR_RANGE (len over 4 GiB - 1, gRPC's limit). */
int pnet_msg_new(pnet_msg **out, size_t len);
/* New message holding a copy of data[0..len). Same returns. */
int pnet_msg_from(pnet_msg **out, const void *data, size_t len);
/* The body: len bytes. Writable only before the message is first sent;
 * received messages are read-only by convention. Valid while a reference is held. */
uint8_t *pnet_msg_data(pnet_msg *m);
size_t pnet_msg_len(const pnet_msg *m);
/* Shrink the body to len (<= the length it was created with) before it is
 * sent, e.g. when the encoder wrote less than it reserved. PT_ERR_RANGE if
 * len is larger, PT_ERR_STATE once sent. */
int pnet_msg_set_len(pnet_msg *m, size_t len);
/* Add a reference; returns m. */
pnet_msg *pnet_msg_ref(pnet_msg *m);
/* Drop a reference; frees on the last one. NULL-safe. */
void pnet_msg_unref(pnet_msg *m);

/* Traffic counters. "wire" bytes are the HTTP/2 bytes read and written
 * (frames included; under TLS, before encryption); "msg" bytes are gRPC
 * message bodies. */
typedef struct pnet_stats {
    uint64_t wire_in, wire_out;
    uint64_t msg_bytes_in, msg_bytes_out;
    uint64_t msgs_in, msgs_out;
} pnet_stats;

/* ---- server ----------------------------------------------------------- */
typedef struct pnet_server pnet_server;

/* Why a client left (on_leave reason). */
typedef enum pnet_leave {
    PNET_LEAVE_DONE = 0,      /* client half-closed; the server answered status OK */
    PNET_LEAVE_CANCELLED = 1, /* client reset the stream (RST_STREAM CANCEL/NO_ERROR):
                                 the normal goodbye after a ReconnectIns */
    PNET_LEAVE_ENDED = 2,     /* the server ended it (pnet_server_end_stream) */
    PNET_LEAVE_CONN_LOST = 3, /* connection closed or failed (EOF, reset, GOAWAY) */
    PNET_LEAVE_PROTOCOL = 4,  /* peer broke HTTP/2 or gRPC rules (bad frame, truncated
                                 message, compressed message, bad headers) */
    PNET_LEAVE_LIMIT = 5,     /* a limit was hit (message over max_message, buffers) */
    PNET_LEAVE_RESET = 6      /* stream reset with an error code */
} pnet_leave;
/* Static name of a reason ("done", "cancelled", ...). */
const char *pnet_leave_name(int reason);

typedef struct pnet_server_opts {
    const char *address;     /* "host:port", "[v6]:port" or ":port"; port 0 = any free port.
                                NULL = "127.0.0.1:0" */
    const char *tls_cert;    /* PEM certificate chain file; with tls_key enables TLS */
    const char *tls_key;     /* PEM private key file */
    size_t max_message;      /* largest message accepted or sent; 0 = 512 MiB */
    int max_connections;     /* more are refused (GOAWAY + close); 0 = 1000 */
    size_t max_header_list;  /* SETTINGS_MAX_HEADER_LIST_SIZE; 0 = 16 KiB */
    size_t max_conn_buffer;  /* cap on bytes buffered for incomplete messages per
                                connection; 0 = max_message + 64 MiB */
    size_t max_rx_total;     /* server-wide cap on bytes buffered for incomplete
                                messages (all clients); a message that would pass it
                                ends its stream (RESOURCE_EXHAUSTED); 0 = half the
                                machine's physical memory (at least max_conn_buffer) */
    size_t rx_keep;          /* receive buffer a client keeps between messages; a
                                bigger one is freed once its message is released
                                (idle clients stay small); 0 = 256 KiB */
    double handshake_timeout_s; /* per connection: the TLS handshake and HTTP/2 preface,
                                then an accepted Join stream, must come within this
                                long of the accept (and a new Join stream within this
                                long of the last one's end), else the connection is
                                closed; 0 = 10 s */
    int max_conn_per_addr;   /* connections from one IPv4 address or one IPv6 /64;
                                more are refused at accept like max_connections;
                                0 = 64, < 0 = no cap */
    int max_streams_per_conn; /* Join streams (clients) on one connection; more are
                                refused (RESOURCE_EXHAUSTED); 0 = 32 */
    int max_refused_streams; /* a connection whose streams were refused this many times
                                (wrong path, method, token, ...) is closed (GOAWAY
                                ENHANCE_YOUR_CALM); 0 = 10 */
    const char *tls_client_ca; /* PEM CA file: require a client certificate signed by
                                  it (mutual TLS; needs tls_cert). NULL = none */
    const char *auth_token;  /* NUL-terminated shared token: a Join stream must carry
                                "authorization: Bearer <token>" (compared in constant
                                time) or is refused with grpc-status 16
                                UNAUTHENTICATED and a logged reason (never the token).
                                Copied by pnet_server_new. NULL = no token check */
    void *user;              /* passed to the callbacks */
    /* A Join stream opened: a new client. peer is like Flower's "ipv4:127.0.0.1:40564"
       (borrowed, valid during the call; see pnet_server_peer). */
    void (*on_join)(pnet_server *s, uint64_t client_id, const char *peer, void *user);
    /* A whole gRPC message arrived. msg is borrowed for the call; take
       pnet_msg_ref(msg) to keep it (the body then stays valid, zero copy). */
    void (*on_message)(pnet_server *s, uint64_t client_id, pnet_msg *msg, void *user);
    /* The client's stream is gone (exactly once per on_join); reason is a
       pnet_leave, detail a short text (borrowed). The id is invalid afterwards. */
    void (*on_leave)(pnet_server *s, uint64_t client_id, int reason, const char *detail,
                     void *user);
} pnet_server_opts;

/* Bind, listen and set up TLS. Every connection then lives under the limits
 * of the options (handshake and Join deadline, per-address cap, refused
 * streams, Join streams, buffers) and the inbound flood limits of net/h2.c
 * (README "Security model"). Returns PT_OK; PT_ERR_BUSY (address in use,
 * err says which), PT_ERR_INVAL (bad address or options), PT_ERR_TLS (cert/key
 * unreadable or not matching), PT_ERR_NET, PT_ERR_NOMEM. *out is NULL on error. */
int pnet_server_new(pnet_server **out, const pnet_server_opts *o, char *err);
/* Serve an already connected stream socket (a socketpair end, an inherited
 * or externally accepted connection) as if it had been accepted: TLS if the
 * server has it, then HTTP/2, under every limit but the per-address cap.
 * Takes fd over (made non-blocking; closed on failure or when the
 * connection ends). peer names it in logs and pnet_server_peer (copied;
 * NULL = "adopted"). PT_OK, PT_ERR_BUSY (max_connections reached: refused
 * like an accept), PT_ERR_NOMEM, PT_ERR_NET, PT_ERR_INVAL (fd < 0). Fuzzers
 * and tests use it to feed the server without TCP. */
int pnet_server_adopt(pnet_server *s, int fd, const char *peer);
/* The bound TCP port (useful with port 0). */
int pnet_server_port(const pnet_server *s);
/* Run I/O once: wait up to timeout_ms (-1 = forever, 0 = poll) for events,
 * accept, read, dispatch callbacks, write. Returns the number of callbacks
 * dispatched (>= 0) or PT_ERR_NET (epoll failure); peer errors never fail
 * the call: that peer is dropped with a PT_WARN log line (peer-caused warnings
 * are rate-limited: 20, then one a second; the rest go to PT_DEBUG, counted).
 * Clients whose streams close are told (on_leave) after nghttp2 returns, never
 * from inside its parser. Callbacks may call
 * pnet_server_send / end_stream / counters, never pnet_server_free. */
int pnet_server_poll(pnet_server *s, int timeout_ms);
/* Queue m for client_id (takes its own reference; the caller keeps its one).
 * Returns PT_OK, PT_ERR_NOTFOUND (no such client: it left), PT_ERR_STATE
 * (stream already being ended), PT_ERR_RANGE (over max_message), PT_ERR_NOMEM.
 * Bytes move during later polls. */
int pnet_server_send(pnet_server *s, uint64_t client_id, pnet_msg *m);
/* End the client's stream after its queued messages: trailers grpc-status
 * (PNET_GRPC_*) and grpc-message (percent-encoded; NULL = none), then reset
 * the stream if the client has not half-closed. on_leave(PNET_LEAVE_ENDED)
 * follows in a later poll. PT_OK or PT_ERR_NOTFOUND. */
int pnet_server_end_stream(pnet_server *s, uint64_t client_id, int grpc_status,
                           const char *message);
/* Bytes queued for client_id and not yet written to its socket (0 once
 * flushed); PT_ERR_NOTFOUND when the client is gone. */
int64_t pnet_server_pending(const pnet_server *s, uint64_t client_id);
/* Poll until every queued byte is written or timeout_ms passes. PT_OK or
 * PT_ERR_TIMEOUT. */
int pnet_server_flush(pnet_server *s, int timeout_ms);
/* The peer string of a client ("ipv4:127.0.0.1:40564"), borrowed until it
 * leaves; NULL if unknown. */
const char *pnet_server_peer(const pnet_server *s, uint64_t client_id);
/* Counters for one client (client_id != 0) or the whole server (0, including
 * departed clients). PT_OK or PT_ERR_NOTFOUND. */
int pnet_server_stats(const pnet_server *s, uint64_t client_id, pnet_stats *out);
/* Number of connected clients (open Join streams). */
int pnet_server_clients(const pnet_server *s);
/* The epoll descriptor, readable when pnet_server_poll has work (for
 * embedding into another loop). */
int pnet_server_fd(const pnet_server *s);
/* Close every connection (GOAWAY, best effort, no callbacks) and free. NULL-safe. */
void pnet_server_free(pnet_server *s);

/* ---- client ----------------------------------------------------------- */
typedef struct pnet_client pnet_client;

/* gRPC's connection backoff (grpc/doc/connection-backoff.md): the first
 * retry after initial_s, each next one 1.6 times longer up to max_s, every
 * delay with +-20 % jitter. A zeroed struct is a fresh backoff with the
 * defaults. Keep one across connections to keep growing the delays when
 * connections fail one after the other (a server that accepts and drops). */
typedef struct pnet_backoff {
    double initial_s;  /* 0 = 1 s */
    double max_s;      /* 0 = 120 s */
    double next_s;     /* delay before jitter of the next retry (0 = initial_s) */
    unsigned seed;     /* jitter state; 0 = seeded from the clock and pid */
} pnet_backoff;
#define PNET_BACKOFF_MULTIPLIER 1.6
#define PNET_BACKOFF_JITTER 0.2
/* The delay before the next retry (seconds), then grow next_s. */
double pnet_backoff_next(pnet_backoff *b);
/* Start again from initial_s (after a connection that worked). */
void pnet_backoff_reset(pnet_backoff *b);

typedef struct pnet_client_opts {
    const char *address;       /* "host:port" (required) */
    int tls;                   /* 1 = TLS; implied by tls_ca. Without tls_ca the system
                                  trust store is used */
    const char *tls_ca;        /* PEM CA file to verify the server */
    const char *server_name;   /* SNI + certificate name check; NULL = host of address */
    double connect_deadline_s; /* keep retrying refused/unreachable connects for this
                                  long; 0 = 60 s, < 0 = try once */
    double backoff_initial_s;  /* without `backoff`: first retry delay; 0 = 1 s */
    double backoff_max_s;      /* without `backoff`: delay cap; 0 = 120 s */
    size_t max_message;        /* largest message received or sent; 0 = 512 MiB */
    const char *user_agent;    /* NULL = "petal/<ver> (linux)" */
    const char *tls_cert;      /* PEM client certificate chain for mutual TLS (with
                                  tls_key; implies tls) */
    const char *tls_key;       /* PEM private key of tls_cert */
    const char *auth_token;    /* sent as "authorization: Bearer <token>" metadata (not
                                  HPACK-indexed); NULL = none. Checked with
                                  pnet_auth_token_check; borrowed during connect only.
                                  A refused client's recv gets PT_ERR_CLOSED with
                                  pnet_client_status() == PNET_GRPC_UNAUTHENTICATED.
                                  Under mutual TLS a refused certificate shows as a
                                  PT_ERR_TLS/NET/CLOSED failure at connect or first recv */
    /* -- every wait ends: stop flag, keepalive, transfer deadlines, queue cap -- */
    volatile int *stop;        /* borrowed: once *stop is non-zero every blocking call
                                  returns PT_ERR_INTERRUPTED within 0.2 s (signals
                                  interrupt poll at once); NULL = never */
    double keepalive_time_s;   /* gRPC keepalive: PING the server when nothing has
                                  arrived for this long; 0 = 60 s, < 0 = never */
    double keepalive_timeout_s; /* the connection is dead (PT_ERR_TIMEOUT) when that PING
                                  stays unanswered and nothing else arrives for this
                                  long; 0 = 20 s. Within gRPC servers' ping policing
                                  (>= 5 min between pings while the server sends no
                                  data, 2 strikes): after 3 pings in a quiet spell the
                                  next ones wait 5 min */
    double transfer_timeout_s; /* a message on its way in or out must make progress
                                  at least every this many seconds and be complete
                                  within it plus 1 s per MiB (PT_ERR_TIMEOUT; a server
                                  that drips, stalls, stops reading or keeps its
                                  window closed); 0 = 60 s, < 0 = no limit */
    int max_queue;             /* received messages waiting for recv; one more ends the
                                  call (PT_ERR_RANGE); 0 = 1024 */
    size_t max_queue_bytes;    /* their bytes together; 0 = max_message. Memory held
                                  for messages stays under max_queue_bytes + 2 x
                                  max_message (queue, one arriving, one returned) */
    pnet_backoff *backoff;     /* borrowed: connection backoff state to use and grow
                                  (kept across connections by the caller); NULL = a
                                  fresh one from backoff_initial_s/backoff_max_s */
} pnet_client_opts;

/* Connect (retrying with gRPC's connection backoff until the deadline: the
 * server may still be booting; each attempt gets at least 20 s), handshake
 * TLS if asked, start HTTP/2 and open the Join stream (:method POST, :scheme
 * http|https, :path /flwr.proto.FlowerService/Join, :authority, content-type
 * application/grpc, te trailers, grpc-accept-encoding identity, user-agent).
 * Does not wait for a server message (Flower's server speaks first). Returns
 * PT_OK; PT_ERR_TIMEOUT (deadline passed, err has the last failure),
 * PT_ERR_TLS (handshake, ALPN or certificate failure: not retried),
 * PT_ERR_INTERRUPTED (stop flag), PT_ERR_INVAL, PT_ERR_NET, PT_ERR_NOMEM. */
int pnet_client_connect(pnet_client **out, const pnet_client_opts *o, char *err);
/* Wait up to timeout_ms (-1 = forever, 0 = only what is already there) for
 * the next whole message. *msg (len bytes) is owned by the client and valid
 * until the next pnet_client_recv or free (the next recv releases it first,
 * so its buffer is reused). Messages that arrived before the server ended
 * the call are returned first (not after a local failure: a limit, a
 * deadline, broken framing); then the end is reported:
 * PT_ERR_CLOSED when the server ended the call (err has "grpc-status N:
 * message"; see pnet_client_status): it half-closed its side (END_STREAM,
 * with or without trailers), answered a non-200 :status or a content-type
 * other than application/grpc, reset the stream, sent GOAWAY, or closed the
 * connection; PT_ERR_PROTO when it broke HTTP/2 (nghttp2 answered with
 * GOAWAY) or gRPC framing; PT_ERR_TIMEOUT (timeout_ms passed, or a keepalive
 * or transfer deadline: err says which); PT_ERR_NET / PT_ERR_TLS (connection
 * failed); PT_ERR_RANGE (message over max_message, or the queue over its
 * limits: the stream is then cancelled); PT_ERR_INTERRUPTED (stop flag). */
int pnet_client_recv(pnet_client *c, uint8_t **msg, size_t *len, int timeout_ms, char *err);
/* Same, but *out is a new reference the caller owns (pnet_msg_unref). */
int pnet_client_recv_msg(pnet_client *c, pnet_msg **out, int timeout_ms, char *err);
/* Send one message and block until it is written to the socket (msg is not
 * copied; it may be freed on return, whatever the result). Keeps reading
 * meanwhile (PING ACKs, WINDOW_UPDATEs; server messages are queued for recv).
 * Returns PT_OK once the bytes are written (a stream end that arrives
 * meanwhile is reported by the next recv), PT_ERR_CLOSED / PT_ERR_PROTO (the
 * call was over before the bytes went out; err has why), PT_ERR_RANGE (over
 * max_message), PT_ERR_TIMEOUT (transfer deadline: the server stopped reading
 * or kept its flow-control window closed; the connection is then dropped),
 * PT_ERR_NET/PT_ERR_TLS, PT_ERR_INTERRUPTED (stop flag; connection dropped),
 * PT_ERR_STATE (already half-closed). */
int pnet_client_send(pnet_client *c, const void *msg, size_t len, char *err);
/* Zero-copy variant for refcounted messages (takes its own reference). */
int pnet_client_send_msg(pnet_client *c, pnet_msg *m, char *err);
/* Service the connection for up to timeout_ms without consuming messages
 * (ACK PINGs, move flow control, send keepalive PINGs, check deadlines,
 * queue arrivals). Call it every few seconds during long computations.
 * Returns the number of queued messages (>= 0) or an error as recv. */
int pnet_client_poll(pnet_client *c, int timeout_ms, char *err);
/* Half-close the stream (END_STREAM), then wait up to timeout_ms for the
 * server's trailers. Returns PT_OK (grpc-status 0), PT_ERR_CLOSED (another
 * status or the connection ended: see pnet_client_status), PT_ERR_TIMEOUT
 * or PT_ERR_INTERRUPTED. The client stays valid until pnet_client_free. */
int pnet_client_close(pnet_client *c, int timeout_ms);
/* After PT_ERR_CLOSED: the grpc-status (-1 if none yet) and grpc-message
 * (decoded, borrowed; "" if none). A call the server ended without a
 * grpc-status gets gRPC's mapping: non-200 :status per gRPC's HTTP mapping
 * (404 UNIMPLEMENTED, 503 UNAVAILABLE, ...), GOAWAY UNAVAILABLE, a bare
 * END_STREAM INTERNAL. */
int pnet_client_status(const pnet_client *c, const char **message);
/* Counters of this connection. */
void pnet_client_stats(const pnet_client *c, pnet_stats *out);
/* Cancel the stream if still open (RST_STREAM CANCEL), close and free. Never
 * blocks. NULL-safe. */
void pnet_client_free(pnet_client *c);

/* ---- authentication material: tokens and certificates --------------------- */
#define PNET_TOKEN_MAX 1024 /* longest accepted token, bytes */

/* Check a token: 16..PNET_TOKEN_MAX visible ASCII characters (0x21-0x7e), so
 * it can travel in an HTTP/2 header. PT_OK or PT_ERR_INVAL (err says why,
 * never quoting the token). */
int pnet_auth_token_check(const char *tok, char *err);
/* Read a token from a file: the first line, trailing whitespace (CR/LF,
 * spaces) removed, then pnet_auth_token_check. out gets at least
 * PNET_TOKEN_MAX + 1 bytes (cap). PT_OK, PT_ERR_IO (unreadable), PT_ERR_INVAL. */
int pnet_auth_token_load(const char *path, char *out, size_t cap, char *err);
/* The token a command should use: from file if not NULL, else from the
 * environment variable env (e.g. "PETAL_AUTH_TOKEN") if set and non-empty,
 * else none (out = "", PT_OK). Checked as pnet_auth_token_check; cap >=
 * PNET_TOKEN_MAX + 1. PT_OK, PT_ERR_IO, PT_ERR_INVAL (err names the source). */
int pnet_auth_token_get(const char *file, const char *env, char *out, size_t cap, char *err);
/* A new random token (OpenSSL RAND_bytes): 64 lowercase hex characters and a
 * NUL; cap >= 65. PT_OK, PT_ERR_RANGE (cap), PT_ERR_TLS (no randomness). */
int pnet_auth_token_new(char *out, size_t cap, char *err);

/* Certificate usage for pnet_tls_make_cert (OR-able). */
#define PNET_CERT_SERVER 1 /* extendedKeyUsage serverAuth */
#define PNET_CERT_CLIENT 2 /* extendedKeyUsage clientAuth */

/* Make a self-signed CA (EC P-256 key, X.509 v3, basicConstraints CA:TRUE,
 * keyUsage keyCertSign+cRLSign, SHA-256, valid from one hour ago for days
 * days; 0 = 30) and write it as PEM: cert_path (0644) and key_path (PKCS#8,
 * 0600, replaced if present). cn: subject CN (NULL = "Petal run CA").
 * PT_OK, PT_ERR_IO (cannot write, err names the file), PT_ERR_TLS,
 * PT_ERR_INVAL. */
int pnet_tls_make_ca(const char *cert_path, const char *key_path, const char *cn, int days,
                     char *err);
/* Make a leaf certificate signed by the CA in ca_cert/ca_key (PEM files):
 * EC P-256 key, CN cn, subjectAltName from sans (OpenSSL syntax,
 * comma-separated: "DNS:localhost,IP:127.0.0.1"; NULL = none; a server
 * certificate needs the names clients connect to), usage PNET_CERT_* , valid
 * days (0 = 30). Writes cert_path (0644) and key_path (0600). Returns as
 * pnet_tls_make_ca; PT_ERR_TLS also when the CA key does not match. */
int pnet_tls_make_cert(const char *ca_cert, const char *ca_key, const char *cert_path,
                       const char *key_path, const char *cn, const char *sans, int usage,
                       int days, char *err);
/* Everything one run needs, in directory dir (created 0700 if missing):
 * ca.pem ca.key, server.pem server.key (SAN sans plus DNS:localhost and
 * IP:127.0.0.1), client.pem client.key (one certificate shared by the run's
 * clients), token (a new pnet_auth_token_new token, 0600, with a newline).
 * Server: tls_cert=server.pem tls_key=server.key tls_client_ca=ca.pem
 * auth_token=<token>. Client: tls_ca=ca.pem tls_cert=client.pem
 * tls_key=client.key auth_token=<token>. PT_OK or as above. */
int pnet_tls_make_run_dir(const char *dir, const char *sans, int days, char *err);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_NET_H */
