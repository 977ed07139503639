/* cmd: option parsing, printing and exit codes — the only place that calls exit(). */
#ifndef SOCKFLOW_CMD_H
#define SOCKFLOW_CMD_H

#include "sockflow/sockflow.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* What a subcommand's parser (serve_parse, connect_parse, bench_parse, demo_parse)
 * returns: 0 to run, EXIT_USAGE with the one-line message in its sf_err, or CMD_HELP
 * for --help. A parser prints nothing and never exits: its caller prints the message
 * (cmd_usage_error) or the usage text. Each starts getopt afresh (optind = 0) and sets
 * opterr = 0, so it may be called many times in one process. */
enum { CMD_HELP = -1 };

int cmd_serve(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* "sockflow: " + message on stderr (a log line: the run goes on). */
void cmd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A subcommand: its name and what runs it. */
typedef struct cmd_entry {
    const char *name;
    int (*run)(int argc, char **argv);
} cmd_entry;

/* The command chosen and the arguments to run it with (argv[0] its name). */
typedef struct cmd_choice {
    const cmd_entry *cmd;
    int argc;
    char **argv;
} cmd_choice;

enum { CMD_VERSION = -2 };

/* The top-level usage text. */
extern const char cmd_usage_text[];

/* Which command `sockflow ARGS` names, into out: 0, CMD_HELP, CMD_VERSION, or EXIT_USAGE
 * with err set (no command, or an unknown one). Prints nothing. */
int cmd_dispatch(int argc, char **argv, cmd_choice *out, sf_err *err);

/* "sockflow: " + message on stderr; returns EXIT_FAIL. */
int cmd_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "sockflow CMD: message" + "Try 'sockflow CMD --help'." on stderr; returns EXIT_USAGE. */
int cmd_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The usage error for what getopt_long returned as ch ('?' or ':'; opterr = 0 and a
 * leading ':' in the option string): the option named as typed. Returns EXIT_USAGE. */
int cmd_bad_option(const char *cmd, int ch, char **argv);
/* Set err to the usage error fmt (SF_EUSAGE); returns EXIT_USAGE. */
int cmd_parse_error(sf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for what getopt_long returned as ch: "unknown option --x", "option -w needs
 * a value", "option --json takes no value", naming the option as typed. */
int cmd_option_error(int ch, char **argv, sf_err *err);
/* A non-negative whole number of at most max, or -1. */
long cmd_parse_count(const char *s, long max);
/* Seconds, fractions allowed ("0.5"), as milliseconds, or -1. */
long cmd_parse_secs_ms(const char *s);
/* "64k", "1m", "512" as bytes, or -1. */
long cmd_parse_size(const char *s);
/* At the end of a command: flush standard output, and if it could not be written
 * (`> /dev/full`) say so on standard error and turn a status of 0 into 1. Returns the
 * status to exit with. main() calls it for every subcommand; a command that exits
 * some other way must call it first. */
int cmd_finish_output(int rc);

#endif
