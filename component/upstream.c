/*
 * upstream.c: XEP-0114 links to the home server, on the one event loop.
 *
 * Per link:
 *   start:        non-blocking connect, connect timer
 *   connected:    stream_start, handshake timer, read and write
 *   ready:        backoff reset, queued stanzas flushed in order
 *   failure:      (refused, reset, timeout, stream error such as conflict
 *                 or not-authorized) log domain + reason, close the
 *                 socket, arm the retry timer with the next backoff delay
 *   removed:      clean close, queue handed back, freed after the loop
 *                 iteration (never inside its own callback)
 * Stanzas for a link that is not ready wait in its bounded queue; an
 * expiry timer hands back those older than the queue timeout.
 */
#include "config.h"

#include "upstream.h"

#include "backoff.h"
#include "err.h"
#include "jid.h"
#include "log.h"
#include "loop.h"
#include "squeue.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UPSTREAM_READ_CHUNK      16384
#define UPSTREAM_READS_PER_EVENT 8
#define UPSTREAM_CLOSE_GRACE_MS  2000
#define UPSTREAM_PAD_MAX         4096

struct upstream_link {
    struct upstream *up;
    char *domain;
    char *secret;
    char who[300]; /* "upstream DOMAIN HOST:PORT" for log lines */
    enum upstream_link_state state;
    int fd;
    struct stream *stream;
    struct backoff backoff;
    struct squeue queue;
    struct loop_timer *timer;  /* connect, handshake, close or retry */
    struct loop_timer *expiry; /* oldest queued stanza times out */
    unsigned failures;
    unsigned connects;
    char last_error[256];
    size_t pad_owed; /* whitespace owed after a split write (see flush) */
    bool removed;    /* no longer configured: free once closed */
    bool flush_due;  /* stanzas written this loop pass: flush before
                      * sleeping, a burst in few writes */
    struct log_limit full_log; /* "queue full" lines */
    bool congested;            /* counted in up->ncongested */
    bool paused;               /* upstream_pause: not reading */
    bool stream_ended;         /* the stream reported its end during a feed */
    struct upstream_link *next;
};

struct upstream {
    struct loop *loop;
    struct upstream_settings settings;
    char *host;
    struct upstream_callbacks cb;
    void *ud;
    struct upstream_link *links;
    size_t nlinks;
    bool shutting_down;
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    struct loop_timer *shutdown_timer;
    bool any_due;      /* some link's flush_due is set */
    size_t ncongested; /* links congested (see upstream_callbacks) */
    bool hooked;       /* upstream_flush_due is a before-sleep hook */
};

