/*
 * agent_int.h - Petal's federated agents (internal to core/ and the petal
 * command): the server round loop (Flower's Server.fit over the grpc-bidi
 * protocol) and the client loop (Flower's start_client), gluing net/ (wire),
 * nn/ (model), data/ (datasets, partitions) and strategies/ (aggregation).
 *
 * Both run in the calling thread until the federation ends and return a
 * pt_err code with a reason in err. They log Flower-format lines through the
 * results writer (core/results_int.h) when out_dir is set, else to stderr.
 */
#ifndef PETAL_AGENT_INT_H
#define PETAL_AGENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pst_options pst_options;

/* Default cap on the num_examples a client may claim (--max-examples).
 * FedAvg weighs each update by its claim, so the cap bounds how much of a
 * round one client can take: at most cap / (cap + the others' examples).
 * 10^6 is above one client's share in every common FL benchmark (LEAF,
 * FLAIR, FLamby: 10^2-10^4 per client) and above whole datasets a single
 * client plausibly trains on (MNIST/Fashion-MNIST 60,000, CIFAR 50,000),
 * below ImageNet-1k (1.28M): a silo that large raises it. It is also exact
 * as a float32 weight (float-delta accumulator, below 2^24). */
#define PT_MAX_EXAMPLES_DEFAULT 1000000

/* --round-timeout auto (see pt_server_opts.round_timeout). */
#define PT_AUTO_TIMEOUT_FACTOR 10
#define PT_AUTO_TIMEOUT_MIN 120.0    /* s: the least a client is given */
#define PT_AUTO_TIMEOUT_FIRST 3600.0 /* s: before any reply of the kind was seen */

/* ---- server ---------------------------------------------------------------- */
typedef struct pt_server_opts {
    const char *address;        /* listen "HOST:PORT"; default "0.0.0.0:8080" */
    int rounds;                 /* >= 1 */
    const char *strategy;       /* strategy name (pst_create) */
    const pst_options *strategy_opts; /* may be NULL (defaults) */
    const char *model;          /* preset or JSON file (pnn_model_new) */
    const char *dataset;        /* held-out split for centralised evaluation; NULL = none */
    double val_split;           /* image folders: held-out fraction (default 0.25) */
    size_t eval_limit;          /* at most this many evaluation examples (0 = all) */
    uint64_t max_image_pixels;  /* image folders: decoder caps (pd_open_opts max_pixels, */
    int max_jpeg_scans;         /* max_scans); 0 = the defaults */
    int epochs, batch_size;     /* fit config sent to the clients */
    double lr;
    double round_timeout;       /* seconds a sampled client gets to reply to an instruction
                                   (late: DEADLINE_EXCEEDED, a failure): > 0 fixed;
                                   0 = auto (default): PT_AUTO_TIMEOUT_FACTOR x the slowest
                                   reply so far (fit or evaluate; earlier rounds and this
                                   one), at least round_timeout_min, PT_AUTO_TIMEOUT_FIRST
                                   before any client replied; < 0 = none (Flower's None:
                                   one silent client stalls the federation) */
    double round_timeout_min;   /* auto's floor in seconds; 0 = PT_AUTO_TIMEOUT_MIN */
    double wait_clients;        /* seconds to wait for min_available clients */
    const char *tls_cert, *tls_key;
    uint64_t seed;              /* model init and client sampling */
    int backend;                /* pnn_backend */
    int threads;                /* nn threads */
    const char *out_dir;        /* results directory; NULL = log to stderr only */
    int init_from_client;       /* GetParameters from one client instead of the model */
    size_t max_message;         /* 0 = 512 MiB */
    int max_connections;        /* transport: more connections are refused; 0 = 1000 */
    size_t max_header_list;     /* transport: HTTP/2 header list bytes; 0 = 16 KiB */
    size_t max_conn_buffer;     /* transport: bytes buffered per connection for incomplete
                                   messages; 0 = max_message + 64 MiB */
    size_t max_rx_total;        /* transport: bytes buffered for incomplete messages, all
                                   clients together; 0 = no cap */
    double handshake_timeout;   /* transport: TLS handshake + HTTP/2 preface, then a Join
                                   stream, deadline per connection (s); 0 = 10 */
    int max_conn_per_addr;      /* transport: connections per IPv4 address / IPv6 /64;
                                   0 = 64, < 0 = no cap */
    int max_streams_per_conn;   /* transport: Join streams per connection; 0 = 32 */
    int max_refused_streams;    /* transport: refused streams before a connection is
                                   closed; 0 = 10 */
    const char *tls_client_ca;  /* mutual TLS: require client certificates from this CA */
    const char *auth_token;     /* require "authorization: Bearer <token>" (NULL = none) */
    int64_t max_examples;       /* FitRes/EvaluateRes num_examples above this are rejected;
                                   0 = PT_MAX_EXAMPLES_DEFAULT */
    size_t max_key_bytes;       /* longest metric/property key a client may send (longer:
                                   the message is refused); 0 = 256; at most 4096
                                   (PT_CONFIG_KEY_MAX). The distinct keys per message, per
                                   round's aggregate and per metric history are capped by
                                   the strategy option max_metric_keys (default 1024) */
    const char *checkpoint_dir; /* checkpoint after every round here; NULL = the resume
                                   directory, else OUT/checkpoint with out_dir, else none */
    int no_checkpoint;          /* 1: write no checkpoints */
    int ordered_fold;           /* 1: fold each round's updates sorted by (num_examples,
                                   content) at the round's end instead of as they arrive:
                                   the aggregate no longer depends on arrival order
                                   (bit-exact reruns/resumes); holds the round's updates */
    const char *resume;         /* continue from the checkpoint in this directory (or file) */
    const char *save_weights;   /* write the final global model here (.npz, numpy.load-able);
                                   also written when the run stops early */
    int expected_clients;       /* for run_start's n_clients (0 = min_available) */
    const char *port_file;      /* write the bound port here once listening (tests) */
    volatile int *stop;         /* set non-zero (e.g. by SIGINT) to stop; may be NULL */
} pt_server_opts;

