/*
 * check_conf.c: Check suite for the configuration module (conf.c).
 *
 * Each test writes its configuration into a fresh mkdtemp directory
 * (with the TLS, DNS and CA files the full configuration names), loads it
 * and checks the result or the exact "FILE:LINE: message" errors. Test
 * configurations are arrays of lines, so line N of the file is element
 * N - 1 of the array; "@DIR@" stands for the temporary directory.
 */
#include "config.h"

#include "conf.h"

#include "err.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINES(...) ((const char *const[]){__VA_ARGS__, NULL})

static char tmpdir[256];
static char conf_path[300];

static void write_file(const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static void setup(void)
{
    char dir[512];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_conf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(conf_path, sizeof(conf_path), "%s/fedgate.conf", tmpdir);
    write_file("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    write_file("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    write_file("cert2.pem", "-----BEGIN CERTIFICATE-----\n");
    write_file("key2.pem", "-----BEGIN PRIVATE KEY-----\n");
    write_file("ca.pem", "-----BEGIN CERTIFICATE-----\n");
    write_file("peer-ca.pem", "-----BEGIN CERTIFICATE-----\n");
    write_file("hosts", "127.0.0.1 localhost\n");
    write_file("root.key", ". IN DS 20326 8 2 E06D\n");
    snprintf(dir, sizeof(dir), "%s/cadir", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes lines (with @DIR@ replaced) to name in the temporary directory;
 * returns the new file's path (static). */
static const char *write_conf_as(const char *name, const char *const *lines)
{
    static char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; lines[i] != NULL; i++) {
        const char *p = lines[i], *at;
        while ((at = strstr(p, "@DIR@")) != NULL) {
            fwrite(p, 1, (size_t)(at - p), f);
            fputs(tmpdir, f);
            p = at + 5;
        }
        fputs(p, f);
        fputc('\n', f);
    }
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Loads lines as fedgate.conf; the error text goes to *errs (caller
 * frees). */
static int load_lines(const char *const *lines, struct conf **cfg, char **errs)
{
    size_t len = 0;
    FILE *err = open_memstream(errs, &len);
    int rc;

    ck_assert_ptr_nonnull(err);
    write_conf_as("fedgate.conf", lines);
    rc = conf_load(conf_path, cfg, err);
    ck_assert_int_eq(fclose(err), 0);
    return rc;
}

/* Asserts that loading lines fails and reports "fedgate.conf:LINE: msg"
 * (or "fedgate.conf: msg" for line 0). */
static void expect_error(const char *const *lines, int line, const char *msg)
{
    struct conf *cfg = NULL;
    char *errs = NULL;
    char want[1024];
    int rc = load_lines(lines, &cfg, &errs);

    if (line > 0) {
        snprintf(want, sizeof(want), "%s:%d: %s", conf_path, line, msg);
    } else {
        snprintf(want, sizeof(want), "%s: %s", conf_path, msg);
    }
    ck_assert_int_eq(rc, ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(errs, want) != NULL, "expected \"%s\" in:\n%s", want,
                  errs);
    free(errs);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

/* Every key set, none at its default. */
static const char *const full_conf[] = {
    "service_jid = \"fedgate.a.test\";",
    "domains = [ \"a.test\", \"A2.test.\" ];",
    "state_db = \"@DIR@/state.db\";",
    "upstream = {",
    "  host = \"127.0.1.1\";",
    "  port = 5348;",
    "  secret = \"up\\\"sec\\\\ret\";",
    "  service_secret = \"gw-secret\";",
    "  connect_timeout = 7;",
    "  handshake_timeout = 8;",
    "  backoff_initial_ms = 250;",
    "  backoff_max_ms = 30000;",
    "  peer_hook = \"/usr/lib/fedgate/prosody-peer-hook --dir /etc/p\";",
    "  peer_hook_timeout = 30;",
    "};",
    "peers = (",
    "  {",
    "    domain = \"b.test\";",
    "    secret = \"b-secret\";",
    "    trusted = false;",
    "    tls_required = true;",
    "    auth = \"certificate\";",
    "    trust_anchor = \"@DIR@/peer-ca.pem\";",
    "    host = \"192.0.2.7\";",
    "    port = 5270;",
    "    stanza_max = 100000;",
    "    services = ( { domain = \"conference.b.test\"; secret = "
    "\"muc-secret\"; },",
    "                 { domain = \"pubsub.b.test\"; } );",
    "  },",
    "  { domain = \"c.test\"; auth = \"dialback\"; }",
    ");",
    "s2s = { listen = [ \"127.0.0.1:5269\", \"[::1]:5269\" ];",
    "        direct_tls_listen = [ \"0.0.0.0:5270\" ];",
    "        dialback_secret = \"db-secret\"; connect_timeout = 7;",
    "        negotiate_timeout = 9; idle_timeout = 700;",
    "        keepalive_interval = 30; };",
    "tls = { certificate = \"@DIR@/cert.pem\"; key = \"@DIR@/key.pem\";",
    "        ca_file = \"@DIR@/ca.pem\"; ca_path = \"@DIR@/cadir\";",
    "        ciphers = \"HIGH:!aNULL\";",
    "        domains = ( { domain = \"A2.test\"; certificate = "
    "\"@DIR@/cert2.pem\"; key = \"@DIR@/key2.pem\"; },",
    "                    { domain = \"fedgate.a.test\"; certificate = "
    "\"@DIR@/cert.pem\"; key = \"@DIR@/key.pem\"; } ); };",
    "dns = { forwarders = [ \"127.0.0.1@5353\", \"::1\" ];",
    "        hosts_file = \"@DIR@/hosts\";",
    "        trust_anchor_file = \"@DIR@/root.key\"; };",
    "limits = { stanza_max = 1048576; stanza_max_preauth = 32768; "
    "depth_max = 32;",
    "           queue_max_stanzas = 50; queue_max_bytes = 65536; "
    "queue_timeout = 30; };",
    "log = { level = \"debug\"; syslog = true; };",
    "admins = [ \"admin@A2.test.\", \"ops@a.test\" ];",
    NULL};

static struct conf *load_ok(const char *const *lines)
{
    struct conf *cfg = NULL;
    char *errs = NULL;
    int rc = load_lines(lines, &cfg, &errs);
    ck_assert_msg(rc == 0, "load failed (%d):\n%s", rc, errs);
    ck_assert_str_eq(errs, "");
    free(errs);
    return cfg;
}

static char *tmpfile_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    return path;
}

/* ---- valid configurations ---- */

START_TEST(test_full_config)
{
    struct conf *cfg = load_ok(full_conf);
    const struct conf_peer *b, *c;

    ck_assert_str_eq(cfg->path, conf_path);
    ck_assert_str_eq(cfg->service_jid, "fedgate.a.test");
    ck_assert_uint_eq(cfg->ndomains, 2);
    ck_assert_str_eq(cfg->domains[0], "a.test");
    ck_assert_str_eq(cfg->domains[1], "a2.test"); /* normalised */
    ck_assert_str_eq(cfg->state_db, tmpfile_path("state.db"));
    ck_assert_str_eq(cfg->upstream_host, "127.0.1.1");
    ck_assert_uint_eq(cfg->upstream_port, 5348);
    ck_assert_str_eq(cfg->upstream_secret, "up\"sec\\ret");
    ck_assert_str_eq(cfg->service_secret, "gw-secret");
    ck_assert_uint_eq(cfg->upstream_connect_timeout, 7);
    ck_assert_uint_eq(cfg->upstream_handshake_timeout, 8);
    ck_assert_uint_eq(cfg->backoff_initial_ms, 250);
    ck_assert_uint_eq(cfg->backoff_max_ms, 30000);
    ck_assert_str_eq(cfg->peer_hook,
                     "/usr/lib/fedgate/prosody-peer-hook --dir /etc/p");
    ck_assert_uint_eq(cfg->peer_hook_timeout, 30);

    ck_assert_uint_eq(cfg->npeers, 2);
    b = &cfg->peers[0];
    ck_assert_str_eq(b->domain, "b.test");
    ck_assert_str_eq(b->secret, "b-secret");
    ck_assert(!b->trusted);
    ck_assert(b->tls_required);
    ck_assert_int_eq(b->auth, CONF_AUTH_CERTIFICATE);
    ck_assert_str_eq(b->trust_anchor, tmpfile_path("peer-ca.pem"));
    ck_assert_str_eq(b->host, "192.0.2.7");
    ck_assert_uint_eq(b->port, 5270);
    ck_assert_uint_eq(b->stanza_max, 100000);
    ck_assert_int_eq(b->line, 17);
    ck_assert_uint_eq(b->nservices, 2);
    ck_assert_str_eq(b->services[0].domain, "conference.b.test");
    ck_assert_str_eq(b->services[0].secret, "muc-secret");
    ck_assert_int_eq(b->services[0].line, 27);
    ck_assert_str_eq(b->services[1].domain, "pubsub.b.test");
    ck_assert_ptr_null(b->services[1].secret);
    ck_assert_int_eq(b->services[1].line, 28);
    c = &cfg->peers[1];
    ck_assert_str_eq(c->domain, "c.test");
    ck_assert_ptr_null(c->secret);
    ck_assert_int_eq(c->auth, CONF_AUTH_DIALBACK);
    ck_assert_int_eq(c->line, 30);

    ck_assert_uint_eq(cfg->ns2s_listen, 2);
    ck_assert_str_eq(cfg->s2s_listen[0], "127.0.0.1:5269");
    ck_assert_str_eq(cfg->s2s_listen[1], "[::1]:5269");
    ck_assert_uint_eq(cfg->ns2s_direct_tls_listen, 1);
    ck_assert_str_eq(cfg->s2s_direct_tls_listen[0], "0.0.0.0:5270");
    ck_assert_str_eq(cfg->s2s_dialback_secret, "db-secret");
    ck_assert_uint_eq(cfg->s2s_connect_timeout, 7);
    ck_assert_uint_eq(cfg->s2s_negotiate_timeout, 9);
    ck_assert_uint_eq(cfg->s2s_idle_timeout, 700);
    ck_assert_uint_eq(cfg->s2s_keepalive, 30);
    ck_assert_str_eq(cfg->tls_cert, tmpfile_path("cert.pem"));
    ck_assert_str_eq(cfg->tls_key, tmpfile_path("key.pem"));
    ck_assert_str_eq(cfg->tls_ca, tmpfile_path("ca.pem"));
    ck_assert_str_eq(cfg->tls_ca_path, tmpfile_path("cadir"));
    ck_assert_str_eq(cfg->tls_ciphers, "HIGH:!aNULL");
    ck_assert_uint_eq(cfg->ntls_domains, 2);
    ck_assert_str_eq(cfg->tls_domains[0].domain, "a2.test"); /* normalised */
    ck_assert_str_eq(cfg->tls_domains[0].certificate,
                     tmpfile_path("cert2.pem"));
    ck_assert_str_eq(cfg->tls_domains[0].key, tmpfile_path("key2.pem"));
    ck_assert_int_eq(cfg->tls_domains[0].line, 40);
    ck_assert_str_eq(cfg->tls_domains[1].domain, "fedgate.a.test");
    ck_assert_int_eq(cfg->tls_domains[1].line, 41);
    ck_assert_uint_eq(cfg->ndns_forwarders, 2);
    ck_assert_str_eq(cfg->dns_forwarders[0], "127.0.0.1@5353");
    ck_assert_str_eq(cfg->dns_forwarders[1], "::1");
    ck_assert_str_eq(cfg->dns_hosts_file, tmpfile_path("hosts"));
    ck_assert_str_eq(cfg->dns_trust_anchor_file, tmpfile_path("root.key"));
    ck_assert_uint_eq(cfg->stanza_max, 1048576);
    ck_assert_uint_eq(cfg->stanza_max_preauth, 32768);
    ck_assert_uint_eq(cfg->depth_max, 32);
    ck_assert_uint_eq(cfg->queue_max_stanzas, 50);
    ck_assert_uint_eq(cfg->queue_max_bytes, 65536);
    ck_assert_uint_eq(cfg->queue_timeout, 30);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_DEBUG);
    ck_assert(cfg->log_syslog);
    conf_free(cfg);
}
END_TEST

/* The full configuration really sets every key: a key its dump shows as
 * "not set" (the fallback cases) is set elsewhere at the same depth. A key
 * added to the table must be added to full_conf. */
START_TEST(test_full_config_sets_every_key)
{
    struct conf *cfg = load_ok(full_conf);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    const char *p;

    ck_assert_ptr_nonnull(out);
    conf_print(cfg, out);
    fclose(out);
    p = text;
    while ((p = strstr(p, ": not set\n")) != NULL) {
        const char *bol = p;
        char want[128];
        int indent, namelen;
        while (bol > text && bol[-1] != '\n') {
            bol--;
        }
        indent = (int)strspn(bol, " ");
        ck_assert(strncmp(bol + indent, "// ", 3) == 0);
        namelen = (int)(p - (bol + indent + 3));
        snprintf(want, sizeof(want), "\n%*s%.*s = ", indent, "", namelen,
                 bol + indent + 3);
        ck_assert_msg(strstr(text, want) != NULL, "never set: %.*s", namelen,
                      bol + indent + 3);
        p++;
    }
    free(text);
    conf_free(cfg);
}
END_TEST

START_TEST(test_minimal_defaults)
{
    struct conf *cfg = load_ok(
        LINES("service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
              "upstream = {", "  secret = \"s3cret\";", "};"));

    ck_assert_str_eq(cfg->service_jid, "fedgate.a.test");
    ck_assert_uint_eq(cfg->ndomains, 1);
    ck_assert_str_eq(cfg->domains[0], "a.test");
    ck_assert_str_eq(cfg->state_db, "/var/lib/fedgate/state.db");
    ck_assert_str_eq(cfg->upstream_host, "127.0.0.1");
    ck_assert_uint_eq(cfg->upstream_port, 5347);
    ck_assert_str_eq(cfg->upstream_secret, "s3cret");
    ck_assert_ptr_null(cfg->service_secret);
    ck_assert_uint_eq(cfg->upstream_connect_timeout, 10);
    ck_assert_uint_eq(cfg->upstream_handshake_timeout, 10);
    ck_assert_uint_eq(cfg->backoff_initial_ms, 500);
    ck_assert_uint_eq(cfg->backoff_max_ms, 60000);
    ck_assert_uint_eq(cfg->npeers, 0);
    ck_assert_ptr_null(cfg->peers);
    ck_assert_uint_eq(cfg->ns2s_listen, 1);
    ck_assert_str_eq(cfg->s2s_listen[0], "0.0.0.0:5269");
    ck_assert_uint_eq(cfg->ns2s_direct_tls_listen, 0);
    ck_assert_ptr_null(cfg->tls_cert);
    ck_assert_ptr_null(cfg->tls_key);
    ck_assert_ptr_null(cfg->tls_ca);
    ck_assert_ptr_null(cfg->tls_ca_path);
    ck_assert_ptr_null(cfg->tls_ciphers);
    ck_assert_uint_eq(cfg->ndns_forwarders, 0);
    ck_assert_ptr_null(cfg->dns_hosts_file);
    ck_assert_ptr_null(cfg->dns_trust_anchor_file);
    ck_assert_uint_eq(cfg->stanza_max, 524288);
    ck_assert_uint_eq(cfg->stanza_max_preauth, 65536);
    ck_assert_uint_eq(cfg->depth_max, 64);
    ck_assert_uint_eq(cfg->queue_max_stanzas, 1000);
    ck_assert_uint_eq(cfg->queue_max_bytes, 4194304);
    ck_assert_uint_eq(cfg->queue_timeout, 60);
    ck_assert_int_eq(cfg->log_level, LOG_LEVEL_INFO);
    ck_assert(!cfg->log_syslog);
    conf_free(cfg);
}
END_TEST

START_TEST(test_peer_defaults)
{
    struct conf *cfg = load_ok(LINES(
        "service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
        "upstream = { secret = \"s\"; };",
        "tls = { certificate = \"@DIR@/cert.pem\"; key = \"@DIR@/key.pem\"; "
        "};",
        "peers = ( { domain = \"b.test\"; services = ( { domain = "
        "\"muc.b.test\"; } ); } );"));
    const struct conf_peer *p = &cfg->peers[0];

    ck_assert_uint_eq(cfg->npeers, 1);
    ck_assert(p->trusted);
    ck_assert(p->tls_required);
    ck_assert_int_eq(p->auth, CONF_AUTH_ANY);
    ck_assert_ptr_null(p->secret);
    ck_assert_ptr_null(p->trust_anchor);
    ck_assert_ptr_null(p->host);
    ck_assert_uint_eq(p->port, 0);
    ck_assert_uint_eq(p->stanza_max, 0);
    ck_assert_uint_eq(p->nservices, 1);
    ck_assert_ptr_null(p->services[0].secret);
    conf_free(cfg);
}
END_TEST

/* ---- errors, each with its line ---- */

START_TEST(test_err_syntax)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = ; };"),
                 3, "syntax error");
}
END_TEST

