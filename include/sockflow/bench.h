/* bench: the load generator behind `sockflow bench` — echo request/response, the whole
 * TCP connect cycle, bulk streams and UDP datagrams, with a latency histogram. */
#ifndef SOCKFLOW_BENCH_H
#define SOCKFLOW_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include "addr.h"
#include "trace.h"
#include "err.h"
#include "hist.h"

typedef struct sf_bench sf_bench;

/* The built-in modes, in the order of the modes table; sf_bench_mode_find() names them
 * all, including any added later without a constant here. */
enum sf_bench_mode {
    SF_BENCH_ECHO,      /* request/response on long-lived connections, pipelined */
    SF_BENCH_CONNECT,   /* socket, connect, write, read the echo, close: per request */
    SF_BENCH_STREAM,    /* bulk bytes to a discard server (or from chargen: recv) */
    SF_BENCH_UDP,       /* datagrams echoed, with a loss timeout */
};

/* What a mode is and its defaults: the one place they are written. */
typedef struct sf_bench_mode_info {
    const char *name;       /* "echo", as the command takes it */
    const char *summary;    /* what it does, in a line or two ('\n' between them) */
    const char *what;       /* what one request is counted as: "requests", "connections",
                               "datagrams" */
    const char *unit;       /* its rate: "req/s", "conn/s", "dgram/s" */
    int dgram;              /* UDP: resolve the target for datagrams; sent, lost and late
                               are counted */
    int bulk;               /* bytes, not requests: throughput is the figure, no latency */
    int checked;            /* answers are checked byte for byte (mismatches) */
    int pipelines;          /* more than one request in flight per connection (pipeline) */
    int can_recv;           /* recv is allowed: read instead of write */
    int churns_ports;       /* a connection per request: one source address runs out of
                               ephemeral ports, several are worth spreading over */
    int fds_per_conn;       /* descriptors held per unit of conns (UDP: none, one per
                               thread) */
    /* defaults for the fields of sf_bench_opts left 0 */
    int conns;
    size_t size;            /* bytes per request */
    uint32_t timeout_ms;
    /* bounds of size, and why where it is not obvious */
    size_t min_size, max_size;
    const char *size_why;
} sf_bench_mode_info;

/* The mode numbered mode (0 .. sf_bench_mode_count() - 1), or NULL. */
const sf_bench_mode_info *sf_bench_mode_get(int mode);

/* The number of modes. */
int sf_bench_mode_count(void);

/* The number of the mode called name, or SF_EUSAGE. */
int sf_bench_mode_find(const char *name);

/* Why a request or a connection failed. Nothing here stops the run. */
typedef struct sf_bench_errors {
    uint64_t refused;       /* ECONNREFUSED (UDP: an ICMP port unreachable came back) */
    uint64_t reset;         /* ECONNRESET, EPIPE, ECONNABORTED */
    uint64_t timeout;       /* no answer within timeout_ms (UDP: see lost) */
    uint64_t closed;        /* the server closed while requests were outstanding */
    uint64_t no_port;       /* EADDRNOTAVAIL / EADDRINUSE: no local port left */
    uint64_t other;         /* anything else; last_other names the latest */
    int last_other;         /* a negative errno, 0 if none */
} sf_bench_errors;

/* What happened in a span of time. */
typedef struct sf_bench_stats {
    uint64_t requests;      /* echoes complete (connect: whole cycles; stream: bytes / size;
                               UDP: datagrams answered) */
    uint64_t mismatches;    /* requests whose echo differed from what was sent */
    uint64_t bytes_out, bytes_in;
    uint64_t connects;      /* connections established */
    uint64_t sent;          /* UDP: datagrams sent */
    uint64_t lost;          /* UDP: datagrams with no reply within timeout_ms */
    uint64_t late;          /* UDP: replies that came after their datagram was given up */
    sf_bench_errors err;
    sf_hist lat;            /* latency of each request, nanoseconds (not in stream mode) */
} sf_bench_stats;

/* One interval, handed to on_interval in the thread that called sf_bench_run. */
typedef struct sf_bench_interval {
    int index;              /* 1, 2, ... */
    double t_s;             /* end of the interval, seconds since the start */
    double len_s;           /* its length (the last one may be short) */
    int warmup;             /* inside the warm-up: not part of the result */
    const sf_bench_stats *st;
} sf_bench_interval;

