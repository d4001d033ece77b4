/*
 * daemon_priv.h: the daemon's state, shared by daemon.c (wiring, signals,
 * administration) and daemon_peers.c (peers changed at run time). Not
 * for any other module.
 */
#ifndef FEDGATE_DAEMON_PRIV_H
#define FEDGATE_DAEMON_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "log.h"
#include "xep.h"

struct daemon_hook_job;

#define DAEMON_SAMPLE_MS 10000u
#define DAEMON_SAMPLES   7 /* a minute of intervals */

struct daemon {
    struct loop *loop;
    struct conf *cfg;
    struct upstream *up;
    struct service *svc;
    struct dns *dns;
    struct tls_ctx *tls;
    struct s2s *s2s;
    struct store *store; /* state_db: blocks and the audit log */
    bool stopping;
    int pending_stops; /* subsystems still closing at shutdown */
    struct xep_admin_ops admin;
    uint64_t started_ms;
    unsigned long bounces;       /* undeliverable stanzas, both ways */
    struct log_limit bounce_log; /* lines about them */
    struct conf *pending;        /* a checked config the timer applies */
    struct loop_timer *apply_timer;
    struct daemon_hook_job *jobs; /* peer hooks running */
    /* totals every DAEMON_SAMPLE_MS, for the rates in the statistics */
    struct daemon_sample {
        uint64_t ms;
        unsigned long in, out;
    } samples[DAEMON_SAMPLES];
    size_t nsamples; /* filled, oldest at (head + DAEMON_SAMPLES - n) */
    size_t head;     /* the next slot */
    struct loop_timer *sample_timer;
};

/*
 * Puts cfg (consumed) in force from a timer, right after the current
 * callback: applying replaces the service, which may be the caller. A
 * config already waiting is replaced. 0 or ERR_NOMEM (cfg freed).
 */
int daemon_schedule_apply(struct daemon *d, struct conf *cfg);

/* The configuration the next change builds on: the one waiting to be
 * applied, else the running one. */
const struct conf *daemon_latest_conf(const struct daemon *d);

/* daemon_peers.c */

/* Lays the peer changes stored in state_db over cfg (a freshly loaded
 * file). A stored change that no longer fits is logged and skipped.
 * 0 or ERR_SYS / ERR_NOMEM. */
int daemon_peers_overlay(struct daemon *d, struct conf *cfg);

/* The admin operations for runtime peers. */
size_t daemon_admin_configured_count(void *ud);
const char *daemon_admin_configured_domain(void *ud, size_t i);
int daemon_admin_peer_settings(void *ud,
                               const char *domain,
                               struct xep_peer_settings *out);
int daemon_admin_peer_put(void *ud,
                          const struct xep_kv *fields,
                          size_t n,
                          bool edit,
                          const char *who,
                          xep_done_fn *done,
                          void *done_ud,
                          char *msg,
                          size_t msglen,
                          size_t *bad);
int daemon_admin_peer_remove(void *ud,
                             const char *domain,
                             const char *who,
                             xep_done_fn *done,
                             void *done_ud,
                             char *msg,
                             size_t msglen);

/* Stops the running hooks at shutdown; their admins are told. */
void daemon_peers_cancel_hooks(struct daemon *d);

#endif
