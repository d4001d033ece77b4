/*
 * daemon_peers.c: peers added, edited and removed at run time by an
 * administrator (XEP-0050 commands), and the home-server hook.
 *
 * on start and on reload: the changes stored in state_db are laid over
 *             the file's peers (peers.h); one that no longer fits the file
 *             (its domain became a served domain, say) is logged and
 *             skipped, never fatal
 * on add/edit: checked like the file (the same key table), stored with
 *             its audit row (a change that cannot be stored is refused),
 *             then applied from a timer (applying replaces the service
 *             that runs the command); then upstream.peer_hook runs "add"
 *             with the peer's domains and their secrets on stdin; when it
 *             succeeds the new home-server links connect at once instead
 *             of waiting for their backoff
 * on remove:  the same, with a stored removal when the file defines the
 *             peer (else the stored peer is forgotten), and the hook runs
 *             "remove"; applying closes the peer's streams and bounces
 *             its queues
 * on edit that drops services: the hook runs "remove" for those first
 * on shutdown: running hooks are killed; their admins hear so
 */
#include "config.h"

#include "daemon_priv.h"

#include "err.h"
#include "hook.h"
#include "log.h"
#include "loop.h"
#include "peers.h"
#include "store.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOMAINS_MAX 64 /* a peer and its services */

struct daemon_hook_job {
    struct daemon *d;
    struct hook *hook;
    xep_done_fn *done;
    void *done_ud;
    char summary[600]; /* what the change did, before the hook */
    /* phase 1 (may be empty): remove these; phase 2 (may be empty): add */
    char *remove[DOMAINS_MAX];
    size_t nremove;
    char *add[DOMAINS_MAX];
    size_t nadd;
    char *add_input; /* "DOMAIN SECRET" lines; wiped */
    char output[2 * HOOK_OUTPUT_MAX + 200];
    bool failed;
    struct daemon_hook_job *next;
};

/* ---- stored changes over the file ---- */

static int
daemon_overlay_one(void *ud, const char *domain, const char *spec, long long at)
{
    struct conf *cfg = ud;
    char err[400];
    (void)at;
    if (spec == NULL) {
        if (peers_remove(cfg, domain) == 0) {
            log_info("state_db: peer %s removed at run time", domain);
        }
        return 0;
    }
    struct conf_peer p;
    int rc = peers_from_spec(cfg, domain, spec, &p, err, sizeof(err));
    if (rc == ERR_NOMEM) {
        return rc;
    }
    if (rc != 0) {
        log_error("state_db: the peer %s stored at run time is skipped: %s",
                  domain, err);
        return 0;
    }
    rc = peers_put(cfg, &p, domain);
    conf_peer_clear(&p);
    if (rc == 0) {
        log_info("state_db: peer %s as set at run time", domain);
    }
    return rc;
}

int daemon_peers_overlay(struct daemon *d, struct conf *cfg)
{
    return store_peers(d->store, daemon_overlay_one, cfg);
}

/* ---- what the forms show ---- */

size_t daemon_admin_configured_count(void *ud)
{
    return daemon_latest_conf(ud)->npeers;
}

const char *daemon_admin_configured_domain(void *ud, size_t i)
{
    const struct conf *cfg = daemon_latest_conf(ud);
    return i < cfg->npeers ? cfg->peers[i].domain : NULL;
}

static const char *const auth_keys[] = {"any", "certificate", "dialback"};

int daemon_admin_peer_settings(void *ud,
                               const char *domain,
                               struct xep_peer_settings *out)
{
    const struct conf_peer *p = peers_find(daemon_latest_conf(ud), domain);
    memset(out, 0, sizeof(*out));
    if (p == NULL) {
        return ERR_NOT_FOUND;
    }
    out->domain = p->domain;
    out->auth = auth_keys[p->auth];
    out->trusted = p->trusted;
    out->tls_required = p->tls_required;
    out->host = p->host;
    out->port = p->port;
    out->trust_anchor = p->trust_anchor;
    out->stanza_max = p->stanza_max;
    out->origin = p->runtime ? "run time (state_db)" : "config file";
    size_t len = 0;
    for (size_t i = 0; i < p->nservices; i++) {
        int w = snprintf(out->services + len, sizeof(out->services) - len,
                         "%s%s", i > 0 ? "\n" : "", p->services[i].domain);
        if (w < 0 || (size_t)w >= sizeof(out->services) - len) {
            break;
        }
        len += (size_t)w;
    }
    return 0;
}

