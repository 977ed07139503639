/* mmsg_echo.c - recvmmsg/sendmmsg UDP echo server, up to 64 datagrams per call, no epoll: the UDP reference. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * One blocking socket: recvmmsg with MSG_WAITFORONE sleeps until one datagram is there,
 * then takes whatever else is queued, up to 64, in the same call; sendmmsg sends them all
 * back to their sources in one call. Each slot holds a whole datagram (64 KiB), so any
 * size is echoed as it came. On SIGTERM it prints on stderr how many datagrams it echoed
 * and how many system calls that took.
 */

#define BATCH 64
#define DGRAM 65536

static volatile sig_atomic_t stopping;

static void on_term(int signo)
{
    (void)signo;
    stopping = 1;
}

static int bind_udp(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("mmsg_echo: bind 127.0.0.1");
        return -1;
    }
    printf("listening on udp 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

/* Send out[0..n) back; a datagram the kernel refuses (ENOBUFS, say) is skipped, the
 * rest still go. Returns the sendmmsg calls made. */
static unsigned long send_all(int fd, struct mmsghdr *out, int n)
{
    unsigned long calls = 0;
    int done = 0;

    while (done < n && !stopping) {
        int r = sendmmsg(fd, out + done, (unsigned int)(n - done), 0);

        calls++;
        if (r > 0)
            done += r;
        else if (r < 0 && errno != EINTR)
            done++;
    }
    return calls;
}

int main(int argc, char **argv)
{
    static char bufs[BATCH][DGRAM];
    static struct sockaddr_storage from[BATCH];
    struct iovec riov[BATCH], siov[BATCH];
    struct mmsghdr in[BATCH], out[BATCH];
    struct sigaction sa;
    unsigned long dgrams = 0, rcalls = 0, scalls = 0;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;    /* no SA_RESTART: the blocking recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fd = bind_udp(argc > 1 ? atoi(argv[1]) : 0);
    if (fd < 0)
        return 1;
    memset(in, 0, sizeof(in));
    memset(out, 0, sizeof(out));
    for (int i = 0; i < BATCH; i++) {
        riov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = DGRAM };
        siov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = 0 };
        in[i].msg_hdr = (struct msghdr){ .msg_name = &from[i], .msg_iov = &riov[i],
                                         .msg_iovlen = 1 };
        out[i].msg_hdr = (struct msghdr){ .msg_name = &from[i], .msg_iov = &siov[i],
                                          .msg_iovlen = 1 };
    }
    while (!stopping) {
        int n;

        for (int i = 0; i < BATCH; i++)
            in[i].msg_hdr.msg_namelen = sizeof(from[i]);
        n = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        rcalls++;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("mmsg_echo: recvmmsg");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            siov[i].iov_len = in[i].msg_len;
            out[i].msg_hdr.msg_namelen = in[i].msg_hdr.msg_namelen;
        }
        scalls += send_all(fd, out, n);
        dgrams += (unsigned long)n;
    }
    fprintf(stderr, "mmsg_echo: datagrams=%lu recvmmsg=%lu sendmmsg=%lu syscalls/datagram=%.3f\n",
            dgrams, rcalls, scalls, dgrams ? (double)(rcalls + scalls) / (double)dgrams : 0.0);
    return 0;
}
