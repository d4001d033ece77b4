/*
 * check_dns.c: the resolver.
 *
 * "srv": SRV rdata parsing, RFC 2782 ordering with a scripted or seeded
 * random source, "." handling and the fallback, without any network.
 * "resolver": settings errors and answers that need no server (IP
 * literals, cancel and free from callbacks).
 * "live": real lookups against an unbound server this test starts itself
 * on a free loopback address (fork + exec, one per test case through an
 * unchecked fixture, stopped in the teardown also when a test fails or
 * crashes). Skipped, with a message, only if /usr/sbin/unbound is missing.
 */
#include "config.h"

#include "dns.h"

#include "dns_srv.h"
#include "err.h"
#include "log.h"
#include "loop.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UNBOUND_BIN "/usr/sbin/unbound"

#define RUN_UNTIL(loop, cond, ms)                         \
    do {                                                  \
        uint64_t until_ = loop_now_ms(loop) + (ms);       \
        while (!(cond) && loop_now_ms(loop) < until_) {   \
            ck_assert_int_eq(loop_run_once(loop, 10), 0); \
        }                                                 \
    } while (0)

/* ---- SRV parsing -------------------------------------------------------- */

/* Builds SRV rdata for "prio weight port target" into out; returns the
 * length. target "." is the root. */
static size_t srv_rdata(unsigned char *out,
                        uint16_t prio,
                        uint16_t weight,
                        uint16_t port,
                        const char *target)
{
    size_t n = 0;
    out[n++] = (unsigned char)(prio >> 8);
    out[n++] = (unsigned char)prio;
    out[n++] = (unsigned char)(weight >> 8);
    out[n++] = (unsigned char)weight;
    out[n++] = (unsigned char)(port >> 8);
    out[n++] = (unsigned char)port;
    if (strcmp(target, ".") != 0) {
        const char *p = target;
        while (*p != '\0') {
            const char *dot = strchr(p, '.');
            size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
            out[n++] = (unsigned char)len;
            memcpy(out + n, p, len);
            n += len;
            p += len;
            if (*p == '.') {
                p++;
            }
        }
    }
    out[n++] = 0;
    return n;
}

START_TEST(test_parse_srv)
{
    unsigned char rd[300];
    struct dns_srv r;
    size_t len = srv_rdata(rd, 10, 60, 5269, "XMPP1.Peer.test");
    ck_assert_int_eq(dns_srv_parse(rd, len, &r), 0);
    ck_assert_uint_eq(r.priority, 10);
    ck_assert_uint_eq(r.weight, 60);
    ck_assert_uint_eq(r.port, 5269);
    ck_assert_str_eq(r.target, "xmpp1.peer.test"); /* lower-cased */

    len = srv_rdata(rd, 0, 0, 0, ".");
    ck_assert_uint_eq(len, 7);
    ck_assert_int_eq(dns_srv_parse(rd, len, &r), 0);
    ck_assert_str_eq(r.target, "");

    len = srv_rdata(rd, 65535, 65535, 65535, "a-b_c.d");
    ck_assert_int_eq(dns_srv_parse(rd, len, &r), 0);
    ck_assert_uint_eq(r.priority, 65535);
    ck_assert_uint_eq(r.weight, 65535);
    ck_assert_uint_eq(r.port, 65535);
    ck_assert_str_eq(r.target, "a-b_c.d");
}
END_TEST

START_TEST(test_parse_srv_malformed)
{
    unsigned char rd[300];
    struct dns_srv r;
    size_t len = srv_rdata(rd, 10, 60, 5269, "xmpp1.peer.test");
    /* every truncation is refused */
    for (size_t cut = 0; cut < len; cut++) {
        ck_assert_int_eq(dns_srv_parse(rd, cut, &r), ERR_INVAL);
    }
    /* trailing bytes after the name */
    rd[len] = 0;
    ck_assert_int_eq(dns_srv_parse(rd, len + 1, &r), ERR_INVAL);
    /* a compression pointer */
    unsigned char ptr[] = {0, 1, 0, 1, 0x14, 0x95, 0xc0, 0x0c};
    ck_assert_int_eq(dns_srv_parse(ptr, sizeof(ptr), &r), ERR_INVAL);
    /* characters that do not belong in a host name */
    len = srv_rdata(rd, 1, 1, 1, "a b.test");
    ck_assert_int_eq(dns_srv_parse(rd, len, &r), ERR_INVAL);
    unsigned char nul[] = {0, 1, 0, 1, 0, 1, 3, 'a', 0, 'b', 0};
    ck_assert_int_eq(dns_srv_parse(nul, sizeof(nul), &r), ERR_INVAL);
    unsigned char dot[] = {0, 1, 0, 1, 0, 1, 3, 'a', '.', 'b', 0};
    ck_assert_int_eq(dns_srv_parse(dot, sizeof(dot), &r), ERR_INVAL);
    ck_assert_int_eq(dns_srv_parse(NULL, 7, &r), ERR_INVAL);
    /* a name longer than 253 characters */
    unsigned char big[300] = {0, 1, 0, 1, 0, 1};
    size_t n = 6;
    for (int i = 0; i < 4; i++) {
        big[n++] = 63;
        memset(big + n, 'a', 63);
        n += 63;
    }
    big[n++] = 0;
    ck_assert_int_eq(dns_srv_parse(big, n, &r), ERR_INVAL);
    /* 253 exactly is fine: 3 x 63 + 61 plus three dots */
    big[6 + 3 * 64] = 61;
    n = 6 + 3 * 64 + 1 + 61;
    big[n++] = 0;
    ck_assert_int_eq(dns_srv_parse(big, n, &r), 0);
    ck_assert_uint_eq(strlen(r.target), 253);
}
END_TEST

/* ---- ordering ----------------------------------------------------------- */

