/*
 * check_policy.c: the peering policy as a table: configured peers with
 * every auth setting, facts about a stream, and the decision, reason and
 * condition expected for each combination. The configuration is built in
 * memory, not parsed.
 */
#include "config.h"

#include "policy.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct conf_service b_services[] = {
    {.domain = "conference.b.test", .secret = NULL, .line = 3},
    {.domain = "pubsub.b.test", .secret = NULL, .line = 4},
};

/* Each peer named after what sets it apart. */
static struct conf_peer peers[] = {
    {.domain = "b.test",
     .services = b_services,
     .nservices = 2,
     .trusted = true,
     .tls_required = true,
     .auth = CONF_AUTH_ANY},
    {.domain = "cert.test",
     .trusted = true,
     .tls_required = true,
     .auth = CONF_AUTH_CERTIFICATE},
    {.domain = "db.test",
     .trusted = true,
     .tls_required = true,
     .auth = CONF_AUTH_DIALBACK},
    {.domain = "plain.test",
     .trusted = true,
     .tls_required = false,
     .auth = CONF_AUTH_ANY},
    {.domain = "plaincert.test",
     .trusted = true,
     .tls_required = false,
     .auth = CONF_AUTH_CERTIFICATE},
    {.domain = "untrusted.test",
     .trusted = false,
     .tls_required = true,
     .auth = CONF_AUTH_ANY},
};

static char *local_domains[] = {"a.test"};

static struct conf test_conf = {
    .domains = local_domains,
    .ndomains = 1,
    .peers = peers,
    .npeers = sizeof(peers) / sizeof(peers[0]),
};

/* facts shorthand */
enum {
    T = 1,      /* TLS */
    P = 2,      /* certificate present */
    C = 4,      /* chain verified */
    N = 8,      /* valid for the domain */
    GOOD = 15,  /* TLS with a certificate valid for the domain */
    SELF = 11,  /* TLS, certificate for the domain, chain not verified */
    OTHER = 7,  /* TLS, verified certificate for another name */
    NOCERT = 1, /* TLS, no certificate */
    B = 16,     /* an administrator blocked the domain */
};

#define EXT  POLICY_AUTH_SASL_EXTERNAL
#define DB   POLICY_AUTH_DIALBACK
#define NONE POLICY_AUTH_NONE

#define NA "not-authorized"
#define PV "policy-violation"

struct policy_case {
    const char *domain;
    unsigned facts;
    enum policy_auth auth;
    bool allow;
    const char *reason;
    const char *condition; /* NULL when allowed */
};

