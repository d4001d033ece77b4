/*
 * daemon.c: wires configuration, loop, home-server links and the service
 * JID together.
 *
 * on start:   log setup, state_db opened (an error naming the file stops
 *             the start), links for the service JID and every peer and
 *             peer service domain, the stored blocks applied, signals
 *             into the loop
 * on stanza from the home server:
 *             for the service JID: the service answers it
 *             for a peer domain: out over the s2s route (local, peer)
 * on stanza from a peer (s2s): to the home server on the peer's stream
 * on undeliverable: an error reply to the sender, the other way round
 *             (errors and iq results are never answered)
 * on SIGHUP:  reload; a broken file is reported and the old config stays
 * on an ad-hoc command (XEP-0050, xep/xep0050_adhoc.c): the service calls
 *             the admin operations below; a reload asked for that way is
 *             checked at once (the admin sees the errors) and applied from
 *             a timer, since applying replaces the service that is running
 *             the command
 * on block/unblock, disconnect/retry (ad-hoc): the change is written to
 *             state_db with an audit row first, then applied to the
 *             peering engine; a change that cannot be stored is refused
 * on SIGUSR1: log the state of every home-server stream and s2s route
 * on SIGTERM/SIGINT: close every stream cleanly, then leave the loop (a
 *             second signal leaves at once)
 */
#include "config.h"

#include "daemon.h"
#include "daemon_priv.h"

#include "dns.h"
#include "err.h"
#include "jid.h"
#include "log.h"
#include "loop.h"
#include "peers.h"
#include "s2s.h"
#include "service.h"
#include "stanza.h"
#include "store.h"
#include "tls.h"
#include "upstream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The upstream domains of a config: the service JID, then each peer and
 * its service domains. Returns a new array (strings borrowed from cfg). */
static struct upstream_domain *daemon_domains(const struct conf *cfg,
                                              size_t *count)
{
    size_t n = 1;
    for (size_t i = 0; i < cfg->npeers; i++) {
        n += 1 + cfg->peers[i].nservices;
    }
    struct upstream_domain *d = calloc(n, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }
    size_t k = 0;
    d[k].domain = cfg->service_jid;
    d[k].secret = conf_secret_for(cfg, cfg->service_jid);
    k++;
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        d[k].domain = p->domain;
        d[k].secret = conf_secret_for(cfg, p->domain);
        k++;
        for (size_t j = 0; j < p->nservices; j++) {
            d[k].domain = p->services[j].domain;
            d[k].secret = conf_secret_for(cfg, p->services[j].domain);
            k++;
        }
    }
    *count = k;
    return d;
}

static void daemon_settings(const struct conf *cfg, struct upstream_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->host = cfg->upstream_host;
    s->port = cfg->upstream_port;
    s->connect_timeout_ms = cfg->upstream_connect_timeout * 1000u;
    s->handshake_timeout_ms = cfg->upstream_handshake_timeout * 1000u;
    s->backoff_initial_ms = cfg->backoff_initial_ms;
    s->backoff_max_ms = cfg->backoff_max_ms;
    s->limits.stanza_max = cfg->stanza_max;
    s->limits.depth_max = cfg->depth_max;
    /* room for a full stanza plus what is already waiting */
    s->limits.out_max = 2 * cfg->stanza_max + 4096;
    s->queue_max_stanzas = cfg->queue_max_stanzas;
    s->queue_max_bytes = cfg->queue_max_bytes;
    s->queue_timeout_ms = cfg->queue_timeout * 1000u;
}

static int daemon_service_send(void *ud, struct xml_node *st)
{
    struct daemon *d = ud;
    return upstream_send(d->up, st); /* transferred */
}

static int daemon_make_service(struct daemon *d, const struct conf *cfg)
{
    const char **peers =
        calloc(cfg->npeers > 0 ? cfg->npeers : 1, sizeof(*peers));
    if (peers == NULL) {
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        peers[i] = cfg->peers[i].domain;
    }
    struct service *svc = service_new(cfg->service_jid, peers, cfg->npeers,
                                      daemon_service_send, d);
    free(peers);
    if (svc == NULL) {
        return ERR_NOMEM;
    }
    int rc = service_set_admin(svc, (const char *const *)cfg->admins,
                               cfg->nadmins, &d->admin);
    if (rc != 0) {
        service_free(svc);
        return rc;
    }
    service_free(d->svc);
    d->svc = svc;
    return 0;
}

/* The error reply for st, or NULL when none is due (st is an error or
 * an iq result) or memory ran out. Borrows st. */
static struct xml_node *daemon_error_for(const struct xml_node *st,
                                         const char *condition,
                                         const char *text)
{
    if (!stanza_may_bounce(st)) {
        return NULL;
    }
    struct xml_node *r = stanza_error_reply(st, NULL, condition, text);
    if (r == NULL) {
        log_error("out of memory bouncing a <%s/> with %s", st->name,
                  condition);
    }
    return r;
}

