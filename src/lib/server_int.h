/* server_int: what the server's files share (not installed): the server, its workers (one
 * per loop), their listening sockets, connections and datagram batch. server.c sets up,
 * runs and stops; server_listen.c binds; server_accept.c and server_tcp.c are the TCP
 * engine (accepting; connections); server_udp.c the UDP engine. */
#ifndef SOCKFLOW_SERVER_INT_H
#define SOCKFLOW_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sockflow/buf.h"
#include "sockflow/server.h"
#include "udpguard.h"

#define SF__MAX_LISTENERS 64
#define SF__NDROP 5             /* reasons a datagram gets no reply: SF_UDP_DROP_* and... */
#define SF__DROP_OVERSIZE 4     /* ...a reply too large for its request */

typedef struct worker worker;
typedef struct udp_batch udp_batch;
typedef struct ring ring;

/* One listening (TCP) or bound (UDP) socket of one worker. */
typedef struct lsock {
    int fd;
    int proto;
    const sf_service *svc;
    void *state;            /* the service's per-loop state, shared by its sockets here */
    worker *w;
    int wildcard;           /* UDP on 0.0.0.0 or ::: replies name their source address */
    int on_ring;            /* accepting through the loop's io_uring, not epoll */
    int dst_known;          /* UDP: server_udp.c has looked for dst (once; 0 in a new
                             * lsock: workers are calloc'ed, and a slot is reused only
                             * after a failed listen removed sockets no loop has read) */
    sf_addr dst;            /* UDP bound to one address: where every datagram comes to
                             * (len 0: read from each datagram's IP_PKTINFO) */
    size_t gso_max;         /* UDP: largest reply sent in a UDP_SEGMENT group (0: none) */
} lsock;

enum {
    SF__C_FINISHING = 1 << 0,   /* flush, FIN, drop input until EOF */
    SF__C_PEER_EOF  = 1 << 1,
    SF__C_SHUT      = 1 << 2,   /* FIN sent */
    SF__C_DRAIN     = 1 << 3,   /* service wants on_drain */
    SF__C_CLOSED    = 1 << 4,   /* closed; freed once the running callbacks return */
    SF__C_HELD      = 1 << 5,   /* sf_conn_hold: not watched, never timed out */
    SF__C_WATCH_PEER = 1 << 6,  /* idle means the peer is gone, not silent */
    SF__C_EXPECT    = 1 << 7,   /* input begun must complete by u.expect_ms + idle */
    SF__C_SOLE      = 1 << 8,   /* accepted here: closing it leaves epoll (no DEL) */
    SF__C_RING      = 1 << 9,   /* served through the loop's io_uring (server_ring.c) */
    SF__C_RECVING   = 1 << 10,  /* ring: a receive is with the kernel */
    SF__C_SENDING   = 1 << 11,  /* ring: a send from out is with the kernel */
    SF__C_BURY      = 1 << 12,  /* ring: closed; descriptor and memory go once the kernel
                                   has given back its requests */
};

/* 40 bytes (a 48-byte allocation) plus the service's state: the server holds one per
 * idle connection, in the loop's table indexed by fd. */
struct sf_conn {
    lsock *ls;
    sf_buf *out;            /* only while a write is incomplete */
    union {
        uint64_t finish_ms; /* when finishing began (while open) */
        uint64_t expect_ms; /* SF__C_EXPECT, not finishing: when input began */
        sf_conn *next_dead; /* closed while callbacks ran: freed when they return */
    } u;
    uint32_t id;            /* wraps after 2^32 connections */
    uint32_t last_ms;       /* last read or write progress, the loop's clock mod 2^32 */
    int fd;
    unsigned flags;
    char data[];            /* service state, ls->svc->conn_size bytes */
};

struct worker {
    sf_server *s;
    int index;
    sf_loop *loop;
    pthread_t thread;
    int started;
    lsock ls[SF__MAX_LISTENERS];
    int nls;
    int nconns;             /* connections in the loop's table (sf_loop_watched) */
    int spare_fd;           /* given up when accept hits EMFILE */
    uint64_t emfile_log_ms; /* when EMFILE was last logged; 0: never */
    uint64_t swept_ms;      /* when the sweep last ran; 0: never */
    int draining;
    int depth;              /* callbacks running: closes are deferred while > 0 */
    sf_conn *dead;          /* closed, waiting to be freed */
    char *scratch;          /* one read buffer for every connection of this loop */
    udp_batch *udp;
    ring *ring;             /* NULL: every connection on epoll */
    uint64_t unlogged[SF__NDROP];   /* drops not yet told in the log, by reason */
    struct sockaddr_storage last_from[SF__NDROP];
    socklen_t last_fromlen[SF__NDROP];
    uint64_t unlogged_since_ms;
    sf_server_stats st;
};

