/*
 * tls.c: TLS for s2s streams, OpenSSL on raw non-blocking fds.
 *
 * One SSL_CTX per certificate carries both roles: the default one, and
 * one per local domain that has a certificate of its own (offered as a
 * server, and as a client when the peer asks), all with the same trust
 * store (shared, one X509_STORE) and the same settings (protocol floor
 * TLS 1.2, callbacks, options). A client connection is created from the
 * context of the local domain it speaks for. A server connection starts
 * on the context of the caller's local-domain hint (or the default); when
 * the client sends SNI, the SNI callback moves it to the context of that
 * name (or the default for a name without a certificate of its own) with
 * SSL_set_SSL_CTX, which OpenSSL allows only there; the session cache
 * stays the one of the starting context. The handshake only
 * *records* the peer
 * certificate: the verify callback accepts everything, and
 * tls_verify_peer() judges it afterwards (chain against the global store
 * or a peer-specific anchor, purpose serverAuth in both roles, then the
 * RFC 6125 identity via certid). That is what lets the stream layer
 * choose between SASL EXTERNAL and dialback after TLS is up.
 *
 * Decisions, with their reasons and costs:
 * - A missing close_notify is a clean close (SSL_OP_IGNORE_UNEXPECTED_EOF,
 *   tls_read() returns 0). XMPP has its own end marker, </stream:stream>,
 *   so a truncated stream is seen by the stream layer, which never got
 *   the end tag; and many servers simply close the socket. Without the
 *   option OpenSSL 3 reports "unexpected eof while reading" as a protocol
 *   error, which would turn every such close into a failure in the logs.
 *   A reset (ECONNRESET/EPIPE) is ERR_CLOSED, not 0.
 * - SSL_OP_NO_TICKET: resumption uses the in-memory server session cache
 *   (bounded to TLS_SESSION_CACHE_MAX sessions). A session decoded from a
 *   stateless ticket has lost the peer's intermediate certificates, so
 *   tls_verify_peer() could no longer build a resumed peer's chain.
 * - SSL_OP_NO_RENEGOTIATION: s2s needs none; it is a CPU-cost lever for a
 *   peer in TLS 1.2.
 * - SSL_MODE_NO_AUTO_CHAIN: we send exactly the chain in cert_file, which
 *   must therefore hold the leaf and its intermediates (a "fullchain"
 *   file). Otherwise OpenSSL would build the chain from the trust store
 *   on every handshake (a signature verification each time) and add the
 *   root, and whether a peer can verify us would depend on our own trust
 *   store rather than on the file the administrator configured.
 * - No passphrase prompt: a default password callback would read the
 *   terminal, so encrypted keys are refused instead.
 * - Blocking file reads happen only in tls_ctx_new() (start-up) and the
 *   first time a peer-specific anchor file is used (then cached per path
 *   for the life of the context). A ca_path directory is read lazily by
 *   OpenSSL during verification; prefer ca_file.
 * - No global state: the connection is found from the SSL through its
 *   app data (ex_data index 0, reserved for applications), so no
 *   ex_data index is registered.
 * - The socket BIO writes with write(), not send(MSG_NOSIGNAL): the process
 *   must ignore SIGPIPE (daemon.c does).
 */
#include "config.h"

#include "tls.h"

#include "err.h"
#include "jid.h"
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_ALPN_XMPP         "xmpp-server"
#define TLS_ALPN_XMPP_LEN     (sizeof(TLS_ALPN_XMPP) - 1)
#define TLS_SESSION_ID_CTX    "fedgate-s2s"
#define TLS_SESSION_CACHE_MAX 1024
#define TLS_SNI_MAX           254 /* 253 octets and the terminator */
#define TLS_ERR_MAX           384

/* ALPN wire format: one length-prefixed protocol name. */
static const unsigned char tls_alpn_wire[] = "\x0b" TLS_ALPN_XMPP;

/* A peer-specific trust anchor file, loaded once. */
struct tls_anchor {
    struct tls_anchor *next;
    char *path;
    X509_STORE *store;
};

