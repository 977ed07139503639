/* wire_bpf: the classic BPF program that keeps only the traced ports' packets, built
 * from a list of ports with forward labels resolved at the end. */
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <string.h>

#include "sockflow/err.h"
#include "sockflow/wire.h"

/* Bytes of a kept packet handed to the socket: every header (IPv4 60 + TCP 60 at most;
 * an ICMP error's quoted headers), never the payload, so a bulk transfer cannot fill
 * the socket's buffer. */
#define SNAP_LEN 256

enum { L_NONE = 0, L_ACCEPT, L_DROP, L_V4, L_V4_PORTS, L_V4_ICMP, L_Q4, L_V6, L_V6_PORTS,
       L_V6_ICMP, L_Q6, L_COUNT };

typedef struct prog {
    struct sock_filter *p;
    size_t n, cap;
    int bad;
    int jt[SF_WIRE_BPF_MAX], jf[SF_WIRE_BPF_MAX], ja[SF_WIRE_BPF_MAX];
    size_t at[L_COUNT];
} prog;

static void
op(prog *g, uint16_t code, uint32_t k, int jt, int jf)
{
    if (g->n >= g->cap || g->n >= SF_WIRE_BPF_MAX) {
        g->bad = 1;
        return;
    }
    g->p[g->n] = (struct sock_filter){ code, 0, 0, k };
    g->jt[g->n] = jt;
    g->jf[g->n] = jf;
    g->ja[g->n] = L_NONE;
    g->n++;
}

static void
jump(prog *g, int label)
{
    op(g, BPF_JMP | BPF_JA, 0, L_NONE, L_NONE);
    if (!g->bad)
        g->ja[g->n - 1] = label;
}

static void
label(prog *g, int l)
{
    g->at[l] = g->n;
}

/* A = the port loaded by load_code at k: accept it if it is one of f's ports. */
static void
match_ports(prog *g, const sf_wire_filter *f, uint16_t load_code, uint32_t k)
{
    op(g, load_code, k, L_NONE, L_NONE);
    for (int i = 0; i < f->nports; i++)
        op(g, BPF_JMP | BPF_JEQ | BPF_K, f->ports[i], L_ACCEPT, L_NONE);
}

/* Both ports of a transport header (at X + base for IPv4, at base for IPv6). */
static void
match_both(prog *g, const sf_wire_filter *f, int ind, uint32_t base)
{
    uint16_t code = BPF_LD | BPF_H | (ind ? BPF_IND : BPF_ABS);

    if (f->nports == 0) {
        jump(g, L_ACCEPT);
        return;
    }
    match_ports(g, f, code, base);
    match_ports(g, f, code, base + 2);
    jump(g, L_DROP);
}

/* Accept an ICMP/ICMPv6 header at off whose type and code say port unreachable. */
static void
match_unreach(prog *g, uint32_t off, uint32_t type, uint32_t code)
{
    op(g, BPF_LD | BPF_B | BPF_ABS, off, L_NONE, L_NONE);
    op(g, BPF_JMP | BPF_JEQ | BPF_K, type, L_NONE, L_DROP);
    op(g, BPF_LD | BPF_B | BPF_ABS, off + 1, L_NONE, L_NONE);
    op(g, BPF_JMP | BPF_JEQ | BPF_K, code, L_NONE, L_DROP);
}

static void
build_v4(prog *g, const sf_wire_filter *f)
{
    label(g, L_V4);
    op(g, BPF_LD | BPF_B | BPF_ABS, 9, L_NONE, L_NONE);
    if (f->protos & SF_WIRE_P_TCP)
        op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, L_V4_PORTS, L_NONE);
    if (f->protos & SF_WIRE_P_UDP) {
        op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, L_V4_PORTS, L_NONE);
        op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMP, L_V4_ICMP, L_NONE);
    }
    jump(g, L_DROP);
    /* Only the first fragment has the ports. */
    label(g, L_V4_PORTS);
    op(g, BPF_LD | BPF_H | BPF_ABS, 6, L_NONE, L_NONE);
    op(g, BPF_JMP | BPF_JSET | BPF_K, 0x1fff, L_DROP, L_NONE);
    op(g, BPF_LDX | BPF_B | BPF_MSH, 0, L_NONE, L_NONE);
    match_both(g, f, 1, 0);
    if (!(f->protos & SF_WIRE_P_UDP))
        return;
    /* The kernel's own ICMP error has a 20-byte header: the quoted one starts at 28. */
    label(g, L_V4_ICMP);
    op(g, BPF_LD | BPF_B | BPF_ABS, 0, L_NONE, L_NONE);
    op(g, BPF_JMP | BPF_JEQ | BPF_K, 0x45, L_NONE, L_DROP);
    match_unreach(g, 20, 3, 3);
    op(g, BPF_LD | BPF_B | BPF_ABS, 28 + 9, L_NONE, L_NONE);
    op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, L_Q4, L_DROP);
    label(g, L_Q4);
    op(g, BPF_LDX | BPF_B | BPF_MSH, 28, L_NONE, L_NONE);
    match_both(g, f, 1, 28);
}

