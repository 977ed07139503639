/* demo_msdoc: the seed's section 5, accept() as Microsoft documents it, sentence by
 * sentence on Linux: the first pending connection, a new socket with the listener's
 * options but not its file flags, blocking or EAGAIN, no accept() on an accepted
 * socket, the listener still listening, and addr/addrlen as value-result arguments. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "demo.h"

#define ST(s) sf_tcp_state_name(s)
#define SENTINEL 0xaa

/* accept4(2) with the arguments as given: addrlen in and out is the point here, so the
 * call is made as is (the library always passes a whole sockaddr_storage). */
static int
raw_accept(const sf_trace *t, int lfd, void *addr, socklen_t *len, int flags)
{
    socklen_t in = len ? *len : 0;
    char lens[32] = "NULL";
    int fd, e;

    demo_wait_fd(lfd, POLLIN, DEMO_WAIT_MS);
    do {
        fd = accept4(lfd, addr, len, flags);
    } while (fd < 0 && errno == EINTR);
    e = fd < 0 ? errno : 0;
    if (len)
        snprintf(lens, sizeof(lens), "[%u->%u]", (unsigned)in, (unsigned)*len);
    sf_trace_call_on(t, SF_CALL_ACCEPT4, lfd, fd, fd, e,
                     &(sf_trace_about){ .flags = flags, .notes = addr ? 0 : SF_TRACE_N_NO_ADDR },
                     "%s, %s, %s", addr ? "&ss" : "NULL", lens,
                     flags ? "SOCK_NONBLOCK|SOCK_CLOEXEC" : "0");
    errno = e;
    return fd;
}

static void
set_opt(const sf_trace *t, int fd, int level, int name, const char *label, int value)
{
    int rc = setsockopt(fd, level, name, &value, sizeof(value));

    sf_trace_call(t, SF_CALL_SETSOCKOPT, fd, rc, rc < 0 ? errno : 0,
                  &(sf_trace_about){ .opt_level = level, .opt_name = name, .opt_value = value },
                  "%s=%d", label, value);
}

static int
opt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);

    return getsockopt(fd, level, name, &v, &len) < 0 ? -1 : v;
}

/* O_NONBLOCK and FD_CLOEXEC of fd, as "nonblock+cloexec", "nonblock", ... or "neither". */
static const char *
file_flags(int fd)
{
    int nb = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0, ce = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;

    return nb && ce ? "O_NONBLOCK+FD_CLOEXEC" : nb ? "O_NONBLOCK" : ce ? "FD_CLOEXEC" : "neither";
}

/* Socket options are inherited; file status flags are not (accept(2) NOTES). */
static void
check_inheritance(demo *d, int lfd, int afd, int afd4)
{
    static const struct { int level, name; const char *label; } opts[] = {
        { SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF" }, { SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE" },
        { IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY" }, { IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE" },
    };
    char same[200] = "";
    int ok = 1;

    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        int l = opt_int(lfd, opts[i].level, opts[i].name);
        int a = opt_int(afd, opts[i].level, opts[i].name);

        ok = ok && l == a && l > 0;
        snprintf(same + strlen(same), sizeof(same) - strlen(same), "%s%s=%d/%d",
                 i ? ", " : "", opts[i].label, l, a);
    }
    demo_check(d, ok, Z(d, "\"the same properties as socket s\": the socket options are"
                        " inherited (listener/accepted: %s)", "“与套接字 s 具有相同的属性”："
                        "套接字选项被继承了（监听/已接受：%s）"), same);
    demo_check(d, strcmp(file_flags(lfd), "O_NONBLOCK+FD_CLOEXEC") == 0 &&
               strcmp(file_flags(afd), "neither") == 0 &&
               strcmp(file_flags(afd4), "O_NONBLOCK+FD_CLOEXEC") == 0,
               Z(d, "but not the file flags: the listener is %s, accept4(flags 0) gave %s;"
                 " only accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) gives %s",
                 "但文件标志不会继承：监听套接字是 %s，accept4(flags 0) 得到 %s；只有"
                 " accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) 才得到 %s"),
               file_flags(lfd), file_flags(afd), file_flags(afd4));
}

