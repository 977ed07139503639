/* demo_flow: sections 1-3, the TCP flow, the UDP flow and the telephone picture. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

/* ---- 1. the TCP flow ---- */

int
demo_tcp_flow(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    char buf[64], where[SF_ADDR_STRLEN], who[SF_ADDR_STRLEN];
    int lfd, cfd = -1, afd = -1, rc = EXIT_FAIL;
    sf_addr a, peer;
    ssize_t n;

    demo_say(d, "server: socket -> setsockopt -> bind -> listen -> accept -> read -> write -> close");
    demo_say(d, "client: socket -> connect -> write -> read -> close");
    if ((lfd = demo_listen(&srv, 8, 1, &a)) < 0)
        return EXIT_FAIL;
    demo_say(d, "the server listens on %s", sf_addr_format(&a, where, sizeof(where)));
    if ((cfd = demo_connect(&cli, &a)) < 0)
        goto out;
    if ((afd = sf_tcp_accept_blocking(&srv, lfd, &peer)) < 0) {
        cmd_fail("accept: %s", sf_strerror(afd));
        goto out;
    }
    demo_check(d, afd != lfd && demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->state == SF_TCP_ESTABLISHED,
          "accept() gave a new descriptor %d for the client %s (%s); the listening "
          "descriptor %d stays", afd, sf_addr_format(&peer, who, sizeof(who)),
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->state), lfd);
    sf_write_full(&cli, cfd, "hello\n", 6);
    n = sf_read(&srv, afd, buf, sizeof(buf));
    if (n > 0)
        sf_write_full(&srv, afd, buf, (size_t)n);
    n = sf_read_full(&cli, cfd, buf, 6);
    demo_check(d, n == 6 && memcmp(buf, "hello\n", 6) == 0,
          "the client got its 6 bytes back: the server read them and wrote them back");
    sf_close(&cli, cfd);
    cfd = -1;
    n = sf_read(&srv, afd, buf, sizeof(buf));
    demo_check(d, n == 0 && demo_seen(d, "server", 0, SF_CALL_READ)->state == SF_TCP_CLOSE_WAIT,
          "the client hung up: the server's read() returned %zd and its socket is %s", n,
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_READ)->state));
    sf_close(&srv, afd);
    afd = -1;
    rc = EXIT_OK;
out:
    if (afd >= 0)
        sf_close(&srv, afd);
    if (cfd >= 0)
        sf_close(&cli, cfd);
    sf_close(&srv, lfd);
    return rc;
}

/* ---- 2. the UDP flow ---- */

int
demo_udp_flow(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    sf_listen_opts lo = { .blocking = 1 };
    char buf[64], where[SF_ADDR_STRLEN], who[SF_ADDR_STRLEN];
    int sfd, cfd, calls = 0;
    sf_addr a, from, back;
    sf_err err;
    ssize_t n;

    demo_say(d, "server: socket -> bind -> recvfrom -> sendto -> close");
    demo_say(d, "client: socket -> sendto -> recvfrom -> close");
    sf_addr_loopback(&a, AF_INET, 0);
    if ((sfd = sf_udp_bind(&srv, &a, &lo, &err)) < 0)
        return cmd_fail("%s", err.msg);
    sf_local_addr(sfd, &a);
    demo_say(d, "the server waits for datagrams on %s", sf_addr_format(&a, where, sizeof(where)));
    if ((cfd = sf_udp_socket(&cli, AF_INET, 0, &err)) < 0) {
        sf_close(&srv, sfd);
        return cmd_fail("%s", err.msg);
    }
    sf_sendto(&cli, cfd, "ping\n", 5, &a);
    demo_wait_fd(sfd, POLLIN, DEMO_WAIT_MS);
    n = sf_recvfrom(&srv, sfd, buf, sizeof(buf), &from, NULL);
    sf_local_addr(cfd, &back);
    demo_check(d, n == 5 && sf_addr_port(&from) == sf_addr_port(&back),
          "a datagram of %zd bytes arrived with the return address %s: the kernel gave the "
          "client that number at its first sendto(), no bind() needed", n,
          sf_addr_format(&from, who, sizeof(who)));
    if (n > 0)
        sf_sendto(&srv, sfd, buf, (size_t)n, &from);
    demo_wait_fd(cfd, POLLIN, DEMO_WAIT_MS);
    n = sf_recvfrom(&cli, cfd, buf, sizeof(buf), NULL, NULL);
    demo_check(d, n == 5 && memcmp(buf, "ping\n", 5) == 0, "the client got its 5 bytes back");
    for (int i = 0; i < d->nrecs; i++) {
        sf_call c = d->recs[i].call;

        calls += c == SF_CALL_LISTEN || c == SF_CALL_ACCEPT4 || c == SF_CALL_CONNECT ||
                 c == SF_CALL_CONNECT_DONE;
    }
    demo_check(d, calls == 0, "no listen(), accept() or connect() was called: no call is set up");
    sf_close(&cli, cfd);
    sf_close(&srv, sfd);
    return EXIT_OK;
}