START_TEST(test_err_missing_file)
{
    struct conf *cfg = NULL;
    char *errs = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&errs, &len);
    char want[600];

    ck_assert_int_eq(conf_load(tmpfile_path("absent.conf"), &cfg, err),
                     ERR_CONFIG);
    fclose(err);
    ck_assert_ptr_null(cfg);
    snprintf(want, sizeof(want),
             "%s: cannot read: ", tmpfile_path("absent.conf"));
    ck_assert_msg(strstr(errs, want) == errs, "got: %s", errs);
    free(errs);
}
END_TEST

START_TEST(test_admins_normalised)
{
    struct conf *cfg = load_ok(full_conf);
    ck_assert_uint_eq(cfg->nadmins, 2);
    ck_assert_str_eq(cfg->admins[0], "admin@a2.test");
    ck_assert_str_eq(cfg->admins[1], "ops@a.test");
    conf_free(cfg);
    cfg = load_ok(LINES("service_jid = \"fedgate.a.test\";",
                        "domains = [ \"a.test\" ];",
                        "upstream = { secret = \"s\"; };"));
    ck_assert_uint_eq(cfg->nadmins, 0);
    conf_free(cfg);
}
END_TEST

START_TEST(test_err_admin_not_bare)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "admins = [ \"admin@a.test/phone\" ];"),
                 4,
                 "'admins': 'admin@a.test/phone' is not a bare JID such as "
                 "admin@a.test");
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];", "admins = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };"),
                 3, "'admins': 'a.test' is not a bare JID");
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "admins = [ \"bad user@a.test\" ];",
                       "upstream = { secret = \"s\"; };"),
                 3, "'admins': 'bad user@a.test' is not a bare JID");
}
END_TEST

