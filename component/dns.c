/*
 * dns.c: asynchronous DNS for s2s with libunbound, in the one loop.
 *
 * libunbound runs in thread mode (ub_ctx_async(ctx, 1)): a worker thread
 * does the network work and writes finished answers to a pipe whose read
 * end (ub_fd) the loop watches. Flow:
 *
 *   dns_resolve_*:  two ub_resolve_async sub-queries (SRV xmpps + xmpp, or
 *                   AAAA + A); the query waits on the pending list
 *   ub_fd readable: ub_process() runs our ub callback per answer, which
 *                   only stores the ub_result; a query with both answers
 *                   moves to the ready list
 *   after ub_process returns: the ready list is delivered, one user
 *                   callback per query, then the query is freed
 *
 * Delivering only after ub_process returns means a user callback may call
 * dns_cancel, dns_resolve_* or dns_free freely: libunbound is never
 * re-entered from inside its own processing. An answer that is known at
 * once (an IP literal, or libunbound calling back from within
 * ub_resolve_async) goes to the ready list and a 0 ms timer delivers it,
 * so no callback ever runs inside dns_resolve_*.
 *
 * Cancelled queries: ub_cancel stops libunbound from calling back (in
 * thread mode it drops the answer when it arrives), and a query already
 * on the ready list is just taken off it.
 */
#include "config.h"

#include "dns.h"

#include "dns_srv.h"
#include "err.h"
#include "log.h"
#include "loop.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#define DNS_NAME_MAX       253
#define DNS_TYPE_A         1
#define DNS_TYPE_AAAA      28
#define DNS_TYPE_SRV       33
#define DNS_CLASS_IN       1
#define DNS_RCODE_NXDOMAIN 3
#define DNS_S2S_PORT       5269
/* SRV records read from one answer: real domains publish a handful, and
 * the ordering is quadratic, so a hostile answer with thousands is cut */
#define DNS_SRV_MAX 64

enum dns_kind {
    DNS_KIND_S2S,
    DNS_KIND_ADDRS,
};

struct dns_query;

/* One list of queries, first to last. */
struct dns_list {
    struct dns_query *first;
    struct dns_query *last;
};

/* One ub_resolve_async call. */
struct dns_sub {
    struct dns_query *q;
    int id;
    bool pending;          /* submitted, no answer yet */
    int ub_err;            /* libunbound's error code for the answer */
    struct ub_result *res; /* owned once answered */
};

struct dns_query {
    struct dns *dns;
    enum dns_kind kind;
    char name[DNS_NAME_MAX + 1]; /* domain (s2s) or host (addrs) */
    uint16_t port;               /* addrs */
    dns_targets_fn *targets_fn;
    dns_addrs_fn *addrs_fn;
    void *ud;
    /* s2s: [0] _xmpps-server, [1] _xmpp-server; addrs: [0] AAAA, [1] A */
    struct dns_sub sub[2];
    bool literal; /* addrs for an IP literal: the answer is lit_addr */
    struct dns_addr lit_addr;
    bool delivering;       /* its callback is running */
    struct dns_list *list; /* the list it is on, or NULL */
    struct dns_query *prev;
    struct dns_query *next;
};

struct dns {
    struct loop *loop;
    struct ub_ctx *ctx;
    int fd; /* ub_fd, watched; -1 when not */
    struct dns_list pending;
    struct dns_list ready;
    struct loop_timer *kick; /* delivers answers known at once */
    bool in_process;         /* inside ub_process */
    unsigned delivering;     /* inside user callbacks */
    bool free_requested;     /* dns_free called from a callback */
};

/* ---- SRV parsing and ordering (dns_srv.h) ------------------------------- */

