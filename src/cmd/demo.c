/* demo: both sides of the TCP and the UDP flow in one process, on loopback, every call
 * printed as it happens with the TCP state the kernel reports after it, in numbered
 * sections; each claim a section makes is checked against what the kernel showed. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "cmd.h"
#include "traceopt.h"

#define NSECTIONS 7
#define WAIT_MS 3000        /* the longest any step waits for the kernel */
#define DIAL_DELAY_MS 300   /* section 4: how long the server sleeps in accept() */

/* The last event of one call by one side, kept for the checks. */
typedef struct rec {
    sf_call call;
    char side[16];
    unsigned long id;
    unsigned notes;
    int fd, err, state, before;
    long result;
    int32_t queue;
    char local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN], args[64];
    uint64_t t_ns;
} rec;

#define MAX_RECS 48

typedef struct demo {
    sf_trace_sink sink;         /* the chosen format and flags */
    sf_trace_sink phone;        /* the same with the telephone picture (section 3) */
    sf_trace_sink *cur;
    sf_tracer tracer;           /* records each event, then writes it through cur */
    int claims, failed, skipped;
    rec recs[MAX_RECS];
    int nrecs;
} demo;

/* ---- recording and narrating ---- */

static void
copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static rec *
find_rec(demo *d, const char *side, unsigned long id, sf_call call)
{
    for (int i = 0; i < d->nrecs; i++) {
        rec *r = &d->recs[i];

        if (r->id == id && r->call == call && strcmp(r->side, side) == 0)
            return r;
    }
    return NULL;
}

static void
record(demo *d, const sf_trace_event *ev)
{
    rec *r = find_rec(d, ev->side, ev->id, ev->call);

    if (r == NULL && d->nrecs < MAX_RECS)
        r = &d->recs[d->nrecs++];
    if (r == NULL)
        return;
    r->call = ev->call;
    r->notes = ev->notes;
    copy_str(r->side, sizeof(r->side), ev->side);
    copy_str(r->local, sizeof(r->local), ev->local);
    copy_str(r->peer, sizeof(r->peer), ev->peer);
    copy_str(r->args, sizeof(r->args), ev->args);
    r->id = ev->id;
    r->fd = ev->fd;
    r->result = ev->result;
    r->err = ev->err;
    r->state = ev->tcp_state;
    r->before = ev->tcp_state_before;
    r->queue = ev->accept_queue;
    r->t_ns = ev->t_ns;
}

static void
demo_event(void *ud, const sf_trace_event *ev)
{
    demo *d = ud;

    record(d, ev);
    d->cur->tracer.fn(d->cur->tracer.ud, ev);
}

/* The last event of call by side#id; an empty record if there was none. */
static const rec *
seen(demo *d, const char *side, unsigned long id, sf_call call)
{
    static const rec none = { .fd = -1, .result = -1 };
    const rec *r = find_rec(d, side, id, call);

    return r ? r : &none;
}

static void
section(demo *d, int n, const char *title)
{
    d->nrecs = 0;
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "section", "%d. %s", n, title);
    else
        sf_trace_sink_note(&d->sink, "note", "\n== %d. %s ==", n, title);
}

static void say(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(demo *d, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
say(demo *d, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "note", "%s", text);
    else
        sf_trace_sink_note(&d->sink, "note", "   -- %s", text);
}

/* A claim, and whether the kernel bore it out. */
static void
check(demo *d, int ok, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    d->claims++;
    if (!ok)
        d->failed++;
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "check", "%s: %s", ok ? "seen" : "NOT SEEN", text);
    else
        sf_trace_sink_note(&d->sink, "note", "   %s %s", ok ? "seen:" : "NOT SEEN:", text);
}

static const char *state_name(int s);

/* A claim the kernel could not show for a reason outside the demo: said, not counted. */
static void
skip(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
skip(demo *d, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    d->skipped++;
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "check", "skipped: %s", text);
    else
        sf_trace_sink_note(&d->sink, "note", "   skipped: %s", text);
}

/* Connections the kernel dropped instead of keeping them in TIME_WAIT because its table
 * (net.ipv4.tcp_max_tw_buckets) was full. -1 if unknown. */
static long
tw_overflows(void)
{
    return sf_net_counter("TcpExt", "TCPTimeWaitOverflow");
}

/* The claim about a closed connection's state, unless the kernel's TIME_WAIT table
 * overflowed meanwhile (a busy machine): then the connection was dropped, not kept. */
