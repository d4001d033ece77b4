/*
 * e2e-client.c: the XMPP clients of the end-to-end benchmark (bench/e2e.sh,
 * figure 1 of issue 6), written with libstrophe like a real client.
 *
 *   e2e-client --a-host IP --b-host IP --password PW --cafile FILE
 *              [--a-domain a.test] [--b-domain b.test] [--port 15222]
 *              [--pairs 4] [--messages 20000] [--window 1024] [--body 100]
 *              [--login-timeout 30] [--idle-timeout 10]
 *              [--pid NAME=PID]... [--verbose]
 *
 * Pair K (1..N): sender sK@A logs in to A's server, receiver rK@B to B's
 * (resource "bench", TLS verified against --cafile, XEP-0198 off). The
 * sender sends M chat messages to rK@B/bench, numbered 0..M-1 in the body;
 * the receiver ticks each number off in a bitmap, so every message is
 * accounted for: received once, missing, duplicated, or bounced back to the
 * sender as an error.
 *
 * Flow:
 *   on start:   every client logs in, one after the other (see pair_login);
 *               then one thread per pair takes over that pair's libstrophe
 *               context (a context is only ever used by one thread);
 *   warm-up:    the sender sends one unnumbered message until it arrives, so
 *               every s2s route (and fedgate's upstream stream) is up before
 *               anything is timed;
 *   barrier:    when every pair is warm, the main thread reads the CPU time
 *               of each --pid process (/proc/PID/stat utime+stime) and the
 *               clock, then releases all senders at once;
 *   blast:      a sender keeps at most W messages in flight (sent, neither
 *               received nor bounced). libstrophe queues without bound, so
 *               without a window we would measure socket buffers and memory,
 *               not what the path carries;
 *   end:        a pair is done when all M are accounted for, or after
 *               --idle-timeout seconds without progress (the rest count as
 *               missing); the main thread reads CPU times again before
 *               anyone disconnects, so logging out is not measured.
 *
 * Output (stdout, one line each, for bench/e2e.sh to parse):
 *   e2e result pairs=N messages=N*M seconds=S rate=R received=X missing=X
 *       duplicated=X bounced=X failed_pairs=X
 *   e2e cpu name=NAME pid=PID cpu_s=S us_per_msg=U [reads_per_msg=R
 *       writes_per_msg=W wakeups_per_msg=V]   (each --pid, and "client"
 *       for this process; R, W: read(2)/write(2) calls per message, V:
 *       voluntary context switches of the main thread per message)
 * Exit status: 0 when every pair ran (whatever the counts: the caller
 * judges them), 1 when a pair could not log in or warm up, or lost its
 * connection, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <strophe.h>

#define RESOURCE "bench"
#define MAX_PIDS 16
/* Longest JID we build: user + '@' + domain + '/' + resource. */
#define JID_MAX 320
/* libstrophe's loop slice: how often deadlines are looked at. */
#define SLICE_MS 10
/* A warm-up message lost while routes come up is sent again after this. */
#define WARMUP_RESEND_MS 3000
#define LOGOUT_GRACE_MS  2000

enum exit_code {
    EXIT_RAN = 0,
    EXIT_PAIR_FAILED = 1,
    EXIT_USAGE = 2,
};

enum conn_state {
    CONN_CONNECTING = 0,
    CONN_UP,
    CONN_CLOSING, /* we asked for the disconnect */
    CONN_DOWN,
};

struct opts {
    const char *a_host;
    const char *b_host;
    const char *a_domain;
    const char *b_domain;
    const char *password;
    const char *cafile;
    unsigned short port;
    unsigned pairs;
    unsigned messages; /* per pair */
    unsigned window;
    unsigned body;
    unsigned login_timeout_s;
    unsigned idle_timeout_s;
    bool verbose;
};

/* A process whose CPU time is measured over the window. */
struct watched {
    const char *name; /* borrowed from argv, or a literal */
    pid_t pid;        /* 0: this process */
    unsigned long long ticks0;
    unsigned long long ticks1;
    /* read(2) and write(2) calls (/proc/PID/io syscr, syscw; recv and send
     * are not counted) and voluntary context switches (/proc/PID/status,
     * the main thread): how many wake-ups and writes a message costs, which
     * explains much of the CPU */
    unsigned long long sys0[3];
    unsigned long long sys1[3];
    bool ok;
    bool io_ok;
};

