/* test_udpguard: the UDP guard's verdict on Unix datagram sources: a named sender
 * (path, abstract, autobound) is answered with no port rule and no budget, an unnamed
 * one never; an interface's broadcast address is refused by every loop at once, while
 * the table of them is reread. Self-contained. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>

#include "lib/udpguard.h"

static socklen_t
unix_addr(struct sockaddr_un *a, const char *name, size_t len)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path, name, len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static void
named_unix_sources_pass_without_budget(void **st)
{
    /* No low ports, one reply a second, a burst of one: every IP rule at its tightest. */
    sf_udpguard *g = sf__udpguard_new(0, 1, 1, 64, 0);
    struct sockaddr_un a;
    const char *names[] = { "/tmp/client.sock", "\0abstract", "\0" "0001f" };
    size_t lens[] = { sizeof("/tmp/client.sock"), 9, 6 };

    (void)st;
    assert_non_null(g);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        socklen_t len = unix_addr(&a, names[i], lens[i]);

        for (int k = 0; k < 10; k++) {
            int ticket = sf__udpguard_check(g, (struct sockaddr *)&a, len, NULL, 0, 0);

            assert_true(ticket >= 0);
            sf__udpguard_spend(g, ticket);
        }
    }
    sf__udpguard_free(g);
}

static void
unnamed_unix_source_is_dropped(void **st)
{
    sf_udpguard *g = sf__udpguard_new(1, 0, 0, 64, 0);
    struct sockaddr_un a;

    (void)st;
    assert_non_null(g);
    assert_int_equal(sf__udpguard_check(g, (struct sockaddr *)&a, unix_addr(&a, "", 0),
                                        NULL, 0, 0), SF_UDP_DROP_SOURCE);
    sf__udpguard_free(g);
}

/* ---- the broadcast table, read by several loops while it is reread ---- */

#define CHECKERS 4
#define CHECKS 20000

typedef struct checker {
    sf_udpguard *g;
    struct sockaddr_in bcast, host;
    int wrong;
} checker;

/* An IPv4 broadcast address of this host's interfaces (not the host address itself, as
 * getifaddrs reports for an address added without `brd`), and a host address; 0 if none. */
static int
find_broadcast(struct sockaddr_in *bcast, struct sockaddr_in *host)
{
    struct ifaddrs *ifs;
    int found = 0;

    if (getifaddrs(&ifs) < 0)
        return 0;
    for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
            !(i->ifa_flags & IFF_BROADCAST) || !i->ifa_broadaddr ||
            ((struct sockaddr_in *)i->ifa_broadaddr)->sin_addr.s_addr ==
            ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr)
            continue;
        *bcast = *(struct sockaddr_in *)i->ifa_broadaddr;
        *host = *(struct sockaddr_in *)i->ifa_addr;
        found = 1;
    }
    freeifaddrs(ifs);
    return found;
}

/* The clock runs 10 s a check, so the table is reread every 6 checks (by whichever
 * loop gets there first) while the others keep reading it. */
static void *
check_many(void *arg)
{
    checker *c = arg;

    for (int k = 0; k < CHECKS; k++) {
        uint64_t now = 10000 * (uint64_t)k;

        if (sf__udpguard_check(c->g, (struct sockaddr *)&c->bcast, sizeof(c->bcast), NULL,
                               0, now) != SF_UDP_DROP_SOURCE ||
            sf__udpguard_check(c->g, (struct sockaddr *)&c->host, sizeof(c->host),
                               (struct sockaddr *)&c->bcast, sizeof(c->bcast), now)
                != SF_UDP_DROP_SOURCE ||
            sf__udpguard_check(c->g, (struct sockaddr *)&c->host, sizeof(c->host),
                               (struct sockaddr *)&c->host, sizeof(c->host), now) < 0)
            c->wrong++;
    }
    return NULL;
}

static void
broadcast_refused_by_every_loop_while_reread(void **st)
{
    sf_udpguard *g = sf__udpguard_new(0, 0, 1, 64, 1);
    checker c[CHECKERS];
    pthread_t th[CHECKERS];
    struct sockaddr_in bcast, host;

    (void)st;
    assert_non_null(g);
    if (!find_broadcast(&bcast, &host)) {
        sf__udpguard_free(g);
        skip();     /* no interface with a broadcast address here */
    }
    bcast.sin_port = host.sin_port = htons(40000);
    for (int i = 0; i < CHECKERS; i++) {
        c[i] = (checker){ .g = g, .bcast = bcast, .host = host };
        assert_int_equal(pthread_create(&th[i], NULL, check_many, &c[i]), 0);
    }
    for (int i = 0; i < CHECKERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(c[i].wrong, 0);
    }
    sf__udpguard_free(g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(named_unix_sources_pass_without_budget),
        cmocka_unit_test(unnamed_unix_source_is_dropped),
        cmocka_unit_test(broadcast_refused_by_every_loop_while_reread),
    };

    return cmocka_run_group_tests_name("udpguard", tests, NULL, NULL);
}
