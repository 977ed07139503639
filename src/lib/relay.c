/* relay: input → socket and socket → output on one loop, binary-safe. Each direction writes
 * at once and queues only what its destination did not take (libuv's stream.c does the
 * same), then stops reading its source until the queue drains; the directions end apart. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "sockflow/buf.h"
#include "sockflow/client.h"
#include "sockflow/loop.h"
#include "sockflow/sock.h"

#define CHUNK (64 * 1024)
/* The largest UDP payload over IPv4: 65535 - 20 (IP header) - 8 (UDP header). A read of
 * a pipe or a file can return more, which sendto() would refuse with EMSGSIZE. */
#define UDP_PAYLOAD_MAX 65507
#define DRAIN_POLL_MAX_MS 100

typedef struct relay {
    const sf_relay_opts *o;
    sf_loop *loop;
    sf_err *err;
    sf_relay_stats st;
    int rc;
    int finished;
    int in_eof;             /* input ended */
    int in_polled;          /* in_fd works with epoll (regular files do not) */
    int in_held;            /* input not read: the socket has a queue */
    int out_polled;         /* out_fd is watched for room */
    int fin_sent;           /* input direction done (FIN sent, or not wanted) */
    int sock_eof;           /* the peer's FIN was read */
    int sock_used;          /* the relay still reads or writes the socket */
    int sock_in_set;        /* the socket is in the epoll set */
    long in_timer, quit_timer, idle_timer, drain_timer;
    int drain_ms;
    uint64_t last_io_ms;
    sf_buf q;               /* input bytes the socket has not taken yet */
    sf_buf oq;              /* socket bytes the output has not taken yet */
    char *chunk;
    char *crlf;             /* the chunk with LF made CRLF (twice its size) */
    int last_cr;            /* the last byte of input was a CR */
} relay;

static void in_ready(sf_loop *l, int fd, int events, void *ud);
static void check_done(relay *r);

static void
finish(relay *r, int rc)
{
    if (r->finished)
        return;
    r->finished = 1;
    r->rc = rc;
    sf_loop_stop(r->loop);
}

static void
fail(relay *r, int code, const char *call)
{
    if (r->finished)
        return;
    sf_err_set(r->err, code, "%s %s", call, r->o->peer ? r->o->peer : "");
    finish(r, code);
}

static void
cancel_timer(relay *r, long *id)
{
    if (*id > 0)
        sf_loop_timer_cancel(r->loop, *id);
    *id = 0;
}

static void
set_timer(relay *r, long *id, int ms, sf_timer_fn fn)
{
    cancel_timer(r, id);
    if (ms >= 0)
        *id = sf_loop_timer(r->loop, (uint64_t)ms, fn, r);
}

/* ---- timers: quit after end of input, idle, UDP silence ---- */

/* The unsent input and the bytes the peer has not acknowledged yet (SIOCOUTQ). */
static uint64_t
undelivered(relay *r)
{
    int outq = 0;

    if (!r->o->udp && ioctl(r->o->sock_fd, SIOCOUTQ, &outq) < 0)
        outq = 0;
    return sf_buf_len(&r->q) + (uint64_t)(outq > 0 ? outq : 0);
}

static void
on_quit_timer(sf_loop *l, void *ud)
{
    relay *r = ud;

    /* TCP: set only once the socket has taken all input; what the peer sent until now
     * was written out, and the kernel goes on delivering ours after we close. UDP: the
     * silence after the end of input. */
    (void)l;
    r->quit_timer = 0;
    finish(r, 0);
}

static void
on_idle_timer(sf_loop *l, void *ud)
{
    relay *r = ud;
    uint64_t quiet = sf_loop_now_ms(l) - r->last_io_ms;

    r->idle_timer = 0;
    if (quiet + 1 < (uint64_t)r->o->idle_ms) {
        /* traffic since the timer was set: wait for the rest of the period */
        set_timer(r, &r->idle_timer, r->o->idle_ms - (int)quiet, on_idle_timer);
        return;
    }
    sf_err_set(r->err, -ETIMEDOUT, "idle %s after %d ms",
               r->o->peer ? r->o->peer : "", r->o->idle_ms);
    finish(r, -ETIMEDOUT);
}

/* Traffic either way: the idle clock starts again (the timer checks it when it fires,
 * so a busy relay sets no timer per chunk). */
static void
touch(relay *r)
{
    r->last_io_ms = sf_loop_now_ms(r->loop);
}

/* ---- input → socket ---- */

