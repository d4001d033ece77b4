/*
 * dns.h: asynchronous DNS for s2s with libunbound, in the one loop.
 *
 * The resolver runs in libunbound's thread mode; its fd sits in the
 * event loop and answers are delivered from the loop, never from another
 * thread. Settings: forwarders ("ip" or "ip@port"), a hosts file and a
 * DNSSEC trust anchor file; with no forwarders /etc/resolv.conf is used.
 * The RFC 6761 "test." zone is served like any other when forwarders are
 * set (tests use their own unbound).
 */
#ifndef FEDGATE_DNS_H
#define FEDGATE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct dns;
struct dns_query;

struct dns_settings {
    const char *const *forwarders;
    size_t nforwarders;
    const char *hosts_file;        /* or NULL */
    const char *trust_anchor_file; /* or NULL */
};

/* One place to connect to, in the order to try. */
struct dns_target {
    char host[256]; /* name without trailing dot */
    uint16_t port;
    bool direct_tls; /* from _xmpps-server: TLS from the first byte */
    bool secure;     /* the SRV answer was DNSSEC-validated */
};

/*
 * Called once per query with err 0 and the targets, or a negative code
 * (ERR_NOT_FOUND: the domain offers no s2s service, i.e. both SRV answers
 * are "."). targets is borrowed for the call.
 */
typedef void
dns_targets_fn(void *ud, int err, const struct dns_target *targets, size_t n);

struct dns_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};
typedef void dns_addrs_fn(void *ud,
                          int err,
                          const struct dns_addr *addrs,
                          size_t n,
                          bool secure);

/* Returns a resolver or NULL with the reason in err. */
struct dns *dns_new(struct loop *loop,
                    const struct dns_settings *s,
                    char *err,
                    size_t errlen);
void dns_free(struct dns *dns);

/*
 * Looks up _xmpps-server._tcp.DOMAIN and _xmpp-server._tcp.DOMAIN
 * (RFC 6120 3.2, XEP-0368), orders the union by priority and weighted
 * random choice within a priority (RFC 2782), and falls back to
 * DOMAIN:5269 (plain) when neither has records. *q (may be NULL) gets a
 * handle for dns_cancel. 0 or a negative code.
 */
int dns_resolve_s2s(struct dns *dns,
                    const char *domain,
                    dns_targets_fn *fn,
                    void *ud,
                    struct dns_query **q);

/* Looks up A and AAAA of host and fills in port. */
int dns_resolve_addrs(struct dns *dns,
                      const char *host,
                      uint16_t port,
                      dns_addrs_fn *fn,
                      void *ud,
                      struct dns_query **q);

/* Cancels a pending query: its callback never runs. Accepts NULL. */
void dns_cancel(struct dns *dns, struct dns_query *q);

#endif
