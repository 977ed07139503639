/* bench_udp: datagrams to an echo server, -c in flight, over one connected socket per
 * thread in recvmmsg/sendmmsg batches; each carries its slot and sequence number, so a
 * reply is matched to its datagram, and one that never comes is lost after the timeout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_int.h"

#define UDP_BATCH 64

static sf__bench_udp_state *
udp_of(const sf__bench_worker *w)
{
    return w->m;
}

static uint64_t
udp_off(const sf__bench_uslot *s)
{
    return (uint64_t)s->hdr[1] * 13u + (uint64_t)s->hdr[0] * 7u;
}

static void
issue(sf__bench_worker *w, int i)
{
    sf__bench_udp_state *u = udp_of(w);
    sf__bench_uslot *s = &u->slots[i];

    if (!sf__bench_can_issue(w) || u->fd < 0)
        return;
    s->hdr[0] = (uint32_t)i;
    s->hdr[1] = ++u->next_seq;
    s->busy = 1;
    s->queued = 1;
    s->sent_ns = w->now;
    w->outstanding++;
    u->pending[u->npending++] = i;
}

/* Hand up to UDP_BATCH pending datagrams from done on to sendmmsg: how many it took, or
 * a negative code. */
static int
send_batch(sf__bench_worker *w, int done)
{
    const sf_bench *b = w->b;
    sf__bench_udp_state *u = udp_of(w);
    struct mmsghdr m[UDP_BATCH];
    struct iovec iov[UDP_BATCH][2];
    int k = u->npending - done < UDP_BATCH ? u->npending - done : UDP_BATCH;
    sf_trace t;

    for (int j = 0; j < k; j++) {
        sf__bench_uslot *s = &u->slots[u->pending[done + j]];

        iov[j][0].iov_base = s->hdr;
        iov[j][0].iov_len = sizeof(s->hdr);
        iov[j][1].iov_base = (void *)sf__bench_pat_at(b, udp_off(s));
        iov[j][1].iov_len = b->o.size - sizeof(s->hdr);
        memset(&m[j], 0, sizeof(m[j]));
        m[j].msg_hdr.msg_iov = iov[j];
        m[j].msg_hdr.msg_iovlen = 2;
    }
    return sf_sendmmsg(sf__bench_trace(w, 0, &t), u->fd, m, (unsigned)k);
}

static void
flush(sf__bench_worker *w)
{
    sf__bench_udp_state *u = udp_of(w);
    int done = 0;

    while (done < u->npending) {
        int n = send_batch(w, done);

        if (n == SF_EAGAIN || n == -ENOBUFS)
            break;  /* the rest go when the socket is writable */
        if (n < 0) {
            /* This datagram is lost (ECONNREFUSED from an earlier ICMP error, ...): its
             * slot times out and goes again. */
            sf__bench_count_error(w, n);
            u->slots[u->pending[done]].queued = 0;
            done++;
            continue;
        }
        w->cur.sent += (uint64_t)n;
        w->cur.bytes_out += (uint64_t)n * w->b->o.size;
        for (int j = 0; j < n; j++)
            u->slots[u->pending[done + j]].queued = 0;
        done += n;
    }
    memmove(u->pending, u->pending + done, (size_t)(u->npending - done) * sizeof(int));
    u->npending -= done;
    sf_loop_set_events(w->loop, u->fd, u->npending ? SF_READ | SF_WRITE : SF_READ);
}

void
sf__bench_udp_reply(sf__bench_worker *w, const char *p, size_t len)
{
    const sf_bench *b = w->b;
    sf__bench_udp_state *u = udp_of(w);
    uint32_t hdr[2];
    sf__bench_uslot *s;

    if (len < sizeof(hdr)) {
        w->cur.mismatches++;
        return;
    }
    memcpy(hdr, p, sizeof(hdr));
    if (hdr[0] >= (uint32_t)u->nslots || !u->slots[hdr[0]].busy ||
        u->slots[hdr[0]].hdr[1] != hdr[1]) {
        w->cur.late++;
        return;
    }
    s = &u->slots[hdr[0]];
    if (len != b->o.size ||
        memcmp(p + sizeof(hdr), sf__bench_pat_at(b, udp_off(s)), len - sizeof(hdr)) != 0)
        w->cur.mismatches++;
    w->cur.bytes_in += len;
    s->busy = 0;
    w->outstanding--;
    sf__bench_record(w, w->now - s->sent_ns);
    issue(w, (int)hdr[0]);
}

