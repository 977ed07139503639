/* test_svc: the services' fixed bytes (chargen ring, daytime line, time value, chat's
 * rendering of terminal controls) and the UDP guard (token bucket, source filter, bounded
 * table of sources). Self-contained. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "sockflow/svc.h"
#include "lib/udpguard.h"

/* ---- chargen ---- */

static void
chargen_line_zero_starts_with_space(void **st)
{
    char line[SF_CHARGEN_LINE];

    (void)st;
    sf_chargen_line(0, line);
    for (int k = 0; k < 72; k++)
        assert_int_equal(line[k], 0x20 + k);
    assert_memory_equal(line + 72, "\r\n", 2);
}

static void
chargen_ring_offsets_and_wrap(void **st)
{
    char line[SF_CHARGEN_LINE], again[SF_CHARGEN_LINE];

    (void)st;
    for (unsigned i = 0; i < 300; i++) {
        sf_chargen_line(i, line);
        for (int k = 0; k < 72; k++) {
            assert_true(line[k] >= 0x20 && line[k] <= 0x7e);
            assert_int_equal(line[k], 0x20 + (int)((i + (unsigned)k) % 95));
        }
        assert_memory_equal(line + 72, "\r\n", 2);
        sf_chargen_line(i + SF_CHARGEN_RING, again);
        assert_memory_equal(line, again, SF_CHARGEN_LINE);
    }
    sf_chargen_line(30, line);      /* 30 + 64 = 94: '~' then the ring starts over */
    assert_int_equal(line[64], '~');
    assert_int_equal(line[65], ' ');
    sf_chargen_line(UINT32_MAX, line);
    assert_int_equal(line[0], 0x20 + (int)(UINT32_MAX % 95));
}

/* ---- chat: terminal controls shown, not obeyed ---- */

/* Render in (a C string literal, so no NUL inside) and compare with want. */
static void
renders_as(const char *in, const char *want)
{
    char out[SF_CHAT_RENDER_MAX(64)];
    size_t n = strlen(in), got;

    assert_true(n <= 64);
    got = sf_chat_render(out, in, n);
    assert_true(got <= SF_CHAT_RENDER_MAX(n));
    if (got != strlen(want) || memcmp(out, want, got) != 0)
        fail_msg("render \"%s\": got \"%.*s\", want \"%s\"", in, (int)got, out, want);
}

static void
chat_render_forged_line_and_escapes(void **st)
{
    (void)st;
    renders_as("hi \x1b[2K\r<user9> forged", "hi ^[[2K^M<user9> forged");
    renders_as("\x1b]0;title\x07", "^[]0;title^G");
    renders_as("\x1b[2J\x08\x7f", "^[[2J^H^?");
    renders_as("a\tb", "a\tb");                  /* TAB is layout, not control */
    renders_as("plain text ~!@#", "plain text ~!@#");
}

static void
chat_render_every_c0_byte_and_del(void **st)
{
    char out[2];

    (void)st;
    for (int b = 0; b < 0x80; b++) {
        char in = (char)b;
        size_t n = sf_chat_render(out, &in, 1);

        if (b == '\t' || (b >= 0x20 && b < 0x7f)) {
            assert_int_equal(n, 1);
            assert_int_equal(out[0], b);
        } else {
            assert_int_equal(n, 2);
            assert_int_equal(out[0], '^');
            assert_int_equal(out[1], b == 0x7f ? '?' : b + 0x40);
        }
    }
}

