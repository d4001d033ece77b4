/*
 * xml.c: stanza trees, their reference counts and the serialiser.
 *
 * Cost model (the relay forwards every stanza through here): an element is
 * one allocation holding the node, its local name and its namespace URI; an
 * attribute is one allocation holding its name and value; the attribute
 * array is allocated on the first attribute and grows by doubling. Text
 * nodes keep their text in a separate allocation so that adjacent text can
 * be merged in place.
 *
 * Tree walks (free, copy, serialise) are iterative over the parent links,
 * so a deep tree built through the API cannot exhaust the C stack.
 */
#include "config.h"

#include "xml.h"

#include "buf.h"
#include "err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The separator between namespace URI and local name in attribute names. */
#define XML_NS_SEP '\x1f'

static const char xml_ns_xml[] = XML_NS_XML;

static struct xml_node *xml_element_alloc(const char *ns,
                                          size_t ns_len,
                                          const char *name,
                                          size_t name_len)
{
    if (ns_len > SIZE_MAX / 2 ||
        name_len > SIZE_MAX / 2 - ns_len - sizeof(struct xml_node) - 2) {
        return NULL;
    }
    struct xml_node *n = malloc(sizeof(*n) + name_len + ns_len + 2);
    if (n == NULL) {
        return NULL;
    }
    memset(n, 0, sizeof(*n));
    n->kind = XML_NODE_ELEMENT;
    n->refs = 1;
    n->name = (char *)(n + 1);
    memcpy(n->name, name, name_len);
    n->name[name_len] = '\0';
    n->ns = n->name + name_len + 1;
    if (ns_len > 0) {
        memcpy(n->ns, ns, ns_len);
    }
    n->ns[ns_len] = '\0';
    return n;
}

struct xml_node *xml_element_new(const char *ns, const char *name)
{
    if (ns == NULL) {
        ns = "";
    }
    return xml_element_alloc(ns, strlen(ns), name, strlen(name));
}

struct xml_node *xml_element_new_n(const char *ns,
                                   size_t ns_len,
                                   const char *name,
                                   size_t name_len)
{
    return xml_element_alloc(ns != NULL ? ns : "", ns != NULL ? ns_len : 0,
                             name, name_len);
}

struct xml_node *xml_text_new(const char *text, size_t len)
{
    if (len == SIZE_MAX) {
        return NULL;
    }
    struct xml_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return NULL;
    }
    n->text = malloc(len + 1);
    if (n->text == NULL) {
        free(n);
        return NULL;
    }
    if (len > 0) {
        memcpy(n->text, text, len);
    }
    n->text[len] = '\0';
    n->text_len = len;
    n->kind = XML_NODE_TEXT;
    n->refs = 1;
    return n;
}

/* One allocation: name, NUL, value, NUL. */
static int xml_attr_fill(struct xml_attr *a,
                         const char *name,
                         size_t name_len,
                         const char *value,
                         size_t value_len)
{
    if (name_len > SIZE_MAX / 2 || value_len > SIZE_MAX / 2 - 2) {
        return ERR_NOMEM;
    }
    char *s = malloc(name_len + value_len + 2);
    if (s == NULL) {
        return ERR_NOMEM;
    }
    memcpy(s, name, name_len);
    s[name_len] = '\0';
    memcpy(s + name_len + 1, value, value_len);
    s[name_len + 1 + value_len] = '\0';
    a->name = s;
    a->value = s + name_len + 1;
    return 0;
}

static int xml_attrs_grow(struct xml_node *el, size_t want)
{
    if (want <= el->attrs_cap) {
        return 0;
    }
    size_t cap = el->attrs_cap != 0 ? el->attrs_cap : 4;
    while (cap < want) {
        if (cap > SIZE_MAX / 2 / sizeof(struct xml_attr)) {
            return ERR_NOMEM;
        }
        cap *= 2;
    }
    struct xml_attr *a = realloc(el->attrs, cap * sizeof(*a));
    if (a == NULL) {
        return ERR_NOMEM;
    }
    el->attrs = a;
    el->attrs_cap = cap;
    return 0;
}

