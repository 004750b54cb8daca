/* launch_run.c - 'petal launch': the run itself (check, provision, start the
 * instances, follow the agents live, fail fast) and its progress display. */
#include "aws_int.h"
#include "launch_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEBIAN_OWNER "136693071363"
#define DEBIAN_PATTERN "debian-12-amd64-*"
#define STATUS_MAX 65536
#define N_STEPS 8

/* ---- progress display (stderr, TTY only) ----
 * A live block of lines is redrawn in place: the next draw moves the
 * cursor up over it. pl_ui_end leaves it on screen (before other output). */
void pl_ui_end(run *r)
{
    r->tty_lines = 0;
}

static void ui_begin(run *r)
{
    if (r->tty_lines) fprintf(stderr, "\033[%dA", r->tty_lines);
    r->tty_lines = 0;
}

static void ui_line(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ui_line(run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("\r      ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\033[K\n", stderr);
    va_end(ap);
    r->tty_lines++;
}

void pl_ui_step(run *r, const char *fmt, ...)
{
    r->step++;
    if (!r->o->progress) return;
    pl_ui_end(r);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%d/%d] ", r->step, N_STEPS);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void pl_ui_status(run *r, const char *fmt, ...)
{
    if (!r->o->progress) return;
    ui_begin(r);
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ui_line(r, "%s", buf);
}

/* Last `lines` lines of text, made printable (an instance's console or log
 * is hostile: no terminal escapes reach the user's terminal). */
static void print_tail(const char *text, size_t n, int lines)
{
    size_t start = n;
    int seen = 0;
    while (start > 0) {
        if (text[start - 1] == '\n' && ++seen > lines) break;
        start--;
    }
    char line[400];
    for (const char *p = text + start; p < text + n;) {
        size_t l = 0;
        while (p + l < text + n && p[l] != '\n') l++;
        size_t k = 0;
        for (size_t i = 0; i < l && k < sizeof line - 1; i++) {
            unsigned char c = (unsigned char)p[i];
            line[k++] = (c >= 0x20 && c < 0x7f) || c == '\t' ? (char)c : '?';
        }
        line[k] = 0;
        if (l) PT_ERROR("  | %s", line);
        p += l + 1;
    }
    if (!n) PT_ERROR("  | (empty)");
}

static void dump_console(run *r, const char *id, const char *label)
{
    pl_str con = {0};
    char e[PT_ERRLEN];
    pl_ui_end(r);
    if (pl_ec2_console_output(r->aws, id, &con, e)) {
        PT_ERROR("%s (%s): no console output (%s)", label, id, e);
    } else {
        PT_ERROR("%s (%s): last console output lines:", label, id);
        print_tail(pl_str_c(&con), con.len, 25);
    }
    pl_str_free(&con);
}

/* ---- before anything is created ---- */
/* Learner Lab rules and the instances already running in the account. */
static int check_account(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    char arn[512], e2[PT_ERRLEN];
    if (pl_sts_caller_arn(r->aws, arn, sizeof arn, e2)) {
        PT_WARN("cannot tell whether this is a Learner Lab (%s); applying its limits", e2);
        r->learner_lab = 1;
    } else {
        r->learner_lab = pl_is_learner_lab(arn);
    }
    int live = 0, vcpus = 0;
    int rc = pl_ec2_count_live(r->aws, &live, &vcpus, err);
    if (rc) return rc;
    int mine = o->n_clients + 1;
    int my_vcpus = o->n_clients * pl_instance_vcpus(o->instance_type) +
                   pl_instance_vcpus(pl_server_type(o));
    if (live && o->progress)
        fprintf(stderr, "      %d instance(s) (%d vCPUs) already running in %s\n", live, vcpus,
                r->region);
    if (!r->learner_lab) return PT_OK;
    const char *types[2] = {o->instance_type, pl_server_type(o)};
    for (int i = 0; i < 2; i++) {
        const char *dot = strchr(types[i], '.');
        const char *sz = dot ? dot + 1 : "";
        if (strcmp(sz, "nano") && strcmp(sz, "micro") && strcmp(sz, "small") &&
            strcmp(sz, "medium") && strcmp(sz, "large"))
            return pt_seterr(err, PT_ERR_RANGE,
                             "%s: the AWS Academy Learner Lab allows instance sizes nano, micro, "
                             "small, medium and large only (e.g. t3.large, r5.large)",
                             types[i]);
    }
    if (strcmp(r->region, "us-east-1") && strcmp(r->region, "us-west-2"))
        return pt_seterr(err, PT_ERR_RANGE, "region %s: the Learner Lab allows us-east-1 and "
                         "us-west-2 only", r->region);
    if (live + mine > PL_LAB_MAX_INSTANCES)
        return pt_seterr(err, PT_ERR_RANGE,
                         "%d instance(s) already running + %d for this run = %d; the Learner Lab "
                         "allows %d at a time (20 deactivates the account): terminate some or "
                         "use fewer --n-client-instances",
                         live, mine, live + mine, PL_LAB_MAX_INSTANCES);
    if (vcpus + my_vcpus > PL_LAB_MAX_VCPUS)
        return pt_seterr(err, PT_ERR_RANGE,
                         "%d vCPUs already running + %d for this run; the Learner Lab allows %d",
                         vcpus, my_vcpus, PL_LAB_MAX_VCPUS);
    return PT_OK;
}

/* A run id used before must be cleaned up before it is used again. */
static int check_run_id_free(run *r, char *err)
{
    pl_str js = {0};
    char e2[PT_ERRLEN];
    int rc = PT_OK;
    if (!pl_file_read(r->state_path, &js, 1 << 20, e2)) {
        cJSON *j = pt_json_parse(pl_str_c(&js), js.len, NULL);
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
        if (!cJSON_IsString(st) || strcmp(st->valuestring, "cleaned"))
            rc = pt_seterr(err, PT_ERR_STATE,
                           "run %s exists (state file %s, status %s): 'petal launch --status "
                           "%s' shows it, 'petal launch --cleanup %s' removes it",
                           r->run_id, r->state_path,
                           cJSON_IsString(st) ? st->valuestring : "unreadable", r->run_id,
                           r->run_id);
        cJSON_Delete(j);
    }
    pl_str_free(&js);
    return rc;
}

/* Read every artifact before anything is created: no credential file and
 * none of the user's secret bytes leave this machine. */
static int check_artifacts(run *r, char *data_tgz, int *data_fd, char *err)
{
    const pl_launch_opts *o = r->o;
    int rc = pl_check_artifact(o->dist_tarball, "the source tarball", &r->creds, 1, err);
    if (!rc && r->have_model) rc = pl_check_artifact(o->model, "the model file", &r->creds, 0, err);
    if (!rc && o->agent_binary)
        rc = pl_check_artifact(o->agent_binary, "the agent binary", &r->creds, 0, err);
    if (!rc && r->data_dir) {
        *data_fd = mkstemp(data_tgz);
        if (*data_fd < 0) return pt_seterr(err, PT_ERR_IO, "mkstemp: %s", strerror(errno));
        rc = pl_tar_dir(r->data_dir, data_tgz, err);
        if (!rc) rc = pl_check_artifact(data_tgz, "the dataset archive", &r->creds, 1, err);
    }
    return rc;
}

/* ---- provisioning ---- */
static int make_auth(run *r, char *err)
{
    pl_auth_dir_set(r);
    pl_auth_dir_remove(r); /* a leftover of an earlier run with the same id */
    if (mkdir(r->auth_dir, 0700))
        return pt_seterr(err, PT_ERR_IO, "cannot create %s: %s", r->auth_dir, strerror(errno));
    double secs = r->o->timeout_s + 2 * r->o->boot_timeout_s + 3600;
    int days = (int)(secs / 86400) + 2;
    char e2[PT_ERRLEN];
    if (!r->o->make_auth)
        return pt_seterr(err, PT_ERR_INVAL, "no certificate maker (pl_launch_opts.make_auth)");
    int rc = r->o->make_auth(r->auth_dir, "DNS:" PL_AUTH_SERVER_NAME, days, e2, r->o->auth_ud);
    if (rc) return pt_seterr(err, rc, "run certificates: %s", e2);
    for (size_t i = 0; i < PL_N_AUTH_FILES && !rc; i++) {
        char p[1600];
        snprintf(p, sizeof p, "%s/%s", r->auth_dir, pl_auth_files[i].local);
        rc = pl_run_upload_file(r, p, pl_auth_files[i].key, err);
    }
    return rc;
}

/* the launcher's own binary for every instance: bin/petal + its SHA-256 */
static int upload_binary(run *r, char *err)
{
    pl_str data = {0};
    char hex[65];
    int rc = pl_file_read(r->o->agent_binary, &data, PL_MAX_OBJECT, err);
    if (!rc) rc = pl_s3_put(r->aws, r->bucket, PL_KEY_BIN, data.data, data.len, NULL, NULL, err);
    if (!rc) {
        pl_sha256_hex(data.data ? data.data : "", data.len, hex);
        hex[64] = '\n';
        rc = pl_s3_put(r->aws, r->bucket, PL_KEY_BIN_SHA, hex, 65, "text/plain", NULL, err);
    }
    pl_str_free(&data);
    return rc;
}

/* Bucket (new and empty: an earlier run's objects would pass for ours) and
 * the artifacts. */
static int upload_artifacts(run *r, const char *data_tgz, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_step(r, "bucket %s: create, upload source%s%s%s", r->bucket,
               r->data_dir ? ", dataset" : "", o->agent_binary ? ", agent binary" : "",
               r->auth ? ", run certificates and token" : "");
    int rc = pl_s3_create_bucket(r->aws, r->bucket, err);
    if (rc) return rc;
    pl_s3_object *objs = NULL;
    size_t n = 0;
    rc = pl_s3_list(r->aws, r->bucket, NULL, 10, &objs, &n, err);
    free(objs);
    if (rc) return rc;
    if (n)
        return pt_seterr(err, PT_ERR_STATE,
                         "bucket %s already holds objects of an earlier run %s: 'petal launch "
                         "--cleanup %s' collects and removes them",
                         r->bucket, r->run_id, r->run_id);
    r->bucket_created = 1;
    pl_state_save(r);
    rc = pl_run_upload_file(r, o->dist_tarball, PL_KEY_ARTIFACT_SRC, err);
    if (!rc && r->have_model) rc = pl_run_upload_file(r, o->model, PL_KEY_ARTIFACT_MODEL, err);
    if (!rc && r->data_dir) rc = pl_run_upload_file(r, data_tgz, PL_KEY_ARTIFACT_DATA, err);
    if (!rc && o->agent_binary) rc = upload_binary(r, err);
    if (!rc && r->auth) {
        rc = make_auth(r, err);
        if (!rc && o->progress)
            fprintf(stderr, "      per-run CA, server + client certificates and token made "
                    "(mutual TLS + token; local copy %s)\n", r->auth_dir);
    }
    return rc;
}

/* EC2's answer when the account has no default VPC */
static int vpc_hint(int rc, char *err)
{
    if (rc && err && (strstr(err, "VPCIdNotSpecified") || strstr(err, "MissingInput") ||
                      strstr(err, "No default VPC"))) {
        size_t l = strlen(err);
        snprintf(err + l, PT_ERRLEN - l, " (this account has no default VPC: pass --subnet-id "
                 "of a subnet with internet access)");
    }
    return rc;
}

static int make_group(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_step(r, "security group: Flower ports %d-%d from the group only%s%s", o->port,
               o->port + o->n_strategies - 1, o->ssh_cidr ? ", SSH from " : "",
               o->ssh_cidr ? o->ssh_cidr : "");
    int rc = PT_OK;
    if (o->subnet_id) {
        rc = pl_ec2_subnet_vpc(r->aws, o->subnet_id, r->vpc, err);
        if (rc) return rc;
    }
    char gname[96], gdesc[160];
    snprintf(gname, sizeof gname, "petal-%.40s", r->run_id);
    snprintf(gdesc, sizeof gdesc, "Petal run %.40s: Flower between its instances", r->run_id);
    pl_tag tags[2] = {{"petal:run-id", r->run_id}, {"Name", gname}};
    rc = vpc_hint(pl_ec2_create_security_group(r->aws, gname, gdesc, r->vpc[0] ? r->vpc : NULL,
                                               tags, 2, r->sg, err),
                  err);
    if (rc) return rc;
    pl_state_save(r);
    rc = pl_ec2_authorize_ingress(r->aws, r->sg, o->port, o->port + o->n_strategies - 1, r->sg,
                                  NULL, err);
    if (!rc && o->ssh_cidr)
        rc = pl_ec2_authorize_ingress(r->aws, r->sg, 22, 22, NULL, o->ssh_cidr, err);
    return rc;
}

static int find_ami(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_step(r, "AMI");
    char e2[PT_ERRLEN];
    int rc = PT_OK;
    if (o->ami) {
        snprintf(r->ami, sizeof r->ami, "%s", o->ami);
    } else {
        rc = pl_ssm_get_parameter(r->aws, o->ami_parameter, r->ami, sizeof r->ami, e2);
        if (rc && rc != PT_ERR_AUTH) {
            PT_WARN("SSM %s: %s; falling back to DescribeImages", o->ami_parameter, e2);
            char ami[32];
            rc = pl_ec2_newest_image(r->aws, DEBIAN_OWNER, DEBIAN_PATTERN, ami, err);
            if (!rc) snprintf(r->ami, sizeof r->ami, "%s", ami);
        } else if (rc) {
            pt_seterr(err, rc, "%s", e2);
        }
        if (rc) return rc;
    }
    if (strncmp(r->ami, "ami-", 4) || !pl_valid_name(r->ami, 40))
        return pt_seterr(err, PT_ERR_PROTO, "AMI lookup returned '%.60s'", r->ami);
    if (o->progress) fprintf(stderr, "      %s\n", r->ami);
    return PT_OK;
}

/* Prepare `role`'s user data and start `count` instances of it, tagged with the
 * run id and Name petal-RUN-role (idempotency token unique to this launch);
 * their ids join the run's. What started (also when a later step failed) is
 * in *v / *n, the caller's to free. */
static int run_role(run *r, const char *role, const char *server_ip, int count, pl_instance **v,
                    size_t *n, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_str man = {0}, ud = {0};
    char nm[96], token[80];
    int rc = pl_prepare_role(r, role, server_ip, &man, &ud, 1, err);
    snprintf(nm, sizeof nm, "petal-%.40s-%s", r->run_id, role);
    snprintf(token, sizeof token, "petal-%.40s-%s-%s", r->run_id, r->nonce, role);
    pl_tag tags[2] = {{"petal:run-id", r->run_id}, {"Name", nm}};
    pl_run_opts ro = {.image_id = r->ami,
                      .subnet_id = o->subnet_id,
                      .instance_type = strcmp(role, "server") ? o->instance_type
                                                              : pl_server_type(o),
                      .count = count,
                      .user_data = ud.data,
                      .security_group_id = r->sg,
                      .key_name = o->key_name,
                      .instance_profile = o->instance_profile,
                      .tags = tags,
                      .n_tags = 2,
                      .client_token = token};
    *v = NULL;
    *n = 0;
    if (!rc) rc = vpc_hint(pl_ec2_run_instances(r->aws, &ro, v, n, err), err);
    if (*n) pl_run_add_ids(r, *v, *n);
    pl_str_free(&man);
    pl_str_free(&ud);
    return rc;
}

/* The server's private IP normally comes with RunInstances; otherwise wait. */
static int server_ip(run *r, char *err)
{
    double t0 = pt_now();
    while (!r->server.private_ip[0]) {
        if (*r->stop) return pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
        if (pt_now() - t0 > r->o->boot_timeout_s)
            return pt_seterr(err, PT_ERR_TIMEOUT, "server %s has no private IP after %.0f s",
                             r->server.id, r->o->boot_timeout_s);
        pt_sleep(r->o->poll_s, r->stop);
        const char *ids[1] = {r->server.id};
        pl_instance *d = NULL;
        size_t nd = 0;
        char e2[PT_ERRLEN];
        int rc = pl_ec2_describe_instances(r->aws, ids, 1, NULL, NULL, &d, &nd, e2);
        if (rc && rc != PT_ERR_NOTFOUND) {
            free(d);
            return pt_seterr(err, rc, "%s", e2);
        }
        if (nd && d[0].private_ip[0])
            snprintf(r->server.private_ip, sizeof r->server.private_ip, "%s", d[0].private_ip);
        free(d);
    }
    return PT_OK;
}

static int init_agents(run *r, char *err)
{
    r->n_agents = 1 + r->n_clients;
    r->agents = calloc(r->n_agents, sizeof *r->agents);
    if (!r->agents) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    snprintf(r->agents[0].name, sizeof r->agents[0].name, "server");
    r->agents[0].inst = &r->server;
    for (size_t i = 0; i < r->n_clients; i++) {
        int li = r->clients[i].launch_index >= 0 ? r->clients[i].launch_index : (int)i;
        snprintf(r->agents[i + 1].name, sizeof r->agents[i + 1].name, "client_%d", li);
        r->agents[i + 1].inst = &r->clients[i];
    }
    return PT_OK;
}

/* Server first; the clients right after it, with the private IP RunInstances
 * returned (no wait for the server's status checks). */
static int start_instances(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_step(r, "instances: 1 server (%s) + %d client(s) (%s)", pl_server_type(o),
               o->n_clients, o->instance_type);
    pl_instance *v;
    size_t n;
    int rc = run_role(r, "server", NULL, 1, &v, &n, err);
    if (n) r->server = v[0];
    free(v);
    r->t_instances = pt_wall();
    if (!rc) rc = server_ip(r, err);
    if (rc) return rc;
    if (o->progress) fprintf(stderr, "      server %s at %s\n", r->server.id, r->server.private_ip);
    rc = run_role(r, "client", r->server.private_ip, o->n_clients, &v, &n, err);
    if (n) {
        r->clients = v;
        r->n_clients = n;
    } else {
        free(v);
    }
    if (!rc) rc = init_agents(r, err);
    if (!rc && o->progress)
        for (size_t i = 0; i < r->n_clients; i++)
            fprintf(stderr, "      client %s\n", r->clients[i].id);
    return rc;
}

/* ---- following the agents ---- */
static int dead_state(const char *s)
{
    return !strcmp(s, "shutting-down") || !strcmp(s, "terminated") || !strcmp(s, "stopping") ||
           !strcmp(s, "stopped");
}

static const pl_s3_object *find_obj(const pl_s3_object *objs, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(objs[i].key, key)) return &objs[i];
    return NULL;
}