static void
chat_render_c1_and_utf8(void **st)
{
    (void)st;
    renders_as("\xc2\x9b" "31m", "\\u009b31m");          /* CSI as UTF-8 */
    renders_as("\xc2\x80\xc2\x9f\xc2\xa0", "\\u0080\\u009f\xc2\xa0");
    renders_as("\x9b" "2J", "\\x9b2J");                   /* CSI as one byte */
    renders_as("\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf", "\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
    renders_as("caf\xe9 \xff", "caf\xe9 \xff");          /* Latin-1: no control */
    /* Not UTF-8, so each byte alone: an overlong ESC, a surrogate, past U+10FFFF, cut. */
    renders_as("\xc0\x9b", "\xc0\\x9b");
    renders_as("\xed\xa0\x80", "\xed\xa0\\x80");
    renders_as("\xf4\x90\x80\x80", "\xf4\\x90\\x80\\x80");
    renders_as("\xe2\x82", "\xe2\\x82");
}

static void
chat_render_worst_case_is_four_bytes_each(void **st)
{
    char in[SF_CHAT_LINE_MAX], out[SF_CHAT_RENDER_MAX(SF_CHAT_LINE_MAX)];

    (void)st;
    memset(in, 0x9b, sizeof(in));
    assert_int_equal(sf_chat_render(out, in, sizeof(in)), sizeof(out));
    assert_memory_equal(out + sizeof(out) - 4, "\\x9b", 4);
}

/* ---- daytime and time ---- */

static void
daytime_is_ctime_with_crlf(void **st)
{
    char line[SF_DAYTIME_LINE];

    (void)st;
    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(sf_daytime_line(0, line), SF_DAYTIME_LINE);
    assert_memory_equal(line, "Thu Jan  1 00:00:00 1970\r\n", SF_DAYTIME_LINE);
    assert_int_equal(sf_daytime_line(1795474698, line), SF_DAYTIME_LINE);
    assert_memory_equal(line, "Mon Nov 23 22:58:18 2026\r\n", SF_DAYTIME_LINE);
    assert_int_equal(sf_daytime_line(1796454489, line), SF_DAYTIME_LINE);
    assert_memory_equal(line, "Sat Dec  5 07:08:09 2026\r\n", SF_DAYTIME_LINE);
}

static void
time_is_seconds_since_1900_big_endian(void **st)
{
    unsigned char v[4];

    (void)st;
    sf_time_value(0, v);            /* 2208988800 = 0x83AA7E80 */
    assert_memory_equal(v, "\x83\xaa\x7e\x80", 4);
    sf_time_value(2085978496, v);   /* 2036-02-07 06:28:16: 32 bits wrap to 0 */
    assert_memory_equal(v, "\0\0\0\0", 4);
}

/* ---- token bucket ---- */

static void
bucket_starts_full_and_empties(void **st)
{
    sf_bucket b;

    (void)st;
    sf__bucket_init(&b, 1000, 10);
    assert_int_equal(sf__bucket_refill(&b, 1000, 20, 10), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sf__bucket_take(&b), 1);
    assert_int_equal(sf__bucket_take(&b), 0);
    assert_int_equal(sf__bucket_refill(&b, 1000, 20, 10), 0);
}

static void
bucket_refills_at_rate_up_to_burst(void **st)
{
    sf_bucket b;

    (void)st;
    sf__bucket_init(&b, 0, 10);
    while (sf__bucket_take(&b))
        ;
    assert_int_equal(sf__bucket_refill(&b, 49, 20, 10), 0);    /* 0.98 of a token */
    assert_int_equal(sf__bucket_refill(&b, 50, 20, 10), 1);
    assert_int_equal(sf__bucket_refill(&b, 150, 20, 10), 3);
    assert_int_equal(sf__bucket_refill(&b, 100000, 20, 10), 10);  /* never past burst */
    assert_int_equal(sf__bucket_refill(&b, 50, 20, 10), 10);      /* time going back */
    sf__bucket_init(&b, 0, 4000000);
    assert_int_equal(sf__bucket_refill(&b, UINT64_MAX / 2, 100000000, 4000000), 4000000);
}

/* ---- the guard ---- */

static struct sockaddr_in
v4(const char *ip, int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static struct sockaddr_in6
v6(const char *ip, int port)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };

    inet_pton(AF_INET6, ip, &a.sin6_addr);
    return a;
}

