/*
 * sock_int.h - TCP sockets for the transport: address parsing, listening,
 * connecting with a timeout, tuning, Flower-style peer strings.
 */
#ifndef PETAL_NET_SOCK_INT_H
#define PETAL_NET_SOCK_INT_H

#include <stddef.h>
#include <sys/socket.h>

/* Split "host:port", "[v6]:port" or ":port" (host "" then). PT_OK or
 * PT_ERR_INVAL (err says why). */
int sock_split(const char *addr, char *host, size_t hlen, char *port, size_t plen, char *err);
/* Bind + listen (non-blocking, SO_REUSEADDR). *port_out gets the bound port.
 * PT_ERR_BUSY when the address is in use; PT_ERR_INVAL / PT_ERR_NET. */
int sock_listen(const char *addr, int *fd_out, int *port_out, char *err);
/* Accept one connection (non-blocking, tuned) or PT_ERR_CLOSED when none is
 * waiting; peer gets e.g. "ipv4:127.0.0.1:40564", addr (if not NULL) the
 * peer's address. */
int sock_accept(int lfd, int *fd_out, char *peer, size_t plen, struct sockaddr_storage *addr);
/* Connect to host:port within timeout_ms; returns a non-blocking tuned fd.
 * PT_ERR_NET (refused, unreachable: worth retrying), PT_ERR_TIMEOUT,
 * PT_ERR_INVAL (unknown host), PT_ERR_INTERRUPTED (*stop became non-zero;
 * checked every 100 ms; stop may be NULL). */
int sock_connect(const char *host, const char *port, int timeout_ms, volatile int *stop,
                 int *fd_out, char *err);
/* TCP_NODELAY, big buffers, O_NONBLOCK, CLOEXEC. */
void sock_tune(int fd);
void sock_peer_string(const struct sockaddr *sa, char *buf, size_t len);

/* Keep SIGPIPE away from the process around writes that cannot pass
 * MSG_NOSIGNAL (OpenSSL's socket BIO): block it in this thread, and on
 * restore swallow one raised meanwhile. */
#include <signal.h>
typedef struct sock_sigpipe {
    sigset_t old;
    int was_pending;
} sock_sigpipe;
void sock_sigpipe_block(sock_sigpipe *g);
void sock_sigpipe_restore(sock_sigpipe *g);

#endif /* PETAL_NET_SOCK_INT_H */
