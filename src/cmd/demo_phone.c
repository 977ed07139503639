/* demo_phone: the seed's section 3, the telephone picture, every call explained; and
 * where the picture breaks: the switchboard answers before accept(), and a caller may
 * talk while on hold. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

#define ST(s) sf_tcp_state_name(s)

/* Dial a number where no phone is switched on: refused, and said so. */
static void
dial_nobody(demo *d, const sf_trace *cli, const sf_addr *a, const char *why)
{
    int fd = demo_try_connect(cli, a);

    demo_check(d, fd == -ECONNREFUSED, Z(d, "dialling %s, %s: connect() %s",
                                         "拨打 %s，%s：connect() %s"),
               demo_seen(d, "client", 0, SF_CALL_CONNECT)->args, why,
               fd == -ECONNREFUSED ? Z(d, "refused (ECONNREFUSED, a reset)",
                                       "被拒绝（ECONNREFUSED，一个复位）")
                                   : Z(d, "was not refused", "没有被拒绝"));
    if (fd >= 0)
        sf_close(cli, fd);
}

/* The call itself: dial, wait on hold, talk while on hold, be taken off hold. */
static int
phone_call(demo *d, const sf_trace *srv, const sf_trace *cli, int lfd, const sf_addr *a)
{
    char buf[16];
    int cfd, afd;
    ssize_t n;
    const demo_rec *c, *q, *rd;

    if ((cfd = demo_connect(cli, a)) < 0)
        return EXIT_FAIL;
    demo_check(d, strcmp(demo_seen(d, "client", 0, SF_CALL_SOCKET)->local, "0.0.0.0:0") == 0,
               Z(d, "socket() gave the caller a phone with no number yet: its address was %s",
                 "socket() 给了来电者一部还没有号码的手机：它的地址是 %s"),
               demo_seen(d, "client", 0, SF_CALL_SOCKET)->local);
    demo_probe(d, srv, lfd);
    c = demo_seen(d, "client", 0, SF_CALL_CONNECT);
    q = demo_seen(d, "server", 0, SF_CALL_GETSOCKOPT);
    demo_check(d, c->result == 0 && c->state == SF_TCP_ESTABLISHED && q->queue == 1,
               Z(d, "the switchboard answered before anyone called accept(): connect()"
                 " returned %ld (%s) and the call waits on hold (accept queue %d)",
                 "在任何人调用 accept() 之前总机就接起了电话：connect() 返回 %ld（%s），"
                 "电话挂起等待（accept 队列 %d）"), c->result, ST(c->state), q->queue);
    sf_write_full(cli, cfd, "hi\n", 3);
    if ((afd = sf_tcp_accept_blocking(srv, lfd, NULL)) < 0) {
        sf_close(cli, cfd);
        return cmd_fail("accept: %s", sf_strerror(afd));
    }
    demo_check(d, afd != lfd, Z(d, "accept() took the call off hold: a private line on"
                                " descriptor %d, the listening phone %d stays on",
                                "accept() 把电话从挂起中接过来：描述符 %d 上的私有通信链路，"
                                "监听的手机 %d 仍然开着"), afd, lfd);
    n = sf_read(srv, afd, buf, sizeof(buf));
    rd = demo_seen(d, "server", 0, SF_CALL_READ);
    demo_check(d, n == 3, Z(d, "what the caller said while on hold had waited: the first"
                            " read() after accept() returned %ld bytes at once",
                            "来电者在挂起时说的话一直在等：accept() 之后的第一次 read()"
                            " 立即返回了 %ld 字节"), rd->result);
    if (n > 0)
        sf_write_full(srv, afd, buf, (size_t)n);
    n = sf_read_full(cli, cfd, buf, 3);
    demo_check(d, n == 3 && demo_seen(d, "server", 0, SF_CALL_WRITE)->result == 3,
               Z(d, "they talk over the private line: %ld bytes one way, %zd back",
                 "通过私有的通信链路，双方开始通话：一个方向 %ld 字节，回来 %zd 字节"),
               demo_seen(d, "server", 0, SF_CALL_READ)->result, n);
    sf_close(cli, cfd);
    sf_read(srv, afd, buf, sizeof(buf));
    rd = demo_seen(d, "server", 0, SF_CALL_READ);
    demo_check(d, rd->result == 0 && rd->state == SF_TCP_CLOSE_WAIT,
               Z(d, "one side hung up: the other's read() returned %ld (%s)",
                 "一方挂断了电话：另一方的 read() 返回 %ld（%s）"), rd->result, ST(rd->state));
    sf_close(srv, afd);
    return EXIT_OK;
}

