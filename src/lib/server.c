/* server: set-up, running, stopping, draining and counters. Each loop (worker) owns its
 * listening sockets (SO_REUSEPORT when there are several loops: server_listen.c); the
 * TCP engine (server_tcp.c) and the UDP engine (server_udp.c) do the rest. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockflow/sock.h"
#include "server_int.h"
#include "trace_int.h"

#define SCRATCH_SIZE (64 * 1024)
#define SWEEP_MS 1000     /* the longest time between two sweeps for timeouts */
#define SWEEP_MIN_MS 10

void
sf__server_log(sf_server *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (s->o.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    s->o.log(s->o.log_ud, line);
}

sf_trace *
sf__server_trace(sf_server *s, sf_trace *t, unsigned long id)
{
    if (!SF_TRACING(s->o.tracer))
        return NULL;
    t->tracer = s->o.tracer;
    t->side = "server";
    t->id = id;
    return t;
}

/* ---- setting up ---- */

/* A timeout fires at most a quarter of itself late (and at most SWEEP_MS late): a 1 s
 * idle timeout closes within 1.25 s, not anywhere up to 2 s. */
static uint32_t
sweep_interval(const sf_server_opts *o)
{
    uint32_t ms = SWEEP_MS;

    if (o->idle_timeout_ms && o->idle_timeout_ms / 4 < ms)
        ms = o->idle_timeout_ms / 4;
    if (o->send_timeout_ms && o->send_timeout_ms / 4 < ms)
        ms = o->send_timeout_ms / 4;
    return ms < SWEEP_MIN_MS ? SWEEP_MIN_MS : ms;
}

static int
worker_init(sf_server *s, worker *w, int index, sf_err *err)
{
    w->s = s;
    w->index = index;
    w->spare_fd = -1;
    w->loop = sf_loop_new(err);
    if (w->loop == NULL)
        return err ? err->code : -ENOMEM;
    w->scratch = malloc(SCRATCH_SIZE);
    if (!w->scratch || sf__udp_worker_init(w, s->o.dgram_max) < 0)
        return sf_err_set(err, -ENOMEM, "server buffers");
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return 0;
}

sf_server *
sf_server_new(const sf_server_opts *opts, sf_err *err)
{
    sf_server *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        sf_err_set(err, -ENOMEM, "server");
        return NULL;
    }
    if (opts)
        s->o = *opts;
    if (s->o.loops <= 0)
        s->o.loops = 1;
    pthread_mutex_init(&s->accept_lock, NULL);
    if (s->o.queue_cap == 0)
        s->o.queue_cap = 256 * 1024;
    if (s->o.drain_timeout_ms == 0)
        s->o.drain_timeout_ms = 10000;
    if (s->o.dgram_max == 0 || s->o.dgram_max > 65536)
        s->o.dgram_max = 65536;
    if (s->o.udp_rate == 0)
        s->o.udp_rate = 1000;
    /* Small, so that one forged datagram between two servers that both answer (on
     * ordinary ports: CVE-2024-2169) dies within about twice this many datagrams. */
    if (s->o.udp_burst == 0)
        s->o.udp_burst = s->o.udp_rate == SF_UDP_NO_LIMIT ? 1
                       : s->o.udp_rate < SF_UDP_BURST_DEFAULT ? s->o.udp_rate
                                                              : SF_UDP_BURST_DEFAULT;
    if (s->o.udp_sources == 0)
        s->o.udp_sources = 4096;
    s->sweep_ms = sweep_interval(&s->o);
    s->w = calloc((size_t)s->o.loops, sizeof(*s->w));
    if (s->w == NULL) {
        sf_err_set(err, -ENOMEM, "server");
        free(s);
        return NULL;
    }
    s->nw = s->o.loops;
    s->guard = sf__udpguard_new(s->o.udp_allow_low_ports,
                                s->o.udp_rate == SF_UDP_NO_LIMIT ? 0 : s->o.udp_rate,
                                s->o.udp_burst, s->o.udp_sources, s->nw > 1);
    if (s->guard == NULL) {
        sf_err_set(err, -ENOMEM, "server");
        free(s->w);
        free(s);
        return NULL;
    }
    /* A worker never set up must own no descriptor when sf_server_free runs. */
    for (int i = 0; i < s->nw; i++)
        s->w[i].spare_fd = -1;
    for (int i = 0; i < s->nw; i++) {
        if (worker_init(s, &s->w[i], i, err) < 0) {
            sf_server_free(s);
            return NULL;
        }
    }
    return s;
}

