/* demo_wire: the demo's capture of the segments, its ladders and its figures file, and
 * section 7's handshake from real packets with its frozen moments. */
#ifndef SOCKFLOW_DEMO_WIRE_H
#define SOCKFLOW_DEMO_WIRE_H

#include "demo.h"
#include "traceopt.h"

typedef struct demo_wire_opts {
    int print, ladder;          /* --wire, --ladder */
    const char *html, *svg;     /* --html FILE, --svg FILE */
} demo_wire_opts;

/* Move the figure options out of ct before it is opened (the demo draws its own). */
void demo_wire_take_options(demo_wire_opts *o, cmd_trace *ct);

/* After demo_init, before any thread: the capture (as root on lo; unprivileged in a
 * namespace of its own; else said, and the sections run without it), and the hooks
 * that write segments between the events. Returns EXIT_OK or EXIT_FAIL. */
int demo_wire_start(demo *d, const demo_wire_opts *o);

/* Around each section: forget what came before; after it, the last segments, the
 * ladder (sections 1 and 2, or every section with --ladder) and the figure kept. */
void demo_wire_begin(demo *d, int section);
void demo_wire_end(demo *d, int section);

/* The figures file, then stop capturing. Returns EXIT_OK or EXIT_FAIL. */
int demo_wire_finish(demo *d);

/* The capture (NULL before start); write segments into the trace (on) or only with
 * --wire (off); draw what is kept since the last begin, under the line what. */
cmd_wire *demo_wire_capture(demo *d);
void demo_wire_print(demo *d, int on);
void demo_wire_ladder(demo *d, const char *what);

/* Section 7's first part: the three segments of a handshake captured beside the calls,
 * and segment 3 held back by a filter on the listener. */
int demo_handshake_wire(demo *d);

#endif
