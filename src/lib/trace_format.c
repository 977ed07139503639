/* trace_format: events written for people and programs: one aligned text line (with
 * the explainer's sentence and a hex dump when asked) or one JSON object, and the FILE
 * sink that writes each entry whole. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/err.h"
#include "trace_int.h"

void
sf__put(sf__cursor *o, const char *fmt, ...)
{
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(room ? o->p + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

/* sf__put, returning the display columns it added (the whole text, even if cut). */
size_t
sf__put_len(sf__cursor *o, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sf__put(o, "%s", tmp);
    return (size_t)sf_text_width(tmp);
}

static void
put_json_str(sf__cursor *o, const char *s)
{
    if (s == NULL) {
        sf__put(o, "null");
        return;
    }
    sf__put(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            sf__put(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            sf__put(o, "\\u%04x", c);
        else
            sf__put(o, "%c", c);
    }
    sf__put(o, "\"");
}

static void
put_result(sf__cursor *o, const sf_trace_event *ev)
{
    if (ev->result < 0 && ev->err)
        sf__put(o, "%ld %s", ev->result, sf_errname(-ev->err));
    else
        sf__put(o, "%ld", ev->result);
}

static void
put_hexdump(sf__cursor *o, const sf_trace_event *ev, const char *indent)
{
    const unsigned char *d = ev->data;
    size_t n = ev->datalen < SF_TRACE_DATA_MAX ? ev->datalen : SF_TRACE_DATA_MAX;

    for (size_t off = 0; off < n; off += 16) {
        size_t k = n - off < 16 ? n - off : 16;

        sf__put(o, "%s%04zx ", indent, off);
        for (size_t i = 0; i < 16; i++) {
            if (i < k)
                sf__put(o, " %02x", d[off + i]);
            else
                sf__put(o, "   ");
        }
        sf__put(o, "  ");
        for (size_t i = 0; i < k; i++)
            sf__put(o, "%c", d[off + i] >= 0x20 && d[off + i] < 0x7f ? d[off + i] : '.');
        sf__put(o, "\n");
    }
    if (ev->datalen > n)
        sf__put(o, "%s(%zu more bytes not shown)\n", indent, ev->datalen - n);
}

/* ---- lines that fit a terminal ---- */

/* Display columns and byte length of the UTF-8 character at p: CJK and other wide
 * characters take two columns. */
static int
glyph(const char *p, int *len)
{
    const unsigned char *u = (const unsigned char *)p;
    unsigned cp;

    if (u[0] < 0x80) {
        *len = 1;
        return 1;
    }
    if ((u[0] & 0xe0) == 0xc0 && u[1]) {
        *len = 2;
        return 1;
    }
    if ((u[0] & 0xf0) == 0xe0 && u[1] && u[2]) {
        *len = 3;
        cp = (u[0] & 0x0fu) << 12 | (u[1] & 0x3fu) << 6 | (u[2] & 0x3fu);
        return cp >= 0x1100 ? 2 : 1;
    }
    *len = (u[0] & 0xf8) == 0xf0 && u[1] && u[2] && u[3] ? 4 : 1;
    return *len == 4 ? 2 : 1;
}

/* Wide punctuation that must not begin a line: ，。、；：）！？」” */
static int
closing(const char *p)
{
    static const char *const marks[] = {
        "\xef\xbc\x8c", "\xe3\x80\x82", "\xe3\x80\x81", "\xef\xbc\x9b", "\xef\xbc\x9a",
        "\xef\xbc\x89", "\xef\xbc\x81", "\xef\xbc\x9f", "\xe3\x80\x8d", "\xe2\x80\x9d",
    };

    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++)
        if (strncmp(p, marks[i], 3) == 0)
            return 1;
    return 0;
}

/* The next piece a line may break after: a word of narrow characters, or one wide
 * character, either with the closing punctuation that follows it; or a run of spaces.
 * Returns its byte length; *cols its width. */
static int
piece(const char *p, int *cols)
{
    int n = 0, len, w;

    *cols = 0;
    if (*p == ' ') {
        while (p[n] == ' ')
            n++;
        *cols = n;
        return n;
    }
    w = glyph(p, &len);
    if (w == 2) {
        n = len;
        *cols = 2;
    } else {
        while (p[n] && p[n] != ' ' && (w = glyph(p + n, &len)) == 1) {
            n += len;
            *cols += 1;
        }
    }
    while (closing(p + n)) {
        n += 3;
        *cols += 2;
    }
    return n;
}

int
sf_text_width(const char *s)
{
    int cols = 0, len;

    for (; *s; s += len)
        cols += glyph(s, &len);
    return cols;
}

