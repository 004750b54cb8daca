/* launch_run.c - 'petal launch': the run itself (provision, start the
 * instances, follow the agents, fail fast) and its progress display. */
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

/* ---- progress and logging ---- */
void pl_ui_end(run *r)
{
    if (r->tty_line) {
        fputc('\n', stderr);
        r->tty_line = 0;
    }
}

void pl_ui_step(run *r, const char *fmt, ...)
{
    r->step++;
    if (!r->o->progress) return;
    pl_ui_end(r);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%d/8] ", r->step);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void pl_ui_status(run *r, const char *fmt, ...)
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
    pl_ui_end(r);
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
                    pl_ui_end(r);
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
                    pl_ui_end(r);
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
        pl_ui_status(r, "%s: %zu/%zu running%s (%.0f s)", what, running, n,
                    status_ok ? (running == n ? ", waiting for status checks" : "") : "",
                    pt_now() - t0);
        if (pt_now() - t0 > r->o->boot_timeout_s) {
            pl_ui_end(r);
            for (size_t i = 0; i < n; i++) dump_console(r, v[i].id, what);
            rc = pt_seterr(err, PT_ERR_TIMEOUT, "%s not running with status checks ok after %.0f s",
                           what, r->o->boot_timeout_s);
            break;
        }
        pt_sleep(r->o->poll_s, r->stop);
    }
    pl_ui_end(r);
    free(ids);
    return rc;
}

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
    cJSON *j = cJSON_ParseWithLength(pl_str_c(&st), st.len);
    const cJSON *code = j ? cJSON_GetObjectItemCaseSensitive(j, "status") : NULL;
    const cJSON *stage = j ? cJSON_GetObjectItemCaseSensitive(j, "stage") : NULL;
    int failed = !cJSON_IsNumber(code) || code->valueint != 0;
    if (failed) {
        pl_ui_end(r);
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
            pl_result_key(r, k, file, exp[e++], sizeof exp[0]);
            pl_events_key(r, k, ag[a].name, exp[e++], sizeof exp[0]);
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
                        pl_ui_end(r);
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
        pl_ui_status(r, "%zu/%zu result files, %zu/%d strategies complete (%.0f s)", have, n_exp,
                    strat_done, o->n_strategies, el);
        if (el > o->timeout_s) {
            pl_ui_end(r);
            for (size_t a = 0; a < n_agents; a++) dump_console(r, ag[a].inst->id, ag[a].name);
            rc = pt_seterr(err, PT_ERR_TIMEOUT,
                           "deadline of %.0f s passed with %zu/%zu result files (raise --timeout)",
                           o->timeout_s, have, n_exp);
            break;
        }
        pt_sleep(o->poll_s, r->stop);
    }
    pl_ui_end(r);
    free(exp);
    free(ids);
    free(ag);
    return rc;
}

