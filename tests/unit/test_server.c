/* test_server: the TCP and UDP engines, with echo and test services, run in a thread. */
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>

#include "unit.h"

/* ---- helpers ---- */

/* Send msg on a fresh connection to loopback:port and expect it back. */
static void
echo_roundtrip_tcp(int family, int port, const char *msg)
{
    size_t len = strlen(msg);
    char buf[256];
    int fd = unit_tcp_client(family, port);

    assert_int_equal(sf_write_full(NULL, fd, msg, len), len);
    assert_int_equal(unit_read_exact(fd, buf, len, UNIT_WAIT_MS), len);
    assert_memory_equal(buf, msg, len);
    close(fd);
}

/* One datagram of len bytes to loopback:port; returns the reply's length (-1: none in ms),
 * checking it is the same bytes. */
static ssize_t
echo_roundtrip_udp(int family, int port, size_t len, int ms)
{
    static char out[65536], in[65536];
    sf_addr a = unit_loopback(family, port);
    sf_err err;
    ssize_t n = -1;
    int fd = sf_udp_connect(NULL, &a, NULL, 1, &err);

    assert_true(fd >= 0);
    unit_fill_pattern(out, len, (unsigned)len);
    assert_int_equal(sf_write(NULL, fd, out, len), len);
    if (unit_poll(fd, POLLIN, ms) & POLLIN) {
        n = sf_read(NULL, fd, in, sizeof(in));
        assert_true(n >= 0);
        assert_int_equal(n, len);
        assert_memory_equal(in, out, len);
    }
    close(fd);
    return n;
}

/* Write to a nonblocking fd without reading until the connection takes nothing more for
 * 300 ms. Returns the bytes written. */
static size_t
flood(int fd, const char *pattern, size_t patlen, size_t max)
{
    uint64_t end = unit_now_ms() + 10000;
    size_t total = 0;

    while (total < max && unit_now_ms() < end) {
        size_t off = total % patlen, n = patlen - off;
        ssize_t w;

        if (n > max - total)
            n = max - total;
        w = sf_write(NULL, fd, pattern + off, n);
        if (w == SF_EAGAIN) {
            if (unit_poll(fd, POLLOUT, 300) == 0)
                break;
            continue;
        }
        /* The server may close a client that stalls it (send timeout): the flood ends. */
        if (w == -ECONNRESET || w == -EPIPE)
            break;
        assert_true(w > 0);
        total += (size_t)w;
    }
    return total;
}

/* Connect to loopback:port until the connection is refused (a closed listener), at most
 * UNIT_WAIT_MS; returns 1 if it was. */
static int
connect_until_refused(int port)
{
    sf_addr a = unit_loopback(AF_INET, port);

    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; unit_now_ms() < end;) {
        int c = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, NULL);

        if (c == -ECONNREFUSED)
            return 1;
        if (c >= 0)
            close(c);
        unit_sleep_ms(5);
    }
    return 0;
}

/* New clients of the echo at port until one gets its byte back, at most UNIT_WAIT_MS;
 * returns how many were turned away first (-1: never served). */
static int
connect_until_served(int port, char ch)
{
    int turned_away = 0;

    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; unit_now_ms() < end;) {
        int c = unit_tcp_client(AF_INET, port), served;
        char got;

        assert_int_equal(sf_write(NULL, c, &ch, 1), 1);
        served = unit_read_exact(c, &got, 1, UNIT_WAIT_MS) == 1 && got == ch;
        close(c);
        if (served)
            return turned_away;
        turned_away++;
        unit_sleep_ms(20);
    }
    return -1;
}

/* ---- listeners ---- */

static void
listen_port0_same_everywhere(void **state)
{
    sf_server_opts o = { .loops = 2 };
    char buf[SF_ADDR_STRLEN], want[SF_ADDR_STRLEN];
    int before = unit_count_fds();
    unit_server u;

    (void)state;
    unit_server_new(&u, &o, &sf_svc_echo, SF_PROTO_TCP | SF_PROTO_UDP, 1);
    assert_int_equal(sf_server_listener_count(u.s), 4);
    assert_true(u.port > 0);
    for (int i = 0; i < 4; i++) {
        const sf_listener *l = sf_server_listener(u.s, i);

        assert_non_null(l);
        assert_ptr_equal(l->svc, &sf_svc_echo);
        assert_int_equal(l->proto, i % 2 == 0 ? SF_PROTO_TCP : SF_PROTO_UDP);
        assert_int_equal(sf_addr_port(&l->addr), u.port);
        snprintf(want, sizeof(want), i < 2 ? "127.0.0.1:%d" : "[::1]:%d", u.port);
        assert_string_equal(sf_addr_format(&l->addr, buf, sizeof(buf)), want);
    }
    assert_null(sf_server_listener(u.s, 4));
    assert_null(sf_server_listener(u.s, -1));

    /* A second service on port 0 gets its own port, for both protocols. */
    {
        sf_addr a = unit_loopback(AF_INET, 0);
        sf_err err;
        int p2;

        assert_int_equal(sf_server_listen(u.s, &sf_svc_echo, &a, 1, 0,
                                          SF_PROTO_TCP | SF_PROTO_UDP, &err), 0);
        assert_int_equal(sf_server_listener_count(u.s), 6);
        p2 = sf_addr_port(&sf_server_listener(u.s, 4)->addr);
        assert_int_not_equal(p2, u.port);
        assert_int_equal(sf_addr_port(&sf_server_listener(u.s, 5)->addr), p2);
    }
    unit_server_stop(&u, NULL);
    assert_int_equal(unit_count_fds(), before);
}

static const sf_service tcp_only_svc = {
    .name = "tcponly",
    .protos = SF_PROTO_TCP,
};

static void
listen_limits_protocols(void **state)
{
    sf_addr addrs[2] = { unit_loopback(AF_INET, 0), unit_loopback(AF_INET6, 0) };
    sf_server *s;
    sf_err err;

    (void)state;
    s = sf_server_new(NULL, &err);
    assert_non_null(s);
    /* Only what the service offers is bound. */
    assert_int_equal(sf_server_listen(s, &tcp_only_svc, addrs, 2, 0,
                                      SF_PROTO_TCP | SF_PROTO_UDP, &err), 0);
    assert_int_equal(sf_server_listener_count(s), 2);
    assert_int_equal(sf_server_listener(s, 0)->proto, SF_PROTO_TCP);
    assert_int_equal(sf_server_listener(s, 1)->proto, SF_PROTO_TCP);
    assert_int_equal(sf_addr_family(&sf_server_listener(s, 1)->addr), AF_INET6);

    assert_int_equal(sf_server_listen(s, &tcp_only_svc, addrs, 2, 0, SF_PROTO_UDP, &err),
                     SF_EUSAGE);
    assert_string_equal(err.msg, "tcponly: no such protocol for this service");
    assert_int_equal(sf_server_listen(s, &sf_svc_echo, addrs, 0, 0, SF_PROTO_TCP, &err),
                     SF_EUSAGE);
    assert_string_equal(err.msg, "echo: no address for the service");

    assert_int_equal(sf_server_listen(s, &sf_svc_echo, addrs, 1, 0, SF_PROTO_UDP, &err), 0);
    assert_int_equal(sf_server_listener_count(s), 3);
    assert_int_equal(sf_server_listener(s, 2)->proto, SF_PROTO_UDP);
    sf_server_free(s);
}

/* A port in use on one address: a clear error, and what was bound before is undone. */
static void
listen_conflict_rolls_back(void **state)
{
    sf_addr addrs[2];
    char want[80];
    int taken, port, before, again;
    sf_server *s;
    sf_err err;

    (void)state;
    taken = unit_tcp_listener(AF_INET, 0, &port);
    addrs[0] = unit_loopback(AF_INET6, 0);
    addrs[1] = unit_loopback(AF_INET, 0);
    s = sf_server_new(NULL, &err);
    assert_non_null(s);
    before = unit_count_fds();
    assert_int_equal(sf_server_listen(s, &sf_svc_echo, addrs, 2, port, SF_PROTO_TCP, &err),
                     -EADDRINUSE);
    snprintf(want, sizeof(want), "bind 127.0.0.1:%d: Address already in use", port);
    assert_string_equal(err.msg, want);
    assert_int_equal(sf_server_listener_count(s), 0);
    assert_int_equal(unit_count_fds(), before);
    /* [::1]:port was bound first and given back. */
    {
        sf_addr a = unit_loopback(AF_INET6, port);

        again = sf_tcp_listen(NULL, &a, NULL, &err);
        assert_true(again >= 0);
        close(again);
    }
    sf_server_free(s);
    close(taken);
}

