/* sockflow: the command — serve, connect, bench, demo; `sockflow HOST PORT` connects. */
#include <stdio.h>

#include "cmd.h"

static int
run(int argc, char **argv)
{
    cmd_choice to;
    sf_err err;
    int rc = cmd_dispatch(argc, argv, &to, &err);

    if (rc == CMD_HELP) {
        fputs(cmd_usage_text, stdout);
        return EXIT_OK;
    }
    if (rc == CMD_VERSION) {
        printf("sockflow %s\n", sf_version());
        return EXIT_OK;
    }
    if (rc != 0 && argc < 2) {
        fputs(cmd_usage_text, stderr);
        return EXIT_USAGE;
    }
    if (rc != 0) {
        fprintf(stderr, "sockflow: %s\n%s", err.msg, cmd_usage_text);
        return EXIT_USAGE;
    }
    return to.cmd->run(to.argc, to.argv);
}

int
main(int argc, char **argv)
{
    return cmd_finish_output(run(argc, argv));
}
