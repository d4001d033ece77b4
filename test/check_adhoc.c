/*
 * check_adhoc.c: XEP-0050 ad-hoc commands on the service JID
 * (xep/xep0050_adhoc.c) through the service dispatcher, with the daemon's
 * admin operations replaced by a fake: command lists and disco per
 * requester, execute/next/prev/complete/cancel, session expiry and
 * bounds, refusal of non-admins, field-level validation errors and the
 * shape of every command's form and result.
 */
#include "config.h"

#include "err.h"
#include "log.h"
#include "service.h"
#include "xml.h"
#include "xmlparse.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_CMD  "http://jabber.org/protocol/commands"
#define NS_DATA "jabber:x:data"
#define ADMIN   "admin@a.test/laptop"
#define USER    "alice@a.test/phone"
#define ROOT    "root@a.test/desk"

/* A submitted form with one field and one value, as a literal. */
#define SUBMIT1(var, val)                                                   \
    "<x xmlns='" NS_DATA "' type='submit'><field var='" var "'><value>" val \
    "</value></field></x>"

#define NODE_LIST       "urn:fedgate:cmd:list-peers"
#define NODE_DETAIL     "urn:fedgate:cmd:peer-detail"
#define NODE_STATS      "urn:fedgate:cmd:statistics"
#define NODE_LEVEL      "urn:fedgate:cmd:set-log-level"
#define NODE_RELOAD     "urn:fedgate:cmd:reload"
#define NODE_SNIPPET    "urn:fedgate:cmd:server-snippet"
#define NODE_BLOCK      "urn:fedgate:cmd:block-domain"
#define NODE_UNBLOCK    "urn:fedgate:cmd:unblock-domain"
#define NODE_DISCONNECT "urn:fedgate:cmd:disconnect-route"
#define NODE_RETRY      "urn:fedgate:cmd:retry-route"
#define NODE_ROTATE     "urn:fedgate:cmd:rotate-dialback-secret"
#define NODE_AUDIT      "urn:fedgate:cmd:audit-log"
#define NODE_ADD_PEER   "urn:fedgate:cmd:add-peer"
#define NODE_EDIT_PEER  "urn:fedgate:cmd:edit-peer"
#define NODE_REMOVE     "urn:fedgate:cmd:remove-peer"

/* ---- the fake daemon -------------------------------------------------- */

struct fake {
    unsigned long long now;
    char level[16];
    int reloads;
    int reload_rc;
    char last_kind[16];
    char blocked[4][64]; /* the fake block list */
    size_t nblocked;
    char last_op[256]; /* "op args by who" of the last change */
    int route_rc;      /* what the route operations return */
    int rotations;
    int rotate_rc;    /* what rotate_dialback_secret returns */
    size_t audit_n;   /* the n audit_log was last asked for */
    int audit_rc;     /* what audit_log returns */
    size_t audit_len; /* how many fake rows audit_log has */
    char put[1024];   /* "key=value;..." of the last peer_put */
    bool put_edit;
    int put_rc;        /* what peer_put returns */
    size_t put_bad;    /* with ERR_INVAL: the field at fault */
    xep_done_fn *done; /* kept when peer_put or peer_remove said later */
    void *done_ud;
};

static struct fake fk;

static unsigned long long fake_now(void *ud)
{
    return ((struct fake *)ud)->now;
}

static const struct xep_peer_status fake_peers[] = {
    {.domain = "b.test",
     .local = "a.test",
     .state = "idle",
     .direction = "none",
     .home_link = "ready",
     .auth = "certificate, else dialback",
     .stanzas_out = 3,
     .queued = 0,
     .last_error = "connect 127.0.9.9:5269: Connection refused",
     .last_failure_at = 1893456000},
    {.domain = "c.test",
     .local = "a.test",
     .state = "ready",
     .direction = "both",
     .home_link = "ready",
     .auth = "dialback",
     .route_auth = "dialback",
     .tls_version = "TLSv1.3",
     .tls_cipher = "TLS_AES_256_GCM_SHA384",
     .peer_subject = "CN=c.test",
     .peer_not_after = 1893456000, /* 2030-01-01 */
     .stanzas_out = 42,
     .bytes_out = 4200,
     .stanzas_in = 40,
     .bytes_in = 3900,
     .connected_since = 1893452400, /* 2029-12-31T23:00:00Z */
     .queued = 1},
};

static size_t fake_peer_count(void *ud)
{
    (void)ud;
    return 2;
}

static int fake_peer_status(void *ud, size_t i, struct xep_peer_status *out)
{
    (void)ud;
    if (i >= 2) {
        return ERR_NOT_FOUND;
    }
    *out = fake_peers[i];
    return 0;
}

static void fake_stats(void *ud, struct xep_stats *out)
{
    (void)ud;
    memset(out, 0, sizeof(*out));
    out->uptime_s = 3600;
    out->links_up = 3;
    out->links_total = 4;
    out->routes_total = 2;
    out->routes_by_state[0] = (struct xep_count){"idle", 1};
    out->routes_by_state[1] = (struct xep_count){"ready", 1};
    out->nroutes_by_state = 2;
    out->stanzas_out = 45;
    out->stanzas_in = 30;
    out->rate_out = 1.5;
    out->rate_in = 0.25;
    out->bounces = 7;
    out->auth_failures = 2;
    out->auth_failures_by_reason[0] = (struct xep_count){"dialback", 2};
    out->nauth_failures_by_reason = 1;
}

static int fake_set_level(void *ud, const char *level)
{
    struct fake *f = ud;
    snprintf(f->level, sizeof(f->level), "%s", level);
    return 0;
}

static const char *fake_level(void *ud)
{
    return ((struct fake *)ud)->level;
}

static int fake_reload(void *ud, char *msg, size_t msglen)
{
    struct fake *f = ud;
    f->reloads++;
    snprintf(msg, msglen, "%s",
             f->reload_rc == 0 ? "fedgate.conf: 2 peer(s)"
                               : "fedgate.conf:3: unknown key 'colour'\n"
                                 "fedgate.conf:9: 'port' out of range\n");
    return f->reload_rc;
}

static int fake_snippet(void *ud, const char *kind, char **out)
{
    struct fake *f = ud;
    snprintf(f->last_kind, sizeof(f->last_kind), "%s", kind);
    *out = strdup("Component \"fedgate.a.test\"\n"
                  "\tcomponent_secret = \"x\"\n");
    return *out != NULL ? 0 : ERR_NOMEM;
}

static int fake_block(void *ud,
                      const char *domain,
                      const char *who,
                      char *msg,
                      size_t msglen)
{
    struct fake *f = ud;
    ck_assert_uint_lt(f->nblocked, 4);
    snprintf(f->blocked[f->nblocked++], sizeof(f->blocked[0]), "%s", domain);
    snprintf(f->last_op, sizeof(f->last_op), "block %s by %s", domain, who);
    snprintf(msg, msglen, "%s is blocked.", domain);
    return 0;
}

static int fake_unblock(void *ud,
                        const char *domain,
                        const char *who,
                        char *msg,
                        size_t msglen)
{
    struct fake *f = ud;
    for (size_t i = 0; i < f->nblocked; i++) {
        if (strcmp(f->blocked[i], domain) == 0) {
            memcpy(f->blocked[i], f->blocked[--f->nblocked],
                   sizeof(f->blocked[0]));
            snprintf(f->last_op, sizeof(f->last_op), "unblock %s by %s", domain,
                     who);
            snprintf(msg, msglen, "%s is no longer blocked.", domain);
            return 0;
        }
    }
    snprintf(msg, msglen, "%s is not blocked.", domain);
    return ERR_NOT_FOUND;
}

