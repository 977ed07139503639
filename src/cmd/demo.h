/* demo: what the demo's files share: the run's state, the narration and checks, the
 * bounded helpers, and the sections, each one function listed in demo.c's table. */
#ifndef SOCKFLOW_DEMO_H
#define SOCKFLOW_DEMO_H

#include "cmd.h"

#define DEMO_WAIT_MS 3000   /* the longest any step waits for the kernel */

/* The last event of one call by one side, kept for the checks. */
typedef struct demo_rec {
    sf_call call;
    char side[16];
    unsigned long id;
    unsigned notes;
    int fd, err, state, before;
    long result;
    int32_t queue;
    char local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN], args[64];
    uint64_t t_ns;
} demo_rec;

#define DEMO_MAX_RECS 48

typedef struct demo {
    sf_trace_sink sink;         /* the chosen format and flags */
    sf_trace_sink phone;        /* the same with the telephone picture (section 3) */
    sf_trace_sink *cur;
    sf_tracer tracer;           /* records each event, then writes it through cur */
    int claims, failed, skipped;
    demo_rec recs[DEMO_MAX_RECS];
    int nrecs;
} demo;

/* A section: one function, one line in the table of demo.c. Returns EXIT_OK, or
 * EXIT_FAIL when it could not run (the reason printed); a claim the kernel did not bear
 * out is counted by demo_check, not returned. */
typedef int (*demo_section_fn)(demo *d);

/* ---- recording and narrating (demo_say.c) ---- */

/* Set up d to write to out in format with flags. */
void demo_init(demo *d, FILE *out, int format, unsigned flags);

/* Pass ev through d: recorded for the checks, then written by the current sink. */
void demo_event(demo *d, const sf_trace_event *ev);

/* The last event of call by side#id in this section; an empty record if none. */
const demo_rec *demo_seen(demo *d, const char *side, unsigned long id, sf_call call);

/* Start section n; forgets the events of the last one. */
void demo_section(demo *d, int n, const char *title);

/* Narration; a claim and whether the kernel bore it out; a claim the kernel could not
 * show for a reason outside the demo (said, not counted). */
void demo_say(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void demo_check(demo *d, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void demo_skip(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The claim about a closed connection's state, unless the kernel's TIME_WAIT table
 * overflowed since overflows was read (demo_tw_overflows): then it was dropped, not kept. */
void demo_check_closed_state(demo *d, int state, int want, long overflows, const char *what,
                             const char *tail);
long demo_tw_overflows(void);

/* ---- bounded helpers on the library's calls (demo_help.c) ---- */

/* poll() fd for events for at most ms; 1 when ready. */
int demo_wait_fd(int fd, short events, int ms);
void demo_sleep_ms(int ms);

/* A TCP listener on 127.0.0.1, port 0, with backlog; *a gets its address. */
int demo_listen(const sf_trace *t, int backlog, int blocking, sf_addr *a);
/* sf_tcp_connect to a, waiting at most DEMO_WAIT_MS. */
int demo_connect(const sf_trace *t, const sf_addr *a);
/* A nonblocking connect() that does not wait: the handshake goes on in the kernel. */
int demo_dial(const sf_trace *t, const sf_addr *a);
/* Nonblocking accept of a connection the caller knows is coming (bounded wait). */
int demo_accept_next(const sf_trace *t, int lfd, sf_addr *peer);
ssize_t demo_read_some(const sf_trace *t, int fd, char *buf, size_t len);
/* Ask the kernel about fd's line with TCP_INFO, as a getsockopt event. */
void demo_probe(const sf_trace *t, int fd);
/* The state the kernel holds local <-> peer in, once it is want (bounded), reported as a
 * sock_diag event on t. */
int demo_wait_state(const sf_trace *t, const sf_addr *local, const sf_addr *peer, int want);
/* Close *fd untraced (a section's leftovers) and mark it closed. */
void demo_close_quietly(int *fd);

/* ---- the sections ---- */

int demo_tcp_flow(demo *d);
int demo_udp_flow(demo *d);
int demo_telephone(demo *d);
int demo_blocking_accept(demo *d);
int demo_accept_edges(demo *d);
int demo_handshake(demo *d);
int demo_two_sockets(demo *d);

#endif
