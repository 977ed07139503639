/* ladder: the seed's figures drawn from real events: calls of the client and the server
 * with their entry and return times, and the segments between them, as a terminal
 * ladder diagram or as SVG/HTML. */
#ifndef SOCKFLOW_LADDER_H
#define SOCKFLOW_LADDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "trace.h"

enum { SF_LADDER_CLIENT = 0, SF_LADDER_SERVER = 1 };
enum { SF_LADDER_CALL = 1, SF_LADDER_SEG = 2 };
enum { SF_LADDER_TCP = 1, SF_LADDER_UDP = 2, SF_LADDER_ICMP = 3 };

/* TCP header flags, as the header carries them: FIN, SYN, RST, PSH and ACK are
 * trace.h's (a captured segment in the trace sink), the rest are here. */
enum { SF_SEG_URG = 0x20, SF_SEG_ECE = 0x40, SF_SEG_CWR = 0x80 };

/* One event of the figure: a call one side made, or a segment one side's kernel sent.
 * Strings are the caller's and must live while the figure is drawn. */
typedef struct sf_ladder_event {
    int kind;               /* SF_LADDER_CALL or SF_LADDER_SEG */
    int side;               /* call: who called; segment: who sent it */
    uint64_t t_ns;          /* call: entry; segment: when it was seen (any one clock) */
    uint64_t t_end_ns;      /* call: return, >= t_ns; segment: unused */
    /* a call */
    const char *call;       /* "connect", "accept4", "sendto" ... */
    const char *args;       /* shown as call(args); NULL: call() */
    long result;
    int err;                /* errno when result < 0, else 0 */
    /* a segment */
    int proto;              /* SF_LADDER_TCP, SF_LADDER_UDP, SF_LADDER_ICMP */
    unsigned flags;         /* SF_SEG_* */
    uint32_t seq, ack;      /* relative to the sender's / the receiver's ISN */
    uint8_t has_seq, has_ack;
    uint32_t len;           /* payload bytes */
} sf_ladder_event;

/* The label of a segment: "SYN J", "SYN K, ACK J+1", "ACK K+1", "PSH J+1 len 5,
 * ACK K+1", "FIN J+6, ACK K+6", "UDP len 5", "ICMP port unreachable" (J: the client's
 * initial sequence number, K: the server's). Returns buf. */
const char *sf_ladder_seg_label(const sf_ladder_event *e, char *buf, size_t cap);

/* Merge calls and segments into the order a trace writes them: idx gets 0..n-1 sorted
 * by time, a call at its return (when its line is written), a segment when it was
 * seen; ties keep the given order. Returns 0, SF_EUSAGE for a bad event, or -ENOMEM. */
int sf_ladder_order(const sf_ladder_event *ev, size_t n, size_t *idx);

/* ---- the terminal ladder ---- */

#define SF_LADDER_WIDTH 100

/* Write the ladder of ev (any order; drawn sorted by time, ties in the given order) to
 * out: client calls at the left, server calls at the right, each segment an arrow
 * between the two lifelines, time (ms since the first event) downwards. A call that
 * other events happened inside gets an entry row and a return row, its lifeline drawn
 * '#' in between (time spent inside the call); one with nothing inside gets one row.
 * width: columns, at most SF_LADDER_WIDTH (0: SF_LADDER_WIDTH; at least 72). Returns 0,
 * SF_EUSAGE for a bad event or width, -ENOMEM, or -EIO when out fails. */
int sf_ladder_text(FILE *out, const sf_ladder_event *ev, size_t n, int width);

/* ---- the figures as SVG and HTML ---- */

/* One figure: the seed's section it draws (1: the TCP flow, 2: the UDP flow, 7: the
 * three-way handshake; it gives the caption and the legend's sentences) and its
 * events. */
typedef struct sf_ladder_figure {
    int section;
    const char *title;      /* NULL: the section's own title */
    const sf_ladder_event *ev;
    size_t n;
} sf_ladder_figure;

/* Write fig as one self-contained <svg> element: the two lifelines, a bar from entry to
 * return of every call that took the time of other events, each call's text at its
 * side, each segment an arrow with its label, times at the left, and a legend tying each
 * call and segment to the seed's sentence (in the seed's Chinese, with an English gloss)
 * by its number. Returns 0, SF_EUSAGE, -ENOMEM or -EIO. */
int sf_ladder_svg(FILE *out, const sf_ladder_figure *fig);

/* Write a whole HTML page (UTF-8, no external resources) with title and the n figures,
 * one <figure> each. Returns 0, SF_EUSAGE, -ENOMEM or -EIO. */
int sf_ladder_html(FILE *out, const char *title, const sf_ladder_figure *figs, size_t n);

#endif