/* A scripted random source: returns the listed values in turn (clamped to
 * max) and records the max of each call. */
struct script {
    const uint32_t *vals;
    size_t nvals;
    size_t calls;
    uint32_t maxes[16];
};

static uint32_t script_rand(void *ud, uint32_t max)
{
    struct script *s = ud;
    uint32_t v = s->calls < s->nvals ? s->vals[s->calls] : 0;
    if (s->calls < 16) {
        s->maxes[s->calls] = max;
    }
    s->calls++;
    return v > max ? max : v;
}

/* splitmix64: a seeded, repeatable source for distribution tests */
struct seeded {
    uint64_t state;
};

static uint32_t seeded_rand(void *ud, uint32_t max)
{
    struct seeded *s = ud;
    uint64_t z = (s->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (uint32_t)(z % ((uint64_t)max + 1));
}

static struct dns_srv rec(uint16_t prio, uint16_t weight, const char *target)
{
    struct dns_srv r;
    memset(&r, 0, sizeof(r));
    r.priority = prio;
    r.weight = weight;
    r.port = 5269;
    snprintf(r.target, sizeof(r.target), "%s", target);
    return r;
}

START_TEST(test_order_by_priority)
{
    struct dns_srv r[] = {rec(30, 5, "c"), rec(10, 5, "a"), rec(20, 5, "b"),
                          rec(0, 5, "z"), rec(65535, 5, "last")};
    struct seeded sd = {42};
    dns_srv_order(r, 5, seeded_rand, &sd);
    ck_assert_str_eq(r[0].target, "z");
    ck_assert_str_eq(r[1].target, "a");
    ck_assert_str_eq(r[2].target, "b");
    ck_assert_str_eq(r[3].target, "c");
    ck_assert_str_eq(r[4].target, "last");
}
END_TEST

/* The selection rule itself: r uniform in [0, sum], first record whose
 * running sum reaches r; weight-0 records sit at the front. */
START_TEST(test_order_selection_rule)
{
    /* weights 10, 20, 0 -> list [0:"zero", 10:"ten", 20:"twenty"] */
    struct dns_srv base[] = {rec(1, 10, "ten"), rec(1, 20, "twenty"),
                             rec(1, 0, "zero")};
    struct {
        uint32_t first;
        const char *expect;
    } picks[] = {
        {0, "zero"}, {1, "ten"}, {10, "ten"}, {11, "twenty"}, {30, "twenty"},
    };
    for (size_t i = 0; i < sizeof(picks) / sizeof(picks[0]); i++) {
        struct dns_srv r[3];
        memcpy(r, base, sizeof(base));
        uint32_t vals[] = {picks[i].first, 0};
        struct script sc = {vals, 2, 0, {0}};
        dns_srv_order(r, 3, script_rand, &sc);
        ck_assert_msg(strcmp(r[0].target, picks[i].expect) == 0,
                      "r=%u picked %s, expected %s", picks[i].first,
                      r[0].target, picks[i].expect);
        ck_assert_uint_eq(sc.calls, 2); /* n - 1 draws */
        ck_assert_uint_eq(sc.maxes[0], 30);
    }
    /* the second draw is over the remaining weights */
    struct dns_srv r[3];
    memcpy(r, base, sizeof(base));
    uint32_t vals[] = {15, 0};
    struct script sc = {vals, 2, 0, {0}};
    dns_srv_order(r, 3, script_rand, &sc);
    ck_assert_str_eq(r[0].target, "twenty");
    ck_assert_uint_eq(sc.maxes[1], 10);
    ck_assert_str_eq(r[1].target, "zero"); /* r = 0 takes the zero first */
    ck_assert_str_eq(r[2].target, "ten");
}
END_TEST

START_TEST(test_order_weight_distribution)
{
    /* 60/40 within priority 10, 3/1 between two of priority 20 */
    struct seeded sd = {12345};
    int first60 = 0;
    int first3 = 0;
    const int rounds = 20000;
    for (int i = 0; i < rounds; i++) {
        struct dns_srv r[] = {rec(10, 40, "forty"), rec(20, 1, "one"),
                              rec(10, 60, "sixty"), rec(20, 3, "three")};
        dns_srv_order(r, 4, seeded_rand, &sd);
        ck_assert_uint_eq(r[0].priority, 10);
        ck_assert_uint_eq(r[1].priority, 10);
        ck_assert_uint_eq(r[2].priority, 20);
        first60 += strcmp(r[0].target, "sixty") == 0;
        first3 += strcmp(r[2].target, "three") == 0;
    }
    /* RFC 2782 draws r from [0, sum] inclusive, so the first record in
     * the list gets one extra outcome: sixty is first with probability
     * 60/101 (59.4 %), three with 3/5 (60 %, not 75 %). A band of +-1 %
     * is about 3 standard deviations for 20000 draws; the seed is fixed,
     * so the count is exactly repeatable. */
    ck_assert_msg(first60 > rounds * 584 / 1000 &&
                      first60 < rounds * 604 / 1000,
                  "sixty first %d of %d", first60, rounds);
    ck_assert_msg(first3 > rounds * 59 / 100 && first3 < rounds * 61 / 100,
                  "three first %d of %d", first3, rounds);
}
END_TEST

START_TEST(test_order_zero_weights)
{
    /* all zero: every draw is over [0, 0] and the answer order is kept */
    struct dns_srv r[] = {rec(5, 0, "a"), rec(5, 0, "b"), rec(5, 0, "c")};
    struct script sc = {NULL, 0, 0, {0}};
    dns_srv_order(r, 3, script_rand, &sc);
    ck_assert_str_eq(r[0].target, "a");
    ck_assert_str_eq(r[1].target, "b");
    ck_assert_str_eq(r[2].target, "c");
    ck_assert_uint_eq(sc.maxes[0], 0);
    ck_assert_uint_eq(sc.maxes[1], 0);

    /* a zero-weight record among weighted ones is rarely first (only for
     * r = 0) but is never lost */
    struct seeded sd = {7};
    int zero_first = 0;
    for (int i = 0; i < 10000; i++) {
        struct dns_srv m[] = {rec(5, 100, "w"), rec(5, 0, "z"),
                              rec(5, 100, "v")};
        dns_srv_order(m, 3, seeded_rand, &sd);
        bool seen = false;
        for (int k = 0; k < 3; k++) {
            seen = seen || strcmp(m[k].target, "z") == 0;
        }
        ck_assert(seen);
        zero_first += strcmp(m[0].target, "z") == 0;
    }
    /* probability 1/201 per round: about 50 of 10000 */
    ck_assert_msg(zero_first > 10 && zero_first < 150, "zero first %d",
                  zero_first);

    /* n = 0 and n = 1 do not draw */
    struct script none = {NULL, 0, 0, {0}};
    dns_srv_order(r, 0, script_rand, &none);
    dns_srv_order(r, 1, script_rand, &none);
    ck_assert_uint_eq(none.calls, 0);
}
END_TEST

/* ---- combining the two answers ------------------------------------------ */

static const struct dns_srv_answer none_ans = {DNS_SRV_NONE, NULL, 0, false};
static const struct dns_srv_answer dot_ans = {DNS_SRV_DOT, NULL, 0, false};
static const struct dns_srv_answer failed_ans = {DNS_SRV_FAILED, NULL, 0,
                                                 false};

START_TEST(test_targets_merge)
{
    struct dns_srv tls[] = {rec(5, 0, "tls.peer.test")};
    tls[0].port = 5270;
    struct dns_srv plain[] = {rec(10, 1, "xmpp1.peer.test"),
                              rec(20, 0, "backup.peer.test")};
    struct dns_srv_answer a_tls = {DNS_SRV_RECORDS, tls, 1, true};
    struct dns_srv_answer a_plain = {DNS_SRV_RECORDS, plain, 2, false};
    struct dns_target *t = NULL;
    size_t n = 0;
    struct seeded sd = {1};
    ck_assert_int_eq(dns_srv_targets("peer.test", &a_tls, &a_plain, seeded_rand,
                                     &sd, &t, &n),
                     0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(t[0].host, "tls.peer.test");
    ck_assert_uint_eq(t[0].port, 5270);
    ck_assert(t[0].direct_tls);
    ck_assert(t[0].secure);
    ck_assert_str_eq(t[1].host, "xmpp1.peer.test");
    ck_assert(!t[1].direct_tls);
    ck_assert(!t[1].secure);
    ck_assert_str_eq(t[2].host, "backup.peer.test");
    ck_assert(!t[2].direct_tls);
    free(t);
}
END_TEST

START_TEST(test_targets_dot_and_fallback)
{
    struct dns_srv plain[] = {rec(10, 1, "xmpp.peer.test")};
    struct dns_srv_answer a_plain = {DNS_SRV_RECORDS, plain, 1, false};
    struct dns_target *t = NULL;
    size_t n = 7;

    /* both "." : no s2s service at all */
    ck_assert_int_eq(
        dns_srv_targets("peer.test", &dot_ans, &dot_ans, NULL, NULL, &t, &n),
        ERR_NOT_FOUND);
    ck_assert_ptr_null(t);
    ck_assert_uint_eq(n, 0);
    /* plain "." and no direct TLS records: no fallback either */
    ck_assert_int_eq(
        dns_srv_targets("peer.test", &none_ans, &dot_ans, NULL, NULL, &t, &n),
        ERR_NOT_FOUND);
    /* direct TLS "." only says that direct TLS is not offered */
    ck_assert_int_eq(
        dns_srv_targets("peer.test", &dot_ans, &a_plain, NULL, NULL, &t, &n),
        0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(t[0].host, "xmpp.peer.test");
    ck_assert(!t[0].direct_tls);
    free(t);
    ck_assert_int_eq(
        dns_srv_targets("peer.test", &dot_ans, &none_ans, NULL, NULL, &t, &n),
        0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(t[0].host, "peer.test");
    ck_assert_uint_eq(t[0].port, 5269);
    free(t);
    /* no records anywhere: the RFC 6120 fallback, plain, not secure */
    ck_assert_int_eq(
        dns_srv_targets("peer.test", &none_ans, &none_ans, NULL, NULL, &t, &n),
        0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(t[0].host, "peer.test");
    ck_assert_uint_eq(t[0].port, 5269);
    ck_assert(!t[0].direct_tls);
    ck_assert(!t[0].secure);
    free(t);
}
END_TEST

START_TEST(test_targets_failures)
{
    struct dns_srv tls[] = {rec(1, 1, "tls.peer.test")};
    struct dns_srv_answer a_tls = {DNS_SRV_RECORDS, tls, 1, false};
    struct dns_target *t = NULL;
    size_t n = 0;
    /* a failed query and nothing else: no fallback on a resolver error */
    ck_assert_int_eq(dns_srv_targets("peer.test", &failed_ans, &none_ans, NULL,
                                     NULL, &t, &n),
                     ERR_SYS);
    ck_assert_int_eq(dns_srv_targets("peer.test", &none_ans, &failed_ans, NULL,
                                     NULL, &t, &n),
                     ERR_SYS);
    ck_assert_ptr_null(t);
    /* but the other query's records are used */
    ck_assert_int_eq(
        dns_srv_targets("peer.test", &a_tls, &failed_ans, NULL, NULL, &t, &n),
        0);
    ck_assert_uint_eq(n, 1);
    ck_assert(t[0].direct_tls);
    free(t);
    /* a domain too long for a target */
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_int_eq(
        dns_srv_targets(longname, &none_ans, &none_ans, NULL, NULL, &t, &n),
        ERR_INVAL);
}
END_TEST

/* ---- callbacks for the resolver tests ----------------------------------- */

struct got {
    int calls;
    int err;
    struct dns_target targets[16];
    size_t ntargets;
    struct dns_addr addrs[16];
    size_t naddrs;
    bool secure;
    /* actions taken inside the callback */
    struct dns *free_dns;
    struct dns_query **cancel_q;
    struct dns *cancel_dns;
};

static void got_targets(void *ud, int err, const struct dns_target *t, size_t n)
{
    struct got *g = ud;
    g->calls++;
    g->err = err;
    g->ntargets = n < 16 ? n : 16;
    if (n > 0) {
        memcpy(g->targets, t, g->ntargets * sizeof(*t));
    }
}

static void
got_addrs(void *ud, int err, const struct dns_addr *a, size_t n, bool secure)
{
    struct got *g = ud;
    g->calls++;
    g->err = err;
    g->secure = secure;
    g->naddrs = n < 16 ? n : 16;
    if (n > 0) {
        memcpy(g->addrs, a, g->naddrs * sizeof(*a));
    }
    if (g->cancel_q != NULL) {
        dns_cancel(g->cancel_dns, *g->cancel_q);
    }
    if (g->free_dns != NULL) {
        dns_free(g->free_dns);
    }
}

/* "ip:port" of an address, for assertions */
static const char *addr_str(const struct dns_addr *a, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, ntohs(s4->sin_port));
    }
    return out;
}

/* ---- resolver without a server ------------------------------------------ */

START_TEST(test_settings_errors)
{
    struct loop *loop = loop_new();
    ck_assert_ptr_nonnull(loop);
    char err[256];
    const char *bad_fwd[] = {"127.0.0.1#53"};
    struct dns_settings s = {.forwarders = bad_fwd, .nforwarders = 1};
    ck_assert_ptr_null(dns_new(loop, &s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "127.0.0.1#53") != NULL, "%s", err);

    const char *fwd[] = {"127.0.0.1@53"};
    struct dns_settings h = {.forwarders = fwd,
                             .nforwarders = 1,
                             .hosts_file = "/nonexistent/hosts"};
    ck_assert_ptr_null(dns_new(loop, &h, err, sizeof(err)));
    ck_assert_msg(strstr(err, "/nonexistent/hosts") != NULL, "%s", err);

    struct dns_settings ta = {.forwarders = fwd,
                              .nforwarders = 1,
                              .trust_anchor_file = "/nonexistent/ta"};
    ck_assert_ptr_null(dns_new(loop, &ta, err, sizeof(err)));
    ck_assert_msg(strstr(err, "/nonexistent/ta") != NULL, "%s", err);

    /* without forwarders too: the settings are applied in dns_new */
    struct dns_settings ta2 = {.trust_anchor_file = "/nonexistent/ta"};
    ck_assert_ptr_null(dns_new(loop, &ta2, err, sizeof(err)));
    ck_assert_msg(strstr(err, "/nonexistent/ta") != NULL, "%s", err);

    ck_assert_ptr_null(dns_new(loop, NULL, err, sizeof(err)));
    loop_free(loop);
}
END_TEST

static struct dns *offline_dns(struct loop *loop)
{
    /* nothing listens there: these tests never reach the network */
    static const char *fwd[] = {"127.0.0.1@9"};
    struct dns_settings s = {.forwarders = fwd, .nforwarders = 1};
    char err[256];
    struct dns *dns = dns_new(loop, &s, err, sizeof(err));
    ck_assert_msg(dns != NULL, "dns_new: %s", err);
    return dns;
}

START_TEST(test_literal_is_deferred)
{
    struct loop *loop = loop_new();
    struct dns *dns = offline_dns(loop);
    struct got g4 = {0};
    struct got g6 = {0};
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "192.0.2.9", 443, got_addrs, &g4, NULL), 0);
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "2001:db8::9", 5269, got_addrs, &g6, NULL), 0);
    /* never from inside dns_resolve_* */
    ck_assert_int_eq(g4.calls, 0);
    ck_assert_int_eq(g6.calls, 0);
    RUN_UNTIL(loop, g4.calls > 0 && g6.calls > 0, 1000);
    char buf[80];
    ck_assert_int_eq(g4.calls, 1);
    ck_assert_int_eq(g4.err, 0);
    ck_assert_uint_eq(g4.naddrs, 1);
    ck_assert_str_eq(addr_str(&g4.addrs[0], buf, sizeof(buf)), "192.0.2.9:443");
    ck_assert_uint_eq(g4.addrs[0].len, sizeof(struct sockaddr_in));
    ck_assert(!g4.secure);
    ck_assert_int_eq(g6.calls, 1);
    ck_assert_str_eq(addr_str(&g6.addrs[0], buf, sizeof(buf)),
                     "[2001:db8::9]:5269");
    ck_assert_uint_eq(g6.addrs[0].len, sizeof(struct sockaddr_in6));
    dns_free(dns);
    loop_free(loop);
}
END_TEST

