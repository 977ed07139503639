/* server_udp: the UDP engine. A batch of datagrams is received in one recvmmsg, each is
 * answered on its own (guard → service → size bound), and the replies leave in one
 * sendmmsg, those to one peer in a row as one UDP_SEGMENT send where they can. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sockflow/sock.h"
#include "server_int.h"

#define UDP_BATCH 64
#define UDP_ROUNDS 8        /* batches in a row before the other sockets get their turn */
#define UDP_AWAY_MIN 4      /* datagrams in one receive that make a socket busy (below) */
#define CMSG_ROOM 128       /* room for the destination address (IP_PKTINFO) */
#define UDP_LOG_MS 1000     /* at most one line a second about unanswered datagrams */
#define UDP_REWATCH_MS 100  /* a socket the loop could not watch again: how soon to retry */
#define GSO_SEGS 64         /* replies in one UDP_SEGMENT send (the kernel takes 64 or more) */
#define GSO_BYTES 65000     /* and their bytes: one IP datagram's worth, with room to spare */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103     /* Linux 4.18 */
#endif

/* Replies out[first..first + n) sent as one message. */
typedef struct udp_group {
    int first, n;
    size_t bytes;
} udp_group;

/* A worker's datagrams in flight: received ones (in) and the replies to them (out). */
struct udp_batch {
    struct mmsghdr in[UDP_BATCH];
    struct iovec iniov[UDP_BATCH];
    sf_addr peer[UDP_BATCH];    /* received into in place: handed to services as is */
    char cmsg[UDP_BATCH][CMSG_ROOM];
    struct mmsghdr out[UDP_BATCH];
    struct iovec outiov[UDP_BATCH];
    char outcmsg[UDP_BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo))];   /* reply source */
    udp_group group[UDP_BATCH];
    struct mmsghdr gout[UDP_BATCH];     /* the groups as sent (send_grouped) */
    char gcmsg[UDP_BATCH][CMSG_SPACE(sizeof(struct in6_pktinfo)) +
                          CMSG_SPACE(sizeof(uint16_t))];   /* reply source, UDP_SEGMENT */
    int ngroup;             /* fewer than nout: some replies were grouped */
    size_t dmax;
    char *inbuf;            /* UDP_BATCH buffers of dmax + 1 bytes */
    char *outbuf;           /* dmax bytes the services write their replies into */
    size_t outused;
    int nout;
    int nin;                /* headers the kernel wrote in the last receive */
    size_t room;            /* control room those headers offer (CMSG_ROOM or 0) */
};

