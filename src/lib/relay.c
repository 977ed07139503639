/* relay: input → socket and socket → output on one loop, binary-safe, with backpressure
 * both ways (input is not read while the socket has bytes queued). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockflow/buf.h"
#include "sockflow/client.h"
#include "sockflow/loop.h"
#include "sockflow/sock.h"

#define CHUNK (64 * 1024)
/* The largest UDP payload over IPv4: 65535 - 20 (IP header) - 8 (UDP header). A read of
 * a pipe or a file can return more, which sendto() would refuse with EMSGSIZE. */
#define UDP_PAYLOAD_MAX 65507

typedef struct relay {
    const sf_relay_opts *o;
    sf_loop *loop;
    sf_err *err;
    int rc;
    int in_eof;
    int in_polled;          /* in_fd works with epoll (regular files do not) */
    long in_timer;
    long quiet_timer;
    sf_buf q;               /* input bytes the socket has not taken yet (TCP) */
    char *chunk;
} relay;

static void in_ready(sf_loop *l, int fd, int events, void *ud);

static void
done(relay *r, int rc)
{
    if (r->rc == 0)
        r->rc = rc;
    sf_loop_stop(r->loop);
}

static void
on_quit_timer(sf_loop *l, void *ud)
{
    relay *r = ud;

    (void)l;
    r->quiet_timer = 0;
    done(r, 0);
}

static void
restart_quiet_timer(relay *r, int ms)
{
    if (r->quiet_timer)
        sf_loop_timer_cancel(r->loop, r->quiet_timer);
    r->quiet_timer = ms < 0 ? 0 : sf_loop_timer(r->loop, (uint64_t)ms, on_quit_timer, r);
}

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

    if (r->in_eof)
        return;
    if (r->in_polled && !on) {
        sf_loop_unwatch(r->loop, r->o->in_fd);
    } else if (r->in_polled) {
        rc = sf_loop_watch(r->loop, r->o->in_fd, SF_READ, in_ready, r);
        if (rc < 0)
            done(r, sf_err_set(r->err, rc, "epoll_ctl input"));
    } else if (on && r->in_timer == 0) {
        r->in_timer = sf_loop_timer(r->loop, 0, on_in_timer, r);
    }
}

static void
sock_events(relay *r)
{
    int ev = SF_READ | (sf_buf_len(&r->q) > 0 ? SF_WRITE : 0);

    sf_loop_set_events(r->loop, r->o->sock_fd, ev);
}

static void
input_ended(relay *r)
{
    r->in_eof = 1;
    if (r->in_polled)
        sf_loop_unwatch(r->loop, r->o->in_fd);
    if (r->o->udp) {
        restart_quiet_timer(r, r->o->udp_wait_ms);
        return;
    }
    if (sf_buf_len(&r->q) > 0)
        return;     /* FIN after the queue drains */
    sf_shutdown_write(r->o->trace, r->o->sock_fd);
    if (r->o->quit_after_eof_ms >= 0)
        restart_quiet_timer(r, r->o->quit_after_eof_ms);
}

static void
in_ready(sf_loop *l, int fd, int events, void *ud)
{
    relay *r = ud;
    ssize_t n;

    (void)l;
    (void)events;
    n = read(fd, r->chunk, r->o->udp ? UDP_PAYLOAD_MAX : CHUNK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        want_input(r, 1);
        return;
    }
    if (n < 0) {
        done(r, sf_err_set(r->err, -errno, "read input"));
        return;
    }
    if (n == 0) {
        input_ended(r);
        return;
    }
    if (r->o->udp) {
        ssize_t s = sf_sendto(r->o->trace, r->o->sock_fd, r->chunk, (size_t)n, NULL);

        if (s < 0 && s != SF_EAGAIN) {
            done(r, sf_err_set(r->err, (int)s, "send %s", r->o->peer));
            return;
        }
        want_input(r, 1);
        return;
    }
    if (sf_buf_push(&r->q, r->chunk, (size_t)n) != n) {     /* short: bytes would be lost */
        done(r, sf_err_set(r->err, -ENOMEM, "relay"));
        return;
    }
    /* Hold input while the socket has a chunk to take. */
    want_input(r, 0);
    sock_events(r);
}

static void
sock_ready(sf_loop *l, int fd, int events, void *ud)
{
    relay *r = ud;
    ssize_t n;

    (void)l;
    if ((events & SF_WRITE) && sf_buf_len(&r->q) > 0) {
        n = sf_buf_flush(r->o->trace, &r->q, fd);
        if (n < 0) {
            done(r, sf_err_set(r->err, (int)n, "send %s", r->o->peer));
            return;
        }
        if (n == 0) {
            sock_events(r);
            if (r->in_eof)
                input_ended(r);
            else
                want_input(r, 1);
        }
    }
    if (!(events & SF_READ))
        return;
    n = sf_read(r->o->trace, fd, r->chunk, CHUNK);
    if (n == SF_EAGAIN)
        return;
    if (n < 0) {
        done(r, sf_err_set(r->err, (int)n, "recv %s", r->o->peer));
        return;
    }
    if (n == 0 && !r->o->udp) {
        done(r, 0);
        return;
    }
    if (n > 0 && sf_write_full(NULL, r->o->out_fd, r->chunk, (size_t)n) < 0) {
        done(r, errno == EPIPE ? 0 : sf_err_set(r->err, -errno, "write output"));
        return;
    }
    if (r->o->udp && r->in_eof)
        restart_quiet_timer(r, r->o->udp_wait_ms);
}

int
sf_relay(const sf_relay_opts *o, sf_err *err)
{
    relay r = { .o = o, .err = err };
    int rc;

    r.loop = sf_loop_new(err);
    if (r.loop == NULL)
        return err ? err->code : -ENOMEM;
    r.chunk = malloc(CHUNK);
    sf_buf_init(&r.q, CHUNK);
    if (r.chunk == NULL) {
        rc = sf_err_set(err, -ENOMEM, "relay");
        goto out;
    }
    sf_set_nonblock(o->sock_fd, 1);
    rc = sf_loop_watch(r.loop, o->sock_fd, SF_READ, sock_ready, &r);
    if (rc < 0) {
        sf_err_set(err, rc, "epoll_ctl %s", o->peer);
        goto out;
    }
    /* epoll refuses regular files (EPERM): they are always ready, read them on timers. */
    r.in_polled = sf_loop_watch(r.loop, o->in_fd, SF_READ, in_ready, &r) == 0;
    if (!r.in_polled)
        want_input(&r, 1);
    rc = sf_loop_run(r.loop);
    if (rc == 0)
        rc = r.rc;
out:
    sf_buf_free(&r.q);
    free(r.chunk);
    sf_loop_free(r.loop);
    return rc;
}
