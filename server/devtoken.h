/*
 * Device credentials: the device token (an ES256 JWT signed by the
 * server's token key, sub = device id) and the device's own signatures
 * (compact JWS made with the P-256 key it created at enrolment), which
 * prove that a decision or a renewal came from the enrolled phone.
 */
#ifndef VOUCH_DEVTOKEN_H
#define VOUCH_DEVTOKEN_H

#include <jansson.h>

#include "util.h"

/* Load the signing key; returns 0, or -1 with *cause. */
int devtoken_setup(
    const char *signing_key_file, int ttl_seconds, const char **cause);

/* Forget the key (wiped). */
void devtoken_teardown(void);

/*
 * Issue a token for a device. Returns a malloc'd JWT (caller frees) and
 * its expiry (epoch seconds) in *expires_at, or NULL.
 */
char *devtoken_issue(
    const char *msp_id, const char *device_id, long long *expires_at);

/*
 * Check a presented device token: signature with the pinned algorithm
 * and expiry. On success fills the ids and returns 0; else -1. Results
 * are cached by token hash until the token expires.
 */
int devtoken_verify(const char *token, char msp_id[UTIL_UUID_LEN + 1],
    char device_id[UTIL_UUID_LEN + 1]);

/*
 * Check that pem is a P-256 public key and return it re-encoded as a
 * canonical "PUBLIC KEY" PEM (malloc'd), or NULL with *cause.
 */
char *devtoken_public_key(const char *pem, const char **cause);

/*
 * Verify a compact JWS signed by a device key (ES256 only, alg pinned).
 * On success *claims holds its claims (caller decrefs) and 0 is
 * returned; else -1 with *cause naming what failed.
 */
int devtoken_check_jws(const char *jws, const char *public_key_pem,
    json_t **claims, const char **cause);

/* Drop cached verifications (tests and shutdown). */
void devtoken_cache_clear(void);

#endif
