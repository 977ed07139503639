/* test_relay: input → socket → output over TCP and UDP, from pipes and regular files. */
#include "unit.h"

/* A regular file holding len bytes of p, at offset 0. */
static int
file_with(const void *p, size_t len)
{
    FILE *f = tmpfile();
    int fd;

    assert_non_null(f);
    fd = dup(fileno(f));
    fclose(f);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static int
empty_file(void)
{
    return file_with("", 0);
}

/* The whole content of a regular file (up to cap bytes). */
static size_t
file_content(int fd, char *buf, size_t cap)
{
    ssize_t n;
    size_t got = 0;

    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

/* A pipe whose read end holds len bytes of p and whose write end is closed. */
static int
pipe_with(const void *p, size_t len)
{
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], p, len), len);
    close(fds[1]);
    return fds[0];
}

/* ---- peers in threads (they record; the test asserts) ---- */

/* Reads until the end of the stream, then answers with a line naming the count. */
typedef struct answer_peer {
    int fd;
    char got[256];
    size_t n;
    int saw_eof;
    int keep_open;      /* leave the socket open after answering */
} answer_peer;

static void *
answer_main(void *arg)
{
    answer_peer *p = arg;
    char line[64];
    int len;

    for (;;) {
        ssize_t r;

        if (unit_poll(p->fd, POLLIN, UNIT_WAIT_MS) == 0)
            return NULL;
        r = read(p->fd, p->got + p->n, sizeof(p->got) - p->n);
        if (r <= 0) {
            p->saw_eof = r == 0;
            break;
        }
        p->n += (size_t)r;
    }
    len = snprintf(line, sizeof(line), "reply:%zu\n", p->n);
    if (sf_write_full(NULL, p->fd, line, (size_t)len) != len)
        return NULL;
    if (!p->keep_open)
        close(p->fd);
    return NULL;
}

/* Echoes everything back, then half-closes and closes at the end of the stream. */
typedef struct echo_peer {
    int fd;
    int slow;
    size_t n;
    int ok;
} echo_peer;

static void *
echo_main(void *arg)
{
    echo_peer *p = arg;
    char buf[8192];

    for (;;) {
        ssize_t r;

        if (unit_poll(p->fd, POLLIN, UNIT_WAIT_MS) == 0)
            return NULL;
        r = read(p->fd, buf, sizeof(buf));
        if (r < 0)
            return NULL;
        if (r == 0)
            break;
        if (sf_write_full(NULL, p->fd, buf, (size_t)r) != r)
            return NULL;
        p->n += (size_t)r;
        /* slower than the input, so that the relay holds its input back often */
        if (p->slow)
            unit_sleep_ms(1);
    }
    p->ok = 1;
    close(p->fd);
    return NULL;
}

/* Writes len bytes of p to fd, then closes it. */
typedef struct feeder {
    int fd;
    const char *p;
    size_t len;
    ssize_t rc;
} feeder;

static void *
feed_main(void *arg)
{
    feeder *f = arg;

    f->rc = sf_write_full(NULL, f->fd, f->p, f->len);
    close(f->fd);
    return NULL;
}

typedef struct count_calls {
    int shutdowns;
    int writes;
} count_calls;

static void
count_event(void *ud, const sf_trace_event *ev)
{
    count_calls *c = ud;

    if (ev->call == SF_CALL_SHUTDOWN)
        c->shutdowns++;
    if (ev->call == SF_CALL_WRITE)
        c->writes++;
}

/* ---- the fixture: a connected pair, a peer in a thread, one relay run ---- */

typedef struct fixture {
    sf_relay_opts o;        /* in_fd given by the test; out_fd an empty file unless set */
    sf_relay_stats st;
    int peer_fd;            /* the peer's end (the thread's) */
    int lfd;
    pthread_t th;
    int threaded;
    sf_err err;
    uint64_t took_ms;
} fixture;