static const struct policy_case cases[] = {
    /* 0. a blocked domain, however good its proof or configuration */
    {"b.test", GOOD | B, EXT, false, "domain blocked by an administrator", NA},
    {"plain.test", B, DB, false, "domain blocked by an administrator", NA},
    {"unknown.test", GOOD | B, DB, false, "domain blocked by an administrator",
     NA},
    /* 1. unknown domains, whatever they prove */
    {"unknown.test", GOOD, EXT, false, "not a configured peer", NA},
    {"unknown.test", GOOD, DB, false, "not a configured peer", NA},
    {"c.b.test", GOOD, EXT, false, "not a configured peer", NA},
    {"", GOOD, EXT, false, "not a configured peer", NA},
    {NULL, GOOD, EXT, false, "not a configured peer", NA},
    /* 2. trusted = false wins over a perfect certificate */
    {"untrusted.test", GOOD, EXT, false, "peer not trusted", NA},
    {"untrusted.test", GOOD, DB, false, "peer not trusted", NA},
    {"untrusted.test", 0, DB, false, "peer not trusted", NA},
    /* 3. TLS required */
    {"b.test", 0, DB, false, "TLS required", PV},
    {"b.test", 0, EXT, false, "TLS required", PV},
    {"b.test", 0, NONE, false, "TLS required", PV},
    {"cert.test", 0, EXT, false, "TLS required", PV},
    {"db.test", 0, DB, false, "TLS required", PV},
    /* 4. no method */
    {"b.test", GOOD, NONE, false, "not authenticated", NA},
    {"plain.test", 0, NONE, false, "not authenticated", NA},
    /* 5. SASL EXTERNAL, auth = any */
    {"b.test", GOOD, EXT, true,
     "certificate valid for the domain (SASL EXTERNAL)", NULL},
    {"b.test", NOCERT, EXT, false, "SASL EXTERNAL without a certificate", NA},
    {"b.test", SELF, EXT, false, "certificate chain not verified", NA},
    {"b.test", OTHER, EXT, false, "certificate not valid for the domain", NA},
    /* inconsistent facts: no certificate but flags set */
    {"b.test", T | C | N, EXT, false, "SASL EXTERNAL without a certificate",
     NA},
    /* auth = certificate */
    {"cert.test", GOOD, EXT, true,
     "certificate valid for the domain (SASL EXTERNAL)", NULL},
    {"cert.test", SELF, EXT, false, "certificate chain not verified", NA},
    {"cert.test", OTHER, EXT, false, "certificate not valid for the domain",
     NA},
    /* auth = dialback refuses SASL EXTERNAL even with a good certificate */
    {"db.test", GOOD, EXT, false, "peer allows dialback only", PV},
    /* SASL EXTERNAL cannot happen without TLS where TLS is optional */
    {"plain.test", P | C | N, EXT, false, "SASL EXTERNAL without TLS", NA},
    {"plaincert.test", P | C | N, EXT, false, "SASL EXTERNAL without TLS", NA},
    {"plaincert.test", GOOD, EXT, true,
     "certificate valid for the domain (SASL EXTERNAL)", NULL},
    /* 6. dialback, auth = any: allowed whatever the certificate (XEP-0344) */
    {"b.test", GOOD, DB, true, "dialback over TLS", NULL},
    {"b.test", SELF, DB, true, "dialback over TLS", NULL},
    {"b.test", OTHER, DB, true, "dialback over TLS", NULL},
    {"b.test", NOCERT, DB, true, "dialback over TLS", NULL},
    /* auth = dialback */
    {"db.test", NOCERT, DB, true, "dialback over TLS", NULL},
    {"db.test", GOOD, DB, true, "dialback over TLS", NULL},
    /* auth = certificate refuses dialback, even over TLS with a cert */
    {"cert.test", SELF, DB, false, "peer requires certificate authentication",
     PV},
    {"cert.test", GOOD, DB, false, "peer requires certificate authentication",
     PV},
    {"plaincert.test", 0, DB, false, "peer requires certificate authentication",
     PV},
    /* plain dialback where TLS is optional */
    {"plain.test", 0, DB, true, "dialback", NULL},
    {"plain.test", NOCERT, DB, true, "dialback over TLS", NULL},
    /* service domains follow their peer's policy */
    {"conference.b.test", GOOD, EXT, true,
     "certificate valid for the domain (SASL EXTERNAL)", NULL},
    {"pubsub.b.test", SELF, DB, true, "dialback over TLS", NULL},
    {"conference.b.test", 0, DB, false, "TLS required", PV},
};

START_TEST(test_policy_table)
{
    const struct policy_case *c = &cases[_i];
    struct policy_facts f = {
        .remote_domain = c->domain,
        .tls = (c->facts & T) != 0,
        .cert_present = (c->facts & P) != 0,
        .cert_chain_ok = (c->facts & C) != 0,
        .cert_name_ok = (c->facts & N) != 0,
        .auth = c->auth,
        .blocked = (c->facts & B) != 0,
    };
    struct policy_decision d = {.allow = !c->allow};
    policy_check(&test_conf, &f, &d);
    ck_assert_msg(d.allow == c->allow, "case %d (%s facts %u auth %d): %s", _i,
                  c->domain != NULL ? c->domain : "(null)", c->facts,
                  (int)c->auth, d.reason);
    ck_assert_ptr_nonnull(d.reason);
    ck_assert_msg(strcmp(d.reason, c->reason) == 0, "case %d: reason '%s'", _i,
                  d.reason);
    if (c->condition == NULL) {
        ck_assert_ptr_null(d.condition);
    } else {
        ck_assert_ptr_nonnull(d.condition);
        ck_assert_str_eq(d.condition, c->condition);
    }
}
END_TEST

