/* test_trace: events per socket call, TCP states from the kernel, text/JSON/explain sinks. */
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "lib/trace_int.h"

#include "unit.h"

#define MAX_REC 64

typedef struct rec_event {
    char side[16], call[32], args[256], proto[8], local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN];
    unsigned long id;
    int fd, err, tcp_state, tcp_state_before, has_data, has_proto, has_local, has_peer;
    long result;
    int32_t accept_queue;
    uint32_t rtt_us;
    uint64_t t_ns;
    char data[64];
    size_t datalen;
    char addr[SF_ADDR_STRLEN];      /* the address the call concerned, "" for none */
    int opt_level, opt_name, opt_value, flags;
    unsigned notes;
} rec_event;

typedef struct recorder {
    rec_event ev[MAX_REC];
    int n;
} recorder;

static void
record(void *ud, const sf_trace_event *e)
{
    recorder *r = ud;
    rec_event *o;

    if (r->n == MAX_REC)
        return;
    o = &r->ev[r->n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->side, sizeof(o->side), "%s", e->side);
    snprintf(o->call, sizeof(o->call), "%s", sf_call_name(e->call));
    snprintf(o->args, sizeof(o->args), "%s", e->args);
    o->has_proto = e->proto != NULL;
    if (e->proto)
        snprintf(o->proto, sizeof(o->proto), "%s", e->proto);
    o->has_local = e->local != NULL;
    if (e->local)
        snprintf(o->local, sizeof(o->local), "%s", e->local);
    o->has_peer = e->peer != NULL;
    if (e->peer)
        snprintf(o->peer, sizeof(o->peer), "%s", e->peer);
    o->id = e->id;
    o->fd = e->fd;
    o->err = e->err;
    o->tcp_state = e->tcp_state;
    o->tcp_state_before = e->tcp_state_before;
    o->result = e->result;
    o->accept_queue = e->accept_queue;
    o->rtt_us = e->rtt_us;
    o->t_ns = e->t_ns;
    if (e->addr)
        sf_addr_format(e->addr, o->addr, sizeof(o->addr));
    o->opt_level = e->opt_level;
    o->opt_name = e->opt_name;
    o->opt_value = e->opt_value;
    o->flags = e->flags;
    o->notes = e->notes;
    o->has_data = e->data != NULL;
    o->datalen = e->datalen;
    if (e->data)
        memcpy(o->data, e->data, e->datalen < sizeof(o->data) ? e->datalen : sizeof(o->data));
}

/* The state of fd once it settles into want, waiting at most UNIT_WAIT_MS. */
static int
wait_state(int fd, int want)
{
    uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
    int st;

    while ((st = sf_tcp_state(fd, NULL, NULL)) != want && unit_now_ms() < end)
        unit_sleep_ms(5);
    return st;
}

/* The kernel's state of local <-> peer once it settles into want. */
static int
wait_lookup(const sf_addr *local, const sf_addr *peer, int want)
{
    uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
    int st;

    while ((st = sf_tcp_state_lookup(local, peer)) != want && unit_now_ms() < end)
        unit_sleep_ms(5);
    return st;
}

static char *
fmt_addr(int fd, int peer, char *buf)
{
    sf_addr a;

    assert_int_equal(peer ? sf_peer_addr(fd, &a) : sf_local_addr(fd, &a), 0);
    return sf_addr_format(&a, buf, SF_ADDR_STRLEN);
}

/* A connected pair on loopback: *c the client, *s the accepted socket. */
static int
tcp_pair(int family, int *c, int *s)
{
    int port, lfd = unit_tcp_listener(family, 0, &port);

    *c = unit_tcp_client(family, port);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    *s = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(*s >= 0);
    return lfd;
}

/* ---- states ---- */

static void
state_names(void **state)
{
    static const char *const names[] = {
        "-", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
        "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
    };

    (void)state;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
        assert_string_equal(sf_tcp_state_name(i), names[i]);
    assert_string_equal(sf_tcp_state_name(SF_TCP_NONE), "-");
    assert_string_equal(sf_tcp_state_name(SF_TCP_LISTEN), "LISTEN");
    assert_string_equal(sf_tcp_state_name(SF_TCP_CLOSE_WAIT), "CLOSE_WAIT");
    assert_string_equal(sf_tcp_state_name(12), "?");
    assert_string_equal(sf_tcp_state_name(-1), "?");
}

/* Not TCP, or no socket: SF_TCP_NONE, no queue, and errno is left as it was. */
static void
state_of_non_tcp(void **state)
{
    uint32_t rtt = 99;
    int32_t queue = 99;
    int sv[2], ufd, fd;

    (void)state;
    ufd = unit_udp_socket(AF_INET, NULL);
    errno = EDOM;
    assert_int_equal(sf_tcp_state(ufd, &rtt, &queue), SF_TCP_NONE);
    assert_int_equal(errno, EDOM);
    assert_int_equal(rtt, 0);
    assert_int_equal(queue, -1);
    assert_int_equal(sf_tcp_state(-1, NULL, NULL), SF_TCP_NONE);
    assert_int_equal(errno, EDOM);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(sf_tcp_state(sv[0], NULL, NULL), SF_TCP_NONE);
    /* A TCP socket nobody has bound or connected yet is CLOSE. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(sf_tcp_state(fd, &rtt, &queue), SF_TCP_CLOSE);
    assert_int_equal(queue, -1);
    close(fd);
    close(sv[0]);
    close(sv[1]);
    close(ufd);
}

/* The flow's states: LISTEN with its accept queue, ESTABLISHED, and after a half-close
 * CLOSE_WAIT on the side that got the FIN, FIN_WAIT2 on the side that sent it. */
static void
states_through_the_flow(void **state)
{
    uint32_t rtt = 7;
    int32_t queue = 7;
    int lfd, port, c1, c2, s1;
    char buf[4];

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    assert_int_equal(sf_tcp_state(lfd, &rtt, &queue), SF_TCP_LISTEN);
    assert_int_equal(queue, 0);
    assert_int_equal(rtt, 0);

    c1 = unit_tcp_client(AF_INET, port);
    c2 = unit_tcp_client(AF_INET, port);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; unit_now_ms() < end; unit_sleep_ms(5)) {
        sf_tcp_state(lfd, NULL, &queue);
        if (queue == 2)
            break;
    }
    assert_int_equal(queue, 2);
    assert_int_equal(sf_tcp_state(c1, &rtt, &queue), SF_TCP_ESTABLISHED);
    assert_int_equal(queue, -1);
    assert_true(rtt > 0);

    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    s1 = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(s1 >= 0);
    sf_tcp_state(lfd, NULL, &queue);
    assert_int_equal(queue, 1);
    assert_int_equal(sf_tcp_state(s1, NULL, NULL), SF_TCP_ESTABLISHED);

    assert_int_equal(sf_shutdown_write(NULL, c1), 0);
    assert_int_equal(unit_read_exact(s1, buf, sizeof(buf), UNIT_WAIT_MS), 0);
    assert_int_equal(sf_tcp_state(s1, NULL, NULL), SF_TCP_CLOSE_WAIT);
    assert_int_equal(wait_state(c1, SF_TCP_FIN_WAIT2), SF_TCP_FIN_WAIT2);

    /* The other half: after the server's FIN the connection lives on in TIME_WAIT, but
     * Linux hands that to a mini-socket: the descriptor itself reads CLOSE. */
    close(s1);
    assert_int_equal(unit_wait_eof(c1, UNIT_WAIT_MS), 0);
    assert_int_equal(wait_state(c1, SF_TCP_CLOSE), SF_TCP_CLOSE);
    close(c1);
    close(c2);
    close(lfd);
}

