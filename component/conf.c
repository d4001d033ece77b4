/*
 * conf.c: reads, validates, prints and documents fedgate's configuration.
 *
 * Everything is driven by one table of keys (conf_keys below): each entry
 * names a key, its scope (top level, a group such as "upstream", or an
 * element of the "peers" or "peers.services" lists), its type, where it
 * lands in the structs of conf.h, its default, its bounds and its
 * documentation. Loading is:
 *
 *   on conf_load: set every default from the table; let libconfig parse
 *   the file (a syntax error stops here: nothing else can be trusted);
 *   walk the tree scope by scope, where a key missing from the table is an
 *   error, each value is type- and range-checked and passed through its
 *   check function (which may normalise it, as for domains); then
 *   cross-check what one key cannot see alone (duplicate domains, a
 *   secret for every stream, limits that must be ordered). Every problem
 *   is reported, one line each, and any problem fails the load.
 *
 * conf_print, conf_print_doc and conf_free walk the same table, so a key
 * added there is parsed, checked, printed, documented and freed at once.
 *
 * libconfig 1.5 silently wraps integers that do not fit in 32 bits
 * (5000000000 reads as 705032704), so a value that passes its bounds is
 * checked once more against its text in the file (int_literal_matches).
 * libconfig frees its tree without wiping it, so the secrets in the tree
 * are wiped before config_destroy (wipe_secrets).
 */
#include "config.h"

#include "conf.h"

#include "err.h"
#include "jid.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where a key lives. The order is the order of the documentation. */
enum conf_scope {
    SCOPE_ROOT = 0,
    SCOPE_UPSTREAM,
    SCOPE_PEER,
    SCOPE_SERVICE,
    SCOPE_S2S,
    SCOPE_TLS,
    SCOPE_TLS_DOMAIN,
    SCOPE_DNS,
    SCOPE_LIMITS,
    SCOPE_LOG,
    SCOPE_COUNT,
};

struct scope_info {
    const char *path;  /* prefix of the full key name, "" at the top */
    const char *title; /* section title in the documentation */
};

static const struct scope_info scope_infos[SCOPE_COUNT] = {
    [SCOPE_ROOT] = {"", "Top level"},
    [SCOPE_UPSTREAM] = {"upstream", "upstream: the home server link"},
    [SCOPE_PEER] = {"peers", "peers: one group per peer domain"},
    [SCOPE_SERVICE] = {"peers.services", "peers.services: a peer's services"},
    [SCOPE_S2S] = {"s2s", "s2s: listeners for peer connections"},
    [SCOPE_TLS] = {"tls", "tls: certificates and trust"},
    [SCOPE_TLS_DOMAIN] = {"tls.domains",
                          "tls.domains: a certificate per local domain"},
    [SCOPE_DNS] = {"dns", "dns: resolving peers"},
    [SCOPE_LIMITS] = {"limits", "limits: bounds on peer input and queues"},
    [SCOPE_LOG] = {"log", "log: logging"},
};

enum key_type {
    KT_STRING,   /* char *, NULL when not set */
    KT_BOOL,     /* bool */
    KT_UINT,     /* unsigned */
    KT_SIZE,     /* size_t */
    KT_STRLIST,  /* char ** at off, size_t count at off_n */
    KT_AUTH,     /* enum conf_auth, by name */
    KT_LOGLEVEL, /* enum log_level, by name (log_level_parse) */
    KT_GROUP,    /* a group whose keys are in scope `child` */
    KT_LIST,     /* list of groups of scope `child`: an array of
                  * elem_size structs at off, its count (size_t) at off_n,
                  * each struct's line (int) at off_line */
};

enum {
    KF_REQUIRED = 1 << 0,   /* must be present */
    KF_SECRET = 1 << 1,     /* printed as "(set)", wiped on free */
    KF_ZERO_UNSET = 1 << 2, /* a number where 0 means "not set" */
    KF_UNIQUE = 1 << 3,     /* list elements must differ */
};

struct conf_loader;

/*
 * Checks one string value and returns what to store in *out (a new
 * string, possibly normalised). Reports its own error and returns
 * ERR_INVAL, or returns ERR_NOMEM.
 */
typedef int conf_check_fn(struct conf_loader *ld,
                          const config_setting_t *s,
                          const char *name,
                          const char *in,
                          char **out);

struct conf_key {
    enum conf_scope scope;
    const char *name;
    enum key_type type;
    size_t off;        /* field in the scope's struct */
    size_t off_n;      /* KT_STRLIST: its count field */
    const char *def;   /* string default (one element for lists), or NULL */
    long long def_num; /* numeric, boolean or enum default */
    long long min;     /* numbers: bounds; lists: fewest elements */
    long long max;
    unsigned flags;
    enum conf_scope child; /* KT_GROUP, KT_LIST */
    size_t elem_size;      /* KT_LIST */
    size_t off_line;       /* KT_LIST: the element's line field */
    conf_check_fn *check;  /* strings and list elements */
    const char *doc;       /* one paragraph, plain text */
};

struct conf_loader {
    const char *path;
    const char *incdir; /* path's directory with a '/', for @include */
    FILE *err;
    config_t lc;
    int nerrors;
    bool nomem;
};

static conf_check_fn check_text;
static conf_check_fn check_secret;
static conf_check_fn check_domain;
static conf_check_fn check_service_jid;
static conf_check_fn check_admin_jid;
static conf_check_fn check_ip;
static conf_check_fn check_host;
static conf_check_fn check_listen;
static conf_check_fn check_forwarder;
static conf_check_fn check_file;
static conf_check_fn check_dir;

static const char *const auth_names[] = {"any", "certificate", "dialback"};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define ROOT(f)  offsetof(struct conf, f)
#define PEER(f)  offsetof(struct conf_peer, f)
#define SVC(f)   offsetof(struct conf_service, f)
#define TLSD(f)  offsetof(struct conf_tls_domain, f)

