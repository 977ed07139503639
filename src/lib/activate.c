/* activate: systemd socket activation without libsystemd — the protocol is three
 * environment variables and descriptors from 3 on. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/activate.h"

int
sf_sock_kind(int fd, int *type, int *family, int *listening)
{
    socklen_t len = sizeof(int);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &len) < 0)
        return -errno;
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, family, &len) < 0)
        return -errno;
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, listening, &len) < 0)
        return -errno;
    return 0;
}

static long
parse_number(const char *s)
{
    char *end;
    long v;

    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    return errno != 0 || *end != '\0' ? -1 : v;
}

/* The i-th ':'-separated name of names (NULL: none) into out. */
static void
nth_name(const char *names, int i, char *out, size_t len)
{
    const char *p = names;

    out[0] = '\0';
    for (; p && i > 0; i--) {
        p = strchr(p, ':');
        if (p)
            p++;
    }
    if (p) {
        size_t n = strcspn(p, ":");

        if (n >= len)
            n = len - 1;
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

int
sf_activation_take(sf_passed *out, int max, sf_err *err)
{
    const char *names = getenv("LISTEN_FDNAMES");
    long pid = parse_number(getenv("LISTEN_PID"));
    long n = parse_number(getenv("LISTEN_FDS"));
    int rc = 0;

    if (pid != (long)getpid() || n <= 0)
        return 0;   /* not for us (a parent's, passed down) or nothing */
    if (n > max)
        return sf_err_set(err, SF_EUSAGE, "LISTEN_FDS=%ld: at most %d sockets", n, max);
    for (int i = 0; i < n && rc == 0; i++) {
        sf_passed *p = &out[i];
        int fl;

        p->fd = SF_LISTEN_FDS_START + i;
        rc = sf_sock_kind(p->fd, &p->type, &p->family, &p->listening);
        if (rc < 0) {
            sf_err_set(err, rc, "LISTEN_FDS: descriptor %d", p->fd);
            break;
        }
        fl = fcntl(p->fd, F_GETFD);
        if (fl < 0 || fcntl(p->fd, F_SETFD, fl | FD_CLOEXEC) < 0)
            rc = sf_err_set(err, -errno, "LISTEN_FDS: fcntl %d", p->fd);
        nth_name(names, i, p->name, sizeof(p->name));
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc < 0 ? rc : (int)n;
}
