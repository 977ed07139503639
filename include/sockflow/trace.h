/* trace: one event per socket call (who, call, arguments, result, TCP state, time), and
 * the sinks that write events as aligned text, JSON lines or the telephone picture. */
#ifndef SOCKFLOW_TRACE_H
#define SOCKFLOW_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "addr.h"

/* TCP states as the kernel numbers them (TCP_INFO tcpi_state). SF_TCP_NONE: not a TCP
 * socket or the state could not be read. */
enum {
    SF_TCP_NONE = 0,
    SF_TCP_ESTABLISHED = 1, SF_TCP_SYN_SENT, SF_TCP_SYN_RECV, SF_TCP_FIN_WAIT1,
    SF_TCP_FIN_WAIT2, SF_TCP_TIME_WAIT, SF_TCP_CLOSE, SF_TCP_CLOSE_WAIT,
    SF_TCP_LAST_ACK, SF_TCP_LISTEN, SF_TCP_CLOSING
};

/* The calls a trace reports, one line each: the enum value and the name printed for it.
 * A new call is one line here and one entry in the explainer's table. */
#define SF_TRACE_CALLS(X) \
    X(SOCKET, "socket") X(SETSOCKOPT, "setsockopt") X(BIND, "bind") X(LISTEN, "listen") \
    X(ACCEPT4, "accept4") X(CONNECT, "connect") X(CONNECT_DONE, "connect-done") \
    X(READ, "read") X(WRITE, "write") X(RECVFROM, "recvfrom") X(SENDTO, "sendto") \
    X(RECVMMSG, "recvmmsg") X(SENDMMSG, "sendmmsg") X(SHUTDOWN, "shutdown") \
    X(CLOSE, "close") X(GETSOCKOPT, "getsockopt") X(SOCK_DIAG, "sock_diag")

/* A call as a value; SF_CALL_NONE (0) is "no call" and never traced by the library. */
typedef enum sf_call {
    SF_CALL_NONE = 0,
#define SF_CALL_ENUM_(id, name) SF_CALL_##id,
    SF_TRACE_CALLS(SF_CALL_ENUM_)
#undef SF_CALL_ENUM_
    SF_CALL_COUNT
} sf_call;

/* The name of a call as traces print it ("accept4", "connect-done"); "?" for a value
 * out of range. */
const char *sf_call_name(sf_call call);

/* Facts about a call that its arguments alone do not show (sf_trace_event.notes). */
enum {
    SF_TRACE_N_NO_ADDR = 1 << 0,   /* accept given a NULL address: no peer asked for */
    SF_TRACE_N_BOUND   = 1 << 1,   /* connect on a socket the caller bound to a port first */
};

/* What a call was about, as values, given by whoever traces it; zero means nothing.
 * Where the address, option or flags of a call are needed (the explainer, the demo's
 * checks) they are read from here, never from the formatted args. */
typedef struct sf_trace_about {
    const sf_addr *addr;    /* the address the call concerns: bind's, connect's target,
                               sendto's destination, recvfrom's source, accept's peer,
                               the peer of a sock_diag lookup; NULL for none */
    int opt_level, opt_name;/* setsockopt/getsockopt: SOL_SOCKET, SO_REUSEADDR ... */
    int opt_value;          /* setsockopt: the value set */
    int flags;              /* socket, accept4: SOCK_NONBLOCK|SOCK_CLOEXEC;
                               shutdown: SHUT_RD/SHUT_WR/SHUT_RDWR */
    unsigned notes;         /* SF_TRACE_N_* */
    const void *data;       /* payload of read/write calls */
    size_t datalen;
} sf_trace_about;

/* One socket call. Every pointer is valid only during the sink's call. The "subject"
 * socket, whose state, RTT and addresses are reported, is fd; for accept it is the new
 * connected socket (the result), since the listening one stays in LISTEN; for close it
 * is the connection as the kernel still holds it after the descriptor is gone (found
 * by its addresses: FIN_WAIT1, LAST_ACK, TIME_WAIT ... or CLOSE). */
typedef struct sf_trace_event {
    const char *side;       /* "server", "client" ... */
    unsigned long id;       /* connection id within the side, 0 for none */
    sf_call call;           /* SF_CALL_SOCKET ...; sf_call_name() gives its name */
    int fd;                 /* descriptor the call was made on (socket: the new one), or -1 */
    const char *args;       /* the arguments, already formatted ("backlog=511") */
    long result;            /* the call's return value (descriptor, byte count, 0, -1) */
    int err;                /* errno when the call failed, else 0 */
    const char *proto;      /* "tcp", "udp", or NULL when not a socket or unknown */
    int tcp_state;          /* SF_TCP_* of the subject after the call */
    int tcp_state_before;   /* close: the state just before the call; else SF_TCP_NONE */
    uint32_t rtt_us;        /* smoothed RTT when established, else 0 */
    int32_t accept_queue;   /* on a listening socket: connections completed by the kernel
                               and waiting for accept(); -1 when not listening */
    const char *local;      /* subject's own address "127.0.0.1:5000", or NULL */
    const char *peer;       /* the address at the other end, or NULL */
    uint64_t t_ns;          /* CLOCK_MONOTONIC */
    const void *data;       /* payload of read/write calls, when data tracing is on */
    size_t datalen;
    const sf_addr *addr;    /* sf_trace_about: the address the call concerns, or NULL */
    int opt_level, opt_name, opt_value;
    int flags;
    unsigned notes;
    int phase;              /* SF_TRACE_RETURN, or SF_TRACE_ENTRY (see below) */
} sf_trace_event;

