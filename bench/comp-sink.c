/*
 * comp-sink.c: the relay benchmark's component side. It plays the home
 * server on fedgate's XEP-0114 side, so that no real server limits the
 * relay figures: as a sink for s2s -> component traffic and, with --send,
 * as the source of component -> s2s traffic.
 *
 * Listens on --listen IP:PORT; on every connection fedgate makes:
 *   on the header:      answer with ours (from = the 'to' asked for, a
 *                       fresh id)
 *   on <handshake/>:    compare with hex(SHA-1(id + secret)); answer
 *                       <handshake/> or the stream error not-authorized
 *   on <message/>:      its id 'S-Q-T' (from s2s-load) accounts message Q
 *                       of session S (missing, duplicated) and, past the
 *                       first --warmup messages, its latency: arrival
 *                       (CLOCK_MONOTONIC at the read) minus T (at the
 *                       generator's write), both on the one system clock;
 *                       type='error' ones (bounces) are counted apart
 *   on </stream:stream>: ours, then close
 * Sink: when --sessions x --stanzas messages have arrived (or --idle-ms
 * after the last one, if some never come) it samples fedgate's CPU time
 * (--cpu-pid) and prints a report on stdout as key=value lines ending with
 * "done=1" (benchutil.h). --lat-dump FILE writes every latency sample with
 * its arrival time (diagnosis).
 * Source (--send N): once the link for --send-link (b.test) is up it
 * sends one warm-up message (so that fedgate opens its s2s route; the
 * receiver counts it as foreign), and on SIGUSR1 the N messages from
 * --send-from users, in writes of --batch bytes, as fast as fedgate reads
 * them, or at most --window ahead of the count the receiver publishes in
 * --window-file (bench_progress_map); it prints start_ns and
 * cpu_ticks_start (fedgate's, --cpu-pid) before the first, sent= and
 * end_send_ns= after the last, and errors_received= (bounces) at exit.
 * --publish FILE: publish our own count (when we are the receiver).
 * Either way it goes on serving until SIGTERM, so that fedgate's links
 * stay up while the bench driver collects the figures.
 */
#include "config.h"

#include "benchutil.h"

#include <errno.h>
#include <expat.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SINK_READ_CHUNK 65536
#define SINK_MAX_LINKS  64
#define SINK_MAX_EVENTS 64
#define SINK_OUT_MAX    (4u * 1024u * 1024u)
#define SINK_LISTEN_TAG UINT64_MAX
#define SINK_MSG_MAX    512

struct sink;

struct link {
    struct sink *k;
    int fd;
    XML_Parser xp;
    unsigned depth;
    bool ready;
    bool in_handshake;
    bool closing;
    bool sending; /* the --send source writes on this link */
    char id[40];
    char domain[256];
    char hs[64];
    size_t hs_len;
    unsigned long stanzas;
    uint32_t epoll; /* interest registered */
    struct bench_buf out;
};

struct sink {
    const char *secret;
    const char *lat_dump;
    uint64_t idle_ms;
    uint64_t timeout_ms;
    pid_t cpu_pid;
    int lfd;
    int ep;
    struct link links[SINK_MAX_LINKS];
    struct bench_acct acct;
    uint64_t now; /* clock of the read being parsed */
    bool reported;
    /* --send */
    uint64_t send_n;
    const char *send_link;
    const char *send_from;
    size_t batch;
    uint64_t sent;
    bool warmed;
    bool send_done;
    uint64_t window;      /* --window: most messages ahead of the receiver */
    uint64_t *window_ctr; /* --window-file: the receiver's count */
    uint64_t *publish;    /* --publish: our count, for the sender */
};

static volatile sig_atomic_t sink_stop;
static volatile sig_atomic_t sink_go;

static void sink_on_signal(int signo)
{
    if (signo == SIGUSR1) {
        sink_go = 1;
    } else {
        sink_stop = 1;
    }
}

static int link_write(struct link *l, const char *s)
{
    return bench_buf_append_str(&l->out, s);
}

