/* wire: capture of the traced connections' packets on loopback: a filtered AF_PACKET
 * socket with a receive ring, kernel time stamps turned into the trace's clock, and a
 * capture thread. */
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockflow/wire.h"

/* The ring: frames of 512 bytes (the filter keeps at most 256 bytes of a packet,
 * wire_bpf.c), 2048 of them in 16 blocks: 1 MiB. */
#define FRAME_SIZE 512
#define BLOCK_SIZE (64 * 1024)
#define BLOCK_NR 16
#define FRAME_NR (BLOCK_SIZE / FRAME_SIZE * BLOCK_NR)

struct sf_wire {
    int fd;
    int stop_fd;                /* eventfd: the thread is asked to finish */
    pthread_mutex_t mu;         /* the ring, the flows and the kept records */
    uint8_t *ring;              /* FRAME_NR frames shared with the kernel */
    size_t next;                /* the frame to look at next */
    char ifname[IF_NAMESIZE];
    int loopback;               /* IFF_LOOPBACK: every packet passes twice */
    sf_wire_flows flows;
    int64_t clock_off;
    uint64_t kernel_drops;
    /* the capture thread */
    pthread_t th;
    int running;
    int settle_ms;
    sf_segment *segs;
    size_t nsegs, max;
    uint64_t overflow;
};

static uint64_t
clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t
sf_wire_clock_offset(void)
{
    int64_t best = 0;
    uint64_t width = UINT64_MAX;

    /* Real time read between two monotonic reads; the narrowest pair wins. */
    for (int i = 0; i < 5; i++) {
        uint64_t m1 = clock_ns(CLOCK_MONOTONIC), r = clock_ns(CLOCK_REALTIME);
        uint64_t m2 = clock_ns(CLOCK_MONOTONIC);

        if (m2 - m1 < width) {
            width = m2 - m1;
            best = (int64_t)(r - (m1 + (m2 - m1) / 2));
        }
    }
    return best;
}

