/*
 * check_loop.c: unit tests for the event loop: fd readiness, stale events
 * after an unwatch, timer order and cancellation, signals through the
 * signalfd, deferred frees, before-sleep hooks, loop_stop, and fds above
 * select()'s 1023.
 */
#include "config.h"

#include "loop.h"

#include "err.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void make_pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void send_byte(int fd)
{
    ck_assert_int_eq(write(fd, "x", 1), 1);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Records the events an fd callback saw. */
struct io_rec {
    int calls;
    int fd;
    unsigned events;
};

static void on_io(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct io_rec *r = ud;
    r->calls++;
    r->fd = fd;
    r->events |= events;
}

/* Appends a tag to an order log. */
struct order_log {
    int tags[16];
    int n;
};

static void order_add(struct order_log *log, int tag)
{
    ck_assert_int_lt(log->n, 16);
    log->tags[log->n++] = tag;
}

/* ---- fd watchers ----------------------------------------------------- */

START_TEST(loop_read_readiness)
{
    struct loop *loop = loop_new();
    ck_assert_ptr_nonnull(loop);
    int sv[2];
    make_pair(sv);
    struct io_rec r = {0};
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READ, on_io, &r), 0);
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 0); /* nothing to read yet */
    send_byte(sv[1]);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.fd, sv[0]);
    ck_assert_uint_eq(r.events, LOOP_READ);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(loop_write_readiness)
{
    struct loop *loop = loop_new();
    int sv[2];
    make_pair(sv);
    struct io_rec r = {0};
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_WRITE, on_io, &r), 0);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_uint_eq(r.events, LOOP_WRITE);
    /* Switched to read interest: writable no longer reported. */
    ck_assert_int_eq(loop_modify(loop, sv[0], LOOP_READ), 0);
    r = (struct io_rec){0};
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(r.calls, 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(loop_hangup_reports_error)
{
    struct loop *loop = loop_new();
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    struct io_rec r = {0};
    ck_assert_int_eq(loop_watch(loop, p[0], LOOP_READ, on_io, &r), 0);
    close(p[1]);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(r.events & LOOP_ERROR);
    loop_free(loop);
    close(p[0]);
}
END_TEST

START_TEST(loop_watch_twice_refused)
{
    struct loop *loop = loop_new();
    int sv[2];
    make_pair(sv);
    struct io_rec r = {0};
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READ, on_io, &r), 0);
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READ, on_io, &r), ERR_INVAL);
    ck_assert_int_eq(loop_watch(loop, -1, LOOP_READ, on_io, &r), ERR_INVAL);
    ck_assert_int_eq(loop_modify(loop, sv[1], LOOP_READ), ERR_INVAL);
    loop_unwatch(loop, sv[1]); /* never watched: harmless */
    loop_unwatch(loop, 99999);
    loop_unwatch(loop, sv[0]);
    /* Unwatched fds can be watched again. */
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READ, on_io, &r), 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* Two readable fds; whichever callback runs first unwatches the other,
 * whose event was already collected in the same epoll_wait. */
struct pair_ctx {
    int fds[2];
    int calls;
    int replaced_calls;
    bool rewatch;
};

static void on_replaced(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct pair_ctx *c = ud;
    c->replaced_calls++;
}

static void on_pair(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct pair_ctx *c = ud;
    if (c->calls++ > 0) {
        return; /* act on the first event only */
    }
    int other = fd == c->fds[0] ? c->fds[1] : c->fds[0];
    loop_unwatch(loop, other);
    if (c->rewatch) {
        ck_assert_int_eq(loop_watch(loop, other, LOOP_READ, on_replaced, c), 0);
    }
}

