/*
 * xmlparse.c: the XMPP stream parser on expat.
 *
 * Flow:
 *   feed: refuse a stream whose first bytes are UTF-16 (or a NUL); cut
 *         the input so the unfinished depth-1 element never exceeds
 *         max_stanza, hand each piece to expat, map its result (an
 *         invalid token whose bytes are not UTF-8 is a bad encoding).
 *   depth 0 start: collect namespace declarations, report the header.
 *   depth >= 1 start: append an element to the stanza under construction.
 *   depth 1 end: report the stanza (ownership passes to the callback).
 *   depth 0 end: report the stream end.
 *   DOCTYPE, entity declaration, comment, PI: stop with ERR_XML_RESTRICTED.
 *
 * Byte accounting: "fed" counts the bytes handed to expat since the last
 * reset, which is also the origin of XML_GetCurrentByteIndex; "boundary" is
 * the index just past the last header, depth-1 element or depth-1 text
 * (keepalive). fed - boundary is the size of the element in progress,
 * which is what the size limit bounds before expat sees the bytes: expat
 * buffers a whole token before any callback, so a limit checked in a
 * callback would come after the memory was spent.
 */
#include "config.h"

#include "xmlparse.h"

/* The check catches a build where #include "config.h" from component/
 * finds a different config.h than autoconf's: without it the reparse
 * deferral switch below would silently vanish and split stanzas stall. */
#ifndef PACKAGE_VERSION
#error "autoconf's config.h was not included (shadowed by another config.h?)"
#endif

#include "buf.h"
#include "err.h"
#include "xml.h"

#include <expat.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Namespace separator: 0x1f cannot occur in a URI (&#31; is not an XML
 * character), so splitting at the last one is unambiguous. */
#define XP_NS_SEP '\x1f'

/* Character data buffered between element events; bounded by the stanza
 * limit in practice (text never expands), this only guards arithmetic. */
#define XP_TEXT_MAX ((size_t)INT_MAX)

struct xmlparse {
    XML_Parser xp;
    struct xmlparse_limits limits;
    struct xmlparse_callbacks cb;
    void *ud;

    unsigned depth;          /* open elements, the root included */
    struct xml_node *stanza; /* the depth-1 element being built */
    struct xml_node *cur;    /* the innermost open element in it */
    struct buf text;         /* character data not yet in the tree */
    struct buf scratch;      /* "xml:local" attribute names */

    /* Namespace declarations on the header, "prefix\0uri" in one block;
     * the two arrays point into it. */
    char **prefixes;
    char **prefix_uris;
    size_t nprefixes;
    size_t prefixes_cap;

    uint64_t fed;      /* bytes handed to expat since the reset */
    uint64_t boundary; /* index just past the last complete piece */
    uint64_t stop_at;  /* index just past the element a callback stopped */
    int err;           /* sticky; 0 while healthy */
    bool stop_requested;
    bool suspended; /* expat stopped resumably; only reset helps */
    bool in_feed;
    char errtext[192];
};

static const char xp_ns_xml[] = XML_NS_XML;

/* Index just past the token being reported. */
static uint64_t xp_pos_end(const struct xmlparse *p)
{
    XML_Index idx = XML_GetCurrentByteIndex(p->xp);
    int count = XML_GetCurrentByteCount(p->xp);
    if (idx < 0) {
        return p->boundary;
    }
    return (uint64_t)idx + (uint64_t)(count > 0 ? count : 0);
}

/* Records an error found inside a handler and aborts the parse. */
static void xp_fail(struct xmlparse *p, int code, const char *what)
{
    if (p->err != 0) {
        return;
    }
    p->err = code;
    snprintf(p->errtext, sizeof(p->errtext), "%s (line %lu, column %lu)", what,
             (unsigned long)XML_GetCurrentLineNumber(p->xp),
             (unsigned long)XML_GetCurrentColumnNumber(p->xp));
    XML_StopParser(p->xp, XML_FALSE);
}

