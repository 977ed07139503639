/* test_sock: the TCP and UDP flows call by call, on loopback port 0 and socketpairs. */
#include <netinet/in.h>
#include <sys/time.h>

#include <sys/un.h>

#include "unit.h"

/* ---- signals that interrupt blocking calls (EINTR) ---- */

static volatile sig_atomic_t interrupts;

static void
on_usr2(int signo)
{
    (void)signo;
    interrupts++;
}

/* A SIGUSR2 handler without SA_RESTART: blocking calls return EINTR. */
static void
install_interrupter(struct sigaction *old)
{
    struct sigaction sa = { .sa_handler = on_usr2 };

    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    assert_int_equal(sigaction(SIGUSR2, &sa, old), 0);
    interrupts = 0;
}

typedef struct storm {
    pthread_t target;
    int first_ms;       /* delay before the first signal */
    int every_ms;       /* then one signal this often */
    int count;          /* this many signals in all */
    int write_fd;       /* >= 0: write "late" there after the signals */
} storm;

static void *
storm_main(void *arg)
{
    storm *s = arg;

    unit_sleep_ms(s->first_ms);
    for (int i = 0; i < s->count; i++) {
        pthread_kill(s->target, SIGUSR2);
        unit_sleep_ms(s->every_ms);
    }
    if (s->write_fd >= 0 && write(s->write_fd, "late", 4) != 4)
        return (void *)1;
    return NULL;
}

/* ---- listen, accept ---- */

static void
tcp_listen_port0(void **state)
{
    sf_listen_opts blocking = { .blocking = 1 };
    sf_addr a = unit_loopback(AF_INET6, 0), got;
    char buf[SF_ADDR_STRLEN], want[SF_ADDR_STRLEN];
    int fd, v6only = 0, reuse = 0, port;
    socklen_t sl = sizeof(int);
    sf_err err;

    (void)state;
    fd = unit_tcp_listener(AF_INET, 0, &port);
    assert_true(port > 0);
    assert_int_equal(sf_tcp_state(fd, NULL, NULL), SF_TCP_LISTEN);
    assert_true(unit_is_nonblocking(fd));
    assert_true(unit_is_cloexec(fd));
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &sl), 0);
    assert_int_equal(reuse, 1);
    assert_int_equal(sf_local_addr(fd, &got), 0);
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    assert_string_equal(sf_addr_format(&got, buf, sizeof(buf)), want);
    assert_int_equal(sf_close(NULL, fd), 0);

    /* IPv6 is bound apart from IPv4, and left blocking when asked. */
    fd = sf_tcp_listen(NULL, &a, &blocking, &err);
    assert_true(fd >= 0);
    assert_false(unit_is_nonblocking(fd));
    assert_true(unit_is_cloexec(fd));
    assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &sl), 0);
    assert_int_equal(v6only, 1);
    assert_int_equal(sf_local_addr(fd, &got), 0);
    snprintf(want, sizeof(want), "[::1]:%d", sf_addr_port(&got));
    assert_string_equal(sf_addr_format(&got, buf, sizeof(buf)), want);
    sf_close(NULL, fd);
}

static void
bind_in_use_message(void **state)
{
    char want[96];
    int fd, fd6, ufd, port, uport, before;
    sf_addr a;
    sf_err err;

    (void)state;
    fd = unit_tcp_listener(AF_INET, 0, &port);
    before = unit_count_fds();
    a = unit_loopback(AF_INET, port);
    assert_int_equal(sf_tcp_listen(NULL, &a, NULL, &err), -EADDRINUSE);
    assert_int_equal(err.code, -EADDRINUSE);
    snprintf(want, sizeof(want), "bind 127.0.0.1:%d: Address already in use", port);
    assert_string_equal(err.msg, want);
    assert_int_equal(unit_count_fds(), before);

    fd6 = unit_tcp_listener(AF_INET6, 0, &port);
    a = unit_loopback(AF_INET6, port);
    assert_int_equal(sf_tcp_listen(NULL, &a, NULL, &err), -EADDRINUSE);
    snprintf(want, sizeof(want), "bind [::1]:%d: Address already in use", port);
    assert_string_equal(err.msg, want);
    /* The address is kept beside the text: a caller acts on it without parsing msg. */
    assert_int_equal(err.addr.ss_family, AF_INET6);
    assert_int_equal(err.addrlen, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&err.addr)->sin6_port), port);

    ufd = unit_udp_socket(AF_INET, &uport);
    a = unit_loopback(AF_INET, uport);
    assert_int_equal(sf_udp_bind(NULL, &a, NULL, &err), -EADDRINUSE);
    snprintf(want, sizeof(want), "bind 127.0.0.1:%d: Address already in use", uport);
    assert_string_equal(err.msg, want);
    assert_int_equal(unit_count_fds(), before + 2);
    close(fd);
    close(fd6);
    close(ufd);
}

