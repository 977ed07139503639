/* bench_tcp: the TCP connections of the echo, connect and stream modes — open, watch,
 * read, write, time out, close — with each mode's own part behind sf__bench_tcp_ops. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bench_int.h"
#include "sock_int.h"

#define RBUF_MAX (4u << 20)

static sf__bench_tcp *
tcp_of(const sf__bench_worker *w)
{
    return w->m;
}

void
sf__bench_conn_up(sf__bench_worker *w, sf__bench_conn *c)
{
    if (c->state == SF__C_CONNECTING) {
        c->state = SF__C_UP;
        w->cur.connects++;
    }
}

void
sf__bench_conn_close(sf__bench_worker *w, sf__bench_conn *c)
{
    if (c->fd >= 0) {
        sf_trace t;

        sf_loop_unwatch(w->loop, c->fd);
        sf_close(sf__bench_conn_trace(w, c, &t), c->fd);
    }
    c->fd = -1;
    c->state = SF__C_DOWN;
    c->want_write = 0;
    w->outstanding -= c->issued - c->done;
    c->issued = c->done = 0;
    c->ts_in = c->ts_out = 0;
    c->sent_off = c->recv_off = 0;
    c->bad_req = 0;
}

/* A connection failed (code < 0) or timed out (code 0, counted by the caller): it is
 * closed and opened again at the next sweep. */
static void
conn_fail(sf__bench_worker *w, sf__bench_conn *c, int code)
{
    if (code < 0)
        sf__bench_count_error(w, code);
    sf__bench_conn_close(w, c);
    sf__bench_check_quota(w);
}

void
sf__bench_conn_events(sf__bench_worker *w, sf__bench_conn *c)
{
    int ev = SF_READ;

    if (c->want_write || tcp_of(w)->ops->always_write)
        ev |= SF_WRITE;
    sf_loop_set_events(w->loop, c->fd, ev);
}

