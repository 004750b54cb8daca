/* launch_plan.c - 'petal launch': options, validation, what each instance
 * does (manifests, agent command lines, user-data) and the dry-run plan. */
#include "aws_int.h"
#include "launch_int.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_AMI_PARAM "/aws/service/debian/release/12/latest/amd64"
static const char *const default_strategies[] = {"FedAvg", "FedAvgM", "FedAdagrad", "FedAdam"};

const pl_auth_file pl_auth_files[PL_N_AUTH_FILES] = {
    {"ca.pem", PL_KEY_AUTH_CA, NULL, "ca"},
    {"server.pem", PL_KEY_AUTH_PREFIX "server.pem", "server", "cert"},
    {"server.key", PL_KEY_AUTH_PREFIX "server.key", "server", "key"},
    {"client.pem", PL_KEY_AUTH_PREFIX "client.pem", "client", "cert"},
    {"client.key", PL_KEY_AUTH_PREFIX "client.key", "client", "key"},
    {"token", PL_KEY_AUTH_PREFIX "token", NULL, "token"},
};

/* The agents' defaults are petal run's (core/cmd_run.c): the same model,
 * dataset, training settings and per-client example limits, so a launch
 * and a local run compare; centralised evaluation on the server. */
#define DEF_MODEL "fmnist-cnn"
#define DEF_DATASET "fashion-mnist"
#define DEF_EPOCHS "2"
#define DEF_BATCH "32"
#define DEF_LR "0.003"
#define DEF_VAL_SPLIT "0.25"
#define DEF_LIMIT 4000       /* training examples per client */
#define DEF_CLIENT_EVAL 1000 /* validation examples per client */

void pl_launch_opts_default(pl_launch_opts *o)
{
    if (!o->num_rounds) o->num_rounds = 3;
    if (!o->n_strategies) {
        for (int i = 0; i < 4; i++) o->strategies[i] = default_strategies[i];
        o->n_strategies = 4;
    }
    if (!o->backend) o->backend = "openblas";
    if (!o->instance_type) o->instance_type = "r5.large";
    if (!o->model) o->model = DEF_MODEL;
    if (!o->dataset) o->dataset = DEF_DATASET;
    if (!o->out_dir) o->out_dir = "results";
    if (!o->port) o->port = 8080;
    if (!o->max_instances) o->max_instances = PL_LAB_MAX_INSTANCES;
    if (o->timeout_s <= 0) o->timeout_s = 7200;
    if (o->boot_timeout_s <= 0) o->boot_timeout_s = 900;
    if (o->poll_s <= 0) o->poll_s = 10;
    if (o->heartbeat_s <= 0) o->heartbeat_s = 10;
    if (o->creds_wait_s <= 0) o->creds_wait_s = 1800;
    if (!o->ami_parameter) o->ami_parameter = DEFAULT_AMI_PARAM;
}

/* ---- validation ---- */
int pl_is_file(const char *p)
{
    struct stat st;
    return p && !stat(p, &st) && S_ISREG(st.st_mode);
}

const char *pl_local_dataset(const char *dataset)
{
    if (!dataset) return NULL;
    const char *d = strncmp(dataset, "folder:", 7) ? dataset : dataset + 7;
    struct stat st;
    return d[0] && !stat(d, &st) && S_ISDIR(st.st_mode) ? d : NULL;
}

const char *pl_server_type(const pl_launch_opts *o)
{
    return o->server_instance_type ? o->server_instance_type : o->instance_type;
}

/* strategy names may wrap another, e.g. DPFixedClipping(FedAvg) */
static int valid_strategy(const char *s)
{
    if (!s || !s[0] || strlen(s) > 60) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.' || *s == '(' || *s == ')'))
            return 0;
    return 1;
}

