/*
 * h2_int.h - internals of the transport: refcounted messages, gRPC message
 * reassembly, and one HTTP/2 connection (nghttp2 session over a
 * non-blocking socket, optionally TLS) with a zero-copy output queue.
 * Shared by grpc_server.c and grpc_client.c. Not a public header.
 */
#ifndef PETAL_NET_H2_INT_H
#define PETAL_NET_H2_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "pnet.h"

#define GRPC_PREFIX 5
#define H2_PATH_JOIN "/flwr.proto.FlowerService/Join"
#define H2_WINDOW ((int32_t)((1 << 26) - 1))     /* 64 MiB - 1 */
#define H2_MAX_FRAME ((int32_t)(1 << 20))        /* 1 MiB: largest frame we accept */
#define H2_OUT_HIGH ((size_t)4 << 20)             /* stop packing frames above this */
#define H2_OUT_SEGS 900                           /* and above this many segments */
#define H2_RBUF ((size_t)256 << 10)
#define H2_SOCKBUF (4 << 20)
#define H2_DIRECT_MIN ((size_t)64 << 10) /* direct receive for chunks at least this big */

/* ---- pnet_msg -------------------------------------------------------- */
struct pnet_msg {
    int refs;        /* atomic */
    int sealed;      /* prefix written; body immutable */
    size_t len;      /* body length */
    size_t cap;      /* body capacity */
    uint8_t *buf;    /* GRPC_PREFIX + cap bytes; body at buf + GRPC_PREFIX */
};
/* Allocate with capacity cap (len = 0). */
int msg_alloc(pnet_msg **out, size_t cap);
/* Grow capacity to at least cap (keeps content). */
int msg_reserve(pnet_msg *m, size_t cap);
/* Write the 5-byte prefix and mark immutable. */
void msg_seal(pnet_msg *m);
static inline int msg_refs(const pnet_msg *m)
{
    return __atomic_load_n(&m->refs, __ATOMIC_ACQUIRE);
}

/* ---- gRPC message reassembly ----------------------------------------- */
typedef struct grpc_rx {
    uint8_t hdr[GRPC_PREFIX];
    size_t hdr_got;
    pnet_msg *cur;     /* message being filled (NULL between messages) */
    pnet_msg *spare;   /* reusable buffer (we hold the only reference) */
    pnet_msg *lent;    /* last message the owner kept a reference to: reused
                          once that reference is dropped (saves fresh pages) */
    size_t need, got;  /* body bytes expected / received for cur */
    size_t max;        /* max_message */
    size_t *buffered;  /* optional connection-wide counter of partial bytes */
    size_t buf_cap;    /* limit for *buffered (0 = none) */
    size_t *buffered2; /* optional second (server-wide) counter */
    size_t buf_cap2;   /* limit for *buffered2 (0 = none) */
    size_t keep_max;   /* keep no buffer bigger than this between messages (0 = keep all) */
} grpc_rx;
/* Called for each complete message; the callee may take a reference. */
typedef int (*grpc_rx_cb)(pnet_msg *m, void *arg);
/* Feed DATA bytes. Returns PT_OK, or PT_ERR_RANGE (message over max or the
 * connection cap), PT_ERR_PROTO (compressed flag), PT_ERR_NOMEM, or the
 * callback's nonzero return; err says what. */
int grpc_rx_feed(grpc_rx *rx, const uint8_t *p, size_t n, grpc_rx_cb cb, void *arg, char *err);
/* Where the next body bytes of the current message go, growing the buffer
 * as needed: NULL when no message body is pending. *max = bytes wanted. */
uint8_t *grpc_rx_direct(grpc_rx *rx, size_t *max);
/* 1 if a message is partially received. */
int grpc_rx_partial(const grpc_rx *rx);
void grpc_rx_free(grpc_rx *rx);

/* Percent-encoding of grpc-message (gRPC spec). out gets a NUL-terminated
 * string; returns its length (truncated to cap-1). */
size_t grpc_pct_encode(const char *in, char *out, size_t cap);
size_t grpc_pct_decode(const char *in, size_t n, char *out, size_t cap);

/* ---- outgoing stream data ---------------------------------------------- */
/* A piece of a stream's outgoing byte sequence: either a sealed message
 * (ref, whole buffer incl. prefix) or borrowed bytes, or inline bytes. */
