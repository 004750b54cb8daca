/* launch_state.c - 'petal launch': the run's state (run id, bucket, state file,
 * local certificate directory, AWS client) and its clean-up. */
#include "aws_int.h"
#include "launch_int.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- state file ---- */
int pl_mkdirs(const char *path)
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

void pl_state_save(run *r)
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
void pl_auth_dir_set(run *r)
{
    snprintf(r->auth_dir, sizeof r->auth_dir, "%.*s.auth",
             (int)(strlen(r->state_path) > 5 ? strlen(r->state_path) - 5 : 0), r->state_path);
}

/* Remove the local copy of the run's certificates, keys and token. */
void pl_auth_dir_remove(run *r)
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

int pl_run_add_ids(run *r, const pl_instance *v, size_t n)
{
    char(*ids)[32] = realloc(r->ids, (r->n_ids + n) * sizeof *ids);
    if (!ids) return PT_ERR_NOMEM;
    r->ids = ids;
    for (size_t i = 0; i < n; i++) snprintf(r->ids[r->n_ids++], 32, "%s", v[i].id);
    pl_state_save(r);
    return PT_OK;
}

/* ---- helpers ---- */
int pl_file_read(const char *path, pl_str *out, size_t max, char *err)
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

int pl_file_write(const char *path, const void *data, size_t n, char *err)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *sl = strrchr(dir, '/');
    if (sl) {
        *sl = 0;
        if (dir[0] && pl_mkdirs(dir))
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
int pl_tar_dir(const char *dir, const char *out, char *err)
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

/* ---- the run ---- */
static void random_bytes(unsigned char *b, size_t n)
{
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(b, 1, n, f) != n) {
        uint64_t x = pt_now_ns() ^ ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(x >> (8 * (i % 8)));
    }
    if (f) fclose(f);
}

void pl_make_run_id(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    unsigned char rnd[3];
    random_bytes(rnd, sizeof rnd);
    snprintf(out, cap, "%04d%02d%02d-%02d%02d%02d-%02x%02x%02x", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2]);
}

void pl_bucket_of(const char *run_id, char *out, size_t cap)
{
    snprintf(out, cap, "petal-%s", run_id);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
        else if (*p == '_' || *p == '.') *p = '-';
}

static int creds_differ(const pl_creds *a, const pl_creds *b)
{
    return strcmp(a->access_key, b->access_key) || strcmp(a->secret_key, b->secret_key) ||
           strcmp(a->token, b->token);
}

/* pl_aws_opts.refresh: credentials rejected mid-run (a Learner Lab session
 * ended). The run goes on on AWS; read the files again (the environment of a
 * running process cannot change) until the user pastes fresh ones. */
static int refresh_creds(pl_creds *fresh, const pl_creds *rejected, void *ud)
{
    run *r = ud;
    if (!r->refresh_ok) return PT_ERR_AUTH; /* before anything exists: fail fast */
    const pl_launch_opts *o = r->o;
    pl_creds_opts co = {.profile = o->profile, .env_file = o->env_file, .no_environment = 1};
    int stop0 = *r->stop, told = 0;
    double t0 = pt_now();
    for (;;) {
        char e[PT_ERRLEN];
        if (!pl_creds_load(fresh, &co, e) && creds_differ(fresh, rejected)) {
            pl_ui_end(r);
            PT_WARN("fresh credentials read from %s: carrying on", fresh->source);
            return PT_OK;
        }
        pl_creds_wipe(fresh);
        if (!told) {
            pl_ui_end(r);
            PT_WARN("AWS rejected the credentials from %s (expired session?). The run goes on "
                    "on AWS meanwhile. Paste fresh ones (Learner Lab: AWS Details > AWS CLI) "
                    "into %s or ~/.aws/credentials%s%s%s; waiting up to %.0f min (Ctrl-C gives "
                    "up)", rejected->source[0] ? rejected->source : "?",
                    o->env_file && o->env_file[0] ? o->env_file : "./.env",
                    o->profile ? " [" : "", o->profile ? o->profile : "", o->profile ? "]" : "",
                    o->creds_wait_s / 60);
            told = 1;
        }
        if (*r->stop != stop0) return PT_ERR_INTERRUPTED;
        if (pt_now() - t0 > o->creds_wait_s) {
            PT_ERROR("no fresh credentials after %.0f min: the instances terminate themselves at "
                     "their deadline; 'petal launch --cleanup %s' with fresh credentials "
                     "collects and removes the rest",
                     o->creds_wait_s / 60, r->run_id);
            return PT_ERR_TIMEOUT;
        }
        for (int i = 0; i < 10 && *r->stop == stop0; i++) pt_sleep(0.2, NULL);
    }
}

