/* wireopt: --wire, --ladder, --html, --svg: the real segments of the traced connections
 * beside the calls, and the figures drawn from the run's events. */
#ifndef SOCKFLOW_WIREOPT_H
#define SOCKFLOW_WIREOPT_H

#include <stdint.h>
#include <stdio.h>
#include "sockflow/sockflow.h"

typedef struct cmd_wire cmd_wire;

/* What to do with the run's events. */
enum {
    CMD_WIRE_CAPTURE = 1 << 4,  /* capture the segments (else calls only) */
    CMD_WIRE_PRINT  = 1 << 0,   /* write each captured segment into the trace */
    CMD_WIRE_LADDER = 1 << 1,   /* keep calls and segments for a ladder or a figure */
    CMD_WIRE_NARROW = 1 << 2,   /* segment lines of at most 80 columns (the demo's) */
    CMD_WIRE_NONS   = 1 << 3,   /* never enter a private namespace (a command reaching
                                   other hosts, or a process with threads) */
};

/* Start: with CMD_WIRE_CAPTURE, a capture of lo (as root directly; unprivileged, without CMD_WIRE_NONS, in a
 * private user + network namespace, which must happen before any thread), or, when
 * neither works, one line on stderr saying so, and the TCP_INFO segment counters after
 * each call instead. sink (may be NULL: nothing printed) gives the format, flags,
 * stream and clock of the lines; cmd names the command in the message; port (0: none
 * yet) is the server's port when known before any call. Returns NULL on no memory. */
cmd_wire *cmd_wire_new(const char *cmd, unsigned what, sf_trace_sink *sink, uint16_t port);

/* 1 when segments are being captured. */
int cmd_wire_capturing(const cmd_wire *cw);

/* A tracer that writes the captured segments up to each event's time, then hands the
 * event to inner (NULL: nothing printed), and keeps both for the ladder. */
const sf_tracer *cmd_wire_tracer(cmd_wire *cw, const sf_tracer *inner);

/* The two halves of that tracer, for a caller that orders events itself (the demo):
 * note learns the server's ports and keeps the call for the ladder; upto writes and
 * keeps the segments seen up to t_ns (UINT64_MAX: all). Both take the lock. */
void cmd_wire_note(cmd_wire *cw, const sf_trace_event *ev);
void cmd_wire_upto(cmd_wire *cw, uint64_t t_ns);

/* Write segments into the trace (on) or only keep them (off). */
void cmd_wire_set_print(cmd_wire *cw, int on);

/* Wait until the wire has been quiet a moment (bounded) and write what came. */
void cmd_wire_settle(cmd_wire *cw);

/* Forget the calls and segments kept so far and the ports learned (a new figure
 * begins: its ports come from its own calls). */
void cmd_wire_reset(cmd_wire *cw);

/* How many segments (of kind SF_WIRE_TCP ...; 0: any) are kept, and the i-th. */
size_t cmd_wire_count(const cmd_wire *cw, int kind);
const sf_segment *cmd_wire_segment(const cmd_wire *cw, int kind, size_t i);

/* 1 when what is kept is a UDP exchange (a datagram sent or received, no connect). */
int cmd_wire_is_udp(const cmd_wire *cw);

/* Draw the ladder of what is kept to out (width columns, 0: 100). Returns 0 or a
 * negative code. */
int cmd_wire_ladder(cmd_wire *cw, FILE *out, int width);

/* Keep what is kept as figure section (1, 2 or 7) for cmd_wire_write_figures. */
void cmd_wire_figure(cmd_wire *cw, int section, const char *title);

/* Write the figures kept as an HTML page (html) and/or the first as SVG (svg). Returns
 * 0, or EXIT_FAIL with the reason printed. */
int cmd_wire_write_figures(cmd_wire *cw, const char *title, const char *html,
                           const char *svg);

/* Stop capturing and free. NULL is ignored. */
void cmd_wire_free(cmd_wire *cw);

#endif
