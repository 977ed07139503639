/* test_addr: splitting "host:port" forms, ports, resolving and formatting back. */
#include <arpa/inet.h>
#include <sys/un.h>

#include "unit.h"

typedef struct split_case {
    const char *text, *host, *port;
} split_case;

static void
split_forms(void **state)
{
    static const split_case cases[] = {
        { "127.0.0.1:7", "127.0.0.1", "7" },
        { "[::1]:7", "::1", "7" },
        { "[::1]", "::1", "" },
        { "[fe80::1%lo]:80", "fe80::1%lo", "80" },
        { ":80", "", "80" },
        { "localhost", "localhost", "" },
        { "example.org:http", "example.org", "http" },
        { "::1", "::1", "" },
        { "fe80::1:2", "fe80::1:2", "" },
        { "host:", "host", "" },
        { "[::1]:", "::1", "" },
        { "", "", "" },
    };
    char host[64], port[16];
    sf_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        strcpy(host, "junk");
        strcpy(port, "junk");
        assert_int_equal(sf_addr_split(cases[i].text, host, sizeof(host), port,
                                       sizeof(port), &err), 0);
        assert_string_equal(host, cases[i].host);
        assert_string_equal(port, cases[i].port);
    }
}

static void
split_errors(void **state)
{
    char host[8], port[4];
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_split("[::1:7", host, sizeof(host), port, sizeof(port), &err),
                     SF_EADDR);
    assert_string_equal(err.msg, "address [::1:7: missing ']'");
    assert_int_equal(sf_addr_split("[::1]x7", host, sizeof(host), port, sizeof(port), &err),
                     SF_EADDR);
    assert_string_equal(err.msg, "address [::1]x7: expected ':' after ']'");
    assert_int_equal(sf_addr_split("averylonghost:7", host, sizeof(host), port, sizeof(port),
                                   &err), SF_EADDR);
    assert_string_equal(err.msg, "address averylonghost:7: too long");
    assert_int_equal(sf_addr_split("h:12345", host, sizeof(host), port, sizeof(port), &err),
                     SF_EADDR);
    assert_int_equal(sf_addr_split("averylonghost", host, sizeof(host), port, sizeof(port),
                                   &err), SF_EADDR);
    assert_string_equal(err.msg, "address averylonghost: host too long");
    assert_int_equal(sf_addr_split("[::1]:12345", host, sizeof(host), port, sizeof(port),
                                   &err), SF_EADDR);
    assert_string_equal(err.msg, "address [::1]:12345: port too long");
    assert_int_equal(sf_addr_split(NULL, host, sizeof(host), port, sizeof(port), &err),
                     SF_EADDR);
    assert_int_equal(err.code, SF_EADDR);
}

static void
parse_port_range(void **state)
{
    static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "65536", "0x10", "7a",
                                       "99999999999999999999", "http" };
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_parse_port("0", &err), 0);
    assert_int_equal(sf_addr_parse_port("7", &err), 7);
    assert_int_equal(sf_addr_parse_port("007", &err), 7);
    assert_int_equal(sf_addr_parse_port("65535", &err), 65535);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char want[64];

        err.code = 0;
        assert_int_equal(sf_addr_parse_port(bad[i], &err), SF_EADDR);
        assert_int_equal(err.code, SF_EADDR);
        snprintf(want, sizeof(want), "port %s: not a number from 0 to 65535", bad[i]);
        assert_string_equal(err.msg, want);
    }
    assert_int_equal(sf_addr_parse_port(NULL, &err), SF_EADDR);
    assert_string_equal(err.msg, "port (none): not a number from 0 to 65535");
}

static void
resolve_numeric(void **state)
{
    char buf[SF_ADDR_STRLEN];
    sf_addr_list l;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_resolve("127.0.0.1", "7", SF_ADDR_NUMERIC, &l, &err), 1);
    assert_int_equal(l.n, 1);
    assert_int_equal(sf_addr_family(&l.a[0]), AF_INET);
    assert_int_equal(sf_addr_port(&l.a[0]), 7);
    assert_int_equal(l.a[0].len, sizeof(struct sockaddr_in));
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "127.0.0.1:7");

    assert_int_equal(sf_addr_resolve("::1", "65535", SF_ADDR_DGRAM, &l, &err), 1);
    assert_int_equal(sf_addr_family(&l.a[0]), AF_INET6);
    assert_int_equal(l.a[0].len, sizeof(struct sockaddr_in6));
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "[::1]:65535");
}

