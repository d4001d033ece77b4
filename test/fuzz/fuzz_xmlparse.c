/*
 * fuzz_xmlparse.c: the stream parser fed untrusted bytes in chunks of
 * every size; each stanza it reports is serialised and must parse again
 * (the serialiser never writes what the parser refuses).
 */
#include "config.h"

#include "buf.h"
#include "fuzz.h"
#include "log.h"
#include "xml.h"
#include "xmlparse.h"

#include <stdlib.h>
#include <string.h>

static const char reparse_header[] =
    "<stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams'>";

static void count_stanza(void *ud, struct xml_node *st)
{
    int *n = ud;
    (*n)++;
    xml_unref(st);
}

/* Serialises st and parses the result: a failure is a bug. */
static void roundtrip(const struct xml_node *st)
{
    struct buf out;
    buf_init(&out, 1u << 20);
    if (xml_serialize(st, XML_NS_SERVER, &out) == 0) {
        int n = 0;
        struct xmlparse_callbacks cb = {.stanza = count_stanza};
        struct xmlparse_limits lim = {.max_stanza = 1u << 21,
                                      .max_depth = 1000};
        struct xmlparse *p = xmlparse_new(&lim, &cb, &n);
        if (p != NULL) {
            int rc = xmlparse_feed(p, reparse_header,
                                   sizeof(reparse_header) - 1, NULL);
            if (rc == 0) {
                rc = xmlparse_feed(p, buf_peek(&out), buf_size(&out), NULL);
            }
            if (rc != 0 || n != 1) {
                abort(); /* the serialiser wrote something unparsable */
            }
            xmlparse_free(p);
        }
    }
    buf_free(&out);
}

static void on_stanza(void *ud, struct xml_node *st)
{
    (void)ud;
    roundtrip(st);
    xml_unref(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_LEVEL_ERROR); /* peer bytes make noise */
    if (size == 0) {
        return 0;
    }
    uint32_t seed = data[0];
    struct xmlparse_callbacks cb = {.stanza = on_stanza};
    struct xmlparse_limits lim = {.max_stanza = 65536, .max_depth = 64};
    struct xmlparse *p = xmlparse_new(&lim, &cb, NULL);
    if (p == NULL) {
        return 0;
    }
    size_t off = 1;
    while (off < size) {
        size_t n = fuzz_chunk(&seed, size - off);
        size_t used = 0;
        int rc = xmlparse_feed(p, (const char *)data + off, n, &used);
        if (rc != 0) {
            break;
        }
        off += n;
    }
    xmlparse_free(p);
    return 0;
}