static void
build_v6(prog *g, const sf_wire_filter *f)
{
    label(g, L_V6);
    op(g, BPF_LD | BPF_B | BPF_ABS, 6, L_NONE, L_NONE);
    if (f->protos & SF_WIRE_P_TCP)
        op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, L_V6_PORTS, L_NONE);
    if (f->protos & SF_WIRE_P_UDP) {
        op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, L_V6_PORTS, L_NONE);
        op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMPV6, L_V6_ICMP, L_NONE);
    }
    jump(g, L_DROP);
    label(g, L_V6_PORTS);
    match_both(g, f, 0, 40);
    if (!(f->protos & SF_WIRE_P_UDP))
        return;
    /* ICMPv6 header at 40, 8 bytes; the quoted IPv6 header at 48, its ports at 88. */
    label(g, L_V6_ICMP);
    match_unreach(g, 40, 1, 4);
    op(g, BPF_LD | BPF_B | BPF_ABS, 48 + 6, L_NONE, L_NONE);
    op(g, BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, L_Q6, L_DROP);
    label(g, L_Q6);
    match_both(g, f, 0, 88);
}

/* Labels to offsets; classic BPF jumps only forward, conditional ones at most 255. */
static int
resolve(prog *g)
{
    for (size_t i = 0; i < g->n; i++) {
        struct sock_filter *ins = &g->p[i];
        long t = g->jt[i] ? (long)g->at[g->jt[i]] - (long)i - 1 : 0;
        long f = g->jf[i] ? (long)g->at[g->jf[i]] - (long)i - 1 : 0;

        if (g->ja[i]) {
            ins->k = (uint32_t)(g->at[g->ja[i]] - i - 1);
            continue;
        }
        if (t < 0 || t > 255 || f < 0 || f > 255)
            return SF_EUSAGE;
        ins->jt = (uint8_t)t;
        ins->jf = (uint8_t)f;
    }
    return (int)g->n;
}

int
sf_wire_bpf_build(const sf_wire_filter *f, struct sock_filter *p, size_t cap)
{
    prog g;

    if (!(f->protos & (SF_WIRE_P_TCP | SF_WIRE_P_UDP)) || f->nports < 0 ||
        f->nports > SF_WIRE_PORTS_MAX)
        return SF_EUSAGE;
    memset(&g, 0, sizeof(g));
    g.p = p;
    g.cap = cap;
    /* Loopback shows every packet twice, leaving and arriving: keep the arrival. */
    if (!f->outgoing) {
        op(&g, BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE), L_NONE,
           L_NONE);
        op(&g, BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, L_DROP, L_NONE);
    }
    op(&g, BPF_LD | BPF_B | BPF_ABS, 0, L_NONE, L_NONE);
    op(&g, BPF_ALU | BPF_RSH | BPF_K, 4, L_NONE, L_NONE);
    op(&g, BPF_JMP | BPF_JEQ | BPF_K, 4, L_V4, L_NONE);
    op(&g, BPF_JMP | BPF_JEQ | BPF_K, 6, L_V6, L_DROP);
    build_v4(&g, f);
    build_v6(&g, f);
    label(&g, L_ACCEPT);
    op(&g, BPF_RET | BPF_K, SNAP_LEN, L_NONE, L_NONE);
    label(&g, L_DROP);
    op(&g, BPF_RET | BPF_K, 0, L_NONE, L_NONE);
    if (g.bad)
        return SF_EUSAGE;
    return resolve(&g);
}
