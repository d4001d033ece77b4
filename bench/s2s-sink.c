/*
 * s2s-sink.c: the receiving server for the reverse relay benchmark
 * (component -> fedgate -> s2s). It plays b.test's s2s listener, where
 * fedgate's outbound route a.test -> b.test connects, and counts what
 * arrives the way comp-sink does (benchutil.h accounting).
 *
 * Per connection from fedgate:
 *   header (to = --domain):  our header with a fresh id, features
 *                            <starttls><required/></starttls>
 *   <starttls/>:             <proceed/>, TLS as server (certificate --cert,
 *                            fedgate's client certificate checked against
 *                            --ca and the name --peer)
 *   header after TLS:        features: SASL EXTERNAL when the certificate
 *                            is valid for the peer, else none (fedgate
 *                            then gives up: the bench wants SASL)
 *   <auth EXTERNAL/>:        <success/>, stream restart, empty features:
 *                            authenticated ("authenticated PEER" on stderr)
 *   <message/>:              accounted by its id (s2s-load / comp-sink
 *                            format); the arrival clock is taken per read
 *   </stream:stream>:        ours, then close
 * When --stanzas messages have arrived (or --idle-ms after the last one)
 * it prints the report (key=value lines ending "done=1") with fedgate's
 * CPU ticks (--cpu-pid) sampled at that moment, then serves until SIGTERM.
 * --publish FILE: its running count, for the sender's window.
 */
#include "config.h"

#include "benchutil.h"

#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SS_READ_CHUNK 65536
#define SS_MAX_CONNS  16
#define SS_MAX_EVENTS 32
#define SS_OUT_MAX    65536
#define SS_LISTEN_TAG UINT64_MAX

enum pc_state { PC_FREE, PC_STREAM, PC_TLS, PC_READY };

enum pc_el { EL_OTHER, EL_STARTTLS, EL_AUTH };

struct s2s_sink;

struct pconn {
    struct s2s_sink *k;
    int fd;
    SSL *ssl;
    XML_Parser xp;
    enum pc_state state;
    unsigned depth;
    enum pc_el cur;
    bool tls_on;
    bool cert_ok;
    bool sasl_done;
    bool do_tls;     /* after the parse: start TLS */
    bool do_restart; /* after the parse: new stream */
    bool closing;
    bool failed;
    char why[160];
    char id[40];
    char from[256];
    unsigned long stanzas;
    uint32_t epoll;
    struct bench_buf out;
};

struct s2s_sink {
    const char *domain;
    const char *peer;
    const char *lat_dump;
    uint64_t idle_ms;
    pid_t cpu_pid;
    SSL_CTX *ctx;
    int lfd;
    int ep;
    struct pconn conns[SS_MAX_CONNS];
    struct bench_acct acct;
    uint64_t *publish; /* --publish: our count, for the sender's window */
    uint64_t now;
    bool reported;
};

static volatile sig_atomic_t ss_stop;

static void ss_on_signal(int signo)
{
    (void)signo;
    ss_stop = 1;
}

static void pc_free(struct pconn *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
        c->fd = -1;
    }
    if (c->xp != NULL) {
        XML_ParserFree(c->xp);
        c->xp = NULL;
    }
    bench_buf_free(&c->out);
    c->state = PC_FREE;
    c->epoll = 0;
}