static void link_connect(struct upstream_link *l);
static void link_fail(struct upstream_link *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void link_on_io(struct loop *loop, int fd, unsigned events, void *ud);
static void link_flush_queue(struct upstream_link *l);
static void upstream_check_shutdown(struct upstream *up);

const char *upstream_state_name(enum upstream_link_state state)
{
    switch (state) {
    case UPSTREAM_WAITING:
        return "waiting";
    case UPSTREAM_CONNECTING:
        return "connecting";
    case UPSTREAM_HANDSHAKING:
        return "handshaking";
    case UPSTREAM_READY:
        return "ready";
    case UPSTREAM_CLOSING:
        return "closing";
    }
    return "unknown";
}

static void
link_set_timer(struct upstream_link *l, uint64_t ms, loop_timer_fn *fn)
{
    loop_timer_cancel(l->up->loop, l->timer);
    l->timer = loop_timer_add(l->up->loop, ms, fn, l);
    if (l->timer == NULL) {
        log_conn(LOG_LEVEL_ERROR, l->who, "cannot arm a timer: out of memory");
    }
}

/* Hands every queued stanza back to the owner. */
/* Backpressure: a ready link is congested while its queue is
 * (squeue_congested, with hysteresis), until it goes down
 * (a home server that is away is waited for by the queue and its
 * timeout, not by stopping every peer). */
static void link_check_congestion(struct upstream_link *l)
{
    struct upstream *up = l->up;
    const struct squeue *q = &l->queue;
    bool ready = l->state == UPSTREAM_READY && l->fd >= 0 && !l->removed;
    bool now = ready && squeue_congested(q, l->congested);
    if (!l->congested && now) {
        l->congested = true;
        if (up->ncongested++ == 0 && up->cb.congestion != NULL) {
            log_conn(LOG_LEVEL_INFO, l->who,
                     "congested (%zu stanzas queued): peers wait", q->count);
            up->cb.congestion(up->ud, true);
        }
    } else if (l->congested && !now) {
        l->congested = false;
        if (--up->ncongested == 0 && up->cb.congestion != NULL) {
            log_conn(LOG_LEVEL_INFO, l->who, "no longer congested");
            up->cb.congestion(up->ud, false);
        }
    }
}

static void link_give_back_queue(struct upstream_link *l, const char *text)
{
    struct xml_node *st;
    while ((st = squeue_pop(&l->queue)) != NULL) {
        l->up->cb.undeliverable(l->up->ud, st, "remote-server-timeout",
                                text); /* transferred */
    }
    loop_timer_cancel(l->up->loop, l->expiry);
    l->expiry = NULL;
    link_check_congestion(l);
}

/* Closes the socket and the stream; the link keeps its queue. */
static void link_close_socket(struct upstream_link *l)
{
    if (l->fd >= 0) {
        loop_unwatch(l->up->loop, l->fd);
        close(l->fd);
        l->fd = -1;
    }
    link_check_congestion(l); /* a link without a socket is not ready */
    if (l->stream != NULL) {
        if (loop_defer(l->up->loop, (loop_free_fn *)stream_free, l->stream) !=
            0) {
            /* Not inside the stream's callback here, so freeing now is
             * safe; deferring is only the cautious path. */
            stream_free(l->stream);
        }
        l->stream = NULL;
    }
    l->pad_owed = 0;
    l->stream_ended = false;
}

static void link_free(void *ptr)
{
    struct upstream_link *l = ptr;
    stream_free(l->stream);
    squeue_clear(&l->queue);
    if (l->secret != NULL) {
        explicit_bzero(l->secret, strlen(l->secret));
        free(l->secret);
    }
    free(l->domain);
    free(l);
}

/* Unlinks a removed link from the set and frees it after this round. */
static void link_destroy(struct upstream_link *l)
{
    struct upstream *up = l->up;
    for (struct upstream_link **pp = &up->links; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            up->nlinks--;
            break;
        }
    }
    link_close_socket(l);
    link_give_back_queue(l, "the stream for this domain was removed");
    loop_timer_cancel(up->loop, l->timer);
    l->timer = NULL;
    if (loop_defer(up->loop, link_free, l) != 0) {
        link_free(l);
    }
}

static void link_on_retry(struct loop *loop, void *ud)
{
    struct upstream_link *l = ud;
    l->timer = NULL;
    link_connect(l);
}

/* The link is down: closed socket, then either gone or waiting to retry. */
static void link_down(struct upstream_link *l)
{
    link_close_socket(l);
    loop_timer_cancel(l->up->loop, l->timer);
    l->timer = NULL;
    if (l->removed || l->up->shutting_down) {
        if (l->removed) {
            link_destroy(l);
        } else {
            l->state = UPSTREAM_WAITING;
        }
        upstream_check_shutdown(l->up);
        return;
    }
    uint32_t delay = backoff_next(&l->backoff);
    l->state = UPSTREAM_WAITING;
    log_conn(LOG_LEVEL_INFO, l->who, "retrying in %u ms (attempt %u)",
             (unsigned)delay, l->failures + 1);
    link_set_timer(l, delay, link_on_retry);
}

static void link_fail(struct upstream_link *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->last_error, sizeof(l->last_error), fmt, ap);
    va_end(ap);
    l->failures++;
    log_conn(LOG_LEVEL_WARN, l->who, "%s", l->last_error);
    link_down(l);
}

