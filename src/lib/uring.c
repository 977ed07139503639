/* uring: the io_uring mechanics the server's ring path stands on: set-up (queues mapped,
 * a ring of receive buffers, one file slot), requests, completions and the wait, with
 * the raw system calls (the C library has no wrappers; liburing is not needed). */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uring.h"

#if SF__URING

#ifdef IORING_SETUP_DEFER_TASKRUN
#define RING_FLAGS (IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | \
                    IORING_SETUP_DEFER_TASKRUN)
#else
#define RING_FLAGS (IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN)
#endif

static int
enter(int fd, unsigned submit, unsigned wait, unsigned flags, void *arg, size_t argsz)
{
    return (int)syscall(__NR_io_uring_enter, fd, submit, wait, flags, arg, argsz);
}

static void *
map_ring(int fd, size_t len, off_t off)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, off);

    return p == MAP_FAILED ? NULL : p;
}

/* The submission and completion queues of a set-up ring mapped. 0 or -errno. */
static int
map_queues(sf__uring *u, const struct io_uring_params *p)
{
    int single = (p->features & IORING_FEAT_SINGLE_MMAP) != 0;

    u->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    u->cq_map_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    if (single) {
        if (u->cq_map_len > u->sq_map_len)
            u->sq_map_len = u->cq_map_len;
        u->cq_map_len = u->sq_map_len;
    }
    u->sq_map = map_ring(u->fd, u->sq_map_len, IORING_OFF_SQ_RING);
    u->cq_map = !u->sq_map ? NULL : single ? u->sq_map
                : map_ring(u->fd, u->cq_map_len, IORING_OFF_CQ_RING);
    u->sqes_len = p->sq_entries * sizeof(struct io_uring_sqe);
    u->sqes = u->cq_map ? map_ring(u->fd, u->sqes_len, IORING_OFF_SQES) : NULL;
    if (u->sqes == NULL)
        return -ENOMEM;
    u->sq_head = (unsigned *)((char *)u->sq_map + p->sq_off.head);
    u->sq_tail = (unsigned *)((char *)u->sq_map + p->sq_off.tail);
    u->sq_mask = (unsigned *)((char *)u->sq_map + p->sq_off.ring_mask);
    u->sq_array = (unsigned *)((char *)u->sq_map + p->sq_off.array);
    u->cq_head = (unsigned *)((char *)u->cq_map + p->cq_off.head);
    u->cq_tail = (unsigned *)((char *)u->cq_map + p->cq_off.tail);
    u->cq_mask = (unsigned *)((char *)u->cq_map + p->cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)((char *)u->cq_map + p->cq_off.cqes);
    u->sq_entries = p->sq_entries;
    u->tail = *u->sq_tail;
    return 0;
}

