/*
 * tls.h: TLS for s2s streams, OpenSSL on raw non-blocking fds.
 *
 * A tls_ctx holds fedgate's certificates (a default one and optionally
 * one per local domain), the trust store and the protocol settings (TLS
 * 1.2 or newer, ALPN "xmpp-server", SNI). A tls_conn wraps one socket in
 * either role. Which certificate a connection presents: as a server, the
 * one for the name the client asked for with SNI (the default for a name
 * without one of its own); without SNI, the one for the local domain the
 * caller names (the stream's 'to', known before STARTTLS), else the
 * default; as a client, the one for the local domain the stream speaks
 * for, else the default. The handshake requests but
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

/* A certificate for one local domain. */
struct tls_identity {
    const char *domain;    /* normalised */
    const char *cert_file; /* PEM chain (leaf and intermediates) */
    const char *key_file;
};

struct tls_settings {
    const char *cert_file; /* PEM chain; NULL: no certificate to offer */
    const char *key_file;
    const char *ca_file; /* trust store; NULL and ca_path NULL: system */
    const char *ca_path;
    const char *ciphers; /* TLS 1.2 cipher list, NULL: OpenSSL default */
    /* Certificates for single local domains, used instead of cert_file
     * for them (SNI as a server, the local domain as a client). Needs
     * cert_file, the default for every other name. Copied. */
    const struct tls_identity *identities;
    size_t nidentities;
};

/* Returns a new context or NULL with a message in err (errlen bytes):
 * a file that cannot be loaded, a key that does not match, an identity
 * without a default certificate, or a domain given twice. */
struct tls_ctx *
tls_ctx_new(const struct tls_settings *s, char *err, size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

/* Whether the certificate ctx presents for domain (normalised: its own,
 * else the default) is valid for that name (RFC 6125 as certid checks
 * it). The chain is not checked: it is the peer's trust that judges it. */
bool tls_ctx_cert_valid_for(const struct tls_ctx *ctx, const char *domain);

/* Wraps fd (not owned: the caller closes it). sni is the peer's domain
 * for a client, NULL for a server. alpn: offer/accept "xmpp-server"
 * (direct TLS). NULL on ENOMEM. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx,
                              int fd,
                              bool client,
                              const char *sni,
                              bool alpn);

/* The same, naming the local domain the connection speaks for (borrowed;
 * NULL: none): a client presents that domain's certificate; a server
 * presents it when the client sends no SNI (SNI decides otherwise).
 * Either falls back to the default certificate. NULL on ENOMEM. */
struct tls_conn *tls_conn_new_for(struct tls_ctx *ctx,
                                  int fd,
                                  bool client,
                                  const char *sni,
                                  bool alpn,
                                  const char *local_domain);
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