START_TEST(test_invalid_names)
{
    struct loop *loop = loop_new();
    struct dns *dns = offline_dns(loop);
    struct got g = {0};
    struct dns_query *q = (struct dns_query *)&g;
    ck_assert_int_eq(dns_resolve_s2s(dns, "", got_targets, &g, &q), ERR_INVAL);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(dns_resolve_s2s(dns, "a\\.b.test", got_targets, &g, NULL),
                     ERR_INVAL);
    ck_assert_int_eq(dns_resolve_s2s(dns, "a b.test", got_targets, &g, NULL),
                     ERR_INVAL);
    ck_assert_int_eq(dns_resolve_s2s(dns, NULL, got_targets, &g, NULL),
                     ERR_INVAL);
    ck_assert_int_eq(dns_resolve_s2s(dns, "b.test", NULL, &g, NULL), ERR_INVAL);
    ck_assert_int_eq(dns_resolve_addrs(dns, "", 1, got_addrs, &g, NULL),
                     ERR_INVAL);
    ck_assert_int_eq(dns_resolve_addrs(dns, NULL, 1, got_addrs, &g, NULL),
                     ERR_INVAL);
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    ck_assert_int_eq(dns_resolve_s2s(dns, longname, got_targets, &g, NULL),
                     ERR_INVAL);
    RUN_UNTIL(loop, false, 50);
    ck_assert_int_eq(g.calls, 0);
    dns_cancel(dns, NULL); /* accepted */
    dns_free(dns);
    dns_free(NULL);
    loop_free(loop);
}
END_TEST

