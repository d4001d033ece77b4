/*
 * certid.c: is a peer certificate valid for an XMPP domain?
 *
 * RFC 6125 as RFC 6120 13.7.1.2 and XEP-0178 apply it to servers:
 *   DNS-ID   dNSName, matched by X509_check_host() with partial wildcards
 *            ("x*.example") and the subject CN fallback both switched off,
 *            so a wildcard is only ever the whole left-most label and
 *            never covers the bare parent or two labels;
 *   SRV-ID   otherName id-on-dnsSRV (IA5String) "_xmpp-server.DOMAIN";
 *   XmppAddr otherName id-on-xmppAddr (UTF8String) equal to the bare
 *            domain (a JID with a local part or resource names a user or
 *            a client, never a server).
 * Names from the certificate are normalised with jid_domain_normalize()
 * (IDNA2008 to lower-case A-labels) and compared with the domain, which
 * the caller has already normalised: an XmppAddr may carry U-labels. A name
 * with an embedded NUL or of the wrong ASN.1 type never matches. The
 * subject CN is never consulted.
 */
#include "config.h"

#include "certid.h"

#include "err.h"
#include "jid.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CERTID_SRV_PREFIX     "_xmpp-server."
#define CERTID_SRV_PREFIX_LEN (sizeof(CERTID_SRV_PREFIX) - 1)

/* Bytes of an ASN.1 string of the wanted type, or NULL when the type is
 * wrong or the value is empty or holds a NUL (the classic
 * "good.example\0.evil.example" trick). */
static const char *certid_string(const ASN1_TYPE *val, int type, size_t *len)
{
    if (val == NULL || val->type != type) {
        return NULL;
    }
    const ASN1_STRING *s = val->value.asn1_string;
    int n = ASN1_STRING_length(s);
    const unsigned char *p = ASN1_STRING_get0_data(s);
    if (n <= 0 || p == NULL || memchr(p, '\0', (size_t)n) != NULL) {
        return NULL;
    }
    *len = (size_t)n;
    return (const char *)p;
}

/* Normalises len bytes of name and compares them with domain: 1 on a
 * match, 0 when they differ or name is no valid domain, ERR_NOMEM. */
static int certid_same_domain(const char *name, size_t len, const char *domain)
{
    char *copy = strndup(name, len);
    char *norm = NULL;
    int rc;

    if (copy == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    rc = jid_domain_normalize(copy, &norm);
    if (rc == ERR_NOMEM) {
        goto out;
    }
    rc = (rc == 0 && strcmp(norm, domain) == 0) ? 1 : 0;
out:
    free(norm);
    free(copy);
    return rc;
}

/* SRV-ID: "_xmpp-server." (case-insensitive) followed by the domain.
 * 1, 0 or ERR_NOMEM. */
static int certid_srv_matches(const ASN1_TYPE *val, const char *domain)
{
    size_t len = 0;
    const char *s = certid_string(val, V_ASN1_IA5STRING, &len);
    if (s == NULL || len <= CERTID_SRV_PREFIX_LEN ||
        strncasecmp(s, CERTID_SRV_PREFIX, CERTID_SRV_PREFIX_LEN) != 0) {
        return 0;
    }
    return certid_same_domain(s + CERTID_SRV_PREFIX_LEN,
                              len - CERTID_SRV_PREFIX_LEN, domain);
}

/* XmppAddr: a bare domain JID. 1, 0 or ERR_NOMEM. */
static int certid_xmppaddr_matches(const ASN1_TYPE *val, const char *domain)
{
    size_t len = 0;
    const char *s = certid_string(val, V_ASN1_UTF8STRING, &len);
    if (s == NULL || memchr(s, '@', len) != NULL ||
        memchr(s, '/', len) != NULL) {
        return 0;
    }
    return certid_same_domain(s, len, domain);
}

int certid_check(X509 *cert, const char *domain, enum certid_match *how)
{
    GENERAL_NAMES *names = NULL;
    int crit = -1;
    int rc = ERR_INVAL;

    if (how != NULL) {
        *how = CERTID_NONE;
    }
    if (cert == NULL || domain == NULL || domain[0] == '\0' || how == NULL) {
        goto out;
    }
    names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (names == NULL) {
        /* -1: no subjectAltName, so no identifier at all (the CN does
         * not count); otherwise the extension is repeated (-2) or does
         * not decode. */
        rc = crit == -1 ? ERR_AUTH : ERR_INVAL;
        goto out;
    }

    int hrc = X509_check_host(cert, domain, strlen(domain),
                              X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                  X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                              NULL);
    if (hrc == 1) {
        *how = CERTID_DNS;
        rc = 0;
        goto out;
    }
    if (hrc < 0) {
        /* -2: domain is not a valid name; -1: internal (allocation)
         * failure. */
        rc = hrc == -2 ? ERR_INVAL : ERR_NOMEM;
        goto out;
    }

    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        GENERAL_NAME *gen = sk_GENERAL_NAME_value(names, i);
        ASN1_OBJECT *oid = NULL;
        ASN1_TYPE *val = NULL;
        if (!GENERAL_NAME_get0_otherName(gen, &oid, &val)) {
            continue; /* not an otherName */
        }
        int m = 0;
        enum certid_match kind = CERTID_NONE;
        switch (OBJ_obj2nid(oid)) {
        case NID_SRVName:
            m = certid_srv_matches(val, domain);
            kind = CERTID_SRV;
            break;
        case NID_XmppAddr:
            m = certid_xmppaddr_matches(val, domain);
            kind = CERTID_XMPPADDR;
            break;
        default:
            break;
        }
        if (m < 0) {
            rc = m;
            goto out;
        }
        if (m == 1) {
            *how = kind;
            rc = 0;
            goto out;
        }
    }
    rc = ERR_AUTH;
out:
    GENERAL_NAMES_free(names);
    return rc;
}

const char *certid_match_name(enum certid_match how)
{
    switch (how) {
    case CERTID_DNS:
        return "DNS-ID";
    case CERTID_SRV:
        return "SRV-ID";
    case CERTID_XMPPADDR:
        return "XmppAddr";
    case CERTID_NONE:
        break;
    }
    return "none";
}