static void
accept_nothing_pending(void **state)
{
    sf_addr peer;
    int fd;

    (void)state;
    fd = unit_tcp_listener(AF_INET, 0, NULL);
    errno = 0;
    assert_int_equal(sf_tcp_accept(NULL, fd, &peer), SF_EAGAIN);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(sf_tcp_accept(NULL, fd, NULL), SF_EAGAIN);
    close(fd);
    /* Not a listener: a real error, not "not ready". */
    assert_int_equal(sf_tcp_accept(NULL, -1, NULL), -EBADF);
}

/* The transient errors of accept(2) are told apart from the listener's own failures. */
static void
accept_transient_errors(void **state)
{
    static const int transient[] = { ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT,
                                     EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP,
                                     ENETUNREACH, ENOBUFS, ENOMEM, EPERM };
    static const int fatal[] = { EMFILE, ENFILE, EBADF, EINVAL, ENOTSOCK };

    (void)state;
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        assert_true(sf_accept_error_is_transient(-transient[i]));
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
        assert_false(sf_accept_error_is_transient(-fatal[i]));
    assert_false(sf_accept_error_is_transient(SF_EAGAIN));
    assert_false(sf_accept_error_is_transient(5));
}

/* The seed's connectionless client: an unbound datagram socket whose first sendto picks
 * its port; the server's reply comes back to that port. */
static void
udp_socket_unbound_client(void **state)
{
    int families[] = { AF_INET, AF_INET6 };

    (void)state;
    for (int f = 0; f < 2; f++) {
        int sport, fd, srv = unit_udp_socket(families[f], &sport);
        sf_addr to = unit_loopback(families[f], sport), from, mine;
        char buf[8];
        sf_err err;
        int trunc;

        fd = sf_udp_socket(NULL, families[f], 0, &err);
        assert_true(fd >= 0);
        assert_false(unit_is_nonblocking(fd));
        assert_true(unit_is_cloexec(fd));
        assert_int_equal(sf_local_addr(fd, &mine), 0);
        assert_int_equal(sf_addr_port(&mine), 0);   /* not bound yet */
        assert_int_equal(sf_sendto(NULL, fd, "ping", 4, &to), 4);
        assert_int_equal(sf_local_addr(fd, &mine), 0);
        assert_true(sf_addr_port(&mine) > 0);       /* sendto picked the port */
        assert_true(unit_poll(srv, POLLIN, UNIT_WAIT_MS) & POLLIN);
        assert_int_equal(sf_recvfrom(NULL, srv, buf, sizeof(buf), &from, &trunc), 4);
        assert_int_equal(sf_addr_port(&from), sf_addr_port(&mine));
        assert_int_equal(sf_sendto(NULL, srv, "pong", 4, &from), 4);
        assert_int_equal(sf_recvfrom(NULL, fd, buf, sizeof(buf), NULL, &trunc), 4);
        assert_memory_equal(buf, "pong", 4);
        close(fd);
        close(srv);
    }
    {
        int fd = sf_udp_socket(NULL, AF_INET, 1, NULL);

        assert_true(fd >= 0);
        assert_true(unit_is_nonblocking(fd));
        close(fd);
    }
}

/* The whole TCP flow on each family: connect, accept, both ends ESTABLISHED, bytes both
 * ways; the accepted socket nonblocking and close-on-exec, the client blocking. */
static void
tcp_flow(int family)
{
    char buf[16], c_local[SF_ADDR_STRLEN], s_peer[SF_ADDR_STRLEN];
    sf_addr peer, local, cpeer;
    int lfd, port, cfd, sfd;

    lfd = unit_tcp_listener(family, 0, &port);
    cfd = unit_tcp_client(family, port);
    assert_false(unit_is_nonblocking(cfd));
    assert_true(unit_is_cloexec(cfd));
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    sfd = sf_tcp_accept(NULL, lfd, &peer);
    assert_true(sfd >= 0);
    assert_true(unit_is_nonblocking(sfd));
    assert_true(unit_is_cloexec(sfd));
    assert_int_equal(sf_local_addr(cfd, &local), 0);
    assert_string_equal(sf_addr_format(&peer, s_peer, sizeof(s_peer)),
                        sf_addr_format(&local, c_local, sizeof(c_local)));
    assert_int_equal(sf_peer_addr(cfd, &cpeer), 0);
    assert_int_equal(sf_addr_port(&cpeer), port);
    assert_int_equal(sf_addr_family(&cpeer), family);
    assert_int_equal(sf_tcp_state(cfd, NULL, NULL), SF_TCP_ESTABLISHED);
    assert_int_equal(sf_tcp_state(sfd, NULL, NULL), SF_TCP_ESTABLISHED);

    assert_int_equal(sf_write(NULL, cfd, "hello", 5), 5);
    assert_int_equal(unit_read_exact(sfd, buf, 5, UNIT_WAIT_MS), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(sf_write(NULL, sfd, "world", 5), 5);
    assert_int_equal(sf_read_full(NULL, cfd, buf, 5), 5);
    assert_memory_equal(buf, "world", 5);
    /* Nothing more: a nonblocking read says "not ready". */
    assert_int_equal(sf_read(NULL, sfd, buf, sizeof(buf)), SF_EAGAIN);
    close(cfd);
    close(sfd);
    close(lfd);
}

static void
tcp_flow_v4(void **state)
{
    (void)state;
    tcp_flow(AF_INET);
}

static void
tcp_flow_v6(void **state)
{
    (void)state;
    tcp_flow(AF_INET6);
}

static void
connect_nonblock_flag(void **state)
{
    sf_addr a;
    sf_err err;
    int lfd, port, fd;

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    a = unit_loopback(AF_INET, port);
    fd = sf_tcp_connect(NULL, &a, NULL, -1, 1, &err);
    assert_true(fd >= 0);
    assert_true(unit_is_nonblocking(fd));
    assert_int_equal(sf_tcp_state(fd, NULL, NULL), SF_TCP_ESTABLISHED);
    assert_int_equal(sf_sock_error(fd), 0);
    close(fd);
    close(lfd);
}

static void
connect_refused(void **state)
{
    char want[80];
    int port, before = unit_count_fds();
    sf_addr a;
    sf_err err;

    (void)state;
    port = unit_closed_port(AF_INET, SOCK_STREAM);
    a = unit_loopback(AF_INET, port);
    assert_int_equal(sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, &err), -ECONNREFUSED);
    assert_int_equal(err.code, -ECONNREFUSED);
    snprintf(want, sizeof(want), "connect 127.0.0.1:%d: Connection refused", port);
    assert_string_equal(err.msg, want);

    port = unit_closed_port(AF_INET6, SOCK_STREAM);
    a = unit_loopback(AF_INET6, port);
    assert_int_equal(sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 1, &err), -ECONNREFUSED);
    snprintf(want, sizeof(want), "connect [::1]:%d: Connection refused", port);
    assert_string_equal(err.msg, want);
    assert_int_equal(unit_count_fds(), before);
}

