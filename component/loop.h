/*
 * loop.h: the one event loop (epoll + timer min-heap + signalfd).
 *
 * Every socket, timer and signal of the process is watched here. One
 * iteration runs in a fixed order: wait for events (bounded by the next
 * timer), dispatch fd events, run due timers, run deferred frees, run the
 * before-sleep hooks. Callbacks may add or remove watchers and timers,
 * including their own. Objects must not be freed inside their own callback:
 * hand them to loop_defer() and they are released after the dispatch.
 */
#ifndef FEDGATE_LOOP_H
#define FEDGATE_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_timer;

enum {
    LOOP_READ = 1u,
    LOOP_WRITE = 2u,
    /* reported only: error or hang-up on the fd */
    LOOP_ERROR = 4u,
};

typedef void loop_io_fn(struct loop *loop, int fd, unsigned events, void *ud);
typedef void loop_timer_fn(struct loop *loop, void *ud);
typedef void loop_signal_fn(struct loop *loop, int signo, void *ud);
typedef void loop_free_fn(void *ptr);
typedef void loop_hook_fn(struct loop *loop, void *ud);

/* Returns a new loop or NULL (errno set). */
struct loop *loop_new(void);

/* Frees the loop: cancels timers, runs pending deferred frees, closes the
 * epoll and signal fds (not watched fds). Accepts NULL. */
void loop_free(struct loop *loop);

/* Watches fd for events (LOOP_READ|LOOP_WRITE). fd must not be watched
 * already. 0, ERR_SYS, ERR_NOMEM, or ERR_INVAL (fd < 0, fn NULL, or fd
 * already watched). */
int loop_watch(struct loop *loop,
               int fd,
               unsigned events,
               loop_io_fn *fn,
               void *ud);

/* Changes the events of a watched fd. 0, ERR_SYS or ERR_INVAL (fd not
 * watched). Events already collected this iteration are reported only if
 * still asked for. */
int loop_modify(struct loop *loop, int fd, unsigned events);

/* Stops watching fd (does not close it). Events already collected for it
 * in this iteration are not dispatched. Accepts an unwatched fd. */
void loop_unwatch(struct loop *loop, int fd);

/* Arms a one-shot timer after ms milliseconds. Returns a handle valid until
 * the timer fires or is cancelled, or NULL on ENOMEM. */
struct loop_timer *
loop_timer_add(struct loop *loop, uint64_t ms, loop_timer_fn *fn, void *ud);

/* Cancels a pending timer. Accepts NULL. Must not be called with a handle
 * whose timer already fired. */
void loop_timer_cancel(struct loop *loop, struct loop_timer *t);

/* Delivers signo through the loop (blocks it and reads a signalfd).
 * Registering a signal again replaces its callback. Call before creating
 * any thread: threads inherit the blocked mask only from then on. The
 * signals stay blocked after loop_free(). 0, ERR_SYS, ERR_NOMEM or
 * ERR_INVAL (bad signo, fn NULL). */
int loop_signal(struct loop *loop, int signo, loop_signal_fn *fn, void *ud);

/* Frees ptr with fn after the current dispatch round. 0 or ERR_NOMEM (in
 * which case nothing is freed and the caller keeps ptr). */
int loop_defer(struct loop *loop, loop_free_fn *fn, void *ptr);

/* Adds a hook run at the end of every iteration, before waiting.
 * 0 or ERR_NOMEM. */
int loop_before_sleep(struct loop *loop, loop_hook_fn *fn, void *ud);

/* Removes a hook added with exactly fn and ud (no effect if absent). Not
 * from inside a hook. */
void loop_before_sleep_remove(struct loop *loop, loop_hook_fn *fn, void *ud);

/* Runs until loop_stop(). 0, or ERR_SYS if epoll_wait fails. */
int loop_run(struct loop *loop);

/* Runs one iteration, waiting at most timeout_ms (-1: until an event or
 * timer). For tests. 0 or ERR_SYS. */
int loop_run_once(struct loop *loop, int timeout_ms);

/* Makes loop_run() return after the current iteration. */
void loop_stop(struct loop *loop);

/* Monotonic milliseconds, cached once per iteration. */
uint64_t loop_now_ms(const struct loop *loop);

#endif
