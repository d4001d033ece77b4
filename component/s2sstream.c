/*
 * s2sstream.c: the server-to-server stream state machine, no I/O.
 *
 * Action points (S2S_OUT, initiating):
 *   start:            header from=local to=remote (xmlns:db declared)
 *   peer header:      check root, namespaces, version; take the peer's id.
 *                     Version < 1.0 with xmlns:db: legacy dialback at once.
 *   features:         after a SASL restart: authenticated (SASL), ready.
 *                     <starttls/> offered and TLS off: write <starttls/>.
 *                     TLS off but required: close (policy-violation).
 *                     EXTERNAL offered, TLS on, cert usable: <auth/>.
 *                     else dialback offered (feature or xmlns:db): send
 *                     <db:result> for every pair; else close.
 *   <proceed/>:       stop the parser, drop the rest of the read (STARTTLS
 *                     command injection), TLS state, want_tls.
 *   <success/>:       stop, reset the parser, new header, feed the rest.
 *   <failure/>:       dialback if offered, else auth_failed and close.
 *   db:result typed:  valid -> pair authenticated; else auth_failed.
 *   db:verify typed:  matched by (local, remote, id) -> verify_result.
 *   stanza:           not-authorized (no XEP-0288 bidirectional streams).
 *
 * Action points (S2S_IN, receiving):
 *   header:           check as above plus version >= 1.0, 'to' served,
 *                     'from' normalised; answer header with a fresh id,
 *                     then features (starttls | mechanisms + dialback |
 *                     empty after SASL).
 *   <starttls/>:      <proceed/>, stop, drop the rest, want_tls.
 *   <auth/>:          EXTERNAL only; authzid "", "=" or base64(from);
 *                     certificate and policy checked; <success/>, restart.
 *   db:result:        'to' served, policy, then verify_needed (the owner
 *                     asks the authoritative server); answered by
 *                     s2s_stream_dialback_result.
 *   db:verify:        answered from our own secret (or the one before
 *                     the last rotation), no auth needed.
 *   stanza:           only on an authenticated pair; 'from' domain must be
 *                     an authenticated remote (else invalid-from) and the
 *                     pair (to, from) authenticated (else host-unknown).
 *
 * Both: the peer's </stream:stream> is answered with ours; a stream error
 * from the peer is reported with its condition and text; bad XML maps to
 * a stream error through err_stream_condition(). Callbacks that need the
 * parser stopped or reset (TLS, SASL restart) only set a flag; the work is
 * done in s2s_stream_feed after the parser returned, so the owner may call
 * back into the machine from any callback.
 */
#include "config.h"

#include "s2sstream.h"

#include "stream.h"

#include "dialback.h"
#include "err.h"
#include "jid.h"
#include "log.h"
#include "stanza.h"
#include "xmlparse.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define NS_DIALBACK      "jabber:server:dialback"
#define NS_DB_FEATURE    "urn:xmpp:features:dialback"
#define NS_TLS           "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL          "urn:ietf:params:xml:ns:xmpp-sasl"
#define S2S_ID_BYTES     16   /* 32 hex characters */
#define S2S_DOMAIN_MAX   256  /* a normalised domain is at most 253 */
#define S2S_PAIRS_MAX    64   /* domain pairs one stream may carry */
#define S2S_VERIFIES_MAX 1024 /* db:verify requests waiting for answers */
#define S2S_AUTH_TRIES   3    /* SASL attempts before the stream ends */
#define S2S_AUTHZID_MAX  1024 /* base64 characters of an authzid */
#define S2S_LOG_PEER     64   /* peer bytes quoted in a log line */

enum pair_state {
    PAIR_NEW,     /* OUT: db:result not yet sent */
    PAIR_PENDING, /* OUT: db:result sent; IN: waiting for the verify */
    PAIR_VALID,
};

struct s2s_pair {
    char *local;
    char *remote;
    enum pair_state state;
    enum policy_auth method;
};

struct s2s_verify {
    char *local;
    char *remote;
    char *id;
    char *key;
    bool sent;
};

enum out_auth {
    OUT_AUTH_NONE,     /* negotiating */
    OUT_AUTH_SASL,     /* <auth/> sent, waiting for success/failure */
    OUT_AUTH_RESTART,  /* SASL succeeded, waiting for the new features */
    OUT_AUTH_DIALBACK, /* dialback elements may flow */
    OUT_AUTH_SASL_OK,  /* SASL done and ready */
};

struct s2s_stream {
    struct s2s_stream_config cfg; /* strings below are our copies */
    char *local;
    char *remote;
    char *secret;
    char *previous_secret; /* accepted by db:verify too, or NULL */
    struct s2s_stream_callbacks cb;
    void *ud;
    struct xmlparse *parser;
    struct buf out;
    enum s2s_state state;

    char *id;          /* ours (IN) or the peer's (OUT) */
    char *header_from; /* IN: normalised, from the first header */
    char *header_to;
    bool header_sent; /* our header for the current stream is out */
    bool peer_header; /* the peer's header for the current stream */
    bool peer_db_ns;  /* the peer's header declared xmlns:db */
    bool tls_active;
    int fail;      /* a failure that ended the stream */
    int close_err; /* what the closed callback was told */
    bool close_reported;
    bool in_feed; /* inside s2s_stream_feed */

    /* Deferred to s2s_stream_feed, after the parser returned. */
    bool tls_pending;     /* go to S2S_TLS and call want_tls */
    bool restart_pending; /* SASL success: reset and expect a header */

    /* OUT */
    bool starttls_sent;
    bool peer_offers_dialback;
    bool sasl_failed;
    enum out_auth auth;
    struct s2s_verify *verifies;
    size_t nverifies;

    /* IN */
    bool sasl_offered;
    bool sasl_done;
    unsigned sasl_tries;

    struct s2s_pair *pairs;
    size_t npairs;
    bool limits_raised;

    char who[2 * S2S_DOMAIN_MAX + 16];
};

static void s2s_on_header(void *ud, const struct xmlparse_header *hdr);
static void s2s_on_stanza(void *ud, struct xml_node *st);
static void s2s_on_end(void *ud);

/* ---- small helpers ---------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static bool el_is(const struct xml_node *el, const char *ns, const char *name)
{
    return strcmp(el->ns, ns) == 0 && strcmp(el->name, name) == 0;
}

/* message, presence or iq in the stream's content namespace. */
static bool stanza_name_ok(const struct xml_node *el)
{
    return strcmp(el->ns, XML_NS_SERVER) == 0 && stanza_is_stanza(el);
}

static void s2s_set_who(struct s2s_stream *s)
{
    const char *l = s->cfg.role == S2S_OUT ? s->local : s->header_to;
    const char *r = s->cfg.role == S2S_OUT ? s->remote : s->header_from;
    snprintf(s->who, sizeof(s->who), "%s %s%s%s",
             s->cfg.role == S2S_OUT ? "s2s-out" : "s2s-in", l != NULL ? l : "?",
             s->cfg.role == S2S_OUT ? "->" : "<-", r != NULL ? r : "?");
}

/* Normalises a domain into a new string; NULL when invalid or ENOMEM. */
static char *domain_norm(const char *in)
{
    char *out = NULL;
    if (in == NULL || jid_domain_normalize(in, &out) != 0) {
        return NULL;
    }
    return out;
}

static struct s2s_pair *
pair_find(const struct s2s_stream *s, const char *local, const char *remote)
{
    for (size_t i = 0; i < s->npairs; i++) {
        if (strcmp(s->pairs[i].local, local) == 0 &&
            strcmp(s->pairs[i].remote, remote) == 0) {
            return &s->pairs[i];
        }
    }
    return NULL;
}

static bool
pair_valid(const struct s2s_stream *s, const char *local, const char *remote)
{
    const struct s2s_pair *p = pair_find(s, local, remote);
    return p != NULL && p->state == PAIR_VALID;
}

static bool remote_valid(const struct s2s_stream *s, const char *remote)
{
    for (size_t i = 0; i < s->npairs; i++) {
        if (s->pairs[i].state == PAIR_VALID &&
            strcmp(s->pairs[i].remote, remote) == 0) {
            return true;
        }
    }
    return false;
}

static bool any_pair_valid(const struct s2s_stream *s)
{
    for (size_t i = 0; i < s->npairs; i++) {
        if (s->pairs[i].state == PAIR_VALID) {
            return true;
        }
    }
    return false;
}