static bool dns_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int dns_srv_parse(const unsigned char *rdata, size_t len, struct dns_srv *out)
{
    memset(out, 0, sizeof(*out));
    if (rdata == NULL || len < 7) {
        return ERR_INVAL;
    }
    out->priority = (uint16_t)(rdata[0] << 8 | rdata[1]);
    out->weight = (uint16_t)(rdata[2] << 8 | rdata[3]);
    out->port = (uint16_t)(rdata[4] << 8 | rdata[5]);
    size_t pos = 6;
    size_t o = 0;
    for (;;) {
        if (pos >= len) {
            goto bad;
        }
        size_t label = rdata[pos++];
        if (label == 0) {
            break;
        }
        /* libunbound hands out uncompressed names: a compression
         * pointer (0xC0) or a label over 63 octets is malformed here */
        if (label > 63 || label > len - pos) {
            goto bad;
        }
        /* the dot before the label and the label itself, plus the NUL */
        if (o + (o > 0 ? 1 : 0) + label + 1 > DNS_NAME_MAX + 1) {
            goto bad;
        }
        if (o > 0) {
            out->target[o++] = '.';
        }
        for (size_t i = 0; i < label; i++) {
            unsigned char c = rdata[pos + i];
            if (!dns_host_char(c)) {
                goto bad;
            }
            out->target[o++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        pos += label;
    }
    if (pos != len) {
        goto bad;
    }
    out->target[o] = '\0';
    return 0;
bad:
    memset(out, 0, sizeof(*out));
    return ERR_INVAL;
}

static uint32_t dns_default_rand(void *ud, uint32_t max)
{
    if (max == UINT32_MAX) {
        return arc4random();
    }
    return arc4random_uniform(max + 1);
}

/*
 * RFC 2782 within one priority, recs[0..n): move the weight-0 records to
 * the front (keeping their order), then repeatedly pick r uniform in
 * [0, sum of the remaining weights] and take the first record whose
 * running sum reaches r. A weight-0 record is thus taken only when r is 0
 * or every remaining weight is 0, as the RFC intends.
 */
static void dns_srv_order_group(struct dns_srv *recs,
                                size_t n,
                                dns_srv_rand_fn *rnd,
                                void *rnd_ud)
{
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].weight == 0) {
            struct dns_srv tmp = recs[i];
            memmove(&recs[zeros + 1], &recs[zeros],
                    (i - zeros) * sizeof(*recs));
            recs[zeros++] = tmp;
        }
    }
    for (size_t done = 0; done + 1 < n; done++) {
        /* at most 65535 * n: n is bounded by a DNS message (< 2^14) */
        uint32_t sum = 0;
        for (size_t i = done; i < n; i++) {
            sum += recs[i].weight;
        }
        uint32_t r = rnd(rnd_ud, sum);
        uint32_t running = 0;
        size_t pick = n - 1;
        for (size_t i = done; i < n; i++) {
            running += recs[i].weight;
            if (running >= r) {
                pick = i;
                break;
            }
        }
        /* keep the rest in their order: the zero-weight ones stay first */
        struct dns_srv tmp = recs[pick];
        memmove(&recs[done + 1], &recs[done], (pick - done) * sizeof(*recs));
        recs[done] = tmp;
    }
}

void dns_srv_order(struct dns_srv *recs,
                   size_t n,
                   dns_srv_rand_fn *rnd,
                   void *rnd_ud)
{
    if (recs == NULL || n == 0) {
        return;
    }
    if (rnd == NULL) {
        rnd = dns_default_rand;
    }
    /* stable insertion sort by priority: answers hold a handful of
     * records, and stability keeps the answer order among weight-0 ones */
    for (size_t i = 1; i < n; i++) {
        struct dns_srv tmp = recs[i];
        size_t j = i;
        while (j > 0 && recs[j - 1].priority > tmp.priority) {
            recs[j] = recs[j - 1];
            j--;
        }
        recs[j] = tmp;
    }
    size_t start = 0;
    while (start < n) {
        size_t end = start + 1;
        while (end < n && recs[end].priority == recs[start].priority) {
            end++;
        }
        dns_srv_order_group(recs + start, end - start, rnd, rnd_ud);
        start = end;
    }
}

