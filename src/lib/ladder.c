/* ladder: events laid out as rows in time order, and the terminal ladder diagram drawn
 * from them: client calls left, server calls right, segments as arrows between. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/err.h"
#include "ladder_int.h"

/* J for the client's numbers, K for the server's: the letters of UNP's figure. */
static void
rel_label(char *buf, size_t cap, int side, uint32_t v)
{
    char letter = side == SF_LADDER_CLIENT ? 'J' : 'K';

    if (v == 0)
        snprintf(buf, cap, "%c", letter);
    else
        snprintf(buf, cap, "%c+%u", letter, v);
}

static const char *
tcp_label(const sf_ladder_event *e, char *buf, size_t cap)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        { SF_SEG_SYN, "SYN" }, { SF_SEG_FIN, "FIN" }, { SF_SEG_RST, "RST" },
        { SF_SEG_PSH, "PSH" }, { SF_SEG_URG, "URG" }, { SF_SEG_ECE, "ECE" },
        { SF_SEG_CWR, "CWR" },
    };
    int other = e->side == SF_LADDER_CLIENT ? SF_LADDER_SERVER : SF_LADDER_CLIENT;
    size_t len = 0;
    char num[24];

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (e->flags & names[i].bit)
            len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s",
                                    len ? "+" : "", names[i].name);
    /* The sequence number matters where the segment takes sequence space. */
    if (e->has_seq && (e->flags & (SF_SEG_SYN | SF_SEG_FIN | SF_SEG_RST) || e->len > 0)) {
        rel_label(num, sizeof(num), e->side, e->seq);
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s",
                                len ? " " : "", num);
    }
    if (e->len > 0)
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, " len %u", e->len);
    if (e->flags & SF_SEG_ACK) {
        if (e->has_ack)
            rel_label(num, sizeof(num), other, e->ack);
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%sACK%s%s",
                                len ? ", " : "", e->has_ack ? " " : "",
                                e->has_ack ? num : "");
    }
    if (len == 0)
        snprintf(buf, cap, "-");
    return buf;
}

const char *
sf_ladder_seg_label(const sf_ladder_event *e, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    switch (e->proto) {
    case SF_LADDER_TCP:
        return tcp_label(e, buf, cap);
    case SF_LADDER_UDP:
        snprintf(buf, cap, "UDP len %u", e->len);
        return buf;
    case SF_LADDER_ICMP:
        snprintf(buf, cap, "ICMP port unreachable");
        return buf;
    }
    snprintf(buf, cap, "?");
    return buf;
}

const char *
sf__ladder_call_text(const sf_ladder_event *e, int row_kind, char *buf, size_t cap)
{
    char res[48];

    if (e->result < 0 && e->err)
        snprintf(res, sizeof(res), "= %ld %s", e->result, sf_errname(-e->err));
    else
        snprintf(res, sizeof(res), "= %ld", e->result);
    if (row_kind == SF__ROW_ENTRY)
        snprintf(buf, cap, "%s(%s)", e->call, e->args ? e->args : "");
    else if (row_kind == SF__ROW_RETURN)
        snprintf(buf, cap, "%s %s", e->call, res);
    else
        snprintf(buf, cap, "%s(%s) %s", e->call, e->args ? e->args : "", res);
    return buf;
}

/* ---- rows ---- */

/* A point in time: a call's entry or return, or a segment. */
typedef struct point {
    uint64_t t;
    size_t ev;
    int sub;                /* 0 entry or segment, 1 return */
} point;

static int
point_cmp(const void *a, const void *b)
{
    const point *x = a, *y = b;

    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->ev != y->ev)
        return x->ev < y->ev ? -1 : 1;
    return x->sub - y->sub;
}

static int
event_ok(const sf_ladder_event *e)
{
    if (e->side != SF_LADDER_CLIENT && e->side != SF_LADDER_SERVER)
        return 0;
    if (e->kind == SF_LADDER_CALL)
        return e->call != NULL && e->t_end_ns >= e->t_ns;
    return e->kind == SF_LADDER_SEG && e->proto >= SF_LADDER_TCP && e->proto <= SF_LADDER_ICMP;
}