/* Adds a pair (copies); returns it or NULL on ENOMEM or the bound. */
static struct s2s_pair *pair_add(struct s2s_stream *s,
                                 const char *local,
                                 const char *remote,
                                 enum pair_state state)
{
    if (s->npairs == S2S_PAIRS_MAX) {
        return NULL;
    }
    struct s2s_pair *a = realloc(s->pairs, (s->npairs + 1) * sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    s->pairs = a;
    struct s2s_pair *p = &s->pairs[s->npairs];
    p->local = strdup(local);
    p->remote = strdup(remote);
    if (p->local == NULL || p->remote == NULL) {
        free(p->local);
        free(p->remote);
        return NULL;
    }
    p->state = state;
    p->method = POLICY_AUTH_NONE;
    s->npairs++;
    return p;
}

static void pair_remove(struct s2s_stream *s, struct s2s_pair *p)
{
    size_t i = (size_t)(p - s->pairs);
    free(p->local);
    free(p->remote);
    memmove(&s->pairs[i], &s->pairs[i + 1], (s->npairs - i - 1) * sizeof(*p));
    s->npairs--;
}

static void verify_free(struct s2s_verify *v)
{
    free(v->local);
    free(v->remote);
    free(v->id);
    free(v->key);
}

/* Writes an attribute ` name='escaped value'`. */
static int put_attr(struct buf *b, const char *name, const char *value)
{
    int rc = buf_printf(b, " %s='", name);
    if (rc == 0) {
        rc = xml_escape(b, value, strlen(value), true);
    }
    if (rc == 0) {
        rc = buf_append_str(b, "'");
    }
    return rc;
}

/* ---- lifetime --------------------------------------------------------- */

struct s2s_stream *s2s_stream_new(const struct s2s_stream_config *cfg,
                                  const struct s2s_stream_callbacks *cb,
                                  void *ud)
{
    static const struct xmlparse_callbacks pcb = {
        .header = s2s_on_header,
        .stanza = s2s_on_stanza,
        .end = s2s_on_end,
    };
    struct s2s_stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->cfg = *cfg;
    s->cb = *cb;
    s->ud = ud;
    s->state = S2S_OPENING;
    s->tls_active = cfg->tls_active;
    buf_init(&s->out, cfg->limits.out_max);
    bool ok = true;
    if (cfg->role == S2S_OUT) {
        s->local = domain_norm(cfg->local);
        s->remote = domain_norm(cfg->remote);
        ok = s->local != NULL && s->remote != NULL;
    }
    if (cfg->dialback_secret != NULL) {
        s->secret = strdup(cfg->dialback_secret);
        ok = ok && s->secret != NULL;
    }
    s->cfg.local = s->local;
    s->cfg.remote = s->remote;
    if (cfg->previous_secret != NULL) {
        s->previous_secret = strdup(cfg->previous_secret);
        ok = ok && s->previous_secret != NULL;
    }
    s->cfg.dialback_secret = NULL; /* only s->secret holds it */
    s->cfg.previous_secret = NULL;
    struct xmlparse_limits pl = {.max_stanza = cfg->limits.stanza_max_preauth,
                                 .max_depth = cfg->limits.depth_max};
    s->parser = xmlparse_new(&pl, &pcb, s);
    if (s->parser == NULL) {
        ok = false;
    }
    if (ok && cfg->role == S2S_OUT &&
        pair_add(s, s->local, s->remote, PAIR_NEW) == NULL) {
        ok = false;
    }
    if (!ok) {
        s2s_stream_free(s);
        return NULL;
    }
    s2s_set_who(s);
    return s;
}

/* Wipes and frees a secret. Accepts NULL. */
static void secret_free(char *secret)
{
    if (secret != NULL) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
}

void s2s_stream_free(struct s2s_stream *s)
{
    if (s == NULL) {
        return;
    }
    xmlparse_free(s->parser);
    buf_free(&s->out);
    secret_free(s->secret);
    secret_free(s->previous_secret);
    for (size_t i = 0; i < s->npairs; i++) {
        free(s->pairs[i].local);
        free(s->pairs[i].remote);
    }
    free(s->pairs);
    for (size_t i = 0; i < s->nverifies; i++) {
        verify_free(&s->verifies[i]);
    }
    free(s->verifies);
    free(s->local);
    free(s->remote);
    free(s->id);
    free(s->header_from);
    free(s->header_to);
    free(s);
}

/* ---- writing ---------------------------------------------------------- */

/* Our stream header. OUT: from=local to=remote. IN: from=the peer's to,
 * to=the peer's from, id=ours. */
static int write_header(struct s2s_stream *s)
{
    struct buf *b = &s->out;
    size_t mark = buf_size(b);
    int rc = buf_append_str(
        b, "<?xml version='1.0'?><stream:stream xmlns='" XML_NS_SERVER
           "' xmlns:stream='" XML_NS_STREAM "' xmlns:db='" NS_DIALBACK "'");
    const char *from = s->cfg.role == S2S_OUT ? s->local : s->header_to;
    const char *to = s->cfg.role == S2S_OUT ? s->remote : s->header_from;
    if (rc == 0 && from != NULL) {
        rc = put_attr(b, "from", from);
    }
    if (rc == 0 && to != NULL) {
        rc = put_attr(b, "to", to);
    }
    if (rc == 0 && s->cfg.role == S2S_IN && s->id != NULL) {
        rc = put_attr(b, "id", s->id);
    }
    if (rc == 0) {
        rc = buf_append_str(b, " version='1.0'>");
    }
    if (rc != 0) {
        buf_truncate(b, mark);
        return rc;
    }
    s->header_sent = true;
    return 0;
}

static void report_close(struct s2s_stream *s,
                         int err,
                         const char *condition,
                         const char *text,
                         bool by_peer)
{
    if (s->close_reported) {
        return;
    }
    s->close_reported = true;
    s->close_err = err;
    if (log_enabled(LOG_LEVEL_INFO)) {
        /* Condition and text may be the peer's bytes. */
        char c[4 * S2S_LOG_PEER + 8];
        char t[4 * S2S_LOG_PEER + 8];
        const char *cs = condition != NULL ? condition : err_str(err);
        log_conn(LOG_LEVEL_INFO, s->who, "stream closed%s: %s%s%s",
                 by_peer ? " by peer" : "",
                 log_escape(cs, strlen(cs), S2S_LOG_PEER, c, sizeof(c)),
                 text != NULL ? " - " : "",
                 text != NULL ? log_escape(text, strlen(text), S2S_LOG_PEER, t,
                                           sizeof(t))
                              : "");
    }
    struct s2s_close_info info = {
        .err = err, .condition = condition, .text = text, .by_peer = by_peer};
    if (s->cb.closed != NULL) {
        s->cb.closed(s->ud, &info);
    }
}

/* Writes an optional stream error and the closing tag; no callback. The
 * output bound is widened for the goodbye, which must not be lost. */
static void
write_close(struct s2s_stream *s, const char *condition, const char *text)
{
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return;
    }
    if (s->state == S2S_TLS) {
        /* The socket belongs to the TLS handshake: nothing can be sent,
         * and nothing more will happen on this stream. */
        s->state = S2S_CLOSED;
        return;
    }
    struct buf e;
    buf_init(&e, 4096);
    int rc = 0;
    if (!s->header_sent) {
        /* RFC 6120 4.9.1.1: an error while the stream is set up still
         * comes after our own header. */
        struct buf saved = s->out;
        s->out = e;
        rc = write_header(s);
        e = s->out;
        s->out = saved;
    }
    if (rc == 0 && condition != NULL) {
        rc = stream_error_append(&e, condition, text);
    }
    if (rc == 0) {
        rc = buf_append_str(&e, "</stream:stream>");
    }
    if (rc == 0) {
        s->out.max += buf_size(&e);
        (void)buf_append(&s->out, buf_peek(&e), buf_size(&e));
    }
    buf_free(&e);
    s->state = S2S_CLOSING;
}

/* Fails the stream from anywhere (inside a parser callback too). */
static void
s2s_fail(struct s2s_stream *s, int err, const char *condition, const char *text)
{
    if (s->fail == 0) {
        s->fail = err;
    }
    write_close(s, condition, text);
    report_close(s, err, condition, text, false);
    if (s->in_feed) {
        xmlparse_stop(s->parser);
    } else {
        s->state = S2S_CLOSED;
    }
}

/* A write that must succeed for the protocol to go on. */
static bool put(struct s2s_stream *s, int rc)
{
    if (rc != 0) {
        s2s_fail(s, rc, "resource-constraint", "output limit reached");
        return false;
    }
    return true;
}

/* ---- keys, ids, base64 ------------------------------------------------ */

