/* svg: the seed's figures (the TCP flow, the UDP flow, the handshake) as SVG and HTML,
 * every bar and arrow drawn from the events, with a legend in the seed's own words. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/err.h"
#include "ladder_int.h"

/* Geometry, in pixels. */
#define FIG_W 1000
#define X_TIME 8
#define X_CTEXT 330
#define X_CLINE 345
#define X_SLINE 645
#define X_STEXT 660
#define Y_ROWS 112
#define ROW_H 28
#define LEGEND_LINE 18

/* One legend entry: what the seed says about a call or a segment. */
typedef struct seed_words {
    const char *key;
    int section;            /* the seed's section, 0: not in the seed */
    const char *zh;         /* the seed's sentence, NULL when it has none */
    const char *en;
} seed_words;

static const seed_words words[] = {
    { "socket", 3, "socket():你有了一部手机。", "socket(): you have a phone." },
    { "bind", 3, "bind():激活SIM卡,手机有了一个电话号码。",
      "bind(): the SIM card is activated: the phone has a number." },
    { "listen", 4, "listen() :使一个绑定的TCP套接字的状态由CLOSE转换成监听(LISTEN),"
      "这样来自客户的外来连接就可在该套接字上由内核接受。",
      "listen(): a bound TCP socket goes from CLOSE to LISTEN, so the kernel accepts "
      "incoming connections on it." },
    { "accept", 4, "通常情况下,服务器进程在accept调用中进入休眠(sleep)状态,等待某个客户连接的到达"
      "并被内核接受。……握手完成时accept返回,其返回值是一个称为“已连接描述符”的新描述符。",
      "The server sleeps in accept() until a connection arrives and the kernel accepts it; "
      "accept returns when the handshake is complete, with a new connected descriptor." },
    { "connect", 4, "connect() :为一个套接字分配一个自由的本地端口号,并试图获得一个新的TCP连接。",
      "connect(): gives the socket a free local port and tries to get a new TCP connection." },
    { "io", 3, "write()/read():通过私有的通信链路,你和对方开始通话。",
      "write()/read(): over the private line, the two of you talk." },
    { "udp_io", 4, "而作为无连接的UDP协议,则不需要上述三个函数。",
      "UDP has no connection and needs none of listen, accept and connect: sendto() and "
      "recvfrom() carry the address with every datagram." },
    { "close", 3, "close():一方挂断了电话,关闭了你们之间的私有通信链路。",
      "close(): one side hangs up, closing the private line between you." },
    { "syn", 7, "TCP连接使用三次握手来建立连接。(§4) TCP三次握手图。(§7)",
      "Handshake segment 1: SYN J, the client's initial sequence number." },
    { "synack", 7, "TCP连接使用三次握手来建立连接。(§4) TCP三次握手图。(§7)",
      "Handshake segment 2: the server's kernel answers SYN K, ACK J+1." },
    { "ack", 7, "TCP三次握手图。",
      "An ACK: ACK K+1 is handshake segment 3, after which accept() can return; later ACKs "
      "acknowledge data." },
    { "data", 3, "write()/read():通过私有的通信链路,你和对方开始通话。",
      "A segment carrying the bytes one write() gave the kernel." },
    { "fin", 3, "close():一方挂断了电话,关闭了你们之间的私有通信链路。",
      "FIN: one side hangs up its direction of the line." },
    { "rst", 0, NULL, "RST: the connection is reset." },
    { "udp", 2, "UDP Client-Server交互流程", "A datagram: no handshake, no connection." },
    { "icmp", 2, "UDP Client-Server交互流程",
      "ICMP port unreachable: no socket is bound to that port." },
    { "other", 0, NULL, "A call the seed does not draw (an option, a probe)." },
};

#define NWORDS (sizeof(words) / sizeof(words[0]))

static const struct { const char *call, *key; } call_keys[] = {
    { "socket", "socket" }, { "bind", "bind" }, { "listen", "listen" },
    { "accept", "accept" }, { "accept4", "accept" }, { "connect", "connect" },
    { "connect-done", "connect" }, { "read", "io" }, { "write", "io" }, { "recv", "io" },
    { "send", "io" }, { "recvfrom", "udp_io" }, { "sendto", "udp_io" },
    { "recvmmsg", "udp_io" }, { "sendmmsg", "udp_io" }, { "recvmsg", "udp_io" },
    { "sendmsg", "udp_io" }, { "close", "close" }, { "shutdown", "close" },
};