START_TEST(loop_unwatch_drops_collected_event)
{
    struct loop *loop = loop_new();
    int a[2], b[2];
    make_pair(a);
    make_pair(b);
    struct pair_ctx c = {.fds = {a[0], b[0]}};
    ck_assert_int_eq(loop_watch(loop, a[0], LOOP_READ, on_pair, &c), 0);
    ck_assert_int_eq(loop_watch(loop, b[0], LOOP_READ, on_pair, &c), 0);
    send_byte(a[1]);
    send_byte(b[1]);
    usleep(10000); /* both ready before the one epoll_wait below */
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(c.calls, 1);
    loop_free(loop);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}
END_TEST

START_TEST(loop_rewatch_skips_stale_event)
{
    /* Unwatch + watch of the same fd in one round: the event collected
     * for the old watcher goes to neither; the new one gets the fd's
     * readiness from the next round on. */
    struct loop *loop = loop_new();
    int a[2], b[2];
    make_pair(a);
    make_pair(b);
    struct pair_ctx c = {.fds = {a[0], b[0]}, .rewatch = true};
    ck_assert_int_eq(loop_watch(loop, a[0], LOOP_READ, on_pair, &c), 0);
    ck_assert_int_eq(loop_watch(loop, b[0], LOOP_READ, on_pair, &c), 0);
    send_byte(a[1]);
    send_byte(b[1]);
    usleep(10000);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(c.replaced_calls, 0);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_ge(c.replaced_calls, 1);
    loop_free(loop);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}
END_TEST

START_TEST(loop_fd_above_1024)
{
    struct rlimit rl;
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2048) {
        ck_assert_msg(rl.rlim_max >= 2048,
                      "hard RLIMIT_NOFILE %lu is below 2048: cannot test",
                      (unsigned long)rl.rlim_max);
        rl.rlim_cur = 2048;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    int sv[2];
    make_pair(sv);
    int high = fcntl(sv[0], F_DUPFD_CLOEXEC, 1500);
    ck_assert_int_ge(high, 1500);
    close(sv[0]);

    struct loop *loop = loop_new();
    struct io_rec low = {0}, r = {0};
    /* A low fd first, so the table has to grow past 1024. */
    ck_assert_int_eq(loop_watch(loop, sv[1], LOOP_WRITE, on_io, &low), 0);
    ck_assert_int_eq(loop_watch(loop, high, LOOP_READ, on_io, &r), 0);
    send_byte(sv[1]);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.fd, high);
    ck_assert_uint_eq(r.events, LOOP_READ);
    ck_assert_int_eq(low.calls, 1);
    loop_free(loop);
    close(high);
    close(sv[1]);
}
END_TEST

/* ---- timers ------------------------------------------------------------ */

struct timer_rec {
    struct order_log *log;
    int tag;
};

static void on_timer_log(struct loop *loop, void *ud)
{
    struct timer_rec *t = ud;
    order_add(t->log, t->tag);
}

static void on_timer_stop(struct loop *loop, void *ud)
{
    loop_stop(loop);
}

START_TEST(loop_timers_deadline_order)
{
    struct loop *loop = loop_new();
    struct order_log log = {0};
    struct timer_rec t30 = {&log, 30}, t10 = {&log, 10}, t20 = {&log, 20};
    ck_assert_ptr_nonnull(loop_timer_add(loop, 30, on_timer_log, &t30));
    ck_assert_ptr_nonnull(loop_timer_add(loop, 10, on_timer_log, &t10));
    ck_assert_ptr_nonnull(loop_timer_add(loop, 20, on_timer_log, &t20));
    ck_assert_ptr_nonnull(loop_timer_add(loop, 40, on_timer_stop, NULL));
    uint64_t start = loop_now_ms(loop); /* the deadlines' base */
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_uint_ge(mono_ms() - start, 40);
    ck_assert_int_eq(log.n, 3);
    ck_assert_int_eq(log.tags[0], 10);
    ck_assert_int_eq(log.tags[1], 20);
    ck_assert_int_eq(log.tags[2], 30);
    loop_free(loop);
}
END_TEST

