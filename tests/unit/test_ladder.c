/* test_ladder: rows in time order, segment labels, the terminal ladder and the SVG/HTML
 * figures drawn from a fixed list of events, compared with golden files. */
#include <sys/stat.h>

#include "unit.h"
#include "sockflow/ladder.h"

#define GOLDEN_DIR "tests/unit/golden/"
#define US 1000u

static sf_ladder_event
call(int side, const char *name, const char *args, uint64_t t0, uint64_t t1, long res, int err)
{
    sf_ladder_event e = { .kind = SF_LADDER_CALL, .side = side, .t_ns = t0, .t_end_ns = t1,
                          .call = name, .args = args, .result = res, .err = err };

    return e;
}

static sf_ladder_event
seg(int side, uint64_t t, unsigned flags, uint32_t seq, uint32_t ack, int has_ack, uint32_t len)
{
    sf_ladder_event e = { .kind = SF_LADDER_SEG, .side = side, .t_ns = t, .t_end_ns = t,
                          .proto = SF_LADDER_TCP, .flags = flags, .seq = seq, .ack = ack,
                          .has_seq = 1, .has_ack = (uint8_t)has_ack, .len = len };

    return e;
}

#define C SF_LADDER_CLIENT
#define S SF_LADDER_SERVER
#define SYN SF_SEG_SYN
#define ACK SF_SEG_ACK
#define PSH SF_SEG_PSH
#define FIN SF_SEG_FIN

/* A TCP exchange as a real run gives it, given out of order on purpose: the server's
 * blocking accept() started before the client's connect() and returned after it. */
static size_t
tcp_flow(sf_ladder_event *ev)
{
    size_t n = 0;

    ev[n++] = seg(C, 120 * US, SYN, 0, 0, 0, 0);
    ev[n++] = call(S, "socket", "AF_INET, SOCK_STREAM", 0, 8 * US, 3, 0);
    ev[n++] = call(S, "bind", "127.0.0.1:5000", 10 * US, 12 * US, 0, 0);
    ev[n++] = call(S, "listen", "backlog=511", 14 * US, 15 * US, 0, 0);
    ev[n++] = call(S, "accept4", NULL, 20 * US, 190 * US, 4, 0);
    ev[n++] = call(C, "socket", "AF_INET, SOCK_STREAM", 60 * US, 62 * US, 3, 0);
    ev[n++] = call(C, "connect", "127.0.0.1:5000", 100 * US, 160 * US, 0, 0);
    ev[n++] = seg(S, 130 * US, SYN | ACK, 0, 1, 1, 0);
    ev[n++] = seg(C, 140 * US, ACK, 1, 1, 1, 0);
    ev[n++] = call(C, "write", "len=5", 200 * US, 230 * US, 5, 0);
    ev[n++] = seg(C, 210 * US, PSH | ACK, 1, 1, 1, 5);
    ev[n++] = seg(S, 220 * US, ACK, 1, 6, 1, 0);
    ev[n++] = call(S, "read", "len=65536", 240 * US, 241 * US, 5, 0);
    ev[n++] = call(S, "read", "len=65536", 250 * US, 250 * US, -1, EAGAIN);
    ev[n++] = call(C, "close", NULL, 300 * US, 320 * US, 0, 0);
    ev[n++] = seg(C, 310 * US, FIN | ACK, 6, 1, 1, 0);
    return n;
}

static size_t
udp_flow(sf_ladder_event *ev)
{
    size_t n = 0;

    ev[n++] = call(S, "socket", "AF_INET, SOCK_DGRAM", 0, 2 * US, 3, 0);
    ev[n++] = call(S, "bind", "127.0.0.1:7000", 3 * US, 4 * US, 0, 0);
    ev[n++] = call(S, "recvfrom", "len=65536", 5 * US, 90 * US, 5, 0);
    ev[n++] = call(C, "socket", "AF_INET, SOCK_DGRAM", 40 * US, 41 * US, 3, 0);
    ev[n++] = call(C, "sendto", "len=5, to=127.0.0.1:7000", 50 * US, 70 * US, 5, 0);
    ev[n] = seg(C, 60 * US, 0, 0, 0, 0, 5);
    ev[n++].proto = SF_LADDER_UDP;
    ev[n++] = call(S, "sendto", "len=5, to=127.0.0.1:40000", 95 * US, 99 * US, 5, 0);
    ev[n] = seg(S, 97 * US, 0, 0, 0, 0, 5);
    ev[n++].proto = SF_LADDER_UDP;
    ev[n++] = call(C, "sendto", "len=3, to=127.0.0.1:9", 120 * US, 121 * US, 3, 0);
    ev[n] = seg(S, 125 * US, 0, 0, 0, 0, 0);
    ev[n++].proto = SF_LADDER_ICMP;
    return n;
}

