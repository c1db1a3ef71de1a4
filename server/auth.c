/*
 * API keys and the per-key rate limit. A key is looked up by its SHA-256
 * in PostgreSQL once, then served from a cache for a minute; revoking a
 * key clears its entry in this process at once and in the others through
 * NOTIFY on "vouch_auth". Rate limits are token buckets of the
 * ratelimit module, keyed by the key's hash or the device's id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "db.h"
#include "devtoken.h"
#include "http.h"
#include "log.h"
#include "ratelimit.h"
#include "util.h"

#define AUTH_BUCKETS 4096
#define AUTH_CACHE_MS 60000 /* a lookup is trusted this long */
#define AUTH_IDLE_MS 600000 /* entries unused this long go */
#define AUTH_SWEEP_AT 50000 /* entries before a sweep */

/* One key seen recently: its lookup. */
struct auth_entry {
	struct auth_entry *next;
	char hash_hex[AUTH_HASH_HEX_LEN + 1];
	struct auth_who who;
	bool known; /* lookup valid until valid_until */
	uint64_t valid_until;
	uint64_t last_used;
};

struct auth {
	struct db *db;
	struct ratelimit *limits;
	size_t count;
	struct auth_entry *buckets[AUTH_BUCKETS];
};

/* A key lookup waiting for the database. */
struct auth_lookup {
	struct auth *auth;
	struct http_req *req;
	int need;
	char hash_hex[AUTH_HASH_HEX_LEN + 1];
};

static const char sql_device_lookup[] =
    "UPDATE devices SET last_seen_at = now()"
    " WHERE msp_id = $1 AND id = $2 AND status <> 'revoked'"
    " RETURNING user_id";

static const char sql_key_lookup[] =
    "SELECT msp_id, id, role FROM technicians"
    " WHERE key_hash = decode($1, 'hex') AND revoked_at IS NULL";

/* "admin" or "technician". */
const char *
auth_role_name(enum auth_role role)
{
	return role == AUTH_ROLE_ADMIN ? "admin" : "technician";
}

/* Hex SHA-256 of a presented key. */
void
auth_key_hash(const char *key, char hash_hex[AUTH_HASH_HEX_LEN + 1])
{
	uint8_t digest[32];

	util_sha256(key, strlen(key), digest);
	util_hex(digest, sizeof(digest), hash_hex);
}

/* 256 random bits as "vk_" + base64url, and the hash to store. */
void
auth_key_new(char key[AUTH_KEY_LEN + 1], char hash_hex[AUTH_HASH_HEX_LEN + 1])
{
	uint8_t raw[32];

	util_random(raw, sizeof(raw));
	memcpy(key, "vk_", 3);
	util_b64url_encode(raw, sizeof(raw), key + 3);
	auth_key_hash(key, hash_hex);
}

/* Create the key cache over the given pool. */
struct auth *
auth_new(struct db *db, int rate_per_minute, int burst)
{
	struct auth *auth;

	auth = calloc(1, sizeof(*auth));
	if (auth == NULL)
		return NULL;
	auth->db = db;
	auth->limits = ratelimit_new(rate_per_minute, burst);
	if (auth->limits == NULL) {
		free(auth);
		return NULL;
	}
	return auth;
}

