/*
 * adhoc_status.c: the XEP-0050 commands that show fedgate's state
 * (list-peers, peer-detail, statistics, audit-log). They only read,
 * through ctx->admin; the protocol is in xep0050_adhoc.c.
 */
#include "config.h"

#include "adhoc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- descriptors ---- */

const struct adhoc_command adhoc_cmd_list_peers = {
    "urn:fedgate:cmd:list-peers", "List peers", 0,   NULL,
    cmd_list_peers_run,           NULL,         NULL};
const struct adhoc_command adhoc_cmd_peer_detail = {
    "urn:fedgate:cmd:peer-detail", "Peer detail", 2,   cmd_peer_detail_form,
    cmd_peer_detail_run,           NULL,          NULL};
const struct adhoc_command adhoc_cmd_statistics = {
    "urn:fedgate:cmd:statistics", "Statistics", 0,   NULL,
    cmd_statistics_run,           NULL,         NULL};
const struct adhoc_command adhoc_cmd_audit_log = {"urn:fedgate:cmd:audit-log",
                                                  "Show the audit log",
                                                  1,
                                                  cmd_audit_form,
                                                  cmd_audit_run,
                                                  NULL,
                                                  NULL};
