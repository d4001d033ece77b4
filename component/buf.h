/*
 * buf.h: the one bounded byte buffer.
 *
 * Every buffer has a hard maximum set at creation; appends that would pass
 * it fail with ERR_TOO_BIG and leave the buffer unchanged. The data is kept
 * NUL-terminated for convenience (the terminator is not counted in len).
 * A buffer marked secret is wiped before its memory is released.
 */
#ifndef FEDGATE_BUF_H
#define FEDGATE_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;  /* owned; NULL until the first append */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated, excluding the terminator */
    size_t max;  /* hard maximum for len */
    size_t head; /* bytes consumed from the front, not yet compacted */
    bool secret; /* wipe on free and on reallocation */
};

/* Initialises an empty buffer with maximum max. Never fails. */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes; 0, ERR_TOO_BIG or ERR_NOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The unconsumed bytes and their count. */
static inline const char *buf_peek(const struct buf *b)
{
    return b->data != NULL ? b->data + b->head : "";
}
static inline size_t buf_size(const struct buf *b)
{
    return b->len - b->head;
}

/* Drops n bytes from the front (n <= buf_size). */
void buf_consume(struct buf *b, size_t n);

/* Keeps only the first size unconsumed bytes (size <= buf_size): takes
 * back a partial append. */
void buf_truncate(struct buf *b, size_t size);

/* Empties the buffer, keeping its memory (wiped when secret). */
void buf_reset(struct buf *b);

/* Releases the memory (wiped when secret). Accepts NULL. */
void buf_free(struct buf *b);

/* Returns the contents as a new NUL-terminated string and empties b. */
char *buf_steal(struct buf *b);

#endif
