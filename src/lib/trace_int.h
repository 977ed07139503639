/* trace_int: what the trace files and the library's other layers share (not installed):
 * the trace-point switch, the accept and close events, kernel lookups, an output cursor. */
#ifndef SOCKFLOW_TRACE_INT_H
#define SOCKFLOW_TRACE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sockflow/addr.h"
#include "sockflow/trace.h"

/* Is t on? A -DSF_NO_TRACE build makes every trace point dead code the compiler drops,
 * which bench/trace-cost measures against the one branch of a normal build. */
#ifdef SF_NO_TRACE
#define SF_TRACING(t) ((void)(t), 0)
#else
#define SF_TRACING(t) ((t) != NULL)
#endif

/* An sf_trace_about built in place: SF_ABOUT(.addr = a, .flags = f). The parentheses
 * keep its commas inside one macro argument. */
#define SF_ABOUT(...) (&(const sf_trace_about){ __VA_ARGS__ })

/* sf_trace_call, but the subject (state, RTT, addresses) is subject_fd, not fd:
 * accept reports the new connected socket. */
void sf__trace_call_on(const sf_trace *t, sf_call call, int fd, int subject_fd,
                       long result, int err, const sf_trace_about *about,
                       const char *args_fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* One event per datagram of a recvmmsg/sendmmsg batch of n (a failed call, n < 0: one
 * event with err), so a batch reads like the recvfrom/sendto calls it replaces. */
struct mmsghdr;
void sf__trace_batch(const sf_trace *t, sf_call call, int fd, const struct mmsghdr *m, int n,
                     int err, unsigned vlen);

/* The entry of a call that may sleep, when t asks for entries and fd is blocking. */
void sf__trace_entry(const sf_trace *t, sf_call call, int fd, const sf_trace_about *about,
                     const char *args_fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* What close needs to know before the descriptor goes away. */
typedef struct sf__close_note {
    int proto;              /* IPPROTO_TCP, IPPROTO_UDP, or 0 */
    int state;              /* SF_TCP_* before the close */
    int connected;          /* local and peer are both known */
    int local_only;         /* in CLOSE with its peer forgotten: find it by its cookie */
    uint64_t cookie;        /* SO_COOKIE */
    sf_addr local, peer;
} sf__close_note;

void sf__trace_close_prepare(int fd, sf__close_note *n);

/* The close event: the state before, and the state the kernel holds the connection in
 * after (FIN_WAIT1, LAST_ACK, TIME_WAIT, CLOSE ...), found by its addresses. */
void sf__trace_close_done(const sf_trace *t, int fd, int rc, int err,
                          const sf__close_note *n);

/* ---- kernel state (trace_kernel.c) ---- */

/* IPPROTO_TCP, IPPROTO_UDP, or 0 for anything else (a pipe, a closed descriptor). */
int sf__sock_proto(int fd);

/* The TIME_WAIT entry of local's port that carries the socket cookie: its state
 * (SF_TCP_TIME_WAIT), with *peer filled; SF_TCP_CLOSE when there is none. A socket whose
 * two FINs passed while its descriptor was open reads CLOSE and has forgotten its peer,
 * while the kernel keeps the connection as such an entry. */
int sf__lookup_time_wait(const sf_addr *local, uint64_t cookie, sf_addr *peer);

/* ---- output (trace_format.c) ---- */

/* An output cursor: counts what it could not write, so the caller learns the size. */
typedef struct sf__cursor {
    char *p;
    size_t cap, len;
    int lang;               /* SF_LANG_*: the language of sentences written here */
} sf__cursor;

void sf__put(sf__cursor *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t sf__put_len(sf__cursor *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append text wrapped at width columns: it starts at column col; continuation lines
 * begin with indent. Breaks at spaces, or between two wide (CJK) characters. */
void sf__put_wrapped(sf__cursor *o, const char *text, int col, const char *indent, int width);

/* The explainer's sentence for ev, appended at o (trace_explain.c). */
void sf__explain(sf__cursor *o, const sf_trace_event *ev);

/* Has call an entry of its own in the explainer's table? (1/0) */
int sf__explained(sf_call call);

#endif
