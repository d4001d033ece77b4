/*
 * s2s-load.c: the relay benchmark's load generator, a real s2s peer.
 *
 * It plays the originating server (by default b.test) towards fedgate's
 * s2s listener (receiving server a.test), over as many sessions as asked,
 * each negotiated the way a peer server does it:
 *   connect (from one of several 127.x source addresses)
 *   -> stream header -> <starttls/> -> TLS (or XEP-0368 direct TLS, ALPN
 *      xmpp-server), fedgate's certificate verified against the test CA
 *   -> stream restart -> SASL EXTERNAL with a client certificate, restart
 *      (--auth sasl), or XEP-0220 <db:result> with the XEP-0185 key
 *      HMAC-SHA256(hex(SHA-256(secret)), receiving ' ' originating ' ' id)
 *      made from the authoritative server's secret (--auth dialback;
 *      fedgate then asks that server, a second fedgate, with db:verify)
 *   -> authenticated.
 *
 * Modes:
 *   blast      every session sends --stanzas chat messages as fast as
 *              fedgate reads them, in writes of --batch bytes, or at most
 *              --window ahead of the count the sink publishes in
 *              --window-file (benchutil.h)
 *   rate       --rate messages per second in total for --duration ms
 *   idle       open --sessions sessions, print "ready N", hold them
 *   handshake  keep --concurrency handshakes in flight for --duration ms,
 *              closing each session once authenticated; count them
 *
 * Every message carries id='SESSION-SEQ-SENDNS' (SENDNS: CLOCK_MONOTONIC
 * nanoseconds just before the write), so the component-side sink can
 * account for every message and measure latency. Results are printed on
 * stdout as key=value lines; progress and errors go to stderr. blast,
 * rate and idle hold their sessions open after the run until SIGTERM, so
 * the measurement never includes fedgate tearing streams down.
 */
#include "config.h"

#include "benchutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define GEN_READ_CHUNK   16384
#define GEN_OUT_MAX      (4u * 1024u * 1024u)
#define GEN_MAX_EVENTS   256
#define GEN_DUMP_MAX     (16u * 1024u * 1024u)
#define GEN_STANZA_MAX   512
#define GEN_ERRORS_SHOWN 5
/* A tag for the timerfd in epoll data (sessions use their index). */
#define GEN_TIMER_TAG UINT64_MAX

enum gen_mode { MODE_BLAST, MODE_RATE, MODE_IDLE, MODE_HANDSHAKE };
enum gen_auth { AUTH_SASL, AUTH_DIALBACK };

struct gen_opts {
    struct sockaddr_in target;
    bool direct_tls;
    enum gen_auth auth;
    const char *cert;
    const char *key;
    const char *ca;
    const char *from; /* originating domain */
    const char *to;   /* receiving domain */
    const char *secret;
    struct in_addr src_base;
    unsigned src_count;
    enum gen_mode mode;
    unsigned sessions;
    uint64_t stanzas;
    uint64_t rate;
    uint64_t duration_ms;
    unsigned concurrency;
    pid_t cpu_pid;
    const char *dump;
    uint64_t timeout_ms;
    size_t batch;
    uint64_t window;         /* blast: most messages ahead of the sink */
    const char *window_file; /* the sink's published count */
};

enum sess_state {
    SS_FREE,
    SS_CONNECTING,
    SS_TLS,
    SS_FEATURES,
    SS_STARTTLS,
    SS_SASL,
    SS_DIALBACK,
    SS_READY,
};

/* The depth-1 element being parsed. */
enum el_kind {
    EL_OTHER,
    EL_FEATURES,
    EL_PROCEED,
    EL_TLS_FAILURE,
    EL_SUCCESS,
    EL_SASL_FAILURE,
    EL_DB_RESULT,
    EL_STREAM_ERROR,
    EL_MESSAGE,
};

struct gen;

struct sess {
    struct gen *g;
    unsigned index;
    int fd;
    SSL *ssl;
    XML_Parser xp;
    enum sess_state state;
    unsigned depth;
    bool tls_on;
    bool sasl_done;
    char stream_id[128];
    enum el_kind cur;
    bool in_mechanism;
    char mech[32];
    size_t mech_len;
    bool f_starttls;
    bool f_external;
    bool f_dialback;
    bool db_valid;
    bool msg_error;
    char condition[64];
    bool do_tls;    /* <proceed/> seen: start TLS after the parse */
    bool do_reset;  /* <success/> seen: restart after the parse */
    bool do_ready;  /* authenticated: act on it after the parse */
    bool failed;    /* a handler found a fatal problem */
    char why[192];  /* and what it was */
    bool want_out;  /* TLS asked for writability */
    uint32_t epoll; /* interest registered */
    struct bench_buf out;
    uint64_t seq;
    uint64_t t_connect;
};

struct gen {
    struct gen_opts o;
    SSL_CTX *ctx;
    int ep;
    int tfd;
    struct sess *sess;
    unsigned nsess;    /* slots */
    unsigned started;  /* sessions started so far (idle/blast/rate) */
    unsigned pending;  /* sessions negotiating */
    unsigned ready;    /* sessions authenticated and open */
    bool running;      /* blast/rate: sending */
    bool finished;     /* blast/rate: all sent */
    uint64_t t_start;  /* sending began */
    uint64_t t_end;    /* handshake mode: stop starting new sessions */
    uint64_t deadline; /* overall timeout */
    uint64_t sent;     /* stanzas written in total */
    uint64_t bounced;  /* message errors received */
    uint64_t handshakes;
    uint64_t handshakes_in_window; /* completed before t_end */
    uint64_t failures;
    uint64_t *hs_ns; /* handshake durations (handshake mode) */
    size_t nhs;
    size_t hs_cap;
    FILE *dump;
    size_t dumped;
    unsigned next_src;
    uint64_t *window_ctr; /* the sink's count (--window-file) */
};

