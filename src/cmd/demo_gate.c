/* demo_gate: section 7's handshake from real packets: SYN J, SYN K + ACK J+1, ACK K+1
 * captured beside connect() and accept(), and the moments loopback hides, frozen by a
 * socket filter on the listener that keeps segment 3 from it. */
#include <errno.h>
#include <linux/filter.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "demo_wire.h"

#define ST(s) sf_tcp_state_name(s)

/* Is s the segment of a handshake it should be (n: 1, 2, 3)? */
static int
is_step(const sf_segment *s, int n)
{
    unsigned f = s ? s->flags & (SF_SEG_SYN | SF_SEG_ACK | SF_SEG_FIN | SF_SEG_RST) : 0;

    if (s == NULL || !s->has_rel_seq)
        return 0;
    if (n == 1)
        return f == SF_SEG_SYN && s->rel_seq == 0;
    if (n == 2)
        return f == (SF_SEG_SYN | SF_SEG_ACK) && s->rel_seq == 0 && s->has_rel_ack &&
               s->rel_ack == 1;
    return f == SF_SEG_ACK && s->rel_seq == 1 && s->has_rel_ack && s->rel_ack == 1 &&
           s->len == 0;
}

/* The checks of the captured handshake against the calls beside it. */
static void
check_segments(demo *d, cmd_wire *cw)
{
    const sf_segment *s1 = cmd_wire_segment(cw, SF_WIRE_TCP, 0);
    const sf_segment *s2 = cmd_wire_segment(cw, SF_WIRE_TCP, 1);
    const sf_segment *s3 = cmd_wire_segment(cw, SF_WIRE_TCP, 2);
    const demo_rec *in = demo_entry(d, "client", 0, SF_CALL_CONNECT);
    const demo_rec *out = demo_seen(d, "client", 0, SF_CALL_CONNECT);
    const demo_rec *acc = demo_seen(d, "server", 0, SF_CALL_ACCEPT4);
    int three = is_step(s1, 1) && is_step(s2, 2) && is_step(s3, 3);

    demo_check(d, three, "%s", Z(d, "captured on lo, in this order: SYN J; SYN K, ACK J+1;"
                                 " ACK K+1 (J and K: the two initial sequence numbers)",
                                 "在 lo 上按此顺序捕获：SYN J；SYN K，ACK J+1；ACK K+1（J 和 K："
                                 "双方的初始序号）"));
    if (!three)
        return;
    demo_check(d, in->t_ns && in->t_ns <= s1->t_ns && s3->t_ns <= out->t_ns,
               "%s", Z(d, "all three segments passed while the client was inside connect():"
                       " it was entered before the SYN and returned after the ACK",
                       "三个报文段都发生在客户端的 connect() 之内：进入在 SYN 之前，返回在"
                       " ACK 之后"));
    demo_check(d, acc->result >= 0 && acc->t_ns >= s3->t_ns,
               Z(d, "accept() returned %ld only after segment 3 had arrived",
                 "accept() 在第 3 个报文段到达之后才返回 %ld"), acc->result);
}

/* The plain handshake, captured. */
static int
captured(demo *d, cmd_wire *cw)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    int lfd, cfd = -1, afd = -1;
    sf_addr a;

    demo_wire_begin(d, 7);
    demo_wire_print(d, 1);
    demo_entries(d, 1);
    if ((lfd = demo_listen(&srv, AF_INET, 8, 0, &a)) >= 0 &&
        (cfd = demo_connect(&cli, &a)) >= 0)
        afd = demo_accept_next(&srv, lfd, NULL);
    demo_entries(d, 0);
    cmd_wire_settle(cw);
    demo_wire_print(d, 0);
    if (afd >= 0 && cmd_wire_capturing(cw)) {
        demo_wire_ladder(d, Z(d, "the handshake as the tutorial draws it, from this run:",
                              "教程中的握手图，来自这次运行："));
        check_segments(d, cw);
        cmd_wire_figure(cw, 7, NULL);
    }
    demo_close_quietly(&afd);
    demo_close_quietly(&cfd);
    demo_close_quietly(&lfd);
    cmd_wire_settle(cw);
    return afd >= 0 || lfd < 0 ? EXIT_OK : EXIT_FAIL;
}

/* A socket filter on fd (prog), or none (NULL), traced as the setsockopt it is. A TCP
 * socket's filter sees the segment from its TCP header on: byte 13 holds the flags. */
static int
set_filter(const sf_trace *t, int fd, const struct sock_fprog *prog, const char *what)
{
    int dummy = 0, rc, err;

    rc = prog ? setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, prog, sizeof(*prog))
              : setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof(dummy));
    err = rc < 0 ? errno : 0;
    sf_trace_call(t, SF_CALL_SETSOCKOPT, fd, rc, err,
                  &(sf_trace_about){ .opt_level = SOL_SOCKET,
                                     .opt_name = prog ? SO_ATTACH_FILTER : SO_DETACH_FILTER },
                  prog ? "SO_ATTACH_FILTER=%s" : "SO_DETACH_FILTER", what);
    return rc;
}

