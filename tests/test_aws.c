/* test_aws.c - the launcher's S3/EC2/SSM calls against emulators on
 * 127.0.0.1: @20minutes/s3rver (strict SigV4) and moto (signature checking
 * on). Started by tests/test_aws.py, which passes endpoints and keys in
 * PL_T_* environment variables and selects tests by name prefix. */
#include "test.h"

#include "aws_int.h"
#include "plaunch.h"

#include <curl/curl.h>
#include <stdlib.h>

static const char *env(const char *n)
{
    const char *v = getenv(n);
    return v ? v : "";
}

static pl_creds mk(const char *ak, const char *sk, const char *tok)
{
    pl_creds c;
    memset(&c, 0, sizeof c);
    snprintf(c.access_key, sizeof c.access_key, "%s", ak);
    snprintf(c.secret_key, sizeof c.secret_key, "%s", sk);
    if (tok) snprintf(c.token, sizeof c.token, "%s", tok);
    return c;
}

static pl_aws *client(const char *ep, pl_creds c)
{
    pl_aws_opts o = {.region = "us-east-1", .backoff_base = 0.05, .backoff_cap = 0.2};
    for (int s = 0; s < PL_NSERVICES; s++) o.endpoint[s] = ep;
    pl_aws *a = NULL;
    char err[PT_ERRLEN];
    if (pl_aws_new(&a, &c, &o, err)) fprintf(stderr, "pl_aws_new: %s\n", err);
    return a;
}

/* plain HTTP for presigned URLs */
static size_t wr(char *p, size_t s, size_t n, void *ud)
{
    pl_str_add(ud, p, s * n);
    return s * n;
}

static long http(const char *method, const char *url, const char *body, pl_str *out)
{
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, wr);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    if (!strcmp(method, "PUT")) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    long st = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return st;
}

/* ---- s3rver ---- */
#define S3B "petal-test-bucket"

static void s3rver_objects(void)
{
    pl_aws *a = client(env("PL_T_S3RVER"), mk("S3RVER", "S3RVER", NULL));
    ASSERT(a);
    char err[PT_ERRLEN] = "", et[80];
    ASSERT_MSG(!pl_s3_create_bucket(a, S3B, err), "%s", err);
    const char *keys[] = {"results/petal/fedavg/2/server_log.log", "results/a b+c=d.log",
                          "results/x/y/events.jsonl", "artifacts/petal.tar.gz",
                          "results/\xc3\xa9t\xc3\xa9.log"};
    for (int i = 0; i < 5; i++) {
        char body[64];
        snprintf(body, sizeof body, "object %d body\n", i);
        ASSERT_MSG(!pl_s3_put(a, S3B, keys[i], body, strlen(body), NULL, et, err), "%s: %s",
                   keys[i], err);
        char md5[33];
        pl_md5(body, strlen(body), md5, NULL);
        ASSERT_STR_EQ(et, md5);
    }
    long long sz = 0;
    ASSERT_MSG(!pl_s3_head(a, S3B, keys[1], &sz, et, err), "%s", err);
    ASSERT_EQ_INT(sz, strlen("object 1 body\n"));
    pl_str got = {0};
    ASSERT_MSG(!pl_s3_get(a, S3B, keys[4], 0, &got, et, err), "%s", err);
    ASSERT_STR_EQ(pl_str_c(&got), "object 4 body\n");
    pl_str_free(&got);
    ASSERT_EQ_INT(pl_s3_get(a, S3B, "results/missing", 0, &got, NULL, err), PT_ERR_NOTFOUND);
    ASSERT_EQ_INT(pl_s3_head(a, S3B, "results/missing", &sz, NULL, err), PT_ERR_NOTFOUND);
    /* size cap on a download */
    ASSERT_EQ_INT(pl_s3_get(a, S3B, keys[0], 4, &got, NULL, err), PT_ERR_RANGE);
    pl_str_free(&got);
    /* list v2, paged 2 by 2 */
    pl_s3_object *objs = NULL;
    size_t n = 0;
    ASSERT_MSG(!pl_s3_list(a, S3B, "results/", 2, &objs, &n, err), "%s", err);
    ASSERT_EQ_INT(n, 4);
    for (size_t i = 0; i < n; i++) ASSERT(objs[i].size > 0 && strlen(objs[i].etag) == 32);
    free(objs);
    ASSERT_MSG(!pl_s3_delete(a, S3B, keys[3], err), "%s", err);
    ASSERT_MSG(!pl_s3_list(a, S3B, NULL, 0, &objs, &n, err), "%s", err);
    ASSERT_EQ_INT(n, 4);
    free(objs);
    pl_aws_free(a);
}