/* A listener with backlog 1 and two connections it never accepts: its accept queue is
 * full and Linux drops further SYNs, so a connect can only time out. */
static int
full_listener(int *port, int *clients)
{
    int32_t queued = 0;
    int lfd = unit_tcp_listener(AF_INET, 1, port);

    for (int i = 0; i < 2; i++) {
        sf_addr a = unit_loopback(AF_INET, *port);
        sf_err err;

        clients[i] = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 1, &err);
        if (clients[i] < 0)
            fail_msg("filling the accept queue: %s", err.msg);
    }
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; unit_now_ms() < end; unit_sleep_ms(5)) {
        sf_tcp_state(lfd, NULL, &queued);
        if (queued == 2)
            break;
    }
    assert_int_equal(queued, 2);
    return lfd;
}

static void
connect_timeout_on_full_backlog(void **state)
{
    int lfd, port, clients[2], before;
    uint64_t t0, took;
    char want[80];
    sf_addr a;
    sf_err err;

    (void)state;
    lfd = full_listener(&port, clients);
    before = unit_count_fds();
    a = unit_loopback(AF_INET, port);
    t0 = unit_now_ms();
    assert_int_equal(sf_tcp_connect(NULL, &a, NULL, 300, 0, &err), -ETIMEDOUT);
    took = unit_now_ms() - t0;
    assert_true(took >= 290 && took < 1000);
    snprintf(want, sizeof(want), "connect 127.0.0.1:%d: Connection timed out", port);
    assert_string_equal(err.msg, want);
    assert_int_equal(unit_count_fds(), before);
    close(clients[0]);
    close(clients[1]);
    close(lfd);
}

/* Signals arriving while connect waits (EINTR) do not stretch its timeout. */
static void
connect_timeout_holds_under_signals(void **state)
{
    struct sigaction old;
    int lfd, port, clients[2];
    storm s = { .first_ms = 20, .every_ms = 20, .count = 100, .write_fd = -1 };
    pthread_t th;
    uint64_t t0, took;
    sf_addr a;
    sf_err err;

    (void)state;
    lfd = full_listener(&port, clients);
    install_interrupter(&old);
    s.target = pthread_self();
    assert_int_equal(pthread_create(&th, NULL, storm_main, &s), 0);
    a = unit_loopback(AF_INET, port);
    t0 = unit_now_ms();
    assert_int_equal(sf_tcp_connect(NULL, &a, NULL, 300, 0, &err), -ETIMEDOUT);
    took = unit_now_ms() - t0;
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    sigaction(SIGUSR2, &old, NULL);
    assert_true(interrupts >= 5);
    assert_true(took >= 290);
    assert_true(took < 1000);
    close(clients[0]);
    close(clients[1]);
    close(lfd);
}

static void
connect_from_source(void **state)
{
    sf_addr src = unit_loopback(AF_INET, 0), a, local, taken;
    char want[80];
    int lfd, lfd2, port, port2, fd;
    sf_err err;

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    a = unit_loopback(AF_INET, port);
    fd = sf_tcp_connect(NULL, &a, &src, UNIT_WAIT_MS, 0, &err);
    assert_true(fd >= 0);
    assert_int_equal(sf_local_addr(fd, &local), 0);
    assert_int_equal(sf_addr_family(&local), AF_INET);
    assert_true(sf_addr_port(&local) > 0);
    close(fd);

    /* A source address that is taken: the bind fails and says where. */
    lfd2 = unit_tcp_listener(AF_INET, 0, &port2);
    taken = unit_loopback(AF_INET, port2);
    assert_int_equal(sf_tcp_connect(NULL, &a, &taken, UNIT_WAIT_MS, 0, &err), -EADDRINUSE);
    snprintf(want, sizeof(want), "bind 127.0.0.1:%d: Address already in use", port2);
    assert_string_equal(err.msg, want);
    close(lfd2);
    close(lfd);
}