struct sf_server {
    sf_server_opts o;
    worker *w;
    int nw;
    sf_listener listeners[SF__MAX_LISTENERS];
    int nlisteners;
    atomic_int total_conns;
    atomic_ulong next_id;
    atomic_int stop_mode;   /* 0 running, 1 draining, 2 stopping now */
    atomic_uint_fast64_t udp_log_ms;    /* when a loop last logged drops */
    pthread_mutex_t accept_lock; /* several loops: accept4 vs. the EMFILE spare trick */
    sf_udpguard *guard;     /* one for all loops: one budget per source */
    uint32_t sweep_ms;
};

/* server.c: a line through opts.log (nothing when unset). */
void sf__server_log(sf_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* t filled for the server side of connection id, or NULL when tracing is off. */
sf_trace *sf__server_trace(sf_server *s, sf_trace *t, unsigned long id);

/* server_accept.c: a listener is ready; accept a bounded batch. */
void sf__tcp_accept_ready(sf_loop *l, int lfd, int events, void *ud);
/* Out of descriptors (code EMFILE or ENFILE): a log line, at most every 10 s. */
void sf__accept_out_of_descriptors(worker *w, int code);

/* server_tcp.c */
/* Take fd (accepted, or passed in) as a connection of ls's service: admitted by the
 * access rules and --max-conns, or closed. */
void sf__tcp_start_conn(worker *w, lsock *ls, int fd);
/* The same for fd just accepted here, so the only descriptor open on its socket. */
void sf__tcp_start_accepted(worker *w, lsock *ls, int fd);
/* The same for fd accepted through the loop's ring: served there. */
void sf__tcp_start_ring(worker *w, lsock *ls, int fd);
/* The connection on fd, from the loop's table (NULL: none). */
sf_conn *sf__conn_at(worker *w, int fd);
/* The events c's state asks for (SF_READ, SF_WRITE). */
int sf__conn_events(const sf_conn *c);
/* Ring completions for c: n bytes (or 0: EOF, or -errno) received into data; n bytes
 * of c->out sent (or -errno). */
void sf__tcp_ring_got(sf_conn *c, int n, char *data);
void sf__tcp_ring_sent(sf_conn *c, int n);
/* n bytes (or -errno) of the len at p sent in place: the rest goes to c's queue. */
void sf__tcp_ring_sent_direct(sf_conn *c, int n, const char *p, size_t len);
/* Callbacks run between enter and leave; closes asked for meanwhile are deferred. */
void sf__worker_enter(worker *w);
void sf__worker_leave(worker *w);
/* Close every connection of w (on_close still runs for each). */
void sf__tcp_close_all(worker *w);
/* server_sweep.c: the timer that closes idle, stalled and lingering connections; it
 * re-arms itself. */
void sf__tcp_sweep(sf_loop *l, void *ud);

/* server_ring.c: the io_uring path for ring_ok services (a no-op where the kernel or the
 * build has none). Started in the loop's thread before it runs: the eligible listeners
 * accept through the ring from then on. */
void sf__ring_start(worker *w);
/* Before ls's descriptor is closed: its accept request let go. */
void sf__ring_stop_accepting(worker *w, lsock *ls);
/* The requests c's state needs now (a receive, a send of its queue). */
void sf__ring_arm(sf_conn *c);
/* Send p (within the buffer being handed to the service) from where it is: 1 if taken,
 * 0 when it must be queued (a send already out, a queue, too many buffers held). */
int sf__ring_send_direct(sf_conn *c, const void *p, size_t len);
/* c closed: its descriptor closed (through the ring) and 0, or 1 when requests are still
 * with the kernel: the descriptor and c are then freed once they come back. */
int sf__ring_release(sf_conn *c);
/* From the sweep: the accepts asked again when the descriptor limit has changed (an
 * accept request keeps the limit of the moment it was asked). */
void sf__ring_sweep(worker *w);
/* A timer: ls accepts through the ring again (after EMFILE). */
void sf__ring_rearm_accept(sf_loop *l, void *ud);
/* Every request cancelled and reaped, the ring closed (in the loop's thread, after it
 * ran); its connections stay open, served by nothing until closed. */
void sf__ring_free(worker *w);

/* server_udp.c */
int sf__udp_worker_init(worker *w, size_t dgram_max);
void sf__udp_worker_free(worker *w);
void sf__udp_ready(sf_loop *l, int fd, int events, void *ud);
/* One line about the datagrams left unanswered, at most once a second per server. */
void sf__udp_log_drops(worker *w);

#endif
