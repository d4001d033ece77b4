/*
 * check_base.c: unit tests for the base layer: bounded buffers, error
 * codes, log escaping, reconnect backoff, the stanza queue and JIDs.
 * White-box: links libfedgate's objects directly. The squeue cases also
 * prove, under ASan or valgrind (CK_FORK=no), that nothing leaks.
 */
#include "config.h"

#include "backoff.h"
#include "buf.h"
#include "err.h"
#include "jid.h"
#include "log.h"
#include "squeue.h"
#include "xml.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- buf --------------------------------------------------------------- */

START_TEST(buf_append_within_bound)
{
    struct buf b;
    buf_init(&b, 8);
    ck_assert_int_eq(buf_append(&b, "abcd", 4), 0);
    ck_assert_int_eq(buf_append_str(&b, "efgh"), 0);
    ck_assert_uint_eq(buf_size(&b), 8);
    ck_assert_str_eq(buf_peek(&b), "abcdefgh");
    buf_free(&b);
}
END_TEST

START_TEST(buf_too_big_leaves_content)
{
    struct buf b;
    buf_init(&b, 8);
    ck_assert_int_eq(buf_append(&b, "abcdef", 6), 0);
    ck_assert_int_eq(buf_append(&b, "xyz", 3), ERR_TOO_BIG);
    ck_assert_uint_eq(buf_size(&b), 6);
    ck_assert_str_eq(buf_peek(&b), "abcdef");
    ck_assert_int_eq(buf_printf(&b, "%d", 123), ERR_TOO_BIG);
    ck_assert_str_eq(buf_peek(&b), "abcdef");
    ck_assert_int_eq(buf_append(&b, "xy", 2), 0);
    ck_assert_str_eq(buf_peek(&b), "abcdefxy");
    buf_free(&b);
}
END_TEST

START_TEST(buf_empty_is_empty_string)
{
    struct buf b;
    buf_init(&b, 16);
    ck_assert_str_eq(buf_peek(&b), "");
    ck_assert_uint_eq(buf_size(&b), 0);
    ck_assert_int_eq(buf_append(&b, "", 0), 0);
    ck_assert_str_eq(buf_peek(&b), "");
    buf_free(&b);
    buf_free(NULL);
}
END_TEST

START_TEST(buf_consume_then_append_compacts)
{
    struct buf b;
    buf_init(&b, 16);
    ck_assert_int_eq(buf_append_str(&b, "hello world!"), 0);
    buf_consume(&b, 6);
    ck_assert_str_eq(buf_peek(&b), "world!");
    ck_assert_uint_eq(buf_size(&b), 6);
    /* 6 live + 10 new = 16 = max: fits only because consumed bytes are
     * not counted against the bound. */
    ck_assert_int_eq(buf_append_str(&b, "0123456789"), 0);
    ck_assert_str_eq(buf_peek(&b), "world!0123456789");
    buf_consume(&b, 100);
    ck_assert_uint_eq(buf_size(&b), 0);
    ck_assert_str_eq(buf_peek(&b), "");
    buf_free(&b);
}
END_TEST

START_TEST(buf_truncate_takes_back)
{
    struct buf b;
    buf_init(&b, 32);
    ck_assert_int_eq(buf_append_str(&b, "keep-drop"), 0);
    buf_truncate(&b, 4);
    ck_assert_str_eq(buf_peek(&b), "keep");
    buf_truncate(&b, 10);
    ck_assert_str_eq(buf_peek(&b), "keep");
    buf_free(&b);
}
END_TEST

START_TEST(buf_printf_formats)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_printf(&b, "%s=%d", "port", 5269), 0);
    ck_assert_int_eq(buf_printf(&b, ";%04x", 0xbeefu), 0);
    ck_assert_str_eq(buf_peek(&b), "port=5269;beef");
    buf_free(&b);
}
END_TEST

/* Regression: an empty format on a buffer with no memory yet wrote the
 * terminator through a NULL pointer. */
START_TEST(buf_printf_empty_on_fresh_buffer)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_printf(&b, "%s", ""), 0);
    ck_assert_uint_eq(buf_size(&b), 0);
    ck_assert_str_eq(buf_peek(&b), "");
    buf_free(&b);
}
END_TEST