/* ---- the hook ---- */

static void job_free(struct daemon_hook_job *j)
{
    for (size_t i = 0; i < j->nremove; i++) {
        free(j->remove[i]);
    }
    for (size_t i = 0; i < j->nadd; i++) {
        free(j->add[i]);
    }
    if (j->add_input != NULL) {
        explicit_bzero(j->add_input, strlen(j->add_input));
        free(j->add_input);
    }
    free(j);
}

static void job_unlink(struct daemon_hook_job *j)
{
    for (struct daemon_hook_job **pp = &j->d->jobs; *pp != NULL;
         pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            return;
        }
    }
}

/* Tells the admin and forgets the job. */
static void job_finish(struct daemon_hook_job *j, int rc)
{
    char msg[sizeof(j->summary) + sizeof(j->output) + 8];
    snprintf(msg, sizeof(msg), "%s\n%s", j->summary, j->output);
    job_unlink(j);
    if (j->done != NULL) {
        j->done(j->done_ud, rc, msg);
    }
    job_free(j);
}

static int job_start(struct daemon_hook_job *j);

/* Appends one phase's outcome to the job's output. */
static void job_note(struct daemon_hook_job *j,
                     const char *action,
                     const struct hook_result *res)
{
    const struct conf *cfg = daemon_latest_conf(j->d);
    char how[80];
    size_t len = strlen(j->output);
    hook_describe(res, cfg->peer_hook_timeout * 1000u, how, sizeof(how));
    snprintf(j->output + len, sizeof(j->output) - len,
             "Home-server hook \"%s\" %s (%s):%s%s%s", action,
             res->exit_code == 0 ? "succeeded" : "FAILED", how,
             res->output[0] != '\0' ? "\n" : " no output", res->output,
             res->dropped > 0 ? " [output cut]" : "");
    len = strlen(j->output);
    if (len > 0 && j->output[len - 1] == '\n') {
        j->output[len - 1] = '\0';
    }
}

static void job_on_done(void *ud, const struct hook_result *res)
{
    struct daemon_hook_job *j = ud;
    bool removing = j->nremove > 0;
    const char *action = removing ? "remove" : "add";
    j->hook = NULL;
    job_note(j, action, res);
    bool ok = res->exit_code == 0;
    log_conn(ok ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR,
             removing ? j->remove[0] : j->add[0], "peer hook %s: %s", action,
             ok ? "succeeded" : "failed");
    if (!ok) {
        size_t len = strlen(j->output);
        snprintf(j->output + len, sizeof(j->output) - len,
                 "\nThe home server may not route these domains as wanted: "
                 "fix the hook and edit the peer again, or change the home "
                 "server by hand (see the home-server snippet command).");
        job_finish(j, ERR_SYS);
        return;
    }
    if (removing) {
        for (size_t i = 0; i < j->nremove; i++) {
            free(j->remove[i]);
        }
        j->nremove = 0;
        if (j->nadd > 0) {
            size_t len = strlen(j->output);
            snprintf(j->output + len, sizeof(j->output) - len, "\n");
            if (job_start(j) != 0) {
                job_finish(j, ERR_SYS);
            }
            return;
        }
        job_finish(j, 0);
        return;
    }
    /* the home server knows the domains now: no need to wait for the
     * links' backoff */
    for (size_t i = 0; i < j->nadd; i++) {
        (void)upstream_retry(j->d->up, j->add[i]);
    }
    job_finish(j, 0);
}

