/* test_bench: the load generator — error classification, merging counters and
 * histograms, the interval clock and its accounting, mismatch counting on TCP and UDP,
 * the modes table, and a short run whose intervals add up to its result. */
#include <dirent.h>
#include <sys/resource.h>

#include "unit.h"
#include "lib/bench_int.h"

/* ---- error classification ---- */

static void
errors_are_sorted_by_cause(void **state)
{
    static const struct { int code; size_t field; } cases[] = {
        { -ECONNREFUSED, offsetof(sf_bench_errors, refused) },
        { -ECONNRESET, offsetof(sf_bench_errors, reset) },
        { -EPIPE, offsetof(sf_bench_errors, reset) },
        { -ECONNABORTED, offsetof(sf_bench_errors, reset) },
        { -ETIMEDOUT, offsetof(sf_bench_errors, timeout) },
        { -EADDRNOTAVAIL, offsetof(sf_bench_errors, no_port) },
        { -EADDRINUSE, offsetof(sf_bench_errors, no_port) },
        { -EMFILE, offsetof(sf_bench_errors, other) },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sf_bench_errors e;

        memset(&e, 0, sizeof(e));
        sf_bench_count_error(&e, cases[i].code);
        assert_int_equal(*(uint64_t *)((char *)&e + cases[i].field), 1);
        assert_int_equal(sf_bench_error_total(&e), 1);
        /* only "other" remembers which */
        assert_int_equal(e.last_other, cases[i].field == offsetof(sf_bench_errors, other)
                                       ? cases[i].code : 0);
    }
}

static void
other_errors_keep_the_latest(void **state)
{
    sf_bench_errors e;

    (void)state;
    memset(&e, 0, sizeof(e));
    sf_bench_count_error(&e, -EMFILE);
    sf_bench_count_error(&e, -ENOBUFS);
    sf_bench_count_error(&e, -ECONNREFUSED);
    e.closed = 4;
    assert_int_equal(e.other, 2);
    assert_int_equal(e.last_other, -ENOBUFS);
    assert_int_equal(sf_bench_error_total(&e), 7);
}

/* ---- merging ---- */

static void
merge_adds_every_counter_and_the_histograms(void **state)
{
    sf_bench_stats *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));

    (void)state;
    sf_bench_stats_init(a);
    sf_bench_stats_init(b);
    sf_bench_stats_init(all);
    a->requests = 1; a->mismatches = 2; a->bytes_out = 3; a->bytes_in = 4;
    a->connects = 5; a->sent = 6; a->lost = 7; a->late = 8;
    a->err.refused = 9; a->err.reset = 10; a->err.timeout = 11; a->err.closed = 12;
    a->err.no_port = 13; a->err.other = 14; a->err.last_other = -EMFILE;
    b->requests = 100; b->late = 800; b->err.other = 1400; b->err.last_other = -ENOBUFS;
    for (uint64_t v = 1; v <= 1000; v++) {
        sf_hist_record(v % 3 ? &a->lat : &b->lat, v * 1000);
        sf_hist_record(&all->lat, v * 1000);
    }
    sf_bench_stats_merge(a, b);
    assert_int_equal(a->requests, 101);
    assert_int_equal(a->mismatches, 2);
    assert_int_equal(a->bytes_out + a->bytes_in + a->connects + a->sent + a->lost, 3 + 4 + 5 + 6 + 7);
    assert_int_equal(a->late, 808);
    assert_int_equal(a->err.refused + a->err.reset + a->err.timeout + a->err.closed +
                     a->err.no_port, 9 + 10 + 11 + 12 + 13);
    assert_int_equal(a->err.other, 1414);
    assert_int_equal(a->err.last_other, -ENOBUFS);     /* the merged-in one is later */
    /* two halves merged are the whole: same count, extremes, sum and percentiles */
    assert_int_equal(a->lat.count, 1000);
    assert_int_equal(a->lat.min, 1000);
    assert_int_equal(a->lat.max, 1000000);
    assert_int_equal(a->lat.sum, all->lat.sum);
    for (double p = 1; p <= 100; p += 7.5)
        assert_int_equal(sf_hist_percentile(&a->lat, p), sf_hist_percentile(&all->lat, p));
    /* an empty interval leaves last_other as it was */
    sf_bench_stats_init(b);
    sf_bench_stats_merge(a, b);
    assert_int_equal(a->err.last_other, -ENOBUFS);
    assert_int_equal(a->requests, 101);
    free(a);
    free(b);
    free(all);
}