static void xp_prefixes_clear(struct xmlparse *p)
{
    for (size_t i = 0; i < p->nprefixes; i++) {
        free(p->prefixes[i]); /* the uri shares the block */
    }
    p->nprefixes = 0;
}

/* Converts an expat name to the element; attributes follow xml.h naming. */
static struct xml_node *
xp_element(struct xmlparse *p, const XML_Char *name, const XML_Char **atts)
{
    const char *sep = strrchr(name, XP_NS_SEP);
    struct xml_node *el = sep != NULL
                              ? xml_element_new_n(name, (size_t)(sep - name),
                                                  sep + 1, strlen(sep + 1))
                              : xml_element_new_n("", 0, name, strlen(name));
    if (el == NULL) {
        return NULL;
    }
    for (size_t i = 0; atts[i] != NULL; i += 2) {
        const char *an = atts[i];
        size_t an_len = strlen(an);
        const char *asep = memchr(an, XP_NS_SEP, an_len);
        if (asep != NULL) {
            asep = strrchr(an, XP_NS_SEP);
        }
        if (asep != NULL && (size_t)(asep - an) == sizeof(xp_ns_xml) - 1 &&
            memcmp(an, xp_ns_xml, sizeof(xp_ns_xml) - 1) == 0) {
            buf_reset(&p->scratch);
            if (buf_append(&p->scratch, "xml:", 4) != 0 ||
                buf_append_str(&p->scratch, asep + 1) != 0) {
                goto fail;
            }
            an = buf_peek(&p->scratch);
            an_len = buf_size(&p->scratch);
        }
        if (xml_attr_append_n(el, an, an_len, atts[i + 1],
                              strlen(atts[i + 1])) != 0) {
            goto fail;
        }
    }
    return el;

fail:
    xml_unref(el);
    return NULL;
}

/* Moves buffered character data into the open element. */
static int xp_flush_text(struct xmlparse *p)
{
    if (buf_size(&p->text) == 0) {
        return 0;
    }
    int rc = xml_append_text(p->cur, buf_peek(&p->text), buf_size(&p->text));
    buf_reset(&p->text);
    return rc;
}

/* After a callback: honour xmlparse_stop() with the exact cut point. */
static void xp_check_stop(struct xmlparse *p)
{
    if (!p->stop_requested || p->suspended || p->err != 0) {
        return;
    }
    p->stop_at = xp_pos_end(p);
    if (XML_StopParser(p->xp, XML_TRUE) == XML_STATUS_OK) {
        p->suspended = true;
    }
}

static void
xp_header(struct xmlparse *p, const XML_Char *name, const XML_Char **atts)
{
    struct xml_node *el = xp_element(p, name, atts);
    if (el == NULL) {
        xp_fail(p, ERR_NOMEM, "out of memory");
        return;
    }
    struct xmlparse_header hdr = {
        .ns = el->ns,
        .name = el->name,
        .default_ns = "",
        .attrs = el->attrs,
        .nattrs = el->nattrs,
        .prefixes = (const char *const *)p->prefixes,
        .prefix_uris = (const char *const *)p->prefix_uris,
        .nprefixes = p->nprefixes,
    };
    for (size_t i = 0; i < p->nprefixes; i++) {
        if (p->prefixes[i][0] == '\0') {
            hdr.default_ns = p->prefix_uris[i];
        }
    }
    p->depth = 1;
    p->boundary = xp_pos_end(p);
    if (p->cb.header != NULL) {
        p->cb.header(p->ud, &hdr);
    }
    xml_unref(el);
    xp_prefixes_clear(p);
    xp_check_stop(p);
}

