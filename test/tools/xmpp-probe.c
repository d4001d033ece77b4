/*
 * xmpp-probe.c: a small XMPP client for the integration tests.
 *
 * It logs in as a real user over verified TLS (libstrophe, client mode),
 * runs a list of iq commands in order on that one connection and prints one
 * status line per command, so a shell test can assert on what a real client
 * sees:
 *
 *   xmpp-probe --jid user@a.test --password PW --host 127.0.1.1 --port 5222
 *              [--cafile FILE] [--timeout SECS] [--verbose] COMMAND...
 *
 * Commands (each may repeat):
 *   ping JID                        XEP-0199; succeeds on a result
 *   disco-info JID                  XEP-0030; prints "identity cat/type name"
 *                                   and "feature VAR" lines
 *   disco-items JID                 XEP-0030; prints "item JID [node] [name]"
 *   version JID                     XEP-0092; prints name, version and os
 *   expect-error CONDITION ping JID succeeds only if the ping fails with that
 *                                   stanza error condition
 *
 * Output: "ok COMMAND JID ..." or "fail COMMAND JID: reason" per command,
 * detail lines after a successful disco or version. Exit status: 0 when
 * every command succeeded, 1 when one failed or the overall timeout hit
 * after login, 2 when connecting, TLS or authentication failed (or the
 * timeout hit before login), 3 on a usage error.
 *
 * Flow: connect (TLS mandatory, certificate checked against --cafile and the
 * JID's domain) -> on CONNECT send command 0 -> on its reply (matched by id)
 * print, send the next -> after the last, disconnect. A global deadline
 * bounds everything; our own loop drives xmpp_run_once() so it can stop.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <strophe.h>

#define NS_PING        "urn:xmpp:ping"
#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_VERSION     "jabber:iq:version"
#define NS_STANZAS     "urn:ietf:params:xml:ns:xmpp-stanzas"

/* How long a clean disconnect may take after the overall timeout. */
#define DISCONNECT_GRACE_MS 500
/* Granularity of our loop: the deadline is checked this often. */
#define RUN_SLICE_MS 50

enum probe_exit {
    PROBE_EXIT_OK = 0,
    PROBE_EXIT_FAILED = 1,
    PROBE_EXIT_CONNECT = 2,
    PROBE_EXIT_USAGE = 3,
};

enum probe_kind {
    PROBE_PING,
    PROBE_DISCO_INFO,
    PROBE_DISCO_ITEMS,
    PROBE_VERSION,
    PROBE_EXPECT_ERROR_PING,
};

struct probe_cmd {
    enum probe_kind kind;
    const char *target;    /* borrowed from argv */
    const char *condition; /* expect-error only; borrowed from argv */
};

struct probe {
    xmpp_ctx_t *ctx;
    xmpp_conn_t *conn;
    struct probe_cmd *cmds;
    size_t ncmds;
    size_t next;    /* index of the command awaiting a reply */
    size_t nfailed; /* commands that did not succeed */
    bool logged_in; /* CONNECT seen: later failures are not exit 2 */
    bool finished;  /* every command answered */
    bool disconnected;
    bool timed_out; /* the deadline passed: already reported */
    char sent_id[32];
    struct timespec sent_at;
};

static const char *kind_name(enum probe_kind kind)
{
    switch (kind) {
    case PROBE_PING:
        return "ping";
    case PROBE_DISCO_INFO:
        return "disco-info";
    case PROBE_DISCO_ITEMS:
        return "disco-items";
    case PROBE_VERSION:
        return "version";
    case PROBE_EXPECT_ERROR_PING:
        return "expect-error";
    }
    return "?";
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long elapsed_ms(const struct timespec *since)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)(ts.tv_sec - since->tv_sec) * 1000 +
           (ts.tv_nsec - since->tv_nsec) / 1000000;
}

/* Prints the status line prefix shared by every result. */
static void print_head(const char *verdict, const struct probe_cmd *cmd)
{
    if (cmd->kind == PROBE_EXPECT_ERROR_PING) {
        printf("%s expect-error %s ping %s", verdict, cmd->condition,
               cmd->target);
    } else {
        printf("%s %s %s", verdict, kind_name(cmd->kind), cmd->target);
    }
}