/* Without forwarders the RFC 6761 "test." zone stays: answered NXDOMAIN by
 * libunbound itself, never asked of the system's resolvers. */
START_TEST(test_test_zone_kept_without_forwarders)
{
    if (access("/etc/resolv.conf", R_OK) != 0) {
        return; /* dns_new needs it without forwarders; nothing to check */
    }
    struct loop *loop = loop_new();
    struct dns_settings s = {.nforwarders = 0};
    char err[256];
    struct dns *dns = dns_new(loop, &s, err, sizeof(err));
    ck_assert_msg(dns != NULL, "dns_new: %s", err);
    struct got g = {0};
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "peer.test", 5269, got_addrs, &g, NULL), 0);
    RUN_UNTIL(loop, g.calls > 0, 2000);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.err, ERR_NOT_FOUND);
    dns_free(dns);
    loop_free(loop);
}
END_TEST

/* A callback cancels another query of the same delivery round: that one is
 * never delivered. */
START_TEST(test_cancel_from_callback)
{
    struct loop *loop = loop_new();
    struct dns *dns = offline_dns(loop);
    struct got g1 = {0};
    struct got g2 = {0};
    struct dns_query *q2 = NULL;
    g1.cancel_dns = dns;
    g1.cancel_q = &q2;
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "192.0.2.1", 1, got_addrs, &g1, NULL), 0);
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "192.0.2.2", 2, got_addrs, &g2, &q2), 0);
    ck_assert_ptr_nonnull(q2);
    RUN_UNTIL(loop, g1.calls > 0, 1000);
    RUN_UNTIL(loop, false, 50);
    ck_assert_int_eq(g1.calls, 1);
    ck_assert_int_eq(g2.calls, 0);
    /* cancelling before delivery works the same from outside */
    struct got g3 = {0};
    struct dns_query *q3 = NULL;
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "192.0.2.3", 3, got_addrs, &g3, &q3), 0);
    dns_cancel(dns, q3);
    RUN_UNTIL(loop, false, 50);
    ck_assert_int_eq(g3.calls, 0);
    dns_free(dns);
    loop_free(loop);
}
END_TEST