START_TEST(loop_timers_equal_deadline_insertion_order)
{
    struct loop *loop = loop_new();
    struct order_log log = {0};
    struct timer_rec recs[8];
    for (int i = 0; i < 8; i++) {
        recs[i] = (struct timer_rec){&log, i};
        ck_assert_ptr_nonnull(loop_timer_add(loop, 5, on_timer_log, &recs[i]));
    }
    ck_assert_ptr_nonnull(loop_timer_add(loop, 5, on_timer_stop, NULL));
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(log.n, 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(log.tags[i], i);
    }
    loop_free(loop);
}
END_TEST

START_TEST(loop_timer_cancel_pending)
{
    struct loop *loop = loop_new();
    struct order_log log = {0};
    struct timer_rec a = {&log, 1}, b = {&log, 2}, c = {&log, 3};
    struct loop_timer *ta = loop_timer_add(loop, 5, on_timer_log, &a);
    struct loop_timer *tb = loop_timer_add(loop, 10, on_timer_log, &b);
    struct loop_timer *tc = loop_timer_add(loop, 15, on_timer_log, &c);
    ck_assert_ptr_nonnull(ta);
    ck_assert_ptr_nonnull(tb);
    ck_assert_ptr_nonnull(tc);
    loop_timer_cancel(loop, tb); /* from the middle of the heap */
    loop_timer_cancel(loop, NULL);
    ck_assert_ptr_nonnull(loop_timer_add(loop, 30, on_timer_stop, NULL));
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(log.n, 2);
    ck_assert_int_eq(log.tags[0], 1);
    ck_assert_int_eq(log.tags[1], 3);
    loop_free(loop);
}
END_TEST

struct cancel_ctx {
    struct loop_timer *victim;
    int victim_calls;
    int killer_calls;
};

static void on_killer(struct loop *loop, void *ud)
{
    struct cancel_ctx *c = ud;
    c->killer_calls++;
    loop_timer_cancel(loop, c->victim);
}

static void on_victim(struct loop *loop, void *ud)
{
    struct cancel_ctx *c = ud;
    c->victim_calls++;
}

START_TEST(loop_timer_cancel_due_in_same_round)
{
    struct loop *loop = loop_new();
    struct cancel_ctx c = {0};
    /* Same deadline: both are due in the same round, killer first. */
    ck_assert_ptr_nonnull(loop_timer_add(loop, 5, on_killer, &c));
    c.victim = loop_timer_add(loop, 5, on_victim, &c);
    ck_assert_ptr_nonnull(c.victim);
    usleep(20000);
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(c.killer_calls, 1);
    ck_assert_int_eq(c.victim_calls, 0);
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(c.victim_calls, 0);
    loop_free(loop);
}
END_TEST

struct many_ctx {
    uint64_t deadline;
    int index;
    struct many_state *state;
};

struct many_state {
    int fired;
    int total;
    uint64_t last_deadline;
    int last_index;
    bool sorted;
};

static void on_many(struct loop *loop, void *ud)
{
    struct many_ctx *c = ud;
    struct many_state *s = c->state;
    if (s->fired > 0 &&
        (c->deadline < s->last_deadline ||
         (c->deadline == s->last_deadline && c->index < s->last_index))) {
        s->sorted = false;
    }
    s->last_deadline = c->deadline;
    s->last_index = c->index;
    if (++s->fired == s->total) {
        loop_stop(loop);
    }
}

START_TEST(loop_timers_many_random_fire_sorted)
{
    enum { N = 10000 };
    struct loop *loop = loop_new();
    struct many_ctx *ctx = calloc(N, sizeof(*ctx));
    ck_assert_ptr_nonnull(ctx);
    struct many_state st = {.total = N, .sorted = true};
    uint32_t x = 0x9e3779b9u;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint64_t ms = x % 60; /* many ties on purpose */
        ctx[i] = (struct many_ctx){loop_now_ms(loop) + ms, i, &st};
        ck_assert_ptr_nonnull(loop_timer_add(loop, ms, on_many, &ctx[i]));
    }
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(st.fired, N);
    ck_assert(st.sorted);
    free(ctx);
    loop_free(loop);
}
END_TEST

