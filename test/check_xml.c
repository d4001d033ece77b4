/*
 * check_xml.c: stanza trees, reference counts, escaping and the serialiser,
 * including the round trip through the stream parser.
 */
#include "config.h"

#include "xml.h"

#include "buf.h"
#include "err.h"
#include "xmlparse.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX (1024 * 1024)

/* Serialises node and returns the text (caller frees). */
static char *ser(const struct xml_node *node, const char *inherited_ns)
{
    struct buf b;
    buf_init(&b, OUT_MAX);
    ck_assert_int_eq(xml_serialize(node, inherited_ns, &b), 0);
    return buf_steal(&b);
}

static void
ck_ser(const struct xml_node *node, const char *inherited_ns, const char *want)
{
    char *s = ser(node, inherited_ns);
    ck_assert_str_eq(s, want);
    free(s);
}

static char *esc(const char *text, size_t len, bool attr)
{
    struct buf b;
    buf_init(&b, OUT_MAX);
    ck_assert_int_eq(xml_escape(&b, text, len, attr), 0);
    return buf_steal(&b);
}

/* Structural equality: kind, ns, name, attributes in order, text,
 * children. */
static bool tree_equal(const struct xml_node *a, const struct xml_node *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    if (a->kind != b->kind) {
        return false;
    }
    if (a->kind == XML_NODE_TEXT) {
        return a->text_len == b->text_len &&
               memcmp(a->text, b->text, a->text_len) == 0;
    }
    if (strcmp(a->ns, b->ns) != 0 || strcmp(a->name, b->name) != 0 ||
        a->nattrs != b->nattrs) {
        return false;
    }
    for (size_t i = 0; i < a->nattrs; i++) {
        if (strcmp(a->attrs[i].name, b->attrs[i].name) != 0 ||
            strcmp(a->attrs[i].value, b->attrs[i].value) != 0) {
            return false;
        }
    }
    const struct xml_node *ca = a->first_child;
    const struct xml_node *cb = b->first_child;
    for (; ca != NULL && cb != NULL; ca = ca->next, cb = cb->next) {
        if (!tree_equal(ca, cb)) {
            return false;
        }
    }
    return ca == NULL && cb == NULL;
}

/* ---- parsing helper for round trips ---- */

struct collect {
    struct xml_node *stanzas[16];
    size_t n;
};

static void on_stanza(void *ud, struct xml_node *st)
{
    struct collect *c = ud;
    ck_assert_uint_lt(c->n, 16);
    c->stanzas[c->n++] = st;
}

static const char stream_head[] =
    "<stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams'>";

/* Parses one serialised stanza inside a jabber:server stream. */
static struct xml_node *parse_one(const char *xml)
{
    struct collect c = {.n = 0};
    struct xmlparse_limits lim = {.max_stanza = OUT_MAX, .max_depth = 64};
    struct xmlparse_callbacks cb = {.stanza = on_stanza};
    struct xmlparse *p = xmlparse_new(&lim, &cb, &c);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(xmlparse_feed(p, stream_head, strlen(stream_head), NULL),
                     0);
    int rc = xmlparse_feed(p, xml, strlen(xml), NULL);
    ck_assert_msg(rc == 0, "parse failed: %s", xmlparse_error_text(p));
    xmlparse_free(p);
    ck_assert_uint_eq(c.n, 1);
    return c.stanzas[0];
}

/* ---- construction ---- */

START_TEST(test_element_new)
{
    struct xml_node *el = xml_element_new(XML_NS_SERVER, "message");
    ck_assert_ptr_nonnull(el);
    ck_assert_int_eq(el->kind, XML_NODE_ELEMENT);
    ck_assert_str_eq(el->ns, XML_NS_SERVER);
    ck_assert_str_eq(el->name, "message");
    ck_assert_uint_eq(el->refs, 1);
    ck_assert_ptr_null(el->parent);
    ck_assert_uint_eq(el->nattrs, 0);
    xml_unref(el);

    el = xml_element_new(NULL, "x");
    ck_assert_str_eq(el->ns, "");
    xml_unref(el);
}
END_TEST

