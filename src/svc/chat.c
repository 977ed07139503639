/* chat: a line relay. Every line a member sends goes to every other member, prefixed
 * "<name> " once per line (not once per read); joins, leaves and renames are announced.
 * A member that does not read is dropped at its queue cap; the others lose nothing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char out[NAME_MAX_LEN + 3 + SF_CHAT_LINE_MAX + 1];   /* "<name> " line "\n" */
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

static void
chat_open(sf_conn *c)
{
    room *r = sf_conn_state(c);
    member *m = sf_conn_data(c);

    m->c = c;
    snprintf(m->name, sizeof(m->name), "user%lu", sf_conn_id(c));
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
    for (member *o = r->head; o; o = o->next) {
        if (o != m && strlen(o->name) == n && memcmp(o->name, s, n) == 0) {
            tellf(r, m, NULL, "* error: %.*s is taken\n", (int)n, s);
            return;
        }
    }
    memcpy(old, m->name, sizeof(old));
    memcpy(m->name, s, n);
    m->name[n] = '\0';
    tellf(r, NULL, m, "* %s is now %s\n", old, m->name);
    tellf(r, m, NULL, "* you are now %s\n", m->name);
}

/* One whole line (without its '\n'): a command, or relayed to the others. */
static void
handle_line(room *r, member *m, const char *line, size_t n)
{
    size_t pre;

    if (n >= 5 && memcmp(line, "/nick", 5) == 0 && (n == 5 || line[5] == ' ' || line[5] == '\r')) {
        rename_member(r, m, line + 5, n - 5);
        return;
    }
    pre = (size_t)snprintf(r->out, sizeof(r->out), "<%s> ", m->name);
    memcpy(r->out + pre, line, n);
    r->out[pre + n] = '\n';
    tell_others(r, m, r->out, pre + n + 1);
}

static void
too_long(sf_conn *c)
{
    static const char msg[] = "* error: line longer than 4096 bytes; closing\n";

    /* The fragment is never relayed; the error is flushed, then FIN. */
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
            if (nl == NULL)
                return;
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
}

/* The client has closed its side: a last line without '\n' still counts. */
static void
chat_eof(sf_conn *c)
{
    member *m = sf_conn_data(c);

    if (m->fraglen > 0 && m->in_room)
        handle_line(sf_conn_state(c), m, m->frag, m->fraglen);
    m->fraglen = 0;
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
