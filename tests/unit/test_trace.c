/* test_trace: events per socket call, TCP states read with TCP_INFO, the clock. */
#include <netinet/in.h>

#include "unit.h"

#define MAX_REC 64

typedef struct rec_event {
    char side[16], call[32], args[256];
    unsigned long id;
    int fd, err, tcp_state, has_data;
    long result;
    uint32_t unacked;
    uint64_t t_ns;
    char data[64];
    size_t datalen;
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
    snprintf(o->side, sizeof(o->side), "%s", e->side);
    snprintf(o->call, sizeof(o->call), "%s", e->call);
    snprintf(o->args, sizeof(o->args), "%s", e->args);
    o->id = e->id;
    o->fd = e->fd;
    o->err = e->err;
    o->tcp_state = e->tcp_state;
    o->result = e->result;
    o->unacked = e->unacked;
    o->t_ns = e->t_ns;
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

/* Not TCP, or no socket: SF_TCP_NONE, and errno is left as it was. */
static void
state_of_non_tcp(void **state)
{
    uint32_t rtt = 99, unacked = 99;
    int sv[2], ufd, fd;

    (void)state;
    ufd = unit_udp_socket(AF_INET, NULL);
    errno = EDOM;
    assert_int_equal(sf_tcp_state(ufd, &rtt, &unacked), SF_TCP_NONE);
    assert_int_equal(errno, EDOM);
    assert_int_equal(rtt, 0);
    assert_int_equal(unacked, 0);
    assert_int_equal(sf_tcp_state(-1, NULL, NULL), SF_TCP_NONE);
    assert_int_equal(errno, EDOM);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(sf_tcp_state(sv[0], NULL, NULL), SF_TCP_NONE);
    /* A TCP socket nobody has bound or connected yet is CLOSE. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(sf_tcp_state(fd, NULL, NULL), SF_TCP_CLOSE);
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
    uint32_t rtt = 7, unacked = 7;
    int lfd, port, c1, c2, s1;
    char buf[4];

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    assert_int_equal(sf_tcp_state(lfd, &rtt, &unacked), SF_TCP_LISTEN);
    assert_int_equal(unacked, 0);
    assert_int_equal(rtt, 0);

    c1 = unit_tcp_client(AF_INET, port);
    c2 = unit_tcp_client(AF_INET, port);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; unit_now_ms() < end; unit_sleep_ms(5)) {
        sf_tcp_state(lfd, NULL, &unacked);
        if (unacked == 2)
            break;
    }
    assert_int_equal(unacked, 2);
    assert_int_equal(sf_tcp_state(c1, NULL, NULL), SF_TCP_ESTABLISHED);

    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    s1 = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(s1 >= 0);
    sf_tcp_state(lfd, NULL, &unacked);
    assert_int_equal(unacked, 1);
    assert_int_equal(sf_tcp_state(s1, NULL, &unacked), SF_TCP_ESTABLISHED);
    assert_int_equal(unacked, 0);

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
    sf_trace_call(&t, "write", -1, 5, 0, payload, 5, "len=%d, to=%s", 5, "x");
    assert_int_equal(errno, EDOM);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].side, "client");
    assert_int_equal(r.ev[0].id, 42);
    assert_string_equal(r.ev[0].call, "write");
    assert_int_equal(r.ev[0].fd, -1);
    assert_string_equal(r.ev[0].args, "len=5, to=x");
    assert_int_equal(r.ev[0].result, 5);
    assert_int_equal(r.ev[0].err, 0);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_NONE);
    assert_true(r.ev[0].t_ns >= before && r.ev[0].t_ns <= sf_now_ns());
    /* Payloads only when the sink asks for them. */
    assert_false(r.ev[0].has_data);
    assert_int_equal(r.ev[0].datalen, 5);

    tr.with_data = 1;
    t.side = NULL;
    sf_trace_call(&t, "read", 3, -1, ECONNRESET, payload, 5, "%s", "");
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[1].side, "-");
    assert_true(r.ev[1].has_data);
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
    sf_trace_call(NULL, "read", 0, 0, 0, NULL, 0, "%s", "");
    sf_trace_call(&no_tracer, "read", 0, 0, 0, NULL, 0, "%s", "");
    sf_trace_call(&no_fn, "read", 0, 0, 0, NULL, 0, "%s", "");
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
    sf_trace_call(&t, "bind", -1, 0, 0, NULL, 0, "%s", longarg);
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
    assert_string_equal(r.ev[1].call, "setsockopt");
    assert_string_equal(r.ev[1].args, "SO_REUSEADDR=1");
    assert_string_equal(r.ev[2].call, "bind");
    assert_string_equal(r.ev[2].args, "127.0.0.1:0");
    assert_int_equal(r.ev[2].result, 0);
    assert_string_equal(r.ev[3].call, "listen");
    assert_string_equal(r.ev[3].args, "backlog=511");
    assert_int_equal(r.ev[3].tcp_state, SF_TCP_LISTEN);
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
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_string_equal(r.ev[2].args, want);
    assert_int_equal(r.ev[2].result, -1);
    assert_int_equal(r.ev[2].err, EADDRINUSE);
    assert_string_equal(r.ev[3].call, "close");
    assert_int_equal(r.ev[3].err, 0);

    r.n = 0;
    assert_int_equal(sf_tcp_accept(&t, lfd, NULL), SF_EAGAIN);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].call, "accept4");
    assert_string_equal(r.ev[0].args, "peer=NULL");
    assert_int_equal(r.ev[0].err, EAGAIN);
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_LISTEN);

    /* close is reported with the state the socket had. */
    r.n = 0;
    assert_int_equal(sf_close(&t, lfd), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].call, "close");
    assert_int_equal(r.ev[0].tcp_state, SF_TCP_LISTEN);
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
    assert_string_equal(r.ev[1].call, "read");
    assert_string_equal(r.ev[1].args, "len=16");
    assert_int_equal(r.ev[1].datalen, 4);
    assert_memory_equal(r.ev[1].data, "ping", 4);
    assert_int_equal(r.ev[1].id, 3);
    close(sv[0]);
    close(sv[1]);
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
        cmocka_unit_test(call_builds_event),
        cmocka_unit_test(call_off_is_silent),
        cmocka_unit_test(call_truncates_args),
        cmocka_unit_test(sock_calls_are_traced),
        cmocka_unit_test(data_is_traced_when_asked),
        cmocka_unit_test(clock_is_monotonic),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
