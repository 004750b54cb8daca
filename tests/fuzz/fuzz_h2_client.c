/*
 * fuzz_h2_client.c - the gRPC client against a hostile server: HTTP/2 frames
 * (nghttp2 session), HPACK, the response and trailers checks, GOAWAY and
 * stream ends, gRPC reassembly, the receive queue and its limits, the
 * transfer deadline (net/grpc_client.c, net/h2.c, net/grpc_msg.c), then the
 * agent's ServerMessage decode and parameter check of every message.
 *
 * The input is what the server sends after the client's preface, in up to
 * FZ_STEPS steps separated by FZ_SEP: a frame sequence, not one message. Per
 * input a pnet_client connects to a loopback listener of this process; each
 * step is written to it, then the client is driven as the agent drives it:
 * every whole message is decoded and answered (a ReconnectIns with a
 * DisconnectRes and a half-close), so the server's next step meets a client
 * in the state the previous ones left. After the last step the server side
 * half-closes. Properties: recv/send/poll return only their documented codes,
 * a status and message exist once the call is over, and a connection the
 * server has closed always ends the call within a few polls.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "pnet.h"

#define FZ_STEPS 8

static int lfd = -1;
static char addr[32];
static pt_params like; /* a small model's shapes, for the parameter check */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof a;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 16) ||
        getsockname(lfd, (struct sockaddr *)&a, &sl))
        abort();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(a.sin_port));
    int nd[4] = {4, 1, 2, 1}; /* as tests/fuzz/gen_corpus_h2_client.py SHAPES */
    const int64_t s0[] = {2, 2, 1, 2}, s1[] = {2}, s2[] = {8, 3}, s3[] = {3};
    const int64_t *sh[4] = {s0, s1, s2, s3};
    if (pt_params_init(&like, 4, nd, sh)) abort();
    return 0;
}

/* Read and drop what the client wrote (never blocks). */
static void drain(int sfd)
{
    uint8_t sink[65536];
    while (recv(sfd, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
}

static void put(int sfd, const uint8_t *p, size_t n)
{
    double t0 = pt_now();
    while (n && pt_now() - t0 < 2.0) {
        ssize_t w = send(sfd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return; /* the client closed */
        } else {
            drain(sfd);
            struct pollfd pf = {.fd = sfd, .events = POLLOUT};
            poll(&pf, 1, 1);
        }
    }
}

static int is_recv_code(int rc)
{
    return rc == PT_ERR_CLOSED || rc == PT_ERR_PROTO || rc == PT_ERR_TIMEOUT ||
           rc == PT_ERR_NET || rc == PT_ERR_RANGE || rc == PT_ERR_NOMEM;
}

/* Answer one ServerMessage as the agent would (without training). Returns 1
 * when the call is over on our side (ReconnectIns). */
static int answer(pnet_client *c, const uint8_t *m, size_t n)
{
    char err[PT_ERRLEN];
    pnet_server_in in;
    pnet_client_out r = {0};
    if (pnet_server_in_decode(m, n, NULL, &in, err) != PT_OK) return 0;
    (void)pnet_smsg_name(in.type);
    int over = 0;
    double v;
    (void)pt_config_get_number(&in.config, "batch_size", &v);
    switch (in.type) {
    case PNET_SMSG_RECONNECT:
        r.type = PNET_CMSG_DISCONNECT;
        r.reason = PNET_REASON_ACK;
        over = 1;
        break;
    case PNET_SMSG_FIT:
    case PNET_SMSG_EVALUATE: {
        int rc = pnet_params_check(&in.params, &like, PNET_NPY_ERR_OVERFLOW | PNET_NPY_FINITE,
                                   err);
        r.type = in.type == PNET_SMSG_FIT ? PNET_CMSG_FIT : PNET_CMSG_EVALUATE;
        r.status_code = rc ? PNET_CODE_FIT_NOT_IMPLEMENTED : PNET_CODE_OK;
        r.status_message = rc ? err : "Success";
        r.num_examples = 1;
        break;
    }
    case PNET_SMSG_GET_PARAMETERS:
        r.type = PNET_CMSG_GET_PARAMETERS;
        r.params = &like;
        break;
    case PNET_SMSG_GET_PROPERTIES: r.type = PNET_CMSG_GET_PROPERTIES; break;
    default: r.type = PNET_CMSG_NONE; break;
    }
    if (r.type != PNET_CMSG_NONE) {
        pnet_msg *out;
        if (pnet_client_out_msg(&r, &out, err) == PT_OK) {
            int rc = pnet_client_send_msg(c, out, err);
            FZ_CHECK(rc == PT_OK || is_recv_code(rc) || rc == PT_ERR_TLS);
            pnet_msg_unref(out);
        }
    }
    pnet_server_in_free(&in);
    if (over) pnet_client_close(c, 0);
    return over;
}

/* Take what the client has received and answer it. Returns 1 once the call
 * is over (an error from recv, or our half-close). */
static int drive(pnet_client *c, int sfd, int wait_ms)
{
    char err[PT_ERRLEN];
    for (int i = 0; i < 32; i++) {
        uint8_t *m;
        size_t n;
        drain(sfd);
        int rc = pnet_client_recv(c, &m, &n, i == 0 ? wait_ms : 0, err);
        if (rc == PT_ERR_TIMEOUT && strstr(err, "no message")) return 0;
        if (rc != PT_OK) {
            FZ_CHECK(is_recv_code(rc));
            const char *msg = NULL;
            int st = pnet_client_status(c, &msg);
            FZ_CHECK(st >= -1 && msg != NULL);
            return 1;
        }
        FZ_CHECK(n <= (1u << 20));
        if (answer(c, m, n)) return 1;
        int q = pnet_client_poll(c, 0, err);
        FZ_CHECK(q >= 0 || is_recv_code(q));
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[FZ_STEPS];
    size_t len[FZ_STEPS];
    size_t np = fz_split(data, size, part, len, FZ_STEPS);
    char err[PT_ERRLEN];
    pnet_client_opts o = {.address = addr,
                          .connect_deadline_s = -1,
                          .max_message = 1 << 20,
                          .max_queue = 4,
                          .keepalive_time_s = -1,      /* time-based clocks stay out of it, */
                          .transfer_timeout_s = 0.02}; /* but nothing may wait long */
    pnet_client *c = NULL;
    if (pnet_client_connect(&c, &o, err) != PT_OK) return 0;
    int sfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (sfd < 0) {
        pnet_client_free(c);
        return 0;
    }
    int over = 0;
    for (size_t i = 0; i < np && !over; i++) {
        put(sfd, part[i], len[i]); /* on loopback the bytes are there when send returns */
        over = drive(c, sfd, 0);
    }
    if (!over) { /* the server goes away: the call must end */
        shutdown(sfd, SHUT_WR);
        for (int i = 0; i < 50 && !over; i++) over = drive(c, sfd, i < 4 ? 0 : 2);
        FZ_CHECK(over);
    }
    pnet_client_free(c);
    close(sfd);
    return 0;
}
