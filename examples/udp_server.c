/* udp_server: the UDP server flow on libsockflow — socket, bind, then recvfrom and
 * sendto back to the sender's address. No listen, no accept: no connection at all.
 * usage: udp_server [PORT]   (0 or none: the kernel picks one, printed) */
#include <stdio.h>
#include <stdlib.h>

#include <sockflow/sockflow.h>

int
main(int argc, char **argv)
{
    sf_listen_opts opts = { .blocking = 1 };
    char buf[65536], where[SF_ADDR_STRLEN];
    sf_addr addr;
    sf_err err;
    int fd;

    sf_addr_loopback(&addr, AF_INET, argc > 1 ? atoi(argv[1]) : 0);
    fd = sf_udp_bind(NULL, &addr, &opts, &err);          /* socket, bind */
    if (fd < 0) {
        fprintf(stderr, "udp_server: %s\n", err.msg);
        return 1;
    }
    sf_local_addr(fd, &addr);
    printf("listening on udp %s\n", sf_addr_format(&addr, where, sizeof(where)));
    fflush(stdout);
    for (;;) {
        sf_addr from;
        int truncated;
        ssize_t n = sf_recvfrom(NULL, fd, buf, sizeof(buf), &from, &truncated);

        if (n >= 0 && !truncated)                        /* the reply goes to the sender */
            sf_sendto(NULL, fd, buf, (size_t)n, &from);
    }
}
