/* demo_depth: the seed's section 4, listen(), accept() and connect() in depth: CLOSE to
 * LISTEN, no data before a connection, accept() asleep until a handshake completes and
 * taking the first pending connection, connect() picking a free local port, and UDP
 * needing none of the three. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "demo.h"

#define ST(s) sf_tcp_state_name(s)
#define DIAL_DELAY_MS 300   /* how long the server sleeps in accept() */

typedef struct acceptor {
    const sf_trace *t;
    int lfd, fd;
    sf_addr peer;
} acceptor;

static void *
accept_thread(void *arg)
{
    acceptor *a = arg;

    a->fd = sf_tcp_accept_blocking(a->t, a->lfd, &a->peer);
    return NULL;
}

/* The server sleeps in accept(); the client, whose socket has no port yet, dials later. */
static int
sleeping_accept(demo *d, const sf_trace *srv, const sf_trace *cli, int lfd, const sf_addr *a)
{
    acceptor acc = { srv, lfd, -1, { .len = 0 } };
    int cfd, before, after;
    pthread_t th;
    const demo_rec *in, *out;

    if ((cfd = sf_tcp_socket(cli, AF_INET, 0, NULL)) < 0)
        return cmd_fail("socket: %s", sf_strerror(cfd));
    sf_write(cli, cfd, "x", 1);
    demo_check(d, demo_seen(d, "client", 0, SF_CALL_WRITE)->err == EPIPE,
               Z(d, "write() before any connection fails (%s): TCP needs a connection first",
                 "建立连接之前的 write() 失败（%s）：TCP 必须先建立连接"),
               sf_errname(-demo_seen(d, "client", 0, SF_CALL_WRITE)->err));
    before = demo_local_port(cfd);
    demo_hold(d);
    demo_entries(d, 1);
    if (pthread_create(&th, NULL, accept_thread, &acc) != 0) {
        demo_entries(d, 0);
        demo_release(d);
        sf_close(cli, cfd);
        return cmd_fail("pthread_create failed");
    }
    demo_wait_entry(d, "server", 0, SF_CALL_ACCEPT4);
    demo_sleep_ms(DIAL_DELAY_MS);
    sf_connect(cli, cfd, a, NULL);
    after = demo_local_port(cfd);
    if (!demo_join(th, DEMO_WAIT_MS)) {
        shutdown(lfd, SHUT_RDWR);   /* nobody came: wake the sleeping accept() */
        pthread_join(th, NULL);
    }
    demo_entries(d, 0);
    demo_release(d);
    in = demo_entry(d, "server", 0, SF_CALL_ACCEPT4);
    out = demo_seen(d, "server", 0, SF_CALL_ACCEPT4);
    demo_check(d, acc.fd >= 0 && in->t_ns && out->t_ns - in->t_ns >= 250000000u,
               Z(d, "accept() slept %.2f s in the server, until a client's handshake was"
                 " complete", "accept() 在服务器中休眠了 %.2f 秒，直到一个客户端的三次握手完成"),
               in->t_ns ? (double)(out->t_ns - in->t_ns) / 1e9 : 0.0);
    demo_check(d, acc.fd >= 0 && acc.fd != lfd && out->state == SF_TCP_ESTABLISHED &&
               sf_addr_port(&acc.peer) == after,
               Z(d, "it returned a new connected descriptor %d, already %s, for the client"
                 " on port %d", "它返回了一个新的已连接描述符 %d，已经是 %s，对应端口 %d 上的"
                 "客户端"), acc.fd, ST(out->state), sf_addr_port(&acc.peer));
    demo_check(d, before == 0 && after > 0,
               Z(d, "the client's own port was %d before connect() and %d after: connect()"
                 " gave the socket a free local port", "客户端自己的端口在 connect() 之前是 %d，"
                 "之后是 %d：connect() 为套接字分配了一个自由的本地端口号"), before, after);
    demo_close_quietly(&cfd);
    demo_close_quietly(&acc.fd);
    return EXIT_OK;
}

/* Three callers in order; accept() takes them in the same order, a descriptor each. */
static int
first_come(demo *d, int lfd, const sf_addr *a)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    int cfd[3] = { -1, -1, -1 }, afd[3] = { -1, -1, -1 }, ok = 1, rc = EXIT_OK;
    sf_addr peer;

    for (int i = 0; i < 3 && rc == EXIT_OK; i++) {
        const sf_trace c = { &d->tracer, "client", (unsigned long)i + 1 };

        if ((cfd[i] = demo_connect(&c, a)) < 0)
            rc = EXIT_FAIL;
    }
    for (int i = 0; i < 3 && rc == EXIT_OK; i++) {
        afd[i] = sf_tcp_accept_blocking(&srv, lfd, &peer);
        ok = ok && afd[i] >= 0 && sf_addr_port(&peer) == demo_local_port(cfd[i]);
    }
    if (rc == EXIT_OK)
        demo_check(d, ok && afd[0] != afd[1] && afd[1] != afd[2] && afd[0] != afd[2],
                   Z(d, "clients 1, 2, 3 dialled in that order; accept() took them in the"
                     " same order, the first pending one each time, each on a new descriptor"
                     " (%d, %d, %d)", "客户端 1、2、3 依次拨号；accept() 按同样的顺序取出它们，"
                     "每次取挂起队列上的第一个，各自一个新描述符（%d、%d、%d）"),
                   afd[0], afd[1], afd[2]);
    for (int i = 0; i < 3; i++) {
        demo_close_quietly(&cfd[i]);
        demo_close_quietly(&afd[i]);
    }
    return rc;
}

/* UDP has no connections: listen() and accept() are not for it. */
static void
udp_needs_none(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    sf_listen_opts lo = { .blocking = 1 };
    sf_addr u;
    int ufd;

    sf_addr_loopback(&u, AF_INET, 0);
    if ((ufd = sf_udp_bind(&srv, &u, &lo, NULL)) < 0)
        return;
    sf_listen(&srv, ufd, 8, NULL);
    sf_tcp_accept(&srv, ufd, NULL);
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_LISTEN)->err == EOPNOTSUPP &&
               demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EOPNOTSUPP,
               Z(d, "on a UDP socket listen() and accept() fail (EOPNOTSUPP): a"
                 " connectionless protocol needs neither", "在 UDP 套接字上 listen() 和 accept()"
                 " 失败（EOPNOTSUPP）：无连接的协议不需要它们"));
    sf_close(&srv, ufd);
}

int
demo_in_depth(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    int lfd, rc = EXIT_FAIL;
    sf_addr a;
    sf_err err;

    if ((lfd = demo_bound(&srv, &a)) < 0)
        return EXIT_FAIL;
    if (sf_listen(&srv, lfd, 8, &err) < 0) {
        sf_close(&srv, lfd);
        return cmd_fail("%s", err.msg);
    }
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_BIND)->state == SF_TCP_CLOSE &&
               demo_seen(d, "server", 0, SF_CALL_LISTEN)->state == SF_TCP_LISTEN,
               Z(d, "after bind() the socket is %s; listen() moved it to %s",
                 "bind() 之后套接字是 %s；listen() 把它从 CLOSE 转换成了 %s"),
               ST(demo_seen(d, "server", 0, SF_CALL_BIND)->state),
               ST(demo_seen(d, "server", 0, SF_CALL_LISTEN)->state));
    if (sleeping_accept(d, &srv, &cli, lfd, &a) == EXIT_OK && first_come(d, lfd, &a) == EXIT_OK)
        rc = EXIT_OK;
    sf_close(&srv, lfd);
    udp_needs_none(d);
    return rc;
}
