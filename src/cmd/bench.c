/* bench: `sockflow bench echo|connect|stream|udp HOST PORT [OPTIONS]` — drives a server
 * with sf_bench and prints a live line, a table or JSON. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_cmd.h"

static const char bench_usage[] =
    "usage: sockflow bench MODE HOST PORT [OPTIONS]\n"
    "\n"
    "Modes:\n"
    "%s"
    "\n"
    "  -c, --conns N        connections (connect: cycles at once; udp: datagrams in\n"
    "                       flight). Default: %s\n"
    "      --size SIZE      bytes per request or datagram (stream: per write).\n"
    "                       Default: %s\n"
    "  -P, --pipeline N     echo: requests in flight on each connection (default 1)\n"
    "  -d, --duration SECS  measure this long (default 10; with -n, at most 60)\n"
    "  -n, --requests N     stop after N requests\n"
    "  -T, --threads N      threads, one event loop each (default: one per CPU; half\n"
    "                       of them when the target is on this host)\n"
    "      --warmup SECS    run this long first, outside the figures (default 0)\n"
    "  -w, --timeout SECS   a request unanswered this long is a timeout (udp: lost;\n"
    "                       stream: no progress).\n"
    "                       Default: %s\n"
    "      --src LIST       source addresses used round-robin: A, A-B (IPv4 range) or\n"
    "                       A,B,...; 'none' for the kernel's choice. Default for connect\n"
    "                       to 127.x: 127.0.0.2-127.0.0.9 (one source runs out of ports)\n"
    "  -s ADDR              one source address (the same as --src ADDR)\n"
    "      --recv           stream: read what the server sends instead of writing\n"
    "  -i, --interval SECS  a live line every SECS on stderr (default: 1 on a terminal;\n"
    "                       0: none)\n"
    "      --json           one JSON object at the end instead of the table\n"
    "      --json-stream    one JSON object per interval, then the result\n"
    "  -4 / -6              IPv4 / IPv6 only\n"
    CMD_TRACE_USAGE
    "  -h, --help\n"
    "\n"
    "Exit status: 0 when every request was answered, and right; 1 when any was not\n"
    "(errors, timeouts, mismatches, lost datagrams, nothing answered, -n not reached);\n"
    "2 for a usage error. udp: when replies keep coming at a steady rate while\n"
    "datagrams are lost throughout, the table says the server may be rate limiting\n"
    "(sockflow serve answers a source at most --udp-rate times a second).\n";

enum { OPT_WARMUP = 256, OPT_SRC, OPT_SIZE, OPT_RECV, OPT_JSON, OPT_JSON_STREAM };

static const struct option bench_opts[] = {
    { "conns", required_argument, NULL, 'c' },
    { "size", required_argument, NULL, OPT_SIZE },
    { "pipeline", required_argument, NULL, 'P' },
    { "duration", required_argument, NULL, 'd' },
    { "requests", required_argument, NULL, 'n' },
    { "threads", required_argument, NULL, 'T' },
    { "timeout", required_argument, NULL, 'w' },
    { "interval", required_argument, NULL, 'i' },
    { "warmup", required_argument, NULL, OPT_WARMUP },
    { "src", required_argument, NULL, OPT_SRC },
    { "recv", no_argument, NULL, OPT_RECV },
    { "json", no_argument, NULL, OPT_JSON },
    { "json-stream", no_argument, NULL, OPT_JSON_STREAM },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};


static sf_bench *volatile running;

/* "echo connect stream udp" */
static const char *
mode_list(char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; i < sf_bench_mode_count() && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? " " : "", sf_bench_mode_get(i)->name);
    return buf;
}

/* One default of every mode, from the library: "echo 50, connect 50, ...". */
static const char *
mode_defaults(char *buf, size_t len, int which)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; i < sf_bench_mode_count() && o < len; i++) {
        const sf_bench_mode_info *mi = sf_bench_mode_get(i);
        char v[32];

        if (which == 0)
            snprintf(v, sizeof(v), "%d", mi->conns);
        else if (which == 1)
            snprintf(v, sizeof(v), mi->size % 1024 ? "%zu" : "%zuk",
                     mi->size % 1024 ? mi->size : mi->size / 1024);
        else
            snprintf(v, sizeof(v), "%g", mi->timeout_ms / 1000.0);
        o += (size_t)snprintf(buf + o, len - o, "%s%s %s", i ? ", " : "", mi->name, v);
    }
    return buf;
}

