/* test_server_ring: the TCP engine's io_uring path (echo, daytime), against the same
 * checks on epoll, and its fallback where the kernel refuses io_uring. */
#include <stddef.h>
#include <sys/prctl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "unit.h"

#define BIG (2u << 20)

/* The echo of len bytes written whole before any is read: the server's sends stall on
 * a full socket, its receiving pauses, and every byte still comes back in order. */
static void
echo_backpressure(int port, size_t len)
{
    static char out[BIG], in[BIG];
    size_t sent = 0, got = 0;
    int fd = unit_tcp_client(AF_INET, port);

    unit_fill_pattern(out, len, 7);
    assert_int_equal(sf_set_nonblock(fd, 1), 0);
    for (uint64_t end = unit_now_ms() + 20000; got < len && unit_now_ms() < end;) {
        /* Not reading for the first second: everything the buffers hold piles up. */
        int reading = sent == len || unit_now_ms() + 19000 > end;
        short ev = (sent < len ? POLLOUT : 0) | (reading ? POLLIN : 0);
        int re = unit_poll(fd, ev, 100);

        if ((re & POLLOUT) && sent < len) {
            ssize_t n = sf_write(NULL, fd, out + sent, len - sent);

            assert_true(n > 0 || n == SF_EAGAIN);
            sent += n > 0 ? (size_t)n : 0;
        }
        if (reading && (re & POLLIN)) {
            ssize_t n = sf_read(NULL, fd, in + got, len - got);

            assert_true(n > 0 || n == SF_EAGAIN);
            got += n > 0 ? (size_t)n : 0;
        }
    }
    assert_int_equal(got, len);
    assert_memory_equal(in, out, len);
    close(fd);
}

/* Short exchanges, a half-close with a large transfer, and backpressure: the same
 * bytes back on either path, and the counters saying which path took the clients. */
static void
echo_on(int no_ring)
{
    sf_server_opts o = { .no_ring = no_ring };
    sf_server_stats st;
    unit_server u;
    char msg[64], buf[64];

    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP, 0);
    for (int i = 0; i < 50; i++) {
        int fd = unit_tcp_client(AF_INET, u.port);
        int len = snprintf(msg, sizeof(msg), "request %d", i);

        assert_int_equal(sf_write_full(NULL, fd, msg, (size_t)len), len);
        assert_int_equal(unit_read_exact(fd, buf, (size_t)len, UNIT_WAIT_MS), len);
        assert_memory_equal(buf, msg, (size_t)len);
        close(fd);
    }
    echo_backpressure(u.port, BIG);
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 51);
    assert_true(st.bytes_out == st.bytes_in);
    assert_true(st.bytes_in >= BIG);
    if (no_ring)
        assert_int_equal(st.ring_accepted, 0);
    else if (unit_ring_available())
        assert_int_equal(st.ring_accepted, 51);
}

static void
echo_ring(void **state)
{
    (void)state;
    echo_on(0);
}

static void
echo_epoll(void **state)
{
    (void)state;
    echo_on(1);
}

/* A client that sends half a line and waits: closed by the idle timeout while its
 * receive is with the kernel (cancelled, then the descriptor closed), and the server
 * goes on serving. */
static void
ring_idle_timeout_closes(void **state)
{
    sf_server_opts o = { .idle_timeout_ms = 300 };
    sf_server_stats st;
    unit_server u;
    char c;
    int fd;
    uint64_t t0;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_write(NULL, fd, "x", 1), 1);
    assert_int_equal(unit_read_exact(fd, &c, 1, UNIT_WAIT_MS), 1);
    t0 = unit_now_ms();
    assert_true(unit_poll(fd, POLLIN, 5000) & POLLIN);
    assert_int_equal(read(fd, &c, 1), 0);       /* the server's FIN */
    assert_true(unit_now_ms() - t0 >= 200);
    close(fd);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_write(NULL, fd, "y", 1), 1);
    assert_int_equal(unit_read_exact(fd, &c, 1, UNIT_WAIT_MS), 1);
    assert_int_equal(c, 'y');
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.timeouts, 1);
    if (unit_ring_available())
        assert_int_equal(st.ring_accepted, 2);
}

