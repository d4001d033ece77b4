/*
 * check_service.c: the service JID's dispatcher and the XEP handlers
 * (disco#info, disco#items, version, ping) and their error replies.
 */
#include "config.h"

#include "err.h"
#include "log.h"
#include "service.h"
#include "xml.h"
#include "xmlparse.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

struct sent {
    struct xml_node *replies[8];
    int n;
};

static int collect(void *ud, struct xml_node *st)
{
    struct sent *s = ud;
    ck_assert_int_lt(s->n, 8);
    s->replies[s->n++] = st;
    return 0;
}

static void sent_clear(struct sent *s)
{
    for (int i = 0; i < s->n; i++) {
        xml_unref(s->replies[i]);
    }
    s->n = 0;
}

static void on_stanza(void *ud, struct xml_node *st)
{
    struct xml_node **out = ud;
    *out = st;
}

/* Parses one stanza of a component stream. */
static struct xml_node *parse(const char *xml)
{
    static const char header[] =
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns='jabber:component:accept'>";
    struct xml_node *st = NULL;
    struct xmlparse_callbacks cb = {.stanza = on_stanza};
    struct xmlparse_limits lim = {.max_stanza = 65536, .max_depth = 32};
    struct xmlparse *p = xmlparse_new(&lim, &cb, &st);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(xmlparse_feed(p, header, strlen(header), NULL), 0);
    ck_assert_int_eq(xmlparse_feed(p, xml, strlen(xml), NULL), 0);
    xmlparse_free(p);
    ck_assert_ptr_nonnull(st);
    return st;
}

static struct service *new_service(struct sent *out)
{
    static const char *const peers[] = {"b.test", "c.test"};
    memset(out, 0, sizeof(*out));
    struct service *svc = service_new("fedgate.a.test", peers, 2, collect, out);
    ck_assert_ptr_nonnull(svc);
    return svc;
}

static const char *error_condition(const struct xml_node *r)
{
    ck_assert_str_eq(xml_attr(r, "type"), "error");
    const struct xml_node *e = xml_child(r, NULL, "error");
    ck_assert_ptr_nonnull(e);
    const struct xml_node *c = xml_child(e, XML_NS_STANZAS, NULL);
    ck_assert_ptr_nonnull(c);
    return c->name;
}

START_TEST(test_ping_result)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='get' id='p1' from='u@a.test/r' "
                              "to='fedgate.a.test'><ping "
                              "xmlns='urn:xmpp:ping'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    struct xml_node *r = out.replies[0];
    ck_assert_str_eq(r->name, "iq");
    ck_assert_str_eq(xml_attr(r, "type"), "result");
    ck_assert_str_eq(xml_attr(r, "id"), "p1");
    ck_assert_str_eq(xml_attr(r, "to"), "u@a.test/r");
    ck_assert_str_eq(xml_attr(r, "from"), "fedgate.a.test");
    ck_assert_ptr_null(xml_first_element(r));
    sent_clear(&out);
    service_free(svc);
}
END_TEST

static bool has_feature(const struct xml_node *q, const char *var)
{
    for (const struct xml_node *f = xml_first_element(q); f != NULL;
         f = xml_next_element(f)) {
        if (strcmp(f->name, "feature") == 0 &&
            strcmp(xml_attr(f, "var"), var) == 0) {
            return true;
        }
    }
    return false;
}

