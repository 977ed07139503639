/* demo_flow: the seed's sections 1-3: the TCP flow, the UDP flow, and the telephone
 * picture with the places where it breaks. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "demo.h"

#define ST(s) sf_tcp_state_name(s)

/* ---- 1. the TCP flow ---- */

/* The figure's order of calls, each side's own (setsockopt is a detail it leaves out). */
static void
check_order(demo *d)
{
    static const sf_call skip[] = { SF_CALL_SETSOCKOPT };
    static const char srv_want[] = "socket bind listen accept4 read write read close close";
    static const char cli_want[] = "socket connect write read close";
    char s[256], c[256];

    demo_calls(d, 's', skip, 1, s, sizeof(s));
    demo_calls(d, 'c', skip, 1, c, sizeof(c));
    demo_check(d, strcmp(s, srv_want) == 0, Z(d, "the server's calls, in order: %s",
                                             "服务器的调用，依次为：%s"), s);
    demo_check(d, strcmp(c, cli_want) == 0, Z(d, "the client's calls, in order: %s",
                                             "客户端的调用，依次为：%s"), c);
}

static void
talk(const sf_trace *srv, const sf_trace *cli, int afd, int cfd, char *buf, size_t len)
{
    ssize_t n;

    sf_write_full(cli, cfd, "hello\n", 6);
    n = sf_read(srv, afd, buf, len);
    if (n > 0)
        sf_write_full(srv, afd, buf, (size_t)n);
    n = sf_read_full(cli, cfd, buf, 6);
    buf[n > 0 ? n : 0] = '\0';
}

