/* bench_host: what this host gives a run — its CPUs, its descriptors, and whether the
 * target is one of its own addresses (then the server measured needs CPUs too). */
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_int.h"

#define MAX_THREADS 256
#define FDS_FIXED 16                /* standard streams, a trace file, the odd library fd */
#define FDS_PER_THREAD 4            /* epoll, its eventfd and timer, a UDP socket */

int
sf__bench_cpus(void)
{
    cpu_set_t set;
    long n;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int
same_host(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

int
sf__bench_is_local(const sf_addr *a)
{
    const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
    struct ifaddrs *ifs, *i;
    int found = 0;

    if (sa->sa_family == AF_INET)
        found = (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    else if (sa->sa_family == AF_INET6)
        found = IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr) ||
                (IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr) &&
                 ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12] == 127);
    else
        return 0;
    if (found || getifaddrs(&ifs) < 0)
        return found;
    for (i = ifs; i && !found; i = i->ifa_next)
        found = i->ifa_addr && same_host(sa, i->ifa_addr);
    freeifaddrs(ifs);
    return found;
}

/* The threads a run of o uses. By default one per CPU, but half of them (at least one)
 * for a target on this host: the server measured needs CPUs too, and a generator that
 * takes them measures itself (on 2 CPUs: 0.67-0.90x a one-thread generator's figures,
 * p99 six times worse). */
int
sf__bench_threads(const sf_bench_opts *o)
{
    int threads = o->threads;

    if (threads <= 0) {
        threads = sf__bench_cpus();
        if (sf__bench_is_local(&o->target))
            threads = threads / 2 > 1 ? threads / 2 : 1;
    }

    if (threads > o->conns)
        threads = o->conns;
    return threads > MAX_THREADS ? MAX_THREADS : threads;
}

unsigned long
sf_bench_fds_needed(const sf_bench_opts *opts)
{
    sf_bench_opts o = *opts;
    const sf_bench_mode_info *mi;

    if (sf_bench_defaults(&o) < 0)
        return 0;
    mi = sf_bench_mode_get(o.mode);
    return (unsigned long)o.conns * (unsigned long)mi->fds_per_conn + FDS_FIXED +
           (unsigned long)sf__bench_threads(&o) * FDS_PER_THREAD;
}

int
sf__bench_check_fds(const sf_bench_opts *o, sf_err *err)
{
    unsigned long need = sf_bench_fds_needed(o);
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        need <= rl.rlim_cur)
        return 0;
    return sf_err_set(err, SF_EUSAGE, "conns %d: needs %lu descriptors, and the limit is "
                      "%lu (RLIMIT_NOFILE)", o->conns, need, (unsigned long)rl.rlim_cur);
}