static void
on_in_timer(sf_loop *l, void *ud)
{
    relay *r = ud;

    r->in_timer = 0;
    in_ready(l, r->o->in_fd, SF_READ, r);
}

/* Read input again when it can be: at once for a regular file, else on readiness.
 * Held input leaves the epoll set rather than asking for no events: a pipe whose writer
 * has gone reports EPOLLHUP regardless, and reading then would find the queue full. */
static void
want_input(relay *r, int on)
{
    int rc;

    r->in_held = !on;
    if (r->in_eof || r->finished)
        return;
    if (r->in_polled && !on) {
        sf_loop_unwatch(r->loop, r->o->in_fd);
    } else if (r->in_polled) {
        rc = sf_loop_watch(r->loop, r->o->in_fd, SF_READ, in_ready, r);
        if (rc < 0)
            fail(r, rc, "epoll_ctl input");
    } else if (on && r->in_timer == 0) {
        r->in_timer = sf_loop_timer(r->loop, 0, on_in_timer, r);
    }
}

static void sock_ready(sf_loop *l, int fd, int events, void *ud);

/* What the socket is watched for. With nothing wanted it leaves the epoll set: after a
 * hang-up epoll would report EPOLLHUP on every pass while, say, output drains. A reset
 * meanwhile is found by the next send or the shutdown. */
static void
sock_events(relay *r)
{
    int ev = 0, rc = 0;

    if (!r->sock_used)
        return;
    if (!r->sock_eof && sf_buf_len(&r->oq) == 0)
        ev |= SF_READ;
    if (sf_buf_len(&r->q) > 0)
        ev |= SF_WRITE;
    if (ev == 0 && r->sock_in_set)
        sf_loop_unwatch(r->loop, r->o->sock_fd);
    else if (ev != 0 && !r->sock_in_set)
        rc = sf_loop_watch(r->loop, r->o->sock_fd, ev, sock_ready, r);
    else if (ev != 0)
        rc = sf_loop_set_events(r->loop, r->o->sock_fd, ev);
    r->sock_in_set = ev != 0 && rc == 0;
    if (rc < 0)
        fail(r, rc, "epoll_ctl");
}

/* End of input and the socket has taken all of it: FIN (unless not wanted). */
static void
input_done(relay *r)
{
    int rc;

    if (r->o->udp) {
        set_timer(r, &r->quit_timer, r->o->udp_wait_ms, on_quit_timer);
        return;
    }
    if (!r->o->no_half_close) {
        rc = sf_shutdown_write(r->o->trace, r->o->sock_fd);
        if (rc < 0) {
            /* ENOTCONN after a reset: the reset is the news */
            int e = sf_sock_error(r->o->sock_fd);

            fail(r, e < 0 ? e : rc, r->sock_eof ? "send" : "recv");
            return;
        }
    }
    r->fin_sent = 1;
    if (r->o->quit_after_eof_ms >= 0)
        set_timer(r, &r->quit_timer, r->o->quit_after_eof_ms, on_quit_timer);
    check_done(r);
}

static void
input_ended(relay *r)
{
    r->in_eof = 1;
    cancel_timer(r, &r->in_timer);
    if (r->in_polled)
        sf_loop_unwatch(r->loop, r->o->in_fd);
    if (sf_buf_len(&r->q) == 0)
        input_done(r);
}

/* LF → CRLF into out (room for 2 * n); a CR already before the LF is kept single. */
static size_t
to_crlf(const char *p, size_t n, char *out, int *last_cr)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n' && !*last_cr)
            out[k++] = '\r';
        out[k++] = p[i];
        *last_cr = p[i] == '\r';
    }
    return k;
}

/* Write at once; queue only what the socket did not take, and hold input until the
 * queue drains. A datagram is sent whole or queued whole. */
static void
send_input(relay *r, const char *p, size_t n)
{
    ssize_t s = 0;

    if (sf_buf_len(&r->q) == 0) {
        s = r->o->udp ? sf_sendto(r->o->trace, r->o->sock_fd, p, n, NULL)
                      : sf_write(r->o->trace, r->o->sock_fd, p, n);
        if (s == SF_EAGAIN)
            s = 0;
        if (s < 0) {
            fail(r, (int)s, "send");
            return;
        }
        if (r->o->udp && s > 0)
            s = (ssize_t)n;
        r->st.sent += (uint64_t)s;
    }
    if ((size_t)s == n)
        return;
    if (sf_buf_push(&r->q, p + s, n - (size_t)s) != (ssize_t)(n - (size_t)s)) {
        fail(r, -ENOMEM, "relay");      /* cannot happen: the cap holds two chunks */
        return;
    }
    want_input(r, 0);
    sock_events(r);
}

