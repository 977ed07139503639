/* test_loop: readiness, timers, signals through signalfd, stopping from another thread. */
#include "unit.h"

typedef struct io_rec {
    int calls;
    int fd;
    int events;
    void *ud;
} io_rec;

static void
on_io(sf_loop *l, int fd, int events, void *ud)
{
    io_rec *r = ud;

    (void)l;
    r->calls++;
    r->fd = fd;
    r->events = events;
    r->ud = ud;
}

/* Run passes until cond or the deadline. */
#define RUN_UNTIL(l, cond) do { \
        uint64_t end_ = unit_now_ms() + UNIT_WAIT_MS; \
        while (!(cond) && unit_now_ms() < end_) \
            assert_true(sf_loop_run_once((l), 50) >= 0); \
    } while (0)

static sf_loop *
new_loop(void)
{
    sf_err err;
    sf_loop *l = sf_loop_new(&err);

    if (l == NULL)
        fail_msg("sf_loop_new: %s", err.msg);
    return l;
}

static void
new_and_free(void **state)
{
    int before = unit_count_fds();
    sf_loop *l;

    (void)state;
    l = new_loop();
    assert_int_equal(sf_loop_wakeups(l), 0);
    assert_true(sf_loop_now_ms(l) > 0);
    sf_loop_free(l);
    sf_loop_free(NULL);
    assert_int_equal(unit_count_fds(), before);
}

static void
watch_read_and_write(void **state)
{
    io_rec r = { 0 };
    sf_loop *l = new_loop();
    char c;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(sf_loop_watch(l, sv[0], SF_READ, on_io, &r), 0);
    /* Nothing to read: the pass times out with nothing handled. */
    assert_int_equal(sf_loop_run_once(l, 30), 0);
    assert_int_equal(r.calls, 0);

    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.fd, sv[0]);
    assert_int_equal(r.events, SF_READ);
    assert_ptr_equal(r.ud, &r);

    /* Level-triggered: still readable until read. */
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.calls, 2);
    assert_int_equal(read(sv[0], &c, 1), 1);
    assert_int_equal(sf_loop_run_once(l, 30), 0);

    /* Writable at once; both when both are asked for and ready. */
    assert_int_equal(sf_loop_set_events(l, sv[0], SF_WRITE), 0);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.events, SF_WRITE);
    assert_int_equal(write(sv[1], "y", 1), 1);
    assert_int_equal(sf_loop_set_events(l, sv[0], SF_READ | SF_WRITE), 0);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.events, SF_READ | SF_WRITE);
    /* Unchanged events: a no-op that still succeeds. */
    assert_int_equal(sf_loop_set_events(l, sv[0], SF_READ | SF_WRITE), 0);

    sf_loop_unwatch(l, sv[0]);
    close(sv[0]);
    close(sv[1]);
    sf_loop_free(l);
}

static void
on_other(sf_loop *l, int fd, int events, void *ud)
{
    on_io(l, fd, events, ud);
}

/* The loop's table serves its owner too: sf_loop_watched gives the ud of an fd watched
 * with a given callback, and nothing for another callback or an unwatched fd; a table
 * grown far past a first fd keeps what it held. */
static void
watched_lookup(void **state)
{
    sf_loop *l = new_loop();
    io_rec a = { 0 }, b = { 0 };
    int sv[2], hi;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    hi = fcntl(sv[1], F_DUPFD_CLOEXEC, 600);
    assert_true(hi >= 600);
    assert_int_equal(sf_loop_watch(l, sv[0], SF_READ, on_io, &a), 0);
    assert_int_equal(sf_loop_watch(l, hi, SF_READ, on_other, &b), 0);
    assert_true(sf_loop_fd_end(l) > hi);
    assert_ptr_equal(sf_loop_watched(l, sv[0], on_io), &a);
    assert_ptr_equal(sf_loop_watched(l, hi, on_other), &b);
    assert_null(sf_loop_watched(l, sv[0], on_other));
    assert_null(sf_loop_watched(l, sv[1], on_io));
    assert_null(sf_loop_watched(l, -1, on_io));
    assert_null(sf_loop_watched(l, sf_loop_fd_end(l), on_io));
    assert_int_equal(write(hi, "x", 1), 1);
    RUN_UNTIL(l, a.calls > 0);
    assert_int_equal(a.fd, sv[0]);
    sf_loop_unwatch(l, sv[0]);
    assert_null(sf_loop_watched(l, sv[0], on_io));
    sf_loop_unwatch(l, hi);
    sf_loop_free(l);
    close(sv[0]);
    close(sv[1]);
    close(hi);
}

