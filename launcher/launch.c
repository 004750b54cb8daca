/* launch.c - 'petal launch': the whole experiment on EC2 + S3, with a state
 * file, clean-up on failure or interrupt, collection and verification. */
#include "aws_int.h"
#include "launch_int.h"
#include "pnet.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEFAULT_AMI_PARAM "/aws/service/debian/release/12/latest/amd64"
#define DEBIAN_OWNER "136693071363"
#define DEBIAN_PATTERN "debian-12-amd64-*"
#define MAX_OBJECT ((size_t)512 << 20)

static const char *const default_strategies[] = {"FedAvg", "FedAvgM", "FedAdagrad", "FedAdam"};

void pl_launch_opts_default(pl_launch_opts *o)
{
    if (!o->num_rounds) o->num_rounds = 3;
    if (!o->n_strategies) {
        for (int i = 0; i < 4; i++) o->strategies[i] = default_strategies[i];
        o->n_strategies = 4;
    }
    if (!o->backend) o->backend = "openblas";
    if (!o->instance_type) o->instance_type = "r5.large";
    if (!o->out_dir) o->out_dir = "results";
    if (!o->port) o->port = 8080;
    if (!o->max_instances) o->max_instances = PL_LAB_MAX_INSTANCES;
    if (o->timeout_s <= 0) o->timeout_s = 7200;
    if (o->boot_timeout_s <= 0) o->boot_timeout_s = 900;
    if (o->poll_s <= 0) o->poll_s = 10;
    if (!o->ami_parameter) o->ami_parameter = DEFAULT_AMI_PARAM;
}

typedef struct run {
    const pl_launch_opts *o;
    volatile int *stop;
    pl_aws *aws;
    pl_creds creds;
    char region[32];
    char run_id[48], bucket[64], sg[32], ami[64];
    char state_path[1200];
    char (*ids)[32];
    size_t n_ids;
    pl_instance server;
    pl_instance *clients;
    size_t n_clients;
    int bucket_created;
    int step;
    const char *status;
    int tty_line; /* a \r progress line is open */
    int have_model; /* --model is a local JSON file: uploaded as an artifact */
    int auth;       /* per-run TLS + mutual TLS + token (unless --no-auth) */
    char auth_dir[1300]; /* local 0700 copy of the run's certificates and token */
} run;

/* The run's authentication material: local file name (in auth_dir), S3 key,
 * and which role fetches it under which name (in the agent's auth/ folder). */
typedef struct auth_file {
    const char *local, *key, *role, *field;
} auth_file;

static const auth_file auth_files[] = {
    {"ca.pem", PL_KEY_AUTH_CA, NULL, "ca"},
    {"server.pem", PL_KEY_AUTH_PREFIX "server.pem", "server", "cert"},
    {"server.key", PL_KEY_AUTH_PREFIX "server.key", "server", "key"},
    {"client.pem", PL_KEY_AUTH_PREFIX "client.pem", "client", "cert"},
    {"client.key", PL_KEY_AUTH_PREFIX "client.key", "client", "key"},
    {"token", PL_KEY_AUTH_PREFIX "token", NULL, "token"},
};
#define N_AUTH_FILES (sizeof auth_files / sizeof auth_files[0])

/* ---- progress and logging ---- */
static void end_line(run *r)
{
    if (r->tty_line) {
        fputc('\n', stderr);
        r->tty_line = 0;
    }
}

__attribute__((format(printf, 2, 3))) static void step(run *r, const char *fmt, ...)
{
    r->step++;
    if (!r->o->progress) return;
    end_line(r);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%d/8] ", r->step);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

__attribute__((format(printf, 2, 3))) static void status_line(run *r, const char *fmt, ...)
{
    if (!r->o->progress) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("\r      ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\033[K", stderr);
    va_end(ap);
    r->tty_line = 1;
}

/* ---- validation ---- */
static int is_file(const char *p)
{
    struct stat st;
    return p && !stat(p, &st) && S_ISREG(st.st_mode);
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

static int valid_name(const char *s, size_t max)
{
    if (!s || !s[0] || strlen(s) > max) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static int vcpus_of(const char *type)
{
    const char *dot = strchr(type, '.');
    const char *sz = dot ? dot + 1 : type;
    if (!strcmp(sz, "nano") || !strcmp(sz, "micro") || !strcmp(sz, "small") ||
        !strcmp(sz, "medium") || !strcmp(sz, "large"))
        return 2;
    if (!strcmp(sz, "xlarge")) return 4;
    int k = atoi(sz);
    if (k > 0 && strstr(sz, "xlarge")) return 4 * k;
    return 2;
}

static int validate(const pl_launch_opts *o, char *err)
{
    if (o->n_clients < 1)
        return pt_seterr(err, PT_ERR_INVAL, "--n-client-instances is required (>= 1)");
    if (o->n_clients + 1 > o->max_instances)
        return pt_seterr(err, PT_ERR_RANGE,
                         "%d client instances + 1 server = %d instances; the AWS Academy Learner "
                         "Lab allows at most %d (set --max-instances for another account)",
                         o->n_clients, o->n_clients + 1, o->max_instances);
    int vcpu = vcpus_of(o->instance_type) * (o->n_clients + 1);
    if (o->max_instances <= PL_LAB_MAX_INSTANCES && vcpu > 32)
        return pt_seterr(err, PT_ERR_RANGE,
                         "%d x %s = %d vCPUs; the Learner Lab allows 32 in total", o->n_clients + 1,
                         o->instance_type, vcpu);
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
    if (!o->backend || (strcmp(o->backend, "openblas") && strcmp(o->backend, "reference")))
        return pt_seterr(err, PT_ERR_INVAL, "--backend must be openblas or reference (got '%s')",
                         o->backend ? o->backend : "");
    if (!valid_name(o->instance_type, 40))
        return pt_seterr(err, PT_ERR_INVAL, "bad --instance-type '%s'", o->instance_type);
    if (o->port < 1024 || o->port + o->n_strategies - 1 > 65535)
        return pt_seterr(err, PT_ERR_RANGE, "--port must be 1024..%d", 65536 - o->n_strategies);
    if (o->model && !is_file(o->model) && !valid_name(o->model, 200))
        return pt_seterr(err, PT_ERR_INVAL, "--model '%s' is neither a preset name nor a local "
                         "JSON file", o->model);
    if (o->key_name && !valid_name(o->key_name, 255))
        return pt_seterr(err, PT_ERR_INVAL, "bad --key-name");
    if (o->instance_profile && !valid_name(o->instance_profile, 128))
        return pt_seterr(err, PT_ERR_INVAL, "bad --instance-profile");
    if (o->ami && strncmp(o->ami, "ami-", 4))
        return pt_seterr(err, PT_ERR_INVAL, "--ami must look like ami-0123...");
    if (o->ssh_cidr) {
        unsigned a, b, c, d, m;
        char tail;
        if (sscanf(o->ssh_cidr, "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &m, &tail) != 5 || a > 255 ||
            b > 255 || c > 255 || d > 255 || m > 32)
            return pt_seterr(err, PT_ERR_INVAL, "--ssh-cidr must be an IPv4 CIDR like 203.0.113.5/32");
        if (m == 0) PT_WARN("--ssh-cidr %s opens SSH to the whole internet", o->ssh_cidr);
    }
    if (o->timeout_s < 60) return pt_seterr(err, PT_ERR_RANGE, "--timeout must be >= 60 s");
    if (o->run_id && !valid_name(o->run_id, 40))
        return pt_seterr(err, PT_ERR_INVAL, "bad run id");
    const char *extra[2] = {o->server_args, o->client_args};
    for (int i = 0; i < 2; i++)
        if (extra[i])
            for (const char *p = extra[i]; *p; p++)
                if (!(valid_name((char[]){*p, 0}, 1) || *p == ' ' || *p == '/' || *p == '=' ||
                      *p == ':' || *p == ',' || *p == '+'))
                    return pt_seterr(err, PT_ERR_INVAL, "agent arguments: character '%c' not "
                                                        "allowed", *p);
    return PT_OK;
}

/* ---- keys ---- */
static void result_key(const run *r, int k, const char *file, char *out, size_t cap)
{
    snprintf(out, cap, "results/%s/%s/%d/%s", r->o->backend, r->o->strategies[k], r->o->n_clients,
             file);
}

static void events_key(const run *r, int k, const char *agent, char *out, size_t cap)
{
    snprintf(out, cap, "events/%s/%s/%d/%s.jsonl", r->o->backend, r->o->strategies[k],
             r->o->n_clients, agent);
}

/* ---- state file ---- */
static int mkdirs(const char *path)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
    return 0;
}

static void save_state(run *r)
{
    if (!r->state_path[0]) return;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "run_id", r->run_id);
    cJSON_AddStringToObject(j, "region", r->region);
    cJSON_AddStringToObject(j, "status", r->status ? r->status : "running");
    cJSON_AddStringToObject(j, "bucket", r->bucket_created ? r->bucket : "");
    cJSON_AddStringToObject(j, "security_group", r->sg);
    cJSON *ids = cJSON_AddArrayToObject(j, "instances");
    for (size_t i = 0; i < r->n_ids; i++) cJSON_AddItemToArray(ids, cJSON_CreateString(r->ids[i]));
    cJSON *eps = cJSON_AddObjectToObject(j, "endpoints");
    static const char *const sv[] = {"ec2", "s3", "ssm", "sts"};
    for (int s = 0; s < PL_NSERVICES; s++)
        cJSON_AddStringToObject(eps, sv[s], pl_aws_endpoint(r->aws, (pl_service)s));
    cJSON_AddNumberToObject(j, "updated", pt_wall());
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return;
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->state_path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(txt, f) < 0 || fclose(f) || rename(tmp, r->state_path)) {
        PT_WARN("cannot write the state file %s: %s", r->state_path, strerror(errno));
        if (f) remove(tmp);
    }
    free(txt);
}