/* The kernel's view of a connection by its addresses, descriptor or not. */
static void
state_lookup_by_addresses(void **state)
{
    sf_addr cl, cp, sl, sp, nowhere, v6;
    int lfd, c, s;
    char buf[4];

    (void)state;
    lfd = tcp_pair(AF_INET, &c, &s);
    assert_int_equal(sf_local_addr(c, &cl), 0);
    assert_int_equal(sf_peer_addr(c, &cp), 0);
    assert_int_equal(sf_local_addr(s, &sl), 0);
    assert_int_equal(sf_peer_addr(s, &sp), 0);
    errno = EDOM;
    assert_int_equal(sf_tcp_state_lookup(&cl, &cp), SF_TCP_ESTABLISHED);
    assert_int_equal(errno, EDOM);
    assert_int_equal(sf_tcp_state_lookup(&sl, &sp), SF_TCP_ESTABLISHED);

    /* The client hangs up first and its descriptor is gone: FIN_WAIT2 once the FIN is
     * acknowledged; the server, told by read() 0, sits in CLOSE_WAIT. */
    close(c);
    assert_int_equal(wait_lookup(&cl, &cp, SF_TCP_FIN_WAIT2), SF_TCP_FIN_WAIT2);
    assert_int_equal(unit_read_exact(s, buf, sizeof(buf), UNIT_WAIT_MS), 0);
    assert_int_equal(sf_tcp_state_lookup(&sl, &sp), SF_TCP_CLOSE_WAIT);
    /* The server hangs up: the client's side waits in TIME_WAIT, the server's is gone. */
    close(s);
    assert_int_equal(wait_lookup(&cl, &cp, SF_TCP_TIME_WAIT), SF_TCP_TIME_WAIT);
    assert_int_equal(wait_lookup(&sl, &sp, SF_TCP_CLOSE), SF_TCP_CLOSE);

    /* No such connection: CLOSE; addresses of two families: cannot be asked. */
    nowhere = unit_loopback(AF_INET, unit_closed_port(AF_INET, SOCK_STREAM));
    assert_int_equal(sf_tcp_state_lookup(&cl, &nowhere), SF_TCP_CLOSE);
    v6 = unit_loopback(AF_INET6, 7);
    assert_int_equal(sf_tcp_state_lookup(&cl, &v6), SF_TCP_NONE);
    close(lfd);
}

/* ---- events ---- */

static void
call_builds_event(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "client", .id = 42 };
    uint64_t before = sf_now_ns();
    const char payload[] = "hello";

    (void)state;
    errno = EDOM;
    sf_trace_call(&t, SF_CALL_WRITE, -1, 5, 0,
                  &(sf_trace_about){ .data = payload, .datalen = 5 }, "len=%d, to=%s", 5, "x");
    assert_int_equal(errno, EDOM);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].side, "client");
    assert_int_equal(r.ev[0].id, 42);
    assert_string_equal(r.ev[0].call, "write");
    assert_int_equal(r.ev[0].fd, -1);
    assert_string_equal(r.ev[0].args, "len=5, to=x");
    assert_int_equal(r.ev[0].result, 5);
    assert_int_equal(r.ev[0].err, 0);
    assert_false(r.ev[0].has_proto);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_NONE);
    assert_int_equal(r.ev[0].tcp_state_before, SF_TCP_NONE);
    assert_int_equal(r.ev[0].accept_queue, -1);
    assert_false(r.ev[0].has_local);
    assert_false(r.ev[0].has_peer);
    assert_true(r.ev[0].t_ns >= before && r.ev[0].t_ns <= sf_now_ns());
    /* Payloads only when the sink asks for them. */
    assert_false(r.ev[0].has_data);
    assert_int_equal(r.ev[0].datalen, 0);

    tr.with_data = 1;
    t.side = NULL;
    sf_trace_call(&t, SF_CALL_READ, 3000, -1, ECONNRESET,
                  &(sf_trace_about){ .data = payload, .datalen = 5 }, "%s", "");
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[1].side, "-");
    assert_true(r.ev[1].has_data);
    assert_int_equal(r.ev[1].datalen, 5);
    assert_memory_equal(r.ev[1].data, "hello", 5);
    assert_int_equal(r.ev[1].err, ECONNRESET);
    assert_int_equal(r.ev[1].result, -1);
}

static void
call_off_is_silent(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer nofn = { .fn = NULL, .ud = &r };
    sf_trace no_tracer = { .tracer = NULL, .side = "x" };
    sf_trace no_fn = { .tracer = &nofn, .side = "x" };

    (void)state;
    sf_trace_call(NULL, SF_CALL_READ, 0, 0, 0, NULL, "%s", "");
    sf_trace_call(&no_tracer, SF_CALL_READ, 0, 0, 0, NULL, "%s", "");
    sf_trace_call(&no_fn, SF_CALL_READ, 0, 0, 0, NULL, "%s", "");
    assert_int_equal(r.n, 0);
}

static void
call_truncates_args(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "s" };
    char longarg[600];

    (void)state;
    memset(longarg, 'z', sizeof(longarg) - 1);
    longarg[sizeof(longarg) - 1] = '\0';
    sf_trace_call(&t, SF_CALL_BIND, -1, 0, 0, NULL, "%s", longarg);
    assert_int_equal(r.n, 1);
    assert_int_equal(strlen(r.ev[0].args), 255);
}

/* The sock layer reports each call of the flow in order, with the state after it. */
static void
sock_calls_are_traced(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "server" };
    sf_addr a = unit_loopback(AF_INET, 0), b;
    char want[64];
    sf_err err;
    int lfd, fd2, port;

    (void)state;
    lfd = sf_tcp_listen(&t, &a, NULL, &err);
    assert_true(lfd >= 0);
    port = unit_local_port(lfd);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ev[0].call, "socket");
    assert_string_equal(r.ev[0].args, "AF_INET, SOCK_STREAM|SOCK_NONBLOCK");
    assert_int_equal(r.ev[0].result, lfd);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_CLOSE);
    assert_string_equal(r.ev[0].proto, "tcp");
    assert_string_equal(r.ev[1].call, "setsockopt");
    assert_string_equal(r.ev[1].args, "SO_REUSEADDR=1");
    assert_string_equal(r.ev[2].call, "bind");
    assert_string_equal(r.ev[2].args, "127.0.0.1:0");
    assert_int_equal(r.ev[2].result, 0);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_string_equal(r.ev[2].local, want);
    assert_false(r.ev[2].has_peer);
    assert_string_equal(r.ev[3].call, "listen");
    assert_string_equal(r.ev[3].args, "backlog=511");
    assert_int_equal(r.ev[3].tcp_state, SF_TCP_LISTEN);
    assert_int_equal(r.ev[3].accept_queue, 0);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(r.ev[i].side, "server");
        assert_int_equal(r.ev[i].fd, lfd);
        if (i > 0)
            assert_true(r.ev[i].t_ns >= r.ev[i - 1].t_ns);
    }

    /* A failing bind: the error in the event, then the close of the socket. */
    r.n = 0;
    b = unit_loopback(AF_INET, port);
    fd2 = sf_tcp_listen(&t, &b, NULL, &err);
    assert_int_equal(fd2, -EADDRINUSE);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ev[2].call, "bind");
    assert_string_equal(r.ev[2].args, want);
    assert_int_equal(r.ev[2].result, -1);
    assert_int_equal(r.ev[2].err, EADDRINUSE);
    assert_string_equal(r.ev[3].call, "close");
    assert_int_equal(r.ev[3].err, 0);
    assert_int_equal(r.ev[3].tcp_state_before, SF_TCP_CLOSE);
    assert_int_equal(r.ev[3].tcp_state, SF_TCP_CLOSE);

    r.n = 0;
    assert_int_equal(sf_tcp_accept(&t, lfd, NULL), SF_EAGAIN);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].call, "accept4");
    assert_string_equal(r.ev[0].args, "peer=NULL, SOCK_NONBLOCK");
    assert_int_equal(r.ev[0].err, EAGAIN);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_LISTEN);
    assert_int_equal(r.ev[0].accept_queue, 0);

    /* close of a listener: LISTEN before, CLOSE after. */
    r.n = 0;
    assert_int_equal(sf_close(&t, lfd), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].call, "close");
    assert_int_equal(r.ev[0].tcp_state_before, SF_TCP_LISTEN);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_CLOSE);
    assert_int_equal(r.ev[0].fd, lfd);
}