static size_t fake_blocked_count(void *ud)
{
    return ((struct fake *)ud)->nblocked;
}

static const char *fake_blocked_domain(void *ud, size_t i)
{
    struct fake *f = ud;
    return i < f->nblocked ? f->blocked[i] : NULL;
}

static int fake_route(struct fake *f,
                      const char *op,
                      const char *local,
                      const char *remote,
                      const char *who,
                      char *msg,
                      size_t msglen)
{
    snprintf(f->last_op, sizeof(f->last_op), "%s %s %s by %s", op, local,
             remote, who);
    snprintf(msg, msglen, "%s %s -> %s: %s", op, local, remote,
             f->route_rc == 0 ? "done" : "refused");
    return f->route_rc;
}

static int fake_disconnect(void *ud,
                           const char *local,
                           const char *remote,
                           const char *who,
                           char *msg,
                           size_t msglen)
{
    return fake_route(ud, "disconnect", local, remote, who, msg, msglen);
}

static int fake_retry(void *ud,
                      const char *local,
                      const char *remote,
                      const char *who,
                      char *msg,
                      size_t msglen)
{
    return fake_route(ud, "retry", local, remote, who, msg, msglen);
}

static int fake_rotate(void *ud, const char *who, char *msg, size_t msglen)
{
    struct fake *f = ud;
    snprintf(f->last_op, sizeof(f->last_op), "rotate by %s", who);
    if (f->rotate_rc != 0) {
        snprintf(msg, msglen, "Not rotated.");
        return f->rotate_rc;
    }
    f->rotations++;
    snprintf(msg, msglen, "Rotated.");
    return 0;
}