/* <state dir>/<run id>.auth, next to the state file */
static void auth_dir_of(run *r)
{
    snprintf(r->auth_dir, sizeof r->auth_dir, "%.*s.auth",
             (int)(strlen(r->state_path) > 5 ? strlen(r->state_path) - 5 : 0), r->state_path);
}

/* Remove the local copy of the run's certificates, keys and token. */
static void remove_auth_dir(run *r)
{
    if (!r->auth_dir[0]) return;
    DIR *d = opendir(r->auth_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1600];
        snprintf(p, sizeof p, "%s/%s", r->auth_dir, e->d_name);
        if (unlink(p)) PT_WARN("cannot remove %s: %s", p, strerror(errno));
    }
    closedir(d);
    if (rmdir(r->auth_dir)) PT_WARN("cannot remove %s: %s", r->auth_dir, strerror(errno));
}

static int add_ids(run *r, const pl_instance *v, size_t n)
{
    char(*ids)[32] = realloc(r->ids, (r->n_ids + n) * sizeof *ids);
    if (!ids) return PT_ERR_NOMEM;
    r->ids = ids;
    for (size_t i = 0; i < n; i++) snprintf(r->ids[r->n_ids++], 32, "%s", v[i].id);
    save_state(r);
    return PT_OK;
}

/* ---- helpers ---- */
static int read_file(const char *path, pl_str *out, size_t max, char *err)
{
    char e2[PT_ERRLEN];
    FILE *f = pt_fopen_read(path, e2);
    if (!f) return pt_seterr(err, PT_ERR_IO, "cannot open %s", e2);
    char buf[65536];
    size_t n;
    int rc = PT_OK;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (out->len + n > max) {
            rc = pt_seterr(err, PT_ERR_RANGE, "%s is larger than %zu bytes", path, max);
            break;
        }
        if (pl_str_add(out, buf, n)) {
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (!rc && ferror(f)) rc = pt_seterr(err, PT_ERR_IO, "cannot read %s", path);
    fclose(f);
    return rc;
}

static int write_file(const char *path, const void *data, size_t n, char *err)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) {
        *sl = 0;
        if (dir[0] && mkdirs(dir))
            return pt_seterr(err, PT_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    }
    char e2[PT_ERRLEN];
    FILE *f = pt_fopen_write(path, e2);
    if (!f) return pt_seterr(err, PT_ERR_IO, "cannot write %s", e2);
    int bad = n && fwrite(data, 1, n, f) != n;
    if (fclose(f) || bad) return pt_seterr(err, PT_ERR_IO, "cannot write %s", path);
    return PT_OK;
}

/* tar -czf out -C dir . (no shell) */
static int tar_dir(const char *dir, const char *out, char *err)
{
    char *argv[] = {"tar", "-czf", (char *)out, "-C", (char *)dir, ".", NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "tar", NULL, NULL, argv, environ))
        return pt_seterr(err, PT_ERR_IO, "cannot run tar: %s", strerror(errno));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return pt_seterr(err, PT_ERR_IO, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        return pt_seterr(err, PT_ERR_IO, "tar of %s failed", dir);
    return PT_OK;
}

static void dump_console(run *r, const char *id, const char *label)
{
    pl_str con = {0};
    char e[PT_ERRLEN];
    if (pl_ec2_console_output(r->aws, id, &con, e)) {
        PT_ERROR("%s (%s): no console output (%s)", label, id, e);
        pl_str_free(&con);
        return;
    }
    /* last 25 lines */
    const char *s = pl_str_c(&con);
    size_t n = con.len, lines = 0, start = n;
    while (start > 0) {
        if (s[start - 1] == '\n' && ++lines > 25) break;
        start--;
    }
    end_line(r);
    PT_ERROR("%s (%s): last console output lines:", label, id);
    const char *p = s + start;
    while (*p) {
        size_t l = strcspn(p, "\n");
        if (l) PT_ERROR("  | %.*s", (int)l, p);
        p += l + (p[l] ? 1 : 0);
    }
    if (!n) PT_ERROR("  | (empty)");
    pl_str_free(&con);
}

