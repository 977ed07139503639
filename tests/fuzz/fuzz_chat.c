/* fuzz_chat: libFuzzer harness for the chat service's line handling (splitting, /nick,
 * the 4 KiB line limit, dropping members, terminal controls) with three members whose
 * connections are stand-ins for the server's sf_conn calls. Oracles: each message is one
 * whole line; a relayed line reaches no terminal as a control; names stay distinct, none
 * but the automatic ones look like "userN", and a member who joins later (in the slot of
 * one dropped) is numbered next; a member is held to a deadline exactly while it has a
 * line begun. */
#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wchar.h>

#include "sockflow/svc.h"

#define MEMBERS 3
#define CAP (16 * 1024)     /* a small queue cap, so members get dropped */

struct sf_conn {
    unsigned long id;
    int open, closed, finishing, watched, expecting;
    size_t queued;
    char name[40];          /* as the member was told: "* you are NAME..." */
    void *data;
};

static struct sf_conn conns[MEMBERS];
static void *room_state;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void *sf_conn_data(sf_conn *c) { return c->data; }
void *sf_conn_state(sf_conn *c) { (void)c; return room_state; }
unsigned long sf_conn_id(const sf_conn *c) { return c->id; }
int sf_conn_watch_peer(sf_conn *c) { c->watched = 1; return 0; }
void sf_conn_expect_input(sf_conn *c, int on) { c->expecting = on; }

/* A relayed line as a terminal would take it: no C0 control but TAB (and the CR of a
 * CRLF ending), no DEL, no C1 control as UTF-8 nor as a lone byte 0x80..0x9f. Decoded
 * with the C library, not with the service's own decoder. */
static void
check_visible(const char *s, size_t len)
{
    mbstate_t st;

    if (len >= 2 && s[len - 2] == '\r')
        len--;
    memset(&st, 0, sizeof(st));
    for (size_t i = 0; i < len - 1;) {
        unsigned char b = (unsigned char)s[i];
        wchar_t wc;
        size_t n;

        if ((b < 0x20 && b != '\t') || b == 0x7f)
            abort();
        if (b < 0x80) {
            i++;
            continue;
        }
        n = mbrtowc(&wc, s + i, len - 1 - i, &st);
        if (n == (size_t)-1 || n == (size_t)-2) {
            memset(&st, 0, sizeof(st));
            if (b < 0xa0)
                abort();
            i++;
            continue;
        }
        if (wc >= 0x80 && wc < 0xa0)
            abort();
        i += n;
    }
}