/* Starts the job's next phase. 0 or an error (noted in output). */
static int job_start(struct daemon_hook_job *j)
{
    const struct conf *cfg = daemon_latest_conf(j->d);
    bool removing = j->nremove > 0;
    char host[300], port[40], svc[1100];
    snprintf(host, sizeof(host), "FEDGATE_UPSTREAM_HOST=%s",
             cfg->upstream_host);
    snprintf(port, sizeof(port), "FEDGATE_UPSTREAM_PORT=%u",
             cfg->upstream_port);
    snprintf(svc, sizeof(svc), "FEDGATE_SERVICE_JID=%s", cfg->service_jid);
    const char *env[] = {host, port, svc, NULL};
    const char *args[DOMAINS_MAX + 1];
    size_t n = 0;
    args[n++] = removing ? "remove" : "add";
    char *const *list = removing ? j->remove : j->add;
    size_t count = removing ? j->nremove : j->nadd;
    for (size_t i = 0; i < count; i++) {
        args[n++] = list[i];
    }
    int rc = hook_run(j->d->loop, cfg->peer_hook, args, n,
                      removing ? NULL : j->add_input, env,
                      cfg->peer_hook_timeout * 1000u, job_on_done, j, &j->hook);
    if (rc != 0) {
        size_t len = strlen(j->output);
        snprintf(j->output + len, sizeof(j->output) - len,
                 "The home-server hook could not be started: %s "
                 "(see the log).",
                 err_str(rc));
    }
    return rc;
}

/* Adds domain to list (a copy). */
static int job_push(char **list, size_t *n, const char *domain)
{
    if (*n >= DOMAINS_MAX) {
        return ERR_TOO_BIG;
    }
    if ((list[*n] = strdup(domain)) == NULL) {
        return ERR_NOMEM;
    }
    (*n)++;
    return 0;
}

static bool peer_has_domain(const struct conf_peer *p, const char *domain)
{
    if (p == NULL) {
        return false;
    }
    if (strcmp(p->domain, domain) == 0) {
        return true;
    }
    for (size_t i = 0; i < p->nservices; i++) {
        if (strcmp(p->services[i].domain, domain) == 0) {
            return true;
        }
    }
    return false;
}

/* The hook's work for a change from old to new (either may be NULL):
 * remove what old had and new has not, then add all of new. */
static int job_plan(struct daemon_hook_job *j,
                    const struct conf *fresh,
                    const struct conf_peer *old,
                    const struct conf_peer *new)
{
    int rc = 0;
    if (old != NULL) {
        const char *doms[DOMAINS_MAX];
        size_t nd = 0;
        doms[nd++] = old->domain;
        for (size_t i = 0; i < old->nservices && nd < DOMAINS_MAX; i++) {
            doms[nd++] = old->services[i].domain;
        }
        for (size_t i = 0; i < nd && rc == 0; i++) {
            if (!peer_has_domain(new, doms[i])) {
                rc = job_push(j->remove, &j->nremove, doms[i]);
            }
        }
    }
    if (new == NULL || rc != 0) {
        return rc;
    }
    char *input = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&input, &len);
    if (f == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i <= new->nservices &&rc == 0; i++) {
        const char *dom = i == 0 ? new->domain : new->services[i - 1].domain;
        rc = job_push(j->add, &j->nadd, dom);
        fprintf(f, "%s %s\n", dom, conf_secret_for(fresh, dom));
    }
    if (fclose(f) != 0 && rc == 0) {
        rc = ERR_NOMEM;
    }
    j->add_input = input;
    return rc;
}

/*
 * Runs the hook for a change just stored (summary says what it did), or
 * finishes at once when no hook is configured. Returns what the admin
 * operation returns: 0 (msg set) or ERR_AGAIN (done called later).
 */
