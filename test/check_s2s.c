/*
 * check_s2s.c: two peering engines (a.test and b.test) in one event loop,
 * talking over loopback TCP with real TLS and certificates from a CA made
 * at test time: SASL EXTERNAL, dialback, policy refusals, an unreachable
 * peer, and the observable route state.
 */
#include "config.h"

#include "conf.h"
#include "dns.h"
#include "err.h"
#include "log.h"
#include "loop.h"
#include "s2s.h"
#include "tls.h"
#include "xml.h"

#include <arpa/inet.h>
#include <check.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char dir[64];

/* Runs a command (argv, NULL-terminated) and requires success. */
static void run(char *const argv[])
{
    pid_t pid;
    int status = 0;
    posix_spawn_file_actions_t fa;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    ck_assert_int_eq(
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0), 0);
    ck_assert_int_eq(
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0), 0);
    ck_assert_int_eq(posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed",
                  argv[0]);
}

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* A leaf certificate for domain signed by the test CA. */
static void make_leaf(const char *domain)
{
    char key[128], csr[128], crt[128], ext[128], ca[128], cakey[128];
    char san[160];
    char subj[160];
    snprintf(key, sizeof(key), "%s/%s.key", dir, domain);
    snprintf(csr, sizeof(csr), "%s/%s.csr", dir, domain);
    snprintf(crt, sizeof(crt), "%s/%s.crt", dir, domain);
    snprintf(ext, sizeof(ext), "%s/%s.ext", dir, domain);
    path_of(ca, sizeof(ca), "ca.crt");
    path_of(cakey, sizeof(cakey), "ca.key");
    snprintf(subj, sizeof(subj), "/CN=%s", domain);
    FILE *f = fopen(ext, "w");
    ck_assert_ptr_nonnull(f);
    snprintf(san, sizeof(san), "subjectAltName=DNS:%s\n", domain);
    fputs("basicConstraints=critical,CA:FALSE\n"
          "extendedKeyUsage=serverAuth,clientAuth\n",
          f);
    fputs(san, f);
    fclose(f);
    char *req[] = {"openssl", "req", "-new",     "-nodes",
                   "-newkey", "ec",  "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-keyout", key,   "-out",     csr,
                   "-subj",   subj,  NULL};
    run(req);
    char *sign[] = {"openssl", "x509", "-req",     "-in", csr,
                    "-CA",     ca,     "-CAkey",   cakey, "-CAcreateserial",
                    "-days",   "2",    "-extfile", ext,   "-out",
                    crt,       NULL};
    run(sign);
}

static void setup_pki(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_s2s.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ca[128], cakey[128];
    path_of(ca, sizeof(ca), "ca.crt");
    path_of(cakey, sizeof(cakey), "ca.key");
    char *mkca[] = {"openssl",
                    "req",
                    "-x509",
                    "-new",
                    "-nodes",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-keyout",
                    cakey,
                    "-out",
                    ca,
                    "-days",
                    "2",
                    "-subj",
                    "/CN=check_s2s CA",
                    NULL};
    run(mkca);
    make_leaf("a.test");
    make_leaf("b.test");
    make_leaf("other.test");
}

static void teardown_pki(void)
{
    char *rm[] = {"rm", "-rf", dir, NULL};
    run(rm);
}

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* One side: config, TLS, resolver, engine and what it received. */
struct side {
    struct conf *cfg;
    struct tls_ctx *tls;
    struct dns *dns;
    struct s2s *s2s;
    int received;
    int undeliverable;
    char condition[64];
    char text[256];
    char last_from[128];
};

static void side_stanza(void *ud, struct xml_node *st)
{
    struct side *s = ud;
    s->received++;
    snprintf(s->last_from, sizeof(s->last_from), "%s",
             xml_attr(st, "from") != NULL ? xml_attr(st, "from") : "");
    xml_unref(st);
}

static void side_undeliverable(void *ud,
                               struct xml_node *st,
                               const char *condition,
                               const char *text)
{
    struct side *s = ud;
    s->undeliverable++;
    snprintf(s->condition, sizeof(s->condition), "%s", condition);
    snprintf(s->text, sizeof(s->text), "%s", text != NULL ? text : "");
    xml_unref(st);
}

