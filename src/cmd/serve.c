/* serve: `sockflow serve [-l ADDR]... [-t|-u] [-j N] SERVICE[:PORT]...` */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passed.h"
#include "serve.h"

static const char serve_usage[] =
    "usage: sockflow serve [OPTIONS] SERVICE[:PORT]...\n"
    "\n"
    "Services (TCP and UDP unless told):\n"
    "  echo      RFC 862  everything back                          port 7\n"
    "  discard   RFC 863  read and dropped                         port 9\n"
    "  chargen   RFC 864  lines of 72 characters until you go      port 19\n"
    "  daytime   RFC 867  the date and time, one line              port 13\n"
    "  time      RFC 868  seconds since 1900, 4 bytes big-endian   port 37\n"
    "  chat      lines relayed between the clients (TCP only)      a free port\n"
    "  exec:PORT=PROGRAM [ARGS]  PROGRAM for each TCP client, the socket as its\n"
    "            standard input and output (quote it: one word; split at blanks)\n"
    "Without :PORT a service takes its well-known port (below 1024: needs root);\n"
    "port 0 lets the kernel pick a free one, printed on the 'listening on' line.\n"
    "\n"
    "  -l, --listen ADDR      listen on ADDR (repeatable; default 127.0.0.1 and ::1;\n"
    "                         0.0.0.0: every IPv4 address, ::: every IPv6 one;\n"
    "                         unix:/PATH or unix:@NAME: stream services on a Unix socket)\n"
    "  -t, --tcp              TCP only          -u, --udp     UDP only\n"
    "  -4                     IPv4 only         -6            IPv6 only\n"
    "  -j, --loops N          event loops, one thread each (default 1)\n"
    "      --backlog N        listen() backlog (default 511)\n"
    "      --max-conns N      at most N clients; more are closed at once (default: no limit)\n"
    "      --queue-cap SIZE   output queued per client before reading it stops (256k);\n"
    "                         its kernel send buffer too (at least 1m)\n"
    "      --idle-timeout S   close a client silent S seconds (default 300; 0 never)\n"
    "      --send-timeout S   close a client that reads nothing for S seconds (default 60)\n"
    "      --drain-timeout S  after SIGTERM, time for clients to finish (default 10)\n"
    "      --dgram-max SIZE   largest datagram taken whole; bigger are dropped (65536)\n"
    "      --no-io-uring      every TCP client on epoll (by default echo, discard,\n"
    "                         daytime and time use io_uring where the kernel allows)\n"
    "      --no-udp-gso       every UDP reply sent on its own (by default replies to one\n"
    "                         peer in one batch leave as one UDP_SEGMENT send)\n"
    "UDP is never answered to a classic service's port (7 9 13 19 37), to broadcast,\n"
    "multicast or unspecified addresses, nor larger than 512 bytes to a smaller request:\n"
    "      --allow-low-ports  answer source ports below 1024 (by default: not)\n"
    "      --udp-rate N[/s]   replies a second to one source (default 1000; 0: no limit,\n"
    "                         which lets a loop between two servers run for ever)\n"
    "      --udp-burst N      replies one source may have at once (default 10: a loop\n"
    "                         between two servers dies within about 20 datagrams)\n"
    "      --udp-sources N    sources tracked, all loops together (default 4096)\n"
    CMD_ACCESS_USAGE
    "  -q, --quiet            log nothing but errors\n"
    "      --inetd            serve the one connection on standard input (inetd nowait,\n"
    "                         systemd Accept=yes) with the one SERVICE named, then exit\n"
    CMD_TRACE_USAGE
    "  -h, --help\n"
    "Sockets passed by systemd (LISTEN_FDS) are served instead of binding: by name\n"
    "(FileDescriptorName=echo), else in the order the services are given.\n"
    "SIGTERM or SIGHUP: accept no more, let the clients finish (--drain-timeout).\n";

enum { OPT_BACKLOG = 256, OPT_MAX_CONNS, OPT_QUEUE_CAP, OPT_IDLE, OPT_SEND, OPT_DRAIN,
       OPT_DGRAM_MAX, OPT_LOW_PORTS, OPT_UDP_RATE, OPT_UDP_BURST, OPT_UDP_SOURCES,
       OPT_INETD, OPT_NO_RING, OPT_NO_GSO };