static const char *
event_key(const sf_ladder_event *e)
{
    if (e->kind == SF_LADDER_CALL) {
        for (size_t i = 0; i < sizeof(call_keys) / sizeof(call_keys[0]); i++)
            if (strcmp(e->call, call_keys[i].call) == 0)
                return call_keys[i].key;
        return "other";
    }
    if (e->proto == SF_LADDER_UDP)
        return "udp";
    if (e->proto == SF_LADDER_ICMP)
        return "icmp";
    if (e->flags & SF_SEG_SYN)
        return e->flags & SF_SEG_ACK ? "synack" : "syn";
    if (e->flags & SF_SEG_RST)
        return "rst";
    if (e->flags & SF_SEG_FIN)
        return "fin";
    return e->len > 0 ? "data" : "ack";
}

static size_t
word_index(const char *key)
{
    for (size_t i = 0; i < NWORDS; i++)
        if (strcmp(words[i].key, key) == 0)
            return i;
    return NWORDS - 1;
}

/* Legend numbers: entries in the order they first appear in the figure. */
typedef struct legend {
    int num[NWORDS];        /* 1-based number of each entry, 0 when absent */
    size_t order[NWORDS];
    int n;
} legend;

static int
legend_ref(legend *l, const sf_ladder_event *e)
{
    size_t w = word_index(event_key(e));

    if (l->num[w] == 0) {
        l->order[l->n] = w;
        l->num[w] = ++l->n;
    }
    return l->num[w];
}