/* No host: loopback for a client, the wildcard with SF_ADDR_PASSIVE. */
static void
resolve_empty_host(void **state)
{
    char buf[SF_ADDR_STRLEN];
    int seen4 = 0, seen6 = 0;
    sf_addr_list l;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_resolve(NULL, "80", 0, &l, &err), 2);
    for (int i = 0; i < l.n; i++) {
        sf_addr_format(&l.a[i], buf, sizeof(buf));
        seen4 |= strcmp(buf, "127.0.0.1:80") == 0;
        seen6 |= strcmp(buf, "[::1]:80") == 0;
    }
    assert_true(seen4 && seen6);

    assert_int_equal(sf_addr_resolve("", "80", SF_ADDR_PASSIVE | SF_ADDR_V4ONLY, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "0.0.0.0:80");
    assert_int_equal(sf_addr_resolve(NULL, "80", SF_ADDR_PASSIVE | SF_ADDR_V6ONLY, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "[::]:80");
}

static void
resolve_family_and_service(void **state)
{
    char buf[SF_ADDR_STRLEN];
    sf_addr_list l;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_resolve("localhost", "echo", SF_ADDR_V4ONLY, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "127.0.0.1:7");
    assert_int_equal(sf_addr_resolve("127.0.0.1", "80", SF_ADDR_V6ONLY | SF_ADDR_NUMERIC,
                                     &l, &err), SF_EADDR);
    assert_true(strncmp(err.msg, "resolve 127.0.0.1:80: ", 22) == 0);
}

static void
resolve_errors(void **state)
{
    sf_addr_list l;
    sf_err err;

    (void)state;
    l.n = 99;
    assert_int_equal(sf_addr_resolve("nosuch.invalid", "80", 0, &l, &err), SF_EADDR);
    assert_int_equal(err.code, SF_EADDR);
    assert_true(strncmp(err.msg, "resolve nosuch.invalid:80: ", 27) == 0);
    assert_true(strlen(err.msg) > 27);
    assert_int_equal(l.n, 99);

    assert_int_equal(sf_addr_resolve("localhost", "80", SF_ADDR_NUMERIC, &l, &err), SF_EADDR);
    assert_string_equal(err.msg, "resolve localhost:80: Name or service not known");

    assert_int_equal(sf_addr_resolve("::1", "80", SF_ADDR_V4ONLY | SF_ADDR_NUMERIC, &l, &err),
                     SF_EADDR);
    assert_true(strncmp(err.msg, "resolve [::1]:80: ", 18) == 0);

    assert_int_equal(sf_addr_resolve("127.0.0.1", "70000", 0, &l, &err), SF_EADDR);
    assert_string_equal(err.msg, "port 70000: not a number from 0 to 65535");
    assert_int_equal(sf_addr_resolve("127.0.0.1", "", 0, &l, &err), SF_EADDR);
    assert_string_equal(err.msg, "address 127.0.0.1: missing port");
    assert_int_equal(sf_addr_resolve("127.0.0.1", NULL, 0, &l, &err), SF_EADDR);
    assert_string_equal(err.msg, "address 127.0.0.1: missing port");
    assert_int_equal(sf_addr_resolve("127.0.0.1", "nosuchservice", 0, &l, &err), SF_EADDR);
    assert_true(strncmp(err.msg, "resolve 127.0.0.1:nosuchservice: ", 33) == 0);
}

static void
resolve_text_forms(void **state)
{
    char buf[SF_ADDR_STRLEN];
    sf_addr_list l;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_resolve_text("[::1]:7", NULL, 0, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "[::1]:7");
    assert_int_equal(sf_addr_resolve_text("127.0.0.1", "9", 0, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "127.0.0.1:9");
    assert_int_equal(sf_addr_resolve_text("127.0.0.1:13", "9", 0, &l, &err), 1);
    assert_int_equal(sf_addr_port(&l.a[0]), 13);
    assert_int_equal(sf_addr_resolve_text(":80", NULL, SF_ADDR_PASSIVE | SF_ADDR_V4ONLY,
                                          &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "0.0.0.0:80");

    assert_int_equal(sf_addr_resolve_text("127.0.0.1", NULL, 0, &l, &err), SF_EADDR);
    assert_string_equal(err.msg, "address 127.0.0.1: missing port");
    assert_int_equal(sf_addr_resolve_text("[::1", "7", 0, &l, &err), SF_EADDR);
    assert_string_equal(err.msg, "address [::1: missing ']'");
}

static void
format_forms(void **state)
{
    struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(80),
                                .sin6_scope_id = 2 };
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(65535) };
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    char buf[SF_ADDR_STRLEN], small[8];
    sf_addr a;

    (void)state;
    inet_pton(AF_INET6, "fe80::1", &in6.sin6_addr);
    assert_string_equal(sf_addr_format_sa((struct sockaddr *)&in6, sizeof(in6), buf,
                                          sizeof(buf)), "[fe80::1%2]:80");
    inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
    assert_string_equal(sf_addr_format_sa((struct sockaddr *)&in, sizeof(in), buf,
                                          sizeof(buf)), "10.1.2.3:65535");
    /* AF_UNIX has a text form now (unix_forms); a family without one is still named */
    strcpy(un.sun_path, "/run/x");
    assert_string_equal(sf_addr_format_sa((struct sockaddr *)&un, sizeof(un), buf,
                                          sizeof(buf)), "unix:/run/x");
    un.sun_family = AF_PACKET;
    assert_string_equal(sf_addr_format_sa((struct sockaddr *)&un, sizeof(un), buf,
                                          sizeof(buf)), "(family 17)");
    /* The longest form fits SF_ADDR_STRLEN. */
    memset(&in6.sin6_addr, 0xff, sizeof(in6.sin6_addr));
    in6.sin6_scope_id = 4294967295u;
    assert_string_equal(sf_addr_format_sa((struct sockaddr *)&in6, sizeof(in6), buf,
                                          sizeof(buf)),
                        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:80");
    /* A short buffer is cut and terminated. */
    sf_addr_loopback(&a, AF_INET, 7);
    assert_ptr_equal(sf_addr_format(&a, small, sizeof(small)), small);
    assert_string_equal(small, "127.0.0");
}

static void
loopback_port_family(void **state)
{
    char buf[SF_ADDR_STRLEN];
    struct sockaddr_un un = { .sun_family = AF_UNIX, .sun_path = "x" };
    sf_addr a;

    (void)state;
    sf_addr_loopback(&a, AF_INET, 7);
    assert_int_equal(sf_addr_family(&a), AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_string_equal(sf_addr_format(&a, buf, sizeof(buf)), "127.0.0.1:7");
    sf_addr_set_port(&a, 65535);
    assert_int_equal(sf_addr_port(&a), 65535);
    assert_string_equal(sf_addr_format(&a, buf, sizeof(buf)), "127.0.0.1:65535");

    sf_addr_loopback(&a, AF_INET6, 7);
    assert_int_equal(sf_addr_family(&a), AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_string_equal(sf_addr_format(&a, buf, sizeof(buf)), "[::1]:7");
    sf_addr_set_port(&a, 0);
    assert_int_equal(sf_addr_port(&a), 0);

    /* Not an IP family: no port, and setting one changes nothing. */
    sf_addr_from_sa(&a, (struct sockaddr *)&un, sizeof(un));
    assert_int_equal(sf_addr_family(&a), AF_UNIX);
    assert_int_equal(sf_addr_port(&a), -1);
    sf_addr_set_port(&a, 7);
    assert_memory_equal(&a.ss, &un, sizeof(un));
}

static void
from_sa_copies_and_clamps(void **state)
{
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(9) };
    char big[sizeof(struct sockaddr_storage) + 32];
    sf_addr a;

    (void)state;
    in.sin_addr.s_addr = htonl(0x7f000002);
    memset(&a, 0xaa, sizeof(a));
    sf_addr_from_sa(&a, (struct sockaddr *)&in, sizeof(in));
    assert_int_equal(a.len, sizeof(in));
    assert_memory_equal(&a.ss, &in, sizeof(in));
    /* The rest of the storage is zeroed, so two equal addresses compare equal. */
    for (size_t i = sizeof(in); i < sizeof(a.ss); i++)
        assert_int_equal(((unsigned char *)&a.ss)[i], 0);

    memset(big, 0, sizeof(big));
    memcpy(big, &in, sizeof(in));
    sf_addr_from_sa(&a, (struct sockaddr *)big, sizeof(big));
    assert_int_equal(a.len, sizeof(a.ss));
    assert_int_equal(sf_addr_port(&a), 9);
}

static void
unix_forms(void **state)
{
    char buf[SF_ADDR_STRLEN];
    sf_addr_list l;
    sf_addr a;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_parse_unix("unix:/tmp/x.sock", &a, &err), 0);
    assert_int_equal(sf_addr_family(&a), AF_UNIX);
    assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/x.sock") + 1);
    assert_string_equal(sf_addr_unix_path(&a), "/tmp/x.sock");
    assert_string_equal(sf_addr_format(&a, buf, sizeof(buf)), "unix:/tmp/x.sock");
    assert_int_equal(sf_addr_port(&a), -1);

    /* abstract: a NUL first, the length ends the name, no file */
    assert_int_equal(sf_addr_parse_unix("unix:@sockflow-test", &a, &err), 0);
    assert_int_equal(((struct sockaddr_un *)&a.ss)->sun_path[0], '\0');
    assert_int_equal(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("@sockflow-test"));
    assert_null(sf_addr_unix_path(&a));
    assert_string_equal(sf_addr_format(&a, buf, sizeof(buf)), "unix:@sockflow-test");

    /* an unnamed socket (a client's) */
    a.len = sizeof(sa_family_t);
    assert_string_equal(sf_addr_format(&a, buf, sizeof(buf)), "unix:");

    /* every resolver entry point takes the form */
    assert_int_equal(sf_addr_resolve_text("unix:/run/s", NULL, 0, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "unix:/run/s");
    assert_int_equal(sf_addr_resolve("unix:@n", "", 0, &l, &err), 1);
    assert_string_equal(sf_addr_format(&l.a[0], buf, sizeof(buf)), "unix:@n");
    assert_true(sf_addr_is_unix("unix:x"));
    assert_false(sf_addr_is_unix("127.0.0.1:7"));
}

static void
unix_errors(void **state)
{
    char longpath[200];
    sf_addr a;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_parse_unix("unix:", &a, &err), SF_EADDR);
    assert_non_null(strstr(err.msg, "empty path"));
    assert_int_equal(sf_addr_parse_unix("unix:@", &a, &err), SF_EADDR);
    assert_int_equal(sf_addr_parse_unix("/tmp/x", &a, &err), SF_EADDR);
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:/", 6);
    longpath[5 + 108] = '\0';      /* 108 bytes of path: no room for the NUL */
    assert_int_equal(sf_addr_parse_unix(longpath, &a, &err), SF_EADDR);
    assert_non_null(strstr(err.msg, "longer than 107 bytes"));
    longpath[5 + 107] = '\0';
    assert_int_equal(sf_addr_parse_unix(longpath, &a, &err), 0);
}

static void
wildcard(void **state)
{
    sf_addr_list l;
    sf_addr a;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_resolve("0.0.0.0", "1", SF_ADDR_NUMERIC, &l, &err), 1);
    assert_true(sf_addr_is_wildcard(&l.a[0]));
    assert_int_equal(sf_addr_resolve("::", "1", SF_ADDR_NUMERIC, &l, &err), 1);
    assert_true(sf_addr_is_wildcard(&l.a[0]));
    sf_addr_loopback(&a, AF_INET, 1);
    assert_false(sf_addr_is_wildcard(&a));
    sf_addr_loopback(&a, AF_INET6, 1);
    assert_false(sf_addr_is_wildcard(&a));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_forms),
        cmocka_unit_test(split_errors),
        cmocka_unit_test(parse_port_range),
        cmocka_unit_test(resolve_numeric),
        cmocka_unit_test(resolve_empty_host),
        cmocka_unit_test(resolve_family_and_service),
        cmocka_unit_test(resolve_errors),
        cmocka_unit_test(resolve_text_forms),
        cmocka_unit_test(format_forms),
        cmocka_unit_test(loopback_port_family),
        cmocka_unit_test(from_sa_copies_and_clamps),
        cmocka_unit_test(unix_forms),
        cmocka_unit_test(unix_errors),
        cmocka_unit_test(wildcard),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
