/*
 * backoff.h: exponential reconnect backoff with jitter.
 *
 * Each failure doubles the delay from initial_ms up to max_ms; the delay
 * actually used is drawn uniformly from [delay/2, delay] ("equal jitter") so
 * many streams that fail together do not retry together. A success resets
 * it. The random source is injectable so tests are deterministic.
 */
#ifndef FEDGATE_BACKOFF_H
#define FEDGATE_BACKOFF_H

#include <stdint.h>

/* Returns a uniformly random value in [0, bound) (bound > 0). */
typedef uint32_t backoff_rand_fn(uint32_t bound, void *ud);

struct backoff {
    uint32_t initial_ms;
    uint32_t max_ms;
    uint32_t current_ms;   /* the un-jittered delay for the next failure */
    unsigned failures;     /* consecutive failures */
    backoff_rand_fn *rand; /* NULL: backoff_rand_default */
    void *rand_ud;
};

void backoff_init(struct backoff *b, uint32_t initial_ms, uint32_t max_ms);

/* Records a failure; returns the delay to wait before the next attempt. */
uint32_t backoff_next(struct backoff *b);

/* Records a success: the next failure waits about initial_ms again. */
void backoff_reset(struct backoff *b);

/* A uniform value in [0, bound) from the OS random source (getrandom). */
uint32_t backoff_rand_default(uint32_t bound, void *ud);

#endif