static volatile sig_atomic_t gen_stop;

static void gen_on_signal(int signo)
{
    (void)signo;
    gen_stop = 1;
}

/* ---- small helpers ------------------------------------------------------ */

static void sess_fail(struct sess *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Inside a parser callback: the session may not be freed there, so the
 * failure is recorded, the parse stopped and sess_read acts on it. */
static void sess_bad(struct sess *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sess_close(struct sess *s);
static void sess_after_ready(struct sess *s);
static int sess_start(struct gen *g, struct sess *s);

static void sess_bad(struct sess *s, const char *fmt, ...)
{
    if (s->failed) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
    s->failed = true;
    XML_StopParser(s->xp, XML_FALSE);
}

/* XEP-0185: hex(HMAC-SHA256(hex(SHA-256(secret)), recv ' ' orig ' ' id)). */
static int dialback_key(const char *secret,
                        const char *receiving,
                        const char *originating,
                        const char *id,
                        char out[65])
{
    unsigned char digest[32];
    char hexkey[65];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char text[600];
    int n =
        snprintf(text, sizeof(text), "%s %s %s", receiving, originating, id);
    if (n < 0 || (size_t)n >= sizeof(text) ||
        EVP_Digest(secret, strlen(secret), digest, NULL, EVP_sha256(), NULL) !=
            1) {
        return -1;
    }
    bench_hex(digest, sizeof(digest), hexkey);
    if (HMAC(EVP_sha256(), hexkey, 64, (const unsigned char *)text, (size_t)n,
             mac, &maclen) == NULL ||
        maclen != 32) {
        return -1;
    }
    bench_hex(mac, maclen, out);
    return 0;
}

static void gen_watch(struct sess *s, uint32_t events)
{
    if (s->fd < 0 || s->epoll == events) {
        return;
    }
    struct epoll_event ev = {.events = events, .data.u64 = s->index};
    int op = s->epoll == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(s->g->ep, op, s->fd, &ev) != 0) {
        sess_fail(s, "epoll_ctl: %s", strerror(errno));
        return;
    }
    s->epoll = events;
}

/* ---- output ---------------------------------------------------------------
 */

/* How many more messages the window allows (all sessions together). */
static uint64_t gen_room(const struct gen *g)
{
    if (g->o.window == 0) {
        return UINT64_MAX;
    }
    uint64_t done = bench_progress_read(g->window_ctr);
    uint64_t ahead = g->sent > done ? g->sent - done : 0;
    return ahead < g->o.window ? g->o.window - ahead : 0;
}

static bool gen_blasting(const struct sess *s)
{
    const struct gen *g = s->g;
    return g->o.mode == MODE_BLAST && g->running && s->state == SS_READY &&
           s->seq < g->o.stanzas;
}

/* Appends up to max stanzas stamped with now; returns how many. */
static uint64_t sess_fill(struct sess *s, uint64_t max, size_t bytes)
{
    char st[GEN_STANZA_MAX];
    uint64_t now = bench_now_ns();
    uint64_t n = 0;
    size_t before = bench_buf_pending(&s->out);
    while (n < max && bench_buf_pending(&s->out) - before < bytes) {
        size_t len = bench_message(st, sizeof(st), s->g->o.from, s->g->o.to,
                                   s->index, s->seq, now);
        if (len == 0 || bench_buf_append(&s->out, st, len) != 0) {
            break;
        }
        s->seq++;
        n++;
    }
    struct gen *g = s->g;
    g->sent += n;
    if (g->dump != NULL && s->index == 0 && g->dumped < GEN_DUMP_MAX) {
        size_t add = bench_buf_pending(&s->out) - before;
        if (fwrite(s->out.data + s->out.off + before, 1, add, g->dump) != add) {
            fprintf(stderr, "s2s-load: writing the dump failed\n");
        }
        g->dumped += add;
    }
    return n;
}

/* Writes what is pending (refilling while blasting). */
static void sess_flush(struct sess *s)
{
    if (s->fd < 0 || s->state == SS_CONNECTING || s->state == SS_TLS) {
        return;
    }
    s->want_out = false;
    for (;;) {
        if (bench_buf_pending(&s->out) == 0) {
            uint64_t room = gen_room(s->g);
            uint64_t left = s->g->o.stanzas - s->seq;
            if (!gen_blasting(s) ||
                sess_fill(s, room < left ? room : left, s->g->o.batch) == 0) {
                break;
            }
        }
        const char *p = s->out.data + s->out.off;
        size_t len = bench_buf_pending(&s->out);
        ssize_t n;
        if (s->ssl != NULL) {
            ERR_clear_error();
            int r =
                SSL_write(s->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    s->want_out = e == SSL_ERROR_WANT_WRITE;
                    break;
                }
                sess_fail(s, "TLS write failed (%d)", e);
                return;
            }
            n = r;
        } else {
            n = write(s->fd, p, len);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    s->want_out = true;
                    break;
                }
                sess_fail(s, "write: %s", strerror(errno));
                return;
            }
        }
        bench_buf_consume(&s->out, (size_t)n);
    }
    uint32_t ev = EPOLLIN;
    /* A closed window is polled from the main loop, not by EPOLLOUT. */
    if (s->want_out || bench_buf_pending(&s->out) > 0 ||
        (gen_blasting(s) && gen_room(s->g) > 0)) {
        ev |= EPOLLOUT;
    }
    gen_watch(s, ev);
}

