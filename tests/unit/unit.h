/* unit: helpers for the unit tests: loopback port 0 sockets, bounded waits, test threads. */
#ifndef SOCKFLOW_TESTS_UNIT_H
#define SOCKFLOW_TESTS_UNIT_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sockflow/sockflow.h"

/* Last guard for a whole test binary: SIGALRM kills it (run-unit.sh allows 120 s). */
#define UNIT_GUARD_SECS 90
/* Any single wait in a test: long enough for a loaded sanitizer build, never forever. */
#define UNIT_WAIT_MS 3000

/* Whether this kernel lets the process set up an io_uring (the server's ring path). */
static inline int
unit_ring_available(void)
{
#ifdef __NR_io_uring_setup
    unsigned char params[120] = { 0 };     /* struct io_uring_params, zeroed */
    long fd = syscall(__NR_io_uring_setup, 4, params);

    if (fd < 0)
        return 0;
    close((int)fd);
    return 1;
#else
    return 0;
#endif
}

static inline uint64_t
unit_now_ms(void)
{
    return sf_now_ns() / 1000000u;
}

static inline void
unit_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* poll one fd for events, at most ms; returns revents, 0 on timeout. */
static inline int
unit_poll(int fd, short events, int ms)
{
    struct pollfd p = { .fd = fd, .events = events };
    uint64_t end = unit_now_ms() + (uint64_t)ms;
    int rc;

    for (;;) {
        uint64_t now = unit_now_ms();

        rc = poll(&p, 1, now >= end ? 0 : (int)(end - now));
        if (rc >= 0 || errno != EINTR)
            break;
    }
    return rc > 0 ? p.revents : 0;
}

static inline sf_addr
unit_loopback(int family, int port)
{
    sf_addr a;

    sf_addr_loopback(&a, family, port);
    return a;
}

static inline int
unit_local_port(int fd)
{
    sf_addr a;

    assert_int_equal(sf_local_addr(fd, &a), 0);
    return sf_addr_port(&a);
}

/* A listening TCP socket on loopback, port 0; *port gets the port the kernel picked. */
static inline int
unit_tcp_listener(int family, int backlog, int *port)
{
    sf_listen_opts lo = { .backlog = backlog };
    sf_addr a = unit_loopback(family, 0);
    sf_err err;
    int fd = sf_tcp_listen(NULL, &a, &lo, &err);

    if (fd < 0)
        fail_msg("unit_tcp_listener: %s", err.msg);
    if (port)
        *port = unit_local_port(fd);
    return fd;
}

/* A UDP socket bound on loopback, port 0. */
static inline int
unit_udp_socket(int family, int *port)
{
    sf_addr a = unit_loopback(family, 0);
    sf_err err;
    int fd = sf_udp_bind(NULL, &a, NULL, &err);

    if (fd < 0)
        fail_msg("unit_udp_socket: %s", err.msg);
    if (port)
        *port = unit_local_port(fd);
    return fd;
}

/* A blocking TCP connection to loopback:port. */
static inline int
unit_tcp_client(int family, int port)
{
    sf_addr a = unit_loopback(family, port);
    sf_err err;
    int fd = sf_tcp_connect(NULL, &a, NULL, UNIT_WAIT_MS, 0, &err);

    if (fd < 0)
        fail_msg("unit_tcp_client: %s", err.msg);
    return fd;
}

/* A port nobody listens on right now: bound, read back, closed. */
static inline int
unit_closed_port(int family, int type)
{
    sf_addr a = unit_loopback(family, 0);
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    int port;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a.ss, a.len), 0);
    port = unit_local_port(fd);
    close(fd);
    return port;
}

/* Read up to len bytes, waiting at most ms in all, on a blocking or nonblocking fd.
 * Returns the bytes read (fewer at end of stream or at the deadline), or a negative
 * errno if the first read fails. */
static inline ssize_t
unit_read_exact(int fd, void *buf, size_t len, int ms)
{
    uint64_t end = unit_now_ms() + (uint64_t)ms;
    size_t got = 0;

    while (got < len) {
        uint64_t now = unit_now_ms();
        ssize_t n;

        if (now >= end || unit_poll(fd, POLLIN, (int)(end - now)) == 0)
            break;
        n = recv(fd, (char *)buf + got, len - got, MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0)
            return got > 0 ? (ssize_t)got : -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Wait at most ms for the end of the stream on fd, discarding data. Returns 0 at end of
 * stream, a negative errno (-ECONNRESET ...) on error, -ETIMEDOUT at the deadline. */
static inline int
unit_wait_eof(int fd, int ms)
{
    uint64_t end = unit_now_ms() + (uint64_t)ms;
    char buf[4096];

    for (;;) {
        uint64_t now = unit_now_ms();
        ssize_t n;

        if (now >= end || unit_poll(fd, POLLIN, (int)(end - now)) == 0)
            return -ETIMEDOUT;
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
    }
}

/* Descriptors this process has open (to check that nothing leaks). */
static inline int
unit_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the directory's own descriptor */
}

static inline int
unit_is_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    assert_true(fl >= 0);
    return (fl & O_NONBLOCK) != 0;
}

static inline int
unit_is_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);

    assert_true(fl >= 0);
    return (fl & FD_CLOEXEC) != 0;
}

