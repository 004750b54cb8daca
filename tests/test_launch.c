/* test_launch.c - credentials loading, user-data rendering, option checks
 * and the --dry-run plan of 'petal launch' (no AWS call anywhere). */
#include "test.h"

#include "aws_int.h"
#include "launch_int.h"
#include "plaunch.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void put_file(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    char d[512];
    snprintf(d, sizeof d, "%s", p);
    char *sl = strrchr(d, '/');
    *sl = 0;
    for (char *q = d + strlen(tmpdir) + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            mkdir(d, 0700);
            *q = '/';
        }
    mkdir(d, 0700);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static void clear_env(void)
{
    const char *v[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                       "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAB_ACCESS_KEY_ID",
                       "AWS_LAB_SECRET_ACCESS_KEY", "AWS_LAB_SESSION_TOKEN",
                       "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) unsetenv(v[i]);
}

static void t_creds_env(void)
{
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", "ASIAENVEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "envtoken", 1);
    setenv("AWS_DEFAULT_REGION", "us-west-2", 1);
    pl_creds c;
    char err[PT_ERRLEN];
    pl_creds_opts o = {.env_file = "", .home = tmpdir};
    ASSERT_MSG(!pl_creds_load(&c, &o, err), "%s", err);
    ASSERT_STR_EQ(c.access_key, "ASIAENVEXAMPLE");
    ASSERT_STR_EQ(c.token, "envtoken");
    ASSERT_STR_EQ(c.region, "us-west-2");
    ASSERT_STR_EQ(c.source, "the environment");
    /* half a pair is an error naming the missing variable */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    ASSERT_EQ_INT(pl_creds_load(&c, &o, err), PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "AWS_SECRET_ACCESS_KEY");
    clear_env();
}

static void t_creds_dotenv_lab_names(void)
{
    clear_env();
    put_file("proj/.env", "# the original launcher's names\n"
                          "export AWS_LAB_ACCESS_KEY_ID=\"ASIALABEXAMPLE\"\n"
                          "AWS_LAB_SECRET_ACCESS_KEY='lab/secret+key'\n"
                          "AWS_LAB_SESSION_TOKEN=labtoken==\n"
                          "AWS_REGION = us-east-1\n");
    char path[512];
    snprintf(path, sizeof path, "%s/proj/.env", tmpdir);
    pl_creds c;
    char err[PT_ERRLEN];
    pl_creds_opts o = {.env_file = path, .home = tmpdir};
    ASSERT_MSG(!pl_creds_load(&c, &o, err), "%s", err);
    ASSERT_STR_EQ(c.access_key, "ASIALABEXAMPLE");
    ASSERT_STR_EQ(c.secret_key, "lab/secret+key");
    ASSERT_STR_EQ(c.token, "labtoken==");
    ASSERT_STR_EQ(c.region, "us-east-1");
    ASSERT_CONTAINS(c.source, ".env");
}

