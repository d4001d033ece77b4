/*
 * dns_srv.h: SRV record parsing and RFC 2782 ordering, internal to dns.c.
 *
 * Exposed only so that test/check_dns.c can drive the ordering with a
 * deterministic random source; the rest of fedgate uses dns.h.
 */
#ifndef FEDGATE_DNS_SRV_H
#define FEDGATE_DNS_SRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"

struct dns_srv {
    uint16_t priority;
    uint16_t weight;
    uint16_t port;
    bool direct_tls;  /* set by dns_srv_targets: from _xmpps-server */
    bool secure;      /* set by dns_srv_targets: from a validated answer */
    char target[256]; /* lower case, no trailing dot; "" for "." */
};

/* What one SRV query (_xmpps-server or _xmpp-server) gave. */
enum dns_srv_status {
    DNS_SRV_RECORDS = 0, /* at least one usable record */
    DNS_SRV_NONE,        /* NXDOMAIN or no data */
    DNS_SRV_DOT,         /* a lone "." target: service decidedly not offered */
    DNS_SRV_FAILED,      /* resolver error, SERVFAIL or DNSSEC bogus */
};

struct dns_srv_answer {
    enum dns_srv_status status;
    const struct dns_srv *recs; /* borrowed; with DNS_SRV_RECORDS */
    size_t n;
    bool secure; /* DNSSEC-validated */
};

/* Uniform random number in [0, max]. */
typedef uint32_t dns_srv_rand_fn(void *ud, uint32_t max);

/*
 * Parses SRV rdata (uncompressed, as libunbound returns it) into out.
 * 0, or ERR_INVAL for truncated data or a target that is not a host name
 * (labels of letters, digits, '-' and '_').
 */
int dns_srv_parse(const unsigned char *rdata, size_t len, struct dns_srv *out);

/*
 * Sorts recs in place into the order to try: ascending priority, and
 * within one priority RFC 2782's weighted random selection (weight-0
 * records first in the list, each pick uniform in [0, sum of weights]).
 * rnd NULL uses the system's arc4random.
 */
void dns_srv_order(struct dns_srv *recs,
                   size_t n,
                   dns_srv_rand_fn *rnd,
                   void *rnd_ud);

/*
 * Turns the two answers into the targets to try (a new array in *out,
 * caller frees; *out NULL and *nout 0 on error). Both record sets are
 * ordered together, _xmpps-server ones flagged direct_tls (XEP-0368).
 * With no records: ERR_NOT_FOUND if _xmpp-server said "." (the plain
 * service, and with it the fallback, is declared unavailable; so also
 * when both said "."), ERR_SYS if a query failed, else the RFC 6120
 * fallback {domain, 5269, plain}. 0, ERR_NOT_FOUND, ERR_SYS, ERR_INVAL
 * (domain too long) or ERR_NOMEM.
 */
int dns_srv_targets(const char *domain,
                    const struct dns_srv_answer *xmpps,
                    const struct dns_srv_answer *xmpp,
                    dns_srv_rand_fn *rnd,
                    void *rnd_ud,
                    struct dns_target **out,
                    size_t *nout);

#endif
