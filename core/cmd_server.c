/* cmd_server.c - 'petal server': run a federation server that speaks Flower's
 * grpc-bidi protocol (Flower clients and Petal clients can join). */
#include "agent_int.h"
#include "cmd.h"
#include "petal.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "pnet.h"
#include "pnn.h"
#include "pst.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: petal server [options]\n"
            "\n"
            "Run a federated-learning server speaking Flower's gRPC protocol\n"
            "(flwr 1.5+ start_client / start_numpy_client and petal clients can join).\n"
            "\n"
            "Federation:\n"
            "  --address HOST:PORT     listen address (default 0.0.0.0:8080; port 0 = any)\n"
            "  --rounds N              federated rounds (default 3)\n"
            "  --round-timeout auto|auto:MIN|S|none   how long a sampled client gets to\n"
            "                          reply; late ones get DEADLINE_EXCEEDED and count as\n"
            "                          failures. auto (default): 10 x the slowest reply so far\n"
            "                          (earlier rounds and this one), at least MIN s (120),\n"
            "                          3600 s before any client replied; S: fixed seconds;\n"
            "                          none (or 0): wait forever, as Flower's default\n"
            "  --wait-clients S        how long to wait for min_available_clients (default 300)\n"
            "  --init-from-client      take the initial parameters from one client\n"
            "                          (GetParameters) instead of the model's seeded init\n"
            "  --tls-cert FILE --tls-key FILE   serve TLS (ALPN h2) with this certificate\n"
            "Authentication:\n"
            "  --tls-client-ca FILE    mutual TLS: refuse clients without a certificate\n"
            "                          signed by this CA (needs --tls-cert)\n"
            "  --auth-token-file FILE  refuse clients whose 'authorization: Bearer' token\n"
            "                          differs from the first line of FILE (grpc-status 16);\n"
            "                          also from the environment: PETAL_AUTH_TOKEN\n"
            "Reliability and limits:\n"
            "  --checkpoint-dir DIR    checkpoint after every round into DIR (atomic; default\n"
            "                          the --resume directory, else OUT/checkpoint with --out)\n"
            "  --no-checkpoint         write no checkpoints\n"
            "  --resume DIR            continue from the last complete round checkpointed in\n"
            "                          DIR (same model and strategy; --rounds is the total)\n"
            "  --ordered-aggregation   fold each round's updates in a canonical order (by\n"
            "                          num_examples and content) once all are in, not as they\n"
            "                          arrive: runs and resumes with the same seed then give\n"
            "                          bit-identical weights (costs one update held per client)\n"
            "  --save-weights FILE     write the final global model to FILE (.npz, numpy.load);\n"
            "                          also when the run stops early (results so far)\n"
            "  --max-examples N        reject results claiming more than N examples: FedAvg\n"
            "                          weighs by the claim (default 1000000; at most 2^40)\n"
            "  --max-metric-keys N     distinct metric keys per client message (more: the\n"
            "                          message is refused), per round's aggregate and per\n"
            "                          metric history (more: not recorded, warned); default 1024\n"
            "  --max-key-bytes N       longest metric key a client may send (default 256,\n"
            "                          at most 4096)\n"
            "  --max-message BYTES     largest gRPC message (default 536870912, as Flower)\n"
            "  --max-connections N     refuse connections beyond N (default 1000)\n"
            "  --max-header-list BYTES HTTP/2 header list limit (default 16384);\n"
            "                          alias --max-header-bytes\n"
            "  --max-conn-buffer BYTES bytes buffered per connection for incomplete messages\n"
            "                          (default max-message + 64 MiB); alias --max-client-buffer\n"
            "  --max-total-buffer BYTES  the same for all clients together (default half the\n"
            "                          machine's memory): a message that would pass it ends\n"
            "                          its stream\n"
            "  --handshake-timeout S   close connections without a TLS handshake and HTTP/2\n"
            "                          preface, then an accepted Join stream, within S\n"
            "                          seconds (and idle ones S seconds after their last\n"
            "                          Join stream ended; default 10)\n"
            "  --max-conn-per-addr N   connections from one IPv4 address or IPv6 /64\n"
            "                          (default 64; 0 = no cap)\n"
            "  --max-streams-per-conn N  Join streams (clients) on one connection (default 32)\n"
            "  --max-refused-streams N close a connection after N refused streams (wrong\n"
            "                          path, token, ...; default 10)\n"
            "Model and data:\n"
            "  --model PRESET|FILE.json  fmnist-cnn (default), seed-cnn, or a JSON model\n"
            "  --dataset SPEC          held-out split for centralised evaluation, e.g.\n"
            "                          fashion-mnist, folder:DIR, cifar10:DIR (default: none)\n"
            "  --val-split F           image folders: held-out fraction (default 0.25)\n"
            "  --eval-limit N          evaluate on at most N held-out examples\n"
            "  --max-image-pixels N    image folders: skip (and name) images whose header\n"
            "                          declares more pixels (default 67108864 = 8192x8192)\n"
            "  --max-jpeg-scans N      image folders: skip progressive JPEGs with more scans\n"
            "                          (default 100)\n"
            "  --epochs N --batch-size N --lr F   fit config sent to the clients\n"
            "                          (defaults 1, 32, 0.001)\n"
            "  --seed N                model init and client sampling seed (default 1337)\n"
            "  --backend openblas|reference   --threads N\n"
            "Strategy:\n"
            "  --strategy NAME         FedAvg (default), FedAvgM, FedAdagrad, FedAdam,\n"
            "                          FedYogi, FedProx, FedMedian, FedTrimmedAvg, Krum,\n"
            "                          MultiKrum, Bulyan, QFedAvg, FaultTolerantFedAvg,\n"
            "                          DPFixedClipping(<inner>)\n"
            "  --fraction-fit F --fraction-evaluate F --min-fit-clients N\n"
            "  --min-evaluate-clients N --min-available-clients N\n"
            "  --accept-failures | --no-accept-failures\n"
            "  --server-momentum F --server-lr F --eta F --eta-l F --beta1 F --beta2 F\n"
            "  --tau F --proximal-mu F --trim-beta F\n"
            "  --flower-defaults       Flower's own defaults for the adaptive optimizers\n"
            "  --strategy-opt KEY=VALUE   any other strategy option (see petal server\n"
            "                          --help-strategies)\n"
            "Output:\n"
            "  --out DIR               write server_log.log and events.jsonl into DIR\n"
            "  --expected-clients N    number of clients recorded in the results\n"
            "  --port-file FILE        write the bound port to FILE once listening\n"
            "  --log-level LEVEL       debug, info (default), warn, error\n"
            "  --help                  this text; --help-strategies: strategy options\n"
            "\n"
            "Exit status: 0 done; 1 error; 2 bad option or input file; 3 not enough clients\n"
            "within --wait-clients (results so far kept: checkpoint, --save-weights, --out);\n"
            "130 interrupted (SIGINT/SIGTERM; results so far kept likewise).\n");
}

