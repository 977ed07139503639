/* trace: build one event per socket call, read the real TCP state from the kernel, and
 * write events as aligned text, JSON lines or the telephone picture. */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sockflow/err.h"
#include "trace_int.h"

uint64_t
sf_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *
sf_tcp_state_name(int state)
{
    static const char *const names[] = {
        "-", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
        "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
    };

    if (state < 0 || state >= (int)(sizeof(names) / sizeof(names[0])))
        return "?";
    return names[state];
}

int
sf_tcp_state(int fd, uint32_t *rtt_us, int32_t *accept_queue)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int saved = errno;

    if (rtt_us)
        *rtt_us = 0;
    if (accept_queue)
        *accept_queue = -1;
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        errno = saved;
        return SF_TCP_NONE;
    }
    if (rtt_us && ti.tcpi_state == SF_TCP_ESTABLISHED)
        *rtt_us = ti.tcpi_rtt;
    /* On a listening socket tcpi_unacked is the current accept queue length. */
    if (accept_queue && ti.tcpi_state == SF_TCP_LISTEN)
        *accept_queue = (int32_t)ti.tcpi_unacked;
    return ti.tcpi_state;
}

/* IPPROTO_TCP, IPPROTO_UDP, or 0 for anything else (a pipe, a closed descriptor). */
static int
sock_proto(int fd)
{
    int p = 0, saved = errno;
    socklen_t len = sizeof(p);

    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &p, &len) < 0)
        p = 0;
    errno = saved;
    return p == IPPROTO_TCP || p == IPPROTO_UDP ? p : 0;
}

static const char *
proto_name(int p)
{
    return p == IPPROTO_TCP ? "tcp" : p == IPPROTO_UDP ? "udp" : NULL;
}

/* ---- the state of a connection without its descriptor ---- */

/* The kernel's request sockets (TCP_NEW_SYN_RECV) are SYN_RECV to a reader. */
static int
kernel_state(unsigned s)
{
    return s == 12 ? SF_TCP_SYN_RECV : s >= 1 && s <= 11 ? (int)s : SF_TCP_NONE;
}

static void
diag_addr(const sf_addr *a, __be32 out[4], __be16 *port)
{
    if (sf_addr_family(a) == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;

        memcpy(out, &s6->sin6_addr, 16);
        *port = s6->sin6_port;
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;

        out[0] = s4->sin_addr.s_addr;
        *port = s4->sin_port;
    }
}

/* Open a sock_diag socket and send one TCP request for local's family: an exact lookup
 * when peer is given, else a dump of the sockets in states. Returns the fd or -1. */
static int
diag_request(const sf_addr *local, const sf_addr *peer, uint32_t states)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    struct timeval tv = { .tv_sec = 1 };
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);

    if (fd < 0)
        return -1;
    memset(&req, 0, sizeof(req));
    req.nlh.nlmsg_len = sizeof(req);
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST | (peer ? 0 : NLM_F_DUMP);
    req.r.sdiag_family = (uint8_t)sf_addr_family(local);
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = states;
    if (peer) {
        diag_addr(local, req.r.id.idiag_src, &req.r.id.idiag_sport);
        diag_addr(peer, req.r.id.idiag_dst, &req.r.id.idiag_dport);
        req.r.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
        req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One exact lookup by the four-tuple (inet_diag "dump one"), like `ss` does. */
static int
lookup_netlink(const sf_addr *local, const sf_addr *peer)
{
    union {
        char buf[8192];
        struct nlmsghdr align;
    } u;
    const struct nlmsghdr *h;
    int fd, state = SF_TCP_NONE;
    __be32 peer_addr[4];
    __be16 peer_port;
    ssize_t n;

    fd = diag_request(local, peer, ~0u);
    if (fd < 0)
        return SF_TCP_NONE;
    diag_addr(peer, peer_addr, &peer_port);
    n = recv(fd, u.buf, sizeof(u.buf), 0);
    if (n < (ssize_t)sizeof(struct nlmsghdr))
        goto out;
    h = &u.align;
    if (!NLMSG_OK(h, (size_t)n))
        goto out;
    if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);

        /* ENOENT: the kernel holds no such connection any more. */
        if (e->error == -ENOENT)
            state = SF_TCP_CLOSE;
    } else if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
        const struct inet_diag_msg *m = NLMSG_DATA(h);

        /* With no such connection the kernel may answer with the listener on the port. */
        state = m->id.idiag_dport == peer_port ? kernel_state(m->idiag_state) : SF_TCP_CLOSE;
    }
