/*
 * One-time codes: drawn uniformly from the CSPRNG, stored only as an
 * HMAC-SHA256 keyed with the [secrets] key and bound to the object they
 * belong to, and compared in constant time.
 */
#ifndef VOUCH_OTP_H
#define VOUCH_OTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP_HASH_HEX_LEN 64

/* Write a code of digits (6..8) decimal digits and a NUL to out. */
void otp_digits(char *out, int digits);

/*
 * Write an enrolment code: 12 characters from an alphabet without look-
 * alike letters, grouped as XXXX-XXXX-XXXX (14 characters and a NUL).
 */
void otp_enrollment_code(char out[15]);

/* Canonical form of a typed enrolment code (upper case, no separators);
   returns -1 when it cannot be one. out holds 13 bytes. */
int otp_enrollment_normalise(const char *typed, char out[13]);

/* Hex HMAC-SHA256 of "context:code" under key. */
void otp_hash(const uint8_t key[32], const char *context, const char *code,
    char out[OTP_HASH_HEX_LEN + 1]);

/* Constant-time check of a typed code against a stored hash. */
bool otp_check(const uint8_t key[32], const char *context, const char *code,
    const char *stored_hex);

/* Draw n distinct numbers in 10..99, one of them match, in random order. */
void otp_match_options(int match, int *options, int n);

/* A uniformly random integer in [low, high]. */
int otp_uniform(int low, int high);

#endif
