/*
 * check_xmlparse.c: the XMPP stream parser: chunking independence,
 * restricted XML, size and depth limits, stream restarts, the reparse
 * deferral regression, and a randomised robustness run.
 */
#include "config.h"

#include "xmlparse.h"

#include "buf.h"
#include "err.h"
#include "xml.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MAX (16 * 1024 * 1024)

/* Records every event as text, so runs can be compared byte for byte. */
struct rec {
    struct xmlparse *p;
    struct buf log;
    int headers;
    int stanzas;
    int ends;
    const char *stop_on;   /* stop after a stanza with this local name */
    bool stop_on_header;   /* stop after the header */
    bool stop_on_end;      /* stop after the stream end */
    struct xml_node *last; /* the last stanza, kept */
};

static void rec_header(void *ud, const struct xmlparse_header *h)
{
    struct rec *r = ud;
    r->headers++;
    buf_printf(&r->log, "H ns=%s name=%s default=%s attrs=[", h->ns, h->name,
               h->default_ns);
    for (size_t i = 0; i < h->nattrs; i++) {
        buf_printf(&r->log, "%s=%s;", h->attrs[i].name, h->attrs[i].value);
    }
    buf_append_str(&r->log, "] prefixes=[");
    for (size_t i = 0; i < h->nprefixes; i++) {
        buf_printf(&r->log, "%s=%s;", h->prefixes[i], h->prefix_uris[i]);
    }
    buf_append_str(&r->log, "]\n");
    if (r->stop_on_header) {
        xmlparse_stop(r->p);
    }
}

static void rec_stanza(void *ud, struct xml_node *st)
{
    struct rec *r = ud;
    r->stanzas++;
    buf_append_str(&r->log, "S ");
    ck_assert_int_eq(xml_serialize(st, XML_NS_SERVER, &r->log), 0);
    buf_append_str(&r->log, "\n");
    if (r->stop_on != NULL && strcmp(st->name, r->stop_on) == 0) {
        xmlparse_stop(r->p);
    }
    xml_unref(r->last);
    r->last = st;
}

static void rec_end(void *ud)
{
    struct rec *r = ud;
    r->ends++;
    buf_append_str(&r->log, "E\n");
    if (r->stop_on_end) {
        xmlparse_stop(r->p);
    }
}

static const struct xmlparse_callbacks rec_cb = {
    .header = rec_header,
    .stanza = rec_stanza,
    .end = rec_end,
};

static void rec_init(struct rec *r, size_t max_stanza, unsigned max_depth)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->log, LOG_MAX);
    struct xmlparse_limits lim = {.max_stanza = max_stanza,
                                  .max_depth = max_depth};
    r->p = xmlparse_new(&lim, &rec_cb, r);
    ck_assert_ptr_nonnull(r->p);
}

static void rec_free(struct rec *r)
{
    xmlparse_free(r->p);
    xml_unref(r->last);
    buf_free(&r->log);
}

static int feed_str(struct rec *r, const char *s)
{
    return xmlparse_feed(r->p, s, strlen(s), NULL);
}

static const char hdr[] =
    "<?xml version='1.0'?>"
    "<stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' "
    "xmlns:db='jabber:server:dialback' id='D60000229F' from='example.org' "
    "to='xmpp.example.com' version='1.0' xml:lang='en'>";

/* A realistic s2s stream. */
static const char stream_text[] =
    "<?xml version='1.0'?>\n"
    "<stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' "
    "xmlns:db='jabber:server:dialback' id='D60000229F' from='example.org' "
    "to='xmpp.example.com' version='1.0' xml:lang='en'>\n"
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
    "<required/></starttls><dialback xmlns='urn:xmpp:features:dialback'/>"
    "</stream:features>\n"
    "<db:result from='example.org' to='xmpp.example.com'>"
    "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
    "</db:result> \n \t \n"
    "<message from='juliet@example.org/balcony' to='romeo@xmpp.example.com' "
    "type='chat' id='m1' xml:lang='en'><body>Wherefore art thou, Romeo? "
    "&amp; &lt;3 &#x263A; caf\xc3\xa9</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    "<thread>t1</thread></message>"
    "<iq type='get' id='i1' from='example.org' to='xmpp.example.com'>"
    "<query xmlns='http://jabber.org/protocol/disco#info' node='n'>"
    "<x xmlns:foo='urn:foo' foo:bar='baz' foo:qux='1'/></query></iq>\n"
    "<presence from='a@example.org/r' to='b@xmpp.example.com'><show>away"
    "</show><status>multi\r\nline  text with\ttab</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' "
    "ver='v'/></presence>"
    "<message to='x@y'><body><![CDATA[<not a tag> & raw]]></body></message>"
    "</stream:stream>";

