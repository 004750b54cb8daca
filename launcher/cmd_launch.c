/* cmd_launch.c - 'petal launch': run the experiment on AWS EC2 + S3. */
#include "cmd.h"
#include "launch_int.h"
#include "petal.h"
#include "plaunch.h"
#include "pnet.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile int g_stop;

static void on_sigint(int sig)
{
    (void)sig;
    g_stop++;
    static const char m1[] = "\npetal launch: interrupted (or the terminal closed), cleaning up "
                             "(Ctrl-C twice more to abandon the clean-up)\n";
    static const char m3[] = "\npetal launch: clean-up abandoned; run 'petal launch --cleanup "
                             "RUN_ID' later\n";
    if (g_stop == 1) {
        ssize_t w = write(2, m1, sizeof m1 - 1);
        (void)w;
    } else if (g_stop >= 3) {
        ssize_t w = write(2, m3, sizeof m3 - 1);
        (void)w;
        _exit(130);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: petal launch --n-client-instances N [options]\n"
        "       petal launch --status RUN_ID | --collect RUN_ID | --cleanup RUN_ID [options]\n"
        "\n"
        "Runs the whole experiment on AWS: an S3 bucket for artifacts and results, a\n"
        "security group that admits the Flower port only from its own members, one\n"
        "server (it builds petal once and shares it through S3) and N client instances\n"
        "(runtime packages only), then collects, verifies and reports the results (the\n"
        "same tree as 'petal run') and removes everything. Ctrl-C, a closed terminal or\n"
        "any failure cleans up. No secret leaves this machine: the tarball holds the\n"
        "files git tracks, every artifact is checked for credentials, and the\n"
        "instances' user-data holds one presigned URL.\n"
        "\n"
        "Experiment (defaults as 'petal run'):\n"
        "  --n-client-instances N  client instances (required; Learner Lab: N+1 <= 9)\n"
        "  --num-rounds R          rounds per strategy (default 3)\n"
        "  --strategy LIST         comma-separated (default FedAvg,FedAvgM,FedAdagrad,FedAdam)\n"
        "  --backend B             agents' compute backend, results level (default openblas)\n"
        "  --model M               preset or a local JSON file (uploaded; default fmnist-cnn)\n"
        "  --dataset D             name (default fashion-mnist), or folder:DIR / DIR here\n"
        "                          (packed once, uploaded, used by every instance)\n"
        "  --server-args 'ARGS'    extra 'petal server' arguments (override the defaults)\n"
        "  --client-args 'ARGS'    extra 'petal client' arguments\n"
        "  --out DIR               results directory (default results)\n"
        "AWS:\n"
        "  --region R              default: AWS_REGION, AWS_DEFAULT_REGION, config, us-east-1\n"
        "  --profile P             profile in ~/.aws/credentials (default $AWS_PROFILE)\n"
        "  --env-file F            .env file with AWS_* or AWS_LAB_* keys (default ./.env)\n"
        "  --instance-type T       clients (and server) (default r5.large)\n"
        "  --server-instance-type T  the server's own type\n"
        "  --ami ID                skip the AMI lookup (e.g. an image with the packages\n"
        "                          baked in: see launcher/README.md)\n"
        "  --ami-parameter NAME    SSM public parameter for the AMI (default Debian 12)\n"
        "  --subnet-id ID          launch into this subnet (accounts without a default VPC)\n"
        "  --key-name K            EC2 key pair (e.g. vockey) for SSH\n"
        "  --ssh-cidr CIDR         open SSH from this range (default: no SSH rule)\n"
        "  --instance-profile P    e.g. LabInstanceProfile: instances sign their uploads\n"
        "                          with the role's IMDSv2 credentials (long runs)\n"
        "  --endpoint-url URL      every service (emulators); per service:\n"
        "  --ec2-endpoint URL  --s3-endpoint URL  --ssm-endpoint URL  --sts-endpoint URL\n"
        "  --max-instances N       instance limit checked before any call (default 9)\n"
        "Run control:\n"
        "  --build server|local    where petal is built: once on the server (default), or\n"
        "                          here ('make build/petal'; this machine must match the\n"
        "                          AMI: Debian 12 amd64) and uploaded\n"
        "  --agent-binary FILE     upload this petal for every instance (no build on AWS)\n"
        "  --port P                Flower port (default 8080; strategy k uses P+k)\n"
        "  --timeout S             deadline for the results, seconds (default 7200)\n"
        "  --boot-timeout S        an instance must report within S of running (default 900)\n"
        "  --poll-interval S       seconds between polls (default 10)\n"
        "  --heartbeat S           agents report their round this often (default 10)\n"
        "  --creds-wait S          expired credentials mid-run: wait this long for fresh\n"
        "                          ones in .env / ~/.aws/credentials (default 1800)\n"
        "  --dist-tarball F        source tarball (default: 'make dist' here)\n"
        "  --state-dir DIR         run state files (default ~/.petal/runs)\n"
        "  --run-id ID             name the run (default: date and time + random)\n"
        "  --keep                  leave the instances running (and the run's local\n"
        "                          certificate directory)\n"
        "  --keep-on-failure       leave a failed run's instances running (debugging)\n"
        "  --no-auth               agents without TLS, mutual TLS and token (default: a\n"
        "                          per-run CA, certificates and token, see README)\n"
        "  --dry-run               print the plan (cost, timeline), manifests and\n"
        "                          user-data; call nothing\n"
        "  --status RUN_ID         each agent's stage and round, the run's instances\n"
        "  --collect RUN_ID        download and verify a run's results into --out\n"
        "  --cleanup RUN_ID        collect, then remove a run's leftovers (found by tag)\n"
        "  -q, --quiet             no progress display\n"
        "  -h, --help              this help\n");
}

