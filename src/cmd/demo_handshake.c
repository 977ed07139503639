/* demo_handshake: the seed's section 7, the three-way handshake (UNP's figure): SYN_SENT
 * until the SYN-ACK, shown by holding a SYN in a full accept queue (the drop and the
 * retransmission confirmed by the kernel's counters), and the close: FIN_WAIT2 and
 * TIME_WAIT on the side that hangs up first, CLOSE_WAIT and LAST_ACK on the other. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "demo_wire.h"

#define ST(s) sf_tcp_state_name(s)

/* The kernel's counters of a full queue and of a SYN sent again. */
typedef struct counters {
    long overflows, drops, synretrans;
} counters;

static void
read_counters(counters *c)
{
    c->overflows = sf_net_counter("TcpExt", "ListenOverflows");
    c->drops = sf_net_counter("TcpExt", "ListenDrops");
    c->synretrans = sf_net_counter("TcpExt", "TCPSynRetrans");
}

/* Retransmissions fd's own connection counts (TCP_INFO tcpi_total_retrans), or -1: the
 * evidence that is this socket's alone, where the counters above are the machine's. */
static long
own_retransmissions(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    return (long)ti.tcpi_total_retrans;
}

/* Client 3 dials a full queue (the nonblocking connect, taught here): SYN_SENT until
 * accept() makes room and the SYN is sent again. */
static int
held_syn(demo *d, int lfd, const sf_addr *a, int *cfd3, int *afd)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, c3 = { &d->tracer, "client", 3 };
    counters before, after;
    uint64_t t0;
    long retrans;

    read_counters(&before);
    if ((*cfd3 = demo_dial(&c3, a)) < 0)
        return EXIT_FAIL;
    demo_probe(d, &c3, *cfd3);
    demo_check(d, demo_seen(d, "client", 3, SF_CALL_CONNECT)->err == EINPROGRESS &&
               demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state == SF_TCP_SYN_SENT,
               Z(d, "client 3's nonblocking connect() returned EINPROGRESS at once; it is %s:"
                 " its SYN went out and no SYN-ACK came back (the queue is full)",
                 "客户端 3 的非阻塞 connect() 立即返回 EINPROGRESS；它处于 %s：SYN 已发出，"
                 "没有 SYN-ACK 回来（队列已满）"),
               ST(demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state));
    if ((*afd = demo_accept_next(&srv, lfd, NULL)) < 0)
        return EXIT_FAIL;
    demo_say(d, "%s", Z(d, "accept() took client 1 off the queue; client 3's kernel sends its"
                        " SYN again after its retransmission timeout (1 s)",
                        "accept() 从队列取走了客户端 1；客户端 3 的内核在重传超时（1 秒）后再次"
                        "发送 SYN"));
    t0 = sf_now_ns();
    demo_wait_fd(*cfd3, POLLOUT, DEMO_WAIT_MS);
    demo_probe(d, &c3, *cfd3);
    demo_check(d, demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state == SF_TCP_ESTABLISHED,
               Z(d, "client 3 is %s after %.1f s: the second SYN found room",
                 "%2$.1f 秒后客户端 3 是 %1$s：第二个 SYN 找到了位置"),
               ST(demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state),
               (double)(sf_now_ns() - t0) / 1e9);
    read_counters(&after);
    retrans = own_retransmissions(*cfd3);
    demo_check(d, retrans >= 1,
               Z(d, "client 3's own connection counts %ld retransmission(s) (TCP_INFO): its"
                 " first SYN was dropped and sent again", "客户端 3 自己的连接记下了 %ld 次"
                 "重传（TCP_INFO）：它的第一个 SYN 被丢弃后又发送了一次"), retrans);
    demo_check(d, after.overflows > before.overflows && after.drops > before.drops &&
               after.synretrans > before.synretrans,
               Z(d, "the kernel counted it: ListenOverflows +%ld, ListenDrops +%ld,"
                 " TCPSynRetrans +%ld", "内核记下了这些：ListenOverflows +%ld，ListenDrops"
                 " +%ld，TCPSynRetrans +%ld"), after.overflows - before.overflows,
               after.drops - before.drops, after.synretrans - before.synretrans);
    return EXIT_OK;
}