/* Events 0 keeps the fd registered but quiet; unwatch forgets it; watching again works. */
static void
quiet_unwatch_rewatch(void **state)
{
    io_rec r = { 0 }, r2 = { 0 };
    sf_loop *l = new_loop();
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(sf_loop_watch(l, sv[0], 0, on_io, &r), 0);
    assert_int_equal(sf_loop_run_once(l, 30), 0);
    assert_int_equal(sf_loop_set_events(l, sv[0], SF_READ), 0);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.calls, 1);

    sf_loop_unwatch(l, sv[0]);
    sf_loop_unwatch(l, sv[0]);      /* twice is harmless */
    sf_loop_unwatch(l, 100000);     /* so is an fd never seen */
    assert_int_equal(sf_loop_run_once(l, 30), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(sf_loop_set_events(l, sv[0], SF_READ), -EBADF);

    /* Watching again replaces the callback. */
    assert_int_equal(sf_loop_watch(l, sv[0], SF_READ, on_io, &r), 0);
    assert_int_equal(sf_loop_watch(l, sv[0], SF_READ, on_io, &r2), 0);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r2.calls, 1);
    sf_loop_unwatch(l, sv[0]);
    close(sv[0]);
    close(sv[1]);
    sf_loop_free(l);
}

/* sf_loop_forget clears the table without telling epoll: the close that follows takes
 * the fd out of the set, and the number, reused by a new socket, is watched afresh. */
static void
forget_then_close(void **state)
{
    io_rec r = { 0 }, r2 = { 0 };
    sf_loop *l = new_loop();
    int sv[2], sv2[2], keep;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(sf_loop_watch(l, sv[0], SF_READ, on_io, &r), 0);
    sf_loop_forget(l, sv[0]);
    sf_loop_forget(l, 100000);      /* an fd never seen is harmless */
    assert_null(sf_loop_watched(l, sv[0], on_io));
    assert_int_equal(sf_loop_set_events(l, sv[0], SF_READ), -EBADF);
    /* Still in the epoll set until closed: that is the contract, not unwatch. */
    assert_int_equal(sf_loop_watch(l, sv[0], SF_READ, on_io, &r), -EEXIST);
    keep = sv[0];
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2), 0);
    assert_int_equal(sv2[0], keep);
    assert_int_equal(sf_loop_watch(l, sv2[0], SF_READ, on_io, &r2), 0);
    assert_int_equal(write(sv2[1], "x", 1), 1);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r.calls, 0);
    sf_loop_unwatch(l, sv2[0]);
    close(sv2[0]);
    close(sv2[1]);
    sf_loop_free(l);
}

static void
watch_errors(void **state)
{
    io_rec r = { 0 };
    sf_loop *l = new_loop();
    FILE *f = tmpfile();

    (void)state;
    assert_non_null(f);
    assert_int_equal(sf_loop_watch(l, -1, SF_READ, on_io, &r), -EBADF);
    assert_int_equal(sf_loop_set_events(l, -1, SF_READ), -EBADF);
    assert_int_equal(sf_loop_set_events(l, 5000, SF_READ), -EBADF);
    /* epoll refuses regular files. */
    assert_int_equal(sf_loop_watch(l, fileno(f), SF_READ, on_io, &r), -EPERM);
    assert_int_equal(sf_loop_set_events(l, fileno(f), SF_READ), -EBADF);
    /* A high fd grows the table. */
    {
        int sv[2], hi;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        hi = fcntl(sv[0], F_DUPFD_CLOEXEC, 700);
        assert_true(hi >= 700);
        assert_int_equal(write(sv[1], "x", 1), 1);
        assert_int_equal(sf_loop_watch(l, hi, SF_READ, on_io, &r), 0);
        assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
        assert_int_equal(r.fd, hi);
        sf_loop_unwatch(l, hi);
        close(hi);
        close(sv[0]);
        close(sv[1]);
    }
    fclose(f);
    sf_loop_free(l);
}

