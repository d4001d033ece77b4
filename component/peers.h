/*
 * peers.h: the peer list as the administrator changes it at run time.
 *
 * The effective peers are the config file's, then the changes stored in
 * state_db laid over them: a stored peer replaces the file's peer of the
 * same domain (or adds one), a stored removal hides the file's peer.
 * Every change is checked against the rest of the configuration exactly
 * like the file is: no domain used twice, a secret for every stream.
 */
#ifndef FEDGATE_PEERS_H
#define FEDGATE_PEERS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

/* The peer whose domain is domain, or NULL. */
const struct conf_peer *peers_find(const struct conf *cfg, const char *domain);

/*
 * Whether p may join cfg in place of the peer named replace (NULL: as a
 * new peer): p's domain and services are none of fedgate's own domains
 * and none of another peer's domains or services, and every stream of p
 * has a secret. 0, or ERR_INVAL with the reason in err.
 */
int peers_check(const struct conf *cfg,
                const struct conf_peer *p,
                const char *replace,
                char *err,
                size_t errlen);

/* Puts a copy of p in cfg in place of the peer named replace (or p's
 * domain), else at the end. 0 or ERR_NOMEM (cfg unchanged). */
int peers_put(struct conf *cfg, const struct conf_peer *p, const char *replace);

/* Removes the peer domain from cfg. 0 or ERR_NOT_FOUND. */
int peers_remove(struct conf *cfg, const char *domain);

/* One submitted value: key is a peer key of the config file ("domain",
 * "secret", "trusted", "tls_required", "auth", "trust_anchor", "host",
 * "port", "stanza_max") or "services" (domains, one per line or
 * separated by spaces or commas). An empty value means "not set". */
struct peers_field {
    const char *key;
    const char *value;
};

/*
 * Builds a peer from submitted values, checked as the file would be and
 * then against cfg (in place of current's domain when current is not
 * NULL). With current, an empty secret keeps current's secret and a
 * service that stays keeps its secret. 0 with *out filled (free with
 * conf_peer_clear); ERR_INVAL with the reason in err and the index of the
 * field at fault in *bad (n when no one field is); or ERR_NOMEM.
 */
int peers_from_fields(const struct conf *cfg,
                      const struct peers_field *fields,
                      size_t n,
                      const struct conf_peer *current,
                      struct conf_peer *out,
                      char *err,
                      size_t errlen,
                      size_t *bad);

/*
 * The peer's keys in the config file's syntax, secrets included (for
 * state_db): a new string, or NULL on ENOMEM.
 */
char *peers_spec(const struct conf_peer *p);

/*
 * Parses a stored spec for domain and checks it against cfg in place of
 * the peer of that domain. 0 with *out filled; ERR_INVAL with the reason
 * in err; ERR_NOMEM.
 */
int peers_from_spec(const struct conf *cfg,
                    const char *domain,
                    const char *spec,
                    struct conf_peer *out,
                    char *err,
                    size_t errlen);

#endif