/* Bytes that differ from one position to the next, so a shifted or repeated block shows. */
static inline void
unit_fill_pattern(char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (char)(x >> 24);
    }
}

/* Join th, waiting at most ms. Returns 0, or -ETIMEDOUT with the thread still running. */
static inline int
unit_join(pthread_t th, int ms, void **ret)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return -pthread_timedjoin_np(th, ret, &ts);
}

/* ---- a loop in a thread ---- */

typedef struct unit_loop_thread {
    sf_loop *loop;
    pthread_t th;
    int rc;
} unit_loop_thread;

static inline void *
unit_loop_main(void *arg)
{
    unit_loop_thread *t = arg;

    t->rc = sf_loop_run(t->loop);
    return NULL;
}

static inline void
unit_loop_start(unit_loop_thread *t, sf_loop *l)
{
    t->loop = l;
    t->rc = 1;
    assert_int_equal(pthread_create(&t->th, NULL, unit_loop_main, t), 0);
}

/* Wait at most ms for the loop thread to return; 0 or -ETIMEDOUT. */
static inline int
unit_loop_join(unit_loop_thread *t, int ms)
{
    return unit_join(t->th, ms, NULL);
}

/* ---- a server in a thread ---- */

/* fn run in a child process (for what changes the process: signals, seccomp), its
 * result the child's exit status; the test fails if it does not exit within UNIT_WAIT_MS
 * or exits otherwise than with 0. */
static inline void
unit_in_child(int (*fn)(void))
{
    int status;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn());
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);

        if (w == pid)
            break;
        if (unit_now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("child did not finish");
        }
        unit_sleep_ms(10);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Lines a server logs (sf_server_opts.log = unit_keep_line, log_ud = the unit_log),
 * kept for the test to look at: the first 32. */
typedef struct unit_log {
    pthread_mutex_t mu;
    char lines[32][256];
    int n;
} unit_log;

static inline void
unit_keep_line(void *ud, const char *line)
{
    unit_log *l = ud;

    pthread_mutex_lock(&l->mu);
    if (l->n < 32)
        snprintf(l->lines[l->n++], sizeof(l->lines[0]), "%s", line);
    pthread_mutex_unlock(&l->mu);
}

/* Wait at most ms for a logged line equal to want (prefix: starting with it); 1 if
 * seen. */
static inline int
unit_wait_line(unit_log *l, const char *want, int prefix, int ms)
{
    uint64_t end = unit_now_ms() + (uint64_t)ms;

    for (;;) {
        int found = 0;

        pthread_mutex_lock(&l->mu);
        for (int i = 0; i < l->n && !found; i++)
            found = prefix ? strncmp(l->lines[i], want, strlen(want)) == 0
                           : strcmp(l->lines[i], want) == 0;
        pthread_mutex_unlock(&l->mu);
        if (found || unit_now_ms() >= end)
            return found;
        unit_sleep_ms(10);
    }
}

typedef struct unit_server {
    sf_server *s;
    pthread_t th;
    int rc;
    int running;
    int port;
} unit_server;

static inline void *
unit_server_main(void *arg)
{
    unit_server *u = arg;

    u->rc = sf_server_run(u->s);
    return NULL;
}

/* A server with opts, svc bound on 127.0.0.1 (and ::1 when both is set) at port 0 over
 * protos, not yet running. */
static inline void
unit_server_new(unit_server *u, const sf_server_opts *opts, const sf_service *svc,
                unsigned protos, int both)
{
    sf_addr addrs[2] = { unit_loopback(AF_INET, 0), unit_loopback(AF_INET6, 0) };
    sf_err err;

    memset(u, 0, sizeof(*u));
    u->s = sf_server_new(opts, &err);
    if (u->s == NULL)
        fail_msg("sf_server_new: %s", err.msg);
    if (sf_server_listen(u->s, svc, addrs, both ? 2 : 1, 0, protos, &err) < 0)
        fail_msg("sf_server_listen: %s", err.msg);
    u->port = sf_addr_port(&sf_server_listener(u->s, 0)->addr);
}

static inline void
unit_server_run(unit_server *u)
{
    u->rc = 1;
    assert_int_equal(pthread_create(&u->th, NULL, unit_server_main, u), 0);
    u->running = 1;
}

static inline void
unit_server_start(unit_server *u, const sf_server_opts *opts, const sf_service *svc,
                  unsigned protos, int both)
{
    unit_server_new(u, opts, svc, protos, both);
    unit_server_run(u);
}

/* Wait at most ms for sf_server_run to return by itself; 0 or -ETIMEDOUT. */
static inline int
unit_server_join(unit_server *u, int ms)
{
    int rc = unit_join(u->th, ms, NULL);

    if (rc == 0)
        u->running = 0;
    return rc;
}

/* Stop at once, join (bounded), take the counters (st may be NULL), free. */
static inline void
unit_server_stop(unit_server *u, sf_server_stats *st)
{
    if (u->running) {
        sf_server_stop(u->s, 0);
        assert_int_equal(unit_server_join(u, UNIT_WAIT_MS), 0);
        assert_int_equal(u->rc, 0);
    }
    if (st)
        sf_server_get_stats(u->s, st);
    sf_server_free(u->s);
    u->s = NULL;
}

#endif
