/* listen: `sockflow listen [OPTIONS] [ADDR:]PORT` — the listening side of connect, as
 * nc -l / nc -lk / ncat --broker / ncat -e: socket, bind, listen, accept, then standard
 * input to the client and the client to standard output. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"
#include "listen.h"
#include "passed.h"
#include "program.h"
#include "sockflow/activate.h"

static const char listen_usage[] =
    "usage: sockflow listen [OPTIONS] [ADDR:]PORT\n"
    "       sockflow listen [OPTIONS] unix:/PATH | unix:@NAME\n"
    "\n"
    "Waits for one client on PORT (loopback unless -l says otherwise), then sends it\n"
    "standard input and prints what it sends, binary-safe. End of input sends FIN; the\n"
    "client's FIN ends the output. Port 0 picks a free port; the 'listening on' line\n"
    "(on standard error) says which.\n"
    "\n"
    "  -l, --listen ADDR     listen on ADDR (0.0.0.0 or :: reach other hosts: warned)\n"
    "  -4 / -6               IPv4 / IPv6 only\n"
    "  -u, --udp             UDP: print each datagram, send input to the sender of the\n"
    "                        last one\n"
    "  -k, --keep-open       after a client leaves, wait for the next (one at a time)\n"
    "      --broker          relay between all connected clients: what one sends, the\n"
    "                        others get (standard input and output are not used)\n"
    "  -e, --exec 'PROG ARGS'  run PROG for each client, the socket as its standard\n"
    "                        input and output (split at blanks, no shell)\n"
    "  -c, --sh-exec 'CMD'   the same with /bin/sh -c CMD\n"
    "      --inetd           the client is already connected on standard input (inetd\n"
    "                        nowait, systemd Accept=yes): check it and run -e/-c for it\n"
    "      --max-conns N      -e/-c and --broker: at most N clients at once (100)\n"
    CMD_ACCESS_USAGE
    "  -v, --verbose         say who connects and how each program ended\n"
    CMD_TRACE_USAGE
    "  -h, --help\n"
    "Sockets passed by systemd (LISTEN_FDS) are used instead of binding.\n"
    "SIGTERM or SIGHUP: accept no more, let the present client(s) finish; again: at once.\n";

enum { OPT_BROKER = 256, OPT_INETD, OPT_MAX_CONNS };

static const struct option listen_opts[] = {
    { "listen", required_argument, NULL, 'l' },
    { "udp", no_argument, NULL, 'u' },
    { "keep-open", no_argument, NULL, 'k' },
    { "exec", required_argument, NULL, 'e' },
    { "sh-exec", required_argument, NULL, 'c' },
    { "broker", no_argument, NULL, OPT_BROKER },
    { "inetd", no_argument, NULL, OPT_INETD },
    { "max-conns", required_argument, NULL, OPT_MAX_CONNS },
    CMD_ACCESS_LONGOPTS,
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/* ---- signals: one byte each through a pipe; the hard stop in the handler itself ---- */

static int sig_wfd = -1;
static volatile sig_atomic_t stops_seen;
/* While the relay runs, nothing reads the pipe: a second signal ends us from the
 * handler, removing our socket file first (unlink and _exit are async-signal-safe). */
static volatile sig_atomic_t hard_stop_in_handler;
static char unlink_at_exit[sizeof(((struct sockaddr_un *)0)->sun_path)];

static void
on_signal(int signo)
{
    unsigned char b = (unsigned char)signo;
    int e = errno;

    if (signo != SIGCHLD && hard_stop_in_handler &&
        (signo == SIGINT || stops_seen++ >= 1)) {
        if (unlink_at_exit[0])
            unlink(unlink_at_exit);
        _exit(EXIT_OK);
    }
    (void)!write(sig_wfd, &b, 1);
    errno = e;
}