/* Defaults as documented above (address, rounds 3, FedAvg, fmnist-cnn, ...). */
void pt_server_opts_init(pt_server_opts *o);

/* Run a federation: listen, rounds, ReconnectIns to everyone, close.
 * After every completed round the state is checkpointed (checkpoint_int.h);
 * with o->resume the run continues after the checkpoint's round.
 * Returns PT_OK; PT_ERR_TIMEOUT (not enough clients within wait_clients;
 * the checkpoint and --save-weights hold the results so far),
 * PT_ERR_INTERRUPTED (*stop), or the setup errors of the parts (bad model,
 * dataset, strategy options, address in use) with err naming the problem. */
int pt_server_run(const pt_server_opts *o, char *err);

/* ---- client ---------------------------------------------------------------- */
typedef struct pt_client_opts {
    const char *server;         /* "HOST:PORT" */
    const char *model;
    const char *dataset;
    int part, num_parts;        /* partition i/N (0-based part) */
    const char *partitioner;    /* "iid", "dirichlet:A", "shards:K" */
    double val_split;           /* image folders: held-out fraction */
    const char *tls_ca;         /* enables TLS */
    int tls;                    /* TLS with the system trust store */
    const char *server_name;
    const char *tls_cert, *tls_key; /* mutual TLS: client certificate + key */
    const char *auth_token;     /* sent as "authorization: Bearer <token>" (NULL = none) */
    int backend, threads;
    const char *id;             /* client name for logs/results; default = part */
    const char *out_dir;
    double connect_timeout;     /* seconds of retrying the first connect (default 60) */
    double rejoin;              /* > 0: after losing the server (connection lost, stream
                                   ended without ReconnectIns) join again, retrying for up
                                   to this many seconds; 0 (default): return the error */
    int keep_optimizer;         /* 1: keep the optimizer state between fits (Keras-like);
                                   0 (default): every fit starts from fresh optimizer and
                                   dropout state seeded by (seed, server_round, partition),
                                   so training depends on nothing but those and the weights */
    uint64_t seed;
    size_t limit;               /* at most this many training examples (before partitioning) */
    size_t eval_limit;          /* at most this many validation examples (before partitioning) */
    /* The owner's limits on what the server may ask (0 = the default). An
     * instruction beyond one is answered with a failure status naming it. */
    int max_epochs;             /* FitIns 'epochs' / 'local_epochs'; 0 = 100 */
    int max_batch;              /* FitIns / EvaluateIns 'batch_size'; 0 = 512 */
    double max_reconnect_wait;  /* ReconnectIns 'seconds' above this: the client leaves with
                                  an error instead of waiting; 0 = 600 */
    size_t max_message;         /* largest gRPC message; 0 = 2 x the model's Parameters
                                   + 4 MiB */
    int max_queue;              /* server messages waiting for the client's replies; one
                                   more ends the call; 0 = 4 */
    double keepalive;           /* transport clocks (pnet_client_opts): 0 = default (60 s), */
    double keepalive_timeout;   /* < 0 = off (20 s) */
    double transfer_timeout;    /* (60 s) */
    int require_tls;            /* 1: refuse to connect without TLS */
    uint64_t max_image_pixels;  /* image folders: decoder caps, as the server's; 0 = defaults */
    int max_jpeg_scans;
    volatile int *stop;
} pt_client_opts;