static void XMLCALL on_start(void *ud,
                             const XML_Char *name,
                             const XML_Char **atts)
{
    struct link *l = ud;
    struct sink *k = l->k;
    if (l->depth == 0) {
        unsigned char rnd[12];
        const char *to = bench_attr(atts, "to");
        snprintf(l->domain, sizeof(l->domain), "%s", to != NULL ? to : "?");
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            memset(rnd, 0x5a, sizeof(rnd));
        }
        bench_hex(rnd, sizeof(rnd), l->id);
        if (link_write(l, "<?xml version='1.0'?><stream:stream "
                          "xmlns:stream='" BENCH_NS_STREAM
                          "' xmlns='" BENCH_NS_COMPONENT "' from='") != 0 ||
            bench_buf_append_escaped(&l->out, l->domain) != 0 ||
            link_write(l, "' id='") != 0 || link_write(l, l->id) != 0 ||
            link_write(l, "'>") != 0) {
            l->closing = true;
        }
    } else if (l->depth == 1) {
        if (bench_name_is(name, BENCH_NS_COMPONENT, "message")) {
            const char *type = bench_attr(atts, "type");
            l->stanzas++;
            if (type != NULL && strcmp(type, "error") == 0) {
                k->acct.errors++;
            } else if (l->ready && k->acct.expected > 0) {
                bench_acct_message(&k->acct, bench_attr(atts, "id"), k->now);
            }
        } else if (bench_name_is(name, BENCH_NS_COMPONENT, "handshake")) {
            l->in_handshake = true;
            l->hs_len = 0;
        }
    }
    l->depth++;
}

static void XMLCALL on_text(void *ud, const XML_Char *text, int len)
{
    struct link *l = ud;
    if (l->in_handshake && len > 0 && l->hs_len + (size_t)len < sizeof(l->hs)) {
        memcpy(l->hs + l->hs_len, text, (size_t)len);
        l->hs_len += (size_t)len;
    }
}

/* XEP-0114: the handshake is hex(SHA-1(stream id + secret)). */
static bool handshake_ok(const struct link *l, const char *secret)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, l->id, strlen(l->id)) == 1 &&
              EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
              EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        return false;
    }
    bench_hex(md, mdlen, hex);
    return l->hs_len == 2 * mdlen && strncasecmp(l->hs, hex, l->hs_len) == 0;
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct link *l = ud;
    (void)name;
    if (l->depth == 0) {
        return;
    }
    l->depth--;
    if (l->depth == 0) {
        (void)link_write(l, "</stream:stream>");
        l->closing = true;
        return;
    }
    if (l->depth == 1 && l->in_handshake) {
        l->in_handshake = false;
        l->hs[l->hs_len] = '\0';
        if (handshake_ok(l, l->k->secret)) {
            l->ready = true;
            (void)link_write(l, "<handshake/>");
            fprintf(stderr, "comp-sink: link %s up\n", l->domain);
        } else {
            fprintf(stderr, "comp-sink: link %s: wrong handshake\n", l->domain);
            (void)link_write(l, "<stream:error><not-authorized "
                                "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                                "</stream:error></stream:stream>");
            l->closing = true;
        }
    }
}

static void link_free(struct link *l)
{
    if (l->fd >= 0) {
        close(l->fd); /* also leaves the epoll set */
        l->fd = -1;
    }
    if (l->xp != NULL) {
        XML_ParserFree(l->xp);
        l->xp = NULL;
    }
    bench_buf_free(&l->out);
    l->epoll = 0;
}

static void link_watch(struct link *l, uint32_t events)
{
    if (l->fd < 0 || l->epoll == events) {
        return;
    }
    struct epoll_event ev = {.events = events,
                             .data.u64 = (uint64_t)(l - l->k->links)};
    if (epoll_ctl(l->k->ep, EPOLL_CTL_MOD, l->fd, &ev) == 0) {
        l->epoll = events;
    }
}

/* How many more --send messages the window allows now. */
static uint64_t sink_room(const struct sink *k)
{
    uint64_t left = k->send_n - k->sent;
    if (k->window == 0) {
        return left;
    }
    uint64_t done = bench_progress_read(k->window_ctr);
    uint64_t ahead = k->sent > done ? k->sent - done : 0;
    uint64_t room = ahead < k->window ? k->window - ahead : 0;
    return room < left ? room : left;
}