/* Newest first: row i happened at 1700000000 - i. */
static int fake_audit_log(
    void *ud,
    size_t n,
    int (*fn)(void *fnud, long long at, const char *who, const char *what),
    void *fnud)
{
    struct fake *f = ud;
    f->audit_n = n;
    if (f->audit_rc != 0) {
        return f->audit_rc;
    }
    for (size_t i = 0; i < n && i < f->audit_len; i++) {
        char what[32];
        snprintf(what, sizeof(what), "block d%zu.test", i);
        int rc = fn(fnud, 1700000000 - (long long)i, "admin@a.test", what);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static size_t fake_configured_count(void *ud)
{
    (void)ud;
    return 2;
}

static const char *fake_configured_domain(void *ud, size_t i)
{
    (void)ud;
    return i < 2 ? fake_peers[i].domain : NULL;
}

static int
fake_peer_settings(void *ud, const char *domain, struct xep_peer_settings *out)
{
    (void)ud;
    memset(out, 0, sizeof(*out));
    if (strcmp(domain, "c.test") != 0) {
        return ERR_NOT_FOUND;
    }
    out->domain = "c.test";
    out->auth = "dialback";
    out->trusted = true;
    out->tls_required = false;
    out->port = 5270;
    out->host = "127.0.0.9";
    snprintf(out->services, sizeof(out->services), "conference.c.test");
    out->origin = "config file";
    return 0;
}

static int fake_peer_put(void *ud,
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
    struct fake *f = ud;
    size_t len = 0;
    f->put[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(f->put + len, sizeof(f->put) - len, "%s=%s;",
                                fields[i].key, fields[i].value);
    }
    f->put_edit = edit;
    snprintf(f->last_op, sizeof(f->last_op), "put by %s", who);
    if (f->put_rc == ERR_INVAL) {
        *bad = f->put_bad;
        snprintf(msg, msglen, "'peers.port' must be between 1 and 65535");
        return ERR_INVAL;
    }
    if (f->put_rc == ERR_AGAIN) {
        f->done = done;
        f->done_ud = done_ud;
        return ERR_AGAIN;
    }
    snprintf(msg, msglen, "Peer stored.");
    return f->put_rc;
}

static int fake_peer_remove(void *ud,
                            const char *domain,
                            const char *who,
                            xep_done_fn *done,
                            void *done_ud,
                            char *msg,
                            size_t msglen)
{
    struct fake *f = ud;
    snprintf(f->last_op, sizeof(f->last_op), "remove %s by %s", domain, who);
    f->done = done;
    f->done_ud = done_ud;
    (void)msg;
    (void)msglen;
    return ERR_AGAIN;
}

static const struct xep_admin_ops fake_ops = {
    .ud = &fk,
    .now_ms = fake_now,
    .peer_count = fake_peer_count,
    .peer_status = fake_peer_status,
    .stats = fake_stats,
    .set_log_level = fake_set_level,
    .log_level = fake_level,
    .reload = fake_reload,
    .server_snippet = fake_snippet,
    .block_domain = fake_block,
    .unblock_domain = fake_unblock,
    .blocked_count = fake_blocked_count,
    .blocked_domain = fake_blocked_domain,
    .route_disconnect = fake_disconnect,
    .route_retry = fake_retry,
    .rotate_dialback_secret = fake_rotate,
    .audit_log = fake_audit_log,
    .configured_count = fake_configured_count,
    .configured_domain = fake_configured_domain,
    .peer_settings = fake_peer_settings,
    .peer_put = fake_peer_put,
    .peer_remove = fake_peer_remove,
};

/* ---- plumbing --------------------------------------------------------- */

struct sent {
    struct xml_node *replies[4];
    int n;
};

static struct sent out;
static struct service *svc;

static int collect(void *ud, struct xml_node *st)
{
    struct sent *s = ud;
    ck_assert_int_lt(s->n, 4);
    s->replies[s->n++] = st;
    return 0;
}

static void sent_clear(void)
{
    for (int i = 0; i < out.n; i++) {
        xml_unref(out.replies[i]);
    }
    out.n = 0;
}

static void on_stanza(void *ud, struct xml_node *st)
{
    *(struct xml_node **)ud = st;
}

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

static void setup(void)
{
    static const char *const admins[] = {"admin@a.test", "root@a.test"};
    static const char *const peers[] = {"b.test", "c.test"};
    memset(&fk, 0, sizeof(fk));
    fk.now = 1000000;
    snprintf(fk.level, sizeof(fk.level), "info");
    memset(&out, 0, sizeof(out));
    svc = service_new("fedgate.a.test", peers, 2, collect, &out);
    ck_assert_ptr_nonnull(svc);
    ck_assert_int_eq(service_set_admin(svc, admins, 2, &fake_ops), 0);
}

static void teardown(void)
{
    sent_clear();
    service_free(svc);
    svc = NULL;
}

/* Sends one stanza and returns the single reply (borrowed until the next
 * call). */
static struct xml_node *ask(const char *xml)
{
    sent_clear();
    service_handle(svc, parse(xml));
    ck_assert_int_eq(out.n, 1);
    return out.replies[0];
}

/* A <command/> iq from `from`; extra goes inside the command element. */
static struct xml_node *cmd(const char *from,
                            const char *node,
                            const char *sid,
                            const char *action,
                            const char *extra)
{
    char xml[4096];
    char sidattr[128] = "";
    char actattr[64] = "";
    if (sid != NULL) {
        snprintf(sidattr, sizeof(sidattr), " sessionid='%s'", sid);
    }
    if (action != NULL) {
        snprintf(actattr, sizeof(actattr), " action='%s'", action);
    }
    snprintf(xml, sizeof(xml),
             "<iq type='set' id='c1' from='%s' to='fedgate.a.test'>"
             "<command xmlns='" NS_CMD "' node='%s'%s%s>%s</command></iq>",
             from, node, sidattr, actattr, extra != NULL ? extra : "");
    return ask(xml);
}

/* A submitted form with one field var = value (value NULL: no value). */
static const char *submit1(const char *var, const char *value)
{
    static char x[1024];
    snprintf(x, sizeof(x),
             "<x xmlns='" NS_DATA "' type='submit'><field var='%s'>%s%s%s"
             "</field></x>",
             var, value != NULL ? "<value>" : "", value != NULL ? value : "",
             value != NULL ? "</value>" : "");
    return x;
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

/* The XEP-0050 specific condition of an error reply, or NULL. */
static const char *error_specific(const struct xml_node *r)
{
    const struct xml_node *e = xml_child(r, NULL, "error");
    const struct xml_node *c = xml_child(e, NS_CMD, NULL);
    return c != NULL ? c->name : NULL;
}

/* The <text/> of an error reply (static copy). */
static const char *error_text(const struct xml_node *r)
{
    static char buf[512];
    const struct xml_node *e = xml_child(r, NULL, "error");
    const struct xml_node *t = xml_child(e, XML_NS_STANZAS, "text");
    ck_assert_ptr_nonnull(t);
    char *s = xml_text(t);
    snprintf(buf, sizeof(buf), "%s", s);
    free(s);
    return buf;
}

static const struct xml_node *command_of(const struct xml_node *r)
{
    ck_assert_str_eq(xml_attr(r, "type"), "result");
    const struct xml_node *c = xml_child(r, NS_CMD, "command");
    ck_assert_ptr_nonnull(c);
    return c;
}

/* Field var of form x, or NULL. */
static const struct xml_node *field(const struct xml_node *x, const char *var)
{
    for (const struct xml_node *f = xml_child(x, NULL, "field"); f != NULL;
         f = xml_next_element(f)) {
        const char *v = xml_attr(f, "var");
        if (strcmp(f->name, "field") == 0 && v != NULL && strcmp(v, var) == 0) {
            return f;
        }
    }
    return NULL;
}

/* The first <value/> of a field (static copy), or "". */
static const char *value_of(const struct xml_node *f)
{
    static char buf[512];
    const struct xml_node *v = xml_child(f, NULL, "value");
    buf[0] = '\0';
    if (v != NULL) {
        char *s = xml_text(v);
        snprintf(buf, sizeof(buf), "%s", s);
        free(s);
    }
    return buf;
}

static size_t count_children(const struct xml_node *el, const char *name)
{
    size_t n = 0;
    for (const struct xml_node *c = xml_first_element(el); c != NULL;
         c = xml_next_element(c)) {
        n += strcmp(c->name, name) == 0;
    }
    return n;
}

/* Starts a command with input and returns its session id (static). */
static const char *start(const char *node)
{
    static char sid[64];
    const struct xml_node *c = command_of(cmd(ADMIN, node, NULL, NULL, NULL));
    ck_assert_str_eq(xml_attr(c, "status"), "executing");
    ck_assert_ptr_nonnull(xml_attr(c, "sessionid"));
    snprintf(sid, sizeof(sid), "%s", xml_attr(c, "sessionid"));
    return sid;
}

/* ---- discovery --------------------------------------------------------- */

static struct xml_node *
disco(const char *from, const char *ns, const char *node)
{
    char xml[512];
    snprintf(xml, sizeof(xml),
             "<iq type='get' id='d1' from='%s' to='fedgate.a.test'>"
             "<query xmlns='%s' node='%s'/></iq>",
             from, ns, node);
    return ask(xml);
}

START_TEST(test_list_admin_sees_all)
{
    const struct xml_node *r =
        disco(ADMIN, "http://jabber.org/protocol/disco#items", NS_CMD);
    ck_assert_str_eq(xml_attr(r, "type"), "result");
    const struct xml_node *q = xml_child(r, NULL, "query");
    ck_assert_str_eq(xml_attr(q, "node"), NS_CMD);
    ck_assert_uint_eq(count_children(q, "item"), 15);
    const struct xml_node *it = xml_child(q, NULL, "item");
    ck_assert_str_eq(xml_attr(it, "jid"), "fedgate.a.test");
    ck_assert_str_eq(xml_attr(it, "node"), NODE_LIST);
    ck_assert_str_eq(xml_attr(it, "name"), "List peers");
}
END_TEST

START_TEST(test_list_other_sees_none)
{
    const struct xml_node *r =
        disco(USER, "http://jabber.org/protocol/disco#items", NS_CMD);
    ck_assert_str_eq(xml_attr(r, "type"), "result");
    ck_assert_uint_eq(count_children(xml_child(r, NULL, "query"), "item"), 0);
    /* the bare JID matches without regard to case, the resource aside */
    r = disco("ADMIN@A.test/x", "http://jabber.org/protocol/disco#items",
              NS_CMD);
    ck_assert_uint_eq(count_children(xml_child(r, NULL, "query"), "item"), 15);
    /* a JID that only starts like an admin's is not one */
    r = disco("admin@a.test.evil/x", "http://jabber.org/protocol/disco#items",
              NS_CMD);
    ck_assert_uint_eq(count_children(xml_child(r, NULL, "query"), "item"), 0);
}
END_TEST

START_TEST(test_disco_info_features_and_nodes)
{
    const struct xml_node *r =
        ask("<iq type='get' id='i' from='" USER "' to='fedgate.a.test'>"
            "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    bool cmds = false;
    bool forms = false;
    for (const struct xml_node *f =
             xml_child(xml_child(r, NULL, "query"), NULL, "feature");
         f != NULL; f = xml_next_element(f)) {
        cmds = cmds || strcmp(xml_attr(f, "var"), NS_CMD) == 0;
        forms = forms || strcmp(xml_attr(f, "var"), NS_DATA) == 0;
    }
    ck_assert(cmds && forms);

    r = disco(ADMIN, "http://jabber.org/protocol/disco#info", NODE_STATS);
    ck_assert_str_eq(xml_attr(r, "type"), "result");
    const struct xml_node *id =
        xml_child(xml_child(r, NULL, "query"), NULL, "identity");
    ck_assert_str_eq(xml_attr(id, "category"), "automation");
    ck_assert_str_eq(xml_attr(id, "type"), "command-node");
    ck_assert_str_eq(xml_attr(id, "name"), "Statistics");

    r = disco(USER, "http://jabber.org/protocol/disco#info", NODE_STATS);
    ck_assert_str_eq(error_condition(r), "forbidden");
    r = disco(ADMIN, "http://jabber.org/protocol/disco#info", "urn:nope");
    ck_assert_str_eq(error_condition(r), "item-not-found");
}
END_TEST

/* ---- refusals and protocol errors ---------------------------------------- */

START_TEST(test_forbidden_for_non_admin)
{
    static const char *const nodes[] = {NODE_LIST,  NODE_DETAIL, NODE_STATS,
                                        NODE_LEVEL, NODE_RELOAD, NODE_SNIPPET,
                                        "urn:nope"};
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        const struct xml_node *r = cmd(USER, nodes[i], NULL, NULL, NULL);
        ck_assert_str_eq(error_condition(r), "forbidden");
    }
    /* with a stolen session id too */
    const char *sid = start(NODE_LEVEL);
    char copy[64];
    snprintf(copy, sizeof(copy), "%s", sid);
    const struct xml_node *r =
        cmd(USER, NODE_LEVEL, copy, "complete", submit1("level", "debug"));
    ck_assert_str_eq(error_condition(r), "forbidden");
    ck_assert_str_eq(fk.level, "info");
    ck_assert_int_eq(fk.reloads, 0);
}
END_TEST

START_TEST(test_unknown_node_and_actions)
{
    const struct xml_node *r = cmd(ADMIN, "urn:nope", NULL, NULL, NULL);
    ck_assert_str_eq(error_condition(r), "item-not-found");
    r = cmd(ADMIN, NODE_LEVEL, NULL, "dance", NULL);
    ck_assert_str_eq(error_condition(r), "bad-request");
    ck_assert_str_eq(error_specific(r), "malformed-action");
    r = cmd(ADMIN, NODE_LEVEL, NULL, "next", NULL);
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
    r = cmd(ADMIN, NODE_LEVEL, "fg-nope", "complete", NULL);
    ck_assert_str_eq(error_condition(r), "bad-request");
    ck_assert_str_eq(error_specific(r), "bad-sessionid");

    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_LEVEL));
    r = cmd(ADMIN, NODE_LEVEL, sid, "prev", NULL);
    ck_assert_str_eq(error_specific(r), "bad-action");
    r = cmd(ADMIN, NODE_LEVEL, sid, "next", submit1("level", "warn"));
    ck_assert_str_eq(error_specific(r), "bad-action");
    /* the session belongs to the command it was opened for */
    r = cmd(ADMIN, NODE_SNIPPET, sid, "complete", submit1("server", "prosody"));
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
    ck_assert_str_eq(fk.level, "info");
}
END_TEST

START_TEST(test_session_bound_to_full_jid)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_LEVEL));
    const struct xml_node *r = cmd("admin@a.test/other", NODE_LEVEL, sid,
                                   "complete", submit1("level", "debug"));
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
    r = cmd("root@a.test/x", NODE_LEVEL, sid, "complete",
            submit1("level", "debug"));
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
    ck_assert_str_eq(fk.level, "info");
}
END_TEST