static int
check4(sf_udpguard *g, const char *ip, int port, uint64_t now)
{
    struct sockaddr_in a = v4(ip, port);

    return sf__udpguard_check(g, (struct sockaddr *)&a, sizeof(a), NULL, 0, now);
}

static int
check6(sf_udpguard *g, const char *ip, int port, uint64_t now)
{
    struct sockaddr_in6 a = v6(ip, port);

    return sf__udpguard_check(g, (struct sockaddr *)&a, sizeof(a), NULL, 0, now);
}

static void
guard_refuses_loop_ports(void **st)
{
    sf_udpguard *g = sf__udpguard_new(1, 100, 100, 64, 0);
    int classic[] = { 7, 9, 13, 19, 37, 0 };

    (void)st;
    assert_non_null(g);
    for (size_t i = 0; i < sizeof(classic) / sizeof(classic[0]); i++) {
        assert_int_equal(check4(g, "127.0.0.1", classic[i], 0), SF_UDP_DROP_LOOP);
        assert_int_equal(check6(g, "::1", classic[i], 0), SF_UDP_DROP_LOOP);
    }
    assert_true(check4(g, "127.0.0.1", 500, 0) >= 0);          /* low ports allowed */
    sf__udpguard_add_port(g, 40000);
    assert_int_equal(check4(g, "127.0.0.1", 40000, 0), SF_UDP_DROP_LOOP);
    sf__udpguard_free(g);
}

static void
guard_refuses_low_ports_by_default(void **st)
{
    sf_udpguard *g = sf__udpguard_new(0, 100, 100, 64, 0);

    (void)st;
    assert_int_equal(check4(g, "127.0.0.1", 1, 0), SF_UDP_DROP_LOW_PORT);
    assert_int_equal(check4(g, "127.0.0.1", 1023, 0), SF_UDP_DROP_LOW_PORT);
    assert_int_equal(check4(g, "127.0.0.1", 19, 0), SF_UDP_DROP_LOOP);
    assert_true(check4(g, "127.0.0.1", 1024, 0) >= 0);
    sf__udpguard_free(g);
}

static void
guard_refuses_bad_sources(void **st)
{
    sf_udpguard *g = sf__udpguard_new(0, 100, 100, 64, 0);
    const char *bad4[] = { "0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.1",
                           "239.255.255.250", "240.0.0.1" };
    const char *bad6[] = { "::", "ff02::1", "ff05::2", "::ffff:224.0.0.1",
                           "::ffff:255.255.255.255", "::ffff:0.0.0.0" };
    struct sockaddr_in from = v4("127.0.0.1", 5000), to = v4("255.255.255.255", 7);

    (void)st;
    for (size_t i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++)
        assert_int_equal(check4(g, bad4[i], 5000, 0), SF_UDP_DROP_SOURCE);
    for (size_t i = 0; i < sizeof(bad6) / sizeof(bad6[0]); i++)
        assert_int_equal(check6(g, bad6[i], 5000, 0), SF_UDP_DROP_SOURCE);
    /* loopback passes: the tool tests itself there */
    assert_true(check4(g, "127.0.0.1", 5000, 0) >= 0);
    assert_true(check4(g, "127.255.0.9", 5000, 0) >= 0);
    assert_true(check6(g, "::1", 5000, 0) >= 0);
    assert_true(check6(g, "::ffff:127.0.0.1", 5000, 0) >= 0);
    assert_true(check4(g, "192.0.2.1", 5000, 0) >= 0);
    /* sent to a broadcast or multicast address: no reply either (fraggle) */
    assert_int_equal(sf__udpguard_check(g, (struct sockaddr *)&from, sizeof(from),
                                        (struct sockaddr *)&to, sizeof(to), 0),
                     SF_UDP_DROP_SOURCE);
    to = v4("224.0.0.251", 7);
    assert_int_equal(sf__udpguard_check(g, (struct sockaddr *)&from, sizeof(from),
                                        (struct sockaddr *)&to, sizeof(to), 0),
                     SF_UDP_DROP_SOURCE);
    sf__udpguard_free(g);
}

