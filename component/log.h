/*
 * log.h: levelled logging to stderr or syslog.
 *
 * The logger is one of fedgate's documented singletons: one process, one
 * log destination. Levels are checked before any formatting (log_enabled()),
 * so a disabled debug line costs one comparison. Lines about a connection
 * name it through the `who` argument of log_conn(): "upstream b.test
 * 127.0.0.1:5347" and the like. Peer bytes go through log_escape() first.
 */
#ifndef FEDGATE_LOG_H
#define FEDGATE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

/* Sets the threshold and destination. ident is used for syslog. */
void log_setup(enum log_level level, bool use_syslog, const char *ident);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug"; 0 or ERR_INVAL. */
int log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

static inline bool log_enabled(enum log_level level)
{
    return level <= log_get_level();
}

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes "who: message"; who names the connection or subsystem. */
void log_conn(enum log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Copies at most max bytes of untrusted data into out (size outsz), with
 * control characters and non-ASCII escaped as \xNN and a trailing "..." when
 * cut. Returns out.
 */
char *
log_escape(const char *data, size_t len, size_t max, char *out, size_t outsz);

/*
 * A budget of lines per second for a message a peer can make fedgate
 * repeat (one per bounced stanza, say), so that a flood cannot flood the
 * log. Owned by whoever logs; zeroed to start.
 */
struct log_limit {
    unsigned long long window_ms; /* start of the current second */
    unsigned used;                /* lines in it */
    unsigned long suppressed;     /* lines held back since the last one */
};

/*
 * Whether a line may go out at now_ms, at most max per second. When it
 * may, *suppressed gets how many were held back before it (to say so in
 * the line), and the count starts over.
 */
bool log_limit_allow(struct log_limit *l,
                     unsigned long long now_ms,
                     unsigned max,
                     unsigned long *suppressed);

#define LOG_AT(lvl, ...)                 \
    do {                                 \
        if (log_enabled(lvl)) {          \
            log_write(lvl, __VA_ARGS__); \
        }                                \
    } while (0)
#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