static void XMLCALL xp_start(void *ud,
                             const XML_Char *name,
                             const XML_Char **atts)
{
    struct xmlparse *p = ud;
    if (p->err != 0) {
        return;
    }
    if (p->depth == 0) {
        xp_header(p, name, atts);
        return;
    }
    /* The new element sits at level depth below the root. */
    if (p->depth > p->limits.max_depth) {
        xp_fail(p, ERR_XML_TOO_DEEP, "elements nested too deeply");
        return;
    }
    if (p->cur != NULL && xp_flush_text(p) != 0) {
        xp_fail(p, ERR_NOMEM, "out of memory");
        return;
    }
    struct xml_node *el = xp_element(p, name, atts);
    if (el == NULL) {
        xp_fail(p, ERR_NOMEM, "out of memory");
        return;
    }
    if (p->depth == 1) {
        p->stanza = el;
    } else if (xml_append(p->cur, el) != 0) {
        xml_unref(el); /* not reached: el is a fresh root */
        xp_fail(p, ERR_NOMEM, "cannot build the tree");
        return;
    }
    p->cur = el;
    p->depth++;
}

static void XMLCALL xp_end(void *ud, const XML_Char *name)
{
    struct xmlparse *p = ud;
    (void)name;
    if (p->err != 0 || p->depth == 0) {
        return;
    }
    p->depth--;
    if (p->depth == 0) {
        p->boundary = xp_pos_end(p);
        if (p->cb.end != NULL) {
            p->cb.end(p->ud);
        }
        xp_check_stop(p);
        return;
    }
    if (xp_flush_text(p) != 0) {
        xp_fail(p, ERR_NOMEM, "out of memory");
        return;
    }
    if (p->depth > 1) {
        p->cur = p->cur->parent;
        return;
    }
    struct xml_node *st = p->stanza;
    p->stanza = NULL;
    p->cur = NULL;
    p->boundary = xp_pos_end(p);
    if (p->cb.stanza != NULL) {
        p->cb.stanza(p->ud, st); /* transferred */
    } else {
        xml_unref(st);
    }
    xp_check_stop(p);
}

static void XMLCALL xp_text(void *ud, const XML_Char *s, int len)
{
    struct xmlparse *p = ud;
    if (p->err != 0) {
        return;
    }
    if (p->depth <= 1) {
        /* Whitespace keepalive between stanzas: ignored, and it must not
         * count towards the next stanza's size. */
        p->boundary = xp_pos_end(p);
        return;
    }
    if (len > 0 && buf_append(&p->text, s, (size_t)len) != 0) {
        xp_fail(p, ERR_NOMEM, "out of memory");
    }
}

static void XMLCALL xp_ns_start(void *ud,
                                const XML_Char *prefix,
                                const XML_Char *uri)
{
    struct xmlparse *p = ud;
    if (p->err != 0 || p->depth != 0) {
        return;
    }
    if (prefix == NULL) {
        prefix = "";
    }
    if (uri == NULL) {
        uri = "";
    }
    if (p->nprefixes == p->prefixes_cap) {
        size_t cap = p->prefixes_cap != 0 ? p->prefixes_cap * 2 : 4;
        char **a = realloc(p->prefixes, cap * sizeof(*a));
        if (a == NULL) {
            xp_fail(p, ERR_NOMEM, "out of memory");
            return;
        }
        p->prefixes = a;
        char **b = realloc(p->prefix_uris, cap * sizeof(*b));
        if (b == NULL) {
            xp_fail(p, ERR_NOMEM, "out of memory");
            return;
        }
        p->prefix_uris = b;
        p->prefixes_cap = cap;
    }
    size_t plen = strlen(prefix);
    size_t ulen = strlen(uri);
    char *block = malloc(plen + ulen + 2);
    if (block == NULL) {
        xp_fail(p, ERR_NOMEM, "out of memory");
        return;
    }
    memcpy(block, prefix, plen + 1);
    memcpy(block + plen + 1, uri, ulen + 1);
    p->prefixes[p->nprefixes] = block;
    p->prefix_uris[p->nprefixes] = block + plen + 1;
    p->nprefixes++;
}

