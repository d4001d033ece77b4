/*
 * s2s.c: s2s connections and routes on the one event loop.
 *
 * Outbound, per route (local, remote):
 *   first stanza: policy (configured, trusted peer) or bounce
 *   resolve:      static host, else SRV (_xmpps-server, _xmpp-server),
 *                 then A/AAAA of each target in order
 *   connect:      each address in turn (connect timeout); direct TLS for
 *                 _xmpps-server targets
 *   negotiate:    the s2s stream machine; STARTTLS runs TLS here; the
 *                 negotiate timer covers everything up to authentication
 *   ready:        queued stanzas flushed; idle timer and keepalives;
 *                 when nothing has come from the peer for a keepalive
 *                 interval, an XEP-0199 ping (see below)
 *   failure:      next address, next target; when none is left the queue
 *                 is bounced with the reason (DNS, connect, TLS, auth)
 * Inbound, per accepted connection:
 *   (direct TLS first on the XEP-0368 listener), then the machine; a
 *   db:result is verified by asking the authoritative server over the
 *   outbound route for the same pair (db:verify); stanzas go to the owner.
 * Certificates: an outbound connection presents the certificate of its
 * route's local domain (TLS client certificate, for SASL EXTERNAL), and
 * tries SASL EXTERNAL only when that certificate names the local domain;
 * an inbound STARTTLS connection starts on the certificate of the
 * header's 'to' and the peer's SNI, when it names a domain with a
 * certificate of its own, switches it (tls.c).
 * Liveness, per route (XEP-0199):
 *   heard:   anything read from the remote domain on any inbound
 *            connection (replies to our stanzas come on the peer's own
 *            stream to us), whitespace included, stamps route->heard_ms;
 *            so does authenticating the outbound stream
 *   silent:  the outbound stream is ready and nothing was heard for a
 *            keepalive interval: send <iq type='get' id='fgping-N'> with
 *            <ping xmlns='urn:xmpp:ping'/> from local to remote
 *   answer:  an iq result or error from remote to the bare local domain
 *            with that id, on an inbound stream, is taken here and never
 *            reaches the owner
 *   silence: no answer within another interval: close the outbound
 *            stream; the route reconnects with its next stanza
 * A connection is never freed inside its own callback: conn_destroy marks
 * it dead and frees it after the loop iteration.
 */
#include "config.h"

#include "s2s.h"

#include "backoff.h"
#include "dialback.h"
#include "dns.h"
#include "err.h"
#include "jid.h"
#include "log.h"
#include "loop.h"
#include "policy.h"
#include "s2sstream.h"
#include "squeue.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define S2S_READ_CHUNK        16384
#define S2S_READS_PER_EVENT   8
#define S2S_CLOSE_GRACE_MS    1000
#define S2S_SHUTDOWN_GRACE_MS 3000
#define S2S_MAX_LISTENERS     16
/* Accepting pauses this long when the process is out of descriptors */
#define S2S_ACCEPT_PAUSE_MS 100
#define S2S_PING_PREFIX     "fgping-"
#define S2S_PING_NS         "urn:xmpp:ping"
#define S2S_DOMAIN_MAX      1024
/* How long keys under the secret before a rotation still verify */
#define S2S_SECRET_GRACE_MS (10u * 60u * 1000u)

enum route_state {
    ROUTE_IDLE,
    ROUTE_RESOLVING,
    ROUTE_CONNECTING,
    ROUTE_NEGOTIATING,
    ROUTE_READY,
};

struct s2s_conn;

/* An inbound db:result waiting for the authoritative server's answer. */
struct s2s_verify {
    struct s2s_conn *in;
    char id[128];
    char key[160];
    bool sent;
    struct s2s_verify *next;
};

struct s2s_route {
    struct s2s *s2s;
    char *local;
    char *remote;
    enum route_state state;
    struct s2s_conn *out;
    struct squeue queue;
    struct loop_timer *expiry;
    struct dns_query *query;
    struct dns_target *targets;
    size_t ntargets;
    size_t ti;
    struct dns_addr *addrs;
    size_t naddrs;
    size_t ai;
    struct s2s_verify *verifies;
    enum policy_auth auth;
    unsigned long stanzas_out;
    unsigned long bytes_out;
    unsigned long stanzas_in; /* from remote to local, either direction's
                               * stream */
    unsigned long bytes_in;   /* the bytes those stanzas came in */
    time_t ready_since;       /* when the outbound stream got ready */
    bool congested;           /* reported through cb.congestion */
    bool tried_transient;     /* this attempt: some target failed in a way
                               * that may pass (connect, TLS, timeout, DNS
                               * server); when none did (no address, the
                               * peer refused us for good) retrying cannot
                               * help */
    char last_error[256];
    char last_failure[256]; /* last_error of the last failed attempt: kept
                             * when the next attempt starts, for admins */
    time_t last_failure_at;
    struct backoff backoff;   /* between attempts after transient failures */
    struct loop_timer *retry; /* the next attempt, while stanzas wait */
    uint64_t attempt_ms;      /* when the last attempt started */
    uint64_t heard_ms;        /* last time anything came from remote */
    bool ping_pending;        /* an XEP-0199 ping waits for its answer */
    char ping_id[32];         /* its id */
    uint64_t ping_sent_ms;    /* when it went out */
    unsigned long pings_sent;
    unsigned long pings_answered;
    struct s2s_route *next;
};

struct s2s_conn {
    struct s2s *s2s;
    bool outbound;
    bool dead;
    int fd;
    char who[400];
    struct tls_conn *tls;
    bool tls_handshaking;
    bool want_tls; /* the machine asked for TLS during a feed */
    bool direct_tls;
    bool authenticated;
    unsigned want_events; /* extra events the last ERR_AGAIN asked for */
    struct s2s_stream *stream;
    struct s2s_route *route;  /* outbound only */
    struct tls_peer peer;     /* last verification result */
    char peer_domain[256];    /* the domain peer was verified for */
    struct loop_timer *timer; /* connect, negotiate or close grace */
    struct loop_timer *idle;  /* idle close and keepalive */
    uint64_t last_in_ms;
    uint64_t last_out_ms;
    uint64_t last_stanza_ms; /* a stanza in or out; keepalives don't count */
    unsigned long stanzas_in;
    unsigned long bytes_unbilled; /* read since the last stanza */
    bool refused_final; /* the peer closed with a final stream error */
    bool flush_due;     /* on s2s->due: written before sleep */
    struct s2s_conn *next_due;
    char auth_remote[256]; /* inbound: the last remote domain authenticated */
    char addr[INET6_ADDRSTRLEN]; /* inbound: the peer's IP address */
    struct s2s_conn *next;
};

struct s2s_listener {
    struct s2s *s2s;
    int fd;
    bool direct_tls;
    char addr[80];
    struct loop_timer *resume; /* accepting paused: out of descriptors */
};

struct s2s {
    struct loop *loop;
    const struct conf *cfg;
    struct dns *dns;
    struct tls_ctx *tls;
    struct s2s_callbacks cb;
    void *ud;
    char *dialback_secret;
    char *previous_secret;           /* during the grace after a rotation */
    struct loop_timer *secret_grace; /* ends that grace */
    struct s2s_route *routes;
    size_t nroutes;
    struct s2s_conn *conns;
    struct s2s_listener listeners[S2S_MAX_LISTENERS];
    size_t nlisteners;
    unsigned long ping_seq; /* numbers the XEP-0199 ping ids */
    bool shutting_down;
    void (*shutdown_done)(void *ud);
    void *shutdown_ud;
    struct loop_timer *shutdown_timer;
    unsigned long auth_failures[S2S_AUTHFAIL_COUNT]; /* for administration */
    char **blocked; /* domains an administrator blocked (s2s_block) */
    size_t nblocked;
    /* connections with stanzas written into their buffer during this loop
     * pass: flushed together before the loop sleeps, so that a burst
     * goes out in few TLS records and writes */
    struct s2s_conn *due;
    bool hooked;                     /* s2s_flush_due is a before-sleep hook */
    bool inbound_paused;             /* s2s_pause_inbound */
    struct loop_timer *resume_timer; /* reads what TLS holds after a pause */
};

static void conn_destroy(struct s2s_conn *c, const char *why);
static bool conn_flush(struct s2s_conn *c);
static void
conn_close(struct s2s_conn *c, const char *condition, const char *text);
static void conn_on_io(struct loop *loop, int fd, unsigned events, void *ud);
static void route_next_addr(struct s2s_route *r);
static void route_start(struct s2s_route *r);
static void route_flush_queue(struct s2s_route *r);
static void route_check_congestion(struct s2s_route *r);
static void s2s_check_shutdown(struct s2s *s2s);

/* ---- helpers ------------------------------------------------------------- */

static bool s2s_serves(const struct s2s *s2s, const char *domain)
{
    for (size_t i = 0; i < s2s->cfg->ndomains; i++) {
        if (strcmp(s2s->cfg->domains[i], domain) == 0) {
            return true;
        }
    }
    return strcmp(s2s->cfg->service_jid, domain) == 0;
}

static const char *auth_name(enum policy_auth a)
{
    switch (a) {
    case POLICY_AUTH_SASL_EXTERNAL:
        return "sasl-external";
    case POLICY_AUTH_DIALBACK:
        return "dialback";
    default:
        return NULL;
    }
}

static const char *route_state_name(enum route_state st)
{
    static const char *const names[] = {"idle", "resolving", "connecting",
                                        "negotiating", "ready"};
    return names[st];
}

static struct s2s_route *
route_find(const struct s2s *s2s, const char *local, const char *remote)
{
    for (struct s2s_route *r = s2s->routes; r != NULL; r = r->next) {
        if (strcmp(r->local, local) == 0 && strcmp(r->remote, remote) == 0) {
            return r;
        }
    }
    return NULL;
}

