/*
 * store.h: fedgate's runtime state in SQLite (config key state_db).
 *
 * What an administrator changes at run time and must survive a restart:
 * blocked domains, and the audit log of every change (who, what, when).
 * The daemon owns the one store it opens at start; nothing else opens
 * one. Every call is synchronous: SQLite on a local file, a few rows per
 * admin action, never on a stanza's path.
 *
 * Tables:
 *   blocks(domain TEXT PRIMARY KEY, by TEXT, at INTEGER)
 *   audit(at INTEGER, who TEXT, what TEXT)
 *   peers(domain TEXT PRIMARY KEY, action TEXT, spec TEXT, at INTEGER):
 *       a peer added or changed at run time (action "put", spec its keys
 *       in the config file's syntax, conf_peer_print), or a peer of the
 *       config file removed at run time (action "remove", spec NULL)
 */
#ifndef FEDGATE_STORE_H
#define FEDGATE_STORE_H

#include <stddef.h>

struct store;

/*
 * Opens (creating if needed) the database at path and its tables. 0 with
 * the store in *out; or ERR_SYS with the reason, naming path, in err
 * (a missing or unwritable directory is reported here, at start).
 */
int store_open(const char *path, struct store **out, char *err, size_t errlen);

/* Closes the store. Accepts NULL. */
void store_free(struct store *st);

/*
 * Records domain as blocked by who at Unix time at, and appends
 * "block <domain>" to the audit log, in one transaction. Blocking a
 * blocked domain again updates by and at. 0 or ERR_SYS (logged).
 */
int store_block(struct store *st,
                const char *domain,
                const char *who,
                long long at);

/*
 * Removes domain's block and appends "unblock <domain>" to the audit
 * log, in one transaction. 0, ERR_NOT_FOUND when it was not blocked
 * (nothing written), or ERR_SYS (logged).
 */
int store_unblock(struct store *st,
                  const char *domain,
                  const char *who,
                  long long at);

/* Appends one audit row. 0 or ERR_SYS (logged). */
int store_audit(struct store *st,
                const char *who,
                const char *what,
                long long at);

/* Called once per blocked domain, in domain order; a non-zero return
 * stops the walk and is returned by store_blocks. Strings are borrowed
 * for the call. */
typedef int
store_block_fn(void *ud, const char *domain, const char *who, long long at);

/* Walks the blocked domains. 0, what fn returned, or ERR_SYS (logged). */
int store_blocks(struct store *st, store_block_fn *fn, void *ud);

/* Called once per audit row, oldest first. As for store_block_fn. */
typedef int
store_audit_fn(void *ud, long long at, const char *who, const char *what);

/* Walks the audit log. 0, what fn returned, or ERR_SYS (logged). */
int store_audit_rows(struct store *st, store_audit_fn *fn, void *ud);

/* The most rows store_audit_last walks, whatever n asks. */
#define STORE_AUDIT_LAST_MAX 1000

/*
 * Walks the newest n audit rows (at most STORE_AUDIT_LAST_MAX), newest
 * first. n 0 walks none. 0, what fn returned, or ERR_SYS (logged).
 */
int store_audit_last(struct store *st, size_t n, store_audit_fn *fn, void *ud);

/*
 * Stores a runtime peer change for domain: spec (a peer's keys, secrets
 * included) puts the peer, NULL records its removal; one row per domain,
 * the newest winning. Appends the audit row what, in one transaction.
 * 0 or ERR_SYS (logged).
 */
int store_peer_set(struct store *st,
                   const char *domain,
                   const char *spec,
                   const char *who,
                   const char *what,
                   long long at);

/* Drops domain's stored change (the config file's view applies again)
 * and appends the audit row what, in one transaction. 0 or ERR_SYS. */
int store_peer_forget(struct store *st,
                      const char *domain,
                      const char *who,
                      const char *what,
                      long long at);

/* Called once per stored peer change, in domain order: spec NULL for a
 * removal. Strings borrowed for the call. */
typedef int
store_peer_fn(void *ud, const char *domain, const char *spec, long long at);

/* Walks the stored peer changes. 0, what fn returned, or ERR_SYS. */
int store_peers(struct store *st, store_peer_fn *fn, void *ud);

#endif
