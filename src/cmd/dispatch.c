/* dispatch: which subcommand a command line names — the usage text, the table of
 * commands, and `sockflow HOST PORT` taken as connect. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

const char cmd_usage_text[] =
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

static const cmd_entry commands[] = {
    { "serve", cmd_serve },
    { "listen", cmd_listen },
    { "connect", cmd_connect },
    { "bench", cmd_bench },
    { "demo", cmd_demo },
};

static const cmd_entry *
find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

int
cmd_dispatch(int argc, char **argv, cmd_choice *out, sf_err *err)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (cmd == NULL)
        return cmd_parse_error(err, "name a command");
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0)
        return CMD_HELP;
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0)
        return CMD_VERSION;
    if ((out->cmd = find(cmd)) != NULL) {
        out->argc = argc - 1;
        out->argv = argv + 1;
        return 0;
    }
    /* nc's habit, `sockflow HOST PORT` (options first or not): two words or more that
     * name no command are connect's arguments. */
    if (argc >= 3) {
        *out = (cmd_choice){ find("connect"), argc, argv };
        return 0;
    }
    return cmd_parse_error(err, "unknown command '%s'", cmd);
}
