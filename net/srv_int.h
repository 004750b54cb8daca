/*
 * srv_int.h - internals of the gRPC server, shared by grpc_server.c (streams:
 * requests, nghttp2 callbacks, clients) and srv_conn.c (connections: accept,
 * limits, deadlines, the poll loop), and what it indexes by (srv_map.c): a
 * hash map from 64-bit keys to values (client ids to streams, peer addresses
 * to connection counts), O(1) per operation, and the per-address key of a
 * peer. Not a public header.
 */
#ifndef PETAL_NET_SRV_INT_H
#define PETAL_NET_SRV_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "h2_int.h"

/* Open addressing with linear probing and backward-shift deletion; the
 * table doubles at half full. A zeroed u64map is empty. */
typedef struct u64map {
    uint64_t *keys;
    uintptr_t *vals;
    uint8_t *used;
    size_t cap, n;    /* cap: power of two (0 = nothing allocated) */
    uint64_t seed;    /* hash seed, chosen at the first insert */
} u64map;

/* Set key to val (insert or replace). PT_OK or PT_ERR_NOMEM. */
int u64map_put(u64map *m, uint64_t key, uintptr_t val);
/* The value of key, or 0 when absent (*found, if not NULL, says which). */
uintptr_t u64map_get(const u64map *m, uint64_t key, int *found);
/* Remove key (no-op when absent). */
void u64map_del(u64map *m, uint64_t key);
void u64map_free(u64map *m);

/* The address a per-address connection cap counts a peer under: IPv4
 * addresses whole (IPv4-mapped IPv6 too), IPv6 by their /64 prefix (one
 * subscriber's allocation). *v6 says which map; -1 for other families. */
int srv_addr_key(const struct sockaddr *sa, uint64_t *key, int *v6);

/* ---- the server ------------------------------------------------------------ */

#define DEFAULT_MAX_CONN 1000
#define DEFAULT_PER_ADDR 64     /* connections from one address (IPv6: one /64) */
#define DEFAULT_JOINS 32        /* Join streams on one connection */
#define DEFAULT_REFUSED 10      /* refused streams before the connection is closed */
#define DEFAULT_MAX_HDR ((size_t)16 << 10)
#define READS_PER_EVENT 64
#define HELLO_TIMEOUT_S 10.0 /* default: TLS handshake, HTTP/2 preface and a Join stream */
#define CLOSE_GRACE_S 2.0    /* a closing connection gets this long to take our GOAWAY */
#define DEFAULT_RX_KEEP ((size_t)256 << 10)
/* Warnings a peer can cause: a burst, then one a second (the rest go to the
 * debug log and are counted); refusals at accept: one line per 10 s. */
#define PEER_WARN_BURST 20.0
#define PEER_WARN_PER_S 1.0
#define REFUSE_LOG_EVERY_S 10.0

typedef struct srv_conn srv_conn;

typedef struct srv_stream {
    struct srv_stream *next;
    srv_conn *conn;
    int32_t sid;
    uint64_t id;          /* client id, 0 until joined */
    int joined;
    int bad;              /* request rejected (response already submitted) */
    char method[8];
    char path[96];
    char ctype[64];
    char encoding[32];
    int auth_seen;        /* authorization headers seen */
    int auth_ok;          /* the last one carried the right token */
    size_t hdr_bytes;
    int response_sent;
    int discard;          /* ignore further DATA */
    int leave_reason;     /* -1 = not decided yet */
    char leave_detail[160];
    int peer_rst;
    uint32_t rst_code;
    int closed;           /* nghttp2 closed it: finished (on_leave, freed) by reap_streams */
    int rx_drop;          /* discarded: its receive buffers are freed by reap_streams */
    grpc_rx rx;
    h2_tx tx;
    pnet_stats st;
} srv_stream;

