/* sockflow: the command — serve, connect, bench, demo. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static const char usage[] =
    "usage: sockflow COMMAND [OPTIONS] ...\n"
    "\n"
    "  serve   [-l ADDR] [-t|-u] [-j N] SERVICE[:PORT]...   run services (echo discard\n"
    "                                                        chargen daytime time chat)\n"
    "  listen  [-k] [-u] [-e PROG] [--broker] [ADDR:]PORT    the listening side of connect\n"
    "  connect [-u] [-4|-6] [-w SECS] [-q SECS] [-s SRC[:PORT]] HOST PORT\n"
    "                                                        stdin -> socket -> stdout\n"
    "  bench   echo|connect|stream|udp HOST PORT [-c N] [-s SIZE] [-d SECS] [--json]\n"
    "                                                        load generator, latency percentiles\n"
    "  demo    [--section N] [--json]                        the TCP and UDP flows, narrated\n"
    "\n"
    "serve, listen, connect and demo take --trace[=text|json], --explain, --trace-file FILE and\n"
    "--trace-data: every socket call, its result and the TCP state after it.\n"
    "\n"
    "'sockflow COMMAND --help' for the options of one; 'man sockflow' for all.\n";

int
main(int argc, char **argv)
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
        printf("sockflow %s\n", SOCKFLOW_VERSION);
        return EXIT_OK;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "listen") == 0)
        return cmd_listen(argc - 1, argv + 1);
    if (strcmp(cmd, "connect") == 0)
        return cmd_connect(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    fprintf(stderr, "sockflow: unknown command '%s'\n%s", cmd, usage);
    return EXIT_USAGE;
}
