/*
 * xep.h: the handler API for protocol extensions on fedgate's service JID.
 *
 * A handler is one file xep/xepNNNN_<name>.c that exports one descriptor
 * and includes only this header (plus the tree and stanza helpers it
 * re-exports). Descriptors are listed in xep_table.c. The service
 * dispatches an incoming iq to the first handler whose (namespace, element
 * name, iq type) matches its first child; message and presence handlers
 * match on the stanza name.
 */
#ifndef FEDGATE_XEP_H
#define FEDGATE_XEP_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "stanza.h"
#include "xml.h"

/* One configured peer and one of its routes, for administration. Strings
 * are borrowed until the handler returns. */
struct xep_peer_status {
    const char *domain;       /* the configured peer domain */
    const char *local;        /* local domain of the route, or NULL */
    const char *state;        /* route state, or "no route" */
    const char *direction;    /* "none", "outbound", "inbound" or "both" */
    const char *home_link;    /* state of its home-server link */
    const char *auth;         /* configured mechanism(s) */
    const char *route_auth;   /* mechanism the route used, or NULL */
    const char *tls_version;  /* or NULL */
    const char *tls_cipher;   /* or NULL */
    const char *peer_subject; /* certificate subject, or NULL */
    long long peer_not_after; /* certificate expiry (Unix time), or 0 */
    unsigned long stanzas_out;
    unsigned long bytes_out;
    unsigned long stanzas_in;
    unsigned long bytes_in;
    long long connected_since; /* Unix time the route got ready, or 0 */
    unsigned long queued;
    const char *last_error;    /* last failure and its reason, or NULL */
    long long last_failure_at; /* when it happened (Unix time), or 0 */
};

/* One peer's settings, for the edit form (no secrets). Strings are
 * borrowed until the handler returns. */
struct xep_peer_settings {
    const char *domain;
    const char *auth; /* "any", "certificate" or "dialback" */
    bool trusted;
    bool tls_required;
    const char *host;         /* or NULL */
    unsigned port;            /* 0: not set */
    const char *trust_anchor; /* or NULL */
    size_t stanza_max;        /* 0: not set */
    char services[1024];      /* service domains, one per line */
    const char *origin;       /* "config file" or "runtime" */
};

/* One submitted value of a peer form: key is the config file's peer key
 * ("domain", "secret", "auth", "trusted", "tls_required", "services",
 * "host", "port", "trust_anchor", "stanza_max"). */
struct xep_kv {
    const char *key;
    const char *value;
};

/* Finishes a change that ran the home-server hook: rc and msg as the
 * operation would have returned them. Called exactly once. */
typedef void xep_done_fn(void *ud, int rc, const char *msg);

/* A name and a count, for the statistics command. */
struct xep_count {
    const char *name;
    unsigned long count;
};

#define XEP_STATS_MAX 8

struct xep_stats {
    unsigned long uptime_s;
    unsigned long links_up;    /* home-server links ready */
    unsigned long links_total; /* home-server links configured */
    unsigned long routes_total;
    struct xep_count routes_by_state[XEP_STATS_MAX];
    size_t nroutes_by_state;
    unsigned long inbound; /* inbound s2s connections */
    unsigned long stanzas_out;
    unsigned long stanzas_in;
    double rate_out; /* stanzas per second over the last minute (or since
                      * start when shorter) */
    double rate_in;
    unsigned long bounces; /* error replies for undeliverable stanzas */
    unsigned long auth_failures;
    struct xep_count auth_failures_by_reason[XEP_STATS_MAX];
    size_t nauth_failures_by_reason;
};

/*
 * What the administration commands (XEP-0050) may ask of the daemon. Set
 * up by the daemon; every function gets ud. Results are copied out or
 * borrowed only until the handler returns.
 */
