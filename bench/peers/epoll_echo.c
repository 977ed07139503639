/* epoll_echo.c - hand-tuned single-thread epoll TCP echo server: the reference the echo rows are measured against. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * What it does per connection, and nothing more: accept4 (already non-blocking), one
 * epoll_ctl ADD (level-triggered EPOLLIN), then per readiness one read into a buffer
 * shared by all connections and one write straight back from it. Only when the kernel
 * takes less than was read does the rest go into a buffer of the connection's own, and
 * reading from it stops (EPOLLOUT instead) until that is written: the client that does
 * not read is the one that waits. After the client's FIN (read returns 0) the pending
 * bytes, if any, are written first; then close(), which with nothing left unread sends
 * our FIN after the queued bytes: the write side shut down in order, never a reset.
 * TCP_NODELAY is set once, on the listener: Linux copies it to every accepted socket.
 * An idle connection touches no memory of this process (the kernel's socket and epoll
 * entry are its whole cost); one that backs up writes its 16-byte entry.
 */

#define EVENTS    256
#define SCRATCH   (64 * 1024)
#define ACCEPTS   64            /* at most this many accepts per readiness of the listener */

struct conn {
    char *pend;                 /* bytes read but not yet written back, or NULL */
    uint32_t off, len;
};

static struct conn *conns;      /* indexed by descriptor */
static size_t nconns;
static int ep, spare = -1;
static char scratch[SCRATCH];

static void on_term(int signo)
{
    (void)signo;
    _exit(0);
}

/* One entry per possible descriptor, taken at start: calloc of this size maps zero pages
 * that cost nothing until a connection first writes its entry (only when it backs up). */
static int conn_table(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    nconns = rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
    conns = calloc(nconns, sizeof(*conns));
    return conns != NULL ? 0 : -1;
}

static void conn_close(int fd)
{
    if (conns[fd].pend != NULL) {
        free(conns[fd].pend);
        conns[fd].pend = NULL;
    }
    close(fd);                  /* also takes it out of the epoll set */
}

static int want(int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Keep what the kernel did not take; stop reading until it is written. */
static int keep_rest(int fd, const char *p, size_t n)
{
    struct conn *c = &conns[fd];

    c->pend = malloc(n);
    if (c->pend == NULL)
        return -1;
    memcpy(c->pend, p, n);
    c->off = 0;
    c->len = (uint32_t)n;
    return want(fd, EPOLLOUT);
}

static void on_readable(int fd)
{
    ssize_t n = read(fd, scratch, sizeof(scratch)), w;

    if (n == 0) {
        conn_close(fd);         /* FIN read, nothing pending: our FIN after the echo */
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(fd);
        return;
    }
    w = write(fd, scratch, (size_t)n);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_close(fd);
            return;
        }
        w = 0;
    }
    if (w < n && keep_rest(fd, scratch + w, (size_t)(n - w)) < 0)
        conn_close(fd);
}

static void on_writable(int fd)
{
    struct conn *c = &conns[fd];
    ssize_t w = write(fd, c->pend + c->off, c->len - c->off);

    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR)
            conn_close(fd);
        return;
    }
    c->off += (uint32_t)w;
    if (c->off < c->len)
        return;
    free(c->pend);
    c->pend = NULL;
    /* back to reading; a FIN that came meanwhile is read there and closes */
    if (want(fd, EPOLLIN) < 0)
        conn_close(fd);
}

/* Out of descriptors: take the connection with the spare one and close it at once, so
 * the listener does not stay readable forever with a client nobody answers. */
static void shed(int lfd)
{
    int fd;

    if (spare < 0)
        return;
    close(spare);
    fd = accept(lfd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_listener(int lfd)
{
    for (int i = 0; i < ACCEPTS; i++) {
        struct epoll_event ev = { .events = EPOLLIN };
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                shed(lfd);
            else if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            return;
        }
        ev.data.fd = fd;
        if ((size_t)fd >= nconns || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
    }
}

static int listen_on(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("epoll_echo: listen 127.0.0.1");
        return -1;
    }
    printf("listening on tcp 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv)
{
    struct epoll_event evs[EVENTS], ev = { .events = EPOLLIN };
    int lfd;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    lfd = listen_on(argc > 1 ? atoi(argv[1]) : 0);
    ep = epoll_create1(EPOLL_CLOEXEC);
    spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ev.data.fd = lfd;
    if (lfd < 0 || ep < 0 || conn_table() < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        perror("epoll_echo");
        return 1;
    }
    for (;;) {
        int n = epoll_wait(ep, evs, EVENTS, -1);

        if (n < 0 && errno != EINTR) {
            perror("epoll_echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;

            if (fd == lfd)
                on_listener(lfd);
            else if (conns[fd].pend != NULL)
                on_writable(fd);
            else
                on_readable(fd);
        }
    }
}
