/*
 * benchutil.c: clocks, /proc sampling, argument parsing and an output buffer
 * for the relay benchmark tools.
 */
#include "config.h"

#include "benchutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    /* Cannot fail with a valid clock id and pointer. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long bench_clock_ticks(void)
{
    long t = sysconf(_SC_CLK_TCK);
    return t > 0 ? t : 100;
}

int bench_proc_cpu_ticks(pid_t pid, unsigned long long *out)
{
    char path[64];
    char line[1024];
    int rc = -1;
    *out = 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    line[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: the
     * fields after it start after the last ')'. */
    char *p = strrchr(line, ')');
    if (p == NULL) {
        goto out;
    }
    p++;
    /* Fields 3..13 come first; utime is field 14, stime field 15. */
    for (int field = 3; field <= 15; field++) {
        while (*p == ' ') {
            p++;
        }
        char *end = p;
        while (*end != ' ' && *end != '\0') {
            end++;
        }
        if (end == p) {
            goto out;
        }
        if (field >= 14) {
            errno = 0;
            unsigned long long v = strtoull(p, NULL, 10);
            if (errno != 0) {
                goto out;
            }
            *out += v;
        }
        p = end;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

unsigned long bench_raise_nofile(unsigned long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    if (rl.rlim_cur >= want) {
        return (unsigned long)rl.rlim_cur;
    }
    struct rlimit up = {.rlim_cur = want,
                        .rlim_max = rl.rlim_max > want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &up) != 0) {
        /* Not root: as far as the hard limit allows. */
        up.rlim_cur = rl.rlim_max;
        up.rlim_max = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &up);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }
    return (unsigned long)rl.rlim_cur;
}

int bench_parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        return -1;
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int bench_parse_addr(const char *text, struct sockaddr_in *sin)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strrchr(text, ':');
    uint64_t port;
    if (colon == NULL || (size_t)(colon - text) >= sizeof(host) ||
        bench_parse_u64(colon + 1, 1, 65535, &port) != 0) {
        return -1;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

void bench_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

int bench_buf_append(struct bench_buf *b, const void *p, size_t n)
{
    if (b->off == b->len) {
        b->off = b->len = 0;
    }
    if (n > b->max || b->len - b->off > b->max - n) {
        return -1;
    }
    if (b->len + n > b->cap) {
        if (b->off > 0) {
            /* compact before growing: the written front is dead */
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap != 0 ? b->cap : 4096;
            while (cap < b->len + n) {
                cap *= 2;
            }
            char *d = realloc(b->data, cap);
            if (d == NULL) {
                return -1;
            }
            b->data = d;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int bench_buf_append_str(struct bench_buf *b, const char *s)
{
    return bench_buf_append(b, s, strlen(s));
}

int bench_buf_append_escaped(struct bench_buf *b, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        const char *r = NULL;
        switch (*p) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '\'':
            r = "&apos;";
            break;
        case '"':
            r = "&quot;";
            break;
        default:
            break;
        }
        int rc =
            r != NULL ? bench_buf_append_str(b, r) : bench_buf_append(b, p, 1);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

size_t bench_buf_pending(const struct bench_buf *b)
{
    return b->len - b->off;
}

void bench_buf_consume(struct bench_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        b->off = b->len = 0;
    }
}

bool bench_name_is(const char *name, const char *ns, const char *local)
{
    size_t n = strlen(ns);
    return strncmp(name, ns, n) == 0 && name[n] == BENCH_NS_SEP &&
           strcmp(name + n + 1, local) == 0;
}

const char *bench_attr(const char **atts, const char *name)
{
    for (size_t i = 0; atts[i] != NULL; i += 2) {
        if (strcmp(atts[i], name) == 0) {
            return atts[i + 1];
        }
    }
    return NULL;
}

static const char bench_body[] =
    "Shall I compare thee to a summer's day? Thou art more lovely and more "
    "temperate: rough winds do shake the darling buds.";

size_t bench_message(char *out,
                     size_t size,
                     const char *from,
                     const char *to,
                     unsigned session,
                     uint64_t seq,
                     uint64_t now_ns)
{
    unsigned user = (unsigned)(seq % 100u);
    int len = snprintf(out, size,
                       "<message from='user%u@%s/bench' to='user%u@%s' "
                       "type='chat' id='%u-%" PRIu64 "-%" PRIu64
                       "'><body>%s</body></message>",
                       user, from, user, to, session, seq, now_ns, bench_body);
    return len > 0 && (size_t)len < size ? (size_t)len : 0;
}

int bench_acct_init(struct bench_acct *a,
                    unsigned sessions,
                    uint64_t stanzas,
                    uint64_t warmup,
                    bool arrivals)
{
    memset(a, 0, sizeof(*a));
    a->sessions = sessions;
    a->stanzas = stanzas;
    a->warmup = warmup;
    a->expected = (uint64_t)sessions * stanzas;
    if (a->expected == 0) {
        return 0;
    }
    a->seen = calloc((size_t)(a->expected / 8 + 1), 1);
    a->lat_cap =
        a->expected < BENCH_LAT_MAX ? (size_t)a->expected : BENCH_LAT_MAX;
    a->lat = calloc(a->lat_cap, sizeof(*a->lat));
    if (arrivals) {
        a->lat_at = calloc(a->lat_cap, sizeof(*a->lat_at));
    }
    if (a->seen == NULL || a->lat == NULL || (arrivals && a->lat_at == NULL)) {
        bench_acct_free(a);
        return -1;
    }
    return 0;
}

/* Reads a decimal number; returns the first byte after it, or NULL. */
static const char *bench_parse_num(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10) {
            return NULL;
        }
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    if (p == start) {
        return NULL;
    }
    *out = v;
    return p;
}

void bench_acct_message(struct bench_acct *a, const char *id, uint64_t now)
{
    uint64_t sess = 0, seq = 0, ts = 0;
    const char *p = id != NULL ? bench_parse_num(id, &sess) : NULL;
    p = p != NULL && *p == '-' ? bench_parse_num(p + 1, &seq) : NULL;
    p = p != NULL && *p == '-' ? bench_parse_num(p + 1, &ts) : NULL;
    if (p == NULL || *p != '\0' || sess >= a->sessions || seq >= a->stanzas) {
        a->foreign++;
        return;
    }
    uint64_t bit = sess * a->stanzas + seq;
    uint8_t mask = (uint8_t)(1u << (bit & 7u));
    if ((a->seen[bit >> 3] & mask) != 0) {
        a->duplicates++;
        return;
    }
    a->seen[bit >> 3] |= mask;
    a->received++;
    if (a->received == 1) {
        a->first_ns = now;
    }
    a->last_ns = now;
    if (a->received > a->warmup && a->nlat < a->lat_cap) {
        if (a->lat_at != NULL) {
            a->lat_at[a->nlat] = now;
        }
        a->lat[a->nlat++] = now > ts ? now - ts : 0;
    }
}

static int bench_u64_cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x;
    uint64_t b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static uint64_t bench_pct(const uint64_t *v, size_t n, unsigned per_mille)
{
    if (n == 0) {
        return 0;
    }
    size_t i = (size_t)(((uint64_t)n * per_mille) / 1000u);
    return v[i < n ? i : n - 1];
}

void bench_acct_report(struct bench_acct *a,
                       const char *tool,
                       pid_t cpu_pid,
                       const char *lat_dump)
{
    unsigned long long ticks = 0;
    if (cpu_pid > 0 && bench_proc_cpu_ticks(cpu_pid, &ticks) != 0) {
        fprintf(stderr, "%s: cannot read /proc/%ld/stat\n", tool,
                (long)cpu_pid);
    }
    uint64_t at = bench_now_ns();
    if (lat_dump != NULL && a->lat_at != NULL) {
        FILE *f = fopen(lat_dump, "w");
        for (size_t i = 0; f != NULL && i < a->nlat; i++) {
            fprintf(f, "%" PRIu64 " %" PRIu64 "\n", a->lat_at[i], a->lat[i]);
        }
        if (f == NULL || fclose(f) != 0) {
            fprintf(stderr, "%s: cannot write %s\n", tool, lat_dump);
        }
    }
    if (a->nlat > 0) {
        qsort(a->lat, a->nlat, sizeof(*a->lat), bench_u64_cmp);
    }
    printf("expected=%" PRIu64 "\nreceived=%" PRIu64 "\nmissing=%" PRIu64
           "\nduplicates=%" PRIu64 "\nforeign=%" PRIu64 "\nerrors=%" PRIu64
           "\nfirst_ns=%" PRIu64 "\nlast_ns=%" PRIu64
           "\ncpu_ticks_end=%llu\ncpu_sampled_ns=%" PRIu64
           "\nlat_samples=%zu\nlat_p50_ns=%" PRIu64 "\nlat_p99_ns=%" PRIu64
           "\nlat_p999_ns=%" PRIu64 "\nlat_max_ns=%" PRIu64 "\ndone=1\n",
           a->expected, a->received, a->expected - a->received, a->duplicates,
           a->foreign, a->errors, a->first_ns, a->last_ns, ticks, at, a->nlat,
           bench_pct(a->lat, a->nlat, 500), bench_pct(a->lat, a->nlat, 990),
           bench_pct(a->lat, a->nlat, 999),
           a->nlat > 0 ? a->lat[a->nlat - 1] : 0);
    fflush(stdout);
    fprintf(stderr,
            "%s: %" PRIu64 "/%" PRIu64 " messages, %" PRIu64
            " duplicated, %" PRIu64 " foreign, %" PRIu64 " errors\n",
            tool, a->received, a->expected, a->duplicates, a->foreign,
            a->errors);
}

void bench_acct_free(struct bench_acct *a)
{
    if (a == NULL) {
        return;
    }
    free(a->seen);
    free(a->lat);
    free(a->lat_at);
    a->seen = NULL;
    a->lat = a->lat_at = NULL;
    a->nlat = a->lat_cap = 0;
}

uint64_t *bench_progress_map(const char *path, bool create)
{
    int fd = open(path,
                  create ? O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC
                         : O_RDWR | O_CLOEXEC,
                  0600);
    if (fd < 0) {
        return NULL;
    }
    void *p = MAP_FAILED;
    if (!create || ftruncate(fd, sizeof(uint64_t)) == 0) {
        p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                 0);
    }
    close(fd); /* the mapping stays */
    return p == MAP_FAILED ? NULL : p;
}

void bench_progress_publish(uint64_t *p, uint64_t count)
{
    if (p != NULL) {
        __atomic_store_n(p, count, __ATOMIC_RELAXED);
    }
}

uint64_t bench_progress_read(const uint64_t *p)
{
    return p != NULL ? __atomic_load_n(p, __ATOMIC_RELAXED) : 0;
}

void bench_progress_unmap(uint64_t *p)
{
    if (p != NULL) {
        (void)munmap(p, sizeof(uint64_t));
    }
}

void bench_buf_free(struct bench_buf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = b->off = b->cap = 0;
}

int bench_listen(const struct sockaddr_in *addr,
                 int backlog,
                 uint64_t tag,
                 const char *who,
                 int *lfd,
                 int *ep)
{
    int one = 1;
    *lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*lfd < 0 ||
        setsockopt(*lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(*lfd, (const struct sockaddr *)addr, sizeof(*addr)) != 0 ||
        listen(*lfd, backlog) != 0) {
        fprintf(stderr, "%s: cannot listen: %s\n", who, strerror(errno));
        return -1;
    }
    *ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.u64 = tag};
    if (*ep < 0 || epoll_ctl(*ep, EPOLL_CTL_ADD, *lfd, &lev) != 0) {
        fprintf(stderr, "%s: epoll: %s\n", who, strerror(errno));
        return -1;
    }
    return 0;
}