static void daemon_on_stanza(void *ud, const char *domain, struct xml_node *st)
{
    struct daemon *d = ud;
    if (strcmp(domain, d->cfg->service_jid) == 0) {
        service_handle(d->svc, st); /* transferred */
        return;
    }
    (void)s2s_send(d->s2s, st); /* transferred */
}

/* A stanza from the home server could not go out to a peer: the error
 * goes back to the local sender. */
static void daemon_on_s2s_undeliverable(void *ud,
                                        struct xml_node *st,
                                        const char *condition,
                                        const char *text)
{
    struct daemon *d = ud;
    struct xml_node *r = daemon_error_for(st, condition, text);
    d->bounces++;
    xml_unref(st);
    if (r != NULL) {
        (void)upstream_send(d->up, r); /* transferred */
    }
}

static void daemon_on_s2s_stanza(void *ud, struct xml_node *st)
{
    struct daemon *d = ud;
    (void)upstream_send(d->up, st); /* transferred */
}

/* A stanza for the home server could not be delivered: the error goes
 * back to the remote sender, or is logged when fedgate's service sent
 * it. */
static void daemon_on_undeliverable(void *ud,
                                    struct xml_node *st,
                                    const char *condition,
                                    const char *text)
{
    struct daemon *d = ud;
    const char *from = xml_attr(st, "from");
    const char *to = xml_attr(st, "to");
    char domain[1024];
    bool from_service = from != NULL &&
                        jid_domain_of(from, domain, sizeof(domain)) == 0 &&
                        strcmp(domain, d->cfg->service_jid) == 0;
    unsigned long held = 0;
    if (log_limit_allow(&d->bounce_log, loop_now_ms(d->loop), 20, &held)) {
        log_warn("<%s/> from %s to %s not delivered to the home server: %s "
                 "(%s)%s",
                 st->name, from != NULL ? from : "?", to != NULL ? to : "?",
                 condition, text != NULL ? text : "",
                 held > 0 ? " [more such lines were held back]" : "");
    }
    struct xml_node *r =
        from_service ? NULL : daemon_error_for(st, condition, text);
    d->bounces++;
    xml_unref(st);
    if (r != NULL) {
        (void)s2s_send(d->s2s, r); /* transferred */
    }
}

/* The home server takes stanzas slower than the peers send them: stop
 * reading from the peers until it caught up (nothing bounced for want of
 * room). */
static void daemon_on_congestion(void *ud, bool congested)
{
    struct daemon *d = ud;
    if (d->s2s != NULL) {
        s2s_pause_inbound(d->s2s, congested);
    }
}

/* A peer takes stanzas slower than the home server sends them: stop
 * reading that peer's home-server link until its route caught up. */
static void
daemon_on_route_congestion(void *ud, const char *remote, bool congested)
{
    struct daemon *d = ud;
    if (d->up != NULL) {
        (void)upstream_pause(d->up, remote, congested);
    }
}

static int daemon_apply(struct daemon *d, const struct conf *cfg)
{
    struct upstream_settings s;
    size_t n = 0;
    daemon_settings(cfg, &s);
    struct upstream_domain *domains = daemon_domains(cfg, &n);
    if (domains == NULL) {
        return ERR_NOMEM;
    }
    /* first, so no subsystem keeps pointing into the old config */
    if (d->s2s != NULL) {
        s2s_reconfigure(d->s2s, cfg);
    }
    int rc = daemon_make_service(d, cfg);
    if (rc == 0) {
        rc = upstream_configure(d->up, &s, domains, n);
    }
    free(domains);
    return rc;
}

/*
 * Reads and checks the configuration file again. 0 with the new config in
 * *out, or ERR_CONFIG / ERR_NOMEM with the "file:line: message" lines in
 * *errors (a new string, caller frees; may be NULL).
 */
static int
daemon_reload_load(struct daemon *d, struct conf **out, char **errors)
{
    size_t errlen = 0;
    *out = NULL;
    *errors = NULL;
    FILE *err = open_memstream(errors, &errlen);
    if (err == NULL) {
        return ERR_NOMEM;
    }
    int rc = conf_load(d->cfg->path, out, err);
    fclose(err);
    if (rc == 0) {
        rc = daemon_peers_overlay(d, *out);
        if (rc != 0) {
            conf_free(*out);
            *out = NULL;
        }
    }
    return rc;
}

/* Peers whose settings differ between old and fresh start their streams
 * over, so that nothing keeps running under the old policy. */
