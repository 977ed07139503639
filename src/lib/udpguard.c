/* udpguard: source filter and per-source reply budget for the UDP engine. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <time.h>

#include "udpguard.h"

#define WAYS 4                  /* slots a source may take: the table is 4-way associative */
#define MAX_PORTS 64
#define MAX_BCAST 32
#define IFADDR_REFRESH_MS 60000
#define LOCKS 64                /* shared guard: one lock per 1/64th of the sets */

/* The classic services answer anything: a datagram from one of their ports is the
 * other half of a loop (OpenBSD inetd's dg_badinput, FreeBSD's check_loop). */
static const uint16_t classic_ports[] = { 7, 9, 13, 19, 37 };

typedef struct slot {
    uint8_t key[16];            /* IPv4 as v4-mapped; IPv6 by its /64 */
    uint8_t used;
    sf_bucket b;
} slot;

struct sf_udpguard {
    int allow_low_ports;
    uint32_t rate, burst;
    uint32_t mask;              /* slots - 1 (a power of two) */
    uint64_t seed;
    slot *slots;
    uint16_t ports[MAX_PORTS];
    int nports;
    /* The broadcast addresses of the interfaces (network order), in two tables: a check
     * reads the one bcast_gen names, without a lock; a refresh (once a minute, one loop
     * at a time under bcast_lock) fills the other, then names it. */
    _Atomic uint32_t bcast[2][MAX_BCAST];
    atomic_int nbcast[2];
    atomic_uint bcast_gen;      /* the table is bcast_gen & 1; bumped by each refresh */
    _Atomic uint64_t bcast_ms;  /* when the interfaces were last read */
    atomic_int bcast_read;      /* they have been read (or tried) at least once */
    int shared;                 /* used by several threads: take the locks */
    pthread_mutex_t bcast_lock;
    pthread_mutex_t set_lock[LOCKS];
};

/* ---- token bucket ---- */

void
sf__bucket_init(sf_bucket *b, uint64_t now_ms, uint32_t burst)
{
    b->last_ms = now_ms;
    b->mtokens = (uint64_t)burst * 1000;
}

uint64_t
sf__bucket_refill(sf_bucket *b, uint64_t now_ms, uint32_t rate, uint32_t burst)
{
    uint64_t cap = (uint64_t)burst * 1000;

    if (now_ms > b->last_ms) {
        uint64_t dt = now_ms - b->last_ms;

        /* rate tokens a second is rate thousandths a millisecond. */
        if (rate == 0 || dt >= cap / rate + 1)
            b->mtokens = cap;
        else if ((b->mtokens += dt * rate) > cap)
            b->mtokens = cap;
        b->last_ms = now_ms;
    }
    return b->mtokens / 1000;
}

int
sf__bucket_take(sf_bucket *b)
{
    if (b->mtokens < 1000)
        return 0;
    b->mtokens -= 1000;
    return 1;
}

/* ---- addresses ---- */

static int
bad_v4(uint32_t a)      /* host order */
{
    return (a >> 24) == 0       /* 0/8: unspecified, "this network" */
        || (a >> 28) == 0xe     /* 224/4 multicast */
        || (a >> 28) == 0xf;    /* 240/4 reserved, 255.255.255.255 broadcast */
}

/* The IPv4 address inside sa (plain or v4-mapped) in network order, or 0 if none. */
static int
v4_of(const struct sockaddr *sa, socklen_t len, uint32_t *out)
{
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        *out = ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
        return 1;
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, &a->s6_addr[12], 4);
            return 1;
        }
    }
    return 0;
}

int
sf__udp_bad_address(const struct sockaddr *sa, socklen_t len)
{
    uint32_t v4;

    if (v4_of(sa, len, &v4))
        return bad_v4(ntohl(v4));
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_MULTICAST(a);
    }
    return 1;   /* not an internet address: nothing to answer */
}

static int
broadcasts_due(sf_udpguard *g, uint64_t now_ms)
{
    /* Loops' clocks differ by a few ms: one behind the last read is not due. */
    return !atomic_load(&g->bcast_read) ||
           now_ms >= atomic_load_explicit(&g->bcast_ms, memory_order_relaxed) +
                     IFADDR_REFRESH_MS;
}

/* The directed broadcast addresses of the interfaces (10.0.0.255 ...), reread now and
 * then: a source or destination equal to one is a fraggle attempt. Into the table not
 * in use, named once full; the one in use stays when getifaddrs fails. */