static struct s2s_route *
route_get(struct s2s *s2s, const char *local, const char *remote)
{
    struct s2s_route *r = route_find(s2s, local, remote);
    if (r != NULL) {
        return r;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->s2s = s2s;
    r->local = strdup(local);
    r->remote = strdup(remote);
    if (r->local == NULL || r->remote == NULL) {
        free(r->local);
        free(r->remote);
        free(r);
        return NULL;
    }
    squeue_init(&r->queue, s2s->cfg->queue_max_stanzas,
                s2s->cfg->queue_max_bytes);
    backoff_init(&r->backoff, s2s->cfg->backoff_initial_ms,
                 s2s->cfg->backoff_max_ms);
    r->next = s2s->routes;
    s2s->routes = r;
    s2s->nroutes++;
    return r;
}

/* Something arrived from remote (normalised): every route to it has
 * heard from its peer. */
static void s2s_heard_from(struct s2s *s2s, const char *remote)
{
    uint64_t now = loop_now_ms(s2s->loop);
    for (struct s2s_route *r = s2s->routes; r != NULL; r = r->next) {
        if (strcmp(r->remote, remote) == 0) {
            r->heard_ms = now;
        }
    }
}

/* ---- route: queue and failure ----------------------------------------------
 */

static void
route_bounce_queue(struct s2s_route *r, const char *condition, const char *text)
{
    struct xml_node *st;
    size_t n = 0;
    while ((st = squeue_pop(&r->queue)) != NULL) {
        n++;
        r->s2s->cb.undeliverable(r->s2s->ud, st, condition,
                                 text); /* transferred */
    }
    loop_timer_cancel(r->s2s->loop, r->expiry);
    r->expiry = NULL;
    if (n > 0) {
        log_conn(LOG_LEVEL_WARN, r->remote,
                 "route %s -> %s: bounced %zu queued stanza(s): %s", r->local,
                 r->remote, n, condition);
    }
}

static void route_clear_lookup(struct s2s_route *r)
{
    dns_cancel(r->s2s->dns, r->query);
    r->query = NULL;
    free(r->targets);
    r->targets = NULL;
    r->ntargets = r->ti = 0;
    free(r->addrs);
    r->addrs = NULL;
    r->naddrs = r->ai = 0;
}

/* Answers the dialback verifications waiting on r negatively (the peer
 * retries them). */
static void route_refuse_verifies(struct s2s_route *r)
{
    struct s2s_verify *v = r->verifies;
    r->verifies = NULL;
    while (v != NULL) {
        struct s2s_verify *next = v->next;
        if (!v->in->dead) {
            s2s_stream_dialback_result(v->in->stream, r->local, r->remote,
                                       false);
            (void)conn_flush(v->in);
        }
        free(v);
        v = next;
    }
}

/* The route cannot be set up now: bounce what waits, answer pending
 * dialback verifications negatively, back to idle. */
static void
route_fail(struct s2s_route *r, const char *condition, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
route_fail(struct s2s_route *r, const char *condition, const char *fmt, ...)
{
    char why[sizeof(r->last_error)];
    va_list ap;
    va_start(ap, fmt);
    /* a local copy: the arguments may point into r->last_error */
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    memcpy(r->last_error, why, sizeof(why));
    memcpy(r->last_failure, why, sizeof(why));
    r->last_failure_at = time(NULL);
    log_conn(LOG_LEVEL_WARN, r->remote, "route %s -> %s failed: %s", r->local,
             r->remote, r->last_error);
    route_clear_lookup(r);
    r->state = ROUTE_IDLE;
    loop_timer_cancel(r->s2s->loop, r->retry);
    r->retry = NULL;
    backoff_reset(&r->backoff);
    route_refuse_verifies(r);
    route_bounce_queue(r, condition, r->last_error);
    route_check_congestion(r);
}

/* Backpressure: a ready route is congested while its queue is
 * (squeue_congested); the owner hears of each change. */
static void route_check_congestion(struct s2s_route *r)
{
    const struct squeue *q = &r->queue;
    bool ready = r->state == ROUTE_READY && r->out != NULL;
    bool was = r->congested;
    r->congested = ready && squeue_congested(q, was);
    if (was != r->congested && r->s2s->cb.congestion != NULL) {
        log_conn(LOG_LEVEL_INFO, r->remote, "route %s -> %s %s (%zu queued)",
                 r->local, r->remote,
                 r->congested ? "congested: its home-server link waits"
                              : "no longer congested",
                 q->count);
        r->s2s->cb.congestion(r->s2s->ud, r->remote, r->congested);
    }
}

static void route_on_expiry(struct loop *loop, void *ud);

static void route_arm_expiry(struct s2s_route *r)
{
    route_check_congestion(r);
    struct s2s *s2s = r->s2s;
    loop_timer_cancel(s2s->loop, r->expiry);
    r->expiry = NULL;
    if (r->queue.count == 0) {
        return;
    }
    uint64_t limit = (uint64_t)s2s->cfg->queue_timeout * 1000u;
    uint64_t due = squeue_oldest_ms(&r->queue) + limit;
    uint64_t now = loop_now_ms(s2s->loop);
    r->expiry = loop_timer_add(s2s->loop, due > now ? due - now : 0,
                               route_on_expiry, r);
}

static void route_on_expiry(struct loop *loop, void *ud)
{
    struct s2s_route *r = ud;
    r->expiry = NULL;
    uint64_t limit = (uint64_t)r->s2s->cfg->queue_timeout * 1000u;
    uint64_t now = loop_now_ms(loop);
    struct xml_node *st;
    while ((st = squeue_pop_expired(&r->queue,
                                    now > limit ? now - limit : 0)) != NULL) {
        char text[320];
        snprintf(text, sizeof(text),
                 "the peer could not be reached within %u s%s%s",
                 r->s2s->cfg->queue_timeout,
                 r->last_error[0] != '\0' ? ": " : "", r->last_error);
        r->s2s->cb.undeliverable(r->s2s->ud, st, "remote-server-timeout", text);
    }
    route_arm_expiry(r);
    if (r->queue.count == 0 && r->retry != NULL) {
        /* nothing left to deliver: stop trying */
        loop_timer_cancel(loop, r->retry);
        r->retry = NULL;
        backoff_reset(&r->backoff);
    }
}

/* ---- connection I/O -------------------------------------------------------
 */

static ssize_t conn_read(struct s2s_conn *c, char *data, size_t len)
{
    if (c->tls != NULL) {
        return tls_read(c->tls, data, len);
    }
    ssize_t n = read(c->fd, data, len);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? ERR_AGAIN
                   : ERR_SYS;
    }
    return n;
}

static ssize_t conn_write(struct s2s_conn *c, const char *data, size_t len)
{
    if (c->tls != NULL) {
        return tls_write(c->tls, data, len);
    }
    ssize_t n = write(c->fd, data, len);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                   ? ERR_AGAIN
                   : ERR_SYS;
    }
    return n;
}

/* Whether c's input waits (backpressure, s2s_pause_inbound): stanzas
 * from authenticated peers only, so negotiations go on. */
static bool conn_reading_paused(const struct s2s_conn *c)
{
    return c->s2s->inbound_paused && !c->outbound && c->authenticated &&
           !c->tls_handshaking;
}

/* Whether c is a ready route's stream with an empty output and stanzas
 * waiting in the route's queue. */
static bool conn_queue_waits(const struct s2s_conn *c)
{
    const struct s2s_route *r = c->route;
    return !c->dead && c->outbound && r != NULL && r->out == c &&
           r->state == ROUTE_READY && r->queue.count > 0 && c->stream != NULL &&
           buf_size(s2s_stream_output(c->stream)) == 0;
}

static void conn_flush_later(struct s2s_conn *c);

static void conn_update_events(struct s2s_conn *c)
{
    if (c->dead) {
        return;
    }
    unsigned events =
        (conn_reading_paused(c) ? 0u : (unsigned)LOOP_READ) | c->want_events;
    if (c->stream != NULL && buf_size(s2s_stream_output(c->stream)) > 0 &&
        c->tls == NULL) {
        events |= LOOP_WRITE;
    }
    if (loop_modify(c->s2s->loop, c->fd, events) != 0) {
        conn_destroy(c, "cannot watch the socket");
    }
}

/* Writes pending output; false if the connection died. */
static bool conn_flush(struct s2s_conn *c)
{
    if (c->dead || c->stream == NULL || c->tls_handshaking) {
        return !c->dead;
    }
    struct buf *out = s2s_stream_output(c->stream);
    c->want_events = 0;
    while (buf_size(out) > 0) {
        ssize_t n = conn_write(c, buf_peek(out), buf_size(out));
        if (n == ERR_AGAIN) {
            c->want_events =
                c->tls != NULL ? tls_wants(c->tls) : (unsigned)LOOP_WRITE;
            break;
        }
        if (n <= 0) {
            conn_destroy(c, c->tls != NULL ? tls_last_error(c->tls)
                                           : "write failed");
            return false;
        }
        buf_consume(out, (size_t)n);
        c->last_out_ms = loop_now_ms(c->s2s->loop);
    }
    conn_update_events(c);
    if (conn_queue_waits(c)) {
        /* the output drained: the route's queue goes next, from the
         * before-sleep hook (no write event would come for it) */
        conn_flush_later(c);
    }
    return !c->dead;
}

/* ---- timers ---------------------------------------------------------------
 */

static void conn_on_timer(struct loop *loop, void *ud)
{
    struct s2s_conn *c = ud;
    c->timer = NULL;
    if (c->stream == NULL) {
        char why[96];
        snprintf(why, sizeof(why), "%s timed out",
                 c->tls_handshaking ? "TLS handshake" : "connect");
        if (c->route != NULL) {
            snprintf(c->route->last_error, sizeof(c->route->last_error), "%s",
                     why);
        }
        conn_destroy(c, why);
        return;
    }
    if (s2s_stream_state(c->stream) == S2S_CLOSING) {
        conn_destroy(c, "peer did not close the stream in time");
        return;
    }
    char text[96];
    snprintf(text, sizeof(text), "not authenticated within %u s",
             c->s2s->cfg->s2s_negotiate_timeout);
    log_conn(LOG_LEVEL_WARN, c->who, "%s; closing", text);
    if (c->route != NULL) {
        snprintf(c->route->last_error, sizeof(c->route->last_error),
                 "timeout: %s", text);
    }
    conn_close(c, "connection-timeout", text);
}

/*
 * XEP-0199 on an outbound connection that carries its route: gives up
 * on a ping that got no answer within ka_ms, or sends one when nothing
 * was heard from the peer for ka_ms. false when c is closing or dead.
 */
static bool conn_ping_step(struct s2s_conn *c, uint64_t now, uint64_t ka_ms)
{
    struct s2s_route *r = c->route;
    unsigned ka = c->s2s->cfg->s2s_keepalive;

    if (r->ping_pending) {
        if (now - r->ping_sent_ms < ka_ms) {
            return true;
        }
        char text[96];
        snprintf(text, sizeof(text), "no reply to XEP-0199 ping within %u s",
                 ka);
        log_conn(LOG_LEVEL_WARN, c->who, "%s (id %s); closing", text,
                 r->ping_id);
        snprintf(r->last_error, sizeof(r->last_error), "%s", text);
        r->ping_pending = false;
        conn_close(c, "connection-timeout", text);
        return false;
    }
    uint64_t heard = r->heard_ms;
    if (now - heard < ka_ms) {
        return true;
    }
    struct xml_node *iq = xml_element_new(XML_NS_SERVER, "iq");
    int rc = ERR_NOMEM;
    snprintf(r->ping_id, sizeof(r->ping_id), S2S_PING_PREFIX "%lu",
             ++c->s2s->ping_seq);
    if (iq != NULL && xml_set_attr(iq, "from", r->local) == 0 &&
        xml_set_attr(iq, "to", r->remote) == 0 &&
        xml_set_attr(iq, "type", "get") == 0 &&
        xml_set_attr(iq, "id", r->ping_id) == 0 &&
        xml_add_child(iq, S2S_PING_NS, "ping") != NULL) {
        rc = s2s_stream_send(c->stream, iq);
    }
    xml_unref(iq);
    if (rc == ERR_NOMEM || rc == ERR_CLOSED) {
        return true; /* try again on the next tick, or the stream is gone */
    }
    /* A ping that does not fit (the peer reads nothing and our output is
     * full) counts as sent: the peer is as dead as one that does not
     * answer, and the timeout closes the stream. */
    r->ping_pending = true;
    r->ping_sent_ms = now;
    r->pings_sent++;
    log_conn(LOG_LEVEL_DEBUG, c->who,
             "nothing from %s for %llu s: XEP-0199 ping %s%s", r->remote,
             (unsigned long long)((now - heard) / 1000u), r->ping_id,
             rc == 0 ? "" : " (output full: not sent)");
    return rc != 0 || conn_flush(c);
}

/* How often an authenticated connection checks for idleness, keepalives
 * and pings: an eighth of the keepalive interval (7.5 s by default),
 * between 100 ms and 5 s. Precise enough for those, and 10,000 idle
 * sessions cost 2,000 timer calls a second, not 10,000. */