int pl_run_setup_client(run *r, int dry, char *err)
{
    const pl_launch_opts *o = r->o;
    int rc;
    if (dry) {
        /* placeholders; a session token of the real one's length keeps the
         * presigned URLs, and so the user-data, as long as in the real run */
        pl_creds real;
        pl_creds_opts co = {.profile = o->profile, .env_file = o->env_file};
        size_t tl = pl_creds_load(&real, &co, NULL) ? 0 : strlen(real.token);
        pl_creds_wipe(&real);
        memset(&r->creds, 0, sizeof r->creds);
        snprintf(r->creds.access_key, sizeof r->creds.access_key, "AKIADRYRUNEXAMPLE");
        snprintf(r->creds.secret_key, sizeof r->creds.secret_key, "dry-run-placeholder");
        memset(r->creds.token, 'T', tl < sizeof r->creds.token ? tl : sizeof r->creds.token - 1);
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
    pl_aws_opts ao = {.region = r->region, .stop = r->stop, .refresh = dry ? NULL : refresh_creds,
                      .refresh_ud = r};
    for (int s = 0; s < PL_NSERVICES; s++)
        ao.endpoint[s] = o->service_endpoint[s] ? o->service_endpoint[s] : o->endpoint_url;
    return pl_aws_new(&r->aws, &r->creds, &ao, err);
}

int pl_state_path(run *r, char *err)
{
    const char *dir = r->o->state_dir;
    char def[1024];
    if (!dir) {
        const char *home = getenv("HOME");
        snprintf(def, sizeof def, "%s/.petal/runs", home && home[0] ? home : ".");
        dir = def;
    }
    if (pl_mkdirs(dir))
        return pt_seterr(err, PT_ERR_IO, "cannot create the state directory %s: %s", dir,
                         strerror(errno));
    snprintf(r->state_path, sizeof r->state_path, "%s/%s.json", dir, r->run_id);
    return PT_OK;
}

int pl_run_upload_file(run *r, const char *path, const char *key, char *err)
{
    pl_str data = {0};
    int rc = pl_file_read(path, &data, PL_MAX_OBJECT, err);
    if (!rc) rc = pl_s3_put(r->aws, r->bucket, key, data.data, data.len, NULL, NULL, err);
    if (data.data) memset(data.data, 0, data.len); /* may be a private key or the token */
    pl_str_free(&data);
    return rc;
}

/* A run over the options o (defaults filled in); stop may be NULL. */
void pl_run_init(run *r, pl_launch_opts *o, volatile int *stop)
{
    static volatile int never;
    pl_launch_opts_default(o);
    memset(r, 0, sizeof *r);
    r->o = o;
    r->stop = stop ? stop : &never;
    unsigned char b[4];
    random_bytes(b, sizeof b);
    snprintf(r->nonce, sizeof r->nonce, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
}

void pl_run_free(run *r)
{
    if (r->aws) pl_aws_free(r->aws);
    pl_creds_wipe(&r->creds);
    free(r->ids);
    free(r->clients);
    free(r->agents);
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
        pl_ui_status(r, "terminating: %zu/%zu terminated (%.0f s)", gone, n, pt_now() - t0);
        if (pt_now() - t0 > 900) {
            rc = pt_seterr(err, PT_ERR_TIMEOUT, "instances still not terminated after 900 s");
            break;
        }
        pt_sleep(r->o->poll_s < 5 ? r->o->poll_s : 5, NULL);
    }
    pl_ui_end(r);
    free(v);
    return rc;
}

/* A kept bucket keeps the results only: the source, dataset, model,
 * binary, manifests (presigned URLs) and the run's keys and token go. */
static void strip_kept_bucket(run *r)
{
    static const char *const prefixes[] = {"artifacts/", "bin/", "manifest/", PL_KEY_AUTH_PREFIX};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        char e2[PT_ERRLEN];
        size_t n = 0;
        if (pl_s3_delete_prefix(r->aws, r->bucket, prefixes[i], &n, e2))
            PT_WARN("clean-up: %s", e2);
    }
}

/* Returns the first clean-up error (others are logged). */
int pl_run_cleanup(run *r, int delete_bucket, int keep_instances, char *err)
{
    int first = PT_OK;
    char e2[PT_ERRLEN];
    pl_aws_set_stop(r->aws, NULL);
    if (r->n_ids && !keep_instances) {
        if (r->o->progress) fprintf(stderr, "      terminating %zu instance(s)\n", r->n_ids);
        int rc = terminate_and_wait(r, r->ids, r->n_ids, e2);
        if (rc) {
            PT_ERROR("clean-up: %s", e2);
            if (!first) first = pt_seterr(err, rc, "clean-up: %s", e2);
        }
    } else if (r->n_ids) {
        PT_WARN("%s: %zu instance(s) left running (petal launch --cleanup %s removes them)",
                r->o->keep ? "--keep" : "--keep-on-failure", r->n_ids, r->run_id);
    }
    if (r->sg[0] && !keep_instances) {
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
            pl_ui_end(r);
            strip_kept_bucket(r);
            PT_WARN("keeping bucket %s (results only): not every object in it was downloaded "
                    "and verified; 'petal launch --cleanup %s' tries again",
                    r->bucket, r->run_id);
            fprintf(stderr, "petal launch: results bucket kept: s3://%s\n", r->bucket);
        }
    }
    if (r->auth_dir[0] && !keep_instances) {
        pl_auth_dir_remove(r);
    } else if (r->auth_dir[0]) {
        PT_WARN("the run's certificates and token stay in %s with the instances (removed by "
                "petal launch --cleanup %s)", r->auth_dir, r->run_id);
    }
    r->status = first                                   ? "cleanup-failed"
                : keep_instances && r->n_ids            ? "kept"
                : r->bucket_created                     ? "bucket-kept"
                                                        : "cleaned";
    pl_state_save(r);
    return first;
}

