/*
 * xep0050_adhoc.c: XEP-0050 Ad-Hoc Commands on the service JID, with
 * XEP-0004 data forms, for fedgate's administrators (config key admins).
 *
 * on disco#items node=commands: the commands the requester may run
 *                    (admins: all; others: none)
 * on disco#info node=<command>: identity automation/command-node and the
 *                    commands and data-forms features (admins only)
 * on <command node=... action=execute/> without a session:
 *                    not an admin: forbidden; unknown node: item-not-found;
 *                    a command without input: run it, status completed;
 *                    otherwise: new session, stage 0 form, executing
 * on <command sessionid=...>: the session must exist for this full JID
 *                    (bad-sessionid) and not have expired
 *                    (session-expired); then
 *   next/complete/execute: the submitted form is checked against the
 *                    stage's form (required fields, one value for single
 *                    fields, list options, booleans, JIDs); an error names
 *                    the field (bad-request + bad-payload) and the session
 *                    stays (so does a command's own check, such as "is a
 *                    domain"); else the values are kept and the next stage's
 *                    form goes out, or after the last stage the command
 *                    runs and the session ends
 *   prev:            back one stage (bad-action at the first)
 *   cancel:          the session ends, status canceled
 * Sessions live ADHOC_SESSION_MS and are bounded in number (a new one
 * beyond the bound gets resource-constraint): an admin client that walks
 * away costs a slot for ten minutes, nothing more.
 *
 * Everything the commands learn or change goes through ctx->admin.
 */
#include "config.h"

#include "xep.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ADHOC_NS        "http://jabber.org/protocol/commands"
#define ADHOC_DATA_NS   "jabber:x:data"
#define ADHOC_INFO_NS   "http://jabber.org/protocol/disco#info"
#define ADHOC_ITEMS_NS  "http://jabber.org/protocol/disco#items"
#define ADHOC_FORM_TYPE "urn:fedgate:admin"

#define ADHOC_SESSIONS_MAX 16
#define ADHOC_SESSION_MS   (10ull * 60ull * 1000ull)
#define ADHOC_VALUES_MAX   14
#define ADHOC_VALUE_MAX    1024 /* bytes of one submitted value */
#define ADHOC_JID_MAX      3071 /* RFC 7622: 1023 + 1 + 1023 + 1 + 1023 */

struct adhoc_value {
    char var[32];
    char *value;
};

struct adhoc_session {
    bool used;
    char id[40];
    char *owner; /* full JID that started it */
    const struct adhoc_command *cmd;
    unsigned stage;
    unsigned long long expires_ms;
    struct adhoc_value values[ADHOC_VALUES_MAX];
};

struct adhoc_state {
    struct adhoc_session sessions[ADHOC_SESSIONS_MAX];
    unsigned long seq;
};

/* A data form under construction: helpers do nothing once rc is set,
 * so a builder checks rc once at the end. */
struct form {
    struct xml_node *x;
    int rc;
};

struct adhoc_pending;

struct adhoc_command {
    const char *node;
    const char *name;
    unsigned nstages; /* input forms before the command runs */
    /* Writes the form of stage (< nstages) into f. */
    void (*form)(const struct xep_context *ctx,
                 const struct adhoc_session *s,
                 unsigned stage,
                 struct form *f);
    /* Runs the command, adding notes and a result form to cmd. 0 or
     * ERR_NOMEM. */
    int (*run)(const struct xep_context *ctx,
               const struct adhoc_session *s,
               struct xml_node *cmd);
    /* Checks what the field types cannot, once the stage's form passed:
     * NULL, or why the submission is wrong (naming the field). May be
     * NULL. */
    const char *(*validate)(const struct adhoc_session *s, unsigned stage);
    /*
     * Instead of run, for a command whose outcome may come later (it runs
     * the home-server hook): as run, or ERR_AGAIN when pend now owns the
     * reply and sends it once the outcome is known, or ERR_INVAL with
     * why (naming the field): the session stays for a corrected
     * submission.
     */
    int (*run_async)(const struct xep_context *ctx,
                     const struct adhoc_session *s,
                     struct xml_node *cmd,
                     struct adhoc_pending *pend,
                     char *why,
                     size_t whylen);
};

/* A completed command's reply waiting for its outcome. */
struct adhoc_pending {
    struct xml_node *reply; /* owned */
    struct xml_node *cmd;   /* its <command/> */
    int (*send)(void *ud, struct xml_node *stanza);
    void *send_ud;
};

/* ---- data forms ------------------------------------------------------ */

static int adhoc_text_child(struct xml_node *parent,
                            const char *ns,
                            const char *name,
                            const char *text)
{
    struct xml_node *el = xml_add_child(parent, ns, name);
    if (el == NULL) {
        return ERR_NOMEM;
    }
    return xml_append_text(el, text, strlen(text));
}

static void form_start(struct form *f,
                       struct xml_node *parent,
                       const char *type,
                       const char *title,
                       const char *instructions)
{
    f->rc = 0;
    f->x = xml_add_child(parent, ADHOC_DATA_NS, "x");
    if (f->x == NULL || xml_set_attr(f->x, "type", type) != 0 ||
        (title != NULL && adhoc_text_child(f->x, NULL, "title", title) != 0) ||
        (instructions != NULL &&
         adhoc_text_child(f->x, NULL, "instructions", instructions) != 0)) {
        f->rc = ERR_NOMEM;
    }
}

/* Adds one <value/>; a text-multi value is split at newlines. */
static void form_value(struct form *f, struct xml_node *field, const char *v)
{
    if (f->rc != 0 || v == NULL) {
        return;
    }
    const char *type = xml_attr(field, "type");
    bool multi = type != NULL && strcmp(type, "text-multi") == 0;
    do {
        const char *nl = multi ? strchr(v, '\n') : NULL;
        size_t len = nl != NULL ? (size_t)(nl - v) : strlen(v);
        struct xml_node *el = xml_add_child(field, NULL, "value");
        if (el == NULL || xml_append_text(el, v, len) != 0) {
            f->rc = ERR_NOMEM;
            return;
        }
        v = nl != NULL && nl[1] != '\0' ? nl + 1 : NULL;
    } while (v != NULL);
}

static struct xml_node *form_field(struct form *f,
                                   const char *var,
                                   const char *type,
                                   const char *label,
                                   bool required,
                                   const char *value)
{
    if (f->rc != 0) {
        return NULL;
    }
    struct xml_node *el = xml_add_child(f->x, NULL, "field");
    if (el == NULL || (var != NULL && xml_set_attr(el, "var", var) != 0) ||
        xml_set_attr(el, "type", type) != 0 ||
        (label != NULL && xml_set_attr(el, "label", label) != 0) ||
        (required && xml_add_child(el, NULL, "required") == NULL)) {
        f->rc = ERR_NOMEM;
        return NULL;
    }
    form_value(f, el, value);
    return el;
}

static void form_option(struct form *f,
                        struct xml_node *field,
                        const char *label,
                        const char *value)
{
    if (f->rc != 0) {
        return;
    }
    struct xml_node *o = xml_add_child(field, NULL, "option");
    if (o == NULL || xml_set_attr(o, "label", label) != 0 ||
        adhoc_text_child(o, NULL, "value", value) != 0) {
        f->rc = ERR_NOMEM;
    }
}

/* The hidden FORM_TYPE field every fedgate form carries (XEP-0068). */
static void form_type(struct form *f)
{
    (void)form_field(f, "FORM_TYPE", "hidden", NULL, false, ADHOC_FORM_TYPE);
}

static void form_fixed(struct form *f, const char *text)
{
    (void)form_field(f, NULL, "fixed", NULL, false, text);
}

/* ---- sessions -------------------------------------------------------- */

static void *adhoc_state_new(void)
{
    return calloc(1, sizeof(struct adhoc_state));
}

static void adhoc_session_end(struct adhoc_session *s)
{
    free(s->owner);
    for (size_t i = 0; i < ADHOC_VALUES_MAX; i++) {
        free(s->values[i].value);
    }
    memset(s, 0, sizeof(*s));
}

static void adhoc_state_free(void *p)
{
    struct adhoc_state *as = p;
    if (as == NULL) {
        return;
    }
    for (size_t i = 0; i < ADHOC_SESSIONS_MAX; i++) {
        adhoc_session_end(&as->sessions[i]);
    }
    free(as);
}

static const char *adhoc_get(const struct adhoc_session *s, const char *var)
{
    for (size_t i = 0; i < ADHOC_VALUES_MAX; i++) {
        if (s->values[i].value != NULL && strcmp(s->values[i].var, var) == 0) {
            return s->values[i].value;
        }
    }
    return NULL;
}