/* The one table. Its order is the order of conf_print and of the docs. */
static const struct conf_key conf_keys[] = {
    {.scope = SCOPE_ROOT,
     .name = "service_jid",
     .type = KT_STRING,
     .off = ROOT(service_jid),
     .flags = KF_REQUIRED,
     .check = check_service_jid,
     .doc = "fedgate's own JID, a domain of at least two labels such as "
            "fedgate.a.test. fedgate attaches it to the home server as a "
            "component of its own and answers administration and list "
            "requests there."},
    {.scope = SCOPE_ROOT,
     .name = "domains",
     .type = KT_STRLIST,
     .off = ROOT(domains),
     .off_n = ROOT(ndomains),
     .min = 1,
     .flags = KF_REQUIRED | KF_UNIQUE,
     .check = check_domain,
     .doc = "The served domains: the home server's own domains, for which "
            "fedgate is the only way in and out. At least one."},
    {.scope = SCOPE_ROOT,
     .name = "admins",
     .type = KT_STRLIST,
     .off = ROOT(admins),
     .off_n = ROOT(nadmins),
     .flags = KF_UNIQUE,
     .check = check_admin_jid,
     .doc = "Bare JIDs (user@domain) allowed to list and run the XEP-0050 "
            "ad-hoc administration commands on service_jid. Everybody else "
            "sees no commands and is refused with forbidden. Empty: nobody "
            "administers fedgate over XMPP."},
    {.scope = SCOPE_ROOT,
     .name = "upstream",
     .type = KT_GROUP,
     .child = SCOPE_UPSTREAM},
    {.scope = SCOPE_ROOT,
     .name = "peers",
     .type = KT_LIST,
     .off = ROOT(peers),
     .off_n = ROOT(npeers),
     .child = SCOPE_PEER,
     .elem_size = sizeof(struct conf_peer),
     .off_line = PEER(line)},
    {.scope = SCOPE_ROOT, .name = "s2s", .type = KT_GROUP, .child = SCOPE_S2S},
    {.scope = SCOPE_ROOT, .name = "tls", .type = KT_GROUP, .child = SCOPE_TLS},
    {.scope = SCOPE_ROOT, .name = "dns", .type = KT_GROUP, .child = SCOPE_DNS},
    {.scope = SCOPE_ROOT,
     .name = "limits",
     .type = KT_GROUP,
     .child = SCOPE_LIMITS},
    {.scope = SCOPE_ROOT, .name = "log", .type = KT_GROUP, .child = SCOPE_LOG},
    {.scope = SCOPE_ROOT,
     .name = "state_db",
     .type = KT_STRING,
     .off = ROOT(state_db),
     .def = "/var/lib/fedgate/state.db",
     .check = check_text,
     .doc = "The SQLite database that keeps runtime state: peers added at "
            "run time, lists and the audit log. Its directory must be "
            "writable by fedgate."},

    {.scope = SCOPE_UPSTREAM,
     .name = "host",
     .type = KT_STRING,
     .off = ROOT(upstream_host),
     .def = "127.0.0.1",
     .check = check_ip,
     .doc = "IP address of the home server's component listener (Prosody "
            "component_interfaces, ejabberd ejabberd_service ip). An "
            "address, not a name, so that connecting never waits for DNS."},
    {.scope = SCOPE_UPSTREAM,
     .name = "port",
     .type = KT_UINT,
     .off = ROOT(upstream_port),
     .def_num = 5347,
     .min = 1,
     .max = 65535,
     .doc = "Port of the home server's component listener."},
    {.scope = SCOPE_UPSTREAM,
     .name = "secret",
     .type = KT_STRING,
     .off = ROOT(upstream_secret),
     .flags = KF_SECRET,
     .check = check_secret,
     .doc = "The default XEP-0114 secret: used by the service_jid stream "
            "when service_secret is not set, and by every peer and service "
            "that has no secret of its own."},
    {.scope = SCOPE_UPSTREAM,
     .name = "service_secret",
     .type = KT_STRING,
     .off = ROOT(service_secret),
     .flags = KF_SECRET,
     .check = check_secret,
     .doc = "The XEP-0114 secret of the service_jid stream."},
    {.scope = SCOPE_UPSTREAM,
     .name = "connect_timeout",
     .type = KT_UINT,
     .off = ROOT(upstream_connect_timeout),
     .def_num = 10,
     .min = 1,
     .max = 3600,
     .doc = "Seconds to wait for the TCP connection to the home server."},
    {.scope = SCOPE_UPSTREAM,
     .name = "handshake_timeout",
     .type = KT_UINT,
     .off = ROOT(upstream_handshake_timeout),
     .def_num = 10,
     .min = 1,
     .max = 3600,
     .doc = "Seconds to wait for the stream header and the XEP-0114 "
            "handshake once connected."},
    {.scope = SCOPE_UPSTREAM,
     .name = "backoff_initial_ms",
     .type = KT_UINT,
     .off = ROOT(backoff_initial_ms),
     .def_num = 500,
     .min = 10,
     .max = 3600000,
     .doc = "Milliseconds before the first reconnection attempt after a "
            "stream to the home server fails; the delay doubles on each "
            "further failure. At most backoff_max_ms."},
    {.scope = SCOPE_UPSTREAM,
     .name = "backoff_max_ms",
     .type = KT_UINT,
     .off = ROOT(backoff_max_ms),
     .def_num = 60000,
     .min = 100,
     .max = 86400000,
     .doc = "The longest delay between reconnection attempts, in "
            "milliseconds."},
    {.scope = SCOPE_UPSTREAM,
     .name = "peer_hook",
     .type = KT_STRING,
     .off = ROOT(peer_hook),
     .check = check_text,
     .doc = "A command fedgate runs after an administrator adds, edits or "
            "removes a peer at run time, so that the home server routes "
            "the peer's domains to fedgate (or stops). Run by /bin/sh as "
            "'COMMAND \"$@\"' with the arguments add or remove and the "
            "peer's domains (the peer, then its services); for add, stdin "
            "has one line \"DOMAIN SECRET\" per domain. Exit 0 means done; "
            "its output is shown to the administrator. Ready-made hooks for "
            "Prosody and ejabberd are in config/hooks. Not set: the home "
            "server is left to the administrator (see server-snippet)."},
    {.scope = SCOPE_UPSTREAM,
     .name = "peer_hook_timeout",
     .type = KT_UINT,
     .off = ROOT(peer_hook_timeout),
     .def_num = 60,
     .min = 1,
     .max = 3600,
     .doc = "Seconds peer_hook may run before it is killed."},

    {.scope = SCOPE_PEER,
     .name = "domain",
     .type = KT_STRING,
     .off = PEER(domain),
     .flags = KF_REQUIRED,
     .check = check_domain,
     .doc = "The peer's domain. fedgate opens an upstream stream for it, "
            "so the home server routes the domain to fedgate, and accepts "
            "s2s streams from it. It must differ from every served domain, "
            "from service_jid and from every other peer or service."},
    {.scope = SCOPE_PEER,
     .name = "secret",
     .type = KT_STRING,
     .off = PEER(secret),
     .flags = KF_SECRET,
     .check = check_secret,
     .doc = "The XEP-0114 secret of the peer's upstream stream. Not set: "
            "upstream.secret."},
    {.scope = SCOPE_PEER,
     .name = "trusted",
     .type = KT_BOOL,
     .off = PEER(trusted),
     .def_num = 1,
     .doc = "Whether the peer is trusted. Presence and subscriptions are "
            "exchanged only with trusted peers (RFC 5344 section 2.1)."},
    {.scope = SCOPE_PEER,
     .name = "tls_required",
     .type = KT_BOOL,
     .off = PEER(tls_required),
     .def_num = 1,
     .doc = "Whether every s2s stream with the peer must be encrypted. "
            "When true, tls.certificate must be set."},
    {.scope = SCOPE_PEER,
     .name = "auth",
     .type = KT_AUTH,
     .off = PEER(auth),
     .def_num = CONF_AUTH_ANY,
     .doc = "How the peer may authenticate: any (a valid certificate with "
            "SASL EXTERNAL, else dialback), certificate (SASL EXTERNAL "
            "only; needs tls_required) or dialback (dialback only)."},
    {.scope = SCOPE_PEER,
     .name = "trust_anchor",
     .type = KT_STRING,
     .off = PEER(trust_anchor),
     .check = check_file,
     .doc = "A PEM file of CA certificates that verifies this peer's "
            "certificate instead of the global trust store."},
    {.scope = SCOPE_PEER,
     .name = "host",
     .type = KT_STRING,
     .off = PEER(host),
     .check = check_host,
     .doc = "Connect to this host name or IP address instead of looking up "
            "the peer's SRV records."},
    {.scope = SCOPE_PEER,
     .name = "port",
     .type = KT_UINT,
     .off = PEER(port),
     .min = 1,
     .max = 65535,
     .flags = KF_ZERO_UNSET,
     .doc = "The port used with host. Not set: 5269. Needs host."},
    {.scope = SCOPE_PEER,
     .name = "stanza_max",
     .type = KT_SIZE,
     .off = PEER(stanza_max),
     .min = 1024,
     .max = 67108864,
     .flags = KF_ZERO_UNSET,
     .doc = "The largest stanza in bytes accepted from this peer once "
            "authenticated. Not set: limits.stanza_max."},

    {.scope = SCOPE_PEER,
     .name = "services",
     .type = KT_LIST,
     .off = PEER(services),
     .off_n = PEER(nservices),
     .child = SCOPE_SERVICE,
     .elem_size = sizeof(struct conf_service),
     .off_line = SVC(line)},

    {.scope = SCOPE_SERVICE,
     .name = "domain",
     .type = KT_STRING,
     .off = SVC(domain),
     .flags = KF_REQUIRED,
     .check = check_domain,
     .doc = "A service domain of the peer that local users reach, such as "
            "conference.b.test. It gets an upstream stream of its own and "
            "must be unique like a peer domain."},
    {.scope = SCOPE_SERVICE,
     .name = "secret",
     .type = KT_STRING,
     .off = SVC(secret),
     .flags = KF_SECRET,
     .check = check_secret,
     .doc = "The XEP-0114 secret of the service's upstream stream. Not "
            "set: the peer's secret, else upstream.secret."},

    {.scope = SCOPE_S2S,
     .name = "listen",
     .type = KT_STRLIST,
     .off = ROOT(s2s_listen),
     .off_n = ROOT(ns2s_listen),
     .def = "0.0.0.0:5269",
     .flags = KF_UNIQUE,
     .check = check_listen,
     .doc = "Addresses, as \"ip:port\" or \"[ipv6]:port\", where peers "
            "connect with STARTTLS. An empty list accepts no such "
            "connections."},
    {.scope = SCOPE_S2S,
     .name = "direct_tls_listen",
     .type = KT_STRLIST,
     .off = ROOT(s2s_direct_tls_listen),
     .off_n = ROOT(ns2s_direct_tls_listen),
     .flags = KF_UNIQUE,
     .check = check_listen,
     .doc = "Addresses where peers connect with direct TLS (XEP-0368), in "
            "the same form. An address may appear in only one of the two "
            "lists."},
    {.scope = SCOPE_S2S,
     .name = "dialback_secret",
     .type = KT_STRING,
     .off = ROOT(s2s_dialback_secret),
     .flags = KF_SECRET,
     .check = check_secret,
     .doc = "The XEP-0185 secret dialback keys are made from. Not set: a "
            "random secret is generated at start, so keys issued before a "
            "restart no longer verify (peers simply authenticate again)."},
    {.scope = SCOPE_S2S,
     .name = "connect_timeout",
     .type = KT_UINT,
     .off = ROOT(s2s_connect_timeout),
     .def_num = 10,
     .min = 1,
     .max = 300,
     .doc = "Seconds to wait for a TCP connection to a peer, per address."},
    {.scope = SCOPE_S2S,
     .name = "negotiate_timeout",
     .type = KT_UINT,
     .off = ROOT(s2s_negotiate_timeout),
     .def_num = 20,
     .min = 1,
     .max = 600,
     .doc = "Seconds a new s2s stream may take from its first byte to "
            "authentication (headers, TLS, SASL or dialback)."},
    {.scope = SCOPE_S2S,
     .name = "idle_timeout",
     .type = KT_UINT,
     .off = ROOT(s2s_idle_timeout),
     .def_num = 600,
     .min = 10,
     .max = 86400,
     .doc = "Seconds without stanzas after which an s2s stream is closed."},
    {.scope = SCOPE_S2S,
     .name = "keepalive_interval",
     .type = KT_UINT,
     .off = ROOT(s2s_keepalive),
     .def_num = 60,
     .min = 1,
     .max = 3600,
     .doc = "Seconds of silence after which a whitespace keepalive is "
            "sent on an s2s stream. An authenticated outbound stream whose "
            "peer has sent nothing (on any of its streams to fedgate) for "
            "this long also gets an XEP-0199 ping, and is closed when no "
            "answer (result or error) comes within as long again; the "
            "route reconnects with its next stanza. Values below 5 detect "
            "a dead peer within seconds at the cost of a ping round trip "
            "that often; the test suite uses them."},
    {.scope = SCOPE_S2S,
     .name = "max_unauthenticated",
     .type = KT_UINT,
     .off = ROOT(s2s_max_unauth),
     .def_num = 256,
     .min = 1,
     .max = 100000,
     .doc = "Inbound s2s connections that may be open at once without "
            "having authenticated yet, from all addresses. A new one "
            "beyond that closes the oldest (resource-constraint), so "
            "half-open connections cannot take every file descriptor and "
            "a real peer's handshake still gets through a flood. Keep it "
            "well below the process's open-file limit."},
    {.scope = SCOPE_S2S,
     .name = "max_unauthenticated_per_address",
     .type = KT_UINT,
     .off = ROOT(s2s_max_unauth_per_addr),
     .def_num = 32,
     .min = 1,
     .max = 100000,
     .doc = "The same, from one IP address: a connection beyond it is "
            "refused at once (policy-violation)."},

    {.scope = SCOPE_TLS,
     .name = "certificate",
     .type = KT_STRING,
     .off = ROOT(tls_cert),
     .check = check_file,
     .doc = "PEM file with the certificate chain presented to peers, valid "
            "for the served domains and service_jid. Required when a peer "
            "has tls_required; set together with key. A domain listed in "
            "tls.domains presents its own certificate instead; this one is "
            "the default for every other name, and for peers that ask for "
            "no name (SNI) on a stream with no known local domain."},
    {.scope = SCOPE_TLS,
     .name = "key",
     .type = KT_STRING,
     .off = ROOT(tls_key),
     .check = check_file,
     .doc = "PEM file with the certificate's private key."},
    {.scope = SCOPE_TLS,
     .name = "ca_file",
     .type = KT_STRING,
     .off = ROOT(tls_ca),
     .check = check_file,
     .doc = "PEM file of CA certificates that verify peer certificates. "
            "Neither ca_file nor ca_path set: the system's default trust "
            "store."},
    {.scope = SCOPE_TLS,
     .name = "ca_path",
     .type = KT_STRING,
     .off = ROOT(tls_ca_path),
     .check = check_dir,
     .doc = "A directory of hashed CA certificates (c_rehash), used with or "
            "instead of ca_file."},
    {.scope = SCOPE_TLS,
     .name = "ciphers",
     .type = KT_STRING,
     .off = ROOT(tls_ciphers),
     .check = check_text,
     .doc = "OpenSSL cipher list for TLS 1.2. Not set: OpenSSL's default. "
            "TLS 1.3 suites are not affected; TLS older than 1.2 is never "
            "offered."},
    {.scope = SCOPE_TLS,
     .name = "domains",
     .type = KT_LIST,
     .off = ROOT(tls_domains),
     .off_n = ROOT(ntls_domains),
     .child = SCOPE_TLS_DOMAIN,
     .elem_size = sizeof(struct conf_tls_domain),
     .off_line = TLSD(line)},

    {.scope = SCOPE_TLS_DOMAIN,
     .name = "domain",
     .type = KT_STRING,
     .off = TLSD(domain),
     .flags = KF_REQUIRED,
     .check = check_domain,
     .doc = "A served domain or service_jid that presents a certificate of "
            "its own: as a server when a peer asks for it with SNI (or, "
            "without SNI, when the stream is addressed to it), as a client "
            "on streams from it. Listed once at most. tls.certificate must "
            "be set as the default for other names."},
    {.scope = SCOPE_TLS_DOMAIN,
     .name = "certificate",
     .type = KT_STRING,
     .off = TLSD(certificate),
     .flags = KF_REQUIRED,
     .check = check_file,
     .doc = "PEM file with the domain's certificate chain (leaf first, "
            "then intermediates), valid for the domain."},
    {.scope = SCOPE_TLS_DOMAIN,
     .name = "key",
     .type = KT_STRING,
     .off = TLSD(key),
     .flags = KF_REQUIRED,
     .check = check_file,
     .doc = "PEM file with that certificate's private key."},

    {.scope = SCOPE_DNS,
     .name = "forwarders",
     .type = KT_STRLIST,
     .off = ROOT(dns_forwarders),
     .off_n = ROOT(ndns_forwarders),
     .flags = KF_UNIQUE,
     .check = check_forwarder,
     .doc = "Resolvers to send queries to, as \"ip\" or \"ip@port\". Empty: "
            "the resolvers of /etc/resolv.conf."},
    {.scope = SCOPE_DNS,
     .name = "hosts_file",
     .type = KT_STRING,
     .off = ROOT(dns_hosts_file),
     .check = check_file,
     .doc = "A hosts(5) file whose addresses are used before DNS."},
    {.scope = SCOPE_DNS,
     .name = "trust_anchor_file",
     .type = KT_STRING,
     .off = ROOT(dns_trust_anchor_file),
     .check = check_file,
     .doc = "A DNSSEC trust anchor file (such as /usr/share/dns/root.key). "
            "When set, answers are validated and bogus answers refused."},

    {.scope = SCOPE_LIMITS,
     .name = "stanza_max",
     .type = KT_SIZE,
     .off = ROOT(stanza_max),
     .def_num = 524288,
     .min = 1024,
     .max = 67108864,
     .doc = "The largest stanza in bytes accepted on an authenticated "
            "stream; a larger one closes the stream (policy-violation)."},
    {.scope = SCOPE_LIMITS,
     .name = "stanza_max_preauth",
     .type = KT_SIZE,
     .off = ROOT(stanza_max_preauth),
     .def_num = 65536,
     .min = 1024,
     .max = 67108864,
     .doc = "The largest stanza in bytes accepted before a stream is "
            "authenticated. At most stanza_max."},
    {.scope = SCOPE_LIMITS,
     .name = "depth_max",
     .type = KT_UINT,
     .off = ROOT(depth_max),
     .def_num = 64,
     .min = 4,
     .max = 1024,
     .doc = "The deepest element nesting accepted in a stanza."},
    {.scope = SCOPE_LIMITS,
     .name = "queue_max_stanzas",
     .type = KT_SIZE,
     .off = ROOT(queue_max_stanzas),
     .def_num = 1000,
     .min = 1,
     .max = 1000000,
     .doc = "Stanzas a stream may hold while it is not ready; more are "
            "bounced with an error."},
    {.scope = SCOPE_LIMITS,
     .name = "queue_max_bytes",
     .type = KT_SIZE,
     .off = ROOT(queue_max_bytes),
     .def_num = 4194304,
     .min = 1024,
     .max = 1073741824,
     .doc = "Bytes a stream may hold queued while it is not ready."},
    {.scope = SCOPE_LIMITS,
     .name = "queue_timeout",
     .type = KT_UINT,
     .off = ROOT(queue_timeout),
     .def_num = 60,
     .min = 1,
     .max = 86400,
     .doc = "Seconds a queued stanza may wait before it is bounced "
            "(remote-server-timeout)."},

    {.scope = SCOPE_LOG,
     .name = "level",
     .type = KT_LOGLEVEL,
     .off = ROOT(log_level),
     .def_num = LOG_LEVEL_INFO,
     .doc = "The least severe level logged: error, warn, info or debug."},
    {.scope = SCOPE_LOG,
     .name = "syslog",
     .type = KT_BOOL,
     .off = ROOT(log_syslog),
     .def_num = 0,
     .doc = "Log to syslog (facility daemon) instead of standard error."},
};