/* ---- 3. the telephone picture ---- */

int
demo_telephone(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    char buf[64];
    int lfd, cfd, afd, ufd, vfd;
    sf_listen_opts lo = { .blocking = 1 };
    sf_addr a, peer, u;
    sf_err err;
    ssize_t n;

    demo_say(d, "TCP is a telephone call: a phone, a number, switched on, dialled, answered, a"
        " private line, talk, hang up.");
    d->cur = &d->phone;
    if ((lfd = demo_listen(&srv, 8, 1, &a)) < 0)
        goto fail;
    if ((cfd = demo_connect(&cli, &a)) < 0) {
        sf_close(&srv, lfd);
        goto fail;
    }
    if ((afd = sf_tcp_accept_blocking(&srv, lfd, &peer)) < 0) {
        sf_close(&cli, cfd);
        sf_close(&srv, lfd);
        goto fail;
    }
    sf_write_full(&cli, cfd, "hi\n", 3);
    n = sf_read(&srv, afd, buf, sizeof(buf));
    if (n > 0)
        sf_write_full(&srv, afd, buf, (size_t)n);
    sf_read_full(&cli, cfd, buf, 3);
    sf_close(&cli, cfd);
    sf_read(&srv, afd, buf, sizeof(buf));
    sf_close(&srv, afd);
    sf_close(&srv, lfd);
    d->cur = &d->sink;
    demo_say(d, "UDP is the post: letters with a return address, no call set up.");
    d->cur = &d->phone;
    sf_addr_loopback(&u, AF_INET, 0);
    if ((ufd = sf_udp_bind(&srv, &u, &lo, &err)) < 0)
        goto fail;
    sf_local_addr(ufd, &u);
    if ((vfd = sf_udp_socket(&cli, AF_INET, 0, &err)) < 0) {
        sf_close(&srv, ufd);
        goto fail;
    }
    sf_sendto(&cli, vfd, "hi\n", 3, &u);
    demo_wait_fd(ufd, POLLIN, DEMO_WAIT_MS);
    n = sf_recvfrom(&srv, ufd, buf, sizeof(buf), &peer, NULL);
    if (n > 0)
        sf_sendto(&srv, ufd, buf, (size_t)n, &peer);
    demo_wait_fd(vfd, POLLIN, DEMO_WAIT_MS);
    sf_recvfrom(&cli, vfd, buf, sizeof(buf), NULL, NULL);
    sf_close(&cli, vfd);
    sf_close(&srv, ufd);
    d->cur = &d->sink;
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_LISTEN)->state == SF_TCP_LISTEN &&
          demo_seen(d, "server", 0, SF_CALL_READ)->state == SF_TCP_CLOSE_WAIT,
          "switched on = %s; after the client hung up the server's line was %s",
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_LISTEN)->state),
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_READ)->state));
    return EXIT_OK;
fail:
    d->cur = &d->sink;
    return cmd_fail("telephone: %s", strerror(errno));
}
