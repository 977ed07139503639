/* access: allow/deny prefix rules and per-source connection counts (a hash table of
 * the addresses holding connections, each entry freed when its last one closes). */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/access.h"
#include "sockflow/sock.h"
#include "sockflow/trace.h"

#define NBUCKETS 1024
#define LINE_MAX_LEN 512

typedef struct rule {
    int family;                 /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int prefix;                 /* bits */
} rule;

typedef struct rules {
    rule *r;
    int n, cap;
} rules;

typedef struct source {
    struct source *next;
    int family;
    unsigned char addr[16];
    int count;
} source;

struct sf_access {
    rules allow, deny;
    int max_per_source;
    pthread_mutex_t lock;       /* the table and the counters: several loops admit */
    source *table[NBUCKETS];
    uint64_t denied, busy;
    uint64_t reported_denied, reported_busy;
    uint64_t report_ms;
    source **byfd;              /* sf_access_admit_fd: the slot each fd holds */
    int nbyfd;
};

sf_access *
sf_access_new(sf_err *err)
{
    sf_access *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        sf_err_set(err, -ENOMEM, "access rules");
        return NULL;
    }
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void
sf_access_free(sf_access *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < NBUCKETS; i++) {
        while (a->table[i]) {
            source *s = a->table[i];

            a->table[i] = s->next;
            free(s);
        }
    }
    free(a->allow.r);
    free(a->deny.r);
    free(a->byfd);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* "ADDR[/PREFIX]" into r. */
static int
parse_rule(const char *text, rule *r, const char *opt, sf_err *err)
{
    char host[64];
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    int bits;

    if (hlen == 0 || hlen >= sizeof(host))
        return sf_err_set(err, SF_EADDR, "%s %s: expected ADDR[/PREFIX]", opt, text);
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(r, 0, sizeof(*r));
    if (inet_pton(AF_INET, host, r->addr) == 1) {
        r->family = AF_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, host, r->addr) == 1) {
        r->family = AF_INET6;
        bits = 128;
    } else {
        return sf_err_set(err, SF_EADDR, "%s %s: not a numeric IPv4 or IPv6 address", opt,
                          text);
    }
    r->prefix = bits;
    if (slash) {
        char *end;
        long v = strtol(slash + 1, &end, 10);

        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || v < 0)
            return sf_err_set(err, SF_EADDR, "%s %s: prefix is not a number", opt, text);
        if (v > bits)
            return sf_err_set(err, SF_EADDR, "%s %s: prefix longer than %d", opt, text, bits);
        r->prefix = (int)v;
    }
    return 0;
}

static int
push_rule(rules *rs, const rule *r, sf_err *err)
{
    if (rs->n == rs->cap) {
        int cap = rs->cap ? rs->cap * 2 : 8;
        rule *p = realloc(rs->r, (size_t)cap * sizeof(*p));

        if (p == NULL)
            return sf_err_set(err, -ENOMEM, "access rules");
        rs->r = p;
        rs->cap = cap;
    }
    rs->r[rs->n++] = *r;
    return 0;
}

int
sf_access_add(sf_access *a, int allow, const char *text, sf_err *err)
{
    rule r;
    int rc = parse_rule(text, &r, allow ? "--allow" : "--deny", err);

    if (rc < 0)
        return rc;
    return push_rule(allow ? &a->allow : &a->deny, &r, err);
}

/* One line of a rules file, comments and surrounding blanks removed, into out. */
static void
strip_line(const char *line, char *out, size_t outlen)
{
    size_t n = strcspn(line, "#\r\n");
    size_t start = strspn(line, " \t");

    while (n > start && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    n = n > start ? n - start : 0;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, line + start, n);
    out[n] = '\0';
}