static int parse_int(const char *s, int lo, int hi, const char *name, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "petal launch: %s must be an integer in %d..%d (got '%s')\n", name, lo,
                hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_secs(const char *s, const char *name, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 30 * 86400.0) {
        fprintf(stderr, "petal launch: %s must be a positive number of seconds (got '%s')\n",
                name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int run_report(const char *dir, void *ud)
{
    (void)ud;
    char *argv[] = {"report", (char *)dir, NULL};
    return pt_cmd_report(2, argv);
}

static int make_auth(const char *dir, const char *server_san, int days, char *err, void *ud)
{
    (void)ud;
    return pnet_tls_make_run_dir(dir, server_san, days, err);
}

/* make -s TARGET here (dist, or the petal binary for --build local) */
static int run_make(const char *target)
{
    struct stat st;
    if (stat("Makefile", &st)) {
        fprintf(stderr, "petal launch: no Makefile here to run 'make %s' (run from Petal's "
                "source tree, or pass --dist-tarball / --agent-binary)\n", target);
        return -1;
    }
    char *argv[] = {"make", "-s", (char *)target, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "make", NULL, NULL, argv, environ)) {
        fprintf(stderr, "petal launch: cannot run make: %s\n", strerror(errno));
        return -1;
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) return -1;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws)) {
        fprintf(stderr, "petal launch: 'make %s' failed\n", target);
        return -1;
    }
    return 0;
}

static const char *build_dir(void)
{
    const char *b = getenv("BUILD");
    return b && b[0] ? b : "build";
}

/* --build local: this machine must run what the instances run */
static int local_matches_ami(int custom_ami)
{
    struct utsname u;
    FILE *f = fopen("/etc/os-release", "r");
    char line[256];
    int debian = 0, v12 = 0;
    while (f && fgets(line, sizeof line, f)) {
        debian |= !strcmp(line, "ID=debian\n");
        v12 |= !strcmp(line, "VERSION_ID=\"12\"\n");
    }
    if (f) fclose(f);
    int x86 = !uname(&u) && !strcmp(u.machine, "x86_64");
    if (debian && v12 && x86) return 0;
    fprintf(stderr, "petal launch: --build local: this machine is not Debian 12 on x86_64 like "
            "the default AMI, so its petal would not run there%s; use --build server\n",
            custom_ami ? " (with --ami, pass --agent-binary if you know it matches)" : "");
    return -1;
}