out:
    close(fd);
    return state;
}

/* /proc/net/tcp prints each address as the raw 32-bit words in hex, the port in host
 * order: "0100007F:1F90". */
static void
proc_addr(const sf_addr *a, char *out, size_t len)
{
    __be32 w[4] = { 0 };
    __be16 port;

    diag_addr(a, w, &port);
    if (sf_addr_family(a) == AF_INET6)
        snprintf(out, len, "%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3], ntohs(port));
    else
        snprintf(out, len, "%08X:%04X", w[0], ntohs(port));
}

static int
lookup_proc(const sf_addr *local, const sf_addr *peer)
{
    char want_l[64], want_p[64], line[512], l[64], p[64];
    unsigned st;
    FILE *f;
    int state = SF_TCP_CLOSE;

    f = fopen(sf_addr_family(local) == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp", "re");
    if (f == NULL)
        return SF_TCP_NONE;
    proc_addr(local, want_l, sizeof(want_l));
    proc_addr(peer, want_p, sizeof(want_p));
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, " %*[0-9]: %63s %63s %x", l, p, &st) == 3 &&
            strcmp(l, want_l) == 0 && strcmp(p, want_p) == 0) {
            state = kernel_state(st);
            break;
        }
    }
    fclose(f);
    return state;
}

/* A socket whose two FINs passed while its descriptor was open reads CLOSE and has
 * forgotten its peer; the kernel keeps the connection as a TIME_WAIT entry carrying the
 * socket's cookie. Find it among the TIME_WAIT entries of local's port; fill peer. */
static int
lookup_time_wait(const sf_addr *local, uint64_t cookie, sf_addr *peer)
{
    union {
        char buf[32768];
        struct nlmsghdr align;
    } u;
    __be32 addr[4];
    __be16 port;
    uint64_t deadline = sf_now_ns() + 1000000000u;
    int fd, state = SF_TCP_CLOSE, done = 0;

    fd = diag_request(local, NULL, 1u << SF_TCP_TIME_WAIT);
    if (fd < 0)
        return SF_TCP_CLOSE;
    diag_addr(local, addr, &port);
    while (!done && sf_now_ns() < deadline) {
        ssize_t n = recv(fd, u.buf, sizeof(u.buf), 0);
        const struct nlmsghdr *h = &u.align;

        if (n <= 0)
            break;
        for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            uint64_t c;

            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
                done = 1;
                break;
            }
            c = (uint64_t)m->id.idiag_cookie[1] << 32 | m->id.idiag_cookie[0];
            if (c != cookie || m->id.idiag_sport != port)
                continue;
            state = kernel_state(m->idiag_state);
            *peer = *local;
            if (sf_addr_family(local) == AF_INET6)
                memcpy(&((struct sockaddr_in6 *)&peer->ss)->sin6_addr, m->id.idiag_dst, 16);
            else
                ((struct sockaddr_in *)&peer->ss)->sin_addr.s_addr = m->id.idiag_dst[0];
            sf_addr_set_port(peer, ntohs(m->id.idiag_dport));
        }
    }
    close(fd);
    return state;
}

int
sf_tcp_state_lookup(const sf_addr *local, const sf_addr *peer)
{
    int saved = errno, state;

    if (sf_addr_family(local) != sf_addr_family(peer))
        return SF_TCP_NONE;
    state = lookup_netlink(local, peer);
    if (state == SF_TCP_NONE)
        state = lookup_proc(local, peer);
    errno = saved;
    return state;
}

/* ---- building events ---- */