/* Points to rows: a call whose return follows its entry directly is one row. */
static size_t
points_to_rows(const sf_ladder_event *ev, const point *p, size_t np, sf__ladder_row *rows)
{
    size_t nr = 0, *entry_row = calloc(np ? np : 1, sizeof(size_t));

    if (entry_row == NULL)
        return (size_t)-1;
    for (size_t i = 0; i < np; i++) {
        const sf_ladder_event *e = &ev[p[i].ev];
        sf__ladder_row *r = &rows[nr];

        memset(r, 0, sizeof(*r));
        r->ev = p[i].ev;
        r->t_ns = p[i].t;
        if (e->kind == SF_LADDER_SEG) {
            r->kind = SF__ROW_SEG;
        } else if (p[i].sub == 0 && i + 1 < np && p[i + 1].ev == p[i].ev) {
            r->kind = SF__ROW_CALL;
            i++;
        } else if (p[i].sub == 0) {
            r->kind = SF__ROW_ENTRY;
            entry_row[p[i].ev] = nr;
        } else {
            r->kind = SF__ROW_RETURN;
            r->pair = entry_row[p[i].ev];
            rows[r->pair].pair = nr;
        }
        nr++;
    }
    free(entry_row);
    return nr;
}

/* Mark, per side, the rows strictly inside one of its calls (a bar passes them). */
static void
mark_inside(const sf_ladder_event *ev, sf__ladder_row *rows, size_t nr)
{
    int depth[2] = { 0, 0 };

    for (size_t i = 0; i < nr; i++) {
        int side = ev[rows[i].ev].side;

        if (rows[i].kind == SF__ROW_RETURN)
            depth[side]--;
        rows[i].inside[0] = depth[0] > 0;
        rows[i].inside[1] = depth[1] > 0;
        if (rows[i].kind == SF__ROW_ENTRY)
            depth[side]++;
    }
}

int
sf__ladder_rows(const sf_ladder_event *ev, size_t n, sf__ladder_row **rows, size_t *nrows)
{
    point *p;
    size_t np = 0, nr;

    *rows = NULL;
    *nrows = 0;
    for (size_t i = 0; i < n; i++)
        if (!event_ok(&ev[i]))
            return SF_EUSAGE;
    p = malloc((2 * n + 1) * sizeof(*p));
    *rows = malloc((2 * n + 1) * sizeof(**rows));
    if (p == NULL || *rows == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        p[np++] = (point){ ev[i].t_ns, i, 0 };
        if (ev[i].kind == SF_LADDER_CALL)
            p[np++] = (point){ ev[i].t_end_ns, i, 1 };
    }
    qsort(p, np, sizeof(*p), point_cmp);
    nr = points_to_rows(ev, p, np, *rows);
    if (nr == (size_t)-1)
        goto fail;
    mark_inside(ev, *rows, nr);
    free(p);
    *nrows = nr;
    return 0;
fail:
    free(p);
    free(*rows);
    *rows = NULL;
    return -ENOMEM;
}

