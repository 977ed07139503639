/* connect: `sockflow connect [OPTIONS] HOST PORT` — standard input to the socket, the
 * socket to standard output, like nc; `-z HOST PORTS` scans ports instead (scan.c). */
#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "connect.h"
#include "program.h"

static const char connect_usage[] =
    "usage: sockflow connect [OPTIONS] HOST PORT\n"
    "       sockflow connect -z [OPTIONS] HOST PORTS       (also: sockflow HOST PORT)\n"
    "\n"
    "Sends standard input to HOST PORT and prints what comes back, binary-safe.\n"
    "TCP: the directions end apart. At end of input the connection is half-closed (FIN);\n"
    "the server closing first ends only the output, input still goes to it. Exit 0 only\n"
    "when all input reached the server and all of its bytes reached standard output.\n"
    "UDP: each read of input is one datagram.\n"
    "\n"
    "  -u, --udp            UDP instead of TCP\n"
    "  -4 / -6              IPv4 / IPv6 only\n"
    "  -n, --numeric        HOST and -s are numeric addresses: no DNS\n"
    "  -w, --wait SECS      TCP: give up connecting after SECS; UDP: after end of input,\n"
    "                       stop once SECS pass with no reply (default 2); -z: per port\n"
    "                       (default 1)\n"
    "  -q, --quit SECS      TCP: quit SECS after end of input, even if the server has\n"
    "                       not closed (default: wait for it)\n"
    "  -i, --idle-timeout SECS  fail (exit 1) after SECS with no traffic either way\n"
    "  -s, --source ADDR[:PORT] bind this local address (and port) first\n"
    "  -p, --source-port PORT   bind this local port first\n"
    "  -C, --crlf           send each LF of input as CRLF\n"
    "  -N                   accepted for nc: end of input always sends FIN here\n"
    "  -v, --verbose        on standard error: the two addresses once connected, the\n"
    "                       byte counts at the end; with -z, every port's result\n"
    "  -z, --scan           scan PORTS (22, 20-25, 1-65535, or a comma list): print the\n"
    "                       open ones; exit 0 when at least one is open\n"
    "      --parallel N     -z: probes in flight at most (default 256)\n"
    "      --json           -z: one JSON object with every port, its state and time\n"
    CMD_TRACE_USAGE
    "  -h, --help\n";

enum { OPT_PARALLEL = 0x100, OPT_JSON };

/* take_option and check_args: go on (anything else is EXIT_USAGE or CMD_HELP). */
enum { GO = 1 };