/* ---- echo ---- */

static void
echo_tcp_v4_v6(void **state)
{
    sf_server_stats st;
    unit_server u;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 1);
    echo_roundtrip_tcp(AF_INET, u.port, "hello over IPv4\n");
    echo_roundtrip_tcp(AF_INET6, u.port, "hello over IPv6\n");
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.bytes_in, 32);
    assert_int_equal(st.bytes_out, 32);
}

/* 1 MiB in, half-close, exactly the same 1 MiB back, then the end of the stream. */
static void
echo_tcp_half_close(void **state)
{
    static char out[1 << 20], in[(1 << 20) + 1];
    size_t sent = 0, got = 0;
    uint64_t end;
    unit_server u;
    int fd, shut = 0, eof = 0;

    (void)state;
    unit_fill_pattern(out, sizeof(out), 21);
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_set_nonblock(fd, 1), 0);
    end = unit_now_ms() + 20000;
    while (!eof && unit_now_ms() < end) {
        short ev = POLLIN | (sent < sizeof(out) ? POLLOUT : 0);
        int re = unit_poll(fd, ev, 1000);

        if (re & POLLOUT) {
            ssize_t n = sf_write(NULL, fd, out + sent, sizeof(out) - sent);

            assert_true(n > 0 || n == SF_EAGAIN);
            if (n > 0)
                sent += (size_t)n;
        }
        if (sent == sizeof(out) && !shut) {
            assert_int_equal(sf_shutdown_write(NULL, fd), 0);
            shut = 1;
        }
        if (re & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = sf_read(NULL, fd, in + got, sizeof(in) - got);

            assert_true(n >= 0 || n == SF_EAGAIN);
            if (n == 0)
                eof = 1;
            else if (n > 0)
                got += (size_t)n;
        }
    }
    assert_true(eof);
    assert_int_equal(got, sizeof(out));
    assert_memory_equal(in, out, sizeof(out));
    close(fd);
    unit_server_stop(&u, NULL);
}

static void
echo_udp_sizes(void **state)
{
    sf_server_stats st;
    unit_server u;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_UDP, 1);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 1, UNIT_WAIT_MS), 1);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 1472, UNIT_WAIT_MS), 1472);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 65507, UNIT_WAIT_MS), 65507);
    assert_int_equal(echo_roundtrip_udp(AF_INET6, u.port, 100, UNIT_WAIT_MS), 100);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 4);
    assert_int_equal(st.dgrams_out, 4);
    assert_int_equal(st.dgrams_truncated, 0);
    assert_int_equal(st.accepted, 0);
}

/* RFC 862 echoes what it receives: an empty datagram gets an empty one back, as from
 * inetd's echo. */
static void
echo_udp_empty_datagram(void **state)
{
    sf_server_stats st;
    unit_server u;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_UDP, 1);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 0, UNIT_WAIT_MS), 0);
    assert_int_equal(echo_roundtrip_udp(AF_INET6, u.port, 0, UNIT_WAIT_MS), 0);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 2);
    assert_int_equal(st.dgrams_out, 2);
}

/* Several loops (SO_REUSEPORT): every client is served, whichever loop takes it. */
static void
echo_several_loops(void **state)
{
    sf_server_opts o = { .loops = 3 };
    sf_server_stats st;
    unit_server u;
    int fds[12];

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP | SF_PROTO_UDP, 0);
    for (int i = 0; i < 12; i++) {
        fds[i] = unit_tcp_client(AF_INET, u.port);
        assert_int_equal(sf_write(NULL, fds[i], "loop", 4), 4);
    }
    for (int i = 0; i < 12; i++) {
        char buf[4];

        assert_int_equal(unit_read_exact(fds[i], buf, 4, UNIT_WAIT_MS), 4);
        assert_memory_equal(buf, "loop", 4);
        close(fds[i]);
    }
    for (int i = 0; i < 6; i++)
        assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 10, UNIT_WAIT_MS), 10);
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 12);
    assert_int_equal(st.dgrams_out, 6);
}

/* ---- limits ---- */

/* Above max_conns a client is closed at once; once a slot frees, the next is served. */
static void
max_conns_refuses_then_frees(void **state)
{
    sf_server_opts o = { .max_conns = 1 };
    sf_server_stats st;
    unit_server u;
    int a, b, served, refused = 1;
    char buf[4];

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP, 0);
    a = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_write(NULL, a, "a", 1), 1);
    assert_int_equal(unit_read_exact(a, buf, 1, UNIT_WAIT_MS), 1);

    b = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(unit_wait_eof(b, UNIT_WAIT_MS), 0);
    close(b);
    /* a is still served */
    assert_int_equal(sf_write(NULL, a, "A", 1), 1);
    assert_int_equal(unit_read_exact(a, buf, 1, UNIT_WAIT_MS), 1);
    assert_int_equal(buf[0], 'A');
    close(a);

    served = connect_until_served(u.port, 'c');
    assert_true(served >= 0);
    refused += served;
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.refused_max, refused);
}

/* How many connections a service sees open at once, at most. */
static atomic_int peak_open, peak_max;

static void
peak_on_open(sf_conn *c)
{
    int n = atomic_fetch_add(&peak_open, 1) + 1, m = atomic_load(&peak_max);

    (void)c;
    while (n > m && !atomic_compare_exchange_weak(&peak_max, &m, n))
        ;
}

static void
peak_on_close(sf_conn *c)
{
    (void)c;
    atomic_fetch_sub(&peak_open, 1);
}

static const sf_service peak_svc = {
    .name = "peak", .protos = SF_PROTO_TCP, .on_open = peak_on_open,
    .on_close = peak_on_close,
};

typedef struct churn_arg {
    int port;
    uint64_t end_ms;
} churn_arg;

/* Connect, stay a moment, leave; again and again until end_ms. */
static void *
churn_clients(void *arg)
{
    const churn_arg *ca = arg;
    sf_addr a = unit_loopback(AF_INET, ca->port);

    while (unit_now_ms() < ca->end_ms) {
        int fds[25];

        for (int i = 0; i < 25; i++)
            fds[i] = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, NULL);
        unit_sleep_ms(2);
        for (int i = 0; i < 25; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    }
    return NULL;
}

/* With several loops the cap holds exactly: 8 threads of clients coming and going
 * around max_conns at 4 loops never have more than max_conns open at once (a
 * check-then-increment let two loops admit the last free slot together). */
static void
max_conns_exact_with_several_loops(void **state)
{
    enum { MAX = 50, THREADS = 8 };
    sf_server_opts o = { .loops = 4, .max_conns = MAX };
    pthread_t th[THREADS];
    churn_arg ca;
    sf_server_stats st;
    unit_server u;

    (void)state;
    atomic_store(&peak_open, 0);
    atomic_store(&peak_max, 0);
    unit_server_start(&u, &o, &peak_svc, SF_PROTO_TCP, 0);
    ca = (churn_arg){ u.port, unit_now_ms() + 2000 };
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, churn_clients, &ca), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(unit_join(th[i], UNIT_WAIT_MS + 2000, NULL), 0);
    unit_server_stop(&u, &st);
    assert_true(st.refused_max > 0);
    assert_true(atomic_load(&peak_max) <= MAX);
    assert_int_equal(atomic_load(&peak_max), MAX);
}

/* What an accepted socket was given, as its service sees it at on_open. */
static atomic_int opened_sndbuf, opened_nodelay;

static void
sockopt_on_open(sf_conn *c)
{
    int v = 0, nd = 0;
    socklen_t len = sizeof(v);

    assert_int_equal(getsockopt(sf_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &v, &len), 0);
    assert_int_equal(getsockopt(sf_conn_fd(c), IPPROTO_TCP, TCP_NODELAY, &nd, &len), 0);
    atomic_store(&opened_nodelay, nd ? 1 : 2);
    atomic_store(&opened_sndbuf, v);
}