START_TEST(test_err_admin_duplicate)
{
    struct conf *cfg = NULL;
    char *errs = NULL;
    int rc = load_lines(LINES("service_jid = \"fedgate.a.test\";",
                              "domains = [ \"a.test\" ];",
                              "admins = [ \"x@a.test\", \"x@A.test\" ];",
                              "upstream = { secret = \"s\"; };"),
                        &cfg, &errs);
    ck_assert_int_eq(rc, ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(errs, "fedgate.conf:3: ") != NULL, "%s", errs);
    ck_assert_msg(strstr(errs, "admins") != NULL, "%s", errs);
    free(errs);
}
END_TEST

START_TEST(test_err_unknown_top_key)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];", "colour = \"blue\";",
                       "upstream = { secret = \"s\"; };"),
                 3, "unknown key 'colour'");
}
END_TEST

START_TEST(test_err_unknown_group_key)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];", "upstream = {",
                       "  secret = \"s\";", "  colour = 5;", "};"),
                 5, "unknown key 'colour' in upstream");
}
END_TEST

START_TEST(test_err_unknown_peer_key)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };", "peers = (",
                       "  { domain = \"b.test\";", "    tls_required = false;",
                       "    colour = 1; }", ");"),
                 7, "unknown key 'colour' in peers");
}
END_TEST