static const struct option serve_opts[] = {
    { "listen", required_argument, NULL, 'l' },
    { "tcp", no_argument, NULL, 't' },
    { "udp", no_argument, NULL, 'u' },
    { "loops", required_argument, NULL, 'j' },
    { "backlog", required_argument, NULL, OPT_BACKLOG },
    { "max-conns", required_argument, NULL, OPT_MAX_CONNS },
    { "queue-cap", required_argument, NULL, OPT_QUEUE_CAP },
    { "idle-timeout", required_argument, NULL, OPT_IDLE },
    { "send-timeout", required_argument, NULL, OPT_SEND },
    { "drain-timeout", required_argument, NULL, OPT_DRAIN },
    { "dgram-max", required_argument, NULL, OPT_DGRAM_MAX },
    { "allow-low-ports", no_argument, NULL, OPT_LOW_PORTS },
    { "udp-rate", required_argument, NULL, OPT_UDP_RATE },
    { "udp-burst", required_argument, NULL, OPT_UDP_BURST },
    { "udp-sources", required_argument, NULL, OPT_UDP_SOURCES },
    { "quiet", no_argument, NULL, 'q' },
    { "inetd", no_argument, NULL, OPT_INETD },
    { "no-io-uring", no_argument, NULL, OPT_NO_RING },
    { "no-udp-gso", no_argument, NULL, OPT_NO_GSO },
    { "help", no_argument, NULL, 'h' },
    CMD_ACCESS_LONGOPTS,
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static void
log_line(void *ud, const char *line)
{
    serve_conf *c = ud;

    if (!c->quiet)
        fprintf(stderr, "sockflow: %s\n", line);
}

/* "echo discard ...": the names in the table, for messages. */
static const char *
service_names(void)
{
    static char names[256];
    size_t off = 0;

    for (int i = 0; sf_services[i] && off < sizeof(names); i++)
        off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? " " : "",
                                sf_services[i]->name);
    return names;
}

/* --udp-rate N or N/s; 0 is no limit. 0, or EXIT_USAGE with err set. */
static int
take_udp_rate(serve_conf *c, const char *arg, sf_err *err)
{
    char num[32];
    size_t n = strcspn(arg, "/");
    long v;

    if (n >= sizeof(num) || (arg[n] && strcmp(arg + n, "/s") != 0))
        return cmd_parse_error(err, "--udp-rate %s: a number a second, such as 100 or "
                               "100/s", arg);
    memcpy(num, arg, n);
    num[n] = '\0';
    if ((v = cmd_parse_count(num, 100000000)) < 0)
        return cmd_parse_error(err, "--udp-rate %s: a number a second, such as 100 or "
                               "100/s", arg);
    c->so.udp_rate = v ? (uint32_t)v : SF_UDP_NO_LIMIT;
    return 0;
}

/* --idle-timeout, --send-timeout, --drain-timeout. 0, or EXIT_USAGE with err set. */
static int
take_timeout(serve_conf *c, int ch, const char *arg, sf_err *err)
{
    long v = cmd_parse_secs_ms(arg);

    if (v < 0 || v > 0xffffffffL)
        return cmd_parse_error(err, "%s %s: a number of seconds", ch == OPT_IDLE
                               ? "--idle-timeout" : ch == OPT_SEND ? "--send-timeout"
                               : "--drain-timeout", arg);
    if (ch == OPT_IDLE)
        c->so.idle_timeout_ms = (uint32_t)v;
    else if (ch == OPT_SEND)
        c->so.send_timeout_ms = (uint32_t)v;
    else
        c->so.drain_timeout_ms = v ? (uint32_t)v : 1;
    return 0;
}

/* The server's numbers: loops, backlog, limits, sizes, the UDP budget, timeouts.
 * 1 taken, 0 not one of them, or -EXIT_USAGE with err set. */
