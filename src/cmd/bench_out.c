/* bench_out: what `sockflow bench` prints — live lines, the table, JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_cmd.h"

static const char *rate_note(char *buf, size_t len, const bench_conf *c,
                             const sf_bench_result *r);

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


uint64_t
bench_failures(const sf_bench_stats *st)
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
json_stats(FILE *f, const sf_bench_mode_info *mi, const sf_bench_stats *st, double secs)
{
    fprintf(f, "\"requests\": %llu, \"rps\": %.1f, \"bytes_out\": %llu, \"bytes_in\": %llu, "
            "\"bits_per_sec\": %.0f, \"connects\": %llu, \"mismatches\": %llu, ",
            (unsigned long long)st->requests, per_sec(st->requests, secs),
            (unsigned long long)st->bytes_out, (unsigned long long)st->bytes_in,
            8.0 * per_sec(st->bytes_out + st->bytes_in, secs),
            (unsigned long long)st->connects, (unsigned long long)st->mismatches);
    if (mi->dgram)
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

void
bench_json_result(const bench_conf *c, const sf_bench_result *r, int status)
{
    const sf_bench_opts *o = &c->o;
    char note[512];

    printf("{\"type\": \"result\", \"mode\": \"%s\", \"target\": \"%s\", \"connections\": %d, "
           "\"size\": %zu, \"pipeline\": %d, \"threads\": %d, \"local_target\": %s, "
           "\"threads_halved\": %s, \"recv\": %s, "
           "\"duration_s\": %.3f, \"warmup_s\": %.3f, \"timeout_s\": %.3f, \"sources\": ",
           bench_mode(c)->name, c->target, o->conns, o->size, o->pipeline, r->threads,
           r->local_target ? "true" : "false", r->threads_halved ? "true" : "false",
           o->recv ? "true" : "false", r->elapsed_s, r->warmup_s, o->timeout_ms / 1000.0);
    json_sources(stdout, c);
    fputs(", ", stdout);
    json_stats(stdout, bench_mode(c), &r->st, r->elapsed_s);
    printf(", \"requests_wanted\": %llu, \"reached\": %s, \"interrupted\": %s, "
           "\"rate_limit_suspected\": %s, \"rss_max_kb\": %ld, \"ok\": %s}\n",
           (unsigned long long)o->requests, r->reached ? "true" : "false",
           r->interrupted ? "true" : "false", bench_rate_limited(c, r) ? "true" : "false",
           peak_rss_kb(), status == EXIT_OK ? "true" : "false");
    fflush(stdout);
    if (*rate_note(note, sizeof(note), c, r))
        fprintf(stderr, "sockflow bench: %s\n", note);
}

/* ---- live lines ---- */

/* Whole measured intervals after the first (which may hold the server's burst). */
static void
tally_interval(bench_conf *c, const sf_bench_interval *iv)
{
    if (iv->warmup || !bench_mode(c)->dgram ||
        iv->len_s * 2000.0 < (double)c->o.interval_ms)
        return;
    if (c->iv_seen++ == 0)
        return;
    c->iv_counted++;
    c->iv_replied += iv->st->requests > 0;
    c->iv_lossy += iv->st->lost > 0;
}

int
bench_rate_limited(const bench_conf *c, const sf_bench_result *r)
{
    return bench_mode(c)->dgram && r->st.lost > 0 && c->iv_counted >= 2 &&
           c->iv_replied == c->iv_counted && c->iv_lossy * 4 >= c->iv_counted * 3;
}

/* The note for a steady rate limit, or "". */
static const char *
rate_note(char *buf, size_t len, const bench_conf *c, const sf_bench_result *r)
{
    char rate[32];

    buf[0] = '\0';
    if (bench_rate_limited(c, r))
        snprintf(buf, len, "replies kept coming at a steady %s dgram/s while datagrams "
                 "were lost throughout: the server may be rate limiting this source "
                 "(sockflow serve: --udp-rate 0 lifts its per-source budget)",
                 group(rate, sizeof(rate), (uint64_t)(per_sec(r->st.requests,
                                                              r->elapsed_s) + 0.5)));
    return buf;
}

