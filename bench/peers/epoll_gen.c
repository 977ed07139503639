/* epoll_gen.c - single-threaded epoll load generator (TCP echo / UDP echo), reference for benchmarks. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define UDP_TIMEOUT_NS 200000000LL
#define UDP_SWEEP_NS 20000000LL

struct conn {
    int fd;
    int connected;
    int want_out;        /* EPOLLOUT currently requested */
    uint64_t sent;       /* bytes written */
    uint64_t recvd;      /* bytes read back */
};

struct slot {
    uint32_t seq;        /* sequence number currently outstanding */
    int64_t sent_at;     /* ns timestamp of last send */
};

static long conns = 1, size = 64, inflight = 1;
static double secs = 1.0, warm = 0.0;
static char rbuf[65536];

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int wait_ms(int64_t now, int64_t until)
{
    return until <= now ? 0 : (int)((until - now + 999999) / 1000000);
}

static void usage(void)
{
    fprintf(stderr, "usage: epoll_gen echo HOST PORT -c CONNS -s SIZE -P INFLIGHT -d SECS [-w SECS]\n"
                    "       epoll_gen udp HOST PORT -c INFLIGHT -s SIZE -d SECS [-w SECS]\n"
                    "-w: run this long first, outside the figures; a line 'measuring' marks its end\n");
    exit(2);
}

/* The end of the warm-up, said on standard output the moment it passes, so that whoever
 * reads the server's CPU time can read it then. */
static void mark_measuring(void)
{
    printf("measuring\n");
    fflush(stdout);
}

static void report(uint64_t requests, double elapsed, const char *extra)
{
    printf("requests=%llu seconds=%.3f rps=%.0f%s\n", (unsigned long long)requests,
           elapsed, elapsed > 0 ? (double)requests / elapsed : 0.0, extra);
    fflush(stdout);
}

/* Write as much of the allowed window as the socket accepts. Returns -1 on error. */
static int tcp_fill(int ep, struct conn *c, const char *wbuf)
{
    uint64_t limit = (c->recvd / (uint64_t)size + (uint64_t)inflight) * (uint64_t)size;
    int want_out = 0;

    while (c->sent < limit) {
        ssize_t n = send(c->fd, wbuf, (size_t)(limit - c->sent), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            want_out = 1;
            break;
        }
        c->sent += (uint64_t)n;
    }
    if (want_out != c->want_out) {
        struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c };
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want_out;
    }
    return 0;
}

static void tcp_close(struct conn *c, long *alive, const char *why)
{
    if (why)
        fprintf(stderr, "epoll_gen: connection: %s\n", why);
    close(c->fd);
    c->fd = -1;
    (*alive)--;
}

static int run_echo(const struct addrinfo *ai)
{
    struct conn *cs = calloc((size_t)conns, sizeof(*cs));
    char *wbuf = malloc((size_t)(size * inflight));
    struct epoll_event evs[MAX_EVENTS];
    int ep = epoll_create1(0), one = 1;
    long i, alive = 0;
    int64_t start, measure, deadline, now;
    uint64_t requests = 0, before = 0;
    int measuring = 0;

    if (!cs || !wbuf || ep < 0) {
        perror("epoll_gen");
        return 1;
    }
    memset(wbuf, 'x', (size_t)(size * inflight));
    for (i = 0; i < conns; i++) {
        struct conn *c = &cs[i];
        struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };

        c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c->fd < 0) {
            perror("epoll_gen: socket");
            return 1;
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            perror("epoll_gen: connect");
            return 1;
        }
        c->want_out = 1;
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        alive++;
    }

    start = now = now_ns();
    measure = start + (int64_t)(warm * 1e9);
    deadline = measure + (int64_t)(secs * 1e9);
    while (now < deadline && alive > 0) {
        int n;

        if (!measuring && now >= measure) {
            for (i = 0; i < conns; i++)
                before += cs[i].recvd / (uint64_t)size;
            measuring = 1;
            mark_measuring();
        }
        n = epoll_wait(ep, evs, MAX_EVENTS, wait_ms(now, measuring ? deadline : measure));

        if (n < 0 && errno != EINTR) {
            perror("epoll_gen: epoll_wait");
            break;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;

            if (c->fd < 0)
                continue;
            if (!c->connected) {
                int err = 0;
                socklen_t len = sizeof(err);

                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) {
                    tcp_close(c, &alive, strerror(err));
                    continue;
                }
                c->connected = 1;
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);

                if (r == 0) {
                    tcp_close(c, &alive, "closed by peer");
                    continue;
                }
                if (r < 0) {
                    if (errno != EAGAIN && errno != EINTR)
                        tcp_close(c, &alive, strerror(errno));
                    if (c->fd < 0)
                        continue;
                } else {
                    c->recvd += (uint64_t)r;
                }
            }
            if (tcp_fill(ep, c, wbuf) < 0)
                tcp_close(c, &alive, strerror(errno));
        }
        now = now_ns();
    }

    for (i = 0; i < conns; i++)
        requests += cs[i].recvd / (uint64_t)size;
    /* said before the connections close, so that the closing is not in the window */
    report(requests - before, (double)(now - measure) / 1e9, "");
    for (i = 0; i < conns; i++)
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    free(cs);
    free(wbuf);
    close(ep);
    return requests > before ? 0 : 1;
}

