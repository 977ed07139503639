/* opts: messages, exit codes and option values shared by the subcommands. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

static void
vlog(const char *fmt, va_list ap)
{
    fputs("sockflow: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void
cmd_log(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

int
cmd_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
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

int
cmd_parse_error(sf_err *err, const char *fmt, ...)
{
    va_list ap;

    err->code = SF_EUSAGE;
    va_start(ap, fmt);
    if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0)
        snprintf(err->msg, sizeof(err->msg), "bad arguments");
    va_end(ap);
    return EXIT_USAGE;
}

/* The cluster ("-vé") holding byte c, which getopt took for an option on its own: a
 * cluster it stopped inside is still argv[optind], one it finished is argv[optind - 1]. */
static const char *
cluster_of(int c, char **argv)
{
    const char *prev = optind > 0 ? argv[optind - 1] : NULL;

    if (prev && prev[0] == '-' && prev[1] != '-' && strchr(prev + 1, c))
        return prev;
    if (argv[optind] && argv[optind][0] == '-' && strchr(argv[optind] + 1, c))
        return argv[optind];
    return prev ? prev : "";
}

int
cmd_option_error(int ch, char **argv, sf_err *err)
{
    const char *arg = optind > 0 && argv[optind - 1] ? argv[optind - 1] : "";
    char shown[64];

    /* An unknown long option leaves optopt 0; a known one given a value it does not
     * take ("--json=1") leaves optopt its code; a short one, or a missing value, names
     * it in optopt. */
    if (strncmp(arg, "--", 2) == 0 && (ch == ':' || optopt == 0 || strchr(arg, '=')))
        snprintf(shown, sizeof(shown), "%.*s", (int)strcspn(arg, "="), arg);
    else if (optopt > 0 && optopt < 128)
        snprintf(shown, sizeof(shown), "-%c", optopt);
    /* a byte of a multibyte character ("-é"): the whole cluster, as typed */
    else if (optopt != 0 && optopt > -129 && optopt < 256)
        snprintf(shown, sizeof(shown), "%s", cluster_of((char)optopt, argv));
    else
        snprintf(shown, sizeof(shown), "%s", arg);
    if (ch == ':')
        return cmd_parse_error(err, "option %s needs a value", shown);
    if (strncmp(arg, "--", 2) == 0 && optopt != 0 && strchr(arg, '='))
        return cmd_parse_error(err, "option %s takes no value", shown);
    return cmd_parse_error(err, "unknown option %s", shown);
}

int
cmd_bad_option(const char *cmd, int ch, char **argv)
{
    sf_err err;

    cmd_option_error(ch, argv, &err);
    return cmd_usage_error(cmd, "%s", err.msg);
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
    long v, unit = 1;
    char *end;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    switch (*end) {
    case 'k': case 'K': unit = 1024; end++; break;
    case 'm': case 'M': unit = 1024 * 1024; end++; break;
    case 'g': case 'G': unit = 1024L * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end != '\0' || v > LONG_MAX / unit)
        return -1;
    return v * unit;
}

int
cmd_finish_output(int rc)
{
    int failed = fflush(stdout) == EOF;
    int e = errno;

    if (!failed && !ferror(stdout))
        return rc;
    /* A reader that went away (EPIPE) is not an error of ours, as in the relay. */
    if (failed && e == EPIPE)
        return rc;
    fprintf(stderr, "sockflow: write standard output: %s\n",
            failed ? strerror(e) : "write error");
    return rc == EXIT_OK ? EXIT_FAIL : rc;
}