/* Appends up to a batch of --send messages, stamped now. */
static void link_fill(struct link *l)
{
    struct sink *k = l->k;
    char msg[SINK_MSG_MAX];
    uint64_t now = bench_now_ns();
    uint64_t room = sink_room(k);
    size_t start = bench_buf_pending(&l->out);
    while (room > 0 && bench_buf_pending(&l->out) - start < k->batch) {
        size_t n = bench_message(msg, sizeof(msg), k->send_from, l->domain, 0,
                                 k->sent, now);
        if (n == 0 || bench_buf_append(&l->out, msg, n) != 0) {
            break;
        }
        k->sent++;
        room--;
    }
}

static void link_flush(struct link *l)
{
    struct sink *k = l->k;
    for (;;) {
        if (bench_buf_pending(&l->out) == 0) {
            if (!l->sending || k->sent >= k->send_n) {
                break;
            }
            link_fill(l);
            if (bench_buf_pending(&l->out) == 0) {
                break;
            }
        }
        ssize_t n =
            write(l->fd, l->out.data + l->out.off, bench_buf_pending(&l->out));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            fprintf(stderr, "comp-sink: link %s: write: %s\n", l->domain,
                    strerror(errno));
            link_free(l);
            return;
        }
        bench_buf_consume(&l->out, (size_t)n);
    }
    if (l->sending && k->sent >= k->send_n && bench_buf_pending(&l->out) == 0 &&
        !k->send_done) {
        k->send_done = true;
        printf("sent=%" PRIu64 "\nend_send_ns=%" PRIu64 "\n", k->sent,
               bench_now_ns());
        fflush(stdout);
        fprintf(stderr, "comp-sink: sent %" PRIu64 " messages\n", k->sent);
    }
    if (l->closing && bench_buf_pending(&l->out) == 0) {
        fprintf(stderr, "comp-sink: link %s closed (%lu stanzas)\n", l->domain,
                l->stanzas);
        link_free(l);
        return;
    }
    bool more =
        bench_buf_pending(&l->out) > 0 || (l->sending && k->sent < k->send_n);
    link_watch(l, more ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void link_read(struct link *l)
{
    static char data[SINK_READ_CHUNK];
    for (int round = 0; round < 16 && l->fd >= 0; round++) {
        ssize_t n = read(l->fd, data, sizeof(data));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            link_free(l);
            return;
        }
        if (n == 0) {
            fprintf(stderr, "comp-sink: link %s: fedgate closed it\n",
                    l->domain);
            link_free(l);
            return;
        }
        l->k->now = bench_now_ns();
        if (XML_Parse(l->xp, data, (int)n, XML_FALSE) != XML_STATUS_OK) {
            fprintf(stderr, "comp-sink: link %s: bad XML: %s\n", l->domain,
                    XML_ErrorString(XML_GetErrorCode(l->xp)));
            link_free(l);
            return;
        }
        bench_progress_publish(l->k->publish, l->k->acct.received);
        if (l->closing || (size_t)n < sizeof(data)) {
            break;
        }
    }
    link_flush(l);
}

static struct link *sink_send_link(struct sink *k)
{
    for (size_t i = 0; i < SINK_MAX_LINKS; i++) {
        struct link *l = &k->links[i];
        if (l->fd >= 0 && l->ready && strcmp(l->domain, k->send_link) == 0) {
            return l;
        }
    }
    return NULL;
}

/* --send: the warm-up message once the link is up, the rest on SIGUSR1. */
static void sink_send_step(struct sink *k)
{
    struct link *l = sink_send_link(k);
    if (l == NULL) {
        return;
    }
    if (!k->warmed) {
        char msg[SINK_MSG_MAX];
        /* session "w": not an id the receiver expects */
        int n = snprintf(msg, sizeof(msg),
                         "<message from='warmup@%s/bench' to='warmup@%s' "
                         "type='chat' id='w-0-0'><body>warm-up</body>"
                         "</message>",
                         k->send_from, l->domain);
        if (n > 0 && (size_t)n < sizeof(msg) &&
            bench_buf_append(&l->out, msg, (size_t)n) == 0) {
            k->warmed = true;
            fprintf(stderr, "comp-sink: warm-up message sent on %s\n",
                    l->domain);
            link_flush(l);
        }
        return;
    }
    if (l->sending) {
        if (bench_buf_pending(&l->out) == 0 && k->sent < k->send_n) {
            link_flush(l); /* the window may have opened */
        }
        return;
    }
    if (sink_go) {
        unsigned long long ticks = 0;
        if (k->cpu_pid > 0 && bench_proc_cpu_ticks(k->cpu_pid, &ticks) != 0) {
            fprintf(stderr, "comp-sink: cannot read /proc/%ld/stat\n",
                    (long)k->cpu_pid);
        }
        printf("start_ns=%" PRIu64 "\ncpu_ticks_start=%llu\n", bench_now_ns(),
               ticks);
        fflush(stdout);
        l->sending = true;
        link_flush(l);
    }
}