/* ---- stream steps ----------------------------------------------------------
 */

static void XMLCALL on_start(void *ud,
                             const XML_Char *name,
                             const XML_Char **atts);
static void XMLCALL on_end(void *ud, const XML_Char *name);
static void XMLCALL on_text(void *ud, const XML_Char *text, int len);

static int sess_parser_reset(struct sess *s)
{
    if (s->xp == NULL) {
        s->xp = XML_ParserCreateNS("UTF-8", BENCH_NS_SEP);
    } else if (!XML_ParserReset(s->xp, "UTF-8")) {
        return -1;
    }
    if (s->xp == NULL) {
        return -1;
    }
    XML_SetUserData(s->xp, s);
    XML_SetElementHandler(s->xp, on_start, on_end);
    XML_SetCharacterDataHandler(s->xp, on_text);
    s->depth = 0;
    s->cur = EL_OTHER;
    s->stream_id[0] = '\0';
    return 0;
}

/* Opens (or restarts) the stream: new parser, our header. */
static void sess_open_stream(struct sess *s)
{
    const struct gen_opts *o = &s->g->o;
    if (sess_parser_reset(s) != 0) {
        sess_fail(s, "cannot set up the XML parser");
        return;
    }
    if (bench_buf_append_str(&s->out, "<?xml version='1.0'?><stream:stream "
                                      "xmlns='" BENCH_NS_SERVER
                                      "' xmlns:stream='" BENCH_NS_STREAM
                                      "' xmlns:db='" BENCH_NS_DIALBACK
                                      "' from='") != 0 ||
        bench_buf_append_escaped(&s->out, o->from) != 0 ||
        bench_buf_append_str(&s->out, "' to='") != 0 ||
        bench_buf_append_escaped(&s->out, o->to) != 0 ||
        bench_buf_append_str(&s->out, "' version='1.0'>") != 0) {
        sess_fail(s, "output buffer full");
        return;
    }
    s->state = SS_FEATURES;
}

static void sess_tls_step(struct sess *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->tls_on = true;
        sess_open_stream(s);
        sess_flush(s);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        gen_watch(s, EPOLLIN);
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        gen_watch(s, EPOLLIN | EPOLLOUT);
        return;
    }
    char detail[160] = "";
    unsigned long le = ERR_peek_last_error();
    if (le != 0) {
        ERR_error_string_n(le, detail, sizeof(detail));
    }
    sess_fail(s, "TLS handshake failed: %s (verify: %s)", detail,
              X509_verify_cert_error_string(SSL_get_verify_result(s->ssl)));
}

static void sess_tls_begin(struct sess *s)
{
    const struct gen_opts *o = &s->g->o;
    s->ssl = SSL_new(s->g->ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1 ||
        SSL_set_tlsext_host_name(s->ssl, o->to) != 1 ||
        SSL_set1_host(s->ssl, o->to) != 1) {
        sess_fail(s, "cannot set up TLS");
        return;
    }
    if (o->direct_tls) {
        static const unsigned char alpn[] = "\x0bxmpp-server";
        if (SSL_set_alpn_protos(s->ssl, alpn, sizeof(alpn) - 1) != 0) {
            sess_fail(s, "cannot set ALPN");
            return;
        }
    }
    SSL_set_connect_state(s->ssl);
    s->state = SS_TLS;
    sess_tls_step(s);
}

static void sess_ready(struct sess *s)
{
    struct gen *g = s->g;
    s->state = SS_READY;
    g->pending--;
    g->ready++;
    sess_after_ready(s);
}

/* The features of the current stream decide the next step. */
static void sess_on_features(struct sess *s)
{
    const struct gen_opts *o = &s->g->o;
    if (!s->tls_on) {
        if (!s->f_starttls) {
            sess_bad(s, "fedgate offered no STARTTLS");
            return;
        }
        if (bench_buf_append_str(&s->out,
                                 "<starttls xmlns='" BENCH_NS_TLS "'/>") != 0) {
            sess_bad(s, "output buffer full");
            return;
        }
        s->state = SS_STARTTLS;
        return;
    }
    if (s->sasl_done) {
        s->do_ready = true;
        return;
    }
    if (o->auth == AUTH_SASL) {
        if (!s->f_external) {
            sess_bad(s, "fedgate offered no SASL EXTERNAL (certificate "
                        "not accepted?)");
            return;
        }
        /* XEP-0178: "=" is an empty authorization identity. */
        if (bench_buf_append_str(&s->out,
                                 "<auth xmlns='" BENCH_NS_SASL
                                 "' mechanism='EXTERNAL'>=</auth>") != 0) {
            sess_bad(s, "output buffer full");
            return;
        }
        s->state = SS_SASL;
        return;
    }
    if (!s->f_dialback) {
        sess_bad(s, "fedgate offered no dialback");
        return;
    }
    char key[65];
    if (s->stream_id[0] == '\0' ||
        dialback_key(o->secret, o->to, o->from, s->stream_id, key) != 0) {
        sess_bad(s, "cannot compute the dialback key (stream id '%s')",
                 s->stream_id);
        return;
    }
    if (bench_buf_append_str(&s->out, "<db:result from='") != 0 ||
        bench_buf_append_escaped(&s->out, o->from) != 0 ||
        bench_buf_append_str(&s->out, "' to='") != 0 ||
        bench_buf_append_escaped(&s->out, o->to) != 0 ||
        bench_buf_append_str(&s->out, "'>") != 0 ||
        bench_buf_append_str(&s->out, key) != 0 ||
        bench_buf_append_str(&s->out, "</db:result>") != 0) {
        sess_bad(s, "output buffer full");
        return;
    }
    s->state = SS_DIALBACK;
}

