/*
 * policy.h: the peering policy, a pure function.
 * Peer configuration + facts about a connection -> allow or deny, with the
 * reason (for the log) and the XMPP error condition (for the peer). It
 * records nothing and does no I/O.
 */
#ifndef FEDGATE_POLICY_H
#define FEDGATE_POLICY_H

#include <stdbool.h>

#include "conf.h"

enum policy_auth {
    POLICY_AUTH_NONE = 0,
    POLICY_AUTH_SASL_EXTERNAL,
    POLICY_AUTH_DIALBACK,
};

struct policy_facts {
    const char *remote_domain; /* normalised */
    bool tls;                  /* the stream is encrypted */
    bool cert_present;
    bool cert_chain_ok;    /* verified against the applicable anchors */
    bool cert_name_ok;     /* valid for remote_domain */
    enum policy_auth auth; /* the method being used or asked for */
    bool blocked;          /* an administrator blocked remote_domain */
};

struct policy_decision {
    bool allow;
    const char *reason;    /* static text for the log */
    const char *condition; /* stream/stanza error condition when denied */
};

/* The configured peer for domain, or NULL. Borrows cfg. */
const struct conf_peer *policy_peer(const struct conf *cfg, const char *domain);

/* Decides whether a stream with these facts may carry traffic between a
 * local domain and facts->remote_domain. */
void policy_check(const struct conf *cfg,
                  const struct policy_facts *facts,
                  struct policy_decision *out);

/*
 * Decides whether a local user's stanza may go out to remote (normalised):
 * remote must be a configured, trusted peer that is not blocked (blocked
 * is the caller's fact, from the runtime block list). The condition is a
 * stanza error condition for the bounce.
 */
void policy_check_send(const struct conf *cfg,
                       const char *remote,
                       bool blocked,
                       struct policy_decision *out);

#endif