static void
close_listeners(worker *w)
{
    for (int i = 0; i < w->nls; i++) {
        sf_trace t, *tp = sf__server_trace(w->s, &t, 0);

        if (w->ls[i].fd < 0)
            continue;
        sf__ring_stop_accepting(w, &w->ls[i]);
        sf_loop_unwatch(w->loop, w->ls[i].fd);
        sf_close(tp, w->ls[i].fd);
        w->ls[i].fd = -1;
    }
}

void
sf_server_free(sf_server *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nw; i++)
        s->w[i].draining = 0;   /* no loop runs now: closing is not draining */
    for (int i = 0; i < s->nw; i++) {
        worker *w = &s->w[i];

        sf__tcp_close_all(w);
        if (w->loop)
            close_listeners(w);
        for (int j = 0; j < w->nls; j++) {
            int first = 1;

            /* A service's state is shared by all its sockets in this loop: free once. */
            for (int k = 0; k < j; k++)
                first &= w->ls[k].state != w->ls[j].state;
            if (first && w->ls[j].svc->state_free && w->ls[j].state)
                w->ls[j].svc->state_free(w->ls[j].state);
        }
        if (w->spare_fd >= 0)
            close(w->spare_fd);
        sf_loop_free(w->loop);
        free(w->scratch);
        sf__udp_worker_free(w);
    }
    sf__udpguard_free(s->guard);
    pthread_mutex_destroy(&s->accept_lock);
    free(s->w);
    free(s);
}

static void
on_drain_deadline(sf_loop *l, void *ud)
{
    (void)ud;
    sf_loop_stop(l);
}

/* Whether listener i is the first of its service in w (the state is shared). */
static int
service_first(const worker *w, int i)
{
    for (int j = 0; j < i; j++)
        if (w->ls[j].svc == w->ls[i].svc)
            return 0;
    return 1;
}

static void
on_signal(sf_loop *l, int signo, void *ud)
{
    sf_server *s = ud;

    (void)l;
    if (signo == SIGCHLD) {
        worker *w = &s->w[0];

        sf__worker_enter(w);
        for (int i = 0; i < w->nls; i++)
            if (w->ls[i].svc->on_child && service_first(w, i))
                w->ls[i].svc->on_child(w->ls[i].state);
        sf__worker_leave(w);
        return;
    }
    /* SIGHUP (a closed terminal) drains like SIGTERM rather than cut every transfer. */
    sf_server_stop(s, (signo == SIGTERM || signo == SIGHUP) &&
                      atomic_load(&s->stop_mode) == 0);
}

static void *
worker_main(void *arg)
{
    worker *w = arg;
    sf_server *s = w->s;

    sf__ring_start(w);
    sf_loop_timer(w->loop, s->sweep_ms, sf__tcp_sweep, w);
    sf_loop_run(w->loop);
    if (atomic_load(&s->stop_mode) == 1) {
        /* Draining: refuse new clients at once, let the present ones finish. Loop 0
         * holds the signalfd: it runs while any loop has clients, so that a second
         * signal is heard even when loop 0 has none of its own. */
        close_listeners(w);
        w->draining = 1;
        if (w->nconns > 0 || (w->index == 0 && atomic_load(&s->total_conns) > 0)) {
            sf_loop_timer(w->loop, s->o.drain_timeout_ms, on_drain_deadline, w);
            sf_loop_run(w->loop);
        }
    }
    sf__ring_free(w);
    return NULL;
}

void
sf_server_stop(sf_server *s, int drain)
{
    atomic_store(&s->stop_mode, drain ? 1 : 2);
    for (int i = 0; i < s->nw; i++)
        sf_loop_stop(s->w[i].loop);
}