/* dns_free inside a callback: the rest of the round is not delivered and
 * the resolver is released once the callback returns (ASan checks the
 * rest). */
START_TEST(test_free_from_callback)
{
    struct loop *loop = loop_new();
    struct dns *dns = offline_dns(loop);
    struct got g1 = {0};
    struct got g2 = {0};
    g1.free_dns = dns;
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "192.0.2.1", 1, got_addrs, &g1, NULL), 0);
    ck_assert_int_eq(
        dns_resolve_addrs(dns, "192.0.2.2", 2, got_addrs, &g2, NULL), 0);
    /* a pending network query too: dropped with the context */
    struct got g3 = {0};
    ck_assert_int_eq(dns_resolve_s2s(dns, "b.test", got_targets, &g3, NULL), 0);
    RUN_UNTIL(loop, g1.calls > 0, 1000);
    RUN_UNTIL(loop, false, 100);
    ck_assert_int_eq(g1.calls, 1);
    ck_assert_int_eq(g2.calls, 0);
    ck_assert_int_eq(g3.calls, 0);
    loop_free(loop);
}
END_TEST

/* ---- the unbound server ------------------------------------------------- */

struct server {
    bool ok;
    char why[512];
    char dir[64];
    char addr[32]; /* 127.x.y.z */
    uint16_t port;
    char fwd[64]; /* addr@port */
    pid_t pid;
};

static struct server srv;

static const char *const zone_data[] = {
    "_xmpp-server._tcp.peer.test. 300 IN SRV 10 60 5269 xmpp1.peer.test.",
    "_xmpp-server._tcp.peer.test. 300 IN SRV 10 40 5269 xmpp2.peer.test.",
    "_xmpp-server._tcp.peer.test. 300 IN SRV 20 0 15269 backup.peer.test.",
    "_xmpps-server._tcp.peer.test. 300 IN SRV 5 0 5270 tls.peer.test.",
    "_xmpps-server._tcp.nodtls.test. 300 IN SRV 0 0 0 .",
    "_xmpp-server._tcp.nodtls.test. 300 IN SRV 0 0 0 .",
    "_xmpps-server._tcp.dtlsonly.test. 300 IN SRV 0 0 5223 "
    "tls.dtlsonly.test.",
    "_xmpp-server._tcp.dtlsonly.test. 300 IN SRV 0 0 0 .",
    "nosrv.test. 300 IN A 192.0.2.50",
    "dual.test. 300 IN A 192.0.2.1",
    "dual.test. 300 IN A 192.0.2.2",
    "dual.test. 300 IN AAAA 2001:db8::1",
    "v4only.test. 300 IN A 192.0.2.7",
};

/* Records "what arg: strerror(errno)" as the reason the server is not up. */
static bool server_fail(const char *what, const char *arg)
{
    snprintf(srv.why, sizeof(srv.why), "%s %s: %s", what, arg, strerror(errno));
    return false;
}