void
bench_on_interval(void *ud, const sf_bench_interval *iv)
{
    bench_conf *c = ud;
    const sf_bench_stats *st = iv->st;

    tally_interval(c, iv);
    if (c->json_stream) {
        printf("{\"type\": \"interval\", \"index\": %d, \"t\": %.3f, \"len\": %.3f, "
               "\"warmup\": %s, ", iv->index, iv->t_s, iv->len_s, iv->warmup ? "true" : "false");
        json_stats(stdout, bench_mode(c), st, iv->len_s);
        fputs("}\n", stdout);
        /* nobody reads the figures any more (a closed pipe, a full disk): stop */
        if ((fflush(stdout) != 0 || ferror(stdout)) && c->out_errno == 0) {
            c->out_errno = errno ? errno : EIO;
            sf_bench_stop(c->b);
        }
    }
    if (c->interval_ms > 0 && !c->json_stream) {
        char n[32], p50[32], p99[32];

        if (bench_mode(c)->bulk) {
            fprintf(stderr, "%s%6.1fs  %8.2f Gbit/s\n", iv->warmup ? "warmup " : "", iv->t_s,
                    8.0 * per_sec(st->bytes_out + st->bytes_in, iv->len_s) / 1e9);
            return;
        }
        group(n, sizeof(n), (uint64_t)(per_sec(st->requests, iv->len_s) + 0.5));
        fprintf(stderr, "%s%6.1fs  %12s %-7s  p50 %8s µs  p99 %8s µs  failed %llu\n",
                iv->warmup ? "warmup " : "", iv->t_s, n, bench_mode(c)->unit,
                usec(p50, sizeof(p50), sf_hist_percentile(&st->lat, 50)),
                usec(p99, sizeof(p99), sf_hist_percentile(&st->lat, 99)),
                (unsigned long long)bench_failures(st));
    }
}

/* ---- the table ---- */

static void
print_sources(const bench_conf *c)
{
    char a[SF_ADDR_STRLEN], z[SF_ADDR_STRLEN];

    if (c->o.nsrc == 0) {
        if (bench_mode(c)->churns_ports)
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

void
bench_print_table(const bench_conf *c, const sf_bench_result *r)
{
    const sf_bench_opts *o = &c->o;
    const sf_bench_mode_info *mi = bench_mode(c);
    const sf_bench_stats *st = &r->st;
    double secs = r->elapsed_s;
    char n[32], rate[32], errs[512], what[256];

    sf_bench_describe(o, what, sizeof(what));
    printf("sockflow bench %s %s: %s, %d thread%s%s\n", mi->name, c->target, what, r->threads,
           plural(r->threads), r->threads_halved ? " (the target is on this host: half the "
           "CPUs are left to its server; -T to choose)" : "");
    print_sources(c);
    printf("  measured     %.2f s", secs);
    if (r->warmup_s > 0)
        printf(" (after %.1f s of warm-up)", r->warmup_s);
    printf("%s\n", r->interrupted ? ", interrupted" : "");
    if (mi->bulk) {
        uint64_t bytes = st->bytes_out + st->bytes_in;

        printf("  throughput   %.2f Gbit/s  (%.1f MiB/s; %s bytes)\n",
               8.0 * per_sec(bytes, secs) / 1e9, per_sec(bytes, secs) / 1048576.0,
               group(n, sizeof(n), bytes));
    } else {
        group(rate, sizeof(rate), (uint64_t)(per_sec(st->requests, secs) + 0.5));
        printf("  %-12s %s  (%s %s)\n", mi->what, group(n, sizeof(n), st->requests), rate,
               mi->unit);
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
    if (mi->dgram) {
        char sent[32], lost[32], late[32];

        printf("  sent         %s, lost %s (%.3f %%), late replies %s\n",
               group(sent, sizeof(sent), st->sent), group(lost, sizeof(lost), st->lost),
               st->sent ? 100.0 * (double)st->lost / (double)st->sent : 0.0,
               group(late, sizeof(late), st->late));
    }
    if (mi->checked)
        printf("  mismatches   %llu\n", (unsigned long long)st->mismatches);
    format_errors(errs, sizeof(errs), &st->err);
    printf("  errors       %s\n", errs);
    if (o->requests)
        printf("  requests     %s of %llu wanted\n", r->reached ? "all" : "NOT all",
               (unsigned long long)o->requests);
    if (*rate_note(errs, sizeof(errs), c, r))
        printf("  note         %s\n", errs);
    fflush(stdout);
}

