/*
 * check_dialback.c: XEP-0185 dialback keys against the published vectors
 * (XEP-0185 and XEP-0220), the two common mistakes (raw-digest HMAC key,
 * swapped domains), constant-time comparison and secret generation.
 */
#include "config.h"

#include "dialback.h"

#include "err.h"

#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "s3cr3tf0rd14lb4ck"
#define XEP0185_KEY \
    "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
#define XEP0220_KEY \
    "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3"

START_TEST(test_xep0185_vector)
{
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_key(SECRET, "xmpp.example.com", "example.org",
                                  "D60000229F", key),
                     0);
    ck_assert_str_eq(key, XEP0185_KEY);
}
END_TEST

START_TEST(test_xep0220_vector)
{
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_key(SECRET, "montague.example", "capulet.example",
                                  "D60000229F", key),
                     0);
    ck_assert_str_eq(key, XEP0220_KEY);
}
END_TEST

/* Keying the HMAC with the raw 32-byte digest instead of its hex string is
 * the usual mistake; it must not be what dialback_key computes. */
START_TEST(test_raw_digest_key_differs)
{
    unsigned char digest[32];
    unsigned int dlen = 0;
    ck_assert_int_eq(
        EVP_Digest(SECRET, strlen(SECRET), digest, &dlen, EVP_sha256(), NULL),
        1);
    const char *data = "xmpp.example.com example.org D60000229F";
    unsigned char mac[32];
    unsigned int maclen = 0;
    ck_assert_ptr_nonnull(HMAC(EVP_sha256(), digest, (int)dlen,
                               (const unsigned char *)data, strlen(data), mac,
                               &maclen));
    ck_assert_uint_eq(maclen, 32);
    char wrong[65];
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        wrong[2 * i] = digits[mac[i] >> 4];
        wrong[2 * i + 1] = digits[mac[i] & 0x0f];
    }
    wrong[64] = '\0';
    ck_assert_int_eq(strncmp(wrong, "4530485c", 8), 0);

    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_key(SECRET, "xmpp.example.com", "example.org",
                                  "D60000229F", key),
                     0);
    ck_assert_str_ne(key, wrong);
}
END_TEST

START_TEST(test_swapped_domains_differ)
{
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_key(SECRET, "example.org", "xmpp.example.com",
                                  "D60000229F", key),
                     0);
    ck_assert_uint_eq(strlen(key), DIALBACK_KEY_LEN);
    ck_assert_str_ne(key, XEP0185_KEY);
}
END_TEST

START_TEST(test_other_inputs_change_key)
{
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_key(SECRET, "xmpp.example.com", "example.org",
                                  "D60000229G", key),
                     0);
    ck_assert_str_ne(key, XEP0185_KEY);
    ck_assert_int_eq(dialback_key("s3cr3tf0rd14lb4cK", "xmpp.example.com",
                                  "example.org", "D60000229F", key),
                     0);
    ck_assert_str_ne(key, XEP0185_KEY);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    char key[DIALBACK_KEY_LEN + 1] = "x";
    ck_assert_int_eq(dialback_key(NULL, "a", "b", "c", key), ERR_INVAL);
    ck_assert_str_eq(key, "");
    ck_assert_int_eq(dialback_key("", "a", "b", "c", key), ERR_INVAL);
    ck_assert_int_eq(dialback_key(SECRET, NULL, "b", "c", key), ERR_INVAL);
    ck_assert_int_eq(dialback_key(SECRET, "a", NULL, "c", key), ERR_INVAL);
    ck_assert_int_eq(dialback_key(SECRET, "a", "b", NULL, key), ERR_INVAL);
    ck_assert_int_eq(dialback_key(SECRET, "a", "b", "c", NULL), ERR_INVAL);
}
END_TEST

START_TEST(test_compare)
{
    ck_assert(dialback_key_equal(XEP0185_KEY, XEP0185_KEY));
    /* a copy, so pointer equality plays no part */
    char copy[] = XEP0185_KEY;
    ck_assert(dialback_key_equal(XEP0185_KEY, copy));
    ck_assert(!dialback_key_equal(XEP0185_KEY, XEP0220_KEY));
    /* differs only in the last character */
    copy[DIALBACK_KEY_LEN - 1] = '4';
    ck_assert(!dialback_key_equal(XEP0185_KEY, copy));
    /* differs only in the first character */
    char first[] = XEP0185_KEY;
    first[0] = '4';
    ck_assert(!dialback_key_equal(XEP0185_KEY, first));
    /* upper case is a different key: keys are lower-case hex */
    char upper[] = XEP0185_KEY;
    upper[1] = 'C';
    ck_assert(!dialback_key_equal(XEP0185_KEY, upper));
}
END_TEST

START_TEST(test_compare_lengths)
{
    /* a prefix, the key plus more, empty and NULL never match */
    char prefix[] = XEP0185_KEY;
    prefix[DIALBACK_KEY_LEN - 1] = '\0';
    ck_assert(!dialback_key_equal(XEP0185_KEY, prefix));
    ck_assert(!dialback_key_equal(XEP0185_KEY, XEP0185_KEY "0"));
    ck_assert(!dialback_key_equal(XEP0185_KEY, ""));
    ck_assert(!dialback_key_equal("", XEP0185_KEY));
    ck_assert(!dialback_key_equal(XEP0185_KEY, NULL));
    ck_assert(!dialback_key_equal(NULL, XEP0185_KEY));
    ck_assert(!dialback_key_equal(NULL, NULL));
}
END_TEST

static bool is_lower_hex(const char *s)
{
    for (; *s != '\0'; s++) {
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) {
            return false;
        }
    }
    return true;
}

START_TEST(test_secret_generate)
{
    char a[DIALBACK_KEY_LEN + 1];
    char b[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_secret_generate(a), 0);
    ck_assert_int_eq(dialback_secret_generate(b), 0);
    ck_assert_uint_eq(strlen(a), DIALBACK_KEY_LEN);
    ck_assert_uint_eq(strlen(b), DIALBACK_KEY_LEN);
    ck_assert(is_lower_hex(a));
    ck_assert(is_lower_hex(b));
    ck_assert_str_ne(a, b);
    /* a generated secret works as a dialback secret */
    char key[DIALBACK_KEY_LEN + 1];
    ck_assert_int_eq(dialback_key(a, "a.test", "b.test", "id1", key), 0);
    ck_assert_uint_eq(strlen(key), DIALBACK_KEY_LEN);
    ck_assert_int_eq(dialback_secret_generate(NULL), ERR_INVAL);
}
END_TEST

static Suite *dialback_suite(void)
{
    Suite *s = suite_create("dialback");
    TCase *tk = tcase_create("key");
    tcase_add_test(tk, test_xep0185_vector);
    tcase_add_test(tk, test_xep0220_vector);
    tcase_add_test(tk, test_raw_digest_key_differs);
    tcase_add_test(tk, test_swapped_domains_differ);
    tcase_add_test(tk, test_other_inputs_change_key);
    tcase_add_test(tk, test_invalid_arguments);
    suite_add_tcase(s, tk);
    TCase *tc = tcase_create("compare");
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_compare_lengths);
    suite_add_tcase(s, tc);
    TCase *tg = tcase_create("secret");
    tcase_add_test(tg, test_secret_generate);
    suite_add_tcase(s, tg);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dialback_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