int
sf__udp_worker_init(worker *w, size_t dgram_max)
{
    udp_batch *b = calloc(1, sizeof(*b));

    w->udp = b;
    if (b == NULL)
        return -ENOMEM;
    b->dmax = dgram_max;
    b->nin = UDP_BATCH;
    b->room = CMSG_ROOM + 1;    /* no socket's: the first receive sets every header */
    /* Datagram buffers are one byte larger than dgram_max, so a bigger datagram shows
     * as truncated (MSG_TRUNC) and is dropped rather than echoed cut. */
    b->inbuf = malloc(UDP_BATCH * (dgram_max + 1));
    b->outbuf = malloc(dgram_max);
    if (b->inbuf == NULL || b->outbuf == NULL)
        return -ENOMEM;
    for (int i = 0; i < UDP_BATCH; i++) {
        struct msghdr *h = &b->in[i].msg_hdr;

        b->iniov[i].iov_base = b->inbuf + (size_t)i * (dgram_max + 1);
        b->iniov[i].iov_len = dgram_max + 1;
        h->msg_iov = &b->iniov[i];
        h->msg_iovlen = 1;
        h->msg_name = &b->peer[i].ss;
        h->msg_control = b->cmsg[i];
        b->out[i].msg_hdr.msg_iov = &b->outiov[i];
        b->out[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

void
sf__udp_worker_free(worker *w)
{
    if (w->udp == NULL)
        return;
    free(w->udp->inbuf);
    free(w->udp->outbuf);
    free(w->udp);
    w->udp = NULL;
}

/* ---- datagrams left unanswered: counted, and told in the log now and then ---- */

static const char *const drop_what[SF__NDROP] = {
    "from a service port", "from a port below 1024", "to or from a broadcast, "
    "multicast or unspecified address (or an unnamed Unix socket)", "over the per-source budget", "with a reply "
    "larger than allowed",
};

static void
count_drop(worker *w, int reason, const struct msghdr *h)
{
    switch (reason) {
    case -SF_UDP_DROP_LOOP - 1: w->st.dgrams_loop++; break;
    case -SF_UDP_DROP_LOW_PORT - 1: w->st.dgrams_low_port++; break;
    case -SF_UDP_DROP_SOURCE - 1: w->st.dgrams_bad_addr++; break;
    case -SF_UDP_DROP_RATE - 1: w->st.dgrams_rate++; break;
    default: w->st.dgrams_oversize++; break;
    }
    if (w->unlogged[reason]++ == 0 && w->unlogged_since_ms == 0)
        w->unlogged_since_ms = sf_loop_now_ms(w->loop);
    memcpy(&w->last_from[reason], h->msg_name, h->msg_namelen);
    w->last_fromlen[reason] = h->msg_namelen;
}

/* The loops take turns through udp_log_ms. */
void
sf__udp_log_drops(worker *w)
{
    sf_server *s = w->s;
    uint64_t now = sf_loop_now_ms(w->loop), total = 0;
    uint_fast64_t last = atomic_load(&s->udp_log_ms);
    char line[768];
    size_t off;

    if (w->unlogged_since_ms == 0 || (last != 0 && now < last + UDP_LOG_MS) ||
        !atomic_compare_exchange_strong(&s->udp_log_ms, &last, now))
        return;
    for (int r = 0; r < SF__NDROP; r++)
        total += w->unlogged[r];
    off = (size_t)snprintf(line, sizeof(line), "udp: no reply to %llu datagram%s in %.1f s:",
                           (unsigned long long)total, total == 1 ? "" : "s",
                           (double)(now - w->unlogged_since_ms) / 1000.0);
    for (int r = 0, first = 1; r < SF__NDROP && off < sizeof(line); r++) {
        char who[SF_ADDR_STRLEN];

        if (w->unlogged[r] == 0)
            continue;
        sf_addr_format_sa((struct sockaddr *)&w->last_from[r], w->last_fromlen[r], who,
                          sizeof(who));
        off += (size_t)snprintf(line + off, sizeof(line) - off, "%s %llu %s (last %s)",
                                first ? "" : ",", (unsigned long long)w->unlogged[r],
                                drop_what[r], who);
        first = 0;
        w->unlogged[r] = 0;
    }
    w->unlogged_since_ms = 0;
    sf__server_log(s, "%s", line);
}

/* ---- receive a batch ---- */

/* Only what the kernel changed is set again (the headers of the datagrams the last call
 * received, or all of them for a socket that wants another room): the rest was set up
 * once. A socket whose datagrams all come to one address gets no room for IP_PKTINFO:
 * the kernel then skips copying it out (MSG_CTRUNC, which nothing reads). */
static int
receive_batch(worker *w, const lsock *ls)
{
    udp_batch *b = w->udp;
    size_t room = ls->dst.len ? 0 : CMSG_ROOM;
    int n;
    sf_trace t;

    if (room != b->room) {
        b->room = room;
        b->nin = UDP_BATCH;
    }
    for (int i = 0; i < b->nin; i++) {
        struct msghdr *h = &b->in[i].msg_hdr;

        h->msg_namelen = sizeof(b->peer[i].ss);
        h->msg_controllen = room;
        h->msg_flags = 0;
    }
    b->outused = 0;
    b->nout = 0;
    b->ngroup = 0;
    n = sf_recvmmsg(sf__server_trace(w->s, &t, 0), ls->fd, b->in, UDP_BATCH);
    b->nin = n > 0 ? n : 0;
    return n;
}

/* A socket bound to one unicast address gets only datagrams sent to that address (the
 * kernel's lookup matches the bound address; broadcast and multicast go only to sockets
 * bound to them or to the wildcard): the destination is known without reading it from
 * each datagram. Not so on the wildcard, nor with IP_TRANSPARENT (a passed socket that
 * TPROXY feeds datagrams to any address). ls->dst.len stays 0 then. */
static void
learn_destination(lsock *ls)
{
    sf_addr a;
    int on = 1;
    socklen_t len = sizeof(on);

    ls->dst_known = 1;
    if (ls->wildcard || sf_local_addr(ls->fd, &a) < 0)
        return;
    if (a.ss.ss_family == AF_INET) {
        if (((struct sockaddr_in *)&a.ss)->sin_addr.s_addr == htonl(INADDR_ANY) ||
            getsockopt(ls->fd, IPPROTO_IP, IP_TRANSPARENT, &on, &len) < 0)
            return;
    } else if (a.ss.ss_family == AF_INET6) {
        const struct in6_addr *ip = &((struct sockaddr_in6 *)&a.ss)->sin6_addr;

        /* ::ffff:0.0.0.0 is the IPv4 wildcard */
        if (IN6_IS_ADDR_UNSPECIFIED(ip) ||
            (IN6_IS_ADDR_V4MAPPED(ip) && ip->s6_addr32[3] == htonl(INADDR_ANY)) ||
            getsockopt(ls->fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &on, &len) < 0)
            return;
    } else {
        return;     /* a Unix socket: no address rules */
    }
    if (!on)
        ls->dst = a;
}

/* What server_udp.c learns of a socket on its first turn: where its datagrams come to,
 * and whether its replies may be grouped (an IP socket, on a server that neither traces
 * (a trace shows a datagram per message) nor was told not to). */
static void
learn_socket(worker *w, lsock *ls)
{
    int domain = 0;
    socklen_t len = sizeof(domain);

    learn_destination(ls);
    ls->gso_max = 0;
    if (!w->s->o.no_udp_gso && !w->s->o.tracer &&
        getsockopt(ls->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
        (domain == AF_INET || domain == AF_INET6))
        ls->gso_max = GSO_BYTES;
}

/* ---- answer one ---- */

/* Where a datagram was sent: its destination address and interface (IP_PKTINFO /
 * IPV6_PKTINFO); len 0 when not given. */
typedef struct dgram_dst {
    struct sockaddr_storage sa;
    socklen_t len;
    int ifindex;
} dgram_dst;

static void
dgram_destination(struct msghdr *h, dgram_dst *d)
{
    d->len = 0;
    if (h->msg_controllen == 0)
        return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct sockaddr_in *a = (struct sockaddr_in *)&d->sa;
            struct in_pktinfo pi;

            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            memset(a, 0, sizeof(*a));
            a->sin_family = AF_INET;
            a->sin_addr = pi.ipi_addr;
            d->len = sizeof(*a);
            d->ifindex = pi.ipi_ifindex;
            return;
        }
        if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&d->sa;
            struct in6_pktinfo pi;

            memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
            memset(a, 0, sizeof(*a));
            a->sin6_family = AF_INET6;
            a->sin6_addr = pi.ipi6_addr;
            d->len = sizeof(*a);
            d->ifindex = (int)pi.ipi6_ifindex;
            return;
        }
    }
}

/* The guard's verdict on datagram h, sent to `to` (NULL: not known): a ticket >= 0, or
 * the drop (counted). */
static int
guard_datagram(worker *w, struct msghdr *h, const struct sockaddr *to, socklen_t tolen,
               uint64_t now)
{
    int ticket = sf__udpguard_check(w->s->guard, h->msg_name, h->msg_namelen, to, tolen,
                                    now);

    if (ticket < 0)
        count_drop(w, -ticket - 1, h);
    return ticket;
}

/* A reply from a socket on the wildcard address leaves from the address the request
 * came to: without it the kernel picks the source by route, a multi-homed host answers
 * a request to its second address from its first, and a connected client never sees
 * the reply. */
static void
reply_source(struct msghdr *m, char *room, const dgram_dst *dst)
{
    struct cmsghdr *cm;

    m->msg_control = room;
    memset(room, 0, CMSG_SPACE(sizeof(struct in6_pktinfo)));   /* compared whole: joins_group */
    if (dst->sa.ss_family == AF_INET) {
        struct in_pktinfo pi = { .ipi_spec_dst = ((struct sockaddr_in *)&dst->sa)->sin_addr };

        m->msg_controllen = CMSG_SPACE(sizeof(pi));
        cm = CMSG_FIRSTHDR(m);
        cm->cmsg_level = IPPROTO_IP;
        cm->cmsg_type = IP_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
    } else {
        struct in6_pktinfo pi = { .ipi6_addr = ((struct sockaddr_in6 *)&dst->sa)->sin6_addr,
                                  .ipi6_ifindex = (unsigned)dst->ifindex };

        m->msg_controllen = CMSG_SPACE(sizeof(pi));
        cm = CMSG_FIRSTHDR(m);
        cm->cmsg_level = IPPROTO_IPV6;
        cm->cmsg_type = IPV6_PKTINFO;
        cm->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
    }
}

/* Can reply k join the last group: to the same peer from the same source, every reply
 * before it of the first's size (the kernel cuts a UDP_SEGMENT send into pieces of that
 * size; only the last may be shorter, none empty), within the group's bounds. */
static int
joins_group(const udp_batch *b, const lsock *ls, int k)
{
    const udp_group *g = &b->group[b->ngroup - 1];
    const struct msghdr *first = &b->out[g->first].msg_hdr, *m = &b->out[k].msg_hdr;
    size_t seg = b->outiov[g->first].iov_len, len = b->outiov[k].iov_len;

    return seg <= ls->gso_max && len > 0 && len <= seg && b->outiov[k - 1].iov_len == seg &&
           g->n < GSO_SEGS && g->bytes + len <= GSO_BYTES &&
           m->msg_namelen == first->msg_namelen &&
           memcmp(m->msg_name, first->msg_name, m->msg_namelen) == 0 &&
           m->msg_controllen == first->msg_controllen &&
           (m->msg_controllen == 0 ||
            memcmp(m->msg_control, first->msg_control, m->msg_controllen) == 0);
}

/* Queue d's reply to the sender of h, from src when given (a socket on the wildcard).
 * The iovec was tied to its header once, at the start. */
static void
queue_reply(udp_batch *b, const lsock *ls, const sf_dgram *d, const struct msghdr *h,
            const dgram_dst *src)
{
    int k = b->nout++;
    struct msghdr *m = &b->out[k].msg_hdr;

    /* Replies written into the shared out buffer must not overlap the next one. */
    if (d->reply == b->outbuf + b->outused)
        b->outused += d->reply_len;
    b->outiov[k].iov_base = (void *)d->reply;
    b->outiov[k].iov_len = d->reply_len;
    m->msg_name = h->msg_name;
    m->msg_namelen = h->msg_namelen;
    m->msg_control = NULL;
    m->msg_controllen = 0;
    if (src)
        reply_source(m, b->outcmsg[k], src);
    if (b->ngroup > 0 && joins_group(b, ls, k)) {
        b->group[b->ngroup - 1].n++;
        b->group[b->ngroup - 1].bytes += d->reply_len;
    } else {
        b->group[b->ngroup++] = (udp_group){ .first = k, .n = 1, .bytes = d->reply_len };
    }
}

static void
answer_one(worker *w, lsock *ls, int i, uint64_t now)
{
    udp_batch *b = w->udp;
    struct msghdr *h = &b->in[i].msg_hdr;
    size_t len = b->in[i].msg_len;
    const struct sockaddr *to = (const struct sockaddr *)&ls->dst.ss;
    socklen_t tolen = ls->dst.len;
    dgram_dst dst;
    sf_dgram d;
    int ticket;

    w->st.dgrams_in++;
    if ((h->msg_flags & MSG_TRUNC) || len > b->dmax) {
        w->st.dgrams_truncated++;
        return;
    }
    if (ls->svc->on_datagram == NULL)
        return;     /* never answered (discard): nothing to guard */
    /* A Unix sender with no name comes with no address at all (length 0, the buffer
     * as the last datagram left it): make it the unnamed AF_UNIX address it is. */
    if (h->msg_namelen == 0) {
        b->peer[i].ss.ss_family = AF_UNIX;
        h->msg_namelen = sizeof(sa_family_t);
    }
    b->peer[i].len = h->msg_namelen;
    if (w->s->o.access && !sf_access_allowed(w->s->o.access, &b->peer[i])) {
        w->st.dgrams_dropped++;
        return;
    }
    dst.len = 0;
    if (tolen == 0) {
        dgram_destination(h, &dst);
        to = dst.len ? (const struct sockaddr *)&dst.sa : NULL;
        tolen = dst.len;
    }
    ticket = guard_datagram(w, h, to, tolen, now);
    if (ticket < 0)
        return;
    d = (sf_dgram){ .in = h->msg_iov->iov_base, .inlen = len, .from = &b->peer[i],
                    .state = ls->state, .out = b->outbuf + b->outused,
                    .outcap = b->dmax - b->outused };
    ls->svc->on_datagram(&d);
    if (d.reply == NULL)
        return;     /* no reply; a reply of 0 bytes is an empty datagram (RFC 862) */
    /* No amplification: past SF_UDP_REPLY_FREE bytes, never more than was asked
     * (echo's equal size is fine). */
    if (d.reply_len > SF_UDP_REPLY_FREE && d.reply_len > len) {
        count_drop(w, SF__DROP_OVERSIZE, h);
        return;
    }
    sf__udpguard_spend(w->s->guard, ticket);
    queue_reply(b, ls, &d, h, ls->wildcard && dst.len ? &dst : NULL);
}

/* ---- send the replies ---- */

/* Replies out[from..to) one message each. */
static void
send_each(worker *w, int fd, int from, int to)
{
    udp_batch *b = w->udp;
    sf_trace t;

    for (int sent = from; sent < to;) {
        int m = sf_sendmmsg(sf__server_trace(w->s, &t, 0), fd, b->out + sent,
                            (unsigned)(to - sent));

        if (m <= 0) {
            /* A full send buffer or an error for one peer: that datagram is lost. */
            w->st.dgrams_dropped++;
            sent++;
            continue;
        }
        w->st.dgrams_out += (uint64_t)m;
        sent += m;
    }
}

/* Group i as one message: its first reply's header, with all the group's iovecs and,
 * for more than one reply, UDP_SEGMENT after the reply's own control data. */
static void
group_message(udp_batch *b, int i)
{
    const udp_group *g = &b->group[i];
    const struct msghdr *first = &b->out[g->first].msg_hdr;
    struct msghdr *h = &b->gout[i].msg_hdr;
    struct cmsghdr *cm;
    uint16_t seg = (uint16_t)b->outiov[g->first].iov_len;

    *h = *first;
    h->msg_iovlen = (size_t)g->n;
    if (g->n == 1)
        return;
    h->msg_control = b->gcmsg[i];
    if (first->msg_controllen)
        memcpy(b->gcmsg[i], first->msg_control, first->msg_controllen);
    h->msg_controllen = first->msg_controllen + CMSG_SPACE(sizeof(seg));
    cm = (struct cmsghdr *)(b->gcmsg[i] + first->msg_controllen);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(seg));
    memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
}

