/* server_ring: the TCP engine's io_uring path, for services whose callbacks only send,
 * finish and close (sf_service.ring_ok). Per loop one ring (uring.c): a multishot
 * accept per listener, one receive at a time per connection into a buffer the kernel
 * picks from a shared ring of them (an idle connection holds none), one send at a time
 * (from that buffer, or the connection's queue), and the close: a connection costs no
 * system call of its own. The ring watches the loop's epoll descriptor and is the loop's
 * waiter: what a pass gathered is handed to the kernel in the call that sleeps. Where
 * the kernel refuses io_uring (too old, seccomp, kernel.io_uring_disabled) nothing
 * changes: the epoll path serves. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/sock.h"
#include "server_int.h"
#include "uring.h"

#if SF__URING

#define SQ_ENTRIES 256
#define CQ_ENTRIES 8192
#define NBUF 128                /* receive buffers, shared by the loop's connections */
#define BUF_SIZE (64 * 1024)    /* as large as the epoll path's one read */
#define MAX_HELD (NBUF / 2)     /* buffers sent from in place at once: the rest are for
                                   receiving, whatever clients that do not read hold */
#define ACCEPT_RETRY_MS 100
#define SHED_BATCH 64           /* clients turned away per EMFILE, as on epoll */
#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)    /* 6.10: no waiting for a client */
#endif
#define QUIESCE_TRIES 100       /* 10 ms each: a second for the kernel to give back */

enum { TAG_NONE, TAG_ACCEPT, TAG_RECV, TAG_SEND };     /* user_data's low 2 bits */
#define UD_BID_SHIFT 48     /* a send from a receive buffer: its id + 1 in the top bits
                               (user-space pointers are below 2^47) */
#define UD_SHED (1ULL << UD_BID_SHIFT)  /* an accept that turns a client away */

struct ring {
    sf__uring u;
    int inflight;                   /* requests whose completion has not been reaped */
    int closing;                    /* cancelling everything: nothing asked again */
    int epoll_ready;                /* the loop's epoll set became readable */
    rlim_t nofile;                  /* the descriptor limit the accepts were asked with */
    /* The buffer the service is reading from (-1: none), and the buffers sent from as
     * they are (not copied): given back once their send is done. */
    int cur_bid;
    char *cur_data;
    uint32_t cur_len;
    int held;
    struct { uint32_t off, len; } send[NBUF];
};

/* A request whose completion is reaped (tag != TAG_NONE) or only reported on failure. */
static struct io_uring_sqe *
new_request(ring *r, int opcode, int fd, void *owner, int tag)
{
    struct io_uring_sqe *sqe = sf__uring_sqe(&r->u);

    if (sqe == NULL)
        return NULL;
    sqe->opcode = (uint8_t)opcode;
    sqe->fd = fd;
    sqe->user_data = (uint64_t)(uintptr_t)owner | (uint64_t)tag;
    if (tag == TAG_NONE)
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    else
        r->inflight++;
    return sqe;
}

static void
cancel_request(ring *r, void *owner, int tag)
{
    struct io_uring_sqe *sqe = new_request(r, IORING_OP_ASYNC_CANCEL, -1, NULL, TAG_NONE);

    if (sqe)
        sqe->addr = (uint64_t)(uintptr_t)owner | (uint64_t)tag;
}

/* ---- set-up and tear-down ---- */

static ring *
ring_new(void)
{
    ring *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    if (sf__uring_init(&r->u, SQ_ENTRIES, CQ_ENTRIES, NBUF, BUF_SIZE) < 0) {
        free(r);
        return NULL;
    }
    r->cur_bid = -1;
    return r;
}

static void
ring_close(ring *r)
{
    sf__uring_fini(&r->u);
    free(r);
}

static rlim_t
fd_limit(void)
{
    struct rlimit rl;

    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : RLIM_INFINITY;
}

