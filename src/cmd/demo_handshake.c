/* demo_handshake: sections 6 and 7, the handshake, the accept queue and the close, and
 * one listening socket with one connected socket per client. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

/* ---- 6. the three-way handshake and the close ---- */

int
demo_handshake(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, s1 = { &d->tracer, "server", 1 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    const sf_trace c3 = { &d->tracer, "client", 3 };
    int lfd, cfd1 = -1, cfd2 = -1, cfd3 = -1, afd = -1, rc = EXIT_FAIL, state;
    long overflows;
    uint64_t t0;
    sf_addr a, local1, peer1;
    char buf[16];

    demo_say(d, "a listening socket with backlog 1: Linux keeps up to backlog + 1 = 2 finished"
        " connections waiting for accept()");
    if ((lfd = demo_listen(&srv, 1, 0, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd1 = demo_connect(&c1, &a)) < 0)
        goto out;
    demo_check(d, demo_seen(d, "client", 1, SF_CALL_CONNECT_DONE)->state == SF_TCP_ESTABLISHED,
          "client 1 sent SYN, got SYN-ACK, sent ACK: %s, and the server has not called"
          " accept()", sf_tcp_state_name(demo_seen(d, "client", 1, SF_CALL_CONNECT_DONE)->state));
    if ((cfd2 = demo_connect(&c2, &a)) < 0)
        goto out;
    demo_probe(&srv, lfd);
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_GETSOCKOPT)->queue == 2,
          "the kernel completed both connections by itself: they wait in the accept queue"
          " of the listening socket (length %d)", demo_seen(d, "server", 0, SF_CALL_GETSOCKOPT)->queue);
    demo_say(d, "client 3 dials while the queue is full: the server's kernel drops its SYN");
    if ((cfd3 = demo_dial(&c3, &a)) < 0)
        goto out;
    demo_probe(&c3, cfd3);
    demo_check(d, demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state == SF_TCP_SYN_SENT,
          "client 3 is in %s: its SYN went out and no SYN-ACK came back",
          sf_tcp_state_name(demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state));
    if ((afd = demo_accept_next(&srv, lfd, &peer1)) < 0)
        goto out;
    demo_say(d, "accept() took client 1 off the queue, making room; client 3's kernel sends its"
        " SYN again after its retransmission timeout (1 s)");
    t0 = sf_now_ns();
    demo_wait_fd(cfd3, POLLOUT, DEMO_WAIT_MS);
    demo_probe(&c3, cfd3);
    demo_check(d, demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state == SF_TCP_ESTABLISHED,
          "client 3 is %s after %.1f s: the second SYN found room",
          sf_tcp_state_name(demo_seen(d, "client", 3, SF_CALL_GETSOCKOPT)->state),
          (double)(sf_now_ns() - t0) / 1e9);
    demo_say(d, "the close: client 1 hangs up first");
    sf_local_addr(cfd1, &local1);
    sf_peer_addr(cfd1, &peer1);
    overflows = demo_tw_overflows();
    sf_close(&c1, cfd1);
    cfd1 = -1;
    state = demo_wait_state(&c1, &local1, &peer1, SF_TCP_FIN_WAIT2);
    demo_check_closed_state(d, state, SF_TCP_FIN_WAIT2, overflows,
                       "client 1: its FIN was acknowledged; it is in",
                       ", waiting for the server's FIN");
    demo_read_some(&s1, afd, buf, sizeof(buf));
    demo_check(d, demo_seen(d, "server", 1, SF_CALL_READ)->result == 0 &&
          demo_seen(d, "server", 1, SF_CALL_READ)->state == SF_TCP_CLOSE_WAIT,
          "server: read() returned %ld (end of stream) and its socket is %s",
          demo_seen(d, "server", 1, SF_CALL_READ)->result,
          sf_tcp_state_name(demo_seen(d, "server", 1, SF_CALL_READ)->state));
    sf_close(&s1, afd);
    afd = -1;
    state = demo_wait_state(&c1, &local1, &peer1, SF_TCP_TIME_WAIT);
    demo_check_closed_state(d, state, SF_TCP_TIME_WAIT, overflows,
                       "the server hung up too; client 1, which hung up first, is in", "");
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        cmd_fail("handshake: %s", strerror(errno));
    demo_close_quietly(&cfd1);
    demo_close_quietly(&cfd2);
    demo_close_quietly(&cfd3);
    demo_close_quietly(&afd);
    demo_close_quietly(&lfd);
    demo_say(d, "(clients 2 and 3 and the listening socket are closed quietly)");
    return rc;
}

