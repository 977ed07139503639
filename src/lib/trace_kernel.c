/* trace_kernel: the real state of a socket or a connection as the kernel holds it:
 * TCP_INFO on a descriptor, sock_diag (or /proc/net/tcp) by addresses, a TIME_WAIT entry
 * by socket cookie, and the kernel's network counters. */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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

int
sf__sock_proto(int fd)
{
    int p = 0, saved = errno;
    socklen_t len = sizeof(p);

    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &p, &len) < 0)
        p = 0;
    errno = saved;
    return p == IPPROTO_TCP || p == IPPROTO_UDP ? p : 0;
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

int
sf__lookup_time_wait(const sf_addr *local, uint64_t cookie, sf_addr *peer)
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

/* /proc/net/netstat and /proc/net/snmp hold pairs of lines: "Group: name name ..." and
 * "Group: value value ...". */
static long
counter_in(const char *path, const char *group, const char *name)
{
    char head[4096], vals[4096], *hs, *vs, *h, *v;
    size_t glen = strlen(group);
    long n = -1;
    FILE *f = fopen(path, "re");

    if (f == NULL)
        return -1;
    while (n < 0 && fgets(head, sizeof(head), f) && fgets(vals, sizeof(vals), f)) {
        if (strncmp(head, group, glen) != 0 || head[glen] != ':')
            continue;
        h = strtok_r(head + glen + 1, " \n", &hs);
        v = strtok_r(vals + glen + 1, " \n", &vs);
        for (; h && v; h = strtok_r(NULL, " \n", &hs), v = strtok_r(NULL, " \n", &vs)) {
            if (strcmp(h, name) == 0) {
                n = atol(v);
                break;
            }
        }
    }
    fclose(f);
    return n;
}

long
sf_net_counter(const char *group, const char *name)
{
    int saved = errno;
    long n = counter_in("/proc/net/netstat", group, name);

    if (n < 0)
        n = counter_in("/proc/net/snmp", group, name);
    errno = saved;
    return n;
}
