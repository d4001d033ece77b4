/*
 * check_tls.c: certificate identity (certid) and the TLS layer (tls).
 *
 * A test PKI is built once per process with the OpenSSL API (EC P-256,
 * fast) into a mkdtemp directory before the suite runs: two CAs, an
 * intermediate, and leaves with the EKUs and validity the tests need. The
 * identity matrix uses certificates built in memory per test. TLS tests
 * run both ends in this process over a non-blocking socketpair, driving
 * the two handshakes alternately until both are done.
 */
#include "config.h"

#include "certid.h"
#include "err.h"
#include "jid.h"
#include "loop.h"
#include "tls.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DAY (24L * 3600L)

/* Setup failures outside a test: print OpenSSL's reason and stop. */
#define REQUIRE(cond)                                                         \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s failed\n", __FILE__, __LINE__, #cond); \
            ERR_print_errors_fp(stderr);                                      \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* ---- test PKI ----------------------------------------------------------- */

struct cert_spec {
    const char *cn;
    const char *san; /* X509v3 config syntax, or NULL */
    const char *eku; /* "serverAuth", "clientAuth", or NULL */
    bool ca;
    long not_before; /* seconds from now */
    long not_after;
    X509 *issuer; /* NULL: self-signed */
    EVP_PKEY *issuer_key;
    EVP_PKEY *key;
};

static char pki_dir[PATH_MAX];
static EVP_PKEY *ca1_key, *ca2_key, *inter_key, *leaf_key;
static X509 *ca1, *ca2, *inter;

static const char *const pki_files[] = {
    "ca1.crt",
    "ca2.crt",
    "server.crt",
    "server.key",
    "client-sa.crt",
    "client-sa.key",
    "client-ca.crt",
    "client-ca.key",
    "client-unknown.crt",
    "client-unknown.key",
    "client-expired.crt",
    "client-expired.key",
    "client-inter.crt",
    "client-inter.key",
    "empty.crt",
    "two.crt",
    "two.key",
};

/* Path of a file in the PKI directory; a few rotating buffers so that
 * one expression can hold several. */
static const char *pki_path(const char *name)
{
    static char bufs[8][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 8];
    int n = snprintf(b, PATH_MAX, "%s/%s", pki_dir, name);
    REQUIRE(n > 0 && n < PATH_MAX);
    return b;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    REQUIRE(ext != NULL);
    REQUIRE(X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const struct cert_spec *s)
{
    static long serial = 1;
    X509 *x = X509_new();
    REQUIRE(x != NULL);
    REQUIRE(X509_set_version(x, X509_VERSION_3) == 1);
    REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++) == 1);
    REQUIRE(X509_gmtime_adj(X509_getm_notBefore(x), s->not_before) != NULL);
    REQUIRE(X509_gmtime_adj(X509_getm_notAfter(x), s->not_after) != NULL);
    X509_NAME *name = X509_get_subject_name(x);
    REQUIRE(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                       (const unsigned char *)"fedgate test",
                                       -1, -1, 0) == 1);
    REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                       (const unsigned char *)s->cn, -1, -1,
                                       0) == 1);
    REQUIRE(X509_set_issuer_name(x, s->issuer != NULL
                                        ? X509_get_subject_name(s->issuer)
                                        : name) == 1);
    REQUIRE(X509_set_pubkey(x, s->key) == 1);
    if (s->ca) {
        add_ext(x, s->issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, s->issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, s->issuer, NID_basic_constraints, "CA:FALSE");
        add_ext(x, s->issuer, NID_key_usage, "critical,digitalSignature");
    }
    if (s->eku != NULL) {
        add_ext(x, s->issuer, NID_ext_key_usage, s->eku);
    }
    if (s->san != NULL) {
        add_ext(x, s->issuer, NID_subject_alt_name, s->san);
    }
    EVP_PKEY *signer = s->issuer_key != NULL ? s->issuer_key : s->key;
    REQUIRE(X509_sign(x, signer, EVP_sha256()) > 0);
    return x;
}

static void write_cert_file(const char *name, X509 *cert, X509 *extra)
{
    FILE *f = fopen(pki_path(name), "w");
    REQUIRE(f != NULL);
    REQUIRE(PEM_write_X509(f, cert) == 1);
    if (extra != NULL) {
        REQUIRE(PEM_write_X509(f, extra) == 1);
    }
    REQUIRE(fclose(f) == 0);
}

