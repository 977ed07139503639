/* test_svc_exec: the server's hooks for programs and access — the exec service (a held
 * connection, reaped on SIGCHLD, counted by max_conns, spared by the idle timeout), the
 * access check after accept, and a socket adopted rather than bound. */
#include <sys/wait.h>

#include "unit.h"
#include "sockflow/access.h"

typedef struct log_lines {
    pthread_mutex_t mu;
    char text[8192];
} log_lines;

static void
log_line(void *ud, const char *line)
{
    log_lines *l = ud;

    pthread_mutex_lock(&l->mu);
    strncat(l->text, line, sizeof(l->text) - strlen(l->text) - 2);
    strcat(l->text, "\n");
    pthread_mutex_unlock(&l->mu);
}

static int
log_has(log_lines *l, const char *what, int ms)
{
    uint64_t end = unit_now_ms() + (uint64_t)ms;

    for (;;) {
        int found;

        pthread_mutex_lock(&l->mu);
        found = strstr(l->text, what) != NULL;
        pthread_mutex_unlock(&l->mu);
        if (found || unit_now_ms() > end)
            return found;
        unit_sleep_ms(10);
    }
}

static sf_service *
exec_service(const char *spec, int *port)
{
    sf_err err;
    sf_service *svc = sf_svc_exec_new(spec, port, &err);

    if (svc == NULL)
        fail_msg("%s", err.msg);
    return svc;
}

static void
runs_program_and_reaps_it(void **state)
{
    log_lines log = { PTHREAD_MUTEX_INITIALIZER, "" };
    sf_server_opts o = { .log = log_line, .log_ud = &log, .idle_timeout_ms = 200 };
    sf_server_stats st;
    unit_server u;
    char buf[16], want[64], spec[64], script[] = "/tmp/sockflow-exec-XXXXXX";
    int port, fd = mkstemp(script);
    sf_service *svc;

    (void)state;
    /* the command is split at blanks, no shell: the pause goes in a script */
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "sleep 0.6; exec cat\n", 20), 20);
    close(fd);
    snprintf(spec, sizeof(spec), "exec:0=/bin/sh %s", script);
    svc = exec_service(spec, &port);
    unit_server_start(&u, &o, svc, SF_PROTO_TCP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    /* silent longer than the idle timeout: the program owns the socket, nobody times it */
    assert_int_equal(sf_write_full(NULL, fd, "held", 4), 4);
    shutdown(fd, SHUT_WR);
    assert_int_equal(unit_read_exact(fd, buf, 4, 4 * UNIT_WAIT_MS), 4);
    assert_memory_equal(buf, "held", 4);
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS), 0);
    snprintf(want, sizeof(want), "exec #1 127.0.0.1:%d: closed: program ", unit_local_port(fd));
    assert_true(log_has(&log, want, UNIT_WAIT_MS));
    assert_true(log_has(&log, "exited 0", UNIT_WAIT_MS));
    assert_false(log_has(&log, "idle timeout", 0));
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.closed, 1);
    assert_int_equal(st.timeouts, 0);
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);    /* no child left, no zombie */
    sf_svc_exec_free(svc);
    unlink(script);
}

static void
held_connections_count_for_max_conns(void **state)
{
    sf_server_opts o = { .max_conns = 1 };
    sf_server_stats st;
    unit_server u;
    int port, a, b;
    char c;
    sf_service *svc = exec_service("exec:0=cat", &port);

    (void)state;
    unit_server_start(&u, &o, svc, SF_PROTO_TCP, 0);
    a = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(sf_write_full(NULL, a, "a", 1), 1);
    assert_int_equal(unit_read_exact(a, &c, 1, 4 * UNIT_WAIT_MS), 1);
    b = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(unit_wait_eof(b, UNIT_WAIT_MS) <= 0, 1);     /* closed at once */
    close(b);
    close(a);
    unit_server_stop(&u, &st);
    assert_int_equal(st.refused_max, 1);
    sf_svc_exec_free(svc);
}

static void
access_refuses_after_accept(void **state)
{
    log_lines log = { PTHREAD_MUTEX_INITIALIZER, "" };
    sf_access *acc = sf_access_new(NULL);
    sf_server_opts o = { .access = acc, .log = log_line, .log_ud = &log };
    sf_server_stats st;
    unit_server u;
    sf_err err;
    int fd;
    char c;

    (void)state;
    assert_int_equal(sf_access_add(acc, 0, "127.0.0.0/8", &err), 0);
    unit_server_start(&u, &o, &sf_svc_echo, SF_PROTO_TCP | SF_PROTO_UDP, 0);
    fd = unit_tcp_client(AF_INET, u.port);
    assert_int_equal(unit_wait_eof(fd, UNIT_WAIT_MS) <= 0, 1);
    close(fd);
    assert_true(log_has(&log, "(not allowed)", UNIT_WAIT_MS));
    /* UDP: dropped, no reply */
    fd = unit_udp_socket(AF_INET, NULL);
    {
        sf_addr to = unit_loopback(AF_INET, u.port);

        assert_int_equal(sf_sendto(NULL, fd, "x", 1, &to), 1);
        assert_int_equal(unit_poll(fd, POLLIN, 300), 0);
        (void)c;
    }
    close(fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.accepted, 0);
    assert_int_equal(st.dgrams_out, 0);
    sf_access_free(acc);
}

static void
adopts_a_bound_socket(void **state)
{
    sf_server_opts o = { 0 };
    sf_err err;
    sf_server *s = sf_server_new(&o, &err);
    unit_server u = { .s = s };
    int port, lfd = unit_tcp_listener(AF_INET, 8, &port), fd;
    char buf[8];

    (void)state;
    assert_non_null(s);
    assert_int_equal(sf_server_adopt(s, &sf_svc_echo, lfd, &err), 0);
    assert_int_equal(sf_server_listener_count(s), 1);
    assert_int_equal(sf_addr_port(&sf_server_listener(s, 0)->addr), port);
    /* a UDP socket cannot serve chat (TCP only): refused, and closed */
    fd = unit_udp_socket(AF_INET, NULL);
    assert_int_equal(sf_server_adopt(s, &sf_svc_chat, fd, &err), SF_EUSAGE);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    unit_server_run(&u);
    fd = unit_tcp_client(AF_INET, port);
    assert_int_equal(sf_write_full(NULL, fd, "adopted", 7), 7);
    assert_int_equal(unit_read_exact(fd, buf, 7, UNIT_WAIT_MS), 7);
    assert_memory_equal(buf, "adopted", 7);
    close(fd);
    unit_server_stop(&u, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(runs_program_and_reaps_it),
        cmocka_unit_test(held_connections_count_for_max_conns),
        cmocka_unit_test(access_refuses_after_accept),
        cmocka_unit_test(adopts_a_bound_socket),
    };

    /* As sf_server_run's contract asks: SIGCHLD blocked in every thread (the server runs
     * on a test thread here), so that it reaches the server's signalfd, not this thread. */
    static const int chld[] = { SIGCHLD, 0 };

    sf_loop_block_signals(chld);
    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