static void daemon_reset_changed_peers(struct daemon *d,
                                       const struct conf *old,
                                       const struct conf *fresh)
{
    for (size_t i = 0; i < fresh->npeers; i++) {
        const struct conf_peer *p = &fresh->peers[i];
        const struct conf_peer *q = peers_find(old, p->domain);
        if (q == NULL) {
            continue;
        }
        char *a = peers_spec(p), *b = peers_spec(q);
        bool changed = a == NULL || b == NULL || strcmp(a, b) != 0;
        if (a != NULL) {
            explicit_bzero(a, strlen(a)); /* secrets */
        }
        if (b != NULL) {
            explicit_bzero(b, strlen(b));
        }
        free(a);
        free(b);
        if (changed) {
            s2s_peer_reset(d->s2s, p->domain);
        }
    }
}

/* Puts fresh (consumed) in force. */
static void daemon_reload_commit(struct daemon *d, struct conf *fresh)
{
    log_setup(fresh->log_level, fresh->log_syslog, "fedgate");
    /* The old config stays alive until the links hold copies of what they
     * need from the new one. */
    struct conf *old = d->cfg;
    d->cfg = fresh;
    int rc = daemon_apply(d, fresh);
    if (rc == 0) {
        daemon_reset_changed_peers(d, old, fresh);
    }
    if (rc != 0) {
        log_error("reload of %s: applying failed: %s", fresh->path,
                  err_str(rc));
    } else {
        log_info("configuration applied (%s): %zu peer(s)", fresh->path,
                 fresh->npeers);
    }
    conf_free(old);
}

static void daemon_reload(struct daemon *d)
{
    char *errors = NULL;
    struct conf *fresh = NULL;
    int rc = daemon_reload_load(d, &fresh, &errors);
    if (rc != 0) {
        log_error("reload of %s failed; keeping the running configuration%s",
                  d->cfg->path, rc == ERR_NOMEM ? ": out of memory" : "");
        for (char *line = errors; line != NULL && *line != '\0';) {
            char *nl = strchr(line, '\n');
            if (nl != NULL) {
                *nl = '\0';
            }
            log_error("%s", line);
            line = nl != NULL ? nl + 1 : NULL;
        }
        free(errors);
        return;
    }
    free(errors);
    /* this file is newer than one an admin's reload left pending */
    loop_timer_cancel(d->loop, d->apply_timer);
    d->apply_timer = NULL;
    conf_free(d->pending);
    d->pending = NULL;
    daemon_reload_commit(d, fresh); /* transferred */
}

/* ---- administration (XEP-0050 commands through struct xep_admin_ops) -- */

static unsigned long long daemon_admin_now(void *ud)
{
    struct daemon *d = ud;
    return loop_now_ms(d->loop);
}

/* The number of routes towards domain. */
static size_t daemon_routes_to(const struct daemon *d, const char *domain)
{
    size_t n = 0;
    for (size_t i = 0; i < s2s_route_count(d->s2s); i++) {
        struct s2s_route_info ri;
        s2s_route_info(d->s2s, i, &ri);
        n += ri.remote != NULL && strcmp(ri.remote, domain) == 0 ? 1 : 0;
    }
    return n;
}

/* One entry per configured peer without a route, one per route else. */
static size_t daemon_admin_peer_count(void *ud)
{
    struct daemon *d = ud;
    size_t n = 0;
    for (size_t i = 0; i < d->cfg->npeers; i++) {
        size_t r = daemon_routes_to(d, d->cfg->peers[i].domain);
        n += r > 0 ? r : 1;
    }
    return n;
}

static const char *daemon_auth_name(enum conf_auth a)
{
    switch (a) {
    case CONF_AUTH_CERTIFICATE:
        return "certificate";
    case CONF_AUTH_DIALBACK:
        return "dialback";
    default:
        return "certificate, else dialback";
    }
}

static const char *daemon_home_link(const struct daemon *d, const char *domain)
{
    for (size_t i = 0; i < upstream_count(d->up); i++) {
        struct upstream_link_info li;
        upstream_info(d->up, i, &li);
        if (li.domain != NULL && strcmp(li.domain, domain) == 0) {
            return upstream_state_name(li.state);
        }
    }
    return "none";
}