/* Writes pending output. Returns false if the link failed. */
static bool link_flush(struct upstream_link *l)
{
    struct buf *out = stream_output(l->stream);
    while (buf_size(out) > 0) {
        ssize_t n = write(l->fd, buf_peek(out), buf_size(out));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            link_fail(l, "write failed: %s", strerror(errno));
            return false;
        }
        if ((size_t)n < buf_size(out)) {
            /* A stanza split across writes can stall a receiver whose
             * expat defers reparsing (Prosody 0.12 on Debian 12) until
             * about twice the bytes seen so far are available: owe it
             * some whitespace once the rest is out. */
            size_t owe = l->pad_owed + (size_t)n;
            l->pad_owed = owe < UPSTREAM_PAD_MAX ? owe : UPSTREAM_PAD_MAX;
        }
        buf_consume(out, (size_t)n);
        if (buf_size(out) == 0 && l->pad_owed > 0) {
            char pad[UPSTREAM_PAD_MAX];
            memset(pad, ' ', l->pad_owed);
            out->max += l->pad_owed;
            (void)buf_append(out, pad, l->pad_owed);
            out->max -= l->pad_owed;
            l->pad_owed = 0;
        }
    }
    unsigned events = l->paused ? 0u : (unsigned)LOOP_READ;
    if (buf_size(out) > 0) {
        events |= LOOP_WRITE;
    } else if (l->queue.count > 0 && l->state == UPSTREAM_READY) {
        /* the output drained: what waits in the queue goes next, from
         * the before-sleep hook (no write event would come for it) */
        l->flush_due = true;
        l->up->any_due = true;
    }
    if (loop_modify(l->up->loop, l->fd, events) != 0) {
        link_fail(l, "cannot watch the socket: %s", strerror(errno));
        return false;
    }
    return true;
}

static void link_on_timeout(struct loop *loop, void *ud)
{
    struct upstream_link *l = ud;
    l->timer = NULL;
    switch (l->state) {
    case UPSTREAM_CONNECTING:
        link_fail(l, "connect timed out after %u ms",
                  l->up->settings.connect_timeout_ms);
        break;
    case UPSTREAM_HANDSHAKING:
        link_fail(l, "no handshake reply within %u ms",
                  l->up->settings.handshake_timeout_ms);
        break;
    case UPSTREAM_CLOSING:
        log_conn(LOG_LEVEL_INFO, l->who,
                 "home server did not close the stream in time; closing");
        link_down(l);
        break;
    default:
        break;
    }
}

static void link_on_ready(void *ud)
{
    struct upstream_link *l = ud;
    if (l->fd < 0) {
        return; /* went down while this feed was being parsed */
    }
    l->state = UPSTREAM_READY;
    l->connects++;
    l->failures = 0;
    l->last_error[0] = '\0';
    backoff_reset(&l->backoff);
    loop_timer_cancel(l->up->loop, l->timer);
    l->timer = NULL;
    log_conn(LOG_LEVEL_INFO, l->who, "stream ready (fd %d, stream id %s)",
             l->fd, stream_id(l->stream));
    link_flush_queue(l);
}

static void link_on_stanza(void *ud, struct xml_node *st)
{
    struct upstream_link *l = ud;
    l->up->cb.stanza(l->up->ud, l->domain, st); /* transferred */
}

