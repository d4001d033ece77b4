/*
 * s2sstream.h: the server-to-server stream state machine (RFC 6120,
 * XEP-0220 dialback, XEP-0178 SASL EXTERNAL), without I/O.
 *
 * Like stream.h it consumes peer bytes (s2s_stream_feed) and produces
 * bytes to send (s2s_stream_output); the owner moves them over a socket
 * and, when the machine asks for it, runs the TLS handshake on that socket
 * (want_tls) and reports back (s2s_stream_tls_done). All decisions that
 * need outside knowledge (is the peer certificate valid for a domain, does
 * the policy allow this peer and method, is a domain served here) are
 * callbacks; the machine enforces the protocol and anti-spoofing.
 *
 * Roles:
 *   S2S_OUT (initiating): header from=local to=remote; STARTTLS when
 *     offered (required unless tls_required is false); then SASL EXTERNAL
 *     when offered and our certificate is usable, else dialback
 *     (<db:result> with the XEP-0185 key over the id the peer gave us);
 *     more domain pairs may be added with s2s_stream_add_pair (dialback).
 *   S2S_IN (receiving): answers the header with a fresh random id and
 *     features (STARTTLS before TLS; after TLS, SASL EXTERNAL when the peer
 *     certificate is valid for the header's from, and dialback); accepts
 *     <auth mechanism='EXTERNAL'>, <db:result> (verified through the
 *     owner, who asks the authoritative server) and, as authoritative
 *     server, answers <db:verify> itself from the dialback secret.
 *
 * Stanza limits: limits.stanza_max_preauth until the first pair is
 * authenticated, then limits.stanza_max.
 */
#ifndef FEDGATE_S2SSTREAM_H
#define FEDGATE_S2SSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "policy.h"
#include "xml.h"

struct s2s_stream;

enum s2s_role { S2S_OUT, S2S_IN };

enum s2s_state {
    S2S_OPENING, /* waiting for the peer's header (and features) */
    S2S_TLS,     /* the owner runs the TLS handshake */
    S2S_AUTH,    /* authenticating (SASL or dialback) */
    S2S_READY,   /* at least one domain pair authenticated */
    S2S_CLOSING, /* we sent </stream:stream> */
    S2S_CLOSED,
};

struct s2s_limits {
    size_t stanza_max_preauth;
    size_t stanza_max;
    unsigned depth_max;
    size_t out_max;
};

struct s2s_stream_config {
    enum s2s_role role;
    const char *local;  /* S2S_OUT: our domain; S2S_IN: NULL (from header) */
    const char *remote; /* S2S_OUT: peer domain; S2S_IN: NULL */
    bool tls_active;    /* TLS already on (direct TLS, XEP-0368) */
    bool tls_offer;     /* S2S_IN: we have a certificate to offer STARTTLS */
    bool tls_required;  /* refuse to go on without TLS */
    bool cert_usable;   /* S2S_OUT: we presented a certificate valid for
                         * local, so SASL EXTERNAL may be tried */
    const char *dialback_secret; /* copied; wiped on free */
    /* The secret before the last rotation, or NULL: S2S_IN answers a
     * db:verify "valid" for a key under either, so dialbacks in flight
     * when the secret rotated still succeed. Copied; wiped on free. */
    const char *previous_secret;
    struct s2s_limits limits;
};

struct s2s_close_info {
    int err;               /* 0 for a clean close */
    const char *condition; /* stream error condition, or NULL */
    const char *text;      /* its text, or NULL */
    bool by_peer;
};