static int
attach(sf_wire *w, const sf_wire_filter *f, sf_err *err)
{
    struct sock_filter code[SF_WIRE_BPF_MAX];
    struct sock_fprog prog;
    sf_wire_filter mine = *f;
    int n;

    mine.outgoing = !w->loopback;
    if ((n = sf_wire_bpf_build(&mine, code, SF_WIRE_BPF_MAX)) < 0)
        return sf_err_set(err, n, "capture on %s: filter: no protocol or more than %d ports",
                          w->ifname, SF_WIRE_PORTS_MAX);
    prog.len = (unsigned short)n;
    prog.filter = code;
    if (setsockopt(w->fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
        return sf_err_set(err, -errno, "capture on %s: setsockopt(SO_ATTACH_FILTER)",
                          w->ifname);
    return 0;
}

/* Is ifname a loopback interface (each packet seen leaving and arriving)? */
static int
is_loopback(int fd, const char *ifname, sf_err *err)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return sf_err_set(err, -errno, "capture on %s: SIOCGIFFLAGS", ifname);
    return (ifr.ifr_flags & IFF_LOOPBACK) != 0;
}

/* A receive ring rather than recvmsg: the kernel stamps each packet as it copies it into
 * the ring, while it is delivered, before TCP sees it. With SO_TIMESTAMPNS a packet that
 * arrives before the kernel has switched its time stamps on (it does so from a work
 * queue, a moment after the first socket asks) is stamped only when read: late. */
static int
map_ring(sf_wire *w, sf_err *err)
{
    int v = TPACKET_V2;
    struct tpacket_req req = { BLOCK_SIZE, BLOCK_NR, FRAME_SIZE, FRAME_NR };
    void *m;

    if (setsockopt(w->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof(v)) < 0)
        return sf_err_set(err, -errno, "capture on %s: setsockopt(PACKET_VERSION)", w->ifname);
    if (setsockopt(w->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        return sf_err_set(err, -errno, "capture on %s: setsockopt(PACKET_RX_RING)", w->ifname);
    m = mmap(NULL, (size_t)BLOCK_SIZE * BLOCK_NR, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
    if (m == MAP_FAILED)
        return sf_err_set(err, -errno, "capture on %s: mmap of the ring", w->ifname);
    w->ring = m;
    return 0;
}

/* Bound only after the filter is on: a packet socket bound to a protocol receives from
 * that moment, and lo carries every local conversation. */
static int
bind_if(int fd, const char *ifname, sf_err *err)
{
    struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };

    ll.sll_ifindex = (int)if_nametoindex(ifname);
    if (ll.sll_ifindex == 0)
        return sf_err_set(err, -errno, "capture on %s: if_nametoindex", ifname);
    if (bind(fd, (struct sockaddr *)&ll, sizeof(ll)) < 0)
        return sf_err_set(err, -errno, "capture on %s: bind", ifname);
    return 0;
}

int
sf_wire_open(sf_wire **out, const char *ifname, const sf_wire_filter *f, sf_err *err)
{
    sf_wire *w;
    int rc;

    *out = NULL;
    if (ifname == NULL)
        ifname = "lo";
    if (strlen(ifname) >= IF_NAMESIZE)
        return sf_err_set(err, SF_EUSAGE, "capture on %s: interface name too long", ifname);
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return sf_err_set(err, -ENOMEM, "capture on %s", ifname);
    snprintf(w->ifname, sizeof(w->ifname), "%s", ifname);
    w->stop_fd = -1;
    pthread_mutex_init(&w->mu, NULL);
    /* Protocol 0: nothing is received until bind names one. */
    w->fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->fd < 0) {
        rc = -errno;
        if (rc == -EPERM || rc == -EACCES)
            sf_err_set(err, rc, "capture on %s: socket(AF_PACKET) (needs CAP_NET_RAW: run "
                       "as root or in a private namespace, unshare -Urn)", ifname);
        else
            sf_err_set(err, rc, "capture on %s: socket(AF_PACKET)", ifname);
        free(w);
        return rc;
    }
    if ((rc = is_loopback(w->fd, ifname, err)) < 0)
        goto fail;
    w->loopback = rc;
    if ((rc = attach(w, f, err)) < 0 || (rc = map_ring(w, err)) < 0 ||
        (rc = bind_if(w->fd, ifname, err)) < 0)
        goto fail;
    w->clock_off = sf_wire_clock_offset();
    *out = w;
    return 0;
fail:
    sf_wire_close(w);
    return rc;
}

int
sf_wire_set_filter(sf_wire *w, const sf_wire_filter *f, sf_err *err)
{
    return attach(w, f, err);
}

int
sf_wire_fd(const sf_wire *w)
{
    return w->fd;
}

/* The next frame of the ring into *s: 1 kept, 0 skipped, SF_EAGAIN when the kernel has
 * filled no more. */
static int
read_one(sf_wire *w, sf_segment *s)
{
    struct tpacket2_hdr *h = (struct tpacket2_hdr *)(w->ring + w->next * FRAME_SIZE);
    const struct sockaddr_ll *ll;
    uint64_t real;
    int kept;

    if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
        return SF_EAGAIN;
    ll = (const struct sockaddr_ll *)((uint8_t *)h + TPACKET_ALIGN(sizeof(*h)));
    real = (uint64_t)h->tp_sec * 1000000000u + h->tp_nsec;
    kept = (ll->sll_pkttype != PACKET_OUTGOING || !w->loopback) &&
           sf_wire_parse((uint8_t *)h + h->tp_net, h->tp_snaplen, real, s) == 0;
    __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    w->next = (w->next + 1) % FRAME_NR;
    if (!kept)
        return 0;
    s->t_ns = (uint64_t)((int64_t)real - w->clock_off);
    sf_wire_relate(&w->flows, s);
    return 1;
}

/* Up to max records off the ring; fewer only when the ring is empty. Under w->mu. */
static size_t
read_ring(sf_wire *w, sf_segment *out, size_t max)
{
    size_t n = 0;

    /* The offset moves when the real clock is stepped or slewed: read it per batch. */
    w->clock_off = sf_wire_clock_offset();
    while (n < max) {
        int rc = read_one(w, &out[n]);

        if (rc == SF_EAGAIN)
            break;
        n += (size_t)rc;
    }
    return n;
}

int
sf_wire_read(sf_wire *w, sf_segment *out, size_t max)
{
    size_t n;

    pthread_mutex_lock(&w->mu);
    n = read_ring(w, out, max);
    pthread_mutex_unlock(&w->mu);
    return (int)n;
}

/* Under w->mu. */
static void
keep(sf_wire *w, const sf_segment *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (w->nsegs < w->max)
            w->segs[w->nsegs++] = s[i];
        else
            w->overflow++;
    }
}

/* Wait for packets until asked to stop, then until the queue has been quiet for
 * settle_ms, bounded. */
static void *
capture_main(void *arg)
{
    sf_wire *w = arg;
    sf_segment batch[32];
    uint64_t stop_at = 0, quiet_since = 0, settle_ns = 0;
    int wait_ms = 1000;

    for (;;) {
        struct pollfd p[2] = { { w->fd, POLLIN, 0 }, { w->stop_fd, POLLIN, 0 } };
        uint64_t now;
        size_t n;

        if (poll(p, stop_at ? 1 : 2, wait_ms) < 0 && errno != EINTR)
            break;
        pthread_mutex_lock(&w->mu);
        n = read_ring(w, batch, sizeof(batch) / sizeof(batch[0]));
        keep(w, batch, n);
        pthread_mutex_unlock(&w->mu);
        now = clock_ns(CLOCK_MONOTONIC);
        if (!stop_at && (p[1].revents & POLLIN)) {
            int settle = __atomic_load_n(&w->settle_ms, __ATOMIC_ACQUIRE);

            settle_ns = (uint64_t)settle * 1000000u;
            stop_at = now + 20 * settle_ns;
            quiet_since = now;
            wait_ms = settle / 2 + 1;
        }
        if (n > 0)
            quiet_since = now;
        if (stop_at && (now >= stop_at || now - quiet_since >= settle_ns))
            break;
    }
    return NULL;
}

/* Room for max kept records, the old ones dropped. */
static int
keep_room(sf_wire *w, size_t max)
{
    free(w->segs);
    w->nsegs = 0;
    w->overflow = 0;
    w->max = max;
    w->segs = malloc(max * sizeof(*w->segs));
    return w->segs ? 0 : -ENOMEM;
}

int
sf_wire_start(sf_wire *w, size_t max, sf_err *err)
{
    int rc;

    if (w->running || max == 0)
        return sf_err_set(err, SF_EUSAGE, "capture on %s: %s", w->ifname,
                          w->running ? "already running" : "no room for records");
    if (keep_room(w, max) < 0)
        return sf_err_set(err, -ENOMEM, "capture on %s", w->ifname);
    if (w->stop_fd < 0 && (w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return sf_err_set(err, -errno, "capture on %s: eventfd", w->ifname);
    if ((rc = pthread_create(&w->th, NULL, capture_main, w)) != 0)
        return sf_err_set(err, -rc, "capture on %s: pthread_create", w->ifname);
    w->running = 1;
    return 0;
}

int
sf_wire_stop(sf_wire *w, int settle_ms)
{
    uint64_t one = 1;
    uint64_t drain;

    if (!w->running)
        return (int)w->nsegs;
    __atomic_store_n(&w->settle_ms, settle_ms > 0 ? settle_ms : 1, __ATOMIC_RELEASE);
    if (write(w->stop_fd, &one, sizeof(one)) < 0)
        (void)0;   /* an eventfd write fails only when the counter would overflow */
    pthread_join(w->th, NULL);
    w->running = 0;
    if (read(w->stop_fd, &drain, sizeof(drain)) < 0)
        (void)0;   /* nothing pending: nothing to reset */
    return (int)w->nsegs;
}

size_t
sf_wire_take(sf_wire *w, uint64_t until_ns, sf_segment *out, size_t max)
{
    sf_segment batch[32];
    size_t n, k = 0;

    pthread_mutex_lock(&w->mu);
    if (w->segs == NULL && keep_room(w, SF_WIRE_KEEP_DEFAULT) < 0) {
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    do {
        n = read_ring(w, batch, sizeof(batch) / sizeof(batch[0]));
        keep(w, batch, n);
    } while (n == sizeof(batch) / sizeof(batch[0]));
    while (k < w->nsegs && k < max && w->segs[k].t_ns <= until_ns) {
        out[k] = w->segs[k];
        k++;
    }
    memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
    w->nsegs -= k;
    pthread_mutex_unlock(&w->mu);
    return k;
}

const sf_segment *
sf_wire_segments(const sf_wire *w, size_t *n)
{
    *n = w->running ? 0 : w->nsegs;
    return w->segs;
}

uint64_t
sf_wire_dropped(sf_wire *w)
{
    struct tpacket_stats st;
    socklen_t len = sizeof(st);

    /* The kernel's counters reset on every read: keep the sum. */
    if (getsockopt(w->fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
        w->kernel_drops += st.tp_drops;
    return w->kernel_drops + w->overflow;
}

void
sf_wire_close(sf_wire *w)
{
    if (w == NULL)
        return;
    if (w->running)
        sf_wire_stop(w, 1);
    if (w->ring)
        munmap(w->ring, (size_t)BLOCK_SIZE * BLOCK_NR);
    if (w->fd >= 0)
        close(w->fd);
    if (w->stop_fd >= 0)
        close(w->stop_fd);
    free(w->segs);
    pthread_mutex_destroy(&w->mu);
    free(w);
}
