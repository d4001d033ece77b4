/*
 * stream.c: XEP-0114 stream state machine (initiating side), no I/O.
 *
 * Flow:
 *   stream_start: write header (to=domain, xmlns=jabber:component:accept)
 *   on peer header: check root name and namespaces, take the id, write
 *                   <handshake>sha1hex(id+secret)</handshake>
 *   on <handshake/>: ready
 *   on stanza (ready): hand it to the owner
 *   on <stream:error/>: report condition and text, answer the close
 *   on </stream:stream>: answer the close
 *   on bad XML or protocol: send the stream error, close
 */
#include "config.h"

#include "stream.h"

#include "err.h"
#include "log.h"
#include "xmlparse.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_ERROR_TEXT_MAX 256

struct stream {
    enum stream_state state;
    char *domain;
    char *secret;
    char *id;
    struct xmlparse *parser;
    struct buf out;
    struct stream_callbacks cb;
    void *ud;
    bool close_reported;
    bool header_without_id; /* the server's header had no id: only its
                             * stream error may follow (Prosody refuses an
                             * unknown domain that way) */
    int fail;               /* a failure found inside a parser callback */
};

static void stream_on_header(void *ud, const struct xmlparse_header *hdr);
static void stream_on_stanza(void *ud, struct xml_node *st);
static void stream_on_end(void *ud);

struct stream *stream_new_component(const char *domain,
                                    const char *secret,
                                    const struct stream_limits *limits,
                                    const struct stream_callbacks *cb,
                                    void *ud)
{
    static const struct xmlparse_callbacks pcb = {
        .header = stream_on_header,
        .stanza = stream_on_stanza,
        .end = stream_on_end,
    };
    struct stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->state = STREAM_HEADER_SENT;
    s->domain = strdup(domain);
    s->secret = strdup(secret);
    buf_init(&s->out, limits->out_max);
    s->cb = *cb;
    s->ud = ud;
    struct xmlparse_limits pl = {.max_stanza = limits->stanza_max,
                                 .max_depth = limits->depth_max};
    s->parser = xmlparse_new(&pl, &pcb, s);
    if (s->domain == NULL || s->secret == NULL || s->parser == NULL) {
        stream_free(s);
        return NULL;
    }
    return s;
}

void stream_free(struct stream *s)
{
    if (s == NULL) {
        return;
    }
    xmlparse_free(s->parser);
    buf_free(&s->out);
    if (s->secret != NULL) {
        explicit_bzero(s->secret, strlen(s->secret));
        free(s->secret);
    }
    free(s->domain);
    free(s->id);
    free(s);
}

static int stream_write_str(struct stream *s, const char *str)
{
    return buf_append_str(&s->out, str);
}

int stream_start(struct stream *s)
{
    int rc = stream_write_str(s, "<?xml version='1.0'?><stream:stream"
                                 " xmlns='" XML_NS_COMPONENT
                                 "' xmlns:stream='" XML_NS_STREAM "' to='");
    if (rc == 0) {
        rc = xml_escape(&s->out, s->domain, strlen(s->domain), true);
    }
    if (rc == 0) {
        rc = stream_write_str(s, "'>");
    }
    return rc;
}

int stream_error_append(struct buf *out,
                        const char *condition,
                        const char *text)
{
    int rc = buf_printf(out, "<stream:error><%s xmlns='" XML_NS_STREAMS "'/>",
                        condition);
    if (rc == 0 && text != NULL) {
        size_t n = strlen(text);
        rc = buf_append_str(out, "<text xmlns='" XML_NS_STREAMS "'>");
        if (rc == 0) {
            rc = xml_escape(
                out, text,
                n < STREAM_ERROR_TEXT_MAX ? n : STREAM_ERROR_TEXT_MAX, false);
        }
        if (rc == 0) {
            rc = buf_append_str(out, "</text>");
        }
    }
    if (rc == 0) {
        rc = buf_append_str(out, "</stream:error>");
    }
    return rc;
}

static void stream_report_close(struct stream *s,
                                int err,
                                const char *condition,
                                const char *text,
                                bool by_peer)
{
    if (s->close_reported) {
        return;
    }
    s->close_reported = true;
    struct stream_close_info info = {
        .err = err, .condition = condition, .text = text, .by_peer = by_peer};
    if (s->cb.closed != NULL) {
        s->cb.closed(s->ud, &info);
    }
}