/* The context of one local domain with a certificate of its own. */
struct tls_domain {
    char *domain; /* normalised */
    SSL_CTX *ssl;
};

struct tls_ctx {
    SSL_CTX *ssl; /* the default certificate; owns the trust store */
    struct tls_domain *domains;
    size_t ndomains;
    struct tls_anchor *anchors;
};

struct tls_conn {
    struct tls_ctx *ctx;
    SSL *ssl;
    bool client;
    bool alpn;             /* offer (client) or accept (server) ALPN */
    unsigned wants;        /* LOOP_READ/LOOP_WRITE of the last ERR_AGAIN */
    char sni[TLS_SNI_MAX]; /* server: normalised SNI name, "" if none */
    char err[TLS_ERR_MAX];
};

enum tls_op {
    TLS_OP_HANDSHAKE,
    TLS_OP_READ,
    TLS_OP_WRITE,
};

static const char *const tls_op_name[] = {
    [TLS_OP_HANDSHAKE] = "TLS handshake",
    [TLS_OP_READ] = "TLS read",
    [TLS_OP_WRITE] = "TLS write",
};

/* Appends text to the NUL-terminated string in out, cutting it short. */
static void tls_append(char *out, size_t outlen, const char *text)
{
    size_t used = strnlen(out, outlen);
    if (used + 1 < outlen) {
        snprintf(out + used, outlen - used, "%s", text);
    }
}

/* Moves OpenSSL's error queue into out ("; "-separated), emptying it.
 * Returns true when one of the errors is X509_R_KEY_VALUES_MISMATCH. */
static bool tls_append_queue(char *out, size_t outlen)
{
    bool mismatch = false;
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        tls_append(out, outlen, "; ");
        tls_append(out, outlen, one);
        if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
            ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
            mismatch = true;
        }
    }
    return mismatch;
}

/* Records what went wrong on c: the action, a summary, the error queue
 * and errno when it is set. */
static void tls_set_error(struct tls_conn *c,
                          enum tls_op op,
                          const char *what,
                          int sys_errno)
{
    snprintf(c->err, sizeof(c->err), "%s: %s", tls_op_name[op], what);
    tls_append_queue(c->err, sizeof(c->err));
    if (sys_errno != 0) {
        tls_append(c->err, sizeof(c->err), "; ");
        tls_append(c->err, sizeof(c->err), strerror(sys_errno));
    }
}

/*
 * Maps a failed SSL call to fedgate's results: ERR_AGAIN (and what to
 * wait for), 0 for a clean close on read, ERR_CLOSED when the peer went
 * away, ERR_AUTH for a TLS protocol failure (alert, bad record,
 * handshake failure), ERR_SYS for a failed system call.
 */
static int
tls_result(struct tls_conn *c, int ret, int sys_errno, enum tls_op op)
{
    int e = SSL_get_error(c->ssl, ret);

    c->wants = 0;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        c->wants = LOOP_READ;
        return ERR_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->wants = LOOP_WRITE;
        return ERR_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF). */
        tls_set_error(c, op, "closed by peer", 0);
        return op == TLS_OP_READ ? 0 : ERR_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (sys_errno == 0 || sys_errno == ECONNRESET || sys_errno == EPIPE) {
            tls_set_error(c, op, "connection lost", sys_errno);
            return ERR_CLOSED;
        }
        tls_set_error(c, op, "system call failed", sys_errno);
        return ERR_SYS;
    case SSL_ERROR_SSL:
        tls_set_error(c, op, "protocol failure", 0);
        return ERR_AUTH;
    default:
        tls_set_error(c, op, "unexpected OpenSSL state", sys_errno);
        return ERR_SYS;
    }
}

/* ---- context ------------------------------------------------------------ */

/* The handshake never fails on verification: the result is judged later
 * by tls_verify_peer() (and remains in SSL_get_verify_result()). */
static int tls_verify_accept(int preverify_ok, X509_STORE_CTX *x)
{
    (void)preverify_ok;
    (void)x;
    return 1;
}