START_TEST(test_attr_set_get_replace_remove)
{
    struct xml_node *el = xml_element_new(XML_NS_SERVER, "message");
    ck_assert_int_eq(xml_set_attr(el, "to", "a@b"), 0);
    ck_assert_int_eq(xml_set_attr(el, "from", "c@d"), 0);
    ck_assert_str_eq(xml_attr(el, "to"), "a@b");
    ck_assert_int_eq(xml_set_attr(el, "to", "e@f"), 0);
    ck_assert_str_eq(xml_attr(el, "to"), "e@f");
    ck_assert_uint_eq(el->nattrs, 2);
    ck_assert_int_eq(xml_set_attr(el, "to", NULL), 0);
    ck_assert_ptr_null(xml_attr(el, "to"));
    ck_assert_str_eq(xml_attr(el, "from"), "c@d");
    ck_assert_uint_eq(el->nattrs, 1);
    ck_assert_int_eq(xml_set_attr(el, "absent", NULL), 0);
    ck_assert_ptr_null(xml_attr(el, "nope"));
    xml_unref(el);
}
END_TEST

START_TEST(test_attr_many_grow)
{
    struct xml_node *el = xml_element_new(NULL, "x");
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "a%d", i);
        ck_assert_int_eq(xml_set_attr(el, name, name), 0);
    }
    ck_assert_uint_eq(el->nattrs, 100);
    ck_assert_str_eq(xml_attr(el, "a0"), "a0");
    ck_assert_str_eq(xml_attr(el, "a99"), "a99");
    xml_unref(el);
}
END_TEST

START_TEST(test_attr_invalid_names)
{
    struct xml_node *el = xml_element_new(NULL, "x");
    ck_assert_int_eq(xml_set_attr(el, "", "v"), ERR_INVAL);
    ck_assert_int_eq(xml_set_attr(el, "xmlns", "v"), ERR_INVAL);
    ck_assert_int_eq(xml_set_attr(el, "xmlns:foo", "v"), ERR_INVAL);
    ck_assert_int_eq(xml_set_attr(el, "foo:bar", "v"), ERR_INVAL);
    ck_assert_int_eq(xml_set_attr(el,
                                  "\x1f"
                                  "local",
                                  "v"),
                     ERR_INVAL);
    ck_assert_int_eq(xml_set_attr(el, "urn:x\x1f", "v"), ERR_INVAL);
    ck_assert_uint_eq(el->nattrs, 0);
    struct xml_node *t = xml_text_new("t", 1);
    ck_assert_int_eq(xml_set_attr(t, "a", "v"), ERR_INVAL);
    xml_unref(t);
    xml_unref(el);
}
END_TEST

START_TEST(test_attr_xml_namespace_normalised)
{
    struct xml_node *el = xml_element_new(NULL, "x");
    ck_assert_int_eq(xml_set_attr(el,
                                  XML_NS_XML "\x1f"
                                             "lang",
                                  "de"),
                     0);
    ck_assert_str_eq(xml_attr(el, "xml:lang"), "de");
    ck_assert_int_eq(xml_set_attr(el, "xml:lang", "fr"), 0);
    ck_assert_uint_eq(el->nattrs, 1);
    ck_assert_str_eq(xml_attr(el, "xml:lang"), "fr");
    xml_unref(el);
}
END_TEST

START_TEST(test_add_child_inherits_ns)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    struct xml_node *body = xml_add_child(m, NULL, "body");
    struct xml_node *ext = xml_add_child(m, "urn:x", "ext");
    ck_assert_ptr_nonnull(body);
    ck_assert_str_eq(body->ns, XML_NS_SERVER);
    ck_assert_str_eq(ext->ns, "urn:x");
    ck_assert_ptr_eq(body->parent, m);
    ck_assert_ptr_eq(m->first_child, body);
    ck_assert_ptr_eq(m->last_child, ext);
    ck_assert_ptr_eq(body->next, ext);
    xml_unref(m);
}
END_TEST

