/* passed: serve's services on sockets passed by systemd (LISTEN_FDS). */
#ifndef SOCKFLOW_CMD_PASSED_H
#define SOCKFLOW_CMD_PASSED_H

#include "sockflow/sockflow.h"

/* Take the passed sockets, if any, and serve on them the services svcs (those of the
 * SERVICE[:PORT] and exec:PORT=... arguments; ports ignored): by name (LISTEN_FDNAMES:
 * echo or echo.socket, exec for an exec service), else in order. *taken is set when
 * sockets were passed (then nothing is to be bound). Returns 0 or EXIT_FAIL with the
 * reason printed. */
int cmd_serve_passed(sf_server *s, const sf_service *const *svcs, int nsvcs, int *taken);

/* --inetd: the connected stream socket on standard input, as a new descriptor in *fd;
 * standard input and output (and standard error if it is that socket too) are then
 * /dev/null, so that nothing of ours reaches the client. Returns 0 or EXIT_FAIL. */
int cmd_inetd_take_stdin(int *fd);

/* serve --inetd: run the one service of specs on that connection. Returns 0, or an
 * exit status with the reason printed. */
int cmd_serve_inetd(sf_server *s, char **specs, int nspecs);

#endif
