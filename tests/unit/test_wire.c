/* test_wire: segment parsing from built frames, the BPF program run by a small classic
 * BPF interpreter, relative numbers, formatting, and real loopback captures as root. */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <grp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "unit.h"
#include "sockflow/wire.h"

/* ---- frames ---- */

typedef struct pkt {
    uint8_t b[512];
    size_t len;
} pkt;

static void
put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void
put32(uint8_t *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

/* An IPv4 header (20 bytes) for proto, 127.0.0.1 -> 127.0.0.2 (swapped: the other way),
 * of total length tot. */
static size_t
ip4_dir(uint8_t *p, int proto, size_t tot, int swap)
{
    memset(p, 0, 20);
    p[0] = 0x45;
    put16(p + 2, (unsigned)tot);
    p[8] = 64;
    p[9] = (uint8_t)proto;
    put32(p + (swap ? 16 : 12), 0x7f000001);
    put32(p + (swap ? 12 : 16), 0x7f000002);
    return 20;
}

static size_t
ip4(uint8_t *p, int proto, size_t tot)
{
    return ip4_dir(p, proto, tot, 0);
}

/* An IPv6 header, ::1 -> ::1, next header proto, payload plen. */
static size_t
ip6(uint8_t *p, int proto, size_t plen)
{
    memset(p, 0, 40);
    p[0] = 0x60;
    put16(p + 4, (unsigned)plen);
    p[6] = (uint8_t)proto;
    p[7] = 64;
    p[23] = 1;
    p[39] = 1;
    return 40;
}

/* The options Linux puts on a SYN: MSS, SACK permitted, timestamps, NOP, wscale. */
static const uint8_t syn_opts[20] = {
    2, 4, 0xff, 0xd7, 4, 2, 8, 10, 0, 0, 0x30, 0x39, 0, 0, 0, 0, 1, 3, 3, 7,
};

static size_t
tcp(uint8_t *p, int sport, int dport, uint32_t seq, uint32_t ack, int flags,
    const uint8_t *opts, size_t olen, size_t payload)
{
    size_t hl = 20 + olen;

    memset(p, 0, hl + payload);
    put16(p, (unsigned)sport);
    put16(p + 2, (unsigned)dport);
    put32(p + 4, seq);
    put32(p + 8, ack);
    p[12] = (uint8_t)((hl / 4) << 4);
    p[13] = (uint8_t)flags;
    put16(p + 14, 65483);
    if (olen)
        memcpy(p + 20, opts, olen);
    memset(p + hl, 'x', payload);
    return hl + payload;
}

static pkt
v4_tcp(int sport, int dport, uint32_t seq, uint32_t ack, int flags, int with_opts,
       size_t payload)
{
    pkt k;
    size_t tl = 20 + (with_opts ? 20 : 0) + payload;

    /* The client (the higher port) is 127.0.0.1. */
    ip4_dir(k.b, IPPROTO_TCP, 20 + tl, sport < dport);
    k.len = 20 + tcp(k.b + 20, sport, dport, seq, ack, flags, syn_opts,
                     with_opts ? 20 : 0, payload);
    return k;
}

static pkt
v6_tcp(int sport, int dport, uint32_t seq, uint32_t ack, int flags, size_t payload)
{
    pkt k;

    ip6(k.b, IPPROTO_TCP, 20 + payload);
    k.len = 40 + tcp(k.b + 40, sport, dport, seq, ack, flags, NULL, 0, payload);
    return k;
}

static size_t
udp(uint8_t *p, int sport, int dport, size_t payload)
{
    put16(p, (unsigned)sport);
    put16(p + 2, (unsigned)dport);
    put16(p + 4, (unsigned)(8 + payload));
    put16(p + 6, 0);
    memset(p + 8, 'u', payload);
    return 8 + payload;
}

static pkt
v4_udp(int sport, int dport, size_t payload)
{
    pkt k;

    ip4_dir(k.b, IPPROTO_UDP, 28 + payload, sport < dport);
    k.len = 20 + udp(k.b + 20, sport, dport, payload);
    return k;
}

static pkt
v6_udp(int sport, int dport, size_t payload)
{
    pkt k;

    ip6(k.b, IPPROTO_UDP, 8 + payload);
    k.len = 40 + udp(k.b + 40, sport, dport, payload);
    return k;
}

/* ICMP port unreachable quoting a UDP datagram sport -> dport with 5 bytes. */
static pkt
v4_icmp_unreach(int sport, int dport)
{
    pkt k, q = v4_udp(sport, dport, 5);

    ip4(k.b, IPPROTO_ICMP, 20 + 8 + q.len);
    memset(k.b + 20, 0, 8);
    k.b[20] = 3;
    k.b[21] = 3;
    memcpy(k.b + 28, q.b, q.len);
    k.len = 28 + q.len;
    return k;
}

static pkt
v6_icmp_unreach(int sport, int dport)
{
    pkt k, q = v6_udp(sport, dport, 5);

    ip6(k.b, IPPROTO_ICMPV6, 8 + q.len);
    memset(k.b + 40, 0, 8);
    k.b[40] = 1;
    k.b[41] = 4;
    memcpy(k.b + 48, q.b, q.len);
    k.len = 48 + q.len;
    return k;
}

/* ---- parsing ---- */

static void
test_parse_ipv4_syn_options(void **state)
{
    pkt k = v4_tcp(40000, 5000, 0xfffffff0u, 0, SF_SEG_SYN, 1, 0);
    sf_segment s;
    char a[SF_ADDR_STRLEN];

    (void)state;
    assert_int_equal(sf_wire_parse(k.b, k.len, 123, &s), 0);
    assert_int_equal(s.kind, SF_WIRE_TCP);
    assert_int_equal(s.family, AF_INET);
    assert_string_equal(sf_addr_format(&s.src, a, sizeof(a)), "127.0.0.1:40000");
    assert_string_equal(sf_addr_format(&s.dst, a, sizeof(a)), "127.0.0.2:5000");
    assert_int_equal(s.flags, SF_SEG_SYN);
    assert_int_equal(s.seq, 0xfffffff0u);
    assert_int_equal(s.win, 65483);
    assert_int_equal(s.len, 0);
    assert_int_equal(s.mss, 65495);
    assert_int_equal(s.wscale, 7);
    assert_int_equal(s.sack_ok, 1);
    assert_int_equal(s.has_ts, 1);
    assert_int_equal(s.ts_val, 12345);
    assert_int_equal(s.ts_ecr, 0);
    assert_int_equal(s.t_real_ns, 123);
}

static void
test_parse_ipv6_tcp_data(void **state)
{
    pkt k = v6_tcp(5000, 40000, 1000, 2000, SF_SEG_ACK | SF_SEG_PSH, 5);
    sf_segment s;
    char a[SF_ADDR_STRLEN];

    (void)state;
    assert_int_equal(sf_wire_parse(k.b, k.len, 0, &s), 0);
    assert_int_equal(s.family, AF_INET6);
    assert_string_equal(sf_addr_format(&s.src, a, sizeof(a)), "[::1]:5000");
    assert_int_equal(s.flags, SF_SEG_ACK | SF_SEG_PSH);
    assert_int_equal(s.seq, 1000);
    assert_int_equal(s.ack, 2000);
    assert_int_equal(s.len, 5);
    assert_int_equal(s.mss, 0);
    assert_int_equal(s.wscale, -1);
    assert_int_equal(s.has_ts, 0);
}

/* The filter keeps only the headers of a long packet: the length comes from them. */
static void
test_parse_truncated_capture_keeps_lengths(void **state)
{
    pkt k = v4_tcp(1, 2, 0, 0, SF_SEG_ACK, 0, 400);
    sf_segment s;

    (void)state;
    assert_int_equal(sf_wire_parse(k.b, 60, 0, &s), 0);
    assert_int_equal(s.len, 400);
    assert_int_equal(sf_wire_parse(k.b, 30, 0, &s), -EINVAL);
}

static void
test_parse_udp(void **state)
{
    pkt k4 = v4_udp(40001, 7, 5), k6 = v6_udp(7, 40001, 400);
    sf_segment s;

    (void)state;
    assert_int_equal(sf_wire_parse(k4.b, k4.len, 0, &s), 0);
    assert_int_equal(s.kind, SF_WIRE_UDP);
    assert_int_equal(sf_addr_port(&s.src), 40001);
    assert_int_equal(sf_addr_port(&s.dst), 7);
    assert_int_equal(s.len, 5);
    assert_int_equal(sf_wire_parse(k6.b, k6.len, 0, &s), 0);
    assert_int_equal(s.family, AF_INET6);
    assert_int_equal(s.len, 400);
}

static void
test_parse_icmp_unreach(void **state)
{
    pkt k4 = v4_icmp_unreach(40002, 9999), k6 = v6_icmp_unreach(40003, 9998);
    sf_segment s;
    char a[SF_ADDR_STRLEN];

    (void)state;
    assert_int_equal(sf_wire_parse(k4.b, k4.len, 0, &s), 0);
    assert_int_equal(s.kind, SF_WIRE_ICMP_UNREACH);
    assert_int_equal(s.icmp_type, 3);
    assert_int_equal(s.icmp_code, 3);
    assert_int_equal(s.quoted_kind, SF_WIRE_UDP);
    assert_string_equal(sf_addr_format(&s.quoted_src, a, sizeof(a)), "127.0.0.1:40002");
    assert_string_equal(sf_addr_format(&s.quoted_dst, a, sizeof(a)), "127.0.0.2:9999");
    assert_int_equal(sf_wire_parse(k6.b, k6.len, 0, &s), 0);
    assert_int_equal(s.family, AF_INET6);
    assert_int_equal(s.icmp_type, 1);
    assert_int_equal(s.icmp_code, 4);
    assert_int_equal(sf_addr_port(&s.quoted_src), 40003);
    assert_int_equal(sf_addr_port(&s.quoted_dst), 9998);
}

static void
test_parse_rejects(void **state)
{
    pkt k = v4_tcp(1, 2, 0, 0, SF_SEG_SYN, 1, 0), e = v4_icmp_unreach(1, 2);
    uint8_t eth[600];
    sf_segment s;

    (void)state;
    assert_int_equal(sf_wire_parse(k.b, 10, 0, &s), -EINVAL);
    assert_int_equal(sf_wire_parse(k.b, 35, 0, &s), -EINVAL);        /* TCP cut short */
    k.b[9] = 47;                                                      /* GRE */
    assert_int_equal(sf_wire_parse(k.b, k.len, 0, &s), -EPROTONOSUPPORT);
    k.b[9] = IPPROTO_TCP;
    put16(k.b + 6, 100);                                              /* a later fragment */
    assert_int_equal(sf_wire_parse(k.b, k.len, 0, &s), -EPROTONOSUPPORT);
    e.b[20] = 8;                                                      /* echo request */
    assert_int_equal(sf_wire_parse(e.b, e.len, 0, &s), -EPROTONOSUPPORT);
    k.b[0] = 0x25;
    assert_int_equal(sf_wire_parse(k.b, k.len, 0, &s), -EPROTONOSUPPORT);
    /* Options running past the header. */
    k = v4_tcp(1, 2, 0, 0, SF_SEG_SYN, 1, 0);
    k.b[40 + 18] = 30;
    k.b[20 + 20 + 17] = 3;
    k.b[20 + 20 + 18] = 30;
    assert_int_equal(sf_wire_parse(k.b, k.len, 0, &s), -EINVAL);
    /* An Ethernet frame, as lo gives a SOCK_RAW socket, and one of another type. */
    k = v4_tcp(1, 2, 7, 0, SF_SEG_SYN, 1, 0);
    memset(eth, 0, 14);
    eth[12] = 0x08;
    memcpy(eth + 14, k.b, k.len);
    assert_int_equal(sf_wire_parse_frame(eth, 14 + k.len, 0, &s), 0);
    assert_int_equal(s.seq, 7);
    eth[13] = 0x06;                                                   /* ARP */
    assert_int_equal(sf_wire_parse_frame(eth, 14 + k.len, 0, &s), -EPROTONOSUPPORT);
}

/* ---- relative numbers ---- */

static sf_segment
parsed(pkt k)
{
    sf_segment s;

    assert_int_equal(sf_wire_parse(k.b, k.len, 0, &s), 0);
    return s;
}

static void
test_relate_handshake_and_data(void **state)
{
    static sf_wire_flows t;
    uint32_t j = 0xfffffffeu, k = 1234567;   /* J wraps around zero */
    sf_segment seg[6] = {
        parsed(v4_tcp(40000, 5000, j, 0, SF_SEG_SYN, 1, 0)),
        parsed(v4_tcp(5000, 40000, k, j + 1, SF_SEG_SYN | SF_SEG_ACK, 1, 0)),
        parsed(v4_tcp(40000, 5000, j + 1, k + 1, SF_SEG_ACK, 0, 0)),
        parsed(v4_tcp(40000, 5000, j + 1, k + 1, SF_SEG_ACK | SF_SEG_PSH, 0, 6)),
        parsed(v4_tcp(5000, 40000, k + 1, j + 7, SF_SEG_ACK | SF_SEG_PSH, 0, 6)),
        parsed(v4_tcp(40000, 5000, j + 7, k + 7, SF_SEG_ACK | SF_SEG_FIN, 0, 0)),
    };
    static const uint32_t want[6][2] = { { 0, 0 }, { 0, 1 }, { 1, 1 }, { 1, 1 }, { 1, 7 },
                                         { 7, 7 } };

    (void)state;
    memset(&t, 0, sizeof(t));
    for (int i = 0; i < 6; i++) {
        sf_wire_relate(&t, &seg[i]);
        assert_true(seg[i].has_rel_seq);
        assert_int_equal(seg[i].rel_seq, want[i][0]);
        assert_int_equal(seg[i].has_rel_ack, i > 0);
        if (i > 0)
            assert_int_equal(seg[i].rel_ack, want[i][1]);
    }
    assert_int_equal(t.n, 1);
    /* Both SYNs offered window scale 7: the SYNs' windows as they are, later ones << 7. */
    assert_int_equal(seg[0].win_bytes, 65483);
    assert_int_equal(seg[1].win_bytes, 65483);
    assert_true(seg[2].has_win_bytes);
    assert_int_equal(seg[2].win_bytes, 65483u << 7);
    assert_int_equal(seg[5].win_bytes, 65483u << 7);
}

/* Without the option on both SYNs there is no scaling, so no byte count is claimed. */
static void
test_relate_window_one_sided(void **state)
{
    static sf_wire_flows t;
    sf_segment seg[3] = {
        parsed(v4_tcp(40000, 5000, 1, 0, SF_SEG_SYN, 0, 0)),
        parsed(v4_tcp(5000, 40000, 9, 2, SF_SEG_SYN | SF_SEG_ACK, 1, 0)),
        parsed(v4_tcp(40000, 5000, 2, 10, SF_SEG_ACK, 0, 0)),
    };

    (void)state;
    memset(&t, 0, sizeof(t));
    for (int i = 0; i < 3; i++)
        sf_wire_relate(&t, &seg[i]);
    assert_true(seg[1].has_win_bytes);
    assert_false(seg[2].has_win_bytes);
}

static void
test_relate_missed_syn_and_reuse(void **state)
{
    static sf_wire_flows t;
    sf_segment a = parsed(v4_tcp(40000, 5000, 500, 900, SF_SEG_ACK, 0, 10));
    sf_segment b = parsed(v4_tcp(5000, 40000, 900, 510, SF_SEG_ACK, 0, 0));
    sf_segment c = parsed(v4_tcp(40000, 5000, 7000, 0, SF_SEG_SYN, 1, 0));
    sf_segment d = parsed(v4_tcp(5000, 40000, 100, 7001, SF_SEG_SYN | SF_SEG_ACK, 1, 0));
    sf_segment u = parsed(v4_udp(1, 2, 3));

    (void)state;
    memset(&t, 0, sizeof(t));
    sf_wire_relate(&t, &a);
    assert_int_equal(a.rel_seq, 0);
    assert_false(a.has_rel_ack);            /* the other side's base is not known yet */
    sf_wire_relate(&t, &b);
    assert_int_equal(b.rel_seq, 0);
    assert_int_equal(b.rel_ack, 10);
    /* The same ports, a new connection: numbering starts again from its SYN. */
    sf_wire_relate(&t, &c);
    assert_int_equal(c.rel_seq, 0);
    sf_wire_relate(&t, &d);
    assert_int_equal(d.rel_seq, 0);
    assert_int_equal(d.rel_ack, 1);
    sf_wire_relate(&t, &u);
    assert_false(u.has_rel_seq);
    assert_int_equal(t.n, 1);
}

/* ---- a classic BPF interpreter, for the opcodes the builder uses ---- */

static uint32_t
bpf_load(const uint8_t *p, size_t len, uint32_t off, int size, int pkttype, int *ok)
{
    if (off == (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE))
        return (uint32_t)pkttype;
    if (off + (uint32_t)size > len) {
        *ok = 0;
        return 0;
    }
    if (size == 1)
        return p[off];
    if (size == 2)
        return (uint32_t)(p[off] << 8 | p[off + 1]);
    return (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 | (uint32_t)p[off + 2] << 8 |
           p[off + 3];
}

static int
bpf_size(uint16_t code)
{
    return BPF_SIZE(code) == BPF_B ? 1 : BPF_SIZE(code) == BPF_H ? 2 : 4;
}

/* Run prog on packet p the way the kernel would for a packet socket: returns the bytes
 * kept (0: dropped). An out-of-range load drops, as in the kernel. */
static uint32_t
bpf_run(const struct sock_filter *prog, int n, const uint8_t *p, size_t len, int pkttype)
{
    uint32_t a = 0, x = 0;
    int ok = 1;

    for (int pc = 0; pc < n; pc++) {
        const struct sock_filter *i = &prog[pc];

        switch (i->code) {
        case BPF_LD | BPF_W | BPF_ABS: case BPF_LD | BPF_H | BPF_ABS: case BPF_LD | BPF_B | BPF_ABS:
            a = bpf_load(p, len, i->k, bpf_size(i->code), pkttype, &ok);
            break;
        case BPF_LD | BPF_H | BPF_IND: case BPF_LD | BPF_B | BPF_IND:
            a = bpf_load(p, len, x + i->k, bpf_size(i->code), pkttype, &ok);
            break;
        case BPF_LDX | BPF_B | BPF_MSH:
            x = (bpf_load(p, len, i->k, 1, pkttype, &ok) & 0xf) * 4;
            break;
        case BPF_ALU | BPF_RSH | BPF_K:
            a >>= i->k;
            break;
        case BPF_JMP | BPF_JA:
            pc += (int)i->k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += a == i->k ? i->jt : i->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (a & i->k) ? i->jt : i->jf;
            break;
        case BPF_RET | BPF_K:
            return i->k;
        default:
            fail_msg("opcode 0x%x at %d not interpreted", i->code, pc);
        }
        if (!ok)
            return 0;
    }
    fail_msg("program ran off its end");
    return 0;
}

typedef struct built {
    struct sock_filter p[SF_WIRE_BPF_MAX];
    int n;
} built;

static void
build(built *b, unsigned protos, int nports, const uint16_t *ports)
{
    sf_wire_filter f = { .protos = protos, .nports = nports };

    memcpy(f.ports, ports, sizeof(uint16_t) * (size_t)nports);
    b->n = sf_wire_bpf_build(&f, b->p, SF_WIRE_BPF_MAX);
    assert_true(b->n > 0);
}

static int
kept(const built *b, pkt k)
{
    return bpf_run(b->p, b->n, k.b, k.len, PACKET_HOST) > 0;
}

static void
test_bpf_ports_and_protocols(void **state)
{
    static built both, tcp_only;
    uint16_t ports[2] = { 5000, 6000 };
    pkt syn = v4_tcp(40000, 5000, 1, 0, SF_SEG_SYN, 1, 0);

    (void)state;
    build(&both, SF_WIRE_P_TCP | SF_WIRE_P_UDP, 2, ports);
    build(&tcp_only, SF_WIRE_P_TCP, 1, ports);
    assert_int_equal(bpf_run(both.p, both.n, syn.b, syn.len, PACKET_HOST), 256);
    assert_true(kept(&both, v4_tcp(5000, 40000, 1, 2, SF_SEG_SYN | SF_SEG_ACK, 1, 0)));
    assert_true(kept(&both, v4_tcp(40000, 6000, 1, 0, SF_SEG_SYN, 0, 0)));
    assert_false(kept(&both, v4_tcp(40000, 5001, 1, 0, SF_SEG_SYN, 0, 0)));
    assert_true(kept(&both, v6_tcp(40000, 5000, 1, 0, SF_SEG_SYN, 0)));
    assert_false(kept(&both, v6_tcp(40000, 4999, 1, 0, SF_SEG_SYN, 0)));
    assert_true(kept(&both, v4_udp(6000, 33333, 5)));
    assert_true(kept(&both, v6_udp(33333, 5000, 5)));
    assert_false(kept(&both, v4_udp(33333, 33334, 5)));
    assert_true(kept(&both, v4_icmp_unreach(33333, 6000)));
    assert_false(kept(&both, v4_icmp_unreach(33333, 6001)));
    assert_true(kept(&both, v6_icmp_unreach(5000, 33333)));
    assert_false(kept(&both, v6_icmp_unreach(4000, 33333)));
    /* The leaving copy of every loopback packet is dropped; kept where asked (an
     * interface other than lo sees each packet once). */
    assert_int_equal(bpf_run(both.p, both.n, syn.b, syn.len, PACKET_OUTGOING), 0);
    {
        static built out;
        sf_wire_filter f = { .protos = SF_WIRE_P_TCP, .nports = 1, .ports = { 5000 },
                             .outgoing = 1 };

        out.n = sf_wire_bpf_build(&f, out.p, SF_WIRE_BPF_MAX);
        assert_true(out.n > 0);
        assert_int_equal(bpf_run(out.p, out.n, syn.b, syn.len, PACKET_OUTGOING), 256);
        assert_int_equal(bpf_run(out.p, out.n, syn.b, syn.len, PACKET_HOST), 256);
        syn.b[23]++;        /* destination port 5001 */
        assert_int_equal(bpf_run(out.p, out.n, syn.b, syn.len, PACKET_OUTGOING), 0);
        syn.b[23]--;
    }
    /* TCP only: UDP and ICMP on the same ports are not kept. */
    assert_true(kept(&tcp_only, syn));
    assert_false(kept(&tcp_only, v4_udp(5000, 33333, 5)));
    assert_false(kept(&tcp_only, v6_udp(5000, 33333, 5)));
    assert_false(kept(&tcp_only, v4_icmp_unreach(33333, 5000)));
}

static void
test_bpf_edges(void **state)
{
    static built any, many;
    uint16_t ports[SF_WIRE_PORTS_MAX + 1];
    struct sock_filter small[8];
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP | SF_WIRE_P_UDP };
    pkt frag = v4_tcp(40000, 5000, 1, 0, SF_SEG_SYN, 0, 0);

    (void)state;
    for (int i = 0; i <= SF_WIRE_PORTS_MAX; i++)
        ports[i] = (uint16_t)(7000 + i);
    build(&any, SF_WIRE_P_TCP, 0, ports);
    assert_true(kept(&any, v4_tcp(1, 2, 1, 0, SF_SEG_SYN, 0, 0)));
    assert_false(kept(&any, v4_udp(1, 2, 5)));
    build(&many, SF_WIRE_P_TCP | SF_WIRE_P_UDP, SF_WIRE_PORTS_MAX, ports);
    assert_true(kept(&many, v4_tcp(1, 7000 + SF_WIRE_PORTS_MAX - 1, 1, 0, SF_SEG_SYN, 0, 0)));
    assert_true(kept(&many, v6_icmp_unreach(7000, 1)));
    assert_false(kept(&many, v4_tcp(1, 7000 + SF_WIRE_PORTS_MAX, 1, 0, SF_SEG_SYN, 0, 0)));
    /* A later fragment has no ports where the filter looks. */
    put16(frag.b + 6, 185);
    assert_false(kept(&any, frag));
    f.nports = SF_WIRE_PORTS_MAX + 1;
    assert_int_equal(sf_wire_bpf_build(&f, many.p, SF_WIRE_BPF_MAX), SF_EUSAGE);
    f.nports = 1;
    assert_int_equal(sf_wire_bpf_build(&f, small, 8), SF_EUSAGE);
    f.protos = 0;
    assert_int_equal(sf_wire_bpf_build(&f, many.p, SF_WIRE_BPF_MAX), SF_EUSAGE);
}

/* ---- formatting ---- */

static void
test_format_text_json_explain(void **state)
{
    static sf_wire_flows t;
    sf_segment syn = parsed(v4_tcp(40000, 5000, 100, 0, SF_SEG_SYN, 1, 0));
    sf_segment sa = parsed(v4_tcp(5000, 40000, 900, 101, SF_SEG_SYN | SF_SEG_ACK, 1, 0));
    sf_segment icmp = parsed(v4_icmp_unreach(40002, 9999));
    sf_segment u = parsed(v6_udp(40001, 7, 5));
    char buf[512];
    size_t n;

    (void)state;
    memset(&t, 0, sizeof(t));
    sf_wire_relate(&t, &syn);
    sf_wire_relate(&t, &sa);
    syn.t_ns = 1001500;
    n = sf_wire_format_text(&syn, 1000000, buf, sizeof(buf));
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "  0.000002 wire       tcp  127.0.0.1:40000 > 127.0.0.2:5000  SYN "
                        "seq=0 (100) win=65483 len=0 mss=65495 wscale=7 sack_ok ts=12345/0");
    sf_wire_format_json(&sa, buf, sizeof(buf));
    assert_string_equal(buf, "{\"event\":\"segment\",\"t_ns\":0,\"proto\":\"tcp\",\"family\":"
                        "\"ipv4\",\"src\":\"127.0.0.2:5000\",\"dst\":\"127.0.0.1:40000\","
                        "\"flags\":\"SYN,ACK\",\"seq\":900,\"ack\":101,\"rel_seq\":0,"
                        "\"rel_ack\":1,\"win\":65483,\"win_bytes\":65483,\"len\":0,\"mss\":65495,\"wscale\":7,"
                        "\"sack_ok\":true,\"ts_val\":12345,\"ts_ecr\":0}");
    sf_wire_format_json(&icmp, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"proto\":\"icmp\",\"family\":\"ipv4\",\"src\":\"127.0.0.1\""));
    assert_non_null(strstr(buf, "\"quoted_dst\":\"127.0.0.2:9999\""));
    sf_wire_format_json(&u, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"proto\":\"udp\",\"family\":\"ipv6\",\"src\":\"[::1]:40001\""));
    assert_non_null(strstr(buf, "\"len\":5}"));
    /* Short buffers: cut and NUL-terminated, the whole length returned. */
    n = sf_wire_format_json(&sa, buf, 10);
    assert_true(n > 10);
    assert_int_equal(strlen(buf), 9);
    sf_wire_explain(&sa, 5000, 2, buf, sizeof(buf));
    assert_non_null(strstr(buf, "segment 2: the server's kernel answers"));
    assert_non_null(strstr(buf, "(SYN K, ACK J+1)"));
    sf_wire_explain(&icmp, 9999, 3, buf, sizeof(buf));
    assert_non_null(strstr(buf, "port 9999"));
    assert_string_equal(sf_wire_flags_name(SF_SEG_FIN | SF_SEG_ACK | SF_SEG_PSH, buf, 64),
                        "FIN,PSH,ACK");
}