static const char stream_expected[] =
    "H ns=http://etherx.jabber.org/streams name=stream default=jabber:server "
    "attrs=[id=D60000229F;from=example.org;to=xmpp.example.com;version=1.0;"
    "xml:lang=en;] prefixes=[=jabber:server;"
    "stream=http://etherx.jabber.org/streams;db=jabber:server:dialback;]\n"
    "S <features xmlns='http://etherx.jabber.org/streams'>"
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    "<dialback xmlns='urn:xmpp:features:dialback'/></features>\n"
    "S <result xmlns='jabber:server:dialback' from='example.org' "
    "to='xmpp.example.com'>"
    "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
    "</result>\n"
    "S <message from='juliet@example.org/balcony' to='romeo@xmpp.example.com' "
    "type='chat' id='m1' xml:lang='en'><body>Wherefore art thou, Romeo? "
    "&amp; &lt;3 \xe2\x98\xba caf\xc3\xa9</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/>"
    "<thread>t1</thread></message>\n"
    "S <iq type='get' id='i1' from='example.org' to='xmpp.example.com'>"
    "<query xmlns='http://jabber.org/protocol/disco#info' node='n'>"
    "<x xmlns:ns1='urn:foo' ns1:bar='baz' ns1:qux='1'/></query></iq>\n"
    "S <presence from='a@example.org/r' to='b@xmpp.example.com'><show>away"
    "</show><status>multi\nline  text with\ttab</status>"
    "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' "
    "ver='v'/></presence>\n"
    "S <message to='x@y'><body>&lt;not a tag&gt; &amp; raw</body></message>\n"
    "E\n";

static const size_t stream_len = sizeof(stream_text) - 1;

/* Feeds stream_text in the given pieces and checks the transcript. */
static void run_stream_chunks(const size_t *cuts, size_t ncuts)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    size_t off = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : stream_len;
        size_t used = 0;
        int rc = xmlparse_feed(r.p, stream_text + off, end - off, &used);
        ck_assert_msg(rc == 0, "feed at %zu: %d %s", off, rc,
                      xmlparse_error_text(r.p));
        ck_assert_uint_eq(used, end - off);
        off = end;
    }
    ck_assert_str_eq(buf_peek(&r.log), stream_expected);
    rec_free(&r);
}

START_TEST(test_stream_whole)
{
    run_stream_chunks(NULL, 0);
}
END_TEST

START_TEST(test_stream_split_every_point)
{
    for (size_t cut = 1; cut < stream_len; cut++) {
        run_stream_chunks(&cut, 1);
    }
}
END_TEST

START_TEST(test_stream_byte_at_a_time)
{
    size_t *cuts = malloc(stream_len * sizeof(*cuts));
    for (size_t i = 0; i < stream_len - 1; i++) {
        cuts[i] = i + 1;
    }
    run_stream_chunks(cuts, stream_len - 1);
    free(cuts);
}
END_TEST

START_TEST(test_header_prefixes)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(
        feed_str(&r, "<stream:stream xmlns:stream='"
                     "http://etherx.jabber.org/streams' xmlns='jabber:"
                     "component:accept' xmlns:db='jabber:server:dialback' "
                     "to='gw.example.org'>"),
        0);
    ck_assert_int_eq(r.headers, 1);
    ck_assert_str_eq(buf_peek(&r.log),
                     "H ns=http://etherx.jabber.org/streams name=stream "
                     "default=jabber:component:accept attrs=[to=gw.example."
                     "org;] prefixes=[stream=http://etherx.jabber.org/streams;"
                     "=jabber:component:accept;db=jabber:server:dialback;]\n");
    rec_free(&r);
}
END_TEST

START_TEST(test_header_without_default_ns)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, "<stream:stream xmlns:stream='"
                                  "http://etherx.jabber.org/streams'>"),
                     0);
    ck_assert_str_eq(buf_peek(&r.log),
                     "H ns=http://etherx.jabber.org/streams name=stream "
                     "default= attrs=[] prefixes=[stream=http://etherx."
                     "jabber.org/streams;]\n");
    rec_free(&r);
}
END_TEST

START_TEST(test_namespaced_attrs_in_stanza)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message xmlns:p='urn:p' p:a='1' b='2' "
                                  "xml:lang='de'><db:verify id='x'/>"
                                  "</message>"),
                     0);
    struct xml_node *m = r.last;
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->ns, "jabber:server");
    ck_assert_str_eq(xml_attr(m, "urn:p\x1f"
                                 "a"),
                     "1");
    ck_assert_str_eq(xml_attr(m, "b"), "2");
    ck_assert_str_eq(xml_attr(m, "xml:lang"), "de");
    struct xml_node *v = xml_first_element(m);
    ck_assert_str_eq(v->ns, "jabber:server:dialback");
    ck_assert_str_eq(v->name, "verify");
    rec_free(&r);
}
END_TEST

START_TEST(test_keepalives_ignored)
{
    struct rec r;
    rec_init(&r, 1024, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, " "), 0);
    ck_assert_int_eq(feed_str(&r, "<message/>\n\n  \t"), 0);
    ck_assert_int_eq(feed_str(&r, " <message/> "), 0);
    ck_assert_int_eq(r.stanzas, 2);
    ck_assert_ptr_null(r.last->first_child);
    /* Keepalives never count towards the size limit: 64 KiB of them with a
     * 1 KiB limit, in 1 KiB pieces, then a stanza. */
    char ws[1024];
    memset(ws, ' ', sizeof(ws));
    for (int i = 0; i < 64; i++) {
        ck_assert_int_eq(xmlparse_feed(r.p, ws, sizeof(ws), NULL), 0);
    }
    ck_assert_int_eq(feed_str(&r, "<iq/>"), 0);
    ck_assert_int_eq(r.stanzas, 3);
    rec_free(&r);
}
END_TEST

