/*
 * fuzz_service.c: stanza dispatch on the service JID: whatever stanza a
 * client (or an admin, admin@a.test) sends to fedgate's JID is parsed and
 * handled, ad-hoc command sessions included; the admin operations are
 * fakes that answer from fixed data. Replies are serialised and dropped.
 */
#include "config.h"

#include "buf.h"
#include "err.h"
#include "fuzz.h"
#include "log.h"
#include "service.h"
#include "xep.h"
#include "xmlparse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long f_now(void *ud)
{
    return 1000;
}

static size_t f_peer_count(void *ud)
{
    return 1;
}

static int f_peer_status(void *ud, size_t i, struct xep_peer_status *out)
{
    static const struct xep_peer_status peer = {
        .domain = "b.test",
        .local = "a.test",
        .state = "idle",
        .direction = "none",
        .home_link = "ready",
        .auth = "any",
        .last_error = "connect failed: Connection refused",
        .last_failure_at = 1,
    };
    if (i != 0) {
        return ERR_NOT_FOUND;
    }
    *out = peer;
    return 0;
}

static void f_stats(void *ud, struct xep_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->uptime_s = 5;
    out->links_total = 2;
}

static int f_set_log_level(void *ud, const char *level)
{
    return strcmp(level, "debug") == 0 || strcmp(level, "info") == 0 ||
                   strcmp(level, "warn") == 0 || strcmp(level, "error") == 0
               ? 0
               : ERR_INVAL;
}

static const char *f_log_level(void *ud)
{
    return "error";
}

static int f_reload(void *ud, char *msg, size_t msglen)
{
    snprintf(msg, msglen, "fuzz: nothing reloaded");
    return 0;
}

static int f_server_snippet(void *ud, const char *kind, char **out)
{
    *out = strdup("Component \"b.test\"\n");
    return *out != NULL ? 0 : ERR_NOMEM;
}

static size_t f_configured_count(void *ud)
{
    return 1;
}

static const char *f_configured_domain(void *ud, size_t i)
{
    return i == 0 ? "b.test" : NULL;
}

static int
f_peer_settings(void *ud, const char *domain, struct xep_peer_settings *out)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(domain, "b.test") != 0) {
        return ERR_NOT_FOUND;
    }
    out->domain = "b.test";
    out->auth = "any";
    out->trusted = true;
    out->origin = "config file";
    return 0;
}

/* Refuses every other submission naming its second field, accepts the
 * rest at once (no hook). */
static int f_peer_put(void *ud,
                      const struct xep_kv *fields,
                      size_t n,
                      bool edit,
                      const char *who,
                      xep_done_fn *done,
                      void *done_ud,
                      char *msg,
                      size_t msglen,
                      size_t *bad)
{
    static unsigned calls;
    if (++calls % 2 == 0) {
        *bad = n > 1 ? 1 : n;
        snprintf(msg, msglen, "fuzz: refused");
        return ERR_INVAL;
    }
    snprintf(msg, msglen, "fuzz: %s", edit ? "changed" : "added");
    return 0;
}

static int f_peer_remove(void *ud,
                         const char *domain,
                         const char *who,
                         xep_done_fn *done,
                         void *done_ud,
                         char *msg,
                         size_t msglen)
{
    snprintf(msg, msglen, "fuzz: removed");
    return 0;
}

static int s_send(void *ud, struct xml_node *st)
{
    struct buf out;
    buf_init(&out, 1u << 20);
    (void)xml_serialize(st, XML_NS_COMPONENT, &out);
    buf_free(&out);
    xml_unref(st);
    return 0;
}

static void s_stanza(void *ud, struct xml_node *st)
{
    service_handle(ud, st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_LEVEL_ERROR); /* peer bytes make noise */
    static const char header[] =
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns='jabber:component:accept'>";
    static const char *const peers[] = {"b.test"};
    static const char *const admins[] = {"admin@a.test"};
    static const struct xep_admin_ops ops = {
        .now_ms = f_now,
        .peer_count = f_peer_count,
        .peer_status = f_peer_status,
        .stats = f_stats,
        .set_log_level = f_set_log_level,
        .log_level = f_log_level,
        .reload = f_reload,
        .server_snippet = f_server_snippet,
        .configured_count = f_configured_count,
        .configured_domain = f_configured_domain,
        .peer_settings = f_peer_settings,
        .peer_put = f_peer_put,
        .peer_remove = f_peer_remove,
    };
    struct service *svc = service_new("fedgate.a.test", peers, 1, s_send, NULL);
    if (svc == NULL) {
        return 0;
    }
    if (service_set_admin(svc, admins, 1, &ops) != 0) {
        service_free(svc);
        return 0;
    }
    struct xmlparse_callbacks cb = {.stanza = s_stanza};
    struct xmlparse_limits lim = {.max_stanza = 65536, .max_depth = 32};
    struct xmlparse *p = xmlparse_new(&lim, &cb, svc);
    if (p != NULL && xmlparse_feed(p, header, sizeof(header) - 1, NULL) == 0) {
        (void)xmlparse_feed(p, (const char *)data, size, NULL);
    }
    xmlparse_free(p);
    service_free(svc);
    return 0;
}