static int daemon_hook_change(struct daemon *d,
                              const struct conf *fresh,
                              const struct conf_peer *old,
                              const struct conf_peer *new,
                              const char *summary,
                              xep_done_fn *done,
                              void *done_ud,
                              char *msg,
                              size_t msglen)
{
    if (fresh->peer_hook == NULL) {
        snprintf(msg, msglen,
                 "%s\nNo upstream.peer_hook is configured: make the home "
                 "server route the domains to fedgate yourself (see the "
                 "home-server snippet command).",
                 summary);
        return 0;
    }
    struct daemon_hook_job *j = calloc(1, sizeof(*j));
    int rc = j != NULL ? 0 : ERR_NOMEM;
    if (rc == 0) {
        j->d = d;
        j->done = done;
        j->done_ud = done_ud;
        snprintf(j->summary, sizeof(j->summary), "%s", summary);
        rc = job_plan(j, fresh, old, new);
    }
    if (rc == 0) {
        rc = job_start(j);
    }
    if (rc != 0) {
        snprintf(msg, msglen, "%s\n%s", summary,
                 j != NULL && j->output[0] != '\0'
                     ? j->output
                     : "The home-server hook could not be started.");
        if (j != NULL) {
            job_free(j);
        }
        return ERR_SYS;
    }
    j->next = d->jobs;
    d->jobs = j;
    return ERR_AGAIN;
}

void daemon_peers_cancel_hooks(struct daemon *d)
{
    while (d->jobs != NULL) {
        struct daemon_hook_job *j = d->jobs;
        hook_cancel(j->hook);
        j->hook = NULL;
        size_t len = strlen(j->output);
        snprintf(j->output + len, sizeof(j->output) - len,
                 "fedgate stopped before the home-server hook finished; "
                 "it was killed.");
        job_finish(j, ERR_SYS);
    }
}

/* ---- the changes ---- */

static const char *
field_value(const struct xep_kv *fields, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(fields[i].key, key) == 0) {
            return fields[i].value;
        }
    }
    return NULL;
}

/* Stores spec for p's domain with an audit row; the spec is wiped. */
static int daemon_store_peer(struct daemon *d,
                             const char *domain,
                             const struct conf_peer *p,
                             const char *who,
                             const char *what)
{
    char *spec = p != NULL ? peers_spec(p) : NULL;
    if (p != NULL && spec == NULL) {
        return ERR_NOMEM;
    }
    int rc = store_peer_set(d->store, domain, spec, who, what,
                            (long long)time(NULL));
    if (spec != NULL) {
        explicit_bzero(spec, strlen(spec));
        free(spec);
    }
    return rc;
}

int daemon_admin_peer_put(void *ud,
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
    struct daemon *d = ud;
    const struct conf *base = daemon_latest_conf(d);
    const char *domain = field_value(fields, n, "domain");
    const struct conf_peer *current = NULL;
    struct peers_field pf[16];
    char err[400], what[400], summary[600];
    struct conf_peer p;

    *bad = n;
    if (n > sizeof(pf) / sizeof(pf[0])) {
        snprintf(msg, msglen, "too many fields");
        return ERR_INVAL;
    }
    if (edit &&
        (domain == NULL || (current = peers_find(base, domain)) == NULL)) {
        snprintf(msg, msglen, "%s is not a configured peer.",
                 domain != NULL ? domain : "(none)");
        return ERR_NOT_FOUND;
    }
    for (size_t i = 0; i < n; i++) {
        pf[i].key = fields[i].key;
        pf[i].value = fields[i].value;
    }
    int rc = peers_from_fields(base, pf, n, current, &p, err, sizeof(err), bad);
    if (rc != 0) {
        snprintf(msg, msglen, "%s", rc == ERR_NOMEM ? "out of memory" : err);
        return rc;
    }
    struct conf *fresh = conf_dup(base);
    rc = fresh != NULL
             ? peers_put(fresh, &p, current != NULL ? current->domain : NULL)
             : ERR_NOMEM;
    snprintf(what, sizeof(what), "%s peer %s", edit ? "edit" : "add", p.domain);
    if (rc == 0) {
        rc = daemon_store_peer(d, p.domain, &p, who, what);
        if (rc != 0) {
            snprintf(msg, msglen,
                     "%s not %s: state_db cannot be written (see the log).",
                     p.domain, edit ? "changed" : "added");
        }
    } else {
        snprintf(msg, msglen, "out of memory");
    }
    if (rc != 0) {
        conf_free(fresh);
        conf_peer_clear(&p);
        return rc;
    }
    /* the old settings, for the hook's plan, before fresh replaces them */
    struct conf_peer old;
    bool have_old = current != NULL && conf_peer_copy(&old, current) == 0;
    if (daemon_schedule_apply(d, fresh) != 0) { /* transferred */
        log_error("%s: stored, but not applied: out of memory", what);
    }
    log_warn("%s by %s", what, who);
    snprintf(summary, sizeof(summary),
             "Peer %s %s: stored in state_db and applied (streams for %zu "
             "domain(s)).",
             p.domain, edit ? "changed" : "added", 1 + p.nservices);
    rc = daemon_hook_change(d, daemon_latest_conf(d), have_old ? &old : NULL,
                            &p, summary, done, done_ud, msg, msglen);
    if (have_old) {
        conf_peer_clear(&old);
    }
    conf_peer_clear(&p);
    return rc;
}

