/* test_sigv4.c - SigV4 against AWS's published vectors; with --emit, prints
 * the project's own EC2/S3/SSM requests (signed at a fixed time, captured
 * before sending) as JSON lines for tests/test_sigv4_botocore.py. */
#include "test.h"

#include "aws_int.h"
#include "plaunch.h"

#include <cjson/cJSON.h>
#include <time.h>

#define SUITE_AK "AKIDEXAMPLE"
#define SUITE_SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TOKEN "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
#define S3_AK "AKIAIOSFODNN7EXAMPLE"
#define S3_SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

static time_t ts(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                    .tm_min = mi, .tm_sec = s};
    return timegm(&tm);
}

static pl_creds creds(const char *ak, const char *sk, const char *tok)
{
    pl_creds c;
    memset(&c, 0, sizeof c);
    snprintf(c.access_key, sizeof c.access_key, "%s", ak);
    snprintf(c.secret_key, sizeof c.secret_key, "%s", sk);
    if (tok) snprintf(c.token, sizeof c.token, "%s", tok);
    return c;
}

static pl_sigv4_req suite_req(const char *method, const char *query)
{
    pl_sigv4_req r = {.method = method, .host = "example.amazonaws.com", .path = "/",
                      .query = query, .service = "service", .region = "us-east-1",
                      .when = ts(2015, 8, 30, 12, 36, 0)};
    return r;
}