START_TEST(buf_steal_empties)
{
    struct buf b;
    buf_init(&b, 64);
    ck_assert_int_eq(buf_append_str(&b, "xxpayload"), 0);
    buf_consume(&b, 2);
    char *s = buf_steal(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "payload");
    ck_assert_uint_eq(buf_size(&b), 0);
    ck_assert_ptr_null(b.data);
    free(s);
    s = buf_steal(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

static bool all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

START_TEST(buf_secret_reset_wipes)
{
    struct buf b;
    buf_init(&b, 64);
    b.secret = true;
    ck_assert_int_eq(buf_append_str(&b, "hunter2-password"), 0);
    const char *mem = b.data;
    size_t cap = b.cap;
    buf_reset(&b);
    ck_assert_ptr_eq(b.data, mem);    /* memory kept ... */
    ck_assert(all_zero(b.data, cap)); /* ... and wiped */
    buf_free(&b);
}
END_TEST

START_TEST(buf_secret_compact_wipes_tail)
{
    struct buf b;
    buf_init(&b, 1024);
    b.secret = true;
    ck_assert_int_eq(buf_append_str(&b, "AAAAAAAAAASECRET"), 0);
    /* Consuming more than half compacts: the live part moves to the
     * front and the bytes it leaves behind must not keep a copy. */
    buf_consume(&b, 10);
    ck_assert_uint_eq(b.head, 0);
    ck_assert_str_eq(buf_peek(&b), "SECRET");
    ck_assert(all_zero(b.data + b.len, 16 - b.len + 1));
    buf_free(&b);
    ck_assert_ptr_null(b.data);
}
END_TEST

/* ---- err --------------------------------------------------------------- */

START_TEST(err_str_known_and_unknown)
{
    ck_assert_str_eq(err_str(ERR_NOMEM), "out of memory");
    ck_assert_str_eq(err_str(ERR_TOO_BIG), "limit exceeded");
    ck_assert_str_eq(err_str(0), "success");
    ck_assert_str_eq(err_str(-999), "unknown error");
    ck_assert_str_eq(err_str(12345), "unknown error");
}
END_TEST

START_TEST(err_stream_condition_maps)
{
    ck_assert_str_eq(err_stream_condition(ERR_XML_MALFORMED),
                     "not-well-formed");
    ck_assert_str_eq(err_stream_condition(ERR_XML_RESTRICTED),
                     "restricted-xml");
    ck_assert_str_eq(err_stream_condition(ERR_XML_BAD_NS), "invalid-namespace");
    ck_assert_str_eq(err_stream_condition(ERR_TIMEOUT), "connection-timeout");
    ck_assert_str_eq(err_stream_condition(ERR_NOMEM), "resource-constraint");
    ck_assert_str_eq(err_stream_condition(-999), "undefined-condition");
}
END_TEST

START_TEST(err_every_code_has_text)
{
    static const int codes[] = {
        ERR_OK,
        ERR_NOMEM,
        ERR_AGAIN,
        ERR_INVAL,
        ERR_SYS,
        ERR_TOO_BIG,
        ERR_NOT_FOUND,
        ERR_CLOSED,
        ERR_TIMEOUT,
        ERR_XML_MALFORMED,
        ERR_XML_RESTRICTED,
        ERR_XML_TOO_BIG,
        ERR_XML_TOO_DEEP,
        ERR_XML_BAD_ENCODING,
        ERR_XML_BAD_NS,
        ERR_XML_BAD_HEADER,
        ERR_STREAM_ERROR,
        ERR_AUTH,
        ERR_CONFIG,
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        ck_assert_str_ne(err_str(codes[i]), "unknown error");
        ck_assert_ptr_nonnull(err_stream_condition(codes[i]));
    }
}
END_TEST

/* ---- log_limit ----------------------------------------------------------- */

START_TEST(log_limit_per_second)
{
    struct log_limit l = {0};
    unsigned long held = 99;
    ck_assert(log_limit_allow(&l, 5000, 2, &held));
    ck_assert_uint_eq(held, 0);
    ck_assert(log_limit_allow(&l, 5100, 2, &held));
    for (int i = 0; i < 7; i++) {
        ck_assert(!log_limit_allow(&l, 5500, 2, &held));
    }
    /* the next second: a line again, saying how many were held back */
    ck_assert(log_limit_allow(&l, 6001, 2, &held));
    ck_assert_uint_eq(held, 7);
    ck_assert(log_limit_allow(&l, 6002, 2, &held));
    ck_assert_uint_eq(held, 0);
}
END_TEST

/* ---- log_escape ---------------------------------------------------------- */

START_TEST(log_escape_controls)
{
    char out[64];
    const char in[] = "a\nb\x01\x7f\\c";
    log_escape(in, sizeof(in) - 1, 100, out, sizeof(out));
    ck_assert_str_eq(out, "a\\x0ab\\x01\\x7f\\x5cc");
}
END_TEST

START_TEST(log_escape_non_ascii)
{
    char out[64];
    const char in[] = "b\xc3\xbc"; /* "bü" in UTF-8 */
    log_escape(in, sizeof(in) - 1, 100, out, sizeof(out));
    ck_assert_str_eq(out, "b\\xc3\\xbc");
}
END_TEST

START_TEST(log_escape_embedded_nul)
{
    char out[64];
    log_escape("a\0b", 3, 100, out, sizeof(out));
    ck_assert_str_eq(out, "a\\x00b");
}
END_TEST

START_TEST(log_escape_cut_at_max)
{
    char out[64];
    log_escape("abcdefgh", 8, 3, out, sizeof(out));
    ck_assert_str_eq(out, "abc...");
    log_escape("abc", 3, 3, out, sizeof(out));
    ck_assert_str_eq(out, "abc");
}
END_TEST

START_TEST(log_escape_cut_by_outsz)
{
    char out[16];
    memset(out, 'Z', sizeof(out));
    /* 26 bytes do not fit in 8: the output is cut, says so, and stays
     * inside the 8 bytes it was given. */
    log_escape("abcdefghijklmnopqrstuvwxyz", 26, 100, out, 8);
    ck_assert_str_eq(out, "abcd...");
    ck_assert_int_eq(out[8], 'Z');
    /* Exactly fitting data is not marked as cut. */
    log_escape("abcdefg", 7, 100, out, 8);
    ck_assert_str_eq(out, "abcdefg");
    /* An escape is never split. */
    log_escape("ab\x01\x02\x03", 5, 100, out, 8);
    ck_assert_str_eq(out, "ab...");
}
END_TEST

/* ---- backoff ------------------------------------------------------------- */

/* A deterministic source: returns the value ud points at, clamped. */
static uint32_t fixed_rand(uint32_t bound, void *ud)
{
    uint32_t v = *(const uint32_t *)ud;
    return v < bound ? v : bound - 1;
}

/* A deterministic spread source for range checks (xorshift32). */
static uint32_t xorshift_rand(uint32_t bound, void *ud)
{
    uint32_t *s = ud;
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s % bound;
}

START_TEST(backoff_doubles_to_cap)
{
    struct backoff b;
    uint32_t top = UINT32_MAX;
    backoff_init(&b, 100, 1000);
    b.rand = fixed_rand;
    b.rand_ud = &top; /* always the top of [d/2, d]: the bare delay */
    static const uint32_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        ck_assert_uint_eq(backoff_next(&b), want[i]);
    }
    ck_assert_uint_eq(b.failures, 7);
}
END_TEST

START_TEST(backoff_jitter_low_end_is_half)
{
    struct backoff b;
    uint32_t zero = 0;
    backoff_init(&b, 100, 1000);
    b.rand = fixed_rand;
    b.rand_ud = &zero;
    ck_assert_uint_eq(backoff_next(&b), 50);
    ck_assert_uint_eq(backoff_next(&b), 100);
    ck_assert_uint_eq(backoff_next(&b), 200);
}
END_TEST

START_TEST(backoff_jitter_within_range)
{
    struct backoff b;
    uint32_t state = 0x12345678;
    backoff_init(&b, 7, 5000);
    b.rand = xorshift_rand;
    b.rand_ud = &state;
    uint32_t d = 7;
    for (int i = 0; i < 200; i++) {
        uint32_t v = backoff_next(&b);
        ck_assert_uint_ge(v, d / 2);
        ck_assert_uint_le(v, d);
        d = d > 2500 ? 5000 : d * 2;
    }
}
END_TEST

START_TEST(backoff_reset_starts_over)
{
    struct backoff b;
    uint32_t top = UINT32_MAX;
    backoff_init(&b, 100, 1000);
    b.rand = fixed_rand;
    b.rand_ud = &top;
    backoff_next(&b);
    backoff_next(&b);
    backoff_next(&b);
    backoff_reset(&b);
    ck_assert_uint_eq(b.failures, 0);
    ck_assert_uint_eq(backoff_next(&b), 100);
    ck_assert_uint_eq(backoff_next(&b), 200);
}
END_TEST

START_TEST(backoff_no_overflow)
{
    struct backoff b;
    uint32_t top = UINT32_MAX;
    backoff_init(&b, 3000000000u, UINT32_MAX);
    b.rand = fixed_rand;
    b.rand_ud = &top;
    /* Doubling 3e9 would wrap a uint32_t to ~1.7e9. */
    ck_assert_uint_eq(backoff_next(&b), 3000000000u);
    ck_assert_uint_eq(backoff_next(&b), UINT32_MAX);

    backoff_init(&b, 1, UINT32_MAX);
    b.rand = fixed_rand;
    b.rand_ud = &top;
    uint32_t prev = 0;
    for (int i = 0; i < 10000; i++) {
        uint32_t v = backoff_next(&b);
        ck_assert_uint_ge(v, prev);
        prev = v;
    }
    ck_assert_uint_eq(prev, UINT32_MAX);
    ck_assert_uint_eq(b.failures, 10000);
}
END_TEST

START_TEST(backoff_default_rand_in_bounds)
{
    static const uint32_t bounds[] = {1,    2,           3,         7,
                                      1000, 0x80000001u, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        for (int k = 0; k < 200; k++) {
            ck_assert_uint_lt(backoff_rand_default(bounds[i], NULL), bounds[i]);
        }
    }
}
END_TEST

START_TEST(backoff_default_rand_covers_range)
{
    /* Each of 4 values missing from 2000 draws has odds of 4 * 0.75^2000:
     * never, unless the draw is broken. */
    unsigned seen[4] = {0};
    for (int k = 0; k < 2000; k++) {
        seen[backoff_rand_default(4, NULL)]++;
    }
    for (int v = 0; v < 4; v++) {
        ck_assert_uint_gt(seen[v], 300);
    }
}
END_TEST

START_TEST(backoff_default_source_used)
{
    struct backoff b;
    backoff_init(&b, 1000, 1000);
    for (int i = 0; i < 100; i++) {
        uint32_t v = backoff_next(&b);
        ck_assert_uint_ge(v, 500);
        ck_assert_uint_le(v, 1000);
    }
}
END_TEST

/* ---- squeue -------------------------------------------------------------- */

static struct xml_node *stanza(const char *id)
{
    struct xml_node *n = xml_element_new(XML_NS_SERVER, "message");
    ck_assert_ptr_nonnull(n);
    ck_assert_int_eq(xml_set_attr(n, "id", id), 0);
    return n;
}

static void expect_id(struct xml_node *n, const char *id)
{
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(xml_attr(n, "id"), id);
    xml_unref(n);
}

START_TEST(squeue_fifo_order)
{
    struct squeue q;
    squeue_init(&q, 10, 10000);
    ck_assert_ptr_null(squeue_pop(&q));
    ck_assert_ptr_null(squeue_peek(&q));
    ck_assert_int_eq(squeue_push(&q, stanza("1"), 10, 100), 0);
    ck_assert_int_eq(squeue_push(&q, stanza("2"), 20, 200), 0);
    ck_assert_int_eq(squeue_push(&q, stanza("3"), 30, 300), 0);
    ck_assert_uint_eq(q.count, 3);
    ck_assert_uint_eq(q.bytes, 60);
    ck_assert_str_eq(xml_attr(squeue_peek(&q), "id"), "1");
    expect_id(squeue_pop(&q), "1");
    expect_id(squeue_pop(&q), "2");
    ck_assert_int_eq(squeue_push(&q, stanza("4"), 40, 400), 0);
    expect_id(squeue_pop(&q), "3");
    expect_id(squeue_pop(&q), "4");
    ck_assert_ptr_null(squeue_pop(&q));
    ck_assert_uint_eq(q.count, 0);
    ck_assert_uint_eq(q.bytes, 0);
}
END_TEST

START_TEST(squeue_count_bound)
{
    struct squeue q;
    squeue_init(&q, 2, 10000);
    ck_assert_int_eq(squeue_push(&q, stanza("1"), 1, 0), 0);
    ck_assert_int_eq(squeue_push(&q, stanza("2"), 1, 0), 0);
    struct xml_node *third = stanza("3");
    ck_assert_int_eq(squeue_push(&q, third, 1, 0), ERR_TOO_BIG);
    ck_assert_uint_eq(q.count, 2);
    xml_unref(third);
    expect_id(squeue_pop(&q), "1");
    third = stanza("3");
    ck_assert_int_eq(squeue_push(&q, third, 1, 0), 0);
    squeue_clear(&q);
}
END_TEST

START_TEST(squeue_byte_bound)
{
    struct squeue q;
    squeue_init(&q, 100, 100);
    ck_assert_int_eq(squeue_push(&q, stanza("1"), 60, 0), 0);
    struct xml_node *big = stanza("2");
    ck_assert_int_eq(squeue_push(&q, big, 41, 0), ERR_TOO_BIG);
    ck_assert_uint_eq(q.bytes, 60);
    ck_assert_int_eq(squeue_push(&q, big, 40, 0), 0); /* exactly full */
    ck_assert_uint_eq(q.bytes, 100);
    struct xml_node *one = stanza("3");
    ck_assert_int_eq(squeue_push(&q, one, 1, 0), ERR_TOO_BIG);
    xml_unref(one);
    /* A stanza larger than the whole bound never fits. */
    squeue_clear(&q);
    one = stanza("4");
    ck_assert_int_eq(squeue_push(&q, one, SIZE_MAX, 0), ERR_TOO_BIG);
    xml_unref(one);
}
END_TEST

/* Regression: after the owner lowered max_bytes below the queued bytes
 * (a reload), the unsigned "room left" wrapped and every push fitted. */
START_TEST(squeue_lowered_bounds_refuse)
{
    struct squeue q;
    squeue_init(&q, 10, 1000);
    ck_assert_int_eq(squeue_push(&q, stanza("1"), 500, 0), 0);
    ck_assert_int_eq(squeue_push(&q, stanza("2"), 1, 0), 0);
    q.max_bytes = 100;
    struct xml_node *n = stanza("3");
    ck_assert_int_eq(squeue_push(&q, n, 1, 0), ERR_TOO_BIG);
    q.max_bytes = 1000;
    q.max_count = 1;
    ck_assert_int_eq(squeue_push(&q, n, 1, 0), ERR_TOO_BIG);
    xml_unref(n);
    squeue_clear(&q);
}
END_TEST

START_TEST(squeue_refused_push_keeps_reference)
{
    struct squeue q;
    squeue_init(&q, 0, 100);
    struct xml_node *n = stanza("x");
    ck_assert_int_eq(squeue_push(&q, n, 1, 0), ERR_TOO_BIG);
    ck_assert_uint_eq(n->refs, 1); /* still the caller's to bounce */
    ck_assert_str_eq(xml_attr(n, "id"), "x");
    xml_unref(n);
}
END_TEST

START_TEST(squeue_pop_expired_deadline)
{
    struct squeue q;
    squeue_init(&q, 10, 1000);
    ck_assert_ptr_null(squeue_pop_expired(&q, UINT64_MAX));
    ck_assert_uint_eq(squeue_oldest_ms(&q), 0);
    ck_assert_int_eq(squeue_push(&q, stanza("a"), 1, 1000), 0);
    ck_assert_int_eq(squeue_push(&q, stanza("b"), 1, 2000), 0);
    ck_assert_uint_eq(squeue_oldest_ms(&q), 1000);
    ck_assert_ptr_null(squeue_pop_expired(&q, 999));
    expect_id(squeue_pop_expired(&q, 1000), "a"); /* "at or before" */
    ck_assert_uint_eq(squeue_oldest_ms(&q), 2000);
    ck_assert_ptr_null(squeue_pop_expired(&q, 1999));
    expect_id(squeue_pop_expired(&q, 5000), "b");
    ck_assert_ptr_null(squeue_pop_expired(&q, 5000));
    ck_assert_uint_eq(squeue_oldest_ms(&q), 0);
}
END_TEST

START_TEST(squeue_clear_releases_references)
{
    struct squeue q;
    squeue_init(&q, 100, 100000);
    /* Keep an extra reference to one stanza to watch clear drop the
     * queue's; the rest are freed (ASan/valgrind report any leak). */
    struct xml_node *watched = stanza("w");
    ck_assert_ptr_eq(xml_ref(watched), watched);
    ck_assert_int_eq(squeue_push(&q, watched, 5, 0), 0);
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(squeue_push(&q, stanza("n"), 5, (uint64_t)i), 0);
    }
    ck_assert_uint_eq(watched->refs, 2);
    squeue_clear(&q);
    ck_assert_uint_eq(watched->refs, 1);
    ck_assert_uint_eq(q.count, 0);
    ck_assert_uint_eq(q.bytes, 0);
    ck_assert_ptr_null(q.head);
    ck_assert_ptr_null(q.tail);
    /* Usable again after a clear. */
    ck_assert_int_eq(squeue_push(&q, stanza("again"), 5, 0), 0);
    expect_id(squeue_pop(&q), "again");
    xml_unref(watched);
}
END_TEST