int dns_srv_targets(const char *domain,
                    const struct dns_srv_answer *xmpps,
                    const struct dns_srv_answer *xmpp,
                    dns_srv_rand_fn *rnd,
                    void *rnd_ud,
                    struct dns_target **out,
                    size_t *nout)
{
    const struct dns_srv_answer *ans[2] = {xmpps, xmpp};
    struct dns_srv *all = NULL;
    struct dns_target *t = NULL;
    size_t n = 0;
    int rc = 0;

    *out = NULL;
    *nout = 0;
    if (domain == NULL || strlen(domain) > DNS_NAME_MAX) {
        return ERR_INVAL;
    }
    for (size_t a = 0; a < 2; a++) {
        if (ans[a]->status == DNS_SRV_RECORDS) {
            n += ans[a]->n;
        }
    }
    if (n == 0) {
        if (xmpp->status == DNS_SRV_DOT) {
            return ERR_NOT_FOUND;
        }
        if (xmpps->status == DNS_SRV_FAILED || xmpp->status == DNS_SRV_FAILED) {
            return ERR_SYS;
        }
        t = calloc(1, sizeof(*t));
        if (t == NULL) {
            return ERR_NOMEM;
        }
        snprintf(t->host, sizeof(t->host), "%s", domain);
        t->port = DNS_S2S_PORT;
        *out = t;
        *nout = 1;
        return 0;
    }
    all = calloc(n, sizeof(*all));
    t = calloc(n, sizeof(*t));
    if (all == NULL || t == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t a = 0; a < 2; a++) {
        if (ans[a]->status != DNS_SRV_RECORDS) {
            continue;
        }
        for (size_t i = 0; i < ans[a]->n; i++) {
            all[k] = ans[a]->recs[i];
            all[k].direct_tls = a == 0;
            all[k].secure = ans[a]->secure;
            k++;
        }
    }
    dns_srv_order(all, n, rnd, rnd_ud);
    for (size_t i = 0; i < n; i++) {
        snprintf(t[i].host, sizeof(t[i].host), "%s", all[i].target);
        t[i].port = all[i].port;
        t[i].direct_tls = all[i].direct_tls;
        t[i].secure = all[i].secure;
    }
    *out = t;
    *nout = n;
    t = NULL; /* transferred */
out:
    free(all);
    free(t);
    return rc;
}

/* ---- query lists -------------------------------------------------------- */

static void dns_list_append(struct dns_list *l, struct dns_query *q)
{
    q->list = l;
    q->next = NULL;
    q->prev = l->last;
    if (l->last != NULL) {
        l->last->next = q;
    } else {
        l->first = q;
    }
    l->last = q;
}

static void dns_list_remove(struct dns_query *q)
{
    struct dns_list *l = q->list;
    if (l == NULL) {
        return;
    }
    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        l->first = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    } else {
        l->last = q->prev;
    }
    q->list = NULL;
    q->prev = NULL;
    q->next = NULL;
}

/* Cancels what libunbound still works on and frees the query. The query
 * must be off every list. */
static void dns_query_free(struct dns_query *q)
{
    if (q == NULL) {
        return;
    }
    for (size_t i = 0; i < 2; i++) {
        struct dns_sub *s = &q->sub[i];
        if (s->pending && q->dns->ctx != NULL) {
            int r = ub_cancel(q->dns->ctx, s->id);
            if (r != 0) {
                log_conn(LOG_LEVEL_DEBUG, "dns", "cancelling %s: %s", q->name,
                         ub_strerror(r));
            }
        }
        ub_resolve_free(s->res);
    }
    free(q);
}

/* ---- delivery ----------------------------------------------------------- */

static void dns_destroy(struct dns *dns);

static void dns_on_kick(struct loop *loop, void *ud);

static int dns_arm_kick(struct dns *dns)
{
    if (dns->kick != NULL) {
        return 0;
    }
    dns->kick = loop_timer_add(dns->loop, 0, dns_on_kick, dns);
    return dns->kick != NULL ? 0 : ERR_NOMEM;
}

/* What went wrong with an answer, for the log; NULL if it is usable. */
static const char *
dns_sub_problem(const struct dns_sub *s, char *tmp, size_t tmplen)
{
    if (s->ub_err != 0) {
        return ub_strerror(s->ub_err);
    }
    if (s->res == NULL) {
        return "no result";
    }
    if (s->res->bogus) {
        snprintf(tmp, tmplen, "DNSSEC bogus: %s",
                 s->res->why_bogus != NULL ? s->res->why_bogus : "?");
        return tmp;
    }
    if (s->res->rcode != 0 && s->res->rcode != DNS_RCODE_NXDOMAIN) {
        snprintf(tmp, tmplen, "rcode %d", s->res->rcode);
        return tmp;
    }
    return NULL;
}

