/* test_server_udp: the UDP engine's turn on a busy socket: out of the loop's epoll set
 * while it is read to the end, and back in it after, even when the kernel refuses once. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "unit.h"

#define BURST 8         /* datagrams queued at once: enough for a busy turn */

/* Send BURST + 1 datagrams on fd ("0".."8") and read each echo back. */
static void
burst_and_echoes(int fd)
{
    char buf[16];

    for (int i = 0; i <= BURST; i++) {
        snprintf(buf, sizeof(buf), "%d", i);
        assert_int_equal(sf_write(NULL, fd, buf, strlen(buf)), strlen(buf));
    }
    for (int i = 0; i <= BURST; i++) {
        char want[16];

        snprintf(want, sizeof(want), "%d", i);
        assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
        assert_int_equal(sf_read(NULL, fd, buf, sizeof(buf)), strlen(want));
        assert_memory_equal(buf, want, strlen(want));
    }
}

/* A burst is answered whole, and the socket is watched again after it: a datagram sent
 * once the burst is over is answered too. */
static void
udp_burst_then_quiet(void **state)
{
    sf_server_opts o = { .udp_rate = SF_UDP_NO_LIMIT };
    sf_addr to;
    unit_server u;
    sf_server_stats st;
    char buf[16];
    int fd;

    (void)state;
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_UDP, 0);
    to = unit_loopback(AF_INET, u.port);
    fd = sf_udp_connect(NULL, &to, NULL, 1, NULL);
    assert_true(fd >= 0);
    for (int round = 0; round < 20; round++)
        burst_and_echoes(fd);
    usleep(20000);
    assert_int_equal(sf_write(NULL, fd, "late", 4), 4);
    assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_read(NULL, fd, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "late", 4);
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 20 * (BURST + 1) + 1);
    assert_int_equal(st.dgrams_out, 20 * (BURST + 1) + 1);
}

/* ---- EPOLL_CTL_ADD refused once ---- */

/* The loop thread puts itself under a seccomp filter that hands every EPOLL_CTL_ADD it
 * makes to the test (SECCOMP_RET_USER_NOTIF), which answers ENOMEM the first time and
 * lets the call through the next. */
static atomic_int notify_fd = -1;
static atomic_int gate_open;

static int
trap_epoll_add(void)
{
#if defined(__x86_64__)
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_ctl, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EPOLL_CTL_ADD, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                        SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
#else
    return -1;
#endif
}

/* The first datagram ("arm") sets the trap in the loop thread and holds the loop until
 * the test has queued a burst behind it; every datagram is echoed. */
static void
arming_datagram(sf_dgram *d)
{
    if (atomic_load(&notify_fd) == -1 && d->inlen == 3 && memcmp(d->in, "arm", 3) == 0) {
        atomic_store(&notify_fd, trap_epoll_add());
        for (int i = 0; i < 500 && !atomic_load(&gate_open); i++)
            usleep(10000);
    }
    d->reply = d->in;
    d->reply_len = d->inlen;
}

static const sf_service arming_svc = {
    .name = "arming",
    .protos = SF_PROTO_UDP,
    .on_datagram = arming_datagram,
};

/* Wait for the next trapped epoll_ctl and answer it: error (negative) or let it run (0).
 * Returns the descriptor the call was adding. */
static int
answer_trapped_add(int nfd, int error)
{
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;

    assert_true(unit_poll(nfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    memset(&req, 0, sizeof(req));
    assert_int_equal(ioctl(nfd, SECCOMP_IOCTL_NOTIF_RECV, &req), 0);
    assert_int_equal(req.data.nr, __NR_epoll_ctl);
    memset(&resp, 0, sizeof(resp));
    resp.id = req.id;
    resp.error = error;
    resp.flags = error ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    assert_int_equal(ioctl(nfd, SECCOMP_IOCTL_NOTIF_SEND, &resp), 0);
    return (int)req.data.args[2];
}

/* The socket left the loop's epoll set for a busy turn and the kernel refuses to take it
 * back (ENOMEM): the failure is logged, the socket is tried again 100 ms later, and a
 * datagram sent meanwhile is answered once it is back, with a line that says so. */
static void
udp_watched_again_after_add_fails(void **state)
{
    unit_log log = { .mu = PTHREAD_MUTEX_INITIALIZER };
    sf_server_opts o = { .log = unit_keep_line, .log_ud = &log };
    sf_addr to;
    unit_server u;
    char buf[16], want[128];
    int fd, nfd, udp_fd;

    (void)state;
    atomic_store(&notify_fd, -1);
    atomic_store(&gate_open, 0);
    unit_server_start(&u, &o, &arming_svc, SF_PROTO_UDP, 0);
    to = unit_loopback(AF_INET, u.port);
    fd = sf_udp_connect(NULL, &to, NULL, 1, NULL);
    assert_true(fd >= 0);
    assert_int_equal(sf_write(NULL, fd, "arm", 3), 3);
    for (int i = 0; i < 500 && atomic_load(&notify_fd) == -1; i++)
        usleep(10000);
    nfd = atomic_load(&notify_fd);
    if (nfd < 0) {
        atomic_store(&gate_open, 1);
        close(fd);
        unit_server_stop(&u, NULL);
        skip();     /* no seccomp user notification here (kernel, arch or sandbox) */
    }
    /* The burst queues behind "arm" and is read in one go: a busy turn. */
    for (int i = 0; i < BURST; i++)
        assert_int_equal(sf_write(NULL, fd, "x", 1), 1);
    atomic_store(&gate_open, 1);
    udp_fd = answer_trapped_add(nfd, -ENOMEM);
    for (int i = 0; i <= BURST; i++) {
        assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
        assert_true(sf_read(NULL, fd, buf, sizeof(buf)) > 0);
    }
    snprintf(want, sizeof(want), "udp: epoll_ctl ADD (fd %d): Cannot allocate memory; its "
             "datagrams wait, trying again every 100 ms", udp_fd);
    assert_true(unit_wait_line(&log, want, 1, UNIT_WAIT_MS));
    /* Out of the set: nothing answers until the retry is let through. */
    assert_int_equal(sf_write(NULL, fd, "late", 4), 4);
    assert_int_equal(unit_poll(fd, POLLIN, 50) & POLLIN, 0);
    assert_int_equal(answer_trapped_add(nfd, 0), udp_fd);
    assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_read(NULL, fd, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "late", 4);
    snprintf(want, sizeof(want), "udp: fd %d watched again", udp_fd);
    assert_true(unit_wait_line(&log, want, 1, UNIT_WAIT_MS));
    /* Without the test listening, a trapped call fails (ENOSYS) rather than waits. */
    close(nfd);
    close(fd);
    unit_server_stop(&u, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(udp_burst_then_quiet),
        cmocka_unit_test(udp_watched_again_after_add_fails),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
