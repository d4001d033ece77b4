/*
 * loop.c: the one event loop: epoll (level-triggered), a binary min-heap of
 * timers and one signalfd for every signal the process handles.
 *
 * One iteration, always in this order:
 *   1. wait in epoll_wait, bounded by the earliest timer;
 *   2. refresh the cached clock;
 *   3. dispatch the collected fd events (skipping any fd unwatched or
 *      re-watched since the events were collected: each watcher slot has a
 *      generation number that is carried in the epoll event);
 *   4. fire the timers that were due when the round began (a timer armed
 *      for "now" by a callback waits for the next round, so a timer that
 *      re-arms itself with 0 ms cannot starve the loop);
 *   5. run deferred frees, so an object is never freed under its own
 *      callback;
 *   6. run the before-sleep hooks.
 *
 * Watchers live in a table indexed by fd, grown on demand: fds above 1023
 * (tens of thousands of them) are ordinary here, unlike with select().
 * Timers carry their heap index, so cancelling one is O(log n). Timers
 * with equal deadlines fire in the order they were added (a sequence number
 * breaks ties).
 */
#include "config.h"

#include "loop.h"

#include "err.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

/* Events collected per epoll_wait; the rest stay ready (level-triggered)
 * and are collected by the next round. */
#define LOOP_MAX_EVENTS  256
#define LOOP_NOT_IN_HEAP SIZE_MAX

struct loop_watcher {
    loop_io_fn *fn;
    void *ud;
    unsigned events;
    uint32_t gen; /* bumped on every watch and unwatch */
    bool active;
};

struct loop_timer {
    uint64_t deadline_ms;
    uint64_t seq; /* insertion order, breaks deadline ties */
    size_t index; /* position in the heap */
    loop_timer_fn *fn;
    void *ud;
};

struct loop_deferred {
    loop_free_fn *fn;
    void *ptr;
};

struct loop_hook {
    loop_hook_fn *fn;
    void *ud;
};

struct loop_sig {
    int signo;
    loop_signal_fn *fn;
    void *ud;
};

struct loop {
    int epfd;
    int sigfd; /* -1 until the first loop_signal() */
    sigset_t sigmask;

    struct loop_watcher *watchers; /* indexed by fd */
    size_t nwatchers;

    struct loop_timer **heap;
    size_t nheap;
    size_t heap_cap;
    uint64_t timer_seq;

    struct loop_deferred *deferred;
    size_t ndeferred;
    size_t deferred_cap;

    struct loop_hook *hooks;
    size_t nhooks;
    size_t hooks_cap;

    struct loop_sig *sigs;
    size_t nsigs;

    uint64_t now_ms;
    bool stop;

    struct epoll_event events[LOOP_MAX_EVENTS];
};

static uint64_t loop_clock_ms(void)
{
    struct timespec ts;
    /* CLOCK_MONOTONIC cannot fail with a valid clock id and pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Grows *arr (elements of size sz) to hold at least need, doubling.
 * 0 or ERR_NOMEM; on failure *arr is unchanged. */
static int loop_grow(void **arr, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap) {
        return 0;
    }
    size_t ncap = *cap != 0 ? *cap : 16;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) {
            return ERR_NOMEM;
        }
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / sz) {
        return ERR_NOMEM;
    }
    void *p = realloc(*arr, ncap * sz);
    if (p == NULL) {
        return ERR_NOMEM;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

struct loop *loop_new(void)
{
    struct loop *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        return NULL;
    }
    loop->sigfd = -1;
    sigemptyset(&loop->sigmask);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        int saved = errno;
        free(loop);
        errno = saved;
        return NULL;
    }
    loop->now_ms = loop_clock_ms();
    return loop;
}

static void loop_run_deferred(struct loop *loop)
{
    /* By index: a free function may defer more (and grow the array);
     * those run in this same pass. */
    for (size_t i = 0; i < loop->ndeferred; i++) {
        struct loop_deferred d = loop->deferred[i];
        d.fn(d.ptr);
    }
    loop->ndeferred = 0;
}

