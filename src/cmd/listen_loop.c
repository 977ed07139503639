/* listen_loop: the modes of `sockflow listen` that run on an event loop — a program
 * per connection (-e/-c), the broker (--broker) and UDP (-u). Signals arrive as bytes
 * on c->sigfd, watched like any descriptor. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmd.h"
#include "listen.h"

#define DRAIN_MS 10000          /* after SIGTERM/SIGHUP: time left to the clients */
#define ACCEPT_BATCH 16
#define BROKER_QUEUE_CAP (256 * 1024)
#define CHUNK (64 * 1024)
#define UDP_PAYLOAD_MAX 65507

/* What every loop mode has: the loop, the listener while it is open, the drain. */
typedef struct base {
    listen_conf *c;
    sf_loop *loop;
    int listening;
    long drain_timer;
    void (*on_child)(struct base *b);   /* a SIGCHLD came (exec mode) */
    void (*on_hard_stop)(struct base *b);
    int (*clients)(struct base *b);     /* how many are still being served */
} base;

static void
stop_listening(base *b)
{
    if (!b->listening)
        return;
    sf_loop_unwatch(b->loop, b->c->lfd);
    sf_close(b->c->t, b->c->lfd);
    b->c->lfd = -1;
    b->listening = 0;
}

/* Done once nothing is listening and nobody is being served. */
static void
maybe_done(base *b)
{
    if (!b->listening && b->clients(b) == 0)
        sf_loop_stop(b->loop);
}

static void
on_drain_deadline(sf_loop *l, void *ud)
{
    base *b = ud;

    (void)l;
    b->drain_timer = 0;
    cmd_log("drain: time is up, %d client(s) cut off", b->clients(b));
    if (b->on_hard_stop)
        b->on_hard_stop(b);
    sf_loop_stop(b->loop);
}

static void
on_signal_bytes(sf_loop *l, int fd, int events, void *ud)
{
    base *b = ud;
    int child = 0, verdict;

    (void)l;
    (void)fd;
    (void)events;
    verdict = listen_take_signals(b->c, &child);
    if (child && b->on_child)
        b->on_child(b);
    if (verdict == 2) {
        if (b->on_hard_stop)
            b->on_hard_stop(b);
        sf_loop_stop(b->loop);
        return;
    }
    if (verdict == 1 && b->listening) {
        stop_listening(b);
        if (b->clients(b) > 0)
            b->drain_timer = sf_loop_timer(b->loop, DRAIN_MS, on_drain_deadline, b);
    }
    maybe_done(b);
}

static int
base_start(base *b, listen_conf *c, sf_io_fn on_listener, void *ud)
{
    sf_err err;

    b->c = c;
    b->loop = sf_loop_new(&err);
    if (b->loop == NULL)
        return cmd_fail("listen: %s", err.msg);
    if (sf_loop_watch(b->loop, c->sigfd, SF_READ, on_signal_bytes, b) < 0 ||
        sf_loop_watch(b->loop, c->lfd, SF_READ, on_listener, ud) < 0) {
        sf_loop_free(b->loop);
        return cmd_fail("listen: epoll_ctl: %s", strerror(errno));
    }
    b->listening = 1;
    return 0;
}

/* Accept one client for a loop mode: its fd after the access check, or -1 when there is
 * no one (more) to take. */
