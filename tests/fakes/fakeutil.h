/*
 * fakeutil: small helpers the push fakes share: base64url, a peek into a
 * JWT's header and claims, UUIDs, a cheap PRNG for identifiers, clocks,
 * form fields and startup errors. Nothing here checks a signature.
 */
#ifndef FAKES_FAKEUTIL_H
#define FAKES_FAKEUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#include <jansson.h>

/* Print "PROG: message" on stderr and exit 2 (startup errors only). */
noreturn void fakeutil_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Set the program name used by fakeutil_die. */
void fakeutil_set_prog(const char *prog);

/*
 * Decode LEN bytes of unpadded base64url into OUT (room for LEN * 3 / 4
 * bytes). Returns the decoded length or -1 on a bad character or length.
 */
long fakeutil_b64url_decode(const char *in, size_t len, unsigned char *out);

/* Encode LEN bytes as unpadded base64url into OUT (room for 4*LEN/3+4). */
void fakeutil_b64url_encode(const unsigned char *in, size_t len, char *out);

/*
 * Split a compact JWS and decode its header and claims as JSON objects.
 * Returns 0 with *HEADER and *CLAIMS set (caller decrefs both), or -1
 * with both NULL when the token is not three base64url JSON parts.
 */
int fakeutil_jwt_peek(const char *token, json_t **header, json_t **claims);

/* Write a random upper-case UUID (36 chars and a NUL) into OUT. */
void fakeutil_uuid(char out[37]);

/* True when S is a UUID in 8-4-4-4-12 hex form (either case). */
bool fakeutil_is_uuid(const char *s);

/* True when S is exactly LEN hex digits. */
bool fakeutil_is_hex(const char *s, size_t len);

/* A fast non-cryptographic 64-bit random number (identifiers only). */
uint64_t fakeutil_rand64(void);

/* Fill OUT with N cryptographically random bytes; returns 0 or -1. */
int fakeutil_random(unsigned char *out, size_t n);

/* Wall-clock time in milliseconds and in seconds. */
int64_t fakeutil_now_ms(void);
int64_t fakeutil_now(void);

/*
 * Find field NAME in an application/x-www-form-urlencoded BODY of LEN
 * bytes and return its decoded value (caller frees), or NULL.
 */
char *fakeutil_form_get(const char *body, size_t len, const char *name);

/* True when the LEN bytes at S are valid UTF-8. */
bool fakeutil_utf8_ok(const char *s, size_t len);

#endif