static uint64_t conn_idle_step(uint64_t ka_ms)
{
    uint64_t step = ka_ms / 8;
    return step < 100 ? 100 : step > 5000 ? 5000 : step;
}

static void conn_on_idle(struct loop *loop, void *ud)
{
    struct s2s_conn *c = ud;
    c->idle = NULL;
    const struct conf *cfg = c->s2s->cfg;
    uint64_t now = loop_now_ms(loop);
    uint64_t idle_ms = (uint64_t)cfg->s2s_idle_timeout * 1000u;
    uint64_t ka_ms = (uint64_t)cfg->s2s_keepalive * 1000u;
    /* idle means no stanzas: our own keepalives and pings must not keep
     * an unused stream open forever */
    if (now - c->last_stanza_ms >= idle_ms) {
        log_conn(LOG_LEVEL_INFO, c->who, "idle for %u s; closing",
                 cfg->s2s_idle_timeout);
        conn_close(c, NULL, NULL);
        return;
    }
    struct s2s_route *r = c->route;
    if (c->outbound && r != NULL && r->out == c && r->state == ROUTE_READY &&
        s2s_stream_state(c->stream) == S2S_READY &&
        !conn_ping_step(c, now, ka_ms)) {
        return;
    }
    if (now - c->last_out_ms >= ka_ms) {
        if (s2s_stream_keepalive(c->stream) == 0 && !conn_flush(c)) {
            return;
        }
    }
    c->idle = loop_timer_add(loop, conn_idle_step(ka_ms), conn_on_idle, c);
}

/* ---- connection lifetime ----------------------------------------------------
 */

static void conn_free(void *ptr)
{
    struct s2s_conn *c = ptr;
    s2s_stream_free(c->stream);
    tls_conn_free(c->tls);
    free(c);
}