static const struct option connect_opts[] = {
    { "udp", no_argument, NULL, 'u' },
    { "numeric", no_argument, NULL, 'n' },
    { "wait", required_argument, NULL, 'w' },
    { "quit", required_argument, NULL, 'q' },
    { "idle-timeout", required_argument, NULL, 'i' },
    { "source", required_argument, NULL, 's' },
    { "source-port", required_argument, NULL, 'p' },
    { "crlf", no_argument, NULL, 'C' },
    { "verbose", no_argument, NULL, 'v' },
    { "scan", no_argument, NULL, 'z' },
    { "parallel", required_argument, NULL, OPT_PARALLEL },
    { "json", no_argument, NULL, OPT_JSON },
    { "exec", required_argument, NULL, 'e' },
    { "sh-exec", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static int
all_digits(const char *s)
{
    return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

/* -w, -q, -i: seconds, fractions allowed. Returns GO or EXIT_USAGE. */
static int
take_secs(int ch, const char *arg, long *ms, sf_err *err)
{
    long v = cmd_parse_secs_ms(arg);

    if (v < 0 || v > 0x7fffffff)
        return cmd_parse_error(err, "-%c %s: a number of seconds", ch, arg);
    *ms = v;
    return GO;
}

/* One option. Returns GO, EXIT_USAGE (err set) or CMD_HELP. */
static int
take_option(connect_args *a, int ch, char **argv, sf_err *err)
{
    long v;

    switch (ch) {
    case 'u': a->udp = 1; return GO;
    /* the last of -4 and -6 counts, as in serve and bench */
    case '4': a->flags = (a->flags & ~SF_ADDR_V6ONLY) | SF_ADDR_V4ONLY; return GO;
    case '6': a->flags = (a->flags & ~SF_ADDR_V4ONLY) | SF_ADDR_V6ONLY; return GO;
    case 'n': a->flags |= SF_ADDR_NUMERIC; return GO;
    case 'v': a->verbose = 1; return GO;
    case 'C': a->crlf = 1; return GO;
    case 'N': return GO;
    case 'z': a->scan = 1; return GO;
    case OPT_JSON: a->json = 1; return GO;
    case 's': a->source = optarg; return GO;
    case 'p': a->src_port = optarg; return GO;
    case 'w': return take_secs(ch, optarg, &a->wait_ms, err);
    case 'q': return take_secs(ch, optarg, &a->quit_ms, err);
    case 'i': return take_secs(ch, optarg, &a->idle_ms, err);
    case 'e': case 'c':
        if (a->exec_text || a->shell)
            return cmd_parse_error(err, "-e and -c: give one program");
        *(ch == 'c' ? &a->shell : &a->exec_text) = optarg;
        return GO;
    case OPT_PARALLEL:
        if ((v = cmd_parse_count(optarg, 65535)) < 1)
            return cmd_parse_error(err, "--parallel %s: a number from 1 to 65535", optarg);
        a->parallel = v;
        return GO;
    case 'h':
        return CMD_HELP;
    default:
        if ((v = cmd_trace_take(&a->ct, ch, optarg, err)) < 0)
            return EXIT_USAGE;
        return v == 0 ? cmd_option_error(ch, argv, err) : GO;
    }
}

/* What the arguments say before anything is resolved: a bad one is a usage error.
 * Returns GO or EXIT_USAGE. */
static int
check_args(connect_args *a, sf_err *err)
{
    size_t n = strlen(a->host);

    if (a->source && all_digits(a->source))
        return cmd_parse_error(err, "-s %s: a source address, not a port (for a "
                               "source port: -s :%s or -p %s)", a->source, a->source,
                               a->source);
    if (a->src_port && !all_digits(a->src_port))
        return cmd_parse_error(err, "-p %s: a port number from 0 to 65535", a->src_port);
    if (a->src_port && sf_addr_parse_port(a->src_port, NULL) < 0)
        return cmd_parse_error(err, "-p %s: a port number from 0 to 65535", a->src_port);
    /* "[::1]" is how an address is written beside a port; getaddrinfo wants ::1 */
    if (n >= 2 && a->host[0] == '[' && a->host[n - 1] == ']') {
        memmove(a->host, a->host + 1, n - 2);
        a->host[n - 2] = '\0';
    }
    if (!a->scan && a->port[0] >= '0' && a->port[0] <= '9' &&
        sf_addr_parse_port(a->port, NULL) < 0)
        return cmd_parse_error(err, "port %s: not a number from 0 to 65535", a->port);
    if (!a->scan && a->port[0] != '\0' && (a->port[0] < '0' || a->port[0] > '9') &&
        getservbyname(a->port, a->udp ? "udp" : "tcp") == NULL)
        return cmd_parse_error(err, "port %s: not a number from 0 to 65535 nor a "
                               "service in /etc/services", a->port);
    if (!a->scan && (a->json || a->parallel))
        return cmd_parse_error(err, "--json and --parallel go with -z");
    if (a->scan && (a->quit_ms >= 0 || a->idle_ms > 0 || a->crlf))
        return cmd_parse_error(err, "-q, -i and -C are for a connection, not -z");
    if ((a->exec_text || a->shell) && (a->udp || a->scan))
        return cmd_parse_error(err, "-e/-c: TCP or Unix stream only, not -u or -z");
    if (a->scan && a->ct.on)
        return cmd_parse_error(err, "-z does not trace: its probes are many "
                               "connects at once");
    return GO;
}

int
connect_parse(int argc, char **argv, connect_args *a, sf_err *err)
{
    int ch, rc;

    *a = (connect_args){ .wait_ms = -1, .quit_ms = -1, .ct.cmd = "connect" };
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":u46nw:q:i:s:p:e:c:CNvzh", connect_opts,
                             NULL)) != -1) {
        if ((rc = take_option(a, ch, argv, err)) != GO)
            return rc;
    }
    /* unix:/path and unix:@name stand alone: no port */
    if (argc - optind != 2 && !(argc - optind == 1 && !a->scan &&
                                sf_addr_is_unix(argv[optind])))
        return cmd_parse_error(err, a->scan ? "expected HOST PORTS"
                                            : "expected HOST PORT (or unix:/PATH)");
    if (strlen(argv[optind]) >= sizeof(a->host))
        return cmd_parse_error(err, "host %.40s...: too long", argv[optind]);
    snprintf(a->host, sizeof(a->host), "%s", argv[optind]);
    a->port = argc - optind == 2 ? argv[optind + 1] : "";
    if (a->udp)
        a->flags |= SF_ADDR_DGRAM;
    rc = check_args(a, err);
    return rc == GO ? 0 : rc;
}

int
connect_source(const connect_args *a, const sf_addr *dst, sf_addr *src)
{
    char host[256], port[64];
    int fam = sf_addr_family(dst) == AF_INET6 ? SF_ADDR_V6ONLY : SF_ADDR_V4ONLY;
    sf_addr_list l;
    sf_err err;

    if (a->source == NULL && a->src_port == NULL)
        return 0;
    host[0] = port[0] = '\0';
    if (a->source && sf_addr_split(a->source, host, sizeof(host), port, sizeof(port),
                                   &err) < 0)
        return -cmd_usage_error("connect", "-s %s", err.msg);
    if (port[0] && a->src_port)
        return -cmd_usage_error("connect", "-s %s and -p %s: two source ports", a->source,
                                a->src_port);
    if (port[0] && sf_addr_parse_port(port, NULL) < 0)
        return -cmd_usage_error("connect", "-s %s: port %s: not a number from 0 to 65535",
                                a->source, port);
    if (a->src_port)
        snprintf(port, sizeof(port), "%s", a->src_port);
    if (sf_addr_resolve(host, port[0] ? port : "0",
                        (a->flags & ~(SF_ADDR_V4ONLY | SF_ADDR_V6ONLY)) | fam |
                        SF_ADDR_PASSIVE, &l, &err) < 0)
        return -cmd_fail("source: %s", err.msg);
    *src = l.a[0];
    return 1;
}