/* UDP is the post: letters with a return address, no call. */
static int
letters(demo *d, const sf_trace *srv, const sf_trace *cli)
{
    sf_listen_opts lo = { .blocking = 1 };
    char buf[16];
    sf_addr u, from;
    sf_err err;
    int ufd, vfd;
    ssize_t n;

    sf_addr_loopback(&u, AF_INET, 0);
    if ((ufd = sf_udp_bind(srv, &u, &lo, &err)) < 0)
        return cmd_fail("%s", err.msg);
    sf_local_addr(ufd, &u);
    if ((vfd = sf_udp_socket(cli, AF_INET, 0, &err)) < 0) {
        sf_close(srv, ufd);
        return cmd_fail("%s", err.msg);
    }
    sf_sendto(cli, vfd, "hi\n", 3, &u);
    demo_wait_fd(ufd, POLLIN, DEMO_WAIT_MS);
    n = sf_recvfrom(srv, ufd, buf, sizeof(buf), &from, NULL);
    demo_check(d, n == 3 && sf_addr_port(&from) == demo_local_port(vfd),
               Z(d, "a letter arrived with its return address (port %d): no call was set up",
                 "一封信带着回信地址（端口 %d）到了：没有建立通话"), sf_addr_port(&from));
    if (n > 0)
        sf_sendto(srv, ufd, buf, (size_t)n, &from);
    demo_wait_fd(vfd, POLLIN, DEMO_WAIT_MS);
    sf_recvfrom(cli, vfd, buf, sizeof(buf), NULL, NULL);
    sf_close(cli, vfd);
    sf_close(srv, ufd);
    return EXIT_OK;
}

int
demo_telephone(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    int lfd, rc = EXIT_FAIL;
    sf_addr a;
    sf_err err;

    d->cur = &d->phone;
    if ((lfd = demo_bound(&srv, &a)) < 0) {
        d->cur = &d->sink;
        return EXIT_FAIL;
    }
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_BIND)->state == SF_TCP_CLOSE &&
               sf_addr_port(&a) != 0, Z(d, "bind() gave the phone its number, port %d; it is"
                                        " still switched off (%s)", "bind() 激活SIM卡，手机有了"
                                        "号码：端口 %d；它还没有开机（%s）"), sf_addr_port(&a),
               ST(demo_seen(d, "server", 0, SF_CALL_BIND)->state));
    dial_nobody(d, &cli, &a, Z(d, "a number with a SIM card but switched off (bound, no"
                                " listen())", "有SIM卡但没有开机的号码（已 bind，未 listen）"));
    if (sf_listen(&srv, lfd, 8, &err) == 0) {
        demo_check(d, demo_seen(d, "server", 0, SF_CALL_LISTEN)->state == SF_TCP_LISTEN,
                   Z(d, "listen() switched the phone on: %s, it can take calls now",
                     "listen() 开机：%s，现在可以接听电话"),
                   ST(demo_seen(d, "server", 0, SF_CALL_LISTEN)->state));
        rc = phone_call(d, &srv, &cli, lfd, &a);
    }
    sf_close(&srv, lfd);
    if (rc == EXIT_OK) {
        dial_nobody(d, &cli, &a, Z(d, "after the phone was switched off and put away (no"
                                    " socket has the number)", "手机关机收起之后（没有套接字"
                                    "拥有这个号码）"));
        demo_say(d, "%s", Z(d, "UDP is the post: letters with a return address, no call.",
                            "UDP 是邮政：带回信地址的信，不打电话。"));
        rc = letters(d, &srv, &cli);
    }
    d->cur = &d->sink;
    return rc;
}
