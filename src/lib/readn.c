/* readn: the full read and write loops (Stevens' readn/writen) over sf_read and sf_write,
 * each call of which is traced on its own. */
#include "sockflow/sock.h"

ssize_t
sf_read_full(const sf_trace *t, int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = sf_read(t, fd, (char *)buf + got, len - got);

        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t
sf_write_full(const sf_trace *t, int fd, const void *buf, size_t len)
{
    size_t put = 0;

    while (put < len) {
        ssize_t n = sf_write(t, fd, (const char *)buf + put, len - put);

        if (n < 0)
            return n;
        put += (size_t)n;
    }
    return (ssize_t)put;
}
