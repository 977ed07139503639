/* sock_int: the steps the TCP and UDP flows of the sock layer share (not installed). */
#ifndef SOCKFLOW_SOCK_INT_H
#define SOCKFLOW_SOCK_INT_H

#include <sys/types.h>

#include "sockflow/sock.h"
#include "trace_int.h"

/* Tracing off costs this one branch (none at all with -DSF_NO_TRACE). */
#define TRACE(t, call, fd, res, about, ...) \
    do { if (SF_TRACING(t)) sf_trace_call(t, call, fd, (long)(res), (res) < 0 ? errno : 0, \
                                          about, __VA_ARGS__); } while (0)

/* A value-result addrlen as the trace shows it: "128->16", or "128" before the call or
 * when it came back unchanged. Returns buf. */
const char *sf__addrlen_text(socklen_t in, socklen_t out, int returned, char *buf, size_t cap);
/* "AF_INET", "AF_INET6", "AF_UNIX". */
const char *sf__family_name(int family);
/* socket(), nonblocking and close-on-exec unless blocking, traced. fd or -1 (errno). */
int sf__open_socket(const sf_trace *t, int family, int type, int blocking);
/* socket → options → bind on a (a stale Unix socket file replaced), as sf_tcp_listen and
 * sf_udp_bind need it. fd, or a negative code with err set. */
int sf__bound_socket(const sf_trace *t, const sf_addr *a, int type, const sf_listen_opts *opts,
                     sf_err *err);
/* bind(fd, src) before a connect, traced. 0 or -1 (errno). */
int sf__bind_source(const sf_trace *t, int fd, const sf_addr *src);
/* Close fd (when >= 0) keeping errno, fill err "call ADDR: reason"; returns -errno. */
int sf__fail_close(const sf_trace *t, int fd, sf_err *err, const char *call, const sf_addr *a);
/* A read or write result: bytes, SF_EAGAIN for "not ready", or -errno. */
ssize_t sf__io_result(ssize_t n);

#endif