/* ---- manifests ---- */
static int presign_or_key(run *r, const char *method, const char *key, int expires, cJSON *obj,
                          const char *field, char *err)
{
    if (!strcmp(method, "PUT") && r->o->instance_profile) {
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

/* argv of the agent for strategy k; index < 0: server */
static cJSON *agent_argv(const run *r, int k, int index, int have_dataset_archive)
{
    const pl_launch_opts *o = r->o;
    cJSON *a = cJSON_CreateArray();
    char buf[512];
    if (index < 0) {
        add_arg(a, "server");
        add_arg(a, "--address");
        snprintf(buf, sizeof buf, "0.0.0.0:%d", o->port + k);
        add_arg(a, buf);
        add_arg(a, "--rounds");
        snprintf(buf, sizeof buf, "%d", o->num_rounds);
        add_arg(a, buf);
        add_arg(a, "--strategy");
        add_arg(a, o->strategies[k]);
        /* every client takes part in every round; clients boot and build
         * after the server, so it waits long for them */
        snprintf(buf, sizeof buf, "%d", o->n_clients);
        const char *nopt[] = {"--min-available-clients", "--min-fit-clients",
                              "--min-evaluate-clients", "--expected-clients"};
        for (int i = 0; i < 4; i++) {
            add_arg(a, nopt[i]);
            add_arg(a, buf);
        }
        add_arg(a, "--wait-clients");
        snprintf(buf, sizeof buf, "%.0f", o->timeout_s);
        add_arg(a, buf);
    } else {
        add_arg(a, "client");
        add_arg(a, "--server");
        snprintf(buf, sizeof buf, "{server_ip}:%d", o->port + k);
        add_arg(a, buf);
        add_arg(a, "--partition");
        snprintf(buf, sizeof buf, "%d/%d", index, o->n_clients);
        add_arg(a, buf);
        /* the next strategy's server starts when the previous one ends */
        add_arg(a, "--connect-timeout");
        snprintf(buf, sizeof buf, "%.0f", o->timeout_s);
        add_arg(a, buf);
    }
    add_arg(a, "--backend");
    add_arg(a, o->backend);
    if (o->model) {
        add_arg(a, "--model");
        add_arg(a, r->have_model ? "{model}" : o->model);
    }
    if (have_dataset_archive) {
        add_arg(a, "--dataset");
        add_arg(a, "folder:{data}");
    } else if (o->dataset) {
        add_arg(a, "--dataset");
        add_arg(a, o->dataset);
    }
    add_arg(a, "--out");
    snprintf(buf, sizeof buf, "{out}/%s", o->strategies[k]);
    add_arg(a, buf);
    if (r->auth) {
        /* files fetched by the agent into {auth}/ from the manifest's URLs */
        static const char *const srv[] = {"--tls-cert", "{auth}/cert.pem", "--tls-key",
                                          "{auth}/key.pem", "--tls-client-ca", "{auth}/ca.pem",
                                          "--auth-token-file", "{auth}/token"};
        static const char *const cli[] = {"--tls-ca", "{auth}/ca.pem", "--server-name",
                                          PL_AUTH_SERVER_NAME, "--tls-cert", "{auth}/cert.pem",
                                          "--tls-key", "{auth}/key.pem", "--auth-token-file",
                                          "{auth}/token"};
        if (index < 0)
            for (size_t i = 0; i < sizeof srv / sizeof srv[0]; i++) add_arg(a, srv[i]);
        else
            for (size_t i = 0; i < sizeof cli / sizeof cli[0]; i++) add_arg(a, cli[i]);
    }
    split_args(a, index < 0 ? o->server_args : o->client_args);
    return a;
}

static int presign_expiry(const run *r)
{
    double s = r->o->timeout_s + 2 * r->o->boot_timeout_s + 3600;
    return s > 604800 ? 604800 : (int)s;
}

static int build_manifest(run *r, const char *role, const char *server_ip, int have_data,
                          pl_str *out, char *err)
{
    const pl_launch_opts *o = r->o;
    int exp = presign_expiry(r), rc = PT_OK;
    cJSON *m = cJSON_CreateObject();
    if (!m) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(m, "version", 1);
    cJSON_AddStringToObject(m, "run_id", r->run_id);
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "server_ip", server_ip ? server_ip : "");
    cJSON *art = cJSON_AddObjectToObject(m, "artifacts");
    rc = presign_or_key(r, "GET", PL_KEY_ARTIFACT_SRC, exp, art, "source", err);
    if (!rc && have_data) rc = presign_or_key(r, "GET", PL_KEY_ARTIFACT_DATA, exp, art, "dataset", err);
    if (!rc && r->have_model)
        rc = presign_or_key(r, "GET", PL_KEY_ARTIFACT_MODEL, exp, art, "model", err);
    if (o->agent_binary) {
        /* rehearsal: the agents run on this machine, so this very binary
         * can sign role uploads even when agent_binary is a stand-in */
        cJSON_AddStringToObject(m, "agent_binary", o->agent_binary);
        char self[1024];
        ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
        if (l > 0) {
            self[l] = 0;
            /* rebuilt while running: the new file at the same path will do */
            char *del = strstr(self, " (deleted)");
            if (del && !del[10]) *del = 0;
            cJSON_AddStringToObject(m, "uploader_binary", self);
        }
    }
    if (r->auth) {
        /* presigned GETs for this role's certificate, key, the CA and the
         * token: the material itself never appears in a manifest */
        cJSON *au = cJSON_AddObjectToObject(m, "auth");
        cJSON_AddStringToObject(au, "server_name", PL_AUTH_SERVER_NAME);
        for (size_t i = 0; i < N_AUTH_FILES && !rc; i++) {
            const auth_file *f = &auth_files[i];
            if (f->role && strcmp(f->role, role)) continue;
            rc = presign_or_key(r, "GET", f->key, exp, au, f->field, err);
        }
    }
    cJSON *up = cJSON_AddObjectToObject(m, "upload");
    cJSON_AddStringToObject(up, "mode", o->instance_profile ? "role" : "presigned");
    if (o->instance_profile) {
        cJSON_AddStringToObject(up, "bucket", r->bucket);
        cJSON_AddStringToObject(up, "region", r->region);
        const char *ep = pl_aws_endpoint(r->aws, PL_S3);
        char def[128];
        snprintf(def, sizeof def, "https://s3.%s.amazonaws.com", r->region);
        if (strcmp(ep, def)) cJSON_AddStringToObject(up, "s3_endpoint", ep);
    }
    cJSON *agents = cJSON_AddArrayToObject(m, "agents");
    int n_agents = strcmp(role, "server") ? o->n_clients : 1;
    for (int i = 0; i < n_agents && !rc; i++) {
        char agent[32], key[1024], file[64];
        if (!strcmp(role, "server"))
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
            cJSON_AddItemToObject(ru, "argv",
                                  agent_argv(r, k, strcmp(role, "server") ? i : -1, have_data));
            snprintf(file, sizeof file, "%s_log.log", agent);
            result_key(r, k, file, key, sizeof key);
            rc = presign_or_key(r, "PUT", key, exp, ru, "log", err);
            events_key(r, k, agent, key, sizeof key);
            if (!rc) rc = presign_or_key(r, "PUT", key, exp, ru, "events", err);
        }
    }
    if (!rc) {
        char *txt = cJSON_Print(m);
        if (!txt || pl_str_adds(out, txt)) rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
        free(txt);
    }
    cJSON_Delete(m);
    return rc;
}

/* Upload the manifest and render the role's user-data around its presigned URL. */
static int prepare_role(run *r, const char *role, const char *server_ip, int have_data,
                        pl_str *manifest, pl_str *ud, int upload, char *err)
{
    int rc = build_manifest(r, role, server_ip, have_data, manifest, err);
    if (rc) return rc;
    char key[128];
    snprintf(key, sizeof key, "manifest/%s.json", role);
    if (upload) {
        rc = pl_s3_put(r->aws, r->bucket, key, manifest->data, manifest->len, "application/json",
                       NULL, err);
        if (rc) return rc;
    }
    pl_str url = {0};
    rc = pl_s3_presign(r->aws, "GET", r->bucket, key, presign_expiry(r), &url, err);
    int guard = (int)((r->o->timeout_s + 2 * r->o->boot_timeout_s) / 60) + 30;
    if (!rc) rc = pl_render_user_data(r->run_id, role, pl_str_c(&url), guard, ud, err);
    pl_str_free(&url);
    return rc;
}

/* ---- waiting for instances ---- */
static int dead_state(const char *s)
{
    return !strcmp(s, "shutting-down") || !strcmp(s, "terminated") || !strcmp(s, "stopping") ||
           !strcmp(s, "stopped");
}

static int wait_running(run *r, pl_instance *v, size_t n, int status_ok, const char *what,
                        char *err)
{
    double t0 = pt_now();
    const char **ids = calloc(n, sizeof *ids);
    if (!ids) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) ids[i] = v[i].id;
    int rc;
    for (;;) {
        if (*r->stop) {
            rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted while waiting for %s", what);
            break;
        }
        pl_instance *d = NULL;
        size_t nd = 0;
        char e2[PT_ERRLEN];
        rc = pl_ec2_describe_instances(r->aws, ids, n, NULL, NULL, &d, &nd, e2);
        size_t running = 0, ok = 0;
        if (rc == PT_ERR_NOTFOUND) {
            rc = PT_OK; /* eventual consistency right after RunInstances */
        } else if (rc) {
            free(d);
            pt_seterr(err, rc, "%s", e2);
            break;
        }
        for (size_t i = 0; i < nd; i++)
            for (size_t j = 0; j < n; j++) {
                if (strcmp(d[i].id, v[j].id)) continue;
                snprintf(v[j].state, sizeof v[j].state, "%s", d[i].state);
                snprintf(v[j].private_ip, sizeof v[j].private_ip, "%s", d[i].private_ip);
                if (d[i].launch_index >= 0) v[j].launch_index = d[i].launch_index;
                if (!strcmp(d[i].state, "running")) running++;
                if (dead_state(d[i].state)) {
                    end_line(r);
                    dump_console(r, v[j].id, what);
                    rc = pt_seterr(err, PT_ERR_STATE, "%s instance %s is %s before the run "
                                   "started", what, v[j].id, d[i].state);
                }
            }
        free(d);
        if (rc) break;
        if (running == n && status_ok) {
            rc = pl_ec2_instance_status(r->aws, v, n, e2);
            if (rc && rc != PT_ERR_NOTFOUND) {
                pt_seterr(err, rc, "%s", e2);
                break;
            }
            rc = PT_OK;
            for (size_t i = 0; i < n; i++) {
                if (!strcmp(v[i].sys_status, "ok") && !strcmp(v[i].inst_status, "ok")) ok++;
                if (!strcmp(v[i].sys_status, "impaired") || !strcmp(v[i].inst_status, "impaired")) {
                    end_line(r);
                    dump_console(r, v[i].id, what);
                    rc = pt_seterr(err, PT_ERR_STATE, "%s instance %s failed its status checks",
                                   what, v[i].id);
                }
            }
            if (rc) break;
        }
        if (running == n && (!status_ok || ok == n)) {
            rc = PT_OK;
            break;
        }
        status_line(r, "%s: %zu/%zu running%s (%.0f s)", what, running, n,
                    status_ok ? (running == n ? ", waiting for status checks" : "") : "",
                    pt_now() - t0);
        if (pt_now() - t0 > r->o->boot_timeout_s) {
            end_line(r);
            for (size_t i = 0; i < n; i++) dump_console(r, v[i].id, what);
            rc = pt_seterr(err, PT_ERR_TIMEOUT, "%s not running with status checks ok after %.0f s",
                           what, r->o->boot_timeout_s);
            break;
        }
        pt_sleep(r->o->poll_s, r->stop);
    }
    end_line(r);
    free(ids);
    return rc;
}