/* Inside a parser callback: record, stop; pc_read acts on it. */
static void pc_bad(struct pconn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void pc_bad(struct pconn *c, const char *fmt, ...)
{
    if (c->failed) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    c->failed = true;
    XML_StopParser(c->xp, XML_FALSE);
}

static void pc_put(struct pconn *c, const char *s)
{
    if (bench_buf_append_str(&c->out, s) != 0) {
        pc_bad(c, "output buffer full");
    }
}

static void pc_watch(struct pconn *c, uint32_t events)
{
    if (c->fd < 0 || c->epoll == events) {
        return;
    }
    struct epoll_event ev = {.events = events,
                             .data.u64 = (uint64_t)(c - c->k->conns)};
    if (epoll_ctl(c->k->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        c->epoll = events;
    }
}

static void XMLCALL on_start(void *ud,
                             const XML_Char *name,
                             const XML_Char **atts)
{
    struct pconn *c = ud;
    struct s2s_sink *k = c->k;
    if (c->failed) {
        return;
    }
    if (c->depth == 0) {
        const char *to = bench_attr(atts, "to");
        const char *from = bench_attr(atts, "from");
        if (!bench_name_is(name, BENCH_NS_STREAM, "stream") || to == NULL ||
            strcmp(to, k->domain) != 0) {
            pc_bad(c, "unexpected stream header (to %s)", to ? to : "-");
            return;
        }
        snprintf(c->from, sizeof(c->from), "%s", from != NULL ? from : "");
        unsigned char rnd[12];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            memset(rnd, 0x3c, sizeof(rnd));
        }
        bench_hex(rnd, sizeof(rnd), c->id);
        pc_put(c, "<?xml version='1.0'?><stream:stream xmlns='" BENCH_NS_SERVER
                  "' xmlns:stream='" BENCH_NS_STREAM
                  "' xmlns:db='" BENCH_NS_DIALBACK "' version='1.0' id='");
        pc_put(c, c->id);
        pc_put(c, "' from='");
        (void)bench_buf_append_escaped(&c->out, k->domain);
        pc_put(c, "' to='");
        (void)bench_buf_append_escaped(&c->out, c->from);
        pc_put(c, "'>");
        if (!c->tls_on) {
            pc_put(c, "<stream:features><starttls xmlns='" BENCH_NS_TLS
                      "'><required/></starttls></stream:features>");
        } else if (c->sasl_done) {
            pc_put(c, "<stream:features/>");
            c->state = PC_READY;
            fprintf(stderr, "s2s-sink: authenticated %s\n", c->from);
        } else if (c->cert_ok) {
            pc_put(c, "<stream:features><mechanisms xmlns='" BENCH_NS_SASL
                      "'><mechanism>EXTERNAL</mechanism></mechanisms>"
                      "</stream:features>");
        } else {
            fprintf(stderr,
                    "s2s-sink: %s's certificate is not valid for it; "
                    "offering nothing\n",
                    c->from);
            pc_put(c, "<stream:features/>");
        }
    } else if (c->depth == 1) {
        c->cur = EL_OTHER;
        if (bench_name_is(name, BENCH_NS_TLS, "starttls")) {
            c->cur = EL_STARTTLS;
        } else if (bench_name_is(name, BENCH_NS_SASL, "auth")) {
            const char *mech = bench_attr(atts, "mechanism");
            c->cur = EL_AUTH;
            if (mech == NULL || strcmp(mech, "EXTERNAL") != 0) {
                pc_bad(c, "SASL mechanism %s", mech ? mech : "-");
            }
        } else if (bench_name_is(name, BENCH_NS_SERVER, "message")) {
            const char *type = bench_attr(atts, "type");
            c->stanzas++;
            if (type != NULL && strcmp(type, "error") == 0) {
                k->acct.errors++;
            } else if (c->state == PC_READY) {
                bench_acct_message(&k->acct, bench_attr(atts, "id"), k->now);
            }
        }
    }
    c->depth++;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct pconn *c = ud;
    (void)name;
    if (c->failed || c->depth == 0) {
        return;
    }
    c->depth--;
    if (c->depth == 0) {
        pc_put(c, "</stream:stream>");
        c->closing = true;
        return;
    }
    if (c->depth != 1) {
        return;
    }
    if (c->cur == EL_STARTTLS && !c->tls_on) {
        pc_put(c, "<proceed xmlns='" BENCH_NS_TLS "'/>");
        c->do_tls = true;
        XML_StopParser(c->xp, XML_FALSE);
    } else if (c->cur == EL_AUTH) {
        if (!c->cert_ok) {
            pc_put(c, "<failure xmlns='" BENCH_NS_SASL
                      "'><not-authorized/></failure>");
            return;
        }
        pc_put(c, "<success xmlns='" BENCH_NS_SASL "'/>");
        c->sasl_done = true;
        c->do_restart = true;
        XML_StopParser(c->xp, XML_FALSE);
    }
    c->cur = EL_OTHER;
}

static int pc_parser_reset(struct pconn *c)
{
    if (c->xp == NULL) {
        c->xp = XML_ParserCreateNS("UTF-8", BENCH_NS_SEP);
    } else if (!XML_ParserReset(c->xp, "UTF-8")) {
        return -1;
    }
    if (c->xp == NULL) {
        return -1;
    }
    XML_SetUserData(c->xp, c);
    XML_SetElementHandler(c->xp, on_start, on_end);
    c->depth = 0;
    c->cur = EL_OTHER;
    return 0;
}

/* Writes pending output; false if the connection was dropped. */
static bool pc_flush(struct pconn *c)
{
    bool want_out = false;
    while (bench_buf_pending(&c->out) > 0) {
        const char *p = c->out.data + c->out.off;
        size_t len = bench_buf_pending(&c->out);
        ssize_t n;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, p, (int)len);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    want_out = e == SSL_ERROR_WANT_WRITE;
                    break;
                }
                fprintf(stderr, "s2s-sink: TLS write failed\n");
                pc_free(c);
                return false;
            }
            n = r;
        } else {
            n = write(c->fd, p, len);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    want_out = true;
                    break;
                }
                pc_free(c);
                return false;
            }
        }
        bench_buf_consume(&c->out, (size_t)n);
    }
    if (c->closing && bench_buf_pending(&c->out) == 0) {
        fprintf(stderr, "s2s-sink: stream from %s closed (%lu stanzas)\n",
                c->from, c->stanzas);
        pc_free(c);
        return false;
    }
    pc_watch(c, want_out || bench_buf_pending(&c->out) > 0 ? EPOLLIN | EPOLLOUT
                                                           : EPOLLIN);
    return true;
}

