/*
 * xep0092_version.c: XEP-0092 Software Version on the service JID.
 * on iq get <query xmlns='jabber:iq:version'/>: answer name and version.
 * The operating system is left out on purpose: it tells an attacker more
 * than it helps a peer (XEP-0092 section 5 allows omitting it).
 */
#include "config.h"

#include "xep.h"

#include <string.h>

#define XEP0092_NS "jabber:iq:version"

static int
xep0092_add_text(struct xml_node *parent, const char *name, const char *text)
{
    struct xml_node *el = xml_add_child(parent, NULL, name);
    if (el == NULL) {
        return ERR_NOMEM;
    }
    return xml_append_text(el, text, strlen(text));
}

static int xep0092_handle(const struct xep_context *ctx,
                          const struct xml_node *st)
{
    struct xml_node *r = stanza_iq_result(st);
    if (r == NULL) {
        return ERR_NOMEM;
    }
    struct xml_node *q = xml_add_child(r, XEP0092_NS, "query");
    if (q == NULL || xep0092_add_text(q, "name", "fedgate") != 0 ||
        xep0092_add_text(q, "version", ctx->version) != 0) {
        xml_unref(r);
        return ERR_NOMEM;
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static const char *const xep0092_features[] = {XEP0092_NS, NULL};

const struct xep_handler xep0092_version = {
    .name = "Software Version",
    .xep = "0092",
    .version = "1.1",
    .stanza = "iq",
    .iq_type = "get",
    .ns = XEP0092_NS,
    .element = "query",
    .features = xep0092_features,
    .handle = xep0092_handle,
};
