/* bench: `sockflow bench echo|connect|stream|udp HOST PORT [OPTIONS]` — drives a server
 * with sf_bench and prints a live line, a table or JSON. */
#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cmd.h"
#include "traceopt.h"

#define MAX_SRC 256

static const char bench_usage[] =
    "usage: sockflow bench MODE HOST PORT [OPTIONS]\n"
    "\n"
    "Modes:\n"
    "  echo     requests to an echo server on -c connections, -P in flight on each;\n"
    "           every byte that comes back is checked\n"
    "  connect  the whole flow per request: socket, connect, write, read the echo,\n"
    "           close; -c cycles at once: connections per second and their latency\n"
    "  stream   bulk bytes to a discard server (--recv: from a chargen server)\n"
    "  udp      datagrams to an echo server, -c in flight; lost ones are counted\n"
    "\n"
    "  -c, --conns N        connections (connect: cycles at once; udp: datagrams in\n"
    "                       flight). Default: echo 50, connect 50, stream 1, udp 32\n"
    "  -s, --size SIZE      bytes per request or datagram (stream: per write);\n"
    "                       default 64, stream 128k\n"
    "  -P, --pipeline N     echo: requests in flight on each connection (default 1)\n"
    "  -d, --duration SECS  measure this long (default 10; with -n, at most 60)\n"
    "  -n, --requests N     stop after N requests\n"
    "  -T, --threads N      threads, one event loop each (default: one per CPU)\n"
    "      --warmup SECS    run this long first, outside the figures (default 0)\n"
    "  -t, --timeout SECS   a request unanswered this long is a timeout (udp: lost;\n"
    "                       stream: no progress). Default 2, udp 0.2\n"
    "      --src LIST       source addresses used round-robin: A, A-B (IPv4 range) or\n"
    "                       A,B,...; 'none' for the kernel's choice. Default for connect\n"
    "                       to 127.x: 127.0.0.2-127.0.0.9 (one source runs out of ports)\n"
    "      --recv           stream: read what the server sends instead of writing\n"
    "  -i, --interval SECS  a live line every SECS on stderr (default: 1 on a terminal;\n"
    "                       0: none)\n"
    "      --json           one JSON object at the end instead of the table\n"
    "      --json-stream    one JSON object per interval, then the result\n"
    "  -4 / -6              IPv4 / IPv6 only\n"
    CMD_TRACE_USAGE
    "  -h, --help\n"
    "\n"
    "Exit status: 0 when every request was answered, and right; 1 when any was not\n"
    "(errors, timeouts, mismatches, lost datagrams, nothing answered, -n not reached);\n"
    "2 for a usage error.\n";

enum { OPT_WARMUP = 256, OPT_SRC, OPT_RECV, OPT_JSON, OPT_JSON_STREAM };

static const struct option bench_opts[] = {
    { "conns", required_argument, NULL, 'c' },
    { "size", required_argument, NULL, 's' },
    { "pipeline", required_argument, NULL, 'P' },
    { "duration", required_argument, NULL, 'd' },
    { "requests", required_argument, NULL, 'n' },
    { "threads", required_argument, NULL, 'T' },
    { "timeout", required_argument, NULL, 't' },
    { "interval", required_argument, NULL, 'i' },
    { "warmup", required_argument, NULL, OPT_WARMUP },
    { "src", required_argument, NULL, OPT_SRC },
    { "recv", no_argument, NULL, OPT_RECV },
    { "json", no_argument, NULL, OPT_JSON },
    { "json-stream", no_argument, NULL, OPT_JSON_STREAM },
    { "help", no_argument, NULL, 'h' },
    CMD_TRACE_LONGOPTS,
    { NULL, 0, NULL, 0 },
};

static const char *const mode_names[] = { "echo", "connect", "stream", "udp" };