static int
catch_signals(listen_conf *c)
{
    static const int sigs[] = { SIGTERM, SIGHUP, SIGINT, SIGCHLD };
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    int p[2];

    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return cmd_fail("listen: pipe: %s", strerror(errno));
    sig_wfd = p[1];
    c->sigfd = p[0];
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    /* A reader of our output or a client that goes away is an error to handle, not a
     * signal that kills. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int
listen_take_signals(listen_conf *c, int *child)
{
    unsigned char b[64];
    ssize_t n;
    int verdict = 0;

    while ((n = read(c->sigfd, b, sizeof(b))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (b[i] == SIGCHLD)
                *child = 1;
            else if (b[i] == SIGINT || stops_seen++ >= 1)
                verdict = 2;
            else if (verdict < 1)
                verdict = 1;
        }
    }
    return verdict;
}

int
listen_admit(listen_conf *c, const sf_addr *peer)
{
    char line[SF_ADDR_STRLEN + 160];
    int rc;

    if (!sf_access_active(c->access))
        return 1;
    rc = sf_access_admit(c->access, peer);
    if (rc == SF_ACCESS_OK)
        return 1;
    if (sf_access_refusal_line(c->access, peer, rc, line, sizeof(line)))
        cmd_log("%s", line);
    return 0;
}

/* ---- options ---- */

static int
take_exec(listen_conf *c, int ch, const char *arg)
{
    sf_err err;

    if (c->exec)
        return cmd_usage_error("listen", "-e and -c: give one program");
    c->exec = 1;
    if (ch == 'c') {
        c->cmd.shell = arg;
        return 0;
    }
    if (sf_spawn_cmd_split(&c->cmd, arg, &err) < 0)
        return cmd_usage_error("listen", "%s", err.msg);
    return 0;
}

static int
take_option(listen_conf *c, int ch, char **argv)
{
    long v;

    switch (ch) {
    case 'l': c->addr_opt = optarg; return 0;
    case 'u': c->udp = 1; return 0;
    case 'k': c->keep = 1; return 0;
    case 'v': c->verbose = 1; return 0;
    case '4': c->family_flags = SF_ADDR_V4ONLY; return 0;
    case '6': c->family_flags = SF_ADDR_V6ONLY; return 0;
    case OPT_BROKER: c->broker = 1; return 0;
    case OPT_INETD: c->inetd = 1; return 0;
    case 'e': case 'c': return take_exec(c, ch, optarg);
    case OPT_MAX_CONNS:
        if ((v = cmd_parse_count(optarg, 1 << 20)) < 1)
            return cmd_usage_error("listen", "--max-conns %s: a positive number", optarg);
        c->max_conns = (int)v;
        return 0;
    default:
        if ((v = cmd_access_option(&c->ca, "listen", ch, optarg)) != 0)
            return v < 0 ? (int)-v : 0;
        if ((v = cmd_trace_option(&c->ct, "listen", ch, optarg)) < 0)
            return EXIT_USAGE;
        return v == 0 ? cmd_bad_option("listen", ch, argv) : 0;
    }
}

static int
check_combination(const listen_conf *c)
{
    if (c->broker && (c->exec || c->udp))
        return cmd_usage_error("listen", "--broker relays TCP or Unix stream clients; "
                               "not with %s", c->exec ? "-e/-c" : "-u");
    if (c->inetd && !c->exec)
        return cmd_usage_error("listen", "--inetd: the client is standard input; name the "
                               "program to run for it with -e or -c");
    if (c->exec && c->udp)
        return cmd_usage_error("listen", "-e/-c run a program per connection: TCP or Unix "
                               "stream only");
    return 0;
}

static int
parse_opts(listen_conf *c, int argc, char **argv)
{
    int ch, rc;

    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":l:uk46e:c:vh", listen_opts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(listen_usage, stdout);
            return -1;
        }
        if ((rc = take_option(c, ch, argv)) != 0)
            return rc;
    }
    if (argc - optind > 1)
        return cmd_usage_error("listen", "expected one [ADDR:]PORT, got %s and %s",
                               argv[optind], argv[optind + 1]);
    c->target = optind < argc ? argv[optind] : NULL;
    if (c->target == NULL && !c->inetd && getenv("LISTEN_FDS") == NULL)
        return cmd_usage_error("listen", "expected [ADDR:]PORT (0: any free port)");
    return check_combination(c);
}

/* ---- the listening socket ---- */