/* Read agent a's status object when it changed (etag), or always (force). */
static void read_status(run *r, pl_agent_view *a, const char *etag, int force)
{
    if (!force && etag && !strcmp(etag, a->etag)) return;
    char key[96], e2[PT_ERRLEN], et[80] = "";
    snprintf(key, sizeof key, "agents/%s.status", a->name);
    pl_str body = {0};
    int rc = pl_s3_get(r->aws, r->bucket, key, STATUS_MAX, &body, et, e2);
    if (rc == PT_ERR_NOTFOUND) {
        pl_str_free(&body);
        return;
    }
    if (!rc) rc = pl_agent_parse_status(a, r->run_id, pl_str_c(&body), body.len, e2);
    if (rc) {
        pl_ui_end(r);
        PT_WARN("%s: %s", key, e2);
    }
    /* a bad object is reported once, not at every poll */
    snprintf(a->etag, sizeof a->etag, "%s", et[0] ? et : (etag ? etag : ""));
    pl_str_free(&body);
}

static void report_failure(run *r, pl_agent_view *a, char *err)
{
    char key[96], e2[PT_ERRLEN];
    pl_ui_end(r);
    snprintf(key, sizeof key, "agents/%s.log", a->name);
    pl_str log = {0};
    if (!pl_s3_get(r->aws, r->bucket, key, 1 << 20, &log, NULL, e2)) {
        PT_ERROR("agent %s (%s) failed at stage '%s'; the end of its log:", a->name, a->inst->id,
                 a->stage);
        print_tail(pl_str_c(&log), log.len, 25);
    } else {
        PT_ERROR("agent %s (%s): no log (%s)", a->name, a->inst->id, e2);
    }
    pl_str_free(&log);
    pt_seterr(err, PT_ERR_STATE, "agent %s on %s failed at stage '%s' (exit status %d)%s",
              a->name, a->inst->id, a->stage, a->exit_code,
              r->o->keep_on_failure ? "" : "; it shut its instance down");
}