/* sf_trace_event.phase. Events are made when a call returns. A tracer that asks for
 * entries (sf_tracer.entries) also gets one when a call that may sleep (accept, connect,
 * read, recvfrom) is entered on a blocking socket: result 0, the state at entry. The
 * time between the two is the time the call slept. */
enum { SF_TRACE_RETURN = 0, SF_TRACE_ENTRY = 1 };

typedef void (*sf_trace_fn)(void *ud, const sf_trace_event *ev);

/* TCP header flags of a segment (sf_trace_segment.flags). */
enum {
    SF_SEG_FIN = 0x01, SF_SEG_SYN = 0x02, SF_SEG_RST = 0x04, SF_SEG_PSH = 0x08,
    SF_SEG_ACK = 0x10,
};

/* One TCP segment seen on the wire: what a packet capture feeds into the same sink as
 * the calls, so the segments appear between the calls that caused them. Pointers are
 * valid only during the sink's call. */
typedef struct sf_trace_segment {
    uint64_t t_ns;          /* CLOCK_MONOTONIC when it was seen */
    const char *src, *dst;  /* "127.0.0.1:40000" */
    unsigned flags;         /* SF_SEG_* */
    uint32_t seq, ack;      /* as on the wire (absolute) */
    uint32_t win;           /* the advertised window, unscaled */
    uint32_t len;           /* payload bytes */
} sf_trace_segment;

typedef void (*sf_segment_fn)(void *ud, const sf_trace_segment *sg);

/* A sink: where events go. Owned by the caller; must outlive every sf_trace using it.
 * fn may be called from several threads at once (a server with several loops). */
typedef struct sf_tracer {
    sf_trace_fn fn;
    void *ud;
    int with_data;          /* pass payloads of read/write calls */
    sf_segment_fn segment;  /* segments from a capture; NULL: the sink takes none */
    int entries;            /* also report the entry of calls that may sleep */
} sf_tracer;

/* Hand one captured segment to tr (nothing when tr or its segment function is NULL). */
void sf_trace_segment_emit(const sf_tracer *tr, const sf_trace_segment *sg);

/* Who makes the calls: passed by pointer to every sock call; NULL turns tracing off
 * (one branch per call). Cheap to build on the stack. */
typedef struct sf_trace {
    const sf_tracer *tracer;
    const char *side;
    unsigned long id;
} sf_trace;

/* Emit one event for call made on fd that returned result (errno in err when result
 * < 0). about (may be NULL) says what the call concerned, as values; args_fmt is the
 * printf-formatted arguments as the trace prints them. Reads the TCP state of fd when
 * it is a TCP socket. Used by the library for every call it makes, and by callers to
 * record calls of their own (a getsockopt(TCP_INFO) probe, say). errno is kept. */
void sf_trace_call(const sf_trace *t, sf_call call, int fd, long result, int err,
                   const sf_trace_about *about, const char *args_fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* sf_trace_call for a call that made a new socket: the state, RTT and addresses
 * reported are subject_fd's (accept's result), the queue stays fd's. */
