/*
 * dialback.h: XEP-0220 dialback keys as XEP-0185 recommends.
 *
 * key = lower-case hex HMAC-SHA256, keyed with the lower-case hex string of
 * SHA-256(secret), over "Receiving Originating StreamID" (single spaces).
 * Keys are compared in constant time. Secrets are never logged.
 */
#ifndef FEDGATE_DIALBACK_H
#define FEDGATE_DIALBACK_H

#include <stdbool.h>
#include <stddef.h>

#define DIALBACK_KEY_LEN 64

/* Computes the key into out (65 bytes with the NUL). 0 or ERR_NOMEM /
 * ERR_INVAL. */
int dialback_key(const char *secret,
                 const char *receiving,
                 const char *originating,
                 const char *stream_id,
                 char out[DIALBACK_KEY_LEN + 1]);

/* True if the received key equals the expected one; constant time in the
 * length of expected. */
bool dialback_key_equal(const char *expected, const char *received);

/* Fills out (64 hex chars + NUL) with a fresh random secret. 0 or ERR_SYS. */
int dialback_secret_generate(char out[DIALBACK_KEY_LEN + 1]);

#endif