struct xep_admin_ops {
    void *ud;
    /* Monotonic clock in milliseconds (session expiry). */
    unsigned long long (*now_ms)(void *ud);
    /* Number of peer entries (one per configured peer and per route). */
    size_t (*peer_count)(void *ud);
    /* Entry i (0 <= i < peer_count). 0 or ERR_NOT_FOUND. */
    int (*peer_status)(void *ud, size_t i, struct xep_peer_status *out);
    void (*stats)(void *ud, struct xep_stats *out);
    /* Sets the log level ("error", "warn", "info", "debug") at once.
     * 0 or ERR_INVAL. */
    int (*set_log_level)(void *ud, const char *level);
    /* The current log level's name. */
    const char *(*log_level)(void *ud);
    /*
     * Reloads the configuration file, as SIGHUP does. 0, with a summary in
     * msg; or ERR_CONFIG with the "file:line: message" lines in msg
     * (cut to msglen), the running configuration staying in force. The
     * new configuration is applied after the handler returns.
     */
    int (*reload)(void *ud, char *msg, size_t msglen);
    /*
     * The home-server snippet for kind "prosody" or "ejabberd" as a new
     * string in *out (caller frees). 0, ERR_INVAL or ERR_NOMEM.
     */
    int (*server_snippet)(void *ud, const char *kind, char **out);
    /*
     * Blocks domain at once (its streams close, its queues bounce) and
     * stores the block with an audit row naming who (an admin's bare
     * JID). 0 with a summary in msg; ERR_INVAL (not a domain, or one of
     * fedgate's own) or ERR_SYS (not stored, so not applied) with the
     * reason in msg.
     */
    int (*block_domain)(void *ud,
                        const char *domain,
                        const char *who,
                        char *msg,
                        size_t msglen);
    /* Lifts a block, stored and audited as above. 0; ERR_NOT_FOUND (not
     * blocked) or ERR_SYS, with the reason in msg. */
    int (*unblock_domain)(void *ud,
                          const char *domain,
                          const char *who,
                          char *msg,
                          size_t msglen);
    /* The blocked domains: count, and entry i (NULL beyond). */
    size_t (*blocked_count)(void *ud);
    const char *(*blocked_domain)(void *ud, size_t i);
    /*
     * Closes the route (local, remote) cleanly, queued stanzas staying
     * queued; audited with who. 0 with a summary in msg; ERR_NOT_FOUND
     * or ERR_SYS (not audited, not done) with the reason in msg.
     */
    int (*route_disconnect)(void *ud,
                            const char *local,
                            const char *remote,
                            const char *who,
                            char *msg,
                            size_t msglen);
    /* Connects the route now, cancelling its backoff; audited. As above,
     * plus ERR_AGAIN (already connecting or connected) and ERR_AUTH
     * (remote is blocked). */
    int (*route_retry)(void *ud,
                       const char *local,
                       const char *remote,
                       const char *who,
                       char *msg,
                       size_t msglen);
    /*
     * Replaces the dialback secret with a fresh one (until restart, over
     * any configured s2s.dialback_secret); keys under the previous one
     * verify for a grace period. Audited with who first. 0 with a summary
     * in msg; ERR_SYS (not audited, not done) or ERR_NOMEM with the
     * reason in msg.
     */
    int (*rotate_dialback_secret)(void *ud,
                                  const char *who,
                                  char *msg,
                                  size_t msglen);
    /*
     * Calls fn for the newest n audit rows, newest first (at: Unix time;
     * strings borrowed for the call); a non-zero return from fn stops
     * the walk and is returned. 0 or ERR_SYS.
     */
    int (*audit_log)(
        void *ud,
        size_t n,
        int (*fn)(void *fnud, long long at, const char *who, const char *what),
        void *fnud);
    /* The configured peer domains (file and runtime): count, entry i. */
    size_t (*configured_count)(void *ud);
    const char *(*configured_domain)(void *ud, size_t i);
    /* A peer's settings. 0 or ERR_NOT_FOUND. */
    int (*peer_settings)(void *ud,
                         const char *domain,
                         struct xep_peer_settings *out);
    /*
     * Adds a peer (edit false: its domain must be new) or replaces the
     * settings of peer `domain` (edit true; an empty secret keeps the
     * current one), from the submitted values. The change is checked as
     * the config file would be, stored in state_db with an audit row
     * naming who, and applied; then upstream.peer_hook runs, if set.
     * 0 with the outcome in msg (no hook); ERR_AGAIN: the hook runs and
     * done(done_ud, rc, msg) reports the outcome later, once; ERR_INVAL
     * with the reason in msg and the index of the field at fault in *bad
     * (n: no one field); ERR_SYS / ERR_NOMEM with the reason in msg
     * (nothing changed).
     */
    int (*peer_put)(void *ud,
                    const struct xep_kv *fields,
                    size_t n,
                    bool edit,
                    const char *who,
                    xep_done_fn *done,
                    void *done_ud,
                    char *msg,
                    size_t msglen,
                    size_t *bad);
    /* Removes peer domain: its streams close and its queues bounce; stored,
     * audited and hooked as peer_put. 0, ERR_AGAIN (done later),
     * ERR_NOT_FOUND, ERR_SYS, with msg. */
    int (*peer_remove)(void *ud,
                       const char *domain,
                       const char *who,
                       xep_done_fn *done,
                       void *done_ud,
                       char *msg,
                       size_t msglen);
};

