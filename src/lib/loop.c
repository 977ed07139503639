/* loop: one epoll instance, a table of watchers indexed by fd, a timer heap and a
 * signalfd; sf_loop_stop() wakes it through an eventfd from any thread. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "sockflow/loop.h"

#define MAX_EVENTS 256
#define MAX_DEFER 16        /* passes timers may wait for ready events (16 x 256 events) */
#define MAX_SIGNALS 8

#define MAX_FNS 255          /* distinct callbacks per loop */

/* 16 bytes: a server holds one per idle connection, so the callback is a small index
 * into the loop's table of callbacks (a server has a handful), not a pointer. */
typedef struct watcher {
    void *ud;
    uint8_t fn;             /* index into fns, 0: not watched */
    uint8_t events;
} watcher;

typedef struct timer {
    uint64_t due_ms;
    long id;
    sf_timer_fn fn;
    void *ud;
} timer;

struct sf_loop {
    int epfd;
    int wakefd;
    int sigfd;
    atomic_int stopping;
    watcher *w;             /* indexed by fd */
    int nw;
    int fd_end;             /* one past the highest fd ever in the table */
    sf_io_fn fns[MAX_FNS + 1];  /* the callbacks watchers name; fns[0] unused */
    int nfns;
    timer *heap;            /* min-heap on due_ms */
    int ntimers, captimers;
    long next_timer_id;
    struct { int signo; sf_signal_fn fn; void *ud; } sig[MAX_SIGNALS];
    int nsig;
    sigset_t sigmask;
    uint64_t now_ms;
    uint64_t wakeups;
    int deferred;           /* passes in a row that left the timers for later */
    sf_wait_fn wait;        /* a waiter in place of epoll_wait, or NULL */
    sf_run_fn run;
    void *wait_ud;
    int epoll_more;         /* the waiter's pass: read the epoll set again, not waiting */
};

static void free_watchers(watcher *w, int n);

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t
to_epoll(int events)
{
    return (events & SF_READ ? EPOLLIN : 0) | (events & SF_WRITE ? EPOLLOUT : 0);
}

static void
on_wake(sf_loop *l, int fd, int events, void *ud)
{
    uint64_t v;

    (void)l;
    (void)events;
    (void)ud;
    while (read(fd, &v, sizeof(v)) > 0)
        ;
}

sf_loop *
sf_loop_new(sf_err *err)
{
    sf_loop *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        sf_err_set(err, -ENOMEM, "loop");
        return NULL;
    }
    l->sigfd = -1;
    l->wakefd = -1;
    sigemptyset(&l->sigmask);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        sf_err_set(err, -errno, "epoll_create1");
        goto fail;
    }
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wakefd < 0) {
        sf_err_set(err, -errno, "eventfd");
        goto fail;
    }
    if (sf_loop_watch(l, l->wakefd, SF_READ, on_wake, NULL) < 0) {
        sf_err_set(err, -errno, "epoll_ctl eventfd");
        goto fail;
    }
    l->now_ms = mono_ms();
    return l;
fail:
    sf_loop_free(l);
    return NULL;
}

void
sf_loop_free(sf_loop *l)
{
    if (l == NULL)
        return;
    if (l->sigfd >= 0)
        close(l->sigfd);
    if (l->wakefd >= 0)
        close(l->wakefd);
    if (l->epfd >= 0)
        close(l->epfd);
    free_watchers(l->w, l->nw);
    free(l->heap);
    free(l);
}

/* The table in pages of its own: the kernel hands out zero pages untouched, so a large
 * table costs memory only for the descriptors in use, and the one it replaces goes back
 * whole (from malloc it could stay in the heap). */
static void
free_watchers(watcher *w, int n)
{
    if (w)
        munmap(w, (size_t)n * sizeof(*w));
}

static int
grow_watchers(sf_loop *l, int fd)
{
    int n = l->nw ? l->nw : 256;
    watcher *w;

    while (n <= fd)
        n *= 2;
    w = mmap(NULL, (size_t)n * sizeof(*w), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED)
        return -ENOMEM;
    if (l->nw)
        memcpy(w, l->w, (size_t)l->nw * sizeof(*w));
    free_watchers(l->w, l->nw);
    l->w = w;
    l->nw = n;
    return 0;
}

/* The index of fn in the loop's table of callbacks, added if new; 0 when full. */
static int
fn_index(sf_loop *l, sf_io_fn fn)
{
    for (int i = 1; i <= l->nfns; i++)
        if (l->fns[i] == fn)
            return i;
    if (l->nfns == MAX_FNS)
        return 0;
    l->fns[++l->nfns] = fn;
    return l->nfns;
}

/* Room in the table for fd and fn's index there: the index, or a negative code. */
static int
make_room(sf_loop *l, int fd, sf_io_fn fn)
{
    int idx;

    if (fd < 0)
        return -EBADF;
    if ((idx = fn_index(l, fn)) == 0)
        return -ENOSPC;
    if (fd >= l->nw && grow_watchers(l, fd) < 0)
        return -ENOMEM;
    if (fd >= l->fd_end)
        l->fd_end = fd + 1;
    return idx;
}

