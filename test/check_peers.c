/*
 * check_peers.c: peers changed at run time (component/peers.c), the deep
 * copy and the one-peer parser they stand on (component/conf.c), their
 * rows in state_db (component/store.c) and the home-server hook runner
 * (component/hook.c) with real /bin/sh processes.
 */
#include "config.h"

#include "conf.h"
#include "err.h"
#include "hook.h"
#include "log.h"
#include "loop.h"
#include "peers.h"
#include "store.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];
static struct conf *cfg;

static const char conf_text[] =
    "service_jid = \"fedgate.a.test\";\n"
    "domains = [ \"a.test\" ];\n"
    "upstream = { secret = \"up-secret\"; };\n"
    "peers = (\n"
    "  { domain = \"b.test\"; secret = \"b-secret\";\n"
    "    services = ( { domain = \"conference.b.test\"; secret = \"c-s\"; } "
    "); },\n"
    "  { domain = \"c.test\"; auth = \"dialback\"; tls_required = false; }\n"
    ");\n"
    "tls = { certificate = \"%s/cert.pem\"; key = \"%s/cert.pem\"; };\n"
    "state_db = \"%s/state.db\";\n";

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_peers.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char path[300];
    snprintf(path, sizeof(path), "%s/cert.pem", tmpdir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not checked at load\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/fedgate.conf", tmpdir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, conf_text, tmpdir, tmpdir, tmpdir);
    fclose(f);
    ck_assert_int_eq(conf_load(path, &cfg, stderr), 0);
}

