/*
 * Who is calling: technician and admin API keys (256 random bits, shown
 * once, stored as a SHA-256 hash), roles, a per-key rate limit, and a
 * small cache of recent key lookups that revocation clears at once.
 */
#ifndef VOUCH_AUTH_H
#define VOUCH_AUTH_H

#include <stdint.h>

#include "util.h"

struct http_req;
struct db;

/* What a route requires; handed to the http authenticator. */
enum auth_need {
	AUTH_NONE = 0,
	AUTH_TECHNICIAN, /* any technician or admin key */
	AUTH_ADMIN,      /* an admin key */
	AUTH_DEVICE,     /* an enrolled, active device's token */
};

enum auth_role {
	AUTH_ROLE_TECHNICIAN = 1,
	AUTH_ROLE_ADMIN,
};

/* The caller of an authenticated request (http_req_ctx). For a device,
   technician_id is empty and role 0. */
struct auth_who {
	char msp_id[UTIL_UUID_LEN + 1];
	char technician_id[UTIL_UUID_LEN + 1];
	enum auth_role role;
	char device_id[UTIL_UUID_LEN + 1];
	char user_id[UTIL_UUID_LEN + 1];
};

/* "vk_" and 43 base64url characters. */
#define AUTH_KEY_LEN 46
#define AUTH_HASH_HEX_LEN 64

/*
 * Make a new API key: the key text to show once, and the hex SHA-256 to
 * store (as the bytea text form "\\x..." the caller adds).
 */
void auth_key_new(
    char key[AUTH_KEY_LEN + 1], char hash_hex[AUTH_HASH_HEX_LEN + 1]);

/* Hex SHA-256 of a presented key. */
void auth_key_hash(const char *key, char hash_hex[AUTH_HASH_HEX_LEN + 1]);

struct auth *auth_new(struct db *db, int rate_per_minute, int burst);
void auth_free(struct auth *auth);

/* The http authenticator (see http_authenticate_fn). */
void auth_check(struct http_req *req, int need, void *arg);

/* Forget cached lookups of a key at once (after a revocation). */
void auth_forget(struct auth *auth, const char *hash_hex);

/* The LISTEN callback for the "vouch_auth" channel. */
void auth_notify_cb(const char *channel, const char *payload, void *arg);

/* "admin" or "technician". */
const char *auth_role_name(enum auth_role role);

#endif
