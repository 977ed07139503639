/* wire_parse: captured IPv4/IPv6 packets to segment records (TCP with its SYN options,
 * UDP, ICMP port unreachable with the datagram it quotes), and relative numbers. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "sockflow/wire.h"

#define ETH_HLEN_ 14
#define ETHERTYPE_IP_ 0x0800
#define ETHERTYPE_IPV6_ 0x86dd

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The network and transport addresses of one IP header. */
typedef struct iphdr_view {
    int family, proto;
    const uint8_t *src, *dst;   /* 4 or 16 bytes */
    size_t hlen;                /* to the transport header */
    size_t total;               /* the IP packet's own length, as its header says */
} iphdr_view;

static void
set_addr(sf_addr *a, int family, const uint8_t *ip, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&a->ss;

        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, ip, 4);
        s->sin_port = htons(port);
        a->len = sizeof(*s);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&a->ss;

        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, ip, 16);
        s->sin6_port = htons(port);
        a->len = sizeof(*s);
    }
}

/* Read an IP header at p. Fragments after the first and IPv6 extension headers have no
 * transport header where we look: -EPROTONOSUPPORT. */
static int
ip_view(const uint8_t *p, size_t len, iphdr_view *v)
{
    if (len < 1)
        return -EINVAL;
    if (p[0] >> 4 == 4) {
        if (len < 20 || (p[0] & 0xf) < 5 || (size_t)(p[0] & 0xf) * 4 > len)
            return -EINVAL;
        if (get16(p + 6) & 0x1fff)
            return -EPROTONOSUPPORT;
        *v = (iphdr_view){ AF_INET, p[9], p + 12, p + 16, (size_t)(p[0] & 0xf) * 4,
                           get16(p + 2) };
    } else if (p[0] >> 4 == 6) {
        if (len < 40)
            return -EINVAL;
        *v = (iphdr_view){ AF_INET6, p[6], p + 8, p + 24, 40, 40 + (size_t)get16(p + 4) };
    } else {
        return -EPROTONOSUPPORT;
    }
    if (v->total < v->hlen)
        return -EINVAL;
    return 0;
}

/* SYN options: MSS (2), window scale (3), SACK permitted (4), timestamps (8). */
static int
tcp_options(const uint8_t *o, size_t len, sf_segment *s)
{
    size_t i = 0;

    while (i < len && o[i] != 0) {
        if (o[i] == 1) {
            i++;
            continue;
        }
        if (i + 1 >= len || o[i + 1] < 2 || i + o[i + 1] > len)
            return -EINVAL;
        if (o[i] == 2 && o[i + 1] == 4)
            s->mss = get16(o + i + 2);
        else if (o[i] == 3 && o[i + 1] == 3)
            s->wscale = (int8_t)(o[i + 2] > 14 ? 14 : o[i + 2]);
        else if (o[i] == 4 && o[i + 1] == 2)
            s->sack_ok = 1;
        else if (o[i] == 8 && o[i + 1] == 10) {
            s->has_ts = 1;
            s->ts_val = get32(o + i + 2);
            s->ts_ecr = get32(o + i + 6);
        }
        i += o[i + 1];
    }
    return 0;
}

/* len: the transport bytes the IP header declares; avail: those captured (the filter
 * keeps only the headers of long packets). */
static int
parse_tcp(const iphdr_view *v, const uint8_t *t, size_t len, size_t avail, sf_segment *s)
{
    size_t doff;

    if (avail < 20)
        return -EINVAL;
    doff = (size_t)(t[12] >> 4) * 4;
    if (doff < 20 || doff > len || doff > avail)
        return -EINVAL;
    s->kind = SF_WIRE_TCP;
    set_addr(&s->src, v->family, v->src, get16(t));
    set_addr(&s->dst, v->family, v->dst, get16(t + 2));
    s->seq = get32(t + 4);
    s->ack = get32(t + 8);
    s->flags = t[13];
    s->win = get16(t + 14);
    s->len = (uint32_t)(len - doff);
    return tcp_options(t + 20, doff - 20, s);
}

static int
parse_udp(const iphdr_view *v, const uint8_t *u, size_t len, size_t avail, sf_segment *s)
{
    if (avail < 8 || get16(u + 4) < 8 || get16(u + 4) > len)
        return -EINVAL;
    s->kind = SF_WIRE_UDP;
    set_addr(&s->src, v->family, v->src, get16(u));
    set_addr(&s->dst, v->family, v->dst, get16(u + 2));
    s->len = (uint32_t)get16(u + 4) - 8;
    return 0;
}

/* ICMP destination unreachable / port unreachable (v4 3/3, v6 1/4): 8 bytes of ICMP
 * header, then the IP header and the first 8 bytes of the datagram that was refused. */
static int
parse_icmp(const iphdr_view *v, const uint8_t *m, size_t len, size_t avail, sf_segment *s)
{
    int v6 = v->family == AF_INET6;
    iphdr_view q;
    int rc;

    if (avail < 8)
        return -EINVAL;
    if (v6 ? m[0] != 1 || m[1] != 4 : m[0] != 3 || m[1] != 3)
        return -EPROTONOSUPPORT;
    s->kind = SF_WIRE_ICMP_UNREACH;
    s->icmp_type = m[0];
    s->icmp_code = m[1];
    set_addr(&s->src, v->family, v->src, 0);
    set_addr(&s->dst, v->family, v->dst, 0);
    s->len = (uint32_t)(len - 8);
    if ((rc = ip_view(m + 8, avail - 8, &q)) < 0)
        return rc;
    if (q.family != v->family || avail - 8 < q.hlen + 4)
        return -EINVAL;
    if (q.proto != IPPROTO_UDP && q.proto != IPPROTO_TCP)
        return -EPROTONOSUPPORT;
    s->quoted_kind = q.proto == IPPROTO_UDP ? SF_WIRE_UDP : SF_WIRE_TCP;
    set_addr(&s->quoted_src, q.family, q.src, get16(m + 8 + q.hlen));
    set_addr(&s->quoted_dst, q.family, q.dst, get16(m + 8 + q.hlen + 2));
    return 0;
}