static void pc_tls_step(struct pconn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            pc_watch(c,
                     e == SSL_ERROR_WANT_WRITE ? EPOLLIN | EPOLLOUT : EPOLLIN);
            return;
        }
        char detail[160] = "";
        ERR_error_string_n(ERR_peek_last_error(), detail, sizeof(detail));
        fprintf(stderr, "s2s-sink: TLS handshake failed: %s\n", detail);
        pc_free(c);
        return;
    }
    X509 *cert = SSL_get1_peer_certificate(c->ssl);
    c->cert_ok = cert != NULL && SSL_get_verify_result(c->ssl) == X509_V_OK &&
                 X509_check_host(cert, c->k->peer, 0, 0, NULL) == 1;
    X509_free(cert);
    c->tls_on = true;
    c->state = PC_STREAM;
    if (pc_parser_reset(c) != 0) {
        pc_free(c);
        return;
    }
    pc_watch(c, EPOLLIN);
}

static void pc_read(struct pconn *c)
{
    static char data[SS_READ_CHUNK];
    for (int round = 0; round < 16 && c->fd >= 0; round++) {
        ssize_t n;
        if (c->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, data, sizeof(data));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    break;
                }
                fprintf(stderr, "s2s-sink: stream from %s: %s\n", c->from,
                        e == SSL_ERROR_ZERO_RETURN ? "TLS closed"
                                                   : "TLS read failed");
                pc_free(c);
                return;
            }
            n = r;
        } else {
            n = read(c->fd, data, sizeof(data));
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    break;
                }
                pc_free(c);
                return;
            }
        }
        if (n == 0) {
            fprintf(stderr, "s2s-sink: %s closed the connection\n", c->from);
            pc_free(c);
            return;
        }
        c->k->now = bench_now_ns();
        enum XML_Status st = XML_Parse(c->xp, data, (int)n, XML_FALSE);
        if (c->failed) {
            fprintf(stderr, "s2s-sink: %s\n", c->why);
            pc_free(c);
            return;
        }
        if (c->do_tls) {
            /* <proceed/> leaves in plaintext before the handshake. */
            c->do_tls = false;
            if (!pc_flush(c)) {
                return;
            }
            c->ssl = SSL_new(c->k->ctx);
            if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
                pc_free(c);
                return;
            }
            SSL_set_accept_state(c->ssl);
            c->state = PC_TLS;
            pc_tls_step(c);
            return;
        }
        if (c->do_restart) {
            c->do_restart = false;
            if (pc_parser_reset(c) != 0) {
                pc_free(c);
                return;
            }
            break;
        }
        if (st != XML_STATUS_OK) {
            fprintf(stderr, "s2s-sink: bad XML from %s: %s\n", c->from,
                    XML_ErrorString(XML_GetErrorCode(c->xp)));
            pc_free(c);
            return;
        }
        bench_progress_publish(c->k->publish, c->k->acct.received);
        if (c->closing || (size_t)n < sizeof(data)) {
            if (c->ssl == NULL || SSL_pending(c->ssl) == 0) {
                break;
            }
        }
    }
    if (c->fd >= 0) {
        (void)pc_flush(c);
    }
}

