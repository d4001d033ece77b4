/*
 * hook.c: runs an administrator's command in the background (see hook.h).
 *
 * on start:   posix_spawn of /bin/sh in a process group of its own, with
 *             the default signal mask and dispositions (fedgate blocks
 *             its signals for signalfd; a child must not inherit that),
 *             stdin from a pipe written at once (a few hundred bytes,
 *             well under the pipe buffer) and closed, stdout+stderr into
 *             one pipe watched by the loop, a pidfd watched for the exit
 *             (or, where pidfd_open is missing, as under valgrind 3.19,
 *             waitpid polled every 50 ms),
 *             and a timer
 * on output:  kept up to HOOK_OUTPUT_MAX bytes, the rest counted
 * on exit:    reaped at once; the output pipe is drained while it is
 *             readable; done is called once both the process has exited
 *             and the pipe reached EOF (or the process exited and its
 *             group is gone: a leftover grandchild holding the pipe does
 *             not keep the admin waiting past the timeout)
 * on timeout: SIGKILL to the process group, then as on exit
 */
#include "config.h"

#include "hook.h"

#include "err.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct hook {
    struct loop *loop;
    pid_t pid;
    int pidfd;  /* -1 once reaped */
    int out_fd; /* -1 at EOF */
    struct loop_timer *timer;
    struct loop_timer *poll; /* without pidfd_open: waitpid every so often */
    bool exited;             /* reaped */
    hook_done_fn *done;
    void *ud;
    struct hook_result res;
    char output[HOOK_OUTPUT_MAX + 1];
    size_t outlen;
};

static void hook_close_fd(struct hook *h, int *fd)
{
    if (*fd >= 0) {
        loop_unwatch(h->loop, *fd);
        close(*fd);
        *fd = -1;
    }
}

static void hook_release(struct hook *h)
{
    hook_close_fd(h, &h->out_fd);
    hook_close_fd(h, &h->pidfd);
    loop_timer_cancel(h->loop, h->timer);
    h->timer = NULL;
    loop_timer_cancel(h->loop, h->poll);
    h->poll = NULL;
    free(h);
}

static void hook_free_deferred(void *p)
{
    free(p);
}

/* Calls done once the process is reaped and the output read. */
static void hook_maybe_finish(struct hook *h)
{
    if (!h->exited || h->out_fd >= 0 || h->done == NULL) {
        return;
    }
    loop_timer_cancel(h->loop, h->timer);
    h->timer = NULL;
    loop_timer_cancel(h->loop, h->poll);
    h->poll = NULL;
    h->output[h->outlen] = '\0';
    h->res.output = h->output;
    hook_done_fn *done = h->done;
    h->done = NULL;
    done(h->ud, &h->res);
    if (loop_defer(h->loop, hook_free_deferred, h) != 0) {
        free(h);
    }
}

static void hook_on_output(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct hook *h = ud;
    char buf[4096];
    (void)loop;
    (void)events;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            size_t room = HOOK_OUTPUT_MAX - h->outlen;
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(h->output + h->outlen, buf, take);
            h->outlen += take;
            h->res.dropped += (size_t)n - take;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        break; /* EOF or a read error: no more output either way */
    }
    hook_close_fd(h, &h->out_fd);
    hook_maybe_finish(h);
}

/* Reaps the child (waiting for it unless nohang). True once reaped. */
static bool hook_wait(struct hook *h, bool nohang)
{
    int status = 0;
    pid_t r;
    if (h->exited) {
        return true;
    }
    do {
        r = waitpid(h->pid, &status, nohang ? WNOHANG : 0);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        return false;
    }
    h->exited = true;
    if (r == h->pid && WIFEXITED(status)) {
        h->res.exit_code = WEXITSTATUS(status);
    } else if (r == h->pid && WIFSIGNALED(status)) {
        h->res.signo = WTERMSIG(status);
    }
    hook_close_fd(h, &h->pidfd);
    return true;
}

static void hook_reap(struct hook *h)
{
    (void)hook_wait(h, false);
}

static void hook_on_exit(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct hook *h = ud;
    (void)loop;
    (void)fd;
    (void)events;
    hook_reap(h);
    if (h->out_fd >= 0) {
        /* what the shell wrote before it exited is in the pipe now */
        hook_on_output(h->loop, h->out_fd, 0, h);
        return; /* finishes at EOF, or at the timeout */
    }
    hook_maybe_finish(h);
}

#define HOOK_POLL_MS 50

/* Without a pidfd (valgrind 3.19 does not know pidfd_open): looks for the
 * exit every HOOK_POLL_MS. */
static void hook_on_poll(struct loop *loop, void *ud)
{
    struct hook *h = ud;
    h->poll = NULL;
    if (!hook_wait(h, true)) {
        h->poll = loop_timer_add(loop, HOOK_POLL_MS, hook_on_poll, h);
        if (h->poll != NULL) {
            return;
        }
        hook_reap(h); /* no timer: wait for it here */
    }
    hook_on_exit(loop, -1, 0, h);
}

static void hook_on_timeout(struct loop *loop, void *ud)
{
    struct hook *h = ud;
    (void)loop;
    h->timer = NULL;
    if (!h->exited) {
        h->res.timed_out = 1;
        (void)kill(-h->pid, SIGKILL);
        hook_reap(h);
    } else {
        /* exited, but something it started still holds the pipe */
        (void)kill(-h->pid, SIGKILL);
    }
    if (h->out_fd >= 0) {
        hook_on_output(h->loop, h->out_fd, 0, h);
    }
    hook_close_fd(h, &h->out_fd);
    hook_maybe_finish(h);
}