static void write_key_file(const char *name, EVP_PKEY *key)
{
    FILE *f = fopen(pki_path(name), "w");
    REQUIRE(f != NULL);
    REQUIRE(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
    REQUIRE(fclose(f) == 0);
}

/* A leaf for client.test or server.test, written as NAME.crt/NAME.key. */
static void make_leaf_files(const char *base,
                            const char *cn,
                            const char *eku,
                            long not_before,
                            long not_after,
                            X509 *issuer,
                            EVP_PKEY *issuer_key,
                            X509 *chain_extra)
{
    char san[128];
    char file[64];
    EVP_PKEY *key = EVP_EC_gen("P-256");
    REQUIRE(key != NULL);
    snprintf(san, sizeof(san), "DNS:%s", cn);
    struct cert_spec s = {.cn = cn,
                          .san = san,
                          .eku = eku,
                          .not_before = not_before,
                          .not_after = not_after,
                          .issuer = issuer,
                          .issuer_key = issuer_key,
                          .key = key};
    X509 *x = make_cert(&s);
    snprintf(file, sizeof(file), "%s.crt", base);
    write_cert_file(file, x, chain_extra);
    snprintf(file, sizeof(file), "%s.key", base);
    write_key_file(file, key);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void pki_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(pki_dir, sizeof(pki_dir), "%s/check_tls.XXXXXX",
                     tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    REQUIRE(n > 0 && (size_t)n < sizeof(pki_dir));
    REQUIRE(mkdtemp(pki_dir) != NULL);

    ca1_key = EVP_EC_gen("P-256");
    ca2_key = EVP_EC_gen("P-256");
    inter_key = EVP_EC_gen("P-256");
    leaf_key = EVP_EC_gen("P-256");
    REQUIRE(ca1_key != NULL && ca2_key != NULL && inter_key != NULL &&
            leaf_key != NULL);
    struct cert_spec s1 = {.cn = "Test CA 1",
                           .ca = true,
                           .not_before = -DAY,
                           .not_after = 3650 * DAY,
                           .key = ca1_key};
    ca1 = make_cert(&s1);
    struct cert_spec s2 = {.cn = "Test CA 2",
                           .ca = true,
                           .not_before = -DAY,
                           .not_after = 3650 * DAY,
                           .key = ca2_key};
    ca2 = make_cert(&s2);
    struct cert_spec si = {.cn = "Test Intermediate",
                           .ca = true,
                           .not_before = -DAY,
                           .not_after = 3650 * DAY,
                           .issuer = ca1,
                           .issuer_key = ca1_key,
                           .key = inter_key};
    inter = make_cert(&si);
    write_cert_file("ca1.crt", ca1, NULL);
    write_cert_file("ca2.crt", ca2, NULL);

    make_leaf_files("server", "server.test", "serverAuth", -DAY, 365 * DAY, ca1,
                    ca1_key, NULL);
    make_leaf_files("client-sa", "client.test", "serverAuth", -DAY, 365 * DAY,
                    ca1, ca1_key, NULL);
    make_leaf_files("client-ca", "client.test", "clientAuth", -DAY, 365 * DAY,
                    ca1, ca1_key, NULL);
    make_leaf_files("client-unknown", "client.test", "serverAuth", -DAY,
                    365 * DAY, ca2, ca2_key, NULL);
    make_leaf_files("client-expired", "client.test", "serverAuth", -30 * DAY,
                    -DAY, ca1, ca1_key, NULL);
    make_leaf_files("client-inter", "client.test", "serverAuth", -DAY,
                    365 * DAY, inter, inter_key, inter);
    make_leaf_files("two", "two.test", "serverAuth", -DAY, 365 * DAY, ca1,
                    ca1_key, NULL);
    FILE *f = fopen(pki_path("empty.crt"), "w");
    REQUIRE(f != NULL && fclose(f) == 0);
}

static void pki_teardown(void)
{
    for (size_t i = 0; i < sizeof(pki_files) / sizeof(pki_files[0]); i++) {
        unlink(pki_path(pki_files[i]));
    }
    rmdir(pki_dir);
    X509_free(ca1);
    X509_free(ca2);
    X509_free(inter);
    EVP_PKEY_free(ca1_key);
    EVP_PKEY_free(ca2_key);
    EVP_PKEY_free(inter_key);
    EVP_PKEY_free(leaf_key);
}

/* ---- certificate identity ----------------------------------------------- */

/* A self-signed leaf with the given SAN (certid does not look at the
 * signature). */
static X509 *san_cert(const char *cn, const char *san)
{
    struct cert_spec s = {.cn = cn,
                          .san = san,
                          .eku = "serverAuth",
                          .not_before = -DAY,
                          .not_after = DAY,
                          .key = leaf_key};
    return make_cert(&s);
}

/* A leaf whose only SAN is one otherName with raw bytes (NULs allowed). */
static X509 *othername_cert(int nid, int type, const char *bytes, size_t len)
{
    X509 *x = san_cert("othername", NULL);
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_TYPE *val = ASN1_TYPE_new();
    ASN1_STRING *str = ASN1_STRING_type_new(type);
    REQUIRE(gens != NULL && gen != NULL && val != NULL && str != NULL);
    REQUIRE(ASN1_STRING_set(str, bytes, (int)len) == 1);
    ASN1_TYPE_set(val, type, str);
    REQUIRE(GENERAL_NAME_set0_othername(gen, OBJ_nid2obj(nid), val) == 1);
    REQUIRE(sk_GENERAL_NAME_push(gens, gen) > 0);
    REQUIRE(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                              X509V3_ADD_DEFAULT) == 1);
    GENERAL_NAMES_free(gens);
    return x;
}

static int check_name(X509 *x, const char *domain, enum certid_match *how)
{
    int rc = certid_check(x, domain, how);
    X509_free(x);
    return rc;
}

START_TEST(test_certid_dns_exact)
{
    enum certid_match how = CERTID_XMPPADDR;
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:dns.test"), "dns.test", &how), 0);
    ck_assert_int_eq(how, CERTID_DNS);
}
END_TEST

START_TEST(test_certid_dns_case_insensitive)
{
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:Dns.TEST"), "dns.test", &how), 0);
    ck_assert_int_eq(how, CERTID_DNS);
}
END_TEST

START_TEST(test_certid_wrong_name_refused)
{
    enum certid_match how = CERTID_DNS;
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:wrong.test"), "dns.test", &how),
        ERR_AUTH);
    ck_assert_int_eq(how, CERTID_NONE);
}
END_TEST

START_TEST(test_certid_suffix_is_not_a_match)
{
    enum certid_match how;
    ck_assert_int_eq(check_name(san_cert("x", "DNS:ns.test"), "dns.test", &how),
                     ERR_AUTH);
}
END_TEST

START_TEST(test_certid_wildcard_one_label)
{
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:*.wild.test"), "a.wild.test", &how), 0);
    ck_assert_int_eq(how, CERTID_DNS);
}
END_TEST

START_TEST(test_certid_wildcard_not_bare_parent)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:*.wild.test"), "wild.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_wildcard_not_two_labels)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:*.wild.test"), "a.b.wild.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_partial_wildcard_refused)
{
    enum certid_match how;
    ck_assert_int_eq(check_name(san_cert("x", "DNS:x*.partial.test"),
                                "xy.partial.test", &how),
                     ERR_AUTH);
}
END_TEST

START_TEST(test_certid_cn_never_used)
{
    enum certid_match how;
    /* No SAN at all: the CN names the domain but must not count. */
    ck_assert_int_eq(check_name(san_cert("cn.test", NULL), "cn.test", &how),
                     ERR_AUTH);
    /* A SAN for another name: the CN still does not count. */
    ck_assert_int_eq(
        check_name(san_cert("cn.test", "DNS:other.test"), "cn.test", &how),
        ERR_AUTH);
    /* No dNSName in the SAN (only an XmppAddr): where X509_check_host
     * would fall back to the CN without NEVER_CHECK_SUBJECT. */
    ck_assert_int_eq(
        check_name(
            san_cert("cn.test", "otherName:1.3.6.1.5.5.7.8.5;UTF8:other.test"),
            "cn.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_srv_id)
{
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:"
                                 "_xmpp-server.srv.test"),
                   "srv.test", &how),
        0);
    ck_assert_int_eq(how, CERTID_SRV);
}
END_TEST

START_TEST(test_certid_srv_id_case_insensitive)
{
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:"
                                 "_XMPP-Server.SRV.Test"),
                   "srv.test", &how),
        0);
    ck_assert_int_eq(how, CERTID_SRV);
}
END_TEST