/* Refuses encrypted keys instead of prompting on the terminal. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The context of a local domain's own certificate, or NULL. */
static SSL_CTX *tls_domain_ssl(const struct tls_ctx *ctx, const char *domain)
{
    if (domain == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < ctx->ndomains; i++) {
        if (strcmp(ctx->domains[i].domain, domain) == 0) {
            return ctx->domains[i].ssl;
        }
    }
    return NULL;
}

/*
 * Server: records the name the client asked for (normalised, so that it
 * compares with configured local domains) and switches the connection to
 * the context of that name's certificate: its own, else the default (an
 * unusable or unknown name gets the default too; the stream's 'to' then
 * decides what the peer gets). A client that sends no SNI never gets
 * here and keeps the certificate it started with (the local-domain
 * hint's, else the default).
 */
static int tls_servername_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_ctx *ctx = arg;
    struct tls_conn *c = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char *norm = NULL;

    /* OpenSSL runs this on clients too (the ServerHello acknowledgement):
     * a client keeps the certificate of the local domain it speaks for. */
    if (c == NULL || c->client || name == NULL) {
        return SSL_TLSEXT_ERR_OK;
    }
    int rc = jid_domain_normalize(name, &norm);
    if (rc == ERR_NOMEM) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (rc == 0 && strlen(norm) < sizeof(c->sni)) {
        memcpy(c->sni, norm, strlen(norm) + 1);
    }
    SSL_CTX *want = rc == 0 ? tls_domain_ssl(ctx, norm) : NULL;
    free(norm);
    if (want == NULL) {
        want = ctx->ssl;
    }
    if (want != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, want) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Server: selects "xmpp-server" on a direct-TLS listener when the client
 * offers it. Anything else is NOACK, not a fatal alert: the handshake
 * goes on without ALPN (STARTTLS peers, clients with other lists). */
static int tls_alpn_cb(SSL *ssl,
                       const unsigned char **out,
                       unsigned char *outlen,
                       const unsigned char *in,
                       unsigned int inlen,
                       void *arg)
{
    struct tls_conn *c = SSL_get_app_data(ssl);

    (void)arg;
    if (c == NULL || !c->alpn) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || n > inlen - i - 1) {
            break;
        }
        if (n == TLS_ALPN_XMPP_LEN &&
            memcmp(in + i + 1, TLS_ALPN_XMPP, TLS_ALPN_XMPP_LEN) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void tls_ctx_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats a context error followed by OpenSSL's error queue. */
static void tls_ctx_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errlen == 0) {
        ERR_clear_error();
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    tls_append_queue(err, errlen);
}

/* Loads certificate chain and key, with a clear message when the key
 * belongs to another certificate. true on success. */
static bool tls_ctx_load_identity(SSL_CTX *ssl,
                                  const char *cert_file,
                                  const char *key_file,
                                  char *err,
                                  size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ssl, cert_file) != 1) {
        tls_ctx_error(err, errlen, "cannot load certificate chain %s",
                      cert_file);
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        char why[TLS_ERR_MAX] = "";
        bool mismatch = tls_append_queue(why, sizeof(why));
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen,
                     mismatch ? "private key %s does not match certificate %s%s"
                              : "cannot load private key %s (for %s)%s",
                     key_file, cert_file, why);
        }
        return false;
    }
    /* A key of another type lands in another slot without an error
     * above; this catches it. */
    if (SSL_CTX_check_private_key(ssl) != 1) {
        tls_ctx_error(err, errlen,
                      "private key %s does not match certificate %s", key_file,
                      cert_file);
        return false;
    }
    return true;
}

/*
 * A new SSL_CTX with fedgate's settings and callbacks (arg: ctx) and the
 * identity in cert_file/key_file (NULL: none). store NULL loads the
 * trust store from s; otherwise store is shared (a reference is taken).
 * NULL with the reason in err.
 */
