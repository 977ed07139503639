/* bench: the load generator. One sf_loop per thread, each owning a share of the
 * connections (or UDP slots); every byte sent comes from one pseudo-random pattern at
 * an offset of the connection's own, so every byte that comes back can be checked.
 * Counters go to the worker's current interval; at each interval boundary (one falls
 * on the end of the warm-up) the interval is added to the worker's total if it lies
 * after the warm-up, and handed to the reporting thread under a mutex taken once per
 * interval. Nothing else is shared while the load runs. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockflow/bench.h"
#include "sockflow/loop.h"
#include "sockflow/sock.h"
#include "sockflow/trace.h"

#define PATLEN 4093u                /* prime: consecutive requests carry other bytes;
                                       small: the pattern stays in the L1 cache */
#define WINDOW (64 * 1024)          /* longest read checked against the pattern at once */
#define SWEEP_MS 50                 /* timeouts and reconnects are looked at this often */
#define UDP_BATCH 64
#define IO_ROUNDS 16                /* reads or writes per wake-up before yielding */
#define MAX_THREADS 256

enum { C_DOWN, C_CONNECTING, C_UP };

typedef struct worker worker;

typedef struct conn {
    worker *w;
    int fd;
    int state;
    int want_write;
    uint32_t seed;          /* offset of this connection's bytes in the pattern */
    uint64_t sent_off;      /* bytes written */
    uint64_t recv_off;      /* bytes read back */
    uint64_t issued, done;  /* requests */
    uint64_t bad_req;       /* 1 + the last request counted as a mismatch; 0 none */
    uint64_t start_ns;      /* connect: start of the cycle; stream: last progress */
    uint64_t *ts;           /* echo: issue time of each request in flight (pipeline) */
} conn;

typedef struct uslot {
    uint32_t hdr[2];        /* slot, sequence: the first 8 bytes of the datagram */
    int busy;
    int queued;             /* in the pending list, not yet handed to the kernel */
    uint64_t sent_ns;
} uslot;

struct worker {
    sf_bench *b;
    int index;
    sf_loop *loop;
    pthread_t thread;
    int started;
    conn *conns;
    int nconns;
    uint64_t *tsbuf;
    char *rbuf;
    size_t rbuflen;
    /* UDP */
    int ufd;
    uslot *slots;
    int nslots;
    uint32_t next_seq;
    int *pending;           /* slots waiting to be sent */
    int npending;
    int udp_batch;
    /* the run */
    uint64_t quota;         /* measured requests this worker may make; 0: no count */
    uint64_t measured;
    uint64_t outstanding;
    uint64_t cycles;
    int src_next;
    int stopping;
    uint64_t now;
    uint64_t finish_ns;
    int next_tick;          /* index of the next interval boundary */
    uint64_t roll_ns;       /* when it falls; UINT64_MAX: none left */
    uint64_t cur_start_ns;  /* start of the current interval */
    sf_bench_stats cur, total;
    /* handed over under b->mu */
    sf_bench_stats posted;
    int posted_idx;
    int done;
};