typedef struct bench_conf {
    sf_bench_opts o;
    cmd_trace trace;
    const char *src_text;
    sf_addr src[MAX_SRC];
    int src_default;
    int family_flags;
    int json, json_stream;
    long interval_ms;       /* -1: not given */
    int duration_given;
    char target[SF_ADDR_STRLEN];
} bench_conf;

static sf_bench *volatile running;

static void
on_stop_signal(int signo)
{
    (void)signo;
    if (running)
        sf_bench_stop(running);
}

/* ---- numbers for people ---- */

/* 1234567 → "1,234,567" */
static char *
group(char *buf, size_t len, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v), o = 0;

    for (int i = 0; i < n && (size_t)o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Nanoseconds as microseconds: one decimal below 100 µs. */
static char *
usec(char *buf, size_t len, uint64_t ns)
{
    if (ns < 100000)
        snprintf(buf, len, "%.1f", (double)ns / 1000.0);
    else
        group(buf, len, (ns + 500) / 1000);
    return buf;
}

static const char *
plural(long n)
{
    return n == 1 ? "" : "s";
}

static double
per_sec(uint64_t n, double secs)
{
    return secs > 0 ? (double)n / secs : 0.0;
}

static const char *
unit_of(int mode)
{
    switch (mode) {
    case SF_BENCH_CONNECT: return "conn/s";
    case SF_BENCH_UDP: return "dgram/s";
    default: return "req/s";
    }
}

/* Requests that did not come back right: errors, timeouts, mismatches, lost. */
static uint64_t
failures(const sf_bench_stats *st)
{
    return sf_bench_error_total(&st->err) + st->mismatches + st->lost;
}

static void
format_errors(char *buf, size_t len, const sf_bench_errors *e)
{
    size_t o = 0;

#define ADD(field, name) \
    if (e->field && o < len) \
        o += (size_t)snprintf(buf + o, len - o, "%s%s %llu", o ? ", " : "", name, \
                              (unsigned long long)e->field)
    buf[0] = '\0';
    ADD(refused, "refused");
    ADD(reset, "reset");
    ADD(timeout, "timeout");
    ADD(closed, "closed by server");
    ADD(no_port, "no local port");
    ADD(other, "other");
#undef ADD
    if (e->other && e->last_other && o < len)
        snprintf(buf + o, len - o, " (last %s)", sf_errname(e->last_other));
    if (o == 0)
        snprintf(buf, len, "none");
}

/* ---- JSON ---- */

static void
json_latency(FILE *f, const sf_hist *h)
{
    static const struct { const char *name; double pct; } p[] = {
        { "p50", 50 }, { "p90", 90 }, { "p99", 99 }, { "p999", 99.9 },
    };

    if (h->count == 0) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"min\": %.1f", (double)h->min / 1000.0);
    for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++)
        fprintf(f, ", \"%s\": %.1f", p[i].name, (double)sf_hist_percentile(h, p[i].pct) / 1000.0);
    fprintf(f, ", \"max\": %.1f, \"mean\": %.1f}", (double)h->max / 1000.0,
            sf_hist_mean(h) / 1000.0);
}

static void
json_errors(FILE *f, const sf_bench_errors *e)
{
    fprintf(f, "{\"refused\": %llu, \"reset\": %llu, \"timeout\": %llu, \"closed\": %llu, "
            "\"no_port\": %llu, \"other\": %llu, \"last_other\": ",
            (unsigned long long)e->refused, (unsigned long long)e->reset,
            (unsigned long long)e->timeout, (unsigned long long)e->closed,
            (unsigned long long)e->no_port, (unsigned long long)e->other);
    if (e->last_other)
        fprintf(f, "\"%s\"}", sf_errname(e->last_other));
    else
        fputs("null}", f);
}

