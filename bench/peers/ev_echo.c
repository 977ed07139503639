/* ev_echo.c - TCP echo server using libevent bufferevents (benchmark peer). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short events, void *arg)
{
    (void)arg;
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    struct event_base *base = evconnlistener_get_base(l);
    struct bufferevent *bev;
    int one = 1;
    (void)sa; (void)salen; (void)arg;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void signal_cb(evutil_socket_t sig, short events, void *arg)
{
    (void)sig; (void)events;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    struct event_base *base = event_base_new();
    struct evconnlistener *listener;
    struct event *sigterm_ev, *sigint_ev;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    /* libevent writes with write(): a client that resets mid-echo must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)(argc > 1 ? atoi(argv[1]) : 0));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    listener = evconnlistener_new_bind(base, accept_cb, NULL,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                       1024, (struct sockaddr *)&sin, sizeof(sin));
    if (!listener) {
        perror("ev_echo: evconnlistener_new_bind");
        return 1;
    }
    getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&sin, &len);

    sigterm_ev = evsignal_new(base, SIGTERM, signal_cb, base);
    sigint_ev = evsignal_new(base, SIGINT, signal_cb, base);
    event_add(sigterm_ev, NULL);
    event_add(sigint_ev, NULL);

    printf("listening on tcp 127.0.0.1:%d\n", ntohs(sin.sin_port));
    fflush(stdout);
    event_base_dispatch(base);

    event_free(sigterm_ev);
    event_free(sigint_ev);
    evconnlistener_free(listener);
    event_base_free(base);
    return 0;
}