/* Draining: the listener stops accepting at once (its accept request let go; closing
 * the descriptor alone would leave the ring accepting), while the client already in
 * is still served until it leaves. */
static void
ring_drain_refuses_new_serves_present(void **state)
{
    sf_server_stats st;
    sf_addr a;
    unit_server u;
    char c;
    int fd, refused = 0;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 0);
    a = unit_loopback(AF_INET, u.port);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_write(NULL, fd, "a", 1), 1);
    assert_int_equal(unit_read_exact(fd, &c, 1, UNIT_WAIT_MS), 1);
    sf_server_stop(u.s, 1);
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; !refused && unit_now_ms() < end;) {
        int x = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, NULL);

        refused = x == -ECONNREFUSED;
        if (x >= 0)
            close(x);
        unit_sleep_ms(5);
    }
    assert_true(refused);
    assert_int_equal(sf_write(NULL, fd, "b", 1), 1);
    assert_int_equal(unit_read_exact(fd, &c, 1, UNIT_WAIT_MS), 1);
    assert_int_equal(c, 'b');
    close(fd);
    assert_int_equal(unit_server_join(&u, UNIT_WAIT_MS), 0);
    assert_int_equal(u.rc, 0);
    unit_server_stop(&u, &st);
    assert_true(st.closed >= 1);
}

/* daytime through the ring: a line sent from on_open, then the server's FIN. */
static void
ring_daytime_line_then_fin(void **state)
{
    sf_server_stats st;
    unit_server u;
    char buf[128];
    ssize_t n, got = 0;
    int fd;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_daytime, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    while (got < (ssize_t)sizeof(buf) && (unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN) &&
           (n = read(fd, buf + got, sizeof(buf) - (size_t)got)) > 0)
        got += n;
    assert_true(got > 10);
    assert_int_equal(buf[got - 1], '\n');
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 1);
    if (unit_ring_available())
        assert_int_equal(st.ring_accepted, 1);
}

/* A filter that makes io_uring_setup fail with EPERM, as a container's seccomp
 * profile does. */
static int
refuse_io_uring(void)
{
#ifdef __NR_io_uring_setup
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -1;
#endif
    return 0;
}

static void *
run_server(void *s)
{
    sf_server_run(s);
    return NULL;
}

/* In a child under that filter the server serves on epoll: the same echo, no client
 * through the ring. Exit 0 when so, else the step that failed. */
static int
child_serves_refused(void)
{
    sf_server_opts o = { 0 };
    sf_server_stats st;
    sf_addr a = unit_loopback(AF_INET, 0);
    sf_server *s;
    pthread_t th;
    char buf[8];
    int fd;

    if (refuse_io_uring() < 0 || unit_ring_available())
        return 10;
    if ((s = sf_server_new(&o, NULL)) == NULL ||
        sf_server_listen(s, &sf_svc_echo, &a, 1, 0, SF_PROTO_TCP, NULL) < 0)
        return 11;
    a = sf_server_listener(s, 0)->addr;
    if (pthread_create(&th, NULL, run_server, s) != 0)
        return 12;
    fd = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, NULL);
    if (fd < 0 || sf_write(NULL, fd, "ping", 4) != 4 ||
        unit_read_exact(fd, buf, 4, UNIT_WAIT_MS) != 4 || memcmp(buf, "ping", 4) != 0)
        return 13;
    close(fd);
    sf_server_stop(s, 0);
    pthread_join(th, NULL);
    sf_server_get_stats(s, &st);
    sf_server_free(s);
    return st.accepted == 1 && st.ring_accepted == 0 ? 0 : 14;
}

static void
ring_refused_falls_back_to_epoll(void **state)
{
    (void)state;
    unit_in_child(child_serves_refused);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(echo_ring),
        cmocka_unit_test(echo_epoll),
        cmocka_unit_test(ring_idle_timeout_closes),
        cmocka_unit_test(ring_drain_refuses_new_serves_present),
        cmocka_unit_test(ring_daytime_line_then_fin),
        cmocka_unit_test(ring_refused_falls_back_to_epoll),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
