/* client: the interactive relay behind `sockflow connect` — input → socket,
 * socket → output, over TCP or UDP. */
#ifndef SOCKFLOW_CLIENT_H
#define SOCKFLOW_CLIENT_H

#include "err.h"
#include "trace.h"

typedef struct sf_relay_opts {
    int in_fd;              /* usually 0; any fd, regular files included */
    int out_fd;             /* usually 1 */
    int sock_fd;            /* a connected TCP or UDP socket */
    int udp;                /* sock_fd is a UDP socket: each read of in_fd is one datagram */
    int quit_after_eof_ms;  /* TCP: quit this long after end of input; < 0: wait for the
                               server to close, however late */
    int udp_wait_ms;        /* UDP: after end of input, stop once this long passes with
                               no datagram; < 0: never */
    const char *peer;       /* "127.0.0.1:7", for messages */
    const sf_trace *trace;  /* NULL: off */
} sf_relay_opts;

/* Relay until the exchange ends: TCP when the server closes (end of input half-closes
 * our side with FIN first), UDP when udp_wait_ms passes after end of input. Returns 0,
 * or a negative code with err set ("recv 127.0.0.1:9: Connection refused"). */
int sf_relay(const sf_relay_opts *o, sf_err *err);

#endif