static void
guard_budget_per_source(void **st)
{
    sf_udpguard *g = sf__udpguard_new(0, 10, 3, 64, 0);
    int t;

    (void)st;
    for (int i = 0; i < 3; i++) {
        t = check4(g, "10.0.0.1", 5000 + i, 0);   /* any port: the budget is the host's */
        assert_true(t >= 0);
        sf__udpguard_spend(g, t);
    }
    assert_int_equal(check4(g, "10.0.0.1", 5000, 0), SF_UDP_DROP_RATE);
    /* another source is served in full */
    for (int i = 0; i < 3; i++) {
        t = check4(g, "10.0.0.2", 5000, 0);
        assert_true(t >= 0);
        sf__udpguard_spend(g, t);
    }
    /* checking without a reply spends nothing */
    for (int i = 0; i < 10; i++)
        assert_true(check4(g, "10.0.0.3", 5000, 0) >= 0);
    /* 100 ms at 10 a second: one more */
    t = check4(g, "10.0.0.1", 5000, 100);
    assert_true(t >= 0);
    sf__udpguard_spend(g, t);
    assert_int_equal(check4(g, "10.0.0.1", 5000, 100), SF_UDP_DROP_RATE);
    /* IPv6: a /64 is one source */
    for (int i = 0; i < 3; i++) {
        t = check6(g, i & 1 ? "2001:db8::1" : "2001:db8::ffff:2", 5000, 0);
        assert_true(t >= 0);
        sf__udpguard_spend(g, t);
    }
    assert_int_equal(check6(g, "2001:db8::77", 5000, 0), SF_UDP_DROP_RATE);
    assert_true(check6(g, "2001:db8:0:1::1", 5000, 0) >= 0);
    sf__udpguard_free(g);
}

static void
guard_table_stays_bounded(void **st)
{
    sf_udpguard *g = sf__udpguard_new(0, 1, 1, 8, 0);
    char ip[32];
    int t;

    (void)st;
    /* Many more sources than slots: each new one still gets its burst (an old one is
     * forgotten), nothing grows. */
    for (int i = 0; i < 5000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        t = check4(g, ip, 5000, (uint64_t)i);
        assert_true(t >= 0 && t < 8);
        sf__udpguard_spend(g, t);
    }
    sf__udpguard_free(g);
}

static void
guard_without_limit(void **st)
{
    sf_udpguard *g = sf__udpguard_new(0, 0, 1, 8, 0);

    (void)st;
    for (int i = 0; i < 1000; i++) {
        int t = check4(g, "10.0.0.1", 5000, 0);

        assert_true(t >= 0);
        sf__udpguard_spend(g, t);
    }
    assert_int_equal(check4(g, "10.0.0.1", 19, 0), SF_UDP_DROP_LOOP);
    sf__udpguard_free(g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chargen_line_zero_starts_with_space),
        cmocka_unit_test(chargen_ring_offsets_and_wrap),
        cmocka_unit_test(chat_render_forged_line_and_escapes),
        cmocka_unit_test(chat_render_every_c0_byte_and_del),
        cmocka_unit_test(chat_render_c1_and_utf8),
        cmocka_unit_test(chat_render_worst_case_is_four_bytes_each),
        cmocka_unit_test(daytime_is_ctime_with_crlf),
        cmocka_unit_test(time_is_seconds_since_1900_big_endian),
        cmocka_unit_test(bucket_starts_full_and_empties),
        cmocka_unit_test(bucket_refills_at_rate_up_to_burst),
        cmocka_unit_test(guard_refuses_loop_ports),
        cmocka_unit_test(guard_refuses_low_ports_by_default),
        cmocka_unit_test(guard_refuses_bad_sources),
        cmocka_unit_test(guard_budget_per_source),
        cmocka_unit_test(guard_table_stays_bounded),
        cmocka_unit_test(guard_without_limit),
    };

    return cmocka_run_group_tests_name("svc", tests, NULL, NULL);
}
