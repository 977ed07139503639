/* bench_int: what the generator's core (bench.c) shares with its modes (bench_*.c): the
 * worker a mode runs in, the counting helpers, and the table entry a mode fills in. */
#ifndef SOCKFLOW_BENCH_INT_H
#define SOCKFLOW_BENCH_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sockflow/bench.h"
#include "sockflow/loop.h"
#include "sockflow/sock.h"

#define SF__BENCH_PATLEN 4093u      /* prime: consecutive requests carry other bytes;
                                       small: the pattern stays in the L1 cache */
#define SF__BENCH_WINDOW (64 * 1024)    /* longest read checked against the pattern at once */
#define SF__BENCH_ROUNDS 16         /* reads or writes per wake-up before yielding */

typedef struct sf__bench_worker sf__bench_worker;
typedef struct sf__bench_mode sf__bench_mode;

/* One thread and its loop. The mode keeps its own state behind `m`; the rest is the
 * core's: the clock of this wake-up, the interval being counted and the run's limits. */
struct sf__bench_worker {
    sf_bench *b;
    int index;
    int share;              /* connections or UDP slots of this worker */
    sf_loop *loop;
    pthread_t thread;
    int started;
    void *m;                /* the mode's state (its init makes it, its free frees it) */
    uint64_t quota;         /* measured requests this worker may make; 0: no count */
    uint64_t measured;
    uint64_t outstanding;   /* requests issued and not yet answered or given up */
    int src_next;
    int stopping;
    uint64_t now;
    uint64_t finish_ns;
    int next_tick;          /* index of the next interval boundary */
    uint64_t roll_ns;       /* when it falls; UINT64_MAX: none left */
    uint64_t cur_start_ns;  /* start of the current interval */
    sf_bench_stats cur, total;
    /* handed over under b->mu */
    sf_bench_stats posted;
    int posted_idx;
    int done;
};

struct sf_bench {
    sf_bench_opts o;
    const sf__bench_mode *mode;
    sf_addr *src;
    char *pat;              /* PATLEN + WINDOW bytes: any WINDOW from an offset < PATLEN */
    void *shared;           /* the mode's state common to all workers (setup/teardown) */
    sf__bench_worker *w;
    int nw;
    uint64_t start_ns, warm_end_ns, end_ns;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* The reporting: the next interval to hand to on_interval, where the last one ended,
     * and room for the sum (NULL: no interval reports). */
    int rep_k;
    uint64_t rep_last_ms;
    sf_bench_stats *rep_st;
};

/* A mode: what it is called and its defaults (public through sf_bench_mode_get), and
 * what it does. The core calls these and nothing else. start, sweep and finish run in
 * the worker's thread; the others in the caller's. setup, teardown and free may be NULL. */
struct sf__bench_mode {
    sf_bench_mode_info info;
    /* Once per generator, before the workers: state shared read-only by them. */
    int (*setup)(sf_bench *b, sf_err *err);
    void (*teardown)(sf_bench *b);
    /* Per worker: make w->m for w->share connections or slots; free it. */
    int (*init)(sf__bench_worker *w, sf_err *err);
    void (*free)(sf__bench_worker *w);
    /* The run: open the load; every sweep (timeouts, reopening); close it all. */
    void (*start)(sf__bench_worker *w);
    void (*sweep)(sf__bench_worker *w);
    void (*finish)(sf__bench_worker *w);
    /* The load in words, for the first line of a report. */
    int (*describe)(const sf_bench_opts *o, char *buf, size_t len);
};

/* The table entry of mode (enum sf_bench_mode order), or NULL (bench_modes.c). */
const sf__bench_mode *sf__bench_mode_of(int mode);

/* ---- counting, for the modes (bench.c) ---- */

/* Close the intervals whose boundary w->now has passed (bench.c). */
void sf__bench_roll(sf__bench_worker *w);

/* The time of this wake-up, into w->now; an interval boundary passed since closes the
 * interval first, so that every count lands in the interval it happened in. Inline, like
 * the two below: they run for every request, a million times a second and more. */
static inline void
sf__bench_clock_in(sf__bench_worker *w)
{
    w->now = sf_now_ns();
    if (w->now >= w->roll_ns)
        sf__bench_roll(w);
}

/* Is w->now past the warm-up? */
static inline int
sf__bench_measuring(const sf__bench_worker *w)
{
    return w->now >= w->b->warm_end_ns;
}

