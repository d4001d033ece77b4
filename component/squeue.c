/*
 * squeue.c: the bounded stanza FIFO a route keeps while its stream is not
 * ready. A singly linked list with a tail pointer: push and pop are O(1)
 * and the oldest entry (the next to expire) is always at the head.
 */
#include "config.h"

#include "squeue.h"

#include "err.h"
#include "xml.h"

#include <stdlib.h>

void squeue_init(struct squeue *q, size_t max_count, size_t max_bytes)
{
    q->head = NULL;
    q->tail = NULL;
    q->count = 0;
    q->bytes = 0;
    q->max_count = max_count;
    q->max_bytes = max_bytes;
}

int squeue_push(struct squeue *q,
                struct xml_node *stanza,
                size_t bytes,
                uint64_t now_ms)
{
    /* The owner may lower the bounds below the current content (a config
     * reload), so check q->bytes before subtracting. */
    if (q->count >= q->max_count || q->bytes > q->max_bytes ||
        bytes > q->max_bytes - q->bytes) {
        return ERR_TOO_BIG;
    }
    struct squeue_entry *e = malloc(sizeof(*e));
    if (e == NULL) {
        return ERR_NOMEM;
    }
    e->stanza = stanza; /* transferred */
    e->bytes = bytes;
    e->queued_ms = now_ms;
    e->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = e;
    } else {
        q->head = e;
    }
    q->tail = e;
    q->count++;
    q->bytes += bytes;
    return 0;
}

struct xml_node *squeue_pop(struct squeue *q)
{
    struct squeue_entry *e = q->head;
    if (e == NULL) {
        return NULL;
    }
    q->head = e->next;
    if (q->head == NULL) {
        q->tail = NULL;
    }
    q->count--;
    q->bytes -= e->bytes;
    struct xml_node *stanza = e->stanza; /* transferred */
    free(e);
    return stanza;
}

const struct xml_node *squeue_peek(const struct squeue *q)
{
    return q->head != NULL ? q->head->stanza : NULL;
}

struct xml_node *squeue_pop_expired(struct squeue *q, uint64_t deadline_ms)
{
    if (q->head == NULL || q->head->queued_ms > deadline_ms) {
        return NULL;
    }
    return squeue_pop(q);
}

uint64_t squeue_oldest_ms(const struct squeue *q)
{
    return q->head != NULL ? q->head->queued_ms : 0;
}

void squeue_clear(struct squeue *q)
{
    struct xml_node *stanza;
    while (q->head != NULL) {
        stanza = squeue_pop(q);
        xml_unref(stanza);
    }
}

bool squeue_congested(const struct squeue *q, bool was)
{
    if (was) {
        return q->count * 4 > q->max_count || q->bytes * 4 > q->max_bytes;
    }
    return q->count * 4 >= q->max_count * 3 || q->bytes * 4 >= q->max_bytes * 3;
}
