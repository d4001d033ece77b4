/*
 * s2s.h: the peering engine's connections and routes.
 *
 * Listens for peers (STARTTLS and direct-TLS listeners), connects to them
 * (DNS SRV, then each address in turn), runs TLS and the s2s stream
 * machine on every connection, and keeps one route per (local domain,
 * remote domain) pair with a bounded queue of stanzas waiting for it. Only
 * configured, trusted peers get a route; everything is decided by
 * policy_check and logged with the connection it concerns.
 *
 * A route whose peer has sent nothing for s2s.keepalive_interval gets an
 * XEP-0199 ping on its outbound stream; the answer is taken by the
 * engine (it never reaches the stanza callback), and a stream whose ping
 * stays unanswered for another interval is closed.
 */
#ifndef FEDGATE_S2S_H
#define FEDGATE_S2S_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "conf.h"
#include "xml.h"

struct loop;
struct dns;
struct tls_ctx;
struct s2s;

struct s2s_callbacks {
    /* A stanza from an authenticated peer for a local domain. Consumes
     * st. */
    void (*stanza)(void *ud, struct xml_node *st);
    /* A stanza given to s2s_send that cannot be delivered; the owner
     * bounces it to its (local) sender. Consumes st. */
    void (*undeliverable)(void *ud,
                          struct xml_node *st,
                          const char *condition,
                          const char *text);
    /*
     * Backpressure (may be NULL): a ready route to remote has 3/4 of its
     * queue bound waiting (the peer takes stanzas slower than they come):
     * congested true; false once it is down to 1/4 or the route is no
     * longer ready. The owner stops reading what feeds it meanwhile.
     */
    void (*congestion)(void *ud, const char *remote, bool congested);
};

/*
 * Returns a new engine for cfg (borrowed: it must stay valid until the
 * next s2s_reconfigure or s2s_free), or NULL with the reason in err.
 * dns and tls are borrowed.
 */
struct s2s *s2s_new(struct loop *loop,
                    const struct conf *cfg,
                    struct dns *dns,
                    struct tls_ctx *tls,
                    const struct s2s_callbacks *cb,
                    void *ud,
                    char *err,
                    size_t errlen);

/* Opens the configured listeners. 0 or ERR_SYS (logged with the
 * address). */
int s2s_listen(struct s2s *s2s);

/*
 * Sends st (from a local user to a peer) on the route of its from and to
 * domains, opening the route if needed. Consumes st. 0 when sent or
 * queued; otherwise st went to the undeliverable callback (ERR_AUTH: the
 * remote domain is not a trusted peer; ERR_TOO_BIG: queue full;
 * ERR_INVAL: bad addresses).
 */
int s2s_send(struct s2s *s2s, struct xml_node *st);

/* Applies a new configuration (borrowed as for s2s_new): routes to
 * peers no longer trusted close and bounce their queues. */
void s2s_reconfigure(struct s2s *s2s, const struct conf *cfg);

/*
 * Blocks domain (normalised) at once, whatever the configuration says:
 * its open streams, in and out, close with the stream error
 * policy-violation; its routes' queues bounce with not-allowed; s2s_send
 * refuses stanzas for it and policy refuses its authentication until
 * s2s_unblock. Blocking a blocked domain closes its streams again. 0, ERR_INVAL
 * or ERR_NOMEM.
 */
int s2s_block(struct s2s *s2s, const char *domain);

/* Lifts a block: normal policy applies again. 0 or ERR_NOT_FOUND. */
int s2s_unblock(struct s2s *s2s, const char *domain);

bool s2s_is_blocked(const struct s2s *s2s, const char *domain);

/* The blocked domains: how many, and entry i (NULL beyond). Borrowed
 * until the next s2s_block or s2s_unblock. */
size_t s2s_blocked_count(const struct s2s *s2s);
const char *s2s_blocked_domain(const struct s2s *s2s, size_t i);

/*
 * Backpressure: while paused, stanzas from authenticated inbound streams
 * stay in the sockets (TCP slows the peers down) instead of being read;
 * negotiations and outbound streams go on. For the home server links'
 * congestion (upstream.h).
 */