static void ss_accept(struct s2s_sink *k)
{
    int fd = accept4(k->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    struct pconn *c = NULL;
    for (size_t i = 0; i < SS_MAX_CONNS; i++) {
        if (k->conns[i].state == PC_FREE) {
            c = &k->conns[i];
            break;
        }
    }
    if (c == NULL) {
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->k = k;
    c->fd = fd;
    c->out.max = SS_OUT_MAX;
    c->state = PC_STREAM;
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = (uint64_t)(c - k->conns)};
    if (pc_parser_reset(c) != 0 ||
        epoll_ctl(k->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        pc_free(c);
        return;
    }
    c->epoll = EPOLLIN;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The peer's certificate is judged after the handshake (pc_tls_step). */
static int ss_verify_any(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static SSL_CTX *ss_tls_ctx(const char *cert, const char *key, const char *ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, ss_verify_any);
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 || names == NULL) {
        fprintf(stderr, "s2s-sink: cannot load %s, %s or %s\n", cert, key, ca);
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_client_CA_list(ctx, names); /* transferred */
    return ctx;
}

static void usage(void)
{
    fprintf(stderr, "usage: s2s-sink --listen IP:PORT --cert FILE --key FILE "
                    "--ca FILE\n"
                    "  [--domain b.test] [--peer a.test] [--stanzas N] "
                    "[--warmup N]\n"
                    "  [--idle-ms MS] [--cpu-pid PID] [--lat-dump FILE] "
                    "[--publish FILE]\n");
}

int main(int argc, char **argv)
{
    static struct s2s_sink k;
    struct sockaddr_in addr;
    const char *cert = NULL, *key = NULL, *ca = NULL;
    uint64_t stanzas = 0, warmup = 0, v;
    bool have_addr = false;
    int rc = 1;
    k.domain = "b.test";
    k.peer = "a.test";
    k.idle_ms = 5000;
    k.lfd = k.ep = -1;
    for (size_t i = 0; i < SS_MAX_CONNS; i++) {
        k.conns[i].fd = -1;
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *val = argv[i + 1];
        if (strcmp(a, "--listen") == 0) {
            have_addr = bench_parse_addr(val, &addr) == 0;
        } else if (strcmp(a, "--cert") == 0) {
            cert = val;
        } else if (strcmp(a, "--key") == 0) {
            key = val;
        } else if (strcmp(a, "--ca") == 0) {
            ca = val;
        } else if (strcmp(a, "--domain") == 0) {
            k.domain = val;
        } else if (strcmp(a, "--peer") == 0) {
            k.peer = val;
        } else if (strcmp(a, "--lat-dump") == 0) {
            k.lat_dump = val;
        } else if (strcmp(a, "--publish") == 0) {
            k.publish = bench_progress_map(val, true);
            if (k.publish == NULL) {
                fprintf(stderr, "s2s-sink: cannot map %s\n", val);
                return 2;
            }
        } else if (bench_parse_u64(val, 0, UINT32_MAX * (uint64_t)16, &v) !=
                   0) {
            fprintf(stderr, "s2s-sink: bad value for %s: %s\n", a, val);
            return 2;
        } else if (strcmp(a, "--stanzas") == 0) {
            stanzas = v;
        } else if (strcmp(a, "--warmup") == 0) {
            warmup = v;
        } else if (strcmp(a, "--idle-ms") == 0) {
            k.idle_ms = v;
        } else if (strcmp(a, "--cpu-pid") == 0 && v <= INT32_MAX) {
            k.cpu_pid = (pid_t)v;
        } else {
            fprintf(stderr, "s2s-sink: unknown option %s\n", a);
            return 2;
        }
    }
    if (argc % 2 != 1 || !have_addr || cert == NULL || key == NULL ||
        ca == NULL) {
        usage();
        return 2;
    }
    struct sigaction sa = {.sa_handler = ss_on_signal};
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    k.ctx = ss_tls_ctx(cert, key, ca);
    if (k.ctx == NULL ||
        bench_acct_init(&k.acct, 1, stanzas, warmup, k.lat_dump != NULL) != 0) {
        goto out;
    }
    if (bench_listen(&addr, 16, SS_LISTEN_TAG, "s2s-sink", &k.lfd, &k.ep) !=
        0) {
        goto out;
    }
    fprintf(stderr, "s2s-sink: listening\n");
    struct epoll_event evs[SS_MAX_EVENTS];
    while (!ss_stop) {
        int n = epoll_wait(k.ep, evs, SS_MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "s2s-sink: epoll_wait: %s\n", strerror(errno));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == SS_LISTEN_TAG) {
                ss_accept(&k);
                continue;
            }
            struct pconn *c = &k.conns[evs[i].data.u64];
            if (c->state == PC_TLS) {
                pc_tls_step(c);
            } else if (c->state != PC_FREE) {
                pc_read(c);
            }
        }
        if (k.reported || k.acct.expected == 0) {
            continue;
        }
        uint64_t now = bench_now_ns();
        if (k.acct.received == k.acct.expected ||
            (k.acct.received > 0 &&
             now - k.acct.last_ns > k.idle_ms * 1000000u)) {
            bench_acct_report(&k.acct, "s2s-sink", k.cpu_pid, k.lat_dump);
            k.reported = true;
        }
    }
    rc = 0;
out:
    for (size_t i = 0; i < SS_MAX_CONNS; i++) {
        pc_free(&k.conns[i]);
    }
    if (k.lfd >= 0) {
        close(k.lfd);
    }
    if (k.ep >= 0) {
        close(k.ep);
    }
    bench_acct_free(&k.acct);
    bench_progress_unmap(k.publish);
    SSL_CTX_free(k.ctx);
    return rc;
}