static void s3rver_presign(void)
{
    pl_aws *a = client(env("PL_T_S3RVER"), mk("S3RVER", "S3RVER", NULL));
    ASSERT(a);
    char err[PT_ERRLEN] = "";
    pl_str put = {0}, get = {0}, body = {0};
    const char *key = "results/petal/fedavg/2/client_0_log.log";
    ASSERT_MSG(!pl_s3_presign(a, "PUT", S3B, key, 600, &put, err), "%s", err);
    ASSERT_MSG(!pl_s3_presign(a, "GET", S3B, key, 600, &get, err), "%s", err);
    ASSERT(!strstr(pl_str_c(&put), "S3RVER&") || strstr(pl_str_c(&put), "Credential=S3RVER"));
    ASSERT_EQ_INT(http("PUT", pl_str_c(&put), "uploaded through a presigned PUT\n", &body), 200);
    pl_str_reset(&body);
    ASSERT_EQ_INT(http("GET", pl_str_c(&get), NULL, &body), 200);
    ASSERT_STR_EQ(pl_str_c(&body), "uploaded through a presigned PUT\n");
    /* a GET URL cannot be used for PUT; a tampered signature is refused */
    pl_str_reset(&body);
    ASSERT_EQ_INT(http("PUT", pl_str_c(&get), "x", &body), 403);
    pl_str_reset(&body);
    get.data[get.len - 1] = get.data[get.len - 1] == '0' ? '1' : '0';
    ASSERT_EQ_INT(http("GET", pl_str_c(&get), NULL, &body), 403);
    ASSERT_CONTAINS(pl_str_c(&body), "SignatureDoesNotMatch");
    pl_str_free(&put);
    pl_str_free(&get);
    pl_str_free(&body);
    /* presigned with a wrong secret */
    pl_aws *bad = client(env("PL_T_S3RVER"), mk("S3RVER", "not-the-secret", NULL));
    pl_str u = {0};
    ASSERT_MSG(!pl_s3_presign(bad, "GET", S3B, key, 600, &u, err), "%s", err);
    ASSERT_EQ_INT(http("GET", pl_str_c(&u), NULL, &body), 403);
    pl_str_free(&u);
    pl_str_free(&body);
    pl_aws_free(bad);
    pl_aws_free(a);
}

static void s3rver_bad_secret(void)
{
    pl_aws *a = client(env("PL_T_S3RVER"), mk("S3RVER", "wrong-secret", NULL));
    ASSERT(a);
    char err[PT_ERRLEN] = "";
    int rc = pl_s3_put(a, S3B, "results/nope", "x", 1, NULL, NULL, err);
    ASSERT_EQ_INT(rc, PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "SignatureDoesNotMatch");
    ASSERT(!strstr(err, "wrong-secret"));
    pl_aws_free(a);
    a = client(env("PL_T_S3RVER"), mk("AKIDUNKNOWN", "S3RVER", NULL));
    rc = pl_s3_put(a, S3B, "results/nope", "x", 1, NULL, NULL, err);
    ASSERT_EQ_INT(rc, PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "InvalidAccessKeyId");
    pl_aws_free(a);
    /* a session token is signed and accepted */
    a = client(env("PL_T_S3RVER"), mk("S3RVER", "S3RVER", "FQoGZXIvYXdzEXAMPLETOKEN+/="));
    ASSERT_MSG(!pl_s3_put(a, S3B, "results/with-token", "t", 1, NULL, NULL, err), "%s", err);
    pl_aws_free(a);
}

