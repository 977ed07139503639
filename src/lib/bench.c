/* bench: the load generator's core — counting, intervals, threads and the public API.
 * It never asks which mode runs: each mode (bench_echo.c, bench_connect.c, bench_stream.c
 * over bench_tcp.c; bench_udp.c) is an entry of the table in bench_modes.c.
 * One sf_loop per thread, each owning a share of the connections (or UDP slots). Counters
 * go to the worker's current interval; at each interval boundary (one falls on the end of
 * the warm-up) the interval is added to the worker's total if it lies after the warm-up,
 * and handed to the reporting thread under a mutex taken once per interval. Nothing else
 * is shared while the load runs. A single loop runs in the calling thread, which then
 * reports each interval as it closes: a process of one thread pays no reference count on
 * its sockets' files and no cancellation switch around each send and recv (about 1.5 %
 * of a generator's CPU at a million requests a second). */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_int.h"

#define SWEEP_MS 50                 /* timeouts and reconnects are looked at this often */

/* ---- counting ---- */

void
sf_bench_stats_init(sf_bench_stats *st)
{
    memset(st, 0, offsetof(sf_bench_stats, lat));
    sf_hist_init(&st->lat);
}

void
sf_bench_stats_merge(sf_bench_stats *d, const sf_bench_stats *s)
{
    d->requests += s->requests;
    d->mismatches += s->mismatches;
    d->bytes_out += s->bytes_out;
    d->bytes_in += s->bytes_in;
    d->connects += s->connects;
    d->sent += s->sent;
    d->lost += s->lost;
    d->late += s->late;
    d->err.refused += s->err.refused;
    d->err.reset += s->err.reset;
    d->err.timeout += s->err.timeout;
    d->err.closed += s->err.closed;
    d->err.no_port += s->err.no_port;
    d->err.other += s->err.other;
    if (s->err.last_other)
        d->err.last_other = s->err.last_other;
    sf_hist_merge(&d->lat, &s->lat);
}

void
sf_bench_count_error(sf_bench_errors *e, int code)
{
    switch (-code) {
    case ECONNREFUSED: e->refused++; break;
    case ECONNRESET: case EPIPE: case ECONNABORTED: e->reset++; break;
    case ETIMEDOUT: e->timeout++; break;
    case EADDRNOTAVAIL: case EADDRINUSE: e->no_port++; break;
    default: e->other++; e->last_other = code; break;
    }
}

uint64_t
sf_bench_error_total(const sf_bench_errors *e)
{
    return e->refused + e->reset + e->timeout + e->closed + e->no_port + e->other;
}

void
sf__bench_count_error(sf__bench_worker *w, int code)
{
    sf_bench_count_error(&w->cur.err, code);
}

void
sf__bench_count_done(sf__bench_worker *w, uint64_t n)
{
    w->cur.requests += n;
    if (sf__bench_measuring(w))
        w->measured += n;
}

void
sf__bench_check_quota(sf__bench_worker *w)
{
    if (w->quota && w->measured >= w->quota && w->outstanding == 0 && !w->stopping) {
        w->stopping = 1;
        sf_loop_stop(w->loop);
    }
}

const char *
sf__bench_pat_at(const sf_bench *b, uint64_t off)
{
    return b->pat + off % SF__BENCH_PATLEN;
}

const sf_addr *
sf__bench_pick_source(sf__bench_worker *w)
{
    const sf_bench *b = w->b;

    if (b->o.nsrc == 0)
        return NULL;
    return &b->src[(w->src_next++) % b->o.nsrc];
}

static uint64_t report_due(sf_bench *b, uint64_t now);

/* A single worker is run by the thread that called sf_bench_run. */
static int
in_caller(const sf_bench *b)
{
    return b->nw == 1;
}

/* ---- timers and intervals ---- */

static uint32_t
sweep_ms(const sf_bench *b)
{
    uint32_t ms = b->o.timeout_ms / 4;

    return ms < 1 ? 1 : ms > SWEEP_MS ? SWEEP_MS : ms;
}

static void
on_sweep(sf_loop *l, void *ud)
{
    sf__bench_worker *w = ud;

    sf__bench_clock_in(w);
    if (w->stopping)
        return;
    w->b->mode->sweep(w);
    sf_loop_timer(l, sweep_ms(w->b), on_sweep, w);
}

/* Interval boundaries, in ms from the start: one falls on the end of the warm-up. */
static uint64_t
boundary_ms(const sf_bench *b, int k)
{
    uint64_t iv = b->o.interval_ms, first = b->o.warmup_ms % iv;

    if (first == 0)
        first = iv;
    return first + (uint64_t)(k - 1) * iv;
}

