/*
 * xmlparse.h: the XMPP stream parser on expat.
 *
 * Feeds arbitrary chunks of a stream (split anywhere) and reports the stream
 * header, each complete depth-1 element as a stanza tree, and the stream
 * end. It enforces RFC 6120 restricted XML (no DTD, entity declarations,
 * comments or processing instructions; a declared encoding must be UTF-8),
 * a stanza size limit (checked before bytes reach expat, so an oversized
 * token never costs more than the limit) and a nesting depth limit.
 * Reparse deferral is switched off after every create and reset so a stanza
 * is reported as soon as its last byte is fed.
 *
 * The parser does no I/O; it is used by every stream fedgate speaks.
 */
#ifndef FEDGATE_XMLPARSE_H
#define FEDGATE_XMLPARSE_H

#include <stddef.h>

#include "xml.h"

struct xmlparse;

/* What the stream header carried. All strings are borrowed for the
 * duration of the callback. */
struct xmlparse_header {
    const char *ns;         /* namespace of the root element */
    const char *name;       /* local name of the root element ("stream") */
    const char *default_ns; /* the default namespace declared on it, or "" */
    const struct xml_attr *attrs; /* attributes as in xml.h naming */
    size_t nattrs;
    /* Namespace prefixes declared on the header (e.g. "db" ->
     * "jabber:server:dialback"); prefix "" is the default namespace. */
    const char *const *prefixes;
    const char *const *prefix_uris;
    size_t nprefixes;
};

struct xmlparse_callbacks {
    /* The root start tag arrived. */
    void (*header)(void *ud, const struct xmlparse_header *hdr);
    /* A complete depth-1 element. Consumes the stanza: the callee owns
     * the reference. */
    void (*stanza)(void *ud, struct xml_node *stanza);
    /* The root end tag arrived. */
    void (*end)(void *ud);
};

struct xmlparse_limits {
    size_t max_stanza;  /* bytes of one depth-1 element (or the header) */
    unsigned max_depth; /* element nesting below the root, >= 1 */
};

/* Returns a new parser or NULL on ENOMEM. cb is copied; ud is passed to
 * every callback. */
struct xmlparse *xmlparse_new(const struct xmlparse_limits *limits,
                              const struct xmlparse_callbacks *cb,
                              void *ud);

/* Frees the parser. Accepts NULL. Must not be called from a callback. */
void xmlparse_free(struct xmlparse *p);

/* Changes the limits for the bytes fed from now on (e.g. a larger stanza
 * size once the stream is authenticated). */
void xmlparse_set_limits(struct xmlparse *p,
                         const struct xmlparse_limits *limits);

/*
 * Feeds len bytes. Returns 0 when all were consumed, or a negative code:
 * ERR_XML_MALFORMED, ERR_XML_RESTRICTED, ERR_XML_TOO_BIG, ERR_XML_TOO_DEEP,
 * ERR_XML_BAD_ENCODING, ERR_NOMEM. After an error the parser accepts no more
 * input until xmlparse_reset(). xmlparse_error_text() gives detail. An
 * entity reference other than the predefined ones is ERR_XML_RESTRICTED
 * (RFC 6120 11.1), as are DOCTYPE, entity declarations, comments and PIs.
 * Bytes that are not UTF-8 (RFC 3629), a stream in UTF-16 (with or without
 * a byte order mark) and a declared encoding other than UTF-8 are
 * ERR_XML_BAD_ENCODING (RFC 6120 4.9.3.22, 11.6).
 *
 * If a callback called xmlparse_stop(), feeding stops right after the
 * element that was being reported; *consumed (may be NULL) tells how many of
 * the len bytes were used and the result is ERR_AGAIN. The parser then takes
 * no input (ERR_INVAL) until xmlparse_reset(). On success *consumed is len;
 * on an error it counts the bytes handed to expat. Called from a callback:
 * ERR_INVAL.
 */
int xmlparse_feed(struct xmlparse *p,
                  const char *data,
                  size_t len,
                  size_t *consumed);

/* From inside a callback: stop after the current element (for a stream
 * restart after <proceed/> or SASL <success/>). */
void xmlparse_stop(struct xmlparse *p);

/* Forgets all state and expects a new stream header. 0, ERR_NOMEM, or
 * ERR_INVAL when called from a callback. */
int xmlparse_reset(struct xmlparse *p);

/* A short description of the last error, never NULL. */
const char *xmlparse_error_text(const struct xmlparse *p);

#endif