/* Drops the inbound connection's pending verifications from all routes. */
static void conn_forget_verifies(struct s2s_conn *c)
{
    for (struct s2s_route *r = c->s2s->routes; r != NULL; r = r->next) {
        for (struct s2s_verify **pp = &r->verifies; *pp != NULL;) {
            if ((*pp)->in == c) {
                struct s2s_verify *v = *pp;
                *pp = v->next;
                free(v);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

/* Takes c off the list of connections due for a flush. */
static void conn_undue(struct s2s_conn *c)
{
    if (!c->flush_due) {
        return;
    }
    for (struct s2s_conn **pp = &c->s2s->due; *pp != NULL;
         pp = &(*pp)->next_due) {
        if (*pp == c) {
            *pp = c->next_due;
            break;
        }
    }
    c->flush_due = false;
    c->next_due = NULL;
}

/* Flushes c before the loop sleeps (with whatever else is written to it
 * in this pass). */
static void conn_flush_later(struct s2s_conn *c)
{
    if (c->flush_due || c->dead) {
        return;
    }
    c->flush_due = true;
    c->next_due = c->s2s->due;
    c->s2s->due = c;
}

static void s2s_flush_due(struct loop *loop, void *ud)
{
    struct s2s *s2s = ud;
    (void)loop;
    while (s2s->due != NULL) {
        struct s2s_conn *c = s2s->due;
        s2s->due = c->next_due;
        c->flush_due = false;
        c->next_due = NULL;
        if (conn_queue_waits(c)) {
            route_flush_queue(c->route); /* flushes c too */
        } else {
            (void)conn_flush(c);
        }
    }
}

static void conn_destroy(struct s2s_conn *c, const char *why)
{
    if (c->dead) {
        return;
    }
    struct s2s *s2s = c->s2s;
    c->dead = true;
    conn_undue(c);
    log_conn(LOG_LEVEL_INFO, c->who, "connection closed: %s", why);
    loop_unwatch(s2s->loop, c->fd);
    close(c->fd);
    c->fd = -1;
    loop_timer_cancel(s2s->loop, c->timer);
    loop_timer_cancel(s2s->loop, c->idle);
    c->timer = c->idle = NULL;
    for (struct s2s_conn **pp = &s2s->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (!c->outbound) {
        conn_forget_verifies(c);
    }
    struct s2s_route *r = c->route;
    if (loop_defer(s2s->loop, conn_free, c) != 0) {
        log_conn(LOG_LEVEL_ERROR, c->who,
                 "out of memory deferring a free; leaking the connection");
    }
    if (r != NULL) {
        r->out = NULL;
        if (r->state == ROUTE_READY) {
            r->state = ROUTE_IDLE;
            r->auth = POLICY_AUTH_NONE;
            route_check_congestion(r);
            if (r->queue.count > 0 && !s2s->shutting_down) {
                route_start(r);
            }
        } else if (r->state == ROUTE_CONNECTING ||
                   r->state == ROUTE_NEGOTIATING) {
            /* a reason the stream gave (a stream error, a certificate)
             * says more than how the connection ended */
            if (r->last_error[0] == '\0') {
                snprintf(r->last_error, sizeof(r->last_error), "%s", why);
            }
            r->tried_transient |= !c->refused_final;
            if (s2s->shutting_down) {
                route_fail(r, "remote-server-timeout", "%s",
                           "fedgate is shutting down");
            } else {
                r->ai++;
                route_next_addr(r);
            }
        }
    }
    s2s_check_shutdown(s2s);
}

static void
conn_close(struct s2s_conn *c, const char *condition, const char *text)
{
    if (c->dead) {
        return;
    }
    if (c->tls_handshaking || c->stream == NULL) {
        conn_destroy(c, text != NULL ? text : "closed");
        return;
    }
    s2s_stream_close(c->stream, condition, text);
    if (!conn_flush(c)) {
        return;
    }
    loop_timer_cancel(c->s2s->loop, c->timer);
    c->timer =
        loop_timer_add(c->s2s->loop, S2S_CLOSE_GRACE_MS, conn_on_timer, c);
}

/* ---- stream machine callbacks
 * ------------------------------------------------ */

static void cb_want_tls(void *ud)
{
    struct s2s_conn *c = ud;
    c->want_tls = true;
}

static bool cb_serves(void *ud, const char *local)
{
    struct s2s_conn *c = ud;
    return s2s_serves(c->s2s, local);
}

static const char *peer_anchor(const struct s2s *s2s, const char *domain)
{
    const struct conf_peer *p = policy_peer(s2s->cfg, domain);
    return p != NULL ? p->trust_anchor : NULL;
}

static bool cb_cert_valid_for(void *ud, const char *domain)
{
    struct s2s_conn *c = ud;
    if (c->tls == NULL) {
        return false;
    }
    if (strcmp(c->peer_domain, domain) != 0) {
        if (tls_verify_peer(c->tls, domain, peer_anchor(c->s2s, domain),
                            &c->peer) != 0) {
            return false;
        }
        snprintf(c->peer_domain, sizeof(c->peer_domain), "%s", domain);
        log_conn(LOG_LEVEL_DEBUG, c->who,
                 "peer certificate for %s: present=%d chain=%s name=%s "
                 "subject=%s",
                 domain, c->peer.cert_present,
                 c->peer.chain_ok ? "ok" : c->peer.chain_error,
                 c->peer.name_ok ? certid_match_name(c->peer.match) : "no",
                 c->peer.subject);
    }
    return c->peer.cert_present && c->peer.chain_ok && c->peer.name_ok;
}

static void cb_authorize(void *ud,
                         const char *remote,
                         enum policy_auth method,
                         struct policy_decision *out)
{
    struct s2s_conn *c = ud;
    struct policy_facts facts = {
        .remote_domain = remote,
        .tls = c->tls != NULL && !c->tls_handshaking,
        .auth = method,
        .blocked = s2s_is_blocked(c->s2s, remote),
    };
    if (facts.tls) {
        (void)cb_cert_valid_for(c, remote);
        facts.cert_present = c->peer.cert_present;
        facts.cert_chain_ok = c->peer.chain_ok;
        facts.cert_name_ok = c->peer.name_ok;
    }
    policy_check(c->s2s->cfg, &facts, out);
    if (!out->allow) {
        /* The certificate detail is what an admin needs to fix it. */
        char detail[400] = "";
        if (facts.tls && !c->peer.cert_present) {
            snprintf(detail, sizeof(detail), " (no peer certificate)");
        } else if (facts.tls) {
            snprintf(detail, sizeof(detail),
                     " (certificate %s: chain %s, name %s)", c->peer.subject,
                     c->peer.chain_ok ? "ok" : c->peer.chain_error,
                     c->peer.name_ok ? "ok" : "does not match");
        }
        /* SASL refused usually means dialback comes next: info only */
        log_conn(method == POLICY_AUTH_SASL_EXTERNAL ? LOG_LEVEL_INFO
                                                     : LOG_LEVEL_WARN,
                 c->who, "policy refuses %s (%s): %s%s", remote,
                 auth_name(method) != NULL ? auth_name(method) : "?",
                 out->reason, detail);
        if (c->route != NULL) {
            snprintf(c->route->last_error, sizeof(c->route->last_error),
                     "policy: %s%s", out->reason, detail);
        }
    }
}

static void conn_log_tls(struct s2s_conn *c)
{
    if (c->tls != NULL) {
        log_conn(LOG_LEVEL_INFO, c->who, "TLS %s %s%s", tls_version(c->tls),
                 tls_cipher(c->tls),
                 tls_alpn_xmpp(c->tls) ? " (ALPN xmpp-server)" : "");
    }
}

static void cb_authenticated(void *ud,
                             const char *local,
                             const char *remote,
                             enum policy_auth method)
{
    struct s2s_conn *c = ud;
    if (c->dead) {
        return;
    }
    c->authenticated = true;
    if (!c->outbound) {
        snprintf(c->auth_remote, sizeof(c->auth_remote), "%s", remote);
    }
    loop_timer_cancel(c->s2s->loop, c->timer);
    c->timer = NULL;
    log_conn(LOG_LEVEL_INFO, c->who, "authenticated %s -> %s with %s%s",
             c->outbound ? local : remote, c->outbound ? remote : local,
             auth_name(method),
             c->tls != NULL ? "" : " (no TLS: policy allowed it)");
    if (c->idle == NULL) {
        c->last_in_ms = c->last_out_ms = loop_now_ms(c->s2s->loop);
        c->last_stanza_ms = c->last_in_ms;
        c->idle = loop_timer_add(c->s2s->loop, 1000, conn_on_idle, c);
    }
    struct s2s_route *r = c->route;
    if (r != NULL && strcmp(r->local, local) == 0 &&
        strcmp(r->remote, remote) == 0) {
        r->state = ROUTE_READY;
        r->ready_since = time(NULL);
        backoff_reset(&r->backoff);
        r->auth = method;
        r->last_error[0] = '\0';
        /* the peer just answered: it is alive, and no ping is due yet */
        r->heard_ms = loop_now_ms(c->s2s->loop);
        r->ping_pending = false;
        route_clear_lookup(r);
        route_flush_queue(r);
    }
}

/* A coarse reason for the statistics: one strstr or two per failure. */
static enum s2s_auth_failure s2s_auth_failure_kind(const char *reason)
{
    if (reason == NULL) {
        return S2S_AUTHFAIL_OTHER;
    }
    if (strstr(reason, "policy") != NULL || strstr(reason, "allowed") != NULL ||
        strstr(reason, "denied") != NULL) {
        return S2S_AUTHFAIL_POLICY;
    }
    if (strstr(reason, "ertificate") != NULL ||
        strstr(reason, "EXTERNAL") != NULL || strstr(reason, "SASL") != NULL) {
        return S2S_AUTHFAIL_CERTIFICATE;
    }
    if (strstr(reason, "TLS") != NULL) {
        return S2S_AUTHFAIL_TLS;
    }
    if (strstr(reason, "ialback") != NULL || strstr(reason, "key") != NULL) {
        return S2S_AUTHFAIL_DIALBACK;
    }
    return S2S_AUTHFAIL_OTHER;
}

static void cb_auth_failed(void *ud,
                           const char *local,
                           const char *remote,
                           const char *reason)
{
    struct s2s_conn *c = ud;
    c->s2s->auth_failures[s2s_auth_failure_kind(reason)]++;
    log_conn(LOG_LEVEL_WARN, c->who, "authentication of %s -> %s failed: %s",
             c->outbound ? local : remote, c->outbound ? remote : local,
             reason);
    struct s2s_route *r = c->route;
    if (c->outbound && r != NULL && !c->dead) {
        /* Authentication is about the domain, not the address: do not
         * try the next one. */
        route_fail(r, "remote-server-not-found", "authentication failed: %s",
                   strncmp(r->last_error, "policy: ", 8) == 0 ? r->last_error
                                                              : reason);
        r->out = NULL;
        c->route = NULL;
        conn_close(c, NULL, NULL);
    }
}

/* Sends the verifications waiting on route r over its outbound stream. */
static void route_send_verifies(struct s2s_route *r)
{
    struct s2s_conn *o = r->out;
    /* no stream yet while connecting: the verifies go once it is up */
    if (o == NULL || o->dead || o->tls_handshaking || o->stream == NULL) {
        return;
    }
    enum s2s_state st = s2s_stream_state(o->stream);
    if (st != S2S_AUTH && st != S2S_READY) {
        return;
    }
    bool any = false;
    for (struct s2s_verify *v = r->verifies; v != NULL; v = v->next) {
        if (!v->sent && s2s_stream_send_verify(o->stream, r->local, r->remote,
                                               v->id, v->key) == 0) {
            v->sent = true;
            any = true;
        }
    }
    if (any) {
        (void)conn_flush(o);
    }
}

static void cb_verify_needed(void *ud,
                             const char *local,
                             const char *remote,
                             const char *stream_id,
                             const char *key)
{
    struct s2s_conn *c = ud;
    if (cb_cert_valid_for(c, remote)) {
        /* XEP-0344: the certificate already proves the domain, so the
         * authoritative server need not be asked. */
        log_conn(LOG_LEVEL_DEBUG, c->who,
                 "dialback for %s: certificate valid, no verify needed",
                 remote);
        s2s_stream_dialback_result(c->stream, local, remote, true);
        return;
    }
    struct s2s_route *r = route_get(c->s2s, local, remote);
    struct s2s_verify *v = r != NULL ? calloc(1, sizeof(*v)) : NULL;
    if (v == NULL) {
        s2s_stream_dialback_result(c->stream, local, remote, false);
        return;
    }
    v->in = c;
    snprintf(v->id, sizeof(v->id), "%s", stream_id);
    snprintf(v->key, sizeof(v->key), "%s", key);
    v->next = r->verifies;
    r->verifies = v;
    log_conn(LOG_LEVEL_DEBUG, c->who,
             "dialback: asking the authoritative server of %s", remote);
    if (r->state == ROUTE_IDLE) {
        route_start(r);
    } else {
        route_send_verifies(r);
    }
}

static void cb_verify_result(void *ud,
                             const char *local,
                             const char *remote,
                             const char *id,
                             bool valid)
{
    struct s2s_conn *c = ud;
    struct s2s_route *r = route_find(c->s2s, local, remote);
    if (r == NULL) {
        return;
    }
    for (struct s2s_verify **pp = &r->verifies; *pp != NULL;
         pp = &(*pp)->next) {
        struct s2s_verify *v = *pp;
        if (strcmp(v->id, id) != 0) {
            continue;
        }
        *pp = v->next;
        struct s2s_conn *in = v->in;
        free(v);
        log_conn(LOG_LEVEL_INFO, in->who, "dialback key for %s is %s", remote,
                 valid ? "valid" : "invalid");
        s2s_stream_dialback_result(in->stream, local, remote, valid);
        (void)conn_flush(in);
        return;
    }
}

/*
 * Takes the answer to a pending XEP-0199 ping: an iq result or error
 * from remote to the bare local domain of a route, with that route's
 * ping id. Consumes st and returns true when it is one; otherwise st is
 * untouched.
 */
static bool s2s_take_ping_answer(struct s2s *s2s, struct xml_node *st)
{
    char local[S2S_DOMAIN_MAX];
    char remote[S2S_DOMAIN_MAX];
    if (strcmp(st->name, "iq") != 0) {
        return false; /* most stanzas: no attribute looked at */
    }
    const char *type = xml_attr(st, "type");
    const char *id = xml_attr(st, "id");
    const char *to = xml_attr(st, "to");

    if (type == NULL || id == NULL || to == NULL ||
        (strcmp(type, "result") != 0 && strcmp(type, "error") != 0) ||
        strncmp(id, S2S_PING_PREFIX, sizeof(S2S_PING_PREFIX) - 1) != 0 ||
        strpbrk(to, "@/") != NULL ||
        jid_domain_canon(to, local, sizeof(local)) != 0 ||
        jid_domain_canon(xml_attr(st, "from"), remote, sizeof(remote)) != 0) {
        return false;
    }
    struct s2s_route *r = route_find(s2s, local, remote);
    if (r == NULL || !r->ping_pending || strcmp(r->ping_id, id) != 0) {
        return false;
    }
    r->ping_pending = false;
    r->pings_answered++;
    log_conn(LOG_LEVEL_DEBUG, r->remote,
             "route %s -> %s: XEP-0199 ping %s answered (%s) after %llu ms",
             r->local, r->remote, id, type,
             (unsigned long long)(loop_now_ms(s2s->loop) - r->ping_sent_ms));
    xml_unref(st);
    return true;
}

/* Bills a stanza and the bytes read for it to route r (may be NULL). */
static void s2s_bill(struct s2s_conn *c, struct s2s_route *r)
{
    if (r != NULL) {
        r->stanzas_in++;
        r->bytes_in += c->bytes_unbilled;
    }
    c->bytes_unbilled = 0;
}

/* A stanza on an inbound stream, in one pass over the routes: its
 * sender's domain is alive (heard_ms, as the read path does for the
 * stream's own peer: a stream may carry several authenticated pairs),
 * and the stanza is billed to the route of its pair. */
static void s2s_note_inbound(struct s2s_conn *c, const struct xml_node *st)
{
    char from[S2S_DOMAIN_MAX], to[S2S_DOMAIN_MAX];
    struct s2s_route *billed = NULL;
    if (jid_domain_canon(xml_attr(st, "from"), from, sizeof(from)) == 0) {
        bool has_to = jid_domain_canon(xml_attr(st, "to"), to, sizeof(to)) == 0;
        uint64_t now = loop_now_ms(c->s2s->loop);
        for (struct s2s_route *r = c->s2s->routes; r != NULL; r = r->next) {
            if (strcmp(r->remote, from) != 0) {
                continue;
            }
            r->heard_ms = now;
            if (has_to && billed == NULL && strcmp(r->local, to) == 0) {
                billed = r;
            }
        }
    }
    s2s_bill(c, billed);
}

static void cb_stanza(void *ud, struct xml_node *st)
{
    struct s2s_conn *c = ud;
    c->stanzas_in++;
    c->last_in_ms = c->last_stanza_ms = loop_now_ms(c->s2s->loop);
    if (c->outbound) {
        s2s_bill(c, c->route);
    } else {
        s2s_note_inbound(c, st);
        if (s2s_take_ping_answer(c->s2s, st)) {
            return;
        }
    }
    c->s2s->cb.stanza(c->s2s->ud, st); /* transferred */
}

/* Stream errors by which a peer says that trying again will not help
 * (RFC 6120 4.9.3): it does not serve the domain, or refuses us. */
static bool s2s_refusal_is_final(const char *condition)
{
    static const char *const final[] = {
        "host-unknown",     "host-gone",           "not-authorized",
        "policy-violation", "improper-addressing", "invalid-from"};
    for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++) {
        if (strcmp(condition, final[i]) == 0) {
            return true;
        }
    }
    return false;
}

static void cb_closed(void *ud, const struct s2s_close_info *info)
{
    struct s2s_conn *c = ud;
    if (info->condition != NULL) {
        /* From the peer, condition and text are its bytes: escaped, so a
         * newline in the text cannot forge a log line. */
        char cond[4 * 64 + 8];
        char text[4 * 160 + 8];
        log_escape(info->condition, strlen(info->condition), 64, cond,
                   sizeof(cond));
        log_escape(info->text != NULL ? info->text : "",
                   info->text != NULL ? strlen(info->text) : 0, 160, text,
                   sizeof(text));
        log_conn(LOG_LEVEL_WARN, c->who, "stream error %s %s: %s",
                 info->by_peer ? "from peer" : "sent", cond, text);
        if (c->route != NULL) {
            snprintf(c->route->last_error, sizeof(c->route->last_error),
                     "stream error %s %s%s%s",
                     info->by_peer ? "from peer:" : "sent:", cond,
                     info->text != NULL ? " " : "", text);
            c->refused_final |=
                info->by_peer && s2s_refusal_is_final(info->condition);
        }
    }
}

static const struct s2s_stream_callbacks conn_stream_cb = {
    .want_tls = cb_want_tls,
    .serves = cb_serves,
    .cert_valid_for = cb_cert_valid_for,
    .authorize = cb_authorize,
    .authenticated = cb_authenticated,
    .auth_failed = cb_auth_failed,
    .verify_needed = cb_verify_needed,
    .verify_result = cb_verify_result,
    .stanza = cb_stanza,
    .closed = cb_closed,
};

/* ---- connection setup
 * --------------------------------------------------------- */

static int conn_make_stream(struct s2s_conn *c)
{
    const struct conf *cfg = c->s2s->cfg;
    const struct conf_peer *p =
        c->route != NULL ? policy_peer(cfg, c->route->remote) : NULL;
    struct s2s_stream_config sc = {
        .role = c->outbound ? S2S_OUT : S2S_IN,
        .local = c->route != NULL ? c->route->local : NULL,
        .remote = c->route != NULL ? c->route->remote : NULL,
        .tls_active = c->direct_tls,
        .tls_offer = cfg->tls_cert != NULL,
        .tls_required = p != NULL ? p->tls_required : true,
        /* SASL EXTERNAL only with a certificate that names local */
        .cert_usable =
            c->outbound && c->route != NULL
                ? tls_ctx_cert_valid_for(c->s2s->tls, c->route->local)
                : cfg->tls_cert != NULL,
        .dialback_secret = c->s2s->dialback_secret,
        .previous_secret = c->s2s->previous_secret,
        .limits =
            {
                .stanza_max_preauth = cfg->stanza_max_preauth,
                .stanza_max = p != NULL && p->stanza_max != 0 ? p->stanza_max
                                                              : cfg->stanza_max,
                .depth_max = cfg->depth_max,
                .out_max = 2 * cfg->stanza_max + 4096,
            },
    };
    c->stream = s2s_stream_new(&sc, &conn_stream_cb, c);
    if (c->stream == NULL) {
        return ERR_NOMEM;
    }
    if (c->outbound) {
        return s2s_stream_start(c->stream);
    }
    return 0;
}

/* Drives the TLS handshake; on completion hands over to the machine. */
static void conn_tls_step(struct s2s_conn *c)
{
    int rc = tls_handshake(c->tls);
    if (rc == ERR_AGAIN) {
        c->want_events = tls_wants(c->tls);
        conn_update_events(c);
        return;
    }
    if (rc != 0) {
        char why[300];
        snprintf(why, sizeof(why), "TLS handshake failed: %s",
                 tls_last_error(c->tls));
        if (c->route != NULL) {
            snprintf(c->route->last_error, sizeof(c->route->last_error), "%s",
                     why);
        }
        if (c->stream != NULL) {
            s2s_stream_tls_done(c->stream, false);
        }
        conn_destroy(c, why);
        return;
    }
    c->tls_handshaking = false;
    c->want_events = 0;
    conn_log_tls(c);
    if (c->outbound) {
        (void)cb_cert_valid_for(c, c->route->remote);
    }
    if (c->stream == NULL) {
        /* direct TLS: the stream starts now */
        rc = conn_make_stream(c);
        if (rc != 0) {
            conn_destroy(c, err_str(rc));
            return;
        }
    } else {
        s2s_stream_tls_done(c->stream, true);
    }
    (void)conn_flush(c);
}

/* XEP-0368: TLS from the first byte (ALPN xmpp-server); the stream
 * starts when the handshake is done. */
static void conn_start_direct_tls(struct s2s_conn *c)
{
    c->tls = c->outbound
                 ? tls_conn_new_for(c->s2s->tls, c->fd, true, c->route->remote,
                                    true, c->route->local)
                 : tls_conn_new(c->s2s->tls, c->fd, false, NULL, true);
    if (c->tls == NULL) {
        conn_destroy(c, "cannot start TLS: out of memory");
        return;
    }
    c->tls_handshaking = true;
    conn_tls_step(c);
}

static void conn_start_tls(struct s2s_conn *c)
{
    c->want_tls = false;
    /* <starttls/> or <proceed/> must leave in plaintext first */
    struct buf *out = s2s_stream_output(c->stream);
    while (buf_size(out) > 0) {
        ssize_t n = write(c->fd, buf_peek(out), buf_size(out));
        if (n <= 0) {
            conn_destroy(c, "write failed before TLS");
            return;
        }
        buf_consume(out, (size_t)n);
    }
    /* Outbound: the local domain's certificate. Inbound: the header's
     * 'to' picks the certificate unless the peer's SNI names another. */
    c->tls = tls_conn_new_for(
        c->s2s->tls, c->fd, c->outbound, c->outbound ? c->route->remote : NULL,
        false, c->outbound ? c->route->local : s2s_stream_header_to(c->stream));
    if (c->tls == NULL) {
        conn_destroy(c, "cannot start TLS: out of memory");
        return;
    }
    c->tls_handshaking = true;
    conn_tls_step(c);
}

static void conn_read_all(struct s2s_conn *c)
{
    char data[S2S_READ_CHUNK];
    for (int i = 0;
         i < S2S_READS_PER_EVENT || (c->tls != NULL && tls_pending(c->tls));
         i++) {
        ssize_t n = conn_read(c, data, sizeof(data));
        if (n == ERR_AGAIN) {
            if (c->tls != NULL) {
                c->want_events = tls_wants(c->tls) & LOOP_WRITE;
            }
            break;
        }
        if (n == 0) {
            conn_destroy(c, s2s_stream_state(c->stream) == S2S_CLOSING
                                ? "closed"
                                : "peer closed the connection");
            return;
        }
        if (n < 0) {
            conn_destroy(c, c->tls != NULL ? tls_last_error(c->tls)
                                           : strerror(errno));
            return;
        }
        if (c->authenticated && !c->outbound) {
            /* the peer's whitespace keepalives count: it is alive. (Bytes
             * on our outbound stream do not: a peer that answers nothing
             * may still send whitespace there.) */
            const char *from = s2s_stream_header_from(c->stream);
            if (from != NULL) {
                s2s_heard_from(c->s2s, from);
            }
        }
        c->bytes_unbilled += (unsigned long)n;
        (void)s2s_stream_feed(c->stream, data, (size_t)n);
        if (c->dead) {
            return;
        }
        if (c->want_tls) {
            conn_start_tls(c);
            return;
        }
        enum s2s_state st = s2s_stream_state(c->stream);
        if (st == S2S_CLOSED) {
            (void)conn_flush(c);
            conn_destroy(c, "stream closed");
            return;
        }
        if (c->route != NULL) {
            route_send_verifies(c->route);
        }
        if (conn_reading_paused(c)) {
            break; /* the rest waits in the socket or in TLS */
        }
    }
    (void)conn_flush(c);
}

static void conn_on_io(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct s2s_conn *c = ud;
    if (c->dead) {
        return;
    }
    if (c->route != NULL && c->route->state == ROUTE_CONNECTING &&
        c->stream == NULL && c->tls == NULL) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
            soerr = errno;
        }
        if (soerr != 0) {
            char why[160];
            snprintf(why, sizeof(why), "connect failed: %s", strerror(soerr));
            conn_destroy(c, why);
            return;
        }
        c->route->state = ROUTE_NEGOTIATING;
        loop_timer_cancel(loop, c->timer);
        c->timer = loop_timer_add(
            loop, (uint64_t)c->s2s->cfg->s2s_negotiate_timeout * 1000u,
            conn_on_timer, c);
        log_conn(LOG_LEVEL_INFO, c->who, "connected");
        if (c->direct_tls) {
            conn_start_direct_tls(c);
            return;
        }
        int rc = conn_make_stream(c);
        if (rc != 0) {
            conn_destroy(c, err_str(rc));
            return;
        }
        (void)conn_flush(c);
        return;
    }
    if (c->tls_handshaking) {
        conn_tls_step(c);
        return;
    }
    bool may_read = !conn_reading_paused(c) || (events & LOOP_ERROR) != 0;
    if (may_read && ((events & (LOOP_READ | LOOP_ERROR)) != 0 ||
                     (c->want_events & LOOP_READ) != 0)) {
        conn_read_all(c);
        if (c->dead) {
            return;
        }
    }
    if ((events & LOOP_WRITE) != 0) {
        (void)conn_flush(c);
    }
}

static struct s2s_conn *conn_new(struct s2s *s2s, int fd, bool outbound)
{
    struct s2s_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->s2s = s2s;
    c->fd = fd;
    c->outbound = outbound;
    c->next = s2s->conns;
    s2s->conns = c;
    return c;
}

/* ---- outbound: resolve and connect
 * ------------------------------------------------ */

static void
route_connect(struct s2s_route *r, const struct dns_addr *a, bool direct_tls)
{
    struct s2s *s2s = r->s2s;
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    const void *ip =
        a->ss.ss_family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    inet_ntop(a->ss.ss_family, ip, addr, sizeof(addr));
    uint16_t port = ntohs(a->ss.ss_family == AF_INET6
                              ? ((const struct sockaddr_in6 *)&a->ss)->sin6_port
                              : ((const struct sockaddr_in *)&a->ss)->sin_port);
    int fd =
        socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(r->last_error, sizeof(r->last_error), "socket: %s",
                 strerror(errno));
        r->tried_transient = true;
        r->ai++;
        route_next_addr(r);
        return;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct s2s_conn *c = conn_new(s2s, fd, true);
    if (c == NULL) {
        close(fd);
        route_fail(r, "resource-constraint", "out of memory");
        return;
    }
    c->route = r;
    c->direct_tls = direct_tls;
    r->out = c;
    r->state = ROUTE_CONNECTING;
    snprintf(c->who, sizeof(c->who), "s2s out %s -> %s %s:%u%s", r->local,
             r->remote, addr, port, direct_tls ? " (direct TLS)" : "");
    if (loop_watch(s2s->loop, fd, LOOP_WRITE, conn_on_io, c) != 0) {
        conn_destroy(c, "cannot watch the socket");
        return;
    }
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0 &&
        errno != EINPROGRESS) {
        char why[160];
        snprintf(why, sizeof(why), "connect failed: %s", strerror(errno));
        conn_destroy(c, why);
        return;
    }
    c->timer = loop_timer_add(s2s->loop,
                              (uint64_t)s2s->cfg->s2s_connect_timeout * 1000u,
                              conn_on_timer, c);
    log_conn(LOG_LEVEL_DEBUG, c->who, "connecting");
}

static void route_next_target(struct s2s_route *r);

static void route_on_addrs(void *ud,
                           int err,
                           const struct dns_addr *addrs,
                           size_t n,
                           bool secure)
{
    struct s2s_route *r = ud;
    r->query = NULL;
    const struct dns_target *t = &r->targets[r->ti];
    if (err != 0 || n == 0) {
        snprintf(r->last_error, sizeof(r->last_error),
                 "DNS: no address for %s: %s", t->host, err_str(err));
        /* a name without an address stays so; a failing resolver may not */
        r->tried_transient |= err != ERR_NOT_FOUND;
        log_conn(LOG_LEVEL_INFO, r->remote, "%s", r->last_error);
        r->ti++;
        route_next_target(r);
        return;
    }
    free(r->addrs);
    r->addrs = calloc(n, sizeof(*r->addrs));
    if (r->addrs == NULL) {
        route_fail(r, "resource-constraint", "out of memory");
        return;
    }
    memcpy(r->addrs, addrs, n * sizeof(*addrs));
    r->naddrs = n;
    r->ai = 0;
    route_next_addr(r);
}

static void route_on_retry(struct loop *loop, void *ud)
{
    struct s2s_route *r = ud;
    r->retry = NULL;
    route_start(r);
}

/*
 * Every target failed for a transient reason (refused, unreachable, timed
 * out, TLS broke). Waiting stanzas stay queued until limits.queue_timeout
 * while connecting is retried with backoff; pending dialback
 * verifications are answered negatively at once (the peer retries them).
 */
static void route_retry_later(struct s2s_route *r)
{
    struct s2s *s2s = r->s2s;
    if (r->last_error[0] == '\0') {
        snprintf(r->last_error, sizeof(r->last_error), "%s",
                 "no target could be reached");
    }
    if (r->queue.count == 0 || s2s->shutting_down || !r->tried_transient) {
        route_fail(r, "remote-server-not-found", "%s", r->last_error);
        return;
    }
    memcpy(r->last_failure, r->last_error, sizeof(r->last_failure));
    r->last_failure_at = time(NULL);
    uint32_t delay = backoff_next(&r->backoff);
    log_conn(LOG_LEVEL_WARN, r->remote,
             "route %s -> %s: %s; %zu stanza(s) wait, retrying in %u ms",
             r->local, r->remote, r->last_error, r->queue.count,
             (unsigned)delay);
    route_clear_lookup(r);
    r->state = ROUTE_IDLE;
    route_check_congestion(r);
    route_refuse_verifies(r);
    loop_timer_cancel(s2s->loop, r->retry);
    r->retry = loop_timer_add(s2s->loop, delay, route_on_retry, r);
}

static void route_next_target(struct s2s_route *r)
{
    if (r->ti >= r->ntargets) {
        route_retry_later(r);
        return;
    }
    const struct dns_target *t = &r->targets[r->ti];
    r->state = ROUTE_RESOLVING;
    struct dns_addr literal;
    memset(&literal, 0, sizeof(literal));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&literal.ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&literal.ss;
    if (inet_pton(AF_INET, t->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(t->port);
        literal.len = sizeof(*s4);
        route_on_addrs(r, 0, &literal, 1, false);
        return;
    }
    if (inet_pton(AF_INET6, t->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(t->port);
        literal.len = sizeof(*s6);
        route_on_addrs(r, 0, &literal, 1, false);
        return;
    }
    int rc = dns_resolve_addrs(r->s2s->dns, t->host, t->port, route_on_addrs, r,
                               &r->query);
    if (rc != 0) {
        snprintf(r->last_error, sizeof(r->last_error),
                 "DNS: cannot resolve %s: %s", t->host, err_str(rc));
        r->tried_transient = true;
        r->ti++;
        route_next_target(r);
    }
}

static void route_next_addr(struct s2s_route *r)
{
    if (r->ai >= r->naddrs) {
        r->ti++;
        route_next_target(r);
        return;
    }
    route_connect(r, &r->addrs[r->ai], r->targets[r->ti].direct_tls);
}

static void
route_on_targets(void *ud, int err, const struct dns_target *targets, size_t n)
{
    struct s2s_route *r = ud;
    r->query = NULL;
    if (err == ERR_SYS) {
        /* the resolver failed (SERVFAIL, timeout, no descriptors): that
         * may pass, unlike an answer that the domain has no service */
        snprintf(r->last_error, sizeof(r->last_error),
                 "DNS: cannot look up %s: %s", r->remote, err_str(err));
        r->tried_transient = true;
        route_retry_later(r);
        return;
    }
    if (err != 0 || n == 0) {
        route_fail(r, "remote-server-not-found",
                   "DNS: %s offers no s2s "
                   "service (%s)",
                   r->remote, err_str(err));
        return;
    }
    r->targets = calloc(n, sizeof(*targets));
    if (r->targets == NULL) {
        route_fail(r, "resource-constraint", "out of memory");
        return;
    }
    memcpy(r->targets, targets, n * sizeof(*targets));
    r->ntargets = n;
    r->ti = 0;
    for (size_t i = 0; i < n; i++) {
        log_conn(LOG_LEVEL_DEBUG, r->remote, "target %zu: %s:%u%s%s", i,
                 targets[i].host, targets[i].port,
                 targets[i].direct_tls ? " direct TLS" : "",
                 targets[i].secure ? " (DNSSEC)" : "");
    }
    route_next_target(r);
}

static void route_start(struct s2s_route *r)
{
    struct s2s *s2s = r->s2s;
    if (r->state != ROUTE_IDLE) {
        return;
    }
    loop_timer_cancel(s2s->loop, r->retry);
    r->retry = NULL;
    r->attempt_ms = loop_now_ms(s2s->loop);
    route_clear_lookup(r);
    r->last_error[0] = '\0';
    r->tried_transient = false;
    const struct conf_peer *p = policy_peer(s2s->cfg, r->remote);
    r->state = ROUTE_RESOLVING;
    if (p != NULL && p->host != NULL && strcmp(p->domain, r->remote) == 0) {
        r->targets = calloc(1, sizeof(*r->targets));
        if (r->targets == NULL) {
            route_fail(r, "resource-constraint", "out of memory");
            return;
        }
        snprintf(r->targets[0].host, sizeof(r->targets[0].host), "%s", p->host);
        r->targets[0].port = (uint16_t)(p->port != 0 ? p->port : 5269);
        r->ntargets = 1;
        r->ti = 0;
        route_next_target(r);
        return;
    }
    int rc =
        dns_resolve_s2s(s2s->dns, r->remote, route_on_targets, r, &r->query);
    if (rc != 0) {
        route_fail(r, "remote-server-not-found", "DNS: cannot query: %s",
                   err_str(rc));
    }
}

static void route_flush_queue(struct s2s_route *r)
{
    struct s2s_conn *o = r->out;
    bool sent = false;
    while (r->state == ROUTE_READY && o != NULL && !o->dead &&
           r->queue.count > 0) {
        const struct xml_node *st = squeue_peek(&r->queue);
        size_t before = buf_size(s2s_stream_output(o->stream));
        int rc = s2s_stream_send(o->stream, st);
        if ((rc == ERR_TOO_BIG && before > 0) || rc == ERR_CLOSED) {
            break; /* wait for the socket, or for the route to restart */
        }
        struct xml_node *own = squeue_pop(&r->queue);
        if (rc != 0) {
            r->s2s->cb.undeliverable(r->s2s->ud, own, "resource-constraint",
                                     err_str(rc));
            continue;
        }
        r->stanzas_out++;
        o->last_stanza_ms = loop_now_ms(r->s2s->loop);
        r->bytes_out += buf_size(s2s_stream_output(o->stream)) - before;
        xml_unref(own);
        sent = true;
    }
    if (sent && o != NULL) {
        (void)conn_flush(o);
    }
    route_send_verifies(r);
    route_arm_expiry(r);
}

int s2s_send(struct s2s *s2s, struct xml_node *st)
{
    char from[1024];
    char to[1024];
    const char *f = xml_attr(st, "from");
    const char *t = xml_attr(st, "to");
    if (f == NULL || t == NULL || jid_domain_of(f, from, sizeof(from)) != 0 ||
        jid_domain_of(t, to, sizeof(to)) != 0) {
        s2s->cb.undeliverable(s2s->ud, st, "jid-malformed",
                              "bad from or to address");
        return ERR_INVAL;
    }
    struct policy_decision pd;
    policy_check_send(s2s->cfg, to, s2s_is_blocked(s2s, to), &pd);
    if (!pd.allow || !s2s_serves(s2s, from)) {
        char text[300];
        if (s2s_is_blocked(s2s, to)) {
            snprintf(text, sizeof(text),
                     "%s is blocked by fedgate's administrator", to);
        } else {
            snprintf(text, sizeof(text), "%s is not a trusted peer of %s", to,
                     from);
        }
        log_conn(LOG_LEVEL_INFO, to, "refusing <%s/> from %s: %s", st->name, f,
                 text);
        s2s->cb.undeliverable(
            s2s->ud, st, pd.allow ? "remote-server-not-found" : pd.condition,
            text);
        return ERR_AUTH;
    }
    struct s2s_route *r = route_get(s2s, from, to);
    if (r == NULL) {
        s2s->cb.undeliverable(s2s->ud, st, "resource-constraint",
                              "out of memory");
        return ERR_NOMEM;
    }
    if (r->state == ROUTE_READY && r->queue.count == 0) {
        size_t before = buf_size(s2s_stream_output(r->out->stream));
        int rc = s2s_stream_send(r->out->stream, st);
        if (rc == 0) {
            r->stanzas_out++;
            r->out->last_stanza_ms = loop_now_ms(s2s->loop);
            r->bytes_out +=
                buf_size(s2s_stream_output(r->out->stream)) - before;
            xml_unref(st);
            conn_flush_later(r->out);
            return 0;
        }
        /* a closing stream: queue, the route restarts when it is gone */
        if (rc != ERR_CLOSED && (rc != ERR_TOO_BIG || before == 0)) {
            s2s->cb.undeliverable(s2s->ud, st, "resource-constraint",
                                  err_str(rc));
            return rc;
        }
    }
    struct buf probe;
    buf_init(&probe, s2s->cfg->stanza_max);
    int rc = xml_serialize(st, st->ns, &probe);
    size_t bytes = buf_size(&probe);
    buf_free(&probe);
    if (rc == 0) {
        rc = squeue_push(&r->queue, st, bytes, loop_now_ms(s2s->loop));
    }
    if (rc != 0) {
        s2s->cb.undeliverable(s2s->ud, st, "resource-constraint",
                              "the queue for this peer is full");
        return ERR_TOO_BIG;
    }
    if (r->expiry == NULL) {
        route_arm_expiry(r);
    } else {
        route_check_congestion(r);
    }
    /* While backing off, a new stanza may bring the next attempt forward,
     * but not closer than the initial backoff to the previous one. */
    if (r->state == ROUTE_IDLE &&
        (r->retry == NULL || loop_now_ms(s2s->loop) - r->attempt_ms >=
                                 s2s->cfg->backoff_initial_ms)) {
        route_start(r);
    }
    return 0;
}

/* ---- inbound
 * ------------------------------------------------------------------- */

/* Ends an inbound connection at once: the stream error when the stream can
 * still carry one (written without waiting), then the socket closes.
 * What the peer sent and we did not read is read and dropped first: a
 * close with unread input sends a TCP reset, which can destroy the error
 * in the peer's receive queue before it reads it. */
static void
conn_abort(struct s2s_conn *c, const char *condition, const char *text)
{
    if (c->stream != NULL && !c->tls_handshaking) {
        s2s_stream_close(c->stream, condition, text);
        if (!conn_flush(c)) {
            return;
        }
    }
    char sink[4096];
    for (int i = 0; i < 16 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0;
         i++) {
    }
    conn_destroy(c, text);
}

/*
 * Bounds on inbound connections that have not authenticated, so that
 * half-open peers cannot take every file descriptor (and with them DNS,
 * outbound routes and the home-server links): from one address at most
 * s2s.max_unauthenticated_per_address, the new one refused; from all
 * addresses at most s2s.max_unauthenticated, one closed to make room: the
 * oldest that has not sent a whole stream header yet (a real peer sends
 * its header at once, a half-open one never does), else the oldest. So
 * a real peer's handshake gets through a flood of half-open connections.
 * Walks the connection list (newest first): one pass per accept. false
 * when c was refused.
 */
static bool conn_admit(struct s2s_conn *c)
{
    const struct conf *cfg = c->s2s->cfg;
    size_t total = 0;
    size_t same = 0;
    struct s2s_conn *oldest = NULL;
    struct s2s_conn *oldest_headless = NULL;
    for (struct s2s_conn *o = c->s2s->conns; o != NULL; o = o->next) {
        if (o == c || o->outbound || o->authenticated || o->dead) {
            continue;
        }
        total++;
        same += strcmp(o->addr, c->addr) == 0;
        oldest = o;
        if (o->stream == NULL || s2s_stream_header_to(o->stream) == NULL) {
            oldest_headless = o;
        }
    }
    if (oldest_headless != NULL) {
        oldest = oldest_headless;
    }
    char text[160];
    if (same >= cfg->s2s_max_unauth_per_addr) {
        snprintf(text, sizeof(text),
                 "%zu unauthenticated connections from %s already "
                 "(s2s.max_unauthenticated_per_address)",
                 same, c->addr);
        if (c->stream == NULL && !c->direct_tls) {
            (void)conn_make_stream(c); /* to say why; NULL: just close */
        }
        conn_abort(c, "policy-violation", text);
        return false;
    }
    if (total >= cfg->s2s_max_unauth && oldest != NULL) {
        snprintf(text, sizeof(text),
                 "closed for a newer one: %zu unauthenticated connections "
                 "(s2s.max_unauthenticated)",
                 total);
        conn_abort(oldest, "resource-constraint", text);
    }
    return true;
}

static void listener_on_resume(struct loop *loop, void *ud)
{
    struct s2s_listener *l = ud;
    l->resume = NULL;
    if (loop_modify(loop, l->fd, LOOP_READ) != 0) {
        log_error("s2s listener %s: cannot resume accepting", l->addr);
    }
}

/* accept() failed for want of descriptors or memory: the connection stays
 * queued and the level-triggered listener would fire again at once, a busy
 * loop writing a log line each time. Accepting pauses instead; ending
 * connections free descriptors meanwhile. */
static void listener_pause(struct s2s_listener *l, int err)
{
    struct loop *loop = l->s2s->loop;
    if (l->resume != NULL) {
        return;
    }
    l->resume =
        loop_timer_add(loop, S2S_ACCEPT_PAUSE_MS, listener_on_resume, l);
    if (l->resume == NULL || loop_modify(loop, l->fd, 0) != 0) {
        loop_timer_cancel(loop, l->resume);
        l->resume = NULL;
        return;
    }
    log_warn("s2s listener %s: accept failed: %s; not accepting for %d ms",
             l->addr, strerror(err), S2S_ACCEPT_PAUSE_MS);
}

static void
listener_on_accept(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct s2s_listener *l = ud;
    struct s2s *s2s = l->s2s;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int cfd =
        accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
            errno == ENOMEM) {
            listener_pause(l, errno);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            log_warn("s2s listener %s: accept failed: %s", l->addr,
                     strerror(errno));
        }
        return;
    }
    if (s2s->shutting_down) {
        close(cfd);
        return;
    }
    char addr[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
        port = ntohs(s6->sin6_port);
    } else if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
        port = ntohs(s4->sin_port);
    }
    int one = 1;
    (void)setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct s2s_conn *c = conn_new(s2s, cfd, false);
    if (c == NULL) {
        close(cfd);
        return;
    }
    c->direct_tls = l->direct_tls;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    snprintf(c->who, sizeof(c->who), "s2s in %s:%u via %s%s", addr, port,
             l->addr, l->direct_tls ? " (direct TLS)" : "");
    if (loop_watch(loop, cfd, LOOP_READ, conn_on_io, c) != 0) {
        conn_destroy(c, "cannot watch the socket");
        return;
    }
    c->timer =
        loop_timer_add(loop, (uint64_t)s2s->cfg->s2s_negotiate_timeout * 1000u,
                       conn_on_timer, c);
    log_conn(LOG_LEVEL_INFO, c->who, "accepted");
    if (!conn_admit(c)) {
        return;
    }
    if (l->direct_tls) {
        conn_start_direct_tls(c);
        return;
    }
    int rc = conn_make_stream(c);
    if (rc != 0) {
        conn_destroy(c, err_str(rc));
    }
}

