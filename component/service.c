/*
 * service.c: the service JID's stanza dispatcher.
 *
 * on iq get/set: find the handler for the payload; none: service-unavailable;
 *                handler error: item-not-found / bad-request /
 *                forbidden / internal-server-error
 * on iq result/error: nothing asked for it yet, so it is logged and freed
 * on message: error reply (the service takes no messages yet)
 * on presence: logged and freed (RFC 6121 lets a service ignore presence)
 */
#include "config.h"

#include "service.h"

#include "err.h"
#include "log.h"
#include "stanza.h"
#include "xep.h"

#include <stdlib.h>
#include <string.h>

struct service {
    char *jid;
    char **peers;
    size_t npeers;
    const char **features;
    size_t nfeatures;
    char **admins;
    size_t nadmins;
    void **states; /* one per handler of xep_handlers, or NULL */
    struct xep_context ctx;
    unsigned long handled;
    unsigned long errors;
};

static int service_collect_features(struct service *svc)
{
    size_t n = 0;
    for (size_t i = 0; xep_handlers[i] != NULL; i++) {
        for (size_t j = 0; xep_handlers[i]->features[j] != NULL; j++) {
            n++;
        }
    }
    svc->features = calloc(n > 0 ? n : 1, sizeof(*svc->features));
    if (svc->features == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; xep_handlers[i] != NULL; i++) {
        for (size_t j = 0; xep_handlers[i]->features[j] != NULL; j++) {
            svc->features[svc->nfeatures++] = xep_handlers[i]->features[j];
        }
    }
    return 0;
}

/* Creates the state of every handler that keeps one. */
static int service_make_states(struct service *svc)
{
    size_t n = 0;
    while (xep_handlers[n] != NULL) {
        n++;
    }
    svc->states = calloc(n > 0 ? n : 1, sizeof(*svc->states));
    if (svc->states == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (xep_handlers[i]->state_new == NULL) {
            continue;
        }
        svc->states[i] = xep_handlers[i]->state_new();
        if (svc->states[i] == NULL) {
            return ERR_NOMEM;
        }
    }
    return 0;
}

struct service *service_new(const char *jid,
                            const char *const *peers,
                            size_t npeers,
                            service_send_fn *send,
                            void *ud)
{
    struct service *svc = calloc(1, sizeof(*svc));
    if (svc == NULL) {
        return NULL;
    }
    svc->jid = strdup(jid);
    svc->peers = calloc(npeers > 0 ? npeers : 1, sizeof(*svc->peers));
    if (svc->jid == NULL || svc->peers == NULL ||
        service_collect_features(svc) != 0 || service_make_states(svc) != 0) {
        goto fail;
    }
    for (size_t i = 0; i < npeers; i++) {
        svc->peers[i] = strdup(peers[i]);
        if (svc->peers[i] == NULL) {
            goto fail;
        }
        svc->npeers++;
    }
    svc->ctx.service_jid = svc->jid;
    svc->ctx.features = svc->features;
    svc->ctx.nfeatures = svc->nfeatures;
    svc->ctx.items = (const char *const *)svc->peers;
    svc->ctx.nitems = svc->npeers;
    svc->ctx.version = PACKAGE_VERSION;
    svc->ctx.send = send;
    svc->ctx.send_ud = ud;
    return svc;
fail:
    service_free(svc);
    return NULL;
}

static void service_free_admins(struct service *svc)
{
    for (size_t i = 0; i < svc->nadmins; i++) {
        free(svc->admins[i]);
    }
    free(svc->admins);
    svc->admins = NULL;
    svc->nadmins = 0;
}

int service_set_admin(struct service *svc,
                      const char *const *admins,
                      size_t nadmins,
                      const struct xep_admin_ops *ops)
{
    char **copy = calloc(nadmins > 0 ? nadmins : 1, sizeof(*copy));
    if (copy == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < nadmins; i++) {
        copy[i] = strdup(admins[i]);
        if (copy[i] == NULL) {
            for (size_t j = 0; j < i; j++) {
                free(copy[j]);
            }
            free(copy);
            return ERR_NOMEM;
        }
    }
    service_free_admins(svc);
    svc->admins = copy; /* transferred */
    svc->nadmins = nadmins;
    svc->ctx.admins = (const char *const *)svc->admins;
    svc->ctx.nadmins = svc->nadmins;
    svc->ctx.admin = ops;
    return 0;
}

