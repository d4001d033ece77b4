/*
 * jid.h: JID splitting and domain normalisation.
 *
 * Domains are compared in one canonical form: IDNA2008 (libidn2, with
 * UTS#46 non-transitional mapping) to lower-case A-labels, without a
 * trailing dot, each label 1..63 octets, the whole at most 253.
 */
#ifndef FEDGATE_JID_H
#define FEDGATE_JID_H

#include <stddef.h>

struct jid {
    char *local;    /* owned, or NULL */
    char *domain;   /* owned, normalised */
    char *resource; /* owned, or NULL */
};

/* Normalises a domain into a new string in *out (caller frees); *out is
 * NULL on error. IP literals (dotted-quad IPv4, "[IPv6]") are returned
 * unchanged; a name whose last label is all digits is refused. 0,
 * ERR_INVAL (not a valid domain) or ERR_NOMEM. */
int jid_domain_normalize(const char *in, char **out);

/* Parses "local@domain/resource" (local and resource optional) and
 * normalises the domain. A present local part or resource must not be
 * empty or longer than 1023 bytes; the local part must not contain
 * spaces, controls or any of "&'/:<>@ (RFC 7622 3.3.1), the resource no
 * controls. Local part and resource are kept as given. 0, ERR_INVAL or
 * ERR_NOMEM; out is cleared first and left empty on error. */
int jid_parse(const char *s, struct jid *out);

/* Frees the parts. Accepts NULL. */
void jid_clear(struct jid *j);

/*
 * Copies the domain part of a JID string (no normalisation, no
 * allocation) into out. 0, or ERR_INVAL when it is empty or does not fit.
 * A fast path for routing, where the domain is compared against names
 * that are already normalised.
 */
int jid_domain_of(const char *jid, char *out, size_t outsz);

/*
 * Copies the domain of a JID into out in canonical form: a plain
 * lower-case ASCII name is taken as it is (the fast path for routing),
 * anything else goes through jid_domain_normalize. 0, or ERR_INVAL (jid
 * NULL, no domain, not a valid domain, or it does not fit).
 */
int jid_domain_canon(const char *jid, char *out, size_t outsz);

#endif