START_TEST(test_child_lookup)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    ck_assert_int_eq(xml_append_text(m, "lead", 4), 0);
    struct xml_node *b1 = xml_add_child(m, NULL, "body");
    struct xml_node *b2 = xml_add_child(m, "urn:other", "body");
    ck_assert_int_eq(xml_append_text(m, "mid", 3), 0);
    struct xml_node *th = xml_add_child(m, NULL, "thread");
    ck_assert_ptr_eq(xml_child(m, NULL, "body"), b1);
    ck_assert_ptr_eq(xml_child(m, "urn:other", "body"), b2);
    ck_assert_ptr_eq(xml_child(m, "urn:other", NULL), b2);
    ck_assert_ptr_eq(xml_child(m, NULL, "thread"), th);
    ck_assert_ptr_null(xml_child(m, "urn:none", "body"));
    ck_assert_ptr_eq(xml_first_element(m), b1);
    ck_assert_ptr_eq(xml_next_element(b1), b2);
    ck_assert_ptr_eq(xml_next_element(b2), th);
    ck_assert_ptr_null(xml_next_element(th));
    xml_unref(m);
}
END_TEST

START_TEST(test_append_consumes_root)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    struct xml_node *c = xml_element_new("urn:x", "x");
    ck_assert_int_eq(xml_append(m, c), 0);
    ck_assert_ptr_eq(c->parent, m);
    ck_assert_ptr_eq(m->first_child, c);
    xml_unref(m); /* frees c too (checked by the leak run) */
}
END_TEST

START_TEST(test_append_rejects_non_roots)
{
    struct xml_node *a = xml_element_new(NULL, "a");
    struct xml_node *b = xml_add_child(a, NULL, "b");
    struct xml_node *other = xml_element_new(NULL, "o");
    /* b has a parent */
    ck_assert_int_eq(xml_append(other, b), ERR_INVAL);
    ck_assert_ptr_eq(b->parent, a);
    /* a is b's root: a cycle */
    ck_assert_int_eq(xml_append(b, a), ERR_INVAL);
    ck_assert_ptr_null(a->parent);
    /* a shared root */
    xml_ref(other);
    ck_assert_int_eq(xml_append(a, other), ERR_INVAL);
    xml_unref(other);
    /* a text node cannot take children */
    struct xml_node *t = xml_text_new("t", 1);
    ck_assert_int_eq(xml_append(t, other), ERR_INVAL);
    xml_unref(t);
    xml_unref(other);
    xml_unref(a);
}
END_TEST

START_TEST(test_text_merge_and_concat)
{
    struct xml_node *b = xml_element_new(NULL, "body");
    ck_assert_int_eq(xml_append_text(b, "Hello, ", 7), 0);
    ck_assert_int_eq(xml_append_text(b, "world", 5), 0);
    ck_assert_ptr_eq(b->first_child, b->last_child); /* merged */
    ck_assert_int_eq(xml_append_text(b, "", 0), 0);
    xml_add_child(b, NULL, "br");
    ck_assert_int_eq(xml_append_text(b, "!", 1), 0);
    char *t = xml_text(b);
    ck_assert_str_eq(t, "Hello, world!");
    free(t);
    struct xml_node *e = xml_element_new(NULL, "e");
    t = xml_text(e);
    ck_assert_str_eq(t, "");
    free(t);
    xml_unref(e);
    xml_unref(b);
}
END_TEST

START_TEST(test_text_with_nul)
{
    struct xml_node *t = xml_text_new("a\0b", 3);
    ck_assert_uint_eq(t->text_len, 3);
    ck_assert_int_eq(memcmp(t->text, "a\0b", 4), 0);
    xml_unref(t);
}
END_TEST

START_TEST(test_detach)
{
    struct xml_node *m = xml_element_new(NULL, "m");
    struct xml_node *a = xml_add_child(m, NULL, "a");
    struct xml_node *b = xml_add_child(m, NULL, "b");
    struct xml_node *c = xml_add_child(m, NULL, "c");
    ck_assert_ptr_eq(xml_detach(b), b);
    ck_assert_ptr_null(b->parent);
    ck_assert_uint_eq(b->refs, 1);
    ck_assert_ptr_eq(a->next, c);
    ck_assert_ptr_eq(xml_detach(c), c);
    ck_assert_ptr_eq(m->last_child, a);
    ck_assert_ptr_null(a->next);
    ck_assert_ptr_eq(xml_detach(a), a);
    ck_assert_ptr_null(m->first_child);
    ck_assert_ptr_null(m->last_child);
    ck_assert_int_eq(xml_append(m, b), 0);
    ck_assert_ptr_eq(m->first_child, b);
    xml_unref(a);
    xml_unref(c);
    xml_unref(m);
}
END_TEST