/* ---- collection ---- */
typedef struct evbuf {
    char dir[1024];
    pl_str data;
} evbuf;

static int key_ok(const char *k)
{
    if (strstr(k, "..") || k[0] == '/' || strstr(k, "//")) return 0;
    for (const char *p = k; *p; p++)
        if (!(valid_name((char[]){*p, 0}, 1) || *p == '/' || *p == '(' || *p == ')')) return 0;
    return 1;
}

typedef struct lineent {
    double ts;
    size_t order;
    const char *p;
    size_t len;
} lineent;

static int line_cmp(const void *a, const void *b)
{
    const lineent *x = a, *y = b;
    if (x->ts < y->ts) return -1;
    if (x->ts > y->ts) return 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* write events.jsonl sorted by "ts" (stable) */
static int write_events(const evbuf *e, char *err)
{
    size_t n = 0;
    const char *s = pl_str_c(&e->data);
    for (const char *p = s; *p; p++)
        if (*p == '\n') n++;
    lineent *v = calloc(n + 1, sizeof *v);
    if (!v) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    size_t k = 0;
    double last = 0;
    for (const char *p = s; *p;) {
        size_t l = strcspn(p, "\n");
        if (l) {
            cJSON *j = pt_json_parse(p, l, NULL);
            const cJSON *ts = j ? cJSON_GetObjectItemCaseSensitive(j, "ts") : NULL;
            double t = cJSON_IsNumber(ts) ? ts->valuedouble : last;
            last = t;
            cJSON_Delete(j);
            v[k] = (lineent){t, k, p, l};
            k++;
        }
        p += l + (p[l] ? 1 : 0);
    }
    qsort(v, k, sizeof *v, line_cmp);
    pl_str out = {0};
    int rc = PT_OK;
    for (size_t i = 0; i < k && !rc; i++)
        if (pl_str_add(&out, v[i].p, v[i].len) || pl_str_add(&out, "\n", 1))
            rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    char path[1200];
    snprintf(path, sizeof path, "%s/events.jsonl", e->dir);
    if (!rc) rc = write_file(path, out.data ? out.data : "", out.len, err);
    pl_str_free(&out);
    free(v);
    return rc;
}

/* Download every object under results/, events/ and agents/, verify size
 * and MD5 against the listing's ETag, lay out the results tree. *bad counts
 * objects not saved and verified. */
static int collect(run *r, size_t *saved, size_t *bad, char *err)
{
    *saved = *bad = 0;
    pl_s3_object *objs = NULL;
    size_t n = 0;
    int rc = pl_s3_list(r->aws, r->bucket, NULL, 1000, &objs, &n, err);
    if (rc) return rc;
    evbuf *ev = NULL;
    size_t nev = 0;
    for (size_t i = 0; i < n; i++) {
        const char *k = objs[i].key;
        int is_res = !strncmp(k, "results/", 8), is_ev = !strncmp(k, "events/", 7),
            is_ag = !strncmp(k, "agents/", 7);
        if (!is_res && !is_ev && !is_ag) continue; /* our own manifests and artifacts */
        if (!key_ok(k)) {
            PT_WARN("bucket %s: unexpected object key '%s' not downloaded", r->bucket, k);
            (*bad)++;
            continue;
        }
        pl_str body = {0};
        char e2[PT_ERRLEN], md5[33];
        int grc = pl_s3_get(r->aws, r->bucket, k, MAX_OBJECT, &body, NULL, e2);
        if (grc) {
            PT_WARN("%s", e2);
            (*bad)++;
            pl_str_free(&body);
            continue;
        }
        pl_md5(body.data ? body.data : "", body.len, md5, NULL);
        if ((long long)body.len != objs[i].size ||
            (strlen(objs[i].etag) == 32 && strcasecmp(md5, objs[i].etag))) {
            PT_WARN("%s: size %zu / MD5 %s do not match the listing (%lld, %s)", k, body.len, md5,
                    objs[i].size, objs[i].etag);
            (*bad)++;
            pl_str_free(&body);
            continue;
        }
        char path[1200];
        int wrc = PT_OK;
        if (is_res) {
            snprintf(path, sizeof path, "%s/%s", r->o->out_dir, k + 8);
            wrc = write_file(path, body.data, body.len, e2);
        } else if (is_ag) {
            snprintf(path, sizeof path, "%s/agents/%s/%s", r->o->out_dir, r->run_id, k + 7);
            wrc = write_file(path, body.data, body.len, e2);
        } else {
            /* events/<b>/<s>/<n>/<agent>.jsonl -> OUT/<b>/<s>/<n>/events.jsonl */
            char dir[1024];
            snprintf(dir, sizeof dir, "%s/%s", r->o->out_dir, k + 7);
            char *sl = strrchr(dir, '/');
            if (sl) *sl = 0;
            size_t j = 0;
            while (j < nev && strcmp(ev[j].dir, dir)) j++;
            if (j == nev) {
                evbuf *ne = realloc(ev, (nev + 1) * sizeof *ne);
                if (!ne) {
                    pl_str_free(&body);
                    rc = pt_seterr(err, PT_ERR_NOMEM, "out of memory");
                    break;
                }
                ev = ne;
                memset(&ev[nev], 0, sizeof ev[nev]);
                snprintf(ev[nev].dir, sizeof ev[nev].dir, "%s", dir);
                nev++;
            }
            if (pl_str_add(&ev[j].data, body.data ? body.data : "", body.len) ||
                (body.len && body.data[body.len - 1] != '\n' && pl_str_add(&ev[j].data, "\n", 1)))
                wrc = pt_seterr(e2, PT_ERR_NOMEM, "out of memory");
        }
        pl_str_free(&body);
        if (wrc) {
            PT_WARN("%s", e2);
            (*bad)++;
        } else {
            (*saved)++;
        }
    }
    for (size_t j = 0; j < nev; j++) {
        char e2[PT_ERRLEN];
        if (!rc && write_events(&ev[j], e2)) {
            PT_WARN("%s", e2);
            (*bad)++;
        }
        pl_str_free(&ev[j].data);
    }
    free(ev);
    free(objs);
    return rc;
}

/* ---- polling for results ---- */
typedef struct agent_info {
    char name[32];
    const pl_instance *inst;
    int done;
} agent_info;

static int agent_failed(run *r, const char *agent, const pl_instance *inst, char *err)
{
    char key[128];
    snprintf(key, sizeof key, "agents/%s.status", agent);
    pl_str st = {0};
    char e2[PT_ERRLEN];
    if (pl_s3_get(r->aws, r->bucket, key, 65536, &st, NULL, e2)) {
        pl_str_free(&st);
        return 0;
    }
    cJSON *j = pt_json_parse(pl_str_c(&st), st.len, NULL);
    const cJSON *code = j ? cJSON_GetObjectItemCaseSensitive(j, "status") : NULL;
    const cJSON *stage = j ? cJSON_GetObjectItemCaseSensitive(j, "stage") : NULL;
    int failed = !cJSON_IsNumber(code) || code->valueint != 0;
    if (failed) {
        end_line(r);
        pl_str log = {0};
        snprintf(key, sizeof key, "agents/%s.log", agent);
        if (!pl_s3_get(r->aws, r->bucket, key, 1 << 20, &log, NULL, e2)) {
            PT_ERROR("agent %s (%s) log:", agent, inst ? inst->id : "?");
            const char *s = pl_str_c(&log);
            size_t lines = 0, start = log.len;
            while (start > 0) {
                if (s[start - 1] == '\n' && ++lines > 25) break;
                start--;
            }
            for (const char *p = s + start; *p;) {
                size_t l = strcspn(p, "\n");
                if (l) PT_ERROR("  | %.*s", (int)l, p);
                p += l + (p[l] ? 1 : 0);
            }
        }
        pl_str_free(&log);
        pt_seterr(err, PT_ERR_STATE, "agent %s on %s failed at stage '%s' (exit status %d)",
                  agent, inst ? inst->id : "?", cJSON_IsString(stage) ? stage->valuestring : "?",
                  cJSON_IsNumber(code) ? code->valueint : -1);
    }
    cJSON_Delete(j);
    pl_str_free(&st);
    return failed;
}

static int poll_results(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    size_t n_agents = 1 + r->n_clients;
    size_t n_exp = (size_t)o->n_strategies * n_agents * 2;
    char(*exp)[1024] = calloc(n_exp, sizeof *exp);
    const char **ids = calloc(n_agents, sizeof *ids);
    agent_info *ag = calloc(n_agents, sizeof *ag);
    if (!exp || !ids || !ag) {
        free(exp), free(ids), free(ag);
        return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    }
    snprintf(ag[0].name, sizeof ag[0].name, "server");
    ag[0].inst = &r->server;
    ids[0] = r->server.id;
    for (size_t i = 0; i < r->n_clients; i++) {
        int li = r->clients[i].launch_index >= 0 ? r->clients[i].launch_index : (int)i;
        snprintf(ag[i + 1].name, sizeof ag[i + 1].name, "client_%d", li);
        ag[i + 1].inst = &r->clients[i];
        ids[i + 1] = r->clients[i].id;
    }
    size_t e = 0;
    for (int k = 0; k < o->n_strategies; k++)
        for (size_t a = 0; a < n_agents; a++) {
            char file[64];
            snprintf(file, sizeof file, "%s_log.log", ag[a].name);
            result_key(r, k, file, exp[e++], sizeof exp[0]);
            events_key(r, k, ag[a].name, exp[e++], sizeof exp[0]);
        }
    double t0 = pt_now();
    int rc = PT_OK;
    for (;;) {
        if (*r->stop) {
            rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted while the agents were running");
            break;
        }
        pl_s3_object *objs = NULL;
        size_t n = 0;
        char e2[PT_ERRLEN];
        rc = pl_s3_list(r->aws, r->bucket, NULL, 1000, &objs, &n, e2);
        if (rc) {
            pt_seterr(err, rc, "%s", e2);
            break;
        }
        size_t have = 0, strat_done = 0;
        for (int k = 0; k < o->n_strategies; k++) {
            size_t hk = 0;
            for (size_t x = (size_t)k * n_agents * 2; x < (size_t)(k + 1) * n_agents * 2; x++)
                for (size_t i = 0; i < n; i++)
                    if (!strcmp(objs[i].key, exp[x])) {
                        hk++;
                        break;
                    }
            have += hk;
            if (hk == n_agents * 2) strat_done++;
        }
        /* agents that reported a failure */
        for (size_t a = 0; a < n_agents && !rc; a++) {
            char sk[64];
            snprintf(sk, sizeof sk, "agents/%s.status", ag[a].name);
            for (size_t i = 0; i < n && !ag[a].done; i++)
                if (!strcmp(objs[i].key, sk)) {
                    ag[a].done = 1;
                    if (agent_failed(r, ag[a].name, ag[a].inst, err)) rc = PT_ERR_STATE;
                }
        }
        size_t reported = 0;
        for (size_t a = 0; a < n_agents; a++) reported += ag[a].done;
        free(objs);
        if (rc) break;
        /* done when every result is in and every agent has reported (its
         * status is its last upload, so nothing arrives after collection) */
        if (have == n_exp && reported == n_agents) break;
        if (reported == n_agents) {
            rc = pt_seterr(err, PT_ERR_STATE,
                           "every agent finished but only %zu of %zu result files arrived (see "
                           "the agent logs under %s/agents/%s)",
                           have, n_exp, o->out_dir, r->run_id);
            break;
        }
        /* instances that died */
        pl_instance *d = NULL;
        size_t nd = 0;
        int drc = pl_ec2_describe_instances(r->aws, ids, n_agents, NULL, NULL, &d, &nd, e2);
        if (drc && drc != PT_ERR_NOTFOUND) {
            rc = pt_seterr(err, drc, "%s", e2);
            free(d);
            break;
        }
        for (size_t i = 0; i < nd && !rc; i++)
            if (dead_state(d[i].state))
                for (size_t a = 0; a < n_agents; a++)
                    if (!strcmp(ag[a].inst->id, d[i].id)) {
                        end_line(r);
                        dump_console(r, d[i].id, ag[a].name);
                        rc = pt_seterr(err, PT_ERR_STATE,
                                       "instance %s (%s) is %s before its results arrived "
                                       "(%zu/%zu result files, %zu/%d strategies complete)",
                                       d[i].id, ag[a].name, d[i].state, have, n_exp, strat_done,
                                       o->n_strategies);
                        break;
                    }
        free(d);
        if (rc) break;
        double el = pt_now() - t0;
        status_line(r, "%zu/%zu result files, %zu/%d strategies complete (%.0f s)", have, n_exp,
                    strat_done, o->n_strategies, el);
        if (el > o->timeout_s) {
            end_line(r);
            for (size_t a = 0; a < n_agents; a++) dump_console(r, ag[a].inst->id, ag[a].name);
            rc = pt_seterr(err, PT_ERR_TIMEOUT,
                           "deadline of %.0f s passed with %zu/%zu result files (raise --timeout)",
                           o->timeout_s, have, n_exp);
            break;
        }
        pt_sleep(o->poll_s, r->stop);
    }
    end_line(r);
    free(exp);
    free(ids);
    free(ag);
    return rc;
}

/* ---- clean-up ---- */
static int terminate_and_wait(run *r, char (*ids)[32], size_t n, char *err)
{
    if (!n) return PT_OK;
    const char **v = calloc(n, sizeof *v);
    if (!v) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) v[i] = ids[i];
    int rc = PT_OK;
    for (int attempt = 0; attempt < 5; attempt++) {
        rc = pl_ec2_terminate_instances(r->aws, v, n, err);
        if (rc != PT_ERR_NOTFOUND) break;
        pt_sleep(2.0 * (attempt + 1), NULL);
    }
    double t0 = pt_now();
    while (!rc) {
        pl_instance *d = NULL;
        size_t nd = 0, gone = 0;
        rc = pl_ec2_describe_instances(r->aws, v, n, NULL, NULL, &d, &nd, err);
        if (rc == PT_ERR_NOTFOUND) {
            rc = PT_OK;
            gone = n;
        }
        for (size_t i = 0; i < nd; i++)
            if (!strcmp(d[i].state, "terminated")) gone++;
        free(d);
        if (rc || gone >= n) break;
        status_line(r, "terminating: %zu/%zu terminated (%.0f s)", gone, n, pt_now() - t0);
        if (pt_now() - t0 > 900) {
            rc = pt_seterr(err, PT_ERR_TIMEOUT, "instances still not terminated after 900 s");
            break;
        }
        pt_sleep(r->o->poll_s < 5 ? r->o->poll_s : 5, NULL);
    }
    end_line(r);
    free(v);
    return rc;
}