static int
accept_admitted(base *b, sf_addr *peer)
{
    for (;;) {
        int fd = sf_tcp_accept(b->c->t, b->c->lfd, peer);

        if (fd == SF_EAGAIN && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        if (fd == SF_EAGAIN)
            continue;
        if (fd < 0) {
            cmd_log("accept: %s", sf_strerror(fd));
            return -1;
        }
        if (listen_admit(b->c, peer))
            return fd;
        sf_close(b->c->t, fd);
    }
}

static int
refuse_over_cap(base *b, int fd, const sf_addr *peer, int n)
{
    char who[SF_ADDR_STRLEN];

    if (n < b->c->max_conns)
        return 0;
    cmd_log("refused %s: --max-conns %d reached", sf_addr_format(peer, who, sizeof(who)),
            b->c->max_conns);
    sf_access_release(b->c->access, peer);
    sf_close(b->c->t, fd);
    return 1;
}

/* ---- a program per connection ---- */

typedef struct kid {
    pid_t pid;
    sf_addr peer;
} kid;

typedef struct exec_run {
    base b;
    kid *kids;
    int nkids;
} exec_run;

static int exec_clients(base *b) { return ((exec_run *)b)->nkids; }

static void
exec_reap(base *b)
{
    exec_run *r = (exec_run *)b;
    char who[SF_ADDR_STRLEN], how[64];
    pid_t pid;
    int status;

    while ((pid = sf_spawn_reap(&status)) > 0) {
        for (int i = 0; i < r->nkids; i++) {
            if (r->kids[i].pid != pid)
                continue;
            cmd_log("%s: %d %s", sf_addr_format(&r->kids[i].peer, who, sizeof(who)),
                    (int)pid, sf_spawn_status_text(status, how, sizeof(how)));
            sf_access_release(b->c->access, &r->kids[i].peer);
            r->kids[i] = r->kids[--r->nkids];
            break;
        }
    }
    maybe_done(b);
}

/* Stopping at once: each program gets the hang-up a closed terminal would give it. */
static void
exec_hang_up(base *b)
{
    exec_run *r = (exec_run *)b;

    for (int i = 0; i < r->nkids; i++)
        sf_spawn_signal(r->kids[i].pid, SIGHUP);
}

static void
exec_one(exec_run *r, int fd, const sf_addr *peer)
{
    listen_conf *c = r->b.c;
    char who[SF_ADDR_STRLEN];
    sf_err err;
    pid_t pid = sf_spawn(&c->cmd, fd, &err);

    sf_close(c->t, fd);
    sf_addr_format(peer, who, sizeof(who));
    if (pid < 0) {
        cmd_log("%s: %s", who, err.msg);
        sf_access_release(c->access, peer);
        return;
    }
    if (c->verbose)
        cmd_log("%s: started %d", who, (int)pid);
    r->kids[r->nkids++] = (kid){ pid, *peer };
}

static void
exec_accept(sf_loop *l, int lfd, int events, void *ud)
{
    exec_run *r = ud;
    sf_addr peer;
    int fd;

    (void)l;
    (void)lfd;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH && r->b.listening; i++) {
        if ((fd = accept_admitted(&r->b, &peer)) < 0)
            break;
        if (refuse_over_cap(&r->b, fd, &peer, r->nkids))
            continue;
        exec_one(r, fd, &peer);
        if (!r->b.c->keep)
            stop_listening(&r->b);  /* one client, as nc -l -e: done when it is */
    }
    maybe_done(&r->b);
}

int
listen_run_exec(listen_conf *c)
{
    exec_run r = { .b = { .on_child = exec_reap, .on_hard_stop = exec_hang_up,
                          .clients = exec_clients } };
    int rc;

    r.kids = calloc((size_t)c->max_conns, sizeof(kid));
    if (r.kids == NULL)
        return cmd_fail("listen: out of memory");
    if ((rc = base_start(&r.b, c, exec_accept, &r)) != 0) {
        free(r.kids);
        return rc;
    }
    sf_loop_run(r.b.loop);
    sf_loop_free(r.b.loop);
    free(r.kids);
    return EXIT_OK;
}

/* ---- the broker ---- */

typedef struct broker_run broker_run;

typedef struct member {
    broker_run *r;
    int fd;
    int gone;
    sf_addr peer;
    sf_buf q;                   /* what this member has not taken yet */
} member;

struct broker_run {
    base b;
    member **m;
    int n;
    char *chunk;
};

static int broker_clients(base *b) { return ((broker_run *)b)->n; }

static void
drop_member(broker_run *r, member *m, const char *why)
{
    char who[SF_ADDR_STRLEN];

    if (m->gone)
        return;
    m->gone = 1;
    if (why)
        cmd_log("%s: %s", sf_addr_format(&m->peer, who, sizeof(who)), why);
    sf_loop_unwatch(r->b.loop, m->fd);
    sf_close(r->b.c->t, m->fd);
    sf_access_release(r->b.c->access, &m->peer);
}

