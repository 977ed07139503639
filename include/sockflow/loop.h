/* loop: epoll readiness, timers and signals; one loop per thread. */
#ifndef SOCKFLOW_LOOP_H
#define SOCKFLOW_LOOP_H

#include <stdint.h>
#include "err.h"

typedef struct sf_loop sf_loop;

enum { SF_READ = 1, SF_WRITE = 2 };

/* Called with SF_READ/SF_WRITE bits that are ready (errors and hang-ups are reported as
 * both, so the owner's next read or write finds out what happened). */
typedef void (*sf_io_fn)(sf_loop *l, int fd, int events, void *ud);
typedef void (*sf_timer_fn)(sf_loop *l, void *ud);
typedef void (*sf_signal_fn)(sf_loop *l, int signo, void *ud);

/* A new loop, or NULL with err set. */
sf_loop *sf_loop_new(sf_err *err);
void sf_loop_free(sf_loop *l);

/* Watch fd for events (SF_READ|SF_WRITE; 0 keeps it registered but quiet). One
 * watcher per fd; watching again changes the events and callback. A loop knows at most
 * 255 distinct callbacks. Returns 0, -ENOSPC past them, or -errno. */
int sf_loop_watch(sf_loop *l, int fd, int events, sf_io_fn fn, void *ud);
/* Change only the events of a watched fd (cheap when unchanged). */
int sf_loop_set_events(sf_loop *l, int fd, int events);
/* Stop watching fd (call before closing it). */
void sf_loop_unwatch(sf_loop *l, int fd);
/* Forget fd without asking the kernel: only for a descriptor closed right after that is
 * the only one open on its file (not dup'ed, not inherited by a running program), whose
 * close then removes it from the loop's epoll set by itself. Saves one system call per
 * closed connection; with another descriptor open on the file, use sf_loop_unwatch. */
void sf_loop_forget(sf_loop *l, int fd);
/* Put fd in the loop's table with fn and ud, not watched: its readiness is learnt
 * elsewhere (an io_uring request), and only sf_loop_watched and sf_loop_forget apply to
 * it. Lets such a descriptor share the one table. Returns 0, -ENOSPC or -ENOMEM. */
int sf_loop_adopt(sf_loop *l, int fd, sf_io_fn fn, void *ud);
/* The ud fd is watched with, if its callback is fn; else NULL. Lets an owner use the
 * loop's table (indexed by fd) as its own instead of keeping a second one. */
void *sf_loop_watched(const sf_loop *l, int fd, sf_io_fn fn);
/* One past the highest fd ever put in the table (to walk it with sf_loop_watched). */
int sf_loop_fd_end(const sf_loop *l);

/* A one-shot timer firing after ms milliseconds. Returns an id > 0 or a negative code. */
long sf_loop_timer(sf_loop *l, uint64_t ms, sf_timer_fn fn, void *ud);
/* Cancel a pending timer; unknown or fired ids are ignored. */
void sf_loop_timer_cancel(sf_loop *l, long id);

/* Deliver signo to fn in this loop (signalfd). The caller blocks the signal in every
 * thread first (sf_loop_block_signals). Returns 0 or -errno. */
int sf_loop_signal(sf_loop *l, int signo, sf_signal_fn fn, void *ud);

/* Block sigs (a 0-terminated list) in the calling thread, so that threads created after
 * inherit the mask and signals reach loops through signalfd only. */
int sf_loop_block_signals(const int *sigs);

/* Another way to wait, in place of epoll_wait (one per loop; wait NULL removes it):
 * wait(l, timeout_ms, ud) sleeps until its own events or timeout_ms (-1: no limit, 0:
 * not at all) and returns >= 0, or -errno (-EINTR: a signal); then run(l, ud) handles
 * its events with the loop's clock up to date and returns 1 when the loop's epoll set
 * may have events (they are then read without waiting), else 0. For an io_uring that
 * watches the epoll descriptor (sf_loop_epoll_fd) among its requests: one system call
 * per pass. */
typedef int (*sf_wait_fn)(sf_loop *l, int timeout_ms, void *ud);
typedef int (*sf_run_fn)(sf_loop *l, void *ud);
void sf_loop_set_waiter(sf_loop *l, sf_wait_fn wait, sf_run_fn run, void *ud);
/* The loop's epoll descriptor, to be watched by a waiter. */
int sf_loop_epoll_fd(const sf_loop *l);

/* Run until sf_loop_stop(). Returns 0, or -errno if epoll_wait failed. */
int sf_loop_run(sf_loop *l);
/* Run one pass, waiting at most timeout_ms (-1 forever). Returns events handled. */
int sf_loop_run_once(sf_loop *l, int timeout_ms);
/* Ask the loop to return from sf_loop_run(). Safe from any thread. */
void sf_loop_stop(sf_loop *l);

/* Cached monotonic milliseconds of the current pass. */
uint64_t sf_loop_now_ms(sf_loop *l);
/* Count of wake-ups (epoll_wait returns): lets tests check a loop does not spin. */
uint64_t sf_loop_wakeups(const sf_loop *l);

#endif
