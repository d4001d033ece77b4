/*
 * stanza.c: error replies and results for message, presence and iq.
 * RFC 6120 8.3: never answer an error with an error, never answer an iq
 * result or error; errors go back to the sender with from and to swapped.
 */
#include "config.h"

#include "stanza.h"

#include <string.h>

bool stanza_is_stanza(const struct xml_node *st)
{
    return st->kind == XML_NODE_ELEMENT &&
           (strcmp(st->name, "message") == 0 ||
            strcmp(st->name, "presence") == 0 || strcmp(st->name, "iq") == 0);
}

bool stanza_may_bounce(const struct xml_node *st)
{
    if (!stanza_is_stanza(st)) {
        return false;
    }
    const char *type = xml_attr(st, "type");
    if (type == NULL) {
        return true;
    }
    if (strcmp(type, "error") == 0) {
        return false;
    }
    if (strcmp(st->name, "iq") == 0 && strcmp(type, "result") == 0) {
        return false;
    }
    return true;
}

const char *stanza_error_type_for(const char *condition)
{
    static const struct {
        const char *condition;
        const char *type;
    } table[] = {
        {"bad-request", "modify"},
        {"conflict", "cancel"},
        {"feature-not-implemented", "cancel"},
        {"forbidden", "auth"},
        {"gone", "cancel"},
        {"internal-server-error", "cancel"},
        {"item-not-found", "cancel"},
        {"jid-malformed", "modify"},
        {"not-acceptable", "modify"},
        {"not-allowed", "cancel"},
        {"not-authorized", "auth"},
        {"policy-violation", "modify"},
        {"recipient-unavailable", "wait"},
        {"redirect", "modify"},
        {"registration-required", "auth"},
        {"remote-server-not-found", "cancel"},
        {"remote-server-timeout", "wait"},
        {"resource-constraint", "wait"},
        {"service-unavailable", "cancel"},
        {"subscription-required", "auth"},
        {"undefined-condition", "cancel"},
        {"unexpected-request", "wait"},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(table[i].condition, condition) == 0) {
            return table[i].type;
        }
    }
    return "cancel";
}

/* A new stanza with name, ns and id of st, from/to swapped, given type. */
static struct xml_node *stanza_reply_shell(const struct xml_node *st,
                                           const char *type)
{
    struct xml_node *r = xml_element_new(st->ns, st->name);
    if (r == NULL) {
        return NULL;
    }
    const char *from = xml_attr(st, "from");
    const char *to = xml_attr(st, "to");
    const char *id = xml_attr(st, "id");
    if ((from != NULL && xml_set_attr(r, "to", from) != 0) ||
        (to != NULL && xml_set_attr(r, "from", to) != 0) ||
        (id != NULL && xml_set_attr(r, "id", id) != 0) ||
        xml_set_attr(r, "type", type) != 0) {
        xml_unref(r);
        return NULL;
    }
    return r;
}

struct xml_node *stanza_error_reply(const struct xml_node *st,
                                    const char *error_type,
                                    const char *condition,
                                    const char *text)
{
    struct xml_node *r = stanza_reply_shell(st, "error");
    if (r == NULL) {
        return NULL;
    }
    if (strcmp(st->name, "iq") != 0) {
        /* message and presence keep their payload (RFC 6120 8.3.1) */
        for (const struct xml_node *c = st->first_child; c != NULL;
             c = c->next) {
            struct xml_node *copy = xml_copy(c);
            if (copy == NULL || xml_append(r, copy) != 0) {
                xml_unref(copy);
                goto fail;
            }
        }
    }
    struct xml_node *err = xml_add_child(r, NULL, "error");
    if (err == NULL ||
        xml_set_attr(err, "type",
                     error_type != NULL
                         ? error_type
                         : stanza_error_type_for(condition)) != 0 ||
        xml_add_child(err, XML_NS_STANZAS, condition) == NULL) {
        goto fail;
    }
    if (text != NULL) {
        struct xml_node *t = xml_add_child(err, XML_NS_STANZAS, "text");
        if (t == NULL || xml_append_text(t, text, strlen(text)) != 0) {
            goto fail;
        }
    }
    return r;
fail:
    xml_unref(r);
    return NULL;
}

struct xml_node *stanza_iq_result(const struct xml_node *iq)
{
    return stanza_reply_shell(iq, "result");
}