static void
xml_text(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

static const char *
section_title(int section)
{
    switch (section) {
    case 1: return "1. TCP Client-Server交互流程 — the TCP client-server flow";
    case 2: return "2. UDP Client-Server交互流程 — the UDP client-server flow";
    case 7: return "7. TCP三次握手图(参考《UNIX网络编程卷1:套接字联网API》) — the three-way handshake";
    }
    return "sockflow: calls and segments";
}

static int
row_y(size_t i)
{
    return Y_ROWS + (int)i * ROW_H;
}

static void
svg_head(FILE *out, const sf_ladder_figure *fig, int height, int ybottom)
{
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" class=\"sf-ladder\" data-section=\"%d\">\n",
            FIG_W, height, FIG_W, height, fig->section);
    fprintf(out, "<style>text{font-family:\"DejaVu Sans Mono\",monospace;font-size:12px;"
            "fill:#111}.title{font-size:15px;font-weight:bold}.title,.zh{font-family:"
            "\"WenQuanYi Micro Hei\",\"Noto Sans CJK SC\",\"DejaVu Sans\",sans-serif}"
            ".ref{fill:#a33;font-size:10px}.time{fill:#666}.life{stroke:#888;stroke-width:1.5}"
            ".bar0{fill:#4a7bd0}.bar1{fill:#d08a2a}.seg{stroke:#222;stroke-width:1.5}"
            ".seglabel,.legend{font-weight:bold}</style>\n");
    fprintf(out, "<defs><marker id=\"sf-arrow-%d\" viewBox=\"0 0 10 10\" refX=\"10\" "
            "refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto\">"
            "<path d=\"M0,0 L10,5 L0,10 z\" fill=\"#222\"/></marker></defs>\n", fig->section);
    fprintf(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n");
    fprintf(out, "<text class=\"title\" x=\"%d\" y=\"26\">", X_TIME);
    xml_text(out, fig->title ? fig->title : section_title(fig->section));
    fprintf(out, "</text>\n<text x=\"%d\" y=\"48\" class=\"time\">drawn from a real run: "
            "rows in time order, times in ms since the first event</text>\n", X_TIME);
    fprintf(out, "<text x=\"%d\" y=\"84\" text-anchor=\"middle\" class=\"seglabel\">client"
            "</text><text x=\"%d\" y=\"84\" text-anchor=\"middle\" class=\"seglabel\">server"
            "</text>\n", X_CLINE, X_SLINE);
    fprintf(out, "<line class=\"life\" x1=\"%d\" y1=\"92\" x2=\"%d\" y2=\"%d\"/>"
            "<line class=\"life\" x1=\"%d\" y1=\"92\" x2=\"%d\" y2=\"%d\"/>\n",
            X_CLINE, X_CLINE, ybottom, X_SLINE, X_SLINE, ybottom);
}

/* A call's bar: from its entry row to its return row; a short one for a call with
 * nothing inside. */
static void
svg_bar(FILE *out, const sf__ladder_row *r, size_t i, const sf_ladder_event *e)
{
    int x = e->side == SF_LADDER_CLIENT ? X_CLINE : X_SLINE;
    int y0 = row_y(i) - 5, h = 10;

    if (r->kind == SF__ROW_ENTRY)
        h = row_y(r->pair) - row_y(i) + 10;
    fprintf(out, "<rect class=\"bar%d\" x=\"%d\" y=\"%d\" width=\"10\" height=\"%d\">"
            "<title>", e->side, x - 5, y0, h);
    xml_text(out, e->call);
    fprintf(out, ": %.3f ms inside the call</title></rect>\n",
            (double)(e->t_end_ns - e->t_ns) / 1e6);
}

static void
svg_call(FILE *out, const sf__ladder_row *r, size_t i, const sf_ladder_event *e, int ref)
{
    char text[160];
    int client = e->side == SF_LADDER_CLIENT;

    if (r->kind != SF__ROW_RETURN)
        svg_bar(out, r, i, e);
    sf__ladder_call_text(e, r->kind, text, sizeof(text));
    fprintf(out, "<text class=\"call\" x=\"%d\" y=\"%d\" text-anchor=\"%s\">",
            client ? X_CTEXT : X_STEXT, row_y(i) + 4, client ? "end" : "start");
    xml_text(out, text);
    fprintf(out, "<tspan class=\"ref\" dy=\"-4\"> [%d]</tspan></text>\n", ref);
}

static void
svg_segment(FILE *out, size_t i, const sf_ladder_event *e, int ref, int section)
{
    int from = e->side == SF_LADDER_CLIENT ? X_CLINE + 6 : X_SLINE - 6;
    int to = e->side == SF_LADDER_CLIENT ? X_SLINE - 6 : X_CLINE + 6;
    char label[96];

    sf_ladder_seg_label(e, label, sizeof(label));
    /* Sloped downwards like the textbook's figure: a segment takes time to arrive. */
    fprintf(out, "<line class=\"seg\" x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
            "marker-end=\"url(#sf-arrow-%d)\"/>\n", from, row_y(i) - 4, to, row_y(i) + 6,
            section);
    fprintf(out, "<text class=\"seglabel\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
            (X_CLINE + X_SLINE) / 2, row_y(i) - 6);
    xml_text(out, label);
    fprintf(out, "<tspan class=\"ref\" dy=\"-4\"> [%d]</tspan></text>\n", ref);
}

/* Bytes of s that fit in cols columns (a CJK character takes two), broken at a space
 * where one falls in the second half of the line. */
static size_t
line_bytes(const char *s, int cols)
{
    size_t i = 0, space = 0;
    int w = 0;

    while (s[i]) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        int cw = len >= 3 ? 2 : 1;

        if (w + cw > cols)
            break;
        if (c == ' ')
            space = i;
        w += cw;
        i += len;
    }
    if (s[i] && space > i / 2)
        return space;
    return i;
}

/* Write text as lines of at most LEGEND_COLS columns from (x, y), one LEGEND_LINE
 * apart (out NULL: only count them). Returns the lines used. */
#define LEGEND_COLS 124

static int
wrapped(FILE *out, const char *cls, int x, int y, const char *prefix, const char *text)
{
    char line[512];
    int lines = 0;

    while (*text || lines == 0) {
        size_t n;

        snprintf(line, sizeof(line), "%s", lines == 0 ? prefix : "");
        n = line_bytes(text, LEGEND_COLS - (int)strlen(line));
        if (n == 0 && *text)
            n = 1;
        if (out) {
            fprintf(out, "<text class=\"%s\" x=\"%d\" y=\"%d\">", cls, x,
                    y + lines * LEGEND_LINE);
            xml_text(out, line);
            snprintf(line, sizeof(line), "%.*s", (int)n, text);
            xml_text(out, line);
            fprintf(out, "</text>\n");
        }
        text += n;
        while (*text == ' ')
            text++;
        lines++;
    }
    return lines;
}

/* One numbered entry: the seed's sentence, then the English gloss. Returns lines used. */
static int
legend_entry(FILE *out, int k, const seed_words *w, int y)
{
    char prefix[32];
    int lines;

    if (w->zh)
        snprintf(prefix, sizeof(prefix), "[%d] §%d ", k, w->section);
    else
        snprintf(prefix, sizeof(prefix), "[%d] ", k);
    lines = wrapped(out, "zh", X_TIME, y, prefix, w->zh ? w->zh : "(not in the seed)");
    return lines + wrapped(out, "en", X_TIME + 28, y + lines * LEGEND_LINE, "", w->en);
}

