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
    int duration_given;
    char target[SF_ADDR_STRLEN];
} bench_conf;

static inline const sf_bench_mode_info *
bench_mode(const bench_conf *c)
{
    return sf_bench_mode_get(c->o.mode);
}

/* Requests that did not come back right: errors, timeouts, mismatches, lost. */
uint64_t bench_failures(const sf_bench_stats *st);

/* sf_bench_opts.on_interval: a live line on stderr, or a JSON object (--json-stream). */
void bench_on_interval(void *ud, const sf_bench_interval *iv);

/* The result as the table, or as one JSON object with ok = (status == EXIT_OK). */
void bench_print_table(const bench_conf *c, const sf_bench_result *r);
void bench_json_result(const bench_conf *c, const sf_bench_result *r, int status);

#endif
