/* serve.h: the parsed options of `sockflow serve`, for the command and its fuzz harness. */
#ifndef SOCKFLOW_CMD_SERVE_H
#define SOCKFLOW_CMD_SERVE_H

#include "accessopt.h"
#include "cmd.h"
#include "traceopt.h"

#define MAX_ADDRS 16

typedef struct serve_conf {
    sf_server_opts so;
    const char *listen[MAX_ADDRS];
    int nlisten;
    unsigned protos;
    int family_flags;
    int quiet;
    int inetd;
    cmd_trace trace;
    cmd_access ca;                  /* made by the caller (cmd_access_init) */
    sf_service *execs[MAX_ADDRS];   /* exec:PORT=... services, freed at the end */
    int nexec;
} serve_conf;

/* The options of argv into c (zeroed by the caller, c->ca made); the services start at
 * optind. Returns 0, EXIT_USAGE or EXIT_FAIL (an unreadable rule file) with err set, or
 * CMD_HELP; prints nothing. */
int serve_parse(int argc, char **argv, serve_conf *c, sf_err *err);

#endif