/* The kernel refused group g's send (rc). A full send buffer loses its replies, as it
 * would have lost them one by one. Anything else may be UDP_SEGMENT's own refusal (a
 * segment larger than the route's MTU allows: EINVAL; a device that cannot checksum:
 * EIO; a kernel without it), so they go again one by one; if that works, replies of
 * this size and larger (EINVAL, EMSGSIZE) or all of them (anything else) leave this
 * socket one by one from then on, said once in the log. */
static void
group_refused(worker *w, lsock *ls, const udp_group *g, int rc)
{
    udp_batch *b = w->udp;
    size_t seg = b->outiov[g->first].iov_len;
    uint64_t before = w->st.dgrams_out;

    if (g->n == 1 || rc == SF_EAGAIN || rc == -ENOBUFS) {
        w->st.dgrams_dropped += (uint64_t)g->n;
        return;
    }
    send_each(w, ls->fd, g->first, g->first + g->n);
    if (w->st.dgrams_out == before)
        return;     /* refused one by one too: not UDP_SEGMENT's doing */
    ls->gso_max = rc == -EINVAL || rc == -EMSGSIZE ? seg - 1 : 0;
    if (ls->gso_max)
        sf__server_log(w->s, "udp: fd %d: UDP_SEGMENT refused for %zu-byte replies (%s): "
                       "replies of %zu bytes and more leave one by one", ls->fd, seg,
                       sf_strerror(rc), seg);
    else
        sf__server_log(w->s, "udp: fd %d: UDP_SEGMENT refused (%s): replies leave one by "
                       "one", ls->fd, sf_strerror(rc));
}

