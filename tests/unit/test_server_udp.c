/* test_server_udp: the UDP engine's turn on a busy socket: out of the loop's epoll set
 * while it is read to the end, and back in it after, even when the kernel refuses once;
 * the replies of one batch to one peer grouped in one UDP_SEGMENT send. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/udp.h>
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

static atomic_int holding;

/* Echo. "arm" (the first time) sets the trap in the loop thread; "arm" and "hold" then
 * hold the loop until the test opens the gate, so that what it queues meanwhile is read
 * in one receive. */
static void
gated_datagram(sf_dgram *d)
{
    int arm = d->inlen == 3 && memcmp(d->in, "arm", 3) == 0 &&
              atomic_load(&notify_fd) == -1;

    if (arm || (d->inlen == 4 && memcmp(d->in, "hold", 4) == 0)) {
        if (arm)
            atomic_store(&notify_fd, trap_epoll_add());
        atomic_store(&holding, 1);
        for (int i = 0; i < 500 && !atomic_load(&gate_open); i++)
            usleep(10000);
    }
    d->reply = d->in;
    d->reply_len = d->inlen;
}

static const sf_service gated_svc = {
    .name = "gated",
    .protos = SF_PROTO_UDP,
    .on_datagram = gated_datagram,
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
    unit_server_start(&u, &o, &gated_svc, SF_PROTO_UDP, 0);
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

/* ---- replies grouped in one UDP_SEGMENT send ---- */

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

/* A client connected to port with UDP_GRO on: replies that left the server as one
 * UDP_SEGMENT send reach it as one read with their segment size (loopback hands the
 * grouped datagram over whole to a socket that asks). -1: not on this kernel. */
static int
gro_client(int port)
{
    sf_addr to = unit_loopback(AF_INET, port);
    int fd = sf_udp_connect(NULL, &to, NULL, 1, NULL), on = 1;

    assert_true(fd >= 0);
    if (setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Hold the server's loop, send the datagrams sizes[0..n) on fds[0..n) (byte j of
 * datagram i is 'a' + (i + j) % 26), then let it go: they are read in one receive. */
static void
send_held(int hold_fd, const int *fds, const size_t *sizes, int n)
{
    char buf[256];

    atomic_store(&holding, 0);
    atomic_store(&gate_open, 0);
    assert_int_equal(sf_write(NULL, hold_fd, "hold", 4), 4);
    for (int i = 0; i < 500 && !atomic_load(&holding); i++)
        usleep(10000);
    assert_true(atomic_load(&holding));
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            buf[j] = (char)('a' + (i + (int)j) % 26);
        assert_int_equal(sf_write(NULL, fds[i], buf, sizes[i]), sizes[i]);
    }
    atomic_store(&gate_open, 1);
    assert_true(unit_poll(hold_fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    assert_int_equal(sf_read(NULL, hold_fd, buf, sizeof(buf)), 4);
}

/* One read on fd: its bytes into buf, the segment size of a grouped read into *seg (0:
 * a datagram of its own). */
static ssize_t
read_gro(int fd, char *buf, size_t cap, int *seg)
{
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { .iov_base = buf, .iov_len = cap };
    struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                        .msg_controllen = sizeof(ctl) };
    ssize_t n;

    *seg = 0;
    assert_true(unit_poll(fd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    n = recvmsg(fd, &h, MSG_DONTWAIT);
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&h); cm; cm = CMSG_NXTHDR(&h, cm))
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO)
            memcpy(seg, CMSG_DATA(cm), sizeof(*seg));
    return n;
}

/* Datagrams first..first + n of a send_held run came back as buf: every byte. */
static void
assert_echoes(const char *buf, const size_t *sizes, int first, int n)
{
    for (int i = first; i < first + n; i++)
        for (size_t j = 0; j < sizes[i]; j++, buf++)
            assert_int_equal(*buf, 'a' + (i + (int)j) % 26);
}

/* Twenty datagrams of 100 bytes from one peer, read in one receive: their replies as the
 * client reads them (grouped: one read of 2,000 bytes cut at 100; else twenty reads of
 * 100), every byte in order; the server's count of replies sent grouped. */
static void
twenty_replies(int no_gso, uint64_t *gso)
{
    sf_server_opts o = { .udp_rate = SF_UDP_NO_LIMIT, .no_udp_gso = no_gso };
    size_t sizes[20];
    int fds[20], fd, seg;
    unit_server u;
    sf_server_stats st;
    char buf[4096];

    unit_server_start(&u, &o, &gated_svc, SF_PROTO_UDP, 0);
    fd = gro_client(u.port);
    if (fd < 0) {
        unit_server_stop(&u, NULL);
        skip();     /* no UDP_GRO here (Linux 5.0) */
    }
    for (int i = 0; i < 20; i++) {
        sizes[i] = 100;
        fds[i] = fd;
    }
    send_held(fd, fds, sizes, 20);
    for (int i = 0; i < 20; i += no_gso ? 1 : 20) {
        assert_int_equal(read_gro(fd, buf, sizeof(buf), &seg), no_gso ? 100 : 2000);
        assert_int_equal(seg, no_gso ? 0 : 100);
        assert_echoes(buf, sizes, i, no_gso ? 1 : 20);
    }
    assert_int_equal(unit_poll(fd, POLLIN, 50) & POLLIN, 0);
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_out, 21);
    *gso = st.dgrams_gso;
}