/*
 * Reads one SRV answer into ans, with its records in recs (room for
 * res->data entries). A lone "." record makes DNS_SRV_DOT; a "." among
 * other records is ignored (RFC 2782 defines "." only as the single
 * record).
 */
static int dns_srv_read(const struct dns_query *q,
                        const struct dns_sub *s,
                        const char *label,
                        struct dns_srv_answer *ans,
                        struct dns_srv **recs_out)
{
    char tmp[300];
    struct dns_srv *recs = NULL;

    memset(ans, 0, sizeof(*ans));
    *recs_out = NULL;
    const char *problem = dns_sub_problem(s, tmp, sizeof(tmp));
    if (problem != NULL) {
        log_conn(LOG_LEVEL_WARN, "dns", "SRV %s.%s failed: %s", label, q->name,
                 problem);
        ans->status = DNS_SRV_FAILED;
        return 0;
    }
    if (s->res->nxdomain || !s->res->havedata) {
        ans->status = DNS_SRV_NONE;
        ans->secure = s->res->secure != 0;
        return 0;
    }
    size_t total = 0;
    while (s->res->data[total] != NULL) {
        total++;
    }
    if (total > DNS_SRV_MAX) {
        log_conn(LOG_LEVEL_WARN, "dns", "SRV %s.%s: %zu records, using %d",
                 label, q->name, total, DNS_SRV_MAX);
        total = DNS_SRV_MAX;
    }
    recs = calloc(total, sizeof(*recs));
    if (recs == NULL) {
        return ERR_NOMEM;
    }
    size_t n = 0;
    size_t dots = 0;
    size_t bad = 0;
    for (size_t i = 0; i < total; i++) {
        if (s->res->len[i] < 0 ||
            dns_srv_parse((const unsigned char *)s->res->data[i],
                          (size_t)s->res->len[i], &recs[n]) != 0) {
            bad++;
            continue;
        }
        if (recs[n].target[0] == '\0') {
            dots++;
            continue;
        }
        n++;
    }
    ans->secure = s->res->secure != 0;
    if (n > 0) {
        ans->status = DNS_SRV_RECORDS;
        ans->recs = recs;
        ans->n = n;
        *recs_out = recs; /* transferred */
        return 0;
    }
    free(recs);
    if (dots == 1 && total == 1) {
        ans->status = DNS_SRV_DOT;
        return 0;
    }
    /* records that are all malformed: the domain has SRV records, so the
     * fallback to its A/AAAA would not be what it asked for */
    log_conn(LOG_LEVEL_WARN, "dns", "SRV %s.%s: no usable record (%zu bad)",
             label, q->name, bad);
    ans->status = DNS_SRV_FAILED;
    return 0;
}

static void dns_deliver_s2s(struct dns_query *q)
{
    struct dns_srv_answer ans[2];
    struct dns_srv *recs[2] = {NULL, NULL};
    struct dns_target *t = NULL;
    size_t n = 0;
    static const char *const labels[2] = {"_xmpps-server._tcp",
                                          "_xmpp-server._tcp"};

    int rc = dns_srv_read(q, &q->sub[0], labels[0], &ans[0], &recs[0]);
    if (rc == 0) {
        rc = dns_srv_read(q, &q->sub[1], labels[1], &ans[1], &recs[1]);
    }
    if (rc == 0) {
        rc = dns_srv_targets(q->name, &ans[0], &ans[1], NULL, NULL, &t, &n);
    }
    free(recs[0]);
    free(recs[1]);
    if (rc == 0) {
        log_conn(LOG_LEVEL_DEBUG, "dns", "s2s %s: %zu target(s), first %s:%u",
                 q->name, n, t[0].host, (unsigned)t[0].port);
    } else {
        log_conn(LOG_LEVEL_DEBUG, "dns", "s2s %s: %s", q->name, err_str(rc));
    }
    q->targets_fn(q->ud, rc, t, n);
    free(t);
}