START_TEST(test_err_unknown_service_key)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };", "peers = (",
                       "  { domain = \"b.test\";", "    tls_required = false;",
                       "    services = (", "      { domain = \"muc.b.test\";",
                       "        colour = 1; }", "    );", "  }", ");"),
                 9, "unknown key 'colour' in peers.services");
}
END_TEST

START_TEST(test_err_wrong_type)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];", "upstream = {",
                       "  secret = \"s\";", "  port = \"5347\";", "};"),
                 5, "'upstream.port' must be an integer");
}
END_TEST

START_TEST(test_err_wrong_type_bool)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "log = { syslog = \"yes\"; };"),
                 4, "'log.syslog' must be true or false");
}
END_TEST

START_TEST(test_err_port_range)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];", "upstream = {",
                       "  secret = \"s\";", "", "  port = 70000;", "};"),
                 6, "'upstream.port' is out of range: must be 1..65535");
}
END_TEST

/* libconfig 1.5 wraps 4294967297 to 1, a valid port: still an error. */
START_TEST(test_err_port_wrapped)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; port = 4294967297; };"),
                 3, "'upstream.port' is out of range: must be 1..65535");
}
END_TEST

START_TEST(test_err_bad_listen)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };", "s2s = { listen = [",
                       "  \"0.0.0.0:5269\",", "  \"localhost:5269\" ]; };"),
                 6, "'s2s.listen': bad listen address 'localhost:5269'");
}
END_TEST

START_TEST(test_err_listen_port_zero)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "s2s = { direct_tls_listen = [ \"[::]:0\" ]; };"),
                 4, "'s2s.direct_tls_listen': bad listen address '[::]:0'");
}
END_TEST

START_TEST(test_err_listen_in_both_lists)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "s2s = { listen = [ \"0.0.0.0:5269\" ];",
                       "        direct_tls_listen = [ \"0.0.0.0:5269\" ]; };"),
                 5,
                 "'s2s.direct_tls_listen': '0.0.0.0:5269' is also in "
                 "s2s.listen");
}
END_TEST

START_TEST(test_err_bad_forwarder)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "dns = { forwarders = [ \"ns.a.test@53\" ]; };"),
                 4, "'dns.forwarders': bad forwarder 'ns.a.test@53'");
}
END_TEST

START_TEST(test_err_bad_domain)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\",", "  \"a..test\" ];",
                       "upstream = { secret = \"s\"; };"),
                 3, "'domains': invalid domain 'a..test'");
}
END_TEST

START_TEST(test_err_domain_is_address)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"192.0.2.1\" ];",
                       "upstream = { secret = \"s\"; };"),
                 2, "'domains' must be a domain name, not the address");
}
END_TEST

START_TEST(test_err_service_jid_not_subdomain)
{
    expect_error(LINES("domains = [ \"a.test\" ];",
                       "service_jid = \"fedgate\";",
                       "upstream = { secret = \"s\"; };"),
                 2, "'service_jid' must be a subdomain such as");
}
END_TEST

START_TEST(test_err_duplicate_peer)
{
    expect_error(
        LINES("service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
              "upstream = { secret = \"s\"; };", "peers = (",
              "  { domain = \"b.test\"; tls_required = false; },",
              "  { domain = \"B.test.\"; tls_required = false; }", ");"),
        6, "duplicate peer domain 'b.test' (first at line 5)");
}
END_TEST

START_TEST(test_err_peer_is_served_domain)
{
    expect_error(
        LINES("service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
              "upstream = { secret = \"s\"; };", "peers = (",
              "  { domain = \"a.test\"; tls_required = false; }", ");"),
        5, "peer domain 'a.test' is also a served domain (line 2)");
}
END_TEST

START_TEST(test_err_service_is_peer)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };", "peers = (",
                       "  { domain = \"b.test\"; tls_required = false; },",
                       "  { domain = \"c.test\"; tls_required = false;",
                       "    services = ( { domain = \"b.test\"; } ); }", ");"),
                 7, "service domain 'b.test' is also a peer domain (line 5)");
}
END_TEST

START_TEST(test_err_missing_service_jid)
{
    expect_error(
        LINES("domains = [ \"a.test\" ];", "upstream = { secret = \"s\"; };"),
        0, "missing required key 'service_jid'");
}
END_TEST

START_TEST(test_err_missing_peer_domain)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };", "peers = (",
                       "  { tls_required = false; }", ");"),
                 5, "missing required key 'peers.domain'");
}
END_TEST

START_TEST(test_err_empty_domains)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";", "domains = [ ];",
                       "upstream = { secret = \"s\"; };"),
                 2, "'domains' must have at least 1 element");
}
END_TEST

START_TEST(test_err_missing_peer_secret)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { service_secret = \"gw\"; };",
                       "peers = ( { domain = \"b.test\";",
                       "            tls_required = false; } );"),
                 4, "no secret for peer 'b.test'");
}
END_TEST

START_TEST(test_err_missing_service_secret)
{
    expect_error(LINES("domains = [ \"a.test\" ];",
                       "service_jid = \"fedgate.a.test\";", "upstream = { };"),
                 2,
                 "no secret for the stream of service_jid "
                 "'fedgate.a.test'");
}
END_TEST

START_TEST(test_err_secret_not_printable)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"a\\nb\"; };"),
                 3, "'upstream.secret' must be printable ASCII");
}
END_TEST

START_TEST(test_err_preauth_above_max)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };", "limits = {",
                       "  stanza_max_preauth = 600000;", "};"),
                 5,
                 "'limits.stanza_max_preauth' (600000) must not exceed "
                 "'limits.stanza_max' (524288)");
}
END_TEST

START_TEST(test_err_backoff_order)
{
    expect_error(
        LINES("service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
              "upstream = { secret = \"s\";", "  backoff_initial_ms = 5000;",
              "  backoff_max_ms = 1000; };"),
        4, "'upstream.backoff_initial_ms' (5000) must not exceed");
}
END_TEST