START_TEST(test_ref_unref)
{
    struct xml_node *m = xml_element_new(NULL, "m");
    struct xml_node *c = xml_add_child(m, NULL, "c");
    ck_assert_ptr_eq(xml_ref(m), m);
    ck_assert_uint_eq(m->refs, 2);
    xml_unref(m);
    ck_assert_uint_eq(m->refs, 1);
    xml_unref(c); /* owned by m: ignored */
    ck_assert_ptr_eq(m->first_child, c);
    xml_unref(NULL);
    ck_assert_ptr_null(xml_ref(NULL));
    xml_unref(m);
}
END_TEST

START_TEST(test_copy_deep_and_independent)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_set_attr(m, "to", "a@b");
    xml_set_attr(m,
                 "urn:x\x1f"
                 "k",
                 "v");
    struct xml_node *body = xml_add_child(m, NULL, "body");
    xml_append_text(body, "hi", 2);
    struct xml_node *x = xml_add_child(m, "urn:x", "x");
    xml_add_child(xml_add_child(x, NULL, "y"), NULL, "z");
    xml_append_text(x, "tail", 4);

    struct xml_node *cp = xml_copy(m);
    ck_assert_ptr_nonnull(cp);
    ck_assert_ptr_ne(cp, m);
    ck_assert_uint_eq(cp->refs, 1);
    ck_assert_ptr_null(cp->parent);
    ck_assert(tree_equal(m, cp));
    xml_set_attr(cp, "to", "changed");
    ck_assert_str_eq(xml_attr(m, "to"), "a@b");
    ck_assert(!tree_equal(m, cp));

    /* copying a subtree gives a root */
    struct xml_node *sub = xml_copy(x);
    ck_assert_ptr_null(sub->parent);
    ck_assert(tree_equal(sub, x));
    xml_unref(sub);
    xml_unref(cp);
    xml_unref(m);
}
END_TEST

/* ---- escaping ---- */

START_TEST(test_escape_text_specials)
{
    const char in[] = "a&b<c>d'e\"f\rg\th\ni";
    char *s = esc(in, sizeof(in) - 1, false);
    ck_assert_str_eq(s, "a&amp;b&lt;c&gt;d'e\"f&#13;g\th\ni");
    free(s);
}
END_TEST

START_TEST(test_escape_attr_specials)
{
    const char in[] = "a&b<c>d'e\"f\rg\th\ni";
    char *s = esc(in, sizeof(in) - 1, true);
    ck_assert_str_eq(s, "a&amp;b&lt;c&gt;d&apos;e&quot;f&#13;g&#9;h&#10;i");
    free(s);
}
END_TEST

START_TEST(test_escape_controls_replaced)
{
    const char in[] = "x\x01y\0z\x1f";
    char *s = esc(in, sizeof(in) - 1, false);
    ck_assert_str_eq(s, "x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd");
    free(s);
}
END_TEST

START_TEST(test_escape_plain_and_utf8_untouched)
{
    const char in[] = "caf\xc3\xa9 \xe2\x98\xba plain text";
    char *s = esc(in, sizeof(in) - 1, true);
    ck_assert_str_eq(s, in);
    free(s);
    s = esc("", 0, false);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

START_TEST(test_escape_bound)
{
    struct buf b;
    buf_init(&b, 8);
    ck_assert_int_eq(xml_escape(&b, "abc&", 4, false), 0); /* 8 bytes */
    ck_assert_int_eq(xml_escape(&b, "x", 1, false), ERR_TOO_BIG);
    buf_free(&b);
}
END_TEST

/* ---- serialisation ---- */

START_TEST(test_serialize_inherited_ns)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_set_attr(m, "to", "a@b");
    xml_append_text(xml_add_child(m, NULL, "body"), "hi", 2);
    ck_ser(m, XML_NS_SERVER, "<message to='a@b'><body>hi</body></message>");
    xml_unref(m);
}
END_TEST

START_TEST(test_serialize_differing_ns)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_add_child(m, NULL, "body");
    ck_ser(m, XML_NS_COMPONENT,
           "<message xmlns='jabber:server'><body/></message>");
    ck_ser(m, NULL, "<message xmlns='jabber:server'><body/></message>");
    xml_unref(m);
}
END_TEST

