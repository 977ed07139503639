/* accessopt: the options serve and listen share for who may connect and as whom they
 * run — --allow, --deny, --allowfile, --denyfile, --max-conns-per-source, --user. */
#ifndef SOCKFLOW_ACCESSOPT_H
#define SOCKFLOW_ACCESSOPT_H

#include "sockflow/access.h"

typedef struct cmd_access {
    sf_access *access;          /* made by cmd_access_init */
    const char *user;           /* --user, or NULL */
} cmd_access;

/* getopt_long codes, clear of the trace options and the commands' own. */
enum { CMD_OPT_ALLOW = 0x7200, CMD_OPT_DENY, CMD_OPT_ALLOWFILE, CMD_OPT_DENYFILE,
       CMD_OPT_MAX_PER_SOURCE, CMD_OPT_USER };

#define CMD_ACCESS_LONGOPTS \
    { "allow", required_argument, NULL, CMD_OPT_ALLOW }, \
    { "deny", required_argument, NULL, CMD_OPT_DENY }, \
    { "allowfile", required_argument, NULL, CMD_OPT_ALLOWFILE }, \
    { "denyfile", required_argument, NULL, CMD_OPT_DENYFILE }, \
    { "max-conns-per-source", required_argument, NULL, CMD_OPT_MAX_PER_SOURCE }, \
    { "user", required_argument, NULL, CMD_OPT_USER }

#define CMD_ACCESS_USAGE \
    "      --allow ADDR[/N]   only clients from ADDR (repeatable; IPv4 and IPv6)\n" \
    "      --deny ADDR[/N]    never clients from ADDR (repeatable; deny wins over allow)\n" \
    "      --allowfile FILE, --denyfile FILE  the same, one rule a line, # comments\n" \
    "      --max-conns-per-source N  at most N clients at once from one address\n" \
    "      --user NAME        after binding, become NAME (groups, group and user; the\n" \
    "                         drop is checked, exit 1 if it did not hold)\n"

/* Returns 0, or EXIT_FAIL with the reason printed. */
int cmd_access_init(cmd_access *ca);
void cmd_access_free(cmd_access *ca);

/* Take option ch if it is one of these: 1 taken, 0 not one of them, or -EXIT_USAGE (a
 * bad rule or value) / -EXIT_FAIL (a rule file unreadable) with err set; prints nothing.
 * ca->access must have been made (cmd_access_init). */
int cmd_access_take(cmd_access *ca, int ch, const char *arg, sf_err *err);

/* The same, the message printed for command cmd. */
int cmd_access_option(cmd_access *ca, const char *cmd, int ch, const char *arg);

/* After binding: --user, if given. Returns 0, or EXIT_FAIL with the reason printed. */
int cmd_access_drop_privileges(const cmd_access *ca);

#endif
