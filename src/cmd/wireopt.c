/* wireopt: the capture behind --wire, the segment lines written between the calls, the
 * TCP_INFO counters where nothing can be captured, and the calls and segments kept for
 * --ladder, --html and --svg. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmd.h"
#include "wireopt_int.h"


/* ---- starting: capture, namespace or counters ---- */

/* The capture, in the process that opened it. A child forked later (the demo's server
 * process) has closed the packet socket's descriptor, and its number may be a socket of
 * its own by now. */
static sf_wire *
capture(const cmd_wire *cw)
{
    return cw->w && getpid() == cw->pid ? cw->w : NULL;
}

static void
add_port(cmd_wire *cw, uint16_t port)
{
    sf_wire_filter *f = &cw->filter;
    sf_err err;

    if (port == 0 || f->nports >= SF_WIRE_PORTS_MAX)
        return;
    if (f->nports == 1 && f->ports[0] == 0)
        f->nports = 0;          /* the placeholder that matches nothing */
    for (int i = 0; i < f->nports; i++)
        if (f->ports[i] == port)
            return;
    f->ports[f->nports++] = port;
    if (capture(cw) && sf_wire_set_filter(cw->w, f, &err) < 0)
        fprintf(stderr, "sockflow %s: --wire: %s\n", cw->cmd, err.msg);
}

static int
is_server_port(const cmd_wire *cw, int port)
{
    for (int i = 0; i < cw->filter.nports; i++)
        if (cw->filter.ports[i] == port)
            return 1;
    return 0;
}

static void
open_capture(cmd_wire *cw)
{
    sf_err err, err2;
    const char *also = "";
    int rc;

    /* Before any port is known the filter matches nothing (port 0 is never on the
     * wire): nothing unrelated is queued. */
    cw->filter.protos = SF_WIRE_P_TCP | SF_WIRE_P_UDP;
    if (cw->filter.nports == 0) {
        cw->filter.ports[0] = 0;
        cw->filter.nports = 1;
    }
    cw->pid = getpid();
    rc = sf_wire_open(&cw->w, "lo", &cw->filter, &err);
    if (rc == -EPERM && !(cw->what & CMD_WIRE_NONS)) {
        if ((rc = sf_wire_enter_netns(&err2)) == 0)
            rc = sf_wire_open(&cw->w, "lo", &cw->filter, &err);
        else
            also = err2.msg;
    }
    if (rc == 0)
        return;
    cw->w = NULL;
    /* one line: why, and what is shown instead */
    fprintf(stderr, "sockflow %s: --wire: %s%s%s; %s\n", cw->cmd, err.msg, *also ? "; " : "",
            also, cw->what & CMD_WIRE_NONS ? "showing the kernel's segment counters per socket "
            "(TCP_INFO) instead" : "the segments are left out");
}

cmd_wire *
cmd_wire_new(const char *cmd, unsigned what, sf_trace_sink *sink, uint16_t port)
{
    cmd_wire *cw = calloc(1, sizeof(*cw));

    if (cw == NULL)
        return NULL;
    cw->cmd = cmd;
    cw->what = what;
    cw->sink = sink;
    pthread_mutex_init(&cw->lock, NULL);
    if (port) {
        cw->filter.ports[0] = port;
        cw->filter.nports = 1;
    }
    if (what & CMD_WIRE_CAPTURE)
        open_capture(cw);
    return cw;
}

int
cmd_wire_capturing(const cmd_wire *cw)
{
    return cw && cw->w != NULL;
}

/* ---- writing: segment lines, counters ---- */

static void
write_entry(FILE *f, const char *p, size_t len)
{
    flockfile(f);
    fwrite(p, 1, len, f);
    fflush(f);
    funlockfile(f);
}

static int
same_addr(const sf_addr *a, const sf_addr *b)
{
    char x[SF_ADDR_STRLEN], y[SF_ADDR_STRLEN];

    return strcmp(sf_addr_format(a, x, sizeof(x)), sf_addr_format(b, y, sizeof(y))) == 0;
}

/* The number of s in its connection (1-based), counting both directions. */
static int
nth_of(cmd_wire *cw, const sf_segment *s)
{
    for (int i = 0; i < cw->nconvs; i++) {
        if ((same_addr(&cw->convs[i].a, &s->src) && same_addr(&cw->convs[i].b, &s->dst)) ||
            (same_addr(&cw->convs[i].a, &s->dst) && same_addr(&cw->convs[i].b, &s->src)))
            return ++cw->convs[i].n;
    }
    if (cw->nconvs < CONVS_MAX) {
        cw->convs[cw->nconvs].a = s->src;
        cw->convs[cw->nconvs].b = s->dst;
        cw->convs[cw->nconvs++].n = 1;
    }
    return 1;
}

