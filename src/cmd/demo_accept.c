/* demo_accept: sections 4 and 5, listen() and a blocking accept(), and accept()'s edges. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "demo.h"

#define DIAL_DELAY_MS 300   /* how long the server sleeps in accept() */

/* ---- 4. listen() and a blocking accept() ---- */

#define MAX_CAPTURE 8

/* Events of the accepting thread, held until it is joined, so that the output does not
 * depend on which thread the scheduler runs first. */
typedef struct capture {
    sf_tracer tracer;
    int n;
    sf_trace_event ev[MAX_CAPTURE];
    char text[MAX_CAPTURE][3][SF_ADDR_STRLEN];
} capture;

static void
capture_event(void *ud, const sf_trace_event *ev)
{
    capture *c = ud;
    sf_trace_event *e;

    if (c->n == MAX_CAPTURE)
        return;
    e = &c->ev[c->n];
    *e = *ev;
    snprintf(c->text[c->n][0], SF_ADDR_STRLEN, "%s", ev->args);
    snprintf(c->text[c->n][1], SF_ADDR_STRLEN, "%s", ev->local ? ev->local : "");
    snprintf(c->text[c->n][2], SF_ADDR_STRLEN, "%s", ev->peer ? ev->peer : "");
    e->args = c->text[c->n][0];
    e->local = ev->local ? c->text[c->n][1] : NULL;
    e->peer = ev->peer ? c->text[c->n][2] : NULL;
    e->addr = NULL;
    e->data = NULL;
    e->datalen = 0;
    c->n++;
}

typedef struct acceptor {
    int lfd, fd;
    sf_addr peer;
    uint64_t waited_ns;
    capture cap;
} acceptor;

static void *
accept_thread(void *arg)
{
    acceptor *a = arg;
    const sf_trace srv = { &a->cap.tracer, "server", 0 };
    uint64_t t0 = sf_now_ns();

    a->fd = sf_tcp_accept_blocking(&srv, a->lfd, &a->peer);
    a->waited_ns = sf_now_ns() - t0;
    return NULL;
}

int
demo_blocking_accept(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 }, cli = { &d->tracer, "client", 0 };
    acceptor acc = { .fd = -1 };
    struct timespec deadline;
    char who[SF_ADDR_STRLEN];
    pthread_t th;
    sf_addr a;
    int cfd, joined;

    acc.cap.tracer = (sf_tracer){ capture_event, &acc.cap, 0, NULL, 0 };
    if ((acc.lfd = demo_listen(&srv, 8, 1, &a)) < 0)
        return EXIT_FAIL;
    demo_check(d, demo_seen(d, "server", 0, SF_CALL_BIND)->state == SF_TCP_CLOSE &&
          demo_seen(d, "server", 0, SF_CALL_LISTEN)->state == SF_TCP_LISTEN,
          "after bind() the socket is %s; listen() moved it to %s",
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_BIND)->state),
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_LISTEN)->state));
    if (pthread_create(&th, NULL, accept_thread, &acc) != 0) {
        sf_close(&srv, acc.lfd);
        return cmd_fail("pthread_create failed");
    }
    demo_say(d, "the server calls a blocking accept() with nobody calling: it sleeps; the client"
        " dials %.1f s later", DIAL_DELAY_MS / 1000.0);
    demo_sleep_ms(DIAL_DELAY_MS);
    cfd = demo_connect(&cli, &a);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += DEMO_WAIT_MS / 1000;
    joined = pthread_timedjoin_np(th, NULL, &deadline) == 0;
    if (!joined) {
        /* Nobody came: shutdown() wakes the sleeping accept() with an error. */
        shutdown(acc.lfd, SHUT_RDWR);
        pthread_join(th, NULL);
    }
    demo_say(d, "the accepting thread's calls, printed once it is joined:");
    for (int i = 0; i < acc.cap.n; i++)
        demo_event(d, &acc.cap.ev[i]);
    demo_check(d, acc.fd >= 0 && acc.waited_ns >= (uint64_t)(DIAL_DELAY_MS - 50) * 1000000u,
          "accept() slept %.3f s, until the client arrived", (double)acc.waited_ns / 1e9);
    demo_check(d, acc.fd >= 0 && acc.fd != acc.lfd &&
          demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->state == SF_TCP_ESTABLISHED &&
          demo_seen(d, "client", 0, SF_CALL_CONNECT_DONE)->state == SF_TCP_ESTABLISHED,
          "it returned only after the three-way handshake: a new descriptor %d, already %s,"
          " for %s; the listening descriptor %d stays in %s", acc.fd,
          sf_tcp_state_name(demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->state),
          acc.fd >= 0 ? sf_addr_format(&acc.peer, who, sizeof(who)) : "-", acc.lfd,
          sf_tcp_state_name(sf_tcp_state(acc.lfd, NULL, NULL)));
    if (cfd >= 0)
        sf_close(&cli, cfd);
    if (acc.fd >= 0)
        sf_close(&srv, acc.fd);
    sf_close(&srv, acc.lfd);
    return acc.fd >= 0 && cfd >= 0 ? EXIT_OK : EXIT_FAIL;
}

/* ---- 5. when accept() fails or tells nothing ---- */

int
demo_accept_edges(demo *d)
{
    const sf_trace srv = { &d->tracer, "server", 0 };
    const sf_trace c1 = { &d->tracer, "client", 1 }, c2 = { &d->tracer, "client", 2 };
    char who[SF_ADDR_STRLEN];
    int lfd, cfd1 = -1, cfd2 = -1, afd1 = -1, afd2 = -1, r, rc = EXIT_FAIL;
    sf_addr a, peer, p2;

    if ((lfd = demo_listen(&srv, 8, 0, &a)) < 0)
        return EXIT_FAIL;
    demo_say(d, "a nonblocking listening socket, and nobody calling yet");
    r = sf_tcp_accept(&srv, lfd, &peer);
    demo_check(d, r == SF_EAGAIN && demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EAGAIN,
          "accept() returned -1 with errno %s at once instead of sleeping",
          sf_errname(-demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err));
    if ((cfd1 = demo_connect(&c1, &a)) < 0)
        goto out;
    afd1 = demo_accept_next(&srv, lfd, &peer);
    if (afd1 < 0)
        goto out;
    demo_say(d, "accept() on the connected descriptor %d, which is no listener:", afd1);
    r = sf_tcp_accept(&srv, afd1, NULL);
    demo_check(d, r == -EINVAL && demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->err == EINVAL,
          "accept() failed with %s: a connected socket cannot accept connections",
          sf_errname(r));
    if ((cfd2 = demo_connect(&c2, &a)) < 0)
        goto out;
    demo_say(d, "accept() with a NULL address: the caller does not ask who is calling");
    afd2 = demo_accept_next(&srv, lfd, NULL);
    if (afd2 < 0)
        goto out;
    sf_peer_addr(afd2, &p2);
    demo_check(d, (demo_seen(d, "server", 0, SF_CALL_ACCEPT4)->notes & SF_TRACE_N_NO_ADDR) != 0,
          "accept() returned descriptor %d and filled in no peer address; getpeername() can"
          " still tell: %s", afd2, sf_addr_format(&p2, who, sizeof(who)));
    rc = EXIT_OK;
out:
    if (rc != EXIT_OK)
        cmd_fail("accept: %s", strerror(errno));
    demo_close_quietly(&cfd1);
    demo_close_quietly(&cfd2);
    demo_close_quietly(&afd1);
    demo_close_quietly(&afd2);
    demo_close_quietly(&lfd);
    demo_say(d, "(the descriptors of this section are closed quietly)");
    return rc;
}
