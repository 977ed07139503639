/* traceopt: the trace options every command shares — --trace[=text|json], --explain,
 * --trace-file FILE, --trace-data, --wire, --ladder, --html FILE, --svg FILE — parsed
 * into a sink of the library. */
#ifndef SOCKFLOW_TRACEOPT_H
#define SOCKFLOW_TRACEOPT_H

#include <stdint.h>
#include <stdio.h>
#include "sockflow/trace.h"
#include "wireopt.h"

typedef struct cmd_trace {
    int on;                 /* any trace option given */
    int format;             /* SF_TRACE_TEXT (default) or SF_TRACE_JSON */
    unsigned flags;         /* SF_TRACE_F_EXPLAIN, SF_TRACE_F_DATA */
    const char *file;       /* --trace-file ("-": stdout), or NULL for stderr */
    FILE *out;              /* open between cmd_trace_open and cmd_trace_close */
    sf_trace_sink sink;
    int print;              /* the trace's lines are written (not only a figure drawn) */
    int wire, ladder;       /* --wire, --ladder */
    const char *html, *svg; /* --html FILE, --svg FILE */
    const char *cmd;        /* the command, for messages */
    uint16_t port;          /* the server's port when known before the first call */
    cmd_wire *cw;           /* the capture and the figure, when asked for */
    const sf_tracer *tracer;
} cmd_trace;

/* getopt_long codes, clear of any short option and of the commands' own codes. */
enum { CMD_OPT_TRACE = 0x7100, CMD_OPT_EXPLAIN, CMD_OPT_TRACE_FILE, CMD_OPT_TRACE_DATA,
       CMD_OPT_WIRE, CMD_OPT_LADDER, CMD_OPT_HTML, CMD_OPT_SVG };

/* Entries to splice into a command's struct option array. */
#define CMD_TRACE_LONGOPTS \
    { "trace", optional_argument, NULL, CMD_OPT_TRACE }, \
    { "explain", no_argument, NULL, CMD_OPT_EXPLAIN }, \
    { "trace-file", required_argument, NULL, CMD_OPT_TRACE_FILE }, \
    { "trace-data", no_argument, NULL, CMD_OPT_TRACE_DATA }, \
    { "wire", no_argument, NULL, CMD_OPT_WIRE }, \
    { "ladder", no_argument, NULL, CMD_OPT_LADDER }, \
    { "html", required_argument, NULL, CMD_OPT_HTML }, \
    { "svg", required_argument, NULL, CMD_OPT_SVG }

/* Lines for a command's usage text. */
#define CMD_TRACE_USAGE \
    "      --trace[=text|json]  print every socket call, its result and the TCP state\n" \
    "                         after it (read from the kernel) on standard error\n" \
    "      --explain          the text trace with a sentence per call: the telephone\n" \
    "                         picture (socket = a phone, bind = its number, ...)\n" \
    "      --trace-file FILE  write the trace to FILE instead of standard error\n" \
    "                         (- for standard output)\n" \
    "      --trace-data       add the bytes of each read and write, as a hex dump\n" \
    "      --wire             the trace with the real TCP segments, UDP datagrams and\n" \
    "                         ICMP errors of the traced ports, captured on lo (needs\n" \
    "                         CAP_NET_RAW; else the kernel's segment counters)\n" \
    "      --ladder           at the end, a two-column ladder of the calls (and the\n" \
    "                         segments, with --wire): client left, server right\n" \
    "      --html FILE        at the end, the run drawn as the tutorial's figure (HTML)\n" \
    "      --svg FILE         the same as one SVG image\n"

/* Take option ch (from getopt_long, argument arg) if it is a trace option. Returns 1
 * when taken, 0 when ch is not a trace option, -1 for a bad value (the usage error is
 * printed for command cmd: return EXIT_USAGE). --explain, --trace-file and
 * --trace-data each turn tracing on by themselves. */
int cmd_trace_option(cmd_trace *ct, const char *cmd, int ch, const char *arg);
/* The same, printing nothing: a bad value is -1 with the message in err. The caller
 * names its command in ct->cmd (for the capture's messages and the figures' title). */
int cmd_trace_take(cmd_trace *ct, int ch, const char *arg, sf_err *err);

/* After parsing: open the trace file if any and set up the sink. Returns 0, or
 * EXIT_FAIL with the reason printed. Does nothing when tracing is off. */
int cmd_trace_open(cmd_trace *ct);

/* The tracer to hand to the library (sf_server_opts.tracer, an sf_trace), or NULL
 * when tracing is off. */
const sf_tracer *cmd_tracer(const cmd_trace *ct);

/* Close the trace file (not stderr). Safe to call when never opened. */
void cmd_trace_close(cmd_trace *ct);

/* The figure options (traceopt_wire.c): take --ladder, --html, --svg as
 * cmd_trace_take does; after the sink is set up, start the capture and the keeping
 * of events (0, or EXIT_FAIL/EXIT_USAGE with the reason printed); at the end, the last
 * segments, then the ladder and the files. */
int cmd_figure_take(cmd_trace *ct, int ch, const char *arg, sf_err *err);
int cmd_figure_open(cmd_trace *ct);
void cmd_figure_close(cmd_trace *ct);

#endif