typedef struct h2_piece {
    struct h2_piece *next;
    pnet_msg *ref;          /* reference held, or NULL */
    const uint8_t *p;       /* NULL: use inl */
    size_t len;
    uint8_t inl[GRPC_PREFIX];
    int counts_msg;         /* 1 on the last piece of a message (for counters) */
    size_t msg_len;
} h2_piece;

typedef struct h2_tx {
    h2_piece *head, *tail;
    size_t off;             /* consumed bytes of head */
    size_t queued;          /* bytes not yet framed */
    int ending;             /* no more pieces: end after the queue */
    int trailers;           /* server: end with trailers (else END_STREAM on DATA) */
    int status;             /* trailers' grpc-status */
    char *message;          /* trailers' grpc-message (raw, owned) */
    int eof_done;           /* EOF returned to nghttp2 */
    uint64_t *msgs_out, *msg_bytes_out; /* counters to bump (optional) */
    uint64_t *msgs_out2, *msg_bytes_out2;
} h2_tx;

int h2_tx_push_msg(h2_tx *tx, pnet_msg *m);
int h2_tx_push_bytes(h2_tx *tx, const void *p, size_t len);
void h2_tx_clear(h2_tx *tx);

/* ---- output queue ------------------------------------------------------ */
typedef struct h2_seg {
    const uint8_t *p;   /* NULL: inline */
    size_t len;
    pnet_msg *ref;      /* reference held while queued, or NULL */
    void *own;          /* heap block to free once written, or NULL */
    uint8_t inl[16];
} h2_seg;

typedef struct h2_outq {
    h2_seg *v;
    size_t head, n, cap;  /* live segments are v[head .. n) */
    size_t off;           /* written bytes of v[head] */
    size_t bytes;         /* unwritten bytes */
} h2_outq;

/* ---- inbound flood limits ------------------------------------------------ */
/* What a peer may send without doing useful work, counted on the frame
 * headers before nghttp2 parses the frames (h2_conn_read stops feeding
 * nghttp2 at the first frame over a limit, answers GOAWAY
 * ENHANCE_YOUR_CALM and returns PT_ERR_RANGE). Rates are token buckets:
 * a burst, then so many per second (h2.c: h2_flood_limits). */
enum {
    H2_FL_SETTINGS,  /* SETTINGS (not ACK): each costs an ACK */
    H2_FL_PING,      /* PING (not ACK): each costs an ACK */
    H2_FL_RST,       /* RST_STREAM */
    H2_FL_HEADERS,   /* HEADERS (new streams and trailers) */
    H2_FL_PRIORITY,  /* PRIORITY */
    H2_FL_EMPTY,     /* DATA without payload nor END_STREAM, unknown frame types */
    H2_FL_KINDS
};
typedef struct h2_flood {
    int on;                        /* enforce (the owner sets it) */
    size_t max_block;              /* bytes of one header block (HEADERS + CONTINUATIONs) */
    double tokens[H2_FL_KINDS], last[H2_FL_KINDS];
    size_t block_bytes;            /* header block being received */
    int block_frames;              /* its CONTINUATION frames */
    int in_block;                  /* a HEADERS without END_HEADERS is open */
    char why[96];                  /* the limit passed ("" = none) */
} h2_flood;
/* Bursts and rates per kind, and the CONTINUATION frames one header block
 * may have (documented in README "Security model"). */
typedef struct h2_flood_limit {
    const char *name;
    double burst, per_s;
} h2_flood_limit;
extern const h2_flood_limit h2_flood_limits[H2_FL_KINDS];
#define H2_MAX_CONTINUATIONS 8

