/* sock_udp: the UDP flow, call by call: socket and bind (a server), socket alone or
 * connect (a client), recvfrom/sendto and their batches recvmmsg/sendmmsg. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sock_int.h"

int
sf_udp_bind(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts, sf_err *err)
{
    return sf__bound_socket(t, a, SOCK_DGRAM, opts, err);
}

static int
autobind(const sf_trace *t, int fd)
{
    sa_family_t family = AF_UNIX;
    int rc = bind(fd, (const struct sockaddr *)&family, sizeof(family));

    TRACE(t, SF_CALL_BIND, fd, rc, NULL, "unix: (autobind)");
    return rc;
}

int
sf_udp_socket(const sf_trace *t, int family, int nonblock, sf_err *err)
{
    int fd = sf__open_socket(t, family, SOCK_DGRAM, !nonblock);

    if (fd < 0)
        return sf_err_set(err, -errno, "socket %s, SOCK_DGRAM", sf__family_name(family));
    return fd;
}

int
sf_udp_connect(const sf_trace *t, const sf_addr *a, const sf_addr *src, int nonblock,
               sf_err *err)
{
    char where[SF_ADDR_STRLEN];
    int fd, rc;

    fd = sf__open_socket(t, sf_addr_family(a), SOCK_DGRAM, !nonblock);
    if (fd < 0)
        return sf__fail_close(t, -1, err, "socket", a);
    if (src && sf__bind_source(t, fd, src) < 0)
        return sf__fail_close(t, fd, err, "bind", src);
    /* An unnamed Unix datagram socket cannot be answered: take an abstract name the
     * kernel makes up (autobind, unix(7)). */
    if (!src && sf_addr_family(a) == AF_UNIX && autobind(t, fd) < 0)
        return sf__fail_close(t, fd, err, "bind", a);
    /* No packet is sent: connect() on UDP only fixes the peer, so that ICMP errors
     * for it are reported on this socket. */
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    TRACE(t, SF_CALL_CONNECT, fd, rc, SF_ABOUT(.addr = a), "%s",
          sf_addr_format(a, where, sizeof(where)));
    if (rc < 0)
        return sf__fail_close(t, fd, err, "connect", a);
    return fd;
}

ssize_t
sf_recvfrom(const sf_trace *t, int fd, void *buf, size_t len, sf_addr *from, int *truncated)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char who[SF_ADDR_STRLEN], lens[24];
    sf_addr src;
    ssize_t n;

    if (SF_TRACING(t))
        sf__trace_entry(t, SF_CALL_RECVFROM, fd,
                        SF_ABOUT(.flags = MSG_TRUNC, .addrlen_in = (int)sl),
                        "len=%zu, MSG_TRUNC, from=?, addrlen=%s", len,
                        sf__addrlen_text(sl, sl, 0, lens, sizeof(lens)));
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
          SF_ABOUT(.addr = n >= 0 ? &src : NULL, .data = buf, .datalen = n > 0 ? (size_t)n : 0,
                   .flags = MSG_TRUNC, .addrlen_in = (int)sizeof(ss), .addrlen_out = (int)sl),
          "len=%zu, MSG_TRUNC, from=%s, addrlen=%s", len,
          n >= 0 ? sf_addr_format_sa((struct sockaddr *)&ss, sl, who, sizeof(who)) : "-",
          sf__addrlen_text(sizeof(ss), sl, 1, lens, sizeof(lens)));
    return sf__io_result(n);
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
          SF_ABOUT(.addr = to, .data = buf, .datalen = n > 0 ? (size_t)n : 0,
                   .flags = MSG_NOSIGNAL, .addrlen_in = to ? (int)to->len : 0),
          "len=%zu, MSG_NOSIGNAL, to=%s, addrlen=%u", len,
          to ? sf_addr_format(to, who, sizeof(who)) : "NULL", to ? (unsigned)to->len : 0u);
    return sf__io_result(n);
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
    return (int)sf__io_result(n);
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
    return (int)sf__io_result(n);
}