/* ---- sessions --------------------------------------------------------------
 */

START_TEST(test_session_expires)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_LEVEL));
    fk.now += 9 * 60 * 1000; /* within ten minutes: still there */
    const struct xml_node *r =
        cmd(ADMIN, NODE_LEVEL, sid, "complete", submit1("level", "bogus"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    fk.now += 10 * 60 * 1000 + 1; /* idle for longer than ten minutes */
    r = cmd(ADMIN, NODE_LEVEL, sid, "complete", submit1("level", "debug"));
    ck_assert_str_eq(error_condition(r), "not-allowed");
    ck_assert_str_eq(error_specific(r), "session-expired");
    ck_assert_str_eq(fk.level, "info");
    /* and it is gone */
    r = cmd(ADMIN, NODE_LEVEL, sid, "complete", submit1("level", "debug"));
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
}
END_TEST

START_TEST(test_sessions_bounded)
{
    char first[64];
    snprintf(first, sizeof(first), "%s", start(NODE_LEVEL));
    for (int i = 1; i < 16; i++) {
        (void)start(NODE_LEVEL);
    }
    const struct xml_node *r = cmd(ADMIN, NODE_LEVEL, NULL, NULL, NULL);
    ck_assert_str_eq(error_condition(r), "resource-constraint");
    /* ending one frees a slot */
    r = cmd(ADMIN, NODE_LEVEL, first, "cancel", NULL);
    ck_assert_str_eq(xml_attr(command_of(r), "status"), "canceled");
    (void)start(NODE_LEVEL);
    /* expired ones are reclaimed */
    fk.now += 11 * 60 * 1000;
    for (int i = 0; i < 16; i++) {
        (void)start(NODE_SNIPPET);
    }
}
END_TEST

START_TEST(test_cancel)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_RELOAD));
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_RELOAD, sid, "cancel", NULL));
    ck_assert_str_eq(xml_attr(c, "status"), "canceled");
    ck_assert_str_eq(xml_attr(c, "sessionid"), sid);
    const struct xml_node *r =
        cmd(ADMIN, NODE_RELOAD, sid, "complete", submit1("confirm", "1"));
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
    ck_assert_int_eq(fk.reloads, 0);
}
END_TEST

/* ---- field validation ------------------------------------------------------
 */

START_TEST(test_field_errors)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_LEVEL));
    struct {
        const char *x;
        const char *text;
    } cases[] = {
        {SUBMIT1("level", "verbose"),
         "field 'level' (Log level) is not one of the offered options"},
        {"<x xmlns='" NS_DATA "' type='submit'><field var='level'/></x>",
         "field 'level' (Log level) is required"},
        {SUBMIT1("level", ""), "field 'level' (Log level) is required"},
        {SUBMIT1("other", "debug"), "field 'level' (Log level) is required"},
        {"", "field 'level' (Log level) is required"},
        {"<x xmlns='" NS_DATA "' type='submit'><field var='level'>"
         "<value>warn</value><value>debug</value></field></x>",
         "field 'level' (Log level) takes exactly one value"},
        {"<x xmlns='" NS_DATA "' type='form'><field var='level'>"
         "<value>warn</value></field></x>",
         "the data form must be of type submit"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct xml_node *r =
            cmd(ADMIN, NODE_LEVEL, sid, "complete", cases[i].x);
        ck_assert_str_eq(error_condition(r), "bad-request");
        ck_assert_str_eq(error_specific(r), "bad-payload");
        ck_assert_str_eq(xml_attr(xml_child(r, NULL, "error"), "type"),
                         "modify");
        ck_assert_str_eq(error_text(r), cases[i].text);
    }
    ck_assert_str_eq(fk.level, "info");
    /* the session survived the errors: a good submission now works */
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_LEVEL, sid, NULL, submit1("level", "warn")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(fk.level, "warn");
}
END_TEST