START_TEST(test_stream_end_callback)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message/>"), 0);
    ck_assert_int_eq(r.ends, 0);
    ck_assert_int_eq(feed_str(&r, "</stream:stream>"), 0);
    ck_assert_int_eq(r.ends, 1);
    ck_assert_int_eq(r.stanzas, 1);
    /* nothing may follow the end but whitespace */
    ck_assert_int_eq(feed_str(&r, " \n"), 0);
    ck_assert_int_eq(feed_str(&r, "<message/>"), ERR_XML_MALFORMED);
    rec_free(&r);
}
END_TEST

/* ---- restricted XML ---- */

static void expect_error(const char *text, int code)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    int rc = feed_str(&r, text);
    ck_assert_msg(rc == code, "got %d (%s), want %d for: %s", rc,
                  xmlparse_error_text(r.p), code, text);
    /* sticky until reset */
    ck_assert_int_eq(feed_str(&r, "<message/>"), code);
    ck_assert_int_eq(r.stanzas, 0);
    rec_free(&r);
}

START_TEST(test_reject_doctype)
{
    expect_error("<?xml version='1.0'?><!DOCTYPE stream>"
                 "<stream:stream xmlns:stream='"
                 "http://etherx.jabber.org/streams'>",
                 ERR_XML_RESTRICTED);
}
END_TEST

START_TEST(test_reject_entity_decl)
{
    expect_error("<!DOCTYPE s [<!ENTITY x 'boom'>]><s>&x;</s>",
                 ERR_XML_RESTRICTED);
}
END_TEST

START_TEST(test_reject_billion_laughs)
{
    expect_error("<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
                 "<!ENTITY lol1 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>"
                 "<!ENTITY lol2 '&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;'>"
                 "<!ENTITY lol3 '&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;'>"
                 "<!ENTITY lol4 '&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;'>"
                 "<!ENTITY lol5 '&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;'>"
                 "]><lolz>&lol5;</lolz>",
                 ERR_XML_RESTRICTED);
}
END_TEST

START_TEST(test_reject_comment_in_stanza)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message><!-- hi --></message>"),
                     ERR_XML_RESTRICTED);
    ck_assert_int_eq(r.stanzas, 0);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_comment_top_level)
{
    expect_error("<!-- before the header -->", ERR_XML_RESTRICTED);
}
END_TEST

START_TEST(test_reject_comment_between_stanzas)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message/><!-- x -->"), ERR_XML_RESTRICTED);
    ck_assert_int_eq(r.stanzas, 1);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_pi)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message><?foo bar?></message>"),
                     ERR_XML_RESTRICTED);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_pi_top_level)
{
    expect_error("<?xml version='1.0'?><?xml-stylesheet href='a'?>",
                 ERR_XML_RESTRICTED);
}
END_TEST

START_TEST(test_reject_undefined_entity)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message><body>&foo;</body></message>"),
                     ERR_XML_RESTRICTED);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_non_utf8_encoding)
{
    expect_error("<?xml version='1.0' encoding='ISO-8859-1'?>"
                 "<stream:stream xmlns:stream='"
                 "http://etherx.jabber.org/streams'>",
                 ERR_XML_BAD_ENCODING);
}
END_TEST

START_TEST(test_accept_utf8_any_case)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, "<?xml version='1.0' encoding='utf-8'?>"
                                  "<stream:stream xmlns:stream='"
                                  "http://etherx.jabber.org/streams'>"),
                     0);
    ck_assert_int_eq(r.headers, 1);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_mismatched_tag)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message><body></message>"),
                     ERR_XML_MALFORMED);
    ck_assert_ptr_nonnull(strstr(xmlparse_error_text(r.p), "mismatched tag"));
    ck_assert_ptr_nonnull(strstr(xmlparse_error_text(r.p), "line 1"));
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_unclosed_at_stream_end)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message><body>hi"), 0);
    ck_assert_int_eq(feed_str(&r, "</stream:stream>"), ERR_XML_MALFORMED);
    ck_assert_int_eq(r.stanzas, 0);
    ck_assert_int_eq(r.ends, 0);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_invalid_utf8)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    /* RFC 6120 4.9.3.22: bytes that are not UTF-8 are
     * unsupported-encoding, not merely bad XML */
    ck_assert_int_eq(feed_str(&r, "<message><body>\xc3\x28</body></message>"),
                     ERR_XML_BAD_ENCODING);
    ck_assert_int_eq(strncmp(xmlparse_error_text(r.p), "invalid UTF-8 (", 15),
                     0);
    rec_free(&r);
}
END_TEST