/* ---- small helpers ---- */

static void *field(void *base, size_t off)
{
    return (char *)base + off;
}

static const void *cfield(const void *base, size_t off)
{
    return (const char *)base + off;
}

static const char *key_fullname(const struct conf_key *k, char *buf, size_t sz)
{
    const char *p = scope_infos[k->scope].path;
    if (p[0] != '\0') {
        snprintf(buf, sz, "%s.%s", p, k->name);
    } else {
        snprintf(buf, sz, "%s", k->name);
    }
    return buf;
}

static const struct conf_key *key_find(enum conf_scope scope, const char *name)
{
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        if (conf_keys[i].scope == scope &&
            strcmp(conf_keys[i].name, name) == 0) {
            return &conf_keys[i];
        }
    }
    return NULL;
}

/* A value from the file, made safe to echo in a message. */
static const char *esc(const char *s, char *buf, size_t sz)
{
    return log_escape(s, strlen(s), 64, buf, sz);
}

static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void free_strlist(char **v, size_t n)
{
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

/*
 * The file a setting (or a libconfig error) came from, as a path that
 * opens: libconfig 1.5 reports an @include by the name written in it,
 * which it resolved against the include directory.
 */
static const char *source_path(const struct conf_loader *ld,
                               const char *file,
                               char *buf,
                               size_t sz)
{
    if (file == NULL) {
        return ld->path;
    }
    if (file[0] == '/' || strcmp(file, ld->path) == 0 || ld->incdir == NULL) {
        return file;
    }
    snprintf(buf, sz, "%s/%s", ld->incdir, file);
    return buf;
}

/*
 * Reports one problem as "FILE:LINE: message" (the file being the one the
 * setting came from, which differs from path inside an @include), or
 * "FILE: message" when s is NULL or has no line.
 */
static void conf_err(struct conf_loader *ld,
                     const config_setting_t *s,
                     const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));

static void conf_err(struct conf_loader *ld,
                     const config_setting_t *s,
                     const char *fmt,
                     ...)
{
    const char *file = NULL;
    char fbuf[PATH_MAX];
    unsigned line = 0;
    va_list ap;

    ld->nerrors++;
    if (ld->err == NULL) {
        return;
    }
    if (s != NULL) {
        file = config_setting_source_file(s);
        line = config_setting_source_line(s);
    }
    file = source_path(ld, file, fbuf, sizeof(fbuf));
    if (line > 0) {
        fprintf(ld->err, "%s:%u: ", file, line);
    } else {
        fprintf(ld->err, "%s: ", file);
    }
    va_start(ap, fmt);
    vfprintf(ld->err, fmt, ap);
    va_end(ap);
    fputc('\n', ld->err);
}

/* Like conf_err, at a line remembered in a struct (0: no line). */
static void
conf_err_line(struct conf_loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conf_err_line(struct conf_loader *ld, int line, const char *fmt, ...)
{
    va_list ap;

    ld->nerrors++;
    if (ld->err == NULL) {
        return;
    }
    if (line > 0) {
        fprintf(ld->err, "%s:%d: ", ld->path, line);
    } else {
        fprintf(ld->err, "%s: ", ld->path);
    }
    va_start(ap, fmt);
    vfprintf(ld->err, fmt, ap);
    va_end(ap);
    fputc('\n', ld->err);
}

/* The first of paths that is set in the file, or NULL. */
static const config_setting_t *
lookup_first(struct conf_loader *ld, const char *a, const char *b)
{
    const config_setting_t *s = config_lookup(&ld->lc, a);
    if (s == NULL && b != NULL) {
        s = config_lookup(&ld->lc, b);
    }
    return s;
}

static int setting_line(const config_setting_t *s)
{
    return s != NULL ? (int)config_setting_source_line(s) : 0;
}

/* ---- checks for string values ---- */

static int dup_out(const char *in, char **out)
{
    *out = strdup(in);
    return *out != NULL ? 0 : ERR_NOMEM;
}

static int check_text(struct conf_loader *ld,
                      const config_setting_t *s,
                      const char *name,
                      const char *in,
                      char **out)
{
    if (in[0] == '\0') {
        conf_err(ld, s, "'%s' must not be empty", name);
        return ERR_INVAL;
    }
    return dup_out(in, out);
}

/* Printable ASCII only, so that every home-server syntax can carry it. */
static int check_secret(struct conf_loader *ld,
                        const config_setting_t *s,
                        const char *name,
                        const char *in,
                        char **out)
{
    if (in[0] == '\0') {
        conf_err(ld, s, "'%s' must not be empty", name);
        return ERR_INVAL;
    }
    for (const char *p = in; *p != '\0'; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            conf_err(ld, s, "'%s' must be printable ASCII", name);
            return ERR_INVAL;
        }
    }
    return dup_out(in, out);
}

static bool is_ip(const char *s)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* A domain name, normalised; the IP literals a JID may hold are refused,
 * since every domain here is a served, peer or service domain. */