/* ---- real captures (root, or CAP_NET_RAW) ---- */

static int
can_capture(void)
{
    int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

#define SKIP_UNLESS_CAPTURE()                                                         \
    do {                                                                              \
        if (!can_capture()) {                                                         \
            fprintf(stderr, "skipped: socket(AF_PACKET): %s (needs CAP_NET_RAW)\n",   \
                    strerror(errno));                                                 \
            skip();                                                                   \
        }                                                                             \
    } while (0)

typedef struct handshake {
    const sf_segment *syn, *synack, *ack;
    uint64_t t_before, t_after;     /* around connect() */
    int cport;
} handshake;

/* The three segments of the client's connection, found among what w kept. */
static void
find_handshake(const sf_segment *s, size_t n, int cport, handshake *h)
{
    h->syn = h->synack = h->ack = NULL;
    for (size_t i = 0; i < n; i++) {
        int from_client = sf_addr_port(&s[i].src) == cport;

        if (s[i].kind != SF_WIRE_TCP)
            continue;
        if (from_client && s[i].flags == SF_SEG_SYN && !h->syn)
            h->syn = &s[i];
        else if (!from_client && s[i].flags == (SF_SEG_SYN | SF_SEG_ACK) && !h->synack)
            h->synack = &s[i];
        else if (from_client && s[i].flags == SF_SEG_ACK && h->synack && !h->ack)
            h->ack = &s[i];
    }
}

/* Listener on port 0, capture of its port, connect + accept; the kept records. */
static const sf_segment *
capture_handshake(int family, sf_wire **wp, handshake *h, size_t *n)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP, .nports = 1 };
    sf_err err;
    int port, lfd = unit_tcp_listener(family, 8, &port), cfd, afd;

    f.ports[0] = (uint16_t)port;
    if (sf_wire_open(wp, NULL, &f, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(sf_wire_start(*wp, 64, &err), 0);
    h->t_before = sf_now_ns();
    cfd = unit_tcp_client(family, port);
    h->t_after = sf_now_ns();
    h->cport = unit_local_port(cfd);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    sf_wire_stop(*wp, 20);
    close(afd);
    close(cfd);
    close(lfd);
    return sf_wire_segments(*wp, n);
}

static void
check_handshake(int family)
{
    sf_wire *w;
    handshake h;
    size_t n;
    const sf_segment *s = capture_handshake(family, &w, &h, &n);

    find_handshake(s, n, h.cport, &h);
    assert_non_null(h.syn);
    assert_non_null(h.synack);
    assert_non_null(h.ack);
    assert_int_equal(h.syn->family, family);
    /* J and K: SYN J; SYN K, ACK J+1; ACK K+1, in absolute and relative numbers. */
    assert_int_equal(h.synack->ack, h.syn->seq + 1);
    assert_int_equal(h.ack->seq, h.syn->seq + 1);
    assert_int_equal(h.ack->ack, h.synack->seq + 1);
    assert_int_equal(h.syn->rel_seq, 0);
    assert_int_equal(h.synack->rel_seq, 0);
    assert_int_equal(h.synack->rel_ack, 1);
    assert_int_equal(h.ack->rel_seq, 1);
    assert_int_equal(h.ack->rel_ack, 1);
    assert_true(h.syn->mss > 0);
    assert_true(h.synack->mss > 0);
    /* The kernel's stamps, in the trace's clock: in order, and inside connect(). */
    assert_true(h.syn->t_real_ns > 0);
    assert_true(h.syn->t_ns <= h.synack->t_ns && h.synack->t_ns <= h.ack->t_ns);
    if (!(h.syn->t_ns >= h.t_before && h.syn->t_ns <= h.t_after))
        fail_msg("SYN at %llu, connect() from %llu to %llu", (unsigned long long)h.syn->t_ns,
                 (unsigned long long)h.t_before, (unsigned long long)h.t_after);
    assert_true(h.synack->t_ns <= h.t_after);
    assert_int_equal(sf_wire_dropped(w), 0);
    sf_wire_close(w);
}

static void
test_capture_handshake_v4(void **state)
{
    (void)state;
    SKIP_UNLESS_CAPTURE();
    check_handshake(AF_INET);
}

static void
test_capture_handshake_v6(void **state)
{
    (void)state;
    SKIP_UNLESS_CAPTURE();
    check_handshake(AF_INET6);
}

/* A datagram to a bound port and one to a closed port: UDP, then ICMP unreachable. */
static void
test_capture_udp_and_unreachable(void **state)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_UDP, .nports = 2 };
    int port, closed = unit_closed_port(AF_INET, SOCK_DGRAM);
    int sfd = unit_udp_socket(AF_INET, &port), cfd = socket(AF_INET, SOCK_DGRAM, 0);
    sf_addr to = unit_loopback(AF_INET, port), gone = unit_loopback(AF_INET, closed);
    const sf_segment *s;
    int udp = 0, icmp = 0;
    size_t n;
    sf_wire *w;
    sf_err err;

    (void)state;
    SKIP_UNLESS_CAPTURE();
    f.ports[0] = (uint16_t)port;
    f.ports[1] = (uint16_t)closed;
    assert_int_equal(sf_wire_open(&w, "lo", &f, &err), 0);
    assert_int_equal(sf_wire_start(w, 16, &err), 0);
    assert_int_equal(sendto(cfd, "hello", 5, 0, (struct sockaddr *)&to.ss, to.len), 5);
    assert_int_equal(sendto(cfd, "gone!!", 6, 0, (struct sockaddr *)&gone.ss, gone.len), 6);
    assert_true(unit_poll(sfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    sf_wire_stop(w, 20);
    s = sf_wire_segments(w, &n);
    for (size_t i = 0; i < n; i++) {
        if (s[i].kind == SF_WIRE_UDP && sf_addr_port(&s[i].dst) == port && s[i].len == 5)
            udp++;
        if (s[i].kind == SF_WIRE_ICMP_UNREACH && sf_addr_port(&s[i].quoted_dst) == closed)
            icmp++;
    }
    assert_int_equal(udp, 1);
    assert_int_equal(icmp, 1);
    sf_wire_close(w);
    close(sfd);
    close(cfd);
}

/* Traffic on another port never reaches the socket; read without a thread, by poll. */
static void
test_capture_filter_excludes_and_polls(void **state)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP, .nports = 1 };
    int traced, other, l1 = unit_tcp_listener(AF_INET, 8, &traced);
    int l2 = unit_tcp_listener(AF_INET, 8, &other), c1, c2;
    sf_segment seg[32];
    int n = 0, rc;
    uint64_t end;
    sf_wire *w;
    sf_err err;

    (void)state;
    SKIP_UNLESS_CAPTURE();
    f.ports[0] = (uint16_t)traced;
    assert_int_equal(sf_wire_open(&w, NULL, &f, &err), 0);
    c2 = unit_tcp_client(AF_INET, other);
    c1 = unit_tcp_client(AF_INET, traced);
    end = unit_now_ms() + UNIT_WAIT_MS;
    while (n < 3 && unit_now_ms() < end) {
        unit_poll(sf_wire_fd(w), POLLIN, 100);
        rc = sf_wire_read(w, seg + n, 32 - (size_t)n);
        assert_true(rc >= 0);
        n += rc;
    }
    unit_sleep_ms(20);
    n += sf_wire_read(w, seg + n, 32 - (size_t)n);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++)
        assert_true(sf_addr_port(&seg[i].src) == traced || sf_addr_port(&seg[i].dst) == traced);
    /* A new filter takes the other port. */
    f.ports[0] = (uint16_t)other;
    assert_int_equal(sf_wire_set_filter(w, &f, &err), 0);
    close(c2);
    unit_sleep_ms(20);
    rc = sf_wire_read(w, seg, 32);
    assert_true(rc >= 1);
    assert_int_equal(seg[0].flags & SF_SEG_FIN, SF_SEG_FIN);
    sf_wire_close(w);
    close(c1);
    close(l1);
    close(l2);
}

