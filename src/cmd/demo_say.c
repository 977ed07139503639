/* demo_say: the demo's record of what the kernel reported, and its narration: section
 * heads, notes, and each claim checked against the record ("seen:" or "NOT SEEN:"). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

static void
copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static demo_rec *
find_rec(demo *d, const char *side, unsigned long id, sf_call call)
{
    for (int i = 0; i < d->nrecs; i++) {
        demo_rec *r = &d->recs[i];

        if (r->id == id && r->call == call && strcmp(r->side, side) == 0)
            return r;
    }
    return NULL;
}

static void
record(demo *d, const sf_trace_event *ev)
{
    demo_rec *r = find_rec(d, ev->side, ev->id, ev->call);

    if (r == NULL && d->nrecs < DEMO_MAX_RECS)
        r = &d->recs[d->nrecs++];
    if (r == NULL)
        return;
    r->call = ev->call;
    copy_str(r->side, sizeof(r->side), ev->side);
    copy_str(r->local, sizeof(r->local), ev->local);
    copy_str(r->peer, sizeof(r->peer), ev->peer);
    copy_str(r->args, sizeof(r->args), ev->args);
    r->id = ev->id;
    r->notes = ev->notes;
    r->fd = ev->fd;
    r->result = ev->result;
    r->err = ev->err;
    r->state = ev->tcp_state;
    r->before = ev->tcp_state_before;
    r->queue = ev->accept_queue;
    r->t_ns = ev->t_ns;
}

void
demo_event(demo *d, const sf_trace_event *ev)
{
    record(d, ev);
    d->cur->tracer.fn(d->cur->tracer.ud, ev);
}

static void
on_event(void *ud, const sf_trace_event *ev)
{
    demo_event(ud, ev);
}

/* Segments from a capture go out between the calls, through the same sink. */
static void
on_segment(void *ud, const sf_trace_segment *sg)
{
    demo *d = ud;

    sf_trace_segment_emit(&d->cur->tracer, sg);
}

void
demo_init(demo *d, FILE *out, int format, unsigned flags)
{
    memset(d, 0, sizeof(*d));
    sf_trace_sink_init(&d->sink, out, format, flags);
    d->phone = d->sink;
    d->phone.tracer.ud = &d->phone;
    d->phone.flags |= SF_TRACE_F_EXPLAIN;
    d->cur = &d->sink;
    d->tracer = (sf_tracer){ on_event, d, (flags & SF_TRACE_F_DATA) != 0, on_segment };
}

const demo_rec *
demo_seen(demo *d, const char *side, unsigned long id, sf_call call)
{
    static const demo_rec none = { .fd = -1, .result = -1 };
    const demo_rec *r = find_rec(d, side, id, call);

    return r ? r : &none;
}

void
demo_section(demo *d, int n, const char *title)
{
    d->nrecs = 0;
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "section", "%d. %s", n, title);
    else
        sf_trace_sink_note(&d->sink, "note", "\n== %d. %s ==", n, title);
}

void
demo_say(demo *d, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "note", "%s", text);
    else
        sf_trace_sink_note(&d->sink, "note", "   -- %s", text);
}

void
demo_check(demo *d, int ok, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    d->claims++;
    if (!ok)
        d->failed++;
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "check", "%s: %s", ok ? "seen" : "NOT SEEN", text);
    else
        sf_trace_sink_note(&d->sink, "note", "   %s %s", ok ? "seen:" : "NOT SEEN:", text);
}

void
demo_skip(demo *d, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    d->skipped++;
    if (d->sink.format == SF_TRACE_JSON)
        sf_trace_sink_note(&d->sink, "check", "skipped: %s", text);
    else
        sf_trace_sink_note(&d->sink, "note", "   skipped: %s", text);
}

long
demo_tw_overflows(void)
{
    /* Connections dropped instead of kept in TIME_WAIT: net.ipv4.tcp_max_tw_buckets. */
    return sf_net_counter("TcpExt", "TCPTimeWaitOverflow");
}

void
demo_check_closed_state(demo *d, int state, int want, long overflows, const char *what,
                        const char *tail)
{
    long now = demo_tw_overflows();

    if (state != want && overflows >= 0 && now > overflows)
        demo_skip(d, "%s %s%s: the kernel's TIME_WAIT table is full"
                  " (net.ipv4.tcp_max_tw_buckets; %ld overflows meanwhile), so it dropped"
                  " the connection (%s) instead", what, sf_tcp_state_name(want), tail,
                  now - overflows, sf_tcp_state_name(state));
    else
        demo_check(d, state == want, "%s %s%s", what, sf_tcp_state_name(state), tail);
}
