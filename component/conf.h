/*
 * conf.h: fedgate's configuration.
 *
 * The file is in libconfig syntax (see fedgate.conf(5)). One table of keys
 * with type, default and bounds (in conf.c) drives parsing, validation,
 * the documentation (conf_print_doc) and the --print-config dump
 * (conf_print). Unknown keys, wrong types and out-of-range values are
 * errors that name file and line. Defaults are the secure choice (TLS
 * required, certificates verified).
 *
 * The module is called "conf", not "config", because autoconf's config.h
 * is included first by every .c file and a component/config.h beside it
 * would shadow it.
 */
#ifndef FEDGATE_CONF_H
#define FEDGATE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "log.h"

/* How a peer may authenticate its s2s streams. */
enum conf_auth {
    CONF_AUTH_ANY = 0,     /* certificate (SASL EXTERNAL), else dialback */
    CONF_AUTH_CERTIFICATE, /* SASL EXTERNAL only */
    CONF_AUTH_DIALBACK,    /* dialback only */
};

/* A peer's service domain (e.g. conference.b.test) that local users reach. */
struct conf_service {
    char *domain; /* normalised */
    char *secret; /* XEP-0114 secret for its upstream stream, or NULL:
                   * the peer's secret applies (conf_secret_for) */
    int line;     /* where the service was defined */
};

struct conf_peer {
    char *domain; /* normalised */
    char *secret; /* XEP-0114 secret for its upstream stream, or NULL:
                   * upstream.secret applies (conf_secret_for) */
    struct conf_service *services;
    size_t nservices;
    bool trusted;        /* default true: listed peers are trusted */
    bool tls_required;   /* default true */
    enum conf_auth auth; /* default any */
    char *trust_anchor;  /* CA file for this peer only, or NULL */
    char *host;          /* static override of DNS, or NULL */
    unsigned port;       /* with host; 0 = not set (5269) */
    size_t stanza_max;   /* 0 = not set: limits.stanza_max applies */
    int line;            /* where the peer was defined (0: not in the
                          * file) */
    bool runtime;        /* defined or changed at run time (state_db) */
};

/* A local domain that presents a certificate of its own (tls.domains). */
struct conf_tls_domain {
    char *domain;      /* normalised; a served domain or service_jid */
    char *certificate; /* PEM chain */
    char *key;         /* PEM key */
    int line;          /* where the entry was defined */
};

struct conf {
    char *path; /* the file read */

    /* served domains and fedgate's own JID */
    char **domains; /* normalised, at least one */
    size_t ndomains;
    char *service_jid; /* normalised, e.g. fedgate.a.test */
    char **admins;     /* bare JIDs allowed to run ad-hoc commands,
                        * domain normalised; may be empty */
    size_t nadmins;

    /* home server link (XEP-0114) */
    char *upstream_host;    /* IP address, default "127.0.0.1" */
    unsigned upstream_port; /* default 5347 */
    char *upstream_secret;  /* default secret for every stream, or NULL */
    char *service_secret;   /* secret for the service_jid stream, or NULL:
                             * upstream_secret applies */
    unsigned upstream_connect_timeout;   /* seconds, default 10 */
    unsigned upstream_handshake_timeout; /* seconds, default 10 */
    unsigned backoff_initial_ms;         /* default 500 */
    unsigned backoff_max_ms;             /* default 60000 */
    char *peer_hook;                     /* command run after a runtime peer
                                          * change, or NULL */
    unsigned peer_hook_timeout;          /* seconds, default 60 */

    /* peers */
    struct conf_peer *peers;
    size_t npeers;

    /* s2s listener */
    char **s2s_listen; /* "ip:port" or "[ipv6]:port", default
                        * "0.0.0.0:5269" */
    size_t ns2s_listen;
    char **s2s_direct_tls_listen; /* XEP-0368, default none */
    size_t ns2s_direct_tls_listen;
    char *s2s_dialback_secret;        /* XEP-0185 secret, or NULL: generated
                                       * at start (keys then change on restart) */
    unsigned s2s_connect_timeout;     /* seconds, default 10 */
    unsigned s2s_negotiate_timeout;   /* seconds for TLS + auth, default 20 */
    unsigned s2s_max_unauth;          /* inbound not yet authenticated, all
                                       * addresses, default 256 */
    unsigned s2s_max_unauth_per_addr; /* the same per address, default 32 */
    unsigned s2s_idle_timeout;        /* seconds without traffic, default 600 */
    unsigned s2s_keepalive;           /* seconds between keepalives, and
                                       * of peer silence before an XEP-0199
                                       * ping and of waiting for its answer;
                                       * default 60 */