static SSL_CTX *tls_ssl_new(struct tls_ctx *ctx,
                            const struct tls_settings *s,
                            const char *cert_file,
                            const char *key_file,
                            X509_STORE *store,
                            char *err,
                            size_t errlen)
{
    SSL_CTX *ssl = SSL_CTX_new(TLS_method());
    SSL_CTX *ret = NULL;

    if (ssl == NULL) {
        tls_ctx_error(err, errlen, "cannot create TLS context");
        goto out;
    }
    if (SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION) != 1) {
        tls_ctx_error(err, errlen, "cannot require TLS 1.2");
        goto out;
    }
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS |
                              SSL_MODE_NO_AUTO_CHAIN);
    /* Without a session id context, resuming a session that carried a
     * client certificate fails the handshake. The same on every context:
     * SSL_set_SSL_CTX copies it over. */
    if (SSL_CTX_set_session_id_context(
            ssl, (const unsigned char *)TLS_SESSION_ID_CTX,
            sizeof(TLS_SESSION_ID_CTX) - 1) != 1) {
        tls_ctx_error(err, errlen, "cannot set the session id context");
        goto out;
    }
    SSL_CTX_sess_set_cache_size(ssl, TLS_SESSION_CACHE_MAX);
    SSL_CTX_set_default_passwd_cb(ssl, tls_no_passphrase);

    if (cert_file != NULL) {
        const char *key = key_file != NULL ? key_file : cert_file;
        if (!tls_ctx_load_identity(ssl, cert_file, key, err, errlen)) {
            goto out;
        }
    } else if (key_file != NULL) {
        tls_ctx_error(err, errlen, "private key %s given without a certificate",
                      key_file);
        goto out;
    }

    if (store != NULL) {
        SSL_CTX_set1_cert_store(ssl, store);
    } else if (s->ca_file != NULL || s->ca_path != NULL) {
        if (SSL_CTX_load_verify_locations(ssl, s->ca_file, s->ca_path) != 1) {
            tls_ctx_error(err, errlen, "cannot load trust store %s%s%s",
                          s->ca_file != NULL ? s->ca_file : "",
                          s->ca_file != NULL && s->ca_path != NULL ? ", " : "",
                          s->ca_path != NULL ? s->ca_path : "");
            goto out;
        }
    } else if (SSL_CTX_set_default_verify_paths(ssl) != 1) {
        tls_ctx_error(err, errlen, "cannot load the system trust store");
        goto out;
    }

    if (s->ciphers != NULL && SSL_CTX_set_cipher_list(ssl, s->ciphers) != 1) {
        tls_ctx_error(err, errlen, "no usable TLS 1.2 cipher in \"%s\"",
                      s->ciphers);
        goto out;
    }

    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, tls_verify_accept);
    SSL_CTX_set_tlsext_servername_callback(ssl, tls_servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ssl, ctx);
    SSL_CTX_set_alpn_select_cb(ssl, tls_alpn_cb, ctx);

    ret = ssl;
    ssl = NULL; /* transferred */
out:
    SSL_CTX_free(ssl);
    return ret;
}

/* Adds the context of one local domain's certificate. true on success. */
static bool tls_ctx_add_identity(struct tls_ctx *ctx,
                                 const struct tls_settings *s,
                                 const struct tls_identity *id,
                                 char *err,
                                 size_t errlen)
{
    struct tls_domain *d = &ctx->domains[ctx->ndomains];

    if (id->domain == NULL || id->domain[0] == '\0' || id->cert_file == NULL) {
        tls_ctx_error(err, errlen,
                      "a domain certificate needs a domain and a file");
        return false;
    }
    if (tls_domain_ssl(ctx, id->domain) != NULL) {
        tls_ctx_error(err, errlen, "two certificates for the domain %s",
                      id->domain);
        return false;
    }
    d->domain = strdup(id->domain);
    if (d->domain == NULL) {
        tls_ctx_error(err, errlen, "out of memory");
        return false;
    }
    d->ssl = tls_ssl_new(ctx, s, id->cert_file, id->key_file,
                         SSL_CTX_get_cert_store(ctx->ssl), err, errlen);
    /* counted even on failure, so that tls_ctx_free frees the name */
    ctx->ndomains++;
    return d->ssl != NULL;
}

