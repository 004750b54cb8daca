/*
 * fuzz_h2_server.c - the gRPC server's input path: HTTP/2 frames (nghttp2
 * session), HPACK headers, request validation, gRPC message reassembly and
 * limits, flood limits (net/grpc_server.c, net/srv_conn.c, net/h2.c,
 * net/grpc_msg.c), then the agent's ClientMessage decode of every message
 * delivered.
 *
 * In memory: per input, one end of a socketpair is given to a pnet_server
 * (pnet_server_adopt) and the other gets the HTTP/2 client preface (unless
 * the input starts with "PRI ") and the input, then a half-close; the server
 * runs until it closes the connection. Callbacks answer like an agent: a
 * ServerMessage on join, a reply per message, end of stream on DISCONNECT.
 * Inputs containing "Bearer " go to a second server that requires the token
 * H2_FUZZ_TOKEN (authorization metadata check). The input is written in
 * pieces cut at every "\n@@@@\n" (FZ_SEP; the separator is not sent), each
 * piece a separate read for the server.
 */
#include "fuzz_h2.h"

#define H2_FUZZ_TOKEN "petal-fuzz-token-0123456789"

static pnet_server *servers[2]; /* [1] requires H2_FUZZ_TOKEN */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_quiet_logs();
    pnet_server_opts tok = {.auth_token = H2_FUZZ_TOKEN};
    servers[0] = fz_server(NULL);
    servers[1] = fz_server(&tok);
    return 0;
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pnet_server *srv = servers[memmem(data, size, "Bearer ", 7) != NULL];
    int fd;
    if (fz_connect(srv, &fd)) return 0;
    double deadline = pt_now() + 5.0;
    int ok = (size >= 4 && !memcmp(data, "PRI ", 4)) ||
             !fz_send(srv, fd, (const uint8_t *)preface, sizeof preface - 1, deadline);
    size_t off = 0;
    while (ok && off < size) {
        const uint8_t *sep = memmem(data + off, size - off, FZ_SEP, FZ_SEP_LEN);
        size_t n = sep ? (size_t)(sep - (data + off)) : size - off;
        ok = !fz_send(srv, fd, data + off, n, deadline);
        fz_pump(srv, fd);
        off += n + (sep ? FZ_SEP_LEN : 0);
    }
    fz_finish(srv, fd, deadline);
    return 0;
}