static int check_domain(struct conf_loader *ld,
                        const config_setting_t *s,
                        const char *name,
                        const char *in,
                        char **out)
{
    char ebuf[300];
    int rc = jid_domain_normalize(in, out);
    if (rc == ERR_INVAL) {
        conf_err(ld, s, "'%s': invalid domain '%s'", name,
                 esc(in, ebuf, sizeof(ebuf)));
        return rc;
    }
    if (rc == 0 && (is_ip(*out) || (*out)[0] == '[')) {
        conf_err(ld, s, "'%s' must be a domain name, not the address '%s'",
                 name, esc(in, ebuf, sizeof(ebuf)));
        free(*out);
        *out = NULL;
        return ERR_INVAL;
    }
    return rc;
}

/* A bare JID, user@domain: stored with its domain normalised. */
static int check_admin_jid(struct conf_loader *ld,
                           const config_setting_t *s,
                           const char *name,
                           const char *in,
                           char **out)
{
    char ebuf[300];
    struct jid j;
    int rc = jid_parse(in, &j);
    if (rc == ERR_NOMEM) {
        return rc;
    }
    if (rc != 0 || j.local == NULL || j.resource != NULL) {
        conf_err(ld, s, "'%s': '%s' is not a bare JID such as admin@a.test",
                 name, esc(in, ebuf, sizeof(ebuf)));
        jid_clear(&j);
        return ERR_INVAL;
    }
    size_t len = strlen(j.local) + 1 + strlen(j.domain) + 1;
    *out = malloc(len);
    if (*out == NULL) {
        jid_clear(&j);
        return ERR_NOMEM;
    }
    snprintf(*out, len, "%s@%s", j.local, j.domain);
    jid_clear(&j);
    return 0;
}

/* A domain of at least two labels, such as fedgate.a.test. */
static int check_service_jid(struct conf_loader *ld,
                             const config_setting_t *s,
                             const char *name,
                             const char *in,
                             char **out)
{
    char ebuf[300];
    int rc = check_domain(ld, s, name, in, out);
    if (rc != 0) {
        return rc;
    }
    if (strchr(*out, '.') == NULL) {
        conf_err(ld, s,
                 "'%s' must be a subdomain such as fedgate.a.test, not '%s'",
                 name, esc(*out, ebuf, sizeof(ebuf)));
        free(*out);
        *out = NULL;
        return ERR_INVAL;
    }
    return 0;
}

static int check_ip(struct conf_loader *ld,
                    const config_setting_t *s,
                    const char *name,
                    const char *in,
                    char **out)
{
    char ebuf[300];
    if (!is_ip(in)) {
        conf_err(ld, s, "'%s' must be an IP address, not '%s'", name,
                 esc(in, ebuf, sizeof(ebuf)));
        return ERR_INVAL;
    }
    return dup_out(in, out);
}

static int check_host(struct conf_loader *ld,
                      const config_setting_t *s,
                      const char *name,
                      const char *in,
                      char **out)
{
    if (is_ip(in)) {
        return dup_out(in, out);
    }
    return check_domain(ld, s, name, in, out);
}

/* Parses a decimal port 1..65535 with nothing after it. */
static bool parse_port(const char *p)
{
    unsigned long v = 0;
    if (*p == '\0' || strlen(p) > 5) {
        return false;
    }
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return false;
        }
        v = v * 10 + (unsigned long)(*p - '0');
    }
    return v >= 1 && v <= 65535;
}

/* "ipv4:port" or "[ipv6]:port". */
static bool listen_valid(const char *in)
{
    char host[INET6_ADDRSTRLEN + 1];
    unsigned char a[sizeof(struct in6_addr)];
    const char *colon;
    size_t n;

    if (in[0] == '[') {
        const char *close = strchr(in, ']');
        if (close == NULL || close[1] != ':') {
            return false;
        }
        n = (size_t)(close - in - 1);
        if (n == 0 || n >= sizeof(host)) {
            return false;
        }
        memcpy(host, in + 1, n);
        host[n] = '\0';
        return inet_pton(AF_INET6, host, a) == 1 && parse_port(close + 2);
    }
    colon = strchr(in, ':');
    if (colon == NULL || strchr(colon + 1, ':') != NULL) {
        return false;
    }
    n = (size_t)(colon - in);
    if (n == 0 || n >= sizeof(host)) {
        return false;
    }
    memcpy(host, in, n);
    host[n] = '\0';
    return inet_pton(AF_INET, host, a) == 1 && parse_port(colon + 1);
}

static int check_listen(struct conf_loader *ld,
                        const config_setting_t *s,
                        const char *name,
                        const char *in,
                        char **out)
{
    char ebuf[300];
    if (!listen_valid(in)) {
        conf_err(ld, s,
                 "'%s': bad listen address '%s' (want \"ip:port\" or "
                 "\"[ipv6]:port\", port 1..65535)",
                 name, esc(in, ebuf, sizeof(ebuf)));
        return ERR_INVAL;
    }
    return dup_out(in, out);
}

/* "ip" or "ip@port", as libunbound takes them. */
static int check_forwarder(struct conf_loader *ld,
                           const config_setting_t *s,
                           const char *name,
                           const char *in,
                           char **out)
{
    char ebuf[300];
    char host[INET6_ADDRSTRLEN + 1];
    const char *at = strchr(in, '@');
    size_t n = at != NULL ? (size_t)(at - in) : strlen(in);
    bool ok = n > 0 && n < sizeof(host);

    if (ok) {
        memcpy(host, in, n);
        host[n] = '\0';
        ok = is_ip(host) && (at == NULL || parse_port(at + 1));
    }
    if (!ok) {
        conf_err(ld, s, "'%s': bad forwarder '%s' (want \"ip\" or \"ip@port\")",
                 name, esc(in, ebuf, sizeof(ebuf)));
        return ERR_INVAL;
    }
    return dup_out(in, out);
}

static int check_file(struct conf_loader *ld,
                      const config_setting_t *s,
                      const char *name,
                      const char *in,
                      char **out)
{
    char ebuf[300];
    struct stat st;
    FILE *f;

    if (in[0] == '\0') {
        conf_err(ld, s, "'%s' must not be empty", name);
        return ERR_INVAL;
    }
    if (stat(in, &st) != 0 || (f = fopen(in, "r")) == NULL) {
        conf_err(ld, s, "'%s': cannot read '%s': %s", name,
                 esc(in, ebuf, sizeof(ebuf)), strerror(errno));
        return ERR_INVAL;
    }
    fclose(f);
    if (!S_ISREG(st.st_mode)) {
        conf_err(ld, s, "'%s': '%s' is not a regular file", name,
                 esc(in, ebuf, sizeof(ebuf)));
        return ERR_INVAL;
    }
    return dup_out(in, out);
}

static int check_dir(struct conf_loader *ld,
                     const config_setting_t *s,
                     const char *name,
                     const char *in,
                     char **out)
{
    char ebuf[300];
    struct stat st;

    if (in[0] == '\0') {
        conf_err(ld, s, "'%s' must not be empty", name);
        return ERR_INVAL;
    }
    if (stat(in, &st) != 0 || access(in, R_OK | X_OK) != 0) {
        conf_err(ld, s, "'%s': cannot read '%s': %s", name,
                 esc(in, ebuf, sizeof(ebuf)), strerror(errno));
        return ERR_INVAL;
    }
    if (!S_ISDIR(st.st_mode)) {
        conf_err(ld, s, "'%s': '%s' is not a directory", name,
                 esc(in, ebuf, sizeof(ebuf)));
        return ERR_INVAL;
    }
    return dup_out(in, out);
}

/* ---- defaults and freeing ---- */

static void
scope_defaults(struct conf_loader *ld, enum conf_scope scope, void *base)
{
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->scope != scope) {
            continue;
        }
        switch (k->type) {
        case KT_STRING:
            if (k->def != NULL &&
                (*(char **)field(base, k->off) = strdup(k->def)) == NULL) {
                ld->nomem = true;
            }
            break;
        case KT_BOOL:
            *(bool *)field(base, k->off) = k->def_num != 0;
            break;
        case KT_UINT:
            *(unsigned *)field(base, k->off) = (unsigned)k->def_num;
            break;
        case KT_SIZE:
            *(size_t *)field(base, k->off) = (size_t)k->def_num;
            break;
        case KT_STRLIST:
            if (k->def != NULL) {
                char **v = calloc(1, sizeof(*v));
                if (v == NULL || (v[0] = strdup(k->def)) == NULL) {
                    free(v);
                    ld->nomem = true;
                    break;
                }
                *(char ***)field(base, k->off) = v;
                *(size_t *)field(base, k->off_n) = 1;
            }
            break;
        case KT_AUTH:
            *(enum conf_auth *)field(base, k->off) = (enum conf_auth)k->def_num;
            break;
        case KT_LOGLEVEL:
            *(enum log_level *)field(base, k->off) = (enum log_level)k->def_num;
            break;
        case KT_GROUP:
            scope_defaults(ld, k->child, base);
            break;
        case KT_LIST:
            break;
        }
    }
}

static void scope_free(enum conf_scope scope, void *base);

/* A KT_LIST field's array, through memcpy: the field is a pointer to a
 * struct type, not a void pointer. */
static char *list_get(const void *base, const struct conf_key *k)
{
    char *v;
    memcpy(&v, cfield(base, k->off), sizeof(v));
    return v;
}

static void list_set(void *base, const struct conf_key *k, void *v)
{
    memcpy(field(base, k->off), &v, sizeof(v));
}

static void list_free(const struct conf_key *k, void *base)
{
    char *v = list_get(base, k);
    size_t n = *(size_t *)field(base, k->off_n);
    if (v != NULL) {
        for (size_t i = 0; i < n; i++) {
            scope_free(k->child, v + i * k->elem_size);
        }
        free(v);
    }
    list_set(base, k, NULL);
    *(size_t *)field(base, k->off_n) = 0;
}

/* Frees what the table says a scope owns; secrets are wiped. */
static void scope_free(enum conf_scope scope, void *base)
{
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->scope != scope) {
            continue;
        }
        switch (k->type) {
        case KT_STRING: {
            char **p = field(base, k->off);
            if (k->flags & KF_SECRET) {
                free_secret(*p);
            } else {
                free(*p);
            }
            *p = NULL;
            break;
        }
        case KT_STRLIST:
            free_strlist(*(char ***)field(base, k->off),
                         *(size_t *)field(base, k->off_n));
            *(char ***)field(base, k->off) = NULL;
            *(size_t *)field(base, k->off_n) = 0;
            break;
        case KT_GROUP:
            scope_free(k->child, base);
            break;
        case KT_LIST:
            list_free(k, base);
            break;
        case KT_BOOL:
        case KT_UINT:
        case KT_SIZE:
        case KT_AUTH:
        case KT_LOGLEVEL:
            break;
        }
    }
}

