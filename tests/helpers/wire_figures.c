/* wire_figures: a test helper that runs the seed's three exchanges on loopback (the TCP
 * flow, the UDP flow, the handshake), captures their segments, and writes the figures
 * as HTML to argv[1] and as terminal ladders to standard output.
 * Exit 0; 77 when no capture is possible here (reason on standard error); 1 on failure. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockflow/sockflow.h"

#define MAX_EV 64

/* The calls of one exchange, from both threads. */
typedef struct run {
    pthread_mutex_t mu;
    sf_ladder_event ev[MAX_EV];
    char args[MAX_EV][64];
    size_t n;
    int lfd, port;
    int udp, talk;              /* UDP; TCP with data after the handshake */
} run;

/* Make a call, timing its entry and return, and record it. */
#define CALL(r, side, name, expr, ...)                                                  \
    ({                                                                                  \
        uint64_t t0_ = sf_now_ns();                                                     \
        long rc_ = (long)(expr);                                                        \
        int err_ = rc_ < 0 ? errno : 0;                                                 \
        record(r, side, name, t0_, sf_now_ns(), rc_, err_, __VA_ARGS__);                \
        rc_;                                                                            \
    })

static void
record(run *r, int side, const char *name, uint64_t t0, uint64_t t1, long rc, int err,
       const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static void
record(run *r, int side, const char *name, uint64_t t0, uint64_t t1, long rc, int err,
       const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EV) {
        sf_ladder_event *e = &r->ev[r->n];

        va_start(ap, fmt);
        vsnprintf(r->args[r->n], sizeof(r->args[0]), fmt, ap);
        va_end(ap);
        *e = (sf_ladder_event){ .kind = SF_LADDER_CALL, .side = side, .t_ns = t0,
                                .t_end_ns = t1, .call = name, .args = r->args[r->n],
                                .result = rc, .err = err };
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

static struct sockaddr_in
loopback(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* The server's side up to listen (TCP) or bind (UDP), port 0. */
static int
server_setup(run *r)
{
    int type = r->udp ? SOCK_DGRAM : SOCK_STREAM;
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof(a);

    r->lfd = (int)CALL(r, SF_LADDER_SERVER, "socket", socket(AF_INET, type, 0), "AF_INET, %s",
                       type == SOCK_STREAM ? "SOCK_STREAM" : "SOCK_DGRAM");
    if (r->lfd < 0)
        return -1;
    if (CALL(r, SF_LADDER_SERVER, "bind", bind(r->lfd, (struct sockaddr *)&a, sizeof(a)),
             "127.0.0.1:0") < 0)
        return -1;
    getsockname(r->lfd, (struct sockaddr *)&a, &len);
    r->port = ntohs(a.sin_port);
    if (type == SOCK_STREAM &&
        CALL(r, SF_LADDER_SERVER, "listen", listen(r->lfd, 8), "backlog=8") < 0)
        return -1;
    return 0;
}

static void *
tcp_server(void *arg)
{
    run *r = arg;
    char buf[64];
    long n;
    int fd = (int)CALL(r, SF_LADDER_SERVER, "accept", accept(r->lfd, NULL, NULL), "%s", "");

    if (fd < 0 || !r->talk)
        goto done;      /* the handshake alone */
    n = CALL(r, SF_LADDER_SERVER, "read", read(fd, buf, sizeof(buf)), "len=%zu", sizeof(buf));
    if (n > 0)
        CALL(r, SF_LADDER_SERVER, "write", write(fd, buf, (size_t)n), "len=%ld", n);
    CALL(r, SF_LADDER_SERVER, "read", read(fd, buf, sizeof(buf)), "len=%zu", sizeof(buf));
done:
    if (fd >= 0)
        CALL(r, SF_LADDER_SERVER, "close", close(fd), "%s", "");
    return NULL;
}

static void *
udp_server(void *arg)
{
    run *r = arg;
    struct sockaddr_in from;
    socklen_t flen = sizeof(from);
    char buf[64];
    long n = CALL(r, SF_LADDER_SERVER, "recvfrom",
                  recvfrom(r->lfd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen),
                  "len=%zu", sizeof(buf));

    if (n > 0)
        CALL(r, SF_LADDER_SERVER, "sendto",
             sendto(r->lfd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen),
             "len=%ld", n);
    return NULL;
}

static void
tcp_client(run *r, int talk)
{
    struct sockaddr_in a = loopback(r->port);
    char buf[64];
    int fd = (int)CALL(r, SF_LADDER_CLIENT, "socket", socket(AF_INET, SOCK_STREAM, 0),
                       "AF_INET, SOCK_STREAM");

    CALL(r, SF_LADDER_CLIENT, "connect", connect(fd, (struct sockaddr *)&a, sizeof(a)),
         "127.0.0.1:%d", r->port);
    if (talk) {
        CALL(r, SF_LADDER_CLIENT, "write", write(fd, "hello", 5), "len=5");
        CALL(r, SF_LADDER_CLIENT, "read", read(fd, buf, sizeof(buf)), "len=%zu", sizeof(buf));
    }
    CALL(r, SF_LADDER_CLIENT, "close", close(fd), "%s", "");
}

static void
udp_client(run *r)
{
    struct sockaddr_in a = loopback(r->port);
    char buf[64];
    int fd = (int)CALL(r, SF_LADDER_CLIENT, "socket", socket(AF_INET, SOCK_DGRAM, 0),
                       "AF_INET, SOCK_DGRAM");

    CALL(r, SF_LADDER_CLIENT, "sendto",
         sendto(fd, "hello", 5, 0, (struct sockaddr *)&a, sizeof(a)), "len=5");
    CALL(r, SF_LADDER_CLIENT, "recvfrom", recvfrom(fd, buf, sizeof(buf), 0, NULL, NULL),
         "len=%zu", sizeof(buf));
    CALL(r, SF_LADDER_CLIENT, "close", close(fd), "%s", "");
}

/* One exchange: set up the server, capture its port, run both sides, add the segments.
 * section 1: TCP with data, 2: UDP, 7: the handshake alone. */
static int
exchange(run *r, int section, sf_err *err)
{
    sf_wire_filter f = { .protos = section == 2 ? SF_WIRE_P_UDP : SF_WIRE_P_TCP, .nports = 1 };
    const sf_segment *s;
    pthread_t th;
    sf_wire *w;
    size_t n;

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    r->udp = section == 2;
    r->talk = section == 1;
    if (server_setup(r) < 0)
        return sf_err_set(err, -errno, "server set-up");
    f.ports[0] = (uint16_t)r->port;
    if (sf_wire_open(&w, NULL, &f, err) < 0 || sf_wire_start(w, 64, err) < 0)
        return -1;
    pthread_create(&th, NULL, section == 2 ? udp_server : tcp_server, r);
    usleep(20000);      /* the server is asleep in accept() or recvfrom() */
    if (section == 2)
        udp_client(r);
    else
        tcp_client(r, section == 1);
    pthread_join(th, NULL);
    CALL(r, SF_LADDER_SERVER, "close", close(r->lfd), "%s", "");
    sf_wire_stop(w, 20);
    s = sf_wire_segments(w, &n);
    for (size_t i = 0; i < n && r->n < MAX_EV; i++)
        sf_wire_to_ladder(&s[i], r->port, &r->ev[r->n++]);
    sf_wire_close(w);
    return 0;
}

int
main(int argc, char **argv)
{
    static run runs[3];
    static const int sections[3] = { 1, 2, 7 };
    sf_ladder_figure figs[3];
    sf_err err;
    FILE *out;

    if (argc != 2) {
        fprintf(stderr, "usage: wire_figures OUT.html\n");
        return 2;
    }
    if (geteuid() != 0 && sf_wire_enter_netns(&err) < 0) {
        fprintf(stderr, "no capture here: %s\n", err.msg);
        return 77;
    }
    for (int i = 0; i < 3; i++) {
        if (exchange(&runs[i], sections[i], &err) < 0) {
            fprintf(stderr, "%s\n", err.msg);
            return err.code == -EPERM ? 77 : 1;
        }
        figs[i] = (sf_ladder_figure){ sections[i], NULL, runs[i].ev, runs[i].n };
        printf("== figure %d\n", sections[i]);
        if (sf_ladder_text(stdout, runs[i].ev, runs[i].n, 0) < 0)
            return 1;
    }
    if ((out = fopen(argv[1], "w")) == NULL) {
        fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    if (sf_ladder_html(out, NULL, figs, 3) < 0 || fclose(out) != 0) {
        fprintf(stderr, "write %s: failed\n", argv[1]);
        return 1;
    }
    return 0;
}