/* accept reports the new connected socket (its state and both addresses) and what is
 * left in the listener's queue. */
static void
accept_reports_new_socket(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "server" };
    char cl[SF_ADDR_STRLEN], cp[SF_ADDR_STRLEN], want[128];
    int lfd, port, c1, c2, s1;
    sf_addr peer;
    int32_t queue = 0;

    (void)state;
    lfd = unit_tcp_listener(AF_INET6, 0, &port);
    c1 = unit_tcp_client(AF_INET6, port);
    c2 = unit_tcp_client(AF_INET6, port);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; queue != 2 && unit_now_ms() < end;)
        sf_tcp_state(lfd, NULL, &queue);
    assert_int_equal(queue, 2);
    s1 = sf_tcp_accept(&t, lfd, &peer);
    assert_true(s1 >= 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].call, "accept4");
    assert_int_equal(r.ev[0].fd, lfd);
    assert_int_equal(r.ev[0].result, s1);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_ESTABLISHED);
    assert_int_equal(r.ev[0].accept_queue, 1);
    assert_string_equal(r.ev[0].proto, "tcp");
    fmt_addr(c1, 0, cl);
    fmt_addr(c1, 1, cp);
    assert_string_equal(r.ev[0].peer, cl);
    assert_string_equal(r.ev[0].local, cp);
    snprintf(want, sizeof(want), "peer=%s, SOCK_NONBLOCK", cl);
    assert_string_equal(r.ev[0].args, want);
    close(s1);
    close(c1);
    close(c2);
    close(lfd);
}

/* close reports the state before and the kernel's view after: the side that hangs up
 * first goes to FIN_WAIT1/2, the second to LAST_ACK or gone; a socket whose two FINs
 * both passed while it was open reads CLOSE, and its TIME_WAIT is found all the same. */
static void
close_reports_before_and_after(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "x" };
    char cl[SF_ADDR_STRLEN], cp[SF_ADDR_STRLEN], buf[4];
    int lfd, c, s;

    (void)state;
    lfd = tcp_pair(AF_INET, &c, &s);
    fmt_addr(c, 0, cl);
    fmt_addr(c, 1, cp);
    assert_int_equal(sf_close(&t, c), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].tcp_state_before, SF_TCP_ESTABLISHED);
    assert_true(r.ev[0].tcp_state == SF_TCP_FIN_WAIT1 || r.ev[0].tcp_state == SF_TCP_FIN_WAIT2);
    assert_string_equal(r.ev[0].local, cl);
    assert_string_equal(r.ev[0].peer, cp);
    assert_int_equal(unit_read_exact(s, buf, sizeof(buf), UNIT_WAIT_MS), 0);
    assert_int_equal(sf_close(&t, s), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[1].tcp_state_before, SF_TCP_CLOSE_WAIT);
    assert_true(r.ev[1].tcp_state == SF_TCP_LAST_ACK || r.ev[1].tcp_state == SF_TCP_CLOSE);
    close(lfd);

    /* Both FINs passed with the descriptors open. The socket is traced from its start,
     * as a traced program's are: the kernel then knows it by a cookie its TIME_WAIT
     * entry keeps (a socket first traced at its close cannot be found this way). */
    {
        int port;
        sf_addr a;
        sf_err err;

        lfd = unit_tcp_listener(AF_INET, 0, &port);
        a = unit_loopback(AF_INET, port);
        c = sf_tcp_connect(&t, &a, NULL, UNIT_WAIT_MS, 0, &err);
        assert_true(c >= 0);
        assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
        s = sf_tcp_accept(NULL, lfd, NULL);
        assert_true(s >= 0);
    }
    fmt_addr(c, 0, cl);
    fmt_addr(c, 1, cp);
    assert_int_equal(sf_shutdown_write(NULL, c), 0);
    assert_int_equal(unit_read_exact(s, buf, sizeof(buf), UNIT_WAIT_MS), 0);
    assert_int_equal(sf_shutdown_write(NULL, s), 0);
    assert_int_equal(unit_read_exact(c, buf, sizeof(buf), UNIT_WAIT_MS), 0);
    assert_int_equal(wait_state(c, SF_TCP_CLOSE), SF_TCP_CLOSE);
    r.n = 0;
    assert_int_equal(sf_close(&t, c), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].tcp_state_before, SF_TCP_CLOSE);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_TIME_WAIT);
    assert_string_equal(r.ev[0].local, cl);
    assert_string_equal(r.ev[0].peer, cp);
    close(s);
    close(lfd);

    /* Not a socket: no protocol, no state; a bad descriptor: the error. */
    {
        int p[2];

        assert_int_equal(pipe(p), 0);
        r.n = 0;
        assert_int_equal(sf_close(&t, p[0]), 0);
        assert_false(r.ev[0].has_proto);
        assert_int_equal(r.ev[0].tcp_state, SF_TCP_NONE);
        assert_int_equal(sf_close(&t, p[0]), -EBADF);
        assert_int_equal(r.n, 2);
        assert_int_equal(r.ev[1].result, -1);
        assert_int_equal(r.ev[1].err, EBADF);
        close(p[1]);
    }
}

static void
udp_calls_are_traced(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r, .with_data = 1 };
    sf_trace t = { .tracer = &tr, .side = "client" };
    char want[96], buf[16];
    int sfd, port, fd;
    sf_addr a;
    sf_err err;

    (void)state;
    sfd = unit_udp_socket(AF_INET, &port);
    a = unit_loopback(AF_INET, port);
    fd = sf_udp_connect(&t, &a, NULL, 0, &err);
    assert_true(fd >= 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[0].call, "socket");
    assert_string_equal(r.ev[0].args, "AF_INET, SOCK_DGRAM");
    assert_string_equal(r.ev[0].proto, "udp");
    assert_string_equal(r.ev[1].call, "connect");
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_string_equal(r.ev[1].args, want);
    assert_string_equal(r.ev[1].peer, want);
    assert_int_equal(r.ev[1].tcp_state, SF_TCP_NONE);
    assert_int_equal(sf_sendto(&t, fd, "hi", 2, NULL), 2);
    assert_string_equal(r.ev[2].call, "sendto");
    assert_string_equal(r.ev[2].args, "len=2, to=(connected)");
    assert_memory_equal(r.ev[2].data, "hi", 2);
    assert_true(unit_poll(sfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_recvfrom(&t, sfd, buf, sizeof(buf), NULL, NULL), 2);
    assert_string_equal(r.ev[3].call, "recvfrom");
    assert_int_equal(strncmp(r.ev[3].args, "len=16, from=127.0.0.1:", 23), 0);
    close(fd);
    close(sfd);
}