static const sf_service sockopt_svc = {
    .name = "sockopt", .protos = SF_PROTO_TCP, .on_open = sockopt_on_open,
};

/* What one client that never reads can pin in the kernel is bounded by queue_cap too:
 * the accepted socket's send buffer is fixed (no autotuning), the kernel's double of
 * max(queue_cap, 1 MiB). */
static void
accepted_send_buffer_follows_queue_cap(void **state)
{
    size_t caps[] = { 256 * 1024, 16 * 1024, 4 * 1024 * 1024 };

    (void)state;
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        sf_server_opts o = { .queue_cap = caps[i] };
        size_t want = 2 * (caps[i] > 1048576 ? caps[i] : 1048576);
        unit_server u;
        int fd;

        atomic_store(&opened_sndbuf, 0);
        unit_server_start(&u, &o, &sockopt_svc, SF_PROTO_TCP, 0);
        fd = unit_tcp_client(AF_INET, u.port);
        for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
             atomic_load(&opened_sndbuf) == 0 && unit_now_ms() < end;)
            unit_sleep_ms(5);
        assert_int_equal(atomic_load(&opened_sndbuf), want);
        close(fd);
        unit_server_stop(&u, NULL);
    }
}

/* Accepted sockets have TCP_NODELAY (inherited from the listener): the second write of
 * a message longer than one read must not wait for a delayed ACK (~40 ms). */
static void
accepted_sockets_nodelay(void **state)
{
    unit_server u;
    int fd;

    (void)state;
    atomic_store(&opened_nodelay, 0);
    unit_server_start(&u, NULL, &sockopt_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
         atomic_load(&opened_nodelay) == 0 && unit_now_ms() < end;)
        unit_sleep_ms(5);
    assert_int_equal(atomic_load(&opened_nodelay), 1);
    close(fd);
    unit_server_stop(&u, NULL);
}

/* A datagram bigger than dgram_max is dropped and counted, never echoed cut. */
static void
dgram_max_drops_bigger(void **state)
{
    sf_server_opts o = { .dgram_max = 100 };
    sf_server_stats st;
    unit_server u;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_UDP, 0);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 101, 300), -1);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 65507, 300), -1);
    assert_int_equal(echo_roundtrip_udp(AF_INET, u.port, 100, UNIT_WAIT_MS), 100);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 3);
    assert_int_equal(st.dgrams_truncated, 2);
    assert_int_equal(st.dgrams_out, 1);
}

/* Replies to a source address are held to its budget (udp_rate a second, udp_burst at
 * once), whatever its port; another address has its own. */
static int
count_replies(int fd, int ms)
{
    char buf[64];
    int n = 0;

    while (unit_poll(fd, POLLIN, ms) & POLLIN) {
        if (sf_read(NULL, fd, buf, sizeof(buf)) > 0)
            n++;
    }
    return n;
}

static void
udp_rate_per_source(void **state)
{
    sf_server_opts o = { .udp_rate = 1, .udp_burst = 5 };
    sf_server_stats st;
    unit_server u;
    int a, b;
    sf_addr to, to6;
    sf_err err;
    int a2;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_UDP, 1);
    to = unit_loopback(AF_INET, u.port);
    to6 = unit_loopback(AF_INET6, u.port);
    a = sf_udp_connect(NULL, &to, NULL, 1, &err);
    a2 = sf_udp_connect(NULL, &to, NULL, 1, &err);
    b = sf_udp_connect(NULL, &to6, NULL, 1, &err);
    assert_true(a >= 0 && a2 >= 0 && b >= 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(sf_write(NULL, a, "r", 1), 1);
    assert_int_equal(count_replies(a, 300), 5);
    /* the same address from another port: the same, spent, budget */
    assert_int_equal(sf_write(NULL, a2, "r", 1), 1);
    assert_int_equal(count_replies(a2, 300), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(sf_write(NULL, b, "s", 1), 1);
    assert_int_equal(count_replies(b, 300), 3);
    close(a);
    close(a2);
    close(b);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 24);
    assert_int_equal(st.dgrams_out, 8);
    assert_int_equal(st.dgrams_rate, 16);
}

/* One budget per source whatever the loops: SO_REUSEPORT spreads one address's
 * datagrams over the loops by source port, and each loop's own budget would multiply
 * it by the number of loops. */
static void
udp_rate_one_budget_across_loops(void **state)
{
    enum { SOCKS = 32, EACH = 10 };
    sf_server_opts o = { .loops = 4, .udp_rate = 1, .udp_burst = 40 };
    sf_server_stats st;
    unit_server u;
    sf_addr to;
    int fds[SOCKS], replies = 0;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_UDP, 0);
    to = unit_loopback(AF_INET, u.port);
    for (int i = 0; i < SOCKS; i++)
        assert_true((fds[i] = sf_udp_connect(NULL, &to, NULL, 1, NULL)) >= 0);
    for (int k = 0; k < EACH; k++)
        for (int i = 0; i < SOCKS; i++)
            assert_int_equal(sf_write(NULL, fds[i], "r", 1), 1);
    for (int i = 0; i < SOCKS; i++) {
        replies += count_replies(fds[i], i == 0 ? 300 : 20);
        close(fds[i]);
    }
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, SOCKS * EACH);
    /* the burst, and the one token a second the run may have added */
    assert_true(replies >= 40 && replies <= 42);
    assert_int_equal(st.dgrams_out, replies);
}

/* Send one UDP datagram to 127.0.0.1:to that claims to come from 127.0.0.1:from, through
 * a raw socket (root only); 0, or -1 when raw sockets are not allowed. */
static int
forge_udp_v4(int from, int to, const char *payload, size_t len)
{
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = 0,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    unsigned char pkt[64];
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    ssize_t n;

    if (fd < 0)
        return -1;
    assert_true(len + 8 <= sizeof(pkt));
    /* The UDP header: ports, length, checksum 0 (none, allowed over IPv4). */
    pkt[0] = (unsigned char)(from >> 8);
    pkt[1] = (unsigned char)from;
    pkt[2] = (unsigned char)(to >> 8);
    pkt[3] = (unsigned char)to;
    pkt[4] = (unsigned char)((len + 8) >> 8);
    pkt[5] = (unsigned char)(len + 8);
    pkt[6] = pkt[7] = 0;
    memcpy(pkt + 8, payload, len);
    n = sendto(fd, pkt, len + 8, 0, (struct sockaddr *)&dst, sizeof(dst));
    close(fd);
    assert_int_equal(n, (ssize_t)len + 8);
    return 0;
}

/* One forged datagram between two echo servers on ordinary ports (CVE-2024-2169): the
 * default per-source burst is small, so the ping-pong dies within about 20 datagrams
 * instead of running through a burst of a thousand (or for ever). */
static void
udp_loop_between_servers_dies(void **state)
{
    sf_server_stats sa, sb;
    unit_server a, b;

    /* The default burst, with a rate slow enough that refilling cannot keep a loop
     * going on a loaded machine (an exchange can take a millisecond there, which the
     * default 1000 a second would refill). */
    sf_server_opts o = { .udp_rate = 100 };

    (void)state;
    unit_server_start(&a, &o, &sf_svc_echo, SF_PROTO_UDP, 0);
    unit_server_start(&b, &o, &sf_svc_echo, SF_PROTO_UDP, 0);
    if (forge_udp_v4(a.port, b.port, "loop", 4) < 0) {
        unit_server_stop(&a, NULL);
        unit_server_stop(&b, NULL);
        skip();     /* raw sockets need root (CAP_NET_RAW) */
    }
    unit_sleep_ms(1000);
    unit_server_stop(&a, &sa);
    unit_server_stop(&b, &sb);
    assert_true(sb.dgrams_out >= 1);            /* the loop did start */
    assert_in_range(sa.dgrams_out + sb.dgrams_out, 2, 24);
    assert_true(sa.dgrams_rate + sb.dgrams_rate == 1);  /* and a drop ended it */
}

/* No reply to a datagram whose source port is one this server serves (two servers
 * answering each other forever); the same request from an ordinary port is answered. */