/* --status, --collect or --cleanup RUN_ID: a run started here or elsewhere */
static int existing_run(pl_launch_opts *o, const char *status_id, const char *collect_id,
                        const char *cleanup_id)
{
    char err[PT_ERRLEN] = "";
    int rc;
    if (status_id) {
        o->run_id = status_id;
        pl_str out = {0};
        rc = pl_launch_status(o, &out, err);
        if (out.len) fwrite(out.data, 1, out.len, stdout);
        pl_str_free(&out);
        if (rc) fprintf(stderr, "petal launch --status: %s\n", err);
    } else if (collect_id) {
        o->run_id = collect_id;
        rc = pl_launch_collect(o, &g_stop, err);
        if (rc) fprintf(stderr, "petal launch --collect: %s\n", err);
    } else {
        o->run_id = cleanup_id;
        rc = pl_launch_cleanup(o, &g_stop, err);
        if (rc)
            fprintf(stderr, "petal launch --cleanup: %s\n", err);
        else
            fprintf(stderr, "petal launch --cleanup %s: done\n", cleanup_id);
    }
    return rc ? 1 : 0;
}

enum {
    O_NCLI = 256, O_ROUNDS, O_STRAT, O_BACKEND, O_ITYPE, O_REGION, O_PROFILE, O_ENVF, O_KEY,
    O_SSH, O_MODEL, O_DATASET, O_AMI, O_AMIP, O_IPROF, O_EP, O_EC2, O_S3, O_SSM, O_STS, O_OUT,
    O_STATE, O_DIST, O_AGENTBIN, O_SARGS, O_CARGS, O_PORT, O_KEEP, O_DRY, O_MAXI, O_TIMEOUT,
    O_BOOT, O_POLL, O_CLEANUP, O_RUNID, O_NOAUTH, O_SITYPE, O_SUBNET, O_KEEPFAIL, O_STATUS,
    O_COLLECT, O_HB, O_CWAIT, O_BUILD
};

/* A local path given where a kind of file is expected, checked before any
 * work (and in a dry run): what exists must be that kind (never a FIFO that
 * would block a read hours later); "need" paths must exist. */
static int local_path(const char *opt, const char *path, int want_dir, int need)
{
    struct stat st;
    if (!path || !*path) return 0; /* "" = none (--env-file "") */
    if (stat(path, &st) != 0) {
        if (!need) return 0;
        fprintf(stderr, "petal launch: %s %s: %s\n", opt, path, strerror(errno));
        return -1;
    }
    if (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)) return 0;
    fprintf(stderr, "petal launch: %s %s: %s, not a %s\n", opt, path, pt_file_kind(st.st_mode),
            want_dir ? "directory" : "regular file");
    return -1;
}

static int check_paths(const pl_launch_opts *o)
{
    /* --dataset and --model are names on the instances unless they exist
     * here (then they are uploaded): a dataset folder, a model JSON file */
    struct stat st;
    int ds_dir = o->dataset && stat(o->dataset, &st) == 0 && S_ISDIR(st.st_mode);
    return local_path("--env-file", o->env_file, 0, 1) ||
           local_path("--dist-tarball", o->dist_tarball, 0, 1) ||
           local_path("--model", o->model, 0, 0) ||
           (!ds_dir && local_path("--dataset", o->dataset, 1, 0)) ||
           local_path("--out", o->out_dir, 1, 0) || local_path("--state-dir", o->state_dir, 1, 0) ||
           local_path("--agent-binary", o->agent_binary, 0, 0);
}