/* After the header, in one feed or split before the bad byte. */
static void expect_after_header(const char *text, int code)
{
    for (int split = 0; split < 2; split++) {
        struct rec r;
        rec_init(&r, 65536, 16);
        ck_assert_int_eq(feed_str(&r, hdr), 0);
        int rc;
        if (split) {
            /* cut just after the first byte above 0x7f: a lead byte
             * waits in expat's buffer and the error shows in the next
             * feed, at a position in the earlier one */
            size_t n = strlen(text);
            size_t cut = n - 1;
            for (size_t i = 0; i < n; i++) {
                if ((unsigned char)text[i] >= 0x80) {
                    cut = i + 1;
                    break;
                }
            }
            rc = xmlparse_feed(r.p, text, cut, NULL);
            if (rc == 0 && cut < n) {
                rc = xmlparse_feed(r.p, text + cut, n - cut, NULL);
            }
        } else {
            rc = feed_str(&r, text);
        }
        ck_assert_msg(rc == code, "got %d (%s), want %d for split=%d: %s", rc,
                      xmlparse_error_text(r.p), code, split, text);
        ck_assert_int_eq(r.stanzas, 0);
        rec_free(&r);
    }
}

START_TEST(test_reject_invalid_utf8_kinds)
{
    static const char *const bad[] = {
        "<m>\x80</m>",             /* stray continuation byte */
        "<m>\xc0\xaf</m>",         /* overlong '/' */
        "<m>\xe0\x80\xaf</m>",     /* overlong, 3 bytes */
        "<m>\xed\xa0\x80</m>",     /* UTF-16 surrogate */
        "<m>\xf4\x90\x80\x80</m>", /* beyond U+10FFFF */
        "<m>\xf8\x88\x80\x80</m>", /* 5-byte form */
        "<m>\xe2\x82</m>",         /* lead byte cut short */
        "<m>\xfe</m>",
        "<m to='a\xff'/>", /* in an attribute value */
        "<m\xc3/>",        /* in a name */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect_after_header(bad[i], ERR_XML_BAD_ENCODING);
    }
}
END_TEST

START_TEST(test_valid_utf8_not_xml_is_malformed)
{
    /* UTF-8, but not XML characters: not-well-formed */
    expect_after_header("<m>\x01</m>", ERR_XML_MALFORMED);
    expect_after_header("<m>\xef\xbf\xbe</m>", ERR_XML_MALFORMED);
    expect_after_header("<m><</m>", ERR_XML_MALFORMED);
}
END_TEST

START_TEST(test_accept_multibyte_utf8)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(
        feed_str(
            &r,
            "<m a='\xc3\xa9'>\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbd</m>"),
        0);
    ck_assert_int_eq(r.stanzas, 1);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_utf16_stream)
{
    /* a whole header in UTF-16: expat would follow the BOM (or the
     * 00 3C pattern) although the parser is for UTF-8 */
    static const char le_bom[] = "\xff\xfe<\0s\0";
    static const char be_bom[] = "\xfe\xff\0<\0s";
    static const char le[] = "<\0s\0";
    static const char be[] = "\0<\0s";
    static const char *const v[] = {le_bom, be_bom, le, be};
    for (size_t i = 0; i < 4; i++) {
        for (size_t cut = 1; cut <= 2; cut++) {
            struct rec r;
            rec_init(&r, 65536, 16);
            int rc = xmlparse_feed(r.p, v[i], cut, NULL);
            if (rc == 0) {
                rc = xmlparse_feed(r.p, v[i] + cut, 4 - cut, NULL);
            }
            ck_assert_msg(rc == ERR_XML_BAD_ENCODING, "variant %zu cut %zu: %d",
                          i, cut, rc);
            ck_assert_int_eq(r.headers, 0);
            /* and again on the stream after a reset (TLS, SASL restart) */
            ck_assert_int_eq(xmlparse_reset(r.p), 0);
            ck_assert_int_eq(feed_str(&r, hdr), 0);
            ck_assert_int_eq(xmlparse_reset(r.p), 0);
            ck_assert_int_eq(xmlparse_feed(r.p, v[i], 4, NULL),
                             ERR_XML_BAD_ENCODING);
            rec_free(&r);
        }
    }
    /* a UTF-8 byte order mark is fine */
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, "\xef\xbb\xbf"), 0);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(r.headers, 1);
    rec_free(&r);
}
END_TEST

START_TEST(test_reject_second_header_without_reset)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, hdr), ERR_XML_MALFORMED);
    rec_free(&r);
}
END_TEST

