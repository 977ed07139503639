/* bench_echo: request/response on long-lived connections, -P requests in flight on each;
 * a request completes as its last byte comes back, and every byte is checked. */
#include <stdio.h>

#include "bench_int.h"

static void
issue(sf__bench_worker *w, sf__bench_conn *c)
{
    uint64_t p = (uint64_t)w->b->o.pipeline;

    while (c->issued - c->done < p && sf__bench_can_issue(w)) {
        c->ts[c->ts_in] = w->now;
        if (++c->ts_in == p)
            c->ts_in = 0;
        c->issued++;
        w->outstanding++;
    }
}

static int
got(sf__bench_worker *w, sf__bench_conn *c, const char *p, size_t n)
{
    const sf_bench *b = w->b;
    uint64_t pl = (uint64_t)b->o.pipeline;

    if (c->recv_off + n > c->sent_off) {
        /* More came back than was sent: the stream is not an echo of ours. */
        w->cur.mismatches++;
        return 1;
    }
    sf__bench_check_bytes(w, c, p, n);
    c->recv_off += n;
    while (c->recv_off >= (c->done + 1) * b->o.size) {
        sf__bench_record(w, w->now - c->ts[c->ts_out]);
        if (++c->ts_out == pl)
            c->ts_out = 0;
        c->done++;
        w->outstanding--;
    }
    issue(w, c);
    /* a short read: the socket is empty */
    return n < SF__BENCH_WINDOW ? 3 : 0;
}

static uint64_t
since(const sf__bench_worker *w, const sf__bench_conn *c)
{
    return c->issued > c->done ? c->ts[c->ts_out] : w->now;
}

static const sf__bench_tcp_ops ops = {
    .nodelay = 1,
    .write_first = 1,
    .open = sf__bench_conn_start,
    .opened = issue,
    .got = got,
    .writable = sf__bench_conn_flush,
    .since = since,
};

static int
init(sf__bench_worker *w, sf_err *err)
{
    return sf__bench_tcp_init(w, &ops, 1, err);
}

static int
describe(const sf_bench_opts *o, char *buf, size_t len)
{
    return snprintf(buf, len, "%d connection%s, %zu-byte requests, %d in flight on each",
                    o->conns, o->conns == 1 ? "" : "s", o->size, o->pipeline);
}

const sf__bench_mode sf__bench_echo = {
    .info = {
        .name = "echo",
        .summary = "requests to an echo server on -c connections, -P in flight on each;\n"
                   "every byte that comes back is checked",
        .what = "requests", .unit = "req/s",
        .checked = 1, .pipelines = 1,
        .fds_per_conn = 1,
        .conns = 50, .size = 64, .timeout_ms = 2000,
        .min_size = 1, .max_size = 64u << 20,
    },
    .init = init,
    .describe = describe,
    SF__BENCH_TCP_CALLS,
};