/* Writes and loads a config for domain peering with peer at peer_port. */
static struct conf *side_conf(const char *domain,
                              const char *peer,
                              unsigned own_port,
                              unsigned peer_port,
                              const char *auth,
                              const char *cert_domain)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s.conf", dir, domain);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "service_jid = \"fedgate.%s\";\n"
            "domains = [ \"%s\" ];\n"
            "upstream = { secret = \"x\"; };\n"
            "peers = ( { domain = \"%s\"; host = \"127.0.0.1\"; port = %u;"
            " auth = \"%s\"; } );\n"
            "s2s = { listen = [ \"127.0.0.1:%u\" ];"
            " negotiate_timeout = 10; };\n"
            "tls = { certificate = \"%s/%s.crt\"; key = \"%s/%s.key\";"
            " ca_file = \"%s/ca.crt\"; };\n"
            "log = { level = \"error\"; };\n"
            "state_db = \"%s/%s.db\";\n",
            domain, domain, peer, peer_port, auth, own_port, dir, cert_domain,
            dir, cert_domain, dir, dir, domain);
    fclose(f);
    struct conf *cfg = NULL;
    ck_assert_int_eq(conf_load(path, &cfg, stderr), 0);
    return cfg;
}

static void side_start(struct side *s, struct loop *loop, struct conf *cfg)
{
    static const struct s2s_callbacks cb = {side_stanza, side_undeliverable};
    char err[256];
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    struct tls_settings ts = {.cert_file = cfg->tls_cert,
                              .key_file = cfg->tls_key,
                              .ca_file = cfg->tls_ca};
    s->tls = tls_ctx_new(&ts, err, sizeof(err));
    ck_assert_msg(s->tls != NULL, "tls: %s", err);
    struct dns_settings ds = {0};
    s->dns = dns_new(loop, &ds, err, sizeof(err));
    ck_assert_msg(s->dns != NULL, "dns: %s", err);
    s->s2s = s2s_new(loop, cfg, s->dns, s->tls, &cb, s, err, sizeof(err));
    ck_assert_msg(s->s2s != NULL, "s2s: %s", err);
    ck_assert_int_eq(s2s_listen(s->s2s), 0);
}

static void side_stop(struct side *s)
{
    s2s_free(s->s2s);
    dns_free(s->dns);
    tls_ctx_free(s->tls);
    conf_free(s->cfg);
}

#define RUN_UNTIL(loop, cond, ms)                         \
    do {                                                  \
        uint64_t until_ = loop_now_ms(loop) + (ms);       \
        while (!(cond) && loop_now_ms(loop) < until_) {   \
            ck_assert_int_eq(loop_run_once(loop, 10), 0); \
        }                                                 \
    } while (0)

static struct xml_node *chat(const char *from, const char *to)
{
    struct xml_node *m = xml_element_new(XML_NS_COMPONENT, "message");
    ck_assert_int_eq(xml_set_attr(m, "from", from), 0);
    ck_assert_int_eq(xml_set_attr(m, "to", to), 0);
    ck_assert_int_eq(xml_set_attr(m, "type", "chat"), 0);
    struct xml_node *b = xml_add_child(m, NULL, "body");
    ck_assert_int_eq(xml_append_text(b, "hi", 2), 0);
    return m;
}

static void route_of(struct side *s, struct s2s_route_info *info)
{
    ck_assert_uint_ge(s2s_route_count(s->s2s), 1);
    s2s_route_info(s->s2s, 0, info);
}

/* Both engines up, a.test sends to b.test; returns after delivery. */
static void exchange_with(const char *auth_a,
                          const char *auth_b,
                          const char *want_auth,
                          const char *cert_a,
                          const char *cert_b)
{
    struct loop *loop = loop_new();
    unsigned pa = free_port();
    unsigned pb = free_port();
    struct side a, b;
    side_start(&a, loop, side_conf("a.test", "b.test", pa, pb, auth_a, cert_a));
    side_start(&b, loop, side_conf("b.test", "a.test", pb, pa, auth_b, cert_b));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/x", "bob@b.test")), 0);
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/y", "bob@b.test")), 0);
    RUN_UNTIL(loop, b.received == 2 || a.undeliverable > 0, 8000);
    ck_assert_msg(a.undeliverable == 0, "bounced: %s %s", a.condition, a.text);
    ck_assert_int_eq(b.received, 2);
    ck_assert_str_eq(b.last_from, "alice@a.test/y");
    struct s2s_route_info info;
    route_of(&a, &info);
    ck_assert_str_eq(info.state, "ready");
    ck_assert_str_eq(info.auth, want_auth);
    ck_assert_ptr_nonnull(info.tls_version);
    ck_assert_uint_eq(info.stanzas_out, 2);
    ck_assert_ptr_nonnull(strstr(info.peer_subject, cert_b));
    /* and back the other way */
    ck_assert_int_eq(s2s_send(b.s2s, chat("bob@b.test/z", "alice@a.test")), 0);
    RUN_UNTIL(loop, a.received == 1 || b.undeliverable > 0, 8000);
    ck_assert_int_eq(a.received, 1);
    side_stop(&a);
    side_stop(&b);
    loop_free(loop);
}