/* A loopback address and a port free for both UDP and TCP. */
static bool server_pick_address(void)
{
    /* 127.53.x.y from the pid: parallel test runs do not collide */
    unsigned pid = (unsigned)getpid();
    snprintf(srv.addr, sizeof(srv.addr), "127.53.%u.%u", (pid >> 8) % 250 + 1,
             pid % 250 + 1);
    for (int attempt = 0; attempt < 20; attempt++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        inet_pton(AF_INET, srv.addr, &sa.sin_addr);
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        int t = socket(AF_INET, SOCK_STREAM, 0);
        socklen_t len = sizeof(sa);
        bool ok = u >= 0 && t >= 0 &&
                  bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
                  getsockname(u, (struct sockaddr *)&sa, &len) == 0 &&
                  bind(t, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        srv.port = ntohs(sa.sin_port);
        if (u >= 0) {
            close(u);
        }
        if (t >= 0) {
            close(t);
        }
        if (ok) {
            snprintf(srv.fwd, sizeof(srv.fwd), "%s@%u", srv.addr,
                     (unsigned)srv.port);
            return true;
        }
    }
    return server_fail("no free port on", srv.addr);
}

static bool server_write_config(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/unbound.conf", srv.dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return server_fail("writing", path);
    }
    fprintf(f,
            "server:\n"
            "  interface: %s\n"
            "  port: %u\n"
            "  do-daemonize: no\n"
            "  username: \"\"\n"
            "  chroot: \"\"\n"
            "  directory: \"%s\"\n"
            "  pidfile: \"%s/unbound.pid\"\n"
            "  use-syslog: no\n"
            "  logfile: \"%s/unbound.log\"\n"
            "  verbosity: 1\n"
            "  num-threads: 1\n"
            "  do-ip6: no\n"
            "  so-reuseport: no\n"
            "  module-config: \"iterator\"\n"
            "  local-zone: \"test.\" static\n",
            srv.addr, (unsigned)srv.port, srv.dir, srv.dir, srv.dir);
    for (size_t i = 0; i < sizeof(zone_data) / sizeof(zone_data[0]); i++) {
        fprintf(f, "  local-data: \"%s\"\n", zone_data[i]);
    }
    fprintf(f, "remote-control:\n  control-enable: no\n");
    if (fclose(f) != 0) {
        return server_fail("writing", path);
    }
    return true;
}

/* Sends one A query for dual.test and waits up to wait_ms for any reply. */
static bool server_answers(int wait_ms)
{
    static const unsigned char query[] = {
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 4,    'd',  'u',  'a',  'l',  4,
        't',  'e',  's',  't',  0,    0x00, 0x01, 0x00, 0x01};
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(srv.port)};
    inet_pton(AF_INET, srv.addr, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        return false;
    }
    bool ok = false;
    if (sendto(fd, query, sizeof(query), 0, (struct sockaddr *)&sa,
               sizeof(sa)) == (ssize_t)sizeof(query)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        unsigned char reply[512];
        ok = poll(&p, 1, wait_ms) == 1 &&
             recv(fd, reply, sizeof(reply), 0) >= 12 && reply[0] == 0x12 &&
             reply[1] == 0x34;
    }
    close(fd);
    return ok;
}

static void server_log_tail(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/unbound.log", srv.dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    char line[256];
    size_t used = strlen(srv.why);
    while (fgets(line, sizeof(line), f) != NULL && used + 1 < sizeof(srv.why)) {
        snprintf(srv.why + used, sizeof(srv.why) - used, " | %s", line);
        used = strlen(srv.why);
    }
    fclose(f);
}