static void
check_closed_state(demo *d, int state, int want, long overflows, const char *what,
                   const char *tail)
{
    long now = tw_overflows();

    if (state != want && overflows >= 0 && now > overflows)
        skip(d, "%s %s%s: the kernel's TIME_WAIT table is full (net.ipv4.tcp_max_tw_buckets;"
             " %ld overflows meanwhile), so it dropped the connection (%s) instead", what,
             state_name(want), tail, now - overflows, state_name(state));
    else
        check(d, state == want, "%s %s%s", what, state_name(state), tail);
}

static const char *
state_name(int s)
{
    return sf_tcp_state_name(s);
}

/* ---- small helpers: bounded waits, the demo's own calls ---- */

static int
wait_fd(int fd, short events, int ms)
{
    struct pollfd p = { .fd = fd, .events = events };
    int rc;

    do {
        rc = poll(&p, 1, ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Ask the kernel about fd's line with TCP_INFO, as an event. */
static void
probe(demo *d, const sf_trace *t, int fd)
{
    (void)d;
    sf_trace_call(t, SF_CALL_GETSOCKOPT, fd, 0, 0,
                  &(sf_trace_about){ .opt_level = IPPROTO_TCP, .opt_name = TCP_INFO }, "TCP_INFO");
}

/* The state the kernel holds the connection local <-> peer in, waiting (bounded) for
 * want; reported as a sock_diag event on side t. */
static int
wait_state(const sf_trace *t, const sf_addr *local, const sf_addr *peer, int want)
{
    uint64_t deadline = sf_now_ns() + (uint64_t)WAIT_MS * 1000000u;

    while (sf_tcp_state_lookup(local, peer) != want && sf_now_ns() < deadline)
        sleep_ms(2);
    return sf_trace_lookup(t, local, peer);
}

/* socket() for a client that has the kernel pick its address on first use. */
static int
client_socket(const sf_trace *t, int type, int nonblock)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

    sf_trace_call(t, SF_CALL_SOCKET, fd, fd, fd < 0 ? errno : 0, NULL, "AF_INET, %s%s",
                  type == SOCK_DGRAM ? "SOCK_DGRAM" : "SOCK_STREAM",
                  nonblock ? "|SOCK_NONBLOCK" : "");
    return fd;
}

/* A nonblocking connect() that does not wait: the handshake goes on in the kernel. */
static int
dial(const sf_trace *t, const sf_addr *a)
{
    char where[SF_ADDR_STRLEN];
    int fd = client_socket(t, SOCK_STREAM, 1), rc;

    if (fd < 0)
        return -1;
    rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    sf_trace_call(t, SF_CALL_CONNECT, fd, rc, rc < 0 ? errno : 0, NULL, "%s",
                  sf_addr_format(a, where, sizeof(where)));
    if (rc < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
listen_on_loopback(const sf_trace *t, int backlog, int blocking, sf_addr *a)
{
    sf_listen_opts lo = { .backlog = backlog, .blocking = blocking };
    sf_err err;
    int fd;

    sf_addr_loopback(a, AF_INET, 0);
    fd = sf_tcp_listen(t, a, &lo, &err);
    if (fd < 0) {
        cmd_fail("%s", err.msg);
        return -1;
    }
    sf_local_addr(fd, a);
    return fd;
}

static int
connect_to(const sf_trace *t, const sf_addr *a)
{
    sf_err err;
    int fd = sf_tcp_connect(t, a, NULL, WAIT_MS, 0, &err);

    if (fd < 0)
        cmd_fail("%s", err.msg);
    return fd;
}

/* Nonblocking accept of a connection the caller knows is coming (bounded wait). */
static int
accept_next(const sf_trace *t, int lfd, sf_addr *peer)
{
    wait_fd(lfd, POLLIN, WAIT_MS);
    return sf_tcp_accept(t, lfd, peer);
}

static ssize_t
read_some(const sf_trace *t, int fd, char *buf, size_t len)
{
    wait_fd(fd, POLLIN, WAIT_MS);
    return sf_read(t, fd, buf, len);
}

static void
close_quietly(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- 1. the TCP flow ---- */

static int
demo_tcp_flow(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    char buf[64], where[SF_ADDR_STRLEN], who[SF_ADDR_STRLEN];
    int lfd, cfd = -1, afd = -1, rc = EXIT_FAIL;
    sf_addr a, peer;
    ssize_t n;

    say(d, "server: socket -> setsockopt -> bind -> listen -> accept -> read -> write -> close");
    say(d, "client: socket -> connect -> write -> read -> close");
    if ((lfd = listen_on_loopback(&srv, 8, 1, &a)) < 0)
        return EXIT_FAIL;
    say(d, "the server listens on %s", sf_addr_format(&a, where, sizeof(where)));
    if ((cfd = connect_to(&cli, &a)) < 0)
        goto out;
    if ((afd = sf_tcp_accept_blocking(&srv, lfd, &peer)) < 0) {
        cmd_fail("accept: %s", sf_strerror(afd));
        goto out;
    }
    check(d, afd != lfd && seen(d, "server", 0, SF_CALL_ACCEPT4)->state == SF_TCP_ESTABLISHED,
          "accept() gave a new descriptor %d for the client %s (%s); the listening "
          "descriptor %d stays", afd, sf_addr_format(&peer, who, sizeof(who)),
          state_name(seen(d, "server", 0, SF_CALL_ACCEPT4)->state), lfd);
    sf_write_full(&cli, cfd, "hello\n", 6);
    n = sf_read(&srv, afd, buf, sizeof(buf));
    if (n > 0)
        sf_write_full(&srv, afd, buf, (size_t)n);
    n = sf_read_full(&cli, cfd, buf, 6);
    check(d, n == 6 && memcmp(buf, "hello\n", 6) == 0,
          "the client got its 6 bytes back: the server read them and wrote them back");
    sf_close(&cli, cfd);
    cfd = -1;
    n = sf_read(&srv, afd, buf, sizeof(buf));
    check(d, n == 0 && seen(d, "server", 0, SF_CALL_READ)->state == SF_TCP_CLOSE_WAIT,
          "the client hung up: the server's read() returned %zd and its socket is %s", n,
          state_name(seen(d, "server", 0, SF_CALL_READ)->state));
    sf_close(&srv, afd);
    afd = -1;
    rc = EXIT_OK;
out:
    if (afd >= 0)
        sf_close(&srv, afd);
    if (cfd >= 0)
        sf_close(&cli, cfd);
    sf_close(&srv, lfd);
    return rc;
}

/* ---- 2. the UDP flow ---- */

static int
demo_udp_flow(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    sf_listen_opts lo = { .blocking = 1 };
    char buf[64], where[SF_ADDR_STRLEN], who[SF_ADDR_STRLEN];
    int sfd, cfd, calls = 0;
    sf_addr a, from, back;
    sf_err err;
    ssize_t n;

    say(d, "server: socket -> bind -> recvfrom -> sendto -> close");
    say(d, "client: socket -> sendto -> recvfrom -> close");
    sf_addr_loopback(&a, AF_INET, 0);
    if ((sfd = sf_udp_bind(&srv, &a, &lo, &err)) < 0)
        return cmd_fail("%s", err.msg);
    sf_local_addr(sfd, &a);
    say(d, "the server waits for datagrams on %s", sf_addr_format(&a, where, sizeof(where)));
    if ((cfd = client_socket(&cli, SOCK_DGRAM, 0)) < 0) {
        sf_close(&srv, sfd);
        return cmd_fail("socket: %s", strerror(errno));
    }
    sf_sendto(&cli, cfd, "ping\n", 5, &a);
    wait_fd(sfd, POLLIN, WAIT_MS);
    n = sf_recvfrom(&srv, sfd, buf, sizeof(buf), &from, NULL);
    sf_local_addr(cfd, &back);
    check(d, n == 5 && sf_addr_port(&from) == sf_addr_port(&back),
          "a datagram of %zd bytes arrived with the return address %s: the kernel gave the "
          "client that number at its first sendto(), no bind() needed", n,
          sf_addr_format(&from, who, sizeof(who)));
    if (n > 0)
        sf_sendto(&srv, sfd, buf, (size_t)n, &from);
    wait_fd(cfd, POLLIN, WAIT_MS);
    n = sf_recvfrom(&cli, cfd, buf, sizeof(buf), NULL, NULL);
    check(d, n == 5 && memcmp(buf, "ping\n", 5) == 0, "the client got its 5 bytes back");
    for (int i = 0; i < d->nrecs; i++) {
        sf_call c = d->recs[i].call;

        calls += c == SF_CALL_LISTEN || c == SF_CALL_ACCEPT4 || c == SF_CALL_CONNECT ||
                 c == SF_CALL_CONNECT_DONE;
    }
    check(d, calls == 0, "no listen(), accept() or connect() was called: no call is set up");
    sf_close(&cli, cfd);
    sf_close(&srv, sfd);
    return EXIT_OK;
}

/* ---- 3. the telephone picture ---- */

static int
demo_telephone(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    char buf[64];
    int lfd, cfd, afd, ufd, vfd;
    sf_listen_opts lo = { .blocking = 1 };
    sf_addr a, peer, u;
    sf_err err;
    ssize_t n;

    say(d, "TCP is a telephone call: a phone, a number, switched on, dialled, answered, a"
        " private line, talk, hang up.");
    d->cur = &d->phone;
    if ((lfd = listen_on_loopback(&srv, 8, 1, &a)) < 0)
        goto fail;
    if ((cfd = connect_to(&cli, &a)) < 0) {
        sf_close(&srv, lfd);
        goto fail;
    }
    if ((afd = sf_tcp_accept_blocking(&srv, lfd, &peer)) < 0) {
        sf_close(&cli, cfd);
        sf_close(&srv, lfd);
        goto fail;
    }
    sf_write_full(&cli, cfd, "hi\n", 3);
    n = sf_read(&srv, afd, buf, sizeof(buf));
    if (n > 0)
        sf_write_full(&srv, afd, buf, (size_t)n);
    sf_read_full(&cli, cfd, buf, 3);
    sf_close(&cli, cfd);
    sf_read(&srv, afd, buf, sizeof(buf));
    sf_close(&srv, afd);
    sf_close(&srv, lfd);
    d->cur = &d->sink;
    say(d, "UDP is the post: letters with a return address, no call set up.");
    d->cur = &d->phone;
    sf_addr_loopback(&u, AF_INET, 0);
    if ((ufd = sf_udp_bind(&srv, &u, &lo, &err)) < 0)
        goto fail;
    sf_local_addr(ufd, &u);
    if ((vfd = client_socket(&cli, SOCK_DGRAM, 0)) < 0) {
        sf_close(&srv, ufd);
        goto fail;
    }
    sf_sendto(&cli, vfd, "hi\n", 3, &u);
    wait_fd(ufd, POLLIN, WAIT_MS);
    n = sf_recvfrom(&srv, ufd, buf, sizeof(buf), &peer, NULL);
    if (n > 0)
        sf_sendto(&srv, ufd, buf, (size_t)n, &peer);
    wait_fd(vfd, POLLIN, WAIT_MS);
    sf_recvfrom(&cli, vfd, buf, sizeof(buf), NULL, NULL);
    sf_close(&cli, vfd);
    sf_close(&srv, ufd);
    d->cur = &d->sink;
    check(d, seen(d, "server", 0, SF_CALL_LISTEN)->state == SF_TCP_LISTEN &&
          seen(d, "server", 0, SF_CALL_READ)->state == SF_TCP_CLOSE_WAIT,
          "switched on = %s; after the client hung up the server's line was %s",
          state_name(seen(d, "server", 0, SF_CALL_LISTEN)->state),
          state_name(seen(d, "server", 0, SF_CALL_READ)->state));
    return EXIT_OK;
fail:
    d->cur = &d->sink;
    return cmd_fail("telephone: %s", strerror(errno));
}

/* ---- 4. listen() and a blocking accept() ---- */

#define MAX_CAPTURE 8

/* Events of the accepting thread, held until it is joined, so that the output does not
 * depend on which thread the scheduler runs first. */
typedef struct capture {
    sf_tracer tracer;
    int n;
    sf_trace_event ev[MAX_CAPTURE];
    char text[MAX_CAPTURE][3][SF_ADDR_STRLEN];
} capture;

static void
capture_event(void *ud, const sf_trace_event *ev)
{
    capture *c = ud;
    sf_trace_event *e;

    if (c->n == MAX_CAPTURE)
        return;
    e = &c->ev[c->n];
    *e = *ev;
    copy_str(c->text[c->n][0], SF_ADDR_STRLEN, ev->args);
    copy_str(c->text[c->n][1], SF_ADDR_STRLEN, ev->local);
    copy_str(c->text[c->n][2], SF_ADDR_STRLEN, ev->peer);
    e->args = c->text[c->n][0];
    e->local = ev->local ? c->text[c->n][1] : NULL;
    e->peer = ev->peer ? c->text[c->n][2] : NULL;
    e->addr = NULL;
    e->data = NULL;
    e->datalen = 0;
    c->n++;
}

typedef struct acceptor {
    int lfd, fd;
    sf_addr peer;
    uint64_t waited_ns;
    capture cap;
} acceptor;

static void *
accept_thread(void *arg)
{
    acceptor *a = arg;
    const sf_trace srv = { &a->cap.tracer, "server", 0 };
    uint64_t t0 = sf_now_ns();

    a->fd = sf_tcp_accept_blocking(&srv, a->lfd, &a->peer);
    a->waited_ns = sf_now_ns() - t0;
    return NULL;
}

static int
demo_blocking_accept(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    acceptor acc = { .fd = -1 };
    struct timespec deadline;
    char who[SF_ADDR_STRLEN];
    pthread_t th;
    sf_addr a;
    int cfd, joined;

    acc.cap.tracer = (sf_tracer){ capture_event, &acc.cap, 0 };
    if ((acc.lfd = listen_on_loopback(&srv, 8, 1, &a)) < 0)
        return EXIT_FAIL;
    check(d, seen(d, "server", 0, SF_CALL_BIND)->state == SF_TCP_CLOSE &&
          seen(d, "server", 0, SF_CALL_LISTEN)->state == SF_TCP_LISTEN,
          "after bind() the socket is %s; listen() moved it to %s",
          state_name(seen(d, "server", 0, SF_CALL_BIND)->state),
          state_name(seen(d, "server", 0, SF_CALL_LISTEN)->state));
    if (pthread_create(&th, NULL, accept_thread, &acc) != 0) {
        sf_close(&srv, acc.lfd);
        return cmd_fail("pthread_create failed");
    }
    say(d, "the server calls a blocking accept() with nobody calling: it sleeps; the client"
        " dials %.1f s later", DIAL_DELAY_MS / 1000.0);
    sleep_ms(DIAL_DELAY_MS);
    cfd = connect_to(&cli, &a);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    joined = pthread_timedjoin_np(th, NULL, &deadline) == 0;
    if (!joined) {
        /* Nobody came: shutdown() wakes the sleeping accept() with an error. */
        shutdown(acc.lfd, SHUT_RDWR);
        pthread_join(th, NULL);
    }
    say(d, "the accepting thread's calls, printed once it is joined:");
    for (int i = 0; i < acc.cap.n; i++)
        demo_event(d, &acc.cap.ev[i]);
    check(d, acc.fd >= 0 && acc.waited_ns >= (uint64_t)(DIAL_DELAY_MS - 50) * 1000000u,
          "accept() slept %.3f s, until the client arrived", (double)acc.waited_ns / 1e9);
    check(d, acc.fd >= 0 && acc.fd != acc.lfd &&
          seen(d, "server", 0, SF_CALL_ACCEPT4)->state == SF_TCP_ESTABLISHED &&
          seen(d, "client", 0, SF_CALL_CONNECT_DONE)->state == SF_TCP_ESTABLISHED,
          "it returned only after the three-way handshake: a new descriptor %d, already %s,"
          " for %s; the listening descriptor %d stays in %s", acc.fd,
          state_name(seen(d, "server", 0, SF_CALL_ACCEPT4)->state),
          acc.fd >= 0 ? sf_addr_format(&acc.peer, who, sizeof(who)) : "-", acc.lfd,
          state_name(sf_tcp_state(acc.lfd, NULL, NULL)));
    if (cfd >= 0)
        sf_close(&cli, cfd);
    if (acc.fd >= 0)
        sf_close(&srv, acc.fd);
    sf_close(&srv, acc.lfd);
    return acc.fd >= 0 && cfd >= 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- 5. when accept() fails or tells nothing ---- */

static int
demo_accept_edges(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    char who[SF_ADDR_STRLEN];
    int lfd, cfd1 = -1, cfd2 = -1, afd1 = -1, afd2 = -1, r, rc = EXIT_FAIL;
    sf_addr a, peer, p2;

    if ((lfd = listen_on_loopback(&srv, 8, 0, &a)) < 0)
        return EXIT_FAIL;
    say(d, "a nonblocking listening socket, and nobody calling yet");
    r = sf_tcp_accept(&srv, lfd, &peer);
    check(d, r == SF_EAGAIN && seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EAGAIN,
          "accept() returned -1 with errno %s at once instead of sleeping",
          sf_errname(-seen(d, "server", 0, SF_CALL_ACCEPT4)->err));
    if ((cfd1 = connect_to(&c1, &a)) < 0)
        goto out;
    afd1 = accept_next(&srv, lfd, &peer);
    if (afd1 < 0)
        goto out;
    say(d, "accept() on the connected descriptor %d, which is no listener:", afd1);
    r = sf_tcp_accept(&srv, afd1, NULL);
    check(d, r == -EINVAL && seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EINVAL,
          "accept() failed with %s: a connected socket cannot accept connections",
          sf_errname(r));
    if ((cfd2 = connect_to(&c2, &a)) < 0)
        goto out;
    say(d, "accept() with a NULL address: the caller does not ask who is calling");
    afd2 = accept_next(&srv, lfd, NULL);
    if (afd2 < 0)
        goto out;
    sf_peer_addr(afd2, &p2);
    check(d, (seen(d, "server", 0, SF_CALL_ACCEPT4)->notes & SF_TRACE_N_NO_ADDR) != 0,
          "accept() returned descriptor %d and filled in no peer address; getpeername() can"
          " still tell: %s", afd2, sf_addr_format(&p2, who, sizeof(who)));
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        cmd_fail("accept: %s", strerror(errno));
    close_quietly(&cfd1);
    close_quietly(&cfd2);
    close_quietly(&afd1);
    close_quietly(&afd2);
    close_quietly(&lfd);
    say(d, "(the descriptors of this section are closed quietly)");
    return rc;
}

/* ---- 6. the three-way handshake and the close ---- */

static int
demo_handshake(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, s1 = { &d->tracer, "server", 1 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    const sf_trace c3 = { &d->tracer, "client", 3 };
    int lfd, cfd1 = -1, cfd2 = -1, cfd3 = -1, afd = -1, rc = EXIT_FAIL, state;
    long overflows;
    uint64_t t0;
    sf_addr a, local1, peer1;
    char buf[16];

    say(d, "a listening socket with backlog 1: Linux keeps up to backlog + 1 = 2 finished"
        " connections waiting for accept()");
    if ((lfd = listen_on_loopback(&srv, 1, 0, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd1 = connect_to(&c1, &a)) < 0)
        goto out;
    check(d, seen(d, "client", 1, SF_CALL_CONNECT_DONE)->state == SF_TCP_ESTABLISHED,
          "client 1 sent SYN, got SYN-ACK, sent ACK: %s, and the server has not called"
          " accept()", state_name(seen(d, "client", 1, SF_CALL_CONNECT_DONE)->state));
    if ((cfd2 = connect_to(&c2, &a)) < 0)
        goto out;
    probe(d, &srv, lfd);
    check(d, seen(d, "server", 0, SF_CALL_GETSOCKOPT)->queue == 2,
          "the kernel completed both connections by itself: they wait in the accept queue"
          " of the listening socket (length %d)", seen(d, "server", 0, SF_CALL_GETSOCKOPT)->queue);
    say(d, "client 3 dials while the queue is full: the server's kernel drops its SYN");
    if ((cfd3 = dial(&c3, &a)) < 0)
        goto out;
    probe(d, &c3, cfd3);
    check(d, seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state == SF_TCP_SYN_SENT,
          "client 3 is in %s: its SYN went out and no SYN-ACK came back",
          state_name(seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state));
    if ((afd = accept_next(&srv, lfd, &peer1)) < 0)
        goto out;
    say(d, "accept() took client 1 off the queue, making room; client 3's kernel sends its"
        " SYN again after its retransmission timeout (1 s)");
    t0 = sf_now_ns();
    wait_fd(cfd3, POLLOUT, WAIT_MS);
    probe(d, &c3, cfd3);
    check(d, seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state == SF_TCP_ESTABLISHED,
          "client 3 is %s after %.1f s: the second SYN found room",
          state_name(seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state),
          (double)(sf_now_ns() - t0) / 1e9);
    say(d, "the close: client 1 hangs up first");
    sf_local_addr(cfd1, &local1);
    sf_peer_addr(cfd1, &peer1);
    overflows = tw_overflows();
    sf_close(&c1, cfd1);
    cfd1 = -1;
    state = wait_state(&c1, &local1, &peer1, SF_TCP_FIN_WAIT2);
    check_closed_state(d, state, SF_TCP_FIN_WAIT2, overflows,
                       "client 1: its FIN was acknowledged; it is in",
                       ", waiting for the server's FIN");
    read_some(&s1, afd, buf, sizeof(buf));
    check(d, seen(d, "server", 1, SF_CALL_READ)->result == 0 &&
          seen(d, "server", 1, SF_CALL_READ)->state == SF_TCP_CLOSE_WAIT,
          "server: read() returned %ld (end of stream) and its socket is %s",
          seen(d, "server", 1, SF_CALL_READ)->result,
          state_name(seen(d, "server", 1, SF_CALL_READ)->state));
    sf_close(&s1, afd);
    afd = -1;
    state = wait_state(&c1, &local1, &peer1, SF_TCP_TIME_WAIT);
    check_closed_state(d, state, SF_TCP_TIME_WAIT, overflows,
                       "the server hung up too; client 1, which hung up first, is in", "");
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        cmd_fail("handshake: %s", strerror(errno));
    close_quietly(&cfd1);
    close_quietly(&cfd2);
    close_quietly(&cfd3);
    close_quietly(&afd);
    close_quietly(&lfd);
    say(d, "(clients 2 and 3 and the listening socket are closed quietly)");
    return rc;
}

/* ---- 7. one listening socket, one connected socket per client ---- */

static int
demo_two_sockets(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    const sf_trace s1 = { &d->tracer, "server", 1 }, s2 = { &d->tracer, "server", 2 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    const sf_trace c3 = { &d->tracer, "client", 3 };
    int lfd, cfd[3] = { -1, -1, -1 }, afd[3] = { -1, -1, -1 }, rc = EXIT_FAIL, ok;
    int lfd_seen[3];
    char buf[16], w1[SF_ADDR_STRLEN], w2[SF_ADDR_STRLEN];
    sf_addr a, peer[3];
    ssize_t n1, n2;

    if ((lfd = listen_on_loopback(&srv, 8, 0, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd[0] = connect_to(&c1, &a)) < 0 || (cfd[1] = connect_to(&c2, &a)) < 0)
        goto out;
    for (int i = 0; i < 2; i++) {
        if ((afd[i] = accept_next(&srv, lfd, &peer[i])) < 0)
            goto out;
        lfd_seen[i] = seen(d, "server", 0, SF_CALL_ACCEPT4)->fd;
    }
    check(d, afd[0] != afd[1] && afd[0] != lfd && afd[1] != lfd && lfd_seen[0] == lfd &&
          lfd_seen[1] == lfd,
          "two clients, two connected sockets: descriptor %d (%s) and descriptor %d (%s); both"
          " accept() calls were made on the same listening descriptor %d", afd[0],
          sf_addr_format(&peer[0], w1, sizeof(w1)), afd[1],
          sf_addr_format(&peer[1], w2, sizeof(w2)), lfd);
    sf_write_full(&c1, cfd[0], "one\n", 4);
    sf_write_full(&c2, cfd[1], "two\n", 4);
    n1 = read_some(&s1, afd[0], buf, sizeof(buf));
    ok = n1 == 4 && memcmp(buf, "one\n", 4) == 0;
    n2 = read_some(&s2, afd[1], buf, sizeof(buf));
    ok = ok && n2 == 4 && memcmp(buf, "two\n", 4) == 0;
    check(d, ok, "each line is private: descriptor %d heard client 1, descriptor %d client 2",
          afd[0], afd[1]);
    say(d, "the server is done with client 1: it closes that connected socket");
    sf_close(&s1, afd[0]);
    afd[0] = -1;
    read_some(&c1, cfd[0], buf, sizeof(buf));
    check(d, seen(d, "client", 1, SF_CALL_READ)->result == 0 &&
          sf_tcp_state(lfd, NULL, NULL) == SF_TCP_LISTEN,
          "client 1 read 0 (hung up on); the listening socket is still %s",
          state_name(sf_tcp_state(lfd, NULL, NULL)));
    say(d, "a third client, and accept() again for a new connected socket");
    if ((cfd[2] = connect_to(&c3, &a)) < 0)
        goto out;
    if ((afd[2] = accept_next(&srv, lfd, &peer[2])) < 0)
        goto out;
    lfd_seen[2] = seen(d, "server", 0, SF_CALL_ACCEPT4)->fd;
    check(d, lfd_seen[2] == lfd && afd[2] != lfd && afd[2] != afd[1],
          "accept() on the same listening descriptor %d gave descriptor %d for %s: a new"
          " connection (a freed descriptor number can be reused)", lfd, afd[2],
          sf_addr_format(&peer[2], w1, sizeof(w1)));
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        cmd_fail("accept: %s", strerror(errno));
    for (int i = 0; i < 3; i++) {
        close_quietly(&cfd[i]);
        close_quietly(&afd[i]);
    }
    sf_close(&srv, lfd);
    return rc;
}

/* ---- the command ---- */

static const struct {
    const char *title;
    int (*run)(demo *d);
} sections[NSECTIONS] = {
    { "The TCP flow, end to end", demo_tcp_flow },
    { "The UDP flow, end to end: no listen, accept or connect", demo_udp_flow },
    { "The telephone picture, step by step", demo_telephone },
    { "listen() and a blocking accept()", demo_blocking_accept },
    { "When accept() fails, or tells nothing", demo_accept_edges },
    { "The three-way handshake, the accept queue and the close", demo_handshake },
    { "One listening socket for the server, one connected socket per client",
      demo_two_sockets },
};

static const char demo_usage[] =
    "usage: sockflow demo [--section N] [--json] [--explain] [--trace-data] [--trace-file FILE]\n"
    "\n"
    "Runs both sides of the TCP and the UDP flow on loopback and prints every socket\n"
    "call as it happens: who made it, its arguments, its result and the TCP state the\n"
    "kernel reports after it. Seven numbered sections; each claim is checked against\n"
    "what the kernel showed ('seen:'), and the exit status is 1 if one was not.\n"
    "\n"
    "  -n, --section N        run section N only (1-7)\n"
    "  -j, --json             one JSON object per line: the calls as trace events,\n"
    "                         sections, notes and checks as events of their own\n"
    "      --trace[=text|json]  the same choice of format as --json\n"
    "      --explain          a telephone-picture sentence under every call\n"
    "      --trace-data       hex dumps of the bytes read and written\n"
    "      --trace-file FILE  write everything to FILE instead of standard output\n"
    "  -h, --help\n"
    "\n"
    "Sections:\n"
    "  1 the TCP flow           2 the UDP flow            3 the telephone picture\n"
    "  4 listen and a blocking accept                    5 accept: EAGAIN, EINVAL, NULL\n"
    "  6 handshake, accept queue, close states           7 one listening socket, many\n";

static const struct option demo_opts[] = {
    { "section", required_argument, NULL, 'n' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

int
cmd_demo(int argc, char **argv)
{
    cmd_trace ct = { 0 };
    demo d = { 0 };
    int ch, only = 0, rc = EXIT_OK;
    long v;
    FILE *out = stdout;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "n:jh", demo_opts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if ((v = cmd_parse_count(optarg, NSECTIONS)) < 1)
                return cmd_usage_error("demo", "--section %s: a number from 1 to %d", optarg,
                                       NSECTIONS);
            only = (int)v;
            break;
        case 'j': ct.format = SF_TRACE_JSON; break;
        case 'h': fputs(demo_usage, stdout); return EXIT_OK;
        default:
            if ((v = cmd_trace_option(&ct, "demo", ch, optarg)) < 0)
                return EXIT_USAGE;
            if (v == 0)
                return cmd_usage_error("demo", "unknown option");
        }
    }
    if (optind < argc)
        return cmd_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    /* The demo's output is the trace: standard output unless --trace-file says. */
    if (ct.file == NULL)
        ct.file = "-";
    ct.on = 1;
    if ((rc = cmd_trace_open(&ct)) != 0)
        return rc;
    out = ct.out;
    sf_trace_sink_init(&d.sink, out, ct.format, ct.flags);
    d.phone = d.sink;
    d.phone.tracer.ud = &d.phone;
    d.phone.flags |= SF_TRACE_F_EXPLAIN;
    d.cur = &d.sink;
    d.tracer = (sf_tracer){ demo_event, &d, (ct.flags & SF_TRACE_F_DATA) != 0 };
    if (ct.format == SF_TRACE_JSON) {
        sf_trace_sink_note(&d.sink, "demo", "sockflow demo %s", SOCKFLOW_VERSION);
    } else {
        sf_trace_sink_note(&d.sink, "note",
            "sockflow demo: both sides of each flow on loopback, every socket call as it\n"
            "happens, with the TCP state the kernel reports after it (TCP_INFO).\n"
            "columns: seconds since start, who, call, descriptor, arguments, = result,\n"
            "state after the call (rtt: smoothed round trip; queue: accept queue length)");
    }
    for (int i = 0; i < NSECTIONS; i++) {
        if (only && only != i + 1)
            continue;
        section(&d, i + 1, sections[i].title);
        if (sections[i].run(&d) != EXIT_OK)
            rc = EXIT_FAIL;
    }
    if (d.failed)
        rc = EXIT_FAIL;
    if (ct.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d.sink, "summary", "%d of %d claims seen in the kernel%s",
                           d.claims - d.failed, d.claims, d.skipped ? " (some skipped)" : "");
    else
        sf_trace_sink_note(&d.sink, "note", "\n%d of %d claims seen in the kernel%s.",
                           d.claims - d.failed, d.claims, d.skipped ? " (some skipped)" : "");
    cmd_trace_close(&ct);
    return rc;
}