/* Appends the addresses of one A or AAAA answer to addrs. */
static size_t dns_addrs_read(const struct dns_query *q,
                             const struct dns_sub *s,
                             int family,
                             struct dns_addr *addrs,
                             size_t max)
{
    size_t n = 0;
    for (size_t i = 0; s->res->data[i] != NULL && n < max; i++) {
        struct dns_addr *a = &addrs[n];
        memset(a, 0, sizeof(*a));
        if (family == AF_INET6 && s->res->len[i] == 16) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons(q->port);
            memcpy(&sin6->sin6_addr, s->res->data[i], 16);
            a->len = sizeof(*sin6);
            n++;
        } else if (family == AF_INET && s->res->len[i] == 4) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
            sin->sin_family = AF_INET;
            sin->sin_port = htons(q->port);
            memcpy(&sin->sin_addr, s->res->data[i], 4);
            a->len = sizeof(*sin);
            n++;
        }
    }
    return n;
}

static size_t dns_count(const struct dns_sub *s)
{
    size_t n = 0;
    if (s->res != NULL && s->res->havedata) {
        while (s->res->data[n] != NULL) {
            n++;
        }
    }
    return n;
}

/*
 * IPv6 and IPv4 interleaved, IPv6 first (RFC 8305 4): a host without IPv6
 * connectivity fails the first attempt at once and goes on to IPv4, and
 * one broken family never hides the other behind all of its addresses.
 */
static void dns_deliver_addrs(struct dns_query *q)
{
    struct dns_addr *got[2] = {NULL, NULL}; /* [0] IPv6, [1] IPv4 */
    size_t ngot[2] = {0, 0};
    struct dns_addr *all = NULL;
    size_t n = 0;
    bool failed = false;
    bool secure = true;
    char tmp[300];
    int rc = 0;

    if (q->literal) {
        q->addrs_fn(q->ud, 0, &q->lit_addr, 1, false);
        return;
    }
    for (size_t i = 0; i < 2; i++) {
        const struct dns_sub *s = &q->sub[i];
        const char *problem = dns_sub_problem(s, tmp, sizeof(tmp));
        if (problem != NULL) {
            log_conn(LOG_LEVEL_WARN, "dns", "%s %s failed: %s",
                     i == 0 ? "AAAA" : "A", q->name, problem);
            failed = true;
            secure = false;
            continue;
        }
        secure = secure && s->res->secure;
        size_t c = dns_count(s);
        if (c == 0) {
            continue;
        }
        got[i] = calloc(c, sizeof(*got[i]));
        if (got[i] == NULL) {
            rc = ERR_NOMEM;
            goto out;
        }
        ngot[i] = dns_addrs_read(q, s, i == 0 ? AF_INET6 : AF_INET, got[i], c);
    }
    all = calloc(ngot[0] + ngot[1] + 1, sizeof(*all));
    if (all == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < ngot[0] || i < ngot[1]; i++) {
        if (i < ngot[0]) {
            all[n++] = got[0][i];
        }
        if (i < ngot[1]) {
            all[n++] = got[1][i];
        }
    }
    if (n == 0) {
        rc = failed ? ERR_SYS : ERR_NOT_FOUND;
    }
    log_conn(LOG_LEVEL_DEBUG, "dns", "addrs %s: %zu IPv6, %zu IPv4%s", q->name,
             ngot[0], ngot[1], secure ? " (secure)" : "");
out:
    if (rc == 0) {
        q->addrs_fn(q->ud, 0, all, n, secure);
    } else {
        q->addrs_fn(q->ud, rc, NULL, 0, false);
    }
    free(got[0]);
    free(got[1]);
    free(all);
}

/*
 * Delivers every query that is ready now (not those that become ready
 * during the callbacks: they wait for the kick timer, so one round is
 * bounded). Frees dns at the end if a callback asked for it.
 */