static void stage_text(const pl_agent_view *a, char *buf, size_t cap)
{
    static const struct {
        const char *stage, *text;
    } names[] = {{"boot", "booting"}, {"imds", "instance metadata"}, {"manifest", "manifest"},
                 {"artifacts", "downloading"}, {"packages", "installing packages"},
                 {"build", "building petal"}, {"share", "sharing the binary"},
                 {"binary", "waiting for the binary"}, {"done", "done"}};
    if (!a->have_status) {
        snprintf(buf, cap, "%s", a->inst->state[0] ? a->inst->state : "pending");
        return;
    }
    if (a->failed) {
        snprintf(buf, cap, "FAILED at %s (exit status %d)", a->stage, a->exit_code);
        return;
    }
    if (!strncmp(a->stage, "run:", 4)) {
        if (a->round > 0)
            snprintf(buf, cap, "%s %d/%d: round %d/%d", a->strategy, a->k, a->n_strat, a->round,
                     a->rounds);
        else
            snprintf(buf, cap, "%s %d/%d: %s", a->strategy, a->k, a->n_strat,
                     strcmp(a->name, "server") ? "joining" : "waiting for clients");
        return;
    }
    if (!strncmp(a->stage, "upload:", 7)) {
        snprintf(buf, cap, "%s %d/%d: uploading", a->strategy, a->k, a->n_strat);
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(a->stage, names[i].stage)) {
            snprintf(buf, cap, "%s", names[i].text);
            return;
        }
    snprintf(buf, cap, "%s", a->stage);
}

