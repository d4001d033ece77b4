/*
 * xep0199_ping.c: XEP-0199 XMPP Ping on the service JID.
 * on iq get <ping xmlns='urn:xmpp:ping'/>: answer an empty result.
 */
#include "config.h"

#include "xep.h"

#define XEP0199_NS "urn:xmpp:ping"

static int xep0199_handle(const struct xep_context *ctx,
                          const struct xml_node *st)
{
    struct xml_node *r = stanza_iq_result(st);
    if (r == NULL) {
        return ERR_NOMEM;
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static const char *const xep0199_features[] = {XEP0199_NS, NULL};

const struct xep_handler xep0199_ping = {
    .name = "XMPP Ping",
    .xep = "0199",
    .version = "2.0.1",
    .stanza = "iq",
    .iq_type = "get",
    .ns = XEP0199_NS,
    .element = "ping",
    .features = xep0199_features,
    .handle = xep0199_handle,
};