START_TEST(test_disco_info)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(
        svc, parse("<iq type='get' id='d1' from='u@a.test/r' "
                   "to='fedgate.a.test'><query "
                   "xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    const struct xml_node *q = xml_child(
        out.replies[0], "http://jabber.org/protocol/disco#info", "query");
    ck_assert_ptr_nonnull(q);
    const struct xml_node *id = xml_child(q, NULL, "identity");
    ck_assert_ptr_nonnull(id);
    ck_assert_str_eq(xml_attr(id, "category"), "gateway");
    ck_assert(has_feature(q, "http://jabber.org/protocol/disco#info"));
    ck_assert(has_feature(q, "http://jabber.org/protocol/disco#items"));
    ck_assert(has_feature(q, "urn:xmpp:ping"));
    ck_assert(has_feature(q, "jabber:iq:version"));
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_disco_info_unknown_node)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='get' id='d2' from='u@a.test/r' "
                              "to='fedgate.a.test'><query "
                              "xmlns='http://jabber.org/protocol/disco#info' "
                              "node='nope'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    ck_assert_str_eq(error_condition(out.replies[0]), "item-not-found");
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_disco_items_lists_peers)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(
        svc, parse("<iq type='get' id='d3' from='u@a.test/r' "
                   "to='fedgate.a.test'><query "
                   "xmlns='http://jabber.org/protocol/disco#items'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    const struct xml_node *q = xml_child(
        out.replies[0], "http://jabber.org/protocol/disco#items", "query");
    ck_assert_ptr_nonnull(q);
    const struct xml_node *it = xml_first_element(q);
    ck_assert_ptr_nonnull(it);
    ck_assert_str_eq(xml_attr(it, "jid"), "b.test");
    it = xml_next_element(it);
    ck_assert_ptr_nonnull(it);
    ck_assert_str_eq(xml_attr(it, "jid"), "c.test");
    ck_assert_ptr_null(xml_next_element(it));
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_version)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='get' id='v1' from='u@a.test/r' "
                              "to='fedgate.a.test'><query "
                              "xmlns='jabber:iq:version'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    const struct xml_node *q =
        xml_child(out.replies[0], "jabber:iq:version", "query");
    ck_assert_ptr_nonnull(q);
    char *name = xml_text(xml_child(q, NULL, "name"));
    char *version = xml_text(xml_child(q, NULL, "version"));
    ck_assert_str_eq(name, "fedgate");
    ck_assert_str_eq(version, PACKAGE_VERSION);
    free(name);
    free(version);
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_unknown_iq_service_unavailable)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='get' id='u1' from='u@a.test/r' "
                              "to='fedgate.a.test'><vCard "
                              "xmlns='vcard-temp'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    ck_assert_str_eq(error_condition(out.replies[0]), "service-unavailable");
    ck_assert_str_eq(xml_attr(out.replies[0], "id"), "u1");
    /* an iq error carries no payload copy */
    ck_assert_ptr_null(xml_child(out.replies[0], "vcard-temp", NULL));
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_ping_set_is_not_ping)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='set' id='s1' from='u@a.test/r' "
                              "to='fedgate.a.test'><ping "
                              "xmlns='urn:xmpp:ping'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    ck_assert_str_eq(error_condition(out.replies[0]), "service-unavailable");
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_iq_two_payloads_bad_request)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='get' id='b1' from='u@a.test/r' "
                              "to='fedgate.a.test'><ping "
                              "xmlns='urn:xmpp:ping'/><ping "
                              "xmlns='urn:xmpp:ping'/></iq>"));
    ck_assert_int_eq(out.n, 1);
    ck_assert_str_eq(error_condition(out.replies[0]), "bad-request");
    sent_clear(&out);
    service_free(svc);
}
END_TEST

START_TEST(test_results_and_errors_not_answered)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<iq type='result' id='r1' from='u@a.test/r' "
                              "to='fedgate.a.test'/>"));
    service_handle(svc, parse("<iq type='error' id='r2' from='u@a.test/r' "
                              "to='fedgate.a.test'/>"));
    service_handle(svc, parse("<message type='error' from='u@a.test/r' "
                              "to='fedgate.a.test'/>"));
    service_handle(svc, parse("<presence from='u@a.test/r' "
                              "to='fedgate.a.test'/>"));
    ck_assert_int_eq(out.n, 0);
    service_free(svc);
}
END_TEST

START_TEST(test_message_gets_error_with_payload)
{
    struct sent out;
    struct service *svc = new_service(&out);
    service_handle(svc, parse("<message type='chat' id='m1' "
                              "from='u@a.test/r' to='fedgate.a.test'>"
                              "<body>hello</body></message>"));
    ck_assert_int_eq(out.n, 1);
    ck_assert_str_eq(error_condition(out.replies[0]), "service-unavailable");
    ck_assert_ptr_nonnull(xml_child(out.replies[0], NULL, "body"));
    unsigned long handled;
    unsigned long errors;
    service_counters(svc, &handled, &errors);
    ck_assert_uint_eq(handled, 1);
    ck_assert_uint_eq(errors, 1);
    sent_clear(&out);
    service_free(svc);
}
END_TEST

static Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("dispatch");
    tcase_add_test(tc, test_ping_result);
    tcase_add_test(tc, test_disco_info);
    tcase_add_test(tc, test_disco_info_unknown_node);
    tcase_add_test(tc, test_disco_items_lists_peers);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_unknown_iq_service_unavailable);
    tcase_add_test(tc, test_ping_set_is_not_ping);
    tcase_add_test(tc, test_iq_two_payloads_bad_request);
    tcase_add_test(tc, test_results_and_errors_not_answered);
    tcase_add_test(tc, test_message_gets_error_with_payload);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, false, "check_service");
    SRunner *sr = srunner_create(service_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
