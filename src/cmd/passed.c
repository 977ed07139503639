/* passed: sockets handed to us rather than bound — systemd socket activation
 * (LISTEN_FDS) matched to the services named on the command line, and the one connection
 * inetd (or systemd's Accept=yes) passes on standard input. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "passed.h"
#include "sockflow/activate.h"

/* The service of SERVICE[:PORT] spec, or NULL. */
static const sf_service *
spec_service(const char *spec)
{
    char name[64];
    size_t n = strcspn(spec, ":");

    if (n >= sizeof(name))
        return NULL;
    memcpy(name, spec, n);
    name[n] = '\0';
    return sf_service_find(name);
}

/* A passed socket named SERVICE or SERVICE.socket (FileDescriptorName=, or the unit's
 * name) goes to that service; unnamed ones to the services in the order given. */
static const sf_service *
match(const sf_passed *p, int i, const sf_service *const *svcs, int nsvcs)
{
    for (int k = 0; k < nsvcs; k++) {
        size_t n = strlen(svcs[k]->name);

        if (strncmp(p->name, svcs[k]->name, n) == 0 &&
            (p->name[n] == '\0' || strcmp(p->name + n, ".socket") == 0))
            return svcs[k];
    }
    return i < nsvcs ? svcs[i] : NULL;
}

int
cmd_serve_passed(sf_server *s, const sf_service *const *svcs, int nsvcs, int *taken)
{
    sf_passed p[SF_PASSED_MAX];
    sf_err err;
    int n = sf_activation_take(p, SF_PASSED_MAX, &err), rc = 0;

    *taken = n > 0;
    if (n < 0)
        return cmd_fail("%s", err.msg);
    for (int i = 0; i < n; i++) {
        const sf_service *svc = rc == 0 ? match(&p[i], i, svcs, nsvcs) : NULL;

        if (rc != 0) {
            close(p[i].fd);
        } else if (svc == NULL) {
            close(p[i].fd);
            rc = cmd_fail("LISTEN_FDS: %d sockets for %d services: name each socket after "
                          "its service (FileDescriptorName=echo)", n, nsvcs);
        } else if (sf_server_adopt(s, svc, p[i].fd, &err) < 0) {
            rc = cmd_fail("LISTEN_FDS: %s", err.msg);
        }
    }
    return rc;
}

/* Whether descriptors a and b are the same open socket. */
static int
same_file(int a, int b)
{
    struct stat sa, sb;

    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int
cmd_inetd_take_stdin(int *fd)
{
    int type, family, listening, null;

    if (sf_sock_kind(0, &type, &family, &listening) < 0 || type != SOCK_STREAM || listening)
        return cmd_fail("--inetd: standard input is not a connected stream socket");
    *fd = fcntl(0, F_DUPFD_CLOEXEC, 3);
    if (*fd < 0)
        return cmd_fail("--inetd: fcntl: %s", strerror(errno));
    /* Nothing of ours may reach the client by accident: standard output (and standard
     * error, where inetd made it the socket too) go to /dev/null. */
    null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        if (same_file(2, *fd))
            dup2(null, 2);
        dup2(null, 0);
        dup2(null, 1);
        close(null);
    }
    return 0;
}

int
cmd_serve_inetd(sf_server *s, char **specs, int nspecs)
{
    const sf_service *svc = nspecs == 1 ? spec_service(specs[0]) : NULL;
    sf_err err;
    int fd, rc;

    if (svc == NULL)
        return cmd_usage_error("serve", "--inetd: name one service (echo, chat ...) to run "
                               "on the connection");
    if ((rc = cmd_inetd_take_stdin(&fd)) != 0)
        return rc;
    if (sf_server_adopt_conn(s, svc, fd, &err) < 0)
        return cmd_fail("--inetd: %s", err.msg);
    return 0;
}
