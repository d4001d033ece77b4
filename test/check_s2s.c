/*
 * check_s2s.c: two peering engines (a.test and b.test) in one event loop,
 * talking over loopback TCP with real TLS and certificates from a CA made
 * at test time: SASL EXTERNAL, dialback, policy refusals, an unreachable
 * peer, the observable route state, a second local domain with a
 * certificate of its own (SNI), and XEP-0199 pings on silent routes (the
 * owner of the other engine plays the home server that answers them, or
 * stays silent).
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
#include <openssl/ssl.h>
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
    make_leaf("a2.test");
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

/* How a side's owner (the home server) answers XEP-0199 pings. */
enum answer { ANSWER_NONE, ANSWER_RESULT, ANSWER_ERROR };

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
    enum answer answer;
    int iq_answers;   /* iq results and errors the owner got */
    int pings;        /* XEP-0199 pings the owner got */
    char ping_id[64]; /* the last one, until answered */
    char ping_from[128];
    char ping_to[128];
    int congested_on; /* congestion callbacks, true and false */
    int congested_off;
    bool congested;
};

static void side_stanza(void *ud, struct xml_node *st)
{
    struct side *s = ud;
    const char *type = xml_attr(st, "type");
    s->received++;
    snprintf(s->last_from, sizeof(s->last_from), "%s",
             xml_attr(st, "from") != NULL ? xml_attr(st, "from") : "");
    if (strcmp(st->name, "iq") == 0 && type != NULL &&
        (strcmp(type, "result") == 0 || strcmp(type, "error") == 0)) {
        s->iq_answers++;
    }
    if (strcmp(st->name, "iq") == 0 && type != NULL &&
        strcmp(type, "get") == 0 &&
        xml_child(st, "urn:xmpp:ping", "ping") != NULL) {
        s->pings++;
        snprintf(s->ping_id, sizeof(s->ping_id), "%s", xml_attr(st, "id"));
        snprintf(s->ping_from, sizeof(s->ping_from), "%s", s->last_from);
        snprintf(s->ping_to, sizeof(s->ping_to), "%s", xml_attr(st, "to"));
    }
    xml_unref(st);
}

/* The owner answers the last ping, outside the engine's callback (as a
 * home server does, through the loop). */
static void side_answer(struct side *s)
{
    if (s->ping_id[0] == '\0' || s->answer == ANSWER_NONE) {
        return;
    }
    struct xml_node *iq = xml_element_new(XML_NS_COMPONENT, "iq");
    ck_assert_int_eq(xml_set_attr(iq, "from", s->ping_to), 0);
    ck_assert_int_eq(xml_set_attr(iq, "to", s->ping_from), 0);
    ck_assert_int_eq(xml_set_attr(iq, "id", s->ping_id), 0);
    ck_assert_int_eq(
        xml_set_attr(iq, "type",
                     s->answer == ANSWER_RESULT ? "result" : "error"),
        0);
    if (s->answer == ANSWER_ERROR) {
        struct xml_node *e = xml_add_child(iq, NULL, "error");
        ck_assert_int_eq(xml_set_attr(e, "type", "cancel"), 0);
        ck_assert_ptr_nonnull(
            xml_add_child(e, XML_NS_STANZAS, "service-unavailable"));
    }
    s->ping_id[0] = '\0';
    ck_assert_int_eq(s2s_send(s->s2s, iq), 0);
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

static void side_congestion(void *ud, const char *remote, bool congested)
{
    struct side *s = ud;
    (void)remote;
    s->congested = congested;
    if (congested) {
        s->congested_on++;
    } else {
        s->congested_off++;
    }
}

/* Writes text as NAME.conf and loads it. */
static struct conf *load_conf(const char *name, const char *text)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s.conf", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    struct conf *cfg = NULL;
    ck_assert_int_eq(conf_load(path, &cfg, stderr), 0);
    return cfg;
}

/* Writes and loads a config for domain peering with peer at peer_port,
 * with keepalive_interval ka. */
