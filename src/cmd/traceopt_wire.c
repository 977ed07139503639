/* traceopt_wire: --wire, --ladder, --html FILE and --svg FILE for every command: the
 * capture started beside the trace's sink, and the figures drawn when the trace ends. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "traceopt.h"

int
cmd_figure_take(cmd_trace *ct, int ch, const char *arg, sf_err *err)
{
    switch (ch) {
    case CMD_OPT_LADDER:
        ct->ladder = 1;
        break;
    case CMD_OPT_HTML:
    case CMD_OPT_SVG:
        if (arg == NULL || arg[0] == '\0') {
            cmd_parse_error(err, "--%s: name a file", ch == CMD_OPT_HTML ? "html" : "svg");
            return -1;
        }
        if (ch == CMD_OPT_HTML)
            ct->html = arg;
        else
            ct->svg = arg;
        break;
    default:
        return 0;
    }
    ct->on = 1;
    return 1;
}

/* A file named for a figure must be writable before the run, not found out after. */
static int
check_writable(const char *opt, const char *path)
{
    FILE *f;

    if (path == NULL)
        return 0;
    if ((f = fopen(path, "ae")) == NULL)
        return cmd_fail("--%s %s: %s", opt, path, strerror(errno));
    fclose(f);
    return 0;
}

int
cmd_figure_open(cmd_trace *ct)
{
    unsigned what = CMD_WIRE_NONS;

    if (!(ct->wire || ct->ladder || ct->html || ct->svg))
        return 0;
    if (check_writable("html", ct->html) || check_writable("svg", ct->svg))
        return EXIT_FAIL;
    if (ct->wire)
        what |= CMD_WIRE_CAPTURE | CMD_WIRE_PRINT;
    if (ct->ladder || ct->html || ct->svg)
        what |= CMD_WIRE_LADDER;
    ct->cw = cmd_wire_new(ct->cmd ? ct->cmd : "trace", what, ct->print ? &ct->sink : NULL,
                          ct->port);
    if (ct->cw == NULL)
        return cmd_fail("--wire: %s", strerror(ENOMEM));
    ct->tracer = cmd_wire_tracer(ct->cw, ct->print ? &ct->sink.tracer : NULL);
    return 0;
}

void
cmd_figure_close(cmd_trace *ct)
{
    char title[64];

    if (ct->cw == NULL)
        return;
    cmd_wire_settle(ct->cw);
    if (ct->ladder && ct->out) {
        if (ct->print)
            fputc('\n', ct->out);
        cmd_wire_ladder(ct->cw, ct->out, 0);
    }
    if (ct->html || ct->svg) {
        snprintf(title, sizeof(title), "sockflow %s", ct->cmd ? ct->cmd : "");
        cmd_wire_figure(ct->cw, cmd_wire_is_udp(ct->cw) ? 2 : 1, title);
        cmd_wire_write_figures(ct->cw, title, ct->html, ct->svg);
    }
    cmd_wire_free(ct->cw);
    ct->cw = NULL;
    ct->tracer = NULL;
}