int
demo_tcp_flow(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    char buf[64], who[SF_ADDR_STRLEN];
    int lfd, cfd, afd;
    sf_addr a, peer;
    const demo_rec *c, *acc, *rd;

    if ((lfd = demo_listen(&srv, AF_INET, 8, 1, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd = demo_connect(&cli, &a)) < 0) {
        sf_close(&srv, lfd);
        return EXIT_FAIL;
    }
    c = demo_seen(d, "client", 0, SF_CALL_CONNECT);
    demo_check(d, c->result == 0 && c->state == SF_TCP_ESTABLISHED,
               Z(d, "connect() returned %ld, %s: it returned once the three-way handshake"
                 " was complete", "connect() 返回 %ld，%s：三次握手完成后它才返回"),
               c->result, ST(c->state));
    if ((afd = sf_tcp_accept_blocking(&srv, lfd, &peer)) < 0) {
        sf_close(&cli, cfd);
        sf_close(&srv, lfd);
        return cmd_fail("accept: %s", sf_strerror(afd));
    }
    acc = demo_seen(d, "server", 0, SF_CALL_ACCEPT4);
    demo_check(d, afd != lfd && acc->state == SF_TCP_ESTABLISHED &&
               sf_tcp_state(lfd, NULL, NULL) == SF_TCP_LISTEN,
               Z(d, "accept() returned a new descriptor %d (%s) for the client %s; the"
                 " listening descriptor %d stays %s", "accept() 为客户端 %3$s 返回了新描述符"
                 " %1$d（%2$s）；监听描述符 %4$d 保持 %5$s"), afd, ST(acc->state),
               sf_addr_format(&peer, who, sizeof(who)), lfd, ST(sf_tcp_state(lfd, NULL, NULL)));
    talk(&srv, &cli, afd, cfd, buf, sizeof(buf));
    demo_check(d, strcmp(buf, "hello\n") == 0,
               Z(d, "the client got its 6 bytes back: the server read them and wrote them"
                 " back", "客户端收回了它的 6 个字节：服务器读到后又写了回去"));
    sf_close(&cli, cfd);
    sf_read(&srv, afd, buf, sizeof(buf));
    rd = demo_seen(d, "server", 0, SF_CALL_READ);
    demo_check(d, rd->result == 0 && rd->state == SF_TCP_CLOSE_WAIT,
               Z(d, "the client closed: the server's read() returned %ld and its socket is %s",
                 "客户端关闭了：服务器的 read() 返回 %ld，它的套接字是 %s"), rd->result,
               ST(rd->state));
    sf_close(&srv, afd);
    sf_close(&srv, lfd);
    check_order(d);
    return EXIT_OK;
}

/* ---- 2. the UDP flow ---- */

typedef struct udp_server {
    const sf_trace *t;
    int fd;
    ssize_t n;
} udp_server;

/* The server: a blocking recvfrom() that sleeps until the letter comes, then the reply. */
static void *
udp_serve_one(void *arg)
{
    udp_server *u = arg;
    char buf[64];
    sf_addr from;

    u->n = sf_recvfrom(u->t, u->fd, buf, sizeof(buf), &from, NULL);
    if (u->n > 0)
        sf_sendto(u->t, u->fd, buf, (size_t)u->n, &from);
    return NULL;
}

static void
check_udp(demo *d, int before, int after, const char *got)
{
    const demo_rec *in = demo_entry(d, "server", 0, SF_CALL_RECVFROM);
    const demo_rec *out = demo_seen(d, "server", 0, SF_CALL_RECVFROM);
    char order[256];
    int calls = 0;

    demo_check(d, before == 0 && after > 0 && strstr(out->args, "from=127.0.0.1:") &&
               strtol(strrchr(out->args, ':') + 1, NULL, 10) == after,
               Z(d, "the client's own port was %d before its first sendto() and %d after: the"
                 " kernel gave it one, the return address the server saw",
                 "客户端第一次 sendto() 之前自己的端口是 %d，之后是 %d：内核分配了一个，"
                 "就是服务器看到的回信地址"), before, after);
    demo_check(d, in->t_ns && out->t_ns - in->t_ns >= 150000000u,
               Z(d, "the server's blocking recvfrom() slept %.2f s, until the datagram came",
                 "服务器阻塞的 recvfrom() 休眠了 %.2f 秒，直到数据报到达"),
               in->t_ns ? (double)(out->t_ns - in->t_ns) / 1e9 : 0.0);
    demo_check(d, strcmp(got, "ping\n") == 0, Z(d, "the client got its 5 bytes back",
                                               "客户端收回了它的 5 个字节"));
    demo_calls(d, 's', NULL, 0, order, sizeof(order));
    calls = strstr(order, "listen") || strstr(order, "accept") || strstr(order, "connect");
    demo_calls(d, 'c', NULL, 0, order, sizeof(order));
    calls += strstr(order, "listen") || strstr(order, "accept") || strstr(order, "connect");
    demo_check(d, calls == 0, Z(d, "no listen(), accept() or connect() was called: no"
                                " connection is set up", "没有调用 listen()、accept() 或"
                                " connect()：不建立连接"));
}

int
demo_udp_flow(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    sf_listen_opts lo = { .blocking = 1 };
    udp_server u = { &srv, -1, -1 };
    char buf[64] = "";
    int cfd, before, after;
    pthread_t th;
    sf_addr a;
    sf_err err;
    ssize_t n;

    sf_addr_loopback(&a, AF_INET, 0);
    if ((u.fd = sf_udp_bind(&srv, &a, &lo, &err)) < 0)
        return cmd_fail("%s", err.msg);
    sf_local_addr(u.fd, &a);
    if ((cfd = sf_udp_socket(&cli, AF_INET, 0, &err)) < 0) {
        sf_close(&srv, u.fd);
        return cmd_fail("%s", err.msg);
    }
    before = demo_local_port(cfd);
    demo_hold(d);
    demo_entries(d, 1);
    if (pthread_create(&th, NULL, udp_serve_one, &u) != 0) {
        demo_entries(d, 0);
        demo_release(d);
        demo_close_quietly(&cfd);
        demo_close_quietly(&u.fd);
        return cmd_fail("pthread_create failed");
    }
    demo_wait_entry(d, "server", 0, SF_CALL_RECVFROM);
    demo_sleep_ms(200);
    sf_sendto(&cli, cfd, "ping\n", 5, &a);
    after = demo_local_port(cfd);
    if (!demo_join(th, DEMO_WAIT_MS)) {
        /* The letter never came: shutdown() wakes the sleeping recvfrom(). */
        shutdown(u.fd, SHUT_RDWR);
        pthread_join(th, NULL);
    }
    demo_entries(d, 0);
    demo_release(d);
    if (demo_wait_fd(cfd, POLLIN, DEMO_WAIT_MS)) {
        n = sf_recvfrom(&cli, cfd, buf, sizeof(buf) - 1, NULL, NULL);
        buf[n > 0 ? n : 0] = '\0';
    }
    sf_close(&cli, cfd);
    sf_close(&srv, u.fd);
    check_udp(d, before, after, buf);
    return EXIT_OK;
}
