/* program: run a program on one connected socket and wait for it — listen --inetd and
 * connect -e/-c. */
#ifndef SOCKFLOW_CMD_PROGRAM_H
#define SOCKFLOW_CMD_PROGRAM_H

#include "sockflow/spawn.h"

/* Start cmd with fd as its standard input and output (fd is closed here: the program's
 * copy is then the only one), wait for it, and log how it ended when verbose. Returns
 * EXIT_OK, or EXIT_FAIL with the reason printed (the program could not be run). */
int cmd_run_program(const sf_spawn_cmd *cmd, int fd, int verbose);

#endif