enum {
    O_ADDRESS = 256, O_ROUNDS, O_STRATEGY, O_MODEL, O_DATASET, O_VAL_SPLIT, O_EVAL_LIMIT,
    O_EPOCHS, O_BATCH, O_LR, O_ROUND_TIMEOUT, O_WAIT, O_CERT, O_KEY, O_SEED, O_BACKEND,
    O_THREADS, O_OUT, O_LOG, O_INIT_CLIENT, O_MAXMSG, O_PORTFILE, O_EXPECTED, O_HELP,
    O_HELP_STRAT, O_STRAT_OPT, O_ACCEPT, O_NO_ACCEPT, O_FLOWER_DEFAULTS, O_CKPT_DIR,
    O_NO_CKPT, O_RESUME, O_SAVE_WEIGHTS, O_MAX_EXAMPLES, O_MAX_CONN, O_MAX_HDR, O_MAX_BUF,
    O_CLIENT_CA, O_TOKEN_FILE, O_MAX_TOTAL, O_HANDSHAKE, O_ORDERED, O_MAX_KEY_BYTES,
    O_PER_ADDR, O_PER_CONN, O_MAX_REFUSED, O_MAX_PIXELS, O_MAX_SCANS,
    O_PST = 512 /* + index into pst_keys */
};