/* A hang-up is reported as both events, even on a quiet watcher, so the owner's next
 * read or write finds out. */
static void
hangup_reported_as_both(void **state)
{
    io_rec r = { 0 };
    sf_loop *l = new_loop();
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(sf_loop_watch(l, sv[0], 0, on_io, &r), 0);
    close(sv[1]);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(r.events, SF_READ | SF_WRITE);
    sf_loop_unwatch(l, sv[0]);
    close(sv[0]);
    sf_loop_free(l);
}

/* A callback that unwatches another ready fd of the same batch: that one is not called. */
typedef struct pair_rec {
    int fds[2];
    int calls;
} pair_rec;

static void
on_io_unwatch_other(sf_loop *l, int fd, int events, void *ud)
{
    pair_rec *p = ud;

    (void)events;
    p->calls++;
    sf_loop_unwatch(l, fd == p->fds[0] ? p->fds[1] : p->fds[0]);
    sf_loop_unwatch(l, fd);
}

static void
unwatch_during_batch(void **state)
{
    sf_loop *l = new_loop();
    pair_rec p = { .calls = 0 };
    int a[2], b[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
    p.fds[0] = a[0];
    p.fds[1] = b[0];
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "x", 1), 1);
    assert_int_equal(sf_loop_watch(l, a[0], SF_READ, on_io_unwatch_other, &p), 0);
    assert_int_equal(sf_loop_watch(l, b[0], SF_READ, on_io_unwatch_other, &p), 0);
    assert_int_equal(sf_loop_run_once(l, UNIT_WAIT_MS), 1);
    assert_int_equal(p.calls, 1);
    assert_int_equal(sf_loop_run_once(l, 30), 0);
    assert_int_equal(p.calls, 1);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
    sf_loop_free(l);
}

/* ---- timers ---- */

#define LOG_MAX 256

typedef struct timer_log {
    int order[LOG_MAX];
    int n;
    uint64_t at[LOG_MAX];
    sf_loop *l;
    long cancel_id;
} timer_log;

typedef struct timer_arg {
    timer_log *log;
    int tag;
} timer_arg;

static void
on_timer(sf_loop *l, void *ud)
{
    timer_arg *a = ud;

    if (a->log->n < LOG_MAX) {
        a->log->at[a->log->n] = sf_loop_now_ms(l);
        a->log->order[a->log->n++] = a->tag;
    }
    if (a->log->cancel_id)
        sf_loop_timer_cancel(l, a->log->cancel_id);
}

static void
timers_fire_in_order(void **state)
{
    sf_loop *l = new_loop();
    timer_log log = { .n = 0 };
    timer_arg args[5] = { { &log, 60 }, { &log, 20 }, { &log, 40 }, { &log, 0 },
                          { &log, 80 } };
    uint64_t t0 = sf_loop_now_ms(l);
    long ids[5];

    (void)state;
    for (int i = 0; i < 5; i++) {
        ids[i] = sf_loop_timer(l, (uint64_t)args[i].tag, on_timer, &args[i]);
        assert_true(ids[i] > 0);
        if (i > 0)
            assert_true(ids[i] > ids[i - 1]);
    }
    RUN_UNTIL(l, log.n == 5);
    assert_int_equal(log.n, 5);
    assert_int_equal(log.order[0], 0);
    assert_int_equal(log.order[1], 20);
    assert_int_equal(log.order[2], 40);
    assert_int_equal(log.order[3], 60);
    assert_int_equal(log.order[4], 80);
    /* Never early. */
    for (int i = 0; i < 5; i++)
        assert_true(log.at[i] >= t0 + (uint64_t)log.order[i]);
    sf_loop_free(l);
}

