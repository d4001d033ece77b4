/*
 * fuzz_service.c: stanza dispatch on the service JID: whatever stanza a
 * client sends to fedgate's JID is parsed and handled; replies are
 * serialised and dropped.
 */
#include "config.h"

#include "buf.h"
#include "fuzz.h"
#include "log.h"
#include "service.h"
#include "xmlparse.h"

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
    struct service *svc = service_new("fedgate.a.test", peers, 1, s_send, NULL);
    if (svc == NULL) {
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