static void t_creds_profiles(void)
{
    clear_env();
    put_file("home/.aws/credentials", "[default]\naws_access_key_id = AKIADEFAULT\n"
                                      "aws_secret_access_key = defsecret\n\n"
                                      "[lab]\naws_access_key_id=ASIALAB\naws_secret_access_key="
                                      "labsecret\naws_session_token=labtok\n");
    put_file("home/.aws/config", "[default]\nregion = eu-west-1\n[profile lab]\nregion=us-west-2\n");
    char home[512];
    snprintf(home, sizeof home, "%s/home", tmpdir);
    pl_creds c;
    char err[PT_ERRLEN];
    pl_creds_opts o = {.env_file = "", .home = home};
    ASSERT_MSG(!pl_creds_load(&c, &o, err), "%s", err);
    ASSERT_STR_EQ(c.access_key, "AKIADEFAULT");
    ASSERT_STR_EQ(c.region, "eu-west-1");
    setenv("AWS_PROFILE", "lab", 1);
    ASSERT_MSG(!pl_creds_load(&c, &o, err), "%s", err);
    ASSERT_STR_EQ(c.access_key, "ASIALAB");
    ASSERT_STR_EQ(c.token, "labtok");
    ASSERT_STR_EQ(c.region, "us-west-2");
    o.profile = "missing";
    ASSERT_EQ_INT(pl_creds_load(&c, &o, err), PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "missing");
    /* over-long values are refused with their name, never skipped; an
     * unrelated long entry is harmless */
    o.profile = NULL;
    unsetenv("AWS_PROFILE");
    size_t big = PL_TOKEN_MAX + 10;
    char *tok = malloc(big + 1), *buf = malloc(2 * big + 512);
    memset(tok, 'T', big);
    tok[big] = 0;
    snprintf(buf, 2 * big + 512, "[default]\nunrelated_setting = %s\naws_access_key_id = AKIAX\n"
             "aws_secret_access_key = s\naws_session_token = %s\n", tok, tok);
    put_file("home/.aws/credentials", buf);
    ASSERT_EQ_INT(pl_creds_load(&c, &o, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "session token");
    ASSERT_CONTAINS(err, "too long");
    snprintf(buf, 2 * big + 512, "[default]\nunrelated_setting = %s\naws_access_key_id = AKIAX\n"
             "aws_secret_access_key = s\n", tok);
    put_file("home/.aws/credentials", buf);
    ASSERT_MSG(!pl_creds_load(&c, &o, err), "%s", err);
    ASSERT_STR_EQ(c.access_key, "AKIAX");
    put_file("home/.aws/config", "[default]\nregion = eu-west-1-and-a-region-name-far-too-long-"
                                 "to-be-any-region-aws-has-ever-had-or-will\n");
    ASSERT_EQ_INT(pl_creds_load(&c, &o, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "region");
    setenv("AWS_REGION", "us-east-1 bad", 1);
    ASSERT_EQ_INT(pl_creds_load(&c, &o, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "AWS_REGION");
    free(tok);
    free(buf);
    clear_env();
    /* nothing anywhere */
    pl_creds_opts none = {.env_file = "", .home = tmpdir};
    ASSERT_EQ_INT(pl_creds_load(&c, &none, err), PT_ERR_AUTH);
    ASSERT_CONTAINS(err, "AWS_ACCESS_KEY_ID");
}

static pl_user_data ud_base(const char *role, const char *url)
{
    pl_user_data u = {.run_id = "20261128-1-abc",
                      .role = role,
                      .manifest_url = url,
                      .upload_mode = "presigned",
                      .bucket = "petal-20261128-1-abc",
                      .region = "us-east-1",
                      .s3_endpoint = "https://s3.us-east-1.amazonaws.com",
                      .deadline = 1800000000,
                      .keep = "no",
                      .heartbeat_s = 10};
    return u;
}

static void t_user_data(void)
{
    pl_str ud = {0};
    char err[PT_ERRLEN];
    const char *url = "https://s3.us-east-1.amazonaws.com/petal-r/manifest/client.json?"
                      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc";
    pl_user_data u = ud_base("client", url);
    ASSERT_MSG(!pl_render_user_data(&u, &ud, err), "%s", err);
    ASSERT(!strncmp(pl_str_c(&ud), "#!/bin/sh\n", 10));
    ASSERT_CONTAINS(pl_str_c(&ud), url);
    ASSERT_CONTAINS(pl_str_c(&ud), "PETAL_ROLE='client'");
    ASSERT_CONTAINS(pl_str_c(&ud), "DEADLINE=1800000000");
    ASSERT_CONTAINS(pl_str_c(&ud), "petal-guard.service");
    ASSERT_CONTAINS(pl_str_c(&ud), "latest/api/token");
    ASSERT_CONTAINS(pl_str_c(&ud), "--aws-sigv4");
    ASSERT(!strstr(pl_str_c(&ud), "@URL@") && !strstr(pl_str_c(&ud), "@RUN@") &&
           !strstr(pl_str_c(&ud), "@DEADLINE@") && !strstr(pl_str_c(&ud), "@HB@"));
    ASSERT(ud.len < 14000);
    pl_str_free(&ud);
    /* quoting: nothing can escape the single-quoted strings */
    const char *bad_urls[] = {"https://x/'; rm -rf /", "https://x/$(id)", "https://x/`id`",
                              "ftp://x/", "https://x/a b"};
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        u = ud_base("client", bad_urls[i]);
        ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    }
    u = ud_base("client", url);
    u.run_id = "r1'";
    ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    u = ud_base("admin", url);
    ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    u = ud_base("server", url);
    u.bucket = "b'; x";
    ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    u = ud_base("server", url);
    u.s3_endpoint = "http://h/$(x)";
    ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    u = ud_base("server", url);
    u.keep = "maybe";
    ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    u = ud_base("server", url);
    u.upload_mode = "ftp";
    ASSERT_EQ_INT(pl_render_user_data(&u, &ud, err), PT_ERR_INVAL);
    pl_str_free(&ud);
    /* the script is valid POSIX sh, in both modes */
    for (int mode = 0; mode < 2; mode++) {
        u = ud_base("server", url);
        u.upload_mode = mode ? "role" : "presigned";
        ASSERT_OK(pl_render_user_data(&u, &ud, err));
        char p[512];
        snprintf(p, sizeof p, "%s/ud.sh", tmpdir);
        FILE *f = fopen(p, "w");
        fwrite(ud.data, 1, ud.len, f);
        fclose(f);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "sh -n %s", p);
        ASSERT_EQ_INT(system(cmd), 0);
        pl_str_free(&ud);
    }
}

static void t_lab_and_prices(void)
{
    ASSERT(pl_is_learner_lab("arn:aws:sts::123456789012:assumed-role/voclabs/user1234567=Jo_Doe"));
    ASSERT(!pl_is_learner_lab("arn:aws:sts::123456789012:assumed-role/LabRole/i-0abc"));
    ASSERT(!pl_is_learner_lab("arn:aws:iam::123456789012:user/voclabs"));
    ASSERT(!pl_is_learner_lab("assumed-role/voclabs/x"));
    ASSERT(!pl_is_learner_lab(NULL));
    ASSERT_EQ_INT(pl_instance_vcpus("r5.large"), 2);
    ASSERT_EQ_INT(pl_instance_vcpus("t2.micro"), 1);
    ASSERT_EQ_INT(pl_instance_vcpus("m5.4xlarge"), 16);
    ASSERT_EQ_INT(pl_instance_vcpus("x9.xlarge"), 4);
    ASSERT_NEAR(pl_instance_price("r5.large"), 0.126, 1e-9);
    ASSERT_NEAR(pl_instance_price("t3.large"), 0.0832, 1e-9);
    ASSERT_NEAR(pl_instance_price("x9.large"), 0, 0);
}

static pl_launch_opts base_opts(void)
{
    pl_launch_opts o;
    memset(&o, 0, sizeof o);
    o.n_clients = 2;
    o.dry_run = 1;
    return o;
}

static void t_limits_before_aws(void)
{
    char err[PT_ERRLEN];
    pl_launch_opts o = base_opts();
    o.dry_run = 0; /* must fail before any credential lookup or call */
    o.n_clients = 9;
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "at most 9");
    o = base_opts();
    o.n_clients = 0;
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_INVAL);
    o = base_opts();
    o.instance_type = "m5.4xlarge";
    o.n_clients = 3;
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_RANGE);
    ASSERT_CONTAINS(err, "vCPU");
    o = base_opts();
    o.strategies[0] = "FedAvg";
    o.strategies[1] = "FedAvg";
    o.n_strategies = 2;
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_INVAL);
    o = base_opts();
    o.backend = "aws";
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "--backend");
    o = base_opts();
    o.ssh_cidr = "0.0.0.0";
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_INVAL);
    o = base_opts();
    o.client_args = "--x; rm -rf /";
    ASSERT_EQ_INT(pl_launch_run(&o, NULL, NULL, err), PT_ERR_INVAL);
}