static int new_stream_id(char **out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[S2S_ID_BYTES];
    *out = NULL;
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        return ERR_SYS;
    }
    char *id = malloc(2 * sizeof(r) + 1);
    if (id == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < sizeof(r); i++) {
        id[2 * i] = hex[r[i] >> 4];
        id[2 * i + 1] = hex[r[i] & 15];
    }
    id[2 * sizeof(r)] = '\0';
    *out = id;
    return 0;
}

/* Strict base64 decoding of an authzid into a new string (no NUL bytes
 * allowed). 0, ERR_INVAL or ERR_NOMEM. */
static int b64_decode_str(const char *in, char **out)
{
    *out = NULL;
    size_t n = strlen(in);
    if (n % 4 != 0 || n > S2S_AUTHZID_MAX) {
        return ERR_INVAL;
    }
    size_t pad = 0;
    while (pad < 2 && pad < n && in[n - 1 - pad] == '=') {
        pad++;
    }
    unsigned char *d = malloc(n / 4 * 3 + 1);
    if (d == NULL) {
        return ERR_NOMEM;
    }
    int len = n > 0 ? EVP_DecodeBlock(d, (const unsigned char *)in, (int)n) : 0;
    if (len < 0 || (size_t)len < pad) {
        free(d);
        return ERR_INVAL;
    }
    len -= (int)pad;
    d[len] = '\0';
    if (memchr(d, '\0', (size_t)len) != NULL) {
        free(d);
        return ERR_INVAL;
    }
    *out = (char *)d;
    return 0;
}

static int b64_encode_str(const char *in, struct buf *out)
{
    size_t n = strlen(in);
    if (n > S2S_DOMAIN_MAX) {
        return ERR_INVAL;
    }
    unsigned char enc[4 * ((S2S_DOMAIN_MAX + 2) / 3) + 1];
    int len = EVP_EncodeBlock(enc, (const unsigned char *)in, (int)n);
    return buf_append(out, enc, (size_t)len);
}

/* ---- limits and pairs ------------------------------------------------- */

static void raise_limits(struct s2s_stream *s)
{
    if (s->limits_raised) {
        return;
    }
    s->limits_raised = true;
    struct xmlparse_limits pl = {.max_stanza = s->cfg.limits.stanza_max,
                                 .max_depth = s->cfg.limits.depth_max};
    xmlparse_set_limits(s->parser, &pl);
}

/* Marks the pair authenticated and tells the owner. */
static void pair_authenticated(struct s2s_stream *s,
                               struct s2s_pair *p,
                               enum policy_auth method)
{
    p->state = PAIR_VALID;
    p->method = method;
    raise_limits(s);
    if (s->state == S2S_AUTH || s->state == S2S_OPENING) {
        s->state = S2S_READY;
    }
    if (log_enabled(LOG_LEVEL_INFO)) {
        log_conn(LOG_LEVEL_INFO, s->who, "%s->%s authenticated (%s)",
                 s->cfg.role == S2S_OUT ? p->local : p->remote,
                 s->cfg.role == S2S_OUT ? p->remote : p->local,
                 method == POLICY_AUTH_SASL_EXTERNAL ? "SASL EXTERNAL"
                                                     : "dialback");
    }
    /* The strings may go if the owner acts on the stream; copy them. */
    char local[S2S_DOMAIN_MAX];
    char remote[S2S_DOMAIN_MAX];
    snprintf(local, sizeof(local), "%s", p->local);
    snprintf(remote, sizeof(remote), "%s", p->remote);
    if (s->cb.authenticated != NULL) {
        s->cb.authenticated(s->ud, local, remote, method);
    }
}

static void auth_failed(struct s2s_stream *s,
                        const char *local,
                        const char *remote,
                        const char *reason)
{
    if (log_enabled(LOG_LEVEL_WARN)) {
        log_conn(LOG_LEVEL_WARN, s->who, "%s/%s not authenticated: %s", local,
                 remote, reason);
    }
    if (s->cb.auth_failed != NULL) {
        s->cb.auth_failed(s->ud, local, remote, reason);
    }
}

static bool authorize(struct s2s_stream *s,
                      const char *remote,
                      enum policy_auth method,
                      struct policy_decision *d)
{
    d->allow = true;
    d->reason = NULL;
    d->condition = NULL;
    if (s->cb.authorize != NULL) {
        s->cb.authorize(s->ud, remote, method, d);
    }
    if (!d->allow && d->condition == NULL) {
        d->condition = "policy-violation";
    }
    return d->allow;
}

static bool cert_valid_for(struct s2s_stream *s, const char *domain)
{
    return s->tls_active && domain != NULL && s->cb.cert_valid_for != NULL &&
           s->cb.cert_valid_for(s->ud, domain);
}

/* ---- header ----------------------------------------------------------- */

static const char *header_attr(const struct xmlparse_header *hdr,
                               const char *name)
{
    for (size_t i = 0; i < hdr->nattrs; i++) {
        if (strcmp(hdr->attrs[i].name, name) == 0) {
            return hdr->attrs[i].value;
        }
    }
    return NULL;
}

/* True for version >= 1.0; absent or malformed counts as 0.0. */
static bool version_ok(const char *v)
{
    if (v == NULL) {
        return false;
    }
    unsigned long major = 0;
    size_t i = 0;
    if (v[0] < '0' || v[0] > '9') {
        return false;
    }
    for (; v[i] >= '0' && v[i] <= '9'; i++) {
        if (major > 1000) {
            return true; /* absurdly large, still >= 1 */
        }
        major = major * 10 + (unsigned long)(v[i] - '0');
    }
    if (v[i] != '.' || v[i + 1] < '0' || v[i + 1] > '9') {
        return false;
    }
    for (i++; v[i] >= '0' && v[i] <= '9'; i++) {
    }
    return v[i] == '\0' && major >= 1;
}

static bool header_declares_db(const struct xmlparse_header *hdr)
{
    for (size_t i = 0; i < hdr->nprefixes; i++) {
        if (strcmp(hdr->prefixes[i], "db") == 0 &&
            strcmp(hdr->prefix_uris[i], NS_DIALBACK) == 0) {
            return true;
        }
    }
    return false;
}

static void in_write_features(struct s2s_stream *s);
static void out_start_dialback(struct s2s_stream *s);

static void in_on_header(struct s2s_stream *s,
                         const struct xmlparse_header *hdr)
{
    const char *to = header_attr(hdr, "to");
    const char *from = header_attr(hdr, "from");
    char *nto = NULL;
    char *nfrom = NULL;
    /* Every header (restarts too) gets a fresh id (RFC 6120 4.7.3). */
    free(s->id);
    int rc = new_stream_id(&s->id);
    if (rc != 0) {
        s2s_fail(s, rc, "internal-server-error", NULL);
        return;
    }
    if (!version_ok(header_attr(hdr, "version"))) {
        s2s_fail(s, ERR_XML_BAD_HEADER, "unsupported-version",
                 "version 1.0 or later is required");
        return;
    }
    if (to != NULL && (nto = domain_norm(to)) == NULL) {
        s2s_fail(s, ERR_INVAL, "improper-addressing",
                 "invalid 'to' in the stream header");
        return;
    }
    if (from != NULL && (nfrom = domain_norm(from)) == NULL) {
        free(nto);
        s2s_fail(s, ERR_INVAL, "improper-addressing",
                 "invalid 'from' in the stream header");
        return;
    }
    bool restart = s->header_to != NULL;
    if (restart) {
        /* Some servers leave to/from off on restarts; they may not
         * change them. */
        if ((nto != NULL && strcmp(nto, s->header_to) != 0) ||
            (nfrom != NULL && !str_eq(nfrom, s->header_from))) {
            free(nto);
            free(nfrom);
            s2s_fail(s, ERR_INVAL, "improper-addressing",
                     "stream restart changed 'to' or 'from'");
            return;
        }
        free(nto);
        free(nfrom);
    } else {
        if (nto == NULL) {
            free(nfrom);
            s2s_fail(s, ERR_INVAL, "improper-addressing",
                     "stream header without 'to'");
            return;
        }
        bool served = s->cb.serves != NULL && s->cb.serves(s->ud, nto);
        if (!served) {
            free(nto);
            free(nfrom);
            s2s_fail(s, ERR_NOT_FOUND, "host-unknown",
                     "this server does not serve that domain");
            return;
        }
        s->header_to = nto;     /* transferred */
        s->header_from = nfrom; /* transferred */
        s2s_set_who(s);
    }
    if (!put(s, write_header(s))) {
        return;
    }
    if (!s->tls_active && s->cfg.tls_required && !s->cfg.tls_offer) {
        s2s_fail(s, ERR_AUTH, "policy-violation",
                 "TLS is required but not available here");
        return;
    }
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        log_conn(LOG_LEVEL_DEBUG, s->who, "stream opened (id %s%s)", s->id,
                 s->tls_active ? ", TLS" : "");
    }
    in_write_features(s);
}

