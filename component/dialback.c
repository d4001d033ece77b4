/*
 * dialback.c: XEP-0220 dialback keys computed as XEP-0185 recommends.
 *
 *   key = hex(HMAC-SHA256(hex(SHA-256(secret)),
 *                         receiving " " originating " " stream_id))
 *
 * The HMAC key is the 64-character lower-case hex string of the digest,
 * not the 32 raw bytes: that is what the XEP's example computes, and the
 * raw-digest variant (a common mistake) gives keys no other server
 * accepts. The digest, its hex form and the MAC output are wiped before
 * returning; the secret itself is never logged.
 */
#include "config.h"

#include "dialback.h"

#include "err.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DIALBACK_SHA256_LEN 32

static void dialback_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

int dialback_key(const char *secret,
                 const char *receiving,
                 const char *originating,
                 const char *stream_id,
                 char out[DIALBACK_KEY_LEN + 1])
{
    unsigned char digest[DIALBACK_SHA256_LEN];
    char hexkey[2 * DIALBACK_SHA256_LEN + 1];
    unsigned char mac[DIALBACK_SHA256_LEN];
    unsigned int dlen = 0;
    size_t maclen = 0;
    EVP_MAC *hmac = NULL;
    EVP_MAC_CTX *mctx = NULL;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    int rc = ERR_INVAL;

    if (out != NULL) {
        out[0] = '\0';
    }
    if (secret == NULL || receiving == NULL || originating == NULL ||
        stream_id == NULL || out == NULL || secret[0] == '\0') {
        return ERR_INVAL;
    }

    if (EVP_Digest(secret, strlen(secret), digest, &dlen, EVP_sha256(), NULL) !=
            1 ||
        dlen != sizeof(digest)) {
        rc = ERR_NOMEM;
        goto out;
    }
    dialback_hex(digest, sizeof(digest), hexkey);

    /* Fetched per call: about a microsecond more than a cached EVP_MAC,
     * and no process-wide state to set up or tear down. Keys are made a
     * few times per s2s stream. */
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (hmac == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    mctx = EVP_MAC_CTX_new(hmac);
    if (mctx == NULL) {
        rc = ERR_NOMEM;
        goto out;
    }
    if (EVP_MAC_init(mctx, (const unsigned char *)hexkey,
                     2 * DIALBACK_SHA256_LEN, params) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)receiving,
                       strlen(receiving)) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)" ", 1) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)originating,
                       strlen(originating)) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)" ", 1) != 1 ||
        EVP_MAC_update(mctx, (const unsigned char *)stream_id,
                       strlen(stream_id)) != 1 ||
        EVP_MAC_final(mctx, mac, &maclen, sizeof(mac)) != 1 ||
        maclen != sizeof(mac)) {
        rc = ERR_NOMEM;
        goto out;
    }
    dialback_hex(mac, sizeof(mac), out);
    rc = 0;

out:
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(hmac);
    OPENSSL_cleanse(digest, sizeof(digest));
    OPENSSL_cleanse(hexkey, sizeof(hexkey));
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

bool dialback_key_equal(const char *expected, const char *received)
{
    if (expected == NULL || received == NULL) {
        return false;
    }
    size_t elen = strlen(expected);
    /* strnlen: a received key longer than expected is not read further
     * than needed to know it differs in length. */
    size_t rlen = strnlen(received, elen + 1);
    /* Compare elen bytes either way, so the time depends only on the
     * length of expected (public: always DIALBACK_KEY_LEN) and never on
     * where the content first differs. */
    const char *other = rlen == elen ? received : expected;
    int diff = CRYPTO_memcmp(expected, other, elen);
    return (rlen == elen) & (diff == 0);
}

int dialback_secret_generate(char out[DIALBACK_KEY_LEN + 1])
{
    unsigned char raw[DIALBACK_KEY_LEN / 2];

    if (out == NULL) {
        return ERR_INVAL;
    }
    out[0] = '\0';
    /* RAND_bytes draws from OpenSSL's DRBG, seeded from getrandom(2). */
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        OPENSSL_cleanse(raw, sizeof(raw));
        return ERR_SYS;
    }
    dialback_hex(raw, sizeof(raw), out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}