static int
arm_accept(ring *r, lsock *ls)
{
    struct io_uring_sqe *sqe = new_request(r, IORING_OP_ACCEPT, ls->fd, ls, TAG_ACCEPT);

    if (sqe == NULL)
        return -EBUSY;
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
    sqe->accept_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    return 0;
}

/* The loop's epoll set watched by the ring: its owner is the ring, its tag none. */
static void
arm_poll(ring *r, int epfd)
{
    struct io_uring_sqe *sqe = sf__uring_sqe(&r->u);

    if (sqe == NULL)
        return;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = epfd;
    sqe->poll32_events = POLLIN;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->user_data = (uint64_t)(uintptr_t)r;
    r->inflight++;
}

static int
ring_eligible(const lsock *ls)
{
    return ls->fd >= 0 && ls->proto == SF_PROTO_TCP && ls->svc->ring_ok;
}

static int ring_wait(sf_loop *l, int timeout_ms, void *ud);
static int ring_run(sf_loop *l, void *ud);

void
sf__ring_start(worker *w)
{
    const sf_server_opts *o = &w->s->o;
    int any = 0;

    if (o->no_ring || o->tracer)
        return;
    for (int i = 0; i < w->nls; i++)
        any |= ring_eligible(&w->ls[i]);
    if (!any || (w->ring = ring_new()) == NULL)
        return;
    arm_poll(w->ring, sf_loop_epoll_fd(w->loop));
    w->ring->nofile = fd_limit();
    for (int i = 0; i < w->nls; i++) {
        lsock *ls = &w->ls[i];

        if (!ring_eligible(ls) || arm_accept(w->ring, ls) < 0)
            continue;
        sf_loop_unwatch(w->loop, ls->fd);
        ls->on_ring = 1;
    }
    sf_loop_set_waiter(w->loop, ring_wait, ring_run, w);
    sf__uring_submit(&w->ring->u, 0);
}

void
sf__ring_stop_accepting(worker *w, lsock *ls)
{
    if (w->ring == NULL || !ls->on_ring)
        return;
    /* The request holds the listening socket: closing the descriptor alone would
     * leave it accepting. */
    cancel_request(w->ring, ls, TAG_ACCEPT);
    sf__uring_submit(&w->ring->u, 0);
    ls->on_ring = 0;
}

void
sf__ring_sweep(worker *w)
{
    rlim_t now;

    if (w->ring == NULL || (now = fd_limit()) == w->ring->nofile)
        return;
    /* Cancelled, each accept is asked again (accept_done) with the limit read anew:
     * descriptors past a lowered limit are refused as accept4 refuses them. */
    w->ring->nofile = now;
    for (int i = 0; i < w->nls; i++)
        if (w->ls[i].on_ring)
            cancel_request(w->ring, &w->ls[i], TAG_ACCEPT);
}

/* ---- connections ---- */

static void
bury(worker *w, sf_conn *c)
{
    sf_loop_forget(w->loop, c->fd);
    close(c->fd);
    if (c->out) {
        sf_buf_free(c->out);
        free(c->out);
    }
    free(c);
}

void
sf__ring_arm(sf_conn *c)
{
    ring *r = c->ls->w->ring;
    int ev = sf__conn_events(c);
    struct io_uring_sqe *sqe;

    if (r == NULL || r->closing || (c->flags & SF__C_CLOSED))
        return;
    if (c->out && sf_buf_len(c->out) > 0 && !(c->flags & SF__C_SENDING) &&
        (sqe = new_request(r, IORING_OP_SEND, c->fd, c, TAG_SEND)) != NULL) {
        sqe->addr = (uint64_t)(uintptr_t)sf_buf_peek(c->out);
        sqe->len = (uint32_t)sf_buf_len(c->out);
        sqe->msg_flags = MSG_NOSIGNAL;
        c->flags |= SF__C_SENDING;
    }
    if ((ev & SF_READ) && !(c->flags & SF__C_RECVING) &&
        (sqe = new_request(r, IORING_OP_RECV, c->fd, c, TAG_RECV)) != NULL) {
        size_t cap = c->ls->w->s->o.queue_cap;

        /* Never more than the queue may hold: an echo of it can always be queued. */
        sqe->len = (uint32_t)(cap < BUF_SIZE ? cap : BUF_SIZE);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = 0;
        c->flags |= SF__C_RECVING;
    }
}

