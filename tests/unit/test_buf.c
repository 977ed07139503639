/* test_buf: the bounded byte queue never holds more than its cap. */
#include "unit.h"

static void
init_takes_no_memory(void **state)
{
    sf_buf b;

    (void)state;
    memset(&b, 0x5a, sizeof(b));
    sf_buf_init(&b, 1000);
    assert_null(b.data);
    assert_int_equal(b.size, 0);
    assert_int_equal(sf_buf_len(&b), 0);
    assert_int_equal(sf_buf_room(&b), 1000);
    sf_buf_free(&b);
    sf_buf_free(&b);    /* twice is harmless */
}

/* A push that does not fit takes what fits and says how much. */
static void
push_partial_at_cap(void **state)
{
    char in[300];
    sf_buf b;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 1);
    sf_buf_init(&b, 100);
    assert_int_equal(sf_buf_push(&b, in, 60), 60);
    assert_int_equal(sf_buf_room(&b), 40);
    assert_int_equal(sf_buf_push(&b, in + 60, 240), 40);
    assert_int_equal(sf_buf_len(&b), 100);
    assert_int_equal(sf_buf_room(&b), 0);
    assert_int_equal(sf_buf_push(&b, in, 1), 0);
    assert_int_equal(sf_buf_push(&b, in, 0), 0);
    assert_true(b.size <= b.cap);
    assert_memory_equal(sf_buf_peek(&b), in, 100);
    sf_buf_free(&b);
}

static void
zero_cap_takes_nothing(void **state)
{
    sf_buf b;

    (void)state;
    sf_buf_init(&b, 0);
    assert_int_equal(sf_buf_push(&b, "x", 1), 0);
    assert_int_equal(sf_buf_len(&b), 0);
    assert_null(b.data);
    sf_buf_free(&b);
}

static void
consume_front(void **state)
{
    sf_buf b;

    (void)state;
    sf_buf_init(&b, 64);
    assert_int_equal(sf_buf_push(&b, "abcdef", 6), 6);
    sf_buf_consume(&b, 2);
    assert_int_equal(sf_buf_len(&b), 4);
    assert_int_equal(sf_buf_room(&b), 60);
    assert_memory_equal(sf_buf_peek(&b), "cdef", 4);
    sf_buf_consume(&b, 0);
    assert_int_equal(sf_buf_len(&b), 4);
    sf_buf_consume(&b, 100);    /* more than queued empties it */
    assert_int_equal(sf_buf_len(&b), 0);
    assert_int_equal(b.head, 0);
    assert_int_equal(sf_buf_push(&b, "gh", 2), 2);
    assert_memory_equal(sf_buf_peek(&b), "gh", 2);
    sf_buf_free(&b);
}

/* Memory grows by doubling from 4 KiB and stops at the cap, even an odd one. */
static void
grows_to_cap_not_past(void **state)
{
    static char in[10000];
    sf_buf b;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 2);
    sf_buf_init(&b, 10000);
    assert_int_equal(sf_buf_push(&b, in, 1), 1);
    assert_int_equal(b.size, 4096);
    assert_int_equal(sf_buf_push(&b, in + 1, 4096), 4096);
    assert_int_equal(b.size, 8192);
    assert_int_equal(sf_buf_push(&b, in + 4097, 9000), 10000 - 4097);
    assert_int_equal(b.size, 10000);
    assert_int_equal(sf_buf_len(&b), 10000);
    assert_memory_equal(sf_buf_peek(&b), in, sizeof(in));
    sf_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(sf_buf_len(&b), 0);

    sf_buf_init(&b, 100);
    assert_int_equal(sf_buf_push(&b, in, 10), 10);
    assert_int_equal(b.size, 100);
    sf_buf_free(&b);
}

/* Consumed room at the front is reused: the bytes move down, in order, no growth. */
static void
reuses_consumed_room(void **state)
{
    char in[8192], out[8192];
    sf_buf b;
    size_t pos = 0, got = 0;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 3);
    sf_buf_init(&b, 1000);
    /* Push 300, take 170, many times over: a rolling window through the input. */
    while (got < sizeof(out)) {
        size_t want = sizeof(in) - pos < 300 ? sizeof(in) - pos : 300;
        ssize_t n = sf_buf_push(&b, in + pos, want);
        size_t take;

        assert_true(n >= 0);
        pos += (size_t)n;
        assert_true(sf_buf_len(&b) <= 1000);
        assert_true(b.size <= 1000);
        take = sf_buf_len(&b) < 170 || pos == sizeof(in) ? sf_buf_len(&b) : 170;
        memcpy(out + got, sf_buf_peek(&b), take);
        sf_buf_consume(&b, take);
        got += take;
    }
    assert_memory_equal(out, in, sizeof(in));
    assert_int_equal(b.size, 1000);
    sf_buf_free(&b);
}

