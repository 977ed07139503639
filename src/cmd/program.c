/* program: one program on one connection, waited for. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"
#include "program.h"

int
cmd_run_program(const sf_spawn_cmd *cmd, int fd, int verbose)
{
    char how[64];
    sf_err err;
    int status;
    pid_t pid = sf_spawn(cmd, fd, &err);

    close(fd);
    if (pid < 0)
        return cmd_fail("%s", err.msg);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return cmd_fail("waitpid %d: %s", (int)pid, strerror(errno));
    if (verbose)
        fprintf(stderr, "sockflow: %d %s\n", (int)pid,
                sf_spawn_status_text(status, how, sizeof(how)));
    return EXIT_OK;
}
