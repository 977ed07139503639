/* udpguard: what keeps the UDP services from being turned into a weapon. No reply to
 * the port of a classic service or a privileged port (echo<->chargen loops, CERT
 * CA-1996-01; CVE-2024-2169), none to or from broadcast, multicast or unspecified
 * addresses (fraggle), and a per-source reply budget (token buckets in a bounded
 * table). Internal to the UDP engine; one guard per server, shared by its loops. */
#ifndef SOCKFLOW_UDPGUARD_H
#define SOCKFLOW_UDPGUARD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Why a datagram gets no reply (negative), as sf__udpguard_check returns it. */
enum {
    SF_UDP_DROP_LOOP = -1,      /* from the port of a classic service, one we serve, or 0 */
    SF_UDP_DROP_LOW_PORT = -2,  /* from a port below 1024 */
    SF_UDP_DROP_SOURCE = -3,    /* to or from broadcast, multicast or unspecified, or
                                 * from a Unix socket with no name */
    SF_UDP_DROP_RATE = -4,      /* the source has spent its budget */
};

/* A token bucket in thousandths of a token. */
typedef struct sf_bucket {
    uint64_t last_ms;
    uint64_t mtokens;
} sf_bucket;

/* A full bucket of burst tokens at now_ms. */
void sf__bucket_init(sf_bucket *b, uint64_t now_ms, uint32_t burst);
/* Add what rate tokens a second gives since the last call, at most burst in all.
 * Returns the whole tokens there are. */
uint64_t sf__bucket_refill(sf_bucket *b, uint64_t now_ms, uint32_t rate, uint32_t burst);
/* Take one token; returns 1, or 0 when there is none (refill first). */
int sf__bucket_take(sf_bucket *b);

typedef struct sf_udpguard sf_udpguard;

/* rate: replies a second per source (0: no limit); burst: tokens a source may spend at
 * once (at least 1); sources: how many sources are tracked (the table never grows; the
 * least recently seen in a set makes room); shared: the guard is used by several
 * threads at once (one budget per source whatever the loop), so it takes locks.
 * NULL when out of memory. */
sf_udpguard *sf__udpguard_new(int allow_low_ports, uint32_t rate, uint32_t burst,
                              uint32_t sources, int shared);
void sf__udpguard_free(sf_udpguard *g);

/* Count port as one this server serves UDP on: replies to it are refused (two servers
 * answering each other). */
void sf__udpguard_add_port(sf_udpguard *g, int port);

/* Is the address (IPv4, IPv6 or v4-mapped) broadcast, multicast or unspecified? */
int sf__udp_bad_address(const struct sockaddr *sa, socklen_t len);

/* The verdict on a datagram from sa (to dst, if known): a ticket >= 0 when it may be
 * answered (the source has a token; spend it with sf__udpguard_spend once a reply is
 * sent), else one of SF_UDP_DROP_*. A Unix source passes if it has a name (bound or
 * autobound), with no budget, and is SF_UDP_DROP_SOURCE if it has none. */
int sf__udpguard_check(sf_udpguard *g, const struct sockaddr *sa, socklen_t len,
                       const struct sockaddr *dst, socklen_t dstlen, uint64_t now_ms);
void sf__udpguard_spend(sf_udpguard *g, int ticket);

#endif