static void teardown(void)
{
    char cmd[400];
    conf_free(cfg);
    cfg = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* conf_print's text of c, as a new string. */
static char *printed(const struct conf *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    conf_print(c, f);
    fclose(f);
    return text;
}

START_TEST(test_dup_equal_and_independent)
{
    struct conf *d = conf_dup(cfg);
    ck_assert_ptr_nonnull(d);
    char *a = printed(cfg), *b = printed(d);
    ck_assert_str_eq(a, b);
    ck_assert_ptr_ne(d->peers, cfg->peers);
    ck_assert_ptr_ne(d->peers[0].services, cfg->peers[0].services);
    ck_assert_str_eq(d->peers[0].services[0].secret, "c-s");
    ck_assert_int_eq(peers_remove(d, "b.test"), 0);
    ck_assert_uint_eq(cfg->npeers, 2); /* the original is untouched */
    free(a);
    free(b);
    conf_free(d);
}
END_TEST

START_TEST(test_spec_round_trip)
{
    char *spec = peers_spec(&cfg->peers[0]);
    ck_assert_ptr_nonnull(spec);
    ck_assert_ptr_nonnull(strstr(spec, "b-secret")); /* for state_db */
    struct conf_peer p;
    char err[400];
    ck_assert_int_eq(peers_from_spec(cfg, "b.test", spec, &p, err, sizeof(err)),
                     0);
    ck_assert_str_eq(p.domain, "b.test");
    ck_assert_str_eq(p.secret, "b-secret");
    ck_assert_uint_eq(p.nservices, 1);
    ck_assert_str_eq(p.services[0].secret, "c-s");
    ck_assert(p.runtime);
    conf_peer_clear(&p);
    /* a spec stored for one domain cannot name another */
    ck_assert_int_eq(peers_from_spec(cfg, "x.test", spec, &p, err, sizeof(err)),
                     ERR_INVAL);
    ck_assert_msg(strstr(err, "'b.test'") != NULL, "%s", err);
    free(spec);
    /* a broken spec is an error naming its origin */
    ck_assert_int_eq(peers_from_spec(cfg, "d.test",
                                     "domain = \"d.test\"; "
                                     "port = 99999999;",
                                     &p, err, sizeof(err)),
                     ERR_INVAL);
    ck_assert_msg(strstr(err, "peers.port") != NULL, "%s", err);
}
END_TEST

#define KV(k, v) \
    {            \
        k, v     \
    }

START_TEST(test_fields_accepted)
{
    const struct peers_field f[] = {
        KV("domain", "D.Test"),
        KV("secret", "d-secret"),
        KV("auth", "certificate"),
        KV("trusted", "1"),
        KV("tls_required", "true"),
        KV("services", "conference.d.test\nup.d.test"),
        KV("host", "127.0.0.9"),
        KV("port", "5270"),
        KV("stanza_max", "")};
    struct conf_peer p;
    char err[400] = "";
    size_t bad;
    int rc = peers_from_fields(cfg, f, 9, NULL, &p, err, sizeof(err), &bad);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(p.domain, "d.test"); /* normalised */
    ck_assert_int_eq(p.auth, CONF_AUTH_CERTIFICATE);
    ck_assert_uint_eq(p.nservices, 2);
    ck_assert_str_eq(p.services[1].domain, "up.d.test");
    ck_assert_uint_eq(p.port, 5270);
    ck_assert_uint_eq(p.stanza_max, 0);
    ck_assert_int_eq(peers_put(cfg, &p, NULL), 0);
    conf_peer_clear(&p);
    ck_assert_uint_eq(cfg->npeers, 3);
    ck_assert_ptr_nonnull(peers_find(cfg, "d.test"));
    ck_assert_str_eq(conf_secret_for(cfg, "up.d.test"), "d-secret");
}
END_TEST

/* Submits f and expects ERR_INVAL at field bad_at with text in err. */
static void expect_refused(const struct peers_field *f,
                           size_t n,
                           const struct conf_peer *current,
                           size_t bad_at,
                           const char *text)
{
    struct conf_peer p;
    char err[400] = "";
    size_t bad = 99;
    int rc = peers_from_fields(cfg, f, n, current, &p, err, sizeof(err), &bad);
    ck_assert_msg(rc == ERR_INVAL, "accepted; wanted: %s", text);
    ck_assert_msg(strstr(err, text) != NULL, "'%s' lacks '%s'", err, text);
    ck_assert_msg(bad == bad_at, "%s: field %zu, wanted %zu", err, bad, bad_at);
}

START_TEST(test_fields_refused)
{
    const struct peers_field port[] = {
        KV("domain", "d.test"), KV("host", "h.test"), KV("port", "70000")};
    expect_refused(port, 3, NULL, 2, "'peers.port'");
    const struct peers_field port_text[] = {
        KV("domain", "d.test"), KV("host", "h.test"), KV("port", "eighty")};
    expect_refused(port_text, 3, NULL, 2, "'peers.port'");
    const struct peers_field no_host[] = {KV("domain", "d.test"),
                                          KV("port", "5270")};
    expect_refused(no_host, 2, NULL, 2, "needs 'peers.host'");
    const struct peers_field served[] = {KV("domain", "a.test")};
    expect_refused(served, 1, NULL, 0, "'a.test' is a served domain");
    const struct peers_field again[] = {KV("domain", "b.test")};
    expect_refused(again, 1, NULL, 0, "'b.test' is already a peer");
    const struct peers_field svc_clash[] = {
        KV("domain", "d.test"), KV("services", "conference.b.test")};
    expect_refused(svc_clash, 2, NULL, 1,
                   "'conference.b.test' is already a service of peer 'b.test'");
    const struct peers_field svc_twice[] = {
        KV("domain", "d.test"), KV("services", "x.d.test, x.d.test")};
    expect_refused(svc_twice, 2, NULL, 1, "listed twice");
    const struct peers_field cert_no_tls[] = {KV("domain", "d.test"),
                                              KV("auth", "certificate"),
                                              KV("tls_required", "0")};
    expect_refused(cert_no_tls, 3, NULL, 3, "needs tls_required");
    const struct peers_field bad_dom[] = {KV("domain", "d..test")};
    expect_refused(bad_dom, 1, NULL, 0, "peers.domain");
    const struct peers_field anchor[] = {KV("domain", "d.test"),
                                         KV("trust_anchor", "/nonexistent/ca")};
    expect_refused(anchor, 2, NULL, 1, "/nonexistent/ca");
}
END_TEST

START_TEST(test_no_secret_anywhere)
{
    free(cfg->upstream_secret);
    cfg->upstream_secret = NULL;
    const struct peers_field f[] = {KV("domain", "d.test")};
    expect_refused(f, 1, NULL, 1, "no secret for peer 'd.test'");
}
END_TEST

START_TEST(test_edit_keeps_secrets)
{
    const struct conf_peer *cur = peers_find(cfg, "b.test");
    const struct peers_field f[] = {
        KV("domain", "b.test"), KV("secret", ""), KV("auth", "dialback"),
        KV("services", "conference.b.test\nupload.b.test")};
    struct conf_peer p;
    char err[400] = "";
    size_t bad;
    ck_assert_int_eq(
        peers_from_fields(cfg, f, 4, cur, &p, err, sizeof(err), &bad), 0);
    ck_assert_str_eq(p.secret, "b-secret");
    ck_assert_str_eq(p.services[0].secret, "c-s");
    ck_assert_ptr_null(p.services[1].secret);
    ck_assert_int_eq(p.auth, CONF_AUTH_DIALBACK);
    ck_assert_int_eq(peers_put(cfg, &p, "b.test"), 0);
    conf_peer_clear(&p);
    ck_assert_uint_eq(cfg->npeers, 2);
    ck_assert_int_eq(peers_find(cfg, "b.test")->auth, CONF_AUTH_DIALBACK);
    ck_assert_int_eq(peers_remove(cfg, "b.test"), 0);
    ck_assert_int_eq(peers_remove(cfg, "b.test"), ERR_NOT_FOUND);
    ck_assert_uint_eq(cfg->npeers, 1);
}
END_TEST

static int
collect_peer(void *ud, const char *domain, const char *spec, long long at)
{
    char *acc = ud;
    size_t len = strlen(acc);
    snprintf(acc + len, 512 - len, "%s:%s@%lld;", domain,
             spec != NULL ? "put" : "remove", at);
    return 0;
}

START_TEST(test_store_rows)
{
    struct store *st = NULL;
    char err[400];
    ck_assert_int_eq(store_open(cfg->state_db, &st, err, sizeof(err)), 0);
    ck_assert_int_eq(access(cfg->state_db, R_OK), 0);
    ck_assert_int_eq(store_peer_set(st, "d.test", "domain = \"d.test\";",
                                    "admin@a.test", "add peer d.test", 100),
                     0);
    ck_assert_int_eq(store_peer_set(st, "b.test", NULL, "admin@a.test",
                                    "remove peer b.test", 101),
                     0);
    ck_assert_int_eq(store_peer_set(st, "d.test", "domain = \"d.test\";",
                                    "root@a.test", "edit peer d.test", 102),
                     0);
    char acc[512] = "";
    ck_assert_int_eq(store_peers(st, collect_peer, acc), 0);
    ck_assert_str_eq(acc, "b.test:remove@101;d.test:put@102;");
    ck_assert_int_eq(store_peer_forget(st, "d.test", "admin@a.test",
                                       "remove peer d.test", 103),
                     0);
    acc[0] = '\0';
    ck_assert_int_eq(store_peers(st, collect_peer, acc), 0);
    ck_assert_str_eq(acc, "b.test:remove@101;");
    store_free(st);
    /* it survives reopening */
    ck_assert_int_eq(store_open(cfg->state_db, &st, err, sizeof(err)), 0);
    acc[0] = '\0';
    ck_assert_int_eq(store_peers(st, collect_peer, acc), 0);
    ck_assert_str_eq(acc, "b.test:remove@101;");
    store_free(st);
}
END_TEST

/* ---- the hook runner, with real processes ---- */

struct hook_seen {
    bool done;
    int exit_code;
    int signo;
    int timed_out;
    char output[HOOK_OUTPUT_MAX + 1];
    size_t dropped;
};

static void on_hook(void *ud, const struct hook_result *res)
{
    struct hook_seen *s = ud;
    s->done = true;
    s->exit_code = res->exit_code;
    s->signo = res->signo;
    s->timed_out = res->timed_out;
    s->dropped = res->dropped;
    snprintf(s->output, sizeof(s->output), "%s", res->output);
}

/* Runs command to its end (at most 10 s of loop). */
static void run_hook(const char *command,
                     const char *const *args,
                     size_t n,
                     const char *input,
                     unsigned timeout_ms,
                     struct hook_seen *seen)
{
    struct loop *loop = loop_new();
    struct hook *h = NULL;
    static const char *const env[] = {"FEDGATE_SERVICE_JID=fedgate.a.test",
                                      NULL};
    memset(seen, 0, sizeof(*seen));
    ck_assert_ptr_nonnull(loop);
    ck_assert_int_eq(hook_run(loop, command, args, n, input, env, timeout_ms,
                              on_hook, seen, &h),
                     0);
    for (int i = 0; i < 1000 && !seen->done; i++) {
        ck_assert_int_eq(loop_run_once(loop, 10), 0);
    }
    ck_assert(seen->done);
    loop_free(loop);
}

START_TEST(test_hook_args_stdin_env)
{
    struct hook_seen s;
    static const char *const args[] = {"add", "d.test", "conference.d.test"};
    run_hook("printf '%s|' \"$0\"; echo \"$FEDGATE_SERVICE_JID\"; cat; "
             "printf 'n=%s' \"$#\"; :",
             args, 3, "d.test s1\nconference.d.test s2\n", 5000, &s);
    ck_assert_int_eq(s.exit_code, 0);
    ck_assert_str_eq(s.output, "fedgate-peer-hook|fedgate.a.test\n"
                               "d.test s1\nconference.d.test s2\nn=3");
}
END_TEST

START_TEST(test_hook_exit_code_and_output_bound)
{
    struct hook_seen s;
    static const char *const args[] = {"remove", "d.test"};
    run_hook("echo \"removing $2\" >&2; exit 3", args, 2, NULL, 5000, &s);
    ck_assert_int_eq(s.exit_code, 3);
    ck_assert_str_eq(s.output, "removing d.test\n");
    run_hook("head -c 5000 /dev/zero | tr '\\0' x; :", args, 2, NULL, 5000, &s);
    ck_assert_int_eq(s.exit_code, 0);
    ck_assert_uint_eq(strlen(s.output), HOOK_OUTPUT_MAX);
    ck_assert_uint_eq(s.dropped, 5000 - HOOK_OUTPUT_MAX);
}
END_TEST

START_TEST(test_hook_timeout_kills_group)
{
    struct hook_seen s;
    static const char *const args[] = {"add", "d.test"};
    /* a grandchild holding the pipe is killed with the shell */
    run_hook("echo started; sleep 30 & sleep 30; :", args, 2, NULL, 300, &s);
    ck_assert_int_eq(s.timed_out, 1);
    ck_assert_int_eq(s.signo, 9);
    ck_assert_str_eq(s.output, "started\n");
    char how[80];
    struct hook_result res = {.exit_code = -1, .signo = 9, .timed_out = 1};
    hook_describe(&res, 300, how, sizeof(how));
    ck_assert_str_eq(how, "timed out after 1 s, killed");
}
END_TEST

START_TEST(test_hook_cancel)
{
    struct loop *loop = loop_new();
    struct hook *h = NULL;
    struct hook_seen s;
    static const char *const args[] = {"add"};
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(hook_run(loop, "sleep 30; :", args, 1, NULL, NULL, 60000,
                              on_hook, &s, &h),
                     0);
    ck_assert_int_eq(loop_run_once(loop, 20), 0);
    hook_cancel(h);
    ck_assert(!s.done);
    loop_free(loop);
}
END_TEST

static Suite *peers_suite(void)
{
    Suite *s = suite_create("peers");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"dup_equal_and_independent", test_dup_equal_and_independent},
        {"spec_round_trip", test_spec_round_trip},
        {"fields_accepted", test_fields_accepted},
        {"fields_refused", test_fields_refused},
        {"no_secret_anywhere", test_no_secret_anywhere},
        {"edit_keeps_secrets", test_edit_keeps_secrets},
        {"store_rows", test_store_rows},
        {"hook_args_stdin_env", test_hook_args_stdin_env},
        {"hook_exit_code_and_output_bound",
         test_hook_exit_code_and_output_bound},
        {"hook_timeout_kills_group", test_hook_timeout_kills_group},
        {"hook_cancel", test_hook_cancel},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    log_setup(LOG_LEVEL_ERROR, false, "check_peers");
    SRunner *sr = srunner_create(peers_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