static int
take_number(serve_conf *c, int ch, const char *arg, sf_err *err)
{
    long v;

    switch (ch) {
    case 'j':
        if ((v = cmd_parse_count(arg, 64)) < 1)
            return -cmd_parse_error(err, "-j %s: a number of loops from 1 to 64", arg);
        c->so.loops = (int)v;
        return 1;
    case OPT_BACKLOG:
        if ((v = cmd_parse_count(arg, 1 << 20)) < 1)
            return -cmd_parse_error(err, "--backlog %s: a positive number", arg);
        c->so.backlog = (int)v;
        return 1;
    case OPT_MAX_CONNS:
        if ((v = cmd_parse_count(arg, 1 << 24)) < 0)
            return -cmd_parse_error(err, "--max-conns %s: a number", arg);
        c->so.max_conns = (int)v;
        return 1;
    case OPT_QUEUE_CAP:
        if ((v = cmd_parse_size(arg)) < 1 || v > (1L << 30))
            return -cmd_parse_error(err, "--queue-cap %s: a size such as 256k", arg);
        c->so.queue_cap = (size_t)v;
        return 1;
    case OPT_DGRAM_MAX:
        if ((v = cmd_parse_size(arg)) < 1 || v > 65536)
            return -cmd_parse_error(err, "--dgram-max %s: a size from 1 to 65536", arg);
        c->so.dgram_max = (size_t)v;
        return 1;
    case OPT_UDP_RATE:
        return take_udp_rate(c, arg, err) ? -EXIT_USAGE : 1;
    case OPT_UDP_BURST: case OPT_UDP_SOURCES:
        if ((v = cmd_parse_count(arg, 100000000)) < 1)
            return -cmd_parse_error(err, "%s %s: a positive number", ch == OPT_UDP_BURST
                                    ? "--udp-burst" : "--udp-sources", arg);
        *(ch == OPT_UDP_BURST ? &c->so.udp_burst : &c->so.udp_sources) = (uint32_t)v;
        return 1;
    case OPT_IDLE: case OPT_SEND: case OPT_DRAIN:
        return take_timeout(c, ch, arg, err) ? -EXIT_USAGE : 1;
    default:
        return 0;
    }
}

/* One option: 0 to go on, CMD_HELP, or an exit status with err set. */
static int
take_option(serve_conf *c, int ch, char **argv, sf_err *err)
{
    long v;

    switch (ch) {
    case 'l':
        if (c->nlisten == MAX_ADDRS)
            return cmd_parse_error(err, "at most %d -l addresses", MAX_ADDRS);
        c->listen[c->nlisten++] = optarg;
        return 0;
    case 't': c->protos = SF_PROTO_TCP; return 0;
    case 'u': c->protos = SF_PROTO_UDP; return 0;
    case '4': c->family_flags = SF_ADDR_V4ONLY; return 0;
    case '6': c->family_flags = SF_ADDR_V6ONLY; return 0;
    case 'q': c->quiet = 1; return 0;
    case 'h': return CMD_HELP;
    case OPT_LOW_PORTS: c->so.udp_allow_low_ports = 1; return 0;
    case OPT_INETD: c->inetd = 1; return 0;
    case OPT_NO_RING: c->so.no_ring = 1; return 0;
    case OPT_NO_GSO: c->so.no_udp_gso = 1; return 0;
    }
    if ((v = take_number(c, ch, optarg, err)) != 0 ||
        (v = cmd_access_take(&c->ca, ch, optarg, err)) != 0)
        return v < 0 ? (int)-v : 0;
    if ((v = cmd_trace_take(&c->trace, ch, optarg, err)) < 0)
        return EXIT_USAGE;
    return v == 0 ? cmd_option_error(ch, argv, err) : 0;
}

int
serve_parse(int argc, char **argv, serve_conf *c, sf_err *err)
{
    int ch, rc;

    c->protos = SF_PROTO_TCP | SF_PROTO_UDP;
    c->trace.cmd = "serve";
    c->so.idle_timeout_ms = 300000;
    c->so.send_timeout_ms = 60000;
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":l:tu46j:qh", serve_opts, NULL)) != -1)
        if ((rc = take_option(c, ch, argv, err)) != 0)
            return rc;
    if (optind >= argc)
        return cmd_parse_error(err, "name at least one service (%s)", service_names());
    return 0;
}