static void s3rver_cleanup(void)
{
    pl_aws *a = client(env("PL_T_S3RVER"), mk("S3RVER", "S3RVER", NULL));
    char err[PT_ERRLEN] = "";
    size_t deleted = 0;
    ASSERT_MSG(!pl_s3_empty_and_delete_bucket(a, S3B, &deleted, err), "%s", err);
    ASSERT(deleted >= 5);
    pl_s3_object *objs = NULL;
    size_t n = 0;
    ASSERT_EQ_INT(pl_s3_list(a, S3B, NULL, 0, &objs, &n, err), PT_ERR_NOTFOUND);
    ASSERT_CONTAINS(err, "NoSuchBucket");
    /* deleting again is fine */
    ASSERT_MSG(!pl_s3_delete_bucket(a, S3B, err), "%s", err);
    pl_aws_free(a);
}

/* ---- moto (signature checking on) ---- */
static pl_aws *moto(void)
{
    return client(env("PL_T_MOTO"), mk(env("PL_T_MOTO_AK"), env("PL_T_MOTO_SK"), NULL));
}

static void moto_credentials(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws *a = moto();
    ASSERT_MSG(!pl_aws_check_credentials(a, err), "%s", err);
    pl_aws_free(a);
    a = client(env("PL_T_MOTO"), mk(env("PL_T_MOTO_AK"), "bad-secret", NULL));
    ASSERT_EQ_INT(pl_aws_check_credentials(a, err), PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "AuthFailure");
    ASSERT_CONTAINS(err, "Refresh");
    ASSERT(!strstr(err, "bad-secret"));
    pl_aws_free(a);
    /* session (ASIA...) credentials: accepted with the token, refused without */
    a = client(env("PL_T_MOTO"), mk(env("PL_T_MOTO_SAK"), env("PL_T_MOTO_SSK"),
                                     env("PL_T_MOTO_STOKEN")));
    ASSERT_MSG(!pl_aws_check_credentials(a, err), "%s", err);
    pl_aws_free(a);
    a = client(env("PL_T_MOTO"), mk(env("PL_T_MOTO_SAK"), env("PL_T_MOTO_SSK"), NULL));
    ASSERT_EQ_INT(pl_aws_check_credentials(a, err), PT_ERR_AUTH);
    pl_aws_free(a);
}

static void moto_ssm_images(void)
{
    char err[PT_ERRLEN] = "", v[64] = "", ami[32];
    pl_aws *a = moto();
    ASSERT_MSG(!pl_ssm_get_parameter(
                   a, "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64", v,
                   sizeof v, err),
               "%s", err);
    ASSERT(!strncmp(v, "ami-", 4));
    ASSERT_EQ_INT(pl_ssm_get_parameter(a, "/aws/service/petal/does-not-exist", v, sizeof v, err),
                  PT_ERR_NOTFOUND);
    ASSERT_CONTAINS(err, "ParameterNotFound");
    ASSERT_MSG(!pl_ec2_newest_image(a, "amazon", "al2023-ami-2023.*-kernel-6.1-x86_64", ami, err),
               "%s", err);
    ASSERT(!strncmp(ami, "ami-", 4));
    pl_aws *bad = client(env("PL_T_MOTO"), mk(env("PL_T_MOTO_AK"), "bad", NULL));
    ASSERT_EQ_INT(pl_ssm_get_parameter(bad, "/x", v, sizeof v, err), PT_ERR_AUTH);
    pl_aws_free(bad);
    pl_aws_free(a);
}