static void in_write_features(struct s2s_stream *s)
{
    struct buf *b = &s->out;
    size_t mark = buf_size(b);
    int rc;
    if (s->sasl_done) {
        /* RFC 6120 6.4.6: after SASL, the restarted stream carries the
         * remaining features; we have none. */
        rc = buf_append_str(b, "<stream:features/>");
        if (put(s, rc)) {
            s->state = S2S_READY;
        }
        return;
    }
    rc = buf_append_str(b, "<stream:features>");
    bool tls_offered = !s->tls_active && s->cfg.tls_offer;
    if (rc == 0 && tls_offered) {
        rc = buf_append_str(b, s->cfg.tls_required ? "<starttls xmlns='" NS_TLS
                                                     "'><required/></starttls>"
                                                   : "<starttls xmlns='" NS_TLS
                                                     "'/>");
    }
    bool auth_offered = s->tls_active || !s->cfg.tls_required;
    s->sasl_offered = false;
    if (rc == 0 && auth_offered && s->header_from != NULL &&
        cert_valid_for(s, s->header_from)) {
        s->sasl_offered = true;
        rc = buf_append_str(b, "<mechanisms xmlns='" NS_SASL
                               "'><mechanism>EXTERNAL</mechanism>"
                               "</mechanisms>");
    }
    if (rc == 0 && auth_offered) {
        rc = buf_append_str(b, "<dialback xmlns='" NS_DB_FEATURE
                               "'><errors/></dialback>");
    }
    if (rc == 0) {
        rc = buf_append_str(b, "</stream:features>");
    }
    if (rc != 0) {
        buf_truncate(b, mark);
        put(s, rc);
        return;
    }
    if (s->state == S2S_OPENING && auth_offered) {
        s->state = any_pair_valid(s) ? S2S_READY : S2S_AUTH;
    }
}

static void out_on_header(struct s2s_stream *s,
                          const struct xmlparse_header *hdr)
{
    const char *id = header_attr(hdr, "id");
    if (id == NULL || id[0] == '\0') {
        s2s_fail(s, ERR_XML_BAD_HEADER, "undefined-condition",
                 "stream header without id");
        return;
    }
    char *copy = strdup(id);
    if (copy == NULL) {
        s2s_fail(s, ERR_NOMEM, "resource-constraint", NULL);
        return;
    }
    free(s->id);
    s->id = copy;
    if (version_ok(header_attr(hdr, "version"))) {
        return; /* features follow */
    }
    /* A pre-1.0 server sends no features; dialback is all it knows. */
    if (!s->peer_db_ns) {
        s2s_fail(s, ERR_XML_BAD_HEADER, "unsupported-version",
                 "version 1.0 or later is required");
        return;
    }
    if (!s->tls_active && s->cfg.tls_required) {
        auth_failed(s, s->local, s->remote, "peer cannot do TLS");
        s2s_fail(s, ERR_AUTH, "policy-violation",
                 "encrypted server-to-server communication is required");
        return;
    }
    s->peer_offers_dialback = true;
    out_start_dialback(s);
}

static void s2s_on_header(void *ud, const struct xmlparse_header *hdr)
{
    struct s2s_stream *s = ud;
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return;
    }
    if (s->peer_header) {
        s2s_fail(s, ERR_XML_BAD_HEADER, "bad-format",
                 "unexpected second stream header");
        return;
    }
    s->peer_header = true;
    if (strcmp(hdr->name, "stream") != 0 ||
        strcmp(hdr->ns, XML_NS_STREAM) != 0) {
        s2s_fail(s, ERR_XML_BAD_NS, "invalid-namespace",
                 "the root must be stream:stream");
        return;
    }
    if (strcmp(hdr->default_ns, XML_NS_SERVER) != 0) {
        s2s_fail(s, ERR_XML_BAD_NS, "invalid-namespace",
                 "the content namespace must be jabber:server");
        return;
    }
    s->peer_db_ns = header_declares_db(hdr);
    if (s->cfg.role == S2S_IN) {
        in_on_header(s, hdr);
    } else {
        out_on_header(s, hdr);
    }
}

/* ---- stream end and errors ------------------------------------------- */

static void stream_error_parts(const struct xml_node *err,
                               const char **condition,
                               const char **text)
{
    *condition = "undefined-condition";
    *text = NULL;
    for (const struct xml_node *c = xml_first_element(err); c != NULL;
         c = xml_next_element(c)) {
        if (strcmp(c->ns, XML_NS_STREAMS) != 0) {
            continue;
        }
        if (strcmp(c->name, "text") == 0) {
            const struct xml_node *t = c->first_child;
            if (t != NULL && t->kind == XML_NODE_TEXT) {
                *text = t->text;
            }
        } else {
            *condition = c->name;
        }
    }
}

static void s2s_on_end(void *ud)
{
    struct s2s_stream *s = ud;
    write_close(s, NULL, NULL);
    report_close(s, 0, NULL, NULL, true);
    s->state = S2S_CLOSED;
    xmlparse_stop(s->parser);
}

/* The text of el's first child element in ns/name, or NULL. Borrowed. */
static const char *child_text(const struct xml_node *el)
{
    const struct xml_node *t = el->first_child;
    if (t != NULL && t->kind == XML_NODE_TEXT && t->next == NULL) {
        return t->text;
    }
    return t == NULL ? "" : NULL;
}

/* The first stanza-error condition in <error/> under el, or "". */
static const char *db_error_condition(const struct xml_node *el)
{
    const struct xml_node *e = xml_child(el, NULL, "error");
    if (e == NULL) {
        return "";
    }
    for (const struct xml_node *c = xml_first_element(e); c != NULL;
         c = xml_next_element(c)) {
        if (strcmp(c->ns, XML_NS_STANZAS) == 0 &&
            strcmp(c->name, "text") != 0) {
            return c->name;
        }
    }
    return "";
}

/* ---- S2S_OUT ---------------------------------------------------------- */

static bool out_dialback_open(const struct s2s_stream *s)
{
    return s->auth == OUT_AUTH_DIALBACK ||
           (s->auth == OUT_AUTH_SASL_OK && s->peer_offers_dialback);
}

/* db:verify may go out once dialback runs or the stream is ready (never
 * inside a SASL exchange, which admits nothing else). */
static bool out_verify_open(const struct s2s_stream *s)
{
    return s->auth == OUT_AUTH_DIALBACK || s->auth == OUT_AUTH_SASL_OK;
}

static void out_flush_verifies(struct s2s_stream *s)
{
    for (size_t i = 0; i < s->nverifies; i++) {
        struct s2s_verify *v = &s->verifies[i];
        if (v->sent) {
            continue;
        }
        size_t mark = buf_size(&s->out);
        int rc = buf_append_str(&s->out, "<db:verify");
        if (rc == 0) {
            rc = put_attr(&s->out, "from", v->local);
        }
        if (rc == 0) {
            rc = put_attr(&s->out, "to", v->remote);
        }
        if (rc == 0) {
            rc = put_attr(&s->out, "id", v->id);
        }
        if (rc == 0) {
            rc = buf_append_str(&s->out, ">");
        }
        if (rc == 0) {
            rc = xml_escape(&s->out, v->key, strlen(v->key), false);
        }
        if (rc == 0) {
            rc = buf_append_str(&s->out, "</db:verify>");
        }
        if (rc != 0) {
            buf_truncate(&s->out, mark);
            put(s, rc);
            return;
        }
        v->sent = true;
    }
}

/* Sends <db:result> for every pair that has not had one yet. */
static void out_send_results(struct s2s_stream *s)
{
    for (size_t i = 0; i < s->npairs; i++) {
        struct s2s_pair *p = &s->pairs[i];
        if (p->state != PAIR_NEW) {
            continue;
        }
        char key[DIALBACK_KEY_LEN + 1];
        int rc = s->secret != NULL
                     ? dialback_key(s->secret, p->remote, p->local, s->id, key)
                     : ERR_CONFIG;
        size_t mark = buf_size(&s->out);
        if (rc == 0) {
            rc = buf_append_str(&s->out, "<db:result");
        }
        if (rc == 0) {
            rc = put_attr(&s->out, "from", p->local);
        }
        if (rc == 0) {
            rc = put_attr(&s->out, "to", p->remote);
        }
        if (rc == 0) {
            rc = buf_printf(&s->out, ">%s</db:result>", key);
        }
        explicit_bzero(key, sizeof(key));
        if (rc != 0) {
            buf_truncate(&s->out, mark);
            s2s_fail(s, rc, "internal-server-error",
                     "cannot compute a dialback key");
            return;
        }
        p->state = PAIR_PENDING;
    }
}