static void
data_is_traced_when_asked(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r, .with_data = 1 };
    sf_trace t = { .tracer = &tr, .side = "conn", .id = 3 };
    char buf[16];
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(sf_write(&t, sv[0], "ping", 4), 4);
    assert_int_equal(sf_read(&t, sv[1], buf, sizeof(buf)), 4);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[0].call, "write");
    assert_string_equal(r.ev[0].args, "len=4");
    assert_true(r.ev[0].has_data);
    assert_memory_equal(r.ev[0].data, "ping", 4);
    assert_false(r.ev[0].has_proto);
    assert_string_equal(r.ev[1].call, "read");
    assert_string_equal(r.ev[1].args, "len=16");
    assert_int_equal(r.ev[1].datalen, 4);
    assert_memory_equal(r.ev[1].data, "ping", 4);
    assert_int_equal(r.ev[1].id, 3);
    close(sv[0]);
    close(sv[1]);
}

/* ---- calls as values ---- */

/* Every call has a name of its own, the one the traces print, and an explainer entry. */
static void
calls_have_names_and_explainers(void **state)
{
    (void)state;
    assert_string_equal(sf_call_name(SF_CALL_ACCEPT4), "accept4");
    assert_string_equal(sf_call_name(SF_CALL_CONNECT_DONE), "connect-done");
    assert_string_equal(sf_call_name(SF_CALL_SOCK_DIAG), "sock_diag");
    assert_string_equal(sf_call_name(SF_CALL_NONE), "?");
    assert_string_equal(sf_call_name(SF_CALL_COUNT), "?");
    assert_string_equal(sf_call_name((sf_call)-1), "?");
    for (int i = 1; i < SF_CALL_COUNT; i++) {
        assert_true(sf__explained((sf_call)i));
        assert_string_not_equal(sf_call_name((sf_call)i), "?");
        for (int j = 1; j < i; j++)
            assert_string_not_equal(sf_call_name((sf_call)i), sf_call_name((sf_call)j));
    }
    assert_false(sf__explained(SF_CALL_NONE));
    assert_false(sf__explained(SF_CALL_COUNT));
}

/* The sock layer hands over what each call concerned as values: the address, the option,
 * the flags, and whether accept was asked for the peer. */
static void
sock_calls_carry_values(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "server" };
    sf_addr a = unit_loopback(AF_INET, 0), peer;
    char where[SF_ADDR_STRLEN], cl[SF_ADDR_STRLEN];
    int lfd, c, s1, s2;

    (void)state;
    lfd = sf_tcp_listen(&t, &a, NULL, NULL);
    assert_true(lfd >= 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(r.ev[0].flags, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_int_equal(r.ev[1].opt_level, SOL_SOCKET);
    assert_int_equal(r.ev[1].opt_name, SO_REUSEADDR);
    assert_int_equal(r.ev[1].opt_value, 1);
    assert_string_equal(r.ev[2].addr, sf_addr_format(&a, where, sizeof(where)));
    sf_local_addr(lfd, &a);
    r.n = 0;
    c = unit_tcp_client(AF_INET, sf_addr_port(&a));
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    s1 = sf_tcp_accept(&t, lfd, &peer);
    assert_true(s1 >= 0);
    assert_string_equal(r.ev[0].addr, fmt_addr(c, 0, cl));
    assert_int_equal(r.ev[0].notes & SF_TRACE_N_NO_ADDR, 0);
    close(c);
    c = unit_tcp_client(AF_INET, sf_addr_port(&a));
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    s2 = sf_tcp_accept(&t, lfd, NULL);
    assert_true(s2 >= 0);
    assert_string_equal(r.ev[1].addr, "");
    assert_true(r.ev[1].notes & SF_TRACE_N_NO_ADDR);
    assert_string_equal(r.ev[1].peer, fmt_addr(c, 0, cl));
    close(s1);
    close(s2);
    close(c);
    close(lfd);
}

/* A client that binds its own port says so on its connect event; one that lets the kernel
 * pick does not, and the explanations differ accordingly. */
static void
connect_from_a_bound_port(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "client" };
    int port, lfd = unit_tcp_listener(AF_INET, 0, &port);
    sf_addr to = unit_loopback(AF_INET, port);
    sf_addr src = unit_loopback(AF_INET, unit_closed_port(AF_INET, SOCK_STREAM));
    sf_addr any = unit_loopback(AF_INET, 0);
    sf_trace_event ev = { .side = "c", .call = SF_CALL_CONNECT, .fd = 3, .args = "",
                          .proto = "tcp", .tcp_state = SF_TCP_ESTABLISHED,
                          .accept_queue = -1, .local = "127.0.0.1:5555", .addr = &to };
    char buf[512];
    int fd;

    (void)state;
    fd = sf_tcp_connect(&t, &to, &src, UNIT_WAIT_MS, 0, NULL);
    assert_true(fd >= 0);
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.ev[i].call, "connect") == 0)
            assert_true(r.ev[i].notes & SF_TRACE_N_BOUND);
    close(fd);
    r.n = 0;
    fd = sf_tcp_connect(&t, &to, &any, UNIT_WAIT_MS, 0, NULL);
    assert_true(fd >= 0);
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.ev[i].call, "connect") == 0)
            assert_false(r.ev[i].notes & SF_TRACE_N_BOUND);
    close(fd);

    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "The kernel picked the caller's own number, 127.0.0.1:5555"));
    ev.notes = SF_TRACE_N_BOUND;
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_null(strstr(buf, "kernel picked"));
    assert_non_null(strstr(buf, "chose itself with bind(), 127.0.0.1:5555"));
    close(lfd);
}

/* The option's sentence is chosen by its level and name, not by the args text. */
static void
explain_option_by_value(void **state)
{
    sf_trace_event ev = { .side = "s", .call = SF_CALL_SETSOCKOPT, .fd = 3,
                          .args = "SO_REUSEPORT=1", .proto = "tcp", .accept_queue = -1,
                          .opt_level = SOL_SOCKET, .opt_name = SO_REUSEADDR };
    char buf[512];

    (void)state;
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "take its number back at once"));
    ev.opt_name = SO_REUSEPORT;
    ev.args = "SO_REUSEADDR=1";
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "several phones may share one number"));
    ev.opt_level = IPPROTO_TCP;
    ev.opt_name = TCP_NODELAY;
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_string_equal(buf, "setsockopt(SO_REUSEADDR=1): a setting on the phone before it "
                        "gets its number.");
}

/* sf_trace_lookup: the kernel's state by addresses, as a sock_diag event. */
static void
lookup_is_an_event(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "client", .id = 3 };
    sf_addr cl, cp;
    char l[SF_ADDR_STRLEN], p[SF_ADDR_STRLEN], want[128];
    int lfd, c, s;

    (void)state;
    lfd = tcp_pair(AF_INET, &c, &s);
    sf_local_addr(c, &cl);
    sf_peer_addr(c, &cp);
    errno = EDOM;
    assert_int_equal(sf_trace_lookup(&t, &cl, &cp), SF_TCP_ESTABLISHED);
    assert_int_equal(errno, EDOM);
    assert_int_equal(sf_trace_lookup(NULL, &cl, &cp), SF_TCP_ESTABLISHED);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].call, "sock_diag");
    assert_int_equal(r.ev[0].id, 3);
    assert_int_equal(r.ev[0].fd, -1);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_ESTABLISHED);
    snprintf(want, sizeof(want), "%s <-> %s", sf_addr_format(&cl, l, sizeof(l)),
             sf_addr_format(&cp, p, sizeof(p)));
    assert_string_equal(r.ev[0].args, want);
    assert_string_equal(r.ev[0].local, l);
    assert_string_equal(r.ev[0].peer, p);
    assert_string_equal(r.ev[0].addr, p);
    close(c);
    close(s);
    close(lfd);
}