/* Each mode's summary, its lines indented under its name. */
static const char *
mode_summaries(char *buf, size_t len)
{
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; i < sf_bench_mode_count() && o < len; i++) {
        const sf_bench_mode_info *mi = sf_bench_mode_get(i);
        const char *p = mi->summary;

        o += (size_t)snprintf(buf + o, len - o, "  %-8s ", mi->name);
        while (*p && o < len) {
            size_t n = strcspn(p, "\n");

            o += (size_t)snprintf(buf + o, len - o, "%.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
            if (*p && o < len)
                o += (size_t)snprintf(buf + o, len - o, "%11s", "");
        }
    }
    return buf;
}

static void
print_usage(void)
{
    char modes[2048], conns[128], size[128], timeout[128];

    printf(bench_usage, mode_summaries(modes, sizeof(modes)),
           mode_defaults(conns, sizeof(conns), 0),
           mode_defaults(size, sizeof(size), 1), mode_defaults(timeout, sizeof(timeout), 2));
}

static void
on_stop_signal(int signo)
{
    (void)signo;
    if (running)
        sf_bench_stop(running);
}

/* ---- options ---- */

/* "A-B", IPv4, appended to c->src: 0, -1 when it is not a range, -2 when the table has
 * no room for it. */
static int
parse_range(const char *text, bench_conf *c)
{
    char a[64], *dash;
    struct in_addr lo, hi;
    uint32_t x, y;

    if (strlen(text) >= sizeof(a))
        return -1;
    strcpy(a, text);
    dash = strchr(a, '-');
    *dash = '\0';
    if (inet_pton(AF_INET, a, &lo) != 1 || inet_pton(AF_INET, dash + 1, &hi) != 1)
        return -1;
    x = ntohl(lo.s_addr);
    y = ntohl(hi.s_addr);
    if (y < x || y - x >= MAX_SRC)
        return -1;
    /* the room left, not only the range's own size: several ranges share the table */
    if (y - x >= (uint32_t)(MAX_SRC - c->o.nsrc))
        return -2;
    for (uint32_t v = x; v <= y; v++) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(v) };

        sf_addr_from_sa(&c->src[c->o.nsrc++], (struct sockaddr *)&sin, sizeof(sin));
    }
    return 0;
}

/* --src: "A", "A-B" (IPv4) or "A,B,...", or "none". */
static int
parse_sources(bench_conf *c, const char *text, sf_err *err)
{
    char buf[4096], *save = NULL;

    if (strcmp(text, "none") == 0)
        return 0;
    if (strlen(text) >= sizeof(buf))
        return cmd_parse_error(err, "--src: too long");
    strcpy(buf, text);
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        sf_addr_list l;
        sf_err rerr;

        if (strchr(item, '-')) {
            int rc = parse_range(item, c);

            if (rc == -2)
                return cmd_parse_error(err, "--src: at most %d addresses", MAX_SRC);
            if (rc < 0)
                return cmd_parse_error(err, "--src %s: a range of at most %d IPv4 "
                                       "addresses, such as 127.0.0.2-127.0.0.9", item, MAX_SRC);
            continue;
        }
        if (c->o.nsrc == MAX_SRC)
            return cmd_parse_error(err, "--src: at most %d addresses", MAX_SRC);
        if (sf_addr_resolve(item, "0", SF_ADDR_NUMERIC | SF_ADDR_PASSIVE, &l, &rerr) < 0)
            return cmd_parse_error(err, "--src %s: %s", item, rerr.msg);
        c->src[c->o.nsrc++] = l.a[0];
    }
    return 0;
}

/* -s: one source address. A size there is the old spelling: say where it went. */
static int
parse_source_flag(bench_conf *c, const char *arg, sf_err *err)
{
    if (cmd_parse_size(arg) >= 0)
        return cmd_parse_error(err, "-s %s: -s is the source address; the size is "
                               "--size %s", arg, arg);
    if (strchr(arg, ',') || strchr(arg, '-'))
        return cmd_parse_error(err, "-s %s: one address; several go in --src", arg);
    if (c->src_text && strcmp(c->src_text, arg) != 0)
        return cmd_parse_error(err, "-s %s: the sources are already --src %s", arg,
                               c->src_text);
    c->src_text = arg;
    return 0;
}

/* -d, -w, -i, --warmup: seconds, fractions allowed. */
static int
parse_secs(bench_conf *c, int ch, const char *arg, sf_err *err)
{
    long v = cmd_parse_secs_ms(arg);

    if (v < 0 || v > 86400000L || ((ch == 'd' || ch == 'w') && v == 0))
        return cmd_parse_error(err, "%s %s: a number of seconds%s",
                               ch == 'd' ? "-d" : ch == 'w' ? "-w" : ch == 'i' ? "-i" : "--warmup",
                               arg, ch == 'd' || ch == 'w' ? ", more than 0" : "");
    if (ch == 'd')
        c->o.duration_ms = (uint64_t)v;
    else if (ch == 'w')
        c->o.timeout_ms = (uint32_t)v;
    else if (ch == 'i')
        c->interval_ms = v;
    else
        c->o.warmup_ms = (uint64_t)v;
    return 0;
}