static void out_start_dialback(struct s2s_stream *s)
{
    struct policy_decision d;
    if (!authorize(s, s->remote, POLICY_AUTH_DIALBACK, &d)) {
        auth_failed(s, s->local, s->remote,
                    d.reason != NULL ? d.reason : "dialback not allowed");
        s2s_fail(s, ERR_AUTH, d.condition, d.reason);
        return;
    }
    s->auth = OUT_AUTH_DIALBACK;
    if (!any_pair_valid(s)) {
        s->state = S2S_AUTH;
    }
    out_send_results(s);
    out_flush_verifies(s);
}

/* No usable method: the pair fails and the stream ends. */
static void out_no_method(struct s2s_stream *s, const char *why)
{
    auth_failed(s, s->local, s->remote, why);
    s2s_fail(s, ERR_AUTH, "unsupported-feature", why);
}

static bool features_offer_external(const struct xml_node *features)
{
    const struct xml_node *m = xml_child(features, NS_SASL, "mechanisms");
    if (m == NULL) {
        return false;
    }
    for (const struct xml_node *c = xml_first_element(m); c != NULL;
         c = xml_next_element(c)) {
        if (strcmp(c->name, "mechanism") != 0) {
            continue;
        }
        char *t = xml_text(c);
        bool ext = t != NULL && strcmp(t, "EXTERNAL") == 0;
        free(t);
        if (ext) {
            return true;
        }
    }
    return false;
}

static void out_try_auth(struct s2s_stream *s, bool external)
{
    struct policy_decision d;
    if (external && s->tls_active && s->cfg.cert_usable && !s->sasl_failed &&
        authorize(s, s->remote, POLICY_AUTH_SASL_EXTERNAL, &d)) {
        size_t mark = buf_size(&s->out);
        int rc = buf_append_str(&s->out, "<auth xmlns='" NS_SASL
                                         "' mechanism='EXTERNAL'>");
        /* XEP-0178: the authzid is our domain; Prosody 0.12 refuses an
         * empty element and accepts base64(domain), as does ejabberd. */
        if (rc == 0) {
            rc = b64_encode_str(s->local, &s->out);
        }
        if (rc == 0) {
            rc = buf_append_str(&s->out, "</auth>");
        }
        if (rc != 0) {
            buf_truncate(&s->out, mark);
            put(s, rc);
            return;
        }
        s->auth = OUT_AUTH_SASL;
        s->state = S2S_AUTH;
        return;
    }
    if (s->peer_offers_dialback) {
        out_start_dialback(s);
        return;
    }
    out_no_method(s, "no usable authentication method offered");
}

static void out_on_features(struct s2s_stream *s, const struct xml_node *f)
{
    if (s->auth == OUT_AUTH_RESTART) {
        struct s2s_pair *p = pair_find(s, s->local, s->remote);
        s->auth = OUT_AUTH_SASL_OK;
        s->peer_offers_dialback =
            s->peer_offers_dialback ||
            xml_child(f, NS_DB_FEATURE, "dialback") != NULL;
        if (p != NULL) {
            pair_authenticated(s, p, POLICY_AUTH_SASL_EXTERNAL);
        }
        if (out_dialback_open(s)) {
            out_send_results(s);
        }
        out_flush_verifies(s);
        return;
    }
    if (s->auth != OUT_AUTH_NONE || (s->starttls_sent && !s->tls_active)) {
        s2s_fail(s, ERR_INVAL, "undefined-condition",
                 "unexpected stream features");
        return;
    }
    if (xml_child(f, NS_TLS, "starttls") != NULL && !s->tls_active) {
        if (put(s, buf_append_str(&s->out, "<starttls xmlns='" NS_TLS "'/>"))) {
            s->starttls_sent = true;
        }
        return;
    }
    if (!s->tls_active && s->cfg.tls_required) {
        auth_failed(s, s->local, s->remote, "peer does not offer TLS");
        s2s_fail(s, ERR_AUTH, "policy-violation",
                 "encrypted server-to-server communication is required "
                 "but STARTTLS was not offered");
        return;
    }
    s->peer_offers_dialback =
        xml_child(f, NS_DB_FEATURE, "dialback") != NULL || s->peer_db_ns;
    out_try_auth(s, features_offer_external(f));
}

static void out_on_dialback_result(struct s2s_stream *s,
                                   const struct xml_node *el)
{
    const char *type = xml_attr(el, "type");
    char *from = domain_norm(xml_attr(el, "from"));
    char *to = domain_norm(xml_attr(el, "to"));
    struct s2s_pair *p =
        from != NULL && to != NULL ? pair_find(s, to, from) : NULL;
    if (type == NULL || p == NULL || p->state != PAIR_PENDING) {
        free(from);
        free(to);
        s2s_fail(s, ERR_INVAL, "invalid-id",
                 "dialback result for no pending request");
        return;
    }
    free(from);
    free(to);
    if (strcmp(type, "valid") == 0) {
        pair_authenticated(s, p, POLICY_AUTH_DIALBACK);
        out_flush_verifies(s);
        return;
    }
    char reason[128];
    if (strcmp(type, "error") == 0) {
        const char *cond = db_error_condition(el);
        char esc[4 * S2S_LOG_PEER + 8];
        snprintf(
            reason, sizeof(reason), "dialback error: %s",
            log_escape(cond, strlen(cond), S2S_LOG_PEER, esc, sizeof(esc)));
    } else {
        snprintf(reason, sizeof(reason), "dialback key rejected");
    }
    char local[S2S_DOMAIN_MAX];
    char remote[S2S_DOMAIN_MAX];
    snprintf(local, sizeof(local), "%s", p->local);
    snprintf(remote, sizeof(remote), "%s", p->remote);
    pair_remove(s, p);
    auth_failed(s, local, remote, reason);
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return;
    }
    if (s->npairs == 0) {
        /* Nothing left to carry: end cleanly (the peer did nothing
         * wrong by refusing us). */
        write_close(s, NULL, NULL);
        report_close(s, ERR_AUTH, NULL, reason, false);
        xmlparse_stop(s->parser);
    }
}

static void out_on_verify_answer(struct s2s_stream *s,
                                 const struct xml_node *el)
{
    const char *type = xml_attr(el, "type");
    const char *id = xml_attr(el, "id");
    char *from = domain_norm(xml_attr(el, "from"));
    char *to = domain_norm(xml_attr(el, "to"));
    size_t i = 0;
    for (; type != NULL && id != NULL && from != NULL && to != NULL &&
           i < s->nverifies;
         i++) {
        const struct s2s_verify *v = &s->verifies[i];
        if (v->sent && strcmp(v->local, to) == 0 &&
            strcmp(v->remote, from) == 0 && strcmp(v->id, id) == 0) {
            break;
        }
    }
    free(from);
    free(to);
    if (type == NULL || i >= s->nverifies) {
        /* An answer to nothing we asked: harmless, but say so. */
        log_conn(LOG_LEVEL_WARN, s->who,
                 "ignoring db:verify answer that matches no request");
        return;
    }
    struct s2s_verify v = s->verifies[i];
    memmove(&s->verifies[i], &s->verifies[i + 1],
            (s->nverifies - i - 1) * sizeof(v));
    s->nverifies--;
    bool valid = strcmp(type, "valid") == 0;
    if (s->cb.verify_result != NULL) {
        s->cb.verify_result(s->ud, v.local, v.remote, v.id, valid);
    }
    verify_free(&v);
}

