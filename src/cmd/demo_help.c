/* demo_help: the demo's steps on the library's calls, each wait bounded. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "demo.h"

int
demo_wait_fd(int fd, short events, int ms)
{
    struct pollfd p = { .fd = fd, .events = events };
    int rc;

    do {
        rc = poll(&p, 1, ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

void
demo_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void
demo_probe(demo *d, const sf_trace *t, int fd)
{
    d->quiet = 1;
    sf_trace_call(t, SF_CALL_GETSOCKOPT, fd, 0, 0,
                  &(sf_trace_about){ .opt_level = IPPROTO_TCP, .opt_name = TCP_INFO },
                  "TCP_INFO");
    d->quiet = 0;
}

int
demo_wait_state(demo *d, const sf_trace *t, const sf_addr *local, const sf_addr *peer,
                int want)
{
    uint64_t deadline = sf_now_ns() + (uint64_t)DEMO_WAIT_MS * 1000000u;
    int state;

    while (sf_tcp_state_lookup(local, peer) != want && sf_now_ns() < deadline)
        demo_sleep_ms(2);
    d->quiet = 1;
    state = sf_trace_lookup(t, local, peer);
    d->quiet = 0;
    return state;
}

int
demo_local_port(int fd)
{
    sf_addr a;

    return sf_local_addr(fd, &a) < 0 ? -1 : sf_addr_port(&a);
}

int
demo_listen(const sf_trace *t, int family, int backlog, int blocking, sf_addr *a)
{
    sf_listen_opts lo = { .backlog = backlog, .blocking = blocking };
    sf_err err;
    int fd;

    sf_addr_loopback(a, family, 0);
    fd = sf_tcp_listen(t, a, &lo, &err);
    if (fd < 0) {
        cmd_fail("%s", err.msg);
        return -1;
    }
    sf_local_addr(fd, a);
    return fd;
}

int
demo_bound(const sf_trace *t, sf_addr *a)
{
    sf_listen_opts lo = { .blocking = 1 };
    sf_err err;
    int fd;

    sf_addr_loopback(a, AF_INET, 0);
    if ((fd = sf_tcp_bind(t, a, &lo, &err)) < 0) {
        cmd_fail("%s", err.msg);
        return -1;
    }
    sf_local_addr(fd, a);
    return fd;
}

int
demo_connect(const sf_trace *t, const sf_addr *a)
{
    sf_err err;
    int fd = sf_tcp_socket(t, sf_addr_family(a), 0, &err);

    if (fd < 0) {
        cmd_fail("%s", err.msg);
        return -1;
    }
    if (sf_connect(t, fd, a, &err) < 0) {
        cmd_fail("%s", err.msg);
        sf_close(NULL, fd);
        return -1;
    }
    return fd;
}

int
demo_try_connect(const sf_trace *t, const sf_addr *a)
{
    int fd = sf_tcp_socket(t, sf_addr_family(a), 0, NULL), rc;

    if (fd < 0)
        return fd;
    if ((rc = sf_connect(t, fd, a, NULL)) < 0) {
        sf_close(t, fd);
        return rc;
    }
    return fd;
}

int
demo_dial(const sf_trace *t, const sf_addr *a)
{
    sf_err err;
    int fd = sf_tcp_connect_start(t, a, NULL, &err);

    if (fd < 0)
        cmd_fail("%s", err.msg);
    return fd;
}

int
demo_accept_next(const sf_trace *t, int lfd, sf_addr *peer)
{
    demo_wait_fd(lfd, POLLIN, DEMO_WAIT_MS);
    return sf_tcp_accept(t, lfd, peer);
}

ssize_t
demo_read_some(const sf_trace *t, int fd, char *buf, size_t len)
{
    demo_wait_fd(fd, POLLIN, DEMO_WAIT_MS);
    return sf_read(t, fd, buf, len);
}

void
demo_close_quietly(int *fd)
{
    if (*fd >= 0)
        sf_close(NULL, *fd);
    *fd = -1;
}

int
demo_join(pthread_t th, int ms)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(th, NULL, &deadline) == 0;
}