struct tls_ctx *
tls_ctx_new(const struct tls_settings *s, char *err, size_t errlen)
{
    struct tls_ctx *ctx = NULL;
    struct tls_ctx *ret = NULL;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    ERR_clear_error();
    if (s == NULL) {
        tls_ctx_error(err, errlen, "no TLS settings");
        goto out;
    }
    if (s->nidentities > 0 && s->cert_file == NULL) {
        tls_ctx_error(err, errlen,
                      "domain certificates need a default certificate");
        goto out;
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        tls_ctx_error(err, errlen, "out of memory");
        goto out;
    }
    ctx->ssl =
        tls_ssl_new(ctx, s, s->cert_file, s->key_file, NULL, err, errlen);
    if (ctx->ssl == NULL) {
        goto out;
    }
    if (s->nidentities > 0) {
        ctx->domains = calloc(s->nidentities, sizeof(*ctx->domains));
        if (ctx->domains == NULL) {
            tls_ctx_error(err, errlen, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < s->nidentities; i++) {
        if (!tls_ctx_add_identity(ctx, s, &s->identities[i], err, errlen)) {
            goto out;
        }
    }

    ret = ctx;
    ctx = NULL; /* transferred */
out:
    tls_ctx_free(ctx);
    ERR_clear_error();
    return ret;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    struct tls_anchor *a = ctx->anchors;
    while (a != NULL) {
        struct tls_anchor *next = a->next;
        X509_STORE_free(a->store);
        free(a->path);
        free(a);
        a = next;
    }
    for (size_t i = 0; i < ctx->ndomains; i++) {
        SSL_CTX_free(ctx->domains[i].ssl);
        free(ctx->domains[i].domain);
    }
    free(ctx->domains);
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

bool tls_ctx_cert_valid_for(const struct tls_ctx *ctx, const char *domain)
{
    enum certid_match how;

    if (ctx == NULL || domain == NULL) {
        return false;
    }
    SSL_CTX *ssl = tls_domain_ssl(ctx, domain);
    X509 *leaf = SSL_CTX_get0_certificate(ssl != NULL ? ssl : ctx->ssl);
    bool ok = leaf != NULL && certid_check(leaf, domain, &how) == 0;
    ERR_clear_error();
    return ok;
}

/* ---- connections -------------------------------------------------------- */

/* RFC 6066 3: SNI carries host names, never IP literals. */
static bool tls_sni_usable(const char *name)
{
    return name[0] != '\0' && name[0] != '[' &&
           strspn(name, "0123456789.") != strlen(name);
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx,
                              int fd,
                              bool client,
                              const char *sni,
                              bool alpn)
{
    return tls_conn_new_for(ctx, fd, client, sni, alpn, NULL);
}

struct tls_conn *tls_conn_new_for(struct tls_ctx *ctx,
                                  int fd,
                                  bool client,
                                  const char *sni,
                                  bool alpn,
                                  const char *local_domain)
{
    struct tls_conn *c = NULL;
    struct tls_conn *ret = NULL;

    if (ctx == NULL || fd < 0) {
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        goto out;
    }
    c->ctx = ctx;
    c->client = client;
    c->alpn = alpn;
    snprintf(c->err, sizeof(c->err), "no error");
    SSL_CTX *start = tls_domain_ssl(ctx, local_domain);
    c->ssl = SSL_new(start != NULL ? start : ctx->ssl);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1 ||
        SSL_set_app_data(c->ssl, c) != 1) {
        goto out;
    }
    if (client) {
        SSL_set_connect_state(c->ssl);
        if (sni != NULL && tls_sni_usable(sni) &&
            SSL_set_tlsext_host_name(c->ssl, sni) != 1) {
            goto out;
        }
        /* SSL_set_alpn_protos() returns 0 on success. */
        if (alpn && SSL_set_alpn_protos(c->ssl, tls_alpn_wire,
                                        sizeof(tls_alpn_wire) - 1) != 0) {
            goto out;
        }
    } else {
        SSL_set_accept_state(c->ssl);
    }
    ret = c;
    c = NULL; /* transferred */
out:
    tls_conn_free(c);
    ERR_clear_error();
    return ret;
}

void tls_conn_free(struct tls_conn *c)
{
    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl); /* the socket BIO does not close the fd */
    free(c);
}

int tls_handshake(struct tls_conn *c)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(c->ssl);
    int sys_errno = errno;
    if (r == 1) {
        c->wants = 0;
        return 0;
    }
    return tls_result(c, r, sys_errno, TLS_OP_HANDSHAKE);
}

