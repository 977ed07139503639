/* sock: the TCP and UDP flows, call by call: socket, bind, listen, accept, connect,
 * read/write, shutdown, close. Each call is traced when a trace is given. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/sock.h"
#include "trace_int.h"

/* Tracing off costs this one branch (none at all with -DSF_NO_TRACE). */
#define TRACE(t, call, fd, res, about, ...) \
    do { if (SF_TRACING(t)) sf_trace_call(t, call, fd, (long)(res), (res) < 0 ? errno : 0, \
                                          about, __VA_ARGS__); } while (0)

static const char *
family_name(int family)
{
    return family == AF_INET6 ? "AF_INET6" : family == AF_INET ? "AF_INET" : "AF_?";
}

/* socket(): "you have a phone". Nonblocking and close-on-exec unless blocking. */
static int
open_socket(const sf_trace *t, int family, int type, int blocking)
{
    int flags = SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK);
    int fd = socket(family, type | flags, 0);

    TRACE(t, SF_CALL_SOCKET, fd, fd, SF_ABOUT(.flags = flags), "%s, %s%s", family_name(family),
          type == SOCK_STREAM ? "SOCK_STREAM" : "SOCK_DGRAM",
          blocking ? "" : "|SOCK_NONBLOCK");
    return fd;
}

static int
set_option(const sf_trace *t, int fd, int level, int name, const char *label, int value)
{
    int rc = setsockopt(fd, level, name, &value, sizeof(value));

    TRACE(t, SF_CALL_SETSOCKOPT, fd, rc,
          SF_ABOUT(.opt_level = level, .opt_name = name, .opt_value = value), "%s=%d", label,
          value);
    return rc;
}

/* Close fd on a failure path without losing the errno that explains the failure. */
static int
fail_close(const sf_trace *t, int fd, sf_err *err, const char *call, const sf_addr *a)
{
    int code = -errno;
    char where[SF_ADDR_STRLEN];

    if (fd >= 0)
        sf_close(t, fd);
    sf_addr_format(a, where, sizeof(where));
    return sf_err_set(err, code, "%s %s", call, where);
}

/* SO_REUSEPORT lets any socket of the same user join a port's group, so a second server
 * started on a port would share it silently with the first. Before a group is made, a
 * plain socket (no SO_REUSEPORT) is bound there and closed: it fails with EADDRINUSE
 * exactly when a single socket would. 0, or -1 with errno set. */
static int
probe_port(const sf_trace *t, const sf_addr *a, int type)
{
    char where[SF_ADDR_STRLEN];
    int fd, rc, e;

    fd = open_socket(t, sf_addr_family(a), type, 1);
    if (fd < 0)
        return -1;
    rc = type == SOCK_STREAM ? set_option(t, fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 1)
                             : 0;
    if (rc == 0 && sf_addr_family(a) == AF_INET6)
        rc = set_option(t, fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 1);
    if (rc == 0) {
        rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
        TRACE(t, SF_CALL_BIND, fd, rc, SF_ABOUT(.addr = a), "%s (is the port free?)",
              sf_addr_format(a, where, sizeof(where)));
    }
    e = errno;
    sf_close(t, fd);
    errno = e;
    return rc;
}

/* socket → options → bind: shared by the TCP listener and the UDP server. */
static int
bound_socket(const sf_trace *t, const sf_addr *a, int type, const sf_listen_opts *opts,
             sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    int fd, rc;

    if (opts && opts->reuseport && opts->exclusive && sf_addr_port(a) != 0 &&
        probe_port(t, a, type) < 0)
        return fail_close(t, -1, err, "bind", a);
    fd = open_socket(t, sf_addr_family(a), type, opts && opts->blocking);
    if (fd < 0)
        return fail_close(t, -1, err, "socket", a);
    /* A restarted server must bind at once even while old connections sit in TIME_WAIT. */
    if (type == SOCK_STREAM && set_option(t, fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 1) < 0)
        return fail_close(t, fd, err, "setsockopt SO_REUSEADDR", a);
    if (opts && opts->reuseport &&
        set_option(t, fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 1) < 0)
        return fail_close(t, fd, err, "setsockopt SO_REUSEPORT", a);
    if (sf_addr_family(a) == AF_INET6 &&
        set_option(t, fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 1) < 0)
        return fail_close(t, fd, err, "setsockopt IPV6_V6ONLY", a);
    rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    TRACE(t, SF_CALL_BIND, fd, rc, SF_ABOUT(.addr = a), "%s",
          sf_addr_format(a, where, sizeof(where)));
    if (rc < 0)
        return fail_close(t, fd, err, "bind", a);
    return fd;
}

