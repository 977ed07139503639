/* test_activate: sockets passed by systemd (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and
 * the kind of a socket, as a service manager would hand them over. */
#include "unit.h"
#include "sockflow/activate.h"

/* Put fd at descriptor want (3, 4 ...), as systemd does before exec. */
static void
place(int fd, int want)
{
    if (fd != want) {
        assert_int_equal(dup2(fd, want), want);
        close(fd);
    }
}

static void
set_env(const char *pid, const char *fds, const char *names)
{
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", fds, 1);
    if (names)
        setenv("LISTEN_FDNAMES", names, 1);
    else
        unsetenv("LISTEN_FDNAMES");
}

static void
takes_passed_sockets(void **state)
{
    char pid[32];
    sf_passed p[4];
    sf_err err;
    int tport, uport;

    (void)state;
    /* free 3 and 4 for the passed sockets */
    close(3);
    close(4);
    place(unit_tcp_listener(AF_INET, 4, &tport), 3);
    place(unit_udp_socket(AF_INET6, &uport), 4);
    fcntl(3, F_SETFD, 0);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    set_env(pid, "2", "web:dns");
    assert_int_equal(sf_activation_take(p, 4, &err), 2);
    assert_int_equal(p[0].fd, 3);
    assert_int_equal(p[0].type, SOCK_STREAM);
    assert_int_equal(p[0].family, AF_INET);
    assert_true(p[0].listening);
    assert_string_equal(p[0].name, "web");
    assert_int_equal(p[1].fd, 4);
    assert_int_equal(p[1].type, SOCK_DGRAM);
    assert_int_equal(p[1].family, AF_INET6);
    assert_false(p[1].listening);
    assert_string_equal(p[1].name, "dns");
    assert_true(unit_is_cloexec(3));
    /* the variables are gone, so a child does not take them for its own */
    assert_null(getenv("LISTEN_FDS"));
    assert_null(getenv("LISTEN_PID"));
    assert_int_equal(sf_activation_take(p, 4, &err), 0);
    close(3);
    close(4);
}

static void
not_for_us(void **state)
{
    sf_passed p[2];
    sf_err err;

    (void)state;
    set_env("1", "1", NULL);        /* another process's */
    assert_int_equal(sf_activation_take(p, 2, &err), 0);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    assert_int_equal(sf_activation_take(p, 2, &err), 0);
}

static void
not_a_socket(void **state)
{
    char pid[32];
    sf_passed p[2];
    sf_err err;

    (void)state;
    close(3);
    place(open("/dev/null", O_RDONLY), 3);
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    set_env(pid, "1", NULL);
    assert_int_equal(sf_activation_take(p, 2, &err), -ENOTSOCK);
    assert_string_equal(err.msg, "LISTEN_FDS: descriptor 3: Socket operation on non-socket");
    set_env(pid, "3", NULL);
    assert_int_equal(sf_activation_take(p, 2, &err), SF_EUSAGE);
    close(3);
}

static void
kind_of_unix_socket(void **state)
{
    int sv[2], type, family, listening;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(sf_sock_kind(sv[0], &type, &family, &listening), 0);
    assert_int_equal(type, SOCK_STREAM);
    assert_int_equal(family, AF_UNIX);
    assert_false(listening);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(sf_sock_kind(0 + 1000, &type, &family, &listening), -EBADF);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(takes_passed_sockets),
        cmocka_unit_test(not_for_us),
        cmocka_unit_test(not_a_socket),
        cmocka_unit_test(kind_of_unix_socket),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