unsigned tls_wants(const struct tls_conn *c)
{
    return c->wants;
}

/* len 0 is ERR_INVAL: a 0 result means "closed". */
ssize_t tls_read(struct tls_conn *c, void *buf, size_t len)
{
    size_t n = 0;

    if (len == 0) {
        return ERR_INVAL;
    }
    if (len > SSIZE_MAX) {
        len = SSIZE_MAX;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_read_ex(c->ssl, buf, len, &n);
    int sys_errno = errno;
    if (r == 1) {
        c->wants = 0;
        return (ssize_t)n;
    }
    return tls_result(c, r, sys_errno, TLS_OP_READ);
}

/* After ERR_AGAIN, call again with the same bytes (the buffer may have
 * moved: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). May write fewer bytes than
 * asked (SSL_MODE_ENABLE_PARTIAL_WRITE). len 0 is ERR_INVAL. */
ssize_t tls_write(struct tls_conn *c, const void *buf, size_t len)
{
    size_t n = 0;

    if (len == 0) {
        return ERR_INVAL;
    }
    if (len > SSIZE_MAX) {
        len = SSIZE_MAX;
    }
    ERR_clear_error();
    errno = 0;
    int r = SSL_write_ex(c->ssl, buf, len, &n);
    int sys_errno = errno;
    if (r == 1) {
        c->wants = 0;
        return (ssize_t)n;
    }
    return tls_result(c, r, sys_errno, TLS_OP_WRITE);
}

/* SSL_has_pending() also counts a whole record read from the socket but
 * not yet decrypted, which epoll cannot see either. */
bool tls_pending(const struct tls_conn *c)
{
    return SSL_has_pending(c->ssl) == 1;
}

void tls_shutdown(struct tls_conn *c)
{
    if (c == NULL || !SSL_is_init_finished(c->ssl)) {
        return;
    }
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl); /* a blocked write just drops the alert */
    ERR_clear_error();
}

/* ---- peer verification -------------------------------------------------- */

/* One-line RFC 2253 text of name (non-ASCII and specials escaped). */
static int tls_name_text(const X509_NAME *name, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;

    out[0] = '\0';
    if (b == NULL) {
        return ERR_NOMEM;
    }
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        long n = BIO_get_mem_data(b, &p);
        if (n > 0 && p != NULL) {
            size_t len = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
            memcpy(out, p, len);
            out[len] = '\0';
        }
    }
    BIO_free(b);
    return 0;
}

/* The store of a peer-specific anchor file, loaded on first use and then
 * cached for the life of the context. *store is NULL (and why says why)
 * when the file cannot be loaded; a failed load is not cached, so a fixed
 * file is picked up. 0 or ERR_NOMEM. */
static int tls_anchor_store(struct tls_ctx *ctx,
                            const char *path,
                            X509_STORE **store,
                            char *why,
                            size_t whylen)
{
    struct tls_anchor *a;
    int rc = ERR_NOMEM;

    *store = NULL;
    for (a = ctx->anchors; a != NULL; a = a->next) {
        if (strcmp(a->path, path) == 0) {
            *store = a->store;
            return 0;
        }
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        goto out;
    }
    a->path = strdup(path);
    a->store = X509_STORE_new();
    if (a->path == NULL || a->store == NULL) {
        goto out;
    }
    ERR_clear_error();
    if (X509_STORE_load_file(a->store, path) != 1) {
        snprintf(why, whylen, "cannot load trust anchors from %s", path);
        tls_append_queue(why, whylen);
        rc = 0;
        goto out;
    }
    a->next = ctx->anchors;
    ctx->anchors = a;
    *store = a->store;
    a = NULL; /* transferred */
    rc = 0;
out:
    if (a != NULL) {
        X509_STORE_free(a->store);
        free(a->path);
        free(a);
    }
    return rc;
}