void sf_trace_call_on(const sf_trace *t, sf_call call, int fd, int subject_fd, long result,
                      int err, const sf_trace_about *about, const char *args_fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Name of a state: "LISTEN", "ESTABLISHED", ... ; "-" for SF_TCP_NONE. */
const char *sf_tcp_state_name(int state);

/* Read the TCP state of fd with TCP_INFO (SF_TCP_NONE if not TCP). rtt_us (when
 * established) and accept_queue (when listening; else -1) may be NULL. errno is kept. */
int sf_tcp_state(int fd, uint32_t *rtt_us, int32_t *accept_queue);

/* The state of the TCP connection local <-> peer as the kernel holds it, descriptor or
 * not: this is how a socket already closed is seen in FIN_WAIT2 or TIME_WAIT. Asks
 * the kernel with one exact NETLINK_SOCK_DIAG lookup (what ss(8) uses), falling back
 * to /proc/net/tcp. Returns SF_TCP_* (SF_TCP_CLOSE when the kernel has no such
 * connection any more), or SF_TCP_NONE when it cannot be asked. errno is kept. */
int sf_tcp_state_lookup(const sf_addr *local, const sf_addr *peer);

/* sf_tcp_state_lookup, reported on t as a "sock_diag" event (fd -1, args "local <->
 * peer") when t traces. Returns the state. */
int sf_trace_lookup(const sf_trace *t, const sf_addr *local, const sf_addr *peer);

/* One counter of the kernel's network statistics by its group and name, as nstat(8)
 * shows them: ("TcpExt", "ListenOverflows") from /proc/net/netstat, ("Tcp",
 * "RetransSegs") from /proc/net/snmp. Returns its value, or -1 when it cannot be read
 * (no such counter, no /proc). Counters are machine-wide: compare two readings. */
long sf_net_counter(const char *group, const char *name);

/* Monotonic nanoseconds. */
uint64_t sf_now_ns(void);

/* ---- sinks: formatting events for people and programs ---- */

enum { SF_TRACE_TEXT = 0, SF_TRACE_JSON = 1 };

enum {
    SF_TRACE_F_EXPLAIN = 1 << 0,    /* add the telephone-picture sentence to each event */
    SF_TRACE_F_DATA    = 1 << 1,    /* hex dump of read/write payloads */
    SF_TRACE_F_NARROW  = 1 << 2,    /* text: lines of at most 80 columns, strace-like
                                       "call(fd, args) = result", no RTT, explanations
                                       wrapped */
    SF_TRACE_F_ZH      = 1 << 3,    /* explanations in Chinese (JSON keys and values
                                       other than "explain" stay as they are) */
};

/* Languages of the explanations. */
enum { SF_LANG_EN = 0, SF_LANG_ZH = 1 };

/* Most payload bytes dumped per event; the rest is counted, not shown. */
#define SF_TRACE_DATA_MAX 4096

/* Format ev as one entry: SF_TRACE_TEXT, one aligned line (time since t0_ns, side[#id],
 * call, fd, args, "= result" or "= -1 ENAME", state, rtt, accept queue), plus, per
 * flags, an explanation line and hex dump lines; SF_TRACE_JSON, one JSON object on one
 * line (schema: docs/trace.md). Always ends with a newline. Writes at most cap bytes,
 * NUL-terminated, and returns the length the whole entry needs (snprintf-style), so
 * a caller whose buffer was short can retry with a bigger one. */
size_t sf_trace_format(const sf_trace_event *ev, int format, unsigned flags, uint64_t t0_ns,
                       char *buf, size_t cap);

/* Format a captured segment like a call: SF_TRACE_TEXT, one line aligned with the calls
 * (time, "wire", tcpdump's flags "[S.]", "src > dst", seq, ack, win, len); SF_TRACE_JSON,
 * {"event":"segment",...} (docs/trace.md). snprintf-style, as sf_trace_format. */
size_t sf_trace_format_segment(const sf_trace_segment *sg, int format, uint64_t t0_ns,
                               char *buf, size_t cap);

/* The telephone picture of one event, as one plain sentence (no newline): "listen():
 * the phone is switched on and can ring (LISTEN) ..." Returns buf. */
const char *sf_trace_explain(const sf_trace_event *ev, char *buf, size_t cap);

/* The same in lang (SF_LANG_EN or SF_LANG_ZH, the seed's own words). */
const char *sf_trace_explain_in(const sf_trace_event *ev, int lang, char *buf, size_t cap);

/* Display columns of a UTF-8 string (CJK characters count two). */
int sf_text_width(const char *s);

/* Write text wrapped at width columns into buf (at most cap bytes, NUL-terminated;
 * returns the length needed): the first line starts with first, the others with cont.
 * Breaks at spaces, or between two wide (CJK) characters. */
size_t sf_text_wrap(const char *text, const char *first, const char *cont, int width,
                    char *buf, size_t cap);

/* A ready-made sink writing to a FILE the caller owns (stderr, a --trace-file).
 * Each event goes out whole, in one fwrite under the FILE's lock, and is flushed:
 * lines from several threads never mix. */
typedef struct sf_trace_sink {
    sf_tracer tracer;       /* give &sink.tracer to the library */
    FILE *out;
    int format;             /* SF_TRACE_TEXT or SF_TRACE_JSON */
    unsigned flags;         /* SF_TRACE_F_* */
    uint64_t t0_ns;         /* text time stamps count from here (set by init) */
} sf_trace_sink;

/* Set up s to write to out in format with flags. Nothing is allocated; there is
 * nothing to free. out stays the caller's to close, after the last event. */
void sf_trace_sink_init(sf_trace_sink *s, FILE *out, int format, unsigned flags);

/* Write a line that is not a call into the same stream, in the sink's format: text as
 * given (kind ignored), or {"event":kind,"t_ns":...,"text":...} in JSON. For
 * narration (the demo's sections) and markers ("warm-up done"). */
void sf_trace_sink_note(sf_trace_sink *s, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