/* addrlen is value-result: in, the room; out, the address's real length. */
static void
check_addrlen(demo *d, const sf_trace *srv, int lfd, int family, int cfd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    sf_addr got, want;
    char w[SF_ADDR_STRLEN];
    int afd = raw_accept(srv, lfd, &ss, &len, 0);

    sf_addr_from_sa(&got, (struct sockaddr *)&ss, len);
    sf_local_addr(cfd, &want);
    demo_check(d, afd >= 0 && len == (family == AF_INET ? 16u : 28u) &&
               sf_addr_port(&got) == sf_addr_port(&want),
               Z(d, "%s: addrlen went in as %u and came out as %u; addr holds the"
                 " connecting entity, %s", "%s：addrlen 传入 %u，传出 %u；addr 里是连接的一方"
                 " %s"), family == AF_INET ? "IPv4" : "IPv6", (unsigned)sizeof(ss),
               (unsigned)len, sf_addr_format(&want, w, sizeof(w)));
    demo_close_quietly(&afd);
}

/* Too little room: the address is cut to it, and addrlen says how much there was. */
static void
check_truncation(demo *d, const sf_trace *srv, int lfd)
{
    unsigned char buf[sizeof(struct sockaddr_in)];
    socklen_t len = 4;
    int afd, untouched = 1;

    memset(buf, SENTINEL, sizeof(buf));
    afd = raw_accept(srv, lfd, buf, &len, 0);
    for (size_t i = 4; i < sizeof(buf); i++)
        untouched = untouched && buf[i] == SENTINEL;
    demo_check(d, afd >= 0 && len == 16 && untouched && buf[0] != SENTINEL,
               Z(d, "with room for 4 bytes, accept() wrote 4 and set addrlen to %u: the"
                 " address was cut, and its real length reported",
                 "只给 4 字节的空间时，accept() 写了 4 字节，并把 addrlen 设为 %u：地址被截断，"
                 "同时报告了它的真实长度"), (unsigned)len);
    demo_close_quietly(&afd);
}

/* addr NULL: nothing is returned, addrlen not even written; addrlen NULL with an addr:
 * EFAULT, after the connection was taken off the queue. */
static void
check_null_arguments(demo *d, const sf_trace *srv, int lfd, int cfd_lost)
{
    struct sockaddr_storage ss;
    socklen_t len = 128;
    char buf[8];
    int afd = raw_accept(srv, lfd, NULL, &len, 0), r, e;

    demo_check(d, afd >= 0 && len == 128,
               Z(d, "with addr NULL accept() returned descriptor %d and wrote nothing back:"
                 " addrlen is still %u", "addr 为 NULL 时 accept() 返回了描述符 %d，什么也没写回："
                 "addrlen 仍是 %u"), afd, (unsigned)len);
    demo_close_quietly(&afd);
    afd = raw_accept(srv, lfd, &ss, NULL, 0);
    e = errno;
    r = sf_tcp_accept(srv, lfd, NULL);
    demo_wait_fd(cfd_lost, POLLIN, DEMO_WAIT_MS);
    demo_check(d, afd < 0 && e == EFAULT && r == SF_EAGAIN &&
               sf_read(NULL, cfd_lost, buf, sizeof(buf)) <= 0,
               Z(d, "with addr but addrlen NULL Linux fails with EFAULT after taking the"
                 " connection off the queue: the next accept() finds nothing (EAGAIN) and"
                 " that caller is hung up on", "给了 addr 而 addrlen 为 NULL 时，Linux 先从队列"
                 "取出连接再以 EFAULT 失败：下一次 accept() 什么也没有（EAGAIN），那个来电者"
                 "被挂断了"));
    demo_close_quietly(&afd);
}

