/* addr: "host:port", "[v6]:port", ":port", bare hosts, "unix:/path" and "unix:@name" to
 * socket addresses, and back. */
#ifndef SOCKFLOW_ADDR_H
#define SOCKFLOW_ADDR_H

#include <netinet/in.h>
#include <sys/socket.h>
#include "err.h"

/* Longest text form: "unix:" and a 107-byte path (sun_path), or "[" v6 "%" scope "]:" port */
#define SF_ADDR_STRLEN 128
#define SF_ADDR_MAX 16          /* addresses kept from one resolution */

typedef struct sf_addr {
    struct sockaddr_storage ss;
    socklen_t len;
} sf_addr;

typedef struct sf_addr_list {
    int n;
    sf_addr a[SF_ADDR_MAX];
} sf_addr_list;

/* Flags for sf_addr_resolve(). */
enum {
    SF_ADDR_PASSIVE = 1 << 0,   /* for bind: empty host means the wildcard */
    SF_ADDR_NUMERIC = 1 << 1,   /* no DNS: numeric host only */
    SF_ADDR_V4ONLY  = 1 << 2,
    SF_ADDR_V6ONLY  = 1 << 3,
    SF_ADDR_DGRAM   = 1 << 4,   /* for a UDP socket (else TCP) */
};

/* Split "host:port", "[v6]:port", ":port", "host" or "port"-less forms into host and
 * port strings. host gets "" when absent; port gets "" when absent. A bare IPv6 literal
 * with several colons ("::1") is taken as a host. Returns 0, or SF_EADDR with err set. */
int sf_addr_split(const char *text, char *host, size_t hostlen, char *port, size_t portlen,
                  sf_err *err);

/* Parse a port number "0".."65535". Returns the port, or SF_EADDR with err set. */
int sf_addr_parse_port(const char *text, sf_err *err);

/* The prefix of a Unix domain socket address: "unix:/path" (a file), "unix:@name" (the
 * Linux abstract namespace: no file, gone with the last socket). */
#define SF_ADDR_UNIX_PREFIX "unix:"

/* Whether text is a Unix domain socket address (starts with "unix:"). */
int sf_addr_is_unix(const char *text);

/* Parse "unix:/path", "unix:relative/path" or "unix:@name" into a (AF_UNIX). Returns 0,
 * or SF_EADDR with err set ("address unix:: empty path", "... longer than 107 bytes"). */
int sf_addr_parse_unix(const char *text, sf_addr *a, sf_err *err);

/* The file of a Unix address bound in the file system, or NULL (abstract, unnamed, or
 * not AF_UNIX). Points into a. */
const char *sf_addr_unix_path(const sf_addr *a);

/* Resolve host and port (numeric or a service name) with getaddrinfo into out, in
 * the order the resolver gives. host NULL or "" is loopback, or the wildcard with
 * SF_ADDR_PASSIVE. Returns the count (>= 1) or SF_EADDR with err set
 * ("resolve nosuch.invalid:80: Name or service not known"). */
int sf_addr_resolve(const char *host, const char *port, int flags, sf_addr_list *out,
                    sf_err *err);

/* Both at once: "host:port" text (or a "unix:" address, one entry) into out. default_port is used when the text has none
 * (NULL: a port is required). */
int sf_addr_resolve_text(const char *text, const char *default_port, int flags,
                         sf_addr_list *out, sf_err *err);

/* Format as "127.0.0.1:7", "[::1]:7", "unix:/path", "unix:@name" or "unix:" (an unnamed
 * Unix socket, such as a client's) into buf (at least SF_ADDR_STRLEN); returns buf. */
char *sf_addr_format(const sf_addr *a, char *buf, size_t len);

/* Format a raw sockaddr likewise. */
char *sf_addr_format_sa(const struct sockaddr *sa, socklen_t salen, char *buf, size_t len);

/* The port, or -1 for a family without ports (AF_UNIX). */
int sf_addr_port(const sf_addr *a);
void sf_addr_set_port(sf_addr *a, int port);
int sf_addr_family(const sf_addr *a);

/* Whether a is the unspecified address (0.0.0.0 or ::): bound there, a socket is
 * reachable on every address of the host, not only loopback. */
int sf_addr_is_wildcard(const sf_addr *a);

/* Fill a from a raw sockaddr. */
void sf_addr_from_sa(sf_addr *a, const struct sockaddr *sa, socklen_t len);

/* Loopback address of the family (AF_INET 127.0.0.1, AF_INET6 ::1) with port. */
void sf_addr_loopback(sf_addr *a, int family, int port);

#endif
