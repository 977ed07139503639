/* trace: one event per socket call (who, call, arguments, result, TCP state, time). */
#ifndef SOCKFLOW_TRACE_H
#define SOCKFLOW_TRACE_H

#include <stddef.h>
#include <stdint.h>

/* TCP states as the kernel numbers them (TCP_INFO tcpi_state). SF_TCP_NONE: not a TCP
 * socket or the state could not be read. */
enum {
    SF_TCP_NONE = 0,
    SF_TCP_ESTABLISHED = 1, SF_TCP_SYN_SENT, SF_TCP_SYN_RECV, SF_TCP_FIN_WAIT1,
    SF_TCP_FIN_WAIT2, SF_TCP_TIME_WAIT, SF_TCP_CLOSE, SF_TCP_CLOSE_WAIT,
    SF_TCP_LAST_ACK, SF_TCP_LISTEN, SF_TCP_CLOSING
};

typedef struct sf_trace_event {
    const char *side;       /* "server", "client", "conn" ... */
    unsigned long id;       /* connection id within the side, 0 for none */
    const char *call;       /* "socket", "bind", "accept4" ... */
    int fd;                 /* descriptor the call was made on, -1 if none */
    const char *args;       /* the arguments, already formatted ("127.0.0.1:7, backlog=128") */
    long result;            /* the call's return value (descriptor, byte count, 0) */
    int err;                /* errno when the call failed, else 0 */
    int tcp_state;          /* SF_TCP_* after the call, read with TCP_INFO */
    uint32_t rtt_us;        /* smoothed RTT when established, else 0 */
    uint32_t unacked;       /* on a listening socket: connections waiting in the accept queue */
    uint64_t t_ns;          /* CLOCK_MONOTONIC */
    const void *data;       /* payload of read/write calls, when data tracing is on */
    size_t datalen;
} sf_trace_event;

typedef void (*sf_trace_fn)(void *ud, const sf_trace_event *ev);

/* A sink: where events go. Owned by the caller; must outlive every sf_trace using it. */
typedef struct sf_tracer {
    sf_trace_fn fn;
    void *ud;
    int with_data;          /* pass payloads of read/write calls */
} sf_tracer;

/* Who makes the calls: passed by pointer to every sock call; NULL turns tracing off
 * (one branch per call). Cheap to build on the stack. */
typedef struct sf_trace {
    const sf_tracer *tracer;
    const char *side;
    unsigned long id;
} sf_trace;

/* Emit one event for a call on fd that returned result (errno in err when result < 0).
 * Reads the TCP state of fd when it is a TCP socket. args is printf-formatted. */
void sf_trace_call(const sf_trace *t, const char *call, int fd, long result, int err,
                   const void *data, size_t datalen, const char *args_fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Name of a state: "LISTEN", "ESTABLISHED", ... ; "-" for SF_TCP_NONE. */
const char *sf_tcp_state_name(int state);

/* Read the TCP state of fd (SF_TCP_NONE if not TCP); rtt_us and unacked may be NULL. */
int sf_tcp_state(int fd, uint32_t *rtt_us, uint32_t *unacked);

/* Monotonic nanoseconds. */
uint64_t sf_now_ns(void);

#endif
