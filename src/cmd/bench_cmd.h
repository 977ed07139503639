/* bench_cmd: what the two halves of `sockflow bench` share — the options as parsed
 * (bench.c) and their printing (bench_out.c). */
#ifndef SOCKFLOW_CMD_BENCH_H
#define SOCKFLOW_CMD_BENCH_H

#include "cmd.h"
#include "traceopt.h"

#define MAX_SRC 256

typedef struct bench_conf {
    sf_bench_opts o;
    cmd_trace trace;
    const char *src_text;
    sf_addr src[MAX_SRC];
    int src_default;
    int family_flags;
    int json, json_stream;
    long interval_ms;       /* -1: not given */
    char target[SF_ADDR_STRLEN];
    sf_bench *b;            /* while it runs */
    int out_errno;          /* standard output failed during the run */
    /* the measured intervals after the first, for telling a steady rate limit */
    int iv_seen, iv_counted, iv_replied, iv_lossy;
} bench_conf;

static inline const sf_bench_mode_info *
bench_mode(const bench_conf *c)
{
    return sf_bench_mode_get(c->o.mode);
}

/* The options and arguments of argv into c (zeroed by the caller): MODE at argv[optind],
 * HOST and PORT after it, unresolved; --src parsed into c->src. Returns 0, EXIT_USAGE
 * with err set, or CMD_HELP; prints nothing. */
int bench_parse(int argc, char **argv, bench_conf *c, sf_err *err);

/* Requests that did not come back right: errors, timeouts, mismatches, lost. */
uint64_t bench_failures(const sf_bench_stats *st);

/* sf_bench_opts.on_interval: a live line on stderr, or a JSON object (--json-stream). */
void bench_on_interval(void *ud, const sf_bench_interval *iv);

/* udp: replies kept coming in every interval while datagrams were lost in nearly every
 * one — what a server's per-source rate limit looks like from here. */
int bench_rate_limited(const bench_conf *c, const sf_bench_result *r);

/* The result as the table, or as one JSON object with ok = (status == EXIT_OK). */
void bench_print_table(const bench_conf *c, const sf_bench_result *r);
void bench_json_result(const bench_conf *c, const sf_bench_result *r, int status);

#endif