/* Writes an optional stream error and the closing tag; no callback. */
static void
stream_write_close(struct stream *s, const char *condition, const char *text)
{
    if (s->state == STREAM_CLOSING || s->state == STREAM_CLOSED) {
        return;
    }
    /* The output bound must not stop the goodbye: reserve room for it. */
    if (condition != NULL) {
        struct buf e;
        buf_init(&e, 1024);
        int rc = stream_error_append(&e, condition, text);
        if (rc == 0) {
            s->out.max += buf_size(&e);
            (void)buf_append(&s->out, buf_peek(&e), buf_size(&e));
        }
        buf_free(&e);
    }
    s->out.max += 16;
    (void)stream_write_str(s, "</stream:stream>");
    s->state = STREAM_CLOSING;
}

void stream_close(struct stream *s, const char *condition, const char *text)
{
    stream_write_close(s, condition, text);
    stream_report_close(s, condition != NULL ? ERR_STREAM_ERROR : 0, condition,
                        text, false);
}

/* Fails the stream from inside a parser callback. */
static void
stream_fail(struct stream *s, int err, const char *condition, const char *text)
{
    if (s->fail == 0) {
        s->fail = err;
    }
    stream_write_close(s, condition, text);
    stream_report_close(s, err, condition, text, false);
    xmlparse_stop(s->parser);
}

int stream_handshake_digest(const char *id, const char *secret, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = ERR_NOMEM;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        goto out;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, id, strlen(id)) != 1 ||
        EVP_DigestUpdate(ctx, secret, strlen(secret)) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 20) {
        rc = ERR_INVAL;
        goto out;
    }
    for (unsigned i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    explicit_bzero(md, sizeof(md));
    return rc;
}

static const char *header_attr(const struct xmlparse_header *hdr,
                               const char *name)
{
    for (size_t i = 0; i < hdr->nattrs; i++) {
        if (strcmp(hdr->attrs[i].name, name) == 0) {
            return hdr->attrs[i].value;
        }
    }
    return NULL;
}

static void stream_on_header(void *ud, const struct xmlparse_header *hdr)
{
    struct stream *s = ud;
    if (s->state != STREAM_HEADER_SENT) {
        stream_fail(s, ERR_XML_BAD_HEADER, "bad-format",
                    "unexpected stream header");
        return;
    }
    if (strcmp(hdr->name, "stream") != 0 ||
        strcmp(hdr->ns, XML_NS_STREAM) != 0) {
        stream_fail(s, ERR_XML_BAD_NS, "invalid-namespace",
                    "the root must be stream:stream");
        return;
    }
    if (strcmp(hdr->default_ns, XML_NS_COMPONENT) != 0) {
        stream_fail(s, ERR_XML_BAD_NS, "invalid-namespace",
                    "expected jabber:component:accept");
        return;
    }
    const char *id = header_attr(hdr, "id");
    if (id == NULL || id[0] == '\0') {
        /* no handshake is possible; wait for the stream error that says
         * why, and fail on anything else */
        s->header_without_id = true;
        s->state = STREAM_HANDSHAKE_SENT;
        return;
    }
    s->id = strdup(id);
    if (s->id == NULL) {
        stream_fail(s, ERR_NOMEM, "resource-constraint", NULL);
        return;
    }
    char digest[41];
    int rc = stream_handshake_digest(s->id, s->secret, digest);
    if (rc == 0) {
        rc = buf_printf(&s->out, "<handshake>%s</handshake>", digest);
    }
    explicit_bzero(digest, sizeof(digest));
    if (rc != 0) {
        stream_fail(s, rc, "internal-server-error", NULL);
        return;
    }
    s->state = STREAM_HANDSHAKE_SENT;
}

/* Reads condition and text of a <stream:error/>; borrowed strings. */
static void stream_error_parts(const struct xml_node *err,
                               const char **condition,
                               const char **text)
{
    *condition = "undefined-condition";
    *text = NULL;
    for (const struct xml_node *c = xml_first_element(err); c != NULL;
         c = xml_next_element(c)) {
        if (strcmp(c->ns, XML_NS_STREAMS) != 0) {
            continue;
        }
        if (strcmp(c->name, "text") == 0) {
            const struct xml_node *t = c->first_child;
            if (t != NULL && t->kind == XML_NODE_TEXT) {
                *text = t->text;
            }
        } else {
            *condition = c->name;
        }
    }
}