/* Parses "ip:port" or "[ipv6]:port" (validated by the config). */
static int
parse_listen(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    if (colon == NULL) {
        return ERR_INVAL;
    }
    size_t hl = (size_t)(colon - text);
    const char *h = text;
    if (hl >= 2 && text[0] == '[' && text[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        return ERR_INVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port > 65535) {
        return ERR_INVAL;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*s6);
        return 0;
    }
    return ERR_INVAL;
}

static int s2s_open_listener(struct s2s *s2s, const char *text, bool direct_tls)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (s2s->nlisteners >= S2S_MAX_LISTENERS) {
        log_error("s2s listener %s: too many listeners (max %d)", text,
                  S2S_MAX_LISTENERS);
        return ERR_TOO_BIG;
    }
    if (parse_listen(text, &ss, &len) != 0) {
        log_error("s2s listener %s: not an address", text);
        return ERR_INVAL;
    }
    int fd =
        socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("s2s listener %s: socket: %s", text, strerror(errno));
        return ERR_SYS;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6) {
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 128) != 0) {
        log_error("s2s listener %s: %s", text, strerror(errno));
        close(fd);
        return ERR_SYS;
    }
    struct s2s_listener *l = &s2s->listeners[s2s->nlisteners];
    l->s2s = s2s;
    l->fd = fd;
    l->resume = NULL;
    l->direct_tls = direct_tls;
    snprintf(l->addr, sizeof(l->addr), "%s", text);
    if (loop_watch(s2s->loop, fd, LOOP_READ, listener_on_accept, l) != 0) {
        close(fd);
        return ERR_SYS;
    }
    s2s->nlisteners++;
    log_info("s2s listening on %s%s", text, direct_tls ? " (direct TLS)" : "");
    return 0;
}