static void
read_broadcasts(sf_udpguard *g, uint64_t now_ms)
{
    unsigned next = (atomic_load(&g->bcast_gen) + 1) & 1;
    struct ifaddrs *ifs, *i;
    int n = 0;

    atomic_store_explicit(&g->bcast_ms, now_ms, memory_order_relaxed);
    if (getifaddrs(&ifs) < 0) {
        atomic_store(&g->bcast_read, 1);
        return;
    }
    for (i = ifs; i && n < MAX_BCAST; i = i->ifa_next) {
        uint32_t b;

        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
            !(i->ifa_flags & IFF_BROADCAST) || !i->ifa_broadaddr)
            continue;
        b = ((struct sockaddr_in *)i->ifa_broadaddr)->sin_addr.s_addr;
        /* An address added without `brd` (containers, clouds) has none: getifaddrs
         * then reports the address itself, which is a host, not a broadcast. */
        if (b == ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr)
            continue;
        atomic_store_explicit(&g->bcast[next][n++], b, memory_order_relaxed);
    }
    freeifaddrs(ifs);
    atomic_store_explicit(&g->nbcast[next], n, memory_order_relaxed);
    atomic_fetch_add_explicit(&g->bcast_gen, 1, memory_order_release);
    atomic_store(&g->bcast_read, 1);
}

/* Read the interfaces if it is time. Shared: the first read is waited for (no table yet);
 * a later one is left to the loop already at it, the others use the table there is. */
static void
refresh_broadcasts(sf_udpguard *g, uint64_t now_ms)
{
    if (!broadcasts_due(g, now_ms))
        return;
    if (g->shared) {
        if (atomic_load(&g->bcast_read) ? pthread_mutex_trylock(&g->bcast_lock) != 0
                                        : pthread_mutex_lock(&g->bcast_lock) != 0)
            return;
        if (broadcasts_due(g, now_ms))
            read_broadcasts(g, now_ms);
        pthread_mutex_unlock(&g->bcast_lock);
        return;
    }
    read_broadcasts(g, now_ms);
}

/* No lock: the table bcast_gen names is rewritten only by the refresh after next, a
 * minute or more after the next one, so a check never reads a table being filled. */
static int
is_broadcast(sf_udpguard *g, const struct sockaddr *sa, socklen_t len, uint64_t now_ms)
{
    unsigned t;
    uint32_t v4;
    int n;

    /* Loopback is never an interface's broadcast: no table to read. */
    if (!v4_of(sa, len, &v4) || (ntohl(v4) >> 24) == 127)
        return 0;
    refresh_broadcasts(g, now_ms);
    t = atomic_load_explicit(&g->bcast_gen, memory_order_acquire) & 1;
    n = atomic_load_explicit(&g->nbcast[t], memory_order_relaxed);
    for (int i = 0; i < n; i++)
        if (atomic_load_explicit(&g->bcast[t][i], memory_order_relaxed) == v4)
            return 1;
    return 0;
}

static int
port_of(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

/* ---- the table of sources ---- */

static uint64_t
mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void
source_key(const struct sockaddr *sa, socklen_t len, uint8_t key[16])
{
    uint32_t v4;

    memset(key, 0, 16);
    if (v4_of(sa, len, &v4)) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &v4, 4);
    } else {
        /* One IPv6 site hands out a whole /64: count it as one source. */
        memcpy(key, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 8);
    }
}

/* The first slot of the set where key lives. Seeded, so that nobody can aim many
 * sources at one set. */
static uint32_t
set_of(const sf_udpguard *g, const uint8_t key[16])
{
    uint64_t k0, k1;

    memcpy(&k0, key, 8);
    memcpy(&k1, key + 8, 8);
    return (uint32_t)mix(mix(k0 ^ g->seed) ^ k1) & g->mask & ~(uint32_t)(WAYS - 1);
}

static pthread_mutex_t *
set_lock(sf_udpguard *g, uint32_t set)
{
    return g->shared ? &g->set_lock[(set / WAYS) % LOCKS] : NULL;
}

static int
find_slot(sf_udpguard *g, const uint8_t key[16], uint32_t set, uint64_t now_ms)
{
    int victim = -1;

    for (uint32_t i = set; i < set + WAYS; i++) {
        slot *s = &g->slots[i];

        if (s->used && memcmp(s->key, key, 16) == 0)
            return (int)i;
        if (victim < 0 || !s->used ||
            (g->slots[victim].used && s->b.last_ms < g->slots[victim].b.last_ms))
            victim = (int)i;
    }
    memcpy(g->slots[victim].key, key, 16);
    g->slots[victim].used = 1;
    sf__bucket_init(&g->slots[victim].b, now_ms, g->burst);
    return victim;
}