static void moto_ec2_lifecycle(void)
{
    char err[PT_ERRLEN] = "", sg[32], ami[64];
    pl_aws *a = moto();
    ASSERT_MSG(!pl_ssm_get_parameter(
                   a, "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
                   ami, sizeof ami, err),
               "%s", err);
    pl_tag tags[] = {{"petal:run-id", "t-moto-1"}, {"Name", "petal test"}};
    ASSERT_MSG(!pl_ec2_create_security_group(a, "petal-t-moto-1", "petal test group", NULL, tags, 2,
                                             sg, err),
               "%s", err);
    ASSERT_MSG(!pl_ec2_authorize_ingress(a, sg, 8080, 8083, sg, NULL, err), "%s", err);
    ASSERT_MSG(!pl_ec2_authorize_ingress(a, sg, 8080, 8083, sg, NULL, err), "dup: %s", err);
    ASSERT_MSG(!pl_ec2_authorize_ingress(a, sg, 22, 22, NULL, "203.0.113.5/32", err), "%s", err);
    char(*ids)[32] = NULL;
    size_t nids = 0;
    ASSERT_MSG(!pl_ec2_find_security_groups(a, "petal:run-id", "t-moto-1", &ids, &nids, err),
               "%s", err);
    ASSERT_EQ_INT(nids, 1);
    ASSERT_STR_EQ(ids[0], sg);
    free(ids);
    pl_run_opts ro = {.image_id = ami, .instance_type = "r5.large", .count = 3,
                      .user_data = "#!/bin/sh\necho hello\n", .security_group_id = sg,
                      .instance_profile = "LabInstanceProfile", .tags = tags, .n_tags = 2,
                      .client_token = "petal-t-moto-1-clients"};
    pl_instance *inst = NULL;
    size_t n = 0;
    ASSERT_MSG(!pl_ec2_run_instances(a, &ro, &inst, &n, err), "%s", err);
    ASSERT_EQ_INT(n, 3);
    const char *idv[3];
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        idv[i] = inst[i].id;
        ASSERT(inst[i].launch_index >= 0 && inst[i].launch_index < 3);
        seen |= 1 << inst[i].launch_index;
    }
    ASSERT_EQ_INT(seen, 7);
    pl_instance *d = NULL;
    size_t nd = 0;
    ASSERT_MSG(!pl_ec2_describe_instances(a, NULL, 0, "petal:run-id", "t-moto-1", &d, &nd, err),
               "%s", err);
    ASSERT_EQ_INT(nd, 3);
    free(d);
    ASSERT_MSG(!pl_ec2_describe_instances(a, idv, 3, NULL, NULL, &d, &nd, err), "%s", err);
    ASSERT_EQ_INT(nd, 3);
    for (size_t i = 0; i < nd; i++) ASSERT(d[i].private_ip[0]);
    ASSERT_MSG(!pl_ec2_instance_status(a, d, nd, err), "%s", err);
    for (size_t i = 0; i < nd; i++) ASSERT_STR_EQ(d[i].inst_status, "ok");
    free(d);
    pl_str con = {0};
    ASSERT_MSG(!pl_ec2_console_output(a, idv[0], &con, err), "%s", err);
    pl_str_free(&con);
    ASSERT_MSG(!pl_ec2_terminate_instances(a, idv, 3, err), "%s", err);
    ASSERT_MSG(!pl_ec2_describe_instances(a, idv, 3, NULL, NULL, &d, &nd, err), "%s", err);
    for (size_t i = 0; i < nd; i++)
        ASSERT(!strcmp(d[i].state, "terminated") || !strcmp(d[i].state, "shutting-down"));
    free(d);
    ASSERT_MSG(!pl_ec2_describe_instances(a, NULL, 0, "petal:run-id", "t-moto-1", &d, &nd, err),
               "%s", err);
    free(d);
    ASSERT_MSG(!pl_ec2_delete_security_group(a, sg, 5, err), "%s", err);
    ASSERT_MSG(!pl_ec2_delete_security_group(a, sg, 5, err), "again: %s", err);
    free(inst);
    inst = NULL;
    /* bad input is refused before any call */
    ro.user_data = NULL;
    ro.count = 0;
    ASSERT_EQ_INT(pl_ec2_run_instances(a, &ro, &inst, &n, err), PT_ERR_INVAL);
    free(inst);
    pl_aws_free(a);
}

static void moto_s3(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws *a = moto();
    ASSERT_MSG(!pl_s3_create_bucket(a, "petal-moto-bucket", err), "%s", err);
    ASSERT_MSG(!pl_s3_put(a, "petal-moto-bucket", "a/b c.log", "hello", 5, NULL, NULL, err), "%s",
               err);
    pl_str got = {0};
    ASSERT_MSG(!pl_s3_get(a, "petal-moto-bucket", "a/b c.log", 0, &got, NULL, err), "%s", err);
    ASSERT_STR_EQ(pl_str_c(&got), "hello");
    pl_str_free(&got);
    size_t del = 0;
    ASSERT_MSG(!pl_s3_empty_and_delete_bucket(a, "petal-moto-bucket", &del, err), "%s", err);
    ASSERT_EQ_INT(del, 1);
    pl_aws *bad = client(env("PL_T_MOTO"), mk(env("PL_T_MOTO_AK"), "bad", NULL));
    ASSERT_EQ_INT(pl_s3_create_bucket(bad, "petal-moto-bucket2", err), PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "SignatureDoesNotMatch");
    pl_aws_free(bad);
    pl_aws_free(a);
}