/* Free every entry and the cache. */
void
auth_free(struct auth *auth)
{
	struct auth_entry *e, *next;
	size_t i;

	if (auth == NULL)
		return;
	for (i = 0; i < AUTH_BUCKETS; i++) {
		for (e = auth->buckets[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	ratelimit_free(auth->limits);
	free(auth);
}

/* The bucket index of a hash: its first hex digits are already random. */
static size_t
auth_slot(const char *hash_hex)
{
	size_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v * 16 +
		    (size_t)(hash_hex[i] <= '9' ? hash_hex[i] - '0'
		                                : hash_hex[i] - 'a' + 10);
	return v % AUTH_BUCKETS;
}

/* Find the entry of a hash, or NULL. */
static struct auth_entry *
auth_find(struct auth *auth, const char *hash_hex)
{
	struct auth_entry *e;

	for (e = auth->buckets[auth_slot(hash_hex)]; e != NULL; e = e->next)
		if (strcmp(e->hash_hex, hash_hex) == 0)
			return e;
	return NULL;
}

/* Drop entries unused for a while, so the cache cannot grow unbounded. */
static void
auth_sweep(struct auth *auth, uint64_t now)
{
	struct auth_entry **pp, *e;
	size_t i;

	for (i = 0; i < AUTH_BUCKETS; i++) {
		pp = &auth->buckets[i];
		while ((e = *pp) != NULL) {
			if (now - e->last_used > AUTH_IDLE_MS) {
				*pp = e->next;
				free(e);
				auth->count--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* The entry of a hash, created with a full bucket when new. */
static struct auth_entry *
auth_entry_get(struct auth *auth, const char *hash_hex, uint64_t now)
{
	struct auth_entry *e;
	size_t slot;

	e = auth_find(auth, hash_hex);
	if (e != NULL)
		return e;

	if (auth->count >= AUTH_SWEEP_AT)
		auth_sweep(auth, now);
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	memcpy(e->hash_hex, hash_hex, sizeof(e->hash_hex));
	e->last_used = now;
	slot = auth_slot(hash_hex);
	e->next = auth->buckets[slot];
	auth->buckets[slot] = e;
	auth->count++;
	return e;
}

/* Mark a key's lookup stale so the next request asks the database. */
void
auth_forget(struct auth *auth, const char *hash_hex)
{
	struct auth_entry *e;

	if (strlen(hash_hex) != AUTH_HASH_HEX_LEN)
		return;
	e = auth_find(auth, hash_hex);
	if (e != NULL)
		e->known = false;
}

/* Another process revoked a key; NULL payload: we may have missed some. */
void
auth_notify_cb(const char *channel, const char *payload, void *arg)
{
	struct auth *auth = arg;
	struct auth_entry *e;
	size_t i;

	if (payload != NULL) {
		auth_forget(auth, payload);
		return;
	}
	for (i = 0; i < AUTH_BUCKETS; i++)
		for (e = auth->buckets[i]; e != NULL; e = e->next)
			e->known = false;
}

/* Reply 429 with Retry-After when the caller's bucket is empty. */
static bool
auth_rate_limited(struct auth *auth, struct http_req *req, const char *key)
{
	char retry[16];
	int wait_s;

	wait_s = ratelimit_take(auth->limits, key);
	if (wait_s == 0)
		return false;
	snprintf(retry, sizeof(retry), "%d", wait_s);
	http_reply_header(req, "Retry-After", retry);
	http_reply_problem(req, 429, "rate_limited", NULL,
	    "too many requests with this credential; retry in %d s", wait_s);
	return true;
}

/* Apply role and rate limit to a known key, then run the handler. */
static void
auth_admit(struct auth *auth, struct http_req *req, int need,
    struct auth_entry *e, uint64_t now)
{
	struct auth_who *who;

	e->last_used = now;
	if (need == AUTH_ADMIN && e->who.role != AUTH_ROLE_ADMIN) {
		http_reply_problem(req, 403, "forbidden", NULL,
		    "this operation needs an admin key");
		return;
	}

	if (auth_rate_limited(auth, req, e->hash_hex))
		return;

	who = malloc(sizeof(*who));
	if (who == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	*who = e->who;
	who->device_id[0] = '\0';
	who->user_id[0] = '\0';
	http_req_set_ctx(req, who, free);
	http_req_continue(req);
}

/* The database answered a key lookup. */
static void
auth_lookup_done_cb(struct db_result *r, void *arg)
{
	struct auth_lookup *lookup = arg;
	struct auth *auth = lookup->auth;
	struct auth_entry *e;
	PGresult *res;
	uint64_t now = util_now_ms();

	if (r->status != 0) {
		api_reply_db_error(lookup->req, r);
		goto out;
	}

	res = r->res[0];
	if (PQntuples(res) != 1) {
		http_reply_problem(lookup->req, 401, "unauthorized", NULL,
		    "unknown or revoked API key");
		goto out;
	}

	e = auth_entry_get(auth, lookup->hash_hex, now);
	if (e == NULL) {
		http_reply_problem(
		    lookup->req, 500, "internal", NULL, "out of memory");
		goto out;
	}
	snprintf(
	    e->who.msp_id, sizeof(e->who.msp_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(e->who.technician_id, sizeof(e->who.technician_id), "%s",
	    PQgetvalue(res, 0, 1));
	e->who.role = strcmp(PQgetvalue(res, 0, 2), "admin") == 0
	    ? AUTH_ROLE_ADMIN
	    : AUTH_ROLE_TECHNICIAN;
	e->known = true;
	e->valid_until = now + AUTH_CACHE_MS;
	auth_admit(auth, lookup->req, lookup->need, e, now);

out:
	free(lookup);
}

/* A device lookup waiting for the database. */
struct auth_device_lookup {
	struct auth *auth;
	struct http_req *req;
	struct auth_who who;
};

/* The database answered whether the device is still active. */
static void
auth_device_done_cb(struct db_result *r, void *arg)
{
	struct auth_device_lookup *lookup = arg;
	struct auth_who *who;
	char key[UTIL_UUID_LEN + 8];

	if (r->status != 0) {
		api_reply_db_error(lookup->req, r);
		goto out;
	}
	if (PQntuples(r->res[0]) != 1) {
		http_reply_problem(lookup->req, 401, "unauthorized", NULL,
		    "this device is not enrolled or was revoked");
		goto out;
	}
	snprintf(lookup->who.user_id, sizeof(lookup->who.user_id), "%s",
	    PQgetvalue(r->res[0], 0, 0));

	/* Devices have buckets of their own, keyed by their id. */
	snprintf(key, sizeof(key), "device:%s", lookup->who.device_id);
	if (auth_rate_limited(lookup->auth, lookup->req, key))
		goto out;
	who = malloc(sizeof(*who));
	if (who == NULL) {
		http_reply_problem(
		    lookup->req, 500, "internal", NULL, "out of memory");
		goto out;
	}
	*who = lookup->who;
	http_req_set_ctx(lookup->req, who, free);
	http_req_continue(lookup->req);
out:
	free(lookup);
}

/* Authenticate a device token: signature here, status in the database. */
static void
auth_check_device(struct auth *auth, struct http_req *req, const char *token)
{
	struct auth_device_lookup *lookup;
	const char *params[2];

	lookup = calloc(1, sizeof(*lookup));
	if (lookup == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	if (token == NULL ||
	    devtoken_verify(token, lookup->who.msp_id, lookup->who.device_id) !=
	        0) {
		free(lookup);
		http_reply_problem(req, 401, "unauthorized", NULL,
		    "a valid device token is required");
		return;
	}
	lookup->auth = auth;
	lookup->req = req;
	params[0] = lookup->who.msp_id;
	params[1] = lookup->who.device_id;
	if (db_query(auth->db, sql_device_lookup, 2, params,
	        auth_device_done_cb, lookup) != 0) {
		free(lookup);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}

/* Extract the bearer credential, or NULL. */
static const char *
auth_bearer(struct http_req *req)
{
	const char *h = http_req_header(req, "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return h;
}

/* The http authenticator: resolve the bearer key, then admit or refuse. */
void
auth_check(struct http_req *req, int need, void *arg)
{
	struct auth *auth = arg;
	struct auth_lookup *lookup;
	struct auth_entry *e;
	const char *key, *params[1];
	char hash_hex[AUTH_HASH_HEX_LEN + 1];
	uint64_t now = util_now_ms();

	key = auth_bearer(req);
	if (need == AUTH_DEVICE) {
		auth_check_device(auth, req, key);
		return;
	}
	if (key == NULL || strlen(key) != AUTH_KEY_LEN ||
	    strncmp(key, "vk_", 3) != 0) {
		http_reply_problem(req, 401, "unauthorized", NULL,
		    "an API key is required: Authorization: Bearer <key>");
		return;
	}
	auth_key_hash(key, hash_hex);

	e = auth_find(auth, hash_hex);
	if (e != NULL && e->known && now < e->valid_until) {
		auth_admit(auth, req, need, e, now);
		return;
	}

	lookup = calloc(1, sizeof(*lookup));
	if (lookup == NULL) {
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
		return;
	}
	lookup->auth = auth;
	lookup->req = req;
	lookup->need = need;
	memcpy(lookup->hash_hex, hash_hex, sizeof(hash_hex));
	params[0] = hash_hex;
	if (db_query(auth->db, sql_key_lookup, 1, params, auth_lookup_done_cb,
	        lookup) != 0) {
		free(lookup);
		http_reply_problem(req, 500, "internal", NULL, "out of memory");
	}
}
