/* test_relay: input → socket → output over TCP and UDP, from pipes and regular files. */
#include "unit.h"

/* A regular file holding len bytes of p, at offset 0. */
static int
file_with(const void *p, size_t len)
{
    FILE *f = tmpfile();
    int fd;

    assert_non_null(f);
    fd = dup(fileno(f));
    fclose(f);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static int
empty_file(void)
{
    return file_with("", 0);
}

/* The whole content of a regular file (up to cap bytes). */
static size_t
file_content(int fd, char *buf, size_t cap)
{
    ssize_t n;
    size_t got = 0;

    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

/* A pipe whose read end holds len bytes of p and whose write end is closed. */
static int
pipe_with(const void *p, size_t len)
{
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], p, len), len);
    close(fds[1]);
    return fds[0];
}

/* ---- peers in threads (they record; the test asserts) ---- */

/* Reads until the end of the stream, then answers with a line naming the count. */
typedef struct answer_peer {
    int fd;
    char got[256];
    size_t n;
    int saw_eof;
    int keep_open;      /* leave the socket open after answering */
} answer_peer;

static void *
answer_main(void *arg)
{
    answer_peer *p = arg;
    char line[64];
    int len;

    for (;;) {
        ssize_t r;

        if (unit_poll(p->fd, POLLIN, UNIT_WAIT_MS) == 0)
            return NULL;
        r = read(p->fd, p->got + p->n, sizeof(p->got) - p->n);
        if (r <= 0) {
            p->saw_eof = r == 0;
            break;
        }
        p->n += (size_t)r;
    }
    len = snprintf(line, sizeof(line), "reply:%zu\n", p->n);
    if (sf_write_full(NULL, p->fd, line, (size_t)len) != len)
        return NULL;
    if (!p->keep_open)
        close(p->fd);
    return NULL;
}

/* Echoes everything back, then half-closes and closes at the end of the stream. */
typedef struct echo_peer {
    int fd;
    int slow;
    size_t n;
    int ok;
} echo_peer;

static void *
echo_main(void *arg)
{
    echo_peer *p = arg;
    char buf[8192];

    for (;;) {
        ssize_t r;

        if (unit_poll(p->fd, POLLIN, UNIT_WAIT_MS) == 0)
            return NULL;
        r = read(p->fd, buf, sizeof(buf));
        if (r < 0)
            return NULL;
        if (r == 0)
            break;
        if (sf_write_full(NULL, p->fd, buf, (size_t)r) != r)
            return NULL;
        p->n += (size_t)r;
        /* slower than the input, so that the relay holds its input back often */
        if (p->slow)
            unit_sleep_ms(1);
    }
    p->ok = 1;
    close(p->fd);
    return NULL;
}

/* Writes len bytes of p to fd, then closes it. */
typedef struct feeder {
    int fd;
    const char *p;
    size_t len;
    ssize_t rc;
} feeder;

static void *
feed_main(void *arg)
{
    feeder *f = arg;

    f->rc = sf_write_full(NULL, f->fd, f->p, f->len);
    close(f->fd);
    return NULL;
}

typedef struct count_calls {
    int shutdowns;
    int writes;
} count_calls;

static void
count_event(void *ud, const sf_trace_event *ev)
{
    count_calls *c = ud;

    if (ev->call == SF_CALL_SHUTDOWN)
        c->shutdowns++;
    if (ev->call == SF_CALL_WRITE)
        c->writes++;
}

/* ---- TCP ---- */

/* End of input half-closes the socket (FIN): the peer sees exactly the input, then the
 * end, answers, and its close ends the relay. */
static void
tcp_input_then_fin(void **state)
{
    count_calls calls = { 0 };
    sf_tracer tr = { .fn = count_event, .ud = &calls };
    sf_trace t = { .tracer = &tr, .side = "client" };
    answer_peer peer = { 0 };
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "peer",
                        .trace = &t };
    char out[64];
    pthread_t th;
    sf_err err;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer.fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, answer_main, &peer), 0);
    o.in_fd = pipe_with("hello relay\n", 12);
    o.out_fd = empty_file();
    o.sock_fd = sv[0];
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_true(peer.saw_eof);
    assert_int_equal(peer.n, 12);
    assert_memory_equal(peer.got, "hello relay\n", 12);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), 9);
    assert_memory_equal(out, "reply:12\n", 9);
    assert_int_equal(calls.shutdowns, 1);
    assert_true(calls.writes >= 1);
    close(o.in_fd);
    close(o.out_fd);
    close(sv[0]);
}