void conf_free(struct conf *cfg)
{
    if (cfg == NULL) {
        return;
    }
    scope_free(SCOPE_ROOT, cfg);
    free(cfg->path);
    free(cfg);
}

/* ---- copying ---- */

/*
 * Makes dst (a byte copy of a struct of scope) own copies of what the
 * table says the scope points to. Every pointer is first cleared, so on
 * ERR_NOMEM dst holds only what was copied and scope_free(dst) is safe.
 */
static int scope_copy(enum conf_scope scope, void *dst, const void *src)
{
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->scope != scope) {
            continue;
        }
        if (k->type == KT_STRING) {
            *(char **)field(dst, k->off) = NULL;
        } else if (k->type == KT_STRLIST) {
            *(char ***)field(dst, k->off) = NULL;
            *(size_t *)field(dst, k->off_n) = 0;
        } else if (k->type == KT_LIST) {
            list_set(dst, k, NULL);
            *(size_t *)field(dst, k->off_n) = 0;
        } else if (k->type == KT_GROUP) {
            (void)scope_copy(k->child, dst, NULL); /* clears only */
        }
    }
    if (src == NULL) {
        return 0;
    }
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        const struct conf_key *k = &conf_keys[i];
        if (k->scope != scope) {
            continue;
        }
        switch (k->type) {
        case KT_STRING: {
            const char *v = *(char *const *)cfield(src, k->off);
            if (v != NULL && dup_out(v, field(dst, k->off)) != 0) {
                return ERR_NOMEM;
            }
            break;
        }
        case KT_STRLIST: {
            char *const *v = *(char **const *)cfield(src, k->off);
            size_t n = *(const size_t *)cfield(src, k->off_n);
            char **c = n > 0 ? calloc(n, sizeof(*c)) : NULL;
            if (n > 0 && c == NULL) {
                return ERR_NOMEM;
            }
            *(char ***)field(dst, k->off) = c;
            *(size_t *)field(dst, k->off_n) = n;
            for (size_t j = 0; j < n; j++) {
                if (dup_out(v[j], &c[j]) != 0) {
                    return ERR_NOMEM;
                }
            }
            break;
        }
        case KT_GROUP:
            if (scope_copy(k->child, dst, src) != 0) {
                return ERR_NOMEM;
            }
            break;
        case KT_LIST: {
            const char *v = list_get(src, k);
            size_t n = *(const size_t *)cfield(src, k->off_n);
            char *c = n > 0 ? calloc(n, k->elem_size) : NULL;
            if (n > 0 && c == NULL) {
                return ERR_NOMEM;
            }
            list_set(dst, k, c);
            for (size_t j = 0; j < n; j++) {
                memcpy(c + j * k->elem_size, v + j * k->elem_size,
                       k->elem_size);
                (*(size_t *)field(dst, k->off_n))++;
                if (scope_copy(k->child, c + j * k->elem_size,
                               v + j * k->elem_size) != 0) {
                    return ERR_NOMEM;
                }
            }
            break;
        }
        case KT_BOOL:
        case KT_UINT:
        case KT_SIZE:
        case KT_AUTH:
        case KT_LOGLEVEL:
            break;
        }
    }
    return 0;
}

struct conf *conf_dup(const struct conf *cfg)
{
    struct conf *c = malloc(sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    memcpy(c, cfg, sizeof(*c));
    c->path = NULL;
    if (scope_copy(SCOPE_ROOT, c, cfg) != 0 ||
        (c->path = strdup(cfg->path)) == NULL) {
        conf_free(c);
        return NULL;
    }
    return c;
}

int conf_peer_copy(struct conf_peer *dst, const struct conf_peer *src)
{
    memcpy(dst, src, sizeof(*dst));
    if (scope_copy(SCOPE_PEER, dst, src) != 0) {
        scope_free(SCOPE_PEER, dst);
        return ERR_NOMEM;
    }
    return 0;
}

void conf_peer_clear(struct conf_peer *p)
{
    if (p != NULL) {
        scope_free(SCOPE_PEER, p);
    }
}

/* ---- parsing ---- */

/*
 * Whether the integer literal written for s in its file is v. libconfig
 * 1.5 wraps literals that do not fit in an int without a word, so the
 * text is read back: every "name = number" or "name: number" on the
 * setting's line is compared. When the text cannot be found the parsed
 * value is trusted.
 */
static bool int_literal_matches(const struct conf_loader *ld,
                                const config_setting_t *s,
                                long long v)
{
    char fbuf[PATH_MAX];
    const char *file =
        source_path(ld, config_setting_source_file(s), fbuf, sizeof(fbuf));
    const char *name = config_setting_name(s);
    unsigned line = config_setting_source_line(s);
    size_t namelen;
    char *buf = NULL;
    size_t cap = 0;
    bool found = false, match = false;
    FILE *f;

    if (file == NULL || name == NULL || line == 0) {
        return true;
    }
    if ((f = fopen(file, "r")) == NULL) {
        return true;
    }
    for (unsigned n = 0; n < line; n++) {
        if (getline(&buf, &cap, f) < 0) {
            free(buf);
            fclose(f);
            return true;
        }
        if (n + 1 < line) {
            explicit_bzero(buf, cap); /* a line may hold a secret */
        }
    }
    fclose(f);
    namelen = strlen(name);
    for (const char *p = strstr(buf, name); p != NULL;
         p = strstr(p + 1, name)) {
        const char *q = p + namelen;
        char *end;
        int base = 10;
        long long t;
        if (p > buf && (isalnum((unsigned char)p[-1]) || p[-1] == '_' ||
                        p[-1] == '-' || p[-1] == '*')) {
            continue;
        }
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        if (*q != '=' && *q != ':') {
            continue;
        }
        q++;
        while (*q == ' ' || *q == '\t') {
            q++;
        }
        if ((q[0] == '0' && (q[1] == 'x' || q[1] == 'X'))) {
            base = 16;
        } else if (!(isdigit((unsigned char)q[0]) || q[0] == '-' ||
                     q[0] == '+')) {
            continue;
        }
        errno = 0;
        t = strtoll(q, &end, base);
        if (end == q) {
            continue;
        }
        found = true;
        if (errno == 0 && t == v) {
            match = true;
        }
    }
    explicit_bzero(buf, cap);
    free(buf);
    return !found || match;
}

static void parse_scope(struct conf_loader *ld,
                        const config_setting_t *g,
                        enum conf_scope scope,
                        void *base);

/* Checks one string through the key's check; stores into *slot. */
static void parse_string(struct conf_loader *ld,
                         const struct conf_key *k,
                         const config_setting_t *s,
                         const char *name,
                         char **slot)
{
    char *v = NULL;
    int rc;

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        conf_err(ld, s, "'%s' must be a string", name);
        return;
    }
    rc = k->check(ld, s, name, config_setting_get_string(s), &v);
    if (rc == ERR_NOMEM) {
        ld->nomem = true;
    }
    if (rc != 0) {
        return;
    }
    if (k->flags & KF_SECRET) {
        free_secret(*slot);
    } else {
        free(*slot);
    }
    *slot = v; /* transferred */
}

static void parse_number(struct conf_loader *ld,
                         const struct conf_key *k,
                         const config_setting_t *s,
                         const char *name,
                         void *base)
{
    long long v;
    int t = config_setting_type(s);

    if (t == CONFIG_TYPE_INT) {
        v = config_setting_get_int(s);
    } else if (t == CONFIG_TYPE_INT64) {
        v = config_setting_get_int64(s);
    } else {
        conf_err(ld, s, "'%s' must be an integer", name);
        return;
    }
    if (v < k->min || v > k->max ||
        (t == CONFIG_TYPE_INT && !int_literal_matches(ld, s, v))) {
        conf_err(ld, s, "'%s' is out of range: must be %lld..%lld", name,
                 k->min, k->max);
        return;
    }
    if (k->type == KT_UINT) {
        *(unsigned *)field(base, k->off) = (unsigned)v;
    } else {
        *(size_t *)field(base, k->off) = (size_t)v;
    }
}

static void parse_strlist(struct conf_loader *ld,
                          const struct conf_key *k,
                          const config_setting_t *s,
                          const char *name,
                          void *base)
{
    int t = config_setting_type(s);
    int n;
    char **v = NULL;
    size_t nv = 0;
    bool bad = false;

    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
        conf_err(ld, s, "'%s' must be a list of strings [ \"...\", ... ]",
                 name);
        return;
    }
    n = config_setting_length(s);
    if (n < k->min) {
        conf_err(ld, s, "'%s' must have at least %lld element%s", name, k->min,
                 k->min == 1 ? "" : "s");
        return;
    }
    if (n > 0 && (v = calloc((size_t)n, sizeof(*v))) == NULL) {
        ld->nomem = true;
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        char *item = NULL;
        int rc;
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            conf_err(ld, e, "'%s': element %d must be a string", name, i + 1);
            bad = true;
            continue;
        }
        rc = k->check(ld, e, name, config_setting_get_string(e), &item);
        if (rc == ERR_NOMEM) {
            ld->nomem = true;
        }
        if (rc != 0) {
            bad = true;
            continue;
        }
        if (k->flags & KF_UNIQUE) {
            bool dup = false;
            for (size_t j = 0; j < nv; j++) {
                if (strcmp(v[j], item) == 0) {
                    dup = true;
                }
            }
            if (dup) {
                char ebuf[300];
                conf_err(ld, e, "'%s': '%s' is listed twice", name,
                         esc(item, ebuf, sizeof(ebuf)));
                free(item);
                bad = true;
                continue;
            }
        }
        v[nv++] = item; /* transferred */
    }
    if (bad) {
        free_strlist(v, nv);
        return;
    }
    free_strlist(*(char ***)field(base, k->off),
                 *(size_t *)field(base, k->off_n));
    *(char ***)field(base, k->off) = v; /* transferred */
    *(size_t *)field(base, k->off_n) = nv;
}