void
sf__put_wrapped(sf__cursor *o, const char *text, int col, const char *indent, int width)
{
    int ind = sf_text_width(indent), cols, more, words = 0;
    const char *p = text;

    while (*p) {
        int n = piece(p, &cols);

        if (*p == ' ') {
            const char *q = p + n;

            if (*q == '\0')
                break;                      /* trailing spaces are dropped */
            piece(q, &more);
            if (words && col + cols + more > width) {
                sf__put(o, "\n%s", indent);
                col = ind;
                words = 0;
            } else {
                sf__put(o, "%.*s", n, p);
                col += cols;
            }
            p = q;
            continue;
        }
        if (words && col + cols > width) {  /* between two wide characters */
            sf__put(o, "\n%s", indent);
            col = ind;
            words = 0;
        }
        sf__put(o, "%.*s", n, p);
        col += cols;
        words++;
        p += n;
    }
}

size_t
sf_text_wrap(const char *text, const char *first, const char *cont, int width, char *buf,
             size_t cap)
{
    sf__cursor o = { buf, cap, 0, SF_LANG_EN };

    if (cap)
        buf[0] = '\0';
    sf__put(&o, "%s", first);
    sf__put_wrapped(&o, text, sf_text_width(first), cont, width);
    return o.len;
}

static void
who_of(const sf_trace_event *ev, char *who, size_t len)
{
    if (ev->id)
        snprintf(who, len, "%s#%lu", ev->side, ev->id);
    else
        snprintf(who, len, "%s", ev->side);
}

/* The 80-column line: "0.300512 server   accept4(3, peer=127.0.0.1:40000) = 4" and the
 * state at column 61, or on a line of its own when the call is long; the explanation
 * wrapped under it. No RTT. */
static void
format_narrow(sf__cursor *o, const sf_trace_event *ev, unsigned flags, uint64_t t0_ns)
{
    char who[48], call[400], res[32], state[48] = "";
    double t = ev->t_ns >= t0_ns ? (double)(ev->t_ns - t0_ns) / 1e9 : 0.0;
    sf__cursor c = { call, sizeof(call), 0, SF_LANG_EN }, r = { res, sizeof(res), 0, SF_LANG_EN };
    int fd_arg = ev->fd >= 0 && ev->call != SF_CALL_SOCKET, width;

    who_of(ev, who, sizeof(who));
    sf__put(&c, "%s(", sf_call_name(ev->call));
    if (fd_arg)
        sf__put(&c, "%d%s", ev->fd, ev->args[0] ? ", " : "");
    sf__put(&c, "%s)", ev->args);
    if (ev->phase == SF_TRACE_ENTRY)
        sf__put(&r, "...");
    else
        put_result(&r, ev);
    if (ev->proto && ev->tcp_state != SF_TCP_NONE)
        snprintf(state, sizeof(state), "%s", sf_tcp_state_name(ev->tcp_state));
    if (ev->accept_queue >= 0)
        snprintf(state + strlen(state), sizeof(state) - strlen(state), " queue=%d",
                 ev->accept_queue);
    width = (int)sf__put_len(o, "%9.6f %-8s %s = %s", t, who, call, res);
    if (state[0] && width > 60)
        sf__put(o, "\n%60s", "");
    else if (state[0])
        sf__put(o, "%*s", 60 - width, "");
    sf__put(o, "%s%s\n", state[0] ? " " : "", state);
    if (flags & SF_TRACE_F_EXPLAIN) {
        char why[1024];
        sf__cursor x = { why, sizeof(why), 0, SF_LANG_EN };

        x.lang = o->lang;
        sf__explain(&x, ev);
        sf__put(o, "    > ");
        sf__put_wrapped(o, why, 6, "      ", 79);
        sf__put(o, "\n");
    }
    if ((flags & SF_TRACE_F_DATA) && ev->data && ev->datalen)
        put_hexdump(o, ev, "      ");
}