static int
daemon_admin_peer_status(void *ud, size_t i, struct xep_peer_status *out)
{
    struct daemon *d = ud;
    memset(out, 0, sizeof(*out));
    for (size_t p = 0; p < d->cfg->npeers; p++) {
        const struct conf_peer *peer = &d->cfg->peers[p];
        size_t nr = daemon_routes_to(d, peer->domain);
        size_t entries = nr > 0 ? nr : 1;
        if (i >= entries) {
            i -= entries;
            continue;
        }
        bool inbound = s2s_inbound_from(d->s2s, peer->domain) > 0;
        bool outbound = false;
        out->domain = peer->domain;
        out->auth = daemon_auth_name(peer->auth);
        out->home_link = daemon_home_link(d, peer->domain);
        out->state = "no route";
        for (size_t k = 0; nr > 0 && k < s2s_route_count(d->s2s); k++) {
            struct s2s_route_info ri;
            s2s_route_info(d->s2s, k, &ri);
            if (ri.remote == NULL || strcmp(ri.remote, peer->domain) != 0) {
                continue;
            }
            if (i-- > 0) {
                continue;
            }
            out->local = ri.local;
            out->state = ri.state;
            out->route_auth = ri.auth;
            out->tls_version = ri.tls_version;
            out->tls_cipher = ri.tls_cipher;
            out->peer_subject = ri.peer_subject;
            out->peer_not_after = (long long)ri.peer_not_after;
            out->stanzas_out = ri.stanzas_out;
            out->bytes_out = ri.bytes_out;
            out->stanzas_in = ri.stanzas_in;
            out->bytes_in = ri.bytes_in;
            out->connected_since = (long long)ri.ready_since;
            out->queued = ri.queued;
            /* the current attempt's error, else the last failure */
            out->last_error =
                ri.last_error != NULL ? ri.last_error : ri.last_failure;
            out->last_failure_at = (long long)ri.last_failure_at;
            outbound = strcmp(ri.state, "ready") == 0;
            break;
        }
        if (s2s_is_blocked(d->s2s, peer->domain)) {
            out->state = "blocked";
        }
        out->direction = outbound && inbound ? "both"
                         : outbound          ? "outbound"
                         : inbound           ? "inbound"
                                             : "none";
        return 0;
    }
    return ERR_NOT_FOUND;
}

/* Totals of stanzas in and out over every route. */
static void
daemon_totals(const struct daemon *d, unsigned long *in, unsigned long *out)
{
    *in = *out = 0;
    for (size_t i = 0; i < s2s_route_count(d->s2s); i++) {
        struct s2s_route_info ri;
        s2s_route_info(d->s2s, i, &ri);
        *in += ri.stanzas_in;
        *out += ri.stanzas_out;
    }
}

static void daemon_on_sample(struct loop *loop, void *ud)
{
    struct daemon *d = ud;
    struct daemon_sample *s = &d->samples[d->head];
    s->ms = loop_now_ms(loop);
    daemon_totals(d, &s->in, &s->out);
    d->head = (d->head + 1) % DAEMON_SAMPLES;
    if (d->nsamples < DAEMON_SAMPLES) {
        d->nsamples++;
    }
    d->sample_timer =
        loop_timer_add(loop, DAEMON_SAMPLE_MS, daemon_on_sample, d);
}

/* Stanzas per second in and out since the oldest sample (a minute ago
 * at most). Counters of routes that went away make a rate low, never
 * negative. */
static void daemon_rates(const struct daemon *d, struct xep_stats *out)
{
    if (d->nsamples == 0) {
        return;
    }
    const struct daemon_sample *old =
        &d->samples[(d->head + DAEMON_SAMPLES - d->nsamples) % DAEMON_SAMPLES];
    uint64_t now = loop_now_ms(d->loop);
    double secs = (double)(now - old->ms) / 1000.0;
    if (secs < 1.0) {
        return;
    }
    out->rate_in = out->stanzas_in > old->in
                       ? (double)(out->stanzas_in - old->in) / secs
                       : 0.0;
    out->rate_out = out->stanzas_out > old->out
                        ? (double)(out->stanzas_out - old->out) / secs
                        : 0.0;
}

static void daemon_admin_stats(void *ud, struct xep_stats *out)
{
    struct daemon *d = ud;
    memset(out, 0, sizeof(*out));
    out->uptime_s =
        (unsigned long)((loop_now_ms(d->loop) - d->started_ms) / 1000u);
    out->links_total = upstream_count(d->up);
    for (size_t i = 0; i < upstream_count(d->up); i++) {
        struct upstream_link_info li;
        upstream_info(d->up, i, &li);
        out->links_up += li.state == UPSTREAM_READY ? 1 : 0;
    }
    out->routes_total = s2s_route_count(d->s2s);
    for (size_t i = 0; i < s2s_route_count(d->s2s); i++) {
        struct s2s_route_info ri;
        s2s_route_info(d->s2s, i, &ri);
        size_t k = 0;
        while (k < out->nroutes_by_state &&
               strcmp(out->routes_by_state[k].name, ri.state) != 0) {
            k++;
        }
        if (k == out->nroutes_by_state && k < XEP_STATS_MAX) {
            out->routes_by_state[k].name = ri.state;
            out->nroutes_by_state++;
        }
        if (k < XEP_STATS_MAX) {
            out->routes_by_state[k].count++;
        }
    }
    out->inbound = s2s_inbound_count(d->s2s);
    daemon_totals(d, &out->stanzas_in, &out->stanzas_out);
    daemon_rates(d, out);
    out->bounces = d->bounces;
    struct s2s_stats ss;
    s2s_stats(d->s2s, &ss);
    for (size_t i = 0; i < S2S_AUTHFAIL_COUNT && i < XEP_STATS_MAX; i++) {
        out->auth_failures += ss.auth_failures[i];
        out->auth_failures_by_reason[i].name =
            s2s_auth_failure_name((enum s2s_auth_failure)i);
        out->auth_failures_by_reason[i].count = ss.auth_failures[i];
        out->nauth_failures_by_reason++;
    }
}