int xml_attr_append_n(struct xml_node *el,
                      const char *name,
                      size_t name_len,
                      const char *value,
                      size_t value_len)
{
    int rc = xml_attrs_grow(el, el->nattrs + 1);
    if (rc != 0) {
        return rc;
    }
    rc =
        xml_attr_fill(&el->attrs[el->nattrs], name, name_len, value, value_len);
    if (rc != 0) {
        return rc;
    }
    el->nattrs++;
    return 0;
}

static struct xml_attr *xml_attr_find(const struct xml_node *el,
                                      const char *name)
{
    for (size_t i = 0; i < el->nattrs; i++) {
        if (strcmp(el->attrs[i].name, name) == 0) {
            return &el->attrs[i];
        }
    }
    return NULL;
}

/* A plain name may carry no prefix but "xml:" and must not be a namespace
 * declaration: either would serialise to different (or broken) XML. */
static bool xml_attr_name_ok(const char *name)
{
    const char *sep = strrchr(name, XML_NS_SEP);
    if (sep != NULL) {
        return sep != name && sep[1] != '\0' && strchr(sep + 1, ':') == NULL;
    }
    if (name[0] == '\0') {
        return false;
    }
    if (strcmp(name, "xmlns") == 0) {
        return false;
    }
    const char *colon = strchr(name, ':');
    return colon == NULL ||
           (colon == name + 3 && memcmp(name, "xml", 3) == 0 &&
            colon[1] != '\0' && strchr(colon + 1, ':') == NULL);
}

int xml_set_attr(struct xml_node *el, const char *name, const char *value)
{
    if (el == NULL || el->kind != XML_NODE_ELEMENT || name == NULL ||
        !xml_attr_name_ok(name)) {
        return ERR_INVAL;
    }
    /* "URI\x1flocal" in the XML namespace is stored as "xml:local". */
    char xml_name[64];
    const char *sep = strrchr(name, XML_NS_SEP);
    if (sep != NULL && (size_t)(sep - name) == sizeof(xml_ns_xml) - 1 &&
        memcmp(name, xml_ns_xml, sizeof(xml_ns_xml) - 1) == 0) {
        size_t local = strlen(sep + 1);
        if (local == 0 || local + 5 > sizeof(xml_name)) {
            return ERR_INVAL;
        }
        memcpy(xml_name, "xml:", 4);
        memcpy(xml_name + 4, sep + 1, local + 1);
        name = xml_name;
    }
    struct xml_attr *a = xml_attr_find(el, name);
    if (value == NULL) {
        if (a != NULL) {
            free(a->name);
            size_t i = (size_t)(a - el->attrs);
            memmove(a, a + 1, (el->nattrs - i - 1) * sizeof(*a));
            el->nattrs--;
        }
        return 0;
    }
    if (a == NULL) {
        return xml_attr_append_n(el, name, strlen(name), value, strlen(value));
    }
    struct xml_attr repl;
    int rc = xml_attr_fill(&repl, name, strlen(name), value, strlen(value));
    if (rc != 0) {
        return rc;
    }
    free(a->name);
    *a = repl;
    return 0;
}

const char *xml_attr(const struct xml_node *el, const char *name)
{
    if (el == NULL || el->kind != XML_NODE_ELEMENT) {
        return NULL;
    }
    const struct xml_attr *a = xml_attr_find(el, name);
    return a != NULL ? a->value : NULL;
}

static void xml_link(struct xml_node *parent, struct xml_node *child)
{
    child->parent = parent;
    child->next = NULL;
    child->refs = 0;
    if (parent->last_child != NULL) {
        parent->last_child->next = child;
    } else {
        parent->first_child = child;
    }
    parent->last_child = child;
}

int xml_append(struct xml_node *parent, struct xml_node *child)
{
    if (parent == NULL || child == NULL || parent->kind != XML_NODE_ELEMENT ||
        child->parent != NULL || child->refs != 1) {
        return ERR_INVAL;
    }
    /* Appending an ancestor of parent (its root) would make a cycle. */
    for (const struct xml_node *a = parent; a != NULL; a = a->parent) {
        if (a == child) {
            return ERR_INVAL;
        }
    }
    xml_link(parent, child);
    return 0;
}

struct xml_node *xml_detach(struct xml_node *node)
{
    struct xml_node *parent = node->parent;
    if (parent == NULL) {
        return node;
    }
    struct xml_node **pp = &parent->first_child;
    struct xml_node *prev = NULL;
    while (*pp != node) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = node->next;
    if (parent->last_child == node) {
        parent->last_child = prev;
    }
    node->parent = NULL;
    node->next = NULL;
    node->refs = 1;
    return node;
}