/* The environment of fedgate plus extra: a new array of borrowed strings. */
static char **hook_environment(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ != NULL && environ[n] != NULL) {
        n++;
    }
    while (extra != NULL && extra[m] != NULL) {
        m++;
    }
    char **env = calloc(n + m + 1, sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < m; i++) {
        env[i] = (char *)extra[i]; /* posix_spawn's type; not written */
    }
    for (size_t i = 0; i < n; i++) {
        env[m + i] = environ[i];
    }
    return env;
}

/* "/bin/sh", "-c", "<command> \"$@\"", "fedgate-peer-hook", args..., NULL */
static char **hook_argv(const char *script, const char *const *args, size_t n)
{
    char **argv = calloc(n + 5, sizeof(*argv));
    if (argv == NULL) {
        return NULL;
    }
    argv[0] = (char *)"/bin/sh";
    argv[1] = (char *)"-c";
    argv[2] = (char *)script;
    argv[3] = (char *)"fedgate-peer-hook";
    for (size_t i = 0; i < n; i++) {
        argv[4 + i] = (char *)args[i];
    }
    return argv;
}

static int hook_spawn(struct hook *h,
                      const char *command,
                      const char *const *args,
                      size_t argc,
                      const char *const *extra_env,
                      int in_fd,
                      int out_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    char *script = NULL;
    char **argv = NULL, **env = NULL;
    int rc = ERR_NOMEM;

    if (asprintf(&script, "%s \"$@\"", command) < 0) {
        return ERR_NOMEM;
    }
    argv = hook_argv(script, args, argc);
    env = hook_environment(extra_env);
    if (argv == NULL || env == NULL) {
        goto out_free;
    }
    sigemptyset(&none);
    sigfillset(&all);
    if (posix_spawn_file_actions_init(&fa) != 0) {
        goto out_free;
    }
    if (posix_spawnattr_init(&attr) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        goto out_free;
    }
    int e = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    e = e ? e : posix_spawnattr_setsigmask(&attr, &none);
    e = e ? e : posix_spawnattr_setsigdefault(&attr, &all);
    e = e ? e : posix_spawnattr_setpgroup(&attr, 0);
    e = e ? e
          : posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF |
                                                POSIX_SPAWN_SETPGROUP);
    e = e ? e : posix_spawn(&h->pid, "/bin/sh", &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        errno = e;
        log_error("peer hook: cannot start /bin/sh: %s", strerror(e));
        rc = ERR_SYS;
    } else {
        rc = 0;
    }
out_free:
    free(script);
    free(argv);
    free(env);
    return rc;
}

/* Writes text to the child's stdin; short texts fit the pipe at once. */
static void hook_feed(int fd, const char *text)
{
    size_t len = text != NULL ? strlen(text) : 0;
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            log_warn("peer hook: could not write its input: %s",
                     n < 0 ? strerror(errno) : "short write");
            return;
        }
        text += n;
        len -= (size_t)n;
    }
}

int hook_run(struct loop *loop,
             const char *command,
             const char *const *args,
             size_t argc,
             const char *stdin_text,
             const char *const *env,
             unsigned timeout_ms,
             hook_done_fn *done,
             void *ud,
             struct hook **out)
{
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    struct hook *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return ERR_NOMEM;
    }
    h->loop = loop;
    h->pidfd = -1;
    h->out_fd = -1;
    h->done = done;
    h->ud = ud;
    h->res.exit_code = -1;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0) {
        log_error("peer hook: pipe: %s", strerror(errno));
        goto fail_sys;
    }
    int rc = hook_spawn(h, command, args, argc, env, in[0], outp[1]);
    close(in[0]);
    close(outp[1]);
    in[0] = outp[1] = -1;
    if (rc != 0) {
        goto fail;
    }
    hook_feed(in[1], stdin_text);
    close(in[1]);
    in[1] = -1;
    h->out_fd = outp[0];
    outp[0] = -1;
    h->pidfd = pidfd_open(h->pid, 0);
    bool watched =
        h->pidfd >= 0
            ? loop_watch(loop, h->pidfd, EPOLLIN, hook_on_exit, h) == 0
            : (h->poll = loop_timer_add(loop, HOOK_POLL_MS, hook_on_poll, h)) !=
                  NULL;
    if (!watched || fcntl(h->out_fd, F_SETFL, O_NONBLOCK) != 0 ||
        loop_watch(loop, h->out_fd, EPOLLIN, hook_on_output, h) != 0 ||
        (h->timer = loop_timer_add(loop, timeout_ms, hook_on_timeout, h)) ==
            NULL) {
        log_error("peer hook: cannot watch the command: %s", strerror(errno));
        (void)kill(-h->pid, SIGKILL);
        hook_reap(h);
        hook_release(h);
        return ERR_SYS;
    }
    *out = h;
    return 0;
fail_sys:
    rc = ERR_SYS;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) {
            close(in[i]);
        }
        if (outp[i] >= 0) {
            close(outp[i]);
        }
    }
    free(h);
    return rc;
}

void hook_cancel(struct hook *h)
{
    if (h == NULL) {
        return;
    }
    if (!h->exited) {
        (void)kill(-h->pid, SIGKILL);
        hook_reap(h);
    }
    h->done = NULL;
    hook_release(h);
}

void hook_describe(const struct hook_result *res,
                   unsigned timeout_ms,
                   char *out,
                   size_t outlen)
{
    if (res->timed_out) {
        snprintf(out, outlen, "timed out after %u s, killed",
                 (timeout_ms + 999) / 1000);
    } else if (res->signo != 0) {
        snprintf(out, outlen, "killed by signal %d", res->signo);
    } else {
        snprintf(out, outlen, "exit %d", res->exit_code);
    }
}