START_TEST(test_reset_after_error)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    ck_assert_int_eq(feed_str(&r, "<!-- x -->"), ERR_XML_RESTRICTED);
    ck_assert_int_eq(xmlparse_reset(r.p), 0);
    ck_assert_str_eq(xmlparse_error_text(r.p), "no error");
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message/>"), 0);
    ck_assert_int_eq(r.headers, 1);
    ck_assert_int_eq(r.stanzas, 1);
    rec_free(&r);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_too_big_single_attribute_early)
{
    enum { LIMIT = 64 * 1024, HUGE = 1024 * 1024 };
    struct rec r;
    rec_init(&r, LIMIT, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    char *big = malloc(HUGE);
    const char *head = "<message to='";
    memcpy(big, head, strlen(head));
    memset(big + strlen(head), 'A', HUGE - strlen(head));
    size_t used = 0;
    ck_assert_int_eq(xmlparse_feed(r.p, big, HUGE, &used), ERR_XML_TOO_BIG);
    /* expat saw no more than the limit */
    ck_assert_uint_le(used, LIMIT);
    ck_assert_int_eq(r.stanzas, 0);
    ck_assert_ptr_nonnull(strstr(xmlparse_error_text(r.p), "65536"));
    ck_assert_int_eq(xmlparse_feed(r.p, "'/>", 3, NULL), ERR_XML_TOO_BIG);
    free(big);
    rec_free(&r);
}
END_TEST

START_TEST(test_too_big_many_small_chunks)
{
    enum { LIMIT = 4096 };
    struct rec r;
    rec_init(&r, LIMIT, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message><body>"), 0);
    size_t total = strlen("<message><body>");
    char chunk[100];
    memset(chunk, 'b', sizeof(chunk));
    int rc = 0;
    size_t used = 0;
    while (rc == 0) {
        rc = xmlparse_feed(r.p, chunk, sizeof(chunk), &used);
        total += used;
        ck_assert_uint_le(total, LIMIT + sizeof(chunk));
    }
    ck_assert_int_eq(rc, ERR_XML_TOO_BIG);
    ck_assert_uint_eq(total, LIMIT);
    rec_free(&r);
}
END_TEST

START_TEST(test_too_big_header)
{
    enum { LIMIT = 256 };
    struct rec r;
    rec_init(&r, LIMIT, 16);
    char big[1024];
    int n = snprintf(big, sizeof(big), "<stream:stream xmlns:stream='%s' id='",
                     XML_NS_STREAM);
    memset(big + n, 'i', sizeof(big) - (size_t)n);
    ck_assert_int_eq(xmlparse_feed(r.p, big, sizeof(big), NULL),
                     ERR_XML_TOO_BIG);
    ck_assert_int_eq(r.headers, 0);
    rec_free(&r);
}
END_TEST

/* A stanza of exactly the limit passes, one byte more does not. */
START_TEST(test_limit_is_exact)
{
    const char *start = "<message><body>";
    const char *end = "</body></message>";
    for (int extra = 0; extra <= 1; extra++) {
        enum { LIMIT = 1000 };
        struct rec r;
        rec_init(&r, LIMIT, 16);
        ck_assert_int_eq(feed_str(&r, hdr), 0);
        char st[LIMIT + 1];
        size_t body = LIMIT + (size_t)extra - strlen(start) - strlen(end);
        memcpy(st, start, strlen(start));
        memset(st + strlen(start), 'x', body);
        memcpy(st + strlen(start) + body, end, strlen(end));
        int rc = xmlparse_feed(r.p, st, LIMIT + (size_t)extra, NULL);
        ck_assert_int_eq(rc, extra == 0 ? 0 : ERR_XML_TOO_BIG);
        ck_assert_int_eq(r.stanzas, extra == 0 ? 1 : 0);
        rec_free(&r);
    }
}
END_TEST

/* A read holding many stanzas may exceed the limit; each stanza does not. */
START_TEST(test_limit_per_stanza_not_per_feed)
{
    enum { LIMIT = 512, N = 1000 };
    struct rec r;
    rec_init(&r, LIMIT, 16);
    struct buf b;
    buf_init(&b, 1024 * 1024);
    buf_append_str(&b, hdr);
    for (int i = 0; i < N; i++) {
        buf_printf(&b, "<message id='%d'><body>%0200d</body></message>", i, i);
    }
    size_t used = 0;
    ck_assert_int_eq(xmlparse_feed(r.p, buf_peek(&b), buf_size(&b), &used), 0);
    ck_assert_uint_eq(used, buf_size(&b));
    ck_assert_int_eq(r.stanzas, N);
    buf_free(&b);
    rec_free(&r);
}
END_TEST

START_TEST(test_set_limits_raises)
{
    enum { SMALL = 1024, BIG = 8192 };
    char st[4096];
    int n = snprintf(st, sizeof(st), "<message><body>");
    memset(st + n, 'z', 3000);
    snprintf(st + n + 3000, sizeof(st) - (size_t)n - 3000, "</body></message>");

    struct rec r;
    rec_init(&r, SMALL, 16);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    struct xmlparse_limits lim = {.max_stanza = BIG, .max_depth = 16};
    xmlparse_set_limits(r.p, &lim);
    ck_assert_int_eq(feed_str(&r, st), 0);
    ck_assert_int_eq(r.stanzas, 1);
    /* and lowered again */
    lim.max_stanza = SMALL;
    xmlparse_set_limits(r.p, &lim);
    ck_assert_int_eq(feed_str(&r, st), ERR_XML_TOO_BIG);
    rec_free(&r);
}
END_TEST

START_TEST(test_depth_limit)
{
    struct rec r;
    rec_init(&r, 65536, 3);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<a><b><c/></b></a>"), 0);
    ck_assert_int_eq(r.stanzas, 1);
    ck_assert_int_eq(feed_str(&r, "<a><b><c><d/></c></b></a>"),
                     ERR_XML_TOO_DEEP);
    ck_assert_int_eq(r.stanzas, 1);
    rec_free(&r);
}
END_TEST

START_TEST(test_depth_limit_one)
{
    struct rec r;
    rec_init(&r, 65536, 1);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<a>text</a>"), 0);
    ck_assert_int_eq(feed_str(&r, "<a><b/></a>"), ERR_XML_TOO_DEEP);
    rec_free(&r);
}
END_TEST

/* ---- stream restarts ---- */

static const char restart_ns_hdr[] =
    "<stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='b' version='1.0'>";

START_TEST(test_stop_and_restart_same_buffer)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    r.stop_on = "success";
    const char *first = "<?xml version='1.0'?>";
    const char *success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>";
    struct buf b;
    buf_init(&b, 4096);
    buf_append_str(&b, first);
    buf_append_str(&b, restart_ns_hdr);
    buf_append_str(&b, "<message id='1'/>");
    buf_append_str(&b, success);
    size_t cut = buf_size(&b);
    buf_append_str(&b, "<?xml version='1.0'?>");
    buf_append_str(&b, restart_ns_hdr);
    buf_append_str(&b, "<message id='2'/>");

    size_t used = 0;
    ck_assert_int_eq(xmlparse_feed(r.p, buf_peek(&b), buf_size(&b), &used),
                     ERR_AGAIN);
    ck_assert_uint_eq(used, cut);
    ck_assert_int_eq(r.stanzas, 2);
    /* without a reset nothing more is taken */
    ck_assert_int_eq(xmlparse_feed(r.p, "x", 1, NULL), ERR_INVAL);
    ck_assert_int_eq(xmlparse_reset(r.p), 0);
    r.stop_on = NULL;
    size_t rest = buf_size(&b) - used;
    ck_assert_int_eq(xmlparse_feed(r.p, buf_peek(&b) + used, rest, &used), 0);
    ck_assert_uint_eq(used, rest);
    ck_assert_int_eq(r.headers, 2);
    ck_assert_int_eq(r.stanzas, 3);
    ck_assert_str_eq(xml_attr(r.last, "id"), "2");
    buf_free(&b);
    rec_free(&r);
}
END_TEST

START_TEST(test_stop_after_element_with_children)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    r.stop_on = "proceed";
    const char *before = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                         "<x>t</x></proceed>";
    struct buf b;
    buf_init(&b, 4096);
    buf_append_str(&b, restart_ns_hdr);
    buf_append_str(&b, before);
    size_t cut = buf_size(&b);
    buf_append_str(&b, "\x16\x03\x01 TLS bytes, never XML");
    size_t used = 0;
    ck_assert_int_eq(xmlparse_feed(r.p, buf_peek(&b), buf_size(&b), &used),
                     ERR_AGAIN);
    ck_assert_uint_eq(used, cut);
    buf_free(&b);
    rec_free(&r);
}
END_TEST

