/*
 * buf.c: bounded byte buffer. Growth doubles up to the maximum; consumed
 * bytes are compacted lazily so a reader that eats the front in small
 * pieces does not memmove on every call.
 */
#include "config.h"

#include "buf.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

static void buf_compact(struct buf *b)
{
    if (b->head == 0) {
        return;
    }
    memmove(b->data, b->data + b->head, b->len - b->head);
    b->len -= b->head;
    if (b->secret) {
        explicit_bzero(b->data + b->len, b->head);
    }
    b->head = 0;
    b->data[b->len] = '\0';
}

static int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > b->max || buf_size(b) > b->max - extra) {
        return ERR_TOO_BIG;
    }
    if (b->len + extra <= b->cap) {
        return 0;
    }
    buf_compact(b);
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t need = b->len + extra;
    size_t cap = b->cap != 0 ? b->cap : 64;
    while (cap < need) {
        cap = cap > b->max / 2 ? b->max : cap * 2;
    }
    char *p = malloc(cap + 1);
    if (p == NULL) {
        return ERR_NOMEM;
    }
    if (b->data != NULL) {
        memcpy(p, b->data, b->len);
        if (b->secret) {
            explicit_bzero(b->data, b->cap);
        }
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc != 0) {
        return rc;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    if (b->data != NULL) {
        b->data[b->len] = '\0';
    }
    return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return ERR_INVAL;
    }
    if (n == 0) {
        return 0; /* nothing to add; data may still be NULL */
    }
    int rc = buf_reserve(b, (size_t)n);
    if (rc != 0) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= buf_size(b)) {
        buf_reset(b);
        return;
    }
    b->head += n;
    /* Compact once the dead front outweighs the live part. */
    if (b->head > buf_size(b)) {
        buf_compact(b);
    }
}

void buf_truncate(struct buf *b, size_t size)
{
    if (size >= buf_size(b)) {
        return;
    }
    b->len = b->head + size;
    b->data[b->len] = '\0';
}

void buf_reset(struct buf *b)
{
    if (b->data != NULL) {
        if (b->secret) {
            explicit_bzero(b->data, b->cap);
        }
        b->data[0] = '\0';
    }
    b->len = 0;
    b->head = 0;
}

void buf_free(struct buf *b)
{
    if (b == NULL) {
        return;
    }
    if (b->data != NULL && b->secret) {
        explicit_bzero(b->data, b->cap);
    }
    free(b->data);
    b->data = NULL;
    b->len = b->cap = b->head = 0;
}

char *buf_steal(struct buf *b)
{
    buf_compact(b);
    char *s = b->data;
    if (s == NULL) {
        s = calloc(1, 1);
    }
    b->data = NULL;
    b->len = b->cap = b->head = 0;
    return s;
}