static void server_stop(void)
{
    if (srv.pid <= 0) {
        return;
    }
    kill(srv.pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(srv.pid, NULL, WNOHANG) == srv.pid) {
            srv.pid = 0;
            return;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
}

static bool server_start(void)
{
    char conf[128];
    snprintf(conf, sizeof(conf), "%s/unbound.conf", srv.dir);
    pid_t pid = fork();
    if (pid < 0) {
        return server_fail("fork for", UNBOUND_BIN);
    }
    if (pid == 0) {
        /* the server goes with the test process, however that ends */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execl(UNBOUND_BIN, "unbound", "-d", "-c", conf, (char *)NULL);
        _exit(127);
    }
    srv.pid = pid;
    for (int i = 0; i < 100; i++) {
        if (server_answers(50)) {
            return true;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            srv.pid = 0;
            snprintf(srv.why, sizeof(srv.why), "unbound exited (status %d)",
                     status);
            server_log_tail();
            return false;
        }
    }
    snprintf(srv.why, sizeof(srv.why), "unbound on %s does not answer",
             srv.fwd);
    server_log_tail();
    server_stop();
    return false;
}

static void server_remove_dir(void)
{
    static const char *const files[] = {"unbound.conf", "unbound.pid",
                                        "unbound.log", "hosts"};
    if (srv.dir[0] == '\0') {
        return;
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", srv.dir, files[i]);
        unlink(path);
    }
    rmdir(srv.dir);
    srv.dir[0] = '\0';
}

/* Unchecked fixture: runs in the test process itself, so the teardown runs
 * even when a forked test fails or crashes. It asserts nothing (a failed
 * assertion here would end the whole run); each test checks srv.ok. */
static void live_setup(void)
{
    memset(&srv, 0, sizeof(srv));
    snprintf(srv.dir, sizeof(srv.dir), "/tmp/check_dns.XXXXXX");
    if (mkdtemp(srv.dir) == NULL) {
        server_fail("mkdtemp", "/tmp/check_dns.XXXXXX");
        srv.dir[0] = '\0';
        return;
    }
    srv.ok = server_pick_address() && server_write_config() && server_start();
}

static void live_teardown(void)
{
    server_stop();
    server_remove_dir();
    srv.ok = false;
}

static struct dns *live_dns(struct loop *loop, const char *hosts_file)
{
    ck_assert_msg(srv.ok, "test unbound: %s", srv.why);
    const char *fwd[] = {srv.fwd};
    struct dns_settings s = {
        .forwarders = fwd, .nforwarders = 1, .hosts_file = hosts_file};
    char err[256];
    struct dns *dns = dns_new(loop, &s, err, sizeof(err));
    ck_assert_msg(dns != NULL, "dns_new: %s", err);
    return dns;
}

/* ---- live cases --------------------------------------------------------- */

static void resolve_s2s(struct loop *loop,
                        struct dns *dns,
                        const char *domain,
                        struct got *g)
{
    memset(g, 0, sizeof(*g));
    ck_assert_int_eq(dns_resolve_s2s(dns, domain, got_targets, g, NULL), 0);
    ck_assert_int_eq(g->calls, 0);
    RUN_UNTIL(loop, g->calls > 0, 5000);
    ck_assert_int_eq(g->calls, 1);
}

START_TEST(test_live_srv_merged)
{
    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, NULL);
    struct got g;
    int xmpp1_first = 0;
    for (int round = 0; round < 40; round++) {
        resolve_s2s(loop, dns, "peer.test", &g);
        ck_assert_int_eq(g.err, 0);
        ck_assert_uint_eq(g.ntargets, 4);
        /* priority 5 (direct TLS), then 10 (two, by weight), then 20 */
        ck_assert_str_eq(g.targets[0].host, "tls.peer.test");
        ck_assert_uint_eq(g.targets[0].port, 5270);
        ck_assert(g.targets[0].direct_tls);
        for (int i = 1; i < 4; i++) {
            ck_assert(!g.targets[i].direct_tls);
            ck_assert(!g.targets[i].secure); /* no DNSSEC here */
        }
        ck_assert((strcmp(g.targets[1].host, "xmpp1.peer.test") == 0 &&
                   strcmp(g.targets[2].host, "xmpp2.peer.test") == 0) ||
                  (strcmp(g.targets[1].host, "xmpp2.peer.test") == 0 &&
                   strcmp(g.targets[2].host, "xmpp1.peer.test") == 0));
        ck_assert_uint_eq(g.targets[1].port, 5269);
        ck_assert_str_eq(g.targets[3].host, "backup.peer.test");
        ck_assert_uint_eq(g.targets[3].port, 15269);
        xmpp1_first += strcmp(g.targets[1].host, "xmpp1.peer.test") == 0;
    }
    /* weights 60/40 with the system's random source: both orders occur
     * (all 40 the same has probability below 1e-8) */
    ck_assert_msg(xmpp1_first > 0 && xmpp1_first < 40, "xmpp1 first %d/40",
                  xmpp1_first);
    dns_free(dns);
    loop_free(loop);
}
END_TEST

START_TEST(test_live_fallback_without_srv)
{
    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, NULL);
    struct got g;
    /* the name exists (A) but has no SRV: NXDOMAIN for both SRV names */
    resolve_s2s(loop, dns, "nosrv.test", &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_uint_eq(g.ntargets, 1);
    ck_assert_str_eq(g.targets[0].host, "nosrv.test");
    ck_assert_uint_eq(g.targets[0].port, 5269);
    ck_assert(!g.targets[0].direct_tls);
    dns_free(dns);
    loop_free(loop);
}
END_TEST

START_TEST(test_live_dot_means_no_service)
{
    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, NULL);
    struct got g;
    resolve_s2s(loop, dns, "nodtls.test", &g);
    ck_assert_int_eq(g.err, ERR_NOT_FOUND);
    ck_assert_uint_eq(g.ntargets, 0);
    /* "." for plain only: the direct TLS record is used, no fallback */
    resolve_s2s(loop, dns, "dtlsonly.test", &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_uint_eq(g.ntargets, 1);
    ck_assert_str_eq(g.targets[0].host, "tls.dtlsonly.test");
    ck_assert_uint_eq(g.targets[0].port, 5223);
    ck_assert(g.targets[0].direct_tls);
    dns_free(dns);
    loop_free(loop);
}
END_TEST

static void resolve_addrs(struct loop *loop,
                          struct dns *dns,
                          const char *host,
                          uint16_t port,
                          struct got *g)
{
    memset(g, 0, sizeof(*g));
    ck_assert_int_eq(dns_resolve_addrs(dns, host, port, got_addrs, g, NULL), 0);
    ck_assert_int_eq(g->calls, 0);
    RUN_UNTIL(loop, g->calls > 0, 5000);
    ck_assert_int_eq(g->calls, 1);
}

START_TEST(test_live_addrs)
{
    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, NULL);
    struct got g;
    char buf[80];
    resolve_addrs(loop, dns, "dual.test", 5269, &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_uint_eq(g.naddrs, 3);
    ck_assert(!g.secure);
    /* IPv6 first, then interleaved */
    ck_assert_str_eq(addr_str(&g.addrs[0], buf, sizeof(buf)),
                     "[2001:db8::1]:5269");
    const char *a1 = addr_str(&g.addrs[1], buf, sizeof(buf));
    ck_assert(strcmp(a1, "192.0.2.1:5269") == 0 ||
              strcmp(a1, "192.0.2.2:5269") == 0);
    char buf2[80];
    ck_assert_str_ne(addr_str(&g.addrs[2], buf2, sizeof(buf2)), a1);
    ck_assert_int_eq(g.addrs[2].ss.ss_family, AF_INET);

    resolve_addrs(loop, dns, "v4only.test", 15269, &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_uint_eq(g.naddrs, 1);
    ck_assert_str_eq(addr_str(&g.addrs[0], buf, sizeof(buf)),
                     "192.0.2.7:15269");
    dns_free(dns);
    loop_free(loop);
}
END_TEST

START_TEST(test_live_nxdomain)
{
    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, NULL);
    struct got g;
    resolve_addrs(loop, dns, "missing.test", 5269, &g);
    ck_assert_int_eq(g.err, ERR_NOT_FOUND);
    ck_assert_uint_eq(g.naddrs, 0);
    /* a name with SRV records but no address: no data, also not found */
    resolve_addrs(loop, dns, "_xmpp-server._tcp.peer.test", 5269, &g);
    ck_assert_int_eq(g.err, ERR_NOT_FOUND);
    dns_free(dns);
    loop_free(loop);
}
END_TEST