/* Returns the first clean-up error (others are logged). */
static int cleanup(run *r, int delete_bucket, char *err)
{
    int first = PT_OK;
    char e2[PT_ERRLEN];
    pl_aws_set_stop(r->aws, NULL);
    if (r->n_ids && !r->o->keep) {
        if (r->o->progress) fprintf(stderr, "      terminating %zu instance(s)\n", r->n_ids);
        int rc = terminate_and_wait(r, r->ids, r->n_ids, e2);
        if (rc) {
            PT_ERROR("clean-up: %s", e2);
            if (!first) first = pt_seterr(err, rc, "clean-up: %s", e2);
        }
    } else if (r->n_ids) {
        PT_WARN("--keep: %zu instance(s) left running (petal launch --cleanup %s removes them)",
                r->n_ids, r->run_id);
    }
    if (r->sg[0] && !r->o->keep) {
        int rc = pl_ec2_delete_security_group(r->aws, r->sg, 300, e2);
        if (rc) {
            PT_ERROR("clean-up: %s", e2);
            if (!first) first = pt_seterr(err, rc, "clean-up: %s", e2);
        } else {
            r->sg[0] = 0;
        }
    }
    if (r->bucket_created) {
        if (delete_bucket) {
            size_t del = 0;
            int rc = pl_s3_empty_and_delete_bucket(r->aws, r->bucket, &del, e2);
            if (rc) {
                PT_ERROR("clean-up: %s", e2);
                if (!first) first = pt_seterr(err, rc, "clean-up: %s", e2);
            } else {
                r->bucket_created = 0;
            }
        } else {
            end_line(r);
            /* the results stay; the run's keys and token do not */
            for (size_t i = 0; r->auth && i < N_AUTH_FILES; i++)
                if (pl_s3_delete(r->aws, r->bucket, auth_files[i].key, e2))
                    PT_WARN("clean-up: %s", e2);
            PT_WARN("keeping bucket %s: not every object in it was downloaded and verified",
                    r->bucket);
            fprintf(stderr, "petal launch: results bucket kept: s3://%s\n", r->bucket);
        }
    }
    if (r->auth_dir[0] && !r->o->keep) {
        remove_auth_dir(r);
    } else if (r->auth_dir[0]) {
        PT_WARN("--keep: the run's certificates and token stay in %s (removed by petal launch "
                "--cleanup %s)", r->auth_dir, r->run_id);
    }
    r->status = first ? "cleanup-failed" : "cleaned";
    save_state(r);
    return first;
}

