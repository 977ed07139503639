/* scan: which ports of a host take a connection (TCP) or answer (UDP), many in flight —
 * the engine behind `sockflow connect -z`. */
#ifndef SOCKFLOW_SCAN_H
#define SOCKFLOW_SCAN_H

#include <stdint.h>
#include "addr.h"
#include "err.h"

#define SF_SCAN_PARALLEL_DEFAULT 256
#define SF_SCAN_TIMEOUT_DEFAULT_MS 1000

typedef enum sf_port_state {
    SF_PORT_OPEN,           /* TCP: the handshake completed; UDP: a datagram came back */
    SF_PORT_CLOSED,         /* TCP: a reset; UDP: ICMP port unreachable (ECONNREFUSED) */
    SF_PORT_FILTERED,       /* TCP: no answer in time, or an ICMP error that is not a
                               refusal (host or network unreachable) */
    SF_PORT_OPEN_FILTERED,  /* UDP: nothing in time — a listener that does not answer
                               and a firewall that drops look the same (as nmap says) */
} sf_port_state;

typedef struct sf_scan_result {
    int port;
    sf_port_state state;
    int err;                /* the errno that decided (ECONNREFUSED, ETIMEDOUT ...), or 0 */
    uint32_t us;            /* from connect (TCP) or send (UDP) to the answer or the
                               timeout, in microseconds */
} sf_scan_result;

typedef struct sf_scan_opts {
    sf_addr host;           /* the address to scan; its port is ignored */
    int udp;                /* UDP: an empty datagram to each port on a connected socket */
    const uint16_t *ports;
    int nports;
    int parallel;           /* probes in flight at most (0: SF_SCAN_PARALLEL_DEFAULT);
                               held below the descriptor limit as well */
    int timeout_ms;         /* per port (0: SF_SCAN_TIMEOUT_DEFAULT_MS) */
    const sf_addr *src;     /* bind this source first (port 0: any), or NULL */
} sf_scan_opts;

/* Parse "22", "20-25", "1-65535" or a comma list of those into a new array of ports in
 * the order given, each once (free() it). Returns the count, or SF_EUSAGE with err set
 * ("ports 99999: not a port from 1 to 65535", "ports 25-20: the range runs backwards"). */
int sf_scan_parse_ports(const char *text, uint16_t **ports, sf_err *err);

/* "open", "closed", "filtered", "open|filtered". */
const char *sf_port_state_name(sf_port_state s);

/* Probe every port of o->ports with nonblocking connects on one epoll set, at most
 * o->parallel at once; out[i] gets the result for o->ports[i]. Open TCP ports are closed
 * with a reset (SO_LINGER 0), which leaves no TIME_WAIT behind. Returns the number of
 * open ports, or a negative code with err set when the scan itself cannot go on
 * ("socket: Too many open files" with nothing in flight, "connect [::1]:22: Cannot
 * assign requested address"). */
int sf_scan(const sf_scan_opts *o, sf_scan_result *out, sf_err *err);

#endif