int
sf_loop_watch(sf_loop *l, int fd, int events, sf_io_fn fn, void *ud)
{
    struct epoll_event ev = { .events = to_epoll(events), .data.fd = fd };
    int op, idx;

    if ((idx = make_room(l, fd, fn)) < 0)
        return idx;
    op = l->w[fd].fn ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epfd, op, fd, &ev) < 0)
        return -errno;
    l->w[fd].fn = (uint8_t)idx;
    l->w[fd].ud = ud;
    l->w[fd].events = (uint8_t)events;
    return 0;
}

int
sf_loop_adopt(sf_loop *l, int fd, sf_io_fn fn, void *ud)
{
    int idx;

    if ((idx = make_room(l, fd, fn)) < 0)
        return idx;
    l->w[fd].fn = (uint8_t)idx;
    l->w[fd].ud = ud;
    l->w[fd].events = 0;
    return 0;
}

int
sf_loop_set_events(sf_loop *l, int fd, int events)
{
    struct epoll_event ev = { .events = to_epoll(events), .data.fd = fd };

    if (fd < 0 || fd >= l->nw || l->w[fd].fn == 0)
        return -EBADF;
    if (l->w[fd].events == events)
        return 0;
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -errno;
    l->w[fd].events = (uint8_t)events;
    return 0;
}

void
sf_loop_unwatch(sf_loop *l, int fd)
{
    if (fd < 0 || fd >= l->nw || l->w[fd].fn == 0)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    sf_loop_forget(l, fd);
}

void
sf_loop_forget(sf_loop *l, int fd)
{
    if (fd < 0 || fd >= l->nw)
        return;
    l->w[fd].fn = 0;
    l->w[fd].ud = NULL;
    l->w[fd].events = 0;
}

void *
sf_loop_watched(const sf_loop *l, int fd, sf_io_fn fn)
{
    if (fd < 0 || fd >= l->nw || l->w[fd].fn == 0 || l->fns[l->w[fd].fn] != fn)
        return NULL;
    return l->w[fd].ud;
}

int
sf_loop_fd_end(const sf_loop *l)
{
    /* Not the table's size: walking its untouched end would read pages that (on some
     * kernels) then take memory, 16 bytes for every fd up to the next power of two. */
    return l->fd_end;
}

/* ---- timers: a binary min-heap ---- */

static void
heap_swap(timer *h, int i, int j)
{
    timer tmp = h[i];

    h[i] = h[j];
    h[j] = tmp;
}

/* Earlier due first; timers due at the same moment in the order they were set (ids
 * grow), which a heap alone does not keep. */
static int
timer_before(const timer *a, const timer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->id < b->id);
}

