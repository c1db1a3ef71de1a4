/*
 * The server's own keys, read at start-up: the 32-byte key for data at
 * rest ([secrets] key_file) and the P-256 token signing key ([tokens]
 * signing_key_file). Files that others can read are refused.
 */
#ifndef VOUCH_KEYS_H
#define VOUCH_KEYS_H

#include <stdint.h>

/*
 * Read the data-at-rest key: 32 raw bytes, or 64 hex digits (a trailing
 * newline allowed). Returns 0, or -1 with *cause set.
 */
int keys_load_secret(const char *path, uint8_t key[32], const char **cause);

/*
 * Check that the token signing key is an unencrypted P-256 private key
 * in PEM. Returns 0, or -1 with *cause set.
 */
int keys_check_signing(const char *path, const char **cause);

#endif
