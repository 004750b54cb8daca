/*
 * sock.c - TCP sockets for the transport (see sock_int.h).
 */
#include "sock_int.h"
#include "h2_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sock_split(const char *addr, char *host, size_t hlen, char *port, size_t plen, char *err)
{
    if (!addr || !*addr) return pt_seterr(err, PT_ERR_INVAL, "empty address");
    const char *colon, *h = addr;
    size_t hl;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return pt_seterr(err, PT_ERR_INVAL, "bad address '%s': expected [ipv6]:port", addr);
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return pt_seterr(err, PT_ERR_INVAL, "bad address '%s': expected host:port", addr);
        if (memchr(addr, ':', (size_t)(colon - addr)))
            return pt_seterr(err, PT_ERR_INVAL,
                             "bad address '%s': put IPv6 hosts in brackets, [::1]:port", addr);
        hl = (size_t)(colon - addr);
    }
    const char *p = colon + 1;
    char *end;
    long v = strtol(p, &end, 10);
    if (!*p || *end || v < 0 || v > 65535)
        return pt_seterr(err, PT_ERR_INVAL, "bad port in address '%s'", addr);
    if (hl + 1 > hlen || strlen(p) + 1 > plen)
        return pt_seterr(err, PT_ERR_INVAL, "address '%s' is too long", addr);
    memcpy(host, h, hl);
    host[hl] = 0;
    snprintf(port, plen, "%ld", v);
    return PT_OK;
}

void sock_tune(int fd)
{
    int one = 1, buf = H2_SOCKBUF, idle = 60, intvl = 10, cnt = 6;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* notice peers that vanish without a FIN (a terminated instance) in ~2 min */
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
}

void sock_peer_string(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(buf, len, "ipv4:%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "ipv6:[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        snprintf(buf, len, "unknown");
    }
}

static int resolve(const char *host, const char *port, int passive, struct addrinfo **res,
                   char *err)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int g = getaddrinfo(*host ? host : NULL, port, &hints, res);
    if (g)
        return pt_seterr(err, PT_ERR_INVAL, "cannot resolve '%s': %s", *host ? host : "*",
                         gai_strerror(g));
    return PT_OK;
}

int sock_listen(const char *addr, int *fd_out, int *port_out, char *err)
{
    char host[256], port[16];
    int rc = sock_split(addr, host, sizeof host, port, sizeof port, err);
    if (rc) return rc;
    struct addrinfo *res, *ai;
    if ((rc = resolve(host, port, 1, &res, err))) return rc;
    int fd = -1, last = 0;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 512) == 0) break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (last == EADDRINUSE)
            return pt_seterr(err, PT_ERR_BUSY,
                             "cannot listen on %s: address already in use (another server "
                             "running? pick another port)", addr);
        return pt_seterr(err, PT_ERR_NET, "cannot listen on %s: %s", addr, strerror(last));
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return PT_OK;
}

int sock_accept(int lfd, int *fd_out, char *peer, size_t plen, struct sockaddr_storage *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? PT_ERR_CLOSED : PT_ERR_NET;
    sock_tune(fd);
    sock_peer_string((struct sockaddr *)&ss, peer, plen);
    if (addr) *addr = ss;
    *fd_out = fd;
    return PT_OK;
}

int sock_connect(const char *host, const char *port, int timeout_ms, volatile int *stop,
                 int *fd_out, char *err)
{
    struct addrinfo *res, *ai;
    int rc = resolve(host, port, 0, &res, err);
    if (rc) return rc;
    rc = PT_ERR_NET;
    for (ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = pt_seterr(err, PT_ERR_NET, "socket: %s", strerror(errno));
            continue;
        }
        sock_tune(fd);
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            struct timespec t0;
            int pr;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (;;) { /* in slices, so a raised stop flag is seen within 100 ms */
                struct timespec t1;
                clock_gettime(CLOCK_MONOTONIC, &t1);
                long spent = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
                long left = timeout_ms - spent;
                if (stop && *stop) {
                    close(fd);
                    freeaddrinfo(res);
                    return pt_seterr(err, PT_ERR_INTERRUPTED, "connect to %s:%s interrupted",
                                     host, port);
                }
                pr = left <= 0 ? 0 : poll(&pfd, 1, left > 100 ? 100 : (int)left);
                if (pr > 0 || (pr < 0 && errno != EINTR) || left <= 0) break;
            }
            if (pr == 0) {
                close(fd);
                rc = pt_seterr(err, PT_ERR_TIMEOUT, "connect to %s:%s timed out", host, port);
                continue;
            }
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr) {
                errno = soerr;
                r = -1;
            } else {
                r = 0;
            }
        }
        if (r == 0) {
            freeaddrinfo(res);
            *fd_out = fd;
            return PT_OK;
        }
        rc = pt_seterr(err, PT_ERR_NET, "connect to %s:%s: %s", host, port, strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

void sock_sigpipe_block(sock_sigpipe *g)
{
    sigset_t pipe, pend;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

void sock_sigpipe_restore(sock_sigpipe *g)
{
    sigset_t pipe, pend;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigpending(&pend);
    if (!g->was_pending && sigismember(&pend, SIGPIPE) == 1) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}
