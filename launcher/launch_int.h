/* launch_int.h - launcher-internal pieces of 'petal launch' (user-data,
 * IMDSv2 client, agent upload), shared with the tests. */
#ifndef PETAL_LAUNCHER_LAUNCH_INT_H
#define PETAL_LAUNCHER_LAUNCH_INT_H

#include "plaunch.h"

#define PL_USER_DATA_MAX 16383

/* What the bootstrap script (launcher/agent.sh) is rendered with. */
typedef struct pl_user_data {
    const char *run_id, *role;   /* role: "server" or "client" */
    const char *manifest_url;    /* presigned GET of the role's manifest */
    const char *upload_mode;     /* "presigned" or "role" (instance profile) */
    const char *bucket, *region;
    const char *s3_endpoint;     /* scheme://host[:port] (role-mode uploads) */
    long long deadline;          /* UNIX time at which the instance terminates itself */
    const char *keep;            /* after the agent: "no" (shut down), "failure", "always" */
    int heartbeat_s;             /* round progress upload interval */
} pl_user_data;

/* Render the bootstrap script into out. PT_OK, PT_ERR_INVAL (unsafe or
 * missing value), PT_ERR_RANGE (over PL_USER_DATA_MAX bytes). */
int pl_render_user_data(const pl_user_data *u, pl_str *out, char *err);

/* IMDSv2: role credentials of this instance (PUT token, GET role name, GET
 * the role's JSON). endpoint NULL: $PETAL_IMDS_ENDPOINT or
 * http://169.254.169.254. c->source names the role; *expires gets the
 * Expiration as UNIX time (0 if unknown). */
int pl_imds_role_credentials(const char *endpoint, pl_creds *c, time_t *expires, char *err);

/* Names of the run's objects. */
#define PL_KEY_ARTIFACT_SRC "artifacts/petal-src.tar.gz"
#define PL_KEY_ARTIFACT_DATA "artifacts/dataset.tar.gz"
#define PL_KEY_ARTIFACT_MODEL "artifacts/model.json"
/* the petal binary every instance runs (built by the server, or uploaded) */
#define PL_KEY_BIN "bin/petal"
#define PL_KEY_BIN_SHA "bin/petal.sha256"
/* The run's authentication material (private keys and token: reachable only
 * through presigned GETs in the role's manifest, or with bucket access). */
#define PL_KEY_AUTH_PREFIX "auth/"
#define PL_KEY_AUTH_CA "auth/ca.pem"

/* ---- the run (shared by launch_plan.c, launch_run.c, launch_collect.c,
 * launch_state.c) ---- */
#define PL_MAX_OBJECT ((size_t)512 << 20)

/* One agent (server or client_<i>) as its status objects report it. */
#define PL_MAX_PHASES 48
typedef struct pl_agent_view {
    char name[32];        /* server, client_<launch index> */
    pl_instance *inst;    /* borrowed: &r->server or &r->clients[i] */
    char etag[80];        /* of the last status object read */
    int have_status, final, failed, exit_code;
    char state[16], stage[72], strategy[64];
    int k, n_strat, round, rounds;
    double t_status;      /* agent clock */
    double seen_running;  /* launcher clock: first poll that saw the instance running */
    struct {
        char name[72];
        double t;
    } ph[PL_MAX_PHASES]; /* stage start times (agent clock) */
    int n_ph;
} pl_agent_view;

typedef struct run {
    const pl_launch_opts *o;
    volatile int *stop;
    pl_aws *aws;
    pl_creds creds;
    char region[32];
    char run_id[48], bucket[64], sg[32], ami[64], vpc[32];
    char nonce[12];       /* per launch: a reused run id never meets its old idempotency tokens */
    char state_path[1200];
    char (*ids)[32];
    size_t n_ids;
    pl_instance server;
    pl_instance *clients;
    size_t n_clients;
    pl_agent_view *agents; /* server first, then the clients */
    size_t n_agents;
    int bucket_created;
    int step;
    const char *status;
    int tty_lines;  /* lines of the live display drawn last (redrawn in place) */
    int have_model; /* --model is a local JSON file: uploaded as an artifact */
    const char *data_dir; /* local dataset folder (packed once, uploaded), or NULL */
    int auth;       /* per-run TLS + mutual TLS + token (unless --no-auth) */
    int learner_lab; /* the caller identity is a Learner Lab session */
    int refresh_ok;   /* expired credentials may be read again (resources exist) */
    char opt_region[32]; /* region from the state file */
    long long deadline; /* UNIX time at which the instances terminate themselves */
    double t_launch, t_instances; /* launcher clock: start; server RunInstances returned */
    char auth_dir[1300]; /* local 0700 copy of the run's certificates and token */
} run;

