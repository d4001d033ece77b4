/*
 * xep0030_disco.c: XEP-0030 Service Discovery on the service JID.
 * on disco#info get: identity gateway/xmpp plus every handler's features;
 *                    with a node: the handler that owns the node answers
 *                    (XEP-0050 commands); nobody: item-not-found.
 * on disco#items get: one item per peer domain fedgate links to; with a
 *                    node: as for disco#info.
 */
#include "config.h"

#include "xep.h"

#include <stdbool.h>

#define XEP0030_INFO  "http://jabber.org/protocol/disco#info"
#define XEP0030_ITEMS "http://jabber.org/protocol/disco#items"

/* A query with a node goes to the handler that owns the node. The node
 * handlers do not get their own state (ctx->state is the caller's). */
static int xep0030_node(const struct xep_context *ctx,
                        const struct xml_node *st,
                        const char *node,
                        bool info)
{
    for (size_t i = 0; xep_handlers[i] != NULL; i++) {
        xep_disco_fn *fn =
            info ? xep_handlers[i]->disco_info : xep_handlers[i]->disco_items;
        if (fn == NULL) {
            continue;
        }
        int rc = fn(ctx, st, node);
        if (rc != ERR_NOT_FOUND) {
            return rc;
        }
    }
    return ERR_NOT_FOUND;
}

/* A query with a node attribute is answered by xep0030_node. */
static int xep0030_start(const struct xml_node *st,
                         const char *ns,
                         struct xml_node **reply,
                         struct xml_node **query)
{
    const struct xml_node *q = xml_child(st, ns, "query");
    if (q != NULL && xml_attr(q, "node") != NULL) {
        return ERR_AGAIN;
    }
    *reply = stanza_iq_result(st);
    if (*reply == NULL) {
        return ERR_NOMEM;
    }
    *query = xml_add_child(*reply, ns, "query");
    if (*query == NULL) {
        xml_unref(*reply);
        return ERR_NOMEM;
    }
    return 0;
}

static int xep0030_info(const struct xep_context *ctx,
                        const struct xml_node *st)
{
    struct xml_node *r;
    struct xml_node *q;
    int rc = xep0030_start(st, XEP0030_INFO, &r, &q);
    if (rc == ERR_AGAIN) {
        const struct xml_node *qn = xml_child(st, XEP0030_INFO, "query");
        return xep0030_node(ctx, st, xml_attr(qn, "node"), true);
    }
    if (rc != 0) {
        return rc;
    }
    struct xml_node *id = xml_add_child(q, NULL, "identity");
    if (id == NULL || xml_set_attr(id, "category", "gateway") != 0 ||
        xml_set_attr(id, "type", "xmpp") != 0 ||
        xml_set_attr(id, "name", "fedgate federation gateway") != 0) {
        goto fail;
    }
    for (size_t i = 0; i < ctx->nfeatures; i++) {
        struct xml_node *f = xml_add_child(q, NULL, "feature");
        if (f == NULL || xml_set_attr(f, "var", ctx->features[i]) != 0) {
            goto fail;
        }
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
fail:
    xml_unref(r);
    return ERR_NOMEM;
}

static int xep0030_items(const struct xep_context *ctx,
                         const struct xml_node *st)
{
    struct xml_node *r;
    struct xml_node *q;
    int rc = xep0030_start(st, XEP0030_ITEMS, &r, &q);
    if (rc == ERR_AGAIN) {
        const struct xml_node *qn = xml_child(st, XEP0030_ITEMS, "query");
        return xep0030_node(ctx, st, xml_attr(qn, "node"), false);
    }
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < ctx->nitems; i++) {
        struct xml_node *it = xml_add_child(q, NULL, "item");
        if (it == NULL || xml_set_attr(it, "jid", ctx->items[i]) != 0 ||
            xml_set_attr(it, "name", "peer domain") != 0) {
            xml_unref(r);
            return ERR_NOMEM;
        }
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static const char *const xep0030_info_features[] = {XEP0030_INFO, NULL};
static const char *const xep0030_items_features[] = {XEP0030_ITEMS, NULL};

const struct xep_handler xep0030_disco_info = {
    .name = "Service Discovery (info)",
    .xep = "0030",
    .version = "2.5rc3",
    .stanza = "iq",
    .iq_type = "get",
    .ns = XEP0030_INFO,
    .element = "query",
    .features = xep0030_info_features,
    .handle = xep0030_info,
};

const struct xep_handler xep0030_disco_items = {
    .name = "Service Discovery (items)",
    .xep = "0030",
    .version = "2.5rc3",
    .stanza = "iq",
    .iq_type = "get",
    .ns = XEP0030_ITEMS,
    .element = "query",
    .features = xep0030_items_features,
    .handle = xep0030_items,
};
