/* tcp_client: the TCP client flow on libsockflow — socket, connect (the kernel picks our
 * port), write, half-close, read the reply to the end, close.
 * usage: tcp_client HOST PORT MESSAGE */
#include <stdio.h>
#include <string.h>

#include <sockflow/sockflow.h>

int
main(int argc, char **argv)
{
    char buf[4096];
    sf_addr_list addrs;
    sf_err err;
    ssize_t n;
    int fd;

    if (argc != 4) {
        fprintf(stderr, "usage: tcp_client HOST PORT MESSAGE\n");
        return 2;
    }
    if (sf_addr_resolve(argv[1], argv[2], 0, &addrs, &err) < 0 ||
        (fd = sf_tcp_connect_list(NULL, &addrs, NULL, 5000, 0, &err)) < 0) {
        fprintf(stderr, "tcp_client: %s\n", err.msg);
        return 1;
    }
    if (sf_write_full(NULL, fd, argv[3], strlen(argv[3])) < 0 ||
        sf_shutdown_write(NULL, fd) < 0) {                  /* FIN: "that is all" */
        perror("tcp_client: write");
        return 1;
    }
    while ((n = sf_read(NULL, fd, buf, sizeof(buf))) > 0)   /* until the server closes */
        fwrite(buf, 1, (size_t)n, stdout);
    sf_close(NULL, fd);
    return n < 0;
}
