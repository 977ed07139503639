/* wire: the real TCP/UDP segments of traced connections, captured on loopback with an
 * AF_PACKET socket and a classic BPF filter, parsed into records timed like the trace. */
#ifndef SOCKFLOW_WIRE_H
#define SOCKFLOW_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>
#include "addr.h"
#include "err.h"
#include "ladder.h"

/* What a record is. */
enum { SF_WIRE_TCP = 1, SF_WIRE_UDP = 2, SF_WIRE_ICMP_UNREACH = 3 };

/* One captured segment (TCP), datagram (UDP) or ICMP/ICMPv6 port unreachable. */
typedef struct sf_segment {
    uint64_t t_ns;          /* CLOCK_MONOTONIC, converted from the kernel's stamp */
    uint64_t t_real_ns;     /* the kernel's receive stamp (CLOCK_REALTIME) */
    int kind;               /* SF_WIRE_TCP, SF_WIRE_UDP, SF_WIRE_ICMP_UNREACH */
    int family;             /* AF_INET or AF_INET6 */
    sf_addr src, dst;       /* addresses with ports (ICMP: the hosts, port 0) */
    uint32_t len;           /* TCP or UDP payload bytes (ICMP: the quoted bytes) */
    /* TCP */
    uint8_t flags;          /* SF_SEG_* (ladder.h) */
    uint32_t seq, ack;      /* absolute, as on the wire */
    uint32_t rel_seq;       /* seq - the sender's ISN, when has_rel_seq */
    uint32_t rel_ack;       /* ack - the receiver's ISN, when has_rel_ack */
    uint8_t has_rel_seq, has_rel_ack;
    uint16_t win;           /* the raw window field (scaled on the wire after the SYNs) */
    uint32_t win_bytes;     /* the window in bytes, when has_win_bytes: win shifted by the
                               sender's window scale once both SYNs offered one */
    uint8_t has_win_bytes;
    uint16_t mss;           /* SYN options; 0 when absent */
    int8_t wscale;          /* -1 when absent */
    uint8_t sack_ok;
    uint8_t has_ts;
    uint32_t ts_val, ts_ecr;
    /* ICMP port unreachable: the datagram it quotes, which a socket had sent */
    uint8_t icmp_type, icmp_code;
    int quoted_kind;        /* SF_WIRE_UDP or SF_WIRE_TCP */
    sf_addr quoted_src, quoted_dst;
} sf_segment;

/* ---- parsing ---- */

/* Parse one network-layer packet (IPv4 or IPv6, starting at the IP header) taken at
 * t_real_ns into *out (t_ns left 0: the caller converts). Returns 0, or -EPROTONOSUPPORT
 * for a packet that is none of the kinds above (another protocol, an IPv4 fragment, an
 * IPv6 extension header, other ICMP), -EINVAL for a truncated or malformed one. */
int sf_wire_parse(const void *pkt, size_t len, uint64_t t_real_ns, sf_segment *out);

/* The same for an Ethernet frame (what lo hands a SOCK_RAW packet socket: a 14-byte
 * header of zeros and the ethertype). */
int sf_wire_parse_frame(const void *frame, size_t len, uint64_t t_real_ns, sf_segment *out);

/* Relative sequence numbers: each direction of each connection keeps its ISN (the seq
 * of its SYN, or the first seq seen when the SYN was missed). A fixed table: connections
 * past SF_WIRE_FLOWS_MAX get no relative numbers. Zero-initialise to start. */
#define SF_WIRE_FLOWS_MAX 64

typedef struct sf_wire_flows {
    int n;
    struct sf_wire_flow {
        sf_addr a, b;               /* a sent first */
        uint32_t isn_a, isn_b;
        uint8_t has_a, has_b;
        int8_t ws_a, ws_b;          /* window scale from each SYN; -1 none or unseen */
    } f[SF_WIRE_FLOWS_MAX];
} sf_wire_flows;

/* Fill s->rel_seq/rel_ack (and has_rel_*) and s->win_bytes from the table, learning
 * ISNs and window scales from the SYNs as they pass. Segments must be given in capture
 * order. Non-TCP records are left alone. */
void sf_wire_relate(sf_wire_flows *t, sf_segment *s);

/* ---- the filter ---- */

enum { SF_WIRE_P_TCP = 1 << 0, SF_WIRE_P_UDP = 1 << 1 };
#define SF_WIRE_PORTS_MAX 16
#define SF_WIRE_BPF_MAX 256         /* instructions a built program can take */

/* Which packets to keep: TCP and/or UDP with one of the ports at either end, and, with
 * UDP, ICMP/ICMPv6 port unreachable quoting such a datagram. nports 0: any port. */
typedef struct sf_wire_filter {
    unsigned protos;                /* SF_WIRE_P_* */
    int nports;
    uint16_t ports[SF_WIRE_PORTS_MAX];
    int outgoing;                   /* keep the packets this host sends as it sends them:
                                       on an interface other than lo, where each packet is
                                       seen once (sf_wire_open sets it from the interface) */
} sf_wire_filter;

/* Build the classic BPF program for f, run on network-layer packets (a SOCK_DGRAM packet
 * socket). Unless f->outgoing, it drops the leaving copy loopback shows of every packet
 * besides the arriving one (by the ancillary packet type); always IPv4 fragments after
 * the first and IPv6 with extension headers. Returns
 * the instruction count, or SF_EUSAGE (no protocol, too many ports, cap too small). */
int sf_wire_bpf_build(const sf_wire_filter *f, struct sock_filter *prog, size_t cap);

/* ---- capture ---- */

typedef struct sf_wire sf_wire;