int
sf_wire_parse(const void *pkt, size_t len, uint64_t t_real_ns, sf_segment *out)
{
    const uint8_t *p = pkt;
    iphdr_view v;
    size_t tlen, avail;
    int rc;

    memset(out, 0, sizeof(*out));
    out->wscale = -1;
    out->t_real_ns = t_real_ns;
    if ((rc = ip_view(p, len, &v)) < 0)
        return rc;
    /* Lengths come from the headers, not the capture: a frame may carry padding, and
     * the filter keeps only the first bytes of a long packet. */
    out->family = v.family;
    tlen = v.total - v.hlen;
    avail = (len < v.total ? len : v.total) - v.hlen;
    switch (v.proto) {
    case IPPROTO_TCP:
        return parse_tcp(&v, p + v.hlen, tlen, avail, out);
    case IPPROTO_UDP:
        return parse_udp(&v, p + v.hlen, tlen, avail, out);
    case IPPROTO_ICMP:
        return v.family == AF_INET ? parse_icmp(&v, p + v.hlen, tlen, avail, out) : -EPROTONOSUPPORT;
    case IPPROTO_ICMPV6:
        return v.family == AF_INET6 ? parse_icmp(&v, p + v.hlen, tlen, avail, out) : -EPROTONOSUPPORT;
    }
    return -EPROTONOSUPPORT;
}

int
sf_wire_parse_frame(const void *frame, size_t len, uint64_t t_real_ns, sf_segment *out)
{
    const uint8_t *f = frame;
    uint16_t type;

    memset(out, 0, sizeof(*out));
    if (len < ETH_HLEN_)
        return -EINVAL;
    type = get16(f + 12);
    if (type != ETHERTYPE_IP_ && type != ETHERTYPE_IPV6_)
        return -EPROTONOSUPPORT;
    return sf_wire_parse(f + ETH_HLEN_, len - ETH_HLEN_, t_real_ns, out);
}

/* ---- relative numbers ---- */

static int
addr_eq(const sf_addr *a, const sf_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The flow of s, *fwd set when s goes a -> b; a new one when there is room. */
static struct sf_wire_flow *
flow_of(sf_wire_flows *t, const sf_segment *s, int *fwd)
{
    for (int i = 0; i < t->n; i++) {
        struct sf_wire_flow *f = &t->f[i];

        if (addr_eq(&f->a, &s->src) && addr_eq(&f->b, &s->dst)) {
            *fwd = 1;
            return f;
        }
        if (addr_eq(&f->b, &s->src) && addr_eq(&f->a, &s->dst)) {
            *fwd = 0;
            return f;
        }
    }
    if (t->n == SF_WIRE_FLOWS_MAX)
        return NULL;
    memset(&t->f[t->n], 0, sizeof(t->f[0]));
    t->f[t->n].a = s->src;
    t->f[t->n].b = s->dst;
    t->f[t->n].ws_a = t->f[t->n].ws_b = -1;
    *fwd = 1;
    return &t->f[t->n++];
}

/* RFC 7323 2.2: a SYN's window is never scaled; later ones are, by the sender's own
 * shift, once both SYNs carried the option. */
static void
relate_window(struct sf_wire_flow *f, int fwd, sf_segment *s)
{
    int8_t *mine = fwd ? &f->ws_a : &f->ws_b, *theirs = fwd ? &f->ws_b : &f->ws_a;

    if (s->flags & SF_SEG_SYN) {
        *mine = s->wscale;
        if (!(s->flags & SF_SEG_ACK))
            *theirs = -1;
        s->win_bytes = s->win;
        s->has_win_bytes = 1;
    } else if (*mine >= 0 && *theirs >= 0) {
        s->win_bytes = (uint32_t)s->win << *mine;
        s->has_win_bytes = 1;
    }
}

void
sf_wire_relate(sf_wire_flows *t, sf_segment *s)
{
    struct sf_wire_flow *f;
    uint32_t *mine, *theirs;
    uint8_t *have_mine, *have_theirs;
    int fwd;

    if (s->kind != SF_WIRE_TCP || (f = flow_of(t, s, &fwd)) == NULL)
        return;
    mine = fwd ? &f->isn_a : &f->isn_b;
    theirs = fwd ? &f->isn_b : &f->isn_a;
    have_mine = fwd ? &f->has_a : &f->has_b;
    have_theirs = fwd ? &f->has_b : &f->has_a;
    /* A new SYN starts the numbering again: the same ports reused by a new connection. */
    if (s->flags & SF_SEG_SYN) {
        *mine = s->seq;
        *have_mine = 1;
        if (!(s->flags & SF_SEG_ACK))
            *have_theirs = 0;
    } else if (!*have_mine) {
        /* The SYN was missed: count from the first number seen, as Wireshark does. */
        *mine = s->seq;
        *have_mine = 1;
    }
    s->rel_seq = s->seq - *mine;
    s->has_rel_seq = 1;
    if ((s->flags & SF_SEG_ACK) && *have_theirs) {
        s->rel_ack = s->ack - *theirs;
        s->has_rel_ack = 1;
    }
    relate_window(f, fwd, s);
}