/* The caller's signal state, taken by take_signals and given back by give_back. */
typedef struct caller_signals {
    sigset_t mask;
    struct sigaction pipe;
} caller_signals;

/* SIGINT, SIGTERM, SIGHUP and SIGCHLD reach loop 0 through its signalfd only: blocked in this thread
 * (the loops' threads inherit it); SIGPIPE ignored (a reset peer must not kill). */
static int
take_signals(const sigset_t *sigs, caller_signals *was)
{
    struct sigaction ign = { .sa_handler = SIG_IGN };
    int rc = -pthread_sigmask(SIG_BLOCK, sigs, &was->mask);

    if (rc == 0 && sigaction(SIGPIPE, &ign, &was->pipe) < 0) {
        rc = -errno;
        pthread_sigmask(SIG_SETMASK, &was->mask, NULL);
    }
    return rc;
}

/* A program embedding the server gets its mask and SIGPIPE handler back. A SIGINT or
 * SIGTERM still pending was meant for the server: taken now, or unblocking it would
 * deliver it to the caller (by default, killing it). */
static void
give_back_signals(const sigset_t *sigs, const caller_signals *was)
{
    struct timespec now = { 0, 0 };
    sigset_t pending, take;

    sigemptyset(&take);
    if (sigpending(&pending) == 0)
        for (int signo = 1; signo < NSIG; signo++)
            if (sigismember(sigs, signo) == 1 && sigismember(&pending, signo) == 1 &&
                !sigismember(&was->mask, signo))
                sigaddset(&take, signo);
    while (sigtimedwait(&take, NULL, &now) > 0)
        ;
    sigaction(SIGPIPE, &was->pipe, NULL);
    pthread_sigmask(SIG_SETMASK, &was->mask, NULL);
}

static int
run_workers(sf_server *s)
{
    int rc = 0;

    for (int i = 1; i < s->nw; i++) {
        rc = -pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]);
        if (rc < 0) {
            sf_server_stop(s, 0);
            break;
        }
        s->w[i].started = 1;
    }
    if (rc == 0)
        worker_main(&s->w[0]);
    for (int i = 1; i < s->nw; i++)
        if (s->w[i].started)
            pthread_join(s->w[i].thread, NULL);
    return rc;
}

int
sf_server_run(sf_server *s)
{
    static const int signos[] = { SIGINT, SIGTERM, SIGHUP, SIGCHLD };
    caller_signals was;
    sigset_t sigs;
    int rc;

    sigemptyset(&sigs);
    for (size_t i = 0; i < sizeof(signos) / sizeof(signos[0]); i++)
        sigaddset(&sigs, signos[i]);
    if ((rc = take_signals(&sigs, &was)) < 0)
        return rc;
    for (size_t i = 0; i < sizeof(signos) / sizeof(signos[0]) && rc == 0; i++)
        rc = sf_loop_signal(s->w[0].loop, signos[i], on_signal, s);
    if (rc == 0)
        rc = run_workers(s);
    give_back_signals(&sigs, &was);
    return rc;
}

static void
add_stats(sf_server_stats *to, const sf_server_stats *a)
{
    to->accepted += a->accepted;
    to->closed += a->closed;
    to->refused_max += a->refused_max;
    to->emfile += a->emfile;
    to->bytes_in += a->bytes_in;
    to->bytes_out += a->bytes_out;
    to->dgrams_in += a->dgrams_in;
    to->dgrams_out += a->dgrams_out;
    to->dgrams_truncated += a->dgrams_truncated;
    to->dgrams_dropped += a->dgrams_dropped;
    to->queue_cap_hits += a->queue_cap_hits;
    to->timeouts += a->timeouts;
    to->ring_accepted += a->ring_accepted;
    to->dgrams_gso += a->dgrams_gso;
    to->dgrams_loop += a->dgrams_loop;
    to->dgrams_low_port += a->dgrams_low_port;
    to->dgrams_bad_addr += a->dgrams_bad_addr;
    to->dgrams_rate += a->dgrams_rate;
    to->dgrams_oversize += a->dgrams_oversize;
}

void
sf_server_get_stats(const sf_server *s, sf_server_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < s->nw; i++)
        add_stats(out, &s->w[i].st);
}
