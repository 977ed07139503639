/* bench_connect: the whole TCP flow per request — socket, connect, write, read the echo,
 * close — with -c such cycles at once; the latency is the whole cycle's. */
#include <stdio.h>

#include "bench_int.h"

static void
cycle_start(sf__bench_worker *w, sf__bench_conn *c)
{
    sf__bench_tcp *tc = w->m;

    if (!sf__bench_can_issue(w))
        return;
    /* each cycle its own bytes: a reply meant for an earlier connection shows */
    c->seed = (uint32_t)((tc->cycles++ * 7919u + (uint64_t)w->index * 104729u) %
                         SF__BENCH_PATLEN);
    sf__bench_conn_start(w, c);
}

static void
opened(sf__bench_worker *w, sf__bench_conn *c)
{
    c->issued = 1;
    w->outstanding++;
}

/* The echo is complete: close, count the cycle and begin the next. */
static void
cycle_done(sf__bench_worker *w, sf__bench_conn *c)
{
    sf__bench_conn_close(w, c);    /* and the request is no longer outstanding */
    sf__bench_clock_in(w);
    sf__bench_record(w, w->now - c->start_ns);
    sf__bench_check_quota(w);
    cycle_start(w, c);
}

static int
got(sf__bench_worker *w, sf__bench_conn *c, const char *p, size_t n)
{
    if (c->recv_off + n > c->sent_off) {
        w->cur.mismatches++;
        return 1;
    }
    sf__bench_check_bytes(w, c, p, n);
    c->recv_off += n;
    if (c->recv_off == w->b->o.size) {
        cycle_done(w, c);
        return 2;
    }
    return 0;
}

static const sf__bench_tcp_ops ops = {
    .write_first = 1,
    .open = cycle_start,
    .opened = opened,
    .got = got,
    .writable = sf__bench_conn_flush,
};

static int
init(sf__bench_worker *w, sf_err *err)
{
    return sf__bench_tcp_init(w, &ops, 0, err);
}

static int
describe(const sf_bench_opts *o, char *buf, size_t len)
{
    return snprintf(buf, len, "%d at once, each socket, connect, write %zu bytes, read the "
                    "echo, close (the client closes first: TIME_WAIT is on this side)",
                    o->conns, o->size);
}

const sf__bench_mode sf__bench_connect = {
    .info = {
        .name = "connect",
        .summary = "the whole flow per request: socket, connect, write, read the echo,\n"
                   "close; -c cycles at once: connections per second and their latency",
        .what = "connections", .unit = "conn/s",
        .checked = 1, .churns_ports = 1,
        .fds_per_conn = 1,
        .conns = 50, .size = 64, .timeout_ms = 2000,
        .min_size = 1, .max_size = 64u << 20,
    },
    .init = init,
    .describe = describe,
    SF__BENCH_TCP_CALLS,
};
