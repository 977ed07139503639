/* unp_fork_echo.c - fork-per-connection TCP echo server, UNP style (benchmark peer). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

static void sig_chld(int signo)
{
    int saved = errno, stat;

    (void)signo;
    while (waitpid(-1, &stat, WNOHANG) > 0)
        ;
    errno = saved;
}

static void sig_term(int signo)
{
    (void)signo;
    _exit(0);
}

static void set_handler(int signo, void (*fn)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(signo, &sa, NULL); /* no SA_RESTART: accept sees EINTR */
}

int main(int argc, char **argv)
{
    struct sockaddr_in servaddr;
    socklen_t len = sizeof(servaddr);
    int listenfd, connfd, on = 1;
    pid_t pid;

    set_handler(SIGCHLD, sig_chld);
    set_handler(SIGTERM, sig_term);
    set_handler(SIGINT, sig_term);
    signal(SIGPIPE, SIG_IGN);

    listenfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(listenfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    memset(&servaddr, 0, sizeof(servaddr));
    servaddr.sin_family = AF_INET;
    servaddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    servaddr.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
    if (bind(listenfd, (struct sockaddr *)&servaddr, sizeof(servaddr)) < 0 ||
        listen(listenfd, SOMAXCONN) < 0) {
        perror("unp_fork_echo: bind/listen");
        return 1;
    }
    getsockname(listenfd, (struct sockaddr *)&servaddr, &len);
    printf("listening on tcp 127.0.0.1:%d\n", ntohs(servaddr.sin_port));
    fflush(stdout);

    for (;;) {
        if ((connfd = accept(listenfd, NULL, NULL)) < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("unp_fork_echo: accept");
            return 1;
        }
        setsockopt(connfd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        if ((pid = fork()) == 0) {
            close(listenfd);
            str_echo(connfd);
            _exit(0);
        }
        if (pid < 0)
            perror("unp_fork_echo: fork");
        close(connfd);
    }
}