/* "user" and digits, any case: what only the service may hand out. */
static int
looks_automatic(const char *name)
{
    if (strncasecmp(name, "user", 4) != 0 || name[4] == '\0')
        return 0;
    for (const char *p = name + 4; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

/* Learn the member's name from what it is told about itself: "* you are NAME, 2 others
 * here; ..." on joining, "* you are now NAME" on a rename. A name may hold commas (not
 * spaces), so the greeting's name ends at ", " and a digit: "* you are a,b already"
 * (a /nick to one's own name) is neither. */
static void
note_name(sf_conn *c, const char *s, size_t len)
{
    int renamed = len > 14 && memcmp(s, "* you are now ", 14) == 0;
    const char *p = renamed ? s + 14 : s + 10;
    size_t n;

    if (!renamed && !(len > 10 && memcmp(s, "* you are ", 10) == 0))
        return;
    if ((c->name[0] == '\0' || strcmp(c->name, "now") == 0) && len == 22 &&
        memcmp(s, "* you are now already\n", 22) == 0) {
        c->name[0] = '\0';     /* "now" kept, or renamed "already": unknown until told */
        return;
    }
    n = strcspn(p, renamed ? "\n" : " \n");
    if (!renamed) {
        if (n < 2 || p[n - 1] != ',' || p[n] != ' ' || p[n + 1] < '0' || p[n + 1] > '9')
            return;
        n--;
    }
    if (n >= sizeof(c->name))
        abort();
    memcpy(c->name, p, n);
    c->name[n] = '\0';
    if (renamed && looks_automatic(c->name))
        abort();    /* /nick gave out a name of the automatic kind */
}

int
sf_conn_send(sf_conn *c, const void *p, size_t len)
{
    const char *s = p;

    if (c->closed || c->finishing)
        return -EPIPE;
    /* What chat sends is whole lines: text up to one '\n', at the end. */
    if (len == 0 || s[len - 1] != '\n' || memchr(s, '\n', len - 1) != NULL ||
        len > 4 * SF_CHAT_LINE_MAX + 64)
        abort();
    if (s[0] == '<')
        check_visible(s, len);
    else
        note_name(c, s, len);
    if (c->queued + len > CAP)
        return -ENOBUFS;
    c->queued += len;
    return 0;
}

void sf_conn_finish(sf_conn *c) { c->finishing = 1; }
void sf_conn_close(sf_conn *c, const char *reason) { (void)reason; c->closed = 1; }

/* Members still in: distinct names, letter case aside (a name not known is skipped). */
static void
check_names(void)
{
    for (int i = 0; i < MEMBERS; i++)
        for (int j = i + 1; j < MEMBERS; j++)
            if (!conns[i].closed && !conns[i].finishing && !conns[j].closed &&
                !conns[j].finishing && conns[i].name[0] != '\0' &&
                strcasecmp(conns[i].name, conns[j].name) == 0)
                abort();
}

/* A member joins in slot i: numbered next in the room, whatever names were taken. */
static void
join(const sf_service *svc, int i, int *joined)
{
    char want[24];

    conns[i] = (struct sf_conn){ .id = (unsigned long)i + 40, .open = 1 };
    conns[i].data = calloc(1, svc->conn_size);
    svc->on_open(&conns[i]);
    snprintf(want, sizeof(want), "user%d", ++*joined);
    if (!conns[i].watched || strcmp(conns[i].name, want) != 0)
        abort();
}

static void
leave(const sf_service *svc, int i)
{
    svc->on_close(&conns[i]);
    free(conns[i].data);
    conns[i].data = NULL;
}

/* The oracle decodes UTF-8 with the C library. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (setlocale(LC_CTYPE, "C.UTF-8") == NULL)
        abort();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const sf_service *svc = &sf_svc_chat;
    int midline[MEMBERS] = { 0 }, joined = 0;

    room_state = svc->state_new();
    for (int i = 0; i < MEMBERS; i++)
        join(svc, i, &joined);
    /* Each chunk: one byte picks the member and the length, then that many bytes. */
    while (size > 0) {
        int who = data[0] % MEMBERS;
        size_t n = (size_t)(data[0] >> 2) * 97 % 6000 + 1;
        char buf[6000];

        data++, size--;
        if (n > size)
            n = size;
        if (n == 0)
            break;      /* the server never hands a service 0 bytes: that is EOF */
        memcpy(buf, data, n);
        data += n, size -= n;
        if (conns[who].closed || conns[who].finishing) {
            /* Dropped or gone: someone new takes the slot, after the renames so far. */
            leave(svc, who);
            join(svc, who, &joined);
            midline[who] = 0;
        } else {
            svc->on_data(&conns[who], buf, n);
            midline[who] = buf[n - 1] != '\n';
            if (!conns[who].closed && !conns[who].finishing &&
                conns[who].expecting != midline[who])
                abort();
        }
        check_names();
        conns[(who + 1) % MEMBERS].queued /= 2;     /* someone reads now and then */
    }
    for (int i = 0; i < MEMBERS; i++) {
        if (!conns[i].closed && !conns[i].finishing && svc->on_eof)
            svc->on_eof(&conns[i]);
    }
    for (int i = 0; i < MEMBERS; i++)
        leave(svc, i);
    svc->state_free(room_state);
    return 0;
}