int tls_verify_peer(struct tls_conn *c,
                    const char *domain,
                    const char *anchor_file,
                    struct tls_peer *out)
{
    X509_STORE_CTX *sctx = NULL;
    X509_STORE *store = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    out->match = CERTID_NONE;
    ERR_clear_error();

    X509 *leaf = SSL_get0_peer_certificate(c->ssl);
    if (leaf == NULL) {
        snprintf(out->chain_error, sizeof(out->chain_error), "no certificate");
        goto out;
    }
    out->cert_present = true;
    rc = tls_name_text(X509_get_subject_name(leaf), out->subject,
                       sizeof(out->subject));
    if (rc != 0) {
        goto out;
    }
    rc = tls_name_text(X509_get_issuer_name(leaf), out->issuer,
                       sizeof(out->issuer));
    if (rc != 0) {
        goto out;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1) {
        out->not_after = timegm(&tm);
    }

    if (anchor_file != NULL) {
        rc = tls_anchor_store(c->ctx, anchor_file, &store, out->chain_error,
                              sizeof(out->chain_error));
        if (rc != 0) {
            goto out;
        }
    } else {
        store = SSL_CTX_get_cert_store(c->ctx->ssl);
    }
    if (store != NULL) {
        sctx = X509_STORE_CTX_new();
        /* The untrusted chain: a server sends its leaf first in it; a
         * client's chain, as OpenSSL keeps it on the server, lacks the
         * leaf, which is passed separately as the target. */
        if (sctx == NULL ||
            X509_STORE_CTX_init(sctx, store, leaf,
                                SSL_get_peer_cert_chain(c->ssl)) != 1) {
            rc = ERR_NOMEM;
            goto out;
        }
        /* serverAuth in both roles: an s2s peer connecting to us holds a
         * server certificate, and public CAs issue no clientAuth any
         * more (DESIGN.md 4). Also sets the matching trust setting. */
        X509_STORE_CTX_set_purpose(sctx, X509_PURPOSE_SSL_SERVER);
        if (X509_verify_cert(sctx) == 1) {
            out->chain_ok = true;
        } else {
            int e = X509_STORE_CTX_get_error(sctx);
            snprintf(out->chain_error, sizeof(out->chain_error),
                     "%s (depth %d)", X509_verify_cert_error_string(e),
                     X509_STORE_CTX_get_error_depth(sctx));
        }
    }

    if (domain != NULL) {
        int nrc = certid_check(leaf, domain, &out->match);
        if (nrc == 0) {
            out->name_ok = true;
        } else if (nrc == ERR_NOMEM) {
            rc = ERR_NOMEM;
            goto out;
        }
    }
out:
    X509_STORE_CTX_free(sctx);
    ERR_clear_error();
    return rc;
}

/* ---- accessors ---------------------------------------------------------- */

const char *tls_sni(const struct tls_conn *c)
{
    return !c->client && c->sni[0] != '\0' ? c->sni : NULL;
}

const char *tls_version(const struct tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *tls_cipher(const struct tls_conn *c)
{
    return SSL_get_cipher_name(c->ssl);
}

bool tls_alpn_xmpp(const struct tls_conn *c)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    return p != NULL && len == TLS_ALPN_XMPP_LEN &&
           memcmp(p, TLS_ALPN_XMPP, TLS_ALPN_XMPP_LEN) == 0;
}

const char *tls_last_error(const struct tls_conn *c)
{
    return c != NULL ? c->err : "no TLS connection";
}