/* ---- the run ---- */
static void make_run_id(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    unsigned char rnd[4] = {0};
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(rnd, 1, sizeof rnd, f) != sizeof rnd) {
        uint64_t x = pt_now_ns() ^ (uint64_t)getpid();
        memcpy(rnd, &x, sizeof rnd);
    }
    if (f) fclose(f);
    snprintf(out, cap, "%04d%02d%02d-%02d%02d%02d-%02x%02x%02x", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2]);
}

static void bucket_of(const char *run_id, char *out, size_t cap)
{
    snprintf(out, cap, "petal-%s", run_id);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
        else if (*p == '_' || *p == '.') *p = '-';
}

static int setup_client(run *r, int dry, char *err)
{
    const pl_launch_opts *o = r->o;
    int rc;
    if (dry) {
        memset(&r->creds, 0, sizeof r->creds);
        snprintf(r->creds.access_key, sizeof r->creds.access_key, "AKIADRYRUNEXAMPLE");
        snprintf(r->creds.secret_key, sizeof r->creds.secret_key, "dry-run-placeholder");
    } else {
        pl_creds_opts co = {.profile = o->profile, .env_file = o->env_file};
        rc = pl_creds_load(&r->creds, &co, err);
        if (rc) return rc;
    }
    const char *region = o->region ? o->region : r->creds.region[0] ? r->creds.region : NULL;
    if (!region && dry) region = getenv("AWS_REGION");
    if ((!region || !region[0]) && dry) region = getenv("AWS_DEFAULT_REGION");
    if (!region || !region[0]) region = "us-east-1";
    snprintf(r->region, sizeof r->region, "%s", region);
    pl_aws_opts ao = {.region = r->region, .stop = r->stop};
    for (int s = 0; s < PL_NSERVICES; s++)
        ao.endpoint[s] = o->service_endpoint[s] ? o->service_endpoint[s] : o->endpoint_url;
    return pl_aws_new(&r->aws, &r->creds, &ao, err);
}

static int plan(run *r, pl_str *out, char *err)
{
    const pl_launch_opts *o = r->o;
    int have_data = 0;
    struct stat st;
    if (o->dataset && !stat(o->dataset, &st) && S_ISDIR(st.st_mode)) have_data = 1;
    r->have_model = is_file(o->model);
    pl_str m1 = {0}, u1 = {0}, m2 = {0}, u2 = {0};
    pl_str_addf(out,
                "petal launch plan (dry run: nothing is sent to AWS; URLs below are placeholders "
                "signed with a dummy key)\n"
                "  run id           %s\n  region           %s\n  bucket           %s\n"
                "  security group   petal-%s: tcp %d-%d from members of the group%s%s\n"
                "  AMI              %s\n"
                "  server           1 x %s (launch, wait running + status checks ok)\n"
                "  clients          %d x %s (one RunInstances; partition = launch index)\n"
                "  strategies       ",
                r->run_id, r->region, r->bucket, r->run_id, o->port,
                o->port + o->n_strategies - 1, o->ssh_cidr ? ", ssh from " : "",
                o->ssh_cidr ? o->ssh_cidr : "", o->ami ? o->ami : o->ami_parameter,
                o->instance_type, o->n_clients, o->instance_type);
    for (int k = 0; k < o->n_strategies; k++)
        pl_str_addf(out, "%s%s (port %d)", k ? ", " : "", o->strategies[k], o->port + k);
    pl_str_addf(out,
                "\n  rounds           %d\n  backend          %s\n  model            %s\n"
                "  dataset          %s%s\n  uploads          %s\n  results          %s/%s/"
                "<strategy>/%d/\n  instances        %d of at most %d (Learner Lab limit)\n"
                "  authentication   %s\n\n",
                o->num_rounds, o->backend, o->model ? o->model : "(agent default)",
                o->dataset ? o->dataset : "(agent default)",
                have_data ? " (local folder: uploaded as an archive)" : "",
                o->instance_profile ? "signed by the instances' role (IMDSv2)"
                                    : "presigned PUT URLs in the manifest",
                o->out_dir, o->backend, o->n_clients, o->n_clients + 1, o->max_instances,
                r->auth ? "TLS with a per-run CA; server certificate for '" PL_AUTH_SERVER_NAME
                          "', one client certificate (mutual TLS) and a random token, made at "
                          "launch and fetched by the agents through presigned URLs (auth/ in "
                          "the bucket)"
                        : "none (--no-auth): cleartext h2c, any member of the group may join");
    {
        /* tell where the credentials would come from; they are not used */
        pl_creds c;
        char e2[PT_ERRLEN];
        pl_creds_opts co = {.profile = o->profile, .env_file = o->env_file};
        if (pl_creds_load(&c, &co, e2))
            pl_str_addf(out, "credentials: NOT FOUND (%s)\n\n", e2);
        else
            pl_str_addf(out, "credentials: found in %s (not used by the dry run)%s\n\n", c.source,
                        c.token[0] && !o->instance_profile
                            ? "; session credentials: presigned URLs expire with them, "
                              "--instance-profile avoids that for long runs"
                            : "");
        pl_creds_wipe(&c);
    }
    int rc = prepare_role(r, "server", NULL, have_data, &m1, &u1, 0, err);
    if (!rc) rc = prepare_role(r, "client", "SERVER_PRIVATE_IP", have_data, &m2, &u2, 0, err);
    if (!rc) {
        pl_str_addf(out, "---- server manifest (manifest/server.json) ----\n%s\n", pl_str_c(&m1));
        pl_str_addf(out, "---- client manifest (manifest/client.json) ----\n%s\n", pl_str_c(&m2));
        pl_str_addf(out, "---- server user-data (%zu bytes) ----\n%s", u1.len, pl_str_c(&u1));
        pl_str_addf(out, "---- client user-data (%zu bytes) ----\n%s", u2.len, pl_str_c(&u2));
    }
    pl_str_free(&m1), pl_str_free(&u1), pl_str_free(&m2), pl_str_free(&u2);
    return rc;
}