/* What a handler may use of the service that runs it. */
struct xep_context {
    const char *service_jid;     /* fedgate's own JID */
    const char *const *features; /* every feature of every handler */
    size_t nfeatures;
    const char *const *items; /* disco items: peer domains */
    size_t nitems;
    const char *version; /* software version */
    /* Sends a stanza to the home server. Consumes stanza. 0 or error. */
    int (*send)(void *ud, struct xml_node *stanza);
    void *send_ud;
    /* Bare JIDs allowed to administer fedgate (domain normalised). */
    const char *const *admins;
    size_t nadmins;
    /* Administration operations, or NULL when nothing offers them. */
    const struct xep_admin_ops *admin;
    /* This handler's own state (from its state_new), or NULL. */
    void *state;
};

/*
 * A handler's answer to a disco query on one of its nodes: 0 when it
 * answered (through ctx->send), ERR_NOT_FOUND when the node is not its
 * own, or another negative code as for xep_handle_fn. Borrows st.
 */
typedef int xep_disco_fn(const struct xep_context *ctx,
                         const struct xml_node *st,
                         const char *node);

/*
 * Handles one stanza addressed to the service. Borrows st. Returns 0 when
 * it answered (through ctx->send), or a negative code; the service then
 * replies with the stanza error for that code (ERR_NOT_FOUND:
 * item-not-found, ERR_INVAL: bad-request, ERR_AUTH: forbidden, else
 * internal-server-error).
 */
typedef int xep_handle_fn(const struct xep_context *ctx,
                          const struct xml_node *st);

struct xep_handler {
    const char *name;            /* "XEP-0199 XMPP Ping" */
    const char *xep;             /* "0199" */
    const char *version;         /* version of the XEP implemented */
    const char *stanza;          /* "iq", "message" or "presence" */
    const char *iq_type;         /* "get", "set" or NULL for any (iq only) */
    const char *ns;              /* payload namespace (iq), or NULL */
    const char *element;         /* payload element (iq), or NULL for any */
    const char *const *features; /* disco features, NULL-terminated */
    xep_handle_fn *handle;
    /* Optional: state kept across stanzas (ctx->state), created with
     * the service and freed with it. NULL from state_new: ERR_NOMEM. */
    void *(*state_new)(void);
    void (*state_free)(void *state);
    /* Optional: disco#info and disco#items on the handler's nodes. */
    xep_disco_fn *disco_info;
    xep_disco_fn *disco_items;
};

/* The table of handlers, NULL-terminated (xep_table.c). */
extern const struct xep_handler *const xep_handlers[];

extern const struct xep_handler xep0030_disco_info;
extern const struct xep_handler xep0030_disco_items;
extern const struct xep_handler xep0050_adhoc;
extern const struct xep_handler xep0092_version;
extern const struct xep_handler xep0199_ping;

#endif
