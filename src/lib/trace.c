/* trace: build one event per socket call: who made it, the call and what it concerned
 * (as values), its result, and the subject socket's state read from the kernel. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "trace_int.h"

const char *
sf_call_name(sf_call call)
{
    static const char *const names[SF_CALL_COUNT] = {
        [SF_CALL_NONE] = "?",
#define SF_CALL_NAME_(id, name) [SF_CALL_##id] = name,
        SF_TRACE_CALLS(SF_CALL_NAME_)
#undef SF_CALL_NAME_
    };

    if ((int)call < 0 || call >= SF_CALL_COUNT)
        return "?";
    return names[call];
}

static const char *
proto_name(int p)
{
    return p == IPPROTO_TCP ? "tcp" : p == IPPROTO_UDP ? "udp" : NULL;
}

typedef struct subject {
    int proto;
    int state, state_before;
    uint32_t rtt_us;
    int32_t queue;
    char local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN];
} subject;

/* A TCP socket whose two FINs passed while its descriptor is open reads CLOSE and has
 * forgotten its peer, while the kernel keeps the connection in TIME_WAIT (the side that
 * hung up first, after its read() of 0). Report that connection, found by the socket's
 * cookie, rather than the empty shell. */
static void
time_wait_instead(int fd, uint64_t cookie, subject *s)
{
    sf_addr local = { .len = sizeof(local.ss) }, peer;

    if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) < 0 ||
        sf_addr_port(&local) == 0)
        return;
    if (sf__lookup_time_wait(&local, cookie, &peer) != SF_TCP_TIME_WAIT)
        return;
    s->state = SF_TCP_TIME_WAIT;
    sf_addr_format(&peer, s->peer, sizeof(s->peer));
}

/* Calls made on a connection, whose socket may be the shell of one in TIME_WAIT (the
 * lookup is a dump of the TIME_WAIT table: not for every bind or failed connect). */
static int
on_a_connection(sf_call call)
{
    return call == SF_CALL_READ || call == SF_CALL_WRITE || call == SF_CALL_SHUTDOWN ||
           call == SF_CALL_GETSOCKOPT;
}

