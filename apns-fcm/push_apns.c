/*
 * APNs specifics: the provider token (ES256 JWT) made once per key and
 * shared by every connection of the process, the request headers of a
 * notification, and reading an APNs answer (reason, timestamp, apns-id).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "push_int.h"

#define APNS_PAYLOAD_MAX 4096
#define APNS_TOKEN_MAX 200
#define APNS_COLLAPSE_MAX 64
#define APNS_FORCE_GAP_S 60 /* forced rotations at most this often */

/* A provider key and its current token, shared process-wide. */
struct push_apns_key {
	struct push_apns_key *next;
	unsigned refs;
	char *team_id;
	char *key_id;
	char *pem;
	char *bearer; /* "bearer <jwt>" */
	long long iat;
	uint64_t gen;
	int stale; /* the peer called it expired */
	long long last_forced;
};

/* Every key in use in this process (the loop is single-threaded). */
static struct push_apns_key *apns_keys;

/*
 * A signed provider token for iat, or NULL when the key cannot sign.
 * Caller frees with free().
 */
char *
push_apns_jwt(
    const char *team_id, const char *key_id, const char *pem, long long iat)
{
	jwt_t *jwt = NULL;
	char *out = NULL;

	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_header(jwt, "kid", key_id) != 0 ||
	    jwt_add_grant(jwt, "iss", team_id) != 0 ||
	    jwt_add_grant_int(jwt, "iat", iat) != 0 ||
	    jwt_set_alg(jwt, JWT_ALG_ES256, (const unsigned char *)pem,
	        (int)strlen(pem)) != 0)
		goto out;
	out = jwt_encode_str(jwt);

out:
	jwt_free(jwt);
	return out;
}

/* Make a new token for key now; keeps the old one on failure. */
static int
apns_key_rotate(struct push_apns_key *key, long long now)
{
	char *jwt, *bearer = NULL;

	jwt = push_apns_jwt(key->team_id, key->key_id, key->pem, now);
	if (jwt == NULL)
		return -1;
	if (asprintf(&bearer, "bearer %s", jwt) < 0)
		bearer = NULL;
	free(jwt);
	if (bearer == NULL)
		return -1;
	free(key->bearer);
	key->bearer = bearer;
	key->iat = now;
	key->gen++;
	key->stale = 0;
	return 0;
}

/* Free a key's memory, wiping the private key. */
static void
apns_key_free(struct push_apns_key *key)
{
	free(key->team_id);
	free(key->key_id);
	if (key->pem != NULL) {
		OPENSSL_cleanse(key->pem, strlen(key->pem));
		free(key->pem);
	}
	free(key->bearer);
	free(key);
}

/*
 * The shared key for team/key id/PEM, made (and checked by signing once)
 * on first use. Release with push_apns_key_put. NULL with *cause set.
 */
struct push_apns_key *
push_apns_key_get(const char *team_id, const char *key_id, const char *pem,
    const char **cause)
{
	struct push_apns_key *key;

	for (key = apns_keys; key != NULL; key = key->next) {
		if (strcmp(key->team_id, team_id) == 0 &&
		    strcmp(key->key_id, key_id) == 0 &&
		    strcmp(key->pem, pem) == 0) {
			key->refs++;
			return key;
		}
	}
	key = calloc(1, sizeof(*key));
	if (key == NULL) {
		*cause = "out of memory";
		return NULL;
	}
	key->team_id = strdup(team_id);
	key->key_id = strdup(key_id);
	key->pem = strdup(pem);
	if (key->team_id == NULL || key->key_id == NULL || key->pem == NULL ||
	    apns_key_rotate(key, (long long)time(NULL)) != 0) {
		*cause = "cannot sign an ES256 token with the APNs key";
		apns_key_free(key);
		return NULL;
	}
	key->refs = 1;
	key->next = apns_keys;
	apns_keys = key;
	return key;
}

/* Drop one reference; the last one frees the key. Accepts NULL. */
void
push_apns_key_put(struct push_apns_key *key)
{
	struct push_apns_key **p;

	if (key == NULL || --key->refs > 0)
		return;
	for (p = &apns_keys; *p != NULL; p = &(*p)->next) {
		if (*p == key) {
			*p = key->next;
			break;
		}
	}
	apns_key_free(key);
}

/*
 * The "bearer <jwt>" value to send now, rotated when older than
 * max_age_s or called expired; *gen names the token, *made is set when a
 * new one was signed. Valid until the next call.
 */
const char *
push_apns_bearer(
    struct push_apns_key *key, unsigned max_age_s, uint64_t *gen, int *made)
{
	long long now = (long long)time(NULL);

	*made = 0;
	if (key->stale || now - key->iat >= (long long)max_age_s ||
	    now < key->iat - 60) {
		if (apns_key_rotate(key, now) == 0)
			*made = 1;
	}
	*gen = key->gen;
	return key->bearer;
}

/*
 * The peer said the token of generation gen expired. Rotate once per
 * token and not more than once a minute; returns 1 when it will rotate.
 */
int
push_apns_key_expired(struct push_apns_key *key, uint64_t gen)
{
	long long now = (long long)time(NULL);

	if (gen != key->gen || key->stale ||
	    now - key->last_forced < APNS_FORCE_GAP_S)
		return 0;
	key->stale = 1;
	key->last_forced = now;
	return 1;
}