/* The demo's 80 columns: who sends to whom, the figure's label, and J's or K's value. */
static size_t
narrow_line(const sf_segment *s, int sport, uint64_t t0, char *buf, size_t cap)
{
    sf_ladder_event e;
    char label[96], abs[48] = "";
    int from_server;

    sf_wire_to_ladder(s, sport, &e);
    from_server = e.side == SF_LADDER_SERVER;
    sf_ladder_seg_label(&e, label, sizeof(label));
    if (s->kind == SF_WIRE_TCP && (s->flags & SF_SEG_SYN))
        snprintf(abs, sizeof(abs), "%c=%u", from_server ? 'K' : 'J', s->seq);
    else if (s->kind == SF_WIRE_TCP)
        snprintf(abs, sizeof(abs), "win=%u", s->has_win_bytes ? s->win_bytes : s->win);
    return (size_t)snprintf(buf, cap, "%9.6f %-8s %s -> %s  %-26s %s\n",
                            s->t_ns >= t0 ? (double)(s->t_ns - t0) / 1e9 : 0.0, "wire",
                            from_server ? "server" : "client", from_server ? "client" : "server",
                            label, abs);
}

static size_t
json_line(const sf_segment *s, const char *why, char *buf, size_t cap)
{
    size_t n = sf_wire_format_json(s, buf, cap);

    if (n + 1 >= cap)
        return 0;
    if (why) {
        /* The sentences are plain ASCII without quotes or backslashes. */
        n--;
        n += (size_t)snprintf(buf + n, cap - n, ",\"explain\":\"%s\"}", why);
        if (n + 1 >= cap)
            return 0;
    }
    buf[n++] = '\n';
    buf[n] = '\0';
    return n;
}

static void
print_segment(cmd_wire *cw, const sf_segment *s, int sport, int nth)
{
    sf_trace_sink *k = cw->sink;
    char line[1024], why[512], wrapped[1024];
    int explain = (k->flags & SF_TRACE_F_EXPLAIN) != 0;
    size_t n;

    if (explain)
        sf_wire_explain(s, sport, nth, why, sizeof(why));
    if (k->format == SF_TRACE_JSON) {
        n = json_line(s, explain ? why : NULL, line, sizeof(line));
    } else if (cw->what & CMD_WIRE_NARROW) {
        n = narrow_line(s, sport, k->t0_ns, line, sizeof(line));
    } else {
        n = sf_wire_format_text(s, k->t0_ns, line, sizeof(line) - 1);
        n = n < sizeof(line) - 1 ? n : sizeof(line) - 2;
        line[n++] = '\n';
        line[n] = '\0';
    }
    if (n == 0 || n >= sizeof(line))
        return;
    if (explain && k->format != SF_TRACE_JSON) {
        if (cw->what & CMD_WIRE_NARROW)
            sf_text_wrap(why, "    > ", "      ", 79, wrapped, sizeof(wrapped));
        else
            snprintf(wrapped, sizeof(wrapped), "                 > %s", why);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s\n", wrapped);
        n = n < sizeof(line) ? n : sizeof(line) - 1;
    }
    write_entry(k->out, line, n);
}

/* Where nothing is captured: a TCP socket's segment counters, when they moved. */
static void
print_counts(cmd_wire *cw, const sf_trace_event *ev)
{
    sf_wire_counts c;
    char line[256];
    int i, n;

    if (ev->fd < 0 || ev->call == SF_CALL_CLOSE || ev->phase != SF_TRACE_RETURN ||
        ev->proto == NULL || strcmp(ev->proto, "tcp") != 0 || sf_wire_tcp_counts(ev->fd, &c) ||
        c.segs_out + c.segs_in == 0)
        return;
    for (i = 0; i < COUNTS_MAX - 1 && cw->counts[i].fd && cw->counts[i].fd != ev->fd + 1; i++)
        ;
    if (cw->counts[i].fd == ev->fd + 1 && !memcmp(&cw->counts[i].c, &c, sizeof(c)))
        return;
    cw->counts[i].fd = ev->fd + 1;
    cw->counts[i].c = c;
    if (cw->sink->format == SF_TRACE_JSON)
        n = snprintf(line, sizeof(line), "{\"event\":\"segment_counts\",\"t_ns\":%llu,"
                     "\"fd\":%d,\"segs_out\":%u,\"segs_in\":%u,\"data_segs_out\":%u,"
                     "\"data_segs_in\":%u}\n", (unsigned long long)ev->t_ns, ev->fd,
                     c.segs_out, c.segs_in, c.data_segs_out, c.data_segs_in);
    else
        n = snprintf(line, sizeof(line), "%*s wire  fd=%d segments out %u (%u with data), "
                     "in %u (%u with data) (TCP_INFO)\n", cw->what & CMD_WIRE_NARROW ? 9 : 10,
                     "", ev->fd, c.segs_out, c.data_segs_out, c.segs_in, c.data_segs_in);
    if (n > 0 && (size_t)n < sizeof(line))
        write_entry(cw->sink->out, line, (size_t)n);
}

