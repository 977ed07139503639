/* test_scan: the port-list parser and the scan engine against listeners on loopback. */
#include "unit.h"

static void
parse_lists_and_ranges(void **state)
{
    uint16_t *p;
    sf_err err;

    (void)state;
    assert_int_equal(sf_scan_parse_ports("22", &p, &err), 1);
    assert_int_equal(p[0], 22);
    free(p);
    /* in the order given, each port once */
    assert_int_equal(sf_scan_parse_ports("80,20-23,21,65535", &p, &err), 6);
    assert_int_equal(p[0], 80);
    assert_int_equal(p[1], 20);
    assert_int_equal(p[4], 23);
    assert_int_equal(p[5], 65535);
    free(p);
    assert_int_equal(sf_scan_parse_ports("1-65535", &p, &err), 65535);
    assert_int_equal(p[65534], 65535);
    free(p);
}

static void
parse_refuses(void **state)
{
    static const char *const bad[][2] = {
        { "0", "ports 0: not a port from 1 to 65535 or a range of them" },
        { "65536", "ports 65536: not a port from 1 to 65535 or a range of them" },
        { "25-20", "ports 25-20: the range runs backwards" },
        { "22,", "ports '': not a port or a range LOW-HIGH" },
        { "1-2-3", "ports 1-2-3: not a port from 1 to 65535 or a range of them" },
        { "-5", "ports -5: not a port from 1 to 65535 or a range of them" },
        { "", "ports: none given" },
    };
    uint16_t *p = NULL;
    sf_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sf_scan_parse_ports(bad[i][0], &p, &err), SF_EUSAGE);
        assert_string_equal(err.msg, bad[i][1]);
    }
    assert_null(p);
}

/* Three listeners among closed ports, TCP, with fewer probes in flight than ports: each
 * found exactly, in the order given, no descriptor left behind. */
static void
tcp_open_among_closed(void **state)
{
    int lfd[3], port[3], before = unit_count_fds();
    uint16_t ports[6];
    sf_scan_result res[6];
    sf_scan_opts o = { .ports = ports, .nports = 6, .parallel = 2 };
    sf_err err;

    (void)state;
    for (int i = 0; i < 3; i++) {
        lfd[i] = unit_tcp_listener(AF_INET, 0, &port[i]);
        ports[2 * i] = (uint16_t)port[i];
        ports[2 * i + 1] = (uint16_t)unit_closed_port(AF_INET, SOCK_STREAM);
    }
    o.host = unit_loopback(AF_INET, 0);
    assert_int_equal(sf_scan(&o, res, &err), 3);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(res[i].port, ports[i]);
        assert_int_equal(res[i].state, i % 2 ? SF_PORT_CLOSED : SF_PORT_OPEN);
        assert_int_equal(res[i].err, i % 2 ? ECONNREFUSED : 0);
    }
    for (int i = 0; i < 3; i++)
        close(lfd[i]);
    assert_int_equal(unit_count_fds(), before);
}

/* UDP: a reply is open, an ICMP refusal closed, silence open|filtered after the timeout. */
static void
udp_states(void **state)
{
    int qport, quiet = unit_udp_socket(AF_INET, &qport);
    int closed = unit_closed_port(AF_INET, SOCK_DGRAM);
    uint16_t ports[2] = { (uint16_t)closed, (uint16_t)qport };
    sf_scan_result res[2];
    sf_scan_opts o = { .udp = 1, .ports = ports, .nports = 2, .timeout_ms = 200 };
    uint64_t t0 = unit_now_ms();
    sf_err err;

    (void)state;
    o.host = unit_loopback(AF_INET, 0);
    assert_int_equal(sf_scan(&o, res, &err), 0);
    assert_int_equal(res[0].state, SF_PORT_CLOSED);
    assert_int_equal(res[1].state, SF_PORT_OPEN_FILTERED);
    assert_int_equal(res[1].err, ETIMEDOUT);
    assert_true(res[1].us >= 190000);
    assert_true(unit_now_ms() - t0 < 3000);
    assert_string_equal(sf_port_state_name(res[1].state), "open|filtered");
    close(quiet);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_lists_and_ranges),
        cmocka_unit_test(parse_refuses),
        cmocka_unit_test(tcp_open_among_closed),
        cmocka_unit_test(udp_states),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