static void
udp_no_reply_to_served_port(void **state)
{
    sf_addr v4 = unit_loopback(AF_INET, 0), v6 = unit_loopback(AF_INET6, 0), to, from;
    sf_server_stats st;
    unit_server u;
    int p1, p2, fd;
    sf_err err;

    (void)state;
    memset(&u, 0, sizeof(u));
    u.s = sf_server_new(NULL, &err);
    assert_non_null(u.s);
    assert_int_equal(sf_server_listen(u.s, &sf_svc_echo, &v4, 1, 0, SF_PROTO_UDP, &err), 0);
    p1 = sf_addr_port(&sf_server_listener(u.s, 0)->addr);
    assert_int_equal(sf_server_listen(u.s, &sf_svc_echo, &v6, 1, 0, SF_PROTO_UDP, &err), 0);
    p2 = sf_addr_port(&sf_server_listener(u.s, 1)->addr);
    unit_server_run(&u);

    /* From [::1]:p1 (free on ::1, served on 127.0.0.1) to [::1]:p2. */
    from = unit_loopback(AF_INET6, p1);
    to = unit_loopback(AF_INET6, p2);
    fd = sf_udp_connect(NULL, &to, &from, 1, &err);
    if (fd < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(sf_write(NULL, fd, "loop?", 5), 5);
    assert_int_equal(count_replies(fd, 300), 0);
    close(fd);
    assert_int_equal(echo_roundtrip_udp(AF_INET6, p2, 5, UNIT_WAIT_MS), 5);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_loop, 1);
    assert_int_equal(st.dgrams_out, 1);
}

/* Past SF_UDP_REPLY_FREE bytes, a reply is never larger than its request. */
static void
big_reply_datagram(sf_dgram *d)
{
    size_t n = (size_t)(unsigned char)d->in[0] * 8;

    memset(d->out, 'b', n);
    d->reply = d->out;
    d->reply_len = n;
}

static const sf_service big_reply_svc = {
    .name = "bigreply",
    .protos = SF_PROTO_UDP,
    .on_datagram = big_reply_datagram,
};

static void
udp_reply_size_bound(void **state)
{
    sf_server_stats st;
    unit_server u;
    char req[600];
    sf_addr to;
    sf_err err;
    int fd;

    (void)state;
    unit_server_start(&u, NULL, &big_reply_svc, SF_PROTO_UDP, 0);
    to = unit_loopback(AF_INET, u.port);
    fd = sf_udp_connect(NULL, &to, NULL, 1, &err);
    assert_true(fd >= 0);
    memset(req, 0, sizeof(req));
    req[0] = 64;                            /* 512 bytes for 1: free */
    assert_int_equal(sf_write(NULL, fd, req, 1), 1);
    assert_int_equal(count_replies(fd, 300), 1);
    req[0] = 65;                            /* 520 bytes for 1: refused */
    assert_int_equal(sf_write(NULL, fd, req, 1), 1);
    assert_int_equal(count_replies(fd, 300), 0);
    assert_int_equal(sf_write(NULL, fd, req, 520), 520);   /* 520 for 520: fine */
    assert_int_equal(count_replies(fd, 300), 1);
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_oversize, 1);
    assert_int_equal(st.dgrams_out, 2);
}

static void
idle_timeout_closes(void **state)
{
    unit_log log = { .mu = PTHREAD_MUTEX_INITIALIZER };
    sf_server_opts o = { .idle_timeout_ms = 100, .log = unit_keep_line, .log_ud = &log };
    sf_server_stats st;
    unit_server u;
    char want[96];
    sf_addr local;
    int fd, busy;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    /* A client that keeps talking is not idle. */
    busy = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_local_addr(fd, &local), 0);
    /* The busy one talks every 50 ms while the quiet one waits to be closed. */
    for (int i = 0; i < 60 && unit_poll(fd, POLLIN, 0) == 0; i++) {
        char c;

        assert_int_equal(sf_write(NULL, busy, "b", 1), 1);
        assert_int_equal(unit_read_exact(busy, &c, 1, UNIT_WAIT_MS), 1);
        unit_sleep_ms(50);
    }
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS), 0);
    snprintf(want, sizeof(want), "echo #1 127.0.0.1:%d: closed: idle timeout",
             sf_addr_port(&local));
    assert_true(unit_wait_line(&log, want, 0, UNIT_WAIT_MS));
    assert_int_equal(sf_write(NULL, busy, "B", 1), 1);
    {
        char c;

        assert_int_equal(unit_read_exact(busy, &c, 1, UNIT_WAIT_MS), 1);
    }
    close(busy);
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.timeouts, 1);
}

/* ---- backpressure ---- */

static atomic_size_t bp_max_queued;
static atomic_int bp_fd = -1;
static atomic_int bp_nobufs;
static atomic_int bp_other_errors;
static atomic_size_t bp_bytes_seen;

static void
bp_open(sf_conn *c)
{
    atomic_store(&bp_fd, sf_conn_fd(c));
}

static void
bp_note_queue(sf_conn *c)
{
    size_t q = sf_conn_queued(c), m = atomic_load(&bp_max_queued);

    while (q > m && !atomic_compare_exchange_weak(&bp_max_queued, &m, q))
        ;
}

/* echo, noting the most it ever had queued */
static void
bp_echo_data(sf_conn *c, char *data, size_t len)
{
    atomic_fetch_add(&bp_bytes_seen, len);
    if (sf_conn_send(c, data, len) < 0) {
        atomic_fetch_add(&bp_nobufs, 1);
        sf_conn_close(c, "output queue full");
        return;
    }
    bp_note_queue(c);
}

static void
bp_close(sf_conn *c)
{
    (void)c;
    atomic_store(&bp_fd, -2);
}

static const sf_service bp_echo_svc = {
    .name = "bpecho",
    .protos = SF_PROTO_TCP,
    .on_open = bp_open,
    .on_data = bp_echo_data,
    .on_close = bp_close,
};

static void
bp_reset(void)
{
    atomic_store(&bp_max_queued, 0);
    atomic_store(&bp_fd, -1);
    atomic_store(&bp_nobufs, 0);
    atomic_store(&bp_other_errors, 0);
    atomic_store(&bp_bytes_seen, 0);
}

/* Unread bytes waiting in fd's receive queue. */
static int
inq(int fd)
{
    int n = -1;

    assert_int_equal(ioctl(fd, SIOCINQ, &n), 0);
    return n;
}

/* An echo client that writes and never reads: the server queues at most queue_cap, stops
 * reading that client (its receive queue fills and stays still), and keeps the
 * connection; when the client reads at last, every byte comes back in order. */
static void
check_backpressure(size_t queue_cap)
{
    static char pattern[1 << 16], got[64 << 20];
    sf_server_opts o = { .queue_cap = queue_cap };
    sf_server_stats st;
    unit_server u;
    size_t total, n = 0;
    size_t seen;
    int fd, sfd;

    bp_reset();
    unit_fill_pattern(pattern, sizeof(pattern), 31);
    unit_server_start(&u, &o, &bp_echo_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_set_nonblock(fd, 1), 0);
    total = flood(fd, pattern, sizeof(pattern), sizeof(got));
    /* Bounded: the kernel buffers and one queue, nowhere near what a reader could take. */
    assert_true(total > 0 && total < sizeof(got));

    /* The server reads nothing more while bytes wait unread in its socket. */
    sfd = atomic_load(&bp_fd);
    assert_true(sfd >= 0);
    seen = atomic_load(&bp_bytes_seen);
    unit_sleep_ms(200);
    assert_true(inq(sfd) > 0);
    assert_int_equal(atomic_load(&bp_bytes_seen), seen);
    assert_true(seen < total);
    assert_true(atomic_load(&bp_max_queued) > 0);
    assert_true(atomic_load(&bp_max_queued) <= o.queue_cap);
    assert_int_equal(atomic_load(&bp_nobufs), 0);

    while (n < total) {
        ssize_t r = unit_read_exact(fd, got + n, total - n, UNIT_WAIT_MS);

        assert_true(r > 0);
        n += (size_t)r;
    }
    for (size_t off = 0; off < total; off += sizeof(pattern)) {
        size_t len = total - off < sizeof(pattern) ? total - off : sizeof(pattern);

        assert_memory_equal(got + off, pattern, len);
    }
    close(fd);
    /* The server hears the close before it is stopped (else nothing is counted closed). */
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
         atomic_load(&bp_fd) != -2 && unit_now_ms() < end;)
        unit_sleep_ms(5);
    unit_server_stop(&u, &st);
    assert_int_equal(st.queue_cap_hits, 0);
    assert_int_equal(st.bytes_in, total);
    assert_int_equal(st.bytes_out, total);
    assert_int_equal(st.closed, 1);
}