START_TEST(test_certid_srv_id_other_service_refused)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:"
                                 "_xmpp-client.srv.test"),
                   "srv.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_srv_id_other_domain_refused)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.7;IA5STRING:"
                                 "_xmpp-server.srv.test"),
                   "other.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_srv_id_wrong_type_refused)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.7;UTF8:"
                                 "_xmpp-server.srv.test"),
                   "srv.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_srv_id_embedded_nul_refused)
{
    static const char v[] = "_xmpp-server.srv.test\0.evil.test";
    enum certid_match how;
    ck_assert_int_eq(check_name(othername_cert(NID_SRVName, V_ASN1_IA5STRING, v,
                                               sizeof(v) - 1),
                                "srv.test", &how),
                     ERR_AUTH);
}
END_TEST

START_TEST(test_certid_xmppaddr)
{
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.5;UTF8:xmpp.test"),
                   "xmpp.test", &how),
        0);
    ck_assert_int_eq(how, CERTID_XMPPADDR);
}
END_TEST

START_TEST(test_certid_xmppaddr_with_localpart_refused)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(
            san_cert("x", "otherName:1.3.6.1.5.5.7.8.5;UTF8:user@xmpp.test"),
            "xmpp.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_xmppaddr_with_resource_refused)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(
            san_cert("x", "otherName:1.3.6.1.5.5.7.8.5;UTF8:xmpp.test/res"),
            "xmpp.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_xmppaddr_wrong_type_refused)
{
    enum certid_match how;
    ck_assert_int_eq(
        check_name(
            san_cert("x", "otherName:1.3.6.1.5.5.7.8.5;IA5STRING:xmpp.test"),
            "xmpp.test", &how),
        ERR_AUTH);
}
END_TEST

START_TEST(test_certid_xmppaddr_embedded_nul_refused)
{
    static const char v[] = "xmpp.test\0.evil.test";
    enum certid_match how;
    ck_assert_int_eq(check_name(othername_cert(NID_XmppAddr, V_ASN1_UTF8STRING,
                                               v, sizeof(v) - 1),
                                "xmpp.test", &how),
                     ERR_AUTH);
}
END_TEST

START_TEST(test_certid_idn_dns_id)
{
    char *domain = NULL;
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(jid_domain_normalize("B\xc3\xbc"
                                          "cher.test",
                                          &domain),
                     0);
    ck_assert_str_eq(domain, "xn--bcher-kva.test");
    ck_assert_int_eq(
        check_name(san_cert("x", "DNS:xn--bcher-kva.test"), domain, &how), 0);
    ck_assert_int_eq(how, CERTID_DNS);
    free(domain);
}
END_TEST

START_TEST(test_certid_idn_xmppaddr_u_label)
{
    static const char v[] = "B\xc3\xbc"
                            "cher.test";
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(check_name(othername_cert(NID_XmppAddr, V_ASN1_UTF8STRING,
                                               v, sizeof(v) - 1),
                                "xn--bcher-kva.test", &how),
                     0);
    ck_assert_int_eq(how, CERTID_XMPPADDR);
}
END_TEST

START_TEST(test_certid_dns_id_checked_first)
{
    enum certid_match how = CERTID_NONE;
    ck_assert_int_eq(
        check_name(san_cert("x", "otherName:1.3.6.1.5.5.7.8.5;UTF8:both.test,"
                                 "DNS:both.test"),
                   "both.test", &how),
        0);
    ck_assert_int_eq(how, CERTID_DNS);
}
END_TEST

START_TEST(test_certid_malformed_san)
{
    static const unsigned char junk[] = {0x30, 0x05, 0x82, 0x01};
    X509 *x = san_cert("x", NULL);
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    ck_assert_ptr_nonnull(os);
    ck_assert_int_eq(ASN1_OCTET_STRING_set(os, junk, sizeof(junk)), 1);
    X509_EXTENSION *ext =
        X509_EXTENSION_create_by_NID(NULL, NID_subject_alt_name, 0, os);
    ck_assert_ptr_nonnull(ext);
    ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(os);
    enum certid_match how = CERTID_DNS;
    ck_assert_int_eq(check_name(x, "dns.test", &how), ERR_INVAL);
    ck_assert_int_eq(how, CERTID_NONE);
}
END_TEST

START_TEST(test_certid_bad_arguments)
{
    enum certid_match how;
    X509 *x = san_cert("x", "DNS:dns.test");
    ck_assert_int_eq(certid_check(NULL, "dns.test", &how), ERR_INVAL);
    ck_assert_int_eq(certid_check(x, NULL, &how), ERR_INVAL);
    ck_assert_int_eq(certid_check(x, "", &how), ERR_INVAL);
    ck_assert_int_eq(certid_check(x, "dns.test", NULL), ERR_INVAL);
    X509_free(x);
}
END_TEST

START_TEST(test_certid_match_names)
{
    ck_assert_str_eq(certid_match_name(CERTID_NONE), "none");
    ck_assert_str_eq(certid_match_name(CERTID_DNS), "DNS-ID");
    ck_assert_str_eq(certid_match_name(CERTID_SRV), "SRV-ID");
    ck_assert_str_eq(certid_match_name(CERTID_XMPPADDR), "XmppAddr");
}
END_TEST

/* ---- TLS contexts ------------------------------------------------------- */

/* A context with the leaf BASE.crt/.key (NULL: none), trusting CA 1. */
static struct tls_ctx *ctx_with(const char *base)
{
    char cert[64];
    char key[64];
    char err[512] = "";
    struct tls_settings s = {.ca_file = pki_path("ca1.crt")};
    if (base != NULL) {
        snprintf(cert, sizeof(cert), "%s.crt", base);
        snprintf(key, sizeof(key), "%s.key", base);
        s.cert_file = pki_path(cert);
        s.key_file = pki_path(key);
    }
    struct tls_ctx *ctx = tls_ctx_new(&s, err, sizeof(err));
    ck_assert_msg(ctx != NULL, "tls_ctx_new: %s", err);
    return ctx;
}

START_TEST(test_ctx_missing_certificate_file)
{
    char err[512] = "";
    struct tls_settings s = {.cert_file = pki_path("nonexistent.crt"),
                             .key_file = pki_path("server.key"),
                             .ca_file = pki_path("ca1.crt")};
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "nonexistent.crt") != NULL, "%s", err);
}
END_TEST

START_TEST(test_ctx_key_mismatch)
{
    char err[512] = "";
    struct tls_settings s = {.cert_file = pki_path("server.crt"),
                             .key_file = pki_path("client-sa.key"),
                             .ca_file = pki_path("ca1.crt")};
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "does not match") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "client-sa.key") != NULL, "%s", err);
}
END_TEST