static void draw(run *r, size_t have, size_t n_exp, size_t strat_done, double el)
{
    if (!r->o->progress) return;
    ui_begin(r);
    double now = pt_wall();
    for (size_t i = 0; i < r->n_agents; i++) {
        const pl_agent_view *a = &r->agents[i];
        char st[160];
        stage_text(a, st, sizeof st);
        double since = a->n_ph ? now - a->ph[a->n_ph - 1].t : -1;
        if (since >= 0 && !a->final)
            ui_line(r, "%-10s %-20s %s (%.0f s)", a->name, a->inst->id, st, since);
        else
            ui_line(r, "%-10s %-20s %s", a->name, a->inst->id, st);
    }
    ui_line(r, "%zu/%zu result files, %zu/%d strategies complete (%.0f s)", have, n_exp,
            strat_done, r->o->n_strategies, el);
}

/* Count the expected result objects present. */
static void count_results(run *r, const pl_s3_object *objs, size_t n, size_t *have,
                          size_t *strat_done)
{
    *have = *strat_done = 0;
    for (int k = 0; k < r->o->n_strategies; k++) {
        size_t hk = 0;
        for (size_t a = 0; a < r->n_agents; a++) {
            char key[1024], file[64];
            snprintf(file, sizeof file, "%s_log.log", r->agents[a].name);
            pl_result_key(r, k, file, key, sizeof key);
            hk += find_obj(objs, n, key) != NULL;
            pl_events_key(r, k, r->agents[a].name, key, sizeof key);
            hk += find_obj(objs, n, key) != NULL;
        }
        *have += hk;
        if (hk == r->n_agents * 2) (*strat_done)++;
    }
}

