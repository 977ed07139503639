/* demo: what the demo's files share: the run's state, the narration and checks, the
 * bounded helpers, and the sections, each one function listed in demo.c's table. */
#ifndef SOCKFLOW_DEMO_H
#define SOCKFLOW_DEMO_H

#include <pthread.h>

#include "cmd.h"
#include "traceopt.h"

#define DEMO_WAIT_MS 3000   /* the longest any step waits for the kernel */

/* The text in the run's language: Z(d, "english", "中文"). Both are printf formats with
 * the same arguments. */
#define Z(d, en, zh) ((d)->lang == SF_LANG_ZH ? (zh) : (en))

/* The last event of one call by one side (entry or return), kept for the checks. */
typedef struct demo_rec {
    sf_call call;
    int phase;
    char side[16];
    unsigned long id;
    unsigned notes;
    int fd, err, state, before;
    long result;
    int32_t queue;
    char local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN], args[64];
    sf_addr addr;               /* the address the call concerned (sf_trace_about), or
                                   family AF_UNSPEC */
    uint64_t t_ns;
} demo_rec;

#define DEMO_MAX_RECS 64
#define DEMO_MAX_SEQ 64
#define DEMO_MAX_HELD 48
#define DEMO_MAX_CHECKS 16

/* An event held while threads run, printed in time order once they are joined. */
typedef struct demo_held {
    sf_trace_event ev;
    char args[128], local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN], side[16];
    sf_addr addr;
    int late;                   /* a return in another thread: printed after the rest */
} demo_held;

typedef struct demo {
    sf_trace_sink sink;         /* the chosen format and flags */
    sf_trace_sink phone;        /* the same with the telephone picture (section 3) */
    sf_trace_sink *cur;
    sf_tracer tracer;           /* records each event, then writes it through cur */
    int lang;                   /* SF_LANG_EN or SF_LANG_ZH */
    int colour, verbose, step;
    int claims, failed, skipped;
    pthread_mutex_t lock;       /* events come from a section's threads too */
    pthread_t main_thread;
    demo_rec recs[DEMO_MAX_RECS];
    int nrecs;
    struct { char side; sf_call call; } seq[DEMO_MAX_SEQ];  /* return order, per section */
    int nseq;
    int holding, quiet;         /* hold events for sorting; keep probes out of the output */
    demo_held held[DEMO_MAX_HELD];
    int nheld;
    int entries;                /* show the entries of calls that may sleep */
    char checks[DEMO_MAX_CHECKS][640];   /* this section's checks, said at its end */
    int nchecks;
    struct demo_wire *wire;     /* the capture, ladders and figures (demo_wire.h) */
} demo;

/* A section: one function, one line in the table of demo.c. Returns EXIT_OK, or
 * EXIT_FAIL when it could not run (the reason printed); a claim the kernel did not bear
 * out is counted by demo_check, not returned. */
typedef int (*demo_section_fn)(demo *d);

/* ---- the language of the locale (demo_lang.c) ---- */

/* SF_LANG_ZH or SF_LANG_EN as gettext would choose a catalogue: the C locale (LC_ALL=C)
 * means English whatever LANGUAGE says; else the first language of the LANGUAGE list
 * ("zh_CN:en") that has texts; else the LC_MESSAGES locale (LC_ALL, LC_MESSAGES, LANG).
 * Chinese only when the terminal's codeset is UTF-8. The process's locale stays C. */
int demo_locale_lang(void);

/* The options of `sockflow demo`, as parsed. */
typedef struct demo_opts_t {
    cmd_trace ct;
    int only, lang, step, verbose, colour;     /* colour: -1 auto, 0 never, 1 always */
} demo_opts_t;

/* The options of argv into o (only: 0 or a section number; lang from the locale unless
 * --lang). Returns 0, EXIT_USAGE with err set, or CMD_HELP; prints nothing. */
int demo_parse(int argc, char **argv, demo_opts_t *o, sf_err *err);

/* The number of sections in the table of demo.c. */
int demo_section_count(void);

/* ---- recording and narrating (demo_say.c) ---- */

/* Set up d to write to out in format with flags (SF_TRACE_F_*), in lang. */
void demo_init(demo *d, FILE *out, int format, unsigned flags, int lang);

/* Pass ev through d: recorded for the checks, then written (or held). */
void demo_event(demo *d, const sf_trace_event *ev);

/* The last return (demo_seen) or entry (demo_entry) of call by side#id in this section;
 * an empty record if none. */