/* A regular file as input (epoll cannot watch it) through a real echo server: the output
 * is the input, byte for byte. */
static void
tcp_file_through_echo_server(void **state)
{
    static char in[300000], out[300001];
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "echo" };
    unit_server u;
    sf_err err;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 61);
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 0);
    o.in_fd = file_with(in, sizeof(in));
    o.out_fd = empty_file();
    o.sock_fd = unit_tcp_client(AF_INET, u.port);
    alarm(30);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
    unit_server_stop(&u, NULL);
}

/* 1 MiB from a pipe to an echo peer and back into a file: backpressure both ways. */
static void
tcp_pipe_megabyte(void **state)
{
    static char in[1 << 20], out[(1 << 20) + 1];
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "peer" };
    echo_peer ep = { .slow = 1 };
    feeder fd_in = { .p = in, .len = sizeof(in) };
    pthread_t th_echo, th_feed;
    int sv[2], p[2];
    sf_err err;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 71);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(p), 0);
    ep.fd = sv[1];
    fd_in.fd = p[1];
    assert_int_equal(pthread_create(&th_echo, NULL, echo_main, &ep), 0);
    assert_int_equal(pthread_create(&th_feed, NULL, feed_main, &fd_in), 0);
    o.in_fd = p[0];
    o.out_fd = empty_file();
    o.sock_fd = sv[0];
    alarm(30);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th_feed, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(unit_join(th_echo, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(fd_in.rc, sizeof(in));
    assert_true(ep.ok);
    assert_int_equal(ep.n, sizeof(in));
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    close(p[0]);
    close(o.out_fd);
    close(sv[0]);
}

/* quit_after_eof_ms: a server that never closes no longer holds the relay. */
static void
tcp_quit_after_eof(void **state)
{
    sf_relay_opts o = { .quit_after_eof_ms = 100, .udp_wait_ms = -1, .peer = "peer" };
    answer_peer peer = { .keep_open = 1 };
    uint64_t t0, took;
    char out[64];
    pthread_t th;
    sf_err err;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    peer.fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, answer_main, &peer), 0);
    o.in_fd = pipe_with("q", 1);
    o.out_fd = empty_file();
    o.sock_fd = sv[0];
    t0 = unit_now_ms();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    took = unit_now_ms() - t0;
    assert_true(took >= 90 && took < 2000);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_true(peer.saw_eof);
    /* What came before the deadline was written out. */
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), 8);
    assert_memory_equal(out, "reply:1\n", 8);
    close(sv[1]);
    close(sv[0]);
    close(o.in_fd);
    close(o.out_fd);
}

typedef struct resetter {
    int fd;
    int delay_ms;
} resetter;

static void *
reset_main(void *arg)
{
    resetter *r = arg;
    struct linger lg = { 1, 0 };

    unit_sleep_ms(r->delay_ms);
    setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(r->fd);
    return NULL;
}

/* The server resets the connection while input is still open: the relay ends with the
 * reason, naming the peer. */
static void
tcp_reset_by_peer(void **state)
{
    char peer_s[SF_ADDR_STRLEN], want[96];
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1 };
    resetter rs = { .delay_ms = 50 };
    int lfd, port, p[2];
    pthread_t th;
    sf_addr a;
    sf_err err;

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    o.sock_fd = unit_tcp_client(AF_INET, port);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    rs.fd = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(rs.fd >= 0);
    a = unit_loopback(AF_INET, port);
    o.peer = sf_addr_format(&a, peer_s, sizeof(peer_s));
    assert_int_equal(pipe(p), 0);   /* input that never ends */
    o.in_fd = p[0];
    o.out_fd = empty_file();
    assert_int_equal(pthread_create(&th, NULL, reset_main, &rs), 0);
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), -ECONNRESET);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(err.code, -ECONNRESET);
    snprintf(want, sizeof(want), "recv 127.0.0.1:%d: Connection reset by peer", port);
    assert_string_equal(err.msg, want);
    close(p[0]);
    close(p[1]);
    close(o.out_fd);
    close(o.sock_fd);
    close(lfd);
}

/* Output that goes away (a closed pipe, as in `sockflow connect ... | head -1`) ends the
 * relay quietly. */