static int daemon_admin_set_log_level(void *ud, const char *name)
{
    (void)ud;
    enum log_level level;
    if (name == NULL || log_level_parse(name, &level) != 0) {
        return ERR_INVAL;
    }
    log_set_level(level);
    /* at error level too: an admin changed what the log will show */
    log_error("log level set to %s by an administrator", name);
    return 0;
}

static const char *daemon_admin_log_level(void *ud)
{
    (void)ud;
    return log_level_name(log_get_level());
}

static void daemon_apply_pending(struct loop *loop, void *ud)
{
    (void)loop;
    struct daemon *d = ud;
    struct conf *fresh = d->pending;
    d->apply_timer = NULL;
    d->pending = NULL;
    if (fresh != NULL && !d->stopping) {
        daemon_reload_commit(d, fresh); /* transferred */
    } else {
        conf_free(fresh);
    }
}

static int daemon_admin_reload(void *ud, char *msg, size_t msglen)
{
    struct daemon *d = ud;
    char *errors = NULL;
    struct conf *fresh = NULL;
    log_info("reload of %s asked for by an administrator", d->cfg->path);
    int rc = daemon_reload_load(d, &fresh, &errors);
    if (rc != 0) {
        snprintf(msg, msglen, "%s",
                 errors != NULL && errors[0] != '\0' ? errors : err_str(rc));
        log_error("reload of %s failed; keeping the running configuration",
                  d->cfg->path);
        free(errors);
        return rc == ERR_NOMEM ? rc : ERR_CONFIG;
    }
    free(errors);
    size_t npeers = fresh->npeers, nadmins = fresh->nadmins;
    if (daemon_schedule_apply(d, fresh) != 0) { /* transferred */
        snprintf(msg, msglen, "out of memory");
        return ERR_NOMEM;
    }
    snprintf(msg, msglen, "%s: %zu peer(s), %zu admin(s); applied now",
             d->cfg->path, npeers, nadmins);
    return 0;
}

int daemon_schedule_apply(struct daemon *d, struct conf *cfg)
{
    if (d->apply_timer == NULL) {
        d->apply_timer = loop_timer_add(d->loop, 0, daemon_apply_pending, d);
        if (d->apply_timer == NULL) {
            conf_free(cfg);
            return ERR_NOMEM;
        }
    }
    conf_free(d->pending);
    d->pending = cfg; /* transferred */
    return 0;
}

const struct conf *daemon_latest_conf(const struct daemon *d)
{
    return d->pending != NULL ? d->pending : d->cfg;
}