/* The counters every JSON object carries. */
static void
json_stats(FILE *f, int mode, const sf_bench_stats *st, double secs)
{
    fprintf(f, "\"requests\": %llu, \"rps\": %.1f, \"bytes_out\": %llu, \"bytes_in\": %llu, "
            "\"bits_per_sec\": %.0f, \"connects\": %llu, \"mismatches\": %llu, ",
            (unsigned long long)st->requests, per_sec(st->requests, secs),
            (unsigned long long)st->bytes_out, (unsigned long long)st->bytes_in,
            8.0 * per_sec(st->bytes_out + st->bytes_in, secs),
            (unsigned long long)st->connects, (unsigned long long)st->mismatches);
    if (mode == SF_BENCH_UDP)
        fprintf(f, "\"sent\": %llu, \"lost\": %llu, \"late\": %llu, \"loss_pct\": %.3f, ",
                (unsigned long long)st->sent, (unsigned long long)st->lost,
                (unsigned long long)st->late,
                st->sent ? 100.0 * (double)st->lost / (double)st->sent : 0.0);
    fputs("\"errors\": ", f);
    json_errors(f, &st->err);
    fputs(", \"latency_us\": ", f);
    json_latency(f, &st->lat);
}

static void
json_sources(FILE *f, const bench_conf *c)
{
    char a[SF_ADDR_STRLEN];

    fputc('[', f);
    for (int i = 0; i < c->o.nsrc; i++) {
        sf_addr_format(&c->src[i], a, sizeof(a));
        /* the address alone: the port is the kernel's choice */
        if (strrchr(a, ':'))
            *strrchr(a, ':') = '\0';
        fprintf(f, "%s\"%s\"", i ? ", " : "", a);
    }
    fputc(']', f);
}

/* Peak resident memory of this program, KiB: VmHWM. getrusage's ru_maxrss would also
 * hold the peak of the process image before exec() (a big parent that forked us). */