/* The legend's height in lines, the heading and the bar's line included. */
static int
legend_lines(const legend *l)
{
    int lines = 2;

    for (int k = 0; k < l->n; k++)
        lines += legend_entry(NULL, k + 1, &words[l->order[k]], 0);
    return lines;
}

static void
svg_legend(FILE *out, const legend *l, int y)
{
    fprintf(out, "<text class=\"legend\" x=\"%d\" y=\"%d\">Legend: the seed's words for "
            "each numbered call and segment</text>\n", X_TIME, y);
    y += LEGEND_LINE;
    fprintf(out, "<rect class=\"bar0\" x=\"%d\" y=\"%d\" width=\"10\" height=\"12\"/>"
            "<rect class=\"bar1\" x=\"%d\" y=\"%d\" width=\"10\" height=\"12\"/>"
            "<text x=\"%d\" y=\"%d\">a bar: the time spent inside a call, from its entry to "
            "its return (client blue, server orange)</text>\n",
            X_TIME, y - 10, X_TIME + 12, y - 10, X_TIME + 28, y);
    for (int k = 0; k < l->n; k++) {
        y += LEGEND_LINE;
        y += (legend_entry(out, k + 1, &words[l->order[k]], y) - 1) * LEGEND_LINE;
    }
}

static void
svg_rows(FILE *out, const sf_ladder_figure *fig, const sf__ladder_row *rows, size_t nr,
         legend *l)
{
    for (size_t i = 0; i < nr; i++) {
        const sf_ladder_event *e = &fig->ev[rows[i].ev];
        int ref = legend_ref(l, e);

        fprintf(out, "<text class=\"time\" x=\"%d\" y=\"%d\">%.3f</text>\n", X_TIME,
                row_y(i) + 4, (double)(rows[i].t_ns - rows[0].t_ns) / 1e6);
        if (rows[i].kind == SF__ROW_SEG)
            svg_segment(out, i, e, ref, fig->section);
        else
            svg_call(out, &rows[i], i, e, ref);
    }
}

int
sf_ladder_svg(FILE *out, const sf_ladder_figure *fig)
{
    sf__ladder_row *rows;
    size_t nr;
    legend l;
    int rc, ybottom, height;

    if (fig == NULL || (fig->ev == NULL && fig->n > 0))
        return SF_EUSAGE;
    if ((rc = sf__ladder_rows(fig->ev, fig->n, &rows, &nr)) < 0)
        return rc;
    memset(&l, 0, sizeof(l));
    /* The legend's length is known only after the rows have been numbered. */
    for (size_t i = 0; i < nr; i++)
        legend_ref(&l, &fig->ev[rows[i].ev]);
    ybottom = row_y(nr) - ROW_H / 2;
    height = ybottom + 30 + legend_lines(&l) * LEGEND_LINE + 10;
    svg_head(out, fig, height, ybottom);
    memset(&l, 0, sizeof(l));
    svg_rows(out, fig, rows, nr, &l);
    svg_legend(out, &l, ybottom + 30);
    fprintf(out, "</svg>\n");
    free(rows);
    return ferror(out) ? -EIO : 0;
}

int
sf_ladder_html(FILE *out, const char *title, const sf_ladder_figure *figs, size_t n)
{
    int rc;

    if (figs == NULL && n > 0)
        return SF_EUSAGE;
    if (title == NULL)
        title = "sockflow: the seed's figures, drawn from a real run";
    fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>");
    xml_text(out, title);
    fprintf(out, "</title>\n<style>body{margin:16px;background:#fff;font-family:sans-serif}"
            "figure{margin:0 0 24px 0}figcaption{font-size:13px;color:#444}</style>\n"
            "</head>\n<body>\n<h1>");
    xml_text(out, title);
    fprintf(out, "</h1>\n");
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "<figure id=\"section-%d\">\n", figs[i].section);
        if ((rc = sf_ladder_svg(out, &figs[i])) < 0)
            return rc;
        fprintf(out, "<figcaption>");
        xml_text(out, figs[i].title ? figs[i].title : section_title(figs[i].section));
        fprintf(out, "</figcaption>\n</figure>\n");
    }
    fprintf(out, "</body>\n</html>\n");
    return ferror(out) ? -EIO : 0;
}