/* ---- jid ----------------------------------------------------------------- */

static void expect_norm(const char *in, const char *want)
{
    char *out = (char *)"unset";
    int rc = jid_domain_normalize(in, &out);
    ck_assert_msg(rc == 0, "normalising '%s': %s", in, err_str(rc));
    ck_assert_str_eq(out, want);
    free(out);
}

static void expect_bad(const char *in)
{
    char *out = (char *)"unset";
    int rc = jid_domain_normalize(in, &out);
    ck_assert_msg(rc == ERR_INVAL, "'%s' gave %d", in, rc);
    ck_assert_ptr_null(out);
}

START_TEST(jid_norm_lower_case)
{
    expect_norm("Example.COM", "example.com");
    expect_norm("a.b", "a.b");
}
END_TEST

START_TEST(jid_norm_trailing_dot)
{
    expect_norm("example.com.", "example.com");
    expect_bad("example.com..");
    expect_bad(".");
}
END_TEST

START_TEST(jid_norm_idn)
{
    expect_norm("bücher.example", "xn--bcher-kva.example");
    expect_norm("BÜCHER.example", "xn--bcher-kva.example");
    expect_norm("xn--bcher-kva.example", "xn--bcher-kva.example");
    /* Non-transitional: ß stays itself, it is not mapped to "ss". */
    expect_norm("straße.de", "xn--strae-oqa.de");
    /* The ideographic full stop separates labels too (UTS#46). */
    expect_norm("example\xe3\x80\x82"
                "com",
                "example.com");
}
END_TEST