static struct conf *side_conf_ka(const char *domain,
                                 const char *peer,
                                 unsigned own_port,
                                 unsigned peer_port,
                                 const char *auth,
                                 const char *cert_domain,
                                 unsigned ka)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "service_jid = \"fedgate.%s\";\n"
             "domains = [ \"%s\" ];\n"
             "upstream = { secret = \"x\"; };\n"
             "peers = ( { domain = \"%s\"; host = \"127.0.0.1\"; port = %u;"
             " auth = \"%s\"; } );\n"
             "s2s = { listen = [ \"127.0.0.1:%u\" ];"
             " negotiate_timeout = 10; keepalive_interval = %u; };\n"
             "tls = { certificate = \"%s/%s.crt\"; key = \"%s/%s.key\";"
             " ca_file = \"%s/ca.crt\"; };\n"
             "log = { level = \"error\"; };\n"
             "state_db = \"%s/%s.db\";\n",
             domain, domain, peer, peer_port, auth, own_port, ka, dir,
             cert_domain, dir, cert_domain, dir, dir, domain);
    return load_conf(domain, text);
}

/* Writes and loads a config for domain peering with peer at peer_port. */
static struct conf *side_conf(const char *domain,
                              const char *peer,
                              unsigned own_port,
                              unsigned peer_port,
                              const char *auth,
                              const char *cert_domain)
{
    return side_conf_ka(domain, peer, own_port, peer_port, auth, cert_domain,
                        60);
}

