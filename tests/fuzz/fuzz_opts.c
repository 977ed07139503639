/* fuzz_opts: libFuzzer harness for the command's real option parsing. The input is a
 * command line, its arguments split at NUL or newline, after "sockflow": the top-level
 * dispatch picks the subcommand, then that subcommand's parser takes the arguments, as
 * main() does — up to the point where the command would resolve, bind or connect.
 * Oracles: every parse returns 0, CMD_HELP or EXIT_USAGE (EXIT_FAIL: a file an option
 * names could not be read); a usage error has a non-empty
 * one-line message, and one about an option names it as typed; a successful parse
 * holds only values the command accepts (ports, counts, sizes and durations in range). */
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/bench_cmd.h"
#include "cmd/cmd.h"
#include "cmd/connect.h"
#include "cmd/demo.h"
#include "cmd/serve.h"

#define MAX_ARGS 64
#define MAX_INPUT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* __builtin_trap, not abort(): libFuzzer reports it as the crash it is. */
#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

/* Whether some argument contains the n bytes of s. */
static int
in_argv(int argc, char **argv, const char *s, size_t n)
{
    for (int i = 0; i < argc; i++)
        if (memmem(argv[i], strlen(argv[i]), s, n) != NULL)
            return 1;
    return n == 0;
}

/* A usage error: one line, and an option error names an option the command line has. */
static void
check_message(const sf_err *err, int argc, char **argv)
{
    static const char *const prefixes[] = { "unknown option ", "option " };
    static const char *const suffixes[] = { " needs a value", " takes no value" };
    const char *m = err->msg, *name = NULL;
    size_t n;

    CHECK(m[0] != '\0' && strchr(m, '\n') == NULL && strlen(m) < sizeof(err->msg));
    CHECK(strcmp(m, "unknown option") != 0);
    for (int i = 0; i < 2 && name == NULL; i++)
        if (strncmp(m, prefixes[i], strlen(prefixes[i])) == 0)
            name = m + strlen(prefixes[i]);
    /* "unknown option x: no such mode" is an argument echoed, not getopt's complaint */
    for (int i = 1; i < argc && name != NULL; i++)
        if (argv[i][0] != '\0' && strncmp(m, argv[i], strlen(argv[i])) == 0)
            name = NULL;
    if (name == NULL)
        return;
    n = strlen(name);
    for (int i = 0; i < 2; i++) {
        size_t k = strlen(suffixes[i]);

        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            n -= k;
    }
    CHECK(n > 0 && name[0] == '-');
    /* "-x" may come from a cluster "-vx": what follows the dash must be there */
    while (n > 0 && name[0] == '-')
        name++, n--;
    CHECK(in_argv(argc, argv, name, n));
}

static void
check_trace(const cmd_trace *ct)
{
    CHECK(ct->format == SF_TRACE_TEXT || ct->format == SF_TRACE_JSON);
    CHECK(ct->file == NULL || ct->file[0] != '\0');
    CHECK(ct->out == NULL);
    CHECK(ct->on || (ct->flags == 0 && ct->file == NULL));
}

static void
check_family(int flags)
{
    CHECK((flags & (SF_ADDR_V4ONLY | SF_ADDR_V6ONLY)) != (SF_ADDR_V4ONLY | SF_ADDR_V6ONLY));
}

static int
parse_serve(int argc, char **argv, sf_err *err)
{
    static serve_conf c;
    int rc;

    memset(&c, 0, sizeof(c));
    CHECK(cmd_access_init(&c.ca) == 0);
    rc = serve_parse(argc, argv, &c, err);
    cmd_access_free(&c.ca);
    if (rc != 0)
        return rc;
    CHECK(optind < argc);       /* a service at least */
    CHECK(c.nlisten >= 0 && c.nlisten <= MAX_ADDRS);
    for (int i = 0; i < c.nlisten; i++)
        CHECK(c.listen[i] != NULL);
    CHECK(c.protos != 0 && (c.protos & ~(unsigned)(SF_PROTO_TCP | SF_PROTO_UDP)) == 0);
    CHECK(c.family_flags == 0 || c.family_flags == SF_ADDR_V4ONLY ||
          c.family_flags == SF_ADDR_V6ONLY);
    CHECK(c.so.loops >= 0 && c.so.loops <= 64);
    CHECK(c.so.backlog >= 0 && c.so.backlog <= 1 << 20);
    CHECK(c.so.max_conns >= 0 && c.so.max_conns <= 1 << 24);
    CHECK(c.so.queue_cap <= (size_t)1 << 30);
    CHECK(c.so.dgram_max <= 65536);
    CHECK(c.so.udp_rate <= 100000000 || c.so.udp_rate == SF_UDP_NO_LIMIT);
    CHECK(c.so.udp_burst <= 100000000 && c.so.udp_sources <= 100000000);
    check_trace(&c.trace);
    return 0;
}

static int
all_digits(const char *s)
{
    return s[0] != '\0' && strspn(s, "0123456789") == strlen(s);
}

