/* wire_priv: capture without privilege (a private user + network namespace, as
 * `unshare -Urn` makes), and the segment counters TCP_INFO keeps where none is possible. */
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/wire.h"

static int
write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t len = (ssize_t)strlen(text), n;
    int rc = 0;

    if (fd < 0)
        return -errno;
    n = write(fd, text, (size_t)len);
    if (n != len)
        rc = n < 0 ? -errno : -EIO;
    close(fd);
    return rc;
}

/* Root inside the new user namespace is the caller outside: one id mapped each way.
 * setgroups must be denied before an unprivileged process may write gid_map. */
static int
map_ids(uid_t uid, gid_t gid, sf_err *err)
{
    char map[64];
    int rc;

    if ((rc = write_file("/proc/self/setgroups", "deny")) < 0 && rc != -ENOENT)
        return sf_err_set(err, rc, "private namespace: write /proc/self/setgroups");
    snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
    if ((rc = write_file("/proc/self/uid_map", map)) < 0)
        return sf_err_set(err, rc, "private namespace: write /proc/self/uid_map");
    snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
    if ((rc = write_file("/proc/self/gid_map", map)) < 0)
        return sf_err_set(err, rc, "private namespace: write /proc/self/gid_map");
    return 0;
}

/* A new network namespace starts with lo down. */
static int
lo_up(sf_err *err)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = 0;

    if (fd < 0)
        return sf_err_set(err, -errno, "private namespace: socket");
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        rc = sf_err_set(err, -errno, "private namespace: lo: SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP;
    if (rc == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        rc = sf_err_set(err, -errno, "private namespace: lo: SIOCSIFFLAGS up");
    close(fd);
    return rc;
}

int
sf_wire_enter_netns(sf_err *err)
{
    uid_t uid = geteuid();
    gid_t gid = getegid();
    int rc;

    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
        rc = -errno;
        return sf_err_set(err, rc, "private namespace: unshare(CLONE_NEWUSER|CLONE_NEWNET)%s",
                          rc == -EINVAL ? " (the process has threads)" :
                          rc == -EPERM || rc == -ENOSPC ?
                          " (user namespaces disabled: user.max_user_namespaces)" : "");
    }
    if ((rc = map_ids(uid, gid, err)) < 0)
        return rc;
    return lo_up(err);
}

int
sf_wire_tcp_counts(int fd, sf_wire_counts *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(c, 0, sizeof(*c));
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -errno;
    /* Kernels before 4.2 have no counters: the struct comes back shorter. */
    if (len < offsetof(struct tcp_info, tcpi_data_segs_out) + sizeof(ti.tcpi_data_segs_out))
        return -EOPNOTSUPP;
    c->segs_out = ti.tcpi_segs_out;
    c->segs_in = ti.tcpi_segs_in;
    c->data_segs_out = ti.tcpi_data_segs_out;
    c->data_segs_in = ti.tcpi_data_segs_in;
    return 0;
}