/* The addresses to listen on: -l ADDR resolved, or loopback of each family. */
static int
listen_addrs(const serve_conf *c, sf_addr *out, int *n, int *defaulted)
{
    *n = 0;
    *defaulted = c->nlisten == 0;
    if (c->nlisten == 0) {
        if (c->family_flags != SF_ADDR_V6ONLY)
            sf_addr_loopback(&out[(*n)++], AF_INET, 0);
        if (c->family_flags != SF_ADDR_V4ONLY)
            sf_addr_loopback(&out[(*n)++], AF_INET6, 0);
        return 0;
    }
    for (int i = 0; i < c->nlisten; i++) {
        char host[256], port[64];
        sf_addr_list l;
        sf_err err;

        if (sf_addr_is_unix(c->listen[i])) {
            if (sf_addr_parse_unix(c->listen[i], &out[*n], &err) < 0)
                return cmd_usage_error("serve", "%s", err.msg);
            (*n)++;
            continue;
        }
        if (sf_addr_split(c->listen[i], host, sizeof(host), port, sizeof(port), &err) < 0 ||
            sf_addr_resolve(host[0] ? host : "0.0.0.0", "0",
                            SF_ADDR_PASSIVE | c->family_flags, &l, &err) < 0)
            return cmd_fail("listen: %s", err.msg);
        if (port[0] != '\0')
            return cmd_usage_error("serve", "-l %s: give the port with the service "
                                   "(echo:PORT), not the address", c->listen[i]);
        for (int j = 0; j < l.n && *n < MAX_ADDRS; j++)
            out[(*n)++] = l.a[j];
    }
    return 0;
}

/* SERVICE[:PORT], or exec:PORT=PROGRAM [ARGS], into svc and port. */
static int
parse_spec(serve_conf *c, const char *spec, const sf_service **svc, int *port)
{
    char name[64], portstr[64];
    sf_err err;

    if (sf_svc_exec_is(spec)) {
        if (c->nexec == MAX_ADDRS)
            return cmd_usage_error("serve", "at most %d exec services", MAX_ADDRS);
        if ((*svc = c->execs[c->nexec] = sf_svc_exec_new(spec, port, &err)) == NULL)
            return cmd_usage_error("serve", "%s", err.msg);
        c->nexec++;
        return 0;
    }
    if (sf_addr_split(spec, name, sizeof(name), portstr, sizeof(portstr), &err) < 0)
        return cmd_usage_error("serve", "%s: expected SERVICE[:PORT]", spec);
    *svc = sf_service_find(name);
    if (*svc == NULL)
        return cmd_usage_error("serve", "%s: no such service (%s)", name, service_names());
    *port = (*svc)->port;
    if (portstr[0] && (*port = sf_addr_parse_port(portstr, &err)) < 0)
        return cmd_fail("%s", err.msg);
    return 0;
}

static int
listen_service(sf_server *s, serve_conf *c, const sf_service *svc, int port,
               const sf_addr *addrs, int naddrs, int defaulted)
{
    sf_err err;
    int rc;

    rc = sf_server_listen(s, svc, addrs, naddrs, port, c->protos, &err);
    /* No IPv6 on this host: the default loopback pair falls back to IPv4 alone. */
    if (rc < 0 && defaulted && naddrs == 2 &&
        (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) && err.addr.ss_family == AF_INET6)
        rc = sf_server_listen(s, svc, addrs, 1, port, c->protos, &err);
    /* The well-known ports of the classic services are below 1024: suggest the same
     * number shifted above it (echo 7 -> 7007), as the examples do. */
    if ((rc == -EACCES || rc == -EPERM) && port > 0 && port < 1024)
        return cmd_fail("%s (ports below 1024 need privilege: try %s:%d or another port "
                        "above 1023)", err.msg, svc->name, port + 7000);
    if (rc == -EADDRINUSE)
        return cmd_fail("%s (another server is running there)", err.msg);
    if (rc < 0)
        return cmd_fail("%s", err.msg);
    return 0;
}

/* The services of specs, on the sockets passed by systemd if there are any (*passed
 * set), else each bound at its port on addrs. Every spec is parsed first, so that an
 * exec: service is matched to a passed socket like a built-in one. */
static int
serve_specs(sf_server *s, serve_conf *c, char **specs, int nspecs, const sf_addr *addrs,
            int naddrs, int defaulted, int *passed)
{
    const sf_service *svcs[nspecs > 0 ? nspecs : 1];
    int ports[nspecs > 0 ? nspecs : 1];
    int rc;

    for (int i = 0; i < nspecs; i++) {
        ports[i] = 0;
        if ((rc = parse_spec(c, specs[i], &svcs[i], &ports[i])) != 0)
            return rc;
    }
    if ((rc = cmd_serve_passed(s, svcs, nspecs, passed)) != 0)
        return rc;
    for (int i = 0; i < nspecs && !*passed; i++)
        if ((rc = listen_service(s, c, svcs[i], ports[i], addrs, naddrs, defaulted)) != 0)
            return rc;
    return 0;
}

