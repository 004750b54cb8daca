/*
 * fuzz_h2_server.c - the gRPC server's input path: HTTP/2 frames (nghttp2
 * session), HPACK headers, request validation, gRPC message reassembly and
 * limits (net/grpc_server.c, net/h2.c, net/grpc_msg.c), then the agent's
 * ClientMessage decode of every message delivered.
 *
 * The transport has no socket-free entry point yet, so this drives the real
 * public API: one pnet_server on 127.0.0.1:0 for the process; per input a
 * loopback TCP client connects, writes the HTTP/2 client preface (unless the
 * input starts with "PRI ") and the input, half-closes, and the server is
 * polled until it closes the connection. Callbacks answer like an agent: a
 * ServerMessage on join, a reply per message, end of stream on DISCONNECT.
 * Inputs containing "Bearer " go to a second server that requires the token
 * H2_FUZZ_TOKEN (authorization metadata check).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "pnet.h"

#define H2_FUZZ_TOKEN "petal-fuzz-token-0123456789"

static pnet_server *servers[2]; /* [1] requires H2_FUZZ_TOKEN */
static pnet_msg *hello; /* a GetParametersIns, sent to each new client */

static void on_join(pnet_server *s, uint64_t id, const char *peer, void *user)
{
    (void)user;
    FZ_CHECK(peer != NULL);
    FZ_CHECK(pnet_server_send(s, id, hello) == PT_OK);
    FZ_CHECK(pnet_server_peer(s, id) != NULL);
}

static void on_message(pnet_server *s, uint64_t id, pnet_msg *m, void *user)
{
    (void)user;
    pnet_client_in in;
    char err[PT_ERRLEN];
    if (pnet_client_in_decode(pnet_msg_data(m), pnet_msg_len(m), NULL, &in, err) != PT_OK) {
        pnet_server_end_stream(s, id, PNET_GRPC_INVALID_ARGUMENT, err);
        return;
    }
    pt_params p = {0};
    (void)pnet_params_decode(&in.params, &p, PNET_NPY_F32_ONLY, err);
    pt_params_free(&p);
    if (in.type == PNET_CMSG_DISCONNECT)
        pnet_server_end_stream(s, id, PNET_GRPC_OK, NULL);
    else
        pnet_server_send(s, id, hello);
    pnet_client_in_free(&in);
    pnet_stats st;
    FZ_CHECK(pnet_server_stats(s, id, &st) == PT_OK);
}

static void on_leave(pnet_server *s, uint64_t id, int reason, const char *detail, void *user)
{
    (void)s;
    (void)id;
    (void)user;
    FZ_CHECK(detail != NULL);
    (void)pnet_leave_name(reason);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    char err[PT_ERRLEN];
    for (int i = 0; i < 2; i++) {
        pnet_server_opts o = {.address = "127.0.0.1:0", .max_message = 1 << 20,
                              .max_connections = 8, .max_header_list = 8192,
                              .max_conn_buffer = 2 << 20, .on_join = on_join,
                              .on_message = on_message, .on_leave = on_leave};
        if (i == 1) o.auth_token = H2_FUZZ_TOKEN;
        if (pnet_server_new(&servers[i], &o, err)) {
            fprintf(stderr, "fuzz_h2_server: %s\n", err);
            abort();
        }
    }
    pnet_server_out out = {.type = PNET_SMSG_GET_PARAMETERS};
    size_t size, w;
    if (pnet_server_out_size(&out, &size, err) || pnet_msg_new(&hello, size) ||
        pnet_server_out_pack(&out, pnet_msg_data(hello), size, &w, err))
        abort();
    return 0;
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pnet_server *srv = servers[memmem(data, size, "Bearer ", 7) != NULL];
    int port = pnet_server_port(srv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    /* Connect (non-blocking) while the server accepts. */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
        close(fd);
        return 0;
    }
    size_t pre = (size >= 4 && !memcmp(data, "PRI ", 4)) ? 0 : sizeof preface - 1;
    size_t total = pre + size, sent = 0;
    int wr_open = 1, eof = 0;
    uint8_t sink[65536];
    double t0 = pt_now();
    while (!eof && pt_now() - t0 < 5.0) {
        int n = pnet_server_poll(srv, 0);
        FZ_CHECK(n >= 0);
        if (wr_open) {
            ssize_t k;
            if (sent < pre)
                k = send(fd, preface + sent, pre - sent, MSG_NOSIGNAL);
            else
                k = sent < total ? send(fd, data + (sent - pre), total - sent, MSG_NOSIGNAL) : 0;
            if (k > 0) sent += (size_t)k;
            else if (k < 0 && errno != EAGAIN && errno != EINTR && errno != ENOTCONN) wr_open = 0;
            if (sent == total) {
                shutdown(fd, SHUT_WR);
                wr_open = 0;
            }
        }
        ssize_t r = recv(fd, sink, sizeof sink, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR && errno != ENOTCONN))
            eof = 1;
        if (r < 0 && !eof) {
            struct pollfd pf[2] = {{.fd = fd, .events = POLLIN | (wr_open ? POLLOUT : 0)},
                                   {.fd = pnet_server_fd(srv), .events = POLLIN}};
            poll(pf, 2, 2);
        }
    }
    close(fd);
    /* Let the server notice and release the connection. */
    for (int i = 0; i < 50 && pnet_server_clients(srv) > 0; i++) pnet_server_poll(srv, 1);
    pnet_server_poll(srv, 0);
    return 0;
}