/* ---- keeping calls and segments ---- */

static int
grow(void **p, size_t n, size_t size)
{
    void *q;

    if (n >= KEEP_MAX)
        return -1;
    if (n == 0 || (n & (n - 1)) == 0) {
        q = realloc(*p, (n ? 2 * n : 16) * size);
        if (q == NULL)
            return -1;
        *p = q;
    }
    return 0;
}

static int
seg_sport(const cmd_wire *cw, const sf_segment *s)
{
    if (s->kind == SF_WIRE_ICMP_UNREACH)
        return sf_addr_port(&s->quoted_dst);
    if (is_server_port(cw, sf_addr_port(&s->src)))
        return sf_addr_port(&s->src);
    if (is_server_port(cw, sf_addr_port(&s->dst)))
        return sf_addr_port(&s->dst);
    return 0;
}

static void
keep_segment(cmd_wire *cw, const sf_segment *s, int sport)
{
    if (!(cw->what & CMD_WIRE_LADDER) || grow((void **)&cw->k.segs, cw->k.nsegs,
                                              sizeof(kept_seg)))
        return;
    cw->k.segs[cw->k.nsegs].s = *s;
    cw->k.segs[cw->k.nsegs++].sport = sport;
}

/* The entry of the same call still open, to close with its return. */
static kept_call *
open_entry(cmd_wire *cw, const sf_trace_event *ev)
{
    for (size_t i = cw->k.ncalls; i-- > 0;) {
        kept_call *c = &cw->k.calls[i];

        if (c->open && c->call == ev->call && c->fd == ev->fd && c->id == ev->id &&
            strcmp(c->side, ev->side ? ev->side : "") == 0)
            return c;
    }
    return NULL;
}

static void
keep_call(cmd_wire *cw, const sf_trace_event *ev)
{
    kept_call *c = ev->phase == SF_TRACE_RETURN ? open_entry(cw, ev) : NULL;

    /* probes behind a check are not part of the flow */
    if (ev->call == SF_CALL_GETSOCKOPT || ev->call == SF_CALL_SOCK_DIAG)
        return;
    if (c == NULL) {
        if (grow((void **)&cw->k.calls, cw->k.ncalls, sizeof(kept_call)))
            return;
        c = &cw->k.calls[cw->k.ncalls++];
        memset(c, 0, sizeof(*c));
        c->call = ev->call;
        c->fd = ev->fd;
        c->id = ev->id;
        c->t_ns = ev->t_ns;
        snprintf(c->side, sizeof(c->side), "%s", ev->side ? ev->side : "");
        snprintf(c->args, sizeof(c->args), "%s", ev->args ? ev->args : "");
        c->server = ev->side && strncmp(ev->side, "server", 6) == 0;
        c->udp = ev->proto && strcmp(ev->proto, "udp") == 0;
    }
    c->open = ev->phase == SF_TRACE_ENTRY;
    c->t_end_ns = ev->t_ns;
    c->result = ev->result;
    c->err = ev->err;
}

/* A call's port worth filtering on: the listener's, a UDP server's, the one dialled. */
static void
learn_ports(cmd_wire *cw, const sf_trace_event *ev)
{
    sf_addr a;
    int server = ev->side && strncmp(ev->side, "server", 6) == 0;

    if (ev->result < 0)
        return;
    if ((ev->call == SF_CALL_LISTEN || (ev->call == SF_CALL_BIND && server && ev->proto &&
                                        strcmp(ev->proto, "udp") == 0)) &&
        sf_local_addr(ev->fd, &a) == 0)
        add_port(cw, (uint16_t)sf_addr_port(&a));
    else if ((ev->call == SF_CALL_CONNECT || (ev->call == SF_CALL_SENDTO && !server)) &&
             ev->addr)
        add_port(cw, (uint16_t)sf_addr_port(ev->addr));
}