static void
format_text(sf__cursor *o, const sf_trace_event *ev, unsigned flags, uint64_t t0_ns)
{
    char who[48], fd[16], res[32], extra[64] = "";
    double t = ev->t_ns >= t0_ns ? (double)(ev->t_ns - t0_ns) / 1e9 : 0.0;
    sf__cursor r = { res, sizeof(res), 0, SF_LANG_EN };
    static const char indent[] = "                 ";

    if (flags & SF_TRACE_F_NARROW) {
        format_narrow(o, ev, flags, t0_ns);
        return;
    }
    who_of(ev, who, sizeof(who));
    if (ev->fd >= 0)
        snprintf(fd, sizeof(fd), "fd=%d", ev->fd);
    else
        snprintf(fd, sizeof(fd), "-");
    if (ev->phase == SF_TRACE_ENTRY)
        sf__put(&r, "...");
    else
        put_result(&r, ev);
    if (ev->tcp_state == SF_TCP_ESTABLISHED && ev->rtt_us)
        snprintf(extra, sizeof(extra), " rtt=%uus", ev->rtt_us);
    else if (ev->accept_queue >= 0)
        snprintf(extra, sizeof(extra), " queue=%d", ev->accept_queue);
    sf__put(o, "%10.6f %-10s %-12s %-6s %-36s = %-16s %s%s\n", t, who, sf_call_name(ev->call),
            fd, ev->args, res, ev->proto ? sf_tcp_state_name(ev->tcp_state) : "-", extra);
    if (flags & SF_TRACE_F_EXPLAIN) {
        sf__put(o, "%s> ", indent);
        sf__explain(o, ev);
        sf__put(o, "\n");
    }
    if ((flags & SF_TRACE_F_DATA) && ev->data && ev->datalen)
        put_hexdump(o, ev, indent);
}

static void
format_json(sf__cursor *o, const sf_trace_event *ev, unsigned flags)
{
    sf__put(o, "{\"event\":\"call\",\"t_ns\":%llu,\"side\":", (unsigned long long)ev->t_ns);
    put_json_str(o, ev->side);
    sf__put(o, ",\"id\":%lu,\"call\":", ev->id);
    put_json_str(o, sf_call_name(ev->call));
    if (ev->phase == SF_TRACE_ENTRY)
        sf__put(o, ",\"phase\":\"entry\"");
    sf__put(o, ",\"fd\":%d,\"args\":", ev->fd);
    put_json_str(o, ev->args);
    sf__put(o, ",\"result\":%ld,\"errno\":", ev->result);
    put_json_str(o, ev->result < 0 && ev->err ? sf_errname(-ev->err) : NULL);
    sf__put(o, ",\"proto\":");
    put_json_str(o, ev->proto);
    sf__put(o, ",\"state\":");
    put_json_str(o, ev->proto && ev->tcp_state != SF_TCP_NONE
                        ? sf_tcp_state_name(ev->tcp_state) : NULL);
    if (ev->tcp_state_before != SF_TCP_NONE) {
        sf__put(o, ",\"state_before\":");
        put_json_str(o, sf_tcp_state_name(ev->tcp_state_before));
    }
    if (ev->tcp_state == SF_TCP_ESTABLISHED)
        sf__put(o, ",\"rtt_us\":%u", ev->rtt_us);
    if (ev->accept_queue >= 0)
        sf__put(o, ",\"accept_queue\":%d", ev->accept_queue);
    sf__put(o, ",\"local\":");
    put_json_str(o, ev->local);
    sf__put(o, ",\"peer\":");
    put_json_str(o, ev->peer);
    if ((flags & SF_TRACE_F_DATA) && ev->data && ev->datalen) {
        size_t n = ev->datalen < SF_TRACE_DATA_MAX ? ev->datalen : SF_TRACE_DATA_MAX;

        sf__put(o, ",\"data\":\"");
        for (size_t i = 0; i < n; i++)
            sf__put(o, "%02x", ((const unsigned char *)ev->data)[i]);
        sf__put(o, "\",\"data_len\":%zu", ev->datalen);
    }
    if (flags & SF_TRACE_F_EXPLAIN) {
        char why[1024];

        sf__put(o, ",\"explain\":");
        put_json_str(o, sf_trace_explain_in(ev, o->lang, why, sizeof(why)));
    }
    sf__put(o, "}\n");
}

size_t
sf_trace_format(const sf_trace_event *ev, int format, unsigned flags, uint64_t t0_ns,
                char *buf, size_t cap)
{
    sf__cursor o = { buf, cap, 0, flags & SF_TRACE_F_ZH ? SF_LANG_ZH : SF_LANG_EN };

    if (cap)
        buf[0] = '\0';
    if (format == SF_TRACE_JSON)
        format_json(&o, ev, flags);
    else
        format_text(&o, ev, flags, t0_ns);
    return o.len;
}

/* ---- segments from a capture ---- */

/* tcpdump's notation: S F R P, then "." for ACK; "[.]" for a bare ACK. */
static void
put_seg_flags(sf__cursor *o, unsigned f)
{
    static const struct { unsigned bit; char c; } order[] = {
        { SF_SEG_SYN, 'S' }, { SF_SEG_FIN, 'F' }, { SF_SEG_RST, 'R' }, { SF_SEG_PSH, 'P' },
        { SF_SEG_ACK, '.' },
    };

    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
        if (f & order[i].bit)
            sf__put(o, "%c", order[i].c);
}

