/* udp_echo.c - blocking recvfrom/sendto UDP echo server (benchmark peer). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_term(int signo)
{
    (void)signo;
    _exit(0);
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr, peer;
    socklen_t len = sizeof(addr);
    char buf[65536];
    ssize_t n;
    int fd;

    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);

    fd = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("udp_echo: bind");
        return 1;
    }
    getsockname(fd, (struct sockaddr *)&addr, &len);
    printf("listening on udp 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    for (;;) {
        len = sizeof(peer);
        n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("udp_echo: recvfrom");
            return 1;
        }
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
    }
}