int
sf_tcp_listen(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts,
              sf_err *err)
{
    int backlog = opts && opts->backlog > 0 ? opts->backlog : SF_BACKLOG_DEFAULT;
    int fd, rc;

    fd = bound_socket(t, a, SOCK_STREAM, opts, err);
    if (fd < 0)
        return fd;
    rc = listen(fd, backlog);
    TRACE(t, SF_CALL_LISTEN, fd, rc, NULL, "backlog=%d", backlog);
    if (rc < 0)
        return fail_close(t, fd, err, "listen", a);
    return fd;
}

int
sf_tcp_bind(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts, sf_err *err)
{
    return bound_socket(t, a, SOCK_STREAM, opts, err);
}

int
sf_listen(const sf_trace *t, int fd, int backlog, sf_err *err)
{
    int rc = listen(fd, backlog);

    TRACE(t, SF_CALL_LISTEN, fd, rc, NULL, "backlog=%d", backlog);
    return rc < 0 ? sf_err_set(err, -errno, "listen") : 0;
}

/* accept(2), Linux: errors already pending on the new connection are returned by
 * accept and should be treated like EAGAIN; the listener itself is fine. */
static int
accept_error_is_transient(int e)
{
    switch (e) {
    case EAGAIN: case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
    case ENOBUFS: case ENOMEM: case EPERM:
        return 1;
    default:
        return 0;
    }
}

static int
accept_one(const sf_trace *t, int lfd, sf_addr *peer, int flags)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char who[SF_ADDR_STRLEN];
    int fd;

    if (SF_TRACING(t))
        sf__trace_entry(t, SF_CALL_ACCEPT4, lfd, SF_ABOUT(.flags = flags), "peer=%s%s",
                        peer ? "?" : "NULL", flags & SOCK_NONBLOCK ? ", SOCK_NONBLOCK" : "");
    do {
        fd = accept4(lfd, peer ? (struct sockaddr *)&ss : NULL, peer ? &len : NULL, flags);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0 && peer)
        sf_addr_from_sa(peer, (struct sockaddr *)&ss, len);
    /* The state reported is the new connected socket's: the listener stays in LISTEN. */
    if (SF_TRACING(t))
        sf__trace_call_on(t, SF_CALL_ACCEPT4, lfd, fd, fd, fd < 0 ? errno : 0,
                          SF_ABOUT(.addr = peer && fd >= 0 ? peer : NULL, .flags = flags,
                                   .notes = peer ? 0 : SF_TRACE_N_NO_ADDR), "peer=%s%s",
                          !peer ? "NULL" : fd >= 0 ? sf_addr_format(peer, who, sizeof(who))
                                                   : "-",
                          flags & SOCK_NONBLOCK ? ", SOCK_NONBLOCK" : "");
    if (fd >= 0)
        return fd;
    return accept_error_is_transient(errno) ? SF_EAGAIN : -errno;
}