/* One look at the instances: dead ones must have reported their end; a
 * running one that never reported fails after --boot-timeout. */
static int check_instances(run *r, const char **ids, size_t have, size_t n_exp, char *err)
{
    pl_instance *d = NULL;
    size_t nd = 0;
    char e2[PT_ERRLEN];
    int rc = pl_ec2_describe_instances(r->aws, ids, r->n_agents, NULL, NULL, &d, &nd, e2);
    if (rc == PT_ERR_NOTFOUND) rc = PT_OK; /* eventual consistency right after RunInstances */
    if (rc) {
        free(d);
        return pt_seterr(err, rc, "%s", e2);
    }
    double now = pt_wall();
    for (size_t i = 0; i < nd && !rc; i++)
        for (size_t j = 0; j < r->n_agents && !rc; j++) {
            pl_agent_view *a = &r->agents[j];
            if (strcmp(a->inst->id, d[i].id)) continue;
            snprintf(a->inst->state, sizeof a->inst->state, "%s", d[i].state);
            if (!strcmp(d[i].state, "running") && !a->seen_running) a->seen_running = now;
            if (a->final) continue;
            if (dead_state(d[i].state)) {
                read_status(r, a, NULL, 1); /* its last words may have just arrived */
                if (a->final) continue;
                dump_console(r, d[i].id, a->name);
                rc = pt_seterr(err, PT_ERR_STATE,
                               "instance %s (%s) is %s before its results arrived (%zu/%zu "
                               "result files)",
                               d[i].id, a->name, d[i].state, have, n_exp);
            } else if (!a->have_status && a->seen_running &&
                       now - a->seen_running > r->o->boot_timeout_s) {
                dump_console(r, d[i].id, a->name);
                rc = pt_seterr(err, PT_ERR_TIMEOUT,
                               "instance %s (%s) has been running for %.0f s without a status: "
                               "its user-data did not run or cannot reach S3",
                               d[i].id, a->name, now - a->seen_running);
            }
        }
    free(d);
    return rc;
}

