/* cmd_client.c - 'petal client': join a federation (a petal server or a
 * Flower 1.5+ start_server) and train a partition of a dataset. */
#include "agent_int.h"
#include "cmd.h"
#include "petal.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "pdata.h"
#include "pnet.h"
#include "pnn.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: petal client [options]\n"
            "\n"
            "Join a federated-learning server speaking Flower's gRPC protocol (petal\n"
            "server, or Flower's start_server) and train on one partition of a dataset.\n"
            "\n"
            "  --server HOST:PORT      server address (default 127.0.0.1:8080)\n"
            "  --connect-timeout S     keep retrying the connection this long (default 60)\n"
            "  --rejoin S              when the server is lost (killed, restarted, or it ended\n"
            "                          this client's stream), join again, retrying for up to\n"
            "                          S seconds (default 0: exit with an error)\n"
            "  --tls-ca FILE           use TLS, verifying the server with this CA\n"
            "  --tls                   use TLS with the system's trust store\n"
            "  --server-name NAME      TLS name to verify (default: the host of --server)\n"
            "  --tls-cert FILE --tls-key FILE   mutual TLS: present this client certificate\n"
            "  --auth-token-file FILE  send the first line of FILE as 'authorization: Bearer'\n"
            "                          token; also from the environment: PETAL_AUTH_TOKEN\n"
            "  --require-tls           refuse to connect without TLS (a token over cleartext\n"
            "                          h2c is readable on the path; without this, a warning)\n"
            "  --model PRESET|FILE.json  fmnist-cnn (default), seed-cnn, or a JSON model\n"
            "  --dataset SPEC          fashion-mnist (default), folder:DIR, cifar10:DIR, ...\n"
            "  --partition i/N         this client's share: part i (0-based) of N (default 0/1)\n"
            "  --partitioner P         iid (default), dirichlet:ALPHA, shards:K\n"
            "  --val-split F           image folders: held-out fraction (default 0.25)\n"
            "  --limit N               use at most N training examples (before partitioning)\n"
            "  --eval-limit N          use at most N validation examples (before partitioning)\n"
            "  --max-image-pixels N    image folders: skip (and name) images whose header\n"
            "                          declares more pixels (default 67108864 = 8192x8192)\n"
            "  --max-jpeg-scans N      image folders: skip progressive JPEGs with more scans\n"
            "                          (default 100)\n"
            "  --seed N                seed of the split, partition and shuffles (default 1337;\n"
            "                          every client of a federation must use the same)\n"
            "  --backend openblas|reference   --threads N\n"
            "  --keep-optimizer-state  keep the optimizer (Adam moments) and dropout state\n"
            "                          between rounds, like a compiled Keras model; default:\n"
            "                          every fit starts fresh from (seed, round, partition),\n"
            "                          so a restarted client or resumed server trains the same\n"
            "  --id NAME               client name in logs and results (default: i)\n"
            "  --out DIR               write client_<id>_log.log and events.jsonl into DIR\n"
            "  --log-level LEVEL       debug, info (default), warn, error\n"
            "\n"
            "Limits on what the server may ask (beyond one: a failure status, or leaving):\n"
            "  --max-epochs N          local epochs per fit (default 100)\n"
            "  --max-batch N           batch size of fit and evaluate (default 512)\n"
            "  --max-reconnect-wait S  longest ReconnectIns wait; asked for more, the client\n"
            "                          exits with an error (default 600)\n"
            "  --max-message BYTES     largest message (default: 2 x the model's parameters\n"
            "                          + 4 MiB)\n"
            "  --max-queue N           server messages ahead of our replies (default 4)\n"
            "  --keepalive S           PING a server silent for S seconds (default 60; 0 = never)\n"
            "  --keepalive-timeout S   drop the connection when the PING stays unanswered\n"
            "                          this long (default 20)\n"
            "  --transfer-timeout S    a message in or out must progress every S seconds and\n"
            "                          finish within S + 1 s per MiB (default 60; 0 = no limit)\n"
            "  --help                  this text\n");
}

