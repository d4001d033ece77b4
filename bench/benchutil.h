/*
 * benchutil.h: helpers shared by the relay benchmark tools (bench/s2s-load.c,
 * comp-sink.c, expat-raw.c).
 *
 * The tools are separate processes (load generator, component-side sink,
 * raw expat parser) that compare timestamps taken with CLOCK_MONOTONIC,
 * which is one clock for the whole system, and sample the CPU time of the
 * fedgate process from /proc. Nothing here is fedgate code: the tools talk
 * to fedgate only over its sockets.
 */
#ifndef FEDGATE_BENCHUTIL_H
#define FEDGATE_BENCHUTIL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Namespace URIs the tools compare expat's "URI|local" names against. */
#define BENCH_NS_STREAM    "http://etherx.jabber.org/streams"
#define BENCH_NS_TLS       "urn:ietf:params:xml:ns:xmpp-tls"
#define BENCH_NS_SASL      "urn:ietf:params:xml:ns:xmpp-sasl"
#define BENCH_NS_DIALBACK  "jabber:server:dialback"
#define BENCH_NS_DBFEATURE "urn:xmpp:features:dialback"
#define BENCH_NS_SERVER    "jabber:server"
#define BENCH_NS_COMPONENT "jabber:component:accept"

/* expat's separator between namespace URI and local name in the tools. */
#define BENCH_NS_SEP '|'

/* Latency samples kept at most (8 bytes each). */
#define BENCH_LAT_MAX (32u * 1024u * 1024u)

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);

/* CPU time this thread has used, in nanoseconds. */
uint64_t bench_thread_cpu_ns(void);

/*
 * utime + stime of process pid in clock ticks (/proc/PID/stat fields 14
 * and 15). 0 or -1 when the file cannot be read or parsed.
 */
int bench_proc_cpu_ticks(pid_t pid, unsigned long long *out);

/* Clock ticks per second (sysconf(_SC_CLK_TCK)). */
long bench_clock_ticks(void);

/* Raises RLIMIT_NOFILE to want (or the hard limit if lower and not
 * root). Returns the soft limit now in force. */
unsigned long bench_raise_nofile(unsigned long want);

/* Parses "a.b.c.d:port" into sin. 0 or -1. */
/*
 * A non-blocking listener on addr with its own epoll set, the listener
 * registered for EPOLLIN with tag as its data. 0, or -1 with the reason
 * (naming who) written to stderr.
 */
int bench_listen(const struct sockaddr_in *addr,
                 int backlog,
                 uint64_t tag,
                 const char *who,
                 int *lfd,
                 int *ep);

int bench_parse_addr(const char *text, struct sockaddr_in *sin);

/* Parses a decimal unsigned number that must fill the whole string and
 * lie in [min, max]. 0 or -1. */
int bench_parse_u64(const char *text,
                    uint64_t min,
                    uint64_t max,
                    uint64_t *out);

/* Lower-case hex of in[0..len) into out (2 * len + 1 bytes). */
void bench_hex(const unsigned char *in, size_t len, char *out);

/*
 * A growable byte buffer for socket output, bounded by max. Bytes in
 * [off, len) are still to be written.
 */
struct bench_buf {
    char *data;
    size_t len;
    size_t off;
    size_t cap;
    size_t max;
};

/* Appends n bytes. 0, or -1 when max would be exceeded or on ENOMEM. */
int bench_buf_append(struct bench_buf *b, const void *p, size_t n);
int bench_buf_append_str(struct bench_buf *b, const char *s);
/* Bytes waiting to be written. */
size_t bench_buf_pending(const struct bench_buf *b);
/* Marks n written bytes as done; empties the buffer when all are. */
void bench_buf_consume(struct bench_buf *b, size_t n);
void bench_buf_free(struct bench_buf *b);

/* Escapes s for a single-quoted XML attribute value or text (&, <, >,
 * ', "). 0 or -1. */
int bench_buf_append_escaped(struct bench_buf *b, const char *s);

/* expat "URI|local" name test and attribute lookup (NULL if absent). */
bool bench_name_is(const char *name, const char *ns, const char *local);
const char *bench_attr(const char **atts, const char *name);

/*
 * The benchmark's chat message (about 220 bytes), from userK@FROM/bench
 * to userK@TO (K = seq % 100), id 'SESSION-SEQ-NOW'. Writes it into
 * out[0..size) and returns its length, or 0 if it does not fit.
 */
size_t bench_message(char *out,
                     size_t size,
                     const char *from,
                     const char *to,
                     unsigned session,
                     uint64_t seq,
                     uint64_t now_ns);

/*
 * Accounting of received benchmark messages: every (session, seq) must
 * arrive once; latency = arrival - the id's send time, for messages after
 * the first warmup ones.
 */
struct bench_acct {
    unsigned sessions;
    uint64_t stanzas; /* per session */
    uint64_t warmup;
    uint64_t expected;
    uint64_t received; /* distinct expected messages */
    uint64_t duplicates;
    uint64_t foreign; /* ids not ours or out of range */
    uint64_t errors;  /* type='error' (bounces) */
    uint64_t first_ns;
    uint64_t last_ns;
    uint8_t *seen; /* one bit per (session, seq) */
    uint64_t *lat;
    uint64_t *lat_at; /* arrival of lat[i], only when asked for */
    size_t nlat;
    size_t lat_cap;
};

/* 0, or -1 on ENOMEM (a has nothing to free then). arrivals: keep each
 * sample's arrival time too (for --lat-dump). */
int bench_acct_init(struct bench_acct *a,
                    unsigned sessions,
                    uint64_t stanzas,
                    uint64_t warmup,
                    bool arrivals);

/* Accounts the message with this id (may be NULL), arrived at now. */
void bench_acct_message(struct bench_acct *a, const char *id, uint64_t now);

/*
 * Prints the report on stdout (key=value lines ending "done=1"): counts,
 * first/last arrival, latency percentiles, and the CPU ticks of cpu_pid
 * (if > 0) sampled now. lat_dump (may be NULL) gets "arrival latency"
 * lines in arrival order. tool names the program in messages.
 */
void bench_acct_report(struct bench_acct *a,
                       const char *tool,
                       pid_t cpu_pid,
                       const char *lat_dump);

void bench_acct_free(struct bench_acct *a);

/*
 * Flow control between the processes of a run: the receiver publishes how
 * many messages it has counted in an 8-byte file mapped by both, and the
 * sender stays at most a window of messages ahead of it, the way a
 * sending server is held back by a peer that reads slowly (fedgate itself
 * does not push back: see bench/relay.sh). Returns the mapped counter, or
 * NULL (create: make the file; else it must exist).
 */
uint64_t *bench_progress_map(const char *path, bool create);
void bench_progress_publish(uint64_t *p, uint64_t count);
uint64_t bench_progress_read(const uint64_t *p);
void bench_progress_unmap(uint64_t *p);

#endif