/* ---- golden files ---- */

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Compare got with the golden file; SOCKFLOW_UPDATE_GOLDEN=1 writes it instead. */
static void
check_golden(const char *name, const char *got, size_t len)
{
    char path[256];
    size_t glen = 0;
    char *want;

    snprintf(path, sizeof(path), GOLDEN_DIR "%s", name);
    if (getenv("SOCKFLOW_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "wb");

        assert_non_null(f);
        assert_int_equal(fwrite(got, 1, len, f), len);
        fclose(f);
        return;
    }
    want = read_file(path, &glen);
    if (want == NULL)
        fail_msg("%s: %s (run from the top of the source tree)", path, strerror(errno));
    if (glen != len || memcmp(want, got, len) != 0) {
        fprintf(stderr, "---- got (%zu bytes) ----\n%s---- want %s ----\n", len, got, path);
        fail_msg("%s differs", name);
    }
    free(want);
}

/* Run fn into a memory stream; returns the text (the caller frees). */
#define CAPTURE(buf, len, call_expr)                                  \
    do {                                                              \
        FILE *mem_ = open_memstream(&(buf), &(len));                  \
        assert_non_null(mem_);                                        \
        {                                                             \
            FILE *out = mem_;                                         \
            assert_int_equal((call_expr), 0);                         \
        }                                                             \
        fclose(mem_);                                                 \
    } while (0)

#include "lib/ladder_int.h"

static const char *
label(sf_ladder_event e)
{
    static char buf[96];

    return sf_ladder_seg_label(&e, buf, sizeof(buf));
}

static void
test_labels(void **state)
{
    sf_ladder_event u = seg(C, 0, 0, 0, 0, 0, 5), rst = seg(S, 0, SF_SEG_RST, 1, 0, 0, 0);

    (void)state;
    assert_string_equal(label(seg(C, 0, SYN, 0, 0, 0, 0)), "SYN J");
    assert_string_equal(label(seg(S, 0, SYN | ACK, 0, 1, 1, 0)), "SYN K, ACK J+1");
    assert_string_equal(label(seg(C, 0, ACK, 1, 1, 1, 0)), "ACK K+1");
    assert_string_equal(label(seg(C, 0, PSH | ACK, 1, 1, 1, 5)), "PSH J+1 len 5, ACK K+1");
    assert_string_equal(label(seg(S, 0, PSH | ACK, 1, 6, 1, 5)), "PSH K+1 len 5, ACK J+6");
    assert_string_equal(label(seg(C, 0, ACK, 1, 1, 1, 1448)), "J+1 len 1448, ACK K+1");
    assert_string_equal(label(seg(C, 0, FIN | ACK, 6, 1, 1, 0)), "FIN J+6, ACK K+1");
    assert_string_equal(label(seg(C, 0, ACK, 1, 0, 0, 0)), "ACK");
    assert_string_equal(label(rst), "RST K+1");
    u.proto = SF_LADDER_UDP;
    assert_string_equal(label(u), "UDP len 5");
    u.proto = SF_LADDER_ICMP;
    assert_string_equal(label(u), "ICMP port unreachable");
}

static void
test_rows_in_time_order_with_bars(void **state)
{
    sf_ladder_event ev[32];
    size_t n = tcp_flow(ev), nr;
    sf__ladder_row *rows;
    /* Expected: (kind, call or label) per row. */
    static const struct { int kind; const char *what; } want[] = {
        { SF__ROW_CALL, "socket" }, { SF__ROW_CALL, "bind" }, { SF__ROW_CALL, "listen" },
        { SF__ROW_ENTRY, "accept4" }, { SF__ROW_CALL, "socket" }, { SF__ROW_ENTRY, "connect" },
        { SF__ROW_SEG, "SYN J" }, { SF__ROW_SEG, "SYN K, ACK J+1" }, { SF__ROW_SEG, "ACK K+1" },
        { SF__ROW_RETURN, "connect" }, { SF__ROW_RETURN, "accept4" }, { SF__ROW_ENTRY, "write" },
        { SF__ROW_SEG, "PSH J+1 len 5, ACK K+1" }, { SF__ROW_SEG, "ACK J+6" },
        { SF__ROW_RETURN, "write" }, { SF__ROW_CALL, "read" }, { SF__ROW_CALL, "read" },
        { SF__ROW_ENTRY, "close" }, { SF__ROW_SEG, "FIN J+6, ACK K+1" }, { SF__ROW_RETURN, "close" },
    };

    (void)state;
    assert_int_equal(sf__ladder_rows(ev, n, &rows, &nr), 0);
    assert_int_equal(nr, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < nr; i++) {
        const sf_ladder_event *e = &ev[rows[i].ev];

        assert_int_equal(rows[i].kind, want[i].kind);
        if (e->kind == SF_LADDER_SEG)
            assert_string_equal(label(*e), want[i].what);
        else
            assert_string_equal(e->call, want[i].what);
        if (i > 0)
            assert_true(rows[i].t_ns >= rows[i - 1].t_ns);
    }
    /* The handshake happens inside both connect() and accept(). */
    for (size_t i = 6; i <= 8; i++)
        assert_true(rows[i].inside[C] && rows[i].inside[S]);
    assert_int_equal(rows[5].pair, 9);
    assert_int_equal(rows[9].pair, 5);
    assert_int_equal(rows[3].pair, 10);
    assert_false(rows[12].inside[S]);
    assert_true(rows[12].inside[C]);
    free(rows);
}

/* Equal times keep the order given, and a call's entry comes before its return. */
static void
test_rows_ties(void **state)
{
    sf_ladder_event ev[3] = {
        call(S, "accept4", NULL, 10, 10, 4, 0),
        seg(C, 10, SYN, 0, 0, 0, 0),
        call(C, "connect", NULL, 10, 10, 0, 0),
    };
    sf__ladder_row *rows;
    size_t nr;

    (void)state;
    assert_int_equal(sf__ladder_rows(ev, 3, &rows, &nr), 0);
    assert_int_equal(nr, 3);
    assert_int_equal(rows[0].ev, 0);
    assert_int_equal(rows[0].kind, SF__ROW_CALL);
    assert_int_equal(rows[1].ev, 1);
    assert_int_equal(rows[2].ev, 2);
    assert_int_equal(rows[2].kind, SF__ROW_CALL);
    free(rows);
}

static int
max_line(const char *s)
{
    int max = 0, cur = 0;

    for (; *s; s++) {
        if (*s == '\n') {
            max = cur > max ? cur : max;
            cur = 0;
        } else {
            cur++;
        }
    }
    return max;
}

static void
test_text_golden(void **state)
{
    sf_ladder_event ev[32];
    size_t n = tcp_flow(ev), len = 0;
    char *buf = NULL;

    (void)state;
    CAPTURE(buf, len, sf_ladder_text(out, ev, n, 0));
    assert_true(max_line(buf) <= SF_LADDER_WIDTH);
    check_golden("ladder_tcp.txt", buf, len);
    free(buf);
    CAPTURE(buf, len, sf_ladder_text(out, ev, n, 72));
    assert_true(max_line(buf) <= 72);
    assert_non_null(strstr(buf, "SYN K, ACK J+1"));
    free(buf);
    n = udp_flow(ev);
    CAPTURE(buf, len, sf_ladder_text(out, ev, n, 0));
    check_golden("ladder_udp.txt", buf, len);
    assert_null(strstr(buf, "J: the client's"));
    free(buf);
}

static void
test_text_errors(void **state)
{
    sf_ladder_event ev[1] = { call(C, "connect", NULL, 10, 5, 0, 0) };
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);

    (void)state;
    assert_int_equal(sf_ladder_text(mem, ev, 1, 0), SF_EUSAGE);     /* returns before entry */
    ev[0] = call(2, "connect", NULL, 1, 5, 0, 0);
    assert_int_equal(sf_ladder_text(mem, ev, 1, 0), SF_EUSAGE);
    ev[0] = call(C, NULL, NULL, 1, 5, 0, 0);
    assert_int_equal(sf_ladder_text(mem, ev, 1, 0), SF_EUSAGE);
    ev[0] = seg(C, 1, SYN, 0, 0, 0, 0);
    ev[0].proto = 9;
    assert_int_equal(sf_ladder_text(mem, ev, 1, 0), SF_EUSAGE);
    assert_int_equal(sf_ladder_text(mem, ev, 0, 71), SF_EUSAGE);
    assert_int_equal(sf_ladder_text(mem, ev, 0, 101), SF_EUSAGE);
    assert_int_equal(sf_ladder_text(mem, ev, 0, 0), 0);
    fclose(mem);
    assert_non_null(strstr(buf, "client"));
    free(buf);
}

