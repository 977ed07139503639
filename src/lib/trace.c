/* trace: build one event per socket call and hand it to the caller's sink. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "sockflow/trace.h"

uint64_t
sf_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *
sf_tcp_state_name(int state)
{
    static const char *const names[] = {
        "-", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
        "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING",
    };

    if (state < 0 || state >= (int)(sizeof(names) / sizeof(names[0])))
        return "?";
    return names[state];
}

int
sf_tcp_state(int fd, uint32_t *rtt_us, uint32_t *unacked)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    int saved = errno;

    if (rtt_us)
        *rtt_us = 0;
    if (unacked)
        *unacked = 0;
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        errno = saved;
        return SF_TCP_NONE;
    }
    if (rtt_us && ti.tcpi_state == SF_TCP_ESTABLISHED)
        *rtt_us = ti.tcpi_rtt;
    /* On a listening socket tcpi_unacked is the current accept queue length. */
    if (unacked && ti.tcpi_state == SF_TCP_LISTEN)
        *unacked = ti.tcpi_unacked;
    return ti.tcpi_state;
}

void
sf_trace_call(const sf_trace *t, const char *call, int fd, long result, int err,
              const void *data, size_t datalen, const char *args_fmt, ...)
{
    sf_trace_event ev;
    char args[256];
    va_list ap;
    int saved = errno;

    if (t == NULL || t->tracer == NULL || t->tracer->fn == NULL)
        return;
    va_start(ap, args_fmt);
    vsnprintf(args, sizeof(args), args_fmt, ap);
    va_end(ap);
    ev.side = t->side ? t->side : "-";
    ev.id = t->id;
    ev.call = call;
    ev.fd = fd;
    ev.args = args;
    ev.result = result;
    ev.err = err;
    ev.tcp_state = sf_tcp_state(fd, &ev.rtt_us, &ev.unacked);
    ev.t_ns = sf_now_ns();
    ev.data = t->tracer->with_data ? data : NULL;
    ev.datalen = datalen;
    t->tracer->fn(t->tracer->ud, &ev);
    errno = saved;
}