/* ---- a generator that is made but not run, for its parts ---- */

static sf_bench *
make_bench(int mode, size_t size, int conns)
{
    sf_bench_opts o;
    sf_err err;
    sf_bench *b;

    memset(&o, 0, sizeof(o));
    o.mode = mode;
    o.target = unit_loopback(AF_INET, unit_closed_port(AF_INET, mode == SF_BENCH_UDP
                                                       ? SOCK_DGRAM : SOCK_STREAM));
    o.size = size;
    o.conns = conns;
    o.threads = 1;
    b = sf_bench_new(&o, &err);
    if (b == NULL)
        fail_msg("sf_bench_new: %s", err.msg);
    return b;
}

/* ---- the interval clock ---- */

static void
boundaries_fall_on_the_warmup_and_every_interval(void **state)
{
    sf_bench *b = make_bench(SF_BENCH_ECHO, 64, 1);
    const uint64_t ms = 1000000u;

    (void)state;
    b->start_ns = 1000 * ms;
    b->o.warmup_ms = 1500;
    b->o.duration_ms = 2000;
    b->warm_end_ns = b->start_ns + 1500 * ms;
    b->end_ns = b->warm_end_ns + 2000 * ms;
    b->o.interval_ms = 1000;
    /* the first is cut short so that one falls at 1.5 s, the end of the warm-up */
    assert_int_equal(sf__bench_boundary_ns(b, 1), b->start_ns + 500 * ms);
    assert_int_equal(sf__bench_boundary_ns(b, 2), b->start_ns + 1500 * ms);
    assert_int_equal(sf__bench_boundary_ns(b, 3), b->start_ns + 2500 * ms);
    assert_int_equal(sf__bench_boundary_ns(b, 4), UINT64_MAX);     /* 3.5 s: the end */
    /* without interval reports the end of the warm-up is the only one */
    b->o.interval_ms = 0;
    assert_int_equal(sf__bench_boundary_ns(b, 1), b->warm_end_ns);
    assert_int_equal(sf__bench_boundary_ns(b, 2), UINT64_MAX);
    b->o.warmup_ms = 0;
    assert_int_equal(sf__bench_boundary_ns(b, 1), UINT64_MAX);
    sf_bench_free(b);
}

static void
intervals_in_the_warmup_stay_out_of_the_total(void **state)
{
    sf_bench *b = make_bench(SF_BENCH_ECHO, 64, 1);
    sf__bench_worker *w = &b->w[0];

    (void)state;
    b->start_ns = 1000;
    b->warm_end_ns = 5000;
    b->end_ns = 9000;
    w->cur_start_ns = b->start_ns;
    w->next_tick = 1;
    w->cur.requests = 5;
    sf_hist_record(&w->cur.lat, 10);
    sf__bench_close_interval(w, 5000, 0);       /* the warm-up */
    assert_int_equal(w->total.requests, 0);
    assert_int_equal(w->total.lat.count, 0);
    assert_int_equal(w->posted.requests, 5);    /* reported all the same, as warm-up */
    assert_int_equal(w->posted_idx, 1);
    assert_int_equal(w->cur.requests, 0);       /* a fresh interval */
    assert_int_equal(w->cur_start_ns, 5000);

    w->next_tick = 2;
    w->cur.requests = 7;
    w->cur.err.timeout = 1;
    sf__bench_close_interval(w, 7000, 0);
    assert_int_equal(w->total.requests, 7);
    assert_int_equal(w->total.err.timeout, 1);
    assert_int_equal(w->posted.requests, 12);   /* not yet taken by the reporter */
    assert_int_equal(w->posted_idx, 2);
    assert_false(w->done);

    w->cur.requests = 2;
    sf__bench_close_interval(w, 8000, 1);
    assert_int_equal(w->total.requests, 9);
    assert_true(w->done);
    assert_int_equal(w->posted_idx, 2);         /* the last is not a boundary */
    sf_bench_free(b);
}

/* ---- mismatches ---- */

/* Hand the bytes that c sent, at offset off, to the checker as if they came back. */
static void
echo_back(sf__bench_worker *w, sf__bench_conn *c, char *buf, size_t n)
{
    sf__bench_check_bytes(w, c, buf, n);
    c->recv_off += n;
}

