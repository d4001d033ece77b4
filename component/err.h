/*
 * err.h: fedgate's error codes.
 *
 * Every function that can fail returns 0 or one of these negative codes.
 * err_str() turns a code into text for logs; err_stream_condition() and
 * err_stanza_condition() map it to the RFC 6120 condition a peer sees.
 * "Would block" (ERR_AGAIN) is a result, not a failure.
 */
#ifndef FEDGATE_ERR_H
#define FEDGATE_ERR_H

enum {
    ERR_OK = 0,
    ERR_NOMEM = -1,             /* allocation failed */
    ERR_AGAIN = -2,             /* would block; try again when ready */
    ERR_INVAL = -3,             /* invalid argument or value */
    ERR_SYS = -4,               /* system call failed; see errno */
    ERR_TOO_BIG = -5,           /* a bound (buffer, queue, stanza) was hit */
    ERR_NOT_FOUND = -6,         /* no such item */
    ERR_CLOSED = -7,            /* the stream or connection is closed */
    ERR_TIMEOUT = -8,           /* a wait state ran out of time */
    ERR_XML_MALFORMED = -20,    /* not well-formed XML */
    ERR_XML_RESTRICTED = -21,   /* DTD, entity, comment or PI (RFC 6120 11.1) */
    ERR_XML_TOO_BIG = -22,      /* stanza larger than the limit */
    ERR_XML_TOO_DEEP = -23,     /* elements nested deeper than the limit */
    ERR_XML_BAD_ENCODING = -24, /* a declared encoding other than UTF-8 */
    ERR_XML_BAD_NS = -25,       /* wrong stream namespace */
    ERR_XML_BAD_HEADER = -26,   /* the root is not a stream header */
    ERR_STREAM_ERROR = -30,     /* the peer sent a stream error */
    ERR_AUTH = -31,             /* authentication failed */
    ERR_CONFIG = -40,           /* configuration error */
};

/* Text for a code; never NULL. */
const char *err_str(int code);

/* The RFC 6120 stream error condition for a code, e.g. "not-well-formed". */
const char *err_stream_condition(int code);

#endif
