/*
 * fuzz_aws_reply.c - AWS replies as the launcher receives them: the EC2, S3
 * and SSM calls of launcher/{ec2,s3,aws}.c run against an in-process HTTP/1.1
 * responder on 127.0.0.1 that answers every request with the fuzz input
 * (real libcurl, real signing, real reply parsing, error mapping).
 * Input: byte 0 picks the call, byte 1 the HTTP status, the rest is the body;
 * bodies separated by FZ_SEP answer successive requests (the last one repeats),
 * for the calls that make several (S3 list pages, bucket emptying, IMDSv2:
 * token, role name, role credentials JSON). Retries are off (max_attempts 1).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "launch_int.h"
#include "plaunch.h"

#define MAX_PARTS 8
#define RBUF (1 << 17)

static struct {
    pthread_mutex_t mu;
    const uint8_t *body[MAX_PARTS];
    size_t len[MAX_PARTS];
    size_t nparts, next;
    uint8_t *copy; /* the bodies live here: a late request on a connection
                      the client gave up must never read the fuzzer's input */
    int status;
    int lfd;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER, .lfd = -1};
static char endpoint[64];

static pl_aws *aws;

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Serve one keep-alive connection: for each request (headers, then
 * Content-Length bytes of body) send the current reply. */
static void serve_conn(int fd, char *buf, char *out)
{
    size_t have = 0;
    for (;;) {
        char *end = NULL;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have == RBUF) return;
            ssize_t r = recv(fd, buf + have, RBUF - have, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return;
            have += (size_t)r;
        }
        size_t hlen = (size_t)(end - buf) + 4, clen = 0;
        for (char *p = buf; p < end; p++)
            if ((p == buf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15))
                clen = strtoul(p + 15, NULL, 10);
        int head = !strncmp(buf, "HEAD ", 5);
        if (clen > RBUF - hlen) return;
        while (have < hlen + clen) {
            ssize_t r = recv(fd, buf + have, RBUF - have, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return;
            have += (size_t)r;
        }
        memmove(buf, buf + hlen + clen, have - hlen - clen);
        have -= hlen + clen;
        /* One send per reply: header and body split over two segments
         * meet Nagle + delayed ACK (40 ms per exchange). */
        pthread_mutex_lock(&srv.mu);
        size_t k = srv.next < srv.nparts ? srv.next : srv.nparts - 1;
        srv.next++;
        size_t len = srv.len[k] < RBUF ? srv.len[k] : RBUF;
        int hl = snprintf(out, 512,
                          "HTTP/1.1 %d Fuzz\r\nContent-Length: %zu\r\n"
                          "x-amz-request-id: FUZZREQUEST\r\nETag: \"0123abcd\"\r\n"
                          "Content-Type: application/xml\r\n\r\n",
                          srv.status, len);
        size_t bl = head ? 0 : len;
        if (bl) memcpy(out + hl, srv.body[k], bl);
        pthread_mutex_unlock(&srv.mu);
        if (write_all(fd, out, (size_t)hl + bl)) return;
    }
}

/* One thread per connection: the AWS client keeps its connection alive
 * while others (IMDS) come and go. */
static void *conn_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(RBUF), *out = malloc(512 + RBUF);
    if (buf && out) serve_conn(fd, buf, out);
    free(buf);
    free(out);
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv.lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, NULL, conn_thread, (void *)(intptr_t)fd)) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (srv.lfd < 0 || bind(srv.lfd, (struct sockaddr *)&a, sizeof a) ||
        listen(srv.lfd, 16) || getsockname(srv.lfd, (struct sockaddr *)&a, &al))
        abort();
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL)) abort();
    pthread_detach(t);
    const char *ep = endpoint;
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", ntohs(a.sin_port));
    pl_creds c;
    memset(&c, 0, sizeof c);
    strcpy(c.access_key, "AKIDEXAMPLE");
    strcpy(c.secret_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    strcpy(c.region, "us-east-1");
    pl_aws_opts o = {.region = "us-east-1", .endpoint = {ep, ep, ep, ep}, .max_attempts = 1,
                     .backoff_base = 0.001, .backoff_cap = 0.001, .max_response = 1 << 20,
                     .timeout_s = 10};
    char err[PT_ERRLEN];
    if (pl_aws_new(&aws, &c, &o, err)) {
        fprintf(stderr, "fuzz_aws_reply: %s\n", err);
        abort();
    }
    return 0;
}

static const int statuses[8] = {200, 200, 200, 400, 403, 404, 503, 301};

