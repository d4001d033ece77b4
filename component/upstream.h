/*
 * upstream.h: the XEP-0114 links to the home server.
 *
 * One link (a TCP connection carrying one component stream) per domain
 * fedgate serves towards its home server: its own service JID and every
 * peer and peer service domain. Each link connects, handshakes, and when
 * anything goes wrong logs the domain and the reason, then retries after
 * an exponential backoff with jitter. Stanzas for the home server are sent
 * on the link of their `from` domain; while that link is down they wait in
 * a bounded queue and are delivered after the reconnect, or handed back
 * through the undeliverable callback when the queue is full or they waited
 * too long. Nothing is dropped without a callback or a log line.
 */
#ifndef FEDGATE_UPSTREAM_H
#define FEDGATE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stream.h"

struct loop;
struct upstream;

struct upstream_settings {
    const char *host; /* IP address or host name */
    unsigned port;
    unsigned connect_timeout_ms;
    unsigned handshake_timeout_ms;
    uint32_t backoff_initial_ms;
    uint32_t backoff_max_ms;
    struct stream_limits limits;
    size_t queue_max_stanzas;
    size_t queue_max_bytes;
    unsigned queue_timeout_ms;
};

struct upstream_domain {
    const char *domain;
    const char *secret;
};

struct upstream_callbacks {
    /* A stanza from the home server on the link of domain. Consumes st. */
    void (*stanza)(void *ud, const char *domain, struct xml_node *st);
    /* A stanza for the home server that cannot be delivered; the owner
     * bounces it to its sender. Consumes st. */
    void (*undeliverable)(void *ud,
                          struct xml_node *st,
                          const char *condition,
                          const char *text);
    /*
     * Backpressure (may be NULL): congested true when a ready link's queue
     * reaches 3/4 of its bound (the home server takes stanzas slower than
     * they come), false once every such link is down to 1/4 or went down.
     * The owner stops reading what feeds the links meanwhile, so that
     * nothing has to be bounced for want of room.
     */
    void (*congestion)(void *ud, bool congested);
};

enum upstream_link_state {
    UPSTREAM_WAITING,     /* backing off before the next attempt */
    UPSTREAM_CONNECTING,  /* TCP connect in progress */
    UPSTREAM_HANDSHAKING, /* stream opened, handshake not done */
    UPSTREAM_READY,
    UPSTREAM_CLOSING, /* our close sent, waiting for the server's */
};

struct upstream_link_info {
    const char *domain;
    enum upstream_link_state state;
    unsigned failures;      /* consecutive failed attempts */
    unsigned connects;      /* successful handshakes since start */
    size_t queued;          /* stanzas waiting */
    const char *last_error; /* text of the last failure, or NULL */
    int fd;                 /* -1 when not connected */
};

/* Returns a new, empty set of links, or NULL on ENOMEM. Settings strings
 * are copied. */
struct upstream *upstream_new(struct loop *loop,
                              const struct upstream_settings *settings,
                              const struct upstream_callbacks *cb,
                              void *ud);

/*
 * Makes the set of links match domains: links for domains no longer
 * listed close cleanly (their queued stanzas go to undeliverable), new
 * ones connect at once, changed secrets or settings reconnect. Strings are
 * copied. 0 or ERR_NOMEM.
 */
int upstream_configure(struct upstream *up,
                       const struct upstream_settings *settings,
                       const struct upstream_domain *domains,
                       size_t n);

/*
 * Sends st to the home server on the link of its `from` domain, or queues
 * it while that link is down. Consumes st. Returns 0 when sent or queued;
 * otherwise the stanza went to the undeliverable callback and the code
 * says why (ERR_NOT_FOUND: no link for that domain; ERR_TOO_BIG: queue
 * full or stanza too large).
 */
int upstream_send(struct upstream *up, struct xml_node *st);

/*
 * Backpressure: stops (pause true) or resumes reading what the home
 * server sends on the link of domain, so that it waits in the socket
 * while the peer's route is congested (s2s.h). 0 or ERR_NOT_FOUND.
 */
int upstream_pause(struct upstream *up, const char *domain, bool pause);

/*
 * Connects the link of domain now if it is waiting to retry (the home
 * server was just told about the domain), its backoff starting over.
 * 0; ERR_NOT_FOUND (no such link); ERR_AGAIN (not waiting: connecting
 * or ready).
 */
int upstream_retry(struct upstream *up, const char *domain);

/* Closes every link cleanly; done runs once all are closed or after a
 * grace period. Queued stanzas go to undeliverable. */
void upstream_shutdown(struct upstream *up, void (*done)(void *ud), void *ud);

/* Number of links, and the state of link i (strings borrowed until the
 * next loop iteration). */
size_t upstream_count(const struct upstream *up);
void upstream_info(const struct upstream *up,
                   size_t i,
                   struct upstream_link_info *out);

/* Name of a state for logs and status. */
const char *upstream_state_name(enum upstream_link_state state);

/* Frees everything, closing sockets abruptly. Accepts NULL. */
void upstream_free(struct upstream *up);

#endif
