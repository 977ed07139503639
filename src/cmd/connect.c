/* connect: `sockflow connect [-u] [-4|-6] [-w SECS] [-q SECS] [-s SRC[:PORT]] HOST PORT`
 * — standard input to the socket, the socket to standard output, like nc. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "traceopt.h"

static const char connect_usage[] =
    "usage: sockflow connect [OPTIONS] HOST PORT\n"
    "\n"
    "Sends standard input to HOST PORT and prints what comes back, binary-safe.\n"
    "TCP: at end of input the connection is half-closed (FIN) and the reply is printed\n"
    "until the server closes. UDP: each read of input is one datagram.\n"
    "\n"
    "  -u, --udp            UDP instead of TCP\n"
    "  -4 / -6              IPv4 / IPv6 only\n"
    "  -w, --wait SECS      TCP: give up connecting after SECS; UDP: after end of input,\n"
    "                       stop once SECS pass with no reply (default 2)\n"
    "  -q, --quit SECS      TCP: quit SECS after end of input, even if the server has\n"
    "                       not closed (default: wait for it)\n"
    "  -s, --source SRC[:PORT]  bind this local address (and port) first\n"
    CMD_TRACE_USAGE
    "  -h, --help\n";

static const struct option connect_opts[] = {
    { "udp", no_argument, NULL, 'u' },
    { "wait", required_argument, NULL, 'w' },
    { "quit", required_argument, NULL, 'q' },
    { "source", required_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/* The source address in the family of the first destination. */
static int
resolve_source(const char *text, int flags, sf_addr *src)
{
    sf_addr_list l;
    sf_err err;

    if (sf_addr_resolve_text(text, "0", flags | SF_ADDR_PASSIVE, &l, &err) < 0)
        return cmd_fail("source: %s", err.msg);
    *src = l.a[0];
    return 0;
}

int
cmd_connect(int argc, char **argv)
{
    sf_relay_opts ro = { .in_fd = 0, .out_fd = 1, .quit_after_eof_ms = -1,
                         .udp_wait_ms = 2000 };
    const char *source = NULL;
    cmd_trace ct = { 0 };
    sf_trace tr = { NULL, "client", 0 };
    const sf_trace *t = NULL;
    int flags = 0, udp = 0, ch, fd, rc;
    long wait_ms = -1, v;
    char peer[SF_ADDR_STRLEN];
    sf_addr src;
    sf_addr_list dst;
    sf_err err;

    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":u46w:q:s:h", connect_opts, NULL)) != -1) {
        switch (ch) {
        case 'u': udp = 1; break;
        case '4': flags |= SF_ADDR_V4ONLY; break;
        case '6': flags |= SF_ADDR_V6ONLY; break;
        case 's': source = optarg; break;
        case 'h': fputs(connect_usage, stdout); return EXIT_OK;
        case 'w': case 'q':
            if ((v = cmd_parse_secs_ms(optarg)) < 0 || v > 0x7fffffff)
                return cmd_usage_error("connect", "-%c %s: a number of seconds", ch, optarg);
            if (ch == 'w')
                wait_ms = v;
            else
                ro.quit_after_eof_ms = (int)v;
            break;
        default:
            if ((v = cmd_trace_option(&ct, "connect", ch, optarg)) < 0)
                return EXIT_USAGE;
            if (v == 0)
                return cmd_bad_option("connect", ch, argv);
            break;
        }
    }
    if (argc - optind != 2)
        return cmd_usage_error("connect", "expected HOST PORT");
    if (udp)
        flags |= SF_ADDR_DGRAM;
    if (sf_addr_resolve(argv[optind], argv[optind + 1], flags, &dst, &err) < 0)
        return cmd_fail("%s", err.msg);
    if (source && resolve_source(source, flags | (sf_addr_family(&dst.a[0]) == AF_INET6
                                                  ? SF_ADDR_V6ONLY : SF_ADDR_V4ONLY), &src))
        return EXIT_FAIL;
    ct.port = (uint16_t)sf_addr_port(&dst.a[0]);   /* what --wire captures */
    if ((rc = cmd_trace_open(&ct)) != 0)
        return rc;
    if ((tr.tracer = cmd_tracer(&ct)) != NULL)
        t = &tr;
    if (udp) {
        fd = sf_udp_connect(t, &dst.a[0], source ? &src : NULL, 1, &err);
        if (wait_ms >= 0)
            ro.udp_wait_ms = (int)wait_ms;
        sf_addr_format(&dst.a[0], peer, sizeof(peer));
    } else {
        fd = sf_tcp_connect_list(t, &dst, source ? &src : NULL, (int)wait_ms, 1, &err);
    }
    if (fd < 0) {
        cmd_trace_close(&ct);
        return cmd_fail("%s", err.msg);
    }
    if (!udp) {
        sf_addr a;

        sf_peer_addr(fd, &a);
        sf_addr_format(&a, peer, sizeof(peer));
    }
    /* A reader of our output that goes away ends us quietly, not by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    ro.sock_fd = fd;
    ro.udp = udp;
    ro.peer = peer;
    ro.trace = t;
    rc = sf_relay(&ro, &err);
    sf_close(t, fd);
    cmd_trace_close(&ct);
    if (rc < 0)
        return cmd_fail("%s", err.msg);
    return EXIT_OK;
}