/* ---- parser callbacks ------------------------------------------------------
 */

static void XMLCALL on_start(void *ud,
                             const XML_Char *name,
                             const XML_Char **atts)
{
    struct sess *s = ud;
    if (s->failed) {
        return;
    }
    if (s->depth == 0) {
        if (!bench_name_is(name, BENCH_NS_STREAM, "stream")) {
            s->failed = true;
            snprintf(s->why, sizeof(s->why), "unexpected root <%s>", name);
            XML_StopParser(s->xp, XML_FALSE);
            return;
        }
        const char *id = bench_attr(atts, "id");
        snprintf(s->stream_id, sizeof(s->stream_id), "%s",
                 id != NULL ? id : "");
    } else if (s->depth == 1) {
        s->cur = EL_OTHER;
        if (bench_name_is(name, BENCH_NS_STREAM, "features")) {
            s->cur = EL_FEATURES;
            s->f_starttls = s->f_external = s->f_dialback = false;
        } else if (bench_name_is(name, BENCH_NS_TLS, "proceed")) {
            s->cur = EL_PROCEED;
        } else if (bench_name_is(name, BENCH_NS_TLS, "failure")) {
            s->cur = EL_TLS_FAILURE;
        } else if (bench_name_is(name, BENCH_NS_SASL, "success")) {
            s->cur = EL_SUCCESS;
        } else if (bench_name_is(name, BENCH_NS_SASL, "failure")) {
            s->cur = EL_SASL_FAILURE;
        } else if (bench_name_is(name, BENCH_NS_DIALBACK, "result")) {
            const char *type = bench_attr(atts, "type");
            s->cur = EL_DB_RESULT;
            s->db_valid = type != NULL && strcmp(type, "valid") == 0;
        } else if (bench_name_is(name, BENCH_NS_STREAM, "error")) {
            s->cur = EL_STREAM_ERROR;
            snprintf(s->condition, sizeof(s->condition), "?");
        } else if (bench_name_is(name, BENCH_NS_SERVER, "message")) {
            const char *type = bench_attr(atts, "type");
            s->cur = EL_MESSAGE;
            s->msg_error = type != NULL && strcmp(type, "error") == 0;
        }
    } else if (s->depth == 2) {
        if (s->cur == EL_FEATURES) {
            if (bench_name_is(name, BENCH_NS_TLS, "starttls")) {
                s->f_starttls = true;
            } else if (bench_name_is(name, BENCH_NS_DBFEATURE, "dialback")) {
                s->f_dialback = true;
            }
        } else if (s->cur == EL_STREAM_ERROR) {
            const char *sep = strrchr(name, BENCH_NS_SEP);
            if (sep != NULL && strcmp(sep + 1, "text") != 0) {
                snprintf(s->condition, sizeof(s->condition), "%s", sep + 1);
            }
        }
    } else if (s->depth == 3 && s->cur == EL_FEATURES &&
               bench_name_is(name, BENCH_NS_SASL, "mechanism")) {
        s->in_mechanism = true;
        s->mech_len = 0;
    }
    s->depth++;
}

static void XMLCALL on_text(void *ud, const XML_Char *text, int len)
{
    struct sess *s = ud;
    if (s->in_mechanism && len > 0 &&
        s->mech_len + (size_t)len < sizeof(s->mech)) {
        memcpy(s->mech + s->mech_len, text, (size_t)len);
        s->mech_len += (size_t)len;
    }
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct sess *s = ud;
    (void)name;
    if (s->failed || s->depth == 0) {
        return;
    }
    s->depth--;
    if (s->depth == 3 && s->in_mechanism) {
        s->in_mechanism = false;
        s->mech[s->mech_len] = '\0';
        if (strcmp(s->mech, "EXTERNAL") == 0) {
            s->f_external = true;
        }
        return;
    }
    if (s->depth == 0) {
        s->failed = true;
        snprintf(s->why, sizeof(s->why), "fedgate closed the stream");
        XML_StopParser(s->xp, XML_FALSE);
        return;
    }
    if (s->depth != 1) {
        return;
    }
    switch (s->cur) {
    case EL_FEATURES:
        if (s->state == SS_FEATURES) {
            sess_on_features(s);
        }
        break;
    case EL_PROCEED:
        if (s->state == SS_STARTTLS) {
            s->do_tls = true;
            XML_StopParser(s->xp, XML_FALSE);
        }
        break;
    case EL_SUCCESS:
        if (s->state == SS_SASL) {
            s->sasl_done = true;
            s->do_reset = true;
            XML_StopParser(s->xp, XML_FALSE);
        }
        break;
    case EL_TLS_FAILURE:
    case EL_SASL_FAILURE:
        s->failed = true;
        snprintf(s->why, sizeof(s->why), "fedgate answered <failure/> to %s",
                 s->cur == EL_TLS_FAILURE ? "STARTTLS" : "SASL EXTERNAL");
        XML_StopParser(s->xp, XML_FALSE);
        break;
    case EL_DB_RESULT:
        if (s->state == SS_DIALBACK) {
            if (s->db_valid) {
                s->do_ready = true;
            } else {
                sess_bad(s, "dialback key refused");
            }
        }
        break;
    case EL_STREAM_ERROR:
        s->failed = true;
        snprintf(s->why, sizeof(s->why), "stream error <%s/> from fedgate",
                 s->condition);
        XML_StopParser(s->xp, XML_FALSE);
        break;
    case EL_MESSAGE:
        if (s->msg_error) {
            s->g->bounced++;
        }
        break;
    case EL_OTHER:
        break;
    }
    s->cur = EL_OTHER;
}

/* ---- input ------------------------------------------------------------------
 */