/* ---- retries and error mapping (tests/test_aws.py's scripted server) ---- */
static void http_throttle_then_ok(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws *a = client(env("PL_T_THROTTLE"), mk("AKIDX", "secret", NULL));
    double t0 = pt_now();
    ASSERT_MSG(!pl_aws_check_credentials(a, err), "%s", err);
    ASSERT_EQ_INT(pl_aws_request_count(a), 3); /* two RequestLimitExceeded, then OK */
    ASSERT(pt_now() - t0 < 5);
    pl_aws_free(a);
}

static void http_5xx_gives_up(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws *a = client(env("PL_T_FAIL500"), mk("AKIDX", "secret", NULL));
    ASSERT_EQ_INT(pl_aws_check_credentials(a, err), PT_ERR_AWS);
    ASSERT_EQ_INT(pl_aws_request_count(a), 5);
    ASSERT_CONTAINS(err, "InternalError");
    ASSERT_CONTAINS(err, "req-500");
    pl_aws_free(a);
}

static void http_expired_token(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws *a = client(env("PL_T_EXPIRED"), mk("ASIAX", "secret", "tok"));
    ASSERT_EQ_INT(pl_aws_check_credentials(a, err), PT_ERR_AUTH);
    ASSERT_EQ_INT(pl_aws_request_count(a), 1); /* never retried */
    ASSERT_CONTAINS(err, "ExpiredToken");
    ASSERT_CONTAINS(err, "req-exp");
    pl_aws_free(a);
}

/* uploads and object downloads have a low-speed limit, not a whole-call one: a
 * slow but moving transfer finishes, a stalled one fails */
static void http_low_speed(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws_opts o = {.region = "us-east-1", .timeout_s = 1, .low_speed_s = 1, .max_attempts = 1};
    pl_creds c = mk("AKIDX", "secret", NULL);
    for (int s = 0; s < PL_NSERVICES; s++) o.endpoint[s] = env("PL_T_SLOW");
    pl_aws *a = NULL;
    ASSERT_OK(pl_aws_new(&a, &c, &o, err));
    pl_str body = {0};
    double t0 = pt_now();
    ASSERT_MSG(!pl_s3_get(a, "petal-bucket", "results/big.log", 1 << 20, &body, NULL, err), "%s",
               err);
    ASSERT_EQ_INT(body.len, 256 << 10);
    ASSERT(pt_now() - t0 > 1.2); /* longer than the small-call limit */
    pl_str_free(&body);
    pl_aws_free(a);
    for (int s = 0; s < PL_NSERVICES; s++) o.endpoint[s] = env("PL_T_STALL");
    ASSERT_OK(pl_aws_new(&a, &c, &o, err));
    t0 = pt_now();
    ASSERT_EQ_INT(pl_s3_get(a, "petal-bucket", "results/big.log", 1 << 20, &body, NULL, err),
                  PT_ERR_NET);
    ASSERT(pt_now() - t0 < 4.5); /* the stall is noticed, not waited out */
    pl_str_free(&body);
    pl_aws_free(a);
}

typedef struct refresh_state {
    int calls;
    const char *ak;
} refresh_state;

static int refresh_fn(pl_creds *fresh, const pl_creds *rejected, void *ud)
{
    refresh_state *s = ud;
    s->calls++;
    if (!s->ak || !strcmp(rejected->access_key, s->ak)) return PT_ERR_AUTH;
    *fresh = mk(s->ak, "fresh-secret", "fresh-token");
    return PT_OK;
}

