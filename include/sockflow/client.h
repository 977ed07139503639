/* client: the relay behind `sockflow connect` (and the listening side's stdin <-> socket)
 * — input → socket, socket → output, over TCP or UDP. */
#ifndef SOCKFLOW_CLIENT_H
#define SOCKFLOW_CLIENT_H

#include <stdint.h>
#include "err.h"
#include "trace.h"

/* What a relay moved, filled when it returns, whatever the outcome. */
typedef struct sf_relay_stats {
    uint64_t in_bytes;      /* read from in_fd */
    uint64_t sent;          /* taken by the socket (after CRLF translation) */
    uint64_t unsent;        /* read from input, never taken by the socket */
    uint64_t received;      /* read from the socket */
    uint64_t out_bytes;     /* written to out_fd */
    int out_closed;         /* the reader of out_fd went away (EPIPE): what came after
                               was dropped on purpose */
} sf_relay_stats;

typedef struct sf_relay_opts {
    int in_fd;              /* usually 0; any fd, regular files included */
    int out_fd;             /* usually 1; not the same descriptor as in_fd (dup() it) */
    int sock_fd;            /* a connected TCP or UDP socket (any stream socket works) */
    int udp;                /* sock_fd is a UDP socket: each read of in_fd is one datagram */
    int quit_after_eof_ms;  /* TCP: quit this long after end of input; < 0: wait for the
                               server to close, however late */
    int udp_wait_ms;        /* UDP: after end of input, stop once this long passes with
                               no datagram; < 0: never */
    const char *peer;       /* "127.0.0.1:7", for messages */
    const sf_trace *trace;  /* NULL: off */
    /* Added with the independent directions; zero keeps the behaviour above. */
    int idle_ms;            /* > 0: fail with -ETIMEDOUT after this long with nothing read
                               or written either way (ncat --idle-timeout) */
    int crlf;               /* send each LF of input as CRLF (a bare CRLF stays as is) */
    int no_half_close;      /* TCP: end of input sends no FIN; the relay then ends when the
                               peer closes (nc without -N) */
    sf_relay_stats *stats;  /* NULL: not wanted */
} sf_relay_opts;

/* Relay until both directions are done. The directions are independent: the peer's FIN
 * ends output only (input keeps going to the socket), the end of input sends our FIN
 * once the socket has taken every byte. Each write happens at once; only what the socket
 * (or the output) did not take is queued, and its source is not read until the queue
 * drains, so memory stays at two chunks. TCP ends when both directions are done and the
 * peer has acknowledged every byte (a peer that had closed answers with a reset instead,
 * which is then reported); UDP when udp_wait_ms passes after end of input.
 * Returns 0 only when every byte read from input reached the socket and every byte the
 * peer sent reached the output (or the output's reader went away: stats->out_closed).
 * Otherwise a negative code with err set: "recv 127.0.0.1:9: Connection reset by peer",
 * "write output: No space left on device", "idle 127.0.0.1:7 after 2000 ms: ...". */
int sf_relay(const sf_relay_opts *o, sf_err *err);

#endif