/* Records taken up to a moment: what a trace writer does before writing a call's line.
 * Without a thread the ring itself is read; with one, its kept records come first. */
static void
test_take_until(void **state)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP, .nports = 1 };
    int port, lfd = unit_tcp_listener(AF_INET, 8, &port), cfd, afd;
    uint64_t t_connected, t_closed;
    sf_segment seg[16];
    int fin = 0;
    sf_wire *w;
    sf_err err;
    size_t n;

    (void)state;
    SKIP_UNLESS_CAPTURE();
    f.ports[0] = (uint16_t)port;
    assert_int_equal(sf_wire_open(&w, NULL, &f, &err), 0);
    cfd = unit_tcp_client(AF_INET, port);
    t_connected = sf_now_ns();
    unit_sleep_ms(2);
    assert_int_equal(sf_wire_take(w, 0, seg, 16), 0);
    close(cfd);
    t_closed = sf_now_ns();
    /* The FIN is in the ring already but later than t_connected: it stays. (The last
     * ACK is nearly always inside connect() too, but a loaded kernel may defer it.) */
    n = sf_wire_take(w, t_connected, seg, 16);
    assert_true(n == 2 || n == 3);
    assert_int_equal(seg[0].flags, SF_SEG_SYN);
    assert_int_equal(seg[1].flags, SF_SEG_SYN | SF_SEG_ACK);
    for (size_t i = 0; i < n; i++)
        assert_true(seg[i].t_ns <= t_connected && !(seg[i].flags & SF_SEG_FIN));
    n = sf_wire_take(w, t_closed, seg, 16);
    for (size_t i = 0; i < n; i++)
        fin |= sf_addr_port(&seg[i].dst) == port && (seg[i].flags & SF_SEG_FIN);
    assert_true(fin);
    fin = 0;
    /* With the thread running, a connection accepted and closed by the server. */
    assert_int_equal(sf_wire_start(w, 64, &err), 0);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    close(afd);
    /* The server's FIN; the ACK of the client's FIN may come first on a loaded machine. */
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; !fin && unit_now_ms() < end;) {
        n = sf_wire_take(w, UINT64_MAX, seg, 16);
        for (size_t i = 0; i < n; i++)
            fin |= sf_addr_port(&seg[i].src) == port && (seg[i].flags & SF_SEG_FIN);
    }
    assert_true(fin);
    sf_wire_stop(w, 10);
    sf_wire_close(w);
    close(lfd);
}