/* sf_write when tracing; else send() itself, as recv_some below. */
static ssize_t
send_some(const sf_trace *t, int fd, const void *buf, size_t len)
{
    ssize_t n;

    if (t)
        return sf_write(t, fd, buf, len);
    do {
        n = send(fd, buf, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return sf__io_result(n);
}

int
sf__bench_conn_flush(sf__bench_worker *w, sf__bench_conn *c)
{
    const sf_bench *b = w->b;
    uint64_t want = c->issued * b->o.size;
    int was = c->want_write;

    c->want_write = 0;
    while (c->sent_off < want) {
        uint64_t left = want - c->sent_off;
        size_t len = left < SF__BENCH_WINDOW ? (size_t)left : SF__BENCH_WINDOW;
        sf_trace t;
        ssize_t n = send_some(sf__bench_conn_trace(w, c, &t), c->fd,
                              sf__bench_pat_at(b, c->sent_off + c->seed), len);

        if (n == SF_EAGAIN) {
            c->want_write = 1;
            break;
        }
        if (n < 0)
            return (int)n;
        sf__bench_conn_up(w, c);
        c->sent_off += (uint64_t)n;
        w->cur.bytes_out += (uint64_t)n;
    }
    if (was != c->want_write)
        sf__bench_conn_events(w, c);   /* nothing yet when c is not watched (conn_start) */
    return 0;
}

void
sf__bench_check_bytes(sf__bench_worker *w, sf__bench_conn *c, const char *p, size_t n)
{
    const sf_bench *b = w->b;
    uint64_t off = c->recv_off;
    size_t pos = 0;

    if (memcmp(p, sf__bench_pat_at(b, off + c->seed), n) == 0)
        return;
    while (pos < n) {
        uint64_t req = (off + pos) / b->o.size;
        uint64_t end = (req + 1) * b->o.size - off;
        size_t seg = (end < n ? (size_t)end : n) - pos;

        if (memcmp(p + pos, sf__bench_pat_at(b, off + pos + c->seed), seg) != 0 &&
            c->bad_req != req + 1) {
            c->bad_req = req + 1;
            w->cur.mismatches++;
        }
        pos += seg;
    }
}

static void conn_io(sf_loop *l, int fd, int events, void *ud);

void
sf__bench_conn_start(sf__bench_worker *w, sf__bench_conn *c)
{
    const sf__bench_tcp_ops *ops = tcp_of(w)->ops;
    sf_err err;
    sf_trace t;
    int fd, one = 1;

    if (w->stopping)
        return;
    fd = sf_tcp_connect_start(sf__bench_conn_trace(w, c, &t), &w->b->o.target,
                              sf__bench_pick_source(w), &err);
    if (fd < 0) {
        sf__bench_count_error(w, fd);
        /* Out of descriptors: opening the other slots now would fail alike, thousands of
         * times a second; wait for the next sweep. */
        if (fd == -EMFILE || fd == -ENFILE)
            tcp_of(w)->starved = 1;
        return;
    }
    if (ops->nodelay)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->state = SF__C_CONNECTING;
    c->start_ns = w->now;
    c->want_write = 1;
    if (ops->opened)
        ops->opened(w, c);
    /* On loopback the handshake is usually over by now: write at once, and watch for
     * writable only if that could not be done (one epoll_ctl per connection). */
    if (ops->write_first) {
        int rc = ops->writable(w, c);

        if (rc < 0) {
            conn_fail(w, c, rc);
            return;
        }
    }
    if (sf_loop_watch(w->loop, fd, SF_READ | (c->want_write ? SF_WRITE : 0), conn_io, c) < 0) {
        sf__bench_count_error(w, -ENOMEM);
        conn_fail(w, c, 0);
    }
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
    return sf__io_result(n);
}

/* Read while there is something, bounded per wake-up. 0, 1 (close c), 2 (c was
 * replaced) or a negative errno. */
static int
tcp_readable(sf__bench_worker *w, sf__bench_conn *c)
{
    sf__bench_tcp *tc = tcp_of(w);

    for (int round = 0; round < SF__BENCH_ROUNDS; round++) {
        sf_trace t;
        ssize_t n = recv_some(sf__bench_conn_trace(w, c, &t), c->fd, tc->rbuf, tc->rbuflen);
        int rc;

        if (n == SF_EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        if (n == 0) {
            w->cur.err.closed++;
            return 1;
        }
        sf__bench_conn_up(w, c);
        w->cur.bytes_in += (uint64_t)n;
        rc = tc->ops->got(w, c, tc->rbuf, (size_t)n);
        if (rc == 3)
            return 0;
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void
conn_io(sf_loop *l, int fd, int events, void *ud)
{
    sf__bench_conn *c = ud;
    sf__bench_worker *w = c->w;
    const sf__bench_tcp_ops *ops = tcp_of(w)->ops;
    int rc = 0;

    (void)l;
    (void)fd;
    sf__bench_clock_in(w);
    if (events & SF_READ) {
        rc = tcp_readable(w, c);
        if (rc == 2)
            return;         /* the cycle ended, c is a new one */
        if (rc == 1) {
            conn_fail(w, c, 0);
            return;
        }
    }
    if (rc == 0 && ((events & SF_WRITE) || c->sent_off < c->issued * w->b->o.size))
        rc = ops->writable(w, c);
    if (rc < 0) {
        conn_fail(w, c, rc);
        return;
    }
    sf__bench_check_quota(w);
}

int
sf__bench_tcp_init(sf__bench_worker *w, const sf__bench_tcp_ops *ops, int pipeline,
                   sf_err *err)
{
    const sf_bench *b = w->b;
    sf__bench_tcp *tc = calloc(1, sizeof(*tc));

    if (tc == NULL)
        return sf_err_set(err, -ENOMEM, "bench: memory for %d connections", w->share);
    w->m = tc;
    tc->ops = ops;
    tc->nconns = w->share;
    tc->conns = calloc((size_t)w->share, sizeof(*tc->conns));
    if (pipeline)
        tc->tsbuf = calloc((size_t)w->share * (size_t)b->o.pipeline, sizeof(uint64_t));
    tc->rbuflen = ops->rbuflen ? ops->rbuflen(&b->o) : SF__BENCH_WINDOW;
    if (tc->rbuflen > RBUF_MAX)
        tc->rbuflen = RBUF_MAX;
    tc->rbuf = malloc(tc->rbuflen);
    if (tc->conns == NULL || tc->rbuf == NULL || (pipeline && tc->tsbuf == NULL))
        return sf_err_set(err, -ENOMEM, "bench: memory for %d connections", w->share);
    for (int i = 0; i < tc->nconns; i++) {
        sf__bench_conn *c = &tc->conns[i];
        uint64_t global = (uint64_t)i * (uint64_t)b->nw + (uint64_t)w->index;

        c->w = w;
        c->fd = -1;
        c->seed = (uint32_t)(global * 7919u % SF__BENCH_PATLEN);
        if (tc->tsbuf)
            c->ts = tc->tsbuf + (size_t)i * (size_t)b->o.pipeline;
    }
    return 0;
}

void
sf__bench_tcp_free(sf__bench_worker *w)
{
    sf__bench_tcp *tc = tcp_of(w);

    if (tc == NULL)
        return;
    free(tc->conns);
    free(tc->tsbuf);
    free(tc->rbuf);
    free(tc);
    w->m = NULL;
}

void
sf__bench_tcp_start(sf__bench_worker *w)
{
    sf__bench_tcp *tc = tcp_of(w);

    for (int i = 0; i < tc->nconns && !tc->starved; i++)
        tc->ops->open(w, &tc->conns[i]);
}

/* Reopen what is down; time out what waited too long. */
void
sf__bench_tcp_sweep(sf__bench_worker *w)
{
    sf__bench_tcp *tc = tcp_of(w);
    uint64_t limit = (uint64_t)w->b->o.timeout_ms * 1000000u;

    tc->starved = 0;
    for (int i = 0; i < tc->nconns; i++) {
        sf__bench_conn *c = &tc->conns[i];

        if (c->state == SF__C_DOWN) {
            if (!tc->starved)
                tc->ops->open(w, c);
            continue;
        }
        if (w->now - (tc->ops->since ? tc->ops->since(w, c) : c->start_ns) > limit) {
            w->cur.err.timeout++;
            conn_fail(w, c, 0);
        }
    }
}

void
sf__bench_tcp_finish(sf__bench_worker *w)
{
    sf__bench_tcp *tc = tcp_of(w);

    for (int i = 0; i < tc->nconns; i++)
        sf__bench_conn_close(w, &tc->conns[i]);
}