static void
read_replies(sf__bench_worker *w)
{
    sf__bench_udp_state *u = udp_of(w);
    struct mmsghdr m[UDP_BATCH];
    struct iovec iov[UDP_BATCH];
    size_t slotlen = w->b->o.size + 1;     /* one more: a longer reply shows */
    int k = u->batch;
    sf_trace t;

    for (int round = 0; round < SF__BENCH_ROUNDS; round++) {
        int n;

        for (int j = 0; j < k; j++) {
            iov[j].iov_base = u->rbuf + (size_t)j * slotlen;
            iov[j].iov_len = slotlen;
            memset(&m[j], 0, sizeof(m[j]));
            m[j].msg_hdr.msg_iov = &iov[j];
            m[j].msg_hdr.msg_iovlen = 1;
        }
        n = sf_recvmmsg(sf__bench_trace(w, 0, &t), u->fd, m, (unsigned)k);
        if (n < 0) {
            if (n != SF_EAGAIN)
                sf__bench_count_error(w, n);
            return;
        }
        for (int j = 0; j < n; j++)
            sf__bench_udp_reply(w, iov[j].iov_base, m[j].msg_len);
        if (n < k)
            return;
    }
}

static void
udp_io(sf_loop *l, int fd, int events, void *ud)
{
    sf__bench_worker *w = ud;

    (void)l;
    (void)fd;
    sf__bench_clock_in(w);
    if (events & SF_READ)
        read_replies(w);
    if (udp_of(w)->npending)
        flush(w);
    sf__bench_check_quota(w);
}

static void
start(sf__bench_worker *w)
{
    sf__bench_udp_state *u = udp_of(w);
    sf_err err;
    sf_trace t;
    int fd;

    fd = sf_udp_connect(sf__bench_trace(w, 0, &t), &w->b->o.target,
                        sf__bench_pick_source(w), 1, &err);
    if (fd < 0) {
        sf__bench_count_error(w, fd);
        return;
    }
    if (sf_loop_watch(w->loop, fd, SF_READ, udp_io, w) < 0) {
        close(fd);
        sf__bench_count_error(w, -ENOMEM);
        return;
    }
    u->fd = fd;
    for (int i = 0; i < u->nslots; i++)
        issue(w, i);
    flush(w);
}

/* Datagrams unanswered for the timeout are lost, and their slots go again; a socket
 * that could not be made is tried again. */
static void
sweep(sf__bench_worker *w)
{
    sf__bench_udp_state *u = udp_of(w);
    uint64_t limit = (uint64_t)w->b->o.timeout_ms * 1000000u;

    if (u->fd < 0) {
        start(w);
        return;
    }
    for (int i = 0; i < u->nslots; i++) {
        sf__bench_uslot *s = &u->slots[i];

        if (s->busy && !s->queued && w->now - s->sent_ns > limit) {
            w->cur.lost++;
            s->busy = 0;
            w->outstanding--;
            issue(w, i);
        }
    }
    if (u->npending)
        flush(w);
    sf__bench_check_quota(w);
}

static void
finish(sf__bench_worker *w)
{
    sf__bench_udp_state *u = udp_of(w);

    if (u->fd >= 0) {
        sf_loop_unwatch(w->loop, u->fd);
        close(u->fd);
        u->fd = -1;
    }
}

static int
init(sf__bench_worker *w, sf_err *err)
{
    size_t slotlen = w->b->o.size + 1;
    sf__bench_udp_state *u = calloc(1, sizeof(*u));

    if (u == NULL)
        return sf_err_set(err, -ENOMEM, "bench: memory for %d datagrams", w->share);
    w->m = u;
    u->fd = -1;
    u->nslots = w->share;
    /* a batch of replies in at most 1 MiB */
    u->batch = (int)(1024 * 1024 / slotlen);
    if (u->batch > UDP_BATCH)
        u->batch = UDP_BATCH;
    if (u->batch < 1)
        u->batch = 1;
    u->slots = calloc((size_t)w->share, sizeof(*u->slots));
    u->pending = calloc((size_t)w->share, sizeof(int));
    u->rbuf = malloc((size_t)u->batch * slotlen);
    if (u->slots == NULL || u->pending == NULL || u->rbuf == NULL)
        return sf_err_set(err, -ENOMEM, "bench: memory for %d datagrams", w->share);
    return 0;
}

static void
free_state(sf__bench_worker *w)
{
    sf__bench_udp_state *u = udp_of(w);

    if (u == NULL)
        return;
    free(u->slots);
    free(u->pending);
    free(u->rbuf);
    free(u);
    w->m = NULL;
}

static int
describe(const sf_bench_opts *o, char *buf, size_t len)
{
    return snprintf(buf, len, "%d datagram%s of %zu bytes in flight, lost after %.3g s",
                    o->conns, o->conns == 1 ? "" : "s", o->size, o->timeout_ms / 1000.0);
}

const sf__bench_mode sf__bench_udp = {
    .info = {
        .name = "udp",
        .summary = "datagrams to an echo server, -c in flight; lost ones are counted",
        .what = "datagrams", .unit = "dgram/s",
        .dgram = 1, .checked = 1,
        .conns = 32, .size = 64, .timeout_ms = 200,
        .min_size = 8, .max_size = 65507,
        .size_why = "a datagram carries an 8-byte slot and sequence number",
    },
    .init = init,
    .free = free_state,
    .start = start,
    .sweep = sweep,
    .finish = finish,
    .describe = describe,
};