START_TEST(test_live_cancel)
{
    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, NULL);
    struct got cancelled_s2s = {0};
    struct got cancelled_addrs = {0};
    struct dns_query *q1 = NULL;
    struct dns_query *q2 = NULL;
    ck_assert_int_eq(
        dns_resolve_s2s(dns, "peer.test", got_targets, &cancelled_s2s, &q1), 0);
    ck_assert_int_eq(dns_resolve_addrs(dns, "dual.test", 1, got_addrs,
                                       &cancelled_addrs, &q2),
                     0);
    ck_assert_ptr_nonnull(q1);
    ck_assert_ptr_nonnull(q2);
    dns_cancel(dns, q1);
    dns_cancel(dns, q2);
    /* the same questions again: their answers arrive, the cancelled ones'
     * would have too */
    struct got g;
    resolve_s2s(loop, dns, "peer.test", &g);
    ck_assert_int_eq(g.err, 0);
    resolve_addrs(loop, dns, "dual.test", 1, &g);
    ck_assert_int_eq(g.err, 0);
    RUN_UNTIL(loop, false, 200);
    ck_assert_int_eq(cancelled_s2s.calls, 0);
    ck_assert_int_eq(cancelled_addrs.calls, 0);

    /* freeing the resolver with a query in flight: no callback either */
    struct got dropped = {0};
    ck_assert_int_eq(
        dns_resolve_s2s(dns, "dtlsonly.test", got_targets, &dropped, NULL), 0);
    dns_free(dns);
    RUN_UNTIL(loop, false, 200);
    ck_assert_int_eq(dropped.calls, 0);
    loop_free(loop);
}
END_TEST

START_TEST(test_live_hosts_file)
{
    char path[128];
    ck_assert_msg(srv.ok, "test unbound: %s", srv.why);
    snprintf(path, sizeof(path), "%s/hosts", srv.dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "# hosts for check_dns\n127.0.9.9 hostsonly.test\n"
               "192.0.2.99 dual.test\n");
    ck_assert_int_eq(fclose(f), 0);

    struct loop *loop = loop_new();
    struct dns *dns = live_dns(loop, path);
    struct got g;
    char buf[80];
    /* the server does not know this name: the answer is the hosts file's */
    resolve_addrs(loop, dns, "hostsonly.test", 5269, &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_uint_eq(g.naddrs, 1);
    ck_assert_str_eq(addr_str(&g.addrs[0], buf, sizeof(buf)), "127.0.9.9:5269");
    /* and it overrides what the server would say */
    resolve_addrs(loop, dns, "dual.test", 5269, &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_uint_eq(g.naddrs, 1);
    ck_assert_str_eq(addr_str(&g.addrs[0], buf, sizeof(buf)),
                     "192.0.2.99:5269");
    /* other names still go to the server */
    resolve_addrs(loop, dns, "v4only.test", 5269, &g);
    ck_assert_int_eq(g.err, 0);
    ck_assert_str_eq(addr_str(&g.addrs[0], buf, sizeof(buf)), "192.0.2.7:5269");
    dns_free(dns);
    loop_free(loop);
}
END_TEST

static Suite *dns_suite(bool live)
{
    Suite *s = suite_create("dns");
    TCase *tp = tcase_create("srv");
    tcase_add_test(tp, test_parse_srv);
    tcase_add_test(tp, test_parse_srv_malformed);
    tcase_add_test(tp, test_order_by_priority);
    tcase_add_test(tp, test_order_selection_rule);
    tcase_add_test(tp, test_order_weight_distribution);
    tcase_add_test(tp, test_order_zero_weights);
    tcase_add_test(tp, test_targets_merge);
    tcase_add_test(tp, test_targets_dot_and_fallback);
    tcase_add_test(tp, test_targets_failures);
    suite_add_tcase(s, tp);
    TCase *tr = tcase_create("resolver");
    tcase_add_test(tr, test_settings_errors);
    tcase_add_test(tr, test_literal_is_deferred);
    tcase_add_test(tr, test_test_zone_kept_without_forwarders);
    tcase_add_test(tr, test_invalid_names);
    tcase_add_test(tr, test_cancel_from_callback);
    tcase_add_test(tr, test_free_from_callback);
    suite_add_tcase(s, tr);
    if (live) {
        TCase *tl = tcase_create("live");
        tcase_set_timeout(tl, 30);
        tcase_add_unchecked_fixture(tl, live_setup, live_teardown);
        tcase_add_test(tl, test_live_srv_merged);
        tcase_add_test(tl, test_live_fallback_without_srv);
        tcase_add_test(tl, test_live_dot_means_no_service);
        tcase_add_test(tl, test_live_addrs);
        tcase_add_test(tl, test_live_nxdomain);
        tcase_add_test(tl, test_live_cancel);
        tcase_add_test(tl, test_live_hosts_file);
        suite_add_tcase(s, tl);
    }
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, false, "check_dns");
    bool live = access(UNBOUND_BIN, X_OK) == 0;
    if (!live) {
        fprintf(stderr, "check_dns: SKIP live cases: %s not found\n",
                UNBOUND_BIN);
    }
    SRunner *sr = srunner_create(dns_suite(live));
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