/* command-line name -> pst_option_set key */
static const char *const pst_keys[][2] = {
    {"fraction-fit", "fraction_fit"},
    {"fraction-evaluate", "fraction_evaluate"},
    {"min-fit-clients", "min_fit_clients"},
    {"min-evaluate-clients", "min_evaluate_clients"},
    {"min-available-clients", "min_available_clients"},
    {"server-momentum", "server_momentum"},
    {"server-lr", "server_learning_rate"},
    {"server-learning-rate", "server_learning_rate"},
    {"eta", "eta"},
    {"eta-l", "eta_l"},
    {"beta1", "beta_1"},
    {"beta2", "beta_2"},
    {"tau", "tau"},
    {"proximal-mu", "proximal_mu"},
    {"trim-beta", "trim_beta"},
    {"max-metric-keys", "max_metric_keys"},
};
#define N_PST_KEYS (sizeof pst_keys / sizeof pst_keys[0])

/* One descriptor per client connection: raise the soft RLIMIT_NOFILE to the
 * hard limit, and say so when even that cannot hold max_conn clients. */
static void raise_fd_limit(int max_conn)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max_conn + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl)) return;
    if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) || getrlimit(RLIMIT_NOFILE, &rl)) return;
    }
    if (rl.rlim_cur < need)
        fprintf(stderr,
                "petal server: warning: RLIMIT_NOFILE is %llu (hard limit %llu): at most about "
                "%llu clients can connect, not the %d of --max-connections; raise the hard "
                "limit (ulimit -Hn) to serve more\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                (unsigned long long)(rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 0), max_conn);
}

/* --round-timeout auto | auto:MIN | none | 0 | SECONDS */
static int parse_round_timeout(const char *v, pt_server_opts *o)
{
    if (!strcmp(v, "auto")) {
        o->round_timeout = 0;
        return 0;
    }
    if (!strncmp(v, "auto:", 5)) {
        o->round_timeout = 0;
        return pt_agent_parse_double("--round-timeout auto:MIN", v + 5, 0.001, 1e7,
                                     &o->round_timeout_min);
    }
    if (!strcmp(v, "none")) {
        o->round_timeout = -1;
        return 0;
    }
    if (pt_agent_parse_double("--round-timeout", v, 0, 1e7, &o->round_timeout)) {
        fprintf(stderr, "petal server: --round-timeout takes auto, auto:MIN, none or seconds\n");
        return -1;
    }
    if (o->round_timeout == 0) o->round_timeout = -1; /* 0: none, as it always meant */
    return 0;
}

