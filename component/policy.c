/*
 * policy.c: the peering policy, a pure function (see policy.h).
 *
 * The auth layer records facts (TLS, certificate chain and name checks,
 * which method the peer uses); this file judges them against the peer's
 * configuration. The rules, checked in this order, first match wins:
 *
 *   0. an administrator blocked the domain          -> not-authorized
 *   1. the remote domain is not a configured peer  -> not-authorized
 *   2. the peer is configured with trusted = false  -> not-authorized
 *   3. tls_required and the stream is not encrypted -> policy-violation
 *   4. no authentication method                     -> not-authorized
 *   5. SASL EXTERNAL:
 *        peer allows dialback only                  -> policy-violation
 *        without TLS (there is no certificate)      -> not-authorized
 *        no certificate, chain not verified, or not
 *        valid for the domain                       -> not-authorized
 *   6. dialback:
 *        peer allows certificates only              -> policy-violation
 *        otherwise allowed, whatever the certificate says: XEP-0344
 *        makes dialback the fallback exactly when the certificate does not
 *        prove the domain (self-signed, wrong name, none at all)
 *
 * Conditions (RFC 6120 4.9.3): not-authorized when the peer has not proved
 * who it is or is not welcome; policy-violation when it did something our
 * local policy forbids (no TLS, a method this peer may not use).
 * host-unknown is left to the stream layer, which uses it for a 'to'
 * domain that fedgate does not serve.
 *
 * Outbound stanzas (policy_check_send) need a trusted peer that is not
 * blocked; the conditions there are stanza errors for the local sender.
 */
#include "config.h"

#include "policy.h"

#include <stddef.h>
#include <string.h>

#define COND_NOT_AUTHORIZED   "not-authorized"
#define COND_POLICY_VIOLATION "policy-violation"
#define COND_NOT_ALLOWED      "not-allowed"
#define COND_NOT_FOUND        "remote-server-not-found"
#define REASON_BLOCKED        "domain blocked by an administrator"

/*
 * A peer matches by its own domain, or by one of its service domains:
 * services (conference.b.test and the like) are domains of the peer's
 * network, reached through the same peering and under the same policy.
 * A peer's own domain wins over another peer's service of the same name.
 */
const struct conf_peer *policy_peer(const struct conf *cfg, const char *domain)
{
    if (cfg == NULL || domain == NULL || domain[0] == '\0') {
        return NULL;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        if (p->domain != NULL && strcmp(p->domain, domain) == 0) {
            return p;
        }
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        for (size_t j = 0; j < p->nservices; j++) {
            if (p->services[j].domain != NULL &&
                strcmp(p->services[j].domain, domain) == 0) {
                return p;
            }
        }
    }
    return NULL;
}

static void policy_deny(struct policy_decision *out,
                        const char *reason,
                        const char *condition)
{
    out->allow = false;
    out->reason = reason;
    out->condition = condition;
}

static void policy_allow(struct policy_decision *out, const char *reason)
{
    out->allow = true;
    out->reason = reason;
    out->condition = NULL;
}

static void policy_check_external(const struct conf_peer *peer,
                                  const struct policy_facts *facts,
                                  struct policy_decision *out)
{
    if (peer->auth == CONF_AUTH_DIALBACK) {
        policy_deny(out, "peer allows dialback only", COND_POLICY_VIOLATION);
        return;
    }
    if (!facts->tls) {
        policy_deny(out, "SASL EXTERNAL without TLS", COND_NOT_AUTHORIZED);
        return;
    }
    if (!facts->cert_present) {
        policy_deny(out, "SASL EXTERNAL without a certificate",
                    COND_NOT_AUTHORIZED);
        return;
    }
    if (!facts->cert_chain_ok) {
        policy_deny(out, "certificate chain not verified", COND_NOT_AUTHORIZED);
        return;
    }
    if (!facts->cert_name_ok) {
        policy_deny(out, "certificate not valid for the domain",
                    COND_NOT_AUTHORIZED);
        return;
    }
    policy_allow(out, "certificate valid for the domain (SASL EXTERNAL)");
}

static void policy_check_dialback(const struct conf_peer *peer,
                                  const struct policy_facts *facts,
                                  struct policy_decision *out)
{
    if (peer->auth == CONF_AUTH_CERTIFICATE) {
        policy_deny(out, "peer requires certificate authentication",
                    COND_POLICY_VIOLATION);
        return;
    }
    policy_allow(out, facts->tls ? "dialback over TLS" : "dialback");
}

void policy_check(const struct conf *cfg,
                  const struct policy_facts *facts,
                  struct policy_decision *out)
{
    if (out == NULL) {
        return;
    }
    policy_deny(out, "no facts", COND_NOT_AUTHORIZED);
    if (cfg == NULL || facts == NULL) {
        return;
    }
    if (facts->blocked) {
        policy_deny(out, REASON_BLOCKED, COND_NOT_AUTHORIZED);
        return;
    }
    const struct conf_peer *peer = policy_peer(cfg, facts->remote_domain);
    if (peer == NULL) {
        policy_deny(out, "not a configured peer", COND_NOT_AUTHORIZED);
        return;
    }
    if (!peer->trusted) {
        policy_deny(out, "peer not trusted", COND_NOT_AUTHORIZED);
        return;
    }
    if (peer->tls_required && !facts->tls) {
        policy_deny(out, "TLS required", COND_POLICY_VIOLATION);
        return;
    }
    switch (facts->auth) {
    case POLICY_AUTH_SASL_EXTERNAL:
        policy_check_external(peer, facts, out);
        return;
    case POLICY_AUTH_DIALBACK:
        policy_check_dialback(peer, facts, out);
        return;
    case POLICY_AUTH_NONE:
        break;
    }
    policy_deny(out, "not authenticated", COND_NOT_AUTHORIZED);
}

void policy_check_send(const struct conf *cfg,
                       const char *remote,
                       bool blocked,
                       struct policy_decision *out)
{
    if (out == NULL) {
        return;
    }
    if (blocked) {
        /* first: a blocked domain is refused whatever the file says.
         * not-allowed rather than policy-violation: RFC 3920 clients
         * (slixmpp among them) do not know the latter as a stanza error */
        policy_deny(out, REASON_BLOCKED, COND_NOT_ALLOWED);
        return;
    }
    const struct conf_peer *peer = policy_peer(cfg, remote);
    if (peer == NULL) {
        policy_deny(out, "not a configured peer", COND_NOT_FOUND);
        return;
    }
    if (!peer->trusted) {
        policy_deny(out, "peer not trusted", COND_NOT_FOUND);
        return;
    }
    policy_allow(out, "trusted peer");
}