static void call(int op, int notfound, char *err)
{
    static const char *const ids[2] = {"i-0123456789abcdef0", "i-0fedcba9876543210"};
    pl_instance *inst = NULL, two[2];
    size_t n = 0;
    char out[256], gid[32];
    pl_str s = {0};
    long long size;
    pl_tag tag = {"petal-run", "fuzz"};
    switch (op) {
    case 0:
        if (pl_ec2_describe_instances(aws, ids, 2, NULL, NULL, &inst, &n, err) == PT_OK)
            for (size_t i = 0; i < n; i++) FZ_CHECK(memchr(inst[i].id, 0, sizeof inst[i].id));
        free(inst);
        break;
    case 1: {
        pl_run_opts r = {.image_id = "ami-0123456789abcdef0", .instance_type = "t3.micro",
                         .count = 2, .user_data = "#!/bin/sh\n", .security_group_id = "sg-0123",
                         .tags = &tag, .n_tags = 1};
        if (pl_ec2_run_instances(aws, &r, &inst, &n, err) == PT_OK) FZ_CHECK(n == 2);
        free(inst);
        break;
    }
    case 2: {
        char(*g)[32] = NULL;
        if (pl_ec2_find_security_groups(aws, "petal-run", "fuzz", &g, &n, err) == PT_OK)
            for (size_t i = 0; i < n; i++) FZ_CHECK(memchr(g[i], 0, 32));
        free(g);
        break;
    }
    case 3: pl_ec2_console_output(aws, ids[0], &s, err); break;
    case 4: pl_ec2_newest_image(aws, "137112412989", "al2023-ami-*", gid, err); break;
    case 5: pl_ec2_create_security_group(aws, "petal-fuzz", "fuzz", NULL, &tag, 1, gid, err); break;
    case 6:
        memset(two, 0, sizeof two);
        strcpy(two[0].id, ids[0]);
        strcpy(two[1].id, ids[1]);
        pl_ec2_instance_status(aws, two, 2, err);
        break;
    case 7: pl_ec2_terminate_instances(aws, ids, 2, err); break;
    case 8: {
        pl_s3_object *objs = NULL;
        if (pl_s3_list(aws, "petal-fuzz", "runs/", 0, &objs, &n, err) == PT_OK)
            for (size_t i = 0; i < n; i++) FZ_CHECK(memchr(objs[i].key, 0, sizeof objs[i].key));
        free(objs);
        break;
    }
    case 9: pl_s3_get(aws, "petal-fuzz", "runs/a.json", 0, &s, out, err); break;
    case 10: pl_s3_head(aws, "petal-fuzz", "runs/a.json", &size, out, err); break;
    case 11:
        if (pl_ssm_get_parameter(aws, "/aws/service/ami", out, sizeof out, err) == PT_OK)
            FZ_CHECK(memchr(out, 0, sizeof out));
        break;
    case 12: pl_aws_check_credentials(aws, err); break;
    case 13: pl_s3_put(aws, "petal-fuzz", "runs/b.json", "{}", 2, NULL, out, err); break;
    case 14: pl_s3_empty_and_delete_bucket(aws, "petal-fuzz", &n, err); break;
    case 15:
        /* NotFound answers are retried with backoff for 15.5 s by design
         * (a new group is not visible at once): not an input bug. */
        if (!notfound)
            pl_ec2_authorize_ingress(aws, "sg-0123", 8080, 8080, NULL, "10.0.0.0/16", err);
        break;
    case 16: pl_s3_create_bucket(aws, "petal-fuzz", err); break;
    case 17: {
        pl_creds c;
        time_t exp;
        if (pl_imds_role_credentials(endpoint, &c, &exp, err) == PT_OK)
            FZ_CHECK(c.access_key[0] && c.secret_key[0] && memchr(c.token, 0, sizeof c.token));
        pl_creds_wipe(&c);
        break;
    }
    default: pl_ec2_delete_security_group(aws, "sg-0123", 0, err); break;
    }
    pl_str_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size);
    pthread_mutex_lock(&srv.mu);
    free(srv.copy);
    srv.copy = copy;
    srv.status = statuses[data[1] & 7];
    srv.nparts = fz_split(copy + 2, size - 2, srv.body, srv.len, MAX_PARTS);
    srv.next = 0;
    pthread_mutex_unlock(&srv.mu);
    char err[PT_ERRLEN] = "";
    int notfound = srv.status == 404 || memmem(data, size, "NotFound", 8) ||
                   memmem(data, size, "NoSuch", 6);
    call(data[0] % 19, notfound, err);
    FZ_CHECK(memchr(err, 0, sizeof err));
    return 0;
}