START_TEST(test_send_policy)
{
    struct policy_decision d = {.allow = false};
    policy_check_send(&test_conf, "b.test", false, &d);
    ck_assert(d.allow);
    ck_assert_ptr_null(d.condition);
    policy_check_send(&test_conf, "b.test", true, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.reason, "domain blocked by an administrator");
    ck_assert_str_eq(d.condition, "not-allowed");
    policy_check_send(&test_conf, "untrusted.test", false, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.reason, "peer not trusted");
    ck_assert_str_eq(d.condition, "remote-server-not-found");
    policy_check_send(&test_conf, "unknown.test", false, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.reason, "not a configured peer");
    /* a blocked service domain of a trusted peer */
    policy_check_send(&test_conf, "conference.b.test", true, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.condition, "not-allowed");
}
END_TEST

START_TEST(test_peer_lookup)
{
    ck_assert_ptr_eq(policy_peer(&test_conf, "b.test"), &peers[0]);
    ck_assert_ptr_eq(policy_peer(&test_conf, "db.test"), &peers[2]);
    ck_assert_ptr_eq(policy_peer(&test_conf, "conference.b.test"), &peers[0]);
    ck_assert_ptr_eq(policy_peer(&test_conf, "pubsub.b.test"), &peers[0]);
    ck_assert_ptr_null(policy_peer(&test_conf, "x.b.test"));
    ck_assert_ptr_null(policy_peer(&test_conf, "test"));
    ck_assert_ptr_null(policy_peer(&test_conf, "a.test")); /* local */
    ck_assert_ptr_null(policy_peer(&test_conf, ""));
    ck_assert_ptr_null(policy_peer(&test_conf, NULL));
    ck_assert_ptr_null(policy_peer(NULL, "b.test"));
    /* domains are compared in normalised form: no case folding here */
    ck_assert_ptr_null(policy_peer(&test_conf, "B.test"));
}
END_TEST

/* A peer's own domain wins over another peer's service of that name. */
START_TEST(test_peer_domain_wins_over_service)
{
    struct conf_service svc[] = {{.domain = "c.test"}};
    struct conf_peer p[] = {
        {.domain = "b.test", .services = svc, .nservices = 1, .trusted = true},
        {.domain = "c.test", .trusted = false},
    };
    struct conf cfg = {.peers = p, .npeers = 2};
    ck_assert_ptr_eq(policy_peer(&cfg, "c.test"), &p[1]);
    struct policy_facts f = {.remote_domain = "c.test",
                             .tls = true,
                             .cert_present = true,
                             .cert_chain_ok = true,
                             .cert_name_ok = true,
                             .auth = POLICY_AUTH_SASL_EXTERNAL};
    struct policy_decision d;
    policy_check(&cfg, &f, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.reason, "peer not trusted");
}
END_TEST

START_TEST(test_no_peers)
{
    struct conf cfg = {.peers = NULL, .npeers = 0};
    struct policy_facts f = {
        .remote_domain = "b.test", .tls = true, .auth = POLICY_AUTH_DIALBACK};
    struct policy_decision d;
    policy_check(&cfg, &f, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.reason, "not a configured peer");
    ck_assert_str_eq(d.condition, "not-authorized");
}
END_TEST

START_TEST(test_missing_arguments_deny)
{
    struct policy_facts f = {
        .remote_domain = "b.test", .tls = true, .auth = POLICY_AUTH_DIALBACK};
    struct policy_decision d = {.allow = true};
    policy_check(NULL, &f, &d);
    ck_assert(!d.allow);
    ck_assert_str_eq(d.condition, "not-authorized");
    d.allow = true;
    policy_check(&test_conf, NULL, &d);
    ck_assert(!d.allow);
    policy_check(&test_conf, &f, NULL); /* nothing to write: no crash */
}
END_TEST

static Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("rules");
    tcase_add_loop_test(tc, test_policy_table, 0,
                        (int)(sizeof(cases) / sizeof(cases[0])));
    tcase_add_test(tc, test_no_peers);
    tcase_add_test(tc, test_send_policy);
    tcase_add_test(tc, test_missing_arguments_deny);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("peer");
    tcase_add_test(tp, test_peer_lookup);
    tcase_add_test(tp, test_peer_domain_wins_over_service);
    suite_add_tcase(s, tp);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(policy_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