START_TEST(test_ctx_bad_cipher_list)
{
    char err[512] = "";
    struct tls_settings s = {.cert_file = pki_path("server.crt"),
                             .key_file = pki_path("server.key"),
                             .ca_file = pki_path("ca1.crt"),
                             .ciphers = "NO-SUCH-CIPHER"};
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "NO-SUCH-CIPHER") != NULL, "%s", err);
}
END_TEST

START_TEST(test_ctx_unreadable_trust_store)
{
    char err[512] = "";
    struct tls_settings s = {.ca_file = pki_path("nonexistent-ca.crt")};
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "nonexistent-ca.crt") != NULL, "%s", err);
}
END_TEST

/* ---- TLS connections ---------------------------------------------------- */

struct pair {
    int fd[2]; /* [0] client, [1] server */
    struct tls_ctx *cctx;
    struct tls_ctx *sctx;
    struct tls_conn *cli;
    struct tls_conn *srv;
};

static void pair_sockets(struct pair *p)
{
    memset(p, 0, sizeof(*p));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd),
                     0);
}

/* TLS on both ends of p: server "server", client with client_cert. */
static void pair_tls(struct pair *p,
                     const char *client_cert,
                     const char *sni,
                     bool cli_alpn,
                     bool srv_alpn)
{
    p->sctx = ctx_with("server");
    p->cctx = ctx_with(client_cert);
    p->srv = tls_conn_new(p->sctx, p->fd[1], false, NULL, srv_alpn);
    p->cli = tls_conn_new(p->cctx, p->fd[0], true, sni, cli_alpn);
    ck_assert_ptr_nonnull(p->srv);
    ck_assert_ptr_nonnull(p->cli);
}

static void pair_open(struct pair *p,
                      const char *client_cert,
                      const char *sni,
                      bool cli_alpn,
                      bool srv_alpn)
{
    pair_sockets(p);
    pair_tls(p, client_cert, sni, cli_alpn, srv_alpn);
}

/* Drives both handshakes alternately until both are done. */
static void pair_handshake(struct pair *p)
{
    int rc_c = ERR_AGAIN;
    int rc_s = ERR_AGAIN;
    for (int i = 0; i < 50 && (rc_c != 0 || rc_s != 0); i++) {
        if (rc_c != 0) {
            rc_c = tls_handshake(p->cli);
            ck_assert_msg(rc_c == 0 || rc_c == ERR_AGAIN, "client: %s",
                          tls_last_error(p->cli));
        }
        if (rc_s != 0) {
            rc_s = tls_handshake(p->srv);
            ck_assert_msg(rc_s == 0 || rc_s == ERR_AGAIN, "server: %s",
                          tls_last_error(p->srv));
        }
    }
    ck_assert_int_eq(rc_c, 0);
    ck_assert_int_eq(rc_s, 0);
}

static void pair_close(struct pair *p)
{
    tls_conn_free(p->cli);
    tls_conn_free(p->srv);
    tls_ctx_free(p->cctx);
    tls_ctx_free(p->sctx);
    for (int i = 0; i < 2; i++) {
        if (p->fd[i] >= 0) {
            close(p->fd[i]);
        }
    }
}

/* Reads exactly len bytes from c (the peer has written them all). */
static void read_all(struct tls_conn *c, char *buf, size_t len)
{
    size_t got = 0;
    for (int i = 0; i < 1000 && got < len; i++) {
        ssize_t n = tls_read(c, buf + got, len - got);
        if (n == ERR_AGAIN) {
            continue;
        }
        ck_assert_msg(n > 0, "tls_read %zd: %s", n, tls_last_error(c));
        got += (size_t)n;
    }
    ck_assert_uint_eq(got, len);
}

static void write_all(struct tls_conn *c, const char *buf, size_t len)
{
    ssize_t n = tls_write(c, buf, len);
    ck_assert_msg(n == (ssize_t)len, "tls_write %zd: %s", n, tls_last_error(c));
}

START_TEST(test_handshake_tls13)
{
    struct pair p;
    pair_open(&p, "client-sa", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_str_eq(tls_version(p.cli), "TLSv1.3");
    ck_assert_str_eq(tls_version(p.srv), "TLSv1.3");
    ck_assert_str_eq(tls_cipher(p.cli), tls_cipher(p.srv));
    ck_assert_str_ne(tls_cipher(p.cli), "(NONE)");
    pair_close(&p);
}
END_TEST

START_TEST(test_handshake_waits_for_read)
{
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    /* Nothing has arrived yet: the server must wait for the socket. */
    ck_assert_int_eq(tls_handshake(p.srv), ERR_AGAIN);
    ck_assert_uint_eq(tls_wants(p.srv), LOOP_READ);
    ck_assert_int_eq(tls_handshake(p.cli), ERR_AGAIN);
    ck_assert_uint_eq(tls_wants(p.cli), LOOP_READ);
    pair_close(&p);
}
END_TEST

START_TEST(test_old_protocol_refused)
{
    struct pair p;
    pair_sockets(&p);
    p.sctx = ctx_with("server");
    p.srv = tls_conn_new(p.sctx, p.fd[1], false, NULL, false);
    ck_assert_ptr_nonnull(p.srv);
    /* A raw OpenSSL client that speaks at most TLS 1.1. */
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(old);
    ck_assert_int_eq(SSL_CTX_set_min_proto_version(old, TLS1_VERSION), 1);
    ck_assert_int_eq(SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION), 1);
    SSL_CTX_set_security_level(old, 0);
    ck_assert_int_eq(SSL_CTX_set_cipher_list(old, "DEFAULT:@SECLEVEL=0"), 1);
    SSL *ssl = SSL_new(old);
    ck_assert_ptr_nonnull(ssl);
    ck_assert_int_eq(SSL_set_fd(ssl, p.fd[0]), 1);
    SSL_set_connect_state(ssl);
    int rc_s = ERR_AGAIN;
    for (int i = 0; i < 20 && rc_s == ERR_AGAIN; i++) {
        (void)SSL_do_handshake(ssl);
        rc_s = tls_handshake(p.srv);
    }
    ck_assert_int_eq(rc_s, ERR_AUTH);
    ck_assert_msg(strstr(tls_last_error(p.srv), "unsupported protocol") != NULL,
                  "%s", tls_last_error(p.srv));
    SSL_free(ssl);
    SSL_CTX_free(old);
    ERR_clear_error();
    pair_close(&p);
}
END_TEST