/* Kernel counters by group and name, from either file; unknown ones are -1. */
static void
net_counters(void **state)
{
    long before, after;
    int port, lfd, c;
    sf_addr to;

    (void)state;
    assert_true(sf_net_counter("TcpExt", "ListenOverflows") >= 0);
    assert_true(sf_net_counter("Tcp", "ActiveOpens") >= 0);
    assert_int_equal(sf_net_counter("TcpExt", "NoSuchCounter"), -1);
    assert_int_equal(sf_net_counter("NoGroup", "ActiveOpens"), -1);
    /* "Tcp" is not "TcpExt": the group is matched whole. */
    assert_int_equal(sf_net_counter("Tcp", "ListenOverflows"), -1);
    /* It moves: one more active open after a connect. */
    before = sf_net_counter("Tcp", "ActiveOpens");
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    to = unit_loopback(AF_INET, port);
    c = sf_tcp_connect(NULL, &to, NULL, UNIT_WAIT_MS, 0, NULL);
    assert_true(c >= 0);
    after = sf_net_counter("Tcp", "ActiveOpens");
    assert_true(after > before);
    close(c);
    close(lfd);
}

/* ---- entries, the narrow layout, the seed's language ---- */

/* A blocking connect() is reported when it is entered and when it returns 0; a tracer
 * that does not ask for entries, or a nonblocking socket, gets the return only. */
static void
entry_and_return_of_a_blocking_call(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r, .entries = 1 };
    sf_trace t = { .tracer = &tr, .side = "client" };
    int port, lfd = unit_tcp_listener(AF_INET, 0, &port), fd;
    sf_addr to = unit_loopback(AF_INET, port), me;
    sf_trace_event ev;
    char buf[512];

    (void)state;
    fd = sf_tcp_socket(&t, AF_INET, 0, NULL);
    assert_true(fd >= 0);
    assert_int_equal(sf_local_addr(fd, &me), 0);
    assert_int_equal(sf_addr_port(&me), 0);         /* no number before dialling */
    assert_int_equal(sf_connect(&t, fd, &to, NULL), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ev[1].call, "connect");
    assert_string_equal(r.ev[2].call, "connect");
    assert_int_equal(r.ev[2].result, 0);
    assert_int_equal(r.ev[2].tcp_state, SF_TCP_ESTABLISHED);
    assert_true(r.ev[1].t_ns <= r.ev[2].t_ns);
    assert_true(r.ev[1].tcp_state == SF_TCP_CLOSE);
    sf_local_addr(fd, &me);
    assert_int_not_equal(sf_addr_port(&me), 0);
    close(fd);

    r.n = 0;
    tr.entries = 0;
    fd = sf_tcp_socket(&t, AF_INET, 0, NULL);
    assert_int_equal(sf_connect(&t, fd, &to, NULL), 0);
    assert_int_equal(r.n, 2);
    close(fd);
    r.n = 0;
    tr.entries = 1;
    fd = sf_tcp_socket(&t, AF_INET, 1, NULL);
    assert_int_equal(sf_connect(&t, fd, &to, NULL), SF_EAGAIN);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[1].err, EINPROGRESS);
    close(fd);

    ev = (sf_trace_event){ .side = "server", .call = SF_CALL_ACCEPT4, .fd = 3,
                           .args = "peer=?", .proto = "tcp", .tcp_state = SF_TCP_LISTEN,
                           .accept_queue = 0, .phase = SF_TRACE_ENTRY, .t_ns = 5 };
    sf_trace_format(&ev, SF_TRACE_TEXT, 0, 5, buf, sizeof(buf));
    assert_non_null(strstr(buf, " accept4      fd=3   peer=?"));
    assert_non_null(strstr(buf, "= ...              LISTEN queue=0\n"));
    sf_trace_format(&ev, SF_TRACE_JSON, 0, 0, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"call\":\"accept4\",\"phase\":\"entry\","));
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "the server sleeps in accept()"));
    close(lfd);
}

/* write() on a TCP socket that never connected fails, and the picture says why. */
static void
write_without_a_connection(void **state)
{
    recorder r = { .n = 0 };
    sf_tracer tr = { .fn = record, .ud = &r };
    sf_trace t = { .tracer = &tr, .side = "client" };
    sf_trace_event ev = { .side = "c", .call = SF_CALL_WRITE, .fd = 3, .args = "len=2",
                          .result = -1, .err = EPIPE, .proto = "tcp",
                          .tcp_state = SF_TCP_CLOSE, .accept_queue = -1 };
    char buf[512];
    int fd;

    (void)state;
    fd = sf_tcp_socket(&t, AF_INET, 0, NULL);
    assert_int_equal(sf_write(&t, fd, "hi", 2), -EPIPE);
    assert_int_equal(r.ev[1].err, EPIPE);
    assert_false(r.ev[1].has_peer);
    close(fd);
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "there is no line to talk into"));
    ev.peer = "127.0.0.1:9";
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "the other side has hung up"));
}

/* Closing a listener: answered calls stay, callers on hold are reset. */
static void
explain_listener_close(void **state)
{
    sf_trace_event ev = { .side = "s", .call = SF_CALL_CLOSE, .fd = 3, .args = "",
                          .proto = "tcp", .tcp_state = SF_TCP_CLOSE,
                          .tcp_state_before = SF_TCP_LISTEN, .accept_queue = -1 };
    char buf[512];

    (void)state;
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_non_null(strstr(buf, "switched off"));
    assert_non_null(strstr(buf, "callers still on hold in the queue are cut off with a "
                                "reset"));
}

/* The 80-column line: strace-like, no RTT, the state at column 61, the sentence wrapped. */
static void
format_narrow_lines(void **state)
{
    sf_trace_event ev = { .side = "server", .call = SF_CALL_ACCEPT4, .fd = 3,
                          .args = "peer=127.0.0.1:40000", .result = 4, .proto = "tcp",
                          .tcp_state = SF_TCP_ESTABLISHED, .rtt_us = 40, .accept_queue = -1,
                          .t_ns = 300512000 };
    char buf[2048], *line, *save = NULL;

    (void)state;
    sf_trace_format(&ev, SF_TRACE_TEXT, SF_TRACE_F_NARROW, 0, buf, sizeof(buf));
    assert_string_equal(buf, " 0.300512 server   accept4(3, peer=127.0.0.1:40000) = 4"
                        "      ESTABLISHED\n");
    ev.call = SF_CALL_SOCKET;
    ev.args = "AF_INET, SOCK_STREAM";
    ev.tcp_state = SF_TCP_CLOSE;
    sf_trace_format(&ev, SF_TRACE_TEXT, SF_TRACE_F_NARROW | SF_TRACE_F_EXPLAIN, 0, buf,
                    sizeof(buf));
    assert_int_equal(strncmp(buf, " 0.300512 server   socket(AF_INET, SOCK_STREAM) = 4", 51),
                     0);
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        assert_true(sf_text_width(line) <= 80);
    /* A long call puts its state on a line of its own. */
    ev.call = SF_CALL_SOCK_DIAG;
    ev.fd = -1;
    ev.args = "[1111:2222:3333:4444::1]:40000 <-> [1111:2222:3333:4444::2]:50000";
    sf_trace_format(&ev, SF_TRACE_TEXT, SF_TRACE_F_NARROW, 0, buf, sizeof(buf));
    assert_non_null(strstr(buf, ":50000) = 4\n"));
    assert_non_null(strstr(buf, "\n                                                             "
                                "CLOSE\n"));
}