/* Timers due at the same moment fire in the order they were set. */
static void
equal_timers_fire_in_set_order(void **state)
{
    sf_loop *l = new_loop();
    timer_log log = { .n = 0 };
    timer_arg args[8];

    (void)state;
    for (int i = 0; i < 8; i++) {
        args[i] = (timer_arg){ &log, i };
        assert_true(sf_loop_timer(l, 0, on_timer, &args[i]) > 0);
    }
    RUN_UNTIL(l, log.n == 8);
    assert_int_equal(log.n, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(log.order[i], i);
    sf_loop_free(l);
}

static void
timer_cancel(void **state)
{
    sf_loop *l = new_loop();
    timer_log log = { .n = 0 };
    timer_arg a = { &log, 1 }, b = { &log, 2 }, c = { &log, 3 };
    long ia, ib;

    (void)state;
    ia = sf_loop_timer(l, 10, on_timer, &a);
    ib = sf_loop_timer(l, 20, on_timer, &b);
    sf_loop_timer(l, 30, on_timer, &c);
    sf_loop_timer_cancel(l, ib);
    sf_loop_timer_cancel(l, ib);        /* twice is harmless */
    sf_loop_timer_cancel(l, 999999);    /* so is an unknown id */
    RUN_UNTIL(l, log.n == 2);
    assert_int_equal(sf_loop_run_once(l, 60), 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.order[0], 1);
    assert_int_equal(log.order[1], 3);
    sf_loop_timer_cancel(l, ia);        /* already fired: ignored */
    sf_loop_free(l);
}

/* A timer callback may cancel another timer that is due in the same pass. */
static void
timer_cancel_from_callback(void **state)
{
    sf_loop *l = new_loop();
    timer_log log = { .n = 0 };
    timer_arg a = { &log, 1 }, b = { &log, 2 };

    (void)state;
    sf_loop_timer(l, 5, on_timer, &a);
    log.cancel_id = sf_loop_timer(l, 5, on_timer, &b);
    unit_sleep_ms(20);
    assert_int_equal(sf_loop_run_once(l, 0), 1);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.order[0], 1);
    assert_int_equal(sf_loop_run_once(l, 30), 0);
    assert_int_equal(log.n, 1);
    sf_loop_free(l);
}

/* Many timers in random order still come out sorted (the heap under churn). */
static void
timers_many_sorted(void **state)
{
    enum { N = 200 };
    static int fired[N], tags[N];
    static timer_arg args[N];
    static timer_log log;
    sf_loop *l = new_loop();
    uint32_t x = 12345;
    int n = 0, last = -1, last_i = -1, cancelled = 0;
    long ids[N];

    (void)state;
    memset(&log, 0, sizeof(log));
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        tags[i] = (int)(x >> 16) % 50;
        args[i] = (timer_arg){ &log, i };
    }
    /* All set within one millisecond, so that the delays alone give the order. */
    for (int tries = 0;; tries++) {
        uint64_t t0 = unit_now_ms();

        for (int i = 0; i < N; i++)
            ids[i] = sf_loop_timer(l, (uint64_t)tags[i], on_timer, &args[i]);
        if (unit_now_ms() == t0)
            break;
        assert_true(tries < 50);
        for (int i = 0; i < N; i++)
            sf_loop_timer_cancel(l, ids[i]);
    }
    for (int i = 0; i < N; i += 7) {
        sf_loop_timer_cancel(l, ids[i]);
        cancelled++;
    }
    /* Drive the loop a pass at a time and read the order from the log as it fills. */
    for (uint64_t end = unit_now_ms() + UNIT_WAIT_MS; n < N - cancelled &&
         unit_now_ms() < end;) {
        log.n = 0;
        assert_true(sf_loop_run_once(l, 20) >= 0);
        for (int k = 0; k < log.n; k++) {
            int i = log.order[k];

            assert_true(i % 7 != 0);
            assert_int_equal(fired[i], 0);
            assert_true(tags[i] >= last);
            /* equal delays: in the order they were set */
            if (tags[i] == last)
                assert_true(i > last_i);
            last = tags[i];
            last_i = i;
            fired[i] = 1;
            n++;
        }
    }
    assert_int_equal(n, N - cancelled);
    sf_loop_free(l);
}

