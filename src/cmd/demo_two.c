/* demo_two: the seed's section 8, the listening socket and the connected socket. The
 * server runs in a process of its own, as the seed's server does, so its descriptors
 * are the seed's: 3 for the listening socket, 4 for the first connection. The two
 * processes take turns over a pipe, so the output is the same from run to run. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "demo.h"

#define ST(s) sf_tcp_state_name(s)
#define HIGH_FD 100         /* the child's own descriptors move up here, out of the way */

/* What the server process reports at the end. */
typedef struct report {
    int lfd, afd[2], peer_port[2], lfd_used, listening;
} report;

/* Wait (bounded) for one message on fd. */
static int
get(int fd, void *buf, size_t len)
{
    if (!demo_wait_fd(fd, POLLIN, DEMO_WAIT_MS))
        return -1;
    return read(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

static void
put(int fd, const void *buf, size_t len)
{
    if (write(fd, buf, len) != (ssize_t)len)
        _exit(1);
}

/* In the child: keep only 0-2, the output and the two pipe ends, moved up high. */
static FILE *
fresh_descriptors(FILE *out, int *go, int *back)
{
    int o = fcntl(fileno(out), F_DUPFD_CLOEXEC, HIGH_FD);

    *go = fcntl(*go, F_DUPFD_CLOEXEC, HIGH_FD + 1);
    *back = fcntl(*back, F_DUPFD_CLOEXEC, HIGH_FD + 2);
    for (int fd = 3; fd < HIGH_FD; fd++)
        close(fd);
    return fdopen(o, "w");
}

/* Serve one client on a new connected socket: talk, then close it when it hangs up. */
static void
serve_one(demo *d, int lfd, int go, int back, report *r, int i)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    const sf_trace si = { &d->tracer, "server", (unsigned long)i + 1 };
    char buf[16], c;
    sf_addr peer;
    ssize_t n;
    int afd;

    if (get(go, &c, 1) < 0)
        _exit(1);
    afd = sf_tcp_accept_blocking(&srv, lfd, &peer);
    r->lfd_used = r->lfd_used && demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->fd == lfd;
    r->afd[i] = afd;
    r->peer_port[i] = sf_addr_port(&peer);
    n = afd >= 0 ? sf_read(&si, afd, buf, sizeof(buf)) : -1;
    if (n > 0)
        sf_write_full(&si, afd, buf, (size_t)n);
    put(back, "r", 1);
    if (get(go, &c, 1) < 0)
        _exit(1);
    if (afd >= 0) {
        sf_read(&si, afd, buf, sizeof(buf));
        sf_close(&si, afd);
    }
    put(back, "c", 1);
}

static void
server_process(demo *d, int go, int back)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    FILE *out = fresh_descriptors(d->sink.out, &go, &back);
    report r = { .lfd_used = 1 };
    sf_addr a;
    int port;

    if (out == NULL)
        _exit(1);
    d->sink.out = d->phone.out = out;
    r.lfd = demo_listen(&srv, AF_INET, 8, 1, &a);
    port = r.lfd >= 0 ? sf_addr_port(&a) : -1;
    put(back, &port, sizeof(port));
    for (int i = 0; i < 2 && r.lfd >= 0; i++)
        serve_one(d, r.lfd, go, back, &r, i);
    r.listening = sf_tcp_state(r.lfd, NULL, NULL) == SF_TCP_LISTEN;
    sf_close(&srv, r.lfd);
    put(back, &r, sizeof(r));
    fflush(out);
    _exit(0);
}

/* One client, in step with the server process. */
static int
client_turn(demo *d, int go, int back, const sf_addr *a, int i)
{
    const sf_trace c = { &d->tracer, "client", (unsigned long)i + 1 };
    char buf[16], msg;
    int cfd = demo_connect(&c, a);

    if (cfd < 0)
        return -1;
    sf_write_full(&c, cfd, i ? "two\n" : "one\n", 4);
    put(go, "g", 1);
    if (get(back, &msg, 1) < 0)
        return -1;
    sf_read_full(&c, cfd, buf, 4);
    sf_close(&c, cfd);
    put(go, "g", 1);
    return get(back, &msg, 1);
}

static void
check_report(demo *d, const report *r)
{
    demo_check(d, r->lfd == 3 && r->lfd_used,
               Z(d, "the listening socket is descriptor %d (the first free one after 0, 1, 2):"
                 " made by socket(), passed to bind(), listen() and every accept()",
                 "监听套接字是描述符 %d（0、1、2 之后第一个空闲的）：由 socket() 创建，随后"
                 "用作 bind()、listen() 和每次 accept() 的第一个参数"), r->lfd);
    demo_check(d, r->afd[0] == 4, Z(d, "accept() returned the connected socket descriptor %d"
                                    " for the first client", "accept() 为第一个客户返回了已连接"
                                    "套接字描述符 %d"), r->afd[0]);
    demo_check(d, r->afd[1] == r->afd[0] && r->peer_port[1] != r->peer_port[0],
               Z(d, "after close() of the first, accept() again gave a new connected socket"
                 " for the next client: descriptor %d again (the number is reused), another"
                 " connection (peer port %d, then %d)", "关闭第一个之后，再次调用 accept() 为下"
                 "一个客户得到新的已连接套接字：又是描述符 %d（号码被重用），却是另一个连接（对端"
                 "端口 %d，然后是 %d）"), r->afd[1], r->peer_port[0], r->peer_port[1]);
    demo_check(d, r->listening, Z(d, "one listening socket for the server's whole life: it"
                                  " was still LISTEN after both clients were served",
                                  "服务器在整个生命周期内只有一个监听套接字：两个客户都服务完之后"
                                  "它仍是 LISTEN"));
}

int
demo_two_sockets(demo *d)
{
    int go[2], back[2], port, status, rc = EXIT_FAIL;
    report r;
    pid_t pid;
    sf_addr a;

    if (pipe2(go, O_CLOEXEC) < 0 || pipe2(back, O_CLOEXEC) < 0)
        return cmd_fail("pipe: %s", strerror(errno));
    fflush(d->sink.out);
    if ((pid = fork()) < 0)
        return cmd_fail("fork: %s", strerror(errno));
    if (pid == 0) {
        close(go[1]);
        close(back[0]);
        server_process(d, go[0], back[1]);
    }
    close(go[0]);
    close(back[1]);
    if (get(back[0], &port, sizeof(port)) == 0 && port > 0) {
        sf_addr_loopback(&a, AF_INET, port);
        if (client_turn(d, go[1], back[0], &a, 0) == 0 &&
            client_turn(d, go[1], back[0], &a, 1) == 0 &&
            get(back[0], &r, sizeof(r)) == 0) {
            check_report(d, &r);
            rc = EXIT_OK;
        }
    }
    close(go[1]);
    close(back[0]);
    if (rc != EXIT_OK)
        kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return rc == EXIT_OK ? EXIT_OK : cmd_fail("section 8: the server process did not answer");
}