/* Wrapping counts CJK characters as two columns and may break between them. */
static void
wrap_counts_columns(void **state)
{
    char buf[512], *line, *save = NULL;
    size_t n;

    (void)state;
    assert_int_equal(sf_text_width("abc"), 3);
    assert_int_equal(sf_text_width("监听套接字"), 10);
    n = sf_text_wrap("one two three four", "> ", "  ", 10, buf, sizeof(buf));
    assert_string_equal(buf, "> one two\n  three\n  four");
    assert_int_equal(n, strlen(buf));
    sf_text_wrap("已连接套接字和监听套接字不是同一个", "", "", 10, buf, sizeof(buf));
    assert_non_null(strchr(buf, '\n'));
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        assert_true(sf_text_width(line) <= 10);
}

/* --lang zh: the seed's own words; JSON keys stay, only "explain" is in Chinese. */
static void
explain_in_the_seeds_words(void **state)
{
    sf_trace_event ev = { .side = "s", .call = SF_CALL_SOCKET, .fd = 3, .args = "",
                          .result = 3, .proto = "tcp", .tcp_state = SF_TCP_CLOSE,
                          .accept_queue = -1 };
    char buf[1024];

    (void)state;
    sf_trace_explain_in(&ev, SF_LANG_ZH, buf, sizeof(buf));
    assert_non_null(strstr(buf, "你有了一部手机"));
    ev.call = SF_CALL_BIND;
    sf_trace_explain_in(&ev, SF_LANG_ZH, buf, sizeof(buf));
    assert_non_null(strstr(buf, "激活SIM卡，手机有了一个电话号码"));
    ev.call = SF_CALL_LISTEN;
    ev.tcp_state = SF_TCP_LISTEN;
    sf_trace_explain_in(&ev, SF_LANG_ZH, buf, sizeof(buf));
    assert_non_null(strstr(buf, "手机处于可接听电话的状态"));
    ev.call = SF_CALL_ACCEPT4;
    ev.result = 4;
    sf_trace_explain_in(&ev, SF_LANG_ZH, buf, sizeof(buf));
    assert_non_null(strstr(buf, "按下了接听按钮"));
    assert_non_null(strstr(buf, "私有通信链路"));
    sf_trace_format(&ev, SF_TRACE_JSON, SF_TRACE_F_EXPLAIN | SF_TRACE_F_ZH, 0, buf,
                    sizeof(buf));
    assert_non_null(strstr(buf, "\"call\":\"accept4\""));
    assert_non_null(strstr(buf, "\"explain\":\"accept()："));
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_null(strstr(buf, "接听"));
}

/* ---- formatting ---- */

/* A hand-made event: a refused connect 1.5 ms after t0. */
static sf_trace_event
refused_event(void)
{
    sf_trace_event ev = {
        .side = "client", .id = 0, .call = SF_CALL_CONNECT, .fd = 3, .args = "127.0.0.1:7",
        .result = -1, .err = ECONNREFUSED, .proto = "tcp", .tcp_state = SF_TCP_CLOSE,
        .accept_queue = -1, .t_ns = 1001500000u,
    };

    return ev;
}

static void
format_text_line(void **state)
{
    sf_trace_event ev = refused_event();
    char buf[512];
    size_t n;

    (void)state;
    n = sf_trace_format(&ev, SF_TRACE_TEXT, 0, 1000000000u, buf, sizeof(buf));
    assert_string_equal(buf,
        "  0.001500 client     connect      fd=3   127.0.0.1:7"
        "                          = -1 ECONNREFUSED  CLOSE\n");
    assert_int_equal(n, strlen(buf));

    /* A connection number, a listening socket's queue, an established socket's RTT. */
    ev = (sf_trace_event){ .side = "server", .id = 12, .call = SF_CALL_LISTEN, .fd = 6,
                           .args = "backlog=511", .result = 0, .proto = "tcp",
                           .tcp_state = SF_TCP_LISTEN, .accept_queue = 2, .t_ns = 7 };
    sf_trace_format(&ev, SF_TRACE_TEXT, 0, 7, buf, sizeof(buf));
    assert_string_equal(buf,
        "  0.000000 server#12  listen       fd=6   backlog=511"
        "                          = 0                LISTEN queue=2\n");
    ev.call = SF_CALL_READ;
    ev.args = "len=9";
    ev.result = 9;
    ev.tcp_state = SF_TCP_ESTABLISHED;
    ev.rtt_us = 31;
    ev.accept_queue = -1;
    ev.fd = -1;
    sf_trace_format(&ev, SF_TRACE_TEXT, 0, 7, buf, sizeof(buf));
    assert_string_equal(buf,
        "  0.000000 server#12  read         -      len=9"
        "                                = 9                ESTABLISHED rtt=31us\n");
    /* No protocol (a pipe): no state. */
    ev.proto = NULL;
    ev.tcp_state = SF_TCP_NONE;
    sf_trace_format(&ev, SF_TRACE_TEXT, 0, 7, buf, sizeof(buf));
    assert_string_equal(buf,
        "  0.000000 server#12  read         -      len=9"
        "                                = 9                -\n");
}

static void
format_json_line(void **state)
{
    sf_trace_event ev = refused_event();
    char buf[1024];

    (void)state;
    sf_trace_format(&ev, SF_TRACE_JSON, 0, 0, buf, sizeof(buf));
    assert_string_equal(buf,
        "{\"event\":\"call\",\"t_ns\":1001500000,\"side\":\"client\",\"id\":0,"
        "\"call\":\"connect\",\"fd\":3,\"args\":\"127.0.0.1:7\",\"result\":-1,"
        "\"errno\":\"ECONNREFUSED\",\"proto\":\"tcp\",\"state\":\"CLOSE\","
        "\"local\":null,\"peer\":null}\n");

    /* Strings are escaped; optional fields appear only when they mean something. */
    ev = (sf_trace_event){ .side = "s", .call = SF_CALL_CLOSE, .fd = 4, .args = "a\"b\\c\001",
                           .proto = "tcp", .tcp_state = SF_TCP_TIME_WAIT,
                           .tcp_state_before = SF_TCP_CLOSE, .accept_queue = -1,
                           .local = "[::1]:5", .peer = "[::1]:6", .t_ns = 9 };
    sf_trace_format(&ev, SF_TRACE_JSON, 0, 0, buf, sizeof(buf));
    assert_string_equal(buf,
        "{\"event\":\"call\",\"t_ns\":9,\"side\":\"s\",\"id\":0,\"call\":\"close\",\"fd\":4,"
        "\"args\":\"a\\\"b\\\\c\\u0001\",\"result\":0,\"errno\":null,\"proto\":\"tcp\","
        "\"state\":\"TIME_WAIT\",\"state_before\":\"CLOSE\",\"local\":\"[::1]:5\","
        "\"peer\":\"[::1]:6\"}\n");

    ev = (sf_trace_event){ .side = "s", .call = SF_CALL_READ, .fd = 4, .args = "len=3",
                           .result = 3, .proto = "tcp", .tcp_state = SF_TCP_ESTABLISHED,
                           .rtt_us = 5, .accept_queue = -1, .data = "\x01\xff" "a",
                           .datalen = 3, .t_ns = 1 };
    sf_trace_format(&ev, SF_TRACE_JSON, SF_TRACE_F_DATA, 0, buf, sizeof(buf));
    assert_string_equal(buf,
        "{\"event\":\"call\",\"t_ns\":1,\"side\":\"s\",\"id\":0,\"call\":\"read\",\"fd\":4,"
        "\"args\":\"len=3\",\"result\":3,\"errno\":null,\"proto\":\"tcp\","
        "\"state\":\"ESTABLISHED\",\"rtt_us\":5,\"local\":null,\"peer\":null,"
        "\"data\":\"01ff61\",\"data_len\":3}\n");
}