static void
heap_up(timer *h, int i)
{
    while (i > 0 && timer_before(&h[i], &h[(i - 1) / 2])) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void
heap_down(timer *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;

        if (l < n && timer_before(&h[l], &h[m]))
            m = l;
        if (r < n && timer_before(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

static void
heap_remove(sf_loop *l, int i)
{
    l->ntimers--;
    if (i == l->ntimers)
        return;
    l->heap[i] = l->heap[l->ntimers];
    heap_down(l->heap, l->ntimers, i);
    heap_up(l->heap, i);
}

long
sf_loop_timer(sf_loop *l, uint64_t ms, sf_timer_fn fn, void *ud)
{
    if (l->ntimers == l->captimers) {
        int n = l->captimers ? l->captimers * 2 : 16;
        timer *h = realloc(l->heap, (size_t)n * sizeof(*h));

        if (h == NULL)
            return -ENOMEM;
        l->heap = h;
        l->captimers = n;
    }
    l->heap[l->ntimers] = (timer){ mono_ms() + ms, ++l->next_timer_id, fn, ud };
    heap_up(l->heap, l->ntimers++);
    return l->next_timer_id;
}

void
sf_loop_timer_cancel(sf_loop *l, long id)
{
    for (int i = 0; i < l->ntimers; i++) {
        if (l->heap[i].id == id) {
            heap_remove(l, i);
            return;
        }
    }
}

static int
run_timers(sf_loop *l)
{
    int n = 0;

    while (l->ntimers > 0 && l->heap[0].due_ms <= l->now_ms) {
        timer t = l->heap[0];

        heap_remove(l, 0);
        t.fn(l, t.ud);
        n++;
    }
    return n;
}

static int
next_timeout(sf_loop *l, int timeout_ms)
{
    uint64_t now, wait;

    if (l->ntimers == 0)
        return timeout_ms;
    now = mono_ms();
    wait = l->heap[0].due_ms > now ? l->heap[0].due_ms - now : 0;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms < wait)
        return timeout_ms;
    return wait > 0x7fffffff ? 0x7fffffff : (int)wait;
}

/* ---- signals ---- */

int
sf_loop_block_signals(const int *sigs)
{
    sigset_t set;

    sigemptyset(&set);
    for (; *sigs; sigs++)
        sigaddset(&set, *sigs);
    return -pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void
on_signalfd(sf_loop *l, int fd, int events, void *ud)
{
    struct signalfd_siginfo si;

    (void)events;
    (void)ud;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        for (int i = 0; i < l->nsig; i++)
            if (l->sig[i].signo == (int)si.ssi_signo)
                l->sig[i].fn(l, (int)si.ssi_signo, l->sig[i].ud);
    }
}

int
sf_loop_signal(sf_loop *l, int signo, sf_signal_fn fn, void *ud)
{
    int fd;

    if (l->nsig == MAX_SIGNALS)
        return -ENOSPC;
    sigaddset(&l->sigmask, signo);
    fd = signalfd(l->sigfd, &l->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (l->sigfd < 0) {
        int rc = sf_loop_watch(l, fd, SF_READ, on_signalfd, NULL);

        if (rc < 0) {
            close(fd);
            return rc;
        }
    }
    l->sigfd = fd;
    l->sig[l->nsig].signo = signo;
    l->sig[l->nsig].fn = fn;
    l->sig[l->nsig].ud = ud;
    l->nsig++;
    return 0;
}

/* ---- running ---- */

/* The waiter's pass: its wait, its events, then the epoll set's without waiting when
 * it says so. A level-triggered descriptor left ready by its handler (a bounded batch)
 * wakes nobody again, so the set is read until a read finds nothing. Returns what
 * epoll_wait would, errno set. */
static int
wait_other(sf_loop *l, struct epoll_event *evs, int timeout_ms)
{
    int rc = l->wait(l, l->epoll_more ? 0 : timeout_ms, l->wait_ud);
    int n = 0;

    if (rc < 0 && rc != -EINTR) {
        errno = -rc;
        return -1;
    }
    l->now_ms = mono_ms();
    if (l->run(l, l->wait_ud) > 0 || l->epoll_more)
        n = epoll_wait(l->epfd, evs, MAX_EVENTS, 0);
    l->epoll_more = n > 0;
    if (rc == -EINTR && n <= 0) {
        errno = EINTR;
        return -1;
    }
    return n;
}

int
sf_loop_run_once(sf_loop *l, int timeout_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int n, handled = 0;

    if (l->wait)
        n = wait_other(l, evs, l->deferred ? 0 : next_timeout(l, timeout_ms));
    else
        n = epoll_wait(l->epfd, evs, MAX_EVENTS, l->deferred ? 0 : next_timeout(l, timeout_ms));
    l->wakeups++;
    if (n < 0) {
        if (errno != EINTR)
            return -errno;
        /* A signal (SIGCONT after a stop) is no sign that time ran out: the ready
         * events come first, on the next pass, which waits no longer since a timer is
         * due. */
        l->deferred++;
        return 0;
    }
    l->now_ms = mono_ms();
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        uint32_t e = evs[i].events;
        int events = 0;

        /* The watcher may have gone during this batch (closed by another callback). */
        if (fd >= l->nw || l->w[fd].fn == 0)
            continue;
        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            events |= SF_READ;
        if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            events |= SF_WRITE;
        events &= l->w[fd].events | ((e & (EPOLLERR | EPOLLHUP)) ? SF_READ | SF_WRITE : 0);
        if (events == 0)
            continue;
        l->fns[l->w[fd].fn](l, fd, events, l->w[fd].ud);
        handled++;
    }
    /* A full batch: more may be ready. Timers judge staleness (idle connections), so
     * after a stall (SIGSTOP, a debugger, a paused VM) every ready event is handled
     * before them, within MAX_DEFER passes so a busy loop still runs its timers. */
    if (n == MAX_EVENTS && ++l->deferred < MAX_DEFER)
        return handled;
    l->deferred = 0;
    return handled + run_timers(l);
}

void
sf_loop_set_waiter(sf_loop *l, sf_wait_fn wait, sf_run_fn run, void *ud)
{
    l->wait = wait;
    l->run = wait ? run : NULL;
    l->wait_ud = ud;
    l->epoll_more = 0;
}

int
sf_loop_epoll_fd(const sf_loop *l)
{
    return l->epfd;
}

int
sf_loop_run(sf_loop *l)
{
    /* The request is taken and cleared in one step: a stop that comes while the loop
     * is returning is not lost, it ends the next run at once. */
    while (atomic_exchange(&l->stopping, 0) == 0) {
        int rc = sf_loop_run_once(l, -1);

        if (rc < 0)
            return rc;
    }
    return 0;
}

void
sf_loop_stop(sf_loop *l)
{
    uint64_t one = 1;

    atomic_store(&l->stopping, 1);
    if (write(l->wakefd, &one, sizeof(one)) < 0) {
        /* the counter is already non-zero: the loop will wake anyway */
    }
}

uint64_t
sf_loop_now_ms(sf_loop *l)
{
    return l->now_ms;
}

uint64_t
sf_loop_wakeups(const sf_loop *l)
{
    return l->wakeups;
}