static void XMLCALL xp_xmldecl(void *ud,
                               const XML_Char *version,
                               const XML_Char *encoding,
                               int standalone)
{
    struct xmlparse *p = ud;
    (void)version;
    (void)standalone;
    /* The parser was created for UTF-8, which overrides the declaration;
     * a stream that says otherwise is refused (RFC 6120 11.6). */
    if (encoding != NULL && strcasecmp(encoding, "UTF-8") != 0) {
        xp_fail(p, ERR_XML_BAD_ENCODING, "declared encoding is not UTF-8");
    }
}

static void XMLCALL xp_doctype(void *ud,
                               const XML_Char *name,
                               const XML_Char *sysid,
                               const XML_Char *pubid,
                               int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    xp_fail(ud, ERR_XML_RESTRICTED, "DOCTYPE not allowed");
}

static void XMLCALL xp_entity(void *ud,
                              const XML_Char *name,
                              int is_pe,
                              const XML_Char *value,
                              int value_len,
                              const XML_Char *base,
                              const XML_Char *sysid,
                              const XML_Char *pubid,
                              const XML_Char *notation)
{
    (void)name;
    (void)is_pe;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    xp_fail(ud, ERR_XML_RESTRICTED, "entity declaration not allowed");
}

static void XMLCALL xp_comment(void *ud, const XML_Char *data)
{
    (void)data;
    xp_fail(ud, ERR_XML_RESTRICTED, "comment not allowed");
}

static void XMLCALL xp_pi(void *ud,
                          const XML_Char *target,
                          const XML_Char *data)
{
    (void)target;
    (void)data;
    xp_fail(ud, ERR_XML_RESTRICTED, "processing instruction not allowed");
}

/* Everything XML_ParserReset clears, installed again. */
static void xp_setup(struct xmlparse *p)
{
    XML_SetUserData(p->xp, p);
    XML_SetElementHandler(p->xp, xp_start, xp_end);
    XML_SetCharacterDataHandler(p->xp, xp_text);
    XML_SetStartNamespaceDeclHandler(p->xp, xp_ns_start);
    XML_SetXmlDeclHandler(p->xp, xp_xmldecl);
    XML_SetStartDoctypeDeclHandler(p->xp, xp_doctype);
    XML_SetEntityDeclHandler(p->xp, xp_entity);
    XML_SetCommentHandler(p->xp, xp_comment);
    XML_SetProcessingInstructionHandler(p->xp, xp_pi);
    XML_SetParamEntityParsing(p->xp, XML_PARAM_ENTITY_PARSING_NEVER);
#ifdef HAVE_XML_SETREPARSEDEFERRALENABLED
    /* On by default in Debian's expat and after every reset: it can hold a
     * split stanza back until much more data arrives. The size limit below
     * bounds the re-parsing cost deferral was meant to prevent. */
    XML_SetReparseDeferralEnabled(p->xp, XML_FALSE);
#endif
}

static void xp_set_limits(struct xmlparse *p,
                          const struct xmlparse_limits *limits)
{
    p->limits = *limits;
    if (p->limits.max_depth < 1) {
        p->limits.max_depth = 1;
    }
}

struct xmlparse *xmlparse_new(const struct xmlparse_limits *limits,
                              const struct xmlparse_callbacks *cb,
                              void *ud)
{
    struct xmlparse *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }
    p->xp = XML_ParserCreateNS("UTF-8", XP_NS_SEP);
    if (p->xp == NULL) {
        free(p);
        return NULL;
    }
    xp_set_limits(p, limits);
    p->cb = *cb;
    p->ud = ud;
    buf_init(&p->text, XP_TEXT_MAX);
    buf_init(&p->scratch, XP_TEXT_MAX);
    xp_setup(p);
    return p;
}

void xmlparse_free(struct xmlparse *p)
{
    if (p == NULL) {
        return;
    }
    XML_ParserFree(p->xp);
    xml_unref(p->stanza);
    buf_free(&p->text);
    buf_free(&p->scratch);
    xp_prefixes_clear(p);
    free(p->prefixes);
    free(p->prefix_uris);
    free(p);
}

void xmlparse_set_limits(struct xmlparse *p,
                         const struct xmlparse_limits *limits)
{
    xp_set_limits(p, limits);
}