/* A socket pair for the relay and a peer: AF_UNIX, or real TCP over loopback (for
 * resets and acknowledgements). The peer's end is blocking. */
static void
fx_pair(fixture *f, int tcp)
{
    int sv[2];

    f->lfd = -1;
    if (tcp) {
        int port;

        f->lfd = unit_tcp_listener(AF_INET, 0, &port);
        sv[0] = unit_tcp_client(AF_INET, port);
        assert_true(unit_poll(f->lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
        sv[1] = sf_tcp_accept(NULL, f->lfd, NULL);
        assert_true(sv[1] >= 0);
    } else {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    }
    assert_int_equal(sf_set_nonblock(sv[1], 0), 0);
    f->o.sock_fd = sv[0];
    f->peer_fd = sv[1];
}

/* Defaults for a TCP relay whose input is in_fd, the peer's end in *peer_fd, the peer
 * thread started with arg (peer may be NULL: the test drives peer_fd itself). */
static void
fx_start(fixture *f, int tcp, int in_fd, void *(*peer)(void *), void *arg, int *peer_fd)
{
    if (f->o.quit_after_eof_ms == 0)
        f->o.quit_after_eof_ms = -1;
    f->o.udp_wait_ms = -1;
    if (f->o.peer == NULL)
        f->o.peer = "peer";
    f->o.stats = &f->st;
    f->o.in_fd = in_fd;
    if (f->o.out_fd == 0)
        f->o.out_fd = empty_file();
    fx_pair(f, tcp);
    if (peer_fd)
        *peer_fd = f->peer_fd;
    if (peer) {
        assert_int_equal(pthread_create(&f->th, NULL, peer, arg), 0);
        f->threaded = 1;
    }
}

/* Run the relay under a deadline, then join the peer. Returns what sf_relay returned. */
static int
fx_run(fixture *f)
{
    uint64_t t0 = unit_now_ms();
    int rc;

    alarm(30);
    rc = sf_relay(&f->o, &f->err);
    alarm(UNIT_GUARD_SECS);
    f->took_ms = unit_now_ms() - t0;
    if (f->threaded)
        assert_int_equal(unit_join(f->th, UNIT_WAIT_MS, NULL), 0);
    return rc;
}

static void
fx_close(fixture *f)
{
    close(f->o.sock_fd);
    close(f->o.in_fd);
    close(f->o.out_fd);
    if (f->lfd >= 0)
        close(f->lfd);
}

/* ---- TCP ---- */

/* End of input half-closes the socket (FIN): the peer sees exactly the input, then the
 * end, answers, and its close ends the relay. The counts say so too. */
static void
tcp_input_then_fin(void **state)
{
    count_calls calls = { 0 };
    sf_tracer tr = { .fn = count_event, .ud = &calls };
    sf_trace t = { .tracer = &tr, .side = "client" };
    fixture f = { .o.trace = &t };
    answer_peer peer = { 0 };
    char out[64];

    (void)state;
    fx_start(&f, 0, pipe_with("hello relay\n", 12), answer_main, &peer, &peer.fd);
    assert_int_equal(fx_run(&f), 0);
    assert_true(peer.saw_eof);
    assert_int_equal(peer.n, 12);
    assert_memory_equal(peer.got, "hello relay\n", 12);
    assert_int_equal(file_content(f.o.out_fd, out, sizeof(out)), 9);
    assert_memory_equal(out, "reply:12\n", 9);
    assert_int_equal(calls.shutdowns, 1);
    assert_true(calls.writes >= 1);
    assert_int_equal(f.st.in_bytes, 12);
    assert_int_equal(f.st.sent, 12);
    assert_int_equal(f.st.unsent, 0);
    assert_int_equal(f.st.received, 9);
    assert_int_equal(f.st.out_bytes, 9);
    fx_close(&f);
}

/* A regular file as input (epoll cannot watch it) through a real echo server: the output
 * is the input, byte for byte. */
static void
tcp_file_through_echo_server(void **state)
{
    static char in[300000], out[300001];
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "echo" };
    unit_server u;
    sf_err err;

    (void)state;
    unit_fill_pattern(in, sizeof(in), 61);
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_TCP, 0);
    o.in_fd = file_with(in, sizeof(in));
    o.out_fd = empty_file();
    o.sock_fd = unit_tcp_client(AF_INET, u.port);
    alarm(30);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
    unit_server_stop(&u, NULL);
}

