/* udp_client: the UDP client flow on libsockflow — socket, connect (fixes the peer so an
 * ICMP "port unreachable" comes back as ECONNREFUSED), send, receive the reply.
 * usage: udp_client HOST PORT MESSAGE */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <sockflow/sockflow.h>

int
main(int argc, char **argv)
{
    struct pollfd p;
    char buf[65536];
    sf_addr_list addrs;
    sf_err err;
    ssize_t n;
    int fd;

    if (argc != 4) {
        fprintf(stderr, "usage: udp_client HOST PORT MESSAGE\n");
        return 2;
    }
    if (sf_addr_resolve(argv[1], argv[2], SF_ADDR_DGRAM, &addrs, &err) < 0 ||
        (fd = sf_udp_connect(NULL, &addrs.a[0], NULL, 0, &err)) < 0) {
        fprintf(stderr, "udp_client: %s\n", err.msg);
        return 1;
    }
    n = sf_sendto(NULL, fd, argv[3], strlen(argv[3]), NULL);
    p = (struct pollfd){ .fd = fd, .events = POLLIN };
    if (n >= 0 && poll(&p, 1, 2000) == 0) {                  /* a datagram may be lost */
        fprintf(stderr, "udp_client: no reply within 2 s\n");
        return 1;
    }
    if (n >= 0)
        n = sf_read(NULL, fd, buf, sizeof(buf));
    if (n < 0) {
        fprintf(stderr, "udp_client: %s %s:%s: %s\n", "recv", argv[1], argv[2], sf_strerror((int)n));
        return 1;
    }
    fwrite(buf, 1, (size_t)n, stdout);
    sf_close(NULL, fd);
    return 0;
}
