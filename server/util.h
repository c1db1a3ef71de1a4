/*
 * Small pure helpers shared by the server modules: random bytes, hex and
 * base64url, SHA-256, UUIDs, time formats and checks on common field
 * formats. Nothing here touches the loop or the database.
 */
#ifndef VOUCH_UTIL_H
#define VOUCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTIL_UUID_LEN 36

/* Fill buf with n bytes from the CSPRNG; aborts if it fails. */
void util_random(void *buf, size_t n);

/* Write 2n lowercase hex digits and a NUL to out. */
void util_hex(const void *data, size_t n, char *out);

/*
 * Encode n bytes as unpadded base64url into out, which holds at least
 * util_b64url_len(n) + 1 bytes. Returns the length written.
 */
size_t util_b64url_encode(const void *data, size_t n, char *out);
size_t util_b64url_len(size_t n);

/* Decode unpadded base64url; returns the length, or -1 when malformed or
   larger than cap. */
long util_b64url_decode(const char *text, size_t len, uint8_t *out, size_t cap);

void util_sha256(const void *data, size_t n, uint8_t out[32]);

/* A random (version 4) UUID in canonical lowercase form. */
void util_uuid_new(char out[UTIL_UUID_LEN + 1]);

/* True for a canonical 8-4-4-4-12 hex UUID (any case). */
bool util_uuid_valid(const char *s);

/* True for an RFC 3339 date-time with a zone ("Z" or +hh:mm). */
bool util_rfc3339_valid(const char *s);

/* True for an E.164 number: "+", then 8 to 15 digits, the first not 0. */
bool util_e164_valid(const char *s);

/* True for a plausible mail address: one "@", no spaces, <= 254 bytes. */
bool util_email_valid(const char *s);

/*
 * Decode one UTF-8 character at s (n bytes left): its length, or 0 when
 * it is malformed, truncated, overlong or a surrogate. cp may be NULL.
 */
size_t util_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* True when s is valid UTF-8 of at most max_chars code points and at
   least min_chars. */
bool util_utf8_length_ok(const char *s, size_t min_chars, size_t max_chars);

/* The same, but line breaks and tabs are allowed (PEM, notes). */
bool util_utf8_text_ok(const char *s, size_t min_chars, size_t max_chars);

/* Milliseconds of a monotonic clock. */
uint64_t util_now_ms(void);

/* Constant-time comparison of n bytes. */
bool util_equal_ct(const void *a, const void *b, size_t n);

#endif
