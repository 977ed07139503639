/* demo: both sides of the TCP and the UDP flow in one process, on loopback, every call
 * printed as it happens with the TCP state the kernel reports after it, in numbered
 * sections; each claim a section makes is checked against what the kernel showed.
 * This file is the command and the table of sections; a section is one function in
 * one of the demo_*.c files and one line here. */
#include <getopt.h>
#include <stdio.h>

#include "demo.h"
#include "traceopt.h"

static const struct {
    const char *title;          /* the section's head */
    const char *brief;          /* its line in --help */
    demo_section_fn run;
} sections[] = {
    { "The TCP flow, end to end", "the TCP flow", demo_tcp_flow },
    { "The UDP flow, end to end: no listen, accept or connect", "the UDP flow",
      demo_udp_flow },
    { "The telephone picture, step by step", "the telephone picture", demo_telephone },
    { "listen() and a blocking accept()", "listen and a blocking accept",
      demo_blocking_accept },
    { "When accept() fails, or tells nothing", "accept: EAGAIN, EINVAL, NULL",
      demo_accept_edges },
    { "The three-way handshake, the accept queue and the close",
      "handshake, accept queue, close states", demo_handshake },
    { "One listening socket for the server, one connected socket per client",
      "one listening socket, many connected", demo_two_sockets },
};

#define NSECTIONS ((int)(sizeof(sections) / sizeof(sections[0])))

static void
print_usage(void)
{
    printf("usage: sockflow demo [--section N] [--json] [--explain] [--trace-data]"
           " [--trace-file FILE]\n"
           "\n"
           "Runs both sides of the TCP and the UDP flow on loopback and prints every socket\n"
           "call as it happens: who made it, its arguments, its result and the TCP state the\n"
           "kernel reports after it. %d numbered sections; each claim is checked against\n"
           "what the kernel showed ('seen:'), and the exit status is 1 if one was not.\n"
           "\n"
           "  -n, --section N        run section N only (1-%d)\n"
           "  -j, --json             one JSON object per line: the calls as trace events,\n"
           "                         sections, notes and checks as events of their own\n"
           "      --trace[=text|json]  the same choice of format as --json\n"
           "      --explain          a telephone-picture sentence under every call\n"
           "      --trace-data       hex dumps of the bytes read and written\n"
           "      --trace-file FILE  write everything to FILE instead of standard output\n"
           "  -h, --help\n"
           "\n"
           "Sections:\n", NSECTIONS, NSECTIONS);
    for (int i = 0; i < NSECTIONS; i++)
        printf("  %d %s\n", i + 1, sections[i].brief);
}

static const struct option demo_opts[] = {
    { "section", required_argument, NULL, 'n' },
    { "json", no_argument, NULL, 'j' },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

/* Options into ct and *only (0: every section). Returns -1 to go on, else an exit code. */
static int
parse_options(int argc, char **argv, cmd_trace *ct, int *only)
{
    int ch;
    long v;

    optind = 1;
    while ((ch = getopt_long(argc, argv, "n:jh", demo_opts, NULL)) != -1) {
        switch (ch) {
        case 'n':
            if ((v = cmd_parse_count(optarg, NSECTIONS)) < 1)
                return cmd_usage_error("demo", "--section %s: a number from 1 to %d", optarg,
                                       NSECTIONS);
            *only = (int)v;
            break;
        case 'j': ct->format = SF_TRACE_JSON; break;
        case 'h': print_usage(); return EXIT_OK;
        default:
            if ((v = cmd_trace_option(ct, "demo", ch, optarg)) < 0)
                return EXIT_USAGE;
            if (v == 0)
                return cmd_usage_error("demo", "unknown option");
        }
    }
    if (optind < argc)
        return cmd_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    return -1;
}

static void
print_head(demo *d)
{
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "demo", "sockflow demo %s", SOCKFLOW_VERSION);
    else
        sf_trace_sink_note(&d->sink, "note",
            "sockflow demo: both sides of each flow on loopback, every socket call as it\n"
            "happens, with the TCP state the kernel reports after it (TCP_INFO).\n"
            "columns: seconds since start, who, call, descriptor, arguments, = result,\n"
            "state after the call (rtt: smoothed round trip; queue: accept queue length)");
}

static void
print_summary(demo *d)
{
    const char *some = d->skipped ? " (some skipped)" : "";

    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "summary", "%d of %d claims seen in the kernel%s",
                           d->claims - d->failed, d->claims, some);
    else
        sf_trace_sink_note(&d->sink, "note", "\n%d of %d claims seen in the kernel%s.",
                           d->claims - d->failed, d->claims, some);
}

int
cmd_demo(int argc, char **argv)
{
    static demo d;
    cmd_trace ct = { 0 };
    int only = 0, rc;

    if ((rc = parse_options(argc, argv, &ct, &only)) >= 0)
        return rc;
    /* The demo's output is the trace: standard output unless --trace-file says. */
    if (ct.file == NULL)
        ct.file = "-";
    ct.on = 1;
    if ((rc = cmd_trace_open(&ct)) != 0)
        return rc;
    demo_init(&d, ct.out, ct.format, ct.flags);
    print_head(&d);
    for (int i = 0; i < NSECTIONS; i++) {
        if (only && only != i + 1)
            continue;
        demo_section(&d, i + 1, sections[i].title);
        if (sections[i].run(&d) != EXIT_OK)
            rc = EXIT_FAIL;
    }
    if (d.failed)
        rc = EXIT_FAIL;
    print_summary(&d);
    cmd_trace_close(&ct);
    return rc;
}
