/* test_spawn: a program per connection — the socket as standard input and output, no
 * other descriptor, its own process group, the ucspi-tcp environment, reaping, and an
 * exec failure reported as an error. */
#include <sys/wait.h>

#include "unit.h"
#include "sockflow/spawn.h"

/* Wait (bounded) for pid to end; its status. */
static int
wait_child(pid_t pid)
{
    uint64_t end = unit_now_ms() + 4 * UNIT_WAIT_MS;
    int status;

    while (unit_now_ms() < end) {
        pid_t got = waitpid(pid, &status, WNOHANG);

        if (got == pid)
            return status;
        unit_sleep_ms(5);
    }
    kill(pid, SIGKILL);
    fail_msg("child %d did not end", (int)pid);
    return -1;
}

/* A connected TCP pair over loopback: *server is the accepted end. */
static int
tcp_pair(int *server)
{
    int port, lfd = unit_tcp_listener(AF_INET, 4, &port);
    int cfd = unit_tcp_client(AF_INET, port);

    *server = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(*server >= 0);
    close(lfd);
    return cfd;
}

/* Run shell with the server end of a new connection; what the child writes, read from
 * the client end to EOF, into out. */
static ssize_t
run_shell(const char *shell, const char *input, char *out, size_t outlen, int *status)
{
    sf_spawn_cmd cmd = { .shell = shell };
    int srv, cli = tcp_pair(&srv);
    sf_err err;
    pid_t pid = sf_spawn(&cmd, srv, &err);
    ssize_t n;

    if (pid < 0)
        fail_msg("%s", err.msg);
    close(srv);     /* the child's copy is the only one now */
    if (input)
        assert_int_equal(write(cli, input, strlen(input)), (ssize_t)strlen(input));
    shutdown(cli, SHUT_WR);
    /* to the end of the program's output: a loaded machine may take seconds to start a
     * shell, so the wait is longer than UNIT_WAIT_MS, still bounded */
    n = unit_read_exact(cli, out, outlen - 1, 4 * UNIT_WAIT_MS);
    assert_true(n >= 0);
    out[n] = '\0';
    *status = wait_child(pid);
    close(cli);
    return n;
}

static void
socket_is_stdin_and_stdout(void **state)
{
    char out[256];
    int status;

    (void)state;
    run_shell("cat", "over the socket\n", out, sizeof(out), &status);
    assert_string_equal(out, "over the socket\n");
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void
environment_as_ucspi_tcp(void **state)
{
    char out[512], want[128];
    int status;

    (void)state;
    run_shell("echo \"$PROTO $TCPLOCALIP $TCPREMOTEIP ${TCPLOCALPORT:+L} ${TCPREMOTEPORT:+R}\"",
              NULL, out, sizeof(out), &status);
    snprintf(want, sizeof(want), "TCP 127.0.0.1 127.0.0.1 L R\n");
    assert_string_equal(out, want);
}

static void
nothing_else_inherited(void **state)
{
    char out[512];
    int status;
    int extra = open("/dev/null", O_RDONLY);     /* without close-on-exec, on purpose */

    (void)state;
    assert_true(extra >= 0);
    /* /proc/self/fd of the child (ls opens one for the directory): 0 1 2 and that one */
    run_shell("ls /proc/self/fd | wc -l; ps -o pgid= -p $$; echo $$", NULL, out,
              sizeof(out), &status);
    close(extra);
    {
        int nfd = 0, pgid = 0, pid = 1;

        assert_int_equal(sscanf(out, "%d %d %d", &nfd, &pgid, &pid), 3);
        assert_int_equal(nfd, 4);
        assert_int_equal(pgid, pid);     /* its own process group */
    }
}

static void
signals_reset(void **state)
{
    char out[256];
    int status;
    sigset_t block;

    (void)state;
    /* as a server: SIGPIPE ignored, SIGTERM blocked for a signalfd */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, NULL);
    run_shell("grep -E '^(SigIgn|SigBlk)' /proc/self/status", NULL, out, sizeof(out),
              &status);
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (strstr(out, "SigIgn:\t0000000000000000") == NULL ||
        strstr(out, "SigBlk:\t0000000000000000") == NULL)
        fail_msg("the program's signals are not reset: %s", out);
}

static void
exec_failure_is_an_error(void **state)
{
    sf_spawn_cmd cmd;
    int srv, cli = tcp_pair(&srv);
    sf_err err;

    (void)state;
    assert_int_equal(sf_spawn_cmd_split(&cmd, "  /nonexistent/prog  arg", &err), 0);
    assert_string_equal(cmd.argv[0], "/nonexistent/prog");
    assert_string_equal(cmd.argv[1], "arg");
    assert_null(cmd.argv[2]);
    assert_int_equal(sf_spawn(&cmd, srv, &err), -ENOENT);
    assert_string_equal(err.msg, "exec /nonexistent/prog: No such file or directory");
    /* reaped already: no zombie left */
    assert_int_equal(sf_spawn_reap(NULL), -ECHILD);
    sf_spawn_cmd_free(&cmd);
    assert_int_equal(sf_spawn_cmd_split(&cmd, " \t ", &err), SF_EUSAGE);
    close(srv);
    close(cli);
}

static void
reap_and_status_text(void **state)
{
    sf_spawn_cmd cmd;
    int srv, cli = tcp_pair(&srv), status = 0;
    uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
    char how[64];
    sf_err err;
    pid_t pid, got = 0;

    (void)state;
    assert_int_equal(sf_spawn_cmd_split(&cmd, "sleep 30", &err), 0);
    pid = sf_spawn(&cmd, srv, &err);
    assert_true(pid > 0);
    assert_int_equal(sf_spawn_reap(&status), 0);     /* running: nothing to reap */
    assert_int_equal(sf_spawn_signal(pid, SIGTERM), 0);
    while (got == 0 && unit_now_ms() < end) {
        got = sf_spawn_reap(&status);
        if (got == 0)
            unit_sleep_ms(5);
    }
    assert_int_equal(got, pid);
    assert_string_equal(sf_spawn_status_text(status, how, sizeof(how)), "killed by SIGTERM");
    assert_string_equal(sf_spawn_status_text(3 << 8, how, sizeof(how)), "exited 3");
    sf_spawn_cmd_free(&cmd);
    close(srv);
    close(cli);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(socket_is_stdin_and_stdout),
        cmocka_unit_test(environment_as_ucspi_tcp),
        cmocka_unit_test(nothing_else_inherited),
        cmocka_unit_test(signals_reset),
        cmocka_unit_test(exec_failure_is_an_error),
        cmocka_unit_test(reap_and_status_text),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