/* -c, -P, -n, -T and --size: whole numbers in their range. */
static int
parse_number(bench_conf *c, int ch, const char *arg, sf_err *err)
{
    long v;

    switch (ch) {
    case 'c':
        if ((v = cmd_parse_count(arg, 1000000)) < 1)
            return cmd_parse_error(err, "-c %s: a number from 1 to 1000000", arg);
        c->o.conns = (int)v;
        return 0;
    case 'P':
        if ((v = cmd_parse_count(arg, 4096)) < 1)
            return cmd_parse_error(err, "-P %s: a number from 1 to 4096", arg);
        c->o.pipeline = (int)v;
        return 0;
    case 'n':
        if ((v = cmd_parse_count(arg, 1L << 50)) < 1)
            return cmd_parse_error(err, "-n %s: a positive number", arg);
        c->o.requests = (uint64_t)v;
        return 0;
    case 'T':
        if ((v = cmd_parse_count(arg, 256)) < 1)
            return cmd_parse_error(err, "-T %s: a number from 1 to 256", arg);
        c->o.threads = (int)v;
        return 0;
    default:
        if ((v = cmd_parse_size(arg)) < 1 || v > (64L << 20))
            return cmd_parse_error(err, "--size %s: a size from 1 to 64m", arg);
        c->o.size = (size_t)v;
        return 0;
    }
}

/* One option: 0, EXIT_USAGE (err set) or CMD_HELP. */
static int
parse_one(bench_conf *c, int ch, char **argv, sf_err *err)
{
    long v;

    switch (ch) {
    case 'c': case 'P': case 'n': case 'T': case OPT_SIZE:
        return parse_number(c, ch, optarg, err);
    case 'd': case 'w': case 'i': case OPT_WARMUP:
        return parse_secs(c, ch, optarg, err);
    case 's': return parse_source_flag(c, optarg, err);
    case 't':
        return cmd_parse_error(err, "-t: -t means TCP in sockflow; the timeout is "
                               "-w SECS (--timeout)");
    case OPT_SRC: c->src_text = optarg; return 0;
    case OPT_RECV: c->o.recv = 1; return 0;
    case OPT_JSON: c->json = 1; return 0;
    case OPT_JSON_STREAM: c->json_stream = 1; return 0;
    case '4': c->family_flags = SF_ADDR_V4ONLY; return 0;
    case '6': c->family_flags = SF_ADDR_V6ONLY; return 0;
    case 'h': return CMD_HELP;
    default:
        if ((v = cmd_trace_take(&c->trace, ch, optarg, err)) < 0)
            return EXIT_USAGE;
        return v == 0 ? cmd_option_error(ch, argv, err) : 0;
    }
}

int
bench_parse(int argc, char **argv, bench_conf *c, sf_err *err)
{
    char names[128];
    int ch, rc;

    c->interval_ms = -1;
    c->trace.cmd = "bench";
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:s:P:d:n:T:w:i:t46h", bench_opts, NULL)) != -1)
        if ((rc = parse_one(c, ch, argv, err)) != 0)
            return rc;
    if (argc - optind != 3)
        return cmd_parse_error(err, "expected MODE HOST PORT (modes: %s)", mode_list(names,
                               sizeof(names)));
    if ((c->o.mode = sf_bench_mode_find(argv[optind])) < 0)
        return cmd_parse_error(err, "%s: no such mode (%s)", argv[optind],
                               mode_list(names, sizeof(names)));
    if (sf_bench_check(&c->o, err) < 0)
        return EXIT_USAGE;
    if (c->src_text)
        return parse_sources(c, c->src_text, err);
    return 0;
}

/* The defaults of the library, and when to print live lines. */
static void
apply_defaults(bench_conf *c)
{
    sf_bench_defaults(&c->o);
    if (c->interval_ms < 0)
        c->interval_ms = isatty(2) || c->json_stream ? 1000 : 0;
    if (c->json_stream && c->interval_ms == 0)
        c->interval_ms = 1000;
}

static void
default_sources(bench_conf *c)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->o.target.ss;

    if (c->src_text || !bench_mode(c)->churns_ports || sf_addr_family(&c->o.target) != AF_INET)
        return;
    if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
        return;
    parse_range("127.0.0.2-127.0.0.9", c);
    c->src_default = 1;
}

/* Raise the soft descriptor limit as far as the run needs and the hard limit allows;
 * refuse -c when even that is too little, rather than count EMFILE all run long. */