/* 1 MiB from a pipe to an echo peer and back into a file: backpressure both ways. */
static void
tcp_pipe_megabyte(void **state)
{
    static char in[1 << 20], out[(1 << 20) + 1];
    fixture f = { 0 };
    echo_peer ep = { .slow = 1 };
    feeder fd_in = { .p = in, .len = sizeof(in) };
    pthread_t th_feed;
    int p[2];

    (void)state;
    unit_fill_pattern(in, sizeof(in), 71);
    assert_int_equal(pipe(p), 0);
    fd_in.fd = p[1];
    fx_start(&f, 0, p[0], echo_main, &ep, &ep.fd);
    assert_int_equal(pthread_create(&th_feed, NULL, feed_main, &fd_in), 0);
    assert_int_equal(fx_run(&f), 0);
    assert_int_equal(unit_join(th_feed, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(fd_in.rc, sizeof(in));
    assert_true(ep.ok);
    assert_int_equal(ep.n, sizeof(in));
    assert_int_equal(file_content(f.o.out_fd, out, sizeof(out)), sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    fx_close(&f);
}

/* quit_after_eof_ms: a server that never closes no longer holds the relay. */
static void
tcp_quit_after_eof(void **state)
{
    fixture f = { .o.quit_after_eof_ms = 100 };
    answer_peer peer = { .keep_open = 1 };
    char out[64];

    (void)state;
    fx_start(&f, 0, pipe_with("q", 1), answer_main, &peer, &peer.fd);
    assert_int_equal(fx_run(&f), 0);
    assert_true(f.took_ms >= 90 && f.took_ms < 2000);
    assert_true(peer.saw_eof);
    /* What came before the deadline was written out. */
    assert_int_equal(file_content(f.o.out_fd, out, sizeof(out)), 8);
    assert_memory_equal(out, "reply:1\n", 8);
    close(peer.fd);
    fx_close(&f);
}

typedef struct resetter {
    int fd;
    int delay_ms;
} resetter;

static void *
reset_main(void *arg)
{
    resetter *r = arg;
    struct linger lg = { 1, 0 };

    unit_sleep_ms(r->delay_ms);
    setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(r->fd);
    return NULL;
}

/* The server resets the connection while input is still open: the relay ends with the
 * reason, naming the peer. */
static void
tcp_reset_by_peer(void **state)
{
    char peer_s[SF_ADDR_STRLEN], want[96];
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1 };
    resetter rs = { .delay_ms = 50 };
    int lfd, port, p[2];
    pthread_t th;
    sf_addr a;
    sf_err err;

    (void)state;
    lfd = unit_tcp_listener(AF_INET, 0, &port);
    o.sock_fd = unit_tcp_client(AF_INET, port);
    assert_true(unit_poll(lfd, POLLIN, UNIT_WAIT_MS) & POLLIN);
    rs.fd = sf_tcp_accept(NULL, lfd, NULL);
    assert_true(rs.fd >= 0);
    a = unit_loopback(AF_INET, port);
    o.peer = sf_addr_format(&a, peer_s, sizeof(peer_s));
    assert_int_equal(pipe(p), 0);   /* input that never ends */
    o.in_fd = p[0];
    o.out_fd = empty_file();
    assert_int_equal(pthread_create(&th, NULL, reset_main, &rs), 0);
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), -ECONNRESET);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(err.code, -ECONNRESET);
    snprintf(want, sizeof(want), "recv 127.0.0.1:%d: Connection reset by peer", port);
    assert_string_equal(err.msg, want);
    close(p[0]);
    close(p[1]);
    close(o.out_fd);
    close(o.sock_fd);
    close(lfd);
}

