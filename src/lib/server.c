/* server: each loop (worker) owns its listening sockets (SO_REUSEPORT when there are
 * several loops), a table of connections indexed by fd, one scratch read buffer and a
 * batch of datagram buffers. A connection costs a small struct while idle; an output
 * queue exists only while a write is incomplete. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/buf.h"
#include "sockflow/server.h"
#include "sockflow/sock.h"
#include "trace_int.h"
#include "udpguard.h"

#define SCRATCH_SIZE (64 * 1024)
#define DGRAM_BATCH 16
#define MAX_LISTENERS 64
#define PORT_TRIES 16
#define SWEEP_MS 1000     /* the longest time between two sweeps for timeouts */
#define SWEEP_MIN_MS 10
#define LINGER_MS 5000
#define UDP_LOG_MS 1000     /* at most one line a second about unanswered datagrams */
#define CMSG_ROOM 128       /* room for the destination address (IP_PKTINFO) */
#define NDROP 5             /* reasons a datagram gets no reply: SF_UDP_DROP_* and... */
#define DROP_OVERSIZE 4     /* ...a reply too large for its request */
#define ACCEPT_PAUSE_MS 100
#define EMFILE_LOG_MS 10000

typedef struct worker worker;

typedef struct lsock {
    int fd;
    int proto;
    const sf_service *svc;
    void *state;
    worker *w;
} lsock;

enum {
    C_FINISHING = 1 << 0,   /* flush, FIN, drop input until EOF */
    C_PEER_EOF  = 1 << 1,
    C_SHUT      = 1 << 2,   /* FIN sent */
    C_DRAIN     = 1 << 3,   /* service wants on_drain */
    C_CLOSED    = 1 << 4,   /* closed; freed once the running callbacks return */
    C_WATCH_PEER = 1 << 5,  /* idle means the peer is gone, not silent (sf_conn_watch_peer) */
    C_EXPECT    = 1 << 6,   /* input begun must complete by expect_ms + the idle timeout */
};

struct sf_conn {
    int fd;
    unsigned flags;
    unsigned long id;
    lsock *ls;
    sf_buf *out;
    sf_conn *next_dead;     /* closed while callbacks ran: freed by reap() */
    uint64_t last_ms;       /* last read or write progress */
    uint64_t finish_ms;     /* when finishing began */
    uint64_t heard_ms;      /* C_WATCH_PEER: last sign of the peer (bytes or ACKs) */
    uint64_t expect_ms;     /* C_EXPECT: when input began that must complete */
    char data[];            /* service state, ls->svc->conn_size bytes */
};

struct worker {
    sf_server *s;
    int index;
    sf_loop *loop;
    pthread_t thread;
    int started;
    lsock ls[MAX_LISTENERS];
    int nls;
    sf_conn **conns;        /* indexed by fd */
    int nconns_cap;
    int nconns;
    int spare_fd;           /* given up when accept hits EMFILE */
    uint64_t emfile_log_ms; /* when EMFILE was last logged; 0: never */
    int draining;
    int depth;              /* callbacks running: closes are deferred while > 0 */
    sf_conn *dead;          /* closed, waiting to be freed */
    char *scratch;
    struct mmsghdr *msgs;   /* UDP batch */
    struct iovec *iov;
    struct sockaddr_storage *peers;
    char *dgram_in, *dgram_out;
    char *cmsgs;            /* UDP batch: control data, CMSG_ROOM each */
    sf_udpguard *guard;
    uint64_t unlogged[NDROP];   /* drops not yet told in the log, by reason */
    struct sockaddr_storage last_from[NDROP];
    socklen_t last_fromlen[NDROP];
    uint64_t unlogged_since_ms;
    sf_server_stats st;
};

struct sf_server {
    sf_server_opts o;
    worker *w;
    int nw;
    sf_listener listeners[MAX_LISTENERS];
    int nlisteners;
    atomic_int total_conns;
    atomic_ulong next_id;
    atomic_int stop_mode;   /* 0 running, 1 draining, 2 stopping now */
    atomic_uint_fast64_t udp_log_ms;    /* when a loop last logged drops */
    pthread_mutex_t accept_lock; /* several loops: accept4 vs. the EMFILE spare trick */
    uint32_t sweep_ms;
};

static void conn_io(sf_loop *l, int fd, int events, void *ud);
static void free_conn(worker *w, sf_conn *c);
static void enter(worker *w);
static void leave(worker *w);

static void
slog(sf_server *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (s->o.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_ud, line);
}

static sf_trace *
conn_trace(sf_server *s, sf_trace *t, unsigned long id)
{
    if (!SF_TRACING(s->o.tracer))
        return NULL;
    t->tracer = s->o.tracer;
    t->side = "server";
    t->id = id;
    return t;
}

/* ---- setting up ---- */

/* A timeout fires at most a quarter of itself late (and at most SWEEP_MS late): a 1 s
 * idle timeout closes within 1.25 s, not anywhere up to 2 s. */
static uint32_t
sweep_interval(const sf_server_opts *o)
{
    uint32_t ms = SWEEP_MS;

    if (o->idle_timeout_ms && o->idle_timeout_ms / 4 < ms)
        ms = o->idle_timeout_ms / 4;
    if (o->send_timeout_ms && o->send_timeout_ms / 4 < ms)
        ms = o->send_timeout_ms / 4;
    return ms < SWEEP_MIN_MS ? SWEEP_MIN_MS : ms;
}

