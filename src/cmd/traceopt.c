/* traceopt: --trace[=text|json], --explain, --trace-file, --trace-data, --wire,
 * --ladder, --html, --svg, for every command. */
#include <errno.h>
#include <string.h>

#include "cmd.h"
#include "traceopt.h"

int
cmd_trace_option(cmd_trace *ct, const char *cmd, int ch, const char *arg)
{
    sf_err err;
    int rc = cmd_trace_take(ct, ch, arg, &err);

    if (rc < 0)
        cmd_usage_error(cmd, "%s", err.msg);
    if (rc > 0)
        ct->cmd = cmd;
    return rc;
}

int
cmd_trace_take(cmd_trace *ct, int ch, const char *arg, sf_err *err)
{
    switch (ch) {
    case CMD_OPT_TRACE:
        if (arg == NULL || strcmp(arg, "text") == 0) {
            ct->format = SF_TRACE_TEXT;
        } else if (strcmp(arg, "json") == 0) {
            ct->format = SF_TRACE_JSON;
        } else {
            cmd_parse_error(err, "--trace=%s: text or json", arg);
            return -1;
        }
        break;
    case CMD_OPT_EXPLAIN:
        ct->flags |= SF_TRACE_F_EXPLAIN;
        break;
    case CMD_OPT_TRACE_FILE:
        if (arg == NULL || arg[0] == '\0') {
            cmd_parse_error(err, "--trace-file: name a file");
            return -1;
        }
        ct->file = arg;
        break;
    case CMD_OPT_TRACE_DATA:
        ct->flags |= SF_TRACE_F_DATA;
        break;
    case CMD_OPT_WIRE:
        ct->wire = 1;
        break;
    default:
        return cmd_figure_take(ct, ch, arg, err);
    }
    ct->on = ct->print = 1;
    return 1;
}

int
cmd_trace_open(cmd_trace *ct)
{
    if (!ct->on)
        return 0;
    /* the demo turns its trace on itself */
    ct->print |= !(ct->ladder || ct->html || ct->svg);
    ct->out = stderr;
    if (ct->file && strcmp(ct->file, "-") == 0) {
        ct->out = stdout;
    } else if (ct->file) {
        ct->out = fopen(ct->file, "we");
        if (ct->out == NULL)
            return cmd_fail("--trace-file %s: %s", ct->file, strerror(errno));
    }
    sf_trace_sink_init(&ct->sink, ct->out, ct->format, ct->flags);
    return cmd_figure_open(ct);
}

const sf_tracer *
cmd_tracer(const cmd_trace *ct)
{
    if (ct->on && ct->out && ct->tracer)
        return ct->tracer;
    return ct->on && ct->out ? &ct->sink.tracer : NULL;
}

void
cmd_trace_close(cmd_trace *ct)
{
    cmd_figure_close(ct);
    if (ct->out && ct->out != stderr && ct->out != stdout)
        fclose(ct->out);
    ct->out = NULL;
}