/* Make the run's CA, server and client certificates and token in a fresh
 * 0700 directory and upload them under auth/ (see pl_launch_run). */
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
    int rc = pl_prepare_role(r, role, server_ip, have_data, &man, &ud, 1, err);
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
    if (*n) pl_run_add_ids(r, *v, *n);
    pl_str_free(&man);
    pl_str_free(&ud);
    return rc;
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
    if (o.dry_run) {
        rc = pl_run_setup_client(r, 1, err);
        if (!rc && planout) rc = pl_launch_plan(r, planout, err);
        pl_run_free(r);
        return rc;
    }
    if (!o.dist_tarball) return pt_seterr(err, PT_ERR_INVAL, "no source tarball (run 'make dist')");
    struct stat st;
    if (stat(o.dist_tarball, &st) || !S_ISREG(st.st_mode))
        return pt_seterr(err, PT_ERR_IO, "source tarball %s not found", o.dist_tarball);
    int have_data = o.dataset && !stat(o.dataset, &st) && S_ISDIR(st.st_mode);
    r->have_model = pl_is_file(o.model);
    rc = pl_run_setup_client(r, 0, err);
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
    /* every artifact is read before anything is created: no credential file
     * and none of the user's secret bytes leave this machine */
    rc = pl_check_artifact(o.dist_tarball, "the source tarball", &r->creds, 1, err);
    if (!rc && r->have_model) rc = pl_check_artifact(o.model, "the model file", &r->creds, 0, err);
    if (!rc && have_data) {
        data_fd = mkstemp(data_tgz);
        if (data_fd < 0) rc = pt_seterr(err, PT_ERR_IO, "mkstemp: %s", strerror(errno));
        if (!rc) rc = pl_tar_dir(o.dataset, data_tgz, err);
        if (!rc) rc = pl_check_artifact(data_tgz, "the dataset archive", &r->creds, 1, err);
    }
    if (rc) goto out_free;
    rc = pl_state_path(r, err);
    if (rc) goto out_free;
    pl_state_save(r);
    char e2[PT_ERRLEN];

    pl_ui_step(r, "bucket %s: create, upload source%s%s", r->bucket, have_data ? " and dataset" : "",
         r->auth ? ", run certificates and token" : "");
    rc = pl_s3_create_bucket(r->aws, r->bucket, err);
    if (rc) goto fail;
    r->bucket_created = 1;
    pl_state_save(r);
    rc = pl_run_upload_file(r, o.dist_tarball, PL_KEY_ARTIFACT_SRC, err);
    if (rc) goto fail;
    if (r->have_model) {
        rc = pl_run_upload_file(r, o.model, PL_KEY_ARTIFACT_MODEL, err);
        if (rc) goto fail;
    }
    if (have_data) {
        rc = pl_run_upload_file(r, data_tgz, PL_KEY_ARTIFACT_DATA, err);
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

    pl_ui_step(r, "security group: Flower ports %d-%d from the group only%s%s", o.port,
         o.port + o.n_strategies - 1, o.ssh_cidr ? ", SSH from " : "", o.ssh_cidr ? o.ssh_cidr : "");
    char gname[96], gdesc[160], nm[96];
    snprintf(gname, sizeof gname, "petal-%.40s", r->run_id);
    snprintf(gdesc, sizeof gdesc, "Petal run %.40s: Flower between its instances", r->run_id);
    pl_tag tags[2] = {{"petal:run-id", r->run_id}, {"Name", nm}};
    snprintf(nm, sizeof nm, "petal-%.40s", r->run_id);
    rc = pl_ec2_create_security_group(r->aws, gname, gdesc, tags, 2, r->sg, err);
    if (rc) goto fail;
    pl_state_save(r);
    rc = pl_ec2_authorize_ingress(r->aws, r->sg, o.port, o.port + o.n_strategies - 1, r->sg, NULL,
                                  err);
    if (!rc && o.ssh_cidr) rc = pl_ec2_authorize_ingress(r->aws, r->sg, 22, 22, NULL, o.ssh_cidr, err);
    if (rc) goto fail;
    if (*r->stop) goto interrupted;

    pl_ui_step(r, "AMI");
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

    pl_ui_step(r, "server: RunInstances, wait for running and status checks");
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

    pl_ui_step(r, "clients: RunInstances x %d, wait for running", o.n_clients);
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

    pl_ui_step(r, "agents running: waiting for %d strategies' results in s3://%s", o.n_strategies,
         r->bucket);
    rc = poll_results(r, err);
    if (rc) goto fail;

    pl_ui_step(r, "download and verify results into %s", o.out_dir);
    size_t saved = 0, bad = 0;
    rc = pl_run_collect(r, &saved, &bad, err);
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

    pl_ui_step(r, "clean up: terminate instances, delete group%s, delete bucket",
         o.keep ? " (kept: --keep)" : "");
    r->status = "done";
    rc = pl_run_cleanup(r, 1, err);
    goto out_free;

interrupted:
    rc = pt_seterr(err, PT_ERR_INTERRUPTED, "interrupted");
fail:
    pl_ui_end(r);
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
            if (!pl_run_collect(r, &nsaved, &nbad, e3)) {
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
        pl_run_cleanup(r, del, e4);
        if (err) snprintf(err, PT_ERRLEN, "%s", keep_err);
    }
out_free:
    if (data_fd >= 0) {
        close(data_fd);
        remove(data_tgz);
    }
    pl_run_free(r);
    return rc;
}
