/*
 * hook.h: runs an administrator's command (upstream.peer_hook) without
 * blocking the loop.
 *
 * The command string is the administrator's, run by /bin/sh with the
 * arguments as positional parameters ("$@"), the way git runs hooks:
 * /bin/sh -c '<command> "$@"' fedgate-peer-hook ARG... It gets stdin
 * text (secrets go there, never on the command line, where ps shows
 * them), a clean signal mask, and the environment of fedgate plus the
 * given variables. Its stdout and stderr together are kept up to
 * HOOK_OUTPUT_MAX bytes (the rest is counted, not kept). A command that
 * runs past its timeout is killed (SIGKILL to its process group).
 */
#ifndef FEDGATE_HOOK_H
#define FEDGATE_HOOK_H

#include <stddef.h>

struct loop;
struct hook;

#define HOOK_OUTPUT_MAX 2000

/* How a run ended. */
struct hook_result {
    int exit_code;      /* when exited; else -1 */
    int signo;          /* when killed by a signal; else 0 */
    int timed_out;      /* 1 when fedgate killed it at the timeout */
    const char *output; /* stdout + stderr, NUL-terminated, at most
                         * HOOK_OUTPUT_MAX bytes; borrowed for the call */
    size_t dropped;     /* output bytes beyond HOOK_OUTPUT_MAX */
};

/* Called once when the command has ended and its output is read. The
 * hook is freed after the callback returns. */
typedef void hook_done_fn(void *ud, const struct hook_result *res);

/*
 * Starts command with args (argc strings) as "$@", stdin_text (may be
 * NULL: empty) on its stdin and env (NULL-terminated "NAME=value"
 * strings, may be NULL) added to the environment. 0 with the running
 * hook in *out (owned by the loop until done is called; hook_cancel
 * stops it early), or ERR_NOMEM / ERR_SYS (logged; nothing runs and
 * done is never called).
 */
int hook_run(struct loop *loop,
             const char *command,
             const char *const *args,
             size_t argc,
             const char *stdin_text,
             const char *const *env,
             unsigned timeout_ms,
             hook_done_fn *done,
             void *ud,
             struct hook **out);

/* Kills a running hook and frees it; done is not called. Accepts NULL. */
void hook_cancel(struct hook *h);

/* One line for a log or an admin: "exit 0", "exit 3", "killed by signal
 * 9", "timed out after N s". */
void hook_describe(const struct hook_result *res,
                   unsigned timeout_ms,
                   char *out,
                   size_t outlen);

#endif