static void
run_once_waits_at_most_timeout(void **state)
{
    sf_loop *l = new_loop();
    uint64_t t0 = unit_now_ms(), w0 = sf_loop_wakeups(l), n0 = sf_loop_now_ms(l);

    (void)state;
    assert_int_equal(sf_loop_run_once(l, 50), 0);
    assert_true(unit_now_ms() - t0 >= 45);
    assert_true(unit_now_ms() - t0 < 1000);
    assert_int_equal(sf_loop_wakeups(l), w0 + 1);
    assert_true(sf_loop_now_ms(l) >= n0 + 45);
    /* A timer shortens the wait. */
    {
        timer_log log = { .n = 0 };
        timer_arg a = { &log, 1 };

        t0 = unit_now_ms();
        sf_loop_timer(l, 20, on_timer, &a);
        RUN_UNTIL(l, log.n == 1);
        assert_true(unit_now_ms() - t0 < 500);
        assert_int_equal(log.n, 1);
    }
    sf_loop_free(l);
}

/* ---- stopping ---- */

static void *
stop_later(void *arg)
{
    unit_sleep_ms(50);
    sf_loop_stop(arg);
    return NULL;
}

static void
stop_from_other_thread(void **state)
{
    sf_loop *l = new_loop();
    unit_loop_thread t;
    pthread_t th;
    uint64_t t0 = unit_now_ms();

    (void)state;
    /* The loop blocks in its own thread with nothing to do; another thread stops it. */
    unit_loop_start(&t, l);
    assert_int_equal(pthread_create(&th, NULL, stop_later, l), 0);
    assert_int_equal(unit_loop_join(&t, UNIT_WAIT_MS), 0);
    assert_int_equal(unit_join(th, UNIT_WAIT_MS, NULL), 0);
    assert_int_equal(t.rc, 0);
    assert_true(unit_now_ms() - t0 >= 45);
    /* Idle means asleep: a handful of wake-ups, not a spin. */
    assert_true(sf_loop_wakeups(l) <= 3);

    /* Stopped before it runs: returns at once, and runs again normally after. */
    sf_loop_stop(l);
    assert_int_equal(sf_loop_run(l), 0);
    unit_loop_start(&t, l);
    unit_sleep_ms(20);
    sf_loop_stop(l);
    assert_int_equal(unit_loop_join(&t, UNIT_WAIT_MS), 0);
    sf_loop_free(l);
}

static void
on_timer_stop(sf_loop *l, void *ud)
{
    (*(int *)ud)++;
    sf_loop_stop(l);
}

static void
stop_from_callback(void **state)
{
    sf_loop *l = new_loop();
    int fired = 0;

    (void)state;
    sf_loop_timer(l, 10, on_timer_stop, &fired);
    alarm(10);
    assert_int_equal(sf_loop_run(l), 0);
    alarm(UNIT_GUARD_SECS);
    assert_int_equal(fired, 1);
    sf_loop_free(l);
}

/* ---- signals ---- */

typedef struct sig_rec {
    int usr1, usr2, last;
} sig_rec;

static void
on_sig(sf_loop *l, int signo, void *ud)
{
    sig_rec *r = ud;

    (void)l;
    r->last = signo;
    if (signo == SIGUSR1)
        r->usr1++;
    else if (signo == SIGUSR2)
        r->usr2++;
}

