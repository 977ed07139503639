/* server_tcp: the TCP engine's connections. A table indexed by fd (the loop's own), one
 * scratch read buffer per loop, an output queue only while a write is incomplete;
 * admitting a new connection. Accepting: server_accept.c; timeouts: server_sweep.c;
 * the io_uring path: server_ring.c. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/sock.h"
#include "server_int.h"

#define SCRATCH_SIZE (64 * 1024)

static void conn_io(sf_loop *l, int fd, int events, void *ud);

/* ---- connections ---- */

sf_conn *
sf__conn_at(worker *w, int fd)
{
    return sf_loop_watched(w->loop, fd, conn_io);
}

static void
free_conn(worker *w, sf_conn *c)
{
    sf_trace t, *tp = sf__server_trace(w->s, &t, c->id);
    int left, kept = 0;

    if (c->ls->svc->on_close)
        c->ls->svc->on_close(c);
    sf_access_release_fd(w->s->o.access, c->fd);
    /* An accepted socket's close takes it out of epoll; a passed-in one may have other
     * descriptors open (and a held one is a running program's), which would keep it in. */
    if (c->flags & SF__C_RING) {
        kept = sf__ring_release(c);
    } else {
        if ((c->flags & (SF__C_SOLE | SF__C_HELD)) == SF__C_SOLE)
            sf_loop_forget(w->loop, c->fd);
        else
            sf_loop_unwatch(w->loop, c->fd);
        sf_close(tp, c->fd);
    }
    w->nconns--;
    w->st.closed++;
    left = atomic_fetch_sub(&w->s->total_conns, 1) - 1;
    if (!kept) {
        if (c->out) {
            sf_buf_free(c->out);
            free(c->out);
        }
        free(c);
    }
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

    if (c->flags & SF__C_CLOSED)
        return;
    if (reason)
        sf_conn_log(c, "closed: %s", reason);
    c->flags |= SF__C_CLOSED;
    if (w->depth > 0) {
        /* A callback up the stack may still hold c (chat walks its members while
         * sending): free it only once every callback has returned. Those return before
         * the loop waits again, so its events need not change meanwhile. */
        c->u.next_dead = w->dead;
        w->dead = c;
        return;
    }
    free_conn(w, c);
}

void
sf__worker_enter(worker *w)
{
    w->depth++;
}

void
sf__worker_leave(worker *w)
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

        w->dead = c->u.next_dead;
        free_conn(w, c);
    }
    w->depth--;
}

/* Which events to watch follows from the state: never read while output is queued. */
int
sf__conn_events(const sf_conn *c)
{
    int ev;

    if (c->flags & SF__C_HELD)
        return 0;
    if (c->out && sf_buf_len(c->out) > 0)
        ev = SF_WRITE;
    else if (c->flags & SF__C_DRAIN)
        ev = SF_READ | SF_WRITE;
    else
        ev = SF_READ;
    if ((c->flags & SF__C_PEER_EOF) && ev != SF_WRITE)
        ev &= ~SF_READ;
    return ev;
}

static void
update_events(sf_conn *c)
{
    if (c->flags & (SF__C_CLOSED | SF__C_HELD))
        return;
    if (c->flags & SF__C_RING)
        sf__ring_arm(c);
    else
        sf_loop_set_events(c->ls->w->loop, c->fd, sf__conn_events(c));
}