int pt_cmd_launch(int argc, char **argv)
{
    static const struct option opts[] = {
        {"n-client-instances", required_argument, 0, O_NCLI},
        {"clients", required_argument, 0, O_NCLI},
        {"num-rounds", required_argument, 0, O_ROUNDS},
        {"strategy", required_argument, 0, O_STRAT},
        {"backend", required_argument, 0, O_BACKEND},
        {"instance-type", required_argument, 0, O_ITYPE},
        {"region", required_argument, 0, O_REGION},
        {"profile", required_argument, 0, O_PROFILE},
        {"env-file", required_argument, 0, O_ENVF},
        {"key-name", required_argument, 0, O_KEY},
        {"ssh-cidr", required_argument, 0, O_SSH},
        {"model", required_argument, 0, O_MODEL},
        {"dataset", required_argument, 0, O_DATASET},
        {"ami", required_argument, 0, O_AMI},
        {"ami-parameter", required_argument, 0, O_AMIP},
        {"instance-profile", required_argument, 0, O_IPROF},
        {"endpoint-url", required_argument, 0, O_EP},
        {"ec2-endpoint", required_argument, 0, O_EC2},
        {"s3-endpoint", required_argument, 0, O_S3},
        {"ssm-endpoint", required_argument, 0, O_SSM},
        {"sts-endpoint", required_argument, 0, O_STS},
        {"out", required_argument, 0, O_OUT},
        {"state-dir", required_argument, 0, O_STATE},
        {"dist-tarball", required_argument, 0, O_DIST},
        {"agent-binary", required_argument, 0, O_AGENTBIN},
        {"server-args", required_argument, 0, O_SARGS},
        {"client-args", required_argument, 0, O_CARGS},
        {"port", required_argument, 0, O_PORT},
        {"keep", no_argument, 0, O_KEEP},
        {"no-auth", no_argument, 0, O_NOAUTH},
        {"dry-run", no_argument, 0, O_DRY},
        {"max-instances", required_argument, 0, O_MAXI},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {"boot-timeout", required_argument, 0, O_BOOT},
        {"poll-interval", required_argument, 0, O_POLL},
        {"cleanup", required_argument, 0, O_CLEANUP},
        {"run-id", required_argument, 0, O_RUNID},
        {"server-instance-type", required_argument, 0, O_SITYPE},
        {"subnet-id", required_argument, 0, O_SUBNET},
        {"keep-on-failure", no_argument, 0, O_KEEPFAIL},
        {"status", required_argument, 0, O_STATUS},
        {"collect", required_argument, 0, O_COLLECT},
        {"heartbeat", required_argument, 0, O_HB},
        {"creds-wait", required_argument, 0, O_CWAIT},
        {"build", required_argument, 0, O_BUILD},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    pl_launch_opts o;
    memset(&o, 0, sizeof o);
    o.progress = isatty(2);
    const char *cleanup_id = NULL, *status_id = NULL, *collect_id = NULL, *build = "server";
    static char strat_buf[1024];
    size_t strat_used = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+qh", opts, NULL)) != -1) {
        switch (c) {
        case O_NCLI:
            if (parse_int(optarg, 1, 1000, "--n-client-instances", &o.n_clients)) return 2;
            break;
        case O_ROUNDS:
            if (parse_int(optarg, 1, 100000, "--num-rounds", &o.num_rounds)) return 2;
            break;
        case O_STRAT: {
            size_t l = strlen(optarg);
            if (strat_used + l + 1 > sizeof strat_buf) {
                fprintf(stderr, "petal launch: --strategy list too long\n");
                return 2;
            }
            char *p = strat_buf + strat_used;
            memcpy(p, optarg, l + 1);
            strat_used += l + 1;
            for (char *tok = strtok(p, ", "); tok; tok = strtok(NULL, ", ")) {
                if (o.n_strategies >= PL_MAX_STRATEGIES) {
                    fprintf(stderr, "petal launch: at most %d strategies\n", PL_MAX_STRATEGIES);
                    return 2;
                }
                o.strategies[o.n_strategies++] = tok;
            }
            break;
        }
        case O_BACKEND: o.backend = optarg; break;
        case O_ITYPE: o.instance_type = optarg; break;
        case O_REGION: o.region = optarg; break;
        case O_PROFILE: o.profile = optarg; break;
        case O_ENVF: o.env_file = optarg; break;
        case O_KEY: o.key_name = optarg; break;
        case O_SSH: o.ssh_cidr = optarg; break;
        case O_MODEL: o.model = optarg; break;
        case O_DATASET: o.dataset = optarg; break;
        case O_AMI: o.ami = optarg; break;
        case O_AMIP: o.ami_parameter = optarg; break;
        case O_IPROF: o.instance_profile = optarg; break;
        case O_EP: o.endpoint_url = optarg; break;
        case O_EC2: o.service_endpoint[PL_EC2] = optarg; break;
        case O_S3: o.service_endpoint[PL_S3] = optarg; break;
        case O_SSM: o.service_endpoint[PL_SSM] = optarg; break;
        case O_STS: o.service_endpoint[PL_STS] = optarg; break;
        case O_OUT: o.out_dir = optarg; break;
        case O_STATE: o.state_dir = optarg; break;
        case O_DIST: o.dist_tarball = optarg; break;
        case O_AGENTBIN: o.agent_binary = optarg; break;
        case O_SARGS: o.server_args = optarg; break;
        case O_CARGS: o.client_args = optarg; break;
        case O_PORT:
            if (parse_int(optarg, 1024, 65535, "--port", &o.port)) return 2;
            break;
        case O_KEEP: o.keep = 1; break;
        case O_NOAUTH: o.no_auth = 1; break;
        case O_DRY: o.dry_run = 1; break;
        case O_MAXI:
            if (parse_int(optarg, 2, 100000, "--max-instances", &o.max_instances)) return 2;
            break;
        case O_TIMEOUT:
            if (parse_secs(optarg, "--timeout", &o.timeout_s)) return 2;
            break;
        case O_BOOT:
            if (parse_secs(optarg, "--boot-timeout", &o.boot_timeout_s)) return 2;
            break;
        case O_POLL:
            if (parse_secs(optarg, "--poll-interval", &o.poll_s)) return 2;
            break;
        case O_CLEANUP: cleanup_id = optarg; break;
        case O_RUNID: o.run_id = optarg; break;
        case O_SITYPE: o.server_instance_type = optarg; break;
        case O_SUBNET: o.subnet_id = optarg; break;
        case O_KEEPFAIL: o.keep_on_failure = 1; break;
        case O_STATUS: status_id = optarg; break;
        case O_COLLECT: collect_id = optarg; break;
        case O_HB:
            if (parse_secs(optarg, "--heartbeat", &o.heartbeat_s)) return 2;
            break;
        case O_CWAIT:
            if (parse_secs(optarg, "--creds-wait", &o.creds_wait_s)) return 2;
            break;
        case O_BUILD:
            if (strcmp(optarg, "server") && strcmp(optarg, "local")) {
                fprintf(stderr, "petal launch: --build must be server or local (got '%s')\n",
                        optarg);
                return 2;
            }
            build = optarg;
            break;
        case 'q': o.progress = 0; break;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "petal launch: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "petal launch: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    char err[PT_ERRLEN] = "";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL); /* a closed terminal cleans up like Ctrl-C */
    signal(SIGPIPE, SIG_IGN);     /* ... and the dead terminal's pipe is no reason to die */
    o.report = run_report;
    if ((cleanup_id != NULL) + (status_id != NULL) + (collect_id != NULL) > 1) {
        fprintf(stderr, "petal launch: --status, --collect and --cleanup go alone\n");
        return 2;
    }
    if (status_id || collect_id || cleanup_id)
        return existing_run(&o, status_id, collect_id, cleanup_id);
    if (o.n_clients < 1) {
        fprintf(stderr, "petal launch: --n-client-instances is required\n");
        usage(stderr);
        return 2;
    }
    if (check_paths(&o)) return 2;
    char dist[1024], bin[1024];
    if (!o.dry_run && !o.dist_tarball) {
        if (run_make("dist")) return 1;
        snprintf(dist, sizeof dist, "%s/petal-src.tar.gz", build_dir());
        o.dist_tarball = dist;
    }
    if (!strcmp(build, "local") && !o.agent_binary) {
        if (local_matches_ami(o.ami != NULL)) return 2;
        snprintf(bin, sizeof bin, "%s/petal", build_dir());
        if (!o.dry_run && run_make(bin)) return 1;
        o.agent_binary = bin;
    }
    o.make_auth = make_auth;
    pl_str plan = {0};
    int rc = pl_launch_run(&o, &g_stop, &plan, err);
    if (plan.len) fwrite(plan.data, 1, plan.len, stdout);
    pl_str_free(&plan);
    if (rc) {
        fprintf(stderr, "petal launch: %s\n", err);
        return rc == PT_ERR_INVAL || rc == PT_ERR_RANGE ? 2 : (rc == PT_ERR_INTERRUPTED ? 130 : 1);
    }
    if (!o.dry_run) fprintf(stderr, "petal launch: results in %s\n", o.out_dir ? o.out_dir : "results");
    return 0;
}
