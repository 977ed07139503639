/* uring: a small io_uring of the library's own (no liburing): set-up with a ring of
 * receive buffers the kernel picks from and one slot of files, requests, completions
 * and the wait. Not installed; SF__URING is 0 where the build has no io_uring. */
#ifndef SOCKFLOW_URING_H
#define SOCKFLOW_URING_H

#include <stddef.h>
#include <sys/syscall.h>

#if defined(__linux__) && defined(__NR_io_uring_setup) && __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#endif

#if defined(IORING_ACCEPT_MULTISHOT) && defined(IORING_SETUP_COOP_TASKRUN)
#define SF__URING 1

typedef struct sf__uring {
    int fd;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
    unsigned sq_entries, tail, queued;
    struct io_uring_buf_ring *br;   /* the receive buffers the kernel picks from (group 0) */
    char *bufs;
    unsigned nbuf;                  /* a power of two */
    size_t buf_size;
    unsigned short btail;
    int slot;                       /* one file slot registered (index 0) */
} sf__uring;

/* A ring of entries requests and cq_entries completions, with nbuf receive buffers of
 * buf_size bytes (memory only once the kernel fills one), in the calling thread (its
 * only submitter). 0, or -errno where the kernel says no: u is then left closed. */
int sf__uring_init(sf__uring *u, unsigned entries, unsigned cq_entries, unsigned nbuf,
                   size_t buf_size);
void sf__uring_fini(sf__uring *u);
/* A zeroed request, queued (NULL when every slot is taken even after a submit). */
struct io_uring_sqe *sf__uring_sqe(sf__uring *u);
/* Hand the queued requests to the kernel, and run its completions' work when reap.
 * 0 or -errno (EINTR, EBUSY: tried again later). */
int sf__uring_submit(sf__uring *u, int reap);
/* Submit, then sleep until a completion or timeout_ms (-1: no limit; 0, or completions
 * not yet seen: no sleep). 0, or -errno (EINTR). */
int sf__uring_wait(sf__uring *u, int timeout_ms);
/* The next completion not yet seen (NULL: none); sf__uring_seen lets it go. */
struct io_uring_cqe *sf__uring_cqe(sf__uring *u);
void sf__uring_seen(sf__uring *u);
/* Receive buffer bid: where it is, and back to the kernel. */
char *sf__uring_buf(const sf__uring *u, unsigned bid);
void sf__uring_give(sf__uring *u, unsigned bid);

#else
#define SF__URING 0
#endif

#endif