static void dns_deliver(struct dns *dns)
{
    struct dns_list batch = dns->ready;
    for (struct dns_query *q = batch.first; q != NULL; q = q->next) {
        q->list = &batch;
    }
    dns->ready.first = NULL;
    dns->ready.last = NULL;

    dns->delivering++;
    struct dns_query *q;
    while ((q = batch.first) != NULL) {
        dns_list_remove(q);
        if (!dns->free_requested) {
            q->delivering = true;
            if (q->kind == DNS_KIND_S2S) {
                dns_deliver_s2s(q);
            } else {
                dns_deliver_addrs(q);
            }
        }
        dns_query_free(q);
    }
    dns->delivering--;
    if (dns->free_requested && dns->delivering == 0) {
        dns_destroy(dns);
    }
}

static void dns_on_kick(struct loop *loop, void *ud)
{
    struct dns *dns = ud;
    dns->kick = NULL; /* fired: the handle is gone */
    dns_deliver(dns);
}

static void dns_on_fd(struct loop *loop, int fd, unsigned events, void *ud)
{
    struct dns *dns = ud;
    if (events & LOOP_ERROR) {
        log_conn(LOG_LEVEL_ERROR, "dns", "error on the resolver pipe (fd %d)",
                 fd);
    }
    dns->in_process = true;
    int r = ub_process(dns->ctx);
    dns->in_process = false;
    if (r != 0) {
        log_conn(LOG_LEVEL_ERROR, "dns", "processing answers: %s",
                 ub_strerror(r));
    }
    dns_deliver(dns);
}

/* libunbound's callback, from inside ub_process (or, in principle, from
 * ub_resolve_async): store the answer only. */
static void dns_on_answer(void *mydata, int err, struct ub_result *result)
{
    struct dns_sub *s = mydata;
    struct dns_query *q = s->q;
    s->pending = false;
    s->ub_err = err;
    s->res = result; /* transferred */
    if (q->sub[0].pending || q->sub[1].pending || q->list == NULL) {
        return;
    }
    dns_list_remove(q);
    dns_list_append(&q->dns->ready, q);
    if (!q->dns->in_process && dns_arm_kick(q->dns) != 0) {
        log_conn(LOG_LEVEL_ERROR, "dns",
                 "%s: answer waits for the next one: out of memory", q->name);
    }
}

/* ---- public API --------------------------------------------------------- */

static void dns_destroy(struct dns *dns)
{
    struct dns_query *q;
    while ((q = dns->pending.first) != NULL) {
        dns_list_remove(q);
        dns_query_free(q);
    }
    while ((q = dns->ready.first) != NULL) {
        dns_list_remove(q);
        dns_query_free(q);
    }
    loop_timer_cancel(dns->loop, dns->kick);
    dns->kick = NULL;
    if (dns->fd >= 0) {
        loop_unwatch(dns->loop, dns->fd);
    }
    /* joins the worker thread; answers still in flight are dropped */
    if (dns->ctx != NULL) {
        ub_ctx_delete(dns->ctx);
    }
    free(dns);
}

