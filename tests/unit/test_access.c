/* test_access: allow/deny prefix rules (IPv4, IPv6, mapped), rule files, the
 * per-source cap and the once-a-second report. */
#include <arpa/inet.h>
#include <sys/un.h>

#include "unit.h"
#include "sockflow/access.h"

static sf_addr
ip(const char *text)
{
    sf_addr_list l;
    sf_err err;

    if (sf_addr_resolve(text, "1", SF_ADDR_NUMERIC, &l, &err) < 0)
        fail_msg("%s", err.msg);
    return l.a[0];
}

static void
no_rules_allow_all(void **state)
{
    sf_access *a = sf_access_new(NULL);
    sf_addr p = ip("192.0.2.1");

    (void)state;
    assert_false(sf_access_active(a));
    assert_true(sf_access_allowed(a, &p));
    assert_int_equal(sf_access_admit(a, &p), SF_ACCESS_OK);
    sf_access_free(a);
}

static void
prefixes_v4(void **state)
{
    sf_access *a = sf_access_new(NULL);
    sf_addr in = ip("127.0.0.2"), edge = ip("127.0.0.3"), out = ip("127.0.0.4");
    sf_addr other = ip("10.0.0.1");
    sf_err err;

    (void)state;
    assert_int_equal(sf_access_add(a, 1, "127.0.0.2/31", &err), 0);
    assert_true(sf_access_active(a));
    assert_true(sf_access_allowed(a, &in));
    assert_true(sf_access_allowed(a, &edge));
    assert_false(sf_access_allowed(a, &out));
    assert_false(sf_access_allowed(a, &other));
    /* deny wins over a matching allow */
    assert_int_equal(sf_access_add(a, 0, "127.0.0.3", &err), 0);
    assert_false(sf_access_allowed(a, &edge));
    assert_true(sf_access_allowed(a, &in));
    assert_int_equal(sf_access_admit(a, &edge), SF_ACCESS_DENIED);
    sf_access_free(a);
}

static void
prefixes_v6_and_mapped(void **state)
{
    sf_access *a = sf_access_new(NULL);
    sf_addr v6in = ip("2001:db8::5"), v6out = ip("2001:db9::5"), lo6 = ip("::1");
    sf_addr mapped = ip("::ffff:127.0.0.9"), v4 = ip("127.0.0.9");
    sf_err err;

    (void)state;
    assert_int_equal(sf_access_add(a, 0, "2001:db8::/32", &err), 0);
    assert_int_equal(sf_access_add(a, 0, "127.0.0.8/29", &err), 0);
    assert_false(sf_access_allowed(a, &v6in));
    assert_true(sf_access_allowed(a, &v6out));
    assert_true(sf_access_allowed(a, &lo6));
    assert_false(sf_access_allowed(a, &v4));
    /* an IPv4 client on a dual-stack socket is matched by the IPv4 rule */
    assert_false(sf_access_allowed(a, &mapped));
    /* /0 matches the whole family and nothing of the other */
    assert_int_equal(sf_access_add(a, 1, "::/0", &err), 0);
    assert_true(sf_access_allowed(a, &lo6));
    assert_false(sf_access_allowed(a, &v6in));
    assert_false(sf_access_allowed(a, &(sf_addr){ ip("10.1.1.1").ss, ip("10.1.1.1").len }));
    sf_access_free(a);
}

static void
unix_peers_pass(void **state)
{
    sf_access *a = sf_access_new(NULL);
    sf_addr u;
    sf_err err;

    (void)state;
    assert_int_equal(sf_addr_parse_unix("unix:/tmp/x", &u, &err), 0);
    assert_int_equal(sf_access_add(a, 1, "10.0.0.0/8", &err), 0);
    assert_true(sf_access_allowed(a, &u));
    sf_access_free(a);
}