START_TEST(test_serialize_nested_ns)
{
    struct xml_node *iq = xml_element_new(XML_NS_SERVER, "iq");
    struct xml_node *q =
        xml_add_child(iq, "http://jabber.org/protocol/disco#info", "query");
    xml_add_child(q, NULL, "identity");
    xml_add_child(q, XML_NS_SERVER, "back");
    xml_add_child(iq, "", "nons");
    ck_ser(iq, XML_NS_SERVER,
           "<iq><query xmlns='http://jabber.org/protocol/disco#info'>"
           "<identity/><back xmlns='jabber:server'/></query>"
           "<nons xmlns=''/></iq>");
    xml_unref(iq);
}
END_TEST

START_TEST(test_serialize_prefixed_attrs)
{
    struct xml_node *x = xml_element_new("urn:el", "x");
    xml_set_attr(x, "plain", "p");
    xml_set_attr(x,
                 "urn:a\x1f"
                 "one",
                 "1");
    xml_set_attr(x,
                 "urn:b\x1f"
                 "two",
                 "2");
    xml_set_attr(x,
                 "urn:a\x1f"
                 "three",
                 "3");
    ck_ser(x, "urn:el",
           "<x plain='p' xmlns:ns1='urn:a' ns1:one='1' xmlns:ns2='urn:b' "
           "ns2:two='2' ns1:three='3'/>");
    xml_unref(x);
}
END_TEST

START_TEST(test_serialize_xml_lang)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_set_attr(m, "xml:lang", "en");
    ck_ser(m, XML_NS_SERVER, "<message xml:lang='en'/>");
    xml_unref(m);
}
END_TEST

START_TEST(test_serialize_escapes)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_set_attr(m, "id", "a'b\"c<&>");
    xml_append_text(xml_add_child(m, NULL, "body"), "<x>&'\"", 6);
    ck_ser(m, XML_NS_SERVER,
           "<message id='a&apos;b&quot;c&lt;&amp;&gt;'>"
           "<body>&lt;x&gt;&amp;'\"</body></message>");
    xml_unref(m);
}
END_TEST

START_TEST(test_serialize_text_node_and_subtree)
{
    struct xml_node *t = xml_text_new("a<b", 3);
    ck_ser(t, NULL, "a&lt;b");
    xml_unref(t);
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    struct xml_node *x = xml_add_child(m, "urn:x", "x");
    xml_add_child(x, NULL, "y");
    /* the subtree alone, written where urn:x is already in force */
    ck_ser(x, "urn:x", "<x><y/></x>");
    ck_ser(x, XML_NS_SERVER, "<x xmlns='urn:x'><y/></x>");
    xml_unref(m);
}
END_TEST

START_TEST(test_serialize_bound)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_append_text(xml_add_child(m, NULL, "body"), "hello", 5);
    const char *want = "<message><body>hello</body></message>";
    struct buf b;
    buf_init(&b, strlen(want));
    ck_assert_int_eq(xml_serialize(m, XML_NS_SERVER, &b), 0);
    ck_assert_str_eq(buf_peek(&b), want);
    buf_free(&b);
    for (size_t max = 0; max < strlen(want); max++) {
        buf_init(&b, max);
        ck_assert_int_eq(xml_serialize(m, XML_NS_SERVER, &b), ERR_TOO_BIG);
        ck_assert_uint_le(b.len, max);
        buf_free(&b);
    }
    xml_unref(m);
}
END_TEST

START_TEST(test_deep_tree_no_recursion)
{
    /* Far deeper than any C stack would allow with recursive walks. */
    enum { DEPTH = 200000 };
    struct xml_node *root = xml_element_new("urn:d", "d");
    struct xml_node *n = root;
    for (int i = 0; i < DEPTH; i++) {
        n = xml_add_child(n, NULL, "d");
        ck_assert_ptr_nonnull(n);
    }
    xml_append_text(n, "x", 1);
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    ck_assert_int_eq(xml_serialize(root, "urn:d", &b), 0);
    ck_assert_uint_eq(buf_size(&b), (size_t)(DEPTH + 1) * 7 + 1);
    buf_free(&b);
    struct xml_node *cp = xml_copy(root);
    ck_assert_ptr_nonnull(cp);
    xml_unref(cp);
    xml_unref(root);
}
END_TEST

/* ---- round trips through the parser ---- */