/* ---- the guard ---- */

sf_udpguard *
sf__udpguard_new(int allow_low_ports, uint32_t rate, uint32_t burst, uint32_t sources,
                 int shared)
{
    sf_udpguard *g = calloc(1, sizeof(*g));
    uint32_t n = WAYS;

    if (g == NULL)
        return NULL;
    g->shared = shared;
    pthread_mutex_init(&g->bcast_lock, NULL);
    for (int i = 0; i < LOCKS; i++)
        pthread_mutex_init(&g->set_lock[i], NULL);
    while (n < sources && n < (1u << 24))
        n <<= 1;
    g->allow_low_ports = allow_low_ports;
    g->rate = rate;
    g->burst = burst ? burst : 1;
    g->mask = n - 1;
    if (rate > 0 && (g->slots = calloc(n, sizeof(*g->slots))) == NULL) {
        free(g);
        return NULL;
    }
    if (getrandom(&g->seed, sizeof(g->seed), GRND_NONBLOCK) != sizeof(g->seed))
        g->seed = mix((uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)g);
    return g;
}

void
sf__udpguard_free(sf_udpguard *g)
{
    if (g == NULL)
        return;
    pthread_mutex_destroy(&g->bcast_lock);
    for (int i = 0; i < LOCKS; i++)
        pthread_mutex_destroy(&g->set_lock[i]);
    free(g->slots);
    free(g);
}

void
sf__udpguard_add_port(sf_udpguard *g, int port)
{
    for (int i = 0; i < g->nports; i++)
        if (g->ports[i] == port)
            return;
    if (g->nports < MAX_PORTS)
        g->ports[g->nports++] = (uint16_t)port;
}

int
sf__udpguard_check(sf_udpguard *g, const struct sockaddr *sa, socklen_t len,
                   const struct sockaddr *dst, socklen_t dstlen, uint64_t now_ms)
{
    uint8_t key[16];
    int port = port_of(sa), s;
    uint32_t set;
    pthread_mutex_t *lock;

    /* A Unix peer has no port, cannot forge its name and is on this host: the port,
     * address and budget rules are for IP. One that never bound a name cannot be
     * answered (unix(7)): it is the unspecified address of AF_UNIX. */
    if (sa->sa_family == AF_UNIX)
        return len > offsetof(struct sockaddr_un, sun_path) ? (int)g->mask + 1
                                                            : SF_UDP_DROP_SOURCE;
    if (port == 0)
        return SF_UDP_DROP_LOOP;
    for (size_t i = 0; i < sizeof(classic_ports) / sizeof(classic_ports[0]); i++)
        if (port == classic_ports[i])
            return SF_UDP_DROP_LOOP;
    for (int i = 0; i < g->nports; i++)
        if (port == g->ports[i])
            return SF_UDP_DROP_LOOP;
    if (port < 1024 && !g->allow_low_ports)
        return SF_UDP_DROP_LOW_PORT;
    /* 127/8 and ::1 pass: the tool must be able to test itself on loopback, and the
     * kernel drops loopback sources arriving from outside (martians). */
    if (sf__udp_bad_address(sa, len) || is_broadcast(g, sa, len, now_ms))
        return SF_UDP_DROP_SOURCE;
    if (dst && (sf__udp_bad_address(dst, dstlen) || is_broadcast(g, dst, dstlen, now_ms)))
        return SF_UDP_DROP_SOURCE;
    if (g->rate == 0)
        return (int)g->mask + 1;    /* no budget to spend */
    source_key(sa, len, key);
    set = set_of(g, key);
    if ((lock = set_lock(g, set)) != NULL)
        pthread_mutex_lock(lock);
    s = find_slot(g, key, set, now_ms);
    if (sf__bucket_refill(&g->slots[s].b, now_ms, g->rate, g->burst) == 0)
        s = SF_UDP_DROP_RATE;
    if (lock)
        pthread_mutex_unlock(lock);
    return s;
}

void
sf__udpguard_spend(sf_udpguard *g, int ticket)
{
    pthread_mutex_t *lock;

    if (g->rate == 0 || ticket < 0 || (uint32_t)ticket > g->mask)
        return;
    /* Shared: the slot may have changed hands since the check; the token then comes
     * off its new source, a bounded error that never lets a source past its budget. */
    if ((lock = set_lock(g, (uint32_t)ticket & ~(uint32_t)(WAYS - 1))) != NULL)
        pthread_mutex_lock(lock);
    sf__bucket_take(&g->slots[ticket].b);
    if (lock)
        pthread_mutex_unlock(lock);
}