/* Output that goes away (a closed pipe, as in `sockflow connect ... | head -1`) ends the
 * relay quietly, and says so in the counts. */
static void
tcp_output_closed(void **state)
{
    struct sigaction old, ign = { .sa_handler = SIG_IGN };
    fixture f = { 0 };
    answer_peer peer = { .keep_open = 1 };
    int out[2];

    (void)state;
    sigaction(SIGPIPE, &ign, &old);
    assert_int_equal(pipe(out), 0);
    close(out[0]);
    f.o.out_fd = out[1];
    fx_start(&f, 0, pipe_with("x", 1), answer_main, &peer, &peer.fd);
    assert_int_equal(fx_run(&f), 0);
    assert_true(f.st.out_closed);
    sigaction(SIGPIPE, &old, NULL);
    close(peer.fd);
    fx_close(&f);
}

/* A peer that says its piece and half-closes first (a banner, then FIN), reading on:
 * the input that comes later still reaches it, all of it (nc -N -l, ncat, socat). */
typedef struct banner_peer {
    int fd;
    int full_close;         /* close at once instead of reading on */
    size_t n;
    int saw_eof;
} banner_peer;

static void *
banner_main(void *arg)
{
    banner_peer *p = arg;
    char buf[16384];
    ssize_t r = -1;

    if (sf_write_full(NULL, p->fd, "banner\n", 7) != 7)
        return NULL;
    if (p->full_close) {
        close(p->fd);
        return NULL;
    }
    shutdown(p->fd, SHUT_WR);
    while (unit_poll(p->fd, POLLIN, UNIT_WAIT_MS) && (r = read(p->fd, buf, sizeof(buf))) > 0)
        p->n += (size_t)r;
    p->saw_eof = r == 0;
    close(p->fd);
    return NULL;
}

/* Input that comes delay_ms after the start: a thread writes len bytes, then closes. */
typedef struct late_feeder {
    feeder f;
    int delay_ms;
} late_feeder;

static void *
late_feed_main(void *arg)
{
    late_feeder *lf = arg;

    unit_sleep_ms(lf->delay_ms);
    return feed_main(&lf->f);
}