const demo_rec *demo_seen(demo *d, const char *side, unsigned long id, sf_call call);
const demo_rec *demo_entry(demo *d, const char *side, unsigned long id, sf_call call);

/* The calls side ('s' or 'c') returned from in this section, in order, as names joined
 * by " " into buf; calls in skip are left out. */
const char *demo_calls(demo *d, char side, const sf_call *skip, int nskip, char *buf,
                       size_t len);

/* Start section n: its title and the one line of what to notice. */
void demo_section(demo *d, int n, const char *title, const char *notice);
/* End the section: its checks, then the pause of --step when more is to come. */
void demo_section_end(demo *d, int more);

/* --step: none, after each section, after each call printed. */
enum { DEMO_STEP_NONE = 0, DEMO_STEP_SECTION, DEMO_STEP_EVENT };

/* Wait (bounded) until side#id has entered call in another thread: a section that shows
 * a call asleep makes its move only once the call is under way. */
void demo_wait_entry(demo *d, const char *side, unsigned long id, sf_call call);

/* Show the entries of blocking calls (on) or only their returns (off, the default):
 * a section turns them on around the call whose sleep it shows. */
void demo_entries(demo *d, int on);

/* Hold events (threads about to run) / print the held ones: in time order, except that
 * a call another thread returned from comes after the main thread's calls that woke it
 * (their times can be a few microseconds apart either way); release after joining. */
void demo_hold(demo *d);
void demo_release(demo *d);

/* Narration; a claim and whether the kernel bore it out (said at the section's end); a
 * claim the kernel could not show for a reason outside the demo (said, not counted). */
void demo_say(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void demo_check(demo *d, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void demo_skip(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The claim about a closed connection's state, unless the kernel's TIME_WAIT table
 * overflowed since overflows was read (demo_tw_overflows): then it was dropped, not kept. */
void demo_check_closed_state(demo *d, int state, int want, long overflows, const char *what,
                             const char *tail);
long demo_tw_overflows(void);

/* ---- bounded helpers on the library's calls (demo_help.c) ---- */

int demo_wait_fd(int fd, short events, int ms);
void demo_sleep_ms(int ms);

/* A TCP listener on 127.0.0.1 (or ::1 for AF_INET6), port 0; *a gets its address. */
int demo_listen(const sf_trace *t, int family, int backlog, int blocking, sf_addr *a);
/* socket → setsockopt → bind on 127.0.0.1, port 0, blocking, not yet listening (the
 * seed's bind() step on its own); *a gets the address. -1 when it fails (said). */
int demo_bound(const sf_trace *t, sf_addr *a);
/* The seed's client: socket(), then a blocking connect() that returns 0 once the
 * handshake is complete; the socket is left blocking. -1 when refused (said). */
int demo_connect(const sf_trace *t, const sf_addr *a);
/* The same, without a message when it fails: the fd, or a negative code (the socket
 * closed, traced). */
int demo_try_connect(const sf_trace *t, const sf_addr *a);
/* A nonblocking connect() that does not wait: the handshake goes on in the kernel. */
int demo_dial(const sf_trace *t, const sf_addr *a);
/* Nonblocking accept of a connection the caller knows is coming (bounded wait). */
int demo_accept_next(const sf_trace *t, int lfd, sf_addr *peer);
ssize_t demo_read_some(const sf_trace *t, int fd, char *buf, size_t len);
/* Ask the kernel about fd's line with TCP_INFO, as a getsockopt event (shown with -v). */
void demo_probe(demo *d, const sf_trace *t, int fd);
/* The state the kernel holds local <-> peer in, once it is want (bounded), reported as a
 * sock_diag event on t (shown with -v). */
int demo_wait_state(demo *d, const sf_trace *t, const sf_addr *local, const sf_addr *peer,
                    int want);
/* Join th within ms; 1 when joined. */
int demo_join(pthread_t th, int ms);
/* Close *fd untraced (a section's leftovers) and mark it closed. */
void demo_close_quietly(int *fd);
/* The port of fd's own address (0 before it has one). */
int demo_local_port(int fd);

/* ---- the sections, numbered as the seed ---- */

int demo_tcp_flow(demo *d);
int demo_udp_flow(demo *d);
int demo_telephone(demo *d);
int demo_in_depth(demo *d);
int demo_accept_documented(demo *d);
int demo_accept_inside(demo *d);
int demo_handshake(demo *d);
int demo_two_sockets(demo *d);

#endif