void s2s_pause_inbound(struct s2s *s2s, bool pause);

/*
 * A peer's settings changed (edited at run time or by a reload): its
 * streams in both directions close with `reset`, so that the next ones
 * authenticate under the new policy; queued stanzas stay and their route
 * connects again at once.
 */
void s2s_peer_reset(struct s2s *s2s, const char *domain);

/*
 * Closes the outbound stream of the route (local, remote) cleanly and
 * stops any attempt in progress; queued stanzas stay queued (their
 * timeout still runs) and the route connects again on the next stanza.
 * 0 or ERR_NOT_FOUND (no such route).
 */
int s2s_route_disconnect(struct s2s *s2s,
                         const char *local,
                         const char *remote);

/*
 * Connects the idle route (local, remote) now, cancelling its backoff.
 * 0; ERR_NOT_FOUND (no such route); ERR_AUTH (remote is blocked);
 * ERR_AGAIN (the route is connecting or connected already).
 */
int s2s_route_retry(struct s2s *s2s, const char *local, const char *remote);

/*
 * Replaces the dialback secret with a fresh random one until restart
 * (overriding s2s.dialback_secret). New keys use it at once, on new and
 * open streams; keys under the previous secret still verify for ten
 * minutes or until the next rotation, so dialbacks in flight succeed.
 * 0, ERR_NOMEM or ERR_SYS (no randomness), the secret unchanged.
 */
int s2s_rotate_dialback_secret(struct s2s *s2s);

/* Closes every connection cleanly; done runs when all are closed or after
 * a grace period. Queued stanzas are bounced. */
void s2s_shutdown(struct s2s *s2s, void (*done)(void *ud), void *ud);

void s2s_free(struct s2s *s2s);

/* Observable state of a route, for logs and administration. Strings are
 * borrowed until the next loop iteration. */
struct s2s_route_info {
    const char *local;
    const char *remote;
    const char *state;       /* "idle", "resolving", "connecting", ... */
    const char *auth;        /* "sasl-external", "dialback" or NULL */
    const char *tls_version; /* or NULL */
    const char *tls_cipher;
    const char *peer_subject;
    time_t peer_not_after;
    unsigned long stanzas_out;
    unsigned long bytes_out;
    unsigned long stanzas_in; /* from remote to local */
    unsigned long bytes_in;
    time_t ready_since; /* when the outbound stream got ready; 0 if not */
    size_t queued;
    const char *last_error;       /* or NULL */
    const char *last_failure;     /* why the last failed attempt failed
                                   * (kept across retries), or NULL */
    time_t last_failure_at;       /* when, or 0 */
    unsigned long pings_sent;     /* XEP-0199 pings on the outbound stream */
    unsigned long pings_answered; /* and answers taken (result or error) */
};

size_t s2s_route_count(const struct s2s *s2s);
void s2s_route_info(const struct s2s *s2s,
                    size_t i,
                    struct s2s_route_info *out);

/* Inbound connections and their authenticated pairs, for tests/status. */
size_t s2s_inbound_count(const struct s2s *s2s);

/* Authenticated inbound connections from remote (a normalised domain). */
size_t s2s_inbound_from(const struct s2s *s2s, const char *remote);

/* Why s2s authentication failed, coarsely, for statistics. */
enum s2s_auth_failure {
    S2S_AUTHFAIL_TLS,         /* no TLS where it was required */
    S2S_AUTHFAIL_CERTIFICATE, /* certificate / SASL EXTERNAL refused */
    S2S_AUTHFAIL_DIALBACK,    /* dialback key not confirmed */
    S2S_AUTHFAIL_POLICY,      /* the peer's policy forbade the method */
    S2S_AUTHFAIL_OTHER,
    S2S_AUTHFAIL_COUNT,
};

struct s2s_stats {
    unsigned long auth_failures[S2S_AUTHFAIL_COUNT]; /* both directions */
};

void s2s_stats(const struct s2s *s2s, struct s2s_stats *out);
const char *s2s_auth_failure_name(enum s2s_auth_failure kind);

#endif
