/*
 * jid.c: JID splitting (RFC 7622) and domain normalisation.
 *
 * Domain: IP literals (dotted-quad IPv4, "[IPv6]") are kept as they are;
 * anything else goes through libidn2 (IDNA2008 with UTS#46
 * non-transitional mapping, which also lower-cases) and the result must be
 * a plain LDH host name: labels of [a-z0-9-], 1..63 octets, not starting or
 * ending with '-', at most 253 octets in all, one trailing dot dropped.
 * The checks run on libidn2's output so that whatever it maps or lets
 * through ('_', spaces, '@', '/' ...) is still refused here.
 */
#include "config.h"

#include "jid.h"

#include "err.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* RFC 7622: each part is at most 1023 octets. */
#define JID_PART_MAX   1023
#define JID_LABEL_MAX  63
#define JID_DOMAIN_MAX 253

static bool jid_is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool jid_is_ipv6_literal(const char *s, size_t len)
{
    char inner[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (len < 3 || s[0] != '[' || s[len - 1] != ']' ||
        len - 2 >= sizeof(inner)) {
        return false;
    }
    memcpy(inner, s + 1, len - 2);
    inner[len - 2] = '\0';
    return inet_pton(AF_INET6, inner, &a) == 1;
}

static bool jid_is_ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Checks a lower-cased ASCII name (no trailing dot). A name whose last
 * label is all digits would read as a mangled IPv4 address ("1.2.3.999")
 * and is no host name (RFC 3696 2). */
static bool jid_check_ldh_name(const char *s, size_t len)
{
    if (len == 0 || len > JID_DOMAIN_MAX) {
        return false;
    }
    size_t start = 0;
    bool all_digits = true;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            size_t llen = i - start;
            if (llen == 0 || llen > JID_LABEL_MAX || s[start] == '-' ||
                s[i - 1] == '-') {
                return false;
            }
            if (i == len && all_digits) {
                return false;
            }
            start = i + 1;
            all_digits = true;
            continue;
        }
        if (!jid_is_ldh(s[i])) {
            return false;
        }
        if (s[i] < '0' || s[i] > '9') {
            all_digits = false;
        }
    }
    return true;
}

/* Normalises in[0..len) (not NUL-terminated) into a new string. */
static int jid_domain_normalize_n(const char *in, size_t len, char **out)
{
    char *copy = NULL;
    uint8_t *ascii = NULL;
    int rc = ERR_INVAL;

    *out = NULL;
    if (len == 0 || len > JID_PART_MAX || memchr(in, '\0', len) != NULL) {
        goto out;
    }
    copy = strndup(in, len);
    if (copy == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    if (copy[0] == '[') {
        if (!jid_is_ipv6_literal(copy, len)) {
            goto out;
        }
        *out = copy; /* transferred */
        copy = NULL;
        rc = 0;
        goto out;
    }
    if (jid_is_ipv4(copy)) {
        *out = copy; /* transferred */
        copy = NULL;
        rc = 0;
        goto out;
    }
    int irc = idn2_lookup_u8((const uint8_t *)copy, &ascii,
                             IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (irc != IDN2_OK) {
        rc = irc == IDN2_MALLOC ? ERR_NOMEM : ERR_INVAL;
        goto out;
    }
    char *name = (char *)ascii;
    size_t nlen = strlen(name);
    if (nlen > 0 && name[nlen - 1] == '.') {
        name[--nlen] = '\0';
    }
    for (size_t i = 0; i < nlen; i++) {
        if (name[i] >= 'A' && name[i] <= 'Z') {
            name[i] = (char)(name[i] - 'A' + 'a');
        }
    }
    if (!jid_check_ldh_name(name, nlen)) {
        goto out;
    }
    *out = strdup(name);
    rc = *out != NULL ? 0 : ERR_NOMEM;
out:
    idn2_free(ascii);
    free(copy);
    return rc;
}

int jid_domain_normalize(const char *in, char **out)
{
    return jid_domain_normalize_n(in, strlen(in), out);
}

/* RFC 7622 3.3.1: characters a localpart must not contain; PRECIS
 * IdentifierClass also has no spaces or controls. */
static bool jid_local_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || strchr("\"&'/:<>@", c) != NULL) {
            return false;
        }
    }
    return true;
}