size_t
sf_trace_format_segment(const sf_trace_segment *sg, int format, uint64_t t0_ns, char *buf,
                        size_t cap)
{
    sf__cursor o = { buf, cap, 0, SF_LANG_EN };
    char flags[8], route[2 * SF_ADDR_STRLEN + 4];
    sf__cursor f = { flags, sizeof(flags), 0, SF_LANG_EN };
    double t = sg->t_ns >= t0_ns ? (double)(sg->t_ns - t0_ns) / 1e9 : 0.0;

    if (cap)
        buf[0] = '\0';
    flags[0] = '\0';
    sf__put(&f, "[");
    put_seg_flags(&f, sg->flags);
    sf__put(&f, "]");
    if (format == SF_TRACE_JSON) {
        sf__put(&o, "{\"event\":\"segment\",\"t_ns\":%llu,\"src\":",
                (unsigned long long)sg->t_ns);
        put_json_str(&o, sg->src);
        sf__put(&o, ",\"dst\":");
        put_json_str(&o, sg->dst);
        /* the flags without the brackets: "S." */
        flags[f.len - 1] = '\0';
        sf__put(&o, ",\"flags\":\"%s\",\"seq\":%u,\"ack\":%u,\"win\":%u,\"len\":%u}\n",
                flags + 1, sg->seq, sg->ack, sg->win, sg->len);
        return o.len;
    }
    snprintf(route, sizeof(route), "%s > %s", sg->src ? sg->src : "-", sg->dst ? sg->dst : "-");
    sf__put(&o, "%10.6f %-10s %-12s %-6s %-36s   seq=%u ack=%u win=%u len=%u\n", t, "wire",
            flags, "-", route, sg->seq, sg->ack, sg->win, sg->len);
    return o.len;
}

void
sf_trace_segment_emit(const sf_tracer *tr, const sf_trace_segment *sg)
{
    if (tr && tr->segment)
        tr->segment(tr->ud, sg);
}

/* ---- the FILE sink ---- */

static void
write_entry(FILE *f, const char *p, size_t len)
{
    /* One fwrite under the FILE's lock, flushed: whole entries, whatever the thread. */
    flockfile(f);
    fwrite(p, 1, len, f);
    fflush(f);
    funlockfile(f);
}

static void
sink_event(void *ud, const sf_trace_event *ev)
{
    sf_trace_sink *s = ud;
    char small[1024], *big;
    size_t n;

    n = sf_trace_format(ev, s->format, s->flags, s->t0_ns, small, sizeof(small));
    if (n < sizeof(small)) {
        write_entry(s->out, small, n);
        return;
    }
    big = malloc(n + 1);
    if (big == NULL) {
        write_entry(s->out, small, sizeof(small) - 1);
        return;
    }
    sf_trace_format(ev, s->format, s->flags, s->t0_ns, big, n + 1);
    write_entry(s->out, big, n);
    free(big);
}

static void
sink_segment(void *ud, const sf_trace_segment *sg)
{
    sf_trace_sink *s = ud;
    char line[512];
    size_t n = sf_trace_format_segment(sg, s->format, s->t0_ns, line, sizeof(line));

    write_entry(s->out, line, n < sizeof(line) ? n : sizeof(line) - 1);
}

void
sf_trace_sink_init(sf_trace_sink *s, FILE *out, int format, unsigned flags)
{
    s->tracer.fn = sink_event;
    s->tracer.segment = sink_segment;
    s->tracer.ud = s;
    s->tracer.with_data = (flags & SF_TRACE_F_DATA) != 0;
    s->out = out;
    s->format = format;
    s->flags = flags;
    s->t0_ns = sf_now_ns();
}

void
sf_trace_sink_note(sf_trace_sink *s, const char *kind, const char *fmt, ...)
{
    char text[1024], line[8192];
    sf__cursor o = { line, sizeof(line), 0, SF_LANG_EN };
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (s->format == SF_TRACE_JSON) {
        sf__put(&o, "{\"event\":");
        put_json_str(&o, kind);
        sf__put(&o, ",\"t_ns\":%llu,\"text\":", (unsigned long long)sf_now_ns());
        put_json_str(&o, text);
        sf__put(&o, "}\n");
    } else {
        sf__put(&o, "%s\n", text);
    }
    if (o.len >= sizeof(line))
        o.len = sizeof(line) - 1;
    write_entry(s->out, line, o.len);
}