static void sess_read(struct sess *s)
{
    char data[GEN_READ_CHUNK];
    for (int round = 0; round < 8 && s->fd >= 0; round++) {
        ssize_t n;
        if (s->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(s->ssl, data, sizeof(data));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_READ) {
                    return;
                }
                if (e == SSL_ERROR_WANT_WRITE) {
                    s->want_out = true;
                    return;
                }
                sess_fail(s, e == SSL_ERROR_ZERO_RETURN ? "fedgate closed TLS"
                                                        : "TLS read failed");
                return;
            }
            n = r;
        } else {
            n = read(s->fd, data, sizeof(data));
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    return;
                }
                sess_fail(s, "read: %s", strerror(errno));
                return;
            }
        }
        if (n == 0) {
            sess_fail(s, "fedgate closed the connection");
            return;
        }
        enum XML_Status st = XML_Parse(s->xp, data, (int)n, XML_FALSE);
        if (s->failed) {
            sess_fail(s, "%s", s->why);
            return;
        }
        if (s->do_tls) {
            /* Nothing may follow <proceed/> in plaintext: the rest of the
             * read (there is none from a correct server) is dropped. */
            s->do_tls = false;
            sess_tls_begin(s);
            return;
        }
        if (s->do_reset) {
            s->do_reset = false;
            sess_open_stream(s);
            sess_flush(s);
            return;
        }
        if (st != XML_STATUS_OK) {
            sess_fail(s, "XML from fedgate: %s",
                      XML_ErrorString(XML_GetErrorCode(s->xp)));
            return;
        }
        if (s->do_ready) {
            s->do_ready = false;
            sess_ready(s);
            if (s->state == SS_FREE) {
                return; /* closed after authenticating (handshake mode) */
            }
        }
        if ((size_t)n < sizeof(data) &&
            (s->ssl == NULL || SSL_pending(s->ssl) == 0)) {
            return;
        }
    }
}

static void sess_connected(struct sess *s)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
        soerr = errno;
    }
    if (soerr != 0) {
        sess_fail(s, "connect: %s", strerror(soerr));
        return;
    }
    if (s->g->o.direct_tls) {
        sess_tls_begin(s);
        return;
    }
    sess_open_stream(s);
    sess_flush(s);
}

static void sess_io(struct sess *s, uint32_t events)
{
    switch (s->state) {
    case SS_FREE:
        return;
    case SS_CONNECTING:
        sess_connected(s);
        return;
    case SS_TLS:
        sess_tls_step(s);
        return;
    default:
        break;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
        sess_read(s);
    }
    if (s->fd >= 0 && s->state != SS_TLS) {
        sess_flush(s);
    }
}

/* ---- session lifetime -------------------------------------------------------
 */

static void sess_close(struct sess *s)
{
    if (s->ssl != NULL) {
        /* Best effort close_notify; no wait for the peer's. */
        (void)SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd); /* also leaves the epoll set */
        s->fd = -1;
    }
    if (s->xp != NULL) {
        XML_ParserFree(s->xp);
        s->xp = NULL;
    }
    bench_buf_free(&s->out);
    s->epoll = 0;
    s->state = SS_FREE;
    s->tls_on = s->sasl_done = false;
    s->do_tls = s->do_reset = s->do_ready = s->failed = s->want_out = false;
    s->in_mechanism = false;
}

static void sess_fail(struct sess *s, const char *fmt, ...)
{
    struct gen *g = s->g;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (s->state == SS_FREE) {
        return;
    }
    bool was_ready = s->state == SS_READY;
    if (g->failures < GEN_ERRORS_SHOWN || g->o.mode != MODE_HANDSHAKE) {
        fprintf(stderr, "s2s-load: session %u %s: %s\n", s->index,
                was_ready ? "lost" : "failed", why);
    }
    g->failures++;
    if (was_ready) {
        g->ready--;
    } else {
        g->pending--;
    }
    /* No restart here (a connect that fails at once would recurse): the
     * main loop refills free slots in handshake mode. */
    sess_close(s);
}

static int sess_start(struct gen *g, struct sess *s)
{
    const struct gen_opts *o = &g->o;
    s->g = g;
    s->seq = 0;
    s->out.max = GEN_OUT_MAX;
    s->t_connect = bench_now_ns();
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        fprintf(stderr, "s2s-load: socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    (void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o->src_count > 0) {
        /* Spread over several source addresses so that tens of thousands
         * of connections (and TIME_WAITs) do not run out of ports. */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr =
            htonl(ntohl(o->src_base.s_addr) + g->next_src++ % o->src_count);
        (void)setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                         sizeof(one));
        if (bind(s->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            fprintf(stderr, "s2s-load: bind: %s\n", strerror(errno));
            close(s->fd);
            s->fd = -1;
            return -1;
        }
    }
    s->state = SS_CONNECTING;
    g->pending++;
    if (connect(s->fd, (const struct sockaddr *)&o->target,
                sizeof(o->target)) != 0 &&
        errno != EINPROGRESS) {
        sess_fail(s, "connect: %s", strerror(errno));
        return -1;
    }
    gen_watch(s, EPOLLOUT);
    return 0;
}

/* Starts more sessions while fewer than concurrency negotiate. */
static void gen_start_more(struct gen *g)
{
    unsigned want = g->o.mode == MODE_HANDSHAKE ? g->nsess : g->o.sessions;
    while (g->started < want && g->pending < g->o.concurrency) {
        struct sess *s = &g->sess[g->started];
        s->index = g->started;
        g->started++;
        if (sess_start(g, s) != 0 && g->o.mode != MODE_HANDSHAKE) {
            fprintf(stderr, "s2s-load: cannot start session %u\n", s->index);
            exit(1);
        }
    }
}