struct s2s_stream_callbacks {
    /* Start TLS on the socket now (we are client for S2S_OUT, server for
     * S2S_IN). Output written so far (<starttls/> or <proceed/>) must be
     * flushed first, in plaintext. Then call s2s_stream_tls_done. */
    void (*want_tls)(void *ud);
    /* S2S_IN: is local one of our domains? */
    bool (*serves)(void *ud, const char *local);
    /* Is the peer's TLS certificate valid for domain (chain and name)? */
    bool (*cert_valid_for)(void *ud, const char *domain);
    /* May remote use this method (the owner applies policy_check)? Fill
     * out; deny ends the attempt with out->condition. */
    void (*authorize)(void *ud,
                      const char *remote,
                      enum policy_auth method,
                      struct policy_decision *out);
    /* A domain pair is authenticated: S2S_OUT may send local->remote,
     * S2S_IN accepts remote->local. */
    void (*authenticated)(void *ud,
                          const char *local,
                          const char *remote,
                          enum policy_auth method);
    /* A pair failed (dialback invalid, SASL failure with no fallback).
     * The stream may still carry other pairs. */
    void (*auth_failed)(void *ud,
                        const char *local,
                        const char *remote,
                        const char *reason);
    /* S2S_IN got <db:result from=remote to=local>key</db:result>: ask the
     * authoritative server for remote (with <db:verify id=stream_id>)
     * and answer with s2s_stream_dialback_result. */
    void (*verify_needed)(void *ud,
                          const char *local,
                          const char *remote,
                          const char *stream_id,
                          const char *key);
    /* S2S_OUT: the answer to s2s_stream_send_verify. */
    void (*verify_result)(void *ud,
                          const char *local,
                          const char *remote,
                          const char *id,
                          bool valid);
    /* A stanza on an authenticated pair (from and to already checked).
     * Consumes st. */
    void (*stanza)(void *ud, struct xml_node *st);
    /* The stream ended (once). Strings borrowed for the call. */
    void (*closed)(void *ud, const struct s2s_close_info *info);
};

/* Returns a new machine or NULL on ENOMEM. Strings are copied. */
struct s2s_stream *s2s_stream_new(const struct s2s_stream_config *cfg,
                                  const struct s2s_stream_callbacks *cb,
                                  void *ud);
void s2s_stream_free(struct s2s_stream *s);

/* S2S_OUT: writes the first header. 0 or a negative code. */
int s2s_stream_start(struct s2s_stream *s);

/* Consumes peer bytes. 0, or the code that ended the stream (the closed
 * callback has run and a stream error may wait in the output). */
int s2s_stream_feed(struct s2s_stream *s, const char *data, size_t len);

/* The TLS handshake finished (ok) or failed; the stream restarts. */
void s2s_stream_tls_done(struct s2s_stream *s, bool ok);

/* S2S_IN: the authoritative server's answer for a pending db:result. */
void s2s_stream_dialback_result(struct s2s_stream *s,
                                const char *local,
                                const char *remote,
                                bool valid);

/*
 * Replaces the stream's dialback secrets (see s2s_stream_config): keys
 * it issues from now on use secret; db:verify accepts secret or previous
 * (NULL: secret only). Both are copied. 0, or ERR_NOMEM with the old
 * secrets kept.
 */
int s2s_stream_set_secrets(struct s2s_stream *s,
                           const char *secret,
                           const char *previous);

/* S2S_OUT: asks the peer (authoritative for remote) whether key is right
 * for a stream it opened to us; the answer comes as verify_result. */
int s2s_stream_send_verify(struct s2s_stream *s,
                           const char *local,
                           const char *remote,
                           const char *id,
                           const char *key);

/* S2S_OUT: authenticate one more pair on this stream with dialback. */
int s2s_stream_add_pair(struct s2s_stream *s,
                        const char *local,
                        const char *remote);

/* Is this pair authenticated in the stream's direction? */
bool s2s_stream_pair_ok(const struct s2s_stream *s,
                        const char *local,
                        const char *remote);

/* Queues a stanza (borrowed) for an authenticated pair; the namespace
 * written is jabber:server. 0, ERR_CLOSED, ERR_AUTH (pair not
 * authenticated) or ERR_TOO_BIG (output bound). */
int s2s_stream_send(struct s2s_stream *s, const struct xml_node *st);

/* Whitespace keepalive (a single space) when ready. */
int s2s_stream_keepalive(struct s2s_stream *s);

/* Ends the stream: optional stream error, then </stream:stream>. */
void s2s_stream_close(struct s2s_stream *s,
                      const char *condition,
                      const char *text);

struct buf *s2s_stream_output(struct s2s_stream *s);
enum s2s_state s2s_stream_state(const struct s2s_stream *s);
/* The id of this stream (ours for S2S_IN, the peer's for S2S_OUT), or
 * NULL before headers. */
const char *s2s_stream_id(const struct s2s_stream *s);
/* S2S_IN: the domains from the peer's header (may be NULL). */
const char *s2s_stream_header_from(const struct s2s_stream *s);
const char *s2s_stream_header_to(const struct s2s_stream *s);
const char *s2s_state_name(enum s2s_state state);

#endif