static int state_file_path(run *r, char *err)
{
    const char *dir = r->o->state_dir;
    char def[1024];
    if (!dir) {
        const char *home = getenv("HOME");
        snprintf(def, sizeof def, "%s/.petal/runs", home && home[0] ? home : ".");
        dir = def;
    }
    if (mkdirs(dir))
        return pt_seterr(err, PT_ERR_IO, "cannot create the state directory %s: %s", dir,
                         strerror(errno));
    snprintf(r->state_path, sizeof r->state_path, "%s/%s.json", dir, r->run_id);
    return PT_OK;
}

static int upload_file(run *r, const char *path, const char *key, char *err)
{
    pl_str data = {0};
    int rc = read_file(path, &data, MAX_OBJECT, err);
    if (!rc) rc = pl_s3_put(r->aws, r->bucket, key, data.data, data.len, NULL, NULL, err);
    if (data.data) memset(data.data, 0, data.len); /* may be a private key or the token */
    pl_str_free(&data);
    return rc;
}

/* Make the run's CA, server and client certificates and token in a fresh
 * 0700 directory and upload them under auth/ (see pl_launch_run). */
static int make_auth(run *r, char *err)
{
    auth_dir_of(r);
    remove_auth_dir(r); /* a leftover of an earlier run with the same id */
    if (mkdir(r->auth_dir, 0700))
        return pt_seterr(err, PT_ERR_IO, "cannot create %s: %s", r->auth_dir, strerror(errno));
    double secs = r->o->timeout_s + 2 * r->o->boot_timeout_s + 3600;
    int days = (int)(secs / 86400) + 2;
    char e2[PT_ERRLEN];
    int rc = pnet_tls_make_run_dir(r->auth_dir, "DNS:" PL_AUTH_SERVER_NAME, days, e2);
    if (rc) return pt_seterr(err, rc, "run certificates: %s", e2);
    for (size_t i = 0; i < N_AUTH_FILES && !rc; i++) {
        char p[1600];
        snprintf(p, sizeof p, "%s/%s", r->auth_dir, auth_files[i].local);
        rc = upload_file(r, p, auth_files[i].key, err);
    }
    return rc;
}

/* A run over the options o (defaults filled in); stop may be NULL. */
static void run_init(run *r, pl_launch_opts *o, volatile int *stop)
{
    static volatile int never;
    pl_launch_opts_default(o);
    memset(r, 0, sizeof *r);
    r->o = o;
    r->stop = stop ? stop : &never;
}

static void run_free(run *r)
{
    if (r->aws) pl_aws_free(r->aws);
    pl_creds_wipe(&r->creds);
    free(r->ids);
    free(r->clients);
}

/* Prepare `role`'s user data and start `count` instances of it, tagged with the
 * run id and Name petal-RUN-role (idempotency token petal-RUN-token_suffix);
 * their ids join the run's. What started (also when a later step failed) is
 * in *v / *n, the caller's to free. */
static int run_role(run *r, const char *role, const char *server_ip, int have_data, int count,
                    const char *token_suffix, pl_instance **v, size_t *n, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_str man = {0}, ud = {0};
    char nm[96], token[80];
    int rc = prepare_role(r, role, server_ip, have_data, &man, &ud, 1, err);
    snprintf(nm, sizeof nm, "petal-%.40s-%s", r->run_id, role);
    snprintf(token, sizeof token, "petal-%.40s-%s", r->run_id, token_suffix);
    pl_tag tags[2] = {{"petal:run-id", r->run_id}, {"Name", nm}};
    pl_run_opts ro = {.image_id = r->ami, .instance_type = o->instance_type, .count = count,
                      .user_data = ud.data, .security_group_id = r->sg,
                      .key_name = o->key_name, .instance_profile = o->instance_profile,
                      .tags = tags, .n_tags = 2, .client_token = token};
    *v = NULL;
    *n = 0;
    if (!rc) rc = pl_ec2_run_instances(r->aws, &ro, v, n, err);
    if (*n) add_ids(r, *v, *n);
    pl_str_free(&man);
    pl_str_free(&ud);
    return rc;
}

int pl_launch_run(const pl_launch_opts *oin, volatile int *stop, pl_str *planout, char *err)
{
    pl_launch_opts o = *oin;
    run R, *r = &R;
    run_init(r, &o, stop);
    int rc = validate(&o, err);
    if (rc) return rc;
    if (o.run_id)
        snprintf(r->run_id, sizeof r->run_id, "%s", o.run_id);
    else
        make_run_id(r->run_id, sizeof r->run_id);
    bucket_of(r->run_id, r->bucket, sizeof r->bucket);
    r->auth = !o.no_auth;
    if (o.dry_run) {
        rc = setup_client(r, 1, err);
        if (!rc && planout) rc = plan(r, planout, err);
        run_free(r);
        return rc;
    }
    if (!o.dist_tarball) return pt_seterr(err, PT_ERR_INVAL, "no source tarball (run 'make dist')");
    struct stat st;
    if (stat(o.dist_tarball, &st) || !S_ISREG(st.st_mode))
        return pt_seterr(err, PT_ERR_IO, "source tarball %s not found", o.dist_tarball);
    int have_data = o.dataset && !stat(o.dataset, &st) && S_ISDIR(st.st_mode);
    r->have_model = is_file(o.model);
    rc = setup_client(r, 0, err);
    if (rc) goto out_free;
    if (!o.endpoint_url && strcmp(r->region, "us-east-1") && strcmp(r->region, "us-west-2"))
        PT_WARN("region %s: the Learner Lab only allows us-east-1 and us-west-2", r->region);
    if (o.progress)
        fprintf(stderr, "petal launch %s: %d client(s) + 1 server (%s) in %s, credentials from %s\n",
                r->run_id, o.n_clients, o.instance_type, r->region, r->creds.source);
    /* credentials first: nothing is created with bad ones */
    rc = pl_aws_check_credentials(r->aws, err);
    if (rc) goto out_free;
    if (r->creds.token[0] && !o.instance_profile) {
        double hours = (o.timeout_s + 2 * o.boot_timeout_s) / 3600.0;
        if (hours > 3.5)
            PT_WARN("these are session credentials (Learner Lab: about 4 h) and the run may take "
                    "up to %.1f h: presigned URLs die with the session. Use --instance-profile "
                    "LabInstanceProfile or a shorter --timeout",
                    hours);
        else
            PT_INFO("session credentials: the instances' presigned URLs expire with them; "
                    "--instance-profile avoids that for long runs");
    }
    rc = state_file_path(r, err);
    if (rc) goto out_free;
    save_state(r);
    char e2[PT_ERRLEN];

    step(r, "bucket %s: create, upload source%s%s", r->bucket, have_data ? " and dataset" : "",
         r->auth ? ", run certificates and token" : "");
    rc = pl_s3_create_bucket(r->aws, r->bucket, err);
    if (rc) goto fail;
    r->bucket_created = 1;
    save_state(r);
    rc = upload_file(r, o.dist_tarball, PL_KEY_ARTIFACT_SRC, err);
    if (rc) goto fail;
    if (r->have_model) {
        rc = upload_file(r, o.model, PL_KEY_ARTIFACT_MODEL, err);
        if (rc) goto fail;
    }
    if (have_data) {
        char tmp[] = "/tmp/petal-dataset-XXXXXX";
        int fd = mkstemp(tmp);
        if (fd < 0) {
            rc = pt_seterr(err, PT_ERR_IO, "mkstemp: %s", strerror(errno));
            goto fail;
        }
        close(fd);
        rc = tar_dir(o.dataset, tmp, err);
        if (!rc) rc = upload_file(r, tmp, PL_KEY_ARTIFACT_DATA, err);
        remove(tmp);
        if (rc) goto fail;
    }
    if (r->auth) {
        rc = make_auth(r, err);
        if (rc) goto fail;
        if (o.progress)
            fprintf(stderr, "      per-run CA, server + client certificates and token made "
                    "(mutual TLS + token; local copy %s)\n", r->auth_dir);
    }
    if (*r->stop) goto interrupted;

    step(r, "security group: Flower ports %d-%d from the group only%s%s", o.port,
         o.port + o.n_strategies - 1, o.ssh_cidr ? ", SSH from " : "", o.ssh_cidr ? o.ssh_cidr : "");
    char gname[96], gdesc[160], nm[96];
    snprintf(gname, sizeof gname, "petal-%.40s", r->run_id);
    snprintf(gdesc, sizeof gdesc, "Petal run %.40s: Flower between its instances", r->run_id);
    pl_tag tags[2] = {{"petal:run-id", r->run_id}, {"Name", nm}};
    snprintf(nm, sizeof nm, "petal-%.40s", r->run_id);
    rc = pl_ec2_create_security_group(r->aws, gname, gdesc, tags, 2, r->sg, err);
    if (rc) goto fail;
    save_state(r);
    rc = pl_ec2_authorize_ingress(r->aws, r->sg, o.port, o.port + o.n_strategies - 1, r->sg, NULL,
                                  err);
    if (!rc && o.ssh_cidr) rc = pl_ec2_authorize_ingress(r->aws, r->sg, 22, 22, NULL, o.ssh_cidr, err);
    if (rc) goto fail;
    if (*r->stop) goto interrupted;

    step(r, "AMI");
    if (o.ami) {
        snprintf(r->ami, sizeof r->ami, "%s", o.ami);
    } else {
        rc = pl_ssm_get_parameter(r->aws, o.ami_parameter, r->ami, sizeof r->ami, e2);
        if (rc && rc != PT_ERR_AUTH) {
            PT_WARN("SSM %s: %s; falling back to DescribeImages", o.ami_parameter, e2);
            char ami[32];
            rc = pl_ec2_newest_image(r->aws, DEBIAN_OWNER, DEBIAN_PATTERN, ami, err);
            if (!rc) snprintf(r->ami, sizeof r->ami, "%s", ami);
        } else if (rc) {
            pt_seterr(err, rc, "%s", e2);
        }
        if (rc) goto fail;
    }
    if (strncmp(r->ami, "ami-", 4)) {
        rc = pt_seterr(err, PT_ERR_PROTO, "AMI lookup returned '%s'", r->ami);
        goto fail;
    }
    if (o.progress) fprintf(stderr, "      %s\n", r->ami);

    step(r, "server: RunInstances, wait for running and status checks");
    {
        pl_instance *v;
        size_t n;
        rc = run_role(r, "server", NULL, have_data, 1, "server", &v, &n, err);
        if (n) r->server = v[0];
        free(v);
        if (rc) goto fail;
        rc = wait_running(r, &r->server, 1, 1, "server", err);
        if (rc) goto fail;
        if (!r->server.private_ip[0]) {
            rc = pt_seterr(err, PT_ERR_PROTO, "server %s has no private IP", r->server.id);
            goto fail;
        }
        if (o.progress) fprintf(stderr, "      %s at %s\n", r->server.id, r->server.private_ip);
    }

    step(r, "clients: RunInstances x %d, wait for running", o.n_clients);
    {
        pl_instance *v;
        size_t n;
        rc = run_role(r, "client", r->server.private_ip, have_data, o.n_clients, "clients", &v,
                      &n, err);
        if (n) {
            r->clients = v;
            r->n_clients = n;
        } else {
            free(v);
        }
        if (rc) goto fail;
        rc = wait_running(r, r->clients, r->n_clients, 0, "clients", err);
        if (rc) goto fail;
    }

    step(r, "agents running: waiting for %d strategies' results in s3://%s", o.n_strategies,
         r->bucket);
    rc = poll_results(r, err);
    if (rc) goto fail;

    step(r, "download and verify results into %s", o.out_dir);
    size_t saved = 0, bad = 0;
    rc = collect(r, &saved, &bad, err);
    if (rc) goto fail;
    if (bad) {
        rc = pt_seterr(err, PT_ERR_IO, "%zu object(s) could not be downloaded and verified", bad);
        goto fail;
    }
    if (o.progress) fprintf(stderr, "      %zu files verified (size + MD5)\n", saved);
    if (o.report) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s", o.out_dir);
        if (o.report(dir, o.report_ud)) PT_WARN("petal report %s failed", dir);
    }

    step(r, "clean up: terminate instances, delete group%s, delete bucket",
         o.keep ? " (kept: --keep)" : "");
    r->status = "done";
    rc = cleanup(r, 1, err);
    goto out_free;