static void out_on_element(struct s2s_stream *s, struct xml_node *el)
{
    if (el_is(el, XML_NS_STREAM, "features")) {
        out_on_features(s, el);
    } else if (el_is(el, NS_TLS, "proceed") && s->starttls_sent &&
               !s->tls_active) {
        s->tls_pending = true;
        xmlparse_stop(s->parser);
    } else if (el_is(el, NS_TLS, "failure") && s->starttls_sent) {
        auth_failed(s, s->local, s->remote, "STARTTLS refused");
        write_close(s, NULL, NULL);
        report_close(s, ERR_AUTH, NULL, "the peer refused STARTTLS", true);
        xmlparse_stop(s->parser);
    } else if (el_is(el, NS_SASL, "success") && s->auth == OUT_AUTH_SASL) {
        s->auth = OUT_AUTH_RESTART;
        s->restart_pending = true;
        xmlparse_stop(s->parser);
    } else if (el_is(el, NS_SASL, "failure") && s->auth == OUT_AUTH_SASL) {
        const struct xml_node *c = xml_first_element(el);
        if (log_enabled(LOG_LEVEL_INFO)) {
            const char *cond = c != NULL ? c->name : "no condition";
            char esc[4 * S2S_LOG_PEER + 8];
            log_conn(
                LOG_LEVEL_INFO, s->who, "SASL EXTERNAL failed (%s)",
                log_escape(cond, strlen(cond), S2S_LOG_PEER, esc, sizeof(esc)));
        }
        s->sasl_failed = true;
        s->auth = OUT_AUTH_NONE;
        if (s->peer_offers_dialback) {
            out_start_dialback(s);
        } else {
            auth_failed(s, s->local, s->remote,
                        "SASL EXTERNAL failed and dialback is not offered");
            write_close(s, NULL, NULL);
            report_close(s, ERR_AUTH, NULL, "SASL EXTERNAL failed", false);
            xmlparse_stop(s->parser);
        }
    } else if (el_is(el, NS_DIALBACK, "result") && out_dialback_open(s)) {
        out_on_dialback_result(s, el);
    } else if (el_is(el, NS_DIALBACK, "verify") && xml_attr(el, "type")) {
        out_on_verify_answer(s, el);
    } else if (stanza_name_ok(el)) {
        s2s_fail(s, ERR_AUTH, "not-authorized",
                 "stanzas are not accepted on an outgoing stream");
    } else {
        s2s_fail(s, ERR_INVAL, "unsupported-stanza-type",
                 "unexpected element on an outgoing stream");
    }
}

/* ---- S2S_IN ----------------------------------------------------------- */

/* Is the stream encrypted if it has to be? Fails it otherwise. */
static bool in_tls_ok(struct s2s_stream *s)
{
    if (!s->tls_active && s->cfg.tls_required) {
        s2s_fail(s, ERR_AUTH, "policy-violation",
                 "TLS is required before authentication");
        return false;
    }
    return true;
}

/* A XEP-0220 dialback error (name is "result" or "verify"), or, for a
 * peer that did not declare the dialback namespace on its header (so
 * cannot be assumed to parse typed errors), the stream error. */
static void in_db_error(struct s2s_stream *s,
                        const char *name,
                        const char *local,
                        const char *remote,
                        const char *id,
                        const char *condition,
                        const char *stream_condition,
                        const char *text)
{
    if (!s->peer_db_ns) {
        s2s_fail(s, ERR_AUTH, stream_condition, text);
        return;
    }
    size_t mark = buf_size(&s->out);
    int rc = buf_printf(&s->out, "<db:%s", name);
    if (rc == 0) {
        rc = put_attr(&s->out, "from", local);
    }
    if (rc == 0) {
        rc = put_attr(&s->out, "to", remote);
    }
    if (rc == 0 && id != NULL) {
        rc = put_attr(&s->out, "id", id);
    }
    if (rc == 0) {
        rc = buf_printf(
            &s->out,
            " type='error'><error type='%s'><%s xmlns='" XML_NS_STANZAS
            "'/></error></db:%s>",
            stanza_error_type_for(condition), condition, name);
    }
    if (rc != 0) {
        buf_truncate(&s->out, mark);
        put(s, rc);
    }
}

static void in_sasl_failure(struct s2s_stream *s, const char *condition)
{
    if (log_enabled(LOG_LEVEL_INFO)) {
        log_conn(LOG_LEVEL_INFO, s->who, "SASL EXTERNAL refused: %s",
                 condition);
    }
    if (!put(s,
             buf_printf(&s->out, "<failure xmlns='" NS_SASL "'><%s/></failure>",
                        condition))) {
        return;
    }
    if (++s->sasl_tries >= S2S_AUTH_TRIES) {
        s2s_fail(s, ERR_AUTH, "policy-violation",
                 "too many authentication attempts");
    }
}

static void in_on_auth(struct s2s_stream *s, const struct xml_node *el)
{
    if (s->sasl_done) {
        s2s_fail(s, ERR_AUTH, "policy-violation", "already authenticated");
        return;
    }
    const char *mech = xml_attr(el, "mechanism");
    if (mech == NULL || strcmp(mech, "EXTERNAL") != 0) {
        in_sasl_failure(s, "invalid-mechanism");
        return;
    }
    if (!s->tls_active) {
        in_sasl_failure(s, "encryption-required");
        return;
    }
    const char *text = child_text(el);
    if (text == NULL) {
        in_sasl_failure(s, "malformed-request");
        return;
    }
    if (text[0] != '\0' && strcmp(text, "=") != 0) {
        /* XEP-0178: a given authzid must be the header's 'from'. */
        char *authzid = NULL;
        if (b64_decode_str(text, &authzid) != 0) {
            in_sasl_failure(s, "incorrect-encoding");
            return;
        }
        char *norm = domain_norm(authzid);
        free(authzid);
        bool same = str_eq(norm, s->header_from);
        free(norm);
        if (!same) {
            in_sasl_failure(s, "invalid-authzid");
            return;
        }
    }
    struct policy_decision d;
    if (!s->sasl_offered || s->header_from == NULL ||
        !cert_valid_for(s, s->header_from) ||
        !authorize(s, s->header_from, POLICY_AUTH_SASL_EXTERNAL, &d)) {
        in_sasl_failure(s, "not-authorized");
        return;
    }
    if (!put(s, buf_append_str(&s->out, "<success xmlns='" NS_SASL "'/>"))) {
        return;
    }
    struct s2s_pair *p = pair_find(s, s->header_to, s->header_from);
    if (p == NULL) {
        p = pair_add(s, s->header_to, s->header_from, PAIR_PENDING);
    }
    if (p == NULL) {
        s2s_fail(s, ERR_NOMEM, "resource-constraint", NULL);
        return;
    }
    s->sasl_done = true;
    s->restart_pending = true;
    xmlparse_stop(s->parser);
    pair_authenticated(s, p, POLICY_AUTH_SASL_EXTERNAL);
}

static void in_on_db_result(struct s2s_stream *s, const struct xml_node *el)
{
    if (!in_tls_ok(s)) {
        return;
    }
    if (xml_attr(el, "type") != NULL) {
        log_conn(LOG_LEVEL_DEBUG, s->who,
                 "ignoring a typed db:result on an incoming stream");
        return;
    }
    char *remote = domain_norm(xml_attr(el, "from"));
    char *local = domain_norm(xml_attr(el, "to"));
    const char *key = child_text(el);
    struct policy_decision d;
    if (remote == NULL || local == NULL) {
        s2s_fail(s, ERR_INVAL, "improper-addressing",
                 "db:result without valid 'from' and 'to'");
        goto out;
    }
    if (key == NULL || key[0] == '\0') {
        s2s_fail(s, ERR_INVAL, "bad-format", "db:result without a key");
        goto out;
    }
    if (s->cb.serves == NULL || !s->cb.serves(s->ud, local)) {
        in_db_error(s, "result", local, remote, NULL, "item-not-found",
                    "host-unknown", "this server does not serve that domain");
        goto out;
    }
    if (!authorize(s, remote, POLICY_AUTH_DIALBACK, &d)) {
        in_db_error(s, "result", local, remote, NULL, d.condition, d.condition,
                    d.reason);
        if (s->state != S2S_CLOSING && s->state != S2S_CLOSED) {
            auth_failed(s, local, remote,
                        d.reason != NULL ? d.reason : "denied by policy");
        }
        goto out;
    }
    struct s2s_pair *p = pair_find(s, local, remote);
    if (p != NULL && p->state == PAIR_VALID) {
        /* Already authenticated here: confirm without asking again. */
        if (put(s, buf_append_str(&s->out, "<db:result")) &&
            put(s, put_attr(&s->out, "from", local)) &&
            put(s, put_attr(&s->out, "to", remote))) {
            put(s, buf_append_str(&s->out, " type='valid'/>"));
        }
        goto out;
    }
    if (p == NULL && pair_add(s, local, remote, PAIR_PENDING) == NULL) {
        s2s_fail(s, ERR_TOO_BIG, "policy-violation",
                 "too many domain pairs on one stream");
        goto out;
    }
    if (log_enabled(LOG_LEVEL_DEBUG)) {
        log_conn(LOG_LEVEL_DEBUG, s->who, "dialback request %s->%s", remote,
                 local);
    }
    if (s->cb.verify_needed != NULL) {
        /* The owner may answer at once; our strings stay valid. */
        s->cb.verify_needed(s->ud, local, remote, s->id, key);
    }
out:
    free(remote);
    free(local);
}