static int follow_agents(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_step(r, "agents: %d strateg%s x %d round(s); results in s3://%s", o->n_strategies,
               o->n_strategies == 1 ? "y" : "ies", o->num_rounds, r->bucket);
    size_t n_exp = (size_t)o->n_strategies * r->n_agents * 2;
    const char **ids = calloc(r->n_agents, sizeof *ids);
    if (!ids) return pt_seterr(err, PT_ERR_NOMEM, "out of memory");
    for (size_t a = 0; a < r->n_agents; a++) ids[a] = r->agents[a].inst->id;
    double t0 = pt_now();
    int rc = PT_OK;
    for (;;) {
        if (*r->stop) {
            rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted while the agents were running");
            break;
        }
        pl_s3_object *objs = NULL;
        size_t n = 0, have, strat_done, finals = 0;
        char e2[PT_ERRLEN];
        rc = pl_s3_list(r->aws, r->bucket, NULL, 1000, &objs, &n, e2);
        if (rc) {
            pt_seterr(err, rc, "%s", e2);
            break;
        }
        for (size_t a = 0; a < r->n_agents && !rc; a++) {
            pl_agent_view *ag = &r->agents[a];
            char key[96];
            snprintf(key, sizeof key, "agents/%s.status", ag->name);
            const pl_s3_object *so = find_obj(objs, n, key);
            if (so && !ag->final) read_status(r, ag, so->etag, 0);
            if (ag->failed) {
                report_failure(r, ag, err);
                rc = PT_ERR_STATE;
            }
            finals += ag->final;
        }
        count_results(r, objs, n, &have, &strat_done);
        free(objs);
        if (rc) break;
        /* done when every result is in and every agent has reported its end
         * (its status is its last upload) */
        if (finals == r->n_agents) {
            if (have != n_exp)
                rc = pt_seterr(err, PT_ERR_STATE,
                               "every agent finished but only %zu of %zu result files arrived "
                               "(see the agent logs under %s/agents/%s)",
                               have, n_exp, o->out_dir, r->run_id);
            break;
        }
        rc = check_instances(r, ids, have, n_exp, err);
        if (rc) break;
        double el = pt_now() - t0;
        draw(r, have, n_exp, strat_done, el);
        if (el > o->timeout_s) {
            pl_ui_end(r);
            for (size_t a = 0; a < r->n_agents; a++)
                if (!r->agents[a].final) dump_console(r, ids[a], r->agents[a].name);
            rc = pt_seterr(err, PT_ERR_TIMEOUT,
                           "deadline of %.0f s passed with %zu/%zu result files (raise --timeout)",
                           o->timeout_s, have, n_exp);
            break;
        }
        pt_sleep(o->poll_s, r->stop);
    }
    pl_ui_end(r);
    free(ids);
    return rc;
}