static void link_on_closed(void *ud, const struct stream_close_info *info)
{
    struct upstream_link *l = ud;
    l->stream_ended = true;
    if (l->state == UPSTREAM_CLOSING && info->err == 0) {
        snprintf(l->last_error, sizeof(l->last_error), "closed");
        return;
    }
    const char *hint = "";
    if (info->condition != NULL &&
        strcmp(info->condition, "not-authorized") == 0) {
        hint = " (check the component secret on both sides, and that the "
               "home server has this domain as a component: ejabberd refuses "
               "an unknown one this way)";
    } else if (info->condition != NULL &&
               strcmp(info->condition, "conflict") == 0) {
        hint = " (another component is connected for this domain)";
    } else if (info->condition != NULL &&
               strcmp(info->condition, "host-unknown") == 0) {
        hint = " (the home server has no component entry for this domain)";
    }
    snprintf(l->last_error, sizeof(l->last_error), "%s %s%s%s%s%s",
             info->by_peer ? "home server closed the stream:"
                           : "closing the stream:",
             info->condition != NULL ? info->condition : "closed",
             info->text != NULL ? " \"" : "",
             info->text != NULL ? info->text : "",
             info->text != NULL ? "\"" : "", hint);
}

/* Feeds what the socket has; returns false if the link went down. */
static bool link_read(struct upstream_link *l)
{
    char data[UPSTREAM_READ_CHUNK];
    for (int i = 0; i < UPSTREAM_READS_PER_EVENT; i++) {
        ssize_t n = read(l->fd, data, sizeof(data));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true;
            }
            link_fail(l, "read failed: %s", strerror(errno));
            return false;
        }
        if (n == 0) {
            if (l->state == UPSTREAM_CLOSING) {
                link_down(l);
            } else {
                link_fail(l, "home server closed the connection");
            }
            return false;
        }
        stream_feed(l->stream, data, (size_t)n);
        if (l->fd < 0) {
            return false; /* a callback took the link down */
        }
        if (l->paused) {
            break; /* the rest waits in the socket */
        }
        if (l->stream_ended) {
            enum upstream_link_state was = l->state;
            (void)link_flush(l);
            if (l->fd < 0) {
                return false;
            }
            if (was == UPSTREAM_CLOSING) {
                link_down(l);
            } else {
                l->failures++;
                log_conn(LOG_LEVEL_WARN, l->who, "%s", l->last_error);
                link_down(l);
            }
            return false;
        }
    }
    return true;
}

static void link_on_io(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct upstream_link *l = ud;
    if (l->state == UPSTREAM_CONNECTING) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            link_fail(l, "connect failed: %s", strerror(soerr));
            return;
        }
        l->state = UPSTREAM_HANDSHAKING;
        link_set_timer(l, l->up->settings.handshake_timeout_ms,
                       link_on_timeout);
        int rc = stream_start(l->stream);
        if (rc != 0) {
            link_fail(l, "cannot open the stream: %s", err_str(rc));
            return;
        }
        (void)link_flush(l);
        return;
    }
    if ((events & LOOP_ERROR) != 0 ||
        ((events & LOOP_READ) != 0 && !l->paused)) {
        if (!link_read(l)) {
            return;
        }
        /* what the peer said may need an answer (the handshake) */
        if (buf_size(stream_output(l->stream)) > 0 && !link_flush(l)) {
            return;
        }
    }
    if ((events & LOOP_WRITE) != 0 && l->fd >= 0) {
        if (!link_flush(l)) {
            return;
        }
        if (l->state == UPSTREAM_READY) {
            link_flush_queue(l);
        }
    }
}