/* The groups in one sendmmsg: a message each. */
static void
send_grouped(worker *w, lsock *ls)
{
    udp_batch *b = w->udp;
    sf_trace t;

    for (int i = 0; i < b->ngroup; i++)
        group_message(b, i);
    for (int sent = 0; sent < b->ngroup;) {
        int m = sf_sendmmsg(sf__server_trace(w->s, &t, 0), ls->fd, b->gout + sent,
                            (unsigned)(b->ngroup - sent));

        if (m <= 0) {
            group_refused(w, ls, &b->group[sent], m);
            sent++;
            continue;
        }
        for (int i = sent; i < sent + m; i++) {
            w->st.dgrams_out += (uint64_t)b->group[i].n;
            if (b->group[i].n > 1)
                w->st.dgrams_gso += (uint64_t)b->group[i].n;
        }
        sent += m;
    }
}

/* Replies to one peer in a row, of one size (the last may be shorter), leave as one
 * UDP_SEGMENT send: the kernel makes one datagram of them and cuts it into theirs only
 * at the device (or in software where the device cannot, on loopback at the receiving
 * socket), so the way through the IP stack, the route lookup and the socket's send
 * accounting are paid once for them all. On the wire they are the datagrams they would
 * have been. */
static void
send_batch(worker *w, lsock *ls)
{
    if (w->udp->ngroup < w->udp->nout)
        send_grouped(w, ls);
    else
        send_each(w, ls->fd, 0, w->udp->nout);
}