/* Free the members dropped during a pass, once nothing points at them. */
static void
sweep_members(broker_run *r)
{
    for (int i = 0; i < r->n;) {
        if (!r->m[i]->gone) {
            i++;
            continue;
        }
        sf_buf_free(&r->m[i]->q);
        free(r->m[i]);
        r->m[i] = r->m[--r->n];
    }
    maybe_done(&r->b);
}

/* Written at once where the socket takes it, the rest queued up to the cap; a member
 * that lets its queue fill is dropped rather than let it hold everyone back. */
static void
send_to(broker_run *r, member *m, const char *p, size_t len)
{
    ssize_t w = 0;

    if (sf_buf_len(&m->q) == 0) {
        w = sf_write(r->b.c->t, m->fd, p, len);
        if (w == SF_EAGAIN)
            w = 0;
        if (w < 0) {
            drop_member(r, m, sf_strerror((int)w));
            return;
        }
    }
    if ((size_t)w == len)
        return;
    if (sf_buf_push(&m->q, p + w, len - (size_t)w) != (ssize_t)(len - (size_t)w)) {
        drop_member(r, m, "dropped: not reading (its queue is full)");
        return;
    }
    sf_loop_set_events(r->b.loop, m->fd, SF_READ | SF_WRITE);
}

static void
member_io(broker_run *r, member *m, int events)
{
    ssize_t n;

    if ((events & SF_WRITE) && sf_buf_len(&m->q) > 0) {
        n = sf_buf_flush(r->b.c->t, &m->q, m->fd);
        if (n < 0) {
            drop_member(r, m, sf_strerror((int)n));
            return;
        }
        if (n == 0)
            sf_loop_set_events(r->b.loop, m->fd, SF_READ);
    }
    if (!(events & SF_READ))
        return;
    n = sf_read(r->b.c->t, m->fd, r->chunk, CHUNK);
    if (n == SF_EAGAIN)
        return;
    if (n <= 0) {
        drop_member(r, m, n < 0 ? sf_strerror((int)n) : r->b.c->verbose ? "left" : NULL);
        return;
    }
    for (int i = 0; i < r->n; i++)
        if (r->m[i] != m && !r->m[i]->gone)
            send_to(r, r->m[i], r->chunk, (size_t)n);
}

static void
on_member(sf_loop *l, int fd, int events, void *ud)
{
    member *m = ud;
    broker_run *r = m->r;

    (void)l;
    (void)fd;
    member_io(r, m, events);
    sweep_members(r);
}

static void
broker_accept(sf_loop *l, int lfd, int events, void *ud)
{
    broker_run *r = ud;
    char who[SF_ADDR_STRLEN];
    sf_addr peer;
    member *m;
    int fd;

    (void)l;
    (void)lfd;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if ((fd = accept_admitted(&r->b, &peer)) < 0)
            break;
        if (refuse_over_cap(&r->b, fd, &peer, r->n))
            continue;
        m = calloc(1, sizeof(*m));
        if (m == NULL || sf_loop_watch(r->b.loop, fd, SF_READ, on_member, m) < 0) {
            free(m);
            sf_access_release(r->b.c->access, &peer);
            sf_close(r->b.c->t, fd);
            continue;
        }
        *m = (member){ .r = r, .fd = fd, .peer = peer };
        sf_buf_init(&m->q, BROKER_QUEUE_CAP);
        r->m[r->n++] = m;
        if (r->b.c->verbose)
            cmd_log("%s: joined (%d connected)", sf_addr_format(&peer, who, sizeof(who)),
                    r->n);
    }
}

static void
broker_close_all(base *b)
{
    broker_run *r = (broker_run *)b;

    for (int i = 0; i < r->n; i++)
        drop_member(r, r->m[i], NULL);
}

int
listen_run_broker(listen_conf *c)
{
    broker_run r = { .b = { .on_hard_stop = broker_close_all, .clients = broker_clients } };
    int rc;

    r.m = calloc((size_t)c->max_conns, sizeof(member *));
    r.chunk = malloc(CHUNK);
    if (r.m == NULL || r.chunk == NULL) {
        rc = cmd_fail("listen: out of memory");
        goto out;
    }
    if ((rc = base_start(&r.b, c, broker_accept, &r)) != 0)
        goto out;
    sf_loop_run(r.b.loop);
    broker_close_all(&r.b);
    r.b.listening = 1;      /* the sweep frees; nothing more to stop */
    sweep_members(&r);
    sf_loop_free(r.b.loop);
    rc = EXIT_OK;
out:
    free(r.m);
    free(r.chunk);
    return rc;
}

