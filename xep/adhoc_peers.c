/*
 * adhoc_peers.c: the XEP-0050 commands that add, edit and remove peers at
 * run time. The form has the config file's peer keys; the daemon checks,
 * stores and applies the change and runs the home-server hook, whose
 * outcome may come after the command returns (run_async, adhoc_pending).
 */
#include "config.h"

#include "adhoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- descriptors ---- */

const struct adhoc_command adhoc_cmd_add_peer = {
    "urn:fedgate:cmd:add-peer", "Add a peer",    1, cmd_add_peer_form, NULL,
    cmd_add_peer_validate,      cmd_add_peer_run};
const struct adhoc_command adhoc_cmd_edit_peer = {"urn:fedgate:cmd:edit-peer",
                                                  "Edit a peer",
                                                  2,
                                                  cmd_edit_peer_form,
                                                  NULL,
                                                  NULL,
                                                  cmd_edit_peer_run};
const struct adhoc_command adhoc_cmd_remove_peer = {
    "urn:fedgate:cmd:remove-peer",
    "Remove a peer",
    1,
    cmd_remove_peer_form,
    NULL,
    NULL,
    cmd_remove_peer_run};