START_TEST(loop_timers_random_cancel_keeps_heap)
{
    /* Cancelling from anywhere in the heap (moving the last element up or
     * down) keeps the rest in order; cancelled ones never fire. */
    enum { N = 2000 };
    struct loop *loop = loop_new();
    struct many_ctx *ctx = calloc(N, sizeof(*ctx));
    struct loop_timer **handles = calloc(N, sizeof(*handles));
    ck_assert_ptr_nonnull(ctx);
    ck_assert_ptr_nonnull(handles);
    struct many_state st = {.sorted = true};
    uint32_t x = 0x2545f491u;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint64_t ms = x % 40;
        ctx[i] = (struct many_ctx){loop_now_ms(loop) + ms, i, &st};
        handles[i] = loop_timer_add(loop, ms, on_many, &ctx[i]);
        ck_assert_ptr_nonnull(handles[i]);
    }
    int kept = 0;
    for (int i = 0; i < N; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        if (x % 3 == 0) {
            loop_timer_cancel(loop, handles[i]);
            ctx[i].state = NULL; /* on_many would crash on it */
        } else {
            kept++;
        }
    }
    st.total = kept;
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(st.fired, kept);
    ck_assert(st.sorted);
    free(handles);
    free(ctx);
    loop_free(loop);
}
END_TEST

struct rearm_ctx {
    int calls;
};

static void on_rearm(struct loop *loop, void *ud)
{
    struct rearm_ctx *c = ud;
    c->calls++;
    ck_assert_ptr_nonnull(loop_timer_add(loop, 0, on_rearm, c));
}

START_TEST(loop_timer_rearm_zero_waits_next_round)
{
    /* A timer that re-arms itself for "now" must not spin inside one
     * round (it would starve the fds). */
    struct loop *loop = loop_new();
    struct rearm_ctx c = {0};
    ck_assert_ptr_nonnull(loop_timer_add(loop, 0, on_rearm, &c));
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(c.calls, 2);
    loop_free(loop); /* frees the pending re-armed timer */
}
END_TEST

static void on_check_clock(struct loop *loop, void *ud)
{
    uint64_t *seen = ud;
    seen[0] = loop_now_ms(loop);
    seen[1] = mono_ms();
    usleep(5000);
    seen[2] = loop_now_ms(loop); /* cached: unchanged inside the round */
}

START_TEST(loop_now_cached_and_monotonic)
{
    struct loop *loop = loop_new();
    uint64_t before = loop_now_ms(loop);
    uint64_t seen[3] = {0};
    ck_assert_ptr_nonnull(loop_timer_add(loop, 20, on_check_clock, seen));
    while (seen[0] == 0) {
        ck_assert_int_eq(loop_run_once(loop, -1), 0);
    }
    ck_assert_uint_ge(seen[0], before + 20);
    ck_assert_uint_le(seen[0], seen[1]);
    ck_assert_uint_eq(seen[2], seen[0]);
    loop_free(loop);
}
END_TEST

/* ---- signals ----------------------------------------------------------- */

struct sig_rec {
    int calls;
    int signo;
};

static void on_signal(struct loop *loop, int signo, void *ud)
{
    struct sig_rec *r = ud;
    r->calls++;
    r->signo = signo;
}

START_TEST(loop_signal_usr1)
{
    struct loop *loop = loop_new();
    struct sig_rec r = {0};
    ck_assert_int_eq(loop_signal(loop, SIGUSR1, on_signal, &r), 0);
    /* Blocked now: without that the default action would kill us. */
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.signo, SIGUSR1);
    loop_free(loop);
}
END_TEST