/* The run's authentication material: local file name (in auth_dir), S3 key,
 * and which role fetches it under which name (in the agent's auth/ folder). */
typedef struct pl_auth_file {
    const char *local, *key, *role, *field;
} pl_auth_file;
#define PL_N_AUTH_FILES 6
extern const pl_auth_file pl_auth_files[PL_N_AUTH_FILES];

/* launch_plan.c: options, validation, keys, manifests, the dry-run plan */
int pl_launch_validate(const pl_launch_opts *o, char *err);
int pl_is_file(const char *p);
/* The local dataset folder of --dataset ("folder:DIR" or DIR), or NULL. */
const char *pl_local_dataset(const char *dataset);
const char *pl_server_type(const pl_launch_opts *o);
int pl_valid_name(const char *s, size_t max);
void pl_result_key(const run *r, int k, const char *file, char *out, size_t cap);
void pl_events_key(const run *r, int k, const char *agent, char *out, size_t cap);
int pl_presign_expiry(const run *r);
/* Build role's manifest (uploaded when upload) and render its user-data. */
int pl_prepare_role(run *r, const char *role, const char *server_ip, pl_str *manifest,
                    pl_str *ud, int upload, char *err);
int pl_launch_plan(run *r, pl_str *out, char *err);

/* The plan's estimates (real AWS): cost and launch -> round 1 timeline. */
void pl_plan_estimates(const run *r, pl_str *out);

/* launch_run.c: progress display (stderr, only with o->progress) */
void pl_ui_end(run *r);
void pl_ui_step(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pl_ui_status(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* launch_collect.c: download and verify results/, events/, agents/; *bad
 * counts objects not saved and verified. */
int pl_run_collect(run *r, size_t *saved, size_t *bad, char *err);
/* The measured timeline (launch -> round 1, per phase) from the agents'
 * status phases and the server's first round event in the collected
 * events; text into out, JSON into <out_dir>/agents/<run id>/timeline.json. */
void pl_run_timeline(run *r, pl_str *out);
/* Parse a status object (hostile: size-capped, every field checked) into v. */
int pl_agent_parse_status(pl_agent_view *v, const char *run_id, const char *body, size_t n,
                          char *err);

/* launch_state.c: run id, state file, files, clean-up */
void pl_run_init(run *r, pl_launch_opts *o, volatile int *stop);
void pl_run_free(run *r);
int pl_run_setup_client(run *r, int dry, char *err);
void pl_make_run_id(char *out, size_t cap);
void pl_bucket_of(const char *run_id, char *out, size_t cap);
int pl_state_path(run *r, char *err);
void pl_state_save(run *r);
void pl_auth_dir_set(run *r);
void pl_auth_dir_remove(run *r);
int pl_run_add_ids(run *r, const pl_instance *v, size_t n);
int pl_run_upload_file(run *r, const char *path, const char *key, char *err);
/* Read the state file of o->run_id (region, bucket, endpoints) when there is one. */
void pl_state_load(run *r, pl_launch_opts *o);
/* Terminate the run's instances, delete its group and (when delete_bucket)
 * its bucket; returns the first error (the others are logged). */
int pl_run_cleanup(run *r, int delete_bucket, int keep_instances, char *err);
/* Set up r for an existing run o->run_id (state file, client, checked
 * credentials); what names the command for messages. */
int pl_run_attach(run *r, pl_launch_opts *o, const char *what, char *err);
int pl_mkdirs(const char *path);
int pl_file_read(const char *path, pl_str *out, size_t max, char *err);
int pl_file_write(const char *path, const void *data, size_t n, char *err);
int pl_tar_dir(const char *dir, const char *out, char *err);

/* secrets.c: 1 when a path names what looks like a credential file (.env,
 * *.pem, *.key, labsuser*, .aws/..., id_rsa..., credentials...). */
int pl_secret_name(const char *path);
/* Read the artifact at path (what: its label) before it is uploaded: a
 * tarball (gzip'd tar, tarball != 0) must not hold a member named like a
 * credential, and no content (decompressed when gzip'd) may contain c's
 * secret key or session token. PT_OK, PT_ERR_INVAL (refused, err says
 * why), PT_ERR_FORMAT (not a tar.gz), PT_ERR_IO, PT_ERR_NOMEM. */
int pl_check_artifact(const char *path, const char *what, const pl_creds *c, int tarball,
                      char *err);

#endif
