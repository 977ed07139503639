/* sockinfo: what a descriptor itself says: its nonblocking flag, its local and peer
 * addresses, its pending error. No call here is traced: none is a step of the flow. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "sockflow/sock.h"

int
sf_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -errno;
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

int
sf_local_addr(int fd, sf_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = sizeof(a->ss);
    return getsockname(fd, (struct sockaddr *)&a->ss, &a->len) < 0 ? -errno : 0;
}

int
sf_peer_addr(int fd, sf_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->len = sizeof(a->ss);
    return getpeername(fd, (struct sockaddr *)&a->ss, &a->len) < 0 ? -errno : 0;
}

int
sf_sock_error(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return -errno;
    return -e;
}