static void gen_print_start(struct gen *g)
{
    unsigned long long ticks = 0;
    if (g->o.cpu_pid > 0 && bench_proc_cpu_ticks(g->o.cpu_pid, &ticks) != 0) {
        fprintf(stderr, "s2s-load: cannot read /proc/%ld/stat\n",
                (long)g->o.cpu_pid);
    }
    g->t_start = bench_now_ns();
    printf("start_ns=%" PRIu64 "\ncpu_ticks_start=%llu\n", g->t_start, ticks);
    fflush(stdout);
}

static void gen_begin_sending(struct gen *g)
{
    fprintf(stderr, "s2s-load: %u session(s) authenticated; sending\n",
            g->ready);
    gen_print_start(g);
    g->running = true;
    if (g->o.mode == MODE_RATE) {
        uint64_t tick = 1000000000u / g->o.rate;
        if (tick < 50000) {
            tick = 50000;
        }
        struct itimerspec its = {
            .it_value = {.tv_sec = 0, .tv_nsec = (long)tick},
            .it_interval = {.tv_sec = (time_t)(tick / 1000000000u),
                            .tv_nsec = (long)(tick % 1000000000u)},
        };
        if (timerfd_settime(g->tfd, 0, &its, NULL) != 0) {
            fprintf(stderr, "s2s-load: timerfd: %s\n", strerror(errno));
            exit(1);
        }
        return;
    }
    for (unsigned i = 0; i < g->nsess; i++) {
        sess_flush(&g->sess[i]);
    }
}

static void sess_after_ready(struct sess *s)
{
    struct gen *g = s->g;
    if (g->o.mode == MODE_HANDSHAKE) {
        uint64_t now = bench_now_ns();
        uint64_t took = now - s->t_connect;
        g->handshakes++;
        if (now <= g->t_end) {
            g->handshakes_in_window++;
        }
        if (g->nhs < g->hs_cap) {
            g->hs_ns[g->nhs++] = took;
        }
        /* Close the stream politely, then start the next one. */
        (void)bench_buf_append_str(&s->out, "</stream:stream>");
        sess_flush(s);
        g->ready--;
        sess_close(s);
        if (bench_now_ns() < g->t_end) {
            (void)sess_start(g, s);
        }
        return;
    }
    gen_start_more(g);
    if (g->ready < g->o.sessions) {
        return;
    }
    if (g->o.mode == MODE_IDLE) {
        printf("ready %u\n", g->ready);
        fflush(stdout);
        fprintf(stderr, "s2s-load: %u idle session(s) authenticated\n",
                g->ready);
        return;
    }
    gen_begin_sending(g);
}

/* rate mode: one timer tick sends what is due, round robin. */
static void gen_on_tick(struct gen *g)
{
    uint64_t expirations;
    if (read(g->tfd, &expirations, sizeof(expirations)) < 0) {
        return;
    }
    if (!g->running || g->finished) {
        return;
    }
    uint64_t now = bench_now_ns();
    uint64_t elapsed = now - g->t_start;
    uint64_t limit = g->o.rate * g->o.duration_ms / 1000u;
    uint64_t due = (uint64_t)((double)g->o.rate * (double)elapsed / 1e9) + 1;
    if (due > limit) {
        due = limit;
    }
    while (g->sent < due) {
        struct sess *s = &g->sess[g->sent % g->nsess];
        if (s->state != SS_READY) {
            fprintf(stderr, "s2s-load: session %u is gone\n", s->index);
            exit(1);
        }
        if (sess_fill(s, 1, 1) == 0) {
            fprintf(stderr, "s2s-load: output full (fedgate stalls?)\n");
            exit(1);
        }
        sess_flush(s);
    }
    if (g->sent >= limit) {
        g->finished = true;
    }
}

static SSL_CTX *gen_tls_ctx(const struct gen_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Full handshakes every time, as separate servers make them. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1) {
        fprintf(stderr, "s2s-load: cannot load CA %s\n", o->ca);
        goto fail;
    }
    if (o->auth == AUTH_SASL &&
        (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(ctx) != 1)) {
        fprintf(stderr, "s2s-load: cannot load certificate %s / key %s\n",
                o->cert, o->key);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- command line
 * ------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: s2s-load --connect IP:PORT --ca FILE --mode "
            "blast|rate|idle|handshake\n"
            "  [--auth sasl|dialback] [--cert FILE --key FILE] "
            "[--secret S]\n"
            "  [--from DOMAIN] [--to DOMAIN] [--direct-tls]\n"
            "  [--src-base IP --src-count N] [--sessions N] [--stanzas N]\n"
            "  [--rate N] [--duration MS] [--concurrency N] [--batch BYTES]\n"
            "  [--cpu-pid PID] [--dump FILE] [--timeout MS]\n"
            "  [--window N --window-file FILE]\n");
}