static void
test_open_errors(void **state)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP };
    sf_wire *w = (sf_wire *)&f;
    sf_err err;
    int rc;

    (void)state;
    SKIP_UNLESS_CAPTURE();
    rc = sf_wire_open(&w, "nosuchif0", &f, &err);
    assert_true(rc < 0);
    assert_null(w);
    assert_non_null(strstr(err.msg, "capture on nosuchif0: "));
    assert_non_null(strstr(err.msg, "No such device"));
    f.protos = 0;
    assert_int_equal(sf_wire_open(&w, "lo", &f, &err), SF_EUSAGE);
    assert_non_null(strstr(err.msg, "capture on lo: filter"));
}

/* The exit status of child pid, waiting at most UNIT_WAIT_MS (then it is killed). */
static int
wait_child(pid_t pid)
{
    int status = 0;

    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; unit_now_ms() < end;) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            assert_true(WIFEXITED(status));
            return status;
        }
        unit_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("child %d did not finish", (int)pid);
    return status;
}

/* A blocking connect to a with the usual deadline; the fd or -1. */
static int
unit_tcp_client_addr(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), e = 0;
    socklen_t len = sizeof(e);

    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) < 0 && errno != EINPROGRESS)
        goto fail;
    if (!(unit_poll(fd, POLLOUT, UNIT_WAIT_MS) & POLLOUT) ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0 || e != 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

/* ---- an interface other than lo: each packet seen once, both directions ---- */

/* Wait at most UNIT_WAIT_MS for one int on fd. */
static int
read_int(int fd, int *v)
{
    return unit_poll(fd, POLLIN, UNIT_WAIT_MS) && read(fd, v, sizeof(*v)) == sizeof(*v) ? 0 : -1;
}

/* In its own network namespace: v1 gets 10.9.0.2, a listener on port 0 accepts once. */
static int
veth_server(int to_a, int from_a)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int v = 0, lfd, fd;

    if (unshare(CLONE_NEWNET) < 0 || write(to_a, &v, sizeof(v)) != sizeof(v) ||
        read_int(from_a, &v) < 0)
        return 20;
    if (system("ip addr add 10.9.0.2/24 dev v1 && ip link set v1 up") != 0)
        return 21;
    inet_pton(AF_INET, "10.9.0.2", &a.sin_addr);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &len) < 0)
        return 22;
    v = ntohs(a.sin_port);
    if (write(to_a, &v, sizeof(v)) != sizeof(v) || !unit_poll(lfd, POLLIN, UNIT_WAIT_MS))
        return 23;
    fd = accept(lfd, NULL, NULL);
    unit_sleep_ms(100);
    close(fd);
    return 0;
}