static long
peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (f != NULL) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb < 0) {
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

static void
json_result(const bench_conf *c, const sf_bench_result *r, int status)
{
    const sf_bench_opts *o = &c->o;

    printf("{\"type\": \"result\", \"mode\": \"%s\", \"target\": \"%s\", \"connections\": %d, "
           "\"size\": %zu, \"pipeline\": %d, \"threads\": %d, \"recv\": %s, "
           "\"duration_s\": %.3f, \"warmup_s\": %.3f, \"timeout_s\": %.3f, \"sources\": ",
           mode_names[o->mode], c->target, o->conns, o->size, o->pipeline, r->threads,
           o->recv ? "true" : "false", r->elapsed_s, r->warmup_s, o->timeout_ms / 1000.0);
    json_sources(stdout, c);
    fputs(", ", stdout);
    json_stats(stdout, o->mode, &r->st, r->elapsed_s);
    printf(", \"requests_wanted\": %llu, \"reached\": %s, \"interrupted\": %s, "
           "\"rss_max_kb\": %ld, \"ok\": %s}\n",
           (unsigned long long)o->requests, r->reached ? "true" : "false",
           r->interrupted ? "true" : "false", peak_rss_kb(), status == EXIT_OK ? "true" : "false");
    fflush(stdout);
}

/* ---- live lines ---- */

static void
on_interval(void *ud, const sf_bench_interval *iv)
{
    const bench_conf *c = ud;
    const sf_bench_stats *st = iv->st;

    if (c->json_stream) {
        printf("{\"type\": \"interval\", \"index\": %d, \"t\": %.3f, \"len\": %.3f, "
               "\"warmup\": %s, ", iv->index, iv->t_s, iv->len_s, iv->warmup ? "true" : "false");
        json_stats(stdout, c->o.mode, st, iv->len_s);
        fputs("}\n", stdout);
        fflush(stdout);
    }
    if (c->interval_ms > 0 && !c->json_stream) {
        char n[32], p50[32], p99[32];

        if (c->o.mode == SF_BENCH_STREAM) {
            fprintf(stderr, "%s%6.1fs  %8.2f Gbit/s\n", iv->warmup ? "warmup " : "", iv->t_s,
                    8.0 * per_sec(st->bytes_out + st->bytes_in, iv->len_s) / 1e9);
            return;
        }
        group(n, sizeof(n), (uint64_t)(per_sec(st->requests, iv->len_s) + 0.5));
        fprintf(stderr, "%s%6.1fs  %12s %-7s  p50 %8s µs  p99 %8s µs  failed %llu\n",
                iv->warmup ? "warmup " : "", iv->t_s, n, unit_of(c->o.mode),
                usec(p50, sizeof(p50), sf_hist_percentile(&st->lat, 50)),
                usec(p99, sizeof(p99), sf_hist_percentile(&st->lat, 99)),
                (unsigned long long)failures(st));
    }
}

/* ---- the table ---- */

static void
print_sources(const bench_conf *c)
{
    char a[SF_ADDR_STRLEN], z[SF_ADDR_STRLEN];

    if (c->o.nsrc == 0) {
        if (c->o.mode == SF_BENCH_CONNECT)
            printf("  sources      the kernel's choice (one address: its ephemeral ports and "
                   "TIME_WAIT cap the rate)\n");
        return;
    }
    sf_addr_format(&c->src[0], a, sizeof(a));
    sf_addr_format(&c->src[c->o.nsrc - 1], z, sizeof(z));
    *strrchr(a, ':') = '\0';
    *strrchr(z, ':') = '\0';
    if (c->o.nsrc == 1)
        printf("  sources      %s\n", a);
    else
        printf("  sources      %s .. %s (%d addresses, round-robin%s)\n", a, z, c->o.nsrc,
               c->src_default ? ", spread so that one address's ports do not cap the rate" : "");
}

static void
print_table(const bench_conf *c, const sf_bench_result *r)
{
    const sf_bench_opts *o = &c->o;
    const sf_bench_stats *st = &r->st;
    double secs = r->elapsed_s;
    char n[32], rate[32], errs[256];

    switch (o->mode) {
    case SF_BENCH_ECHO:
        printf("sockflow bench echo %s: %d connection%s, %zu-byte requests, %d in flight on "
               "each, %d thread%s\n", c->target, o->conns, plural(o->conns), o->size, o->pipeline,
               r->threads, plural(r->threads));
        break;
    case SF_BENCH_CONNECT:
        printf("sockflow bench connect %s: %d at once, each socket, connect, write %zu bytes, "
               "read the echo, close (the client closes first: TIME_WAIT is on this side); "
               "%d thread%s\n", c->target, o->conns, o->size, r->threads, plural(r->threads));
        break;
    case SF_BENCH_STREAM:
        printf("sockflow bench stream %s: %d connection%s, %s %zu-byte %s, %d thread%s\n",
               c->target, o->conns, plural(o->conns), o->recv ? "reading" : "writing", o->size,
               o->recv ? "reads" : "writes", r->threads, plural(r->threads));
        break;
    default:
        printf("sockflow bench udp %s: %d datagram%s of %zu bytes in flight, lost after "
               "%.3g s, %d thread%s\n", c->target, o->conns, plural(o->conns), o->size,
               o->timeout_ms / 1000.0, r->threads, plural(r->threads));
        break;
    }
    print_sources(c);
    printf("  measured     %.2f s", secs);
    if (r->warmup_s > 0)
        printf(" (after %.1f s of warm-up)", r->warmup_s);
    printf("%s\n", r->interrupted ? ", interrupted" : "");
    if (o->mode == SF_BENCH_STREAM) {
        uint64_t bytes = st->bytes_out + st->bytes_in;

        printf("  throughput   %.2f Gbit/s  (%.1f MiB/s; %s bytes)\n",
               8.0 * per_sec(bytes, secs) / 1e9, per_sec(bytes, secs) / 1048576.0,
               group(n, sizeof(n), bytes));
    } else {
        group(rate, sizeof(rate), (uint64_t)(per_sec(st->requests, secs) + 0.5));
        printf("  %-12s %s  (%s %s)\n", o->mode == SF_BENCH_CONNECT ? "connections" :
               o->mode == SF_BENCH_UDP ? "datagrams" : "requests",
               group(n, sizeof(n), st->requests), rate, unit_of(o->mode));
        printf("  throughput   %.1f MB/s out, %.1f MB/s in\n",
               per_sec(st->bytes_out, secs) / 1e6, per_sec(st->bytes_in, secs) / 1e6);
    }
    if (st->lat.count) {
        char a[32], b[32], d[32], e[32], f[32], g[32];

        printf("  latency µs   min %s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
               usec(a, sizeof(a), st->lat.min), usec(b, sizeof(b), sf_hist_percentile(&st->lat, 50)),
               usec(d, sizeof(d), sf_hist_percentile(&st->lat, 90)),
               usec(e, sizeof(e), sf_hist_percentile(&st->lat, 99)),
               usec(f, sizeof(f), sf_hist_percentile(&st->lat, 99.9)),
               usec(g, sizeof(g), st->lat.max));
    }
    if (o->mode == SF_BENCH_UDP) {
        char sent[32], lost[32], late[32];

        printf("  sent         %s, lost %s (%.3f %%), late replies %s\n",
               group(sent, sizeof(sent), st->sent), group(lost, sizeof(lost), st->lost),
               st->sent ? 100.0 * (double)st->lost / (double)st->sent : 0.0,
               group(late, sizeof(late), st->late));
    }
    if (o->mode != SF_BENCH_STREAM)
        printf("  mismatches   %llu\n", (unsigned long long)st->mismatches);
    format_errors(errs, sizeof(errs), &st->err);
    printf("  errors       %s\n", errs);
    if (o->requests)
        printf("  requests     %s of %llu wanted\n", r->reached ? "all" : "NOT all",
               (unsigned long long)o->requests);
    fflush(stdout);
}

/* ---- options ---- */

static int
parse_range(const char *text, bench_conf *c)
{
    char a[64], *dash;
    struct in_addr lo, hi;
    uint32_t x, y;

    if (strlen(text) >= sizeof(a))
        return -1;
    strcpy(a, text);
    dash = strchr(a, '-');
    *dash = '\0';
    if (inet_pton(AF_INET, a, &lo) != 1 || inet_pton(AF_INET, dash + 1, &hi) != 1)
        return -1;
    x = ntohl(lo.s_addr);
    y = ntohl(hi.s_addr);
    if (y < x || y - x >= MAX_SRC)
        return -1;
    for (uint32_t v = x; v <= y; v++) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(v) };

        sf_addr_from_sa(&c->src[c->o.nsrc++], (struct sockaddr *)&sin, sizeof(sin));
    }
    return 0;
}

