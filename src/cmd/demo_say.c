/* demo_say: the demo's record of what the kernel reported, and its narration: section
 * heads, the line of what to notice, notes, and each claim checked against the record
 * ("seen:" or "NOT SEEN:"), in 80 columns, in colour on a terminal, in English or in
 * the seed's Chinese. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

#define WIDTH 79

static void
copy_str(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static demo_rec *
find_rec(demo *d, const char *side, unsigned long id, sf_call call, int phase)
{
    for (int i = 0; i < d->nrecs; i++) {
        demo_rec *r = &d->recs[i];

        if (r->id == id && r->call == call && r->phase == phase && strcmp(r->side, side) == 0)
            return r;
    }
    return NULL;
}

static void
record(demo *d, const sf_trace_event *ev)
{
    demo_rec *r = find_rec(d, ev->side, ev->id, ev->call, ev->phase);

    if (ev->phase == SF_TRACE_RETURN && d->nseq < DEMO_MAX_SEQ) {
        d->seq[d->nseq].side = ev->side[0];
        d->seq[d->nseq++].call = ev->call;
    }
    if (r == NULL && d->nrecs < DEMO_MAX_RECS)
        r = &d->recs[d->nrecs++];
    if (r == NULL)
        return;
    r->call = ev->call;
    r->phase = ev->phase;
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

/* Point h's event at h's own copies (after h was copied or moved). */
static void
repoint(demo_held *h, int local, int peer, int addr)
{
    h->ev.args = h->args;
    h->ev.side = h->side;
    h->ev.local = local ? h->local : NULL;
    h->ev.peer = peer ? h->peer : NULL;
    h->ev.addr = addr ? &h->addr : NULL;
    h->ev.data = NULL;
    h->ev.datalen = 0;
}

/* A copy of ev whose strings and address live in h. */
static void
hold(demo_held *h, const sf_trace_event *ev)
{
    demo_held tmp;

    tmp.ev = *ev;
    copy_str(tmp.args, sizeof(tmp.args), ev->args);
    copy_str(tmp.local, sizeof(tmp.local), ev->local);
    copy_str(tmp.peer, sizeof(tmp.peer), ev->peer);
    copy_str(tmp.side, sizeof(tmp.side), ev->side);
    if (ev->addr)
        tmp.addr = *ev->addr;
    *h = tmp;
    repoint(h, ev->local != NULL, ev->peer != NULL, ev->addr != NULL);
}

/* After a struct copy or a sort, the pointers still point at the old place. */
static void
moved(demo_held *h)
{
    repoint(h, h->ev.local != NULL, h->ev.peer != NULL, h->ev.addr != NULL);
}

/* --step: wait for Enter (on standard input; the prompt on standard error, away from
 * the output). At the end of the input the demo runs on. */
static void
pause_for_enter(demo *d)
{
    char line[64];

    fprintf(stderr, "%s", d->step == DEMO_STEP_EVENT
            ? Z(d, "-- Enter: next call --", "-- 按回车继续下一个调用 --")
            : Z(d, "-- Enter: next section --", "-- 按回车继续 --"));
    fflush(stderr);
    if (fgets(line, sizeof(line), stdin) == NULL)
        d->step = DEMO_STEP_NONE;
}

/* Write ev now, or keep it for demo_release; the lock is held. */
static void
put_event(demo *d, const sf_trace_event *ev)
{
    if (d->holding && d->nheld < DEMO_MAX_HELD) {
        hold(&d->held[d->nheld], ev);
        d->held[d->nheld++].late = ev->phase == SF_TRACE_RETURN &&
                                   !pthread_equal(pthread_self(), d->main_thread);
    }
    else if (!d->holding) {
        d->cur->tracer.fn(d->cur->tracer.ud, ev);
        if (d->step == DEMO_STEP_EVENT)
            pause_for_enter(d);
    }
}