static void
connect_list_order(void **state)
{
    sf_addr_list l = { .n = 0 };
    sf_addr src6 = unit_loopback(AF_INET6, 0), peer;
    int lfd, port, closed1, closed2, fd;
    char want[80];
    sf_err err;

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    closed1 = unit_closed_port(AF_INET, SOCK_STREAM);
    closed2 = unit_closed_port(AF_INET6, SOCK_STREAM);

    /* Empty list: nothing to try. */
    assert_int_equal(sf_tcp_connect_list(NULL, &l, NULL, UNIT_WAIT_MS, 0, &err), SF_EADDR);
    assert_string_equal(err.msg, "connect: no address");

    /* The first that answers wins. */
    l.n = 3;
    l.a[0] = unit_loopback(AF_INET, closed1);
    l.a[1] = unit_loopback(AF_INET, port);
    l.a[2] = unit_loopback(AF_INET6, closed2);
    fd = sf_tcp_connect_list(NULL, &l, NULL, UNIT_WAIT_MS, 0, &err);
    assert_true(fd >= 0);
    assert_int_equal(sf_peer_addr(fd, &peer), 0);
    assert_int_equal(sf_addr_port(&peer), port);
    close(fd);

    /* None answers: the error of the last one. */
    l.a[1] = unit_loopback(AF_INET, closed1);
    assert_int_equal(sf_tcp_connect_list(NULL, &l, NULL, UNIT_WAIT_MS, 0, &err), -ECONNREFUSED);
    snprintf(want, sizeof(want), "connect [::1]:%d: Connection refused", closed2);
    assert_string_equal(err.msg, want);

    /* A source of one family skips the addresses of the other. */
    l.n = 2;
    l.a[0] = unit_loopback(AF_INET, port);
    l.a[1] = unit_loopback(AF_INET, port);
    assert_int_equal(sf_tcp_connect_list(NULL, &l, &src6, UNIT_WAIT_MS, 0, &err), SF_EADDR);
    assert_string_equal(err.msg, "connect: no address");
    close(lfd);
}

static void
accept_blocking_waits(void **state)
{
    sf_listen_opts lo = { .blocking = 1 };
    sf_addr a = unit_loopback(AF_INET, 0), peer, local;
    sf_err err;
    int lfd, cfd, sfd;

    (void)state;
    lfd = sf_tcp_listen(NULL, &a, &lo, &err);
    assert_true(lfd >= 0);
    assert_false(unit_is_nonblocking(lfd));
    cfd = unit_tcp_client(AF_INET, unit_local_port(lfd));
    alarm(10);
    sfd = sf_tcp_accept_blocking(NULL, lfd, &peer);
    alarm(UNIT_GUARD_SECS);
    assert_true(sfd >= 0);
    assert_false(unit_is_nonblocking(sfd));
    assert_true(unit_is_cloexec(sfd));
    assert_int_equal(sf_local_addr(cfd, &local), 0);
    assert_int_equal(sf_addr_port(&peer), sf_addr_port(&local));
    close(sfd);
    close(cfd);
    close(lfd);
}

typedef struct late_client {
    int port;
    int fd;
} late_client;

static void *
connect_late(void *arg)
{
    late_client *c = arg;
    sf_addr a = unit_loopback(AF_INET, c->port);

    unit_sleep_ms(100);
    c->fd = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, NULL);
    return NULL;
}

/* A blocking accept interrupted by signals keeps waiting and returns the client. */
static void
accept_blocking_through_eintr(void **state)
{
    sf_listen_opts lo = { .blocking = 1 };
    struct sigaction old;
    sf_addr a = unit_loopback(AF_INET, 0);
    storm s = { .first_ms = 20, .every_ms = 15, .count = 4, .write_fd = -1 };
    late_client lc = { .fd = -1 };
    pthread_t th, th2;
    sf_err err;
    int lfd, sfd;

    (void)state;
    lfd = sf_tcp_listen(NULL, &a, &lo, &err);
    assert_true(lfd >= 0);
    lc.port = unit_local_port(lfd);
    install_interrupter(&old);
    s.target = pthread_self();
    assert_int_equal(pthread_create(&th, NULL, storm_main, &s), 0);
    assert_int_equal(pthread_create(&th2, NULL, connect_late, &lc), 0);
    alarm(10);
    sfd = sf_tcp_accept_blocking(NULL, lfd, NULL);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(unit_join(th2, UNIT_WAIT_MS, NULL), 0);
    sigaction(SIGUSR2, &old, NULL);
    assert_true(interrupts >= 1);
    assert_true(sfd >= 0);
    assert_true(lc.fd >= 0);
    close(sfd);
    close(lc.fd);
    close(lfd);
}