/* ---- the socket's turn ---- */

static void watch_again(worker *w, lsock *ls, int retry);

static void
watch_again_later(sf_loop *l, void *ud)
{
    lsock *ls = ud;

    (void)l;
    watch_again(ls->w, ls, 1);
}

/* Back into the loop's epoll set. EPOLL_CTL_ADD can fail (ENOMEM, or ENOSPC when another
 * process took the last of max_user_watches meanwhile): the socket would be deaf for
 * good, so it is tried again every UDP_REWATCH_MS until it works or the socket is
 * closed (draining sets fd to -1). One line when it fails, one when it works again. */
static void
watch_again(worker *w, lsock *ls, int retry)
{
    int rc;

    if (ls->fd < 0)
        return;
    rc = sf_loop_watch(w->loop, ls->fd, SF_READ, sf__udp_ready, ls);
    if (rc >= 0) {
        if (retry)
            sf__server_log(w->s, "udp: fd %d watched again", ls->fd);
        return;
    }
    if (!retry)
        sf__server_log(w->s, "udp: epoll_ctl ADD (fd %d): %s; its datagrams wait, "
                       "trying again every %d ms", ls->fd, sf_strerror(rc), UDP_REWATCH_MS);
    if (sf_loop_timer(w->loop, UDP_REWATCH_MS, watch_again_later, ls) < 0)
        sf__server_log(w->s, "udp: no timer to watch fd %d again: its datagrams go "
                       "unanswered", ls->fd);
}