int
sf_access_add_file(sf_access *a, int allow, const char *path, sf_err *err)
{
    char line[LINE_MAX_LEN], text[LINE_MAX_LEN];
    FILE *f = fopen(path, "re");
    int added = 0, lineno = 0, rc = 0;
    sf_err lerr;

    if (f == NULL)
        return sf_err_set(err, -errno, "%s %s", allow ? "--allowfile" : "--denyfile", path);
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        strip_line(line, text, sizeof(text));
        if (text[0] == '\0')
            continue;
        rc = sf_access_add(a, allow, text, &lerr);
        if (rc < 0)
            sf_err_set(err, rc, "%s %s line %d: %s", allow ? "--allowfile" : "--denyfile",
                       path, lineno, lerr.msg);
        else
            added++;
    }
    fclose(f);
    return rc < 0 ? rc : added;
}

void
sf_access_set_max_per_source(sf_access *a, int n)
{
    a->max_per_source = n > 0 ? n : 0;
}

int
sf_access_active(const sf_access *a)
{
    return a != NULL && (a->allow.n > 0 || a->deny.n > 0 || a->max_per_source > 0);
}

/* The peer's address as family and 4 or 16 bytes; an IPv4-mapped IPv6 address as IPv4.
 * 0 for a peer with no IP address (AF_UNIX). */
