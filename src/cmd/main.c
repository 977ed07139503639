/* sockflow: the command — serve, connect, bench, demo; `sockflow HOST PORT` connects. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static const char usage[] =
    "usage: sockflow COMMAND [OPTIONS] ...\n"
    "       sockflow [CONNECT OPTIONS] HOST PORT                  the same as connect\n"
    "\n"
    "  serve   [-l ADDR] [-t|-u] [-j N] SERVICE[:PORT]...   run services (echo discard\n"
    "                                                        chargen daytime time chat)\n"
    "  listen  [-k] [-u] [-e PROG] [--broker] [ADDR:]PORT    the listening side of connect\n"
    "  connect [-u] [-4|-6] [-v] [-n] [-w SECS] [-q SECS] [-i SECS] [-C] [-e PROG]\n"
    "          [-s ADDR[:PORT]] [-p PORT] HOST PORT          stdin -> socket -> stdout\n"
    "  connect -z [-u] [-v] [--json] [--parallel N] [-w SECS] HOST PORTS\n"
    "                                                        port scan (22,80,1-1024)\n"
    "  bench   echo|connect|stream|udp HOST PORT [-c N] [--size SIZE] [-d SECS] [--json]\n"
    "                                                        load generator, latency percentiles\n"
    "  demo    [--section N] [--json]                        the TCP and UDP flows, narrated\n"
    "\n"
    "serve, listen, connect, bench and demo take --trace[=text|json], --explain,\n"
    "--trace-file FILE and --trace-data: every socket call, its result and the TCP state\n"
    "after it.\n"
    "A flag means one thing in every command (docs/options.md).\n"
    "\n"
    "'sockflow COMMAND --help' for the options of one; 'man sockflow' for all.\n";

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    { "serve", cmd_serve },
    { "listen", cmd_listen },
    { "connect", cmd_connect },
    { "bench", cmd_bench },
    { "demo", cmd_demo },
};

static int
run(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (cmd == NULL) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sockflow %s\n", sf_version());
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    /* nc's habit, `sockflow HOST PORT` (options first or not): two words or more that
     * name no command are connect's arguments. */
    if (argc >= 3)
        return cmd_connect(argc, argv);
    fprintf(stderr, "sockflow: unknown command '%s'\n%s", cmd, usage);
    return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
    return cmd_finish_output(run(argc, argv));
}
