/* test_err: error codes, one-line messages, names and texts. */
#include "unit.h"

static void
set_formats_and_returns_code(void **state)
{
    sf_err err;

    (void)state;
    assert_int_equal(sf_err_set(&err, -ECONNREFUSED, "connect %s:%d", "127.0.0.1", 7),
                     -ECONNREFUSED);
    assert_int_equal(err.code, -ECONNREFUSED);
    assert_string_equal(err.msg, "connect 127.0.0.1:7: Connection refused");

    sf_err_set(&err, -EADDRINUSE, "bind %s", "[::1]:7");
    assert_string_equal(err.msg, "bind [::1]:7: Address already in use");
}

static void
set_without_err_only_returns(void **state)
{
    (void)state;
    assert_int_equal(sf_err_set(NULL, -EPIPE, "write"), -EPIPE);
    assert_int_equal(sf_err_set(NULL, SF_EADDR, "x"), SF_EADDR);
}

/* Codes of our own (and non-negative ones) carry their own text: nothing appended. */
static void
set_own_codes_append_nothing(void **state)
{
    sf_err err;

    (void)state;
    sf_err_set(&err, SF_EADDR, "address %s: missing port", "host");
    assert_int_equal(err.code, SF_EADDR);
    assert_string_equal(err.msg, "address host: missing port");
    sf_err_set(&err, SF_EUSAGE, "bad");
    assert_string_equal(err.msg, "bad");
    sf_err_set(&err, 0, "fine %d", 1);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "fine 1");
}

/* A message longer than the buffer is cut, stays terminated, and the reason is dropped
 * rather than written past the end. */
static void
set_truncates_long_messages(void **state)
{
    char longtext[SF_ERR_MSG_MAX * 2];
    sf_err err;

    (void)state;
    memset(longtext, 'a', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    sf_err_set(&err, -ECONNRESET, "%s", longtext);
    assert_int_equal(strlen(err.msg), SF_ERR_MSG_MAX - 1);
    assert_int_equal(err.msg[SF_ERR_MSG_MAX - 2], 'a');

    /* Room for part of the reason: it is cut, never overflowing. */
    memset(longtext, 'b', SF_ERR_MSG_MAX - 10);
    longtext[SF_ERR_MSG_MAX - 10] = '\0';
    sf_err_set(&err, -ECONNRESET, "%s", longtext);
    assert_int_equal(strlen(err.msg), SF_ERR_MSG_MAX - 1);
    assert_memory_equal(err.msg + SF_ERR_MSG_MAX - 10, ": Connect", 9);
}

/* The address a failure was about is kept beside the text, and a new failure without
 * one clears it. */
static void
set_addr_kept_then_cleared(void **state)
{
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(7) };
    sf_err err;

    (void)state;
    sf_err_set(&err, -ECONNREFUSED, "connect 0.0.0.0:7");
    assert_int_equal(err.addr.ss_family, AF_UNSPEC);
    sf_err_set_addr(&err, (struct sockaddr *)&in, sizeof(in));
    assert_int_equal(err.addr.ss_family, AF_INET);
    assert_int_equal(err.addrlen, sizeof(in));
    assert_int_equal(((struct sockaddr_in *)&err.addr)->sin_port, htons(7));
    sf_err_set(&err, SF_EUSAGE, "no address");
    assert_int_equal(err.addr.ss_family, AF_UNSPEC);
    assert_int_equal(err.addrlen, 0);
    sf_err_set_addr(NULL, (struct sockaddr *)&in, sizeof(in));   /* no err: nothing */
}

static void
strerror_texts(void **state)
{
    (void)state;
    assert_string_equal(sf_strerror(-ECONNREFUSED), "Connection refused");
    assert_string_equal(sf_strerror(-ETIMEDOUT), "Connection timed out");
    assert_string_equal(sf_strerror(SF_EAGAIN), strerror(EAGAIN));
    assert_string_equal(sf_strerror(SF_EADDR), "Bad address");
    assert_string_equal(sf_strerror(SF_EUSAGE), "Invalid argument");
    assert_string_equal(sf_strerror(0), "Success");
    assert_string_equal(sf_strerror(42), "Success");
    assert_string_equal(sf_strerror(-20000), "Unknown error");
}

static void
errname_names(void **state)
{
    (void)state;
    assert_string_equal(sf_errname(-ECONNREFUSED), "ECONNREFUSED");
    assert_string_equal(sf_errname(-EADDRINUSE), "EADDRINUSE");
    assert_string_equal(sf_errname(-ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(sf_errname(-EMFILE), "EMFILE");
    assert_string_equal(sf_errname(-ENONET), "ENONET");
    assert_string_equal(sf_errname(SF_EAGAIN), "EAGAIN");
    assert_string_equal(sf_errname(SF_EADDR), "SF_EADDR");
    assert_string_equal(sf_errname(SF_EUSAGE), "SF_EUSAGE");
    assert_string_equal(sf_errname(0), "OK");
    assert_string_equal(sf_errname(-ECHILD), "E?");
    assert_string_equal(sf_errname(-20000), "E?");
}

/* SF_EAGAIN is documented as equal to -EAGAIN, so a raw -errno compares with it. */
static void
eagain_is_minus_errno(void **state)
{
    (void)state;
    assert_int_equal(SF_EAGAIN, -EAGAIN);
    assert_int_equal(SF_EAGAIN, -EWOULDBLOCK);
    assert_true(SF_EADDR < -4095 && SF_EUSAGE < -4095 && SF_EADDR != SF_EUSAGE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(set_formats_and_returns_code),
        cmocka_unit_test(set_without_err_only_returns),
        cmocka_unit_test(set_own_codes_append_nothing),
        cmocka_unit_test(set_truncates_long_messages),
        cmocka_unit_test(set_addr_kept_then_cleared),
        cmocka_unit_test(strerror_texts),
        cmocka_unit_test(errname_names),
        cmocka_unit_test(eagain_is_minus_errno),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