int xml_append_text(struct xml_node *parent, const char *text, size_t len)
{
    if (parent == NULL || parent->kind != XML_NODE_ELEMENT) {
        return ERR_INVAL;
    }
    if (len == 0) {
        return 0;
    }
    struct xml_node *last = parent->last_child;
    if (last != NULL && last->kind == XML_NODE_TEXT) {
        /* Merge, so a tree built piecewise equals the parsed one. */
        if (len > SIZE_MAX - 1 - last->text_len) {
            return ERR_NOMEM;
        }
        char *t = realloc(last->text, last->text_len + len + 1);
        if (t == NULL) {
            return ERR_NOMEM;
        }
        memcpy(t + last->text_len, text, len);
        last->text_len += len;
        t[last->text_len] = '\0';
        last->text = t;
        return 0;
    }
    struct xml_node *n = xml_text_new(text, len);
    if (n == NULL) {
        return ERR_NOMEM;
    }
    xml_link(parent, n);
    return 0;
}

struct xml_node *
xml_add_child(struct xml_node *parent, const char *ns, const char *name)
{
    if (parent == NULL || parent->kind != XML_NODE_ELEMENT) {
        return NULL;
    }
    struct xml_node *n = xml_element_new(ns != NULL ? ns : parent->ns, name);
    if (n == NULL) {
        return NULL;
    }
    xml_link(parent, n);
    return n;
}

static bool
xml_matches(const struct xml_node *n, const char *ns, const char *name)
{
    return n->kind == XML_NODE_ELEMENT &&
           (ns == NULL || strcmp(n->ns, ns) == 0) &&
           (name == NULL || strcmp(n->name, name) == 0);
}

struct xml_node *
xml_child(const struct xml_node *el, const char *ns, const char *name)
{
    if (el == NULL) {
        return NULL;
    }
    for (struct xml_node *c = el->first_child; c != NULL; c = c->next) {
        if (xml_matches(c, ns, name)) {
            return c;
        }
    }
    return NULL;
}

struct xml_node *xml_first_element(const struct xml_node *el)
{
    return xml_child(el, NULL, NULL);
}

struct xml_node *xml_next_element(const struct xml_node *el)
{
    if (el == NULL) {
        return NULL;
    }
    for (struct xml_node *c = el->next; c != NULL; c = c->next) {
        if (c->kind == XML_NODE_ELEMENT) {
            return c;
        }
    }
    return NULL;
}

char *xml_text(const struct xml_node *el)
{
    size_t len = 0;
    if (el != NULL && el->kind == XML_NODE_TEXT) {
        len = el->text_len;
    } else if (el != NULL) {
        for (const struct xml_node *c = el->first_child; c != NULL;
             c = c->next) {
            if (c->kind == XML_NODE_TEXT) {
                len += c->text_len;
            }
        }
    }
    char *s = malloc(len + 1);
    if (s == NULL) {
        return NULL;
    }
    if (el != NULL && el->kind == XML_NODE_TEXT) {
        memcpy(s, el->text, len);
    } else if (el != NULL) {
        size_t off = 0;
        for (const struct xml_node *c = el->first_child; c != NULL;
             c = c->next) {
            if (c->kind == XML_NODE_TEXT) {
                memcpy(s + off, c->text, c->text_len);
                off += c->text_len;
            }
        }
    }
    s[len] = '\0';
    return s;
}

struct xml_node *xml_ref(struct xml_node *root)
{
    if (root != NULL) {
        root->refs++;
    }
    return root;
}

static void xml_node_free(struct xml_node *n)
{
    for (size_t i = 0; i < n->nattrs; i++) {
        free(n->attrs[i].name); /* the value shares this allocation */
    }
    free(n->attrs);
    free(n->text);
    free(n);
}

void xml_unref(struct xml_node *root)
{
    /* A node with a parent is owned by it; dropping it here would leave
     * the parent pointing at freed memory. */
    if (root == NULL || root->parent != NULL) {
        return;
    }
    if (root->refs > 1) {
        root->refs--;
        return;
    }
    /* Post-order walk that unlinks each child before descending, so no
     * recursion and no extra memory. */
    struct xml_node *n = root;
    while (n != NULL) {
        struct xml_node *c = n->first_child;
        if (c != NULL) {
            n->first_child = c->next;
            n = c;
            continue;
        }
        struct xml_node *up = n == root ? NULL : n->parent;
        xml_node_free(n);
        n = up;
    }
}