/* A busy socket (UDP_AWAY_MIN datagrams or more in one receive) is read until it is
 * empty, batch after batch, but at most UDP_ROUNDS batches (UDP_ROUNDS * UDP_BATCH
 * datagrams) before the loop's other sockets get their turn; then it goes back to
 * epoll_wait, which returns at once if more are waiting. Meanwhile it is out of the
 * loop's epoll set: while anything waits on a socket (epoll always does), the kernel
 * wakes its wait queue for every datagram it sends as the datagram leaves (sock_wfree:
 * there is room to write), a lock taken and released with interrupts off per reply; out
 * of the set, that costs nothing, and a datagram arriving meanwhile is found by the next
 * recvmmsg, or by EPOLL_CTL_ADD, which reports a socket already readable. A quiet socket
 * (a few datagrams at a time) stays in the set and goes back to epoll_wait after its
 * batch: two epoll_ctl calls and a last empty recvmmsg would cost it more than the
 * wake-ups they save. A full batch is read again in both cases. */
void
sf__udp_ready(sf_loop *l, int fd, int events, void *ud)
{
    lsock *ls = ud;
    worker *w = ls->w;
    uint64_t now = sf_loop_now_ms(l);
    int away = 0;

    (void)events;
    if (!ls->dst_known)
        learn_socket(w, ls);
    for (int round = 0; round < UDP_ROUNDS; round++) {
        int n = receive_batch(w, ls);

        if (n <= 0)
            break;
        if (!away && n >= UDP_AWAY_MIN) {
            sf_loop_unwatch(l, fd);
            away = 1;
        }
        for (int i = 0; i < n; i++)
            answer_one(w, ls, i, now);
        send_batch(w, ls);
        if (!away && n < UDP_BATCH)
            break;
    }
    if (away)
        watch_again(w, ls, 0);
    sf__udp_log_drops(w);
}
