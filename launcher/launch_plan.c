/* launch_plan.c - 'petal launch': options, validation, what each instance
 * does (manifests, agent command lines, user-data) and the dry-run plan. */
#include "aws_int.h"
#include "launch_int.h"

#include <cjson/cJSON.h>
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

/* ---- validation ---- */
int pl_is_file(const char *p)
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

int pl_valid_name(const char *s, size_t max)
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

int pl_launch_validate(const pl_launch_opts *o, char *err)
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
    if (!pl_valid_name(o->instance_type, 40))
        return pt_seterr(err, PT_ERR_INVAL, "bad --instance-type '%s'", o->instance_type);
    if (o->port < 1024 || o->port + o->n_strategies - 1 > 65535)
        return pt_seterr(err, PT_ERR_RANGE, "--port must be 1024..%d", 65536 - o->n_strategies);
    if (o->model && !pl_is_file(o->model) && !pl_valid_name(o->model, 200))
        return pt_seterr(err, PT_ERR_INVAL, "--model '%s' is neither a preset name nor a local "
                         "JSON file", o->model);
    if (o->key_name && !pl_valid_name(o->key_name, 255))
        return pt_seterr(err, PT_ERR_INVAL, "bad --key-name");
    if (o->instance_profile && !pl_valid_name(o->instance_profile, 128))
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

int pl_presign_expiry(const run *r)
{
    double s = r->o->timeout_s + 2 * r->o->boot_timeout_s + 3600;
    return s > 604800 ? 604800 : (int)s;
}

static int build_manifest(run *r, const char *role, const char *server_ip, int have_data,
                          pl_str *out, char *err)
{
    const pl_launch_opts *o = r->o;
    int exp = pl_presign_expiry(r), rc = PT_OK;
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
        for (size_t i = 0; i < PL_N_AUTH_FILES && !rc; i++) {
            const pl_auth_file *f = &pl_auth_files[i];
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
            pl_result_key(r, k, file, key, sizeof key);
            rc = presign_or_key(r, "PUT", key, exp, ru, "log", err);
            pl_events_key(r, k, agent, key, sizeof key);
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
int pl_prepare_role(run *r, const char *role, const char *server_ip, int have_data,
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
    rc = pl_s3_presign(r->aws, "GET", r->bucket, key, pl_presign_expiry(r), &url, err);
    int guard = (int)((r->o->timeout_s + 2 * r->o->boot_timeout_s) / 60) + 30;
    if (!rc) rc = pl_render_user_data(r->run_id, role, pl_str_c(&url), guard, ud, err);
    pl_str_free(&url);
    return rc;
}

int pl_launch_plan(run *r, pl_str *out, char *err)
{
    const pl_launch_opts *o = r->o;
    int have_data = 0;
    struct stat st;
    if (o->dataset && !stat(o->dataset, &st) && S_ISDIR(st.st_mode)) have_data = 1;
    r->have_model = pl_is_file(o->model);
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
    int rc = pl_prepare_role(r, "server", NULL, have_data, &m1, &u1, 0, err);
    if (!rc) rc = pl_prepare_role(r, "client", "SERVER_PRIVATE_IP", have_data, &m2, &u2, 0, err);
    if (!rc) {
        pl_str_addf(out, "---- server manifest (manifest/server.json) ----\n%s\n", pl_str_c(&m1));
        pl_str_addf(out, "---- client manifest (manifest/client.json) ----\n%s\n", pl_str_c(&m2));
        pl_str_addf(out, "---- server user-data (%zu bytes) ----\n%s", u1.len, pl_str_c(&u1));
        pl_str_addf(out, "---- client user-data (%zu bytes) ----\n%s", u2.len, pl_str_c(&u2));
    }
    pl_str_free(&m1), pl_str_free(&u1), pl_str_free(&m2), pl_str_free(&u2);
    return rc;
}
