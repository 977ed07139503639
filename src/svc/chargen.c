/* chargen (RFC 864): lines of 72 printable characters + CRLF, streamed over TCP until the
 * client goes, one line per datagram over UDP. */
#include <stdlib.h>

#include "sockflow/svc.h"

#define LINES_PER_DRAIN 221     /* 16,354 bytes handed to the socket per writable event */

void
sf_chargen_line(unsigned line, char out[SF_CHARGEN_LINE])
{
    unsigned r = line % SF_CHARGEN_RING;

    /* The ring is the 95 printable ASCII characters, 0x20 to 0x7E; line i starts at
     * ring offset i mod 95, so line 0 begins with a space (as inetd's chargen). */
    for (int k = 0; k < SF_CHARGEN_LINE - 2; k++) {
        out[k] = (char)(0x20 + r);
        if (++r == SF_CHARGEN_RING)
            r = 0;
    }
    out[SF_CHARGEN_LINE - 2] = '\r';
    out[SF_CHARGEN_LINE - 1] = '\n';
}

/* Per connection: the next line to send. */
typedef struct chargen_conn {
    unsigned line;
} chargen_conn;

/* Per loop: the lines in order, one ring and one batch long, so that the batch starting
 * at any line is one slice, sent as it is (nothing built per write). */
typedef struct chargen_state {
    unsigned next;          /* UDP: the next line */
    char lines[(SF_CHARGEN_RING + LINES_PER_DRAIN) * SF_CHARGEN_LINE];
} chargen_state;

static void
chargen_open(sf_conn *c)
{
    sf_conn_want_drain(c, 1);
}

/* Writable with nothing queued: hand the socket a batch of lines; what it does not take
 * is queued and the next batch waits for the queue to drain (no growth past it). */
static void
chargen_drain(sf_conn *c)
{
    chargen_conn *g = sf_conn_data(c);
    const chargen_state *st = sf_conn_state(c);

    if (sf_conn_send(c, st->lines + (size_t)g->line * SF_CHARGEN_LINE,
                     LINES_PER_DRAIN * SF_CHARGEN_LINE) < 0) {
        sf_conn_close(c, "output queue full");
        return;
    }
    g->line = (g->line + LINES_PER_DRAIN) % SF_CHARGEN_RING;
}

/* The client's half-close does not end the stream (inetd does not read at all); the
 * stream ends when writing fails because the client has gone. */
static void
chargen_eof(sf_conn *c)
{
    (void)c;
}

static void *
chargen_state_new(void)
{
    chargen_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        return NULL;
    for (unsigned i = 0; i < SF_CHARGEN_RING + LINES_PER_DRAIN; i++)
        sf_chargen_line(i, st->lines + (size_t)i * SF_CHARGEN_LINE);
    return st;
}

/* UDP: one line per datagram, the ring of this loop advancing one step per reply. */
static void
chargen_datagram(sf_dgram *d)
{
    chargen_state *st = d->state;

    d->reply = st->lines + (size_t)st->next * SF_CHARGEN_LINE;
    d->reply_len = SF_CHARGEN_LINE;
    st->next = (st->next + 1) % SF_CHARGEN_RING;
}

const sf_service sf_svc_chargen = {
    .name = "chargen",
    .port = 19,
    .protos = SF_PROTO_TCP | SF_PROTO_UDP,
    .conn_size = sizeof(chargen_conn),
    .state_new = chargen_state_new,
    .state_free = free,
    .on_open = chargen_open,
    .on_drain = chargen_drain,
    .on_eof = chargen_eof,
    .on_datagram = chargen_datagram,
};