static void sink_accept(struct sink *k)
{
    int fd = accept4(k->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    struct link *l = NULL;
    for (size_t i = 0; i < SINK_MAX_LINKS; i++) {
        if (k->links[i].fd < 0) {
            l = &k->links[i];
            break;
        }
    }
    if (l == NULL) {
        fprintf(stderr, "comp-sink: too many links\n");
        close(fd);
        return;
    }
    memset(l, 0, sizeof(*l));
    l->k = k;
    l->fd = fd;
    l->out.max = SINK_OUT_MAX;
    l->xp = XML_ParserCreateNS("UTF-8", BENCH_NS_SEP);
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = (uint64_t)(l - k->links)};
    if (l->xp == NULL || epoll_ctl(k->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        link_free(l);
        return;
    }
    l->epoll = EPOLLIN;
    XML_SetUserData(l->xp, l);
    XML_SetElementHandler(l->xp, on_start, on_end);
    XML_SetCharacterDataHandler(l->xp, on_text);
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void usage(void)
{
    fprintf(stderr,
            "usage: comp-sink --listen IP:PORT --secret S [--sessions N] "
            "[--stanzas N]\n"
            "  [--warmup N] [--idle-ms MS] [--timeout MS] [--cpu-pid PID] "
            "[--lat-dump FILE]\n"
            "  [--publish FILE] [--send N [--send-link DOMAIN] "
            "[--send-from DOMAIN]\n"
            "  [--batch BYTES] [--window N --window-file FILE]]\n");
}

static int parse_args(int argc,
                      char **argv,
                      struct sink *k,
                      struct sockaddr_in *addr,
                      unsigned *sessions,
                      uint64_t *stanzas,
                      uint64_t *warmup)
{
    bool have_addr = false;
    *sessions = 1;
    *stanzas = 0;
    *warmup = 0;
    k->idle_ms = 5000;
    k->send_link = "b.test";
    k->send_from = "a.test";
    k->batch = 16384;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i];
        const char *v = argv[i + 1];
        uint64_t n;
        if (strcmp(a, "--listen") == 0) {
            if (bench_parse_addr(v, addr) != 0) {
                fprintf(stderr, "comp-sink: bad address %s\n", v);
                return -1;
            }
            have_addr = true;
            continue;
        }
        if (strcmp(a, "--secret") == 0) {
            k->secret = v;
            continue;
        }
        if (strcmp(a, "--lat-dump") == 0) {
            k->lat_dump = v;
            continue;
        }
        if (strcmp(a, "--send-link") == 0) {
            k->send_link = v;
            continue;
        }
        if (strcmp(a, "--send-from") == 0) {
            k->send_from = v;
            continue;
        }
        if (strcmp(a, "--window-file") == 0 || strcmp(a, "--publish") == 0) {
            bool pub = strcmp(a, "--publish") == 0;
            uint64_t *p = bench_progress_map(v, pub);
            if (p == NULL) {
                fprintf(stderr, "comp-sink: cannot map %s\n", v);
                return -1;
            }
            if (pub) {
                k->publish = p;
            } else {
                k->window_ctr = p;
            }
            continue;
        }
        if (bench_parse_u64(v, 0, UINT32_MAX * (uint64_t)16, &n) != 0) {
            fprintf(stderr, "comp-sink: bad value for %s: %s\n", a, v);
            return -1;
        }
        if (strcmp(a, "--sessions") == 0 && n > 0 && n <= 1000000) {
            *sessions = (unsigned)n;
        } else if (strcmp(a, "--stanzas") == 0) {
            *stanzas = n;
        } else if (strcmp(a, "--warmup") == 0) {
            *warmup = n;
        } else if (strcmp(a, "--idle-ms") == 0) {
            k->idle_ms = n;
        } else if (strcmp(a, "--timeout") == 0) {
            k->timeout_ms = n;
        } else if (strcmp(a, "--cpu-pid") == 0 && n <= INT32_MAX) {
            k->cpu_pid = (pid_t)n;
        } else if (strcmp(a, "--send") == 0) {
            k->send_n = n;
        } else if (strcmp(a, "--window") == 0) {
            k->window = n;
        } else if (strcmp(a, "--batch") == 0 && n > 0 &&
                   n <= SINK_OUT_MAX / 2) {
            k->batch = (size_t)n;
        } else {
            fprintf(stderr, "comp-sink: unknown option %s %s\n", a, v);
            return -1;
        }
    }
    if (argc % 2 != 1 || !have_addr || k->secret == NULL ||
        (k->window > 0 && k->window_ctr == NULL)) {
        usage();
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct sink k;
    struct sockaddr_in addr;
    unsigned sessions;
    uint64_t stanzas, warmup;
    int rc = 1;
    k.lfd = k.ep = -1;
    for (size_t i = 0; i < SINK_MAX_LINKS; i++) {
        k.links[i].fd = -1;
    }
    if (parse_args(argc, argv, &k, &addr, &sessions, &stanzas, &warmup) != 0) {
        return 2;
    }
    struct sigaction sa = {.sa_handler = sink_on_signal};
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (bench_acct_init(&k.acct, sessions, stanzas, warmup,
                        k.lat_dump != NULL) != 0) {
        fprintf(stderr, "comp-sink: out of memory\n");
        goto out;
    }
    if (bench_listen(&addr, 64, SINK_LISTEN_TAG, "comp-sink", &k.lfd, &k.ep) !=
        0) {
        goto out;
    }
    fprintf(stderr, "comp-sink: listening\n");
    uint64_t t0 = bench_now_ns();
    struct epoll_event evs[SINK_MAX_EVENTS];
    while (!sink_stop) {
        /* a sender held by its window polls the receiver's count */
        bool polling =
            k.send_n > 0 && k.window > 0 && sink_go && k.sent < k.send_n;
        int n = epoll_wait(k.ep, evs, SINK_MAX_EVENTS, polling ? 1 : 100);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "comp-sink: epoll_wait: %s\n", strerror(errno));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == SINK_LISTEN_TAG) {
                sink_accept(&k);
                continue;
            }
            struct link *l = &k.links[evs[i].data.u64];
            if (l->fd >= 0 && (evs[i].events & ~(uint32_t)EPOLLOUT) != 0) {
                link_read(l);
            } else if (l->fd >= 0) {
                link_flush(l);
            }
        }
        if (k.send_n > 0) {
            sink_send_step(&k);
        }
        if (k.reported || k.acct.expected == 0) {
            continue;
        }
        uint64_t now = bench_now_ns();
        if (k.acct.received == k.acct.expected ||
            (k.acct.received > 0 &&
             now - k.acct.last_ns > k.idle_ms * 1000000u) ||
            (k.timeout_ms > 0 && now - t0 > k.timeout_ms * 1000000u)) {
            bench_acct_report(&k.acct, "comp-sink", k.cpu_pid, k.lat_dump);
            k.reported = true;
        }
    }
    if (k.send_n > 0) {
        /* bounces fedgate sent back for our messages */
        printf("errors_received=%" PRIu64 "\n", k.acct.errors);
        fflush(stdout);
    }
    rc = 0;
out:
    for (size_t i = 0; i < SINK_MAX_LINKS; i++) {
        link_free(&k.links[i]);
    }
    bench_progress_unmap(k.publish);
    bench_progress_unmap(k.window_ctr);
    if (k.lfd >= 0) {
        close(k.lfd);
    }
    if (k.ep >= 0) {
        close(k.ep);
    }
    bench_acct_free(&k.acct);
    return rc;
}