static void
tcp_output_closed(void **state)
{
    struct sigaction old, ign = { .sa_handler = SIG_IGN };
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "peer" };
    answer_peer peer = { .keep_open = 1 };
    int sv[2], out[2];
    pthread_t th;
    sf_err err;

    (void)state;
    sigaction(SIGPIPE, &ign, &old);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(pipe(out), 0);
    close(out[0]);
    peer.fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, answer_main, &peer), 0);
    o.in_fd = pipe_with("x", 1);
    o.out_fd = out[1];
    o.sock_fd = sv[0];
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    sigaction(SIGPIPE, &old, NULL);
    close(sv[0]);
    close(sv[1]);
    close(out[1]);
    close(o.in_fd);
}

static void
bad_socket(void **state)
{
    sf_relay_opts o = { .in_fd = -1, .out_fd = -1, .sock_fd = -1,
                        .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "127.0.0.1:9" };
    int before = unit_count_fds();
    sf_err err;

    (void)state;
    assert_int_equal(sf_relay(&o, &err), -EBADF);
    assert_string_equal(err.msg, "epoll_ctl 127.0.0.1:9: Bad file descriptor");
    assert_int_equal(unit_count_fds(), before);
}

/* ---- UDP ---- */

static void
udp_through_echo_server(void **state)
{
    sf_relay_opts o = { .udp = 1, .quit_after_eof_ms = -1, .udp_wait_ms = 200,
                        .peer = "echo" };
    uint64_t t0, took;
    unit_server u;
    char out[64];
    sf_addr a;
    sf_err err;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_UDP, 1);
    a = unit_loopback(AF_INET6, u.port);
    o.sock_fd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(o.sock_fd >= 0);
    o.in_fd = pipe_with("ping\n", 5);
    o.out_fd = empty_file();
    t0 = unit_now_ms();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    took = unit_now_ms() - t0;
    assert_true(took >= 190 && took < 3000);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), 5);
    assert_memory_equal(out, "ping\n", 5);
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
    unit_server_stop(&u, NULL);
}

/* A regular file as UDP input: read at once, sent as one datagram. */
static void
udp_file_input(void **state)
{
    sf_relay_opts o = { .udp = 1, .quit_after_eof_ms = -1, .udp_wait_ms = 150,
                        .peer = "echo" };
    sf_server_stats st;
    unit_server u;
    char out[64];
    sf_addr a;
    sf_err err;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_UDP, 0);
    a = unit_loopback(AF_INET, u.port);
    o.sock_fd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(o.sock_fd >= 0);
    o.in_fd = file_with("from a file", 11);
    o.out_fd = empty_file();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), 11);
    assert_memory_equal(out, "from a file", 11);
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 1);
}

/* Nobody on the port: the ICMP error comes back as ECONNREFUSED, named. */
static void
udp_refused(void **state)
{
    sf_relay_opts o = { .udp = 1, .quit_after_eof_ms = -1, .udp_wait_ms = 5000 };
    char peer_s[SF_ADDR_STRLEN], want[96];
    uint64_t t0;
    int port;
    sf_addr a;
    sf_err err;

    (void)state;
    port = unit_closed_port(AF_INET, SOCK_DGRAM);
    a = unit_loopback(AF_INET, port);
    o.peer = sf_addr_format(&a, peer_s, sizeof(peer_s));
    o.sock_fd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(o.sock_fd >= 0);
    o.in_fd = pipe_with("anyone?\n", 8);
    o.out_fd = empty_file();
    t0 = unit_now_ms();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), -ECONNREFUSED);
    alarm(UNIT_GUARD_SECS);
    assert_true(unit_now_ms() - t0 < 1000);
    snprintf(want, sizeof(want), "recv 127.0.0.1:%d: Connection refused", port);
    assert_string_equal(err.msg, want);
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_input_then_fin),
        cmocka_unit_test(tcp_file_through_echo_server),
        cmocka_unit_test(tcp_pipe_megabyte),
        cmocka_unit_test(tcp_quit_after_eof),
        cmocka_unit_test(tcp_reset_by_peer),
        cmocka_unit_test(tcp_output_closed),
        cmocka_unit_test(bad_socket),
        cmocka_unit_test(udp_through_echo_server),
        cmocka_unit_test(udp_file_input),
        cmocka_unit_test(udp_refused),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