static int
worker_init(sf_server *s, worker *w, int index, sf_err *err)
{
    size_t dmax = s->o.dgram_max;

    w->s = s;
    w->index = index;
    w->spare_fd = -1;
    w->loop = sf_loop_new(err);
    if (w->loop == NULL)
        return err ? err->code : -ENOMEM;
    w->scratch = malloc(SCRATCH_SIZE);
    w->msgs = calloc(DGRAM_BATCH, sizeof(*w->msgs));
    w->iov = calloc(DGRAM_BATCH, sizeof(*w->iov));
    w->peers = calloc(DGRAM_BATCH, sizeof(*w->peers));
    /* Datagram buffers are one byte larger than dgram_max, so a bigger datagram shows
     * as truncated (MSG_TRUNC) and is dropped rather than echoed cut. */
    w->dgram_in = malloc(DGRAM_BATCH * (dmax + 1));
    w->dgram_out = malloc(dmax);
    w->cmsgs = malloc(DGRAM_BATCH * CMSG_ROOM);
    w->guard = sf__udpguard_new(s->o.udp_allow_low_ports,
                                s->o.udp_rate == SF_UDP_NO_LIMIT ? 0 : s->o.udp_rate,
                                s->o.udp_burst, s->o.udp_sources);
    if (!w->scratch || !w->msgs || !w->iov || !w->peers || !w->dgram_in || !w->dgram_out ||
        !w->cmsgs || !w->guard)
        return sf_err_set(err, -ENOMEM, "server buffers");
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
}

sf_server *
sf_server_new(const sf_server_opts *opts, sf_err *err)
{
    sf_server *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        sf_err_set(err, -ENOMEM, "server");
        return NULL;
    }
    if (opts)
        s->o = *opts;
    if (s->o.loops <= 0)
        s->o.loops = 1;
    pthread_mutex_init(&s->accept_lock, NULL);
    if (s->o.queue_cap == 0)
        s->o.queue_cap = 256 * 1024;
    if (s->o.drain_timeout_ms == 0)
        s->o.drain_timeout_ms = 10000;
    if (s->o.dgram_max == 0 || s->o.dgram_max > 65536)
        s->o.dgram_max = 65536;
    if (s->o.udp_rate == 0)
        s->o.udp_rate = 1000;
    if (s->o.udp_burst == 0)
        s->o.udp_burst = s->o.udp_rate == SF_UDP_NO_LIMIT ? 1 : s->o.udp_rate;
    if (s->o.udp_sources == 0)
        s->o.udp_sources = 4096;
    s->sweep_ms = sweep_interval(&s->o);
    s->w = calloc((size_t)s->o.loops, sizeof(*s->w));
    if (s->w == NULL) {
        sf_err_set(err, -ENOMEM, "server");
        free(s);
        return NULL;
    }
    s->nw = s->o.loops;
    /* A worker never set up must own no descriptor when sf_server_free runs. */
    for (int i = 0; i < s->nw; i++)
        s->w[i].spare_fd = -1;
    for (int i = 0; i < s->nw; i++) {
        if (worker_init(s, &s->w[i], i, err) < 0) {
            sf_server_free(s);
            return NULL;
        }
    }
    return s;
}

static void
close_listeners(worker *w)
{
    for (int i = 0; i < w->nls; i++) {
        sf_trace t, *tp = conn_trace(w->s, &t, 0);

        if (w->ls[i].fd < 0)
            continue;
        sf_loop_unwatch(w->loop, w->ls[i].fd);
        sf_close(tp, w->ls[i].fd);
        w->ls[i].fd = -1;
    }
}

void
sf_server_free(sf_server *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nw; i++)
        s->w[i].draining = 0;   /* no loop runs now: closing is not draining */
    for (int i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];

        /* Closed through the deferred path, so that on_close callbacks may still send
         * to (and close) the others. */
        enter(w);
        for (int fd = 0; fd < w->nconns_cap; fd++)
            if (w->conns[fd])
                sf_conn_close(w->conns[fd], NULL);
        leave(w);
        if (w->loop)
            close_listeners(w);
        for (int j = 0; j < w->nls; j++) {
            int first = 1;

            /* A service's state is shared by all its sockets in this loop: free once. */
            for (int k = 0; k < j; k++)
                first &= w->ls[k].state != w->ls[j].state;
            if (first && w->ls[j].svc->state_free && w->ls[j].state)
                w->ls[j].svc->state_free(w->ls[j].state);
        }
        if (w->spare_fd >= 0)
            close(w->spare_fd);
        sf_loop_free(w->loop);
        free(w->conns);
        free(w->scratch);
        free(w->msgs);
        free(w->iov);
        free(w->peers);
        free(w->dgram_in);
        free(w->dgram_out);
        free(w->cmsgs);
        sf__udpguard_free(w->guard);
    }
    pthread_mutex_destroy(&s->accept_lock);
    free(s->w);
    free(s);
}

static void tcp_accept_ready(sf_loop *l, int fd, int events, void *ud);
static void udp_ready(sf_loop *l, int fd, int events, void *ud);

/* The per-loop state of svc in w, made once and shared by all its sockets there. */
static void *
service_state(worker *w, const sf_service *svc, int *fresh)
{
    *fresh = 0;
    for (int i = 0; i < w->nls; i++)
        if (w->ls[i].svc == svc)
            return w->ls[i].state;
    if (svc->state_new == NULL)
        return NULL;
    *fresh = 1;
    return svc->state_new();
}

static int
add_lsock(worker *w, int fd, int proto, const sf_service *svc, sf_err *err)
{
    lsock *ls;
    int fresh, rc;

    if (w->nls == MAX_LISTENERS)
        return sf_err_set(err, -ENOSPC, "listen: more than %d sockets", MAX_LISTENERS);
    ls = &w->ls[w->nls];
    ls->fd = fd;
    ls->proto = proto;
    ls->svc = svc;
    ls->w = w;
    ls->state = service_state(w, svc, &fresh);
    if (svc->state_new && ls->state == NULL)
        return sf_err_set(err, -ENOMEM, "%s: state", svc->name);
    rc = sf_loop_watch(w->loop, fd, SF_READ,
                       proto == SF_PROTO_TCP ? tcp_accept_ready : udp_ready, ls);
    if (rc < 0) {
        if (fresh && svc->state_free)
            svc->state_free(ls->state);
        return sf_err_set(err, rc, "epoll_ctl");
    }
    w->nls++;
    return 0;
}