/* Whether the config file itself defines domain (unreadable: assume so,
 * so that a removal is stored rather than forgotten). */
static bool daemon_file_has_peer(const struct conf *cfg, const char *domain)
{
    struct conf *file = NULL;
    if (conf_load(cfg->path, &file, NULL) != 0) {
        return true;
    }
    const struct conf_peer *p = peers_find(file, domain);
    bool has = p != NULL;
    conf_free(file);
    return has;
}

int daemon_admin_peer_remove(void *ud,
                             const char *domain,
                             const char *who,
                             xep_done_fn *done,
                             void *done_ud,
                             char *msg,
                             size_t msglen)
{
    struct daemon *d = ud;
    const struct conf *base = daemon_latest_conf(d);
    const struct conf_peer *current = peers_find(base, domain);
    char what[400], summary[600];
    if (current == NULL) {
        snprintf(msg, msglen, "%s is not a configured peer.", domain);
        return ERR_NOT_FOUND;
    }
    struct conf_peer old;
    if (conf_peer_copy(&old, current) != 0) {
        snprintf(msg, msglen, "out of memory");
        return ERR_NOMEM;
    }
    struct conf *fresh = conf_dup(base);
    int rc = fresh != NULL ? peers_remove(fresh, domain) : ERR_NOMEM;
    bool in_file = daemon_file_has_peer(base, domain);
    snprintf(what, sizeof(what), "remove peer %s", domain);
    if (rc == 0) {
        rc = in_file ? daemon_store_peer(d, domain, NULL, who, what)
                     : store_peer_forget(d->store, domain, who, what,
                                         (long long)time(NULL));
        if (rc != 0) {
            snprintf(msg, msglen,
                     "%s not removed: state_db cannot be written (see the "
                     "log).",
                     domain);
        }
    } else {
        snprintf(msg, msglen, "out of memory");
    }
    if (rc != 0) {
        conf_free(fresh);
        conf_peer_clear(&old);
        return rc;
    }
    if (daemon_schedule_apply(d, fresh) != 0) { /* transferred */
        log_error("%s: stored, but not applied: out of memory", what);
    }
    log_warn("%s by %s", what, who);
    snprintf(summary, sizeof(summary),
             "Peer %s removed: its streams close and its queued stanzas "
             "bounce.%s",
             domain,
             in_file ? " It is still in the config file: the stored removal "
                       "hides it there, until it is added again."
                     : "");
    rc = daemon_hook_change(d, daemon_latest_conf(d), &old, NULL, summary, done,
                            done_ud, msg, msglen);
    conf_peer_clear(&old);
    return rc;
}