START_TEST(test_boolean_and_jid_fields)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_RELOAD));
    const struct xml_node *r =
        cmd(ADMIN, NODE_RELOAD, sid, "complete", submit1("confirm", "maybe"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    ck_assert_str_eq(error_text(r),
                     "field 'confirm' (Reload now) must be true or false");
    ck_assert_int_eq(fk.reloads, 0);

    snprintf(sid, sizeof(sid), "%s", start(NODE_DETAIL));
    r = cmd(ADMIN, NODE_DETAIL, sid, "next", submit1("peer", "b.test"));
    ck_assert_str_eq(xml_attr(command_of(r), "status"), "executing");
    r = cmd(ADMIN, NODE_DETAIL, sid, "complete", submit1("peer", "not a jid"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    ck_assert_str_eq(error_text(r), "field 'peer' (Peer) is not a JID");
}
END_TEST

/* ---- each command
 * ------------------------------------------------------------ */

START_TEST(test_list_peers_result)
{
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_LIST, NULL, NULL, NULL));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_ptr_null(xml_attr(c, "sessionid"));
    const struct xml_node *x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(xml_attr(x, "type"), "result");
    ck_assert_str_eq(value_of(field(x, "FORM_TYPE")), "urn:fedgate:admin");
    const struct xml_node *rep = xml_child(x, NULL, "reported");
    ck_assert_ptr_nonnull(rep);
    ck_assert_uint_eq(count_children(rep, "field"), 17);
    ck_assert_ptr_nonnull(field(rep, "last-failure"));
    ck_assert_uint_eq(count_children(x, "item"), 2);
    const struct xml_node *b = xml_child(x, NULL, "item");
    ck_assert_str_eq(value_of(field(b, "domain")), "b.test");
    ck_assert_str_eq(value_of(field(b, "last-failure")),
                     "connect 127.0.9.9:5269: Connection refused "
                     "(2030-01-01T00:00:00Z)");
    ck_assert_str_eq(value_of(field(b, "tls-version")), "-");
    const struct xml_node *cc = xml_next_element(b);
    ck_assert_str_eq(value_of(field(cc, "domain")), "c.test");
    ck_assert_str_eq(value_of(field(cc, "state")), "ready");
    ck_assert_str_eq(value_of(field(cc, "direction")), "both");
    ck_assert_str_eq(value_of(field(cc, "tls-cipher")),
                     "TLS_AES_256_GCM_SHA384");
    ck_assert_str_eq(value_of(field(cc, "subject")), "CN=c.test");
    ck_assert_str_eq(value_of(field(cc, "expiry")), "2030-01-01T00:00:00Z");
    ck_assert_str_eq(value_of(field(cc, "stanzas-out")), "42");
    ck_assert_str_eq(value_of(field(cc, "bytes-out")), "4200");
    ck_assert_str_eq(value_of(field(cc, "stanzas-in")), "40");
    ck_assert_str_eq(value_of(field(cc, "bytes-in")), "3900");
    ck_assert_str_eq(value_of(field(cc, "connected-since")),
                     "2029-12-31T23:00:00Z");
    ck_assert_str_eq(value_of(field(b, "connected-since")), "-");
    ck_assert_str_eq(value_of(field(cc, "queued")), "1");
    ck_assert_str_eq(value_of(field(cc, "last-failure")), "none");
}
END_TEST

START_TEST(test_peer_detail_stages)
{
    char sid[64];
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_DETAIL, NULL, "execute", NULL));
    snprintf(sid, sizeof(sid), "%s", xml_attr(c, "sessionid"));
    const struct xml_node *acts = xml_child(c, NULL, "actions");
    ck_assert_str_eq(xml_attr(acts, "execute"), "next");
    ck_assert_ptr_nonnull(xml_child(acts, NULL, "next"));
    ck_assert_ptr_null(xml_child(acts, NULL, "prev"));
    const struct xml_node *x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(xml_attr(x, "type"), "form");
    const struct xml_node *peer = field(x, "peer");
    ck_assert_str_eq(xml_attr(peer, "type"), "list-single");
    ck_assert_ptr_nonnull(xml_child(peer, NULL, "required"));
    ck_assert_uint_eq(count_children(peer, "option"), 2);

    /* stage 2: the summary, with prev and complete */
    c = command_of(
        cmd(ADMIN, NODE_DETAIL, sid, "next", submit1("peer", "b.test")));
    ck_assert_str_eq(xml_attr(c, "status"), "executing");
    acts = xml_child(c, NULL, "actions");
    ck_assert_str_eq(xml_attr(acts, "execute"), "complete");
    ck_assert_ptr_nonnull(xml_child(acts, NULL, "prev"));
    ck_assert_ptr_nonnull(xml_child(acts, NULL, "complete"));
    x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(value_of(field(x, "peer")), "b.test");
    bool summary = false;
    for (const struct xml_node *f = xml_child(x, NULL, "field"); f != NULL;
         f = xml_next_element(f)) {
        if (strcmp(xml_attr(f, "type"), "fixed") == 0 &&
            strstr(value_of(f), "Connection refused") != NULL) {
            summary = true;
        }
    }
    ck_assert(summary);

    /* prev: stage 1 again, the choice kept */
    c = command_of(cmd(ADMIN, NODE_DETAIL, sid, "prev", NULL));
    ck_assert_str_eq(xml_attr(c, "status"), "executing");
    x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(value_of(field(x, "peer")), "b.test");
    c = command_of(
        cmd(ADMIN, NODE_DETAIL, sid, "next", submit1("peer", "c.test")));
    c = command_of(cmd(ADMIN, NODE_DETAIL, sid, "complete", NULL));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    x = xml_child(c, NS_DATA, "x");
    ck_assert_uint_eq(count_children(x, "item"), 1);
    ck_assert_str_eq(value_of(field(xml_child(x, NULL, "item"), "domain")),
                     "c.test");
    const struct xml_node *cfg = xml_next_element(x);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(value_of(field(cfg, "bytes-out")), "4200");
    ck_assert_str_eq(value_of(field(cfg, "auth-allowed")), "dialback");
    /* the session ended with the result */
    const struct xml_node *r = cmd(ADMIN, NODE_DETAIL, sid, "prev", NULL);
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
}
END_TEST

START_TEST(test_statistics_result)
{
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_STATS, NULL, NULL, NULL));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    const struct xml_node *x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(xml_attr(x, "type"), "result");
    ck_assert_str_eq(value_of(field(x, "uptime")), "3600");
    ck_assert_str_eq(value_of(field(x, "links")), "3/4");
    ck_assert_str_eq(value_of(field(x, "routes")), "2");
    ck_assert_str_eq(value_of(field(x, "routes-idle")), "1");
    ck_assert_str_eq(value_of(field(x, "routes-ready")), "1");
    ck_assert_str_eq(value_of(field(x, "stanzas")),
                     "45 out (1.5/s), 30 in (0.2/s)");
    ck_assert_str_eq(value_of(field(x, "bounces")), "7");
    ck_assert_str_eq(value_of(field(x, "auth-failures")), "2");
    ck_assert_str_eq(value_of(field(x, "auth-failures-dialback")), "2");
}
END_TEST

START_TEST(test_set_log_level)
{
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_LEVEL, NULL, NULL, NULL));
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", xml_attr(c, "sessionid"));
    const struct xml_node *f = field(xml_child(c, NS_DATA, "x"), "level");
    ck_assert_str_eq(xml_attr(f, "type"), "list-single");
    ck_assert_str_eq(value_of(f), "info"); /* the current level */
    ck_assert_uint_eq(count_children(f, "option"), 4);
    c = command_of(
        cmd(ADMIN, NODE_LEVEL, sid, "complete", submit1("level", "debug")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(fk.level, "debug");
    const struct xml_node *note = xml_child(c, NULL, "note");
    char *t = xml_text(note);
    ck_assert_str_eq(t, "Log level is now debug.");
    free(t);
}
END_TEST

START_TEST(test_reload_ok_and_errors)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_RELOAD));
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_RELOAD, sid, NULL, submit1("confirm", "1")));
    ck_assert_int_eq(fk.reloads, 1);
    const struct xml_node *x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(value_of(field(x, "result")), "OK");
    ck_assert_str_eq(xml_attr(xml_child(c, NULL, "note"), "type"), "info");

    fk.reload_rc = ERR_CONFIG;
    snprintf(sid, sizeof(sid), "%s", start(NODE_RELOAD));
    c = command_of(
        cmd(ADMIN, NODE_RELOAD, sid, NULL, submit1("confirm", "true")));
    ck_assert_int_eq(fk.reloads, 2);
    ck_assert_str_eq(xml_attr(xml_child(c, NULL, "note"), "type"), "error");
    x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(value_of(field(x, "result")), "failed");
    const struct xml_node *m = field(x, "messages");
    ck_assert_str_eq(xml_attr(m, "type"), "text-multi");
    ck_assert_uint_eq(count_children(m, "value"), 2);
    ck_assert_str_eq(value_of(m), "fedgate.conf:3: unknown key 'colour'");

    /* declining does nothing */
    snprintf(sid, sizeof(sid), "%s", start(NODE_RELOAD));
    c = command_of(
        cmd(ADMIN, NODE_RELOAD, sid, NULL, submit1("confirm", "false")));
    ck_assert_int_eq(fk.reloads, 2);
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
}
END_TEST

