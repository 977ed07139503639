/* scan: `sockflow connect -z HOST PORTS` — the open ports (every port with -v) as lines,
 * or one JSON object with every port, its state and the time it took. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cmd.h"
#include "connect.h"

typedef struct tally {
    int n[SF_PORT_OPEN_FILTERED + 1];
} tally;

/* The host alone, numeric ("::1", not "[::1]:0"). */
static const char *
host_text(const sf_addr *a, char *buf, size_t len)
{
    if (getnameinfo((const struct sockaddr *)&a->ss, a->len, buf, (socklen_t)len, NULL, 0,
                    NI_NUMERICHOST) != 0)
        snprintf(buf, len, "?");
    return buf;
}

static void
print_lines(const connect_args *a, const sf_scan_opts *so, const sf_scan_result *res)
{
    const char *proto = so->udp ? "udp" : "tcp";
    char where[SF_ADDR_STRLEN];
    sf_addr at = so->host;

    for (int i = 0; i < so->nports; i++) {
        if (res[i].state != SF_PORT_OPEN && !a->verbose)
            continue;
        sf_addr_set_port(&at, res[i].port);
        printf("%s %s %s %.3f ms\n", sf_addr_format(&at, where, sizeof(where)), proto,
               sf_port_state_name(res[i].state), res[i].us / 1000.0);
    }
}

static void
print_json(const sf_scan_opts *so, const sf_scan_result *res, const tally *t, double secs)
{
    char host[SF_ADDR_STRLEN];

    printf("{\"host\":\"%s\",\"proto\":\"%s\",\"seconds\":%.6f,\"open\":%d,\"closed\":%d,"
           "\"filtered\":%d,\"open_filtered\":%d,\"ports\":[",
           host_text(&so->host, host, sizeof(host)), so->udp ? "udp" : "tcp", secs,
           t->n[SF_PORT_OPEN], t->n[SF_PORT_CLOSED], t->n[SF_PORT_FILTERED],
           t->n[SF_PORT_OPEN_FILTERED]);
    for (int i = 0; i < so->nports; i++)
        printf("%s{\"port\":%d,\"state\":\"%s\",\"us\":%u,\"error\":\"%s\"}", i ? "," : "",
               res[i].port, sf_port_state_name(res[i].state), (unsigned)res[i].us,
               res[i].err ? sf_errname(-res[i].err) : "");
    printf("]}\n");
}

/* The scan itself: resolve, probe, count. Returns the count of open ports, or minus
 * the exit status (the message printed). */
static int
probe(const connect_args *a, sf_scan_opts *so, sf_scan_result **res)
{
    sf_addr_list dst;
    sf_addr src;
    sf_err err;
    uint16_t *ports;
    int n, rc;

    n = sf_scan_parse_ports(a->port, &ports, &err);
    if (n < 0)
        return -cmd_usage_error("connect", "%s", err.msg);
    so->ports = ports;
    so->nports = n;
    if (sf_addr_resolve(a->host, "0", a->flags, &dst, &err) < 0)
        return -cmd_fail("%s", err.msg);
    if ((rc = connect_source(a, &dst.a[0], &src)) < 0)
        return rc;
    so->src = rc ? &src : NULL;
    so->host = dst.a[0];
    so->udp = a->udp;
    /* one source port is one probe at a time (a refused socket keeps its port) */
    so->parallel = rc && sf_addr_port(&src) != 0 ? 1 : (int)a->parallel;
    so->timeout_ms = a->wait_ms > 0 ? (int)a->wait_ms : 0;
    *res = calloc((size_t)n, sizeof(**res));
    if (*res == NULL)
        return -cmd_fail("scan: out of memory");
    rc = sf_scan(so, *res, &err);
    so->src = NULL;
    return rc < 0 ? -cmd_fail("%s", err.msg) : rc;
}

int
connect_scan(const connect_args *a)
{
    sf_scan_opts so = { 0 };
    sf_scan_result *res = NULL;
    struct timespec t0, t1;
    tally t = { { 0 } };
    char where[SF_ADDR_STRLEN];
    double secs;
    int open;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    open = probe(a, &so, &res);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (open >= 0) {
        for (int i = 0; i < so.nports; i++)
            t.n[res[i].state]++;
        if (a->json)
            print_json(&so, res, &t, secs);
        else
            print_lines(a, &so, res);
        if (a->verbose)
            fprintf(stderr, "scanned %d %s ports of %s in %.3f s: %d open, %d closed, "
                    "%d filtered, %d open|filtered\n", so.nports, so.udp ? "udp" : "tcp",
                    host_text(&so.host, where, sizeof(where)), secs,
                    t.n[SF_PORT_OPEN], t.n[SF_PORT_CLOSED], t.n[SF_PORT_FILTERED],
                    t.n[SF_PORT_OPEN_FILTERED]);
    }
    free((void *)so.ports);
    free(res);
    if (open < 0)
        return -open;
    /* as nc -z: success when something answered */
    return open > 0 ? EXIT_OK : EXIT_FAIL;
}