/* Without interval reports the only boundary is the end of the warm-up. */
uint64_t
sf__bench_boundary_ns(const sf_bench *b, int k)
{
    uint64_t ms;

    if (b->o.interval_ms)
        ms = boundary_ms(b, k);
    else
        ms = k == 1 && b->o.warmup_ms ? b->o.warmup_ms : UINT64_MAX / 2000000u;
    if (b->start_ns + ms * 1000000u >= b->end_ns)
        return UINT64_MAX;
    return b->start_ns + ms * 1000000u;
}

void
sf__bench_close_interval(sf__bench_worker *w, uint64_t end_ns, int done)
{
    sf_bench *b = w->b;

    if (w->cur_start_ns >= b->warm_end_ns)
        sf_bench_stats_merge(&w->total, &w->cur);
    pthread_mutex_lock(&b->mu);
    sf_bench_stats_merge(&w->posted, &w->cur);
    if (!done)
        w->posted_idx = w->next_tick;
    else
        w->done = 1;
    if (in_caller(b) && !done)
        report_due(b, end_ns);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    sf_bench_stats_init(&w->cur);
    w->cur_start_ns = end_ns;
}

void
sf__bench_roll(sf__bench_worker *w)
{
    while (w->now >= w->roll_ns) {
        sf__bench_close_interval(w, w->roll_ns, 0);
        w->next_tick++;
        w->roll_ns = sf__bench_boundary_ns(w->b, w->next_tick);
    }
}

/* A worker with nothing to do still closes its intervals on time. */
static void
on_tick(sf_loop *l, void *ud)
{
    sf__bench_worker *w = ud;
    uint64_t now;

    sf__bench_clock_in(w);
    if (w->roll_ns == UINT64_MAX)
        return;
    now = sf_now_ns();
    sf_loop_timer(l, w->roll_ns > now ? (w->roll_ns - now + 999999u) / 1000000u : 0,
                  on_tick, w);
}

static void
on_deadline(sf_loop *l, void *ud)
{
    sf__bench_worker *w = ud;

    w->stopping = 1;
    sf_loop_stop(l);
}

/* ---- threads ---- */

static void *
worker_main(void *arg)
{
    sf__bench_worker *w = arg;
    sf_bench *b = w->b;
    uint64_t now = sf_now_ns();

    w->now = now;
    w->cur_start_ns = b->start_ns;
    w->next_tick = 1;
    w->roll_ns = sf__bench_boundary_ns(b, 1);
    sf_loop_timer(w->loop, b->end_ns > now ? (b->end_ns - now) / 1000000u : 0, on_deadline, w);
    sf_loop_timer(w->loop, sweep_ms(b), on_sweep, w);
    on_tick(w->loop, w);
    if (!atomic_load(&b->stop)) {
        b->mode->start(w);
        sf__bench_check_quota(w);
        sf_loop_run(w->loop);
    }
    w->stopping = 1;
    w->finish_ns = sf_now_ns();
    b->mode->finish(w);
    w->now = w->finish_ns;
    sf__bench_roll(w);
    sf__bench_close_interval(w, w->finish_ns, 1);
    return NULL;
}

static void
fill_pattern(char *p, size_t len)
{
    uint64_t x = 0x9e3779b97f4a7c15u;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (char)(x >> 24);
    }
}

static int
worker_init(sf_bench *b, sf__bench_worker *w, int index, int share, sf_err *err)
{
    w->b = b;
    w->index = index;
    w->share = share;
    w->loop = sf_loop_new(err);
    if (w->loop == NULL)
        return err->code;
    sf_bench_stats_init(&w->cur);
    sf_bench_stats_init(&w->total);
    sf_bench_stats_init(&w->posted);
    return b->mode->init(w, err);
}

static int
copy_sources(sf_bench *b, const sf_bench_opts *opts, sf_err *err)
{
    sf_bench_opts *o = &b->o;

    if (o->nsrc <= 0) {
        o->nsrc = 0;
        o->src = NULL;
        return 0;
    }
    b->src = malloc((size_t)o->nsrc * sizeof(*b->src));
    if (b->src == NULL)
        return sf_err_set(err, -ENOMEM, "bench");
    memcpy(b->src, opts->src, (size_t)o->nsrc * sizeof(*b->src));
    for (int i = 0; i < o->nsrc; i++)
        sf_addr_set_port(&b->src[i], 0);
    o->src = b->src;
    return 0;
}