/* credentials rejected mid-way: the refresh hook's fresh ones are used */
static void http_refresh(void)
{
    char err[PT_ERRLEN] = "";
    refresh_state st = {0, "AKIDFRESH"};
    pl_aws_opts o = {.region = "us-east-1", .refresh = refresh_fn, .refresh_ud = &st};
    for (int s = 0; s < PL_NSERVICES; s++) o.endpoint[s] = env("PL_T_ROTATE");
    pl_creds c = mk("ASIAOLD", "old-secret", "old-token");
    pl_aws *a = NULL;
    ASSERT_OK(pl_aws_new(&a, &c, &o, err));
    ASSERT_MSG(!pl_aws_check_credentials(a, err), "%s", err);
    ASSERT_EQ_INT(st.calls, 1);
    ASSERT_EQ_INT(pl_aws_request_count(a), 2);
    ASSERT_MSG(!pl_aws_check_credentials(a, err), "%s", err); /* the fresh ones stay */
    ASSERT_EQ_INT(st.calls, 1);
    pl_aws_free(a);
    /* nothing fresh: the original error, not a loop */
    refresh_state none = {0, NULL};
    o.refresh_ud = &none;
    ASSERT_OK(pl_aws_new(&a, &c, &o, err));
    ASSERT_EQ_INT(pl_aws_check_credentials(a, err), PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "ExpiredToken");
    ASSERT_EQ_INT(none.calls, 1);
    ASSERT_EQ_INT(pl_aws_request_count(a), 1);
    pl_aws_free(a);
}

static void http_response_cap(void)
{
    char err[PT_ERRLEN] = "";
    pl_aws_opts o = {.region = "us-east-1", .max_response = 1 << 16};
    for (int s = 0; s < PL_NSERVICES; s++) o.endpoint[s] = env("PL_T_HUGE");
    pl_creds c = mk("AKIDX", "secret", NULL);
    pl_aws *a = NULL;
    ASSERT_OK(pl_aws_new(&a, &c, &o, err));
    ASSERT_EQ_INT(pl_aws_check_credentials(a, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "larger than");
    pl_aws_free(a);
    /* connection refused: a network error after retries */
    pl_aws *b = client("http://127.0.0.1:1", mk("AKIDX", "secret", NULL));
    ASSERT_EQ_INT(pl_aws_check_credentials(b, err), PT_ERR_NET);
    pl_aws_free(b);
    /* endpoint validation */
    o.endpoint[0] = "ftp://127.0.0.1";
    ASSERT_EQ_INT(pl_aws_new(&a, &c, &o, err), PT_ERR_INVAL);
    o.endpoint[0] = "http://127.0.0.1:5/path";
    ASSERT_EQ_INT(pl_aws_new(&a, &c, &o, err), PT_ERR_INVAL);
}

/* pl_s3_list against endpoints that misbehave (found by fuzz_aws_reply) */
static void http_s3_list_broken(void)
{
    char err[PT_ERRLEN] = "";
    pl_s3_object *objs = (pl_s3_object *)1;
    size_t n = 7;
    pl_aws *a = client(env("PL_T_S3LOOP"), mk("AKIDX", "secret", NULL));
    double t0 = pt_now();
    ASSERT_EQ_INT(pl_s3_list(a, "petal-bucket", NULL, 0, &objs, &n, err), PT_ERR_PROTO);
    ASSERT_CONTAINS(err, "repeated a continuation token");
    ASSERT_EQ_INT(pl_aws_request_count(a), 2); /* the second page repeats the token */
    ASSERT(objs == NULL && n == 0);
    ASSERT(pt_now() - t0 < 5);
    pl_aws_free(a);
    a = client(env("PL_T_S3ROOT"), mk("AKIDX", "secret", NULL));
    ASSERT_EQ_INT(pl_s3_list(a, "petal-bucket", NULL, 0, &objs, &n, err), PT_ERR_PROTO);
    ASSERT_CONTAINS(err, "unexpected <SomethingElse>");
    ASSERT(objs == NULL && n == 0);
    pl_aws_free(a);
}

TEST_MAIN(TEST(s3rver_objects), TEST(s3rver_presign), TEST(s3rver_bad_secret),
          TEST(s3rver_cleanup), TEST(moto_credentials), TEST(moto_ssm_images),
          TEST(moto_ec2_lifecycle), TEST(moto_s3), TEST(http_throttle_then_ok),
          TEST(http_5xx_gives_up), TEST(http_expired_token), TEST(http_response_cap),
          TEST(http_s3_list_broken), TEST(http_low_speed), TEST(http_refresh))