struct sf_bench {
    sf_bench_opts o;
    sf_addr *src;
    char *pat;              /* PATLEN + WINDOW bytes: any WINDOW from an offset < PATLEN */
    char *sbuf;             /* stream: one write */
    worker *w;
    int nw;
    uint64_t start_ns, warm_end_ns, end_ns;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* ---- counting ---- */

void
sf_bench_stats_init(sf_bench_stats *st)
{
    memset(st, 0, offsetof(sf_bench_stats, lat));
    sf_hist_init(&st->lat);
}

void
sf_bench_stats_merge(sf_bench_stats *d, const sf_bench_stats *s)
{
    d->requests += s->requests;
    d->mismatches += s->mismatches;
    d->bytes_out += s->bytes_out;
    d->bytes_in += s->bytes_in;
    d->connects += s->connects;
    d->sent += s->sent;
    d->lost += s->lost;
    d->late += s->late;
    d->err.refused += s->err.refused;
    d->err.reset += s->err.reset;
    d->err.timeout += s->err.timeout;
    d->err.closed += s->err.closed;
    d->err.no_port += s->err.no_port;
    d->err.other += s->err.other;
    if (s->err.last_other)
        d->err.last_other = s->err.last_other;
    sf_hist_merge(&d->lat, &s->lat);
}

void
sf_bench_count_error(sf_bench_errors *e, int code)
{
    switch (-code) {
    case ECONNREFUSED: e->refused++; break;
    case ECONNRESET: case EPIPE: case ECONNABORTED: e->reset++; break;
    case ETIMEDOUT: e->timeout++; break;
    case EADDRNOTAVAIL: case EADDRINUSE: e->no_port++; break;
    default: e->other++; e->last_other = code; break;
    }
}

uint64_t
sf_bench_error_total(const sf_bench_errors *e)
{
    return e->refused + e->reset + e->timeout + e->closed + e->no_port + e->other;
}

static int
measuring(const worker *w)
{
    return w->now >= w->b->warm_end_ns;
}

#define COUNT(w, field, n) ((w)->cur.field += (n))

static void
count_error(worker *w, int code)
{
    sf_bench_count_error(&w->cur.err, code);
}

static void
record(worker *w, uint64_t lat_ns)
{
    w->cur.requests++;
    sf_hist_record(&w->cur.lat, lat_ns);
    if (measuring(w))
        w->measured++;
}

/* stream: whole buffers moved, counted as requests. */
static void
count_chunks(worker *w, uint64_t before_off, uint64_t after_off)
{
    uint64_t n = after_off / w->b->o.size - before_off / w->b->o.size;

    w->cur.requests += n;
    if (measuring(w))
        w->measured += n;
}

static void roll(worker *w);

/* The time of this wake-up; an interval boundary passed since closes the interval
 * first, so that every count lands in the interval it happened in. */
static void
clock_in(worker *w)
{
    w->now = sf_now_ns();
    if (w->now >= w->roll_ns)
        roll(w);
}

static int
can_issue(const worker *w)
{
    return !w->stopping && (w->quota == 0 || w->measured + w->outstanding < w->quota);
}

/* The count is reached: stop once nothing is in flight. */
static void
check_quota(worker *w)
{
    if (w->quota && w->measured >= w->quota && w->outstanding == 0 && !w->stopping) {
        w->stopping = 1;
        sf_loop_stop(w->loop);
    }
}

static const char *
pat_at(const sf_bench *b, uint64_t off)
{
    return b->pat + off % PATLEN;
}

/* ---- TCP connections (echo, connect, stream) ---- */

static void conn_io(sf_loop *l, int fd, int events, void *ud);
static void cycle_start(worker *w, conn *c);

static const sf_addr *
pick_source(worker *w)
{
    const sf_bench *b = w->b;

    if (b->o.nsrc == 0)
        return NULL;
    return &b->src[(w->src_next++) % b->o.nsrc];
}

/* The trace of c's calls, or NULL when tracing is off: one branch then. Connections
 * are numbered across the threads: loop index, then slot. */
static const sf_trace *
conn_trace(const worker *w, const conn *c, sf_trace *t)
{
    if (w->b->o.tracer == NULL)
        return NULL;
    t->tracer = w->b->o.tracer;
    t->side = "client";
    t->id = c ? (unsigned long)w->index * (unsigned long)w->nconns +
                (unsigned long)(c - w->conns) + 1 : 0;
    return t;
}

static void
conn_close(worker *w, conn *c)
{
    if (c->fd >= 0) {
        sf_trace t;

        sf_loop_unwatch(w->loop, c->fd);
        sf_close(conn_trace(w, c, &t), c->fd);
    }
    c->fd = -1;
    c->state = C_DOWN;
    c->want_write = 0;
    w->outstanding -= c->issued - c->done;
    c->issued = c->done = 0;
    c->sent_off = c->recv_off = 0;
    c->bad_req = 0;
}

/* A connection failed (code < 0) or timed out (code 0, counted by the caller): it is
 * closed and opened again at the next sweep. */
static void
conn_fail(worker *w, conn *c, int code)
{
    if (code < 0)
        count_error(w, code);
    conn_close(w, c);
    check_quota(w);
}

static void
set_events(worker *w, conn *c)
{
    int ev = w->b->o.mode == SF_BENCH_STREAM && !w->b->o.recv ? SF_READ | SF_WRITE : SF_READ;

    if (c->want_write)
        ev |= SF_WRITE;
    sf_loop_set_events(w->loop, c->fd, ev);
}

/* Write what has been issued and not yet written. Returns 0 or a negative errno. */
static int
conn_flush(worker *w, conn *c)
{
    const sf_bench *b = w->b;
    uint64_t want = c->issued * b->o.size;
    int was = c->want_write;

    c->want_write = 0;
    while (c->sent_off < want) {
        uint64_t left = want - c->sent_off;
        size_t len = left < WINDOW ? (size_t)left : WINDOW;
        sf_trace t;
        ssize_t n = sf_write(conn_trace(w, c, &t), c->fd, pat_at(b, c->sent_off + c->seed), len);

        if (n == SF_EAGAIN) {
            c->want_write = 1;
            break;
        }
        if (n < 0)
            return (int)n;
        if (c->state == C_CONNECTING) {
            c->state = C_UP;
            COUNT(w, connects, 1);
        }
        c->sent_off += (uint64_t)n;
        COUNT(w, bytes_out, (uint64_t)n);
    }
    if (was != c->want_write)
        set_events(w, c);   /* nothing yet when c is not watched (conn_start) */
    return 0;
}

/* Check n bytes that came back against what was sent at the same offset; count each
 * request with a wrong byte once. */
static void
check_bytes(worker *w, conn *c, const char *p, size_t n)
{
    const sf_bench *b = w->b;
    uint64_t off = c->recv_off;
    size_t pos = 0;

    if (memcmp(p, pat_at(b, off + c->seed), n) == 0)
        return;
    while (pos < n) {
        uint64_t req = (off + pos) / b->o.size;
        uint64_t end = (req + 1) * b->o.size - off;
        size_t seg = (end < n ? (size_t)end : n) - pos;

        if (memcmp(p + pos, pat_at(b, off + pos + c->seed), seg) != 0 && c->bad_req != req + 1) {
            c->bad_req = req + 1;
            COUNT(w, mismatches, 1);
        }
        pos += seg;
    }
}

static void
echo_issue(worker *w, conn *c)
{
    uint64_t p = (uint64_t)w->b->o.pipeline;

    while (c->issued - c->done < p && can_issue(w)) {
        c->ts[c->issued % p] = w->now;
        c->issued++;
        w->outstanding++;
    }
}

static void
conn_start(worker *w, conn *c)
{
    sf_bench *b = w->b;
    sf_err err;
    sf_trace t;
    int fd, one = 1;

    if (w->stopping)
        return;
    fd = sf_tcp_connect_start(conn_trace(w, c, &t), &b->o.target, pick_source(w), &err);
    if (fd < 0) {
        count_error(w, fd);
        return;
    }
    if (b->o.mode == SF_BENCH_ECHO)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->state = C_CONNECTING;
    c->start_ns = w->now;
    c->want_write = 1;
    if (b->o.mode == SF_BENCH_ECHO) {
        echo_issue(w, c);
    } else if (b->o.mode == SF_BENCH_CONNECT) {
        c->issued = 1;
        w->outstanding++;
    }
    /* On loopback the handshake is usually over by now: write at once, and watch for
     * writable only if that could not be done (one epoll_ctl per connection). */
    if (b->o.mode != SF_BENCH_STREAM) {
        int rc = conn_flush(w, c);

        if (rc < 0) {
            conn_fail(w, c, rc);
            return;
        }
    }
    if (sf_loop_watch(w->loop, fd, SF_READ | (c->want_write ? SF_WRITE : 0), conn_io, c) < 0) {
        count_error(w, -ENOMEM);
        conn_fail(w, c, 0);
    }
}

/* Requests complete as their last byte comes back. */
static void
echo_read(worker *w, conn *c)
{
    const sf_bench *b = w->b;
    uint64_t p = (uint64_t)b->o.pipeline;

    while (c->recv_off >= (c->done + 1) * b->o.size) {
        record(w, w->now - c->ts[c->done % p]);
        c->done++;
        w->outstanding--;
    }
    echo_issue(w, c);
}

/* connect mode: the echo is complete: close, and the cycle is done. */
static void
cycle_done(worker *w, conn *c)
{
    sf_trace t;

    sf_loop_unwatch(w->loop, c->fd);
    sf_close(conn_trace(w, c, &t), c->fd);
    c->fd = -1;
    c->state = C_DOWN;
    c->issued = c->done = 0;
    c->sent_off = c->recv_off = 0;
    c->bad_req = 0;
    w->outstanding--;
    clock_in(w);
    record(w, w->now - c->start_ns);
    check_quota(w);
    cycle_start(w, c);
}

static void
cycle_start(worker *w, conn *c)
{
    if (!can_issue(w))
        return;
    c->seed = (uint32_t)((w->cycles++ * 7919u + (uint64_t)w->index * 104729u) % PATLEN);
    conn_start(w, c);
}

/* sf_read when tracing; else recv() rather than read(): a socket is all it ever sees,
 * and the shorter path shows at a million requests a second. */
static ssize_t
recv_some(const sf_trace *t, int fd, void *buf, size_t len)
{
    ssize_t n;

    if (t)
        return sf_read(t, fd, buf, len);

    do {
        n = recv(fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? SF_EAGAIN : -errno;
    return n;
}

static int
tcp_readable(worker *w, conn *c)
{
    const sf_bench *b = w->b;
    int mode = b->o.mode;

    for (int round = 0; round < IO_ROUNDS; round++) {
        size_t cap = mode == SF_BENCH_STREAM ? w->rbuflen : WINDOW;
        sf_trace t;
        ssize_t n = recv_some(conn_trace(w, c, &t), c->fd, w->rbuf, cap);

        if (n == SF_EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        if (n == 0) {
            COUNT(w, err.closed, 1);
            return 1;
        }
        if (c->state == C_CONNECTING) {
            c->state = C_UP;
            COUNT(w, connects, 1);
        }
        COUNT(w, bytes_in, (uint64_t)n);
        if (mode == SF_BENCH_STREAM) {
            if (b->o.recv)
                count_chunks(w, c->recv_off, c->recv_off + (uint64_t)n);
            c->recv_off += (uint64_t)n;
            c->start_ns = w->now;
            continue;
        }
        if (c->recv_off + (uint64_t)n > c->sent_off) {
            /* More came back than was sent: the stream is not an echo of ours. */
            COUNT(w, mismatches, 1);
            return 1;
        }
        check_bytes(w, c, w->rbuf, (size_t)n);
        c->recv_off += (uint64_t)n;
        if (mode == SF_BENCH_CONNECT) {
            if (c->recv_off == b->o.size) {
                cycle_done(w, c);
                return 2;
            }
            continue;
        }
        echo_read(w, c);
        if ((size_t)n < cap)
            return 0;
    }
    return 0;
}

/* stream: write whole buffers while the socket takes them. */
static int
stream_write(worker *w, conn *c)
{
    const sf_bench *b = w->b;

    for (int round = 0; round < IO_ROUNDS && !w->stopping; round++) {
        sf_trace t;
        ssize_t n = sf_write(conn_trace(w, c, &t), c->fd, b->sbuf, b->o.size);

        if (n == SF_EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        if (c->state == C_CONNECTING) {
            c->state = C_UP;
            COUNT(w, connects, 1);
        }
        count_chunks(w, c->sent_off, c->sent_off + (uint64_t)n);
        c->sent_off += (uint64_t)n;
        c->start_ns = w->now;
        COUNT(w, bytes_out, (uint64_t)n);
        if ((size_t)n < b->o.size)
            return 0;
    }
    return 0;
}

static void
conn_io(sf_loop *l, int fd, int events, void *ud)
{
    conn *c = ud;
    worker *w = c->w;
    const sf_bench *b = w->b;
    int rc = 0;

    (void)l;
    (void)fd;
    clock_in(w);
    if (events & SF_READ) {
        rc = tcp_readable(w, c);
        if (rc == 2)
            return;         /* connect: the cycle ended, c is a new one */
        if (rc == 1) {
            conn_fail(w, c, 0);
            return;
        }
    }
    if (rc == 0 && (events & SF_WRITE)) {
        if (b->o.mode == SF_BENCH_STREAM)
            rc = b->o.recv ? 0 : stream_write(w, c);
        else
            rc = conn_flush(w, c);
    } else if (rc == 0 && b->o.mode == SF_BENCH_ECHO && c->sent_off < c->issued * b->o.size) {
        rc = conn_flush(w, c);
    }
    if (rc < 0) {
        conn_fail(w, c, rc);
        return;
    }
    if (b->o.mode == SF_BENCH_STREAM && b->o.recv && c->state == C_CONNECTING &&
        (events & SF_WRITE)) {
        c->state = C_UP;
        COUNT(w, connects, 1);
        c->want_write = 0;
        set_events(w, c);
    }
    check_quota(w);
}

/* ---- UDP ---- */

static void udp_io(sf_loop *l, int fd, int events, void *ud);

static uint64_t
udp_off(const uslot *s)
{
    return (uint64_t)s->hdr[1] * 13u + (uint64_t)s->hdr[0] * 7u;
}

static void
udp_issue(worker *w, int i)
{
    uslot *s = &w->slots[i];

    if (!can_issue(w) || w->ufd < 0)
        return;
    s->hdr[0] = (uint32_t)i;
    s->hdr[1] = ++w->next_seq;
    s->busy = 1;
    s->queued = 1;
    s->sent_ns = w->now;
    w->outstanding++;
    w->pending[w->npending++] = i;
}

static void
udp_flush(worker *w)
{
    const sf_bench *b = w->b;
    struct mmsghdr m[UDP_BATCH];
    sf_trace t;
    struct iovec iov[UDP_BATCH][2];
    int done = 0;

    while (done < w->npending) {
        int k = w->npending - done < UDP_BATCH ? w->npending - done : UDP_BATCH, n;

        for (int j = 0; j < k; j++) {
            uslot *s = &w->slots[w->pending[done + j]];

            iov[j][0].iov_base = s->hdr;
            iov[j][0].iov_len = sizeof(s->hdr);
            iov[j][1].iov_base = (void *)pat_at(b, udp_off(s));
            iov[j][1].iov_len = b->o.size - sizeof(s->hdr);
            memset(&m[j], 0, sizeof(m[j]));
            m[j].msg_hdr.msg_iov = iov[j];
            m[j].msg_hdr.msg_iovlen = 2;
        }
        n = sf_sendmmsg(conn_trace(w, NULL, &t), w->ufd, m, (unsigned)k);
        if (n == SF_EAGAIN || n == -ENOBUFS)
            break;  /* the rest go when the socket is writable */
        if (n < 0) {
            /* This datagram is lost (ECONNREFUSED from an earlier ICMP error, ...): its
             * slot times out and goes again. */
            count_error(w, n);
            w->slots[w->pending[done]].queued = 0;
            done++;
            continue;
        }
        COUNT(w, sent, (uint64_t)n);
        COUNT(w, bytes_out, (uint64_t)n * b->o.size);
        for (int j = 0; j < n; j++)
            w->slots[w->pending[done + j]].queued = 0;
        done += n;
    }
    memmove(w->pending, w->pending + done, (size_t)(w->npending - done) * sizeof(int));
    w->npending -= done;
    sf_loop_set_events(w->loop, w->ufd, w->npending ? SF_READ | SF_WRITE : SF_READ);
}

static void
udp_reply(worker *w, const char *p, size_t len)
{
    const sf_bench *b = w->b;
    uint32_t hdr[2];
    uslot *s;

    if (len < sizeof(hdr)) {
        COUNT(w, mismatches, 1);
        return;
    }
    memcpy(hdr, p, sizeof(hdr));
    if (hdr[0] >= (uint32_t)w->nslots || !w->slots[hdr[0]].busy ||
        w->slots[hdr[0]].hdr[1] != hdr[1]) {
        COUNT(w, late, 1);
        return;
    }
    s = &w->slots[hdr[0]];
    if (len != b->o.size ||
        memcmp(p + sizeof(hdr), pat_at(b, udp_off(s)), len - sizeof(hdr)) != 0)
        COUNT(w, mismatches, 1);
    COUNT(w, bytes_in, len);
    s->busy = 0;
    w->outstanding--;
    record(w, w->now - s->sent_ns);
    udp_issue(w, (int)hdr[0]);
}

static void
udp_read(worker *w)
{
    struct mmsghdr m[UDP_BATCH];
    sf_trace t;
    struct iovec iov[UDP_BATCH];
    size_t slotlen = w->b->o.size + 1;     /* one more: a longer reply shows */
    int k = w->udp_batch;

    for (int round = 0; round < IO_ROUNDS; round++) {
        int n;

        for (int j = 0; j < k; j++) {
            iov[j].iov_base = w->rbuf + (size_t)j * slotlen;
            iov[j].iov_len = slotlen;
            memset(&m[j], 0, sizeof(m[j]));
            m[j].msg_hdr.msg_iov = &iov[j];
            m[j].msg_hdr.msg_iovlen = 1;
        }
        n = sf_recvmmsg(conn_trace(w, NULL, &t), w->ufd, m, (unsigned)k);
        if (n < 0) {
            if (n != SF_EAGAIN)
                count_error(w, n);
            return;
        }
        for (int j = 0; j < n; j++)
            udp_reply(w, iov[j].iov_base, m[j].msg_len);
        if (n < k)
            return;
    }
}

static void
udp_io(sf_loop *l, int fd, int events, void *ud)
{
    worker *w = ud;

    (void)l;
    (void)fd;
    clock_in(w);
    if (events & SF_READ)
        udp_read(w);
    if (w->npending)
        udp_flush(w);
    check_quota(w);
}

static void
udp_start(worker *w)
{
    sf_bench *b = w->b;
    sf_err err;
    int fd;

    sf_trace t;

    fd = sf_udp_connect(conn_trace(w, NULL, &t), &b->o.target, pick_source(w), 1, &err);
    if (fd < 0) {
        count_error(w, fd);
        return;
    }
    if (sf_loop_watch(w->loop, fd, SF_READ, udp_io, w) < 0) {
        close(fd);
        count_error(w, -ENOMEM);
        return;
    }
    w->ufd = fd;
    for (int i = 0; i < w->nslots; i++)
        udp_issue(w, i);
    udp_flush(w);
}

/* ---- timers ---- */

static void
sweep_tcp(worker *w)
{
    const sf_bench *b = w->b;
    uint64_t limit = (uint64_t)b->o.timeout_ms * 1000000u;

    for (int i = 0; i < w->nconns; i++) {
        conn *c = &w->conns[i];
        uint64_t since;

        if (c->state == C_DOWN) {
            if (b->o.mode == SF_BENCH_CONNECT)
                cycle_start(w, c);
            else
                conn_start(w, c);
            continue;
        }
        if (b->o.mode == SF_BENCH_ECHO)
            since = c->issued > c->done ? c->ts[c->done % (uint64_t)b->o.pipeline] : w->now;
        else
            since = c->start_ns;
        if (w->now - since > limit) {
            COUNT(w, err.timeout, 1);
            conn_fail(w, c, 0);
        }
    }
}

static void
sweep_udp(worker *w)
{
    uint64_t limit = (uint64_t)w->b->o.timeout_ms * 1000000u;

    if (w->ufd < 0) {
        udp_start(w);
        return;
    }
    for (int i = 0; i < w->nslots; i++) {
        uslot *s = &w->slots[i];

        if (s->busy && !s->queued && w->now - s->sent_ns > limit) {
            COUNT(w, lost, 1);
            s->busy = 0;
            w->outstanding--;
            udp_issue(w, i);
        }
    }
    if (w->npending)
        udp_flush(w);
    check_quota(w);
}

static uint32_t
sweep_ms(const sf_bench *b)
{
    uint32_t ms = b->o.timeout_ms / 4;

    return ms < 1 ? 1 : ms > SWEEP_MS ? SWEEP_MS : ms;
}

static void
on_sweep(sf_loop *l, void *ud)
{
    worker *w = ud;

    clock_in(w);
    if (w->stopping)
        return;
    if (w->b->o.mode == SF_BENCH_UDP)
        sweep_udp(w);
    else
        sweep_tcp(w);
    sf_loop_timer(l, sweep_ms(w->b), on_sweep, w);
}

/* Interval boundaries, in ms from the start: one falls on the end of the warm-up. */
static uint64_t
boundary_ms(const sf_bench *b, int k)
{
    uint64_t iv = b->o.interval_ms, first = b->o.warmup_ms % iv;

    if (first == 0)
        first = iv;
    return first + (uint64_t)(k - 1) * iv;
}

/* The next boundary after the current one, or UINT64_MAX. Without interval reports the
 * only boundary is the end of the warm-up. */
static uint64_t
boundary_ns(const sf_bench *b, int k)
{
    uint64_t ms;

    if (b->o.interval_ms)
        ms = boundary_ms(b, k);
    else
        ms = k == 1 && b->o.warmup_ms ? b->o.warmup_ms : UINT64_MAX / 2000000u;
    if (b->start_ns + ms * 1000000u >= b->end_ns)
        return UINT64_MAX;
    return b->start_ns + ms * 1000000u;
}

/* Close the current interval at end_ns: into the total if it lies after the warm-up,
 * and to the reporting thread. */
static void
close_interval(worker *w, uint64_t end_ns, int done)
{
    sf_bench *b = w->b;

    if (w->cur_start_ns >= b->warm_end_ns)
        sf_bench_stats_merge(&w->total, &w->cur);
    pthread_mutex_lock(&b->mu);
    sf_bench_stats_merge(&w->posted, &w->cur);
    if (!done)
        w->posted_idx = w->next_tick;
    else
        w->done = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    sf_bench_stats_init(&w->cur);
    w->cur_start_ns = end_ns;
}

static void
roll(worker *w)
{
    while (w->now >= w->roll_ns) {
        close_interval(w, w->roll_ns, 0);
        w->next_tick++;
        w->roll_ns = boundary_ns(w->b, w->next_tick);
    }
}

/* A worker with nothing to do still closes its intervals on time. */
static void
on_tick(sf_loop *l, void *ud)
{
    worker *w = ud;
    uint64_t now;

    clock_in(w);
    if (w->roll_ns == UINT64_MAX)
        return;
    now = sf_now_ns();
    sf_loop_timer(l, w->roll_ns > now ? (w->roll_ns - now + 999999u) / 1000000u : 0,
                  on_tick, w);
}

static void
on_deadline(sf_loop *l, void *ud)
{
    worker *w = ud;

    w->stopping = 1;
    sf_loop_stop(l);
}

/* ---- threads ---- */

static void *
worker_main(void *arg)
{
    worker *w = arg;
    sf_bench *b = w->b;
    uint64_t now = sf_now_ns();

    w->now = now;
    w->cur_start_ns = b->start_ns;
    w->next_tick = 1;
    w->roll_ns = boundary_ns(b, 1);
    sf_loop_timer(w->loop, b->end_ns > now ? (b->end_ns - now) / 1000000u : 0, on_deadline, w);
    sf_loop_timer(w->loop, sweep_ms(b), on_sweep, w);
    on_tick(w->loop, w);
    if (!atomic_load(&b->stop)) {
        if (b->o.mode == SF_BENCH_UDP) {
            udp_start(w);
        } else {
            for (int i = 0; i < w->nconns; i++) {
                if (b->o.mode == SF_BENCH_CONNECT)
                    cycle_start(w, &w->conns[i]);
                else
                    conn_start(w, &w->conns[i]);
            }
        }
        check_quota(w);
        sf_loop_run(w->loop);
    }
    w->stopping = 1;
    w->finish_ns = sf_now_ns();
    for (int i = 0; i < w->nconns; i++)
        conn_close(w, &w->conns[i]);
    if (w->ufd >= 0) {
        sf_loop_unwatch(w->loop, w->ufd);
        close(w->ufd);
        w->ufd = -1;
    }
    w->now = w->finish_ns;
    roll(w);
    close_interval(w, w->finish_ns, 1);
    return NULL;
}

static int
cpu_count(void)
{
    cpu_set_t set;
    long n;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void
fill_pattern(char *p, size_t len)
{
    uint64_t x = 0x9e3779b97f4a7c15u;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (char)(x >> 24);
    }
}

static int
worker_init(sf_bench *b, worker *w, int index, int share, sf_err *err)
{
    const sf_bench_opts *o = &b->o;

    w->b = b;
    w->index = index;
    w->ufd = -1;
    w->loop = sf_loop_new(err);
    if (w->loop == NULL)
        return err->code;
    sf_bench_stats_init(&w->cur);
    sf_bench_stats_init(&w->total);
    sf_bench_stats_init(&w->posted);
    if (o->mode == SF_BENCH_UDP) {
        size_t slotlen = o->size + 1;

        w->nslots = share;
        w->udp_batch = (int)(1024 * 1024 / slotlen);
        if (w->udp_batch > UDP_BATCH)
            w->udp_batch = UDP_BATCH;
        if (w->udp_batch < 1)
            w->udp_batch = 1;
        w->slots = calloc((size_t)share, sizeof(*w->slots));
        w->pending = calloc((size_t)share, sizeof(int));
        w->rbuflen = (size_t)w->udp_batch * slotlen;
    } else {
        w->nconns = share;
        w->conns = calloc((size_t)share, sizeof(*w->conns));
        if (o->mode == SF_BENCH_ECHO)
            w->tsbuf = calloc((size_t)share * (size_t)o->pipeline, sizeof(uint64_t));
        w->rbuflen = o->mode == SF_BENCH_STREAM && o->size > WINDOW ? o->size : WINDOW;
        if (w->rbuflen > 4u << 20)
            w->rbuflen = 4u << 20;
    }
    w->rbuf = malloc(w->rbuflen);
    if (w->rbuf == NULL || (o->mode == SF_BENCH_UDP ? !w->slots || !w->pending : !w->conns) ||
        (o->mode == SF_BENCH_ECHO && w->tsbuf == NULL))
        return sf_err_set(err, -ENOMEM, "bench: memory for %d connections", share);
    for (int i = 0; i < w->nconns; i++) {
        conn *c = &w->conns[i];
        uint64_t global = (uint64_t)i * (uint64_t)b->nw + (uint64_t)index;

        c->w = w;
        c->fd = -1;
        c->seed = (uint32_t)(global * 7919u % PATLEN);
        if (w->tsbuf)
            c->ts = w->tsbuf + (size_t)i * (size_t)o->pipeline;
    }
    return 0;
}

sf_bench *
sf_bench_new(const sf_bench_opts *opts, sf_err *err)
{
    sf_bench *b;
    sf_bench_opts *o;
    int threads;

    if (opts->mode < SF_BENCH_ECHO || opts->mode > SF_BENCH_UDP) {
        sf_err_set(err, SF_EUSAGE, "bench: unknown mode");
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        sf_err_set(err, -ENOMEM, "bench");
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->o = *opts;
    o = &b->o;
    if (o->conns <= 0)
        o->conns = 1;
    if (o->size == 0)
        o->size = 64;
    if (o->pipeline <= 0)
        o->pipeline = 1;
    if (o->timeout_ms == 0)
        o->timeout_ms = o->mode == SF_BENCH_UDP ? 200 : 2000;
    if (o->mode == SF_BENCH_UDP && (o->size < 8 || o->size > 65507)) {
        sf_err_set(err, SF_EUSAGE, "bench: a UDP datagram is 8 to 65507 bytes here "
                   "(it carries an 8-byte slot and sequence number)");
        goto fail;
    }
    if (o->size > (64u << 20)) {
        sf_err_set(err, SF_EUSAGE, "bench: at most 64 MiB per request");
        goto fail;
    }
    if (o->nsrc > 0) {
        b->src = malloc((size_t)o->nsrc * sizeof(*b->src));
        if (b->src == NULL) {
            sf_err_set(err, -ENOMEM, "bench");
            goto fail;
        }
        memcpy(b->src, opts->src, (size_t)o->nsrc * sizeof(*b->src));
        for (int i = 0; i < o->nsrc; i++)
            sf_addr_set_port(&b->src[i], 0);
        o->src = b->src;
    }
    threads = o->threads > 0 ? o->threads : cpu_count();
    if (threads > o->conns)
        threads = o->conns;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    b->pat = malloc(PATLEN + WINDOW);
    b->w = calloc((size_t)threads, sizeof(*b->w));
    if (o->mode == SF_BENCH_STREAM)
        b->sbuf = malloc(o->size);
    if (b->pat == NULL || b->w == NULL || (o->mode == SF_BENCH_STREAM && b->sbuf == NULL)) {
        sf_err_set(err, -ENOMEM, "bench");
        goto fail;
    }
    fill_pattern(b->pat, PATLEN);
    for (size_t i = PATLEN; i < PATLEN + WINDOW; i++)
        b->pat[i] = b->pat[i - PATLEN];     /* the window wraps: WINDOW > PATLEN */
    if (b->sbuf) {
        for (size_t off = 0; off < o->size; off += WINDOW)
            memcpy(b->sbuf + off, b->pat, o->size - off < WINDOW ? o->size - off : WINDOW);
    }
    b->nw = threads;
    for (int i = 0; i < threads; i++) {
        int share = o->conns / threads + (i < o->conns % threads);

        if (worker_init(b, &b->w[i], i, share, err) < 0)
            goto fail;
        if (o->requests)
            b->w[i].quota = o->requests / (uint64_t)threads +
                            ((uint64_t)i < o->requests % (uint64_t)threads);
    }
    return b;
fail:
    sf_bench_free(b);
    return NULL;
}

void
sf_bench_free(sf_bench *b)
{
    if (b == NULL)
        return;
    for (int i = 0; b->w && i < b->nw; i++) {
        worker *w = &b->w[i];

        sf_loop_free(w->loop);
        free(w->conns);
        free(w->tsbuf);
        free(w->rbuf);
        free(w->slots);
        free(w->pending);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->w);
    free(b->pat);
    free(b->sbuf);
    free(b->src);
    free(b);
}

void
sf_bench_stop(sf_bench *b)
{
    atomic_store(&b->stop, 1);
    for (int i = 0; i < b->nw; i++)
        if (b->w[i].loop)
            sf_loop_stop(b->w[i].loop);
}

static void
abs_time(struct timespec *ts, uint64_t mono_ns)
{
    ts->tv_sec = (time_t)(mono_ns / 1000000000u);
    ts->tv_nsec = (long)(mono_ns % 1000000000u);
}

/* Hand the posted counters of every worker to on_interval as interval k. Called with
 * b->mu held; drops it around the callback. */
static void
report_interval(sf_bench *b, int k, uint64_t from_ms, uint64_t to_ms, sf_bench_stats *st)
{
    sf_bench_interval iv;

    sf_bench_stats_init(st);
    for (int i = 0; i < b->nw; i++) {
        sf_bench_stats_merge(st, &b->w[i].posted);
        sf_bench_stats_init(&b->w[i].posted);
    }
    iv.index = k;
    iv.t_s = (double)to_ms / 1000.0;
    iv.len_s = (double)(to_ms - from_ms) / 1000.0;
    iv.warmup = to_ms <= b->o.warmup_ms;
    iv.st = st;
    pthread_mutex_unlock(&b->mu);
    b->o.on_interval(b->o.ud, &iv);
    pthread_mutex_lock(&b->mu);
}

static int
all_done(const sf_bench *b)
{
    for (int i = 0; i < b->nw; i++)
        if (!b->w[i].done)
            return 0;
    return 1;
}

static int
all_posted(const sf_bench *b, int k)
{
    for (int i = 0; i < b->nw; i++)
        if (!b->w[i].done && b->w[i].posted_idx < k)
            return 0;
    return 1;
}

/* The calling thread waits, reports intervals as the workers hand them over, and stops
 * everything if a worker outlives the deadline by far (it cannot, but no wait here is
 * left unbounded). */
static void
watch_run(sf_bench *b)
{
    int intervals = b->o.interval_ms && b->o.on_interval;
    uint64_t total_ms = b->o.warmup_ms + b->o.duration_ms, last_ms = 0;
    sf_bench_stats *st = malloc(sizeof(*st));
    int k = 1;

    if (st == NULL)
        intervals = 0;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        uint64_t now = sf_now_ns(), wake = now + 100000000u;
        struct timespec ts;

        if (all_done(b))
            break;
        if (intervals && boundary_ms(b, k) < total_ms) {
            uint64_t bound_ms = boundary_ms(b, k);
            /* A worker late to hand over waits for the next interval, not us. */
            uint64_t latest = b->start_ns + bound_ms * 1000000u + 250000000u;

            if (all_posted(b, k) || now >= latest) {
                report_interval(b, k, last_ms, bound_ms, st);
                last_ms = bound_ms;
                k++;
                continue;
            }
            if (latest < wake)
                wake = latest;
        }
        if (now > b->end_ns + 5000000000u)
            sf_bench_stop(b);
        abs_time(&ts, wake);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    if (intervals) {
        uint64_t end_ms = (sf_now_ns() - b->start_ns) / 1000000u;

        if (end_ms > total_ms)
            end_ms = total_ms;
        if (end_ms > last_ms)
            report_interval(b, k, last_ms, end_ms, st);
    }
    pthread_mutex_unlock(&b->mu);
    free(st);
}

int
sf_bench_run(sf_bench *b, sf_bench_result *r, sf_err *err)
{
    pthread_condattr_t ca;
    uint64_t finish = 0;
    int rc = 0;

    memset(r, 0, offsetof(sf_bench_result, st));
    sf_bench_stats_init(&r->st);
    /* Waits on the condition variable are measured on the monotonic clock. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&b->cv);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);

    b->start_ns = sf_now_ns();
    b->warm_end_ns = b->start_ns + b->o.warmup_ms * 1000000u;
    b->end_ns = b->warm_end_ns + b->o.duration_ms * 1000000u;
    for (int i = 0; i < b->nw; i++) {
        rc = -pthread_create(&b->w[i].thread, NULL, worker_main, &b->w[i]);
        if (rc < 0) {
            sf_err_set(err, rc, "bench: thread");
            sf_bench_stop(b);
            pthread_mutex_lock(&b->mu);
            for (int j = i; j < b->nw; j++)
                b->w[j].done = 1;
            pthread_mutex_unlock(&b->mu);
            break;
        }
        b->w[i].started = 1;
    }
    watch_run(b);
    for (int i = 0; i < b->nw; i++) {
        worker *w = &b->w[i];

        if (!w->started)
            continue;
        pthread_join(w->thread, NULL);
        sf_bench_stats_merge(&r->st, &w->total);
        if (w->finish_ns > finish)
            finish = w->finish_ns;
        if (w->quota && w->measured >= w->quota)
            r->reached++;
    }
    r->reached = b->o.requests && r->reached == b->nw;
    r->threads = b->nw;
    r->interrupted = atomic_load(&b->stop);
    r->warmup_s = (double)b->o.warmup_ms / 1000.0;
    if (finish > b->end_ns)
        finish = b->end_ns;
    r->elapsed_s = finish > b->warm_end_ns ? (double)(finish - b->warm_end_ns) / 1e9 : 0.0;
    return rc;
}
