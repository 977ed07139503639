/* test_udpguard: the UDP guard's verdict on Unix datagram sources: a named sender
 * (path, abstract, autobound) is answered with no port rule and no budget, an unnamed
 * one never. Self-contained. */
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(named_unix_sources_pass_without_budget),
        cmocka_unit_test(unnamed_unix_source_is_dropped),
    };

    return cmocka_run_group_tests_name("udpguard", tests, NULL, NULL);
}
