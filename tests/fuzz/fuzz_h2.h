/*
 * fuzz_h2.h - what Petal's gRPC server fuzz targets share (fuzz_h2_server.c,
 * fuzz_h2_frames.c, fuzz_tls_server.c): servers whose callbacks answer like
 * an agent, and feeding one connection in memory. A socketpair end is handed
 * to the server with pnet_server_adopt, the other is the peer: no TCP, no
 * ports, and the write boundaries are chosen by the input (each one is a
 * separate read for the server).
 */
#ifndef PETAL_FUZZ_H2_H
#define PETAL_FUZZ_H2_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "pnet.h"

static pnet_msg *fz_hello; /* a GetParametersIns, sent to each new client */

static void fz_on_join(pnet_server *s, uint64_t id, const char *peer, void *user)
{
    (void)user;
    FZ_CHECK(peer != NULL);
    FZ_CHECK(pnet_server_send(s, id, fz_hello) == PT_OK);
    FZ_CHECK(pnet_server_peer(s, id) != NULL);
}

static void fz_on_message(pnet_server *s, uint64_t id, pnet_msg *m, void *user)
{
    (void)user;
    pnet_client_in in;
    char err[PT_ERRLEN];
    pnet_decode_limits o = {.max_tensors = 8};
    if (pnet_client_in_decode(pnet_msg_data(m), pnet_msg_len(m), &o, &in, err) != PT_OK) {
        pnet_server_end_stream(s, id, PNET_GRPC_INVALID_ARGUMENT, err);
        return;
    }
    pt_params p = {0};
    (void)pnet_params_decode(&in.params, &p, PNET_NPY_F32_ONLY, err);
    pt_params_free(&p);
    if (in.type == PNET_CMSG_DISCONNECT)
        pnet_server_end_stream(s, id, PNET_GRPC_OK, NULL);
    else
        pnet_server_send(s, id, fz_hello);
    pnet_client_in_free(&in);
    pnet_stats st;
    FZ_CHECK(pnet_server_stats(s, id, &st) == PT_OK);
}

static void fz_on_leave(pnet_server *s, uint64_t id, int reason, const char *detail, void *user)
{
    (void)user;
    (void)s;
    (void)id;
    FZ_CHECK(detail != NULL);
    (void)pnet_leave_name(reason);
}

/* A server on 127.0.0.1:0 (never connected to over TCP) with small limits
 * so the fuzzer reaches them; o_extra may set TLS and a token. */
static pnet_server *fz_server(const pnet_server_opts *o_extra)
{
    char err[PT_ERRLEN];
    pnet_server_opts o = {.address = "127.0.0.1:0", .max_message = 4 << 20,
                          .max_connections = 8, .max_header_list = 8192,
                          .max_conn_buffer = 6 << 20, .max_rx_total = 8 << 20,
                          .handshake_timeout_s = 1.0, .on_join = fz_on_join,
                          .on_message = fz_on_message, .on_leave = fz_on_leave};
    if (o_extra) {
        o.tls_cert = o_extra->tls_cert;
        o.tls_key = o_extra->tls_key;
        o.tls_client_ca = o_extra->tls_client_ca;
        o.auth_token = o_extra->auth_token;
    }
    pnet_server *s;
    if (pnet_server_new(&s, &o, err)) {
        fprintf(stderr, "fuzz: pnet_server_new: %s\n", err);
        abort();
    }
    if (!fz_hello) {
        pnet_server_out out = {.type = PNET_SMSG_GET_PARAMETERS};
        size_t size, w;
        if (pnet_server_out_size(&out, &size, err) || pnet_msg_new(&fz_hello, size) ||
            pnet_server_out_pack(&out, pnet_msg_data(fz_hello), size, &w, err))
            abort();
    }
    return s;
}

/* One in-memory connection: *peer_fd is the client's end (non-blocking). */
static int fz_connect(pnet_server *s, int *peer_fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return -1;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    int rc = pnet_server_adopt(s, sv[0], "fuzz:peer");
    FZ_CHECK(rc == PT_OK || rc == PT_ERR_BUSY);
    *peer_fd = sv[1];
    return 0;
}

/* Let the server run once and drop what it wrote; 1 once it closed. */
static int fz_pump(pnet_server *s, int fd)
{
    uint8_t sink[65536];
    FZ_CHECK(pnet_server_poll(s, 0) >= 0);
    for (;;) {
        ssize_t r = recv(fd, sink, sizeof sink, 0);
        if (r > 0) continue;
        if (r == 0) return 1;
        return errno != EAGAIN && errno != EINTR;
    }
}

/* Write p[0..n) (all of it, pumping the server while the socket is full). */
static int fz_send(pnet_server *s, int fd, const uint8_t *p, size_t n, double deadline)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) return -1; /* server closed */
        if (fz_pump(s, fd) || pt_now() > deadline) return -1;
    }
    return 0;
}

/* Half-close, then run the server until it closes the connection (or the
 * deadline), and let it release everything. */
static void fz_finish(pnet_server *s, int fd, double deadline)
{
    shutdown(fd, SHUT_WR);
    while (!fz_pump(s, fd) && pt_now() < deadline) {
        struct pollfd pf[2] = {{.fd = fd, .events = POLLIN},
                               {.fd = pnet_server_fd(s), .events = POLLIN}};
        poll(pf, 2, 1);
    }
    close(fd);
    for (int i = 0; i < 50 && pnet_server_clients(s) > 0; i++) pnet_server_poll(s, 1);
    pnet_server_poll(s, 0);
}

#endif /* PETAL_FUZZ_H2_H */
