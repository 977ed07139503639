/* activate: sockets handed over by a service manager — systemd's socket activation
 * (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; see sd_listen_fds(3)) — and what kind of
 * socket a descriptor is. */
#ifndef SOCKFLOW_ACTIVATE_H
#define SOCKFLOW_ACTIVATE_H

#include "err.h"

#define SF_LISTEN_FDS_START 3   /* the first passed descriptor, as sd_listen_fds(3) */
#define SF_PASSED_MAX 64
#define SF_PASSED_NAME 64

/* One passed socket. */
typedef struct sf_passed {
    int fd;
    int type;           /* SOCK_STREAM or SOCK_DGRAM */
    int family;         /* AF_INET, AF_INET6, AF_UNIX */
    int listening;      /* SO_ACCEPTCONN: a listening socket (else a connection or UDP) */
    char name[SF_PASSED_NAME];  /* from LISTEN_FDNAMES, "" when not given */
} sf_passed;

/* Take the sockets passed to this process: none (returns 0) unless LISTEN_PID is our
 * pid and LISTEN_FDS a count. Each descriptor is checked to be a socket and made
 * close-on-exec; the three variables are removed from the environment so that a child
 * does not take them for its own. Returns the count (at most max), or a negative code
 * with err set ("LISTEN_FDS: descriptor 4 is not a socket"). */
int sf_activation_take(sf_passed *out, int max, sf_err *err);

/* What kind of socket fd is (getsockopt SO_TYPE, SO_DOMAIN, SO_ACCEPTCONN). Returns 0,
 * or a negative errno (-ENOTSOCK). */
int sf_sock_kind(int fd, int *type, int *family, int *listening);

#endif
