/* connect.h: the parsed options of `sockflow connect`, shared by the relay (connect.c)
 * and the port scan (scan.c). */
#ifndef SOCKFLOW_CMD_CONNECT_H
#define SOCKFLOW_CMD_CONNECT_H

#include "sockflow/sockflow.h"
#include "traceopt.h"

typedef struct connect_args {
    int flags;              /* SF_ADDR_V4ONLY, SF_ADDR_V6ONLY, SF_ADDR_NUMERIC, SF_ADDR_DGRAM */
    int udp, verbose, crlf, scan, json;
    long wait_ms;           /* -w; < 0: not given */
    long quit_ms;           /* -q; < 0: not given */
    long idle_ms;           /* -i; 0: none */
    long parallel;          /* --parallel; 0: the default */
    const char *source;     /* -s ADDR[:PORT] */
    const char *src_port;   /* -p PORT */
    char host[256];         /* HOST, without the brackets of "[::1]" */
    const char *port;       /* PORT, or the ports to scan; "" for a unix: address */
    const char *exec_text;  /* -e 'PROG ARGS', split when used */
    const char *shell;      /* -c 'CMD', run by /bin/sh -c */
    cmd_trace ct;
} connect_args;

/* The options and arguments of argv into a. Returns 0, EXIT_USAGE with err set, or
 * CMD_HELP; prints nothing. Resolves nothing but a service name for PORT. */
int connect_parse(int argc, char **argv, connect_args *a, sf_err *err);

/* The source address for -s/-p in the family of dst, into src. Returns 1 when there is
 * one, 0 when none was asked for, or minus the exit status (the message printed). */
int connect_source(const connect_args *a, const sf_addr *dst, sf_addr *src);

/* `sockflow connect -z HOST PORTS`: the scan, its lines or JSON, and the exit status. */
int connect_scan(const connect_args *a);

#endif
