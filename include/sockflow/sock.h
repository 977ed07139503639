/* sock: the flow itself, in the order it happens. Every call takes a trace (NULL = off). */
#ifndef SOCKFLOW_SOCK_H
#define SOCKFLOW_SOCK_H

#include <stddef.h>
#include <sys/types.h>
#include "addr.h"
#include "err.h"
#include "trace.h"

#define SF_BACKLOG_DEFAULT 511

/* Options for sf_tcp_listen() and sf_udp_bind(). Zero-initialise for the defaults. */
typedef struct sf_listen_opts {
    int backlog;            /* 0: SF_BACKLOG_DEFAULT */
    int reuseport;          /* SO_REUSEPORT, so several loops can own a socket each */
    int exclusive;          /* with reuseport, a port other than 0: fail with EADDRINUSE
                               if the port is taken, rather than join whatever group of
                               the same user holds it (set on the first of a group) */
    int blocking;           /* leave the socket blocking (the default is nonblocking) */
} sf_listen_opts;

/* socket → setsockopt(SO_REUSEADDR) → bind → listen, on one address. The socket is
 * nonblocking and close-on-exec unless opts->blocking. Returns the fd or a negative
 * code with err set ("bind 127.0.0.1:7: Permission denied"). An IPv6 socket is
 * IPV6_V6ONLY: v4 and v6 are bound separately. */
int sf_tcp_listen(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts,
                  sf_err *err);

/* The two halves of sf_tcp_listen, for a caller that does something in between (the
 * demo dials a number that is bound but not yet listening): socket → setsockopt
 * (SO_REUSEADDR) → bind, and listen(2) on fd (a UDP socket fails with EOPNOTSUPP).
 * Return the fd / 0, or a negative code with err set. */
int sf_tcp_bind(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts,
                sf_err *err);
int sf_listen(const sf_trace *t, int fd, int backlog, sf_err *err);

/* accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) one pending connection. Retries EINTR; the
 * transient errors of accept(2) (ECONNABORTED, EPROTO, network errors, ENOBUFS ...)
 * are reported as SF_EAGAIN so a listener stays armed. peer may be NULL.
 * Returns the new fd, SF_EAGAIN, or a negative errno (EMFILE, ENFILE, EBADF ...). */
int sf_tcp_accept(const sf_trace *t, int lfd, sf_addr *peer);

/* Same, for a blocking listening socket (the demo and the examples): waits. */
int sf_tcp_accept_blocking(const sf_trace *t, int lfd, sf_addr *peer);

/* socket → [bind src] → connect, waiting at most timeout_ms (< 0: forever) for the
 * handshake (nonblocking connect, poll, SO_ERROR). Returns a connected fd, left
 * nonblocking when nonblock is set, else blocking. */
int sf_tcp_connect(const sf_trace *t, const sf_addr *a, const sf_addr *src,
                   int timeout_ms, int nonblock, sf_err *err);

/* Try every address of list in order; the error of the last one is reported. */
int sf_tcp_connect_list(const sf_trace *t, const sf_addr_list *list, const sf_addr *src,
                        int timeout_ms, int nonblock, sf_err *err);

/* socket → [bind src] → connect without waiting: the nonblocking socket is returned
 * while the handshake may still be under way (the first write or SO_ERROR tells how it
 * ended). A src with port 0 is bound with IP_BIND_ADDRESS_NO_PORT, so the kernel picks
 * the port at connect time for the whole address pair: many sources, many ports.
 * Returns the fd or a negative code with err set. */
int sf_tcp_connect_start(const sf_trace *t, const sf_addr *a, const sf_addr *src,
                         sf_err *err);

/* socket(SOCK_STREAM) alone, close-on-exec, blocking unless nonblock: a client before
 * it dials (its own address is 0.0.0.0:0 until connect picks one). Returns the fd or a
 * negative code with err set. */
int sf_tcp_socket(const sf_trace *t, int family, int nonblock, sf_err *err);