/* What the pair threads share with the main thread. */
struct shared {
    const struct opts *o;
    pthread_barrier_t barrier;
    /* Written by the main thread between the first two barriers only. */
    bool go;
};

struct pair {
    struct shared *sh;
    unsigned idx; /* 1-based */
    xmpp_ctx_t *ctx;
    xmpp_conn_t *snd;
    xmpp_conn_t *rcv;
    enum conn_state snd_state;
    enum conn_state rcv_state;
    char snd_jid[JID_MAX];
    char rcv_jid[JID_MAX];
    char *msg;       /* the message text, body rewritten per number */
    size_t cap;      /* bytes at msg */
    size_t head_len; /* "<message ...><body>" */
    bool ready;      /* logged in and warm */
    bool warm;
    bool measuring;
    uint64_t sent;
    uint64_t received; /* distinct numbers */
    uint64_t duplicated;
    uint64_t bounced;
    uint64_t foreign; /* messages that were not ours */
    uint8_t *seen;    /* bitmap of received numbers */
    long long last_rx_ns;
    const char *failure; /* first reason this pair failed, or NULL */
};

static long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pair_fail(struct pair *p, const char *why)
{
    if (p->failure == NULL) {
        p->failure = why;
        fprintf(stderr, "e2e-client: pair %u: %s\n", p->idx, why);
    }
}

/*
 * Reads utime + stime (clock ticks) of pid (0: this process) into *out.
 * Returns 0, or -1 when the process is gone or its stat line is odd.
 */
static int proc_cpu_ticks(pid_t pid, unsigned long long *out)
{
    char path[64];
    char buf[1024];
    FILE *f;
    size_t n;
    char *s;
    char *end;
    unsigned long long v[2];
    int field;

    *out = 0;
    if (pid == 0) {
        snprintf(path, sizeof(path), "/proc/self/stat");
    } else {
        snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    }
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: skip past the last
     * ')'. Then field 3 (state) .. field 15 (stime). */
    s = strrchr(buf, ')');
    if (s == NULL) {
        return -1;
    }
    s++;
    for (field = 3; field < 14; field++) {
        while (*s == ' ') {
            s++;
        }
        s = strchr(s, ' ');
        if (s == NULL) {
            return -1;
        }
    }
    for (field = 0; field < 2; field++) {
        errno = 0;
        v[field] = strtoull(s, &end, 10);
        if (errno != 0 || end == s) {
            return -1;
        }
        s = end;
    }
    *out = v[0] + v[1];
    return 0;
}

/*
 * Reads "KEY value" lines of /proc/PID/FILE (pid 0: this process): the
 * value of keys[i] into out[i]. Returns 0 when every key was found, else
 * -1 (the process is gone, or the file is not readable: /proc/PID/io needs
 * the same user or root).
 */
static int proc_counters(pid_t pid,
                         const char *file,
                         const char *const *keys,
                         size_t nkeys,
                         unsigned long long *out)
{
    char path[64];
    char line[256];
    FILE *f;
    size_t found = 0;
    size_t i;

    if (pid == 0) {
        snprintf(path, sizeof(path), "/proc/self/%s", file);
    } else {
        snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, file);
    }
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        for (i = 0; i < nkeys; i++) {
            size_t n = strlen(keys[i]);

            if (strncmp(line, keys[i], n) == 0) {
                out[i] = strtoull(line + n, NULL, 10);
                found++;
            }
        }
    }
    fclose(f);
    return found == nkeys ? 0 : -1;
}

/* out[0] read(2) calls, out[1] write(2) calls, out[2] voluntary context
 * switches; 0 or -1. */
static int proc_syscalls(pid_t pid, unsigned long long out[3])
{
    static const char *const io_keys[] = {"syscr:", "syscw:"};
    static const char *const status_keys[] = {"voluntary_ctxt_switches:"};

    if (proc_counters(pid, "io", io_keys, 2, out) != 0 ||
        proc_counters(pid, "status", status_keys, 1, out + 2) != 0) {
        return -1;
    }
    return 0;
}