START_TEST(jid_norm_label_length)
{
    char label[80];
    memset(label, 'a', 63);
    memcpy(label + 63, ".com", 5);
    char *out = NULL;
    ck_assert_int_eq(jid_domain_normalize(label, &out), 0);
    free(out);
    memset(label, 'a', 64);
    memcpy(label + 64, ".com", 5);
    expect_bad(label);
}
END_TEST

START_TEST(jid_norm_domain_length)
{
    /* 63+1+63+1+63+1+61 = 253: the longest allowed. */
    char name[300];
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        memset(name + o, 'a' + i, 63);
        o += 63;
        name[o++] = '.';
    }
    memset(name + o, 'd', 61);
    o += 61;
    name[o] = '\0';
    ck_assert_uint_eq(strlen(name), 253);
    char *out = NULL;
    ck_assert_int_eq(jid_domain_normalize(name, &out), 0);
    ck_assert_uint_eq(strlen(out), 253);
    free(out);
    name[o++] = 'd';
    name[o] = '\0';
    expect_bad(name); /* 254 */
}
END_TEST

START_TEST(jid_norm_empty_label)
{
    expect_bad("");
    expect_bad("a..b");
    expect_bad(".example.com");
}
END_TEST

START_TEST(jid_norm_invalid_chars)
{
    expect_bad("a b.com");
    expect_bad("a@b.com");
    expect_bad("a/b.com");
    expect_bad("a_b.com");
    expect_bad("a:b.com");
    expect_bad("a\tb.com");
    expect_bad("-ab.com");
    expect_bad("ab-.com");
    expect_bad("xn--zz.example"); /* broken punycode */
}
END_TEST