/* The gate: the listening socket takes SYNs only. */
static int
gate(const sf_trace *t, int lfd, int on)
{
    static struct sock_filter only_syn[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x02, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
    };
    static const struct sock_fprog prog = { 4, only_syn };

    return set_filter(t, lfd, on ? &prog : NULL, "only SYN");
}

/* The other gate, on the client's socket: every segment but SYN-ACK (SYN and ACK both
 * set), so segment 2 never reaches the dialling socket. */
static int
gate_synack(const sf_trace *t, int fd, int on)
{
    static struct sock_filter no_synack[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x12, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
    };
    static const struct sock_fprog prog = { 5, no_synack };

    return set_filter(t, fd, on ? &prog : NULL, "no SYN-ACK");
}

/* Frozen after segment 2: the client still SYN_SENT (the SYN-ACK kept from its socket)
 * while the server's kernel holds SYN_RECV; the gate lifted, a SYN sent again brings the
 * SYN-ACK again and connect() completes. */
static int
half_open(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 2 }, cli = { &d->tracer, "client", 2 };
    int lfd, cfd = -1, client, server = SF_TCP_NONE, rc = EXIT_FAIL;
    sf_addr a, me;
    uint64_t t0;
    sf_err err;

    demo_say(d, "%s", Z(d, "frozen one step earlier: a filter on the client's socket keeps"
                        " segment 2 (SYN K, ACK J+1) from it",
                        "再早一步定格：客户端套接字上的过滤器挡住第 2 个报文段（SYN K, ACK J+1）"));
    if ((lfd = demo_listen(&srv, AF_INET, 8, 0, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd = sf_tcp_socket(&cli, AF_INET, 1, &err)) < 0 || gate_synack(&cli, cfd, 1) < 0 ||
        sf_connect(&cli, cfd, &a, &err) != SF_EAGAIN || sf_local_addr(cfd, &me) < 0)
        goto out;
    server = demo_wait_state(d, &srv, &a, &me, SF_TCP_SYN_RECV);
    client = sf_tcp_state(cfd, NULL, NULL);
    demo_check(d, client == SF_TCP_SYN_SENT && server == SF_TCP_SYN_RECV &&
               sf_tcp_accept(&srv, lfd, NULL) == SF_EAGAIN,
               Z(d, "read from both ends: the client is %s (its SYN went out, no SYN-ACK came"
                 " in) while the server's kernel holds %s (it answered and waits for the"
                 " ACK), and accept() has nothing yet", "从两端读到：客户端处于 %s（SYN 已发出，"
                 "SYN-ACK 没有进来），服务器的内核保持在 %s（它已回答，正等待 ACK），accept()"
                 " 还没有可取的连接"), ST(client), ST(server));
    gate_synack(&cli, cfd, 0);
    t0 = sf_now_ns();
    demo_wait_fd(cfd, POLLOUT, DEMO_WAIT_MS);
    client = sf_tcp_state(cfd, NULL, NULL);
    demo_check(d, client == SF_TCP_ESTABLISHED,
               Z(d, "the filter removed, the client is %s %.2f s later: a SYN or SYN-ACK sent"
                 " again after its timeout got through", "移除过滤器后 %2$.2f 秒，客户端处于"
                 " %1$s：超时后再次发送的 SYN 或 SYN-ACK 通过了"),
               ST(client), (double)(sf_now_ns() - t0) / 1e9);
    rc = EXIT_OK;
out:
    demo_close_quietly(&cfd);
    demo_close_quietly(&lfd);
    return rc;
}

/* Frozen: the client ESTABLISHED and its connect() = 0 while the server holds SYN_RECV
 * and accept() says EAGAIN; the gate lifted, accept() returns on the retransmission. */
static void
frozen_checks(demo *d, const sf_trace *srv, const sf_addr *a, int cfd)
{
    const demo_rec *c = demo_seen(d, "client", 1, SF_CALL_CONNECT);
    const demo_rec *acc = demo_seen(d, "server", 1, SF_CALL_ACCEPT4);
    sf_addr me;
    int held;

    sf_local_addr(cfd, &me);
    held = sf_trace_lookup(srv, a, &me);
    demo_check(d, c->result == 0 && c->state == SF_TCP_ESTABLISHED && held == SF_TCP_SYN_RECV &&
               acc->result < 0 && acc->err == EAGAIN,
               Z(d, "read from both ends: the client's connect() returned %ld and it is %s,"
                 " while the server's kernel holds the connection in %s and accept() gives"
                 " %s: segment 3 was sent, and kept from the listening socket",
                 "从两端读到：客户端的 connect() 返回 %ld，它处于 %s，而服务器的内核把连接"
                 "保持在 %s，accept() 得到 %s：第 3 个报文段发出了，但没有到达监听套接字"),
               c->result, ST(c->state), ST(held), acc->err ? sf_errname(acc->err) : "a call");
}