static struct xml_node *xml_clone_one(const struct xml_node *src)
{
    struct xml_node *n;
    if (src->kind == XML_NODE_TEXT) {
        return xml_text_new(src->text, src->text_len);
    }
    n = xml_element_alloc(src->ns, strlen(src->ns), src->name,
                          strlen(src->name));
    if (n == NULL || src->nattrs == 0) {
        return n;
    }
    n->attrs = malloc(src->nattrs * sizeof(*n->attrs));
    if (n->attrs == NULL) {
        free(n);
        return NULL;
    }
    n->attrs_cap = src->nattrs;
    for (size_t i = 0; i < src->nattrs; i++) {
        const struct xml_attr *a = &src->attrs[i];
        if (xml_attr_fill(&n->attrs[i], a->name, strlen(a->name), a->value,
                          strlen(a->value)) != 0) {
            xml_node_free(n);
            return NULL;
        }
        n->nattrs++;
    }
    return n;
}

struct xml_node *xml_copy(const struct xml_node *node)
{
    if (node == NULL) {
        return NULL;
    }
    struct xml_node *root = xml_clone_one(node);
    if (root == NULL) {
        return NULL;
    }
    const struct xml_node *s = node;
    struct xml_node *d = root;
    for (;;) {
        if (s->first_child != NULL) {
            s = s->first_child;
            struct xml_node *c = xml_clone_one(s);
            if (c == NULL) {
                goto fail;
            }
            xml_link(d, c);
            d = c;
            continue;
        }
        while (s != node && s->next == NULL) {
            s = s->parent;
            d = d->parent;
        }
        if (s == node) {
            break;
        }
        s = s->next;
        struct xml_node *c = xml_clone_one(s);
        if (c == NULL) {
            goto fail;
        }
        xml_link(d->parent, c);
        d = c;
    }
    return root;

fail:
    xml_unref(root);
    return NULL;
}

/*
 * Appends to out. The serialiser makes many short appends (a quote, a
 * name); when the bytes fit in the allocated room they are copied here
 * directly, keeping buf's invariants (bounded by max, NUL-terminated), and
 * everything else goes through buf_append. This took the forwarding
 * benchmark from ~10% of the time in buf_append/buf_reserve to ~3%.
 */
static inline int xml_put(struct buf *out, const void *s, size_t len)
{
    if (out->data != NULL && len <= out->cap - out->len &&
        len <= out->max - (out->len - out->head)) {
        memcpy(out->data + out->len, s, len);
        out->len += len;
        out->data[out->len] = '\0';
        return 0;
    }
    return buf_append(out, s, len);
}

/*
 * Escaping. Each byte has a class: 0 is copied as is, anything else needs
 * a replacement. Runs of class-0 bytes are appended with one call, so a
 * typical body costs one buf_append.
 *
 * Beyond the five XML specials: CR is written as a reference in text (a
 * parser would turn a raw CR into LF); TAB, LF and CR are references in
 * attribute values (attribute normalisation turns them into spaces); other
 * C0 controls cannot appear in XML 1.0 at all and become U+FFFD, so a
 * stanza built from bad local input cannot break the peer's stream.
 */
enum {
    ESC_NONE = 0,
    ESC_AMP,
    ESC_LT,
    ESC_GT,
    ESC_APOS,
    ESC_QUOT,
    ESC_TAB,
    ESC_LF,
    ESC_CR,
    ESC_BAD,
};

static const struct {
    const char *s;
    size_t len;
} esc_repl[] = {
    [ESC_NONE] = {"", 0},       [ESC_AMP] = {"&amp;", 5},
    [ESC_LT] = {"&lt;", 4},     [ESC_GT] = {"&gt;", 4},
    [ESC_APOS] = {"&apos;", 6}, [ESC_QUOT] = {"&quot;", 6},
    [ESC_TAB] = {"&#9;", 4},    [ESC_LF] = {"&#10;", 5},
    [ESC_CR] = {"&#13;", 5},    [ESC_BAD] = {"\xef\xbf\xbd", 3},
};

