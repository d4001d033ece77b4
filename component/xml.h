/*
 * xml.h: stanza trees and their serialisation.
 *
 * A stanza is a tree of struct xml_node: elements (with a namespace URI, a
 * local name and attributes) and text nodes. The root of a tree carries a
 * reference count: xml_ref() returns a new reference, xml_unref() drops one
 * and frees the tree at zero. Children belong to their parent; never
 * xml_unref() a node that has a parent.
 *
 * Attribute names are stored as they are serialised: a plain local name
 * ("to"), or "xml:lang" for the XML namespace. Attributes in any other
 * namespace are stored as "URI\x1flocal" and serialised with a generated
 * prefix declaration.
 *
 * Text is stored unescaped (as parsed) and escaped on serialisation.
 *
 * Storage: an element's name and ns live in the node's own allocation, and
 * an attribute's value follows its name in one allocation (free name
 * only). Treat these strings as read-only; change attributes with
 * xml_set_attr().
 */
#ifndef FEDGATE_XML_H
#define FEDGATE_XML_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

#define XML_NS_XML       "http://www.w3.org/XML/1998/namespace"
#define XML_NS_STREAM    "http://etherx.jabber.org/streams"
#define XML_NS_CLIENT    "jabber:client"
#define XML_NS_SERVER    "jabber:server"
#define XML_NS_COMPONENT "jabber:component:accept"
#define XML_NS_STANZAS   "urn:ietf:params:xml:ns:xmpp-stanzas"
#define XML_NS_STREAMS   "urn:ietf:params:xml:ns:xmpp-streams"

enum xml_kind { XML_NODE_ELEMENT, XML_NODE_TEXT };

struct xml_attr {
    char *name;  /* owned; the value shares this allocation */
    char *value; /* unescaped; freed with name */
};

struct xml_node {
    enum xml_kind kind;
    unsigned refs; /* meaningful on a root only */
    char *name;    /* element: local name (in the node) */
    char *ns;      /* element: namespace URI (in the node), may be "" */
    struct xml_attr *attrs; /* element: owned array */
    size_t nattrs;
    size_t attrs_cap;
    char *text; /* text node: owned, unescaped */
    size_t text_len;
    struct xml_node *parent; /* NULL for a root */
    struct xml_node *first_child;
    struct xml_node *last_child;
    struct xml_node *next; /* next sibling */
};

/* Returns a new element (refs 1), or NULL when out of memory. ns may be
 * NULL (meaning ""). */
struct xml_node *xml_element_new(const char *ns, const char *name);

/* The same with explicit lengths (strings need no terminator); for the
 * parser, which has them at hand. */
struct xml_node *xml_element_new_n(const char *ns,
                                   size_t ns_len,
                                   const char *name,
                                   size_t name_len);

/* Returns a new text node (refs 1), or NULL when out of memory. */
struct xml_node *xml_text_new(const char *text, size_t len);

/* Sets (adds or replaces) an attribute; value NULL removes it. A name
 * "<XML namespace>\x1flocal" is stored as "xml:local". 0, ERR_NOMEM, or
 * ERR_INVAL when el is not an element or the name could not be serialised
 * as given (empty, "xmlns", "xmlns:*", or a prefix other than "xml:"). */
int xml_set_attr(struct xml_node *el, const char *name, const char *value);

/* Appends an attribute without looking for an existing one of that name
 * (the caller knows there is none, e.g. the parser, as expat rejects
 * duplicates). Names as in xml_set_attr, already normalised. 0 or
 * ERR_NOMEM. */
int xml_attr_append_n(struct xml_node *el,
                      const char *name,
                      size_t name_len,
                      const char *value,
                      size_t value_len);

/* Borrowed attribute value or NULL. */
const char *xml_attr(const struct xml_node *el, const char *name);

/* Appends child to parent. Consumes child (which must be a root with
 * refs == 1); 0, or ERR_INVAL (parent is not an element, child is not a
 * root with refs == 1, or child is parent's root) and then nothing changed
 * and the caller still owns child. */
int xml_append(struct xml_node *parent, struct xml_node *child);

/* Unlinks node from its parent and returns it as a new root (refs 1). */
struct xml_node *xml_detach(struct xml_node *node);

/* Adds a text child, merged into the last child if that is text; 0,
 * ERR_NOMEM or ERR_INVAL (parent is not an element). */
int xml_append_text(struct xml_node *parent, const char *text, size_t len);

/* Adds and returns a new child element (borrowed), or NULL on ENOMEM. ns
 * NULL inherits the parent's namespace. */
struct xml_node *
xml_add_child(struct xml_node *parent, const char *ns, const char *name);

/* First child element matching ns (NULL: any) and name (NULL: any);
 * borrowed, or NULL. */
struct xml_node *
xml_child(const struct xml_node *el, const char *ns, const char *name);

/* Element siblings, skipping text nodes. */
struct xml_node *xml_first_element(const struct xml_node *el);
struct xml_node *xml_next_element(const struct xml_node *el);

/* Concatenated text of the direct text children as a new string (caller
 * frees), or NULL on ENOMEM. */
char *xml_text(const struct xml_node *el);

/* Returns a new reference to root. */
struct xml_node *xml_ref(struct xml_node *root);

/* Drops a reference; frees the tree at zero. Accepts NULL; ignores a node
 * that has a parent (the parent owns it). */
void xml_unref(struct xml_node *root);

/* Deep copy as a new root (refs 1), or NULL on ENOMEM. */
struct xml_node *xml_copy(const struct xml_node *node);

/*
 * Serialises node into out. inherited_ns is the default namespace in force
 * where the node is written (e.g. "jabber:server" for a stanza on an s2s
 * stream); an element whose ns differs gets an xmlns attribute. Writes
 * compactly (no added whitespace). 0, ERR_TOO_BIG or ERR_NOMEM; on error
 * out may hold a partial write the caller must discard.
 */
int xml_serialize(const struct xml_node *node,
                  const char *inherited_ns,
                  struct buf *out);

/* Appends text escaped for character data (&, <, >, and CR as &#13;) or,
 * when attr is true, for a single-quoted attribute value (also ', ", and
 * TAB, LF, CR as character references, which attribute normalisation would
 * otherwise turn into spaces). Other C0 control characters, which XML 1.0
 * cannot carry, become U+FFFD. 0, ERR_TOO_BIG or ERR_NOMEM. */
int xml_escape(struct buf *out, const char *text, size_t len, bool attr);

#endif