static void watch_snapshot(struct watched *w, size_t nw, bool first)
{
    size_t i;
    unsigned long long t;

    for (i = 0; i < nw; i++) {
        if (first) {
            w[i].ok = proc_cpu_ticks(w[i].pid, &w[i].ticks0) == 0;
            w[i].io_ok = proc_syscalls(w[i].pid, w[i].sys0) == 0;
            continue;
        }
        if (proc_cpu_ticks(w[i].pid, &t) != 0) {
            w[i].ok = false;
        } else {
            w[i].ticks1 = t;
        }
        if (proc_syscalls(w[i].pid, w[i].sys1) != 0) {
            w[i].io_ok = false;
        }
    }
}

/* ---- libstrophe callbacks (run inside the pair's own thread) ---------- */

static void on_conn(xmpp_conn_t *conn,
                    xmpp_conn_event_t event,
                    int error,
                    xmpp_stream_error_t *stream_error,
                    void *userdata)
{
    struct pair *p = userdata;
    enum conn_state *state = conn == p->snd ? &p->snd_state : &p->rcv_state;

    (void)error;
    (void)stream_error;
    if (event == XMPP_CONN_CONNECT) {
        *state = CONN_UP;
        if (conn == p->rcv) {
            /* Available, so the server delivers to this resource at once
             * and never to offline storage. */
            xmpp_send_raw_string(conn, "<presence/>");
        }
        return;
    }
    if (event == XMPP_CONN_RAW_CONNECT) {
        return;
    }
    if (*state != CONN_CLOSING) {
        pair_fail(p, conn == p->snd ? "sender connection lost or refused"
                                    : "receiver connection lost or refused");
    }
    *state = CONN_DOWN;
}

/* Reads "K SEQ ..." from a numbered body; 0 or -1 if it is not one. */
static int parse_body(const char *text, unsigned *k, uint64_t *seq)
{
    char *end;
    unsigned long kk;
    unsigned long long ss;

    errno = 0;
    kk = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != ' ' || kk > UINT_MAX) {
        return -1;
    }
    text = end + 1;
    ss = strtoull(text, &end, 10);
    if (errno != 0 || end == text || (*end != ' ' && *end != '\0')) {
        return -1;
    }
    *k = (unsigned)kk;
    *seq = ss;
    return 0;
}

static int on_rcv_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    struct pair *p = ud;
    xmpp_stanza_t *body = xmpp_stanza_get_child_by_name(st, "body");
    char *text = body != NULL ? xmpp_stanza_get_text(body) : NULL;
    unsigned k;
    uint64_t seq;

    (void)conn;
    if (text == NULL) {
        p->foreign++;
        return 1;
    }
    if (strcmp(text, "warmup") == 0) {
        p->warm = true;
    } else if (parse_body(text, &k, &seq) != 0 || k != p->idx ||
               seq >= p->sh->o->messages || !p->measuring) {
        p->foreign++;
    } else if (p->seen[seq / 8] & (1u << (seq % 8))) {
        p->duplicated++;
    } else {
        p->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
        p->received++;
        p->last_rx_ns = now_ns();
    }
    xmpp_free(p->ctx, text);
    return 1;
}

/* A message the sender gets back: an error for one it sent. */
static int on_snd_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
    struct pair *p = ud;
    const char *type = xmpp_stanza_get_type(st);

    (void)conn;
    if (type != NULL && strcmp(type, "error") == 0 && p->measuring) {
        p->bounced++;
    } else {
        p->foreign++;
    }
    return 1;
}

/* ---- one pair ------------------------------------------------------------ */