static void
signals_through_signalfd(void **state)
{
    static const int sigs[] = { SIGUSR1, SIGUSR2, 0 };
    sf_loop *l = new_loop();
    sig_rec r = { 0 }, r2 = { 0 };
    sigset_t cur;

    (void)state;
    assert_int_equal(sf_loop_block_signals(sigs), 0);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
    assert_true(sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGUSR2));

    assert_int_equal(sf_loop_signal(l, SIGUSR1, on_sig, &r), 0);
    assert_int_equal(raise(SIGUSR1), 0);
    RUN_UNTIL(l, r.usr1 == 1);
    assert_int_equal(r.usr1, 1);
    assert_int_equal(r.last, SIGUSR1);

    /* A second signal on the same loop; each goes to its own callback. */
    assert_int_equal(sf_loop_signal(l, SIGUSR2, on_sig, &r2), 0);
    assert_int_equal(raise(SIGUSR2), 0);
    assert_int_equal(kill(getpid(), SIGUSR1), 0);
    RUN_UNTIL(l, r2.usr2 == 1 && r.usr1 == 2);
    assert_int_equal(r.usr1, 2);
    assert_int_equal(r.usr2, 0);
    assert_int_equal(r2.usr2, 1);
    assert_int_equal(r2.usr1, 0);
    sf_loop_free(l);
}

static void
signals_limit(void **state)
{
    sf_loop *l = new_loop();
    sig_rec r = { 0 };
    int i, rc = 0;

    (void)state;
    for (i = 0; i < 20 && rc == 0; i++)
        rc = sf_loop_signal(l, SIGRTMIN + i, on_sig, &r);
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(i, 9);
    sf_loop_free(l);
}

/* A descriptor adopted sits in the table unwatched: found by sf_loop_watched, never
 * reported ready; the walk's end is the highest descriptor in use, not the table's
 * room (walking the room would touch pages nobody uses). */
static void
adopt_and_fd_end(void **state)
{
    io_rec rec = { 0 };
    sf_loop *l = sf_loop_new(NULL);
    int sv[2], hi;

    (void)state;
    assert_non_null(l);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    hi = fcntl(sv[0], F_DUPFD, 300);
    assert_true(hi >= 300);
    assert_int_equal(sf_loop_adopt(l, hi, on_io, &rec), 0);
    assert_ptr_equal(sf_loop_watched(l, hi, on_io), &rec);
    assert_int_equal(sf_loop_fd_end(l), hi + 1);
    assert_int_equal(write(sv[1], "x", 1), 1);
    sf_loop_run_once(l, 50);
    assert_int_equal(rec.calls, 0);     /* readable, but not watched */
    sf_loop_forget(l, hi);
    assert_null(sf_loop_watched(l, hi, on_io));
    close(hi);
    close(sv[0]);
    close(sv[1]);
    sf_loop_free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_and_free),
        cmocka_unit_test(adopt_and_fd_end),
        cmocka_unit_test(watch_read_and_write),
        cmocka_unit_test(quiet_unwatch_rewatch),
        cmocka_unit_test(watched_lookup),
        cmocka_unit_test(forget_then_close),
        cmocka_unit_test(watch_errors),
        cmocka_unit_test(hangup_reported_as_both),
        cmocka_unit_test(unwatch_during_batch),
        cmocka_unit_test(timers_fire_in_order),
        cmocka_unit_test(equal_timers_fire_in_set_order),
        cmocka_unit_test(timer_cancel),
        cmocka_unit_test(timer_cancel_from_callback),
        cmocka_unit_test(timers_many_sorted),
        cmocka_unit_test(run_once_waits_at_most_timeout),
        cmocka_unit_test(stop_from_other_thread),
        cmocka_unit_test(stop_from_callback),
        cmocka_unit_test(signals_through_signalfd),
        cmocka_unit_test(signals_limit),
    };

    alarm(UNIT_GUARD_SECS);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