void loop_free(struct loop *loop)
{
    if (loop == NULL) {
        return;
    }
    for (size_t i = 0; i < loop->nheap; i++) {
        free(loop->heap[i]);
    }
    free(loop->heap);
    loop_run_deferred(loop);
    free(loop->deferred);
    free(loop->hooks);
    free(loop->sigs);
    free(loop->watchers);
    /* The signals stay blocked: unblocking one that is pending would let
     * its default action (often: terminate) run now. */
    if (loop->sigfd >= 0) {
        close(loop->sigfd);
    }
    close(loop->epfd);
    free(loop);
}

/* ---- fd watchers ------------------------------------------------------ */

static uint32_t loop_to_epoll(unsigned events)
{
    uint32_t ev = 0;
    if (events & LOOP_READ) {
        ev |= EPOLLIN;
    }
    if (events & LOOP_WRITE) {
        ev |= EPOLLOUT;
    }
    return ev;
}

static unsigned loop_from_epoll(uint32_t ev)
{
    unsigned events = 0;
    if (ev & (EPOLLIN | EPOLLPRI)) {
        events |= LOOP_READ;
    }
    if (ev & EPOLLOUT) {
        events |= LOOP_WRITE;
    }
    if (ev & (EPOLLERR | EPOLLHUP)) {
        events |= LOOP_ERROR;
    }
    return events;
}

/* The fd and the slot's generation travel together in the event, so an
 * event collected before an unwatch (or unwatch + watch) is recognised as
 * stale. */
static uint64_t loop_pack(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

static struct loop_watcher *loop_watcher_of(struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nwatchers || !loop->watchers[fd].active) {
        return NULL;
    }
    return &loop->watchers[fd];
}

int loop_watch(struct loop *loop,
               int fd,
               unsigned events,
               loop_io_fn *fn,
               void *ud)
{
    if (fd < 0 || fn == NULL || loop_watcher_of(loop, fd) != NULL) {
        return ERR_INVAL;
    }
    if ((size_t)fd >= loop->nwatchers) {
        size_t old = loop->nwatchers;
        void *arr = loop->watchers;
        int rc = loop_grow(&arr, &loop->nwatchers, (size_t)fd + 1,
                           sizeof(*loop->watchers));
        if (rc != 0) {
            return rc;
        }
        loop->watchers = arr;
        memset(loop->watchers + old, 0,
               (loop->nwatchers - old) * sizeof(*loop->watchers));
    }
    struct loop_watcher *w = &loop->watchers[fd];
    struct epoll_event ev = {
        .events = loop_to_epoll(events),
        .data.u64 = loop_pack(fd, w->gen + 1),
    };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return errno == ENOMEM ? ERR_NOMEM : ERR_SYS;
    }
    w->gen++;
    w->fn = fn;
    w->ud = ud;
    w->events = events & (LOOP_READ | LOOP_WRITE);
    w->active = true;
    return 0;
}

int loop_modify(struct loop *loop, int fd, unsigned events)
{
    struct loop_watcher *w = loop_watcher_of(loop, fd);
    if (w == NULL) {
        return ERR_INVAL;
    }
    struct epoll_event ev = {
        .events = loop_to_epoll(events),
        .data.u64 = loop_pack(fd, w->gen),
    };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) {
        return ERR_SYS;
    }
    w->events = events & (LOOP_READ | LOOP_WRITE);
    return 0;
}

void loop_unwatch(struct loop *loop, int fd)
{
    struct loop_watcher *w = loop_watcher_of(loop, fd);
    if (w == NULL) {
        return;
    }
    /* Fails harmlessly when the fd was already closed (the kernel dropped
     * it from the epoll set then). */
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->gen++;
    w->active = false;
    w->fn = NULL;
    w->ud = NULL;
    w->events = 0;
}

static void loop_dispatch(struct loop *loop, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t data = loop->events[i].data.u64;
        int fd = (int)(uint32_t)data;
        uint32_t gen = (uint32_t)(data >> 32);
        struct loop_watcher *w = loop_watcher_of(loop, fd);
        if (w == NULL || w->gen != gen) {
            continue; /* unwatched (or replaced) since collected */
        }
        /* A callback earlier in this round may have narrowed the events
         * (loop_modify); report only what is still asked for. */
        unsigned events =
            loop_from_epoll(loop->events[i].events) & (w->events | LOOP_ERROR);
        if (events == 0) {
            continue;
        }
        w->fn(loop, fd, events, w->ud);
    }
}

/* ---- timers ----------------------------------------------------------- */