static void
each_wrong_request_counts_once(void **state)
{
    sf_bench *b = make_bench(SF_BENCH_ECHO, 16, 1);
    sf__bench_worker *w = &b->w[0];
    sf__bench_conn *c = &((sf__bench_tcp *)w->m)->conns[0];
    char buf[96];

    (void)state;
    memcpy(buf, sf__bench_pat_at(b, c->seed), sizeof(buf));    /* six 16-byte requests */
    echo_back(w, c, buf, 16);
    assert_int_equal(w->cur.mismatches, 0);
    buf[16 + 3] ^= 1;                   /* request 1: one byte */
    buf[32 + 0] ^= 1;                   /* request 2: three bytes, over two reads */
    buf[32 + 9] ^= 1;
    buf[32 + 15] ^= 1;
    buf[80 + 15] ^= 1;                  /* request 5: its last byte */
    echo_back(w, c, buf + 16, 24);      /* request 1 and half of 2 */
    assert_int_equal(w->cur.mismatches, 2);
    echo_back(w, c, buf + 40, 8);       /* the rest of request 2: not again */
    assert_int_equal(w->cur.mismatches, 2);
    echo_back(w, c, buf + 48, 48);      /* 3, 4 right; 5 wrong */
    assert_int_equal(w->cur.mismatches, 3);
    sf_bench_free(b);
}

static void
udp_replies_are_matched_checked_and_late_ones_told_apart(void **state)
{
    sf_bench *b = make_bench(SF_BENCH_UDP, 32, 2);
    sf__bench_worker *w = &b->w[0];
    sf__bench_udp_state *u = w->m;
    char d[40];
    uint32_t hdr[2] = { 1, 77 };

    (void)state;
    /* slot 1 holds datagram 77 in flight; the socket is not open, so nothing goes again */
    u->slots[1].hdr[0] = 1;
    u->slots[1].hdr[1] = 77;
    u->slots[1].busy = 1;
    w->outstanding = 1;
    memcpy(d, hdr, 8);
    memcpy(d + 8, sf__bench_pat_at(b, 77u * 13u + 1u * 7u), 24);
    sf__bench_udp_reply(w, d, 32);
    assert_int_equal(w->cur.requests, 1);
    assert_int_equal(w->cur.mismatches, 0);
    assert_int_equal(w->cur.bytes_in, 32);
    assert_int_equal(w->outstanding, 0);
    sf__bench_udp_reply(w, d, 32);      /* the same again: its slot was answered */
    assert_int_equal(w->cur.late, 1);
    assert_int_equal(w->cur.requests, 1);

    u->slots[1].busy = 1;               /* in flight again, as 77 */
    d[20] ^= 1;
    sf__bench_udp_reply(w, d, 32);      /* a wrong byte: answered, and a mismatch */
    assert_int_equal(w->cur.requests, 2);
    assert_int_equal(w->cur.mismatches, 1);
    u->slots[1].busy = 1;
    d[20] ^= 1;
    sf__bench_udp_reply(w, d, 31);      /* a short reply */
    assert_int_equal(w->cur.mismatches, 2);
    sf__bench_udp_reply(w, d, 4);       /* not even a header */
    assert_int_equal(w->cur.mismatches, 3);
    hdr[0] = 9;                         /* no such slot */
    memcpy(d, hdr, 8);
    sf__bench_udp_reply(w, d, 32);
    assert_int_equal(w->cur.late, 2);
    sf_bench_free(b);
}

/* ---- the modes table ---- */