static void
in_ready(sf_loop *l, int fd, int events, void *ud)
{
    relay *r = ud;
    size_t max = r->o->udp ? UDP_PAYLOAD_MAX : CHUNK;
    ssize_t n;

    (void)l;
    (void)events;
    if (r->o->crlf)
        max /= 2;
    n = read(fd, r->chunk, max);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        want_input(r, 1);
        return;
    }
    if (n < 0) {
        n = -errno;
        sf_err_set(r->err, (int)n, "read input");
        finish(r, (int)n);
        return;
    }
    if (n == 0) {
        input_ended(r);
        return;
    }
    r->st.in_bytes += (uint64_t)n;
    touch(r);
    if (r->o->crlf)
        send_input(r, r->crlf, to_crlf(r->chunk, (size_t)n, r->crlf, &r->last_cr));
    else
        send_input(r, r->chunk, (size_t)n);
    if (!r->in_polled && !r->in_held && !r->finished)
        want_input(r, 1);
}

/* The socket has room: send the queue; once empty, read input again (or end it). */
static void
flush_input(relay *r)
{
    size_t before = sf_buf_len(&r->q);
    ssize_t left;

    if (r->o->udp) {
        left = sf_sendto(r->o->trace, r->o->sock_fd, sf_buf_peek(&r->q), before, NULL);
        if (left == SF_EAGAIN)
            return;
        if (left >= 0)
            sf_buf_consume(&r->q, before);
        left = left < 0 ? left : 0;
    } else {
        left = sf_buf_flush(r->o->trace, &r->q, r->o->sock_fd);
    }
    if (left < 0) {
        fail(r, (int)left, "send");
        return;
    }
    r->st.sent += before - (size_t)left;
    touch(r);
    if (left > 0)
        return;
    sock_events(r);
    if (r->in_eof)
        input_done(r);
    else
        want_input(r, 1);
}

/* ---- socket → output ---- */

/* Write what output takes now: the count written, or a negative errno. Output is not a
 * socket, so write() (send() would fail with ENOTSOCK first: one call per chunk saved). */
static ssize_t
write_out(relay *r, const char *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(r->o->out_fd, p + done, n - done);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w < 0)
            return -errno;
        done += (size_t)w;
    }
    r->st.out_bytes += done;
    return (ssize_t)done;
}

/* A reader that went away (EPIPE, `... | head -1`) ends the relay quietly, as SIGPIPE
 * ends cat or nc in a pipeline; any other error loses bytes and is reported. */
static void
output_failed(relay *r, int code)
{
    if (code == -EPIPE) {
        r->st.out_closed = 1;
        finish(r, 0);
        return;
    }
    sf_err_set(r->err, code, "write output");
    finish(r, code);
}

static void
out_ready(sf_loop *l, int fd, int events, void *ud)
{
    relay *r = ud;
    ssize_t w;

    (void)events;
    w = write_out(r, sf_buf_peek(&r->oq), sf_buf_len(&r->oq));
    if (w < 0) {
        output_failed(r, (int)w);
        return;
    }
    sf_buf_consume(&r->oq, (size_t)w);
    if (sf_buf_len(&r->oq) > 0)
        return;
    sf_loop_unwatch(l, fd);
    r->out_polled = 0;
    sock_events(r);
    check_done(r);
}

/* Write at once; what a nonblocking output did not take waits in oq, and the socket is
 * not read until it drains. */
static void
deliver(relay *r, const char *p, size_t n)
{
    ssize_t w = 0;
    int rc;

    if (sf_buf_len(&r->oq) == 0 && (w = write_out(r, p, n)) < 0) {
        output_failed(r, (int)w);
        return;
    }
    if ((size_t)w == n)
        return;
    if (sf_buf_push(&r->oq, p + w, n - (size_t)w) != (ssize_t)(n - (size_t)w)) {
        fail(r, -ENOMEM, "relay");
        return;
    }
    if (!r->out_polled) {
        rc = sf_loop_watch(r->loop, r->o->out_fd, SF_WRITE, out_ready, r);
        if (rc < 0) {
            sf_err_set(r->err, rc, "epoll_ctl output");
            finish(r, rc);
            return;
        }
        r->out_polled = 1;
    }
    sock_events(r);
}

