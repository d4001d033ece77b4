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