/* Client 1 hangs up first; the server second. */
static void
the_close(demo *d, int *cfd1, int *afd)
{
    const sf_trace s1 = { &d->tracer, "server", 1 }, c1 = { &d->tracer, "client", 1 };
    sf_addr local1, peer1;
    const demo_rec *rd, *cl;
    long overflows;
    char buf[16];
    int state;

    sf_local_addr(*cfd1, &local1);
    sf_peer_addr(*cfd1, &peer1);
    overflows = demo_tw_overflows();
    sf_close(&c1, *cfd1);
    *cfd1 = -1;
    state = demo_wait_state(d, &c1, &local1, &peer1, SF_TCP_FIN_WAIT2);
    demo_check_closed_state(d, state, SF_TCP_FIN_WAIT2, overflows,
                            Z(d, "client 1 hung up first; its FIN was acknowledged: it is in",
                              "客户端 1 先挂断；它的 FIN 已被确认：它处于"),
                            Z(d, ", waiting for the server's FIN", "，等待服务器的 FIN"));
    demo_read_some(&s1, *afd, buf, sizeof(buf));
    rd = demo_seen(d, "server", 1, SF_CALL_READ);
    demo_check(d, rd->result == 0 && rd->state == SF_TCP_CLOSE_WAIT,
               Z(d, "the server's read() returned %ld (end of stream) and its socket is %s",
                 "服务器的 read() 返回 %ld（流结束），它的套接字是 %s"), rd->result,
               ST(rd->state));
    sf_close(&s1, *afd);
    *afd = -1;
    cl = demo_seen(d, "server", 1, SF_CALL_CLOSE);
    demo_check(d, cl->before == SF_TCP_CLOSE_WAIT &&
               (cl->state == SF_TCP_LAST_ACK || cl->state == SF_TCP_CLOSE),
               Z(d, "the server's close() from %s sent the last FIN: %s (LAST_ACK until its"
                 " ACK comes back, then gone)", "服务器从 %s 调用 close() 发出最后一个 FIN：%s"
                 "（在 ACK 回来之前是 LAST_ACK，之后消失）"), ST(cl->before), ST(cl->state));
    state = demo_wait_state(d, &c1, &local1, &peer1, SF_TCP_TIME_WAIT);
    demo_check_closed_state(d, state, SF_TCP_TIME_WAIT, overflows,
                            Z(d, "client 1, which hung up first, is in",
                              "先挂断的客户端 1 处于"), "");
}

int
demo_handshake(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    int lfd, cfd1 = -1, cfd2 = -1, cfd3 = -1, afd = -1, rc = EXIT_FAIL;
    sf_addr a;

    if (demo_handshake_wire(d) != EXIT_OK)      /* the segments, and segment 3 held */
        return EXIT_FAIL;
    demo_say(d, "%s", Z(d, "a listening socket with backlog 1: Linux keeps up to backlog + 1"
                        " = 2 finished connections waiting for accept()",
                        "backlog 为 1 的监听套接字：Linux 最多让 backlog + 1 = 2 个已完成的连接"
                        "等待 accept()"));
    if ((lfd = demo_listen(&srv, AF_INET, 1, 0, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd1 = demo_connect(&c1, &a)) < 0 || (cfd2 = demo_connect(&c2, &a)) < 0)
        goto out;
    demo_check(d, demo_seen(d, "client", 1, SF_CALL_CONNECT)->state == SF_TCP_ESTABLISHED,
               Z(d, "client 1 sent SYN, got SYN-ACK, sent ACK: %s, and no accept() was"
                 " called", "客户端 1 发出 SYN，收到 SYN-ACK，发出 ACK：%s，而还没有调用"
                 " accept()"), ST(demo_seen(d, "client", 1, SF_CALL_CONNECT)->state));
    if (held_syn(d, lfd, &a, &cfd3, &afd) == EXIT_OK) {
        the_close(d, &cfd1, &afd);
        rc = EXIT_OK;
    }
out:
    demo_close_quietly(&cfd1);
    demo_close_quietly(&cfd2);
    demo_close_quietly(&cfd3);
    demo_close_quietly(&afd);
    demo_close_quietly(&lfd);
    return rc;
}