/* On the wire: segment 3 went out, and SYN K, ACK J+1 came again after the timeout. */
static void
retransmitted(demo *d, cmd_wire *cw)
{
    const sf_segment *s[5];
    int ok = cmd_wire_count(cw, SF_WIRE_TCP) >= 5;

    for (size_t i = 0; i < 5; i++)
        s[i] = cmd_wire_segment(cw, SF_WIRE_TCP, i);
    ok = ok && is_step(s[0], 1) && is_step(s[1], 2) && is_step(s[2], 3) &&
         is_step(s[3], 2) && is_step(s[4], 3) && s[3]->seq == s[1]->seq;
    demo_check(d, ok, Z(d, "on the wire: SYN J, SYN K + ACK J+1, ACK K+1 (kept from the"
                        " listener), then SYN K + ACK J+1 again %.2f s later and ACK K+1"
                        " again", "线路上：SYN J，SYN K + ACK J+1，ACK K+1（被挡在监听套接字"
                        "之外），%.2f 秒后再次 SYN K + ACK J+1，再次 ACK K+1"),
               ok ? (double)(s[3]->t_ns - s[1]->t_ns) / 1e9 : 0.0);
}

static int
frozen(demo *d, cmd_wire *cw)
{
    const sf_trace srv = { &d->tracer, "server", 1 }, cli = { &d->tracer, "client", 1 };
    int lfd, cfd = -1, afd = -1;
    uint64_t t0;
    sf_addr a;

    demo_say(d, "%s", Z(d, "frozen: a socket filter on the listener (SO_ATTACH_FILTER) takes"
                        " SYNs only, so segment 3 never reaches the listening socket",
                        "定格：监听套接字上的套接字过滤器（SO_ATTACH_FILTER）只接收 SYN，"
                        "所以第 3 个报文段到不了监听套接字"));
    demo_wire_begin(d, 7);
    demo_wire_print(d, 1);
    if ((lfd = demo_listen(&srv, AF_INET, 8, 0, &a)) < 0 || gate(&srv, lfd, 1) < 0 ||
        (cfd = demo_connect(&cli, &a)) < 0) {
        demo_close_quietly(&lfd);
        demo_wire_print(d, 0);
        return EXIT_FAIL;
    }
    sf_tcp_accept(&srv, lfd, NULL);
    frozen_checks(d, &srv, &a, cfd);
    gate(&srv, lfd, 0);
    t0 = demo_seen(d, "client", 1, SF_CALL_CONNECT)->t_ns;
    if (demo_wait_fd(lfd, POLLIN, DEMO_WAIT_MS))
        afd = sf_tcp_accept(&srv, lfd, NULL);
    cmd_wire_settle(cw);
    demo_check(d, afd >= 0, Z(d, "the filter removed, accept() returned %d %.2f s after"
                              " connect(): the server's kernel sent SYN K, ACK J+1 again"
                              " after its timeout, the client answered ACK K+1 again, and"
                              " this one got in", "移除过滤器后，accept() 在 connect() 之后"
                              " %2$.2f 秒返回 %1$d：服务器内核超时后再次发送 SYN K、ACK J+1，"
                              "客户端再次回答 ACK K+1，这一次进来了"), afd,
               (double)(demo_seen(d, "server", 1, SF_CALL_ACCEPT4)->t_ns - t0) / 1e9);
    demo_wire_print(d, 0);
    if (cmd_wire_capturing(cw)) {
        demo_wire_ladder(d, Z(d, "the frozen handshake, from this run:",
                              "定格的握手，来自这次运行："));
        retransmitted(d, cw);
    }
    demo_close_quietly(&afd);
    demo_close_quietly(&cfd);
    demo_close_quietly(&lfd);
    cmd_wire_settle(cw);
    return EXIT_OK;
}

int
demo_handshake_wire(demo *d)
{
    cmd_wire *cw = demo_wire_capture(d);
    int rc;

    if (cmd_wire_capturing(cw))
        demo_say(d, "%s", Z(d, "the segments, captured on lo as they pass (wire), beside the"
                            " calls that cause them:", "报文段在 lo 上经过时被捕获（wire），"
                            "与引起它们的调用并列："));
    else
        demo_skip(d, "%s", Z(d, "the segments themselves: no capture here (it needs"
                             " CAP_NET_RAW, or user namespaces to get it without root)",
                             "报文段本身：这里无法捕获（需要 CAP_NET_RAW，或者用户命名空间以"
                             "便不用 root 获得它）"));
    rc = captured(d, cw);
    demo_say(d, "%s", Z(d, "on loopback all three segments happen inside connect(): the"
                        " tutorial's connect() returning after segment 2, before segment 3"
                        " is sent, cannot be seen here in time; and with accept() sleeping in"
                        " another thread, which of the two returns first is a race",
                        "在回环接口上，三个报文段都发生在 connect() 之内：教程中 connect() 在第"
                        " 2 个报文段之后、第 3 个发出之前返回，在这里的时间上看不到；如果"
                        " accept() 在另一个线程里休眠，两者谁先返回是一场竞争"));
    if (rc == EXIT_OK)
        rc = frozen(d, cw);
    if (rc == EXIT_OK)
        rc = half_open(d);
    demo_wire_begin(d, 7);
    return rc;
}