/* One request answered after lat_ns: counted, its latency recorded. */
static inline void
sf__bench_record(sf__bench_worker *w, uint64_t lat_ns)
{
    w->cur.requests++;
    sf_hist_record(&w->cur.lat, lat_ns);
    if (sf__bench_measuring(w))
        w->measured++;
}

/* n requests done without a latency (stream: whole buffers moved). */
void sf__bench_count_done(sf__bench_worker *w, uint64_t n);

/* A failure code sorted into the current interval's errors. */
void sf__bench_count_error(sf__bench_worker *w, int code);

/* May another request be issued (not stopping, the count not reached)? */
static inline int
sf__bench_can_issue(const sf__bench_worker *w)
{
    return !w->stopping && (w->quota == 0 || w->measured + w->outstanding < w->quota);
}

/* Stop the worker once its count is reached and nothing is in flight. */
void sf__bench_check_quota(sf__bench_worker *w);

/* The pattern at offset off: at least SF__BENCH_WINDOW bytes readable. */
const char *sf__bench_pat_at(const sf_bench *b, uint64_t off);

/* The next source address (round-robin), or NULL for the kernel's choice. */
const sf_addr *sf__bench_pick_source(sf__bench_worker *w);

/* The trace for connection number id of w (0: the worker's own socket), or NULL when
 * tracing is off: one branch then. */
static inline const sf_trace *
sf__bench_trace(const sf__bench_worker *w, unsigned long id, sf_trace *t)
{
    if (w->b->o.tracer == NULL)
        return NULL;
    t->tracer = w->b->o.tracer;
    t->side = "client";
    t->id = id;
    return t;
}

/* ---- the host (bench_host.c) ---- */

/* CPUs this process may run on. */
int sf__bench_cpus(void);

/* Is a an address of this host: loopback, or one of its interfaces' addresses? */
int sf__bench_is_local(const sf_addr *a);

/* The threads a run of o uses (o with its defaults). */
int sf__bench_threads(const sf_bench_opts *o);

/* 0, or SF_EUSAGE when a run of o needs more descriptors than RLIMIT_NOFILE allows. */
int sf__bench_check_fds(const sf_bench_opts *o, sf_err *err);

/* ---- the interval clock (bench.c; here for the tests) ---- */

/* Boundary k (1, 2, ...) in ns on the monotonic clock, or UINT64_MAX when it falls at or
 * after the end of the run. One falls on the end of the warm-up. */
uint64_t sf__bench_boundary_ns(const sf_bench *b, int k);

/* Close the current interval at end_ns: into the total if it lies after the warm-up, and
 * to the reporting thread. done: the worker's last. */
void sf__bench_close_interval(sf__bench_worker *w, uint64_t end_ns, int done);

/* ---- the TCP machinery shared by echo, connect and stream (bench_tcp.c) ---- */

enum { SF__C_DOWN, SF__C_CONNECTING, SF__C_UP };

typedef struct sf__bench_conn sf__bench_conn;
typedef struct sf__bench_tcp sf__bench_tcp;

struct sf__bench_conn {
    sf__bench_worker *w;
    int fd;
    int state;
    int want_write;
    uint32_t seed;          /* offset of this connection's bytes in the pattern */
    uint64_t sent_off;      /* bytes written */
    uint64_t recv_off;      /* bytes read back */
    uint64_t issued, done;  /* requests */
    uint64_t bad_req;       /* 1 + the last request counted as a mismatch; 0 none */
    uint64_t start_ns;      /* connect: start of the cycle; stream: last progress */
    uint64_t *ts;           /* echo: issue time of each request in flight (pipeline) */
    uint64_t ts_in, ts_out; /* where the next is written and the oldest read: issued and
                               done modulo the pipeline, kept without a division */
};