START_TEST(test_stop_split_across_feeds)
{
    /* The stopping element arrives over two feeds; consumed is relative to
     * the second one. */
    struct rec r;
    rec_init(&r, 65536, 16);
    r.stop_on = "success";
    ck_assert_int_eq(feed_str(&r, restart_ns_hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<success xmlns='urn:ietf:params:xml:ns:"),
                     0);
    const char *tail = "xmpp-sasl'>abc</success><stream:stream ";
    size_t used = 0;
    ck_assert_int_eq(xmlparse_feed(r.p, tail, strlen(tail), &used), ERR_AGAIN);
    ck_assert_uint_eq(used, strlen("xmpp-sasl'>abc</success>"));
    rec_free(&r);
}
END_TEST

START_TEST(test_stop_in_header_callback)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    r.stop_on_header = true;
    struct buf b;
    buf_init(&b, 4096);
    buf_append_str(&b, restart_ns_hdr);
    buf_append_str(&b, "<message/>");
    size_t used = 0;
    ck_assert_int_eq(xmlparse_feed(r.p, buf_peek(&b), buf_size(&b), &used),
                     ERR_AGAIN);
    ck_assert_uint_eq(used, strlen(restart_ns_hdr));
    ck_assert_int_eq(r.stanzas, 0);
    buf_free(&b);
    rec_free(&r);
}
END_TEST

static void reentrant_stanza(void *ud, struct xml_node *st)
{
    struct rec *r = ud;
    r->stanzas++;
    ck_assert_int_eq(xmlparse_feed(r->p, "<x/>", 4, NULL), ERR_INVAL);
    ck_assert_int_eq(xmlparse_reset(r->p), ERR_INVAL);
    xml_unref(st);
}

START_TEST(test_reentry_refused)
{
    struct rec r;
    rec_init(&r, 65536, 16);
    xmlparse_free(r.p);
    struct xmlparse_limits lim = {.max_stanza = 65536, .max_depth = 16};
    struct xmlparse_callbacks cb = {.stanza = reentrant_stanza};
    r.p = xmlparse_new(&lim, &cb, &r);
    ck_assert_int_eq(feed_str(&r, hdr), 0);
    ck_assert_int_eq(feed_str(&r, "<message/><message/>"), 0);
    ck_assert_int_eq(r.stanzas, 2);
    rec_free(&r);
}
END_TEST