static void t_signing_key(void)
{
    unsigned char k[32];
    char hex[65];
    static const char h[] = "0123456789abcdef";
    pl_sigv4_key(SUITE_SK, "20150830", "us-east-1", "iam", k);
    for (int i = 0; i < 32; i++) hex[2 * i] = h[k[i] >> 4], hex[2 * i + 1] = h[k[i] & 15];
    hex[64] = 0;
    ASSERT_STR_EQ(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
    pl_sigv4_key(SUITE_SK, "20150830", "us-east-1", "service", k);
    for (int i = 0; i < 32; i++) hex[2 * i] = h[k[i] >> 4], hex[2 * i + 1] = h[k[i] & 15];
    ASSERT_STR_EQ(hex, "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75");
}

static void t_get_vanilla(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_sigv4_req r = suite_req("GET", NULL);
    pl_sigv4_out o = {0};
    char err[PT_ERRLEN];
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, err));
    ASSERT_STR_EQ(pl_str_c(&o.canonical_request),
                  "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                  "host;x-amz-date\n"
                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    char h[65];
    pl_sha256_hex(o.canonical_request.data, o.canonical_request.len, h);
    ASSERT_STR_EQ(h, "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
    ASSERT_STR_EQ(o.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    ASSERT_STR_EQ(o.authorization,
                  "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                  "aws4_request, SignedHeaders=host;x-amz-date, "
                  "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    pl_sigv4_out_free(&o);
}

static void t_query_order(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_sigv4_req r = suite_req("GET", "Param2=value2&Param1=value1");
    pl_sigv4_out o = {0};
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    pl_sigv4_out_free(&o);
}

static void t_post_form(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_sigv4_req r = suite_req("POST", NULL);
    pl_header h[] = {{"Content-Type", "application/x-www-form-urlencoded"}};
    r.headers = h;
    r.n_headers = 1;
    r.body = "Param1=value1";
    r.body_len = 13;
    pl_sigv4_out o = {0};
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.signed_headers, "content-type;host;x-amz-date");
    ASSERT_STR_EQ(o.signature, "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
    pl_sigv4_out_free(&o);
}

static void t_session_token(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, SUITE_TOKEN);
    pl_sigv4_req r = suite_req("GET", NULL);
    pl_sigv4_out o = {0};
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.signed_headers, "host;x-amz-date;x-amz-security-token");
    ASSERT_STR_EQ(o.signature, "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
    pl_sigv4_out_free(&o);
}

static void t_presign(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_sigv4_req r = suite_req("GET", NULL);
    pl_sigv4_out o = {0};
    ASSERT_OK(pl_sigv4_presign(&r, &c, 3600, &o, NULL));
    ASSERT_CONTAINS(pl_str_c(&o.canonical_request),
                    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2F"
                    "us-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires="
                    "3600&X-Amz-SignedHeaders=host\n");
    ASSERT_STR_EQ(o.signature, "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d");
    ASSERT_CONTAINS(pl_str_c(&o.presigned_query),
                    "&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d");
    pl_sigv4_out_free(&o);
    memset(&o, 0, sizeof o);
    c = creds(SUITE_AK, SUITE_SK, SUITE_TOKEN);
    ASSERT_OK(pl_sigv4_presign(&r, &c, 3600, &o, NULL));
    ASSERT_STR_EQ(o.signature, "7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c");
    ASSERT_CONTAINS(pl_str_c(&o.presigned_query), "X-Amz-Security-Token=" SUITE_TOKEN);
    pl_sigv4_out_free(&o);
    /* expiry limits */
    memset(&o, 0, sizeof o);
    ASSERT_EQ_INT(pl_sigv4_presign(&r, &c, 604801, &o, NULL), PT_ERR_RANGE);
    ASSERT_EQ_INT(pl_sigv4_presign(&r, &c, 0, &o, NULL), PT_ERR_RANGE);
    pl_sigv4_out_free(&o);
}

static pl_sigv4_req s3doc(const char *method, const char *path, const char *query)
{
    pl_sigv4_req r = {.method = method, .host = "examplebucket.s3.amazonaws.com", .path = path,
                      .query = query, .service = "s3", .region = "us-east-1",
                      .when = ts(2013, 5, 24, 0, 0, 0), .s3 = 1};
    return r;
}

static void t_s3_examples(void)
{
    pl_creds c = creds(S3_AK, S3_SK, NULL);
    pl_sigv4_out o = {0};
    pl_sigv4_req r = s3doc("GET", "/test.txt", NULL);
    pl_header range[] = {{"Range", "bytes=0-9"}};
    r.headers = range;
    r.n_headers = 1;
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.signed_headers, "host;range;x-amz-content-sha256;x-amz-date");
    ASSERT_STR_EQ(o.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    pl_sigv4_out_free(&o);

    memset(&o, 0, sizeof o);
    r = s3doc("PUT", "/test%24file.text", NULL);
    pl_header put[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                       {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
    r.headers = put;
    r.n_headers = 2;
    r.body = "Welcome to Amazon S3.";
    r.body_len = strlen(r.body);
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.payload_hash,
                  "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    ASSERT_STR_EQ(o.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    pl_sigv4_out_free(&o);

    memset(&o, 0, sizeof o);
    r = s3doc("GET", "/", "lifecycle");
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_CONTAINS(pl_str_c(&o.canonical_request), "\nlifecycle=\n");
    ASSERT_STR_EQ(o.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    pl_sigv4_out_free(&o);

    memset(&o, 0, sizeof o);
    r = s3doc("GET", "/", "max-keys=2&prefix=J");
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    pl_sigv4_out_free(&o);

    memset(&o, 0, sizeof o);
    r = s3doc("GET", "/test.txt", NULL);
    ASSERT_OK(pl_sigv4_presign(&r, &c, 86400, &o, NULL));
    ASSERT_CONTAINS(pl_str_c(&o.canonical_request), "\nUNSIGNED-PAYLOAD");
    ASSERT_STR_EQ(o.signature, "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    pl_sigv4_out_free(&o);
}

static void t_project_vectors(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_sigv4_out o = {0};
    pl_sigv4_req r = suite_req("POST", NULL);
    r.host = "ec2.us-east-1.amazonaws.com";
    r.service = "ec2";
    pl_header ct[] = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
    r.headers = ct;
    r.n_headers = 1;
    r.body = "Action=DescribeInstances&Version=2016-11-15";
    r.body_len = strlen(r.body);
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.payload_hash,
                  "6171eb09865e32b0602af0f7957e26573a51f53caaedff02ff88883cb0275885");
    ASSERT_STR_EQ(o.signature, "16bec6625521eb1b2a944bb8409fdd5a54007d61862cf7074d07d2e75a3a4950");
    pl_sigv4_out_free(&o);
    memset(&o, 0, sizeof o);
    pl_creds ct2 = creds(SUITE_AK, SUITE_SK, SUITE_TOKEN);
    ASSERT_OK(pl_sigv4_sign(&r, &ct2, &o, NULL));
    ASSERT_STR_EQ(o.signature, "9091ea4f9dea0d39be853a3e1b708ff8ec96cf1a4fee83a49d360092dd37f96a");
    pl_sigv4_out_free(&o);

    memset(&o, 0, sizeof o);
    r = suite_req("POST", NULL);
    r.host = "ssm.us-east-1.amazonaws.com";
    r.service = "ssm";
    pl_header sh[] = {{"Content-Type", "application/x-amz-json-1.1"},
                      {"X-Amz-Target", "AmazonSSM.GetParameter"}};
    r.headers = sh;
    r.n_headers = 2;
    r.body = "{\"Name\": \"/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/"
             "ebs-gp2/ami-id\"}";
    r.body_len = strlen(r.body);
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_STR_EQ(o.signed_headers, "content-type;host;x-amz-date;x-amz-target");
    ASSERT_STR_EQ(o.signature, "4161d57e99b4076920f11c1fd85f7fdfba87d5f5d7f44e6fd51d8771fe4a22fb");
    pl_sigv4_out_free(&o);

    memset(&o, 0, sizeof o);
    r = suite_req("PUT", NULL);
    r.host = "fl-run-1.s3.us-east-1.amazonaws.com";
    r.service = "s3";
    r.s3 = 1;
    r.path = "/logs/client%201.log";
    r.payload_hash = "UNSIGNED-PAYLOAD";
    ASSERT_OK(pl_sigv4_sign(&r, &ct2, &o, NULL));
    ASSERT_STR_EQ(o.signed_headers, "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
    ASSERT_STR_EQ(o.signature, "e0cef73ea0bf99e1c7f88471d4abe095cc85e14e1069ac41dc48a43639b39242");
    pl_sigv4_out_free(&o);
}

static void t_encoding(void)
{
    pl_str s = {0};
    ASSERT_OK(pl_uri_encode(&s, "a b/c~d+e=\xe1\x88\xb4", 13, 1));
    ASSERT_STR_EQ(pl_str_c(&s), "a%20b/c~d%2Be%3D%E1%88%B4");
    pl_str_reset(&s);
    ASSERT_OK(pl_uri_encode(&s, "a/b", 3, 0));
    ASSERT_STR_EQ(pl_str_c(&s), "a%2Fb");
    pl_str_free(&s);
    /* S3 canonical URI: encoded once, '//' kept; other services: encoded twice */
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_sigv4_out o = {0};
    pl_sigv4_req r = s3doc("GET", "/b/logs//client%201.log", NULL);
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_CONTAINS(pl_str_c(&o.canonical_request), "GET\n/b/logs//client%201.log\n");
    pl_sigv4_out_free(&o);
    memset(&o, 0, sizeof o);
    r = suite_req("GET", NULL);
    r.path = "/a%20b";
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_CONTAINS(pl_str_c(&o.canonical_request), "GET\n/a%2520b\n");
    pl_sigv4_out_free(&o);
    /* header trimming, repeated-space collapse, rejection of line breaks */
    memset(&o, 0, sizeof o);
    r = suite_req("GET", NULL);
    pl_header h[] = {{"My-Header1", "  value1   with  spaces "}};
    r.headers = h;
    r.n_headers = 1;
    ASSERT_OK(pl_sigv4_sign(&r, &c, &o, NULL));
    ASSERT_CONTAINS(pl_str_c(&o.canonical_request), "my-header1:value1 with spaces\n");
    pl_sigv4_out_free(&o);
    memset(&o, 0, sizeof o);
    pl_header bad[] = {{"X-Evil", "a\r\nInjected: 1"}};
    r.headers = bad;
    ASSERT_EQ_INT(pl_sigv4_sign(&r, &c, &o, NULL), PT_ERR_INVAL);
    pl_sigv4_out_free(&o);
    /* missing credentials */
    memset(&o, 0, sizeof o);
    pl_creds none;
    memset(&none, 0, sizeof none);
    r.n_headers = 0;
    ASSERT_EQ_INT(pl_sigv4_sign(&r, &none, &o, NULL), PT_ERR_AUTH);
    pl_sigv4_out_free(&o);
}

static void t_no_secret_in_outputs(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, SUITE_TOKEN);
    pl_sigv4_req r = suite_req("GET", NULL);
    pl_sigv4_out o = {0};
    ASSERT_OK(pl_sigv4_presign(&r, &c, 60, &o, NULL));
    ASSERT(!strstr(pl_str_c(&o.presigned_query), SUITE_SK));
    ASSERT(!strstr(pl_str_c(&o.canonical_request), SUITE_SK));
    ASSERT(!strstr(pl_str_c(&o.string_to_sign), SUITE_SK));
    pl_sigv4_out_free(&o);
}

/* the form bodies of the project's EC2/STS calls, as sent */
static void keep_body(void *ud, const pl_call *c, const pl_prepared *p)
{
    (void)p;
    pl_str_add(ud, c->body ? c->body : "", c->body_len);
    pl_str_add(ud, "\n", 1);
}

static void t_request_bodies(void)
{
    pl_creds c = creds(SUITE_AK, SUITE_SK, NULL);
    pl_aws_opts o = {.region = "us-east-1"};
    pl_aws *a = NULL;
    ASSERT_OK(pl_aws_new(&a, &c, &o, NULL));
    pl_str b = {0};
    pl_aws_set_capture(a, keep_body, &b);
    pl_str con = {0};
    pl_ec2_console_output(a, "i-0123456789abcdef0", &con, NULL);
    char arn[128], vpc[32];
    pl_sts_caller_arn(a, arn, sizeof arn, NULL);
    pl_ec2_subnet_vpc(a, "subnet-0123abcd", vpc, NULL);
    int live, vcpus;
    pl_ec2_count_live(a, &live, &vcpus, NULL);
    pl_run_opts ro = {.image_id = "ami-0123456789abcdef0", .instance_type = "t3.large",
                      .count = 1, .security_group_id = "sg-0123456789abcdef0",
                      .subnet_id = "subnet-0123abcd"};
    pl_instance *inst = NULL;
    size_t n = 0;
    pl_ec2_run_instances(a, &ro, &inst, &n, NULL);
    free(inst);
    char gid[32];
    pl_ec2_create_security_group(a, "g", "d", "vpc-0123abcd", NULL, 0, gid, NULL);
    const char *s = pl_str_c(&b);
    /* the newest console output (the agent's lines), not the boot's */
    ASSERT_CONTAINS(s, "Action=GetConsoleOutput&Version=2016-11-15&InstanceId=i-0123456789abcdef0"
                       "&Latest=true");
    ASSERT_CONTAINS(s, "Action=GetCallerIdentity&Version=2011-06-15\n");
    ASSERT_CONTAINS(s, "Action=DescribeSubnets&Version=2016-11-15&SubnetId.1=subnet-0123abcd");
    ASSERT_CONTAINS(s, "Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=instance-state-name"
                       "&Filter.1.Value.1=pending&Filter.1.Value.2=running&MaxResults=1000");
    ASSERT_CONTAINS(s, "&SubnetId=subnet-0123abcd");
    ASSERT_CONTAINS(s, "&VpcId=vpc-0123abcd");
    pl_str_free(&b);
    pl_str_free(&con);
    pl_aws_free(a);
}

/* ---- --emit: the project's own requests, for the botocore comparison ---- */
typedef struct emit_ctx {
    const pl_creds *c;
    const char *ts;
    const char *region;
    int count;
} emit_ctx;

static void emit_one(emit_ctx *x, const char *mode, const char *method, const char *url,
                     const char *service, const pl_str *lines, size_t n_lines, const void *body,
                     size_t body_len, const char *creq, const char *sig, int expires)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", mode);
    cJSON_AddStringToObject(j, "method", method);
    cJSON_AddStringToObject(j, "url", url);
    cJSON_AddStringToObject(j, "service", service);
    cJSON_AddStringToObject(j, "region", x->region);
    cJSON_AddStringToObject(j, "access_key", x->c->access_key);
    cJSON_AddStringToObject(j, "secret_key", x->c->secret_key);
    if (x->c->token[0]) cJSON_AddStringToObject(j, "token", x->c->token);
    cJSON_AddStringToObject(j, "timestamp", x->ts);
    cJSON_AddNumberToObject(j, "expires", expires);
    cJSON *hs = cJSON_AddArrayToObject(j, "headers");
    for (size_t i = 0; i < n_lines; i++) {
        const char *l = pl_str_c(&lines[i]);
        const char *colon = strstr(l, ": ");
        if (!colon) continue;
        cJSON *pair = cJSON_CreateArray();
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(colon - l), l);
        cJSON_AddItemToArray(pair, cJSON_CreateString(name));
        cJSON_AddItemToArray(pair, cJSON_CreateString(colon + 2));
        cJSON_AddItemToArray(hs, pair);
    }
    pl_str b64 = {0};
    pl_base64(&b64, body ? body : "", body_len);
    cJSON_AddStringToObject(j, "body_b64", pl_str_c(&b64));
    pl_str_free(&b64);
    cJSON_AddStringToObject(j, "canonical_request", creq);
    cJSON_AddStringToObject(j, "signature", sig);
    char *s = cJSON_PrintUnformatted(j);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
    x->count++;
}

static void on_capture(void *ud, const pl_call *c, const pl_prepared *p)
{
    emit_ctx *x = ud;
    static const char *const svc[] = {"ec2", "s3", "ssm", "sts"};
    emit_one(x, "raw", c->method, pl_str_c(&p->url), svc[c->svc], p->header_lines, p->n_lines,
             c->body, c->body_len, pl_str_c(&p->sig.canonical_request), p->sig.signature, 0);
}

static int emit(void)
{
    const pl_creds cs[2] = {creds("AKIDEXAMPLE", SUITE_SK, NULL),
                            creds("ASIAEXAMPLE", SUITE_SK, SUITE_TOKEN)};
    const char *endpoints[2] = {NULL, "http://127.0.0.1:4569"};
    for (int ci = 0; ci < 2; ci++) {
        for (int ei = 0; ei < 2; ei++) {
            pl_aws_opts o = {.region = ci ? "us-west-2" : "us-east-1"};
            for (int s = 0; s < PL_NSERVICES; s++) o.endpoint[s] = endpoints[ei];
            pl_aws *a = NULL;
            if (pl_aws_new(&a, &cs[ci], &o, NULL)) return 1;
            emit_ctx x = {.c = &cs[ci], .ts = "20261128T213000Z", .region = o.region};
            pl_aws_set_clock(a, ts(2026, 11, 28, 21, 30, 0));
            pl_aws_set_capture(a, on_capture, &x);
            /* EC2 */
            pl_tag tags[] = {{"petal:run-id", "r-20261128-abc"}, {"Name", "petal server (x y)"}};
            pl_run_opts ro = {.image_id = "ami-0123456789abcdef0", .instance_type = "r5.large",
                              .count = 3, .user_data = "#!/bin/sh\necho 'hi there' && exit 0\n",
                              .security_group_id = "sg-0123456789abcdef0", .key_name = "vockey",
                              .instance_profile = "LabInstanceProfile", .tags = tags,
                              .n_tags = 2, .client_token = "petal-r-1-server"};
            pl_instance *inst = NULL;
            size_t n = 0;
            pl_ec2_run_instances(a, &ro, &inst, &n, NULL);
            free(inst);
            ro.subnet_id = "subnet-0123abcd";
            pl_ec2_run_instances(a, &ro, &inst, &n, NULL);
            free(inst);
            char gid[32], vpc[32], arn[128];
            pl_ec2_create_security_group(a, "petal-r-1", "Petal run r-1: Flower port", NULL, tags, 2,
                                         gid, NULL);
            pl_ec2_create_security_group(a, "petal-r-1", "Petal run r-1: Flower port",
                                         "vpc-0123abcd", tags, 2, gid, NULL);
            pl_ec2_subnet_vpc(a, "subnet-0123abcd", vpc, NULL);
            int live, vcpus;
            pl_ec2_count_live(a, &live, &vcpus, NULL);
            pl_sts_caller_arn(a, arn, sizeof arn, NULL);
            pl_ec2_authorize_ingress(a, "sg-0123456789abcdef0", 8080, 8083,
                                     "sg-0123456789abcdef0", NULL, NULL);
            pl_ec2_authorize_ingress(a, "sg-0123456789abcdef0", 22, 22, NULL, "203.0.113.5/32",
                                     NULL);
            const char *ids[] = {"i-0123456789abcdef0", "i-0fedcba9876543210"};
            pl_ec2_describe_instances(a, ids, 2, NULL, NULL, &inst, &n, NULL);
            pl_ec2_describe_instances(a, NULL, 0, "petal:run-id", "r-1", &inst, &n, NULL);
            pl_instance st[1];
            memset(st, 0, sizeof st);
            snprintf(st[0].id, sizeof st[0].id, "%s", ids[0]);
            pl_ec2_instance_status(a, st, 1, NULL);
            pl_ec2_terminate_instances(a, ids, 2, NULL);
            pl_str con = {0};
            pl_ec2_console_output(a, ids[0], &con, NULL);
            pl_str_free(&con);
            char ami[32];
            pl_ec2_newest_image(a, "099720109477", "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-*",
                                ami, NULL);
            pl_ec2_delete_security_group(a, "sg-0123456789abcdef0", 0, NULL);
            pl_aws_check_credentials(a, NULL);
            /* SSM */
            char v[64];
            pl_ssm_get_parameter(
                a, "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64", v,
                sizeof v, NULL);
            /* S3 */
            pl_s3_create_bucket(a, "petal-r-1-abcdef", NULL);
            pl_s3_put(a, "petal-r-1-abcdef", "results/petal/fedavg/2/client_1_log.log",
                      "hello\n", 6, NULL, NULL, NULL);
            pl_s3_put(a, "petal-r-1-abcdef", "logs/client 1+(x)=y;z@$,&.log", "x", 1, "text/plain",
                      NULL, NULL);
            pl_str out = {0};
            pl_s3_get(a, "petal-r-1-abcdef", "results/petal/fedavg/2/server_log.log", 0, &out,
                      NULL, NULL);
            pl_str_free(&out);
            long long sz;
            pl_s3_head(a, "petal-r-1-abcdef", "artifacts/petal.tar.gz", &sz, NULL, NULL);
            pl_s3_object *objs = NULL;
            size_t no = 0;
            pl_s3_list(a, "petal-r-1-abcdef", "results/petal/", 2, &objs, &no, NULL);
            pl_s3_delete(a, "petal-r-1-abcdef", "manifest/server.json", NULL);
            pl_s3_delete_bucket(a, "petal-r-1-abcdef", NULL);
            pl_aws_set_capture(a, NULL, NULL);
            /* presigned URLs */
            const char *methods[] = {"GET", "PUT"};
            for (int m = 0; m < 2; m++) {
                pl_str url = {0};
                if (pl_s3_presign(a, methods[m], "petal-r-1-abcdef",
                                  "results/petal/fed avg/2/client_0_log.log", 3600, &url, NULL))
                    return 1;
                emit_one(&x, "presign", methods[m], pl_str_c(&url), "s3", NULL, 0, NULL, 0, "",
                         "", 3600);
                pl_str_free(&url);
            }
            pl_aws_free(a);
            fprintf(stderr, "emitted %d requests\n", x.count);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const test_case_ cases[] = {
        TEST(t_signing_key), TEST(t_get_vanilla),    TEST(t_query_order),
        TEST(t_post_form),   TEST(t_session_token),  TEST(t_presign),
        TEST(t_s3_examples), TEST(t_project_vectors), TEST(t_encoding),
        TEST(t_no_secret_in_outputs), TEST(t_request_bodies)};
    if (argc > 1 && !strcmp(argv[1], "--emit")) return emit();
    return test_run_all_("test_sigv4", cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