static void
report_fail(struct probe *p, const struct probe_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
report_fail(struct probe *p, const struct probe_cmd *cmd, const char *fmt, ...)
{
    va_list ap;

    print_head("fail", cmd);
    fputs(": ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    p->nfailed++;
}

/* Returns the first child element of parent named name in ns, or NULL. */
static xmpp_stanza_t *
child(xmpp_stanza_t *parent, const char *name, const char *ns)
{
    if (parent == NULL) {
        return NULL;
    }
    return xmpp_stanza_get_child_by_name_and_ns(parent, name, ns);
}

static const char *
attr_or(xmpp_stanza_t *st, const char *name, const char *fallback)
{
    const char *v = xmpp_stanza_get_attribute(st, name);

    return v != NULL ? v : fallback;
}

/*
 * Describes a stanza error: sets *condition to the defined condition (or
 * "undefined-condition" when none is given), *type to the error type and
 * *text to the human-readable text (borrowed from the stanza, or "").
 */
static void error_info(xmpp_stanza_t *iq,
                       const char **condition,
                       const char **type,
                       const char **text)
{
    xmpp_stanza_t *err = xmpp_stanza_get_child_by_name(iq, "error");
    xmpp_stanza_t *c;

    *condition = "undefined-condition";
    *type = "?";
    *text = "";
    if (err == NULL) {
        return;
    }
    *type = attr_or(err, "type", "?");
    for (c = xmpp_stanza_get_children(err); c != NULL;
         c = xmpp_stanza_get_next(c)) {
        const char *name = xmpp_stanza_get_name(c);
        const char *ns = xmpp_stanza_get_ns(c);

        if (!xmpp_stanza_is_tag(c) || ns == NULL ||
            strcmp(ns, NS_STANZAS) != 0) {
            continue;
        }
        if (strcmp(name, "text") == 0) {
            const char *t =
                xmpp_stanza_get_text_ptr(xmpp_stanza_get_children(c));

            *text = t != NULL ? t : "";
        } else {
            *condition = name;
        }
    }
}

/* Prints the text content of child name under query, or "" when absent. */
static void
print_child_text(xmpp_ctx_t *ctx, xmpp_stanza_t *query, const char *name)
{
    xmpp_stanza_t *c = xmpp_stanza_get_child_by_name(query, name);
    char *text = c != NULL ? xmpp_stanza_get_text(c) : NULL;

    printf(" %s=\"%s\"", name, text != NULL ? text : "");
    xmpp_free(ctx, text);
}

static void print_disco_info(xmpp_stanza_t *query)
{
    xmpp_stanza_t *c;

    for (c = xmpp_stanza_get_children(query); c != NULL;
         c = xmpp_stanza_get_next(c)) {
        const char *name;

        if (!xmpp_stanza_is_tag(c)) {
            continue;
        }
        name = xmpp_stanza_get_name(c);
        if (strcmp(name, "identity") == 0) {
            printf("identity %s/%s %s\n", attr_or(c, "category", "?"),
                   attr_or(c, "type", "?"), attr_or(c, "name", ""));
        } else if (strcmp(name, "feature") == 0) {
            printf("feature %s\n", attr_or(c, "var", "?"));
        }
    }
}

static void print_disco_items(xmpp_stanza_t *query)
{
    xmpp_stanza_t *c;

    for (c = xmpp_stanza_get_children(query); c != NULL;
         c = xmpp_stanza_get_next(c)) {
        if (!xmpp_stanza_is_tag(c) ||
            strcmp(xmpp_stanza_get_name(c), "item") != 0) {
            continue;
        }
        printf("item %s", attr_or(c, "jid", "?"));
        if (xmpp_stanza_get_attribute(c, "node") != NULL) {
            printf(" node=%s", xmpp_stanza_get_attribute(c, "node"));
        }
        if (xmpp_stanza_get_attribute(c, "name") != NULL) {
            printf(" name=%s", xmpp_stanza_get_attribute(c, "name"));
        }
        fputc('\n', stdout);
    }
}

/* Judges one reply against its command and prints the result lines. */
static void
judge_reply(struct probe *p, const struct probe_cmd *cmd, xmpp_stanza_t *iq)
{
    const char *type = attr_or(iq, "type", "");
    const char *from = xmpp_stanza_get_attribute(iq, "from");
    long long ms = elapsed_ms(&p->sent_at);
    const char *cond, *etype, *text;
    xmpp_stanza_t *query;

    /* An answer from anyone but the addressee would hide a routing bug. */
    if (from != NULL && strcasecmp(from, cmd->target) != 0) {
        report_fail(p, cmd, "reply from unexpected JID %s", from);
        return;
    }
    if (strcmp(type, "error") == 0) {
        error_info(iq, &cond, &etype, &text);
        if (cmd->kind == PROBE_EXPECT_ERROR_PING &&
            strcmp(cond, cmd->condition) == 0) {
            print_head("ok", cmd);
            printf(" (%s/%s \"%s\", %lld ms)\n", etype, cond, text, ms);
            return;
        }
        report_fail(p, cmd, "error %s/%s \"%s\"", etype, cond, text);
        return;
    }
    if (strcmp(type, "result") != 0) {
        report_fail(p, cmd, "unexpected iq type \"%s\"", type);
        return;
    }

    switch (cmd->kind) {
    case PROBE_PING:
        print_head("ok", cmd);
        printf(" (%lld ms)\n", ms);
        break;
    case PROBE_EXPECT_ERROR_PING:
        report_fail(p, cmd, "got a result, expected error %s", cmd->condition);
        break;
    case PROBE_DISCO_INFO:
        query = child(iq, "query", NS_DISCO_INFO);
        if (query == NULL) {
            report_fail(p, cmd, "result without disco#info query");
            break;
        }
        print_head("ok", cmd);
        printf(" (%lld ms)\n", ms);
        print_disco_info(query);
        break;
    case PROBE_DISCO_ITEMS:
        query = child(iq, "query", NS_DISCO_ITEMS);
        if (query == NULL) {
            report_fail(p, cmd, "result without disco#items query");
            break;
        }
        print_head("ok", cmd);
        printf(" (%lld ms)\n", ms);
        print_disco_items(query);
        break;
    case PROBE_VERSION:
        query = child(iq, "query", NS_VERSION);
        if (query == NULL ||
            xmpp_stanza_get_child_by_name(query, "name") == NULL) {
            report_fail(p, cmd, "result without jabber:iq:version name");
            break;
        }
        print_head("ok", cmd);
        print_child_text(p->ctx, query, "name");
        print_child_text(p->ctx, query, "version");
        print_child_text(p->ctx, query, "os");
        printf(" (%lld ms)\n", ms);
        break;
    }
    fflush(stdout);
}

static int send_next(struct probe *p);

static int on_reply(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *userdata)
{
    struct probe *p = userdata;

    (void)conn;
    judge_reply(p, &p->cmds[p->next], stanza);
    p->next++;
    if (send_next(p) < 0) {
        xmpp_disconnect(p->conn);
    }
    return 0; /* one reply per id: remove this handler */
}

/*
 * Sends the command at p->next, or marks the run finished and disconnects
 * when there is none. Returns 0 or -1 when the stanza cannot be built.
 */
static int send_next(struct probe *p)
{
    const struct probe_cmd *cmd;
    xmpp_stanza_t *iq = NULL, *q = NULL;
    const char *ns = NULL, *name = "query";
    int ret = -1;

    if (p->next >= p->ncmds) {
        p->finished = true;
        xmpp_disconnect(p->conn);
        return 0;
    }
    cmd = &p->cmds[p->next];
    switch (cmd->kind) {
    case PROBE_PING:
    case PROBE_EXPECT_ERROR_PING:
        ns = NS_PING;
        name = "ping";
        break;
    case PROBE_DISCO_INFO:
        ns = NS_DISCO_INFO;
        break;
    case PROBE_DISCO_ITEMS:
        ns = NS_DISCO_ITEMS;
        break;
    case PROBE_VERSION:
        ns = NS_VERSION;
        break;
    }

    snprintf(p->sent_id, sizeof(p->sent_id), "probe%zu", p->next + 1);
    iq = xmpp_iq_new(p->ctx, "get", p->sent_id);
    q = xmpp_stanza_new(p->ctx);
    if (iq == NULL || q == NULL) {
        goto out;
    }
    xmpp_stanza_set_to(iq, cmd->target);
    xmpp_stanza_set_name(q, name);
    xmpp_stanza_set_ns(q, ns);
    xmpp_stanza_add_child(iq, q);

    xmpp_id_handler_add(p->conn, on_reply, p->sent_id, p);
    clock_gettime(CLOCK_MONOTONIC, &p->sent_at);
    xmpp_send(p->conn, iq);
    ret = 0;
out:
    if (q != NULL) {
        xmpp_stanza_release(q);
    }
    if (iq != NULL) {
        xmpp_stanza_release(iq);
    }
    return ret;
}

static void on_conn(xmpp_conn_t *conn,
                    xmpp_conn_event_t event,
                    int error,
                    xmpp_stream_error_t *stream_error,
                    void *userdata)
{
    struct probe *p = userdata;

    if (event == XMPP_CONN_CONNECT) {
        p->logged_in = true;
        if (send_next(p) < 0) {
            fprintf(stderr, "xmpp-probe: out of memory\n");
            xmpp_disconnect(conn);
        }
        return;
    }
    if (event != XMPP_CONN_DISCONNECT && event != XMPP_CONN_FAIL) {
        return;
    }
    p->disconnected = true;
    if (p->finished || p->timed_out) {
        return;
    }
    if (!p->logged_in) {
        fprintf(stderr, "xmpp-probe: connect/TLS/auth failed (error %d%s%s)\n",
                error, stream_error != NULL ? ", stream error: " : "",
                stream_error != NULL && stream_error->text != NULL
                    ? stream_error->text
                    : "");
    } else {
        fprintf(stderr,
                "xmpp-probe: disconnected with %zu command(s) pending "
                "(error %d%s%s)\n",
                p->ncmds - p->next, error,
                stream_error != NULL ? ", stream error: " : "",
                stream_error != NULL && stream_error->text != NULL
                    ? stream_error->text
                    : "");
    }
}

/* Reports every command that never got an answer. */
static void fail_pending(struct probe *p, const char *why)
{
    for (; p->next < p->ncmds; p->next++) {
        report_fail(p, &p->cmds[p->next], "%s", why);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: xmpp-probe --jid JID --password PW --host ADDR "
               "[--port N]\n"
               "                  [--cafile FILE] [--timeout SECS] [--verbose] "
               "COMMAND...\n"
               "commands: ping JID | disco-info JID | disco-items JID | "
               "version JID\n"
               "          | expect-error CONDITION ping JID\n"
               "exit: 0 all ok, 1 a command failed, 2 connect/TLS/auth "
               "failure, 3 usage\n");
}

/* Parses a decimal in [min, max]; 0 or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

/*
 * Parses argv[0..argc) into cmds (room for argc entries). Returns the number
 * of commands or -1 with a message on stderr.
 */
static long parse_commands(int argc, char **argv, struct probe_cmd *cmds)
{
    long n = 0;
    int i = 0;

    while (i < argc) {
        struct probe_cmd *c = &cmds[n];
        const char *word = argv[i];

        c->condition = NULL;
        if (strcmp(word, "expect-error") == 0) {
            if (i + 3 >= argc || strcmp(argv[i + 2], "ping") != 0) {
                fprintf(stderr, "xmpp-probe: expect-error CONDITION ping "
                                "JID\n");
                return -1;
            }
            c->kind = PROBE_EXPECT_ERROR_PING;
            c->condition = argv[i + 1];
            c->target = argv[i + 3];
            i += 4;
        } else {
            if (strcmp(word, "ping") == 0) {
                c->kind = PROBE_PING;
            } else if (strcmp(word, "disco-info") == 0) {
                c->kind = PROBE_DISCO_INFO;
            } else if (strcmp(word, "disco-items") == 0) {
                c->kind = PROBE_DISCO_ITEMS;
            } else if (strcmp(word, "version") == 0) {
                c->kind = PROBE_VERSION;
            } else {
                fprintf(stderr, "xmpp-probe: unknown command \"%s\"\n", word);
                return -1;
            }
            if (i + 1 >= argc) {
                fprintf(stderr, "xmpp-probe: %s needs a JID\n", word);
                return -1;
            }
            c->target = argv[i + 1];
            i += 2;
        }
        n++;
    }
    return n;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"jid", required_argument, NULL, 'j'},
        {"password", required_argument, NULL, 'p'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'P'},
        {"cafile", required_argument, NULL, 'c'},
        {"timeout", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *jid = NULL, *password = NULL, *host = NULL, *cafile = NULL;
    long port = 5222, timeout_s = 10, ncmds;
    bool verbose = false, initialized = false;
    struct probe p;
    long long deadline;
    int opt, ret = PROBE_EXIT_USAGE;

    memset(&p, 0, sizeof(p));
    while ((opt = getopt_long(argc, argv, "+j:p:H:P:c:t:vh", opts, NULL)) !=
           -1) {
        switch (opt) {
        case 'j':
            jid = optarg;
            break;
        case 'p':
            password = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        case 'P':
            if (parse_long(optarg, 1, 65535, &port) < 0) {
                fprintf(stderr, "xmpp-probe: bad --port %s\n", optarg);
                return PROBE_EXIT_USAGE;
            }
            break;
        case 'c':
            cafile = optarg;
            break;
        case 't':
            if (parse_long(optarg, 1, 3600, &timeout_s) < 0) {
                fprintf(stderr, "xmpp-probe: bad --timeout %s\n", optarg);
                return PROBE_EXIT_USAGE;
            }
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return PROBE_EXIT_OK;
        default:
            usage(stderr);
            return PROBE_EXIT_USAGE;
        }
    }
    if (jid == NULL || password == NULL || host == NULL || optind >= argc) {
        usage(stderr);
        return PROBE_EXIT_USAGE;
    }
    p.cmds = calloc((size_t)(argc - optind), sizeof(*p.cmds));
    if (p.cmds == NULL) {
        fprintf(stderr, "xmpp-probe: out of memory\n");
        return PROBE_EXIT_USAGE;
    }
    ncmds = parse_commands(argc - optind, argv + optind, p.cmds);
    if (ncmds <= 0) {
        usage(stderr);
        goto out;
    }
    p.ncmds = (size_t)ncmds;

    xmpp_initialize();
    initialized = true;
    p.ctx = xmpp_ctx_new(
        NULL, verbose ? xmpp_get_default_logger(XMPP_LEVEL_DEBUG) : NULL);
    p.conn = p.ctx != NULL ? xmpp_conn_new(p.ctx) : NULL;
    if (p.conn == NULL) {
        fprintf(stderr, "xmpp-probe: cannot create libstrophe context\n");
        ret = PROBE_EXIT_CONNECT;
        goto out;
    }
    /*
     * TLS is mandatory and never trusted blindly: libstrophe checks the
     * chain against cafile and the name against the JID's domain, and
     * without a certfail handler a bad certificate ends the connection.
     */
    xmpp_conn_set_flags(p.conn, XMPP_CONN_FLAG_MANDATORY_TLS);
    if (cafile != NULL) {
        xmpp_conn_set_cafile(p.conn, cafile);
    }
    xmpp_conn_set_jid(p.conn, jid);
    xmpp_conn_set_pass(p.conn, password);

    deadline = now_ms() + timeout_s * 1000;
    if (xmpp_connect_client(p.conn, host, (unsigned short)port, on_conn, &p) !=
        XMPP_EOK) {
        fprintf(stderr, "xmpp-probe: cannot connect to %s:%ld\n", host, port);
        ret = PROBE_EXIT_CONNECT;
        goto out;
    }
    while (!p.disconnected && now_ms() < deadline) {
        xmpp_run_once(p.ctx, RUN_SLICE_MS);
    }
    if (!p.disconnected) {
        p.timed_out = true;
        if (!p.logged_in) {
            fprintf(stderr, "xmpp-probe: timeout (%lds) before login\n",
                    timeout_s);
        } else {
            fail_pending(&p, "timeout");
            /* Close the stream politely; the exit status is already set. */
            xmpp_disconnect(p.conn);
            deadline = now_ms() + DISCONNECT_GRACE_MS;
            while (!p.disconnected && now_ms() < deadline) {
                xmpp_run_once(p.ctx, RUN_SLICE_MS);
            }
        }
    }
    if (!p.logged_in) {
        ret = PROBE_EXIT_CONNECT;
    } else {
        fail_pending(&p, "disconnected before the reply");
        ret = p.nfailed == 0 ? PROBE_EXIT_OK : PROBE_EXIT_FAILED;
    }
out:
    if (p.conn != NULL) {
        xmpp_conn_release(p.conn);
    }
    if (p.ctx != NULL) {
        xmpp_ctx_free(p.ctx);
    }
    if (initialized) {
        xmpp_shutdown();
    }
    free(p.cmds);
    fflush(stdout);
    return ret;
}