struct dns *dns_new(struct loop *loop,
                    const struct dns_settings *s,
                    char *err,
                    size_t errlen)
{
    struct dns *dns = NULL;
    char dummy[1];
    int r;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (loop == NULL || s == NULL ||
        (s->nforwarders > 0 && s->forwarders == NULL)) {
        snprintf(err, errlen, "invalid DNS settings");
        return NULL;
    }
    dns = calloc(1, sizeof(*dns));
    if (dns == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    dns->loop = loop;
    dns->fd = -1;
    dns->ctx = ub_ctx_create();
    if (dns->ctx == NULL) {
        snprintf(err, errlen, "cannot create the resolver context");
        goto fail;
    }
    /* a thread, not a forked process that would inherit keys and fds */
    r = ub_ctx_async(dns->ctx, 1);
    if (r != 0) {
        snprintf(err, errlen, "resolver thread mode: %s", ub_strerror(r));
        goto fail;
    }
    /* forwarders on 127.0.0.0/8 (a local unbound, the tests) */
    r = ub_ctx_set_option(dns->ctx, "do-not-query-localhost:", "no");
    if (r != 0) {
        snprintf(err, errlen, "do-not-query-localhost: %s", ub_strerror(r));
        goto fail;
    }
    for (size_t i = 0; i < s->nforwarders; i++) {
        r = ub_ctx_set_fwd(dns->ctx, s->forwarders[i]);
        if (r != 0) {
            snprintf(err, errlen, "forwarder '%s' (\"ip\" or \"ip@port\"): %s",
                     s->forwarders[i], ub_strerror(r));
            goto fail;
        }
    }
    if (s->nforwarders == 0) {
        r = ub_ctx_resolvconf(dns->ctx, NULL);
        if (r != 0) {
            snprintf(err, errlen, "reading /etc/resolv.conf: %s",
                     ub_strerror(r));
            goto fail;
        }
    }
    if (s->hosts_file != NULL) {
        r = ub_ctx_hosts(dns->ctx, s->hosts_file);
        if (r != 0) {
            snprintf(err, errlen, "hosts file %s: %s", s->hosts_file,
                     ub_strerror(r));
            goto fail;
        }
    }
    if (s->trust_anchor_file != NULL) {
        r = ub_ctx_add_ta_file(dns->ctx, s->trust_anchor_file);
        if (r != 0) {
            snprintf(err, errlen, "trust anchor file %s: %s",
                     s->trust_anchor_file, ub_strerror(r));
            goto fail;
        }
    }
    /*
     * libunbound answers every *.test name NXDOMAIN itself (an RFC 6761
     * default zone). With forwarders the operator has chosen which server
     * answers, and test setups (ours, and networks of test domains) serve
     * "test." there, so the default zone is lifted ("nodefault"). Without
     * forwarders the RFC 6761 protection stays: "static" restates what
     * the default zone already is, and test names never leak to the
     * system's resolvers.
     *
     * ub_ctx_zone_add also finalizes the context, which is why it is
     * called in both cases: settings errors (a malformed trust anchor)
     * show here at start-up, not at the first query. After it every
     * setting change fails with UB_AFTERFINAL, ub_ctx_async included
     * (which would silently leave libunbound forking a process), so it
     * comes last.
     */
    r = ub_ctx_zone_add(dns->ctx, "test.",
                        s->nforwarders > 0 ? "nodefault" : "static");
    if (r != 0) {
        if (s->trust_anchor_file != NULL) {
            snprintf(err, errlen,
                     "applying the resolver settings (trust anchor file "
                     "%s): %s",
                     s->trust_anchor_file, ub_strerror(r));
        } else {
            snprintf(err, errlen, "applying the resolver settings: %s",
                     ub_strerror(r));
        }
        goto fail;
    }
    int fd = ub_fd(dns->ctx);
    if (fd < 0) {
        snprintf(err, errlen, "resolver has no descriptor");
        goto fail;
    }
    r = loop_watch(loop, fd, LOOP_READ, dns_on_fd, dns);
    if (r != 0) {
        snprintf(err, errlen, "watching the resolver: %s", err_str(r));
        goto fail;
    }
    dns->fd = fd;
    return dns;

fail:
    dns_destroy(dns);
    return NULL;
}

void dns_free(struct dns *dns)
{
    if (dns == NULL || dns->free_requested) {
        return;
    }
    if (dns->delivering > 0) {
        /* inside a callback of ours: no further callbacks, and the
         * delivery round frees dns once it unwinds */
        dns->free_requested = true;
        return;
    }
    dns_destroy(dns);
}

/* A name libunbound will take as is: host-name characters and dots (no
 * escapes), 1..253 octets. */
static bool dns_name_ok(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > DNS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (name[i] != '.' && !dns_host_char((unsigned char)name[i])) {
            return false;
        }
    }
    return true;
}

static struct dns_query *
dns_query_new(struct dns *dns, enum dns_kind kind, const char *name)
{
    struct dns_query *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return NULL;
    }
    q->dns = dns;
    q->kind = kind;
    snprintf(q->name, sizeof(q->name), "%s", name);
    for (size_t i = 0; i < 2; i++) {
        q->sub[i].q = q;
    }
    return q;
}