/* Keeps value (consumed) for var. */
static int adhoc_set(struct adhoc_session *s, const char *var, char *value)
{
    struct adhoc_value *slot = NULL;
    for (size_t i = 0; i < ADHOC_VALUES_MAX; i++) {
        struct adhoc_value *v = &s->values[i];
        if (v->value != NULL && strcmp(v->var, var) == 0) {
            slot = v;
            break;
        }
        if (v->value == NULL && slot == NULL) {
            slot = v;
        }
    }
    if (slot == NULL || strlen(var) >= sizeof(slot->var)) {
        free(value);
        return ERR_TOO_BIG;
    }
    free(slot->value);
    snprintf(slot->var, sizeof(slot->var), "%s", var);
    slot->value = value; /* transferred */
    return 0;
}

static unsigned long long adhoc_now(const struct xep_context *ctx)
{
    return ctx->admin->now_ms(ctx->admin->ud);
}

/* ---- who may run commands -------------------------------------------- */

/* True when the bare part of the full JID `from` is an admin. */
static bool adhoc_is_admin(const struct xep_context *ctx, const char *from)
{
    if (from == NULL || ctx->admin == NULL) {
        return false;
    }
    const char *slash = strchr(from, '/');
    size_t len = slash != NULL ? (size_t)(slash - from) : strlen(from);
    for (size_t i = 0; i < ctx->nadmins; i++) {
        if (strlen(ctx->admins[i]) == len &&
            strncasecmp(ctx->admins[i], from, len) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- replies --------------------------------------------------------- */

/*
 * Sends an error reply: condition in the stanzas namespace, an optional
 * XEP-0050 specific condition, and text (naming the field when a form
 * was wrong). Returns what ctx->send returns, ERR_NOMEM.
 */
static int adhoc_error(const struct xep_context *ctx,
                       const struct xml_node *st,
                       const char *condition,
                       const char *specific,
                       const char *text)
{
    struct xml_node *r = stanza_error_reply(st, NULL, condition, text);
    if (r == NULL) {
        return ERR_NOMEM;
    }
    if (specific != NULL) {
        struct xml_node *e = xml_child(r, NULL, "error");
        if (e == NULL || xml_add_child(e, ADHOC_NS, specific) == NULL) {
            xml_unref(r);
            return ERR_NOMEM;
        }
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

/* An iq result with <command node status [sessionid]/>; the command
 * element (borrowed) in *cmd. */
static struct xml_node *adhoc_reply(const struct xml_node *st,
                                    const char *node,
                                    const char *sessionid,
                                    const char *status,
                                    struct xml_node **cmd)
{
    struct xml_node *r = stanza_iq_result(st);
    if (r == NULL) {
        return NULL;
    }
    *cmd = xml_add_child(r, ADHOC_NS, "command");
    if (*cmd == NULL || xml_set_attr(*cmd, "node", node) != 0 ||
        xml_set_attr(*cmd, "status", status) != 0 ||
        (sessionid != NULL &&
         xml_set_attr(*cmd, "sessionid", sessionid) != 0)) {
        xml_unref(r);
        return NULL;
    }
    return r;
}

static int adhoc_note(struct xml_node *cmd, const char *type, const char *text)
{
    struct xml_node *n = xml_add_child(cmd, NULL, "note");
    if (n == NULL || xml_set_attr(n, "type", type) != 0) {
        return ERR_NOMEM;
    }
    return xml_append_text(n, text, strlen(text));
}

/* ---- the commands ---------------------------------------------------- */

static const char *adhoc_or(const char *s, const char *dflt)
{
    return s != NULL && s[0] != '\0' ? s : dflt;
}

static void adhoc_time(long long t, char *out, size_t outsz)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, outsz, "-");
    }
}

/* One <reported/> column or <item/> value per peer attribute. */
enum { PEER_COLS = 17 };
static const char *const peer_vars[PEER_COLS] = {
    "domain",       "local",      "state",      "direction", "auth",
    "tls-version",  "tls-cipher", "subject",    "expiry",    "connected-since",
    "stanzas-out",  "bytes-out",  "stanzas-in", "bytes-in",  "queued",
    "last-failure", "home-link"};
static const char *const peer_labels[PEER_COLS] = {"Peer",
                                                   "Local domain",
                                                   "Route state",
                                                   "Direction",
                                                   "Authentication",
                                                   "TLS version",
                                                   "TLS cipher",
                                                   "Certificate subject",
                                                   "Cert. expires",
                                                   "Connected since",
                                                   "Stanzas out",
                                                   "Bytes out",
                                                   "Stanzas in",
                                                   "Bytes in",
                                                   "Queued",
                                                   "Last failure",
                                                   "Home-server link"};

enum { PEER_NUMS = 7 };

static void adhoc_peer_values(const struct xep_peer_status *p,
                              char nums[PEER_NUMS][32],
                              char *failure,
                              size_t failsz,
                              const char *vals[PEER_COLS])
{
    snprintf(nums[0], sizeof(nums[0]), "%lu", p->stanzas_out);
    snprintf(nums[1], sizeof(nums[1]), "%lu", p->queued);
    adhoc_time(p->peer_not_after, nums[2], sizeof(nums[2]));
    adhoc_time(p->connected_since, nums[3], sizeof(nums[3]));
    snprintf(nums[4], sizeof(nums[4]), "%lu", p->bytes_out);
    snprintf(nums[5], sizeof(nums[5]), "%lu", p->stanzas_in);
    snprintf(nums[6], sizeof(nums[6]), "%lu", p->bytes_in);
    vals[0] = p->domain;
    vals[1] = adhoc_or(p->local, "-");
    vals[2] = adhoc_or(p->state, "-");
    vals[3] = adhoc_or(p->direction, "none");
    vals[4] = adhoc_or(p->route_auth, adhoc_or(p->auth, "-"));
    vals[5] = adhoc_or(p->tls_version, "-");
    vals[6] = adhoc_or(p->tls_cipher, "-");
    vals[7] = adhoc_or(p->peer_subject, "-");
    vals[8] = nums[2];
    vals[9] = nums[3];
    vals[10] = nums[0];
    vals[11] = nums[4];
    vals[12] = nums[5];
    vals[13] = nums[6];
    vals[14] = nums[1];
    if (p->last_error != NULL && p->last_failure_at > 0) {
        char when[32];
        adhoc_time(p->last_failure_at, when, sizeof(when));
        snprintf(failure, failsz, "%s (%s)", p->last_error, when);
        vals[15] = failure;
    } else {
        vals[15] = adhoc_or(p->last_error, "none");
    }
    vals[16] = adhoc_or(p->home_link, "-");
}

/* A result form with one item per peer entry (only domain's when it is
 * not NULL). */
static int adhoc_peer_table(const struct xep_context *ctx,
                            struct xml_node *cmd,
                            const char *title,
                            const char *domain)
{
    struct form f;
    form_start(&f, cmd, "result", title, NULL);
    form_type(&f);
    struct xml_node *rep =
        f.rc == 0 ? xml_add_child(f.x, NULL, "reported") : NULL;
    for (size_t c = 0; c < PEER_COLS && rep != NULL; c++) {
        struct xml_node *fl = xml_add_child(rep, NULL, "field");
        if (fl == NULL || xml_set_attr(fl, "var", peer_vars[c]) != 0 ||
            xml_set_attr(fl, "label", peer_labels[c]) != 0 ||
            xml_set_attr(fl, "type", "text-single") != 0) {
            rep = NULL;
        }
    }
    if (rep == NULL) {
        return ERR_NOMEM;
    }
    size_t n = ctx->admin->peer_count(ctx->admin->ud);
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        struct xep_peer_status p;
        char nums[PEER_NUMS][32];
        char failure[400];
        const char *vals[PEER_COLS];
        if (ctx->admin->peer_status(ctx->admin->ud, i, &p) != 0 ||
            (domain != NULL && strcmp(p.domain, domain) != 0)) {
            continue;
        }
        adhoc_peer_values(&p, nums, failure, sizeof(failure), vals);
        struct xml_node *item = xml_add_child(f.x, NULL, "item");
        if (item == NULL) {
            return ERR_NOMEM;
        }
        for (size_t c = 0; c < PEER_COLS; c++) {
            struct xml_node *fl = xml_add_child(item, NULL, "field");
            if (fl == NULL || xml_set_attr(fl, "var", peer_vars[c]) != 0 ||
                adhoc_text_child(fl, NULL, "value", vals[c]) != 0) {
                return ERR_NOMEM;
            }
        }
        shown++;
    }
    if (shown == 0) {
        return adhoc_note(cmd, "info", "No peers are configured.");
    }
    return 0;
}

static int cmd_list_peers_run(const struct xep_context *ctx,
                              const struct adhoc_session *s,
                              struct xml_node *cmd)
{
    (void)s;
    return adhoc_peer_table(ctx, cmd, "Peers", NULL);
}

/* Peer detail, stage 0: which peer (configured domains, each once). */
static void cmd_peer_detail_form(const struct xep_context *ctx,
                                 const struct adhoc_session *s,
                                 unsigned stage,
                                 struct form *f)
{
    if (stage == 0) {
        form_type(f);
        struct xml_node *fl = form_field(f, "peer", "list-single", "Peer", true,
                                         adhoc_get(s, "peer"));
        size_t n = ctx->admin->peer_count(ctx->admin->ud);
        for (size_t i = 0; i < n && f->rc == 0; i++) {
            struct xep_peer_status p;
            bool seen = false;
            if (ctx->admin->peer_status(ctx->admin->ud, i, &p) != 0) {
                continue;
            }
            for (const struct xml_node *o = xml_child(fl, NULL, "option");
                 o != NULL && !seen; o = xml_next_element(o)) {
                seen = strcmp(xml_attr(o, "label"), p.domain) == 0;
            }
            if (!seen) {
                form_option(f, fl, p.domain, p.domain);
            }
        }
        return;
    }
    /* stage 1: what a reader needs to decide whether to look further */
    const char *peer = adhoc_get(s, "peer");
    size_t n = ctx->admin->peer_count(ctx->admin->ud);
    form_type(f);
    (void)form_field(f, "peer", "jid-single", "Peer", false, peer);
    for (size_t i = 0; i < n && f->rc == 0; i++) {
        struct xep_peer_status p;
        char line[600];
        if (ctx->admin->peer_status(ctx->admin->ud, i, &p) != 0 ||
            strcmp(p.domain, peer) != 0) {
            continue;
        }
        snprintf(line, sizeof(line), "%s -> %s: %s, %s; last failure: %s",
                 adhoc_or(p.local, "-"), p.domain, adhoc_or(p.state, "-"),
                 adhoc_or(p.direction, "none"), adhoc_or(p.last_error, "none"));
        form_fixed(f, line);
    }
    form_fixed(f, "Complete shows every detail of this peer; "
                  "Previous picks another.");
}

static int cmd_peer_detail_run(const struct xep_context *ctx,
                               const struct adhoc_session *s,
                               struct xml_node *cmd)
{
    const char *peer = adhoc_get(s, "peer");
    size_t n = ctx->admin->peer_count(ctx->admin->ud);
    for (size_t i = 0; i < n; i++) {
        struct xep_peer_status p;
        if (ctx->admin->peer_status(ctx->admin->ud, i, &p) != 0 ||
            strcmp(p.domain, peer) != 0) {
            continue;
        }
        char title[300];
        char bytes[32];
        snprintf(title, sizeof(title), "Peer %s", peer);
        snprintf(bytes, sizeof(bytes), "%lu", p.bytes_out);
        int rc = adhoc_peer_table(ctx, cmd, title, peer);
        if (rc != 0) {
            return rc;
        }
        /* what the table has no column for */
        struct form f;
        form_start(&f, cmd, "result", "Configuration", NULL);
        form_type(&f);
        (void)form_field(&f, "auth-allowed", "text-single",
                         "Authentication allowed", false,
                         adhoc_or(p.auth, "-"));
        (void)form_field(&f, "bytes-out", "text-single", "Bytes out", false,
                         bytes);
        struct xep_peer_settings ps;
        if (ctx->admin->peer_settings != NULL &&
            ctx->admin->peer_settings(ctx->admin->ud, peer, &ps) == 0) {
            (void)form_field(&f, "origin", "text-single", "Defined in", false,
                             ps.origin);
        }
        return f.rc;
    }
    char text[400];
    snprintf(text, sizeof(text), "%s is no longer configured.", peer);
    return adhoc_note(cmd, "error", text);
}

static int cmd_statistics_run(const struct xep_context *ctx,
                              const struct adhoc_session *s,
                              struct xml_node *cmd)
{
    (void)s;
    struct xep_stats st;
    char v[7 + 2 * XEP_STATS_MAX][48];
    memset(&st, 0, sizeof(st));
    ctx->admin->stats(ctx->admin->ud, &st);
    struct form f;
    form_start(&f, cmd, "result", "Statistics", NULL);
    form_type(&f);
    snprintf(v[0], sizeof(v[0]), "%lu", st.uptime_s);
    snprintf(v[1], sizeof(v[1]), "%lu/%lu", st.links_up, st.links_total);
    snprintf(v[2], sizeof(v[2]), "%lu", st.routes_total);
    snprintf(v[3], sizeof(v[3]), "%lu", st.inbound);
    snprintf(v[4], sizeof(v[4]), "%lu out (%.1f/s), %lu in (%.1f/s)",
             st.stanzas_out, st.rate_out, st.stanzas_in, st.rate_in);
    snprintf(v[5], sizeof(v[5]), "%lu", st.bounces);
    snprintf(v[6], sizeof(v[6]), "%lu", st.auth_failures);
    (void)form_field(&f, "uptime", "text-single", "Uptime (s)", false, v[0]);
    (void)form_field(&f, "links", "text-single", "Home-server links up/total",
                     false, v[1]);
    (void)form_field(&f, "routes", "text-single", "Routes", false, v[2]);
    size_t k = 7;
    for (size_t i = 0; i < st.nroutes_by_state && i < XEP_STATS_MAX; i++) {
        char var[64];
        char label[64];
        snprintf(var, sizeof(var), "routes-%s", st.routes_by_state[i].name);
        snprintf(label, sizeof(label), "Routes %s", st.routes_by_state[i].name);
        snprintf(v[k], sizeof(v[k]), "%lu", st.routes_by_state[i].count);
        (void)form_field(&f, var, "text-single", label, false, v[k]);
        k++;
    }
    (void)form_field(&f, "inbound", "text-single", "Inbound s2s connections",
                     false, v[3]);
    (void)form_field(&f, "stanzas", "text-single",
                     "Stanzas over s2s (rate over the last minute)", false,
                     v[4]);
    (void)form_field(&f, "bounces", "text-single", "Bounces", false, v[5]);
    (void)form_field(&f, "auth-failures", "text-single",
                     "Authentication failures", false, v[6]);
    for (size_t i = 0; i < st.nauth_failures_by_reason && i < XEP_STATS_MAX;
         i++) {
        char var[64];
        char label[80];
        snprintf(var, sizeof(var), "auth-failures-%s",
                 st.auth_failures_by_reason[i].name);
        snprintf(label, sizeof(label), "Authentication failures: %s",
                 st.auth_failures_by_reason[i].name);
        snprintf(v[k], sizeof(v[k]), "%lu",
                 st.auth_failures_by_reason[i].count);
        (void)form_field(&f, var, "text-single", label, false, v[k]);
        k++;
    }
    return f.rc;
}

static const char *const adhoc_levels[] = {"error", "warn", "info", "debug",
                                           NULL};

static void cmd_log_level_form(const struct xep_context *ctx,
                               const struct adhoc_session *s,
                               unsigned stage,
                               struct form *f)
{
    (void)s;
    (void)stage;
    form_type(f);
    struct xml_node *fl =
        form_field(f, "level", "list-single", "Log level", true,
                   ctx->admin->log_level(ctx->admin->ud));
    for (size_t i = 0; adhoc_levels[i] != NULL; i++) {
        form_option(f, fl, adhoc_levels[i], adhoc_levels[i]);
    }
}

static int cmd_log_level_run(const struct xep_context *ctx,
                             const struct adhoc_session *s,
                             struct xml_node *cmd)
{
    const char *level = adhoc_get(s, "level");
    char text[100];
    int rc = ctx->admin->set_log_level(ctx->admin->ud, level);
    snprintf(text, sizeof(text),
             rc == 0 ? "Log level is now %s." : "Log level %s not set.", level);
    return adhoc_note(cmd, rc == 0 ? "info" : "error", text);
}

static void cmd_reload_form(const struct xep_context *ctx,
                            const struct adhoc_session *s,
                            unsigned stage,
                            struct form *f)
{
    (void)ctx;
    (void)s;
    (void)stage;
    form_type(f);
    form_fixed(f, "Reload the configuration file, as SIGHUP does. A file "
                  "with errors is reported and the running configuration "
                  "stays.");
    (void)form_field(f, "confirm", "boolean", "Reload now", true, "1");
}

static bool adhoc_true(const char *v)
{
    return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static int cmd_reload_run(const struct xep_context *ctx,
                          const struct adhoc_session *s,
                          struct xml_node *cmd)
{
    if (!adhoc_true(adhoc_get(s, "confirm"))) {
        return adhoc_note(cmd, "info", "Not reloaded.");
    }
    char msg[2048] = "";
    int rc = ctx->admin->reload(ctx->admin->ud, msg, sizeof(msg));
    struct form f;
    int nrc = adhoc_note(cmd, rc == 0 ? "info" : "error",
                         rc == 0 ? "Configuration reloaded."
                                 : "Reload failed; the running "
                                   "configuration stays.");
    if (nrc != 0) {
        return nrc;
    }
    form_start(&f, cmd, "result", "Reload", NULL);
    form_type(&f);
    (void)form_field(&f, "result", "text-single", "Result", false,
                     rc == 0 ? "OK" : "failed");
    (void)form_field(&f, "messages", "text-multi",
                     rc == 0 ? "Summary" : "Errors", false, msg);
    return f.rc;
}

static void cmd_snippet_form(const struct xep_context *ctx,
                             const struct adhoc_session *s,
                             unsigned stage,
                             struct form *f)
{
    (void)ctx;
    (void)stage;
    form_type(f);
    struct xml_node *fl = form_field(f, "server", "list-single", "Home server",
                                     true, adhoc_get(s, "server"));
    form_option(f, fl, "Prosody", "prosody");
    form_option(f, fl, "ejabberd", "ejabberd");
}

static int cmd_snippet_run(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           struct xml_node *cmd)
{
    const char *kind = adhoc_get(s, "server");
    char *text = NULL;
    int rc = ctx->admin->server_snippet(ctx->admin->ud, kind, &text);
    if (rc != 0) {
        return rc == ERR_INVAL ? adhoc_note(cmd, "error", "Unknown server.")
                               : rc;
    }
    struct form f;
    char title[64];
    snprintf(title, sizeof(title), "%s configuration for fedgate", kind);
    form_start(&f, cmd, "result", title, NULL);
    form_type(&f);
    (void)form_field(&f, "snippet", "text-multi", "Snippet", false, text);
    free(text);
    return f.rc;
}

/* The admin's bare JID for the audit log, from the session's owner. */
static void adhoc_bare(const struct adhoc_session *s, char *out, size_t outsz)
{
    const char *owner = s->owner != NULL ? s->owner : "?";
    const char *slash = strchr(owner, '/');
    int len = slash != NULL ? (int)(slash - owner) : (int)strlen(owner);
    snprintf(out, outsz, "%.*s", len, owner);
}

/* A light domain check (the daemon normalises it): labels of letters,
 * digits, '-' or non-ASCII, separated by single dots; no '@' or '/'. */
static bool adhoc_domain_ok(const char *v)
{
    size_t len = strlen(v);
    size_t label = 0;
    if (len == 0 || len > 1023) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        bool ok = ch >= 0x80 || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '-' || ch == '[' || ch == ']' || ch == ':';
        if (!ok || ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

static void cmd_block_form(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           unsigned stage,
                           struct form *f)
{
    (void)ctx;
    (void)stage;
    form_type(f);
    form_fixed(f, "Block a domain at once: its streams close, its queued "
                  "stanzas bounce, and nothing goes to or comes from it "
                  "until it is unblocked. The block is stored in state_db "
                  "and survives restarts and reloads.");
    (void)form_field(f, "domain", "jid-single", "Domain", true,
                     adhoc_get(s, "domain"));
}

static const char *cmd_block_validate(const struct adhoc_session *s,
                                      unsigned stage)
{
    (void)stage;
    const char *v = adhoc_get(s, "domain");
    return v != NULL && adhoc_domain_ok(v)
               ? NULL
               : "field 'domain' (Domain) is not a domain";
}

/* Adds a note for a change's outcome. */
static int adhoc_outcome(struct xml_node *cmd, int rc, const char *msg)
{
    return adhoc_note(cmd, rc == 0 ? "info" : "error", msg);
}

/* The shape of block_domain and unblock_domain in xep_admin_ops. */
typedef int adhoc_domain_op_fn(void *ud,
                               const char *domain,
                               const char *who,
                               char *msg,
                               size_t msglen);

/* Runs a domain change for the session's admin and reports it. */
static int adhoc_run_domain_op(const struct xep_context *ctx,
                               const struct adhoc_session *s,
                               struct xml_node *cmd,
                               adhoc_domain_op_fn *op)
{
    char who[ADHOC_JID_MAX + 1];
    char msg[600] = "";
    adhoc_bare(s, who, sizeof(who));
    int rc = op(ctx->admin->ud, adhoc_get(s, "domain"), who, msg, sizeof(msg));
    return adhoc_outcome(cmd, rc, msg);
}

static int cmd_block_run(const struct xep_context *ctx,
                         const struct adhoc_session *s,
                         struct xml_node *cmd)
{
    return adhoc_run_domain_op(ctx, s, cmd, ctx->admin->block_domain);
}

static void cmd_unblock_form(const struct xep_context *ctx,
                             const struct adhoc_session *s,
                             unsigned stage,
                             struct form *f)
{
    (void)stage;
    size_t n = ctx->admin->blocked_count(ctx->admin->ud);
    form_type(f);
    if (n == 0) {
        form_fixed(f, "No domain is blocked.");
    }
    struct xml_node *fl =
        form_field(f, "domain", "list-single", "Blocked domain", true,
                   adhoc_get(s, "domain"));
    for (size_t i = 0; i < n && f->rc == 0; i++) {
        const char *d = ctx->admin->blocked_domain(ctx->admin->ud, i);
        if (d != NULL) {
            form_option(f, fl, d, d);
        }
    }
}

static int cmd_unblock_run(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           struct xml_node *cmd)
{
    return adhoc_run_domain_op(ctx, s, cmd, ctx->admin->unblock_domain);
}

/* One option per route: label "local -> remote", value "local/remote"
 * (no domain holds a '/'). */
static void cmd_route_form(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           unsigned stage,
                           struct form *f)
{
    (void)stage;
    size_t n = ctx->admin->peer_count(ctx->admin->ud);
    size_t routes = 0;
    form_type(f);
    struct xml_node *fl = form_field(f, "route", "list-single", "Route", true,
                                     adhoc_get(s, "route"));
    for (size_t i = 0; i < n && f->rc == 0; i++) {
        struct xep_peer_status p;
        char label[600];
        char value[600];
        if (ctx->admin->peer_status(ctx->admin->ud, i, &p) != 0 ||
            p.local == NULL) {
            continue;
        }
        snprintf(label, sizeof(label), "%s -> %s (%s)", p.local, p.domain,
                 adhoc_or(p.state, "-"));
        snprintf(value, sizeof(value), "%s/%s", p.local, p.domain);
        form_option(f, fl, label, value);
        routes++;
    }
    if (routes == 0) {
        form_fixed(f, "There is no route yet: a route opens with the first "
                      "stanza for its peer.");
    }
}

/* Splits route value "local/remote" into its two domains. */
static int
adhoc_route_split(const char *v, char *local, size_t llen, const char **remote)
{
    const char *slash = v != NULL ? strchr(v, '/') : NULL;
    if (slash == NULL || (size_t)(slash - v) >= llen) {
        return ERR_INVAL;
    }
    snprintf(local, llen, "%.*s", (int)(slash - v), v);
    *remote = slash + 1;
    return 0;
}

static int adhoc_route_run(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           struct xml_node *cmd,
                           bool retry)
{
    char who[ADHOC_JID_MAX + 1];
    char local[ADHOC_VALUE_MAX + 1];
    char msg[600] = "";
    const char *remote = NULL;
    adhoc_bare(s, who, sizeof(who));
    if (adhoc_route_split(adhoc_get(s, "route"), local, sizeof(local),
                          &remote) != 0) {
        return adhoc_note(cmd, "error", "Not a route.");
    }
    int rc = retry ? ctx->admin->route_retry(ctx->admin->ud, local, remote, who,
                                             msg, sizeof(msg))
                   : ctx->admin->route_disconnect(ctx->admin->ud, local, remote,
                                                  who, msg, sizeof(msg));
    return adhoc_outcome(cmd, rc, msg);
}

static int cmd_disconnect_run(const struct xep_context *ctx,
                              const struct adhoc_session *s,
                              struct xml_node *cmd)
{
    return adhoc_route_run(ctx, s, cmd, false);
}

static int cmd_retry_run(const struct xep_context *ctx,
                         const struct adhoc_session *s,
                         struct xml_node *cmd)
{
    return adhoc_route_run(ctx, s, cmd, true);
}

static void cmd_rotate_form(const struct xep_context *ctx,
                            const struct adhoc_session *s,
                            unsigned stage,
                            struct form *f)
{
    (void)ctx;
    (void)s;
    (void)stage;
    form_type(f);
    form_fixed(f, "Replace the dialback secret with a fresh random one. New "
                  "dialback keys use it at once; keys made under the "
                  "previous secret still verify for ten minutes or until "
                  "the next rotation. It overrides s2s.dialback_secret "
                  "until fedgate restarts.");
    (void)form_field(f, "confirm", "boolean", "Rotate now", true, "0");
}

static int cmd_rotate_run(const struct xep_context *ctx,
                          const struct adhoc_session *s,
                          struct xml_node *cmd)
{
    if (!adhoc_true(adhoc_get(s, "confirm"))) {
        return adhoc_note(cmd, "info", "Not rotated.");
    }
    char who[ADHOC_JID_MAX + 1];
    char msg[600] = "";
    adhoc_bare(s, who, sizeof(who));
    int rc = ctx->admin->rotate_dialback_secret(ctx->admin->ud, who, msg,
                                                sizeof(msg));
    return adhoc_outcome(cmd, rc, msg);
}

static const char *const adhoc_audit_counts[] = {"10", "20", "50", "100", NULL};

static void cmd_audit_form(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           unsigned stage,
                           struct form *f)
{
    (void)ctx;
    (void)stage;
    form_type(f);
    const char *v = adhoc_get(s, "count");
    struct xml_node *fl = form_field(f, "count", "list-single", "How many",
                                     true, v != NULL ? v : "20");
    for (size_t i = 0; adhoc_audit_counts[i] != NULL; i++) {
        form_option(f, fl, adhoc_audit_counts[i], adhoc_audit_counts[i]);
    }
}

/* Columns of the audit table. */
enum { AUDIT_COLS = 3 };
static const char *const audit_vars[AUDIT_COLS] = {"when", "who", "what"};
static const char *const audit_labels[AUDIT_COLS] = {"When (UTC)", "Who",
                                                     "What"};

struct audit_table {
    struct xml_node *x; /* the result form */
    size_t rows;
};

/* Adds one audit row as a form item. 0 or ERR_NOMEM (stops the walk). */
static int
adhoc_audit_row(void *ud, long long at, const char *who, const char *what)
{
    struct audit_table *t = ud;
    char when[32];
    adhoc_time(at, when, sizeof(when));
    const char *vals[AUDIT_COLS] = {when, who, what};
    struct xml_node *item = xml_add_child(t->x, NULL, "item");
    if (item == NULL) {
        return ERR_NOMEM;
    }
    for (size_t c = 0; c < AUDIT_COLS; c++) {
        struct xml_node *fl = xml_add_child(item, NULL, "field");
        if (fl == NULL || xml_set_attr(fl, "var", audit_vars[c]) != 0 ||
            adhoc_text_child(fl, NULL, "value", vals[c]) != 0) {
            return ERR_NOMEM;
        }
    }
    t->rows++;
    return 0;
}

static int cmd_audit_run(const struct xep_context *ctx,
                         const struct adhoc_session *s,
                         struct xml_node *cmd)
{
    const char *v = adhoc_get(s, "count");
    size_t n = 20;
    for (size_t i = 0; v != NULL && adhoc_audit_counts[i] != NULL; i++) {
        if (strcmp(v, adhoc_audit_counts[i]) == 0) {
            n = (size_t)strtoul(v, NULL, 10);
        }
    }
    struct form f;
    form_start(&f, cmd, "result", "Audit log (newest first)", NULL);
    form_type(&f);
    struct xml_node *rep =
        f.rc == 0 ? xml_add_child(f.x, NULL, "reported") : NULL;
    for (size_t c = 0; c < AUDIT_COLS && rep != NULL; c++) {
        struct xml_node *fl = xml_add_child(rep, NULL, "field");
        if (fl == NULL || xml_set_attr(fl, "var", audit_vars[c]) != 0 ||
            xml_set_attr(fl, "label", audit_labels[c]) != 0 ||
            xml_set_attr(fl, "type", "text-single") != 0) {
            rep = NULL;
        }
    }
    if (rep == NULL) {
        return ERR_NOMEM;
    }
    struct audit_table t = {.x = f.x, .rows = 0};
    int rc = ctx->admin->audit_log(ctx->admin->ud, n, adhoc_audit_row, &t);
    if (rc == ERR_NOMEM) {
        return rc;
    }
    if (rc != 0) {
        return adhoc_note(cmd, "error",
                          "The audit log cannot be read (see the log).");
    }
    if (t.rows == 0) {
        return adhoc_note(cmd, "info", "The audit log is empty.");
    }
    return 0;
}

/* ---- runtime peers: add, edit, remove -------------------------------- */

/* The peer form's fields: var (the config file's peer key), type, label,
 * and what the form says about it. */
struct peer_field {
    const char *var;
    const char *type;
    const char *label;
};

static const struct peer_field peer_fields[] = {
    {"domain", "text-single", "Peer domain"},
    {"secret", "text-private", "XEP-0114 secret of its home-server stream"},
    {"auth", "list-single", "Authentication"},
    {"trusted", "boolean", "Trusted (presence and subscriptions)"},
    {"tls_required", "boolean", "TLS required"},
    {"services", "text-multi", "Service domains (one per line)"},
    {"host", "text-single", "Connect to host (instead of DNS SRV)"},
    {"port", "text-single", "Port with host (default 5269)"},
    {"trust_anchor", "text-single", "CA file for this peer only"},
    {"stanza_max", "text-single", "Largest stanza in bytes"},
};

#define PEER_NFIELDS (sizeof(peer_fields) / sizeof(peer_fields[0]))

/* The peer form; cur (may be NULL) gives the values an edit starts from.
 * domain: the field's value, or when fixed (edit) the domain shown. */
static void peer_form(struct form *f,
                      const struct adhoc_session *s,
                      const struct xep_peer_settings *cur,
                      bool edit)
{
    char port[16] = "", smax[24] = "";
    if (cur != NULL && cur->port != 0) {
        snprintf(port, sizeof(port), "%u", cur->port);
    }
    if (cur != NULL && cur->stanza_max != 0) {
        snprintf(smax, sizeof(smax), "%zu", cur->stanza_max);
    }
    const char *dflt[PEER_NFIELDS] = {
        cur != NULL ? cur->domain : NULL,
        NULL,
        cur != NULL ? cur->auth : "any",
        cur == NULL || cur->trusted ? "1" : "0",
        cur == NULL || cur->tls_required ? "1" : "0",
        cur != NULL ? cur->services : NULL,
        cur != NULL ? cur->host : NULL,
        port[0] != '\0' ? port : NULL,
        cur != NULL ? cur->trust_anchor : NULL,
        smax[0] != '\0' ? smax : NULL,
    };
    form_type(f);
    if (edit) {
        char text[400];
        snprintf(text, sizeof(text),
                 "Peer %s, defined in: %s. An empty secret keeps the "
                 "current one.",
                 adhoc_or(dflt[0], "?"),
                 cur != NULL ? adhoc_or(cur->origin, "?") : "?");
        form_fixed(f, text);
    } else {
        form_fixed(f, "Add a peer domain: fedgate opens a home-server stream "
                      "for it and its services and accepts s2s from it. The "
                      "change is stored in state_db; upstream.peer_hook, if "
                      "set, tells the home server.");
    }
    for (size_t i = 0; i < PEER_NFIELDS && f->rc == 0; i++) {
        const struct peer_field *pf = &peer_fields[i];
        if (edit && i == 0) {
            continue; /* the domain was picked in the first step */
        }
        const char *v = adhoc_get(s, pf->var);
        bool secret = strcmp(pf->var, "secret") == 0;
        struct xml_node *fl =
            form_field(f, pf->var, pf->type, pf->label, i == 0,
                       v != NULL && !secret ? v
                       : secret             ? NULL
                                            : dflt[i]);
        if (strcmp(pf->var, "auth") == 0) {
            form_option(f, fl, "certificate (SASL EXTERNAL), else dialback",
                        "any");
            form_option(f, fl, "certificate only", "certificate");
            form_option(f, fl, "dialback only", "dialback");
        }
    }
}

/* "field 'var' (Label): why" for the field at index i of peer_fields. */
static void peer_field_error(size_t i, const char *why, char *out, size_t len)
{
    if (i < PEER_NFIELDS) {
        snprintf(out, len, "field '%s' (%s): %s", peer_fields[i].var,
                 peer_fields[i].label, why);
    } else {
        snprintf(out, len, "%s", why);
    }
}

static void adhoc_pending_done(void *ud, int rc, const char *msg)
{
    struct adhoc_pending *pend = ud;
    if (adhoc_outcome(pend->cmd, rc, msg) == 0) {
        (void)pend->send(pend->send_ud, pend->reply); /* transferred */
    } else {
        xml_unref(pend->reply);
    }
    free(pend);
}

/* Runs peer_put with the session's values; see run_async. */
static int peer_put_run(const struct xep_context *ctx,
                        const struct adhoc_session *s,
                        struct xml_node *cmd,
                        struct adhoc_pending *pend,
                        char *why,
                        size_t whylen,
                        bool edit)
{
    struct xep_kv kv[PEER_NFIELDS];
    size_t idx[PEER_NFIELDS];
    size_t n = 0;
    char who[ADHOC_JID_MAX + 1];
    char msg[4096] = "";
    size_t bad = 0;
    adhoc_bare(s, who, sizeof(who));
    for (size_t i = 0; i < PEER_NFIELDS; i++) {
        const char *v = i == 0 && edit ? adhoc_get(s, "peer")
                                       : adhoc_get(s, peer_fields[i].var);
        kv[n].key = peer_fields[i].var;
        kv[n].value = v != NULL ? v : "";
        idx[n++] = i;
    }
    int rc =
        ctx->admin->peer_put(ctx->admin->ud, kv, n, edit, who,
                             adhoc_pending_done, pend, msg, sizeof(msg), &bad);
    if (rc == ERR_AGAIN) {
        return rc;
    }
    if (rc == ERR_INVAL) {
        peer_field_error(bad < n ? idx[bad] : PEER_NFIELDS, msg, why, whylen);
        return rc;
    }
    return adhoc_outcome(cmd, rc, msg);
}

static void cmd_add_peer_form(const struct xep_context *ctx,
                              const struct adhoc_session *s,
                              unsigned stage,
                              struct form *f)
{
    (void)ctx;
    (void)stage;
    peer_form(f, s, NULL, false);
}

static const char *cmd_add_peer_validate(const struct adhoc_session *s,
                                         unsigned stage)
{
    (void)stage;
    const char *v = adhoc_get(s, "domain");
    return v != NULL && adhoc_domain_ok(v)
               ? NULL
               : "field 'domain' (Peer domain) is not a domain";
}

static int cmd_add_peer_run(const struct xep_context *ctx,
                            const struct adhoc_session *s,
                            struct xml_node *cmd,
                            struct adhoc_pending *pend,
                            char *why,
                            size_t whylen)
{
    return peer_put_run(ctx, s, cmd, pend, why, whylen, false);
}

/* Stage 0 of edit and remove: which configured peer. */
static void peer_pick_form(const struct xep_context *ctx,
                           const struct adhoc_session *s,
                           struct form *f)
{
    size_t n = ctx->admin->configured_count(ctx->admin->ud);
    form_type(f);
    if (n == 0) {
        form_fixed(f, "No peers are configured.");
    }
    struct xml_node *fl = form_field(f, "peer", "list-single", "Peer", true,
                                     adhoc_get(s, "peer"));
    for (size_t i = 0; i < n && f->rc == 0; i++) {
        const char *d = ctx->admin->configured_domain(ctx->admin->ud, i);
        if (d != NULL) {
            form_option(f, fl, d, d);
        }
    }
}

static void cmd_edit_peer_form(const struct xep_context *ctx,
                               const struct adhoc_session *s,
                               unsigned stage,
                               struct form *f)
{
    if (stage == 0) {
        peer_pick_form(ctx, s, f);
        return;
    }
    struct xep_peer_settings cur;
    const char *peer = adhoc_get(s, "peer");
    if (peer == NULL ||
        ctx->admin->peer_settings(ctx->admin->ud, peer, &cur) != 0) {
        form_type(f);
        form_fixed(f, "This peer is no longer configured: go back and pick "
                      "another.");
        return;
    }
    peer_form(f, s, &cur, true);
}

static int cmd_edit_peer_run(const struct xep_context *ctx,
                             const struct adhoc_session *s,
                             struct xml_node *cmd,
                             struct adhoc_pending *pend,
                             char *why,
                             size_t whylen)
{
    return peer_put_run(ctx, s, cmd, pend, why, whylen, true);
}

static void cmd_remove_peer_form(const struct xep_context *ctx,
                                 const struct adhoc_session *s,
                                 unsigned stage,
                                 struct form *f)
{
    (void)stage;
    peer_pick_form(ctx, s, f);
    form_fixed(f, "Removing a peer closes its streams at once and bounces "
                  "its queued stanzas; upstream.peer_hook, if set, tells "
                  "the home server.");
}

static int cmd_remove_peer_run(const struct xep_context *ctx,
                               const struct adhoc_session *s,
                               struct xml_node *cmd,
                               struct adhoc_pending *pend,
                               char *why,
                               size_t whylen)
{
    char who[ADHOC_JID_MAX + 1];
    char msg[4096] = "";
    (void)why;
    (void)whylen;
    adhoc_bare(s, who, sizeof(who));
    int rc =
        ctx->admin->peer_remove(ctx->admin->ud, adhoc_get(s, "peer"), who,
                                adhoc_pending_done, pend, msg, sizeof(msg));
    return rc == ERR_AGAIN ? rc : adhoc_outcome(cmd, rc, msg);
}

static const struct adhoc_command adhoc_commands[] = {
    {"urn:fedgate:cmd:list-peers", "List peers", 0, NULL, cmd_list_peers_run,
     NULL, NULL},
    {"urn:fedgate:cmd:peer-detail", "Peer detail", 2, cmd_peer_detail_form,
     cmd_peer_detail_run, NULL, NULL},
    {"urn:fedgate:cmd:statistics", "Statistics", 0, NULL, cmd_statistics_run,
     NULL, NULL},
    {"urn:fedgate:cmd:set-log-level", "Set log level", 1, cmd_log_level_form,
     cmd_log_level_run, NULL, NULL},
    {"urn:fedgate:cmd:reload", "Reload configuration", 1, cmd_reload_form,
     cmd_reload_run, NULL, NULL},
    {"urn:fedgate:cmd:server-snippet", "Show home-server snippet", 1,
     cmd_snippet_form, cmd_snippet_run, NULL, NULL},
    {"urn:fedgate:cmd:block-domain", "Block a domain", 1, cmd_block_form,
     cmd_block_run, cmd_block_validate, NULL},
    {"urn:fedgate:cmd:unblock-domain", "Unblock a domain", 1, cmd_unblock_form,
     cmd_unblock_run, NULL, NULL},
    {"urn:fedgate:cmd:disconnect-route", "Disconnect a route", 1,
     cmd_route_form, cmd_disconnect_run, NULL, NULL},
    {"urn:fedgate:cmd:retry-route", "Retry a route now", 1, cmd_route_form,
     cmd_retry_run, NULL, NULL},
    {"urn:fedgate:cmd:rotate-dialback-secret", "Rotate the dialback secret", 1,
     cmd_rotate_form, cmd_rotate_run, NULL, NULL},
    {"urn:fedgate:cmd:audit-log", "Show the audit log", 1, cmd_audit_form,
     cmd_audit_run, NULL, NULL},
    {"urn:fedgate:cmd:add-peer", "Add a peer", 1, cmd_add_peer_form, NULL,
     cmd_add_peer_validate, cmd_add_peer_run},
    {"urn:fedgate:cmd:edit-peer", "Edit a peer", 2, cmd_edit_peer_form, NULL,
     NULL, cmd_edit_peer_run},
    {"urn:fedgate:cmd:remove-peer", "Remove a peer", 1, cmd_remove_peer_form,
     NULL, NULL, cmd_remove_peer_run},
};

#define ADHOC_NCOMMANDS (sizeof(adhoc_commands) / sizeof(adhoc_commands[0]))

static const struct adhoc_command *adhoc_find(const char *node)
{
    for (size_t i = 0; node != NULL && i < ADHOC_NCOMMANDS; i++) {
        if (strcmp(adhoc_commands[i].node, node) == 0) {
            return &adhoc_commands[i];
        }
    }
    return NULL;
}

/* ---- form validation ------------------------------------------------- */

static bool adhoc_in_options(const struct xml_node *field, const char *v)
{
    for (const struct xml_node *o = xml_child(field, NULL, "option"); o != NULL;
         o = xml_next_element(o)) {
        const struct xml_node *ov = xml_child(o, NULL, "value");
        char *t = ov != NULL ? xml_text(ov) : NULL;
        bool eq = t != NULL && strcmp(t, v) == 0;
        free(t);
        if (eq) {
            return true;
        }
    }
    return false;
}

/* A light check: JIDs are checked again by whatever uses them. */
static bool adhoc_jid_ok(const char *v)
{
    size_t len = strlen(v);
    if (len == 0 || len > ADHOC_JID_MAX || v[0] == '@' || v[0] == '/') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)v[i] <= ' ') {
            return false;
        }
    }
    return true;
}

/* The submitted values of field var, joined by newlines, as a new string
 * in *out (NULL when absent); *count values. */
static int adhoc_collect(const struct xml_node *x,
                         const char *var,
                         char **out,
                         size_t *count)
{
    *out = NULL;
    *count = 0;
    const struct xml_node *sf = NULL;
    for (const struct xml_node *c = x != NULL ? xml_child(x, NULL, "field")
                                              : NULL;
         c != NULL; c = xml_next_element(c)) {
        const char *v = xml_attr(c, "var");
        if (strcmp(c->name, "field") == 0 && v != NULL && strcmp(v, var) == 0) {
            sf = c;
            break;
        }
    }
    if (sf == NULL) {
        return 0;
    }
    size_t len = 0;
    char *joined = calloc(1, 1);
    if (joined == NULL) {
        return ERR_NOMEM;
    }
    for (const struct xml_node *c = xml_child(sf, NULL, "value"); c != NULL;
         c = xml_next_element(c)) {
        if (strcmp(c->name, "value") != 0) {
            continue;
        }
        char *t = xml_text(c);
        if (t == NULL) {
            free(joined);
            return ERR_NOMEM;
        }
        size_t tl = strlen(t);
        if (tl > ADHOC_VALUE_MAX || len + tl + 2 > 16 * ADHOC_VALUE_MAX) {
            free(t);
            free(joined);
            return ERR_TOO_BIG;
        }
        char *nj = realloc(joined, len + tl + 2);
        if (nj == NULL) {
            free(t);
            free(joined);
            return ERR_NOMEM;
        }
        joined = nj;
        if (*count > 0) {
            joined[len++] = '\n';
        }
        memcpy(joined + len, t, tl + 1);
        len += tl;
        free(t);
        (*count)++;
    }
    *out = joined;
    return 0;
}

/*
 * Checks the submitted form x (may be NULL) against the stage's form and
 * keeps the values in s. 0; ERR_INVAL with the reason (naming the field)
 * in why; or ERR_NOMEM.
 */
static int adhoc_check(const struct xml_node *form,
                       const struct xml_node *x,
                       struct adhoc_session *s,
                       char *why,
                       size_t whylen)
{
    if (x != NULL && (xml_attr(x, "type") == NULL ||
                      strcmp(xml_attr(x, "type"), "submit") != 0)) {
        snprintf(why, whylen, "the data form must be of type submit");
        return ERR_INVAL;
    }
    for (const struct xml_node *fl = xml_child(form, NULL, "field"); fl != NULL;
         fl = xml_next_element(fl)) {
        const char *var = xml_attr(fl, "var");
        const char *type = xml_attr(fl, "type");
        if (strcmp(fl->name, "field") != 0 || var == NULL ||
            strcmp(type, "fixed") == 0 || strcmp(type, "hidden") == 0) {
            continue;
        }
        bool required = xml_child(fl, NULL, "required") != NULL;
        bool multi = strcmp(type, "text-multi") == 0 ||
                     strcmp(type, "list-multi") == 0 ||
                     strcmp(type, "jid-multi") == 0;
        char *v = NULL;
        size_t n = 0;
        int rc = adhoc_collect(x, var, &v, &n);
        if (rc == ERR_TOO_BIG) {
            snprintf(why, whylen, "field '%s': value too long", var);
            return ERR_INVAL;
        }
        if (rc != 0) {
            return rc;
        }
        const char *bad = NULL;
        if (n == 0 || (v != NULL && v[0] == '\0')) {
            bad = required ? "is required" : NULL;
        } else if (n > 1 && !multi) {
            bad = "takes exactly one value";
        } else if (strcmp(type, "list-single") == 0 &&
                   !adhoc_in_options(fl, v)) {
            bad = "is not one of the offered options";
        } else if (strcmp(type, "boolean") == 0 && strcmp(v, "0") != 0 &&
                   strcmp(v, "1") != 0 && strcmp(v, "true") != 0 &&
                   strcmp(v, "false") != 0) {
            bad = "must be true or false";
        } else if (strcmp(type, "jid-single") == 0 && !adhoc_jid_ok(v)) {
            bad = "is not a JID";
        }
        if (bad != NULL) {
            const char *label = xml_attr(fl, "label");
            snprintf(why, whylen, "field '%s'%s%s%s %s", var,
                     label != NULL ? " (" : "", label != NULL ? label : "",
                     label != NULL ? ")" : "", bad);
            free(v);
            return ERR_INVAL;
        }
        if (v != NULL && v[0] != '\0') {
            rc = adhoc_set(s, var, v); /* transferred */
            if (rc != 0) {
                return rc;
            }
        } else if (v != NULL) {
            free(v);
            (void)adhoc_set(s, var, NULL); /* submitted empty: cleared */
        }
    }
    return 0;
}

/* ---- the handler ----------------------------------------------------- */

/* Sends the form of s's current stage, status executing. */
static int adhoc_send_stage(const struct xep_context *ctx,
                            const struct xml_node *st,
                            const struct adhoc_session *s)
{
    struct xml_node *cmd;
    struct xml_node *r =
        adhoc_reply(st, s->cmd->node, s->id, "executing", &cmd);
    if (r == NULL) {
        return ERR_NOMEM;
    }
    bool last = s->stage + 1 == s->cmd->nstages;
    struct xml_node *acts = xml_add_child(cmd, NULL, "actions");
    struct form f = {.rc = ERR_NOMEM};
    if (acts != NULL &&
        xml_set_attr(acts, "execute", last ? "complete" : "next") == 0 &&
        (s->stage == 0 || xml_add_child(acts, NULL, "prev") != NULL) &&
        xml_add_child(acts, NULL, last ? "complete" : "next") != NULL) {
        char title[100];
        snprintf(title, sizeof(title), "%s (step %u of %u)", s->cmd->name,
                 s->stage + 1, s->cmd->nstages);
        form_start(&f, cmd, "form", title, NULL);
        if (f.rc == 0) {
            s->cmd->form(ctx, s, s->stage, &f);
        }
    }
    if (f.rc != 0) {
        xml_unref(r);
        return f.rc;
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static int adhoc_error(const struct xep_context *ctx,
                       const struct xml_node *st,
                       const char *condition,
                       const char *specific,
                       const char *text);

/* Runs an asynchronous command; see run_async. */
static int adhoc_complete_async(const struct xep_context *ctx,
                                const struct xml_node *st,
                                struct adhoc_session *s,
                                struct xml_node *r,
                                struct xml_node *cmd)
{
    char why[600] = "";
    struct adhoc_pending *pend = calloc(1, sizeof(*pend));
    if (pend == NULL) {
        xml_unref(r);
        return ERR_NOMEM;
    }
    pend->reply = r;
    pend->cmd = cmd;
    pend->send = ctx->send;
    pend->send_ud = ctx->send_ud;
    int rc = s->cmd->run_async(ctx, s, cmd, pend, why, sizeof(why));
    if (rc == ERR_AGAIN) {
        adhoc_session_end(s);
        return 0; /* pend sends r */
    }
    free(pend);
    if (rc == ERR_INVAL) {
        xml_unref(r);
        return adhoc_error(ctx, st, "bad-request", "bad-payload", why);
    }
    adhoc_session_end(s);
    if (rc != 0) {
        xml_unref(r);
        return rc;
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

/* Runs the command and sends the completed result; ends s. */
static int adhoc_complete(const struct xep_context *ctx,
                          const struct xml_node *st,
                          struct adhoc_session *s)
{
    struct xml_node *cmd;
    struct xml_node *r = adhoc_reply(
        st, s->cmd->node, s->id[0] != '\0' ? s->id : NULL, "completed", &cmd);
    if (r != NULL && s->cmd->run_async != NULL) {
        return adhoc_complete_async(ctx, st, s, r, cmd);
    }
    int rc = r != NULL ? s->cmd->run(ctx, s, cmd) : ERR_NOMEM;
    adhoc_session_end(s);
    if (rc != 0) {
        xml_unref(r);
        return rc;
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static struct adhoc_session *adhoc_new_session(const struct xep_context *ctx,
                                               struct adhoc_state *as,
                                               const char *from)
{
    unsigned long long now = adhoc_now(ctx);
    struct adhoc_session *free_slot = NULL;
    for (size_t i = 0; i < ADHOC_SESSIONS_MAX; i++) {
        struct adhoc_session *s = &as->sessions[i];
        if (s->used && s->expires_ms <= now) {
            adhoc_session_end(s);
        }
        if (!s->used && free_slot == NULL) {
            free_slot = s;
        }
    }
    if (free_slot == NULL) {
        return NULL;
    }
    free_slot->owner = strdup(from);
    if (free_slot->owner == NULL) {
        return NULL;
    }
    free_slot->used = true;
    free_slot->expires_ms = now + ADHOC_SESSION_MS;
    /* Guessable on purpose: a session only answers the full JID that
     * opened it, and only admins open any. */
    as->seq++;
    snprintf(free_slot->id, sizeof(free_slot->id), "fg-%lx-%llx", as->seq, now);
    return free_slot;
}

static int adhoc_execute(const struct xep_context *ctx,
                         const struct xml_node *st)
{
    struct adhoc_state *as = ctx->state;
    const struct xml_node *c = xml_child(st, ADHOC_NS, "command");
    const char *from = xml_attr(st, "from");
    const char *node = xml_attr(c, "node");
    const char *sid = xml_attr(c, "sessionid");
    const char *action = xml_attr(c, "action");
    const struct xml_node *x = xml_child(c, ADHOC_DATA_NS, "x");
    char why[400];

    if (as == NULL || !adhoc_is_admin(ctx, from)) {
        return adhoc_error(ctx, st, "forbidden", NULL,
                           "only fedgate's admins may run commands");
    }
    const struct adhoc_command *cmd = adhoc_find(node);
    if (cmd == NULL) {
        return ERR_NOT_FOUND;
    }
    if (action == NULL) {
        action = "execute";
    }
    bool known = strcmp(action, "execute") == 0 ||
                 strcmp(action, "next") == 0 || strcmp(action, "prev") == 0 ||
                 strcmp(action, "complete") == 0 ||
                 strcmp(action, "cancel") == 0;
    if (!known) {
        return adhoc_error(ctx, st, "bad-request", "malformed-action",
                           "unknown action");
    }
    if (sid == NULL) {
        if (strcmp(action, "execute") != 0) {
            return adhoc_error(ctx, st, "bad-request", "bad-sessionid",
                               "this action needs a session");
        }
        if (cmd->nstages == 0) {
            struct adhoc_session tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.cmd = cmd;
            return adhoc_complete(ctx, st, &tmp);
        }
        struct adhoc_session *s = adhoc_new_session(ctx, as, from);
        if (s == NULL) {
            return adhoc_error(ctx, st, "resource-constraint", NULL,
                               "too many open command sessions");
        }
        s->cmd = cmd;
        int rc = adhoc_send_stage(ctx, st, s);
        if (rc != 0) {
            adhoc_session_end(s);
        }
        return rc;
    }

    struct adhoc_session *s = NULL;
    for (size_t i = 0; i < ADHOC_SESSIONS_MAX && s == NULL; i++) {
        struct adhoc_session *t = &as->sessions[i];
        if (t->used && strcmp(t->id, sid) == 0 && strcmp(t->owner, from) == 0 &&
            t->cmd == cmd) {
            s = t;
        }
    }
    if (s == NULL) {
        return adhoc_error(ctx, st, "bad-request", "bad-sessionid",
                           "no such command session");
    }
    if (s->expires_ms <= adhoc_now(ctx)) {
        adhoc_session_end(s);
        return adhoc_error(ctx, st, "not-allowed", "session-expired",
                           "the command session expired");
    }
    s->expires_ms = adhoc_now(ctx) + ADHOC_SESSION_MS;
    bool last = s->stage + 1 == cmd->nstages;
    if (strcmp(action, "cancel") == 0) {
        struct xml_node *cel;
        struct xml_node *r =
            adhoc_reply(st, cmd->node, s->id, "canceled", &cel);
        adhoc_session_end(s);
        return r != NULL ? ctx->send(ctx->send_ud, r) /* transferred */
                         : ERR_NOMEM;
    }
    if (strcmp(action, "prev") == 0) {
        if (s->stage == 0) {
            return adhoc_error(ctx, st, "bad-request", "bad-action",
                               "there is no previous step");
        }
        s->stage--;
        return adhoc_send_stage(ctx, st, s);
    }
    if ((strcmp(action, "next") == 0 && last) ||
        (strcmp(action, "complete") == 0 && !last)) {
        return adhoc_error(ctx, st, "bad-request", "bad-action",
                           last ? "this is the last step: complete it"
                                : "this is not the last step: use next");
    }
    /* execute, next or complete: check the stage's form */
    struct xml_node *holder = xml_element_new(ADHOC_NS, "command");
    struct form f = {.rc = ERR_NOMEM};
    if (holder != NULL) {
        form_start(&f, holder, "form", NULL, NULL);
        if (f.rc == 0) {
            cmd->form(ctx, s, s->stage, &f);
        }
    }
    int rc = f.rc;
    if (rc == 0) {
        rc = adhoc_check(f.x, x, s, why, sizeof(why));
    }
    xml_unref(holder);
    const char *bad =
        rc == 0 && cmd->validate != NULL ? cmd->validate(s, s->stage) : NULL;
    if (bad != NULL) {
        snprintf(why, sizeof(why), "%s", bad);
        rc = ERR_INVAL;
    }
    if (rc == ERR_INVAL) {
        return adhoc_error(ctx, st, "bad-request", "bad-payload", why);
    }
    if (rc != 0) {
        return rc;
    }
    if (last) {
        return adhoc_complete(ctx, st, s);
    }
    s->stage++;
    return adhoc_send_stage(ctx, st, s);
}

/* ---- disco ----------------------------------------------------------- */

static int adhoc_disco_items(const struct xep_context *ctx,
                             const struct xml_node *st,
                             const char *node)
{
    if (strcmp(node, ADHOC_NS) != 0) {
        return ERR_NOT_FOUND;
    }
    struct xml_node *r = stanza_iq_result(st);
    struct xml_node *q =
        r != NULL ? xml_add_child(r, ADHOC_ITEMS_NS, "query") : NULL;
    if (q == NULL || xml_set_attr(q, "node", ADHOC_NS) != 0) {
        xml_unref(r);
        return ERR_NOMEM;
    }
    /* others see an empty list, not an error: nothing to probe for */
    if (adhoc_is_admin(ctx, xml_attr(st, "from"))) {
        for (size_t i = 0; i < ADHOC_NCOMMANDS; i++) {
            struct xml_node *it = xml_add_child(q, NULL, "item");
            if (it == NULL || xml_set_attr(it, "jid", ctx->service_jid) != 0 ||
                xml_set_attr(it, "node", adhoc_commands[i].node) != 0 ||
                xml_set_attr(it, "name", adhoc_commands[i].name) != 0) {
                xml_unref(r);
                return ERR_NOMEM;
            }
        }
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static int adhoc_disco_info(const struct xep_context *ctx,
                            const struct xml_node *st,
                            const char *node)
{
    const struct adhoc_command *cmd = adhoc_find(node);
    bool list = strcmp(node, ADHOC_NS) == 0;
    if (cmd == NULL && !list) {
        return ERR_NOT_FOUND;
    }
    if (cmd != NULL && !adhoc_is_admin(ctx, xml_attr(st, "from"))) {
        return ERR_AUTH;
    }
    struct xml_node *r = stanza_iq_result(st);
    struct xml_node *q =
        r != NULL ? xml_add_child(r, ADHOC_INFO_NS, "query") : NULL;
    struct xml_node *id = q != NULL ? xml_add_child(q, NULL, "identity") : NULL;
    struct xml_node *f1 = id != NULL ? xml_add_child(q, NULL, "feature") : NULL;
    struct xml_node *f2 = f1 != NULL ? xml_add_child(q, NULL, "feature") : NULL;
    if (f2 == NULL || xml_set_attr(q, "node", node) != 0 ||
        xml_set_attr(id, "category", "automation") != 0 ||
        xml_set_attr(id, "type", list ? "command-list" : "command-node") != 0 ||
        xml_set_attr(id, "name", list ? "Commands" : cmd->name) != 0 ||
        xml_set_attr(f1, "var", ADHOC_NS) != 0 ||
        xml_set_attr(f2, "var", ADHOC_DATA_NS) != 0) {
        xml_unref(r);
        return ERR_NOMEM;
    }
    return ctx->send(ctx->send_ud, r); /* transferred */
}

static const char *const adhoc_features[] = {ADHOC_NS, ADHOC_DATA_NS, NULL};

const struct xep_handler xep0050_adhoc = {
    .name = "Ad-Hoc Commands",
    .xep = "0050",
    .version = "1.3.0",
    .stanza = "iq",
    .iq_type = "set",
    .ns = ADHOC_NS,
    .element = "command",
    .features = adhoc_features,
    .handle = adhoc_execute,
    .state_new = adhoc_state_new,
    .state_free = adhoc_state_free,
    .disco_info = adhoc_disco_info,
    .disco_items = adhoc_disco_items,
};