void
cmd_wire_note(cmd_wire *cw, const sf_trace_event *ev)
{
    pthread_mutex_lock(&cw->lock);
    learn_ports(cw, ev);
    if (cw->what & CMD_WIRE_LADDER)
        keep_call(cw, ev);
    pthread_mutex_unlock(&cw->lock);
}

static void
upto_locked(cmd_wire *cw, uint64_t t_ns)
{
    sf_segment segs[64];
    size_t n;

    if (capture(cw) == NULL)
        return;
    do {
        n = sf_wire_take(cw->w, t_ns, segs, 64);
        for (size_t i = 0; i < n; i++) {
            int sport = seg_sport(cw, &segs[i]), nth = nth_of(cw, &segs[i]);

            if ((cw->what & CMD_WIRE_PRINT) && cw->sink)
                print_segment(cw, &segs[i], sport, nth);
            keep_segment(cw, &segs[i], sport);
        }
    } while (n == 64);
}

void
cmd_wire_upto(cmd_wire *cw, uint64_t t_ns)
{
    pthread_mutex_lock(&cw->lock);
    upto_locked(cw, t_ns);
    pthread_mutex_unlock(&cw->lock);
}

static void
tap_event(void *ud, const sf_trace_event *ev)
{
    cmd_wire *cw = ud;

    /* one lock over the segments and the call: threads cannot put lines between them */
    pthread_mutex_lock(&cw->lock);
    upto_locked(cw, ev->t_ns);
    learn_ports(cw, ev);
    if (cw->what & CMD_WIRE_LADDER)
        keep_call(cw, ev);
    if (cw->inner && (ev->phase == SF_TRACE_RETURN || cw->inner->entries))
        cw->inner->fn(cw->inner->ud, ev);
    if (cw->w == NULL && (cw->what & CMD_WIRE_CAPTURE) && cw->sink &&
        (cw->what & CMD_WIRE_PRINT))
        print_counts(cw, ev);
    pthread_mutex_unlock(&cw->lock);
}

const sf_tracer *
cmd_wire_tracer(cmd_wire *cw, const sf_tracer *inner)
{
    cw->inner = inner;
    cw->tap = (sf_tracer){ tap_event, cw, inner ? inner->with_data : 0, NULL, 1 };
    return &cw->tap;
}

void
cmd_wire_set_print(cmd_wire *cw, int on)
{
    pthread_mutex_lock(&cw->lock);
    cw->what = on ? cw->what | CMD_WIRE_PRINT : cw->what & ~(unsigned)CMD_WIRE_PRINT;
    pthread_mutex_unlock(&cw->lock);
}

void
cmd_wire_settle(cmd_wire *cw)
{
    struct pollfd p;

    if (cw == NULL || capture(cw) == NULL)
        return;
    p.fd = sf_wire_fd(cw->w);
    p.events = POLLIN;
    /* the last ACK can follow the last call by a few hundred microseconds */
    for (int i = 0; i < 10; i++) {
        cmd_wire_upto(cw, UINT64_MAX);
        if (poll(&p, 1, 30) <= 0)
            break;
    }
    cmd_wire_upto(cw, UINT64_MAX);
}

void
cmd_wire_reset(cmd_wire *cw)
{
    sf_err err;

    pthread_mutex_lock(&cw->lock);
    cw->k.ncalls = cw->k.nsegs = 0;
    cw->nconvs = 0;
    /* a port of the last figure may be anyone's ephemeral port by now */
    cw->filter.nports = 1;
    cw->filter.ports[0] = 0;
    if (capture(cw))
        sf_wire_set_filter(cw->w, &cw->filter, &err);
    pthread_mutex_unlock(&cw->lock);
}

size_t
cmd_wire_count(const cmd_wire *cw, int kind)
{
    size_t n = 0;

    for (size_t i = 0; i < cw->k.nsegs; i++)
        n += kind == 0 || cw->k.segs[i].s.kind == kind;
    return n;
}

const sf_segment *
cmd_wire_segment(const cmd_wire *cw, int kind, size_t i)
{
    for (size_t j = 0; j < cw->k.nsegs; j++)
        if ((kind == 0 || cw->k.segs[j].s.kind == kind) && i-- == 0)
            return &cw->k.segs[j].s;
    return NULL;
}

void
cmd_wire_free(cmd_wire *cw)
{
    if (cw == NULL)
        return;
    sf_wire_close(cw->w);
    for (int i = 0; i < cw->nfigs; i++) {
        free(cw->figs[i].k.calls);
        free(cw->figs[i].k.segs);
    }
    free(cw->k.calls);
    free(cw->k.segs);
    pthread_mutex_destroy(&cw->lock);
    free(cw);
}