START_TEST(test_server_snippet)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_SNIPPET));
    const struct xml_node *r =
        cmd(ADMIN, NODE_SNIPPET, sid, NULL, submit1("server", "openfire"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    ck_assert_str_eq(error_text(r), "field 'server' (Home server) is not "
                                    "one of the offered options");
    const struct xml_node *c = command_of(
        cmd(ADMIN, NODE_SNIPPET, sid, NULL, submit1("server", "prosody")));
    ck_assert_str_eq(fk.last_kind, "prosody");
    const struct xml_node *f = field(xml_child(c, NS_DATA, "x"), "snippet");
    ck_assert_str_eq(xml_attr(f, "type"), "text-multi");
    ck_assert_uint_eq(count_children(f, "value"), 2);
    ck_assert_str_eq(value_of(f), "Component \"fedgate.a.test\"");
}
END_TEST

/* The text of the first <note/> of a command (static copy). */
static const char *note_of(const struct xml_node *c, const char *type)
{
    static char buf[512];
    const struct xml_node *n = xml_child(c, NULL, "note");
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(xml_attr(n, "type"), type);
    char *t = xml_text(n);
    snprintf(buf, sizeof(buf), "%s", t);
    free(t);
    return buf;
}

/* The option values of field var in the stage form of reply r, joined by
 * spaces (static). */
static const char *options_of(const struct xml_node *r, const char *var)
{
    static char buf[512];
    const struct xml_node *f =
        field(xml_child(command_of(r), NS_DATA, "x"), var);
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(xml_attr(f, "type"), "list-single");
    buf[0] = '\0';
    for (const struct xml_node *o = xml_child(f, NULL, "option"); o != NULL;
         o = xml_next_element(o)) {
        char *t = xml_text(xml_child(o, NULL, "value"));
        size_t len = strlen(buf);
        snprintf(buf + len, sizeof(buf) - len, "%s%s", len > 0 ? " " : "", t);
        free(t);
    }
    return buf;
}

START_TEST(test_block_domain)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_BLOCK));
    static const char *const bad[] = {"user@evil.test", "evil.test/res",
                                      "evil..test",     ".evil.test",
                                      "evil test",      "evil_test"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const struct xml_node *r =
            cmd(ADMIN, NODE_BLOCK, sid, NULL, submit1("domain", bad[i]));
        ck_assert_str_eq(error_specific(r), "bad-payload");
        ck_assert_msg(strstr(error_text(r), "field 'domain'") != NULL &&
                          (strstr(error_text(r), "is not a domain") != NULL ||
                           strstr(error_text(r), "is not a JID") != NULL),
                      "%s: %s", bad[i], error_text(r));
    }
    ck_assert_uint_eq(fk.nblocked, 0);
    const struct xml_node *r =
        cmd(ADMIN, NODE_BLOCK, sid, NULL, submit1("domain", NULL));
    ck_assert_str_eq(error_text(r), "field 'domain' (Domain) is required");
    /* the session survived the errors */
    const struct xml_node *c = command_of(
        cmd(ADMIN, NODE_BLOCK, sid, NULL, submit1("domain", "evil.test")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(note_of(c, "info"), "evil.test is blocked.");
    ck_assert_uint_eq(fk.nblocked, 1);
    /* audited with the admin's bare JID */
    ck_assert_str_eq(fk.last_op, "block evil.test by admin@a.test");
}
END_TEST

START_TEST(test_unblock_domain)
{
    char sid[64];
    /* nothing blocked: no option, so nothing can be submitted */
    const struct xml_node *r = cmd(ADMIN, NODE_UNBLOCK, NULL, NULL, NULL);
    ck_assert_str_eq(options_of(r, "domain"), "");
    snprintf(sid, sizeof(sid), "%s", xml_attr(command_of(r), "sessionid"));
    r = cmd(ADMIN, NODE_UNBLOCK, sid, NULL, submit1("domain", "evil.test"));
    ck_assert_str_eq(error_text(r), "field 'domain' (Blocked domain) is not "
                                    "one of the offered options");
    cmd(ADMIN, NODE_UNBLOCK, sid, "cancel", NULL);

    snprintf(fk.blocked[0], sizeof(fk.blocked[0]), "evil.test");
    snprintf(fk.blocked[1], sizeof(fk.blocked[1]), "bad.test");
    fk.nblocked = 2;
    r = cmd(ROOT, NODE_UNBLOCK, NULL, NULL, NULL);
    ck_assert_str_eq(options_of(r, "domain"), "evil.test bad.test");
    snprintf(sid, sizeof(sid), "%s", xml_attr(command_of(r), "sessionid"));
    const struct xml_node *c = command_of(
        cmd(ROOT, NODE_UNBLOCK, sid, NULL, submit1("domain", "evil.test")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(note_of(c, "info"), "evil.test is no longer blocked.");
    ck_assert_uint_eq(fk.nblocked, 1);
    ck_assert_str_eq(fk.blocked[0], "bad.test");
    ck_assert_str_eq(fk.last_op, "unblock evil.test by root@a.test");
}
END_TEST

START_TEST(test_route_commands)
{
    char sid[64];
    const struct xml_node *r = cmd(ADMIN, NODE_DISCONNECT, NULL, NULL, NULL);
    ck_assert_str_eq(options_of(r, "route"), "a.test/b.test a.test/c.test");
    snprintf(sid, sizeof(sid), "%s", xml_attr(command_of(r), "sessionid"));
    r = cmd(ADMIN, NODE_DISCONNECT, sid, NULL,
            submit1("route", "a.test/evil.test"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    ck_assert_uint_eq(strlen(fk.last_op), 0);
    const struct xml_node *c = command_of(cmd(
        ADMIN, NODE_DISCONNECT, sid, NULL, submit1("route", "a.test/c.test")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(note_of(c, "info"), "disconnect a.test -> c.test: done");
    ck_assert_str_eq(fk.last_op, "disconnect a.test c.test by admin@a.test");

    /* a refusal comes back as an error note */
    fk.route_rc = ERR_AGAIN;
    snprintf(sid, sizeof(sid), "%s", start(NODE_RETRY));
    c = command_of(
        cmd(ADMIN, NODE_RETRY, sid, NULL, submit1("route", "a.test/b.test")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(note_of(c, "error"), "retry a.test -> b.test: refused");
    ck_assert_str_eq(fk.last_op, "retry a.test b.test by admin@a.test");
}
END_TEST

START_TEST(test_rotate_dialback_secret)
{
    char sid[64];
    /* the form asks for confirmation, defaulting to no */
    const struct xml_node *r = cmd(ADMIN, NODE_ROTATE, NULL, NULL, NULL);
    const struct xml_node *f =
        field(xml_child(command_of(r), NS_DATA, "x"), "confirm");
    ck_assert_str_eq(xml_attr(f, "type"), "boolean");
    ck_assert_str_eq(value_of(f), "0");
    snprintf(sid, sizeof(sid), "%s", xml_attr(command_of(r), "sessionid"));
    r = cmd(ADMIN, NODE_ROTATE, sid, NULL, submit1("confirm", "maybe"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    const struct xml_node *c = command_of(
        cmd(ADMIN, NODE_ROTATE, sid, NULL, submit1("confirm", "false")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(note_of(c, "info"), "Not rotated.");
    ck_assert_int_eq(fk.rotations, 0);
    ck_assert_uint_eq(strlen(fk.last_op), 0);

    snprintf(sid, sizeof(sid), "%s", start(NODE_ROTATE));
    c = command_of(
        cmd(ADMIN, NODE_ROTATE, sid, NULL, submit1("confirm", "true")));
    ck_assert_str_eq(note_of(c, "info"), "Rotated.");
    ck_assert_int_eq(fk.rotations, 1);
    /* audited with the admin's bare JID */
    ck_assert_str_eq(fk.last_op, "rotate by admin@a.test");

    /* a failure comes back as an error note */
    fk.rotate_rc = ERR_SYS;
    snprintf(sid, sizeof(sid), "%s", start(NODE_ROTATE));
    fk.last_op[0] = '\0';
    c = command_of(cmd(ADMIN, NODE_ROTATE, sid, NULL, submit1("confirm", "1")));
    ck_assert_str_eq(note_of(c, "error"), "Not rotated.");
    ck_assert_int_eq(fk.rotations, 1);
    ck_assert_str_eq(fk.last_op, "rotate by admin@a.test");
}
END_TEST

START_TEST(test_audit_log)
{
    char sid[64];
    fk.audit_len = 30;
    const struct xml_node *r = cmd(ADMIN, NODE_AUDIT, NULL, NULL, NULL);
    ck_assert_str_eq(options_of(r, "count"), "10 20 50 100");
    ck_assert_str_eq(
        value_of(field(xml_child(command_of(r), NS_DATA, "x"), "count")), "20");
    snprintf(sid, sizeof(sid), "%s", xml_attr(command_of(r), "sessionid"));
    r = cmd(ADMIN, NODE_AUDIT, sid, NULL, submit1("count", "7"));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_AUDIT, sid, NULL, submit1("count", "20")));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_uint_eq(fk.audit_n, 20);
    const struct xml_node *x = xml_child(c, NS_DATA, "x");
    ck_assert_str_eq(xml_attr(x, "type"), "result");
    const struct xml_node *rep = xml_child(x, NULL, "reported");
    ck_assert_uint_eq(count_children(rep, "field"), 3);
    ck_assert_str_eq(xml_attr(field(rep, "when"), "label"), "When (UTC)");
    ck_assert_uint_eq(count_children(x, "item"), 20);
    /* the newest row first: when, who, what */
    const struct xml_node *item = xml_child(x, NULL, "item");
    ck_assert_str_eq(value_of(field(item, "when")), "2023-11-14T22:13:20Z");
    ck_assert_str_eq(value_of(field(item, "who")), "admin@a.test");
    ck_assert_str_eq(value_of(field(item, "what")), "block d0.test");

    /* fewer rows than asked for */
    snprintf(sid, sizeof(sid), "%s", start(NODE_AUDIT));
    c = command_of(cmd(ADMIN, NODE_AUDIT, sid, NULL, submit1("count", "100")));
    ck_assert_uint_eq(fk.audit_n, 100);
    ck_assert_uint_eq(count_children(xml_child(c, NS_DATA, "x"), "item"), 30);

    /* empty, and unreadable */
    fk.audit_len = 0;
    snprintf(sid, sizeof(sid), "%s", start(NODE_AUDIT));
    c = command_of(cmd(ADMIN, NODE_AUDIT, sid, NULL, submit1("count", "10")));
    ck_assert_str_eq(note_of(c, "info"), "The audit log is empty.");
    fk.audit_rc = ERR_SYS;
    snprintf(sid, sizeof(sid), "%s", start(NODE_AUDIT));
    c = command_of(cmd(ADMIN, NODE_AUDIT, sid, NULL, submit1("count", "10")));
    ck_assert_str_eq(note_of(c, "error"),
                     "The audit log cannot be read (see the log).");
}
END_TEST

/* A submitted form from "var=value" pairs (value may hold '\n' for a
 * text-multi field: one <value/> per line). */
static const char *submitn(const char *const *pairs, size_t n)
{
    static char x[4096];
    size_t len =
        (size_t)snprintf(x, sizeof(x), "<x xmlns='" NS_DATA "' type='submit'>");
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(pairs[i], '=');
        len += (size_t)snprintf(x + len, sizeof(x) - len, "<field var='%.*s'>",
                                (int)(eq - pairs[i]), pairs[i]);
        for (const char *v = eq + 1;;) {
            const char *nl = strchr(v, '\n');
            int vl = nl != NULL ? (int)(nl - v) : (int)strlen(v);
            len += (size_t)snprintf(x + len, sizeof(x) - len,
                                    "<value>%.*s</value>", vl, v);
            if (nl == NULL) {
                break;
            }
            v = nl + 1;
        }
        len += (size_t)snprintf(x + len, sizeof(x) - len, "</field>");
    }
    snprintf(x + len, sizeof(x) - len, "</x>");
    return x;
}

START_TEST(test_add_peer)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_ADD_PEER));
    /* field-level errors from the form's own types */
    static const char *const no_domain[] = {"secret=s3"};
    const struct xml_node *r =
        cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(no_domain, 1));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    ck_assert_str_eq(error_text(r), "field 'domain' (Peer domain) is required");
    static const char *const bad_auth[] = {"domain=d.test", "auth=password"};
    r = cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(bad_auth, 2));
    ck_assert_str_eq(error_text(r), "field 'auth' (Authentication) is not one "
                                    "of the offered options");
    static const char *const bad_bool[] = {"domain=d.test", "trusted=maybe"};
    r = cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(bad_bool, 2));
    ck_assert_str_eq(error_text(r),
                     "field 'trusted' (Trusted (presence and subscriptions)) "
                     "must be true or false");
    static const char *const bad_dom[] = {"domain=d..test"};
    r = cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(bad_dom, 1));
    ck_assert_str_eq(error_text(r),
                     "field 'domain' (Peer domain) is not a domain");
    /* the daemon's own check names the field; the session stays */
    fk.put_rc = ERR_INVAL;
    fk.put_bad = 7; /* port */
    static const char *const bad_port[] = {"domain=d.test", "host=127.0.0.9",
                                           "port=70000"};
    r = cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(bad_port, 3));
    ck_assert_str_eq(error_specific(r), "bad-payload");
    ck_assert_str_eq(error_text(r),
                     "field 'port' (Port with host (default 5269)): "
                     "'peers.port' must be between 1 and 65535");
    /* accepted: every key reaches the daemon, services one per line */
    fk.put_rc = 0;
    static const char *const good[] = {
        "domain=d.test",
        "secret=s3",
        "auth=certificate",
        "trusted=1",
        "tls_required=true",
        "services=conference.d.test\nupload.d.test",
        "host=",
        "port="};
    const struct xml_node *c =
        command_of(cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(good, 8)));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_str_eq(note_of(c, "info"), "Peer stored.");
    ck_assert(!fk.put_edit);
    ck_assert_str_eq(fk.put,
                     "domain=d.test;secret=s3;auth=certificate;trusted=1;"
                     "tls_required=true;services=conference.d.test\n"
                     "upload.d.test;host=;port=;trust_anchor=;stanza_max=;");
    ck_assert_str_eq(fk.last_op, "put by admin@a.test");
}
END_TEST

START_TEST(test_add_peer_waits_for_hook)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_ADD_PEER));
    fk.put_rc = ERR_AGAIN;
    static const char *const good[] = {"domain=d.test", "secret=s3"};
    sent_clear();
    service_handle(svc, parse("<iq type='set' id='c9' from='" ADMIN
                              "' to='fedgate.a.test'><command xmlns='" NS_CMD
                              "' node='" NODE_ADD_PEER "' sessionid='x'>"
                              "</command></iq>"));
    ck_assert_int_eq(out.n, 1); /* bad-sessionid, answered at once */
    sent_clear();
    char xml[4096];
    snprintf(xml, sizeof(xml),
             "<iq type='set' id='c2' from='" ADMIN "' to='fedgate.a.test'>"
             "<command xmlns='" NS_CMD "' node='" NODE_ADD_PEER
             "' sessionid='%s'>%s</command></iq>",
             sid, submitn(good, 2));
    service_handle(svc, parse(xml));
    /* nothing yet: the hook runs */
    ck_assert_int_eq(out.n, 0);
    ck_assert_ptr_nonnull(fk.done);
    fk.done(fk.done_ud, 0, "Peer added.\nHome-server hook \"add\" succeeded");
    ck_assert_int_eq(out.n, 1);
    const struct xml_node *c = command_of(out.replies[0]);
    ck_assert_str_eq(xml_attr(out.replies[0], "id"), "c2");
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_ptr_nonnull(strstr(note_of(c, "info"), "succeeded"));
    /* the session ended with the command */
    const struct xml_node *r =
        cmd(ADMIN, NODE_ADD_PEER, sid, NULL, submitn(good, 2));
    ck_assert_str_eq(error_specific(r), "bad-sessionid");
}
END_TEST