int
sf__ring_send_direct(sf_conn *c, const void *p, size_t len)
{
    ring *r = c->ls->w->ring;
    struct io_uring_sqe *sqe;
    const char *q = p;

    /* Straight from the buffer just received into, as the epoll path writes from its
     * read buffer: no copy, no allocation per message. */
    if (r == NULL || r->closing || r->cur_bid < 0 || r->held >= MAX_HELD ||
        q < r->cur_data || q + len > r->cur_data + r->cur_len || len == 0 ||
        (c->flags & SF__C_SENDING) || (c->out && sf_buf_len(c->out) > 0))
        return 0;
    sqe = new_request(r, IORING_OP_SEND, c->fd, c, TAG_SEND);
    if (sqe == NULL)
        return 0;
    sqe->user_data |= (uint64_t)(r->cur_bid + 1) << UD_BID_SHIFT;
    sqe->addr = (uint64_t)(uintptr_t)q;
    sqe->len = (uint32_t)len;
    sqe->msg_flags = MSG_NOSIGNAL;
    r->send[r->cur_bid].off = (uint32_t)(q - sf__uring_buf(&r->u, (unsigned)r->cur_bid));
    r->send[r->cur_bid].len = (uint32_t)len;
    r->cur_bid = -1;    /* the buffer is the send's now */
    r->held++;
    c->flags |= SF__C_SENDING;
    return 1;
}

int
sf__ring_release(sf_conn *c)
{
    worker *w = c->ls->w;
    struct io_uring_sqe *sqe;

    if (c->flags & (SF__C_RECVING | SF__C_SENDING)) {
        /* The kernel may still use the descriptor and the queue: both are kept until
         * it reports the requests cancelled (or done). */
        c->flags |= SF__C_BURY;
        if ((sqe = new_request(w->ring, IORING_OP_ASYNC_CANCEL, c->fd, NULL, TAG_NONE)))
            sqe->cancel_flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
        return 1;
    }
    sf_loop_forget(w->loop, c->fd);
    if (w->ring && (sqe = new_request(w->ring, IORING_OP_CLOSE, c->fd, NULL, TAG_NONE)))
        return 0;
    close(c->fd);
    return 0;
}

/* ---- completions ---- */

/* Turn away the clients waiting on ls: each accepted into the ring's slot (which
 * closes the one before) and the last closed, without waiting for more. The epoll
 * path's spare descriptor cannot serve here: another loop's accept request, in the
 * kernel, would take the descriptor it frees. 1 if asked, 0 if this ring cannot. */
static int
shed_clients(ring *r, lsock *ls)
{
    struct io_uring_sqe *sqe;

    if (!r->u.slot)
        return 0;
    for (int i = 0; i < SHED_BATCH; i++) {
        if ((sqe = new_request(r, IORING_OP_ACCEPT, ls->fd, ls, TAG_ACCEPT)) == NULL)
            break;
        sqe->user_data |= UD_SHED;
        sqe->ioprio = IORING_ACCEPT_DONTWAIT;
        sqe->file_index = 1;
    }
    if ((sqe = new_request(r, IORING_OP_CLOSE, 0, NULL, TAG_NONE)))
        sqe->file_index = 1;
    return 1;
}

static void
shed_done(worker *w, int res)
{
    if (res >= 0)
        w->st.emfile++;
    else if (res == -EAGAIN)        /* the batch's end: nobody else waiting */
        sf__accept_out_of_descriptors(w, -EMFILE);
    else if (res == -EINVAL)
        w->ring->u.slot = 0;        /* no DONTWAIT here (before 6.10): the epoll way */
}