static void
backpressure_stops_reading(void **state)
{
    (void)state;
    check_backpressure(256 * 1024);
}

/* A queue smaller than one read: still backpressure, never "queue full" for echo. */
static void
backpressure_small_queue(void **state)
{
    (void)state;
    check_backpressure(4096);
}

/* A service that sends 64 MiB in numbered 1000-byte pieces as soon as a client comes,
 * to a client that is not reading: the socket fills, then the queue fills to its cap and
 * never past it, and every send after that fails with -ENOBUFS and is counted. What was
 * accepted arrives whole and in order. */
static atomic_int burst_sent, burst_done;

static void
burst_open(sf_conn *c)
{
    char piece[1000];

    atomic_store(&bp_fd, sf_conn_fd(c));
    memset(piece, '.', sizeof(piece));
    for (int i = 0; i < 65536; i++) {
        int rc;

        snprintf(piece, sizeof(piece), "%07d", i);
        piece[7] = '\n';
        rc = sf_conn_send(c, piece, sizeof(piece));
        if (rc == 0)
            atomic_fetch_add(&burst_sent, 1);
        else if (rc == -ENOBUFS)
            atomic_fetch_add(&bp_nobufs, 1);
        else
            atomic_fetch_add(&bp_other_errors, 1);
        bp_note_queue(c);
    }
    atomic_store(&burst_done, 1);
}

static const sf_service burst_svc = {
    .name = "burst",
    .protos = SF_PROTO_TCP,
    .on_open = burst_open,
};

static void
queue_never_passes_cap(void **state)
{
    static char got[64 << 20];
    sf_server_opts o = { .queue_cap = 16384 };
    sf_server_stats st;
    unit_server u;
    size_t want, n = 0;
    int fd;

    (void)state;
    bp_reset();
    atomic_store(&burst_sent, 0);
    atomic_store(&burst_done, 0);
    unit_server_start(&u, &o, &burst_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
         !atomic_load(&burst_done) && unit_now_ms() < end;)
        unit_sleep_ms(10);
    assert_true(atomic_load(&burst_done));
    assert_true(atomic_load(&bp_nobufs) > 0);
    assert_int_equal(atomic_load(&burst_sent) + atomic_load(&bp_nobufs), 65536);
    assert_true(atomic_load(&bp_max_queued) <= 16384);
    assert_true(atomic_load(&bp_max_queued) > 16384 - 1000);
    assert_int_equal(atomic_load(&bp_other_errors), 0);

    want = (size_t)atomic_load(&burst_sent) * 1000;
    while (n < want) {
        ssize_t r = unit_read_exact(fd, got + n, want - n, UNIT_WAIT_MS);

        assert_true(r > 0);
        n += (size_t)r;
    }
    for (size_t i = 0; i < want / 1000; i++) {
        char idx[24];

        snprintf(idx, sizeof(idx), "%07zu", i);
        assert_memory_equal(got + i * 1000, idx, 7);
        assert_int_equal(got[i * 1000 + 7], '\n');
        assert_int_equal(got[i * 1000 + 999], '.');
    }
    assert_int_equal(unit_poll(fd, POLLIN, 100), 0);
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.queue_cap_hits, (uint64_t)atomic_load(&bp_nobufs));
    assert_int_equal(st.bytes_out, want);
}

/* A client that never reads what is queued for it is closed after the send timeout,
 * and the reason is logged. */
static void
send_timeout_closes_stalled(void **state)
{
    static char pattern[1 << 16];
    unit_log log = { .mu = PTHREAD_MUTEX_INITIALIZER };
    sf_server_opts o = { .send_timeout_ms = 100, .log = unit_keep_line, .log_ud = &log };
    sf_server_stats st;
    unit_server u;
    char want[120];
    sf_addr local;
    int fd;

    (void)state;
    bp_reset();
    unit_fill_pattern(pattern, sizeof(pattern), 51);
    unit_server_start(&u, &o, &bp_echo_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_local_addr(fd, &local), 0);
    assert_int_equal(sf_set_nonblock(fd, 1), 0);
    flood(fd, pattern, sizeof(pattern), 64 << 20);
    snprintf(want, sizeof(want), "bpecho #1 127.0.0.1:%d: closed: send timeout: "
             "the client is not reading", sf_addr_port(&local));
    assert_true(unit_wait_line(&log, want, 0, UNIT_WAIT_MS));
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.closed, 1);
}

/* ---- what a service sees ---- */

typedef struct probe_rec {
    char events[16];
    int nev;
    int zeroed;
    void *state;
    unsigned long id;
    int fd_ok;
    char peer[SF_ADDR_STRLEN];
    int send_after_close;
    int first_send;
    size_t first_queued;
    int flags_ok;
    size_t data_len;
} probe_rec;

static probe_rec probe;
static int probe_state_token;

static void *
probe_state_new(void)
{
    return &probe_state_token;
}

static void
probe_ev(char e)
{
    if (probe.nev < (int)sizeof(probe.events) - 1)
        probe.events[probe.nev++] = e;
}

static void
probe_open(sf_conn *c)
{
    unsigned char *d = sf_conn_data(c);
    sf_addr a;

    probe_ev('o');
    probe.zeroed = 1;
    for (int i = 0; i < 32; i++)
        probe.zeroed &= d[i] == 0;
    memset(d, 0x77, 32);
    probe.state = sf_conn_state(c);
    probe.id = sf_conn_id(c);
    probe.fd_ok = sf_conn_fd(c) > 2;
    probe.flags_ok = (fcntl(sf_conn_fd(c), F_GETFL) & O_NONBLOCK) &&
                     (fcntl(sf_conn_fd(c), F_GETFD) & FD_CLOEXEC);
    if (sf_conn_peer(c, &a) == 0)
        sf_addr_format(&a, probe.peer, sizeof(probe.peer));
    sf_conn_log(c, "hello %d", 42);
    probe.first_send = sf_conn_send(c, "hi\n", 3);
    probe.first_queued = sf_conn_queued(c);
}

static void
probe_data(sf_conn *c, char *data, size_t len)
{
    char reply[32];

    (void)data;
    probe_ev('d');
    probe.data_len += len;
    snprintf(reply, sizeof(reply), "got %zu\n", len);
    sf_conn_send(c, reply, strlen(reply));
}

static void
probe_eof(sf_conn *c)
{
    probe_ev('e');
    sf_conn_send(c, "bye\n", 4);
    sf_conn_finish(c);
    /* the client closed already, nothing queued: finishing closes at once */
    probe.send_after_close = sf_conn_send(c, "late", 4);
}

static void
probe_close(sf_conn *c)
{
    unsigned char *d = sf_conn_data(c);

    probe_ev(d[0] == 0x77 ? 'c' : 'X');
}

static const sf_service probe_svc = {
    .name = "probe",
    .protos = SF_PROTO_TCP,
    .conn_size = 32,
    .state_new = probe_state_new,
    .on_open = probe_open,
    .on_data = probe_data,
    .on_eof = probe_eof,
    .on_close = probe_close,
};