START_TEST(test_tls12_with_configured_cipher)
{
    static const char cipher[] = "ECDHE-ECDSA-AES128-GCM-SHA256";
    char err[512] = "";
    struct pair p;
    pair_sockets(&p);
    struct tls_settings s = {.cert_file = pki_path("server.crt"),
                             .key_file = pki_path("server.key"),
                             .ca_file = pki_path("ca1.crt"),
                             .ciphers = cipher};
    p.sctx = tls_ctx_new(&s, err, sizeof(err));
    ck_assert_msg(p.sctx != NULL, "%s", err);
    p.srv = tls_conn_new(p.sctx, p.fd[1], false, NULL, false);
    ck_assert_ptr_nonnull(p.srv);
    /* A raw OpenSSL client that speaks at most TLS 1.2. */
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(old);
    ck_assert_int_eq(SSL_CTX_set_max_proto_version(old, TLS1_2_VERSION), 1);
    SSL *ssl = SSL_new(old);
    ck_assert_ptr_nonnull(ssl);
    ck_assert_int_eq(SSL_set_fd(ssl, p.fd[0]), 1);
    SSL_set_connect_state(ssl);
    int rc_c = 0;
    int rc_s = ERR_AGAIN;
    for (int i = 0; i < 20 && (rc_c != 1 || rc_s != 0); i++) {
        if (rc_c != 1) {
            rc_c = SSL_do_handshake(ssl);
        }
        if (rc_s != 0) {
            rc_s = tls_handshake(p.srv);
            ck_assert_msg(rc_s == 0 || rc_s == ERR_AGAIN, "%s",
                          tls_last_error(p.srv));
        }
    }
    ck_assert_int_eq(rc_c, 1);
    ck_assert_int_eq(rc_s, 0);
    ck_assert_str_eq(tls_version(p.srv), "TLSv1.2");
    ck_assert_str_eq(tls_cipher(p.srv), cipher);
    SSL_free(ssl);
    SSL_CTX_free(old);
    pair_close(&p);
}
END_TEST

START_TEST(test_handshake_plaintext_peer_fails)
{
    static const char junk[] = "<?xml version='1.0'?><stream:stream "
                               "xmlns='jabber:server'>";
    char hello[4096];
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    ck_assert_int_eq(tls_handshake(p.cli), ERR_AGAIN);
    ck_assert_int_gt(read(p.fd[1], hello, sizeof(hello)), 0);
    ck_assert_int_eq(write(p.fd[1], junk, sizeof(junk) - 1),
                     (ssize_t)(sizeof(junk) - 1));
    ck_assert_int_eq(tls_handshake(p.cli), ERR_AUTH);
    ck_assert_msg(strstr(tls_last_error(p.cli), "TLS handshake") != NULL &&
                      strstr(tls_last_error(p.cli), "error:") != NULL,
                  "%s", tls_last_error(p.cli));
    pair_close(&p);
}
END_TEST

START_TEST(test_handshake_peer_gone)
{
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    close(p.fd[0]);
    p.fd[0] = -1;
    ck_assert_int_eq(tls_handshake(p.srv), ERR_CLOSED);
    pair_close(&p);
}
END_TEST

START_TEST(test_sni_seen_by_server)
{
    struct pair p;
    pair_open(&p, NULL, "Server.Test", false, false);
    pair_handshake(&p);
    ck_assert_ptr_nonnull(tls_sni(p.srv));
    ck_assert_str_eq(tls_sni(p.srv), "server.test");
    ck_assert_ptr_null(tls_sni(p.cli));
    pair_close(&p);
}
END_TEST

START_TEST(test_no_sni)
{
    struct pair p;
    pair_open(&p, NULL, NULL, false, false);
    pair_handshake(&p);
    ck_assert_ptr_null(tls_sni(p.srv));
    pair_close(&p);
}
END_TEST

START_TEST(test_sni_not_sent_for_ip_literal)
{
    struct pair p;
    pair_open(&p, NULL, "127.0.0.1", false, false);
    pair_handshake(&p);
    ck_assert_ptr_null(tls_sni(p.srv));
    pair_close(&p);
}
END_TEST

START_TEST(test_alpn_negotiated)
{
    struct pair p;
    pair_open(&p, NULL, "server.test", true, true);
    pair_handshake(&p);
    ck_assert(tls_alpn_xmpp(p.cli));
    ck_assert(tls_alpn_xmpp(p.srv));
    pair_close(&p);
}
END_TEST

START_TEST(test_alpn_not_offered)
{
    struct pair p;
    pair_open(&p, NULL, "server.test", false, true);
    pair_handshake(&p);
    ck_assert(!tls_alpn_xmpp(p.cli));
    ck_assert(!tls_alpn_xmpp(p.srv));
    pair_close(&p);
}
END_TEST

START_TEST(test_alpn_not_accepted_on_starttls_listener)
{
    struct pair p;
    pair_open(&p, NULL, "server.test", true, false);
    pair_handshake(&p);
    ck_assert(!tls_alpn_xmpp(p.cli));
    ck_assert(!tls_alpn_xmpp(p.srv));
    pair_close(&p);
}
END_TEST

