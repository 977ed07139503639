/* test_priv: --user — groups, group and user dropped in that order, and checked. Each
 * case runs in a child process, since a drop cannot be undone. */
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>

#include "unit.h"
#include "sockflow/priv.h"

/* Run fn in a child; its exit status (bounded wait). */
static int
in_child(int (*fn)(void))
{
    uint64_t end = unit_now_ms() + UNIT_WAIT_MS;
    int status;
    pid_t pid = fork();

    if (pid == 0)
        _exit(fn());
    assert_true(pid > 0);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (unit_now_ms() > end) {
            kill(pid, SIGKILL);
            fail_msg("child did not end");
        }
        unit_sleep_ms(5);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

static int
drop_to_nobody(void)
{
    struct passwd *pw = getpwnam("nobody");
    gid_t groups[8];
    sf_err err;

    if (pw == NULL)
        return 10;
    if (sf_drop_privileges("nobody", &err) < 0)
        return 11;
    if (getuid() != pw->pw_uid || geteuid() != pw->pw_uid)
        return 12;
    if (getgid() != pw->pw_gid || getegid() != pw->pw_gid)
        return 13;
    if (getgroups(8, groups) > 1 || setuid(0) == 0)
        return 14;
    return 0;
}

static void
drops_and_holds(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    assert_int_equal(in_child(drop_to_nobody), 0);
}

static int
unknown_user(void)
{
    sf_err err;
    int rc = sf_drop_privileges("no-such-user-sockflow", &err);

    return rc == SF_EUSAGE &&
           strcmp(err.msg, "--user no-such-user-sockflow: no such user") == 0 ? 0 : 1;
}

static void
unknown_user_is_usage(void **state)
{
    (void)state;
    assert_int_equal(in_child(unknown_user), 0);
}

static int
not_root_cannot(void)
{
    sf_err err;

    if (setgid(65534) < 0 || setuid(65534) < 0)
        return 20;
    if (sf_drop_privileges("root", &err) != -EPERM)
        return 21;
    return strstr(err.msg, "--user root: setgroups(0)") ? 0 : 22;
}

static void
without_privilege_it_fails(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    assert_int_equal(in_child(not_root_cannot), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(drops_and_holds),
        cmocka_unit_test(unknown_user_is_usage),
        cmocka_unit_test(without_privilege_it_fails),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