static int parse_args(int argc, char **argv, struct gen_opts *o)
{
    uint64_t v;
    memset(o, 0, sizeof(*o));
    o->auth = AUTH_SASL;
    o->from = "b.test";
    o->to = "a.test";
    o->sessions = 1;
    o->stanzas = 100000;
    o->rate = 10000;
    o->duration_ms = 10000;
    o->concurrency = 16;
    o->timeout_ms = 120000;
    o->batch = 16384;
    o->mode = MODE_BLAST;
    bool have_target = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "--direct-tls") == 0) {
            o->direct_tls = true;
            takes = false;
        } else if (val == NULL) {
            fprintf(stderr, "s2s-load: %s needs a value\n", a);
            return -1;
        } else if (strcmp(a, "--connect") == 0) {
            if (bench_parse_addr(val, &o->target) != 0) {
                fprintf(stderr, "s2s-load: bad address %s\n", val);
                return -1;
            }
            have_target = true;
        } else if (strcmp(a, "--ca") == 0) {
            o->ca = val;
        } else if (strcmp(a, "--cert") == 0) {
            o->cert = val;
        } else if (strcmp(a, "--key") == 0) {
            o->key = val;
        } else if (strcmp(a, "--secret") == 0) {
            o->secret = val;
        } else if (strcmp(a, "--from") == 0) {
            o->from = val;
        } else if (strcmp(a, "--to") == 0) {
            o->to = val;
        } else if (strcmp(a, "--dump") == 0) {
            o->dump = val;
        } else if (strcmp(a, "--window-file") == 0) {
            o->window_file = val;
        } else if (strcmp(a, "--auth") == 0) {
            if (strcmp(val, "sasl") == 0) {
                o->auth = AUTH_SASL;
            } else if (strcmp(val, "dialback") == 0) {
                o->auth = AUTH_DIALBACK;
            } else {
                fprintf(stderr, "s2s-load: unknown --auth %s\n", val);
                return -1;
            }
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(val, "blast") == 0) {
                o->mode = MODE_BLAST;
            } else if (strcmp(val, "rate") == 0) {
                o->mode = MODE_RATE;
            } else if (strcmp(val, "idle") == 0) {
                o->mode = MODE_IDLE;
            } else if (strcmp(val, "handshake") == 0) {
                o->mode = MODE_HANDSHAKE;
            } else {
                fprintf(stderr, "s2s-load: unknown --mode %s\n", val);
                return -1;
            }
        } else if (strcmp(a, "--src-base") == 0) {
            if (inet_pton(AF_INET, val, &o->src_base) != 1) {
                fprintf(stderr, "s2s-load: bad --src-base %s\n", val);
                return -1;
            }
        } else {
            uint64_t *dst64 = NULL;
            unsigned *dst = NULL;
            uint64_t max = UINT32_MAX;
            if (strcmp(a, "--src-count") == 0) {
                dst = &o->src_count;
                max = 250;
            } else if (strcmp(a, "--sessions") == 0) {
                dst = &o->sessions;
                max = 1000000;
            } else if (strcmp(a, "--concurrency") == 0) {
                dst = &o->concurrency;
                max = 100000;
            } else if (strcmp(a, "--stanzas") == 0) {
                dst64 = &o->stanzas;
            } else if (strcmp(a, "--rate") == 0) {
                dst64 = &o->rate;
            } else if (strcmp(a, "--duration") == 0) {
                dst64 = &o->duration_ms;
            } else if (strcmp(a, "--timeout") == 0) {
                dst64 = &o->timeout_ms;
            } else if (strcmp(a, "--window") == 0) {
                dst64 = &o->window;
            } else if (strcmp(a, "--cpu-pid") == 0) {
                max = INT32_MAX;
            } else if (strcmp(a, "--batch") == 0) {
                max = GEN_OUT_MAX / 2;
            } else {
                fprintf(stderr, "s2s-load: unknown option %s\n", a);
                return -1;
            }
            /* 0 means "none" for these two; a count elsewhere */
            uint64_t min = dst == &o->src_count || dst64 == &o->window ? 0 : 1;
            if (bench_parse_u64(val, min, max, &v) != 0) {
                fprintf(stderr, "s2s-load: bad value for %s: %s\n", a, val);
                return -1;
            }
            if (dst != NULL) {
                *dst = (unsigned)v;
            } else if (dst64 != NULL) {
                *dst64 = v;
            } else if (strcmp(a, "--cpu-pid") == 0) {
                o->cpu_pid = (pid_t)v;
            } else {
                o->batch = (size_t)v;
            }
        }
        if (takes) {
            i++;
        }
    }
    if (!have_target || o->ca == NULL) {
        usage();
        return -1;
    }
    if (o->auth == AUTH_SASL && (o->cert == NULL || o->key == NULL)) {
        fprintf(stderr, "s2s-load: --auth sasl needs --cert and --key\n");
        return -1;
    }
    if (o->auth == AUTH_DIALBACK && o->secret == NULL) {
        fprintf(stderr, "s2s-load: --auth dialback needs --secret\n");
        return -1;
    }
    if (o->window > 0 && o->window_file == NULL) {
        fprintf(stderr, "s2s-load: --window needs --window-file\n");
        return -1;
    }
    if (o->src_count > 0 && o->src_base.s_addr == 0) {
        fprintf(stderr, "s2s-load: --src-count needs --src-base\n");
        return -1;
    }
    return 0;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* handshakes_in_window / window_ns is the rate; the durations are from
 * connect() to authenticated. */