typedef struct sf_bench_opts {
    int mode;               /* SF_BENCH_* */
    sf_addr target;
    int conns;              /* echo, stream: connections; connect: cycles at once;
                               UDP: datagrams in flight. 0: the mode's default */
    size_t size;            /* bytes per request / datagram / write. 0: the mode's
                               default */
    int pipeline;           /* echo: requests in flight per connection. 0: 1 */
    uint64_t duration_ms;   /* measured time, after the warm-up. 0: 10 s, or 60 s at most
                               when requests is given */
    uint64_t requests;      /* stop after this many measured requests; 0: no count */
    uint64_t warmup_ms;     /* run this long first, outside the figures */
    int threads;            /* loops, one thread each (a single loop runs in the thread
                               that calls sf_bench_run); 0: one per CPU, or half of them
                               (at least one) when the target is an address of this host,
                               so that a local server keeps CPUs to answer with; never more
                               than conns */
    int recv;               /* stream: read what the server sends (chargen) */
    uint32_t timeout_ms;    /* a request unanswered this long is a timeout (UDP: lost;
                               stream: no progress); 0: the mode's default */
    const sf_addr *src;     /* source addresses, used round-robin (port 0); may be NULL */
    int nsrc;
    uint32_t interval_ms;   /* 0: no interval reports */
    void (*on_interval)(void *ud, const sf_bench_interval *iv);
    void *ud;
    const sf_tracer *tracer;    /* every socket call as a "client" event; NULL: off */
} sf_bench_opts;

/* Fill the fields of o left 0 (conns, size, pipeline, timeout_ms, duration_ms) with the
 * defaults of o->mode, as sf_bench_new() would. Returns 0, or SF_EUSAGE for an unknown
 * mode. */
int sf_bench_defaults(sf_bench_opts *o);

/* Whether o suits its mode (defaults applied to a copy): 0, or SF_EUSAGE with err
 * naming the field and the reason, such as "size 4: udp takes 8 to 65507 bytes (...)". */
int sf_bench_check(const sf_bench_opts *o, sf_err *err);

/* The load of o in words, for the first line of a report, such as "50 connections,
 * 64-byte requests, 1 in flight on each" (defaults applied to a copy), cut to fit len
 * with its '\0'. Returns the length of the whole text, as snprintf does, or SF_EUSAGE
 * for an unknown mode. */
int sf_bench_describe(const sf_bench_opts *o, char *buf, size_t len);

/* The most descriptors a run of o holds at once: its connections, and each thread's
 * loop and sockets, with room for the standard streams and a trace file. sf_bench_new()
 * refuses (SF_EUSAGE) when this passes the RLIMIT_NOFILE soft limit: a run that cannot
 * open its connections would only count EMFILE. */
unsigned long sf_bench_fds_needed(const sf_bench_opts *o);

typedef struct sf_bench_result {
    int threads;            /* loops actually used */
    int local_target;       /* the target is an address of this host */
    int threads_halved;     /* threads was 0 and the target local: half the CPUs taken */
    double elapsed_s;       /* the measured window */
    double warmup_s;
    int interrupted;        /* sf_bench_stop() ended it early */
    int reached;            /* opts.requests given and reached */
    sf_bench_stats st;      /* the measured window */
} sf_bench_result;

/* A generator for opts (copied, with sf_bench_defaults() applied; src is copied too).
 * Nothing is connected yet. NULL with err set when the options are wrong (SF_EUSAGE) or
 * memory is short. */
sf_bench *sf_bench_new(const sf_bench_opts *opts, sf_err *err);

/* Run: warm-up, then the measured window, ending at duration_ms or after requests
 * measured requests, whichever comes first. Every wait is bounded: a server that stops
 * answering shows as timeouts, never as a hang. Returns 0 with r filled, or a negative
 * code with err set when the run could not start (threads, loops). */
int sf_bench_run(sf_bench *b, sf_bench_result *r, sf_err *err);

/* End a run early, from any thread or a signal handler. */
void sf_bench_stop(sf_bench *b);

void sf_bench_free(sf_bench *b);

/* Sort a failure code into e. */
void sf_bench_count_error(sf_bench_errors *e, int code);

/* Totals of the error counters. */
uint64_t sf_bench_error_total(const sf_bench_errors *e);

/* Add src into dst. */
void sf_bench_stats_merge(sf_bench_stats *dst, const sf_bench_stats *src);
void sf_bench_stats_init(sf_bench_stats *st);

#endif
