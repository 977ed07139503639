/* sock: the TCP flow, call by call: socket, bind, listen, accept, connect, read/write,
 * shutdown, close, and the steps both flows share. Each call is traced when a trace is
 * given. The UDP flow: sock_udp.c. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sock_int.h"

/* A value-result addrlen as the trace shows it: "128->16" (in, then as the kernel wrote
 * it back), "128" before the call or when it came back unchanged. */
const char *
sf__addrlen_text(socklen_t in, socklen_t out, int returned, char *buf, size_t cap)
{
    if (returned && out != in)
        snprintf(buf, cap, "%u->%u", (unsigned)in, (unsigned)out);
    else
        snprintf(buf, cap, "%u", (unsigned)in);
    return buf;
}

const char *
sf__family_name(int family)
{
    return family == AF_INET6 ? "AF_INET6" : family == AF_INET ? "AF_INET"
         : family == AF_UNIX ? "AF_UNIX" : "AF_?";
}

/* socket(): "you have a phone". Nonblocking and close-on-exec unless blocking. */
int
sf__open_socket(const sf_trace *t, int family, int type, int blocking)
{
    int flags = SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK);
    int fd = socket(family, type | flags, 0);
    char names[48];

    TRACE(t, SF_CALL_SOCKET, fd, fd, SF_ABOUT(.flags = flags), "%s, %s|%s, 0",
          sf__family_name(family), type == SOCK_STREAM ? "SOCK_STREAM" : "SOCK_DGRAM",
          sf_trace_flags(SF_CALL_SOCKET, flags, names, sizeof(names)));
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
int
sf__fail_close(const sf_trace *t, int fd, sf_err *err, const char *call, const sf_addr *a)
{
    int code = -errno;
    char where[SF_ADDR_STRLEN];

    if (fd >= 0)
        sf_close(t, fd);
    sf_addr_format(a, where, sizeof(where));
    sf_err_set(err, code, "%s %s", call, where);
    sf_err_set_addr(err, (const struct sockaddr *)&a->ss, a->len);
    return code;
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

    fd = sf__open_socket(t, sf_addr_family(a), type, 1);
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

/* A Unix socket file left by a server that died keeps bind from working (EADDRINUSE).
 * It is removed only if a connect to it is refused, i.e. nobody listens on it: a live
 * server's file is never taken over. 0 when removed; -1 with errno EADDRINUSE otherwise. */
static int
unlink_stale_socket(const sf_trace *t, const sf_addr *a, int type)
{
    const char *path = sf_addr_unix_path(a);
    struct stat st;
    int fd, rc, e;

    if (path == NULL || lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        goto in_use;
    fd = sf__open_socket(t, AF_UNIX, type, 0);
    if (fd < 0)
        goto in_use;
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    e = errno;
    TRACE(t, SF_CALL_CONNECT, fd, rc, SF_ABOUT(.addr = a), "%s (is anyone listening on the old file?)",
          path);
    sf_close(t, fd);
    if (rc == 0 || e != ECONNREFUSED || unlink(path) < 0)
        goto in_use;
    return 0;
in_use:
    errno = EADDRINUSE;
    return -1;
}

int
sf_unix_unlink(const sf_addr *a)
{
    const char *path = sf_addr_unix_path(a);
    struct stat st;

    if (path == NULL || lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return 0;
    return unlink(path) < 0 ? -errno : 0;
}

/* socket → options → bind: shared by the TCP listener and the UDP server. */
int
sf__bound_socket(const sf_trace *t, const sf_addr *a, int type, const sf_listen_opts *opts,
             sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    int fd, rc;

    if (opts && opts->reuseport && opts->exclusive && sf_addr_port(a) > 0 &&
        probe_port(t, a, type) < 0)
        return sf__fail_close(t, -1, err, "bind", a);
    fd = sf__open_socket(t, sf_addr_family(a), type, opts && opts->blocking);
    if (fd < 0)
        return sf__fail_close(t, -1, err, "socket", a);
    /* A restarted server must bind at once even while old connections sit in TIME_WAIT.
     * (AF_UNIX has no TIME_WAIT; its stale files are handled at bind below.) */
    if (type == SOCK_STREAM && sf_addr_family(a) != AF_UNIX && set_option(t, fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 1) < 0)
        return sf__fail_close(t, fd, err, "setsockopt SO_REUSEADDR", a);
    if (opts && opts->reuseport &&
        set_option(t, fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 1) < 0)
        return sf__fail_close(t, fd, err, "setsockopt SO_REUSEPORT", a);
    if (sf_addr_family(a) == AF_INET6 &&
        set_option(t, fd, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 1) < 0)
        return sf__fail_close(t, fd, err, "setsockopt IPV6_V6ONLY", a);
    rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
    TRACE(t, SF_CALL_BIND, fd, rc, SF_ABOUT(.addr = a), "%s",
          sf_addr_format(a, where, sizeof(where)));
    if (rc < 0 && errno == EADDRINUSE && unlink_stale_socket(t, a, type) == 0) {
        rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
        TRACE(t, SF_CALL_BIND, fd, rc, SF_ABOUT(.addr = a), "%s",
              sf_addr_format(a, where, sizeof(where)));
    }
    if (rc < 0)
        return sf__fail_close(t, fd, err, "bind", a);
    return fd;
}

/* Options the accepted sockets inherit. Not traced: tuning, not a step of the flow the
 * trace draws (its text and JSON forms are a contract). 0, or -1 with errno set. */
static int
tune_listener(int fd, const sf_addr *a, const sf_listen_opts *opts)
{
    int on = 1;

    if (opts->sndbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opts->sndbuf, sizeof(opts->sndbuf)) < 0)
        return -1;
    /* A Unix stream has no Nagle to turn off. */
    if (opts->nodelay && sf_addr_family(a) != AF_UNIX &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0)
        return -1;
    return 0;
}

int
sf_tcp_listen(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts,
              sf_err *err)
{
    int backlog = opts && opts->backlog > 0 ? opts->backlog : SF_BACKLOG_DEFAULT;
    int fd, rc;

    fd = sf__bound_socket(t, a, SOCK_STREAM, opts, err);
    if (fd < 0)
        return fd;
    if (opts && tune_listener(fd, a, opts) < 0)
        return sf__fail_close(t, fd, err, "setsockopt", a);
    rc = listen(fd, backlog);
    TRACE(t, SF_CALL_LISTEN, fd, rc, NULL, "backlog=%d", backlog);
    if (rc < 0)
        return sf__fail_close(t, fd, err, "listen", a);
    return fd;
}

int
sf_tcp_bind(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts, sf_err *err)
{
    return sf__bound_socket(t, a, SOCK_STREAM, opts, err);
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
int
sf_accept_error_is_transient(int code)
{
    switch (-code) {
    case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case ENOBUFS:
    case ENOMEM: case EPERM:
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
    char who[SF_ADDR_STRLEN], names[48], lens[24] = "NULL";
    int fd;

    if (SF_TRACING(t) && peer)
        sf__addrlen_text(len, len, 0, lens, sizeof(lens));
    if (SF_TRACING(t))
        sf__trace_entry(t, SF_CALL_ACCEPT4, lfd,
                        SF_ABOUT(.flags = flags, .addrlen_in = peer ? (int)len : 0),
                        "peer=%s, addrlen=%s, %s", peer ? "?" : "NULL", lens,
                        sf_trace_flags(SF_CALL_ACCEPT4, flags, names, sizeof(names)));
    do {
        fd = accept4(lfd, peer ? (struct sockaddr *)&ss : NULL, peer ? &len : NULL, flags);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0 && peer)
        sf_addr_from_sa(peer, (struct sockaddr *)&ss, len);
    /* The state reported is the new connected socket's: the listener stays in LISTEN. */
    if (SF_TRACING(t) && peer)
        sf__addrlen_text(sizeof(ss), len, 1, lens, sizeof(lens));
    if (SF_TRACING(t))
        sf_trace_call_on(t, SF_CALL_ACCEPT4, lfd, fd, fd, fd < 0 ? errno : 0,
                          SF_ABOUT(.addr = peer && fd >= 0 ? peer : NULL, .flags = flags,
                                   .notes = peer ? 0 : SF_TRACE_N_NO_ADDR,
                                   .addrlen_in = peer ? (int)sizeof(ss) : 0,
                                   .addrlen_out = peer ? (int)len : 0),
                          "peer=%s, addrlen=%s, %s",
                          !peer ? "NULL" : fd >= 0 ? sf_addr_format(peer, who, sizeof(who))
                                                   : "-", lens,
                          sf_trace_flags(SF_CALL_ACCEPT4, flags, names, sizeof(names)));
    if (fd >= 0)
        return fd;
    return errno == EWOULDBLOCK ? SF_EAGAIN : -errno;
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
    do {
        fd = accept_one(t, lfd, peer, SOCK_CLOEXEC);
    } while (sf_accept_error_is_transient(fd));
    return fd;
}

int
sf__bind_source(const sf_trace *t, int fd, const sf_addr *src)
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

    fd = sf__open_socket(t, sf_addr_family(a), SOCK_STREAM, 0);
    if (fd < 0)
        return sf__fail_close(t, -1, err, "socket", a);
    /* Without it, bind(port 0) reserves a port for every destination at once and one
     * source runs out of ports at a few tens of thousands of sockets. */
    if (src && sf_addr_port(src) == 0 && sf_addr_family(src) != AF_UNIX)
        set_option(t, fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", 1);
    if (src && sf__bind_source(t, fd, src) < 0)
        return sf__fail_close(t, fd, err, "bind", src);
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    TRACE(t, SF_CALL_CONNECT, fd, rc, SF_ABOUT(.addr = a, .notes = bound), "%s",
          sf_addr_format(a, where, sizeof(where)));
    if (rc < 0 && errno != EINPROGRESS)
        return sf__fail_close(t, fd, err, "connect", a);
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
            return sf__fail_close(t, fd, err, "connect", a);
    }
    if (!nonblock && sf_set_nonblock(fd, 0) < 0)
        return sf__fail_close(t, fd, err, "fcntl", a);
    return fd;
}

int
sf_tcp_socket(const sf_trace *t, int family, int nonblock, sf_err *err)
{
    int fd = sf__open_socket(t, family, SOCK_STREAM, !nonblock);

    if (fd < 0)
        return sf_err_set(err, -errno, "socket %s, SOCK_STREAM", sf__family_name(family));
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


/* A read or write result: bytes, SF_EAGAIN for "not ready", or -errno. */
ssize_t
sf__io_result(ssize_t n)
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
    return sf__io_result(n);
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
    return sf__io_result(n);
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
