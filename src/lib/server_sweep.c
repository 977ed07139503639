/* server_sweep: the timer that judges the TCP connections: idle, stalled (a client
 * not reading), input begun and not completed, lingering after FIN; time the process
 * did not run is not held against them. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "server_int.h"

#define LINGER_MS 5000

/* A watched peer silent for the idle timeout may still be there, its kernel answering
 * keepalive probes: ask the kernel when it last heard anything from it. Asked only when
 * the idle rule would close, so it costs nothing while the member talks. */
static int
peer_heard_within(const sf_conn *c, uint32_t ms)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (!(c->flags & SF__C_WATCH_PEER))
        return 0;
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return (ti.tcpi_last_ack_recv < ti.tcpi_last_data_recv ? ti.tcpi_last_ack_recv
                                                          : ti.tcpi_last_data_recv) <= ms;
}

void
sf__tcp_sweep(sf_loop *l, void *ud)
{
    worker *w = ud;
    sf_server *s = w->s;
    uint64_t now = sf_loop_now_ms(l);
    /* Time this process did not run (SIGSTOP, a debugger, a paused VM) is no client's
     * silence: a sweep that comes much later than it was due takes the gap beyond one
     * interval off every connection's clocks before it judges any. */
    uint64_t lost = w->swept_ms && now - w->swept_ms > 2 * (uint64_t)s->sweep_ms
                    ? now - w->swept_ms - s->sweep_ms : 0;

    w->swept_ms = now;
    sf__worker_enter(w);
    for (int fd = 0, end = sf_loop_fd_end(l); fd < end; fd++) {
        sf_conn *c = sf__conn_at(w, fd);
        uint32_t quiet;

        if (c == NULL || (c->flags & (SF__C_CLOSED | SF__C_HELD)))
            continue;
        /* (a clock that moved during the gap, its connection served since, keeps it) */
        if (lost && (uint32_t)now - c->last_ms > lost)
            c->last_ms += (uint32_t)lost;
        if (lost && (c->flags & SF__C_EXPECT) && !(c->flags & SF__C_FINISHING) &&
            now - c->u.expect_ms > lost)
            c->u.expect_ms += lost;
        quiet = (uint32_t)now - c->last_ms;     /* modulo 2^32: right up to 49 days */
        if ((c->flags & SF__C_FINISHING) && now - c->u.finish_ms > LINGER_MS) {
            sf_conn_close(c, NULL);
        } else if (s->o.send_timeout_ms && quiet > s->o.send_timeout_ms &&
                   ((c->out && sf_buf_len(c->out) > 0) ||
                    (c->flags & (SF__C_DRAIN | SF__C_SENDING)))) {
            /* A generator (chargen) whose last write filled the socket has nothing
             * queued, yet it is just as stuck; so is a ring send the kernel holds. */
            w->st.timeouts++;
            sf_conn_close(c, "send timeout: the client is not reading");
        } else if (s->o.idle_timeout_ms && (c->flags & SF__C_EXPECT) &&
                   now - c->u.expect_ms > s->o.idle_timeout_ms) {
            w->st.timeouts++;
            sf_conn_close(c, "idle timeout: input begun and not completed");
        } else if (s->o.idle_timeout_ms && quiet > s->o.idle_timeout_ms &&
                   !peer_heard_within(c, s->o.idle_timeout_ms)) {
            w->st.timeouts++;
            sf_conn_close(c, (c->flags & SF__C_WATCH_PEER) ? "idle timeout: the peer stopped "
                          "answering, keepalive probes included" : "idle timeout");
        }
    }
    sf__worker_leave(w);
    sf__udp_log_drops(w);
    sf__ring_sweep(w);
    sf_loop_timer(l, s->sweep_ms, sf__tcp_sweep, w);
}

