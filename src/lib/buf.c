/* buf: a bounded byte queue. Memory is taken on first use and grows by doubling up to
 * the cap; consumed space at the front is reclaimed by moving the rest down. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sockflow/buf.h"
#include "sockflow/sock.h"

void
sf_buf_init(sf_buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->cap = cap;
}

void
sf_buf_free(sf_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->head = b->len = b->size = 0;
}

ssize_t
sf_buf_push(sf_buf *b, const void *p, size_t len)
{
    if (len > b->cap - b->len)
        len = b->cap - b->len;
    if (len == 0)
        return 0;
    if (b->head + b->len + len > b->size) {
        if (b->head > 0) {
            memmove(b->data, b->data + b->head, b->len);
            b->head = 0;
        }
        if (b->len + len > b->size) {
            size_t n = b->size ? b->size : 4096;
            char *d;

            while (n < b->len + len)
                n *= 2;
            if (n > b->cap)
                n = b->cap;
            d = realloc(b->data, n);
            if (d == NULL)
                return -ENOMEM;
            b->data = d;
            b->size = n;
        }
    }
    memcpy(b->data + b->head + b->len, p, len);
    b->len += len;
    return (ssize_t)len;
}

void
sf_buf_consume(sf_buf *b, size_t n)
{
    if (n >= b->len) {
        b->head = b->len = 0;
        return;
    }
    b->head += n;
    b->len -= n;
}

ssize_t
sf_buf_flush(const sf_trace *t, sf_buf *b, int fd)
{
    while (b->len > 0) {
        ssize_t n = sf_write(t, fd, sf_buf_peek(b), b->len);

        if (n == SF_EAGAIN)
            break;
        if (n < 0)
            return n;
        sf_buf_consume(b, (size_t)n);
    }
    return (ssize_t)b->len;
}