void
demo_wait_entry(demo *d, const char *side, unsigned long id, sf_call call)
{
    uint64_t deadline = sf_now_ns() + (uint64_t)DEMO_WAIT_MS * 1000000u;
    int in = 0;

    while (!in && sf_now_ns() < deadline) {
        pthread_mutex_lock(&d->lock);
        in = find_rec(d, side, id, call, SF_TRACE_ENTRY) != NULL;
        pthread_mutex_unlock(&d->lock);
        if (!in)
            demo_sleep_ms(1);
    }
}

void
demo_entries(demo *d, int on)
{
    pthread_mutex_lock(&d->lock);
    d->entries = on;
    pthread_mutex_unlock(&d->lock);
}

void
demo_event(demo *d, const sf_trace_event *ev)
{
    pthread_mutex_lock(&d->lock);
    record(d, ev);
    /* a probe is evidence for a check, not part of the flow: shown with -v; an entry
     * only where the section shows a call asleep */
    if ((!d->quiet || d->verbose) && (ev->phase == SF_TRACE_RETURN || d->entries))
        put_event(d, ev);
    pthread_mutex_unlock(&d->lock);
}

static int
by_time(const void *a, const void *b)
{
    const demo_held *x = a, *y = b;

    if (x->late != y->late)
        return x->late - y->late;
    return x->ev.t_ns < y->ev.t_ns ? -1 : x->ev.t_ns > y->ev.t_ns;
}

void
demo_hold(demo *d)
{
    pthread_mutex_lock(&d->lock);
    d->holding = 1;
    d->nheld = 0;
    pthread_mutex_unlock(&d->lock);
}

void
demo_release(demo *d)
{
    pthread_mutex_lock(&d->lock);
    qsort(d->held, (size_t)d->nheld, sizeof(d->held[0]), by_time);
    for (int i = 0; i < d->nheld; i++) {
        moved(&d->held[i]);
        d->cur->tracer.fn(d->cur->tracer.ud, &d->held[i].ev);
        if (d->step == DEMO_STEP_EVENT)
            pause_for_enter(d);
    }
    d->holding = 0;
    d->nheld = 0;
    pthread_mutex_unlock(&d->lock);
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
demo_init(demo *d, FILE *out, int format, unsigned flags, int lang)
{
    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->lock, NULL);
    d->main_thread = pthread_self();
    d->lang = lang;
    sf_trace_sink_init(&d->sink, out, format, flags);
    d->phone = d->sink;
    d->phone.tracer.ud = &d->phone;
    d->phone.flags |= SF_TRACE_F_EXPLAIN;
    d->cur = &d->sink;
    d->tracer = (sf_tracer){ on_event, d, (flags & SF_TRACE_F_DATA) != 0, on_segment, 1 };
}

const demo_rec *
demo_seen(demo *d, const char *side, unsigned long id, sf_call call)
{
    static const demo_rec none = { .fd = -1, .result = -1 };
    const demo_rec *r = find_rec(d, side, id, call, SF_TRACE_RETURN);

    return r ? r : &none;
}

const demo_rec *
demo_entry(demo *d, const char *side, unsigned long id, sf_call call)
{
    static const demo_rec none = { .fd = -1, .result = -1 };
    const demo_rec *r = find_rec(d, side, id, call, SF_TRACE_ENTRY);

    return r ? r : &none;
}

const char *
demo_calls(demo *d, char side, const sf_call *skip, int nskip, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = '\0';
    for (int i = 0; i < d->nseq; i++) {
        int skipped = 0;

        for (int k = 0; k < nskip; k++)
            skipped |= d->seq[i].call == skip[k];
        if (d->seq[i].side != side || skipped)
            continue;
        n += (size_t)snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? " " : "",
                              sf_call_name(d->seq[i].call));
        if (n >= len)
            break;
    }
    return buf;
}

/* ---- the text around the calls ---- */

static int
text_mode(const demo *d)
{
    return d->sink.format != SF_TRACE_JSON;
}

/* One note: in text, lead (coloured with colour on a terminal) and text wrapped to 80
 * columns under it; in JSON, an event of kind with text. */