/* A TCP mode's part of the connection's life, called by bench_tcp.c. */
typedef struct sf__bench_tcp_ops {
    int nodelay;            /* TCP_NODELAY: small requests must not wait for an ACK */
    int write_first;        /* call writable at once after connect() began */
    int always_write;       /* watched for writing as long as it lives (a bulk writer) */
    /* Start c, a free slot, at the start and at each sweep: sf__bench_conn_start, or a
     * new cycle. */
    void (*open)(sf__bench_worker *w, sf__bench_conn *c);
    /* connect() began on c: issue its first requests. NULL: none. */
    void (*opened)(sf__bench_worker *w, sf__bench_conn *c);
    /* n bytes arrived. Returns 0 to go on reading, 1 to close (counted by the callee),
     * 2 when c was closed and reopened, 3 to stop reading for this wake-up. */
    int (*got)(sf__bench_worker *w, sf__bench_conn *c, const char *p, size_t n);
    /* The socket is writable, or requests wait to be written: 0 or a negative errno. */
    int (*writable)(sf__bench_worker *w, sf__bench_conn *c);
    /* Since when c waits for an answer or progress (its timeout counts from there).
     * NULL: c->start_ns (connect: the cycle's start; stream: the last progress). */
    uint64_t (*since)(const sf__bench_worker *w, const sf__bench_conn *c);
    /* Read buffer for this mode; NULL: SF__BENCH_WINDOW. */
    size_t (*rbuflen)(const sf_bench_opts *o);
} sf__bench_tcp_ops;

/* A worker's TCP state: its connections and the one read buffer. */
struct sf__bench_tcp {
    const sf__bench_tcp_ops *ops;
    sf__bench_conn *conns;
    int nconns;
    uint64_t *tsbuf;
    char *rbuf;
    size_t rbuflen;
    uint64_t cycles;        /* connect: cycles begun, for their pattern offsets */
    int starved;            /* out of descriptors: no more opening until the next sweep */
};

/* A TCP mode's table entry uses these (SF__BENCH_TCP_CALLS), its init passing its ops. */
int sf__bench_tcp_init(sf__bench_worker *w, const sf__bench_tcp_ops *ops, int pipeline,
                       sf_err *err);
void sf__bench_tcp_free(sf__bench_worker *w);
void sf__bench_tcp_start(sf__bench_worker *w);
void sf__bench_tcp_sweep(sf__bench_worker *w);
void sf__bench_tcp_finish(sf__bench_worker *w);
/* The part of a TCP mode's table entry that is the same in every one: after its own
 * .init (which passes its ops) and .describe, it names these. */
#define SF__BENCH_TCP_CALLS                                  \
    .free = sf__bench_tcp_free, .start = sf__bench_tcp_start, \
    .sweep = sf__bench_tcp_sweep, .finish = sf__bench_tcp_finish

/* Connect c (a free slot) and watch it; failures are counted, and the sweep tries again. */
void sf__bench_conn_start(sf__bench_worker *w, sf__bench_conn *c);
/* Close c and forget its requests in flight. */
void sf__bench_conn_close(sf__bench_worker *w, sf__bench_conn *c);
/* Write what has been issued and not yet written: 0 or a negative errno. */
int sf__bench_conn_flush(sf__bench_worker *w, sf__bench_conn *c);
/* Check n bytes that came back against what was sent at the same offset; count each
 * request with a wrong byte once. */
void sf__bench_check_bytes(sf__bench_worker *w, sf__bench_conn *c, const char *p, size_t n);
/* Watch c for reading, and for writing while want_write (or always_write). */
void sf__bench_conn_events(sf__bench_worker *w, sf__bench_conn *c);
/* c is connected (its first byte went or came): counted once. */
void sf__bench_conn_up(sf__bench_worker *w, sf__bench_conn *c);
/* The trace of c's calls (numbered across threads: loop index, then slot), or NULL
 * when off. */
static inline const sf_trace *
sf__bench_conn_trace(const sf__bench_worker *w, const sf__bench_conn *c, sf_trace *t)
{
    const sf__bench_tcp *tc = w->m;

    return sf__bench_trace(w, (unsigned long)w->index * (unsigned long)tc->nconns +
                              (unsigned long)(c - tc->conns) + 1, t);
}

/* ---- UDP (bench_udp.c; here for the tests) ---- */

typedef struct sf__bench_uslot {
    uint32_t hdr[2];        /* slot, sequence: the first 8 bytes of the datagram */
    int busy;
    int queued;             /* in the pending list, not yet handed to the kernel */
    uint64_t sent_ns;
} sf__bench_uslot;

/* A worker's UDP state: its socket and slots. */
typedef struct sf__bench_udp_state {
    int fd;
    sf__bench_uslot *slots;
    int nslots;
    uint32_t next_seq;
    int *pending;           /* slots waiting to be sent */
    int npending;
    int batch;
    char *rbuf;
} sf__bench_udp_state;


/* A reply of len bytes came: matched to its slot, checked, counted. */
void sf__bench_udp_reply(sf__bench_worker *w, const char *p, size_t len);

#endif
