/*
 * expat-raw.c: the parse limit for the relay benchmark. It feeds the very
 * bytes s2s-load sent (its --dump, behind the same stream header) to
 * expat, configured as fedgate's parser is (namespace processing, UTF-8,
 * reparse deferral off where expat has the switch) and in the chunks
 * fedgate reads (16 KiB), with element handlers that do nothing, until
 * --seconds of CPU time have passed. It prints the messages per CPU
 * second and the nanoseconds per message as key=value lines: the rate no
 * expat-based relay can beat on this machine.
 */
#include "config.h"

#include "benchutil.h"

#include <expat.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAW_CHUNK 16384
/* fedgate's separator (xmlparse.c); it changes nothing in the cost. */
#define RAW_NS_SEP '\x1f'

static const char raw_header[] =
    "<?xml version='1.0'?><stream:stream xmlns='" BENCH_NS_SERVER
    "' xmlns:stream='" BENCH_NS_STREAM "' xmlns:db='" BENCH_NS_DIALBACK
    "' from='b.test' to='a.test' version='1.0'>";

struct raw_count {
    unsigned depth;
    uint64_t stanzas;
};

static void XMLCALL on_start_nop(void *ud,
                                 const XML_Char *name,
                                 const XML_Char **atts)
{
    (void)ud;
    (void)name;
    (void)atts;
}

static void XMLCALL on_end_nop(void *ud, const XML_Char *name)
{
    (void)ud;
    (void)name;
}

static void XMLCALL on_start_count(void *ud,
                                   const XML_Char *name,
                                   const XML_Char **atts)
{
    struct raw_count *c = ud;
    (void)name;
    (void)atts;
    c->depth++;
}

static void XMLCALL on_end_count(void *ud, const XML_Char *name)
{
    struct raw_count *c = ud;
    (void)name;
    if (--c->depth == 1) {
        c->stanzas++;
    }
}

/* One pass over header + data; 0 or -1 on a parse error. */
static int raw_pass(const char *data, size_t len, struct raw_count *count)
{
    XML_Parser xp = XML_ParserCreateNS("UTF-8", RAW_NS_SEP);
    if (xp == NULL) {
        return -1;
    }
#ifdef HAVE_XML_SETREPARSEDEFERRALENABLED
    XML_SetReparseDeferralEnabled(xp, XML_FALSE);
#endif
    if (count != NULL) {
        XML_SetUserData(xp, count);
        XML_SetElementHandler(xp, on_start_count, on_end_count);
    } else {
        XML_SetElementHandler(xp, on_start_nop, on_end_nop);
    }
    int rc = 0;
    if (XML_Parse(xp, raw_header, (int)(sizeof(raw_header) - 1), XML_FALSE) !=
        XML_STATUS_OK) {
        rc = -1;
    }
    for (size_t off = 0; rc == 0 && off < len; off += RAW_CHUNK) {
        size_t n = len - off < RAW_CHUNK ? len - off : RAW_CHUNK;
        if (XML_Parse(xp, data + off, (int)n, XML_FALSE) != XML_STATUS_OK) {
            fprintf(stderr, "expat-raw: %s at byte %zu\n",
                    XML_ErrorString(XML_GetErrorCode(xp)), off);
            rc = -1;
        }
    }
    XML_ParserFree(xp);
    return rc;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    uint64_t ms = 2000;
    int rc = 1;
    char *data = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--file") == 0) {
            file = argv[i + 1];
        } else if (strcmp(argv[i], "--ms") == 0 &&
                   bench_parse_u64(argv[i + 1], 1, 600000, &ms) == 0) {
            continue;
        } else {
            fprintf(stderr, "usage: expat-raw --file DUMP [--ms CPU_MS]\n");
            return 2;
        }
    }
    if (file == NULL || argc % 2 != 1) {
        fprintf(stderr, "usage: expat-raw --file DUMP [--ms CPU_MS]\n");
        return 2;
    }
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        fprintf(stderr, "expat-raw: cannot open %s\n", file);
        return 1;
    }
    size_t cap = 1u << 20;
    size_t len = 0;
    data = malloc(cap);
    while (data != NULL) {
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (len < cap) {
            break;
        }
        cap *= 2;
        char *d = realloc(data, cap);
        if (d == NULL) {
            free(data);
        }
        data = d;
    }
    bool read_error = ferror(f) != 0;
    fclose(f);
    if (data == NULL || read_error || len == 0) {
        fprintf(stderr, "expat-raw: cannot read %s\n", file);
        goto out;
    }
    struct raw_count count = {0, 0};
    if (raw_pass(data, len, &count) != 0 || count.stanzas == 0) {
        fprintf(stderr, "expat-raw: %s does not parse as a stream\n", file);
        goto out;
    }
    /* A warm-up pass (caches, page faults), then the timed ones. */
    if (raw_pass(data, len, NULL) != 0) {
        goto out;
    }
    uint64_t passes = 0;
    uint64_t t0 = bench_thread_cpu_ns();
    uint64_t cpu;
    do {
        if (raw_pass(data, len, NULL) != 0) {
            goto out;
        }
        passes++;
        cpu = bench_thread_cpu_ns() - t0;
    } while (cpu < ms * 1000000u);
    double per = (double)cpu / (double)(passes * count.stanzas);
    printf("stanzas_per_pass=%" PRIu64 "\nbytes_per_pass=%zu\npasses=%" PRIu64
           "\ncpu_ns=%" PRIu64 "\nns_per_stanza=%.1f\nrate=%.0f\n",
           count.stanzas, len, passes, cpu, per, 1e9 / per);
    rc = 0;
out:
    free(data);
    return rc;
}