static int
fit_fd_limit(const bench_conf *c)
{
    unsigned long need = sf_bench_fds_needed(&c->o);
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || need <= rl.rlim_cur)
        return 0;
    if (rl.rlim_max == RLIM_INFINITY || need <= rl.rlim_max) {
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            return 0;
    }
    return cmd_usage_error("bench", "-c %d: needs %lu descriptors, and the limit is %lu "
                           "(ulimit -n; hard limit %lu)", c->o.conns, need,
                           (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max);
}

static int
exit_status(const bench_conf *c, const sf_bench_result *r)
{
    if (r->st.requests == 0 || bench_failures(&r->st) > 0)
        return EXIT_FAIL;
    if (c->o.requests && !r->reached)
        return EXIT_FAIL;
    return EXIT_OK;
}

/* The target, and the sources to reach it from: 0 or an exit status. */
static int
resolve(bench_conf *c, char **argv)
{
    sf_addr_list dst;
    sf_err err;

    if (sf_addr_resolve(argv[optind + 1], argv[optind + 2],
                        c->family_flags | (bench_mode(c)->dgram ? SF_ADDR_DGRAM : 0),
                        &dst, &err) < 0)
        return cmd_fail("%s", err.msg);
    c->o.target = dst.a[0];
    sf_addr_format(&c->o.target, c->target, sizeof(c->target));
    default_sources(c);
    for (int i = 0; i < c->o.nsrc; i++)
        if (sf_addr_family(&c->src[i]) != sf_addr_family(&c->o.target))
            return cmd_usage_error("bench", "--src: the sources and %s are not of one family",
                                   c->target);
    c->o.src = c->src;
    c->trace.port = (uint16_t)sf_addr_port(&c->o.target);     /* what --wire captures */
    return 0;
}

/* Run b with Ctrl-C (or SIGTERM) ending it early: the figures so far are still printed. */
static int
run(bench_conf *c, sf_bench *b, sf_bench_result *r)
{
    struct sigaction sa;
    sf_err err;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    running = b;
    c->b = b;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = sf_bench_run(b, r, &err);
    running = NULL;
    if (rc < 0)
        return cmd_fail("%s", err.msg);
    return 0;
}

/* The figures on standard output; a write that failed there (a full disk, a closed pipe)
 * is a failure of the run's one product: exit 1. */
static int
report(bench_conf *c, const sf_bench_result *r)
{
    int rc = exit_status(c, r);

    if (c->json || c->json_stream)
        bench_json_result(c, r, rc);
    else
        bench_print_table(c, r);
    if (fflush(stdout) != 0 || ferror(stdout) || c->out_errno)
        return cmd_fail("bench: standard output: %s", strerror(c->out_errno ? c->out_errno
                                                                            : errno));
    return rc;
}

int
cmd_bench(int argc, char **argv)
{
    bench_conf *c = calloc(1, sizeof(*c));
    sf_bench_result *r = malloc(sizeof(*r));
    sf_bench *b = NULL;
    sf_err err;
    int rc;

    if (c == NULL || r == NULL) {
        rc = cmd_fail("bench: out of memory");
        goto out;
    }
    rc = bench_parse(argc, argv, c, &err);
    if (rc == CMD_HELP) {
        print_usage();
        rc = fflush(stdout) == 0 && !ferror(stdout) ? EXIT_OK
             : cmd_fail("bench: standard output: %s", strerror(errno));
        goto out;
    }
    if (rc != 0) {
        rc = cmd_usage_error("bench", "%s", err.msg);
        goto out;
    }
    apply_defaults(c);
    if ((rc = fit_fd_limit(c)) != 0 || (rc = resolve(c, argv)) != 0 ||
        (rc = cmd_trace_open(&c->trace)) != 0)
        goto out;
    c->o.tracer = cmd_tracer(&c->trace);
    c->o.interval_ms = (uint32_t)c->interval_ms;
    /* udp: intervals are counted even when not shown, to tell a steady rate limit */
    if (c->o.interval_ms == 0 && bench_mode(c)->dgram)
        c->o.interval_ms = 250;
    c->o.on_interval = bench_on_interval;
    c->o.ud = c;
    b = sf_bench_new(&c->o, &err);
    if (b == NULL) {
        rc = err.code == SF_EUSAGE ? cmd_usage_error("bench", "%s", err.msg)
                                   : cmd_fail("%s", err.msg);
        goto out;
    }
    if ((rc = run(c, b, r)) == 0)
        rc = report(c, r);
out:
    sf_bench_free(b);
    if (c)
        cmd_trace_close(&c->trace);
    free(r);
    free(c);
    return rc;
}
