/* scan: nonblocking connects to many ports of one host, a bounded number in flight, each
 * with its own deadline; TCP by handshake or reset, UDP by reply or ICMP refusal. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockflow/scan.h"

#define EVENTS_MAX 256
/* Descriptors left for the caller (stdio, a trace file, the epoll set itself). */
#define FD_RESERVE 16

/* One socket probes one port after another: Linux lets a socket whose connect failed
 * connect again, and calling connect() a second time is how the outcome is read (0 when
 * connected, the error — ECONNREFUSED — when not, which also makes the socket reusable).
 * A closed port then costs two calls, connect and connect, instead of socket, connect,
 * epoll_ctl, getsockopt and close: 0.4 s instead of 1.2 s of CPU for 65,535 loopback
 * ports. Sockets stay in the scan's own epoll set (rather than sf_loop's watcher table)
 * for the whole scan, keyed by slot. */
typedef struct slot {
    int fd;                 /* -1: none yet (or closed after an open port or a timeout) */
    int i;                  /* the port index it probes, -1 when free */
} slot;

typedef struct scan {
    const sf_scan_opts *o;
    sf_scan_result *out;
    sf_err *err;
    int epfd;
    slot *slots;
    int *free;              /* stack of free slot numbers */
    int nfree;
    int *slot_of;           /* per port index: its slot while in flight, else -1 */
    uint64_t *t0;           /* per port index: when its probe started (µs) */
    int next;               /* the next port index to start */
    int oldest;             /* no port index before this one is in flight */
    int inflight, cap, open;
    int timeout_ms;
} scan;

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *
sf_port_state_name(sf_port_state s)
{
    static const char *const names[] = {
        [SF_PORT_OPEN] = "open", [SF_PORT_CLOSED] = "closed",
        [SF_PORT_FILTERED] = "filtered", [SF_PORT_OPEN_FILTERED] = "open|filtered",
    };

    return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* ---- "22,20-25,1-65535" ---- */

static int
parse_one_port(const char *p, char **end)
{
    long v;

    if (*p < '0' || *p > '9')
        return -1;
    v = strtol(p, end, 10);
    return v >= 1 && v <= 65535 ? (int)v : -1;
}

static int
parse_range(const char *item, size_t len, int *lo, int *hi, sf_err *err)
{
    char text[32], *end;

    if (len == 0 || len >= sizeof(text))
        return sf_err_set(err, SF_EUSAGE, "ports '%.*s': not a port or a range LOW-HIGH",
                          (int)(len < 40 ? len : 40), item);
    memcpy(text, item, len);
    text[len] = '\0';
    *lo = *hi = parse_one_port(text, &end);
    if (*lo > 0 && *end == '-')
        *hi = parse_one_port(end + 1, &end);
    if (*lo < 0 || *hi < 0 || *end != '\0')
        return sf_err_set(err, SF_EUSAGE, "ports %s: not a port from 1 to 65535 or a "
                          "range of them", text);
    if (*hi < *lo)
        return sf_err_set(err, SF_EUSAGE, "ports %s: the range runs backwards", text);
    return 0;
}

int
sf_scan_parse_ports(const char *text, uint16_t **ports, sf_err *err)
{
    uint8_t seen[65536 / 8] = { 0 };
    uint16_t *list;
    int n = 0, lo = 0, hi = 0;

    if (text == NULL || *text == '\0')
        return sf_err_set(err, SF_EUSAGE, "ports: none given");
    list = malloc(65535 * sizeof(*list));
    if (list == NULL)
        return sf_err_set(err, -ENOMEM, "ports");
    for (const char *p = text;; p++) {
        size_t len = strcspn(p, ",");

        if (parse_range(p, len, &lo, &hi, err) < 0) {
            free(list);
            return SF_EUSAGE;
        }
        for (int port = lo; port <= hi; port++) {
            if (!(seen[port / 8] & (1u << (port % 8))))
                list[n++] = (uint16_t)port;
            seen[port / 8] |= (uint8_t)(1u << (port % 8));
        }
        p += len;
        if (*p == '\0')
            break;
    }
    *ports = list;
    return n;
}

/* ---- probes ---- */

static void
close_slot(scan *s, int k)
{
    if (s->slots[k].fd >= 0)
        close(s->slots[k].fd);      /* also leaves the epoll set */
    s->slots[k].fd = -1;
}

/* Port index i is decided; its slot is free again, and its socket kept for the next
 * port unless told (keep = 0) or no port is left to probe. */
static void
decide(scan *s, int i, sf_port_state state, int err, int keep)
{
    int k = s->slot_of[i];

    s->out[i].state = state;
    s->out[i].err = err;
    s->out[i].us = (uint32_t)(now_us() - s->t0[i]);
    if (state == SF_PORT_OPEN)
        s->open++;
    if (k < 0)
        return;
    if (state == SF_PORT_OPEN && !s->o->udp) {
        /* a reset, not a FIN: no TIME_WAIT here, nothing for the server to drain */
        struct linger lg = { 1, 0 };

        setsockopt(s->slots[k].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    /* An idle socket after a failure reports EPOLLHUP on every wait: keep it only if
     * the next probe takes it at once. */
    if (!keep || s->next >= s->o->nports)
        close_slot(s, k);
    s->slots[k].i = -1;
    s->slot_of[i] = -1;
    s->free[s->nfree++] = k;
    s->inflight--;
}

/* What an error says about a port: a refusal is a closed port, anything else (host or
 * network unreachable, no answer) a filtered one. */
static void
decide_error(scan *s, int i, int e)
{
    if (e == ECONNREFUSED)
        decide(s, i, SF_PORT_CLOSED, e, 1);
    else
        decide(s, i, s->o->udp ? SF_PORT_OPEN_FILTERED : SF_PORT_FILTERED, e, 1);
}

/* A TCP connection to ourselves: with nothing listening on a port of a local address,
 * a connect whose ephemeral source port happens to be that very port meets its own SYN
 * (simultaneous open) and succeeds. Nobody listens there: it is a closed port. */
static int
connected_to_itself(int fd, const sf_addr *dst)
{
    sf_addr me;
    const struct sockaddr_in *a4 = (const void *)&me.ss, *d4 = (const void *)&dst->ss;
    const struct sockaddr_in6 *a6 = (const void *)&me.ss, *d6 = (const void *)&dst->ss;

    me.len = sizeof(me.ss);
    if (getsockname(fd, (struct sockaddr *)&me.ss, &me.len) < 0 ||
        me.ss.ss_family != dst->ss.ss_family)
        return 0;
    if (me.ss.ss_family == AF_INET)
        return a4->sin_port == d4->sin_port && a4->sin_addr.s_addr == d4->sin_addr.s_addr;
    return a6->sin6_port == d6->sin6_port &&
           memcmp(&a6->sin6_addr, &d6->sin6_addr, sizeof(a6->sin6_addr)) == 0;
}

static void
decide_connected(scan *s, int i, int fd, const sf_addr *dst)
{
    if (connected_to_itself(fd, dst))
        decide(s, i, SF_PORT_CLOSED, ECONNREFUSED, 0);
    else
        decide(s, i, SF_PORT_OPEN, 0, 0);
}

/* A socket for slot k, in the epoll set. Returns 0 or a negative code with err set. */
static int
open_slot(scan *s, int k)
{
    struct epoll_event ev = { .events = s->o->udp ? EPOLLIN : EPOLLOUT, .data.u32 = k };
    char where[SF_ADDR_STRLEN];
    int fd, one = 1, e;

    fd = socket(sf_addr_family(&s->o->host),
                (s->o->udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sf_err_set(s->err, -errno, "socket");
    s->slots[k].fd = fd;
    if (s->o->src && sf_addr_port(s->o->src) == 0)
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (s->o->src && bind(fd, (const struct sockaddr *)&s->o->src->ss, s->o->src->len) < 0) {
        e = errno;
        close_slot(s, k);
        return sf_err_set(s->err, -e, "bind %s",
                          sf_addr_format(s->o->src, where, sizeof(where)));
    }
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        e = errno;
        close_slot(s, k);
        return sf_err_set(s->err, -e, "epoll_ctl");
    }
    return 0;
}

/* Start the probe of port index i. Returns 0, SF_EAGAIN when out of descriptors with
 * others in flight (wait for them), or a negative code with err set. */
static int
start_probe(scan *s, int i)
{
    char where[SF_ADDR_STRLEN];
    sf_addr a = s->o->host;
    int k = s->free[s->nfree - 1], rc;

    if (s->slots[k].fd < 0 && (rc = open_slot(s, k)) < 0)
        return (rc == -EMFILE || rc == -ENFILE) && s->inflight > 0 ? SF_EAGAIN : rc;
    s->nfree--;
    s->slots[k].i = i;
    s->slot_of[i] = k;
    s->out[i].port = s->o->ports[i];
    s->t0[i] = now_us();
    s->inflight++;
    sf_addr_set_port(&a, s->o->ports[i]);
    rc = connect(s->slots[k].fd, (const struct sockaddr *)&a.ss, a.len);
    if (rc == 0 && s->o->udp)
        rc = (int)send(s->slots[k].fd, "", 0, 0);
    if (rc < 0 && errno == EADDRNOTAVAIL) {
        decide(s, i, SF_PORT_FILTERED, EADDRNOTAVAIL, 0);
        return sf_err_set(s->err, -EADDRNOTAVAIL, "connect %s",
                          sf_addr_format(&a, where, sizeof(where)));
    }
    if (rc == 0 && !s->o->udp)
        decide_connected(s, i, s->slots[k].fd, &a);
    else if (rc < 0 && errno != EINPROGRESS)
        decide_error(s, i, errno);
    return 0;
}

/* Slot k's socket is ready. TCP: connect() again tells how the first one ended; UDP: a
 * receive finds a reply or the ICMP error. */
static void
answer(scan *s, int k)
{
    sf_addr a = s->o->host;
    int i = k >= 0 && k < s->cap ? s->slots[k].i : -1;
    char b;

    if (i < 0)
        return;
    if (s->o->udp) {
        if (recv(s->slots[k].fd, &b, 1, MSG_TRUNC) >= 0)
            decide(s, i, SF_PORT_OPEN, 0, 0);   /* later replies would queue: a new one */
        else if (errno != EAGAIN && errno != EINTR)
            decide_error(s, i, errno);
        return;
    }
    sf_addr_set_port(&a, s->o->ports[i]);
    if (connect(s->slots[k].fd, (const struct sockaddr *)&a.ss, a.len) == 0 ||
        errno == EISCONN)
        decide_connected(s, i, s->slots[k].fd, &a);
    else if (errno != EALREADY && errno != EINPROGRESS && errno != EINTR)
        decide_error(s, i, errno);
}

/* Probes start in port order with one timeout, so deadlines come in the same order:
 * expire from the oldest until one is not due. Returns ms until the next deadline. */
static int
expire(scan *s)
{
    uint64_t now = now_us(), limit = (uint64_t)s->timeout_ms * 1000u;

    while (s->oldest < s->next) {
        int i = s->oldest;

        if (s->slot_of[i] >= 0 && now - s->t0[i] < limit)
            return (int)((s->t0[i] + limit - now + 999) / 1000);
        if (s->slot_of[i] >= 0)
            decide(s, i, s->o->udp ? SF_PORT_OPEN_FILTERED : SF_PORT_FILTERED, ETIMEDOUT,
                   0);
        s->oldest++;
    }
    return -1;
}

static int
fill(scan *s)
{
    while (s->nfree > 0 && s->next < s->o->nports) {
        int rc = start_probe(s, s->next);

        if (rc == SF_EAGAIN) {
            /* the descriptor limit is lower than thought: drop the free slots */
            while (s->nfree > 0)
                close_slot(s, s->free[--s->nfree]);
            return 0;
        }
        if (rc < 0)
            return rc;
        s->next++;
    }
    return 0;
}

static int
run(scan *s)
{
    struct epoll_event evs[EVENTS_MAX];
    int n, rc, wait;

    while (s->next < s->o->nports || s->inflight > 0) {
        if ((rc = fill(s)) < 0)
            return rc;
        wait = expire(s);
        if (s->inflight == 0)
            continue;
        n = epoll_wait(s->epfd, evs, EVENTS_MAX, wait);
        if (n < 0 && errno != EINTR)
            return sf_err_set(s->err, -errno, "epoll_wait");
        for (int k = 0; k < n; k++)
            answer(s, (int)evs[k].data.u32);
    }
    return s->open;
}

/* The caller's cap, held under the soft descriptor limit. */
static int
probe_cap(const sf_scan_opts *o)
{
    int cap = o->parallel > 0 ? o->parallel : SF_SCAN_PARALLEL_DEFAULT;
    struct rlimit rl;

    if (cap > o->nports)
        cap = o->nports > 0 ? o->nports : 1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)cap + FD_RESERVE)
        cap = rl.rlim_cur > FD_RESERVE + 1 ? (int)rl.rlim_cur - FD_RESERVE : 1;
    return cap;
}

static int
alloc_scan(scan *s)
{
    int n = s->o->nports + 1;

    s->slots = malloc((size_t)s->cap * sizeof(*s->slots));
    s->free = malloc((size_t)s->cap * sizeof(*s->free));
    s->slot_of = malloc((size_t)n * sizeof(*s->slot_of));
    s->t0 = malloc((size_t)n * sizeof(*s->t0));
    if (!s->slots || !s->free || !s->slot_of || !s->t0)
        return sf_err_set(s->err, -ENOMEM, "scan");
    for (int k = 0; k < s->cap; k++) {
        s->slots[k] = (slot){ -1, -1 };
        s->free[k] = s->cap - 1 - k;
    }
    s->nfree = s->cap;
    for (int i = 0; i < n; i++)
        s->slot_of[i] = -1;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0)
        return sf_err_set(s->err, -errno, "epoll_create1");
    return 0;
}

int
sf_scan(const sf_scan_opts *o, sf_scan_result *out, sf_err *err)
{
    scan s = { .o = o, .out = out, .err = err, .epfd = -1 };
    int rc;

    if (o->nports < 0 || (o->nports > 0 && (o->ports == NULL || out == NULL)))
        return sf_err_set(err, SF_EUSAGE, "scan: no ports");
    s.cap = probe_cap(o);
    s.timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : SF_SCAN_TIMEOUT_DEFAULT_MS;
    rc = alloc_scan(&s);
    if (rc == 0)
        rc = run(&s);
    for (int k = 0; s.slots && k < s.cap; k++)
        close_slot(&s, k);
    if (s.epfd >= 0)
        close(s.epfd);
    free(s.slots);
    free(s.free);
    free(s.slot_of);
    free(s.t0);
    return rc;
}