/* connect(2) fd to a, as the seed's client does. On a blocking socket the call sleeps
 * until the three-way handshake is complete and returns 0 (a signal does not cut the
 * wait short); on a nonblocking one it returns SF_EAGAIN while the handshake is under
 * way. Returns 0, SF_EAGAIN, or a negative code with err set ("connect 127.0.0.1:7:
 * Connection refused"). */
int sf_connect(const sf_trace *t, int fd, const sf_addr *a, sf_err *err);

/* socket(SOCK_DGRAM) → bind. Nonblocking unless opts->blocking. */
int sf_udp_bind(const sf_trace *t, const sf_addr *a, const sf_listen_opts *opts,
                sf_err *err);

/* socket(SOCK_DGRAM), unbound: the seed's connectionless UDP client, whose first
 * sendto picks its port. family is AF_INET or AF_INET6. Blocking unless nonblock.
 * Returns the fd or a negative code with err set. */
int sf_udp_socket(const sf_trace *t, int family, int nonblock, sf_err *err);

/* socket(SOCK_DGRAM) → [bind src] → connect, so that ICMP errors (port unreachable)
 * come back as ECONNREFUSED on the next send/recv. Blocking unless nonblock. */
int sf_udp_connect(const sf_trace *t, const sf_addr *a, const sf_addr *src, int nonblock,
                   sf_err *err);

/* One read/recv. Returns bytes (0 = end of stream), SF_EAGAIN, or a negative errno.
 * EINTR is retried. */
ssize_t sf_read(const sf_trace *t, int fd, void *buf, size_t len);

/* One write/send with MSG_NOSIGNAL (a reset peer never raises SIGPIPE). Returns bytes
 * written, SF_EAGAIN, or a negative errno. EINTR is retried. */
ssize_t sf_write(const sf_trace *t, int fd, const void *buf, size_t len);

/* Read exactly len bytes on a blocking fd unless end of stream comes first. Returns
 * bytes read (< len only at end of stream) or a negative errno. */
ssize_t sf_read_full(const sf_trace *t, int fd, void *buf, size_t len);

/* Write all len bytes on a blocking fd. Returns len or a negative errno. */
ssize_t sf_write_full(const sf_trace *t, int fd, const void *buf, size_t len);

/* recvfrom / sendto for datagrams. from may be NULL. sf_recvfrom returns SF_EMSGTRUNC
 * style truncation as a positive length with *truncated set when not NULL. */
ssize_t sf_recvfrom(const sf_trace *t, int fd, void *buf, size_t len, sf_addr *from,
                    int *truncated);
ssize_t sf_sendto(const sf_trace *t, int fd, const void *buf, size_t len, const sf_addr *to);

/* A batch of datagrams in one call: recvmmsg / sendmmsg of up to vlen messages the caller
 * has set up (buffers, and msg_name for the source or destination when the socket is
 * not connected). Nonblocking (MSG_DONTWAIT; sending adds MSG_NOSIGNAL); EINTR is
 * retried. Traced as one event per datagram (its length, source or destination and
 * payload), or one event when the call fails. Returns the number of datagrams,
 * SF_EAGAIN when none was ready or the send buffer is full, or a negative errno. */
struct mmsghdr;
int sf_recvmmsg(const sf_trace *t, int fd, struct mmsghdr *msgs, unsigned vlen);
int sf_sendmmsg(const sf_trace *t, int fd, struct mmsghdr *msgs, unsigned vlen);

/* shutdown(SHUT_WR): send FIN, keep reading. */
int sf_shutdown_write(const sf_trace *t, int fd);

/* close(). Returns 0 or a negative errno. */
int sf_close(const sf_trace *t, int fd);

/* Helpers. */
int sf_set_nonblock(int fd, int on);
int sf_local_addr(int fd, sf_addr *a);
int sf_peer_addr(int fd, sf_addr *a);
/* SO_ERROR of fd as a negative errno, or 0. */
int sf_sock_error(int fd);

#endif
