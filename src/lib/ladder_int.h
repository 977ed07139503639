/* ladder_int: the rows of a figure, shared by the terminal ladder and the SVG writer. */
#ifndef SOCKFLOW_LADDER_INT_H
#define SOCKFLOW_LADDER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sockflow/ladder.h"

/* A row: a call with nothing inside it, a call's entry, its return, or a segment. */
enum { SF__ROW_CALL = 1, SF__ROW_ENTRY, SF__ROW_RETURN, SF__ROW_SEG };

typedef struct sf__ladder_row {
    int kind;               /* SF__ROW_* */
    size_t ev;              /* the event's index */
    uint64_t t_ns;          /* entry, return or segment time */
    size_t pair;            /* entry: its return row; return: its entry row */
    uint8_t inside[2];      /* per side: strictly inside a call of that side */
} sf__ladder_row;

/* Check every event (kind, side, t_end_ns >= t_ns for calls, a call name) and lay out
 * the rows in time order, ties in the order given (a call's entry before its return).
 * Returns 0 with *rows (malloc'd, the caller frees) and *nrows set, SF_EUSAGE or
 * -ENOMEM. */
int sf__ladder_rows(const sf_ladder_event *ev, size_t n, sf__ladder_row **rows,
                    size_t *nrows);

/* A call's text for a row: "connect(127.0.0.1:5000)" (entry), "connect = 0" (return),
 * "socket() = 3" (one row), "read = -1 EAGAIN". Returns buf. */
const char *sf__ladder_call_text(const sf_ladder_event *e, int row_kind, char *buf,
                                 size_t cap);

#endif
