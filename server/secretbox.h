/*
 * Data at rest: AES-256-GCM under the [secrets] key, for credentials and
 * codes that must sit in PostgreSQL for a while (directory bind
 * passwords, one-time codes waiting in the outbox).
 */
#ifndef VOUCH_SECRETBOX_H
#define VOUCH_SECRETBOX_H

#include <stddef.h>
#include <stdint.h>

/*
 * Seal plaintext with a fresh 96-bit nonce. Returns a malloc'd text
 * "v1.<base64url(nonce | ciphertext | tag)>" (caller frees), or NULL.
 * context is bound into the tag (e.g. the row's id), so a sealed value
 * moved to another row does not open.
 */
char *secretbox_seal(const uint8_t key[32], const char *context,
    const void *plaintext, size_t len);

/*
 * Open a sealed text. Returns a malloc'd NUL-terminated plaintext (caller
 * wipes and frees) with its length in *len, or NULL when the text was
 * altered, sealed under another key or context, or malformed.
 */
char *secretbox_open(const uint8_t key[32], const char *context,
    const char *sealed, size_t *len);

#endif