int
sf_conn_send(sf_conn *c, const void *p, size_t len)
{
    worker *w = c->ls->w;
    size_t done = 0;

    if (c->flags & (SF__C_CLOSED | SF__C_SHUT))
        return -EPIPE;
    if ((c->flags & SF__C_RING) && sf__ring_send_direct(c, p, len))
        return 0;
    if ((c->out && sf_buf_len(c->out) > 0) || (c->flags & SF__C_RING)) {
        /* On the ring everything goes through the queue: the send is the kernel's. */
        if (len > (c->out ? sf_buf_room(c->out) : w->s->o.queue_cap)) {
            w->st.queue_cap_hits++;
            return -ENOBUFS;
        }
    } else {
        sf_trace t, *tp = sf__server_trace(w->s, &t, c->id);
        ssize_t n = sf_write(tp, c->fd, p, len);

        if (n < 0 && n != SF_EAGAIN) {
            /* The client going away is the normal end of a stream (chargen): no log. */
            sf_conn_close(c, n == -ECONNRESET || n == -EPIPE ? NULL : sf_strerror((int)n));
            return (int)n;
        }
        if (n > 0) {
            done = (size_t)n;
            w->st.bytes_out += (uint64_t)n;
            c->last_ms = (uint32_t)sf_loop_now_ms(w->loop);
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
    sf_trace t, *tp = sf__server_trace(c->ls->w->s, &t, c->id);

    if (c->flags & SF__C_SHUT)
        return;
    c->flags |= SF__C_SHUT;
    sf_shutdown_write(tp, c->fd);
}

/* Finishing and nothing left to send: FIN now, close once the client has closed too. */
static void
finish_step(sf_conn *c)
{
    if (!(c->flags & SF__C_FINISHING) || (c->out && sf_buf_len(c->out) > 0))
        return;
    if (c->flags & SF__C_PEER_EOF) {
        sf_conn_close(c, NULL);
        return;
    }
    send_fin(c);
    update_events(c);
}

void
sf_conn_finish(sf_conn *c)
{
    if (c->flags & SF__C_CLOSED)
        return;
    c->flags |= SF__C_FINISHING;
    c->flags &= ~(SF__C_DRAIN | SF__C_EXPECT);
    c->u.finish_ms = sf_loop_now_ms(c->ls->w->loop);
    finish_step(c);
}

/* setsockopt on a connection's socket, traced. Returns 0 or -errno. */
static int
set_conn_option(sf_conn *c, int level, int name, const char *label, int value)
{
    sf_trace t, *tp = sf__server_trace(c->ls->w->s, &t, c->id);
    int rc = setsockopt(c->fd, level, name, &value, sizeof(value));

    if (tp)
        sf_trace_call(tp, SF_CALL_SETSOCKOPT, c->fd, rc, rc < 0 ? errno : 0,
                      &(const sf_trace_about){ .opt_level = level, .opt_name = name,
                                               .opt_value = value },
                      "%s=%d", label, value);
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
    if (rc == 0)
        c->flags |= SF__C_WATCH_PEER;
    return rc;
}

void
sf_conn_expect_input(sf_conn *c, int on)
{
    /* The clock shares its room with finish_ms: finishing reads no more input. */
    if (!on) {
        c->flags &= ~SF__C_EXPECT;
    } else if (!(c->flags & (SF__C_EXPECT | SF__C_FINISHING))) {
        c->flags |= SF__C_EXPECT;
        c->u.expect_ms = sf_loop_now_ms(c->ls->w->loop);
    }
}

void
sf_conn_hold(sf_conn *c)
{
    /* Still in the loop's table (it is the connection table), but never woken: the
     * descriptor belongs to someone else for now (a program run on it). */
    c->flags |= SF__C_HELD;
    sf_loop_set_events(c->ls->w->loop, c->fd, 0);
}

const sf_service *sf_conn_service(const sf_conn *c) { return c->ls->svc; }

void
sf_conn_want_drain(sf_conn *c, int on)
{
    if (on)
        c->flags |= SF__C_DRAIN;
    else
        c->flags &= ~SF__C_DRAIN;
    update_events(c);
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
    sf__server_log(c->ls->w->s, "%s #%lu %s: %s", c->ls->svc->name, (unsigned long)c->id,
                   who, msg);
}

/* n bytes read into data (0: the client's FIN; < 0: -errno) handed to the service. */
static void
conn_got(worker *w, sf_conn *c, ssize_t n, char *data)
{
    const sf_service *svc = c->ls->svc;

    if (n < 0) {
        sf_conn_close(c, n == -ECONNRESET ? NULL : sf_strerror((int)n));
        return;
    }
    c->last_ms = (uint32_t)sf_loop_now_ms(w->loop);
    if (n == 0) {
        c->flags |= SF__C_PEER_EOF;
        if (c->flags & SF__C_FINISHING) {
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
    if ((c->flags & SF__C_FINISHING) || svc->on_data == NULL)
        return;     /* lingering: read and drop */
    svc->on_data(c, data, (size_t)n);
}

static void
conn_readable(worker *w, sf_conn *c)
{
    sf_trace t, *tp = sf__server_trace(w->s, &t, c->id);
    /* Never more than the queue may hold: what a service sends back for one read (echo)
     * can then always be queued, and a small queue_cap means backpressure, not a close. */
    size_t want = w->s->o.queue_cap < SCRATCH_SIZE ? w->s->o.queue_cap : SCRATCH_SIZE;
    ssize_t n = sf_read(tp, c->fd, w->scratch, want);

    if (n != SF_EAGAIN)
        conn_got(w, c, n, w->scratch);
}

void
sf__tcp_ring_got(sf_conn *c, int n, char *data)
{
    conn_got(c->ls->w, c, n, data);
    update_events(c);
}

/* A ring send is done: the next (queued) one, or the finish that waited for it. */
static void
ring_send_over(sf_conn *c)
{
    if (c->out && sf_buf_len(c->out) > 0) {
        update_events(c);
        return;
    }
    if (c->out) {
        sf_buf_free(c->out);
        free(c->out);
        c->out = NULL;
    }
    update_events(c);
    finish_step(c);
}

/* n bytes sent, or -errno: the client going away is no news (as in sf_conn_send). */
static int
ring_send_counted(sf_conn *c, int n)
{
    worker *w = c->ls->w;

    if (n < 0) {
        sf_conn_close(c, n == -ECONNRESET || n == -EPIPE ? NULL : sf_strerror(n));
        return -1;
    }
    w->st.bytes_out += (uint64_t)n;
    c->last_ms = (uint32_t)sf_loop_now_ms(w->loop);
    return 0;
}

void
sf__tcp_ring_sent_direct(sf_conn *c, int n, const char *p, size_t len)
{
    size_t cap = c->ls->w->s->o.queue_cap;
    sf_buf *was = c->out, *nb;

    if (ring_send_counted(c, n) < 0)
        return;
    if ((size_t)n == len) {
        ring_send_over(c);
        return;
    }
    /* The rest goes first, before anything queued meanwhile. */
    if ((nb = malloc(sizeof(*nb))) == NULL) {
        sf_conn_close(c, "out of memory");
        return;
    }
    sf_buf_init(nb, cap + len);
    if (sf_buf_push(nb, p + n, len - (size_t)n) < 0 ||
        (was && sf_buf_push(nb, sf_buf_peek(was), sf_buf_len(was)) < 0)) {
        sf_buf_free(nb);
        free(nb);
        sf_conn_close(c, "out of memory");
        return;
    }
    if (was) {
        sf_buf_free(was);
        free(was);
    }
    nb->cap = cap > sf_buf_len(nb) ? cap : sf_buf_len(nb);
    c->out = nb;
    update_events(c);
}

void
sf__tcp_ring_sent(sf_conn *c, int n)
{
    if (ring_send_counted(c, n) < 0)
        return;
    sf_buf_consume(c->out, (size_t)n);
    ring_send_over(c);
}

static void
conn_writable(worker *w, sf_conn *c)
{
    if (c->out && sf_buf_len(c->out) > 0) {
        sf_trace t, *tp = sf__server_trace(w->s, &t, c->id);
        size_t before = sf_buf_len(c->out);
        ssize_t left = sf_buf_flush(tp, c->out, c->fd);

        if (left < 0) {
            sf_conn_close(c, left == -ECONNRESET || left == -EPIPE ? NULL
                                                                   : sf_strerror((int)left));
            return;
        }
        if ((size_t)left < before) {
            w->st.bytes_out += before - (size_t)left;
            c->last_ms = (uint32_t)sf_loop_now_ms(w->loop);
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
    if ((c->flags & SF__C_DRAIN) && c->ls->svc->on_drain)
        c->ls->svc->on_drain(c);
}

static void
conn_io(sf_loop *l, int fd, int events, void *ud)
{
    sf_conn *c = ud;
    worker *w = c->ls->w;

    (void)l;
    (void)fd;
    if (c->flags & SF__C_CLOSED)
        return;
    sf__worker_enter(w);
    if (events & SF_WRITE)
        conn_writable(w, c);
    if ((events & SF_READ) && !(c->flags & SF__C_CLOSED))
        conn_readable(w, c);
    sf__worker_leave(w);
}

/* ---- a new connection ---- */

static void
start_conn(worker *w, lsock *ls, int fd, unsigned flags)
{
    sf_server *s = w->s;
    sf_trace t;
    sf_conn *c;

    /* The slot is taken before it is checked: with several loops a check and a later
     * increment let two of them take the last slot together. */
    if (atomic_fetch_add(&s->total_conns, 1) >= s->o.max_conns && s->o.max_conns > 0) {
        atomic_fetch_sub(&s->total_conns, 1);
        w->st.refused_max++;
        close(fd);
        return;
    }
    if (!sf_access_admit_fd(s->o.access, fd, s->o.log, s->o.log_ud)) {
        atomic_fetch_sub(&s->total_conns, 1);
        close(fd);
        return;
    }
    c = calloc(1, sizeof(*c) + ls->svc->conn_size);
    if (c == NULL) {
        atomic_fetch_sub(&s->total_conns, 1);
        sf_access_release_fd(s->o.access, fd);
        close(fd);
        return;
    }
    c->fd = fd;
    c->ls = ls;
    c->flags = flags;
    c->id = (uint32_t)(atomic_fetch_add(&s->next_id, 1) + 1);
    c->last_ms = (uint32_t)sf_loop_now_ms(w->loop);
    w->nconns++;
    w->st.accepted++;
    /* Registered last, with the events its state then needs: a client's first request
     * usually comes with its connection, so it is read (and answered) at once, and a
     * connection that ends right there never enters epoll. Until then the loop does not
     * know fd, so the events services set meanwhile are only noted in c's state. Not
     * when tracing: the trace would then show the calls in an order that depends on
     * whether the request beat the accept, and its reader learns the plain flow. */
    sf__worker_enter(w);
    if (ls->svc->on_open)
        ls->svc->on_open(c);
    if ((flags & (SF__C_SOLE | SF__C_RING)) == SF__C_SOLE && ls->svc->on_data &&
        !(c->flags & SF__C_CLOSED) && (sf__conn_events(c) & SF_READ) &&
        sf__server_trace(s, &t, c->id) == NULL)
        conn_readable(w, c);
    if ((flags & SF__C_RING) && !(c->flags & SF__C_CLOSED)) {
        /* In the table (the sweep and the drain find it there), never in epoll. */
        if (sf_loop_adopt(w->loop, fd, conn_io, c) < 0)
            sf_conn_close(c, "out of memory");
        else
            sf__ring_arm(c);
    } else if (!(c->flags & SF__C_CLOSED)) {
        int rc = sf_loop_watch(w->loop, fd, sf__conn_events(c), conn_io, c);
        char why[96];

        if (rc < 0) {
            snprintf(why, sizeof(why), "epoll_ctl: %s", sf_strerror(rc));
            sf_conn_close(c, why);
        }
    }
    sf__worker_leave(w);
}

void
sf__tcp_start_conn(worker *w, lsock *ls, int fd)
{
    start_conn(w, ls, fd, 0);
}

void
sf__tcp_start_accepted(worker *w, lsock *ls, int fd)
{
    start_conn(w, ls, fd, SF__C_SOLE);
}

void
sf__tcp_start_ring(worker *w, lsock *ls, int fd)
{
    start_conn(w, ls, fd, SF__C_SOLE | SF__C_RING);
}

/* Every connection closed through the deferred path, so that on_close callbacks may
 * still send to (and close) the others. */
void
sf__tcp_close_all(worker *w)
{
    if (w->loop == NULL)
        return;     /* never set up: no connection either */
    sf__worker_enter(w);
    for (int fd = 0, end = sf_loop_fd_end(w->loop); fd < end; fd++) {
        sf_conn *c = sf__conn_at(w, fd);

        if (c)
            sf_conn_close(c, NULL);
    }
    sf__worker_leave(w);
}