void pt_client_opts_init(pt_client_opts *o);

/* Join the federation and serve instructions until ReconnectIns without a
 * delay (returns PT_OK). An instruction this client will not or cannot carry
 * out (config outside the limits above or malformed, parameters that do not
 * fit the model or are not finite, training that diverged) is answered with
 * a failure status and the client stays. It returns an error when the
 * connection or the call ends otherwise (with rejoin > 0 it first joins again
 * within the rejoin window): PT_ERR_TIMEOUT (server unreachable within
 * connect_timeout, keepalive or transfer deadline), PT_ERR_CLOSED (server
 * ended the stream without ReconnectIns), PT_ERR_PROTO (broken HTTP/2, gRPC
 * or protobuf), PT_ERR_RANGE (message or queue over its limit, ReconnectIns
 * wait over max_reconnect_wait), PT_ERR_INTERRUPTED (*stop), setup errors. */
int pt_client_run(const pt_client_opts *o, char *err);

/* ---- helpers shared by both agents (agent_util.c) -------------------------- */
typedef struct pnn_model pnn_model;
/* Allocate p with the model's weight shapes (zeroed). */
int pt_agent_params_for_model(pt_params *p, const pnn_model *m, char *err);
/* View the model's weights as a pt_params without copying: p->t[i].data
 * points into the model (p->buf NULL, p->t owned: free with
 * pt_agent_params_view_free). */
int pt_agent_params_view(pt_params *p, pnn_model *m, char *err);
void pt_agent_params_view_free(pt_params *p);
/* Parse a whole-string integer / finite number in [lo, hi]; on failure print
 * "petal: OPT: 'S' is not ..." to stderr and return PT_ERR_INVAL. */
int pt_agent_parse_int(const char *opt, const char *s, long long lo, long long hi,
                       long long *out);
int pt_agent_parse_double(const char *opt, const char *s, double lo, double hi, double *out);
/* --backend: parse openblas|reference into *out (a pnn_backend); on failure
 * print "CMD: --backend: unknown backend ..." and return PT_ERR_INVAL. */
int pt_agent_parse_backend(const char *cmd, const char *s, int *out);
/* --log-level: set the core log level; on failure print
 * "CMD: --log-level: unknown level ..." and return PT_ERR_INVAL. */
int pt_agent_set_log_level(const char *cmd, const char *s);
/* Path options checked before any work (pt_check_path): entries with a NULL
 * path are skipped; the first bad one prints "CMD: OPT PATH: why" to stderr
 * and returns its pt_err. */
typedef struct pt_path_opt {
    const char *opt, *path;
    int kind; /* PT_PATH_* */
} pt_path_opt;
int pt_agent_check_paths(const char *cmd, const pt_path_opt *p, size_t n);
/* SIGINT/SIGTERM set *stop = 1 (no SA_RESTART); SIGPIPE ignored. */
void pt_agent_signals(volatile int *stop);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_AGENT_INT_H */