/* Open a capture on interface ifname (NULL: "lo"): socket(AF_PACKET, SOCK_DGRAM, 0),
 * the filter attached, a 1 MiB receive ring mapped (TPACKET_V2: the kernel stamps each
 * packet as it delivers it, before TCP handles it), and only then bound to the
 * interface for every protocol, so nothing unfiltered is ever queued. On lo, each
 * packet is kept once, as it arrives; elsewhere both directions as they pass (f's
 * outgoing is set from the interface's flags). Needs
 * CAP_NET_RAW in the network namespace's owning user namespace: as root, or after
 * sf_wire_enter_netns(). Returns 0 with *out set, or a negative code with err set:
 * -EPERM "capture on lo: socket(AF_PACKET): Operation not permitted (needs CAP_NET_RAW:
 * run as root or in a private namespace, unshare -Urn)". */
int sf_wire_open(sf_wire **out, const char *ifname, const sf_wire_filter *f, sf_err *err);

/* Replace the filter (a port learned later). Returns 0 or a negative errno. */
int sf_wire_set_filter(sf_wire *w, const sf_wire_filter *f, sf_err *err);

/* The packet socket, to poll for POLLIN when no capture thread runs. */
int sf_wire_fd(const sf_wire *w);

/* Read what is queued without waiting: up to max records into out, each parsed, its
 * time converted to CLOCK_MONOTONIC and its relative numbers filled. Packets that do
 * not parse are skipped. Returns the count (0: nothing queued). Not while a capture
 * thread runs or records are held for sf_wire_take (they would come out of order). */
int sf_wire_read(sf_wire *w, sf_segment *out, size_t max);

/* Run the capture on a thread of its own, keeping at most max records (the rest are
 * counted as dropped); records held before are dropped. Returns 0 or a negative code
 * with err set. */
int sf_wire_start(sf_wire *w, size_t max, sf_err *err);

/* Stop the thread after the queue has been quiet for settle_ms (the last packets of an
 * exchange can still be in the kernel's backlog when the calls return), waiting at
 * most 20 * settle_ms in all. Returns the count of records kept. */
int sf_wire_stop(sf_wire *w, int settle_ms);

/* Move out, in capture order, up to max of the records seen so far whose t_ns <=
 * until_ns (UINT64_MAX: all): those the thread kept, then whatever is still in the ring
 * (so a packet delivered before a call returned is there when its event is written).
 * Safe from any thread, with or without the capture thread; without it, room for
 * SF_WIRE_KEEP_DEFAULT records is made on first use. Later records stay for the next
 * call. Returns the count. */
#define SF_WIRE_KEEP_DEFAULT 1024

size_t sf_wire_take(sf_wire *w, uint64_t until_ns, sf_segment *out, size_t max);

/* The records kept by the thread, in capture order; valid until sf_wire_close or the
 * next sf_wire_start. Only after sf_wire_stop. */
const sf_segment *sf_wire_segments(const sf_wire *w, size_t *n);

/* Packets lost: the kernel's drops on the packet socket plus records past max. */
uint64_t sf_wire_dropped(sf_wire *w);

/* Stop the thread if running, close the socket, free. NULL is ignored. */
void sf_wire_close(sf_wire *w);

/* CLOCK_REALTIME - CLOCK_MONOTONIC now, in ns, read as the narrowest of a few pairs:
 * kernel stamps are real time, the trace is monotonic. */
int64_t sf_wire_clock_offset(void);

/* ---- without privilege ---- */

/* Move the calling process into a new user namespace (itself mapped to root there) and
 * a new network namespace whose lo is brought up, so sf_wire_open works unprivileged.
 * The process then sees only that namespace's loopback: for a demo or a test on lo,
 * not for reaching other hosts. Must be called before any thread is started. Returns 0,
 * or a negative errno with err set (user namespaces disabled, a threaded process). */
int sf_wire_enter_netns(sf_err *err);

/* Where no capture is possible: the segments the kernel counted on a TCP socket
 * (TCP_INFO tcpi_segs_out / tcpi_segs_in, and those carrying data). Counts, not
 * segments: no times, flags or numbers. Returns 0 or a negative errno. */
typedef struct sf_wire_counts {
    uint32_t segs_out, segs_in, data_segs_out, data_segs_in;
} sf_wire_counts;

int sf_wire_tcp_counts(int fd, sf_wire_counts *c);

/* ---- formatting ---- */

/* "SYN,ACK" style flag names into buf; "-" when none. Returns buf. */
const char *sf_wire_flags_name(unsigned flags, char *buf, size_t cap);

/* One text line (no newline): time since t0_ns, the addresses, and per kind the flags,
 * seq/ack (relative, then absolute), window, length and SYN options; the UDP length;
 * the ICMP type and the quoted ports. snprintf-style return. */
size_t sf_wire_format_text(const sf_segment *s, uint64_t t0_ns, char *buf, size_t cap);

/* One JSON object (no newline), {"event":"segment",...}; schema in docs/trace.md.
 * snprintf-style return. */
size_t sf_wire_format_json(const sf_segment *s, char *buf, size_t cap);

/* A sentence for --explain (no newline): "segment 2: the server's kernel answers: SYN,
 * its own number K, and ACK J+1 ...". server_port says which end is the server; nth is
 * the segment's number in the exchange (1-based). Returns buf. */
const char *sf_wire_explain(const sf_segment *s, int server_port, int nth, char *buf,
                            size_t cap);

/* The ladder event of a segment: side SF_LADDER_SERVER when it came from server_port
 * (an ICMP error comes from the server's host), else SF_LADDER_CLIENT. */
void sf_wire_to_ladder(const sf_segment *s, int server_port, sf_ladder_event *out);

#endif