/*
 * A 64-bit pseudo-random word for apns-ids: unique, not secret, so a
 * xorshift generator seeded once from OpenSSL (RAND_bytes on every
 * notification costs a system call).
 */
static int
apns_id_word(uint64_t *out)
{
	static uint64_t state;
	uint64_t x;

	if (state == 0 &&
	    (RAND_bytes((unsigned char *)&state, sizeof(state)) != 1 ||
	        state == 0))
		return -1;
	x = state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	state = x;
	*out = x * 0x2545f4914f6cdd1dULL;
	return 0;
}

/* A random (version 4) UUID in upper case, as APNs writes them. */
int
push_uuid(char out[37])
{
	static const char hex[] = "0123456789ABCDEF";
	unsigned char b[16];
	uint64_t w[2];
	int i, j = 0;

	if (apns_id_word(&w[0]) != 0 || apns_id_word(&w[1]) != 0)
		return -1;
	memcpy(b, w, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[b[i] >> 4];
		out[j++] = hex[b[i] & 0x0f];
	}
	out[j] = '\0';
	return 0;
}

/* True for 8-4-4-4-12 hex digits. */
static int
apns_is_uuid(const char *s)
{
	int i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

/* True when s is 1..max characters, each allowed by the class. */
static int
apns_is_word(const char *s, size_t max, int hex)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++) {
		if (hex ? !isxdigit((unsigned char)*s)
		        : !(islower((unsigned char)*s) || *s == '-'))
			return 0;
	}
	return n > 0 && n <= max;
}

/* Check a notification; returns NULL or what is wrong with it. */
static const char *
apns_check(const struct push_note *note)
{
	if (note->device_token == NULL ||
	    !apns_is_word(note->device_token, APNS_TOKEN_MAX, 1))
		return "device token must be hex";
	if (note->payload == NULL || note->payload[0] == '\0')
		return "payload is empty";
	if (strlen(note->payload) > APNS_PAYLOAD_MAX)
		return "payload is over 4096 bytes";
	if (note->push_type != NULL && !apns_is_word(note->push_type, 32, 0))
		return "push type is not a word";
	if (note->priority != 0 && note->priority != 1 && note->priority != 5 &&
	    note->priority != 10)
		return "priority must be 10, 5 or 1";
	if (note->collapse_id != NULL &&
	    strlen(note->collapse_id) > APNS_COLLAPSE_MAX)
		return "collapse id is over 64 bytes";
	if (note->apns_id != NULL && !apns_is_uuid(note->apns_id))
		return "apns-id is not a UUID";
	if (note->has_expiration && note->expiration < 0)
		return "expiration is negative";
	return NULL;
}

/* Fill req with the path, headers and body of an APNs notification. */
int
push_apns_build(struct push_req *req, const char *topic,
    const struct push_note *note, const char **cause)
{
	char uuid[37], num[24];
	size_t tlen;
	int rv = 0;

	*cause = apns_check(note);
	if (*cause != NULL)
		return -1;
	if (note->apns_id == NULL && push_uuid(uuid) != 0) {
		*cause = "no randomness for apns-id";
		return -1;
	}
	*cause = "out of memory";
	if (asprintf(&req->path, "/3/device/%s", note->device_token) < 0) {
		req->path = NULL;
		return -1;
	}
	req->body = strdup(note->payload);
	if (req->body == NULL)
		return -1;
	req->body_len = strlen(req->body);
	tlen = strlen(note->device_token);
	snprintf(req->tail, sizeof(req->tail), "%s",
	    note->device_token + (tlen > 4 ? tlen - 4 : 0));

	rv |= push_req_header(req, "apns-topic", topic);
	rv |= push_req_header(req, "apns-push-type",
	    note->push_type != NULL ? note->push_type : "alert");
	rv |= push_req_header(
	    req, "apns-id", note->apns_id != NULL ? note->apns_id : uuid);
	if (note->priority != 0) {
		snprintf(num, sizeof(num), "%d", note->priority);
		rv |= push_req_header(req, "apns-priority", num);
	}
	if (note->has_expiration) {
		snprintf(num, sizeof(num), "%lld", note->expiration);
		rv |= push_req_header(req, "apns-expiration", num);
	}
	if (note->collapse_id != NULL)
		rv |=
		    push_req_header(req, "apns-collapse-id", note->collapse_id);
	if (rv != 0)
		return -1;
	*cause = NULL;
	return 0;
}

/*
 * Read an APNs answer into req: reason and timestamp from the JSON body,
 * the apns-id header as the id.
 */
void
push_apns_answer(struct push_req *req)
{
	json_t *root = NULL, *v;

	if (req->resp_id != NULL)
		req->id_buf = strdup(req->resp_id);
	if (req->resp == NULL || req->resp_len == 0)
		return;
	root = json_loadb(req->resp, req->resp_len, 0, NULL);
	if (root == NULL || !json_is_object(root))
		goto out;
	v = json_object_get(root, "reason");
	if (json_is_string(v) && json_string_length(v) <= 128)
		req->reason_buf = strdup(json_string_value(v));
	v = json_object_get(root, "timestamp");
	if (json_is_integer(v))
		req->result.timestamp_ms = json_integer_value(v);
	else if (json_is_real(v))
		req->result.timestamp_ms = (long long)json_real_value(v);

out:
	json_decref(root);
}