static void in_on_db_verify(struct s2s_stream *s, const struct xml_node *el)
{
    if (!in_tls_ok(s)) {
        return;
    }
    if (xml_attr(el, "type") != NULL) {
        log_conn(LOG_LEVEL_DEBUG, s->who,
                 "ignoring a typed db:verify on an incoming stream");
        return;
    }
    char *receiving = domain_norm(xml_attr(el, "from"));
    char *originating = domain_norm(xml_attr(el, "to"));
    const char *id = xml_attr(el, "id");
    const char *key = child_text(el);
    char expected[DIALBACK_KEY_LEN + 1];
    expected[0] = '\0';
    if (receiving == NULL || originating == NULL || id == NULL ||
        id[0] == '\0') {
        s2s_fail(s, ERR_INVAL, "improper-addressing",
                 "db:verify without valid 'from', 'to' and 'id'");
        goto out;
    }
    if (s->cb.serves == NULL || !s->cb.serves(s->ud, originating)) {
        in_db_error(s, "verify", originating, receiving, id, "item-not-found",
                    "host-unknown", "this server does not serve that domain");
        goto out;
    }
    /* both secrets are always tried, so the answer takes as long
     * whichever one (if any) the key was made with */
    bool valid = false;
    if (s->secret != NULL && key != NULL &&
        dialback_key(s->secret, receiving, originating, id, expected) == 0) {
        valid = dialback_key_equal(expected, key);
    }
    if (s->previous_secret != NULL && key != NULL &&
        dialback_key(s->previous_secret, receiving, originating, id,
                     expected) == 0) {
        valid = dialback_key_equal(expected, key) | valid;
    }
    if (log_enabled(LOG_LEVEL_INFO)) {
        log_conn(LOG_LEVEL_INFO, s->who,
                 "asked to verify a key of %s for %s: %s", originating,
                 receiving, valid ? "valid" : "invalid");
    }
    if (put(s, buf_append_str(&s->out, "<db:verify")) &&
        put(s, put_attr(&s->out, "from", originating)) &&
        put(s, put_attr(&s->out, "to", receiving)) &&
        put(s, put_attr(&s->out, "id", id))) {
        put(s,
            buf_printf(&s->out, " type='%s'/>", valid ? "valid" : "invalid"));
    }
out:
    explicit_bzero(expected, sizeof(expected));
    free(receiving);
    free(originating);
}

/* Anti-spoofing at the stream boundary; consumes st. */
static void in_on_stanza(struct s2s_stream *s, struct xml_node *st)
{
    char from[S2S_DOMAIN_MAX];
    char to[S2S_DOMAIN_MAX];
    const char *jfrom = xml_attr(st, "from");
    const char *jto = xml_attr(st, "to");
    if (!any_pair_valid(s)) {
        s2s_fail(s, ERR_AUTH, "not-authorized", "stanza before authentication");
    } else if (jid_domain_canon(jfrom, from, sizeof(from)) != 0 ||
               jid_domain_canon(jto, to, sizeof(to)) != 0) {
        s2s_fail(s, ERR_INVAL, "improper-addressing",
                 "stanza without valid 'from' and 'to'");
    } else if (!remote_valid(s, from)) {
        if (log_enabled(LOG_LEVEL_WARN)) {
            char esc[4 * S2S_LOG_PEER + 8];
            log_conn(
                LOG_LEVEL_WARN, s->who, "stanza from unauthenticated domain %s",
                log_escape(from, strlen(from), S2S_LOG_PEER, esc, sizeof(esc)));
        }
        s2s_fail(s, ERR_AUTH, "invalid-from",
                 "the sending domain is not authenticated on this stream");
    } else if (!pair_valid(s, to, from)) {
        s2s_fail(s, ERR_NOT_FOUND, "host-unknown",
                 "the recipient domain is not authenticated on this stream");
    } else if (s->cb.stanza != NULL) {
        s->cb.stanza(s->ud, st); /* transferred */
        return;
    }
    xml_unref(st);
}

static void in_on_starttls(struct s2s_stream *s)
{
    if (s->tls_active || !s->cfg.tls_offer) {
        /* RFC 6120 5.4.2.2: <failure/>, then the stream ends. */
        if (put(s, buf_append_str(&s->out, "<failure xmlns='" NS_TLS "'/>"))) {
            s2s_fail(s, ERR_INVAL, NULL, "STARTTLS not available");
        }
        return;
    }
    if (put(s, buf_append_str(&s->out, "<proceed xmlns='" NS_TLS "'/>"))) {
        s->tls_pending = true;
        xmlparse_stop(s->parser);
    }
}

/* Consumes el. */
static void in_on_element(struct s2s_stream *s, struct xml_node *el)
{
    if (stanza_name_ok(el)) {
        in_on_stanza(s, el); /* transferred */
        return;
    }
    if (el_is(el, NS_TLS, "starttls")) {
        in_on_starttls(s);
    } else if (el_is(el, NS_SASL, "auth")) {
        in_on_auth(s, el);
    } else if (el_is(el, NS_DIALBACK, "result")) {
        in_on_db_result(s, el);
    } else if (el_is(el, NS_DIALBACK, "verify")) {
        in_on_db_verify(s, el);
    } else if (!any_pair_valid(s)) {
        s2s_fail(s, ERR_AUTH, "not-authorized",
                 "unexpected element before authentication");
    } else {
        s2s_fail(s, ERR_INVAL, "unsupported-stanza-type",
                 "only message, presence and iq are accepted");
    }
    xml_unref(el);
}

/* ---- dispatch --------------------------------------------------------- */

static void s2s_on_stanza(void *ud, struct xml_node *st)
{
    struct s2s_stream *s = ud;
    if (el_is(st, XML_NS_STREAM, "error")) {
        const char *condition;
        const char *text;
        stream_error_parts(st, &condition, &text);
        write_close(s, NULL, NULL);
        report_close(s, ERR_STREAM_ERROR, condition, text, true);
        s->state = S2S_CLOSED;
        xmlparse_stop(s->parser);
        xml_unref(st);
        return;
    }
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED ||
        s->state == S2S_TLS || s->fail != 0) {
        /* Nowhere to go: the stream is ending. */
        xml_unref(st);
        return;
    }
    if (s->cfg.role == S2S_IN) {
        in_on_element(s, st); /* transferred */
        return;
    }
    out_on_element(s, st);
    xml_unref(st);
}

/* A new stream on the same connection (after TLS or SASL). */
static int s2s_restart(struct s2s_stream *s)
{
    int rc = xmlparse_reset(s->parser);
    if (rc != 0) {
        return rc;
    }
    s->peer_header = false;
    s->header_sent = false;
    if (s->cfg.role == S2S_OUT) {
        return write_header(s);
    }
    return 0;
}

int s2s_stream_feed(struct s2s_stream *s, const char *data, size_t len)
{
    if (s->state == S2S_CLOSED) {
        return ERR_CLOSED;
    }
    if (s->state == S2S_TLS) {
        /* Plaintext after <proceed/> is never read (STARTTLS command
         * injection, RFC 6120 5.3.3 / CVE-2011-0411 class). */
        return 0;
    }
    size_t off = 0;
    s->in_feed = true;
    int result = 0;
    for (;;) {
        size_t used = 0;
        int rc = xmlparse_feed(s->parser, data + off, len - off, &used);
        off += used;
        if (s->fail != 0) {
            s->state = S2S_CLOSED;
            result = s->fail;
            break;
        }
        if (rc == ERR_AGAIN) {
            if (s->close_reported) {
                s->state = S2S_CLOSED;
                result = s->close_err;
                break;
            }
            if (s->tls_pending) {
                s->tls_pending = false;
                s->state = S2S_TLS;
                if (off < len) {
                    log_conn(LOG_LEVEL_WARN, s->who,
                             "discarding %zu plaintext bytes after STARTTLS",
                             len - off);
                }
                s->in_feed = false;
                if (s->cb.want_tls != NULL) {
                    s->cb.want_tls(s->ud);
                }
                return 0;
            }
            if (s->restart_pending) {
                s->restart_pending = false;
                rc = s2s_restart(s);
                if (rc != 0) {
                    s2s_fail(s, rc, "internal-server-error",
                             "cannot restart the stream");
                    s->state = S2S_CLOSED;
                    result = rc;
                    break;
                }
                continue; /* the rest belongs to the new stream */
            }
            break;
        }
        if (rc != 0) {
            const char *detail = xmlparse_error_text(s->parser);
            write_close(s, err_stream_condition(rc), detail);
            report_close(s, rc, err_stream_condition(rc), detail, false);
            s->state = S2S_CLOSED;
            result = rc;
        }
        break;
    }
    s->in_feed = false;
    return result;
}