/* ---- 7. one listening socket, one connected socket per client ---- */

int
demo_two_sockets(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    const sf_trace s1 = { &d->tracer, "server", 1 }, s2 = { &d->tracer, "server", 2 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    const sf_trace c3 = { &d->tracer, "client", 3 };
    int lfd, cfd[3] = { -1, -1, -1 }, afd[3] = { -1, -1, -1 }, rc = EXIT_FAIL, ok;
    int lfd_seen[3];
    char buf[16], w1[SF_ADDR_STRLEN], w2[SF_ADDR_STRLEN];
    sf_addr a, peer[3];
    ssize_t n1, n2;

    if ((lfd = demo_listen(&srv, 8, 0, &a)) < 0)
        return EXIT_FAIL;
    if ((cfd[0] = demo_connect(&c1, &a)) < 0 || (cfd[1] = demo_connect(&c2, &a)) < 0)
        goto out;
    for (int i = 0; i < 2; i++) {
        if ((afd[i] = demo_accept_next(&srv, lfd, &peer[i])) < 0)
            goto out;
        lfd_seen[i] = demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->fd;
    }
    demo_check(d, afd[0] != afd[1] && afd[0] != lfd && afd[1] != lfd && lfd_seen[0] == lfd &&
          lfd_seen[1] == lfd,
          "two clients, two connected sockets: descriptor %d (%s) and descriptor %d (%s); both"
          " accept() calls were made on the same listening descriptor %d", afd[0],
          sf_addr_format(&peer[0], w1, sizeof(w1)), afd[1],
          sf_addr_format(&peer[1], w2, sizeof(w2)), lfd);
    sf_write_full(&c1, cfd[0], "one\n", 4);
    sf_write_full(&c2, cfd[1], "two\n", 4);
    n1 = demo_read_some(&s1, afd[0], buf, sizeof(buf));
    ok = n1 == 4 && memcmp(buf, "one\n", 4) == 0;
    n2 = demo_read_some(&s2, afd[1], buf, sizeof(buf));
    ok = ok && n2 == 4 && memcmp(buf, "two\n", 4) == 0;
    demo_check(d, ok, "each line is private: descriptor %d heard client 1, descriptor %d client 2",
          afd[0], afd[1]);
    demo_say(d, "the server is done with client 1: it closes that connected socket");
    sf_close(&s1, afd[0]);
    afd[0] = -1;
    demo_read_some(&c1, cfd[0], buf, sizeof(buf));
    demo_check(d, demo_seen(d, "client", 1, SF_CALL_READ)->result == 0 &&
          sf_tcp_state(lfd, NULL, NULL) == SF_TCP_LISTEN,
          "client 1 read 0 (hung up on); the listening socket is still %s",
          sf_tcp_state_name(sf_tcp_state(lfd, NULL, NULL)));
    demo_say(d, "a third client, and accept() again for a new connected socket");
    if ((cfd[2] = demo_connect(&c3, &a)) < 0)
        goto out;
    if ((afd[2] = demo_accept_next(&srv, lfd, &peer[2])) < 0)
        goto out;
    lfd_seen[2] = demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->fd;
    demo_check(d, lfd_seen[2] == lfd && afd[2] != lfd && afd[2] != afd[1],
          "accept() on the same listening descriptor %d gave descriptor %d for %s: a new"
          " connection (a freed descriptor number can be reused)", lfd, afd[2],
          sf_addr_format(&peer[2], w1, sizeof(w1)));
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        cmd_fail("accept: %s", strerror(errno));
    for (int i = 0; i < 3; i++) {
        demo_close_quietly(&cfd[i]);
        demo_close_quietly(&afd[i]);
    }
    sf_close(&srv, lfd);
    return rc;
}
