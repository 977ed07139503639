/* sockflow: the command — serve, connect, demo. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static const char usage[] =
    "usage: sockflow COMMAND [OPTIONS] ...\n"
    "\n"
    "  serve   [-l ADDR] [-t|-u] [-j N] SERVICE[:PORT]...   run services (echo discard\n"
    "                                                        chargen daytime time chat)\n"
    "  connect [-u] [-4|-6] [-w SECS] [-q SECS] [-s SRC[:PORT]] HOST PORT\n"
    "                                                        stdin -> socket -> stdout\n"
    "  demo                                                  the TCP and UDP flows, narrated\n"
    "\n"
    "'sockflow COMMAND --help' for the options of one; 'man sockflow' for all.\n";

int
cmd_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("sockflow: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAIL;
}

int
cmd_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sockflow %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'sockflow %s --help'.\n", cmd);
    return EXIT_USAGE;
}

long
cmd_parse_count(const char *s, long max)
{
    char *end;
    long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > max)
        return -1;
    return v;
}

long
cmd_parse_secs_ms(const char *s)
{
    char *end;
    double v;

    if (s == NULL || ((*s < '0' || *s > '9') && *s != '.'))
        return -1;
    v = strtod(s, &end);
    if (*end != '\0' || v < 0 || v > 86400.0 * 365)
        return -1;
    return (long)(v * 1000.0 + 0.5);
}

long
cmd_parse_size(const char *s)
{
    char *end;
    long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    v = strtol(s, &end, 10);
    if (v < 0)
        return -1;
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'm': case 'M': v *= 1024 * 1024; end++; break;
    case 'g': case 'G': v *= 1024L * 1024 * 1024; end++; break;
    default: break;
    }
    return *end == '\0' ? v : -1;
}

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
    if (strcmp(cmd, "connect") == 0)
        return cmd_connect(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    fprintf(stderr, "sockflow: unknown command '%s'\n%s", cmd, usage);
    return EXIT_USAGE;
}