static int
make_pattern(sf_bench *b, sf_err *err)
{
    b->pat = malloc(SF__BENCH_PATLEN + SF__BENCH_WINDOW);
    if (b->pat == NULL)
        return sf_err_set(err, -ENOMEM, "bench");
    fill_pattern(b->pat, SF__BENCH_PATLEN);
    for (size_t i = SF__BENCH_PATLEN; i < SF__BENCH_PATLEN + SF__BENCH_WINDOW; i++)
        b->pat[i] = b->pat[i - SF__BENCH_PATLEN];   /* the window wraps: WINDOW > PATLEN */
    return 0;
}

static int
make_workers(sf_bench *b, sf_err *err)
{
    const sf_bench_opts *o = &b->o;
    int threads = sf__bench_threads(o);

    b->w = calloc((size_t)threads, sizeof(*b->w));
    if (b->w == NULL)
        return sf_err_set(err, -ENOMEM, "bench");
    b->nw = threads;
    for (int i = 0; i < threads; i++) {
        int share = o->conns / threads + (i < o->conns % threads);

        if (worker_init(b, &b->w[i], i, share, err) < 0)
            return err->code;
        if (o->requests)
            b->w[i].quota = o->requests / (uint64_t)threads +
                            ((uint64_t)i < o->requests % (uint64_t)threads);
    }
    return 0;
}

sf_bench *
sf_bench_new(const sf_bench_opts *opts, sf_err *err)
{
    sf_bench *b;

    if (sf_bench_check(opts, err) < 0)
        return NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        sf_err_set(err, -ENOMEM, "bench");
        return NULL;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->o = *opts;
    b->mode = sf__bench_mode_of(opts->mode);
    sf_bench_defaults(&b->o);
    if (sf__bench_check_fds(&b->o, err) < 0 || copy_sources(b, opts, err) < 0 ||
        make_pattern(b, err) < 0)
        goto fail;
    if (b->mode->setup && b->mode->setup(b, err) < 0)
        goto fail;
    if (make_workers(b, err) < 0)
        goto fail;
    return b;
fail:
    sf_bench_free(b);
    return NULL;
}

void
sf_bench_free(sf_bench *b)
{
    if (b == NULL)
        return;
    for (int i = 0; b->w && i < b->nw; i++) {
        sf__bench_worker *w = &b->w[i];

        if (b->mode->free)
            b->mode->free(w);
        sf_loop_free(w->loop);
    }
    if (b->mode->teardown)
        b->mode->teardown(b);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->w);
    free(b->pat);
    free(b->src);
    free(b);
}

void
sf_bench_stop(sf_bench *b)
{
    atomic_store(&b->stop, 1);
    for (int i = 0; i < b->nw; i++)
        if (b->w[i].loop)
            sf_loop_stop(b->w[i].loop);
}

/* ---- the reporting thread ---- */

static void
abs_time(struct timespec *ts, uint64_t mono_ns)
{
    ts->tv_sec = (time_t)(mono_ns / 1000000000u);
    ts->tv_nsec = (long)(mono_ns % 1000000000u);
}

/* Hand the posted counters of every worker to on_interval as interval k. Called with
 * b->mu held; drops it around the callback. */
static void
report_interval(sf_bench *b, int k, uint64_t from_ms, uint64_t to_ms, sf_bench_stats *st)
{
    sf_bench_interval iv;

    sf_bench_stats_init(st);
    for (int i = 0; i < b->nw; i++) {
        sf_bench_stats_merge(st, &b->w[i].posted);
        sf_bench_stats_init(&b->w[i].posted);
    }
    iv.index = k;
    iv.t_s = (double)to_ms / 1000.0;
    iv.len_s = (double)(to_ms - from_ms) / 1000.0;
    iv.warmup = to_ms <= b->o.warmup_ms;
    iv.st = st;
    pthread_mutex_unlock(&b->mu);
    b->o.on_interval(b->o.ud, &iv);
    pthread_mutex_lock(&b->mu);
}

static int
all_done(const sf_bench *b)
{
    for (int i = 0; i < b->nw; i++)
        if (!b->w[i].done)
            return 0;
    return 1;
}

static int
all_posted(const sf_bench *b, int k)
{
    for (int i = 0; i < b->nw; i++)
        if (!b->w[i].done && b->w[i].posted_idx < k)
            return 0;
    return 1;
}

/* Hand to on_interval every interval all workers have posted, or that is 250 ms late
 * (a worker late to hand over waits for the next interval, not the report). Called with
 * b->mu held. Returns when the next interval is that late (UINT64_MAX: none is left). */
