/* priv: setgroups, setgid, setuid to a named user, and the check that the drop held
 * (OpenBSD's privsep style: never assume a set*id call did what it says). */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include "sockflow/priv.h"

#define PW_BUF 16384

/* The drop held: no way back to root, nothing of root's groups left. */
static int
check_dropped(uid_t uid, gid_t gid, sf_err *err)
{
    gid_t groups[64];
    int n = getgroups(64, groups);

    if (getuid() != uid || geteuid() != uid)
        return sf_err_set(err, -EPERM, "--user: uid is still %d/%d, not %d", (int)getuid(),
                          (int)geteuid(), (int)uid);
    if (getgid() != gid || getegid() != gid)
        return sf_err_set(err, -EPERM, "--user: gid is still %d/%d, not %d", (int)getgid(),
                          (int)getegid(), (int)gid);
    if (n < 0)
        return sf_err_set(err, -errno, "--user: getgroups");
    for (int i = 0; i < n; i++)
        if (groups[i] != gid)
            return sf_err_set(err, -EPERM, "--user: still in group %d", (int)groups[i]);
    if (uid != 0 && setuid(0) == 0)
        return sf_err_set(err, -EPERM, "--user: setuid(0) still works after the drop");
    return 0;
}

int
sf_drop_privileges(const char *user, sf_err *err)
{
    struct passwd pw, *res = NULL;
    char *buf = malloc(PW_BUF);
    uid_t uid;
    gid_t gid;
    int rc;

    if (buf == NULL)
        return sf_err_set(err, -ENOMEM, "--user %s", user);
    rc = getpwnam_r(user, &pw, buf, PW_BUF, &res);
    if (res == NULL) {
        free(buf);
        if (rc != 0)
            return sf_err_set(err, -rc, "--user %s: getpwnam", user);
        return sf_err_set(err, SF_EUSAGE, "--user %s: no such user", user);
    }
    uid = pw.pw_uid;
    gid = pw.pw_gid;
    free(buf);
    if (setgroups(1, &gid) < 0)
        return sf_err_set(err, -errno, "--user %s: setgroups(%d)", user, (int)gid);
    if (setgid(gid) < 0)
        return sf_err_set(err, -errno, "--user %s: setgid(%d)", user, (int)gid);
    if (setuid(uid) < 0)
        return sf_err_set(err, -errno, "--user %s: setuid(%d)", user, (int)uid);
    return check_dropped(uid, gid, err);
}