/* The receive buffers registered as group 0, all given to the kernel. 0 or -errno. */
static int
register_buffers(sf__uring *u)
{
    struct io_uring_buf_reg reg = { 0 };

    /* Untouched until the kernel fills one: memory only for what is used. */
    u->br = mmap(NULL, u->nbuf * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = mmap(NULL, u->nbuf * u->buf_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (u->br == MAP_FAILED || u->bufs == MAP_FAILED) {
        u->br = u->br == MAP_FAILED ? NULL : u->br;
        u->bufs = u->bufs == MAP_FAILED ? NULL : u->bufs;
        return -ENOMEM;
    }
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = u->nbuf;
    if (syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0)
        return -errno;
    for (unsigned i = 0; i < u->nbuf; i++)
        sf__uring_give(u, i);
    return 0;
}

int
sf__uring_init(sf__uring *u, unsigned entries, unsigned cq_entries, unsigned nbuf,
               size_t buf_size)
{
    struct io_uring_params p = { .flags = RING_FLAGS, .cq_entries = cq_entries };
    struct io_uring_rsrc_register files = { .nr = 1, .flags = IORING_RSRC_REGISTER_SPARSE };
    int rc;

    memset(u, 0, sizeof(*u));
    u->nbuf = nbuf;
    u->buf_size = buf_size;
    /* Completions' work done only when the loop asks for them: a wake-up per pass, not
     * per completion (6.1); before that, the kernel's cooperative mode. */
    u->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    if (u->fd < 0 && errno == EINVAL) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
        p.cq_entries = cq_entries;
        u->fd = (int)syscall(__NR_io_uring_setup, entries, &p);
    }
    if (u->fd < 0)
        return -errno;
    rc = !(p.features & IORING_FEAT_NODROP) ? -ENOSYS : map_queues(u, &p);
    if (rc == 0)
        rc = register_buffers(u);
    if (rc < 0) {
        sf__uring_fini(u);
        return rc;
    }
    u->slot = syscall(__NR_io_uring_register, u->fd, IORING_REGISTER_FILES2, &files,
                      sizeof(files)) >= 0;
    return 0;
}

void
sf__uring_fini(sf__uring *u)
{
    if (u->sqes)
        munmap(u->sqes, u->sqes_len);
    if (u->cq_map && u->cq_map != u->sq_map)
        munmap(u->cq_map, u->cq_map_len);
    if (u->sq_map)
        munmap(u->sq_map, u->sq_map_len);
    if (u->br)
        munmap(u->br, u->nbuf * sizeof(struct io_uring_buf));
    if (u->bufs)
        munmap(u->bufs, u->nbuf * u->buf_size);
    if (u->fd >= 0)
        close(u->fd);
    memset(u, 0, sizeof(*u));
    u->fd = -1;
}

int
sf__uring_submit(sf__uring *u, int reap)
{
    int n;

    if (u->queued == 0 && !reap)
        return 0;
    atomic_store_explicit((_Atomic unsigned *)u->sq_tail, u->tail, memory_order_release);
    n = enter(u->fd, u->queued, 0, reap ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
    if (n < 0)
        return -errno;
    u->queued -= (unsigned)n < u->queued ? (unsigned)n : u->queued;
    return 0;
}

int
sf__uring_wait(sf__uring *u, int timeout_ms)
{
    struct __kernel_timespec ts = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000L };
    struct io_uring_getevents_arg arg = { .sigmask_sz = _NSIG / 8,
                                          .ts = (uint64_t)(uintptr_t)&ts };
    unsigned tail = atomic_load_explicit((_Atomic unsigned *)u->cq_tail, memory_order_acquire);
    int n;

    atomic_store_explicit((_Atomic unsigned *)u->sq_tail, u->tail, memory_order_release);
    if (timeout_ms == 0 || *u->cq_head != tail)
        n = enter(u->fd, u->queued, 0, IORING_ENTER_GETEVENTS, NULL, 0);
    else if (timeout_ms < 0)
        n = enter(u->fd, u->queued, 1, IORING_ENTER_GETEVENTS, NULL, 0);
    else
        n = enter(u->fd, u->queued, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG,
                  &arg, sizeof(arg));
    if (n >= 0) {
        u->queued -= (unsigned)n < u->queued ? (unsigned)n : u->queued;
        return 0;
    }
    /* ETIME: the timeout; EBUSY, EAGAIN: completions to reap first */
    return errno == ETIME || errno == EBUSY || errno == EAGAIN ? 0 : -errno;
}

struct io_uring_sqe *
sf__uring_sqe(sf__uring *u)
{
    unsigned head = atomic_load_explicit((_Atomic unsigned *)u->sq_head, memory_order_acquire);
    struct io_uring_sqe *sqe;
    unsigned i;

    if (u->tail - head >= u->sq_entries) {
        sf__uring_submit(u, 0);
        head = atomic_load_explicit((_Atomic unsigned *)u->sq_head, memory_order_acquire);
        if (u->tail - head >= u->sq_entries)
            return NULL;
    }
    i = u->tail & *u->sq_mask;
    sqe = &u->sqes[i];
    memset(sqe, 0, sizeof(*sqe));
    u->sq_array[i] = i;
    u->tail++;
    u->queued++;
    return sqe;
}

struct io_uring_cqe *
sf__uring_cqe(sf__uring *u)
{
    unsigned head = *u->cq_head;

    if (head == atomic_load_explicit((_Atomic unsigned *)u->cq_tail, memory_order_acquire))
        return NULL;
    return &u->cqes[head & *u->cq_mask];
}

void
sf__uring_seen(sf__uring *u)
{
    atomic_store_explicit((_Atomic unsigned *)u->cq_head, *u->cq_head + 1,
                          memory_order_release);
}

char *
sf__uring_buf(const sf__uring *u, unsigned bid)
{
    return u->bufs + (size_t)bid * u->buf_size;
}

void
sf__uring_give(sf__uring *u, unsigned bid)
{
    struct io_uring_buf *b = &u->br->bufs[u->btail & (u->nbuf - 1)];

    b->addr = (uint64_t)(uintptr_t)sf__uring_buf(u, bid);
    b->len = (uint32_t)u->buf_size;
    b->bid = (uint16_t)bid;
    u->btail++;
    atomic_store_explicit((_Atomic uint16_t *)&u->br->tail, u->btail, memory_order_release);
}

#endif