static void parse_enum(struct conf_loader *ld,
                       const struct conf_key *k,
                       const config_setting_t *s,
                       const char *name,
                       void *base)
{
    const char *v;
    char ebuf[300];

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        conf_err(ld, s, "'%s' must be a string", name);
        return;
    }
    v = config_setting_get_string(s);
    if (k->type == KT_LOGLEVEL) {
        enum log_level level;
        if (log_level_parse(v, &level) != 0) {
            conf_err(ld, s,
                     "'%s' is '%s', must be one of error, warn, info, debug",
                     name, esc(v, ebuf, sizeof(ebuf)));
            return;
        }
        *(enum log_level *)field(base, k->off) = level;
        return;
    }
    for (size_t i = 0; i < NELEM(auth_names); i++) {
        if (strcmp(v, auth_names[i]) == 0) {
            *(enum conf_auth *)field(base, k->off) = (enum conf_auth)i;
            return;
        }
    }
    conf_err(ld, s, "'%s' is '%s', must be one of any, certificate, dialback",
             name, esc(v, ebuf, sizeof(ebuf)));
}

/* A list of groups: "( { ... }, { ... } )"; an empty array also does. */
static bool is_group_list(const config_setting_t *s)
{
    int t = config_setting_type(s);
    return t == CONFIG_TYPE_LIST ||
           (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0);
}

static void parse_list(struct conf_loader *ld,
                       const struct conf_key *k,
                       const config_setting_t *s,
                       const char *name,
                       void *base)
{
    size_t *count = field(base, k->off_n);
    char *v;
    int n;

    if (!is_group_list(s)) {
        conf_err(ld, s, "'%s' must be a list of groups ( { ... }, ... )", name);
        return;
    }
    n = config_setting_length(s);
    if (n == 0) {
        return;
    }
    if ((v = calloc((size_t)n, k->elem_size)) == NULL) {
        ld->nomem = true;
        return;
    }
    list_set(base, k, v);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        void *el;
        if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
            conf_err(ld, e, "'%s': element %d must be a group { ... }", name,
                     i + 1);
            continue;
        }
        el = v + (*count)++ * k->elem_size;
        *(int *)field(el, k->off_line) = setting_line(e);
        scope_defaults(ld, k->child, el);
        parse_scope(ld, e, k->child, el);
    }
}

static void parse_value(struct conf_loader *ld,
                        const struct conf_key *k,
                        const config_setting_t *s,
                        void *base)
{
    char name[128];

    key_fullname(k, name, sizeof(name));
    switch (k->type) {
    case KT_STRING:
        parse_string(ld, k, s, name, field(base, k->off));
        break;
    case KT_BOOL:
        if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
            conf_err(ld, s, "'%s' must be true or false", name);
            break;
        }
        *(bool *)field(base, k->off) = config_setting_get_bool(s) != 0;
        break;
    case KT_UINT:
    case KT_SIZE:
        parse_number(ld, k, s, name, base);
        break;
    case KT_STRLIST:
        parse_strlist(ld, k, s, name, base);
        break;
    case KT_AUTH:
    case KT_LOGLEVEL:
        parse_enum(ld, k, s, name, base);
        break;
    case KT_GROUP:
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            conf_err(ld, s, "'%s' must be a group { ... }", name);
            break;
        }
        parse_scope(ld, s, k->child, base);
        break;
    case KT_LIST:
        parse_list(ld, k, s, name, base);
        break;
    }
}

/*
 * Parses the members of group g (the root, a group or a list element)
 * with the keys of scope into base: unknown keys and missing required
 * keys are errors.
 */
static void parse_scope(struct conf_loader *ld,
                        const config_setting_t *g,
                        enum conf_scope scope,
                        void *base)
{
    const char *path = scope_infos[scope].path;
    int n = config_setting_length(g);

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct conf_key *k = name != NULL ? key_find(scope, name) : NULL;
        if (k == NULL) {
            if (path[0] != '\0') {
                conf_err(ld, s, "unknown key '%s' in %s",
                         name != NULL ? name : "?", path);
            } else {
                conf_err(ld, s, "unknown key '%s'", name != NULL ? name : "?");
            }
            continue;
        }
        parse_value(ld, k, s, base);
    }
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        const struct conf_key *k = &conf_keys[i];
        char name[128];
        if (k->scope != scope || !(k->flags & KF_REQUIRED) ||
            config_setting_get_member(g, k->name) != NULL) {
            continue;
        }
        conf_err(ld, g, "missing required key '%s'",
                 key_fullname(k, name, sizeof(name)));
    }
}

/* ---- cross-checks ---- */

struct domain_use {
    const char *domain;
    const char *what; /* "served domain", "peer domain", ... */
    int line;
};

/* Every domain fedgate answers for must be used once only. */
static void check_domains_unique(struct conf_loader *ld, const struct conf *cfg)
{
    const config_setting_t *ds = config_lookup(&ld->lc, "domains");
    const config_setting_t *js = config_lookup(&ld->lc, "service_jid");
    struct domain_use *u;
    size_t n = cfg->ndomains + 1 + cfg->npeers, nu = 0;

    for (size_t i = 0; i < cfg->npeers; i++) {
        n += cfg->peers[i].nservices;
    }
    if ((u = calloc(n, sizeof(*u))) == NULL) {
        ld->nomem = true;
        return;
    }
    for (size_t i = 0; i < cfg->ndomains; i++) {
        const config_setting_t *e =
            ds != NULL && (size_t)config_setting_length(ds) == cfg->ndomains
                ? config_setting_get_elem(ds, (unsigned)i)
                : ds;
        u[nu++] = (struct domain_use){cfg->domains[i], "served domain",
                                      setting_line(e)};
    }
    if (cfg->service_jid != NULL) {
        u[nu++] = (struct domain_use){cfg->service_jid, "service_jid",
                                      setting_line(js)};
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        if (p->domain != NULL) {
            u[nu++] = (struct domain_use){p->domain, "peer domain", p->line};
        }
        for (size_t j = 0; j < p->nservices; j++) {
            if (p->services[j].domain != NULL) {
                u[nu++] =
                    (struct domain_use){p->services[j].domain, "service domain",
                                        p->services[j].line};
            }
        }
    }
    for (size_t j = 0; j < nu; j++) {
        for (size_t i = 0; i < j; i++) {
            if (strcmp(u[i].domain, u[j].domain) != 0) {
                continue;
            }
            if (strcmp(u[i].what, u[j].what) == 0) {
                conf_err_line(ld, u[j].line,
                              "duplicate %s '%s' (first at line %d)", u[j].what,
                              u[j].domain, u[i].line);
            } else {
                conf_err_line(ld, u[j].line, "%s '%s' is also a %s (line %d)",
                              u[j].what, u[j].domain, u[i].what, u[i].line);
            }
            break;
        }
    }
    free(u);
}

/* Every upstream stream must end up with a secret. */
static void check_secrets(struct conf_loader *ld, const struct conf *cfg)
{
    if (cfg->service_jid != NULL && cfg->service_secret == NULL &&
        cfg->upstream_secret == NULL) {
        conf_err(ld, config_lookup(&ld->lc, "service_jid"),
                 "no secret for the stream of service_jid '%s': set "
                 "upstream.service_secret or upstream.secret",
                 cfg->service_jid);
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        if (p->domain != NULL && p->secret == NULL &&
            cfg->upstream_secret == NULL) {
            conf_err_line(ld, p->line,
                          "no secret for peer '%s': set its secret or "
                          "upstream.secret",
                          p->domain);
        }
        for (size_t j = 0; j < p->nservices; j++) {
            const struct conf_service *svc = &p->services[j];
            if (svc->domain != NULL && svc->secret == NULL &&
                p->secret == NULL && cfg->upstream_secret == NULL) {
                conf_err_line(ld, svc->line,
                              "no secret for service '%s': set its secret, "
                              "its peer's or upstream.secret",
                              svc->domain);
            }
        }
    }
}

/* Listen addresses must differ across both s2s lists. */
static void check_listen_disjoint(struct conf_loader *ld,
                                  const struct conf *cfg)
{
    const config_setting_t *ls = config_lookup(&ld->lc, "s2s.listen");
    const config_setting_t *ds =
        config_lookup(&ld->lc, "s2s.direct_tls_listen");

    for (size_t j = 0; j < cfg->ns2s_direct_tls_listen; j++) {
        for (size_t i = 0; i < cfg->ns2s_listen; i++) {
            if (strcmp(cfg->s2s_listen[i], cfg->s2s_direct_tls_listen[j]) !=
                0) {
                continue;
            }
            const config_setting_t *e =
                ds != NULL && (size_t)config_setting_length(ds) ==
                                  cfg->ns2s_direct_tls_listen
                    ? config_setting_get_elem(ds, (unsigned)j)
                    : ls;
            conf_err(ld, e,
                     "'s2s.direct_tls_listen': '%s' is also in s2s.listen",
                     cfg->s2s_direct_tls_listen[j]);
        }
    }
}

/* tls.domains: each a local domain, once, and a default certificate
 * for every other name. */
static void
check_tls_domains(struct conf_loader *ld, const struct conf *cfg, bool has_cert)
{
    for (size_t j = 0; j < cfg->ntls_domains; j++) {
        const struct conf_tls_domain *t = &cfg->tls_domains[j];
        if (t->domain == NULL) {
            continue; /* already reported */
        }
        bool local = cfg->service_jid != NULL &&
                     strcmp(t->domain, cfg->service_jid) == 0;
        for (size_t i = 0; i < cfg->ndomains && !local; i++) {
            local = strcmp(t->domain, cfg->domains[i]) == 0;
        }
        if (!local) {
            conf_err_line(ld, t->line,
                          "'tls.domains': '%s' is neither a served domain "
                          "nor service_jid",
                          t->domain);
        }
        for (size_t i = 0; i < j; i++) {
            const struct conf_tls_domain *u = &cfg->tls_domains[i];
            if (u->domain != NULL && strcmp(u->domain, t->domain) == 0) {
                conf_err_line(ld, t->line,
                              "'tls.domains': duplicate domain '%s' (first at "
                              "line %d)",
                              t->domain, u->line);
                break;
            }
        }
    }
    if (cfg->ntls_domains > 0 && !has_cert) {
        conf_err(ld, config_lookup(&ld->lc, "tls.domains"),
                 "'tls.domains' needs 'tls.certificate' and 'tls.key', the "
                 "default for every other name");
    }
}

/* What a peer's own keys must satisfy together. */
static void
check_peer(struct conf_loader *ld, const struct conf_peer *p, bool has_cert)
{
    const char *d = p->domain != NULL ? p->domain : "?";
    if (p->tls_required && !has_cert) {
        conf_err_line(ld, p->line,
                      "peer '%s' requires TLS but 'tls.certificate' is "
                      "not set",
                      d);
    }
    if (p->auth == CONF_AUTH_CERTIFICATE && !p->tls_required) {
        conf_err_line(ld, p->line,
                      "peer '%s': auth \"certificate\" needs "
                      "tls_required = true",
                      d);
    }
    if (p->port != 0 && p->host == NULL) {
        conf_err_line(ld, p->line,
                      "peer '%s': 'peers.port' needs "
                      "'peers.host'",
                      d);
    }
}

