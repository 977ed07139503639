/* access: who may connect — allow/deny rules of ADDR[/PREFIX] (IPv4 and IPv6, deny wins)
 * and a cap on the connections one source address may hold at once. */
#ifndef SOCKFLOW_ACCESS_H
#define SOCKFLOW_ACCESS_H

#include <stddef.h>
#include <stdint.h>
#include "addr.h"
#include "err.h"

typedef struct sf_access sf_access;

/* What sf_access_admit decides. */
enum {
    SF_ACCESS_OK = 0,
    SF_ACCESS_DENIED = 1,       /* a deny rule matches, or allow rules exist and none does */
    SF_ACCESS_BUSY = 2,         /* the source already holds max_per_source connections */
};

/* An empty set of rules (everyone allowed, no per-source cap). NULL with err set. */
sf_access *sf_access_new(sf_err *err);
void sf_access_free(sf_access *a);

/* Add a rule: "192.0.2.0/24", "2001:db8::/32", "127.0.0.5" (a whole address), numeric
 * only. allow 1 adds to the allow list, 0 to the deny list. An IPv4-mapped IPv6 peer
 * (::ffff:192.0.2.1) is matched by the IPv4 rules. Returns 0, or SF_EADDR with err set
 * ("--allow 10.0.0.0/33: prefix longer than 32"). */
int sf_access_add(sf_access *a, int allow, const char *text, sf_err *err);

/* Add one rule per line of the file at path (ncat's --allowfile/--denyfile): blank lines
 * and text after '#' are ignored. Returns the rules added, or a negative code with err
 * set naming the file and line. */
int sf_access_add_file(sf_access *a, int allow, const char *path, sf_err *err);

/* At most n connections at once from one address (0: no cap). */
void sf_access_set_max_per_source(sf_access *a, int n);

/* Whether any rule or cap is set (a server may skip the check otherwise). */
int sf_access_active(const sf_access *a);

/* The rules alone: 1 if peer may connect, 0 if not. Unix domain peers have no address
 * and are always allowed (the socket file's permissions guard them). */
int sf_access_allowed(const sf_access *a, const sf_addr *peer);

/* The rules and the per-source cap, for a new connection from peer. SF_ACCESS_OK takes a
 * slot of that source, to give back with sf_access_release when the connection closes.
 * Counts the refusals. Thread-safe. */
int sf_access_admit(sf_access *a, const sf_addr *peer);
void sf_access_release(sf_access *a, const sf_addr *peer);

/* After a refusal (rc from sf_access_admit) of peer: the log line for it, at most once
 * a second ("refused 127.0.0.2:4000 (not allowed); refused since the last report: 3 by
 * --allow/--deny, 0 over --max-conns-per-source"). Returns 1 with buf filled, 0 when
 * a line was given less than a second ago (the count carries over). */
int sf_access_refusal_line(sf_access *a, const sf_addr *peer, int rc, char *buf, size_t len);

/* For a server's accept path: admit the new connection fd (peer from getpeername),
 * remembering its slot by fd, so that sf_access_release_fd gives it back even when the
 * peer has gone (getpeername fails after a reset). A refusal is logged through log
 * (may be NULL) at most once a second. Returns 1 admitted, 0 refused (the caller
 * closes fd). a NULL or without rules: 1. */
int sf_access_admit_fd(sf_access *a, int fd, void (*log)(void *ud, const char *line),
                       void *log_ud);
/* Before closing an admitted fd. Safe for any fd (nothing to do if none was taken). */
void sf_access_release_fd(sf_access *a, int fd);

/* Refusals so far, and those not yet reported: sf_access_take_report returns 1 (with
 * the counts since the last report in *denied and *busy) at most once every
 * interval_ms, so a flood of refused clients costs one log line a second. */
int sf_access_take_report(sf_access *a, uint64_t now_ms, uint64_t interval_ms,
                          uint64_t *denied, uint64_t *busy);
void sf_access_totals(sf_access *a, uint64_t *denied, uint64_t *busy);

#endif
