/* server: the TCP engine (listeners, accept, connection table, limits, timeouts, drain)
 * and the UDP engine (batched receive and send), running services on event loops. */
#ifndef SOCKFLOW_SERVER_H
#define SOCKFLOW_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include "access.h"
#include "addr.h"
#include "err.h"
#include "loop.h"
#include "trace.h"

typedef struct sf_server sf_server;
typedef struct sf_conn sf_conn;

enum { SF_PROTO_TCP = 1, SF_PROTO_UDP = 2 };

/* One datagram handed to a service. The service answers by pointing reply at reply_len
 * bytes (in d->out, which holds outcap bytes, or in d->in itself); reply left NULL sends
 * nothing, reply_len 0 with reply set sends an empty datagram. */
typedef struct sf_dgram {
    const char *in;
    size_t inlen;
    const sf_addr *from;
    void *state;            /* the service's per-loop state */
    char *out;
    size_t outcap;
    const char *reply;
    size_t reply_len;
} sf_dgram;

/* A service: what a server does with each client. Adding one is one file in src/svc/
 * and one line in the table of src/svc/services.c. Callbacks left NULL do nothing. */
typedef struct sf_service {
    const char *name;
    int port;                   /* well-known port, used when none is given */
    unsigned protos;            /* SF_PROTO_TCP | SF_PROTO_UDP offered */
    int one_loop;               /* every client in one loop (they talk to each other) */
    size_t conn_size;           /* bytes of zeroed per-connection state (sf_conn_data) */
    void *(*state_new)(void);   /* per-loop state, NULL on failure */
    void (*state_free)(void *state);
    /* TCP */
    void (*on_open)(sf_conn *c);
    void (*on_data)(sf_conn *c, char *data, size_t len);  /* len > 0; 0 is on_eof */
    void (*on_eof)(sf_conn *c); /* NULL: sf_conn_finish() */
    void (*on_drain)(sf_conn *c); /* writable with nothing queued, after sf_conn_want_drain */
    void (*on_close)(sf_conn *c);
    /* UDP */
    void (*on_datagram)(sf_dgram *d);
    /* SIGCHLD reached the server (a service that runs programs reaps them here); called
     * on the first loop with the per-loop state there. */
    void (*on_child)(void *state);
    /* TCP: the service's callbacks use only sf_conn_send, _finish, _close, _log, _peer,
     * _data, _state, _id (no want_drain, hold, watch_peer, expect_input, nor I/O of its
     * own on sf_conn_fd): its connections may then run on io_uring, which takes a
     * connection from accept to close with no system call of its own (sf_server_opts
     * no_ring). */
    int ring_ok;
} sf_service;

typedef void (*sf_log_fn)(void *ud, const char *line);

#define SF_UDP_NO_LIMIT 0xffffffffu     /* udp_rate: no per-source budget */
#define SF_UDP_REPLY_FREE 512           /* a reply may be this big whatever the request */
#define SF_UDP_BURST_DEFAULT 10         /* udp_burst 0: this (or the rate, if smaller) */

typedef struct sf_server_opts {
    int loops;                  /* event loops (threads); 0: 1 */
    int backlog;                /* 0: SF_BACKLOG_DEFAULT */
    size_t queue_cap;           /* most bytes queued per connection; 0: 256 KiB */
    int max_conns;              /* 0: no limit; above it new clients are closed at once */
    uint32_t idle_timeout_ms;   /* close a connection silent this long; 0: never */
    uint32_t send_timeout_ms;   /* close a connection whose queue makes no progress; 0: never */
    uint32_t drain_timeout_ms;  /* SIGTERM: time left for clients to finish; 0: 10 s */
    size_t dgram_max;           /* largest datagram taken whole; bigger are dropped; 0: 65536 */
    /* UDP: what keeps the services from being used for loops and reflection. Never
     * answered: a source port of a classic service (7, 9, 13, 19, 37) or of a UDP port
     * this server serves; broadcast, multicast or unspecified sources and destinations;
     * a reply larger than SF_UDP_REPLY_FREE bytes to a smaller request. */
    int udp_allow_low_ports;    /* answer source ports below 1024 too (not the above) */
    uint32_t udp_rate;          /* replies a second to one source; 0: 1000; SF_UDP_NO_LIMIT
                                   (no budget: a loop between two servers never ends) */
    uint32_t udp_burst;         /* replies one source may have at once; 0:
                                   SF_UDP_BURST_DEFAULT, so a loop between two servers
                                   dies within about 20 datagrams */
    uint32_t udp_sources;       /* sources tracked, one table for all loops; 0: 4096 */
    sf_access *access;          /* allow/deny and per-source cap (NULL: everyone); TCP
                                   clients refused are closed after accept, UDP datagrams
                                   from refused sources dropped. The caller frees it. */
    const sf_tracer *tracer;    /* NULL: no tracing */
    int no_ring;                /* never io_uring: every connection on epoll. Without it,
                                   ring_ok services use io_uring where the kernel allows
                                   (not when tracing: a trace shows the classic calls) */
    int no_udp_gso;             /* every UDP reply a message of its own. Without it, replies
                                   to one peer in one batch leave as one UDP_SEGMENT send
                                   (Linux 4.18) where the kernel takes it (not when
                                   tracing) */
    sf_log_fn log;              /* one line per event worth a person's attention */
    void *log_ud;
} sf_server_opts;

/* One bound socket, as reported to the caller (one per address and protocol, whatever
 * the number of loops). */
typedef struct sf_listener {
    const sf_service *svc;
    int proto;
    sf_addr addr;               /* the real address, port 0 resolved */
} sf_listener;

