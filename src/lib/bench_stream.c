/* bench_stream: bulk bytes to a discard server as fast as it takes them, or with recv
 * from a chargen server; whole buffers moved are counted as requests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_int.h"

/* Whole buffers moved between two offsets. */
static void
count_chunks(sf__bench_worker *w, uint64_t before_off, uint64_t after_off)
{
    sf__bench_count_done(w, after_off / w->b->o.size - before_off / w->b->o.size);
}

/* Write whole buffers while the socket takes them. */
static int
write_some(sf__bench_worker *w, sf__bench_conn *c)
{
    const sf_bench *b = w->b;
    const char *sbuf = b->shared;

    for (int round = 0; round < SF__BENCH_ROUNDS && !w->stopping; round++) {
        sf_trace t;
        ssize_t n = sf_write(sf__bench_conn_trace(w, c, &t), c->fd, sbuf, b->o.size);

        if (n == SF_EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        sf__bench_conn_up(w, c);
        count_chunks(w, c->sent_off, c->sent_off + (uint64_t)n);
        c->sent_off += (uint64_t)n;
        c->start_ns = w->now;
        w->cur.bytes_out += (uint64_t)n;
        if ((size_t)n < b->o.size)
            return 0;
    }
    return 0;
}

/* The reader writes nothing: writable means connected, and then only reading. */
static int
writable_reader(sf__bench_worker *w, sf__bench_conn *c)
{
    sf__bench_conn_up(w, c);
    if (c->want_write) {
        c->want_write = 0;
        sf__bench_conn_events(w, c);
    }
    return 0;
}

static int
got(sf__bench_worker *w, sf__bench_conn *c, const char *p, size_t n)
{
    (void)p;
    if (w->b->o.recv)
        count_chunks(w, c->recv_off, c->recv_off + n);
    c->recv_off += n;
    c->start_ns = w->now;
    return 0;
}

static size_t
rbuflen(const sf_bench_opts *o)
{
    return o->size > SF__BENCH_WINDOW ? o->size : SF__BENCH_WINDOW;
}

static const sf__bench_tcp_ops writer = {
    .always_write = 1,
    .open = sf__bench_conn_start,
    .got = got,
    .writable = write_some,
    .rbuflen = rbuflen,
};

static const sf__bench_tcp_ops reader = {
    .open = sf__bench_conn_start,
    .got = got,
    .writable = writable_reader,
    .rbuflen = rbuflen,
};

static int
init(sf__bench_worker *w, sf_err *err)
{
    return sf__bench_tcp_init(w, w->b->o.recv ? &reader : &writer, 0, err);
}

/* One buffer of the pattern, written again and again by every connection. */
static int
setup(sf_bench *b, sf_err *err)
{
    size_t size = b->o.size;
    char *sbuf = malloc(size);

    if (sbuf == NULL)
        return sf_err_set(err, -ENOMEM, "bench: a %zu-byte write buffer", size);
    for (size_t off = 0; off < size; off += SF__BENCH_WINDOW)
        memcpy(sbuf + off, b->pat, size - off < SF__BENCH_WINDOW ? size - off : SF__BENCH_WINDOW);
    b->shared = sbuf;
    return 0;
}

static void
teardown(sf_bench *b)
{
    free(b->shared);
    b->shared = NULL;
}

static int
describe(const sf_bench_opts *o, char *buf, size_t len)
{
    return snprintf(buf, len, "%d connection%s, %s %zu-byte %s", o->conns,
                    o->conns == 1 ? "" : "s", o->recv ? "reading" : "writing", o->size,
                    o->recv ? "reads" : "writes");
}

const sf__bench_mode sf__bench_stream = {
    .info = {
        .name = "stream",
        .summary = "bulk bytes to a discard server (--recv: from a chargen server)",
        .what = "writes", .unit = "writes/s",
        .bulk = 1, .can_recv = 1,
        .fds_per_conn = 1,
        .conns = 1, .size = 128 * 1024, .timeout_ms = 2000,
        .min_size = 1, .max_size = 64u << 20,
    },
    .setup = setup,
    .teardown = teardown,
    .init = init,
    .describe = describe,
    SF__BENCH_TCP_CALLS,
};