/* ---- reparse deferral regression ---- */

static const char split_msg[] =
    "<message from='juliet@capulet.example/balcony' "
    "to='romeo@montague.example/orchard' type='chat' id='ktx72v49' "
    "xml:lang='en'><body>Art thou not Romeo, and a Montague?</body>"
    "<active xmlns='http://jabber.org/protocol/chatstates'/></message>";

START_TEST(test_split_stanza_delivered_at_once)
{
    size_t len = sizeof(split_msg) - 1;
    ck_assert_uint_ge(len, 200);
    for (size_t cut = 1; cut < len; cut++) {
        struct rec r;
        rec_init(&r, 65536, 16);
        ck_assert_int_eq(feed_str(&r, hdr), 0);
        ck_assert_int_eq(xmlparse_feed(r.p, split_msg, cut, NULL), 0);
        ck_assert_int_eq(r.stanzas, 0);
        ck_assert_int_eq(xmlparse_feed(r.p, split_msg + cut, len - cut, NULL),
                         0);
        ck_assert_msg(r.stanzas == 1, "split at %zu not delivered", cut);
        rec_free(&r);
    }
}
END_TEST

START_TEST(test_large_start_tag_delivered_at_once)
{
    /* 64 KiB start tag in 1 KiB pieces, also after a reset (which turns
     * deferral back on in expat). */
    enum { TAG = 64 * 1024 };
    char *st = malloc(TAG);
    const char *head = "<message id='";
    memcpy(st, head, strlen(head));
    memset(st + strlen(head), 'q', TAG - strlen(head) - 3);
    memcpy(st + TAG - 3, "'/>", 3);
    struct rec r;
    rec_init(&r, 128 * 1024, 16);
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            ck_assert_int_eq(xmlparse_reset(r.p), 0);
        }
        ck_assert_int_eq(feed_str(&r, hdr), 0);
        for (size_t off = 0; off < TAG; off += 1024) {
            ck_assert_int_eq(xmlparse_feed(r.p, st + off, 1024, NULL), 0);
        }
        ck_assert_int_eq(r.stanzas, round + 1);
    }
    free(st);
    rec_free(&r);
}
END_TEST

/* ---- robustness ---- */

/* xorshift64*: deterministic, so a failure can be replayed. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n == 0 ? 0 : (size_t)(rng_next(s) % n);
}

static const char *const fuzz_tokens[] = {
    "<",
    ">",
    "/>",
    "</",
    "&",
    "&amp;",
    "&#0;",
    "&#x1F;",
    "<!--",
    "-->",
    "<?",
    "?>",
    "<!DOCTYPE",
    "<![CDATA[",
    "]]>",
    "'",
    "\"",
    "=",
    "xmlns=",
    "xmlns:a=",
    "a:b",
    "\x1f",
    "\xc3",
    "\xff",
    "\xef\xbb\xbf",
    "<stream:stream>",
    "</stream:stream>",
    "xml:lang='x'",
    "<a><b><c><d><e><f>",
    "&lt;",
};

static void fuzz_mutate(uint64_t *s, struct buf *b)
{
    size_t n = 1 + rng_below(s, 8);
    for (size_t i = 0; i < n; i++) {
        size_t len = buf_size(b);
        char *d = b->data + b->head;
        size_t at = rng_below(s, len + 1);
        switch (rng_below(s, 6)) {
        case 0: /* flip a byte */
            if (len > 0) {
                d[rng_below(s, len)] ^= (char)(1u << rng_below(s, 8));
            }
            break;
        case 1: { /* random byte at a position: rebuild */
            struct buf t;
            buf_init(&t, b->max);
            char c = (char)rng_next(s);
            buf_append(&t, d, at);
            buf_append(&t, &c, 1);
            buf_append(&t, d + at, len - at);
            buf_free(b);
            *b = t;
            break;
        }
        case 2: { /* delete a range */
            size_t del = rng_below(s, len - at + 1);
            memmove(d + at, d + at + del, len - at - del);
            b->len -= del;
            break;
        }
        case 3: { /* insert a token */
            const char *tok = fuzz_tokens[rng_below(
                s, sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]))];
            struct buf t;
            buf_init(&t, b->max);
            buf_append(&t, d, at);
            buf_append_str(&t, tok);
            buf_append(&t, d + at, len - at);
            buf_free(b);
            *b = t;
            break;
        }
        case 4: { /* duplicate a range */
            size_t dup = rng_below(s, len - at + 1);
            struct buf t;
            buf_init(&t, b->max);
            buf_append(&t, d, at + dup);
            buf_append(&t, d + at, len - at);
            buf_free(b);
            *b = t;
            break;
        }
        default: /* truncate */
            b->len = b->head + at;
            break;
        }
    }
}

