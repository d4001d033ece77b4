/*
 * service.h: fedgate's own service JID (e.g. fedgate.a.test).
 *
 * Dispatches stanzas addressed to the service to the handlers of
 * xep/xep_table.c by (stanza name, iq type, payload namespace and element).
 * An iq get or set nobody handles gets service-unavailable; a handler
 * failure becomes the matching stanza error. Replies leave through the
 * send function given at creation.
 */
#ifndef FEDGATE_SERVICE_H
#define FEDGATE_SERVICE_H

#include <stddef.h>

#include "xep.h"
#include "xml.h"

struct service;

/* Sends a stanza to the home server. Consumes st. 0 or a negative code. */
typedef int service_send_fn(void *ud, struct xml_node *st);

/*
 * Returns a new service for jid, or NULL on ENOMEM. peers (n entries) are
 * listed as disco items; all strings are copied.
 */
struct service *service_new(const char *jid,
                            const char *const *peers,
                            size_t npeers,
                            service_send_fn *send,
                            void *ud);

/*
 * Sets who may administer the service (bare JIDs, copied) and the
 * operations the XEP-0050 commands use (borrowed: ops must outlive the
 * service; NULL: no commands can run). 0 or ERR_NOMEM (nothing changed).
 */
int service_set_admin(struct service *svc,
                      const char *const *admins,
                      size_t nadmins,
                      const struct xep_admin_ops *ops);

/* Handles one stanza addressed to the service. Consumes st. */
void service_handle(struct service *svc, struct xml_node *st);

/* Number of stanzas handled and of error replies sent (for status). */
void service_counters(const struct service *svc,
                      unsigned long *handled,
                      unsigned long *errors);

/* Frees the service. Accepts NULL. */
void service_free(struct service *svc);

#endif