START_TEST(jid_norm_ip_literals)
{
    expect_norm("127.0.0.1", "127.0.0.1");
    expect_norm("[::1]", "[::1]");
    expect_norm("[2001:db8::1]", "[2001:db8::1]");
    expect_bad("[::1");
    expect_bad("[example.com]");
    expect_bad("[]");
    expect_bad("1.2.3.999"); /* numeric last label, not an address */
}
END_TEST

START_TEST(jid_parse_full)
{
    struct jid j;
    ck_assert_int_eq(jid_parse("Juliet@Capulet.EXAMPLE/balcony", &j), 0);
    ck_assert_str_eq(j.local, "Juliet");
    ck_assert_str_eq(j.domain, "capulet.example");
    ck_assert_str_eq(j.resource, "balcony");
    jid_clear(&j);
    ck_assert_ptr_null(j.local);
    ck_assert_ptr_null(j.domain);
    jid_clear(NULL);
}
END_TEST

START_TEST(jid_parse_bare_and_domain)
{
    struct jid j;
    ck_assert_int_eq(jid_parse("romeo@montague.example", &j), 0);
    ck_assert_str_eq(j.local, "romeo");
    ck_assert_str_eq(j.domain, "montague.example");
    ck_assert_ptr_null(j.resource);
    jid_clear(&j);
    ck_assert_int_eq(jid_parse("montague.example/res", &j), 0);
    ck_assert_ptr_null(j.local);
    ck_assert_str_eq(j.domain, "montague.example");
    ck_assert_str_eq(j.resource, "res");
    jid_clear(&j);
    ck_assert_int_eq(jid_parse("bücher.example", &j), 0);
    ck_assert_ptr_null(j.local);
    ck_assert_str_eq(j.domain, "xn--bcher-kva.example");
    ck_assert_ptr_null(j.resource);
    jid_clear(&j);
}
END_TEST