enum {
    O_SERVER = 256, O_CONNECT_TIMEOUT, O_TLS_CA, O_TLS, O_SERVER_NAME, O_MODEL, O_DATASET,
    O_PARTITION, O_PARTITIONER, O_VAL_SPLIT, O_LIMIT, O_EVAL_LIMIT, O_SEED, O_BACKEND,
    O_THREADS, O_ID, O_OUT, O_LOG, O_HELP, O_KEEP_OPT, O_REJOIN, O_TLS_CERT, O_TLS_KEY,
    O_TOKEN_FILE, O_MAX_EPOCHS, O_MAX_BATCH, O_MAX_RECONNECT, O_MAX_MESSAGE, O_MAX_QUEUE,
    O_KEEPALIVE, O_KEEPALIVE_TIMEOUT, O_TRANSFER_TIMEOUT, O_REQUIRE_TLS, O_MAX_PIXELS,
    O_MAX_SCANS
};

/* SIGINT/SIGTERM raise the stop flag, which every wait, send, training batch
 * and evaluation chunk of the client watches (it ends within a fraction of a
 * second). What cannot watch it (one long training batch, loading a big
 * dataset, a hanging DNS lookup) meets a watchdog: 1.5 s after the signal the
 * process exits anyway, so a client always ends within 2 s of SIGTERM. */
static volatile int client_stop;
static volatile sig_atomic_t watchdog_armed;

static void on_watchdog(int sig)
{
    static const char m[] = "petal client: interrupted (still busy 1.5 s after the signal)\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    (void)sig;
    _exit(1);
}

static void on_stop_signal(int sig)
{
    (void)sig;
    client_stop = 1;
    if (!watchdog_armed) {
        struct itimerval it = {{0, 0}, {1, 500000}};
        watchdog_armed = 1;
        setitimer(ITIMER_REAL, &it, NULL);
    }
}

static void client_signals(void)
{
    struct sigaction sa;
    pt_agent_signals(&client_stop); /* SIGPIPE ignored, no SA_RESTART */
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_watchdog;
    sigaction(SIGALRM, &sa, NULL);
}

static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