static int daemon_admin_snippet(void *ud, const char *kind, char **out)
{
    struct daemon *d = ud;
    size_t len = 0;
    *out = NULL;
    FILE *f = open_memstream(out, &len);
    if (f == NULL) {
        return ERR_NOMEM;
    }
    int rc = conf_print_server(d->cfg, kind, f);
    if (fclose(f) != 0 && rc == 0) {
        rc = ERR_NOMEM;
    }
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* True when domain is fedgate's service JID or one of its domains. */
static bool daemon_own_domain(const struct daemon *d, const char *domain)
{
    if (strcmp(d->cfg->service_jid, domain) == 0) {
        return true;
    }
    for (size_t i = 0; i < d->cfg->ndomains; i++) {
        if (strcmp(d->cfg->domains[i], domain) == 0) {
            return true;
        }
    }
    return false;
}

static int daemon_admin_block(void *ud,
                              const char *domain,
                              const char *who,
                              char *msg,
                              size_t msglen)
{
    struct daemon *d = ud;
    char *norm = NULL;
    int rc = jid_domain_normalize(domain, &norm);
    if (rc != 0) {
        snprintf(msg, msglen, "%s is not a domain", domain);
        goto out;
    }
    if (daemon_own_domain(d, norm)) {
        snprintf(msg, msglen, "%s is one of fedgate's own domains", norm);
        rc = ERR_INVAL;
        goto out;
    }
    rc = store_block(d->store, norm, who, (long long)time(NULL));
    if (rc != 0) {
        snprintf(msg, msglen,
                 "%s not blocked: state_db cannot be written "
                 "(see the log)",
                 norm);
        goto out;
    }
    rc = s2s_block(d->s2s, norm);
    if (rc != 0) {
        log_error("blocking %s: %s", norm, err_str(rc));
        snprintf(msg, msglen, "%s stored as blocked, but not applied: %s", norm,
                 err_str(rc));
        goto out;
    }
    log_warn("domain %s blocked by %s", norm, who);
    snprintf(msg, msglen,
             "%s is blocked: its streams are closed and its queued stanzas "
             "bounced.",
             norm);
out:
    free(norm);
    return rc;
}

static int daemon_admin_unblock(void *ud,
                                const char *domain,
                                const char *who,
                                char *msg,
                                size_t msglen)
{
    struct daemon *d = ud;
    int rc = store_unblock(d->store, domain, who, (long long)time(NULL));
    if (rc == ERR_NOT_FOUND) {
        snprintf(msg, msglen, "%s is not blocked.", domain);
        return ERR_NOT_FOUND;
    }
    if (rc != 0) {
        snprintf(msg, msglen,
                 "%s not unblocked: state_db cannot be written "
                 "(see the log)",
                 domain);
        return rc;
    }
    (void)s2s_unblock(d->s2s, domain);
    log_warn("domain %s unblocked by %s", domain, who);
    snprintf(msg, msglen,
             "%s is no longer blocked: the peer policy applies "
             "again.",
             domain);
    return 0;
}

static size_t daemon_admin_blocked_count(void *ud)
{
    struct daemon *d = ud;
    return s2s_blocked_count(d->s2s);
}

static const char *daemon_admin_blocked_domain(void *ud, size_t i)
{
    struct daemon *d = ud;
    return s2s_blocked_domain(d->s2s, i);
}

/* True when the route (local, remote) exists. */
static bool
daemon_has_route(const struct daemon *d, const char *local, const char *remote)
{
    for (size_t i = 0; i < s2s_route_count(d->s2s); i++) {
        struct s2s_route_info ri;
        s2s_route_info(d->s2s, i, &ri);
        if (strcmp(ri.local, local) == 0 && strcmp(ri.remote, remote) == 0) {
            return true;
        }
    }
    return false;
}

/* Disconnect (retry false) or retry the route, audited first. */
static int daemon_admin_route(struct daemon *d,
                              bool retry,
                              const char *local,
                              const char *remote,
                              const char *who,
                              char *msg,
                              size_t msglen)
{
    char what[600];
    if (!daemon_has_route(d, local, remote)) {
        snprintf(msg, msglen, "There is no route %s -> %s.", local, remote);
        return ERR_NOT_FOUND;
    }
    if (retry && s2s_is_blocked(d->s2s, remote)) {
        snprintf(msg, msglen, "%s is blocked: unblock it first.", remote);
        return ERR_AUTH;
    }
    snprintf(what, sizeof(what), "%s %s -> %s", retry ? "retry" : "disconnect",
             local, remote);
    int rc = store_audit(d->store, who, what, (long long)time(NULL));
    if (rc != 0) {
        snprintf(msg, msglen,
                 "Not done: the audit log cannot be written "
                 "(see the log).");
        return rc;
    }
    rc = retry ? s2s_route_retry(d->s2s, local, remote)
               : s2s_route_disconnect(d->s2s, local, remote);
    if (rc == ERR_AGAIN) {
        snprintf(msg, msglen,
                 "Route %s -> %s is connecting or connected "
                 "already.",
                 local, remote);
        return rc;
    }
    if (rc != 0) {
        snprintf(msg, msglen, "Route %s -> %s: %s", local, remote, err_str(rc));
        return rc;
    }
    log_info("route %s -> %s %s by %s", local, remote,
             retry ? "retried" : "disconnected", who);
    snprintf(msg, msglen,
             retry ? "Route %s -> %s is connecting now."
                   : "Route %s -> %s is disconnected; queued stanzas stay "
                     "queued and the next stanza reconnects it.",
             local, remote);
    return 0;
}

static int daemon_admin_disconnect(void *ud,
                                   const char *local,
                                   const char *remote,
                                   const char *who,
                                   char *msg,
                                   size_t msglen)
{
    return daemon_admin_route(ud, false, local, remote, who, msg, msglen);
}

static int daemon_admin_retry(void *ud,
                              const char *local,
                              const char *remote,
                              const char *who,
                              char *msg,
                              size_t msglen)
{
    return daemon_admin_route(ud, true, local, remote, who, msg, msglen);
}

/* Applies one stored block at start. */
static int
daemon_load_block(void *ud, const char *domain, const char *who, long long at)
{
    struct daemon *d = ud;
    int rc = s2s_block(d->s2s, domain);
    if (rc != 0) {
        log_error("state_db: cannot apply the block of %s: %s", domain,
                  err_str(rc));
        return rc;
    }
    log_info("state_db: %s is blocked (by %s at %lld)", domain, who, at);
    return 0;
}

static void daemon_on_stopped(void *ud)
{
    struct daemon *d = ud;
    if (--d->pending_stops > 0) {
        return;
    }
    log_info("all streams closed; exiting");
    loop_stop(d->loop);
}

/* What an admin asks first: which streams and routes are up, and if not,
 * why. */
static void daemon_log_status(const struct daemon *d)
{
    size_t n = upstream_count(d->up);
    log_info("status: %zu home-server stream(s), %zu s2s route(s), %zu "
             "inbound s2s connection(s)",
             n, s2s_route_count(d->s2s), s2s_inbound_count(d->s2s));
    for (size_t i = 0; i < n; i++) {
        struct upstream_link_info li;
        upstream_info(d->up, i, &li);
        log_info("status: upstream %s: %s, %u connect(s), %zu queued%s%s",
                 li.domain, upstream_state_name(li.state), li.connects,
                 li.queued, li.last_error != NULL ? ", last error: " : "",
                 li.last_error != NULL ? li.last_error : "");
    }
    for (size_t i = 0; i < s2s_route_count(d->s2s); i++) {
        struct s2s_route_info ri;
        s2s_route_info(d->s2s, i, &ri);
        log_info(
            "status: route %s -> %s: %s, auth %s, %s %s, peer %s, "
            "%lu stanza(s) out, %zu queued%s%s",
            ri.local, ri.remote, ri.state, ri.auth != NULL ? ri.auth : "none",
            ri.tls_version != NULL ? ri.tls_version : "no TLS",
            ri.tls_cipher != NULL ? ri.tls_cipher : "",
            ri.peer_subject != NULL ? ri.peer_subject : "-", ri.stanzas_out,
            ri.queued, ri.last_error != NULL ? ", last error: " : "",
            ri.last_error != NULL ? ri.last_error : "");
    }
}

static void daemon_on_signal(struct loop *loop, int signo, void *ud)
{
    struct daemon *d = ud;
    if (signo == SIGUSR1) {
        daemon_log_status(d);
        return;
    }
    if (signo == SIGHUP) {
        if (!d->stopping) {
            log_info("SIGHUP: reloading %s", d->cfg->path);
            daemon_reload(d);
        }
        return;
    }
    if (d->stopping) {
        log_warn("second %s: exiting now", strsignal(signo));
        loop_stop(loop);
        return;
    }
    log_info("%s: closing streams", strsignal(signo));
    d->stopping = true;
    daemon_peers_cancel_hooks(d);
    d->pending_stops = 2;
    s2s_shutdown(d->s2s, daemon_on_stopped, d);
    upstream_shutdown(d->up, daemon_on_stopped, d);
}

/* TLS context, resolver and the peering engine with its listeners. */
static int daemon_make_s2s(struct daemon *d, const struct conf *cfg)
{
    char err[256] = "";
    struct tls_identity *ids =
        calloc(cfg->ntls_domains + 1, sizeof(*ids)); /* + 1: never 0 */
    if (ids == NULL) {
        log_error("TLS: out of memory");
        return ERR_NOMEM;
    }
    for (size_t i = 0; i < cfg->ntls_domains; i++) {
        ids[i].domain = cfg->tls_domains[i].domain;
        ids[i].cert_file = cfg->tls_domains[i].certificate;
        ids[i].key_file = cfg->tls_domains[i].key;
    }
    struct tls_settings ts = {
        .cert_file = cfg->tls_cert,
        .key_file = cfg->tls_key,
        .ca_file = cfg->tls_ca,
        .ca_path = cfg->tls_ca_path,
        .ciphers = cfg->tls_ciphers,
        .identities = ids,
        .nidentities = cfg->ntls_domains,
    };
    d->tls = tls_ctx_new(&ts, err, sizeof(err));
    free(ids); /* tls_ctx_new copied what it needs */
    if (d->tls == NULL) {
        log_error("TLS: %s", err);
        return ERR_CONFIG;
    }
    struct dns_settings ds = {
        .forwarders = (const char *const *)cfg->dns_forwarders,
        .nforwarders = cfg->ndns_forwarders,
        .hosts_file = cfg->dns_hosts_file,
        .trust_anchor_file = cfg->dns_trust_anchor_file,
    };
    d->dns = dns_new(d->loop, &ds, err, sizeof(err));
    if (d->dns == NULL) {
        log_error("DNS: %s", err);
        return ERR_CONFIG;
    }
    struct s2s_callbacks scb = {
        .stanza = daemon_on_s2s_stanza,
        .undeliverable = daemon_on_s2s_undeliverable,
        .congestion = daemon_on_route_congestion,
    };
    d->s2s = s2s_new(d->loop, cfg, d->dns, d->tls, &scb, d, err, sizeof(err));
    if (d->s2s == NULL) {
        log_error("s2s: %s", err);
        return ERR_CONFIG;
    }
    return s2s_listen(d->s2s);
}

static int
daemon_admin_rotate(void *ud, const char *who, char *msg, size_t msglen)
{
    struct daemon *d = ud;
    int rc = store_audit(d->store, who, "rotate dialback secret",
                         (long long)time(NULL));
    if (rc != 0) {
        snprintf(msg, msglen,
                 "Not rotated: the audit log cannot be written "
                 "(see the log).");
        return rc;
    }
    rc = s2s_rotate_dialback_secret(d->s2s);
    if (rc != 0) {
        snprintf(msg, msglen, "Not rotated: %s.", err_str(rc));
        return rc;
    }
    log_warn("dialback secret rotated by %s", who);
    snprintf(msg, msglen,
             "The dialback secret is rotated: new keys use the new secret; "
             "keys under the previous one verify for ten more minutes.%s",
             d->cfg->s2s_dialback_secret != NULL
                 ? " The configured s2s.dialback_secret is overridden until "
                   "fedgate restarts."
                 : "");
    return 0;
}

static int daemon_admin_audit_log(
    void *ud,
    size_t n,
    int (*fn)(void *fnud, long long at, const char *who, const char *what),
    void *fnud)
{
    struct daemon *d = ud;
    return store_audit_last(d->store, n, fn, fnud);
}

int daemon_run(struct conf *cfg)
{
    struct daemon d = {.cfg = cfg};
    d.admin = (struct xep_admin_ops){
        .ud = &d,
        .now_ms = daemon_admin_now,
        .peer_count = daemon_admin_peer_count,
        .peer_status = daemon_admin_peer_status,
        .stats = daemon_admin_stats,
        .set_log_level = daemon_admin_set_log_level,
        .log_level = daemon_admin_log_level,
        .reload = daemon_admin_reload,
        .server_snippet = daemon_admin_snippet,
        .block_domain = daemon_admin_block,
        .unblock_domain = daemon_admin_unblock,
        .blocked_count = daemon_admin_blocked_count,
        .blocked_domain = daemon_admin_blocked_domain,
        .route_disconnect = daemon_admin_disconnect,
        .route_retry = daemon_admin_retry,
        .rotate_dialback_secret = daemon_admin_rotate,
        .audit_log = daemon_admin_audit_log,
        .configured_count = daemon_admin_configured_count,
        .configured_domain = daemon_admin_configured_domain,
        .peer_settings = daemon_admin_peer_settings,
        .peer_put = daemon_admin_peer_put,
        .peer_remove = daemon_admin_peer_remove,
    };
    struct upstream_settings s;
    int rc = ERR_NOMEM;
    static const int signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    struct sigaction ign;

    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL); /* write errors come back as EPIPE */

    log_setup(cfg->log_level, cfg->log_syslog, "fedgate");
    d.loop = loop_new();
    if (d.loop == NULL) {
        log_error("cannot create the event loop");
        rc = ERR_SYS;
        goto out;
    }
    d.started_ms = loop_now_ms(d.loop);
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        rc = loop_signal(d.loop, signals[i], daemon_on_signal, &d);
        if (rc != 0) {
            log_error("cannot watch signal %d: %s", signals[i], err_str(rc));
            goto out;
        }
    }
    char err[600] = "";
    rc = store_open(cfg->state_db, &d.store, err, sizeof(err));
    if (rc != 0) {
        log_error("%s", err);
        rc = ERR_CONFIG;
        goto out;
    }
    /* runtime peer changes lay over the file before anything uses it */
    rc = daemon_peers_overlay(&d, cfg);
    if (rc != 0) {
        log_error("start-up failed: cannot load the peers from %s: %s",
                  cfg->state_db, err_str(rc));
        goto out;
    }
    if (daemon_make_s2s(&d, cfg) != 0) {
        rc = ERR_CONFIG;
        goto out;
    }
    /* stored blocks override the file: applied before any stream opens */
    rc = store_blocks(d.store, daemon_load_block, &d);
    if (rc != 0) {
        log_error("start-up failed: cannot load the blocks from %s: %s",
                  cfg->state_db, err_str(rc));
        goto out;
    }
    daemon_settings(cfg, &s);
    struct upstream_callbacks ucb = {
        .stanza = daemon_on_stanza,
        .undeliverable = daemon_on_undeliverable,
        .congestion = daemon_on_congestion,
    };
    d.up = upstream_new(d.loop, &s, &ucb, &d);
    if (d.up == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    log_info("fedgate %s starting: service %s, %zu peer(s), home server "
             "%s:%u",
             PACKAGE_VERSION, cfg->service_jid, cfg->npeers, cfg->upstream_host,
             cfg->upstream_port);
    rc = daemon_apply(&d, cfg);
    if (rc != 0) {
        log_error("start-up failed: %s", err_str(rc));
        goto out;
    }
    daemon_on_sample(d.loop, &d); /* the first sample, then a timer */
    rc = loop_run(d.loop);
    if (rc != 0) {
        log_error("event loop failed: %s", err_str(rc));
    }
    log_info("stopped");
out:
    daemon_peers_cancel_hooks(&d);
    if (d.loop != NULL) {
        loop_timer_cancel(d.loop, d.apply_timer);
        loop_timer_cancel(d.loop, d.sample_timer);
    }
    conf_free(d.pending);
    upstream_free(d.up);
    s2s_free(d.s2s);
    store_free(d.store);
    dns_free(d.dns);
    tls_ctx_free(d.tls);
    service_free(d.svc);
    loop_free(d.loop);
    conf_free(d.cfg);
    return rc;
}
