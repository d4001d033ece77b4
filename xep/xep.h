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

#include <stddef.h>

#include "err.h"
#include "stanza.h"
#include "xml.h"

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
};

/*
 * Handles one stanza addressed to the service. Borrows st. Returns 0 when
 * it answered (through ctx->send), or a negative code; the service then
 * replies with the stanza error for that code (ERR_NOT_FOUND:
 * item-not-found, ERR_INVAL: bad-request, else internal-server-error).
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
};

/* The table of handlers, NULL-terminated (xep_table.c). */
extern const struct xep_handler *const xep_handlers[];

extern const struct xep_handler xep0030_disco_info;
extern const struct xep_handler xep0030_disco_items;
extern const struct xep_handler xep0092_version;
extern const struct xep_handler xep0199_ping;

#endif