START_TEST(test_err_missing_tls_file)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "tls = { key = \"@DIR@/key.pem\";",
                       "  certificate = \"@DIR@/missing.pem\"; };"),
                 5, "'tls.certificate': cannot read");
}
END_TEST

START_TEST(test_err_tls_required_without_cert)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "peers = ( { domain = \"b.test\"; } );"),
                 4,
                 "peer 'b.test' requires TLS but 'tls.certificate' is "
                 "not set");
}
END_TEST

START_TEST(test_err_bad_log_level)
{
    expect_error(LINES("service_jid = \"fedgate.a.test\";",
                       "domains = [ \"a.test\" ];",
                       "upstream = { secret = \"s\"; };",
                       "log = { level = \"verbose\"; };"),
                 4, "'log.level' is 'verbose', must be one of error");
}
END_TEST

/* tls.domains: the lines of the entries that are wrong. */
static const char *const tls_domains_head[] = {
    "service_jid = \"fedgate.a.test\";",
    "domains = [ \"a.test\", \"a2.test\" ];",
    "upstream = { secret = \"s\"; };",
};

/* Loads the head above, then tls = { ... } with body lines (line 4 on). */
static void
expect_tls_domains_error(const char *const *body, int line, const char *msg)
{
    const char *lines[16];
    size_t n = 0;
    for (size_t i = 0; i < 3; i++) {
        lines[n++] = tls_domains_head[i];
    }
    for (size_t i = 0; body[i] != NULL && n < 15; i++) {
        lines[n++] = body[i];
    }
    lines[n] = NULL;
    expect_error(lines, line, msg);
}

START_TEST(test_tls_domains_valid)
{
    struct conf *cfg = load_ok(LINES(
        "service_jid = \"fedgate.a.test\";",
        "domains = [ \"a.test\", \"a2.test\" ];",
        "upstream = { secret = \"s\"; };",
        "tls = { certificate = \"@DIR@/cert.pem\"; key = \"@DIR@/key.pem\";",
        "  domains = (",
        "    { domain = \"A2.TEST.\"; certificate = \"@DIR@/cert2.pem\";",
        "      key = \"@DIR@/key2.pem\"; }", "  ); };"));
    ck_assert_uint_eq(cfg->ntls_domains, 1);
    ck_assert_str_eq(cfg->tls_domains[0].domain, "a2.test");
    ck_assert_str_eq(cfg->tls_domains[0].certificate,
                     tmpfile_path("cert2.pem"));
    ck_assert_str_eq(cfg->tls_domains[0].key, tmpfile_path("key2.pem"));
    ck_assert_int_eq(cfg->tls_domains[0].line, 6);
    conf_free(cfg);
}
END_TEST

START_TEST(test_err_tls_domain_not_served)
{
    expect_tls_domains_error(
        LINES("tls = { certificate = \"@DIR@/cert.pem\";",
              "  key = \"@DIR@/key.pem\"; domains = (",
              "    { domain = \"b.test\"; certificate = \"@DIR@/cert2.pem\";",
              "      key = \"@DIR@/key2.pem\"; } ); };"),
        6,
        "'tls.domains': 'b.test' is neither a served domain nor service_jid");
}
END_TEST

START_TEST(test_err_tls_domain_duplicate)
{
    expect_tls_domains_error(
        LINES("tls = { certificate = \"@DIR@/cert.pem\";",
              "  key = \"@DIR@/key.pem\"; domains = (",
              "    { domain = \"a2.test\"; certificate = \"@DIR@/cert2.pem\";",
              "      key = \"@DIR@/key2.pem\"; },",
              "    { domain = \"A2.test\"; certificate = \"@DIR@/cert.pem\";",
              "      key = \"@DIR@/key.pem\"; } ); };"),
        8, "'tls.domains': duplicate domain 'a2.test' (first at line 6)");
}
END_TEST

START_TEST(test_err_tls_domain_unreadable_file)
{
    expect_tls_domains_error(LINES("tls = { certificate = \"@DIR@/cert.pem\";",
                                   "  key = \"@DIR@/key.pem\"; domains = (",
                                   "    { domain = \"a2.test\";",
                                   "      certificate = \"@DIR@/missing.pem\";",
                                   "      key = \"@DIR@/key2.pem\"; } ); };"),
                             7, "'tls.domains.certificate': cannot read");
}
END_TEST

START_TEST(test_err_tls_domain_missing_key)
{
    expect_tls_domains_error(
        LINES("tls = { certificate = \"@DIR@/cert.pem\";",
              "  key = \"@DIR@/key.pem\"; domains = (",
              "    { domain = \"a2.test\";",
              "      certificate = \"@DIR@/cert2.pem\"; } ); };"),
        6, "missing required key 'tls.domains.key'");
}
END_TEST

START_TEST(test_err_tls_domain_bad_domain)
{
    expect_tls_domains_error(LINES("tls = { certificate = \"@DIR@/cert.pem\";",
                                   "  key = \"@DIR@/key.pem\"; domains = (",
                                   "    { domain = \"a2..test\";",
                                   "      certificate = \"@DIR@/cert2.pem\";",
                                   "      key = \"@DIR@/key2.pem\"; } ); };"),
                             6,
                             "'tls.domains.domain': invalid domain 'a2..test'");
}
END_TEST

START_TEST(test_err_tls_domains_without_default)
{
    expect_tls_domains_error(
        LINES("tls = {", "  domains = (",
              "    { domain = \"a2.test\"; certificate = \"@DIR@/cert2.pem\";",
              "      key = \"@DIR@/key2.pem\"; } ); };"),
        5,
        "'tls.domains' needs 'tls.certificate' and 'tls.key', the default "
        "for every other name");
}
END_TEST

START_TEST(test_err_tls_domains_not_a_list)
{
    expect_tls_domains_error(LINES("tls = { certificate = \"@DIR@/cert.pem\";",
                                   "  key = \"@DIR@/key.pem\";",
                                   "  domains = [ \"a2.test\" ]; };"),
                             6, "'tls.domains' must be a list of groups");
}
END_TEST

START_TEST(test_keepalive_lower_bound)
{
    struct conf *cfg = load_ok(LINES("service_jid = \"fedgate.a.test\";",
                                     "domains = [ \"a.test\" ];",
                                     "upstream = { secret = \"s\"; };",
                                     "s2s = { keepalive_interval = 1; };"));
    ck_assert_uint_eq(cfg->s2s_keepalive, 1);
    conf_free(cfg);
    expect_error(
        LINES("service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
              "upstream = { secret = \"s\"; };",
              "s2s = { keepalive_interval = 0; };"),
        4, "'s2s.keepalive_interval' is out of range: must be 1..3600");
}
END_TEST