/* --src: "A", "A-B" (IPv4) or "A,B,...", or "none". */
static int
parse_sources(bench_conf *c, const char *text)
{
    char buf[4096], *save = NULL;

    if (strcmp(text, "none") == 0)
        return 0;
    if (strlen(text) >= sizeof(buf))
        return cmd_usage_error("bench", "--src: too long");
    strcpy(buf, text);
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        sf_addr_list l;
        sf_err err;

        if (strchr(item, '-')) {
            if (parse_range(item, c) < 0)
                return cmd_usage_error("bench", "--src %s: a range of at most %d IPv4 "
                                       "addresses, such as 127.0.0.2-127.0.0.9", item, MAX_SRC);
            continue;
        }
        if (c->o.nsrc == MAX_SRC)
            return cmd_usage_error("bench", "--src: at most %d addresses", MAX_SRC);
        if (sf_addr_resolve(item, "0", SF_ADDR_NUMERIC | SF_ADDR_PASSIVE, &l, &err) < 0)
            return cmd_usage_error("bench", "--src %s: %s", item, err.msg);
        c->src[c->o.nsrc++] = l.a[0];
    }
    return 0;
}

static int
parse_mode(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, mode_names[i]) == 0)
            return i;
    return -1;
}

static int
parse_opts(bench_conf *c, int argc, char **argv)
{
    int ch;
    long v;

    c->interval_ms = -1;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:s:P:d:n:T:t:i:46h", bench_opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if ((v = cmd_parse_count(optarg, 1000000)) < 1)
                return cmd_usage_error("bench", "-c %s: a number from 1 to 1000000", optarg);
            c->o.conns = (int)v;
            break;
        case 's':
            if ((v = cmd_parse_size(optarg)) < 1 || v > (64L << 20))
                return cmd_usage_error("bench", "-s %s: a size from 1 to 64m", optarg);
            c->o.size = (size_t)v;
            break;
        case 'P':
            if ((v = cmd_parse_count(optarg, 4096)) < 1)
                return cmd_usage_error("bench", "-P %s: a number from 1 to 4096", optarg);
            c->o.pipeline = (int)v;
            break;
        case 'n':
            if ((v = cmd_parse_count(optarg, 1L << 50)) < 1)
                return cmd_usage_error("bench", "-n %s: a positive number", optarg);
            c->o.requests = (uint64_t)v;
            break;
        case 'T':
            if ((v = cmd_parse_count(optarg, 256)) < 1)
                return cmd_usage_error("bench", "-T %s: a number from 1 to 256", optarg);
            c->o.threads = (int)v;
            break;
        case 'd': case 't': case 'i': case OPT_WARMUP:
            if ((v = cmd_parse_secs_ms(optarg)) < 0 || v > 86400000L ||
                ((ch == 'd' || ch == 't') && v == 0))
                return cmd_usage_error("bench", "%s: a number of seconds", optarg);
            if (ch == 'd') {
                c->o.duration_ms = (uint64_t)v;
                c->duration_given = 1;
            } else if (ch == 't') {
                c->o.timeout_ms = (uint32_t)v;
            } else if (ch == 'i') {
                c->interval_ms = v;
            } else {
                c->o.warmup_ms = (uint64_t)v;
            }
            break;
        case OPT_SRC: c->src_text = optarg; break;
        case OPT_RECV: c->o.recv = 1; break;
        case OPT_JSON: c->json = 1; break;
        case OPT_JSON_STREAM: c->json_stream = 1; break;
        case '4': c->family_flags = SF_ADDR_V4ONLY; break;
        case '6': c->family_flags = SF_ADDR_V6ONLY; break;
        case 'h': fputs(bench_usage, stdout); return -1;
        default:
            if ((v = cmd_trace_option(&c->trace, "bench", ch, optarg)) < 0)
                return EXIT_USAGE;
            if (v == 0)
                return cmd_bad_option("bench", ch, argv);
            break;
        }
    }
    if (argc - optind != 3)
        return cmd_usage_error("bench", "expected MODE HOST PORT (modes: echo connect "
                               "stream udp)");
    if ((c->o.mode = parse_mode(argv[optind])) < 0)
        return cmd_usage_error("bench", "%s: no such mode (echo connect stream udp)",
                               argv[optind]);
    if (c->o.recv && c->o.mode != SF_BENCH_STREAM)
        return cmd_usage_error("bench", "--recv is for stream mode");
    if (c->o.pipeline > 1 && c->o.mode != SF_BENCH_ECHO)
        return cmd_usage_error("bench", "-P is for echo mode");
    if (c->o.mode == SF_BENCH_UDP && c->o.size && c->o.size < 8)
        return cmd_usage_error("bench", "-s %zu: a UDP datagram here carries an 8-byte "
                               "header, so at least 8", c->o.size);
    if (c->o.mode == SF_BENCH_UDP && c->o.size > 65507)
        return cmd_usage_error("bench", "-s %zu: a UDP datagram is at most 65507 bytes",
                               c->o.size);
    return 0;
}