static void
accept_done(worker *w, lsock *ls, int res, unsigned flags)
{
    if (res >= 0) {
        w->st.ring_accepted++;
        sf__tcp_start_ring(w, ls, res);
    }
    if ((flags & IORING_CQE_F_MORE) || !ls->on_ring)
        return;
    if (res == -EINVAL || res == -EOPNOTSUPP || res == -ENOTSUP) {
        /* No multishot accept in this kernel: the listener goes back to epoll. */
        ls->on_ring = 0;
        if (sf_loop_watch(w->loop, ls->fd, SF_READ, sf__tcp_accept_ready, ls) < 0)
            sf__server_log(w->s, "epoll_ctl listener: %s", sf_strerror(-errno));
        return;
    }
    if (res == -EMFILE || res == -ENFILE) {
        /* Clients turned away (through the ring, else as the epoll path does), said
         * in the log; accepting again shortly. */
        if (!shed_clients(w->ring, ls))
            sf__tcp_accept_ready(w->loop, ls->fd, SF_READ, ls);
        ls->on_ring = 0;
        sf_loop_timer(w->loop, ACCEPT_RETRY_MS, sf__ring_rearm_accept, ls);
        return;
    }
    if (res < 0 && res != -ECANCELED && !sf_accept_error_is_transient(res))
        sf__server_log(w->s, "accept: %s", sf_strerror(res));
    arm_accept(w->ring, ls);
}

void
sf__ring_rearm_accept(sf_loop *l, void *ud)
{
    lsock *ls = ud;

    (void)l;
    if (ls->w->ring && ls->fd >= 0 && !ls->on_ring && arm_accept(ls->w->ring, ls) == 0)
        ls->on_ring = 1;
}

static void
recv_done(worker *w, sf_conn *c, int res, unsigned flags)
{
    ring *r = w->ring;
    char *data = NULL;
    unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;

    c->flags &= ~SF__C_RECVING;
    if (flags & IORING_CQE_F_BUFFER)
        data = sf__uring_buf(&r->u, bid);
    if (!(c->flags & SF__C_BURY) && !(r->closing && res <= 0)) {
        if (res == -ENOBUFS || res == -EAGAIN || res == -EINTR || res == -ECANCELED) {
            sf__ring_arm(c);      /* every buffer in use: asked again, next pass */
        } else {
            if (data) {
                r->cur_bid = (int)bid;
                r->cur_data = data;
                r->cur_len = res > 0 ? (uint32_t)res : 0;
            }
            sf__tcp_ring_got(c, res, data);
            if (data && r->cur_bid < 0)
                return;     /* sent from in place: given back when that is done */
            r->cur_bid = -1;
        }
    }
    if (flags & IORING_CQE_F_BUFFER)
        sf__uring_give(&r->u, bid);
}

static void
send_done(worker *w, sf_conn *c, int res, int bid)
{
    ring *r = w->ring;

    c->flags &= ~SF__C_SENDING;
    if (bid >= 0) {
        /* In place from a receive buffer: what the socket did not take is queued. */
        const char *p = sf__uring_buf(&r->u, (unsigned)bid) + r->send[bid].off;
        uint32_t len = r->send[bid].len;

        if (!(c->flags & SF__C_BURY) && !r->closing)
            sf__tcp_ring_sent_direct(c, res, p, len);
        sf__uring_give(&r->u, (unsigned)bid);
        r->held--;
        return;
    }
    if (!(c->flags & SF__C_BURY) && !r->closing)
        sf__tcp_ring_sent(c, res);
}