/* The address to bind: the target's host, else -l, else loopback. */
static int
bind_address(const listen_conf *c, sf_addr *a)
{
    int flags = SF_ADDR_PASSIVE | c->family_flags | (c->udp ? SF_ADDR_DGRAM : 0);
    char host[256], port[64];
    const char *h;
    sf_addr_list l;
    sf_err err;

    if (sf_addr_is_unix(c->target) || (c->target == NULL && sf_addr_is_unix(c->addr_opt))) {
        if (sf_addr_parse_unix(c->target ? c->target : c->addr_opt, a, &err) < 0)
            return cmd_usage_error("listen", "%s", err.msg);
        return 0;
    }
    if (sf_addr_split(c->target, host, sizeof(host), port, sizeof(port), &err) < 0)
        return cmd_usage_error("listen", "%s", err.msg);
    if (port[0] == '\0') {      /* "7007": a port alone */
        snprintf(port, sizeof(port), "%.63s", host);
        host[0] = '\0';
    }
    if (sf_addr_parse_port(port, &err) < 0)
        return cmd_usage_error("listen", "%s", err.msg);
    h = host[0] ? host : c->addr_opt ? c->addr_opt
      : c->family_flags == SF_ADDR_V6ONLY ? "::1" : "127.0.0.1";
    if (sf_addr_resolve(h, port, flags, &l, &err) < 0)
        return cmd_fail("listen: %s", err.msg);
    *a = l.a[0];
    return 0;
}

static const char *
kind_name(int family, int udp)
{
    if (family == AF_UNIX)
        return udp ? "unix-dgram" : "unix-stream";
    return udp ? "udp" : "tcp";
}

/* A socket passed by systemd (LISTEN_FDS) of the type asked for, if any: 1 taken, 0
 * none passed, or an exit status. */
static int
take_passed(listen_conf *c)
{
    sf_passed p[SF_PASSED_MAX];
    sf_err err;
    int n = sf_activation_take(p, SF_PASSED_MAX, &err);

    if (n < 0)
        return -cmd_fail("%s", err.msg);
    for (int i = 0; i < n; i++) {
        if (p[i].type == SOCK_DGRAM)
            c->udp = 1;
        else if (!p[i].listening)
            continue;
        c->lfd = p[i].fd;
        for (int j = 0; j < n; j++)
            if (j != i)
                close(p[j].fd);
        sf_local_addr(c->lfd, &c->bound);
        sf_set_nonblock(c->lfd, 1);
        return 1;
    }
    if (n > 0)
        return -cmd_fail("LISTEN_FDS: none of the %d passed sockets is a listening or "
                         "datagram socket", n);
    return 0;
}

static int
open_listener(listen_conf *c)
{
    sf_listen_opts lo = { 0 };
    sf_err err;
    int rc = take_passed(c);

    if (rc < 0)
        return -rc;
    if (rc == 0) {
        if ((rc = bind_address(c, &c->bound)) != 0)
            return rc;
        c->lfd = c->udp ? sf_udp_bind(c->t, &c->bound, &lo, &err)
                        : sf_tcp_listen(c->t, &c->bound, &lo, &err);
        if (c->lfd == -EACCES && sf_addr_port(&c->bound) > 0 && sf_addr_port(&c->bound) < 1024)
            return cmd_fail("%s (ports below 1024 need privilege: run as root, with "
                            "--user to drop it after binding)", err.msg);
        if (c->lfd == -EADDRINUSE)
            return cmd_fail("%s (another server is running there)", err.msg);
        if (c->lfd < 0)
            return cmd_fail("%s", err.msg);
        sf_local_addr(c->lfd, &c->bound);
        if (sf_addr_unix_path(&c->bound))
            snprintf(unlink_at_exit, sizeof(unlink_at_exit), "%s",
                     sf_addr_unix_path(&c->bound));
    }
    return 0;
}

static void
announce(const listen_conf *c)
{
    char where[SF_ADDR_STRLEN];

    sf_addr_format(&c->bound, where, sizeof(where));
    if (sf_addr_is_wildcard(&c->bound))
        cmd_log("warning: %s listens on every address of this host: other hosts can "
                "reach it", where);
    fprintf(stderr, "listening on %s %s\n", kind_name(sf_addr_family(&c->bound), c->udp),
            where);
    fflush(stderr);
}

/* ---- one client at a time: the relay ---- */