/* Defaults that depend on the mode and the target. */
static void
apply_defaults(bench_conf *c)
{
    sf_bench_opts *o = &c->o;

    if (o->conns == 0)
        o->conns = o->mode == SF_BENCH_STREAM ? 1 : o->mode == SF_BENCH_UDP ? 32 : 50;
    if (o->size == 0)
        o->size = o->mode == SF_BENCH_STREAM ? 128 * 1024 : 64;
    if (o->pipeline == 0)
        o->pipeline = 1;
    if (o->timeout_ms == 0)
        o->timeout_ms = o->mode == SF_BENCH_UDP ? 200 : 2000;
    if (!c->duration_given)
        o->duration_ms = o->requests ? 60000 : 10000;
    if (c->interval_ms < 0)
        c->interval_ms = isatty(2) || c->json_stream ? 1000 : 0;
    if (c->json_stream && c->interval_ms == 0)
        c->interval_ms = 1000;
}

static void
default_sources(bench_conf *c)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->o.target.ss;

    if (c->src_text || c->o.mode != SF_BENCH_CONNECT || sf_addr_family(&c->o.target) != AF_INET)
        return;
    if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
        return;
    parse_range("127.0.0.2-127.0.0.9", c);
    c->src_default = 1;
}

static int
exit_status(const bench_conf *c, const sf_bench_result *r)
{
    if (r->st.requests == 0 || failures(&r->st) > 0)
        return EXIT_FAIL;
    if (c->o.requests && !r->reached)
        return EXIT_FAIL;
    return EXIT_OK;
}