static void
note(demo *d, const char *kind, const char *lead, const char *colour, const char *text)
{
    char wrapped[2048], indent[32];

    if (!text_mode(d)) {
        sf_trace_sink_note(&d->sink, kind, "%s", text);
        return;
    }
    snprintf(indent, sizeof(indent), "%*s", sf_text_width(lead), "");
    sf_text_wrap(text, indent, indent, WIDTH, wrapped, sizeof(wrapped));
    if (d->colour && colour)
        sf_trace_sink_note(&d->sink, "note", "\033[%sm%s\033[0m%s", colour, lead,
                           wrapped + strlen(indent));
    else
        sf_trace_sink_note(&d->sink, "note", "%s%s", lead, wrapped + strlen(indent));
}

void
demo_section(demo *d, int n, const char *title, const char *notice)
{
    char head[256];

    d->nrecs = d->nseq = d->nchecks = 0;
    snprintf(head, sizeof(head), "%d. %s", n, title);
    if (!text_mode(d))
        sf_trace_sink_note(&d->sink, "section", "%s", head);
    else if (d->colour)
        sf_trace_sink_note(&d->sink, "note", "\n\033[1m== %s ==\033[0m", head);
    else
        sf_trace_sink_note(&d->sink, "note", "\n== %s ==", head);
    note(d, "notice", Z(d, "notice: ", "注意："), "36", notice);
}

void
demo_section_end(demo *d, int more)
{
    for (int i = 0; i < d->nchecks; i++) {
        const char *c = d->checks[i];
        int seen = c[0] == '+', skipped = c[0] == '~';

        if (!text_mode(d))
            sf_trace_sink_note(&d->sink, "check", "%s: %s",
                               seen ? "seen" : skipped ? "skipped" : "NOT SEEN", c + 1);
        else
            note(d, "check", seen ? Z(d, "   seen: ", "   看到：") : skipped
                 ? Z(d, "   skipped: ", "   跳过：") : "   NOT SEEN: ",
                 seen ? "32" : skipped ? "33" : "31;1", c + 1);
    }
    d->nchecks = 0;
    if (more && d->step)
        pause_for_enter(d);
}

void
demo_say(demo *d, const char *fmt, ...)
{
    char text[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    note(d, "note", "   -- ", NULL, text);
}

/* A check is kept until the section ends: '+' seen, '-' not seen, '~' skipped. */
static void
keep_check(demo *d, char mark, const char *fmt, va_list ap)
{
    char *c;

    if (d->nchecks == DEMO_MAX_CHECKS)
        demo_section_end(d, 0);
    c = d->checks[d->nchecks++];
    c[0] = mark;
    vsnprintf(c + 1, sizeof(d->checks[0]) - 1, fmt, ap);
}

void
demo_check(demo *d, int ok, const char *fmt, ...)
{
    va_list ap;

    d->claims++;
    if (!ok)
        d->failed++;
    va_start(ap, fmt);
    keep_check(d, ok ? '+' : '-', fmt, ap);
    va_end(ap);
}

void
demo_skip(demo *d, const char *fmt, ...)
{
    va_list ap;

    d->skipped++;
    va_start(ap, fmt);
    keep_check(d, '~', fmt, ap);
    va_end(ap);
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
        demo_skip(d, Z(d, "%s %s%s: the kernel's TIME_WAIT table is full"
                       " (net.ipv4.tcp_max_tw_buckets; %ld overflows meanwhile), so it"
                       " dropped the connection (%s) instead",
                       "%s %s%s：内核的 TIME_WAIT 表已满（net.ipv4.tcp_max_tw_buckets；"
                       "其间溢出 %ld 次），所以它丢弃了这个连接（%s）"), what,
                  sf_tcp_state_name(want), tail, now - overflows, sf_tcp_state_name(state));
    else
        demo_check(d, state == want, "%s %s%s", what, sf_tcp_state_name(state), tail);
}