static void
read_subject(int fd, sf_call call, subject *s)
{
    struct sockaddr_storage ss;
    socklen_t len;
    uint64_t cookie = 0;
    int saved = errno, have_cookie = 0;

    s->proto = sf__sock_proto(fd);
    s->state = s->proto == IPPROTO_TCP ? sf_tcp_state(fd, &s->rtt_us, &s->queue) : SF_TCP_NONE;
    if (s->proto == IPPROTO_TCP) {
        /* The kernel numbers a socket on first asking, and a TIME_WAIT entry keeps the
         * number of its socket: asked now, close can find the connection later. */
        len = sizeof(cookie);
        have_cookie = getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0;
    }
    s->state_before = SF_TCP_NONE;
    if (s->proto != IPPROTO_TCP) {
        s->rtt_us = 0;
        s->queue = -1;
    }
    s->local[0] = s->peer[0] = '\0';
    len = sizeof(ss);
    if (s->proto && getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
        ss.ss_family != AF_UNSPEC)
        sf_addr_format_sa((struct sockaddr *)&ss, len, s->local, sizeof(s->local));
    len = sizeof(ss);
    if (s->proto && getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        sf_addr_format_sa((struct sockaddr *)&ss, len, s->peer, sizeof(s->peer));
    else if (s->state == SF_TCP_CLOSE && have_cookie && on_a_connection(call))
        time_wait_instead(fd, cookie, s);
    errno = saved;
}

static void
emit(const sf_trace *t, sf_call call, int fd, long result, int err, const subject *s,
     const sf_trace_about *about, const char *args, int phase)
{
    static const sf_trace_about nothing;
    const sf_trace_about *a = about ? about : &nothing;
    sf_trace_event ev = {
        .side = t->side ? t->side : "-",
        .id = t->id,
        .call = call,
        .fd = fd,
        .args = args,
        .result = result,
        .err = err,
        .proto = proto_name(s->proto),
        .tcp_state = s->state,
        .tcp_state_before = s->state_before,
        .rtt_us = s->rtt_us,
        .accept_queue = s->queue,
        .local = s->local[0] ? s->local : NULL,
        .peer = s->peer[0] ? s->peer : NULL,
        .t_ns = sf_now_ns(),
        .data = t->tracer->with_data ? a->data : NULL,
        .datalen = t->tracer->with_data && a->data ? a->datalen : 0,
        .addr = a->addr,
        .opt_level = a->opt_level,
        .opt_name = a->opt_name,
        .opt_value = a->opt_value,
        .flags = a->flags,
        .notes = a->notes,
        .phase = phase,
    };

    t->tracer->fn(t->tracer->ud, &ev);
}

static int
tracing(const sf_trace *t)
{
    return t != NULL && t->tracer != NULL && t->tracer->fn != NULL;
}

/* One event for a call made on fd, describing subject_fd (the same socket, or the new
 * one accept returned; then the queue is still the listener's). */
static void
trace_va(const sf_trace *t, sf_call call, int fd, int subject_fd, long result, int err,
         const sf_trace_about *about, const char *args_fmt, va_list ap)
{
    char args[256];
    subject s;
    int saved = errno;

    vsnprintf(args, sizeof(args), args_fmt, ap);
    read_subject(subject_fd, call, &s);
    if (subject_fd != fd) {
        int32_t queue;

        sf_tcp_state(fd, NULL, &queue);
        s.queue = queue;
    }
    emit(t, call, fd, result, err, &s, about, args, SF_TRACE_RETURN);
    errno = saved;
}

void
sf_trace_call(const sf_trace *t, sf_call call, int fd, long result, int err,
              const sf_trace_about *about, const char *args_fmt, ...)
{
    va_list ap;

    if (!tracing(t))
        return;
    va_start(ap, args_fmt);
    trace_va(t, call, fd, fd, result, err, about, args_fmt, ap);
    va_end(ap);
}

void
sf_trace_call_on(const sf_trace *t, sf_call call, int fd, int subject_fd, long result,
                 int err, const sf_trace_about *about, const char *args_fmt, ...)
{
    va_list ap;

    if (!tracing(t))
        return;
    va_start(ap, args_fmt);
    trace_va(t, call, fd, subject_fd >= 0 ? subject_fd : fd, result, err, about, args_fmt,
             ap);
    va_end(ap);
}

void
sf__trace_call_on(const sf_trace *t, sf_call call, int fd, int subject_fd, long result,
                  int err, const sf_trace_about *about, const char *args_fmt, ...)
{
    va_list ap;

    if (!tracing(t))
        return;
    va_start(ap, args_fmt);
    trace_va(t, call, fd, subject_fd >= 0 ? subject_fd : fd, result, err, about, args_fmt,
             ap);
    va_end(ap);
}

void
sf__trace_entry(const sf_trace *t, sf_call call, int fd, const sf_trace_about *about,
                const char *args_fmt, ...)
{
    char args[256];
    subject s;
    va_list ap;
    int saved = errno, fl;

    if (!tracing(t) || !t->tracer->entries)
        return;
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK)) {
        errno = saved;
        return;
    }
    va_start(ap, args_fmt);
    vsnprintf(args, sizeof(args), args_fmt, ap);
    va_end(ap);
    read_subject(fd, call, &s);
    emit(t, call, fd, 0, 0, &s, about, args, SF_TRACE_ENTRY);
    errno = saved;
}

