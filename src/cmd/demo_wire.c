/* demo_wire: the demo's capture: segments written between the calls in the order the
 * demo writes its events, the ladder after the flow sections, and the figures file. */
#include <stdlib.h>
#include <string.h>

#include "demo_wire.h"

typedef struct demo_wire demo_wire;

/* A sink's function, with the capture to empty before each event it writes. */
typedef struct tramp {
    sf_trace_fn fn;
    void *ud;
    demo_wire *w;
} tramp;

struct demo_wire {
    cmd_wire *cw;
    int print, ladder;              /* --wire, --ladder */
    const char *html, *svg;
    tramp sink, phone, rec;
};

/* What the sink writes: first the segments seen up to the event's time. */
static void
write_event(void *ud, const sf_trace_event *ev)
{
    tramp *t = ud;

    cmd_wire_upto(t->w->cw, ev->t_ns);
    t->fn(t->ud, ev);
}

/* What the sections' calls report: kept for the ladder, then recorded by the demo. */
static void
note_event(void *ud, const sf_trace_event *ev)
{
    tramp *t = ud;

    cmd_wire_note(t->w->cw, ev);
    t->fn(t->ud, ev);
}

static void
wrap(tramp *t, demo_wire *w, sf_tracer *tr, sf_trace_fn fn)
{
    *t = (tramp){ tr->fn, tr->ud, w };
    tr->fn = fn;
    tr->ud = t;
}

void
demo_wire_take_options(demo_wire_opts *o, cmd_trace *ct)
{
    o->print = ct->wire;
    o->ladder = ct->ladder;
    o->html = ct->html;
    o->svg = ct->svg;
    ct->wire = ct->ladder = 0;
    ct->html = ct->svg = NULL;
}

int
demo_wire_start(demo *d, const demo_wire_opts *o)
{
    demo_wire *w = calloc(1, sizeof(*w));
    unsigned what = CMD_WIRE_CAPTURE | CMD_WIRE_LADDER | CMD_WIRE_NARROW;

    if (w == NULL)
        return cmd_fail("demo: out of memory");
    w->print = o->print;
    w->ladder = o->ladder;
    w->html = o->html;
    w->svg = o->svg;
    /* unprivileged, a namespace of our own: the demo is both sides on loopback */
    w->cw = cmd_wire_new("demo", what | (o->print ? CMD_WIRE_PRINT : 0), &d->sink, 0);
    if (w->cw == NULL) {
        free(w);
        return cmd_fail("demo: out of memory");
    }
    wrap(&w->sink, w, &d->sink.tracer, write_event);
    wrap(&w->phone, w, &d->phone.tracer, write_event);
    wrap(&w->rec, w, &d->tracer, note_event);
    d->wire = w;
    return EXIT_OK;
}

cmd_wire *
demo_wire_capture(demo *d)
{
    return d->wire ? d->wire->cw : NULL;
}

void
demo_wire_print(demo *d, int on)
{
    if (d->wire)
        cmd_wire_set_print(d->wire->cw, on || d->wire->print);
}

void
demo_wire_begin(demo *d, int section)
{
    (void)section;
    if (d->wire == NULL)
        return;
    cmd_wire_upto(d->wire->cw, UINT64_MAX);
    cmd_wire_reset(d->wire->cw);
}

void
demo_wire_ladder(demo *d, const char *what)
{
    if (d->wire == NULL || d->sink.format == SF_TRACE_JSON)
        return;
    demo_say(d, "%s", what);
    cmd_wire_ladder(d->wire->cw, d->sink.out, 79);
}

void
demo_wire_end(demo *d, int section)
{
    if (d->wire == NULL)
        return;
    cmd_wire_settle(d->wire->cw);
    /* section 7 draws its handshake itself */
    if ((section == 1 || section == 2 || d->wire->ladder) && section != 7)
        demo_wire_ladder(d, Z(d, "the ladder of this section (client left, server right):",
                              "本节的阶梯图（左边客户端，右边服务器）："));
    if (section == 1 || section == 2)
        cmd_wire_figure(d->wire->cw, section, NULL);
}

int
demo_wire_finish(demo *d)
{
    demo_wire *w = d->wire;
    int rc = EXIT_OK;

    if (w == NULL)
        return EXIT_OK;
    if (w->html || w->svg)
        rc = cmd_wire_write_figures(w->cw, "sockflow demo: the tutorial's figures, from a run",
                                    w->html, w->svg);
    cmd_wire_free(w->cw);
    d->sink.tracer.fn = w->sink.fn;
    d->sink.tracer.ud = w->sink.ud;
    free(w);
    d->wire = NULL;
    return rc;
}