/* Resolves the configured host; numeric addresses never block. */
static int link_resolve(struct upstream_link *l,
                        struct sockaddr_storage *ss,
                        socklen_t *sslen)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char port[8];
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
    snprintf(port, sizeof(port), "%u", l->up->settings.port);
    int rc = getaddrinfo(l->up->host, port, &hints, &res);
    if (rc == EAI_NONAME) {
        /* A host name: the system resolver blocks, but the home server
         * is normally local (/etc/hosts); the docs ask for an address. */
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(l->up->host, port, &hints, &res);
    }
    if (rc != 0) {
        link_fail(l, "cannot resolve %s: %s", l->up->host, gai_strerror(rc));
        return ERR_NOT_FOUND;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void link_connect(struct upstream_link *l)
{
    struct upstream *up = l->up;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (link_resolve(l, &ss, &sslen) != 0) {
        return;
    }
    int fd =
        socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        link_fail(l, "socket failed: %s", strerror(errno));
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct stream_callbacks scb = {
        .ready = link_on_ready,
        .stanza = link_on_stanza,
        .closed = link_on_closed,
    };
    l->stream = stream_new_component(l->domain, l->secret, &up->settings.limits,
                                     &scb, l);
    if (l->stream == NULL) {
        close(fd);
        link_fail(l, "cannot create the stream: out of memory");
        return;
    }
    l->fd = fd;
    if (loop_watch(up->loop, fd, LOOP_WRITE, link_on_io, l) != 0) {
        link_fail(l, "cannot watch the socket: %s", strerror(errno));
        return;
    }
    l->state = UPSTREAM_CONNECTING;
    log_conn(LOG_LEVEL_DEBUG, l->who, "connecting (fd %d)", fd);
    if (connect(fd, (struct sockaddr *)&ss, sslen) != 0 &&
        errno != EINPROGRESS) {
        link_fail(l, "connect failed: %s", strerror(errno));
        return;
    }
    link_set_timer(l, up->settings.connect_timeout_ms, link_on_timeout);
}

static void link_on_expiry(struct loop *loop, void *ud);

static void link_arm_expiry(struct upstream_link *l)
{
    struct upstream *up = l->up;
    loop_timer_cancel(up->loop, l->expiry);
    l->expiry = NULL;
    if (l->queue.count == 0) {
        return;
    }
    uint64_t due = squeue_oldest_ms(&l->queue) + up->settings.queue_timeout_ms;
    uint64_t now = loop_now_ms(up->loop);
    l->expiry =
        loop_timer_add(up->loop, due > now ? due - now : 0, link_on_expiry, l);
}

static void link_on_expiry(struct loop *loop, void *ud)
{
    struct upstream_link *l = ud;
    l->expiry = NULL;
    uint64_t now = loop_now_ms(loop);
    uint64_t limit = l->up->settings.queue_timeout_ms;
    uint64_t deadline = now > limit ? now - limit : 0;
    struct xml_node *st;
    size_t n = 0;
    while ((st = squeue_pop_expired(&l->queue, deadline)) != NULL) {
        n++;
        l->up->cb.undeliverable(
            l->up->ud, st, "remote-server-timeout",
            "the home server link is down"); /* transferred */
    }
    if (n > 0) {
        log_conn(LOG_LEVEL_WARN, l->who,
                 "%zu queued stanza(s) waited more than %u ms; bounced", n,
                 l->up->settings.queue_timeout_ms);
    }
    link_arm_expiry(l);
    link_check_congestion(l);
}

/* Sends queued stanzas while the output has room. */
static void link_flush_queue(struct upstream_link *l)
{
    bool sent = false;
    while (l->state == UPSTREAM_READY && l->queue.count > 0) {
        const struct xml_node *st = squeue_peek(&l->queue);
        int rc = stream_send(l->stream, st);
        if (rc == ERR_TOO_BIG && buf_size(stream_output(l->stream)) > 0) {
            break; /* output full: wait for the socket */
        }
        struct xml_node *own = squeue_pop(&l->queue);
        if (rc != 0) {
            l->up->cb.undeliverable(l->up->ud, own, "resource-constraint",
                                    "stanza too large for the home server "
                                    "link"); /* transferred */
            continue;
        }
        xml_unref(own);
        sent = true;
    }
    if (sent && link_flush(l)) {
        link_arm_expiry(l);
    }
    link_check_congestion(l);
}

static struct upstream_link *upstream_find(const struct upstream *up,
                                           const char *domain)
{
    for (struct upstream_link *l = up->links; l != NULL; l = l->next) {
        if (!l->removed && strcmp(l->domain, domain) == 0) {
            return l;
        }
    }
    return NULL;
}

int upstream_send(struct upstream *up, struct xml_node *st)
{
    char domain[1024];
    const char *from = xml_attr(st, "from");
    struct upstream_link *l = NULL;
    if (from != NULL && jid_domain_of(from, domain, sizeof(domain)) == 0) {
        l = upstream_find(up, domain);
    }
    if (l == NULL) {
        up->cb.undeliverable(up->ud, st, "remote-server-not-found",
                             "no home server link for the sender's domain");
        return ERR_NOT_FOUND;
    }
    if (l->state == UPSTREAM_READY && l->queue.count == 0) {
        int rc = stream_send(l->stream, st);
        if (rc == 0) {
            xml_unref(st);
            l->flush_due = true;
            up->any_due = true;
            return 0;
        }
        if (rc != ERR_TOO_BIG || buf_size(stream_output(l->stream)) == 0) {
            up->cb.undeliverable(up->ud, st, "resource-constraint",
                                 "stanza too large for the home server link");
            return rc;
        }
        /* output full: queue behind it */
    }
    struct buf probe;
    buf_init(&probe, up->settings.limits.stanza_max);
    int rc = xml_serialize(st, st->ns, &probe);
    size_t bytes = buf_size(&probe);
    buf_free(&probe);
    if (rc == 0) {
        rc = squeue_push(&l->queue, st, bytes, loop_now_ms(up->loop));
    }
    if (rc != 0) {
        bool up_now = l->state == UPSTREAM_READY;
        unsigned long held = 0;
        if (log_limit_allow(&l->full_log, loop_now_ms(up->loop), 1, &held)) {
            log_conn(LOG_LEVEL_WARN, l->who,
                     "queue full (%zu stanzas, %zu bytes, link %s); bouncing "
                     "a <%s/> (and %lu more since the last such line)",
                     l->queue.count, l->queue.bytes,
                     upstream_state_name(l->state), st->name, held);
        }
        up->cb.undeliverable(
            up->ud, st, "resource-constraint",
            up_now ? "the home server does not take stanzas as fast as they "
                     "come: its link's queue is full"
                   : "the home server link is down and its queue is full");
        return ERR_TOO_BIG;
    }
    if (l->expiry == NULL) {
        link_arm_expiry(l);
    }
    link_check_congestion(l);
    return 0;
}

static int upstream_copy_settings(struct upstream *up,
                                  const struct upstream_settings *settings)
{
    char *host = strdup(settings->host);
    if (host == NULL) {
        return ERR_NOMEM;
    }
    free(up->host);
    up->host = host;
    up->settings = *settings;
    up->settings.host = up->host;
    return 0;
}

static void upstream_flush_due(struct loop *loop, void *ud)
{
    struct upstream *up = ud;
    struct upstream_link *next;
    (void)loop;
    /* again while flushing a queue drained an output completely: the
     * socket took it all and may take more */
    while (up->any_due) {
        up->any_due = false;
        for (struct upstream_link *l = up->links; l != NULL; l = next) {
            next = l->next;
            if (!l->flush_due) {
                continue;
            }
            l->flush_due = false;
            if (l->fd < 0 || l->stream == NULL) {
                continue;
            }
            if (l->state == UPSTREAM_READY && l->queue.count > 0 &&
                buf_size(stream_output(l->stream)) == 0) {
                link_flush_queue(l); /* flushes too */
            } else {
                (void)link_flush(l);
            }
        }
    }
}

struct upstream *upstream_new(struct loop *loop,
                              const struct upstream_settings *settings,
                              const struct upstream_callbacks *cb,
                              void *ud)
{
    struct upstream *up = calloc(1, sizeof(*up));
    if (up == NULL) {
        return NULL;
    }
    up->loop = loop;
    up->cb = *cb;
    up->ud = ud;
    if (upstream_copy_settings(up, settings) != 0) {
        free(up);
        return NULL;
    }
    if (loop_before_sleep(loop, upstream_flush_due, up) != 0) {
        free(up->host);
        free(up);
        return NULL;
    }
    up->hooked = true;
    return up;
}

/* Starts a clean close of a connected link; unconnected ones go down. */
static void link_close(struct upstream_link *l)
{
    if (l->state == UPSTREAM_HANDSHAKING || l->state == UPSTREAM_READY) {
        l->state = UPSTREAM_CLOSING;
        stream_close(l->stream, NULL, NULL);
        if (!link_flush(l)) {
            return;
        }
        link_set_timer(l, UPSTREAM_CLOSE_GRACE_MS, link_on_timeout);
        return;
    }
    if (l->state != UPSTREAM_CLOSING) {
        link_down(l);
    }
}

static struct upstream_link *link_new(struct upstream *up,
                                      const struct upstream_domain *d)
{
    struct upstream_link *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return NULL;
    }
    l->up = up;
    l->fd = -1;
    l->domain = strdup(d->domain);
    l->secret = strdup(d->secret);
    if (l->domain == NULL || l->secret == NULL) {
        link_free(l);
        return NULL;
    }
    snprintf(l->who, sizeof(l->who), "upstream %s %s:%u", l->domain, up->host,
             up->settings.port);
    backoff_init(&l->backoff, up->settings.backoff_initial_ms,
                 up->settings.backoff_max_ms);
    squeue_init(&l->queue, up->settings.queue_max_stanzas,
                up->settings.queue_max_bytes);
    return l;
}