static void check_cross(struct conf_loader *ld, const struct conf *cfg)
{
    check_domains_unique(ld, cfg);
    check_secrets(ld, cfg);
    check_listen_disjoint(ld, cfg);

    if (cfg->stanza_max_preauth > cfg->stanza_max) {
        conf_err(
            ld,
            lookup_first(ld, "limits.stanza_max_preauth", "limits.stanza_max"),
            "'limits.stanza_max_preauth' (%zu) must not exceed "
            "'limits.stanza_max' (%zu)",
            cfg->stanza_max_preauth, cfg->stanza_max);
    }
    if (cfg->backoff_initial_ms > cfg->backoff_max_ms) {
        conf_err(ld,
                 lookup_first(ld, "upstream.backoff_initial_ms",
                              "upstream.backoff_max_ms"),
                 "'upstream.backoff_initial_ms' (%u) must not exceed "
                 "'upstream.backoff_max_ms' (%u)",
                 cfg->backoff_initial_ms, cfg->backoff_max_ms);
    }
    /* by presence in the file, so that an unreadable file is reported
     * once, not again as missing */
    bool has_cert = config_lookup(&ld->lc, "tls.certificate") != NULL;
    bool has_key = config_lookup(&ld->lc, "tls.key") != NULL;
    if (has_cert != has_key) {
        conf_err(ld, lookup_first(ld, "tls.certificate", "tls.key"),
                 "'tls.certificate' and 'tls.key' must be set together");
    }
    check_tls_domains(ld, cfg, has_cert);
    for (size_t i = 0; i < cfg->npeers; i++) {
        check_peer(ld, &cfg->peers[i], has_cert);
    }
}

/* ---- loading ---- */

/* Wipes the secrets in libconfig's own tree, which frees without wiping. */
static void wipe_secrets(config_setting_t *g, enum conf_scope scope)
{
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        const struct conf_key *k = &conf_keys[i];
        config_setting_t *s;
        if (k->scope != scope ||
            (s = config_setting_get_member(g, k->name)) == NULL) {
            continue;
        }
        if ((k->flags & KF_SECRET) &&
            config_setting_type(s) == CONFIG_TYPE_STRING) {
            /* the string is libconfig's own malloc'd copy */
            char *v = (char *)config_setting_get_string(s);
            explicit_bzero(v, strlen(v));
        } else if (k->type == KT_GROUP &&
                   config_setting_type(s) == CONFIG_TYPE_GROUP) {
            wipe_secrets(s, k->child);
        } else if (k->type == KT_LIST &&
                   config_setting_type(s) == CONFIG_TYPE_LIST) {
            for (int j = 0; j < config_setting_length(s); j++) {
                config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
                if (config_setting_type(e) == CONFIG_TYPE_GROUP) {
                    wipe_secrets(e, k->child);
                }
            }
        }
    }
}

int conf_load(const char *path, struct conf **out, FILE *err)
{
    struct conf_loader ld = {.path = path, .err = err};
    struct conf *cfg = NULL;
    char *dir = NULL;
    const char *slash;
    FILE *f;
    int rc = ERR_CONFIG;

    *out = NULL;
    config_init(&ld.lc);
    if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
        (cfg->path = strdup(path)) == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    scope_defaults(&ld, SCOPE_ROOT, cfg);
    if (ld.nomem) {
        rc = ERR_NOMEM;
        goto out;
    }
    /* libconfig says only "file I/O error"; say why. */
    if ((f = fopen(path, "r")) == NULL) {
        conf_err(&ld, NULL, "cannot read: %s", strerror(errno));
        goto out;
    }
    fclose(f);
    /* @include paths are relative to the including file's directory */
    slash = strrchr(path, '/');
    if (slash == path) {
        dir = strdup("/");
    } else if (slash != NULL) {
        dir = strndup(path, (size_t)(slash - path));
    } else {
        dir = strdup(".");
    }
    if (dir == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    config_set_include_dir(&ld.lc, dir);
    ld.incdir = dir;
    if (config_read_file(&ld.lc, path) != CONFIG_TRUE) {
        char fbuf[PATH_MAX];
        const char *file =
            source_path(&ld, config_error_file(&ld.lc), fbuf, sizeof(fbuf));
        if (ld.err != NULL) {
            fprintf(ld.err, "%s:%d: %s\n", file, config_error_line(&ld.lc),
                    config_error_text(&ld.lc));
        }
        ld.nerrors++;
        goto out;
    }
    parse_scope(&ld, config_root_setting(&ld.lc), SCOPE_ROOT, cfg);
    if (!ld.nomem) {
        check_cross(&ld, cfg);
    }
    if (ld.nomem) {
        rc = ERR_NOMEM;
    } else if (ld.nerrors == 0) {
        *out = cfg;
        cfg = NULL; /* transferred */
        rc = 0;
    }
out:
    wipe_secrets(config_root_setting(&ld.lc), SCOPE_ROOT);
    config_destroy(&ld.lc);
    conf_free(cfg);
    free(dir);
    return rc;
}

int conf_peer_parse(const char *text,
                    const char *label,
                    bool has_cert,
                    struct conf_peer *out,
                    FILE *err)
{
    struct conf_loader ld = {.path = label, .err = err};
    int rc = ERR_CONFIG;

    memset(out, 0, sizeof(*out));
    config_init(&ld.lc);
    scope_defaults(&ld, SCOPE_PEER, out);
    if (!ld.nomem && config_read_string(&ld.lc, text) != CONFIG_TRUE) {
        if (ld.err != NULL) {
            fprintf(ld.err, "%s:%d: %s\n", label, config_error_line(&ld.lc),
                    config_error_text(&ld.lc));
        }
        ld.nerrors++;
    } else if (!ld.nomem) {
        parse_scope(&ld, config_root_setting(&ld.lc), SCOPE_PEER, out);
        if (!ld.nomem && ld.nerrors == 0) {
            check_peer(&ld, out, has_cert);
        }
    }
    if (ld.nomem) {
        rc = ERR_NOMEM;
    } else if (ld.nerrors == 0) {
        rc = 0;
    }
    wipe_secrets(config_root_setting(&ld.lc), SCOPE_PEER);
    config_destroy(&ld.lc);
    if (rc != 0) {
        scope_free(SCOPE_PEER, out);
    }
    return rc;
}

/* ---- lookups ---- */

const char *conf_secret_for(const struct conf *cfg, const char *domain)
{
    if (cfg->service_jid != NULL && strcmp(domain, cfg->service_jid) == 0) {
        return cfg->service_secret != NULL ? cfg->service_secret
                                           : cfg->upstream_secret;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        const char *peer_secret =
            p->secret != NULL ? p->secret : cfg->upstream_secret;
        if (p->domain != NULL && strcmp(domain, p->domain) == 0) {
            return peer_secret;
        }
        for (size_t j = 0; j < p->nservices; j++) {
            const struct conf_service *svc = &p->services[j];
            if (svc->domain != NULL && strcmp(domain, svc->domain) == 0) {
                return svc->secret != NULL ? svc->secret : peer_secret;
            }
        }
    }
    return NULL;
}

/* ---- printing the configuration ---- */

void conf_print_string(const char *s, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p, out);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\x%02x", *p);
        } else {
            fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* How print_scope writes secrets. */
enum print_secrets { PRINT_HIDE_SECRETS, PRINT_SECRETS };

static void print_scope(FILE *out,
                        enum conf_scope scope,
                        const void *base,
                        int ind,
                        enum print_secrets secrets);

static void print_key(FILE *out,
                      const struct conf_key *k,
                      const void *base,
                      int ind,
                      enum print_secrets secrets)
{
    switch (k->type) {
    case KT_STRING: {
        const char *v = *(char *const *)cfield(base, k->off);
        if (v == NULL) {
            fprintf(out, "%*s// %s: not set\n", ind, "", k->name);
        } else if ((k->flags & KF_SECRET) && secrets == PRINT_HIDE_SECRETS) {
            fprintf(out, "%*s%s = \"(set)\";\n", ind, "", k->name);
        } else {
            fprintf(out, "%*s%s = ", ind, "", k->name);
            conf_print_string(v, out);
            fputs(";\n", out);
        }
        break;
    }
    case KT_BOOL:
        fprintf(out, "%*s%s = %s;\n", ind, "", k->name,
                *(const bool *)cfield(base, k->off) ? "true" : "false");
        break;
    case KT_UINT:
    case KT_SIZE: {
        unsigned long long v = k->type == KT_UINT
                                   ? *(const unsigned *)cfield(base, k->off)
                                   : *(const size_t *)cfield(base, k->off);
        if (v == 0 && (k->flags & KF_ZERO_UNSET)) {
            fprintf(out, "%*s// %s: not set\n", ind, "", k->name);
        } else {
            fprintf(out, "%*s%s = %llu%s;\n", ind, "", k->name, v,
                    v > INT_MAX ? "L" : "");
        }
        break;
    }
    case KT_STRLIST: {
        char *const *v = *(char **const *)cfield(base, k->off);
        size_t n = *(const size_t *)cfield(base, k->off_n);
        fprintf(out, "%*s%s = [ ", ind, "", k->name);
        for (size_t i = 0; i < n; i++) {
            conf_print_string(v[i], out);
            fputs(i + 1 < n ? ", " : " ", out);
        }
        fputs("];\n", out);
        break;
    }
    case KT_AUTH:
        fprintf(out, "%*s%s = \"%s\";\n", ind, "", k->name,
                auth_names[*(const enum conf_auth *)cfield(base, k->off)]);
        break;
    case KT_LOGLEVEL:
        fprintf(out, "%*s%s = \"%s\";\n", ind, "", k->name,
                log_level_name(*(const enum log_level *)cfield(base, k->off)));
        break;
    case KT_GROUP:
        fprintf(out, "%*s%s = {\n", ind, "", k->name);
        print_scope(out, k->child, base, ind + 4, secrets);
        fprintf(out, "%*s};\n", ind, "");
        break;
    case KT_LIST: {
        const char *v = list_get(base, k);
        size_t n = *(const size_t *)cfield(base, k->off_n);
        if (n == 0) {
            fprintf(out, "%*s%s = ( );\n", ind, "", k->name);
            break;
        }
        fprintf(out, "%*s%s = (\n", ind, "", k->name);
        for (size_t i = 0; i < n; i++) {
            fprintf(out, "%*s{\n", ind + 4, "");
            print_scope(out, k->child, v + i * k->elem_size, ind + 8, secrets);
            fprintf(out, "%*s}%s\n", ind + 4, "", i + 1 < n ? "," : "");
        }
        fprintf(out, "%*s);\n", ind, "");
        break;
    }
    }
}

static void print_scope(FILE *out,
                        enum conf_scope scope,
                        const void *base,
                        int ind,
                        enum print_secrets secrets)
{
    for (size_t i = 0; i < NELEM(conf_keys); i++) {
        if (conf_keys[i].scope == scope) {
            print_key(out, &conf_keys[i], base, ind, secrets);
        }
    }
}

void conf_peer_print(const struct conf_peer *p, FILE *out)
{
    print_scope(out, SCOPE_PEER, p, 0, PRINT_SECRETS);
}

void conf_print(const struct conf *cfg, FILE *out)
{
    fputs("# fedgate effective configuration: defaults included, secrets "
          "shown as \"(set)\"\n# read from ",
          out);
    for (const unsigned char *p = (const unsigned char *)cfg->path; *p != '\0';
         p++) {
        fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, out);
    }
    fputc('\n', out);
    print_scope(out, SCOPE_ROOT, cfg, 0, PRINT_HIDE_SECRETS);
}

