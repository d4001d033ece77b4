/*
 * certid.h: is a peer certificate valid for an XMPP domain?
 * RFC 6125 as RFC 6120 13.7.1.2 and XEP-0178 use it: DNS-ID (with a
 * wildcard only as the whole left-most label), SRV-ID "_xmpp-server.DOMAIN"
 * and id-on-xmppAddr (a bare domain JID). The subject CN is never used.
 * Comparison is on normalised (A-label, lower-case) domains.
 */
#ifndef FEDGATE_CERTID_H
#define FEDGATE_CERTID_H

#include <openssl/x509.h>

enum certid_match {
    CERTID_NONE = 0,
    CERTID_DNS,
    CERTID_SRV,
    CERTID_XMPPADDR,
};

/* Returns 0 and sets *how when cert is valid for domain; ERR_AUTH when
 * no identifier matches; ERR_INVAL for a malformed certificate (or a
 * NULL/empty argument); ERR_NOMEM. *how is CERTID_NONE unless 0.
 * Borrows cert. */
int certid_check(X509 *cert, const char *domain, enum certid_match *how);

const char *certid_match_name(enum certid_match how);

#endif