struct srv_conn {
    h2_conn h; /* first: nghttp2 user_data */
    pnet_server *srv;
    srv_conn *next, *prev;
    srv_stream *streams;
    int handshaking;
    int closing;          /* close once the output is flushed */
    int warn;             /* closed for a peer error: log a warning */
    uint32_t evmask;
    size_t rx_buffered;
    double born;          /* accept time */
    int hello;            /* a valid HTTP/2 frame arrived */
    int njoined;          /* open Join streams */
    int ever_joined;
    double idle_since;    /* without a Join stream since (accept time at first) */
    int refused;          /* streams refused on this connection */
    unsigned refused_kinds; /* RF_* already logged */
    char refused_first[128]; /* why the first one was */
    double closing_since;
    int shut;             /* closing: our side is shut down (all written) */
    int addr_v6;          /* per-address count: which map (-1: none) and key */
    uint64_t addr_key;
};

/* Log rate limiter: a token bucket; what it holds back goes to the debug log
 * and is counted, and the count is told with the next line it lets through. */
typedef struct log_rate {
    double tokens, last;
    unsigned long held;
} log_rate;

struct pnet_server {
    pnet_server_opts o;
    int lfd, epfd, port;
    SSL_CTX *tls;
    srv_conn *conns;
    int nconns;
    uint64_t next_id;
    int nclients;
    int dispatched;
    pnet_stats total;     /* messages of all clients; wire bytes of closed conns */
    nghttp2_session_callbacks *cbs;
    nghttp2_option *ngopt;
    uint8_t *rbuf;        /* read buffer shared by all connections */
    size_t rx_total;      /* bytes buffered for incomplete messages, all clients */
    unsigned char tok_md[32]; /* SHA-256 of the expected token */
    int tok_set;
    u64map ids;           /* client id -> its srv_stream */
    u64map per_addr[2];   /* IPv4 address / IPv6 /64 -> open connections */
    log_rate warn_rate;   /* peer-caused warnings */
    log_rate refuse_rate; /* connections refused at accept */
};

/* 1 if a line may be logged now (burst, then per_s a second); else counts it. */
int srv_log_ok(log_rate *r, double burst, double per_s);
/* " (and N more in the debug log)" for the lines held back since the last
 * one let through (then forgets them), or "". Returns buf. */
const char *srv_held_note(log_rate *r, char *buf, size_t cap);

/* A warning a peer can cause, limited server-wide (PEER_WARN_*). */
#define PEER_WARN(s, fmt, ...)                                                             \
    do {                                                                                   \
        char held_[80];                                                                    \
        if (srv_log_ok(&(s)->warn_rate, PEER_WARN_BURST, PEER_WARN_PER_S))                 \
            PT_WARN(fmt "%s", __VA_ARGS__,                                                 \
                    srv_held_note(&(s)->warn_rate, held_, sizeof held_));                  \
        else                                                                               \
            PT_DEBUG(fmt, __VA_ARGS__);                                                    \
    } while (0)

/* SHA-256 of p[0..n) into md (32 bytes): 0 or -1. */
int srv_sha256(const void *p, size_t n, unsigned char *md);

/* grpc_server.c: the nghttp2 callbacks of a server session */
void srv_stream_callbacks(nghttp2_session_callbacks *cb);
/* the joined stream of client id (NULL: gone) */
srv_stream *srv_find_client(const pnet_server *s, uint64_t id);
/* after nghttp2 returned: finish closed streams, free dropped buffers; on a
 * closing connection its clients leave */
void srv_reap_streams(srv_conn *c);
/* free a stream (no callback; it must be unlinked or its connection freed) */
void srv_stream_free(srv_stream *st);
/* the stream is gone: on_leave (if joined), unlink, free */
void srv_stream_finish(srv_stream *st, int reason, const char *detail);
/* h2_conn.direct of server connections */
uint8_t *srv_direct_dst(h2_conn *h, int32_t sid, size_t *max);

#endif /* PETAL_NET_SRV_INT_H */