static void
peer_closes_first(int tcp, size_t len, int delay_ms)
{
    static char in[300000];
    late_feeder lf = { .f.p = in, .f.len = len, .delay_ms = delay_ms };
    fixture f = { 0 };
    banner_peer bp = { 0 };
    pthread_t th_feed;
    char out[16];
    int p[2];

    assert_true(len <= sizeof(in));
    assert_int_equal(pipe(p), 0);
    lf.f.fd = p[1];
    fx_start(&f, tcp, p[0], banner_main, &bp, &bp.fd);
    assert_int_equal(pthread_create(&th_feed, NULL, late_feed_main, &lf), 0);
    assert_int_equal(fx_run(&f), 0);
    assert_int_equal(unit_join(th_feed, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(lf.f.rc, len);
    assert_true(bp.saw_eof);
    assert_int_equal(bp.n, len);
    assert_int_equal(f.st.sent, len);
    assert_int_equal(file_content(f.o.out_fd, out, sizeof(out)), 7);
    assert_memory_equal(out, "banner\n", 7);
    fx_close(&f);
}

static void
tcp_peer_closes_first_input_still_sent(void **state)
{
    (void)state;
    peer_closes_first(1, 100000, 100);
    peer_closes_first(1, 1, 50);
    peer_closes_first(1, 300000, 0);
    peer_closes_first(0, 100000, 100);
}

/* A peer that closes altogether (no half-close) before the input comes: what is sent
 * after is answered with a reset, and the relay says the input was lost, naming the
 * call and the peer, rather than exit as if all went through. */
static void
tcp_peer_gone_input_lost(void **state)
{
    static char in[100000];
    late_feeder lf = { .f.p = in, .f.len = sizeof(in), .delay_ms = 100 };
    fixture f = { .o.peer = "127.0.0.1:1" };
    banner_peer bp = { .full_close = 1 };
    pthread_t th_feed;
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);
    lf.f.fd = p[1];
    fx_start(&f, 1, p[0], banner_main, &bp, &bp.fd);
    assert_int_equal(pthread_create(&th_feed, NULL, late_feed_main, &lf), 0);
    assert_true(fx_run(&f) < 0);
    assert_int_equal(unit_join(th_feed, UNIT_WAIT_MS, NULL), 0);
    assert_true(f.err.code == -ECONNRESET || f.err.code == -EPIPE);
    assert_true(strncmp(f.err.msg, "send 127.0.0.1:1: ", 18) == 0);
    fx_close(&f);
}

/* Standard output that cannot be written (`> /dev/full`): failure, with the reason. */
static void
tcp_output_write_error(void **state)
{
    fixture f = { 0 };
    answer_peer peer = { 0 };

    (void)state;
    f.o.out_fd = open("/dev/full", O_WRONLY);
    assert_true(f.o.out_fd >= 0);
    fx_start(&f, 0, pipe_with("x", 1), answer_main, &peer, &peer.fd);
    assert_int_equal(fx_run(&f), -ENOSPC);
    assert_string_equal(f.err.msg, "write output: No space left on device");
    fx_close(&f);
}

/* A nonblocking output that fills (a pipe read slowly): the rest waits in the queue,
 * the socket is not read meanwhile, and every byte arrives in order. */
typedef struct slow_reader {
    int fd;
    char *buf;
    size_t cap, n;
} slow_reader;

static void *
slow_read_main(void *arg)
{
    slow_reader *s = arg;
    ssize_t r;

    while (unit_poll(s->fd, POLLIN, UNIT_WAIT_MS) && s->n < s->cap &&
           (r = read(s->fd, s->buf + s->n, s->cap - s->n < 4096 ? s->cap - s->n : 4096)) > 0) {
        s->n += (size_t)r;
        unit_sleep_ms(1);
    }
    return NULL;
}

static void
tcp_nonblocking_output_fills(void **state)
{
    static char in[1 << 20], out[(1 << 20) + 1];
    slow_reader sr = { .buf = out, .cap = sizeof(out) };
    fixture f = { 0 };
    echo_peer ep = { 0 };
    pthread_t th_out;
    int po[2];

    (void)state;
    unit_fill_pattern(in, sizeof(in), 73);
    assert_int_equal(pipe2(po, O_NONBLOCK), 0);
    sr.fd = po[0];
    assert_int_equal(sf_set_nonblock(po[0], 0), 0);
    f.o.out_fd = po[1];
    assert_int_equal(pthread_create(&th_out, NULL, slow_read_main, &sr), 0);
    fx_start(&f, 0, file_with(in, sizeof(in)), echo_main, &ep, &ep.fd);
    assert_int_equal(fx_run(&f), 0);
    close(po[1]);
    f.o.out_fd = -1;
    assert_int_equal(unit_join(th_out, 30000, NULL), 0);
    assert_int_equal(sr.n, sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
    assert_int_equal(f.st.out_bytes, sizeof(in));
    close(po[0]);
    fx_close(&f);
}

/* -C: each LF of input goes out as CRLF; a CRLF already there stays single. */
static void
tcp_crlf(void **state)
{
    fixture f = { .o.crlf = 1 };
    answer_peer peer = { 0 };

    (void)state;
    fx_start(&f, 0, pipe_with("a\nb\r\n\nc", 7), answer_main, &peer, &peer.fd);
    assert_int_equal(fx_run(&f), 0);
    assert_int_equal(peer.n, 9);
    assert_memory_equal(peer.got, "a\r\nb\r\n\r\nc", 9);
    assert_int_equal(f.st.in_bytes, 7);
    assert_int_equal(f.st.sent, 9);
    fx_close(&f);
}

/* idle_ms: nothing either way for that long ends the relay with ETIMEDOUT, named; traffic
 * before it starts the clock again. */
typedef struct trickle_peer {
    int fd;
    int count, gap_ms;
    uint64_t last_ms;       /* when the last byte was written */
} trickle_peer;

static void *
trickle_main(void *arg)
{
    trickle_peer *p = arg;

    for (int i = 0; i < p->count; i++) {
        unit_sleep_ms(p->gap_ms);
        if (write(p->fd, ".", 1) != 1)
            break;
        p->last_ms = unit_now_ms();
    }
    return NULL;
}

static void
tcp_idle_timeout(void **state)
{
    fixture f = { .o.idle_ms = 400 };
    trickle_peer tp = { .count = 4, .gap_ms = 50 };
    uint64_t end;
    char out[16];
    int p[2];

    (void)state;
    assert_int_equal(pipe(p), 0);   /* input that stays open and quiet */
    fx_start(&f, 0, p[0], trickle_main, &tp, &tp.fd);
    assert_int_equal(fx_run(&f), -ETIMEDOUT);
    end = unit_now_ms();
    /* the bytes 50 ms apart kept it alive; 400 ms of quiet after the last ended it */
    assert_int_equal(file_content(f.o.out_fd, out, sizeof(out)), 4);
    assert_true(end >= tp.last_ms + 390);
    assert_true(f.took_ms < 5000);
    assert_string_equal(f.err.msg, "idle peer after 400 ms: Connection timed out");
    close(p[1]);
    close(tp.fd);
    fx_close(&f);
}

/* no_half_close: end of input sends no FIN (nc without -N); the peer's close ends it. */
static void
tcp_no_half_close(void **state)
{
    count_calls calls = { 0 };
    sf_tracer tr = { .fn = count_event, .ud = &calls };
    sf_trace t = { .tracer = &tr, .side = "client" };
    fixture f = { .o.no_half_close = 1, .o.trace = &t };
    banner_peer bp = { .full_close = 1 };

    (void)state;
    fx_start(&f, 0, empty_file(), banner_main, &bp, &bp.fd);
    assert_int_equal(fx_run(&f), 0);
    assert_int_equal(calls.shutdowns, 0);
    assert_int_equal(f.st.received, 7);
    fx_close(&f);
}

static void
bad_socket(void **state)
{
    sf_relay_opts o = { .in_fd = -1, .out_fd = -1, .sock_fd = -1,
                        .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "127.0.0.1:9" };
    int before = unit_count_fds();
    sf_err err;

    (void)state;
    assert_int_equal(sf_relay(&o, &err), -EBADF);
    assert_string_equal(err.msg, "epoll_ctl 127.0.0.1:9: Bad file descriptor");
    assert_int_equal(unit_count_fds(), before);
}

static void
same_fd_both_ways(void **state)
{
    int sv[2];
    sf_relay_opts o = { .quit_after_eof_ms = -1, .udp_wait_ms = -1, .peer = "peer" };
    sf_err err;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    o.in_fd = o.out_fd = 5;
    o.sock_fd = sv[0];
    assert_int_equal(sf_relay(&o, &err), SF_EUSAGE);
    assert_string_equal(err.msg, "relay: input and output are the same descriptor 5 "
                                 "(dup() one of them)");
    close(sv[0]);
    close(sv[1]);
}

/* ---- UDP ---- */

static void
udp_through_echo_server(void **state)
{
    sf_relay_opts o = { .udp = 1, .quit_after_eof_ms = -1, .udp_wait_ms = 200,
                        .peer = "echo" };
    uint64_t t0, took;
    unit_server u;
    char out[64];
    sf_addr a;
    sf_err err;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_UDP, 1);
    a = unit_loopback(AF_INET6, u.port);
    o.sock_fd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(o.sock_fd >= 0);
    o.in_fd = pipe_with("ping\n", 5);
    o.out_fd = empty_file();
    t0 = unit_now_ms();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    took = unit_now_ms() - t0;
    assert_true(took >= 190 && took < 3000);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), 5);
    assert_memory_equal(out, "ping\n", 5);
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
    unit_server_stop(&u, NULL);
}