static void side_start(struct side *s, struct loop *loop, struct conf *cfg)
{
    static const struct s2s_callbacks cb = {side_stanza, side_undeliverable,
                                            side_congestion};
    char err[256];
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    /* the daemon's mapping of tls.domains */
    struct tls_identity ids[4];
    ck_assert_uint_le(cfg->ntls_domains, 4);
    for (size_t i = 0; i < cfg->ntls_domains; i++) {
        ids[i] = (struct tls_identity){
            .domain = cfg->tls_domains[i].domain,
            .cert_file = cfg->tls_domains[i].certificate,
            .key_file = cfg->tls_domains[i].key,
        };
    }
    struct tls_settings ts = {.cert_file = cfg->tls_cert,
                              .key_file = cfg->tls_key,
                              .ca_file = cfg->tls_ca,
                              .identities = ids,
                              .nidentities = cfg->ntls_domains};
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

/* RUN_UNTIL, with the owners of a and b answering pings meanwhile. */
#define PUMP_UNTIL(loop, a, b, cond, ms)                  \
    do {                                                  \
        uint64_t until_ = loop_now_ms(loop) + (ms);       \
        while (!(cond) && loop_now_ms(loop) < until_) {   \
            side_answer(a);                               \
            side_answer(b);                               \
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

/* The route local -> remote; info->local is NULL when there is none. */
static void route_named(struct side *s,
                        const char *local,
                        const char *remote,
                        struct s2s_route_info *info)
{
    for (size_t i = 0; i < s2s_route_count(s->s2s); i++) {
        s2s_route_info(s->s2s, i, info);
        if (strcmp(info->local, local) == 0 &&
            strcmp(info->remote, remote) == 0) {
            return;
        }
    }
    memset(info, 0, sizeof(*info));
}

/* The state of a's route a.test -> b.test ("" when there is none). */
static const char *a_state(struct side *a)
{
    struct s2s_route_info info;
    route_named(a, "a.test", "b.test", &info);
    return info.state != NULL ? info.state : "";
}

static unsigned long a_pings(struct side *a, bool answered)
{
    struct s2s_route_info info;
    route_named(a, "a.test", "b.test", &info);
    return answered ? info.pings_answered : info.pings_sent;
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
    /* what came back is billed to a's route to b.test */
    route_of(&a, &info);
    ck_assert_uint_eq(info.stanzas_in, 1);
    ck_assert_uint_ge(info.bytes_in, 60);
    ck_assert_int_gt((long long)info.ready_since, 0);
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

/* Blocking b.test on a closes both directions at once and refuses b.test
 * both ways; unblocking restores delivery. Then route control: a
 * disconnected route is idle and reconnects on the next stanza; retry
 * connects an idle route at once. */
START_TEST(test_block_unblock_and_route_control)
{
    struct loop *loop = loop_new();
    unsigned pa = free_port();
    unsigned pb = free_port();
    struct side a, b;
    side_start(&a, loop,
               side_conf("a.test", "b.test", pa, pb, "any", "a.test"));
    side_start(&b, loop,
               side_conf("b.test", "a.test", pb, pa, "any", "b.test"));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/x", "bob@b.test")), 0);
    ck_assert_int_eq(s2s_send(b.s2s, chat("bob@b.test/x", "alice@a.test")), 0);
    RUN_UNTIL(loop,
              (b.received == 1 && a.received == 1) || a.undeliverable > 0 ||
                  b.undeliverable > 0,
              8000);
    ck_assert_int_eq(a.received, 1);
    ck_assert_uint_eq(s2s_inbound_from(a.s2s, "b.test"), 1);

    ck_assert_int_eq(s2s_block(a.s2s, "b.test"), 0);
    ck_assert(s2s_is_blocked(a.s2s, "b.test"));
    ck_assert_uint_eq(s2s_blocked_count(a.s2s), 1);
    ck_assert_str_eq(s2s_blocked_domain(a.s2s, 0), "b.test");
    ck_assert_ptr_null(s2s_blocked_domain(a.s2s, 1));
    ck_assert_str_ne(a_state(&a), "ready");
    RUN_UNTIL(loop, s2s_inbound_from(a.s2s, "b.test") == 0, 3000);
    ck_assert_uint_eq(s2s_inbound_from(a.s2s, "b.test"), 0);
    /* outbound: refused at once, naming the block */
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/x", "bob@b.test")),
                     ERR_AUTH);
    ck_assert_int_eq(a.undeliverable, 1);
    ck_assert_str_eq(a.condition, "not-allowed");
    ck_assert_ptr_nonnull(strstr(a.text, "blocked"));
    ck_assert_int_eq(s2s_route_retry(a.s2s, "a.test", "b.test"), ERR_AUTH);
    /* inbound: b.test cannot authenticate to a */
    ck_assert_int_eq(s2s_send(b.s2s, chat("bob@b.test/x", "alice@a.test")), 0);
    RUN_UNTIL(loop, b.undeliverable > 0 || a.received > 1, 8000);
    ck_assert_int_eq(a.received, 1);
    ck_assert_int_eq(b.undeliverable, 1);

    ck_assert_int_eq(s2s_unblock(a.s2s, "b.test"), 0);
    ck_assert_int_eq(s2s_unblock(a.s2s, "b.test"), ERR_NOT_FOUND);
    ck_assert(!s2s_is_blocked(a.s2s, "b.test"));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/y", "bob@b.test")), 0);
    RUN_UNTIL(loop, b.received == 2 || a.undeliverable > 1, 8000);
    ck_assert_int_eq(b.received, 2);
    ck_assert_str_eq(a_state(&a), "ready");

    ck_assert_int_eq(s2s_route_disconnect(a.s2s, "a.test", "c.test"),
                     ERR_NOT_FOUND);
    ck_assert_int_eq(s2s_route_retry(a.s2s, "a.test", "b.test"), ERR_AGAIN);
    ck_assert_int_eq(s2s_route_disconnect(a.s2s, "a.test", "b.test"), 0);
    ck_assert_str_eq(a_state(&a), "idle");
    ck_assert_int_eq(s2s_route_retry(a.s2s, "a.test", "b.test"), 0);
    ck_assert_str_ne(a_state(&a), "idle");
    RUN_UNTIL(loop, strcmp(a_state(&a), "ready") == 0, 8000);
    ck_assert_str_eq(a_state(&a), "ready");
    ck_assert_int_eq(a.undeliverable, 1);
    side_stop(&a);
    side_stop(&b);
    loop_free(loop);
}
END_TEST

/* A config whose queue waits 2 s and whose retries start at 200 ms. */
static struct conf *side_conf_retry(const char *domain,
                                    const char *peer,
                                    unsigned own_port,
                                    unsigned peer_port)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "service_jid = \"fedgate.%s\";\n"
             "domains = [ \"%s\" ];\n"
             "upstream = { secret = \"x\"; backoff_initial_ms = 200;"
             " backoff_max_ms = 400; };\n"
             "peers = ( { domain = \"%s\"; host = \"127.0.0.1\"; port = %u;"
             " } );\n"
             "s2s = { listen = [ \"127.0.0.1:%u\" ]; };\n"
             "limits = { queue_timeout = 2; };\n"
             "tls = { certificate = \"%s/%s.crt\"; key = \"%s/%s.key\";"
             " ca_file = \"%s/ca.crt\"; };\n"
             "log = { level = \"error\"; };\n"
             "state_db = \"%s/%s.db\";\n",
             domain, domain, peer, peer_port, own_port, dir, domain, dir,
             domain, dir, dir, domain);
    return load_conf(domain, text);
}

/* Nothing listens: connecting is retried until the queue timeout, then
 * the stanza bounces with remote-server-timeout and the reason. */
START_TEST(test_unreachable_peer_bounces_after_queue_timeout)
{
    struct loop *loop = loop_new();
    struct side a;
    unsigned closed = free_port(); /* nothing listens there */
    side_start(&a, loop,
               side_conf_retry("a.test", "b.test", free_port(), closed));
    uint64_t start = loop_now_ms(loop);
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test", "bob@b.test")), 0);
    RUN_UNTIL(loop, a.undeliverable == 1, 5000);
    uint64_t waited = loop_now_ms(loop) - start;
    ck_assert_int_eq(a.undeliverable, 1);
    ck_assert_str_eq(a.condition, "remote-server-timeout");
    ck_assert_ptr_nonnull(strstr(a.text, "refused"));
    ck_assert_uint_ge(waited, 1900); /* held for the queue timeout */
    struct s2s_route_info info;
    route_of(&a, &info);
    ck_assert_str_eq(info.state, "idle");
    ck_assert_ptr_nonnull(info.last_error);
    side_stop(&a);
    loop_free(loop);
}
END_TEST

/* The peer comes up within the queue timeout: the stanza is delivered. */
START_TEST(test_peer_back_within_queue_timeout_delivers)
{
    struct loop *loop = loop_new();
    unsigned pa = free_port();
    unsigned pb = free_port();
    struct side a, b;
    side_start(&a, loop, side_conf_retry("a.test", "b.test", pa, pb));
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test", "bob@b.test")), 0);
    RUN_UNTIL(loop, false, 700); /* a few refused attempts */
    ck_assert_int_eq(a.undeliverable, 0);
    side_start(&b, loop, side_conf_retry("b.test", "a.test", pb, pa));
    RUN_UNTIL(loop, b.received == 1 || a.undeliverable > 0, 3000);
    ck_assert_int_eq(a.undeliverable, 0);
    ck_assert_int_eq(b.received, 1);
    side_stop(&a);
    side_stop(&b);
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

/*
 * a.test serves a2.test too, with a certificate valid for a2.test only
 * (tls.domains). b.test reaching a2.test asks for it with SNI and must
 * get that certificate to use SASL EXTERNAL; a2.test reaching b.test must
 * present it as its client certificate for the same.
 */
START_TEST(test_second_domain_own_certificate)
{
    struct loop *loop = loop_new();
    unsigned pa = free_port();
    unsigned pb = free_port();
    char text[2048];
    struct side a, b;
    snprintf(text, sizeof(text),
             "service_jid = \"fedgate.a.test\";\n"
             "domains = [ \"a.test\", \"a2.test\" ];\n"
             "upstream = { secret = \"x\"; };\n"
             "peers = ( { domain = \"b.test\"; host = \"127.0.0.1\";"
             " port = %u; } );\n"
             "s2s = { listen = [ \"127.0.0.1:%u\" ]; };\n"
             "tls = { certificate = \"%s/a.test.crt\";"
             " key = \"%s/a.test.key\"; ca_file = \"%s/ca.crt\";\n"
             "  domains = ( { domain = \"a2.test\";"
             " certificate = \"%s/a2.test.crt\";"
             " key = \"%s/a2.test.key\"; } ); };\n"
             "log = { level = \"error\"; };\n"
             "state_db = \"%s/a.db\";\n",
             pb, pa, dir, dir, dir, dir, dir, dir);
    struct conf *ca = load_conf("a-two", text);
    snprintf(text, sizeof(text),
             "service_jid = \"fedgate.b.test\";\n"
             "domains = [ \"b.test\" ];\n"
             "upstream = { secret = \"x\"; };\n"
             "peers = ( { domain = \"a.test\"; host = \"127.0.0.1\";"
             " port = %u; },\n"
             "  { domain = \"a2.test\"; host = \"127.0.0.1\"; port = %u; }"
             " );\n"
             "s2s = { listen = [ \"127.0.0.1:%u\" ]; };\n"
             "tls = { certificate = \"%s/b.test.crt\";"
             " key = \"%s/b.test.key\"; ca_file = \"%s/ca.crt\"; };\n"
             "log = { level = \"error\"; };\n"
             "state_db = \"%s/b.db\";\n",
             pa, pa, pb, dir, dir, dir, dir);
    struct conf *cb = load_conf("b-two", text);
    side_start(&a, loop, ca);
    side_start(&b, loop, cb);

    /* b.test -> a2.test: SNI a2.test gets a2.test's certificate */
    ck_assert_int_eq(s2s_send(b.s2s, chat("bob@b.test/x", "carol@a2.test")), 0);
    RUN_UNTIL(loop, a.received == 1 || b.undeliverable > 0, 8000);
    ck_assert_msg(b.undeliverable == 0, "bounced: %s %s", b.condition, b.text);
    ck_assert_int_eq(a.received, 1);
    struct s2s_route_info info;
    route_named(&b, "b.test", "a2.test", &info);
    ck_assert_ptr_nonnull(info.state);
    ck_assert_str_eq(info.state, "ready");
    ck_assert_str_eq(info.auth, "sasl-external");
    ck_assert_ptr_nonnull(strstr(info.peer_subject, "CN=a2.test"));

    /* a2.test -> b.test: a2.test's certificate as the client's */
    ck_assert_int_eq(s2s_send(a.s2s, chat("carol@a2.test/y", "bob@b.test")), 0);
    RUN_UNTIL(loop, b.received == 1 || a.undeliverable > 0, 8000);
    ck_assert_msg(a.undeliverable == 0, "bounced: %s %s", a.condition, a.text);
    ck_assert_int_eq(b.received, 1);
    ck_assert_str_eq(b.last_from, "carol@a2.test/y");
    route_named(&a, "a2.test", "b.test", &info);
    ck_assert_ptr_nonnull(info.state);
    ck_assert_str_eq(info.state, "ready");
    ck_assert_str_eq(info.auth, "sasl-external");
    ck_assert_ptr_nonnull(strstr(info.peer_subject, "CN=b.test"));

    /* and a.test still presents the default certificate */
    ck_assert_int_eq(s2s_send(b.s2s, chat("bob@b.test/x", "dave@a.test")), 0);
    RUN_UNTIL(loop, a.received == 2 || b.undeliverable > 0, 8000);
    ck_assert_int_eq(a.received, 2);
    route_named(&b, "b.test", "a.test", &info);
    ck_assert_ptr_nonnull(info.state);
    ck_assert_str_eq(info.auth, "sasl-external");
    ck_assert_ptr_nonnull(strstr(info.peer_subject, "CN=a.test"));
    side_stop(&a);
    side_stop(&b);
    loop_free(loop);
}
END_TEST

/* Engines with keepalive_interval 1 s; a.test sends one chat to b.test
 * and then stays silent, as does b.test unless its owner answers. */
static void ping_setup(struct loop *loop,
                       struct side *a,
                       struct side *b,
                       enum answer answer)
{
    unsigned pa = free_port();
    unsigned pb = free_port();
    side_start(a, loop,
               side_conf_ka("a.test", "b.test", pa, pb, "any", "a.test", 1));
    side_start(b, loop,
               side_conf_ka("b.test", "a.test", pb, pa, "any", "b.test", 1));
    b->answer = answer;
    ck_assert_int_eq(s2s_send(a->s2s, chat("alice@a.test/x", "bob@b.test")), 0);
    RUN_UNTIL(loop, b->received == 1 || a->undeliverable > 0, 8000);
    ck_assert_int_eq(b->received, 1);
    ck_assert_str_eq(a_state(a), "ready");
    ck_assert_uint_eq(a_pings(a, false), 0);
}

/* The silent peer is pinged; its answer (result or error) is taken by
 * the engine, never delivered, and the stream stays up. Once b.test has
 * a stream to a.test (to answer), it may ping a.test in turn, which a's
 * owner answers. */
static void ping_answered(enum answer answer)
{
    struct loop *loop = loop_new();
    struct side a, b;
    ping_setup(loop, &a, &b, answer);
    a.answer = ANSWER_RESULT;
    PUMP_UNTIL(loop, &a, &b, a_pings(&a, true) >= 1, 6000);
    ck_assert_uint_ge(a_pings(&a, false), 1);
    ck_assert_uint_ge(a_pings(&a, true), 1);
    ck_assert_int_ge(b.pings, 1);
    ck_assert_str_eq(b.ping_from, "a.test");
    ck_assert_str_eq(b.ping_to, "b.test");
    /* the answer never reached a's owner */
    ck_assert_int_eq(a.iq_answers, 0);
    /* a few more intervals: still up, every ping answered */
    PUMP_UNTIL(loop, &a, &b, false, 3500);
    ck_assert_str_eq(a_state(&a), "ready");
    struct s2s_route_info info;
    route_named(&a, "a.test", "b.test", &info);
    ck_assert_ptr_null(info.last_error);
    ck_assert_int_eq(a.iq_answers, 0);
    ck_assert_int_eq(b.iq_answers, 0);
    ck_assert_int_eq(a.received, a.pings); /* nothing but b's pings */
    ck_assert_uint_ge(info.pings_answered + 1, info.pings_sent);
    side_stop(&a);
    side_stop(&b);
    loop_free(loop);
}

START_TEST(test_ping_result_taken)
{
    ping_answered(ANSWER_RESULT);
}
END_TEST

START_TEST(test_ping_error_proves_liveness)
{
    ping_answered(ANSWER_ERROR);
}
END_TEST

/* b.test's home server stops answering: the ping reaches it but nothing
 * comes back, so a.test closes its stream; the next stanza reconnects. */
START_TEST(test_ping_unanswered_closes_stream)
{
    struct loop *loop = loop_new();
    struct side a, b;
    ping_setup(loop, &a, &b, ANSWER_NONE);
    PUMP_UNTIL(loop, &a, &b, strcmp(a_state(&a), "idle") == 0, 8000);
    ck_assert_str_eq(a_state(&a), "idle");
    ck_assert_int_eq(b.pings, 1);
    ck_assert_uint_eq(a_pings(&a, false), 1);
    ck_assert_uint_eq(a_pings(&a, true), 0);
    struct s2s_route_info info;
    route_named(&a, "a.test", "b.test", &info);
    ck_assert_ptr_nonnull(info.last_error);
    ck_assert_msg(
        strstr(info.last_error, "no reply to XEP-0199 ping within 1 s") != NULL,
        "%s", info.last_error);
    /* the route reconnects with its next stanza */
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/x", "bob@b.test")), 0);
    RUN_UNTIL(loop, b.received == 3 || a.undeliverable > 0, 8000);
    ck_assert_int_eq(a.undeliverable, 0);
    ck_assert_int_eq(b.received, 3); /* chat, ping, chat */
    ck_assert_str_eq(a_state(&a), "ready");
    side_stop(&a);
    side_stop(&b);
    loop_free(loop);
}
END_TEST

/*
 * Regression (found by bench/relay.sh): two dialback requests for the same
 * pair in one read, while the route to the authoritative server is still
 * connecting (its connection has no stream yet), crashed fedgate.
 */
START_TEST(test_dialback_requests_while_authoritative_connects)
{
    struct loop *loop = loop_new();
    struct side a;
    unsigned own = free_port();
    /* the authoritative server: accepts TCP (the kernel does) and never
     * speaks */
    int auth_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(auth_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(auth_fd, 4), 0);
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(getsockname(auth_fd, (struct sockaddr *)&sin, &len), 0);
    char text[2048];
    snprintf(text, sizeof(text),
             "service_jid = \"fedgate.a.test\";\n"
             "domains = [ \"a.test\" ];\n"
             "upstream = { secret = \"x\"; };\n"
             "peers = ( { domain = \"b.test\"; host = \"127.0.0.1\";"
             " port = %u; auth = \"dialback\"; tls_required = false; } );\n"
             "s2s = { listen = [ \"127.0.0.1:%u\" ]; };\n"
             "tls = { certificate = \"%s/a.test.crt\"; key = \"%s/a.test.key\";"
             " ca_file = \"%s/ca.crt\"; };\n"
             "log = { level = \"error\"; };\n"
             "state_db = \"%s/a.test.db\";\n",
             (unsigned)ntohs(sin.sin_port), own, dir, dir, dir, dir);
    side_start(&a, loop, load_conf("a.test", text));
    /* b.test's side, by hand: STARTTLS, then both requests in one record
     * (the engine runs in this thread: it is pumped between steps) */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    sin.sin_port = htons((uint16_t)own);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
    static const char header[] =
        "<?xml version='1.0'?><stream:stream "
        "xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
        "from='b.test' to='a.test' version='1.0'>";
    static const char starttls[] =
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    ck_assert_int_eq(write(c, header, sizeof(header) - 1),
                     (ssize_t)(sizeof(header) - 1));
    ck_assert_int_eq(write(c, starttls, sizeof(starttls) - 1),
                     (ssize_t)(sizeof(starttls) - 1));
    char buf[4096] = "";
    size_t got = 0;
    uint64_t until = loop_now_ms(loop) + 3000;
    while (strstr(buf, "<proceed") == NULL && loop_now_ms(loop) < until) {
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
        ssize_t n = recv(c, buf + got, sizeof(buf) - 1 - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
        }
        buf[got] = '\0';
    }
    ck_assert_ptr_nonnull(strstr(buf, "<proceed"));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c);
    ck_assert_int_eq(fcntl(c, F_SETFL, O_NONBLOCK), 0);
    int hs;
    until = loop_now_ms(loop) + 3000;
    while ((hs = SSL_connect(ssl)) != 1 && loop_now_ms(loop) < until) {
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    }
    ck_assert_int_eq(hs, 1);
    static const char twice[] =
        "<?xml version='1.0'?><stream:stream "
        "xmlns:stream='http://etherx.jabber.org/streams' "
        "xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
        "from='b.test' to='a.test' version='1.0'>"
        "<db:result from='b.test' to='a.test'>0123456789abcdef</db:result>"
        "<db:result from='b.test' to='a.test'>fedcba9876543210</db:result>";
    ck_assert_int_eq(SSL_write(ssl, twice, (int)sizeof(twice) - 1),
                     (int)sizeof(twice) - 1);
    until = loop_now_ms(loop) + 500;
    while (loop_now_ms(loop) < until) {
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
        (void)SSL_read(ssl, buf, sizeof(buf));
    }
    /* still here, and the route to b.test is trying its authoritative
     * server */
    struct s2s_route_info info;
    route_of(&a, &info);
    ck_assert_str_eq(info.remote, "b.test");
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(c);
    side_stop(&a);
    close(auth_fd);
    loop_free(loop);
}
END_TEST

/*
 * Backpressure: a peer that reads nothing (b pauses its inbound streams)
 * makes a's route congested once 3/4 of its queue bound waits; when b
 * reads again everything arrives, nothing bounced, and the congestion is
 * reported over.
 */
START_TEST(test_route_congestion_and_inbound_pause)
{
    struct loop *loop = loop_new();
    unsigned pa = free_port();
    unsigned pb = free_port();
    struct side a, b;
    side_start(&a, loop,
               side_conf("a.test", "b.test", pa, pb, "any", "a.test"));
    side_start(&b, loop,
               side_conf("b.test", "a.test", pb, pa, "any", "b.test"));
    /* the route up first */
    ck_assert_int_eq(s2s_send(a.s2s, chat("alice@a.test/x", "bob@b.test")), 0);
    RUN_UNTIL(loop, b.received == 1, 8000);
    ck_assert_int_eq(b.received, 1);
    s2s_pause_inbound(b.s2s, true);
    /* 4 KiB messages: the output buffer (about 1 MB) fills, the rest
     * queues (bound 1000): 1200 go over 3/4 of it, none over the bound */
    char body[4096];
    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    for (int i = 0; i < 1200; i++) {
        struct xml_node *m = chat("alice@a.test/x", "bob@b.test");
        struct xml_node *bd = xml_child(m, NULL, "body");
        ck_assert_int_eq(xml_append_text(bd, body, strlen(body)), 0);
        ck_assert_int_eq(s2s_send(a.s2s, m), 0);
    }
    ck_assert_int_ge(a.congested_on, 1);
    RUN_UNTIL(loop, false, 300); /* b still reads nothing */
    ck_assert_int_eq(b.received, 1);
    s2s_pause_inbound(b.s2s, false);
    RUN_UNTIL(loop, b.received == 1201 && !a.congested, 15000);
    ck_assert_int_eq(b.received, 1201);
    ck_assert_int_eq(a.undeliverable, 0);
    ck_assert(!a.congested);
    ck_assert_int_ge(a.congested_off, 1);
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
    tcase_add_test(tc, test_block_unblock_and_route_control);
    tcase_add_test(tc, test_unreachable_peer_bounces_after_queue_timeout);
    tcase_add_test(tc, test_peer_back_within_queue_timeout_delivers);
    tcase_add_test(tc, test_certificate_only_peer_with_wrong_name);
    tcase_add_test(tc, test_second_domain_own_certificate);
    tcase_add_test(tc, test_ping_result_taken);
    tcase_add_test(tc, test_ping_error_proves_liveness);
    tcase_add_test(tc, test_ping_unanswered_closes_stream);
    tcase_add_test(tc, test_dialback_requests_while_authoritative_connects);
    tcase_add_test(tc, test_route_congestion_and_inbound_pause);
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