/* ---- one connection ---------------------------------------------------- */
typedef struct h2_conn {
    int fd;
    SSL *ssl;               /* NULL = cleartext */
    int tls_want_write;     /* TLS read needs the socket writable */
    nghttp2_session *ng;
    h2_outq out;
    uint8_t *tbuf;          /* TLS staging: copied segments awaiting SSL_write */
    size_t toff, tlen;      /* tbuf[toff .. tlen) is unwritten */
    uint8_t *rbuf;          /* H2_RBUF bytes: own, or shared (server: one for all) */
    int own_rbuf;
    uint64_t wire_in, wire_out;
    int eof;                /* peer closed its side */
    /* Direct receive: while inside a big unpadded DATA frame, the owner may
       give the destination (the message buffer) and the socket is read
       straight into it; nghttp2 then sees those bytes in place and the
       reassembly copy is skipped. A direct read must hold nothing but that
       frame's payload, so the inbound frame boundaries are tracked here over
       the same bytes nghttp2 parses (trk_*), and a frame gets direct reads
       only while nghttp2 has delivered every payload byte of it read so far
       (tail_payload: the previous read ended in a chunk of it). A frame whose
       payload nghttp2 drops (content-length exceeded, stream reset, ...)
       never gets a direct read again. */
    size_t trk_preface;     /* connection preface bytes still to pass (server) */
    int trk_init;
    uint8_t trk_hd[9];      /* header of the next frame, trk_hd_got bytes so far */
    size_t trk_hd_got;
    size_t trk_left;        /* payload bytes of the current frame not read yet */
    int32_t trk_sid;        /* current frame's stream, type and flags */
    uint8_t trk_type, trk_flags;
    const uint8_t *in_end;  /* end of the input inside nghttp2_session_mem_recv */
    int tail_payload;       /* the last read ended in delivered payload of trk_sid */
    uint8_t *(*direct)(struct h2_conn *c, int32_t sid, size_t *max);
    h2_flood flood;         /* inbound frame limits (flood.on = 0: none) */
    int stop_read;          /* the owner is closing it: h2_conn_read reads no more */
    int dead;               /* unusable: close it */
    char peer[72];
    char why[160];          /* reason when dead */
} h2_conn;

/* Owners call this first thing in on_data_chunk_recv with the chunk (nghttp2
 * passes pointers into the input): it tells direct receive that the payload
 * read so far was delivered. */
static inline void h2_data_seen(h2_conn *c, int32_t sid, const uint8_t *data, size_t n)
{
    if (c->in_end && data + n == c->in_end && sid == c->trk_sid) c->tail_payload = 1;
}

/* nghttp2 callbacks common to both sides: the connection's user_data must
 * start with an h2_conn (struct embedding it first). */
void h2_callbacks_common(nghttp2_session_callbacks *cb);
/* Data provider reading from an h2_tx (source.ptr). */
nghttp2_data_provider h2_tx_provider(h2_tx *tx);

/* shared_rbuf: an H2_RBUF-byte read buffer used only during h2_conn_read
 * (the server shares one across connections); NULL = allocate one. */
int h2_conn_init(h2_conn *c, int fd, SSL *ssl, const char *peer, uint8_t *shared_rbuf);
void h2_conn_free(h2_conn *c);
/* Submit our SETTINGS (window, frame size, header list, ...) and grow the
 * connection window. */
int h2_conn_settings(h2_conn *c, int server, size_t max_header_list);
/* Turn the inbound flood limits on; max_block = largest header block in
 * bytes (HEADERS + CONTINUATION payloads). */
void h2_conn_flood_limits(h2_conn *c, size_t max_block);
/* Read what the socket has (up to max_reads reads) into nghttp2. Returns
 * PT_OK or an error with c->why set (c->dead = 1 on fatal errors; PT_ERR_CLOSED
 * on EOF; PT_ERR_RANGE when the peer passed a flood limit: GOAWAY
 * ENHANCE_YOUR_CALM is queued, nothing more is read; close after flushing). */
int h2_conn_read(h2_conn *c, int max_reads);
/* Pack frames and write until the socket would block or nothing is left.
 * Returns PT_OK or an error (c->dead, c->why). */
int h2_conn_write(h2_conn *c);
/* Mark dead with a reason and drop queued output (releases references to
 * borrowed buffers at once). */
void h2_conn_kill(h2_conn *c, const char *why);
/* 1 if bytes are waiting to go out (queue, TLS staging or nghttp2). */
int h2_conn_wants_write(const h2_conn *c);
/* Queued but unwritten bytes. */
size_t h2_conn_pending(const h2_conn *c);

/* Build the trailers (grpc-status, grpc-message) into nv/buffers. */
typedef struct h2_trailers {
    nghttp2_nv nv[2];
    char status[12];
    char msg[512];
} h2_trailers;
size_t h2_make_trailers(h2_trailers *t, int status, const char *message);

#define H2_NV(n, v)                                                                        \
    {                                                                                      \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                          \
            NGHTTP2_NV_FLAG_NO_COPY_NAME                                                   \
    }

#endif /* PETAL_NET_H2_INT_H */