typedef struct subject {
    int proto;
    int state, state_before;
    uint32_t rtt_us;
    int32_t queue;
    char local[SF_ADDR_STRLEN], peer[SF_ADDR_STRLEN];
} subject;

static void
read_subject(int fd, subject *s)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int saved = errno;

    s->proto = sock_proto(fd);
    s->state = s->proto == IPPROTO_TCP ? sf_tcp_state(fd, &s->rtt_us, &s->queue) : SF_TCP_NONE;
    if (s->proto == IPPROTO_TCP) {
        uint64_t cookie;

        /* The kernel numbers a socket on first asking, and a TIME_WAIT entry keeps the
         * number of its socket: asked now, close can find the connection later. */
        len = sizeof(cookie);
        getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len);
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
    errno = saved;
}

static void
emit(const sf_trace *t, const char *call, int fd, long result, int err, const subject *s,
     const void *data, size_t datalen, const char *args)
{
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
        .data = t->tracer->with_data ? data : NULL,
        .datalen = t->tracer->with_data ? datalen : 0,
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
trace_va(const sf_trace *t, const char *call, int fd, int subject_fd, long result, int err,
         const void *data, size_t datalen, const char *args_fmt, va_list ap)
{
    char args[256];
    subject s;
    int saved = errno;

    vsnprintf(args, sizeof(args), args_fmt, ap);
    read_subject(subject_fd, &s);
    if (subject_fd != fd) {
        int32_t queue;

        sf_tcp_state(fd, NULL, &queue);
        s.queue = queue;
    }
    emit(t, call, fd, result, err, &s, data, datalen, args);
    errno = saved;
}

void
sf_trace_call(const sf_trace *t, const char *call, int fd, long result, int err,
              const void *data, size_t datalen, const char *args_fmt, ...)
{
    va_list ap;

    if (!tracing(t))
        return;
    va_start(ap, args_fmt);
    trace_va(t, call, fd, fd, result, err, data, datalen, args_fmt, ap);
    va_end(ap);
}

void
sf__trace_call_on(const sf_trace *t, const char *call, int fd, int subject_fd, long result,
                  int err, const char *args_fmt, ...)
{
    va_list ap;

    if (!tracing(t))
        return;
    va_start(ap, args_fmt);
    trace_va(t, call, fd, subject_fd >= 0 ? subject_fd : fd, result, err, NULL, 0,
             args_fmt, ap);
    va_end(ap);
}

void
sf__trace_close_prepare(int fd, sf__close_note *n)
{
    int saved = errno;

    memset(n, 0, sizeof(*n));
    n->proto = sock_proto(fd);
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
                : n->local_only ? lookup_time_wait(&n->local, n->cookie, &peer) : SF_TCP_CLOSE;
    if (n->connected || s.state == SF_TCP_TIME_WAIT) {
        sf_addr_format(&n->local, s.local, sizeof(s.local));
        sf_addr_format(&peer, s.peer, sizeof(s.peer));
    }
    emit(t, "close", fd, rc, err, &s, NULL, 0, "");
    errno = saved;
}

/* ---- formatting ---- */

/* An output cursor: counts what it could not write, so the caller learns the size. */
typedef struct cursor {
    char *p;
    size_t cap, len;
} cursor;

static void
put(cursor *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(cursor *o, const char *fmt, ...)
{
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void
put_json_str(cursor *o, const char *s)
{
    if (s == NULL) {
        put(o, "null");
        return;
    }
    put(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            put(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            put(o, "\\u%04x", c);
        else
            put(o, "%c", c);
    }
    put(o, "\"");
}

static void
put_result(cursor *o, const sf_trace_event *ev)
{
    if (ev->result < 0 && ev->err)
        put(o, "%ld %s", ev->result, sf_errname(-ev->err));
    else
        put(o, "%ld", ev->result);
}

static void
put_hexdump(cursor *o, const sf_trace_event *ev, const char *indent)
{
    const unsigned char *d = ev->data;
    size_t n = ev->datalen < SF_TRACE_DATA_MAX ? ev->datalen : SF_TRACE_DATA_MAX;

    for (size_t off = 0; off < n; off += 16) {
        size_t k = n - off < 16 ? n - off : 16;

        put(o, "%s%04zx ", indent, off);
        for (size_t i = 0; i < 16; i++) {
            if (i < k)
                put(o, " %02x", d[off + i]);
            else
                put(o, "   ");
        }
        put(o, "  ");
        for (size_t i = 0; i < k; i++)
            put(o, "%c", d[off + i] >= 0x20 && d[off + i] < 0x7f ? d[off + i] : '.');
        put(o, "\n");
    }
    if (ev->datalen > n)
        put(o, "%s(%zu more bytes not shown)\n", indent, ev->datalen - n);
}

static void
format_text(cursor *o, const sf_trace_event *ev, unsigned flags, uint64_t t0_ns)
{
    char who[48], fd[16], res[32], extra[64] = "";
    double t = ev->t_ns >= t0_ns ? (double)(ev->t_ns - t0_ns) / 1e9 : 0.0;
    cursor r = { res, sizeof(res), 0 };
    static const char indent[] = "                 ";

    if (ev->id)
        snprintf(who, sizeof(who), "%s#%lu", ev->side, ev->id);
    else
        snprintf(who, sizeof(who), "%s", ev->side);
    if (ev->fd >= 0)
        snprintf(fd, sizeof(fd), "fd=%d", ev->fd);
    else
        snprintf(fd, sizeof(fd), "-");
    put_result(&r, ev);
    if (ev->tcp_state == SF_TCP_ESTABLISHED && ev->rtt_us)
        snprintf(extra, sizeof(extra), " rtt=%uus", ev->rtt_us);
    else if (ev->accept_queue >= 0)
        snprintf(extra, sizeof(extra), " queue=%d", ev->accept_queue);
    put(o, "%10.6f %-10s %-12s %-6s %-36s = %-16s %s%s\n", t, who, ev->call, fd, ev->args,
        res, ev->proto ? sf_tcp_state_name(ev->tcp_state) : "-", extra);
    if (flags & SF_TRACE_F_EXPLAIN) {
        char why[512];

        put(o, "%s> %s\n", indent, sf_trace_explain(ev, why, sizeof(why)));
    }
    if ((flags & SF_TRACE_F_DATA) && ev->data && ev->datalen)
        put_hexdump(o, ev, indent);
}

static void
format_json(cursor *o, const sf_trace_event *ev, unsigned flags)
{
    put(o, "{\"event\":\"call\",\"t_ns\":%llu,\"side\":", (unsigned long long)ev->t_ns);
    put_json_str(o, ev->side);
    put(o, ",\"id\":%lu,\"call\":", ev->id);
    put_json_str(o, ev->call);
    put(o, ",\"fd\":%d,\"args\":", ev->fd);
    put_json_str(o, ev->args);
    put(o, ",\"result\":%ld,\"errno\":", ev->result);
    put_json_str(o, ev->result < 0 && ev->err ? sf_errname(-ev->err) : NULL);
    put(o, ",\"proto\":");
    put_json_str(o, ev->proto);
    put(o, ",\"state\":");
    put_json_str(o, ev->proto && ev->tcp_state != SF_TCP_NONE
                        ? sf_tcp_state_name(ev->tcp_state) : NULL);
    if (ev->tcp_state_before != SF_TCP_NONE) {
        put(o, ",\"state_before\":");
        put_json_str(o, sf_tcp_state_name(ev->tcp_state_before));
    }
    if (ev->tcp_state == SF_TCP_ESTABLISHED)
        put(o, ",\"rtt_us\":%u", ev->rtt_us);
    if (ev->accept_queue >= 0)
        put(o, ",\"accept_queue\":%d", ev->accept_queue);
    put(o, ",\"local\":");
    put_json_str(o, ev->local);
    put(o, ",\"peer\":");
    put_json_str(o, ev->peer);
    if ((flags & SF_TRACE_F_DATA) && ev->data && ev->datalen) {
        size_t n = ev->datalen < SF_TRACE_DATA_MAX ? ev->datalen : SF_TRACE_DATA_MAX;

        put(o, ",\"data\":\"");
        for (size_t i = 0; i < n; i++)
            put(o, "%02x", ((const unsigned char *)ev->data)[i]);
        put(o, "\",\"data_len\":%zu", ev->datalen);
    }
    if (flags & SF_TRACE_F_EXPLAIN) {
        char why[512];

        put(o, ",\"explain\":");
        put_json_str(o, sf_trace_explain(ev, why, sizeof(why)));
    }
    put(o, "}\n");
}

size_t
sf_trace_format(const sf_trace_event *ev, int format, unsigned flags, uint64_t t0_ns,
                char *buf, size_t cap)
{
    cursor o = { buf, cap, 0 };

    if (cap)
        buf[0] = '\0';
    if (format == SF_TRACE_JSON)
        format_json(&o, ev, flags);
    else
        format_text(&o, ev, flags, t0_ns);
    return o.len;
}

/* ---- the telephone picture ---- */

/* The value of "key=" in args ("from=127.0.0.1:9, len=5" → "127.0.0.1:9"). */
static const char *
arg_value(const char *args, const char *key, char *buf, size_t len)
{
    const char *p = strstr(args, key);
    size_t n;

    if (p == NULL)
        return NULL;
    p += strlen(key);
    n = strcspn(p, ",");
    if (n >= len)
        n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

static int
udp(const sf_trace_event *ev)
{
    return ev->proto && strcmp(ev->proto, "udp") == 0;
}

static const char *
st(const sf_trace_event *ev)
{
    return sf_tcp_state_name(ev->tcp_state);
}

static void
explain_error(cursor *o, const sf_trace_event *ev)
{
    const char *name = sf_errname(-ev->err);
    /* connect-done is the end of a connect(): poll, then SO_ERROR */
    const char *call = strncmp(ev->call, "connect", 7) == 0 ? "connect" : ev->call;

    switch (ev->err) {
    case EAGAIN:
        put(o, "%s(): not ready, nothing to do yet (EAGAIN): the socket is nonblocking, so the"
            " call returns at once instead of sleeping.", call);
        return;
    case ECONNREFUSED:
        put(o, "%s(): nobody answers at that number (ECONNREFUSED): no phone is switched on"
            " there, and the kernel at the other end said so with a reset.", call);
        return;
    case ETIMEDOUT:
        put(o, "%s(): the call was never answered (ETIMEDOUT).", call);
        return;
    case ECONNRESET:
        put(o, "%s(): the other side slammed the phone down (ECONNRESET: a reset, not a"
            " goodbye).", call);
        return;
    case EPIPE:
        put(o, "%s(): the other side has hung up; talking into a dead line fails (EPIPE).",
            call);
        return;
    case EADDRINUSE:
        put(o, "%s(): that number is taken (EADDRINUSE): another phone already has it.",
            call);
        return;
    case EACCES:
        put(o, "%s(): not allowed (EACCES): numbers below 1024 need privilege.", call);
        return;
    default:
        put(o, "%s() failed: %s (%s).", call, strerror(ev->err), name);
    }
}

static void
explain_socket(cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        put(o, "socket(): you have a mailbox for letters (UDP, descriptor %ld): no call is"
            " ever set up, each datagram travels alone with a return address.", ev->result);
    else
        put(o, "socket(): you have a phone (descriptor %ld). It has no number yet and"
            " cannot ring (%s).", ev->result, st(ev));
}

static void
explain_setsockopt(cursor *o, const sf_trace_event *ev)
{
    put(o, "setsockopt(%s): a setting on the %s before it gets its %s", ev->args,
        udp(ev) ? "mailbox" : "phone", udp(ev) ? "address" : "number");
    if (strstr(ev->args, "SO_REUSEADDR"))
        put(o, ": a restarted server may take its number back at once, while calls of the"
            " last run still linger in TIME_WAIT.");
    else if (strstr(ev->args, "SO_REUSEPORT"))
        put(o, ": several phones may share one number, and the kernel spreads the callers"
            " among them.");
    else if (strstr(ev->args, "IPV6_V6ONLY"))
        put(o, ": this number answers IPv6 callers only; IPv4 gets a phone of its own.");
    else
        put(o, ".");
}

static void
explain_bind(cursor *o, const sf_trace_event *ev)
{
    if (udp(ev))
        put(o, "bind(): the mailbox gets its address, %s: letters sent there land here.",
            ev->local ? ev->local : ev->args);
    else
        put(o, "bind(): the phone gets its number, %s, like a SIM card put in. It is still"
            " switched off (%s).", ev->local ? ev->local : ev->args, st(ev));
}

static void
explain_connect(cursor *o, const sf_trace_event *ev)
{
    if (udp(ev)) {
        put(o, "connect() on UDP: no call is set up and nothing is sent; it only writes %s"
            " on every envelope, so send() needs no address and only letters from there"
            " are taken (our own return address is %s).", ev->args,
            ev->local ? ev->local : "-");
        return;
    }
    if (strcmp(ev->call, "connect-done") == 0) {
        put(o, "The three-way handshake is complete (SYN, SYN-ACK, ACK): the line is open"
            " (%s), round trip %u us.", st(ev), ev->rtt_us);
        return;
    }
    put(o, "connect(): someone dials %s. The kernel picked the caller's own number, %s"
        " (a free local port), and sent a SYN. ", ev->args, ev->local ? ev->local : "-");
    if (ev->tcp_state == SF_TCP_SYN_SENT)
        put(o, "The line rings: SYN_SENT, waiting for the SYN-ACK.");
    else if (ev->tcp_state == SF_TCP_ESTABLISHED)
        put(o, "On loopback the SYN-ACK came back before connect() returned: the handshake"
            " is already complete (ESTABLISHED).");
    else if (ev->tcp_state == SF_TCP_CLOSE)
        put(o, "The answer came back before connect() returned, and it is no (CLOSE): see"
            " the next line.");
    else
        put(o, "State: %s.", st(ev));
}

static void
explain_accept(cursor *o, const sf_trace_event *ev)
{
    put(o, "accept(): the phone rang and you answered: a private line on a new descriptor %ld"
        " (%s), ", ev->result, st(ev));
    if (strstr(ev->args, "peer=NULL"))
        put(o, "to a caller you did not ask about (the address argument was NULL; "
            "getpeername() would tell: %s). ", ev->peer ? ev->peer : "-");
    else
        put(o, "to the caller at %s. ", ev->peer ? ev->peer : "-");
    put(o, "The first phone, descriptor %d, stays switched on for the next caller", ev->fd);
    if (ev->accept_queue > 0)
        put(o, " (%d more waiting).", ev->accept_queue);
    else
        put(o, ".");
}

static void
explain_read(cursor *o, const sf_trace_event *ev)
{
    if (ev->result > 0) {
        put(o, "read(): you listen: %ld bytes from the other side.", ev->result);
    } else if (ev->tcp_state == SF_TCP_CLOSE_WAIT) {
        put(o, "read() returned 0: the other side hung up (its FIN arrived). This side is"
            " now CLOSE_WAIT: it may still talk, and should hang up too.");
    } else {
        put(o, "read() returned 0: end of the call, the other side has hung up (%s).", st(ev));
    }
}

static void
explain_dgram(cursor *o, const sf_trace_event *ev)
{
    char addr[SF_ADDR_STRLEN];
    const char *a;
    int in = strncmp(ev->call, "recv", 4) == 0;

    a = arg_value(ev->args, in ? "from=" : "to=", addr, sizeof(addr));
    if (a == NULL || strcmp(a, "(connected)") == 0)
        a = ev->peer ? ev->peer : "-";
    if (in)
        put(o, "%s(): a letter arrives, %ld bytes, with its return address %s; no call was"
            " set up.", ev->call, ev->result, a);
    else
        put(o, "%s(): a letter of %ld bytes is posted to %s: no dialling, no answer to wait"
            " for; it just goes.", ev->call, ev->result, a);
}

static void
explain_close(cursor *o, const sf_trace_event *ev)
{
    if (ev->proto == NULL || strcmp(ev->proto, "tcp") != 0) {
        put(o, "close(): %s is put away.", ev->proto ? "the mailbox" : "the descriptor");
        return;
    }
    switch (ev->tcp_state_before) {
    case SF_TCP_LISTEN:
        put(o, "close(): the phone is switched off: nobody can call this number any more;"
            " lines already answered stay open.");
        return;
    case SF_TCP_ESTABLISHED:
        put(o, "close(): you hang up first: a FIN goes out and the connection is now %s."
            " The other side will read() 0 and sit in CLOSE_WAIT until it hangs up too;"
            " this side ends in TIME_WAIT.", st(ev));
        return;
    case SF_TCP_CLOSE_WAIT:
        put(o, "close(): the other side had hung up already; now you hang up too: the last"
            " FIN goes out (%s).", st(ev));
        return;
    case SF_TCP_FIN_WAIT1: case SF_TCP_FIN_WAIT2:
        put(o, "close(): the goodbye was said already (shutdown); the descriptor goes away"
            " and the kernel finishes the call (%s).", st(ev));
        return;
    default:
        if (ev->tcp_state == SF_TCP_TIME_WAIT)
            put(o, "close(): both sides have hung up; the descriptor goes away, and the"
                " kernel keeps the connection in TIME_WAIT for a while so that late packets"
                " of this call cannot reach a new one.");
        else
            put(o, "close(): the phone is put away (it was %s).",
                sf_tcp_state_name(ev->tcp_state_before));
    }
}

static void
explain_probe(cursor *o, const sf_trace_event *ev)
{
    if (strcmp(ev->call, "sock_diag") == 0) {
        put(o, "Ask the kernel about a connection whose descriptor may be gone (%s): %s.",
            ev->args, st(ev));
        if (ev->tcp_state == SF_TCP_TIME_WAIT)
            put(o, " TIME_WAIT: the side that hung up first waits (60 s on Linux) so that"
                " late packets of this call die out.");
        else if (ev->tcp_state == SF_TCP_FIN_WAIT2)
            put(o, " FIN_WAIT2: our goodbye was acknowledged; waiting for the other side"
                " to hang up.");
        return;
    }
    put(o, "getsockopt(TCP_INFO): ask the kernel how the line is: %s", st(ev));
    if (ev->accept_queue >= 0)
        put(o, ", with %d finished call%s waiting for accept().", ev->accept_queue,
            ev->accept_queue == 1 ? "" : "s");
    else if (ev->tcp_state == SF_TCP_SYN_SENT)
        put(o, ": the SYN went out and no SYN-ACK came back yet; the line still rings.");
    else
        put(o, ".");
}

const char *
sf_trace_explain(const sf_trace_event *ev, char *buf, size_t cap)
{
    cursor o = { buf, cap, 0 };
    const char *c = ev->call;

    if (cap)
        buf[0] = '\0';
    if (ev->result < 0 && ev->err && !(strcmp(c, "connect") == 0 && ev->err == EINPROGRESS)) {
        if (strncmp(c, "accept", 6) == 0 && ev->err == EINVAL)
            put(&o, "accept(): only a phone that is switched on (listen()) can be answered;"
                " this one is %s, so accept() fails with EINVAL.", st(ev));
        else if (strncmp(c, "accept", 6) == 0 && ev->err == EAGAIN)
            put(&o, "accept(): nobody is calling: no finished call waits in the queue and"
                " this phone does not wait (nonblocking), so accept() returns EAGAIN at once.");
        else if (strcmp(c, "read") == 0 && ev->err == EAGAIN)
            put(&o, "read(): silence on the line: nothing to read yet (EAGAIN).");
        else if (strcmp(c, "write") == 0 && ev->err == EAGAIN)
            put(&o, "write(): the line is full: the other side does not read fast enough"
                " (EAGAIN).");
        else
            explain_error(&o, ev);
    } else if (strcmp(c, "socket") == 0) {
        explain_socket(&o, ev);
    } else if (strcmp(c, "setsockopt") == 0) {
        explain_setsockopt(&o, ev);
    } else if (strcmp(c, "bind") == 0) {
        explain_bind(&o, ev);
    } else if (strcmp(c, "listen") == 0) {
        put(&o, "listen(): the phone is switched on and can ring (%s). From now on the kernel"
            " answers callers by itself (the three-way handshake) and keeps the finished"
            " calls waiting for accept() (%s).", st(ev), ev->args);
    } else if (strncmp(c, "connect", 7) == 0) {
        explain_connect(&o, ev);
    } else if (strncmp(c, "accept", 6) == 0) {
        explain_accept(&o, ev);
    } else if (udp(ev) && (strcmp(c, "read") == 0 || strcmp(c, "write") == 0)) {
        put(&o, "%s(): a letter of %ld bytes %s %s, the address connect() fixed; no call is"
            " set up.", c, ev->result, c[0] == 'r' ? "arrives from" : "is posted to",
            ev->peer ? ev->peer : "-");
    } else if (strcmp(c, "read") == 0) {
        explain_read(&o, ev);
    } else if (strcmp(c, "write") == 0) {
        put(&o, "write(): you talk: %ld bytes go into the line.", ev->result);
    } else if (strncmp(c, "recv", 4) == 0 || strncmp(c, "send", 4) == 0) {
        explain_dgram(&o, ev);
    } else if (strcmp(c, "shutdown") == 0) {
        put(&o, "shutdown(SHUT_WR): you say goodbye but keep listening: a FIN goes out (%s)."
            " The other side will read() 0 and may still talk.", st(ev));
    } else if (strcmp(c, "close") == 0) {
        explain_close(&o, ev);
    } else if (strcmp(c, "getsockopt") == 0 || strcmp(c, "sock_diag") == 0) {
        explain_probe(&o, ev);
    } else {
        put(&o, "%s(): %s.", c, st(ev));
    }
    return buf;
}

/* ---- the FILE sink ---- */

static void
write_entry(FILE *f, const char *p, size_t len)
{
    /* One fwrite under the FILE's lock, flushed: whole entries, whatever the thread. */
    flockfile(f);
    fwrite(p, 1, len, f);
    fflush(f);
    funlockfile(f);
}

static void
sink_event(void *ud, const sf_trace_event *ev)
{
    sf_trace_sink *s = ud;
    char small[1024], *big;
    size_t n;

    n = sf_trace_format(ev, s->format, s->flags, s->t0_ns, small, sizeof(small));
    if (n < sizeof(small)) {
        write_entry(s->out, small, n);
        return;
    }
    big = malloc(n + 1);
    if (big == NULL) {
        write_entry(s->out, small, sizeof(small) - 1);
        return;
    }
    sf_trace_format(ev, s->format, s->flags, s->t0_ns, big, n + 1);
    write_entry(s->out, big, n);
    free(big);
}

void
sf_trace_sink_init(sf_trace_sink *s, FILE *out, int format, unsigned flags)
{
    s->tracer.fn = sink_event;
    s->tracer.ud = s;
    s->tracer.with_data = (flags & SF_TRACE_F_DATA) != 0;
    s->out = out;
    s->format = format;
    s->flags = flags;
    s->t0_ns = sf_now_ns();
}

void
sf_trace_sink_note(sf_trace_sink *s, const char *kind, const char *fmt, ...)
{
    char text[1024], line[8192];
    cursor o = { line, sizeof(line), 0 };
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->format == SF_TRACE_JSON) {
        put(&o, "{\"event\":");
        put_json_str(&o, kind);
        put(&o, ",\"t_ns\":%llu,\"text\":", (unsigned long long)sf_now_ns());
        put_json_str(&o, text);
        put(&o, "}\n");
    } else {
        put(&o, "%s\n", text);
    }
    if (o.len >= sizeof(line))
        o.len = sizeof(line) - 1;
    write_entry(s->out, line, o.len);
}