/* Replies to one peer in one receive leave in one send, counted as sent grouped. */
static void
udp_replies_to_one_peer_leave_as_one_send(void **state)
{
    uint64_t gso;

    (void)state;
    twenty_replies(0, &gso);
    assert_int_equal(gso, 20);
}

/* no_udp_gso: the same twenty replies come as twenty datagrams of their own. */
static void
udp_no_udp_gso_sends_each_reply_alone(void **state)
{
    uint64_t gso;

    (void)state;
    twenty_replies(1, &gso);
    assert_int_equal(gso, 0);
}

/* A group ends after a shorter reply (the kernel cuts at the first's size; only the last
 * piece may be shorter), before a longer one and at another peer; a reply alone is sent
 * as it is. Peer A: 100 100 60 100 100 120, then peer B: 50 50, then A: 100. */
static void
udp_groups_end_at_a_size_change_or_another_peer(void **state)
{
    sf_server_opts o = { .udp_rate = SF_UDP_NO_LIMIT };
    size_t sizes[9] = { 100, 100, 60, 100, 100, 120, 50, 50, 100 };
    int fds[9], a, b, seg;
    unit_server u;
    sf_server_stats st;
    char buf[4096];

    (void)state;
    unit_server_start(&u, &o, &gated_svc, SF_PROTO_UDP, 0);
    a = gro_client(u.port);
    if (a < 0) {
        unit_server_stop(&u, NULL);
        skip();
    }
    b = gro_client(u.port);
    for (int i = 0; i < 9; i++)
        fds[i] = i == 6 || i == 7 ? b : a;
    send_held(a, fds, sizes, 9);
    assert_int_equal(read_gro(a, buf, sizeof(buf), &seg), 260);    /* 100 100 60 */
    assert_int_equal(seg, 100);
    assert_echoes(buf, sizes, 0, 3);
    assert_int_equal(read_gro(a, buf, sizeof(buf), &seg), 200);    /* 100 100 */
    assert_int_equal(seg, 100);
    assert_echoes(buf, sizes, 3, 2);
    assert_int_equal(read_gro(a, buf, sizeof(buf), &seg), 120);    /* alone */
    assert_int_equal(seg, 0);
    assert_echoes(buf, sizes, 5, 1);
    assert_int_equal(read_gro(a, buf, sizeof(buf), &seg), 100);    /* after B's */
    assert_int_equal(seg, 0);
    assert_echoes(buf, sizes, 8, 1);
    assert_int_equal(read_gro(b, buf, sizeof(buf), &seg), 100);    /* 50 50 */
    assert_int_equal(seg, 50);
    assert_echoes(buf, sizes, 6, 2);
    close(a);
    close(b);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_out, 10);
    assert_int_equal(st.dgrams_gso, 7);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(udp_burst_then_quiet),
        cmocka_unit_test(udp_watched_again_after_add_fails),
        cmocka_unit_test(udp_replies_to_one_peer_leave_as_one_send),
        cmocka_unit_test(udp_groups_end_at_a_size_change_or_another_peer),
        cmocka_unit_test(udp_no_udp_gso_sends_each_reply_alone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
