/* demo: both sides of the TCP and the UDP flow in one process, on loopback, each call
 * printed as it happens with the TCP state the kernel reports after it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static void
print_event(void *ud, const sf_trace_event *ev)
{
    char res[32];

    (void)ud;
    if (ev->result < 0)
        snprintf(res, sizeof(res), "-1 %s", sf_errname(-ev->err));
    else
        snprintf(res, sizeof(res), "%ld", ev->result);
    printf("  %-6s %-9s fd=%-3d %-34s = %-8s %s\n", ev->side, ev->call, ev->fd, ev->args,
           res, sf_tcp_state_name(ev->tcp_state));
}

static int
demo_tcp(const sf_tracer *tr)
{
    const sf_trace srv = { tr, "server", 0 }, cli = { tr, "client", 0 };
    sf_listen_opts lo = { .backlog = 8, .blocking = 1 };
    char buf[64], where[SF_ADDR_STRLEN];
    int lfd, cfd = -1, afd = -1, rc = EXIT_FAIL;
    sf_addr a, peer;
    sf_err err;
    ssize_t n;

    printf("1. TCP: socket -> bind -> listen -> accept -> read/write -> close\n");
    sf_addr_loopback(&a, AF_INET, 0);
    if ((lfd = sf_tcp_listen(&srv, &a, &lo, &err)) < 0)
        return cmd_fail("%s", err.msg);
    sf_local_addr(lfd, &a);
    printf("   the server listens on %s\n", sf_addr_format(&a, where, sizeof(where)));
    if ((cfd = sf_tcp_connect(&cli, &a, NULL, 2000, 0, &err)) < 0) {
        cmd_fail("%s", err.msg);
        goto out;
    }
    printf("   the kernel completed the handshake before accept() was called\n");
    if ((afd = sf_tcp_accept_blocking(&srv, lfd, &peer)) < 0) {
        cmd_fail("accept: %s", sf_strerror(afd));
        goto out;
    }
    printf("   accept() gave a new descriptor %d for %s; the listening one (%d) stays\n",
           afd, sf_addr_format(&peer, where, sizeof(where)), lfd);
    sf_write_full(&cli, cfd, "hello\n", 6);
    n = sf_read(&srv, afd, buf, sizeof(buf));
    if (n > 0)
        sf_write_full(&srv, afd, buf, (size_t)n);
    n = sf_read(&cli, cfd, buf, sizeof(buf));
    printf("   the client got back %zd bytes: %.*s", n, (int)(n > 0 ? n : 0), buf);
    sf_close(&cli, cfd);
    cfd = -1;
    n = sf_read(&srv, afd, buf, sizeof(buf));
    printf("   the client hung up: the server's read() returned %zd (end of stream)\n", n);
    rc = EXIT_OK;
out:
    if (afd >= 0)
        sf_close(&srv, afd);
    if (cfd >= 0)
        sf_close(&cli, cfd);
    sf_close(&srv, lfd);
    return rc;
}

static int
demo_udp(const sf_tracer *tr)
{
    const sf_trace srv = { tr, "server", 0 }, cli = { tr, "client", 0 };
    sf_listen_opts lo = { .blocking = 1 };
    char buf[64], where[SF_ADDR_STRLEN];
    sf_addr a, from;
    int sfd, cfd;
    sf_err err;
    ssize_t n;

    printf("\n2. UDP: socket -> bind -> recvfrom/sendto; no listen, accept or connect\n");
    sf_addr_loopback(&a, AF_INET, 0);
    if ((sfd = sf_udp_bind(&srv, &a, &lo, &err)) < 0)
        return cmd_fail("%s", err.msg);
    sf_local_addr(sfd, &a);
    printf("   the server waits for datagrams on %s\n", sf_addr_format(&a, where, sizeof(where)));
    cfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (cfd < 0) {
        sf_close(&srv, sfd);
        return cmd_fail("socket: %s", strerror(errno));
    }
    sf_sendto(&cli, cfd, "ping\n", 5, &a);
    n = sf_recvfrom(&srv, sfd, buf, sizeof(buf), &from, NULL);
    printf("   a datagram arrived from %s; the reply goes back to that address\n",
           sf_addr_format(&from, where, sizeof(where)));
    if (n > 0)
        sf_sendto(&srv, sfd, buf, (size_t)n, &from);
    n = sf_recvfrom(&cli, cfd, buf, sizeof(buf), NULL, NULL);
    printf("   the client got back %zd bytes: %.*s", n, (int)(n > 0 ? n : 0), buf);
    sf_close(&cli, cfd);
    sf_close(&srv, sfd);
    return EXIT_OK;
}

int
cmd_demo(int argc, char **argv)
{
    const sf_tracer tr = { print_event, NULL, 0 };
    int rc;

    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        puts("usage: sockflow demo\n\nRuns a TCP and a UDP exchange on loopback and prints"
             " every socket call,\nits result and the TCP state after it.");
        return EXIT_OK;
    }
    if (argc > 1)
        return cmd_usage_error("demo", "unexpected argument '%s'", argv[1]);
    rc = demo_tcp(&tr);
    if (rc == EXIT_OK)
        rc = demo_udp(&tr);
    return rc;
}
