/*
 * backoff.c: exponential reconnect backoff with equal jitter.
 *
 * The un-jittered delay doubles per failure and saturates at max_ms; the
 * doubling is done as "d > max/2 ? max : 2d" so it can never overflow,
 * however many failures pile up. The delay used is drawn from [d/2, d].
 */
#include "config.h"

#include "backoff.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/random.h>
#include <time.h>

void backoff_init(struct backoff *b, uint32_t initial_ms, uint32_t max_ms)
{
    b->initial_ms = initial_ms < max_ms ? initial_ms : max_ms;
    b->max_ms = max_ms;
    b->current_ms = b->initial_ms;
    b->failures = 0;
    b->rand = NULL;
    b->rand_ud = NULL;
}

uint32_t backoff_next(struct backoff *b)
{
    uint32_t d = b->current_ms < b->max_ms ? b->current_ms : b->max_ms;
    b->current_ms = d > b->max_ms / 2 ? b->max_ms : d * 2;
    if (b->failures < ~0u) {
        b->failures++;
    }
    /* [d/2, d] has d - d/2 + 1 values; at most 2^31 + 1, so no overflow. */
    uint32_t lo = d / 2;
    uint32_t span = d - lo + 1;
    backoff_rand_fn *fn = b->rand != NULL ? b->rand : backoff_rand_default;
    uint32_t r = fn(span, b->rand_ud);
    /* A bad injected source must not push the delay out of range. */
    return lo + (r < span ? r : r % span);
}

void backoff_reset(struct backoff *b)
{
    b->current_ms = b->initial_ms;
    b->failures = 0;
}

/* Used only if getrandom() is unavailable or would block (before the
 * kernel pool is ready): jitter needs spread, not secrecy. */
static uint32_t backoff_fallback_u32(void)
{
    static uint64_t state;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    state += 0x9e3779b97f4a7c15u ^ (uint64_t)ts.tv_nsec;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static uint32_t backoff_random_u32(void)
{
    uint32_t v;
    for (;;) {
        ssize_t n = getrandom(&v, sizeof(v), GRND_NONBLOCK);
        if (n == (ssize_t)sizeof(v)) {
            return v;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return backoff_fallback_u32();
    }
}

uint32_t backoff_rand_default(uint32_t bound, void *ud)
{
    (void)ud;
    if (bound <= 1) {
        return 0;
    }
    /* Reject the low 2^32 mod bound values so that every residue is
     * equally likely (a plain modulo favours the small ones). */
    uint32_t threshold = (uint32_t)(-bound) % bound;
    for (;;) {
        uint32_t v = backoff_random_u32();
        if (v >= threshold) {
            return v % bound;
        }
    }
}