/* ---- the owner's calls ------------------------------------------------ */

int s2s_stream_start(struct s2s_stream *s)
{
    if (s->cfg.role != S2S_OUT || s->header_sent) {
        return ERR_INVAL;
    }
    return write_header(s);
}

void s2s_stream_tls_done(struct s2s_stream *s, bool ok)
{
    if (s->state != S2S_TLS) {
        return;
    }
    if (!ok) {
        /* Nothing can be said on a socket whose handshake failed. */
        s->state = S2S_CLOSED;
        report_close(s, ERR_AUTH, NULL, "TLS handshake failed", false);
        return;
    }
    s->tls_active = true;
    s->state = S2S_OPENING;
    int rc = s2s_restart(s);
    if (rc != 0) {
        s2s_fail(s, rc, "internal-server-error", "cannot restart the stream");
    }
}

void s2s_stream_dialback_result(struct s2s_stream *s,
                                const char *local,
                                const char *remote,
                                bool valid)
{
    if (s->cfg.role != S2S_IN || s->state == S2S_CLOSING ||
        s->state == S2S_CLOSED) {
        return;
    }
    struct s2s_pair *p = pair_find(s, local, remote);
    if (p == NULL || p->state != PAIR_PENDING) {
        log_conn(LOG_LEVEL_DEBUG, s->who,
                 "dialback result for %s->%s, which is not pending", remote,
                 local);
        return;
    }
    size_t mark = buf_size(&s->out);
    int rc = buf_append_str(&s->out, "<db:result");
    if (rc == 0) {
        rc = put_attr(&s->out, "from", local);
    }
    if (rc == 0) {
        rc = put_attr(&s->out, "to", remote);
    }
    if (rc == 0) {
        rc = buf_printf(&s->out, " type='%s'/>", valid ? "valid" : "invalid");
    }
    if (rc != 0) {
        buf_truncate(&s->out, mark);
        put(s, rc);
        return;
    }
    if (valid) {
        pair_authenticated(s, p, POLICY_AUTH_DIALBACK);
        return;
    }
    char l[S2S_DOMAIN_MAX];
    char r[S2S_DOMAIN_MAX];
    snprintf(l, sizeof(l), "%s", p->local);
    snprintf(r, sizeof(r), "%s", p->remote);
    pair_remove(s, p);
    auth_failed(s, l, r, "the authoritative server did not confirm the key");
}

int s2s_stream_set_secrets(struct s2s_stream *s,
                           const char *secret,
                           const char *previous)
{
    char *cur = secret != NULL ? strdup(secret) : NULL;
    char *prev = previous != NULL ? strdup(previous) : NULL;
    if ((secret != NULL && cur == NULL) || (previous != NULL && prev == NULL)) {
        secret_free(cur);
        secret_free(prev);
        return ERR_NOMEM;
    }
    secret_free(s->secret);
    secret_free(s->previous_secret);
    s->secret = cur;
    s->previous_secret = prev;
    return 0;
}

int s2s_stream_send_verify(struct s2s_stream *s,
                           const char *local,
                           const char *remote,
                           const char *id,
                           const char *key)
{
    if (s->cfg.role != S2S_OUT) {
        return ERR_INVAL;
    }
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return ERR_CLOSED;
    }
    if (s->nverifies == S2S_VERIFIES_MAX) {
        return ERR_TOO_BIG;
    }
    struct s2s_verify *a =
        realloc(s->verifies, (s->nverifies + 1) * sizeof(*a));
    if (a == NULL) {
        return ERR_NOMEM;
    }
    s->verifies = a;
    struct s2s_verify *v = &s->verifies[s->nverifies];
    memset(v, 0, sizeof(*v));
    v->local = domain_norm(local);
    v->remote = domain_norm(remote);
    v->id = strdup(id);
    v->key = strdup(key);
    if (v->local == NULL || v->remote == NULL || v->id == NULL ||
        v->key == NULL) {
        int rc = v->local == NULL || v->remote == NULL ? ERR_INVAL : ERR_NOMEM;
        verify_free(v);
        return rc;
    }
    s->nverifies++;
    /* Sent now if dialback elements may flow, else once they may. */
    if (out_verify_open(s)) {
        out_flush_verifies(s);
        if (s->fail != 0) {
            return s->fail;
        }
    }
    return 0;
}

int s2s_stream_add_pair(struct s2s_stream *s,
                        const char *local,
                        const char *remote)
{
    if (s->cfg.role != S2S_OUT) {
        return ERR_INVAL;
    }
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return ERR_CLOSED;
    }
    int rc = 0;
    char *l = domain_norm(local);
    char *r = domain_norm(remote);
    if (l == NULL || r == NULL) {
        rc = ERR_INVAL;
        goto out;
    }
    if (pair_find(s, l, r) != NULL) {
        goto out; /* already pending or authenticated */
    }
    if (s->auth == OUT_AUTH_SASL_OK && !s->peer_offers_dialback) {
        rc = ERR_AUTH; /* the peer cannot take more pairs */
        goto out;
    }
    if (pair_add(s, l, r, PAIR_NEW) == NULL) {
        rc = s->npairs == S2S_PAIRS_MAX ? ERR_TOO_BIG : ERR_NOMEM;
        goto out;
    }
    if (out_dialback_open(s)) {
        out_send_results(s);
        rc = s->fail;
    }
out:
    free(l);
    free(r);
    return rc;
}

bool s2s_stream_pair_ok(const struct s2s_stream *s,
                        const char *local,
                        const char *remote)
{
    return s->state != S2S_CLOSING && s->state != S2S_CLOSED &&
           pair_valid(s, local, remote);
}

int s2s_stream_send(struct s2s_stream *s, const struct xml_node *st)
{
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return ERR_CLOSED;
    }
    char from[S2S_DOMAIN_MAX];
    char to[S2S_DOMAIN_MAX];
    /* Stanzas flow only from the initiating side (no XEP-0288). */
    if (s->cfg.role != S2S_OUT || st->kind != XML_NODE_ELEMENT ||
        jid_domain_canon(xml_attr(st, "from"), from, sizeof(from)) != 0 ||
        jid_domain_canon(xml_attr(st, "to"), to, sizeof(to)) != 0 ||
        !pair_valid(s, from, to)) {
        return ERR_AUTH;
    }
    size_t mark = buf_size(&s->out);
    /* A stanza's own namespace stands for the stream's content namespace
     * (jabber:client, jabber:server and jabber:component:accept carry
     * the same stanzas), so no xmlns is written on the top element. */
    const char *inherited = st->ns;
    if (strcmp(st->ns, XML_NS_CLIENT) != 0 &&
        strcmp(st->ns, XML_NS_SERVER) != 0 &&
        strcmp(st->ns, XML_NS_COMPONENT) != 0) {
        inherited = XML_NS_SERVER;
    }
    int rc = xml_serialize(st, inherited, &s->out);
    if (rc != 0) {
        buf_truncate(&s->out, mark);
    }
    return rc;
}

int s2s_stream_keepalive(struct s2s_stream *s)
{
    if (s->state == S2S_CLOSING || s->state == S2S_CLOSED) {
        return ERR_CLOSED;
    }
    if (s->state != S2S_READY) {
        return ERR_AGAIN; /* a space inside a negotiation step could land
                           * in a TLS handshake */
    }
    return buf_append_str(&s->out, " ");
}

void s2s_stream_close(struct s2s_stream *s,
                      const char *condition,
                      const char *text)
{
    write_close(s, condition, text);
    report_close(s, condition != NULL ? ERR_STREAM_ERROR : 0, condition, text,
                 false);
}

struct buf *s2s_stream_output(struct s2s_stream *s)
{
    return &s->out;
}

enum s2s_state s2s_stream_state(const struct s2s_stream *s)
{
    return s->state;
}

const char *s2s_stream_id(const struct s2s_stream *s)
{
    return s->id;
}

const char *s2s_stream_header_from(const struct s2s_stream *s)
{
    return s->header_from;
}

const char *s2s_stream_header_to(const struct s2s_stream *s)
{
    return s->header_to;
}

const char *s2s_state_name(enum s2s_state state)
{
    switch (state) {
    case S2S_OPENING:
        return "opening";
    case S2S_TLS:
        return "tls";
    case S2S_AUTH:
        return "auth";
    case S2S_READY:
        return "ready";
    case S2S_CLOSING:
        return "closing";
    case S2S_CLOSED:
        return "closed";
    }
    return "unknown";
}