/* A regular file as UDP input: read at once, sent as one datagram. */
static void
udp_file_input(void **state)
{
    sf_relay_opts o = { .udp = 1, .quit_after_eof_ms = -1, .udp_wait_ms = 150,
                        .peer = "echo" };
    sf_server_stats st;
    unit_server u;
    char out[64];
    sf_addr a;
    sf_err err;

    (void)state;
    unit_server_start(&u, NULL, &sf_svc_echo, SF_PROTO_UDP, 0);
    a = unit_loopback(AF_INET, u.port);
    o.sock_fd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(o.sock_fd >= 0);
    o.in_fd = file_with("from a file", 11);
    o.out_fd = empty_file();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(file_content(o.out_fd, out, sizeof(out)), 11);
    assert_memory_equal(out, "from a file", 11);
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
    unit_server_stop(&u, &st);
    assert_int_equal(st.dgrams_in, 1);
}

/* Nobody on the port: the ICMP error comes back as ECONNREFUSED, named. */
static void
udp_refused(void **state)
{
    sf_relay_opts o = { .udp = 1, .quit_after_eof_ms = -1, .udp_wait_ms = 5000 };
    char peer_s[SF_ADDR_STRLEN], want[96];
    uint64_t t0;
    int port;
    sf_addr a;
    sf_err err;

    (void)state;
    port = unit_closed_port(AF_INET, SOCK_DGRAM);
    a = unit_loopback(AF_INET, port);
    o.peer = sf_addr_format(&a, peer_s, sizeof(peer_s));
    o.sock_fd = sf_udp_connect(NULL, &a, NULL, 0, &err);
    assert_true(o.sock_fd >= 0);
    o.in_fd = pipe_with("anyone?\n", 8);
    o.out_fd = empty_file();
    t0 = unit_now_ms();
    alarm(20);
    assert_int_equal(sf_relay(&o, &err), -ECONNREFUSED);
    alarm(UNIT_GUARD_SECS);
    assert_true(unit_now_ms() - t0 < 1000);
    snprintf(want, sizeof(want), "recv 127.0.0.1:%d: Connection refused", port);
    assert_string_equal(err.msg, want);
    close(o.sock_fd);
    close(o.in_fd);
    close(o.out_fd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tcp_input_then_fin),
        cmocka_unit_test(tcp_file_through_echo_server),
        cmocka_unit_test(tcp_pipe_megabyte),
        cmocka_unit_test(tcp_quit_after_eof),
        cmocka_unit_test(tcp_reset_by_peer),
        cmocka_unit_test(tcp_output_closed),
        cmocka_unit_test(tcp_peer_closes_first_input_still_sent),
        cmocka_unit_test(tcp_peer_gone_input_lost),
        cmocka_unit_test(tcp_output_write_error),
        cmocka_unit_test(tcp_nonblocking_output_fills),
        cmocka_unit_test(tcp_crlf),
        cmocka_unit_test(tcp_idle_timeout),
        cmocka_unit_test(tcp_no_half_close),
        cmocka_unit_test(bad_socket),
        cmocka_unit_test(same_fd_both_ways),
        cmocka_unit_test(udp_through_echo_server),
        cmocka_unit_test(udp_file_input),
        cmocka_unit_test(udp_refused),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