static void
service_callbacks(void **state)
{
    unit_log log = { .mu = PTHREAD_MUTEX_INITIALIZER };
    sf_server_opts o = { .log = unit_keep_line, .log_ud = &log };
    char buf[64], local_s[SF_ADDR_STRLEN], want[160];
    sf_server_stats st;
    sf_addr local;
    unit_server u;
    int fd;

    (void)state;
    memset(&probe, 0, sizeof(probe));
    unit_server_start(&u, &o, &probe_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_local_addr(fd, &local), 0);
    sf_addr_format(&local, local_s, sizeof(local_s));
    assert_int_equal(unit_read_exact(fd, buf, 3, UNIT_WAIT_MS), 3);
    assert_memory_equal(buf, "hi\n", 3);
    assert_int_equal(sf_write(NULL, fd, "12345", 5), 5);
    assert_int_equal(unit_read_exact(fd, buf, 6, UNIT_WAIT_MS), 6);
    assert_memory_equal(buf, "got 5\n", 6);
    assert_int_equal(sf_shutdown_write(NULL, fd), 0);
    assert_int_equal(unit_read_exact(fd, buf, sizeof(buf), UNIT_WAIT_MS), 4);
    assert_memory_equal(buf, "bye\n", 4);
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS), 0);
    snprintf(want, sizeof(want), "probe #1 %s: hello 42", local_s);
    assert_true(unit_wait_line(&log, want, 0, UNIT_WAIT_MS));
    close(fd);
    unit_server_stop(&u, &st);

    assert_string_equal(probe.events, "odec");
    assert_true(probe.zeroed);
    assert_ptr_equal(probe.state, &probe_state_token);
    assert_int_equal(probe.id, 1);
    assert_true(probe.fd_ok);
    assert_true(probe.flags_ok);
    assert_string_equal(probe.peer, local_s);
    assert_int_equal(probe.send_after_close, -EPIPE);
    assert_int_equal(probe.first_send, 0);
    assert_int_equal(probe.first_queued, 0);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.closed, 1);
}

/* A service closes a client with a reason: the client sees the end, the reason is logged
 * with the service, the connection number and the peer. */
static void
closer_data(sf_conn *c, char *data, size_t len)
{
    if (len > 0 && data[0] == 'q')
        sf_conn_close(c, "asked to quit");
    else
        sf_conn_send(c, data, len);
}

static const sf_service closer_svc = {
    .name = "closer",
    .protos = SF_PROTO_TCP,
    .on_data = closer_data,
};

static void
service_closes_with_reason(void **state)
{
    unit_log log = { .mu = PTHREAD_MUTEX_INITIALIZER };
    sf_server_opts o = { .log = unit_keep_line, .log_ud = &log };
    sf_server_stats st;
    char want[96], buf[4];
    sf_addr local;
    unit_server u;
    int fd;

    (void)state;
    unit_server_start(&u, &o, &closer_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_local_addr(fd, &local), 0);
    assert_int_equal(sf_write(NULL, fd, "ab", 2), 2);
    assert_int_equal(unit_read_exact(fd, buf, 2, UNIT_WAIT_MS), 2);
    assert_int_equal(sf_write(NULL, fd, "q", 1), 1);
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS), 0);
    snprintf(want, sizeof(want), "closer #1 127.0.0.1:%d: closed: asked to quit",
             sf_addr_port(&local));
    assert_true(unit_wait_line(&log, want, 0, UNIT_WAIT_MS));
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.closed, 1);
}

/* Clients that reset (SO_LINGER 0) before they are accepted, or in the middle of a large
 * write, do not hurt the server: the next client is served. */
static void
resets_do_not_hurt(void **state)
{
    static char big[512 * 1024];
    struct linger lg = { 1, 0 };
    sf_server_stats st;
    unit_server u;
    int fd;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 1);
    for (int i = 0; i < 5; i++) {
        fd = unit_tcp_client(AF_INET, u.port);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(fd);
    }
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_set_nonblock(fd, 1), 0);
    flood(fd, big, sizeof(big), sizeof(big));
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    echo_roundtrip_tcp(AF_INET, u.port, "still here");
    echo_roundtrip_tcp(AF_INET6, u.port, "and here");
    unit_server_stop(&u, &st);
    assert_true(st.accepted >= 3);
}

/* A reply then FIN while the client's own bytes sit unread: the client gets the whole
 * reply and a clean end of stream, not a reset. */
static void
greet_open(sf_conn *c)
{
    sf_conn_send(c, "Tuesday, February 22, 1982 17:37:43-PST\r\n", 41);
    sf_conn_finish(c);
}

static const sf_service greet_svc = {
    .name = "greet",
    .protos = SF_PROTO_TCP,
    .on_open = greet_open,
};

static void
finish_with_unread_input(void **state)
{
    static char junk[200000];
    sf_server_stats st;
    unit_server u;
    char buf[64];
    int fd;

    (void)state;
    unit_server_start(&u, NULL, &greet_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_set_nonblock(fd, 1), 0);
    memset(junk, 'j', sizeof(junk));
    flood(fd, junk, sizeof(junk), sizeof(junk));
    unit_sleep_ms(50);
    assert_int_equal(unit_read_exact(fd, buf, sizeof(buf), UNIT_WAIT_MS), 41);
    assert_memory_equal(buf, "Tuesday, February 22, 1982 17:37:43-PST\r\n", 41);
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS), 0);
    /* The server read and dropped the rest, then closed once the client did. */
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.closed, 1);
}

/* A generator: on_drain whenever the socket can take more and nothing is queued. */
static int gen_limit;
static atomic_int gen_after_limit;

static void *
gen_limit_state(void)
{
    return &gen_limit;
}

static void
gen_open(sf_conn *c)
{
    sf_conn_want_drain(c, 1);
}

static void
gen_drain(sf_conn *c)
{
    unsigned *next = sf_conn_data(c);
    char line[100];

    /* the bounded kind stops asking after 1000 lines */
    if (sf_conn_state(c) == &gen_limit && *next >= 1000) {
        atomic_fetch_add(&gen_after_limit, 1);
        sf_conn_want_drain(c, 0);
        return;
    }
    for (int i = 0; i < 50; i++) {
        snprintf(line, sizeof(line), "%08u\n", (*next)++);
        if (sf_conn_send(c, line, 9) < 0)
            return;
    }
}

static const sf_service gen_svc = {
    .name = "gen",
    .protos = SF_PROTO_TCP,
    .conn_size = sizeof(unsigned),
    .on_open = gen_open,
    .on_drain = gen_drain,
};

static const sf_service gen_limited_svc = {
    .name = "genlimited",
    .protos = SF_PROTO_TCP,
    .conn_size = sizeof(unsigned),
    .state_new = gen_limit_state,
    .on_open = gen_open,
    .on_drain = gen_drain,
};