void
sf__trace_close_prepare(int fd, sf__close_note *n)
{
    int saved = errno;

    memset(n, 0, sizeof(*n));
    n->proto = sf__sock_proto(fd);
    n->state = n->proto == IPPROTO_TCP ? sf_tcp_state(fd, NULL, NULL) : SF_TCP_NONE;
    n->local.len = n->peer.len = sizeof(n->local.ss);
    if (n->proto == IPPROTO_TCP &&
        getsockname(fd, (struct sockaddr *)&n->local.ss, &n->local.len) == 0) {
        n->connected = getpeername(fd, (struct sockaddr *)&n->peer.ss, &n->peer.len) == 0;
        socklen_t len = sizeof(n->cookie);

        /* Both FINs passed with the descriptor open: the socket says CLOSE and has
         * forgotten its peer, while the kernel keeps the connection in TIME_WAIT. */
        n->local_only = !n->connected && n->state == SF_TCP_CLOSE && sf_addr_port(&n->local) &&
            getsockopt(fd, SOL_SOCKET, SO_COOKIE, &n->cookie, &len) == 0;
    }
    errno = saved;
}

void
sf__trace_close_done(const sf_trace *t, int fd, int rc, int err, const sf__close_note *n)
{
    subject s = { .proto = n->proto, .queue = -1 };
    sf_addr peer = n->peer;
    int saved = errno;

    if (!tracing(t))
        return;
    s.state_before = n->state;
    if (n->proto == IPPROTO_TCP)
        s.state = n->connected ? sf_tcp_state_lookup(&n->local, &n->peer)
                : n->local_only ? sf__lookup_time_wait(&n->local, n->cookie, &peer) : SF_TCP_CLOSE;
    if (n->connected || s.state == SF_TCP_TIME_WAIT) {
        sf_addr_format(&n->local, s.local, sizeof(s.local));
        sf_addr_format(&peer, s.peer, sizeof(s.peer));
    }
    emit(t, SF_CALL_CLOSE, fd, rc, err, &s, NULL, "", SF_TRACE_RETURN);
    errno = saved;
}

int
sf_trace_lookup(const sf_trace *t, const sf_addr *local, const sf_addr *peer)
{
    subject s = { .proto = IPPROTO_TCP, .queue = -1 };
    char args[2 * SF_ADDR_STRLEN + 8];
    int saved = errno;

    s.state = sf_tcp_state_lookup(local, peer);
    if (!tracing(t))
        return s.state;
    sf_addr_format(local, s.local, sizeof(s.local));
    sf_addr_format(peer, s.peer, sizeof(s.peer));
    snprintf(args, sizeof(args), "%s <-> %s", s.local, s.peer);
    emit(t, SF_CALL_SOCK_DIAG, -1, 0, 0, &s, SF_ABOUT(.addr = peer), args, SF_TRACE_RETURN);
    errno = saved;
    return s.state;
}

/* One event per datagram of a batch, so a batch reads like the recvfrom/sendto calls it
 * replaces; a failed call is one event. */
void
sf__trace_batch(const sf_trace *t, sf_call call, int fd, const struct mmsghdr *m, int n,
            int err, unsigned vlen)
{
    int in = call == SF_CALL_RECVMMSG;
    char who[SF_ADDR_STRLEN];
    sf_addr a;

    if (n < 0)
        sf_trace_call(t, call, fd, -1, err, NULL, "vlen=%u", vlen);
    for (int i = 0; i < n; i++) {
        const struct msghdr *h = &m[i].msg_hdr;

        if (h->msg_name)
            sf_addr_from_sa(&a, h->msg_name, h->msg_namelen);
        sf_trace_call(t, call, fd, (long)m[i].msg_len, 0,
                      SF_ABOUT(.addr = h->msg_name ? &a : NULL, .data = h->msg_iov->iov_base,
                               .datalen = m[i].msg_len),
                      "len=%zu, %s=%s", h->msg_iov->iov_len, in ? "from" : "to",
                      h->msg_name ? sf_addr_format(&a, who, sizeof(who)) : "(connected)");
    }
}