int upstream_configure(struct upstream *up,
                       const struct upstream_settings *settings,
                       const struct upstream_domain *domains,
                       size_t n)
{
    bool settings_changed =
        strcmp(up->host, settings->host) != 0 ||
        up->settings.port != settings->port ||
        up->settings.limits.stanza_max != settings->limits.stanza_max;
    int rc = upstream_copy_settings(up, settings);
    if (rc != 0) {
        return rc;
    }
    /* Close links whose domain is gone. */
    struct upstream_link *next;
    for (struct upstream_link *l = up->links; l != NULL; l = next) {
        next = l->next;
        bool keep = false;
        for (size_t i = 0; i < n && !keep; i++) {
            keep = strcmp(l->domain, domains[i].domain) == 0;
        }
        if (!keep && !l->removed) {
            log_conn(LOG_LEVEL_INFO, l->who, "domain removed; closing");
            l->removed = true;
            link_close(l);
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct upstream_link *l = upstream_find(up, domains[i].domain);
        if (l != NULL) {
            l->queue.max_count = settings->queue_max_stanzas;
            l->queue.max_bytes = settings->queue_max_bytes;
            l->backoff.initial_ms = settings->backoff_initial_ms;
            l->backoff.max_ms = settings->backoff_max_ms;
            bool secret_changed = strcmp(l->secret, domains[i].secret) != 0;
            if (secret_changed) {
                char *s = strdup(domains[i].secret);
                if (s == NULL) {
                    return ERR_NOMEM;
                }
                explicit_bzero(l->secret, strlen(l->secret));
                free(l->secret);
                l->secret = s;
            }
            if (secret_changed || settings_changed) {
                snprintf(l->who, sizeof(l->who), "upstream %s %s:%u", l->domain,
                         up->host, up->settings.port);
                log_conn(LOG_LEVEL_INFO, l->who,
                         "settings changed; reconnecting");
                backoff_reset(&l->backoff);
                link_close_socket(l);
                loop_timer_cancel(up->loop, l->timer);
                l->timer = NULL;
                link_connect(l);
            }
            continue;
        }
        l = link_new(up, &domains[i]);
        if (l == NULL) {
            return ERR_NOMEM;
        }
        l->next = up->links;
        up->links = l;
        up->nlinks++;
        link_connect(l);
    }
    return 0;
}

static void upstream_finish_shutdown(struct upstream *up)
{
    loop_timer_cancel(up->loop, up->shutdown_timer);
    up->shutdown_timer = NULL;
    void (*done)(void *) = up->shutdown_done;
    up->shutdown_done = NULL;
    if (done != NULL) {
        done(up->shutdown_ud);
    }
}

static void upstream_check_shutdown(struct upstream *up)
{
    if (!up->shutting_down || up->shutdown_done == NULL) {
        return;
    }
    for (struct upstream_link *l = up->links; l != NULL; l = l->next) {
        if (l->fd >= 0) {
            return;
        }
    }
    upstream_finish_shutdown(up);
}

static void upstream_on_shutdown_timeout(struct loop *loop, void *ud)
{
    struct upstream *up = ud;
    up->shutdown_timer = NULL;
    for (struct upstream_link *l = up->links; l != NULL; l = l->next) {
        link_close_socket(l);
    }
    upstream_finish_shutdown(up);
}

void upstream_shutdown(struct upstream *up, void (*done)(void *ud), void *ud)
{
    up->shutting_down = true;
    up->shutdown_done = done;
    up->shutdown_ud = ud;
    for (struct upstream_link *l = up->links; l != NULL; l = l->next) {
        link_give_back_queue(l, "fedgate is shutting down");
        if (l->state == UPSTREAM_WAITING) {
            loop_timer_cancel(up->loop, l->timer);
            l->timer = NULL;
        }
        link_close(l);
    }
    up->shutdown_timer = loop_timer_add(up->loop, UPSTREAM_CLOSE_GRACE_MS + 500,
                                        upstream_on_shutdown_timeout, up);
    upstream_check_shutdown(up);
}

int upstream_pause(struct upstream *up, const char *domain, bool pause)
{
    struct upstream_link *l = upstream_find(up, domain);
    if (l == NULL) {
        return ERR_NOT_FOUND;
    }
    if (l->paused == pause) {
        return 0;
    }
    l->paused = pause;
    log_conn(LOG_LEVEL_DEBUG, l->who, "%s", pause ? "paused" : "reading again");
    if (l->fd >= 0 && l->stream != NULL && l->state != UPSTREAM_CONNECTING) {
        (void)link_flush(l); /* sets what the loop watches */
    }
    return 0;
}

int upstream_retry(struct upstream *up, const char *domain)
{
    struct upstream_link *l = upstream_find(up, domain);
    if (l == NULL || l->removed) {
        return ERR_NOT_FOUND;
    }
    if (l->state != UPSTREAM_WAITING || up->shutting_down) {
        return ERR_AGAIN;
    }
    log_conn(LOG_LEVEL_INFO, l->who, "retrying now");
    backoff_reset(&l->backoff);
    loop_timer_cancel(up->loop, l->timer);
    l->timer = NULL;
    link_connect(l);
    return 0;
}

size_t upstream_count(const struct upstream *up)
{
    return up->nlinks;
}

void upstream_info(const struct upstream *up,
                   size_t i,
                   struct upstream_link_info *out)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    const struct upstream_link *l = up->links;
    while (l != NULL && i > 0) {
        l = l->next;
        i--;
    }
    if (l == NULL) {
        return;
    }
    out->domain = l->domain;
    out->state = l->state;
    out->failures = l->failures;
    out->connects = l->connects;
    out->queued = l->queue.count;
    out->last_error = l->last_error[0] != '\0' ? l->last_error : NULL;
    out->fd = l->fd;
}

void upstream_free(struct upstream *up)
{
    if (up == NULL) {
        return;
    }
    if (up->hooked) {
        loop_before_sleep_remove(up->loop, upstream_flush_due, up);
    }
    struct upstream_link *next;
    for (struct upstream_link *l = up->links; l != NULL; l = next) {
        next = l->next;
        if (l->fd >= 0) {
            loop_unwatch(up->loop, l->fd);
            close(l->fd);
        }
        loop_timer_cancel(up->loop, l->timer);
        loop_timer_cancel(up->loop, l->expiry);
        link_free(l);
    }
    loop_timer_cancel(up->loop, up->shutdown_timer);
    free(up->host);
    free(up);
}