/* Turning on_drain off stops a generator: exactly what it sent, then silence. */
static void
want_drain_off_stops(void **state)
{
    static char buf[9 * 1000 + 1];
    unit_server u;
    int fd;

    (void)state;
    atomic_store(&gen_after_limit, 0);
    unit_server_start(&u, NULL, &gen_limited_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(unit_read_exact(fd, buf, 9 * 1000, UNIT_WAIT_MS), 9 * 1000);
    assert_memory_equal(buf + 9 * 999, "00000999\n", 9);
    assert_int_equal(unit_poll(fd, POLLIN, 200), 0);
    /* asked once more, turned off, never asked again */
    assert_int_equal(atomic_load(&gen_after_limit), 1);
    close(fd);
    unit_server_stop(&u, NULL);
}

static void
want_drain_generates(void **state)
{
    static char buf[9 * 20000];
    unit_server u;
    int fd;

    (void)state;
    unit_server_start(&u, NULL, &gen_svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(unit_read_exact(fd, buf, sizeof(buf), 10000), sizeof(buf));
    for (unsigned i = 0; i < 20000; i++) {
        char want[10];

        snprintf(want, sizeof(want), "%08u\n", i);
        assert_memory_equal(buf + 9 * i, want, 9);
    }
    close(fd);
    unit_server_stop(&u, NULL);
}

static void
service_table(void **state)
{
    int n = 0;

    (void)state;
    assert_ptr_equal(sf_service_find("echo"), &sf_svc_echo);
    assert_null(sf_service_find("nosuch"));
    assert_null(sf_service_find(""));
    for (; sf_services[n]; n++) {
        assert_ptr_equal(sf_service_find(sf_services[n]->name), sf_services[n]);
        assert_true(sf_services[n]->protos != 0);
    }
    assert_true(n >= 1);
    assert_ptr_equal(sf_services[0], &sf_svc_echo);
    assert_int_equal(sf_svc_echo.port, 7);
    assert_int_equal(sf_svc_echo.protos, SF_PROTO_TCP | SF_PROTO_UDP);
}

/* Per-loop service state: made once per loop however many sockets share it, freed once. */
static atomic_int states_made, states_freed;

static void *
counted_state_new(void)
{
    int *p = malloc(sizeof(int));

    if (p) {
        *p = 1234;
        atomic_fetch_add(&states_made, 1);
    }
    return p;
}

static void
counted_state_free(void *state)
{
    atomic_fetch_add(&states_freed, 1);
    free(state);
}

static void
counted_datagram(sf_dgram *d)
{
    int n = snprintf(d->out, d->outcap, "state %d", d->state ? *(int *)d->state : -1);

    d->reply = d->out;
    d->reply_len = (size_t)n;
}

static const sf_service counted_svc = {
    .name = "counted",
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .state_new = counted_state_new,
    .state_free = counted_state_free,
    .on_datagram = counted_datagram,
};

static const sf_service counted_one_loop_svc = {
    .name = "counted1",
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .one_loop = 1,
    .state_new = counted_state_new,
    .state_free = counted_state_free,
};

static void
service_state_once_per_loop(void **state)
{
    sf_server_opts o = { .loops = 2 };
    sf_addr addrs[2] = { unit_loopback(AF_INET, 0), unit_loopback(AF_INET6, 0) };
    unit_server u;
    sf_err err;
    char buf[32];
    int fd, n;

    (void)state;
    atomic_store(&states_made, 0);
    atomic_store(&states_freed, 0);
    unit_server_new(&u, &o, &counted_svc, SF_PROTO_TCP | SF_PROTO_UDP, 1);
    assert_int_equal(sf_server_listener_count(u.s), 4);
    assert_int_equal(atomic_load(&states_made), 2);
    assert_int_equal(sf_server_listen(u.s, &counted_one_loop_svc, addrs, 2, 0,
                                      SF_PROTO_TCP | SF_PROTO_UDP, &err), 0);
    assert_int_equal(atomic_load(&states_made), 3);
    unit_server_run(&u);
    {
        sf_addr a = unit_loopback(AF_INET, u.port);

        fd = sf_udp_connect(NULL, &a, NULL, 1, &err);
        assert_true(fd >= 0);
        assert_int_equal(sf_write(NULL, fd, "?", 1), 1);
        assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
        n = (int)sf_read(NULL, fd, buf, sizeof(buf) - 1);
        assert_int_equal(n, 10);
        buf[n] = '\0';
        assert_string_equal(buf, "state 1234");
        close(fd);
    }
    unit_server_stop(&u, NULL);
    assert_int_equal(atomic_load(&states_freed), 3);
}

/* A failed sf_server_new gives back what it took, and nothing else: the workers it never
 * set up own no descriptor (not fd 0). */
static void
new_failure_closes_only_its_own(void **state)
{
    sf_server_opts o = { .loops = 4 };
    struct rlimit old, rl;
    int fillers[4096], nf = 0, before, fd;
    sf_server *s;
    sf_err err;

    (void)state;
    if (fcntl(0, F_GETFD) < 0) {
        fd = open("/dev/null", O_RDONLY);
        assert_int_equal(fd, 0);
    }
    before = unit_count_fds();
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    rl = old;
    rl.rlim_cur = (rlim_t)before + 64;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    /* Take every free descriptor, then give back room for one worker (3) and a bit. */
    while (nf < 4096 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        fillers[nf++] = fd;
    assert_true(nf > 4);
    for (int i = 0; i < 4; i++)
        close(fillers[--nf]);
    s = sf_server_new(&o, &err);
    assert_null(s);
    assert_int_equal(err.code, -EMFILE);
    while (nf > 0)
        close(fillers[--nf]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(fcntl(0, F_GETFD) >= 0);
    assert_int_equal(unit_count_fds(), before);
}

/* ---- stopping ---- */

/* sf_server_stop(drain): new clients refused at once, present ones finish, then run
 * returns without waiting for the drain timeout. */
static void
drain_lets_clients_finish(void **state)
{
    sf_server_opts o = { .drain_timeout_ms = 20000 };
    unit_server u;
    int fd;
    char buf[4];
    uint64_t t0;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_write(NULL, fd, "1", 1), 1);
    assert_int_equal(unit_read_exact(fd, buf, 1, UNIT_WAIT_MS), 1);
    sf_server_stop(u.s, 1);
    assert_true(connect_until_refused(u.port));
    assert_int_equal(sf_write(NULL, fd, "2", 1), 1);
    assert_int_equal(unit_read_exact(fd, buf, 1, UNIT_WAIT_MS), 1);
    assert_int_equal(buf[0], '2');
    assert_int_equal(unit_server_join(&u, 100), -ETIMEDOUT);
    t0 = unit_now_ms();
    close(fd);
    assert_int_equal(unit_server_join(&u, UNIT_WAIT_MS), 0);
    assert_true(unit_now_ms() - t0 < 2000);
    assert_int_equal(u.rc, 0);
    unit_server_stop(&u, NULL);
}

static void
drain_timeout_ends_it(void **state)
{
    sf_server_opts o = { .drain_timeout_ms = 300 };
    unit_server u;
    uint64_t t0, took;
    int fd;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    echo_roundtrip_tcp(AF_INET, u.port, "x");
    t0 = unit_now_ms();
    sf_server_stop(u.s, 1);
    assert_int_equal(unit_server_join(&u, UNIT_WAIT_MS), 0);
    took = unit_now_ms() - t0;
    assert_true(took >= 250 && took < 2000);
    /* The connection is closed with the server. */
    unit_server_stop(&u, NULL);
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS), 0);
    close(fd);
}

static void
stop_at_once(void **state)
{
    unit_server u;
    int fds[3], before = unit_count_fds();
    uint64_t t0;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP | SF_PROTO_UDP, 1);
    for (int i = 0; i < 3; i++) {
        char c;

        fds[i] = unit_tcp_client(i == 1 ? AF_INET6 : AF_INET, u.port);
        assert_int_equal(sf_write(NULL, fds[i], "y", 1), 1);
        assert_int_equal(unit_read_exact(fds[i], &c, 1, UNIT_WAIT_MS), 1);
    }
    t0 = unit_now_ms();
    sf_server_stop(u.s, 0);
    assert_int_equal(unit_server_join(&u, UNIT_WAIT_MS), 0);
    assert_true(unit_now_ms() - t0 < 1000);
    unit_server_stop(&u, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(unit_wait_eof(fds[i], UNIT_WAIT_MS), 0);
        close(fds[i]);
    }
    assert_int_equal(unit_count_fds(), before);
}

static volatile sig_atomic_t caller_pipes;

static void
caller_sigpipe(int signo)
{
    (void)signo;
    caller_pipes++;
}

static void *
stop_soon(void *arg)
{
    unit_sleep_ms(200);
    kill(getpid(), SIGINT);     /* reaches the server through its signalfd */
    (void)arg;
    return NULL;
}

/* The body of signals_restored_after_run, in a child: 0 when all held. */
static int
run_and_check_signals(void)
{
    struct sigaction sa = { .sa_handler = caller_sigpipe }, now;
    sigset_t empty, mask;
    pthread_t th;
    sf_server *s;
    sf_addr a = unit_loopback(AF_INET, 0);

    sigemptyset(&empty);
    sigaction(SIGPIPE, &sa, NULL);
    pthread_sigmask(SIG_SETMASK, &empty, NULL);
    if ((s = sf_server_new(NULL, NULL)) == NULL ||
        sf_server_listen(s, &sf_svc_echo, &a, 1, 0, SF_PROTO_TCP, NULL) < 0)
        return 10;
    /* The stopping thread must not take the SIGINT itself (its default would kill). */
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    pthread_create(&th, NULL, stop_soon, NULL);
    pthread_sigmask(SIG_SETMASK, &empty, NULL);
    if (sf_server_run(s) != 0)
        return 11;
    pthread_join(th, NULL);
    sf_server_free(s);
    pthread_sigmask(SIG_SETMASK, NULL, &mask);
    if (sigismember(&mask, SIGINT) || sigismember(&mask, SIGTERM))
        return 12;          /* still blocked */
    sigaction(SIGPIPE, NULL, &now);
    if (now.sa_handler != caller_sigpipe)
        return 13;          /* still ignored */
    raise(SIGPIPE);
    return caller_pipes == 1 ? 0 : 14;
}