static int
peer_key(const sf_addr *peer, unsigned char key[16])
{
    memset(key, 0, 16);
    if (peer->ss.ss_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)&peer->ss)->sin_addr, 4);
        return AF_INET;
    }
    if (peer->ss.ss_family == AF_INET6) {
        const struct in6_addr *in6 = &((const struct sockaddr_in6 *)&peer->ss)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(in6)) {
            memcpy(key, in6->s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(key, in6->s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

static int
rule_matches(const rule *r, int family, const unsigned char *key)
{
    int full = r->prefix / 8, rest = r->prefix % 8;

    if (r->family != family || memcmp(r->addr, key, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((r->addr[full] ^ key[full]) & (0xff00 >> rest)) == 0;
}

static int
any_matches(const rules *rs, int family, const unsigned char *key)
{
    for (int i = 0; i < rs->n; i++)
        if (rule_matches(&rs->r[i], family, key))
            return 1;
    return 0;
}

int
sf_access_allowed(const sf_access *a, const sf_addr *peer)
{
    unsigned char key[16];
    int family = peer_key(peer, key);

    if (family == 0)
        return 1;
    if (any_matches(&a->deny, family, key))
        return 0;
    return a->allow.n == 0 || any_matches(&a->allow, family, key);
}

static unsigned
hash_key(int family, const unsigned char *key)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;

    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h % NBUCKETS;
}

static source **
find_source(sf_access *a, int family, const unsigned char *key)
{
    source **p = &a->table[hash_key(family, key)];

    while (*p && ((*p)->family != family || memcmp((*p)->addr, key, 16) != 0))
        p = &(*p)->next;
    return p;
}

/* The decision, with the lock held; *slot gets the source entry counted, if any. */
static int
admit_locked(sf_access *a, const sf_addr *peer, source **slot)
{
    unsigned char key[16];
    int family = peer_key(peer, key), rc = SF_ACCESS_OK;
    source **p;

    *slot = NULL;
    if (!sf_access_allowed(a, peer)) {
        a->denied++;
        rc = SF_ACCESS_DENIED;
    } else if (a->max_per_source > 0 && family != 0) {
        p = find_source(a, family, key);
        if (*p == NULL && (*p = calloc(1, sizeof(**p))) != NULL) {
            (*p)->family = family;
            memcpy((*p)->addr, key, 16);
        }
        if (*p == NULL || (*p)->count >= a->max_per_source) {
            a->busy++;
            rc = SF_ACCESS_BUSY;
        } else {
            (*p)->count++;
            *slot = *p;
        }
    }
    return rc;
}

int
sf_access_admit(sf_access *a, const sf_addr *peer)
{
    source *slot;
    int rc;

    pthread_mutex_lock(&a->lock);
    rc = admit_locked(a, peer, &slot);
    pthread_mutex_unlock(&a->lock);
    return rc;
}

/* One connection fewer for the source s; its entry goes with the last. */
static void
put_slot(sf_access *a, source *s)
{
    source **p = &a->table[hash_key(s->family, s->addr)];

    if (--s->count > 0)
        return;
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    free(s);
}

void
sf_access_release(sf_access *a, const sf_addr *peer)
{
    unsigned char key[16];
    int family = peer_key(peer, key);
    source *s;

    if (a->max_per_source == 0 || family == 0)
        return;
    pthread_mutex_lock(&a->lock);
    if ((s = *find_source(a, family, key)) != NULL)
        put_slot(a, s);
    pthread_mutex_unlock(&a->lock);
}

static int
remember_fd(sf_access *a, int fd, source *slot)
{
    if (fd >= a->nbyfd) {
        int n = fd < 1024 ? 1024 : fd * 2;
        source **p = realloc(a->byfd, (size_t)n * sizeof(*p));

        if (p == NULL)
            return -1;
        memset(p + a->nbyfd, 0, (size_t)(n - a->nbyfd) * sizeof(*p));
        a->byfd = p;
        a->nbyfd = n;
    }
    a->byfd[fd] = slot;
    return 0;
}

int
sf_access_refusal_line(sf_access *a, const sf_addr *peer, int rc, char *buf, size_t len)
{
    char who[SF_ADDR_STRLEN];
    uint64_t denied, busy;

    if (!sf_access_take_report(a, sf_now_ns() / 1000000u, 1000, &denied, &busy))
        return 0;
    snprintf(buf, len, "refused %s (%s); refused since the last report: %llu by "
             "--allow/--deny, %llu over --max-conns-per-source",
             sf_addr_format(peer, who, sizeof(who)),
             rc == SF_ACCESS_DENIED ? "not allowed" : "too many from that address",
             (unsigned long long)denied, (unsigned long long)busy);
    return 1;
}

int
sf_access_admit_fd(sf_access *a, int fd, void (*log)(void *ud, const char *line),
                   void *log_ud)
{
    char line[SF_ADDR_STRLEN + 160];
    sf_addr peer;
    source *slot;
    int rc;

    if (!sf_access_active(a) || sf_peer_addr(fd, &peer) < 0)
        return 1;   /* no rules, or the peer is gone already: its read will find out */
    pthread_mutex_lock(&a->lock);
    rc = admit_locked(a, &peer, &slot);
    if (rc == SF_ACCESS_OK && slot && remember_fd(a, fd, slot) < 0) {
        put_slot(a, slot);
        a->busy++;
        rc = SF_ACCESS_BUSY;
    }
    pthread_mutex_unlock(&a->lock);
    if (rc == SF_ACCESS_OK)
        return 1;
    if (log && sf_access_refusal_line(a, &peer, rc, line, sizeof(line)))
        log(log_ud, line);
    return 0;
}

void
sf_access_release_fd(sf_access *a, int fd)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    if (fd >= 0 && fd < a->nbyfd && a->byfd[fd]) {
        put_slot(a, a->byfd[fd]);
        a->byfd[fd] = NULL;
    }
    pthread_mutex_unlock(&a->lock);
}

int
sf_access_take_report(sf_access *a, uint64_t now_ms, uint64_t interval_ms,
                      uint64_t *denied, uint64_t *busy)
{
    int due;

    pthread_mutex_lock(&a->lock);
    due = (a->denied != a->reported_denied || a->busy != a->reported_busy) &&
          (a->report_ms == 0 || now_ms - a->report_ms >= interval_ms);
    if (due) {
        *denied = a->denied - a->reported_denied;
        *busy = a->busy - a->reported_busy;
        a->reported_denied = a->denied;
        a->reported_busy = a->busy;
        a->report_ms = now_ms ? now_ms : 1;
    }
    pthread_mutex_unlock(&a->lock);
    return due;
}

void
sf_access_totals(sf_access *a, uint64_t *denied, uint64_t *busy)
{
    pthread_mutex_lock(&a->lock);
    *denied = a->denied;
    *busy = a->busy;
    pthread_mutex_unlock(&a->lock);
}