/* A nonblocking listener with options an accepted socket may or may not inherit. */
static int
listener_with_options(const sf_trace *srv, sf_addr *a)
{
    int lfd = demo_listen(srv, AF_INET, 8, 0, a);

    if (lfd < 0)
        return -1;
    set_opt(srv, lfd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 65536);
    set_opt(srv, lfd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 1);
    set_opt(srv, lfd, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", 1);
    set_opt(srv, lfd, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", 77);
    return lfd;
}

static int
call_in(demo *d, unsigned long id, const sf_addr *a)
{
    const sf_trace c = { &d->tracer, "client", id };

    return demo_connect(&c, a);
}

int
demo_accept_documented(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    int lfd, l6, cfd[6], afd = -1, afd4 = -1, n = 0, rc = EXIT_FAIL;
    sf_addr a, a6;

    for (int i = 0; i < 6; i++)
        cfd[i] = -1;
    if ((lfd = listener_with_options(&srv, &a)) < 0)
        return EXIT_FAIL;
    sf_tcp_accept(&srv, lfd, NULL);
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EAGAIN,
               Z(d, "nonblocking, and nobody calling: accept() returned -1 with %s at once",
                 "非阻塞且没有人打来：accept() 立即返回 -1，错误为 %s"),
               sf_errname(-demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err));
    if ((cfd[n++] = call_in(d, 1, &a)) < 0 || (cfd[n++] = call_in(d, 2, &a)) < 0)
        goto out;
    afd = raw_accept(&srv, lfd, NULL, NULL, 0);
    afd4 = raw_accept(&srv, lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    check_inheritance(d, lfd, afd, afd4);
    sf_tcp_accept(&srv, afd, NULL);
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EINVAL,
               Z(d, "the accepted socket cannot accept connections: accept() on descriptor"
                 " %d failed with EINVAL", "已接受的套接字不能再接受连接：在描述符 %d 上"
                 "accept() 以 EINVAL 失败"), afd);
    if ((cfd[n++] = call_in(d, 3, &a)) < 0)
        goto out;
    check_addrlen(d, &srv, lfd, AF_INET, cfd[n - 1]);
    if ((cfd[n++] = call_in(d, 4, &a)) < 0)
        goto out;
    check_truncation(d, &srv, lfd);
    if ((cfd[n++] = call_in(d, 5, &a)) < 0 || (cfd[n++] = call_in(d, 6, &a)) < 0)
        goto out;
    check_null_arguments(d, &srv, lfd, cfd[n - 1]);
    demo_check(d, sf_tcp_state(lfd, NULL, NULL) == SF_TCP_LISTEN,
               Z(d, "the original socket remains open and listening: descriptor %d is %s",
                 "原来的套接字仍然打开并在监听：描述符 %d 是 %s"), lfd,
               ST(sf_tcp_state(lfd, NULL, NULL)));
    sf_addr_loopback(&a6, AF_INET6, 0);
    if ((l6 = sf_tcp_listen(&srv, &a6, &(sf_listen_opts){ .backlog = 8 }, NULL)) < 0) {
        demo_skip(d, Z(d, "IPv6: 128 -> 28 needs ::1, which this machine does not have",
                       "IPv6：128 -> 28 需要 ::1，这台机器上没有"));
    } else {
        int c6;

        sf_local_addr(l6, &a6);
        if ((c6 = call_in(d, 7, &a6)) >= 0)
            check_addrlen(d, &srv, l6, AF_INET6, c6);
        demo_close_quietly(&c6);
        demo_close_quietly(&l6);
    }
    rc = EXIT_OK;
out:
    for (int i = 0; i < n; i++)
        demo_close_quietly(&cfd[i]);
    demo_close_quietly(&afd);
    demo_close_quietly(&afd4);
    demo_close_quietly(&lfd);
    return rc;
}
