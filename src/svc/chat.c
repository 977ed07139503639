/* chat: a line relay. Every line a member sends goes to every other member, prefixed
 * "<name> " once per line (not once per read), terminal controls shown, not obeyed; joins,
 * leaves and renames are announced. A member that does not read is dropped at its queue
 * cap; the others lose nothing. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sockflow/svc.h"

#define NAME_MAX_LEN 32

typedef struct member {
    sf_conn *c;
    struct member *prev, *next;
    char name[NAME_MAX_LEN + 1];
    char *frag;             /* a line begun and not ended, SF_CHAT_LINE_MAX bytes */
    size_t fraglen;
    int in_room;
} member;

typedef struct room {
    member *head;
    int count;
    unsigned long next_number;  /* of the next automatic name, userN */
    /* "<name> " line, as rendered, "\r\n" */
    char out[NAME_MAX_LEN + 3 + SF_CHAT_RENDER_MAX(SF_CHAT_LINE_MAX) + 2];
} room;

/* Send to one member; a member whose queue is full is not reading: drop it (the close
 * is deferred until the running callbacks return, so walking the room stays safe). */
static void
tell(member *m, const char *p, size_t len)
{
    int rc = sf_conn_send(m->c, p, len);

    /* -EPIPE: already closed or finishing (out of the room); nothing was lost then. */
    if (rc < 0 && rc != -EPIPE)
        sf_conn_close(m->c, rc == -ENOBUFS ? "not reading: dropped at the queue cap"
                                           : sf_strerror(rc));
}

static void
tell_others(room *r, member *from, const char *p, size_t len)
{
    for (member *m = r->head; m; m = m->next)
        if (m != from)
            tell(m, p, len);
}

/* printf to one member (to), or to every member but except (to NULL). */
static void __attribute__((format(printf, 4, 5)))
tellf(room *r, member *to, member *except, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    if (to)
        tell(to, line, (size_t)n);
    else
        tell_others(r, except, line, (size_t)n);
}

/* Whether a member other than self is called name (letter case aside: "Alice" would
 * pass for "alice"). */
static int
name_taken(const room *r, const member *self, const char *name, size_t n)
{
    for (const member *o = r->head; o; o = o->next)
        if (o != self && strlen(o->name) == n && strncasecmp(o->name, name, n) == 0)
            return 1;
    return 0;
}