static void udp_send(int fd, char *buf, struct slot *s, uint32_t idx, uint32_t seq, int64_t now)
{
    s->seq = seq;
    s->sent_at = now;
    memcpy(buf, &idx, 4);
    memcpy(buf + 4, &seq, 4);
    send(fd, buf, (size_t)size, 0); /* failures are retried by the timeout sweep */
}

static int run_udp(const struct addrinfo *ai)
{
    struct slot *slots = calloc((size_t)inflight, sizeof(*slots));
    char *wbuf = malloc((size_t)size);
    struct epoll_event ev, evs[4];
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int ep = epoll_create1(0);
    uint32_t seq = 0;
    uint64_t requests = 0, lost = 0, before = 0, lost_before = 0;
    int64_t start, measure, deadline, next_sweep, now;
    int measuring = 0;
    char extra[48];
    long i;

    if (!slots || !wbuf || fd < 0 || ep < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        perror("epoll_gen");
        return 1;
    }
    memset(wbuf, 'x', (size_t)size);
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);

    start = now = now_ns();
    measure = start + (int64_t)(warm * 1e9);
    deadline = measure + (int64_t)(secs * 1e9);
    next_sweep = start + UDP_SWEEP_NS;
    for (i = 0; i < inflight; i++)
        udp_send(fd, wbuf, &slots[i], (uint32_t)i, ++seq, now);

    while (now < deadline) {
        int64_t until = next_sweep < deadline ? next_sweep : deadline;
        int n;

        if (!measuring && now >= measure) {
            before = requests;
            lost_before = lost;
            measuring = 1;
            mark_measuring();
        }
        if (!measuring && measure < until)
            until = measure;
        n = epoll_wait(ep, evs, 4, wait_ms(now, until));

        if (n < 0 && errno != EINTR) {
            perror("epoll_gen: epoll_wait");
            break;
        }
        now = now_ns();
        for (;;) {
            ssize_t r = recv(fd, rbuf, sizeof(rbuf), 0);
            uint32_t idx, rseq;

            if (r < 0) {
                if (errno == EAGAIN)
                    break;
                continue; /* EINTR, or ECONNREFUSED from an ICMP error */
            }
            if (r < 8)
                continue;
            memcpy(&idx, rbuf, 4);
            memcpy(&rseq, rbuf + 4, 4);
            if (idx >= (uint32_t)inflight || slots[idx].seq != rseq)
                continue; /* stale or foreign reply */
            requests++;
            udp_send(fd, wbuf, &slots[idx], idx, ++seq, now);
        }
        if (now >= next_sweep) {
            for (i = 0; i < inflight; i++) {
                if (now - slots[i].sent_at >= UDP_TIMEOUT_NS) {
                    lost++;
                    udp_send(fd, wbuf, &slots[i], (uint32_t)i, ++seq, now);
                }
            }
            next_sweep = now + UDP_SWEEP_NS;
        }
    }

    snprintf(extra, sizeof(extra), " lost=%llu", (unsigned long long)(lost - lost_before));
    report(requests - before, (double)(now - measure) / 1e9, extra);
    free(slots);
    free(wbuf);
    close(fd);
    close(ep);
    return requests > before ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct addrinfo hints, *ai;
    int opt, udp, rc;

    if (argc < 4)
        usage();
    if (strcmp(argv[1], "echo") == 0)
        udp = 0;
    else if (strcmp(argv[1], "udp") == 0)
        udp = 1;
    else
        usage();

    optind = 4;
    while ((opt = getopt(argc, argv, "c:s:P:d:w:")) != -1) {
        switch (opt) {
        case 'c': conns = atol(optarg); break;
        case 's': size = atol(optarg); break;
        case 'P': inflight = atol(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        default: usage();
        }
    }
    if (udp) {
        inflight = conns; /* in udp mode -c is the number of datagrams in flight */
        if (size < 8 || size > 65507) {
            fprintf(stderr, "epoll_gen: udp size must be 8..65507\n");
            return 2;
        }
    }
    if (conns < 1 || size < 1 || inflight < 1 || secs <= 0 || warm < 0 || size * inflight > (64L << 20))
        usage();

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
    if ((rc = getaddrinfo(argv[2], argv[3], &hints, &ai)) != 0) {
        fprintf(stderr, "epoll_gen: %s: %s\n", argv[2], gai_strerror(rc));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rc = udp ? run_udp(ai) : run_echo(ai);
    freeaddrinfo(ai);
    return rc;
}