static bool loop_timer_before(const struct loop_timer *a,
                              const struct loop_timer *b)
{
    if (a->deadline_ms != b->deadline_ms) {
        return a->deadline_ms < b->deadline_ms;
    }
    return a->seq < b->seq;
}

static void loop_heap_set(struct loop *loop, size_t i, struct loop_timer *t)
{
    loop->heap[i] = t;
    t->index = i;
}

static void loop_heap_up(struct loop *loop, size_t i)
{
    struct loop_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!loop_timer_before(t, loop->heap[parent])) {
            break;
        }
        loop_heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    loop_heap_set(loop, i, t);
}

static void loop_heap_down(struct loop *loop, size_t i)
{
    struct loop_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap) {
            break;
        }
        if (child + 1 < loop->nheap &&
            loop_timer_before(loop->heap[child + 1], loop->heap[child])) {
            child++;
        }
        if (!loop_timer_before(loop->heap[child], t)) {
            break;
        }
        loop_heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    loop_heap_set(loop, i, t);
}

static void loop_heap_remove(struct loop *loop, struct loop_timer *t)
{
    size_t i = t->index;
    struct loop_timer *last = loop->heap[--loop->nheap];
    t->index = LOOP_NOT_IN_HEAP;
    if (i == loop->nheap) {
        return; /* t was the last element */
    }
    loop_heap_set(loop, i, last);
    if (i > 0 && loop_timer_before(last, loop->heap[(i - 1) / 2])) {
        loop_heap_up(loop, i);
    } else {
        loop_heap_down(loop, i);
    }
}

struct loop_timer *
loop_timer_add(struct loop *loop, uint64_t ms, loop_timer_fn *fn, void *ud)
{
    void *arr = loop->heap;
    if (loop_grow(&arr, &loop->heap_cap, loop->nheap + 1,
                  sizeof(*loop->heap)) != 0) {
        return NULL;
    }
    loop->heap = arr;
    struct loop_timer *t = malloc(sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->deadline_ms =
        ms > UINT64_MAX - loop->now_ms ? UINT64_MAX : loop->now_ms + ms;
    t->seq = loop->timer_seq++;
    t->fn = fn;
    t->ud = ud;
    loop->heap[loop->nheap] = t;
    t->index = loop->nheap++;
    loop_heap_up(loop, t->index);
    return t;
}

void loop_timer_cancel(struct loop *loop, struct loop_timer *t)
{
    if (t == NULL || t->index == LOOP_NOT_IN_HEAP) {
        return;
    }
    loop_heap_remove(loop, t);
    free(t);
}

static void loop_run_timers(struct loop *loop)
{
    /* Only timers armed before this round: one armed by a callback for
     * "now" waits for the next round. Such timers sort after every older
     * due one (deadline >= now, larger seq), so stopping at the first of
     * them skips nothing that is due. */
    uint64_t seq_limit = loop->timer_seq;
    while (loop->nheap > 0) {
        struct loop_timer *t = loop->heap[0];
        if (t->deadline_ms > loop->now_ms || t->seq >= seq_limit) {
            break;
        }
        /* Out of the heap before the call: the callback may add and
         * cancel other timers, including ones due in this round. */
        loop_heap_remove(loop, t);
        loop_timer_fn *fn = t->fn;
        void *ud = t->ud;
        free(t);
        fn(loop, ud);
    }
}

/* Milliseconds until the earliest timer, bounded by limit (-1: none). */
static int loop_wait_ms(struct loop *loop, int limit)
{
    if (loop->nheap == 0) {
        return limit;
    }
    uint64_t deadline = loop->heap[0]->deadline_ms;
    uint64_t now = loop_clock_ms();
    uint64_t wait = deadline > now ? deadline - now : 0;
    if (wait > INT_MAX) {
        wait = INT_MAX;
    }
    if (limit >= 0 && (uint64_t)limit < wait) {
        return limit;
    }
    return (int)wait;
}

/* ---- signals ---------------------------------------------------------- */

static void
loop_on_signalfd(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = read(fd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si)) {
            /* EAGAIN: drained. EINTR cannot leave a partial record. */
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return;
        }
        for (size_t i = 0; i < loop->nsigs; i++) {
            if (loop->sigs[i].signo == (int)si.ssi_signo) {
                loop->sigs[i].fn(loop, (int)si.ssi_signo, loop->sigs[i].ud);
                break;
            }
        }
    }
}