    /* TLS */
    char *tls_cert;    /* PEM chain, or NULL */
    char *tls_key;     /* PEM key, or NULL; set iff tls_cert is */
    char *tls_ca;      /* trust store file, or NULL = system */
    char *tls_ca_path; /* trust store directory, or NULL */
    char *tls_ciphers; /* TLS 1.2 cipher list, or NULL = default */
    struct conf_tls_domain *tls_domains; /* per-domain certificates */
    size_t ntls_domains;                 /* none unless tls_cert is set */

    /* DNS */
    char **dns_forwarders; /* "ip" or "ip@port"; none = /etc/resolv.conf */
    size_t ndns_forwarders;
    char *dns_hosts_file;        /* or NULL */
    char *dns_trust_anchor_file; /* DNSSEC root anchor, or NULL */

    /* limits */
    size_t stanza_max;         /* default 524288 */
    size_t stanza_max_preauth; /* default 65536, <= stanza_max */
    unsigned depth_max;        /* default 64 */
    size_t queue_max_stanzas;  /* per stream, default 1000 */
    size_t queue_max_bytes;    /* per stream, default 4 MiB */
    unsigned queue_timeout;    /* seconds a stanza may wait, default 60 */

    /* logging */
    enum log_level log_level; /* default info */
    bool log_syslog;          /* default false: stderr */

    /* state */
    char *state_db; /* SQLite file, default "/var/lib/fedgate/state.db" */
};

/*
 * Reads and validates path. On success returns 0 and a new config in *out
 * (caller frees with conf_free). On failure returns ERR_CONFIG (or
 * ERR_NOMEM), leaves *out NULL and writes every problem found to err, one
 * line each, as "FILE:LINE: message" ("FILE: message" when no line
 * applies). err may be NULL to discard the messages.
 */
int conf_load(const char *path, struct conf **out, FILE *err);

/* Releases a config, wiping secrets. Accepts NULL. */
void conf_free(struct conf *cfg);

/*
 * Writes the effective configuration (defaults included) in the file's
 * syntax, secrets replaced by "(set)" and keys that are not set as
 * comments. The output loads again into an equal configuration (secrets
 * aside).
 */
void conf_print(const struct conf *cfg, FILE *out);

/*
 * Writes the home-server snippet for this fedgate: kind is "prosody" or
 * "ejabberd". Secrets are written, since the server needs them.
 * 0, or ERR_INVAL for an unknown kind.
 */
int conf_print_server(const struct conf *cfg, const char *kind, FILE *out);

/* Writes s as a string literal of the file's syntax (quoted, escaped). */
void conf_print_string(const char *s, FILE *out);

/* A deep copy of cfg (NULL on ENOMEM). */
struct conf *conf_dup(const struct conf *cfg);

/* Makes dst a deep copy of src. 0 or ERR_NOMEM (dst then empty). */
int conf_peer_copy(struct conf_peer *dst, const struct conf_peer *src);

/* Frees what a peer owns (wiping secrets); the struct itself stays. */
void conf_peer_clear(struct conf_peer *p);

/*
 * Writes one peer's keys in the file's syntax, secrets included (for
 * state_db, never for display). conf_peer_parse reads it back.
 */
void conf_peer_print(const struct conf_peer *p, FILE *out);

/*
 * Parses the keys of one peer group (the text between the braces of a
 * peers entry) with the same checks as the file, plus the checks a peer
 * makes alone (has_cert: whether tls.certificate is set). 0 with *out
 * filled (free with conf_peer_clear; line is 0, runtime false); or
 * ERR_CONFIG / ERR_NOMEM with "LABEL:LINE: message" lines in err and
 * *out empty. Checks against the other peers are the caller's
 * (peers.h).
 */
int conf_peer_parse(const char *text,
                    const char *label,
                    bool has_cert,
                    struct conf_peer *out,
                    FILE *err);

/*
 * The XEP-0114 secret for the upstream stream of domain (normalised):
 * for service_jid upstream.service_secret, else upstream.secret; for a
 * peer its secret, else upstream.secret; for a peer's service its secret,
 * else the peer's, else upstream.secret. NULL for a domain that has no
 * stream (a validated config has a secret for every stream). Borrowed.
 */
const char *conf_secret_for(const struct conf *cfg, const char *domain);

/*
 * Writes the key reference generated from the key table, in groff -man
 * (the KEYS section of fedgate.conf(5) holds exactly this text; a test
 * keeps them equal).
 */
void conf_print_doc(FILE *out);

#endif