START_TEST(test_data_both_ways)
{
    char buf[64];
    struct pair p;
    pair_open(&p, "client-sa", "server.test", false, false);
    pair_handshake(&p);
    write_all(p.cli, "<stream:stream>", 15);
    read_all(p.srv, buf, 15);
    ck_assert(memcmp(buf, "<stream:stream>", 15) == 0);
    write_all(p.srv, "<features/>", 11);
    read_all(p.cli, buf, 11);
    ck_assert(memcmp(buf, "<features/>", 11) == 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_large_write_is_partial)
{
    const size_t total = 1024 * 1024;
    char *out = malloc(total);
    char *in = malloc(total);
    ck_assert_ptr_nonnull(out);
    ck_assert_ptr_nonnull(in);
    for (size_t i = 0; i < total; i++) {
        out[i] = (char)(i * 7 + i / 1000);
    }
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    size_t sent = 0;
    size_t got = 0;
    int partial = 0;
    int blocked = 0;
    for (int i = 0; i < 10000 && got < total; i++) {
        /* Write until the socket is full, then let the reader drain. */
        while (sent < total) {
            ssize_t n = tls_write(p.cli, out + sent, total - sent);
            if (n == ERR_AGAIN) {
                ck_assert_uint_eq(tls_wants(p.cli), LOOP_WRITE);
                blocked++;
                break;
            }
            ck_assert_msg(n > 0, "%s", tls_last_error(p.cli));
            if ((size_t)n < total - sent) {
                partial++;
            }
            sent += (size_t)n;
        }
        while (got < total) {
            ssize_t n = tls_read(p.srv, in + got, total - got);
            if (n == ERR_AGAIN) {
                break;
            }
            ck_assert_msg(n > 0, "%s", tls_last_error(p.srv));
            got += (size_t)n;
        }
    }
    ck_assert_uint_eq(sent, total);
    ck_assert_uint_eq(got, total);
    ck_assert(memcmp(out, in, total) == 0);
    ck_assert_int_gt(partial, 0);
    ck_assert_int_gt(blocked, 0);
    free(out);
    free(in);
    pair_close(&p);
}
END_TEST

START_TEST(test_pending_drained)
{
    char out[4000];
    char in[16];
    struct pair p;
    memset(out, 'x', sizeof(out));
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    write_all(p.srv, out, sizeof(out));
    /* The client first processes the session tickets, then the data. */
    ssize_t n = ERR_AGAIN;
    for (int i = 0; i < 10 && n == ERR_AGAIN; i++) {
        n = tls_read(p.cli, in, sizeof(in));
    }
    ck_assert_int_eq(n, (ssize_t)sizeof(in));
    ck_assert(tls_pending(p.cli));
    size_t got = (size_t)n;
    while (tls_pending(p.cli)) {
        n = tls_read(p.cli, in, sizeof(in));
        ck_assert_int_gt(n, 0);
        got += (size_t)n;
    }
    ck_assert_uint_eq(got, sizeof(out));
    ck_assert_int_eq(tls_read(p.cli, in, sizeof(in)), ERR_AGAIN);
    ck_assert_uint_eq(tls_wants(p.cli), LOOP_READ);
    pair_close(&p);
}
END_TEST

START_TEST(test_close_notify_reads_zero)
{
    char buf[16];
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    tls_shutdown(p.cli);
    ck_assert_int_eq(tls_read(p.srv, buf, sizeof(buf)), 0);
    ck_assert_msg(strstr(tls_last_error(p.srv), "closed by peer") != NULL, "%s",
                  tls_last_error(p.srv));
    pair_close(&p);
}
END_TEST

START_TEST(test_eof_without_close_notify_reads_zero)
{
    char buf[16];
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(shutdown(p.fd[0], SHUT_WR), 0);
    ck_assert_int_eq(tls_read(p.srv, buf, sizeof(buf)), 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_reset_is_closed_error)
{
    char buf[16];
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    /* The client closes with the server's session tickets unread: the
     * server's next read sees ECONNRESET, not an orderly end. */
    close(p.fd[0]);
    p.fd[0] = -1;
    ck_assert_int_eq(tls_read(p.srv, buf, sizeof(buf)), ERR_CLOSED);
    pair_close(&p);
}
END_TEST

START_TEST(test_starttls_after_plaintext)
{
    char buf[64];
    struct pair p;
    pair_sockets(&p);
    static const char req[] = "<starttls xmlns='urn:ietf:params:xml:ns:"
                              "xmpp-tls'/>";
    static const char ok[] = "<proceed xmlns='urn:ietf:params:xml:ns:"
                             "xmpp-tls'/>";
    ck_assert_int_eq(write(p.fd[0], req, sizeof(req) - 1),
                     (ssize_t)(sizeof(req) - 1));
    ck_assert_int_eq(read(p.fd[1], buf, sizeof(buf)),
                     (ssize_t)(sizeof(req) - 1));
    ck_assert_int_eq(write(p.fd[1], ok, sizeof(ok) - 1),
                     (ssize_t)(sizeof(ok) - 1));
    ck_assert_int_eq(read(p.fd[0], buf, sizeof(buf)),
                     (ssize_t)(sizeof(ok) - 1));
    pair_tls(&p, "client-sa", "server.test", false, false);
    pair_handshake(&p);
    write_all(p.cli, "<stream:stream>", 15);
    read_all(p.srv, buf, 15);
    ck_assert(memcmp(buf, "<stream:stream>", 15) == 0);
    pair_close(&p);
}
END_TEST

/* ---- a certificate per local domain ------------------------------------- */

/* A context with the default leaf BASE and two.test's own certificate. */
static struct tls_ctx *ctx_with_two(const char *base)
{
    char cert[64];
    char key[64];
    char err[512] = "";
    struct tls_identity id = {.domain = "two.test",
                              .cert_file = pki_path("two.crt"),
                              .key_file = pki_path("two.key")};
    snprintf(cert, sizeof(cert), "%s.crt", base);
    snprintf(key, sizeof(key), "%s.key", base);
    struct tls_settings s = {.cert_file = pki_path(cert),
                             .key_file = pki_path(key),
                             .ca_file = pki_path("ca1.crt"),
                             .identities = &id,
                             .nidentities = 1};
    struct tls_ctx *ctx = tls_ctx_new(&s, err, sizeof(err));
    ck_assert_msg(ctx != NULL, "tls_ctx_new: %s", err);
    return ctx;
}

/* A server with both certificates (hint: its local-domain hint) and a
 * client with none; returns the subject the client saw. */
static void sni_pair(struct pair *p, const char *sni, const char *hint)
{
    pair_sockets(p);
    p->sctx = ctx_with_two("server");
    p->cctx = ctx_with(NULL);
    p->srv = tls_conn_new_for(p->sctx, p->fd[1], false, NULL, false, hint);
    p->cli = tls_conn_new(p->cctx, p->fd[0], true, sni, false);
    ck_assert_ptr_nonnull(p->srv);
    ck_assert_ptr_nonnull(p->cli);
    pair_handshake(p);
}

static void assert_server_is(struct pair *p, const char *domain)
{
    struct tls_peer peer;
    char want[64];
    ck_assert_int_eq(tls_verify_peer(p->cli, domain, NULL, &peer), 0);
    ck_assert_msg(peer.chain_ok, "%s", peer.chain_error);
    ck_assert(peer.name_ok);
    snprintf(want, sizeof(want), "CN=%s,O=fedgate test", domain);
    ck_assert_str_eq(peer.subject, want);
}

START_TEST(test_sni_selects_domain_certificate)
{
    struct pair p;
    sni_pair(&p, "Two.Test.", NULL);
    ck_assert_str_eq(tls_sni(p.srv), "two.test");
    assert_server_is(&p, "two.test");
    pair_close(&p);
}
END_TEST

START_TEST(test_sni_default_name_gets_default)
{
    struct pair p;
    sni_pair(&p, "server.test", NULL);
    assert_server_is(&p, "server.test");
    pair_close(&p);
}
END_TEST

START_TEST(test_unknown_sni_gets_default)
{
    struct pair p;
    sni_pair(&p, "nope.test", NULL);
    ck_assert_str_eq(tls_sni(p.srv), "nope.test");
    assert_server_is(&p, "server.test");
    pair_close(&p);
}
END_TEST

/* SNI decides even against the hint (the stream's 'to'). */
START_TEST(test_unknown_sni_overrides_hint)
{
    struct pair p;
    sni_pair(&p, "nope.test", "two.test");
    assert_server_is(&p, "server.test");
    pair_close(&p);
}
END_TEST

/* Without SNI the local-domain hint picks the certificate. */
START_TEST(test_no_sni_uses_hint)
{
    struct pair p;
    sni_pair(&p, NULL, "two.test");
    ck_assert_ptr_null(tls_sni(p.srv));
    assert_server_is(&p, "two.test");
    pair_close(&p);
    sni_pair(&p, NULL, NULL);
    assert_server_is(&p, "server.test");
    pair_close(&p);
    sni_pair(&p, NULL, "nope.test");
    assert_server_is(&p, "server.test");
    pair_close(&p);
}
END_TEST

/* A client speaking for two.test presents two.test's certificate; for
 * any other local domain, the default. */
static void client_presents(const char *local, const char *want_cn)
{
    struct tls_peer peer;
    struct pair p;
    char want[64];
    pair_sockets(&p);
    p.sctx = ctx_with("server");
    p.cctx = ctx_with_two("client-sa");
    p.srv = tls_conn_new(p.sctx, p.fd[1], false, NULL, false);
    p.cli =
        tls_conn_new_for(p.cctx, p.fd[0], true, "server.test", false, local);
    ck_assert_ptr_nonnull(p.srv);
    ck_assert_ptr_nonnull(p.cli);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, want_cn, NULL, &peer), 0);
    ck_assert(peer.cert_present);
    ck_assert_msg(peer.chain_ok, "%s", peer.chain_error);
    ck_assert_msg(peer.name_ok, "%s for local %s", peer.subject,
                  local != NULL ? local : "(none)");
    snprintf(want, sizeof(want), "CN=%s,O=fedgate test", want_cn);
    ck_assert_str_eq(peer.subject, want);
    pair_close(&p);
}

