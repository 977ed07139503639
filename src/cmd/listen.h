/* listen: what `sockflow listen` shares between its setup (listen.c) and the modes run
 * on an event loop (listen_loop.c): exec per connection, the broker, UDP. */
#ifndef SOCKFLOW_CMD_LISTEN_H
#define SOCKFLOW_CMD_LISTEN_H

#include "sockflow/sockflow.h"
#include "sockflow/access.h"
#include "sockflow/spawn.h"
#include "accessopt.h"
#include "traceopt.h"

#define LISTEN_MAX_CONNS_DEFAULT 100    /* as ncat's --max-conns */

typedef struct listen_conf {
    int udp, keep, broker, inetd, verbose;
    int family_flags;
    const char *addr_opt;       /* -l ADDR */
    const char *target;         /* [ADDR:]PORT or unix:... */
    int exec;                   /* -e or -c given */
    sf_spawn_cmd cmd;
    cmd_access ca;              /* --allow/--deny ..., --user */
    sf_access *access;          /* ca.access */
    int max_conns;
    cmd_trace ct;
    sf_trace tr;
    const sf_trace *t;          /* NULL: tracing off */
    /* set up by listen.c */
    int lfd;                    /* listening (or UDP) socket */
    sf_addr bound;
    int sigfd;                  /* read end of the signal pipe: one byte per signal */
} listen_conf;

/* The modes on a loop; each returns an exit status. */
int listen_run_exec(listen_conf *c);
int listen_run_broker(listen_conf *c);
int listen_run_udp(listen_conf *c);

/* Handle the bytes waiting on c->sigfd: returns 2 to stop at once (SIGINT, or a second
 * SIGTERM/SIGHUP), 1 to drain (the first SIGTERM/SIGHUP), 0 otherwise; *child is set
 * when a SIGCHLD came. */
int listen_take_signals(listen_conf *c, int *child);

/* Access check of a new connection from peer: logs a refusal at most once a second.
 * 1 admitted (give the slot back with sf_access_release), 0 refused. */
int listen_admit(listen_conf *c, const sf_addr *peer);


#endif
