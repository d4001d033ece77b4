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
 * The commands themselves live in adhoc_status.c, adhoc_control.c and
 * adhoc_peers.c (types and helpers shared through adhoc.h); everything
 * they learn or change goes through ctx->admin. A command may finish
 * later (run_async: the home-server hook): its reply then waits in an
 * adhoc_pending until adhoc_pending_done sends it.
 */
#include "config.h"

#include "adhoc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- data forms ------------------------------------------------------ */

int adhoc_text_child(struct xml_node *parent,
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

void form_start(struct form *f,
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

struct xml_node *form_field(struct form *f,
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

void form_option(struct form *f,
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
void form_type(struct form *f)
{
    (void)form_field(f, "FORM_TYPE", "hidden", NULL, false, ADHOC_FORM_TYPE);
}

void form_fixed(struct form *f, const char *text)
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

const char *adhoc_get(const struct adhoc_session *s, const char *var)
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

int adhoc_note(struct xml_node *cmd, const char *type, const char *text)
{
    struct xml_node *n = xml_add_child(cmd, NULL, "note");
    if (n == NULL || xml_set_attr(n, "type", type) != 0) {
        return ERR_NOMEM;
    }
    return xml_append_text(n, text, strlen(text));
}

/* ---- the commands ---------------------------------------------------- */

const char *adhoc_or(const char *s, const char *dflt)
{
    return s != NULL && s[0] != '\0' ? s : dflt;
}

void adhoc_time(long long t, char *out, size_t outsz)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t <= 0 || gmtime_r(&tt, &tm) == NULL ||
        strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(out, outsz, "-");
    }
}

void adhoc_bare(const struct adhoc_session *s, char *out, size_t outsz)
{
    const char *owner = s->owner != NULL ? s->owner : "?";
    const char *slash = strchr(owner, '/');
    int len = slash != NULL ? (int)(slash - owner) : (int)strlen(owner);
    snprintf(out, outsz, "%.*s", len, owner);
}

/* A light domain check (the daemon normalises it): labels of letters,
 * digits, '-' or non-ASCII, separated by single dots; no '@' or '/'. */
bool adhoc_domain_ok(const char *v)
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

/* Adds a note for a change's outcome. */
int adhoc_outcome(struct xml_node *cmd, int rc, const char *msg)
{
    return adhoc_note(cmd, rc == 0 ? "info" : "error", msg);
}

void adhoc_pending_done(void *ud, int rc, const char *msg)
{
    struct adhoc_pending *pend = ud;
    if (adhoc_outcome(pend->cmd, rc, msg) == 0) {
        (void)pend->send(pend->send_ud, pend->reply); /* transferred */
    } else {
        xml_unref(pend->reply);
    }
    free(pend);
}

/* ---- the command list ---- */

static const struct adhoc_command *const adhoc_commands[] = {
    &adhoc_cmd_list_peers,
    &adhoc_cmd_peer_detail,
    &adhoc_cmd_statistics,
    &adhoc_cmd_set_log_level,
    &adhoc_cmd_reload,
    &adhoc_cmd_server_snippet,
    &adhoc_cmd_block_domain,
    &adhoc_cmd_unblock_domain,
    &adhoc_cmd_disconnect_route,
    &adhoc_cmd_retry_route,
    &adhoc_cmd_rotate_dialback_secret,
    &adhoc_cmd_audit_log,
    &adhoc_cmd_add_peer,
    &adhoc_cmd_edit_peer,
    &adhoc_cmd_remove_peer,
};

#define ADHOC_NCOMMANDS (sizeof(adhoc_commands) / sizeof(adhoc_commands[0]))

static const struct adhoc_command *adhoc_find(const char *node)
{
    for (size_t i = 0; node != NULL && i < ADHOC_NCOMMANDS; i++) {
        if (strcmp(adhoc_commands[i]->node, node) == 0) {
            return adhoc_commands[i];
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
                xml_set_attr(it, "node", adhoc_commands[i]->node) != 0 ||
                xml_set_attr(it, "name", adhoc_commands[i]->name) != 0) {
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