static xmpp_conn_t *pair_conn(struct pair *p, const char *jid)
{
    xmpp_conn_t *c = xmpp_conn_new(p->ctx);

    if (c == NULL) {
        return NULL;
    }
    /* TLS mandatory and verified (chain against --cafile, name against the
     * JID's domain), like a real client; no stream management, so nothing
     * but the messages themselves crosses the wire while measuring. */
    xmpp_conn_set_flags(c, XMPP_CONN_FLAG_MANDATORY_TLS |
                               XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_cafile(c, p->sh->o->cafile);
    xmpp_conn_set_jid(c, jid);
    xmpp_conn_set_pass(c, p->sh->o->password);
    return c;
}

/* Starts conn and runs the loop until it is bound (or fails); 0 or -1. */
static int pair_connect_one(struct pair *p,
                            xmpp_conn_t *conn,
                            const char *host,
                            const enum conn_state *state,
                            long long deadline)
{
    if (xmpp_connect_client(conn, host, p->sh->o->port, on_conn, p) !=
        XMPP_EOK) {
        pair_fail(p, "cannot start connecting");
        return -1;
    }
    while (*state != CONN_UP) {
        if (p->failure != NULL) {
            return -1;
        }
        if (now_ns() > deadline) {
            pair_fail(p, "login timeout");
            return -1;
        }
        xmpp_run_once(p->ctx, SLICE_MS);
    }
    return 0;
}

/*
 * Logs the sender in, then the receiver. Called from the main thread for
 * one pair after another, before any pair thread exists: libstrophe 0.12's
 * SHA-1 (SASL SCRAM-SHA-1) works in a static buffer, so logins running in
 * two threads at once fail with "response doesn't match". (Its expat glue
 * also keeps a global pointer to the last context that made a parser:
 * contexts are freed only once every thread has ended.)
 */
static int pair_login(struct pair *p)
{
    const struct opts *o = p->sh->o;
    long long deadline = now_ns() + (long long)o->login_timeout_s * 1000000000;

    p->snd = pair_conn(p, p->snd_jid);
    p->rcv = pair_conn(p, p->rcv_jid);
    if (p->snd == NULL || p->rcv == NULL) {
        pair_fail(p, "cannot create a libstrophe connection");
        return -1;
    }
    xmpp_handler_add(p->rcv, on_rcv_message, NULL, "message", NULL, p);
    xmpp_handler_add(p->snd, on_snd_message, NULL, "message", NULL, p);
    if (pair_connect_one(p, p->snd, o->a_host, &p->snd_state, deadline) != 0 ||
        pair_connect_one(p, p->rcv, o->b_host, &p->rcv_state, deadline) != 0) {
        return -1;
    }
    return 0;
}

static void pair_send_text(struct pair *p, const char *body)
{
    xmpp_send_raw_string(p->snd,
                         "<message to='%s' type='chat'><body>%s</body>"
                         "</message>",
                         p->rcv_jid, body);
}

/* One message across, so every route on the path is up. */
static int pair_warmup(struct pair *p)
{
    const struct opts *o = p->sh->o;
    long long deadline = now_ns() + (long long)o->login_timeout_s * 1000000000;
    long long resend = 0;

    while (!p->warm) {
        long long t = now_ns();

        if (p->failure != NULL) {
            return -1;
        }
        if (t > deadline) {
            pair_fail(p, "warm-up message never arrived");
            return -1;
        }
        if (t >= resend) {
            pair_send_text(p, "warmup");
            resend = t + WARMUP_RESEND_MS * 1000000LL;
        }
        xmpp_run_once(p->ctx, SLICE_MS);
    }
    return 0;
}

#define MSG_TAIL "</body></message>"

/*
 * Builds the fixed head of every numbered message once; pair_send_seq()
 * then writes only the body: "K SEQ " padded with 'x' to --body bytes.
 */
static int pair_prepare(struct pair *p)
{
    const struct opts *o = p->sh->o;
    int n;

    /* head + the longest "K SEQ " (32) or the padding, + tail + NUL */
    p->cap = strlen(p->rcv_jid) + 64 + o->body + 32 + sizeof(MSG_TAIL);
    p->msg = malloc(p->cap);
    p->seen = calloc((size_t)o->messages / 8 + 1, 1);
    if (p->msg == NULL || p->seen == NULL) {
        pair_fail(p, "out of memory");
        return -1;
    }
    n = snprintf(p->msg, p->cap, "<message to='%s' type='chat'><body>",
                 p->rcv_jid);
    if (n < 0 || (size_t)n >= p->cap) {
        pair_fail(p, "message buffer too small");
        return -1;
    }
    p->head_len = (size_t)n;
    return 0;
}

static void pair_send_seq(struct pair *p, uint64_t seq)
{
    const struct opts *o = p->sh->o;
    char *b = p->msg + p->head_len;
    size_t room = p->cap - p->head_len - sizeof(MSG_TAIL);
    size_t len;
    int n;

    n = snprintf(b, room, "%u %" PRIu64 " ", p->idx, seq);
    if (n < 0 || (size_t)n >= room) {
        pair_fail(p, "message buffer too small");
        return;
    }
    len = (size_t)n;
    while (len < o->body && len < room) {
        b[len++] = 'x';
    }
    /* The tail with its NUL: libstrophe 0.12's xmpp_send_raw() runs
     * strlen() on the data despite the length argument. */
    memcpy(b + len, MSG_TAIL, sizeof(MSG_TAIL));
    len += sizeof(MSG_TAIL) - 1;
    xmpp_send_raw(p->snd, p->msg, p->head_len + len);
    p->sent++;
}

static void pair_blast(struct pair *p)
{
    const struct opts *o = p->sh->o;
    long long idle_ns = (long long)o->idle_timeout_s * 1000000000;
    long long last_progress = now_ns();
    uint64_t last_done = 0;

    p->measuring = true;
    for (;;) {
        uint64_t done = p->received + p->bounced;

        if (done >= o->messages) {
            break;
        }
        while (p->sent < o->messages && p->sent - done < o->window &&
               p->failure == NULL) {
            pair_send_seq(p, p->sent);
        }
        if (p->failure != NULL) {
            break;
        }
        xmpp_run_once(p->ctx, SLICE_MS);
        if (p->received + p->bounced != last_done) {
            last_done = p->received + p->bounced;
            last_progress = now_ns();
        } else if (now_ns() - last_progress > idle_ns) {
            fprintf(stderr,
                    "e2e-client: pair %u: nothing for %us: %" PRIu64
                    " of %u accounted for\n",
                    p->idx, o->idle_timeout_s, last_done, o->messages);
            break;
        }
    }
    p->measuring = false;
}

static void pair_logout(struct pair *p)
{
    long long deadline = now_ns() + LOGOUT_GRACE_MS * 1000000LL;

    if (p->snd != NULL && p->snd_state == CONN_UP) {
        p->snd_state = CONN_CLOSING;
        xmpp_disconnect(p->snd);
    }
    if (p->rcv != NULL && p->rcv_state == CONN_UP) {
        p->rcv_state = CONN_CLOSING;
        xmpp_disconnect(p->rcv);
    }
    while ((p->snd_state == CONN_CLOSING || p->rcv_state == CONN_CLOSING ||
            p->snd_state == CONN_CONNECTING ||
            p->rcv_state == CONN_CONNECTING) &&
           now_ns() < deadline) {
        xmpp_run_once(p->ctx, SLICE_MS);
    }
}

static void *pair_main(void *arg)
{
    struct pair *p = arg;

    p->ready = p->failure == NULL && pair_warmup(p) == 0;
    pthread_barrier_wait(&p->sh->barrier); /* 1: everyone warm */
    pthread_barrier_wait(&p->sh->barrier); /* 2: go (CPU read by main) */
    if (p->sh->go) {
        pair_blast(p);
    }
    pthread_barrier_wait(&p->sh->barrier); /* 3: everyone done */
    pthread_barrier_wait(&p->sh->barrier); /* 4: CPU read again by main */
    pair_logout(p);
    return NULL;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: e2e-client --a-host IP --b-host IP --password PW "
               "--cafile FILE\n"
               "         [--a-domain D] [--b-domain D] [--port P] [--pairs N]\n"
               "         [--messages M] [--window W] [--body BYTES]\n"
               "         [--login-timeout S] [--idle-timeout S]\n"
               "         [--pid NAME=PID]... [--verbose]\n");
}