/* The client's side, in a second namespace: the veth pair, the capture on v0, connect. */
static int
veth_client(int from_b, int to_b, pid_t b)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP, .nports = 1 };
    struct sockaddr_in a = { .sin_family = AF_INET };
    char cmd[160];
    int v, fd, cport, syn = 0, synack = 0, ack = 0;
    const sf_segment *s;
    sf_wire *w;
    sf_err err;
    size_t n;

    snprintf(cmd, sizeof(cmd), "ip link add v0 type veth peer name v1 netns %d && "
             "ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up", (int)b);
    if (read_int(from_b, &v) < 0 || system(cmd) != 0 || write(to_b, &v, sizeof(v)) != sizeof(v) ||
        read_int(from_b, &v) < 0)
        return 30;
    f.ports[0] = (uint16_t)v;
    if (sf_wire_open(&w, "v0", &f, &err) < 0 || sf_wire_start(w, 64, &err) < 0)
        return 31;
    a.sin_port = htons((uint16_t)v);
    inet_pton(AF_INET, "10.9.0.2", &a.sin_addr);
    fd = unit_tcp_client_addr(&a);
    cport = fd >= 0 ? unit_local_port(fd) : -1;
    unit_sleep_ms(50);
    sf_wire_stop(w, 20);
    s = sf_wire_segments(w, &n);
    for (size_t i = 0; i < n; i++) {
        syn += s[i].flags == SF_SEG_SYN && sf_addr_port(&s[i].src) == cport;
        synack += s[i].flags == (SF_SEG_SYN | SF_SEG_ACK) && s[i].rel_ack == 1;
        ack += s[i].flags == SF_SEG_ACK && s[i].rel_seq == 1 && s[i].rel_ack == 1 &&
               sf_addr_port(&s[i].src) == cport;
    }
    sf_wire_close(w);
    return fd >= 0 && syn == 1 && synack == 1 && ack == 1 ? 0 : 32;
}