START_TEST(test_roundtrip_parsed)
{
    const char *in =
        "<message from='juliet@example.org/balcony' to='romeo@example.net' "
        "type='chat' xml:lang='en' id='m&apos;1'><body>a &amp; b &lt; c "
        "&gt; d ' \" &#13; caf\xc3\xa9</body>"
        "<x xmlns='urn:x' xmlns:p='urn:p' p:a='1&#9;&#10;2' b='&quot;'>"
        "<y><z xmlns='' k='v'/></y>text<![CDATA[<raw>]]></x>"
        "<db:result xmlns:db='jabber:server:dialback'>k</db:result>"
        "</message>";
    struct xml_node *a = parse_one(in);
    char *s = ser(a, XML_NS_SERVER);
    struct xml_node *b = parse_one(s);
    ck_assert_msg(tree_equal(a, b), "round trip differs: %s", s);
    /* and serialising again is a fixed point */
    char *s2 = ser(b, XML_NS_SERVER);
    ck_assert_str_eq(s, s2);
    free(s2);
    free(s);
    xml_unref(a);
    xml_unref(b);
}
END_TEST

START_TEST(test_roundtrip_built)
{
    struct xml_node *m = xml_element_new(XML_NS_SERVER, "message");
    xml_set_attr(m, "to", "a'b\"c&d<e>f\tg\nh\ri");
    xml_set_attr(m, "xml:lang", "en");
    xml_set_attr(m,
                 "urn:p\x1f"
                 "q",
                 "v");
    struct xml_node *body = xml_add_child(m, NULL, "body");
    xml_append_text(body, "&<>'\"\r\n\t ]]> end", 16);
    struct xml_node *x = xml_add_child(m, "urn:x", "x");
    xml_add_child(x, "", "bare");
    xml_add_child(x, XML_NS_SERVER, "back");
    char *s = ser(m, XML_NS_SERVER);
    struct xml_node *p = parse_one(s);
    ck_assert_msg(tree_equal(m, p), "round trip differs: %s", s);
    free(s);
    xml_unref(p);
    xml_unref(m);
}
END_TEST

static Suite *xml_suite(void)
{
    Suite *s = suite_create("xml");
    TCase *tc = tcase_create("tree");
    tcase_add_test(tc, test_element_new);
    tcase_add_test(tc, test_attr_set_get_replace_remove);
    tcase_add_test(tc, test_attr_many_grow);
    tcase_add_test(tc, test_attr_invalid_names);
    tcase_add_test(tc, test_attr_xml_namespace_normalised);
    tcase_add_test(tc, test_add_child_inherits_ns);
    tcase_add_test(tc, test_child_lookup);
    tcase_add_test(tc, test_append_consumes_root);
    tcase_add_test(tc, test_append_rejects_non_roots);
    tcase_add_test(tc, test_text_merge_and_concat);
    tcase_add_test(tc, test_text_with_nul);
    tcase_add_test(tc, test_detach);
    tcase_add_test(tc, test_ref_unref);
    tcase_add_test(tc, test_copy_deep_and_independent);
    suite_add_tcase(s, tc);

    tc = tcase_create("escape");
    tcase_add_test(tc, test_escape_text_specials);
    tcase_add_test(tc, test_escape_attr_specials);
    tcase_add_test(tc, test_escape_controls_replaced);
    tcase_add_test(tc, test_escape_plain_and_utf8_untouched);
    tcase_add_test(tc, test_escape_bound);
    suite_add_tcase(s, tc);

    tc = tcase_create("serialize");
    tcase_add_test(tc, test_serialize_inherited_ns);
    tcase_add_test(tc, test_serialize_differing_ns);
    tcase_add_test(tc, test_serialize_nested_ns);
    tcase_add_test(tc, test_serialize_prefixed_attrs);
    tcase_add_test(tc, test_serialize_xml_lang);
    tcase_add_test(tc, test_serialize_escapes);
    tcase_add_test(tc, test_serialize_text_node_and_subtree);
    tcase_add_test(tc, test_serialize_bound);
    tcase_add_test(tc, test_deep_tree_no_recursion);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("roundtrip");
    tcase_add_test(tc, test_roundtrip_parsed);
    tcase_add_test(tc, test_roundtrip_built);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(xml_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