int pl_valid_name(const char *s, size_t max)
{
    if (!s || !s[0] || strlen(s) > max) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static int validate_counts(const pl_launch_opts *o, char *err)
{
    if (o->n_clients < 1)
        return pt_seterr(err, PT_ERR_INVAL, "--n-client-instances is required (>= 1)");
    if (o->n_clients + 1 > o->max_instances)
        return pt_seterr(err, PT_ERR_RANGE,
                         "%d client instances + 1 server = %d instances; the AWS Academy Learner "
                         "Lab allows at most %d (set --max-instances for another account)",
                         o->n_clients, o->n_clients + 1, o->max_instances);
    int vcpu = pl_instance_vcpus(o->instance_type) * o->n_clients +
               pl_instance_vcpus(pl_server_type(o));
    if (o->max_instances <= PL_LAB_MAX_INSTANCES && vcpu > PL_LAB_MAX_VCPUS)
        return pt_seterr(err, PT_ERR_RANGE,
                         "%d instances (%s%s%s) = %d vCPUs; the Learner Lab allows %d in total",
                         o->n_clients + 1, o->instance_type, o->server_instance_type ? ", server " : "",
                         o->server_instance_type ? o->server_instance_type : "", vcpu,
                         PL_LAB_MAX_VCPUS);
    if (o->num_rounds < 1 || o->num_rounds > 100000)
        return pt_seterr(err, PT_ERR_RANGE, "--num-rounds must be 1..100000");
    if (o->n_strategies < 1 || o->n_strategies > PL_MAX_STRATEGIES)
        return pt_seterr(err, PT_ERR_RANGE, "1..%d strategies", PL_MAX_STRATEGIES);
    for (int i = 0; i < o->n_strategies; i++) {
        if (!valid_strategy(o->strategies[i]))
            return pt_seterr(err, PT_ERR_INVAL, "bad strategy name '%s'",
                             o->strategies[i] ? o->strategies[i] : "");
        for (int j = 0; j < i; j++)
            if (!strcmp(o->strategies[i], o->strategies[j]))
                return pt_seterr(err, PT_ERR_INVAL, "strategy %s listed twice", o->strategies[i]);
    }
    if (o->port < 1024 || o->port + o->n_strategies - 1 > 65535)
        return pt_seterr(err, PT_ERR_RANGE, "--port must be 1024..%d", 65536 - o->n_strategies);
    if (o->timeout_s < 60) return pt_seterr(err, PT_ERR_RANGE, "--timeout must be >= 60 s");
    if (o->heartbeat_s < 1 || o->heartbeat_s > 3600)
        return pt_seterr(err, PT_ERR_RANGE, "--heartbeat must be 1..3600 s");
    return PT_OK;
}

int pl_launch_validate(const pl_launch_opts *o, char *err)
{
    int rc = validate_counts(o, err);
    if (rc) return rc;
    if (!o->backend || (strcmp(o->backend, "openblas") && strcmp(o->backend, "reference")))
        return pt_seterr(err, PT_ERR_INVAL, "--backend must be openblas or reference (got '%s')",
                         o->backend ? o->backend : "");
    if (!pl_valid_name(o->instance_type, 40))
        return pt_seterr(err, PT_ERR_INVAL, "bad --instance-type '%s'", o->instance_type);
    if (o->server_instance_type && !pl_valid_name(o->server_instance_type, 40))
        return pt_seterr(err, PT_ERR_INVAL, "bad --server-instance-type '%s'",
                         o->server_instance_type);
    if (o->model && !pl_is_file(o->model) && !pl_valid_name(o->model, 200))
        return pt_seterr(err, PT_ERR_INVAL, "--model '%s' is neither a preset name nor a local "
                         "JSON file", o->model);
    if (o->dataset && !strncmp(o->dataset, "folder:", 7) && !pl_local_dataset(o->dataset))
        return pt_seterr(err, PT_ERR_NOTFOUND, "--dataset %s: no such local folder", o->dataset);
    if (o->dataset && !pl_local_dataset(o->dataset)) {
        for (const char *p = o->dataset; *p; p++)
            if (!(pl_valid_name((char[]){*p, 0}, 1) || strchr(":/=,", *p)) || strlen(o->dataset) > 300)
                return pt_seterr(err, PT_ERR_INVAL, "--dataset '%s': character '%c' not allowed",
                                 o->dataset, *p);
    }
    if (o->agent_binary && !pl_is_file(o->agent_binary))
        return pt_seterr(err, PT_ERR_NOTFOUND, "--agent-binary %s: no such file", o->agent_binary);
    if (o->key_name && !pl_valid_name(o->key_name, 255))
        return pt_seterr(err, PT_ERR_INVAL, "bad --key-name");
    if (o->instance_profile && !pl_valid_name(o->instance_profile, 128))
        return pt_seterr(err, PT_ERR_INVAL, "bad --instance-profile");
    if (o->ami && (strncmp(o->ami, "ami-", 4) || !pl_valid_name(o->ami, 40)))
        return pt_seterr(err, PT_ERR_INVAL, "--ami must look like ami-0123...");
    if (o->subnet_id && (strncmp(o->subnet_id, "subnet-", 7) || !pl_valid_name(o->subnet_id, 40)))
        return pt_seterr(err, PT_ERR_INVAL, "--subnet-id must look like subnet-0123...");
    if (o->ssh_cidr) {
        unsigned a, b, c, d, m;
        char tail;
        if (sscanf(o->ssh_cidr, "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &m, &tail) != 5 || a > 255 ||
            b > 255 || c > 255 || d > 255 || m > 32)
            return pt_seterr(err, PT_ERR_INVAL, "--ssh-cidr must be an IPv4 CIDR like 203.0.113.5/32");
        if (m == 0) PT_WARN("--ssh-cidr %s opens SSH to the whole internet", o->ssh_cidr);
    }
    if (o->run_id && !pl_valid_name(o->run_id, 40))
        return pt_seterr(err, PT_ERR_INVAL, "bad run id");
    const char *extra[2] = {o->server_args, o->client_args};
    for (int i = 0; i < 2; i++)
        if (extra[i])
            for (const char *p = extra[i]; *p; p++)
                if (!(pl_valid_name((char[]){*p, 0}, 1) || *p == ' ' || *p == '/' || *p == '=' ||
                      *p == ':' || *p == ',' || *p == '+'))
                    return pt_seterr(err, PT_ERR_INVAL, "agent arguments: character '%c' not "
                                                        "allowed", *p);
    return PT_OK;
}

/* ---- keys ---- */
void pl_result_key(const run *r, int k, const char *file, char *out, size_t cap)
{
    snprintf(out, cap, "results/%s/%s/%d/%s", r->o->backend, r->o->strategies[k], r->o->n_clients,
             file);
}

void pl_events_key(const run *r, int k, const char *agent, char *out, size_t cap)
{
    snprintf(out, cap, "events/%s/%s/%d/%s.jsonl", r->o->backend, r->o->strategies[k],
             r->o->n_clients, agent);
}

/* ---- manifests ---- */
static int role_mode(const run *r)
{
    return r->o->instance_profile != NULL;
}

/* A GET is always presigned; a PUT is presigned, or the key the instance
 * signs for with its role. */
static int presign_or_key(run *r, const char *method, const char *key, int expires, cJSON *obj,
                          const char *field, char *err)
{
    if (!strcmp(method, "PUT") && role_mode(r)) {
        cJSON_AddStringToObject(obj, field, key);
        return PT_OK;
    }
    pl_str u = {0};
    int rc = pl_s3_presign(r->aws, method, r->bucket, key, expires, &u, err);
    if (!rc) cJSON_AddStringToObject(obj, field, pl_str_c(&u));
    pl_str_free(&u);
    return rc;
}

static void split_args(cJSON *argv, const char *extra)
{
    if (!extra) return;
    const char *p = extra;
    while (*p) {
        while (*p == ' ') p++;
        size_t l = strcspn(p, " ");
        if (l) {
            char tok[256];
            snprintf(tok, sizeof tok, "%.*s", (int)(l < 255 ? l : 255), p);
            cJSON_AddItemToArray(argv, cJSON_CreateString(tok));
        }
        p += l;
    }
}

static void add_arg(cJSON *argv, const char *a)
{
    cJSON_AddItemToArray(argv, cJSON_CreateString(a));
}

static void add_arg2(cJSON *argv, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_arg2(cJSON *argv, const char *name, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    add_arg(argv, name);
    add_arg(argv, buf);
}

static void auth_args(cJSON *a, int server)
{
    /* files fetched by the agent into {auth}/ from the manifest's URLs */
    static const char *const srv[] = {"--tls-cert", "{auth}/cert.pem", "--tls-key",
                                      "{auth}/key.pem", "--tls-client-ca", "{auth}/ca.pem",
                                      "--auth-token-file", "{auth}/token"};
    static const char *const cli[] = {"--tls-ca", "{auth}/ca.pem", "--server-name",
                                      PL_AUTH_SERVER_NAME, "--tls-cert", "{auth}/cert.pem",
                                      "--tls-key", "{auth}/key.pem", "--auth-token-file",
                                      "{auth}/token"};
    if (server)
        for (size_t i = 0; i < sizeof srv / sizeof srv[0]; i++) add_arg(a, srv[i]);
    else
        for (size_t i = 0; i < sizeof cli / sizeof cli[0]; i++) add_arg(a, cli[i]);
}

/* argv of the agent for strategy k; index < 0: server. Later arguments win,
 * so --server-args / --client-args override these defaults. */
static cJSON *agent_argv(const run *r, int k, int index)
{
    const pl_launch_opts *o = r->o;
    cJSON *a = cJSON_CreateArray();
    int n = o->n_clients;
    if (index < 0) {
        add_arg(a, "server");
        add_arg2(a, "--address", "0.0.0.0:%d", o->port + k);
        add_arg2(a, "--rounds", "%d", o->num_rounds);
        add_arg2(a, "--strategy", "%s", o->strategies[k]);
        /* every client takes part in every round; clients start after the
         * server, so it waits long for them */
        const char *nopt[] = {"--min-available-clients", "--min-fit-clients",
                              "--min-evaluate-clients", "--expected-clients"};
        for (int i = 0; i < 4; i++) add_arg2(a, nopt[i], "%d", n);
        add_arg2(a, "--wait-clients", "%.0f", o->timeout_s);
        add_arg2(a, "--epochs", "%s", DEF_EPOCHS);
        add_arg2(a, "--batch-size", "%s", DEF_BATCH);
        add_arg2(a, "--lr", "%s", DEF_LR);
    } else {
        add_arg(a, "client");
        add_arg2(a, "--server", "{server_ip}:%d", o->port + k);
        add_arg2(a, "--partition", "%d/%d", index, n);
        add_arg2(a, "--partitioner", "iid");
        add_arg2(a, "--id", "%d", index);
        add_arg2(a, "--limit", "%d", DEF_LIMIT * n);
        add_arg2(a, "--eval-limit", "%d", DEF_CLIENT_EVAL * n);
        /* the next strategy's server starts when the previous one ends */
        add_arg2(a, "--connect-timeout", "%.0f", o->timeout_s);
    }
    add_arg2(a, "--backend", "%s", o->backend);
    add_arg2(a, "--threads", "%d",
             pl_instance_vcpus(index < 0 ? pl_server_type(o) : o->instance_type));
    add_arg2(a, "--model", "%s", r->have_model ? "{model}" : o->model);
    add_arg2(a, "--dataset", "%s", r->data_dir ? "folder:{data}" : o->dataset);
    add_arg2(a, "--val-split", "%s", DEF_VAL_SPLIT);
    add_arg2(a, "--out", "{out}/%s", o->strategies[k]);
    if (r->auth) auth_args(a, index < 0);
    split_args(a, index < 0 ? o->server_args : o->client_args);
    return a;
}

int pl_presign_expiry(const run *r)
{
    double s = r->o->timeout_s + 2 * r->o->boot_timeout_s + 3600;
    return s > 604800 ? 604800 : (int)s;
}

static int manifest_artifacts(run *r, cJSON *m, const char *role, int exp, char *err)
{
    cJSON *art = cJSON_AddObjectToObject(m, "artifacts");
    int rc = presign_or_key(r, "GET", PL_KEY_ARTIFACT_SRC, exp, art, "source", err);
    if (!rc && r->data_dir)
        rc = presign_or_key(r, "GET", PL_KEY_ARTIFACT_DATA, exp, art, "dataset", err);
    if (!rc && r->have_model)
        rc = presign_or_key(r, "GET", PL_KEY_ARTIFACT_MODEL, exp, art, "model", err);
    /* the binary: the server builds and shares it, or the launcher uploaded one */
    int builder = !r->o->agent_binary && !strcmp(role, "server");
    cJSON_AddStringToObject(m, "build", r->o->agent_binary ? "none" : "server");
    cJSON *bin = cJSON_AddObjectToObject(m, "binary");
    if (!rc && builder) rc = presign_or_key(r, "PUT", PL_KEY_BIN, exp, bin, "put", err);
    if (!rc && builder) rc = presign_or_key(r, "PUT", PL_KEY_BIN_SHA, exp, bin, "sha_put", err);
    if (!rc && !builder) rc = presign_or_key(r, "GET", PL_KEY_BIN, exp, bin, "get", err);
    if (!rc && !builder) rc = presign_or_key(r, "GET", PL_KEY_BIN_SHA, exp, bin, "sha_get", err);
    if (!rc && r->auth) {
        /* presigned GETs for this role's certificate, key, the CA and the
         * token: the material itself never appears in a manifest */
        cJSON *au = cJSON_AddObjectToObject(m, "auth");
        cJSON_AddStringToObject(au, "server_name", PL_AUTH_SERVER_NAME);
        for (size_t i = 0; i < PL_N_AUTH_FILES && !rc; i++) {
            const pl_auth_file *f = &pl_auth_files[i];
            if (f->role && strcmp(f->role, role)) continue;
            rc = presign_or_key(r, "GET", f->key, exp, au, f->field, err);
        }
    }
    return rc;
}

static int manifest_agents(run *r, cJSON *m, const char *role, int exp, char *err)
{
    const pl_launch_opts *o = r->o;
    int server = !strcmp(role, "server"), rc = PT_OK;
    cJSON *agents = cJSON_AddArrayToObject(m, "agents");
    for (int i = 0; i < (server ? 1 : o->n_clients) && !rc; i++) {
        char agent[32], key[1024], file[64];
        if (server)
            snprintf(agent, sizeof agent, "server");
        else
            snprintf(agent, sizeof agent, "client_%d", i);
        cJSON *ag = cJSON_CreateObject();
        cJSON_AddItemToArray(agents, ag);
        cJSON_AddNumberToObject(ag, "index", i);
        snprintf(key, sizeof key, "agents/%s.log", agent);
        rc = presign_or_key(r, "PUT", key, exp, ag, "agent_log", err);
        snprintf(key, sizeof key, "agents/%s.status", agent);
        if (!rc) rc = presign_or_key(r, "PUT", key, exp, ag, "status", err);
        cJSON *runs = cJSON_AddArrayToObject(ag, "runs");
        for (int k = 0; k < o->n_strategies && !rc; k++) {
            cJSON *ru = cJSON_CreateObject();
            cJSON_AddItemToArray(runs, ru);
            cJSON_AddStringToObject(ru, "strategy", o->strategies[k]);
            cJSON_AddItemToObject(ru, "argv", agent_argv(r, k, server ? -1 : i));
            snprintf(file, sizeof file, "%s_log.log", agent);
            pl_result_key(r, k, file, key, sizeof key);
            rc = presign_or_key(r, "PUT", key, exp, ru, "log", err);
            pl_events_key(r, k, agent, key, sizeof key);
            if (!rc) rc = presign_or_key(r, "PUT", key, exp, ru, "events", err);
        }
    }
    return rc;
}

static int build_manifest(run *r, const char *role, const char *server_ip, pl_str *out,
                          char *err)
{
    int exp = pl_presign_expiry(r);
    cJSON *m = cJSON_CreateObject();
    if (!m) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(m, "version", 2);
    cJSON_AddStringToObject(m, "run_id", r->run_id);
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "server_ip", server_ip ? server_ip : "");
    cJSON_AddNumberToObject(m, "rounds", r->o->num_rounds);
    int rc = manifest_artifacts(r, m, role, exp, err);
    cJSON *up = cJSON_AddObjectToObject(m, "upload");
    cJSON_AddStringToObject(up, "mode", role_mode(r) ? "role" : "presigned");
    if (!rc) rc = manifest_agents(r, m, role, exp, err);
    if (!rc) {
        char *txt = cJSON_Print(m);
        if (!txt || pl_str_adds(out, txt)) rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        free(txt);
    }
    cJSON_Delete(m);
    return rc;
}

int pl_prepare_role(run *r, const char *role, const char *server_ip, pl_str *manifest,
                    pl_str *ud, int upload, char *err)
{
    int rc = build_manifest(r, role, server_ip, manifest, err);
    if (rc) return rc;
    char key[128];
    snprintf(key, sizeof key, "manifest/%s.json", role);
    if (upload) {
        rc = pl_s3_put(r->aws, r->bucket, key, manifest->data, manifest->len, "application/json",
                       NULL, err);
        if (rc) return rc;
    }
    pl_str url = {0};
    rc = pl_s3_presign(r->aws, "GET", r->bucket, key, pl_presign_expiry(r), &url, err);
    const pl_launch_opts *o = r->o;
    pl_user_data u = {.run_id = r->run_id,
                      .role = role,
                      .manifest_url = pl_str_c(&url),
                      .upload_mode = role_mode(r) ? "role" : "presigned",
                      .bucket = r->bucket,
                      .region = r->region,
                      .s3_endpoint = pl_aws_endpoint(r->aws, PL_S3),
                      .deadline = r->deadline,
                      .keep = o->keep ? "always" : o->keep_on_failure ? "failure" : "no",
                      .heartbeat_s = (int)o->heartbeat_s};
    if (!rc) rc = pl_render_user_data(&u, ud, err);
    pl_str_free(&url);
    return rc;
}

/* ---- estimates ---- */
/* Launch -> round 1 on real AWS, seconds (launcher/README.md, "How long until
 * round 1", tells how each was made). Measured on a minimal Debian 12
 * (debootstrap) on a 2-core machine: deps.sh build installs 108 packages
 * (162 MB) in 57 s, deps.sh runtime 42 packages (80 MB) in 27 s, both
 * downloading from deb.debian.org; make -j2 build/petal takes 21 s (20.5 CPU
 * seconds); petal run's round 1 with the defaults ends 3.8 s after its start.
 * Not measured here: the boot (EC2's pending -> running plus cloud-init up to
 * the user-data, under a minute by AWS's documentation) and the API calls. */
#define EST_PROVISION 15   /* bucket, uploads, group, AMI lookup, 2 RunInstances */
#define EST_BOOT 45        /* RunInstances -> the user-data's first line */
#define EST_SETUP 5        /* IMDS, manifest, source, certificates */
#define EST_PKG_BUILD 60   /* deps.sh build on a fresh image */
#define EST_PKG_RUNTIME 30 /* deps.sh runtime */
#define EST_PKG_BAKED 3    /* a baked --ami: dpkg-query finds everything */
#define EST_BUILD 30       /* make -j2 build/petal on 2 vCPUs (one core's hyperthreads) */
#define EST_SHARE 10       /* upload, the clients' 3 s poll and download, agents start */
#define EST_ROUND1 10      /* default model and limits, over TLS between instances */

static void fmt_dur(char *buf, size_t cap, double s)
{
    if (s < 0) s = 0;
    if (s < 60)
        snprintf(buf, cap, "%.0f s", s);
    else
        snprintf(buf, cap, "%d min %02d s", (int)(s / 60), (int)s % 60);
}

void pl_plan_estimates(const run *r, pl_str *out)
{
    const pl_launch_opts *o = r->o;
    double ps = pl_instance_price(pl_server_type(o)), pc = pl_instance_price(o->instance_type);
    if (ps > 0 && pc > 0) {
        double hour = ps + o->n_clients * pc;
        double cap_h = (o->timeout_s + 2 * o->boot_timeout_s + 1800) / 3600.0;
        pl_str_addf(out,
                    "  cost             $%.3f per hour for the %d instances (%s $%.4f/h%s%s%s; "
                    "us-east-1 on-demand Linux, 2025 prices);\n"
                    "                   at most $%.2f if the run lasts until its deadline "
                    "(%.1f h: --timeout + boot + 30 min)\n",
                    hour, o->n_clients + 1, o->instance_type, pc,
                    o->server_instance_type ? ", server " : "",
                    o->server_instance_type ? o->server_instance_type : "",
                    o->server_instance_type ? "" : " each", hour * cap_h, cap_h);
    } else {
        pl_str_addf(out, "  cost             unknown for %s (not in the launcher's price table)\n",
                    ps > 0 ? o->instance_type : pl_server_type(o));
    }
    int build = !o->agent_binary;
    double pkg = o->ami ? EST_PKG_BAKED : build ? EST_PKG_BUILD : EST_PKG_RUNTIME;
    double total = EST_PROVISION + EST_BOOT + EST_SETUP + pkg + (build ? EST_BUILD : 0) +
                   EST_SHARE + EST_ROUND1;
    char b[32];
    fmt_dur(b, sizeof b, total);
    pl_str_addf(out, "  timeline         launch -> round 1 in about %s on AWS%s:\n", b,
                o->ami ? " (with --ami: packages assumed baked in)" : "");
    struct {
        const char *what;
        double s;
        int on;
    } rows[] = {
        {"provision: bucket, uploads, group, AMI, RunInstances", EST_PROVISION, 1},
        {"instance boot to the user-data's first line", EST_BOOT, 1},
        {"metadata, manifest, source, certificates", EST_SETUP, 1},
        {build ? "server packages: deps.sh build" : "packages: deps.sh runtime", pkg, 1},
        {"server build: make -j2 build/petal", EST_BUILD, build},
        {build ? "binary shared through S3, clients start (their runtime packages meanwhile)"
               : "binary from S3, agents start",
         EST_SHARE, 1},
        {"round 1 (default model and limits)", EST_ROUND1, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (!rows[i].on) continue;
        fmt_dur(b, sizeof b, rows[i].s);
        pl_str_addf(out, "                     %-74s %8s\n", rows[i].what, b);
    }
}

/* ---- the dry-run plan ---- */
int pl_launch_plan(run *r, pl_str *out, char *err)
{
    const pl_launch_opts *o = r->o;
    r->data_dir = pl_local_dataset(o->dataset);
    r->have_model = pl_is_file(o->model);
    pl_str m1 = {0}, u1 = {0}, m2 = {0}, u2 = {0};
    pl_str_addf(out,
                "petal launch plan (dry run: nothing is sent to AWS; URLs below are placeholders "
                "signed with a dummy key)\n"
                "  run id           %s\n  region           %s\n  bucket           %s\n"
                "  security group   petal-%s: tcp %d-%d from members of the group%s%s\n"
                "  network          %s\n  AMI              %s\n"
                "  server           1 x %s (%s)\n"
                "  clients          %d x %s (one RunInstances right after the server's, with its "
                "private IP; partition = launch index; runtime packages only)\n"
                "  strategies       ",
                r->run_id, r->region, r->bucket, r->run_id, o->port,
                o->port + o->n_strategies - 1, o->ssh_cidr ? ", ssh from " : "",
                o->ssh_cidr ? o->ssh_cidr : "", o->subnet_id ? o->subnet_id : "the default VPC",
                o->ami ? o->ami : o->ami_parameter, pl_server_type(o),
                o->agent_binary ? "runs the uploaded --agent-binary"
                                : "builds petal once: deps.sh build + make build/petal, shares "
                                  "the binary through S3",
                o->n_clients, o->instance_type);
    for (int k = 0; k < o->n_strategies; k++)
        pl_str_addf(out, "%s%s (port %d)", k ? ", " : "", o->strategies[k], o->port + k);
    pl_str_addf(out,
                "\n  rounds           %d\n  backend          %s\n  model            %s\n"
                "  dataset          %s%s\n  uploads          %s\n  results          %s/%s/"
                "<strategy>/%d/\n  instances        %d of at most %d (Learner Lab limit; "
                "instances already running count too)\n"
                "  after the agents %s\n  deadline         the instances terminate themselves "
                "%.1f h after launch, at every boot (--timeout + boot + 30 min)\n"
                "  authentication   %s\n",
                o->num_rounds, o->backend, o->model, o->dataset,
                r->data_dir ? " (local folder: packed once, uploaded, used by every instance)"
                            : "",
                role_mode(r) ? "signed by the instances' role (IMDSv2), from the first stage on"
                             : "presigned PUT URLs in the manifest",
                o->out_dir, o->backend, o->n_clients, o->n_clients + 1, o->max_instances,
                o->keep              ? "instances stay up (--keep)"
                : o->keep_on_failure ? "instances shut down (terminate), failed ones stay up "
                                       "(--keep-on-failure)"
                                     : "instances shut down (terminate on shutdown)",
                (double)(r->deadline - (long long)r->t_launch) / 3600.0,
                r->auth ? "TLS with a per-run CA; server certificate for '" PL_AUTH_SERVER_NAME
                          "', one client certificate (mutual TLS) and a random token, made at "
                          "launch and fetched by the agents through presigned URLs (auth/ in "
                          "the bucket)"
                        : "none (--no-auth): cleartext h2c, any member of the group may join");
    pl_plan_estimates(r, out);
    {
        /* tell where the credentials would come from; they are not used */
        pl_creds c;
        char e2[PT_ERRLEN];
        pl_creds_opts co = {.profile = o->profile, .env_file = o->env_file};
        if (pl_creds_load(&c, &co, e2))
            pl_str_addf(out, "\ncredentials: NOT FOUND (%s)\n\n", e2);
        else
            pl_str_addf(out, "\ncredentials: found in %s (not used by the dry run)%s\n\n", c.source,
                        c.token[0] && !o->instance_profile
                            ? "; session credentials: presigned URLs expire with them, "
                              "--instance-profile avoids that for long runs"
                            : "");
        pl_creds_wipe(&c);
    }
    int rc = pl_prepare_role(r, "server", NULL, &m1, &u1, 0, err);
    if (!rc) rc = pl_prepare_role(r, "client", "SERVER_PRIVATE_IP", &m2, &u2, 0, err);
    if (!rc) {
        pl_str_addf(out, "---- server manifest (manifest/server.json) ----\n%s\n", pl_str_c(&m1));
        pl_str_addf(out, "---- client manifest (manifest/client.json) ----\n%s\n", pl_str_c(&m2));
        pl_str_addf(out, "---- server user-data (%zu bytes) ----\n%s", u1.len, pl_str_c(&u1));
        pl_str_addf(out, "---- client user-data (%zu bytes) ----\n%s", u2.len, pl_str_c(&u2));
    }
    pl_str_free(&m1), pl_str_free(&u1), pl_str_free(&m2), pl_str_free(&u2);
    return rc;
}