#define ESC_C0_BAD                                                          \
    [0x00] = ESC_BAD, [0x01] = ESC_BAD, [0x02] = ESC_BAD, [0x03] = ESC_BAD, \
    [0x04] = ESC_BAD, [0x05] = ESC_BAD, [0x06] = ESC_BAD, [0x07] = ESC_BAD, \
    [0x08] = ESC_BAD, [0x0b] = ESC_BAD, [0x0c] = ESC_BAD, [0x0e] = ESC_BAD, \
    [0x0f] = ESC_BAD, [0x10] = ESC_BAD, [0x11] = ESC_BAD, [0x12] = ESC_BAD, \
    [0x13] = ESC_BAD, [0x14] = ESC_BAD, [0x15] = ESC_BAD, [0x16] = ESC_BAD, \
    [0x17] = ESC_BAD, [0x18] = ESC_BAD, [0x19] = ESC_BAD, [0x1a] = ESC_BAD, \
    [0x1b] = ESC_BAD, [0x1c] = ESC_BAD, [0x1d] = ESC_BAD, [0x1e] = ESC_BAD, \
    [0x1f] = ESC_BAD

static const unsigned char esc_text[256] = {
    ESC_C0_BAD,     ['\r'] = ESC_CR, ['&'] = ESC_AMP,
    ['<'] = ESC_LT, ['>'] = ESC_GT,
};

static const unsigned char esc_attr[256] = {
    ESC_C0_BAD,      ['\t'] = ESC_TAB,  ['\n'] = ESC_LF,
    ['\r'] = ESC_CR, ['&'] = ESC_AMP,   ['<'] = ESC_LT,
    ['>'] = ESC_GT,  ['\''] = ESC_APOS, ['"'] = ESC_QUOT,
};

int xml_escape(struct buf *out, const char *text, size_t len, bool attr)
{
    const unsigned char *cls = attr ? esc_attr : esc_text;
    const unsigned char *p = (const unsigned char *)text;
    const unsigned char *end = p + len;
    int rc;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && cls[*p] == ESC_NONE) {
            p++;
        }
        if (p > run) {
            rc = xml_put(out, run, (size_t)(p - run));
            if (rc != 0) {
                return rc;
            }
        }
        if (p < end) {
            unsigned c = cls[*p];
            rc = xml_put(out, esc_repl[c].s, esc_repl[c].len);
            if (rc != 0) {
                return rc;
            }
            p++;
        }
    }
    return 0;
}

/* " name='value'" with the value escaped. */
static int xml_put_attr(struct buf *out,
                        const char *prefix,
                        size_t prefix_len,
                        const char *local,
                        size_t local_len,
                        const char *value,
                        size_t value_len)
{
    int rc = xml_put(out, " ", 1);
    if (rc == 0 && prefix_len > 0) {
        rc = xml_put(out, prefix, prefix_len);
    }
    if (rc == 0) {
        rc = xml_put(out, local, local_len);
    }
    if (rc == 0) {
        rc = xml_put(out, "='", 2);
    }
    if (rc == 0) {
        rc = xml_escape(out, value, value_len, true);
    }
    if (rc == 0) {
        rc = xml_put(out, "'", 1);
    }
    return rc;
}

/* "nsN:" for the generated prefix number n (n >= 1). */
static size_t xml_prefix_name(char *dst, size_t n)
{
    char digits[24];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    dst[0] = 'n';
    dst[1] = 's';
    for (size_t i = 0; i < nd; i++) {
        dst[2 + i] = digits[nd - 1 - i];
    }
    dst[2 + nd] = ':';
    return 3 + nd;
}

/* The URI of a namespaced attribute name other than the XML namespace;
 * false for plain names and "xml:" ones. */
static bool xml_attr_uri(const char *name, size_t *uri_len)
{
    const char *sep = strrchr(name, XML_NS_SEP);
    if (sep == NULL) {
        return false;
    }
    *uri_len = (size_t)(sep - name);
    return !(*uri_len == sizeof(xml_ns_xml) - 1 &&
             memcmp(name, xml_ns_xml, *uri_len) == 0);
}

/*
 * The generated prefix number of namespaced attribute i: URIs are numbered
 * 1, 2, ... in order of first use on the element. *declare is true when i
 * is that first use (the declaration goes with it). Quadratic, but
 * namespaced attributes are rare and few.
 */