static void
modes_come_with_names_units_and_defaults(void **state)
{
    sf_bench_opts o;
    sf_err err;
    char text[256];

    (void)state;
    assert_int_equal(sf_bench_mode_count(), 4);
    assert_int_equal(sf_bench_mode_find("echo"), SF_BENCH_ECHO);
    assert_int_equal(sf_bench_mode_find("connect"), SF_BENCH_CONNECT);
    assert_int_equal(sf_bench_mode_find("stream"), SF_BENCH_STREAM);
    assert_int_equal(sf_bench_mode_find("udp"), SF_BENCH_UDP);
    assert_int_equal(sf_bench_mode_find("nosuch"), SF_EUSAGE);
    assert_null(sf_bench_mode_get(4));
    assert_null(sf_bench_mode_get(-1));
    assert_string_equal(sf_bench_mode_get(SF_BENCH_UDP)->unit, "dgram/s");
    assert_true(sf_bench_mode_get(SF_BENCH_UDP)->dgram);
    assert_true(sf_bench_mode_get(SF_BENCH_STREAM)->bulk);

    memset(&o, 0, sizeof(o));
    o.mode = SF_BENCH_ECHO;
    assert_int_equal(sf_bench_defaults(&o), 0);
    assert_int_equal(o.conns, 50);
    assert_int_equal(o.size, 64);
    assert_int_equal(o.pipeline, 1);
    assert_int_equal(o.timeout_ms, 2000);
    assert_int_equal(o.duration_ms, 10000);
    memset(&o, 0, sizeof(o));
    o.mode = SF_BENCH_UDP;
    o.requests = 10;
    o.conns = 3;
    sf_bench_defaults(&o);
    assert_int_equal(o.conns, 3);               /* given: kept */
    assert_int_equal(o.timeout_ms, 200);
    assert_int_equal(o.duration_ms, 60000);     /* a count: a longer limit */
    o.mode = 99;
    assert_int_equal(sf_bench_defaults(&o), SF_EUSAGE);

    memset(&o, 0, sizeof(o));
    o.mode = SF_BENCH_UDP;
    o.size = 4;
    assert_int_equal(sf_bench_check(&o, &err), SF_EUSAGE);
    assert_non_null(strstr(err.msg, "8 to 65507"));
    o.size = 0;
    assert_int_equal(sf_bench_check(&o, &err), 0);
    o.recv = 1;
    assert_int_equal(sf_bench_check(&o, &err), SF_EUSAGE);
    o.mode = SF_BENCH_STREAM;
    assert_int_equal(sf_bench_check(&o, &err), 0);
    o.pipeline = 4;
    assert_int_equal(sf_bench_check(&o, &err), SF_EUSAGE);
    assert_null(sf_bench_new(&o, &err));
    assert_int_equal(err.code, SF_EUSAGE);

    memset(&o, 0, sizeof(o));
    o.mode = SF_BENCH_ECHO;
    o.pipeline = 8;
    sf_bench_describe(&o, text, sizeof(text));
    assert_string_equal(text, "50 connections, 64-byte requests, 8 in flight on each");
}

/* ---- a short real run ---- */

typedef struct echo_srv {
    int lfd;
    atomic_int stop;
    pthread_t t;
} echo_srv;

/* A small echo server: poll over the listener and up to 16 clients, bounded by stop. */
static void *
echo_main(void *arg)
{
    echo_srv *s = arg;
    struct pollfd p[17];
    int n = 1;
    char buf[4096];

    p[0].fd = s->lfd;
    p[0].events = POLLIN;
    while (!atomic_load(&s->stop)) {
        if (poll(p, (nfds_t)n, 50) <= 0)
            continue;
        if ((p[0].revents & POLLIN) && n < 17) {
            int fd = accept(s->lfd, NULL, NULL);

            if (fd >= 0) {
                p[n].fd = fd;
                p[n++].events = POLLIN;
            }
        }
        for (int i = 1; i < n; i++) {
            ssize_t r;

            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            r = recv(p[i].fd, buf, sizeof(buf), 0);
            if (r <= 0 || send(p[i].fd, buf, (size_t)r, MSG_NOSIGNAL) != r) {
                close(p[i].fd);
                p[i--] = p[--n];
            }
        }
    }
    for (int i = 1; i < n; i++)
        close(p[i].fd);
    return NULL;
}

typedef struct tally {
    uint64_t warm, measured;
    int intervals;
    pthread_t caller;
    int foreign;            /* intervals handed over in another thread than the caller */
    int most_tasks;         /* the most threads the process had at an interval */
} tally;

static int
count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void
on_interval(void *ud, const sf_bench_interval *iv)
{
    tally *t = ud;
    int tasks = count_tasks();

    t->intervals++;
    t->foreign += !pthread_equal(pthread_self(), t->caller);
    if (tasks > t->most_tasks)
        t->most_tasks = tasks;
    if (iv->warmup)
        t->warm += iv->st->requests;
    else
        t->measured += iv->st->requests;
}

/* A run of 800 ms in intervals of 150 on `threads` loops against a small echo server:
 * every request lands in exactly one interval, handed over in the calling thread. */
