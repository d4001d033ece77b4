/*
 * adhoc_control.c: the XEP-0050 commands that change how fedgate runs
 * (log level, reload, home-server snippet, block/unblock a domain,
 * disconnect/retry a route, rotate the dialback secret). Every change goes
 * through ctx->admin, which stores and audits it; the protocol is in
 * xep0050_adhoc.c.
 */
#include "config.h"

#include "adhoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- descriptors ---- */

const struct adhoc_command adhoc_cmd_set_log_level = {
    "urn:fedgate:cmd:set-log-level",
    "Set log level",
    1,
    cmd_log_level_form,
    cmd_log_level_run,
    NULL,
    NULL};
const struct adhoc_command adhoc_cmd_reload = {"urn:fedgate:cmd:reload",
                                               "Reload configuration",
                                               1,
                                               cmd_reload_form,
                                               cmd_reload_run,
                                               NULL,
                                               NULL};
const struct adhoc_command adhoc_cmd_server_snippet = {
    "urn:fedgate:cmd:server-snippet",
    "Show home-server snippet",
    1,
    cmd_snippet_form,
    cmd_snippet_run,
    NULL,
    NULL};
const struct adhoc_command adhoc_cmd_block_domain = {
    "urn:fedgate:cmd:block-domain",
    "Block a domain",
    1,
    cmd_block_form,
    cmd_block_run,
    cmd_block_validate,
    NULL};
const struct adhoc_command adhoc_cmd_unblock_domain = {
    "urn:fedgate:cmd:unblock-domain",
    "Unblock a domain",
    1,
    cmd_unblock_form,
    cmd_unblock_run,
    NULL,
    NULL};
const struct adhoc_command adhoc_cmd_disconnect_route = {
    "urn:fedgate:cmd:disconnect-route",
    "Disconnect a route",
    1,
    cmd_route_form,
    cmd_disconnect_run,
    NULL,
    NULL};
const struct adhoc_command adhoc_cmd_retry_route = {
    "urn:fedgate:cmd:retry-route",
    "Retry a route now",
    1,
    cmd_route_form,
    cmd_retry_run,
    NULL,
    NULL};
const struct adhoc_command adhoc_cmd_rotate_dialback_secret = {
    "urn:fedgate:cmd:rotate-dialback-secret",
    "Rotate the dialback secret",
    1,
    cmd_rotate_form,
    cmd_rotate_run,
    NULL,
    NULL};
