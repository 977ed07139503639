/* buf: a bounded byte queue; it never grows past its cap. */
#ifndef SOCKFLOW_BUF_H
#define SOCKFLOW_BUF_H

#include <stddef.h>
#include <sys/types.h>
#include "trace.h"

typedef struct sf_buf {
    char *data;
    size_t head;     /* first unread byte */
    size_t len;      /* bytes queued */
    size_t size;     /* allocated */
    size_t cap;      /* most bytes it may hold */
} sf_buf;

/* An empty queue holding at most cap bytes; no memory is taken until the first push. */
void sf_buf_init(sf_buf *b, size_t cap);
void sf_buf_free(sf_buf *b);

/* Append up to len bytes, no more than the room left under the cap. Returns the
 * count appended (may be less than len, 0 when full) or -ENOMEM. */
ssize_t sf_buf_push(sf_buf *b, const void *p, size_t len);
/* Drop n bytes from the front. */
void sf_buf_consume(sf_buf *b, size_t n);
/* The contiguous queued bytes at the front. */
static inline const char *sf_buf_peek(const sf_buf *b) { return b->data + b->head; }
static inline size_t sf_buf_len(const sf_buf *b) { return b->len; }
static inline size_t sf_buf_room(const sf_buf *b) { return b->cap - b->len; }

/* Write the queue to fd with sf_write until empty or the fd would block.
 * Returns bytes left, or a negative errno. */
ssize_t sf_buf_flush(const sf_trace *t, sf_buf *b, int fd);

#endif
