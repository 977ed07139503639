/* demo_inside: the seed's section 6, how accept() really works (the two StackOverflow
 * threads): the kernel completes and queues connections by itself; every connected
 * socket has the server's own port and is told apart by the 4-tuple; closing the
 * listener resets the callers still queued. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

#define ST(s) sf_tcp_state_name(s)

/* One row of the table, as ss(8) would show it, the state asked of the kernel by the
 * 4-tuple. */
static void
row(demo *d, const char *who, int fd, const sf_addr *local, const sf_addr *peer)
{
    char l[SF_ADDR_STRLEN], p[SF_ADDR_STRLEN];
    int state = peer ? sf_tcp_state_lookup(local, peer) : SF_TCP_LISTEN;

    sf_addr_format(local, l, sizeof(l));
    if (peer)
        sf_addr_format(peer, p, sizeof(p));
    else
        snprintf(p, sizeof(p), "*:*");
    demo_say(d, "%-11s %-16s %-16s fd=%-3d %s", ST(state), l, p, fd, who);
}

/* Two connections on one listening port, in a table of 4-tuples. */
static void
four_tuples(demo *d, int lfd, const int cfd[2], const int afd[2])
{
    sf_addr la, al[2], ap[2], cl[2], cp[2];
    int same_port = 1, mirrored = 1;

    sf_local_addr(lfd, &la);
    for (int i = 0; i < 2; i++) {
        sf_local_addr(afd[i], &al[i]);
        sf_peer_addr(afd[i], &ap[i]);
        sf_local_addr(cfd[i], &cl[i]);
        sf_peer_addr(cfd[i], &cp[i]);
        same_port = same_port && sf_addr_port(&al[i]) == sf_addr_port(&la);
        mirrored = mirrored && sf_addr_port(&ap[i]) == sf_addr_port(&cl[i]) &&
                   sf_addr_port(&cp[i]) == sf_addr_port(&al[i]);
    }
    demo_say(d, "%s", Z(d, "state       local            peer", "状态        本地             对端"));
    row(d, Z(d, "server: listening", "服务器：监听套接字"), lfd, &la, NULL);
    for (int i = 0; i < 2; i++)
        row(d, Z(d, "server: connected", "服务器：已连接套接字"), afd[i], &al[i], &ap[i]);
    for (int i = 0; i < 2; i++)
        row(d, Z(d, "client", "客户端"), cfd[i], &cl[i], &cp[i]);
    demo_check(d, same_port && sf_addr_port(&ap[0]) != sf_addr_port(&ap[1]),
               Z(d, "both connected sockets have the server's own port %d: accept() makes no"
                 " new port; the kernel tells them apart by the peer (ports %d and %d)",
                 "两个已连接套接字都使用服务器自己的端口 %d：accept() 不分配新端口；内核靠对端"
                 "区分它们（端口 %d 和 %d）"), sf_addr_port(&la), sf_addr_port(&ap[0]),
               sf_addr_port(&ap[1]));
    demo_check(d, mirrored, Z(d, "each client's (local, peer) is its connected socket's"
                              " (peer, local): one connection, two ends",
                              "每个客户端的（本地，对端）正是对应已连接套接字的（对端，本地）："
                              "一个连接，两端"));
}

/* A caller still queued when the listener closes is reset. */
static void
reset_on_close(demo *d, int *lfd, const sf_addr *a)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, c3 = { &d->tracer, "client", 3 };
    char buf[8];
    int cfd = demo_connect(&c3, a);

    if (cfd < 0)
        return;
    sf_close(&srv, *lfd);
    *lfd = -1;
    demo_wait_fd(cfd, POLLIN, DEMO_WAIT_MS);
    sf_read(&c3, cfd, buf, sizeof(buf));
    demo_check(d, demo_seen(d, "client", 3, SF_CALL_READ)->err == ECONNRESET,
               Z(d, "client 3 was still on hold when the listener closed: its read() failed"
                 " with %s", "监听套接字关闭时客户端 3 还在挂起：它的 read() 以 %s 失败"),
               demo_seen(d, "client", 3, SF_CALL_READ)->err
                   ? sf_errname(-demo_seen(d, "client", 3, SF_CALL_READ)->err) : "-");
    sf_close(&c3, cfd);
}

int
demo_accept_inside(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    int lfd, cfd[2] = { -1, -1 }, afd[2] = { -1, -1 }, rc = EXIT_FAIL;
    sf_addr a;

    if ((lfd = demo_listen(&srv, AF_INET, 8, 0, &a)) < 0)
        return EXIT_FAIL;
    for (int i = 0; i < 2; i++) {
        const sf_trace c = { &d->tracer, "client", (unsigned long)i + 1 };

        if ((cfd[i] = demo_connect(&c, &a)) < 0)
            goto out;
    }
    demo_probe(d, &srv, lfd);
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_GETSOCKOPT)->queue == 2,
               Z(d, "before any accept() the kernel had completed both handshakes: %d"
                 " connections wait in the listening socket's queue",
                 "在任何 accept() 之前内核就完成了两次握手：%d 个连接在监听套接字的队列中等待"),
               demo_seen(d, "server", 0, SF_CALL_GETSOCKOPT)->queue);
    for (int i = 0; i < 2; i++)
        if ((afd[i] = demo_accept_next(&srv, lfd, NULL)) < 0)
            goto out;
    four_tuples(d, lfd, cfd, afd);
    reset_on_close(d, &lfd, &a);
    rc = EXIT_OK;
out:
    for (int i = 0; i < 2; i++) {
        demo_close_quietly(&cfd[i]);
        demo_close_quietly(&afd[i]);
    }
    demo_close_quietly(&lfd);
    return rc;
}