static void t_dry_run_plan(void)
{
    clear_env();
    setenv("AWS_ACCESS_KEY_ID", "ASIAREALKEYEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "RealSecretKeyDoNotLeak/abc+def", 1);
    setenv("AWS_SESSION_TOKEN", "RealSessionTokenDoNotLeak", 1);
    pl_launch_opts o = base_opts();
    o.n_clients = 8; /* 9 instances */
    const char *s[] = {"FedAvg", "FedAvgM", "FedAdagrad", "FedAdam"};
    for (int i = 0; i < 4; i++) o.strategies[i] = s[i];
    o.n_strategies = 4;
    pl_str plan = {0};
    char err[PT_ERRLEN];
    ASSERT_MSG(!pl_launch_run(&o, NULL, &plan, err), "%s", err);
    const char *p = pl_str_c(&plan);
    ASSERT(!strstr(p, "RealSecretKeyDoNotLeak"));
    ASSERT(!strstr(p, "RealSessionTokenDoNotLeak"));
    ASSERT(!strstr(p, "ASIAREALKEYEXAMPLE"));
    ASSERT_CONTAINS(p, "---- client user-data (");
    ASSERT_CONTAINS(p, "client_7_log.log");
    ASSERT_CONTAINS(p, "FedAdam");
    ASSERT_CONTAINS(p, "9 of at most 9");
    pl_str_free(&plan);
    clear_env();
}

static int sh_run(const char *cmd)
{
    return system(cmd);
}

static void t_secret_names(void)
{
    const char *bad[] = {".env", "petal/.env", ".env.local", "prod.env", "labsuser.pem",
                         "a/b/labsuser.ppk", "server.key", "x/.aws/credentials", ".aws/config",
                         "home/.ssh/id_ed25519", "id_rsa.pub", "credentials", "LABSUSER.PEM",
                         "keys/me.p12", ".netrc", "petal/.git-credentials"};
    const char *good[] = {"launcher/creds.c", "tests/fuzz/corpus/aws_creds/dotenv", "README.md",
                          "env.c", "keyboard.c", "data/monkey.png", "scripts/deps/nn.txt",
                          "environment/x", "petal/launcher/secrets.c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_MSG(pl_secret_name(bad[i]), "%s should look like a credential", bad[i]);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ASSERT_MSG(!pl_secret_name(good[i]), "%s should not look like a credential", good[i]);
}

static void t_check_artifact(void)
{
    pl_creds c;
    memset(&c, 0, sizeof c);
    snprintf(c.secret_key, sizeof c.secret_key, "UserSecret/Key+abcdefghijklmnopqrstuvwx");
    snprintf(c.token, sizeof c.token, "IQoJb3JpZ2luX2VjEUserSessionToken0123456789");
    char cmd[16384], p[600], err[PT_ERRLEN];
    /* a clean tree (long names too: GNU and pax headers) */
    snprintf(cmd, sizeof cmd,
             "set -e; cd %s; rm -rf art; mkdir art; cd art;"
             "D=$(printf 'a%%.0s' $(seq 120)); mkdir -p t/src/$D;"
             "echo 'int main(void){return 0;}' > t/src/main.c;"
             "echo x > t/src/$D/long-name-beyond-one-hundred-bytes.c;"
             "tar -czf clean.tgz t; tar --format=pax -czf clean-pax.tgz t;"
             "cp -r t t2; echo 'AWS_SECRET_ACCESS_KEY=x' > t2/.env; tar -czf env.tgz t2;"
             "cp -r t t3; mkdir t3/$D; echo k > t3/$D/labsuser.pem;"
             "tar --format=pax -czf pem-pax.tgz t3; tar --format=gnu -czf pem-gnu.tgz t3;"
             "cp -r t t4; printf 'notes: %%s\\n' '%s' > t4/notes.txt; tar -czf secret.tgz t4;"
             "cp -r t t5; head -c 300000 /dev/urandom > t5/noise; printf '%%s' '%s' >> t5/noise;"
             "tar -czf token.tgz t5; printf 'model %%s' '%s' > model.json; echo plain > plain.json;"
             "echo notgzip > bad.tgz",
             tmpdir, c.secret_key, c.token, c.secret_key);
    ASSERT_EQ_INT(sh_run(cmd), 0);
#define ART(f) (snprintf(p, sizeof p, "%s/art/%s", tmpdir, f), p)
    ASSERT_MSG(!pl_check_artifact(ART("clean.tgz"), "source", &c, 1, err), "%s", err);
    ASSERT_MSG(!pl_check_artifact(ART("clean-pax.tgz"), "source", &c, 1, err), "%s", err);
    ASSERT_EQ_INT(pl_check_artifact(ART("env.tgz"), "source", &c, 1, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "t2/.env");
    ASSERT_CONTAINS(err, "credential");
    ASSERT_EQ_INT(pl_check_artifact(ART("pem-pax.tgz"), "source", &c, 1, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "/labsuser.pem");
    ASSERT_EQ_INT(pl_check_artifact(ART("pem-gnu.tgz"), "source", &c, 1, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "/labsuser.pem");
    ASSERT_EQ_INT(pl_check_artifact(ART("secret.tgz"), "source", &c, 1, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "secret access key");
    ASSERT(!strstr(err, c.secret_key));
    ASSERT_EQ_INT(pl_check_artifact(ART("token.tgz"), "dataset", &c, 1, err), PT_ERR_INVAL);
    ASSERT_CONTAINS(err, "session token");
    ASSERT_EQ_INT(pl_check_artifact(ART("model.json"), "model", &c, 0, err), PT_ERR_INVAL);
    ASSERT_OK(pl_check_artifact(ART("plain.json"), "model", &c, 0, err));
    ASSERT_EQ_INT(pl_check_artifact(ART("bad.tgz"), "source", &c, 1, err), PT_ERR_FORMAT);
    ASSERT_EQ_INT(pl_check_artifact(ART("missing.tgz"), "source", &c, 1, err), PT_ERR_IO);
    /* no credentials to look for: names are still checked */
    ASSERT_EQ_INT(pl_check_artifact(ART("env.tgz"), "source", NULL, 1, err), PT_ERR_INVAL);
    ASSERT_OK(pl_check_artifact(ART("secret.tgz"), "source", NULL, 1, err));
#undef ART
}

static void t_xml_hostile(void)
{
    char err[PT_ERRLEN];
    pl_xml *doc = NULL;
    const char *bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
                       "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><l>&b;</l>";
    ASSERT_EQ_INT(pl_xml_parse(bomb, strlen(bomb), &doc, err), PT_ERR_FORMAT);
    ASSERT_CONTAINS(err, "DOCTYPE");
    pl_str deep = {0};
    for (int i = 0; i < 100; i++) pl_str_adds(&deep, "<a>");
    for (int i = 0; i < 100; i++) pl_str_adds(&deep, "</a>");
    ASSERT_EQ_INT(pl_xml_parse(deep.data, deep.len, &doc, err), PT_ERR_FORMAT);
    pl_str_free(&deep);
    const char *bad[] = {"", "<a>", "<a></b>", "not xml", "<a/><b/>", "<a>\x01</a>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ_INT(pl_xml_parse(bad[i], strlen(bad[i]), &doc, err), PT_ERR_FORMAT);
        ASSERT(doc == NULL);
    }
    /* namespaces are dropped, text is kept, paths walk first children */
    const char *ok = "<R xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><x:s xmlns:x=\"u\">"
                     "<item><id>i-1</id></item><item><id>i-2</id></item></x:s></R>";
    ASSERT_OK(pl_xml_parse(ok, strlen(ok), &doc, err));
    ASSERT_STR_EQ(pl_xml_text(doc, "s/item/id"), "i-1");
    const pl_xml *it = pl_xml_path(doc, "s/item");
    ASSERT_STR_EQ(pl_xml_text(pl_xml_next(it, "item"), "id"), "i-2");
    ASSERT(pl_xml_text(doc, "s/none") == NULL);
    char small[3];
    ASSERT_EQ_INT(pl_xml_copy(doc, "s/item/id", small, sizeof small, err), PT_ERR_RANGE);
    pl_xml_free(doc);
    /* escaped text reads back unchanged, CR included (a raw CR would come back as LF) */
    const char *keys[] = {"a\rb", "x\r\ny", "<&>\"'", "plain/key"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        pl_str xs = {0};
        ASSERT_OK(pl_str_adds(&xs, "<K>"));
        ASSERT_OK(pl_xml_escape(&xs, keys[i]));
        ASSERT_OK(pl_str_adds(&xs, "</K>"));
        ASSERT_OK(pl_xml_parse(xs.data, xs.len, &doc, err));
        ASSERT_STR_EQ(pl_str_c(&doc->text), keys[i]);
        pl_xml_free(doc);
        pl_str_free(&xs);
    }
    /* error bodies */
    pl_awserr ae;
    memset(&ae, 0, sizeof ae);
    const char *j = "{\"__type\":\"com.amazonaws.ssm#ParameterNotFound\",\"message\":\"nope\"}";
    pl_aws_parse_error(j, strlen(j), &ae);
    ASSERT_STR_EQ(ae.code, "ParameterNotFound");
    ASSERT_STR_EQ(ae.message, "nope");
    memset(&ae, 0, sizeof ae);
    const char *x = "<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>m"
                    "</Message></Error></Errors><RequestID>r-1</RequestID></Response>";
    pl_aws_parse_error(x, strlen(x), &ae);
    ASSERT_STR_EQ(ae.code, "InvalidInstanceID.NotFound");
    ASSERT_STR_EQ(ae.request_id, "r-1");
    memset(&ae, 0, sizeof ae);
    pl_aws_parse_error("{\"__type\": 5", 12, &ae); /* malformed: nothing, no crash */
    pl_aws_parse_error("<Error><Code>", 13, &ae);
    ASSERT_STR_EQ(ae.code, "");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/petal-test-launch-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    static const test_case_ cases[] = {TEST(t_creds_env), TEST(t_creds_dotenv_lab_names),
                                       TEST(t_creds_profiles), TEST(t_user_data),
                                       TEST(t_limits_before_aws), TEST(t_dry_run_plan),
                                       TEST(t_secret_names), TEST(t_check_artifact), TEST(t_lab_and_prices),
                                       TEST(t_xml_hostile)};
    char *argv[] = {"test_launch", NULL};
    int rc = test_run_all_("test_launch", cases, (int)(sizeof cases / sizeof cases[0]), 1, argv);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) rc = 1;
    return rc;
}