int pt_cmd_client(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, 0, O_SERVER},
        {"connect-timeout", required_argument, 0, O_CONNECT_TIMEOUT},
        {"tls-ca", required_argument, 0, O_TLS_CA},
        {"tls", no_argument, 0, O_TLS},
        {"server-name", required_argument, 0, O_SERVER_NAME},
        {"model", required_argument, 0, O_MODEL},
        {"dataset", required_argument, 0, O_DATASET},
        {"partition", required_argument, 0, O_PARTITION},
        {"partitioner", required_argument, 0, O_PARTITIONER},
        {"val-split", required_argument, 0, O_VAL_SPLIT},
        {"limit", required_argument, 0, O_LIMIT},
        {"eval-limit", required_argument, 0, O_EVAL_LIMIT},
        {"seed", required_argument, 0, O_SEED},
        {"backend", required_argument, 0, O_BACKEND},
        {"threads", required_argument, 0, O_THREADS},
        {"id", required_argument, 0, O_ID},
        {"out", required_argument, 0, O_OUT},
        {"log-level", required_argument, 0, O_LOG},
        {"help", no_argument, 0, O_HELP},
        {"keep-optimizer-state", no_argument, 0, O_KEEP_OPT},
        {"rejoin", required_argument, 0, O_REJOIN},
        {"tls-cert", required_argument, 0, O_TLS_CERT},
        {"tls-key", required_argument, 0, O_TLS_KEY},
        {"auth-token-file", required_argument, 0, O_TOKEN_FILE},
        {"require-tls", no_argument, 0, O_REQUIRE_TLS},
        {"max-epochs", required_argument, 0, O_MAX_EPOCHS},
        {"max-batch", required_argument, 0, O_MAX_BATCH},
        {"max-reconnect-wait", required_argument, 0, O_MAX_RECONNECT},
        {"max-message", required_argument, 0, O_MAX_MESSAGE},
        {"max-queue", required_argument, 0, O_MAX_QUEUE},
        {"keepalive", required_argument, 0, O_KEEPALIVE},
        {"keepalive-timeout", required_argument, 0, O_KEEPALIVE_TIMEOUT},
        {"transfer-timeout", required_argument, 0, O_TRANSFER_TIMEOUT},
        {"max-image-pixels", required_argument, 0, O_MAX_PIXELS},
        {"max-jpeg-scans", required_argument, 0, O_MAX_SCANS},
        {0, 0, 0, 0},
    };
    pt_client_opts o;
    const char *token_file = NULL;
    char err[PT_ERRLEN] = "";
    long long iv;
    int c;
    pt_client_opts_init(&o);
    o.stop = &client_stop;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (c) {
        case O_SERVER: o.server = optarg; break;
        case O_CONNECT_TIMEOUT:
            if (pt_agent_parse_double("--connect-timeout", optarg, 0, 1e7, &o.connect_timeout))
                return 2;
            break;
        case O_TLS_CA: o.tls_ca = optarg; break;
        case O_TLS: o.tls = 1; break;
        case O_SERVER_NAME: o.server_name = optarg; break;
        case O_TLS_CERT: o.tls_cert = optarg; break;
        case O_TLS_KEY: o.tls_key = optarg; break;
        case O_TOKEN_FILE: token_file = optarg; break;
        case O_MAX_PIXELS:
            if (pt_agent_parse_int("--max-image-pixels", optarg, 1, 1LL << 32, &iv)) return 2;
            o.max_image_pixels = (uint64_t)iv;
            break;
        case O_MAX_SCANS:
            if (pt_agent_parse_int("--max-jpeg-scans", optarg, 1, 100000, &iv)) return 2;
            o.max_jpeg_scans = (int)iv;
            break;
        case O_MODEL: o.model = optarg; break;
        case O_DATASET: o.dataset = optarg; break;
        case O_PARTITION: {
            char *slash = strchr(optarg, '/');
            long long i, n;
            if (!slash) {
                fprintf(stderr, "petal client: --partition wants i/N, got '%s'\n", optarg);
                return 2;
            }
            *slash = 0;
            if (pt_agent_parse_int("--partition (N)", slash + 1, 1, 1000000, &n) ||
                pt_agent_parse_int("--partition (i)", optarg, 0, n - 1, &i)) {
                *slash = '/';
                return 2;
            }
            *slash = '/';
            o.part = (int)i;
            o.num_parts = (int)n;
            break;
        }
        case O_PARTITIONER:
            if (pd_partition_check(optarg, err)) {
                fprintf(stderr, "petal client: --partitioner: %s\n", err);
                return 2;
            }
            o.partitioner = optarg;
            break;
        case O_VAL_SPLIT:
            if (pt_agent_parse_double("--val-split", optarg, 0, 0.99, &o.val_split)) return 2;
            break;
        case O_LIMIT:
            if (pt_agent_parse_int("--limit", optarg, 0, 1LL << 40, &iv)) return 2;
            o.limit = (size_t)iv;
            break;
        case O_EVAL_LIMIT:
            if (pt_agent_parse_int("--eval-limit", optarg, 0, 1LL << 40, &iv)) return 2;
            o.eval_limit = (size_t)iv;
            break;
        case O_SEED:
            if (pt_agent_parse_int("--seed", optarg, 0, 4294967295LL, &iv)) return 2;
            o.seed = (uint64_t)iv;
            break;
        case O_BACKEND:
            if (pt_agent_parse_backend("petal client", optarg, &o.backend)) return 2;
            break;
        case O_THREADS:
            if (pt_agent_parse_int("--threads", optarg, 1, 256, &iv)) return 2;
            o.threads = (int)iv;
            break;
        case O_ID:
            if (!valid_id(optarg)) {
                fprintf(stderr, "petal client: --id: '%s' must be 1-64 characters of "
                                "[A-Za-z0-9_.-]\n", optarg);
                return 2;
            }
            o.id = optarg;
            break;
        case O_OUT: o.out_dir = optarg; break;
        case O_LOG:
            if (pt_agent_set_log_level("petal client", optarg)) return 2;
            break;
        case O_HELP: usage(stdout); return 0;
        case O_KEEP_OPT: o.keep_optimizer = 1; break;
        case O_REJOIN:
            if (pt_agent_parse_double("--rejoin", optarg, 0, 1e7, &o.rejoin)) return 2;
            break;
        case O_REQUIRE_TLS: o.require_tls = 1; break;
        case O_MAX_EPOCHS:
            if (pt_agent_parse_int("--max-epochs", optarg, 1, 1000000, &iv)) return 2;
            o.max_epochs = (int)iv;
            break;
        case O_MAX_BATCH:
            if (pt_agent_parse_int("--max-batch", optarg, 1, 1 << 24, &iv)) return 2;
            o.max_batch = (int)iv;
            break;
        case O_MAX_RECONNECT:
            if (pt_agent_parse_double("--max-reconnect-wait", optarg, 0.001, 1e9,
                                      &o.max_reconnect_wait))
                return 2;
            break;
        case O_MAX_MESSAGE:
            if (pt_agent_parse_int("--max-message", optarg, 1024, 0xffffffffLL, &iv)) return 2;
            o.max_message = (size_t)iv;
            break;
        case O_MAX_QUEUE:
            if (pt_agent_parse_int("--max-queue", optarg, 1, 1000000, &iv)) return 2;
            o.max_queue = (int)iv;
            break;
        case O_KEEPALIVE:
        case O_KEEPALIVE_TIMEOUT:
        case O_TRANSFER_TIMEOUT: {
            double v;
            const char *nm = c == O_KEEPALIVE           ? "--keepalive"
                             : c == O_KEEPALIVE_TIMEOUT ? "--keepalive-timeout"
                                                        : "--transfer-timeout";
            if (pt_agent_parse_double(nm, optarg, c == O_KEEPALIVE_TIMEOUT ? 0.001 : 0, 1e7, &v))
                return 2;
            if (v == 0) v = -1; /* off (the library's 0 means its default) */
            if (c == O_KEEPALIVE) o.keepalive = v;
            else if (c == O_KEEPALIVE_TIMEOUT) o.keepalive_timeout = v;
            else o.transfer_timeout = v;
            break;
        }
        case ':':
            fprintf(stderr, "petal client: option %s needs a value\n", name);
            return 2;
        default:
            fprintf(stderr, "petal client: unknown option '%s' (see petal client --help)\n",
                    name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "petal client: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!o.tls_cert != !o.tls_key) {
        fprintf(stderr, "petal client: --tls-cert and --tls-key go together\n");
        return 2;
    }
    const pt_path_opt paths[] = {
        {"--tls-ca", o.tls_ca, PT_PATH_IN},
        {"--tls-cert", o.tls_cert, PT_PATH_IN},
        {"--tls-key", o.tls_key, PT_PATH_IN},
        {"--auth-token-file", token_file, PT_PATH_IN},
        {"--out", o.out_dir, PT_PATH_OUT_DIR},
    };
    if (pt_agent_check_paths("petal client", paths, sizeof paths / sizeof paths[0])) return 2;
    static char token[PNET_TOKEN_MAX + 1];
    if (pnet_auth_token_get(token_file, "PETAL_AUTH_TOKEN", token, sizeof token, err)) {
        fprintf(stderr, "petal client: %s\n", err);
        return 2;
    }
    if (token[0]) o.auth_token = token;
    client_signals();
    int rc = pt_client_run(&o, err);
    if (rc) {
        fprintf(stderr, "petal client: %s\n", err[0] ? err : pt_strerror(rc));
        return rc == PT_ERR_INVAL || rc == PT_ERR_NOTFOUND ? 2 : 1;
    }
    return 0;
}