static void
format_data_and_explain(void **state)
{
    static const char payload[20] = "0123456789abcdef\n\001xy";
    sf_trace_event ev = {
        .side = "c", .call = SF_CALL_WRITE, .fd = 5, .args = "len=20", .result = 20,
        .proto = "tcp", .tcp_state = SF_TCP_ESTABLISHED, .accept_queue = -1,
        .data = payload, .datalen = 20,
    };
    char buf[2048], *nl;

    (void)state;
    sf_trace_format(&ev, SF_TRACE_TEXT, SF_TRACE_F_DATA | SF_TRACE_F_EXPLAIN, 0, buf,
                    sizeof(buf));
    nl = strchr(buf, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1,
        "                 > write(): you talk: 20 bytes go into the line.\n"
        "                 0000  30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66"
        "  0123456789abcdef\n"
        "                 0010  0a 01 78 79                                    "
        "  ..xy\n");
    /* Data is shown only when asked for. */
    sf_trace_format(&ev, SF_TRACE_TEXT, 0, 0, buf, sizeof(buf));
    assert_ptr_equal(strchr(buf, '\n'), buf + strlen(buf) - 1);
}

/* Like snprintf: the length the whole entry needs, whatever the room. */
static void
format_reports_needed_length(void **state)
{
    sf_trace_event ev = refused_event();
    char full[512], small[20];
    size_t n, m;

    (void)state;
    n = sf_trace_format(&ev, SF_TRACE_JSON, SF_TRACE_F_EXPLAIN, 0, full, sizeof(full));
    assert_int_equal(n, strlen(full));
    memset(small, 'x', sizeof(small));
    m = sf_trace_format(&ev, SF_TRACE_JSON, SF_TRACE_F_EXPLAIN, 0, small, sizeof(small));
    assert_int_equal(m, n);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, full, sizeof(small) - 1);
    assert_int_equal(sf_trace_format(&ev, SF_TRACE_TEXT, 0, 0, NULL, 0),
                     sf_trace_format(&ev, SF_TRACE_TEXT, 0, 0, full, sizeof(full)));
}

static void
explain_sentences(void **state)
{
    sf_trace_event ev = {
        .side = "s", .call = SF_CALL_LISTEN, .fd = 3, .args = "backlog=511", .proto = "tcp",
        .tcp_state = SF_TCP_LISTEN, .accept_queue = 0,
    };
    char buf[512], tiny[8];
    sf_addr to = unit_loopback(AF_INET, 9);

    (void)state;
    assert_ptr_equal(sf_trace_explain(&ev, buf, sizeof(buf)), buf);
    /* The switchboard answers; accept() later takes the call off hold (the picture
     * no longer says both "the kernel answers" and "you answered"). */
    assert_string_equal(buf, "listen(): the phone is switched on and can ring (LISTEN). "
                        "From now on a switchboard in the kernel answers callers by itself "
                        "(the three-way handshake) and puts each answered call on hold for "
                        "accept() (backlog=511).");
    ev = refused_event();
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_string_equal(buf, "connect(): nobody answers at that number (ECONNREFUSED): no "
                        "phone is switched on there, and the kernel at the other end said "
                        "so with a reset.");
    ev = (sf_trace_event){ .side = "s", .call = SF_CALL_ACCEPT4, .fd = 3, .args = "peer=NULL",
                           .result = -1, .err = EAGAIN, .proto = "tcp",
                           .tcp_state = SF_TCP_LISTEN, .accept_queue = 0,
                           .notes = SF_TRACE_N_NO_ADDR };
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_string_equal(buf, "accept(): nobody is calling: no finished call waits in the "
                        "queue and this phone does not wait (nonblocking), so accept() "
                        "returns EAGAIN at once.");
    ev = (sf_trace_event){ .side = "s", .call = SF_CALL_READ, .fd = 3, .args = "len=1",
                           .result = 0, .proto = "tcp", .tcp_state = SF_TCP_CLOSE_WAIT,
                           .accept_queue = -1 };
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_string_equal(buf, "read() returned 0: the other side hung up (its FIN arrived). "
                        "This side is now CLOSE_WAIT: it may still talk, and should hang "
                        "up too.");
    ev = (sf_trace_event){ .side = "s", .call = SF_CALL_CLOSE, .fd = 3, .args = "",
                           .proto = "tcp", .tcp_state = SF_TCP_FIN_WAIT1,
                           .tcp_state_before = SF_TCP_ESTABLISHED, .accept_queue = -1 };
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_string_equal(buf, "close(): you hang up first: a FIN goes out and the connection "
                        "is now FIN_WAIT1. The other side will read() 0 and sit in "
                        "CLOSE_WAIT until it hangs up too; this side ends in TIME_WAIT.");
    /* The address comes from the event's value, not from its args text. */
    ev = (sf_trace_event){ .side = "c", .call = SF_CALL_SENDTO, .fd = 3,
                           .args = "len=4, to=10.9.9.9:1", .result = 4, .proto = "udp",
                           .accept_queue = -1, .addr = &to };
    sf_trace_explain(&ev, buf, sizeof(buf));
    assert_string_equal(buf, "sendto(): a letter of 4 bytes is posted to 127.0.0.1:9: no "
                        "dialling, no answer to wait for; it just goes.");
    /* A short buffer is cut and terminated. */
    sf_trace_explain(&ev, tiny, sizeof(tiny));
    assert_string_equal(tiny, "sendto(");
}

/* ---- the FILE sink ---- */

static size_t
slurp(FILE *f, char *buf, size_t cap)
{
    size_t n;

    fflush(f);
    rewind(f);
    n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    return n;
}

