/*
 * tls.h: TLS for s2s streams, OpenSSL on raw non-blocking fds.
 *
 * A tls_ctx holds fedgate's certificate(s), the trust store and the
 * protocol settings (TLS 1.2 or newer, ALPN "xmpp-server", SNI). A
 * tls_conn wraps one socket in either role. The handshake requests but
 * does not require a peer certificate and never fails on verification:
 * the caller verifies afterwards with tls_verify_peer(), against the
 * global store or a peer-specific trust anchor, with purpose serverAuth in
 * both directions (a TLS-client peer whose certificate carries only
 * serverAuth is accepted, since public CAs issue no clientAuth any more).
 *
 * I/O results: n > 0 bytes, 0 for a clean close (close_notify or EOF),
 * ERR_AGAIN when the socket must become ready first (tls_wants() says for
 * what), another negative code on failure.
 */
#ifndef FEDGATE_TLS_H
#define FEDGATE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "certid.h"

struct tls_ctx;
struct tls_conn;

struct tls_settings {
    const char *cert_file; /* PEM chain; NULL: no certificate to offer */
    const char *key_file;
    const char *ca_file; /* trust store; NULL and ca_path NULL: system */
    const char *ca_path;
    const char *ciphers; /* TLS 1.2 cipher list, NULL: OpenSSL default */
};

/* Returns a new context or NULL with a message in err (errlen bytes). */
struct tls_ctx *
tls_ctx_new(const struct tls_settings *s, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

/* Wraps fd (not owned: the caller closes it). sni is the peer's domain
 * for a client, NULL for a server. alpn: offer/accept "xmpp-server"
 * (direct TLS). NULL on ENOMEM. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx,
                              int fd,
                              bool client,
                              const char *sni,
                              bool alpn);
void tls_conn_free(struct tls_conn *c);

/* Advances the handshake: 0 when done, ERR_AGAIN, or ERR_AUTH/ERR_SYS
 * (ERR_CLOSED when the peer went away) with tls_last_error() saying
 * why. */
int tls_handshake(struct tls_conn *c);

/* LOOP_READ and/or LOOP_WRITE: what the last ERR_AGAIN waits for. */
unsigned tls_wants(const struct tls_conn *c);

ssize_t tls_read(struct tls_conn *c, void *buf, size_t len);
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t len);

/* True if decrypted bytes wait inside OpenSSL (epoll cannot see them). */
bool tls_pending(const struct tls_conn *c);

/* Sends close_notify (best effort, non-blocking). */
void tls_shutdown(struct tls_conn *c);

struct tls_peer {
    bool cert_present;
    bool chain_ok;         /* chain verified to a trust anchor */
    char chain_error[128]; /* why not, when !chain_ok */
    bool name_ok;          /* valid for the domain asked */
    enum certid_match match;
    char subject[256];
    char issuer[256];
    time_t not_after;
};

/*
 * Verifies the peer certificate for domain, against anchor_file (a PEM
 * CA file for this peer only) or, when NULL, the context's store. Fills
 * out; 0, or ERR_NOMEM. (A certificate that fails is not an error: see
 * out->chain_ok and out->name_ok.) domain NULL checks the chain only.
 */
int tls_verify_peer(struct tls_conn *c,
                    const char *domain,
                    const char *anchor_file,
                    struct tls_peer *out);

/* The local domain the peer asked for with SNI, or NULL. */
const char *tls_sni(const struct tls_conn *c);
/* Negotiated protocol version and cipher, e.g. "TLSv1.3". */
const char *tls_version(const struct tls_conn *c);
const char *tls_cipher(const struct tls_conn *c);
/* Whether ALPN selected "xmpp-server". */
bool tls_alpn_xmpp(const struct tls_conn *c);

/* Text of the last failure on c, never NULL. */
const char *tls_last_error(const struct tls_conn *c);

#endif