START_TEST(test_edit_peer_prefilled)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_EDIT_PEER));
    const struct xml_node *c = command_of(
        cmd(ADMIN, NODE_EDIT_PEER, sid, "next", submit1("peer", "c.test")));
    const struct xml_node *x = xml_child(c, NS_DATA, "x");
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_null(field(x, "domain")); /* picked in step one */
    ck_assert_str_eq(value_of(field(x, "auth")), "dialback");
    ck_assert_str_eq(value_of(field(x, "tls_required")), "0");
    ck_assert_str_eq(value_of(field(x, "port")), "5270");
    ck_assert_str_eq(value_of(field(x, "host")), "127.0.0.9");
    ck_assert_str_eq(value_of(field(x, "services")), "conference.c.test");
    /* the secret is never shown */
    ck_assert_ptr_null(xml_child(field(x, "secret"), NULL, "value"));
    static const char *const sub[] = {"auth=any", "tls_required=1"};
    c = command_of(
        cmd(ADMIN, NODE_EDIT_PEER, sid, "complete", submitn(sub, 2)));
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert(fk.put_edit);
    ck_assert_ptr_nonnull(strstr(fk.put, "domain=c.test;secret=;auth=any;"));
}
END_TEST

START_TEST(test_remove_peer)
{
    char sid[64];
    snprintf(sid, sizeof(sid), "%s", start(NODE_REMOVE));
    const struct xml_node *r =
        cmd(ADMIN, NODE_REMOVE, sid, NULL, submit1("peer", "z.test"));
    ck_assert_str_eq(error_text(r),
                     "field 'peer' (Peer) is not one of the offered options");
    sent_clear();
    char xml[1024];
    snprintf(xml, sizeof(xml),
             "<iq type='set' id='c3' from='" ADMIN "' to='fedgate.a.test'>"
             "<command xmlns='" NS_CMD "' node='" NODE_REMOVE
             "' sessionid='%s'>%s</command></iq>",
             sid, submit1("peer", "b.test"));
    service_handle(svc, parse(xml));
    ck_assert_int_eq(out.n, 0);
    ck_assert_str_eq(fk.last_op, "remove b.test by admin@a.test");
    fk.done(fk.done_ud, ERR_SYS, "Peer b.test removed.\nHook FAILED, exit 3");
    ck_assert_int_eq(out.n, 1);
    const struct xml_node *c = command_of(out.replies[0]);
    ck_assert_str_eq(xml_attr(c, "status"), "completed");
    ck_assert_ptr_nonnull(strstr(note_of(c, "error"), "FAILED"));
}
END_TEST