static size_t
handshake(sf_ladder_event *ev)
{
    size_t n = 0;

    ev[n++] = call(S, "accept4", NULL, 20 * US, 190 * US, 4, 0);
    ev[n++] = call(C, "connect", "127.0.0.1:5000", 100 * US, 160 * US, 0, 0);
    ev[n++] = seg(C, 120 * US, SYN, 0, 0, 0, 0);
    ev[n++] = seg(S, 130 * US, SYN | ACK, 0, 1, 1, 0);
    ev[n++] = seg(C, 140 * US, ACK, 1, 1, 1, 0);
    return n;
}

/* The trace's order: a call's line at its return, after the segments inside it. */
static void
test_order_for_the_trace(void **state)
{
    sf_ladder_event ev[32];
    size_t n = handshake(ev), idx[32];
    static const size_t want[5] = { 2, 3, 4, 1, 0 };   /* SYN, SYN-ACK, ACK, connect, accept */

    (void)state;
    assert_int_equal(sf_ladder_order(ev, n, idx), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(idx[i], want[i]);
    ev[0].t_end_ns = ev[1].t_end_ns;                       /* a tie: the given order */
    assert_int_equal(sf_ladder_order(ev, n, idx), 0);
    assert_int_equal(idx[3], 0);
    assert_int_equal(idx[4], 1);
    ev[2].side = 7;
    assert_int_equal(sf_ladder_order(ev, n, idx), SF_EUSAGE);
}

static void
test_svg_golden(void **state)
{
    sf_ladder_event tcp[32], udp[32], hs[8];
    sf_ladder_figure figs[3] = {
        { 1, NULL, tcp, tcp_flow(tcp) }, { 2, NULL, udp, udp_flow(udp) },
        { 7, NULL, hs, handshake(hs) },
    };
    size_t len = 0;
    char *buf = NULL;

    (void)state;
    CAPTURE(buf, len, sf_ladder_svg(out, &figs[2]));
    check_golden("figure_handshake.svg", buf, len);
    /* Every arrow and bar is there, each tied to the legend. */
    assert_non_null(strstr(buf, ">SYN J<tspan class=\"ref\" dy=\"-4\"> [3]</tspan>"));
    assert_non_null(strstr(buf, ">SYN K, ACK J+1<"));
    assert_non_null(strstr(buf, ">ACK K+1<"));
    assert_non_null(strstr(buf, "connect: 0.060 ms inside the call"));
    assert_non_null(strstr(buf, "accept4: 0.170 ms inside the call"));
    assert_non_null(strstr(buf, "握手完成时accept返回"));
    free(buf);
    CAPTURE(buf, len, sf_ladder_html(out, NULL, figs, 3));
    check_golden("figures.html", buf, len);
    assert_non_null(strstr(buf, "<figure id=\"section-1\">"));
    assert_non_null(strstr(buf, "<figure id=\"section-2\">"));
    assert_non_null(strstr(buf, "<figure id=\"section-7\">"));
    assert_non_null(strstr(buf, "而作为无连接的UDP协议"));
    assert_non_null(strstr(buf, ">ICMP port unreachable<"));
    free(buf);
}

/* Text from the caller is escaped: an address or argument cannot break the markup. */
static void
test_svg_escapes(void **state)
{
    sf_ladder_event ev[1] = { call(C, "connect", "<&\"x\">", 0, 1, 0, 0) };
    sf_ladder_figure fig = { 0, "a <b> & c", ev, 1 };
    size_t len = 0;
    char *buf = NULL;

    (void)state;
    CAPTURE(buf, len, sf_ladder_svg(out, &fig));
    assert_non_null(strstr(buf, "connect(&lt;&amp;&quot;x&quot;&gt;) = 0"));
    assert_non_null(strstr(buf, "a &lt;b&gt; &amp; c"));
    assert_null(strstr(buf, "<&"));
    free(buf);
    ev[0].t_end_ns = 0;
    ev[0].t_ns = 5;
    buf = NULL;
    {
        FILE *mem = open_memstream(&buf, &len);

        assert_int_equal(sf_ladder_svg(mem, &fig), SF_EUSAGE);
        fclose(mem);
    }
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_rows_in_time_order_with_bars),
        cmocka_unit_test(test_rows_ties),
        cmocka_unit_test(test_text_golden),
        cmocka_unit_test(test_text_errors),
        cmocka_unit_test(test_order_for_the_trace),
        cmocka_unit_test(test_svg_golden),
        cmocka_unit_test(test_svg_escapes),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
