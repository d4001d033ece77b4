/*
 * log.c: the process-wide logger (a documented singleton).
 * stderr lines carry a UTC timestamp and level; syslog gets the level as
 * priority. Formatting happens only when the level is enabled.
 */
#include "config.h"

#include "log.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>

static struct {
    enum log_level level;
    bool use_syslog;
} log_state = {LOG_LEVEL_INFO, false};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum log_level level, bool use_syslog, const char *ident)
{
    if (log_state.use_syslog && !use_syslog) {
        closelog();
    }
    log_state.level = level;
    log_state.use_syslog = use_syslog;
    if (use_syslog) {
        openlog(ident != NULL ? ident : "fedgate", LOG_PID | LOG_NDELAY,
                LOG_DAEMON);
    }
}

void log_set_level(enum log_level level)
{
    log_state.level = level;
}

enum log_level log_get_level(void)
{
    return log_state.level;
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return ERR_INVAL;
}

const char *log_level_name(enum log_level level)
{
    if ((size_t)level >= sizeof(level_names) / sizeof(level_names[0])) {
        return "unknown";
    }
    return level_names[level];
}

static void
log_vwrite(enum log_level level, const char *who, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
log_vwrite(enum log_level level, const char *who, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (log_state.use_syslog) {
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        if (who != NULL) {
            syslog(prio[level], "%s: %s", who, msg);
        } else {
            syslog(prio[level], "%s", msg);
        }
        return;
    }
    struct timeval tv;
    struct tm tm;
    char stamp[32];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    if (who != NULL) {
        fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", stamp,
                (long)(tv.tv_usec / 1000), log_level_name(level), who, msg);
    } else {
        fprintf(stderr, "%s.%03ldZ %-5s %s\n", stamp, (long)(tv.tv_usec / 1000),
                log_level_name(level), msg);
    }
}

void log_write(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, NULL, fmt, ap);
    va_end(ap);
}

void log_conn(enum log_level level, const char *who, const char *fmt, ...)
{
    if (!log_enabled(level)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, who, fmt, ap);
    va_end(ap);
}

/* Bytes one input byte takes once escaped. */
static size_t log_escaped_width(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '\\' ? 1 : 4;
}

char *
log_escape(const char *data, size_t len, size_t max, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t n = len < max ? len : max;
    if (outsz == 0) {
        return out;
    }
    /* Cut when max or the output size stops us; then keep room for the
     * "..." that says so, and never split an escape. */
    size_t room = outsz - 1;
    size_t need = 0;
    for (size_t i = 0; i < n && need <= room; i++) {
        need += log_escaped_width((unsigned char)data[i]);
    }
    bool cut = n < len || need > room;
    size_t dots = cut ? (room < 3 ? room : 3) : 0;
    size_t limit = room - dots;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (o + log_escaped_width(c) > limit) {
            break;
        }
        if (log_escaped_width(c) == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    memcpy(out + o, "...", dots);
    o += dots;
    out[o] = '\0';
    return out;
}

bool log_limit_allow(struct log_limit *l,
                     unsigned long long now_ms,
                     unsigned max,
                     unsigned long *suppressed)
{
    if (now_ms >= l->window_ms + 1000u || now_ms < l->window_ms) {
        l->window_ms = now_ms;
        l->used = 0;
    }
    if (l->used >= max) {
        l->suppressed++;
        return false;
    }
    l->used++;
    *suppressed = l->suppressed;
    l->suppressed = 0;
    return true;
}
