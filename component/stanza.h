/*
 * stanza.h: helpers on XMPP stanzas (message, presence, iq trees).
 */
#ifndef FEDGATE_STANZA_H
#define FEDGATE_STANZA_H

#include <stdbool.h>

#include "xml.h"

/* True for message, presence and iq elements. */
bool stanza_is_stanza(const struct xml_node *st);

/* True if an error reply may be generated for st: not an error itself,
 * and not an iq result (RFC 6120 8.3.1). */
bool stanza_may_bounce(const struct xml_node *st);

/*
 * Builds the error reply to st: from/to swapped, same id and name,
 * type='error', an <error type=... ><condition/><text/></error> child in
 * the stanzas namespace; for iq the original payload is dropped, for
 * message and presence it is kept. text may be NULL. Borrows st; returns a
 * new stanza or NULL on ENOMEM.
 */
struct xml_node *stanza_error_reply(const struct xml_node *st,
                                    const char *error_type,
                                    const char *condition,
                                    const char *text);

/* The default error type for a condition (RFC 6120 8.3.3), e.g. "cancel"
 * for "service-unavailable", "wait" for "remote-server-timeout". */
const char *stanza_error_type_for(const char *condition);

/* Builds an iq result for an iq get/set: from/to swapped, same id, no
 * payload. Borrows iq; returns a new stanza or NULL. */
struct xml_node *stanza_iq_result(const struct xml_node *iq);

#endif