int s2s_listen(struct s2s *s2s)
{
    const struct conf *cfg = s2s->cfg;
    for (size_t i = 0; i < cfg->ns2s_listen; i++) {
        int rc = s2s_open_listener(s2s, cfg->s2s_listen[i], false);
        if (rc != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < cfg->ns2s_direct_tls_listen; i++) {
        int rc = s2s_open_listener(s2s, cfg->s2s_direct_tls_listen[i], true);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- life cycle
 * ------------------------------------------------------------------ */

struct s2s *s2s_new(struct loop *loop,
                    const struct conf *cfg,
                    struct dns *dns,
                    struct tls_ctx *tls,
                    const struct s2s_callbacks *cb,
                    void *ud,
                    char *err,
                    size_t errlen)
{
    struct s2s *s2s = calloc(1, sizeof(*s2s));
    if (s2s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s2s->loop = loop;
    s2s->cfg = cfg;
    s2s->dns = dns;
    s2s->tls = tls;
    s2s->cb = *cb;
    s2s->ud = ud;
    if (loop_before_sleep(loop, s2s_flush_due, s2s) != 0) {
        snprintf(err, errlen, "out of memory");
        free(s2s);
        return NULL;
    }
    s2s->hooked = true;
    if (cfg->s2s_dialback_secret != NULL) {
        s2s->dialback_secret = strdup(cfg->s2s_dialback_secret);
    } else {
        s2s->dialback_secret = calloc(1, DIALBACK_KEY_LEN + 1);
        if (s2s->dialback_secret != NULL &&
            dialback_secret_generate(s2s->dialback_secret) != 0) {
            snprintf(err, errlen, "cannot generate a dialback secret");
            s2s_free(s2s);
            return NULL;
        }
    }
    if (s2s->dialback_secret == NULL) {
        snprintf(err, errlen, "out of memory");
        s2s_free(s2s);
        return NULL;
    }
    return s2s;
}

void s2s_reconfigure(struct s2s *s2s, const struct conf *cfg)
{
    s2s->cfg = cfg;
    for (struct s2s_route *r = s2s->routes; r != NULL; r = r->next) {
        const struct conf_peer *p = policy_peer(cfg, r->remote);
        r->queue.max_count = cfg->queue_max_stanzas;
        r->queue.max_bytes = cfg->queue_max_bytes;
        if (p != NULL && p->trusted) {
            continue;
        }
        if (r->out != NULL) {
            struct s2s_conn *c = r->out;
            c->route = NULL;
            r->out = NULL;
            conn_close(c, "policy-violation", "peering removed");
        }
        route_fail(r, "remote-server-not-found", "%s is no longer a peer",
                   r->remote);
    }
    /* inbound streams from peers that are no longer trusted close too */
    struct s2s_conn *next;
    for (struct s2s_conn *c = s2s->conns; c != NULL; c = next) {
        next = c->next;
        const char *from = s2s_stream_header_from(c->stream);
        if (c->outbound || from == NULL) {
            continue;
        }
        const struct conf_peer *p = policy_peer(cfg, from);
        if (p == NULL || !p->trusted) {
            conn_close(c, "policy-violation", "peering removed");
        }
    }
}

/* ---- administration: block list and route control -------------------- */

bool s2s_is_blocked(const struct s2s *s2s, const char *domain)
{
    for (size_t i = 0; domain != NULL && i < s2s->nblocked; i++) {
        if (strcmp(s2s->blocked[i], domain) == 0) {
            return true;
        }
    }
    return false;
}

size_t s2s_blocked_count(const struct s2s *s2s)
{
    return s2s->nblocked;
}

const char *s2s_blocked_domain(const struct s2s *s2s, size_t i)
{
    return i < s2s->nblocked ? s2s->blocked[i] : NULL;
}

/* Detaches r's outbound stream, if any, and closes it with condition (NULL
 * for a plain close). */
static void
route_close_out(struct s2s_route *r, const char *condition, const char *text)
{
    struct s2s_conn *c = r->out;
    if (c == NULL) {
        return;
    }
    c->route = NULL;
    r->out = NULL;
    conn_close(c, condition, text);
}

/* Closes the inbound streams from domain with a stream error. */
static void s2s_close_inbound_from(struct s2s *s2s,
                                   const char *domain,
                                   const char *condition,
                                   const char *text)
{
    struct s2s_conn *next;
    for (struct s2s_conn *c = s2s->conns; c != NULL; c = next) {
        next = c->next;
        if (c->outbound || c->dead || c->stream == NULL) {
            continue;
        }
        const char *from = s2s_stream_header_from(c->stream);
        if ((from != NULL && strcmp(from, domain) == 0) ||
            strcmp(c->auth_remote, domain) == 0) {
            conn_close(c, condition, text);
        }
    }
}

/* Closes r's outbound stream (stream error condition, or a clean close
 * when NULL) and stops any attempt: the route is idle, its queue kept. */
static void
route_stop(struct s2s_route *r, const char *condition, const char *text)
{
    route_close_out(r, condition, text);
    route_clear_lookup(r);
    route_refuse_verifies(r);
    loop_timer_cancel(r->s2s->loop, r->retry);
    r->retry = NULL;
    backoff_reset(&r->backoff);
    r->state = ROUTE_IDLE;
    r->auth = POLICY_AUTH_NONE;
    route_check_congestion(r);
}

int s2s_block(struct s2s *s2s, const char *domain)
{
    if (domain == NULL || domain[0] == '\0') {
        return ERR_INVAL;
    }
    if (!s2s_is_blocked(s2s, domain)) {
        char **nb =
            realloc(s2s->blocked, (s2s->nblocked + 1) * sizeof(*s2s->blocked));
        if (nb == NULL) {
            return ERR_NOMEM;
        }
        s2s->blocked = nb;
        nb[s2s->nblocked] = strdup(domain);
        if (nb[s2s->nblocked] == NULL) {
            return ERR_NOMEM;
        }
        s2s->nblocked++;
    }
    log_conn(LOG_LEVEL_WARN, domain, "domain %s blocked: closing its streams",
             domain);
    for (struct s2s_route *r = s2s->routes; r != NULL; r = r->next) {
        if (strcmp(r->remote, domain) != 0) {
            continue;
        }
        route_close_out(r, "policy-violation", "blocked by an administrator");
        if (r->state != ROUTE_IDLE || r->queue.count > 0 || r->retry != NULL) {
            /* the stanza error policy_check_send gives for a block */
            route_fail(r, "not-allowed",
                       "%s is blocked by fedgate's administrator", r->remote);
        }
    }
    s2s_close_inbound_from(s2s, domain, "policy-violation",
                           "blocked by an administrator");
    return 0;
}

int s2s_unblock(struct s2s *s2s, const char *domain)
{
    for (size_t i = 0; domain != NULL && i < s2s->nblocked; i++) {
        if (strcmp(s2s->blocked[i], domain) == 0) {
            free(s2s->blocked[i]);
            s2s->blocked[i] = s2s->blocked[--s2s->nblocked];
            log_conn(LOG_LEVEL_WARN, domain, "domain %s unblocked", domain);
            return 0;
        }
    }
    return ERR_NOT_FOUND;
}

/* Wipes and frees a secret. Accepts NULL. */
static void s2s_secret_free(char *secret)
{
    if (secret != NULL) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
}

/* Gives every open stream the current secrets. A stream that cannot take
 * them (out of memory) keeps its own, which still verify its keys. */
static void s2s_push_secrets(struct s2s *s2s)
{
    for (struct s2s_conn *c = s2s->conns; c != NULL; c = c->next) {
        if (c->stream != NULL && !c->dead &&
            s2s_stream_set_secrets(c->stream, s2s->dialback_secret,
                                   s2s->previous_secret) != 0) {
            log_warn("out of memory while giving a stream the rotated "
                     "dialback secret");
        }
    }
}

/* The grace after a rotation is over: only the current secret verifies. */
static void s2s_on_secret_grace(struct loop *loop, void *ud)
{
    (void)loop;
    struct s2s *s2s = ud;
    s2s->secret_grace = NULL;
    s2s_secret_free(s2s->previous_secret);
    s2s->previous_secret = NULL;
    s2s_push_secrets(s2s);
    log_info("dialback keys under the previous secret no longer verify");
}

int s2s_rotate_dialback_secret(struct s2s *s2s)
{
    char *fresh = calloc(1, DIALBACK_KEY_LEN + 1);
    if (fresh == NULL) {
        return ERR_NOMEM;
    }
    if (dialback_secret_generate(fresh) != 0) {
        free(fresh);
        return ERR_SYS;
    }
    struct loop_timer *grace = loop_timer_add(s2s->loop, S2S_SECRET_GRACE_MS,
                                              s2s_on_secret_grace, s2s);
    if (grace == NULL) {
        s2s_secret_free(fresh);
        return ERR_NOMEM;
    }
    loop_timer_cancel(s2s->loop, s2s->secret_grace);
    s2s->secret_grace = grace;
    s2s_secret_free(s2s->previous_secret);
    s2s->previous_secret = s2s->dialback_secret; /* transferred */
    s2s->dialback_secret = fresh;                /* transferred */
    s2s_push_secrets(s2s);
    log_info("dialback secret rotated; keys under the previous one verify "
             "for %u more minutes",
             S2S_SECRET_GRACE_MS / 60000u);
    return 0;
}

void s2s_peer_reset(struct s2s *s2s, const char *domain)
{
    log_conn(LOG_LEVEL_INFO, domain,
             "peering settings of %s changed: its streams start over", domain);
    for (struct s2s_route *r = s2s->routes; r != NULL; r = r->next) {
        if (strcmp(r->remote, domain) != 0) {
            continue;
        }
        route_stop(r, "reset", "peering settings changed");
        if (r->queue.count > 0) {
            route_start(r); /* under the new settings */
        }
    }
    s2s_close_inbound_from(s2s, domain, "reset", "peering settings changed");
}

/* After a pause: what TLS already decrypted-ahead is invisible to epoll,
 * so it is read here; the rest comes as the sockets signal it. */
static void s2s_on_resume(struct loop *loop, void *ud)
{
    struct s2s *s2s = ud;
    struct s2s_conn *next;
    (void)loop;
    s2s->resume_timer = NULL;
    for (struct s2s_conn *c = s2s->conns; c != NULL && !s2s->inbound_paused;
         c = next) {
        next = c->next;
        if (!c->dead && !c->outbound && c->tls != NULL && tls_pending(c->tls)) {
            conn_read_all(c);
        }
    }
}

void s2s_pause_inbound(struct s2s *s2s, bool pause)
{
    if (s2s->inbound_paused == pause) {
        return;
    }
    s2s->inbound_paused = pause;
    for (struct s2s_conn *c = s2s->conns; c != NULL; c = c->next) {
        if (!c->dead && !c->outbound && c->authenticated) {
            conn_update_events(c);
        }
    }
    if (!pause && s2s->resume_timer == NULL) {
        /* not from here: the caller may be inside a connection's read */
        s2s->resume_timer = loop_timer_add(s2s->loop, 0, s2s_on_resume, s2s);
    }
}

int s2s_route_disconnect(struct s2s *s2s, const char *local, const char *remote)
{
    struct s2s_route *r = route_find(s2s, local, remote);
    if (r == NULL) {
        return ERR_NOT_FOUND;
    }
    log_conn(LOG_LEVEL_INFO, remote,
             "route %s -> %s: disconnected by an administrator (%zu stanza(s) "
             "stay queued)",
             local, remote, r->queue.count);
    route_stop(r, NULL, NULL);
    return 0;
}

int s2s_route_retry(struct s2s *s2s, const char *local, const char *remote)
{
    struct s2s_route *r = route_find(s2s, local, remote);
    if (r == NULL) {
        return ERR_NOT_FOUND;
    }
    if (s2s_is_blocked(s2s, remote)) {
        return ERR_AUTH;
    }
    if (r->state != ROUTE_IDLE) {
        return ERR_AGAIN;
    }
    log_conn(LOG_LEVEL_INFO, remote,
             "route %s -> %s: retried now by an administrator", local, remote);
    loop_timer_cancel(s2s->loop, r->retry);
    r->retry = NULL;
    backoff_reset(&r->backoff);
    route_start(r);
    return 0;
}

static void s2s_finish_shutdown(struct s2s *s2s)
{
    loop_timer_cancel(s2s->loop, s2s->shutdown_timer);
    s2s->shutdown_timer = NULL;
    void (*done)(void *) = s2s->shutdown_done;
    s2s->shutdown_done = NULL;
    if (done != NULL) {
        done(s2s->shutdown_ud);
    }
}

static void s2s_check_shutdown(struct s2s *s2s)
{
    if (s2s->shutting_down && s2s->shutdown_done != NULL &&
        s2s->conns == NULL) {
        s2s_finish_shutdown(s2s);
    }
}

static void s2s_on_shutdown_timeout(struct loop *loop, void *ud)
{
    struct s2s *s2s = ud;
    s2s->shutdown_timer = NULL;
    while (s2s->conns != NULL) {
        conn_destroy(s2s->conns, "shutdown grace period over");
    }
    s2s_finish_shutdown(s2s);
}

void s2s_shutdown(struct s2s *s2s, void (*done)(void *ud), void *ud)
{
    s2s->shutting_down = true;
    s2s->shutdown_done = done;
    s2s->shutdown_ud = ud;
    for (size_t i = 0; i < s2s->nlisteners; i++) {
        loop_timer_cancel(s2s->loop, s2s->listeners[i].resume);
        s2s->listeners[i].resume = NULL;
        loop_unwatch(s2s->loop, s2s->listeners[i].fd);
        close(s2s->listeners[i].fd);
    }
    s2s->nlisteners = 0;
    for (struct s2s_route *r = s2s->routes; r != NULL; r = r->next) {
        route_clear_lookup(r);
        loop_timer_cancel(s2s->loop, r->retry);
        r->retry = NULL;
        route_bounce_queue(r, "remote-server-timeout",
                           "fedgate is shutting down");
    }
    struct s2s_conn *next;
    for (struct s2s_conn *c = s2s->conns; c != NULL; c = next) {
        next = c->next;
        conn_close(c, "system-shutdown", NULL);
    }
    s2s->shutdown_timer = loop_timer_add(s2s->loop, S2S_SHUTDOWN_GRACE_MS,
                                         s2s_on_shutdown_timeout, s2s);
    s2s_check_shutdown(s2s);
}

void s2s_free(struct s2s *s2s)
{
    if (s2s == NULL) {
        return;
    }
    if (s2s->hooked) {
        loop_before_sleep_remove(s2s->loop, s2s_flush_due, s2s);
    }
    loop_timer_cancel(s2s->loop, s2s->resume_timer);
    s2s->resume_timer = NULL;
    s2s->due = NULL;
    for (size_t i = 0; i < s2s->nlisteners; i++) {
        loop_timer_cancel(s2s->loop, s2s->listeners[i].resume);
        s2s->listeners[i].resume = NULL;
        loop_unwatch(s2s->loop, s2s->listeners[i].fd);
        close(s2s->listeners[i].fd);
    }
    struct s2s_conn *cn;
    for (struct s2s_conn *c = s2s->conns; c != NULL; c = cn) {
        cn = c->next;
        loop_unwatch(s2s->loop, c->fd);
        close(c->fd);
        loop_timer_cancel(s2s->loop, c->timer);
        loop_timer_cancel(s2s->loop, c->idle);
        conn_free(c);
    }
    struct s2s_route *rn;
    for (struct s2s_route *r = s2s->routes; r != NULL; r = rn) {
        rn = r->next;
        route_clear_lookup(r);
        loop_timer_cancel(s2s->loop, r->expiry);
        loop_timer_cancel(s2s->loop, r->retry);
        squeue_clear(&r->queue);
        struct s2s_verify *vn;
        for (struct s2s_verify *v = r->verifies; v != NULL; v = vn) {
            vn = v->next;
            free(v);
        }
        free(r->local);
        free(r->remote);
        free(r);
    }
    for (size_t i = 0; i < s2s->nblocked; i++) {
        free(s2s->blocked[i]);
    }
    free(s2s->blocked);
    loop_timer_cancel(s2s->loop, s2s->shutdown_timer);
    loop_timer_cancel(s2s->loop, s2s->secret_grace);
    s2s_secret_free(s2s->dialback_secret);
    s2s_secret_free(s2s->previous_secret);
    free(s2s);
}

size_t s2s_route_count(const struct s2s *s2s)
{
    return s2s->nroutes;
}

void s2s_route_info(const struct s2s *s2s, size_t i, struct s2s_route_info *out)
{
    memset(out, 0, sizeof(*out));
    const struct s2s_route *r = s2s->routes;
    while (r != NULL && i > 0) {
        r = r->next;
        i--;
    }
    if (r == NULL) {
        return;
    }
    out->local = r->local;
    out->remote = r->remote;
    out->state = route_state_name(r->state);
    out->auth = auth_name(r->auth);
    out->stanzas_out = r->stanzas_out;
    out->bytes_out = r->bytes_out;
    out->stanzas_in = r->stanzas_in;
    out->bytes_in = r->bytes_in;
    out->ready_since = r->state == ROUTE_READY ? r->ready_since : 0;
    out->queued = r->queue.count;
    out->last_error = r->last_error[0] != '\0' ? r->last_error : NULL;
    out->last_failure = r->last_failure[0] != '\0' ? r->last_failure : NULL;
    out->last_failure_at = r->last_failure_at;
    out->pings_sent = r->pings_sent;
    out->pings_answered = r->pings_answered;
    const struct s2s_conn *c = r->out;
    if (c != NULL && c->tls != NULL && !c->tls_handshaking) {
        out->tls_version = tls_version(c->tls);
        out->tls_cipher = tls_cipher(c->tls);
        if (c->peer.cert_present) {
            out->peer_subject = c->peer.subject;
            out->peer_not_after = c->peer.not_after;
        }
    }
}

size_t s2s_inbound_count(const struct s2s *s2s)
{
    size_t n = 0;
    for (const struct s2s_conn *c = s2s->conns; c != NULL; c = c->next) {
        n += c->outbound ? 0 : 1;
    }
    return n;
}

size_t s2s_inbound_from(const struct s2s *s2s, const char *remote)
{
    size_t n = 0;
    for (const struct s2s_conn *c = s2s->conns; c != NULL; c = c->next) {
        n += !c->outbound && !c->dead && c->authenticated &&
                     strcmp(c->auth_remote, remote) == 0
                 ? 1
                 : 0;
    }
    return n;
}

void s2s_stats(const struct s2s *s2s, struct s2s_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < S2S_AUTHFAIL_COUNT; i++) {
        out->auth_failures[i] = s2s->auth_failures[i];
    }
}

const char *s2s_auth_failure_name(enum s2s_auth_failure kind)
{
    static const char *const names[S2S_AUTHFAIL_COUNT] = {
        "tls", "certificate", "dialback", "policy", "other"};
    return kind < S2S_AUTHFAIL_COUNT ? names[kind] : "other";
}