void pl_state_load(run *r, pl_launch_opts *o)
{
    pl_str js = {0};
    char e2[PT_ERRLEN];
    if (pl_file_read(r->state_path, &js, 1 << 20, e2)) return;
    cJSON *j = pt_json_parse(pl_str_c(&js), js.len, NULL);
    const cJSON *reg = cJSON_GetObjectItemCaseSensitive(j, "region");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "bucket");
    if (cJSON_IsString(reg) && !o->region && pl_valid_name(reg->valuestring, 31)) {
        snprintf(r->opt_region, sizeof r->opt_region, "%s", reg->valuestring);
        o->region = r->opt_region;
    }
    if (cJSON_IsString(b) && b->valuestring[0] && pl_valid_name(b->valuestring, 63))
        snprintf(r->bucket, sizeof r->bucket, "%s", b->valuestring);
    cJSON_Delete(j);
    pl_str_free(&js);
}

/* Set up r for a run that exists (o->run_id): state file, client, checked
 * credentials. */
int pl_run_attach(run *r, pl_launch_opts *o, const char *what, char *err)
{
    if (!o->run_id || !pl_valid_name(o->run_id, 40))
        return pt_seterr(err, PT_ERR_INVAL, "%s needs a run id", what);
    snprintf(r->run_id, sizeof r->run_id, "%s", o->run_id);
    pl_bucket_of(r->run_id, r->bucket, sizeof r->bucket);
    int rc = pl_state_path(r, err);
    if (!rc) pl_state_load(r, o);
    if (!rc) rc = pl_run_setup_client(r, 0, err);
    if (!rc) rc = pl_aws_check_credentials(r->aws, err);
    if (!rc) r->refresh_ok = 1;
    return rc;
}

int pl_launch_cleanup(const pl_launch_opts *oin, volatile int *stop, char *err)
{
    pl_launch_opts o = *oin;
    run R, *r = &R;
    pl_run_init(r, &o, stop);
    int rc = pl_run_attach(r, &o, "--cleanup", err);
    if (rc) goto done;
    pl_instance *v = NULL;
    size_t n = 0;
    rc = pl_ec2_describe_instances(r->aws, NULL, 0, "petal:run-id", r->run_id, &v, &n, err);
    if (rc) goto done;
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].state, "terminated")) pl_run_add_ids(r, &v[i], 1);
    free(v);
    char(*sgs)[32] = NULL;
    size_t nsg = 0;
    rc = pl_ec2_find_security_groups(r->aws, "petal:run-id", r->run_id, &sgs, &nsg, err);
    if (rc) goto done;
    fprintf(stderr, "petal launch --cleanup %s: %zu instance(s), %zu group(s), bucket %s\n",
            r->run_id, r->n_ids, nsg, r->bucket);
    /* collect first: a failed or abandoned run's results come home */
    size_t saved = 0, bad = 0;
    char e2[PT_ERRLEN];
    int crc = pl_run_collect(r, &saved, &bad, e2);
    if (crc == PT_ERR_NOTFOUND) {
        fprintf(stderr, "petal launch --cleanup %s: no bucket %s\n", r->run_id, r->bucket);
    } else if (crc) {
        rc = pt_seterr(err, crc, "cannot collect the results first: %s", e2);
        free(sgs);
        goto done;
    } else {
        r->bucket_created = 1;
        fprintf(stderr, "petal launch --cleanup %s: %zu result/log file(s) saved under %s%s\n",
                r->run_id, saved, o.out_dir, bad ? " (some could not be verified)" : "");
    }
    o.keep = 0;
    rc = terminate_and_wait(r, r->ids, r->n_ids, err);
    for (size_t i = 0; i < nsg && !rc; i++)
        rc = pl_ec2_delete_security_group(r->aws, sgs[i], 300, err);
    free(sgs);
    if (!rc && r->bucket_created && !bad) {
        size_t del = 0;
        rc = pl_s3_empty_and_delete_bucket(r->aws, r->bucket, &del, err);
        if (!rc) r->bucket_created = 0;
    } else if (!rc && bad) {
        strip_kept_bucket(r);
        rc = pt_seterr(err, PT_ERR_IO, "%zu object(s) of s3://%s could not be downloaded and "
                       "verified: the bucket stays (results only); run --cleanup again", bad,
                       r->bucket);
    }
    if (!rc) {
        pl_auth_dir_set(r);
        pl_auth_dir_remove(r);
    }
    r->status = rc ? "cleanup-failed" : "cleaned";
    r->n_ids = 0;
    pl_state_save(r);
done:
    pl_run_free(r);
    return rc;
}
