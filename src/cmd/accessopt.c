/* accessopt: --allow/--deny/--allowfile/--denyfile/--max-conns-per-source/--user. */
#include "cmd.h"
#include "accessopt.h"
#include "sockflow/priv.h"

int
cmd_access_init(cmd_access *ca)
{
    sf_err err;

    ca->user = NULL;
    ca->access = sf_access_new(&err);
    return ca->access ? 0 : cmd_fail("%s", err.msg);
}

void
cmd_access_free(cmd_access *ca)
{
    sf_access_free(ca->access);
    ca->access = NULL;
}

int
cmd_access_take(cmd_access *ca, int ch, const char *arg, sf_err *err)
{
    long v;
    int rc;

    switch (ch) {
    case CMD_OPT_ALLOW: case CMD_OPT_DENY:
        rc = sf_access_add(ca->access, ch == CMD_OPT_ALLOW, arg, err);
        break;
    case CMD_OPT_ALLOWFILE: case CMD_OPT_DENYFILE:
        rc = sf_access_add_file(ca->access, ch == CMD_OPT_ALLOWFILE, arg, err);
        break;
    case CMD_OPT_MAX_PER_SOURCE:
        if ((v = cmd_parse_count(arg, 1 << 20)) < 1)
            return -cmd_parse_error(err, "--max-conns-per-source %s: a positive number", arg);
        sf_access_set_max_per_source(ca->access, (int)v);
        return 1;
    case CMD_OPT_USER:
        if (arg[0] == '\0')
            return -cmd_parse_error(err, "--user: name a user");
        ca->user = arg;
        return 1;
    default:
        return 0;
    }
    if (rc == SF_EADDR)
        return -EXIT_USAGE;
    return rc < 0 ? -EXIT_FAIL : 1;
}

int
cmd_access_option(cmd_access *ca, const char *cmd, int ch, const char *arg)
{
    sf_err err;
    int rc = cmd_access_take(ca, ch, arg, &err);

    if (rc == -EXIT_USAGE)
        return -cmd_usage_error(cmd, "%s", err.msg);
    if (rc == -EXIT_FAIL)
        return -cmd_fail("%s", err.msg);
    return rc;
}

int
cmd_access_drop_privileges(const cmd_access *ca)
{
    sf_err err;

    if (ca->user && sf_drop_privileges(ca->user, &err) < 0)
        return cmd_fail("%s", err.msg);
    return 0;
}