static double
secs_since(const struct timespec *t0)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* -v: "connected 127.0.0.1:51234 -> 127.0.0.1:7007" */
static void
say_connected(const connect_args *a, int fd, const char *peer)
{
    char local[SF_ADDR_STRLEN];
    sf_addr l;

    if (!a->verbose)
        return;
    if (sf_local_addr(fd, &l) < 0)
        snprintf(local, sizeof(local), "?");
    else
        sf_addr_format(&l, local, sizeof(local));
    fprintf(stderr, "connected %s -> %s%s\n", local, peer, a->udp ? " (udp)" : "");
}

/* socket → [bind] → connect, over TCP (every address in turn) or UDP. Returns the fd,
 * or minus the exit status (the message printed). */
static int
dial(const connect_args *a, const sf_trace *t, char *peer, size_t peerlen)
{
    sf_addr src, pa;
    sf_addr_list dst;
    sf_err err;
    int fd, rc;

    if (sf_addr_resolve(a->host, a->port, a->flags, &dst, &err) < 0)
        return -cmd_fail("%s", err.msg);
    if ((rc = connect_source(a, &dst.a[0], &src)) < 0)
        return rc;
    if (a->udp)
        fd = sf_udp_connect(t, &dst.a[0], rc ? &src : NULL, 1, &err);
    else
        fd = sf_tcp_connect_list(t, &dst, rc ? &src : NULL, (int)a->wait_ms, 1, &err);
    if (fd < 0)
        return -cmd_fail("%s", err.msg);
    if (a->udp || sf_peer_addr(fd, &pa) < 0)
        pa = dst.a[0];
    sf_addr_format(&pa, peer, peerlen);
    return fd;
}

/* The port dialled, known before the first call so --wire captures from the SYN on. */
static uint16_t
dialled_port(const connect_args *a)
{
    struct servent *se;
    int port = sf_addr_parse_port(a->port, NULL);

    if (port >= 0)
        return (uint16_t)port;
    se = getservbyname(a->port, a->udp ? "udp" : "tcp");
    return se ? ntohs((uint16_t)se->s_port) : 0;
}

/* -e/-c: the program talks on the socket instead of the relay. */
static int
run_program(const connect_args *a, int fd)
{
    sf_spawn_cmd prog = { .shell = a->shell };
    sf_err err;
    int rc;

    if (a->exec_text && sf_spawn_cmd_split(&prog, a->exec_text, &err) < 0) {
        close(fd);
        return cmd_usage_error("connect", "%s", err.msg);
    }
    rc = cmd_run_program(&prog, fd, a->verbose);
    sf_spawn_cmd_free(&prog);
    return rc;
}

static int
relay(connect_args *a)
{
    sf_relay_stats st = { 0 };
    sf_relay_opts ro = { .in_fd = 0, .out_fd = 1, .quit_after_eof_ms = (int)a->quit_ms,
                         .udp_wait_ms = a->udp && a->wait_ms >= 0 ? (int)a->wait_ms : 2000,
                         .udp = a->udp, .idle_ms = (int)a->idle_ms, .crlf = a->crlf,
                         .stats = &st };
    sf_trace tr = { NULL, "client", 0 };
    char peer[SF_ADDR_STRLEN];
    struct timespec t0;
    sf_err err;
    int fd, rc;

    a->ct.port = dialled_port(a);
    if ((rc = cmd_trace_open(&a->ct)) != 0)
        return rc;
    if ((tr.tracer = cmd_tracer(&a->ct)) != NULL)
        ro.trace = &tr;
    fd = dial(a, ro.trace, peer, sizeof(peer));
    if (fd < 0) {
        cmd_trace_close(&a->ct);
        return -fd;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    say_connected(a, fd, peer);
    if (a->exec_text || a->shell) {
        rc = run_program(a, fd);
        cmd_trace_close(&a->ct);
        return rc;
    }
    /* A reader of our output that goes away ends us quietly, not by SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    ro.sock_fd = fd;
    ro.peer = peer;
    rc = sf_relay(&ro, &err);
    sf_close(ro.trace, fd);
    cmd_trace_close(&a->ct);
    if (a->verbose)
        fprintf(stderr, "sent %llu bytes, received %llu bytes in %.3f s\n",
                (unsigned long long)st.sent, (unsigned long long)st.received,
                secs_since(&t0));
    if (rc < 0)
        return cmd_fail("%s", err.msg);
    return EXIT_OK;
}

int
cmd_connect(int argc, char **argv)
{
    connect_args a;
    sf_err err;
    int rc = connect_parse(argc, argv, &a, &err);

    if (rc == CMD_HELP) {
        fputs(connect_usage, stdout);
        return EXIT_OK;
    }
    if (rc != 0)
        return cmd_usage_error("connect", "%s", err.msg);
    return a.scan ? connect_scan(&a) : relay(&a);
}