/* A program that embeds sf_server_run gets its signal mask and its SIGPIPE handler back
 * when the server returns; the SIGINT that stopped the server is not delivered again
 * (it would kill the program). Run in a child: it changes the process's signals. */
static void
signals_restored_after_run(void **state)
{
    (void)state;
    unit_in_child(run_and_check_signals);
}

/* SIGTERM drains (new clients refused, present ones served); a second signal, SIGINT,
 * stops at once. The signals reach the server's loop through signalfd. */
static void
signals_drain_then_stop(void **state)
{
    static const int sigs[] = { SIGINT, SIGTERM, 0 };
    unit_server u;
    int fd;
    char buf[2];

    (void)state;
    /* Blocked here too, so the server thread inherits the mask from its first moment. */
    assert_int_equal(sf_loop_block_signals(sigs), 0);
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    echo_roundtrip_tcp(AF_INET, u.port, "z");
    assert_int_equal(pthread_kill(u.th, SIGTERM), 0);
    assert_true(connect_until_refused(u.port));
    assert_int_equal(sf_write(NULL, fd, "w", 1), 1);
    assert_int_equal(unit_read_exact(fd, buf, 1, UNIT_WAIT_MS), 1);
    assert_int_equal(unit_server_join(&u, 100), -ETIMEDOUT);
    assert_int_equal(pthread_kill(u.th, SIGINT), 0);
    assert_int_equal(unit_server_join(&u, UNIT_WAIT_MS), 0);
    assert_int_equal(u.rc, 0);
    unit_server_stop(&u, NULL);
    close(fd);
}

/* ---- out of descriptors ---- */

typedef struct child_report {
    sf_server_stats st;
    int rc;
} child_report;

/* In a child with few descriptors the server meets EMFILE: extra clients are closed at
 * once instead of hanging, the loop does not spin, and once clients leave new ones are
 * served again. On epoll (no_ring) or io_uring, whose ring takes one descriptor more:
 * either way one descriptor is left for a client. */
static void
emfile_sheds(int no_ring)
{
    static const int sigs[] = { SIGINT, SIGTERM, 0 };
    int pfd[2], port = 0, served = 0, shed = 0, fds[10], status;
    child_report rep;
    struct rusage ru;
    uint64_t t0, wall, cpu;
    pid_t pid;

    assert_int_equal(pipe(pfd), 0);
    t0 = unit_now_ms();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sf_server_opts o = { .drain_timeout_ms = 200, .no_ring = no_ring };
        sf_addr a = unit_loopback(AF_INET, 0);
        struct rlimit rl;
        child_report r = { .rc = -1 };
        sf_server *s;
        int fd, last = -1, prev = -1, prev2 = -1;

        /* Never outlive the test, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(30);
        close(pfd[0]);
        sf_loop_block_signals(sigs);
        s = sf_server_new(&o, NULL);
        if (s == NULL || sf_server_listen(s, &sf_svc_echo, &a, 1, 0, SF_PROTO_TCP, NULL) < 0)
            _exit(2);
        port = sf_addr_port(&sf_server_listener(s, 0)->addr);
        /* Exactly two descriptors free (three for the ring): every other one taken. */
        rl.rlim_cur = 512;
        rl.rlim_max = 512;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            _exit(3);
        while ((fd = open("/dev/null", O_RDONLY)) >= 0) {
            prev2 = prev;
            prev = last;
            last = fd;
        }
        close(last);
        close(prev);
        if (!no_ring)
            close(prev2);
        if (write(pfd[1], &port, sizeof(port)) < 0)
            _exit(4);
        r.rc = sf_server_run(s);
        sf_server_get_stats(s, &r.st);
        if (write(pfd[1], &r, sizeof(r)) < 0)
            _exit(5);
        _exit(0);
    }
    close(pfd[1]);
    assert_true(unit_poll(pfd[0], POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(read(pfd[0], &port, sizeof(port)), sizeof(port));

    for (int i = 0; i < 10; i++) {
        fds[i] = unit_tcp_client(AF_INET, port);
        assert_int_equal(sf_write(NULL, fds[i], "e", 1), 1);
    }
    /* Each client hears something within the wait: its echo, or the end (FIN or RST). */
    for (int i = 0; i < 10; i++) {
        char c = 0;
        ssize_t n;

        if (unit_poll(fds[i], POLLIN, UNIT_WAIT_MS) == 0)
            continue;   /* neither: counted by neither */
        n = recv(fds[i], &c, 1, MSG_DONTWAIT);
        if (n == 1 && c == 'e')
            served++;
        else if (n == 0 || (n < 0 && errno == ECONNRESET))
            shed++;
    }
    assert_int_equal(served + shed, 10);
    assert_true(served >= 1);
    assert_true(shed >= 1);
    unit_sleep_ms(300);     /* the shed clients are gone; nothing left for the loop to do */
    for (int i = 0; i < 10; i++)
        close(fds[i]);

    /* Descriptors come back once clients leave: a new client is served. */
    assert_true(connect_until_served(port, 'f') >= 0);

    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_true(unit_poll(pfd[0], POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(read(pfd[0], &rep, sizeof(rep)), sizeof(rep));
    close(pfd[0]);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS;;) {
        pid_t w = wait4(pid, &status, WNOHANG, &ru);

        if (w == pid)
            break;
        if (unit_now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("server child did not exit");
        }
        unit_sleep_ms(10);
    }
    wall = unit_now_ms() - t0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(rep.rc, 0);
    assert_true(rep.st.emfile >= 1);
    /* A loop woken without end by a pending connection would burn the whole time. */
    cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
          (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
    assert_true(cpu < wall / 3);
    /* The path said: clients accepted through the ring, or none. */
    if (no_ring)
        assert_true(rep.st.ring_accepted == 0);
    else if (unit_ring_available())
        assert_true(rep.st.ring_accepted >= 1);
}

static void
emfile_sheds_without_spinning(void **state)
{
    (void)state;
    emfile_sheds(1);
}

static void
emfile_sheds_without_spinning_ring(void **state)
{
    (void)state;
    emfile_sheds(0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(listen_port0_same_everywhere),
        cmocka_unit_test(listen_limits_protocols),
        cmocka_unit_test(listen_conflict_rolls_back),
        cmocka_unit_test(echo_tcp_v4_v6),
        cmocka_unit_test(echo_tcp_half_close),
        cmocka_unit_test(echo_udp_sizes),
        cmocka_unit_test(echo_udp_empty_datagram),
        cmocka_unit_test(echo_several_loops),
        cmocka_unit_test(max_conns_refuses_then_frees),
        cmocka_unit_test(max_conns_exact_with_several_loops),
        cmocka_unit_test(accepted_send_buffer_follows_queue_cap),
        cmocka_unit_test(accepted_sockets_nodelay),
        cmocka_unit_test(dgram_max_drops_bigger),
        cmocka_unit_test(udp_rate_per_source),
        cmocka_unit_test(udp_rate_one_budget_across_loops),
        cmocka_unit_test(udp_loop_between_servers_dies),
        cmocka_unit_test(udp_no_reply_to_served_port),
        cmocka_unit_test(udp_reply_size_bound),
        cmocka_unit_test(idle_timeout_closes),
        cmocka_unit_test(backpressure_stops_reading),
        cmocka_unit_test(backpressure_small_queue),
        cmocka_unit_test(queue_never_passes_cap),
        cmocka_unit_test(send_timeout_closes_stalled),
        cmocka_unit_test(service_callbacks),
        cmocka_unit_test(service_closes_with_reason),
        cmocka_unit_test(resets_do_not_hurt),
        cmocka_unit_test(finish_with_unread_input),
        cmocka_unit_test(want_drain_off_stops),
        cmocka_unit_test(want_drain_generates),
        cmocka_unit_test(service_table),
        cmocka_unit_test(service_state_once_per_loop),
        cmocka_unit_test(new_failure_closes_only_its_own),
        cmocka_unit_test(drain_lets_clients_finish),
        cmocka_unit_test(drain_timeout_ends_it),
        cmocka_unit_test(stop_at_once),
        cmocka_unit_test(signals_drain_then_stop),
        cmocka_unit_test(signals_restored_after_run),
        cmocka_unit_test(emfile_sheds_without_spinning),
        cmocka_unit_test(emfile_sheds_without_spinning_ring),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