/* ---- the end ---- */
static int finish(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_step(r, "download and verify results into %s", o->out_dir);
    size_t saved = 0, bad = 0;
    int rc = pl_run_collect(r, &saved, &bad, err);
    if (rc) return rc;
    if (bad) return pt_seterr(err, PT_ERR_IO, "%zu object(s) could not be downloaded and verified",
                              bad);
    if (o->progress) fprintf(stderr, "      %zu files verified (size + MD5)\n", saved);
    pl_ui_step(r, "report and timeline");
    if (o->report) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s", o->out_dir);
        if (o->report(dir, o->report_ud)) PT_WARN("petal report %s failed", dir);
    }
    pl_str tl = {0};
    pl_run_timeline(r, &tl);
    if (o->progress && tl.len) fputs(pl_str_c(&tl), stderr);
    pl_str_free(&tl);
    pl_ui_step(r, "clean up: terminate instances, delete group%s, delete bucket",
               o->keep ? " (kept: --keep)" : "");
    r->status = "done";
    return pl_run_cleanup(r, 1, o->keep, err);
}

/* After a failure or an interrupt: save whatever results arrived, then
 * clean up (the bucket stays, without its artifacts, when some object could
 * not be verified; --keep-on-failure leaves the instances). */
static void fail_cleanup(run *r, char *err)
{
    const pl_launch_opts *o = r->o;
    pl_ui_end(r);
    char keep_err[PT_ERRLEN];
    snprintf(keep_err, sizeof keep_err, "%s", err ? err : "");
    PT_ERROR("launch %s failed: %s", r->run_id, keep_err);
    if (o->progress)
        fprintf(stderr, "      cleaning up run %s (saving whatever results arrived)\n", r->run_id);
    pl_aws_set_stop(r->aws, NULL);
    size_t nsaved = 0, nbad = 0;
    int del = 0;
    if (r->bucket_created) {
        char e3[PT_ERRLEN];
        if (!pl_run_collect(r, &nsaved, &nbad, e3)) {
            del = nbad == 0;
            if (nsaved)
                PT_WARN("saved %zu result/log file(s) of the failed run under %s", nsaved,
                        o->out_dir);
        } else {
            PT_WARN("could not list the bucket: %s", e3);
        }
    }
    r->status = "failed";
    char e4[PT_ERRLEN];
    pl_run_cleanup(r, del, o->keep || o->keep_on_failure, e4);
    if (err) snprintf(err, PT_ERRLEN, "%s", keep_err);
}

