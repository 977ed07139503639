/* tcp_server: the TCP server flow on libsockflow — socket, bind, listen, then for each
 * client accept, read/write until it hangs up, close. One client at a time, as in the
 * textbook; `sockflow serve` is the event-driven version.
 * usage: tcp_server [PORT]   (0 or none: the kernel picks one, printed) */
#include <stdio.h>
#include <stdlib.h>

#include <sockflow/sockflow.h>

int
main(int argc, char **argv)
{
    sf_listen_opts opts = { .backlog = 16, .blocking = 1 };
    char buf[4096], where[SF_ADDR_STRLEN];
    sf_addr addr;
    sf_err err;
    int lfd;

    sf_addr_loopback(&addr, AF_INET, argc > 1 ? atoi(argv[1]) : 0);
    lfd = sf_tcp_listen(NULL, &addr, &opts, &err);       /* socket, bind, listen */
    if (lfd < 0) {
        fprintf(stderr, "tcp_server: %s\n", err.msg);
        return 1;
    }
    sf_local_addr(lfd, &addr);
    printf("listening on tcp %s\n", sf_addr_format(&addr, where, sizeof(where)));
    fflush(stdout);
    for (;;) {
        sf_addr peer;
        int fd = sf_tcp_accept_blocking(NULL, lfd, &peer);  /* a new socket per client */
        ssize_t n;

        if (fd < 0) {
            fprintf(stderr, "tcp_server: accept: %s\n", sf_strerror(fd));
            continue;
        }
        while ((n = sf_read(NULL, fd, buf, sizeof(buf))) > 0)   /* 0: the client closed */
            if (sf_write_full(NULL, fd, buf, (size_t)n) < 0)
                break;
        sf_close(NULL, fd);
    }
}