static uint64_t
report_due(sf_bench *b, uint64_t now)
{
    uint64_t total_ms = b->o.warmup_ms + b->o.duration_ms;

    while (b->rep_st && boundary_ms(b, b->rep_k) < total_ms) {
        uint64_t bound_ms = boundary_ms(b, b->rep_k);
        uint64_t latest = b->start_ns + bound_ms * 1000000u + 250000000u;

        if (!all_posted(b, b->rep_k) && now < latest)
            return latest;
        report_interval(b, b->rep_k, b->rep_last_ms, bound_ms, b->rep_st);
        b->rep_last_ms = bound_ms;
        b->rep_k++;
    }
    return UINT64_MAX;
}

/* The calling thread waits, reports intervals as the workers hand them over, and stops
 * everything if a worker outlives the deadline by far (it cannot, but no wait here is
 * left unbounded). With the worker run in this thread, all is done by then: only the
 * last interval is left to report. */
static void
watch_run(sf_bench *b)
{
    uint64_t total_ms = b->o.warmup_ms + b->o.duration_ms;

    pthread_mutex_lock(&b->mu);
    while (!all_done(b)) {
        uint64_t now = sf_now_ns(), wake = now + 100000000u, late = report_due(b, now);
        struct timespec ts;

        if (late < wake)
            wake = late;
        if (now > b->end_ns + 5000000000u)
            sf_bench_stop(b);
        abs_time(&ts, wake);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    if (b->rep_st) {
        uint64_t end_ms = (sf_now_ns() - b->start_ns) / 1000000u;

        if (end_ms > total_ms)
            end_ms = total_ms;
        if (end_ms > b->rep_last_ms)
            report_interval(b, b->rep_k, b->rep_last_ms, end_ms, b->rep_st);
    }
    pthread_mutex_unlock(&b->mu);
}

static int
start_threads(sf_bench *b, sf_err *err)
{
    for (int i = 0; i < b->nw; i++) {
        int rc = -pthread_create(&b->w[i].thread, NULL, worker_main, &b->w[i]);

        if (rc < 0) {
            sf_err_set(err, rc, "bench: thread");
            sf_bench_stop(b);
            pthread_mutex_lock(&b->mu);
            for (int j = i; j < b->nw; j++)
                b->w[j].done = 1;
            pthread_mutex_unlock(&b->mu);
            return rc;
        }
        b->w[i].started = 1;
    }
    return 0;
}

int
sf_bench_run(sf_bench *b, sf_bench_result *r, sf_err *err)
{
    pthread_condattr_t ca;
    uint64_t finish = 0;
    int rc;

    memset(r, 0, offsetof(sf_bench_result, st));
    sf_bench_stats_init(&r->st);
    /* Waits on the condition variable are measured on the monotonic clock. */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&b->cv);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);

    b->rep_k = 1;
    b->rep_last_ms = 0;
    b->rep_st = b->o.interval_ms && b->o.on_interval ? malloc(sizeof(*b->rep_st)) : NULL;
    b->start_ns = sf_now_ns();
    b->warm_end_ns = b->start_ns + b->o.warmup_ms * 1000000u;
    b->end_ns = b->warm_end_ns + b->o.duration_ms * 1000000u;
    if (in_caller(b)) {
        rc = 0;
        b->w[0].started = 1;
        worker_main(&b->w[0]);
    } else {
        rc = start_threads(b, err);
    }
    watch_run(b);
    free(b->rep_st);
    b->rep_st = NULL;
    for (int i = 0; i < b->nw; i++) {
        sf__bench_worker *w = &b->w[i];

        if (!w->started)
            continue;
        if (!in_caller(b))
            pthread_join(w->thread, NULL);
        sf_bench_stats_merge(&r->st, &w->total);
        if (w->finish_ns > finish)
            finish = w->finish_ns;
        if (w->quota && w->measured >= w->quota)
            r->reached++;
    }
    r->reached = b->o.requests && r->reached == b->nw;
    r->threads = b->nw;
    r->local_target = sf__bench_is_local(&b->o.target);
    r->threads_halved = b->o.threads <= 0 && r->local_target && sf__bench_cpus() > 1;
    r->interrupted = atomic_load(&b->stop);
    r->warmup_s = (double)b->o.warmup_ms / 1000.0;
    if (finish > b->end_ns)
        finish = b->end_ns;
    r->elapsed_s = finish > b->warm_end_ns ? (double)(finish - b->warm_end_ns) / 1e9 : 0.0;
    return rc;
}