START_TEST(jid_parse_separators_in_resource)
{
    /* The first '/' ends the domain; '@' and '/' after it belong to the
     * resource. */
    struct jid j;
    ck_assert_int_eq(jid_parse("a@b.example/c@d/e", &j), 0);
    ck_assert_str_eq(j.local, "a");
    ck_assert_str_eq(j.domain, "b.example");
    ck_assert_str_eq(j.resource, "c@d/e");
    jid_clear(&j);
    ck_assert_int_eq(jid_parse("b.example/c@d", &j), 0);
    ck_assert_ptr_null(j.local);
    ck_assert_str_eq(j.domain, "b.example");
    ck_assert_str_eq(j.resource, "c@d");
    jid_clear(&j);
}
END_TEST

START_TEST(jid_parse_rejects_empty_parts)
{
    static const char *const bad[] = {
        "",
        "@b.example",
        "a@",
        "a@/r",
        "b.example/",
        "a@b.example/",
        "/r",
        "a@@b.example",
        "a b@b.example",
        "a@b..example",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jid j = {(char *)"x", (char *)"y", (char *)"z"};
        ck_assert_msg(jid_parse(bad[i], &j) == ERR_INVAL, "'%s' accepted",
                      bad[i]);
        ck_assert_ptr_null(j.local);
        ck_assert_ptr_null(j.domain);
        ck_assert_ptr_null(j.resource);
    }
}
END_TEST