static void
flush_to_socket(void **state)
{
    char in[5000], out[5000];
    sf_buf b;
    int sv[2];

    (void)state;
    unit_fill_pattern(in, sizeof(in), 4);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    sf_buf_init(&b, sizeof(in));
    assert_int_equal(sf_buf_push(&b, in, sizeof(in)), sizeof(in));
    assert_int_equal(sf_buf_flush(NULL, &b, sv[0]), 0);
    assert_int_equal(sf_buf_len(&b), 0);
    assert_int_equal(unit_read_exact(sv[1], out, sizeof(out), UNIT_WAIT_MS), sizeof(out));
    assert_memory_equal(out, in, sizeof(in));
    /* Nothing queued: nothing written. */
    assert_int_equal(sf_buf_flush(NULL, &b, sv[0]), 0);
    assert_int_equal(unit_poll(sv[1], POLLIN, 20), 0);
    sf_buf_free(&b);
    close(sv[0]);
    close(sv[1]);
}

/* A peer that reads nothing: the flush stops when the socket is full and keeps the rest,
 * then carries on where it stopped once the peer reads. */
static void
flush_stops_when_socket_full(void **state)
{
    static char in[1 << 20], out[1 << 20];
    size_t got = 0, total = 0;
    sf_buf b;
    int sv[2], sz = 4096;
    ssize_t left;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 5);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
    assert_int_equal(sf_set_nonblock(sv[0], 1), 0);
    sf_buf_init(&b, 64 * 1024);
    total = (size_t)sf_buf_push(&b, in, sizeof(in));
    assert_int_equal(total, 64 * 1024);
    left = sf_buf_flush(NULL, &b, sv[0]);
    assert_true(left > 0 && left < 64 * 1024);
    assert_int_equal(sf_buf_len(&b), (size_t)left);
    assert_memory_equal(sf_buf_peek(&b), in + total - (size_t)left, (size_t)left);

    while (got < total) {
        ssize_t n = unit_read_exact(sv[1], out + got, total - got, 50);

        assert_true(n >= 0);
        got += (size_t)n;
        left = sf_buf_flush(NULL, &b, sv[0]);
        assert_true(left >= 0);
        if (n == 0 && left > 0)
            assert_true(unit_poll(sv[0], POLLOUT, UNIT_WAIT_MS) & POLLOUT);
    }
    assert_int_equal(sf_buf_len(&b), 0);
    assert_memory_equal(out, in, total);
    sf_buf_free(&b);
    close(sv[0]);
    close(sv[1]);
}

static void
flush_reports_errors(void **state)
{
    struct sigaction old, ign = { .sa_handler = SIG_DFL };
    sf_buf b;
    int sv[2];

    (void)state;
    /* With SIGPIPE at its default, a raise would kill the test: sf_write must not. */
    sigaction(SIGPIPE, &ign, &old);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    sf_buf_init(&b, 16);
    assert_int_equal(sf_buf_push(&b, "data", 4), 4);
    assert_int_equal(sf_buf_flush(NULL, &b, sv[0]), -EPIPE);
    assert_int_equal(sf_buf_len(&b), 4);
    assert_int_equal(sf_buf_flush(NULL, &b, -1), -EBADF);
    sf_buf_free(&b);
    close(sv[0]);
    sigaction(SIGPIPE, &old, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(init_takes_no_memory),
        cmocka_unit_test(push_partial_at_cap),
        cmocka_unit_test(zero_cap_takes_nothing),
        cmocka_unit_test(consume_front),
        cmocka_unit_test(grows_to_cap_not_past),
        cmocka_unit_test(reuses_consumed_room),
        cmocka_unit_test(flush_to_socket),
        cmocka_unit_test(flush_stops_when_socket_full),
        cmocka_unit_test(flush_reports_errors),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