/* Parses an unsigned in [lo, hi]; 0 or -1. */
static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_pid(char *arg, struct watched *w)
{
    char *eq = strchr(arg, '=');
    unsigned pid;

    if (eq == NULL || eq == arg || parse_uint(eq + 1, 1, INT_MAX, &pid) != 0) {
        return -1;
    }
    *eq = '\0';
    w->name = arg;
    w->pid = (pid_t)pid;
    return 0;
}

static int
parse_args(int argc, char **argv, struct opts *o, struct watched *w, size_t *nw)
{
    static const struct option longopts[] = {
        {"a-host", required_argument, NULL, 'A'},
        {"b-host", required_argument, NULL, 'B'},
        {"a-domain", required_argument, NULL, 'a'},
        {"b-domain", required_argument, NULL, 'b'},
        {"password", required_argument, NULL, 'P'},
        {"cafile", required_argument, NULL, 'c'},
        {"port", required_argument, NULL, 'p'},
        {"pairs", required_argument, NULL, 'n'},
        {"messages", required_argument, NULL, 'm'},
        {"window", required_argument, NULL, 'w'},
        {"body", required_argument, NULL, 'y'},
        {"login-timeout", required_argument, NULL, 'L'},
        {"idle-timeout", required_argument, NULL, 'I'},
        {"pid", required_argument, NULL, 'k'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned port = 15222;
    int c;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int bad = 0;

        switch (c) {
        case 'A':
            o->a_host = optarg;
            break;
        case 'B':
            o->b_host = optarg;
            break;
        case 'a':
            o->a_domain = optarg;
            break;
        case 'b':
            o->b_domain = optarg;
            break;
        case 'P':
            o->password = optarg;
            break;
        case 'c':
            o->cafile = optarg;
            break;
        case 'p':
            bad = parse_uint(optarg, 1, 65535, &port);
            break;
        case 'n':
            bad = parse_uint(optarg, 1, 256, &o->pairs);
            break;
        case 'm':
            bad = parse_uint(optarg, 1, 100000000, &o->messages);
            break;
        case 'w':
            bad = parse_uint(optarg, 1, 1000000, &o->window);
            break;
        case 'y':
            bad = parse_uint(optarg, 16, 65536, &o->body);
            break;
        case 'L':
            bad = parse_uint(optarg, 1, 3600, &o->login_timeout_s);
            break;
        case 'I':
            bad = parse_uint(optarg, 1, 3600, &o->idle_timeout_s);
            break;
        case 'k':
            /* One slot is kept for the client itself. */
            if (*nw + 1 >= MAX_PIDS) {
                fprintf(stderr, "e2e-client: at most %d --pid\n", MAX_PIDS - 1);
                return -1;
            }
            bad = parse_pid(optarg, &w[*nw]);
            if (bad == 0) {
                (*nw)++;
            }
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_RAN);
        default:
            return -1;
        }
        if (bad != 0) {
            fprintf(stderr, "e2e-client: bad option value: %s\n", optarg);
            return -1;
        }
    }
    o->port = (unsigned short)port;
    if (optind != argc || o->a_host == NULL || o->b_host == NULL ||
        o->password == NULL || o->cafile == NULL) {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {
        .a_domain = "a.test",
        .b_domain = "b.test",
        .pairs = 4,
        .messages = 20000,
        .window = 1024,
        .body = 100,
        .login_timeout_s = 30,
        .idle_timeout_s = 10,
    };
    struct watched w[MAX_PIDS];
    size_t nw = 0;
    struct shared sh = {.o = &o};
    struct pair *pairs = NULL;
    pthread_t *threads = NULL;
    unsigned started = 0;
    unsigned i;
    bool barrier_made = false;
    bool all_ready = true;
    long long t0;
    long long t1;
    long long last_rx = 0;
    uint64_t received = 0, duplicated = 0, bounced = 0, foreign = 0;
    unsigned failed = 0;
    double seconds;
    double rate;
    double total;
    long hz;
    size_t k;
    int ret = EXIT_USAGE;

    memset(w, 0, sizeof(w));
    if (parse_args(argc, argv, &o, w, &nw) != 0) {
        usage(stderr);
        return EXIT_USAGE;
    }
    w[nw].name = "client";
    w[nw].pid = 0;
    nw++;
    hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0) {
        fprintf(stderr, "e2e-client: no clock tick rate\n");
        return EXIT_USAGE;
    }

    pairs = calloc(o.pairs, sizeof(*pairs));
    threads = calloc(o.pairs, sizeof(*threads));
    if (pairs == NULL || threads == NULL) {
        fprintf(stderr, "e2e-client: out of memory\n");
        goto out;
    }
    xmpp_initialize();
    ret = EXIT_PAIR_FAILED;
    for (i = 0; i < o.pairs; i++) {
        struct pair *p = &pairs[i];

        p->sh = &sh;
        p->idx = i + 1;
        snprintf(p->snd_jid, sizeof(p->snd_jid), "s%u@%s/%s", p->idx,
                 o.a_domain, RESOURCE);
        snprintf(p->rcv_jid, sizeof(p->rcv_jid), "r%u@%s/%s", p->idx,
                 o.b_domain, RESOURCE);
        p->ctx = xmpp_ctx_new(
            NULL, o.verbose ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL);
        if (p->ctx == NULL) {
            fprintf(stderr, "e2e-client: cannot create a libstrophe context\n");
            goto out;
        }
        /* A failed pair is reported and still gets its thread: the
         * barriers count every pair. */
        (void)(pair_prepare(p) == 0 && pair_login(p) == 0);
    }
    if (pthread_barrier_init(&sh.barrier, NULL, o.pairs + 1) != 0) {
        fprintf(stderr, "e2e-client: pthread_barrier_init failed\n");
        goto out;
    }
    barrier_made = true;
    for (i = 0; i < o.pairs; i++) {
        if (pthread_create(&threads[i], NULL, pair_main, &pairs[i]) != 0) {
            /* The barrier counts every thread: without this one nobody
             * would get past it. */
            fprintf(stderr, "e2e-client: pthread_create failed\n");
            abort();
        }
        started++;
    }

    pthread_barrier_wait(&sh.barrier); /* 1 */
    for (i = 0; i < o.pairs; i++) {
        all_ready = all_ready && pairs[i].ready;
    }
    sh.go = all_ready;
    fprintf(stderr, "e2e-client: %u pairs %s; %u messages each, window %u\n",
            o.pairs, all_ready ? "logged in and warm" : "NOT all ready",
            o.messages, o.window);
    watch_snapshot(w, nw, true);
    t0 = now_ns();
    pthread_barrier_wait(&sh.barrier); /* 2 */
    pthread_barrier_wait(&sh.barrier); /* 3 */
    t1 = now_ns();
    watch_snapshot(w, nw, false);
    pthread_barrier_wait(&sh.barrier); /* 4 */
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    started = 0;

    for (i = 0; i < o.pairs; i++) {
        struct pair *p = &pairs[i];

        received += p->received;
        duplicated += p->duplicated;
        bounced += p->bounced;
        foreign += p->foreign;
        failed += p->failure != NULL;
        if (p->last_rx_ns > last_rx) {
            last_rx = p->last_rx_ns;
        }
    }
    /* The window closes at the last message received; idle waits at the
     * end (lost messages) would only dilute the rate. */
    if (last_rx <= t0) {
        last_rx = t1;
    }
    total = (double)o.pairs * o.messages;
    seconds = (double)(last_rx - t0) / 1e9;
    rate = seconds > 0 ? (double)received / seconds : 0.0;
    printf("e2e result pairs=%u messages=%.0f seconds=%.3f rate=%.1f "
           "received=%" PRIu64 " missing=%.0f duplicated=%" PRIu64
           " bounced=%" PRIu64 " foreign=%" PRIu64 " failed_pairs=%u\n",
           o.pairs, total, seconds, rate, received,
           total - (double)received - (double)bounced, duplicated, bounced,
           foreign, failed);
    for (k = 0; k < nw; k++) {
        double cpu;

        if (!w[k].ok || w[k].ticks1 < w[k].ticks0) {
            printf("e2e cpu name=%s pid=%ld cpu_s=NA us_per_msg=NA\n",
                   w[k].name, (long)(w[k].pid != 0 ? w[k].pid : getpid()));
            continue;
        }
        cpu = (double)(w[k].ticks1 - w[k].ticks0) / (double)hz;
        printf("e2e cpu name=%s pid=%ld cpu_s=%.2f us_per_msg=%.1f", w[k].name,
               (long)(w[k].pid != 0 ? w[k].pid : getpid()), cpu,
               received > 0 ? cpu * 1e6 / (double)received : 0.0);
        if (w[k].io_ok && received > 0) {
            printf(" reads_per_msg=%.2f writes_per_msg=%.2f "
                   "wakeups_per_msg=%.2f",
                   (double)(w[k].sys1[0] - w[k].sys0[0]) / (double)received,
                   (double)(w[k].sys1[1] - w[k].sys0[1]) / (double)received,
                   (double)(w[k].sys1[2] - w[k].sys0[2]) / (double)received);
        }
        putchar('\n');
    }
    fflush(stdout);
    ret = all_ready && failed == 0 ? EXIT_RAN : EXIT_PAIR_FAILED;
out:
    for (i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    if (barrier_made) {
        pthread_barrier_destroy(&sh.barrier);
    }
    if (pairs != NULL) {
        for (i = 0; i < o.pairs; i++) {
            if (pairs[i].snd != NULL) {
                xmpp_conn_release(pairs[i].snd);
            }
            if (pairs[i].rcv != NULL) {
                xmpp_conn_release(pairs[i].rcv);
            }
            if (pairs[i].ctx != NULL) {
                xmpp_ctx_free(pairs[i].ctx);
            }
            free(pairs[i].msg);
            free(pairs[i].seen);
        }
    }
    if (ret != EXIT_USAGE) {
        xmpp_shutdown();
    }
    free(pairs);
    free(threads);
    return ret;
}