/*
 * Length of the well-formed UTF-8 sequence (RFC 3629) at s: 1 to 4, 0 when
 * the bytes there are not UTF-8 (stray continuation byte, overlong form,
 * surrogate, beyond U+10FFFF, a lead byte without its continuation), or -1
 * when n is too short to tell.
 */
static int xp_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0) {
        return -1;
    }
    unsigned char c = s[0];
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t len;
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* overlong */
        hi = c == 0xED ? 0x9F : 0xBF; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80; /* overlong */
        hi = c == 0xF4 ? 0x8F : 0xBF; /* beyond U+10FFFF */
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n) {
            return -1;
        }
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF)) {
            return 0;
        }
    }
    return (int)len;
}

/*
 * expat reports bytes that are not UTF-8 as an invalid token, like any
 * other bad character; RFC 6120 4.9.3.22 wants unsupported-encoding for
 * the former. True when the bytes at the error position are not UTF-8.
 * chunk/clen/chunk_at: the piece just given to XML_Parse and the stream
 * index of its first byte; expat's own buffer (context bytes) serves
 * when the error lies in an earlier piece.
 */
static bool xp_error_is_bad_utf8(const struct xmlparse *p,
                                 const char *chunk,
                                 size_t clen,
                                 uint64_t chunk_at)
{
    XML_Index idx = XML_GetCurrentByteIndex(p->xp);
    if (idx < 0) {
        return false;
    }
    if ((uint64_t)idx >= chunk_at && (uint64_t)idx - chunk_at < clen) {
        size_t off = (size_t)((uint64_t)idx - chunk_at);
        return xp_utf8_len((const unsigned char *)chunk + off, clen - off) == 0;
    }
    int off = 0;
    int size = 0;
    const char *ctx = XML_GetInputContext(p->xp, &off, &size);
    if (ctx == NULL || off < 0 || off >= size) {
        return false;
    }
    return xp_utf8_len((const unsigned char *)ctx + off,
                       (size_t)(size - off)) == 0;
}

/* Maps a failed XML_Parse of chunk (see xp_error_is_bad_utf8) to our code
 * and text. */
static int xp_expat_error(struct xmlparse *p,
                          const char *chunk,
                          size_t clen,
                          uint64_t chunk_at)
{
    if (p->err != 0) {
        return p->err;
    }
    enum XML_Error e = XML_GetErrorCode(p->xp);
    int code;
    switch (e) {
    case XML_ERROR_NO_MEMORY:
        code = ERR_NOMEM;
        break;
    case XML_ERROR_UNDEFINED_ENTITY:
    case XML_ERROR_RECURSIVE_ENTITY_REF:
    case XML_ERROR_PARAM_ENTITY_REF:
    case XML_ERROR_BINARY_ENTITY_REF:
    case XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF:
    case XML_ERROR_EXTERNAL_ENTITY_HANDLING:
    case XML_ERROR_AMPLIFICATION_LIMIT_BREACH:
        /* RFC 6120 11.1: entity references other than the predefined
         * ones are restricted XML. */
        code = ERR_XML_RESTRICTED;
        break;
    case XML_ERROR_UNKNOWN_ENCODING:
    case XML_ERROR_INCORRECT_ENCODING:
        code = ERR_XML_BAD_ENCODING;
        break;
    case XML_ERROR_INVALID_TOKEN:
        code = xp_error_is_bad_utf8(p, chunk, clen, chunk_at)
                   ? ERR_XML_BAD_ENCODING
                   : ERR_XML_MALFORMED;
        break;
    default:
        code = ERR_XML_MALFORMED;
        break;
    }
    p->err = code;
    snprintf(p->errtext, sizeof(p->errtext), "%s (line %lu, column %lu)",
             code == ERR_XML_BAD_ENCODING && e == XML_ERROR_INVALID_TOKEN
                 ? "invalid UTF-8"
                 : XML_ErrorString(e),
             (unsigned long)XML_GetCurrentLineNumber(p->xp),
             (unsigned long)XML_GetCurrentColumnNumber(p->xp));
    return code;
}