int
sf_ladder_order(const sf_ladder_event *ev, size_t n, size_t *idx)
{
    point *p;

    for (size_t i = 0; i < n; i++)
        if (!event_ok(&ev[i]))
            return SF_EUSAGE;
    if ((p = malloc((n + 1) * sizeof(*p))) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = (point){ ev[i].kind == SF_LADDER_CALL ? ev[i].t_end_ns : ev[i].t_ns, i, 0 };
    qsort(p, n, sizeof(*p), point_cmp);
    for (size_t i = 0; i < n; i++)
        idx[i] = p[i].ev;
    free(p);
    return 0;
}

/* ---- the terminal ladder ---- */

/* Columns: time, client text (right-aligned against its lifeline), the lifeline, the
 * arrows, the server's lifeline, server text. */
typedef struct geom {
    int width, time_w, text_w, cl, sl;
} geom;

static geom
geom_for(int width)
{
    geom g = { .width = width, .time_w = 10 };

    g.text_w = (width - g.time_w - 4) * 28 / 86;
    g.cl = g.time_w + g.text_w + 1;
    g.sl = width - g.text_w - 2;
    return g;
}

/* Copy s into line at col, at most w columns; a cut is marked with '~'. */
static void
put_text(char *line, int col, int w, const char *s, int right)
{
    int len = (int)strlen(s);

    if (len > w) {
        memcpy(line + col, s, (size_t)(w - 1));
        line[col + w - 1] = '~';
        return;
    }
    memcpy(line + col + (right ? w - len : 0), s, (size_t)len);
}

static void
put_arrow(char *line, const geom *g, const sf_ladder_event *e)
{
    int from = g->cl + 1, to = g->sl - 1, w = to - from + 1, len, at;
    char label[96], padded[100];

    memset(line + from, '-', (size_t)w);
    if (e->side == SF_LADDER_CLIENT)
        line[to] = '>';
    else
        line[from] = '<';
    sf_ladder_seg_label(e, label, sizeof(label));
    len = snprintf(padded, sizeof(padded), " %s ", label);
    if (len > w - 4)
        len = w - 4;
    at = from + (w - len) / 2;
    memcpy(line + at, padded, (size_t)len);
}

static char
lifeline(const sf__ladder_row *r, const sf_ladder_event *e, int side)
{
    if (r->kind != SF__ROW_SEG && e->side == side)
        return '+';
    return r->inside[side] ? '#' : '|';
}

static void
format_row(char *line, const geom *g, const sf__ladder_row *r, const sf_ladder_event *ev,
           uint64_t t0)
{
    const sf_ladder_event *e = &ev[r->ev];
    char text[160], t[32];

    memset(line, ' ', (size_t)g->width);
    snprintf(t, sizeof(t), "%9.3f", (double)(r->t_ns - t0) / 1e6);
    put_text(line, 0, g->time_w - 1, t, 1);
    line[g->cl] = lifeline(r, e, SF_LADDER_CLIENT);
    line[g->sl] = lifeline(r, e, SF_LADDER_SERVER);
    if (r->kind == SF__ROW_SEG) {
        put_arrow(line, g, e);
    } else {
        sf__ladder_call_text(e, r->kind, text, sizeof(text));
        if (e->side == SF_LADDER_CLIENT)
            put_text(line, g->time_w, g->text_w, text, 1);
        else
            put_text(line, g->sl + 2, g->text_w, text, 0);
    }
}

/* Write line[0..width) without trailing blanks, and a newline. */
static int
emit(FILE *out, char *line, int width)
{
    int end = width;

    while (end > 0 && line[end - 1] == ' ')
        end--;
    line[end] = '\n';
    return fwrite(line, 1, (size_t)end + 1, out) == (size_t)end + 1 ? 0 : -EIO;
}

static int
emit_header(FILE *out, const geom *g, char *line)
{
    memset(line, ' ', (size_t)g->width);
    put_text(line, 0, g->time_w - 1, "ms", 1);
    put_text(line, g->time_w, g->text_w, "client", 1);
    line[g->cl] = '|';
    line[g->sl] = '|';
    put_text(line, g->sl + 2, g->text_w, "server", 0);
    return emit(out, line, g->width);
}

static int
has_tcp(const sf_ladder_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ev[i].kind == SF_LADDER_SEG && ev[i].proto == SF_LADDER_TCP)
            return 1;
    return 0;
}

int
sf_ladder_text(FILE *out, const sf_ladder_event *ev, size_t n, int width)
{
    sf__ladder_row *rows;
    size_t nr;
    char line[SF_LADDER_WIDTH + 2];
    geom g;
    int rc;

    if (width == 0)
        width = SF_LADDER_WIDTH;
    if (width < 72 || width > SF_LADDER_WIDTH)
        return SF_EUSAGE;
    if ((rc = sf__ladder_rows(ev, n, &rows, &nr)) < 0)
        return rc;
    g = geom_for(width);
    rc = emit_header(out, &g, line);
    for (size_t i = 0; i < nr && rc == 0; i++) {
        format_row(line, &g, &rows[i], ev, rows[0].t_ns);
        rc = emit(out, line, width);
    }
    if (rc == 0 && fprintf(out, "%*s'#': inside a call, from its entry to its return\n",
                           g.time_w, "") < 0)
        rc = -EIO;
    if (rc == 0 && has_tcp(ev, n) &&
        fprintf(out, "%*sJ: the client's initial sequence number, K: the server's\n",
                g.time_w, "") < 0)
        rc = -EIO;
    free(rows);
    return rc;
}