START_TEST(test_client_presents_domain_certificate)
{
    client_presents("two.test", "two.test");
    client_presents(NULL, "client.test");
    client_presents("client.test", "client.test");
}
END_TEST

START_TEST(test_ctx_cert_valid_for)
{
    struct tls_ctx *ctx = ctx_with_two("server");
    ck_assert(tls_ctx_cert_valid_for(ctx, "server.test"));
    ck_assert(tls_ctx_cert_valid_for(ctx, "two.test"));
    ck_assert(!tls_ctx_cert_valid_for(ctx, "client.test"));
    tls_ctx_free(ctx);
    ctx = ctx_with(NULL);
    ck_assert(!tls_ctx_cert_valid_for(ctx, "server.test"));
    tls_ctx_free(ctx);
}
END_TEST

START_TEST(test_ctx_identity_errors)
{
    char err[512] = "";
    struct tls_identity ids[2] = {
        {.domain = "two.test",
         .cert_file = pki_path("two.crt"),
         .key_file = pki_path("client-sa.key")},
        {.domain = "two.test",
         .cert_file = pki_path("two.crt"),
         .key_file = pki_path("two.key")},
    };
    struct tls_settings s = {.cert_file = pki_path("server.crt"),
                             .key_file = pki_path("server.key"),
                             .ca_file = pki_path("ca1.crt"),
                             .identities = ids,
                             .nidentities = 1};
    /* the key of another certificate */
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "does not match") != NULL, "%s", err);
    ck_assert_msg(strstr(err, "two.crt") != NULL, "%s", err);
    /* the same domain twice */
    s.identities = ids + 1;
    ids[0].key_file = pki_path("two.key");
    s.identities = ids;
    s.nidentities = 2;
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "two certificates for the domain two.test") !=
                      NULL,
                  "%s", err);
    /* no default certificate */
    s.nidentities = 1;
    s.cert_file = NULL;
    s.key_file = NULL;
    ck_assert_ptr_null(tls_ctx_new(&s, err, sizeof(err)));
    ck_assert_msg(strstr(err, "need a default certificate") != NULL, "%s", err);
}
END_TEST

/* ---- peer verification -------------------------------------------------- */

START_TEST(test_verify_server_by_client)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.cli, "server.test", NULL, &peer), 0);
    ck_assert(peer.cert_present);
    ck_assert_msg(peer.chain_ok, "%s", peer.chain_error);
    ck_assert(peer.name_ok);
    ck_assert_int_eq(peer.match, CERTID_DNS);
    ck_assert_str_eq(peer.subject, "CN=server.test,O=fedgate test");
    ck_assert_str_eq(peer.issuer, "CN=Test CA 1,O=fedgate test");
    time_t now = time(NULL);
    ck_assert(peer.not_after > now + 364 * DAY);
    ck_assert(peer.not_after < now + 366 * DAY);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_server_wrong_domain)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.cli, "other.test", NULL, &peer), 0);
    ck_assert(peer.chain_ok);
    ck_assert(!peer.name_ok);
    ck_assert_int_eq(peer.match, CERTID_NONE);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_client_server_auth_only)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-sa", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", NULL, &peer), 0);
    ck_assert(peer.cert_present);
    ck_assert_msg(peer.chain_ok, "%s", peer.chain_error);
    ck_assert(peer.name_ok);
    ck_assert_int_eq(peer.match, CERTID_DNS);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_client_auth_only_refused)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-ca", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", NULL, &peer), 0);
    ck_assert(peer.cert_present);
    ck_assert(!peer.chain_ok);
    ck_assert_msg(strstr(peer.chain_error, "purpose") != NULL, "%s",
                  peer.chain_error);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_client_through_intermediate)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-inter", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", NULL, &peer), 0);
    ck_assert_msg(peer.chain_ok, "%s", peer.chain_error);
    ck_assert_str_eq(peer.issuer, "CN=Test Intermediate,O=fedgate test");
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_unknown_ca)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-unknown", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", NULL, &peer), 0);
    ck_assert(peer.cert_present);
    ck_assert(!peer.chain_ok);
    ck_assert_msg(strstr(peer.chain_error, "local issuer") != NULL, "%s",
                  peer.chain_error);
    ck_assert(peer.name_ok); /* the name is judged on its own */
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_expired)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-expired", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", NULL, &peer), 0);
    ck_assert(!peer.chain_ok);
    ck_assert_msg(strstr(peer.chain_error, "expired") != NULL, "%s",
                  peer.chain_error);
    ck_assert(peer.not_after < time(NULL));
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_peer_anchor_accepts_other_ca)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-unknown", "server.test", false, false);
    pair_handshake(&p);
    const char *anchor = pki_path("ca2.crt");
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", anchor, &peer), 0);
    ck_assert_msg(peer.chain_ok, "%s", peer.chain_error);
    ck_assert(peer.name_ok);
    /* Again, from the cached store. */
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", anchor, &peer), 0);
    ck_assert(peer.chain_ok);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_peer_anchor_replaces_store)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-sa", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(
        tls_verify_peer(p.srv, "client.test", pki_path("ca2.crt"), &peer), 0);
    ck_assert(!peer.chain_ok);
    ck_assert_msg(strstr(peer.chain_error, "local issuer") != NULL, "%s",
                  peer.chain_error);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_peer_anchor_unloadable)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, "client-sa", "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(
        tls_verify_peer(p.srv, "client.test", pki_path("empty.crt"), &peer), 0);
    ck_assert(peer.cert_present);
    ck_assert(!peer.chain_ok);
    ck_assert_msg(strstr(peer.chain_error, "cannot load trust anchors") != NULL,
                  "%s", peer.chain_error);
    pair_close(&p);
}
END_TEST