START_TEST(loop_signal_per_signal_callbacks)
{
    struct loop *loop = loop_new();
    struct sig_rec r1 = {0}, r2 = {0};
    ck_assert_int_eq(loop_signal(loop, SIGUSR1, on_signal, &r1), 0);
    ck_assert_int_eq(loop_signal(loop, SIGUSR2, on_signal, &r2), 0);
    ck_assert_int_eq(raise(SIGUSR2), 0);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r1.calls, 0);
    ck_assert_int_eq(r2.calls, 1);
    ck_assert_int_eq(r2.signo, SIGUSR2);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    ck_assert_int_eq(r1.calls, 1);
    ck_assert_int_eq(r1.signo, SIGUSR1);
    ck_assert_int_eq(r2.calls, 1);
    loop_free(loop);
}
END_TEST

static volatile sig_atomic_t alarm_hits;

static void on_alarm(int signo)
{
    alarm_hits++;
}

START_TEST(loop_eintr_not_an_error)
{
    /* A handler installed without SA_RESTART interrupts epoll_wait. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGALRM);
    ck_assert_int_eq(sigprocmask(SIG_UNBLOCK, &unblock, NULL), 0);
    struct itimerval it = {.it_value = {.tv_usec = 20000}};
    ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);

    struct loop *loop = loop_new();
    int sv[2];
    make_pair(sv);
    struct io_rec r = {0};
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_READ, on_io, &r), 0);
    ck_assert_int_eq(loop_run_once(loop, 2000), 0);
    ck_assert_int_eq(alarm_hits, 1);
    ck_assert_int_eq(r.calls, 0);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    signal(SIGALRM, SIG_DFL);
}
END_TEST

/* ---- deferred frees, hooks, stop --------------------------------------- */

struct phase_ctx {
    struct order_log log;
    struct loop *loop;
};

enum { TAG_IO = 1, TAG_TIMER, TAG_FREE, TAG_HOOK };

static void phase_free(void *ptr)
{
    struct phase_ctx *c = ptr;
    order_add(&c->log, TAG_FREE);
}

static void phase_io(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct phase_ctx *c = ud;
    order_add(&c->log, TAG_IO);
    ck_assert_int_eq(loop_defer(loop, phase_free, c), 0);
    ck_assert_int_eq(c->log.n, 1); /* not run inside the callback */
    loop_unwatch(loop, fd);
}

static void phase_timer(struct loop *loop, void *ud)
{
    struct phase_ctx *c = ud;
    order_add(&c->log, TAG_TIMER);
}

static void phase_hook(struct loop *loop, void *ud)
{
    struct phase_ctx *c = ud;
    order_add(&c->log, TAG_HOOK);
}

START_TEST(loop_defer_runs_after_dispatch)
{
    struct loop *loop = loop_new();
    struct phase_ctx c = {.loop = loop};
    int sv[2];
    make_pair(sv);
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_WRITE, phase_io, &c), 0);
    ck_assert_ptr_nonnull(loop_timer_add(loop, 0, phase_timer, &c));
    ck_assert_int_eq(loop_before_sleep(loop, phase_hook, &c), 0);
    ck_assert_int_eq(loop_run_once(loop, 1000), 0);
    /* The fixed order: fds, timers, deferred frees, hooks. */
    ck_assert_int_eq(c.log.n, 4);
    ck_assert_int_eq(c.log.tags[0], TAG_IO);
    ck_assert_int_eq(c.log.tags[1], TAG_TIMER);
    ck_assert_int_eq(c.log.tags[2], TAG_FREE);
    ck_assert_int_eq(c.log.tags[3], TAG_HOOK);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static void count_free(void *ptr)
{
    (*(int *)ptr)++;
}

START_TEST(loop_free_runs_pending_defers)
{
    struct loop *loop = loop_new();
    int freed = 0;
    ck_assert_int_eq(loop_defer(loop, count_free, &freed), 0);
    ck_assert_int_eq(loop_defer(loop, free, malloc(32)), 0);
    ck_assert_ptr_nonnull(loop_timer_add(loop, 100000, on_timer_stop, NULL));
    loop_free(loop); /* ASan/valgrind: the malloc above must not leak */
    ck_assert_int_eq(freed, 1);
    loop_free(NULL);
}
END_TEST