static void gen_report_handshakes(struct gen *g, uint64_t elapsed)
{
    uint64_t p50 = 0, p99 = 0;
    if (g->nhs > 0) {
        qsort(g->hs_ns, g->nhs, sizeof(*g->hs_ns), u64_cmp);
        p50 = g->hs_ns[g->nhs / 2];
        p99 = g->hs_ns[(g->nhs * 99) / 100];
    }
    printf("handshakes=%" PRIu64 "\nhandshakes_in_window=%" PRIu64
           "\nwindow_ns=%" PRIu64 "\nfailures=%" PRIu64 "\nelapsed_ns=%" PRIu64
           "\nhandshake_p50_ns=%" PRIu64 "\nhandshake_p99_ns=%" PRIu64 "\n",
           g->handshakes, g->handshakes_in_window, g->o.duration_ms * 1000000u,
           g->failures, elapsed, p50, p99);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct gen g;
    int rc = 1;
    memset(&g, 0, sizeof(g));
    g.ep = g.tfd = -1;
    if (parse_args(argc, argv, &g.o) != 0) {
        return 2;
    }
    struct sigaction sa = {.sa_handler = gen_on_signal};
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g.nsess = g.o.mode == MODE_HANDSHAKE ? g.o.concurrency : g.o.sessions;
    if (g.o.mode == MODE_HANDSHAKE) {
        g.o.sessions = g.nsess;
    }
    unsigned long nofile = bench_raise_nofile((unsigned long)g.nsess + 64);
    if (nofile < (unsigned long)g.nsess + 16) {
        fprintf(stderr, "s2s-load: only %lu file descriptors\n", nofile);
        return 1;
    }
    g.sess = calloc(g.nsess, sizeof(*g.sess));
    g.ctx = gen_tls_ctx(&g.o);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.sess == NULL || g.ctx == NULL || g.ep < 0 || g.tfd < 0) {
        fprintf(stderr, "s2s-load: set-up failed\n");
        goto out;
    }
    for (unsigned i = 0; i < g.nsess; i++) {
        g.sess[i].fd = -1;
        g.sess[i].g = &g;
        g.sess[i].index = i;
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = GEN_TIMER_TAG};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &tev) != 0) {
        fprintf(stderr, "s2s-load: epoll_ctl: %s\n", strerror(errno));
        goto out;
    }
    if (g.o.window_file != NULL) {
        g.window_ctr = bench_progress_map(g.o.window_file, false);
        if (g.window_ctr == NULL) {
            fprintf(stderr, "s2s-load: cannot map %s\n", g.o.window_file);
            goto out;
        }
    }
    if (g.o.dump != NULL) {
        g.dump = fopen(g.o.dump, "w");
        if (g.dump == NULL) {
            fprintf(stderr, "s2s-load: cannot write %s\n", g.o.dump);
            goto out;
        }
    }
    uint64_t t0 = bench_now_ns();
    g.deadline = t0 + g.o.timeout_ms * 1000000u;
    if (g.o.mode == MODE_HANDSHAKE) {
        g.t_end = t0 + g.o.duration_ms * 1000000u;
        g.hs_cap = 1u << 20;
        g.hs_ns = calloc(g.hs_cap, sizeof(*g.hs_ns));
        if (g.hs_ns == NULL) {
            goto out;
        }
    }
    gen_start_more(&g);

    struct epoll_event evs[GEN_MAX_EVENTS];
    bool reported = false;
    while (!gen_stop) {
        uint64_t now = bench_now_ns();
        if (g.o.mode == MODE_HANDSHAKE && now >= g.t_end && g.pending == 0) {
            gen_report_handshakes(&g, now - t0);
            rc = 0;
            break;
        }
        if (g.finished && !reported) {
            printf("sent=%" PRIu64 "\nend_send_ns=%" PRIu64 "\nbounced=%" PRIu64
                   "\n",
                   g.sent, now, g.bounced);
            fflush(stdout);
            fprintf(stderr, "s2s-load: sent %" PRIu64 " stanzas\n", g.sent);
            reported = true;
        }
        bool holding =
            reported || (g.o.mode == MODE_IDLE && g.ready == g.o.sessions);
        if (!holding && now > g.deadline) {
            fprintf(stderr, "s2s-load: timed out (%u ready, %u negotiating)\n",
                    g.ready, g.pending);
            goto out;
        }
        if (g.o.mode != MODE_HANDSHAKE && g.failures > 0 && !holding) {
            goto out;
        }
        /* a blast held by its window polls the sink's count */
        bool polling = g.o.window > 0 && g.running && !g.finished;
        int n = epoll_wait(g.ep, evs, GEN_MAX_EVENTS, polling ? 1 : 100);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "s2s-load: epoll_wait: %s\n", strerror(errno));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == GEN_TIMER_TAG) {
                gen_on_tick(&g);
                continue;
            }
            struct sess *s = &g.sess[evs[i].data.u64];
            sess_io(s, evs[i].events);
        }
        if (polling) {
            for (unsigned i = 0; i < g.nsess; i++) {
                if (bench_buf_pending(&g.sess[i].out) == 0) {
                    sess_flush(&g.sess[i]);
                }
            }
        }
        if (g.o.mode == MODE_BLAST && g.running && !g.finished) {
            bool all = true;
            for (unsigned i = 0; i < g.nsess && all; i++) {
                all = g.sess[i].seq >= g.o.stanzas &&
                      bench_buf_pending(&g.sess[i].out) == 0;
            }
            g.finished = all;
        }
        if (g.o.mode == MODE_HANDSHAKE && bench_now_ns() < g.t_end) {
            /* refill slots that could not start (e.g. a failed connect) */
            for (unsigned i = 0; i < g.nsess; i++) {
                if (g.sess[i].state == SS_FREE) {
                    (void)sess_start(&g, &g.sess[i]);
                }
            }
        }
    }
    if (gen_stop) {
        rc = 0;
    }
out:
    if (g.sess != NULL) {
        for (unsigned i = 0; i < g.nsess; i++) {
            sess_close(&g.sess[i]);
        }
    }
    free(g.sess);
    free(g.hs_ns);
    if (g.dump != NULL && fclose(g.dump) != 0) {
        fprintf(stderr, "s2s-load: closing the dump failed\n");
        rc = 1;
    }
    SSL_CTX_free(g.ctx);
    bench_progress_unmap(g.window_ctr);
    if (g.ep >= 0) {
        close(g.ep);
    }
    if (g.tfd >= 0) {
        close(g.tfd);
    }
    return rc;
}