void service_free(struct service *svc)
{
    if (svc == NULL) {
        return;
    }
    if (svc->states != NULL) {
        for (size_t i = 0; xep_handlers[i] != NULL; i++) {
            if (svc->states[i] != NULL) {
                xep_handlers[i]->state_free(svc->states[i]);
            }
        }
        free(svc->states);
    }
    service_free_admins(svc);
    for (size_t i = 0; i < svc->npeers; i++) {
        free(svc->peers[i]);
    }
    free(svc->peers);
    free(svc->features);
    free(svc->jid);
    free(svc);
}

static bool service_matches(const struct xep_handler *h,
                            const struct xml_node *st,
                            const struct xml_node *payload)
{
    if (strcmp(h->stanza, st->name) != 0) {
        return false;
    }
    if (strcmp(st->name, "iq") != 0) {
        return true;
    }
    const char *type = xml_attr(st, "type");
    if (h->iq_type != NULL && (type == NULL || strcmp(h->iq_type, type) != 0)) {
        return false;
    }
    if (payload == NULL) {
        return false;
    }
    return (h->ns == NULL || strcmp(h->ns, payload->ns) == 0) &&
           (h->element == NULL || strcmp(h->element, payload->name) == 0);
}

static void service_reply_error(struct service *svc,
                                const struct xml_node *st,
                                const char *condition)
{
    if (!stanza_may_bounce(st)) {
        return;
    }
    struct xml_node *r = stanza_error_reply(st, NULL, condition, NULL);
    if (r == NULL) {
        log_conn(LOG_LEVEL_ERROR, svc->jid, "out of memory building a %s error",
                 condition);
        return;
    }
    svc->errors++;
    int rc = svc->ctx.send(svc->ctx.send_ud, r); /* transferred */
    if (rc != 0) {
        log_conn(LOG_LEVEL_WARN, svc->jid, "error reply not sent: %s",
                 err_str(rc));
    }
}

static const char *service_condition_for(int rc)
{
    switch (rc) {
    case ERR_NOT_FOUND:
        return "item-not-found";
    case ERR_INVAL:
        return "bad-request";
    case ERR_AUTH:
        return "forbidden";
    case ERR_NOMEM:
        return "resource-constraint";
    default:
        return "internal-server-error";
    }
}

void service_handle(struct service *svc, struct xml_node *st)
{
    const struct xml_node *payload = xml_first_element(st);
    const char *type = xml_attr(st, "type");
    svc->handled++;
    if (strcmp(st->name, "iq") == 0) {
        bool request = type != NULL &&
                       (strcmp(type, "get") == 0 || strcmp(type, "set") == 0);
        if (!request) {
            log_conn(LOG_LEVEL_DEBUG, svc->jid, "ignoring iq of type %s",
                     type != NULL ? type : "(none)");
            goto out;
        }
        if (payload == NULL || xml_next_element(payload) != NULL) {
            /* RFC 6120 8.2.3: a get or set has exactly one payload */
            service_reply_error(svc, st, "bad-request");
            goto out;
        }
    }
    for (size_t i = 0; xep_handlers[i] != NULL; i++) {
        const struct xep_handler *h = xep_handlers[i];
        if (!service_matches(h, st, payload)) {
            continue;
        }
        svc->ctx.state = svc->states[i];
        int rc = h->handle(&svc->ctx, st);
        svc->ctx.state = NULL;
        if (rc != 0) {
            log_conn(LOG_LEVEL_DEBUG, svc->jid, "XEP-%s handler: %s", h->xep,
                     err_str(rc));
            service_reply_error(svc, st, service_condition_for(rc));
        }
        goto out;
    }
    if (strcmp(st->name, "presence") == 0) {
        log_conn(LOG_LEVEL_DEBUG, svc->jid, "ignoring presence from %s",
                 xml_attr(st, "from") != NULL ? xml_attr(st, "from") : "?");
        goto out;
    }
    service_reply_error(svc, st, "service-unavailable");
out:
    xml_unref(st);
}

void service_counters(const struct service *svc,
                      unsigned long *handled,
                      unsigned long *errors)
{
    *handled = svc->handled;
    *errors = svc->errors;
}
