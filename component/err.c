/*
 * err.c: text and XMPP conditions for fedgate's error codes.
 * One table, so the log text and the condition a peer sees never disagree.
 */
#include "config.h"

#include "err.h"

#include <stddef.h>

struct err_entry {
    int code;
    const char *text;
    const char *stream_condition;
};

static const struct err_entry err_table[] = {
    {ERR_OK, "success", "undefined-condition"},
    {ERR_NOMEM, "out of memory", "resource-constraint"},
    {ERR_AGAIN, "would block", "undefined-condition"},
    {ERR_INVAL, "invalid argument", "undefined-condition"},
    {ERR_SYS, "system call failed", "internal-server-error"},
    {ERR_TOO_BIG, "limit exceeded", "resource-constraint"},
    {ERR_NOT_FOUND, "not found", "undefined-condition"},
    {ERR_CLOSED, "connection closed", "undefined-condition"},
    {ERR_TIMEOUT, "timed out", "connection-timeout"},
    {ERR_XML_MALFORMED, "XML not well-formed", "not-well-formed"},
    {ERR_XML_RESTRICTED, "restricted XML (DTD, entity, comment or PI)",
     "restricted-xml"},
    {ERR_XML_TOO_BIG, "stanza too large", "policy-violation"},
    {ERR_XML_TOO_DEEP, "XML nested too deeply", "policy-violation"},
    {ERR_XML_BAD_ENCODING, "encoding is not UTF-8", "unsupported-encoding"},
    {ERR_XML_BAD_NS, "wrong stream namespace", "invalid-namespace"},
    {ERR_XML_BAD_HEADER, "not a stream header", "bad-format"},
    {ERR_STREAM_ERROR, "stream error from peer", "undefined-condition"},
    {ERR_AUTH, "authentication failed", "not-authorized"},
    {ERR_CONFIG, "configuration error", "internal-server-error"},
};

static const struct err_entry *err_find(int code)
{
    for (size_t i = 0; i < sizeof(err_table) / sizeof(err_table[0]); i++) {
        if (err_table[i].code == code) {
            return &err_table[i];
        }
    }
    return NULL;
}

const char *err_str(int code)
{
    const struct err_entry *e = err_find(code);
    return e != NULL ? e->text : "unknown error";
}

const char *err_stream_condition(int code)
{
    const struct err_entry *e = err_find(code);
    return e != NULL ? e->stream_condition : "undefined-condition";
}
