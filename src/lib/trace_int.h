/* trace_int: the trace entry points the library's own layers share (not installed). */
#ifndef SOCKFLOW_TRACE_INT_H
#define SOCKFLOW_TRACE_INT_H

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

/* sf_trace_call, but the subject (state, RTT, addresses) is subject_fd, not fd:
 * accept reports the new connected socket. */
void sf__trace_call_on(const sf_trace *t, const char *call, int fd, int subject_fd,
                       long result, int err, const char *args_fmt, ...)
    __attribute__((format(printf, 7, 8)));

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

#endif