START_TEST(jid_parse_part_lengths)
{
    char s[2100];
    struct jid j;
    memset(s, 'l', 1023);
    memcpy(s + 1023, "@d.example", 11);
    ck_assert_int_eq(jid_parse(s, &j), 0);
    ck_assert_uint_eq(strlen(j.local), 1023);
    jid_clear(&j);
    memset(s, 'l', 1024);
    memcpy(s + 1024, "@d.example", 11);
    ck_assert_int_eq(jid_parse(s, &j), ERR_INVAL);

    memcpy(s, "d.example/", 10);
    memset(s + 10, 'r', 1023);
    s[1033] = '\0';
    ck_assert_int_eq(jid_parse(s, &j), 0);
    ck_assert_uint_eq(strlen(j.resource), 1023);
    jid_clear(&j);
    s[1033] = 'r';
    s[1034] = '\0';
    ck_assert_int_eq(jid_parse(s, &j), ERR_INVAL);
}
END_TEST

START_TEST(jid_domain_canon_forms)
{
    char out[64];
    /* plain names pass as they are, others are normalised */
    ck_assert_int_eq(jid_domain_canon("u@b.test/r", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "b.test");
    ck_assert_int_eq(jid_domain_canon("u@B.Test.", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "b.test");
    ck_assert_int_eq(jid_domain_canon("b\xc3\xbc"
                                      "cher.example",
                                      out, sizeof(out)),
                     0);
    ck_assert_str_eq(out, "xn--bcher-kva.example");
    ck_assert_int_eq(jid_domain_canon(NULL, out, sizeof(out)), ERR_INVAL);
    ck_assert_int_eq(jid_domain_canon("u@", out, sizeof(out)), ERR_INVAL);
    ck_assert_int_eq(jid_domain_canon("u@a b.test", out, sizeof(out)),
                     ERR_INVAL);
    /* the fast path refuses what normalisation refuses (found by
     * test/integration/hard-input.sh: from='x@evil..test') */
    static const char *const bad[] = {
        "u@evil..test",
        "u@.test",
        "u@-a.test",
        "u@a-.test",
        "u@a.123",
        "u@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
        "test",
    };
    char big[300];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(jid_domain_canon(bad[i], big, sizeof(big)) == ERR_INVAL,
                      "%s accepted", bad[i]);
    }
    ck_assert_int_eq(jid_domain_canon("u@127.0.0.1/r", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "127.0.0.1");
}
END_TEST

START_TEST(jid_domain_of_variants)
{
    char out[32];
    ck_assert_int_eq(jid_domain_of("a@b.example/r", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "b.example");
    ck_assert_int_eq(jid_domain_of("b.example", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "b.example");
    ck_assert_int_eq(jid_domain_of("b.example/x@y", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "b.example");
    /* Not normalised: a fast path over names that already are. */
    ck_assert_int_eq(jid_domain_of("a@B.Example", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "B.Example");
}
END_TEST

START_TEST(jid_domain_of_rejects)
{
    char out[10];
    ck_assert_int_eq(jid_domain_of("a@/r", out, sizeof(out)), ERR_INVAL);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(jid_domain_of("", out, sizeof(out)), ERR_INVAL);
    ck_assert_int_eq(jid_domain_of("/r", out, sizeof(out)), ERR_INVAL);
    /* 9 bytes + NUL fit in 10; 10 bytes do not. */
    ck_assert_int_eq(jid_domain_of("a@123456789", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "123456789");
    ck_assert_int_eq(jid_domain_of("a@1234567890", out, sizeof(out)),
                     ERR_INVAL);
    ck_assert_str_eq(out, "");
}
END_TEST

static Suite *base_suite(void)
{
    Suite *s = suite_create("base");
    TCase *tc;

    tc = tcase_create("buf");
    tcase_add_test(tc, buf_append_within_bound);
    tcase_add_test(tc, buf_too_big_leaves_content);
    tcase_add_test(tc, buf_empty_is_empty_string);
    tcase_add_test(tc, buf_consume_then_append_compacts);
    tcase_add_test(tc, buf_truncate_takes_back);
    tcase_add_test(tc, buf_printf_formats);
    tcase_add_test(tc, buf_printf_empty_on_fresh_buffer);
    tcase_add_test(tc, buf_steal_empties);
    tcase_add_test(tc, buf_secret_reset_wipes);
    tcase_add_test(tc, buf_secret_compact_wipes_tail);
    suite_add_tcase(s, tc);

    tc = tcase_create("err");
    tcase_add_test(tc, err_str_known_and_unknown);
    tcase_add_test(tc, err_stream_condition_maps);
    tcase_add_test(tc, err_every_code_has_text);
    suite_add_tcase(s, tc);

    tc = tcase_create("log");
    tcase_add_test(tc, log_escape_controls);
    tcase_add_test(tc, log_limit_per_second);
    tcase_add_test(tc, log_escape_non_ascii);
    tcase_add_test(tc, log_escape_embedded_nul);
    tcase_add_test(tc, log_escape_cut_at_max);
    tcase_add_test(tc, log_escape_cut_by_outsz);
    suite_add_tcase(s, tc);

    tc = tcase_create("backoff");
    tcase_add_test(tc, backoff_doubles_to_cap);
    tcase_add_test(tc, backoff_jitter_low_end_is_half);
    tcase_add_test(tc, backoff_jitter_within_range);
    tcase_add_test(tc, backoff_reset_starts_over);
    tcase_add_test(tc, backoff_no_overflow);
    tcase_add_test(tc, backoff_default_rand_in_bounds);
    tcase_add_test(tc, backoff_default_rand_covers_range);
    tcase_add_test(tc, backoff_default_source_used);
    suite_add_tcase(s, tc);

    tc = tcase_create("squeue");
    tcase_add_test(tc, squeue_fifo_order);
    tcase_add_test(tc, squeue_count_bound);
    tcase_add_test(tc, squeue_byte_bound);
    tcase_add_test(tc, squeue_lowered_bounds_refuse);
    tcase_add_test(tc, squeue_refused_push_keeps_reference);
    tcase_add_test(tc, squeue_pop_expired_deadline);
    tcase_add_test(tc, squeue_clear_releases_references);
    suite_add_tcase(s, tc);

    tc = tcase_create("jid");
    tcase_add_test(tc, jid_norm_lower_case);
    tcase_add_test(tc, jid_norm_trailing_dot);
    tcase_add_test(tc, jid_norm_idn);
    tcase_add_test(tc, jid_norm_label_length);
    tcase_add_test(tc, jid_norm_domain_length);
    tcase_add_test(tc, jid_norm_empty_label);
    tcase_add_test(tc, jid_norm_invalid_chars);
    tcase_add_test(tc, jid_norm_ip_literals);
    tcase_add_test(tc, jid_parse_full);
    tcase_add_test(tc, jid_parse_bare_and_domain);
    tcase_add_test(tc, jid_parse_separators_in_resource);
    tcase_add_test(tc, jid_parse_rejects_empty_parts);
    tcase_add_test(tc, jid_parse_part_lengths);
    tcase_add_test(tc, jid_domain_canon_forms);
    tcase_add_test(tc, jid_domain_of_variants);
    tcase_add_test(tc, jid_domain_of_rejects);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(base_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
