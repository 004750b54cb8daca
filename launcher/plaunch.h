/*
 * plaunch.h - Petal launcher: AWS SigV4, a size-capped HTTP layer over
 * libcurl, credentials, the EC2 / S3 / SSM calls 'petal launch' needs, and
 * the launch lifecycle itself. Prefix: pl_. Depends on core/petal.h only (the
 * run's certificates and the report come through callbacks: pl_auth_fn, pl_report_fn).
 *
 * Errors follow core's convention: functions return PT_OK (0) or a negative
 * pt_err code and fill an optional caller buffer `char err[PT_ERRLEN]`.
 * AWS-side failures return PT_ERR_AWS (with "Code: message (request id)"),
 * credential problems (ExpiredToken, InvalidClientTokenId, AuthFailure,
 * SignatureDoesNotMatch...) return PT_ERR_AUTH. No function ever logs or
 * copies a secret key or session token into an error message.
 */
#ifndef PETAL_PLAUNCH_H
#define PETAL_PLAUNCH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "petal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dynamic strings (used across the API) -------------------------------- */
/* A growable NUL-terminated byte buffer. A zeroed pl_str is empty and valid;
 * data may be NULL until the first append. */
typedef struct pl_str {
    char *data;
    size_t len, cap;
} pl_str;

/* Append n bytes / a C string / printf text. PT_OK or PT_ERR_NOMEM. */
int pl_str_add(pl_str *s, const void *p, size_t n);
int pl_str_adds(pl_str *s, const char *p);
int pl_str_addf(pl_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Borrowed C string ("" when empty; valid until the next change). */
const char *pl_str_c(const pl_str *s);
void pl_str_reset(pl_str *s);
void pl_str_free(pl_str *s);

/* UriEncode as SigV4 defines it: every byte except A-Z a-z 0-9 - _ . ~ is
 * %XX (upper-case hex); '/' is kept when keep_slash. Appends to out. */
int pl_uri_encode(pl_str *out, const char *s, size_t n, int keep_slash);
/* Lower-case hex SHA-256 of data into hex[65]. */
void pl_sha256_hex(const void *data, size_t n, char hex[65]);
/* MD5 of data: lower-case hex into hex[33] (may be NULL) and base64 into b64[25]
 * (may be NULL). */
void pl_md5(const void *data, size_t n, char hex[33], char b64[25]);
/* Base64 (standard alphabet, padded) of data appended to out. */
int pl_base64(pl_str *out, const void *data, size_t n);

/* ---- credentials ----------------------------------------------------------- */
#define PL_TOKEN_MAX 4096
typedef struct pl_creds {
    char access_key[128];
    char secret_key[128];
    char token[PL_TOKEN_MAX]; /* "" when there is no session token */
    char source[160];         /* where they came from, e.g. "environment" */
    char region[32];          /* "" when no source named a region */
} pl_creds;

/* Where pl_creds_load looks. All fields may be NULL/0 (defaults below). */
typedef struct pl_creds_opts {
    const char *profile;   /* NULL: $AWS_PROFILE, else "default" */
    const char *env_file;  /* NULL: ./.env when it exists; "" disables */
    const char *home;      /* NULL: $HOME (for ~/.aws/credentials, ~/.aws/config) */
    int no_environment;    /* ignore process environment variables (tests) */
} pl_creds_opts;

/* Load credentials in this order: environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the .env file (same names, or
 * the original launcher's AWS_LAB_ACCESS_KEY_ID / AWS_LAB_SECRET_ACCESS_KEY /
 * AWS_LAB_SESSION_TOKEN), then the profile in ~/.aws/credentials (and
 * ~/.aws/config for "[profile NAME]" sections). Region: AWS_REGION,
 * AWS_DEFAULT_REGION (environment or .env, also AWS_LAB_REGION), then the
 * profile's region in ~/.aws/config. Returns PT_OK, PT_ERR_AUTH (no complete
 * key pair anywhere; err lists where it looked) or PT_ERR_FORMAT (bad file). */
int pl_creds_load(pl_creds *c, const pl_creds_opts *o, char *err);
/* Overwrite the secret parts with zeros. */
void pl_creds_wipe(pl_creds *c);

/* ---- SigV4 ------------------------------------------------------------------ */
typedef struct pl_header {
    const char *name;
    const char *value;
} pl_header;

/* One request to sign. host is exactly the Host header ("h" or "h:port");
 * path is the path as sent on the wire (already URI-encoded, "/" if empty);
 * query is the query string as sent (already encoded, without '?'; NULL or
 * "" for none). headers are the extra headers to sign (e.g. content-type,
 * x-amz-target, range); host and x-amz-date are always signed, and
 * x-amz-security-token (header mode, when the credentials have a token) and
 * x-amz-content-sha256 (when s3) are added. payload_hash NULL means SHA-256
 * of body; pass "UNSIGNED-PAYLOAD" for S3 unsigned payloads. */
typedef struct pl_sigv4_req {
    const char *method;
    const char *host;
    const char *path;
    const char *query;
    const pl_header *headers;
    size_t n_headers;
    const void *body;
    size_t body_len;
    const char *payload_hash;
    const char *service;
    const char *region;
    time_t when;      /* signing time (UTC epoch seconds) */
    int s3;           /* S3 URI rules (no double encoding) + x-amz-content-sha256 */
} pl_sigv4_req;

typedef struct pl_sigv4_out {
    char amz_date[17];        /* YYYYMMDDTHHMMSSZ */
    char payload_hash[65];    /* value for x-amz-content-sha256 */
    char signature[65];
    char signed_headers[512];
    char authorization[1024]; /* header mode only */
    pl_str canonical_request; /* owned; free with pl_sigv4_out_free */
    pl_str string_to_sign;
    pl_str presigned_query;   /* presign mode: full query incl. X-Amz-Signature */
} pl_sigv4_out;

/* Header signing. The caller must send Host, X-Amz-Date (out->amz_date),
 * X-Amz-Security-Token (when c->token[0]), X-Amz-Content-Sha256 (s3) and
 * Authorization (out->authorization) plus the r->headers unchanged.
 * Returns PT_OK, PT_ERR_INVAL (missing field, header too long) or NOMEM.
 * out must be zeroed or freed before reuse; free with pl_sigv4_out_free. */
int pl_sigv4_sign(const pl_sigv4_req *r, const pl_creds *c, pl_sigv4_out *out, char *err);
/* Query-string signing (presigned URL), valid for expires seconds
 * (1..604800). out->presigned_query holds the query to send after '?'
 * (r->query first, then the X-Amz-* parameters; the token, when present, is
 * signed). S3 presigns use UNSIGNED-PAYLOAD unless r->payload_hash says
 * otherwise. */
int pl_sigv4_presign(const pl_sigv4_req *r, const pl_creds *c, int expires, pl_sigv4_out *out,
                     char *err);
void pl_sigv4_out_free(pl_sigv4_out *out);
/* The signing key for (secret, datestamp YYYYMMDD, region, service). */
void pl_sigv4_key(const char *secret, const char *datestamp, const char *region,
                  const char *service, unsigned char key[32]);

/* ---- AWS client --------------------------------------------------------------- */
typedef enum pl_service { PL_EC2 = 0, PL_S3 = 1, PL_SSM = 2, PL_STS = 3, PL_NSERVICES = 4 } pl_service;

typedef struct pl_aws_opts {
    const char *region;               /* required */
    const char *endpoint[PL_NSERVICES]; /* NULL: https://<svc>.<region>.amazonaws.com */
    int max_attempts;                 /* 0: 5 */
    double backoff_base;              /* 0: 0.5 s; delay = rand(0,1) * base * 2^k, capped */
    double backoff_cap;               /* 0: 20 s */
    size_t max_response;              /* 0: 16 MiB (bodies above: PT_ERR_RANGE) */
    long timeout_s;                   /* 0: 60 s per request without a large body; */
    size_t timeout_body;              /* 0: 1 MiB; requests that send more, or may receive
                                         more, have no whole-transfer limit but ... */
    long low_speed_s;                 /* 0: 60; ... fail when under 1 KiB/s for this long */
    volatile int *stop;               /* when set nonzero, retries/sleeps stop early */
    /* Called when AWS rejects the credentials (ExpiredToken, AuthFailure...):
     * fill *fresh with credentials read again (the user may have pasted new
     * ones) and return PT_OK when they differ from the rejected ones; the
     * call is then retried with them. Any other return gives up with the
     * original error. NULL: no refresh. May block (it is the caller's wait). */
    int (*refresh)(pl_creds *fresh, const pl_creds *rejected, void *ud);
    void *refresh_ud;
} pl_aws_opts;

typedef struct pl_aws pl_aws;

/* Create a client. Copies creds and options. PT_OK, INVAL, NOMEM. */
int pl_aws_new(pl_aws **out, const pl_creds *c, const pl_aws_opts *o, char *err);
void pl_aws_free(pl_aws *a);
/* The endpoint base URL for svc ("scheme://host[:port]"); borrowed. */
const char *pl_aws_endpoint(const pl_aws *a, pl_service svc);
/* Number of HTTP requests sent so far (every attempt counts). */
unsigned long pl_aws_request_count(const pl_aws *a);

/* HTTP response of a raw call. body is owned; free with pl_resp_free. */
typedef struct pl_resp {
    long status;
    pl_str body;
    char request_id[128];
    char etag[128];
    long long content_length; /* -1 when absent */
} pl_resp;
void pl_resp_free(pl_resp *r);

/* Validate credentials before creating anything: EC2 DescribeRegions for the
 * client's region. PT_OK, PT_ERR_AUTH with "refresh credentials" advice,
 * PT_ERR_AWS/NET otherwise. */
int pl_aws_check_credentials(pl_aws *a, char *err);

/* ---- S3 (path-style addressing) ---- */
typedef struct pl_s3_object {
    char key[1024];
    long long size;
    char etag[80]; /* without quotes */
} pl_s3_object;

/* Create a bucket in the client's region (no LocationConstraint body in
 * us-east-1). BucketAlreadyOwnedByYou counts as success. */
int pl_s3_create_bucket(pl_aws *a, const char *bucket, char *err);
/* Delete an empty bucket; NoSuchBucket counts as success. */
int pl_s3_delete_bucket(pl_aws *a, const char *bucket, char *err);
/* Upload data with Content-MD5; etag_out (may be NULL, 80 bytes) gets the
 * returned ETag without quotes. */
int pl_s3_put(pl_aws *a, const char *bucket, const char *key, const void *data, size_t n,
              const char *content_type, char etag_out[80], char *err);
/* Download an object into out (appended, capped by max bytes; 0 = client
 * cap). PT_ERR_NOTFOUND for NoSuchKey. */
int pl_s3_get(pl_aws *a, const char *bucket, const char *key, size_t max, pl_str *out,
              char etag_out[80], char *err);
/* HEAD: size and ETag. PT_ERR_NOTFOUND when absent. */
int pl_s3_head(pl_aws *a, const char *bucket, const char *key, long long *size,
               char etag_out[80], char *err);
/* ListObjectsV2 over every page; *objs (malloc'd, caller frees) gets *n
 * entries. max_keys per page (0: 1000). A reply whose root is not
 * <ListBucketResult>, a truncated page without a token or with a token
 * already received return PT_ERR_PROTO; more than PL_S3_LIST_MAX_PAGES pages
 * PT_ERR_RANGE (on any error *objs is NULL and *n 0). */
#define PL_S3_LIST_MAX_PAGES 10000
int pl_s3_list(pl_aws *a, const char *bucket, const char *prefix, int max_keys,
               pl_s3_object **objs, size_t *n, char *err);
/* Delete one object (missing keys are not an error). */
int pl_s3_delete(pl_aws *a, const char *bucket, const char *key, char *err);
/* Delete every object whose key starts with prefix; *deleted gets the count. */
int pl_s3_delete_prefix(pl_aws *a, const char *bucket, const char *prefix, size_t *deleted,
                        char *err);
/* Delete every object, then the bucket. *deleted gets the object count. */
int pl_s3_empty_and_delete_bucket(pl_aws *a, const char *bucket, size_t *deleted, char *err);
/* Presigned URL for method ("GET" or "PUT") valid expires seconds, appended
 * to url. */
int pl_s3_presign(pl_aws *a, const char *method, const char *bucket, const char *key,
                  int expires, pl_str *url, char *err);

/* ---- EC2 ---- */
typedef struct pl_instance {
    char id[32];
    char image_id[32];
    char type[32];
    char state[24];
    int state_code;
    char private_ip[48];
    int launch_index;
    char sys_status[24];  /* DescribeInstanceStatus only */
    char inst_status[24];
} pl_instance;

typedef struct pl_tag {
    const char *key;
    const char *value;
} pl_tag;

typedef struct pl_run_opts {
    const char *image_id;
    const char *subnet_id;      /* NULL: the default VPC */
    const char *instance_type;
    int count;                  /* MinCount = MaxCount */
    const char *user_data;      /* raw script (base64-encoded here); <= 16383 bytes */
    const char *security_group_id;
    const char *key_name;       /* NULL: none */
    const char *instance_profile; /* NULL: none */
    const pl_tag *tags;         /* instance and volume tags */
    size_t n_tags;
    const char *client_token;   /* idempotency token (<= 64 ASCII), NULL: none */
    int root_gb;                /* 0: AMI default */
    const char *root_device;    /* with root_gb, e.g. "/dev/xvda" */
} pl_run_opts;

/* Create a security group (in vpc_id, NULL: the default VPC) with tags;
 * group_id[32] gets its id. */
int pl_ec2_create_security_group(pl_aws *a, const char *name, const char *desc,
                                 const char *vpc_id, const pl_tag *tags, size_t n_tags,
                                 char group_id[32], char *err);
/* Allow tcp from_port..to_port from members of source_group (when not NULL)
 * or from cidr (when not NULL). InvalidPermission.Duplicate is success. */
int pl_ec2_authorize_ingress(pl_aws *a, const char *group_id, int from_port, int to_port,
                             const char *source_group, const char *cidr, char *err);
/* Delete a group; retries DependencyViolation for up to wait_s seconds;
 * InvalidGroup.NotFound counts as success. */
int pl_ec2_delete_security_group(pl_aws *a, const char *group_id, double wait_s, char *err);
/* Security groups carrying tag key=value: ids[32] each into *ids (malloc'd). */
int pl_ec2_find_security_groups(pl_aws *a, const char *tag_key, const char *tag_value,
                                char (**ids)[32], size_t *n, char *err);
/* RunInstances; *out (malloc'd) gets *n instances (n == count). */
int pl_ec2_run_instances(pl_aws *a, const pl_run_opts *o, pl_instance **out, size_t *n,
                         char *err);
/* DescribeInstances by ids (n_ids > 0) or by tag (tag_key != NULL; every
 * state except terminated). */
int pl_ec2_describe_instances(pl_aws *a, const char *const *ids, size_t n_ids,
                              const char *tag_key, const char *tag_value, pl_instance **out,
                              size_t *n, char *err);
/* DescribeInstanceStatus (IncludeAllInstances): fills sys/inst status of
 * matching entries in inst[0..n). */
int pl_ec2_instance_status(pl_aws *a, pl_instance *inst, size_t n, char *err);
int pl_ec2_terminate_instances(pl_aws *a, const char *const *ids, size_t n, char *err);
/* GetConsoleOutput (Latest=true: the most recent output, where the agent's
 * lines are; falls back to the boot-time output on instance types without
 * it), decoded, appended to out (may be empty). */
int pl_ec2_console_output(pl_aws *a, const char *id, pl_str *out, char *err);
/* Instances of the account in the region that are pending or running: count
 * and vCPUs (from their types), every page. */
int pl_ec2_count_live(pl_aws *a, int *n, int *vcpus, char *err);
/* DescribeSubnets: the VPC of subnet_id into vpc[32]. */
int pl_ec2_subnet_vpc(pl_aws *a, const char *subnet_id, char vpc[32], char *err);
/* DescribeImages owner + name pattern; newest (max creationDate) into ami[32]. */
int pl_ec2_newest_image(pl_aws *a, const char *owner, const char *name_pattern, char ami[32],
                        char *err);

/* ---- STS ---- */
/* GetCallerIdentity: the ARN (cap bytes) of the credentials' identity. */
int pl_sts_caller_arn(pl_aws *a, char *arn, size_t cap, char *err);

/* ---- SSM ---- */
/* GetParameter Name=name; value (size cap) gets its string value.
 * PT_ERR_NOTFOUND for ParameterNotFound. */
int pl_ssm_get_parameter(pl_aws *a, const char *name, char *value, size_t cap, char *err);

/* ---- launch ------------------------------------------------------------------ */
#define PL_MAX_STRATEGIES 16
#define PL_LAB_MAX_INSTANCES 9 /* AWS Academy Learner Lab: concurrent instances */
#define PL_LAB_MAX_VCPUS 32

/* Runs 'petal report DIR' (or equivalent); 0 on success. */
typedef int (*pl_report_fn)(const char *dir, void *ud);
/* Makes the run's authentication material in the existing 0700 directory
 * dir: ca.pem, ca.key, server.pem, server.key (SAN server_san), client.pem,
 * client.key and token, valid for days (the petal command passes net/'s
 * pnet_tls_make_run_dir). PT_OK or an error code with err set. */
typedef int (*pl_auth_fn)(const char *dir, const char *server_san, int days, char *err,
                          void *ud);

typedef struct pl_launch_opts {
    int n_clients;              /* required, 1..max_instances-1 */
    int num_rounds;             /* default 3 */
    const char *strategies[PL_MAX_STRATEGIES];
    int n_strategies;           /* default FedAvg FedAvgM FedAdagrad FedAdam */
    const char *backend;        /* agents' compute backend + results tree level */
    const char *instance_type;  /* clients (and server): default r5.large, as the original */
    const char *server_instance_type; /* NULL: instance_type */
    const char *region;         /* NULL: from credentials/config, else us-east-1 */
    const char *profile;        /* AWS profile (NULL: $AWS_PROFILE / default) */
    const char *env_file;       /* NULL: ./.env */
    const char *key_name;       /* NULL: no key pair */
    const char *ssh_cidr;       /* NULL: no SSH rule */
    const char *subnet_id;      /* NULL: the default VPC (accounts without one need it) */
    const char *model;          /* preset or local JSON file (uploaded); default fmnist-cnn */
    const char *dataset;        /* name, or a local folder ("folder:DIR" or DIR: packed once,
                                   uploaded, used by every instance); default fashion-mnist */
    const char *ami;            /* overrides SSM / DescribeImages (e.g. a baked image) */
    const char *ami_parameter;  /* SSM public parameter (default: Debian 12 amd64) */
    const char *instance_profile; /* instances sign their uploads with the role */
    const char *endpoint_url;   /* every service */
    const char *service_endpoint[PL_NSERVICES]; /* per service, over endpoint_url */
    const char *out_dir;        /* default "results" */
    const char *state_dir;      /* default $HOME/.petal/runs */
    const char *dist_tarball;   /* source tarball ('make dist'); required unless dry_run */
    const char *agent_binary;   /* a petal built here (same OS as the AMI), uploaded and
                                   run by every instance: nothing is built on AWS */
    const char *server_args;    /* extra arguments for 'petal server' (space separated) */
    const char *client_args;    /* extra arguments for 'petal client' */
    int port;                   /* Flower port, default 8080 (+k for strategy k) */
    int keep;                   /* leave instances (and their group) up; also keeps the
                                   run's local certificate directory */
    int keep_on_failure;        /* a failed run leaves its instances up (debugging) */
    int no_auth;                /* no per-run TLS / mutual TLS / token (default: on) */
    int dry_run;                /* no AWS call: plan + rendered user-data into *plan */
    int max_instances;          /* default 9 (Learner Lab) */
    double timeout_s;           /* deadline for the agents' results, default 7200 */
    double boot_timeout_s;      /* an instance must report its first stage by then, 900 */
    double poll_s;              /* poll interval, default 10 */
    double heartbeat_s;         /* agents upload round progress this often, default 10 */
    double creds_wait_s;        /* expired credentials mid-run: wait this long for fresh
                                   ones in the files (.env, ~/.aws), default 1800 */
    int progress;               /* live display on stderr (callers: isatty(2)) */
    pl_report_fn report;        /* run after collection (may be NULL) */
    void *report_ud;
    pl_auth_fn make_auth;       /* required unless no_auth or dry_run */
    void *auth_ud;
    const char *run_id;         /* NULL: generated; --status/--collect/--cleanup: the run */
} pl_launch_opts;

/* Fill defaults into a zeroed struct. */
void pl_launch_opts_default(pl_launch_opts *o);

/* TLS name the agents' server certificate carries (clients pass it as
 * --server-name; the private IP is not known when the certificate is made). */
#define PL_AUTH_SERVER_NAME "petal-server"

/* Run the whole lifecycle. Unless o->no_auth, the run is authenticated: a
 * per-run CA, a server certificate (SAN DNS:PL_AUTH_SERVER_NAME), one client
 * certificate shared by the run's clients and a random token are made
 * (o->make_auth) in the 0700 directory <state_dir>/<run id>.auth, uploaded
 * under auth/ in the bucket and reachable by the instances only through the
 * presigned GET URLs of their role's manifest. Nothing is created before the
 * credentials, the account's limits (Learner Lab: detected from the caller
 * identity; instances already running count) and every artifact (no
 * credential file, none of the user's secret bytes) have been checked. The
 * server builds petal once and shares it through S3 (or every instance runs
 * o->agent_binary); the clients install runtime packages only. The agents'
 * status objects drive a live display (o->progress) and fail the run within
 * one poll. With o->dry_run, nothing is sent and plan gets the plan (cost
 * and timeline estimates), the manifests and the rendered user-data
 * (placeholder URLs signed with a dummy key). stop is polled (SIGINT/SIGTERM/
 * SIGHUP handlers set it): on failure or stop every resource created is
 * cleaned up (results already uploaded are downloaded first; the bucket is
 * kept, without its artifacts, manifests and auth material, only when some
 * object could not be verified; o->keep_on_failure keeps the instances).
 * Credentials that expire mid-run are read again from the files (the user
 * pastes fresh ones) for up to o->creds_wait_s. Returns PT_OK,
 * PT_ERR_INTERRUPTED, PT_ERR_AUTH, PT_ERR_TIMEOUT, PT_ERR_AWS, ... */
int pl_launch_run(const pl_launch_opts *o, volatile int *stop, pl_str *plan, char *err);
/* Collect first (download and verify whatever results are in the run's
 * bucket into o->out_dir), then remove every resource of run o->run_id:
 * instances and groups found by the petal:run-id tag, the bucket (from the
 * state file, or its derived name) and the local <state_dir>/<run id>.auth. */
int pl_launch_cleanup(const pl_launch_opts *o, volatile int *stop, char *err);
/* A run started here or elsewhere (o->run_id; region/endpoints from the
 * state file when there is one, else o): each agent's stage, round and
 * instance state, and the result files, as text appended to out. */
int pl_launch_status(const pl_launch_opts *o, pl_str *out, char *err);
/* Download and verify the run's results into o->out_dir, merge events, run
 * o->report; leaves every resource in place. */
int pl_launch_collect(const pl_launch_opts *o, volatile int *stop, char *err);

/* Learner Lab: the caller identity of its session credentials is an
 * assumed role named voclabs (arn:aws:sts::ACCOUNT:assumed-role/voclabs/...). */
int pl_is_learner_lab(const char *caller_arn);
/* vCPUs of an instance type (known table, else from its size) and its
 * us-east-1 on-demand Linux price in USD per hour (0 when unknown). */
int pl_instance_vcpus(const char *type);
double pl_instance_price(const char *type);

#ifdef __cplusplus
}
#endif
#endif /* PETAL_PLAUNCH_H */