int pt_cmd_server(int argc, char **argv)
{
    static struct option base[] = {
        {"address", required_argument, 0, O_ADDRESS},
        {"rounds", required_argument, 0, O_ROUNDS},
        {"num-rounds", required_argument, 0, O_ROUNDS},
        {"strategy", required_argument, 0, O_STRATEGY},
        {"model", required_argument, 0, O_MODEL},
        {"dataset", required_argument, 0, O_DATASET},
        {"val-split", required_argument, 0, O_VAL_SPLIT},
        {"eval-limit", required_argument, 0, O_EVAL_LIMIT},
        {"epochs", required_argument, 0, O_EPOCHS},
        {"batch-size", required_argument, 0, O_BATCH},
        {"lr", required_argument, 0, O_LR},
        {"round-timeout", required_argument, 0, O_ROUND_TIMEOUT},
        {"wait-clients", required_argument, 0, O_WAIT},
        {"tls-cert", required_argument, 0, O_CERT},
        {"tls-key", required_argument, 0, O_KEY},
        {"seed", required_argument, 0, O_SEED},
        {"backend", required_argument, 0, O_BACKEND},
        {"threads", required_argument, 0, O_THREADS},
        {"out", required_argument, 0, O_OUT},
        {"log-level", required_argument, 0, O_LOG},
        {"init-from-client", no_argument, 0, O_INIT_CLIENT},
        {"max-message", required_argument, 0, O_MAXMSG},
        {"port-file", required_argument, 0, O_PORTFILE},
        {"expected-clients", required_argument, 0, O_EXPECTED},
        {"help", no_argument, 0, O_HELP},
        {"help-strategies", no_argument, 0, O_HELP_STRAT},
        {"strategy-opt", required_argument, 0, O_STRAT_OPT},
        {"accept-failures", no_argument, 0, O_ACCEPT},
        {"no-accept-failures", no_argument, 0, O_NO_ACCEPT},
        {"flower-defaults", no_argument, 0, O_FLOWER_DEFAULTS},
        {"checkpoint-dir", required_argument, 0, O_CKPT_DIR},
        {"no-checkpoint", no_argument, 0, O_NO_CKPT},
        {"resume", required_argument, 0, O_RESUME},
        {"save-weights", required_argument, 0, O_SAVE_WEIGHTS},
        {"max-examples", required_argument, 0, O_MAX_EXAMPLES},
        {"max-connections", required_argument, 0, O_MAX_CONN},
        {"max-header-list", required_argument, 0, O_MAX_HDR},
        {"max-conn-buffer", required_argument, 0, O_MAX_BUF},
        {"max-header-bytes", required_argument, 0, O_MAX_HDR},
        {"max-client-buffer", required_argument, 0, O_MAX_BUF},
        {"max-total-buffer", required_argument, 0, O_MAX_TOTAL},
        {"handshake-timeout", required_argument, 0, O_HANDSHAKE},
        {"tls-client-ca", required_argument, 0, O_CLIENT_CA},
        {"auth-token-file", required_argument, 0, O_TOKEN_FILE},
        {"ordered-aggregation", no_argument, 0, O_ORDERED},
        {"max-key-bytes", required_argument, 0, O_MAX_KEY_BYTES},
        {"max-conn-per-addr", required_argument, 0, O_PER_ADDR},
        {"max-streams-per-conn", required_argument, 0, O_PER_CONN},
        {"max-refused-streams", required_argument, 0, O_MAX_REFUSED},
        {"max-image-pixels", required_argument, 0, O_MAX_PIXELS},
        {"max-jpeg-scans", required_argument, 0, O_MAX_SCANS},
    };
    enum { NBASE = sizeof base / sizeof base[0] };
    struct option opts[NBASE + N_PST_KEYS + 1];
    memcpy(opts, base, sizeof base);
    for (size_t i = 0; i < N_PST_KEYS; i++)
        opts[NBASE + i] = (struct option){pst_keys[i][0], required_argument, 0, O_PST + (int)i};
    memset(&opts[NBASE + N_PST_KEYS], 0, sizeof opts[0]);

    static volatile int stop;
    pt_server_opts o;
    pst_options so;
    const char *token_file = NULL;
    char err[PT_ERRLEN] = "";
    long long iv;
    int c;
    pt_server_opts_init(&o);
    pst_options_init(&so);
    o.strategy_opts = &so;
    o.stop = &stop;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        const char *name = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        switch (c) {
        case O_ADDRESS: o.address = optarg; break;
        case O_ROUNDS:
            if (pt_agent_parse_int("--rounds", optarg, 1, 1000000, &iv)) return 2;
            o.rounds = (int)iv;
            break;
        case O_STRATEGY: o.strategy = optarg; break;
        case O_MODEL: o.model = optarg; break;
        case O_DATASET: o.dataset = optarg; break;
        case O_VAL_SPLIT:
            if (pt_agent_parse_double("--val-split", optarg, 0, 0.99, &o.val_split)) return 2;
            break;
        case O_EVAL_LIMIT:
            if (pt_agent_parse_int("--eval-limit", optarg, 0, 1LL << 40, &iv)) return 2;
            o.eval_limit = (size_t)iv;
            break;
        case O_EPOCHS:
            if (pt_agent_parse_int("--epochs", optarg, 1, 100000, &iv)) return 2;
            o.epochs = (int)iv;
            break;
        case O_BATCH:
            if (pt_agent_parse_int("--batch-size", optarg, 1, 1 << 20, &iv)) return 2;
            o.batch_size = (int)iv;
            break;
        case O_LR:
            if (pt_agent_parse_double("--lr", optarg, 1e-12, 1e6, &o.lr)) return 2;
            break;
        case O_ROUND_TIMEOUT:
            if (parse_round_timeout(optarg, &o)) return 2;
            break;
        case O_WAIT:
            if (pt_agent_parse_double("--wait-clients", optarg, 0, 1e7, &o.wait_clients))
                return 2;
            break;
        case O_CERT: o.tls_cert = optarg; break;
        case O_KEY: o.tls_key = optarg; break;
        case O_SEED:
            if (pt_agent_parse_int("--seed", optarg, 0, 4294967295LL, &iv)) return 2;
            o.seed = (uint64_t)iv;
            break;
        case O_BACKEND:
            if (pt_agent_parse_backend("petal server", optarg, &o.backend)) return 2;
            break;
        case O_THREADS:
            if (pt_agent_parse_int("--threads", optarg, 1, 256, &iv)) return 2;
            o.threads = (int)iv;
            break;
        case O_OUT: o.out_dir = optarg; break;
        case O_LOG:
            if (pt_agent_set_log_level("petal server", optarg)) return 2;
            break;
        case O_INIT_CLIENT: o.init_from_client = 1; break;
        case O_MAXMSG:
            if (pt_agent_parse_int("--max-message", optarg, 1024, 0xffffffffLL, &iv)) return 2;
            o.max_message = (size_t)iv;
            break;
        case O_PORTFILE: o.port_file = optarg; break;
        case O_CKPT_DIR: o.checkpoint_dir = optarg; break;
        case O_NO_CKPT: o.no_checkpoint = 1; break;
        case O_ORDERED: o.ordered_fold = 1; break;
        case O_RESUME: o.resume = optarg; break;
        case O_SAVE_WEIGHTS: o.save_weights = optarg; break;
        case O_MAX_EXAMPLES:
            if (pt_agent_parse_int("--max-examples", optarg, 1, 1LL << 40, &iv)) return 2;
            o.max_examples = (int64_t)iv;
            break;
        case O_MAX_KEY_BYTES:
            if (pt_agent_parse_int("--max-key-bytes", optarg, 1, PT_CONFIG_KEY_MAX, &iv)) return 2;
            o.max_key_bytes = (size_t)iv;
            break;
        case O_MAX_CONN:
            if (pt_agent_parse_int("--max-connections", optarg, 1, 1000000, &iv)) return 2;
            o.max_connections = (int)iv;
            break;
        case O_MAX_HDR:
            if (pt_agent_parse_int("--max-header-list", optarg, 1024, 1 << 24, &iv)) return 2;
            o.max_header_list = (size_t)iv;
            break;
        case O_MAX_BUF:
            if (pt_agent_parse_int("--max-conn-buffer", optarg, 4096, 1LL << 40, &iv)) return 2;
            o.max_conn_buffer = (size_t)iv;
            break;
        case O_MAX_TOTAL:
            if (pt_agent_parse_int("--max-total-buffer", optarg, 4096, 1LL << 40, &iv)) return 2;
            o.max_rx_total = (size_t)iv;
            break;
        case O_HANDSHAKE:
            if (pt_agent_parse_double("--handshake-timeout", optarg, 0.05, 3600,
                                      &o.handshake_timeout))
                return 2;
            break;
        case O_PER_ADDR:
            if (pt_agent_parse_int("--max-conn-per-addr", optarg, 0, 1000000, &iv)) return 2;
            o.max_conn_per_addr = iv ? (int)iv : -1;
            break;
        case O_PER_CONN:
            if (pt_agent_parse_int("--max-streams-per-conn", optarg, 1, 100, &iv)) return 2;
            o.max_streams_per_conn = (int)iv;
            break;
        case O_MAX_REFUSED:
            if (pt_agent_parse_int("--max-refused-streams", optarg, 1, 1000000, &iv)) return 2;
            o.max_refused_streams = (int)iv;
            break;
        case O_CLIENT_CA: o.tls_client_ca = optarg; break;
        case O_MAX_PIXELS:
            if (pt_agent_parse_int("--max-image-pixels", optarg, 1, 1LL << 32, &iv)) return 2;
            o.max_image_pixels = (uint64_t)iv;
            break;
        case O_MAX_SCANS:
            if (pt_agent_parse_int("--max-jpeg-scans", optarg, 1, 100000, &iv)) return 2;
            o.max_jpeg_scans = (int)iv;
            break;
        case O_TOKEN_FILE: token_file = optarg; break;
        case O_EXPECTED:
            if (pt_agent_parse_int("--expected-clients", optarg, 1, 1000000, &iv)) return 2;
            o.expected_clients = (int)iv;
            break;
        case O_HELP: usage(stdout); return 0;
        case O_HELP_STRAT: fputs(pst_help(), stdout); return 0;
        case O_ACCEPT:
        case O_NO_ACCEPT:
            pst_option_set(&so, "accept_failures", c == O_ACCEPT ? "1" : "0", err);
            break;
        case O_FLOWER_DEFAULTS: pst_option_set(&so, "defaults", "flower", err); break;
        case O_STRAT_OPT: {
            char key[128];
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof key) {
                fprintf(stderr, "petal server: --strategy-opt wants KEY=VALUE, got '%s'\n",
                        optarg);
                return 2;
            }
            memcpy(key, optarg, (size_t)(eq - optarg));
            key[eq - optarg] = 0;
            if (pst_option_set(&so, key, eq + 1, err)) {
                fprintf(stderr, "petal server: --strategy-opt: %s\n", err);
                return 2;
            }
            break;
        }
        case ':':
            fprintf(stderr, "petal server: option %s needs a value\n", name);
            return 2;
        case '?':
            fprintf(stderr, "petal server: unknown option '%s' (see petal server --help)\n",
                    name);
            return 2;
        default:
            if (c >= O_PST && c < O_PST + (int)N_PST_KEYS) {
                if (pst_option_set(&so, pst_keys[c - O_PST][1], optarg, err)) {
                    fprintf(stderr, "petal server: --%s: %s\n", pst_keys[c - O_PST][0], err);
                    return 2;
                }
                break;
            }
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "petal server: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o.no_checkpoint && o.checkpoint_dir) {
        fprintf(stderr, "petal server: --no-checkpoint and --checkpoint-dir exclude each other\n");
        return 2;
    }
    if (!o.tls_cert != !o.tls_key) {
        fprintf(stderr, "petal server: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (o.tls_client_ca && !o.tls_cert) {
        fprintf(stderr, "petal server: --tls-client-ca needs --tls-cert and --tls-key\n");
        return 2;
    }
    /* every path option checked now: a mistake fails in a second, not after
     * the run (an output that cannot be written) or never (a FIFO) */
    const pt_path_opt paths[] = {
        {"--resume", o.resume, PT_PATH_IN_ANY},
        {"--tls-cert", o.tls_cert, PT_PATH_IN},
        {"--tls-key", o.tls_key, PT_PATH_IN},
        {"--tls-client-ca", o.tls_client_ca, PT_PATH_IN},
        {"--auth-token-file", token_file, PT_PATH_IN},
        {"--save-weights", o.save_weights, PT_PATH_OUT},
        {"--port-file", o.port_file, PT_PATH_OUT},
        {"--checkpoint-dir", o.checkpoint_dir, PT_PATH_OUT_DIR},
        {"--out", o.out_dir, PT_PATH_OUT_DIR},
    };
    if (pt_agent_check_paths("petal server", paths, sizeof paths / sizeof paths[0])) return 2;
    static char token[PNET_TOKEN_MAX + 1];
    if (pnet_auth_token_get(token_file, "PETAL_AUTH_TOKEN", token, sizeof token, err)) {
        fprintf(stderr, "petal server: %s\n", err);
        return 2;
    }
    if (token[0]) o.auth_token = token;
    raise_fd_limit(o.max_connections > 0 ? o.max_connections : 1000);
    pt_agent_signals(&stop);
    int rc = pt_server_run(&o, err);
    if (rc) {
        fprintf(stderr, "petal server: %s\n", err[0] ? err : pt_strerror(rc));
        if (rc == PT_ERR_TIMEOUT) return 3;
        if (rc == PT_ERR_INTERRUPTED) return 130;
        return rc == PT_ERR_INVAL || rc == PT_ERR_NOTFOUND || rc == PT_ERR_FORMAT ||
                       rc == PT_ERR_MISMATCH || rc == PT_ERR_UNSUPPORTED
                   ? 2
                   : 1;
    }
    return 0;
}