/* Undo the sockets added since mark[] (one mark per worker). */
static void
drop_lsocks_since(sf_server *s, const int *mark, int lmark)
{
    for (int i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];

        while (w->nls > mark[i]) {
            lsock *ls = &w->ls[--w->nls];
            int shared = 0;

            for (int j = 0; j < w->nls; j++)
                shared |= w->ls[j].state == ls->state;
            sf_loop_unwatch(w->loop, ls->fd);
            close(ls->fd);
            if (!shared && ls->svc->state_free && ls->state)
                ls->svc->state_free(ls->state);
        }
    }
    s->nlisteners = lmark;
}

/* Ask for each datagram's destination address, so that one sent to a broadcast or
 * multicast address (fraggle) is not answered. */
static int
want_destination(int fd, int family, sf_err *err)
{
    int on = 1;
    int rc = family == AF_INET6
        ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on))
        : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));

    return rc < 0 ? sf_err_set(err, -errno, "setsockopt %s", family == AF_INET6
                               ? "IPV6_RECVPKTINFO" : "IP_PKTINFO") : 0;
}

static int
bind_one(sf_server *s, const sf_service *svc, const sf_addr *a, int proto, sf_err *err)
{
    int loops = svc->one_loop ? 1 : s->nw;
    sf_listen_opts lo = { .backlog = s->o.backlog, .reuseport = loops > 1 };
    sf_addr at = *a;
    int rc;

    if (s->nlisteners == MAX_LISTENERS)
        return sf_err_set(err, -ENOSPC, "listen: more than %d sockets", MAX_LISTENERS);
    for (int i = 0; i < loops; i++) {
        sf_trace t, *tp = conn_trace(s, &t, 0);
        int fd;

        lo.exclusive = i == 0;  /* the copies join the group the first one made */
        fd = proto == SF_PROTO_TCP ? sf_tcp_listen(tp, &at, &lo, err)
                                   : sf_udp_bind(tp, &at, &lo, err);

        if (fd < 0)
            return fd;
        if (i == 0)
            sf_local_addr(fd, &at);   /* port 0: the copies take the port it got */
        rc = proto == SF_PROTO_UDP ? want_destination(fd, sf_addr_family(&at), err) : 0;
        if (rc == 0)
            rc = add_lsock(&s->w[i], fd, proto, svc, err);
        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    s->listeners[s->nlisteners++] = (sf_listener){ svc, proto, at };
    if (proto == SF_PROTO_UDP)
        for (int i = 0; i < s->nw; i++)
            sf__udpguard_add_port(s->w[i].guard, sf_addr_port(&at));
    return sf_addr_port(&at);
}

int
sf_server_listen(sf_server *s, const sf_service *svc, const sf_addr *addrs, int naddrs,
                 int port, unsigned protos, sf_err *err)
{
    int mark[s->nw];
    int lmark = s->nlisteners;
    int rc = 0;

    protos &= svc->protos;
    if (protos == 0 || naddrs <= 0)
        return sf_err_set(err, SF_EUSAGE, "%s: no %s service", svc->name,
                          protos == 0 ? "such protocol for this" : "address for the");
    for (int i = 0; i < s->nw; i++)
        mark[i] = s->w[i].nls;
    for (int attempt = 0; attempt < PORT_TRIES; attempt++) {
        int p = port;

        for (int i = 0; i < naddrs && rc >= 0; i++) {
            for (int proto = SF_PROTO_TCP; proto <= SF_PROTO_UDP && rc >= 0; proto <<= 1) {
                sf_addr a = addrs[i];

                if (!(protos & proto))
                    continue;
                sf_addr_set_port(&a, p);
                rc = bind_one(s, svc, &a, proto, err);
                if (rc >= 0)
                    p = rc;
            }
        }
        /* A picked port may be taken on another address or protocol: pick again. */
        if (rc >= 0 || port != 0 || rc != -EADDRINUSE)
            break;
        drop_lsocks_since(s, mark, lmark);
        rc = 0;
    }
    if (rc < 0) {
        drop_lsocks_since(s, mark, lmark);
        return rc;
    }
    return 0;
}

int
sf_server_listener_count(const sf_server *s)
{
    return s->nlisteners;
}

const sf_listener *
sf_server_listener(const sf_server *s, int i)
{
    return i >= 0 && i < s->nlisteners ? &s->listeners[i] : NULL;
}

/* ---- connections ---- */

static int
table_put(worker *w, sf_conn *c)
{
    if (c->fd >= w->nconns_cap) {
        int n = w->nconns_cap ? w->nconns_cap : 256;
        sf_conn **t;

        while (n <= c->fd)
            n *= 2;
        t = realloc(w->conns, (size_t)n * sizeof(*t));
        if (t == NULL)
            return -ENOMEM;
        memset(t + w->nconns_cap, 0, (size_t)(n - w->nconns_cap) * sizeof(*t));
        w->conns = t;
        w->nconns_cap = n;
    }
    w->conns[c->fd] = c;
    w->nconns++;
    return 0;
}

static void
free_conn(worker *w, sf_conn *c)
{
    sf_trace t, *tp = conn_trace(w->s, &t, c->id);
    int left;

    if (c->ls->svc->on_close)
        c->ls->svc->on_close(c);
    sf_loop_unwatch(w->loop, c->fd);
    sf_close(tp, c->fd);
    w->conns[c->fd] = NULL;
    w->nconns--;
    w->st.closed++;
    left = atomic_fetch_sub(&w->s->total_conns, 1) - 1;
    if (c->out) {
        sf_buf_free(c->out);
        free(c->out);
    }
    free(c);
    if (!w->draining)
        return;
    if (w->nconns == 0 && w->index > 0)
        sf_loop_stop(w->loop);
    /* Loop 0 reads the signals, so it drains until every loop has (see worker_main). */
    if (left == 0)
        sf_loop_stop(w->s->w[0].loop);
}

void
sf_conn_close(sf_conn *c, const char *reason)
{
    worker *w = c->ls->w;

    if (c->flags & C_CLOSED)
        return;
    if (reason)
        sf_conn_log(c, "closed: %s", reason);
    c->flags |= C_CLOSED;
    if (w->depth > 0) {
        /* A callback up the stack may still hold c (chat walks its members while
         * sending): free it only once every callback has returned. */
        sf_loop_set_events(w->loop, c->fd, 0);
        c->next_dead = w->dead;
        w->dead = c;
        return;
    }
    free_conn(w, c);
}

static void
enter(worker *w)
{
    w->depth++;
}

static void
leave(worker *w)
{
    if (w->depth > 1) {
        w->depth--;
        return;
    }
    /* Still "inside" while freeing: an on_close that sends (chat announcing a leave)
     * may close another connection, which then joins the list instead of being freed
     * under the feet of the on_close walking its members. */
    while (w->dead) {
        sf_conn *c = w->dead;

        w->dead = c->next_dead;
        free_conn(w, c);
    }
    w->depth--;
}

/* Which events to watch follows from the state: never read while output is queued. */
static void
update_events(sf_conn *c)
{
    int ev;

    if (c->flags & C_CLOSED)
        return;
    if (c->out && sf_buf_len(c->out) > 0)
        ev = SF_WRITE;
    else if (c->flags & C_DRAIN)
        ev = SF_READ | SF_WRITE;
    else
        ev = SF_READ;
    if ((c->flags & C_PEER_EOF) && ev != SF_WRITE)
        ev &= ~SF_READ;
    sf_loop_set_events(c->ls->w->loop, c->fd, ev);
}

int
sf_conn_send(sf_conn *c, const void *p, size_t len)
{
    worker *w = c->ls->w;
    size_t done = 0;

    if (c->flags & (C_CLOSED | C_SHUT))
        return -EPIPE;
    if (c->out && sf_buf_len(c->out) > 0) {
        if (len > sf_buf_room(c->out)) {
            w->st.queue_cap_hits++;
            return -ENOBUFS;
        }
    } else {
        sf_trace t, *tp = conn_trace(w->s, &t, c->id);
        ssize_t n = sf_write(tp, c->fd, p, len);

        if (n < 0 && n != SF_EAGAIN) {
            /* The client going away is the normal end of a stream (chargen): no log. */
            sf_conn_close(c, n == -ECONNRESET || n == -EPIPE ? NULL : sf_strerror((int)n));
            return (int)n;
        }
        if (n > 0) {
            done = (size_t)n;
            w->st.bytes_out += (uint64_t)n;
            c->last_ms = sf_loop_now_ms(w->loop);
        }
        if (done == len)
            return 0;
        if (len - done > w->s->o.queue_cap) {
            w->st.queue_cap_hits++;
            return -ENOBUFS;
        }
    }
    if (c->out == NULL) {
        c->out = malloc(sizeof(*c->out));
        if (c->out == NULL)
            return -ENOMEM;
        sf_buf_init(c->out, w->s->o.queue_cap);
    }
    if (sf_buf_push(c->out, (const char *)p + done, len - done) < 0)
        return -ENOMEM;
    update_events(c);
    return 0;
}

static void
send_fin(sf_conn *c)
{
    sf_trace t, *tp = conn_trace(c->ls->w->s, &t, c->id);

    if (c->flags & C_SHUT)
        return;
    c->flags |= C_SHUT;
    sf_shutdown_write(tp, c->fd);
}

/* Finishing and nothing left to send: FIN now, close once the client has closed too. */
static void
finish_step(sf_conn *c)
{
    if (!(c->flags & C_FINISHING) || (c->out && sf_buf_len(c->out) > 0))
        return;
    if (c->flags & C_PEER_EOF) {
        sf_conn_close(c, NULL);
        return;
    }
    send_fin(c);
    update_events(c);
}

void
sf_conn_finish(sf_conn *c)
{
    if (c->flags & C_CLOSED)
        return;
    c->flags |= C_FINISHING;
    c->flags &= ~C_DRAIN;
    c->finish_ms = sf_loop_now_ms(c->ls->w->loop);
    finish_step(c);
}

void
sf_conn_want_drain(sf_conn *c, int on)
{
    if (on)
        c->flags |= C_DRAIN;
    else
        c->flags &= ~C_DRAIN;
    update_events(c);
}

/* setsockopt on a connection's socket, traced. Returns 0 or -errno. */
static int
set_conn_option(sf_conn *c, int level, int name, const char *label, int value)
{
    sf_trace t, *tp = conn_trace(c->ls->w->s, &t, c->id);
    int rc = setsockopt(c->fd, level, name, &value, sizeof(value));

    if (tp)
        sf_trace_call(tp, "setsockopt", c->fd, rc, rc < 0 ? errno : 0, NULL, 0, "%s=%d",
                      label, value);
    return rc < 0 ? -errno : 0;
}

int
sf_conn_watch_peer(sf_conn *c)
{
    const sf_server_opts *o = &c->ls->w->s->o;
    int rc = 0;

    /* Keepalive probes every half idle timeout: a live peer's kernel answers them, so it
     * is heard from well within the idle timeout even when nobody talks. */
    if (o->idle_timeout_ms) {
        uint32_t secs = o->idle_timeout_ms / 2000;
        int probe = secs < 1 ? 1 : secs > 32767 ? 32767 : (int)secs;

        if ((rc = set_conn_option(c, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 1)) < 0 ||
            (rc = set_conn_option(c, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", probe)) < 0 ||
            (rc = set_conn_option(c, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", probe)) < 0 ||
            (rc = set_conn_option(c, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", 2)) < 0)
            return rc;
    }
    /* Lines sent to a vanished peer land in the kernel's buffer and look like progress;
     * only the peer's silence about them (man 7 tcp) shows it is gone. */
    if (o->send_timeout_ms && o->send_timeout_ms <= INT32_MAX)
        rc = set_conn_option(c, IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT",
                             (int)o->send_timeout_ms);
    if (rc == 0) {
        c->flags |= C_WATCH_PEER;
        c->heard_ms = sf_loop_now_ms(c->ls->w->loop);
    }
    return rc;
}

void
sf_conn_expect_input(sf_conn *c, int on)
{
    if (!on) {
        c->flags &= ~C_EXPECT;
    } else if (!(c->flags & C_EXPECT)) {
        c->flags |= C_EXPECT;
        c->expect_ms = sf_loop_now_ms(c->ls->w->loop);
    }
}

void *sf_conn_data(sf_conn *c) { return c->data; }
void *sf_conn_state(sf_conn *c) { return c->ls->state; }
unsigned long sf_conn_id(const sf_conn *c) { return c->id; }
int sf_conn_fd(const sf_conn *c) { return c->fd; }
size_t sf_conn_queued(const sf_conn *c) { return c->out ? sf_buf_len(c->out) : 0; }

int
sf_conn_peer(const sf_conn *c, sf_addr *a)
{
    return sf_peer_addr(c->fd, a);
}

void
sf_conn_log(sf_conn *c, const char *fmt, ...)
{
    char msg[384], who[SF_ADDR_STRLEN];
    sf_addr peer;
    va_list ap;

    if (c->ls->w->s->o.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (sf_conn_peer(c, &peer) < 0)
        snprintf(who, sizeof(who), "fd %d", c->fd);
    else
        sf_addr_format(&peer, who, sizeof(who));
    slog(c->ls->w->s, "%s #%lu %s: %s", c->ls->svc->name, c->id, who, msg);
}

static void
conn_readable(worker *w, sf_conn *c)
{
    sf_trace t, *tp = conn_trace(w->s, &t, c->id);
    const sf_service *svc = c->ls->svc;
    /* Never more than the queue may hold: what a service sends back for one read (echo)
     * can then always be queued, and a small queue_cap means backpressure, not a close. */
    size_t want = w->s->o.queue_cap < SCRATCH_SIZE ? w->s->o.queue_cap : SCRATCH_SIZE;
    ssize_t n = sf_read(tp, c->fd, w->scratch, want);

    if (n == SF_EAGAIN)
        return;
    if (n < 0) {
        sf_conn_close(c, n == -ECONNRESET ? NULL : sf_strerror((int)n));
        return;
    }
    c->last_ms = sf_loop_now_ms(w->loop);
    if (n == 0) {
        c->flags |= C_PEER_EOF;
        if (c->flags & C_FINISHING) {
            finish_step(c);
            return;
        }
        if (svc->on_eof)
            svc->on_eof(c);
        else
            sf_conn_finish(c);
        update_events(c);
        return;
    }
    w->st.bytes_in += (uint64_t)n;
    if ((c->flags & C_FINISHING) || svc->on_data == NULL)
        return;     /* lingering: read and drop */
    svc->on_data(c, w->scratch, (size_t)n);
}

static void
conn_writable(worker *w, sf_conn *c)
{
    if (c->out && sf_buf_len(c->out) > 0) {
        sf_trace t, *tp = conn_trace(w->s, &t, c->id);
        size_t before = sf_buf_len(c->out);
        ssize_t left = sf_buf_flush(tp, c->out, c->fd);

        if (left < 0) {
            sf_conn_close(c, left == -ECONNRESET || left == -EPIPE ? NULL
                                                                   : sf_strerror((int)left));
            return;
        }
        if ((size_t)left < before) {
            w->st.bytes_out += before - (size_t)left;
            c->last_ms = sf_loop_now_ms(w->loop);
        }
        if (left > 0)
            return;
        /* Empty again: give the memory back while the connection idles. */
        sf_buf_free(c->out);
        free(c->out);
        c->out = NULL;
        update_events(c);
        finish_step(c);
        return;
    }
    if ((c->flags & C_DRAIN) && c->ls->svc->on_drain)
        c->ls->svc->on_drain(c);
}

static void
conn_io(sf_loop *l, int fd, int events, void *ud)
{
    sf_conn *c = ud;
    worker *w = c->ls->w;

    (void)l;
    (void)fd;
    if (c->flags & C_CLOSED)
        return;
    enter(w);
    if (events & SF_WRITE)
        conn_writable(w, c);
    if ((events & SF_READ) && !(c->flags & C_CLOSED))
        conn_readable(w, c);
    leave(w);
}

/* ---- accepting ---- */

static void
resume_accepting(sf_loop *l, void *ud)
{
    lsock *ls = ud;

    if (ls->fd >= 0)    /* not closed meanwhile (drain) */
        sf_loop_set_events(l, ls->fd, SF_READ);
}

/* The loops share one table of descriptors: while one gives back its spare to shed
 * clients, another loop's accept4 would take the freed slot (and serve that client),
 * and the spare could not be taken again. Seen with -j 2 at the limit: both spares
 * gone within a second, then clients neither served nor turned away. So with several
 * loops accept4 and the shedding take turns; one loop needs no lock. */
static void
lock_accept(sf_server *s)
{
    if (s->nw > 1)
        pthread_mutex_lock(&s->accept_lock);
}

static void
unlock_accept(sf_server *s)
{
    int e = errno;

    if (s->nw > 1)
        pthread_mutex_unlock(&s->accept_lock);
    errno = e;
}

/* Out of descriptors: give back the spare one, accept and close at once so the client
 * hears a clean close instead of waiting, then take the spare again. Without this a
 * level-triggered listener would wake the loop endlessly. Called with the accept lock. */
static void
shed_connections(worker *w, lsock *ls)
{
    int shed = 0;

    if (w->spare_fd < 0)
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (w->spare_fd >= 0) {
        close(w->spare_fd);
        for (; shed < 64; shed++) {
            int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

            if (fd < 0)
                break;
            close(fd);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    w->st.emfile += (uint64_t)shed;
    if (shed == 0) {
        /* The spare made no room: it is gone (another loop took the slot) or the limit
         * is below the descriptors already open. Stop accepting for a moment rather
         * than wake on this listener again and again. */
        sf_loop_set_events(w->loop, ls->fd, 0);
        sf_loop_timer(w->loop, ACCEPT_PAUSE_MS, resume_accepting, ls);
    }
}

static void
start_conn(worker *w, lsock *ls, int fd)
{
    sf_server *s = w->s;
    sf_conn *c;

    if (s->o.max_conns > 0 && atomic_load(&s->total_conns) >= s->o.max_conns) {
        w->st.refused_max++;
        close(fd);
        return;
    }
    c = calloc(1, sizeof(*c) + ls->svc->conn_size);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->ls = ls;
    c->id = atomic_fetch_add(&s->next_id, 1) + 1;
    c->last_ms = sf_loop_now_ms(w->loop);
    if (table_put(w, c) < 0 || sf_loop_watch(w->loop, fd, SF_READ, conn_io, c) < 0) {
        if (fd < w->nconns_cap && w->conns[fd] == c) {
            w->conns[fd] = NULL;
            w->nconns--;
        }
        close(fd);
        free(c);
        return;
    }
    atomic_fetch_add(&s->total_conns, 1);
    w->st.accepted++;
    if (ls->svc->on_open)
        ls->svc->on_open(c);
}

static void tcp_accept_batch(worker *w, lsock *ls, int lfd);

static void
tcp_accept_ready(sf_loop *l, int lfd, int events, void *ud)
{
    lsock *ls = ud;
    worker *w = ls->w;

    (void)l;
    (void)events;
    enter(w);
    tcp_accept_batch(w, ls, lfd);
    leave(w);
}

/* A bounded batch keeps one busy listener from starving the connections. */
static void
tcp_accept_batch(worker *w, lsock *ls, int lfd)
{
    for (int i = 0; i < 64; i++) {
        sf_trace t, *tp = conn_trace(w->s, &t, 0);
        int fd;

        lock_accept(w->s);
        fd = sf_tcp_accept(tp, lfd, NULL);
        if (fd == -EMFILE || fd == -ENFILE)
            shed_connections(w, ls);
        unlock_accept(w->s);
        if (fd == SF_EAGAIN) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            continue;   /* a transient error: that connection is gone, try the next */
        }
        if (fd == -EMFILE || fd == -ENFILE) {
            uint64_t now = sf_loop_now_ms(w->loop);

            /* Once, then at most every EMFILE_LOG_MS while it lasts: never a flood. */
            if (w->emfile_log_ms == 0 || now - w->emfile_log_ms >= EMFILE_LOG_MS) {
                w->emfile_log_ms = now ? now : 1;
                slog(w->s, "accept: %s (clients turned away so far: %llu)", sf_strerror(fd),
                     (unsigned long long)w->st.emfile);
            }
            return;
        }
        if (fd < 0) {
            slog(w->s, "accept: %s", sf_strerror(fd));
            return;
        }
        start_conn(w, ls, fd);
    }
}

/* ---- UDP ---- */

/* One event per datagram of a batch call (n < 0: the call failed, one event). */
static void
trace_batch(worker *w, const char *call, int fd, const struct mmsghdr *m, int n, int err)
{
    sf_trace t, *tp = conn_trace(w->s, &t, 0);
    int in = call[0] == 'r';
    char who[SF_ADDR_STRLEN];

    if (n < 0)
        sf_trace_call(tp, call, fd, -1, err, NULL, 0, "vlen=%d", DGRAM_BATCH);
    for (int i = 0; i < n; i++) {
        const struct msghdr *h = &m[i].msg_hdr;

        sf_trace_call(tp, call, fd, (long)m[i].msg_len, 0, h->msg_iov->iov_base,
                      m[i].msg_len, "len=%zu, %s=%s", h->msg_iov->iov_len, in ? "from" : "to",
                      sf_addr_format_sa(h->msg_name, h->msg_namelen, who, sizeof(who)));
    }
}

static const char *const drop_what[NDROP] = {
    "from a service port", "from a port below 1024", "to or from a broadcast, "
    "multicast or unspecified address", "over the per-source budget", "with a reply "
    "larger than allowed",
};

static void
count_drop(worker *w, int reason, const struct msghdr *h)
{
    uint64_t *n[NDROP] = { &w->st.dgrams_loop, &w->st.dgrams_low_port,
                           &w->st.dgrams_bad_addr, &w->st.dgrams_rate,
                           &w->st.dgrams_oversize };

    (*n[reason])++;
    if (w->unlogged[reason]++ == 0 && w->unlogged_since_ms == 0)
        w->unlogged_since_ms = sf_loop_now_ms(w->loop);
    memcpy(&w->last_from[reason], h->msg_name, h->msg_namelen);
    w->last_fromlen[reason] = h->msg_namelen;
}

/* One line about the datagrams left unanswered, at most once a second for the whole
 * server (the loops take turns through udp_log_ms). */
static void
log_drops(worker *w)
{
    sf_server *s = w->s;
    uint64_t now = sf_loop_now_ms(w->loop), total = 0;
    uint_fast64_t last = atomic_load(&s->udp_log_ms);
    char line[768];
    size_t off;

    if (w->unlogged_since_ms == 0 || (last != 0 && now < last + UDP_LOG_MS) ||
        !atomic_compare_exchange_strong(&s->udp_log_ms, &last, now))
        return;
    for (int r = 0; r < NDROP; r++)
        total += w->unlogged[r];
    off = (size_t)snprintf(line, sizeof(line), "udp: no reply to %llu datagram%s in %.1f s:",
                           (unsigned long long)total, total == 1 ? "" : "s",
                           (double)(now - w->unlogged_since_ms) / 1000.0);
    for (int r = 0, first = 1; r < NDROP && off < sizeof(line); r++) {
        char who[SF_ADDR_STRLEN];

        if (w->unlogged[r] == 0)
            continue;
        sf_addr_format_sa((struct sockaddr *)&w->last_from[r], w->last_fromlen[r], who,
                          sizeof(who));
        off += (size_t)snprintf(line + off, sizeof(line) - off, "%s %llu %s (last %s)",
                                first ? "" : ",", (unsigned long long)w->unlogged[r],
                                drop_what[r], who);
        first = 0;
        w->unlogged[r] = 0;
    }
    w->unlogged_since_ms = 0;
    slog(s, "%s", line);
}

/* The destination of a received datagram from its IP_PKTINFO, or 0 if not given. */
static socklen_t
dgram_destination(struct msghdr *h, struct sockaddr_storage *dst)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct sockaddr_in *a = (struct sockaddr_in *)dst;
            struct in_pktinfo pi;

            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            memset(a, 0, sizeof(*a));
            a->sin_family = AF_INET;
            a->sin_addr = pi.ipi_addr;
            return sizeof(*a);
        }
        if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)dst;
            struct in6_pktinfo pi;

            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            memset(a, 0, sizeof(*a));
            a->sin6_family = AF_INET6;
            a->sin6_addr = pi.ipi6_addr;
            return sizeof(*a);
        }
    }
    return 0;
}

static void
udp_ready(sf_loop *l, int fd, int events, void *ud)
{
    lsock *ls = ud;
    worker *w = ls->w;
    size_t dmax = w->s->o.dgram_max;
    struct mmsghdr out[DGRAM_BATCH];
    struct iovec oiov[DGRAM_BATCH];
    char *outp = w->dgram_out;
    uint64_t now = sf_loop_now_ms(l);
    int n, nout = 0;

    (void)events;
    for (int i = 0; i < DGRAM_BATCH; i++) {
        w->iov[i].iov_base = w->dgram_in + (size_t)i * (dmax + 1);
        w->iov[i].iov_len = dmax + 1;
        memset(&w->msgs[i].msg_hdr, 0, sizeof(w->msgs[i].msg_hdr));
        w->msgs[i].msg_hdr.msg_iov = &w->iov[i];
        w->msgs[i].msg_hdr.msg_iovlen = 1;
        w->msgs[i].msg_hdr.msg_name = &w->peers[i];
        w->msgs[i].msg_hdr.msg_namelen = sizeof(w->peers[i]);
        w->msgs[i].msg_hdr.msg_control = w->cmsgs + (size_t)i * CMSG_ROOM;
        w->msgs[i].msg_hdr.msg_controllen = CMSG_ROOM;
    }
    do {
        n = recvmmsg(fd, w->msgs, DGRAM_BATCH, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (SF_TRACING(w->s->o.tracer))
        trace_batch(w, "recvmmsg", fd, w->msgs, n, errno);
    if (n <= 0)
        return;
    for (int i = 0; i < n; i++) {
        struct msghdr *h = &w->msgs[i].msg_hdr;
        size_t len = w->msgs[i].msg_len;
        struct sockaddr_storage dst;
        socklen_t dstlen;
        sf_addr from;
        sf_dgram d;
        int ticket;

        w->st.dgrams_in++;
        if ((h->msg_flags & MSG_TRUNC) || len > dmax) {
            w->st.dgrams_truncated++;
            continue;
        }
        if (ls->svc->on_datagram == NULL)
            continue;       /* never answered (discard): nothing to guard */
        dstlen = dgram_destination(h, &dst);
        ticket = sf__udpguard_check(w->guard, h->msg_name, h->msg_namelen,
                                    dstlen ? (struct sockaddr *)&dst : NULL, dstlen, now);
        if (ticket < 0) {
            count_drop(w, -ticket - 1, h);
            continue;
        }
        sf_addr_from_sa(&from, (struct sockaddr *)h->msg_name, h->msg_namelen);
        d = (sf_dgram){ .in = h->msg_iov->iov_base, .inlen = len, .from = &from,
                        .state = ls->state, .out = outp,
                        .outcap = dmax - (size_t)(outp - w->dgram_out) };
        ls->svc->on_datagram(&d);
        if (d.reply_len == 0)
            continue;
        /* No amplification: past SF_UDP_REPLY_FREE bytes, never more than was asked
         * (echo's equal size is fine). */
        if (d.reply_len > SF_UDP_REPLY_FREE && d.reply_len > len) {
            count_drop(w, DROP_OVERSIZE, h);
            continue;
        }
        sf__udpguard_spend(w->guard, ticket);
        /* Replies written into the shared out buffer must not overlap the next one. */
        if (d.reply == outp)
            outp += d.reply_len;
        oiov[nout].iov_base = (void *)d.reply;
        oiov[nout].iov_len = d.reply_len;
        memset(&out[nout], 0, sizeof(out[nout]));
        out[nout].msg_hdr.msg_iov = &oiov[nout];
        out[nout].msg_hdr.msg_iovlen = 1;
        out[nout].msg_hdr.msg_name = h->msg_name;
        out[nout].msg_hdr.msg_namelen = h->msg_namelen;
        nout++;
    }
    for (int sent = 0; sent < nout;) {
        int m = sendmmsg(fd, out + sent, (unsigned)(nout - sent), MSG_DONTWAIT | MSG_NOSIGNAL);

        if (m < 0 && errno == EINTR)
            continue;
        if (SF_TRACING(w->s->o.tracer))
            trace_batch(w, "sendmmsg", fd, out + sent, m, errno);
        if (m <= 0) {
            /* A full send buffer or an error for one peer: that datagram is lost. */
            w->st.dgrams_dropped++;
            sent++;
            continue;
        }
        w->st.dgrams_out += (uint64_t)m;
        sent += m;
    }
    log_drops(w);
}

/* ---- running ---- */

/* A watched peer silent for the idle timeout may still be there, its kernel answering
 * keepalive probes: ask the kernel when it last heard anything from it. */
static int
peer_heard_within(sf_conn *c, uint64_t now, uint32_t ms)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    uint32_t ago;

    if (!(c->flags & C_WATCH_PEER))
        return 0;
    if (now - c->heard_ms <= ms)
        return 1;
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    ago = ti.tcpi_last_ack_recv < ti.tcpi_last_data_recv ? ti.tcpi_last_ack_recv
                                                          : ti.tcpi_last_data_recv;
    if (ago < now && now - ago > c->heard_ms)
        c->heard_ms = now - ago;
    return now - c->heard_ms <= ms;
}

static void
sweep(sf_loop *l, void *ud)
{
    worker *w = ud;
    sf_server *s = w->s;
    uint64_t now = sf_loop_now_ms(l);

    enter(w);
    for (int fd = 0; fd < w->nconns_cap; fd++) {
        sf_conn *c = w->conns[fd];
        uint64_t quiet;

        if (c == NULL || (c->flags & C_CLOSED))
            continue;
        quiet = now - c->last_ms;
        if ((c->flags & C_FINISHING) && now - c->finish_ms > LINGER_MS) {
            sf_conn_close(c, NULL);
        } else if (s->o.send_timeout_ms && quiet > s->o.send_timeout_ms &&
                   ((c->out && sf_buf_len(c->out) > 0) || (c->flags & C_DRAIN))) {
            /* A generator (chargen) whose last write filled the socket has nothing
             * queued, yet it is just as stuck. */
            w->st.timeouts++;
            sf_conn_close(c, "send timeout: the client is not reading");
        } else if (s->o.idle_timeout_ms && (c->flags & C_EXPECT) &&
                   now - c->expect_ms > s->o.idle_timeout_ms) {
            w->st.timeouts++;
            sf_conn_close(c, "idle timeout: input begun and not completed");
        } else if (s->o.idle_timeout_ms && quiet > s->o.idle_timeout_ms &&
                   !peer_heard_within(c, now, s->o.idle_timeout_ms)) {
            w->st.timeouts++;
            sf_conn_close(c, (c->flags & C_WATCH_PEER) ? "idle timeout: the peer stopped "
                          "answering, keepalive probes included" : "idle timeout");
        }
    }
    leave(w);
    log_drops(w);
    sf_loop_timer(l, s->sweep_ms, sweep, w);
}

static void
on_drain_deadline(sf_loop *l, void *ud)
{
    (void)ud;
    sf_loop_stop(l);
}

static void
on_signal(sf_loop *l, int signo, void *ud)
{
    sf_server *s = ud;

    (void)l;
    sf_server_stop(s, signo == SIGTERM && atomic_load(&s->stop_mode) == 0);
}

static void *
worker_main(void *arg)
{
    worker *w = arg;
    sf_server *s = w->s;

    sf_loop_timer(w->loop, s->sweep_ms, sweep, w);
    sf_loop_run(w->loop);
    if (atomic_load(&s->stop_mode) == 1) {
        /* Draining: refuse new clients at once, let the present ones finish. Loop 0
         * holds the signalfd: it runs while any loop has clients, so that a second
         * signal is heard even when loop 0 has none of its own. */
        close_listeners(w);
        w->draining = 1;
        if (w->nconns > 0 || (w->index == 0 && atomic_load(&s->total_conns) > 0)) {
            sf_loop_timer(w->loop, s->o.drain_timeout_ms, on_drain_deadline, w);
            sf_loop_run(w->loop);
        }
    }
    return NULL;
}

void
sf_server_stop(sf_server *s, int drain)
{
    atomic_store(&s->stop_mode, drain ? 1 : 2);
    for (int i = 0; i < s->nw; i++)
        sf_loop_stop(s->w[i].loop);
}

int
sf_server_run(sf_server *s)
{
    static const int sigs[] = { SIGINT, SIGTERM, 0 };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    rc = sf_loop_block_signals(sigs);
    if (rc < 0)
        return rc;
    for (int i = 0; sigs[i]; i++)
        if ((rc = sf_loop_signal(s->w[0].loop, sigs[i], on_signal, s)) < 0)
            return rc;
    for (int i = 1; i < s->nw; i++) {
        rc = -pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]);
        if (rc < 0) {
            sf_server_stop(s, 0);
            break;
        }
        s->w[i].started = 1;
    }
    if (rc == 0)
        worker_main(&s->w[0]);
    for (int i = 1; i < s->nw; i++)
        if (s->w[i].started)
            pthread_join(s->w[i].thread, NULL);
    return rc;
}

void
sf_server_get_stats(const sf_server *s, sf_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < s->nw; i++) {
        const sf_server_stats *st = &s->w[i].st;
        uint64_t *dst = (uint64_t *)out;
        const uint64_t *src = (const uint64_t *)st;

        for (size_t k = 0; k < sizeof(*st) / sizeof(uint64_t); k++)
            dst[k] += src[k];
    }
}