/* An error inside an @include names the included file. */
START_TEST(test_err_in_included_file)
{
    const char *inc =
        write_conf_as("peers.conf", LINES("peers = (",
                                          "  { domain = \"b.test\"; "
                                          "tls_required = false;",
                                          "    colour = 2; }", ");"));
    struct conf *cfg = NULL;
    char *errs = NULL;
    char want[600];

    snprintf(want, sizeof(want), "%s:3: unknown key 'colour' in peers", inc);
    ck_assert_int_eq(load_lines(LINES("service_jid = \"fedgate.a.test\";",
                                      "domains = [ \"a.test\" ];",
                                      "upstream = { secret = \"s\"; };",
                                      "@include \"peers.conf\""),
                                &cfg, &errs),
                     ERR_CONFIG);
    ck_assert_msg(strstr(errs, want) != NULL, "expected \"%s\" in:\n%s", want,
                  errs);
    free(errs);
}
END_TEST

/* All problems are reported, one line each, not only the first. */
START_TEST(test_err_all_reported)
{
    struct conf *cfg = NULL;
    char *errs = NULL;
    char want[600];
    int rc = load_lines(
        LINES("domains = [ \"a.test\" ];", "upstream = {", "  port = 0;",
              "  colour = 1;", "};",
              "peers = ( { domain = \"b..test\"; tls_required = false; } );",
              "limits = { depth_max = 2; };"),
        &cfg, &errs);

    ck_assert_int_eq(rc, ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    snprintf(want, sizeof(want), "%s:3: 'upstream.port' is out of range",
             conf_path);
    ck_assert_msg(strstr(errs, want) != NULL, "no port error:\n%s", errs);
    snprintf(want, sizeof(want), "%s:4: unknown key 'colour' in upstream",
             conf_path);
    ck_assert_msg(strstr(errs, want) != NULL, "no unknown key:\n%s", errs);
    snprintf(want, sizeof(want), "%s:6: 'peers.domain': invalid domain",
             conf_path);
    ck_assert_msg(strstr(errs, want) != NULL, "no domain error:\n%s", errs);
    snprintf(want, sizeof(want), "%s:7: 'limits.depth_max' is out of range",
             conf_path);
    ck_assert_msg(strstr(errs, want) != NULL, "no depth error:\n%s", errs);
    snprintf(want, sizeof(want), "%s: missing required key 'service_jid'",
             conf_path);
    ck_assert_msg(strstr(errs, want) != NULL, "no service_jid:\n%s", errs);
    ck_assert_msg(count_lines(errs) == 5, "want 5 lines:\n%s", errs);
    free(errs);
}
END_TEST

/* ---- printing ---- */

static bool strs_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool lists_eq(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb) {
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i], b[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* Secrets compare by whether they are set: conf_print hides them. */
#define SAME_SET(a, b) (((a) == NULL) == ((b) == NULL))

static void assert_conf_equal(const struct conf *a, const struct conf *b)
{
    ck_assert(lists_eq(a->domains, a->ndomains, b->domains, b->ndomains));
    ck_assert(strs_eq(a->service_jid, b->service_jid));
    ck_assert(strs_eq(a->upstream_host, b->upstream_host));
    ck_assert_uint_eq(a->upstream_port, b->upstream_port);
    ck_assert(SAME_SET(a->upstream_secret, b->upstream_secret));
    ck_assert(SAME_SET(a->service_secret, b->service_secret));
    ck_assert_uint_eq(a->upstream_connect_timeout, b->upstream_connect_timeout);
    ck_assert_uint_eq(a->upstream_handshake_timeout,
                      b->upstream_handshake_timeout);
    ck_assert_uint_eq(a->backoff_initial_ms, b->backoff_initial_ms);
    ck_assert_uint_eq(a->backoff_max_ms, b->backoff_max_ms);
    ck_assert(strs_eq(a->peer_hook, b->peer_hook));
    ck_assert_uint_eq(a->peer_hook_timeout, b->peer_hook_timeout);
    ck_assert_uint_eq(a->npeers, b->npeers);
    for (size_t i = 0; i < a->npeers; i++) {
        const struct conf_peer *p = &a->peers[i], *q = &b->peers[i];
        ck_assert(strs_eq(p->domain, q->domain));
        ck_assert(SAME_SET(p->secret, q->secret));
        ck_assert_int_eq(p->trusted, q->trusted);
        ck_assert_int_eq(p->tls_required, q->tls_required);
        ck_assert_int_eq(p->auth, q->auth);
        ck_assert(strs_eq(p->trust_anchor, q->trust_anchor));
        ck_assert(strs_eq(p->host, q->host));
        ck_assert_uint_eq(p->port, q->port);
        ck_assert_uint_eq(p->stanza_max, q->stanza_max);
        ck_assert_uint_eq(p->nservices, q->nservices);
        for (size_t j = 0; j < p->nservices; j++) {
            ck_assert(strs_eq(p->services[j].domain, q->services[j].domain));
            ck_assert(SAME_SET(p->services[j].secret, q->services[j].secret));
        }
    }
    ck_assert(
        lists_eq(a->s2s_listen, a->ns2s_listen, b->s2s_listen, b->ns2s_listen));
    ck_assert(lists_eq(a->s2s_direct_tls_listen, a->ns2s_direct_tls_listen,
                       b->s2s_direct_tls_listen, b->ns2s_direct_tls_listen));
    ck_assert(strs_eq(a->tls_cert, b->tls_cert));
    ck_assert(strs_eq(a->tls_key, b->tls_key));
    ck_assert(strs_eq(a->tls_ca, b->tls_ca));
    ck_assert(strs_eq(a->tls_ca_path, b->tls_ca_path));
    ck_assert(strs_eq(a->tls_ciphers, b->tls_ciphers));
    ck_assert_uint_eq(a->ntls_domains, b->ntls_domains);
    for (size_t i = 0; i < a->ntls_domains; i++) {
        ck_assert(strs_eq(a->tls_domains[i].domain, b->tls_domains[i].domain));
        ck_assert(strs_eq(a->tls_domains[i].certificate,
                          b->tls_domains[i].certificate));
        ck_assert(strs_eq(a->tls_domains[i].key, b->tls_domains[i].key));
    }
    ck_assert(lists_eq(a->dns_forwarders, a->ndns_forwarders, b->dns_forwarders,
                       b->ndns_forwarders));
    ck_assert(strs_eq(a->dns_hosts_file, b->dns_hosts_file));
    ck_assert(strs_eq(a->dns_trust_anchor_file, b->dns_trust_anchor_file));
    ck_assert_uint_eq(a->stanza_max, b->stanza_max);
    ck_assert_uint_eq(a->stanza_max_preauth, b->stanza_max_preauth);
    ck_assert_uint_eq(a->depth_max, b->depth_max);
    ck_assert_uint_eq(a->queue_max_stanzas, b->queue_max_stanzas);
    ck_assert_uint_eq(a->queue_max_bytes, b->queue_max_bytes);
    ck_assert_uint_eq(a->queue_timeout, b->queue_timeout);
    ck_assert_int_eq(a->log_level, b->log_level);
    ck_assert_int_eq(a->log_syslog, b->log_syslog);
    ck_assert(strs_eq(a->state_db, b->state_db));
}

/* Prints cfg to a file in the temporary directory and loads it again. */
static struct conf *reload_printed(const struct conf *cfg, char **text)
{
    size_t len = 0;
    FILE *out = open_memstream(text, &len);
    const char *path;
    struct conf *again = NULL;
    FILE *err;
    char *errs = NULL;
    size_t elen = 0;

    ck_assert_ptr_nonnull(out);
    conf_print(cfg, out);
    fclose(out);
    path = write_conf_as("printed.conf", LINES(*text));
    err = open_memstream(&errs, &elen);
    ck_assert_int_eq(conf_load(path, &again, err), 0);
    fclose(err);
    ck_assert_str_eq(errs, "");
    free(errs);
    return again;
}

START_TEST(test_print_roundtrip)
{
    struct conf *full = load_ok(full_conf);
    struct conf *min = load_ok(LINES("service_jid = \"fedgate.a.test\";",
                                     "domains = [ \"a.test\" ];",
                                     "upstream = { secret = \"s\"; };"));
    char *text = NULL;
    struct conf *again = reload_printed(full, &text);

    assert_conf_equal(full, again);
    conf_free(again);
    free(text);
    text = NULL;
    again = reload_printed(min, &text);
    assert_conf_equal(min, again);
    conf_free(again);
    free(text);
    conf_free(full);
    conf_free(min);
}
END_TEST

START_TEST(test_print_hides_secrets)
{
    struct conf *cfg = load_ok(full_conf);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    conf_print(cfg, out);
    fclose(out);
    ck_assert_ptr_null(strstr(text, "gw-secret"));
    ck_assert_ptr_null(strstr(text, "b-secret"));
    ck_assert_ptr_null(strstr(text, "muc-secret"));
    ck_assert_ptr_null(strstr(text, "sec\\\\ret"));
    ck_assert_ptr_nonnull(strstr(text, "secret = \"(set)\";"));
    free(text);
    conf_free(cfg);
}
END_TEST

static char *server_text(const struct conf *cfg, const char *kind)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(conf_print_server(cfg, kind, out), 0);
    fclose(out);
    return text;
}

/* Asserts that text has head, and that the next `key` after it is
 * followed by value. */
static void assert_pair(const char *text,
                        const char *head,
                        const char *key,
                        const char *value)
{
    const char *h = strstr(text, head), *k;

    ck_assert_msg(h != NULL, "no \"%s\" in:\n%s", head, text);
    k = strstr(h + strlen(head), key);
    ck_assert_msg(k != NULL, "no \"%s\" after \"%s\"", key, head);
    k += strlen(key);
    ck_assert_msg(strncmp(k, value, strlen(value)) == 0 &&
                      k[strlen(value)] == '\n',
                  "after \"%s\": want %s, got %.40s", head, value, k);
}

START_TEST(test_print_server_prosody)
{
    struct conf *cfg = load_ok(full_conf);
    char *t = server_text(cfg, "prosody");
    const char *key = "component_secret = ";

    ck_assert_ptr_nonnull(strstr(t, "\nmodules_disabled = { \"s2s\" }\n"));
    ck_assert_ptr_nonnull(
        strstr(t, "\ncomponent_interfaces = { \"127.0.1.1\" }\n"));
    ck_assert_ptr_nonnull(strstr(t, "\ncomponent_ports = { 5348 }\n"));
    assert_pair(t, "\nComponent \"fedgate.a.test\"", key, "\"gw-secret\"");
    assert_pair(t, "\nComponent \"b.test\"", key, "\"b-secret\"");
    assert_pair(t, "\nComponent \"conference.b.test\"", key, "\"muc-secret\"");
    assert_pair(t, "\nComponent \"pubsub.b.test\"", key, "\"b-secret\"");
    assert_pair(t, "\nComponent \"c.test\"", key, "\"up\\\"sec\\\\ret\"");
    ck_assert_ptr_null(strstr(t, "Component \"a.test\""));
    free(t);
    conf_free(cfg);
}
END_TEST

START_TEST(test_print_server_ejabberd)
{
    struct conf *cfg = load_ok(full_conf);
    char *t = server_text(cfg, "ejabberd");
    const char *key = "password: ";

    ck_assert_ptr_nonnull(strstr(t, "\n    module: ejabberd_service\n"));
    ck_assert_ptr_nonnull(strstr(t, "\n    ip: \"127.0.1.1\"\n"));
    ck_assert_ptr_nonnull(strstr(t, "\n    port: 5348\n"));
    ck_assert_ptr_nonnull(strstr(t, "\n    check_from: true\n"));
    ck_assert_ptr_nonnull(strstr(t, "\n    global_routes: false\n"));
    ck_assert_ptr_nonnull(strstr(t, "\ns2s_access: "));
    ck_assert_ptr_nonnull(strstr(t, "    deny: all\n"));
    assert_pair(t, "\n      \"fedgate.a.test\":", key, "\"gw-secret\"");
    assert_pair(t, "\n      \"b.test\":", key, "\"b-secret\"");
    assert_pair(t, "\n      \"conference.b.test\":", key, "\"muc-secret\"");
    assert_pair(t, "\n      \"pubsub.b.test\":", key, "\"b-secret\"");
    assert_pair(t, "\n      \"c.test\":", key, "\"up\\\"sec\\\\ret\"");
    free(t);
    conf_free(cfg);
}
END_TEST

START_TEST(test_print_server_unknown_kind)
{
    struct conf *cfg = load_ok(full_conf);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    ck_assert_int_eq(conf_print_server(cfg, "openfire", out), ERR_INVAL);
    ck_assert_int_eq(conf_print_server(cfg, NULL, out), ERR_INVAL);
    fclose(out);
    ck_assert_str_eq(text, "");
    free(text);
    conf_free(cfg);
}
END_TEST

/* ---- secrets ---- */

START_TEST(test_secret_for_fallbacks)
{
    struct conf *cfg = load_ok(full_conf);
    struct conf *plain;

    ck_assert_str_eq(conf_secret_for(cfg, "fedgate.a.test"), "gw-secret");
    ck_assert_str_eq(conf_secret_for(cfg, "b.test"), "b-secret");
    ck_assert_str_eq(conf_secret_for(cfg, "conference.b.test"), "muc-secret");
    /* a service without a secret takes its peer's */
    ck_assert_str_eq(conf_secret_for(cfg, "pubsub.b.test"), "b-secret");
    /* a peer without a secret takes upstream.secret */
    ck_assert_str_eq(conf_secret_for(cfg, "c.test"), "up\"sec\\ret");
    ck_assert_ptr_null(conf_secret_for(cfg, "a.test"));
    ck_assert_ptr_null(conf_secret_for(cfg, "d.test"));
    conf_free(cfg);

    /* no service_secret: the service stream takes upstream.secret, and a
     * service whose peer has no secret takes it too */
    plain = load_ok(
        LINES("service_jid = \"fedgate.a.test\";", "domains = [ \"a.test\" ];",
              "upstream = { secret = \"up\"; };",
              "peers = ( { domain = \"b.test\"; tls_required = false;",
              "            services = ( { domain = \"muc.b.test\"; } ); } );"));
    ck_assert_str_eq(conf_secret_for(plain, "fedgate.a.test"), "up");
    ck_assert_str_eq(conf_secret_for(plain, "muc.b.test"), "up");
    conf_free(plain);
}
END_TEST

/* ---- documentation ---- */

/* The KEYS section of doc/fedgate.conf.5 is exactly what the key table
 * generates (fedgate --print-config-doc). */
START_TEST(test_doc_matches_table)
{
    static const char begin[] = ".\\\" BEGIN KEYS\n";
    static const char end[] = ".\\\" END KEYS\n";
    const char *top = getenv("top_srcdir");
    char path[1024];
    char *man = NULL, *gen = NULL, *b, *e;
    size_t mlen = 0, glen = 0;
    FILE *f, *out;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/doc/fedgate.conf.5",
             top != NULL ? top : ".");
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    n = getdelim(&man, &mlen, '\0', f);
    fclose(f);
    ck_assert_int_gt(n, 0);
    b = strstr(man, begin);
    ck_assert_msg(b != NULL, "no BEGIN KEYS marker in %s", path);
    b += strlen(begin);
    e = strstr(b, end);
    ck_assert_msg(e != NULL, "no END KEYS marker in %s", path);
    *e = '\0';
    out = open_memstream(&gen, &glen);
    conf_print_doc(out);
    fclose(out);
    ck_assert_msg(strcmp(b, gen) == 0,
                  "%s is out of date: replace the text between the KEYS "
                  "markers with the output of fedgate --print-config-doc",
                  path);
    free(man);
    free(gen);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"full_config", test_full_config},
        {"full_config_sets_every_key", test_full_config_sets_every_key},
        {"minimal_defaults", test_minimal_defaults},
        {"peer_defaults", test_peer_defaults},
        {"err_syntax", test_err_syntax},
        {"err_missing_file", test_err_missing_file},
        {"err_unknown_top_key", test_err_unknown_top_key},
        {"err_unknown_group_key", test_err_unknown_group_key},
        {"err_unknown_peer_key", test_err_unknown_peer_key},
        {"err_unknown_service_key", test_err_unknown_service_key},
        {"err_wrong_type", test_err_wrong_type},
        {"err_wrong_type_bool", test_err_wrong_type_bool},
        {"err_port_range", test_err_port_range},
        {"err_port_wrapped", test_err_port_wrapped},
        {"err_bad_listen", test_err_bad_listen},
        {"err_listen_port_zero", test_err_listen_port_zero},
        {"err_listen_in_both_lists", test_err_listen_in_both_lists},
        {"err_bad_forwarder", test_err_bad_forwarder},
        {"err_bad_domain", test_err_bad_domain},
        {"err_domain_is_address", test_err_domain_is_address},
        {"err_service_jid_not_subdomain", test_err_service_jid_not_subdomain},
        {"err_duplicate_peer", test_err_duplicate_peer},
        {"err_peer_is_served_domain", test_err_peer_is_served_domain},
        {"err_service_is_peer", test_err_service_is_peer},
        {"err_missing_service_jid", test_err_missing_service_jid},
        {"err_missing_peer_domain", test_err_missing_peer_domain},
        {"err_empty_domains", test_err_empty_domains},
        {"err_missing_peer_secret", test_err_missing_peer_secret},
        {"err_missing_service_secret", test_err_missing_service_secret},
        {"err_secret_not_printable", test_err_secret_not_printable},
        {"err_preauth_above_max", test_err_preauth_above_max},
        {"err_backoff_order", test_err_backoff_order},
        {"err_missing_tls_file", test_err_missing_tls_file},
        {"err_tls_required_without_cert", test_err_tls_required_without_cert},
        {"err_bad_log_level", test_err_bad_log_level},
        {"err_in_included_file", test_err_in_included_file},
        {"err_all_reported", test_err_all_reported},
        {"print_roundtrip", test_print_roundtrip},
        {"print_hides_secrets", test_print_hides_secrets},
        {"print_server_prosody", test_print_server_prosody},
        {"print_server_ejabberd", test_print_server_ejabberd},
        {"print_server_unknown_kind", test_print_server_unknown_kind},
        {"secret_for_fallbacks", test_secret_for_fallbacks},
        {"doc_matches_table", test_doc_matches_table},
        {"tls_domains_valid", test_tls_domains_valid},
        {"err_tls_domain_not_served", test_err_tls_domain_not_served},
        {"err_tls_domain_duplicate", test_err_tls_domain_duplicate},
        {"err_tls_domain_unreadable_file", test_err_tls_domain_unreadable_file},
        {"err_tls_domain_missing_key", test_err_tls_domain_missing_key},
        {"err_tls_domain_bad_domain", test_err_tls_domain_bad_domain},
        {"err_tls_domains_without_default",
         test_err_tls_domains_without_default},
        {"err_tls_domains_not_a_list", test_err_tls_domains_not_a_list},
        {"keepalive_lower_bound", test_keepalive_lower_bound},
        {"admins_normalised", test_admins_normalised},
        {"err_admin_not_bare", test_err_admin_not_bare},
        {"err_admin_duplicate", test_err_admin_duplicate},
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
    SRunner *sr = srunner_create(conf_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