/* A client that resets before it is accepted does not break the listener: accept says
 * "not ready" or hands over a socket, never a hard error, and the next client is served. */
static void
reset_before_accept(void **state)
{
    struct linger lg = { 1, 0 };
    sf_addr peer, local;
    int lfd, port, c1, c2, got = -1;

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    c1 = unit_tcp_client(AF_INET, port);
    assert_int_equal(setsockopt(c1, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(c1);
    c2 = unit_tcp_client(AF_INET, port);
    assert_int_equal(sf_local_addr(c2, &local), 0);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; got < 0 && unit_now_ms() < end;) {
        int fd;

        unit_poll(lfd, POLLIN, 100);
        fd = sf_tcp_accept(NULL, lfd, &peer);
        assert_true(fd >= 0 || fd == SF_EAGAIN);
        if (fd >= 0 && sf_addr_port(&peer) == sf_addr_port(&local))
            got = fd;
        else if (fd >= 0)
            close(fd);
    }
    assert_true(got >= 0);
    assert_int_equal(sf_write(NULL, c2, "x", 1), 1);
    close(got);
    close(c2);
    close(lfd);
}

/* ---- UDP ---- */

static void
udp_flow(int family)
{
    char buf[64], from_s[SF_ADDR_STRLEN], local_s[SF_ADDR_STRLEN];
    sf_addr from, local;
    int sfd, port, cfd, trunc = 7;
    sf_addr a;
    sf_err err;

    sfd = unit_udp_socket(family, &port);
    assert_true(unit_is_nonblocking(sfd));
    assert_int_equal(sf_tcp_state(sfd, NULL, NULL), SF_TCP_NONE);
    a = unit_loopback(family, port);
    cfd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(cfd >= 0);
    assert_false(unit_is_nonblocking(cfd));
    assert_int_equal(sf_sendto(NULL, cfd, "ping", 4, NULL), 4);
    assert_true(unit_poll(sfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_recvfrom(NULL, sfd, buf, sizeof(buf), &from, &trunc), 4);
    assert_int_equal(trunc, 0);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(sf_local_addr(cfd, &local), 0);
    assert_string_equal(sf_addr_format(&from, from_s, sizeof(from_s)),
                        sf_addr_format(&local, local_s, sizeof(local_s)));
    assert_int_equal(sf_sendto(NULL, sfd, "pong!", 5, &from), 5);
    assert_true(unit_poll(cfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_read(NULL, cfd, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "pong!", 5);
    /* Nothing more for the server. */
    assert_int_equal(sf_recvfrom(NULL, sfd, buf, sizeof(buf), NULL, NULL), SF_EAGAIN);
    close(cfd);
    close(sfd);
}

static void
udp_flow_v4(void **state)
{
    (void)state;
    udp_flow(AF_INET);
}

static void
udp_flow_v6(void **state)
{
    (void)state;
    udp_flow(AF_INET6);
}

/* A datagram bigger than the buffer: the first bytes, flagged truncated, and the rest of
 * it is gone (the next read finds nothing). */
static void
udp_truncation(void **state)
{
    char big[1000], buf[100];
    int sfd, port, cfd, trunc = 0;
    sf_addr a;
    sf_err err;

    (void)state;
    unit_fill_pattern(big, sizeof(big), 9);
    sfd = unit_udp_socket(AF_INET, &port);
    a = unit_loopback(AF_INET, port);
    cfd = sf_udp_connect(NULL, &a, NULL, 1, &err);
    assert_true(cfd >= 0);
    assert_true(unit_is_nonblocking(cfd));
    assert_int_equal(sf_write(NULL, cfd, big, sizeof(big)), sizeof(big));
    assert_int_equal(sf_write(NULL, cfd, big, 100), 100);
    assert_true(unit_poll(sfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_recvfrom(NULL, sfd, buf, sizeof(buf), NULL, &trunc), 100);
    assert_int_equal(trunc, 1);
    assert_memory_equal(buf, big, 100);
    /* Exactly the buffer's size is not truncated. */
    assert_int_equal(sf_recvfrom(NULL, sfd, buf, sizeof(buf), NULL, &trunc), 100);
    assert_int_equal(trunc, 0);
    assert_int_equal(sf_recvfrom(NULL, sfd, buf, sizeof(buf), NULL, &trunc), SF_EAGAIN);
    assert_int_equal(trunc, 0);
    close(cfd);
    close(sfd);
}

/* A connected UDP socket hears the ICMP port unreachable: ECONNREFUSED on the next recv. */
static void
udp_connect_refused(void **state)
{
    int port, fd;
    char buf[16];
    sf_addr a;
    sf_err err;

    (void)state;
    port = unit_closed_port(AF_INET, SOCK_DGRAM);
    a = unit_loopback(AF_INET, port);
    fd = sf_udp_connect(NULL, &a, NULL, 1, &err);
    assert_true(fd >= 0);
    assert_int_equal(sf_write(NULL, fd, "hello", 5), 5);
    assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & (POLLIN | POLLERR));
    assert_int_equal(sf_read(NULL, fd, buf, sizeof(buf)), -ECONNREFUSED);
    /* The error is reported once. */
    assert_int_equal(sf_read(NULL, fd, buf, sizeof(buf)), SF_EAGAIN);
    close(fd);

    port = unit_closed_port(AF_INET6, SOCK_DGRAM);
    a = unit_loopback(AF_INET6, port);
    fd = sf_udp_connect(NULL, &a, NULL, 1, &err);
    assert_true(fd >= 0);
    assert_int_equal(sf_sendto(NULL, fd, "hello", 5, NULL), 5);
    assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & (POLLIN | POLLERR));
    assert_int_equal(sf_recvfrom(NULL, fd, buf, sizeof(buf), NULL, NULL), -ECONNREFUSED);
    close(fd);
}

static void
udp_bind_options(void **state)
{
    sf_listen_opts lo = { .blocking = 1, .reuseport = 1 };
    sf_addr a = unit_loopback(AF_INET, 0), src = unit_loopback(AF_INET, 0), b;
    int fd, fd2, cfd, on = 0;
    socklen_t sl = sizeof(on);
    sf_err err;

    (void)state;
    fd = sf_udp_bind(NULL, &a, &lo, &err);
    assert_true(fd >= 0);
    assert_false(unit_is_nonblocking(fd));
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &sl), 0);
    assert_int_equal(on, 1);
    /* SO_REUSEPORT on both: a second socket shares the port. */
    b = unit_loopback(AF_INET, unit_local_port(fd));
    fd2 = sf_udp_bind(NULL, &b, &lo, &err);
    assert_true(fd2 >= 0);
    /* connect from a given source */
    cfd = sf_udp_connect(NULL, &b, &src, 0, &err);
    assert_true(cfd >= 0);
    assert_int_equal(sf_peer_addr(cfd, &a), 0);
    assert_int_equal(sf_addr_port(&a), sf_addr_port(&b));
    close(cfd);
    close(fd2);
    close(fd);
}

/* ---- read and write ---- */

static void
read_write_edges(void **state)
{
    struct sigaction old, dfl = { .sa_handler = SIG_DFL };
    char buf[8];
    int sv[2], p[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(sf_set_nonblock(sv[0], 1), 0);
    assert_true(unit_is_nonblocking(sv[0]));
    assert_int_equal(sf_read(NULL, sv[0], buf, sizeof(buf)), SF_EAGAIN);
    assert_int_equal(sf_set_nonblock(sv[0], 0), 0);
    assert_false(unit_is_nonblocking(sv[0]));
    assert_int_equal(sf_set_nonblock(-1, 1), -EBADF);

    /* End of stream reads 0; writing to a closed peer is EPIPE, never SIGPIPE. */
    sigaction(SIGPIPE, &dfl, &old);
    close(sv[1]);
    assert_int_equal(sf_read(NULL, sv[0], buf, sizeof(buf)), 0);
    assert_int_equal(sf_write(NULL, sv[0], "x", 1), -EPIPE);
    close(sv[0]);
    sigaction(SIGPIPE, &old, NULL);

    /* Not a socket: write() takes over. */
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sf_write(NULL, p[1], "pipe", 4), 4);
    assert_int_equal(sf_read(NULL, p[0], buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pipe", 4);
    close(p[0]);
    close(p[1]);
    assert_int_equal(sf_read(NULL, -1, buf, sizeof(buf)), -EBADF);
    assert_int_equal(sf_write(NULL, -1, buf, 1), -EBADF);
}

typedef struct pump {
    int fd;
    const char *data;
    size_t len;
    ssize_t rc;
} pump;

static void *
pump_write(void *arg)
{
    pump *p = arg;

    p->rc = sf_write_full(NULL, p->fd, p->data, p->len);
    close(p->fd);
    return NULL;
}

/* 1 MiB in both full loops, through a socketpair's small buffers. */
static void
read_write_full(void **state)
{
    static char in[1 << 20], out[(1 << 20) + 16];
    pump pw = { .data = in, .len = sizeof(in) };
    pthread_t th;
    int sv[2];

    (void)state;
    unit_fill_pattern(in, sizeof(in), 11);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pw.fd = sv[0];
    assert_int_equal(pthread_create(&th, NULL, pump_write, &pw), 0);
    alarm(20);
    /* Asking for more than comes: the count read before the end of the stream. */
    assert_int_equal(sf_read_full(NULL, sv[1], out, sizeof(out)), sizeof(in));
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(pw.rc, sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    close(sv[1]);
    assert_int_equal(sf_read_full(NULL, -1, out, 1), -EBADF);
    assert_int_equal(sf_write_full(NULL, -1, out, 1), -EBADF);
}

/* A blocking read interrupted by a signal (EINTR) keeps waiting for the data. */
static void
read_retries_eintr(void **state)
{
    struct sigaction old;
    storm s = { .first_ms = 30, .every_ms = 20, .count = 3 };
    pthread_t th;
    char buf[8];
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    install_interrupter(&old);
    s.target = pthread_self();
    s.write_fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, storm_main, &s), 0);
    alarm(10);
    assert_int_equal(sf_read(NULL, sv[0], buf, sizeof(buf)), 4);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    sigaction(SIGUSR2, &old, NULL);
    assert_true(interrupts >= 1);
    assert_memory_equal(buf, "late", 4);
    close(sv[0]);
    close(sv[1]);
}

/* shutdown(SHUT_WR): the peer reads the end of the stream (CLOSE_WAIT) and can still
 * answer; the half-closed side reads the answer, then the end. */
static void
half_close(void **state)
{
    int lfd, port, cfd, sfd;
    char buf[16];

    (void)state;
    lfd = unit_tcp_listener(AF_INET6, 0, &port);
    cfd = unit_tcp_client(AF_INET6, port);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    sfd = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(sfd >= 0);
    assert_int_equal(sf_write_full(NULL, cfd, "question", 8), 8);
    assert_int_equal(sf_shutdown_write(NULL, cfd), 0);
    assert_int_equal(unit_read_exact(sfd, buf, sizeof(buf), UNIT_WAIT_MS), 8);
    assert_memory_equal(buf, "question", 8);
    assert_int_equal(sf_tcp_state(sfd, NULL, NULL), SF_TCP_CLOSE_WAIT);
    /* Writing after our own FIN is an error. */
    assert_int_equal(sf_write(NULL, cfd, "more", 4), -EPIPE);
    assert_int_equal(sf_write(NULL, sfd, "answer", 6), 6);
    assert_int_equal(sf_shutdown_write(NULL, sfd), 0);
    assert_int_equal(sf_read_full(NULL, cfd, buf, sizeof(buf)), 6);
    assert_memory_equal(buf, "answer", 6);
    assert_int_equal(sf_shutdown_write(NULL, -1), -EBADF);
    close(sfd);
    close(cfd);
    close(lfd);
}

static void
helpers(void **state)
{
    sf_addr a, b;
    sf_err err;
    int fd, port, lfd;

    (void)state;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    assert_int_equal(sf_peer_addr(fd, &a), -ENOTCONN);
    assert_int_equal(sf_local_addr(fd, &a), 0);
    assert_int_equal(sf_addr_port(&a), 0);
    assert_int_equal(sf_sock_error(fd), 0);
    /* A refused nonblocking connect leaves its reason in SO_ERROR, once. */
    port = unit_closed_port(AF_INET, SOCK_STREAM);
    b = unit_loopback(AF_INET, port);
    if (connect(fd, (struct sockaddr *)&b.ss, b.len) < 0)
        assert_int_equal(errno, EINPROGRESS);
    assert_true(unit_poll(fd, POLLOUT, UNIT_WAIT_MS) != 0);
    assert_int_equal(sf_sock_error(fd), -ECONNREFUSED);
    assert_int_equal(sf_sock_error(fd), 0);
    assert_int_equal(sf_sock_error(-1), -EBADF);
    assert_int_equal(sf_local_addr(-1, &a), -EBADF);

    errno = EDOM;
    assert_int_equal(sf_close(NULL, fd), 0);
    assert_int_equal(errno, EDOM);
    assert_int_equal(sf_close(NULL, fd), -EBADF);

    /* sf_close with a trace still closes. */
    lfd = unit_tcp_listener(AF_INET, 0, NULL);
    {
        sf_tracer tr = { 0 };
        sf_trace t = { .tracer = &tr, .side = "x" };

        assert_int_equal(sf_close(&t, lfd), 0);
        assert_int_equal(fcntl(lfd, F_GETFD), -1);
    }
    (void)err;
}

/* ---- Unix domain sockets ---- */

static sf_addr
unix_addr(const char *text)
{
    sf_addr a;
    sf_err err;

    if (sf_addr_parse_unix(text, &a, &err) < 0)
        fail_msg("%s", err.msg);
    return a;
}

/* One exchange: connect to lfd's address, write, accept, read it back. */
static void
unix_stream_exchange(int lfd, const sf_addr *a)
{
    char buf[16];
    sf_err err;
    int cfd = sf_tcp_connect(NULL, a, NULL, UNIT_WAIT_MS, 0, &err);
    int sfd;

    if (cfd < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(sf_write_full(NULL, cfd, "unix!", 5), 5);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    sfd = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(sfd >= 0);
    assert_int_equal(unit_read_exact(sfd, buf, 5, UNIT_WAIT_MS), 5);
    assert_memory_equal(buf, "unix!", 5);
    close(cfd);
    close(sfd);
}

static void
unix_stream_path_and_abstract(void **state)
{
    char path[64], text[80];
    sf_addr a, abs = unix_addr("unix:@sockflow-unit-abstract");
    sf_err err;
    int lfd;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/sockflow-unit-%d.sock", (int)getpid());
    snprintf(text, sizeof(text), "unix:%s", path);
    unlink(path);
    a = unix_addr(text);
    lfd = sf_tcp_listen(NULL, &a, NULL, &err);
    if (lfd < 0)
        fail_msg("%s", err.msg);
    assert_true(unit_is_nonblocking(lfd) && unit_is_cloexec(lfd));
    unix_stream_exchange(lfd, &a);
    close(lfd);
    assert_int_equal(access(path, F_OK), 0);        /* the file outlives the socket */
    assert_int_equal(sf_unix_unlink(&a), 0);
    assert_int_equal(access(path, F_OK), -1);
    lfd = sf_tcp_listen(NULL, &abs, NULL, &err);
    if (lfd < 0)
        fail_msg("%s", err.msg);
    unix_stream_exchange(lfd, &abs);
    assert_int_equal(sf_unix_unlink(&abs), 0);      /* nothing to remove */
    close(lfd);
}

static void
unix_stale_file_replaced_live_one_kept(void **state)
{
    char path[64], text[80];
    sf_addr a;
    sf_err err;
    int old, lfd, second;

    (void)state;
    snprintf(path, sizeof(path), "/tmp/sockflow-unit-stale-%d.sock", (int)getpid());
    snprintf(text, sizeof(text), "unix:%s", path);
    unlink(path);
    a = unix_addr(text);
    /* a dead server's file: bound, never listening, closed */
    old = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(old, (struct sockaddr *)&a.ss, a.len), 0);
    close(old);
    lfd = sf_tcp_listen(NULL, &a, NULL, &err);
    if (lfd < 0)
        fail_msg("stale file not replaced: %s", err.msg);
    unix_stream_exchange(lfd, &a);
    /* a live server's file is never taken over */
    second = sf_tcp_listen(NULL, &a, NULL, &err);
    assert_int_equal(second, -EADDRINUSE);
    assert_non_null(strstr(err.msg, "bind unix:/tmp/sockflow-unit-stale-"));
    /* the check was a connect: the live server sees it as a client that left at once */
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    old = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(old >= 0);
    assert_int_equal(unit_wait_eof(old, UNIT_WAIT_MS), 0);
    close(old);
    unix_stream_exchange(lfd, &a);
    close(lfd);
    /* nor a file that is not a socket */
    sf_unix_unlink(&a);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    assert_int_equal(sf_tcp_listen(NULL, &a, NULL, &err), -EADDRINUSE);
    assert_int_equal(sf_unix_unlink(&a), 0);
    assert_int_equal(access(path, F_OK), 0);        /* not a socket: left alone */
    unlink(path);
}

static void
unix_datagram(void **state)
{
    sf_addr srv = unix_addr("unix:@sockflow-unit-dgram"), cli = unix_addr("unix:@sockflow-unit-dcli");
    sf_addr from;
    char buf[16], who[SF_ADDR_STRLEN];
    sf_err err;
    int sfd, cfd, trunc;

    (void)state;
    sfd = sf_udp_bind(NULL, &srv, NULL, &err);
    if (sfd < 0)
        fail_msg("%s", err.msg);
    cfd = sf_udp_bind(NULL, &cli, &(sf_listen_opts){ .blocking = 1 }, &err);
    assert_true(cfd >= 0);
    assert_int_equal(sf_sendto(NULL, cfd, "dgram", 5, &srv), 5);
    assert_true(unit_poll(sfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_recvfrom(NULL, sfd, buf, sizeof(buf), &from, &trunc), 5);
    assert_string_equal(sf_addr_format(&from, who, sizeof(who)), "unix:@sockflow-unit-dcli");
    assert_int_equal(sf_sendto(NULL, sfd, "back", 4, &from), 4);
    assert_int_equal(unit_read_exact(cfd, buf, 4, UNIT_WAIT_MS), 4);
    close(sfd);
    close(cfd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_listen_port0),
        cmocka_unit_test(bind_in_use_message),
        cmocka_unit_test(accept_nothing_pending),
        cmocka_unit_test(accept_transient_errors),
        cmocka_unit_test(udp_socket_unbound_client),
        cmocka_unit_test(tcp_flow_v4),
        cmocka_unit_test(tcp_flow_v6),
        cmocka_unit_test(connect_nonblock_flag),
        cmocka_unit_test(connect_refused),
        cmocka_unit_test(connect_timeout_on_full_backlog),
        cmocka_unit_test(connect_timeout_holds_under_signals),
        cmocka_unit_test(connect_from_source),
        cmocka_unit_test(connect_list_order),
        cmocka_unit_test(accept_blocking_waits),
        cmocka_unit_test(accept_blocking_through_eintr),
        cmocka_unit_test(reset_before_accept),
        cmocka_unit_test(udp_flow_v4),
        cmocka_unit_test(udp_flow_v6),
        cmocka_unit_test(udp_truncation),
        cmocka_unit_test(udp_connect_refused),
        cmocka_unit_test(udp_bind_options),
        cmocka_unit_test(read_write_edges),
        cmocka_unit_test(read_write_full),
        cmocka_unit_test(read_retries_eintr),
        cmocka_unit_test(half_close),
        cmocka_unit_test(helpers),
        cmocka_unit_test(unix_stream_path_and_abstract),
        cmocka_unit_test(unix_stale_file_replaced_live_one_kept),
        cmocka_unit_test(unix_datagram),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
