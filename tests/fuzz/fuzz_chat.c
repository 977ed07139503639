/* fuzz_chat: libFuzzer harness for the chat service's line handling (splitting, /nick,
 * the 4 KiB line limit, dropping members) with three members whose connections are
 * stand-ins for the server's sf_conn calls. Each relayed message must be one whole line. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/svc.h"

#define MEMBERS 3
#define CAP (16 * 1024)     /* a small queue cap, so members get dropped */

struct sf_conn {
    unsigned long id;
    int open, closed, finishing;
    size_t queued;
    void *data;
};

static struct sf_conn conns[MEMBERS];
static void *room_state;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

void *sf_conn_data(sf_conn *c) { return c->data; }
void *sf_conn_state(sf_conn *c) { (void)c; return room_state; }
unsigned long sf_conn_id(const sf_conn *c) { return c->id; }

int
sf_conn_send(sf_conn *c, const void *p, size_t len)
{
    const char *s = p;

    if (c->closed || c->finishing)
        return -EPIPE;
    /* What chat sends is whole lines: text up to one '\n', at the end. */
    if (len == 0 || s[len - 1] != '\n' || memchr(s, '\n', len - 1) != NULL ||
        len > SF_CHAT_LINE_MAX + 64)
        abort();
    if (c->queued + len > CAP)
        return -ENOBUFS;
    c->queued += len;
    return 0;
}

void sf_conn_finish(sf_conn *c) { c->finishing = 1; }
void sf_conn_close(sf_conn *c, const char *reason) { (void)reason; c->closed = 1; }

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const sf_service *svc = &sf_svc_chat;

    room_state = svc->state_new();
    for (int i = 0; i < MEMBERS; i++) {
        conns[i] = (struct sf_conn){ .id = (unsigned long)i + 1, .open = 1 };
        conns[i].data = calloc(1, svc->conn_size);
        svc->on_open(&conns[i]);
    }
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
        if (!conns[who].closed && !conns[who].finishing)
            svc->on_data(&conns[who], buf, n);
        conns[(who + 1) % MEMBERS].queued /= 2;     /* someone reads now and then */
    }
    for (int i = 0; i < MEMBERS; i++) {
        if (!conns[i].closed && !conns[i].finishing && svc->on_eof)
            svc->on_eof(&conns[i]);
    }
    for (int i = 0; i < MEMBERS; i++) {
        svc->on_close(&conns[i]);
        free(conns[i].data);
    }
    svc->state_free(room_state);
    return 0;
}