START_TEST(test_sasl_external_both_ways)
{
    exchange_with("any", "any", "sasl-external", "a.test", "b.test");
}
END_TEST

/* Certificates valid for the domains: dialback is asked for, and the
 * receiving side takes the certificate as proof (XEP-0344). */
START_TEST(test_dialback_with_valid_certificates)
{
    exchange_with("dialback", "dialback", "dialback", "a.test", "b.test");
}
END_TEST

/* Certificates that prove nothing (valid chain, other name): dialback
 * with the full round trip to the authoritative server (db:verify). */
START_TEST(test_dialback_verified_by_authoritative_server)
{
    exchange_with("any", "any", "dialback", "other.test", "other.test");
}
END_TEST

START_TEST(test_untrusted_domain_bounces_at_once)
{
    struct loop *loop = loop_new();
    struct side a;
    side_start(&a, loop,
               side_conf("a.test", "b.test", free_port(), 9, "any", "a.test"));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test", "eve@c.test")),
                     ERR_AUTH);
    ck_assert_int_eq(a.undeliverable, 1);
    ck_assert_str_eq(a.condition, "remote-server-not-found");
    ck_assert_ptr_nonnull(strstr(a.text, "not a trusted peer"));
    side_stop(&a);
    loop_free(loop);
}
END_TEST

START_TEST(test_unreachable_peer_bounces)
{
    struct loop *loop = loop_new();
    struct side a;
    unsigned closed = free_port(); /* nothing listens there */
    side_start(
        &a, loop,
        side_conf("a.test", "b.test", free_port(), closed, "any", "a.test"));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test", "bob@b.test")), 0);
    RUN_UNTIL(loop, a.undeliverable == 1, 5000);
    ck_assert_int_eq(a.undeliverable, 1);
    ck_assert_str_eq(a.condition, "remote-server-not-found");
    ck_assert_ptr_nonnull(strstr(a.text, "refused"));
    struct s2s_route_info info;
    route_of(&a, &info);
    ck_assert_str_eq(info.state, "idle");
    ck_assert_ptr_nonnull(info.last_error);
    side_stop(&a);
    loop_free(loop);
}
END_TEST

START_TEST(test_certificate_only_peer_with_wrong_name)
{
    /* b.test presents a certificate for a.test: not valid for b.test, and
     * a.test accepts only certificates from b.test */
    struct loop *loop = loop_new();
    unsigned pa = free_port();
    unsigned pb = free_port();
    struct side a, b;
    side_start(&a, loop,
               side_conf("a.test", "b.test", pa, pb, "certificate", "a.test"));
    side_start(&b, loop,
               side_conf("b.test", "a.test", pb, pa, "any", "a.test"));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test", "bob@b.test")), 0);
    RUN_UNTIL(loop, a.undeliverable == 1, 8000);
    ck_assert_int_eq(a.undeliverable, 1);
    ck_assert_int_eq(b.received, 0);
    side_stop(&a);
    side_stop(&b);
    loop_free(loop);
}
END_TEST

static Suite *s2s_suite(void)
{
    Suite *s = suite_create("s2s");
    TCase *tc = tcase_create("engines");
    tcase_add_unchecked_fixture(tc, setup_pki, teardown_pki);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_sasl_external_both_ways);
    tcase_add_test(tc, test_dialback_with_valid_certificates);
    tcase_add_test(tc, test_dialback_verified_by_authoritative_server);
    tcase_add_test(tc, test_untrusted_domain_bounces_at_once);
    tcase_add_test(tc, test_unreachable_peer_bounces);
    tcase_add_test(tc, test_certificate_only_peer_with_wrong_name);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, false, "check_s2s");
    if (getenv("CHECK_S2S_DEBUG") != NULL) {
        log_setup(LOG_LEVEL_DEBUG, false, "check_s2s");
    }
    SRunner *sr = srunner_create(s2s_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