static void
complete(worker *w, uint64_t ud, int res, unsigned flags)
{
    int tag = (int)(ud & 3);
    int bid = (int)(ud >> UD_BID_SHIFT) - 1;
    void *owner = (void *)(uintptr_t)(ud & ((1ULL << UD_BID_SHIFT) - 4));
    sf_conn *c = owner;

    if (tag == TAG_NONE && owner == NULL)
        return;     /* a close or cancel that failed: nothing waits for it */
    if (!(flags & IORING_CQE_F_MORE))
        w->ring->inflight--;
    if (tag == TAG_NONE) {
        w->ring->epoll_ready = 1;
        if (!(flags & IORING_CQE_F_MORE) && !w->ring->closing)
            arm_poll(w->ring, sf_loop_epoll_fd(w->loop));
        return;
    }
    if (tag == TAG_ACCEPT) {
        if (ud & UD_SHED)
            shed_done(w, res);
        else
            accept_done(w, owner, res, flags);
        return;
    }
    if (tag == TAG_RECV)
        recv_done(w, c, res, flags);
    else
        send_done(w, c, res, bid);
    if ((c->flags & SF__C_BURY) && !(c->flags & (SF__C_RECVING | SF__C_SENDING)))
        bury(w, c);
}

/* Handle what the kernel has completed; returns the count. */
static int
reap(worker *w)
{
    sf__uring *u = &w->ring->u;
    struct io_uring_cqe *cqe;
    int n = 0;

    sf__worker_enter(w);
    while ((cqe = sf__uring_cqe(u)) != NULL) {
        uint64_t ud = cqe->user_data;
        int res = cqe->res;
        unsigned flags = cqe->flags;

        sf__uring_seen(u);
        complete(w, ud, res, flags);
        n++;
    }
    sf__worker_leave(w);
    return n;
}

/* The loop's wait: what the last pass asked for handed over, then asleep until a
 * completion or the timeout. */
static int
ring_wait(sf_loop *l, int timeout_ms, void *ud)
{
    worker *w = ud;

    (void)l;
    return sf__uring_wait(&w->ring->u, timeout_ms);
}

static int
ring_run(sf_loop *l, void *ud)
{
    worker *w = ud;
    int ready;

    (void)l;
    reap(w);
    ready = w->ring->epoll_ready;
    w->ring->epoll_ready = 0;
    return ready;
}

void
sf__ring_free(worker *w)
{
    ring *r = w->ring;

    if (r == NULL)
        return;
    /* Every request cancelled and its completion reaped, so no connection or buffer is
     * still the kernel's when the connections are closed and freed. */
    {
        struct io_uring_sqe *sqe = new_request(r, IORING_OP_ASYNC_CANCEL, -1, NULL,
                                               TAG_NONE);

        if (sqe)
            sqe->cancel_flags = IORING_ASYNC_CANCEL_ANY;
    }
    for (int i = 0; i < w->nls; i++)
        w->ls[i].on_ring = 0;
    r->closing = 1;
    for (int i = 0; r->inflight > 0 && i < QUIESCE_TRIES; i++) {
        sf__uring_wait(&r->u, 10);
        reap(w);
    }
    sf_loop_set_waiter(w->loop, NULL, NULL, NULL);
    w->ring = NULL;
    ring_close(r);
}

#else   /* no io_uring in this build: every connection on epoll */

void sf__ring_start(worker *w) { (void)w; }
void sf__ring_stop_accepting(worker *w, lsock *ls) { (void)w; (void)ls; }
void sf__ring_arm(sf_conn *c) { (void)c; }
int sf__ring_send_direct(sf_conn *c, const void *p, size_t len)
{
    (void)c;
    (void)p;
    (void)len;
    return 0;
}
int sf__ring_release(sf_conn *c) { (void)c; return 0; }
void sf__ring_rearm_accept(sf_loop *l, void *ud) { (void)l; (void)ud; }
void sf__ring_sweep(worker *w) { (void)w; }
void sf__ring_free(worker *w) { (void)w; }

#endif