int
cmd_bench(int argc, char **argv)
{
    bench_conf *c = calloc(1, sizeof(*c));
    sf_bench_result *r = malloc(sizeof(*r));
    struct sigaction sa;
    sf_addr_list dst;
    sf_bench *b = NULL;
    sf_err err;
    int rc;

    if (c == NULL || r == NULL) {
        rc = cmd_fail("bench: out of memory");
        goto out;
    }
    rc = parse_opts(c, argc, argv);
    if (rc != 0) {
        rc = rc < 0 ? EXIT_OK : rc;
        goto out;
    }
    apply_defaults(c);
    if (sf_addr_resolve(argv[optind + 1], argv[optind + 2],
                        c->family_flags | (c->o.mode == SF_BENCH_UDP ? SF_ADDR_DGRAM : 0),
                        &dst, &err) < 0) {
        rc = cmd_fail("%s", err.msg);
        goto out;
    }
    c->o.target = dst.a[0];
    sf_addr_format(&c->o.target, c->target, sizeof(c->target));
    if (c->src_text && (rc = parse_sources(c, c->src_text)) != 0)
        goto out;
    default_sources(c);
    for (int i = 0; i < c->o.nsrc; i++) {
        if (sf_addr_family(&c->src[i]) != sf_addr_family(&c->o.target)) {
            rc = cmd_usage_error("bench", "--src: the sources and %s are not of one family",
                                 c->target);
            goto out;
        }
    }
    c->o.src = c->src;
    c->trace.port = (uint16_t)sf_addr_port(&c->o.target);     /* what --wire captures */
    if ((rc = cmd_trace_open(&c->trace)) != 0)
        goto out;
    c->o.tracer = cmd_tracer(&c->trace);
    c->o.interval_ms = (uint32_t)c->interval_ms;
    c->o.on_interval = on_interval;
    c->o.ud = c;
    b = sf_bench_new(&c->o, &err);
    if (b == NULL) {
        rc = err.code == SF_EUSAGE ? cmd_usage_error("bench", "%s", err.msg)
                                   : cmd_fail("%s", err.msg);
        goto out;
    }
    /* Ctrl-C ends the run early; the figures so far are still printed. */
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    running = b;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (sf_bench_run(b, r, &err) < 0) {
        running = NULL;
        rc = cmd_fail("%s", err.msg);
        goto out;
    }
    running = NULL;
    rc = exit_status(c, r);
    if (c->json || c->json_stream)
        json_result(c, r, rc);
    else
        print_table(c, r);
out:
    sf_bench_free(b);
    if (c)
        cmd_trace_close(&c->trace);
    free(r);
    free(c);
    return rc;
}