static void count_hook(struct loop *loop, void *ud)
{
    (*(int *)ud)++;
}

START_TEST(loop_hook_every_iteration)
{
    struct loop *loop = loop_new();
    int a = 0, b = 0;
    ck_assert_int_eq(loop_before_sleep(loop, count_hook, &a), 0);
    ck_assert_int_eq(loop_before_sleep(loop, count_hook, &b), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(loop_run_once(loop, 0), 0);
    }
    ck_assert_int_eq(a, 3);
    ck_assert_int_eq(b, 3);
    /* removing one leaves the other; removing an unknown one is harmless */
    loop_before_sleep_remove(loop, count_hook, &a);
    loop_before_sleep_remove(loop, count_hook, &a);
    ck_assert_int_eq(loop_run_once(loop, 0), 0);
    ck_assert_int_eq(a, 3);
    ck_assert_int_eq(b, 4);
    loop_free(loop);
}
END_TEST

struct stop_ctx {
    int hook_calls;
    int io_calls;
};

static void stop_io(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct stop_ctx *c = ud;
    c->io_calls++;
    loop_stop(loop);
}

static void stop_hook(struct loop *loop, void *ud)
{
    struct stop_ctx *c = ud;
    c->hook_calls++;
}

START_TEST(loop_stop_from_callback)
{
    struct loop *loop = loop_new();
    struct stop_ctx c = {0};
    int sv[2];
    make_pair(sv);
    /* Always writable: without loop_stop this would never return. */
    ck_assert_int_eq(loop_watch(loop, sv[0], LOOP_WRITE, stop_io, &c), 0);
    ck_assert_int_eq(loop_before_sleep(loop, stop_hook, &c), 0);
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(c.io_calls, 1);
    ck_assert_int_eq(c.hook_calls, 1); /* the iteration was finished */
    /* The loop can run again after a stop. */
    ck_assert_int_eq(loop_run(loop), 0);
    ck_assert_int_eq(c.io_calls, 2);
    loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static Suite *loop_suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc;

    tc = tcase_create("fd");
    tcase_add_test(tc, loop_read_readiness);
    tcase_add_test(tc, loop_write_readiness);
    tcase_add_test(tc, loop_hangup_reports_error);
    tcase_add_test(tc, loop_watch_twice_refused);
    tcase_add_test(tc, loop_unwatch_drops_collected_event);
    tcase_add_test(tc, loop_rewatch_skips_stale_event);
    tcase_add_test(tc, loop_fd_above_1024);
    suite_add_tcase(s, tc);

    tc = tcase_create("timer");
    tcase_add_test(tc, loop_timers_deadline_order);
    tcase_add_test(tc, loop_timers_equal_deadline_insertion_order);
    tcase_add_test(tc, loop_timer_cancel_pending);
    tcase_add_test(tc, loop_timer_cancel_due_in_same_round);
    tcase_add_test(tc, loop_timers_many_random_fire_sorted);
    tcase_add_test(tc, loop_timers_random_cancel_keeps_heap);
    tcase_add_test(tc, loop_timer_rearm_zero_waits_next_round);
    tcase_add_test(tc, loop_now_cached_and_monotonic);
    suite_add_tcase(s, tc);

    tc = tcase_create("signal");
    tcase_add_test(tc, loop_signal_usr1);
    tcase_add_test(tc, loop_signal_per_signal_callbacks);
    tcase_add_test(tc, loop_eintr_not_an_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("phases");
    tcase_add_test(tc, loop_defer_runs_after_dispatch);
    tcase_add_test(tc, loop_free_runs_pending_defers);
    tcase_add_test(tc, loop_hook_every_iteration);
    tcase_add_test(tc, loop_stop_from_callback);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loop_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