typedef struct sf_server_stats {
    uint64_t accepted, closed, refused_max, emfile;
    uint64_t bytes_in, bytes_out;
    uint64_t dgrams_in, dgrams_out, dgrams_truncated, dgrams_dropped;
    uint64_t queue_cap_hits, timeouts;
    uint64_t ring_accepted;     /* of accepted: through io_uring */
    uint64_t dgrams_gso;        /* of dgrams_out: sent grouped, in a UDP_SEGMENT send */
    /* UDP datagrams not answered, by reason (see sf_server_opts) */
    uint64_t dgrams_loop;       /* from a classic service's port, one we serve, or 0 */
    uint64_t dgrams_low_port;   /* from a port below 1024 */
    uint64_t dgrams_bad_addr;   /* to or from broadcast, multicast, unspecified */
    uint64_t dgrams_rate;       /* over the source's budget */
    uint64_t dgrams_oversize;   /* the reply would have been larger than allowed */
} sf_server_stats;

/* A server with opts->loops loops, nothing bound yet. NULL with err set on failure. */
sf_server *sf_server_new(const sf_server_opts *opts, sf_err *err);

/* Bind svc on every address of addrs (ports ignored) at port, over protos (TCP and/or
 * UDP, limited to what svc offers). Port 0: the kernel picks one free port and every
 * address and protocol of the service gets that same port. Returns 0 or a negative
 * code with err set ("bind 127.0.0.1:7: Permission denied"). */
int sf_server_listen(sf_server *s, const sf_service *svc, const sf_addr *addrs, int naddrs,
                     int port, unsigned protos, sf_err *err);

/* Serve svc on fd, a socket bound already (systemd's LISTEN_FDS): a listening stream
 * socket or a datagram socket, run by the first loop. The server owns fd after, even
 * on failure. Returns 0 or a negative code with err set. */
int sf_server_adopt(sf_server *s, const sf_service *svc, int fd, sf_err *err);

/* Serve svc (TCP) on fd, one connection accepted by someone else (inetd's nowait,
 * systemd's Accept=yes); sf_server_run then returns once it is closed. The server owns
 * fd after, even on failure. Returns 0 or a negative code with err set. */
int sf_server_adopt_conn(sf_server *s, const sf_service *svc, int fd, sf_err *err);

int sf_server_listener_count(const sf_server *s);
const sf_listener *sf_server_listener(const sf_server *s, int i);

/* Serve until stopped. SIGINT stops at once; SIGTERM (or SIGHUP) stops accepting and gives
 * the clients drain_timeout_ms to finish, a second signal stops at once; SIGCHLD goes to
 * the services' on_child. These are blocked in the calling thread and read through a
 * signalfd (the caller's other threads should block them too: sf_loop_block_signals),
 * and SIGPIPE is ignored; on return the caller's signal mask and SIGPIPE handler are
 * back, and a signal left pending for the server is taken, not delivered. Returns 0 or
 * a negative code. */
int sf_server_run(sf_server *s);

/* Stop from any thread: drain (1) or at once (0). */
void sf_server_stop(sf_server *s, int drain);

/* Counters summed over the loops (exact once sf_server_run has returned). */
void sf_server_get_stats(const sf_server *s, sf_server_stats *out);

void sf_server_free(sf_server *s);

/* ---- what a service may do with a connection ---- */

/* Send len bytes: written now as far as the socket takes them, the rest queued; while
 * anything is queued, reading from this client stops (backpressure). Returns 0, or
 * -ENOBUFS when the queue would pass its cap (nothing of p is queued then; the service
 * decides: usually sf_conn_close). */
int sf_conn_send(sf_conn *c, const void *p, size_t len);

/* Flush what is queued, then send FIN; what the client still sends is read and dropped
 * (so a reply is never cut off by a reset) until it closes, then close. */
void sf_conn_finish(sf_conn *c);

/* Close now. reason (may be NULL) is logged. The connection must not be used after. */
void sf_conn_close(sf_conn *c, const char *reason);

/* Ask for on_drain whenever the socket is writable and nothing is queued (generators). */
void sf_conn_want_drain(sf_conn *c, int on);

/* Hand the connection's socket to someone else (a program run for it): the server
 * stops watching it, reading it and timing it out, yet keeps it open and counted
 * (--max-conns, drain) until the service closes it. */
void sf_conn_hold(sf_conn *c);

const sf_service *sf_conn_service(const sf_conn *c);

/* Judge this connection by whether its peer is there, not by whether it talks (a chat
 * member who only listens). The kernel probes a quiet peer (TCP keepalive every half idle
 * timeout) and gives up on data unacknowledged for the send timeout (TCP_USER_TIMEOUT,
 * then reads fail with ETIMEDOUT and the connection closes); the idle timeout closes it
 * only when nothing came from the peer, neither bytes nor acknowledgements, for that
 * long. Returns 0 or a negative code (setsockopt failed). */
int sf_conn_watch_peer(sf_conn *c);

/* Input has begun that must be complete within the idle timeout, whatever trickles in
 * meanwhile (a line, a request header: nginx's client_header_timeout). on: the clock
 * starts unless it runs; 0: it stops. Past the idle timeout the connection is closed. */
void sf_conn_expect_input(sf_conn *c, int on);

void *sf_conn_data(sf_conn *c);          /* the conn_size bytes of service state */
void *sf_conn_state(sf_conn *c);         /* the service's per-loop state */
unsigned long sf_conn_id(const sf_conn *c);
int sf_conn_fd(const sf_conn *c);
size_t sf_conn_queued(const sf_conn *c);
int sf_conn_peer(const sf_conn *c, sf_addr *a);
/* Log a line through the server's log, prefixed with the service and peer. */
void sf_conn_log(sf_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