/*
 * RFC 6120 11.6: streams are UTF-8. expat follows a UTF-16 byte order mark,
 * or a UTF-16 '<' without one, even on a parser created for UTF-8, and
 * would parse the whole stream as UTF-16. None of 00, FE or FF can be one
 * of the first two bytes of a UTF-8 XML stream, so they are refused before
 * expat sees them. 0, or ERR_XML_BAD_ENCODING (recorded).
 */
static int
xp_check_stream_start(struct xmlparse *p, const char *data, size_t len)
{
    for (size_t i = 0; p->fed + i < 2 && i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == 0x00 || c == 0xFE || c == 0xFF) {
            p->err = ERR_XML_BAD_ENCODING;
            snprintf(p->errtext, sizeof(p->errtext),
                     "the stream is not UTF-8 (byte 0x%02x at offset %u: "
                     "UTF-16 or UTF-32?)",
                     c, (unsigned)(p->fed + i));
            return p->err;
        }
    }
    return 0;
}

int xmlparse_feed(struct xmlparse *p,
                  const char *data,
                  size_t len,
                  size_t *consumed)
{
    size_t done = 0;
    int rc = 0;
    if (consumed != NULL) {
        *consumed = 0;
    }
    if (p->err != 0) {
        return p->err;
    }
    if (p->suspended || p->in_feed) {
        return ERR_INVAL;
    }
    if (xp_check_stream_start(p, data, len) != 0) {
        return p->err;
    }
    uint64_t base = p->fed;
    p->in_feed = true;
    while (done < len) {
        uint64_t pending = p->fed - p->boundary;
        if (pending >= p->limits.max_stanza) {
            p->err = rc = ERR_XML_TOO_BIG;
            snprintf(p->errtext, sizeof(p->errtext),
                     "element exceeds %zu bytes (line %lu)",
                     p->limits.max_stanza,
                     (unsigned long)XML_GetCurrentLineNumber(p->xp));
            break;
        }
        uint64_t room = p->limits.max_stanza - pending;
        size_t n = len - done;
        if (n > room) {
            n = (size_t)room;
        }
        if (n > INT_MAX) {
            n = INT_MAX;
        }
        enum XML_Status st = XML_Parse(p->xp, data + done, (int)n, XML_FALSE);
        p->fed += n;
        if (st == XML_STATUS_SUSPENDED) {
            done = (size_t)(p->stop_at - base);
            rc = ERR_AGAIN;
            break;
        }
        if (st != XML_STATUS_OK || p->err != 0) {
            rc = xp_expat_error(p, data + done, n, p->fed - n);
            done += n;
            break;
        }
        done += n;
    }
    p->in_feed = false;
    if (consumed != NULL) {
        *consumed = done;
    }
    return rc;
}

void xmlparse_stop(struct xmlparse *p)
{
    if (p->in_feed) {
        p->stop_requested = true;
    }
}

int xmlparse_reset(struct xmlparse *p)
{
    if (p->in_feed) {
        return ERR_INVAL;
    }
    xml_unref(p->stanza);
    p->stanza = NULL;
    p->cur = NULL;
    p->depth = 0;
    buf_reset(&p->text);
    xp_prefixes_clear(p);
    p->fed = 0;
    p->boundary = 0;
    p->stop_at = 0;
    p->err = 0;
    p->stop_requested = false;
    p->suspended = false;
    p->errtext[0] = '\0';
    if (!XML_ParserReset(p->xp, "UTF-8")) {
        p->err = ERR_NOMEM;
        snprintf(p->errtext, sizeof(p->errtext), "cannot reset the parser");
        return ERR_NOMEM;
    }
    xp_setup(p);
    return 0;
}

const char *xmlparse_error_text(const struct xmlparse *p)
{
    if (p->err == 0 || p->errtext[0] == '\0') {
        return p->err == 0 ? "no error" : err_str(p->err);
    }
    return p->errtext;
}