static int
parse_connect(int argc, char **argv, sf_err *err)
{
    static connect_args a;
    int rc;

    if ((rc = connect_parse(argc, argv, &a, err)) != 0)
        return rc;
    CHECK(strlen(a.host) < sizeof(a.host) && a.port != NULL);
    if (!a.scan && all_digits(a.port))
        CHECK(sf_addr_parse_port(a.port, NULL) >= 0);
    if (a.src_port)
        CHECK(all_digits(a.src_port) && sf_addr_parse_port(a.src_port, NULL) >= 0);
    CHECK(a.wait_ms >= -1 && a.wait_ms <= 0x7fffffff);
    CHECK(a.quit_ms >= -1 && a.quit_ms <= 0x7fffffff);
    CHECK(a.idle_ms >= 0 && a.idle_ms <= 0x7fffffff);
    CHECK(a.parallel >= 0 && a.parallel <= 65535);
    CHECK(a.scan || (!a.json && a.parallel == 0));
    CHECK(!a.scan || (a.quit_ms < 0 && a.idle_ms == 0 && !a.crlf && !a.ct.on));
    CHECK(!a.udp == !(a.flags & SF_ADDR_DGRAM));
    check_family(a.flags);
    check_trace(&a.ct);
    return 0;
}

static int
parse_bench(int argc, char **argv, sf_err *err)
{
    static bench_conf c;
    sf_bench_opts o;
    int rc;

    memset(&c, 0, sizeof(c));
    if ((rc = bench_parse(argc, argv, &c, err)) != 0)
        return rc;
    CHECK(argc - optind == 3);
    CHECK(c.o.mode >= 0 && c.o.mode < sf_bench_mode_count());
    CHECK(c.o.conns >= 0 && c.o.conns <= 1000000);
    CHECK(c.o.pipeline >= 0 && c.o.pipeline <= 4096);
    CHECK(c.o.threads >= 0 && c.o.threads <= 256);
    CHECK(c.o.size <= (size_t)64 << 20);
    CHECK(c.o.duration_ms <= 86400000 && c.o.warmup_ms <= 86400000);
    CHECK(c.o.timeout_ms <= 86400000);
    CHECK(c.interval_ms >= -1 && c.interval_ms <= 86400000);
    CHECK(c.o.nsrc >= 0 && c.o.nsrc <= MAX_SRC);
    CHECK(c.src_text != NULL || c.o.nsrc == 0);
    check_family(c.family_flags);
    check_trace(&c.trace);
    /* with the library's defaults the run is one the library takes */
    o = c.o;
    sf_bench_defaults(&o);
    CHECK(o.conns >= 1 && o.size >= 1 && o.duration_ms >= 1 && o.timeout_ms >= 1);
    CHECK(sf_bench_check(&o, err) == 0);
    return 0;
}

static int
parse_demo(int argc, char **argv, sf_err *err)
{
    demo_opts_t o;
    int rc;

    if ((rc = demo_parse(argc, argv, &o, err)) != 0)
        return rc;
    CHECK(optind == argc);
    CHECK(o.only >= 0 && o.only <= demo_section_count());
    CHECK(o.lang == SF_LANG_EN || o.lang == SF_LANG_ZH);
    CHECK(o.step >= DEMO_STEP_NONE && o.step <= DEMO_STEP_EVENT);
    CHECK(o.colour >= -1 && o.colour <= 1 && (o.verbose == 0 || o.verbose == 1));
    check_trace(&o.ct);
    return 0;
}

/* Every subcommand with a parser. A new subcommand (listen) is one line here, its
 * parse_X checking what its parser promises. */
static const struct {
    const char *name;
    int (*parse)(int argc, char **argv, sf_err *err);
} parsers[] = {
    { "serve", parse_serve },
    { "connect", parse_connect },
    { "bench", parse_bench },
    { "demo", parse_demo },
};

/* The dispatch, then the chosen parser, with the oracles on what they returned. */
static void
parse_line(int argc, char **argv)
{
    cmd_choice to;
    sf_err err;
    int rc = cmd_dispatch(argc, argv, &to, &err);

    CHECK(rc == 0 || rc == CMD_HELP || rc == CMD_VERSION || rc == EXIT_USAGE);
    if (rc == EXIT_USAGE)
        check_message(&err, argc, argv);
    if (rc != 0)
        return;
    CHECK(to.cmd != NULL && to.argc >= 1 && to.argv + to.argc == argv + argc);
    for (size_t i = 0; i < sizeof(parsers) / sizeof(parsers[0]); i++) {
        if (strcmp(to.cmd->name, parsers[i].name) != 0)
            continue;
        rc = parsers[i].parse(to.argc, to.argv, &err);
        /* EXIT_FAIL: a file an option names could not be read (serve's --allowfile) */
        CHECK(rc == 0 || rc == CMD_HELP || rc == EXIT_USAGE || rc == EXIT_FAIL);
        if (rc == EXIT_USAGE || rc == EXIT_FAIL)
            check_message(&err, to.argc, to.argv);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[MAX_INPUT + 1], prog[] = "sockflow";
    char *argv[MAX_ARGS + 2];
    int argc = 0;

    if (size > MAX_INPUT)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* a last separator ends the last argument rather than starting an empty one */
    if (size > 0 && (buf[size - 1] == '\n' || buf[size - 1] == '\0'))
        size--;
    argv[argc++] = prog;
    for (size_t i = 0, start = 0; i <= size && argc <= MAX_ARGS; i++) {
        if (i == size || buf[i] == '\n' || buf[i] == '\0') {
            buf[i] = '\0';
            argv[argc++] = buf + start;
            start = i + 1;
        }
    }
    if (size == 0)
        argc = 1;   /* no input: no arguments, not one empty one */
    argv[argc] = NULL;
    parse_line(argc, argv);
    return 0;
}