/* Wait for a client or a signal. The fd, SF_EAGAIN to look again, or -1 to stop. */
static int
wait_client(listen_conf *c, sf_addr *peer)
{
    struct pollfd p[2] = { { .fd = c->lfd, .events = POLLIN },
                           { .fd = c->sigfd, .events = POLLIN } };
    int child = 0, fd;

    if (poll(p, 2, -1) < 0)
        return errno == EINTR ? SF_EAGAIN : -1;
    if ((p[1].revents & POLLIN) && listen_take_signals(c, &child) > 0)
        return -1;
    if (!(p[0].revents & POLLIN))
        return SF_EAGAIN;
    fd = sf_tcp_accept(c->t, c->lfd, peer);
    if (fd < 0 && fd != SF_EAGAIN) {
        char where[SF_ADDR_STRLEN];

        cmd_log("accept %s: %s", sf_addr_format(&c->bound, where, sizeof(where)),
                sf_strerror(fd));
        /* out of descriptors: a pause rather than a spin on a listener that stays ready */
        poll(NULL, 0, 100);
        return SF_EAGAIN;
    }
    return fd;
}

static int
relay_client(listen_conf *c, int fd, const sf_addr *peer)
{
    char who[SF_ADDR_STRLEN];
    sf_relay_opts ro = { .in_fd = 0, .out_fd = 1, .sock_fd = fd, .quit_after_eof_ms = -1,
                         .udp_wait_ms = -1, .peer = who, .trace = c->t };
    sf_err err;
    int rc;

    sf_addr_format(peer, who, sizeof(who));
    if (c->verbose)
        cmd_log("connection from %s", who);
    hard_stop_in_handler = 1;
    rc = sf_relay(&ro, &err);
    hard_stop_in_handler = 0;
    sf_close(c->t, fd);
    if (rc < 0)
        cmd_log("%s", err.msg);
    return rc;
}

static int
run_relay(listen_conf *c)
{
    int served = 0, rc;

    while (!served || (c->keep && stops_seen == 0)) {
        sf_addr peer;
        int fd = wait_client(c, &peer);

        if (fd == -1)
            break;
        if (fd == SF_EAGAIN)
            continue;
        if (!listen_admit(c, &peer)) {
            sf_close(c->t, fd);
            continue;
        }
        served = 1;
        rc = relay_client(c, fd, &peer);
        sf_access_release(c->access, &peer);
        if (rc < 0 && !c->keep)
            return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* ---- inetd: the client is standard input ---- */

static int
run_inetd(listen_conf *c)
{
    sf_addr peer;
    int fd, rc;

    if ((rc = cmd_inetd_take_stdin(&fd)) != 0)
        return rc;
    if (sf_peer_addr(fd, &peer) < 0)
        return cmd_fail("--inetd: getpeername: %s", strerror(errno));
    if (!listen_admit(c, &peer))
        return EXIT_FAIL;
    return cmd_run_program(&c->cmd, fd, c->verbose);
}

/* ---- the command ---- */

static int
run(listen_conf *c)
{
    int rc;

    if ((rc = catch_signals(c)) != 0)
        return rc;
    if (c->inetd)
        return run_inetd(c);
    if ((rc = open_listener(c)) != 0)
        return rc;
    if ((rc = cmd_access_drop_privileges(&c->ca)) != 0)
        return rc;
    announce(c);
    if (c->udp)
        return listen_run_udp(c);
    if (c->exec)
        return listen_run_exec(c);
    if (c->broker)
        return listen_run_broker(c);
    return run_relay(c);
}

int
cmd_listen(int argc, char **argv)
{
    listen_conf c = { .lfd = -1, .sigfd = -1 };
    int rc;

    c.tr = (sf_trace){ NULL, "server", 0 };
    if ((rc = cmd_access_init(&c.ca)) != 0)
        return rc;
    c.access = c.ca.access;
    rc = parse_opts(&c, argc, argv);
    if (rc == 0 && (rc = cmd_trace_open(&c.ct)) == 0) {
        if ((c.tr.tracer = cmd_tracer(&c.ct)) != NULL)
            c.t = &c.tr;
        if (c.max_conns == 0)
            c.max_conns = LISTEN_MAX_CONNS_DEFAULT;
        rc = run(&c);
    }
    if (c.lfd >= 0)
        sf_close(c.t, c.lfd);
    if (unlink_at_exit[0])
        sf_unix_unlink(&c.bound);
    cmd_trace_close(&c.ct);
    sf_spawn_cmd_free(&c.cmd);
    cmd_access_free(&c.ca);
    return rc < 0 ? EXIT_OK : rc;
}