static void
sink_writes_whole_lines(void **state)
{
    static char out[65536];
    sf_trace_sink sink;
    sf_trace t;
    FILE *f = tmpfile();
    sf_addr a = unit_loopback(AF_INET, 0);
    char *line, *save = NULL;
    int fd, n = 0;
    sf_err err;

    (void)state;
    assert_non_null(f);
    sf_trace_sink_init(&sink, f, SF_TRACE_JSON, SF_TRACE_F_DATA);
    assert_ptr_equal(sink.tracer.ud, &sink);
    assert_true(sink.tracer.with_data);
    assert_true(sink.t0_ns > 0 && sink.t0_ns <= sf_now_ns());
    t = (sf_trace){ .tracer = &sink.tracer, .side = "server" };
    sf_trace_sink_note(&sink, "section", "step %d: \"listen\"", 1);
    fd = sf_tcp_listen(&t, &a, NULL, &err);
    assert_true(fd >= 0);
    sf_close(&t, fd);
    slurp(f, out, sizeof(out));
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        if (n == 0) {
            assert_int_equal(strncmp(line, "{\"event\":\"section\",\"t_ns\":", 26), 0);
            assert_non_null(strstr(line, ",\"text\":\"step 1: \\\"listen\\\"\"}"));
            continue;
        }
        assert_int_equal(strncmp(line, "{\"event\":\"call\",", 16), 0);
        assert_int_equal(line[strlen(line) - 1], '}');
    }
    assert_int_equal(n, 1 + 5);     /* socket setsockopt bind listen close */
    fclose(f);

    /* Text: notes as given; an entry longer than the sink's stack buffer whole. */
    f = tmpfile();
    assert_non_null(f);
    sf_trace_sink_init(&sink, f, SF_TRACE_TEXT, SF_TRACE_F_DATA | SF_TRACE_F_EXPLAIN);
    t = (sf_trace){ .tracer = &sink.tracer, .side = "client" };
    sf_trace_sink_note(&sink, "ignored", "-- %s --", "part two");
    {
        static char big[3000];

        memset(big, 'q', sizeof(big));
        sf_trace_call(&t, SF_CALL_WRITE, -1, (long)sizeof(big), 0,
                      &(sf_trace_about){ .data = big, .datalen = sizeof(big) }, "len=%zu",
                      sizeof(big));
    }
    n = (int)slurp(f, out, sizeof(out));
    assert_int_equal(strncmp(out, "-- part two --\n", 15), 0);
    assert_non_null(strstr(out, " client     write        -      len=3000 "));
    /* 3000 bytes: 188 dump lines of 16 (the last of 8) after the line and explanation */
    assert_non_null(strstr(out, "                 0bb0  71 71 71 71 71 71 71 71"));
    assert_int_equal(out[n - 1], '\n');
    fclose(f);
}

/* A captured segment goes through the same sink as the calls, aligned with them. */
static void
segments_in_the_sink(void **state)
{
    static char out[4096];
    sf_trace_segment sg = { .t_ns = 0, .src = "127.0.0.1:40000", .dst = "127.0.0.1:7",
                            .flags = SF_SEG_SYN | SF_SEG_ACK, .seq = 1, .ack = 2,
                            .win = 65483, .len = 0 };
    sf_trace_sink sink;
    char buf[512];
    FILE *f = tmpfile();

    (void)state;
    sf_trace_format_segment(&sg, SF_TRACE_TEXT, 0, buf, sizeof(buf));
    assert_string_equal(buf,
        "  0.000000 wire       [S.]         -      127.0.0.1:40000 > 127.0.0.1:7"
        "          seq=1 ack=2 win=65483 len=0\n");
    sg.flags = SF_SEG_ACK;
    sf_trace_format_segment(&sg, SF_TRACE_JSON, 0, buf, sizeof(buf));
    assert_string_equal(buf,
        "{\"event\":\"segment\",\"t_ns\":0,\"src\":\"127.0.0.1:40000\","
        "\"dst\":\"127.0.0.1:7\",\"flags\":\".\",\"seq\":1,\"ack\":2,\"win\":65483,"
        "\"len\":0}\n");
    assert_non_null(f);
    sf_trace_sink_init(&sink, f, SF_TRACE_JSON, 0);
    sg.flags = SF_SEG_FIN | SF_SEG_ACK;
    sf_trace_segment_emit(&sink.tracer, &sg);
    sf_trace_segment_emit(NULL, &sg);
    slurp(f, out, sizeof(out));
    assert_non_null(strstr(out, "\"flags\":\"F.\""));
    assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
    fclose(f);
}

typedef struct sink_writer {
    sf_trace t;
    int n;
} sink_writer;

static void *
sink_writer_main(void *arg)
{
    sink_writer *w = arg;
    char args[200];

    memset(args, w->t.side[0], sizeof(args) - 1);
    args[sizeof(args) - 1] = '\0';
    for (int i = 0; i < w->n; i++)
        sf_trace_call(&w->t, SF_CALL_WRITE, -1, i, 0, NULL, "%s", args);
    return NULL;
}

/* Several threads tracing at once: every line whole, none mixed with another. */
static void
sink_lines_never_mix(void **state)
{
    static char out[1 << 20];
    sf_trace_sink sink;
    sink_writer w[3];
    pthread_t th[3];
    char *line, *save = NULL;
    FILE *f = tmpfile();
    int n = 0;

    (void)state;
    assert_non_null(f);
    sf_trace_sink_init(&sink, f, SF_TRACE_TEXT, 0);
    for (int i = 0; i < 3; i++) {
        w[i] = (sink_writer){ .t = { .tracer = &sink.tracer, .side = i == 0 ? "a"
                                      : i == 1 ? "b" : "c" }, .n = 300 };
        assert_int_equal(pthread_create(&th[i], NULL, sink_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(unit_join(th[i], 20000, NULL), 0);
    slurp(f, out, sizeof(out));
    for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        char who = line[11], run[200];

        assert_true(who == 'a' || who == 'b' || who == 'c');
        memset(run, who, sizeof(run) - 1);
        run[sizeof(run) - 1] = '\0';
        assert_non_null(strstr(line, run));
    }
    assert_int_equal(n, 900);
    fclose(f);
}

static void
clock_is_monotonic(void **state)
{
    struct timespec ts;
    uint64_t a, b, c;

    (void)state;
    a = sf_now_ns();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unit_sleep_ms(20);
    b = sf_now_ns();
    c = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    assert_true(a <= c);
    assert_true(b - a >= 20 * 1000000u);
    assert_true(b - a < 2000 * 1000000u);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(state_names),
        cmocka_unit_test(state_of_non_tcp),
        cmocka_unit_test(states_through_the_flow),
        cmocka_unit_test(state_lookup_by_addresses),
        cmocka_unit_test(call_builds_event),
        cmocka_unit_test(call_off_is_silent),
        cmocka_unit_test(call_truncates_args),
        cmocka_unit_test(sock_calls_are_traced),
        cmocka_unit_test(accept_reports_new_socket),
        cmocka_unit_test(close_reports_before_and_after),
        cmocka_unit_test(udp_calls_are_traced),
        cmocka_unit_test(data_is_traced_when_asked),
        cmocka_unit_test(calls_have_names_and_explainers),
        cmocka_unit_test(sock_calls_carry_values),
        cmocka_unit_test(connect_from_a_bound_port),
        cmocka_unit_test(explain_option_by_value),
        cmocka_unit_test(lookup_is_an_event),
        cmocka_unit_test(net_counters),
        cmocka_unit_test(entry_and_return_of_a_blocking_call),
        cmocka_unit_test(write_without_a_connection),
        cmocka_unit_test(explain_listener_close),
        cmocka_unit_test(format_narrow_lines),
        cmocka_unit_test(wrap_counts_columns),
        cmocka_unit_test(explain_in_the_seeds_words),
        cmocka_unit_test(format_text_line),
        cmocka_unit_test(format_json_line),
        cmocka_unit_test(format_data_and_explain),
        cmocka_unit_test(format_reports_needed_length),
        cmocka_unit_test(explain_sentences),
        cmocka_unit_test(sink_writes_whole_lines),
        cmocka_unit_test(sink_lines_never_mix),
        cmocka_unit_test(segments_in_the_sink),
        cmocka_unit_test(clock_is_monotonic),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