int
sf_tcp_accept(const sf_trace *t, int lfd, sf_addr *peer)
{
    return accept_one(t, lfd, peer, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int
sf_tcp_accept_blocking(const sf_trace *t, int lfd, sf_addr *peer)
{
    int fd;

    /* A transient error means this connection is gone, not the listener: wait again. */
    while ((fd = accept_one(t, lfd, peer, SOCK_CLOEXEC)) == SF_EAGAIN)
        ;
    return fd;
}

static int
bind_source(const sf_trace *t, int fd, const sf_addr *src)
{
    char where[SF_ADDR_STRLEN];
    int rc = bind(fd, (const struct sockaddr *)&src->ss, src->len);

    TRACE(t, SF_CALL_BIND, fd, rc, SF_ABOUT(.addr = src), "%s",
          sf_addr_format(src, where, sizeof(where)));
    return rc;
}

/* Wait for a nonblocking connect to finish; 0, or -1 with errno set. A signal
 * (EINTR) resumes the wait with the time left, so the timeout holds however many come. */
static int
wait_connected(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    uint64_t deadline = sf_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    int rc, soerr, wait = timeout_ms;

    for (;;) {
        rc = poll(&p, 1, wait);
        if (rc >= 0 || errno != EINTR)
            break;
        if (timeout_ms >= 0) {
            uint64_t now = sf_now_ns();

            wait = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
        }
    }
    if (rc == 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    if (rc < 0)
        return -1;
    soerr = sf_sock_error(fd);
    if (soerr < 0) {
        errno = -soerr;
        return -1;
    }
    return 0;
}

/* socket → [bind src] → nonblocking connect. *pending is set while the handshake is
 * still under way (EINPROGRESS). Returns the fd or a negative code with err set. */
static int
start_connect(const sf_trace *t, const sf_addr *a, const sf_addr *src, int *pending,
              sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    unsigned bound = src && sf_addr_port(src) ? SF_TRACE_N_BOUND : 0;
    int fd, rc;

    fd = open_socket(t, sf_addr_family(a), SOCK_STREAM, 0);
    if (fd < 0)
        return fail_close(t, -1, err, "socket", a);
    /* Without it, bind(port 0) reserves a port for every destination at once and one
     * source runs out of ports at a few tens of thousands of sockets. */
    if (src && sf_addr_port(src) == 0)
        set_option(t, fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", 1);
    if (src && bind_source(t, fd, src) < 0)
        return fail_close(t, fd, err, "bind", src);
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    TRACE(t, SF_CALL_CONNECT, fd, rc, SF_ABOUT(.addr = a, .notes = bound), "%s",
          sf_addr_format(a, where, sizeof(where)));
    if (rc < 0 && errno != EINPROGRESS)
        return fail_close(t, fd, err, "connect", a);
    *pending = rc < 0;
    return fd;
}

int
sf_tcp_connect_start(const sf_trace *t, const sf_addr *a, const sf_addr *src, sf_err *err)
{
    int pending;

    return start_connect(t, a, src, &pending, err);
}

int
sf_tcp_connect(const sf_trace *t, const sf_addr *a, const sf_addr *src, int timeout_ms,
               int nonblock, sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    int fd, rc, pending;

    fd = start_connect(t, a, src, &pending, err);
    if (fd < 0)
        return fd;
    if (pending) {
        rc = wait_connected(fd, timeout_ms);
        TRACE(t, SF_CALL_CONNECT_DONE, fd, rc, SF_ABOUT(.addr = a), "%s",
              sf_addr_format(a, where, sizeof(where)));
        if (rc < 0)
            return fail_close(t, fd, err, "connect", a);
    }
    if (!nonblock && sf_set_nonblock(fd, 0) < 0)
        return fail_close(t, fd, err, "fcntl", a);
    return fd;
}

int
sf_tcp_socket(const sf_trace *t, int family, int nonblock, sf_err *err)
{
    int fd = open_socket(t, family, SOCK_STREAM, !nonblock);

    if (fd < 0)
        return sf_err_set(err, -errno, "socket %s, SOCK_STREAM", family_name(family));
    return fd;
}

int
sf_connect(const sf_trace *t, int fd, const sf_addr *a, sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    int rc;

    sf_addr_format(a, where, sizeof(where));
    if (SF_TRACING(t))
        sf__trace_entry(t, SF_CALL_CONNECT, fd, SF_ABOUT(.addr = a), "%s", where);
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    /* Interrupted, the handshake goes on: wait for it as for a nonblocking connect. */
    if (rc < 0 && errno == EINTR)
        rc = wait_connected(fd, -1);
    TRACE(t, SF_CALL_CONNECT, fd, rc, SF_ABOUT(.addr = a), "%s", where);
    if (rc == 0)
        return 0;
    if (errno == EINPROGRESS)
        return SF_EAGAIN;
    return sf_err_set(err, -errno, "connect %s", where);
}

int
sf_tcp_connect_list(const sf_trace *t, const sf_addr_list *list, const sf_addr *src,
                    int timeout_ms, int nonblock, sf_err *err)
{
    int fd = sf_err_set(err, SF_EADDR, "connect: no address");

    for (int i = 0; i < list->n; i++) {
        if (src && sf_addr_family(src) != sf_addr_family(&list->a[i]))
            continue;
        fd = sf_tcp_connect(t, &list->a[i], src, timeout_ms, nonblock, err);
        if (fd >= 0)
            return fd;
    }
    return fd;
}


int
sf_udp_bind(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts, sf_err *err)
{
    return bound_socket(t, a, SOCK_DGRAM, opts, err);
}

int
sf_udp_socket(const sf_trace *t, int family, int nonblock, sf_err *err)
{
    int fd = open_socket(t, family, SOCK_DGRAM, !nonblock);

    if (fd < 0)
        return sf_err_set(err, -errno, "socket %s, SOCK_DGRAM", family_name(family));
    return fd;
}

int
sf_udp_connect(const sf_trace *t, const sf_addr *a, const sf_addr *src, int nonblock,
               sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    int fd, rc;

    fd = open_socket(t, sf_addr_family(a), SOCK_DGRAM, !nonblock);
    if (fd < 0)
        return fail_close(t, -1, err, "socket", a);
    if (src && bind_source(t, fd, src) < 0)
        return fail_close(t, fd, err, "bind", src);
    /* No packet is sent: connect() on UDP only fixes the peer, so that ICMP errors
     * for it are reported on this socket. */
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    TRACE(t, SF_CALL_CONNECT, fd, rc, SF_ABOUT(.addr = a), "%s",
          sf_addr_format(a, where, sizeof(where)));
    if (rc < 0)
        return fail_close(t, fd, err, "connect", a);
    return fd;
}

/* A read or write result: bytes, SF_EAGAIN for "not ready", or -errno. */
static ssize_t
io_result(ssize_t n)
{
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK ? SF_EAGAIN : -errno;
}

ssize_t
sf_read(const sf_trace *t, int fd, void *buf, size_t len)
{
    ssize_t n;

    if (SF_TRACING(t))
        sf__trace_entry(t, SF_CALL_READ, fd, NULL, "len=%zu", len);
    do {
        n = read(fd, buf, len);
    } while (n < 0 && errno == EINTR);
    TRACE(t, SF_CALL_READ, fd, n, SF_ABOUT(.data = buf, .datalen = n > 0 ? (size_t)n : 0),
          "len=%zu", len);
    return io_result(n);
}

ssize_t
sf_write(const sf_trace *t, int fd, const void *buf, size_t len)
{
    ssize_t n;

    do {
        n = send(fd, buf, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == ENOTSOCK) {
        /* a pipe or a file: write(); SIGPIPE is the caller's to ignore */
        do {
            n = write(fd, buf, len);
        } while (n < 0 && errno == EINTR);
    }
    TRACE(t, SF_CALL_WRITE, fd, n, SF_ABOUT(.data = buf, .datalen = n > 0 ? (size_t)n : 0),
          "len=%zu", len);
    return io_result(n);
}

ssize_t
sf_read_full(const sf_trace *t, int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = sf_read(t, fd, (char *)buf + got, len - got);

        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t
sf_write_full(const sf_trace *t, int fd, const void *buf, size_t len)
{
    size_t put = 0;

    while (put < len) {
        ssize_t n = sf_write(t, fd, (const char *)buf + put, len - put);

        if (n < 0)
            return n;
        put += (size_t)n;
    }
    return (ssize_t)put;
}

ssize_t
sf_recvfrom(const sf_trace *t, int fd, void *buf, size_t len, sf_addr *from, int *truncated)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char who[SF_ADDR_STRLEN];
    sf_addr src;
    ssize_t n;

    if (SF_TRACING(t))
        sf__trace_entry(t, SF_CALL_RECVFROM, fd, NULL, "len=%zu, from=?", len);
    /* MSG_TRUNC: the real length comes back even when it did not fit. */
    do {
        n = recvfrom(fd, buf, len, MSG_TRUNC, (struct sockaddr *)&ss, &sl);
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        sf_addr_from_sa(&src, (struct sockaddr *)&ss, sl);
    if (n >= 0 && from)
        *from = src;
    if (truncated)
        *truncated = n > (ssize_t)len;
    if (n > (ssize_t)len)
        n = (ssize_t)len;
    TRACE(t, SF_CALL_RECVFROM, fd, n,
          SF_ABOUT(.addr = n >= 0 ? &src : NULL, .data = buf, .datalen = n > 0 ? (size_t)n : 0),
          "len=%zu, from=%s", len,
          n >= 0 ? sf_addr_format_sa((struct sockaddr *)&ss, sl, who, sizeof(who)) : "-");
    return io_result(n);
}

ssize_t
sf_sendto(const sf_trace *t, int fd, const void *buf, size_t len, const sf_addr *to)
{
    char who[SF_ADDR_STRLEN];
    ssize_t n;

    do {
        n = sendto(fd, buf, len, MSG_NOSIGNAL, to ? (const struct sockaddr *)&to->ss : NULL,
                   to ? to->len : 0);
    } while (n < 0 && errno == EINTR);
    TRACE(t, SF_CALL_SENDTO, fd, n,
          SF_ABOUT(.addr = to, .data = buf, .datalen = n > 0 ? (size_t)n : 0), "len=%zu, to=%s",
          len,
          to ? sf_addr_format(to, who, sizeof(who)) : "(connected)");
    return io_result(n);
}

int
sf_recvmmsg(const sf_trace *t, int fd, struct mmsghdr *msgs, unsigned vlen)
{
    int n;

    do {
        n = recvmmsg(fd, msgs, vlen, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (SF_TRACING(t))
        sf__trace_batch(t, SF_CALL_RECVMMSG, fd, msgs, n, n < 0 ? errno : 0, vlen);
    return (int)io_result(n);
}

int
sf_sendmmsg(const sf_trace *t, int fd, struct mmsghdr *msgs, unsigned vlen)
{
    int n;

    do {
        n = sendmmsg(fd, msgs, vlen, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (SF_TRACING(t))
        sf__trace_batch(t, SF_CALL_SENDMMSG, fd, msgs, n, n < 0 ? errno : 0, vlen);
    return (int)io_result(n);
}

int
sf_shutdown_write(const sf_trace *t, int fd)
{
    int rc = shutdown(fd, SHUT_WR);

    TRACE(t, SF_CALL_SHUTDOWN, fd, rc, SF_ABOUT(.flags = SHUT_WR), "SHUT_WR");
    return rc < 0 ? -errno : 0;
}

int
sf_close(const sf_trace *t, int fd)
{
    sf__close_note note;
    int rc, saved = errno;

    /* The state before is read while the descriptor exists; the state after is the
     * kernel's view of the connection, which outlives it (FIN_WAIT2, TIME_WAIT ...). */
    if (SF_TRACING(t))
        sf__trace_close_prepare(fd, &note);
    rc = close(fd);
    if (SF_TRACING(t))
        sf__trace_close_done(t, fd, rc, rc < 0 ? errno : 0, &note);
    if (rc < 0)
        return -errno;
    errno = saved;
    return 0;
}

int
sf_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int
sf_local_addr(int fd, sf_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = sizeof(a->ss);
    return getsockname(fd, (struct sockaddr *)&a->ss, &a->len) < 0 ? -errno : 0;
}

int
sf_peer_addr(int fd, sf_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = sizeof(a->ss);
    return getpeername(fd, (struct sockaddr *)&a->ss, &a->len) < 0 ? -errno : 0;
}

int
sf_sock_error(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return -errno;
    return -e;
}