static void
sock_read(relay *r)
{
    ssize_t n = sf_read(r->o->trace, r->o->sock_fd, r->chunk, CHUNK);

    if (n == SF_EAGAIN)
        return;
    if (n < 0) {
        fail(r, (int)n, "recv");
        return;
    }
    if (n == 0 && !r->o->udp) {
        r->sock_eof = 1;
        sock_events(r);
        check_done(r);
        return;
    }
    r->st.received += (uint64_t)n;
    touch(r);
    deliver(r, r->chunk, (size_t)n);
    if (r->o->udp && r->in_eof && sf_buf_len(&r->q) == 0)
        set_timer(r, &r->quit_timer, r->o->udp_wait_ms, on_quit_timer);
}

static void
sock_ready(sf_loop *l, int fd, int events, void *ud)
{
    relay *r = ud;

    (void)l;
    (void)fd;
    if ((events & SF_WRITE) && sf_buf_len(&r->q) > 0)
        flush_input(r);
    if (r->finished)
        return;
    if ((events & SF_READ) && !r->sock_eof && sf_buf_len(&r->oq) == 0)
        sock_read(r);
}

/* ---- the end ---- */

static void
on_drain_timer(sf_loop *l, void *ud)
{
    relay *r = ud;

    (void)l;
    r->drain_timer = 0;
    check_done(r);
}

/* TCP, both directions done: finish once the peer has acknowledged every byte. A peer
 * that closed before our input ended answers it with a reset instead — reported, since
 * those bytes were lost. Polled with a growing interval: no event says "all acked". */
static void
drain(relay *r)
{
    int e = sf_sock_error(r->o->sock_fd);

    if (e < 0) {
        fail(r, e, "send");
        return;
    }
    if (undelivered(r) == 0) {
        finish(r, 0);
        return;
    }
    r->drain_ms = r->drain_ms == 0 ? 1 : r->drain_ms * 2;
    if (r->drain_ms > DRAIN_POLL_MAX_MS)
        r->drain_ms = DRAIN_POLL_MAX_MS;
    set_timer(r, &r->drain_timer, r->drain_ms, on_drain_timer);
}

static void
check_done(relay *r)
{
    if (r->o->udp || r->finished)
        return;
    if (!r->fin_sent || !r->sock_eof || sf_buf_len(&r->oq) > 0)
        return;
    /* Both sides shut: epoll would report EPOLLHUP on every pass from now on. */
    r->sock_used = 0;
    if (r->sock_in_set)
        sf_loop_unwatch(r->loop, r->o->sock_fd);
    r->sock_in_set = 0;
    drain(r);
}

static int
start(relay *r)
{
    const sf_relay_opts *o = r->o;
    int rc;

    /* one watcher per descriptor in the loop: one fd cannot be watched both ways */
    if (o->in_fd == o->out_fd && o->in_fd >= 0)
        return sf_err_set(r->err, SF_EUSAGE, "relay: input and output are the same "
                          "descriptor %d (dup() one of them)", o->in_fd);
    r->chunk = malloc(CHUNK);
    r->crlf = o->crlf ? malloc(2 * CHUNK) : NULL;
    if (r->chunk == NULL || (o->crlf && r->crlf == NULL))
        return sf_err_set(r->err, -ENOMEM, "relay");
    sf_set_nonblock(o->sock_fd, 1);
    rc = sf_loop_watch(r->loop, o->sock_fd, SF_READ, sock_ready, r);
    if (rc < 0)
        return sf_err_set(r->err, rc, "epoll_ctl %s", o->peer ? o->peer : "");
    r->sock_used = r->sock_in_set = 1;
    touch(r);
    if (o->idle_ms > 0)
        set_timer(r, &r->idle_timer, o->idle_ms, on_idle_timer);
    /* epoll refuses regular files (EPERM): they are always ready, read them on timers. */
    r->in_polled = sf_loop_watch(r->loop, o->in_fd, SF_READ, in_ready, r) == 0;
    if (!r->in_polled)
        want_input(r, 1);
    return 0;
}

int
sf_relay(const sf_relay_opts *o, sf_err *err)
{
    relay r = { .o = o, .err = err };
    int rc;

    r.loop = sf_loop_new(err);
    if (r.loop == NULL)
        return err ? err->code : -ENOMEM;
    sf_buf_init(&r.q, 2 * CHUNK);
    sf_buf_init(&r.oq, CHUNK);
    rc = start(&r);
    if (rc == 0)
        rc = sf_loop_run(r.loop);
    if (rc == 0)
        rc = r.rc;
    r.st.unsent = sf_buf_len(&r.q);
    if (o->stats)
        *o->stats = r.st;
    sf_buf_free(&r.q);
    sf_buf_free(&r.oq);
    free(r.chunk);
    free(r.crlf);
    sf_loop_free(r.loop);
    return rc;
}