/* Submits both sub-queries of q (on the pending list). */
static int dns_query_submit(struct dns_query *q,
                            const char *const names[2],
                            const int types[2])
{
    /* both marked first: an answer to the first (should libunbound ever
     * call back from inside ub_resolve_async) must not look complete */
    q->sub[0].pending = true;
    q->sub[1].pending = true;
    for (size_t i = 0; i < 2; i++) {
        struct dns_sub *s = &q->sub[i];
        int r = ub_resolve_async(q->dns->ctx, names[i], types[i], DNS_CLASS_IN,
                                 s, dns_on_answer, &s->id);
        if (r != 0) {
            for (size_t k = i; k < 2; k++) {
                q->sub[k].pending = false; /* never submitted */
            }
            log_conn(LOG_LEVEL_ERROR, "dns", "query %s: %s", names[i],
                     ub_strerror(r));
            return r == UB_NOMEM ? ERR_NOMEM : ERR_SYS;
        }
    }
    return 0;
}

int dns_resolve_s2s(struct dns *dns,
                    const char *domain,
                    dns_targets_fn *fn,
                    void *ud,
                    struct dns_query **qp)
{
    char xmpps[DNS_NAME_MAX + 32];
    char xmpp[DNS_NAME_MAX + 32];

    if (qp != NULL) {
        *qp = NULL;
    }
    if (dns == NULL || fn == NULL || dns->free_requested ||
        !dns_name_ok(domain)) {
        return ERR_INVAL;
    }
    struct dns_query *q = dns_query_new(dns, DNS_KIND_S2S, domain);
    if (q == NULL) {
        return ERR_NOMEM;
    }
    q->targets_fn = fn;
    q->ud = ud;
    snprintf(xmpps, sizeof(xmpps), "_xmpps-server._tcp.%s", domain);
    snprintf(xmpp, sizeof(xmpp), "_xmpp-server._tcp.%s", domain);
    const char *const names[2] = {xmpps, xmpp};
    const int types[2] = {DNS_TYPE_SRV, DNS_TYPE_SRV};
    dns_list_append(&dns->pending, q);
    int rc = dns_query_submit(q, names, types);
    if (rc != 0) {
        dns_list_remove(q);
        dns_query_free(q);
        return rc;
    }
    if (qp != NULL) {
        *qp = q;
    }
    return 0;
}

/* Fills a with host:port if host is an IPv4 or IPv6 literal. Such an
 * answer is known at once and is delivered by the kick timer. */
static bool dns_literal(const char *host, uint16_t port, struct dns_addr *a)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        a->len = sizeof(*sin);
        return true;
    }
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        a->len = sizeof(*sin6);
        return true;
    }
    memset(a, 0, sizeof(*a));
    return false;
}

int dns_resolve_addrs(struct dns *dns,
                      const char *host,
                      uint16_t port,
                      dns_addrs_fn *fn,
                      void *ud,
                      struct dns_query **qp)
{
    if (qp != NULL) {
        *qp = NULL;
    }
    if (dns == NULL || fn == NULL || dns->free_requested || host == NULL) {
        return ERR_INVAL;
    }
    struct dns_addr lit;
    bool literal = dns_literal(host, port, &lit);
    if (!literal && !dns_name_ok(host)) {
        return ERR_INVAL;
    }
    struct dns_query *q = dns_query_new(dns, DNS_KIND_ADDRS, host);
    if (q == NULL) {
        return ERR_NOMEM;
    }
    q->addrs_fn = fn;
    q->ud = ud;
    q->port = port;
    if (literal) {
        q->literal = true;
        q->lit_addr = lit;
        if (dns_arm_kick(dns) != 0) {
            free(q);
            return ERR_NOMEM;
        }
        dns_list_append(&dns->ready, q);
    } else {
        const char *const names[2] = {host, host};
        const int types[2] = {DNS_TYPE_AAAA, DNS_TYPE_A};
        dns_list_append(&dns->pending, q);
        int rc = dns_query_submit(q, names, types);
        if (rc != 0) {
            dns_list_remove(q);
            dns_query_free(q);
            return rc;
        }
    }
    if (qp != NULL) {
        *qp = q;
    }
    return 0;
}

void dns_cancel(struct dns *dns, struct dns_query *q)
{
    if (dns == NULL || q == NULL || q->delivering) {
        /* inside its own callback: it is freed when the callback returns */
        return;
    }
    dns_list_remove(q);
    dns_query_free(q);
}
