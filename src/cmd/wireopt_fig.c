/* wireopt_fig: the calls and segments --wire kept, drawn: the terminal ladder, and the
 * figures as an HTML page or an SVG image. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "wireopt_int.h"

int
cmd_wire_is_udp(const cmd_wire *cw)
{
    int udp = 0;

    for (size_t i = 0; i < cw->k.ncalls; i++) {
        if (cw->k.calls[i].call == SF_CALL_LISTEN)
            return 0;
        udp |= cw->k.calls[i].udp;
    }
    return udp || cmd_wire_count(cw, SF_WIRE_UDP) > 0;
}

/* The ladder events of k; strings point into k. NULL when there is nothing. */
static sf_ladder_event *
ladder_events(const kept *k, size_t *n)
{
    sf_ladder_event *ev;

    *n = k->ncalls + k->nsegs;
    if (*n == 0 || (ev = calloc(*n, sizeof(*ev))) == NULL)
        return NULL;
    for (size_t i = 0; i < k->ncalls; i++) {
        const kept_call *c = &k->calls[i];

        ev[i].kind = SF_LADDER_CALL;
        ev[i].side = c->server ? SF_LADDER_SERVER : SF_LADDER_CLIENT;
        ev[i].t_ns = c->t_ns;
        ev[i].t_end_ns = c->t_end_ns;
        ev[i].call = sf_call_name(c->call);
        ev[i].args = c->args;
        ev[i].result = c->result;
        ev[i].err = c->err;
    }
    for (size_t i = 0; i < k->nsegs; i++)
        sf_wire_to_ladder(&k->segs[i].s, k->segs[i].sport, &ev[k->ncalls + i]);
    return ev;
}

int
cmd_wire_ladder(cmd_wire *cw, FILE *out, int width)
{
    sf_ladder_event *ev;
    size_t n;
    int rc;

    pthread_mutex_lock(&cw->lock);
    ev = ladder_events(&cw->k, &n);
    rc = ev ? sf_ladder_text(out, ev, n, width) : 0;
    pthread_mutex_unlock(&cw->lock);
    free(ev);
    fflush(out);
    return rc;
}

static int
copy_kept(kept *dst, const kept *src)
{
    dst->calls = malloc((src->ncalls + 1) * sizeof(kept_call));
    dst->segs = malloc((src->nsegs + 1) * sizeof(kept_seg));
    if (dst->calls == NULL || dst->segs == NULL)
        return -1;
    memcpy(dst->calls, src->calls ? src->calls : dst->calls, src->ncalls * sizeof(kept_call));
    memcpy(dst->segs, src->segs ? src->segs : dst->segs, src->nsegs * sizeof(kept_seg));
    dst->ncalls = src->ncalls;
    dst->nsegs = src->nsegs;
    return 0;
}

void
cmd_wire_figure(cmd_wire *cw, int section, const char *title)
{
    figure *f;

    if (cw->nfigs >= FIGS_MAX)
        return;
    f = &cw->figs[cw->nfigs];
    pthread_mutex_lock(&cw->lock);
    if (copy_kept(&f->k, &cw->k) == 0) {
        f->section = section;
        snprintf(f->title, sizeof(f->title), "%s", title ? title : "");
        cw->nfigs++;
    } else {
        free(f->k.calls);
        free(f->k.segs);
    }
    pthread_mutex_unlock(&cw->lock);
}

static int
write_file(const char *path, const char *title, const sf_ladder_figure *figs, size_t n,
           int html)
{
    FILE *f = fopen(path, "we");
    int rc;

    if (f == NULL)
        return cmd_fail("--%s %s: %s", html ? "html" : "svg", path, strerror(errno));
    rc = html ? sf_ladder_html(f, title, figs, n) : sf_ladder_svg(f, &figs[0]);
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        return cmd_fail("--%s %s: %s", html ? "html" : "svg", path, sf_strerror(rc));
    return 0;
}

int
cmd_wire_write_figures(cmd_wire *cw, const char *title, const char *html, const char *svg)
{
    sf_ladder_figure figs[FIGS_MAX];
    sf_ladder_event *ev[FIGS_MAX] = { NULL };
    size_t n = 0;
    int rc = 0;

    for (int i = 0; i < cw->nfigs; i++) {
        ev[n] = ladder_events(&cw->figs[i].k, &figs[n].n);
        if (ev[n] == NULL)
            continue;
        figs[n].section = cw->figs[i].section;
        figs[n].title = cw->figs[i].title[0] ? cw->figs[i].title : NULL;
        figs[n].ev = ev[n];
        n++;
    }
    if (n == 0 && (html || svg))
        rc = cmd_fail("--%s: no events were traced to draw", html ? "html" : "svg");
    if (rc == 0 && html)
        rc = write_file(html, title, figs, n, 1);
    if (rc == 0 && svg)
        rc = write_file(svg, title, figs, n, 0);
    for (size_t i = 0; i < n; i++)
        free(ev[i]);
    return rc;
}

