/*
 * squeue.h: a bounded FIFO of stanzas waiting for a stream.
 *
 * Bounded by count and by serialised bytes. Each entry remembers when it
 * was queued so the owner can expire entries older than a timeout. The
 * queue holds its own references: squeue_push() consumes the caller's
 * reference, squeue_pop() hands one back. Refused and expired stanzas are
 * returned to the caller, never dropped here: the caller bounces them.
 */
#ifndef FEDGATE_SQUEUE_H
#define FEDGATE_SQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xml_node;

struct squeue_entry {
    struct xml_node *stanza; /* owned reference */
    size_t bytes;            /* its serialised size, as given at push */
    uint64_t queued_ms;      /* loop time when queued */
    struct squeue_entry *next;
};

struct squeue {
    struct squeue_entry *head;
    struct squeue_entry *tail;
    size_t count;
    size_t bytes;
    size_t max_count;
    size_t max_bytes;
};

void squeue_init(struct squeue *q, size_t max_count, size_t max_bytes);

/*
 * Appends stanza (bytes = its serialised size) queued at now_ms.
 * On success consumes the reference and returns 0. When the queue is full
 * by count or bytes returns ERR_TOO_BIG and the caller keeps its reference
 * (to bounce it). ERR_NOMEM likewise leaves the reference with the caller.
 */
int squeue_push(struct squeue *q,
                struct xml_node *stanza,
                size_t bytes,
                uint64_t now_ms);

/* Removes the oldest entry; returns its stanza (a reference the caller
 * now owns) or NULL when empty. */
struct xml_node *squeue_pop(struct squeue *q);

/* The oldest entry's stanza, borrowed, or NULL. */
const struct xml_node *squeue_peek(const struct squeue *q);

/* Removes and returns the oldest stanza if it was queued at or before
 * deadline_ms (i.e. expired); NULL otherwise. */
struct xml_node *squeue_pop_expired(struct squeue *q, uint64_t deadline_ms);

/* queued_ms of the oldest entry; 0 when empty. */
uint64_t squeue_oldest_ms(const struct squeue *q);

/* Drops every entry, unreferencing its stanza. Callers that must bounce
 * should pop instead. */
void squeue_clear(struct squeue *q);

/*
 * Backpressure with hysteresis: whether a queue that was (was) full
 * enough to hold its feeders back still is. It becomes so at 3/4 of
 * either bound and stays so until it is down to 1/4 of both, so that
 * pausing and resuming do not flap.
 */
bool squeue_congested(const struct squeue *q, bool was);

#endif