static void session_warning(const run *r)
{
    const pl_launch_opts *o = r->o;
    if (!r->creds.token[0] || o->instance_profile) return;
    double hours = (o->timeout_s + 2 * o->boot_timeout_s) / 3600.0;
    if (hours > 3.5)
        PT_WARN("these are session credentials (Learner Lab: about 4 h) and the run may take up "
                "to %.1f h: presigned URLs die with the session. Use --instance-profile "
                "LabInstanceProfile or a shorter --timeout",
                hours);
    else
        PT_INFO("session credentials: the instances' presigned URLs expire with them; "
                "--instance-profile avoids that for long runs");
}

int pl_launch_run(const pl_launch_opts *oin, volatile int *stop, pl_str *planout, char *err)
{
    pl_launch_opts o = *oin;
    run R, *r = &R;
    char data_tgz[] = "/tmp/petal-dataset-XXXXXX";
    int data_fd = -1;
    pl_run_init(r, &o, stop);
    int rc = pl_launch_validate(&o, err);
    if (rc) return rc;
    if (o.run_id)
        snprintf(r->run_id, sizeof r->run_id, "%s", o.run_id);
    else
        pl_make_run_id(r->run_id, sizeof r->run_id);
    pl_bucket_of(r->run_id, r->bucket, sizeof r->bucket);
    r->auth = !o.no_auth;
    r->t_launch = pt_wall();
    r->deadline = (long long)(r->t_launch + o.timeout_s + 2 * o.boot_timeout_s + 1800);
    r->data_dir = pl_local_dataset(o.dataset);
    r->have_model = pl_is_file(o.model);
    if (o.dry_run) {
        rc = pl_run_setup_client(r, 1, err);
        if (!rc && planout) rc = pl_launch_plan(r, planout, err);
        pl_run_free(r);
        return rc;
    }
    if (!pl_is_file(o.dist_tarball))
        return pt_seterr(err, PT_ERR_IO, "source tarball %s not found (run 'make dist')",
                         o.dist_tarball ? o.dist_tarball : "(none)");
    rc = pl_run_setup_client(r, 0, err);
    if (!rc) rc = pl_state_path(r, err);
    if (!rc && o.run_id) rc = check_run_id_free(r, err);
    if (rc) goto out_free;
    if (o.progress)
        fprintf(stderr, "petal launch %s: %d client(s) (%s) + 1 server (%s) in %s, credentials "
                "from %s\n", r->run_id, o.n_clients, o.instance_type, pl_server_type(&o),
                r->region, r->creds.source);
    /* nothing is created before the credentials, the account's limits and
     * every artifact have been checked */
    rc = pl_aws_check_credentials(r->aws, err);
    if (!rc) rc = check_account(r, err);
    if (!rc) rc = check_artifacts(r, data_tgz, &data_fd, err);
    if (rc) goto out_free;
    session_warning(r);
    r->refresh_ok = 1; /* from here on, expired credentials are read again */
    pl_state_save(r);

    rc = upload_artifacts(r, data_tgz, err);
    if (!rc && *r->stop) rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
    if (!rc) rc = make_group(r, err);
    if (!rc && *r->stop) rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
    if (!rc) rc = find_ami(r, err);
    if (!rc) rc = start_instances(r, err);
    if (!rc) rc = follow_agents(r, err);
    if (!rc) {
        rc = finish(r, err);
        goto out_free;
    }
    fail_cleanup(r, err);
out_free:
    if (data_fd >= 0) {
        close(data_fd);
        remove(data_tgz);
    }
    pl_run_free(r);
    return rc;
}