/* "tcp", "udp", or "unix-stream", "unix-dgram" for a passed Unix socket. */
static const char *
listener_kind(const sf_listener *l)
{
    if (sf_addr_family(&l->addr) == AF_UNIX)
        return l->proto == SF_PROTO_TCP ? "unix-stream" : "unix-dgram";
    return l->proto == SF_PROTO_TCP ? "tcp" : "udp";
}

/* The options, then the addresses to listen on. Returns GO, or the exit status with the
 * message printed (and nothing left to free). */
enum { GO = -1 };

static int
configure(serve_conf *c, int argc, char **argv, sf_addr *addrs, int *naddrs, int *defaulted)
{
    sf_err err;
    int rc;

    if ((rc = cmd_access_init(&c->ca)) != 0)
        return rc;
    c->so.access = c->ca.access;
    rc = serve_parse(argc, argv, c, &err);
    if (rc == CMD_HELP)
        fputs(serve_usage, stdout);
    else if (rc == EXIT_FAIL)
        cmd_fail("%s", err.msg);
    else if (rc != 0)
        cmd_usage_error("serve", "%s", err.msg);
    else if ((rc = listen_addrs(c, addrs, naddrs, defaulted)) == 0)
        return GO;
    /* (a failing listen_addrs has printed why) */
    cmd_access_free(&c->ca);
    return rc == CMD_HELP ? EXIT_OK : rc;
}

/* The "listening on" lines, and a warning when one reaches beyond this host. */
static void
print_listeners(const sf_server *s)
{
    for (int i = 0, warned = 0; i < sf_server_listener_count(s); i++) {
        const sf_listener *l = sf_server_listener(s, i);
        char where[SF_ADDR_STRLEN];

        if (sf_addr_is_wildcard(&l->addr) && !warned++)
            fprintf(stderr, "sockflow: warning: listening on %s: every address of this "
                    "host, other hosts can reach it\n", sf_addr_format(&l->addr, where,
                                                                      sizeof(where)));
        printf("listening on %s %s (%s)\n", listener_kind(l),
               sf_addr_format(&l->addr, where, sizeof(where)), l->svc->name);
    }
    fflush(stdout);
}

int
cmd_serve(int argc, char **argv)
{
    serve_conf c = { 0 };
    sf_addr addrs[MAX_ADDRS];
    sf_server *s = NULL;
    int naddrs = 0, defaulted = 0, passed = 0, rc;
    sf_err err;

    if ((rc = configure(&c, argc, argv, addrs, &naddrs, &defaulted)) != GO)
        return rc;
    c.so.log = log_line;
    c.so.log_ud = &c;
    /* inetd: the connection ends the server, not a drain deadline */
    if (c.inetd && c.so.drain_timeout_ms == 0)
        c.so.drain_timeout_ms = UINT32_MAX;
    if ((rc = cmd_trace_open(&c.trace)) != 0)
        goto out;
    c.so.tracer = cmd_tracer(&c.trace);
    s = sf_server_new(&c.so, &err);
    if (s == NULL) {
        rc = cmd_fail("%s", err.msg);
        goto out;
    }
    if (c.inetd) {
        if ((rc = cmd_serve_inetd(s, argv + optind, argc - optind)) == 0 &&
            (rc = cmd_access_drop_privileges(&c.ca)) == 0)
            rc = sf_server_run(s) < 0 ? cmd_fail("serve: run failed") : EXIT_OK;
        goto out;
    }
    if ((rc = serve_specs(s, &c, argv + optind, argc - optind, addrs, naddrs, defaulted,
                          &passed)) != 0)
        goto out;
    if ((rc = cmd_access_drop_privileges(&c.ca)) != 0)
        goto out;
    print_listeners(s);
    rc = sf_server_run(s);
    if (rc < 0) {
        rc = cmd_fail("serve: %s", sf_strerror(rc));
        goto out;
    }
    rc = EXIT_OK;
out:
    /* the socket files we bound go with us (systemd's stay: they are its) */
    for (int i = 0; s && !passed && i < sf_server_listener_count(s); i++)
        sf_unix_unlink(&sf_server_listener(s, i)->addr);
    sf_server_free(s);
    cmd_trace_close(&c.trace);
    cmd_access_free(&c.ca);
    for (int i = 0; i < c.nexec; i++)
        sf_svc_exec_free(c.execs[i]);
    return rc;
}
