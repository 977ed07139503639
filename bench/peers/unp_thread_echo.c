/* unp_thread_echo.c - thread-per-connection TCP echo server, UNP style (benchmark peer). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ 16384

static ssize_t writen(int fd, const void *vptr, size_t n)
{
    const char *ptr = vptr;
    size_t nleft = n;
    ssize_t nwritten;

    while (nleft > 0) {
        if ((nwritten = write(fd, ptr, nleft)) <= 0) {
            if (nwritten < 0 && errno == EINTR)
                continue;
            return -1;
        }
        nleft -= (size_t)nwritten;
        ptr += nwritten;
    }
    return (ssize_t)n;
}

static void str_echo(int sockfd)
{
    char buf[BUFSZ];
    ssize_t n;

    for (;;) {
        n = read(sockfd, buf, sizeof(buf));
        if (n > 0) {
            if (writen(sockfd, buf, (size_t)n) < 0)
                return;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return; /* EOF or error */
        }
    }
}

static void *doit(void *arg)
{
    int connfd = (int)(intptr_t)arg;

    str_echo(connfd);
    close(connfd);
    return NULL;
}

static void on_term(int signo)
{
    (void)signo;
    _exit(0);
}

int main(int argc, char **argv)
{
    struct sockaddr_in servaddr;
    socklen_t len = sizeof(servaddr);
    struct sigaction sa;
    pthread_attr_t attr;
    pthread_t tid;
    int listenfd, connfd, on = 1;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    listenfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listenfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    memset(&servaddr, 0, sizeof(servaddr));
    servaddr.sin_family = AF_INET;
    servaddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    servaddr.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
    if (bind(listenfd, (struct sockaddr *)&servaddr, sizeof(servaddr)) < 0 ||
        listen(listenfd, SOMAXCONN) < 0) {
        perror("unp_thread_echo: bind/listen");
        return 1;
    }
    getsockname(listenfd, (struct sockaddr *)&servaddr, &len);
    printf("listening on tcp 127.0.0.1:%d\n", ntohs(servaddr.sin_port));
    fflush(stdout);

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        if ((connfd = accept(listenfd, NULL, NULL)) < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("unp_thread_echo: accept");
            return 1;
        }
        setsockopt(connfd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        if (pthread_create(&tid, &attr, doit, (void *)(intptr_t)connfd) != 0)
            close(connfd);
    }
}