static void
bad_rules(void **state)
{
    sf_access *a = sf_access_new(NULL);
    sf_err err;

    (void)state;
    assert_int_equal(sf_access_add(a, 1, "10.0.0.0/33", &err), SF_EADDR);
    assert_string_equal(err.msg, "--allow 10.0.0.0/33: prefix longer than 32");
    assert_int_equal(sf_access_add(a, 0, "::1/129", &err), SF_EADDR);
    assert_int_equal(sf_access_add(a, 0, "example.org", &err), SF_EADDR);
    assert_non_null(strstr(err.msg, "not a numeric IPv4 or IPv6 address"));
    assert_int_equal(sf_access_add(a, 0, "10.0.0.1/x", &err), SF_EADDR);
    assert_int_equal(sf_access_add(a, 0, "", &err), SF_EADDR);
    assert_false(sf_access_active(a));
    sf_access_free(a);
}

static void
rule_file(void **state)
{
    char path[] = "/tmp/sockflow-access-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "# trusted\n\n  127.0.0.5  # one host\n::1/128\n127.0.1.0/24\n";
    sf_access *a = sf_access_new(NULL);
    sf_addr five = ip("127.0.0.5"), six = ip("127.0.0.6"), net = ip("127.0.1.77");
    sf_err err;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(sf_access_add_file(a, 1, path, &err), 3);
    assert_true(sf_access_allowed(a, &five));
    assert_false(sf_access_allowed(a, &six));
    assert_true(sf_access_allowed(a, &net));
    fd = open(path, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "bogus\n", 6), 6);
    close(fd);
    assert_true(sf_access_add_file(a, 1, path, &err) < 0);
    assert_non_null(strstr(err.msg, "line 6"));
    unlink(path);
    assert_int_equal(sf_access_add_file(a, 0, path, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "--denyfile /tmp/sockflow-access-"));
    sf_access_free(a);
}

static void
per_source_cap(void **state)
{
    sf_access *a = sf_access_new(NULL);
    sf_addr one = ip("127.0.0.2"), two = ip("127.0.0.3");
    sf_addr mapped = ip("::ffff:127.0.0.2");
    uint64_t denied, busy;

    (void)state;
    sf_access_set_max_per_source(a, 2);
    assert_true(sf_access_active(a));
    assert_int_equal(sf_access_admit(a, &one), SF_ACCESS_OK);
    assert_int_equal(sf_access_admit(a, &mapped), SF_ACCESS_OK);    /* the same source */
    assert_int_equal(sf_access_admit(a, &one), SF_ACCESS_BUSY);
    assert_int_equal(sf_access_admit(a, &two), SF_ACCESS_OK);       /* others unaffected */
    sf_access_release(a, &one);
    assert_int_equal(sf_access_admit(a, &one), SF_ACCESS_OK);
    assert_int_equal(sf_access_admit(a, &one), SF_ACCESS_BUSY);
    sf_access_totals(a, &denied, &busy);
    assert_int_equal(busy, 2);
    assert_int_equal(denied, 0);
    /* the report: once, then not again within the interval, then with the new ones */
    assert_int_equal(sf_access_take_report(a, 5000, 1000, &denied, &busy), 1);
    assert_int_equal(busy, 2);
    assert_int_equal(sf_access_admit(a, &one), SF_ACCESS_BUSY);
    assert_int_equal(sf_access_take_report(a, 5500, 1000, &denied, &busy), 0);
    assert_int_equal(sf_access_take_report(a, 6000, 1000, &denied, &busy), 1);
    assert_int_equal(busy, 1);
    assert_int_equal(sf_access_take_report(a, 9000, 1000, &denied, &busy), 0);
    for (int i = 0; i < 3; i++)
        sf_access_release(a, &one);
    sf_access_release(a, &two);
    sf_access_free(a);      /* no leak under ASan: every entry freed with its last slot */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_rules_allow_all),
        cmocka_unit_test(prefixes_v4),
        cmocka_unit_test(prefixes_v6_and_mapped),
        cmocka_unit_test(unix_peers_pass),
        cmocka_unit_test(bad_rules),
        cmocka_unit_test(rule_file),
        cmocka_unit_test(per_source_cap),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
