/*
 * stream.h: the XMPP stream state machine, without I/O.
 *
 * A stream consumes the bytes its peer sent (stream_feed) and produces the
 * bytes to send (stream_output); the caller moves bytes between the stream
 * and a socket. That keeps every negotiation testable with scripted bytes.
 *
 * This version speaks the initiating side of XEP-0114 (jabber:component:
 * accept): on start it writes the stream header for its domain; on the
 * server's header it answers <handshake>hex(SHA-1(id + secret))</handshake>;
 * on the server's empty <handshake/> it is ready and carries stanzas. A
 * stream error from the server, the server's </stream:stream>, bad XML or a
 * broken protocol step ends it; the closed callback says why.
 */
#ifndef FEDGATE_STREAM_H
#define FEDGATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "xml.h"

struct stream;

enum stream_state {
    STREAM_HEADER_SENT,    /* waiting for the peer's header */
    STREAM_HANDSHAKE_SENT, /* waiting for <handshake/> */
    STREAM_READY,          /* carries stanzas */
    STREAM_CLOSING,        /* we sent </stream:stream> */
    STREAM_CLOSED,         /* finished; only output may remain */
};

struct stream_close_info {
    int err;               /* 0 when the peer closed cleanly */
    const char *condition; /* stream error condition, or NULL */
    const char *text;      /* the error's text, or NULL */
    bool by_peer;          /* the peer sent the error or the close */
};

struct stream_callbacks {
    /* The handshake succeeded. */
    void (*ready)(void *ud);
    /* A stanza arrived on a ready stream. Consumes st. */
    void (*stanza)(void *ud, struct xml_node *st);
    /* The stream ended (once). The info strings are borrowed for the
     * duration of the call. The stream must not be freed from here. */
    void (*closed)(void *ud, const struct stream_close_info *info);
};

struct stream_limits {
    size_t stanza_max;  /* largest stanza accepted */
    unsigned depth_max; /* deepest nesting accepted */
    size_t out_max;     /* largest pending output */
};

/*
 * Returns a new component stream for domain with secret (both copied; the
 * secret is wiped on free), or NULL on ENOMEM. Nothing is written until
 * stream_start().
 */
struct stream *stream_new_component(const char *domain,
                                    const char *secret,
                                    const struct stream_limits *limits,
                                    const struct stream_callbacks *cb,
                                    void *ud);

/* Frees the stream. Accepts NULL. Must not be called from a callback. */
void stream_free(struct stream *s);

/* Writes the opening header. 0 or a negative code. */
int stream_start(struct stream *s);

/*
 * Consumes len bytes from the peer; may run callbacks and produce output.
 * Returns 0, or the code of the failure that ended the stream (the closed
 * callback has then run and a stream error may be waiting in the output).
 */
int stream_feed(struct stream *s, const char *data, size_t len);

/*
 * Queues st for the peer. Borrows st. 0; ERR_CLOSED unless ready;
 * ERR_TOO_BIG when the output bound would be passed (nothing is queued).
 */
int stream_send(struct stream *s, const struct xml_node *st);

/*
 * Ends the stream from our side: an optional stream error (condition may
 * be NULL for a clean close; text may be NULL) followed by
 * </stream:stream>. The closed callback runs (by_peer false). Idempotent.
 */
void stream_close(struct stream *s, const char *condition, const char *text);

/* Pending output; the caller writes it and calls buf_consume(). */
struct buf *stream_output(struct stream *s);

enum stream_state stream_get_state(const struct stream *s);
const char *stream_domain(const struct stream *s);
/* The stream id the peer gave, or NULL before its header. */
const char *stream_id(const struct stream *s);

/* Appends <stream:error> with condition and an optional text (escaped,
 * cut at 256 bytes) to out; shared by every stream machine. 0,
 * ERR_TOO_BIG or ERR_NOMEM. */
int stream_error_append(struct buf *out,
                        const char *condition,
                        const char *text);

/* The XEP-0114 handshake digest: lower-case hex SHA-1 of id followed by
 * secret, into out (41 bytes). 0 or ERR_NOMEM. */
int stream_handshake_digest(const char *id, const char *secret, char out[41]);

#endif