START_TEST(test_verify_no_client_certificate)
{
    struct tls_peer peer;
    struct pair p;
    pair_open(&p, NULL, "server.test", false, false);
    pair_handshake(&p);
    ck_assert_int_eq(tls_verify_peer(p.srv, "client.test", NULL, &peer), 0);
    ck_assert(!peer.cert_present);
    ck_assert(!peer.chain_ok);
    ck_assert(!peer.name_ok);
    ck_assert_int_eq(peer.match, CERTID_NONE);
    pair_close(&p);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");

    TCase *tc = tcase_create("certid");
    tcase_add_test(tc, test_certid_dns_exact);
    tcase_add_test(tc, test_certid_dns_case_insensitive);
    tcase_add_test(tc, test_certid_wrong_name_refused);
    tcase_add_test(tc, test_certid_suffix_is_not_a_match);
    tcase_add_test(tc, test_certid_wildcard_one_label);
    tcase_add_test(tc, test_certid_wildcard_not_bare_parent);
    tcase_add_test(tc, test_certid_wildcard_not_two_labels);
    tcase_add_test(tc, test_certid_partial_wildcard_refused);
    tcase_add_test(tc, test_certid_cn_never_used);
    tcase_add_test(tc, test_certid_srv_id);
    tcase_add_test(tc, test_certid_srv_id_case_insensitive);
    tcase_add_test(tc, test_certid_srv_id_other_service_refused);
    tcase_add_test(tc, test_certid_srv_id_other_domain_refused);
    tcase_add_test(tc, test_certid_srv_id_wrong_type_refused);
    tcase_add_test(tc, test_certid_srv_id_embedded_nul_refused);
    tcase_add_test(tc, test_certid_xmppaddr);
    tcase_add_test(tc, test_certid_xmppaddr_with_localpart_refused);
    tcase_add_test(tc, test_certid_xmppaddr_with_resource_refused);
    tcase_add_test(tc, test_certid_xmppaddr_wrong_type_refused);
    tcase_add_test(tc, test_certid_xmppaddr_embedded_nul_refused);
    tcase_add_test(tc, test_certid_idn_dns_id);
    tcase_add_test(tc, test_certid_idn_xmppaddr_u_label);
    tcase_add_test(tc, test_certid_dns_id_checked_first);
    tcase_add_test(tc, test_certid_malformed_san);
    tcase_add_test(tc, test_certid_bad_arguments);
    tcase_add_test(tc, test_certid_match_names);
    suite_add_tcase(s, tc);

    TCase *tx = tcase_create("context");
    tcase_add_test(tx, test_ctx_missing_certificate_file);
    tcase_add_test(tx, test_ctx_key_mismatch);
    tcase_add_test(tx, test_ctx_bad_cipher_list);
    tcase_add_test(tx, test_ctx_unreadable_trust_store);
    suite_add_tcase(s, tx);

    TCase *tt = tcase_create("connection");
    tcase_add_test(tt, test_handshake_tls13);
    tcase_add_test(tt, test_handshake_waits_for_read);
    tcase_add_test(tt, test_old_protocol_refused);
    tcase_add_test(tt, test_tls12_with_configured_cipher);
    tcase_add_test(tt, test_handshake_plaintext_peer_fails);
    tcase_add_test(tt, test_handshake_peer_gone);
    tcase_add_test(tt, test_sni_seen_by_server);
    tcase_add_test(tt, test_no_sni);
    tcase_add_test(tt, test_sni_not_sent_for_ip_literal);
    tcase_add_test(tt, test_alpn_negotiated);
    tcase_add_test(tt, test_alpn_not_offered);
    tcase_add_test(tt, test_alpn_not_accepted_on_starttls_listener);
    tcase_add_test(tt, test_data_both_ways);
    tcase_add_test(tt, test_large_write_is_partial);
    tcase_add_test(tt, test_pending_drained);
    tcase_add_test(tt, test_close_notify_reads_zero);
    tcase_add_test(tt, test_eof_without_close_notify_reads_zero);
    tcase_add_test(tt, test_reset_is_closed_error);
    tcase_add_test(tt, test_starttls_after_plaintext);
    tcase_add_test(tt, test_sni_selects_domain_certificate);
    tcase_add_test(tt, test_sni_default_name_gets_default);
    tcase_add_test(tt, test_unknown_sni_gets_default);
    tcase_add_test(tt, test_unknown_sni_overrides_hint);
    tcase_add_test(tt, test_no_sni_uses_hint);
    tcase_add_test(tt, test_client_presents_domain_certificate);
    tcase_add_test(tt, test_ctx_cert_valid_for);
    tcase_add_test(tt, test_ctx_identity_errors);
    suite_add_tcase(s, tt);

    TCase *tv = tcase_create("verify");
    tcase_add_test(tv, test_verify_server_by_client);
    tcase_add_test(tv, test_verify_server_wrong_domain);
    tcase_add_test(tv, test_verify_client_server_auth_only);
    tcase_add_test(tv, test_verify_client_auth_only_refused);
    tcase_add_test(tv, test_verify_client_through_intermediate);
    tcase_add_test(tv, test_verify_unknown_ca);
    tcase_add_test(tv, test_verify_expired);
    tcase_add_test(tv, test_verify_peer_anchor_accepts_other_ca);
    tcase_add_test(tv, test_verify_peer_anchor_replaces_store);
    tcase_add_test(tv, test_verify_peer_anchor_unloadable);
    tcase_add_test(tv, test_verify_no_client_certificate);
    suite_add_tcase(s, tv);
    return s;
}

int main(void)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL); /* as the daemon does */

    pki_setup();
    SRunner *sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    pki_teardown();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
