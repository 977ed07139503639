/* spawn: run a program for one connection, as inetd, ncat -e and socat EXEC do — the
 * socket as its standard input and output, nothing else of ours, its own process group,
 * and the addresses in the environment as ucspi-tcp programs read them. */
#ifndef SOCKFLOW_SPAWN_H
#define SOCKFLOW_SPAWN_H

#include <sys/types.h>
#include "err.h"

/* What to run: argv (argv[0] looked up in PATH), or shell, run as /bin/sh -c shell. */
typedef struct sf_spawn_cmd {
    char **argv;
    const char *shell;
} sf_spawn_cmd;

/* Split "PROG ARG..." at blanks (no quoting: -c is for shell syntax) into a NULL-ended
 * argv in cmd, allocated; free it with sf_spawn_cmd_free. Returns 0 or SF_EUSAGE
 * ("-e: no program") / -ENOMEM with err set. */
int sf_spawn_cmd_split(sf_spawn_cmd *cmd, const char *text, sf_err *err);
void sf_spawn_cmd_free(sf_spawn_cmd *cmd);

/* Start cmd with sock_fd as standard input and output (blocking), standard error
 * inherited, every other descriptor closed, the signal mask and dispositions reset, in
 * a new process group, and in the environment PROTO (TCP, UDP or UNIX) and, for IP,
 * TCPLOCALIP, TCPLOCALPORT, TCPREMOTEIP, TCPREMOTEPORT (the names ucspi-tcp and many
 * inetd programs read; set for UDP too). The caller keeps sock_fd and should close it.
 * Returns the child's pid once it has exec'd, or a negative code with err set
 * ("exec nosuch: No such file or directory"; the child is reaped then). */
pid_t sf_spawn(const sf_spawn_cmd *cmd, int sock_fd, sf_err *err);

/* Reap one child that has ended, without waiting: its pid (and *status), 0 if none
 * has ended, or -ECHILD when there are no children. */
pid_t sf_spawn_reap(int *status);

/* "exited 0", "exited 3", "killed by SIGTERM" for a wait status, into buf; returns buf. */
char *sf_spawn_status_text(int status, char *buf, size_t len);

/* Send signo to the child's whole process group. Returns 0 or a negative errno. */
int sf_spawn_signal(pid_t pid, int signo);

#endif