/* ---- printing the home-server snippet ---- */

/* A Lua string literal; bytes are bytes to Lua. */
static void put_lua_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p, out);
        } else if (*p == '\n') {
            fputs("\\n", out);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\%03u", *p);
        } else {
            fputc(*p, out);
        }
    }
    fputc('"', out);
}

/* A YAML double-quoted scalar. */
static void put_yaml_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p, out);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(out, "\\x%02x", *p);
        } else {
            fputc(*p, out);
        }
    }
    fputc('"', out);
}

typedef void conf_component_fn(FILE *out,
                               const char *domain,
                               const char *secret,
                               const char *what);

/* Calls fn for every upstream stream: service_jid, peers, services. */
static void
each_component(const struct conf *cfg, FILE *out, conf_component_fn *fn)
{
    fn(out, cfg->service_jid, conf_secret_for(cfg, cfg->service_jid),
       "fedgate's own service JID");
    for (size_t i = 0; i < cfg->npeers; i++) {
        const struct conf_peer *p = &cfg->peers[i];
        fn(out, p->domain, conf_secret_for(cfg, p->domain), "peer");
        for (size_t j = 0; j < p->nservices; j++) {
            fn(out, p->services[j].domain,
               conf_secret_for(cfg, p->services[j].domain), "peer service");
        }
    }
}

static void prosody_component(FILE *out,
                              const char *domain,
                              const char *secret,
                              const char *what)
{
    fputs("\nComponent ", out);
    put_lua_string(out, domain);
    fprintf(out, " -- %s\n\tcomponent_secret = ", what);
    put_lua_string(out, secret != NULL ? secret : "");
    fputc('\n', out);
}

static void ejabberd_host(FILE *out,
                          const char *domain,
                          const char *secret,
                          const char *what)
{
    fprintf(out, "      # %s\n      ", what);
    put_yaml_string(out, domain);
    fputs(":\n        password: ", out);
    put_yaml_string(out, secret != NULL ? secret : "");
    fputc('\n', out);
}

static void print_prosody(const struct conf *cfg, FILE *out)
{
    fputs("-- Prosody configuration for fedgate (service JID ", out);
    put_lua_string(out, cfg->service_jid);
    fputs(").\n"
          "-- fedgate is the domain's only border: Prosody's own s2s stays "
          "off.\n"
          "-- These settings belong in the global section, before the "
          "first VirtualHost;\n"
          "-- merge them with any modules_disabled and component_* lines "
          "already there.\n"
          "modules_disabled = { \"s2s\" }\n"
          "component_interfaces = { ",
          out);
    put_lua_string(out, cfg->upstream_host);
    fprintf(out, " }\ncomponent_ports = { %u }\n", cfg->upstream_port);
    fputs("\n-- Served domains (VirtualHost sections, kept as they are):", out);
    for (size_t i = 0; i < cfg->ndomains; i++) {
        fputs(i == 0 ? " " : ", ", out);
        put_lua_string(out, cfg->domains[i]);
    }
    fputs("\n-- One Component per fedgate stream; these go at the end of "
          "the file.\n",
          out);
    each_component(cfg, out, prosody_component);
}

static void print_ejabberd(const struct conf *cfg, FILE *out)
{
    fputs("# ejabberd configuration for fedgate (service JID ", out);
    put_yaml_string(out, cfg->service_jid);
    fputs(").\n"
          "# fedgate is the domain's only border: ejabberd's own s2s stays "
          "off. Keep no\n"
          "# ejabberd_s2s_in listener, and deny every server in s2s_access "
          "(merge the rule\n"
          "# into an existing access_rules section).\n"
          "s2s_access: fedgate_no_s2s\n"
          "access_rules:\n"
          "  fedgate_no_s2s:\n"
          "    deny: all\n"
          "# Served domains (in hosts:, kept as they are):",
          out);
    for (size_t i = 0; i < cfg->ndomains; i++) {
        fputs(i == 0 ? " " : ", ", out);
        put_yaml_string(out, cfg->domains[i]);
    }
    fputs("\n# Add this entry to the listen: section. global_routes: false "
          "keeps each domain\n"
          "# on its own stream (the default spreads every host over every "
          "stream).\n"
          "listen:\n"
          "  -\n"
          "    module: ejabberd_service\n"
          "    ip: ",
          out);
    put_yaml_string(out, cfg->upstream_host);
    fprintf(out,
            "\n    port: %u\n"
            "    check_from: true\n"
            "    global_routes: false\n"
            "    hosts:\n",
            cfg->upstream_port);
    each_component(cfg, out, ejabberd_host);
}

int conf_print_server(const struct conf *cfg, const char *kind, FILE *out)
{
    if (kind == NULL) {
        return ERR_INVAL;
    }
    if (strcmp(kind, "prosody") == 0) {
        print_prosody(cfg, out);
        return 0;
    }
    if (strcmp(kind, "ejabberd") == 0) {
        print_ejabberd(cfg, out);
        return 0;
    }
    return ERR_INVAL;
}

/* ---- printing the documentation ---- */

/* Text for groff: backslashes escaped, no line starting with a control
 * character. */
static void put_roff(FILE *out, const char *s)
{
    bool bol = true;
    for (const char *p = s; *p != '\0'; p++) {
        if (bol && (*p == '.' || *p == '\'')) {
            fputs("\\&", out);
        }
        bol = *p == '\n';
        if (*p == '\\') {
            fputs("\\e", out);
        } else if (*p == '-') {
            fputs("\\-", out);
        } else {
            fputc(*p, out);
        }
    }
}

static void doc_key(FILE *out, const struct conf_key *k)
{
    char name[128];

    fputs(".TP\n.B ", out);
    put_roff(out, key_fullname(k, name, sizeof(name)));
    fputc('\n', out);
    switch (k->type) {
    case KT_STRING:
        fputs(k->flags & KF_SECRET ? "Secret string" : "String", out);
        if (k->check == check_domain || k->check == check_service_jid) {
            fputs(" (a domain, normalised)", out);
        } else if (k->check == check_file) {
            fputs(" (a readable file)", out);
        } else if (k->check == check_dir) {
            fputs(" (a readable directory)", out);
        } else if (k->check == check_ip) {
            fputs(" (an IPv4 or IPv6 address)", out);
        } else if (k->check == check_host) {
            fputs(" (a host name or IP address)", out);
        }
        break;
    case KT_BOOL:
        fputs("Boolean", out);
        break;
    case KT_UINT:
    case KT_SIZE:
        fprintf(out, "Integer, %lld to %lld", k->min, k->max);
        break;
    case KT_STRLIST:
        if (k->check == check_domain) {
            fputs("List of domains (normalised)", out);
        } else if (k->check == check_listen) {
            fputs("List of addresses \"ip:port\" or \"[ipv6]:port\"", out);
        } else if (k->check == check_forwarder) {
            fputs("List of addresses \"ip\" or \"ip@port\"", out);
        } else {
            fputs("List of strings", out);
        }
        if (k->min > 0) {
            fprintf(out, ", at least %lld", k->min);
        }
        break;
    case KT_AUTH:
        fputs("One of \"any\", \"certificate\", \"dialback\"", out);
        break;
    case KT_LOGLEVEL:
        fputs("One of \"error\", \"warn\", \"info\", \"debug\"", out);
        break;
    case KT_GROUP:
    case KT_LIST:
        break;
    }
    fputs("; ", out);
    if (k->flags & KF_REQUIRED) {
        fputs("required", out);
    } else if (k->type == KT_STRING || k->type == KT_STRLIST) {
        if (k->def == NULL) {
            fputs(k->type == KT_STRLIST ? "default: empty" : "default: not set",
                  out);
        } else {
            fputs("default: ", out);
            fputs(k->type == KT_STRLIST ? "[ \"" : "\"", out);
            put_roff(out, k->def);
            fputs(k->type == KT_STRLIST ? "\" ]" : "\"", out);
        }
    } else if (k->flags & KF_ZERO_UNSET) {
        fputs("default: not set", out);
    } else if (k->type == KT_BOOL) {
        fputs(k->def_num ? "default: true" : "default: false", out);
    } else if (k->type == KT_AUTH) {
        fprintf(out, "default: \"%s\"", auth_names[k->def_num]);
    } else if (k->type == KT_LOGLEVEL) {
        fprintf(out, "default: \"%s\"",
                log_level_name((enum log_level)k->def_num));
    } else {
        fprintf(out, "default: %lld", k->def_num);
    }
    if (k->flags & KF_SECRET) {
        fputs("; printed as \"(set)\"", out);
    }
    fputs(".\n", out);
    put_roff(out, k->doc);
    fputc('\n', out);
}

void conf_print_doc(FILE *out)
{
    for (int scope = 0; scope < SCOPE_COUNT; scope++) {
        fputs(".SS ", out);
        put_roff(out, scope_infos[scope].title);
        fputc('\n', out);
        for (size_t i = 0; i < NELEM(conf_keys); i++) {
            const struct conf_key *k = &conf_keys[i];
            if (k->scope == (enum conf_scope)scope && k->type != KT_GROUP &&
                k->type != KT_LIST) {
                doc_key(out, k);
            }
        }
    }
}