/* "user" and digits, in any case: the names handed out automatically, now or later. */
static int
name_automatic(const char *s, size_t n)
{
    if (n <= 4 || strncasecmp(s, "user", 4) != 0)
        return 0;
    for (size_t i = 4; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static void
chat_open(sf_conn *c)
{
    room *r = sf_conn_state(c);
    member *m = sf_conn_data(c);
    int rc = sf_conn_watch_peer(c);

    if (rc < 0) {
        sf_conn_close(c, sf_strerror(rc));
        return;
    }
    m->c = c;
    /* Numbered in this room; /nick refuses these names, so none is ever taken. */
    do
        snprintf(m->name, sizeof(m->name), "user%lu", ++r->next_number);
    while (name_taken(r, m, m->name, strlen(m->name)));
    m->next = r->head;
    if (r->head)
        r->head->prev = m;
    r->head = m;
    r->count++;
    m->in_room = 1;
    tellf(r, m, NULL, "* you are %s, %d other%s here; /nick NAME to rename\n",
          m->name, r->count - 1, r->count == 2 ? "" : "s");
    tellf(r, NULL, m, "* %s joined\n", m->name);
}

/* Out of the room at once (its connection may linger a while finishing): nothing more
 * is relayed to or from it, and the others hear it left. */
static void
leave_room(room *r, member *m)
{
    if (!m->in_room)
        return;
    m->in_room = 0;
    if (m->prev)
        m->prev->next = m->next;
    else
        r->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    r->count--;
    tellf(r, NULL, NULL, "* %s left\n", m->name);
}

static void
chat_close(sf_conn *c)
{
    member *m = sf_conn_data(c);

    free(m->frag);
    leave_room(sf_conn_state(c), m);
}

static int
name_ok(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

static void
rename_member(room *r, member *m, const char *s, size_t n)
{
    char old[sizeof(m->name)];

    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    while (n > 0 && s[0] == ' ')
        s++, n--;
    if (!name_ok(s, n)) {
        tellf(r, m, NULL, "* error: a name is 1 to %d printable characters, no spaces\n",
              NAME_MAX_LEN);
        return;
    }
    if (strlen(m->name) == n && memcmp(m->name, s, n) == 0) {
        tellf(r, m, NULL, "* you are %s already\n", m->name);
        return;
    }
    if (name_automatic(s, n)) {
        tellf(r, m, NULL, "* error: user1, user2, ... are handed out automatically\n");
        return;
    }
    if (name_taken(r, m, s, n)) {
        tellf(r, m, NULL, "* error: %.*s is taken\n", (int)n, s);
        return;
    }
    memcpy(old, m->name, sizeof(old));
    memcpy(m->name, s, n);
    m->name[n] = '\0';
    tellf(r, NULL, m, "* %s is now %s\n", old, m->name);
    tellf(r, m, NULL, "* you are now %s\n", m->name);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlong form, no surrogate,
 * nothing above U+10FFFF), its code point in *cp; 0 if p does not start one. */
static size_t
utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
    static const uint32_t least[] = { 0, 0, 0x80, 0x800, 0x10000 };
    size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
    uint32_t v;

    if (len == 0 || p[0] > 0xf4 || len > n)
        return 0;
    v = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < least[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* "\\x9b" or "\\u009b": v in hex, digits wide, after a backslash and letter. */
static size_t
put_escape(char *out, char letter, unsigned v, int digits)
{
    static const char hex[] = "0123456789abcdef";

    out[0] = '\\';
    out[1] = letter;
    for (int k = 0; k < digits; k++)
        out[2 + k] = hex[(v >> (4 * (digits - 1 - k))) & 0xf];
    return 2 + (size_t)digits;
}

/* Controls made visible so that no member can move the others' cursor, erase what they
 * see, set their title or forge a line. */
size_t
sf_chat_render(char *out, const char *line, size_t n)
{
    const unsigned char *p = (const unsigned char *)line;
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len;

        if (p[i] < 0x20 && p[i] != '\t') {
            out[o++] = '^';
            out[o++] = (char)(p[i++] + 0x40);
        } else if (p[i] == 0x7f) {
            out[o++] = '^';
            out[o++] = '?';
            i++;
        } else if (p[i] < 0x80) {
            out[o++] = (char)p[i++];
        } else if ((len = utf8_seq(p + i, n - i, &cp)) > 0) {
            if (cp < 0xa0)
                o += put_escape(out + o, 'u', cp, 4);
            else
                memcpy(out + o, p + i, len), o += len;
            i += len;
        } else if (p[i] < 0xa0) {
            o += put_escape(out + o, 'x', p[i++], 2);
        } else {
            out[o++] = (char)p[i++];    /* not UTF-8, yet no control anywhere (Latin-1) */
        }
    }
    return o;
}

/* One whole line (without its '\n'): a command, or relayed to the others. */
static void
handle_line(room *r, member *m, const char *line, size_t n)
{
    size_t o;
    int crlf = n > 0 && line[n - 1] == '\r';   /* a CRLF ending stays one */

    if (n >= 5 && memcmp(line, "/nick", 5) == 0 && (n == 5 || line[5] == ' ' || line[5] == '\r')) {
        rename_member(r, m, line + 5, n - 5);
        return;
    }
    o = (size_t)snprintf(r->out, sizeof(r->out), "<%s> ", m->name);
    o += sf_chat_render(r->out + o, line, n - (size_t)crlf);
    if (crlf)
        r->out[o++] = '\r';
    r->out[o++] = '\n';
    tell_others(r, m, r->out, o);
}

static void
too_long(sf_conn *c)
{
    static const char msg[] = "* error: line longer than 4096 bytes; closing\n";

    /* The fragment is never relayed; the error is flushed, then FIN. */
    sf_conn_expect_input(c, 0);
    leave_room(sf_conn_state(c), sf_conn_data(c));
    if (sf_conn_send(c, msg, sizeof(msg) - 1) == 0)
        sf_conn_finish(c);
    else
        sf_conn_close(c, "line too long");
}

static void
chat_data(sf_conn *c, char *data, size_t len)
{
    room *r = sf_conn_state(c);
    member *m = sf_conn_data(c);

    if (!m->in_room)
        return;
    while (len > 0) {
        char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;    /* bytes of line content here */

        if (m->fraglen + n > SF_CHAT_LINE_MAX) {
            m->fraglen = 0;
            too_long(c);
            return;
        }
        if (nl == NULL || m->fraglen > 0) {
            if (m->frag == NULL && (m->frag = malloc(SF_CHAT_LINE_MAX)) == NULL) {
                sf_conn_close(c, "out of memory");
                return;
            }
            memcpy(m->frag + m->fraglen, data, n);
            m->fraglen += n;
            if (nl == NULL) {
                /* A line begun must end within the idle timeout, however slowly its
                 * bytes trickle in: else it would hold the member and its fragment. */
                sf_conn_expect_input(c, 1);
                return;
            }
            handle_line(r, m, m->frag, m->fraglen);
            m->fraglen = 0;
        } else {
            handle_line(r, m, data, n);
        }
        data += n + 1;
        len -= n + 1;
    }
    /* Between lines: give the fragment buffer back while the member idles. */
    free(m->frag);
    m->frag = NULL;
    sf_conn_expect_input(c, 0);
}

/* The client has closed its side: a last line without '\n' still counts. */
static void
chat_eof(sf_conn *c)
{
    member *m = sf_conn_data(c);

    if (m->fraglen > 0 && m->in_room)
        handle_line(sf_conn_state(c), m, m->frag, m->fraglen);
    m->fraglen = 0;
    sf_conn_expect_input(c, 0);
    leave_room(sf_conn_state(c), m);
    sf_conn_finish(c);
}

static void *
chat_state_new(void)
{
    return calloc(1, sizeof(room));
}

const sf_service sf_svc_chat = {
    .name = "chat",
    .port = 0,
    .protos = SF_PROTO_TCP,
    .one_loop = 1,
    .conn_size = sizeof(member),
    .state_new = chat_state_new,
    .state_free = free,
    .on_open = chat_open,
    .on_data = chat_data,
    .on_eof = chat_eof,
    .on_close = chat_close,
};