/*
 * Signals are blocked in the calling thread; threads created later (e.g.
 * libunbound's resolver thread) inherit the mask, so register signals
 * before starting any thread or the signal may be delivered there instead.
 * Registering a signal again replaces its callback.
 */
int loop_signal(struct loop *loop, int signo, loop_signal_fn *fn, void *ud)
{
    if (fn == NULL) {
        return ERR_INVAL;
    }
    for (size_t i = 0; i < loop->nsigs; i++) {
        if (loop->sigs[i].signo == signo) {
            loop->sigs[i].fn = fn;
            loop->sigs[i].ud = ud;
            return 0;
        }
    }
    struct loop_sig *sigs =
        reallocarray(loop->sigs, loop->nsigs + 1, sizeof(*sigs));
    if (sigs == NULL) {
        return ERR_NOMEM;
    }
    loop->sigs = sigs;

    sigset_t mask = loop->sigmask;
    if (sigaddset(&mask, signo) != 0) {
        return ERR_INVAL;
    }
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signo);
    if (sigprocmask(SIG_BLOCK, &one, NULL) != 0) {
        return ERR_SYS;
    }
    /* With an existing fd, signalfd() replaces its mask in place. */
    int fd = signalfd(loop->sigfd, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        return ERR_SYS;
    }
    if (loop->sigfd < 0) {
        int rc = loop_watch(loop, fd, LOOP_READ, loop_on_signalfd, NULL);
        if (rc != 0) {
            close(fd);
            return rc;
        }
        loop->sigfd = fd;
    }
    loop->sigmask = mask;
    loop->sigs[loop->nsigs++] = (struct loop_sig){signo, fn, ud};
    return 0;
}

/* ---- deferred frees, hooks, running ------------------------------------ */

int loop_defer(struct loop *loop, loop_free_fn *fn, void *ptr)
{
    void *arr = loop->deferred;
    if (loop_grow(&arr, &loop->deferred_cap, loop->ndeferred + 1,
                  sizeof(*loop->deferred)) != 0) {
        return ERR_NOMEM;
    }
    loop->deferred = arr;
    loop->deferred[loop->ndeferred++] = (struct loop_deferred){fn, ptr};
    return 0;
}

int loop_before_sleep(struct loop *loop, loop_hook_fn *fn, void *ud)
{
    void *arr = loop->hooks;
    if (loop_grow(&arr, &loop->hooks_cap, loop->nhooks + 1,
                  sizeof(*loop->hooks)) != 0) {
        return ERR_NOMEM;
    }
    loop->hooks = arr;
    loop->hooks[loop->nhooks++] = (struct loop_hook){fn, ud};
    return 0;
}

void loop_before_sleep_remove(struct loop *loop, loop_hook_fn *fn, void *ud)
{
    for (size_t i = 0; i < loop->nhooks; i++) {
        if (loop->hooks[i].fn == fn && loop->hooks[i].ud == ud) {
            memmove(&loop->hooks[i], &loop->hooks[i + 1],
                    (loop->nhooks - i - 1) * sizeof(*loop->hooks));
            loop->nhooks--;
            return;
        }
    }
}

int loop_run_once(struct loop *loop, int timeout_ms)
{
    int n = epoll_wait(loop->epfd, loop->events, LOOP_MAX_EVENTS,
                       loop_wait_ms(loop, timeout_ms));
    if (n < 0) {
        if (errno != EINTR) {
            return ERR_SYS;
        }
        n = 0; /* a signal is not an error: run timers and hooks */
    }
    loop->now_ms = loop_clock_ms();
    loop_dispatch(loop, n);
    loop_run_timers(loop);
    loop_run_deferred(loop);
    /* By index: a hook may add hooks (which then run in this pass). */
    for (size_t i = 0; i < loop->nhooks; i++) {
        struct loop_hook h = loop->hooks[i];
        h.fn(loop, h.ud);
    }
    return 0;
}

int loop_run(struct loop *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        int rc = loop_run_once(loop, -1);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void loop_stop(struct loop *loop)
{
    loop->stop = true;
}

uint64_t loop_now_ms(const struct loop *loop)
{
    return loop->now_ms;
}