static size_t xml_prefix_num(const struct xml_node *el, size_t i, bool *declare)
{
    size_t want_len = 0;
    size_t num = 0;
    xml_attr_uri(el->attrs[i].name, &want_len);
    for (size_t k = 0; k <= i; k++) {
        size_t len;
        const char *nk = el->attrs[k].name;
        if (!xml_attr_uri(nk, &len)) {
            continue;
        }
        bool first = true;
        for (size_t m = 0; m < k && first; m++) {
            size_t mlen;
            const char *nm = el->attrs[m].name;
            if (xml_attr_uri(nm, &mlen) && mlen == len &&
                memcmp(nm, nk, len) == 0) {
                first = false;
            }
        }
        if (!first) {
            continue;
        }
        num++;
        if (len == want_len && memcmp(nk, el->attrs[i].name, len) == 0) {
            *declare = k == i;
            return num;
        }
    }
    *declare = true; /* not reached: k == i always matches */
    return num;
}

/* Writes the attributes of el. Names "URI\x1flocal" get a prefix declared
 * on this element; attributes sharing a URI share the prefix. */
static int xml_put_attrs(struct buf *out, const struct xml_node *el)
{
    for (size_t i = 0; i < el->nattrs; i++) {
        const struct xml_attr *a = &el->attrs[i];
        const char *sep = strrchr(a->name, XML_NS_SEP);
        size_t uri_len;
        int rc;
        if (sep == NULL) {
            rc = xml_put_attr(out, NULL, 0, a->name, strlen(a->name), a->value,
                              strlen(a->value));
        } else if (!xml_attr_uri(a->name, &uri_len)) {
            rc = xml_put_attr(out, "xml:", 4, sep + 1, strlen(sep + 1),
                              a->value, strlen(a->value));
        } else {
            bool declare;
            char prefix[32];
            size_t plen =
                xml_prefix_name(prefix, xml_prefix_num(el, i, &declare));
            rc = 0;
            if (declare) {
                /* " xmlns:nsN='URI'" */
                rc = xml_put_attr(out, "xmlns:", 6, prefix, plen - 1, a->name,
                                  uri_len);
            }
            if (rc == 0) {
                rc = xml_put_attr(out, prefix, plen, sep + 1, strlen(sep + 1),
                                  a->value, strlen(a->value));
            }
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int xml_put_open(struct buf *out,
                        const struct xml_node *el,
                        const char *ns_in_force)
{
    int rc = xml_put(out, "<", 1);
    if (rc == 0) {
        rc = xml_put(out, el->name, strlen(el->name));
    }
    if (rc == 0 && strcmp(el->ns, ns_in_force) != 0) {
        rc = xml_put_attr(out, NULL, 0, "xmlns", 5, el->ns, strlen(el->ns));
    }
    if (rc == 0) {
        rc = xml_put_attrs(out, el);
    }
    if (rc == 0) {
        rc = el->first_child != NULL ? xml_put(out, ">", 1)
                                     : xml_put(out, "/>", 2);
    }
    return rc;
}

static int xml_put_close(struct buf *out, const struct xml_node *el)
{
    int rc = xml_put(out, "</", 2);
    if (rc == 0) {
        rc = xml_put(out, el->name, strlen(el->name));
    }
    if (rc == 0) {
        rc = xml_put(out, ">", 1);
    }
    return rc;
}

int xml_serialize(const struct xml_node *node,
                  const char *inherited_ns,
                  struct buf *out)
{
    if (node == NULL) {
        return ERR_INVAL;
    }
    const struct xml_node *n = node;
    int rc;
    for (;;) {
        if (n->kind == XML_NODE_TEXT) {
            rc = xml_escape(out, n->text, n->text_len, false);
        } else {
            const char *in_force = n == node ? inherited_ns : n->parent->ns;
            rc = xml_put_open(out, n, in_force != NULL ? in_force : "");
        }
        if (rc != 0) {
            return rc;
        }
        if (n->kind == XML_NODE_ELEMENT && n->first_child != NULL) {
            n = n->first_child;
            continue;
        }
        while (n != node && n->next == NULL) {
            n = n->parent;
            rc = xml_put_close(out, n);
            if (rc != 0) {
                return rc;
            }
        }
        if (n == node) {
            return 0;
        }
        n = n->next;
    }
}