/* ---- UDP: print each datagram, answer the sender of the last one ---- */

typedef struct udp_run {
    base b;
    sf_addr peer;
    int have_peer;
    int in_state;               /* 0 not read yet, 1 watched, 2 on timers, 3 ended */
    long in_timer;
    char *buf;
    uint64_t refused;
} udp_run;

static int udp_clients(base *b) { (void)b; return 0; }

static void stdin_ready(sf_loop *l, int fd, int events, void *ud);

static void
on_stdin_timer(sf_loop *l, void *ud)
{
    udp_run *r = ud;

    r->in_timer = 0;
    stdin_ready(l, 0, SF_READ, r);
}

/* Input is read once someone has sent a datagram (there is nobody to send to before);
 * a regular file, which epoll refuses, is read on timers. */
static void
want_stdin(udp_run *r)
{
    if (r->in_state == 0)
        r->in_state = sf_loop_watch(r->b.loop, 0, SF_READ, stdin_ready, r) == 0 ? 1 : 2;
    if (r->in_state == 2 && r->in_timer == 0)
        r->in_timer = sf_loop_timer(r->b.loop, 0, on_stdin_timer, r);
}

static void
stdin_ready(sf_loop *l, int fd, int events, void *ud)
{
    udp_run *r = ud;
    char who[SF_ADDR_STRLEN];
    ssize_t n, s;

    (void)l;
    (void)fd;
    (void)events;
    n = read(0, r->buf, UDP_PAYLOAD_MAX);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (n < 0)
            cmd_log("read input: %s", strerror(errno));
        if (r->in_state == 1)
            sf_loop_unwatch(r->b.loop, 0);
        r->in_state = 3;
        return;
    }
    s = sf_sendto(r->b.c->t, r->b.c->lfd, r->buf, (size_t)n, &r->peer);
    if (s < 0)
        cmd_log("sendto %s: %s", sf_addr_format(&r->peer, who, sizeof(who)),
                sf_strerror((int)s));
    if (r->in_state == 2)
        want_stdin(r);
}

static void
udp_ready(sf_loop *l, int fd, int events, void *ud)
{
    udp_run *r = ud;
    sf_addr from;
    ssize_t n;
    int truncated;

    (void)l;
    (void)events;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        n = sf_recvfrom(r->b.c->t, fd, r->buf, UDP_PAYLOAD_MAX + 1, &from, &truncated);
        if (n < 0)
            return;     /* SF_EAGAIN, or an ICMP error for an earlier send: nothing lost */
        if (!sf_access_allowed(r->b.c->access, &from)) {
            r->refused++;
            continue;
        }
        if (n > 0 && sf_write_full(NULL, 1, r->buf, (size_t)n) < 0 && errno != EPIPE)
            cmd_log("write output: %s", strerror(errno));
        /* An unnamed Unix socket cannot be answered: keep the last one that can be. */
        if (sf_addr_family(&from) != AF_UNIX ||
            from.len > offsetof(struct sockaddr_un, sun_path)) {
            r->peer = from;
            r->have_peer = 1;
            want_stdin(r);
        }
    }
}

int
listen_run_udp(listen_conf *c)
{
    udp_run r = { .b = { .clients = udp_clients } };
    int rc;

    r.buf = malloc(UDP_PAYLOAD_MAX + 1);
    if (r.buf == NULL)
        return cmd_fail("listen: out of memory");
    if ((rc = base_start(&r.b, c, udp_ready, &r)) != 0) {
        free(r.buf);
        return rc;
    }
    /* UDP has no clients to wait for: any stop signal ends it. */
    r.b.listening = 1;
    sf_loop_run(r.b.loop);
    if (r.refused)
        cmd_log("%llu datagram(s) dropped by --allow/--deny",
                (unsigned long long)r.refused);
    sf_loop_free(r.b.loop);
    free(r.buf);
    return EXIT_OK;
}