START_TEST(test_no_ops_no_commands)
{
    /* a service nobody gave admin operations refuses even listed admins */
    static const char *const admins[] = {"admin@a.test"};
    ck_assert_int_eq(service_set_admin(svc, admins, 1, NULL), 0);
    const struct xml_node *r = cmd(ADMIN, NODE_STATS, NULL, NULL, NULL);
    ck_assert_str_eq(error_condition(r), "forbidden");
    r = disco(ADMIN, "http://jabber.org/protocol/disco#items", NS_CMD);
    ck_assert_uint_eq(count_children(xml_child(r, NULL, "query"), "item"), 0);
}
END_TEST

static Suite *adhoc_suite(void)
{
    Suite *s = suite_create("adhoc");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"list_admin_sees_all", test_list_admin_sees_all},
        {"list_other_sees_none", test_list_other_sees_none},
        {"disco_info_features_and_nodes", test_disco_info_features_and_nodes},
        {"forbidden_for_non_admin", test_forbidden_for_non_admin},
        {"unknown_node_and_actions", test_unknown_node_and_actions},
        {"session_bound_to_full_jid", test_session_bound_to_full_jid},
        {"session_expires", test_session_expires},
        {"sessions_bounded", test_sessions_bounded},
        {"cancel", test_cancel},
        {"field_errors", test_field_errors},
        {"boolean_and_jid_fields", test_boolean_and_jid_fields},
        {"list_peers_result", test_list_peers_result},
        {"peer_detail_stages", test_peer_detail_stages},
        {"statistics_result", test_statistics_result},
        {"set_log_level", test_set_log_level},
        {"reload_ok_and_errors", test_reload_ok_and_errors},
        {"server_snippet", test_server_snippet},
        {"no_ops_no_commands", test_no_ops_no_commands},
        {"block_domain", test_block_domain},
        {"unblock_domain", test_unblock_domain},
        {"route_commands", test_route_commands},
        {"rotate_dialback_secret", test_rotate_dialback_secret},
        {"audit_log", test_audit_log},
        {"add_peer", test_add_peer},
        {"add_peer_waits_for_hook", test_add_peer_waits_for_hook},
        {"edit_peer_prefilled", test_edit_peer_prefilled},
        {"remove_peer", test_remove_peer},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, false, "check_adhoc");
    SRunner *sr = srunner_create(adhoc_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