interrupted:
    rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
fail:
    end_line(r);
    {
        char keep_err[PT_ERRLEN];
        snprintf(keep_err, sizeof keep_err, "%s", err ? err : "");
        PT_ERROR("launch %s failed: %s", r->run_id, keep_err);
        if (o.progress)
            fprintf(stderr, "      cleaning up run %s (saving whatever results arrived)\n",
                    r->run_id);
        pl_aws_set_stop(r->aws, NULL);
        size_t nsaved = 0, nbad = 0;
        int del = 0;
        if (r->bucket_created) {
            char e3[PT_ERRLEN];
            if (!collect(r, &nsaved, &nbad, e3)) {
                del = nbad == 0;
                if (nsaved)
                    PT_WARN("saved %zu result/log file(s) of the failed run under %s", nsaved,
                            o.out_dir);
            } else {
                PT_WARN("could not list the bucket: %s", e3);
            }
        }
        r->status = "failed";
        char e4[PT_ERRLEN];
        cleanup(r, del, e4);
        if (err) snprintf(err, PT_ERRLEN, "%s", keep_err);
    }
out_free:
    run_free(r);
    return rc;
}

int pl_launch_cleanup(const pl_launch_opts *oin, volatile int *stop, char *err)
{
    pl_launch_opts o = *oin;
    run R, *r = &R;
    run_init(r, &o, stop);
    if (!o.run_id || !valid_name(o.run_id, 40))
        return pt_seterr(err, PT_ERR_INVAL, "--cleanup needs a run id");
    snprintf(r->run_id, sizeof r->run_id, "%s", o.run_id);
    bucket_of(r->run_id, r->bucket, sizeof r->bucket);
    int rc = state_file_path(r, err);
    if (!rc) {
        /* the state file may name the region and the bucket */
        pl_str js = {0};
        char e2[PT_ERRLEN];
        if (!read_file(r->state_path, &js, 1 << 20, e2)) {
            cJSON *j = pt_json_parse(pl_str_c(&js), js.len, NULL);
            const cJSON *reg = cJSON_GetObjectItemCaseSensitive(j, "region");
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bucket");
            static char region[32];
            if (cJSON_IsString(reg) && !o.region && strlen(reg->valuestring) < sizeof region) {
                snprintf(region, sizeof region, "%s", reg->valuestring);
                o.region = region;
            }
            if (cJSON_IsString(b) && b->valuestring[0] && strlen(b->valuestring) < sizeof r->bucket)
                snprintf(r->bucket, sizeof r->bucket, "%s", b->valuestring);
            cJSON_Delete(j);
        }
        pl_str_free(&js);
    }
    if (!rc) rc = setup_client(r, 0, err);
    if (!rc) rc = pl_aws_check_credentials(r->aws, err);
    if (rc) goto done;
    pl_instance *v = NULL;
    size_t n = 0;
    rc = pl_ec2_describe_instances(r->aws, NULL, 0, "petal:run-id", r->run_id, &v, &n, err);
    if (rc) goto done;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].state, "terminated")) add_ids(r, &v[i], 1);
    free(v);
    char(*sgs)[32] = NULL;
    size_t nsg = 0;
    rc = pl_ec2_find_security_groups(r->aws, "petal:run-id", r->run_id, &sgs, &nsg, err);
    if (rc) goto done;
    fprintf(stderr, "petal launch --cleanup %s: %zu instance(s), %zu group(s), bucket %s\n",
            r->run_id, r->n_ids, nsg, r->bucket);
    r->bucket_created = 1;
    o.keep = 0;
    rc = terminate_and_wait(r, r->ids, r->n_ids, err);
    for (size_t i = 0; i < nsg && !rc; i++)
        rc = pl_ec2_delete_security_group(r->aws, sgs[i], 300, err);
    free(sgs);
    if (!rc) {
        size_t del = 0;
        rc = pl_s3_empty_and_delete_bucket(r->aws, r->bucket, &del, err);
    }
    if (!rc) {
        auth_dir_of(r);
        remove_auth_dir(r);
    }
    r->status = rc ? "cleanup-failed" : "cleaned";
    r->n_ids = 0;
    r->bucket_created = 0;
    save_state(r);
done:
    run_free(r);
    return rc;
}