static bool known_result(int rc)
{
    return rc == 0 || rc == ERR_AGAIN || rc == ERR_XML_MALFORMED ||
           rc == ERR_XML_RESTRICTED || rc == ERR_XML_TOO_BIG ||
           rc == ERR_XML_TOO_DEEP || rc == ERR_XML_BAD_ENCODING;
}

START_TEST(test_fuzz_mutations_never_crash)
{
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    size_t base_len = stream_len;
    int errors = 0;
    int clean = 0;
    for (int iter = 0; iter < 2000; iter++) {
        struct buf in;
        buf_init(&in, 1024 * 1024);
        buf_append(&in, stream_text, base_len);
        if (iter % 10 != 0) {
            fuzz_mutate(&seed, &in);
        }
        struct rec r;
        rec_init(&r, 64 + rng_below(&seed, 2048), 1 + rng_below(&seed, 6));
        if (rng_below(&seed, 4) == 0) {
            r.stop_on = "message";
        }
        const char *d = buf_peek(&in);
        size_t len = buf_size(&in);
        size_t off = 0;
        int rc = 0;
        while (off < len) {
            size_t n = 1 + rng_below(&seed, 64);
            if (n > len - off) {
                n = len - off;
            }
            size_t used = 0;
            rc = xmlparse_feed(r.p, d + off, n, &used);
            ck_assert_msg(known_result(rc), "iter %d: rc %d", iter, rc);
            ck_assert_uint_le(used, n);
            ck_assert_ptr_nonnull(xmlparse_error_text(r.p));
            if (rc == ERR_AGAIN) {
                ck_assert_int_eq(xmlparse_reset(r.p), 0);
                off += used;
                continue;
            }
            if (rc != 0) {
                /* sticky */
                ck_assert_int_eq(xmlparse_feed(r.p, d, len, NULL), rc);
                errors++;
                break;
            }
            ck_assert_uint_eq(used, n);
            off += n;
        }
        if (rc == 0) {
            clean++;
        }
        rec_free(&r);
        buf_free(&in);
    }
    /* the run exercised both outcomes */
    ck_assert_int_gt(errors, 100);
    ck_assert_int_gt(clean, 100);
}
END_TEST

static Suite *xmlparse_suite(void)
{
    Suite *s = suite_create("xmlparse");
    TCase *tc = tcase_create("stream");
    tcase_add_test(tc, test_stream_whole);
    tcase_add_test(tc, test_stream_split_every_point);
    tcase_add_test(tc, test_stream_byte_at_a_time);
    tcase_add_test(tc, test_header_prefixes);
    tcase_add_test(tc, test_header_without_default_ns);
    tcase_add_test(tc, test_namespaced_attrs_in_stanza);
    tcase_add_test(tc, test_keepalives_ignored);
    tcase_add_test(tc, test_stream_end_callback);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("restricted");
    tcase_add_test(tc, test_reject_doctype);
    tcase_add_test(tc, test_reject_entity_decl);
    tcase_add_test(tc, test_reject_billion_laughs);
    tcase_add_test(tc, test_reject_comment_in_stanza);
    tcase_add_test(tc, test_reject_comment_top_level);
    tcase_add_test(tc, test_reject_comment_between_stanzas);
    tcase_add_test(tc, test_reject_pi);
    tcase_add_test(tc, test_reject_pi_top_level);
    tcase_add_test(tc, test_reject_undefined_entity);
    tcase_add_test(tc, test_reject_non_utf8_encoding);
    tcase_add_test(tc, test_accept_utf8_any_case);
    tcase_add_test(tc, test_reject_mismatched_tag);
    tcase_add_test(tc, test_reject_unclosed_at_stream_end);
    tcase_add_test(tc, test_reject_invalid_utf8);
    tcase_add_test(tc, test_reject_invalid_utf8_kinds);
    tcase_add_test(tc, test_valid_utf8_not_xml_is_malformed);
    tcase_add_test(tc, test_accept_multibyte_utf8);
    tcase_add_test(tc, test_reject_utf16_stream);
    tcase_add_test(tc, test_reject_second_header_without_reset);
    tcase_add_test(tc, test_reset_after_error);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, test_too_big_single_attribute_early);
    tcase_add_test(tc, test_too_big_many_small_chunks);
    tcase_add_test(tc, test_too_big_header);
    tcase_add_test(tc, test_limit_is_exact);
    tcase_add_test(tc, test_limit_per_stanza_not_per_feed);
    tcase_add_test(tc, test_set_limits_raises);
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_depth_limit_one);
    suite_add_tcase(s, tc);

    tc = tcase_create("restart");
    tcase_add_test(tc, test_stop_and_restart_same_buffer);
    tcase_add_test(tc, test_stop_after_element_with_children);
    tcase_add_test(tc, test_stop_split_across_feeds);
    tcase_add_test(tc, test_stop_in_header_callback);
    tcase_add_test(tc, test_reentry_refused);
    suite_add_tcase(s, tc);

    tc = tcase_create("deferral");
    tcase_add_test(tc, test_split_stanza_delivered_at_once);
    tcase_add_test(tc, test_large_start_tag_delivered_at_once);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("robustness");
    tcase_add_test(tc, test_fuzz_mutations_never_crash);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(xmlparse_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