static void
run_in_intervals(int threads, tally *t)
{
    echo_srv s = { .stop = 0 };
    sf_bench_opts o;
    sf_bench_result *r = malloc(sizeof(*r));
    sf_err err;
    sf_bench *b;
    int port;

    s.lfd = unit_tcp_listener(AF_INET, 16, &port);
    assert_int_equal(pthread_create(&s.t, NULL, echo_main, &s), 0);
    memset(&o, 0, sizeof(o));
    o.mode = SF_BENCH_ECHO;
    o.target = unit_loopback(AF_INET, port);
    o.conns = 4;
    o.threads = threads;
    o.pipeline = 2;
    o.warmup_ms = 200;
    o.duration_ms = 600;
    o.interval_ms = 150;
    o.on_interval = on_interval;
    o.ud = t;
    t->caller = pthread_self();
    b = sf_bench_new(&o, &err);
    assert_non_null(b);
    assert_int_equal(sf_bench_run(b, r, &err), 0);
    atomic_store(&s.stop, 1);
    pthread_join(s.t, NULL);
    close(s.lfd);
    assert_int_equal(r->threads, threads);
    assert_true(r->st.requests > 0);
    assert_int_equal(r->st.mismatches, 0);
    assert_int_equal(sf_bench_error_total(&r->st.err), 0);
    assert_true(t->warm > 0);
    /* every request lands in exactly one interval; the warm-up ones not in the result */
    assert_int_equal(t->measured, r->st.requests);
    assert_int_equal(r->st.lat.count, r->st.requests);
    /* 800 ms cut at 50 (the warm-up's end, 200 = 50 + 150), 200, 350, ... 650, 800 */
    assert_in_range(t->intervals, 5, 7);
    assert_int_equal(t->foreign, 0);
    assert_true(r->elapsed_s > 0.5 && r->elapsed_s < 0.61);
    sf_bench_free(b);
    free(r);
}

static void
a_run_adds_its_intervals_up_to_its_result(void **state)
{
    tally t = { 0 };

    (void)state;
    run_in_intervals(2, &t);
    /* the caller, the echo server's thread and the two loops' */
    assert_int_equal(t.most_tasks, 4);
}

/* One loop runs in the calling thread: no thread of its own (a process of one thread
 * takes no reference on a file per system call), its intervals reported as they close. */
static void
a_single_loop_runs_in_the_calling_thread(void **state)
{
    tally t = { 0 };

    (void)state;
    run_in_intervals(1, &t);
    /* the caller and the echo server's thread, nothing else */
    assert_int_equal(t.most_tasks, 2);
}

/* Out of descriptors half-way through opening: EMFILE is counted once per sweep, not
 * once per slot and sweep, and the run ends at its deadline. */
static void
out_of_descriptors_backs_off_until_the_next_sweep(void **state)
{
    struct rlimit old, rl;
    sf_bench_opts o;
    sf_bench_result *r = malloc(sizeof(*r));
    int spare[256], nspare = 0, lfd, port;
    uint64_t t0;
    sf_err err;
    sf_bench *b;

    (void)state;
    /* a listener that never accepts: connections hold their descriptors */
    lfd = unit_tcp_listener(AF_INET, 512, &port);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    rl = old;
    rl.rlim_cur = (rlim_t)unit_count_fds() + 200;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    memset(&o, 0, sizeof(o));
    o.mode = SF_BENCH_ECHO;
    o.target = unit_loopback(AF_INET, port);
    o.conns = 100;
    o.threads = 1;
    o.duration_ms = 1000;
    b = sf_bench_new(&o, &err);
    assert_non_null(b);
    /* leave room for about 30 of the 100 connections */
    while (nspare < 256 && unit_count_fds() < (int)rl.rlim_cur - 30 &&
           (spare[nspare] = dup(0)) >= 0)
        nspare++;
    t0 = unit_now_ms();
    assert_int_equal(sf_bench_run(b, r, &err), 0);
    for (int i = 0; i < nspare; i++)
        close(spare[i]);
    setrlimit(RLIMIT_NOFILE, &old);
    close(lfd);
    assert_true(unit_now_ms() - t0 < 1400);
    assert_int_equal(r->st.err.last_other, -EMFILE);
    /* the start once, then at most once a sweep (20 a second), not 70 each time */
    assert_in_range(r->st.err.other, 1, 40);
    sf_bench_free(b);
    free(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errors_are_sorted_by_cause),
        cmocka_unit_test(other_errors_keep_the_latest),
        cmocka_unit_test(merge_adds_every_counter_and_the_histograms),
        cmocka_unit_test(boundaries_fall_on_the_warmup_and_every_interval),
        cmocka_unit_test(intervals_in_the_warmup_stay_out_of_the_total),
        cmocka_unit_test(each_wrong_request_counts_once),
        cmocka_unit_test(udp_replies_are_matched_checked_and_late_ones_told_apart),
        cmocka_unit_test(modes_come_with_names_units_and_defaults),
        cmocka_unit_test(a_run_adds_its_intervals_up_to_its_result),
        cmocka_unit_test(a_single_loop_runs_in_the_calling_thread),
        cmocka_unit_test(out_of_descriptors_backs_off_until_the_next_sweep),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