static bool stream_is_stanza_name(const char *name)
{
    return strcmp(name, "message") == 0 || strcmp(name, "presence") == 0 ||
           strcmp(name, "iq") == 0;
}

static void stream_on_stanza(void *ud, struct xml_node *st)
{
    struct stream *s = ud;
    if (strcmp(st->ns, XML_NS_STREAM) == 0 && strcmp(st->name, "error") == 0) {
        const char *condition;
        const char *text;
        stream_error_parts(st, &condition, &text);
        stream_write_close(s, NULL, NULL);
        stream_report_close(s, ERR_STREAM_ERROR, condition, text, true);
        s->state = STREAM_CLOSED;
        xmlparse_stop(s->parser);
        xml_unref(st);
        return;
    }
    if (s->header_without_id) {
        xml_unref(st);
        stream_fail(s, ERR_XML_BAD_HEADER, "bad-format",
                    "stream header without id");
        return;
    }
    if (s->state == STREAM_HANDSHAKE_SENT) {
        if (strcmp(st->ns, XML_NS_COMPONENT) == 0 &&
            strcmp(st->name, "handshake") == 0) {
            s->state = STREAM_READY;
            xml_unref(st);
            if (s->cb.ready != NULL) {
                s->cb.ready(s->ud);
            }
            return;
        }
        xml_unref(st);
        stream_fail(s, ERR_AUTH, "not-authorized",
                    "stanza before the handshake completed");
        return;
    }
    if (s->state != STREAM_READY) {
        /* Closing: whatever still arrives has nowhere to go. */
        log_conn(LOG_LEVEL_DEBUG, s->domain,
                 "discarding <%s/> received while the stream closes", st->name);
        xml_unref(st);
        return;
    }
    if (strcmp(st->ns, XML_NS_COMPONENT) != 0 ||
        !stream_is_stanza_name(st->name)) {
        xml_unref(st);
        stream_fail(s, ERR_INVAL, "unsupported-stanza-type",
                    "only message, presence and iq are accepted");
        return;
    }
    if (s->cb.stanza != NULL) {
        s->cb.stanza(s->ud, st); /* transferred */
    } else {
        xml_unref(st);
    }
}

static void stream_on_end(void *ud)
{
    struct stream *s = ud;
    stream_write_close(s, NULL, NULL);
    stream_report_close(s, 0, NULL, NULL, true);
    s->state = STREAM_CLOSED;
}

int stream_feed(struct stream *s, const char *data, size_t len)
{
    if (s->state == STREAM_CLOSED) {
        return ERR_CLOSED;
    }
    int rc = xmlparse_feed(s->parser, data, len, NULL);
    if (s->fail != 0) {
        s->state = STREAM_CLOSED;
        return s->fail;
    }
    if (rc == ERR_AGAIN) {
        /* Stopped after an error or close element: nothing more to read. */
        s->state = STREAM_CLOSED;
        return 0;
    }
    if (rc != 0) {
        const char *detail = xmlparse_error_text(s->parser);
        stream_write_close(s, err_stream_condition(rc), detail);
        stream_report_close(s, rc, err_stream_condition(rc), detail, false);
        s->state = STREAM_CLOSED;
        return rc;
    }
    return 0;
}

int stream_send(struct stream *s, const struct xml_node *st)
{
    if (s->state != STREAM_READY) {
        return ERR_CLOSED;
    }
    size_t mark = buf_size(&s->out);
    /* A stanza's own namespace stands for the stream's content namespace
     * (jabber:client, jabber:server and jabber:component:accept are the
     * same stanzas), so no xmlns is written on the top element. */
    const char *inherited = st->ns;
    if (strcmp(st->ns, XML_NS_CLIENT) != 0 &&
        strcmp(st->ns, XML_NS_SERVER) != 0 &&
        strcmp(st->ns, XML_NS_COMPONENT) != 0) {
        inherited = XML_NS_COMPONENT;
    }
    int rc = xml_serialize(st, inherited, &s->out);
    if (rc != 0) {
        /* Take back a partial write. */
        buf_truncate(&s->out, mark);
    }
    return rc;
}

struct buf *stream_output(struct stream *s)
{
    return &s->out;
}

enum stream_state stream_get_state(const struct stream *s)
{
    return s->state;
}

const char *stream_domain(const struct stream *s)
{
    return s->domain;
}

const char *stream_id(const struct stream *s)
{
    return s->id;
}