static void
test_capture_veth_both_directions(void **state)
{
    int ab[2], ba[2];
    pid_t a;

    (void)state;
    SKIP_UNLESS_CAPTURE();
    if (geteuid() != 0 || system("command -v ip >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: needs root and ip(8) to make a veth pair in namespaces\n");
        skip();
    }
    a = fork();
    assert_true(a >= 0);
    if (a == 0) {
        pid_t b;
        int rc;

        if (unshare(CLONE_NEWNET) < 0 || pipe(ab) < 0 || pipe(ba) < 0)
            _exit(40);
        if ((b = fork()) == 0)
            _exit(veth_server(ba[1], ab[0]));
        rc = veth_client(ba[0], ab[1], b);
        kill(b, SIGKILL);
        waitpid(b, NULL, 0);
        _exit(rc);
    }
    assert_int_equal(WEXITSTATUS(wait_child(a)), 0);
}

/* Unprivileged: a plain user cannot open a capture and is told why; in a private user
 * and network namespace the same user captures a handshake on the namespace's lo. */
static int
unprivileged_child(void)
{
    sf_wire_filter f = { .protos = SF_WIRE_P_TCP, .nports = 1 };
    sf_err err;
    sf_wire *w;
    int port, lfd, cfd;
    size_t n;
    handshake h;
    const sf_segment *s;

    if (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
        return 10;
    /* Changing uid from root clears the dumpable flag, which makes /proc/self root's:
     * a user who logged in as such has it set. */
    if (prctl(PR_SET_DUMPABLE, 1) < 0)
        return 10;
    if (sf_wire_open(&w, "lo", &f, &err) != -EPERM || !strstr(err.msg, "CAP_NET_RAW"))
        return 11;
    if (sf_wire_enter_netns(&err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 12;
    }
    lfd = unit_tcp_listener(AF_INET, 8, &port);
    f.ports[0] = (uint16_t)port;
    if (sf_wire_open(&w, "lo", &f, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 13;
    }
    sf_wire_start(w, 16, &err);
    cfd = unit_tcp_client(AF_INET, port);
    h.cport = unit_local_port(cfd);
    sf_wire_stop(w, 20);
    s = sf_wire_segments(w, &n);
    find_handshake(s, n, h.cport, &h);
    if (!h.syn || !h.synack || !h.ack || h.ack->ack != h.synack->seq + 1)
        return 14;
    sf_wire_close(w);
    close(cfd);
    close(lfd);
    return 0;
}

static void
test_unprivileged_namespace(void **state)
{
    int status = 0;
    pid_t pid;

    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: needs root to become an unprivileged user\n");
        skip();
    }
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(unprivileged_child());
    status = wait_child(pid);
    if (WEXITSTATUS(status) == 12)
        skip();     /* user namespaces disabled here: the message went to stderr */
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A thread that waits for a byte on the pipe arg. */
static void *
waiter(void *arg)
{
    char c;

    unit_poll(*(int *)arg, POLLIN, UNIT_WAIT_MS);
    if (read(*(int *)arg, &c, 1) < 0)
        return NULL;
    return NULL;
}

/* A process with threads cannot move into a new user namespace: said so, not hidden. */
static void
test_netns_refused_with_threads(void **state)
{
    int status = 0;
    pid_t pid = fork();

    (void)state;
    assert_true(pid >= 0);
    if (pid == 0) {
        pthread_t th;
        sf_err err;
        int rc, p[2];

        if (pipe(p) < 0 || pthread_create(&th, NULL, waiter, &p[0]) != 0)
            _exit(2);
        rc = sf_wire_enter_netns(&err);
        if (write(p[1], "x", 1) != 1 || pthread_join(th, NULL) != 0)
            _exit(3);
        _exit(rc == -EINVAL && strstr(err.msg, "unshare(CLONE_NEWUSER|CLONE_NEWNET)") &&
              strstr(err.msg, "(the process has threads)") ? 0 : 1);
    }
    status = wait_child(pid);
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* The fallback where nothing can capture: the kernel's segment counters. */
static void
test_tcp_counts(void **state)
{
    int port, lfd = unit_tcp_listener(AF_INET, 8, &port), cfd = unit_tcp_client(AF_INET, port);
    int afd, p[2];
    sf_wire_counts c;
    char buf[8];

    (void)state;
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    assert_int_equal(write(cfd, "ping", 4), 4);
    assert_int_equal(unit_read_exact(afd, buf, 4, UNIT_WAIT_MS), 4);
    assert_int_equal(sf_wire_tcp_counts(cfd, &c), 0);
    /* SYN, ACK, and the data: three out; the SYN-ACK (and perhaps an ACK) in. */
    assert_true(c.segs_out >= 3);
    assert_true(c.segs_in >= 1);
    assert_int_equal(c.data_segs_out, 1);
    assert_int_equal(sf_wire_tcp_counts(afd, &c), 0);
    assert_int_equal(c.data_segs_in, 1);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(sf_wire_tcp_counts(p[0], &c), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    close(afd);
    close(cfd);
    close(lfd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ipv4_syn_options),
        cmocka_unit_test(test_parse_ipv6_tcp_data),
        cmocka_unit_test(test_parse_truncated_capture_keeps_lengths),
        cmocka_unit_test(test_parse_udp),
        cmocka_unit_test(test_parse_icmp_unreach),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_relate_handshake_and_data),
        cmocka_unit_test(test_relate_window_one_sided),
        cmocka_unit_test(test_relate_missed_syn_and_reuse),
        cmocka_unit_test(test_bpf_ports_and_protocols),
        cmocka_unit_test(test_bpf_edges),
        cmocka_unit_test(test_format_text_json_explain),
        cmocka_unit_test(test_capture_handshake_v4),
        cmocka_unit_test(test_capture_handshake_v6),
        cmocka_unit_test(test_capture_udp_and_unreachable),
        cmocka_unit_test(test_capture_filter_excludes_and_polls),
        cmocka_unit_test(test_take_until),
        cmocka_unit_test(test_capture_veth_both_directions),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_unprivileged_namespace),
        cmocka_unit_test(test_netns_refused_with_threads),
        cmocka_unit_test(test_tcp_counts),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