/* PRECIS FreeformClass: no control characters (spaces are fine). */
static bool jid_resource_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* Splits s into its parts: returns the domain's offset and length and the
 * local part's and resource's (NULL when absent). */
static void jid_split(const char *s,
                      const char **local,
                      size_t *local_len,
                      const char **domain,
                      size_t *domain_len,
                      const char **resource,
                      size_t *resource_len)
{
    const char *slash = strchr(s, '/');
    size_t head_len = slash != NULL ? (size_t)(slash - s) : strlen(s);
    const char *at = memchr(s, '@', head_len);

    *local = NULL;
    *local_len = 0;
    *resource = NULL;
    *resource_len = 0;
    if (at != NULL) {
        *local = s;
        *local_len = (size_t)(at - s);
        *domain = at + 1;
        *domain_len = head_len - *local_len - 1;
    } else {
        *domain = s;
        *domain_len = head_len;
    }
    if (slash != NULL) {
        *resource = slash + 1;
        *resource_len = strlen(slash + 1);
    }
}

int jid_parse(const char *s, struct jid *out)
{
    const char *local, *domain, *resource;
    size_t local_len, domain_len, resource_len;
    int rc = ERR_INVAL;

    memset(out, 0, sizeof(*out));
    jid_split(s, &local, &local_len, &domain, &domain_len, &resource,
              &resource_len);
    if (local != NULL && (local_len == 0 || local_len > JID_PART_MAX ||
                          !jid_local_ok(local, local_len))) {
        goto out;
    }
    if (resource != NULL && (resource_len == 0 || resource_len > JID_PART_MAX ||
                             !jid_resource_ok(resource, resource_len))) {
        goto out;
    }
    rc = jid_domain_normalize_n(domain, domain_len, &out->domain);
    if (rc != 0) {
        goto out;
    }
    rc = ERR_NOMEM;
    if (local != NULL) {
        out->local = strndup(local, local_len);
        if (out->local == NULL) {
            goto out;
        }
    }
    if (resource != NULL) {
        out->resource = strndup(resource, resource_len);
        if (out->resource == NULL) {
            goto out;
        }
    }
    rc = 0;
out:
    if (rc != 0) {
        jid_clear(out);
    }
    return rc;
}

void jid_clear(struct jid *j)
{
    if (j == NULL) {
        return;
    }
    free(j->local);
    free(j->domain);
    free(j->resource);
    j->local = NULL;
    j->domain = NULL;
    j->resource = NULL;
}

int jid_domain_of(const char *jid, char *out, size_t outsz)
{
    const char *local, *domain, *resource;
    size_t local_len, domain_len, resource_len;

    if (outsz > 0) {
        out[0] = '\0';
    }
    jid_split(jid, &local, &local_len, &domain, &domain_len, &resource,
              &resource_len);
    if (domain_len == 0 || domain_len >= outsz) {
        return ERR_INVAL;
    }
    memcpy(out, domain, domain_len);
    out[domain_len] = '\0';
    return 0;
}

int jid_domain_canon(const char *jid, char *out, size_t outsz)
{
    if (jid == NULL || jid_domain_of(jid, out, outsz) != 0) {
        return ERR_INVAL;
    }
    size_t n = strlen(out);
    /* The fast path must refuse what jid_domain_normalize refuses: empty
     * or over-long labels ("evil..test") and names ending in a number
     * (then normalize decides: an IPv4 literal passes). */
    if (jid_check_ldh_name(out, n)) {
        return 0;
    }
    char *norm = NULL;
    if (jid_domain_normalize(out, &norm) != 0) {
        return ERR_INVAL;
    }
    int rc = snprintf(out, outsz, "%s", norm) < (int)outsz ? 0 : ERR_INVAL;
    free(norm);
    return rc;
}
